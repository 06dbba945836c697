//! `client_secret_jwt` (RFC 7523 section 2.2, OIDC Core section 9): a JWS keyed with the
//! client's shared secret (HMAC). Kept apart from the public-key verifiers on purpose: an
//! HMAC `alg` is accepted only here, where the key is a secret the server holds, never
//! with a public key (the "HMAC with a public key" confusion).

use aws_lc_rs::hmac;
use serde::Deserialize;

use crate::verify::decode;
use crate::JoseError;

/// The HMAC algorithms `client_secret_jwt` accepts, strongest last.
pub const HMAC_ALGORITHMS: [&str; 3] = ["HS256", "HS384", "HS512"];

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Whether `token`'s header names an HMAC algorithm (the header only: nothing is trusted).
pub fn is_hmac_signed(token: &str) -> bool {
    token
        .split('.')
        .next()
        .and_then(|h| decode(h).ok())
        .and_then(|h| serde_json::from_slice::<Header>(&h).ok())
        .is_some_and(|h| HMAC_ALGORITHMS.contains(&h.alg.as_str()))
}

/// Verifies a compact JWS signed with HS256, HS384 or HS512 under one of `secrets`, and
/// returns its decoded payload. A secret shorter than the algorithm's hash output is never
/// used (RFC 7518 section 3.2); the comparison is constant-time.
pub fn verify_with_shared_secrets<'s>(
    token: &str,
    secrets: impl IntoIterator<Item = &'s [u8]>,
) -> Result<Vec<u8>, JoseError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JoseError::Malformed("expected three dot-separated parts"));
    };
    let header: Header = serde_json::from_slice(&decode(h)?)
        .map_err(|_| JoseError::Malformed("header is not a JSON object"))?;
    let (alg, min_len) = match header.alg.as_str() {
        "HS256" => (hmac::HMAC_SHA256, 32),
        "HS384" => (hmac::HMAC_SHA384, 48),
        "HS512" => (hmac::HMAC_SHA512, 64),
        _ => return Err(JoseError::AlgorithmNotAllowed(header.alg)),
    };
    let signature = decode(s)?;
    let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
    let mut tried = false;
    for secret in secrets.into_iter().filter(|s| s.len() >= min_len) {
        tried = true;
        if hmac::verify(&hmac::Key::new(alg, secret), signed, &signature).is_ok() {
            return decode(p);
        }
    }
    if tried {
        Err(JoseError::BadSignature)
    } else {
        // Every secret is too short for this algorithm (or there is none).
        Err(JoseError::AlgorithmNotAllowed(header.alg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64url;

    fn sign(alg: &str, secret: &[u8], payload: &str) -> String {
        let h = b64url(format!("{{\"alg\":\"{alg}\",\"typ\":\"JWT\"}}").as_bytes());
        let p = b64url(payload.as_bytes());
        let algorithm = match alg {
            "HS256" => hmac::HMAC_SHA256,
            "HS384" => hmac::HMAC_SHA384,
            _ => hmac::HMAC_SHA512,
        };
        let tag = hmac::sign(
            &hmac::Key::new(algorithm, secret),
            format!("{h}.{p}").as_bytes(),
        );
        format!("{h}.{p}.{}", b64url(tag.as_ref()))
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn each_hmac_algorithm_verifies_with_its_secret_only() {
        for alg in HMAC_ALGORITHMS {
            let token = sign(alg, SECRET, "{\"a\":1}");
            assert!(is_hmac_signed(&token));
            let payload = verify_with_shared_secrets(&token, [SECRET]).unwrap();
            assert_eq!(payload, b"{\"a\":1}");
            let other = b"another secret of enough length, sixty-four bytes or more: yes!!";
            assert!(matches!(
                verify_with_shared_secrets(&token, [&other[..]]),
                Err(JoseError::BadSignature)
            ));
            // The right secret among others.
            assert!(verify_with_shared_secrets(&token, [&other[..], SECRET]).is_ok());
        }
    }

    #[test]
    fn a_secret_shorter_than_the_hash_is_never_used_and_other_algs_are_refused() {
        let short = &SECRET[..40];
        let token = sign("HS384", short, "{}");
        assert!(matches!(
            verify_with_shared_secrets(&token, [short]),
            Err(JoseError::AlgorithmNotAllowed(_))
        ));
        assert!(verify_with_shared_secrets(&sign("HS256", short, "{}"), [short]).is_ok());
        for alg in ["none", "RS256", "ES256", "EdDSA", "hs256"] {
            let h = b64url(format!("{{\"alg\":\"{alg}\"}}").as_bytes());
            let token = format!("{h}.{}.", b64url(b"{}"));
            assert!(!is_hmac_signed(&token), "{alg}");
            assert!(matches!(
                verify_with_shared_secrets(&token, [SECRET]),
                Err(JoseError::AlgorithmNotAllowed(_))
            ));
        }
        // A tampered payload fails.
        let token = sign("HS256", SECRET, "{\"a\":1}");
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64url(b"{\"a\":2}");
        parts[1] = &forged;
        assert!(matches!(
            verify_with_shared_secrets(&parts.join("."), [SECRET]),
            Err(JoseError::BadSignature)
        ));
    }
}
