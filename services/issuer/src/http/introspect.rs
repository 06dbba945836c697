//! Token introspection (RFC 7662) and revocation (RFC 7009), and what they share: telling
//! what a presented token is — a JWT access token of this issuer, a reference access token,
//! or a refresh token — and whether it is still good.
//!
//! Introspection callers authenticate as an API resource (its name and one of its
//! `apiSecrets`, as the reference AuthService does) or as a client. A token is `active`
//! only if it is this issuer's, unexpired, not revoked, and meant for the caller: an API
//! resource sees tokens whose `aud` holds it; a client sees its own tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use signet_core::oauth::{ErrorCode, OAuthError};
use signet_core::projection::Projection;
use signet_core::secret::{dummy_check, SecretDigest};
use signet_core::user::UserRecord;
use signet_store::Namespace;
use signet_verify::revocation::{Revocation, Target, TokenFacts};

use super::browser::{digest_key, StoreResult};
use super::client_auth::{authenticate, basic_id_secret};
use super::error::{no_store, ProtocolError};
use super::form::OAuthForm;
use super::grants::refresh_token::{self, family_of};
use super::token::now;
use super::user_tokens::enabled_user;
use crate::state::AppState;

/// Seconds of clock skew tolerated on `nbf`.
const LEEWAY: i64 = 30;

/// Who asks.
pub enum Caller {
    Resource(String),
    Client(String),
}

/// What a token turned out to be (only tokens that are still good).
pub enum Known {
    /// A JWT or reference access token (or an API key): its claims, and the user it speaks
    /// for when it was issued for a sign-in (`sid`), who exists and is enabled.
    Access {
        claims: Map<String, Value>,
        reference: bool,
        user: Option<std::sync::Arc<UserRecord>>,
    },
    /// A refresh token: its family and record.
    Refresh {
        family: String,
        record: Box<refresh_token::RefreshRecord>,
    },
}

fn facts_of(claims: &Map<String, Value>) -> TokenFacts<'_> {
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    TokenFacts {
        jti: s("jti"),
        sub: s("sub"),
        client_id: s("client_id"),
        sid: s("sid"),
        family: s("family"),
        kid: None,
        iat: claims.get("iat").and_then(Value::as_i64).unwrap_or(0),
    }
}

/// Reads `token` and returns it if it is good: signature (JWT), lifetime, revocations.
pub async fn identify(
    state: &AppState,
    p: &Projection,
    token: &str,
    now: i64,
) -> Result<Option<Known>, OAuthError> {
    if token.len() > 8192 {
        return Ok(None);
    }
    if token.matches('.').count() == 2 {
        let Ok(v) = signet_jose::verify_compact(token, |kid| p.key(kid).map(|k| &k.jwk)) else {
            return Ok(None);
        };
        if v.typ.as_deref() != Some("at+jwt") {
            return Ok(None);
        }
        let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&v.payload) else {
            return Ok(None);
        };
        let mut facts = facts_of(&claims);
        facts.kid = Some(&v.kid);
        let signed_ok = claims.get("iss").and_then(Value::as_str)
            == Some(state.config.issuer.as_str())
            && claims
                .get("exp")
                .and_then(Value::as_i64)
                .is_some_and(|e| e > now)
            && claims
                .get("nbf")
                .and_then(Value::as_i64)
                .is_none_or(|n| n <= now + LEEWAY)
            && !state.revocations.is_revoked(&facts);
        if !signed_ok {
            return Ok(None);
        }
        return access_holder(state, p, claims, false).await;
    }
    if let Some(id) = signet_core::api_key::key_id(token) {
        return api_key(state, p, token, id, now).await.map(|c| {
            c.map(|claims| Known::Access {
                claims,
                reference: false,
                user: None,
            })
        });
    }
    if let Some(family) = family_of(token) {
        let Some(record) = refresh_token::lookup(state, token).await? else {
            return Ok(None);
        };
        let g = &record.grant;
        let token_sid = record.token_sid(family);
        let revoked = state.revocations.is_revoked(&TokenFacts {
            sub: Some(&g.sub),
            client_id: Some(&g.client_id),
            sid: Some(&token_sid),
            family: Some(family),
            iat: record.created_at,
            ..Default::default()
        });
        if revoked || record.absolute_exp <= now || !client_holds(p, &g.client_id, g.client_gen) {
            return Ok(None);
        }
        if enabled_user(state, &g.sub).await?.is_none() {
            return Ok(None);
        }
        return Ok(Some(Known::Refresh {
            family: family.to_owned(),
            record: Box::new(record),
        }));
    }
    let Some(bytes) = state
        .store
        .get(Namespace::ReferenceToken, &digest_key(token))
        .await
        .or_unavailable()?
    else {
        return Ok(None);
    };
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(None);
    };
    let good = claims
        .get("exp")
        .and_then(Value::as_i64)
        .is_some_and(|e| e > now)
        && !state.revocations.is_revoked(&facts_of(&claims));
    if !good {
        return Ok(None);
    }
    access_holder(state, p, claims, true).await
}

