#!/usr/bin/env bash
# Weft throughput / latency / allocation benchmarks on loopback, in ONE run, with ratios.
# Usage: bench/run.sh            (see bench/README.md for what every number means)
# Knobs (environment):
#   BENCH_BYTES          bytes per throughput transfer (default 1073741824 = 1 GiB)
#   BENCH_SOCKET_BYTES   bytes per C# socket-pump run (default 4 GiB; it is fast)
#   BENCH_RUNS           repetitions of each throughput measure; the median is reported (default 3)
#   BENCH_DIAL_COUNT     dial-to-first-stream iterations (default 200, plus 5 warm-up)
#   BENCH_PING_COUNT     ping RTTs on one stream (default 2000, plus 200 warm-up)
#   BENCH_SKIP_BUILD=1   reuse artifacts/weft and artifacts/bench-bin
#   BENCH_SKIP_LAYERS=1  skip the in-process layer breakdown
#   BENCH_ARTIFACTS_PATH dotnet --artifacts-path for the Release builds (default artifacts/obj)
# Output: a markdown table on stdout and in artifacts/bench/results.md; every raw output in artifacts/bench/raw/.
set -uo pipefail
export LC_ALL=C DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BYTES=${BENCH_BYTES:-1073741824}
SOCKET_BYTES=${BENCH_SOCKET_BYTES:-4294967296}
RUNS=${BENCH_RUNS:-3}
DIAL_COUNT=${BENCH_DIAL_COUNT:-200}
PING_COUNT=${BENCH_PING_COUNT:-2000}
DOTNET_ARTIFACTS=${BENCH_ARTIFACTS_PATH:-$ROOT/artifacts/obj}
OUT=$ROOT/artifacts/bench
RAW=$OUT/raw
WEFT=$ROOT/artifacts/weft/weft
BENCH=$ROOT/artifacts/bench-bin/weft-bench
JS_DIR=$ROOT/tests/interop-js
PEER=$JS_DIR/peer.mjs
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# Time limits (seconds) for every process we start.
T_BUILD=900; T_NPM=300; T_APT=300
T_SERVER=3600          # listeners live for the whole run at most
# one transfer of BYTES: 60 s plus 20 s per GiB; sink-bench gets that once per run
T_TRANSFER=$(( 60 + 20 * (BYTES + 1073741823) / 1073741824 ))
T_SHORT=120            # dial/ping/alloc-style commands
T_IPERF=30

