//! What every admin resource shares, and nothing of any one resource: the request's
//! [`Actor`], the JSON body extractor [`AdminBody`], [`execute`] (decide, append with the
//! expected version, wait until applied), the revocations an admin write implies, the
//! mapping of event-log errors, and the error responses of the OpenAPI document. The
//! resource modules use this one; it uses none of them.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use signet_core::commands::{decide_with, Command, Decision};
use signet_core::events::Event;
use signet_core::projection::Projection;
use signet_core::redirect_uri::is_localhost_http;
use signet_core::validation::{from_json, FieldError};
use signet_eventlog::{EventLogError, ExpectedVersion, NewEvent};
use signet_verify::revocation::{Revocation, Target};
use utoipa::{ToResponse, ToSchema};

use crate::http::error::ApiError;
use crate::http::token::now;
use crate::state::AppState;

/// Admin bodies are configuration objects; 1 MiB is plenty.
pub const MAX_ADMIN_BODY: usize = 1024 * 1024;
/// How long a write waits for this node's projection to apply it.
pub const APPLY_PATIENCE: Duration = Duration::from_secs(10);

/// The admin client that made the request (recorded as the event's actor).
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// 405 with the admin API's error body.
pub async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(serde_json::json!({"error": "method_not_allowed", "error_description": "this method is not allowed on this admin API route"})),
    )
        .into_response()
}

/// A JSON admin body: the right content type, bounded, parsed with field-naming errors.
pub struct AdminBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for AdminBody {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, _: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim();
                m.eq_ignore_ascii_case("application/json")
                    || m.to_ascii_lowercase().ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_ADMIN_BODY)
            .await
            .map_err(|_| ApiError::TooLarge(MAX_ADMIN_BODY))?;
        Ok(AdminBody(bytes))
    }
}

impl AdminBody {
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        Ok(from_json(&self.0)?)
    }

    /// Whether the top-level object has `member` (absent secrets mean "keep them").
    pub fn has_member(&self, member: &str) -> Result<bool, ApiError> {
        let v: Value = self.parse()?;
        Ok(v.get(member).is_some())
    }
}

/// `http://localhost` redirect URIs are accepted, but the name may resolve elsewhere
/// (RFC 8252 section 8.3 prefers `127.0.0.1` or `[::1]`): say so in the log.
fn warn_localhost_redirects(cmd: &Command) {
    let client = match cmd {
        Command::CreateClient(c) | Command::ReplaceClient { client: c, .. } => c,
        _ => return,
    };
    for uri in client
        .redirect_uris
        .iter()
        .chain(&client.post_logout_redirect_uris)
        .filter(|u| is_localhost_http(u))
    {
        tracing::warn!(client_id = %client.client_id, redirect_uri = %uri, "a redirect URI uses http://localhost; prefer http://127.0.0.1 or http://[::1] (RFC 8252 section 8.3)");
    }
}

/// Seals the values of a client command's `ClientSecretJwt` secrets (see
/// [`crate::sealer`]): the event keeps only the sealed form, never the plaintext.
fn seal_jwt_secrets(state: &AppState, cmd: &mut Command) -> Result<(), ApiError> {
    let client = match cmd {
        Command::CreateClient(c)
        | Command::ReplaceClient { client: c, .. }
        | Command::RegisterClient { client: c, .. }
        | Command::ReplaceRegistration { client: c, .. } => c,
        _ => return Ok(()),
    };
    let context = crate::sealer::client_secret_context(&client.client_id);
    for s in client
        .client_secrets
        .iter_mut()
        .filter(|s| s.kind == signet_core::secret::CLIENT_SECRET_JWT)
    {
        let Some(value) = s.value.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        let sealer = state.config_sealer().ok_or_else(|| {
            ApiError::Unavailable("this node cannot seal client secrets yet".into())
        })?;
        let sealed = sealer
            .seal(&context, value.as_bytes())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        s.sealed = Some(sealed);
    }
    Ok(())
}

