//! Passkeys (WebAuthn) in the browser pages: enrollment on `/account/security`, sign-in
//! with a passkey on the login page (first factor) and on the second-factor step (after a
//! password, or to step a session up to `phr`). The ceremonies themselves are
//! [`signet_core::passkey`].
//!
//! | route | what |
//! |---|---|
//! | `POST /account/security/passkey/options` | form (`csrf`): JSON creation options for `navigator.credentials.create` |
//! | `POST /account/security/passkey` | form (`csrf`, `name`, `response`: the credential's `toJSON()`): adds the passkey |
//! | `POST /account/security/passkey/remove` | form (`csrf`, `id`): removes one |
//! | `POST /login/passkey/options` | form (`interaction`, `csrf`): JSON request options for `navigator.credentials.get` |
//! | `POST /login/passkey` | form (`interaction`, `csrf`, `response`: the assertion's `toJSON()`): signs in |
//!
//! - A ceremony's state is kept in the store (namespace `Interaction`, key
//!   `passkey:<challenge>`, five minutes) and bound to what started it: the session and user
//!   (enrollment) or the interaction (sign-in). The finish takes it with
//!   [`signet_store::Store::consume`]: a challenge is answered once, on any node; a replayed
//!   response finds nothing.
//! - A passkey sign-in records `user.security_changed` (`passkey_used`) with the new
//!   counter and last-used time, demanding the user's version: two nodes accepting one
//!   counter value at once cannot both land. A counter that went back is refused, logged as
//!   a possibly cloned authenticator, and counted (`signet_passkey_failures_total{reason="counter"}`).
//! - The pages' script (one inline script allowed by a fresh CSP nonce, `connect-src
//!   'self'` for the options) uses the browser's `PublicKeyCredential.parse*OptionsFromJSON`
//!   and `toJSON()`; without them the passkey buttons stay hidden.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use signet_core::authorize::Params;
use signet_core::events::SecurityChange;
use signet_core::mfa;
use signet_core::oauth::OAuthError;
use signet_core::passkey::{
    self, Assertion, CeremonyState, PasskeyError, PasskeyFactor, RelyingParty,
};
use signet_core::user::UserRecord;
use signet_store::Namespace;

use super::browser::{
    end_interaction, oauth_error_page, random_token, InteractionError, SecondFactor, StoreResult,
};
use super::client_addr::ClientAddr;
use super::token::now;
use crate::state::AppState;
use crate::users::UserWriteError;

/// How long a ceremony may take (the crate's own timeout is the same).
const CEREMONY_TTL: Duration = Duration::from_secs(300);
const PATIENCE: Duration = Duration::from_secs(10);

const EXPIRED: &str = "This passkey request expired or was already used. Try again.";
const NOT_HERE: &str =
    "This passkey is not registered here (it may have been removed). Sign in another way.";
const OTHER_ACCOUNT: &str = "This passkey belongs to another account.";
const FAILED: &str = "The passkey could not be verified. Try again.";
const CLONED: &str =
    "This passkey was refused: its authenticator may have been copied. Use another way to sign in and check your passkeys.";

fn ceremony_key(challenge: &str) -> String {
    format!("passkey:{challenge}")
}

/// The issuer's relying party.
fn relying_party(state: &AppState) -> Result<RelyingParty, PasskeyError> {
    let url = url::Url::parse(state.config.issuer.as_str()).map_err(|_| PasskeyError::NoDomain)?;
    let name = url.host_str().unwrap_or("Signet").to_owned();
    RelyingParty::new(&url, &name)
}

/// Whether passkeys work with this issuer URL (its host is a domain name).
pub fn available(state: &AppState) -> bool {
    relying_party(state).is_ok()
}

/// A fresh CSP nonce for a page's passkey script.
pub fn script_nonce() -> Option<String> {
    random_token().ok()
}

/// Adds the passkey script's nonce and `connect-src 'self'` to a page's CSP.
pub fn allow_script(headers: &mut HeaderMap, nonce: &str) {
    let Some(csp) = headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let csp = format!("{csp}; script-src 'nonce-{nonce}'; connect-src 'self'");
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
}

/// The template context of the sign-in passkey form.
pub fn login_form(state: &AppState, nonce: &str) -> serde_json::Value {
    json!({
        "action": state.config.issuer.endpoint("/login/passkey"),
        "options": state.config.issuer.endpoint("/login/passkey/options"),
        "nonce": nonce,
    })
}

