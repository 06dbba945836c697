//! The account pages. `/account/api-keys`: a signed-in user makes, lists and revokes API
//! keys — an HTML page (no JavaScript) and a JSON API under it:
//!
//! | route | what |
//! |---|---|
//! | `GET /account/api-keys` | the page (signs the user in first) |
//! | `POST /account/api-keys` | form: make a key (`name`, `scopes`, `lifetimeDays`); shown once |
//! | `POST /account/api-keys/{id}/revoke` | form: revoke a key |
//! | `GET /account/api-keys/keys` | JSON: the user's keys |
//! | `POST /account/api-keys/keys` | JSON `{name, scopes, lifetimeDays?}` → 201 with `key` (once) |
//! | `DELETE /account/api-keys/keys/{id}` | JSON: revoke (204) |
//!
//! The SSO session cookie authenticates; every write carries a CSRF token derived from the
//! session cookie (a form field, or the `X-CSRF-Token` header for JSON). A key is stored as
//! its SHA-256; revoking one publishes a revocation (its id is the `family` of the access
//! tokens exchanged for it, and the key's own `jti`).
//!
//! `/account/sessions`: the user's live sessions (where, when, which apps), ending one,
//! every other one, or all of them, under the same rules (cookie authentication, CSRF on
//! every write, cross-site writes refused). Ending goes through
//! [`super::sessions::end`], like every other way a session ends; ending this browser's
//! session clears its cookie.
//!
//! | route | what |
//! |---|---|
//! | `GET /account/sessions` | the page (signs the user in first, then returns to it) |
//! | `POST /account/sessions/{sid}/end` | form: end one session |
//! | `POST /account/sessions/end-others` | form: end every session but this one |
//! | `POST /account/sessions/end-all` | form: end every session, this one too |
//! | `GET /account/sessions/list` | JSON: the sessions, `current` marking this browser's |
//! | `DELETE /account/sessions/list[?others=true]` | JSON: end all (or all others) (204) |
//! | `DELETE /account/sessions/list/{sid}` | JSON: end one (204; 404 if not the user's) |

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use signet_core::api_key::{ApiKeyRecord, NewApiKey};
use signet_core::authorize::Params;
use signet_core::validation::ValidationErrors;
use signet_verify::revocation::{Revocation, Target};

use super::browser::{
    cookie, ct_eq, digest_key, load_session, oauth_error_page, render, set_cookie,
    start_interaction_for, AccountPage, PageParams, Session, SESSION_COOKIE,
};
use super::error::ApiError;
use super::sessions::SessionView;
use super::token::now;
use crate::state::AppState;
use crate::users::UserWriteError;

const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// The CSRF token of a session: only the holder of the session cookie can know it.
pub(super) fn csrf_of(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE).map(|c| digest_key(&format!("csrf\u{0}{c}")))
}

fn csrf_ok(headers: &HeaderMap, presented: Option<&str>) -> bool {
    match (csrf_of(headers), presented) {
        (Some(expected), Some(p)) => ct_eq(&expected, p),
        _ => false,
    }
}

/// 302 to the account page.
pub fn to_account_page(state: &AppState) -> Response {
    to_page(state, AccountPage::ApiKeys)
}

/// 302 to the account page `page`.
pub fn to_page(state: &AppState, page: AccountPage) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = header::HeaderValue::from_str(&state.config.issuer.endpoint(page.path())) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    super::error::no_store(r.headers_mut());
    r
}

fn json_error(status: StatusCode, error: &str, description: &str, field: Option<&str>) -> Response {
    let mut body = json!({"error": error, "error_description": description});
    if let Some(f) = field {
        body["field"] = f.into();
    }
    let mut r = (status, Json(body)).into_response();
    super::error::no_store(r.headers_mut());
    r
}

/// A failed key write: the admin API's error mapping (JSON with the field and rule), or the
/// same status and description on the error page.
fn write_error(state: &AppState, e: ApiError, json: bool) -> Response {
    if json {
        return e.into_response();
    }
    let description = e.to_string();
    let status = e.into_response().status();
    let code = match status {
        StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
        s if s.is_server_error() => "server_error",
        _ => "invalid_request",
    };
    super::browser::error_page(state, None, status, code, &description)
}

/// The signed-in user of this request (session alive, user enabled).
pub(super) async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Session>, Response> {
    load_session(state, headers)
        .await
        .map_err(|e| oauth_error_page(state, None, e))
}

