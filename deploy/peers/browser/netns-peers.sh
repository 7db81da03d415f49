#!/bin/bash
# Runs COMMAND in a private network namespace where coturn and Janus are up,
# then stops both by PID. The namespace has lo and a veth pair v0/v1 with
# 10.99.0.1/24 on v0: Janus' media (ice_enforce_list) and coturn listen there,
# Janus' HTTP API on 127.0.0.1:8088 (admin 7088). Nothing in the namespace can
# reach any other network.
#
#   usage: deploy/peers/browser/netns-peers.sh COMMAND [ARGS...]      (as root)
#
# COMMAND sees:
#   TANDEM_PEERS_DIR   temp folder with janus/ (configs), janus.log, turn.log;
#                      removed afterwards unless KEEP=1 or COMMAND failed
#   TANDEM_TURN_URL    turn:10.99.0.1:3478?transport=udp (user test, pass test123)
#   TANDEM_JANUS_URL   http://127.0.0.1:8088/janus
#   TANDEM_JANUS_PID   Janus' PID (a test may kill and restart it; a Janus it
#                      starts itself is its own to stop)
# Exit status: COMMAND's.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PEERS=$(cd "$HERE/.." && pwd)
[ $# -ge 1 ] || { sed -n '2,17p' "$0" >&2; exit 64; }

if [ "${TANDEM_NETNS:-}" != 1 ]; then
  exec unshare -n env TANDEM_NETNS=1 bash "$0" "$@"
fi

ip link set lo up
ip link add v0 type veth peer name v1
ip addr add 10.99.0.1/24 dev v0
ip link set v0 up
ip link set v1 up

DIR=$(mktemp -d /tmp/tandem-peers.XXXXXX)
PIDS=()
RC=1
cleanup() {
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [ "${KEEP:-}" = 1 ] || [ "$RC" -ne 0 ]; then echo "netns-peers: logs kept in $DIR" >&2; else rm -rf "$DIR"; fi
  exit "$RC"
}
trap cleanup EXIT
trap 'RC=130; cleanup' INT TERM

# Line-buffered: a test reads the log while coturn runs. Two users: browsers
# use test, Tandem's agent tandem, so the log tells whose allocation it is.
stdbuf -oL turnserver -n --listening-ip=10.99.0.1 --relay-ip=10.99.0.1 --listening-port=3478 \
  --min-port=49160 --max-port=49200 --lt-cred-mech --user=test:test123 --user=tandem:tandem123 \
  --realm=itest.local --verbose \
  --fingerprint --no-tls --no-dtls --no-cli --allow-loopback-peers --no-rfc5780 \
  --userdb="$DIR/turndb" --log-file=stdout --simple-log >"$DIR/turn.log" 2>&1 &
PIDS+=($!)

mkdir "$DIR/janus"
for f in "$PEERS"/janus/*.jcfg; do
  sed "s#@CONF@#$DIR/janus#g" "$f" >"$DIR/janus/$(basename "$f")"
done
janus -F "$DIR/janus" -C "$DIR/janus/janus.jcfg" -o -D >"$DIR/janus.log" 2>&1 &
JANUS_PID=$!
PIDS+=($JANUS_PID)

up() { ss -lnu | grep -q '10.99.0.1:3478' && ss -lnt | grep -q '127.0.0.1:8088'; }
for _ in $(seq 100); do up && break; sleep 0.1; done
if ! up; then
  echo "netns-peers: coturn or Janus did not come up" >&2
  tail -5 "$DIR/turn.log" "$DIR/janus.log" >&2
  exit 1
fi

export TANDEM_PEERS_DIR=$DIR
export TANDEM_JANUS_PID=$JANUS_PID
export TANDEM_TURN_URL='turn:10.99.0.1:3478?transport=udp'
export TANDEM_JANUS_URL='http://127.0.0.1:8088/janus'
set +e
"$@"
RC=$?
set -e
exit "$RC"
