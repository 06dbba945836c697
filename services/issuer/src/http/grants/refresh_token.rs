//! Refresh tokens (RFC 6749 sections 1.5 and 6, RFC 9700 section 4.14): issued with a code
//! when the user granted `offline_access` to a client with `allowOfflineAccess`, kept as
//! families in the store, one family per grant.
//!
//! A refresh token is `<family id>.<secret>`; the store keeps the SHA-256 of the whole token.
//! One-time tokens (`refreshTokenUsage: 1`) rotate atomically: presenting the current token
//! retires it and returns a new one; presenting a retired token again is reuse — the family
//! is deleted and a family revocation is published, which also kills the access tokens
//! issued from it (they carry the `family` claim). Of two nodes racing on one token, exactly
//! one wins. Reusable tokens (`refreshTokenUsage: 0`) stay the same.
//!
//! Lifetime: `refreshTokenExpiration: 1` (absolute) — the family dies
//! `absoluteRefreshTokenLifetime` after the grant; `0` (sliding) — each one-time rotation
//! extends it by `slidingRefreshTokenLifetime`, never beyond the absolute lifetime.
//!
//! Claims: a refreshed access token carries the user claims of the grant (kept in the
//! family's record), or with `updateAccessTokenClaimsOnRefresh` the user's current ones.
//! Either way the user must still exist and be enabled.

use crate::http::user_tokens::Cnf;
use std::time::Duration;

use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use signet_core::authorize::access_token_claims;
use signet_core::client::{GrantType, TokenExpiration, TokenUsage};
use signet_core::oauth::OAuthError;
use signet_core::projection::{ClientEntry, Projection};
use signet_store::{Index, Rotation};
use signet_verify::revocation::{Revocation, Target, TokenFacts};

use crate::http::browser::{ct_eq, digest_key, random_token, StoreResult};
use crate::http::error::ProtocolError;
use crate::http::form::OAuthForm;
use crate::http::user_tokens::{self, Alongside, UserGrant};
use crate::state::AppState;

/// What a refresh token stands for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub grant: UserGrant,
    /// The user claims the grant's access tokens carry, as they were at the grant: what a
    /// refresh puts in the new access token unless the client has
    /// `updateAccessTokenClaimsOnRefresh` (then the user's current claims). Absent in
    /// families created before it was kept: the current claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_claims: Option<Map<String, Value>>,
    /// When the family was created (the grant).
    pub created_at: i64,
    /// When the family dies at the latest.
    pub absolute_exp: i64,
    /// Whether the family ends with the session it was created in (the client's
    /// `coordinateLifetimeWithUserSession` at the grant). Families created before it was
    /// kept were tied to their session: true.
    #[serde(default = "tied_by_default")]
    pub coordinated: bool,
}

fn tied_by_default() -> bool {
    true
}

/// The `sid` the access tokens refreshed from a family that outlives its session carry
/// (never a session's: a session id is 22 characters of base64url).
pub fn offline_sid(family: &str) -> String {
    format!("offline-{family}")
}

impl RefreshRecord {
    /// The session the family's tokens belong to, for revocation checks and for the `sid`
    /// of the access tokens refreshed from it: the sign-in session when the family is
    /// coordinated with it, else the family's own pseudo session ([`offline_sid`]), which
    /// no session revocation names.
    pub fn token_sid(&self, family: &str) -> String {
        if self.coordinated {
            self.grant.sid.clone()
        } else {
            offline_sid(family)
        }
    }
}

/// The grant a refresh's access token is issued from: a narrower scope may be asked for
/// (RFC 6749 section 6), never a wider one; a narrower resource (RFC 8707), never another.
fn narrowed(
    p: &Projection,
    grant: &UserGrant,
    form: &OAuthForm,
    resources: &[String],
    default_alg: signet_core::Algorithm,
) -> Result<UserGrant, OAuthError> {
    let mut grant = grant.clone();
    if let Some(scope) = form.get("scope") {
        let asked: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
        if asked.iter().any(|s| !grant.scopes.iter().any(|g| g == s)) {
            return Err(OAuthError::invalid_scope(
                "a refresh may not ask for a scope the grant does not have",
            ));
        }
        grant.scopes.retain(|g| asked.contains(&g.as_str()));
    }
    grant.for_resources(p, resources.to_vec(), default_alg)
}

