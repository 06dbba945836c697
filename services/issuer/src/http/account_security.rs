//! `/account/security`: a signed-in user's second factors (the same rules as the other
//! account pages: the session cookie authenticates, every write carries the session's
//! CSRF token, cross-site writes are refused).
//!
//! | route | what |
//! |---|---|
//! | `GET /account/security` | the page (signs the user in first, then returns to it) |
//! | `POST /account/security/totp` | form: confirm an authenticator (`secret`, `code`); shows ten recovery codes once |
//! | `POST /account/security/totp/remove` | form: remove it and the recovery codes (`code`: a current code, or `password`) |
//! | `POST /account/security/recovery-codes` | form: ten new recovery codes (`code`: a current TOTP code) |
//! | `POST /account/security/password` | form: change the password (`current`, `new`, `confirm`), under the server's password policy |
//! | `POST /account/security/email` | form: a new e-mail address, confirmed by a mailed link ([`super::email`], with `--smtp-url`) |
//!
//! Enrollment keeps no server state until it is confirmed: the page generates a secret,
//! shows it (QR code as SVG, and base32) and puts it in the form sealed under the factor
//! key and bound to the user ([`crate::factors`]); the confirmation opens it, checks the
//! code (single-use and throttled like every code), and records `user.security_changed`
//! (`totp_enrolled`) with the sealed secret and the recovery codes' digests.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;
use signet_core::authorize::Params;
use signet_core::events::SecurityChange;
use signet_core::mfa::{self, totp};
use signet_core::oauth::OAuthError;
use signet_core::user::{TotpFactor, UserRecord};

use super::account::{csrf_of, posted_form, sign_in_first, signed_in};
use super::browser::{oauth_error_page, render, AccountPage, Session};
use super::second_factor::{check_code, use_step, Verdict};
use super::token::now;
use crate::state::AppState;
use crate::users::UserWriteError;

const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

fn random<const N: usize>() -> Result<[u8; N], OAuthError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| OAuthError::server_error("no randomness available"))?;
    Ok(b)
}

/// The QR code of `uri` as an SVG document.
fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .build(),
    )
}

/// What the page shows besides the factors.
#[derive(Default)]
pub(super) struct Shown {
    pub(super) recovery_codes: Option<Vec<String>>,
    pub(super) message: Option<&'static str>,
    pub(super) error: Option<String>,
}

pub(super) async fn page(
    state: &AppState,
    headers: &HeaderMap,
    session: &Session,
    shown: Shown,
) -> Response {
    let user = match state.users.by_sub(&session.sub).await {
        Ok(Some(u)) => u,
        Ok(None) => return super::account::to_page(state, AccountPage::Security),
        Err(e) => return oauth_error_page(state, None, super::user_tokens::users_unavailable(e)),
    };
    let Some(key) = state.config_sealer() else {
        return oauth_error_page(
            state,
            None,
            OAuthError::server_error("second factors are not available"),
        );
    };
    // Not enrolled: a fresh secret to enroll, sealed into the form.
    let mut enroll = serde_json::Value::Null;
    if user.totp.is_none() {
        let secret = match random::<{ totp::SECRET_LEN }>() {
            Ok(s) => s,
            Err(e) => return oauth_error_page(state, None, e),
        };
        let b32 = mfa::base32(&secret);
        let uri = totp::otpauth_uri(state.config.issuer.as_str(), &user.username, &b32);
        let (Some(sealed), Some(svg)) = (key.seal_totp(&user.sub, &secret), qr_svg(&uri)) else {
            return oauth_error_page(state, None, OAuthError::server_error("enrollment"));
        };
        let grouped: Vec<String> = b32
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        enroll = json!({"sealed": sealed, "secret": grouped.join(" "), "uri": uri, "qr": svg});
    }
    let status = if shown.error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let factors = user.factors();
    let nonce = super::passkeys::available(state)
        .then(super::passkeys::script_nonce)
        .flatten();
    let passkey_form = nonce
        .as_deref()
        .map(|n| super::passkeys::account_form(state, n));
    let passkeys: Vec<serde_json::Value> = factors
        .passkeys
        .iter()
        .map(|p| {
            json!({
                "id": p.id, "name": p.name,
                "created": date(p.created_at),
                "last_used": p.last_used_at.map(date),
            })
        })
        .collect();
    let mut resp = render(
        "security.html",
        status,
        json!({
            "passkey": passkey_form,
            "passkeys": passkeys,
            "action": state.config.issuer.endpoint("/account/security"),
            "api_keys": state.config.issuer.endpoint("/account/api-keys"),
            "sessions": state.config.issuer.endpoint("/account/sessions"),
            "links": state.config.issuer.endpoint("/account/links"),
            "csrf": csrf_of(headers),
            "username": user.username,
            "totp": factors.totp,
            "recovery_left": factors.recovery_codes,
            "enroll": enroll,
            "recovery_codes": shown.recovery_codes,
            "message": shown.message,
            "error": shown.error,
            "email": super::email::account_section(state, &user),
        }),
    );
    if let Some(n) = &nonce {
        super::passkeys::allow_script(resp.headers_mut(), n);
    }
    resp
}

