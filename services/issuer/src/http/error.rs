//! The one place where errors become HTTP responses.
//!
//! | error | status | body |
//! |---|---|---|
//! | [`ProtocolError`] `invalid_client` | 401 + `WWW-Authenticate: Basic` | RFC 6749 section 5.2 JSON |
//! | [`ProtocolError`] `server_error` | 500 | RFC 6749 JSON |
//! | [`ProtocolError`] `temporarily_unavailable` | 503 | RFC 6749 JSON |
//! | [`ProtocolError`] other codes | 400 | RFC 6749 JSON |
//! | [`ProtocolError::too_large`] | 413 | RFC 6749 JSON (`invalid_request`) |
//! | [`ApiError::Invalid`] | 400 | `{error, error_description, field, rule, errors}` |
//! | [`ApiError::Unauthorized`] | 401 + `WWW-Authenticate: Bearer` (RFC 6750) | JSON |
//! | [`ApiError::Forbidden`] | 403 + `WWW-Authenticate: Bearer error="insufficient_scope"` | JSON |
//! | [`ApiError::NotFound`] / [`ApiError::Conflict`] | 404 / 409 | JSON |
//! | [`ApiError::UnsupportedMediaType`] / [`ApiError::TooLarge`] | 415 / 413 | JSON |
//! | [`ApiError::Unavailable`] | 503 | JSON |
//! | [`ApiError::Internal`] | 500 | JSON without details (details go to the log) |
//!
//! Errors of the users projection and user writes ([`crate::users`], `/admin/v1/User`): a
//! bad body is a 400 naming the field (never echoing a password), a taken username or a
//! racing write a 409, an unknown `sub` a 404, an unreachable projection store or log, or a
//! projection that did not apply the write in time, a 503, anything else a 500.
//!
//! Errors of key administration ([`KeyError`], `/admin/v1/Key`) become [`ApiError`]s here
//! too: a PEM that is not a private key of the algorithm is a 400 naming `pem` (never
//! echoing it), an unknown kid a 404, a racing key change a 409, an unreachable or slow key
//! manager (NATS, its vault backend, the log's backend, a log that cannot write: a full
//! disk) a 503, anything else a 500.
//!
//! Error descriptions never carry secrets, tokens or internal details.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use signet_core::commands::CommandError;
use signet_core::oauth::{ErrorCode, OAuthError};
use signet_core::validation::ValidationErrors;
use signet_eventlog::EventLogError;
use signet_jose::JoseError;
use signet_keymanager::KeyError;

/// A protocol error on an OAuth endpoint.
#[derive(Debug)]
pub struct ProtocolError {
    pub error: OAuthError,
    pub status: Option<StatusCode>,
}

impl ProtocolError {
    pub fn too_large(limit: usize) -> Self {
        ProtocolError {
            error: OAuthError::invalid_request(format!("the request body exceeds {limit} bytes")),
            status: Some(StatusCode::PAYLOAD_TOO_LARGE),
        }
    }

    pub fn with_status(error: OAuthError, status: StatusCode) -> Self {
        ProtocolError {
            error,
            status: Some(status),
        }
    }
}

