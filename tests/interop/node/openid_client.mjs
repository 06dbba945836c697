// openid-client (Node) as a relying party of Signet, for tests/integration/interop.rs.
//
// Usage: node openid_client.mjs ISSUER CLIENT_ID SECRET REDIRECT_URI SCOPE
// 1. Discovers the issuer and prints {"authorize": URL} (code flow, PKCE S256, state, nonce).
// 2. Reads the redirect URL the browser landed on from stdin (the Rust test signs in).
// 3. Redeems the code (client_secret_basic), refreshes, then refreshes with a wrong secret
//    by client_secret_basic and by client_secret_post; prints one JSON line of results.
// Its modules: `npm ci` in this folder (scripts/test.sh does it).
import * as readline from "node:readline";
import * as client from "openid-client";

const [issuer, clientId, secret, redirectUri, scope] = process.argv.slice(2);

// http on loopback: the test's issuer is http://127.0.0.1:PORT.
const options = { execute: [client.allowInsecureRequests] };
const config = await client.discovery(
  new URL(issuer), clientId, secret, client.ClientSecretBasic(secret), options);

const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const nonce = client.randomNonce();
const url = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope,
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: "S256",
  state,
  nonce,
});
console.log(JSON.stringify({ authorize: url.href }));

const lines = readline.createInterface({ input: process.stdin });
const callback = await new Promise((resolve) => lines.once("line", resolve));
lines.close();

const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: verifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
});
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);

// The error code the library reports: from the JSON body (ResponseBodyError) or from the
// WWW-Authenticate challenge of a 401 (WWWAuthenticateChallengeError).
function errorOf(e) {
  if (typeof e.error === "string") return { error: e.error, via: "body", status: e.status };
  if (Array.isArray(e.cause)) {
    const c = e.cause.find((c) => c.parameters && c.parameters.error);
    if (c) return { error: c.parameters.error, via: "challenge", status: e.status };
  }
  return { error: null, message: String(e), code: e.code ?? null };
}

async function wrongSecret(auth) {
  const bad = await client.discovery(new URL(issuer), clientId, "wrong-secret-0123456789", auth, options);
  try {
    await client.refreshTokenGrant(bad, refreshed.refresh_token);
    return { error: null, message: "a wrong secret was accepted" };
  } catch (e) {
    return errorOf(e);
  }
}

console.log(JSON.stringify({
  library: "openid-client",
  sub: tokens.claims()?.sub ?? null,
  access_token: tokens.access_token,
  refresh_token: tokens.refresh_token ?? null,
  refreshed_access_token: refreshed.access_token,
  refreshed_refresh_token: refreshed.refresh_token ?? null,
  basic: await wrongSecret(client.ClientSecretBasic("wrong-secret-0123456789")),
  post: await wrongSecret(client.ClientSecretPost("wrong-secret-0123456789")),
}));
