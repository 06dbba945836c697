//! Client authentication at the token, PAR, introspection and revocation endpoints: HTTP
//! Basic (`client_secret_basic`, RFC 6749 section 2.3.1, with the id and secret
//! form-urlencoded first) or body parameters (`client_secret_post`), never both; a signed
//! client assertion (`private_key_jwt`, RFC 7523 sections 2.2 and 3, OIDC Core section 9)
//! for a client whose secrets are `JsonWebKey`s or who publishes keys at a `jwksUri`
//! ([`super::client_jwks`]); mutual TLS (RFC 8705 section 2) for a client whose secrets are
//! certificates: its `client_id` in the body and a client certificate
//! ([`super::client_cert`]) that is the registered one (`X509CertificateBase64`,
//! `self_signed_tls_client_auth`) or chains to a `--tls-client-ca` root and carries the
//! registered subject DN (`X509Name`, `tls_client_auth`); a public client
//! (`requireClientSecret: false`) sends only its `client_id`. The secret types decide the
//! method: a client with keys or certificates cannot use a shared secret and a client with
//! shared secrets cannot use an assertion or a certificate.
//!
//! Every failure before the client is proven (unknown client, wrong secret, wrong method,
//! bad signature) is the same `invalid_client` with the same description, and an unknown
//! client costs the same hash and compare as a known one, so neither the answer nor its
//! timing tells which client ids exist. Only an assertion whose signature checked out gets
//! a precise reason (expired, wrong audience, replayed): its sender holds the client's key.
//! (An assertion for an unknown client is refused without a signature check, so its timing
//! may tell; a client id is no secret, RFC 6749 section 2.2, and the answer is the same.)

use std::borrow::Cow;
use std::sync::Arc;

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use signet_core::oauth::OAuthError;
use signet_core::projection::{ClientEntry, Projection};
use signet_core::secret::{dummy_check, SecretDigest};
use signet_core::UnixTime;
use signet_jose::{verify_with_client_keys, JoseError};
use signet_store::Namespace;

use super::browser::StoreResult;
use super::form::OAuthForm;
use crate::state::AppState;

/// `client_assertion_type` of a JWT client assertion (RFC 7523 section 2.2).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest a client assertion may be valid for, from now: its `exp` at most this many
/// seconds ahead (plus [`ASSERTION_LEEWAY`]). It bounds the replay cache's entries too.
pub const MAX_ASSERTION_LIFETIME: i64 = 300;
/// Clock skew tolerated on `exp`, `iat` and `nbf`, in seconds.
pub const ASSERTION_LEEWAY: i64 = 30;
/// The longest `jti` accepted.
const MAX_JTI_LEN: usize = 256;

const FAILED: &str = "client authentication failed";

struct Presented<'a> {
    id: Cow<'a, str>,
    secret: Option<Cow<'a, str>>,
}

/// The decoded `id:secret` of an HTTP Basic `Authorization` header, if there is one.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<String>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::invalid_client(FAILED);
    let value = value.to_str().map_err(|_| bad())?;
    let (scheme, rest) = value.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let decoded = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    String::from_utf8(decoded).map(Some).map_err(|_| bad())
}

/// RFC 6749 section 2.3.1: both parts of the Basic credentials are
/// application/x-www-form-urlencoded values: `+` is a space, `%XX` a byte, any other
/// character itself. A part without `%` or `+` decodes to itself and is borrowed; any other
/// goes through the form decoder as one value. A raw `&` is part of the value, not a
/// separator (it once cut the value short, so `secret&anything` authenticated as
/// `secret`).
fn form_unescape(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        form_urlencoded::parse(format!("x={}", s.replace('&', "%26")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default(),
    )
}

fn from_basic(decoded: &str) -> Result<Presented<'_>, OAuthError> {
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| OAuthError::invalid_client(FAILED))?;
    Ok(Presented {
        id: form_unescape(id),
        secret: Some(form_unescape(secret)),
    })
}

