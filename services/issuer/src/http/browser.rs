//! What the browser-facing endpoints share: cookies, the SSO session, sign-in interactions
//! (an authorization request waiting at the login or consent page, bound to the browser
//! that started it), CSRF tokens, and the HTML pages.
//!
//! Cookies are `HttpOnly`, `SameSite=Lax` (the authorization request arrives by a top-level
//! cross-site navigation), scoped to the issuer's path, and `Secure` when the issuer is
//! https. Cookie values are random; the store keeps only their SHA-256 digest, so reading
//! Redis never yields a usable cookie.

use std::sync::OnceLock;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use signet_core::authorize::{AuthorizeRequest, Params};
use signet_core::oauth::OAuthError;
use signet_core::projection::ClientEntry;
use signet_core::secret::SecretDigest;
use signet_store::{Namespace, StoreError};
use subtle::ConstantTimeEq;

pub use super::sessions::{create_session, load_session, Session};
use crate::state::AppState;

/// The SSO session cookie.
pub const SESSION_COOKIE: &str = "signet_session";
/// Binds a sign-in interaction to the browser that started it (login CSRF defence).
pub const INTERACTION_COOKIE: &str = "signet_interaction";
/// How long a user may take at the login and consent pages.
pub const INTERACTION_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// 256 random bits, base64url.
pub fn random_token() -> Result<String, OAuthError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| OAuthError::server_error("no randomness available"))?;
    Ok(signet_jose::b64url(&bytes))
}

/// The store key for a bearer value (cookie, code): its SHA-256, base64url.
pub fn digest_key(value: &str) -> String {
    SecretDigest::of(value).to_b64url()
}

/// Constant-time string equality.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// A cookie's value from the request (the first one of that name).
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value with Signet's attributes; `max_age` 0 deletes the cookie.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let path = match state.config.issuer.path() {
        "" => "/",
        p => p,
    };
    let secure = if state.config.issuer.is_https() {
        "; Secure"
    } else {
        ""
    };
    let v =
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
    // Names, random base64url values and the validated issuer path are all visible ASCII.
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn store_error(e: StoreError) -> OAuthError {
    tracing::warn!(error = %e, "short-lived state store failed");
    match e {
        StoreError::Unavailable(_) | StoreError::Io(_) => OAuthError::new(
            signet_core::oauth::ErrorCode::TemporarilyUnavailable,
            "the sign-in service is temporarily unavailable; retry shortly",
        ),
        _ => OAuthError::server_error("the sign-in state could not be read"),
    }
}

/// Store failures as protocol errors (503 `temporarily_unavailable` when Redis is down).
pub trait StoreResult<T> {
    fn or_unavailable(self) -> Result<T, OAuthError>;
}

impl<T> StoreResult<T> for Result<T, StoreError> {
    fn or_unavailable(self) -> Result<T, OAuthError> {
        self.map_err(store_error)
    }
}

/// A sign-in waiting for the user: for an authorization request, or (`request: None`) for
/// the account pages, which the user returns to afterwards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Interaction {
    pub request: Option<AuthorizeRequest>,
    /// Echoed by the page's form.
    pub csrf: String,
    /// Digest of the [`INTERACTION_COOKIE`] value of the browser that started it.
    pub browser: String,
    /// Set once the user signed in (or had a session) and only consent is missing.
    pub session: Option<Session>,
    /// The account page a sign-in without `request` returns to.
    #[serde(default)]
    pub account_page: AccountPage,
    /// Without a request: the page (a path under the issuer, chosen by this server) the
    /// user returns to after signing in, such as `/device?user_code=...`; none: the
    /// account page `account_page`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then: Option<String>,
    /// Set while the sign-in waits for the user's second factor ([`super::second_factor`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_factor: Option<SecondFactor>,
    /// Set when every factor is done but the user must choose a new password first
    /// (`mustChangePassword`, [`super::password_step`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_change: Option<PasswordChange>,
}

/// A sign-in whose factors are done, waiting for the user's new password.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PasswordChange {
    pub sub: String,
    /// How the user signed in, for the session the change opens.
    pub amr: Vec<String>,
}

/// A sign-in waiting for a second factor: after a good password, or to step up a session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecondFactor {
    /// The user whose factor is asked.
    pub sub: String,
    /// Step-up: the `sid` of this browser's session, which the factor raises (instead of
    /// a new session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up: Option<String>,
    /// The user has a passkey: the step offers it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passkey: bool,
    /// Only a passkey will do (a request needs `phr`, or the user has no TOTP): codes are
    /// refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passkey_only: bool,
}

