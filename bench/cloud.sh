#!/usr/bin/env bash
# Cloud router benchmarks, in ONE run (DESIGN.md §8):
#   1. router latency p50/p90/p99: edge app direct (baseline), through the owner replica, and forwarded by the
#      replica that does not own the node (the added cost of forwarding = forwarded − owner-direct);
#   2. sync requests/s at a fixed concurrency on the same three paths;
#   3. edge sessions one replica holds: BENCH_SESSIONS WebSocket sessions from several 127.0.0.x source
#      addresses, held BENCH_HOLD seconds, and the replica's RSS growth per session.
# Usage: bench/cloud.sh   (take figures with: flock /work/bench.lock bench/cloud.sh)
# Latency samples of the three paths are interleaved, and throughput runs in 1 s slices rotating over them, so
# that all three share the same background load (the machine is shared).
# Knobs: BENCH_COUNT (latency samples per path, default 3000), BENCH_SECONDS (throughput seconds per path, 10),
#        BENCH_CONCURRENCY (32), BENCH_SESSIONS (19800), BENCH_HOLD (10), BENCH_ONLY=router|sessions, BENCH_SKIP_BUILD=1.
# Sessions are opened by two load processes (half each, from different 127.0.0.x source addresses), so that
# neither runs into its own descriptor limit. The replica needs one descriptor per session: with a hard
# RLIMIT_NOFILE of 20,000 (this machine; raising it needs CAP_SYS_RESOURCE) one process cannot hold 20,000
# sockets, hence the default of 19,800; set BENCH_SESSIONS=20000 where the limit allows.
# Output: artifacts/bench/cloud.md (and the raw JSON lines in artifacts/bench/cloud-raw/).
set -uo pipefail
export LC_ALL=C DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
COUNT=${BENCH_COUNT:-3000}; SECONDS_PER=${BENCH_SECONDS:-10}; CONC=${BENCH_CONCURRENCY:-32}
SESSIONS=${BENCH_SESSIONS:-19800}; HOLD=${BENCH_HOLD:-10}; ONLY=${BENCH_ONLY:-}
OUT=$ROOT/artifacts/bench; RAW=$OUT/cloud-raw; WORK=$(mktemp -d /tmp/weft-cloud-bench.XXXXXX)
WEFT=$ROOT/artifacts/weft/weft; LOAD=$ROOT/artifacts/cloudload/weft-cloudload
mkdir -p "$RAW"; rm -f "$RAW"/*
PIDS=(); LOADERS=()
# Every process runs under `timeout`; TERM to the timeout process is passed on to its child.
cleanup() { local p; for p in "${PIDS[@]}" "${LOADERS[@]}"; do kill -TERM "$p" 2>/dev/null; done; wait 2>/dev/null; PIDS=(); LOADERS=(); rm -rf "$WORK"; }
trap cleanup EXIT
trap 'echo "cloud bench: interrupted" >&2; exit 130' INT TERM HUP
log() { printf '[cloud-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# 20,000 sessions need 20,000+ descriptors in the replica and in the load process.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log "descriptor limit $(ulimit -n)"

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building"
  timeout 900 dotnet publish src/Weft.Cli -c Release -o artifacts/weft -v q -nologo >"$RAW/build.log" 2>&1 || { cat "$RAW/build.log" >&2; exit 1; }
  timeout 900 dotnet publish bench/Weft.CloudLoad -c Release -o artifacts/cloudload -v q -nologo >>"$RAW/build.log" 2>&1 || { cat "$RAW/build.log" >&2; exit 1; }
fi
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
head -c 32 /dev/urandom >"$WORK/secret"
APP=$(port)
config() { # name hubport routerport
  cat >"$WORK/$1.yaml" <<YAML
replica: {name: $1}
hub: {listen: "127.0.0.1:$2", allowPlaintext: true, tokenSecretFile: $WORK/secret, keepaliveInterval: 30s, readTimeout: 120s}
router: {listen: "127.0.0.1:$3"}
directory: {backend: embedded, embeddedPath: $WORK/directory}
ruleEndpoints:
  - {name: rest, ruleEndpointType: rest}
  - {name: app, ruleEndpointType: servicebus, properties: {service_port: "$APP"}}
rules:
  - {name: bench, source: rest, sourceResource: {path: /bench}, target: app, targetResource: {path: /}}
YAML
}
start() { # name -> waits for "ready"
  timeout 1200 "$WEFT" cloud --config "$WORK/$1.yaml" >"$RAW/$1.out" 2>"$RAW/$1.err" &
  local t=$!; PIDS+=("$t")
  # Readiness: the replica prints "ready ..." once both listeners accept; poll its output with a 30 s deadline.
  for _ in $(seq 1 300); do
    if grep -q '^ready ' "$RAW/$1.out"; then eval "PID_${1//-/_}=$(pgrep -P "$t" | head -1)"; return 0; fi
    sleep 0.1
  done
  log "$1 did not start"; cat "$RAW/$1.err" >&2; exit 1
}
if [ "$ONLY" != sessions ]; then
  HA=$(port); RA=$(port); HB=$(port); RB=$(port)
  config cloud-a "$HA" "$RA"; config cloud-b "$HB" "$RB"
  start cloud-a; start cloud-b
  log "router latency and throughput (count $COUNT, $SECONDS_PER s per path at concurrency $CONC)"
  timeout 600 "$LOAD" router --hub "ws://127.0.0.1:$HA" --owner "http://127.0.0.1:$RA" --other "http://127.0.0.1:$RB" --app-port "$APP" \
    --token-secret "$WORK/secret" --count "$COUNT" --seconds "$SECONDS_PER" --concurrency "$CONC" >"$RAW/router.jsonl" 2>"$RAW/router.err" || { cat "$RAW/router.err" >&2; exit 1; }
  kill -TERM "${PIDS[@]}" 2>/dev/null; wait "${PIDS[@]}" 2>/dev/null; PIDS=()
fi

if [ "$ONLY" != router ]; then
  log "sessions: $SESSIONS on one replica"
  HS=$(port); RS=$(port); config cloud-s "$HS" "$RS"
  sed -i 's/embeddedPath: [^}]*//' "$WORK/cloud-s.yaml"
  start cloud-s
  HALF=$((SESSIONS / 2))
  # Two load processes, each from its own source addresses, so that no address runs out of ephemeral ports.
  for k in 1 2; do
    n=$HALF; [ "$k" = 2 ] && n=$((SESSIONS - HALF))
    src=127.0.0.$((2 * k)),127.0.0.$((2 * k + 1))
    timeout 900 "$LOAD" sessions --hub "ws://127.0.0.1:$HS" --status "http://127.0.0.1:$RS/_weft/status" --pid "$PID_cloud_s" --prefix "load$k-" \
      --token-secret "$WORK/secret" --count "$n" --sources "$src" --seconds "$HOLD" >"$RAW/sessions-$k.jsonl" 2>"$RAW/sessions-$k.err" &
    LOADERS+=($!)
  done
  for p in "${LOADERS[@]}"; do wait "$p" || log "a load process failed (see $RAW/sessions-*.err)"; done
  cat "$RAW"/sessions-*.jsonl >"$RAW/sessions.jsonl"
  curl -s "http://127.0.0.1:$RS/_weft/status" | jq -c '{sessions, sessionsOpened: .counters.sessionsOpened}' >"$RAW/sessions-status.json" 2>/dev/null
  grep -E '^(VmRSS|VmHWM)' "/proc/$PID_cloud_s/status" >"$RAW/sessions-rss.txt" 2>/dev/null
