//! DPoP at the authorization server (RFC 9449): the proof of a token request (section 5),
//! its `jti` recorded once cluster-wide, server nonces (section 8), and the proof that goes
//! with a DPoP-bound access token at `/userinfo` (section 7).
//!
//! The proof's own checks (header, signature, `htm`, `htu`, `iat` window, `ath`,
//! thumbprint) are `signet_jose::verify_proof`, shared with resource servers.
//!
//! Window: a proof's `iat` may be [`MAX_PROOF_AGE`] seconds old and [`MAX_PROOF_FUTURE`]
//! seconds ahead; its `jti` is remembered (store `insert`, first writer wins, on every node
//! of the cluster) for as long as the proof could be accepted.
//!
//! Nonces (`--dpop-nonce`): `nonce = base64url(HMAC-SHA256(key, window))` where `window` is
//! the current [`NONCE_WINDOW`]-second interval; the current and the previous window's
//! nonces are accepted. The key is shared by every node: the first node to need it inserts
//! a random one into the store (`insert`: first writer wins), the others read it; each node
//! keeps it in memory and reads it again every [`NONCE_KEY_REFRESH`]. So any node accepts
//! any node's nonce without a store round-trip per request.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::http::{HeaderMap, HeaderValue};
use signet_core::oauth::{ErrorCode, OAuthError};
use signet_jose::{verify_proof, DpopError, DpopProof, ProofCheck};
use signet_store::Namespace;

use super::browser::{ct_eq, digest_key, StoreResult};
use crate::state::AppState;

/// The request header carrying a proof, and the response header carrying a nonce.
pub const DPOP: &str = "dpop";
pub const DPOP_NONCE: &str = "dpop-nonce";
/// How old a proof's `iat` may be, in seconds.
pub const MAX_PROOF_AGE: i64 = 60;
/// How far ahead of this server's clock a proof's `iat` may be, in seconds.
pub const MAX_PROOF_FUTURE: i64 = 5;
/// The length of a nonce window, in seconds: a nonce is accepted for one to two windows.
pub const NONCE_WINDOW: i64 = 300;
/// How often a node reads the shared nonce key again.
pub const NONCE_KEY_REFRESH: Duration = Duration::from_secs(300);
/// The store entry of the shared nonce key, and how long it lives there.
const NONCE_KEY_ENTRY: &str = "dpop-nonce-key";
const NONCE_KEY_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

pub fn invalid_proof(d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidDpopProof, d)
}

/// The nonce key of this node, as last read from the store.
#[derive(Default)]
pub struct NonceKeys {
    key: Mutex<Option<(Instant, hmac::Key)>>,
}

impl NonceKeys {
    async fn key(&self, state: &AppState) -> Result<hmac::Key, OAuthError> {
        if let Some((at, k)) = &*self.key.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < NONCE_KEY_REFRESH {
                return Ok(k.clone());
            }
        }
        let mut fresh = [0u8; 32];
        SystemRandom::new()
            .fill(&mut fresh)
            .map_err(|_| OAuthError::server_error("no randomness available"))?;
        // First writer wins: whoever inserted first, every node reads the same key.
        state
            .store
            .insert(
                Namespace::ReplayGuard,
                NONCE_KEY_ENTRY,
                &fresh,
                NONCE_KEY_TTL,
            )
            .await
            .or_unavailable()?;
        let bytes = state
            .store
            .get(Namespace::ReplayGuard, NONCE_KEY_ENTRY)
            .await
            .or_unavailable()?
            .filter(|b| b.len() == 32)
            .ok_or_else(|| OAuthError::server_error("the DPoP nonce key is unreadable"))?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &bytes);
        *self.key.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), key.clone()));
        Ok(key)
    }
}

fn nonce_for(key: &hmac::Key, window: i64) -> String {
    let tag = hmac::sign(key, format!("signet-dpop-nonce:{window}").as_bytes());
    signet_jose::b64url(&tag.as_ref()[..24])
}

/// The nonce to hand out now (`None` when nonces are off).
pub async fn current_nonce(state: &AppState, now: i64) -> Result<Option<String>, OAuthError> {
    if !state.config.dpop_nonce {
        return Ok(None);
    }
    let key = state.dpop_nonces.key(state).await?;
    Ok(Some(nonce_for(&key, now.div_euclid(NONCE_WINDOW))))
}

async fn nonce_is_valid(state: &AppState, nonce: &str, now: i64) -> Result<bool, OAuthError> {
    let key = state.dpop_nonces.key(state).await?;
    let window = now.div_euclid(NONCE_WINDOW);
    Ok([window, window - 1]
        .iter()
        .any(|w| ct_eq(&nonce_for(&key, *w), nonce)))
}

/// The one `DPoP` header of a request: `None` without one, an error with two or more
/// (RFC 9449 section 4.3, check 1) or one that is not visible ASCII.
pub fn proof_header(headers: &HeaderMap) -> Result<Option<&str>, OAuthError> {
    let mut values = headers.get_all(DPOP).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid_proof("send exactly one DPoP header"));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| invalid_proof("the DPoP header is not visible ASCII"))
}