/// The account pages a sign-in can return to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountPage {
    #[default]
    ApiKeys,
    Sessions,
    Security,
    Links,
}

impl AccountPage {
    /// The page's path under the issuer.
    pub fn path(self) -> &'static str {
        match self {
            AccountPage::ApiKeys => "/account/api-keys",
            AccountPage::Sessions => "/account/sessions",
            AccountPage::Security => "/account/security",
            AccountPage::Links => "/account/links",
        }
    }
}

/// Stores a new interaction; returns its id and the binding cookie.
pub async fn start_interaction(
    state: &AppState,
    request: Option<AuthorizeRequest>,
    session: Option<Session>,
) -> Result<(String, HeaderValue), OAuthError> {
    let started = start(state, request, session, AccountPage::default(), None).await?;
    Ok((started.id, started.cookie))
}

/// [`start_interaction`] for a sign-in that returns to the account page `page`.
pub async fn start_interaction_for(
    state: &AppState,
    request: Option<AuthorizeRequest>,
    session: Option<Session>,
    account_page: AccountPage,
) -> Result<(String, HeaderValue), OAuthError> {
    let started = start(state, request, session, account_page, None).await?;
    Ok((started.id, started.cookie))
}

/// Stores a new interaction waiting for a second factor (a step-up); returns its id and
/// the binding cookie.
pub async fn start_second_factor(
    state: &AppState,
    request: Option<AuthorizeRequest>,
    pending: SecondFactor,
) -> Result<(String, HeaderValue), OAuthError> {
    let started = start_with(
        state,
        request,
        None,
        AccountPage::default(),
        None,
        Some(pending),
    )
    .await?;
    Ok((started.id, started.cookie))
}

/// A stored interaction: its id, the cookie binding it to the browser, its CSRF token.
pub struct Started {
    pub id: String,
    pub cookie: HeaderValue,
    pub csrf: String,
}

/// [`start_interaction`] that returns to the page `then` (a path under the issuer) after
/// the sign-in.
pub async fn start_interaction_then(
    state: &AppState,
    request: Option<AuthorizeRequest>,
    session: Option<Session>,
    then: Option<String>,
) -> Result<Started, OAuthError> {
    start(state, request, session, AccountPage::default(), then).await
}

async fn start(
    state: &AppState,
    request: Option<AuthorizeRequest>,
    session: Option<Session>,
    account_page: AccountPage,
    then: Option<String>,
) -> Result<Started, OAuthError> {
    start_with(state, request, session, account_page, then, None).await
}

async fn start_with(
    state: &AppState,
    request: Option<AuthorizeRequest>,
    session: Option<Session>,
    account_page: AccountPage,
    then: Option<String>,
    second_factor: Option<SecondFactor>,
) -> Result<Started, OAuthError> {
    let id = random_token()?;
    let binding = random_token()?;
    let interaction = Interaction {
        request,
        csrf: random_token()?,
        browser: digest_key(&binding),
        session,
        account_page,
        then,
        second_factor,
        password_change: None,
    };
    save_interaction(state, &id, &interaction).await?;
    let cookie = set_cookie(
        state,
        INTERACTION_COOKIE,
        &binding,
        INTERACTION_TTL.as_secs(),
    );
    Ok(Started {
        id,
        cookie,
        csrf: interaction.csrf,
    })
}

pub async fn save_interaction(
    state: &AppState,
    id: &str,
    interaction: &Interaction,
) -> Result<(), OAuthError> {
    let bytes =
        serde_json::to_vec(interaction).map_err(|_| OAuthError::server_error("interaction"))?;
    state
        .store
        .put(
            Namespace::Interaction,
            &digest_key(id),
            &bytes,
            INTERACTION_TTL,
            &[],
        )
        .await
        .or_unavailable()
}

/// Why an interaction cannot continue (shown on the error page).
pub enum InteractionError {
    /// Unknown or expired: the user took too long, or the link is forged.
    Gone,
    /// The browser is not the one that started it, or the CSRF token is wrong.
    Forged,
    Failed(OAuthError),
}

/// Loads an interaction for this browser; with `csrf`, also checks the form's token.
pub async fn load_interaction(
    state: &AppState,
    headers: &HeaderMap,
    id: Option<&str>,
    csrf: Option<&str>,
) -> Result<Interaction, InteractionError> {
    let id = id
        .filter(|id| id.len() <= 64)
        .ok_or(InteractionError::Gone)?;
    let bytes = state
        .store
        .get(Namespace::Interaction, &digest_key(id))
        .await
        .or_unavailable()
        .map_err(InteractionError::Failed)?
        .ok_or(InteractionError::Gone)?;
    let interaction: Interaction =
        serde_json::from_slice(&bytes).map_err(|_| InteractionError::Gone)?;
    let bound = cookie(headers, INTERACTION_COOKIE)
        .is_some_and(|c| ct_eq(&digest_key(c), &interaction.browser));
    if !bound {
        return Err(InteractionError::Forged);
    }
    if let Some(csrf) = csrf {
        if !ct_eq(csrf, &interaction.csrf) {
            return Err(InteractionError::Forged);
        }
    }
    Ok(interaction)
}

