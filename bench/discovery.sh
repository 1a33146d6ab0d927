#!/usr/bin/env bash
# Discovery benchmarks, every baseline in the same run:
#   1. DHT: N Weft Kademlia nodes in one process on loopback (default 50), find-peer lookups of random targets
#      (disconnected first, so answers come from DHT requests) and provider lookups: time and hops. Twice: with
#      the defaults (k = 20, alpha = 10) and with small buckets (k = 4, alpha = 2), where tables hold a fraction of
#      the network and lookups go deeper. Baseline: one request round trip (libp2p ping) on the same connections.
#   2. mDNS (root only): time from starting mDNS to the first discovery, in two network namespaces joined by a
#      veth pair, against a Weft responder already running. Weft, then js-libp2p 3.3.11 as the baseline.
# Usage: bench/discovery.sh
# Knobs (environment): BENCH_DHT_NODES (50), BENCH_DHT_LOOKUPS (200), BENCH_MDNS_RUNS (10), BENCH_SKIP_BUILD=1,
#   BENCH_ARTIFACTS_PATH (dotnet --artifacts-path, default artifacts/obj).
# Output: artifacts/bench/discovery.md; raw outputs in artifacts/bench/discovery-raw/.
set -uo pipefail
export LC_ALL=C DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
NODES=${BENCH_DHT_NODES:-50}
LOOKUPS=${BENCH_DHT_LOOKUPS:-200}
MDNS_RUNS=${BENCH_MDNS_RUNS:-10}
OUT=$ROOT/artifacts/bench
RAW=$OUT/discovery-raw
WEFT=$ROOT/artifacts/weft/weft
BENCH=$ROOT/artifacts/bench-bin/weft-bench
PEER=$ROOT/tests/interop-js/peer.mjs
DOTNET_ARTIFACTS=${BENCH_ARTIFACTS_PATH:-$ROOT/artifacts/obj}
NS_A=wdisc$$a
NS_B=wdisc$$b

