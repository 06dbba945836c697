//! Sign-in through upstream OpenID Connect providers (issue 16): the login page's provider
//! buttons post to `/federation/{scheme}/start`; the provider sends the browser back to
//! `{issuer}/federation/{scheme}/callback`.
//!
//! - Start: the provider's discovery document (`{authority}/.well-known/openid-configuration`,
//!   fetched through [`signet_outbound`] and cached for [`DISCOVERY_FRESHNESS`]; its
//!   `issuer` must be the authority), then a redirect to its authorization endpoint with
//!   `state`, `nonce` and PKCE S256 (RFC 7636). What the callback needs (the interaction,
//!   nonce, verifier, the browser) is kept in the store under the state's digest for
//!   [`PENDING_TTL`], so the callback may land on any node, and is consumed once.
//! - Callback: the state is consumed (a replay finds nothing) and must belong to this
//!   browser; `iss` (RFC 9207) is checked when sent (and required when the provider says it
//!   sends it), which defeats mix-up (RFC 9700 section 4.4); the code is redeemed at the
//!   token endpoint (`client_secret_post` with the sealed secret, or as a public client);
//!   the ID token is verified ([`verify_id_token`]): asymmetric signature with the
//!   provider's JWKS (cached, refetched on an unknown `kid`), `iss`, `aud`, `azp`, `nonce`,
//!   `exp`/`iat` with [`LEEWAY`].
//! - The user: found by the link (scheme, upstream `sub`), or created just in time
//!   ([`crate::users::Users::federated`]); the session's `amr` is the upstream's `amr`
//!   when it sends one, else `["fed"]`, and its `idp` is the scheme (both in ID tokens).
//! - Failures are pages (400, never a 5xx; the provider's answers are never shown), except
//!   an upstream `access_denied`, which goes back to the client as `access_denied`.
//! - An LDAP directory (`type: "ldap"`) has no redirect: its button leads to Signet's own
//!   directory form ([`ldap`]).

pub mod ldap;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use signet_core::authorize::{AuthorizeRequest, Params};
use signet_core::identity_provider::{IdentityProvider, UpstreamAuthMethod};
use signet_core::oauth::{ErrorCode, OAuthError};
use signet_store::Namespace;

use super::authorize::{continue_flow, redirect_error, to_redirect};
use super::browser::{
    cookie, ct_eq, digest_key, end_interaction, error_page, load_interaction, oauth_error_page,
    random_token, Interaction, InteractionError, PageParams, StoreResult, INTERACTION_COOKIE,
    SESSION_COOKIE,
};
use super::client_addr::ClientAddr;
use super::token::now;
use crate::state::AppState;

/// How long a discovery document is used.
pub const DISCOVERY_FRESHNESS: Duration = Duration::from_secs(300);
/// How long a started upstream sign-in waits for its callback.
pub const PENDING_TTL: Duration = Duration::from_secs(600);
/// Clock skew allowed on the ID token's `exp` and `iat`.
pub const LEEWAY: i64 = 60;
/// What a provider's discovery document says (the members used).
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
}

/// The node's federation state: discovery documents and providers' key sets.
#[derive(Default)]
pub struct Federation {
    discovery: Mutex<HashMap<String, (Instant, Arc<Discovery>)>>,
    jwks: super::client_jwks::JwksCache,
}

/// Why an upstream sign-in failed; the message is for the log (hosts and reasons, never a
/// token or a secret). The user sees [`FederationError::page_text`].
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("no outbound HTTP client on this node")]
    NoOutbound,
    #[error("the provider could not be reached: {0}")]
    Unreachable(#[from] signet_outbound::OutboundError),
    #[error("the provider answered HTTP {0}")]
    Status(u16),
    #[error("the provider's answer is not what the protocol says: {0}")]
    Malformed(&'static str),
    #[error("the provider's keys: {0}")]
    Keys(#[from] super::client_jwks::JwksError),
    #[error("the ID token is invalid: {0}")]
    IdToken(IdTokenError),
    #[error("the client secret cannot be opened on this node")]
    Sealed,
    #[error("no signing key for a client assertion the provider accepts")]
    NoAssertionKey,
}

impl FederationError {
    fn page_text(&self) -> &'static str {
        match self {
            FederationError::NoOutbound
            | FederationError::Unreachable(_)
            | FederationError::Status(_) => {
                "The sign-in service could not be reached. Try again later, or go back to the application and sign in another way."
            }
            _ => "The sign-in service sent an answer that cannot be trusted. Go back to the application and try again.",
        }
    }
}

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the signature does not verify with the provider's keys ({0})")]
    Signature(String),
    #[error("the payload is not a JSON object")]
    Payload,
    #[error("iss is not the provider's issuer")]
    Issuer,
    #[error("aud does not contain the client id")]
    Audience,
    #[error("azp is not the client id")]
    AuthorizedParty,
    #[error("the nonce does not match")]
    Nonce,
    #[error("the token has expired")]
    Expired,
    #[error("iat is in the future or missing")]
    IssuedAt,
    #[error("sub is missing or longer than 255 characters")]
    Subject,
}

