//! The device authorization grant (RFC 8628): `POST /oauth2/device_authorization` hands a
//! device (a TV, a command-line tool) a device code and a user code; the user opens
//! `/device` on a phone or laptop, signs in (the login page, through an interaction that
//! returns here), enters or confirms the user code, sees the client and the scopes, and
//! approves or denies. The device polls the token endpoint meanwhile
//! ([`super::grants::device_code`]).
//!
//! Store layout, shared by every node:
//!
//! | namespace | key | value |
//! |---|---|---|
//! | [`Namespace::DeviceCode`] | SHA-256 of the device code | the [`DeviceGrant`] |
//! | [`Namespace::UserCode`] | SHA-256 of the normalized user code | the device code's key |
//! | [`Namespace::RateLimit`] | `device:poll:<key>`, `device:slow:<key>` | polls in the current interval, slow-downs |
//! | [`Namespace::RateLimit`] | `device:guess:addr:<ip>`, `device:guess:all` | wrong user codes |
//!
//! Neither code is ever stored: a reader of Redis learns neither. A user code is used for
//! one decision (it is consumed); the device code is redeemed once (consumed). A device
//! code lives `deviceCodeLifetime`, then [`EXPIRED_MEMORY`] more so a late poll hears
//! `expired_token` rather than `invalid_grant`.
//!
//! Guessing user codes is throttled: wrong codes are counted per client address and over
//! all addresses in fixed windows; past either limit the page refuses codes for the rest of
//! the window. Each wrong code is logged with the address.

use std::net::IpAddr;
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use signet_core::authorize::{check_scopes, Params};
use signet_core::client::GrantType;
use signet_core::device::{normalize, UserCodeType};
use signet_core::oauth::OAuthError;
use signet_core::projection::{ClientEntry, Projection};
use signet_store::{Index, Namespace};

use super::browser::{
    branding, digest_key, end_interaction, load_session, oauth_error_page, random_token, render,
    start_interaction_then, InteractionError, PageParams, Session, Started, StoreResult,
};
use super::client_addr::ClientAddr;
use super::client_auth::authenticate;
use super::error::{no_store, ProtocolError};
use super::form::OAuthForm;
use super::token::now;
use super::user_tokens::UserGrant;
use crate::state::AppState;

/// How long an expired device code is remembered (to answer `expired_token`).
pub const EXPIRED_MEMORY: Duration = Duration::from_secs(10 * 60);
/// The longest polling interval a device is told to keep after slowing down.
pub const MAX_INTERVAL_SECS: u64 = 60;
/// Wrong user codes allowed per client address in [`GUESS_WINDOW`].
pub const MAX_GUESSES_PER_ADDRESS: u64 = 20;
/// Wrong user codes allowed over all addresses in [`GUESS_WINDOW`]: with 20^8 consonant
/// codes, a thousand guesses find one of a thousand live codes with odds of 1 in 25,000.
pub const MAX_GUESSES: u64 = 1_000;
pub const GUESS_WINDOW: Duration = Duration::from_secs(15 * 60);

const WRONG: &str =
    "This code is wrong, expired or already used. Check the code your device shows.";
const THROTTLED: &str = "Too many wrong codes. Wait a few minutes and try again.";
const GONE: &str = "Your sign-in has ended. Open the device page again.";

/// What the user decided about a device code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Decision {
    Pending,
    /// The user's grant, as an authorization code would carry it.
    Approved(Box<UserGrant>),
    Denied,
}

/// A device authorization request waiting for, or holding, the user's decision.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceGrant {
    pub client_id: String,
    /// The client's incarnation (a client deleted and created again does not inherit it).
    pub client_gen: u64,
    pub scopes: Vec<String>,
    /// RFC 8707 `resource` values of the device authorization request: the API resources
    /// the grant is for (empty: every resource its scopes reach).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// When the device code and its user code expire (Unix seconds).
    pub expires_at: i64,
    pub decision: Decision,
}

/// The store key of a normalized user code.
fn user_code_key(normalized: &str) -> String {
    digest_key(normalized)
}

