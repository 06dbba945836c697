//! Tokens for a signed-in user: RFC 9068 access tokens and OpenID Connect ID tokens (OIDC
//! Core section 2), from the authorization endpoint (implicit and hybrid responses) and the
//! token endpoint (`authorization_code`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use signet_core::authorize::{
    access_token_claims, half_hash, released_claims, split_scopes, subject_for,
};
use signet_core::grants::client_credentials::audiences_and_alg;
use signet_core::grants::AccessTokenClaims;
use signet_core::oauth::{ErrorCode, OAuthError};
use signet_core::projection::{ClientEntry, Projection};
use signet_core::Algorithm;

use super::grants::client_credentials::new_jti;
use crate::state::AppState;

/// What a user granted a client, as an authorization code carries it to the token endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserGrant {
    pub client_id: String,
    /// The client's incarnation when the grant was made ([`ClientEntry::incarnation`]):
    /// a client deleted and created again does not inherit its predecessor's grants.
    #[serde(default)]
    pub client_gen: u64,
    pub redirect_uri: String,
    /// Whether the authorization request named the redirect URI (then the token request
    /// must repeat it, RFC 6749 section 4.1.3).
    pub redirect_uri_explicit: bool,
    /// The user's own `sub` (the client may see a pairwise one).
    pub sub: String,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub sid: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub code_challenge: Option<signet_core::authorize::CodeChallenge>,
    /// RFC 8707 resources the grant was made for (empty: every API its scopes reach).
    /// Tokens from it are for these, or for a subset a token request names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// The DPoP key (RFC 7638 thumbprint) this grant is bound to: a code's `dpop_jkt`
    /// (RFC 9449 section 10), a public client's refresh-token family's key (section 5).
    /// A token request from it must carry a proof made with that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    /// The client certificate (`x5t#S256`) a public client's refresh-token family is bound
    /// to (RFC 8705 section 4): a refresh must present that certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls_x5t: Option<String>,
    /// The upstream identity provider the session came from (its scheme): the ID token's
    /// `idp` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
}

/// What a token request binds its access token to: the key of its DPoP proof (RFC 9449)
/// and the client certificate it came with (RFC 8705 section 3). With both, the token is
/// bound to both (`cnf` has `jkt` and `x5t#S256`): a resource server must check each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cnf<'a> {
    /// The DPoP key's RFC 7638 thumbprint.
    pub jkt: Option<&'a str>,
    /// The client certificate's SHA-256 thumbprint.
    pub x5t: Option<&'a str>,
}

impl Cnf<'_> {
    pub fn is_bound(&self) -> bool {
        self.jkt.is_some() || self.x5t.is_some()
    }
}

/// `cnf` of a bound access token (RFC 9449 section 6.1, RFC 8705 section 3.1), appended to
/// the extra claims; nothing for an unbound one.
pub fn push_cnf(extra: &mut String, cnf: Cnf<'_>) {
    if !cnf.is_bound() {
        return;
    }
    if !extra.is_empty() {
        extra.push(',');
    }
    extra.push_str("\"cnf\":{");
    if let Some(jkt) = cnf.jkt {
        extra.push_str("\"jkt\":");
        extra.push_str(&json_str(jkt));
    }
    if let Some(x5t) = cnf.x5t {
        if cnf.jkt.is_some() {
            extra.push(',');
        }
        extra.push_str("\"x5t#S256\":");
        extra.push_str(&json_str(x5t));
    }
    extra.push('}');
}