/// Loads the interaction a page's form names (`interaction`), checking its `csrf` and the
/// browser binding; the id comes back too.
pub async fn interaction_of_form(
    state: &AppState,
    headers: &HeaderMap,
    params: &PageParams,
) -> Result<(String, Interaction), InteractionError> {
    use signet_core::authorize::Params as _;
    let id = params.get("interaction").unwrap_or_default().to_owned();
    let csrf = params.get("csrf").unwrap_or("");
    let interaction = load_interaction(state, headers, Some(&id), Some(csrf)).await?;
    Ok((id, interaction))
}

/// The error page for a POST whose body is not a form, or that another site sent; `None`
/// when it is a form of ours.
pub fn not_a_form(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    if let Some(r) = cross_site(state, headers) {
        return Some(r);
    }
    (!super::form::is_form(headers)).then(|| {
        oauth_error_page(
            state,
            None,
            OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"),
        )
    })
}

/// `GET` of a page that continues an interaction (`?interaction=<id>`): `render`s it when
/// the interaction is at that step (`at_step`), else the page saying it is gone.
pub async fn interaction_page(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<String>,
    at_step: impl FnOnce(&Interaction) -> bool,
    render: impl FnOnce(&str, &Interaction) -> Response,
) -> Response {
    use signet_core::authorize::Params as _;
    let params = PageParams::parse(query.unwrap_or_default().as_bytes()).ok();
    let id = params.as_ref().and_then(|p| p.get("interaction"));
    match load_interaction(state, headers, id, None).await {
        Ok(i) if at_step(&i) => render(id.unwrap_or_default(), &i),
        Ok(_) => InteractionError::Gone.into_page(state),
        Err(e) => e.into_page(state),
    }
}

/// What a page's form post (a same-site form that continues an interaction) brings: its
/// fields, the interaction's id and the interaction (CSRF checked); or the page that says
/// why not.
pub async fn posted_interaction(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(PageParams, String, Interaction), Response> {
    if let Some(page) = not_a_form(state, headers) {
        return Err(page);
    }
    let params = PageParams::parse(body).map_err(|e| oauth_error_page(state, None, e))?;
    let (id, interaction) = interaction_of_form(state, headers, &params)
        .await
        .map_err(|e| e.into_page(state))?;
    Ok((params, id, interaction))
}

/// Whether a state-changing browser request came from another site. Defence in depth
/// behind the CSRF tokens: a form of ours is posted from our own origin.
/// - `Sec-Fetch-Site` (every current browser sends it) must be `same-origin` or `none`.
/// - Without it, `Origin` must be the issuer's. Our pages' `Referrer-Policy: no-referrer`
///   makes browsers send `Origin: null` on their own form posts, so `null` is left to the
///   CSRF check, as is a request with neither header (not a browser).
pub fn is_cross_site(state: &AppState, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    headers.get(header::ORIGIN).is_some_and(|o| {
        o.as_bytes() != b"null" && o.as_bytes() != state.config.issuer.origin().as_bytes()
    })
}

/// The 403 page for a cross-site form post ([`is_cross_site`]); `None` when it is ours.
pub fn cross_site(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    is_cross_site(state, headers).then(|| {
        error_page(
            state,
            None,
            StatusCode::FORBIDDEN,
            "invalid_request",
            "This form was sent from another site. Go back to the application and start again.",
        )
    })
}

/// Ends an interaction (it cannot be used twice).
pub async fn end_interaction(state: &AppState, id: &str) -> Result<(), OAuthError> {
    state
        .store
        .delete(Namespace::Interaction, &digest_key(id))
        .await
        .or_unavailable()
        .map(|_| ())
}

impl InteractionError {
    pub fn into_page(self, state: &AppState) -> Response {
        match self {
            InteractionError::Gone => error_page(
                state,
                None,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "This sign-in request has expired or is unknown. Start again from the application.",
            ),
            InteractionError::Forged => error_page(
                state,
                None,
                StatusCode::FORBIDDEN,
                "invalid_request",
                "This form was not sent by the page this server showed you (CSRF check failed). Start again from the application.",
            ),
            InteractionError::Failed(e) => oauth_error_page(state, None, e),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Pages

fn templates() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        // `.html` templates are autoescaped.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        for (name, text) in [
            ("base.html", include_str!("../../templates/base.html")),
            ("login.html", include_str!("../../templates/login.html")),
            ("otp.html", include_str!("../../templates/otp.html")),
            (
                "passkey_script.html",
                include_str!("../../templates/passkey_script.html"),
            ),
            (
                "directory.html",
                include_str!("../../templates/directory.html"),
            ),
            (
                "change_password.html",
                include_str!("../../templates/change_password.html"),
            ),
            (
                "security.html",
                include_str!("../../templates/security.html"),
            ),
            ("links.html", include_str!("../../templates/links.html")),
            ("consent.html", include_str!("../../templates/consent.html")),
            ("device.html", include_str!("../../templates/device.html")),
            ("logout.html", include_str!("../../templates/logout.html")),
            (
                "logged_out.html",
                include_str!("../../templates/logged_out.html"),
            ),
            ("error.html", include_str!("../../templates/error.html")),
            (
                "continue.html",
                include_str!("../../templates/continue.html"),
            ),
            (
                "form_post.html",
                include_str!("../../templates/form_post.html"),
            ),
            (
                "api_keys.html",
                include_str!("../../templates/api_keys.html"),
            ),
            (
                "sessions.html",
                include_str!("../../templates/sessions.html"),
            ),
            ("forgot.html", include_str!("../../templates/forgot.html")),
            ("reset.html", include_str!("../../templates/reset.html")),
            (
                "verify_email.html",
                include_str!("../../templates/verify_email.html"),
            ),
            ("mail.html", include_str!("../../templates/mail.html")),
            ("mail.txt", include_str!("../../templates/mail.txt")),
        ] {
            // The templates are part of the binary; a broken one fails the unit tests.
            if let Err(e) = env.add_template(name, text) {
                tracing::error!(template = name, error = %e, "template does not compile");
            }
        }
        env
    })
}

