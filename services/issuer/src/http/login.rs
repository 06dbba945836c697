//! The login and consent pages: server-rendered forms that continue a sign-in interaction
//! (see [`super::browser`]). Every POST carries the interaction's CSRF token and comes from
//! the browser the interaction is bound to.
//!
//! Login attempts are throttled (fixed windows in the store) so that guessing is slow and
//! nobody can lock a user out: a browser the user signed in with before (device cookie)
//! answers only for its own failures; any other browser is held per client address and
//! username, per address, and, summed over every address, per account, past which only the
//! user's known browsers may try. The client address is the resolved one ([`ClientAddr`]:
//! behind a trusted load balancer, the address it forwarded), so one attacker cannot lock
//! out a user and many addresses cannot brute-force one. An unknown username costs the same password hash as a
//! known one, and every failure shows the same message.

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use signet_core::authorize::Params;
use signet_core::oauth::{ErrorCode, OAuthError};
use signet_store::Namespace;

use super::authorize::{complete, continue_flow, redirect_error, remember_consent, to_redirect};
use super::browser::{
    branding, create_session, digest_key, end_interaction, load_interaction, oauth_error_page,
    render_for, Interaction, InteractionError, PageParams, StoreResult,
};
use super::client_addr::ClientAddr;
use super::token::now;
use crate::state::AppState;

