//! `POST /admin/v1/revocations`: revoke a token by `jti`, a refresh-token family, a sign-in
//! session, or everything of a subject or a client issued before a time. Each becomes a
//! revocation event (durably recorded before the answer) that every node and every
//! subscribed resource server applies; the short-lived state it covers (refresh families,
//! sessions, codes) is deleted from the store too.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use signet_core::validation::{from_json, ValidationErrors};
use signet_store::StoreError;
use signet_verify::revocation::{Revocation, Target};
use utoipa::OpenApi;

use super::common::{method_not_allowed, Actor, AdminBody};
#[allow(unused_imports)] // the OpenAPI annotations name them
use super::common::{
    BadRequest, Forbidden, PayloadTooLarge, Unauthorized, Unavailable, UnsupportedMediaType,
};
use crate::http::error::ApiError;
use crate::http::token::now;
use crate::state::AppState;

/// The routes, relative to `/admin/v1`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/revocations", post(revoke).fallback(method_not_allowed))
}

/// This resource's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(revoke))]
pub struct Api;

/// What to revoke: exactly one of `jti`, `family`, `sid`, `sub`, `clientId`.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RevocationRequest {
    /// One access token, by its `jti`.
    #[serde(default)]
    pub jti: Option<String>,
    /// A refresh-token family (the part of a refresh token before the dot).
    #[serde(default)]
    pub family: Option<String>,
    /// A sign-in session (`sid`).
    #[serde(default)]
    pub sid: Option<String>,
    /// Every token of a subject issued at or before `issuedBefore`.
    #[serde(default)]
    pub sub: Option<String>,
    /// Every token of a client issued at or before `issuedBefore`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Unix seconds; for `sub` and `clientId` (default: now).
    #[serde(default)]
    pub issued_before: Option<i64>,
}

/// The revocation as recorded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RevocationView {
    /// `token`, `family`, `session`, `subject` or `client`.
    pub kind: &'static str,
    /// When the revocation can be forgotten (every token it affects has expired).
    pub exp: i64,
    pub at: i64,
}

fn invalid(field: &str, rule: &str) -> ApiError {
    ApiError::Invalid(ValidationErrors::single(field, rule))
}

fn id_ok(field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 512 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(field, "must be 1 to 512 visible ASCII characters"));
    }
    Ok(())
}

fn store_err(e: StoreError) -> ApiError {
    tracing::warn!(error = %e, "store failed while revoking");
    ApiError::Unavailable("the short-lived state store is unavailable; retry".into())
}

/// Revokes tokens.
#[utoipa::path(
    post,
    path = "/admin/v1/revocations",
    tag = "Revocation",
    request_body(content = RevocationRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Recorded and published; every node refuses the tokens it covers.", body = RevocationView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
async fn revoke(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: AdminBody,
) -> Result<Response, ApiError> {
    let req: RevocationRequest = from_json(&body.0)?;
    let now = now();
    let given = [
        req.jti.is_some(),
        req.family.is_some(),
        req.sid.is_some(),
        req.sub.is_some(),
        req.client_id.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        return Err(invalid(
            "jti",
            "give exactly one of jti, family, sid, sub, clientId",
        ));
    }
    if req.issued_before.is_some() && req.sub.is_none() && req.client_id.is_none() {
        return Err(invalid("issuedBefore", "applies only to sub and clientId"));
    }
    let issued_before = req.issued_before.unwrap_or(now);
    if !(0..=now + 365 * 24 * 3600).contains(&issued_before) {
        return Err(invalid(
            "issuedBefore",
            "must be Unix seconds, not negative, at most a year from now",
        ));
    }
    // Every token a revocation may cover expires within the longest lifetime any client
    // has; the entry is kept that long.
    let longest = state
        .projection
        .load()
        .clients()
        .map(|c| {
            i64::from(
                c.access_token_lifetime
                    .max(c.absolute_refresh_token_lifetime)
                    .max(c.identity_token_lifetime),
            )
        })
        .max()
        .unwrap_or(3600);
    let exp = now.max(issued_before) + longest;
    let target = if let Some(jti) = req.jti {
        id_ok("jti", &jti)?;
        Target::Token { jti }
    } else if let Some(family) = req.family {
        id_ok("family", &family)?;
        state
            .store
            .delete_family(&family)
            .await
            .map_err(store_err)?;
        Target::Family { family }
    } else if let Some(sid) = req.sid {
        id_ok("sid", &sid)?;
        // A live session ends the way every session ends (its participants learn of it).
        if let Some(session) = crate::http::sessions::by_sid(&state, &sid).await? {
            crate::http::sessions::end(&state, session, now).await?;
        }
        state
            .store
            .delete_by_session(&sid)
            .await
            .map_err(store_err)?;
        Target::Session { sid }
    } else if let Some(sub) = req.sub {
        id_ok("sub", &sub)?;
        // The subject's live sessions end the way every session ends.
        crate::http::sessions::end_all_of_user(&state, &sub, None, now).await?;
        state
            .store
            .delete_by_subject(&sub)
            .await
            .map_err(store_err)?;
        Target::Subject { sub, issued_before }
    } else {
        let client_id = req.client_id.unwrap_or_default();
        id_ok("clientId", &client_id)?;
        Target::Client {
            client_id,
            issued_before,
        }
    };
    let r = Revocation {
        target,
        exp,
        at: now,
    };
    let view = RevocationView {
        kind: r.target.kind(),
        exp: r.exp,
        at: r.at,
    };
    state.revocations.revoke(r).await.map_err(|e| {
        tracing::warn!(error = %e, "could not publish a revocation");
        ApiError::Unavailable("the revocation could not be recorded; retry".into())
    })?;
    tracing::info!(kind = view.kind, actor = %actor.0, "revoked");
    Ok((StatusCode::CREATED, Json(view)).into_response())
}
