//! `/oauth2/authorize` (RFC 6749 section 4.1, OIDC Core sections 3.1.2, 3.2.2, 3.3.2),
//! GET and POST: check the client and redirect URI (errors on the error page, never a
//! redirect), check the rest (errors back at the redirect URI), then sign the user in
//! (the SSO session, or the login page), ask for consent where the client requires it, and
//! answer with a code and/or tokens by the response mode, always with `iss` (RFC 9207).

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use signet_core::authorize::{
    check_client, check_request, AuthorizeRequest, Params, RedirectError, RequestedAcr,
    ResponseMode,
};
use signet_core::mfa::Level;
use signet_core::oauth::{ErrorCode, OAuthError};
use signet_core::projection::{ClientEntry, Projection};
use signet_store::{Index, Namespace};

use super::browser::{
    digest_key, error_page, load_session, oauth_error_page, random_token, render,
    start_interaction, start_second_factor, PageParams, SecondFactor, Session, StoreResult,
};
use super::token::now;
use super::user_tokens::{self, Alongside, UserGrant};
use crate::state::AppState;

pub async fn authorize_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    authorize(&state, &headers, query.unwrap_or_default().as_bytes()).await
}

pub async fn authorize_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(page) = super::browser::not_a_form(&state, &headers) {
        return page;
    }
    authorize(&state, &headers, &body).await
}

async fn authorize(state: &AppState, headers: &HeaderMap, raw: &[u8]) -> Response {
    let mut params = match PageParams::parse(raw) {
        Ok(p) => p,
        // Nothing is trusted yet: the error page, never a redirect.
        Err(e) => return oauth_error_page(state, None, e),
    };
    // RFC 9126 section 4: a pushed request replaces the parameters entirely (anything else
    // in the query is ignored); it is consumed here, once, by the client that pushed it.
    let pushed_uri = params
        .get("request_uri")
        .filter(|u| super::par::is_pushed_reference(u))
        .map(str::to_owned);
    let pushed = pushed_uri.is_some();
    // Whether the parameters come from a verified request object (RFC 9101).
    let mut signed = false;
    if let Some(uri) = pushed_uri {
        match super::par::take(state, &uri, params.get("client_id")).await {
            Ok(t) => (params, signed) = (t.params, t.signed),
            Err(e) => return oauth_error_page(state, None, e),
        }
    }
    // RFC 9101 section 5: a request object's parameters replace the request's. One that
    // fails verification is answered on the error page: its redirect_uri is not trusted,
    // and the outer parameters are not the request.
    let remote = if !pushed {
        match super::request_object::published_keys(state, &params, params.get("client_id")).await {
            Ok(keys) => keys,
            Err(e) => return oauth_error_page(state, None, e),
        }
    } else {
        None
    };
    let p = state.projection.load();
    if !pushed && params.get("request").is_some() {
        let issuer = state.config.issuer.as_str();
        let remote = remote.as_deref().map_or(&[][..], Vec::as_slice);
        match super::request_object::resolve(
            &p,
            &params,
            params.get("client_id"),
            issuer,
            now(),
            remote,
        ) {
            Ok(inner) => (params, signed) = (inner, true),
            Err(e) => return oauth_error_page(state, None, e),
        }
    }
    let (client, redirect_uri) = match check_client(&p, &params) {
        Ok(c) => c,
        Err(e) => {
            return error_page(
                state,
                None,
                StatusCode::BAD_REQUEST,
                e.error.as_str(),
                &e.description,
            )
        }
    };
    let request = match check_request(&p, client, &redirect_uri, &params) {
        Ok(r) => r,
        Err(e) => return redirect_error(state, *e),
    };
    // RFC 9126 section 5: the server (`--require-pushed-authorization-requests`) or the
    // client (`requirePushedAuthorization`) accepts only pushed requests.
    if !pushed
        && (state.config.require_pushed_authorization_requests
            || client.client.require_pushed_authorization)
    {
        return redirect_error(
            state,
            to_redirect(
                &request,
                OAuthError::invalid_request(
                    "authorization requests must be pushed to the pushed authorization request endpoint first (RFC 9126)",
                ),
            ),
        );
    }
    // RFC 9101 section 10.5: a client registered with requireRequestObject sends only
    // signed request objects (by value or pushed).
    if !signed && client.client.require_request_object {
        return redirect_error(
            state,
            to_redirect(
                &request,
                OAuthError::invalid_request(
                    "this client must send its authorization requests as signed request objects (the request parameter, RFC 9101)",
                ),
            ),
        );
    }
    let now = now();
    let session = match load_session(state, headers).await {
        Ok(s) => s.filter(|s| fresh_enough(s, &request, client, now)),
        Err(e) => return redirect_error(state, to_redirect(&request, e)),
    };
    match session {
        None if request.prompt.none => redirect_error(
            state,
            to_redirect(
                &request,
                OAuthError::new(ErrorCode::LoginRequired, "the user is not signed in"),
            ),
        ),
        None => match hinted_provider(&p, &request) {
            Some(scheme) => to_provider(state, headers, request, scheme).await,
            None => to_page(state, "/login", request, None).await,
        },
        Some(session) => continue_flow(state, &p, client, request, session, now).await,
    }
}

