//! `grant_type=authorization_code` (RFC 6749 section 4.1.3, RFC 7636 section 4.5, OIDC
//! Core section 3.1.3): the code is consumed exactly once (however many nodes race for
//! it), must belong to the authenticated client, the redirect URI must match, and the PKCE
//! verifier must match the challenge. The answer carries an access token and, for OpenID
//! Connect requests, an ID token.

use crate::http::user_tokens::Cnf;
use axum::response::Response;
use serde_json::json;
use signet_core::client::GrantType;
use signet_core::oauth::OAuthError;
use signet_core::projection::{ClientEntry, Projection};
use signet_store::Namespace;

use crate::http::browser::{digest_key, StoreResult};
use crate::http::error::ProtocolError;
use crate::http::form::OAuthForm;
use crate::http::user_tokens::{self, Alongside, UserGrant};
use crate::state::AppState;

/// How long a redeemed code is remembered (longer than any code lives).
const REDEEMED_MEMORY_SECS: u64 = 24 * 3600;
/// Bound on what a session's tokens may live after the code was redeemed (the default
/// absolute refresh-token lifetime, 30 days).
const LONGEST_TOKEN_SECS: i64 = 30 * 24 * 3600;

#[derive(serde::Serialize, serde::Deserialize)]
struct Redeemed {
    sid: String,
    /// The refresh-token family the code started, which may outlive the session
    /// (`coordinateLifetimeWithUserSession` false): a replay ends it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    family: Option<String>,
}

/// A code presented again after it was redeemed (RFC 6749 section 4.1.2, RFC 9700 section
/// 4.5): someone else holds it. The sign-in session it came from ends, with every code and
/// consent tied to it.
async fn replayed(state: &AppState, key: &str) -> Result<(), OAuthError> {
    let Some(bytes) = state
        .store
        .consume(Namespace::ReplayGuard, &format!("code:{key}"))
        .await
        .or_unavailable()?
    else {
        return Ok(());
    };
    if let Ok(r) = serde_json::from_slice::<Redeemed>(&bytes) {
        tracing::warn!(sid = %r.sid, "an authorization code was replayed; revoking its session");
        let now = crate::http::token::now();
        match crate::http::sessions::by_sid(state, &r.sid).await? {
            // Still live: it ends the way every session ends.
            Some(session) => {
                crate::http::sessions::end(state, session, now).await?;
            }
            None => {
                state
                    .store
                    .delete_by_session(&r.sid)
                    .await
                    .or_unavailable()?;
            }
        }
        if let Some(family) = &r.family {
            let revocation = signet_verify::revocation::Revocation {
                target: signet_verify::revocation::Target::Family {
                    family: family.clone(),
                },
                exp: now + REDEEMED_MEMORY_SECS as i64 + LONGEST_TOKEN_SECS,
                at: now,
            };
            state.revocations.revoke(revocation).await.map_err(|e| {
                tracing::error!(error = %e, "could not publish a family revocation");
                OAuthError::new(
                    signet_core::oauth::ErrorCode::TemporarilyUnavailable,
                    "retry shortly",
                )
            })?;
            state.store.delete_family(family).await.or_unavailable()?;
        }
        // Every token issued in that session carries its `sid`: revoke them all.
        let revocation = signet_verify::revocation::Revocation {
            target: signet_verify::revocation::Target::Session { sid: r.sid },
            exp: now + REDEEMED_MEMORY_SECS as i64 + LONGEST_TOKEN_SECS,
            at: now,
        };
        state.revocations.revoke(revocation).await.map_err(|e| {
            tracing::error!(error = %e, "could not publish a session revocation");
            OAuthError::new(
                signet_core::oauth::ErrorCode::TemporarilyUnavailable,
                "retry shortly",
            )
        })?;
    }
    Ok(())
}

pub async fn grant(
    state: &AppState,
    p: &Projection,
    client: &ClientEntry,
    form: &OAuthForm,
    cnf: Cnf<'_>,
    now: i64,
) -> Result<Response, ProtocolError> {
    if !client.allows(GrantType::AuthorizationCode) && !client.allows(GrantType::Hybrid) {
        return Err(OAuthError::unauthorized_client(
            "the client may not use the authorization_code grant",
        )
        .into());
    }
    let code = form
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    // RFC 8707: checked before the code is consumed, so a typo does not burn it.
    let resources = form.resources()?;
    if code.len() > 128 {
        return Err(OAuthError::invalid_grant("the code is invalid, expired or used").into());
    }
    let key = digest_key(code);
    let Some(bytes) = state
        .store
        .consume(Namespace::AuthorizationCode, &key)
        .await
        .or_unavailable()?
    else {
        replayed(state, &key).await?;
        return Err(OAuthError::invalid_grant("the code is invalid, expired or used").into());
    };
    let grant: UserGrant = serde_json::from_slice(&bytes)
        .map_err(|_| OAuthError::invalid_grant("the code is invalid, expired or used"))?;
    if grant.client_id != client.client.client_id
        || !crate::http::introspect::client_holds(p, &grant.client_id, grant.client_gen)
    {
        return Err(OAuthError::invalid_grant("the code was issued to another client").into());
    }
    match form.get("redirect_uri") {
        Some(uri) if uri != grant.redirect_uri => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri differs from the authorization request's",
            )
            .into())
        }
        None if grant.redirect_uri_explicit => {
            return Err(OAuthError::invalid_request(
                "redirect_uri is required: the authorization request had one",
            )
            .into())
        }
        _ => {}
    }
    match (&grant.code_challenge, form.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => {
            if !challenge.verify(verifier) {
                return Err(OAuthError::invalid_grant(
                    "code_verifier does not match the challenge",
                )
                .into());
            }
        }
        (Some(_), None) => {
            return Err(OAuthError::invalid_grant("code_verifier is required (PKCE)").into())
        }
        // RFC 9700 section 2.1.1: a verifier for a code issued without a challenge is a
        // downgrade attempt.
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "the authorization request had no code_challenge",
            )
            .into())
        }
        (None, None) => {}
    }
    // RFC 9449 section 10: a code bound with `dpop_jkt` needs a proof with that key.
    user_tokens::check_dpop_binding(&grant, cnf)?;
    let user = user_tokens::active_user(state, &grant.sub).await?;
    let issue = Issue {
        code_key: Some(&key),
        cnf,
    };
    issue_tokens(state, p, client, &grant, resources, &user, issue, now).await
}

