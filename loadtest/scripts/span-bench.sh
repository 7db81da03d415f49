#!/usr/bin/env bash
# The media cost of a span link: node CPU per stream crossing a QUIC link
# between two nodes, beside a baseline measured in the same run.
#
# Two release nodes, A and B, each with CALLS synthetic room systems in
# conference 7900 (TALKERS of them sending tones). Measured twice over the
# same steady window (CPU of both processes from /proc):
#   baseline: the two halves are two separate conferences (no link);
#   spanned:  B is a satellite of A (PUT /api/conferences/7900/span).
# The difference is what the link costs: its legs, the mixes and views it
# needs, QUIC. It is printed per crossing stream: 2 audio mixes (one each
# way) plus 2 x video_flows video streams when VIDEO=1.
#
# Usage: loadtest/scripts/span-bench.sh [CALLS_PER_NODE] [SECONDS]
#   VIDEO=1 FLOWS=4 loadtest/scripts/span-bench.sh 4 20   # with 360p cameras, 4 video flows
set -euo pipefail
cd "$(dirname "$0")/../.."
calls=${1:-10}
secs=${2:-20}
video=${VIDEO:-0}
flows=${FLOWS:-4}
talkers=${TALKERS:-2}
cargo build --release --bin tandem --bin tandem-loadtest
bin=${CARGO_TARGET_DIR:-target}/release
tck=$(getconf CLK_TCK)
conf=7900
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start_node() { # name sip http audio video span
  TANDEM_SIP_PORT=$2 TANDEM_HTTP_LISTEN=127.0.0.1:$3 \
  TANDEM_MEDIA_AUDIO_PORTS=$4 TANDEM_MEDIA_VIDEO_PORTS=$5 \
  TANDEM_TURN_ENABLED=false TANDEM_LOG_LEVEL=warn \
  TANDEM_SPAN_LISTEN=127.0.0.1:$6 TANDEM_SPAN_NAME=$1 TANDEM_SPAN_SECRET=bench TANDEM_H323_PORT=0 \
  TANDEM_SPAN_VIDEO_FLOWS=$([ "$video" = 1 ] && echo "$flows" || echo 0) \
  TANDEM_VIDEO_MAX_RESOLUTION=360p TANDEM_VIDEO_FPS=15 \
    "$bin/tandem" up >"/tmp/tandem-span-bench-$1.log" 2>&1 &
  echo $!
}

run() { # label spanned(0|1)
  local label=$1 spanned=$2
  local a b
  a=$(start_node node-a 25160 28180 44000-44999 45000-45999 25190)
  b=$(start_node node-b 25260 28280 46000-46999 47000-47999 25290)
  pids=("$a" "$b")
  sleep 1
  if [ "$spanned" = 1 ]; then
    curl -sf -X PUT -H 'content-type: application/json' -d '{"home":"127.0.0.1:25190"}' \
      "http://127.0.0.1:28280/api/conferences/$conf/span" >/dev/null
  fi
  local vargs=()
  [ "$video" = 1 ] && vargs=(--video --video-size 640x360 --video-fps 15 --video-bitrate 500000)
  local window=$secs ramp=$((calls / 5 + 4)) loads=()
  for n in a b; do
    local port=$([ $n = a ] && echo 25160 || echo 25260)
    local api=$([ $n = a ] && echo 28180 || echo 28280)
    "$bin/tandem-loadtest" --server 127.0.0.1:$port --api http://127.0.0.1:$api \
      --conference $conf --calls "$calls" --rate 10 --talkers "$talkers" \
      --duration $((window + 4)) --name-prefix "room-$n" "${vargs[@]}" \
      >"/tmp/tandem-span-bench-load-$n.log" 2>&1 &
    loads+=($!)
  done
  sleep "$ramp"
  if [ "$spanned" = 1 ]; then
    local remote
    remote=$(curl -sf "http://127.0.0.1:28180/api/conferences/$conf" | grep -o '"signalling":"span"' | wc -l)
    echo "   (node A lists $remote of B's rooms)" >&2
  fi
  local t0a t0b t0 t1a t1b t1
  t0a=$(cpu_ticks "$a"); t0b=$(cpu_ticks "$b"); t0=$(date +%s.%N)
  sleep "$window"
  t1a=$(cpu_ticks "$a"); t1b=$(cpu_ticks "$b"); t1=$(date +%s.%N)
  local cores
  cores=$(awk -v a=$((t1a - t0a)) -v b=$((t1b - t0b)) -v t="$tck" -v s0="$t0" -v s1="$t1" \
    'BEGIN { printf "%.3f", (a + b) / t / (s1 - s0) }')
  wait "${loads[@]}" 2>/dev/null || true
  for p in "$a" "$b"; do kill -INT "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
  echo "$label: $cores cores (both nodes)" >&2
  echo "$cores"
}

echo "== span link cost: $calls calls per node, $talkers talking each, video=$video (flows $flows), ${secs}s windows"
base=$(run "baseline (two separate conferences)" 0)
span=$(run "spanned (B a satellite of A)" 1)
streams=2
[ "$video" = 1 ] && streams=$((2 + 2 * flows))
awk -v b="$base" -v s="$span" -v n="$streams" 'BEGIN {
  d = s - b
  printf "baseline: %.3f cores   spanned: %.3f cores   ratio spanned/baseline: %.2fx\n", b, s, (b > 0 ? s / b : 0)
  printf "link cost: %.3f cores for %d crossing streams = %.1f ms CPU per second per stream (%.4f cores)\n", d, n, d * 1000 / n, d / n
}'