/// A client assertion's `jti`, to be recorded once cluster-wide before the client counts as
/// authenticated.
struct ReplayGuard {
    key: String,
    ttl: std::time::Duration,
}

/// Authenticates the client of a request at the endpoint `endpoint` (its path, e.g.
/// `/oauth2/token`: an assertion's `aud` may name it, the token endpoint or the issuer).
/// Returns the client's projection entry. Only an assertion awaits anything (its `jti` is
/// recorded in the store); a shared secret is checked without a network round-trip.
pub async fn authenticate(
    state: &AppState,
    p: &Projection,
    form: &OAuthForm,
    endpoint: &str,
    now: UnixTime,
) -> Result<Arc<ClientEntry>, OAuthError> {
    let remote = match jwks_uri_keys(state, p, form).await {
        Ok(keys) => keys,
        Err(failure) => {
            metrics::counter!(crate::telemetry::CLIENT_AUTH_FAILURES, "reason" => failure.0)
                .increment(1);
            return Err(failure.1);
        }
    };
    let remote = remote.as_deref().map_or(&[][..], Vec::as_slice);
    let cert = match super::client_cert::PresentedCert::certificate(form.cert.as_ref()) {
        Ok(cert) => cert,
        Err(e) => {
            metrics::counter!(crate::telemetry::CLIENT_AUTH_FAILURES, "reason" => "bad_certificate")
                .increment(1);
            return Err(e);
        }
    };
    let mut result = authenticate_inner(
        p,
        form,
        &state.config.issuer,
        endpoint,
        now,
        Evidence {
            remote,
            cert: cert.map(|c| &**c),
            sealer: state.config_sealer(),
        },
    );
    if let Ok((_, Some(guard))) = &result {
        // RFC 7523 section 3: a jti used once is never accepted again, at any node.
        let fresh = state
            .store
            .insert(Namespace::ReplayGuard, &guard.key, b"", guard.ttl)
            .await
            .or_unavailable()?;
        if !fresh {
            result = Err((
                "replayed_assertion",
                OAuthError::invalid_client(
                    "the client assertion was already used: each jti is accepted once",
                ),
            ));
        }
    }
    if let Err((reason, _)) = &result {
        metrics::counter!(crate::telemetry::CLIENT_AUTH_FAILURES, "reason" => *reason).increment(1);
    }
    result.map(|(entry, _)| entry).map_err(|(_, e)| e)
}

type Failure = (&'static str, OAuthError);

/// For a client assertion whose client has a `jwksUri`: the keys published there (cached,
/// see [`super::client_jwks`]). Nothing for any other request.
async fn jwks_uri_keys(
    state: &AppState,
    p: &Projection,
    form: &OAuthForm,
) -> Result<Option<Arc<Vec<signet_jose::ClientKey>>>, Failure> {
    let Some(jwt) = form.get("client_assertion") else {
        return Ok(None);
    };
    let Some(entry) = super::client_jwks::unverified_part(jwt, 1)
        .as_ref()
        .and_then(|c| c.get("sub")?.as_str())
        .and_then(|sub| p.client(sub))
        .filter(|e| e.client.enabled)
    else {
        return Ok(None);
    };
    super::client_jwks::published_keys(state, entry, jwt)
        .await
        .map_err(|_| {
            (
                "jwks_unavailable",
                OAuthError::invalid_client(
                    "the client's keys could not be fetched from its jwksUri",
                ),
            )
        })
}

/// What a request brings besides its form: the keys at the client's `jwksUri` (fetched
/// for an assertion), its TLS client certificate, and the node's sealer (to open
/// `ClientSecretJwt` secrets).
struct Evidence<'a> {
    remote: &'a [signet_jose::ClientKey],
    cert: Option<&'a super::client_cert::ClientCertificate>,
    sealer: Option<&'a crate::sealer::ConfigSealer>,
}

