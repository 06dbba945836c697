//! A software authenticator for tests and benches: a P-256 key that makes WebAuthn
//! registration and assertion responses (the JSON of `PublicKeyCredential.toJSON()`), with
//! whatever origin, RP ID, flags and counter the test asks for. It encodes; it verifies
//! nothing. Shared by the unit tests, the bench (`benches/passkey.rs`) and the integration
//! tests, which include this file by path.

#![allow(dead_code)]

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

/// User present, user verified, attested credential data.
pub const UP: u8 = 0x01;
pub const UV: u8 = 0x04;
const AT: u8 = 0x40;

/// The private key: P-256 (ES256), or Ed25519 (EdDSA) as a browser's authenticator may
/// choose.
pub enum Key {
    P256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

pub struct SoftKey {
    pub key: Key,
    pub credential_id: Vec<u8>,
}

/// What to put in a response.
#[derive(Clone)]
pub struct Claims<'a> {
    pub origin: &'a str,
    pub rp_id: &'a str,
    pub challenge: &'a str,
    pub flags: u8,
    pub counter: u32,
}

fn cbor_head(major: u8, n: usize, out: &mut Vec<u8>) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n < 256 {
        out.extend([m | 24, n as u8]);
    } else {
        out.extend([m | 25, (n >> 8) as u8, n as u8]);
    }
}

fn cbor_text(s: &str, out: &mut Vec<u8>) {
    cbor_head(3, s.len(), out);
    out.extend(s.as_bytes());
}

fn cbor_bytes(b: &[u8], out: &mut Vec<u8>) {
    cbor_head(2, b.len(), out);
    out.extend(b);
}

impl SoftKey {
    /// A fresh key with a random 16-byte credential id.
    pub fn generate() -> SoftKey {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
                .expect("a P-256 key");
        let key = Key::P256(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
                .expect("the key"),
        );
        let mut credential_id = vec![0u8; 16];
        aws_lc_rs::rand::fill(&mut credential_id).expect("randomness");
        SoftKey { key, credential_id }
    }

    /// A key from its PKCS#8 document (what WebDriver's virtual authenticator returns).
    pub fn from_pkcs8(der: &[u8], credential_id: Vec<u8>) -> SoftKey {
        let key = match EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der) {
            Ok(k) => Key::P256(k),
            Err(_) => Key::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).expect("a P-256 or Ed25519 key"),
            ),
        };
        SoftKey { key, credential_id }
    }

    fn cose_key(&self) -> Vec<u8> {
        let Key::P256(key) = &self.key else {
            panic!("registration by a generated P-256 key only");
        };
        let p = key.public_key().as_ref();
        let (x, y) = (&p[1..33], &p[33..65]);
        // CTAP2 canonical order: 1, 3, -1, -2, -3.
        let mut out = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
        cbor_bytes(x, &mut out);
        out.push(0x22);
        cbor_bytes(y, &mut out);
        out
    }

    fn auth_data(&self, c: &Claims<'_>, attested: bool) -> Vec<u8> {
        let mut out = digest(&SHA256, c.rp_id.as_bytes()).as_ref().to_vec();
        out.push(c.flags | if attested { AT } else { 0 });
        out.extend(c.counter.to_be_bytes());
        if attested {
            out.extend([0u8; 16]);
            out.extend((self.credential_id.len() as u16).to_be_bytes());
            out.extend(&self.credential_id);
            out.extend(self.cose_key());
        }
        out
    }

    fn client_data(kind: &str, c: &Claims<'_>) -> Vec<u8> {
        format!(
            r#"{{"type":"{kind}","challenge":"{}","origin":"{}","crossOrigin":false}}"#,
            c.challenge, c.origin
        )
        .into_bytes()
    }

    /// A registration response (attestation `none`).
    pub fn register(&self, c: &Claims<'_>) -> String {
        let auth_data = self.auth_data(c, true);
        let mut att = vec![0xa3];
        cbor_text("fmt", &mut att);
        cbor_text("none", &mut att);
        cbor_text("attStmt", &mut att);
        att.push(0xa0);
        cbor_text("authData", &mut att);
        cbor_bytes(&auth_data, &mut att);
        let id = B64.encode(&self.credential_id);
        serde_json::json!({
            "id": id, "rawId": id, "type": "public-key",
            "response": {
                "clientDataJSON": B64.encode(Self::client_data("webauthn.create", c)),
                "attestationObject": B64.encode(att),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        })
        .to_string()
    }

    /// An assertion by this key for user handle `user_handle` (base64url).
    pub fn assert(&self, c: &Claims<'_>, user_handle: &str) -> String {
        let auth_data = self.auth_data(c, false);
        let client_data = Self::client_data("webauthn.get", c);
        let mut signed = auth_data.clone();
        signed.extend(digest(&SHA256, &client_data).as_ref());
        let sig = match &self.key {
            Key::P256(k) => k
                .sign(&SystemRandom::new(), &signed)
                .expect("a signature")
                .as_ref()
                .to_vec(),
            Key::Ed25519(k) => k.sign(&signed).as_ref().to_vec(),
        };
        let id = B64.encode(&self.credential_id);
        serde_json::json!({
            "id": id, "rawId": id, "type": "public-key",
            "response": {
                "clientDataJSON": B64.encode(client_data),
                "authenticatorData": B64.encode(auth_data),
                "signature": B64.encode(&sig),
                "userHandle": user_handle,
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        })
        .to_string()
    }
}
