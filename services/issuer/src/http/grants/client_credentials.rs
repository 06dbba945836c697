//! `grant_type=client_credentials` (RFC 6749 section 4.4): no network, no locks. Client
//! lookup and secret check already happened; here: the grant decision (`signet-core`), the
//! claims written into a reused buffer, one signature, and the JSON answer.

use crate::http::user_tokens::Cnf;
use std::cell::RefCell;
use std::fmt::Write as _;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use signet_core::client::AccessTokenType;
use signet_core::grants::client_credentials::decide;
use signet_core::grants::AccessTokenClaims;
use signet_core::oauth::OAuthError;
use signet_core::projection::{ClientEntry, Projection};
use signet_jose::b64url;

use crate::http::error::{no_store, ProtocolError};
use crate::http::form::OAuthForm;
use crate::state::AppState;

thread_local! {
    static CLAIMS: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
    /// Bytes from the system CSPRNG, drawn 1 KiB at a time: one draw serves 64 token ids,
    /// instead of one draw (and its reseed and fork checks) per token.
    static RANDOM: RefCell<RandomPool> = const {
        RefCell::new(RandomPool { buf: [0; RANDOM_POOL], next: RANDOM_POOL })
    };
}

const RANDOM_POOL: usize = 1024;

struct RandomPool {
    buf: [u8; RANDOM_POOL],
    /// Start of the bytes not handed out yet.
    next: usize,
}

/// A random, unguessable token id (128 bits).
pub fn new_jti() -> Result<String, OAuthError> {
    RANDOM.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.next + 16 > RANDOM_POOL {
            SystemRandom::new()
                .fill(&mut pool.buf)
                .map_err(|_| OAuthError::server_error("no randomness available"))?;
            pool.next = 0;
        }
        let start = pool.next;
        pool.next += 16;
        let jti = b64url(&pool.buf[start..start + 16]);
        // Handed-out bytes do not stay in memory.
        pool.buf[start..start + 16].fill(0);
        Ok(jti)
    })
}

/// What the grant produced: the answer, or (`accessTokenType: 1`) the claims of a
/// reference token, which the caller stores (the one I/O step, kept off this sync path).
pub enum Issued {
    Response(Response),
    Reference {
        claims: Vec<u8>,
        lifetime: i64,
        scope: String,
        /// `DPoP` or `Bearer`.
        token_type: &'static str,
    },
}

pub fn grant(
    state: &AppState,
    p: &Projection,
    client: &ClientEntry,
    form: &OAuthForm,
    cnf: Cnf<'_>,
    now: i64,
) -> Result<Issued, ProtocolError> {
    let c = &client.client;
    let resources = form.resources()?;
    let mut grant = decide(p, client, form.get("scope"), state.config.default_algorithm)?;
    if !resources.is_empty() {
        // RFC 8707: `aud` is the requested resources, the scopes theirs.
        let n = signet_core::grants::resource_indicators::narrow(
            p,
            &resources,
            &grant.scopes,
            state.config.default_algorithm,
        )?;
        grant.scopes.retain(|s| n.scopes.iter().any(|k| k == s));
        grant.audiences = n.audiences;
        grant.alg = n.alg;
    }
    let signers = state.signers.load();
    let signer = signers.access_token(grant.alg).ok_or_else(|| {
        // Not this request's fault, and temporary: a key lease is pending.
        tracing::warn!(alg = %grant.alg, "no active signing key held");
        OAuthError::new(
            signet_core::oauth::ErrorCode::TemporarilyUnavailable,
            "no signing key is available right now; retry shortly",
        )
    })?;

    let static_audience;
    let audiences: &[&str] = if grant.audiences.is_empty() {
        static_audience = [state.config.issuer.endpoint("/resources")];
        &[static_audience[0].as_str()]
    } else {
        &grant.audiences
    };
    let jti = if c.include_jwt_id {
        Some(new_jti()?)
    } else {
        None
    };
    let lifetime = i64::from(c.access_token_lifetime);
    // A DPoP- or certificate-bound token (RFC 9449 section 6.1, RFC 8705 section 3.1):
    // `cnf` after the client's claims.
    let bound_extra = cnf.is_bound().then(|| {
        let mut extra = client.claims_json.clone();
        crate::http::user_tokens::push_cnf(&mut extra, cnf);
        extra
    });
    let token_type = crate::http::user_tokens::token_type(cnf);
    let claims = AccessTokenClaims {
        iss: state.config.issuer.as_str(),
        sub: &c.client_id,
        aud: audiences,
        client_id: &c.client_id,
        scopes: &grant.scopes,
        iat: now,
        exp: now + lifetime,
        jti: jti.as_deref(),
        extra_json: bound_extra.as_deref().unwrap_or(&client.claims_json),
    };
    if c.access_token_type == AccessTokenType::Reference {
        let mut buf = Vec::with_capacity(512);
        claims.write_json(&mut buf);
        return Ok(Issued::Reference {
            claims: buf,
            lifetime,
            scope: grant.scopes.join(" "),
            token_type,
        });
    }
    let token = CLAIMS.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        claims.write_json(&mut buf);
        let start = std::time::Instant::now();
        let token = signer.sign(&buf);
        crate::telemetry::signing_duration(grant.alg.as_str(), start.elapsed().as_secs_f64());
        token
    });
    let token = token.map_err(|e| {
        tracing::error!(error = %e, "signing failed");
        OAuthError::server_error("the token could not be signed")
    })?;
    crate::telemetry::token_issued("client_credentials", grant.alg.as_str());
    Ok(Issued::Response(token_response(
        &token,
        token_type,
        lifetime,
        &grant.scopes,
    )))
}

/// Stores the claims of a reference token for its lifetime and answers with its handle.
pub async fn store_reference(
    state: &AppState,
    claims: &[u8],
    lifetime: i64,
    scope: &str,
    token_type: &'static str,
) -> Result<Response, ProtocolError> {
    use crate::http::browser::{digest_key, random_token, StoreResult};
    let handle = random_token()?;
    state
        .store
        .put(
            signet_store::Namespace::ReferenceToken,
            &digest_key(&handle),
            claims,
            std::time::Duration::from_secs(lifetime.max(1) as u64),
            &[],
        )
        .await
        .or_unavailable()?;
    crate::telemetry::token_issued("client_credentials", "reference");
    let scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    Ok(token_response(&handle, token_type, lifetime, &scopes))
}

/// RFC 6749 section 5.1.
pub fn token_response(
    access_token: &str,
    token_type: &'static str,
    expires_in: i64,
    scopes: &[&str],
) -> Response {
    let mut body = String::with_capacity(access_token.len() + 96);
    body.push_str("{\"access_token\":\"");
    body.push_str(access_token); // base64url and dots: nothing to escape
    body.push_str("\",\"token_type\":\"");
    body.push_str(token_type);
    body.push_str("\",\"expires_in\":");
    // Writing an integer into a String cannot fail.
    let _ = write!(body, "{expires_in}");
    body.push_str(",\"scope\":\"");
    for (i, s) in scopes.iter().enumerate() {
        if i > 0 {
            body.push(' ');
        }
        body.push_str(s); // validated scope tokens: no quote or backslash
    }
    body.push_str("\"}");
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    no_store(h);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_are_distinct_128_bit_values_across_pool_refills() {
        let ids: std::collections::HashSet<String> = (0..3 * RANDOM_POOL / 16)
            .map(|_| new_jti().unwrap())
            .collect();
        assert_eq!(ids.len(), 3 * RANDOM_POOL / 16);
        assert!(ids.iter().all(|id| id.len() == 22));
    }
}