/// Whether client `client_id` may still hold what was issued to it: it exists, is enabled,
/// and is the same incarnation (`generation` 0: issued before incarnations were recorded,
/// left to the client revocation published when a client is deleted).
pub fn client_holds(p: &Projection, client_id: &str, generation: u64) -> bool {
    p.client(client_id).is_some_and(|c| {
        c.client.enabled && (generation == 0 || c.incarnation == 0 || c.incarnation == generation)
    })
}

/// The checks `/userinfo` makes, in one place for every reader of access tokens: the
/// token's client still exists and is enabled, and the user a sign-in's token speaks for
/// (it carries `sid`) still exists and is enabled. A token failing them is not active.
async fn access_holder(
    state: &AppState,
    p: &Projection,
    claims: Map<String, Value>,
    reference: bool,
) -> Result<Option<Known>, OAuthError> {
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    let Some(client) = s("client_id").and_then(|id| p.client(id)) else {
        return Ok(None);
    };
    if !client.client.enabled {
        return Ok(None);
    }
    if s("sid").is_none() {
        // A client's own token (client_credentials): no user behind it.
        return Ok(Some(Known::Access {
            claims,
            reference,
            user: None,
        }));
    }
    let Some(sub) = s("sub") else {
        return Ok(None);
    };
    // A pairwise subject stands for a user the store maps it back to.
    let user_sub = if client.client.pair_wise_subject_salt.is_some() {
        let key = super::user_tokens::pairwise_key(&client.client.client_id, sub);
        match state
            .store
            .get(Namespace::PairwiseSubject, &key)
            .await
            .or_unavailable()?
        {
            Some(b) => String::from_utf8(b).unwrap_or_default(),
            None => return Ok(None),
        }
    } else {
        sub.to_owned()
    };
    let Some(user) = enabled_user(state, &user_sub).await? else {
        return Ok(None);
    };
    Ok(Some(Known::Access {
        claims,
        reference,
        user: Some(user),
    }))
}

