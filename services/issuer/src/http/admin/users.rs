//! `/admin/v1/User` (DESIGN.md): `POST /User` creates a user (the server
//! generates its `sub`), `GET /User?username=` looks one up by username, `GET`, `PUT` and
//! `DELETE /User/{sub}` read, replace and delete one. Users live in the users projection
//! ([`crate::users`]); writes go through the event log like every configuration change and
//! answer once this node's users projection applied them. Passwords are write-only: reads
//! return [`UserView`]s, which have neither the password nor its hash.

use std::collections::HashMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use signet_core::user::{NewUser, UserReplacement, UserView};
use signet_core::validation::{from_json, ValidationErrors};
use utoipa::OpenApi;

use super::common::{publish_revocation, Actor, AdminBody, APPLY_PATIENCE, REVOCATION_MARGIN};
#[allow(unused_imports)] // the OpenAPI annotations name them
use super::common::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use crate::http::error::ApiError;
use crate::state::AppState;

/// The routes, relative to `/admin/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/User", get(find_users).post(create_user))
        .route(
            "/User/{sub}",
            get(get_user).put(replace_user).delete(delete_user),
        )
        .route("/User/{sub}/factors", axum::routing::delete(reset_factors))
        .route(
            "/User/{sub}/ExternalLogin/{scheme}",
            axum::routing::delete(delete_external_login),
        )
}

/// This resource's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        create_user,
        find_users,
        get_user,
        replace_user,
        delete_user,
        reset_factors,
        delete_external_login
    ),
    tags((name = "User", description = "People who sign in: username, password (write-only, stored as an argon2id hash), OIDC claims, enabled. The server generates each user's `sub`."))
)]
pub struct Api;

fn not_found(sub: &str) -> ApiError {
    ApiError::NotFound(format!("user {sub:?} does not exist"))
}

/// The `{sub}` of the path; one that is not UTF-8 names no user.
fn sub_of(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(sub)| sub)
        .map_err(|_| ApiError::NotFound("no user has this sub".into()))
}

fn location(sub: &str) -> String {
    let segment: String = url::form_urlencoded::byte_serialize(sub.as_bytes()).collect();
    format!("/admin/v1/User/{}", segment.replace('+', "%20"))
}

