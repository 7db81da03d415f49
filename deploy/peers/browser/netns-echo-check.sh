#!/bin/bash
# Two headless Chromium clients in one VideoRoom, each publishing its own
# colour and tone and subscribing to the other, both through coturn (relay):
#   red-440   must see green and hear 880 Hz, and never hear 440 Hz;
#   green-880 must see red and hear 440 Hz, and never hear 880 Hz.
# The pattern a cascade test uses for "a client never hears itself back":
# point the --subscribe side at the feed Tandem sends back instead.
#
#   usage: deploy/peers/browser/netns-echo-check.sh [SECONDS]      (as root)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SECS=${1:-12}
if [ -z "${TANDEM_PEERS_DIR:-}" ]; then
  exec "$HERE/netns-peers.sh" bash "$0" "$@"
fi
DIR=$TANDEM_PEERS_DIR
T=(--turn "$TANDEM_TURN_URL" --turn-user test --turn-pass test123 --relay --room 4711 --create
   --duration "$SECS" --quiet --expect-frames)

node "$HERE/client.js" publish --display red-440 --color red --tone 440 "${T[@]}" \
  --subscribe --match '^green-' --expect-color green --expect-tone 880 --expect-not-tone 440 \
  >"$DIR/red.jsonl" 2>"$DIR/red.log" &
A=$!
node "$HERE/client.js" publish --display green-880 --color green --tone 880 "${T[@]}" \
  --subscribe --match '^red-' --expect-color red --expect-tone 440 --expect-not-tone 880 \
  >"$DIR/green.jsonl" 2>"$DIR/green.log" &
B=$!
trap 'kill -TERM $A $B 2>/dev/null || true' EXIT
set +e
wait $A; RA=$?
wait $B; RB=$?
set -e
for n in red green; do
  grep -h '"event":"summary"' "$DIR/$n.jsonl" | node -e '
    const s = JSON.parse(require("fs").readFileSync(0, "utf8"));
    for (const f of s.feeds || [])
      console.log(`'"$n"' client hears ${f.display}: ${f.video && f.video.dominant} ${f.video && f.video.frameWidth}x${f.video && f.video.frameHeight}` +
        ` decoded=${f.video && f.video.framesDecoded}, peak ${f.audio && f.audio.peakHz} Hz, tones [dB, prominence] ${JSON.stringify(f.audio && f.audio.tonesDbMax)}` +
        ` heard in samples ${JSON.stringify(f.audio && f.audio.tonesHeard)} -> ${s.ok ? "ok" : "FAIL " + s.failures.join("; ")}`);'
done
if [ $RA -eq 0 ] && [ $RB -eq 0 ]; then echo "PASS: each client sees and hears the other, never itself"; exit 0; fi
echo "FAIL (red $RA, green $RB)"; tail -5 "$DIR/red.log" "$DIR/green.log" >&2
exit 1
