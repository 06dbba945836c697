#!/bin/bash
# Device-flow polling against client_credentials issuance on one core (issue 15's figures):
# `signet serve` pinned to CPU 0, wrk on CPU 1. Needs wrk and a release build:
#   cargo build --release -p signet && loadtests/device/run.sh
# INTERVAL: --device-poll-interval (5); CREATE: seconds spent minting device codes (5);
# DEVICES: keep that many of them (all). For the authorization_pending rate per core, use
# INTERVAL=1 CREATE=4 (more codes than polls per second, so each poll is on time).
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../target/release/signet}
DIR=$(mktemp -d)
export CODES=$DIR/codes.txt
cd "$HERE"
export SIGNET_ADMIN_CLIENT_SECRET=admin-secret-0123456789 SIGNET_LOG=error
taskset -c 0 $BIN serve --data-dir $DIR --listen 127.0.0.1:18480 --admin-listen 127.0.0.1:18481 --issuer http://127.0.0.1:18480 --device-poll-interval ${INTERVAL:-5} >/dev/null 2>&1 &
PID=$!
trap "kill $PID; rm -rf $DIR" EXIT
until curl -sf http://127.0.0.1:18480/readyz >/dev/null; do sleep 0.2; done
TOK=$(curl -s -u signet-admin:$SIGNET_ADMIN_CLIENT_SECRET http://127.0.0.1:18480/oauth2/token -d grant_type=client_credentials -d scope=signet.admin | grep -o '"access_token":"[^"]*"' | cut -d'"' -f4)
adm() { curl -s -o /dev/null -w "%{http_code} " -H "authorization: Bearer $TOK" -H content-type:application/json http://127.0.0.1:18481/admin/v1/$1 -d "$2"; }
adm Resource/ApiScope '{"name":"orders.read"}'
adm Resource/ApiResource '{"name":"orders-api","scopes":["orders.read"]}'
adm Client '{"clientId":"backend","allowedGrantTypes":["client_credentials"],"clientSecrets":[{"value":"backend-secret-0123456789"}],"allowedScopes":["orders.read"],"allowedIdentityTokenSigningAlgorithms":[]}'
adm Client '{"clientId":"tv","allowedGrantTypes":["urn:ietf:params:oauth:grant-type:device_code"],"requireClientSecret":false,"allowedScopes":["openid"],"deviceCodeLifetime":3600}'
echo; sleep 1
: > "$CODES"
W="taskset -c 1 wrk"
echo "== device authorizations"; $W -t1 -c4 -d${CREATE:-5}s -s create.lua http://127.0.0.1:18480 | grep "Requests/sec"
if [ -n "$DEVICES" ]; then head -n "$DEVICES" "$CODES" > "$CODES.cut" && mv "$CODES.cut" "$CODES"; fi
echo "$(wc -l < "$CODES") device codes"
echo "== client_credentials alone"; $W -t1 -c16 -d10s -s cc.lua http://127.0.0.1:18480 | grep -E "Requests/sec|Non-2xx|failure|Latency"
echo "== client_credentials while 1000 devices poll every 5 s (16 conns x 12.5/s = 200 polls/s)"
$W -t1 -c16 -d10s -s paced.lua http://127.0.0.1:18480 > "$DIR/paced.txt" &
$W -t1 -c16 -d10s -s cc.lua http://127.0.0.1:18480 | grep -E "Requests/sec|Non-2xx|failure|Latency"
wait $!
grep -E "Requests/sec|pending" "$DIR/paced.txt"
echo "== device polls alone"; $W -t1 -c16 -d10s -s poll.lua http://127.0.0.1:18480 | grep -E "Requests/sec|pending|Latency"
echo "== client_credentials during the polling storm"
$W -t1 -c16 -d10s -s poll.lua http://127.0.0.1:18480 > "$DIR/storm.txt" &
$W -t1 -c16 -d10s -s cc.lua http://127.0.0.1:18480 | grep -E "Requests/sec|Non-2xx|failure|Latency"
wait $!
grep -E "Requests/sec|pending" "$DIR/storm.txt"
