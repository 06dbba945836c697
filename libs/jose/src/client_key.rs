//! Public keys that clients register (a `JsonWebKey` client secret) and the verification of
//! JWSs they sign with them (`private_key_jwt` client assertions, RFC 7523 section 2.2).
//!
//! Owns: parsing a client's JWK (public members only, supported key types and algorithms,
//! RSA 2048 bits or more) and checking a compact JWS against a client's keys. Must not:
//! know about claims, clients or time (the caller checks the payload).
//!
//! Only asymmetric algorithms exist here: `none` and every HMAC algorithm are refused before
//! any key is looked at, so a public key can never be used as an HMAC secret (the
//! algorithm-confusion attack).

use aws_lc_rs::signature::{
    RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519,
    RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use crate::{Algorithm, JoseError, VerifiedJws};

/// Members that only a private or symmetric JWK has (RFC 7518 sections 6.2.2, 6.3.2, 6.4;
/// RFC 8037 section 2).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a registered JWK cannot be used. Messages name the rule, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientKeyError {
    #[error("must be a JSON object (a public JWK, RFC 7517)")]
    NotAnObject,
    #[error("must be a public key: the JWK has the private or symmetric member {0:?}")]
    PrivateMember(&'static str),
    #[error(
        "kty {0:?} is not supported (supported: RSA, EC with crv P-256, OKP with crv Ed25519)"
    )]
    UnsupportedKty(String),
    #[error("alg {0:?} is not supported for a client key (supported: RS256, PS256, ES256, EdDSA)")]
    UnsupportedAlg(String),
    #[error("alg {alg} does not fit kty {kty}")]
    AlgMismatch { alg: Algorithm, kty: &'static str },
    #[error("crv {0:?} is not supported (supported: P-256 for EC, Ed25519 for OKP)")]
    UnsupportedCurve(String),
    #[error("use {0:?} is not allowed: a client key signs (\"sig\")")]
    NotForSigning(String),
    #[error("member {0:?} is missing or not base64url")]
    BadMember(&'static str),
    #[error("an RSA key must have at least 2048 bits")]
    RsaTooShort,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// The uncompressed P-256 point (0x04 || x || y).
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
}

/// A client's public key, parsed once when the configuration is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    kid: Option<String>,
    /// The key's `alg`, when the JWK names one: then only that algorithm is accepted.
    alg: Option<Algorithm>,
    material: Material,
}

fn member(obj: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, ClientKeyError> {
    obj.get(name)
        .and_then(Value::as_str)
        .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        .filter(|b| !b.is_empty())
        .ok_or(ClientKeyError::BadMember(name))
}

fn string<'a>(
    obj: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, ClientKeyError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ClientKeyError::BadMember(name)),
    }
}