mkdir -p "$RAW"; rm -f "$RAW"/*
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  PIDS=()
  ip netns del "$NS_A" 2>/dev/null
  ip netns del "$NS_B" 2>/dev/null
  return 0
}
trap cleanup EXIT
trap 'echo "discovery bench: interrupted" >&2; exit 130' INT TERM HUP
log() { printf '[discovery-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
FAILURES=()
fail() { FAILURES+=("$1"); log "FAILED: $1"; }
for tool in dotnet node jq timeout; do command -v "$tool" >/dev/null || { log "missing $tool"; exit 1; }; done

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "dotnet publish src/Weft.Cli and bench/Weft.Bench (Release)"
  timeout 900 dotnet publish src/Weft.Cli -c Release -o artifacts/weft --artifacts-path "$DOTNET_ARTIFACTS" >"$RAW/publish-weft.out" 2>&1 ||
    { tail -30 "$RAW/publish-weft.out" >&2; exit 1; }
  timeout 900 dotnet publish bench/Weft.Bench -c Release -o artifacts/bench-bin --artifacts-path "$DOTNET_ARTIFACTS" >"$RAW/publish-bench.out" 2>&1 ||
    { tail -30 "$RAW/publish-bench.out" >&2; exit 1; }
fi
[ -d tests/interop-js/node_modules ] || timeout 300 npm ci --prefix tests/interop-js --no-audit --no-fund >"$RAW/npm.out" 2>&1 || { log "npm ci failed"; exit 1; }

# result NAME CMD...: runs a bench mode, keeps its RESULT json in $RAW/NAME.json
result() {
  local name=$1; shift
  if timeout -k 5 1800 "$@" >"$RAW/$name.out" 2>"$RAW/$name.err"; then
    awk '$1=="RESULT" {sub(/^RESULT /, ""); print; exit}' "$RAW/$name.out" >"$RAW/$name.json"
    [ -s "$RAW/$name.json" ] || fail "$name printed no RESULT"
  else
    fail "$name (see $RAW/$name.err)"
  fi
}
j() { if [ -s "$RAW/$1.json" ]; then jq -r "$2 // \"n/a\"" <"$RAW/$1.json"; else echo n/a; fi; }

log "DHT: $NODES nodes, $LOOKUPS lookups, k=20 alpha=10"
result dht-default "$BENCH" dht-lookup --nodes "$NODES" --lookups "$LOOKUPS"
log "DHT: $NODES nodes, $LOOKUPS lookups, k=4 alpha=2"
result dht-small "$BENCH" dht-lookup --nodes "$NODES" --lookups "$LOOKUPS" --bucket-size 4 --alpha 2

MDNS=skipped
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null; then
  log "mDNS: namespaces $NS_A and $NS_B joined by a veth pair (10.77.0.1 / 10.77.0.2)"
  ip netns add "$NS_A" && ip netns add "$NS_B" &&
    ip link add wd$$a netns "$NS_A" type veth peer name wd$$b netns "$NS_B" &&
    ip -n "$NS_A" addr add 10.77.0.1/24 dev wd$$a && ip -n "$NS_B" addr add 10.77.0.2/24 dev wd$$b &&
    ip -n "$NS_A" link set wd$$a up && ip -n "$NS_B" link set wd$$b up &&
    ip -n "$NS_A" link set lo up && ip -n "$NS_B" link set lo up &&
    ip -n "$NS_A" route add 224.0.0.0/4 dev wd$$a && ip -n "$NS_B" route add 224.0.0.0/4 dev wd$$b ||
    { log "could not build the namespaces"; exit 1; }
  # (js sends its queries by the routing table, hence the multicast routes; Weft picks each interface itself.)
  setsid timeout -k 5 900 ip netns exec "$NS_A" "$WEFT" p2p serve --listen /ip4/10.77.0.1/tcp/4001 --mdns >"$RAW/responder.out" 2>"$RAW/responder.err" </dev/null &
  PIDS+=("$!")
  for _ in $(seq 1 100); do grep -q '^mdns ' "$RAW/responder.out" && break; sleep 0.1; done
  grep -q '^mdns ' "$RAW/responder.out" || { log "the responder did not start; see $RAW/responder.err"; exit 1; }
  log "mDNS: Weft, $MDNS_RUNS runs"
  result mdns-weft ip netns exec "$NS_B" "$BENCH" mdns-first --runs "$MDNS_RUNS" --listen /ip4/10.77.0.2/tcp/0
  log "mDNS: js-libp2p, $MDNS_RUNS runs"
  result mdns-js ip netns exec "$NS_B" node "$PEER" mdns-bench --runs "$MDNS_RUNS" --host 10.77.0.2
  MDNS=done
else
  log "mDNS part skipped: needs root (network namespaces)"
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a/b; else print "n/a" }'; }
{
  echo "# Discovery benchmark"
  echo
  echo "Run $(date -u +%Y-%m-%dT%H:%M:%SZ) at $(git rev-parse --short HEAD 2>/dev/null), $(nproc) cores. Command: \`bench/discovery.sh\`."
  echo
  echo "## DHT: $NODES Weft nodes in one process, $LOOKUPS find-peer lookups"
  echo
  echo "| setting | table (mean peers) | join (s) | find-peer p50 / p90 ms (hops p50 / max) | closest-peers p50 / p90 ms (hops p50 / max) | find-providers p50 ms | request RTT p50 ms | find-peer / RTT |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for v in default small; do
    label=$([ $v = default ] && echo "k=20, α=10" || echo "k=4, α=2")
    echo "| $label | $(j dht-$v .tableMean) | $(j dht-$v .joinSeconds) | $(j dht-$v .p50FindPeerMs) / $(j dht-$v .p90FindPeerMs) ($(j dht-$v .p50Hops) / $(j dht-$v .maxHops)) | $(j dht-$v .p50ClosestMs) / $(j dht-$v .p90ClosestMs) ($(j dht-$v .p50ClosestHops) / $(j dht-$v .maxClosestHops)) | $(j dht-$v .p50FindProvidersMs) | $(j dht-$v .p50RequestRttMs) | $(j dht-$v .findPeerOverRequestRtt)× |"
  done
  echo
  echo "Hops (find-peer; closest-peers; find-providers): default $(j dht-default '.hopsHistogram|tostring'); $(j dht-default '.closestHopsHistogram|tostring'); $(j dht-default '.providerHopsHistogram|tostring'),"
  echo "small buckets $(j dht-small '.hopsHistogram|tostring'); $(j dht-small '.closestHopsHistogram|tostring'); $(j dht-small '.providerHopsHistogram|tostring');"
  echo "targets outside the asker's table: $(j dht-default .targetsOutsideAskerTable) and $(j dht-small .targetsOutsideAskerTable) of $LOOKUPS."
  echo
  if [ "$MDNS" = done ]; then
    w=$(j mdns-weft .p50Ms); js=$(j mdns-js .msMedian)
    echo "## mDNS: time from start to the first discovery ($MDNS_RUNS runs each, two namespaces on a veth pair, a Weft responder)"
    echo
    echo "| implementation | median ms | min / max ms |"
    echo "|---|---:|---:|"
    echo "| Weft (socket opened, then first discovery) | $w | $(j mdns-weft .minMs) / $(j mdns-weft .maxMs) |"
    echo "| js-libp2p 3.3.11 (@libp2p/mdns 12.0.32; node.start(), then first discovery) | $js | $(j mdns-js .msMin) / $(j mdns-js .msMax) |"
    echo
    echo "Weft / js: $(ratio "$w" "$js")×"
  else
    echo "## mDNS: skipped (needs root)"
  fi
  if [ ${#FAILURES[@]} -gt 0 ]; then
    echo
    echo "## Failures"
    for f in "${FAILURES[@]}"; do echo "- $f"; done
  fi
} | tee "$OUT/discovery.md"
[ ${#FAILURES[@]} -eq 0 ]
