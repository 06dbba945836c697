//! `/admin/v1/Key`: the signing keys (list, rotate, import, revoke), which the key manager
//! changes ([`signet_keymanager::KeyAdmin`]) and this node reads from its projection.
//! Public halves only: a private key is never shown, echoed or logged.

use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use signet_core::keys::{KeyState, PublicKeyRecord};
use signet_core::{Algorithm, UnixTime};
use utoipa::OpenApi;

use super::common::{created, log_error, path_segment, Actor, AdminBody, APPLY_PATIENCE};
#[allow(unused_imports)] // the OpenAPI annotations name them
use super::common::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use crate::http::error::ApiError;
use crate::state::{AppState, WaitError};

/// The routes, relative to `/admin/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/Key", get(list_keys))
        .route("/Key/rotate", post(rotate_key))
        .route("/Key/import", post(import_key))
        .route("/Key/{kid}", get(get_key).delete(revoke_key))
}

/// This resource's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(list_keys, rotate_key, import_key, get_key, revoke_key),
    tags((name = "Key", description = "The signing keys of tokens: list them, rotate or import the active key of an algorithm, revoke a key. Public halves only."))
)]
pub struct Api;

/// A signing key as the admin API shows it: its public half and its lifecycle, never the
/// private key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Key)]
pub struct KeyView {
    /// The key id (`kid` in token headers and the JWKS).
    #[schema(example = "es256-3q2L8sXv0a1bZ9cD")]
    kid: String,
    /// The algorithm the key signs with.
    #[schema(value_type = signet_core::client::AlgorithmSchema)]
    alg: Algorithm,
    /// `published`: in the JWKS, not yet signing; `active`: signs new tokens of its
    /// algorithm; `retired`: no longer signs, stays in the JWKS until the tokens it signed
    /// expired. Removed and revoked keys are not listed.
    #[schema(value_type = KeyStateSchema)]
    state: KeyState,
    /// When the key was published, in seconds since the Unix epoch.
    #[schema(value_type = i64)]
    published_at: UnixTime,
    /// When the key became active, in seconds since the Unix epoch; null: never.
    #[schema(value_type = Option<i64>)]
    activated_at: Option<UnixTime>,
    /// When the key retired, in seconds since the Unix epoch; null: not retired.
    #[schema(value_type = Option<i64>)]
    retired_at: Option<UnixTime>,
    /// The public key as a JWK (RFC 7517): `kty`, `kid`, `alg`, `use` and `n`/`e` (RSA) or
    /// `crv`/`x`/`y` (EC, OKP), exactly as in the JWKS.
    #[schema(value_type = Object)]
    jwk: signet_jose::Jwk,
}

/// The schema of [`KeyState`] in the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[schema(as = KeyState, description = "The lifecycle state of a signing key.")]
#[allow(dead_code)] // a schema only
#[allow(non_camel_case_types)]
pub enum KeyStateSchema {
    published,
    active,
    retired,
}

impl From<&PublicKeyRecord> for KeyView {
    fn from(r: &PublicKeyRecord) -> Self {
        KeyView {
            kid: r.jwk.kid.clone(),
            alg: r.jwk.alg,
            state: r.state,
            published_at: r.published_at,
            activated_at: r.activated_at,
            retired_at: r.retired_at,
            jwk: r.jwk.clone(),
        }
    }
}

/// The body of `POST /admin/v1/Key/rotate`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RotateKey {
    /// The algorithm whose active key is replaced by a newly generated one.
    #[schema(value_type = signet_core::client::AlgorithmSchema)]
    alg: Algorithm,
}

/// The body of `POST /admin/v1/Key/import`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImportKey {
    /// The algorithm the imported key signs with; it becomes the active key of it.
    #[schema(value_type = signet_core::client::AlgorithmSchema)]
    alg: Algorithm,
    /// The private key as one PEM document: `PRIVATE KEY` (PKCS#8, every algorithm),
    /// `RSA PRIVATE KEY` (PKCS#1, RS256 and PS256) or `EC PRIVATE KEY` (SEC1, ES256). It is
    /// sealed by the key manager and never shown again, echoed or logged.
    #[schema(
        example = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA...\n-----END PRIVATE KEY-----\n"
    )]
    pem: String,
}

/// What a rotate or an import created.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = NewKey)]
pub struct NewKeyView {
    /// The id of the new key, now active.
    #[schema(example = "es256-3q2L8sXv0a1bZ9cD")]
    kid: String,
    /// Its algorithm.
    #[schema(value_type = signet_core::client::AlgorithmSchema)]
    alg: Algorithm,
}

impl std::fmt::Debug for ImportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportKey")
            .field("alg", &self.alg)
            .field("pem", &"..")
            .finish()
    }
}

fn key_view(state: &AppState, kid: &str) -> Result<KeyView, ApiError> {
    state
        .projection
        .load()
        .key(kid)
        .map(KeyView::from)
        .ok_or_else(|| ApiError::NotFound(format!("signing key {kid:?} does not exist")))
}

/// The key administration of this node, or 503.
fn key_admin(
    state: &AppState,
) -> Result<std::sync::Arc<dyn signet_keymanager::KeyAdmin>, ApiError> {
    state.key_admin().cloned().ok_or_else(|| {
        ApiError::Unavailable(
            "key administration is not available on this node: no key manager is connected".into(),
        )
    })
}

