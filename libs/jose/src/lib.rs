//! JOSE for Signet: signing algorithms, key pairs kept parsed for their whole life, compact
//! JWS signing with a pre-encoded header, public JWKs, and JWS verification.
//!
//! Owns: everything that touches signature bytes. Must not: know about OAuth clients,
//! storage or HTTP. Signing goes straight through aws-lc-rs with a kept key pair, because
//! `jsonwebtoken::encode` parses the private key again on every call (more than halving the
//! RS256 rate); `jsonwebtoken` remains the independent verifier in tests.

#![forbid(unsafe_code)]

mod alg;
mod client_key;
mod dpop;
mod jwk;
mod key;
mod shared_secret;
mod sign;
mod verify;

pub use alg::{Algorithm, UnknownAlgorithm};
pub use client_key::{verify_with_client_keys, ClientKey, ClientKeyError};
pub use dpop::{
    access_token_hash, normalize_htu, verify_proof, DpopError, DpopProof, ProofCheck,
    DPOP_ALGORITHMS, DPOP_TYP,
};
pub use jwk::{Jwk, Jwks};
pub use key::{generate_pkcs8, SigningKey};
pub use shared_secret::{is_hmac_signed, verify_with_shared_secrets, HMAC_ALGORITHMS};
pub use sign::{b64url, JwsSigner};
pub use verify::{verify_compact, VerifiedJws};

/// Errors of this crate. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum JoseError {
    #[error("key generation failed for {0}")]
    KeyGeneration(Algorithm),
    #[error("the private key is not a valid {0} key")]
    InvalidKey(Algorithm),
    #[error("the PEM document could not be read: {0}")]
    Pem(String),
    #[error("signing failed")]
    Signing,
    #[error("malformed JWS: {0}")]
    Malformed(&'static str),
    #[error("JWS signature is invalid")]
    BadSignature,
    #[error("JWS algorithm {0:?} is not allowed here")]
    AlgorithmNotAllowed(String),
    #[error("no key with kid {0:?}")]
    UnknownKey(String),
}
