//! `/login/password`: the last step of a sign-in for a user an administrator marked
//! `mustChangePassword`. Every factor is done (the interaction holds only who signed in and
//! how, [`PasswordChange`]); the user chooses a new password under the server's policy
//! (CSRF-protected form bound to the browser), which is recorded as
//! `user.security_changed` (`password_changed`, clearing the mark), and only then does the
//! session open.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use signet_core::authorize::Params;
use signet_core::events::SecurityChange;

use super::browser::{
    branding, oauth_error_page, render_for, Interaction, InteractionError, PasswordChange,
};
use super::client_addr::ClientAddr;
use crate::state::AppState;

const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

fn change_page(
    state: &AppState,
    id: &str,
    interaction: &Interaction,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let p = state.projection.load();
    let request = interaction.request.as_ref();
    let mut ctx = branding(request.and_then(|r| p.client(&r.client_id)).map(|c| &**c));
    ctx["action"] = state.config.issuer.endpoint("/login/password").into();
    ctx["interaction"] = id.into();
    ctx["csrf"] = interaction.csrf.clone().into();
    ctx["error"] = error.into();
    ctx["min_length"] = state.config.password_policy.min_length.into();
    render_for(
        "change_password.html",
        status,
        ctx,
        request.map(|r| r.redirect_uri.as_str()),
    )
}

pub async fn password_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    super::browser::interaction_page(
        &state,
        &headers,
        query,
        |i| i.password_change.is_some(),
        |id, i| change_page(&state, id, i, None, StatusCode::OK),
    )
    .await
}

pub async fn password_post(
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
    let Some(PasswordChange { sub, amr }) = interaction.password_change.clone() else {
        return InteractionError::Gone.into_page(&state);
    };
    let new = params.get("new").unwrap_or_default().to_owned();
    let again = |m: &str| change_page(&state, &id, &interaction, Some(m), StatusCode::BAD_REQUEST);
    if let Err(why) = check_new_password(&state, &new, params.get("confirm")) {
        return again(&why);
    }
    let user = match state.users.by_sub(&sub).await {
        Ok(Some(u)) if u.enabled => u,
        Ok(_) => return InteractionError::Gone.into_page(&state),
        Err(e) => return oauth_error_page(&state, None, super::user_tokens::users_unavailable(e)),
    };
    // The same password again is no change.
    let (old_hash, candidate) = (user.password_hash.clone(), new.clone());
    let same = crate::users::password_work(move || {
        signet_core::user::verify_password(&old_hash, &candidate)
    })
    .await
    .unwrap_or(false);
    if same {
        return again("Choose a password you have not used here.");
    }
    let new_hash = match crate::users::hash(&new).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "could not hash a new password");
            return oauth_error_page(
                &state,
                None,
                signet_core::oauth::OAuthError::server_error("the password could not be changed"),
            );
        }
    };
    let written = state
        .users
        .change_security(
            &format!("user:{sub}"),
            &sub,
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
        tracing::warn!(error = %e, "could not record a new password");
        return oauth_error_page(
            &state,
            None,
            signet_core::oauth::OAuthError::new(
                signet_core::oauth::ErrorCode::TemporarilyUnavailable,
                "the password could not be changed; retry shortly",
            ),
        );
    }
    let mut interaction = interaction;
    interaction.password_change = None;
    super::login::open_session(&state, &headers, addr, &id, interaction, &sub, amr).await
}

/// Whether `new` (typed again as `confirm`) may be a new password under the server's
/// policy; else what to tell the user.
pub(super) fn check_new_password(
    state: &AppState,
    new: &str,
    confirm: Option<&str>,
) -> Result<(), String> {
    if confirm != Some(new) {
        return Err("The new passwords do not match.".into());
    }
    let mut c = signet_core::validation::Collector::default();
    signet_core::user::check_password(
        &mut c,
        "password",
        &signet_core::user::Password::new(new.to_owned()),
        &state.config.password_policy,
    );
    c.finish().map_err(|v| {
        let why = v.errors.first().map(|e| e.rule.clone()).unwrap_or_default();
        format!("The new password {why}.")
    })
}
