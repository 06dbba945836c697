//! OAuth 2.0 protocol errors (RFC 6749 section 5.2 and friends). `Display` gives the exact
//! error code; the description is separate and never contains secrets.

use std::borrow::Cow;
use std::fmt;

/// The error codes Signet returns, each with the section that defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// RFC 6749 section 5.2: missing, repeated or malformed parameter.
    InvalidRequest,
    /// RFC 6749 section 5.2: client authentication failed (unknown client, wrong or
    /// expired secret, no authentication where it is required). Answered with 401.
    InvalidClient,
    /// RFC 6749 section 5.2: grant (code, refresh token) invalid, expired or revoked.
    InvalidGrant,
    /// RFC 6749 section 5.2: the client may not use this grant type.
    UnauthorizedClient,
    /// RFC 6749 section 5.2: the grant type is not supported by this server.
    UnsupportedGrantType,
    /// RFC 6749 section 5.2: a requested scope is unknown, disabled or not allowed.
    InvalidScope,
    /// RFC 6749 section 4.1.2.1: an unexpected condition (never caused by input).
    ServerError,
    /// RFC 6749 section 4.1.2.1: the server is temporarily unable to handle the request.
    TemporarilyUnavailable,
    /// RFC 6750 section 3.1: the access token is expired, revoked, malformed or invalid.
    InvalidToken,
    /// RFC 6750 section 3.1: the token lacks a required scope.
    InsufficientScope,
    /// RFC 6749 section 4.1.2.1: the response type is not supported.
    UnsupportedResponseType,
    /// RFC 6749 section 4.1.2.1: the user or the server denied the request.
    AccessDenied,
    /// OIDC Core section 3.1.2.6: `prompt=none` and nobody is signed in.
    LoginRequired,
    /// OIDC Core section 3.1.2.6: `prompt=none` and consent is needed.
    ConsentRequired,
    /// OIDC Core section 3.1.2.6: `prompt=none` and some other interaction is needed.
    InteractionRequired,
    /// OIDC Core section 3.1.2.6: the `request` parameter is not supported.
    RequestNotSupported,
    /// OIDC Core section 3.1.2.6: the `request_uri` parameter is not supported.
    RequestUriNotSupported,
    /// RFC 9101 section 7 (used by RFC 9126): the `request_uri` is unknown, expired, already
    /// used or another client's.
    InvalidRequestUri,
    /// RFC 9101 section 6.3: the request object (`request`) is invalid: malformed, unsigned,
    /// not signed with the client's key, expired, or for another issuer or client.
    InvalidRequestObject,
    /// RFC 8628 section 3.5: the user has not yet approved or denied the device request.
    AuthorizationPending,
    /// RFC 8628 section 3.5: still pending, and the client polls too fast (its interval
    /// grows by 5 seconds).
    SlowDown,
    /// RFC 8628 section 3.5: the device code expired before the user decided.
    ExpiredToken,
    /// RFC 8707 section 2: a `resource` is invalid, unknown, or not usable with the
    /// requested scopes.
    InvalidTarget,
    /// RFC 9449 section 5: the DPoP proof is missing where required, malformed, badly
    /// signed, for another request, too old or replayed.
    InvalidDpopProof,
    /// RFC 9449 section 8: the DPoP proof must carry the server's nonce (given in the
    /// `DPoP-Nonce` header of the answer).
    UseDpopNonce,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::InteractionRequired => "interaction_required",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::RequestUriNotSupported => "request_uri_not_supported",
            ErrorCode::InvalidRequestUri => "invalid_request_uri",
            ErrorCode::InvalidRequestObject => "invalid_request_object",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
        }
    }
}

/// A protocol error with a human-readable description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .code.as_str())]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: description.into(),
        }
    }
    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    pub fn invalid_scope(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, d)
    }
    pub fn unauthorized_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, d)
    }
    pub fn unsupported_grant_type(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::UnsupportedGrantType, d)
    }
    pub fn server_error(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::ServerError, d)
    }
    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_target(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidTarget, d)
    }
}

/// Grant types the token endpoint knows, parsed at the edge (RFC 6749 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenGrantType {
    ClientCredentials,
    AuthorizationCode,
    RefreshToken,
    TokenExchange,
    /// RFC 8628 section 3.4.
    DeviceCode,
}

impl TokenGrantType {
    /// `None`: not a grant type this server supports (`unsupported_grant_type`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_credentials" => Some(TokenGrantType::ClientCredentials),
            "authorization_code" => Some(TokenGrantType::AuthorizationCode),
            "refresh_token" => Some(TokenGrantType::RefreshToken),
            "urn:ietf:params:oauth:grant-type:token-exchange" => {
                Some(TokenGrantType::TokenExchange)
            }
            "urn:ietf:params:oauth:grant-type:device_code" => Some(TokenGrantType::DeviceCode),
            _ => None,
        }
    }
}

impl fmt::Display for TokenGrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenGrantType::ClientCredentials => "client_credentials",
            TokenGrantType::AuthorizationCode => "authorization_code",
            TokenGrantType::RefreshToken => "refresh_token",
            TokenGrantType::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
            TokenGrantType::DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_rfc_code() {
        assert_eq!(
            OAuthError::invalid_client("x").to_string(),
            "invalid_client"
        );
        assert_eq!(
            ErrorCode::UnsupportedGrantType.as_str(),
            "unsupported_grant_type"
        );
        assert_eq!(
            TokenGrantType::parse("client_credentials"),
            Some(TokenGrantType::ClientCredentials)
        );
        assert_eq!(TokenGrantType::parse("password"), None);
    }
}