/// Decides, appends with the expected version, and waits until this node applied it.
pub async fn execute(state: &AppState, actor: &Actor, mut cmd: Command) -> Result<Event, ApiError> {
    warn_localhost_redirects(&cmd);
    seal_jwt_secrets(state, &mut cmd)?;
    let decision = {
        let p = state.projection.load();
        let decision = decide_with(&p, &state.config.client_policy, cmd)?;
        if let Some(r) = client_revocation(&p, &decision.event, now()) {
            // Before the event: if it cannot be published, nothing is written.
            publish_revocation(state, r).await?;
        }
        decision
    };
    commit(state, actor, decision).await
}

/// Appends a decided event with its expected version (a racing writer gets
/// [`ApiError::Conflict`]) and waits until this node applied it.
pub async fn commit(
    state: &AppState,
    actor: &Actor,
    decision: Decision,
) -> Result<Event, ApiError> {
    let event = decision.event;
    let new = NewEvent {
        subject: event.subject(),
        actor: actor.0.clone(),
        at_ms: now() * 1000,
        payload: event.to_json(),
    };
    let seq = state
        .log
        .append(new, ExpectedVersion::Exact(decision.expected_version))
        .await
        .map_err(|e| match e {
            EventLogError::Conflict { .. } => ApiError::Conflict(
                "the object was changed concurrently by another write; read it again and retry"
                    .into(),
            ),
            EventLogError::Closed => ApiError::Unavailable("the node is shutting down".into()),
            EventLogError::Io(e) => {
                // The embedded log could not write (a full disk): it rolled the append back.
                metrics::counter!(crate::telemetry::EVENTLOG_ERRORS, "op" => "append").increment(1);
                tracing::warn!(error = %e, "event log append failed");
                ApiError::Unavailable(
                    "the event log could not store the write (disk full?); nothing was stored, retry".into(),
                )
            }
            EventLogError::Backend(detail) => {
                // NATS unreachable or electing a stream leader: temporary. The write may
                // or may not have been stored.
                metrics::counter!(crate::telemetry::EVENTLOG_ERRORS, "op" => "append").increment(1);
                tracing::warn!(%detail, "event log append failed");
                ApiError::Unavailable(
                    "the event log is unavailable; read the object to see whether the write was stored, then retry".into(),
                )
            }
            other => {
                metrics::counter!(crate::telemetry::EVENTLOG_ERRORS, "op" => "append").increment(1);
                ApiError::Internal(other.to_string())
            }
        })?;
    state
        .wait_applied(seq, APPLY_PATIENCE)
        .await
        .map_err(|e| ApiError::Unavailable(format!("the write was stored, but {e}")))?;
    Ok(event)
}

/// Deleting or disabling a client ends everything it was issued: a `client` revocation
/// (every node and resource server refuses its tokens issued until now), remembered until
/// the longest-lived of them would have expired anyway.
fn client_revocation(p: &Projection, event: &Event, now: i64) -> Option<Revocation> {
    let (client_id, longest) = match event {
        Event::ClientDeleted { client_id } => (client_id, 0),
        Event::ClientReplaced(c) if !c.enabled => (&c.client_id, c.longest_lifetime()),
        _ => return None,
    };
    let existing = p.client(client_id)?;
    Some(Revocation {
        target: Target::Client {
            client_id: client_id.clone(),
            issued_before: now,
        },
        exp: now + longest.max(existing.client.longest_lifetime()) + REVOCATION_MARGIN,
        at: now,
    })
}

/// Seconds a revocation is kept past the last token it affects (clock skew, leeway).
pub const REVOCATION_MARGIN: i64 = 300;

