//! Errors, and how each maps to an HTTP answer (RFC 6750 section 3.1).

use std::time::Duration;

/// Why a bearer token was not accepted.
///
/// [`VerifyError::status`] and [`VerifyError::oauth_error`] give the RFC 6750 answer:
/// a missing token is 401 without an error code (section 3.1: the request carried no
/// authentication information), every token that is malformed, badly signed, for someone
/// else, expired, not yet valid, inactive or revoked is 401 `invalid_token`, a valid token
/// without the required scopes is 403 `insufficient_scope`. When the verifier itself cannot
/// decide (the issuer's keys or its introspection endpoint cannot be reached, or the
/// revocation history is still being replayed) the answer is 503: the token may well be
/// good, and a 401 would make the client throw it away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the request carries no bearer token")]
    MissingToken,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's algorithm {0:?} is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("the token is signed by an unknown key ({0:?})")]
    UnknownKey(String),
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token's typ is {0:?}, not at+jwt")]
    WrongType(Option<String>),
    #[error("the token was issued by {0:?}, not by the expected issuer")]
    WrongIssuer(Option<String>),
    #[error("the token is not meant for this audience")]
    WrongAudience,
    #[error("the token lacks the {0} claim or it has the wrong type")]
    MissingClaim(&'static str),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has been revoked")]
    Revoked,
    #[error("the token is not active")]
    Inactive,
    #[error("opaque tokens are not accepted here (no introspection configured)")]
    OpaqueNotAccepted,
    #[error("the token lacks the required scope {}", .required.join(" "))]
    InsufficientScope { required: Vec<String> },
    #[error("the issuer's signing keys are unavailable: {0}")]
    KeysUnavailable(String),
    #[error("the issuer's introspection endpoint is unavailable: {0}")]
    IntrospectionUnavailable(String),
    #[error("the revocation history is still being replayed")]
    RevocationsNotReady,
    /// A JWT that is not a valid back-channel logout token (OIDC Back-Channel Logout 1.0
    /// section 2.6): the reason names the rule.
    #[error("not a valid logout token: {0}")]
    NotALogoutToken(&'static str),
    /// The token is DPoP-bound (`cnf.jkt`) but was presented as a bearer token (RFC 9449
    /// section 7.2).
    #[error("the token is DPoP-bound: present it with Authorization: DPoP and a proof")]
    DpopBound,
    /// `Authorization: DPoP` with a token that is not DPoP-bound.
    #[error("the token is not DPoP-bound")]
    NotDpopBound,
    /// The DPoP proof is missing, malformed, for another request, too old, replayed, or
    /// made with another key than the token's (RFC 9449 section 7.1).
    #[error("invalid DPoP proof: {0}")]
    InvalidDpopProof(String),
    /// The token is bound to a client certificate (`cnf.x5t#S256`, RFC 8705 section 3)
    /// and was presented without it or with another one.
    #[error("the token is bound to a client certificate: present it over mutual TLS")]
    CertificateMismatch,
}

impl VerifyError {
    /// The HTTP status a resource server answers with.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            VerifyError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            VerifyError::KeysUnavailable(_)
            | VerifyError::IntrospectionUnavailable(_)
            | VerifyError::RevocationsNotReady => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 error code: `invalid_token`, `insufficient_scope`, or `None` for a
    /// request without a token (and for the 503 cases, which RFC 6750 does not cover).
    pub fn oauth_error(&self) -> Option<&'static str> {
        match self {
            VerifyError::MissingToken => None,
            VerifyError::InsufficientScope { .. } => Some("insufficient_scope"),
            VerifyError::InvalidDpopProof(_) => Some("invalid_dpop_proof"),
            e if e.status() == http::StatusCode::SERVICE_UNAVAILABLE => None,
            _ => Some("invalid_token"),
        }
    }

    /// True for the errors that say nothing about the token (503).
    pub fn is_unavailable(&self) -> bool {
        self.status() == http::StatusCode::SERVICE_UNAVAILABLE
    }

    /// How long a client should wait before retrying a 503.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        self.is_unavailable().then_some(Duration::from_secs(1))
    }
}

/// A verifier or subscriber that cannot be built as configured.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the issuer {0:?} is not an absolute http(s) URL")]
    Issuer(String),
    #[error("the audience must not be empty")]
    Audience,
    #[error("the algorithm allow-list must not be empty")]
    Algorithms,
    #[error("the introspection endpoint {0:?} is not an absolute http(s) URL")]
    IntrospectionEndpoint(String),
    #[error("the NATS URL {0:?} is not valid: {1}")]
    NatsUrl(String, String),
    #[error("the HTTP client could not be built: {0}")]
    HttpClient(String),
}
