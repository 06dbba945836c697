//! `/admin/v1/User/{sub}/Session`: a user's live SSO sessions (where, when, which apps)
//! and ending them. `GET /User/{sub}/Session` lists them, newest first;
//! `GET /User/{sub}/Session/{sid}` reads one; `DELETE` ends one, or all of them without a
//! `{sid}`. Ending goes through [`crate::http::sessions::end`], as every other way a
//! session ends: a session revocation every node and resource server applies, then
//! everything tied to the session. An unknown user, or a `sid` that is not one of this
//! user's live sessions, is 404.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use utoipa::OpenApi;

use super::common::Actor;
#[allow(unused_imports)] // the OpenAPI annotations name them
use super::common::{Forbidden, NotFound, Unauthorized, Unavailable};
use crate::http::error::ApiError;
use crate::http::sessions::{self, SessionClient, SessionView};
use crate::http::token::now;
use crate::state::AppState;

/// The routes, relative to `/admin/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/User/{sub}/Session",
            get(list_sessions).delete(end_all_sessions),
        )
        .route(
            "/User/{sub}/Session/{sid}",
            get(get_session).delete(end_session),
        )
}

/// This resource's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(list_sessions, get_session, end_session, end_all_sessions),
    components(schemas(SessionView, SessionClient)),
    tags((name = "Session", description = "A user's live single sign-on sessions (where, when, which apps), and ending them: ending one revokes the access tokens issued in it at every node and resource server, deletes its codes and the refresh tokens of clients with `coordinateLifetimeWithUserSession`, and signs the browser out."))
)]
pub struct Api;

/// The existing user of the path (404 if none).
async fn user_of(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let Ok(Path(sub)) = path else {
        return Err(ApiError::NotFound("no user has this sub".into()));
    };
    match state.users.by_sub(&sub).await? {
        Some(_) => Ok(sub),
        None => Err(ApiError::NotFound(format!("user {sub:?} does not exist"))),
    }
}

/// The user's live session of the path (404 if the user or the session is unknown, or the
/// session is another user's).
async fn session_of(
    state: &AppState,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<sessions::Session, ApiError> {
    let Ok(Path((sub, sid))) = path else {
        return Err(ApiError::NotFound("no such session".into()));
    };
    if state.users.by_sub(&sub).await?.is_none() {
        return Err(ApiError::NotFound(format!("user {sub:?} does not exist")));
    }
    sessions::of_user_by_sid(state, &sub, &sid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {sub:?} has no live session {sid:?}")))
}

/// Lists a user's live sessions, newest first.
#[utoipa::path(
    get,
    path = "/admin/v1/User/{sub}/Session",
    tag = "Session",
    params(("sub" = String, Path, description = "The user's `sub`.")),
    responses(
        (status = 200, description = "The user's live sessions, newest first.", body = [SessionView]),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
async fn list_sessions(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let sub = user_of(&state, path).await?;
    let mut out = Vec::new();
    for s in sessions::of_user(&state, &sub).await? {
        out.push(sessions::view(&state, &s).await?);
    }
    Ok(Json(out))
}

/// Reads one of a user's live sessions.
#[utoipa::path(
    get,
    path = "/admin/v1/User/{sub}/Session/{sid}",
    tag = "Session",
    params(
        ("sub" = String, Path, description = "The user's `sub`."),
        ("sid" = String, Path, description = "The session id (`sid`)."),
    ),
    responses(
        (status = 200, description = "The session.", body = SessionView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
async fn get_session(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<SessionView>, ApiError> {
    let session = session_of(&state, path).await?;
    Ok(Json(sessions::view(&state, &session).await?))
}

/// Ends one of a user's sessions.
#[utoipa::path(
    delete,
    path = "/admin/v1/User/{sub}/Session/{sid}",
    tag = "Session",
    params(
        ("sub" = String, Path, description = "The user's `sub`."),
        ("sid" = String, Path, description = "The session id (`sid`)."),
    ),
    responses(
        (status = 204, description = "The session ended."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
async fn end_session(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let session = session_of(&state, path).await?;
    let (sub, sid) = (session.sub.clone(), session.sid.clone());
    sessions::end(&state, session, now()).await?;
    tracing::info!(%sub, %sid, actor = %actor.0, "session ended by an administrator");
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every live session of a user (signs them out everywhere).
#[utoipa::path(
    delete,
    path = "/admin/v1/User/{sub}/Session",
    tag = "Session",
    params(("sub" = String, Path, description = "The user's `sub`.")),
    responses(
        (status = 204, description = "Every session of the user ended (none is fine)."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
async fn end_all_sessions(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let sub = user_of(&state, path).await?;
    let ended = sessions::end_all_of_user(&state, &sub, None, now()).await?;
    tracing::info!(%sub, ended, actor = %actor.0, "sessions ended by an administrator");
    Ok(StatusCode::NO_CONTENT)
}