/// Checks the scopes a key asks for: each must be an API scope that an operator made
/// available for users' keys (never the admin scope, never an identity scope).
fn check_scopes(state: &AppState, scopes: &[String]) -> Result<(), ValidationErrors> {
    let p = state.projection.load();
    for (i, s) in scopes.iter().enumerate() {
        if !signet_core::api_key::scope_allowed(&p, s) {
            return Err(ValidationErrors::single(
                format!("scopes[{i}]"),
                "is not a scope available for API keys on this server",
            ));
        }
    }
    Ok(())
}

async fn create(
    state: &AppState,
    sub: &str,
    req: NewApiKey,
) -> Result<(ApiKeyRecord, String), ApiError> {
    req.check()?;
    check_scopes(state, &req.scopes)?;
    Ok(state.users.create_api_key(sub, req, PATIENCE).await?)
}

/// Revokes a key: the event, then a revocation every node and resource server applies.
pub(crate) async fn revoke(state: &AppState, sub: &str, id: &str) -> Result<(), ApiError> {
    let record = match state.users.revoke_api_key(sub, id, PATIENCE).await {
        Err(UserWriteError::NotFound(_)) => {
            return Err(ApiError::NotFound(
                "you have no API key with this id".into(),
            ))
        }
        other => other?,
    };
    let now = now();
    let r = Revocation {
        target: Target::Family {
            family: record.id.clone(),
        },
        // Keys without an expiry are remembered for ten years.
        exp: record.expires_at.unwrap_or(now + 10 * 365 * 24 * 3600) + 24 * 3600,
        at: now,
    };
    state.revocations.revoke(r).await.map_err(|e| {
        tracing::warn!(error = %e, "could not publish an API key revocation");
        ApiError::Unavailable("the revocation could not be recorded; retry".into())
    })
}

async fn page(
    state: &AppState,
    headers: &HeaderMap,
    session: &Session,
    created: Option<(ApiKeyRecord, String)>,
    error: Option<String>,
) -> Response {
    let keys = match state.users.api_keys_of(&session.sub).await {
        Ok(k) => k,
        Err(e) => return oauth_error_page(state, None, super::user_tokens::users_unavailable(e)),
    };
    let username = match state.users.by_sub(&session.sub).await {
        Ok(Some(u)) => u.username,
        _ => session.sub.clone(),
    };
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({"id": k.id, "name": k.name, "scopes": k.scopes,
                   "expires": k.expires_at.map(|e| time::OffsetDateTime::from_unix_timestamp(e)
                       .map(|t| t.date().to_string()).unwrap_or_default())})
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    render(
        "api_keys.html",
        status,
        json!({
            "action": state.config.issuer.endpoint("/account/api-keys"),
            "sessions": state.config.issuer.endpoint("/account/sessions"),
            "csrf": csrf_of(headers),
            "username": username,
            "keys": keys,
            "created": created.as_ref().map(|(_, k)| k.clone()),
            "created_name": created.as_ref().map(|(r, _)| r.name.clone()),
            "error": error,
        }),
    )
}

/// `GET /account/api-keys`.
pub async fn page_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Err(r) => r,
        Ok(Some(session)) => page(&state, &headers, &session, None, None).await,
        Ok(None) => sign_in_first(&state, AccountPage::ApiKeys).await,
    }
}

/// To the login page, returning to the account page `page` afterwards.
pub(super) async fn sign_in_first(state: &AppState, page: AccountPage) -> Response {
    match start_interaction_for(state, None, None, page).await {
        Ok((id, cookie)) => {
            let mut r = StatusCode::FOUND.into_response();
            if let Ok(v) = header::HeaderValue::from_str(
                &state
                    .config
                    .issuer
                    .endpoint(&format!("/login?interaction={id}")),
            ) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r.headers_mut().append(header::SET_COOKIE, cookie);
            r
        }
        Err(e) => oauth_error_page(state, None, e),
    }
}

fn forged(state: &AppState) -> Response {
    super::browser::error_page(
        state,
        None,
        StatusCode::FORBIDDEN,
        "invalid_request",
        "This form was not sent by the page this server showed you (CSRF check failed).",
    )
}

