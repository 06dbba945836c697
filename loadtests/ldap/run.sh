#!/usr/bin/env bash
# LDAP bind sign-ins per second per core (issue 16's figure), against a local OpenLDAP
# slapd (Debian's slapd and ldap-utils) and a `signet serve`:
#   loadtests/ldap/run.sh [path/to/signet] [sign-ins] [workers]
# Build first: cargo build --release -p signet (the default binary is target/release/signet).
# Starts slapd (StartTLS with a throwaway CA, the memberof overlay, the test directory of
# tests/support/ldap.rs) and signet on free ports in a temporary directory, creates the
# provider `corp` and the client `app`, then runs measure.py, which prints the rate and the
# CPU seconds of signet and of slapd separately (they share the machine).
set -euo pipefail
SIGNET=${1:-target/release/signet}
TOTAL=${2:-400}
WORKERS=${3:-4}
HERE=$(cd "$(dirname "$0")" && pwd)
D=$(mktemp -d)
cleanup() {
  [ -n "${SIGNET_PID:-}" ] && kill "$SIGNET_PID" 2>/dev/null || true
  [ -n "${SLAPD_PID:-}" ] && kill "$SLAPD_PID" 2>/dev/null || true
  rm -rf "$D"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LDAP_PORT=$(port); PUBLIC=$(port); ADMIN=$(port)
cd "$D"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=Load CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem 2>/dev/null
mkdir db
cat > slapd.conf <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
TLSCertificateFile $D/server.pem
TLSCertificateKeyFile $D/server.key
database mdb
maxsize 10485760
suffix "dc=example,dc=org"
rootdn "cn=admin,dc=example,dc=org"
rootpw root-secret
directory $D/db
overlay memberof
access to attrs=userPassword by self =xw by anonymous auth by * none
access to * by users read by * none
CONF
/usr/sbin/slapd -f slapd.conf -h "ldap://127.0.0.1:$LDAP_PORT/" -d 0 >/dev/null 2>&1 &
SLAPD_PID=$!
until ldapsearch -x -H "ldap://127.0.0.1:$LDAP_PORT" -b "" -s base >/dev/null 2>&1; do sleep 0.1; done
sed -n '/^pub const LDIF: &str = "/,/^";/p' "$HERE/../../tests/support/ldap.rs" | sed '1s/^pub const LDIF: &str = "//; $d' | sed 's/\\\\/\\/g' > data.ldif
ldapadd -x -H "ldap://127.0.0.1:$LDAP_PORT" -D cn=admin,dc=example,dc=org -w root-secret -f data.ldif >/dev/null
SECRET=load-admin-secret-0123456789
SIGNET_ADMIN_CLIENT_SECRET=$SECRET SIGNET_LOG=error "$OLDPWD/$SIGNET" serve --data-dir "$D/signet" \
  --listen 127.0.0.1:$PUBLIC --admin-listen 127.0.0.1:$ADMIN --issuer http://127.0.0.1:$PUBLIC >/dev/null 2>&1 &
SIGNET_PID=$!
until curl -sf "http://127.0.0.1:$PUBLIC/readyz" >/dev/null; do sleep 0.2; done
TOKEN=$(curl -sf -u "signet-admin:$SECRET" -d grant_type=client_credentials -d scope=signet.admin \
  "http://127.0.0.1:$PUBLIC/oauth2/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
api() { curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -X POST "http://127.0.0.1:$ADMIN/admin/v1/$1" -d "$2"; }
CA=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' ca.pem)
api IdentityProvider "{\"scheme\":\"corp\",\"type\":\"ldap\",\"url\":\"ldap://127.0.0.1:$LDAP_PORT\",
  \"startTls\":true,\"caCertificate\":$CA,\"bindDn\":\"cn=signet,dc=example,dc=org\",
  \"bindPassword\":\"service-secret-42\",\"userSearchBase\":\"ou=people,dc=example,dc=org\",
  \"userSearchFilter\":\"(uid={username})\",
  \"groupRoleMappings\":{\"cn=admins,ou=groups,dc=example,dc=org\":\"admin\"}}"
api Client '{"clientId":"app","allowedGrantTypes":["authorization_code"],"requireClientSecret":false,
  "requireConsent":false,"redirectUris":["http://127.0.0.1:1/cb"],"allowedScopes":["openid"]}'
python3 "$HERE/measure.py" "http://127.0.0.1:$PUBLIC" "$SIGNET_PID" "$SLAPD_PID" "$TOTAL" "$WORKERS"
