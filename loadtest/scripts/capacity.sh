#!/usr/bin/env bash
# Opus participants per core in one conference, ≤ 3 talking: the issue-2
# capacity benchmark. Starts a release node on spare ports, runs
# tandem-loadtest against it twice — with the node's default (legs flagged
# "no voice" and not in the mix are not decoded) and with every leg decoded —
# and prints both beside the same-run raw-libopus baseline.
# Usage: loadtest/scripts/capacity.sh [CALLS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
calls=${1:-300}
secs=${2:-20}
cargo build --release --bin tandem --bin tandem-loadtest
run() {
  local label=$1 skip=$2
  TANDEM_SIP_PORT=25060 TANDEM_HTTP_LISTEN=127.0.0.1:28080 \
  TANDEM_MEDIA_AUDIO_PORTS=44000-45999 TANDEM_MEDIA_VIDEO_PORTS=46000-46999 \
  TANDEM_MEDIA_SKIP_SILENT_DECODE=$skip TANDEM_LOG_LEVEL=warn \
    target/release/tandem up >/tmp/tandem-capacity-node.log 2>&1 &
  local pid=$!
  sleep 1
  echo "== $label"
  target/release/tandem-loadtest --server 127.0.0.1:25060 --api http://127.0.0.1:28080 \
    --node-pid "$pid" --calls "$calls" --rate 40 --talkers 3 --duration "$secs" \
    | grep -E 'calls ok|node CPU|participants per core|baseline|perception|lost'
  kill -INT "$pid"; wait "$pid" || true
}
run "default: silent legs not decoded" true
run "every leg decoded" false