/// Publishes a revocation that an admin write implies; a failure is a 503 with nothing
/// written.
pub async fn publish_revocation(state: &AppState, r: Revocation) -> Result<(), ApiError> {
    state.revocations.revoke(r).await.map_err(|e| {
        tracing::warn!(error = %e, "could not publish a revocation");
        ApiError::Unavailable(
            "the revocation could not be recorded; nothing was changed, retry".into(),
        )
    })
}

/// 201 with the object as read back and its `Location`.
pub fn created<T: serde::Serialize>(location: String, view: T) -> Response {
    let mut resp = (StatusCode::CREATED, Json(view)).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// One path segment, percent-encoded.
pub fn path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// An event-log read error as the admin API answers it.
pub fn log_error(e: EventLogError) -> ApiError {
    match e {
        EventLogError::Closed => ApiError::Unavailable("the node is shutting down".into()),
        EventLogError::Io(e) => {
            metrics::counter!(crate::telemetry::EVENTLOG_ERRORS, "op" => "read").increment(1);
            tracing::warn!(error = %e, "event log read failed");
            ApiError::Unavailable("the event log is unavailable; retry".into())
        }
        EventLogError::Backend(detail) => {
            metrics::counter!(crate::telemetry::EVENTLOG_ERRORS, "op" => "read").increment(1);
            tracing::warn!(%detail, "event log read failed");
            ApiError::Unavailable("the event log is unavailable; retry".into())
        }
        other => {
            metrics::counter!(crate::telemetry::EVENTLOG_ERRORS, "op" => "read").increment(1);
            ApiError::Internal(other.to_string())
        }
    }
}

/// The body of an admin API error, for every status but 400.
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)] // a schema only
pub struct ErrorBody {
    /// A code: `unauthorized`, `invalid_token`, `insufficient_scope`, `not_found`,
    /// `conflict`, `method_not_allowed`, `unsupported_media_type`, `payload_too_large`,
    /// `unavailable` or `internal_error`.
    #[schema(example = "not_found")]
    error: String,
    /// What went wrong, in words (never secrets or internal details).
    error_description: String,
}

/// The body of a 400: every rule the request body broke; `field` and `rule` repeat the first.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only
pub struct ValidationError {
    /// Always `invalid_body`.
    #[schema(example = "invalid_body")]
    error: String,
    /// The first broken rule, in words.
    error_description: String,
    /// The offending member of the first broken rule, as a JSON path (`redirectUris[1]`);
    /// `body` when the body is not JSON of the right shape at all.
    #[schema(example = "accessTokenLifetime")]
    field: String,
    /// The first broken rule.
    rule: String,
    /// Every broken rule.
    #[schema(min_items = 1)]
    errors: Vec<FieldError>,
}

/// The body is invalid: not JSON, of the wrong shape, or breaking a rule.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct BadRequest(ValidationError);

/// No bearer token, or an invalid, expired or foreign one, or one of a disabled client
/// (RFC 6750; the `WWW-Authenticate` header has the challenge).
#[derive(ToResponse)]
#[response(headers(("WWW-Authenticate" = String, description = "The Bearer challenge.")))]
#[allow(dead_code)]
pub struct Unauthorized(ErrorBody);

/// The token lacks the `signet.admin` scope.
#[derive(ToResponse)]
#[response(headers(("WWW-Authenticate" = String, description = "The Bearer challenge, error `insufficient_scope`.")))]
#[allow(dead_code)]
pub struct Forbidden(ErrorBody);

/// No such object.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct NotFound(ErrorBody);

/// The object exists already, is still in use or protected, or was changed by a racing
/// write (read it again and retry).
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct Conflict(ErrorBody);

/// The body exceeds 1 MiB.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct PayloadTooLarge(ErrorBody);

/// The body is not JSON (`Content-Type: application/json` or `*+json`).
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct UnsupportedMediaType(ErrorBody);

/// The node is shutting down, a stored write was not applied in time, (users) the users
/// projection store or the short-lived state store is unavailable, or (signing keys) the
/// key manager is not available or did not answer.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct Unavailable(ErrorBody);
