//! `/admin/v1/InitialAccessToken`: the tokens that let applications register themselves at
//! `/oauth2/register` (RFC 7591 section 3), with the policy the registered clients stay
//! under. The value (`<id>.<secret>`) is answered once, at creation; events and the
//! projection hold only its SHA-256, and reads never return it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Serialize;
use signet_core::commands::Command;
use signet_core::registration::{InitialAccessTokenInput, InitialAccessTokenView};
use signet_core::secret::SecretDigest;
use utoipa::{OpenApi, ToSchema};

use super::common::{created, execute, path_segment, Actor, AdminBody};
#[allow(unused_imports)] // the OpenAPI annotations name them
use super::common::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use crate::http::browser::random_token;
use crate::http::error::ApiError;
use crate::http::token::now;
use crate::state::AppState;

/// The routes, relative to `/admin/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/InitialAccessToken",
            get(list_tokens).post(create_token).put(replace_token),
        )
        .route(
            "/InitialAccessToken/{id}",
            get(get_token).delete(delete_token),
        )
}

/// This resource's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(list_tokens, create_token, replace_token, get_token, delete_token),
    components(schemas(InitialAccessTokenInput, InitialAccessTokenView, CreatedToken, signet_core::registration::RegistrationPolicy)),
    tags((name = "InitialAccessToken", description = "Tokens that let applications register themselves at /oauth2/register (RFC 7591), with the policy their clients stay under."))
)]
pub struct Api;

/// A new initial access token: the token as read back, plus its value, shown only here.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    #[serde(flatten)]
    view: InitialAccessTokenView,
    /// The bearer value for `Authorization: Bearer` at `/oauth2/register`. Shown once:
    /// only its hash is stored.
    token: String,
}

/// Splits a presented value into the token id and checks it against the stored hash in
/// constant time.
pub fn token_id(value: &str) -> Option<&str> {
    value.rsplit_once('.').map(|(id, _)| id)
}

/// The SHA-256 of a token value, as stored.
pub fn token_hash(value: &str) -> String {
    SecretDigest::of(value).to_b64url()
}

/// The body as a token: a JSON object (serde would also take a struct from an array, and
/// every member has a default), parsed with field-naming errors.
fn parse_input(body: &AdminBody) -> Result<InitialAccessTokenInput, ApiError> {
    if !matches!(
        body.parse::<serde_json::Value>()?,
        serde_json::Value::Object(_)
    ) {
        return Err(ApiError::Invalid(
            signet_core::validation::ValidationErrors::single("body", "must be a JSON object"),
        ));
    }
    body.parse()
}

fn view(state: &AppState, id: &str) -> Result<InitialAccessTokenView, ApiError> {
    state
        .projection
        .load()
        .initial_access_token(id)
        .map(|e| e.token.view(e.uses))
        .ok_or_else(|| ApiError::NotFound(format!("initial access token {id:?} does not exist")))
}

/// Lists every initial access token (never the values).
#[utoipa::path(
    get,
    path = "/admin/v1/InitialAccessToken",
    tag = "InitialAccessToken",
    responses(
        (status = 200, description = "Every initial access token.", body = [InitialAccessTokenView]),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
async fn list_tokens(State(state): State<AppState>) -> Json<Vec<InitialAccessTokenView>> {
    Json(
        state
            .projection
            .load()
            .initial_access_tokens()
            .map(|e| e.token.view(e.uses))
            .collect(),
    )
}

/// Reads one initial access token (never its value).
#[utoipa::path(
    get,
    path = "/admin/v1/InitialAccessToken/{id}",
    tag = "InitialAccessToken",
    params(("id" = String, Path, description = "The token id.")),
    responses(
        (status = 200, description = "The token.", body = InitialAccessTokenView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
async fn get_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(view(&state, &id)?).into_response())
}

/// Creates an initial access token; the answer carries its value, the only time it is shown.
#[utoipa::path(
    post,
    path = "/admin/v1/InitialAccessToken",
    tag = "InitialAccessToken",
    request_body(content = InitialAccessTokenInput, content_type = "application/json"),
    responses(
        (status = 201, description = "The token was created; the body is it as read back plus its value.", body = CreatedToken, headers(("Location" = String, description = "The URL of the new object."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
async fn create_token(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: AdminBody,
) -> Result<Response, ApiError> {
    let input = parse_input(&body)?;
    let id = match &input.id {
        Some(id) => id.clone(),
        None => random_token()?.chars().take(16).collect(),
    };
    // The secret part is 256 random bits; the id in front lets the endpoint find the
    // record without comparing against every token.
    let value = format!("{id}.{}", random_token()?);
    let record = input.into_record(id.clone(), token_hash(&value), now())?;
    execute(
        &state,
        &actor,
        Command::CreateInitialAccessToken(Box::new(record)),
    )
    .await?;
    let mut resp = created(
        format!("/admin/v1/InitialAccessToken/{}", path_segment(&id)),
        CreatedToken {
            view: view(&state, &id)?,
            token: value,
        },
    );
    crate::http::error::no_store(resp.headers_mut());
    Ok(resp)
}

/// Replaces the token with the body's `id`: description, expiry (`lifetime` counts from
/// its creation), `maxUses` and policy. Its value, creation time and uses stay; clients it
/// registered keep the policy they were registered under.
#[utoipa::path(
    put,
    path = "/admin/v1/InitialAccessToken",
    tag = "InitialAccessToken",
    request_body(content = InitialAccessTokenInput, content_type = "application/json"),
    responses(
        (status = 200, description = "The token as read back (without its value).", body = InitialAccessTokenView),
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
async fn replace_token(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: AdminBody,
) -> Result<Response, ApiError> {
    let input = parse_input(&body)?;
    let Some(id) = input.id.clone() else {
        return Err(ApiError::Invalid(
            signet_core::validation::ValidationErrors::single(
                "id",
                "is required: it names the token to replace",
            ),
        ));
    };
    let (sha256, created_at) = {
        let p = state.projection.load();
        let existing = p.initial_access_token(&id).ok_or_else(|| {
            ApiError::NotFound(format!("initial access token {id:?} does not exist"))
        })?;
        (existing.token.sha256.clone(), existing.token.created_at)
    };
    let record = input.into_record_at(id.clone(), sha256, created_at, now())?;
    execute(
        &state,
        &actor,
        Command::ReplaceInitialAccessToken(Box::new(record)),
    )
    .await?;
    Ok(Json(view(&state, &id)?).into_response())
}

/// Deletes an initial access token: it registers nothing more (clients it registered stay).
#[utoipa::path(
    delete,
    path = "/admin/v1/InitialAccessToken/{id}",
    tag = "InitialAccessToken",
    params(("id" = String, Path, description = "The token id.")),
    responses(
        (status = 204, description = "The token was deleted."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
async fn delete_token(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    execute(&state, &actor, Command::DeleteInitialAccessToken(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