/// A posted account form: its parameters and the signed-in session, after the form, session
/// and CSRF checks (each failure is the page to answer with).
pub(super) async fn posted_form(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(PageParams, Session), Response> {
    if let Some(r) = super::browser::not_a_form(state, headers) {
        return Err(r);
    }
    let params = PageParams::parse(body).map_err(|e| oauth_error_page(state, None, e))?;
    let session = match signed_in(state, headers).await? {
        None => return Err(to_account_page(state)),
        Some(s) => s,
    };
    if !csrf_ok(headers, params.get("csrf")) {
        return Err(forged(state));
    }
    Ok((params, session))
}

/// `POST /account/api-keys` (form).
pub async fn page_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (params, session) = match posted_form(&state, &headers, &body).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let lifetime_days = match params.get("lifetimeDays").map(str::parse::<u32>) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(_)) => {
            return page(
                &state,
                &headers,
                &session,
                None,
                Some("The lifetime must be a number of days.".into()),
            )
            .await
        }
    };
    let req = NewApiKey {
        name: params.get("name").unwrap_or_default().to_owned(),
        scopes: params
            .get("scopes")
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        lifetime_days,
    };
    match create(&state, &session.sub, req).await {
        Ok(created) => page(&state, &headers, &session, Some(created), None).await,
        Err(ApiError::Invalid(v)) => {
            page(&state, &headers, &session, None, Some(v.to_string())).await
        }
        Err(e) => write_error(&state, e, false),
    }
}

/// `POST /account/api-keys/{id}/revoke` (form).
pub async fn page_revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_, session) = match posted_form(&state, &headers, &body).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    match revoke(&state, &session.sub, &id).await {
        Ok(()) => {
            let mut r = to_account_page(&state);
            *r.status_mut() = StatusCode::SEE_OTHER;
            r
        }
        Err(e) => write_error(&state, e, false),
    }
}

fn unauthenticated() -> Response {
    json_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "sign in first (the session cookie authenticates this API)",
        None,
    )
}

async fn json_session(
    state: &AppState,
    headers: &HeaderMap,
    write: bool,
) -> Result<Session, Response> {
    let session = match load_session(state, headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(unauthenticated()),
        Err(e) => {
            return Err(json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                e.code.as_str(),
                &e.description,
                None,
            ))
        }
    };
    let token = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    if write && super::browser::is_cross_site(state, headers) {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "invalid_request",
            "this request was sent from another site (Origin / Sec-Fetch-Site)",
            Some("Origin"),
        ));
    }
    if write && !csrf_ok(headers, token) {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "invalid_request",
            "the X-CSRF-Token header is missing or wrong",
            Some("X-CSRF-Token"),
        ));
    }
    Ok(session)
}

/// `GET /account/api-keys/keys`.
pub async fn json_list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match json_session(&state, &headers, false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match state.users.api_keys_of(&session.sub).await {
        Ok(keys) => {
            let mut r = Json(json!({
                "keys": keys.iter().map(ApiKeyRecord::view).collect::<Vec<_>>(),
                "csrf": csrf_of(&headers),
            }))
            .into_response();
            super::error::no_store(r.headers_mut());
            r
        }
        Err(e) => write_error(&state, e.into(), true),
    }
}

/// `POST /account/api-keys/keys`.
pub async fn json_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let session = match json_session(&state, &headers, true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let req: NewApiKey = match signet_core::validation::from_json(&body) {
        Ok(r) => r,
        Err(v) => return write_error(&state, ApiError::Invalid(v), true),
    };
    match create(&state, &session.sub, req).await {
        Ok((record, key)) => {
            let mut view = record.view();
            view["key"] = key.into();
            let mut r = (StatusCode::CREATED, Json(view)).into_response();
            super::error::no_store(r.headers_mut());
            r
        }
        Err(e) => write_error(&state, e, true),
    }
}

/// `DELETE /account/api-keys/keys/{id}`.
pub async fn json_revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let session = match json_session(&state, &headers, true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match revoke(&state, &session.sub, &id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => write_error(&state, e, true),
    }
}

/// A session as its user sees it: the shared view, and whether it is this browser's.
#[derive(serde::Serialize)]
struct OwnSession {
    #[serde(flatten)]
    view: SessionView,
    current: bool,
}

/// The user's live sessions, this browser's first.
async fn own_sessions(state: &AppState, current: &Session) -> Result<Vec<OwnSession>, ApiError> {
    let mut out = Vec::new();
    for s in super::sessions::of_user(state, &current.sub).await? {
        out.push(OwnSession {
            current: s.sid == current.sid,
            view: super::sessions::view(state, &s).await?,
        });
    }
    out.sort_by_key(|s| !s.current);
    Ok(out)
}

/// Which sessions a request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending<'a> {
    One(&'a str),
    Others,
    All,
}

