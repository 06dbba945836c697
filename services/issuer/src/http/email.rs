//! Password reset by e-mail link, and verification of a new e-mail address (only with
//! `--smtp-url`; without it the routes answer a page saying the feature is off).
//!
//! | route | what |
//! |---|---|
//! | `GET /login/forgot?interaction=<id>` | the form (a username), from the login page's "Forgot your password?" link |
//! | `POST /login/forgot` | form: `interaction`, `csrf`, `username`; always the same neutral page |
//! | `GET /login/reset?token=<t>` | the new-password form, if the link is live |
//! | `POST /login/reset` | form: `token`, `new`, `confirm` |
//! | `POST /account/security/email` | form: `csrf`, `email`; mails a confirmation link to that address (signed in) |
//! | `GET /account/email/verify?token=<t>` | a verification link: a page with a button (prefetching spends nothing) |
//! | `POST /account/email/verify` | form: `token`; the address becomes the user's verified `email` |
//!
//! **No enumeration.** The forgot form answers the same page at the same speed whatever
//! the name: the lookup, the link and the send all run in a task after the answer. The
//! per-address throttle counts every request, not only those for existing accounts.
//!
//! **Links.** A link carries 256 random bits; the store keeps only their SHA-256
//! (`Namespace::Interaction`, key `email-link:<digest>`) for `--email-link-ttl`, with the
//! user's `sub` and what the link is for. Following it takes the entry atomically
//! (`consume`), so a link works once, on any node. A reset link is also bound to the
//! user's password as it was: the digest of the stored password hash (a new salted hash on
//! every change, whether by reset, `/account/security`, the forced change or the admin
//! API), so any later password change kills it. A verification link is bound to the user
//! and the address it was sent to.
//!
//! **Recipient.** A reset link goes to the `email` on file (as Keycloak does), verified or
//! not: an address reaches `email` only through an administrator or this verification
//! (a user's own change is pending until its link is followed), so the address on file is
//! one the operator or the user vouched for, and a user whose address was set by an
//! administrator can still recover the account.

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use signet_core::authorize::Params;
use signet_core::events::SecurityChange;
use signet_core::oauth::OAuthError;
use signet_core::projection::ClientEntry;
use signet_store::Namespace;

use super::browser::{
    branding, ct_eq, digest_key, error_page, oauth_error_page, posted_interaction, random_token,
    render, render_text, Interaction, PageParams, StoreResult,
};
use super::client_addr::ClientAddr;
use crate::mail::{parse_address, Mail};
use crate::state::AppState;

const PATIENCE: Duration = Duration::from_secs(10);
/// Forgot-password requests per client address per [`WINDOW`] (whatever the names).
pub const MAX_REQUESTS_PER_ADDRESS: u64 = 20;
/// Reset e-mails per account per [`WINDOW`] (against filling someone's mailbox).
pub const MAX_MAILS_PER_ACCOUNT: u64 = 3;
const WINDOW: Duration = Duration::from_secs(15 * 60);