/// The checks of [`authenticate`] that need no store, with the failure's reason for
/// metrics (a fixed set of labels).
fn authenticate_inner(
    p: &Projection,
    form: &OAuthForm,
    issuer: &crate::config::IssuerUrl,
    endpoint: &str,
    now: UnixTime,
    evidence: Evidence<'_>,
) -> Result<(Arc<ClientEntry>, Option<ReplayGuard>), Failure> {
    let Evidence {
        remote,
        cert,
        sealer,
    } = evidence;
    let malformed = |e| ("malformed", e);
    let decoded = basic_credentials(&form.headers).map_err(malformed)?;
    let basic = decoded
        .as_deref()
        .map(from_basic)
        .transpose()
        .map_err(malformed)?;
    let assertion = match (
        form.get("client_assertion_type"),
        form.get("client_assertion"),
    ) {
        (None, None) => None,
        (Some(t), Some(a)) => Some((t, a)),
        _ => {
            return Err(malformed(OAuthError::invalid_request(
                "client_assertion and client_assertion_type go together",
            )))
        }
    };
    if let Some((kind, jwt)) = assertion {
        if basic.is_some() || form.get("client_secret").is_some() {
            return Err(malformed(OAuthError::invalid_request(
                "use one client authentication method: a client assertion, HTTP Basic or client_secret, not several",
            )));
        }
        if kind != JWT_BEARER_ASSERTION {
            return Err(malformed(OAuthError::invalid_client(format!(
                "client_assertion_type must be {JWT_BEARER_ASSERTION}"
            ))));
        }
        // Built only for an assertion: a shared secret (the hot path) allocates none. The
        // issuer identifier comes first.
        let audiences = [
            issuer.as_str().to_owned(),
            issuer.endpoint("/oauth2/token"),
            issuer.endpoint(endpoint),
        ];
        return assertion_client(
            p,
            form.get("client_id"),
            jwt,
            &audiences,
            now,
            remote,
            sealer,
        )
        .map(|(e, g)| (e, Some(g)));
    }
    let presented = match (basic, form.get("client_id"), form.get("client_secret")) {
        (Some(_), _, Some(_)) => {
            return Err(malformed(OAuthError::invalid_request(
                "use one client authentication method: HTTP Basic or client_secret in the body, not both",
            )))
        }
        (Some(b), Some(id), None) if id != b.id => {
            return Err(malformed(OAuthError::invalid_request(
                "client_id in the body differs from the authenticated client",
            )))
        }
        (Some(b), _, None) => b,
        (None, Some(id), secret) => Presented {
            id: Cow::Borrowed(id),
            secret: secret.map(Cow::Borrowed),
        },
        (None, None, Some(_)) => {
            return Err(malformed(OAuthError::invalid_request("client_secret without client_id")))
        }
        (None, None, None) => {
            return Err(("missing", OAuthError::invalid_client("client authentication is required")))
        }
    };

    let digest = presented.secret.as_deref().map(SecretDigest::of);
    let Some(entry) = p.client(&presented.id) else {
        if let Some(d) = &digest {
            dummy_check(d);
        }
        return Err(("unknown_client", OAuthError::invalid_client(FAILED)));
    };
    let ok = match &digest {
        // A client with keys or certificates has no shared secret: nothing matches.
        Some(d) => entry.secrets.matches(d, now),
        // Mutual TLS (RFC 8705 section 2): the certificate is the registered one, or a
        // trusted CA's with the registered subject.
        None if entry.secrets.has_certificates() => cert.is_some_and(|c| {
            entry
                .secrets
                .certificate_matches(&c.facts, c.pki_trusted, now)
                .is_some()
        }),
        // A public client identifies itself; a confidential one must prove it.
        None => !entry.client.require_client_secret,
    };
    if !ok {
        return Err(("invalid_secret", OAuthError::invalid_client(FAILED)));
    }
    if !entry.client.enabled {
        return Err(("disabled", OAuthError::invalid_client(FAILED)));
    }
    Ok((entry.clone(), None))
}

fn bad_assertion(description: &'static str) -> Failure {
    ("invalid_assertion", OAuthError::invalid_client(description))
}

