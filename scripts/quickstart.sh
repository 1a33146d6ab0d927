#!/usr/bin/env bash
# Quick start: installs what the lab needs (as root: iproute2, iptables, haproxy, curl, dig), builds weft, and runs
# `weft lab up`: two relays, two LANs of two nodes behind NAT (network namespaces when root, loopback processes
# otherwise), the demo service on the LAN 2 nodes reached from LAN 1 through the service proxy, and two cloud
# replicas behind a load balancer. It leaves the lab running and prints what to try; `weft lab down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
log() { printf '==> %s\n' "$*" >&2; }

need=()
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v curl >/dev/null || need+=(curl)
command -v dig >/dev/null || need+=(bind9-dnsutils)   # to ask the nodes' edge DNS
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian packages: ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    log "not root: cannot install ${need[*]}; the lab runs on loopback and leaves out what is missing"
  fi
fi

log "building weft (dotnet publish src/Weft.Cli -c Release -o artifacts/weft)"
dotnet publish src/Weft.Cli -c Release -o artifacts/weft -nologo -v q >/dev/null
weft="$(pwd)/artifacts/weft/weft"
"$weft" lab down >/dev/null 2>&1 || true   # a lab left from an earlier run
log "weft lab up"
"$weft" lab up
log "weft lab status"
"$weft" lab status
