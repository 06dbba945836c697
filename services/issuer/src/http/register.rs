//! Dynamic client registration: `POST /oauth2/register` (RFC 7591 section 3) and the client
//! configuration endpoint `GET/PUT/DELETE /oauth2/register/{client_id}` (RFC 7592 section 2).
//! Served only with `--dynamic-client-registration` (404 otherwise).
//!
//! Registration needs an initial access token (RFC 7591 section 3; open registration is not
//! offered), whose policy the metadata is checked against (`signet_core::registration`).
//! A registration is two events, like admin writes: the token's use (appended with the
//! token's expected version, so two nodes cannot both take its last use) and
//! `client.registered`, whose actor names the token. Management needs the registration
//! access token answered at registration; only its SHA-256 is stored, beside the client.
//! Every credential is compared in constant time.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};
use signet_core::commands::{decide_with, Command, CommandError};
use signet_core::oauth::OAuthError;
use signet_core::registration::{
    build_client, metadata_of, Metadata, RegistrationError, RegistrationInfo,
};
use signet_core::secret::SecretDigest;
use subtle::ConstantTimeEq;

use super::admin::common::{commit, execute, path_segment, Actor};
use super::admin::initial_access_tokens::{token_hash, token_id};
use super::browser::random_token;
use super::error::{no_store, ApiError};
use super::token::now;
use crate::state::AppState;

/// Registration bodies are a page of metadata; 64 KiB is plenty (RFC 7591 sets no bound).
pub const MAX_REGISTRATION_BODY: usize = 64 * 1024;

/// How often a registration retries taking a use of its token after a racing one.
const USE_ATTEMPTS: usize = 8;

/// An RFC 7591/7592 error answer.
#[derive(Debug)]
pub enum RegisterError {
    /// 404: registration is off.
    Off,
    /// 401 `invalid_token` (RFC 6750 section 3.1) with a Bearer challenge.
    Token(&'static str),
    /// 400 `invalid_redirect_uri` / `invalid_client_metadata` (RFC 7591 section 3.2.2).
    Metadata(RegistrationError),
    /// Another protocol error (server_error, temporarily_unavailable).
    Protocol(OAuthError),
    /// 409 `invalid_request`: a racing write changed the registration first.
    Conflict,
}

impl From<RegistrationError> for RegisterError {
    fn from(e: RegistrationError) -> Self {
        RegisterError::Metadata(e)
    }
}

impl From<OAuthError> for RegisterError {
    fn from(e: OAuthError) -> Self {
        RegisterError::Protocol(e)
    }
}

/// An admin-style error from appending the events.
impl From<ApiError> for RegisterError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Invalid(v) => RegisterError::Metadata(RegistrationError::from_validation(&v)),
            ApiError::Unavailable(d) => RegisterError::Protocol(OAuthError::new(
                signet_core::oauth::ErrorCode::TemporarilyUnavailable,
                d,
            )),
            ApiError::NotFound(_) => RegisterError::Token("the client is not registered"),
            ApiError::Conflict(_) => RegisterError::Conflict,
            other => {
                tracing::warn!(error = %other, "registration write failed");
                RegisterError::Protocol(OAuthError::server_error(
                    "the registration could not be stored",
                ))
            }
        }
    }
}