/// The `token_type` of a token response: `DPoP` for a DPoP-bound access token (RFC 9449
/// section 5), `Bearer` otherwise (a certificate-bound token is a Bearer token, RFC 8705
/// section 3).
pub fn token_type(cnf: Cnf<'_>) -> &'static str {
    if cnf.jkt.is_some() {
        "DPoP"
    } else {
        "Bearer"
    }
}

/// RFC 9449 sections 5 and 10: a grant bound to a DPoP key is used only with a proof
/// made with that key.
pub fn check_dpop_binding(grant: &UserGrant, cnf: Cnf<'_>) -> Result<(), OAuthError> {
    // RFC 8705 section 4: a public client's refresh tokens bound to its certificate.
    match (&grant.mtls_x5t, cnf.x5t) {
        (Some(bound), Some(presented)) if crate::http::browser::ct_eq(bound, presented) => {}
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "the client certificate is another than the grant is bound to",
            ))
        }
        (Some(_), None) => {
            return Err(OAuthError::invalid_grant(
                "the grant is bound to a client certificate: present it (mutual TLS)",
            ))
        }
        (None, _) => {}
    }
    match (&grant.dpop_jkt, cnf.jkt) {
        (Some(bound), Some(presented)) if crate::http::browser::ct_eq(bound, presented) => Ok(()),
        (Some(_), Some(_)) => Err(OAuthError::invalid_grant(
            "the DPoP proof is made with another key than the grant is bound to",
        )),
        (Some(_), None) => Err(OAuthError::invalid_grant(
            "the grant is bound to a DPoP key: send a DPoP proof made with it",
        )),
        (None, _) => Ok(()),
    }
}

impl UserGrant {
    /// The grant an access token is issued from at the token endpoint: narrowed to the
    /// request's `resource` values (RFC 8707), which must be among the grant's resources
    /// when it has any (else `invalid_target`), or to the grant's own resources. The
    /// scopes kept are the identity scopes and the API scopes of those resources.
    pub fn for_resources(
        &self,
        p: &Projection,
        requested: Vec<String>,
        default_alg: Algorithm,
    ) -> Result<UserGrant, OAuthError> {
        let mut g = self.clone();
        if !requested.is_empty() {
            if !self.resources.is_empty() {
                if let Some(r) = requested.iter().find(|r| !self.resources.contains(r)) {
                    return Err(OAuthError::invalid_target(format!(
                        "resource {:?} was not granted",
                        r.chars().take(64).collect::<String>()
                    )));
                }
            }
            g.resources = requested;
        }
        if !g.resources.is_empty() {
            let n = signet_core::grants::resource_indicators::narrow(
                p,
                &g.resources,
                &self.scopes,
                default_alg,
            )?;
            g.scopes = n.scopes;
        }
        Ok(g)
    }
}

/// The user directory failing: `temporarily_unavailable` (503).
pub fn users_unavailable(e: impl std::fmt::Display) -> OAuthError {
    tracing::warn!(error = %e, "user directory failed");
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the user directory is temporarily unavailable; retry shortly",
    )
}

/// The user behind a grant, who must still exist and be enabled (`invalid_grant` if not).
pub async fn active_user(
    state: &AppState,
    sub: &str,
) -> Result<std::sync::Arc<signet_core::user::UserRecord>, OAuthError> {
    enabled_user(state, sub)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the user is disabled or gone"))
}

/// The user `sub`, if it exists and is enabled (the one check every reader of a user's
/// grant, token, key or session makes), through the node's user cache.
pub async fn enabled_user(
    state: &AppState,
    sub: &str,
) -> Result<Option<std::sync::Arc<signet_core::user::UserRecord>>, OAuthError> {
    match state.users.current(sub).await {
        Ok(Some(u)) if u.enabled => Ok(Some(u)),
        Ok(_) => Ok(None),
        Err(e) => Err(users_unavailable(e)),
    }
}

fn unavailable(what: &str) -> OAuthError {
    tracing::warn!("no active signing key held for {what}");
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "no signing key is available right now; retry shortly",
    )
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The store key of a pairwise subject of a client.
pub fn pairwise_key(client_id: &str, subject: &str) -> String {
    crate::http::browser::digest_key(&format!("{client_id}\u{0}{subject}"))
}

/// An access token for the user of `grant`, with the user claims its API scopes and
/// resources name, taken from `user_claims`; returns it and its lifetime.
pub async fn access_token(
    state: &AppState,
    p: &Projection,
    client: &ClientEntry,
    grant: &UserGrant,
    user_claims: &Map<String, Value>,
    now: i64,
) -> Result<(String, i64), OAuthError> {
    access_token_in_family(
        state,
        p,
        client,
        grant,
        user_claims,
        None,
        Cnf::default(),
        now,
    )
    .await
}

