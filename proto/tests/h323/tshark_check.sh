#!/usr/bin/env bash
# Checks H.225.0 call signalling messages with Wireshark's dissectors, an
# implementation independent of ours.
#
# Input (stdin or file): lines "NAME HEX", HEX being one Q.931 message with
# its User-user element (the PER H323-UserInformation), as printed by
#   cargo test -p tandem-proto --lib h323::h225::tests::print_vectors -- --ignored --nocapture
# Each message is framed in TPKT, written as a TCP segment to port 1720
# (which tshark dissects as H.225.0, with the tunnelled and fast-start H.245
# inside) and dissected. A message fails if tshark reports it malformed or
# raises an error/warning expert item. With -v the dissection is printed.
#
# Needs tshark and text2pcap (Debian: tshark; tested with 4.0).
set -euo pipefail
verbose=0
if [[ "${1:-}" == "-v" ]]; then verbose=1; shift; fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0
n=0
while read -r name hex; do
  [[ -z "${name:-}" || "$name" == \#* ]] && continue
  n=$((n + 1))
  len=$(( ${#hex} / 2 + 4 ))
  tpkt=$(printf '0300%04x%s' "$len" "$hex")
  # text2pcap's input: offset, then bytes.
  echo "$tpkt" | fold -w 32 | awk '{ printf "%06x", (NR - 1) * 16; for (i = 1; i <= length($0); i += 2) printf " %s", substr($0, i, 2); print "" }' > "$dir/$name.txt"
  text2pcap -q -T 40000,1720 "$dir/$name.txt" "$dir/$name.pcap" 2>/dev/null
  tshark -r "$dir/$name.pcap" -V -o tcp.desegment_tcp_streams:TRUE > "$dir/$name.out" 2>&1 || true
  tshark -r "$dir/$name.pcap" -q -z expert,warn > "$dir/$name.expert" 2>&1 || true
  if [[ $verbose == 1 ]]; then
    echo "===== $name"
    sed -n '/^H.225.0 CS/,$p' "$dir/$name.out"
  fi
  if grep -qiE 'malformed|dissector bug|exception' "$dir/$name.out" \
     || grep -qE '^(Errors|Warns) ' "$dir/$name.expert" \
     || ! grep -q '^H.225.0 CS' "$dir/$name.out"; then
    echo "FAIL $name"
    grep -iE 'malformed|dissector bug|exception|expert' "$dir/$name.out" | head -5 || true
    cat "$dir/$name.expert"
    fail=$((fail + 1))
  else
    echo "ok   $name"
  fi
done < "${1:-/dev/stdin}"
echo "$((n - fail)) passed, $fail failed"
[[ $fail == 0 ]]