impl IntoResponse for RegisterError {
    fn into_response(self) -> Response {
        let (status, code, description) = match self {
            RegisterError::Off => {
                return (
                    StatusCode::NOT_FOUND,
                    Json(serde_json::json!({"error": "not_found", "error_description": "dynamic client registration is not enabled on this server"})),
                )
                    .into_response()
            }
            RegisterError::Token(d) => (StatusCode::UNAUTHORIZED, "invalid_token", d.to_owned()),
            RegisterError::Metadata(e) => (StatusCode::BAD_REQUEST, e.code(), e.to_string()),
            RegisterError::Protocol(e) => {
                return super::error::ProtocolError::from(e).into_response()
            }
            RegisterError::Conflict => (
                StatusCode::CONFLICT,
                "invalid_request",
                "the registration was changed concurrently; read it again and retry".to_owned(),
            ),
        };
        let mut resp = (
            status,
            Json(serde_json::json!({"error": code, "error_description": description})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            let challenge = format!(
                "Bearer realm=\"signet\", error=\"invalid_token\", error_description=\"{}\"",
                description.replace(['"', '\\'], "'")
            );
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        no_store(resp.headers_mut());
        resp
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, RegisterError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or(RegisterError::Token(
            "an Authorization: Bearer token is required (an initial access token to register, the registration access token to manage a registration)",
        ))
}

fn enabled(state: &AppState) -> Result<(), RegisterError> {
    if state.config.dynamic_client_registration {
        Ok(())
    } else {
        Err(RegisterError::Off)
    }
}

/// The body as a JSON object: bounded, `application/json`.
async fn metadata_body(req: Request<Body>) -> Result<Map<String, Value>, RegisterError> {
    let bad = |d: &str| RegisterError::Metadata(RegistrationError::InvalidClientMetadata(d.into()));
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(bad(
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    let bytes = axum::body::to_bytes(req.into_body(), MAX_REGISTRATION_BODY)
        .await
        .map_err(|_| {
            bad(&format!(
                "the request body exceeds {MAX_REGISTRATION_BODY} bytes"
            ))
        })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(bad("the body must be a JSON object of client metadata")),
    }
}

/// RFC 7591 section 2.3: a `software_statement` is verified with the configured trusted
/// keys (asymmetric algorithms only) and its claims override the plain metadata. Answers
/// its `iss`, or `None` when the body has none.
fn software_statement(
    state: &AppState,
    body: &mut Map<String, Value>,
) -> Result<Option<String>, RegisterError> {
    let Some(statement) = body.get("software_statement") else {
        return Ok(None);
    };
    let Some(statement) = statement.as_str().map(str::to_owned) else {
        return Err(RegistrationError::InvalidSoftwareStatement(
            "software_statement must be a signed JWT (a string)".into(),
        )
        .into());
    };
    let Some(keys) = &state.config.software_statement_keys else {
        return Err(RegistrationError::UnapprovedSoftwareStatement(
            "this server accepts no software statements".into(),
        )
        .into());
    };
    let verified = signet_jose::verify_with_client_keys(&statement, keys).map_err(|e| {
        tracing::info!(error = %e, "software statement refused");
        RegistrationError::InvalidSoftwareStatement(
            "the software statement is not signed by a trusted key with an asymmetric algorithm"
                .into(),
        )
    })?;
    let iss = signet_core::registration::merge_software_statement(body, &verified.payload, now())?;
    Ok(Some(iss))
}

fn registration_uri(state: &AppState, client_id: &str) -> String {
    state
        .config
        .issuer
        .endpoint(&format!("/oauth2/register/{}", path_segment(client_id)))
}

fn json_response(status: StatusCode, body: Map<String, Value>) -> Response {
    let mut resp = (status, Json(Value::Object(body))).into_response();
    no_store(resp.headers_mut());
    resp
}

fn random() -> Result<String, RegisterError> {
    Ok(random_token()?)
}

/// `POST /oauth2/register` (RFC 7591 section 3.1).
pub async fn register(State(state): State<AppState>, req: Request<Body>) -> Response {
    let result = register_inner(&state, req).await;
    let outcome = match &result {
        Ok(_) => "registered",
        Err(RegisterError::Off) => return RegisterError::Off.into_response(),
        Err(RegisterError::Token(_)) => "invalid_token",
        Err(RegisterError::Metadata(e)) => e.code(),
        Err(RegisterError::Protocol(e)) => e.code.as_str(),
        Err(RegisterError::Conflict) => "conflict",
    };
    metrics::counter!(crate::telemetry::REGISTRATIONS, "outcome" => outcome).increment(1);
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn register_inner(state: &AppState, req: Request<Body>) -> Result<Response, RegisterError> {
    enabled(state)?;
    let presented = bearer(req.headers())?.to_owned();
    let (iat_id, policy) = {
        let p = state.projection.load();
        let presented_hash = token_hash(&presented);
        let entry = token_id(&presented).and_then(|id| p.initial_access_token(id));
        // Constant-time compare of the hashes; an unknown id compares against itself so
        // the work is the same.
        let stored = entry.map(|e| e.token.sha256.as_str()).unwrap_or("");
        let matches: bool = stored.as_bytes().ct_eq(presented_hash.as_bytes()).into();
        let entry = entry
            .filter(|_| matches)
            .ok_or(RegisterError::Token("the initial access token is invalid"))?;
        if entry.token.expires_at <= now() {
            return Err(RegisterError::Token("the initial access token has expired"));
        }
        if entry.token.max_uses.is_some_and(|m| entry.uses >= m) {
            return Err(RegisterError::Token("the initial access token is used up"));
        }
        (entry.token.id.clone(), entry.token.policy.clone())
    };
    let mut body = metadata_body(req).await?;
    let statement_iss = software_statement(state, &mut body)?;
    let meta = Metadata::from_object(&body)?;
    if meta.client_id.is_some() || meta.client_secret.is_some() {
        return Err(RegistrationError::InvalidClientMetadata(
            "client_id and client_secret are issued by the server, not chosen".into(),
        )
        .into());
    }
    let client_id = random()?;
    let secret = random()?;
    let rat = random()?;
    let (client, built) = build_client(&meta, &policy, &client_id, &secret)?;
    let registration = RegistrationInfo {
        token_sha256: SecretDigest::of(&rat).to_b64url(),
        initial_access_token: iat_id.clone(),
        policy,
        token_endpoint_auth_method: built.token_endpoint_auth_method.clone(),
        application_type: built.application_type.clone(),
        issued_at: now(),
        software_statement_iss: statement_iss,
    };
    let cmd = Command::RegisterClient {
        client: Box::new(client),
        registration: Box::new(registration),
    };
    // Decide before taking a use: a refused body does not use the token up.
    decide_with(
        &state.projection.load(),
        &state.config.client_policy,
        cmd.clone(),
    )
    .map_err(|e| command_error(&e))?;
    take_use(state, &iat_id, &client_id).await?;
    let actor = Actor(format!("initial_access_token:{iat_id}"));
    execute(state, &actor, cmd).await?;
    tracing::info!(client_id = %client_id, initial_access_token = %iat_id, "client registered");
    let mut out = read_back(state, &client_id)?;
    if built.uses_shared_secret {
        out.insert("client_secret".into(), Value::from(secret));
        out.insert("client_secret_expires_at".into(), Value::from(0));
    }
    out.insert("registration_access_token".into(), Value::from(rat));
    let mut resp = json_response(StatusCode::CREATED, out);
    if let Ok(v) = HeaderValue::from_str(&registration_uri(state, &client_id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

fn command_error(e: &CommandError) -> RegisterError {
    match e {
        CommandError::Invalid(v) => RegistrationError::from_validation(v).into(),
        CommandError::Unusable(d) => {
            tracing::info!(reason = %d, "initial access token refused");
            RegisterError::Token("the initial access token is invalid, expired or used up")
        }
        other => RegistrationError::InvalidClientMetadata(other.to_string()).into(),
    }
}

/// Takes one use of the token: decided against the projection and appended with the
/// token's version, retried when another registration took a use meanwhile.
async fn take_use(state: &AppState, id: &str, client_id: &str) -> Result<(), RegisterError> {
    let actor = Actor(format!("initial_access_token:{id}"));
    for _ in 0..USE_ATTEMPTS {
        let decision = decide_with(
            &state.projection.load(),
            &state.config.client_policy,
            Command::UseInitialAccessToken {
                id: id.to_owned(),
                client_id: client_id.to_owned(),
                now: now(),
            },
        )
        .map_err(|e| command_error(&e))?;
        let seen = decision.expected_version;
        match commit(state, &actor, decision).await {
            Ok(_) => return Ok(()),
            Err(ApiError::Conflict(_)) => {
                // Another node took a use: wait until this one has seen it, then decide again.
                let _ = state
                    .wait_applied(seen + 1, super::admin::common::APPLY_PATIENCE)
                    .await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(RegisterError::Protocol(OAuthError::new(
        signet_core::oauth::ErrorCode::TemporarilyUnavailable,
        "the initial access token is in heavy use; retry",
    )))
}

/// The registration as answered: metadata plus `registration_client_uri`.
fn read_back(state: &AppState, client_id: &str) -> Result<Map<String, Value>, RegisterError> {
    let p = state.projection.load();
    let entry = p
        .client(client_id)
        .ok_or(RegisterError::Token("the client is not registered"))?;
    let reg = entry
        .registration
        .as_ref()
        .ok_or(RegisterError::Token("the client is not registered"))?;
    let mut out = metadata_of(&entry.client, reg);
    out.insert(
        "registration_client_uri".into(),
        Value::from(registration_uri(state, client_id)),
    );
    Ok(out)
}

/// Checks the registration access token of `client_id` (RFC 7592 section 1): a token of
/// another client, of an admin-created client or of no client is 401.
fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    client_id: &str,
) -> Result<RegistrationInfo, RegisterError> {
    let presented = SecretDigest::of(bearer(headers)?).to_b64url();
    let p = state.projection.load();
    let reg = p.client(client_id).and_then(|e| e.registration.as_ref());
    let stored = reg.map(|r| r.token_sha256.as_str()).unwrap_or("");
    let matches: bool = stored.as_bytes().ct_eq(presented.as_bytes()).into();
    match reg {
        Some(r) if matches => Ok(r.clone()),
        _ => Err(RegisterError::Token(
            "the registration access token is invalid for this client",
        )),
    }
}

/// `GET /oauth2/register/{client_id}` (RFC 7592 section 2.1).
pub async fn read(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let r = (|| {
        enabled(&state)?;
        authorize(&state, &headers, &client_id)?;
        Ok::<_, RegisterError>(json_response(
            StatusCode::OK,
            read_back(&state, &client_id)?,
        ))
    })();
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `PUT /oauth2/register/{client_id}` (RFC 7592 section 2.2): the metadata is replaced
/// under the same policy; a shared secret is kept, or issued when the client newly needs
/// one; what an admin controls beyond the metadata (`enabled`) stays.
pub async fn update(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    req: Request<Body>,
) -> Response {
    update_inner(&state, client_id, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn update_inner(
    state: &AppState,
    client_id: String,
    req: Request<Body>,
) -> Result<Response, RegisterError> {
    enabled(state)?;
    let old = authorize(state, req.headers(), &client_id)?;
    let mut body = metadata_body(req).await?;
    let statement_iss = software_statement(state, &mut body)?;
    let meta = Metadata::from_object(&body)?;
    if meta.client_id.as_deref() != Some(client_id.as_str()) {
        return Err(RegistrationError::InvalidClientMetadata(
            "client_id must be present and equal to the registered one (RFC 7592 section 2.2)"
                .into(),
        )
        .into());
    }
    let (enabled_now, secret_matches) = {
        let p = state.projection.load();
        let entry = p
            .client(&client_id)
            .ok_or(RegisterError::Token("the client is not registered"))?;
        let matches = meta
            .client_secret
            .as_deref()
            .map(|s| entry.secrets.matches(&SecretDigest::of(s), now()));
        (entry.client.enabled, matches)
    };
    if secret_matches == Some(false) {
        return Err(RegistrationError::InvalidClientMetadata(
            "client_secret does not match the current secret".into(),
        )
        .into());
    }
    let new_secret = random()?;
    let (mut client, built) = build_client(&meta, &old.policy, &client_id, &new_secret)?;
    client.enabled = enabled_now;
    let shared = |m: &str| matches!(m, "client_secret_basic" | "client_secret_post");
    let keep_secrets = built.uses_shared_secret && shared(&old.token_endpoint_auth_method);
    let registration = RegistrationInfo {
        token_endpoint_auth_method: built.token_endpoint_auth_method.clone(),
        application_type: built.application_type.clone(),
        software_statement_iss: statement_iss,
        ..old
    };
    let actor = Actor(format!("registration:{client_id}"));
    execute(
        state,
        &actor,
        Command::ReplaceRegistration {
            client: Box::new(client),
            registration: Box::new(registration),
            keep_secrets,
        },
    )
    .await?;
    let mut out = read_back(state, &client_id)?;
    if built.uses_shared_secret && !keep_secrets {
        out.insert("client_secret".into(), Value::from(new_secret));
        out.insert("client_secret_expires_at".into(), Value::from(0));
    }
    Ok(json_response(StatusCode::OK, out))
}

/// `DELETE /oauth2/register/{client_id}` (RFC 7592 section 2.3): 204; the client is gone
/// and what it was issued is revoked, as an admin delete does.
pub async fn delete(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        enabled(&state)?;
        authorize(&state, &headers, &client_id)?;
        let actor = Actor(format!("registration:{client_id}"));
        execute(&state, &actor, Command::DeleteClient(client_id.clone())).await?;
        let mut resp = StatusCode::NO_CONTENT.into_response();
        no_store(resp.headers_mut());
        Ok::<_, RegisterError>(resp)
    };
    r.await.unwrap_or_else(IntoResponse::into_response)
}

/// Other methods: 405 in the RFC 6749 error shape (404 when registration is off).
pub async fn method_not_allowed(State(state): State<AppState>) -> Response {
    if let Err(e) = enabled(&state) {
        return e.into_response();
    }
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(serde_json::json!({"error": "invalid_request", "error_description": "this method is not allowed here"})),
    )
        .into_response()
}
