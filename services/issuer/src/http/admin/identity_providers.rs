//! `/admin/v1/IdentityProvider`: upstream OpenID Connect providers users sign in through
//! (issue 16). The `clientSecret` is write-only: sealed before it enters an event (see
//! [`crate::sealer::ConfigSealer`]), never read back (`hasClientSecret` says whether
//! one is stored), shown as `[redacted]` in the audit trail. A `PUT` without
//! `clientSecret` keeps the stored one; `"clientSecret": null` removes it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use signet_core::commands::Command;
use signet_core::identity_provider::{
    IdentityProviderInput, IdentityProviderView, ProviderType, UpstreamAuthMethod,
};
use signet_core::validation::ValidationErrors;
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
            "/IdentityProvider",
            get(list_providers)
                .post(create_provider)
                .put(replace_provider),
        )
        .route(
            "/IdentityProvider/{scheme}",
            get(get_provider).delete(delete_provider),
        )
}

/// This resource's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(list_providers, create_provider, replace_provider, get_provider, delete_provider),
    components(schemas(
        IdentityProviderInput,
        IdentityProviderView,
        ProviderType,
        UpstreamAuthMethod
    )),
    tags((name = "IdentityProvider", description = "Upstream OpenID Connect providers users sign in through (Sign in with ...), offered on the login page to the clients whose identityProviderRestrictions allow them. Register {issuer}/federation/{scheme}/callback as the redirect URI at the provider."))
)]
pub struct Api;

/// The body as a provider: a JSON object, parsed with field-naming errors.
fn parse_input(body: &AdminBody) -> Result<IdentityProviderInput, ApiError> {
    if !matches!(
        body.parse::<serde_json::Value>()?,
        serde_json::Value::Object(_)
    ) {
        return Err(ApiError::Invalid(ValidationErrors::single(
            "body",
            "must be a JSON object",
        )));
    }
    body.parse()
}

/// A domain belongs to one provider: one another provider serves is refused, naming it.
fn domains_free(state: &AppState, input: &IdentityProviderInput) -> Result<(), ApiError> {
    let p = state.projection.load();
    for (i, d) in input.domains.iter().enumerate() {
        let d = d.to_ascii_lowercase();
        if let Some(other) = p
            .identity_providers()
            .find(|o| o.scheme != input.scheme && o.domains.contains(&d))
        {
            return Err(ApiError::Invalid(ValidationErrors::single(
                format!("domains[{i}]"),
                format!("is already served by identity provider {:?}", other.scheme),
            )));
        }
    }
    Ok(())
}

fn view(state: &AppState, scheme: &str) -> Result<IdentityProviderView, ApiError> {
    state
        .projection
        .load()
        .identity_provider(scheme)
        .map(|p| p.view())
        .ok_or_else(|| ApiError::NotFound(format!("identity provider {scheme:?} does not exist")))
}

/// Seals the body's client secret for `scheme`.
fn seal(state: &AppState, scheme: &str, secret: &str) -> Result<String, ApiError> {
    state
        .config_sealer()
        .and_then(|s| s.seal_idp_secret(scheme, secret))
        .ok_or_else(|| ApiError::Internal("the client secret could not be sealed".into()))
}

