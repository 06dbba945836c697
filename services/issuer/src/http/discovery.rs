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
        .chain(p.scopes(ScopeKind::Api).filter(|s| {
            // An API scope whose API resources all stay out of discovery stays out too.
            let held = p.audiences_of(&s.name);
            held.is_empty() || held.iter().any(|r| r.resource.show_in_discovery_document)
        }))
        .filter(|s| s.enabled && s.show_in_discovery_document)
        .map(|s| s.name.as_str())
        .collect();
    // Client assertions: the asymmetric algorithms of registered client keys
    // (private_key_jwt), then the HMACs of ClientSecretJwt secrets (client_secret_jwt).
    let key_algs: Vec<&str> = Algorithm::ALL.iter().map(|a| a.as_str()).collect();
    let assertion_algs: Vec<&str> = key_algs
        .iter()
        .copied()
        .chain(signet_jose::HMAC_ALGORITHMS)
        .collect();
    let mut doc = json!({
        "issuer": issuer.as_str(),
        "jwks_uri": issuer.endpoint("/oauth2/jwks"),
        "token_endpoint": issuer.endpoint("/oauth2/token"),
        "authorization_endpoint": issuer.endpoint("/oauth2/authorize"),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "grant_types_supported": [
            "authorization_code", "implicit", "refresh_token", "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "urn:ietf:params:oauth:grant-type:device_code"
        ],
        "device_authorization_endpoint": issuer.endpoint("/oauth2/device_authorization"),
        // RFC 8707 resource indicators at the authorization, token, device authorization
        // and PAR endpoints and in request objects. RFC 8707 registers no metadata for
        // this: the member is Signet's (RFC 8414 section 2 allows extensions).
        "resource_indicators_supported": true,
        "introspection_endpoint": issuer.endpoint("/oauth2/introspect"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"],
        "introspection_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint": issuer.endpoint("/oauth2/revoke"),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "response_types_supported": [
            "code", "id_token", "id_token token", "code id_token", "code token",
            "code id_token token", "token"
        ],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "authorization_response_iss_parameter_supported": true,
        "pushed_authorization_request_endpoint": issuer.endpoint("/oauth2/par"),
        "require_pushed_authorization_requests": state.config.require_pushed_authorization_requests,
        // RFC 9101: signed request objects by value and inside PAR; request_uri only from PAR
        // (nothing is fetched from a client's URL).
        "request_parameter_supported": true,
        "request_uri_parameter_supported": false,
        // Request objects are verified with the client's public keys only.
        "request_object_signing_alg_values_supported": key_algs,
        // RFC 9449 section 5.1: exactly the algorithms a DPoP proof is verified with.
        "dpop_signing_alg_values_supported": signet_jose::DPOP_ALGORITHMS
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        "scopes_supported": scopes,
    });
    if state.config.mtls() {
        mutual_tls(state, &mut doc, oidc);
    }
    if state.config.dynamic_client_registration {
        doc["registration_endpoint"] = json!(issuer.endpoint("/oauth2/register"));
    }
    if oidc {
        let mut claims: Vec<&str> = p
            .scopes(ScopeKind::Identity)
            .filter(|s| s.enabled && s.show_in_discovery_document)
            .flat_map(|s| s.user_claims.iter().map(String::as_str))
            .collect();
        claims.sort_unstable();
        claims.dedup();
        doc["userinfo_endpoint"] = json!(issuer.endpoint("/userinfo"));
        // RP-Initiated, Front-Channel and Back-Channel Logout 1.0 (`iss` and `sid` go to
        // front-channel URIs that require the session; logout tokens always carry `sid`).
        doc["end_session_endpoint"] = json!(issuer.endpoint("/oauth2/logout"));
        doc["frontchannel_logout_supported"] = json!(true);
        doc["frontchannel_logout_session_supported"] = json!(true);
        doc["backchannel_logout_supported"] = json!(true);
        doc["backchannel_logout_session_supported"] = json!(true);
        doc["subject_types_supported"] = json!(["public", "pairwise"]);
        doc["claims_parameter_supported"] = json!(false);
        doc["prompt_values_supported"] = json!(["none", "login", "consent", "select_account"]);
        // The authentication levels ID tokens' `acr` carries, weakest first.
        doc["acr_values_supported"] = json!(signet_core::mfa::Level::ALL
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>());
        doc["id_token_signing_alg_values_supported"] = json!(Algorithm::ALL
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>());
        doc["claims_supported"] = json!(claims);
    }
    doc
}

