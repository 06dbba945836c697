//! The admin API (`/admin/v1`), shaped after the reference AuthService configuration API:
//! `/Client`, `/Resource/ApiResource`, `/Resource/ApiScope`, `/Resource/IdentityResource`;
//! plus `/Key`, the signing keys (list, rotate, import, revoke), which the key manager
//! changes ([`signet_keymanager::KeyAdmin`]) and this node reads from its projection.
//!
//! Every route demands a bearer access token issued by this server with scope
//! `signet.admin` (RFC 6750). A write is decided against the projection (`signet-core`),
//! appended to the log with the aggregate's expected version (a racing writer gets 409),
//! and answered only once this node's projection has applied it. Reads never return secrets.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use signet_core::bootstrap::{ADMIN_RESOURCE, ADMIN_SCOPE};
use signet_core::client::Client;
use signet_core::commands::{decide_with, Command};
use signet_core::events::Event;
use signet_core::keys::{KeyState, PublicKeyRecord};
use signet_core::projection::Projection;
use signet_core::redirect_uri::is_localhost_http;
use signet_core::resource::ApiResource;
use signet_core::scope::{ScopeKind, ScopeResource};
use signet_core::secret::{SecretInput, SecretView};
use signet_core::validation::from_json;
use signet_core::{Algorithm, UnixTime};
use signet_eventlog::{EventLogError, ExpectedVersion, NewEvent};
use signet_verify::revocation::{Revocation, Target};

use super::error::ApiError;
use super::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use super::token::now;
use crate::state::{AppState, WaitError};

/// Admin bodies are configuration objects; 1 MiB is plenty.
pub const MAX_ADMIN_BODY: usize = 1024 * 1024;
/// How long a write waits for this node's projection to apply it.
const APPLY_PATIENCE: Duration = Duration::from_secs(10);
/// Clock skew tolerated on `nbf`.
const LEEWAY: i64 = 30;

/// The admin client that made the request (recorded as the event's actor).
#[derive(Debug, Clone)]
pub struct Actor(pub String);

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/Client",
            get(list_clients).post(create_client).put(replace_client),
        )
        .route("/Client/{id}", get(get_client).delete(delete_client))
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
        .route(
            "/User",
            get(super::admin_users::find_users).post(super::admin_users::create_user),
        )
        .route(
            "/User/{sub}",
            get(super::admin_users::get_user)
                .put(super::admin_users::replace_user)
                .delete(super::admin_users::delete_user),
        )
        .route(
            "/revocations",
            post(super::admin_revocations::revoke).fallback(method_not_allowed),
        )
        .route("/Key", get(list_keys))
        .route("/Key/rotate", post(rotate_key))
        .route("/Key/import", post(import_key))
        .route("/Key/{kid}", get(get_key).delete(revoke_key))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_admin,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such admin API route".into())
}