/// Lists every identity provider (never the client secrets).
#[utoipa::path(
    get,
    path = "/admin/v1/IdentityProvider",
    tag = "IdentityProvider",
    responses(
        (status = 200, description = "Every identity provider.", body = [IdentityProviderView]),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
async fn list_providers(State(state): State<AppState>) -> Json<Vec<IdentityProviderView>> {
    Json(
        state
            .projection
            .load()
            .identity_providers()
            .map(|p| p.view())
            .collect(),
    )
}

/// Reads one identity provider (never its client secret).
#[utoipa::path(
    get,
    path = "/admin/v1/IdentityProvider/{scheme}",
    tag = "IdentityProvider",
    params(("scheme" = String, Path, description = "The provider's scheme.")),
    responses(
        (status = 200, description = "The provider.", body = IdentityProviderView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
async fn get_provider(
    State(state): State<AppState>,
    Path(scheme): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(view(&state, &scheme)?).into_response())
}

/// Creates an identity provider.
#[utoipa::path(
    post,
    path = "/admin/v1/IdentityProvider",
    tag = "IdentityProvider",
    request_body(content = IdentityProviderInput, content_type = "application/json"),
    responses(
        (status = 201, description = "The provider was created; the body is it as read back.", body = IdentityProviderView, headers(("Location" = String, description = "The URL of the new object."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
async fn create_provider(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: AdminBody,
) -> Result<Response, ApiError> {
    let input = parse_input(&body)?;
    let scheme = input.scheme.clone();
    // Checked before sealing: a bad body is refused naming its fields.
    input.clone().into_record(None)?;
    domains_free(&state, &input)?;
    // The provider's one secret: an oidc/oauth2 client secret or an ldap bind password
    // (each type refuses the other's field).
    let sealed = match input
        .client_secret
        .as_ref()
        .or(input.bind_password.as_ref())
    {
        Some(s) => Some(seal(&state, &scheme, s)?),
        None => None,
    };
    let record = input.into_record(sealed)?;
    execute(
        &state,
        &actor,
        Command::CreateIdentityProvider(Box::new(record)),
    )
    .await?;
    Ok(created(
        format!("/admin/v1/IdentityProvider/{}", path_segment(&scheme)),
        view(&state, &scheme)?,
    ))
}

/// Replaces the identity provider with the body's `scheme`. Without `clientSecret` (or an
/// ldap provider's `bindPassword`) the stored secret stays; `"clientSecret": null` removes
/// it.
#[utoipa::path(
    put,
    path = "/admin/v1/IdentityProvider",
    tag = "IdentityProvider",
    request_body(content = IdentityProviderInput, content_type = "application/json"),
    responses(
        (status = 200, description = "The provider as read back.", body = IdentityProviderView),
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
async fn replace_provider(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: AdminBody,
) -> Result<Response, ApiError> {
    let input = parse_input(&body)?;
    let scheme = input.scheme.clone();
    let stored = state
        .projection
        .load()
        .identity_provider(&scheme)
        .map(|p| p.client_secret_sealed.clone());
    // The stored secret (client secret or bind password) stays unless the body names
    // `clientSecret` or `bindPassword`.
    let named = body.has_member("clientSecret")? || body.has_member("bindPassword")?;
    let new_secret = input
        .client_secret
        .as_ref()
        .or(input.bind_password.as_ref());
    let kept = match new_secret {
        None if !named => stored.clone().flatten(),
        _ => None,
    };
    input.clone().into_record(kept.clone())?;
    domains_free(&state, &input)?;
    if stored.is_none() {
        return Err(ApiError::NotFound(format!(
            "identity provider {scheme:?} does not exist"
        )));
    }
    let sealed = match new_secret {
        Some(s) => Some(seal(&state, &scheme, s)?),
        None => kept,
    };
    let record = input.into_record(sealed)?;
    execute(
        &state,
        &actor,
        Command::ReplaceIdentityProvider(Box::new(record)),
    )
    .await?;
    Ok(Json(view(&state, &scheme)?).into_response())
}

/// Deletes an identity provider: it is offered no more. Clients naming it in
/// `identityProviderRestrictions` keep the name; users it created stay, with their links.
#[utoipa::path(
    delete,
    path = "/admin/v1/IdentityProvider/{scheme}",
    tag = "IdentityProvider",
    params(("scheme" = String, Path, description = "The provider's scheme.")),
    responses(
        (status = 204, description = "The provider was deleted."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
async fn delete_provider(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(scheme): Path<String>,
) -> Result<StatusCode, ApiError> {
    execute(&state, &actor, Command::DeleteIdentityProvider(scheme)).await?;
    Ok(StatusCode::NO_CONTENT)
}
