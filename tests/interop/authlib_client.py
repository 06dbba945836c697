"""Authlib (Python) as a relying party of Signet, for tests/integration/interop.rs.

Usage: python authlib_client.py ISSUER CLIENT_ID SECRET REDIRECT_URI SCOPE
1. Discovers the issuer and prints {"authorize": URL} (code flow, PKCE S256, state, nonce).
2. Reads the redirect URL the browser landed on from stdin (the Rust test signs in).
3. Redeems the code (client_secret_basic), refreshes, then refreshes with a wrong secret by
   client_secret_basic and by client_secret_post; prints one JSON line of results.
Run with the venv scripts/test.sh installs Authlib into (target/venv).
"""

import json
import os
import sys

# http on loopback: the test's issuer is http://127.0.0.1:PORT.
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"

import requests  # noqa: E402
from authlib.common.security import generate_token  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.oauth2.rfc6749.errors import OAuth2Error  # noqa: E402
from authlib.integrations.base_client.errors import OAuthError  # noqa: E402

issuer, client_id, secret, redirect_uri, scope = sys.argv[1:6]
meta = requests.get(issuer + "/.well-known/openid-configuration", timeout=30).json()
token_endpoint = meta["token_endpoint"]

session = OAuth2Session(
    client_id,
    secret,
    scope=scope,
    redirect_uri=redirect_uri,
    code_challenge_method="S256",
    token_endpoint_auth_method="client_secret_basic",
)
verifier = generate_token(48)
nonce = generate_token(20)
url, state = session.create_authorization_url(
    meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
)
print(json.dumps({"authorize": url}), flush=True)

callback = sys.stdin.readline().strip()
tokens = session.fetch_token(
    token_endpoint, authorization_response=callback, code_verifier=verifier, state=state
)
refreshed = session.refresh_token(token_endpoint, refresh_token=tokens["refresh_token"])


def wrong_secret(method):
    bad = OAuth2Session(client_id, "wrong-secret-0123456789", token_endpoint_auth_method=method)
    try:
        bad.refresh_token(token_endpoint, refresh_token=refreshed["refresh_token"])
        return {"error": None, "message": "a wrong secret was accepted"}
    except (OAuthError, OAuth2Error) as e:
        return {"error": e.error, "via": type(e).__name__}


print(
    json.dumps(
        {
            "library": "authlib",
            "access_token": tokens["access_token"],
            "refresh_token": tokens.get("refresh_token"),
            "refreshed_access_token": refreshed["access_token"],
            "refreshed_refresh_token": refreshed.get("refresh_token"),
            "basic": wrong_secret("client_secret_basic"),
            "post": wrong_secret("client_secret_post"),
        }
    ),
    flush=True,
)