/// A new refresh token for `grant`: `<family>.<secret>`, with its family created in the
/// store, keeping the access-token claims of `user_claims` (the user's, now). Returns the
/// token.
pub async fn issue(
    state: &AppState,
    p: &Projection,
    client: &ClientEntry,
    grant: &UserGrant,
    user_claims: &Map<String, Value>,
    now: i64,
) -> Result<String, OAuthError> {
    let c = &client.client;
    let family = random_token()?[..22].to_owned();
    let token = format!("{family}.{}", random_token()?);
    let absolute_exp = now + i64::from(c.absolute_refresh_token_lifetime.max(1));
    let coordinated = c.coordinate_lifetime_with_user_session;
    let record = RefreshRecord {
        grant: grant.clone(),
        access_claims: Some(access_token_claims(p, &grant.scopes, user_claims)),
        created_at: now,
        absolute_exp,
        coordinated,
    };
    // OpenID Connect Back-Channel Logout 1.0 section 2.7: an offline_access refresh token
    // (the only kind Signet issues) outlives the session unless the client coordinates
    // them; then ending the session deletes the family with everything else tied to it.
    let mut index = vec![Index::Subject(&grant.sub)];
    if coordinated {
        index.push(Index::Session(&grant.sid));
    }
    let value = serde_json::to_vec(&record).map_err(|_| OAuthError::server_error("refresh"))?;
    state
        .store
        .create_family(
            &family,
            &digest_key(&token),
            &value,
            first_ttl(client, now, absolute_exp),
            &index,
        )
        .await
        .or_unavailable()?;
    if sliding_reuse(client) {
        slide(state, client, &family, absolute_exp, now).await?;
    }
    Ok(token)
}

/// Reusable tokens with sliding expiry: the token never changes, so the window lives in an
/// entry of its own, tied to the family and renewed at each use.
fn sliding_reuse(client: &ClientEntry) -> bool {
    let c = &client.client;
    c.refresh_token_usage == TokenUsage::ReUse
        && c.refresh_token_expiration == TokenExpiration::Sliding
}

/// (Re)opens a reusable family's sliding window: `slidingRefreshTokenLifetime` from now,
/// never past the absolute end.
async fn slide(
    state: &AppState,
    client: &ClientEntry,
    family: &str,
    absolute_exp: i64,
    now: i64,
) -> Result<(), OAuthError> {
    let secs = (absolute_exp - now)
        .min(i64::from(
            client.client.sliding_refresh_token_lifetime.max(1),
        ))
        .max(1);
    state
        .store
        .put(
            signet_store::Namespace::SlidingWindow,
            family,
            b"1",
            Duration::from_secs(secs as u64),
            &[Index::Family(family)],
        )
        .await
        .or_unavailable()
}

fn first_ttl(client: &ClientEntry, now: i64, absolute_exp: i64) -> Duration {
    let c = &client.client;
    let remaining = (absolute_exp - now).max(1);
    let secs = match (c.refresh_token_expiration, c.refresh_token_usage) {
        (TokenExpiration::Sliding, TokenUsage::OneTimeOnly) => {
            remaining.min(i64::from(c.sliding_refresh_token_lifetime.max(1)))
        }
        _ => remaining,
    };
    Duration::from_secs(secs as u64)
}

/// The family id of a refresh token, if it has the shape.
pub fn family_of(token: &str) -> Option<&str> {
    let (family, secret) = token.split_once('.')?;
    (family.len() == 22 && !secret.is_empty() && !secret.contains('.')).then_some(family)
}

/// The live record of a presented refresh token, if it is its family's current one.
pub async fn lookup(state: &AppState, token: &str) -> Result<Option<RefreshRecord>, OAuthError> {
    let Some(family) = family_of(token) else {
        return Ok(None);
    };
    let Some(current) = state.store.family_token(family).await.or_unavailable()? else {
        return Ok(None);
    };
    if !ct_eq(&current.key, &digest_key(token)) {
        return Ok(None);
    }
    Ok(serde_json::from_slice(&current.value).ok())
}

