#!/usr/bin/env bash
# Installs what the tests need, builds, runs every test project, and prints one closing line:
#   tests: N passed, N failed[, N skipped]
# Exit status is non-zero if any test failed or a project did not build or run.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out="$root/artifacts/test-results"
rm -rf "$out"; mkdir -p "$out"

log() { printf '==> %s\n' "$*" >&2; }

# 1. System packages (root only; a developer without root gets a clear note).
need_pkgs=()
command -v node >/dev/null || need_pkgs+=(nodejs npm)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v iptables >/dev/null || need_pkgs+=(iptables)
command -v ethtool >/dev/null || need_pkgs+=(ethtool)       # the lab's delay links turn offloads off
command -v python3 >/dev/null || need_pkgs+=(python3)       # the lab's delay bridge and probes
# cloud tests: the ownership directory, the edge broker and the load balancer in front of the replicas
command -v etcd >/dev/null || [ -x /usr/bin/etcd ] || need_pkgs+=(etcd-server)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need_pkgs+=(mosquitto)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need_pkgs+=(haproxy)
# edge DNS tests: dig asks, dnsmasq is the upstream
command -v dig >/dev/null || need_pkgs+=(bind9-dnsutils)
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || need_pkgs+=(dnsmasq-base)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian packages: ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    log "not root: cannot install ${need_pkgs[*]}; tests that need them will say they were skipped"
  fi
fi

# 2. js-libp2p, the independent interop peer (pinned by the checked-in lock file).
if [ -f tests/interop-js/package-lock.json ]; then
  log "npm ci (tests/interop-js)"
  (cd tests/interop-js && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || { echo "npm ci failed" >&2; echo "tests: 0 passed, 1 failed"; exit 1; }
fi

# 3. Build once, then run each test project.
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
log "dotnet build"
if ! dotnet build Weft.slnx -c Release -nologo -v q >"$out/build.log" 2>&1; then
  grep -E 'error' "$out/build.log" | sort -u | head -40 >&2
  echo "tests: 0 passed, 1 failed"
  exit 1
fi

status=0
for proj in tests/*/*.Tests.csproj; do
  name=$(basename "$proj" .csproj)
  log "dotnet test $name"
  timeout 1500 dotnet test "$proj" -c Release --no-build -nologo \
    --logger "trx;LogFileName=$name.trx" --results-directory "$out" \
    --logger "console;verbosity=normal" >"$out/$name.log" 2>&1
  rc=$?
  grep -E '^\s*(Failed|Skipped) ' "$out/$name.log" | head -50 >&2
  grep -E '(Passed!|Failed!|Total tests|error)' "$out/$name.log" | tail -3 >&2
  if [ $rc -ne 0 ] && [ ! -f "$out/$name.trx" ]; then
    echo "$name did not run (exit $rc)" >&2; tail -20 "$out/$name.log" >&2; status=1
  elif [ $rc -ne 0 ]; then status=1; fi
done

passed=0; failed=0; skipped=0
for trx in "$out"/*.trx; do
  [ -f "$trx" ] || continue
  c=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
  get() { echo "$c" | sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p"; }
  p=$(get passed); f=$(get failed); e=$(get error); t=$(get total); x=$(get executed)
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0} + ${e:-0}))
  skipped=$((skipped + ${t:-0} - ${x:-0}))
done
[ "$status" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
if [ "$skipped" -gt 0 ]; then
  echo "tests: $passed passed, $failed failed, $skipped skipped"
else
  echo "tests: $passed passed, $failed failed"
fi
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
