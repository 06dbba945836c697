//! `/oauth2/logout`: OpenID Connect RP-Initiated Logout 1.0 (GET and POST).
//!
//! 1. Section 2: the request carries `id_token_hint`, `client_id`,
//!    `post_logout_redirect_uri`, `state`, `logout_hint` and `ui_locales`, all optional.
//!    An `id_token_hint` must be an ID token this issuer signed (an expired one is
//!    accepted, section 4); its `aud` names the client, and `client_id`, if given too, must
//!    be that client.
//! 2. Section 3: `post_logout_redirect_uri` is followed only when it is byte-equal to one of
//!    the `postLogoutRedirectUris` of the client the hint or `client_id` names; otherwise
//!    the request is refused on an error page, never redirected (no open redirect).
//! 3. Section 6: a logout the request cannot prove comes from the session's relying party
//!    (no hint, or a hint of another session) is confirmed by the user on a page whose form
//!    carries a CSRF token bound to the session cookie and must come from our own origin.
//! 4. Logging out ends the SSO session ([`super::sessions::end`]: a session revocation,
//!    then everything tied to it deleted from the shared store, so it is gone at every
//!    node), clears its cookie, and answers with a redirect to the validated
//!    `post_logout_redirect_uri` (with `state`) or the signed-out page.
//!
//! 5. Ending the session enqueues the back-channel logout deliveries
//!    ([`super::backchannel`]) and names the participating clients' front-channel logout
//!    URIs (OIDC Front-Channel Logout 1.0): the signed-out page loads them in hidden
//!    iframes (its CSP `frame-src` allows exactly their origins), and with a
//!    `post_logout_redirect_uri` continues there once they have loaded, instead of
//!    redirecting at once.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use signet_core::authorize::Params;
use signet_core::oauth::OAuthError;
use signet_core::projection::{ClientEntry, Projection};
use signet_store::Namespace;
use std::sync::Arc;

use super::browser::{
    cookie, ct_eq, digest_key, load_session, oauth_error_page, render_for, set_cookie, PageParams,
    Session, StoreResult, SESSION_COOKIE,
};
use crate::state::AppState;

/// What an `id_token_hint` tells.
#[derive(Deserialize)]
struct Hint {
    iss: String,
    aud: Audience,
    #[serde(default)]
    sid: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    /// The client an ID token was issued to (OIDC Core: `aud` holds its `client_id`).
    fn client_id(&self) -> Option<&str> {
        match self {
            Audience::One(a) => Some(a),
            Audience::Many(v) if v.len() == 1 => Some(&v[0]),
            Audience::Many(_) => None,
        }
    }
}

/// A checked logout request.
struct Request {
    client: Option<Arc<ClientEntry>>,
    /// The session id of a valid `id_token_hint`.
    hint_sid: Option<String>,
    /// Validated against the client's `postLogoutRedirectUris`.
    redirect: Option<String>,
    state: Option<String>,
}

fn refused(description: &str) -> OAuthError {
    OAuthError::invalid_request(description.to_owned())
}

/// Section 2: the parameters, the hint and the redirect URI.
fn check(state: &AppState, p: &Projection, params: &PageParams) -> Result<Request, OAuthError> {
    let mut hint_sid = None;
    let mut hinted_client = None;
    if let Some(token) = params.get("id_token_hint") {
        let not_ours = || refused("the id_token_hint is not an ID token of this issuer");
        let verified = signet_jose::verify_compact(token, |kid| p.key(kid).map(|k| &k.jwk))
            .map_err(|_| not_ours())?;
        if matches!(verified.typ.as_deref(), Some("at+jwt" | "logout+jwt")) {
            return Err(not_ours());
        }
        let hint: Hint = serde_json::from_slice(&verified.payload).map_err(|_| not_ours())?;
        if hint.iss != state.config.issuer.as_str() {
            return Err(not_ours());
        }
        hinted_client = Some(hint.aud.client_id().ok_or_else(not_ours)?.to_owned());
        hint_sid = hint.sid;
    }
    let client_id = match (hinted_client, params.get("client_id")) {
        (Some(h), Some(c)) if h != c => {
            return Err(refused(
                "client_id is not the client the id_token_hint was issued to",
            ))
        }
        (Some(h), _) => Some(h),
        (None, c) => c.map(str::to_owned),
    };
    let client = match client_id {
        Some(id) => Some(
            p.client(&id)
                .filter(|c| c.client.enabled)
                .cloned()
                .ok_or_else(|| refused("the client of this logout request is unknown"))?,
        ),
        None => None,
    };
    let redirect = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let registered = client.as_ref().is_some_and(|c| {
                c.client
                    .post_logout_redirect_uris
                    .iter()
                    .any(|r| r.as_str() == uri)
            });
            if !registered {
                return Err(refused(
                    "post_logout_redirect_uri is not registered for this client (send id_token_hint or client_id, and register the URI in postLogoutRedirectUris)",
                ));
            }
            Some(uri.to_owned())
        }
    };
    Ok(Request {
        client,
        hint_sid,
        redirect,
        state: params.get("state").map(str::to_owned),
    })
}

/// The CSRF token of the confirmation form: bound to the session cookie, so only the page
/// this server showed that browser knows it.
fn csrf_of(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE).map(|c| digest_key(&format!("logout\u{0}{c}")))
}

