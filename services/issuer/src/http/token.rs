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
use super::user_tokens::Cnf;
use crate::state::AppState;

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub async fn token(State(state): State<AppState>, form: OAuthForm) -> Response {
    let now = now();
    let mut resp = grant(&state, &form, now)
        .await
        .unwrap_or_else(|e| e.into_response_for(&form.headers));
    if state.config.dpop_nonce {
        // RFC 9449 section 8: the nonce to use next, on errors and successes alike.
        super::dpop::add_nonce(&state, resp.headers_mut(), now).await;
    }
    resp
}

/// Authenticates the client and runs the grant `grant_type` names (parsed once).
/// `client_credentials` with a shared secret awaits nothing unless it issues a reference
/// token, so it is answered on the request's first poll; a client assertion (its `jti`) and
/// the other grants need the store.
async fn grant(state: &AppState, form: &OAuthForm, now: i64) -> Result<Response, ProtocolError> {
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    let projection = state.projection.load();
    // RFC 9449 section 5: a DPoP proof binds the tokens to its key. Verified before the
    // client authenticates (a refused proof spends no assertion), spent after.
    let proof = match super::dpop::proof_header(&form.headers)? {
        Some(p) => Some(super::dpop::verify(state, p, "POST", "/oauth2/token", None, now).await?),
        None => None,
    };
    let client = authenticate(state, &projection, form, "/oauth2/token", now).await?;
    let proof = match proof {
        Some(p) => Some(super::dpop::spend(state, p).await?),
        None if client.client.require_dpop => {
            return Err(super::dpop::invalid_proof(
                "this client must send a DPoP proof (requireDPoP)",
            )
            .into())
        }
        None => None,
    };
    // RFC 8705 section 3: a client certificate binds the access token, whatever the
    // client authentication (checked by `authenticate`: a refused certificate failed it).
    // With a DPoP proof as well, the token is bound to the DPoP key only: one proof of
    // possession per token, which every resource server can check with one method.
    let cert = super::client_cert::PresentedCert::certificate(form.cert.as_ref())?;
    let cnf = Cnf {
        jkt: proof.as_ref().map(|p| p.jkt.as_str()),
        x5t: cert
            .filter(|_| proof.is_none())
            .map(|c| c.facts.thumbprint.as_str()),
    };
    let Some(grant) = TokenGrantType::parse(grant_type) else {
        return Err(OAuthError::unsupported_grant_type(format!(
            "grant_type {:?} is not supported",
            grant_type.chars().take(64).collect::<String>()
        ))
        .into());
    };
    match grant {
        TokenGrantType::ClientCredentials => {
            use grants::client_credentials::{self, Issued};
            match client_credentials::grant(state, &projection, &client, form, cnf, now)? {
                Issued::Response(r) => Ok(r),
                Issued::Reference {
                    claims,
                    lifetime,
                    scope,
                    token_type,
                } => {
                    client_credentials::store_reference(
                        state, &claims, lifetime, &scope, token_type,
                    )
                    .await
                }
            }
        }
        TokenGrantType::AuthorizationCode => {
            grants::authorization_code::grant(state, &projection, &client, form, cnf, now).await
        }
        TokenGrantType::RefreshToken => {
            grants::refresh_token::grant(state, &projection, &client, form, cnf, now).await
        }
        TokenGrantType::TokenExchange => {
            grants::token_exchange::grant(state, &projection, &client, form, cnf, now).await
        }
        TokenGrantType::DeviceCode => {
            grants::device_code::grant(state, &projection, &client, form, cnf, now).await
        }
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