/// What an e-mailed link is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "snake_case")]
enum LinkPurpose {
    /// A password reset, valid while the password hash has this digest.
    Reset { password: String },
    /// Makes `email` the user's verified address.
    Verify { email: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Link {
    sub: String,
    #[serde(flatten)]
    purpose: LinkPurpose,
}

fn link_key(token: &str) -> String {
    format!("email-link:{}", digest_key(token))
}

/// The digest a reset link keeps of the password hash it was issued under.
fn password_digest(password_hash: &str) -> String {
    digest_key(password_hash)
}

/// The page for the e-mail routes when `--smtp-url` is not set.
fn off(state: &AppState) -> Response {
    error_page(
        state,
        None,
        StatusCode::NOT_FOUND,
        "not_available",
        "E-mail is not set up on this server, so passwords cannot be reset and addresses cannot be verified by e-mail. Ask your administrator.",
    )
}

/// Takes (once, on any node) the link of `token`: the link, or the page to answer with
/// (a dead link's page when it is unknown, used or expired).
async fn take_link(state: &AppState, token: &str) -> Result<Link, Response> {
    let taken = state
        .store
        .consume(Namespace::Interaction, &link_key(token))
        .await
        .or_unavailable()
        .map_err(|e| oauth_error_page(state, None, e))?;
    taken
        .and_then(|b| serde_json::from_slice::<Link>(&b).ok())
        .ok_or_else(|| dead_link(state))
}

fn dead_link(state: &AppState) -> Response {
    error_page(
        state,
        None,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "This link has expired, was already used, or no longer applies (the password changed since). Ask for a new one.",
    )
}

fn client_of(state: &AppState, i: &Interaction) -> Option<std::sync::Arc<ClientEntry>> {
    let p = state.projection.load();
    i.request
        .as_ref()
        .and_then(|r| p.client(&r.client_id))
        .cloned()
}

/// Whether the login page shows "Forgot your password?": e-mail is set up and the
/// interaction's client takes passwords.
pub fn forgot_offered(state: &AppState, local_login: bool) -> bool {
    state.config.mailer.is_some() && local_login
}

/// The link the login page shows for an interaction.
pub fn forgot_link(state: &AppState, interaction_id: &str) -> String {
    state.config.issuer.endpoint(&format!(
        "/login/forgot?interaction={}",
        form_urlencoded::byte_serialize(interaction_id.as_bytes()).collect::<String>()
    ))
}

fn forgot_page(
    state: &AppState,
    id: &str,
    i: &Interaction,
    sent: bool,
    status: StatusCode,
) -> Response {
    let client = client_of(state, i);
    let mut ctx = branding(client.as_deref());
    ctx["action"] = state.config.issuer.endpoint("/login/forgot").into();
    ctx["interaction"] = id.into();
    ctx["csrf"] = i.csrf.clone().into();
    ctx["sent"] = sent.into();
    ctx["minutes"] = state.config.email_link_ttl.as_secs().div_ceil(60).into();
    ctx["back"] = state
        .config
        .issuer
        .endpoint(&format!(
            "/login?interaction={}",
            form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
        ))
        .into();
    render("forgot.html", status, ctx)
}

/// `GET /login/forgot?interaction=<id>`.
pub async fn forgot_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if state.config.mailer.is_none() {
        return off(&state);
    }
    super::browser::interaction_page(
        &state,
        &headers,
        query,
        |i| i.second_factor.is_none() && i.password_change.is_none(),
        |id, i| forgot_page(&state, id, i, false, StatusCode::OK),
    )
    .await
}

/// `POST /login/forgot` (form: `interaction`, `csrf`, `username`).
pub async fn forgot_post(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> Response {
    let Some(mailer) = state.config.mailer.clone() else {
        return off(&state);
    };
    let headers = parts.headers;
    let addr = parts.extensions.get::<ClientAddr>().map(|a| a.0);
    let (params, id, interaction) = match posted_interaction(&state, &headers, &body).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    if !super::login::local_login_allowed(&state, &interaction) {
        return oauth_error_page(
            &state,
            None,
            OAuthError::invalid_request("this application does not accept passwords"),
        );
    }
    if let Some(ip) = addr {
        match throttled(
            &state,
            &format!("forgot:addr:{ip}"),
            MAX_REQUESTS_PER_ADDRESS,
        )
        .await
        {
            Ok(false) => {}
            Ok(true) => {
                return error_page(
                    &state,
                    None,
                    StatusCode::TOO_MANY_REQUESTS,
                    "slow_down",
                    "Too many requests. Wait a few minutes and try again.",
                )
            }
            Err(e) => return oauth_error_page(&state, None, e),
        }
    }
    let name = params.get("username").unwrap_or_default().trim().to_owned();
    if !name.is_empty() && name.len() <= 256 {
        let client = client_of(&state, &interaction);
        let state = state.clone();
        tokio::spawn(async move {
            send_reset(&state, &mailer, &name, client.as_deref(), addr).await;
        });
    }
    forgot_page(&state, &id, &interaction, true, StatusCode::OK)
}

/// Counts a request against `key`; whether it is over `limit`.
async fn throttled(state: &AppState, key: &str, limit: u64) -> Result<bool, OAuthError> {
    let n = state
        .store
        .incr(Namespace::RateLimit, key, WINDOW)
        .await
        .or_unavailable()?;
    Ok(n > limit)
}

/// The background half of the forgot form: finds the user, stores a link, sends it.
/// Everything that happens here is invisible to the requester; failures are logged
/// without the link.
async fn send_reset(
    state: &AppState,
    mailer: &crate::mail::Mailer,
    name: &str,
    client: Option<&ClientEntry>,
    addr: Option<IpAddr>,
) {
    let user = match state.users.by_username(name).await {
        Ok(Some(u)) if u.enabled => u,
        Ok(_) => {
            tracing::info!(?addr, "password reset asked for no usable account");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "password reset: the user directory failed");
            return;
        }
    };
    let Some(to) = user
        .claims
        .get("email")
        .and_then(|e| e.as_str())
        .and_then(|e| parse_address(e).ok())
    else {
        tracing::info!(sub = %user.sub, "password reset asked for an account without a usable e-mail address");
        return;
    };
    match throttled(
        state,
        &format!("forgot:user:{}", user.sub),
        MAX_MAILS_PER_ACCOUNT,
    )
    .await
    {
        Ok(false) => {}
        Ok(true) => {
            tracing::info!(sub = %user.sub, "password reset: too many e-mails for this account; none sent");
            return;
        }
        Err(_) => return,
    }
    let link = Link {
        sub: user.sub.clone(),
        purpose: LinkPurpose::Reset {
            password: password_digest(&user.password_hash),
        },
    };
    let Some(token) = store_link(state, &link).await else {
        return;
    };
    let url = state
        .config
        .issuer
        .endpoint(&format!("/login/reset?token={token}"));
    let minutes = state.config.email_link_ttl.as_secs().div_ceil(60);
    let Some(mail) = compose(
        state,
        client,
        to,
        "Reset your password",
        &format!(
            "Someone (we hope you) asked to reset the password of your account \"{}\". Follow the link to choose a new one; it is valid for {minutes} minutes and works once.",
            user.username
        ),
        Some((&url, "Choose a new password")),
        "If you did not ask for this, ignore this message: your password stays as it is.",
    ) else {
        return;
    };
    mailer.send_later("reset", mail);
}

/// Stores `link` under a new random token; the token, or `None` (logged).
async fn store_link(state: &AppState, link: &Link) -> Option<String> {
    let token = random_token().ok()?;
    let value = serde_json::to_vec(link).ok()?;
    match state
        .store
        .put(
            Namespace::Interaction,
            &link_key(&token),
            &value,
            state.config.email_link_ttl,
            &[signet_store::Index::Subject(&link.sub)],
        )
        .await
    {
        Ok(()) => Some(token),
        Err(e) => {
            tracing::warn!(error = %e, "an e-mail link could not be stored; no e-mail sent");
            None
        }
    }
}

/// A message with the branding of `client` (or the server's): both bodies from the
/// `mail.txt` / `mail.html` templates.
fn compose(
    state: &AppState,
    client: Option<&ClientEntry>,
    to: lettre::Address,
    subject: &str,
    intro: &str,
    link: Option<(&str, &str)>,
    outro: &str,
) -> Option<Mail> {
    let mut ctx = branding(client);
    ctx["server"] = state.config.issuer.as_str().into();
    ctx["heading"] = subject.into();
    ctx["intro"] = intro.into();
    ctx["outro"] = outro.into();
    if let Some((url, label)) = link {
        ctx["link"] = url.into();
        ctx["link_label"] = label.into();
    }
    Some(Mail {
        to,
        subject: subject.to_owned(),
        text: render_text("mail.txt", &ctx)?,
        html: render_text("mail.html", &ctx)?,
    })
}

fn token_of(params: Option<&PageParams>) -> Option<&str> {
    params.and_then(|p| p.get("token")).filter(|t| {
        t.len() <= 64
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

fn reset_page(
    state: &AppState,
    token: &str,
    error: Option<&str>,
    done: bool,
    status: StatusCode,
) -> Response {
    render(
        "reset.html",
        status,
        json!({
            "action": state.config.issuer.endpoint("/login/reset"),
            "token": token,
            "error": error,
            "done": done,
            "min_length": state.config.password_policy.min_length,
        }),
    )
}

/// The live reset link `token` names, without taking it.
/// The live link `token`, if it is one for `purpose` (read, not used up).
async fn peek_link(
    state: &AppState,
    token: &str,
    purpose: fn(&LinkPurpose) -> bool,
) -> Result<Option<Link>, OAuthError> {
    let found = state
        .store
        .get(Namespace::Interaction, &link_key(token))
        .await
        .or_unavailable()?;
    Ok(found
        .and_then(|b| serde_json::from_slice::<Link>(&b).ok())
        .filter(|l| purpose(&l.purpose)))
}

fn is_reset(p: &LinkPurpose) -> bool {
    matches!(p, LinkPurpose::Reset { .. })
}

fn is_verify(p: &LinkPurpose) -> bool {
    matches!(p, LinkPurpose::Verify { .. })
}

/// `GET /login/reset?token=<t>`.
pub async fn reset_get(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    if state.config.mailer.is_none() {
        return off(&state);
    }
    let params = PageParams::parse(query.unwrap_or_default().as_bytes()).ok();
    let Some(token) = token_of(params.as_ref()) else {
        return dead_link(&state);
    };
    match peek_link(&state, token, is_reset).await {
        Ok(Some(_)) => reset_page(&state, token, None, false, StatusCode::OK),
        Ok(None) => dead_link(&state),
        Err(e) => oauth_error_page(&state, None, e),
    }
}

/// `POST /login/reset` (form: `token`, `new`, `confirm`). The token is the form's CSRF
/// token: only the link's recipient knows it (and the form must come from our origin).
pub async fn reset_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(mailer) = state.config.mailer.clone() else {
        return off(&state);
    };
    if let Some(page) = super::browser::not_a_form(&state, &headers) {
        return page;
    }
    let params = match PageParams::parse(&body) {
        Ok(p) => p,
        Err(e) => return oauth_error_page(&state, None, e),
    };
    let Some(token) = token_of(Some(&params)).map(str::to_owned) else {
        return dead_link(&state);
    };
    let new = params.get("new").unwrap_or_default().to_owned();
    // Mistakes in the form keep the link usable.
    let again = |m: &str| reset_page(&state, &token, Some(m), false, StatusCode::BAD_REQUEST);
    match peek_link(&state, &token, is_reset).await {
        Ok(Some(_)) => {}
        Ok(None) => return dead_link(&state),
        Err(e) => return oauth_error_page(&state, None, e),
    }
    if let Err(why) = super::password_step::check_new_password(&state, &new, params.get("confirm"))
    {
        return again(&why);
    }
    // Hash before taking the link: a slow hash must not leave a taken link unused.
    let new_hash = match crate::users::hash(&new).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "password reset: hashing failed");
            return oauth_error_page(
                &state,
                None,
                OAuthError::server_error("the password could not be set"),
            );
        }
    };
    let Link {
        sub,
        purpose: LinkPurpose::Reset { password },
    } = (match take_link(&state, &token).await {
        Ok(link) => link,
        Err(page) => return page,
    })
    else {
        return dead_link(&state);
    };
    let written = state
        .users
        .change_security(
            &format!("user:{sub}"),
            &sub,
            SecurityChange::PasswordReset,
            |u| {
                // The password changed since the link was sent: the link is dead.
                if !u.enabled || !ct_eq(&password_digest(&u.password_hash), &password) {
                    return Err(crate::users::UserWriteError::Conflict);
                }
                let mut u = u.clone();
                u.password_hash = new_hash;
                u.must_change_password = false;
                Ok(u)
            },
            PATIENCE,
        )
        .await;
    let user = match written {
        Ok(u) => u,
        Err(crate::users::UserWriteError::Conflict | crate::users::UserWriteError::NotFound(_)) => {
            return dead_link(&state)
        }
        Err(e) => {
            tracing::warn!(error = %e, "password reset: the change could not be recorded");
            return oauth_error_page(
                &state,
                None,
                OAuthError::new(
                    signet_core::oauth::ErrorCode::TemporarilyUnavailable,
                    "the change could not be recorded; ask for a new link shortly",
                ),
            );
        }
    };
    // Whoever knew the old password is signed out everywhere.
    let now = super::token::now();
    if let Err(e) = super::sessions::end_all_of_user(&state, &sub, None, now).await {
        tracing::warn!(error = %e.description, "password reset: the user's sessions could not all be ended");
    }
    send_changed_notice(&state, &mailer, &user);
    reset_page(&state, "", None, true, StatusCode::OK)
}

