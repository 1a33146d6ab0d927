#!/usr/bin/env bash
# Relayed throughput and RTT through a Weft relay and a js-libp2p relay on the same loopback path, in ONE run,
# plus the time a hole punch (DCUtR) takes to turn a relayed connection into a direct one.
# Usage: bench/relay.sh
# Knobs (environment):
#   BENCH_BYTES         bytes per transfer (default 268435456 = 256 MiB)
#   BENCH_RUNS          repetitions of each transfer; the median is reported (default 3)
#   BENCH_PING_COUNT    pings per RTT measure (default 500)
#   BENCH_PUNCH_COUNT   hole punches timed (default 5)
#   BENCH_SKIP_BUILD=1  reuse artifacts/weft
# Every transfer is a /perf/1.0.0 download (the target sends, the dialer receives and times until the last
# byte), the same protocol and direction for Weft and js. Output: artifacts/bench/relay.md; raw outputs in
# artifacts/bench/relay-raw/.
set -uo pipefail
export LC_ALL=C DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BYTES=${BENCH_BYTES:-268435456}
RUNS=${BENCH_RUNS:-3}
PINGS=${BENCH_PING_COUNT:-500}
PUNCHES=${BENCH_PUNCH_COUNT:-5}
OUT=$ROOT/artifacts/bench
RAW=$OUT/relay-raw
WEFT=$ROOT/artifacts/weft/weft
PEER=$ROOT/tests/interop-js/peer.mjs
T_SERVER=1800   # every background process dies after this at the latest
T_ONE=$(( 60 + 30 * (BYTES + 1073741823) / 1073741824 ))

