//! Secrets that must be read back, not only compared: the shared secrets of
//! `client_secret_jwt` clients (an HMAC is verified with the secret itself, so a hash will
//! not do), identity providers' client secrets (sent upstream) and users' TOTP secrets
//! ([`crate::factors`]). They are sealed with AES-256-GCM under a key derived for this purpose
//! only: from the KEK in `serve`, from the cluster secret on a cluster (every issuer holds
//! it; it already authenticates key leases, so it guards nothing less than they do). The
//! event log, the projections and `/Events` only ever see the sealed form; a sealed value
//! is bound to its context (purpose and owner: a client id, a provider's scheme, a user's
//! `sub`), so it cannot be moved to another owner or purpose.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use signet_keymanager::{Kek, Sealed};

/// What the derived key is for (changing it makes every sealed value unreadable).
pub const CONFIG_SECRETS_LABEL: &str = "signet/v1/config-secrets";

const NONCE_LEN: usize = 12;

/// An identity provider's `clientSecret`, sealed for that provider (`scheme`).
impl ConfigSealer {
    pub fn seal_idp_secret(&self, scheme: &str, secret: &str) -> Option<String> {
        self.seal(&format!("idp\u{0}{scheme}"), secret.as_bytes())
            .ok()
    }

    pub fn open_idp_secret(&self, scheme: &str, sealed: &str) -> Option<String> {
        String::from_utf8(self.open(&format!("idp\u{0}{scheme}"), sealed)?).ok()
    }
}

/// What a client's `ClientSecretJwt` value is sealed for: that client, that purpose.
pub fn client_secret_context(client_id: &str) -> String {
    format!("client_secret_jwt\u{0}{client_id}")
}

/// Seals and opens configuration secrets for one node.
pub struct ConfigSealer(Kek);

impl std::fmt::Debug for ConfigSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigSealer(..)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the secret could not be sealed")]
pub struct SealError;

impl ConfigSealer {
    /// `serve`: the configuration-secrets key derived from the KEK.
    pub fn from_kek(kek: &Kek) -> Self {
        ConfigSealer(kek.derive(CONFIG_SECRETS_LABEL))
    }

    /// A cluster issuer: the configuration-secrets key derived from the cluster secret.
    pub fn from_cluster_secret(secret: &signet_keymanager::ClusterSecret) -> Self {
        ConfigSealer(secret.derive_kek(CONFIG_SECRETS_LABEL))
    }

    /// `plaintext` sealed for `context`, as base64url of the nonce and the ciphertext.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let sealed = self
            .0
            .seal(plaintext, context.as_bytes())
            .map_err(|_| SealError)?;
        let mut out = sealed.nonce.to_vec();
        out.extend_from_slice(&sealed.ciphertext);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// The plaintext of `sealed`, if it was sealed by this key for `context` and unaltered.
    pub fn open(&self, context: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let sealed = Sealed {
            nonce: nonce.try_into().ok()?,
            ciphertext: ciphertext.to_vec(),
        };
        self.0.open(&sealed, context.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let kek = Kek::from_bytes(&[7u8; 32]).unwrap();
        let sealer = ConfigSealer::from_kek(&kek);
        let sealed = sealer.seal("client-a", b"the secret").unwrap();
        assert!(!sealed.contains("the secret"));
        assert_eq!(sealer.open("client-a", &sealed).unwrap(), b"the secret");
        assert!(
            sealer.open("client-b", &sealed).is_none(),
            "bound to its client"
        );
        // Not the KEK itself, and not another node's key.
        let other = ConfigSealer::from_kek(&Kek::from_bytes(&[8u8; 32]).unwrap());
        assert!(other.open("client-a", &sealed).is_none());
        let raw = ConfigSealer(Kek::from_bytes(&[7u8; 32]).unwrap());
        assert!(
            raw.open("client-a", &sealed).is_none(),
            "a derived key, not the KEK"
        );
        // Two seals of one value differ (random nonces); garbage opens to nothing.
        assert_ne!(sealer.seal("client-a", b"the secret").unwrap(), sealed);
        assert!(sealer.open("client-a", "AAAA").is_none());
        assert!(sealer.open("client-a", "not base64!").is_none());

        // Nodes of a cluster share the key through the cluster secret.
        let secret = signet_keymanager::ClusterSecret::from_bytes(&[9u8; 32]).unwrap();
        let (n1, n2) = (
            ConfigSealer::from_cluster_secret(&secret),
            ConfigSealer::from_cluster_secret(&secret),
        );
        let sealed = n1.seal("c", b"s").unwrap();
        assert_eq!(n2.open("c", &sealed).unwrap(), b"s");
    }
}