/// The revocation of a whole family (it outlives every token issued from it).
pub fn family_revocation(
    family: &str,
    record_exp: i64,
    client: &ClientEntry,
    now: i64,
) -> Revocation {
    Revocation {
        target: Target::Family {
            family: family.to_owned(),
        },
        exp: record_exp.max(now) + i64::from(client.client.access_token_lifetime),
        at: now,
    }
}

fn invalid() -> OAuthError {
    OAuthError::invalid_grant("the refresh token is invalid, expired or revoked")
}

pub async fn grant(
    state: &AppState,
    p: &Projection,
    client: &ClientEntry,
    form: &OAuthForm,
    cnf: Cnf<'_>,
    now: i64,
) -> Result<Response, ProtocolError> {
    let c = &client.client;
    if !c.allow_offline_access
        || !(client.allows(GrantType::AuthorizationCode)
            || client.allows(GrantType::Hybrid)
            || client.allows(GrantType::DeviceCode))
    {
        return Err(
            OAuthError::unauthorized_client("the client may not use refresh tokens").into(),
        );
    }
    let token = form
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    if token.len() > 256 {
        return Err(invalid().into());
    }
    let family = family_of(token).ok_or_else(invalid)?;
    let resources = form.resources()?;
    let current = state.store.family_token(family).await.or_unavailable()?;
    let presented_key = digest_key(token);
    let (record, new_token) = match c.refresh_token_usage {
        TokenUsage::ReUse => {
            let current = current.ok_or_else(invalid)?;
            if !ct_eq(&current.key, &presented_key) {
                return Err(invalid().into());
            }
            let record: RefreshRecord =
                serde_json::from_slice(&current.value).map_err(|_| invalid())?;
            // RFC 9449 section 5: a bound family needs a proof with its key.
            user_tokens::check_dpop_binding(&record.grant, cnf)?;
            if sliding_reuse(client) {
                let open = state
                    .store
                    .get(signet_store::Namespace::SlidingWindow, family)
                    .await
                    .or_unavailable()?;
                if open.is_none() {
                    // Unused for longer than the sliding lifetime: the family is over.
                    state.store.delete_family(family).await.or_unavailable()?;
                    return Err(invalid().into());
                }
                slide(state, client, family, record.absolute_exp, now).await?;
            }
            (record, None)
        }
        TokenUsage::OneTimeOnly => {
            // The value of the presented token, for the new token (unchanged grant).
            let value = current
                .as_ref()
                .filter(|cur| ct_eq(&cur.key, &presented_key))
                .map(|cur| cur.value.clone());
            let next = format!("{family}.{}", random_token()?);
            let record: Option<RefreshRecord> = value
                .as_deref()
                .and_then(|v| serde_json::from_slice(v).ok());
            // A request that will be refused (scope, resource) does not use the token up.
            // Without a scope, a resource or granted resources nothing can be refused: the
            // common refresh skips this check (the grant is narrowed once, below).
            let may_refuse = |r: &RefreshRecord| {
                form.get("scope").is_some()
                    || !resources.is_empty()
                    || !r.grant.resources.is_empty()
            };
            // RFC 9449 section 5: checked before the rotation, so a request without the
            // family's key does not use the token up.
            if let Some(r) = record.as_ref().filter(|r| r.grant.client_id == c.client_id) {
                user_tokens::check_dpop_binding(&r.grant, cnf)?;
            }
            if let Some(r) = record
                .as_ref()
                .filter(|r| r.grant.client_id == c.client_id && may_refuse(r))
            {
                narrowed(
                    p,
                    &r.grant,
                    form,
                    &resources,
                    state.config.default_algorithm,
                )?;
            }
            let (absolute_exp, value) = match &record {
                Some(r) => (r.absolute_exp, value.unwrap_or_default()),
                // Not current: rotate() tells reuse from unknown; the value is not used.
                None => (now + 1, Vec::new()),
            };
            let ttl = match c.refresh_token_expiration {
                TokenExpiration::Sliding => {
                    (absolute_exp - now).min(i64::from(c.sliding_refresh_token_lifetime.max(1)))
                }
                TokenExpiration::Absolute => absolute_exp - now,
            }
            .max(1);
            match state
                .store
                .rotate(
                    family,
                    &presented_key,
                    &digest_key(&next),
                    &value,
                    Duration::from_secs(ttl as u64),
                )
                .await
                .or_unavailable()?
            {
                Rotation::Rotated { old_value } => {
                    // The value just read is the one rotated (a one-time family keeps its
                    // value): parsed once. Should it differ, the rotated one counts.
                    let record = match record {
                        Some(r) if old_value == value => r,
                        _ => serde_json::from_slice(&old_value).map_err(|_| invalid())?,
                    };
                    (record, Some(next))
                }
                Rotation::Reused => {
                    // RFC 9700 4.14.2: a rotated token presented again; someone else has
                    // it. The family is gone from the store; kill its access tokens too.
                    tracing::warn!(client_id = %c.client_id, "refresh token reuse: revoking its family");
                    let r = family_revocation(
                        family,
                        now + i64::from(c.absolute_refresh_token_lifetime),
                        client,
                        now,
                    );
                    state.revocations.revoke(r).await.map_err(|e| {
                        tracing::error!(error = %e, "could not publish a family revocation");
                        OAuthError::new(
                            signet_core::oauth::ErrorCode::TemporarilyUnavailable,
                            "retry shortly",
                        )
                    })?;
                    return Err(invalid().into());
                }
                Rotation::Unknown => return Err(invalid().into()),
            }
        }
    };
    let grant = &record.grant;
    if grant.client_id != c.client_id
        || !crate::http::introspect::client_holds(p, &grant.client_id, grant.client_gen)
    {
        return Err(invalid().into());
    }
    let token_sid = record.token_sid(family);
    if state.revocations.is_revoked(&TokenFacts {
        sub: Some(&grant.sub),
        client_id: Some(&grant.client_id),
        sid: Some(&token_sid),
        family: Some(family),
        iat: record.created_at,
        ..Default::default()
    }) {
        return Err(invalid().into());
    }
    // The user must still exist and be enabled, whatever the claims come from.
    let user = user_tokens::active_user(state, &grant.sub).await?;
    // `updateAccessTokenClaimsOnRefresh`: the user's current claims, so a change made
    // since the grant (PUT /User) shows in the new access token; otherwise those of the
    // grant, as the first access token carried them.
    let user_claims = match &record.access_claims {
        Some(kept) if !c.update_access_token_claims_on_refresh => kept,
        _ => &user.claims,
    };
    let grant = narrowed(p, grant, form, &resources, state.config.default_algorithm)?;
    // The access token speaks for the family's session: the sign-in's when coordinated,
    // else the family's own, so ending the sign-in session does not refuse it.
    let mut access_grant = grant.clone();
    access_grant.sid = token_sid;
    let (access_token, lifetime) = user_tokens::access_token_in_family(
        state,
        p,
        client,
        &access_grant,
        user_claims,
        Some(family),
        cnf,
        now,
    )
    .await?;
    let refresh_token = new_token.unwrap_or_else(|| token.to_owned());
    let mut body = json!({
        "access_token": access_token,
        "token_type": user_tokens::token_type(cnf),
        "expires_in": lifetime,
        "scope": grant.scopes.join(" "),
        "refresh_token": refresh_token,
    });
    if grant.scopes.iter().any(|s| s == "openid") {
        let alongside = Alongside {
            access_token: Some(&access_token),
            code: None,
            user_claims: false,
        };
        // The ID token keeps the sign-in's `sid`: the relying party's session.
        let mut g = grant.clone();
        // OIDC Core 12.2: no nonce in ID tokens from a refresh.
        g.nonce = None;
        let id = user_tokens::id_token(state, p, client, &g, alongside, now).await?;
        body["id_token"] = id.into();
    }
    let mut resp = axum::response::IntoResponse::into_response(axum::Json(body));
    crate::http::error::no_store(resp.headers_mut());
    Ok(resp)
}