/// The template context of the enrollment form on the account page (none when the issuer
/// URL cannot have passkeys).
pub fn account_form(state: &AppState, nonce: &str) -> serde_json::Value {
    json!({
        "action": state.config.issuer.endpoint("/account/security/passkey"),
        "options": state.config.issuer.endpoint("/account/security/passkey/options"),
        "nonce": nonce,
    })
}

fn json_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    super::error::no_store(r.headers_mut());
    r
}

fn options_response(options: &str) -> Response {
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        options.to_owned(),
    )
        .into_response();
    super::error::no_store(r.headers_mut());
    r
}

async fn keep(
    state: &AppState,
    started: &passkey::Started,
    c: CeremonyState,
) -> Result<(), OAuthError> {
    let bytes = serde_json::to_vec(&c).map_err(|_| OAuthError::server_error("passkey"))?;
    state
        .store
        .put(
            Namespace::Interaction,
            &ceremony_key(&started.challenge),
            &bytes,
            CEREMONY_TTL,
            &[],
        )
        .await
        .or_unavailable()
}

/// The state of the ceremony of `challenge`, taken (single use).
async fn take(state: &AppState, challenge: &str) -> Result<Option<CeremonyState>, OAuthError> {
    if challenge.len() > 64 {
        return Ok(None);
    }
    Ok(state
        .store
        .consume(Namespace::Interaction, &ceremony_key(challenge))
        .await
        .or_unavailable()?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

// ---------------------------------------------------------------------------------------
// Enrollment
// ---------------------------------------------------------------------------------------

/// `POST /account/security/passkey/options`.
pub async fn enroll_options(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_, session) = match super::account::posted_form(&state, &headers, &body).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let user = match state.users.by_sub(&session.sub).await {
        Ok(Some(u)) => u,
        Ok(None) => return json_error(StatusCode::UNAUTHORIZED, "login_required", "sign in again"),
        Err(e) => {
            let e = super::user_tokens::users_unavailable(e);
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                e.code.as_str(),
                &e.description,
            );
        }
    };
    if user.passkeys.len() >= passkey::MAX_PASSKEYS {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "this account has as many passkeys as it may hold; remove one first",
        );
    }
    let rp = match relying_party(&state) {
        Ok(rp) => rp,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
    };
    let handle = user
        .passkey_handle
        .clone()
        .unwrap_or_else(passkey::new_user_handle);
    let started = match rp.start_registration(&handle, &user.username, &user.passkeys) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "a passkey registration could not start");
            return json_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string());
        }
    };
    let c = CeremonyState {
        kind: "reg".into(),
        bound_to: session.sid.clone(),
        sub: Some(user.sub.clone()),
        handle: Some(handle),
        state: started.state.clone(),
    };
    if let Err(e) = keep(&state, &started, c).await {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            e.code.as_str(),
            &e.description,
        );
    }
    options_response(&started.options)
}

/// `POST /account/security/passkey`.
pub async fn enroll(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (params, session) = match super::account::posted_form(&state, &headers, &body).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let refuse =
        |m: &'static str| super::account_security::show_error(&state, &headers, &session, m);
    let response = params.get("response").unwrap_or_default().as_bytes();
    let Ok(challenge) = passkey::registration_challenge(response) else {
        return refuse(FAILED).await;
    };
    let ceremony = match take(&state, &challenge).await {
        Ok(Some(c))
            if c.kind == "reg"
                && c.bound_to == session.sid
                && c.sub.as_deref() == Some(session.sub.as_str()) =>
        {
            c
        }
        Ok(_) => return refuse(EXPIRED).await,
        Err(e) => return oauth_error_page(&state, None, e),
    };
    let Some(handle) = ceremony.handle.clone() else {
        return refuse(EXPIRED).await;
    };
    let rp = match relying_party(&state) {
        Ok(rp) => rp,
        Err(_) => {
            return refuse("Passkeys need the issuer URL to name a domain, not an IP address.")
                .await
        }
    };
    let registered = match rp.finish_registration(&ceremony.state, response) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(sub = %session.sub, error = %e, "a passkey registration was refused");
            return refuse(FAILED).await;
        }
    };
    let name = passkey::clean_name(params.get("name").unwrap_or_default())
        .unwrap_or_else(|| "Passkey".to_owned());
    let now = now();
    let factor = PasskeyFactor {
        id: registered.id,
        name: name.clone(),
        public_key: registered.public_key,
        state: registered.state,
        sign_count: registered.sign_count,
        created_at: now,
        last_used_at: None,
    };
    let written = state
        .users
        .change_security(
            &format!("user:{}", session.sub),
            &session.sub,
            SecurityChange::PasskeyAdded,
            |u| {
                if u.passkey_handle.as_deref().is_some_and(|h| h != handle) {
                    return Err(UserWriteError::Conflict);
                }
                if u.passkeys.iter().any(|p| p.id == factor.id) {
                    return Err(UserWriteError::Conflict);
                }
                if u.passkeys.len() >= passkey::MAX_PASSKEYS {
                    return Err(UserWriteError::Conflict);
                }
                let mut u = u.clone();
                u.passkey_handle = Some(handle);
                u.passkeys.push(factor);
                Ok(u)
            },
            PATIENCE,
        )
        .await;
    match written {
        Ok(_) => {}
        Err(UserWriteError::Conflict) => {
            return refuse(
                "Your account changed meanwhile (another passkey was added?). Try again.",
            )
            .await
        }
        Err(e) => return super::account_security::write_failed(&state, e),
    }
    tracing::info!(sub = %session.sub, "a passkey was added");
    super::account_security::show_message(&state, &headers, &session, "Your passkey is added.")
        .await
}

