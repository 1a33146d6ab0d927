#!/usr/bin/env bash
# Quick start: builds weft, starts `weft p2p serve` on loopback, pings it and measures a transfer,
# then stops it. (Becomes `weft lab up` once the lab exists.)
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
echo "==> building weft" >&2
dotnet publish src/Weft.Cli -c Release -o artifacts/weft -nologo -v q >/dev/null
weft=artifacts/weft/weft
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

echo "==> weft key generate --out $work/node.key" >&2
$weft key generate --out "$work/node.key"
echo "==> weft p2p serve --listen /ip4/127.0.0.1/tcp/0 --key $work/node.key" >&2
$weft p2p serve --listen /ip4/127.0.0.1/tcp/0 --key "$work/node.key" >"$work/serve.out" &
pid=$!
for _ in $(seq 1 100); do grep -q '^listening ' "$work/serve.out" && break; sleep 0.1; done
cat "$work/serve.out"
addr=$(grep -m1 '^listening ' "$work/serve.out" | cut -d' ' -f2)
[ -n "$addr" ] || { echo "serve did not start" >&2; exit 1; }
echo "==> weft p2p ping $addr --count 5" >&2
$weft p2p ping "$addr" --count 5
echo "==> weft p2p perf $addr --upload 256MiB --download 256MiB" >&2
$weft p2p perf "$addr" --upload 256MiB --download 256MiB
