#!/usr/bin/env bash
# Relay failover gaps in the NAT lab (needs root): 20 trials of a relay killed and 20 of a relay vanishing silently,
# p50/p90/max of the time to the first successful new stream through the other relay.
# Usage: bench/failover.sh        Knobs: BENCH_TRIALS (default 20), BENCH_SKIP_BUILD=1
# Output: artifacts/bench/failover.md (and stdout).
set -euo pipefail
export LC_ALL=C DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "bench/failover.sh needs root (network namespaces)" >&2; exit 1; }
mkdir -p artifacts/bench
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  dotnet publish bench/Weft.LabBench -c Release -o artifacts/labbench-bin >artifacts/bench/labbench-publish.out 2>&1 ||
    { tail -30 artifacts/bench/labbench-publish.out >&2; exit 1; }
fi
timeout 3600 artifacts/labbench-bin/weft-labbench failover --trials "${BENCH_TRIALS:-20}" --out artifacts/bench/failover.md