/// `POST /account/security/passkey/remove` (form: `id`).
pub async fn remove(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (params, session) = match super::account::posted_form(&state, &headers, &body).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let id = params.get("id").unwrap_or_default().to_owned();
    let written = state
        .users
        .change_security(
            &format!("user:{}", session.sub),
            &session.sub,
            SecurityChange::PasskeyRemoved,
            |u| {
                if !u.passkeys.iter().any(|p| p.id == id) {
                    return Err(UserWriteError::NotFound("passkey".into()));
                }
                let mut u = u.clone();
                u.passkeys.retain(|p| p.id != id);
                Ok(u)
            },
            PATIENCE,
        )
        .await;
    match written {
        Ok(_) => {
            super::account_security::show_message(
                &state,
                &headers,
                &session,
                "The passkey is removed.",
            )
            .await
        }
        Err(UserWriteError::NotFound(_)) => {
            super::account_security::show_error(&state, &headers, &session, "No such passkey.")
                .await
        }
        Err(e) => super::account_security::write_failed(&state, e),
    }
}

// ---------------------------------------------------------------------------------------
// Sign-in
// ---------------------------------------------------------------------------------------

/// `POST /login/passkey/options`.
pub async fn login_options(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_, id, _) = match super::browser::posted_interaction(&state, &headers, &body).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let rp = match relying_party(&state) {
        Ok(rp) => rp,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
    };
    let started = match rp.start_authentication() {
        Ok(s) => s,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
    };
    let c = CeremonyState {
        kind: "auth".into(),
        bound_to: id,
        sub: None,
        handle: None,
        state: started.state.clone(),
    };
    if let Err(e) = keep(&state, &started, c).await {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            e.code.as_str(),
            &e.description,
        );
    }
    options_response(&started.options)
}

fn refused(reason: &'static str) {
    metrics::counter!(crate::telemetry::PASSKEY_FAILURES, "reason" => reason).increment(1);
}

/// The user and passkey an assertion names, checked against the step (a second factor
/// must be the pending user's).
async fn signer(
    state: &AppState,
    assertion: &Assertion,
) -> Result<Option<(UserRecord, PasskeyFactor)>, OAuthError> {
    let handle = assertion.user_handle();
    let user = state
        .users
        .by_passkey_handle(&handle)
        .await
        .map_err(super::user_tokens::users_unavailable)?;
    let Some(user) = user.filter(|u| u.enabled) else {
        return Ok(None);
    };
    let id = assertion.credential_id();
    let found = user.passkeys.iter().find(|p| p.id == id).cloned();
    Ok(found.map(|p| (user, p)))
}