/// What an ID token must match.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub now: i64,
}

/// Verifies an ID token (OIDC Core section 3.1.3.7) against `keys`: the signature with an
/// asymmetric algorithm (never `none` or HMAC: [`signet_jose::verify_with_client_keys`]),
/// then the claims. Returns the claims.
pub fn verify_id_token(
    token: &str,
    keys: &[signet_jose::ClientKey],
    want: &Expected<'_>,
) -> Result<Map<String, Value>, IdTokenError> {
    let verified = signet_jose::verify_with_client_keys(token, keys.iter())
        .map_err(|e| IdTokenError::Signature(e.to_string()))?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&verified.payload).map_err(|_| IdTokenError::Payload)?;
    if claims.get("iss").and_then(Value::as_str) != Some(want.issuer) {
        return Err(IdTokenError::Issuer);
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&want.client_id) {
        return Err(IdTokenError::Audience);
    }
    match claims.get("azp") {
        Some(azp) if azp.as_str() != Some(want.client_id) => {
            return Err(IdTokenError::AuthorizedParty)
        }
        None if audiences.len() > 1 => return Err(IdTokenError::AuthorizedParty),
        _ => {}
    }
    let nonce_ok = claims
        .get("nonce")
        .and_then(Value::as_str)
        .is_some_and(|n| ct_eq(n, want.nonce));
    if !nonce_ok {
        return Err(IdTokenError::Nonce);
    }
    match claims.get("exp").and_then(Value::as_i64) {
        Some(exp) if exp + LEEWAY > want.now => {}
        _ => return Err(IdTokenError::Expired),
    }
    match claims.get("iat").and_then(Value::as_i64) {
        Some(iat) if iat <= want.now + LEEWAY => {}
        _ => return Err(IdTokenError::IssuedAt),
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some(s) if !s.is_empty() && s.len() <= 255 => {}
        _ => return Err(IdTokenError::Subject),
    }
    Ok(claims)
}

/// A provider's discovery document, from the cache or fetched.
async fn discover(
    state: &AppState,
    idp: &IdentityProvider,
) -> Result<Arc<Discovery>, FederationError> {
    // An OAuth 2.0-only provider names its endpoints: nothing to discover, no issuer.
    if let Some(o) = &idp.oauth2 {
        return Ok(Arc::new(Discovery {
            issuer: String::new(),
            authorization_endpoint: o.authorization_endpoint.clone(),
            token_endpoint: o.token_endpoint.clone(),
            jwks_uri: String::new(),
            end_session_endpoint: None,
            userinfo_endpoint: None,
            authorization_response_iss_parameter_supported: false,
            token_endpoint_auth_signing_alg_values_supported: Vec::new(),
        }));
    }
    let fed = &state.federation;
    {
        let cache = fed.discovery.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, d)) = cache.get(&idp.authority) {
            if at.elapsed() < DISCOVERY_FRESHNESS {
                return Ok(d.clone());
            }
        }
    }
    let outbound = state.outbound().ok_or(FederationError::NoOutbound)?;
    let answer = outbound
        .get(&format!(
            "{}/.well-known/openid-configuration",
            idp.authority
        ))
        .await?;
    if answer.status != 200 {
        return Err(FederationError::Status(answer.status));
    }
    let d: Discovery = serde_json::from_slice(&answer.body)
        .map_err(|_| FederationError::Malformed("the discovery document"))?;
    // OIDC Discovery section 4.3: the issuer is the URL the document was asked of.
    if d.issuer.trim_end_matches('/') != idp.authority {
        return Err(FederationError::Malformed(
            "the discovery document's issuer is not the authority",
        ));
    }
    for u in [&d.authorization_endpoint, &d.token_endpoint, &d.jwks_uri]
        .into_iter()
        .chain(&d.userinfo_endpoint)
    {
        outbound.check_url(u)?;
    }
    let d = Arc::new(d);
    fed.discovery
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(idp.authority.clone(), (Instant::now(), d.clone()));
    Ok(d)
}

/// An upstream sign-in in progress, kept in the store under the state's digest.
#[derive(Serialize, Deserialize)]
struct Pending {
    scheme: String,
    interaction: String,
    nonce: String,
    verifier: String,
    /// Digest of the interaction cookie of the browser that started it (of its session
    /// cookie when linking).
    browser: String,
    /// Linking: the signed-in user the upstream identity is to be linked to (no
    /// interaction then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link: Option<String>,
}