/// `private_key_jwt` and `client_secret_jwt` (RFC 7523 section 3, OIDC Core section 9):
/// the assertion's signature with one of the client's live keys (or, for a client with
/// `ClientSecretJwt` secrets, an HMAC under one of them) first, then its claims. Returns
/// the client and its `jti` to record.
fn assertion_client(
    p: &Projection,
    client_id: Option<&str>,
    jwt: &str,
    audiences: &[String],
    now: UnixTime,
    remote: &[signet_jose::ClientKey],
    sealer: Option<&crate::sealer::ConfigSealer>,
) -> Result<(Arc<ClientEntry>, ReplayGuard), Failure> {
    // The client is named by `sub` (= `iss`); the signature is checked before any claim is
    // trusted, so reading it unverified only picks the keys to check with.
    let unverified = super::client_jwks::unverified_part(jwt, 1)
        .ok_or_else(|| bad_assertion("the client assertion is not a JWT"))?;
    let sub = unverified
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_assertion("the client assertion has no sub (the client_id)"))?;
    if client_id.is_some_and(|id| id != sub) {
        return Err(bad_assertion(
            "client_id differs from the client assertion's sub",
        ));
    }
    let Some(entry) = p.client(sub) else {
        return Err(("unknown_client", OAuthError::invalid_client(FAILED)));
    };
    let payload = if entry.secrets.has_jwt_secrets() {
        // client_secret_jwt: an HMAC under one of the client's secrets, opened for the
        // check only. Never a public-key alg: these clients have no keys.
        if !signet_jose::is_hmac_signed(jwt) {
            return Err(bad_assertion(
                "this client signs its assertions with its shared secret (client_secret_jwt): alg must be HS256, HS384 or HS512",
            ));
        }
        let context = crate::sealer::client_secret_context(sub);
        let secrets: Vec<Vec<u8>> = entry
            .secrets
            .live_jwt_secrets(now)
            .filter_map(|sealed| sealer?.open(&context, sealed))
            .collect();
        match signet_jose::verify_with_shared_secrets(jwt, secrets.iter().map(Vec::as_slice)) {
            Ok(payload) => payload,
            Err(JoseError::AlgorithmNotAllowed(_)) => {
                return Err(bad_assertion(
                    "the client assertion's alg needs a longer secret: HS384 and HS512 need secrets of at least 48 and 64 bytes",
                ))
            }
            Err(_) => return Err(("invalid_assertion", OAuthError::invalid_client(FAILED))),
        }
    } else {
        if !entry.secrets.has_keys() && entry.client.jwks_uri.is_none() {
            // A client with shared secrets authenticates with them, never with an assertion.
            return Err(("wrong_method", OAuthError::invalid_client(FAILED)));
        }
        let keys = entry.secrets.live_keys(now).chain(remote);
        match verify_with_client_keys(jwt, keys) {
            Ok(v) => v.payload,
            Err(JoseError::AlgorithmNotAllowed(_)) => {
                return Err(bad_assertion(
                    "the client assertion's alg is not allowed: sign it with a registered key (RS256, PS256, ES256 or EdDSA); none is refused, and HMAC only for a client with ClientSecretJwt secrets",
                ))
            }
            Err(_) => return Err(("invalid_assertion", OAuthError::invalid_client(FAILED))),
        }
    };
    if !entry.client.enabled {
        return Err(("disabled", OAuthError::invalid_client(FAILED)));
    }
    let claims: Value = serde_json::from_slice(&payload)
        .map_err(|_| bad_assertion("the client assertion's payload is not a JSON object"))?;
    let text = |name| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(sub) || text("sub") != Some(sub) {
        return Err(bad_assertion(
            "the client assertion's iss and sub must both be the client_id",
        ));
    }
    // FAPI 2.0 Security Profile section 5.3.2.1: only the issuer identifier, as a string.
    let fapi2 = entry.client.profile == Some(signet_core::client::ClientProfile::Fapi2);
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) if fapi2 => a == &audiences[0],
        Some(Value::Array(_)) if fapi2 => false,
        Some(Value::String(a)) => audiences.contains(a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(bad_assertion(if fapi2 {
            "the client assertion's aud must be the issuer identifier, as a string (profile fapi2)"
        } else {
            "the client assertion's aud must be the issuer identifier or the token endpoint URL"
        }));
    }
    let time = |name| claims.get(name).and_then(Value::as_i64);
    let exp = time("exp")
        .ok_or_else(|| bad_assertion("the client assertion has no exp (a number of seconds)"))?;
    if exp <= now - ASSERTION_LEEWAY {
        return Err(bad_assertion("the client assertion has expired"));
    }
    if exp > now + MAX_ASSERTION_LIFETIME + ASSERTION_LEEWAY {
        return Err(bad_assertion(
            "the client assertion's exp is too far ahead: at most 300 seconds from now",
        ));
    }
    for (name, rule) in [
        ("iat", "the client assertion's iat is in the future"),
        ("nbf", "the client assertion is not valid yet (nbf)"),
    ] {
        match claims.get(name) {
            None => {}
            Some(v) => match v.as_i64() {
                Some(t) if t <= now + ASSERTION_LEEWAY => {}
                Some(_) => return Err(bad_assertion(rule)),
                None => {
                    return Err(bad_assertion(
                        "the client assertion's iat and nbf must be numbers",
                    ))
                }
            },
        }
    }
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
        .ok_or_else(|| {
            bad_assertion("the client assertion needs a jti (a unique string of at most 256 bytes)")
        })?;
    let key = SecretDigest::of(&format!("{sub}\u{0}{jti}")).to_b64url();
    // Kept until the assertion could no longer be accepted anyway.
    let ttl =
        (exp - now + ASSERTION_LEEWAY).clamp(1, MAX_ASSERTION_LIFETIME + 2 * ASSERTION_LEEWAY);
    Ok((
        entry.clone(),
        ReplayGuard {
            key,
            ttl: std::time::Duration::from_secs(ttl as u64),
        },
    ))
}

