//! `/admin/v1/Resource/ApiResource`: register, replace, list, read and delete API
//! resources (the APIs tokens are issued for). Secrets are write-only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use signet_core::commands::Command;
use signet_core::resource::ApiResource;
use signet_core::secret::{SecretInput, SecretView};
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
            "/Resource/ApiResource",
            get(list_resources)
                .post(create_resource)
                .put(replace_resource),
        )
        .route(
            "/Resource/ApiResource/{name}",
            get(get_resource).delete(delete_resource),
        )
}

/// This resource's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        list_resources,
        create_resource,
        replace_resource,
        get_resource,
        delete_resource
    ),
    tags((name = "ApiResource", description = "APIs that tokens are issued for."))
)]
pub struct Api;

fn resource_view(
    state: &AppState,
    name: &str,
) -> Result<ApiResource<signet_core::secret::SecretView>, ApiError> {
    state
        .projection
        .load()
        .api_resource(name)
        .map(|e| e.resource.view())
        .ok_or_else(|| ApiError::NotFound(format!("API resource {name:?} does not exist")))
}

/// Lists every API resource (secrets without their values).
#[utoipa::path(
    get,
    path = "/admin/v1/Resource/ApiResource",
    tag = "ApiResource",
    responses(
        (status = 200, description = "Every API resource.", body = [ApiResource<SecretView>]),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
async fn list_resources(
    State(state): State<AppState>,
) -> Json<Vec<ApiResource<signet_core::secret::SecretView>>> {
    Json(
        state
            .projection
            .load()
            .api_resources()
            .map(ApiResource::view)
            .collect(),
    )
}

/// Reads one API resource (secrets without their values).
#[utoipa::path(
    get,
    path = "/admin/v1/Resource/ApiResource/{name}",
    tag = "ApiResource",
    params(("name" = String, Path, description = "The name.")),
    responses(
        (status = 200, description = "The API resource.", body = ApiResource<SecretView>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
async fn get_resource(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(resource_view(&state, &name)?).into_response())
}

/// Registers an API resource; its `name` must be new and its scopes must exist.
#[utoipa::path(
    post,
    path = "/admin/v1/Resource/ApiResource",
    tag = "ApiResource",
    request_body(content = ApiResource<SecretInput>, content_type = "application/json"),
    responses(
        (status = 201, description = "The API resource was created; the body is it as read back.", body = ApiResource<SecretView>, headers(("Location" = String, description = "The URL of the new object."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
async fn create_resource(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: AdminBody,
) -> Result<Response, ApiError> {
    let r: ApiResource<SecretInput> = body.parse()?;
    let name = r.name.clone();
    execute(&state, &actor, Command::CreateApiResource(Box::new(r))).await?;
    Ok(created(
        format!("/admin/v1/Resource/ApiResource/{}", path_segment(&name)),
        resource_view(&state, &name)?,
    ))
}

/// Replaces the API resource with the body's `name`.
///
/// Without `apiSecrets` the stored secrets are kept.
#[utoipa::path(
    put,
    path = "/admin/v1/Resource/ApiResource",
    tag = "ApiResource",
    request_body(content = ApiResource<SecretInput>, content_type = "application/json"),
    responses(
        (status = 200, description = "The API resource as read back.", body = ApiResource<SecretView>),
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
async fn replace_resource(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: AdminBody,
) -> Result<Response, ApiError> {
    let r: ApiResource<SecretInput> = body.parse()?;
    let keep_secrets = !body.has_member("apiSecrets")?;
    let name = r.name.clone();
    execute(
        &state,
        &actor,
        Command::ReplaceApiResource {
            resource: Box::new(r),
            keep_secrets,
        },
    )
    .await?;
    Ok(Json(resource_view(&state, &name)?).into_response())
}

/// Deletes an API resource (the one guarding the admin API cannot be deleted: 409).
#[utoipa::path(
    delete,
    path = "/admin/v1/Resource/ApiResource/{name}",
    tag = "ApiResource",
    params(("name" = String, Path, description = "The name.")),
    responses(
        (status = 204, description = "The API resource was deleted."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
async fn delete_resource(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    execute(&state, &actor, Command::DeleteApiResource(name)).await?;
    Ok(StatusCode::NO_CONTENT)
}
