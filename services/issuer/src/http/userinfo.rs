//! `/userinfo` (OIDC Core section 5.3), GET and POST: the bearer access token (RFC 6750
//! sections 2.1 and 2.2; a JWT or a reference token) must be one of this issuer's,
//! unexpired, not revoked, carry the `openid` scope, and belong to a user who still exists
//! and is enabled. The answer holds `sub` and the
//! claims the token's identity scopes release.

use super::client_cert::PresentedCert;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use signet_core::authorize::released_claims;

use super::token::now;
use crate::state::AppState;

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: String,
}

/// An RFC 6750 section 3 error: status plus `WWW-Authenticate: Bearer ...`.
fn bearer_error(status: StatusCode, error: Option<&str>, description: &str) -> Response {
    let mut challenge = String::from("Bearer realm=\"signet\"");
    if let Some(e) = error {
        challenge.push_str(&format!(
            ", error=\"{e}\", error_description=\"{description}\""
        ));
    }
    let body = match error {
        Some(e) => serde_json::json!({"error": e, "error_description": description}),
        None => serde_json::json!({"error": "invalid_request", "error_description": description}),
    };
    let mut r = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    super::error::no_store(r.headers_mut());
    r
}

fn invalid_token(description: &str) -> Response {
    bearer_error(StatusCode::UNAUTHORIZED, Some("invalid_token"), description)
}

/// An RFC 9449 section 7.1 error: 401 with `WWW-Authenticate: DPoP ...`.
fn dpop_error(error: &str, description: &str) -> Response {
    let algs: Vec<&str> = signet_jose::DPOP_ALGORITHMS
        .iter()
        .map(|a| a.as_str())
        .collect();
    let challenge = format!(
        "DPoP realm=\"signet\", error=\"{error}\", error_description=\"{}\", algs=\"{}\"",
        description.replace(['"', '\\'], "'"),
        algs.join(" ")
    );
    let body = serde_json::json!({"error": error, "error_description": description});
    let mut r = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    super::error::no_store(r.headers_mut());
    r
}

/// Whether the Authorization header uses the DPoP scheme (RFC 9449 section 7.1).
fn is_dpop(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("dpop"))
}

/// The token from the Authorization header (`Bearer` or `DPoP`), or (POST) the form body's
/// `access_token`.
fn bearer<'a>(headers: &'a HeaderMap, form: Option<&'a str>) -> Result<&'a str, Box<Response>> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| {
            scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop")
        })
        .map(|(_, t)| t.trim());
    match (from_header, form) {
        (Some(_), Some(_)) => Err(Box::new(bearer_error(
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
            "send the access token once: in the Authorization header or the body",
        ))),
        (Some(t), None) | (None, Some(t)) if !t.is_empty() => Ok(t),
        _ => Err(Box::new(bearer_error(
            StatusCode::UNAUTHORIZED,
            None,
            "a bearer access token is required",
        ))),
    }
}

/// The request's client certificate (mutual TLS), if any.
type Cert = Option<axum::Extension<PresentedCert>>;

pub async fn userinfo_get(
    State(state): State<AppState>,
    cert: Cert,
    headers: HeaderMap,
) -> Response {
    match bearer(&headers, None) {
        Ok(token) => answer(&state, &headers, cert, "GET", token).await,
        Err(r) => *r,
    }
}

pub async fn userinfo_post(
    State(state): State<AppState>,
    cert: Cert,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = if super::form::is_form(&headers) {
        match super::form::OAuthForm::parse(&body) {
            Ok(p) => p,
            Err(e) => {
                return bearer_error(
                    StatusCode::BAD_REQUEST,
                    Some("invalid_request"),
                    &e.description,
                )
            }
        }
    } else {
        Vec::new()
    };
    let from_form = form
        .iter()
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.as_str());
    match bearer(&headers, from_form) {
        Ok(token) => answer(&state, &headers, cert, "POST", token).await,
        Err(r) => *r,
    }
}

