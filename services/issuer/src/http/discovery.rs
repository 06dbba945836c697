//! Discovery (OIDC Discovery 1.0 section 3, RFC 8414 section 2), the JWKS (RFC 7517), and
//! health. Discovery advertises only what this server implements.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use signet_core::scope::ScopeKind;
use signet_core::Algorithm;

use crate::state::AppState;

fn metadata(state: &AppState, oidc: bool) -> Value {
    let issuer = &state.config.issuer;
    let p = state.projection.load();
    let scopes: Vec<&str> = p
        .scopes(ScopeKind::Identity)
        .chain(p.scopes(ScopeKind::Api))
        .filter(|s| s.enabled && s.show_in_discovery_document)
        .map(|s| s.name.as_str())
        .collect();
    let mut doc = json!({
        "issuer": issuer.as_str(),
        "jwks_uri": issuer.endpoint("/oauth2/jwks"),
        "token_endpoint": issuer.endpoint("/oauth2/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "grant_types_supported": ["client_credentials"],
        // No authorization endpoint is served yet, so no response type is supported.
        "response_types_supported": [],
        "scopes_supported": scopes,
    });
    if oidc {
        let mut claims: Vec<&str> = p
            .scopes(ScopeKind::Identity)
            .filter(|s| s.enabled && s.show_in_discovery_document)
            .flat_map(|s| s.user_claims.iter().map(String::as_str))
            .collect();
        claims.sort_unstable();
        claims.dedup();
        doc["subject_types_supported"] = json!(["public"]);
        doc["id_token_signing_alg_values_supported"] = json!(Algorithm::ALL
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>());
        doc["claims_supported"] = json!(claims);
    }
    doc
}

/// `/.well-known/openid-configuration`.
pub async fn openid_configuration(State(state): State<AppState>) -> Json<Value> {
    Json(metadata(&state, true))
}

/// `/.well-known/oauth-authorization-server`.
pub async fn authorization_server(State(state): State<AppState>) -> Json<Value> {
    Json(metadata(&state, false))
}

/// `/oauth2/jwks`: public keys only, cacheable for less than the key pre-publication window,
/// so a verifier always sees a key before it signs.
pub async fn jwks(State(state): State<AppState>) -> Response {
    let body = state.projection.load().jwks_json().to_string();
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "public, max-age={}",
        state.config.jwks_max_age.as_secs()
    )) {
        h.insert(header::CACHE_CONTROL, v);
    }
    resp
}

/// `/healthz`: the process serves HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `/readyz`: the configuration follower runs and signing keys are loaded.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        Json(json!({"status": "ready", "seq": state.projection.load().seq()})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready"})),
        )
            .into_response()
    }
}
