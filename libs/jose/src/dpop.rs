//! DPoP proofs (RFC 9449 section 4): the checks a server makes on a `DPoP` header's JWT,
//! shared by the authorization server (token endpoint, userinfo) and resource servers
//! (`signet-verify`).
//!
//! Owns: the proof's syntax, header (`typ: dpop+jwt`, an asymmetric `alg` from the
//! allow-list, a public `jwk`), signature, `htm`, `htu` (RFC 9449 section 4.3: compared
//! after syntax-based normalization, without query and fragment), the `iat` window, `ath`
//! (section 4.2) and the key's JWK SHA-256 thumbprint (RFC 7638). Must not: know about
//! storage: `jti` single use and server nonces are the caller's (it gets both back).

use aws_lc_rs::digest::{digest, SHA256};
use serde_json::{Map, Value};

use crate::client_key::ClientKey;
use crate::verify::decode;
use crate::{b64url, Algorithm, ClientKeyError};

/// The algorithms a DPoP proof may be signed with: every asymmetric algorithm this crate
/// verifies, never `none`, never HMAC (RFC 9449 section 4.3, check 5).
pub const DPOP_ALGORITHMS: [Algorithm; 4] = Algorithm::ALL;
/// The `typ` of a DPoP proof (RFC 9449 section 4.2).
pub const DPOP_TYP: &str = "dpop+jwt";
/// The longest proof looked at, in bytes (a proof carries one public key: an RSA 4096-bit
/// key and its signature fit easily).
pub const MAX_PROOF_LEN: usize = 8 * 1024;
/// The longest `jti` accepted.
pub const MAX_JTI_LEN: usize = 256;

/// What a proof must match, and the `iat` window.
#[derive(Debug, Clone, Copy)]
pub struct ProofCheck<'a> {
    /// The request's method (`htm`), e.g. `POST`.
    pub method: &'a str,
    /// The request's URL (`htu`); its query and fragment are ignored.
    pub url: &'a str,
    /// Now, in Unix seconds.
    pub now: i64,
    /// How old a proof's `iat` may be, in seconds.
    pub max_age: i64,
    /// How far in the future a proof's `iat` may be (clock skew), in seconds.
    pub max_future: i64,
    /// The access token the proof goes with: `ath` must be its hash (resource requests).
    /// `None` at the token endpoint, where there is no access token yet.
    pub access_token: Option<&'a str>,
}

/// A proof whose every check passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopProof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's public key, base64url: the `jkt` a
    /// bound token carries in `cnf`.
    pub jkt: String,
    /// The proof's `jti`: the caller records it to refuse a replay.
    pub jti: String,
    pub iat: i64,
    /// The proof's `nonce` claim, if any: the caller checks it when it demands nonces.
    pub nonce: Option<String>,
    pub alg: Algorithm,
}

/// Why a proof was refused. Messages name the rule, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("the DPoP proof is malformed: {0}")]
    Malformed(&'static str),
    #[error("the DPoP proof's typ must be dpop+jwt")]
    WrongType,
    #[error("the DPoP proof's alg {0:?} is not allowed (allowed: RS256, PS256, ES256, EdDSA)")]
    AlgorithmNotAllowed(String),
    #[error("the DPoP proof's jwk is not usable: {0}")]
    BadKey(ClientKeyError),
    #[error("the DPoP proof's jwk does not fit its alg")]
    KeyAlgMismatch,
    #[error("the DPoP proof's signature is invalid")]
    BadSignature,
    #[error("the DPoP proof lacks the {0} claim or it has the wrong type")]
    MissingClaim(&'static str),
    #[error("the DPoP proof is for another HTTP method (htm)")]
    WrongMethod,
    #[error("the DPoP proof is for another URL (htu)")]
    WrongUrl,
    #[error("the DPoP proof's iat is outside the accepted window")]
    IatOutOfWindow,
    #[error("the DPoP proof's ath does not match the access token")]
    WrongAth,
}

/// `ath`: base64url(SHA-256(access token)) (RFC 9449 section 4.2).
pub fn access_token_hash(token: &str) -> String {
    b64url(digest(&SHA256, token.as_bytes()).as_ref())
}

/// The URL a proof's `htu` is compared as: scheme and host lowercased, default port
/// dropped, dot segments resolved, percent-encoding normalized (RFC 3986 section 6.2.2,
/// as the `url` crate parses), without query and fragment. `None` if it is not an
/// absolute http(s) URL.
pub fn normalize_htu(u: &str) -> Option<String> {
    let mut url = url::Url::parse(u).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    Some(url.into())
}

fn claim_str<'a>(claims: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, DpopError> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .ok_or(DpopError::MissingClaim(name))
}

