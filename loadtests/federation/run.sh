#!/usr/bin/env bash
# Signet's share of an upstream (OpenID Connect) sign-in: issue 16's latency figure.
#   loadtests/federation/run.sh [path/to/signet] [sign-ins]
# Build first: cargo build --release -p signet (the default binary is target/release/signet).
# Starts two `signet serve` on free loopback ports: the upstream provider (a user and a
# confidential client registered for the downstream's callback) and the downstream with the
# identity provider `up` and a public client `app`. measure.py then signs in N times through
# the upstream (acr_values=idp:up, PKCE, state, nonce, the full ID-token validation) and
# reads both nodes' /metrics: Signet's share is the downstream's server time for the
# authorize, callback and token requests, minus the upstream's server time answering the
# downstream's token request (the only upstream work inside a downstream request).
set -euo pipefail
SIGNET=$(realpath "${1:-target/release/signet}")
TOTAL=${2:-200}
HERE=$(cd "$(dirname "$0")" && pwd)
D=$(mktemp -d)
cleanup() {
  [ -n "${UP_PID:-}" ] && kill "$UP_PID" 2>/dev/null || true
  [ -n "${DOWN_PID:-}" ] && kill "$DOWN_PID" 2>/dev/null || true
  rm -rf "$D"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(port); UP_ADMIN=$(port); DOWN=$(port); DOWN_ADMIN=$(port)
SECRET=load-admin-secret-0123456789
# The upstream at "localhost", the downstream at 127.0.0.1: two hosts, two cookie jars.
SIGNET_ADMIN_CLIENT_SECRET=$SECRET SIGNET_LOG=error "$SIGNET" serve --data-dir "$D/up" \
  --listen 127.0.0.1:$UP --admin-listen 127.0.0.1:$UP_ADMIN --issuer http://localhost:$UP >/dev/null 2>&1 &
UP_PID=$!
SIGNET_ADMIN_CLIENT_SECRET=$SECRET SIGNET_LOG=error "$SIGNET" serve --data-dir "$D/down" \
  --listen 127.0.0.1:$DOWN --admin-listen 127.0.0.1:$DOWN_ADMIN --issuer http://127.0.0.1:$DOWN \
  --allow-private-outbound >/dev/null 2>&1 &
DOWN_PID=$!
for p in $UP $DOWN; do
  until curl -sf "http://127.0.0.1:$p/readyz" >/dev/null; do sleep 0.2; done
done
token() {
  curl -sf -u "signet-admin:$SECRET" -d grant_type=client_credentials -d scope=signet.admin \
    "http://127.0.0.1:$1/oauth2/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
UP_TOKEN=$(token "$UP"); DOWN_TOKEN=$(token "$DOWN")
api() { curl -sf -o /dev/null -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
  -X POST "http://127.0.0.1:$2/admin/v1/$3" -d "$4"; }
api "$UP_TOKEN" "$UP_ADMIN" User '{"username":"alice","password":"correct horse battery staple","claims":{"name":"Alice","email":"alice@up.example"}}'
api "$UP_TOKEN" "$UP_ADMIN" Client "{\"clientId\":\"signet-down\",\"allowedGrantTypes\":[\"authorization_code\"],
  \"clientSecrets\":[{\"value\":\"upstream-client-secret-0123456789\"}],\"requireConsent\":false,
  \"alwaysIncludeUserClaimsInIdToken\":true,\"redirectUris\":[\"http://127.0.0.1:$DOWN/federation/up/callback\"],
  \"allowedScopes\":[\"openid\",\"profile\",\"email\"]}"
api "$DOWN_TOKEN" "$DOWN_ADMIN" IdentityProvider "{\"scheme\":\"up\",\"type\":\"oidc\",\"authority\":\"http://localhost:$UP\",
  \"clientId\":\"signet-down\",\"clientSecret\":\"upstream-client-secret-0123456789\"}"
api "$DOWN_TOKEN" "$DOWN_ADMIN" Client '{"clientId":"app","allowedGrantTypes":["authorization_code"],"requireClientSecret":false,
  "requireConsent":false,"redirectUris":["http://127.0.0.1:1/cb"],"allowedScopes":["openid","profile","email"]}'
python3 "$HERE/measure.py" "http://127.0.0.1:$DOWN" "http://127.0.0.1:$DOWN_ADMIN" \
  "http://localhost:$UP" "http://127.0.0.1:$UP_ADMIN" "$TOTAL"