/// A Unix time as `YYYY-MM-DD HH:MM UTC`.
fn date(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// The page with an error about the last form.
pub(super) async fn show_error(
    state: &AppState,
    headers: &HeaderMap,
    session: &Session,
    error: &str,
) -> Response {
    let shown = Shown {
        error: Some(error.to_owned()),
        ..Shown::default()
    };
    page(state, headers, session, shown).await
}

/// The page with a message about the last form.
pub(super) async fn show_message(
    state: &AppState,
    headers: &HeaderMap,
    session: &Session,
    message: &'static str,
) -> Response {
    let shown = Shown {
        message: Some(message),
        ..Shown::default()
    };
    page(state, headers, session, shown).await
}

/// `GET /account/security`.
pub async fn security_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Err(r) => r,
        Ok(Some(session)) => page(&state, &headers, &session, Shown::default()).await,
        Ok(None) => sign_in_first(&state, AccountPage::Security).await,
    }
}

/// Ten new recovery codes for `sub`: the codes (to show once) and their digests.
fn new_recovery_codes(sub: &str) -> Result<(Vec<String>, Vec<String>), OAuthError> {
    let mut codes = Vec::with_capacity(mfa::RECOVERY_CODES);
    for _ in 0..mfa::RECOVERY_CODES {
        codes.push(mfa::recovery_code(&random::<10>()?));
    }
    let digests = codes.iter().map(|c| mfa::recovery_digest(sub, c)).collect();
    Ok((codes, digests))
}

async fn current_user(state: &AppState, sub: &str) -> Result<UserRecord, Response> {
    match state.users.by_sub(sub).await {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(super::account::to_page(state, AccountPage::Security)),
        Err(e) => Err(oauth_error_page(
            state,
            None,
            super::user_tokens::users_unavailable(e),
        )),
    }
}

pub(super) fn write_failed(state: &AppState, e: UserWriteError) -> Response {
    tracing::warn!(error = %e, "a second-factor change failed");
    let error = match e {
        UserWriteError::Conflict => OAuthError::new(
            signet_core::oauth::ErrorCode::TemporarilyUnavailable,
            "your account changed meanwhile; go back and try again",
        ),
        _ => OAuthError::new(
            signet_core::oauth::ErrorCode::TemporarilyUnavailable,
            "the change could not be recorded; retry shortly",
        ),
    };
    oauth_error_page(state, None, error)
}

fn actor(sub: &str) -> String {
    format!("user:{sub}")
}

/// `POST /account/security/totp` (form: `secret`, the sealed secret the page showed, and
/// `code`).
pub async fn totp_enroll(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (params, session) = match posted_form(&state, &headers, &body).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let user = match current_user(&state, &session.sub).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let again = |error: &str| Shown {
        error: Some(error.to_owned()),
        ..Shown::default()
    };
    if user.totp.is_some() {
        return page(
            &state,
            &headers,
            &session,
            again("An authenticator is already set up; remove it first."),
        )
        .await;
    }
    let sealed = params.get("secret").unwrap_or_default();
    let Some(secret) = state
        .config_sealer()
        .and_then(|k| k.open_totp(&user.sub, sealed))
        .filter(|s| s.len() == totp::SECRET_LEN)
    else {
        return page(
            &state,
            &headers,
            &session,
            again("This setup form is not valid any more; scan the new code."),
        )
        .await;
    };
    let code: String = params
        .get("code")
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let now = now();
    let ok = match totp::verify(&secret, &code, now) {
        Some(step) => match use_step(&state, &user.sub, step).await {
            Ok(fresh) => fresh,
            Err(e) => return oauth_error_page(&state, None, e),
        },
        None => false,
    };
    if !ok {
        return page(
            &state,
            &headers,
            &session,
            again(
                "The code is wrong. Check the time on your device and type the code it shows now.",
            ),
        )
        .await;
    }
    let (codes, digests) = match new_recovery_codes(&user.sub) {
        Ok(c) => c,
        Err(e) => return oauth_error_page(&state, None, e),
    };
    let sealed = sealed.to_owned();
    let written = state
        .users
        .change_security(
            &actor(&user.sub),
            &user.sub,
            SecurityChange::TotpEnrolled,
            |u| {
                let mut u = u.clone();
                u.totp = Some(TotpFactor {
                    sealed,
                    enrolled_at: now,
                });
                u.recovery_codes = digests;
                Ok(u)
            },
            PATIENCE,
        )
        .await;
    if let Err(e) = written {
        return write_failed(&state, e);
    }
    let shown = Shown {
        recovery_codes: Some(codes),
        message: Some("Your authenticator is set up. From now on, signing in asks for a code."),
        error: None,
    };
    page(&state, &headers, &session, shown).await
}