fi

if [ -f "$RAW/router.jsonl" ]; then {
  echo "| path | p50 ms | p90 ms | p99 ms | req/s (concurrency $CONC) |"
  echo "|---|---:|---:|---:|---:|"
  for p in app-direct owner-direct forwarded; do
    l=$(grep "\"latency\",\"path\":\"$p\"" "$RAW/router.jsonl"); t=$(grep "\"throughput\",\"path\":\"$p\"" "$RAW/router.jsonl")
    echo "| $p | $(echo "$l" | jq .p50_ms) | $(echo "$l" | jq .p90_ms) | $(echo "$l" | jq .p99_ms) | $(echo "$t" | jq .rps) |"
  done
  o=$(grep '"latency","path":"owner-direct"' "$RAW/router.jsonl" | jq .p50_ms); f=$(grep '"latency","path":"forwarded"' "$RAW/router.jsonl" | jq .p50_ms)
  echo; echo "forwarding adds $(echo "$f - $o" | bc -l | xargs printf '%.3f') ms at p50 (goal ≤ 1 ms)"
} | tee "$OUT/cloud.md"; fi
if [ -f "$RAW/sessions.jsonl" ]; then {
  echo; echo "sessions ($SESSIONS requested from two load processes):"; cat "$RAW/sessions.jsonl"
  echo "replica after: $(cat "$RAW/sessions-status.json" 2>/dev/null) $(tr '\n' ' ' <"$RAW/sessions-rss.txt" 2>/dev/null)"
  # RSS growth of the replica over all sessions (each load process reports the replica's RSS when it is done).
  b=$(jq -s 'map(.replica_rss_before_mib) | min' "$RAW/sessions.jsonl"); a=$(jq -s 'map(.replica_rss_after_mib) | max' "$RAW/sessions.jsonl")
  o=$(jq -s 'map(.opened) | add' "$RAW/sessions.jsonl"); h=$(jq -s 'map(.held) | max' "$RAW/sessions.jsonl")
  echo "opened $o, held $h after ${HOLD} s; replica RSS $b → $a MiB: $(echo "($a - $b) * 1048576 / $o" | bc) bytes per session"
} | tee -a "$OUT/cloud.md"; fi
