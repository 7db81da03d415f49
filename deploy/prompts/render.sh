#!/bin/sh
# Renders the node's spoken prompts (PIN entry, lobby) with espeak-ng into
# bridge/assets/prompts/<name>.raw: 8 kHz (the telephone band: small, and all
# that G.711 carries anyway), 16-bit signed little-endian, mono,
# leading and trailing silence trimmed, peak-normalised to -3 dBFS. The files
# are committed, so building Tandem never needs espeak-ng; run this only to
# change a prompt's words or voice (and keep the texts in bridge/src/ivr.rs's
# docs in step).
#
#   apt-get install espeak-ng sox      # sox resamples and trims
#   deploy/prompts/render.sh
set -eu
cd "$(dirname "$0")/../.."
OUT=bridge/assets/prompts
VOICE=${VOICE:-en-us}
RATE=${RATE:-150}          # words per minute: clear on a phone line
command -v espeak-ng >/dev/null || { echo "needs espeak-ng (apt-get install espeak-ng)" >&2; exit 1; }
command -v sox >/dev/null || { echo "needs sox (apt-get install sox)" >&2; exit 1; }
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

render() {
    name=$1; shift
    espeak-ng -v "$VOICE" -s "$RATE" -w "$TMP/$name.wav" "$*"
    # 22.05 kHz from espeak-ng -> 8 kHz mono s16le; trim silence at both ends.
    sox "$TMP/$name.wav" -r 8000 -b 16 -c 1 -e signed-integer -t raw "$OUT/$name.raw" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse norm -3
    echo "$OUT/$name.raw: $(wc -c < "$OUT/$name.raw") bytes"
}

render enter_pin          "Please enter the conference PIN, followed by the pound key."
render joining            "You are now joining the conference."
render wrong_pin          "That PIN is not correct. Please try again."
render wrong_pin_goodbye  "Sorry, that PIN is not correct. Goodbye."
render enter_id           "Please enter the conference ID, followed by the pound key."
render not_found          "That conference was not found. Please try again."
render not_found_goodbye  "Sorry, that conference was not found. Goodbye."
render timeout_goodbye    "Sorry, we did not receive your entry in time. Goodbye."
render full_goodbye       "Sorry, that conference is full. Goodbye."