fn pending_key(state_value: &str) -> String {
    format!("federation:{}", digest_key(state_value))
}

fn callback_uri(state: &AppState, scheme: &str) -> String {
    state
        .config
        .issuer
        .endpoint(&format!("/federation/{scheme}/callback"))
}

fn failure_page(state: &AppState, text: &str) -> Response {
    error_page(state, None, StatusCode::BAD_REQUEST, "access_denied", text)
}

/// The providers `request`'s client may use (all enabled ones when it names none), as the
/// login page lists them; `None` request (account pages): every enabled provider.
pub fn offered<'p>(
    p: &'p signet_core::projection::Projection,
    request: Option<&AuthorizeRequest>,
) -> Vec<&'p Arc<IdentityProvider>> {
    let restrictions = request
        .and_then(|r| p.client(&r.client_id))
        .map(|c| c.client.identity_provider_restrictions.clone())
        .unwrap_or_default();
    p.identity_providers()
        .filter(|i| i.enabled)
        .filter(|i| restrictions.is_empty() || restrictions.contains(&i.scheme))
        .collect()
}

/// The origins a provider button's redirect may go to: each offered provider's authority
/// and, when its discovery document is cached, its authorization endpoint.
pub fn form_origins(
    state: &AppState,
    p: &signet_core::projection::Projection,
    request: Option<&AuthorizeRequest>,
) -> Vec<String> {
    let cache = state
        .federation
        .discovery
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let mut out: Vec<String> = Vec::new();
    for idp in offered(p, request) {
        let mut urls = vec![idp.authority.clone()];
        if let Some(o) = &idp.oauth2 {
            urls.push(o.authorization_endpoint.clone());
        }
        if let Some((_, d)) = cache.get(&idp.authority) {
            urls.push(d.authorization_endpoint.clone());
        }
        for u in urls {
            if let Ok(u) = url::Url::parse(&u) {
                let o = u.origin().ascii_serialization();
                if o != "null" && !out.contains(&o) {
                    out.push(o);
                }
            }
        }
    }
    out
}

/// Adds `origins` to the CSP `form-action` of a page.
pub fn allow_form_targets(h: &mut HeaderMap, origins: &[String]) {
    let Some(csp) = h
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let csp = csp.replacen(
        "form-action 'self'",
        &format!("form-action 'self' {}", origins.join(" ")),
        1,
    );
    if let Ok(v) = header::HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
}

/// Starts the upstream sign-in of interaction `id` with provider `scheme`: the redirect to
/// the provider, or why not (`Err`: the request may go back to the client with it).
pub async fn begin(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    interaction: &Interaction,
    scheme: &str,
) -> Response {
    match try_begin(state, headers, id, interaction, scheme).await {
        Ok(r) | Err(r) => *r,
    }
}

async fn try_begin(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    interaction: &Interaction,
    scheme: &str,
) -> Result<Box<Response>, Box<Response>> {
    let p = state.projection.load();
    let Some(idp) = offered(&p, interaction.request.as_ref())
        .into_iter()
        .find(|i| i.scheme == scheme)
        .cloned()
    else {
        let e = OAuthError::invalid_request(format!(
            "the identity provider {scheme:?} is not available to this client"
        ));
        return Err(Box::new(match &interaction.request {
            Some(r) => redirect_error(state, to_redirect(r, e)),
            None => oauth_error_page(state, None, e),
        }));
    };
    if idp.ldap.is_some() {
        metrics::counter!(crate::telemetry::FEDERATION_STARTS).increment(1);
        return Ok(Box::new(super::device::see_other(&ldap::form_location(
            state, scheme, id,
        ))));
    }
    let d = match discover(state, &idp).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(scheme, error = %e, "upstream sign-in could not start");
            metrics::counter!(crate::telemetry::FEDERATION_FAILURES).increment(1);
            return Err(Box::new(failure_page(state, e.page_text())));
        }
    };
    let Some(browser) = cookie(headers, INTERACTION_COOKIE).map(digest_key) else {
        return Err(Box::new(InteractionError::Forged.into_page(state)));
    };
    let locales = interaction
        .request
        .as_ref()
        .and_then(|r| r.ui_locales.as_deref());
    to_provider(state, &idp, &d, id, browser, None, locales).await
}