/// Section 3 and 4: ends the browser's session (if any) and answers.
async fn log_out(
    state: &AppState,
    headers: &HeaderMap,
    req: &Request,
    session: Option<Session>,
) -> Response {
    let mut front_channel = Vec::new();
    // A session from an upstream provider: signing out continues there (issue 16).
    let upstream = session.as_ref().and_then(|s| s.upstream_logout.clone());
    if let Some(session) = session {
        match super::sessions::end(state, session, super::token::now()).await {
            Ok(ended) => front_channel = ended.front_channel,
            Err(e) => return oauth_error_page(state, req.client.as_deref(), e),
        }
    } else if let Some(value) = cookie(headers, SESSION_COOKIE) {
        // A cookie of a session that is gone (or of a disabled user): forget it too.
        if let Err(e) = state
            .store
            .delete(Namespace::Session, &digest_key(value))
            .await
            .or_unavailable()
        {
            return oauth_error_page(state, req.client.as_deref(), e);
        }
    }
    let target = match &req.redirect {
        Some(uri) => match url::Url::parse(uri) {
            Ok(mut u) => {
                if let Some(s) = &req.state {
                    u.query_pairs_mut().append_pair("state", s);
                }
                Some(u)
            }
            Err(_) => return oauth_error_page(state, None, refused("bad redirect URI")),
        },
        None => None,
    };
    let target = match &upstream {
        Some(u) => {
            match super::federation::upstream_logout_url(
                state,
                u,
                target.as_ref().map(url::Url::as_str),
            )
            .await
            .and_then(|s| url::Url::parse(&s).ok())
            {
                Some(at_provider) => Some(at_provider),
                // The store failed: this sign-out still ends here.
                None => target,
            }
        }
        None => target,
    };
    let mut resp = match target {
        // Straight back to the client: nobody to tell through the browser.
        Some(target) if front_channel.is_empty() => {
            let mut r = StatusCode::FOUND.into_response();
            if let Ok(v) = HeaderValue::from_str(target.as_str()) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            super::error::no_store(r.headers_mut());
            r
        }
        target => {
            let ctx = super::browser::branding(req.client.as_deref());
            let to = target.as_ref().map(url::Url::as_str);
            super::browser::render_logged_out(ctx, &front_channel, to)
        }
    };
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(state, SESSION_COOKIE, "", 0));
    tracing::info!(
        client_id = req.client.as_ref().map(|c| c.client.client_id.as_str()),
        "signed out"
    );
    resp
}

async fn handle(state: &AppState, headers: &HeaderMap, params: PageParams) -> Response {
    let p = state.projection.load();
    let req = match check(state, &p, &params) {
        Ok(r) => r,
        Err(e) => return oauth_error_page(state, None, e),
    };
    let session = match load_session(state, headers).await {
        Ok(s) => s,
        Err(e) => return oauth_error_page(state, req.client.as_deref(), e),
    };
    let Some(session) = session else {
        // Nobody to sign out: the relying party still gets its answer.
        return log_out(state, headers, &req, None).await;
    };
    let proven = req
        .hint_sid
        .as_deref()
        .is_some_and(|sid| ct_eq(sid, &session.sid));
    if proven {
        return log_out(state, headers, &req, Some(session)).await;
    }
    // Section 6: ask the user.
    let mut ctx = super::browser::branding(req.client.as_deref());
    ctx["action"] = state.config.issuer.endpoint("/oauth2/logout").into();
    ctx["csrf"] = csrf_of(headers).into();
    ctx["client_id"] = req
        .client
        .as_ref()
        .map(|c| c.client.client_id.clone())
        .into();
    ctx["post_logout_redirect_uri"] = req.redirect.clone().into();
    ctx["state"] = req.state.clone().into();
    ctx["username"] = match state.users.by_sub(&session.sub).await {
        Ok(Some(u)) => u.username.into(),
        _ => serde_json::Value::Null,
    };
    let mut resp = render_for("logout.html", StatusCode::OK, ctx, req.redirect.as_deref());
    // Confirming continues at the upstream provider the session came from: CSP form-action
    // covers the redirects that follow the form.
    if let Some(origin) = session
        .upstream_logout
        .as_ref()
        .and_then(|u| url::Url::parse(&u.end_session_endpoint).ok())
        .map(|u| u.origin().ascii_serialization())
    {
        super::federation::allow_form_targets(resp.headers_mut(), &[origin]);
    }
    resp
}

/// `GET /oauth2/logout`.
pub async fn logout_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match PageParams::parse(query.unwrap_or_default().as_bytes()) {
        Ok(params) => handle(&state, &headers, params).await,
        Err(e) => oauth_error_page(&state, None, e),
    }
}

/// `POST /oauth2/logout`: a relying party's logout request (a form), or the user's
/// confirmation (`logout_confirm`, from our own page, with the session's CSRF token).
pub async fn logout_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !super::form::is_form(&headers) {
        return oauth_error_page(
            &state,
            None,
            refused("the body must be application/x-www-form-urlencoded"),
        );
    }
    let params = match PageParams::parse(&body) {
        Ok(p) => p,
        Err(e) => return oauth_error_page(&state, None, e),
    };
    if params.get("logout_confirm").is_none() {
        return handle(&state, &headers, params).await;
    }
    if let Some(page) = super::browser::cross_site(&state, &headers) {
        return page;
    }
    let csrf_ok = match (csrf_of(&headers), params.get("csrf")) {
        (Some(expected), Some(presented)) => ct_eq(&expected, presented),
        // No session any more (signed out in another tab): nothing to protect.
        (None, _) => true,
        _ => false,
    };
    if !csrf_ok {
        return super::browser::error_page(
            &state,
            None,
            StatusCode::FORBIDDEN,
            "invalid_request",
            "This form was not sent by the page this server showed you (CSRF check failed).",
        );
    }
    let p = state.projection.load();
    let req = match check(&state, &p, &params) {
        Ok(req) => req,
        Err(e) => return oauth_error_page(&state, None, e),
    };
    match load_session(&state, &headers).await {
        Ok(session) => log_out(&state, &headers, &req, session).await,
        Err(e) => oauth_error_page(&state, req.client.as_deref(), e),
    }
}
