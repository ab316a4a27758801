#!/usr/bin/env bash
# Installs the baselines the benchmarks compare rrocker with: runc and crun (distribution
# packages). Run as root; the benchmarks report "not installed" for a missing one.
set -euo pipefail
missing=()
for tool in runc crun; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -q && apt-get install -y -q "${missing[@]}"
fi
runc --version | head -1
crun --version | head -1