/// The token response for a user's grant (a redeemed code or an approved device code): an
/// access token, a refresh token when `offline_access` was granted to a client that allows
/// it, and an ID token for OpenID Connect grants.
#[allow(clippy::too_many_arguments)] // the grant, what narrows it, and its DPoP key
pub async fn tokens(
    state: &AppState,
    p: &Projection,
    client: &ClientEntry,
    grant: &UserGrant,
    resources: Vec<String>,
    user: &signet_core::user::UserRecord,
    cnf: Cnf<'_>,
    now: i64,
) -> Result<Response, ProtocolError> {
    let issue = Issue {
        code_key: None,
        cnf,
    };
    issue_tokens(state, p, client, grant, resources, user, issue, now).await
}

/// Where tokens come from and what they are bound to.
struct Issue<'a> {
    /// The redeemed code's store key, if any.
    code_key: Option<&'a str>,
    /// The DPoP key of the request's proof, if any.
    cnf: Cnf<'a>,
}

/// [`tokens`], remembering the redemption of the code stored under `code_key` (if any):
/// presenting it again ends what it started.
#[allow(clippy::too_many_arguments)] // the grant, what narrows it, and where it came from
async fn issue_tokens(
    state: &AppState,
    p: &Projection,
    client: &ClientEntry,
    grant: &UserGrant,
    resources: Vec<String>,
    user: &signet_core::user::UserRecord,
    issue: Issue<'_>,
    now: i64,
) -> Result<Response, ProtocolError> {
    let Issue { code_key, cnf } = issue;
    // RFC 8707: the access token is for the requested resources (among those granted);
    // the refresh token keeps the whole grant.
    let access_grant = grant.for_resources(p, resources, state.config.default_algorithm)?;
    // offline_access granted to a client that allows it: a refresh-token family.
    let refresh = if client.client.allow_offline_access
        && grant
            .scopes
            .iter()
            .any(|s| s == signet_core::commands::OFFLINE_ACCESS)
    {
        // RFC 9449 section 5: a public client's refresh tokens are bound to its DPoP key
        // (a confidential client's are bound to its authentication instead).
        let mut family_grant = grant.clone();
        // RFC 8705 section 4: and to its client certificate, likewise.
        let public = !client.client.require_client_secret;
        family_grant.dpop_jkt = cnf.jkt.filter(|_| public).map(str::to_owned);
        family_grant.mtls_x5t = cnf.x5t.filter(|_| public).map(str::to_owned);
        Some(super::refresh_token::issue(state, p, client, &family_grant, &user.claims, now).await?)
    } else {
        None
    };
    let family = refresh.as_deref().and_then(super::refresh_token::family_of);
    // Remember the redemption: presenting this code again ends what it started.
    if let Some(key) = code_key {
        let marker = serde_json::to_vec(&Redeemed {
            sid: grant.sid.clone(),
            family: family.map(str::to_owned),
        })
        .map_err(|_| OAuthError::server_error("code"))?;
        // Tied to what it can end: a family that outlives the session keeps the marker past
        // the session's end (a replay after sign-out still ends the family); otherwise the
        // session's end takes it along.
        let outliving = family.filter(|_| !client.client.coordinate_lifetime_with_user_session);
        let index = match outliving {
            Some(f) => vec![
                signet_store::Index::Family(f),
                signet_store::Index::Subject(&grant.sub),
            ],
            None => vec![signet_store::Index::Session(&grant.sid)],
        };
        state
            .store
            .put(
                Namespace::ReplayGuard,
                &format!("code:{key}"),
                &marker,
                std::time::Duration::from_secs(REDEEMED_MEMORY_SECS),
                &index,
            )
            .await
            .or_unavailable()?;
    }
    let (access_token, lifetime) = user_tokens::access_token_in_family(
        state,
        p,
        client,
        &access_grant,
        &user.claims,
        family,
        cnf,
        now,
    )
    .await?;
    let mut body = json!({
        "access_token": access_token,
        "token_type": user_tokens::token_type(cnf),
        "expires_in": lifetime,
        "scope": access_grant.scopes.join(" "),
    });
    if let Some(r) = refresh {
        body["refresh_token"] = r.into();
    }
    if grant.scopes.iter().any(|s| s == "openid") {
        let alongside = Alongside {
            access_token: Some(&access_token),
            code: None,
            user_claims: false,
        };
        let id = user_tokens::id_token(state, p, client, grant, alongside, now).await?;
        body["id_token"] = id.into();
    }
    let mut resp = axum::response::IntoResponse::into_response(axum::Json(body));
    crate::http::error::no_store(resp.headers_mut());
    Ok(resp)
}