/// The redirect to the provider, its pending sign-in stored: for interaction `id`, or
/// (`link`) for linking the provider's identity to a signed-in user.
async fn to_provider(
    state: &AppState,
    idp: &IdentityProvider,
    d: &Discovery,
    id: &str,
    browser: String,
    link: Option<String>,
    locales: Option<&str>,
) -> Result<Box<Response>, Box<Response>> {
    let scheme = idp.scheme.as_str();
    let page = |e: OAuthError| Box::new(oauth_error_page(state, None, e));
    let (state_value, nonce, verifier) = (
        random_token().map_err(page)?,
        random_token().map_err(page)?,
        random_token().map_err(page)?,
    );
    let challenge = signet_jose::b64url(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
    );
    let pending = Pending {
        scheme: scheme.to_owned(),
        interaction: id.to_owned(),
        nonce: nonce.clone(),
        verifier,
        browser,
        link,
    };
    let bytes =
        serde_json::to_vec(&pending).map_err(|_| page(OAuthError::server_error("pending")))?;
    state
        .store
        .put(
            Namespace::Interaction,
            &pending_key(&state_value),
            &bytes,
            PENDING_TTL,
            &[],
        )
        .await
        .or_unavailable()
        .map_err(page)?;
    let mut u = url::Url::parse(&d.authorization_endpoint).map_err(|_| {
        Box::new(failure_page(
            state,
            FederationError::Malformed("").page_text(),
        ))
    })?;
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &idp.client_id)
        .append_pair("redirect_uri", &callback_uri(state, scheme))
        .append_pair("scope", &idp.scopes.join(" "))
        .append_pair("state", &state_value)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    if idp.oauth2.is_none() {
        u.query_pairs_mut().append_pair("nonce", &nonce);
    }
    if let Some(l) = locales {
        u.query_pairs_mut().append_pair("ui_locales", l);
    }
    metrics::counter!(crate::telemetry::FEDERATION_STARTS).increment(1);
    Ok(Box::new(super::device::see_other(u.as_str())))
}

/// `POST /federation/{scheme}/start`: a provider's button on the login page (CSRF-checked).
pub async fn start_post(
    State(state): State<AppState>,
    Path(scheme): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_, id, interaction) =
        match super::browser::posted_interaction(&state, &headers, &body).await {
            Ok(found) => found,
            Err(page) => return page,
        };
    begin(&state, &headers, &id, &interaction, &scheme).await
}

/// Redeems the code and verifies the ID token: the upstream claims.
async fn redeem(
    state: &AppState,
    idp: &IdentityProvider,
    d: &Discovery,
    code: &str,
    pending: &Pending,
) -> Result<(Map<String, Value>, String), FederationError> {
    let outbound = state.outbound().ok_or(FederationError::NoOutbound)?;
    let secret = match &idp.client_secret_sealed {
        Some(sealed) => Some(
            state
                .config_sealer()
                .and_then(|s| s.open_idp_secret(&idp.scheme, sealed))
                .ok_or(FederationError::Sealed)?,
        ),
        None => None,
    };
    let redirect_uri = callback_uri(state, &idp.scheme);
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", pending.verifier.as_str()),
    ];
    let assertion;
    let answer = match (idp.auth_method(), &secret) {
        (UpstreamAuthMethod::ClientSecretBasic, Some(s)) => {
            outbound
                .post_form_basic(&d.token_endpoint, &form, &idp.client_id, s)
                .await?
        }
        (UpstreamAuthMethod::PrivateKeyJwt, _) => {
            assertion = client_assertion(state, idp, d)?;
            form.extend([
                ("client_id", idp.client_id.as_str()),
                (
                    "client_assertion_type",
                    super::client_auth::JWT_BEARER_ASSERTION,
                ),
                ("client_assertion", assertion.as_str()),
            ]);
            outbound.post_form(&d.token_endpoint, &form).await?
        }
        (_, secret) => {
            form.push(("client_id", idp.client_id.as_str()));
            if let Some(s) = secret {
                form.push(("client_secret", s.as_str()));
            }
            outbound.post_form(&d.token_endpoint, &form).await?
        }
    };
    if answer.status != 200 {
        return Err(FederationError::Status(answer.status));
    }
    let body: Value = serde_json::from_slice(&answer.body)
        .map_err(|_| FederationError::Malformed("the token response is not JSON"))?;
    if let Some(o) = &idp.oauth2 {
        return userinfo(outbound, o, &body)
            .await
            .map(|c| (c, String::new()));
    }
    let id_token =
        body.get("id_token")
            .and_then(Value::as_str)
            .ok_or(FederationError::Malformed(
                "the token response has no id_token",
            ))?;
    let kid = super::client_jwks::header_kid(id_token);
    let want = Expected {
        issuer: &d.issuer,
        client_id: &idp.client_id,
        nonce: &pending.nonce,
        now: now(),
    };
    // The cache refetches (rate-limited) when the kid is unknown to it.
    let keys = state
        .federation
        .jwks
        .keys(Some(outbound), &idp.scheme, 0, &d.jwks_uri, kid.as_deref())
        .await?;
    let mut claims = verify_id_token(id_token, &keys, &want).map_err(FederationError::IdToken)?;
    if idp.get_claims_from_userinfo_endpoint {
        let endpoint = d
            .userinfo_endpoint
            .as_deref()
            .ok_or(FederationError::Malformed(
                "getClaimsFromUserinfoEndpoint, but discovery has no userinfo_endpoint",
            ))?;
        let info = userinfo_claims(outbound, endpoint, &body).await?;
        // OpenID Connect Core section 5.3.4: the answer is about the ID token's subject.
        if info.get("sub") != claims.get("sub") {
            return Err(FederationError::Malformed(
                "the userinfo sub is not the ID token's",
            ));
        }
        for (k, v) in info {
            // The ID token's claims win; how the user authenticated is the ID token's to say.
            if !matches!(
                k.as_str(),
                "amr" | "acr" | "auth_time" | "iss" | "aud" | "nonce"
            ) {
                claims.entry(k).or_insert(v);
            }
        }
    }
    Ok((claims, id_token.to_owned()))
}

