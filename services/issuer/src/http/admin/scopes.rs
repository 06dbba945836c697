//! `/admin/v1/Resource/ApiScope` and `/admin/v1/Resource/IdentityResource`: one shape
//! ([`ScopeResource`]), two kinds, the same verbs. A name is unique across both kinds.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use signet_core::commands::Command;
use signet_core::scope::{ScopeKind, ScopeResource};
use utoipa::OpenApi;

use super::common::{created, execute, path_segment, Actor, AdminBody};
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
        .route(
            "/Resource/ApiScope",
            get(list_api_scopes)
                .post(create_api_scope)
                .put(replace_api_scope),
        )
        .route(
            "/Resource/ApiScope/{name}",
            get(get_api_scope).delete(delete_api_scope),
        )
        .route(
            "/Resource/IdentityResource",
            get(list_identity)
                .post(create_identity)
                .put(replace_identity),
        )
        .route(
            "/Resource/IdentityResource/{name}",
            get(get_identity).delete(delete_identity),
        )
}

/// These resources' part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        list_api_scopes,
        create_api_scope,
        replace_api_scope,
        get_api_scope,
        delete_api_scope,
        list_identity,
        create_identity,
        replace_identity,
        get_identity,
        delete_identity
    ),
    tags(
        (name = "ApiScope", description = "Scopes of the APIs."),
        (name = "IdentityResource", description = "Scopes of user identity data (`openid`, `profile`, ...)."),
    )
)]
pub struct Api;

fn scope_view(state: &AppState, kind: ScopeKind, name: &str) -> Result<ScopeResource, ApiError> {
    state
        .projection
        .load()
        .scope(name)
        .filter(|e| e.kind == kind)
        .map(|e| (*e.scope).clone())
        .ok_or_else(|| ApiError::NotFound(format!("{} {name:?} does not exist", kind.label())))
}

fn list_scopes(state: &AppState, kind: ScopeKind) -> Json<Vec<ScopeResource>> {
    Json(state.projection.load().scopes(kind).cloned().collect())
}

async fn create_scope(
    state: AppState,
    actor: Actor,
    kind: ScopeKind,
    body: AdminBody,
) -> Result<Response, ApiError> {
    let s: ScopeResource = body.parse()?;
    let name = s.name.clone();
    execute(&state, &actor, Command::CreateScope(kind, s)).await?;
    Ok(created(
        format!(
            "/admin/v1/Resource/{}/{}",
            kind.label(),
            path_segment(&name)
        ),
        scope_view(&state, kind, &name)?,
    ))
}

async fn replace_scope(
    state: AppState,
    actor: Actor,
    kind: ScopeKind,
    body: AdminBody,
) -> Result<Response, ApiError> {
    let s: ScopeResource = body.parse()?;
    let name = s.name.clone();
    execute(&state, &actor, Command::ReplaceScope(kind, s)).await?;
    Ok(Json(scope_view(&state, kind, &name)?).into_response())
}

async fn delete_scope(
    state: AppState,
    actor: Actor,
    kind: ScopeKind,
    name: String,
) -> Result<StatusCode, ApiError> {
    execute(&state, &actor, Command::DeleteScope(kind, name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

macro_rules! scope_routes {
    (
        $kind:expr, $tag:tt, $collection:tt, $item:tt, $what:tt,
        $list:ident, $get:ident, $create:ident, $replace:ident, $delete:ident
    ) => {
        #[doc = concat!("Lists every ", $what, ".")]
        #[utoipa::path(
            get,
            path = $collection,
            tag = $tag,
            responses(
                (status = 200, description = "Every one.", body = Vec<ScopeResource>),
                (status = 401, response = Unauthorized),
                (status = 403, response = Forbidden),
            )
        )]
        async fn $list(State(state): State<AppState>) -> Json<Vec<ScopeResource>> {
            list_scopes(&state, $kind)
        }
        #[doc = concat!("Reads one ", $what, ".")]
        #[utoipa::path(
            get,
            path = $item,
            tag = $tag,
            params(("name" = String, Path, description = "The name.")),
            responses(
                (status = 200, description = "The scope.", body = ScopeResource),
                (status = 401, response = Unauthorized),
                (status = 403, response = Forbidden),
                (status = 404, response = NotFound),
            )
        )]
        async fn $get(
            State(state): State<AppState>,
            Path(name): Path<String>,
        ) -> Result<Json<ScopeResource>, ApiError> {
            scope_view(&state, $kind, &name).map(Json)
        }
        #[doc = concat!("Registers ", $what, "; its `name` must be new among API scopes and identity resources.")]
        #[utoipa::path(
            post,
            path = $collection,
            tag = $tag,
            request_body(content = ScopeResource, content_type = "application/json"),
            responses(
                (status = 201, description = "It was created; the body is it as read back.", body = ScopeResource,
                    headers(("Location" = String, description = "The URL of the new object."))),
                (status = 400, response = BadRequest),
                (status = 401, response = Unauthorized),
                (status = 403, response = Forbidden),
                (status = 409, response = Conflict),
                (status = 413, response = PayloadTooLarge),
                (status = 415, response = UnsupportedMediaType),
                (status = 503, response = Unavailable),
            )
        )]
        async fn $create(
            State(state): State<AppState>,
            Extension(actor): Extension<Actor>,
            body: AdminBody,
        ) -> Result<Response, ApiError> {
            create_scope(state, actor, $kind, body).await
        }
        #[doc = concat!("Replaces ", $what, ": the one named by the body's `name`.")]
        #[utoipa::path(
            put,
            path = $collection,
            tag = $tag,
            request_body(content = ScopeResource, content_type = "application/json"),
            responses(
                (status = 200, description = "It as read back.", body = ScopeResource),
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
        async fn $replace(
            State(state): State<AppState>,
            Extension(actor): Extension<Actor>,
            body: AdminBody,
        ) -> Result<Response, ApiError> {
            replace_scope(state, actor, $kind, body).await
        }
        #[doc = concat!("Deletes ", $what, " (not while a client or API resource uses it: 409).")]
        #[utoipa::path(
            delete,
            path = $item,
            tag = $tag,
            params(("name" = String, Path, description = "The name.")),
            responses(
                (status = 204, description = "It was deleted."),
                (status = 401, response = Unauthorized),
                (status = 403, response = Forbidden),
                (status = 404, response = NotFound),
                (status = 409, response = Conflict),
                (status = 503, response = Unavailable),
            )
        )]
        async fn $delete(
            State(state): State<AppState>,
            Extension(actor): Extension<Actor>,
            Path(name): Path<String>,
        ) -> Result<StatusCode, ApiError> {
            delete_scope(state, actor, $kind, name).await
        }
    };
}

scope_routes!(
    ScopeKind::Api,
    "ApiScope",
    "/admin/v1/Resource/ApiScope",
    "/admin/v1/Resource/ApiScope/{name}",
    "an API scope",
    list_api_scopes,
    get_api_scope,
    create_api_scope,
    replace_api_scope,
    delete_api_scope
);
scope_routes!(
    ScopeKind::Identity,
    "IdentityResource",
    "/admin/v1/Resource/IdentityResource",
    "/admin/v1/Resource/IdentityResource/{name}",
    "an identity resource",
    list_identity,
    get_identity,
    create_identity,
    replace_identity,
    delete_identity
);
