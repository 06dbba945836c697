//! The second step of a sign-in (`/login/otp`): a user with a TOTP authenticator types a
//! code from it, or one of their recovery codes, after the password step or to step up a
//! session that lacks the level a request needs ([`signet_core::mfa::Level`]).
//!
//! - The pending step is the interaction's [`SecondFactor`] (in the store, bound to the
//!   browser, CSRF on the form), so the step may land on any node.
//! - A TOTP code is accepted once: its step is written with [`signet_store::Store::insert`]
//!   under the user (namespace `ReplayGuard`, for the drift window), so of two nodes
//!   receiving one code, one accepts it (RFC 6238 section 5.2).
//! - Wrong codes are throttled per user: [`MAX_FAILURES`] in a fixed [`LOCKOUT`] window
//!   (a store counter, shared by every node and by the account page's checks); past it
//!   every code is refused until the window ends.
//! - A recovery code is consumed by a `user.security_changed` event demanding the user's
//!   version: two nodes taking one code at once cannot both succeed.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use signet_core::authorize::Params;
use signet_core::events::SecurityChange;
use signet_core::mfa::{self, totp};
use signet_core::oauth::OAuthError;
use signet_core::user::UserRecord;
use signet_store::Namespace;

use super::browser::{
    branding, digest_key, end_interaction, oauth_error_page, render_for, Interaction,
    InteractionError, SecondFactor, StoreResult,
};
use super::client_addr::ClientAddr;
use super::token::now;
use crate::state::AppState;
use crate::users::UserWriteError;

/// Wrong codes allowed per user in [`LOCKOUT`].
pub const MAX_FAILURES: u64 = 5;
/// The throttle's window.
pub const LOCKOUT: Duration = Duration::from_secs(5 * 60);
/// How long a used TOTP step is remembered: longer than the drift window.
const REPLAY_TTL: Duration = Duration::from_secs((2 * totp::DRIFT + 2) * totp::STEP);
const PATIENCE: Duration = Duration::from_secs(10);

const WRONG: &str = "The code is wrong.";
const REUSED: &str = "This code was used already. Wait for the next one.";
const PASSKEY_NEEDED: &str = "This sign-in needs your passkey: a code is not enough.";
const THROTTLED: &str = "Too many wrong codes. Wait a few minutes and try again.";

/// The outcome of checking a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A TOTP code, now used.
    Totp,
    /// A recovery code, now gone.
    Recovery,
    Wrong,
    Reused,
    Throttled,
}

impl Verdict {
    pub fn ok(self) -> bool {
        matches!(self, Verdict::Totp | Verdict::Recovery)
    }

    /// What the page says about a refused code.
    pub fn message(self) -> &'static str {
        match self {
            Verdict::Reused => REUSED,
            Verdict::Throttled => THROTTLED,
            _ => WRONG,
        }
    }
}

fn throttle_key(sub: &str) -> String {
    format!("otp:{}", digest_key(sub))
}

/// The TOTP secret of a user, opened.
pub fn totp_secret(state: &AppState, user: &UserRecord) -> Result<Option<Vec<u8>>, OAuthError> {
    let Some(t) = &user.totp else {
        return Ok(None);
    };
    let key = state
        .config_sealer()
        .ok_or_else(|| OAuthError::server_error("second factors are not available"))?;
    match key.open_totp(&user.sub, &t.sealed) {
        Some(s) => Ok(Some(s)),
        None => {
            tracing::error!(sub = %user.sub, "a TOTP secret does not open with this node's factor key");
            Err(OAuthError::server_error(
                "the authenticator of this account cannot be read; use a recovery code",
            ))
        }
    }
}

/// Marks TOTP step `step` of `sub` used; false if it was already.
pub async fn use_step(state: &AppState, sub: &str, step: u64) -> Result<bool, OAuthError> {
    state
        .store
        .insert(
            Namespace::ReplayGuard,
            &format!("totp:{}:{step}", digest_key(sub)),
            b"1",
            REPLAY_TTL,
        )
        .await
        .or_unavailable()
}

