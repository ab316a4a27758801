#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 10): the test command runs it in quick
# mode (5 s each) and `bash fuzz/run.sh 3600` is the hour by hand. Uses the stable toolchain
# (no sanitizer: the targets are safe Rust, and a panic is the crash libFuzzer reports) and
# installs cargo-fuzz from crates.io under /var/tmp on first use.
# Crashes land in fuzz/artifacts/TARGET/; the corpus grows in fuzz/corpus/TARGET/ (neither is
# committed).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
export CARGO_TARGET_DIR="${RROCKER_FUZZ_TARGET_DIR:-/var/tmp/rrocker-fuzz-target}"
tools="/var/tmp/rrocker-tools"
export PATH="$tools/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz into $tools"
  cargo install --quiet --locked --root "$tools" cargo-fuzz
fi
mkdir -p "$CARGO_TARGET_DIR"
for target in limit_flags requests init_contract seccomp_profile; do
  echo "== fuzz $target, ${seconds}s"
  log="$CARGO_TARGET_DIR/fuzz-$target.log"
  if ! cargo fuzz run --sanitizer none "$target" -- -max_total_time="$seconds" \
    -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz target $target failed: its input is in fuzz/artifacts/$target/"
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log"
done