pub(super) async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(serde_json::json!({"error": "method_not_allowed", "error_description": "this method is not allowed on this admin API route"})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct AdminClaims {
    iss: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    aud: Audience,
    #[serde(default)]
    scope: String,
    client_id: String,
    sub: String,
    /// Present only in tokens issued for a user (a sign-in or an API key).
    #[serde(default)]
    sid: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    auth_time: Option<serde::de::IgnoredAny>,
}

impl AdminClaims {
    /// Whether the token was issued to a client for itself (`client_credentials`): its
    /// subject is the client and it carries nothing of a user's sign-in. The admin API
    /// takes no token that speaks for a user, whatever its scope.
    fn is_client_own(&self) -> bool {
        self.sub == self.client_id && self.sid.is_none() && self.auth_time.is_none()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, s: &str) -> bool {
        match self {
            Audience::One(a) => a == s,
            Audience::Many(v) => v.iter().any(|a| a == s),
        }
    }
}

/// RFC 6750 bearer-token check for the admin API.
async fn require_admin(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let invalid = |description: &'static str| ApiError::Unauthorized {
        description,
        token_present: true,
    };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(ApiError::Unauthorized {
            description: "a bearer token with scope signet.admin is required",
            token_present: false,
        });
    };
    let value = value
        .to_str()
        .map_err(|_| invalid("malformed Authorization header"))?;
    let token = match value.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => {
            return Err(ApiError::Unauthorized {
                description: "the Authorization scheme must be Bearer",
                token_present: false,
            })
        }
    };
    let p = state.projection.load();
    let verified = signet_jose::verify_compact(token, |kid| p.key(kid).map(|k| &k.jwk))
        .map_err(|_| invalid(malformed_bearer_reason(token)))?;
    if verified.typ.as_deref() != Some("at+jwt") {
        return Err(invalid("the token is not an access token"));
    }
    let claims: AdminClaims = serde_json::from_slice(&verified.payload)
        .map_err(|_| invalid("the access token is invalid"))?;
    let now = now();
    if claims.iss != state.config.issuer.as_str() {
        return Err(invalid("the access token was issued by another issuer"));
    }
    if claims.exp <= now || claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY) {
        return Err(invalid("the access token is expired or not yet valid"));
    }
    if !claims.aud.contains(ADMIN_RESOURCE) {
        return Err(invalid("the access token is not meant for the admin API"));
    }
    // The client must still exist and be enabled: disabling it cuts its tokens off.
    if !p
        .client(&claims.client_id)
        .is_some_and(|c| c.client.enabled)
    {
        return Err(invalid(
            "the client of this access token is disabled or gone",
        ));
    }
    if !claims.is_client_own()
        || !p.client(&claims.client_id).is_some_and(|c| {
            c.client
                .allows(signet_core::client::GrantType::ClientCredentials)
        })
    {
        return Err(invalid(
            "the admin API takes only a client's own client_credentials token, never a token issued for a user",
        ));
    }
    if !claims.scope.split(' ').any(|s| s == ADMIN_SCOPE) {
        return Err(ApiError::Forbidden);
    }
    drop(p);
    req.extensions_mut().insert(Actor(claims.client_id));
    Ok(next.run(req).await)
}

/// Why a bearer value failed verification: a value that is not even shaped like a JWT
/// (three base64url segments) is no token at all, typically the error JSON of a failed
/// token request that a script captured instead of the `access_token`.
fn malformed_bearer_reason(token: &str) -> &'static str {
    let segments: Vec<&str> = token.split('.').collect();
    let jwt_shaped = segments.len() == 3
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if jwt_shaped {
        "the access token is invalid"
    } else if token.starts_with('{') {
        "the bearer value is not a token at all but JSON (an error from the token endpoint?); send the access_token of a successful token response"
    } else {
        "the bearer value is not a token at all (a JWT access token from the token endpoint has three dot-separated parts)"
    }
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
    fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        Ok(from_json(&self.0)?)
    }

    /// Whether the top-level object has `member` (absent secrets mean "keep them").
    fn has_member(&self, member: &str) -> Result<bool, ApiError> {
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

/// Decides, appends with the expected version, and waits until this node applied it.
async fn execute(state: &AppState, actor: &Actor, cmd: Command) -> Result<Event, ApiError> {
    warn_localhost_redirects(&cmd);
    let decision = {
        let p = state.projection.load();
        let decision = decide_with(&p, &state.config.client_policy, cmd)?;
        if let Some(r) = client_revocation(&p, &decision.event, now()) {
            // Before the event: if it cannot be published, nothing is written.
            publish_revocation(state, r).await?;
        }
        decision
    };
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
pub(super) const REVOCATION_MARGIN: i64 = 300;

/// Publishes a revocation that an admin write implies; a failure is a 503 with nothing
/// written.
pub(super) async fn publish_revocation(state: &AppState, r: Revocation) -> Result<(), ApiError> {
    state.revocations.revoke(r).await.map_err(|e| {
        tracing::warn!(error = %e, "could not publish a revocation");
        ApiError::Unavailable(
            "the revocation could not be recorded; nothing was changed, retry".into(),
        )
    })
}

fn created<T: serde::Serialize>(location: String, view: T) -> Response {
    let mut resp = (StatusCode::CREATED, Json(view)).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

// ---- /Client ----

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

// ---- /Resource/ApiResource ----

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

// ---- /Resource/ApiScope and /Resource/IdentityResource: one shape, two kinds ----

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

// ---- /Key ----

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

fn log_error(e: EventLogError) -> ApiError {
    match e {
        EventLogError::Closed => ApiError::Unavailable("the node is shutting down".into()),
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
