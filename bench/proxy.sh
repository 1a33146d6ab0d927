#!/usr/bin/env bash
# The service proxy in the NAT lab (needs root): proxied HTTP latency (p50/p99, keep-alive and a new connection per
# request), the time of a 4 MiB transfer, and bulk TCP throughput, each against plain TCP between the same namespaces
# in the same run, same LAN (lan1-a -> lan1-b, a direct tunnel path) and across LANs (lan1-a -> lan2-a through relay1,
# LAN 2 behind a symmetric NAT; the plain baseline uses a port forward on router2). Proxied and plain runs take turns.
# Usage: flock /work/bench.lock bench/proxy.sh
# Knobs (environment):
#   BENCH_ROUNDS            runs of each measure per target, taking turns; medians reported (default 2)
#   BENCH_LATENCY_COUNT     keep-alive requests per run (default 2000, after 200 warm-up)
#   BENCH_CONNECTION_COUNT  new-connection requests per run (default 300, after 20 warm-up)
#   BENCH_TRANSFER_COUNT    4 MiB transfers per run (default 40)
#   BENCH_BULK_BYTES        bytes per bulk transfer (default 256MiB); BENCH_BULK_COUNT transfers per run (default 3)
#   BENCH_SHAPE             also run with every host's link shaped by tc tbf at this rate (default 1gbit; "off" to skip)
#   BENCH_SKIP_BUILD=1      reuse artifacts/weft and artifacts/proxy-bench-bin
# Output: artifacts/bench/proxy.md (the tables) and artifacts/bench/proxy.json (every run's raw result).
set -euo pipefail
export LC_ALL=C DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=$ROOT/artifacts/bench
mkdir -p "$OUT"
log() { printf '[proxy-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "needs root (network namespaces)"; exit 2; }
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "dotnet publish src/Weft.Cli and bench/Weft.ProxyBench (Release)"
  timeout 900 dotnet publish src/Weft.Cli -c Release -o artifacts/weft --artifacts-path "$ROOT/artifacts/obj" >"$OUT/proxy-publish.out" 2>&1 ||
    { tail -30 "$OUT/proxy-publish.out" >&2; exit 1; }
  timeout 900 dotnet publish bench/Weft.ProxyBench -c Release -o artifacts/proxy-bench-bin --artifacts-path "$ROOT/artifacts/obj" >>"$OUT/proxy-publish.out" 2>&1 ||
    { tail -30 "$OUT/proxy-publish.out" >&2; exit 1; }
fi
SHAPE=${BENCH_SHAPE:-1gbit}
SHAPE_ARGS=()
[ "$SHAPE" != off ] && SHAPE_ARGS=(--shape "$SHAPE")
# Bounded: the whole run is killed after 40 minutes; the lab removes its namespaces and processes on exit.
timeout -k 10 2400 dotnet artifacts/proxy-bench-bin/weft-proxy-bench.dll --weft artifacts/weft/weft.dll \
  --rounds "${BENCH_ROUNDS:-2}" --latency-count "${BENCH_LATENCY_COUNT:-2000}" --connection-count "${BENCH_CONNECTION_COUNT:-300}" \
  --transfer-count "${BENCH_TRANSFER_COUNT:-40}" --bulk-bytes "${BENCH_BULK_BYTES:-256MiB}" --bulk-count "${BENCH_BULK_COUNT:-3}" \
  "${SHAPE_ARGS[@]}" --out "$OUT/proxy.json" | tee "$OUT/proxy.md"