/// Branding of a client for the page header (`clientName`, `logoUri`, `clientUri`, and the
/// `backgroundImageUri` property). Only http(s) URLs are used.
pub fn branding(client: Option<&ClientEntry>) -> serde_json::Value {
    let Some(c) = client else {
        return serde_json::json!({});
    };
    let url = |u: Option<&String>| {
        u.filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .cloned()
    };
    let c = &c.client;
    serde_json::json!({
        "client_id": c.client_id,
        "client_name": c.client_name,
        "client_uri": url(c.client_uri.as_ref()),
        "logo_uri": url(c.logo_uri.as_ref()),
        "background": url(c.properties.get("backgroundImageUri")),
    })
}

/// Renders a template to a string (an e-mail body); `None` if it fails (logged).
pub fn render_text(name: &str, ctx: &serde_json::Value) -> Option<String> {
    let rendered = templates().get_template(name).and_then(|t| t.render(ctx));
    match rendered {
        Ok(text) => Some(text),
        Err(e) => {
            tracing::error!(template = name, error = %e, "template failed");
            None
        }
    }
}

/// Renders a page. Pages are never cached and never framed.
pub fn render(name: &str, status: StatusCode, ctx: serde_json::Value) -> Response {
    render_for(name, status, ctx, None)
}