/// `POST /account/security/totp/remove` (form: `code`, a current TOTP or recovery code, or
/// `password`).
pub async fn totp_remove(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (params, session) = match posted_form(&state, &headers, &body).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let user = match current_user(&state, &session.sub).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if user.totp.is_none() {
        return page(&state, &headers, &session, Shown::default()).await;
    }
    let code = params.get("code").unwrap_or_default().trim().to_owned();
    let password = params.get("password").unwrap_or_default().to_owned();
    let proven = if !code.is_empty() {
        match check_code(&state, &user, &code, false, now()).await {
            Ok(v) => Ok(v),
            Err(e) => return oauth_error_page(&state, None, e),
        }
    } else if !password.is_empty() {
        let hash = user.password_hash.clone();
        let ok = crate::users::password_work(move || {
            signet_core::user::verify_password(&hash, &password)
        })
        .await
        .unwrap_or(false);
        if ok {
            Ok(Verdict::Totp)
        } else {
            Err("The password is wrong.")
        }
    } else {
        Err("Type a code from your authenticator, a recovery code, or your password.")
    };
    let refused = match proven {
        Ok(v) if v.ok() => None,
        Ok(v) => Some(v.message()),
        Err(m) => Some(m),
    };
    if let Some(m) = refused {
        let shown = Shown {
            error: Some(m.to_owned()),
            ..Shown::default()
        };
        return page(&state, &headers, &session, shown).await;
    }
    let written = state
        .users
        .change_security(
            &actor(&user.sub),
            &user.sub,
            SecurityChange::TotpRemoved,
            |u| {
                let mut u = u.clone();
                u.totp = None;
                u.recovery_codes.clear();
                Ok(u)
            },
            PATIENCE,
        )
        .await;
    if let Err(e) = written {
        return write_failed(&state, e);
    }
    let shown = Shown {
        message: Some("Your authenticator and recovery codes are removed."),
        ..Shown::default()
    };
    page(&state, &headers, &session, shown).await
}

/// `POST /account/security/recovery-codes` (form: `code`, a current TOTP code).
pub async fn recovery_regenerate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (params, session) = match posted_form(&state, &headers, &body).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let user = match current_user(&state, &session.sub).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if user.totp.is_none() {
        return page(&state, &headers, &session, Shown::default()).await;
    }
    let code = params.get("code").unwrap_or_default();
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let verdict = if digits.len() == totp::DIGITS as usize {
        match check_code(&state, &user, &digits, false, now()).await {
            Ok(v) => v,
            Err(e) => return oauth_error_page(&state, None, e),
        }
    } else {
        Verdict::Wrong
    };
    if verdict != Verdict::Totp {
        let shown = Shown {
            error: Some(verdict.message().to_owned()),
            ..Shown::default()
        };
        return page(&state, &headers, &session, shown).await;
    }
    let (codes, digests) = match new_recovery_codes(&user.sub) {
        Ok(c) => c,
        Err(e) => return oauth_error_page(&state, None, e),
    };
    let written = state
        .users
        .change_security(
            &actor(&user.sub),
            &user.sub,
            SecurityChange::RecoveryCodesRegenerated,
            |u| {
                let mut u = u.clone();
                u.recovery_codes = digests;
                Ok(u)
            },
            PATIENCE,
        )
        .await;
    if let Err(e) = written {
        return write_failed(&state, e);
    }
    let shown = Shown {
        recovery_codes: Some(codes),
        message: Some("New recovery codes replace the old ones."),
        error: None,
    };
    page(&state, &headers, &session, shown).await
}

/// `POST /account/security/password` (form: `current`, `new`, `confirm`).
pub async fn password_change(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (params, session) = match posted_form(&state, &headers, &body).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let user = match current_user(&state, &session.sub).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let refuse = |m: String| Shown {
        error: Some(m),
        ..Shown::default()
    };
    let current = params.get("current").unwrap_or_default().to_owned();
    let new = params.get("new").unwrap_or_default().to_owned();
    if let Err(why) = super::password_step::check_new_password(&state, &new, params.get("confirm"))
    {
        return page(&state, &headers, &session, refuse(why)).await;
    }
    let hash = user.password_hash.clone();
    let ok =
        crate::users::password_work(move || signet_core::user::verify_password(&hash, &current))
            .await
            .unwrap_or(false);
    if !ok {
        return page(
            &state,
            &headers,
            &session,
            refuse("The current password is wrong.".into()),
        )
        .await;
    }
    let new_hash = match crate::users::hash(&new).await {
        Ok(h) => h,
        Err(e) => return write_failed(&state, e),
    };
    let written = state
        .users
        .change_security(
            &actor(&user.sub),
            &user.sub,
            SecurityChange::PasswordChanged,
            |u| {
                let mut u = u.clone();
                u.password_hash = new_hash;
                u.must_change_password = false;
                Ok(u)
            },
            PATIENCE,
        )
        .await;
    if let Err(e) = written {
        return write_failed(&state, e);
    }
    let shown = Shown {
        message: Some("Your password is changed."),
        ..Shown::default()
    };
    page(&state, &headers, &session, shown).await
}