impl From<OAuthError> for ProtocolError {
    fn from(error: OAuthError) -> Self {
        ProtocolError {
            error,
            status: None,
        }
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 section 5.1).
pub fn no_store(headers: &mut axum::http::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for ProtocolError {
    fn into_response(self) -> Response {
        let code = self.error.code;
        let status = self.status.unwrap_or(match code {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        });
        let body = json!({
            "error": code.as_str(),
            "error_description": self.error.description,
        });
        let mut resp = (status, axum::Json(body)).into_response();
        no_store(resp.headers_mut());
        close_if_unread(&mut resp);
        resp
    }
}

impl ProtocolError {
    /// The answer to a request at a client-authenticating endpoint (token, introspection,
    /// revocation). RFC 6749 section 5.2: a client that authenticated with the
    /// `Authorization` header gets a 401 with a `Basic` challenge carrying the error;
    /// one that sent its credentials in the body gets the JSON alone (a challenge there
    /// makes clients such as openid-client read the error from the header instead).
    pub fn into_response_for(self, request: &axum::http::HeaderMap) -> Response {
        let code = self.error.code;
        let description = self.error.description.clone();
        let mut resp = self.into_response();
        let used_header = request.contains_key(header::AUTHORIZATION);
        if resp.status() == StatusCode::UNAUTHORIZED && used_header {
            let challenge = format!(
                "Basic realm=\"signet\", charset=\"UTF-8\", error=\"{}\", error_description=\"{}\"",
                code.as_str(),
                description.replace(['"', '\\'], "'")
            );
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        resp
    }
}

/// An error on the admin API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// No, or an invalid, bearer token (RFC 6750 section 3.1).
    #[error("{description}")]
    Unauthorized {
        description: &'static str,
        token_present: bool,
    },
    /// The token lacks the `signet.admin` scope.
    #[error("the access token lacks the signet.admin scope")]
    Forbidden,
    #[error("the body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the request body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

/// Short-lived state (sessions) failing under an admin or account call: 503 when it is
/// unavailable, else an internal error (the description is ours, never a secret).
impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        match e.code {
            ErrorCode::TemporarilyUnavailable => ApiError::Unavailable(e.description.into()),
            _ => ApiError::Internal(e.description.into()),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Invalid(v) => ApiError::Invalid(v),
            CommandError::AlreadyExists(m) => ApiError::Conflict(format!("{m} already exists")),
            CommandError::NotFound(m) => ApiError::NotFound(format!("{m} does not exist")),
            CommandError::InUse(m) => ApiError::Conflict(m),
            CommandError::Unusable(m) => ApiError::Conflict(m),
        }
    }
}

impl From<crate::users::UsersError> for ApiError {
    fn from(e: crate::users::UsersError) -> Self {
        use crate::users::UsersError as E;
        use signet_eventlog::kv::KvError;
        match e {
            E::Timeout(_) | E::Stopped => ApiError::Unavailable(format!(
                "{e}; read the user to see whether the change was made, then retry"
            )),
            E::Kv(KvError::Backend(_) | KvError::Io(_))
            | E::Log(EventLogError::Backend(_) | EventLogError::Io(_)) => {
                tracing::warn!(error = %e, "users projection unavailable");
                ApiError::Unavailable("the users projection store is unavailable; retry".into())
            }
            E::Log(EventLogError::Closed) => {
                ApiError::Unavailable("the node is shutting down".into())
            }
            other => ApiError::Internal(format!("users projection: {other}")),
        }
    }
}

impl From<crate::users::UserWriteError> for ApiError {
    fn from(e: crate::users::UserWriteError) -> Self {
        use crate::users::UserWriteError as E;
        match e {
            E::Invalid(v) => ApiError::Invalid(v),
            E::UsernameTaken(name) => ApiError::Conflict(format!(
                "username {name:?} is taken (usernames compare case-insensitively)"
            )),
            E::LinkTaken(scheme) => ApiError::Conflict(format!(
                "the identity at provider {scheme:?} is linked to another user"
            )),
            E::NotFound(sub) => ApiError::NotFound(format!("user {sub:?} does not exist")),
            E::Conflict => ApiError::Conflict(
                "the user was changed concurrently by another write; read it again and retry"
                    .into(),
            ),
            E::Users(e) => e.into(),
            E::Log(EventLogError::Closed) => {
                ApiError::Unavailable("the node is shutting down".into())
            }
            E::Log(EventLogError::Backend(detail)) => {
                metrics::counter!(crate::telemetry::EVENTLOG_ERRORS, "op" => "append").increment(1);
                tracing::warn!(%detail, "user write: event log unavailable");
                ApiError::Unavailable("the event log is unavailable; retry".into())
            }
            E::Log(EventLogError::Io(e)) => {
                // The embedded log could not write (a full disk): it rolled the append back.
                metrics::counter!(crate::telemetry::EVENTLOG_ERRORS, "op" => "append").increment(1);
                tracing::warn!(error = %e, "user write: event log append failed");
                ApiError::Unavailable(
                    "the event log could not store the write (disk full?); nothing was stored, retry"
                        .into(),
                )
            }
            E::Log(other) => {
                metrics::counter!(crate::telemetry::EVENTLOG_ERRORS, "op" => "append").increment(1);
                ApiError::Internal(format!("user write: {other}"))
            }
            // The password never reaches these messages.
            E::Hash(_) | E::Random => ApiError::Internal(format!("user write: {e}")),
        }
    }
}

/// The rule a bad `pem` member broke (fixed text: the PEM itself is never echoed).
pub const PEM_RULE: &str = "must be one PEM private key of the algorithm: PRIVATE KEY (PKCS#8), RSA PRIVATE KEY (PKCS#1, RS256/PS256) or EC PRIVATE KEY (SEC1, ES256)";

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        let unavailable = |what: &str| {
            // The detail names a backend failure (NATS, KV, log); it carries no key material.
            tracing::warn!(error = %e, "key administration failed: {what}");
            ApiError::Unavailable(format!(
                "the key manager {what}; list the keys to see whether the change was made, then retry"
            ))
        };
        match &e {
            KeyError::UnknownKey { kid } | KeyError::Jose(JoseError::UnknownKey(kid)) => {
                ApiError::NotFound(format!("signing key {kid:?} does not exist"))
            }
            // The reason stays out of the answer: the rule says what a PEM must be.
            KeyError::BadPem { alg, .. } => ApiError::Invalid(ValidationErrors::single(
                "pem",
                format!("is not a usable {alg} private key; it {PEM_RULE}"),
            )),
            KeyError::Jose(JoseError::Pem(_)) => {
                ApiError::Invalid(ValidationErrors::single("pem", PEM_RULE))
            }
            KeyError::Jose(JoseError::InvalidKey(alg)) => ApiError::Invalid(
                ValidationErrors::single("pem", format!("is not a valid {alg} private key")),
            ),
            KeyError::EventLog(EventLogError::Conflict { .. }) => ApiError::Conflict(
                "the signing keys were changed concurrently by another operation; read them again and retry"
                    .into(),
            ),
            KeyError::EventLog(EventLogError::Closed) => {
                ApiError::Unavailable("the node is shutting down".into())
            }
            KeyError::EventLog(EventLogError::Backend(_)) => {
                unavailable("cannot reach the event log")
            }
            KeyError::EventLog(EventLogError::Io(_)) => {
                unavailable("could not write to the event log (disk full?)")
            }
            KeyError::Nats(_) => unavailable("is unreachable or did not answer in time"),
            KeyError::Vault(_) => unavailable("cannot reach its key vault"),
            _ => ApiError::Internal(format!("key administration: {e}")),
        }
    }
}

