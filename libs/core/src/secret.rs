//! Shared secrets of clients and API resources. Three shapes of one thing:
//! [`SecretInput`] (what an admin writes, plaintext), [`StoredSecret`] (what events and the
//! projection hold: a SHA-256 hash, never the value) and [`SecretView`] (what reads return:
//! no value at all). Secrets are generated with high entropy, so an unsalted SHA-256 with a
//! constant-time compare is both safe and cheap enough for the token endpoint (DESIGN.md).

use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use signet_jose::ClientKey;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::UnixTime;

/// The one secret type compared by value.
pub const SHARED_SECRET: &str = "SharedSecret";
/// A client's public key, a JWK written as a JSON string (`private_key_jwt`).
pub const JSON_WEB_KEY: &str = "JsonWebKey";
/// A shared secret the client signs its assertions with (`client_secret_jwt`, RFC 7523
/// section 2.2): never sent, so never compared by value; kept sealed, since verifying an
/// HMAC needs the secret itself (see the issuer's `sealer`).
pub const CLIENT_SECRET_JWT: &str = "ClientSecretJwt";
/// The shortest `ClientSecretJwt` accepted: an HS256 key is at least as long as its hash
/// output (RFC 7518 section 3.2).
pub const MIN_JWT_SECRET_LENGTH: usize = 32;
/// A client's certificate, DER in standard base64 (`self_signed_tls_client_auth`, RFC 8705
/// section 2.2): the presented certificate must be this one.
pub const X509_CERTIFICATE: &str = "X509CertificateBase64";
/// A client certificate's subject DN, RFC 4514 (`tls_client_auth`, RFC 8705 section 2.1):
/// the presented certificate must chain to a trusted CA and carry this subject.
pub const X509_NAME: &str = "X509Name";
/// The certificate types (mutual TLS, RFC 8705).
pub const X509_TYPES: [&str; 2] = [X509_CERTIFICATE, X509_NAME];

fn shared_secret() -> String {
    SHARED_SECRET.to_owned()
}

/// A secret as an admin writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        as = Secret,
        description = "A client or API secret as written. A SharedSecret is stored only as a hash; a JsonWebKey (clients only) is the client's public JWK for private_key_jwt; a ClientSecretJwt (clients only, at least 32 bytes) is the shared secret of client_secret_jwt, stored sealed (encrypted), never sent by the client; an X509CertificateBase64 (clients only) is the client's certificate, DER in base64, for self_signed_tls_client_auth; an X509Name (clients only) is its certificate's subject DN (RFC 4514) for tls_client_auth. Values are never read back."
    )
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretInput {
    /// Description of the secret.
    #[serde(default)]
    pub description: Option<String>,
    /// The plaintext of a `SharedSecret`; for a `JsonWebKey` the client's public JWK as a
    /// JSON string (RSA 2048+ bits, EC P-256 or OKP Ed25519; private members are refused);
    /// for an `X509CertificateBase64` the client's certificate (DER, standard base64); for
    /// an `X509Name` the subject DN of the client's certificate (RFC 4514, e.g.
    /// `CN=client,O=Example,C=SE`).
    /// An empty value (as in the reference's public-client example) carries no credential:
    /// it is kept for its description and never matches anything.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(write_only))]
    pub value: Option<String>,
    /// When the secret stops being accepted (RFC 3339); null: never.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expiration: Option<OffsetDateTime>,
    /// The secret's type: `SharedSecret` (client_secret_basic/post), `JsonWebKey`
    /// (private_key_jwt, clients only), `ClientSecretJwt` (client_secret_jwt, clients
    /// only), `X509CertificateBase64` (self_signed_tls_client_auth, clients only) or
    /// `X509Name` (tls_client_auth, clients only).
    #[serde(rename = "type", default = "shared_secret")]
    #[cfg_attr(feature = "openapi", schema(default = shared_secret))]
    pub kind: String,
    /// A `ClientSecretJwt`'s value sealed by the issuer before the command runs (never
    /// written by an admin).
    #[serde(skip)]
    pub sealed: Option<String>,
}