/// A fresh user code of the client's type, normalized.
fn new_user_code(kind: UserCodeType) -> Result<String, OAuthError> {
    let mut random = [0u8; 64];
    SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| OAuthError::server_error("no randomness available"))?;
    kind.code_from(&random)
        .ok_or_else(|| OAuthError::server_error("no user code could be drawn"))
}

/// How long a store entry about a device grant must live from `now`.
pub fn remaining(grant: &DeviceGrant, now: i64) -> Duration {
    Duration::from_secs(grant.expires_at.saturating_sub(now).max(1) as u64) + EXPIRED_MEMORY
}

/// `POST /oauth2/device_authorization` (RFC 8628 section 3.1): client authentication as at
/// the token endpoint (public clients send `client_id`), the client must allow the device
/// grant, and the scopes are checked as at the authorization endpoint.
pub async fn device_authorization(State(state): State<AppState>, form: OAuthForm) -> Response {
    match authorize_device(&state, &form, now()).await {
        Ok(r) => r,
        Err(e) => e.into_response_for(&form.headers),
    }
}

async fn authorize_device(
    state: &AppState,
    form: &OAuthForm,
    now: i64,
) -> Result<Response, ProtocolError> {
    let p = state.projection.load();
    let client = authenticate(state, &p, form, "/oauth2/device_authorization", now).await?;
    let c = &client.client;
    if !client.allows(GrantType::DeviceCode) {
        return Err(OAuthError::unauthorized_client(
            "the client may not use the device authorization grant",
        )
        .into());
    }
    let requested = form
        .get("scope")
        .ok_or_else(|| OAuthError::invalid_scope("scope is required"))?;
    let scopes = check_scopes(&p, &client, requested)?;
    if scopes.is_empty() {
        return Err(OAuthError::invalid_scope("scope is required").into());
    }
    // RFC 8707: each resource known and holding a requested scope; the token request may
    // narrow further, never widen.
    let resources = form.resources()?;
    if !resources.is_empty() {
        signet_core::grants::resource_indicators::narrow(
            &p,
            &resources,
            &scopes,
            state.config.default_algorithm,
        )?;
    }
    // Validation refuses other values; an old record with one falls back to the default.
    let kind = UserCodeType::parse(c.user_code_type.as_deref()).unwrap_or(UserCodeType::Consonants);
    let lifetime = u64::from(c.device_code_lifetime.max(1));
    let device_code = random_token()?;
    let device_key = digest_key(&device_code);
    let grant = DeviceGrant {
        client_id: c.client_id.clone(),
        client_gen: client.incarnation,
        scopes,
        resources,
        expires_at: now + lifetime as i64,
        decision: Decision::Pending,
    };
    let bytes = serde_json::to_vec(&grant).map_err(|_| OAuthError::server_error("device"))?;
    // The grant first: a user code never points at nothing.
    state
        .store
        .put(
            Namespace::DeviceCode,
            &device_key,
            &bytes,
            remaining(&grant, now),
            &[],
        )
        .await
        .or_unavailable()?;
    let mut user_code = None;
    for _ in 0..5 {
        let code = new_user_code(kind)?;
        // Of two live requests drawing the same code, the second draws again.
        if state
            .store
            .insert(
                Namespace::UserCode,
                &user_code_key(&code),
                device_key.as_bytes(),
                Duration::from_secs(lifetime),
            )
            .await
            .or_unavailable()?
        {
            user_code = Some(code);
            break;
        }
    }
    let Some(user_code) = user_code else {
        tracing::error!("no free user code after five draws");
        return Err(OAuthError::new(
            signet_core::oauth::ErrorCode::TemporarilyUnavailable,
            "no user code is available right now; retry shortly",
        )
        .into());
    };
    let display = kind.display(&user_code);
    let verification_uri = state.config.issuer.endpoint("/device");
    let complete = format!(
        "{verification_uri}?user_code={}",
        form_urlencoded::byte_serialize(display.as_bytes()).collect::<String>()
    );
    tracing::info!(client_id = %c.client_id, "device authorization started");
    let mut resp = Json(json!({
        "device_code": device_code,
        "user_code": display,
        "verification_uri": verification_uri,
        "verification_uri_complete": complete,
        "expires_in": lifetime,
        "interval": state.config.device_poll_interval.as_secs(),
    }))
    .into_response();
    no_store(resp.headers_mut());
    Ok(resp)
}