/// Checks a code of `user` (a TOTP code, or with `recovery` a recovery code), counting
/// failures against the user's throttle.
pub async fn check_code(
    state: &AppState,
    user: &UserRecord,
    code: &str,
    recovery: bool,
    now: i64,
) -> Result<Verdict, OAuthError> {
    let key = throttle_key(&user.sub);
    let failures = state
        .store
        .get(Namespace::RateLimit, &key)
        .await
        .or_unavailable()?
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    if failures >= MAX_FAILURES {
        return Ok(Verdict::Throttled);
    }
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let verdict = if recovery || code.len() > totp::DIGITS as usize {
        let digest = mfa::recovery_digest(&user.sub, &code);
        if code.len() > 64 || !user.recovery_codes.contains(&digest) {
            Verdict::Wrong
        } else {
            let taken = state
                .users
                .change_security(
                    &format!("user:{}", user.sub),
                    &user.sub,
                    SecurityChange::RecoveryCodeUsed,
                    |u| {
                        if !u.recovery_codes.contains(&digest) {
                            return Err(UserWriteError::NotFound("recovery code".into()));
                        }
                        let mut u = u.clone();
                        u.recovery_codes.retain(|d| *d != digest);
                        Ok(u)
                    },
                    PATIENCE,
                )
                .await;
            match taken {
                Ok(_) => Verdict::Recovery,
                Err(UserWriteError::NotFound(_) | UserWriteError::Conflict) => Verdict::Wrong,
                Err(e) => {
                    tracing::warn!(error = %e, "could not record a used recovery code");
                    return Err(OAuthError::new(
                        signet_core::oauth::ErrorCode::TemporarilyUnavailable,
                        "the code could not be checked; retry shortly",
                    ));
                }
            }
        }
    } else {
        match totp_secret(state, user)? {
            None => Verdict::Wrong,
            Some(secret) => match totp::verify(&secret, &code, now) {
                None => Verdict::Wrong,
                Some(step) if use_step(state, &user.sub, step).await? => Verdict::Totp,
                Some(_) => Verdict::Reused,
            },
        }
    };
    if !verdict.ok() {
        metrics::counter!(crate::telemetry::OTP_FAILURES).increment(1);
        state
            .store
            .incr(Namespace::RateLimit, &key, LOCKOUT)
            .await
            .or_unavailable()?;
    }
    Ok(verdict)
}

/// 303 to the code page of interaction `id`.
pub fn to_code_page(state: &AppState, id: &str) -> Response {
    super::device::see_other(
        &state
            .config
            .issuer
            .endpoint(&format!("/login/otp?interaction={id}")),
    )
}

pub(super) fn code_page(
    state: &AppState,
    id: &str,
    interaction: &Interaction,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let p = state.projection.load();
    let request = interaction.request.as_ref();
    let mut ctx = branding(request.and_then(|r| p.client(&r.client_id)).map(|c| &**c));
    ctx["action"] = state.config.issuer.endpoint("/login/otp").into();
    ctx["interaction"] = id.into();
    ctx["csrf"] = interaction.csrf.clone().into();
    ctx["error"] = error.into();
    let factor = interaction.second_factor.as_ref();
    ctx["step_up"] = factor.is_some_and(|f| f.step_up.is_some()).into();
    ctx["codes"] = factor.is_none_or(|f| !f.passkey_only).into();
    let offers_passkey = factor.is_some_and(|f| f.passkey);
    let nonce = offers_passkey.then(super::passkeys::script_nonce).flatten();
    if let Some(n) = &nonce {
        ctx["passkey"] = super::passkeys::login_form(state, n);
    }
    let mut resp = render_for(
        "otp.html",
        status,
        ctx,
        request.map(|r| r.redirect_uri.as_str()),
    );
    if let Some(n) = &nonce {
        super::passkeys::allow_script(resp.headers_mut(), n);
    }
    resp
}

pub async fn otp_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    super::browser::interaction_page(
        &state,
        &headers,
        query,
        |i| i.second_factor.is_some(),
        |id, i| code_page(&state, id, i, None, StatusCode::OK),
    )
    .await
}

pub async fn otp_post(
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
    let Some(SecondFactor {
        sub,
        step_up,
        passkey_only,
        ..
    }) = interaction.second_factor.clone()
    else {
        return InteractionError::Gone.into_page(&state);
    };
    if passkey_only {
        return code_page(
            &state,
            &id,
            &interaction,
            Some(PASSKEY_NEEDED),
            StatusCode::BAD_REQUEST,
        );
    }
    let user = match state.users.by_sub(&sub).await {
        Ok(Some(u)) if u.enabled => u,
        Ok(_) => return InteractionError::Gone.into_page(&state),
        Err(e) => return oauth_error_page(&state, None, super::user_tokens::users_unavailable(e)),
    };
    let code = params.get("code").unwrap_or_default();
    if code.trim().is_empty() {
        return code_page(
            &state,
            &id,
            &interaction,
            Some(WRONG),
            StatusCode::BAD_REQUEST,
        );
    }
    let now = now();
    let verdict = match check_code(&state, &user, code, false, now).await {
        Ok(v) => v,
        Err(e) => return oauth_error_page(&state, None, e),
    };
    if !verdict.ok() {
        let status = match verdict {
            Verdict::Throttled => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::OK,
        };
        return code_page(&state, &id, &interaction, Some(verdict.message()), status);
    }
    let amr = mfa::with_second_factor(&[mfa::AMR_PWD.to_owned()]);
    match step_up {
        None => {
            super::login::finish_sign_in(&state, &headers, addr, &id, interaction, &user, amr).await
        }
        Some(sid) => {
            let session = match super::sessions::step_up(
                &state,
                &headers,
                &sid,
                now,
                mfa::with_second_factor,
            )
            .await
            {
                Ok(Some(s)) if s.sub == sub => s,
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
