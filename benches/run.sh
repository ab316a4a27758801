#!/usr/bin/env bash
# Runs the benchmarks in full, from a clean checkout, as root: installs the baselines (runc,
# crun), builds the release binaries the benches start, runs the named benches (all four
# without arguments), then renders the charts.
#   bash benches/run.sh                   # start_latency, stream_throughput, concurrency, churn
#   bash benches/run.sh start_latency     # one of them
set -euo pipefail
cd "$(dirname "$0")/.."
bash benches/setup.sh
cargo build --release --workspace --bins
if [ "$#" -eq 0 ]; then
  cargo bench -p rrocker-benches
else
  for name in "$@"; do cargo bench -p rrocker-benches --bench "$name"; done
fi
python3 benches/render.py