/// Checks a DPoP proof against `check` (RFC 9449 section 4.3, checks 1 to 11 except the
/// nonce and the `jti` replay, which need state: the caller's).
pub fn verify_proof(proof: &str, check: &ProofCheck<'_>) -> Result<DpopProof, DpopError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(DpopError::Malformed("the proof is too long"));
    }
    let mut parts = proof.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopError::Malformed("expected a compact JWS (three parts)"));
    };
    let bad = |_| DpopError::Malformed("a part is not base64url");
    let header: Map<String, Value> = serde_json::from_slice(&decode(h).map_err(bad)?)
        .map_err(|_| DpopError::Malformed("the header is not a JSON object"))?;
    if header.get("typ").and_then(Value::as_str) != Some(DPOP_TYP) {
        return Err(DpopError::WrongType);
    }
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(DpopError::Malformed("the header has no alg"))?;
    let alg: Algorithm = alg_name
        .parse()
        .ok()
        .filter(|a| DPOP_ALGORITHMS.contains(a))
        .ok_or_else(|| DpopError::AlgorithmNotAllowed(alg_name.chars().take(32).collect()))?;
    let jwk = header
        .get("jwk")
        .filter(|j| j.is_object())
        .ok_or(DpopError::Malformed("the header has no jwk object"))?;
    let key = ClientKey::parse(&jwk.to_string()).map_err(DpopError::BadKey)?;
    if !key.accepts(alg) {
        return Err(DpopError::KeyAlgMismatch);
    }
    let signature = decode(s).map_err(bad)?;
    let signed = &proof.as_bytes()[..h.len() + 1 + p.len()];
    if !key.verify(alg, signed, &signature) {
        return Err(DpopError::BadSignature);
    }
    let claims: Map<String, Value> = serde_json::from_slice(&decode(p).map_err(bad)?)
        .map_err(|_| DpopError::Malformed("the payload is not a JSON object"))?;
    let jti = claim_str(&claims, "jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(DpopError::MissingClaim("jti"));
    }
    if claim_str(&claims, "htm")? != check.method {
        return Err(DpopError::WrongMethod);
    }
    let htu = normalize_htu(claim_str(&claims, "htu")?).ok_or(DpopError::WrongUrl)?;
    if Some(htu) != normalize_htu(check.url) {
        return Err(DpopError::WrongUrl);
    }
    let iat = claims
        .get("iat")
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        })
        .ok_or(DpopError::MissingClaim("iat"))?;
    if iat < check.now.saturating_sub(check.max_age)
        || iat > check.now.saturating_add(check.max_future)
    {
        return Err(DpopError::IatOutOfWindow);
    }
    if let Some(token) = check.access_token {
        let ath = claim_str(&claims, "ath")?;
        let want = access_token_hash(token);
        if !constant_time_eq(ath.as_bytes(), want.as_bytes()) {
            return Err(DpopError::WrongAth);
        }
    }
    let nonce = match claims.get("nonce") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => return Err(DpopError::MissingClaim("nonce")),
    };
    Ok(DpopProof {
        jkt: key.thumbprint(),
        jti: jti.to_owned(),
        iat,
        nonce,
        alg,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::{generate_pkcs8, SigningKey};

    const URL: &str = "https://id.example.com/oauth2/token";

    fn key(alg: Algorithm) -> Arc<SigningKey> {
        let der = generate_pkcs8(alg).unwrap();
        Arc::new(SigningKey::from_pkcs8("k", alg, &der).unwrap())
    }

    fn jwk(k: &SigningKey) -> Value {
        let mut j = serde_json::to_value(k.public_jwk()).unwrap();
        let o = j.as_object_mut().unwrap();
        o.retain(|name, v| !v.is_null() && !["kid", "use", "alg"].contains(&name.as_str()));
        j
    }

    fn sign(k: &SigningKey, header: Value, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut sig = Vec::new();
        k.sign_into(input.as_bytes(), &mut sig).unwrap();
        format!("{input}.{}", b64url(&sig))
    }

    fn proof(k: &SigningKey, claims: Value) -> String {
        sign(
            k,
            json!({"typ": "dpop+jwt", "alg": k.alg().as_str(), "jwk": jwk(k)}),
            claims,
        )
    }

    fn check(now: i64) -> ProofCheck<'static> {
        ProofCheck {
            method: "POST",
            url: URL,
            now,
            max_age: 60,
            max_future: 5,
            access_token: None,
        }
    }

    #[test]
    fn every_algorithm_verifies_and_the_thumbprint_follows_rfc7638() {
        for alg in DPOP_ALGORITHMS {
            let k = key(alg);
            let p = proof(
                &k,
                json!({"jti": "a", "htm": "POST", "htu": URL, "iat": 1000}),
            );
            let v = verify_proof(&p, &check(1000)).unwrap();
            assert_eq!(v.jti, "a");
            assert_eq!(v.alg, alg);
            // The thumbprint of the required members in lexicographic order, no spaces.
            let j = jwk(&k);
            let canonical = match j["kty"].as_str().unwrap() {
                "RSA" => json!({"e": j["e"], "kty": "RSA", "n": j["n"]}).to_string(),
                "EC" => json!({"crv": j["crv"], "kty": "EC", "x": j["x"], "y": j["y"]}).to_string(),
                _ => json!({"crv": j["crv"], "kty": "OKP", "x": j["x"]}).to_string(),
            };
            assert_eq!(
                v.jkt,
                b64url(digest(&SHA256, canonical.as_bytes()).as_ref())
            );
        }
    }

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let key =
            ClientKey::parse(&json!({"kty": "RSA", "n": n, "e": "AQAB"}).to_string()).unwrap();
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn each_rule_is_checked() {
        let k = key(Algorithm::ES256);
        let good = json!({"jti": "a", "htm": "POST", "htu": URL, "iat": 1000});
        let with = |name: &str, v: Value| {
            let mut c = good.clone();
            c[name] = v;
            proof(&k, c)
        };
        let err = |p: &str| verify_proof(p, &check(1000)).unwrap_err();
        assert_eq!(err(&with("htm", "GET".into())), DpopError::WrongMethod);
        assert_eq!(
            err(&with("htu", "https://id.example.com/oauth2/other".into())),
            DpopError::WrongUrl
        );
        assert_eq!(err(&with("iat", 939.into())), DpopError::IatOutOfWindow);
        assert_eq!(err(&with("iat", 1006.into())), DpopError::IatOutOfWindow);
        assert_eq!(err(&with("jti", 5.into())), DpopError::MissingClaim("jti"));
        // htu: case of scheme and host, the default port, query and fragment do not matter.
        let same = with(
            "htu",
            "HTTPS://ID.example.com:443/oauth2/token?x=1#f".into(),
        );
        assert!(verify_proof(&same, &check(1000)).is_ok());
        // Header rules.
        let claims = good.clone();
        let typ = sign(
            &k,
            json!({"typ": "JWT", "alg": "ES256", "jwk": jwk(&k)}),
            claims.clone(),
        );
        assert_eq!(err(&typ), DpopError::WrongType);
        let mut private = jwk(&k);
        private["d"] = "AAAA".into();
        let p = sign(
            &k,
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private}),
            claims.clone(),
        );
        assert_eq!(
            err(&p),
            DpopError::BadKey(ClientKeyError::PrivateMember("d"))
        );
        for alg in ["none", "HS256"] {
            let h = json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk(&k)});
            let p = format!("{}.{}.", b64url(h.to_string().as_bytes()), b64url(b"{}"));
            assert_eq!(err(&p), DpopError::AlgorithmNotAllowed(alg.into()));
        }
        let other = key(Algorithm::ES256);
        let p = sign(
            &k,
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk(&other)}),
            claims,
        );
        assert_eq!(err(&p), DpopError::BadSignature);
        // ath with an access token.
        let mut c = check(1000);
        c.access_token = Some("tok");
        assert_eq!(
            verify_proof(&proof(&k, good.clone()), &c),
            Err(DpopError::MissingClaim("ath"))
        );
        assert_eq!(
            verify_proof(&with("ath", access_token_hash("other").into()), &c),
            Err(DpopError::WrongAth)
        );
        assert!(verify_proof(&with("ath", access_token_hash("tok").into()), &c).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 256,
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// Whatever a client sends as a proof, the answer is a value, never a panic.
        #[test]
        fn arbitrary_proofs_never_panic(token in "[A-Za-z0-9_.-]{0,400}") {
            let _ = verify_proof(&token, &check(1000));
        }
    }
}