/// "Your password was changed", to the address on file (if any).
fn send_changed_notice(
    state: &AppState,
    mailer: &crate::mail::Mailer,
    user: &signet_core::user::UserRecord,
) {
    let Some(to) = user
        .claims
        .get("email")
        .and_then(|e| e.as_str())
        .and_then(|e| parse_address(e).ok())
    else {
        return;
    };
    if let Some(mail) = compose(
        state,
        None,
        to,
        "Your password was changed",
        &format!(
            "The password of your account \"{}\" was just changed through a reset link, and every session was signed out.",
            user.username
        ),
        None,
        "If this was not you, contact your administrator right away.",
    ) {
        mailer.send_later("password_changed", mail);
    }
}

// ---------------------------------------------------------------------------------------
// E-mail verification (`/account/security`)

/// The e-mail part of `/account/security` (`null` without `--smtp-url`).
pub fn account_section(
    state: &AppState,
    user: &signet_core::user::UserRecord,
) -> serde_json::Value {
    if state.config.mailer.is_none() {
        return serde_json::Value::Null;
    }
    json!({
        "address": user.claims.get("email").and_then(|e| e.as_str()),
        "verified": user.claims.get("email_verified").and_then(|v| v.as_bool()).unwrap_or(false),
    })
}

/// `POST /account/security/email` (form: `csrf`, `email`): sends a verification link to
/// the address; the user's `email` changes only when it is followed. The same address,
/// not yet verified: a new link to it.
pub async fn email_change(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use super::account_security::{page, Shown};
    let Some(mailer) = state.config.mailer.clone() else {
        return off(&state);
    };
    let (params, session) = match super::account::posted_form(&state, &headers, &body).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let refuse = |m: String| Shown {
        error: Some(m),
        ..Shown::default()
    };
    let address = match parse_address(params.get("email").unwrap_or_default()) {
        Ok(a) => a,
        Err(e) => {
            return page(
                &state,
                &headers,
                &session,
                refuse(format!("The e-mail address was refused: {e}.")),
            )
            .await
        }
    };
    let user = match state.users.by_sub(&session.sub).await {
        Ok(Some(u)) => u,
        Ok(None) => return super::account::to_page(&state, super::browser::AccountPage::Security),
        Err(e) => return oauth_error_page(&state, None, super::user_tokens::users_unavailable(e)),
    };
    let current = account_section(&state, &user);
    if current["address"].as_str() == Some(address.as_ref()) && current["verified"] == true {
        return page(
            &state,
            &headers,
            &session,
            refuse("This address is already your verified address.".into()),
        )
        .await;
    }
    match throttled(
        &state,
        &format!("verify:user:{}", user.sub),
        MAX_MAILS_PER_ACCOUNT,
    )
    .await
    {
        Ok(false) => {}
        Ok(true) => {
            return page(
                &state,
                &headers,
                &session,
                refuse("Too many confirmation e-mails. Wait a few minutes and try again.".into()),
            )
            .await
        }
        Err(e) => return oauth_error_page(&state, None, e),
    }
    let link = Link {
        sub: user.sub.clone(),
        purpose: LinkPurpose::Verify {
            email: address.to_string(),
        },
    };
    let Some(token) = store_link(&state, &link).await else {
        return oauth_error_page(
            &state,
            None,
            OAuthError::new(
                signet_core::oauth::ErrorCode::TemporarilyUnavailable,
                "the link could not be stored; retry shortly",
            ),
        );
    };
    let url = state
        .config
        .issuer
        .endpoint(&format!("/account/email/verify?token={token}"));
    let minutes = state.config.email_link_ttl.as_secs().div_ceil(60);
    if let Some(mail) = compose(
        &state,
        None,
        address,
        "Confirm your e-mail address",
        &format!(
            "Follow the link to make this the e-mail address of your account \"{}\". It is valid for {minutes} minutes and works once.",
            user.username
        ),
        Some((&url, "Confirm this address")),
        "If you did not ask for this, ignore this message: nothing changes.",
    ) {
        mailer.send_later("verify", mail);
    }
    let shown = Shown {
        message: Some("We sent a confirmation link to that address. Your e-mail address changes when you follow it."),
        ..Shown::default()
    };
    page(&state, &headers, &session, shown).await
}