async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    cert: Cert,
    method: &str,
    token: &str,
) -> Response {
    let p = state.projection.load();
    // A JWT or reference access token of this issuer, unexpired, not revoked, whose client
    // and user still exist and are enabled (`introspect::identify` checks all of it).
    let (claims, user) = match super::introspect::identify(state, &p, token, now()).await {
        Ok(Some(super::introspect::Known::Access {
            claims,
            user: Some(user),
            ..
        })) => (claims, user),
        Ok(_) => return invalid_token("the access token is invalid, expired or revoked"),
        Err(e) => {
            tracing::warn!(error = %e, "token lookup failed at userinfo");
            return bearer_error(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("temporarily_unavailable"),
                "retry shortly",
            );
        }
    };
    // RFC 9449 section 7: a DPoP-bound token only with `Authorization: DPoP` and a proof
    // made with its key for this request; a DPoP request only with a bound token.
    let bound = claims
        .get("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(|j| j.as_str())
        .map(str::to_owned);
    match (bound, is_dpop(headers)) {
        (Some(_), false) => {
            return dpop_error(
                "invalid_token",
                "the access token is DPoP-bound: send it with Authorization: DPoP and a proof",
            )
        }
        (None, true) => return invalid_token("the access token is not DPoP-bound"),
        (Some(jkt), true) => {
            let now = now();
            let proof = match super::dpop::proof_header(headers) {
                Ok(Some(proof)) => proof,
                Ok(None) => return dpop_error("invalid_dpop_proof", "a DPoP proof is required"),
                Err(e) => return dpop_error(e.code.as_str(), &e.description),
            };
            match super::dpop::check(state, proof, method, "/userinfo", Some(token), now).await {
                Ok(p) if super::browser::ct_eq(&p.jkt, &jkt) => {}
                Ok(_) => {
                    return dpop_error(
                        "invalid_dpop_proof",
                        "the DPoP proof is made with another key than the token is bound to",
                    )
                }
                Err(e) if e.code == signet_core::oauth::ErrorCode::TemporarilyUnavailable => {
                    return bearer_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Some("temporarily_unavailable"),
                        "retry shortly",
                    )
                }
                Err(e) => {
                    let mut r = dpop_error(e.code.as_str(), &e.description);
                    super::dpop::add_nonce(state, r.headers_mut(), now).await;
                    return r;
                }
            }
        }
        (None, false) => {}
    }
    // RFC 8705 section 3: a certificate-bound token only over a connection (or from a
    // trusted proxy) with that client certificate.
    if let Some(x5t) = claims
        .get("cnf")
        .and_then(|c| c.get("x5t#S256"))
        .and_then(|t| t.as_str())
    {
        match PresentedCert::certificate(cert.as_ref().map(|c| &c.0)) {
            Ok(Some(c)) if super::browser::ct_eq(&c.facts.thumbprint, x5t) => {}
            Ok(_) => {
                return invalid_token(
                    "the access token is bound to a client certificate: present it (mutual TLS)",
                )
            }
            Err(e) => {
                return bearer_error(
                    StatusCode::BAD_REQUEST,
                    Some(e.code.as_str()),
                    &e.description,
                )
            }
        }
    }
    let Ok(claims) = serde_json::from_value::<Claims>(serde_json::Value::Object(claims)) else {
        return invalid_token("the access token is invalid");
    };
    if !claims.scope.split(' ').any(|s| s == "openid") {
        return bearer_error(
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
            "the access token lacks the openid scope",
        );
    }
    let scopes: Vec<String> = claims.scope.split(' ').map(str::to_owned).collect();
    let mut out = released_claims(&p, &scopes, &user.claims);
    out.insert("sub".into(), claims.sub.into());
    let mut r = axum::Json(serde_json::Value::Object(out)).into_response();
    super::error::no_store(r.headers_mut());
    r
}
