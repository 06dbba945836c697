//! Signing keys: generated or imported once, parsed once, and kept as aws-lc-rs key pairs for
//! as long as the key signs. The public half is derived here, once, as a JWK.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};

use crate::{b64url, Algorithm, JoseError, Jwk};

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private signing key, parsed once. Debug output never shows key material.
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    pair: Pair,
    rng: SystemRandom,
    jwk: Jwk,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Generates a new private key for `alg` as PKCS#8 v1 DER (RSA keys are 2048 bits).
pub fn generate_pkcs8(alg: Algorithm) -> Result<Vec<u8>, JoseError> {
    let err = |_| JoseError::KeyGeneration(alg);
    let rng = SystemRandom::new();
    Ok(match alg {
        Algorithm::RS256 | Algorithm::PS256 => RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(err)?
            .as_der()
            .map_err(err)?
            .as_ref()
            .to_vec(),
        Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(err)?
            .as_ref()
            .to_vec(),
        Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8v1(&rng)
            .map_err(err)?
            .as_ref()
            .to_vec(),
    })
}

impl SigningKey {
    /// Parses a PKCS#8 DER private key for `alg`.
    pub fn from_pkcs8(
        kid: impl Into<String>,
        alg: Algorithm,
        der: &[u8],
    ) -> Result<Self, JoseError> {
        let bad = |_| JoseError::InvalidKey(alg);
        let pair = match alg {
            Algorithm::RS256 | Algorithm::PS256 => {
                let pair = RsaKeyPair::from_pkcs8(der).map_err(bad)?;
                if pair.public_modulus_len() < 256 {
                    return Err(JoseError::InvalidKey(alg));
                }
                Pair::Rsa(pair)
            }
            Algorithm::ES256 => Pair::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(bad)?,
            ),
            Algorithm::EdDSA => Pair::Ed(Ed25519KeyPair::from_pkcs8(der).map_err(bad)?),
        };
        Self::new(kid.into(), alg, pair, der.to_vec())
    }

    /// Imports a PEM private key: `PRIVATE KEY` (PKCS#8) for every algorithm, also
    /// `RSA PRIVATE KEY` (PKCS#1) and `EC PRIVATE KEY` (RFC 5915).
    pub fn from_pem(
        kid: impl Into<String>,
        alg: Algorithm,
        pem_text: &str,
    ) -> Result<Self, JoseError> {
        let doc = pem::parse(pem_text).map_err(|e| JoseError::Pem(e.to_string()))?;
        fn invalid<E>(alg: Algorithm) -> impl Fn(E) -> JoseError {
            move |_| JoseError::InvalidKey(alg)
        }
        let bad = invalid::<aws_lc_rs::error::KeyRejected>(alg);
        let unspecified = invalid::<aws_lc_rs::error::Unspecified>(alg);
        match (doc.tag(), alg) {
            ("PRIVATE KEY", _) => Self::from_pkcs8(kid, alg, doc.contents()),
            ("RSA PRIVATE KEY", Algorithm::RS256 | Algorithm::PS256) => {
                let pair = RsaKeyPair::from_der(doc.contents()).map_err(bad)?;
                let der = pair.as_der().map_err(unspecified)?.as_ref().to_vec();
                Self::from_pkcs8(kid, alg, &der)
            }
            ("EC PRIVATE KEY", Algorithm::ES256) => {
                let pair = EcdsaKeyPair::from_private_key_der(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    doc.contents(),
                )
                .map_err(bad)?;
                let der = pair.to_pkcs8v1().map_err(unspecified)?.as_ref().to_vec();
                Self::from_pkcs8(kid, alg, &der)
            }
            (tag, _) => Err(JoseError::Pem(format!(
                "a {tag:?} block cannot hold a {alg} private key"
            ))),
        }
    }

    fn new(kid: String, alg: Algorithm, pair: Pair, pkcs8: Vec<u8>) -> Result<Self, JoseError> {
        let base = |kty: &str| Jwk {
            kty: kty.to_owned(),
            kid: kid.clone(),
            alg,
            use_: "sig".to_owned(),
            n: None,
            e: None,
            crv: None,
            x: None,
            y: None,
        };
        let jwk = match &pair {
            Pair::Rsa(p) => {
                let public = p.public_key();
                Jwk {
                    n: Some(b64url(public.modulus().big_endian_without_leading_zero())),
                    e: Some(b64url(public.exponent().big_endian_without_leading_zero())),
                    ..base("RSA")
                }
            }
            Pair::Ec(p) => {
                // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
                let point = p.public_key().as_ref();
                if point.len() != 65 || point[0] != 4 {
                    return Err(JoseError::InvalidKey(alg));
                }
                Jwk {
                    crv: Some("P-256".to_owned()),
                    x: Some(b64url(&point[1..33])),
                    y: Some(b64url(&point[33..65])),
                    ..base("EC")
                }
            }
            Pair::Ed(p) => Jwk {
                crv: Some("Ed25519".to_owned()),
                x: Some(b64url(p.public_key().as_ref())),
                ..base("OKP")
            },
        };
        Ok(SigningKey {
            kid,
            alg,
            pair,
            rng: SystemRandom::new(),
            jwk,
            pkcs8,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public half, as published in the JWKS.
    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The private key as PKCS#8 DER, for sealing under a key-encryption key. Never log it.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// Length of a signature in bytes.
    pub fn signature_len(&self) -> usize {
        match &self.pair {
            Pair::Rsa(p) => p.public_modulus_len(),
            Pair::Ec(_) => 64,
            Pair::Ed(_) => 64,
        }
    }

    /// Signs `msg` and appends the raw signature bytes to `out`.
    pub fn sign_into(&self, msg: &[u8], out: &mut Vec<u8>) -> Result<(), JoseError> {
        match &self.pair {
            Pair::Rsa(p) => {
                let start = out.len();
                out.resize(start + p.public_modulus_len(), 0);
                let padding = if self.alg == Algorithm::PS256 {
                    &RSA_PSS_SHA256
                } else {
                    &RSA_PKCS1_SHA256
                };
                p.sign(padding, &self.rng, msg, &mut out[start..])
                    .map_err(|_| JoseError::Signing)
            }
            Pair::Ec(p) => {
                let sig = p.sign(&self.rng, msg).map_err(|_| JoseError::Signing)?;
                out.extend_from_slice(sig.as_ref());
                Ok(())
            }
            Pair::Ed(p) => {
                out.extend_from_slice(p.sign(msg).as_ref());
                Ok(())
            }
        }
    }
}