/// Whether the session may answer this request without a new login: no `prompt=login`,
/// and the authentication is recent enough for `max_age` and the client's
/// `userSsoLifetime`.
fn fresh_enough(s: &Session, r: &AuthorizeRequest, client: &ClientEntry, now: i64) -> bool {
    let age = now.saturating_sub(s.auth_time).max(0) as u64;
    !r.prompt.login
        && r.max_age.is_none_or(|m| age <= m)
        && client
            .client
            .user_sso_lifetime
            .is_none_or(|l| age <= u64::from(l))
}

/// The upstream provider a request names: `acr_values=idp:<scheme>` (whether or not the
/// client may use it: starting says why not), else the provider of the `login_hint`'s
/// e-mail domain among those the client may use (home-realm discovery; the first by scheme
/// if two nodes let two providers claim one domain).
fn hinted_provider(
    p: &signet_core::projection::Projection,
    request: &AuthorizeRequest,
) -> Option<String> {
    if let Some(scheme) = &request.idp_hint {
        return Some(scheme.clone());
    }
    let hint = request.login_hint.as_deref()?;
    super::federation::offered(p, Some(request))
        .into_iter()
        .filter(|i| i.serves_hint(hint))
        .map(|i| i.scheme.clone())
        .min()
}

/// A new interaction for `request`, and the redirect to upstream provider `scheme`.
async fn to_provider(
    state: &AppState,
    headers: &HeaderMap,
    request: AuthorizeRequest,
    scheme: String,
) -> Response {
    let fallback = request.clone();
    let (id, cookie) = match start_interaction(state, Some(request.clone()), None).await {
        Ok(started) => started,
        Err(e) => return redirect_error(state, to_redirect(&fallback, e)),
    };
    // The interaction cookie is not in this request's headers yet: the one just made
    // binds the pending sign-in.
    let mut with_cookie = headers.clone();
    if let Some(value) = cookie
        .to_str()
        .ok()
        .and_then(|c| c.split(';').next())
        .and_then(|kv| header::HeaderValue::from_str(kv).ok())
    {
        with_cookie.insert(header::COOKIE, value);
    }
    let interaction = super::browser::Interaction {
        request: Some(request),
        csrf: String::new(),
        browser: String::new(),
        session: None,
        account_page: Default::default(),
        then: None,
        second_factor: None,
        password_change: None,
    };
    let mut r = super::federation::begin(state, &with_cookie, &id, &interaction, &scheme).await;
    r.headers_mut().append(header::SET_COOKIE, cookie);
    r
}