/// `POST /login/passkey`.
pub async fn login(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> Response {
    let headers = parts.headers;
    let addr = parts.extensions.get::<ClientAddr>().copied().map(|c| c.0);
    let (params, id, interaction) =
        match super::browser::posted_interaction(&state, &headers, &body).await {
            Ok(found) => found,
            Err(page) => return page,
        };
    let pending = interaction.second_factor.clone();
    if pending.is_none() && !super::login::local_login_allowed(&state, &interaction) {
        return InteractionError::Gone.into_page(&state);
    }
    let again = |m: &str| match &pending {
        Some(_) => super::second_factor::code_page(
            &state,
            &id,
            &interaction,
            Some(m),
            StatusCode::BAD_REQUEST,
        ),
        None => super::login::login_page(
            &state,
            &id,
            &interaction,
            "",
            Some(m),
            StatusCode::BAD_REQUEST,
        ),
    };
    let Ok(assertion) = Assertion::parse(params.get("response").unwrap_or_default().as_bytes())
    else {
        refused("invalid");
        return again(FAILED);
    };
    let Ok(challenge) = assertion.challenge() else {
        refused("invalid");
        return again(FAILED);
    };
    let ceremony = match take(&state, &challenge).await {
        Ok(Some(c)) if c.kind == "auth" && c.bound_to == id => c,
        Ok(_) => {
            refused("challenge");
            return again(EXPIRED);
        }
        Err(e) => return oauth_error_page(&state, None, e),
    };
    let (user, factor) = match signer(&state, &assertion).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            refused("unknown");
            return again(NOT_HERE);
        }
        Err(e) => return oauth_error_page(&state, None, e),
    };
    if pending.as_ref().is_some_and(|p| p.sub != user.sub) {
        refused("other_user");
        return again(OTHER_ACCOUNT);
    }
    let rp = match relying_party(&state) {
        Ok(rp) => rp,
        Err(_) => return again(FAILED),
    };
    let handle = user.passkey_handle.clone().unwrap_or_default();
    let asserted = match rp.finish_authentication(&ceremony.state, &assertion, &handle, &factor) {
        Ok(a) => a,
        Err(PasskeyError::CounterWentBack) => {
            refused("counter");
            tracing::warn!(
                sub = %user.sub,
                credential = %factor.id,
                stored = factor.sign_count,
                "a passkey's signature counter went back: possibly a cloned authenticator; the sign-in is refused"
            );
            return again(CLONED);
        }
        Err(e) => {
            refused(match e {
                PasskeyError::WrongRelyingParty => "relying_party",
                PasskeyError::UserNotVerified => "user_not_verified",
                _ => "invalid",
            });
            tracing::info!(sub = %user.sub, error = %e, "a passkey sign-in was refused");
            return again(FAILED);
        }
    };
    let now = now();
    let used = state
        .users
        .change_security(
            &format!("user:{}", user.sub),
            &user.sub,
            SecurityChange::PasskeyUsed,
            |u| {
                let Some(p) = u.passkeys.iter().find(|p| p.id == factor.id) else {
                    return Err(UserWriteError::NotFound("passkey".into()));
                };
                // Another sign-in moved the counter meanwhile: this one must still be ahead.
                if p.sign_count != 0 && asserted.sign_count <= p.sign_count {
                    return Err(UserWriteError::Conflict);
                }
                let mut u = u.clone();
                for p in u.passkeys.iter_mut().filter(|p| p.id == factor.id) {
                    p.state = asserted.state.clone();
                    p.sign_count = asserted.sign_count;
                    p.last_used_at = Some(now);
                }
                Ok(u)
            },
            PATIENCE,
        )
        .await;
    match used {
        Ok(_) => {}
        Err(UserWriteError::NotFound(_)) => {
            refused("unknown");
            return again(NOT_HERE);
        }
        Err(UserWriteError::Conflict) => {
            refused("counter");
            return again(FAILED);
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not record a passkey sign-in");
            return oauth_error_page(
                &state,
                None,
                OAuthError::new(
                    signet_core::oauth::ErrorCode::TemporarilyUnavailable,
                    "the sign-in could not be recorded; retry shortly",
                ),
            );
        }
    }
    match pending {
        None => {
            let amr = mfa::with_passkey(&[]);
            super::login::finish_sign_in(&state, &headers, addr, &id, interaction, &user, amr).await
        }
        Some(SecondFactor { step_up: None, .. }) => {
            let amr = mfa::with_passkey(&[mfa::AMR_PWD.to_owned()]);
            super::login::finish_sign_in(&state, &headers, addr, &id, interaction, &user, amr).await
        }
        Some(SecondFactor {
            step_up: Some(sid), ..
        }) => {
            let session = match super::sessions::step_up(
                &state,
                &headers,
                &sid,
                now,
                mfa::with_passkey,
            )
            .await
            {
                Ok(Some(s)) if s.sub == user.sub => s,
                Ok(_) => return InteractionError::Gone.into_page(&state),
                Err(e) => return oauth_error_page(&state, None, e),
            };
            if let Err(e) = end_interaction(&state, &id).await {
                return oauth_error_page(&state, None, e);
            }
            let mut r = super::login::continue_interaction(&state, interaction, session, now).await;
            super::error::no_store(r.headers_mut());
            r
        }
    }
}
