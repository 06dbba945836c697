//! Second-factor secrets at rest: a user's TOTP secret is sealed by the node's
//! [`ConfigSealer`] (AES-256-GCM under the configuration-secrets key: derived from the KEK
//! in `serve`, from the cluster secret on a cluster) and bound to the user's `sub`, so the
//! `user.*` events and the users projection never hold it in plaintext, and a sealed
//! secret copied onto another user does not open. Replacing the KEK or the cluster secret
//! makes enrolled authenticators unreadable: their users sign in with a recovery code, or
//! an admin resets their factors.

use crate::sealer::ConfigSealer;

/// What a user's TOTP secret is sealed for: that user, that purpose.
fn context(sub: &str) -> String {
    format!("totp\u{0}{sub}")
}

impl ConfigSealer {
    /// Seals `secret` for user `sub`.
    pub fn seal_totp(&self, sub: &str, secret: &[u8]) -> Option<String> {
        self.seal(&context(sub), secret).ok()
    }

    /// Opens what [`ConfigSealer::seal_totp`] made for `sub`; `None` if it was altered,
    /// made for another user or under another key.
    pub fn open_totp(&self, sub: &str, sealed: &str) -> Option<Vec<u8>> {
        self.open(&context(sub), sealed)
    }
}

#[cfg(test)]
mod tests {
    use signet_keymanager::Kek;

    use super::*;

    #[test]
    fn seals_per_user_and_purpose() {
        let k = ConfigSealer::from_kek(&Kek::from_bytes(&[7u8; 32]).unwrap());
        let sealed = k.seal_totp("u1", b"secret-bytes").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(k.open_totp("u1", &sealed).unwrap(), b"secret-bytes");
        assert!(k.open_totp("u2", &sealed).is_none(), "bound to the user");
        assert!(
            k.open(&crate::sealer::client_secret_context("u1"), &sealed)
                .is_none(),
            "bound to its purpose"
        );
        let other = ConfigSealer::from_kek(&Kek::from_bytes(&[8u8; 32]).unwrap());
        assert!(other.open_totp("u1", &sealed).is_none());
        assert!(k.open_totp("u1", "AAAA").is_none());
    }
}
