#!/usr/bin/env bash
# Runs the benchmarks in full, from a clean checkout, as root: installs the baselines (runc,
# crun), builds the release binaries the benches start, runs the named benches (all of them
# without arguments), then renders the charts.
#   bash benches/run.sh                   # every bench in benches/benches/
#   bash benches/run.sh start_latency     # one of them
set -euo pipefail
cd "$(dirname "$0")/.."
bash benches/setup.sh
cargo build --release --workspace --bins
# The CLI as the README suggests installing it: linked statically (cli_call measures it).
cargo rustc --release -p rrocker-cli --bin rrocker-cli -- -C target-feature=+crt-static -C relocation-model=static
if [ "$#" -eq 0 ]; then
  cargo bench -p rrocker-benches
else
  for name in "$@"; do cargo bench -p rrocker-benches --bench "$name"; done
fi
python3 benches/render.py