/// A secret as stored in events: the SHA-256 of the value, base64url.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StoredSecret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expiration: Option<OffsetDateTime>,
    /// The public JWK of a `JsonWebKey` secret (no secret: kept as written, to verify
    /// `private_key_jwt` assertions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwk: Option<String>,
    /// A `ClientSecretJwt`'s value, sealed (never the plaintext).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
    /// The value of an `X509CertificateBase64` (the certificate, base64 DER) or `X509Name`
    /// (the subject DN as written) secret: public, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A secret as reads return it: everything but the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(description = "A secret as read back: everything but its value.")
)]
#[serde(rename_all = "camelCase")]
pub struct SecretView {
    /// Description of the secret.
    pub description: Option<String>,
    /// When the secret stops being accepted (RFC 3339); null: never.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expiration: Option<OffsetDateTime>,
    /// The secret's type.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The SHA-256 digest of a presented secret.
#[derive(Clone, Copy)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    pub fn of(value: &str) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest(&SHA256, value.as_bytes()).as_ref());
        SecretDigest(out)
    }

    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The digest in base64url (a store key for a bearer value).
    pub fn to_b64url(&self) -> String {
        self.encode()
    }

    fn decode(s: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
        Some(SecretDigest(bytes.try_into().ok()?))
    }
}

impl SecretInput {
    pub fn into_stored(self) -> StoredSecret {
        let value = self.value.filter(|v| !v.is_empty());
        let (sha256, jwk, sealed, x509) = match self.kind.as_str() {
            JSON_WEB_KEY => (None, value, None, None),
            CLIENT_SECRET_JWT => (None, None, self.sealed, None),
            k if X509_TYPES.contains(&k) => (None, None, None, value),
            _ => (
                value.map(|v| SecretDigest::of(&v).encode()),
                None,
                None,
                None,
            ),
        };
        StoredSecret {
            description: self.description,
            sha256,
            jwk,
            sealed,
            x509,
            expiration: self.expiration,
            kind: self.kind,
        }
    }
}

impl StoredSecret {
    pub fn view(&self) -> SecretView {
        SecretView {
            description: self.description.clone(),
            expiration: self.expiration,
            kind: self.kind.clone(),
        }
    }
}

/// The usable hashes and public keys of a set of secrets, decoded once when the projection
/// is built.
#[derive(Debug, Clone, Default)]
pub struct SecretSet {
    hashes: Vec<([u8; 32], Option<UnixTime>)>,
    keys: Vec<(ClientKey, Option<UnixTime>)>,
    sealed: Vec<(String, Option<UnixTime>)>,
    certs: Vec<(CertSecret, Option<UnixTime>)>,
}

/// A certificate secret, ready to compare with a presented certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSecret {
    /// `X509CertificateBase64`: the registered certificate's `x5t#S256`.
    Thumbprint(String),
    /// `X509Name`: the subject DN in canonical form ([`crate::mtls::canonical_dn`]).
    Subject(String),
}

/// How a client proves itself with a certificate (RFC 8705 section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertMethod {
    /// `tls_client_auth`: a certificate from a trusted CA with the registered subject DN.
    Pki,
    /// `self_signed_tls_client_auth`: exactly the registered certificate.
    SelfSigned,
}

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretDigest(..)")
    }
}

impl SecretSet {
    pub fn new(secrets: &[StoredSecret]) -> Self {
        SecretSet {
            hashes: secrets
                .iter()
                // Only a shared secret is ever compared by value: the value of a public
                // key or a certificate is no secret.
                .filter(|s| s.kind == SHARED_SECRET)
                .filter_map(|s| {
                    let d = SecretDigest::decode(s.sha256.as_deref()?)?;
                    Some((d.0, s.expiration.map(|e| e.unix_timestamp())))
                })
                .collect(),
            keys: secrets
                .iter()
                .filter(|s| s.kind == JSON_WEB_KEY)
                .filter_map(|s| {
                    // Validated when written; a key that no longer parses is skipped.
                    let key = ClientKey::parse(s.jwk.as_deref()?).ok()?;
                    Some((key, s.expiration.map(|e| e.unix_timestamp())))
                })
                .collect(),
            sealed: secrets
                .iter()
                .filter(|s| s.kind == CLIENT_SECRET_JWT)
                .filter_map(|s| Some((s.sealed.clone()?, s.expiration.map(|e| e.unix_timestamp()))))
                .collect(),
            certs: secrets
                .iter()
                .filter_map(|s| {
                    // Validated when written; a value that no longer parses is skipped.
                    let v = s.x509.as_deref()?;
                    let secret = match s.kind.as_str() {
                        X509_CERTIFICATE => {
                            let der = base64::engine::general_purpose::STANDARD
                                .decode(v.trim())
                                .ok()?;
                            crate::mtls::certificate_facts(&der).ok()?;
                            CertSecret::Thumbprint(crate::mtls::thumbprint(&der))
                        }
                        X509_NAME => CertSecret::Subject(crate::mtls::canonical_dn(v).ok()?),
                        _ => return None,
                    };
                    Some((secret, s.expiration.map(|e| e.unix_timestamp())))
                })
                .collect(),
        }
    }