/// Creates a user; its `username` must be new (compared case-insensitively). The server
/// generates the user's `sub`.
#[utoipa::path(
    post,
    path = "/admin/v1/User",
    tag = "User",
    request_body(content = NewUser, content_type = "application/json"),
    responses(
        (status = 201, description = "The user was created; the body is it as read back, with its new `sub`.", body = UserView, headers(("Location" = String, description = "The URL of the new user."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
async fn create_user(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: AdminBody,
) -> Result<Response, ApiError> {
    let user = from_json::<NewUser>(&body.0)?.check_with(&state.config.password_policy)?;
    let record = state.users.create(&actor.0, user, APPLY_PATIENCE).await?;
    tracing::info!(sub = %record.sub, actor = %actor.0, "user created");
    let mut resp = (StatusCode::CREATED, Json(record.view())).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&location(&record.sub)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// Looks a user up by username (case-insensitive): a list of at most one user.
#[utoipa::path(
    get,
    path = "/admin/v1/User",
    tag = "User",
    params(("username" = String, Query, description = "The username to look up (case-insensitive).")),
    responses(
        (status = 200, description = "The user with this username, or an empty list.", body = [UserView]),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
async fn find_users(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<UserView>>, ApiError> {
    let Some(username) = query.get("username") else {
        return Err(ApiError::Invalid(ValidationErrors::single(
            "username",
            "the query parameter is required (listing every user is not supported)",
        )));
    };
    let found = state.users.by_username(username).await?;
    Ok(Json(found.iter().map(|r| r.view()).collect()))
}

/// Reads one user (never its password).
#[utoipa::path(
    get,
    path = "/admin/v1/User/{sub}",
    tag = "User",
    params(("sub" = String, Path, description = "The user's `sub`.")),
    responses(
        (status = 200, description = "The user.", body = UserView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
async fn get_user(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<UserView>, ApiError> {
    let sub = sub_of(path)?;
    let record = state
        .users
        .by_sub(&sub)
        .await?
        .ok_or_else(|| not_found(&sub))?;
    Ok(Json(record.view()))
}

/// Replaces a user's username, claims and `enabled`; without `password` the stored
/// password stays.
#[utoipa::path(
    put,
    path = "/admin/v1/User/{sub}",
    tag = "User",
    params(("sub" = String, Path, description = "The user's `sub`.")),
    request_body(content = UserReplacement, content_type = "application/json"),
    responses(
        (status = 200, description = "The user as read back.", body = UserView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
async fn replace_user(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: Result<Path<String>, PathRejection>,
    body: AdminBody,
) -> Result<Json<UserView>, ApiError> {
    let sub = sub_of(path)?;
    let user = from_json::<UserReplacement>(&body.0)?.check_with(&state.config.password_policy)?;
    if !user.enabled {
        if state.users.by_sub(&sub).await?.is_none() {
            return Err(not_found(&sub));
        }
        revoke_subject(&state, &sub).await?;
        // Their sessions end the way every session ends (each one's participants learn of it).
        crate::http::sessions::end_all_of_user(&state, &sub, None, crate::http::token::now())
            .await?;
        // A disabled user's API keys are revoked for good (a subject revocation ends when
        // the longest token would have expired; a key can outlive it).
        for key in state.users.api_keys_of(&sub).await? {
            crate::http::account::revoke(&state, &sub, &key.id).await?;
        }
    }
    let record = state
        .users
        .replace(&actor.0, &sub, user, APPLY_PATIENCE)
        .await?;
    tracing::info!(sub = %record.sub, actor = %actor.0, "user replaced");
    Ok(Json(record.view()))
}

/// Deletes a user, with its short-lived state (sessions, refresh tokens, consents).
#[utoipa::path(
    delete,
    path = "/admin/v1/User/{sub}",
    tag = "User",
    params(("sub" = String, Path, description = "The user's `sub`.")),
    responses(
        (status = 204, description = "The user was deleted."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
async fn delete_user(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let sub = sub_of(path)?;
    if state.users.by_sub(&sub).await?.is_none() {
        return Err(not_found(&sub));
    }
    revoke_subject(&state, &sub).await?;
    // Their sessions end the way every session ends (each one's participants learn of it).
    crate::http::sessions::end_all_of_user(&state, &sub, None, crate::http::token::now()).await?;
    // Before the event, so a store that is down fails the request with nothing deleted...
    delete_state(&state, &sub).await?;
    state.users.delete(&actor.0, &sub, APPLY_PATIENCE).await?;
    // ... and after it, for whatever the user did in between.
    if let Err(e) = delete_state(&state, &sub).await {
        tracing::warn!(error = %e, "user deleted, but removing its short-lived state again failed");
    }
    tracing::info!(%sub, actor = %actor.0, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a user's second factors (the TOTP authenticator, the recovery codes and the passkeys), for a
/// user who lost them: audited as `user.security_changed` (`factors_reset`). The user
/// signs in with the password alone until they enroll again.
#[utoipa::path(
    delete,
    path = "/admin/v1/User/{sub}/factors",
    tag = "User",
    params(("sub" = String, Path, description = "The user's `sub`.")),
    responses(
        (status = 200, description = "The factors were removed; the body is the user as read back.", body = UserView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
async fn reset_factors(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<UserView>, ApiError> {
    let sub = sub_of(path)?;
    let record = match state
        .users
        .change_security(
            &actor.0,
            &sub,
            signet_core::events::SecurityChange::FactorsReset,
            |u| {
                let mut u = u.clone();
                u.totp = None;
                u.recovery_codes.clear();
                u.passkeys.clear();
                Ok(u)
            },
            APPLY_PATIENCE,
        )
        .await
    {
        Err(crate::users::UserWriteError::NotFound(_)) => return Err(not_found(&sub)),
        other => other?,
    };
    tracing::info!(%sub, actor = %actor.0, "user's second factors reset");
    Ok(Json(record.view()))
}

/// Removes a user's link to an upstream identity of provider `scheme`: that identity can no
/// longer sign in as this user (the user stays; tokens already issued stay valid). The
/// identity cannot sign in again until the user is deleted (then a new user is made).
#[utoipa::path(
    delete,
    path = "/admin/v1/User/{sub}/ExternalLogin/{scheme}",
    tag = "User",
    params(
        ("sub" = String, Path, description = "The user's `sub`."),
        ("scheme" = String, Path, description = "The identity provider's scheme."),
    ),
    responses(
        (status = 204, description = "The link was removed."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
async fn delete_external_login(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((sub, scheme)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .users
        .remove_external_login(&actor.0, &sub, &scheme, APPLY_PATIENCE)
        .await?;
    tracing::info!(%sub, scheme, actor = %actor.0, "external login removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Disabling or deleting a user ends every token issued for them until now: a `subject`
/// revocation that every node and JWT-verifying resource server applies, kept until the
/// longest-lived token any client issues would have expired. Published before the write,
/// so a failure leaves nothing changed.
async fn revoke_subject(state: &AppState, sub: &str) -> Result<(), ApiError> {
    let now = crate::http::token::now();
    let longest = state
        .projection
        .load()
        .clients()
        .map(|c| c.longest_lifetime())
        .max()
        .unwrap_or(0)
        .max(24 * 3600);
    publish_revocation(
        state,
        signet_verify::revocation::Revocation {
            target: signet_verify::revocation::Target::Subject {
                sub: sub.to_owned(),
                issued_before: now,
            },
            exp: now + longest + REVOCATION_MARGIN,
            at: now,
        },
    )
    .await
}

async fn delete_state(state: &AppState, sub: &str) -> Result<(), ApiError> {
    match state.store.delete_by_subject(sub).await {
        Ok(_) => Ok(()),
        // A `sub` the store cannot hold (too long) has no state there.
        Err(signet_store::StoreError::InvalidKey { .. }) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot remove a user's short-lived state");
            Err(ApiError::Unavailable(
                "the short-lived state store is unavailable; the user was not deleted, retry"
                    .into(),
            ))
        }
    }
}