fn verify_page(state: &AppState, token: &str, done: bool) -> Response {
    render(
        "verify_email.html",
        StatusCode::OK,
        json!({
            "action": state.config.issuer.endpoint("/account/email/verify"),
            "token": token,
            "done": done,
        }),
    )
}

/// `GET /account/email/verify?token=<t>`: a page with a button (mail scanners that
/// prefetch links do not spend it).
pub async fn verify_get(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    if state.config.mailer.is_none() {
        return off(&state);
    }
    let params = PageParams::parse(query.unwrap_or_default().as_bytes()).ok();
    let Some(token) = token_of(params.as_ref()) else {
        return dead_link(&state);
    };
    match peek_link(&state, token, is_verify).await {
        Ok(Some(_)) => verify_page(&state, token, false),
        Ok(None) => dead_link(&state),
        Err(e) => oauth_error_page(&state, None, e),
    }
}

/// `POST /account/email/verify` (form: `token`): the address becomes the user's `email`,
/// `email_verified` true (`user.security_changed`, `email_verified`).
pub async fn verify_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if state.config.mailer.is_none() {
        return off(&state);
    }
    if let Some(page) = super::browser::not_a_form(&state, &headers) {
        return page;
    }
    let params = match PageParams::parse(&body) {
        Ok(p) => p,
        Err(e) => return oauth_error_page(&state, None, e),
    };
    let Some(token) = token_of(Some(&params)) else {
        return dead_link(&state);
    };
    let Link {
        sub,
        purpose: LinkPurpose::Verify { email },
    } = (match take_link(&state, token).await {
        Ok(link) => link,
        Err(page) => return page,
    })
    else {
        return dead_link(&state);
    };
    let written = state
        .users
        .change_security(
            &format!("user:{sub}"),
            &sub,
            SecurityChange::EmailVerified,
            |u| {
                let mut u = u.clone();
                u.claims.insert("email".into(), email.clone().into());
                u.claims.insert("email_verified".into(), true.into());
                Ok(u)
            },
            PATIENCE,
        )
        .await;
    match written {
        Ok(_) => verify_page(&state, "", true),
        Err(crate::users::UserWriteError::NotFound(_)) => dead_link(&state),
        Err(e) => {
            tracing::warn!(error = %e, "e-mail verification: the change could not be recorded");
            oauth_error_page(
                &state,
                None,
                OAuthError::new(
                    signet_core::oauth::ErrorCode::TemporarilyUnavailable,
                    "the change could not be recorded; ask for a new link shortly",
                ),
            )
        }
    }
}
