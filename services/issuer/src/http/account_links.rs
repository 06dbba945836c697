//! `/account/links`: a signed-in user links the identities it has at upstream providers to
//! its account (and unlinks them), so it can sign in through them (issue 16: "linking to an
//! existing account only after that account's owner signs in"). The same rules as the
//! other account pages: the session cookie authenticates, every write carries the session's
//! CSRF token.
//!
//! | route | what |
//! |---|---|
//! | `GET /account/links` | the page: each enabled OpenID Connect or OAuth 2.0 provider, linked or not |
//! | `POST /account/links/{scheme}` | form: to the provider; its callback links the identity signed in there |
//! | `POST /account/links/{scheme}/remove` | form: unlink (refused when it is the account's only way to sign in) |
//!
//! Linking claims the upstream identity as a username is claimed
//! ([`crate::users::Users::link_external`]): an identity that already signs in as another
//! user (including its own just-in-time user) is refused, never moved.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;
use signet_core::identity_provider::ProviderType;
use signet_core::user::{UserRecord, NO_PASSWORD};

use super::account::{csrf_of, posted_form, sign_in_first, signed_in, to_page};
use super::browser::{cookie, digest_key, oauth_error_page, render, AccountPage, SESSION_COOKIE};
use super::sessions::Session;
use crate::state::AppState;

async fn user_of(state: &AppState, sub: &str) -> Result<UserRecord, Response> {
    match state.users.by_sub(sub).await {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(to_page(state, AccountPage::Links)),
        Err(e) => Err(oauth_error_page(
            state,
            None,
            super::user_tokens::users_unavailable(e),
        )),
    }
}

/// A posted form of the links page (CSRF checked) and the signed-in user who sent it.
async fn posted_user(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Session, UserRecord), Response> {
    let (_, session) = posted_form(state, headers, body).await?;
    let user = user_of(state, &session.sub).await?;
    Ok((session, user))
}

/// The providers a user may link: enabled, and signing in by redirect (not a directory).
fn linkable(
    p: &signet_core::projection::Projection,
) -> Vec<std::sync::Arc<signet_core::identity_provider::IdentityProvider>> {
    super::federation::offered(p, None)
        .into_iter()
        .filter(|i| i.provider_type != ProviderType::Ldap)
        .cloned()
        .collect()
}

fn page(state: &AppState, headers: &HeaderMap, user: &UserRecord, error: Option<&str>) -> Response {
    let p = state.projection.load();
    let providers: Vec<_> = linkable(&p)
        .iter()
        .map(|i| {
            json!({
                "scheme": i.scheme,
                "name": i.display_name,
                "linked": user.external_logins.iter().any(|l| l.scheme == i.scheme),
            })
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut r = render(
        "links.html",
        status,
        json!({
            "action": state.config.issuer.endpoint(AccountPage::Links.path()),
            "security": state.config.issuer.endpoint(AccountPage::Security.path()),
            "sessions": state.config.issuer.endpoint(AccountPage::Sessions.path()),
            "csrf": csrf_of(headers),
            "username": user.username,
            "providers": providers,
            "error": error,
        }),
    );
    // A Link button's answer is a redirect to the provider: the CSP must let the form go there.
    super::federation::allow_form_targets(
        r.headers_mut(),
        &super::federation::form_origins(state, &p, None),
    );
    r
}

/// `GET /account/links`.
pub async fn links_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Err(r) => r,
        Ok(Some(session)) => match user_of(&state, &session.sub).await {
            Ok(user) => page(&state, &headers, &user, None),
            Err(r) => r,
        },
        Ok(None) => sign_in_first(&state, AccountPage::Links).await,
    }
}

/// `POST /account/links/{scheme}`: to the provider, to link the identity signed in there.
pub async fn link_post(
    State(state): State<AppState>,
    Path(scheme): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, user) = match posted_user(&state, &headers, &body).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let p = state.projection.load();
    let Some(idp) = linkable(&p).into_iter().find(|i| i.scheme == scheme) else {
        return page(
            &state,
            &headers,
            &user,
            Some("That sign-in service is not available."),
        );
    };
    if user.external_logins.iter().any(|l| l.scheme == scheme) {
        return page(
            &state,
            &headers,
            &user,
            Some("That sign-in service is linked already."),
        );
    }
    let Some(browser) = cookie(&headers, SESSION_COOKIE).map(digest_key) else {
        return to_page(&state, AccountPage::Links);
    };
    super::federation::begin_link(&state, &idp, &session.sub, browser).await
}

/// `POST /account/links/{scheme}/remove`: unlinks the provider's identity, unless it is the
/// only way to sign in to the account (no password and no other link).
pub async fn unlink_post(
    State(state): State<AppState>,
    Path(scheme): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, user) = match posted_user(&state, &headers, &body).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    if !user.external_logins.iter().any(|l| l.scheme == scheme) {
        return page(
            &state,
            &headers,
            &user,
            Some("That sign-in service is not linked."),
        );
    }
    let others = user
        .external_logins
        .iter()
        .filter(|l| l.scheme != scheme)
        .count();
    if user.password_hash == NO_PASSWORD && others == 0 {
        return page(
            &state,
            &headers,
            &user,
            Some("This is the only way to sign in to your account: it cannot be unlinked."),
        );
    }
    match state
        .users
        .remove_external_login(
            &format!("user:{}", session.sub),
            &session.sub,
            &scheme,
            super::admin::common::APPLY_PATIENCE,
        )
        .await
    {
        Ok(_) => super::device::see_other(&state.config.issuer.endpoint(AccountPage::Links.path())),
        Err(e) => {
            tracing::warn!(error = %e, "unlinking failed");
            page(
                &state,
                &headers,
                &user,
                Some("The change could not be recorded. Try again."),
            )
        }
    }
}