/// The origin (`scheme://host[:port]`) of a URL, for a CSP source list.
fn origin_of(uri: &str) -> Option<String> {
    let u = url::Url::parse(uri).ok()?;
    match u.origin() {
        url::Origin::Tuple(..) => Some(u.origin().ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

/// [`render`] for a page whose form ends in a redirect to `redirect_uri` (login and consent
/// answer the client directly): CSP `form-action` also allows that origin, since browsers
/// apply it to the redirects that follow a form submission.
pub fn render_for(
    name: &str,
    status: StatusCode,
    ctx: serde_json::Value,
    redirect_uri: Option<&str>,
) -> Response {
    let html = match templates().get_template(name).and_then(|t| t.render(&ctx)) {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(template = name, error = %e, "page could not be rendered");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response();
        }
    };
    let mut resp = (status, Html(html)).into_response();
    let target = redirect_uri.and_then(origin_of);
    page_headers(
        resp.headers_mut(),
        name == "form_post.html",
        target.as_deref(),
    );
    resp
}

/// The signed-out page with OIDC Front-Channel Logout iframes (`frames`, absolute http(s)
/// URLs): its CSP `frame-src` allows exactly their origins; with `continue_to` (the
/// validated `post_logout_redirect_uri`) a script, allowed by a fresh nonce, continues
/// there once the iframes have loaded (the window's load event waits for them), or after
/// five seconds.
pub fn render_logged_out(
    mut ctx: serde_json::Value,
    frames: &[String],
    continue_to: Option<&str>,
) -> Response {
    let nonce = match random_token() {
        Ok(n) => n,
        Err(_) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    };
    ctx["frames"] = frames.into();
    ctx["continue_to"] = continue_to.into();
    ctx["nonce"] = nonce.clone().into();
    let mut resp = render("logged_out.html", StatusCode::OK, ctx);
    let mut origins: Vec<String> = frames.iter().filter_map(|f| origin_of(f)).collect();
    origins.sort();
    origins.dedup();
    let frame_src = if origins.is_empty() {
        "'none'".to_owned()
    } else {
        origins.join(" ")
    };
    let script = if continue_to.is_some() {
        format!("'nonce-{nonce}'")
    } else {
        "'none'".to_owned()
    };
    let csp = format!("default-src 'none'; style-src 'unsafe-inline'; img-src https: http:; form-action 'self'; frame-src {frame_src}; script-src {script}; frame-ancestors 'none'");
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

fn page_headers(h: &mut HeaderMap, form_post: bool, form_target: Option<&str>) {
    super::error::no_store(h);
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The form_post page submits itself to the client (one inline handler); the others run
    // no script at all.
    let csp = if form_post {
        "default-src 'none'; script-src 'unsafe-inline'; frame-ancestors 'none'".to_owned()
    } else {
        let extra = form_target.map(|o| format!(" {o}")).unwrap_or_default();
        format!("default-src 'none'; style-src 'unsafe-inline'; img-src https: http:; form-action 'self'{extra}; frame-ancestors 'none'")
    };
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
}

/// The error page (never a redirect: used when the redirect URI cannot be trusted).
pub fn error_page(
    _state: &AppState,
    client: Option<&ClientEntry>,
    status: StatusCode,
    error: &str,
    description: &str,
) -> Response {
    let mut ctx = branding(client);
    ctx["error"] = error.into();
    ctx["description"] = description.into();
    render("error.html", status, ctx)
}

/// An [`OAuthError`] on the error page, with the status its code implies.
pub fn oauth_error_page(state: &AppState, client: Option<&ClientEntry>, e: OAuthError) -> Response {
    use signet_core::oauth::ErrorCode;
    let status = match e.code {
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    error_page(state, client, status, e.code.as_str(), &e.description)
}

/// Request parameters (a query string or a form body): each at most once, each at most
/// [`signet_core::authorize::MAX_PARAM_LEN`] bytes (a signed `request` object at most
/// [`super::request_object::MAX_REQUEST_OBJECT_LEN`]).
pub struct PageParams(pub Vec<(String, String)>);

/// The longest value accepted for the parameter `name`.
fn max_len(name: &str) -> usize {
    if name == "request" {
        super::request_object::MAX_REQUEST_OBJECT_LEN
    } else {
        signet_core::authorize::MAX_PARAM_LEN
    }
}

/// The `invalid_request` for the first parameter whose value is too long, if any:
/// [`PageParams`]' rule, at PAR too.
pub fn check_lengths(params: &[(String, String)]) -> Result<(), OAuthError> {
    match params.iter().find(|(k, v)| v.len() > max_len(k)) {
        None => Ok(()),
        Some((k, _)) => Err(OAuthError::invalid_request(format!(
            "parameter {:?} is longer than {} bytes",
            k.chars().take(64).collect::<String>(),
            max_len(k)
        ))),
    }
}

impl PageParams {
    pub fn parse(raw: &[u8]) -> Result<Self, OAuthError> {
        let params = super::form::OAuthForm::parse(raw)?;
        check_lengths(&params)?;
        Ok(PageParams(params))
    }
}

impl Params for PageParams {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
    fn get_all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_compile_and_escape() {
        let mut ctx = branding(None);
        ctx["error"] = "invalid_request".into();
        ctx["description"] = "<script>alert(1)</script>".into();
        let html = templates()
            .get_template("error.html")
            .unwrap()
            .render(&ctx)
            .unwrap();
        assert!(html.contains("&lt;script&gt;"), "{html}");
        for name in [
            "login.html",
            "consent.html",
            "device.html",
            "logout.html",
            "logged_out.html",
            "form_post.html",
            "base.html",
            "api_keys.html",
            "forgot.html",
            "reset.html",
            "verify_email.html",
            "mail.html",
            "mail.txt",
        ] {
            templates().get_template(name).unwrap();
        }
    }

    #[test]
    fn cookies_are_parsed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; signet_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