/// Mutual TLS (RFC 8705 section 3.3 and 5), offered when client certificates can reach
/// this node (`--tls-cert`, or a load balancer at `--mtls-base-url`):
/// `self_signed_tls_client_auth` always, `tls_client_auth` only with CA roots to check the
/// chain (`--tls-client-ca`), certificate-bound access tokens, and with `--mtls-base-url`
/// the endpoints there that take client authentication or a bound token.
fn mutual_tls(state: &AppState, doc: &mut Value, oidc: bool) {
    let mut methods = vec!["self_signed_tls_client_auth"];
    if state.config.cert_policy.roots.is_some() {
        methods.insert(0, "tls_client_auth");
    }
    for member in [
        "token_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        if let Some(list) = doc[member].as_array_mut() {
            list.extend(methods.iter().map(|m| json!(m)));
        }
    }
    doc["tls_client_certificate_bound_access_tokens"] = json!(true);
    if let Some(base) = &state.config.mtls_base_url {
        let mut aliases = json!({
            "token_endpoint": base.endpoint("/oauth2/token"),
            "pushed_authorization_request_endpoint": base.endpoint("/oauth2/par"),
            "introspection_endpoint": base.endpoint("/oauth2/introspect"),
            "revocation_endpoint": base.endpoint("/oauth2/revoke"),
            "device_authorization_endpoint": base.endpoint("/oauth2/device_authorization"),
        });
        if oidc {
            aliases["userinfo_endpoint"] = json!(base.endpoint("/userinfo"));
        }
        doc["mtls_endpoint_aliases"] = aliases;
    }
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

/// `/readyz`: the configuration follower runs, signing keys are loaded (in a cluster: NATS
/// is connected and the key lease valid), and the short-lived state store answers.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_ready_with_store().await {
        Json(json!({"status": "ready", "seq": state.projection.load().seq()})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready"})),
        )
            .into_response()
    }
}

/// `/metrics`: Prometheus text format. Gauges that mirror state are refreshed here, at
/// scrape time, so the hot path never updates them.
pub async fn metrics(State(state): State<AppState>) -> Response {
    use crate::telemetry::*;
    let m = crate::telemetry::metrics();
    let p = state.projection.load();
    let applied = p.seq();
    match state.log.last_seq().await {
        Ok(head) => {
            metrics::gauge!(EVENTLOG_HEAD).set(head as f64);
            metrics::gauge!(EVENTLOG_LAG).set(head.saturating_sub(applied) as f64);
        }
        Err(_) => metrics::counter!(EVENTLOG_ERRORS, "op" => "read").increment(1),
    }
    metrics::gauge!(EVENTLOG_APPLIED).set(applied as f64);
    let ready = state.is_ready_with_store().await;
    metrics::gauge!(READY).set(if ready { 1.0 } else { 0.0 });
    if let Some(c) = state.cluster() {
        if let Some(expiry) = c.leased.expires_at() {
            metrics::gauge!(KEY_LEASE_EXPIRY).set(expiry as f64);
        }
        let connected = c.nats.connection_state() == async_nats::connection::State::Connected;
        metrics::gauge!(NATS_CONNECTED).set(if connected { 1.0 } else { 0.0 });
    }
    for alg in Algorithm::ALL {
        for (state_name, key_state) in [
            ("published", signet_core::keys::KeyState::Published),
            ("active", signet_core::keys::KeyState::Active),
            ("retired", signet_core::keys::KeyState::Retired),
        ] {
            let n = p
                .keys()
                .filter(|k| k.jwk.alg == alg && k.state == key_state)
                .count();
            metrics::gauge!(SIGNING_KEYS, "alg" => alg.as_str(), "state" => state_name)
                .set(n as f64);
        }
    }
    metrics::gauge!(CONFIG_OBJECTS, "kind" => "client").set(p.clients().count() as f64);
    metrics::gauge!(CONFIG_OBJECTS, "kind" => "api_resource").set(p.api_resources().count() as f64);
    metrics::gauge!(CONFIG_OBJECTS, "kind" => "api_scope")
        .set(p.scopes(ScopeKind::Api).count() as f64);
    metrics::gauge!(CONFIG_OBJECTS, "kind" => "identity_resource")
        .set(p.scopes(ScopeKind::Identity).count() as f64);
    drop(p);
    let mut resp = (StatusCode::OK, m.render()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