/// An access token for the user of `grant`, issued from refresh-token family `family`
/// when given (the token carries a `family` claim, so revoking the family revokes it).
/// A JWT, or with `accessTokenType: 1` a reference token: an opaque handle whose claims
/// live in the store for the token's lifetime (introspection answers for it). The user
/// claims the granted API scopes and their resources name (`userClaims`) come from
/// `user_claims`: the user's current claims, or at a refresh without
/// `updateAccessTokenClaimsOnRefresh` those of the grant.
#[allow(clippy::too_many_arguments)] // the grant, its family, and its DPoP key
pub async fn access_token_in_family(
    state: &AppState,
    p: &Projection,
    client: &ClientEntry,
    grant: &UserGrant,
    user_claims: &Map<String, Value>,
    family: Option<&str>,
    cnf: Cnf<'_>,
    now: i64,
) -> Result<(String, i64), OAuthError> {
    let c = &client.client;
    // With resources (RFC 8707) the token is for them only, and its scopes are theirs (and
    // the identity scopes), however it is issued (token endpoint, or the authorization
    // endpoint's hybrid and implicit responses).
    let (audiences, alg, granted) = if grant.resources.is_empty() {
        let (_, api) = split_scopes(p, &grant.scopes);
        let (aud, alg) = audiences_and_alg(p, &api, state.config.default_algorithm)?;
        (
            aud,
            alg,
            std::borrow::Cow::Borrowed(grant.scopes.as_slice()),
        )
    } else {
        let n = signet_core::grants::resource_indicators::narrow(
            p,
            &grant.resources,
            &grant.scopes,
            state.config.default_algorithm,
        )?;
        (n.audiences, n.alg, std::borrow::Cow::Owned(n.scopes))
    };
    let signers = state.signers.load();
    let signer = signers
        .access_token(alg)
        .ok_or_else(|| unavailable("access tokens"))?;
    let fallback = [state.config.issuer.endpoint("/resources")];
    let fallback_ref = [fallback[0].as_str()];
    let aud: &[&str] = if audiences.is_empty() {
        &fallback_ref
    } else {
        &audiences
    };
    let scopes: Vec<&str> = granted.iter().map(String::as_str).collect();
    let sub = subject_for(client, &grant.redirect_uri, &grant.sub);
    let jti = new_jti()?;
    let mut extra = format!(
        "\"auth_time\":{},\"sid\":{},\"amr\":{},\"acr\":{}",
        grant.auth_time,
        json_str(&grant.sid),
        serde_json::to_string(&grant.amr).unwrap_or_else(|_| "[]".into()),
        json_str(signet_core::mfa::Level::of_amr(&grant.amr).as_str())
    );
    if let Some(f) = family {
        extra.push_str(",\"family\":");
        extra.push_str(&json_str(f));
    }
    let send_client_claims = c.always_send_client_claims && !client.claims_json.is_empty();
    for (name, value) in access_token_claims(p, &granted, user_claims) {
        // The client's own claims win a clash (the JSON must not repeat a member).
        if send_client_claims && c.claims.iter().any(|k| c.claim_name(k) == name) {
            continue;
        }
        extra.push(',');
        extra.push_str(&json_str(&name));
        extra.push(':');
        extra.push_str(&serde_json::to_string(&value).unwrap_or_else(|_| "null".into()));
    }
    if send_client_claims {
        extra.push(',');
        extra.push_str(&client.claims_json);
    }
    push_cnf(&mut extra, cnf);
    let lifetime = i64::from(c.access_token_lifetime);
    let claims = AccessTokenClaims {
        iss: state.config.issuer.as_str(),
        sub: &sub,
        aud,
        client_id: &c.client_id,
        scopes: &scopes,
        iat: now,
        exp: now + lifetime,
        jti: c.include_jwt_id.then_some(jti.as_str()),
        extra_json: &extra,
    };
    if sub != grant.sub {
        // Userinfo gets the pairwise subject and must find the user behind it.
        use crate::http::browser::StoreResult;
        state
            .store
            .put(
                signet_store::Namespace::PairwiseSubject,
                &pairwise_key(&c.client_id, &sub),
                grant.sub.as_bytes(),
                std::time::Duration::from_secs(lifetime.max(1) as u64),
                &[signet_store::Index::Subject(&grant.sub)],
            )
            .await
            .or_unavailable()?;
    }
    let mut buf = Vec::with_capacity(512);
    claims.write_json(&mut buf);
    if c.access_token_type == signet_core::client::AccessTokenType::Reference {
        use crate::http::browser::{digest_key, random_token, StoreResult};
        let handle = random_token()?;
        let mut index = vec![
            signet_store::Index::Session(&grant.sid),
            signet_store::Index::Subject(&grant.sub),
        ];
        if let Some(f) = family {
            index.push(signet_store::Index::Family(f));
        }
        state
            .store
            .put(
                signet_store::Namespace::ReferenceToken,
                &digest_key(&handle),
                &buf,
                std::time::Duration::from_secs(lifetime.max(1) as u64),
                &index,
            )
            .await
            .or_unavailable()?;
        crate::telemetry::token_issued("user", "reference");
        return Ok((handle, lifetime));
    }
    let token = signer.sign(&buf).map_err(|e| {
        tracing::error!(error = %e, "signing failed");
        OAuthError::server_error("the token could not be signed")
    })?;
    crate::telemetry::token_issued("user", alg.as_str());
    Ok((token, lifetime))
}