/// The claims of a presented API key that is good: its hash matches, it has not expired or
/// been revoked, and its user exists and is enabled.
pub async fn api_key(
    state: &AppState,
    p: &Projection,
    token: &str,
    id: &str,
    now: i64,
) -> Result<Option<Map<String, Value>>, OAuthError> {
    use super::user_tokens::users_unavailable;
    let Some(k) = state.users.api_key(id).await.map_err(users_unavailable)? else {
        return Ok(None);
    };
    if !super::browser::ct_eq(&k.sha256, &digest_key(token)) || k.is_expired(now) {
        return Ok(None);
    }
    if enabled_user(state, &k.sub).await?.is_none() {
        return Ok(None);
    }
    if state.revocations.is_revoked(&TokenFacts {
        jti: Some(&k.id),
        family: Some(&k.id),
        sub: Some(&k.sub),
        iat: k.created_at,
        ..Default::default()
    }) {
        return Ok(None);
    }
    // Only the scopes a user may still hold on a key count: a scope withdrawn from keys
    // (or never available, on a key made before the allow-list existed) is dropped, and a
    // key left with none is not active.
    let api: Vec<&str> = k
        .scopes
        .iter()
        .map(String::as_str)
        .filter(|s| signet_core::api_key::scope_allowed(p, s))
        .collect();
    if api.is_empty() {
        return Ok(None);
    }
    let aud: Vec<&str> = signet_core::grants::client_credentials::audiences_and_alg(
        p,
        &api,
        state.config.default_algorithm,
    )
    .map(|(a, _)| a)
    .unwrap_or_default();
    let mut claims = Map::new();
    claims.insert("iss".into(), state.config.issuer.as_str().into());
    claims.insert("sub".into(), k.sub.clone().into());
    claims.insert("scope".into(), api.join(" ").into());
    claims.insert("jti".into(), k.id.clone().into());
    // Revoking the key revokes this family: resource servers that cache introspection
    // answers still refuse the key once the revocation reaches them.
    claims.insert("family".into(), k.id.clone().into());
    claims.insert("iat".into(), k.created_at.into());
    if let Some(e) = k.expires_at {
        claims.insert("exp".into(), e.into());
    }
    claims.insert("aud".into(), aud.into());
    claims.insert("token_kind".into(), "api_key".into());
    Ok(Some(claims))
}

/// Authenticates an introspection caller: an API resource by Basic (or
/// `client_id`/`client_secret` in the body) against its `apiSecrets`, else a client.
async fn caller(
    state: &AppState,
    p: &Projection,
    form: &OAuthForm,
    now: i64,
) -> Result<Caller, OAuthError> {
    let presented = match basic_id_secret(&form.headers)? {
        Some(c) => Some(c),
        None => match (form.get("client_id"), form.get("client_secret")) {
            (Some(id), Some(secret)) => Some((id.to_owned(), secret.to_owned())),
            _ => None,
        },
    };
    if let Some((id, secret)) = &presented {
        if let Some(r) = p.api_resource(id) {
            let d = SecretDigest::of(secret);
            if r.resource.enabled && !r.secrets.is_empty() && r.secrets.matches(&d, now) {
                return Ok(Caller::Resource(id.clone()));
            }
            if p.client(id).is_none() {
                dummy_check(&d);
                return Err(OAuthError::invalid_client("client authentication failed"));
            }
        }
    }
    let client = authenticate(state, p, form, "/oauth2/introspect", now).await?;
    // RFC 7662 section 2.1: the caller must be authorized. A public client proves nothing
    // by naming itself, so only a confidential client (which authenticated with a secret)
    // may introspect.
    if !client.client.require_client_secret {
        return Err(OAuthError::invalid_client(
            "introspection needs an authenticated caller: an API resource with a secret or a confidential client",
        ));
    }
    Ok(Caller::Client(client.client.client_id.clone()))
}

fn aud_contains(claims: &Map<String, Value>, name: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(s)) => s == name,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(name)),
        _ => false,
    }
}

fn json_response(body: Value) -> Response {
    let mut r = (StatusCode::OK, axum::Json(body)).into_response();
    no_store(r.headers_mut());
    r
}

/// `POST /oauth2/introspect`.
pub async fn introspect(State(state): State<AppState>, form: OAuthForm) -> Response {
    match introspect_inner(&state, &form).await {
        Ok(r) => r,
        Err(e) => e.into_response_for(&form.headers),
    }
}