/// The 405 answer for other methods on the device authorization endpoint, in RFC 6749 form.
pub async fn method_not_allowed() -> Response {
    let mut r = ProtocolError::with_status(
        OAuthError::invalid_request("the device authorization endpoint accepts only POST"),
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

/// A 303 to `location` (after a form post, the browser GETs it).
pub fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    no_store(r.headers_mut());
    r
}

/// A user code the user typed, found and still waiting for a decision.
struct Found {
    /// The normalized code.
    code: String,
    device_key: String,
    grant: DeviceGrant,
    client: std::sync::Arc<ClientEntry>,
}

/// The guessing counters of a client address, with their limits.
fn guess_counters(addr: Option<IpAddr>) -> Vec<(String, u64)> {
    let mut v = vec![("device:guess:all".to_owned(), MAX_GUESSES)];
    if let Some(ip) = addr {
        v.push((format!("device:guess:addr:{ip}"), MAX_GUESSES_PER_ADDRESS));
    }
    v
}

/// Looks up a typed user code: `Ok(Err(message))` for a wrong one (counted) or while
/// throttled.
async fn lookup(
    state: &AppState,
    p: &Projection,
    addr: Option<IpAddr>,
    typed: &str,
    now: i64,
) -> Result<Result<Found, &'static str>, OAuthError> {
    for (key, limit) in guess_counters(addr) {
        let count = state
            .store
            .get(Namespace::RateLimit, &key)
            .await
            .or_unavailable()?
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        if count >= limit {
            tracing::warn!(client = ?addr, counter = %key, "user code guessing throttled");
            return Ok(Err(THROTTLED));
        }
    }
    if let Some(found) = find(state, p, typed, now).await? {
        return Ok(Ok(found));
    }
    metrics::counter!(crate::telemetry::DEVICE_CODE_FAILURES).increment(1);
    tracing::info!(client = ?addr, "a wrong, expired or used user code was entered");
    for (key, _) in guess_counters(addr) {
        state
            .store
            .incr(Namespace::RateLimit, &key, GUESS_WINDOW)
            .await
            .or_unavailable()?;
    }
    Ok(Err(WRONG))
}

async fn find(
    state: &AppState,
    p: &Projection,
    typed: &str,
    now: i64,
) -> Result<Option<Found>, OAuthError> {
    let Some(code) = normalize(typed) else {
        return Ok(None);
    };
    let Some(device_key) = state
        .store
        .get(Namespace::UserCode, &user_code_key(&code))
        .await
        .or_unavailable()?
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return Ok(None);
    };
    let Some(grant) = state
        .store
        .get(Namespace::DeviceCode, &device_key)
        .await
        .or_unavailable()?
        .and_then(|b| serde_json::from_slice::<DeviceGrant>(&b).ok())
    else {
        return Ok(None);
    };
    if !matches!(grant.decision, Decision::Pending) || now >= grant.expires_at {
        return Ok(None);
    }
    let Some(client) = p
        .client(&grant.client_id)
        .filter(|_| super::introspect::client_holds(p, &grant.client_id, grant.client_gen))
        .cloned()
    else {
        return Ok(None);
    };
    Ok(Some(Found {
        code,
        device_key,
        grant,
        client,
    }))
}

