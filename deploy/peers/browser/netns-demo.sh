#!/bin/bash
# End-to-end check of the browser harness, alone in a private network namespace:
# coturn + Janus on 10.99.0.1, one headless Chromium publishing a red picture
# and a 440 Hz tone, one headless Chromium subscribing to it through coturn
# with iceTransportPolicy "relay". Prints the subscriber's stats and exits 0
# only if it decoded rising frames, saw red and heard ~440 Hz.
#
#   usage: deploy/peers/browser/netns-demo.sh [SUBSCRIBE_SECONDS]     (as root)
#   env:   KEEP=1 keeps the temp folder (logs, configs, *.jsonl); SIMULCAST=1 publishes
#          simulcast and subscribes to substream ${SUBSTREAM:-0}
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PEERS=$(cd "$HERE/.." && pwd)
SECS=${1:-12}

# Inside a fresh namespace with coturn and Janus up (netns-peers.sh), run the
# rest of this script again.
if [ -z "${TANDEM_PEERS_DIR:-}" ]; then
  exec "$HERE/netns-peers.sh" bash "$0" "$@"
fi
DIR=$TANDEM_PEERS_DIR
PIDS=()
cleanup() {
  # the node drivers close their Chromium on SIGTERM
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT

TURN=(--turn "$TANDEM_TURN_URL" --turn-user test --turn-pass test123 --relay)
SIM=()
SUBL=()
if [ "${SIMULCAST:-}" = 1 ]; then SIM=(--simulcast --size 1280x720); SUBL=(--substream "${SUBSTREAM:-0}"); fi

# ---- publisher: red picture, 440 Hz ---------------------------------------------
# (client.js waits for Janus' HTTP API itself)
node "$HERE/client.js" publish --room 4711 --create --display red-440 \
  --y4m "$DIR/red.y4m" --color red --wav "$DIR/tone-440.wav" --tone 440 \
  "${SIM[@]}" "${TURN[@]}" --duration 0 >"$DIR/pub.jsonl" 2>"$DIR/pub.log" &
PUB=$!
PIDS+=("$PUB")
# the subscriber would wait for the publisher by itself; waiting here keeps its
# time-to-first-frame free of the publisher's start-up
for _ in $(seq 300); do grep -q '"event":"webrtc".*"up":true' "$DIR/pub.jsonl" && break; sleep 0.1; done

# ---- subscriber through coturn, relay only ------------------------------------------
set +e
node "$HERE/client.js" subscribe --room 4711 --match '^red-' --count 1 "${SUBL[@]}" \
  "${TURN[@]}" --duration "$SECS" --expect-frames --expect-color red --expect-tone 440 \
  >"$DIR/sub.jsonl" 2>"$DIR/sub.log" &
SUB=$!
PIDS+=("$SUB")

# CPU as ps sees it (lifetime average of each process), summed over each
# driver's process tree (node + Chromium and its children), 2 s before the end
tree_cpu() { # PID -> "pcpu rss_MiB nprocs"
  ps -eo pid=,ppid=,pcpu=,rss= | awk -v root="$1" '
    { pp[$1]=$2; cpu[$1]=$3; rss[$1]=$4 }
    END { n=0; c=0; r=0; for (p in pp) { q=p; while (q && q!=root && q in pp) q=pp[q];
          if (q==root) { n++; c+=cpu[p]; r+=rss[p] } } printf "%.1f %d %d\n", c, r/1024, n }'
}
sleep $((SECS > 4 ? SECS - 2 : 2))
read -r PUB_CPU PUB_RSS PUB_N < <(tree_cpu "$PUB")
read -r SUB_CPU SUB_RSS SUB_N < <(tree_cpu "$SUB")
wait "$SUB"; RC=$?
kill -TERM "$PUB"; wait "$PUB"   # the publisher prints its summary on SIGTERM
set -e

echo "== subscriber stats (every second)"
grep '"type":"stats"' "$DIR/sub.jsonl" | node -e '
  const lines = require("fs").readFileSync(0, "utf8").trim().split("\n").filter(Boolean).map(JSON.parse);
  for (const l of lines) for (const f of l.feeds || []) {
    const v = f.video[0] || {}, a = f.audio[0] || {}, p = v.picture || {};
    console.log(`t=${l.t}s ${f.display} video ${v.codec} ${v.frameWidth}x${v.frameHeight} decoded=${v.framesDecoded} fps=${v.framesPerSecond} lost=${v.packetsLost} colour=${p.dominant} rgb=${p.rgb} bright=${p.brightness} motion=${p.motion} | audio ${a.codec} level=${a.audioLevel} energy=${a.totalAudioEnergy} samples=${a.totalSamplesReceived} peak=${a.peakHz}Hz@${a.peakDb}dB | ${l.pair && l.pair.local}`);
  }'
echo "== events"
grep -v '"type":"stats"' "$DIR/sub.jsonl" | grep -v '"event":"summary"' | cut -c1-300
echo "== subscriber summary"
grep '"event":"summary"' "$DIR/sub.jsonl"
echo "== publisher (last stats line)"
grep '"type":"stats"' "$DIR/pub.jsonl" | tail -1 | cut -c1-1200
echo "== timing"
grep -h 'first decoded' "$DIR/sub.log" || true
grep -h '"event":"summary"' "$DIR/sub.jsonl" | node -e '
  const s = JSON.parse(require("fs").readFileSync(0, "utf8"));
  console.log(`subscriber: Chromium launch ${s.launchMs} ms, then page start -> first decoded frame ${Object.entries(s.marks).filter(([k]) => k.startsWith("firstFrameMs")).map(([k, v]) => k.slice(13) + " " + v + " ms").join(", ")}`);
  const b = s.browser || {};
  console.log(`subscriber Chromium tree: ${b.steadyCpuPercent}% of one core over the last ${b.steadySeconds} s (steady), ${b.cpuPercent}% since launch, ${b.pssMiB} MiB PSS, ${b.processes} processes`);'
grep -h '"event":"summary"' "$DIR/pub.jsonl" | node -e '
  const s = JSON.parse(require("fs").readFileSync(0, "utf8")), b = s.browser || {};
  console.log(`publisher: Chromium launch ${s.launchMs} ms, page start -> media up ${s.marks["webrtcUpMs.pub"]} ms`);
  console.log(`publisher Chromium tree: ${b.steadyCpuPercent}% of one core over the last ${b.steadySeconds} s (steady), ${b.cpuPercent}% since launch, ${b.pssMiB} MiB PSS, ${b.processes} processes`);'
echo "== CPU by ps (node driver + Chromium tree; %CPU of one core averaged over each process' life)"
echo "publisher:  ${PUB_CPU}% CPU, ${PUB_RSS} MiB RSS, ${PUB_N} processes"
echo "subscriber: ${SUB_CPU}% CPU, ${SUB_RSS} MiB RSS, ${SUB_N} processes"
if [ $RC -eq 0 ]; then echo "PASS: subscriber decoded rising red frames and heard 440 Hz through coturn (relay)"; else
  echo "FAIL (subscriber exit $RC)"; tail -20 "$DIR/sub.log" >&2; fi
exit $RC
