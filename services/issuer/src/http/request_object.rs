//! Signed request objects (RFC 9101, JAR): the `request` parameter at `/oauth2/authorize`
//! and inside a pushed request at `/oauth2/par`. The object is a JWS signed with one of the
//! client's registered `JsonWebKey` keys (the `private_key_jwt` allow-list: RS256, PS256,
//! ES256, EdDSA; `none`, HMAC and unsigned objects are refused), its `iss` is the client,
//! its `aud` the issuer identifier, its `exp` at most [`MAX_LIFETIME`] seconds ahead, its
//! `nbf`/`iat` not in the future (with [`LEEWAY`]), and its `client_id` the outer one.
//!
//! When a request object is used, only its claims are the request's parameters (RFC 9101
//! section 5): the outer `client_id` must match it, an outer `response_type` must equal
//! the object's, and every other outer parameter is ignored. The object's `jti` is not
//! required and not single-use: an object replayed only starts the same authorization
//! request again (the code, PKCE and the user's sign-in stay one-time).
//!
//! `request_uri` by reference to a client's URL is not supported (nothing is fetched):
//! the core check answers `request_uri_not_supported`.

use serde_json::Value;
use signet_core::authorize::{Params, MAX_PARAM_LEN};
use signet_core::oauth::{ErrorCode, OAuthError};
use signet_core::projection::Projection;
use signet_core::UnixTime;
use signet_jose::{verify_with_client_keys, ClientKey, JoseError};

use super::browser::PageParams;

/// The longest `request` parameter accepted (a signed object carries a whole request).
pub const MAX_REQUEST_OBJECT_LEN: usize = 8192;
/// The longest a request object may be valid for, from now (`exp`), in seconds.
pub const MAX_LIFETIME: i64 = 3600;
/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY: i64 = 30;

/// JWT claims of the object that are not authorization request parameters.
const JWT_CLAIMS: &[&str] = &["iss", "aud", "exp", "nbf", "iat", "jti", "sub"];

fn invalid(description: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequestObject, description)
}

/// The authorization request a verified request object carries, in place of `outer`
/// (the parameters it came with). `client_id` is the outer one (the authenticated client's
/// at PAR). Every failure is `invalid_request_object` (a malformed or inconsistent outer
/// request is `invalid_request`), never trusted for a redirect.
pub fn resolve(
    p: &Projection,
    outer: &PageParams,
    client_id: Option<&str>,
    issuer: &str,
    now: UnixTime,
    remote: &[ClientKey],
) -> Result<PageParams, OAuthError> {
    resolve_inner(p, outer, client_id, issuer, now, remote).map_err(|(reason, e)| {
        metrics::counter!(crate::telemetry::REQUEST_OBJECT_FAILURES, "reason" => reason)
            .increment(1);
        e
    })
}

/// The keys the client named by `client_id` publishes at its `jwksUri`, for verifying the
/// `request` of `outer` (none when there is no such request or client, or no `jwksUri`).
/// A fetch that fails is `invalid_request_object`.
pub async fn published_keys(
    state: &crate::state::AppState,
    outer: &PageParams,
    client_id: Option<&str>,
) -> Result<Option<std::sync::Arc<Vec<ClientKey>>>, OAuthError> {
    let (Some(jwt), Some(client_id)) = (outer.get("request"), client_id) else {
        return Ok(None);
    };
    let p = state.projection.load_full();
    let Some(entry) = p.client(client_id).filter(|e| e.client.enabled).cloned() else {
        return Ok(None);
    };
    drop(p);
    super::client_jwks::published_keys(state, &entry, jwt)
        .await
        .map_err(|_| {
            metrics::counter!(crate::telemetry::REQUEST_OBJECT_FAILURES, "reason" => "jwks_unavailable")
                .increment(1);
            invalid("the client's keys could not be fetched from its jwksUri")
        })
}

