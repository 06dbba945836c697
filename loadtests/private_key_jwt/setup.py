#!/usr/bin/env python3
"""Fixtures for the private_key_jwt throughput measurement (loadtests/RESULTS.md, issue 14).

Registers, through the admin API of a running node: an API scope `pk.read`, an API
resource `pk-api` signing with ES256 only, a client `pk-secret` (shared secret) and a
client `pk-jwt` whose only secret is the public JWK of a fresh P-256 key (`register`),
and writes
(`mint`) client_credentials form bodies for `pk-jwt`, each with its own ES256 assertion
(unique jti, exp 280 s ahead), one per line. Each assertion is accepted once,
so the wrk script (`bodies.lua`) sends each line once.

`mint-dpop` writes DPoP proofs (RFC 9449) for POST ISSUER/oauth2/token, one per line, each
with its own jti and iat now, signed with a fresh P-256 key: the shared-secret client's
requests carry one each (a proof is accepted once, and for 60 seconds after its iat).

usage: setup.py register ISSUER ADMIN_BASE ADMIN_SECRET KEY_PEM   (prints the Basic value)
       setup.py mint ISSUER KEY_PEM COUNT OUT
       setup.py mint-dpop ISSUER COUNT OUT
Needs python3 with `cryptography`. run.sh beside it drives the whole measurement.
"""
import base64
import json
import sys
import time
import urllib.parse
import urllib.request

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

SECRET = "pk-secret-0123456789abcdef"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def call(method, url, body=None, token=None, form=False, basic=None):
    headers = {}
    data = None
    if body is not None:
        if form:
            data = urllib.parse.urlencode(body).encode()
            headers["content-type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
    if token:
        headers["authorization"] = "Bearer " + token
    if basic:
        headers["authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def jwk_of(key):
    nums = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "kid": "pk1", "alg": "ES256",
            "x": b64(nums.x.to_bytes(32, "big")), "y": b64(nums.y.to_bytes(32, "big"))}


def register(issuer, admin, admin_secret, key_pem):
    token = call("POST", issuer + "/oauth2/token",
                 {"grant_type": "client_credentials", "scope": "signet.admin"},
                 form=True, basic="signet-admin:" + admin_secret)["access_token"]
    key = ec.generate_private_key(ec.SECP256R1())
    with open(key_pem, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    base = admin + "/admin/v1"
    call("POST", base + "/Resource/ApiScope", {"name": "pk.read"}, token)
    call("POST", base + "/Resource/ApiResource",
         {"name": "pk-api", "scopes": ["pk.read"],
          "allowedAccessTokenSigningAlgorithms": ["ES256"]}, token)
    for cid, secrets in [
        ("pk-secret", [{"value": SECRET}]),
        ("pk-jwt", [{"type": "JsonWebKey", "value": json.dumps(jwk_of(key))}]),
    ]:
        call("POST", base + "/Client",
             {"clientId": cid, "allowedGrantTypes": ["client_credentials"],
              "allowedScopes": ["pk.read"], "clientSecrets": secrets}, token)
    print(base64.b64encode(("pk-secret:" + SECRET).encode()).decode())


def mint(issuer, key_pem, count, out):
    with open(key_pem, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    header = b64(json.dumps({"alg": "ES256", "kid": "pk1", "typ": "JWT"}).encode())
    exp = int(time.time()) + 280
    with open(out, "w") as f:
        for i in range(count):
            claims = {"iss": "pk-jwt", "sub": "pk-jwt", "aud": issuer, "exp": exp,
                      "jti": "lt-%d-%d" % (time.time_ns(), i)}
            signing_input = header + "." + b64(json.dumps(claims).encode())
            r, s = decode_dss_signature(key.sign(signing_input.encode(),
                                                 ec.ECDSA(hashes.SHA256())))
            jws = signing_input + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
            f.write("grant_type=client_credentials&client_assertion_type="
                    "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
                    "&client_assertion=" + jws + "\n")


def es256(key, signing_input):
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def mint_dpop(issuer, count, out):
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = jwk_of(key)
    public = {k: jwk[k] for k in ("kty", "crv", "x", "y")}
    header = b64(json.dumps({"typ": "dpop+jwt", "alg": "ES256", "jwk": public}).encode())
    iat = int(time.time())
    with open(out, "w") as f:
        for i in range(count):
            claims = {"jti": "dp-%d-%d" % (time.time_ns(), i), "htm": "POST",
                      "htu": issuer + "/oauth2/token", "iat": iat}
            f.write(es256(key, header + "." + b64(json.dumps(claims).encode())) + "\n")


def main():
    if sys.argv[1] == "mint-dpop":
        mint_dpop(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "register":
        register(*sys.argv[2:6])
    else:
        mint(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])


if __name__ == "__main__":
    main()