async fn introspect_inner(state: &AppState, form: &OAuthForm) -> Result<Response, ProtocolError> {
    let now = now();
    let p = state.projection.load();
    let caller = caller(state, &p, form, now).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let inactive = || Ok(json_response(json!({"active": false})));
    let Some(known) = identify(state, &p, token, now).await? else {
        return inactive();
    };
    match known {
        Known::Access {
            mut claims,
            reference,
            ..
        } => {
            let mine = match &caller {
                Caller::Resource(name) => aud_contains(&claims, name),
                Caller::Client(id) => claims.get("client_id").and_then(Value::as_str) == Some(id),
            };
            if !mine {
                return inactive();
            }
            claims.insert("active".into(), true.into());
            // RFC 7662 section 2.2: the token type of RFC 6749 section 5.1; a DPoP-bound
            // token is "DPoP" (RFC 9449 section 6.2). Which kind of token it is goes in
            // `token_use` (as Hydra names it).
            let dpop = claims.get("cnf").and_then(|c| c.get("jkt")).is_some();
            claims.insert(
                "token_type".into(),
                if dpop { "DPoP" } else { "Bearer" }.into(),
            );
            claims.insert("token_use".into(), "access_token".into());
            if reference {
                claims.insert("token_kind".into(), "reference".into());
            }
            Ok(json_response(Value::Object(claims)))
        }
        Known::Refresh { record, .. } => {
            let g = &record.grant;
            if !matches!(&caller, Caller::Client(id) if *id == g.client_id) {
                return inactive();
            }
            Ok(json_response(json!({
                "active": true,
                "token_use": "refresh_token",
                "client_id": g.client_id,
                "sub": g.sub,
                "scope": g.scopes.join(" "),
                "iat": record.created_at,
                "exp": record.absolute_exp,
                "iss": state.config.issuer.as_str(),
            })))
        }
    }
}

/// `POST /oauth2/revoke` (RFC 7009): the client's own access or refresh token stops working
/// everywhere; anything else (unknown, malformed, another client's) is answered 200 and
/// ignored.
pub async fn revoke(State(state): State<AppState>, form: OAuthForm) -> Response {
    match revoke_inner(&state, &form).await {
        Ok(()) => {
            let mut r = StatusCode::OK.into_response();
            no_store(r.headers_mut());
            r
        }
        Err(e) => e.into_response_for(&form.headers),
    }
}

fn unavailable(e: impl std::fmt::Display) -> OAuthError {
    tracing::error!(error = %e, "could not publish a revocation");
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the revocation could not be recorded; retry shortly",
    )
}

async fn revoke_inner(state: &AppState, form: &OAuthForm) -> Result<(), ProtocolError> {
    let now = now();
    let p = state.projection.load();
    let client = authenticate(state, &p, form, "/oauth2/revoke", now).await?;
    let client_id = client.client.client_id.as_str();
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let Some(known) = identify(state, &p, token, now).await? else {
        return Ok(());
    };
    match known {
        Known::Refresh { family, record } => {
            if record.grant.client_id != client_id {
                return Ok(());
            }
            let r = refresh_token::family_revocation(&family, record.absolute_exp, &client, now);
            state.revocations.revoke(r).await.map_err(unavailable)?;
            state.store.delete_family(&family).await.or_unavailable()?;
        }
        Known::Access {
            claims, reference, ..
        } => {
            if claims.get("client_id").and_then(Value::as_str) != Some(client_id) {
                return Ok(());
            }
            let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(now);
            match claims.get("jti").and_then(Value::as_str) {
                Some(jti) => {
                    let r = Revocation {
                        target: Target::Token {
                            jti: jti.to_owned(),
                        },
                        exp,
                        at: now,
                    };
                    state.revocations.revoke(r).await.map_err(unavailable)?;
                }
                // Without a jti (`includeJwtId: false`) a JWT cannot be singled out.
                None if !reference => {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidRequest,
                        "this access token has no jti and cannot be revoked alone; revoke its client or subject",
                    )
                    .into())
                }
                None => {}
            }
            if reference {
                state
                    .store
                    .delete(Namespace::ReferenceToken, &digest_key(token))
                    .await
                    .or_unavailable()?;
            }
        }
    }
    Ok(())
}