/// Failed sign-ins allowed per client address and username in [`THROTTLE_WINDOW`] from a
/// browser the user has not signed in with before; then that address waits for that name.
pub const MAX_FAILURES_PER_PAIR: u64 = 5;
/// Failed sign-ins allowed per client address in [`THROTTLE_WINDOW`], whatever the names.
pub const MAX_FAILURES_PER_ADDRESS: u64 = 100;
/// Failed sign-ins allowed per account in [`THROTTLE_WINDOW`] from browsers the user has not
/// signed in with before, summed over every address: past it, only the user's known
/// browsers (device cookie) may try.
pub const MAX_FAILURES_PER_ACCOUNT: u64 = 50;
/// Failed sign-ins allowed per known browser (device cookie) in [`THROTTLE_WINDOW`].
pub const MAX_FAILURES_PER_DEVICE: u64 = 5;
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The cookie that marks a browser a user signed in with (OWASP's device cookies): an
/// attack on the account from elsewhere does not lock that browser out.
pub const DEVICE_COOKIE: &str = "signet_device";
/// How long a browser stays known after a sign-in.
const DEVICE_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

const FAILED: &str = "The username or password is wrong.";
const NO_LOCAL: &str =
    "This application does not accept passwords: sign in with one of the services below.";
const THROTTLED: &str = "Too many sign-in attempts. Wait a few minutes and try again.";

fn query_params(query: Option<String>) -> Option<PageParams> {
    PageParams::parse(query.unwrap_or_default().as_bytes()).ok()
}

pub(super) fn login_page(
    state: &AppState,
    interaction_id: &str,
    interaction: &Interaction,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let p = state.projection.load();
    let request = interaction.request.as_ref();
    let mut ctx = branding(request.and_then(|r| p.client(&r.client_id)).map(|c| &**c));
    ctx["action"] = state.config.issuer.endpoint("/login").into();
    ctx["interaction"] = interaction_id.into();
    ctx["csrf"] = interaction.csrf.clone().into();
    ctx["username"] = username.into();
    ctx["error"] = error.into();
    ctx["lang"] = lang(interaction).into();
    // Upstream identity providers this client may use, and whether it allows passwords.
    ctx["providers"] = super::federation::offered(&p, request)
        .into_iter()
        .map(|i| {
            serde_json::json!({
                "action": state.config.issuer.endpoint(&format!("/federation/{}/start", i.scheme)),
                "name": i.display_name,
            })
        })
        .collect::<Vec<_>>()
        .into();
    let local = local_login_allowed(state, interaction);
    ctx["local"] = local.into();
    if super::email::forgot_offered(state, local) {
        ctx["forgot"] = super::email::forgot_link(state, interaction_id).into();
    }
    // Passkeys are local accounts: offered where the password form is.
    let nonce = (local && super::passkeys::available(state))
        .then(super::passkeys::script_nonce)
        .flatten();
    if let Some(n) = &nonce {
        ctx["passkey"] = super::passkeys::login_form(state, n);
    }
    let mut resp = render_for(
        "login.html",
        status,
        ctx,
        request.map(|r| r.redirect_uri.as_str()),
    );
    // A provider's button redirects to the provider: CSP form-action covers the redirects
    // that follow a form submission.
    let origins = super::federation::form_origins(state, &p, request);
    if !origins.is_empty() {
        super::federation::allow_form_targets(resp.headers_mut(), &origins);
    }
    if let Some(n) = &nonce {
        super::passkeys::allow_script(resp.headers_mut(), n);
    }
    resp
}

/// Whether the interaction's client allows the password form (`enableLocalLogin`).
pub fn local_login_allowed(state: &AppState, interaction: &Interaction) -> bool {
    interaction.request.as_ref().is_none_or(|r| {
        state
            .projection
            .load()
            .client(&r.client_id)
            .is_none_or(|c| c.client.enable_local_login)
    })
}

/// The first of `ui_locales` if it looks like a language tag, for the page's `lang`.
fn lang(i: &Interaction) -> String {
    i.request
        .as_ref()
        .and_then(|r| r.ui_locales.as_deref())
        .and_then(|l| l.split(' ').next())
        .filter(|l| {
            !l.is_empty()
                && l.len() <= 35
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .unwrap_or("en")
        .to_owned()
}

pub async fn login_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = query_params(query);
    let id = params.as_ref().and_then(|p| p.get("interaction"));
    match load_interaction(&state, &headers, id, None).await {
        Ok(i) => {
            let hint = i
                .request
                .as_ref()
                .and_then(|r| r.login_hint.clone())
                .unwrap_or_default();
            login_page(
                &state,
                id.unwrap_or_default(),
                &i,
                &hint,
                None,
                StatusCode::OK,
            )
        }
        Err(e) => e.into_page(&state),
    }
}

fn form_params(headers: &HeaderMap, body: &[u8]) -> Result<PageParams, OAuthError> {
    if !super::form::is_form(headers) {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    PageParams::parse(body)
}

/// Who is trying to sign in, as the throttle counts it (the password form, and an LDAP
/// provider's directory form).
pub(super) struct Attempt<'a> {
    /// The normalized username ([`signet_core::user::username_key`]).
    account: String,
    /// The client's address ([`ClientAddr`]).
    addr: Option<IpAddr>,
    /// The store key of the browser's device cookie, when it is one of this user's.
    device: Option<String>,
    state: &'a AppState,
}

fn device_key(cookie_value: &str) -> String {
    format!("device:{}", digest_key(cookie_value))
}

impl<'a> Attempt<'a> {
    async fn new(
        state: &'a AppState,
        headers: &HeaderMap,
        username: &str,
        addr: Option<IpAddr>,
    ) -> Result<Attempt<'a>, OAuthError> {
        let account = signet_core::user::username_key(username);
        Self::for_account(state, headers, account, addr).await
    }

    /// An attempt on `account` (a throttle key: a normalized username, or one of another
    /// namespace such as a directory's).
    pub(super) async fn for_account(
        state: &'a AppState,
        headers: &HeaderMap,
        account: String,
        addr: Option<IpAddr>,
    ) -> Result<Attempt<'a>, OAuthError> {
        let mut device = None;
        if let Some(value) = super::browser::cookie(headers, DEVICE_COOKIE) {
            let key = device_key(value);
            let owner = state
                .store
                .get(Namespace::RateLimit, &key)
                .await
                .or_unavailable()?;
            if owner.as_deref() == Some(account.as_bytes()) {
                device = Some(key);
            }
        }
        Ok(Attempt {
            account,
            addr,
            device,
            state,
        })
    }

    /// The counters this attempt is held to, with their limits. A known browser answers
    /// only for itself; any other is held per address and name, per address, and (with
    /// every other unknown browser) per account.
    fn counters(&self) -> Vec<(String, u64)> {
        let account = digest_key(&self.account);
        if let Some(d) = &self.device {
            return vec![(format!("login:{d}"), MAX_FAILURES_PER_DEVICE)];
        }
        let mut v = vec![(format!("login:user:{account}"), MAX_FAILURES_PER_ACCOUNT)];
        if let Some(ip) = self.addr {
            v.push((
                format!("login:pair:{}", digest_key(&format!("{ip}\u{0}{account}"))),
                MAX_FAILURES_PER_PAIR,
            ));
            v.push((format!("login:addr:{ip}"), MAX_FAILURES_PER_ADDRESS));
        }
        v
    }

    /// Whether one of its counters is spent in the current window.
    pub(super) async fn throttled(&self) -> Result<bool, OAuthError> {
        for (key, limit) in self.counters() {
            let count = self
                .state
                .store
                .get(Namespace::RateLimit, &key)
                .await
                .or_unavailable()?
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            if count >= limit {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Counts a failed attempt.
    pub(super) async fn failed(&self) -> Result<(), OAuthError> {
        for (key, _) in self.counters() {
            self.state
                .store
                .incr(Namespace::RateLimit, &key, THROTTLE_WINDOW)
                .await
                .or_unavailable()?;
        }
        Ok(())
    }

    /// After a good password: the device cookie that makes this browser known (unless it
    /// already is).
    pub(super) async fn known_from_now_on(
        &self,
    ) -> Result<Option<header::HeaderValue>, OAuthError> {
        if self.device.is_some() {
            return Ok(None);
        }
        let value = super::browser::random_token()?;
        self.state
            .store
            .put(
                Namespace::RateLimit,
                &device_key(&value),
                self.account.as_bytes(),
                DEVICE_TTL,
                &[],
            )
            .await
            .or_unavailable()?;
        Ok(Some(super::browser::set_cookie(
            self.state,
            DEVICE_COOKIE,
            &value,
            DEVICE_TTL.as_secs(),
        )))
    }
}

pub async fn login_post(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> Response {
    let headers = parts.headers;
    let client = parts.extensions.get::<ClientAddr>().copied();
    if let Some(page) = super::browser::cross_site(&state, &headers) {
        return page;
    }
    let params = match form_params(&headers, &body) {
        Ok(p) => p,
        Err(e) => return oauth_error_page(&state, None, e),
    };
    let (id, interaction) =
        match super::browser::interaction_of_form(&state, &headers, &params).await {
            Ok(found) => found,
            Err(e) => return e.into_page(&state),
        };
    let username = params.get("username").unwrap_or_default();
    let password = params.get("password").unwrap_or_default();
    let again =
        |error: &str, status| login_page(&state, &id, &interaction, username, Some(error), status);
    if !local_login_allowed(&state, &interaction) {
        return again(NO_LOCAL, StatusCode::FORBIDDEN);
    }
    if username.is_empty() || password.is_empty() || username.len() > 256 {
        return again(FAILED, StatusCode::BAD_REQUEST);
    }
    let addr = client.map(|c| c.0);
    let attempt = match Attempt::new(&state, &headers, username, addr).await {
        Ok(a) => a,
        Err(e) => return oauth_error_page(&state, None, e),
    };
    match attempt.throttled().await {
        Ok(true) => return again(THROTTLED, StatusCode::TOO_MANY_REQUESTS),
        Ok(false) => {}
        Err(e) => return oauth_error_page(&state, None, e),
    }
    let user = match state.users.by_username(username).await {
        Ok(u) => u,
        Err(e) => return oauth_error_page(&state, None, super::user_tokens::users_unavailable(e)),
    };
    // On a blocking thread, one per core at a time: argon2id is deliberately slow.
    let password = password.to_owned();
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let ok = crate::users::password_work(move || match hash {
        Some(h) if h != signet_core::user::NO_PASSWORD => {
            signet_core::user::verify_password(&h, &password)
        }
        // Unknown, or a user made by an upstream sign-in without a password: the same work.
        _ => {
            signet_core::user::dummy_verify(&password);
            false
        }
    })
    .await
    .unwrap_or(false);
    let user = match user {
        Some(u) if ok && u.enabled => u,
        _ => {
            metrics::counter!(crate::telemetry::LOGIN_FAILURES).increment(1);
            if let Err(e) = attempt.failed().await {
                return oauth_error_page(&state, None, e);
            }
            return again(FAILED, StatusCode::OK);
        }
    };
    let device_cookie = match attempt.known_from_now_on().await {
        Ok(c) => c,
        Err(e) => return oauth_error_page(&state, None, e),
    };
    // A user with a second factor: the password step is done; the code page finishes the
    // sign-in (the pending step lives in the interaction, in the store, so it may land on
    // another node).
    if user.totp.is_some() {
        let mut interaction = interaction;
        interaction.second_factor = Some(super::browser::SecondFactor {
            sub: user.sub.clone(),
            step_up: None,
            passkey: !user.passkeys.is_empty(),
            passkey_only: false,
        });
        if let Err(e) = super::browser::save_interaction(&state, &id, &interaction).await {
            return oauth_error_page(&state, None, e);
        }
        let mut resp = super::second_factor::to_code_page(&state, &id);
        if let Some(c) = device_cookie {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        return resp;
    }
    let mut resp = finish_sign_in(
        &state,
        &headers,
        addr,
        &id,
        interaction,
        &user,
        vec![signet_core::mfa::AMR_PWD.into()],
    )
    .await;
    if let Some(c) = device_cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// Ends a sign-in whose every factor is done. A user who must change their password
/// (`mustChangePassword`) is sent to the new-password page first (the interaction keeps
/// how they signed in, and nothing else: the factor steps cannot be replayed). Otherwise:
/// [`open_session`].
pub(super) async fn finish_sign_in(
    state: &AppState,
    headers: &HeaderMap,
    addr: Option<IpAddr>,
    id: &str,
    mut interaction: Interaction,
    user: &signet_core::user::UserRecord,
    amr: Vec<String>,
) -> Response {
    if user.must_change_password {
        interaction.second_factor = None;
        interaction.password_change = Some(super::browser::PasswordChange {
            sub: user.sub.clone(),
            amr,
        });
        if let Err(e) = super::browser::save_interaction(state, id, &interaction).await {
            return oauth_error_page(state, None, e);
        }
        return super::device::see_other(
            &state
                .config
                .issuer
                .endpoint(&format!("/login/password?interaction={id}")),
        );
    }
    open_session(state, headers, addr, id, interaction, &user.sub, amr).await
}

/// A new session for `sub` with `amr` (the browser's previous session ended), the
/// interaction ended, and the flow continued (the client answered, or back to the page the
/// sign-in started from).
pub(super) async fn open_session(
    state: &AppState,
    headers: &HeaderMap,
    addr: Option<IpAddr>,
    id: &str,
    interaction: Interaction,
    sub: &str,
    amr: Vec<String>,
) -> Response {
    let now = now();
    // One browser, one session: the session this browser had (a sign-in asked again by
    // `prompt=login`, `max_age` or `userSsoLifetime`, or another user) ends the way every
    // session ends, instead of lingering unreachable until it expires with its clients
    // never told.
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
    let (session, cookie) = match create_session(state, sub, amr, facts, now).await {
        Ok(s) => s,
        Err(e) => return oauth_error_page(state, None, e),
    };
    if let Err(e) = end_interaction(state, id).await {
        return oauth_error_page(state, None, e);
    }
    let mut resp = continue_interaction(state, interaction, session, now).await;
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    resp
}

/// After the sign-in steps of an (ended) interaction: the client's flow, or back to the
/// page the sign-in started from.
pub(super) async fn continue_interaction(
    state: &AppState,
    interaction: Interaction,
    session: super::browser::Session,
    now: i64,
) -> Response {
    let account_page = interaction.account_page;
    let Some(request) = interaction.request else {
        // A sign-in for another page (the device page), or for the account pages: back
        // to the one it started from.
        return match &interaction.then {
            Some(path) => super::device::see_other(&state.config.issuer.endpoint(path)),
            None => super::account::to_page(state, account_page),
        };
    };
    let p = state.projection.load();
    let Some(client) = p.client(&request.client_id).cloned() else {
        return InteractionError::Gone.into_page(state);
    };
    continue_flow(state, &p, &client, request, session, now).await
}

/// The scopes of a request as the consent and device pages show them: display name,
/// description, whether required and emphasized.
pub fn scope_views(
    p: &signet_core::projection::Projection,
    names: &[String],
) -> Vec<serde_json::Value> {
    names
        .iter()
        .map(|name| {
            let entry = p.scope(name);
            let s = entry.map(|e| &*e.scope);
            let required = name == "openid" || s.is_some_and(|s| s.required);
            let display =
                s.and_then(|s| s.display_name.clone())
                    .unwrap_or_else(|| match name.as_str() {
                        signet_core::commands::OFFLINE_ACCESS => "Offline access".to_owned(),
                        _ => name.clone(),
                    });
            serde_json::json!({
                "name": name,
                "display": display,
                "description": s.and_then(|s| s.description.clone()),
                "required": required,
                "emphasize": s.is_some_and(|s| s.emphasize),
            })
        })
        .collect()
}

pub async fn consent_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = query_params(query);
    let id = params.as_ref().and_then(|p| p.get("interaction"));
    let interaction = match load_interaction(&state, &headers, id, None).await {
        Ok(i) if i.session.is_some() => i,
        Ok(_) => return InteractionError::Gone.into_page(&state),
        Err(e) => return e.into_page(&state),
    };
    let Some(request) = interaction.request.as_ref() else {
        return InteractionError::Gone.into_page(&state);
    };
    let p = state.projection.load();
    let Some(client) = p.client(&request.client_id) else {
        return InteractionError::Gone.into_page(&state);
    };
    let scopes = scope_views(&p, &request.scopes);
    let mut ctx = branding(Some(client));
    ctx["action"] = state.config.issuer.endpoint("/consent").into();
    ctx["interaction"] = id.unwrap_or_default().into();
    ctx["csrf"] = interaction.csrf.clone().into();
    ctx["scopes"] = scopes.into();
    ctx["remember"] = client.client.allow_remember_consent.into();
    ctx["lang"] = lang(&interaction).into();
    render_for(
        "consent.html",
        StatusCode::OK,
        ctx,
        Some(&request.redirect_uri),
    )
}

pub async fn consent_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(page) = super::browser::not_a_form(&state, &headers) {
        return page;
    }
    // `scope` repeats (one per checkbox); everything else appears once.
    let mut selected: Vec<String> = Vec::new();
    let mut single: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(&body) {
        if k == "scope" {
            selected.push(v.into_owned());
        } else if single.iter().any(|(seen, _)| *seen == k) {
            return oauth_error_page(
                &state,
                None,
                OAuthError::invalid_request("a parameter is repeated"),
            );
        } else {
            single.push((k.into_owned(), v.into_owned()));
        }
    }
    let params = PageParams(single);
    let (id, interaction) =
        match super::browser::interaction_of_form(&state, &headers, &params).await {
            Ok(found) => found,
            Err(e) => return e.into_page(&state),
        };
    let Some(session) = interaction.session.clone() else {
        return InteractionError::Gone.into_page(&state);
    };
    if let Err(e) = end_interaction(&state, &id).await {
        return oauth_error_page(&state, None, e);
    }
    let Some(request) = interaction.request else {
        return InteractionError::Gone.into_page(&state);
    };
    let deny = |why: &'static str| {
        redirect_error(
            &state,
            to_redirect(&request, OAuthError::new(ErrorCode::AccessDenied, why)),
        )
    };
    if params.get("decision") != Some("allow") {
        return deny("the user denied the request");
    }
    let p = state.projection.load();
    let Some(client) = p.client(&request.client_id).cloned() else {
        return InteractionError::Gone.into_page(&state);
    };
    // Granted: the requested scopes the user kept, plus every required one.
    let granted: Vec<String> = request
        .scopes
        .iter()
        .filter(|s| {
            selected.contains(s) || *s == "openid" || p.scope(s).is_some_and(|e| e.scope.required)
        })
        .cloned()
        .collect();
    if granted.is_empty() || (request.is_oidc() && !granted.iter().any(|s| s == "openid")) {
        return deny("the user granted no scope");
    }
    if client.client.allow_remember_consent && params.get("remember") == Some("yes") {
        if let Err(e) = remember_consent(&state, &client, &session.sub, &granted).await {
            return redirect_error(&state, to_redirect(&request, e));
        }
    }
    complete(&state, &p, &client, &request, &session, granted, now()).await
}