/// The id and secret of an HTTP Basic `Authorization` header (form-urlencoded parts, RFC
/// 6749 section 2.3.1), if there is one. Used by introspection callers.
pub fn basic_id_secret(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(decoded) = basic_credentials(headers)? else {
        return Ok(None);
    };
    let p = from_basic(&decoded)?;
    Ok(p.secret.map(|s| (p.id.into_owned(), s.into_owned())))
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    /// What the decoder did before the borrowed fast path: parse `x=<part>` as a form.
    fn via_form(s: &str) -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    }

    #[test]
    fn basic_parts_decode_as_form_values() {
        for part in [
            "backend",
            "secret-0123456789",
            "a=b",
            "",
            "a%3Ab",
            "a+b",
            "%zz",
            "caf%C3%A9",
        ] {
            assert_eq!(form_unescape(part), via_form(part), "{part:?}");
        }
        assert!(matches!(form_unescape("backend"), Cow::Borrowed(_)));
        let p = from_basic("my%20id:s%3Acret").unwrap();
        assert_eq!(
            (p.id.as_ref(), p.secret.as_deref()),
            ("my id", Some("s:cret"))
        );
        assert!(from_basic("no-colon").is_err());
    }

    /// Found by `fuzz::basic_parts_decode_as_form_values` (minimal input `&`): a raw `&`
    /// is a character of the value. Before, `backend:secret&x` authenticated as
    /// `backend:secret`, and `&` decoded to nothing.
    #[test]
    fn a_raw_ampersand_is_part_of_the_value() {
        assert_eq!(form_unescape("&"), "&");
        assert_eq!(form_unescape("a&b"), "a&b");
        assert_eq!(form_unescape("a+%26&b"), "a &&b");
        let p = from_basic("backend:s3cret&x").unwrap();
        assert_eq!(p.secret.as_deref(), Some("s3cret&x"));
    }
}
