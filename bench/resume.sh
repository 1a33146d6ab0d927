#!/usr/bin/env bash
# Resumable tunnel figures in the NAT lab (needs root): the stall a live session sees when its relay is killed
# (20 trials) or vanishes silently (20 trials), and the throughput of the resumable tunnel against the plain one.
# Usage: bench/resume.sh        Knobs: BENCH_TRIALS (default 20; 0: the cost part only), BENCH_ROUNDS (cost rounds, default 3), BENCH_SKIP_BUILD=1
# Output: artifacts/bench/resume.md (and stdout).
set -euo pipefail
export LC_ALL=C DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "bench/resume.sh needs root (network namespaces)" >&2; exit 1; }
mkdir -p artifacts/bench
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  dotnet publish bench/Weft.LabBench -c Release -o artifacts/labbench-bin >artifacts/bench/labbench-publish.out 2>&1 ||
    { tail -30 artifacts/bench/labbench-publish.out >&2; exit 1; }
fi
timeout 3600 artifacts/labbench-bin/weft-labbench resume --trials "${BENCH_TRIALS:-20}" --rounds "${BENCH_ROUNDS:-3}" --out artifacts/bench/resume.md
