#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 10): `bash fuzz/run.sh 3600` is the hour
# by hand. Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
# Crashes land in fuzz/artifacts/TARGET/; the corpus grows in fuzz/corpus/TARGET/ (neither is
# committed).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/rrocker-fuzz-target}"
for target in limit_flags requests init_contract; do
  echo "== $target, ${seconds}s"
  cargo +nightly fuzz run --sanitizer none "$target" -- -max_total_time="$seconds" -print_final_stats=1
done
