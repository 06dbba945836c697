//! `grant_type=urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693): a client that
//! may use token exchange trades a user's API key (`subject_token`, of type
//! `urn:ietf:params:oauth:token-type:access_token`) for a short-lived JWT access token for
//! that user, with the key's scopes or fewer (`scope`). The token carries the key's id as
//! its `family`, so revoking the key revokes what was exchanged for it.

use crate::http::user_tokens::Cnf;
use axum::response::Response;
use serde_json::json;
use signet_core::client::GrantType;
use signet_core::oauth::OAuthError;
use signet_core::projection::{ClientEntry, Projection};

use crate::http::error::ProtocolError;
use crate::http::form::OAuthForm;
use crate::http::user_tokens::{self, UserGrant};
use crate::state::AppState;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

pub async fn grant(
    state: &AppState,
    p: &Projection,
    client: &ClientEntry,
    form: &OAuthForm,
    cnf: Cnf<'_>,
    now: i64,
) -> Result<Response, ProtocolError> {
    if !client.allows(GrantType::TokenExchange) {
        return Err(
            OAuthError::unauthorized_client("the client may not use token exchange").into(),
        );
    }
    let subject = form
        .get("subject_token")
        .ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
    match form.get("subject_token_type") {
        Some(ACCESS_TOKEN_TYPE) => {}
        Some(_) => return Err(OAuthError::invalid_request(
            "subject_token_type must be urn:ietf:params:oauth:token-type:access_token (an API key)",
        )
        .into()),
        None => return Err(OAuthError::invalid_request("subject_token_type is required").into()),
    }
    if let Some(t) = form.get("requested_token_type") {
        if t != ACCESS_TOKEN_TYPE {
            return Err(OAuthError::invalid_request(
                "only access tokens can be requested (requested_token_type)",
            )
            .into());
        }
    }
    let invalid = || OAuthError::invalid_grant("the subject token is not a valid API key");
    let id = signet_core::api_key::key_id(subject).ok_or_else(invalid)?;
    let claims = crate::http::introspect::api_key(state, p, subject, id, now)
        .await?
        .ok_or_else(invalid)?;
    let key_scopes: Vec<String> = claims
        .get("scope")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let scopes = match form.get("scope") {
        None => key_scopes,
        Some(asked) => {
            let asked: Vec<&str> = asked.split(' ').filter(|s| !s.is_empty()).collect();
            if let Some(s) = asked.iter().find(|s| !key_scopes.iter().any(|k| k == *s)) {
                return Err(
                    OAuthError::invalid_scope(format!("the API key does not grant {s:?}")).into(),
                );
            }
            key_scopes
                .into_iter()
                .filter(|k| asked.contains(&k.as_str()))
                .collect()
        }
    };
    // The key's scopes are already only those the user may hold on a key now (the
    // operator's allow-list, never the admin scope: `introspect::api_key` drops the rest),
    // so the answer is never wider. The client, too, must be allowed every scope it passes
    // on.
    if let Some(s) = scopes
        .iter()
        .find(|s| !client.client.allowed_scopes.iter().any(|a| a == *s))
    {
        return Err(
            OAuthError::invalid_scope(format!("the client is not allowed scope {s:?}")).into(),
        );
    }
    let sub = claims
        .get("sub")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let grant = UserGrant {
        client_id: client.client.client_id.clone(),
        client_gen: client.incarnation,
        redirect_uri: String::new(),
        redirect_uri_explicit: false,
        sub,
        scopes,
        nonce: None,
        sid: format!("apikey-{id}"),
        auth_time: claims.get("iat").and_then(|v| v.as_i64()).unwrap_or(now),
        amr: vec!["apikey".into()],
        code_challenge: None,
        resources: Vec::new(),
        dpop_jkt: None,
        mtls_x5t: None,
        idp: None,
    };
    let user = user_tokens::active_user(state, &grant.sub).await?;
    let (access_token, lifetime) = user_tokens::access_token_in_family(
        state,
        p,
        client,
        &grant,
        &user.claims,
        Some(id),
        cnf,
        now,
    )
    .await?;
    let mut resp = axum::response::IntoResponse::into_response(axum::Json(json!({
        "access_token": access_token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": user_tokens::token_type(cnf),
        "expires_in": lifetime,
        "scope": grant.scopes.join(" "),
    })));
    crate::http::error::no_store(resp.headers_mut());
    Ok(resp)
}