    /// Whether the secrets are certificates: the client authenticates with mutual TLS only.
    pub fn has_certificates(&self) -> bool {
        !self.certs.is_empty()
    }

    /// Which certificate method, if any, a presented certificate passes at `now`: its
    /// thumbprint equals a registered certificate's (`self_signed_tls_client_auth`), or,
    /// when it chains to a trusted CA (`pki_trusted`), its canonical subject equals a
    /// registered DN (`tls_client_auth`).
    pub fn certificate_matches(
        &self,
        facts: &crate::mtls::CertificateFacts,
        pki_trusted: bool,
        now: UnixTime,
    ) -> Option<CertMethod> {
        self.certs
            .iter()
            .filter(|(_, exp)| exp.is_none_or(|e| now < e))
            .find_map(|(secret, _)| match secret {
                CertSecret::Thumbprint(t) => {
                    bool::from(t.as_bytes().ct_eq(facts.thumbprint.as_bytes()))
                        .then_some(CertMethod::SelfSigned)
                }
                CertSecret::Subject(dn) => {
                    (pki_trusted && *dn == facts.subject).then_some(CertMethod::Pki)
                }
            })
    }

    /// True when there is no shared secret (a client may still have keys).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether the secrets are public keys: the client authenticates with `private_key_jwt`
    /// only.
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether the client signs assertions with shared secrets: it authenticates with
    /// `client_secret_jwt` only.
    pub fn has_jwt_secrets(&self) -> bool {
        !self.sealed.is_empty()
    }

    /// The sealed `client_secret_jwt` secrets that have not expired at `now`.
    pub fn live_jwt_secrets(&self, now: UnixTime) -> impl Iterator<Item = &str> {
        self.sealed
            .iter()
            .filter(move |(_, exp)| exp.is_none_or(|e| now < e))
            .map(|(s, _)| s.as_str())
    }

    /// The public keys that have not expired at `now`.
    pub fn live_keys(&self, now: UnixTime) -> impl Iterator<Item = &ClientKey> {
        self.keys
            .iter()
            .filter(move |(_, exp)| exp.is_none_or(|e| now < e))
            .map(|(k, _)| k)
    }

    /// True when `presented` matches a secret that has not expired at `now`. Every stored
    /// hash is compared in constant time, so timing tells nothing about which one matched.
    pub fn matches(&self, presented: &SecretDigest, now: UnixTime) -> bool {
        let mut ok = subtle::Choice::from(0u8);
        for (hash, expires) in &self.hashes {
            let live = subtle::Choice::from(u8::from(expires.is_none_or(|e| now < e)));
            ok |= hash.ct_eq(&presented.0) & live;
        }
        ok.into()
    }
}

/// Burns the same work as a real check when the client is unknown, so response timing does
/// not reveal which client ids exist.
pub fn dummy_check(presented: &SecretDigest) {
    let _ = SecretSet {
        hashes: vec![([0u8; 32], None)],
        keys: Vec::new(),
        sealed: Vec::new(),
        certs: Vec::new(),
    }
    .matches(presented, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_secret_holds_only_a_hash() {
        let input = SecretInput {
            description: Some("d".into()),
            value: Some("s3cret-value".into()),
            expiration: None,
            kind: shared_secret(),
            sealed: None,
        };
        let stored = input.into_stored();
        let json = serde_json::to_string(&stored).unwrap();
        assert!(!json.contains("s3cret-value"));
        let set = SecretSet::new(&[stored]);
        assert!(set.matches(&SecretDigest::of("s3cret-value"), 0));
        assert!(!set.matches(&SecretDigest::of("s3cret-valuf"), 0));
    }

    #[test]
    fn expired_and_empty_secrets_never_match() {
        let expired = SecretInput {
            description: None,
            value: Some("v".into()),
            expiration: Some(OffsetDateTime::from_unix_timestamp(100).unwrap()),
            kind: shared_secret(),
            sealed: None,
        }
        .into_stored();
        let empty = SecretInput {
            description: None,
            value: Some(String::new()),
            expiration: None,
            kind: shared_secret(),
            sealed: None,
        }
        .into_stored();
        assert!(empty.sha256.is_none());
        let set = SecretSet::new(&[expired, empty]);
        assert!(set.matches(&SecretDigest::of("v"), 99));
        assert!(!set.matches(&SecretDigest::of("v"), 100));
        assert!(!set.matches(&SecretDigest::of(""), 0));
    }
}
