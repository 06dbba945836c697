//! Second-factor secrets at rest: a user's TOTP secret is sealed with AES-256-GCM (the
//! same construction as the signing keys' [`Kek`]) and bound to the user's `sub` (the
//! AAD), so the `user.*` events and the users projection never hold it in plaintext, and
//! a sealed secret copied onto another user does not open.
//!
//! The key: in `serve`, the node's key-encryption key itself (`<data-dir>/kek` or
//! `--kek-file`); in a cluster, where issuers hold no KEK, a key derived from the cluster
//! secret every issuer already shares (HMAC-SHA-256 of [`CLUSTER_LABEL`]). Replacing that
//! file or secret makes enrolled authenticators unreadable: their users sign in with a
//! recovery code, or an admin resets their factors.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use signet_keymanager::kek::Sealed;
use signet_keymanager::Kek;

/// The label of the TOTP sealing key derived from the cluster secret.
pub const CLUSTER_LABEL: &[u8] = b"signet totp secret sealing key v1";

const NONCE_LEN: usize = 12;

pub struct FactorKey(Kek);

impl std::fmt::Debug for FactorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FactorKey(..)")
    }
}

fn aad(sub: &str) -> Vec<u8> {
    format!("signet totp\u{0}{sub}").into_bytes()
}

impl FactorKey {
    pub fn new(kek: Kek) -> Self {
        FactorKey(kek)
    }

    /// Seals `secret` for user `sub`: base64url of the nonce and the ciphertext with its tag.
    pub fn seal(&self, sub: &str, secret: &[u8]) -> Option<String> {
        let sealed = self.0.seal(secret, &aad(sub)).ok()?;
        let mut out = sealed.nonce.to_vec();
        out.extend_from_slice(&sealed.ciphertext);
        Some(URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens what [`FactorKey::seal`] made for `sub`; `None` if it was altered, made for
    /// another user or under another key.
    pub fn open(&self, sub: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() <= NONCE_LEN {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[..NONCE_LEN]);
        let s = Sealed {
            nonce,
            ciphertext: bytes[NONCE_LEN..].to_vec(),
        };
        self.0.open(&s, &aad(sub))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_per_user() {
        let k = FactorKey::new(Kek::from_bytes(&[7u8; 32]).unwrap());
        let sealed = k.seal("u1", b"secret-bytes").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(k.open("u1", &sealed).unwrap(), b"secret-bytes");
        assert!(k.open("u2", &sealed).is_none(), "bound to the user");
        let other = FactorKey::new(Kek::from_bytes(&[8u8; 32]).unwrap());
        assert!(other.open("u1", &sealed).is_none());
        assert!(k.open("u1", "AAAA").is_none());
    }
}
