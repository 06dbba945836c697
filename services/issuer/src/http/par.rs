//! `POST /oauth2/par`: pushed authorization requests (RFC 9126). The client authenticates
//! as at the token endpoint (every method of `client_auth`), the request is checked exactly
//! as the authorization endpoint checks it (`signet_core::authorize`), and kept once in the
//! store under the digest of a random `request_uri` for [`PAR_LIFETIME`] seconds, bound to
//! the client. The authorization endpoint then takes `request_uri` + `client_id`
//! ([`take`]) and uses only the pushed parameters. A push may carry a signed request
//! object (`request`, RFC 9126 section 3): then only its verified parameters are stored
//! (`request_object::resolve`); a `requireRequestObject` client must push one.
//!
//! Must not: redirect (errors are JSON, RFC 9126 section 2.3), or accept a `request_uri`
//! inside a pushed request (section 2.1).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use signet_core::authorize::{check_client, check_request, Params};
use signet_core::oauth::{ErrorCode, OAuthError};
use signet_store::Namespace;

use super::browser::{check_lengths, digest_key, random_token, PageParams, StoreResult};
use super::client_auth::authenticate;
use super::error::{no_store, ProtocolError};
use super::form::OAuthForm;
use super::request_object::resolve;
use super::token::now;
use crate::state::AppState;

/// Seconds a pushed request stays usable (`expires_in`); RFC 9126 section 2.2 suggests a
/// short lifetime (5 to 600 seconds).
pub const PAR_LIFETIME: u64 = 60;
/// The prefix of every `request_uri` this endpoint hands out (RFC 9126 section 2.2).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// Parameters that authenticate the client at this endpoint and are not part of the
/// authorization request.
const AUTH_PARAMS: &[&str] = &["client_secret", "client_assertion", "client_assertion_type"];

/// A pushed request as stored: the client it is bound to and its parameters.
#[derive(Debug, Serialize, Deserialize)]
struct Pushed {
    client_id: String,
    params: Vec<(String, String)>,
    /// Whether the parameters came from a verified request object (`requireRequestObject`).
    #[serde(default)]
    signed: bool,
}

/// A pushed request taken at the authorization endpoint.
pub struct Taken {
    pub params: PageParams,
    /// Whether it was pushed as a verified request object.
    pub signed: bool,
}

pub async fn par(State(state): State<AppState>, form: OAuthForm) -> Response {
    let mut r = match push(&state, &form).await {
        Ok(r) => r,
        Err(e) => e.into_response_for(&form.headers),
    };
    if state.config.dpop_nonce {
        super::dpop::add_nonce(&state, r.headers_mut(), now()).await;
    }
    r
}