/// A client assertion for the provider's token endpoint (RFC 7523 section 3), signed with
/// this node's ID-token key (published in Signet's JWKS, which the provider registers):
/// `iss` = `sub` = the client id, `aud` = the token endpoint it is posted to (OpenID Connect
/// Core section 9; only that endpoint ever receives it), one minute of life, a fresh `jti`.
/// RS256 unless the provider lists signing algorithms without it.
fn client_assertion(
    state: &AppState,
    idp: &IdentityProvider,
    d: &Discovery,
) -> Result<String, FederationError> {
    use signet_jose::Algorithm;
    let listed = &d.token_endpoint_auth_signing_alg_values_supported;
    let signers = state.signers.load();
    let signer = [Algorithm::RS256]
        .into_iter()
        .chain(Algorithm::ALL)
        .filter(|a| listed.is_empty() || listed.iter().any(|l| l == a.as_str()))
        .find_map(|a| signers.id_token(a))
        .ok_or(FederationError::NoAssertionKey)?;
    let jti = random_token().map_err(|_| FederationError::NoAssertionKey)?;
    let now = now();
    let claims = serde_json::json!({
        "iss": idp.client_id, "sub": idp.client_id, "aud": d.token_endpoint,
        "jti": jti, "iat": now, "exp": now + 60,
    });
    signer
        .sign(claims.to_string().as_bytes())
        .map_err(|_| FederationError::NoAssertionKey)
}

/// An OAuth 2.0-only provider's user: its userinfo answer for the access token of `token`
/// (a JSON object), with `sub` set from the provider's subject claim (a string, or an
/// integer as GitHub's `id`).
async fn userinfo(
    outbound: &signet_outbound::Outbound,
    o: &signet_core::identity_provider::OAuth2Endpoints,
    token: &Value,
) -> Result<Map<String, Value>, FederationError> {
    let mut info = userinfo_claims(outbound, &o.userinfo_endpoint, token).await?;
    let sub = match info.get(&o.subject_claim) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => {
            return Err(FederationError::Malformed(
                "the userinfo answer lacks the subject claim",
            ))
        }
    };
    if sub.is_empty() || sub.len() > 255 {
        return Err(FederationError::Malformed(
            "the subject is empty or too long",
        ));
    }
    // Claims the protocol sets are not the provider's to say here.
    info.remove("amr");
    info.insert("sub".into(), Value::String(sub));
    Ok(info)
}

/// The JSON object the userinfo `endpoint` answers for the access token of `token` (a
/// token response).
async fn userinfo_claims(
    outbound: &signet_outbound::Outbound,
    endpoint: &str,
    token: &Value,
) -> Result<Map<String, Value>, FederationError> {
    let access_token =
        token
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or(FederationError::Malformed(
                "the token response has no access_token",
            ))?;
    let answer = outbound.get_bearer(endpoint, access_token).await?;
    if answer.status != 200 {
        return Err(FederationError::Status(answer.status));
    }
    serde_json::from_slice(&answer.body)
        .map_err(|_| FederationError::Malformed("the userinfo answer is not a JSON object"))
}