impl ClientKey {
    /// Parses a JWK written as a JSON string (the `value` of a `JsonWebKey` secret).
    pub fn parse(json: &str) -> Result<Self, ClientKeyError> {
        let value: Value = serde_json::from_str(json).map_err(|_| ClientKeyError::NotAnObject)?;
        let Value::Object(obj) = value else {
            return Err(ClientKeyError::NotAnObject);
        };
        if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
            return Err(ClientKeyError::PrivateMember(m));
        }
        if let Some(u) = string(&obj, "use")? {
            if u != "sig" {
                return Err(ClientKeyError::NotForSigning(u.to_owned()));
            }
        }
        let alg = match string(&obj, "alg")? {
            None => None,
            Some(a) => Some(
                a.parse::<Algorithm>()
                    .map_err(|_| ClientKeyError::UnsupportedAlg(a.to_owned()))?,
            ),
        };
        let kty = string(&obj, "kty")?.unwrap_or_default();
        let (material, kty, fits): (_, &'static str, &[Algorithm]) = match kty {
            "RSA" => {
                let n = member(&obj, "n")?;
                let e = member(&obj, "e")?;
                let bits = n.iter().position(|b| *b != 0).map_or(0, |first| {
                    (n.len() - first) * 8 - n[first].leading_zeros() as usize
                });
                if bits < 2048 {
                    return Err(ClientKeyError::RsaTooShort);
                }
                (
                    Material::Rsa { n, e },
                    "RSA",
                    &[Algorithm::RS256, Algorithm::PS256],
                )
            }
            "EC" => {
                let crv = string(&obj, "crv")?.unwrap_or_default();
                if crv != "P-256" {
                    return Err(ClientKeyError::UnsupportedCurve(crv.to_owned()));
                }
                let (x, y) = (member(&obj, "x")?, member(&obj, "y")?);
                if x.len() != 32 {
                    return Err(ClientKeyError::BadMember("x"));
                }
                if y.len() != 32 {
                    return Err(ClientKeyError::BadMember("y"));
                }
                let mut point = Vec::with_capacity(65);
                point.push(4u8);
                point.extend(x);
                point.extend(y);
                (Material::P256(point), "EC", &[Algorithm::ES256])
            }
            "OKP" => {
                let crv = string(&obj, "crv")?.unwrap_or_default();
                if crv != "Ed25519" {
                    return Err(ClientKeyError::UnsupportedCurve(crv.to_owned()));
                }
                let x = member(&obj, "x")?;
                if x.len() != 32 {
                    return Err(ClientKeyError::BadMember("x"));
                }
                (Material::Ed25519(x), "OKP", &[Algorithm::EdDSA])
            }
            other => return Err(ClientKeyError::UnsupportedKty(other.to_owned())),
        };
        if let Some(alg) = alg {
            if !fits.contains(&alg) {
                return Err(ClientKeyError::AlgMismatch { alg, kty });
            }
        }
        Ok(ClientKey {
            kid: string(&obj, "kid")?.map(str::to_owned),
            alg,
            material,
        })
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Whether this key may verify a signature made with `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        match self.alg {
            Some(a) => a == alg,
            None => matches!(
                (&self.material, alg),
                (Material::Rsa { .. }, Algorithm::RS256 | Algorithm::PS256)
                    | (Material::P256(_), Algorithm::ES256)
                    | (Material::Ed25519(_), Algorithm::EdDSA)
            ),
        }
    }

    /// The JWK SHA-256 thumbprint (RFC 7638 section 3), base64url: the hash of the
    /// required members in lexicographic order, without whitespace.
    pub fn thumbprint(&self) -> String {
        let canonical = match &self.material {
            Material::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                crate::b64url(e),
                crate::b64url(n)
            ),
            Material::P256(point) => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                crate::b64url(&point[1..33]),
                crate::b64url(&point[33..])
            ),
            Material::Ed25519(x) => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                crate::b64url(x)
            ),
        };
        crate::b64url(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref(),
        )
    }

    pub(crate) fn verify(&self, alg: Algorithm, signed: &[u8], signature: &[u8]) -> bool {
        match (&self.material, alg) {
            (Material::Rsa { n, e }, Algorithm::RS256 | Algorithm::PS256) => {
                let params = if alg == Algorithm::RS256 {
                    &RSA_PKCS1_2048_8192_SHA256
                } else {
                    &RSA_PSS_2048_8192_SHA256
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, signed, signature)
                    .is_ok()
            }
            (Material::P256(point), Algorithm::ES256) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(signed, signature)
                    .is_ok()
            }
            (Material::Ed25519(x), Algorithm::EdDSA) => UnparsedPublicKey::new(&ED25519, x)
                .verify(signed, signature)
                .is_ok(),
            _ => false,
        }
    }
}

/// Verifies a compact JWS signed with one of `keys`. The header's `alg` must be an
/// asymmetric algorithm this server knows (never `none`, never HMAC) that the key accepts;
/// with a `kid` in the header only keys with that `kid` (or without one) are tried, without
/// one every key is. The signature is checked before anything in the payload is trusted.
pub fn verify_with_client_keys<'k>(
    token: &str,
    keys: impl IntoIterator<Item = &'k ClientKey>,
) -> Result<VerifiedJws, JoseError> {
    let parts = crate::verify::parts(token)?;
    let (alg, signed, signature) = (parts.alg, parts.signed, &parts.signature);
    let mut candidates = keys
        .into_iter()
        .filter(|k| match (&parts.kid, &k.kid) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        })
        .filter(|k| k.accepts(alg))
        .peekable();
    if candidates.peek().is_none() {
        return Err(JoseError::UnknownKey(parts.kid.clone().unwrap_or_default()));
    }
    if !candidates.any(|k| k.verify(alg, signed, signature)) {
        return Err(JoseError::BadSignature);
    }
    Ok(VerifiedJws {
        alg,
        kid: parts.kid.unwrap_or_default(),
        typ: parts.typ,
        payload: crate::verify::decode(parts.payload)?,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{generate_pkcs8, JwsSigner, SigningKey};

    fn key(alg: Algorithm) -> Arc<SigningKey> {
        let der = generate_pkcs8(alg).unwrap();
        Arc::new(SigningKey::from_pkcs8(format!("k-{alg}"), alg, &der).unwrap())
    }

    fn public(k: &SigningKey) -> ClientKey {
        ClientKey::parse(&serde_json::to_string(k.public_jwk()).unwrap()).unwrap()
    }

    #[test]
    fn every_algorithm_verifies_with_its_public_key_only() {
        let keys: Vec<_> = Algorithm::ALL.iter().map(|a| key(*a)).collect();
        for k in &keys {
            let token = JwsSigner::new(k.clone(), "JWT").sign(b"{\"a\":1}").unwrap();
            let v = verify_with_client_keys(&token, [&public(k)]).unwrap();
            assert_eq!(v.payload, b"{\"a\":1}");
            for other in keys.iter().filter(|o| o.alg() != k.alg()) {
                assert!(verify_with_client_keys(&token, [&public(other)]).is_err());
            }
            // Another key of the same algorithm (with the same kid) fails the signature.
            let twin = key(k.alg());
            assert!(matches!(
                verify_with_client_keys(&token, [&public(&twin)]),
                Err(JoseError::BadSignature)
            ));
        }
    }

    #[test]
    fn none_and_hmac_are_refused_before_any_key() {
        let k = key(Algorithm::ES256);
        let public = public(&k);
        for alg in ["none", "HS256", "HS384", "HS512"] {
            let header = crate::b64url(format!("{{\"alg\":\"{alg}\"}}").as_bytes());
            let token = format!("{header}.{}.", crate::b64url(b"{}"));
            assert!(matches!(
                verify_with_client_keys(&token, [&public]),
                Err(JoseError::AlgorithmNotAllowed(_))
            ));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 256,
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// Whatever an admin writes as a key, and whatever a client sends as an assertion,
        /// the answer is a value, never a panic.
        #[test]
        fn arbitrary_keys_and_assertions_never_panic(
            kty in "(RSA|EC|OKP|oct|)",
            member in "[A-Za-z0-9_-]{0,90}",
            token in "[A-Za-z0-9_.-]{0,300}",
        ) {
            let json = format!(
                r#"{{"kty":"{kty}","crv":"P-256","n":"{member}","e":"AQAB","x":"{member}","y":"{member}"}}"#
            );
            let key = ClientKey::parse(&json);
            let k = key.as_ref().ok();
            let _ = verify_with_client_keys(&token, k);
            let _ = ClientKey::parse(&member);
        }
    }

    #[test]
    fn private_members_and_unsupported_keys_are_refused() {
        let k = key(Algorithm::ES256);
        let mut jwk = serde_json::to_value(k.public_jwk()).unwrap();
        jwk["d"] = "AAAA".into();
        assert_eq!(
            ClientKey::parse(&jwk.to_string()),
            Err(ClientKeyError::PrivateMember("d"))
        );
        assert_eq!(
            ClientKey::parse(r#"{"kty":"oct","k":"AAAA"}"#),
            Err(ClientKeyError::PrivateMember("k"))
        );
        assert_eq!(
            ClientKey::parse(r#"{"kty":"oct"}"#),
            Err(ClientKeyError::UnsupportedKty("oct".into()))
        );
        let mut hs = serde_json::to_value(k.public_jwk()).unwrap();
        hs["alg"] = "HS256".into();
        assert_eq!(
            ClientKey::parse(&hs.to_string()),
            Err(ClientKeyError::UnsupportedAlg("HS256".into()))
        );
        let mut rs = serde_json::to_value(k.public_jwk()).unwrap();
        rs["alg"] = "RS256".into();
        assert!(matches!(
            ClientKey::parse(&rs.to_string()),
            Err(ClientKeyError::AlgMismatch { .. })
        ));
        let mut p384 = serde_json::to_value(k.public_jwk()).unwrap();
        p384["crv"] = "P-384".into();
        assert!(matches!(
            ClientKey::parse(&p384.to_string()),
            Err(ClientKeyError::UnsupportedCurve(_))
        ));
        let mut enc = serde_json::to_value(k.public_jwk()).unwrap();
        enc["use"] = "enc".into();
        assert!(matches!(
            ClientKey::parse(&enc.to_string()),
            Err(ClientKeyError::NotForSigning(_))
        ));
        assert_eq!(ClientKey::parse("[1]"), Err(ClientKeyError::NotAnObject));
        let short = format!(
            r#"{{"kty":"RSA","n":"{}","e":"AQAB"}}"#,
            crate::b64url(&[0xff; 128])
        );
        assert_eq!(ClientKey::parse(&short), Err(ClientKeyError::RsaTooShort));
    }
}
