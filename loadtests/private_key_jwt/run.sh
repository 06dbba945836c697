#!/bin/sh
# client_credentials throughput with private_key_jwt (ES256 assertions) and with a shared
# secret plus a DPoP proof (ES256, RFC 9449) per request, beside a shared secret alone, in
# the same run, on one `signet serve` (issue 14; loadtests/RESULTS.md). SKIP_PK=1 leaves
# private_key_jwt out.
# The server is pinned to CPU 0 and wrk (1 thread, 32 connections, closed loop) to CPU 1,
# both in the real-time class as `signet-loadtests compare --boost` does; each scenario
# runs ROUNDS times for SECONDS, alternating. Reported per run: requests/s and requests per
# second of the server's CPU time (utime+stime from /proc, robust to a shared machine).
# usage: loadtests/private_key_jwt/run.sh [SIGNET_BINARY] (default target/release/signet)
set -eu
BIN=${1:-target/release/signet}
SECONDS_=${SECONDS_:-10}
ROUNDS=${ROUNDS:-2}
HERE=$(dirname "$0")
DIR=$(mktemp -d)
PORT=${PORT:-28480}
ISSUER=http://127.0.0.1:$PORT
export SIGNET_ADMIN_CLIENT_SECRET=lt-admin-secret-0123456789
BOOST=${BOOST-chrt -f 1}
[ -z "$BOOST" ] || $BOOST true 2>/dev/null || BOOST=""
$BOOST taskset -c 0 "$BIN" serve --data-dir "$DIR/data" --listen 127.0.0.1:$PORT \
    --admin-listen 127.0.0.1:$((PORT + 1)) >"$DIR/serve.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do
  kill -0 $PID 2>/dev/null || { echo "signet did not start (port $PORT taken?)" >&2; exit 1; }
  curl -sf $ISSUER/readyz >/dev/null && break; sleep 0.2
done
BASIC=$(python3 "$HERE/setup.py" register $ISSUER http://127.0.0.1:$((PORT + 1)) \
    "$SIGNET_ADMIN_CLIENT_SECRET" "$DIR/key.pem")
cpu() { awk '{print $14 + $15}' /proc/$PID/stat; }
run() { # name, then env for the script
  name=$1; shift
  before=$(cpu)
  out=$(env "$@" $BOOST taskset -c 1 wrk -t1 -c32 -d${SECONDS_}s \
      -s "$HERE/bodies.lua" $ISSUER | tail -3)
  ticks=$(( $(cpu) - before ))
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  n=$(echo "$out" | awk '/^requests/ {print $2}' | tr -d ,)
  echo "$name: $rps req/s, $(( n * $(getconf CLK_TCK) / (ticks > 0 ? ticks : 1) )) req per server CPU-second; $(echo "$out" | tail -1)"
}
for r in $(seq 1 "$ROUNDS"); do
  run shared_secret PK_BASIC="$BASIC"
  if [ -z "${SKIP_PK:-}" ]; then
    python3 "$HERE/setup.py" mint $ISSUER "$DIR/key.pem" $((SECONDS_ * 6000)) "$DIR/bodies"
    run private_key_jwt PK_BODIES="$DIR/bodies"
  fi
  # Proofs are good for 60 s after minting: minted just before their run.
  python3 "$HERE/setup.py" mint-dpop $ISSUER $((SECONDS_ * 6000)) "$DIR/proofs"
  run dpop_shared_secret PK_BASIC="$BASIC" PK_PROOFS="$DIR/proofs"
done