const BEARER_REALM: &str = "Bearer realm=\"signet-admin\"";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let description = self.to_string();
        let (status, code) = match &self {
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unauthorized {
                token_present: false,
                ..
            } => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "invalid_token"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "insufficient_scope"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "admin API internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
            }
        };
        let mut body = json!({ "error": code, "error_description": description });
        if let ApiError::Invalid(v) = &self {
            body["field"] = json!(v.errors[0].field);
            body["rule"] = json!(v.errors[0].rule);
            body["errors"] = json!(v.errors);
        }
        let mut resp = (status, axum::Json(body)).into_response();
        let challenge = match &self {
            ApiError::Unauthorized {
                token_present: false,
                ..
            } => Some(BEARER_REALM.to_owned()),
            ApiError::Unauthorized { description, .. } => Some(format!(
                "{BEARER_REALM}, error=\"invalid_token\", error_description=\"{description}\""
            )),
            ApiError::Forbidden => Some(format!(
                "{BEARER_REALM}, error=\"insufficient_scope\", scope=\"{}\"",
                signet_core::bootstrap::ADMIN_SCOPE
            )),
            _ => None,
        };
        if let Some(c) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        close_if_unread(&mut resp);
        resp
    }
}

/// A 413 is answered before the body was read: the connection cannot carry another request
/// (the rest of the body is still on it), so tell the client not to reuse it.
fn close_if_unread(resp: &mut Response) {
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(r: Response) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let status = r.status();
        let headers = r.headers().clone();
        let body = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, headers, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn protocol_errors_map_to_rfc6749() {
        // Credentials in the Authorization header: a Basic challenge naming the error.
        let mut basic = axum::http::HeaderMap::new();
        basic.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eDp5"),
        );
        let (s, h, b) = parts(
            ProtocolError::from(OAuthError::invalid_client("nope")).into_response_for(&basic),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let challenge = h[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Basic realm="), "{challenge}");
        assert!(
            challenge.contains("error=\"invalid_client\""),
            "{challenge}"
        );
        assert!(
            challenge.contains("error_description=\"nope\""),
            "{challenge}"
        );
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            b,
            json!({"error": "invalid_client", "error_description": "nope"})
        );
        // Credentials in the body (client_secret_post): the JSON alone, no challenge.
        let (s, h, b) = parts(
            ProtocolError::from(OAuthError::invalid_client("nope"))
                .into_response_for(&axum::http::HeaderMap::new()),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(!h.contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(
            b,
            json!({"error": "invalid_client", "error_description": "nope"})
        );
        let (s, _, b) =
            parts(ProtocolError::from(OAuthError::invalid_scope("x")).into_response()).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_scope"))
        );
        let (s, _, b) = parts(ProtocolError::too_large(10).into_response()).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, Some("invalid_request"))
        );
        let (s, _, _) =
            parts(ProtocolError::from(OAuthError::server_error("x")).into_response()).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn api_errors_name_fields_and_challenge() {
        let (s, _, b) = parts(
            ApiError::Invalid(ValidationErrors::single("redirectUris[0]", "bad")).into_response(),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(
            (b["field"].as_str(), b["rule"].as_str()),
            (Some("redirectUris[0]"), Some("bad"))
        );
        let (s, h, _) = parts(
            ApiError::Unauthorized {
                description: "missing",
                token_present: false,
            }
            .into_response(),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(h[header::WWW_AUTHENTICATE], BEARER_REALM);
        let (s, h, _) = parts(ApiError::Forbidden.into_response()).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(h[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("insufficient_scope"));
        let (s, _, b) = parts(ApiError::Internal("secret detail".into()).into_response()).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!b.to_string().contains("secret detail"));
        let (s, _, _) = parts(
            ApiError::from(CommandError::AlreadyExists("client \"x\"".into())).into_response(),
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT);
    }

    /// Key administration errors: bad PEM names `pem` without echoing it, unknown kid 404,
    /// races 409, an unreachable key manager 503, the rest 500 without details.
    #[tokio::test]
    async fn key_errors_map_to_statuses() {
        use signet_core::Algorithm;
        let pem_text =
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----";
        let cases: Vec<(KeyError, StatusCode, &str)> = vec![
            (
                KeyError::Jose(JoseError::Pem(format!("echo {pem_text}"))),
                StatusCode::BAD_REQUEST,
                "invalid_body",
            ),
            (
                KeyError::Jose(JoseError::InvalidKey(Algorithm::RS256)),
                StatusCode::BAD_REQUEST,
                "invalid_body",
            ),
            (
                KeyError::Jose(JoseError::UnknownKey("es256-x".into())),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                KeyError::UnknownKey {
                    kid: "es256-x".into(),
                },
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                KeyError::BadPem {
                    alg: Algorithm::EdDSA,
                    reason: format!("bad header in {pem_text}"),
                },
                StatusCode::BAD_REQUEST,
                "invalid_body",
            ),
            (
                KeyError::Remote("vault write failed".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
            ),
            (
                KeyError::Policy("no signing algorithm".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
            ),
            (
                KeyError::EventLog(EventLogError::Conflict {
                    subject: "signet.events.signing_key.x".into(),
                    expected: 1,
                    actual: 2,
                }),
                StatusCode::CONFLICT,
                "conflict",
            ),
            (
                KeyError::EventLog(EventLogError::Closed),
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            ),
            (
                KeyError::EventLog(EventLogError::Backend("timed out".into())),
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            ),
            (
                KeyError::Nats("request timed out".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            ),
            (
                KeyError::Vault("kv get: timed out".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            ),
            (
                KeyError::Crypto("no randomness"),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
            ),
            (
                KeyError::Unseal { kid: "k".into() },
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
            ),
            (
                KeyError::Jose(JoseError::KeyGeneration(Algorithm::RS256)),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
            ),
            (
                KeyError::EventLog(EventLogError::Io(std::io::Error::other("disk full"))),
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            ),
        ];
        for (e, status, code) in cases {
            let what = format!("{e:?}");
            let (s, _, b) = parts(ApiError::from(e).into_response()).await;
            assert_eq!(
                (s, b["error"].as_str()),
                (status, Some(code)),
                "{what}: {b}"
            );
            let text = b.to_string();
            assert!(!text.contains("c2VjcmV0"), "{what} echoes the PEM: {text}");
            if s == StatusCode::BAD_REQUEST {
                assert_eq!(b["field"], "pem", "{what}");
                assert!(b["rule"].as_str().is_some_and(|r| !r.is_empty()), "{b}");
            }
            if s == StatusCode::INTERNAL_SERVER_ERROR {
                assert_eq!(b["error_description"], "internal error", "{what}");
            }
        }
    }
}