/// The algorithm of the client's ID tokens: the first of
/// `allowedIdentityTokenSigningAlgorithms` this node can sign with (RS256 when the list is
/// empty).
pub(crate) fn id_token_alg(
    state: &AppState,
    client: &ClientEntry,
) -> Result<Algorithm, OAuthError> {
    let allowed = &client.client.allowed_identity_token_signing_algorithms;
    if allowed.is_empty() {
        return Ok(Algorithm::RS256);
    }
    let signers = state.signers.load();
    allowed
        .iter()
        .copied()
        .find(|a| signers.id_token(*a).is_some())
        .ok_or_else(|| unavailable("ID tokens"))
}

/// What an ID token is issued alongside.
#[derive(Default)]
pub struct Alongside<'a> {
    /// The access token of the same response (`at_hash`).
    pub access_token: Option<&'a str>,
    /// The authorization code of the same response (`c_hash`).
    pub code: Option<&'a str>,
    /// Put the user's claims into the ID token (no access token to fetch them with, or
    /// `alwaysIncludeUserClaimsInIdToken`).
    pub user_claims: bool,
}

/// An ID token for the user of `grant`.
pub async fn id_token(
    state: &AppState,
    p: &Projection,
    client: &ClientEntry,
    grant: &UserGrant,
    alongside: Alongside<'_>,
    now: i64,
) -> Result<String, OAuthError> {
    let c = &client.client;
    let alg = id_token_alg(state, client)?;
    let mut claims = serde_json::Map::new();
    if alongside.user_claims || c.always_include_user_claims_in_id_token {
        let user = active_user(state, &grant.sub).await?;
        claims = released_claims(p, &grant.scopes, &user.claims);
    }
    let sub = subject_for(client, &grant.redirect_uri, &grant.sub);
    let mut set = |k: &str, v: serde_json::Value| {
        claims.insert(k.to_owned(), v);
    };
    set("iss", state.config.issuer.as_str().into());
    set("sub", sub.into());
    set("aud", c.client_id.clone().into());
    set("exp", (now + i64::from(c.identity_token_lifetime)).into());
    set("iat", now.into());
    set("auth_time", grant.auth_time.into());
    set("sid", grant.sid.clone().into());
    set("amr", grant.amr.clone().into());
    // OIDC Core section 2: the level the authentication reached, from how it was made.
    set(
        "acr",
        signet_core::mfa::Level::of_amr(&grant.amr).as_str().into(),
    );
    if let Some(idp) = &grant.idp {
        set("idp", idp.clone().into());
    }
    if let Some(n) = &grant.nonce {
        set("nonce", n.clone().into());
    }
    if let Some(at) = alongside.access_token {
        set("at_hash", half_hash(alg, at).into());
    }
    if let Some(code) = alongside.code {
        set("c_hash", half_hash(alg, code).into());
    }
    let payload = serde_json::to_vec(&claims).map_err(|_| OAuthError::server_error("claims"))?;
    let signers = state.signers.load();
    let signer = signers
        .id_token(alg)
        .ok_or_else(|| unavailable("ID tokens"))?;
    signer.sign(&payload).map_err(|e| {
        tracing::error!(error = %e, "signing failed");
        OAuthError::server_error("the token could not be signed")
    })
}
