#!/usr/bin/env bash
# Video participants per core in one conference: every leg sends a replayed
# H.264 clip (encoded once before the calls; a keyframe each time it loops)
# and receives the node's composed layout; one leg decodes it and saves what
# it saw. Starts a release node on spare ports, runs tandem-loadtest --video
# against it and prints the node's CPU per participant beside the same-run
# raw-OpenH264 decode baseline.
# Usage: loadtest/scripts/video-capacity.sh [CALLS] [SECONDS] [WxH] [FPS]
# The layout is 1+7 unless LAYOUT says otherwise (LAYOUT=4x4 ...): with 1+7
# eight participants are visible, so the node runs at most 1 + 8 encoders.
set -euo pipefail
cd "$(dirname "$0")/../.."
calls=${1:-20}
secs=${2:-20}
size=${3:-1280x720}
fps=${4:-30}
cargo build --release --bin tandem --bin tandem-loadtest
TANDEM_SIP_PORT=25160 TANDEM_HTTP_LISTEN=127.0.0.1:28180 \
TANDEM_MEDIA_AUDIO_PORTS=47000-47999 TANDEM_MEDIA_VIDEO_PORTS=48000-48999 \
TANDEM_LOG_LEVEL=warn TANDEM_VIDEO_LAYOUT="${LAYOUT:-1+7}" \
  target/release/tandem up >/tmp/tandem-video-capacity-node.log 2>&1 &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
sleep 1
target/release/tandem-loadtest --server 127.0.0.1:25160 --api http://127.0.0.1:28180 \
  --node-pid "$pid" --calls "$calls" --rate 10 --talkers 3 --duration "$secs" \
  --video --video-size "$size" --video-fps "$fps" --video-decode-sample 1 \
  --video-snapshot /tmp/tandem-video-capacity-seen.ppm \
  | grep -vE '^\{'
