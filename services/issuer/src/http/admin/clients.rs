//! `/admin/v1/Client`: register, replace, list, read and delete clients. Secrets are
//! write-only: reads return them without their values. Deleting or disabling a client
//! revokes what it was issued ([`super::common::execute`]).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use signet_core::client::Client;
use signet_core::commands::Command;
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
            "/Client",
            get(list_clients).post(create_client).put(replace_client),
        )
        .route("/Client/{id}", get(get_client).delete(delete_client))
}

/// This resource's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(list_clients, create_client, replace_client, get_client, delete_client),
    tags((name = "Client", description = "Client applications that request tokens."))
)]
pub struct Api;

fn client_view(
    state: &AppState,
    id: &str,
) -> Result<Client<signet_core::secret::SecretView>, ApiError> {
    state
        .projection
        .load()
        .client(id)
        .map(|e| e.client.view())
        .ok_or_else(|| ApiError::NotFound(format!("client {id:?} does not exist")))
}

/// Lists every client (secrets without their values).
#[utoipa::path(
    get,
    path = "/admin/v1/Client",
    tag = "Client",
    responses(
        (status = 200, description = "Every client.", body = [Client<SecretView>]),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
async fn list_clients(
    State(state): State<AppState>,
) -> Json<Vec<Client<signet_core::secret::SecretView>>> {
    Json(
        state
            .projection
            .load()
            .clients()
            .map(Client::view)
            .collect(),
    )
}

/// Reads one client (secrets without their values).
#[utoipa::path(
    get,
    path = "/admin/v1/Client/{clientId}",
    tag = "Client",
    params(("clientId" = String, Path, description = "The client id.")),
    responses(
        (status = 200, description = "The client.", body = Client<SecretView>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
async fn get_client(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(client_view(&state, &id)?).into_response())
}

/// Registers a client; its `clientId` must be new.
#[utoipa::path(
    post,
    path = "/admin/v1/Client",
    tag = "Client",
    request_body(content = Client<SecretInput>, content_type = "application/json"),
    responses(
        (status = 201, description = "The client was created; the body is it as read back.", body = Client<SecretView>, headers(("Location" = String, description = "The URL of the new object."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
async fn create_client(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: AdminBody,
) -> Result<Response, ApiError> {
    let client: Client<SecretInput> = body.parse()?;
    let id = client.client_id.clone();
    execute(&state, &actor, Command::CreateClient(Box::new(client))).await?;
    Ok(created(
        format!("/admin/v1/Client/{}", path_segment(&id)),
        client_view(&state, &id)?,
    ))
}

/// Replaces the client with the body's `clientId`.
///
/// Without `clientSecrets` the stored secrets are kept.
#[utoipa::path(
    put,
    path = "/admin/v1/Client",
    tag = "Client",
    request_body(content = Client<SecretInput>, content_type = "application/json"),
    responses(
        (status = 200, description = "The client as read back.", body = Client<SecretView>),
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
async fn replace_client(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: AdminBody,
) -> Result<Response, ApiError> {
    let client: Client<SecretInput> = body.parse()?;
    let keep_secrets = !body.has_member("clientSecrets")?;
    let id = client.client_id.clone();
    execute(
        &state,
        &actor,
        Command::ReplaceClient {
            client: Box::new(client),
            keep_secrets,
        },
    )
    .await?;
    Ok(Json(client_view(&state, &id)?).into_response())
}

/// Deletes a client (the bootstrap admin client cannot be deleted: 409).
#[utoipa::path(
    delete,
    path = "/admin/v1/Client/{clientId}",
    tag = "Client",
    params(("clientId" = String, Path, description = "The client id.")),
    responses(
        (status = 204, description = "The client was deleted."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
async fn delete_client(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    execute(&state, &actor, Command::DeleteClient(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
