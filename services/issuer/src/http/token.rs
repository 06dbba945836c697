//! `POST /oauth2/token` (RFC 6749 section 3.2): parse the form, authenticate the client,
//! dispatch on `grant_type` to one module per grant.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use signet_core::oauth::{OAuthError, TokenGrantType};

use super::client_auth::authenticate;
use super::error::ProtocolError;
use super::form::OAuthForm;
use super::grants;
use crate::state::AppState;

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub async fn token(State(state): State<AppState>, form: OAuthForm) -> Response {
    // Grants that need the store are async; client_credentials stays on the sync path.
    if matches!(
        form.get("grant_type"),
        Some("authorization_code" | "refresh_token" | grants::token_exchange::GRANT_TYPE)
    ) {
        return store_grant(&state, &form, now())
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    match handle(&state, &form, now()) {
        Ok(grants::client_credentials::Issued::Response(r)) => r,
        Ok(grants::client_credentials::Issued::Reference {
            claims,
            lifetime,
            scope,
        }) => grants::client_credentials::store_reference(&state, &claims, lifetime, &scope)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Err(e) => e.into_response(),
    }
}

/// The grants that need the short-lived state store.
async fn store_grant(
    state: &AppState,
    form: &OAuthForm,
    now: i64,
) -> Result<Response, ProtocolError> {
    let projection = state.projection.load();
    let client = authenticate(&projection, form, now)?;
    match form.get("grant_type") {
        Some("refresh_token") => {
            grants::refresh_token::grant(state, &projection, &client, form, now).await
        }
        Some(grants::token_exchange::GRANT_TYPE) => {
            grants::token_exchange::grant(state, &projection, &client, form, now).await
        }
        _ => grants::authorization_code::grant(state, &projection, &client, form, now).await,
    }
}

fn handle(
    state: &AppState,
    form: &OAuthForm,
    now: i64,
) -> Result<grants::client_credentials::Issued, ProtocolError> {
    let projection = state.projection.load();
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    let client = authenticate(&projection, form, now)?;
    match TokenGrantType::parse(grant_type) {
        Some(TokenGrantType::ClientCredentials) => {
            grants::client_credentials::grant(state, &projection, &client, form, now)
        }
        // Handled in `token` (async: they need the store).
        Some(
            TokenGrantType::AuthorizationCode
            | TokenGrantType::RefreshToken
            | TokenGrantType::TokenExchange,
        ) => Err(OAuthError::invalid_request("this grant is handled asynchronously").into()),
        None => Err(OAuthError::unsupported_grant_type(format!(
            "grant_type {:?} is not supported",
            grant_type.chars().take(64).collect::<String>()
        ))
        .into()),
    }
}

/// The 405 answer for other methods on the token endpoint, in RFC 6749 form.
pub async fn method_not_allowed() -> Response {
    let mut r = ProtocolError::with_status(
        OAuthError::invalid_request("the token endpoint accepts only POST"),
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
    )
    .into_response();
    r.headers_mut().insert(
        axum::http::header::ALLOW,
        axum::http::HeaderValue::from_static("POST"),
    );
    r
}