/// A failure and its reason for metrics (a fixed set of labels).
type Failure = (&'static str, OAuthError);

fn resolve_inner(
    p: &Projection,
    outer: &PageParams,
    client_id: Option<&str>,
    issuer: &str,
    now: UnixTime,
    remote: &[ClientKey],
) -> Result<PageParams, Failure> {
    let request = |e| ("request", e);
    let claim = |e| ("claims", e);
    let jwt = outer
        .get("request")
        .ok_or_else(|| OAuthError::invalid_request("the request has no request object"))
        .map_err(request)?;
    if outer.get("request_uri").is_some() {
        return Err(request(OAuthError::invalid_request(
            "use request or request_uri, not both",
        )));
    }
    let client_id = client_id
        .ok_or_else(|| {
            OAuthError::invalid_request(
                "a request object needs client_id beside it (RFC 9101 section 5)",
            )
        })
        .map_err(request)?;
    let entry = p
        .client(client_id)
        .filter(|c| c.client.enabled)
        .ok_or_else(|| OAuthError::invalid_client("the client is unknown or disabled"))
        .map_err(request)?;
    if !entry.secrets.has_keys() && entry.client.jwks_uri.is_none() {
        return Err(("no_keys", invalid(
            "the client has no registered keys (JsonWebKey secrets or a jwksUri) to verify a request object with",
        )));
    }
    let keys = entry.secrets.live_keys(now).chain(remote);
    let verified = verify_with_client_keys(jwt, keys).map_err(|e| {
        match e {
            JoseError::AlgorithmNotAllowed(_) => ("alg", invalid(
                "the request object's alg is not allowed: sign it with a registered key (RS256, PS256, ES256 or EdDSA); none, HMAC and unsigned objects are refused",
            )),
            JoseError::Malformed(_) => ("malformed", invalid(
                "the request object is not a signed JWT (JWS compact serialization)",
            )),
            _ => ("signature", invalid(
                "the request object's signature does not verify with the client's registered keys",
            )),
        }
    })?;
    let claims: serde_json::Map<String, Value> = serde_json::from_slice(&verified.payload)
        .map_err(|_| {
            (
                "malformed",
                invalid("the request object's payload is not a JSON object"),
            )
        })?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(client_id) {
        return Err(claim(invalid(
            "the request object's iss must be the client_id",
        )));
    }
    if text("client_id") != Some(client_id) {
        return Err(claim(invalid(
            "the request object's client_id must be the client_id of the request",
        )));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == issuer,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(issuer)),
        _ => false,
    };
    if !aud_ok {
        return Err(claim(invalid(
            "the request object's aud must be the issuer identifier",
        )));
    }
    check_times(&claims, now).map_err(claim)?;
    // RFC 9101 section 5: response_type outside, when given, is the object's.
    if let Some(rt) = outer.get("response_type") {
        if text("response_type") != Some(rt) {
            return Err(request(OAuthError::invalid_request(
                "response_type differs from the request object's",
            )));
        }
    }
    let mut params = Vec::with_capacity(claims.len());
    for (name, value) in &claims {
        if JWT_CLAIMS.contains(&name.as_str()) {
            continue;
        }
        if name == "request" || name == "request_uri" {
            return Err(claim(invalid(
                "a request object must not contain request or request_uri",
            )));
        }
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            // RFC 8707 in a request object: several resources are a JSON array of strings,
            // each one a `resource` parameter.
            Value::Array(list) if name == "resource" => {
                for item in list {
                    let Some(r) = item.as_str().filter(|r| r.len() <= MAX_PARAM_LEN) else {
                        return Err(claim(invalid(
                            "the request object's resource must be a string or an array of strings",
                        )));
                    };
                    params.push((name.clone(), r.to_owned()));
                }
                continue;
            }
            // max_age is a number; claims (an object) stays JSON text.
            other => other.to_string(),
        };
        if value.len() > MAX_PARAM_LEN {
            return Err(claim(invalid(format!(
                "the request object's {:?} is longer than {MAX_PARAM_LEN} bytes",
                name.chars().take(64).collect::<String>()
            ))));
        }
        params.push((name.clone(), value));
    }
    Ok(PageParams(params))
}

/// `exp` required, not past and at most [`MAX_LIFETIME`] ahead; `nbf` and `iat`, when
/// present, numbers not in the future.
fn check_times(claims: &serde_json::Map<String, Value>, now: UnixTime) -> Result<(), OAuthError> {
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("the request object has no exp (a number of seconds)"))?;
    if exp <= now - LEEWAY {
        return Err(invalid("the request object has expired"));
    }
    if exp > now + MAX_LIFETIME + LEEWAY {
        return Err(invalid(
            "the request object's exp is too far ahead: at most 3600 seconds from now",
        ));
    }
    for (name, rule) in [
        ("iat", "the request object's iat is in the future"),
        ("nbf", "the request object is not valid yet (nbf)"),
    ] {
        match claims.get(name) {
            None => {}
            Some(v) => match v.as_i64() {
                Some(t) if t <= now + LEEWAY => {}
                Some(_) => return Err(invalid(rule)),
                None => return Err(invalid("the request object's iat and nbf must be numbers")),
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn times() {
        let now = 1_000_000;
        assert!(check_times(&claims(json!({"exp": now + 60})), now).is_ok());
        assert!(check_times(&claims(json!({})), now).is_err());
        assert!(check_times(&claims(json!({"exp": "soon"})), now).is_err());
        assert!(check_times(&claims(json!({"exp": now - LEEWAY})), now).is_err());
        assert!(check_times(&claims(json!({"exp": now - LEEWAY + 1})), now).is_ok());
        assert!(check_times(&claims(json!({"exp": now + MAX_LIFETIME + LEEWAY})), now).is_ok());
        assert!(check_times(
            &claims(json!({"exp": now + MAX_LIFETIME + LEEWAY + 1})),
            now
        )
        .is_err());
        for name in ["nbf", "iat"] {
            let ok = claims(json!({"exp": now + 60, name: now + LEEWAY}));
            assert!(check_times(&ok, now).is_ok(), "{name}");
            let future = claims(json!({"exp": now + 60, name: now + LEEWAY + 1}));
            assert!(check_times(&future, now).is_err(), "{name}");
            let text = claims(json!({"exp": now + 60, name: "now"}));
            assert!(check_times(&text, now).is_err(), "{name}");
        }
    }
}
