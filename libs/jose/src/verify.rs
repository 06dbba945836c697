//! Compact JWS verification against public JWKs, with an algorithm allow-list. Used by the
//! issuer to check its own tokens (admin API); resource servers use `signet-verify`.

use aws_lc_rs::signature::{
    RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519,
    RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

use crate::{Algorithm, JoseError, Jwk};

/// A JWS whose signature checked out. `payload` is the decoded JSON payload.
#[derive(Debug, Clone)]
pub struct VerifiedJws {
    pub alg: Algorithm,
    pub kid: String,
    pub typ: Option<String>,
    pub payload: Vec<u8>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
}

pub(crate) fn decode(part: &str) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JoseError::Malformed("a part is not base64url"))
}

/// A compact JWS taken apart, before any signature check: the header's fields, its `alg`
/// parsed (one of ours: never `none`, never HMAC), the signing input and the signature.
pub(crate) struct Parts<'t> {
    pub alg: Algorithm,
    pub alg_name: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
    /// `header.payload`, the bytes the signature covers.
    pub signed: &'t [u8],
    pub signature: Vec<u8>,
    /// The payload, still base64url.
    pub payload: &'t str,
}

pub(crate) fn parts(token: &str) -> Result<Parts<'_>, JoseError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JoseError::Malformed("expected three dot-separated parts"));
    };
    let header: Header = serde_json::from_slice(&decode(h)?)
        .map_err(|_| JoseError::Malformed("header is not a JSON object"))?;
    let alg: Algorithm = header
        .alg
        .parse()
        .map_err(|_| JoseError::AlgorithmNotAllowed(header.alg.clone()))?;
    Ok(Parts {
        alg,
        alg_name: header.alg,
        kid: header.kid,
        typ: header.typ,
        signed: &token.as_bytes()[..h.len() + 1 + p.len()],
        signature: decode(s)?,
        payload: p,
    })
}

/// Verifies `token`, looking its `kid` up with `find_key`. The header's `alg` must be one of
/// ours (never `none`, never HMAC) and must equal the key's own `alg`.
pub fn verify_compact<'k>(
    token: &str,
    find_key: impl FnOnce(&str) -> Option<&'k Jwk>,
) -> Result<VerifiedJws, JoseError> {
    let parts = parts(token)?;
    let alg = parts.alg;
    let kid = parts.kid.ok_or(JoseError::Malformed("header has no kid"))?;
    let jwk = find_key(&kid).ok_or_else(|| JoseError::UnknownKey(kid.clone()))?;
    if jwk.alg != alg {
        return Err(JoseError::AlgorithmNotAllowed(parts.alg_name));
    }
    let (signed, signature) = (parts.signed, parts.signature);
    let field = |v: &Option<String>| -> Result<Vec<u8>, JoseError> {
        decode(
            v.as_deref()
                .ok_or(JoseError::Malformed("JWK lacks a member"))?,
        )
    };
    let ok = match alg {
        Algorithm::RS256 | Algorithm::PS256 => {
            let params = if alg == Algorithm::RS256 {
                &RSA_PKCS1_2048_8192_SHA256
            } else {
                &RSA_PSS_2048_8192_SHA256
            };
            let (n, e) = (field(&jwk.n)?, field(&jwk.e)?);
            RsaPublicKeyComponents { n: &n, e: &e }
                .verify(params, signed, &signature)
                .is_ok()
        }
        Algorithm::ES256 => {
            let mut point = vec![4u8];
            point.extend(field(&jwk.x)?);
            point.extend(field(&jwk.y)?);
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, &signature)
                .is_ok()
        }
        Algorithm::EdDSA => UnparsedPublicKey::new(&ED25519, field(&jwk.x)?)
            .verify(signed, &signature)
            .is_ok(),
    };
    if !ok {
        return Err(JoseError::BadSignature);
    }
    Ok(VerifiedJws {
        alg,
        kid,
        typ: parts.typ,
        payload: decode(parts.payload)?,
    })
}

#[cfg(test)]
mod fuzz;