/// `GET /federation/{scheme}/callback`: the provider's answer.
pub async fn callback(
    State(state): State<AppState>,
    Path(scheme): Path<String>,
    parts: axum::http::request::Parts,
    RawQuery(query): RawQuery,
) -> Response {
    let headers = &parts.headers;
    let addr = parts.extensions.get::<ClientAddr>().map(|c| c.0);
    let params = match PageParams::parse(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(e) => return oauth_error_page(&state, None, e),
    };
    let fail = |why: &str| refused(&state, &scheme, why);
    let Some(state_value) = params.get("state") else {
        return fail("no state");
    };
    let pending: Pending = match state
        .store
        .consume(Namespace::Interaction, &pending_key(state_value))
        .await
        .or_unavailable()
    {
        Ok(Some(b)) => match serde_json::from_slice(&b) {
            Ok(p) => p,
            Err(_) => return fail("unreadable pending sign-in"),
        },
        Ok(None) => return fail("unknown or used state"),
        Err(e) => return oauth_error_page(&state, None, e),
    };
    let binding = match pending.link {
        Some(_) => SESSION_COOKIE,
        None => INTERACTION_COOKIE,
    };
    let same_browser =
        cookie(headers, binding).is_some_and(|c| ct_eq(&digest_key(c), &pending.browser));
    if pending.scheme != scheme || !same_browser {
        return fail("state of another provider or browser");
    }
    if let Some(sub) = pending.link.clone() {
        return link_callback(&state, headers, &scheme, &params, &pending, &sub).await;
    }
    let interaction =
        match load_interaction(&state, headers, Some(&pending.interaction), None).await {
            Ok(i) => i,
            Err(e) => return e.into_page(&state),
        };
    let p = state.projection.load();
    let Some(idp) = offered(&p, interaction.request.as_ref())
        .into_iter()
        .find(|i| i.scheme == scheme)
        .cloned()
    else {
        return fail("provider gone, disabled or not allowed");
    };
    if let Some(error) = params.get("error") {
        tracing::info!(scheme, error = %error.chars().take(64).collect::<String>(), "the provider answered an error");
        metrics::counter!(crate::telemetry::FEDERATION_FAILURES).increment(1);
        if error == "access_denied" {
            if let Some(r) = &interaction.request {
                let _ = end_interaction(&state, &pending.interaction).await;
                return redirect_error(
                    &state,
                    to_redirect(
                        r,
                        OAuthError::new(
                            ErrorCode::AccessDenied,
                            "the user did not sign in at the identity provider",
                        ),
                    ),
                );
            }
        }
    }
    let (claims, id_token, d) = match upstream_answer(&state, &idp, &params, &pending).await {
        Ok(answer) => answer,
        Err(page) => return *page,
    };
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let amr: Vec<String> = match claims.get("amr").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(Value::as_str)
            .take(8)
            .map(|s| s.chars().take(32).collect())
            .collect(),
        _ => vec!["fed".to_owned()],
    };
    let mapped = idp.map_claims(&claims);
    let user = match provision(&state, &scheme, &subject, mapped).await {
        Ok(u) => u,
        Err(page) => return page,
    };
    // RP-initiated logout continues at the provider when it has an end-session endpoint.
    let upstream_logout =
        d.end_session_endpoint
            .clone()
            .map(|endpoint| super::sessions::UpstreamLogout {
                scheme: scheme.clone(),
                end_session_endpoint: endpoint,
                client_id: idp.client_id.clone(),
                id_token,
            });
    finish(
        &state,
        headers,
        addr,
        &pending.interaction,
        interaction,
        &user.sub,
        amr,
        (scheme, upstream_logout),
    )
    .await
}

/// A refused callback, logged with `why` (never shown).
fn refused(state: &AppState, scheme: &str, why: &str) -> Response {
    tracing::info!(scheme, why, "upstream sign-in refused");
    metrics::counter!(crate::telemetry::FEDERATION_FAILURES).increment(1);
    failure_page(
        state,
        "This sign-in cannot be completed: it was already used, has expired, or was not started in this browser. Go back to the application and start again.",
    )
}

/// The provider's answer to a pending sign-in (an `error` in it is a page): the upstream
/// claims, its ID token (empty for an OAuth 2.0-only provider) and discovery document.
async fn upstream_answer(
    state: &AppState,
    idp: &IdentityProvider,
    params: &PageParams,
    pending: &Pending,
) -> Result<(Map<String, Value>, String, Arc<Discovery>), Box<Response>> {
    let scheme = idp.scheme.as_str();
    if params.get("error").is_some() {
        return Err(Box::new(failure_page(
            state,
            "The sign-in service refused the sign-in. Go back to the application and try again, or sign in another way.",
        )));
    }
    let failed = |e: FederationError| {
        tracing::warn!(scheme, error = %e, "upstream sign-in failed");
        metrics::counter!(crate::telemetry::FEDERATION_FAILURES).increment(1);
        Box::new(failure_page(state, e.page_text()))
    };
    let d = discover(state, idp).await.map_err(failed)?;
    // RFC 9207: the answer names who sent it; required when the provider says it does.
    // (An OAuth 2.0-only provider has no issuer: each provider has its own callback URL,
    // which is the mix-up defence there.)
    match params.get("iss") {
        Some(iss) if idp.oauth2.is_none() && iss != d.issuer => {
            return Err(Box::new(refused(
                state,
                scheme,
                "iss is not the provider's issuer (mix-up)",
            )))
        }
        None if d.authorization_response_iss_parameter_supported => {
            return Err(Box::new(refused(
                state,
                scheme,
                "iss missing though the provider sends it",
            )))
        }
        _ => {}
    }
    let Some(code) = params.get("code") else {
        return Err(Box::new(refused(state, scheme, "no code")));
    };
    let (claims, id_token) = redeem(state, idp, &d, code, pending)
        .await
        .map_err(failed)?;
    Ok((claims, id_token, d))
}