async fn push(state: &AppState, form: &OAuthForm) -> Result<Response, ProtocolError> {
    let now = now();
    let p = state.projection.load();
    // A DPoP proof is verified before the client authenticates (a refused proof spends no
    // assertion), and spent once it has.
    let proof = match super::dpop::proof_header(&form.headers)? {
        Some(proof) => {
            Some(super::dpop::verify(state, proof, "POST", "/oauth2/par", None, now).await?)
        }
        None => None,
    };
    let client = authenticate(state, &p, form, "/oauth2/par", now).await?;
    let proof = match proof {
        Some(proof) => Some(super::dpop::spend(state, proof).await?),
        None => None,
    };
    let client_id = client.client.client_id.clone();
    if form.get("request_uri").is_some() {
        return Err(OAuthError::invalid_request(
            "request_uri must not be pushed (RFC 9126 section 2.1)",
        )
        .into());
    }
    check_lengths(form.params())?;
    // The request as the authorization endpoint will see it: without the credentials, and
    // with the client_id of the authenticated client (Basic carries it outside the body).
    let mut params: Vec<(String, String)> = form
        .params()
        .iter()
        .filter(|(k, _)| !AUTH_PARAMS.contains(&k.as_str()) && k != "client_id")
        .cloned()
        .collect();
    params.push(("client_id".to_owned(), client_id.clone()));
    let mut page = PageParams(params);
    // RFC 9126 section 3: a signed request object's parameters, and only they, are pushed
    // (its client_id must be the authenticated client's).
    let signed = page.get("request").is_some();
    if signed {
        let remote = super::request_object::published_keys(state, &page, Some(&client_id)).await?;
        page = resolve(
            &p,
            &page,
            Some(&client_id),
            state.config.issuer.as_str(),
            now,
            remote.as_deref().map_or(&[][..], Vec::as_slice),
        )?;
        page.0.retain(|(k, _)| k != "client_id");
        page.0.push(("client_id".to_owned(), client_id.clone()));
    } else if client.client.require_request_object {
        return Err(OAuthError::invalid_request(
            "this client must send its authorization requests as signed request objects (the request parameter, RFC 9101)",
        )
        .into());
    }
    // RFC 9449 section 10.1: a DPoP proof with the push binds the code to its key, as
    // `dpop_jkt` does (both must then name the same key).
    if let Some(proof) = proof {
        match page.get("dpop_jkt") {
            Some(jkt) if jkt != proof.jkt => {
                return Err(super::dpop::invalid_proof(
                    "dpop_jkt names another key than the DPoP proof's",
                )
                .into())
            }
            Some(_) => {}
            None => page.0.push(("dpop_jkt".to_owned(), proof.jkt)),
        }
    }
    // RFC 9126 section 2.1: the same checks as the authorization endpoint; errors are
    // answered here, as JSON, never by a redirect.
    let (entry, redirect_uri) =
        check_client(&p, &page).map_err(|e| OAuthError::new(e.error, e.description))?;
    check_request(&p, entry, &redirect_uri, &page).map_err(|e| e.error)?;

    let request_uri = format!("{REQUEST_URI_PREFIX}{}", random_token()?);
    let bytes = serde_json::to_vec(&Pushed {
        client_id,
        params: page.0,
        signed,
    })
    .map_err(|_| OAuthError::server_error("pushed request"))?;
    state
        .store
        .put(
            Namespace::PushedAuthorizationRequest,
            &digest_key(&request_uri),
            &bytes,
            Duration::from_secs(PAR_LIFETIME),
            &[],
        )
        .await
        .or_unavailable()?;
    let mut r = (
        StatusCode::CREATED,
        axum::Json(json!({"request_uri": request_uri, "expires_in": PAR_LIFETIME})),
    )
        .into_response();
    no_store(r.headers_mut());
    Ok(r)
}

/// The 405 answer for other methods, in RFC 6749 form (RFC 9126 section 2: POST only).
pub async fn method_not_allowed() -> Response {
    let mut r = ProtocolError::with_status(
        OAuthError::invalid_request("the pushed authorization request endpoint accepts only POST"),
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .into_response();
    r.headers_mut().insert(
        axum::http::header::ALLOW,
        axum::http::HeaderValue::from_static("POST"),
    );
    r
}

fn invalid_uri(description: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequestUri, description)
}

/// Whether an authorization request refers to a pushed request.
pub fn is_pushed_reference(request_uri: &str) -> bool {
    request_uri.starts_with(REQUEST_URI_PREFIX)
}

/// The pushed parameters `request_uri` stands for, consumed: once, by the client it was
/// pushed by (RFC 9126 section 4). An unknown, expired, used or another client's
/// `request_uri` is `invalid_request_uri`; another client's is left usable by its own.
pub async fn take(
    state: &AppState,
    request_uri: &str,
    client_id: Option<&str>,
) -> Result<Taken, OAuthError> {
    let client_id =
        client_id.ok_or_else(|| OAuthError::invalid_request("the request has no client_id"))?;
    let key = digest_key(request_uri);
    let gone = "the request_uri is unknown, expired or already used";
    let stored = state
        .store
        .get(Namespace::PushedAuthorizationRequest, &key)
        .await
        .or_unavailable()?
        .ok_or_else(|| invalid_uri(gone))?;
    let pushed: Pushed = serde_json::from_slice(&stored).map_err(|_| invalid_uri(gone))?;
    if pushed.client_id != client_id {
        return Err(invalid_uri("the request_uri was pushed by another client"));
    }
    // Of racing uses, exactly one consumes it.
    state
        .store
        .consume(Namespace::PushedAuthorizationRequest, &key)
        .await
        .or_unavailable()?
        .ok_or_else(|| invalid_uri(gone))?;
    Ok(Taken {
        params: PageParams(pushed.params),
        signed: pushed.signed,
    })
}