/// Records the user's decision on the device code (once: the user code is consumed).
/// `Ok(false)`: someone decided first.
async fn decide(
    state: &AppState,
    found: Found,
    session: &Session,
    allow: bool,
    now: i64,
) -> Result<bool, OAuthError> {
    let Found {
        code,
        device_key,
        mut grant,
        client,
    } = found;
    if state
        .store
        .consume(Namespace::UserCode, &user_code_key(&code))
        .await
        .or_unavailable()?
        .is_none()
    {
        return Ok(false);
    }
    let index = [Index::Session(&session.sid), Index::Subject(&session.sub)];
    let index: &[Index<'_>] = if allow {
        // The client takes part in the session from now on (it is told when it ends), and
        // the grant dies with the session.
        // No redirect in this flow: the client's first redirect URI stands for it, as for
        // the pairwise subject below.
        let sector_uri = client
            .client
            .redirect_uris
            .first()
            .map_or("", String::as_str);
        super::sessions::add_client(state, session, &client.client.client_id, sector_uri, now)
            .await?;
        grant.decision = Decision::Approved(Box::new(UserGrant {
            client_id: grant.client_id.clone(),
            client_gen: grant.client_gen,
            // No redirect in this flow; a pairwise subject's sector is the client's first
            // redirect URI's host, as for its other flows.
            redirect_uri: client
                .client
                .redirect_uris
                .first()
                .cloned()
                .unwrap_or_default(),
            redirect_uri_explicit: false,
            sub: session.sub.clone(),
            scopes: grant.scopes.clone(),
            nonce: None,
            sid: session.sid.clone(),
            auth_time: session.auth_time,
            amr: session.amr.clone(),
            code_challenge: None,
            resources: grant.resources.clone(),
            dpop_jkt: None,
            mtls_x5t: None,
            idp: session.idp.clone(),
        }));
        &index
    } else {
        grant.decision = Decision::Denied;
        &[]
    };
    let bytes = serde_json::to_vec(&grant).map_err(|_| OAuthError::server_error("device"))?;
    state
        .store
        .put(
            Namespace::DeviceCode,
            &device_key,
            &bytes,
            remaining(&grant, now),
            index,
        )
        .await
        .or_unavailable()?;
    tracing::info!(
        client_id = %grant.client_id,
        sid = %session.sid,
        approved = allow,
        "device authorization decided"
    );
    Ok(true)
}

/// The page's context: branding, the form's action, the interaction and its CSRF token.
fn page_ctx(
    state: &AppState,
    client: Option<&ClientEntry>,
    interaction: &str,
    csrf: &str,
) -> serde_json::Value {
    let mut ctx = branding(client);
    ctx["action"] = state.config.issuer.endpoint("/device").into();
    ctx["interaction"] = interaction.into();
    ctx["csrf"] = csrf.into();
    ctx
}