/// Ends what `ending` names among the user's sessions; returns whether this browser's
/// session ended (then its cookie must go). A `sid` that is not one of the user's live
/// sessions is 404.
async fn end_own(
    state: &AppState,
    current: &Session,
    ending: Ending<'_>,
) -> Result<bool, ApiError> {
    let now = now();
    match ending {
        Ending::One(sid) => {
            let Some(s) = super::sessions::of_user_by_sid(state, &current.sub, sid).await? else {
                return Err(ApiError::NotFound(
                    "you have no live session with this id".into(),
                ));
            };
            super::sessions::end(state, s, now).await?;
            Ok(sid == current.sid)
        }
        Ending::Others => {
            super::sessions::end_all_of_user(state, &current.sub, Some(&current.sid), now).await?;
            Ok(false)
        }
        Ending::All => {
            super::sessions::end_all_of_user(state, &current.sub, None, now).await?;
            Ok(true)
        }
    }
}

/// `2026-12-03 10:00 UTC`.
fn when(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}

async fn sessions_page(state: &AppState, headers: &HeaderMap, current: &Session) -> Response {
    let sessions = match own_sessions(state, current).await {
        Ok(s) => s,
        Err(e) => return write_error(state, e, false),
    };
    let username = match state.users.by_sub(&current.sub).await {
        Ok(Some(u)) => u.username,
        _ => current.sub.clone(),
    };
    let rows: Vec<Value> = sessions
        .iter()
        .map(|s| {
            json!({
                "sid": s.view.sid,
                "current": s.current,
                "signed_in": when(s.view.auth_time),
                "expires": when(s.view.expires_at),
                "address": s.view.address,
                "user_agent": s.view.user_agent,
                "clients": s.view.clients.iter().map(|c| c.client_name.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut r = render(
        "sessions.html",
        StatusCode::OK,
        json!({
            "action": state.config.issuer.endpoint("/account/sessions"),
            "api_keys": state.config.issuer.endpoint("/account/api-keys"),
            "csrf": csrf_of(headers),
            "username": username,
            "sessions": rows,
        }),
    );
    super::error::no_store(r.headers_mut());
    r
}

/// `GET /account/sessions`.
pub async fn sessions_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Err(r) => r,
        Ok(Some(session)) => sessions_page(&state, &headers, &session).await,
        Ok(None) => sign_in_first(&state, AccountPage::Sessions).await,
    }
}

/// After a form ended sessions: back to the page (303), without the cookie when this
/// browser's session ended (the page then asks to sign in again).
fn after_form(state: &AppState, signed_out: bool) -> Response {
    let mut r = to_page(state, AccountPage::Sessions);
    *r.status_mut() = StatusCode::SEE_OTHER;
    if signed_out {
        r.headers_mut()
            .append(header::SET_COOKIE, set_cookie(state, SESSION_COOKIE, "", 0));
    }
    r
}

async fn form_end(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    ending: Ending<'_>,
) -> Response {
    let (_, session) = match posted_form(state, headers, body).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    match end_own(state, &session, ending).await {
        Ok(signed_out) => after_form(state, signed_out),
        Err(e) => write_error(state, e, false),
    }
}

/// `POST /account/sessions/{sid}/end` (form).
pub async fn sessions_end_one(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    form_end(&state, &headers, &body, Ending::One(&sid)).await
}

/// `POST /account/sessions/end-others` (form).
pub async fn sessions_end_others(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    form_end(&state, &headers, &body, Ending::Others).await
}

/// `POST /account/sessions/end-all` (form).
pub async fn sessions_end_all(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    form_end(&state, &headers, &body, Ending::All).await
}

/// `GET /account/sessions/list`.
pub async fn sessions_json_list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match json_session(&state, &headers, false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match own_sessions(&state, &session).await {
        Ok(sessions) => {
            let mut r =
                Json(json!({"sessions": sessions, "csrf": csrf_of(&headers)})).into_response();
            super::error::no_store(r.headers_mut());
            r
        }
        Err(e) => write_error(&state, e, true),
    }
}

async fn json_end(state: &AppState, headers: &HeaderMap, ending: Ending<'_>) -> Response {
    let session = match json_session(state, headers, true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match end_own(state, &session, ending).await {
        Ok(signed_out) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            if signed_out {
                r.headers_mut()
                    .append(header::SET_COOKIE, set_cookie(state, SESSION_COOKIE, "", 0));
            }
            r
        }
        Err(e) => write_error(state, e, true),
    }
}

/// `DELETE /account/sessions/list[?others=true]`.
pub async fn sessions_json_end_all(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let ending = match query.get("others").map(String::as_str) {
        None | Some("false") => Ending::All,
        Some("true") => Ending::Others,
        Some(_) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "others must be true or false",
                Some("others"),
            )
        }
    };
    json_end(&state, &headers, ending).await
}

/// `DELETE /account/sessions/list/{sid}`.
pub async fn sessions_json_end_one(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Response {
    json_end(&state, &headers, Ending::One(&sid)).await
}