mkdir -p "$RAW"
rm -f "$RAW"/*

# ------------------------------------------------------------------ process bookkeeping
PIDS=()
forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" != "$1" ] && keep+=("$p"); done
  PIDS=("${keep[@]}")
}
kill_tree() {
  # every child runs under `timeout`, which puts itself and its command in a new process group
  # (pgid = its pid) and forwards SIGTERM to it; the group kill also reaches grandchildren.
  kill -"$2" "$1" 2>/dev/null || true
  kill -"$2" -- "-$1" 2>/dev/null || true
}
cleanup() {
  local p
  [ "${#PIDS[@]}" -eq 0 ] && return
  for p in "${PIDS[@]}"; do kill_tree "$p" TERM; done
  sleep 1
  for p in "${PIDS[@]}"; do kill_tree "$p" KILL; done
  PIDS=()
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM HUP

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

FAILURES=()
fail() { FAILURES+=("$1"); log "FAILED: $1"; }

# run_bounded SECS NAME CMD...: runs CMD under timeout, stdout -> $RAW/NAME.out, stderr -> $RAW/NAME.err.
# Sets LAST_CPU to the CPU seconds (user+sys) CMD used and LAST_WALL to its wall seconds. Returns CMD's exit code.
run_bounded() {
  local secs=$1 name=$2; shift 2
  local c0 c1 t0 t1 rc=0 p
  children_cpu; c0=$CHILD_CPU; t0=$(date +%s.%N)
  timeout -k 5 "$secs" "$@" >"$RAW/$name.out" 2>"$RAW/$name.err" </dev/null &
  p=$!
  PIDS+=("$p")
  wait "$p" || rc=$?
  forget_pid "$p"
  t1=$(date +%s.%N); children_cpu; c1=$CHILD_CPU
  LAST_CPU=$(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.2f", b-a}')
  LAST_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
  [ "$rc" -eq 124 ] && log "$name: timed out after $secs s"
  return "$rc"
}

# Sets CHILD_CPU to the CPU seconds (user+sys) of all waited-for children of this shell so far. `times`
# must run in this shell (not in a $(...) subshell, whose children counters start at zero).
children_cpu() {
  local f=$RAW/.times
  times >"$f"
  CHILD_CPU=$(awk 'NR==2 { t=0; for (i=1;i<=2;i++) { v=$i; sub(/s$/,"",v); split(v,a,"m"); t+=a[1]*60+a[2] } printf "%.3f", t }' "$f")
}

# start_server SECS NAME KEYWORD CMD...: starts a listener in the background and waits (30 s at most) for
# its first stdout line "KEYWORD <multiaddr>". Sets SERVER_PID (the timeout process) and SERVER_ADDR.
start_server() {
  local secs=$1 name=$2 kw=$3; shift 3
  timeout -k 5 "$secs" "$@" >"$RAW/$name.out" 2>"$RAW/$name.err" </dev/null &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  SERVER_ADDR=
  local i
  for i in $(seq 1 300); do
    SERVER_ADDR=$(awk -v k="$kw" '$1==k {print $2; exit}' "$RAW/$name.out")
    [ -n "$SERVER_ADDR" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "$name did not print '$kw ADDR'; see $RAW/$name.err"
  stop_server "$SERVER_PID"
  return 1
}

stop_server() {
  kill_tree "$1" TERM
  wait "$1" 2>/dev/null || true
  forget_pid "$1"
}

# CPU clock ticks (utime+stime) of the command a `timeout` process runs (its child).
server_ticks() {
  local child
  [ "${1:-0}" = 0 ] && { echo 0; return; }
  child=$(pgrep -P "$1" 2>/dev/null | head -1)
  [ -n "$child" ] && awk '{print $14+$15}' "/proc/$child/stat" 2>/dev/null || echo 0
}

# ------------------------------------------------------------------ numbers
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
median() {
  printf '%s\n' "$@" | awk 'NF && $1 != "" && $1 != "null"' | sort -g |
    awk '{ a[NR]=$1 } END { if (NR==0) print ""; else if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2 }'
}
mib_per_s() { awk -v b="$1" -v s="$2" 'BEGIN { if (s>0) printf "%.1f", b/1048576/s; else print "" }'; }
json_line() { awk -v k="$1" '$1==k { sub(/^[^ ]+ /, ""); print; exit }' "$2"; }
ratio() {   # ratio A B -> "x.xx" or "n/a"
  if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "n/a" }'; else echo "n/a"; fi
}
pct() { if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN { if (b>0) printf "%.1f%%", 100*a/b; else print "n/a" }'; else echo "n/a"; fi; }
or_na() { if [ -n "${1:-}" ]; then echo "$1"; else echo "n/a"; fi; }
jn() { jq -r "$1 // empty" 2>/dev/null; }  # jn FILTER < json

free_port() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
  else
    shuf -i 20000-60000 -n 1
  fi
}

# ------------------------------------------------------------------ setup
log "setup: tools"
if ! command -v iperf3 >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    run_bounded "$T_APT" apt-install apt-get install -y -q iperf3 ||
      { run_bounded "$T_APT" apt-update apt-get update -q && run_bounded "$T_APT" apt-install apt-get install -y -q iperf3; } ||
      fail "apt-get install iperf3 (see $RAW/apt-install.err)"
  else
    fail "iperf3 is missing and we are not root: install it (apt-get install -y iperf3)"
  fi
fi
for tool in dotnet node jq timeout; do command -v "$tool" >/dev/null || { log "missing $tool"; exit 1; }; done

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "setup: dotnet publish (Release) weft and weft-bench"
  run_bounded "$T_BUILD" publish-weft dotnet publish src/Weft.Cli -c Release -o artifacts/weft --artifacts-path "$DOTNET_ARTIFACTS" ||
    { tail -30 "$RAW/publish-weft.out" >&2; log "build of src/Weft.Cli failed"; exit 1; }
  run_bounded "$T_BUILD" publish-bench dotnet publish bench/Weft.Bench -c Release -o artifacts/bench-bin --artifacts-path "$DOTNET_ARTIFACTS" ||
    { tail -30 "$RAW/publish-bench.out" >&2; log "build of bench/Weft.Bench failed"; exit 1; }
fi
[ -x "$WEFT" ] && [ -x "$BENCH" ] || { log "missing $WEFT or $BENCH"; exit 1; }

if [ ! -d "$JS_DIR/node_modules" ]; then
  log "setup: npm ci in tests/interop-js"
  run_bounded "$T_NPM" npm-ci npm ci --prefix "$JS_DIR" --no-audit --no-fund || { log "npm ci failed: see $RAW/npm-ci.err"; exit 1; }
fi

# ------------------------------------------------------------------ machine load
# Busy CPU seconds of the whole machine (from /proc/stat), to tell how much other processes used during the run.
machine_busy() { awk -v t="$CLK_TCK" '$1=="cpu" { printf "%.1f", ($2+$3+$4+$7+$8+$9)/t; exit }' /proc/stat; }
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_START%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > 0.5 * n) }'; then
  log "WARNING: load average is $LOAD_START on $(nproc) cores: other processes will skew the numbers"
fi
children_cpu; OUR_CPU0=$CHILD_CPU; BUSY0=$(machine_busy); T_START=$(date +%s)

# ------------------------------------------------------------------ (a) iperf3
declare -A RUNS_OF=() MED=()
add_run() { RUNS_OF[$1]="${RUNS_OF[$1]:-} $2"; }   # add_run KEY MIBPS

if command -v iperf3 >/dev/null; then
  log "(a) iperf3 single stream, ${RUNS}x 5 s"
  for r in $(seq 1 "$RUNS"); do
    port=$(free_port)
    timeout -k 5 "$T_IPERF" iperf3 -s -1 -B 127.0.0.1 -p "$port" >"$RAW/iperf-s-$r.out" 2>&1 </dev/null &
    sp=$!; PIDS+=("$sp")
    for i in $(seq 1 50); do ss -ltn "sport = :$port" 2>/dev/null | grep -q LISTEN && break; sleep 0.1; done
    if run_bounded "$T_IPERF" "iperf-c-$r" iperf3 -c 127.0.0.1 -p "$port" -t 5 -J; then
      bps=$(jn '.end.sum_received.bits_per_second' <"$RAW/iperf-c-$r.out")
      add_run a "$(awk -v b="$bps" 'BEGIN{printf "%.1f", b/8/1048576}')"
    else
      fail "iperf3 run $r (see $RAW/iperf-c-$r.out)"
    fi
    stop_server "$sp"
  done
fi

# ------------------------------------------------------------------ (b) C# socket pump
log "(b) C# socket pump, ${RUNS}x $SOCKET_BYTES bytes"
for r in $(seq 1 "$RUNS"); do
  if run_bounded "$T_TRANSFER" "socket-pump-$r" "$BENCH" socket-pump --bytes "$SOCKET_BYTES"; then
    add_run b "$(json_line RESULT "$RAW/socket-pump-$r.out" | jn .mibPerSec)"
  else
    fail "socket-pump run $r (see $RAW/socket-pump-$r.err)"
  fi
done

# ------------------------------------------------------------------ weft perf helper
# weft_perf KEY NAME ADDR up|down: one `weft p2p perf` process; the server's CPU is read from /proc.
# Upload time = uploadSeconds + downloadSeconds (with --download 0 that is first byte -> the server's
# EOF, i.e. until the server drained everything, the same end point the js client uses).
CPU_NOTES=()
weft_perf() {
  local key=$1 name=$2 addr=$3 dir=$4 up=0 down=0 j s st0 st1
  if [ "$dir" = up ]; then up=$BYTES; else down=$BYTES; fi
  st0=$(server_ticks "${CUR_SERVER_PID:-0}")
  if run_bounded "$T_TRANSFER" "$name" "$WEFT" p2p perf "$addr" --upload "$up" --download "$down" --json; then
    st1=$(server_ticks "${CUR_SERVER_PID:-0}")
    j=$(grep -m1 '^{' "$RAW/$name.out")
    if [ "$dir" = up ]; then s=$(echo "$j" | jq -r '.uploadSeconds + .downloadSeconds'); else s=$(echo "$j" | jn .downloadSeconds); fi
    add_run "$key" "$(mib_per_s "$BYTES" "$s")"
    CPU_NOTES+=("$key $name: client $(calc "$LAST_CPU / $LAST_WALL" 2) cores over the process's ${LAST_WALL}s; server $(calc "($st1-$st0)/$CLK_TCK" 2) CPU s during it (transfer $(calc "$s" 3)s)")
  else
    fail "$name (see $RAW/$name.err; the remaining runs of this series are skipped)"
    return 1
  fi
}

# js_perf KEY NAME ADDR up|down: one `node peer.mjs dial ADDR perf` process.
js_perf() {
  local key=$1 name=$2 addr=$3 dir=$4 up=0 down=0 j s st0 st1
  if [ "$dir" = up ]; then up=$BYTES; else down=$BYTES; fi
  st0=$(server_ticks "${CUR_SERVER_PID:-0}")
  if run_bounded "$T_TRANSFER" "$name" node "$PEER" dial "$addr" perf --upload "$up" --download "$down" --deadline-s "$T_TRANSFER"; then
    st1=$(server_ticks "${CUR_SERVER_PID:-0}")
    j=$(json_line RESULT "$RAW/$name.out")
    if [ "$dir" = up ]; then s=$(echo "$j" | jn .uploadSeconds); else s=$(echo "$j" | jn .downloadSeconds); fi
    add_run "$key" "$(mib_per_s "$BYTES" "$s")"
    CPU_NOTES+=("$key $name: client $(calc "$LAST_CPU / $LAST_WALL" 2) cores over the process's ${LAST_WALL}s; server $(calc "($st1-$st0)/$CLK_TCK" 2) CPU s during it (transfer $(calc "$s" 3)s)")
  else
    fail "$name (see $RAW/$name.err; the remaining runs of this series are skipped)"
    return 1
  fi
}

# ------------------------------------------------------------------ weft serve (c, e2, dial, ping)
WEFT_ADDR=
if start_server "$T_SERVER" weft-serve listening "$WEFT" p2p serve --listen /ip4/127.0.0.1/tcp/0; then
  WEFT_PID=$SERVER_PID; WEFT_ADDR=$SERVER_ADDR
  log "weft serve at $WEFT_ADDR"
else
  fail "weft p2p serve did not start (see $RAW/weft-serve.err)"
fi

if [ -n "$WEFT_ADDR" ]; then
  CUR_SERVER_PID=$WEFT_PID
  log "(c) Weft<->Weft, ${RUNS}x upload + ${RUNS}x download of $BYTES bytes"
  for r in $(seq 1 "$RUNS"); do weft_perf c_up "ww-up-$r" "$WEFT_ADDR" up || break; done
  for r in $(seq 1 "$RUNS"); do weft_perf c_down "ww-down-$r" "$WEFT_ADDR" down || break; done
  log "(e) js client -> Weft listener"
  for r in $(seq 1 "$RUNS"); do js_perf e_jw_up "jw-up-$r" "$WEFT_ADDR" up || break; done
  for r in $(seq 1 "$RUNS"); do js_perf e_jw_down "jw-down-$r" "$WEFT_ADDR" down || break; done
fi

# ------------------------------------------------------------------ (d) js <-> js
log "(d) js<->js sink-bench perf-up / perf-down, $RUNS runs each"
for proto in perf-up perf-down; do
  if run_bounded "$((T_TRANSFER * RUNS))" "jj-$proto" node "$PEER" sink-bench --bytes "$BYTES" --runs "$RUNS" --proto "$proto" --deadline-s "$((T_TRANSFER * RUNS))"; then
    key=d_up; [ "$proto" = perf-down ] && key=d_down
    while read -r line; do add_run "$key" "$(echo "${line#RESULT }" | jn .mibPerSec)"; done < <(grep '^RESULT ' "$RAW/jj-$proto.out")
  else
    fail "js sink-bench $proto (see $RAW/jj-$proto.err)"
  fi
done

# ------------------------------------------------------------------ (e) Weft client -> js listener
JS_ADDR=
if start_server "$T_SERVER" js-listen LISTEN node "$PEER" listen --deadline-s "$T_SERVER"; then
  JS_PID=$SERVER_PID; JS_ADDR=$SERVER_ADDR
  CUR_SERVER_PID=$JS_PID
  log "(e) Weft client -> js listener at $JS_ADDR"
  for r in $(seq 1 "$RUNS"); do weft_perf e_wj_up "wj-up-$r" "$JS_ADDR" up || break; done
  for r in $(seq 1 "$RUNS"); do weft_perf e_wj_down "wj-down-$r" "$JS_ADDR" down || break; done
  log "js<->js ping RTT on one stream (reference)"
  if run_bounded "$T_SHORT" js-ping node "$PEER" dial "$JS_ADDR" ping --count 200 --reuse-stream --deadline-s "$T_SHORT"; then
    JS_PING=$(json_line RESULT "$RAW/js-ping.out" | jq -r '.rttsMs | sort | .[length/2|floor]')
    JS_PING_P90=$(json_line RESULT "$RAW/js-ping.out" | jq -r '.rttsMs | sort | .[(length*0.9|ceil)-1]')
  else
    fail "js ping (see $RAW/js-ping.err)"
  fi
  stop_server "$JS_PID"
else
  fail "js listener did not start (see $RAW/js-listen.err)"
fi
CUR_SERVER_PID=

# ------------------------------------------------------------------ latency: dial, ping
if [ -n "$WEFT_ADDR" ]; then
  log "dial-to-first-stream, $DIAL_COUNT dials (+5 warm-up)"
  run_bounded "$T_SHORT" dial "$BENCH" dial --count "$DIAL_COUNT" --warmup 5 --target "$WEFT_ADDR" || fail "dial mode (see $RAW/dial.err)"
  DIAL=$(json_line RESULT "$RAW/dial.out")
  log "ping RTT on one stream, $PING_COUNT pings (+200 warm-up)"
  run_bounded "$T_SHORT" ping "$BENCH" ping --count "$PING_COUNT" --warmup 200 --target "$WEFT_ADDR" || fail "ping mode (see $RAW/ping.err)"
  PING=$(json_line RESULT "$RAW/ping.out")
  run_bounded "$T_SHORT" cli-ping "$WEFT" p2p ping "$WEFT_ADDR" --count 200 || fail "weft p2p ping (see $RAW/cli-ping.err)"
  CLI_PING=$(grep -m1 'pings, rtt min/median/max' "$RAW/cli-ping.out" | sed 's/.*= //')
  stop_server "$WEFT_PID"
fi

# ------------------------------------------------------------------ allocations, layers
log "alloc mode (in-process, both hosts), up and down"
ALLOC_UP=; ALLOC_DOWN=
run_bounded "$T_TRANSFER" alloc-up "$BENCH" alloc --bytes "$BYTES" --direction up && ALLOC_UP=$(json_line RESULT "$RAW/alloc-up.out") || fail "alloc up (see $RAW/alloc-up.err)"
run_bounded "$T_TRANSFER" alloc-down "$BENCH" alloc --bytes "$BYTES" --direction down && ALLOC_DOWN=$(json_line RESULT "$RAW/alloc-down.out") || fail "alloc down (see $RAW/alloc-down.err)"
ALLOC_TRACE=
run_bounded "$T_TRANSFER" alloc-trace "$BENCH" alloc --bytes "$BYTES" --direction up --alloc-trace on && ALLOC_TRACE=$(json_line RESULT "$RAW/alloc-trace.out") || fail "alloc trace (see $RAW/alloc-trace.err)"
LAYERS=
LAYER_LIST=tcp,tcp+yamux,tcp+noise,tcp+noise+yamux,mem+noise,mem+yamux,kestrel,kestrel+noise+yamux
if [ "${BENCH_SKIP_LAYERS:-0}" != 1 ]; then
  log "layer breakdown (in-process)"
  run_bounded "$((T_TRANSFER * 2))" layers "$BENCH" layers --bytes "$BYTES" --layers "$LAYER_LIST" && LAYERS=$(json_line RESULT "$RAW/layers.out") || fail "layers (see $RAW/layers.err)"
fi

# ------------------------------------------------------------------ report
children_cpu; OUR_CPU=$(calc "$CHILD_CPU - $OUR_CPU0" 1); BUSY=$(calc "$(machine_busy) - $BUSY0" 1); ELAPSED=$(( $(date +%s) - T_START ))
OTHER_CPU=$(calc "$BUSY - $OUR_CPU" 1)
for k in a b c_up c_down d_up d_down e_wj_up e_wj_down e_jw_up e_jw_down; do
  # shellcheck disable=SC2086
  MED[$k]=$(median ${RUNS_OF[$k]:-})
done
runs_of() { local v; v=$(echo ${RUNS_OF[$1]:-} | sed 's/ /, /g'); or_na "$v"; }
row() { echo "| $1 | $2 | $(or_na "${MED[$3]}") | $(runs_of "$3") |"; }
jf() { if [ -n "$1" ]; then echo "$1" | jq -r "$2 // \"n/a\""; else echo n/a; fi; }

REPORT=$OUT/results.md
{
  echo "# Weft loopback benchmarks"
  echo
  echo "Run $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -r);"
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty tree)'), dotnet $(dotnet --version), node $(node --version), $(iperf3 --version 2>/dev/null | head -1 | awk '{print $1" "$2}')."
  echo "Load average at the start: $LOAD_START. During the ${ELAPSED} s of measures the machine was busy for $BUSY CPU-seconds, $OUR_CPU of them ours, so **other processes used about $OTHER_CPU CPU-seconds** (10–15 on a quiet machine, because the listener process that sink-bench starts is not counted as ours; much more means noisy numbers)."
  echo "Throughput: one stream, one direction, 127.0.0.1, $BYTES bytes per transfer (iperf3: 5 s), median of $RUNS runs, MiB/s = 2^20 bytes/s."
  echo
  echo "## Throughput"
  echo
  echo "| # | measure | MiB/s (median) | runs (MiB/s) |"
  echo "|---|---|---:|---|"
  row a "iperf3, raw TCP" a
  row b "C# socket pump (weft-bench socket-pump, $SOCKET_BYTES B)" b
  row "c up" "Weft → Weft (weft p2p perf --upload)" c_up
  row "c down" "Weft ← Weft (weft p2p perf --download)" c_down
  row "d up" "js → js (sink-bench perf-up)" d_up
  row "d down" "js ← js (sink-bench perf-down)" d_down
  row "e up" "Weft client → js listener (upload)" e_wj_up
  row "e down" "Weft client ← js listener (download)" e_wj_down
  row "e up" "js client → Weft listener (upload)" e_jw_up
  row "e down" "js client ← Weft listener (download)" e_jw_down
  echo
  echo "## Ratios"
  echo
  echo "| ratio | upload | download | target |"
  echo "|---|---:|---:|---|"
  echo "| (c) / (a) Weft vs iperf3 | $(pct "${MED[c_up]}" "${MED[a]}") | $(pct "${MED[c_down]}" "${MED[a]}") | ≥ 40% |"
  echo "| (c) / (b) Weft vs C# socket pump | $(pct "${MED[c_up]}" "${MED[b]}") | $(pct "${MED[c_down]}" "${MED[b]}") | |"
  echo "| (c) / (d) Weft vs js-libp2p | $(ratio "${MED[c_up]}" "${MED[d_up]}")× | $(ratio "${MED[c_down]}" "${MED[d_down]}")× | ≥ 4× |"
  echo "| (e) / (d) Weft client ↔ js listener vs js↔js | $(ratio "${MED[e_wj_up]}" "${MED[d_up]}")× | $(ratio "${MED[e_wj_down]}" "${MED[d_down]}")× | |"
  echo "| (e) / (d) js client ↔ Weft listener vs js↔js | $(ratio "${MED[e_jw_up]}" "${MED[d_up]}")× | $(ratio "${MED[e_jw_down]}" "${MED[d_down]}")× | |"
  echo "| (b) / (a) C# socket pump vs iperf3 | $(pct "${MED[b]}" "${MED[a]}") | | |"
  echo
  echo "## Latency"
  echo
  echo "| measure | p50 | p90 | p99 | notes |"
  echo "|---|---:|---:|---:|---|"
  echo "| dial → first stream negotiated (ms) | $(jf "${DIAL:-}" .p50FirstStreamMs) | $(jf "${DIAL:-}" .p90FirstStreamMs) | $(jf "${DIAL:-}" .p99FirstStreamMs) | fresh host + key each time, $(jf "${DIAL:-}" .count) dials after $(jf "${DIAL:-}" .warmupExcluded) warm-up (excluded); TCP+Noise+yamux+multistream |"
  if [ -n "${DIAL:-}" ] && [ "$(jf "$DIAL" .failures)" != 0 ]; then
    echo "| dial failures | $(jf "$DIAL" .failures) | | | first: $(jf "$DIAL" .firstError | tr '|' '/') |"
    FAILURES+=("dial mode: $(jf "$DIAL" .failures) failed dials (see $RAW/dial.err)")
  fi
  echo "| dial → connection up (ms) | $(jf "${DIAL:-}" .p50ConnectMs) | $(jf "${DIAL:-}" .p90ConnectMs) | $(jf "${DIAL:-}" .p99ConnectMs) | same dials, before the stream is opened |"
  echo "| first ping on the new stream (ms) | $(jf "${DIAL:-}" .p50FirstPingMs) | $(jf "${DIAL:-}" .p90FirstPingMs) | $(jf "${DIAL:-}" .p99FirstPingMs) | |"
  echo "| ping RTT, one stream (µs) | $(jf "${PING:-}" .p50Us) | $(jf "${PING:-}" .p90Us) | $(jf "${PING:-}" .p99Us) | weft-bench ping, $(jf "${PING:-}" .count) pings after $(jf "${PING:-}" .warmupExcluded) warm-up |"
  echo "| weft p2p ping (ms, min/median/max) | $(or_na "${CLI_PING:-}") | | | CLI, 200 pings on one stream, no warm-up |"
  echo "| js ↔ js ping --reuse-stream (ms) | $(or_na "${JS_PING:-}") | $(or_na "${JS_PING_P90:-}") | | reference, 200 pings on one stream |"
  echo
  echo "## Allocations (weft-bench alloc: two hosts in one process, one perf stream)"
  echo
  echo "| direction | MiB/s | bytes allocated per MiB moved (both sides together) | gen0 / gen1 / gen2 GCs | CPU s per GiB | cores used |"
  echo "|---|---:|---:|---|---:|---:|"
  for d in up down; do
    if [ "$d" = up ]; then j=$ALLOC_UP; else j=$ALLOC_DOWN; fi
    echo "| $d | $(jf "$j" .mibPerSec) | $(jf "$j" .allocBytesPerMiB) | $(jf "$j" .gen0) / $(jf "$j" .gen1) / $(jf "$j" .gen2) | $(jf "$j" .cpuSecondsPerGiB) | $(jf "$j" .coresUsed) |"
  done
  if [ -n "$ALLOC_TRACE" ]; then
    echo
    echo "Where the allocated bytes are (a second \`alloc --direction up --alloc-trace on\` run; GC AllocationTick samples, bytes per MiB moved by type, size class and heap):"
    echo
    echo "$ALLOC_TRACE" | jq -r '.sampledAllocBytesPerMiBByType | to_entries[] | "- \(.key): \(.value)"'
  fi
  if [ -n "$LAYERS" ]; then
    echo
    echo "## Layer breakdown (weft-bench layers: one process, both ends, one direction)"
    echo
    echo "tcp = Weft's TcpTransport as it is now; mem = an in-memory pipe pair; kestrel = Kestrel's socket pipes (4 KiB blocks, a"
    echo "zero-byte read before each read), Weft's first transport, for comparison."
    echo
    echo "| layers | MiB/s | cores used | bytes allocated per MiB |"
    echo "|---|---:|---:|---:|"
    for l in ${LAYER_LIST//,/ }; do
      echo "| $l | $(jf "$LAYERS" ".[\"$l\"].mibPerSec") | $(jf "$LAYERS" ".[\"$l\"].coresUsed") | $(jf "$LAYERS" ".[\"$l\"].allocBytesPerMiB") |"
    done
  fi
  echo
  echo "## CPU per transfer"
  echo
  for n in "${CPU_NOTES[@]}"; do echo "- $n"; done
  if [ "${#FAILURES[@]}" -gt 0 ]; then
    echo
    echo "## Failures"
    echo
    for f in "${FAILURES[@]}"; do echo "- $f"; done
  fi
  echo
  echo "Raw outputs: artifacts/bench/raw/."
} >"$REPORT"

cat "$REPORT"
log "wrote $REPORT"
[ "${#FAILURES[@]}" -eq 0 ]
