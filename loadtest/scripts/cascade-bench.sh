#!/usr/bin/env bash
# Issue 4's cascade benchmark: join time, glass-to-glass delay (both ways)
# and CPU of a cascaded conference against a same-run baseline. Builds the
# release node and tandem-cascade-bench, then runs the bench inside a
# private network namespace with Janus and coturn
# (deploy/peers/browser/netns-peers.sh: Janus never uses loopback for
# media). Needs root (unshare -n). Takes about three minutes.
# Usage: loadtest/scripts/cascade-bench.sh [tandem-cascade-bench options]
#   e.g. --joins 5 --delay-seconds 8 --cpu-seconds 20 --out /tmp/bench
set -euo pipefail
cd "$(dirname "$0")/../.."
missing=()
for tool in janus:janus turnserver:coturn ip:iproute2 ss:iproute2 unshare:util-linux stdbuf:coreutils; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  echo "cascade-bench: missing packages: apt-get update && apt-get install -y --no-install-recommends ${pkgs% }" >&2
  exit 2
fi
if [ "$(id -u)" != 0 ]; then
  echo "cascade-bench: needs root for its network namespace (unshare -n)" >&2
  exit 2
fi
cargo build --release --bin tandem --bin tandem-cascade-bench
target=${CARGO_TARGET_DIR:-target}
exec bash deploy/peers/browser/netns-peers.sh \
  "$target/release/tandem-cascade-bench" --tandem "$target/release/tandem" "$@"