/// `POST /account/links/{scheme}` (see [`super::account_links`]): the signed-in user `sub`
/// (whose session cookie digest is `browser`) goes to the provider to link its identity.
pub async fn begin_link(
    state: &AppState,
    idp: &IdentityProvider,
    sub: &str,
    browser: String,
) -> Response {
    let d = match discover(state, idp).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(scheme = %idp.scheme, error = %e, "linking could not start");
            metrics::counter!(crate::telemetry::FEDERATION_FAILURES).increment(1);
            return failure_page(state, e.page_text());
        }
    };
    match to_provider(state, idp, &d, "", browser, Some(sub.to_owned()), None).await {
        Ok(r) | Err(r) => *r,
    }
}

/// The callback of a linking: the session that started it must still be `sub`'s; the
/// provider's identity is then linked to that user (if no other user has it).
async fn link_callback(
    state: &AppState,
    headers: &HeaderMap,
    scheme: &str,
    params: &PageParams,
    pending: &Pending,
    sub: &str,
) -> Response {
    match super::sessions::load_session(state, headers).await {
        Ok(Some(s)) if s.sub == sub => {}
        Ok(_) => return refused(state, scheme, "linking: the session ended or changed"),
        Err(e) => return oauth_error_page(state, None, e),
    }
    let p = state.projection.load();
    let Some(idp) = offered(&p, None)
        .into_iter()
        .find(|i| i.scheme == scheme)
        .cloned()
    else {
        return refused(state, scheme, "linking: provider gone or disabled");
    };
    let claims = match upstream_answer(state, &idp, params, pending).await {
        Ok((claims, _, _)) => claims,
        Err(page) => return *page,
    };
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match state
        .users
        .link_external(
            &format!("user:{sub}"),
            sub,
            scheme,
            subject,
            super::admin::common::APPLY_PATIENCE,
        )
        .await
    {
        Ok(_) => {
            tracing::info!(scheme, sub, "an upstream identity was linked to a user");
            fresh_navigation(super::device::see_other(
                &state.config.issuer.endpoint(super::browser::AccountPage::Links.path()),
            ))
        }
        Err(crate::users::UserWriteError::LinkTaken(_)) => failure_page(
            state,
            "This account at the sign-in service is already linked to another account, or yours is linked to another account there. Unlink it first.",
        ),
        Err(e) => {
            tracing::warn!(scheme, error = %e, "an upstream identity could not be linked");
            failure_page(
                state,
                "The link could not be recorded. Try again later.",
            )
        }
    }
}

/// The Signet user of upstream identity (`scheme`, `subject`): found by its link, or
/// created just in time with the `mapped` claims; an enabled one, or the page that says
/// why not.
async fn provision(
    state: &AppState,
    scheme: &str,
    subject: &str,
    mapped: Map<String, Value>,
) -> Result<signet_core::user::UserRecord, Response> {
    let user =
        match state
            .users
            .federated(
                scheme,
                subject,
                mapped,
                super::admin::common::APPLY_PATIENCE,
            )
            .await
        {
            Ok(Some((u, created))) => {
                if created {
                    tracing::info!(scheme, sub = %u.sub, "user created from an upstream identity");
                    metrics::counter!(crate::telemetry::FEDERATION_USERS_CREATED).increment(1);
                }
                u
            }
            Ok(None) => return Err(failure_page(
                state,
                "This account is no longer linked to the sign-in service. Ask an administrator.",
            )),
            Err(e) => {
                tracing::warn!(scheme, error = %e, "upstream user could not be provisioned");
                return Err(failure_page(
                    state,
                    "Your account could not be set up. Try again later or ask an administrator.",
                ));
            }
        };
    if !user.enabled {
        return Err(failure_page(state, "This account is disabled."));
    }
    Ok(user)
}