/// Waits (at most [`APPLY_PATIENCE`]) until this node has applied the log up to its current
/// head and `done` holds. The key manager appended its events before it answered, so the
/// projection part is event-driven; whether this node signs with a new key also depends on
/// it getting the private key (from the vault, or a lease), which no event announces, so
/// that part is polled with a short, growing pause.
async fn settle(state: &AppState, done: impl Fn(&AppState) -> bool) -> Result<(), ApiError> {
    let deadline = Instant::now() + APPLY_PATIENCE;
    let late = |e: WaitError| ApiError::Unavailable(format!("the key change was made, but {e}"));
    let head = state.log.last_seq().await.map_err(log_error)?;
    state
        .wait_applied(head, APPLY_PATIENCE)
        .await
        .map_err(late)?;
    let mut pause = Duration::from_millis(2);
    loop {
        if done(state) {
            return Ok(());
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ApiError::Unavailable(format!(
                "the key change was made, but this node did not take it up within {}s",
                APPLY_PATIENCE.as_secs()
            )));
        }
        let next = state.projection.load().seq() + 1;
        let woke = tokio::time::timeout(pause.min(remaining), state.wait_applied(next, remaining));
        if let Ok(Err(WaitError::Stopped)) = woke.await {
            return Err(late(WaitError::Stopped));
        }
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Whether this node signs `alg` with the key its projection says is active.
fn signs_with_active(state: &AppState, alg: Algorithm) -> bool {
    let active = state
        .projection
        .load()
        .active_key(alg)
        .map(|k| k.jwk.kid.clone());
    let signer = state
        .signers
        .load()
        .access_token(alg)
        .map(|s| s.key().kid().to_owned());
    signer == active
}

/// Lists the signing keys (published, active and retired; public halves only).
#[utoipa::path(
    get,
    path = "/admin/v1/Key",
    tag = "Key",
    responses(
        (status = 200, description = "Every signing key in the JWKS.", body = [KeyView]),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
async fn list_keys(State(state): State<AppState>) -> Json<Vec<KeyView>> {
    Json(state.projection.load().keys().map(KeyView::from).collect())
}

/// Reads one signing key.
#[utoipa::path(
    get,
    path = "/admin/v1/Key/{kid}",
    tag = "Key",
    params(("kid" = String, Path, description = "The key id.")),
    responses(
        (status = 200, description = "The key.", body = KeyView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
async fn get_key(
    State(state): State<AppState>,
    Path(kid): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    key_view(&state, &kid).map(Json)
}

/// Answers 201 with the new key once this node's projection shows it active.
async fn created_key(
    state: &AppState,
    actor: &Actor,
    what: &str,
    new: signet_keymanager::NewKey,
) -> Result<Response, ApiError> {
    settle(state, |state| {
        let active = state
            .projection
            .load()
            .key(&new.kid)
            .is_some_and(|k| k.state == KeyState::Active);
        active && signs_with_active(state, new.alg)
    })
    .await?;
    tracing::info!(kid = %new.kid, alg = %new.alg, actor = %actor.0, "signing key {what}");
    Ok(created(
        format!("/admin/v1/Key/{}", path_segment(&new.kid)),
        NewKeyView {
            kid: new.kid,
            alg: new.alg,
        },
    ))
}

/// Rotates now: generates a new key for `alg` and makes it the active one; the previous
/// active key retires and stays in the JWKS until the tokens it signed expired.
#[utoipa::path(
    post,
    path = "/admin/v1/Key/rotate",
    tag = "Key",
    request_body(content = RotateKey, content_type = "application/json"),
    responses(
        (status = 201, description = "The new key is active on this node.", body = NewKeyView, headers(("Location" = String, description = "The URL of the new key."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
async fn rotate_key(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: AdminBody,
) -> Result<Response, ApiError> {
    let req: RotateKey = body.parse()?;
    let new = key_admin(&state)?.rotate(req.alg).await?;
    created_key(&state, &actor, "rotated", new).await
}

/// Imports a PEM private key for `alg` and makes it the active key of `alg` (the previous
/// one retires).
#[utoipa::path(
    post,
    path = "/admin/v1/Key/import",
    tag = "Key",
    request_body(content = ImportKey, content_type = "application/json"),
    responses(
        (status = 201, description = "The imported key is active on this node.", body = NewKeyView, headers(("Location" = String, description = "The URL of the new key."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
async fn import_key(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: AdminBody,
) -> Result<Response, ApiError> {
    let req: ImportKey = body.parse()?;
    // Checked here too, so that a bad PEM is a 400 whatever the key manager is; the parsed
    // key is dropped at once.
    signet_jose::SigningKey::from_pem("import-check", req.alg, &req.pem)
        .map_err(signet_keymanager::KeyError::from)?;
    let new = key_admin(&state)?.import_pem(req.alg, &req.pem).await?;
    created_key(&state, &actor, "imported", new).await
}

/// Revokes a key: it leaves the JWKS at once, so the tokens it signed stop verifying. When
/// it is the active key of its algorithm, a new key is activated first.
#[utoipa::path(
    delete,
    path = "/admin/v1/Key/{kid}",
    tag = "Key",
    params(("kid" = String, Path, description = "The key id.")),
    responses(
        (status = 204, description = "The key was revoked and is gone from this node's JWKS."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
async fn revoke_key(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(kid): Path<String>,
) -> Result<StatusCode, ApiError> {
    // A kid this node does not know once it has caught up with the log does not exist.
    settle(&state, |_| true).await?;
    let alg = key_view(&state, &kid)?.alg;
    key_admin(&state)?.revoke(&kid).await?;
    // Gone, and (when it was the active key) its successor signs.
    settle(&state, |state| {
        state.projection.load().key(&kid).is_none() && signs_with_active(state, alg)
    })
    .await?;
    tracing::info!(%kid, actor = %actor.0, "signing key revoked");
    Ok(StatusCode::NO_CONTENT)
}