mkdir -p "$RAW"; rm -f "$RAW"/*
PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; kill -TERM -- "-$p" 2>/dev/null; done; PIDS=(); }
trap cleanup EXIT
trap 'echo "relay bench: interrupted" >&2; exit 130' INT TERM HUP
log() { printf '[relay-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
FAILURES=()
fail() { FAILURES+=("$1"); log "FAILED: $1"; }

for tool in dotnet node jq timeout; do command -v "$tool" >/dev/null || { log "missing $tool"; exit 1; }; done
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "dotnet publish src/Weft.Cli (Release)"
  timeout 900 dotnet publish src/Weft.Cli -c Release -o artifacts/weft --artifacts-path "$ROOT/artifacts/obj" >"$RAW/publish.out" 2>&1 ||
    { tail -30 "$RAW/publish.out" >&2; exit 1; }
fi
[ -d tests/interop-js/node_modules ] || timeout 300 npm ci --prefix tests/interop-js --no-audit --no-fund >"$RAW/npm.out" 2>&1 || { log "npm ci failed"; exit 1; }

# bg NAME KEYWORD MATCH CMD...: start CMD in the background (bounded), wait for a stdout line "KEYWORD <addr>"
# whose address contains MATCH; sets ADDR.
bg() {
  local name=$1 kw=$2 match=$3; shift 3
  setsid timeout -k 5 "$T_SERVER" "$@" >"$RAW/$name.out" 2>"$RAW/$name.err" </dev/null &
  PIDS+=("$!")
  ADDR=
  for _ in $(seq 1 300); do
    ADDR=$(awk -v k="$kw" -v m="$match" '$1==k && index($2, m) {print $2; exit}' "$RAW/$name.out")
    [ -n "$ADDR" ] && return 0
    sleep 0.1
  done
  log "$name printed no '$kw ...$match...' line; see $RAW/$name.err"
  return 1
}

median() { printf '%s\n' "$@" | awk 'NF && $1 != ""' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print ""; else if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "n/a" }'; else echo n/a; fi; }
na() { if [ -n "${1:-}" ]; then echo "$1"; else echo n/a; fi; }

# weft_perf NAME TARGET: RUNS downloads with `weft p2p perf`; echoes the median MiB/s
weft_perf() {
  local name=$1 target=$2 r rates=()
  for r in $(seq 1 "$RUNS"); do
    if timeout -k 5 "$T_ONE" "$WEFT" p2p perf "$target" --upload 0 --download "$BYTES" --json >"$RAW/$name-$r.out" 2>"$RAW/$name-$r.err"; then
      rates+=("$(jq -r '.downloadBytes / 1048576 / .downloadSeconds * 10 | round / 10' <"$RAW/$name-$r.out")")
    else
      fail "$name run $r (see $RAW/$name-$r.err)"
    fi
  done
  median "${rates[@]}"
}

# js_perf NAME TARGET: the same with the js peer as the dialer
js_perf() {
  local name=$1 target=$2 r rates=()
  for r in $(seq 1 "$RUNS"); do
    if timeout -k 5 "$T_ONE" node "$PEER" dial "$target" perf --upload 0 --download "$BYTES" >"$RAW/$name-$r.out" 2>"$RAW/$name-$r.err"; then
      rates+=("$(awk '$1=="RESULT" {sub(/^RESULT /, ""); print; exit}' "$RAW/$name-$r.out" | jq -r '.downloadBytes / 1048576 / .downloadSeconds * 10 | round / 10')")
    else
      fail "$name run $r (see $RAW/$name-$r.err)"
    fi
  done
  median "${rates[@]}"
}

log "relays: Weft (limits off) and js (limits off)"
bg weft-relay listening /ip4/127.0.0.1/ "$WEFT" p2p serve --relay-service --relay-limits off || exit 1
WR=$ADDR
bg js-relay LISTEN /ip4/127.0.0.1/ node "$PEER" relay --relay-limits off --host 127.0.0.1 || exit 1
JR=$ADDR

log "targets: a Weft and a js node, each reserved on both relays"
bg weft-target listening /p2p-circuit/ "$WEFT" p2p serve --reserve "$WR" --reserve "$JR" || exit 1
WT_DIRECT=$(awk '$1=="listening" && !index($2,"/p2p-circuit/") {print $2; exit}' "$RAW/weft-target.out")
for _ in $(seq 1 100); do [ "$(grep -c '/p2p-circuit/' "$RAW/weft-target.out")" -ge 2 ] && break; sleep 0.1; done
WT_VIA_W=$(awk -v r="$WR" '$1=="listening" && index($2, r "/p2p-circuit/") {print $2; exit}' "$RAW/weft-target.out")
WT_VIA_J=$(awk -v r="$JR" '$1=="listening" && index($2, r "/p2p-circuit/") {print $2; exit}' "$RAW/weft-target.out")
bg js-target-w CIRCUIT /p2p-circuit/ node "$PEER" listen --host 127.0.0.1 --reserve "$WR" || exit 1
JT_VIA_W=$ADDR
JT_DIRECT=$(awk '$1=="LISTEN" {print $2; exit}' "$RAW/js-target-w.out")
bg js-target-j CIRCUIT /p2p-circuit/ node "$PEER" listen --host 127.0.0.1 --reserve "$JR" || exit 1
JT_VIA_J=$ADDR
[ -n "$WT_VIA_W" ] && [ -n "$WT_VIA_J" ] || { log "the Weft target did not reserve on both relays"; exit 1; }

log "throughput: $RUNS x $BYTES bytes per path"
declare -A M
M[ww_direct]=$(weft_perf ww-direct "$WT_DIRECT")
M[ww_wrelay]=$(weft_perf ww-via-weft "$WT_VIA_W")
M[ww_jrelay]=$(weft_perf ww-via-js "$WT_VIA_J")
M[jj_direct]=$(js_perf jj-direct "$JT_DIRECT")
M[jj_jrelay]=$(js_perf jj-via-js "$JT_VIA_J")
M[jj_wrelay]=$(js_perf jj-via-weft "$JT_VIA_W")

log "RTT: $PINGS pings through each relay"
rtt_weft() {  # NAME TARGET -> median ms
  timeout -k 5 300 "$WEFT" p2p ping "$2" --count "$PINGS" >"$RAW/$1.out" 2>"$RAW/$1.err" || { fail "$1 (see $RAW/$1.err)"; return; }
  median $(awk '$1=="pong" { for (i=1;i<=NF;i++) if ($i ~ /^time=/) { sub(/time=/, "", $i); print $i } }' "$RAW/$1.out")
}
rtt_js() {
  timeout -k 5 300 node "$PEER" dial "$2" ping --count "$PINGS" --reuse-stream >"$RAW/$1.out" 2>"$RAW/$1.err" || { fail "$1 (see $RAW/$1.err)"; return; }
  median $(awk '$1=="PING" {print $2}' "$RAW/$1.out")
}
M[rtt_ww_direct]=$(rtt_weft rtt-ww-direct "$WT_DIRECT")
M[rtt_ww_wrelay]=$(rtt_weft rtt-ww-via-weft "$WT_VIA_W")
M[rtt_ww_jrelay]=$(rtt_weft rtt-ww-via-js "$WT_VIA_J")
M[rtt_jj_jrelay]=$(rtt_js rtt-jj-via-js "$JT_VIA_J")
M[rtt_jj_wrelay]=$(rtt_js rtt-jj-via-weft "$JT_VIA_W")

log "DCUtR: $PUNCHES punches through the Weft relay (the dialer listens, so the target can punch back)"
dial_to_direct=(); punch=()
for r in $(seq 1 "$PUNCHES"); do
  before=$(grep -c '^direct ' "$RAW/weft-target.out")
  if timeout -k 5 60 "$WEFT" p2p ping "$WT_VIA_W" --listen /ip4/127.0.0.1/tcp/0 --wait-direct 10 --count 1 >"$RAW/punch-$r.out" 2>"$RAW/punch-$r.err" &&
     grep -q '^path direct ' "$RAW/punch-$r.out"; then
    dial_to_direct+=("$(awk '$1=="path" && $2=="direct" {print $(NF-1); exit}' "$RAW/punch-$r.out")")
    for _ in $(seq 1 50); do [ "$(grep -c '^direct ' "$RAW/weft-target.out")" -gt "$before" ] && break; sleep 0.1; done
    punch+=("$(grep '^direct ' "$RAW/weft-target.out" | tail -1 | awk '{for (i=1;i<=NF;i++) if ($i=="after") {print $(i+1); exit}}')")
  else
    fail "punch $r (see $RAW/punch-$r.out)"
  fi
done
M[dial_to_direct]=$(median "${dial_to_direct[@]}")
M[punch]=$(median "${punch[@]}")

cleanup
R=$OUT/relay.md
{
  echo "# Relay benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $BYTES bytes x $RUNS runs, median)"
  echo
  echo "Command: \`bench/relay.sh\`. All processes on 127.0.0.1; relays with limits off; /perf/1.0.0 downloads."
  echo
  echo "| path | MiB/s | RTT p50 (ms) |"
  echo "|---|---|---|"
  echo "| Weft → Weft, direct | $(na "${M[ww_direct]}") | $(na "${M[rtt_ww_direct]}") |"
  echo "| Weft → Weft via **Weft relay** | $(na "${M[ww_wrelay]}") | $(na "${M[rtt_ww_wrelay]}") |"
  echo "| Weft → Weft via js relay | $(na "${M[ww_jrelay]}") | $(na "${M[rtt_ww_jrelay]}") |"
  echo "| js → js, direct | $(na "${M[jj_direct]}") | |"
  echo "| js → js via **js relay** | $(na "${M[jj_jrelay]}") | $(na "${M[rtt_jj_jrelay]}") |"
  echo "| js → js via Weft relay | $(na "${M[jj_wrelay]}") | $(na "${M[rtt_jj_wrelay]}") |"
  echo
  echo "- Weft relayed (Weft ends, Weft relay) / js relayed (js ends, js relay): **$(ratio "${M[ww_wrelay]}" "${M[jj_jrelay]}")×** (goal ≥ 5×)"
  echo "- Weft relay / js relay, same Weft ends: $(ratio "${M[ww_wrelay]}" "${M[ww_jrelay]}")×; same js ends: $(ratio "${M[jj_wrelay]}" "${M[jj_jrelay]}")×"
  echo "- Weft relayed / Weft direct: $(ratio "${M[ww_wrelay]}" "${M[ww_direct]}")"
  echo "- Relayed RTT through the Weft relay: $(na "${M[rtt_ww_wrelay]}") ms (goal ≤ 0.5 ms)"
  echo "- DCUtR, relayed → direct: $(na "${M[punch]}") ms from the first CONNECT (target's view); $(na "${M[dial_to_direct]}") ms from the start of the relayed dial (dialer's view); median of $PUNCHES"
  if [ "${#FAILURES[@]}" -gt 0 ]; then echo; echo "Failures:"; printf -- '- %s\n' "${FAILURES[@]}"; fi
} >"$R"
cat "$R"
[ "${#FAILURES[@]}" -eq 0 ]