fn describe(e: &DpopError) -> OAuthError {
    invalid_proof(e.to_string())
}

/// Checks the proof of a request to `path` with `method` (and `access_token` at a
/// resource), its nonce when nonces are on, and records its `jti` once cluster-wide.
pub async fn check(
    state: &AppState,
    proof: &str,
    method: &str,
    path: &str,
    access_token: Option<&str>,
    now: i64,
) -> Result<DpopProof, OAuthError> {
    let proof = verify(state, proof, method, path, access_token, now).await?;
    spend(state, proof).await
}

/// [`check`] without the replay record: the proof's signature, claims and nonce. An
/// endpoint that also authenticates the client verifies the proof first, so a request the
/// proof alone refuses (most often `use_dpop_nonce`, which the client answers by sending
/// the same request again) spends nothing, not the client assertion's `jti`; it then
/// [`spend`]s the proof.
pub async fn verify(
    state: &AppState,
    proof: &str,
    method: &str,
    path: &str,
    access_token: Option<&str>,
    now: i64,
) -> Result<DpopProof, OAuthError> {
    let url = state.config.issuer.endpoint(path);
    let checked = verify_proof(
        proof,
        &ProofCheck {
            method,
            url: &url,
            now,
            max_age: MAX_PROOF_AGE,
            max_future: MAX_PROOF_FUTURE,
            access_token,
        },
    );
    let proof = match checked {
        Ok(p) => p,
        Err(e) => {
            metrics::counter!(crate::telemetry::DPOP_FAILURES, "reason" => reason(&e)).increment(1);
            return Err(describe(&e));
        }
    };
    if state.config.dpop_nonce {
        let ok = match &proof.nonce {
            Some(n) => nonce_is_valid(state, n, now).await?,
            None => false,
        };
        if !ok {
            metrics::counter!(crate::telemetry::DPOP_FAILURES, "reason" => "nonce").increment(1);
            return Err(OAuthError::new(
                ErrorCode::UseDpopNonce,
                "the DPoP proof must carry the nonce of the DPoP-Nonce header",
            ));
        }
    }
    Ok(proof)
}

/// Records a verified proof's `jti` (RFC 9449 section 11.1: a proof is accepted once, at
/// any node); refuses one already recorded.
pub async fn spend(state: &AppState, proof: DpopProof) -> Result<DpopProof, OAuthError> {
    let key = format!(
        "dpop:{}",
        digest_key(&format!("{}:{}", proof.jkt, proof.jti))
    );
    let ttl = Duration::from_secs((MAX_PROOF_AGE + MAX_PROOF_FUTURE + 1) as u64);
    let fresh = state
        .store
        .insert(Namespace::ReplayGuard, &key, b"", ttl)
        .await
        .or_unavailable()?;
    if !fresh {
        metrics::counter!(crate::telemetry::DPOP_FAILURES, "reason" => "replayed").increment(1);
        return Err(invalid_proof(
            "the DPoP proof was already used: each jti is accepted once",
        ));
    }
    Ok(proof)
}

fn reason(e: &DpopError) -> &'static str {
    match e {
        DpopError::Malformed(_) | DpopError::MissingClaim(_) => "malformed",
        DpopError::WrongType => "typ",
        DpopError::AlgorithmNotAllowed(_) => "alg",
        DpopError::BadKey(_) | DpopError::KeyAlgMismatch => "jwk",
        DpopError::BadSignature => "signature",
        DpopError::WrongMethod => "htm",
        DpopError::WrongUrl => "htu",
        DpopError::IatOutOfWindow => "iat",
        DpopError::WrongAth => "ath",
    }
}

/// Adds a fresh `DPoP-Nonce` to a response when nonces are on (RFC 9449 section 8.2).
pub async fn add_nonce(state: &AppState, headers: &mut HeaderMap, now: i64) {
    match current_nonce(state, now).await {
        Ok(Some(n)) => {
            if let Ok(v) = HeaderValue::from_str(&n) {
                headers.insert(DPOP_NONCE, v);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "no DPoP nonce could be made"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_depend_on_the_window_and_the_key_only() {
        let a = hmac::Key::new(hmac::HMAC_SHA256, &[1; 32]);
        let b = hmac::Key::new(hmac::HMAC_SHA256, &[2; 32]);
        let n = nonce_for(&a, 100);
        assert_eq!(n, nonce_for(&a, 100), "every node derives the same nonce");
        assert_ne!(n, nonce_for(&a, 101));
        assert_ne!(n, nonce_for(&b, 100));
        assert_eq!(n.len(), 32);
        assert!(n
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn exactly_one_dpop_header_is_read() {
        let mut h = HeaderMap::new();
        assert_eq!(proof_header(&h).unwrap(), None);
        h.append(DPOP, HeaderValue::from_static("a.b.c"));
        assert_eq!(proof_header(&h).unwrap(), Some("a.b.c"));
        h.append(DPOP, HeaderValue::from_static("d.e.f"));
        assert_eq!(
            proof_header(&h).unwrap_err().code,
            ErrorCode::InvalidDpopProof
        );
    }
}