/// Where signing out of a session that came from an upstream provider goes next: the
/// provider's end-session endpoint (OpenID Connect RP-Initiated Logout) with the upstream
/// ID token as `id_token_hint` and `{issuer}/federation/{scheme}/logged-out` as
/// `post_logout_redirect_uri`, whose `state` keys (in the store, once, for
/// [`PENDING_TTL`]) where the browser goes after that: `then`, or the signed-out page.
pub async fn upstream_logout_url(
    state: &AppState,
    upstream: &super::sessions::UpstreamLogout,
    then: Option<&str>,
) -> Option<String> {
    let key = random_token().ok()?;
    let value = then.unwrap_or_default().as_bytes().to_vec();
    state
        .store
        .put(
            Namespace::Interaction,
            &format!("federation-logout:{}", digest_key(&key)),
            &value,
            PENDING_TTL,
            &[],
        )
        .await
        .ok()?;
    let mut u = url::Url::parse(&upstream.end_session_endpoint).ok()?;
    u.query_pairs_mut()
        .append_pair("id_token_hint", &upstream.id_token)
        .append_pair("client_id", &upstream.client_id)
        .append_pair(
            "post_logout_redirect_uri",
            &state
                .config
                .issuer
                .endpoint(&format!("/federation/{}/logged-out", upstream.scheme)),
        )
        .append_pair("state", &key);
    Some(u.to_string())
}

/// `GET /federation/{scheme}/logged-out`: back from the provider's end-session endpoint;
/// on to where the sign-out was going (the client's `post_logout_redirect_uri`), or the
/// signed-out page.
pub async fn logged_out(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let params = PageParams::parse(query.unwrap_or_default().as_bytes()).ok();
    let then = match params.as_ref().and_then(|p| p.get("state")) {
        Some(key) => state
            .store
            .consume(
                Namespace::Interaction,
                &format!("federation-logout:{}", digest_key(key)),
            )
            .await
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|t| !t.is_empty()),
        None => None,
    };
    match then {
        Some(target) => {
            let mut r = StatusCode::FOUND.into_response();
            if let Ok(v) = header::HeaderValue::from_str(&target) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            super::error::no_store(r.headers_mut());
            r
        }
        None => super::browser::render_logged_out(super::browser::branding(None), &[], None),
    }
}

/// The sign-in done: the browser's previous session ends, a new one starts, and the
/// interaction continues (consent, or the answer to the client).
#[allow(clippy::too_many_arguments)]
async fn finish(
    state: &AppState,
    headers: &HeaderMap,
    addr: Option<std::net::IpAddr>,
    id: &str,
    interaction: Interaction,
    sub: &str,
    amr: Vec<String>,
    idp: (String, Option<super::sessions::UpstreamLogout>),
) -> Response {
    let now = now();
    match super::sessions::load_session(state, headers).await {
        Ok(Some(previous)) => {
            if let Err(e) = super::sessions::end(state, previous, now).await {
                return oauth_error_page(state, None, e);
            }
        }
        Ok(None) => {}
        Err(e) => return oauth_error_page(state, None, e),
    }
    let facts = super::sessions::SignInFacts::of(headers, addr);
    let (session, cookie) =
        match super::sessions::create_session_via(state, sub, amr, Some(idp), facts, now).await {
            Ok(s) => s,
            Err(e) => return oauth_error_page(state, None, e),
        };
    if let Err(e) = end_interaction(state, id).await {
        return oauth_error_page(state, None, e);
    }
    let mut resp = match interaction.request {
        None => match &interaction.then {
            Some(path) => super::device::see_other(&state.config.issuer.endpoint(path)),
            None => super::account::to_page(state, interaction.account_page),
        },
        Some(request) => {
            let p = state.projection.load();
            let Some(client) = p.client(&request.client_id).cloned() else {
                return InteractionError::Gone.into_page(state);
            };
            continue_flow(state, &p, &client, request, session, now).await
        }
    };
    resp = fresh_navigation(resp);
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    resp
}

/// A redirect from the callback turned into a page that moves on by itself (meta refresh,
/// and a link): the callback is the tail of a redirect chain that began with the upstream's
/// login form, and Chromium checks every redirect of that chain against the upstream
/// page's CSP `form-action`, which knows Signet's callback but not where Signet sends the
/// browser next (the client, or the consent page). A new navigation from our own page
/// starts a chain of its own.
fn fresh_navigation(resp: Response) -> Response {
    if !resp.status().is_redirection() {
        return resp;
    }
    let Some(location) = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned)
    else {
        return resp;
    };
    let mut ctx = super::browser::branding(None);
    ctx["location"] = location.into();
    super::browser::render("continue.html", StatusCode::OK, ctx)
}

#[cfg(test)]
mod tests;