fn enter_page(
    state: &AppState,
    interaction: &str,
    csrf: &str,
    typed: &str,
    error: Option<&str>,
) -> Response {
    let mut ctx = page_ctx(state, None, interaction, csrf);
    ctx["step"] = "enter".into();
    ctx["user_code"] = typed.into();
    ctx["error"] = error.into();
    let status = match error {
        Some(THROTTLED) => StatusCode::TOO_MANY_REQUESTS,
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    render("device.html", status, ctx)
}

fn confirm_page(
    state: &AppState,
    p: &Projection,
    interaction: &str,
    csrf: &str,
    found: &Found,
) -> Response {
    let mut ctx = page_ctx(state, Some(&found.client), interaction, csrf);
    let kind = UserCodeType::parse(found.client.client.user_code_type.as_deref())
        .unwrap_or(UserCodeType::Consonants);
    ctx["step"] = "confirm".into();
    ctx["user_code"] = found.code.clone().into();
    ctx["display_code"] = kind.display(&found.code).into();
    ctx["scopes"] = super::login::scope_views(p, &found.grant.scopes).into();
    render("device.html", StatusCode::OK, ctx)
}

fn done_page(client: &ClientEntry, approved: bool) -> Response {
    let mut ctx = branding(Some(client));
    ctx["step"] = "done".into();
    ctx["approved"] = approved.into();
    render("device.html", StatusCode::OK, ctx)
}

/// The login page, through an interaction that returns to `/device` (with the code typed
/// so far, if any).
async fn to_login(state: &AppState, typed: Option<&str>) -> Response {
    let then = match typed {
        Some(c) => format!(
            "/device?user_code={}",
            form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
        ),
        None => "/device".to_owned(),
    };
    match start_interaction_then(state, None, None, Some(then)).await {
        Ok(Started { id, cookie, .. }) => {
            let mut r = see_other(
                &state
                    .config
                    .issuer
                    .endpoint(&format!("/login?interaction={id}")),
            );
            r.headers_mut().append(header::SET_COOKIE, cookie);
            r
        }
        Err(e) => oauth_error_page(state, None, e),
    }
}

/// Whether the session's sign-in is older than the client's `userSsoLifetime` allows
/// (then the user signs in again, as at the authorization endpoint).
fn too_old(session: &Session, client: &ClientEntry, now: i64) -> bool {
    let age = now.saturating_sub(session.auth_time).max(0) as u64;
    client
        .client
        .user_sso_lifetime
        .is_some_and(|l| age > u64::from(l))
}

/// `GET /device[?user_code=...]`: signed in, the code form (or, with a code, its
/// confirmation); otherwise the login page, which returns here.
pub async fn device_get(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
) -> Response {
    let addr = parts.extensions.get::<ClientAddr>().map(|c| c.0);
    let params = PageParams::parse(parts.uri.query().unwrap_or_default().as_bytes()).ok();
    let typed = params
        .as_ref()
        .and_then(|p| p.get("user_code"))
        .filter(|c| c.len() <= 64)
        .map(str::to_owned);
    let session = match load_session(&state, &parts.headers).await {
        Ok(s) => s,
        Err(e) => return oauth_error_page(&state, None, e),
    };
    let Some(session) = session else {
        return to_login(&state, typed.as_deref()).await;
    };
    let now = now();
    let Started { id, cookie, csrf } =
        match start_interaction_then(&state, None, Some(session.clone()), None).await {
            Ok(started) => started,
            Err(e) => return oauth_error_page(&state, None, e),
        };
    let mut resp = match typed {
        None => enter_page(&state, &id, &csrf, "", None),
        Some(typed) => {
            let p = state.projection.load();
            match lookup(&state, &p, addr, &typed, now).await {
                Ok(Ok(found)) if too_old(&session, &found.client, now) => {
                    return to_login(&state, Some(&found.code)).await
                }
                Ok(Ok(found)) => confirm_page(&state, &p, &id, &csrf, &found),
                Ok(Err(message)) => enter_page(&state, &id, &csrf, &typed, Some(message)),
                Err(e) => return oauth_error_page(&state, None, e),
            }
        }
    };
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    resp
}

/// `POST /device`: `decision=lookup` (the code form) shows the confirmation;
/// `decision=allow` or `deny` (the confirmation) records the decision.
pub async fn device_post(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> Response {
    let headers: &HeaderMap = &parts.headers;
    let addr = parts.extensions.get::<ClientAddr>().map(|c| c.0);
    if let Some(page) = super::browser::not_a_form(&state, headers) {
        return page;
    }
    let params = match PageParams::parse(&body) {
        Ok(p) => p,
        Err(e) => return oauth_error_page(&state, None, e),
    };
    let (id, interaction) =
        match super::browser::interaction_of_form(&state, headers, &params).await {
            Ok(found) => found,
            Err(e) => return e.into_page(&state),
        };
    // The interaction's session must still be this browser's (not ended meanwhile).
    let session = match (interaction.session, load_session(&state, headers).await) {
        (Some(s), Ok(Some(current))) if s.sid == current.sid => current,
        (_, Err(e)) => return oauth_error_page(&state, None, e),
        _ => {
            return super::browser::error_page(
                &state,
                None,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                GONE,
            )
        }
    };
    if interaction.request.is_some() {
        return InteractionError::Gone.into_page(&state);
    }
    let typed = params.get("user_code").unwrap_or_default();
    let csrf = interaction.csrf.as_str();
    if typed.is_empty() || typed.len() > 64 {
        return enter_page(&state, &id, csrf, "", Some(WRONG));
    }
    let now = now();
    let p = state.projection.load();
    let found = match lookup(&state, &p, addr, typed, now).await {
        Ok(Ok(found)) => found,
        Ok(Err(message)) => return enter_page(&state, &id, csrf, typed, Some(message)),
        Err(e) => return oauth_error_page(&state, None, e),
    };
    if too_old(&session, &found.client, now) {
        return to_login(&state, Some(&found.code)).await;
    }
    let allow = match params.get("decision") {
        Some("allow") => true,
        Some("deny") => false,
        _ => return confirm_page(&state, &p, &id, csrf, &found),
    };
    let client = found.client.clone();
    match decide(&state, found, &session, allow, now).await {
        Ok(true) => {}
        Ok(false) => return enter_page(&state, &id, csrf, "", Some(WRONG)),
        Err(e) => return oauth_error_page(&state, None, e),
    }
    if let Err(e) = end_interaction(&state, &id).await {
        return oauth_error_page(&state, None, e);
    }
    done_page(&client, allow)
}