/// A new interaction for `request`, and a redirect to the page that continues it.
async fn to_page(
    state: &AppState,
    page: &str,
    request: AuthorizeRequest,
    session: Option<Session>,
) -> Response {
    let fallback = request.clone();
    match start_interaction(state, Some(request), session).await {
        Ok((id, cookie)) => {
            let location = state
                .config
                .issuer
                .endpoint(&format!("{page}?interaction={id}"));
            let mut r = found(&location);
            r.headers_mut().append(header::SET_COOKIE, cookie);
            r
        }
        Err(e) => redirect_error(state, to_redirect(&fallback, e)),
    }
}

/// The key of a remembered consent: of this user, for this incarnation of the client (a
/// client deleted and created again asks again).
fn consent_key(sub: &str, client: &ClientEntry) -> String {
    digest_key(&format!(
        "{sub}\u{0}{}\u{0}{}",
        client.client.client_id, client.incarnation
    ))
}

/// The scopes a user consented to for a client earlier, if remembered.
async fn remembered_consent(
    state: &AppState,
    sub: &str,
    client: &ClientEntry,
) -> Result<Vec<String>, OAuthError> {
    let bytes = state
        .store
        .get(Namespace::Consent, &consent_key(sub, client))
        .await
        .or_unavailable()?;
    Ok(bytes
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

/// Remembers a consent for `consentLifetime` (a year when the client sets none).
pub async fn remember_consent(
    state: &AppState,
    client: &ClientEntry,
    sub: &str,
    scopes: &[String],
) -> Result<(), OAuthError> {
    let lifetime = client.client.consent_lifetime.unwrap_or(365 * 24 * 3600);
    let bytes = serde_json::to_vec(scopes).map_err(|_| OAuthError::server_error("consent"))?;
    state
        .store
        .put(
            Namespace::Consent,
            &consent_key(sub, client),
            &bytes,
            std::time::Duration::from_secs(u64::from(lifetime.max(1))),
            &[Index::Subject(sub)],
        )
        .await
        .or_unavailable()
}

/// The level a request needs: the client's `requiredAcr` (always essential), and the
/// request's `acr_values` or essential `acr` claim; the stronger wins.
fn required_level(request: &AuthorizeRequest, client: &ClientEntry) -> Option<RequestedAcr> {
    let by_client = client.client.required_acr().map(|level| RequestedAcr {
        level,
        essential: true,
    });
    match (by_client, request.acr) {
        (Some(c), Some(r)) if r.level > c.level => Some(r),
        (Some(c), _) => Some(c),
        (None, r) => r,
    }
}

/// A session below the level the request needs: step it up (only the missing factor is
/// asked), or, when the user has no factor that reaches the level, answer `access_denied`
/// if the level is essential (the client's `requiredAcr`, an essential `acr` claim) and
/// go on with the level reached if it was only asked (`acr_values`; the ID token's `acr`
/// says what was reached). `prompt=none` cannot show the code page:
/// `interaction_required`. `None`: nothing to do.
async fn step_up(
    state: &AppState,
    client: &ClientEntry,
    request: &AuthorizeRequest,
    session: &Session,
) -> Option<Response> {
    let needed = required_level(request, client)?;
    if session.level() >= needed.level {
        return None;
    }
    let user = match state.users.by_sub(&session.sub).await {
        Ok(u) => u,
        Err(e) => {
            return Some(redirect_error(
                state,
                to_redirect(request, super::user_tokens::users_unavailable(e)),
            ))
        }
    };
    // TOTP reaches `mfa`; a passkey reaches `phr` (and so `mfa`).
    let has_totp = user.as_ref().is_some_and(|u| u.totp.is_some());
    let has_passkey = user.as_ref().is_some_and(|u| !u.passkeys.is_empty());
    let reachable = match needed.level {
        Level::Pwd => true,
        Level::Mfa => has_totp || has_passkey,
        Level::Phr => has_passkey,
    };
    if !reachable {
        if !needed.essential {
            return None;
        }
        return Some(redirect_error(
            state,
            to_redirect(
                request,
                OAuthError::new(
                    ErrorCode::AccessDenied,
                    format!(
                        "the user cannot reach the authentication level {} this client requires",
                        needed.level
                    ),
                ),
            ),
        ));
    }
    if request.prompt.none {
        return Some(redirect_error(
            state,
            to_redirect(
                request,
                OAuthError::new(
                    ErrorCode::InteractionRequired,
                    "the request needs a second factor, which prompt=none cannot ask",
                ),
            ),
        ));
    }
    let pending = SecondFactor {
        sub: session.sub.clone(),
        step_up: Some(session.sid.clone()),
        passkey: has_passkey,
        passkey_only: needed.level == Level::Phr || !has_totp,
    };
    let fallback = request.clone();
    Some(
        match start_second_factor(state, Some(request.clone()), pending).await {
            Ok((id, cookie)) => {
                let mut r = super::second_factor::to_code_page(state, &id);
                r.headers_mut().append(header::SET_COOKIE, cookie);
                r
            }
            Err(e) => redirect_error(state, to_redirect(&fallback, e)),
        },
    )
}

/// After sign-in: step up a session below the level the request needs, then ask for
/// consent when needed, else answer the client.
pub async fn continue_flow(
    state: &AppState,
    p: &Projection,
    client: &ClientEntry,
    request: AuthorizeRequest,
    session: Session,
    now: i64,
) -> Response {
    if let Some(r) = step_up(state, client, &request, &session).await {
        return r;
    }
    if client.client.require_consent {
        let covered = if request.prompt.consent {
            false
        } else {
            match remembered_consent(state, &session.sub, client).await {
                Ok(granted) => request.scopes.iter().all(|s| granted.contains(s)),
                Err(e) => return redirect_error(state, to_redirect(&request, e)),
            }
        };
        if !covered {
            if request.prompt.none {
                return redirect_error(
                    state,
                    to_redirect(
                        &request,
                        OAuthError::new(
                            ErrorCode::ConsentRequired,
                            "the user has not consented to this client",
                        ),
                    ),
                );
            }
            return to_page(state, "/consent", request, Some(session)).await;
        }
    }
    let scopes = request.scopes.clone();
    complete(state, p, client, &request, &session, scopes, now).await
}

/// Issues the code and/or tokens and answers at the redirect URI.
pub async fn complete(
    state: &AppState,
    p: &Projection,
    client: &ClientEntry,
    request: &AuthorizeRequest,
    session: &Session,
    scopes: Vec<String>,
    now: i64,
) -> Response {
    match issue(state, p, client, request, session, scopes, now).await {
        Ok(params) => respond(
            &request.redirect_uri,
            request.response_mode,
            params,
            request.state.as_deref(),
            state.config.issuer.as_str(),
        ),
        Err(e) => redirect_error(state, to_redirect(request, e)),
    }
}

async fn issue(
    state: &AppState,
    p: &Projection,
    client: &ClientEntry,
    request: &AuthorizeRequest,
    session: &Session,
    scopes: Vec<String>,
    now: i64,
) -> Result<Vec<(&'static str, String)>, OAuthError> {
    let rt = request.response_type;
    let grant = UserGrant {
        client_id: client.client.client_id.clone(),
        client_gen: client.incarnation,
        redirect_uri: request.redirect_uri.clone(),
        redirect_uri_explicit: request.redirect_uri_explicit,
        sub: session.sub.clone(),
        scopes,
        nonce: request.nonce.clone(),
        sid: session.sid.clone(),
        auth_time: session.auth_time,
        amr: session.amr.clone(),
        code_challenge: request.code_challenge.clone(),
        resources: request.resources.clone(),
        dpop_jkt: request.dpop_jkt.clone(),
        mtls_x5t: None,
        idp: session.idp.clone(),
    };
    // The client takes part in the session from now on (it is told when the session ends).
    super::sessions::add_client(
        state,
        session,
        &client.client.client_id,
        &request.redirect_uri,
        now,
    )
    .await?;
    let mut out = Vec::new();
    let code = if rt.code {
        let code = random_token()?;
        let bytes = serde_json::to_vec(&grant).map_err(|_| OAuthError::server_error("code"))?;
        let ttl = u64::from(client.client.authorization_code_lifetime.max(1));
        state
            .store
            .put(
                Namespace::AuthorizationCode,
                &digest_key(&code),
                &bytes,
                std::time::Duration::from_secs(ttl),
                &[Index::Session(&session.sid), Index::Subject(&session.sub)],
            )
            .await
            .or_unavailable()?;
        out.push(("code", code.clone()));
        Some(code)
    } else {
        None
    };
    let access = if rt.token {
        let user = user_tokens::active_user(state, &grant.sub).await?;
        let (token, lifetime) =
            user_tokens::access_token(state, p, client, &grant, &user.claims, now).await?;
        out.push(("access_token", token.clone()));
        out.push(("token_type", "Bearer".to_owned()));
        out.push(("expires_in", lifetime.to_string()));
        out.push(("scope", grant.scopes.join(" ")));
        Some(token)
    } else {
        None
    };
    if rt.id_token {
        let alongside = Alongside {
            access_token: access.as_deref(),
            code: code.as_deref(),
            // OIDC Core 5.4: without an access token the claims go into the ID token.
            user_claims: !rt.token && !rt.code,
        };
        let id = user_tokens::id_token(state, p, client, &grant, alongside, now).await?;
        out.push(("id_token", id));
    }
    Ok(out)
}

fn found(location: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    super::error::no_store(r.headers_mut());
    r
}

/// The authorization response at the redirect URI, by response mode, with `state` and
/// `iss` (RFC 9207).
pub fn respond(
    redirect_uri: &str,
    mode: ResponseMode,
    mut params: Vec<(&'static str, String)>,
    state: Option<&str>,
    iss: &str,
) -> Response {
    if let Some(s) = state {
        params.push(("state", s.to_owned()));
    }
    params.push(("iss", iss.to_owned()));
    match mode {
        ResponseMode::Query => {
            let mut url = match url::Url::parse(redirect_uri) {
                Ok(u) => u,
                Err(_) => return StatusCode::BAD_REQUEST.into_response(),
            };
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in &params {
                    q.append_pair(k, v);
                }
            }
            found(url.as_str())
        }
        ResponseMode::Fragment => {
            let mut fragment = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &params {
                fragment.append_pair(k, v);
            }
            let base = redirect_uri.split('#').next().unwrap_or(redirect_uri);
            found(&format!("{base}#{}", fragment.finish()))
        }
        ResponseMode::FormPost => {
            let list: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            render(
                "form_post.html",
                StatusCode::OK,
                serde_json::json!({"action": redirect_uri, "params": list}),
            )
        }
    }
}

/// A protocol error for a checked request, to go back to its redirect URI.
pub fn to_redirect(request: &AuthorizeRequest, error: OAuthError) -> RedirectError {
    RedirectError {
        error,
        redirect_uri: request.redirect_uri.clone(),
        mode: request.response_mode,
        state: request.state.clone(),
    }
}

/// An error response at the client's redirect URI (RFC 6749 section 4.1.2.1).
pub fn redirect_error(state: &AppState, e: RedirectError) -> Response {
    let params = vec![
        ("error", e.error.code.as_str().to_owned()),
        ("error_description", e.error.description.into_owned()),
    ];
    respond(
        &e.redirect_uri,
        e.mode,
        params,
        e.state.as_deref(),
        state.config.issuer.as_str(),
    )
}
