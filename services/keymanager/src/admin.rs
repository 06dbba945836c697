//! Key administration as the admin API needs it: list, rotate now, revoke, import. In
//! `signet serve` the in-process [`crate::KeyManager`] implements it; in a cluster the
//! issuers forward these operations to the leading key manager over NATS
//! ([`crate::RemoteKeyAdmin`]).
//!
//! Every operation returns once its events are durable in the log; a node sees them when
//! its projection has applied them. Immediate changes (rotate, import) activate a key that
//! verifiers may not have cached yet: a verifier that meets an unknown kid refetches the
//! JWKS (RFC 7517 practice; every common JWT library does), so tokens stay verifiable.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use signet_core::Algorithm;

use crate::{KeyError, KeyManager};

/// The result of an operation that creates a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewKey {
    pub kid: String,
    pub alg: Algorithm,
}

#[async_trait]
pub trait KeyAdmin: Send + Sync {
    /// Generates a new key for `alg` and makes it the active one now (the previous active
    /// key of that algorithm retires and stays in the JWKS until its tokens expired).
    async fn rotate(&self, alg: Algorithm) -> Result<NewKey, KeyError>;

    /// Removes a key from the JWKS at once (`signing_key.removed` with `revoked: true`);
    /// when it was the active key of its algorithm, a new one is activated first.
    async fn revoke(&self, kid: &str) -> Result<(), KeyError>;

    /// Imports a PEM private key for `alg` (PKCS#8, PKCS#1 RSA or SEC1 EC), seals it, and
    /// makes it the active key of `alg`.
    async fn import_pem(&self, alg: Algorithm, pem: &str) -> Result<NewKey, KeyError>;
}

#[async_trait]
impl KeyAdmin for KeyManager {
    /// Generates, seals, publishes and activates a key now; the keys of `alg` that were
    /// active retire (they stay in the JWKS for `retire_for`).
    async fn rotate(&self, alg: Algorithm) -> Result<NewKey, KeyError> {
        let kid = self.rotate_now(alg).await?;
        Ok(NewKey { kid, alg })
    }

    /// `signing_key.removed` with `revoked: true`; the active key of an algorithm is
    /// replaced by a new one first. [`KeyError::UnknownKey`] for a kid not in the JWKS.
    async fn revoke(&self, kid: &str) -> Result<(), KeyError> {
        self.revoke_now(kid).await
    }

    /// Imports under a fresh kid; [`KeyError::BadPem`] when the PEM is not a private key
    /// of `alg`.
    async fn import_pem(&self, alg: Algorithm, pem: &str) -> Result<NewKey, KeyError> {
        let kid = self.import_now(alg, pem).await?;
        Ok(NewKey { kid, alg })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use signet_core::keys::KeyState;
    use signet_core::projection::Projection;
    use signet_eventlog::embedded::FileLog;
    use signet_eventlog::EventLog;
    use signet_jose::{generate_pkcs8, verify_compact, Jwks, JwsSigner};

    use super::*;
    use crate::{FileVault, Kek, KeyPolicy};

    struct Fixture {
        _dir: tempfile::TempDir,
        log: Arc<FileLog>,
        km: KeyManager,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let log = FileLog::open(&dir.path().join("log")).unwrap();
        let km = KeyManager::new(
            Kek::from_bytes(&[3u8; 32]).unwrap(),
            Arc::new(FileVault::open(&dir.path().join("keys")).unwrap()),
            log.clone(),
            KeyPolicy::default(),
        );
        assert!(km.tick(km.now()).await.unwrap());
        Fixture { _dir: dir, log, km }
    }

    async fn fold(log: &dyn EventLog) -> Projection {
        let mut p = Projection::new();
        crate::cluster::catch_up(log, &mut p).await.unwrap();
        p
    }

    fn jwks(p: &Projection) -> Jwks {
        serde_json::from_str(p.jwks_json()).unwrap()
    }

    fn pem(tag: &str, der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {tag}-----\n{}\n-----END {tag}-----\n",
            lines.join("\n")
        )
    }

    #[tokio::test]
    async fn rotate_activates_a_new_key_and_keeps_the_old_one_in_the_jwks_as_retired() {
        let f = fixture().await;
        let before = fold(f.log.as_ref()).await;
        let old = before.active_key(Algorithm::ES256).unwrap().jwk.kid.clone();

        let new = f.km.rotate(Algorithm::ES256).await.unwrap();
        assert_eq!(new.alg, Algorithm::ES256);
        let p = fold(f.log.as_ref()).await;
        assert_eq!(p.active_key(Algorithm::ES256).unwrap().jwk.kid, new.kid);
        assert_eq!(p.key(&old).unwrap().state, KeyState::Retired);
        assert!(
            jwks(&p).find(&old).is_some(),
            "the retired key still verifies"
        );
        assert!(jwks(&p).find(&new.kid).is_some());
        // Exactly one active key per algorithm; the others did not move.
        for alg in Algorithm::ALL {
            let active = p
                .keys()
                .filter(|k| k.jwk.alg == alg && k.state == KeyState::Active)
                .count();
            assert_eq!(active, 1, "{alg}");
        }
        for alg in [Algorithm::RS256, Algorithm::PS256, Algorithm::EdDSA] {
            assert_eq!(before.active_key(alg), p.active_key(alg));
        }
        // The new key signs, and the JWKS verifies it.
        let keys = f.km.active_keys(&p).await.unwrap();
        let key = keys.iter().find(|k| k.kid() == new.kid).unwrap();
        let token = JwsSigner::new(key.clone(), "at+jwt").sign(b"{}").unwrap();
        let jwks = jwks(&p);
        verify_compact(&token, |kid| jwks.find(kid)).unwrap();
    }

    #[tokio::test]
    async fn revoke_removes_a_key_from_the_jwks_at_once_and_keeps_a_signer() {
        let f = fixture().await;
        let p = fold(f.log.as_ref()).await;
        let active = p.active_key(Algorithm::EdDSA).unwrap().jwk.kid.clone();

        f.km.revoke(&active).await.unwrap();
        let p = fold(f.log.as_ref()).await;
        assert!(p.key(&active).is_none());
        assert!(jwks(&p).find(&active).is_none(), "gone from the JWKS");
        let successor = p.active_key(Algorithm::EdDSA).unwrap();
        assert_ne!(successor.jwk.kid, active);
        // The removal is recorded as a revocation.
        let last = f.log.read_from(p.seq(), 1).await.unwrap();
        let text = String::from_utf8(last[0].payload.clone()).unwrap();
        assert!(text.contains("signing_key.removed"), "{text}");
        assert!(text.contains("\"revoked\":true"), "{text}");
        // The revoked key leaves the leasable set.
        let held = f.km.leasable_keys(&p).await.unwrap();
        assert!(held.iter().all(|k| k.kid() != active));

        // A retired key is revoked without a new rotation.
        let before = p.active_key(Algorithm::RS256).unwrap().jwk.kid.clone();
        f.km.rotate(Algorithm::RS256).await.unwrap();
        let p = fold(f.log.as_ref()).await;
        let current = p.active_key(Algorithm::RS256).unwrap().jwk.kid.clone();
        f.km.revoke(&before).await.unwrap();
        let p = fold(f.log.as_ref()).await;
        assert!(p.key(&before).is_none());
        assert_eq!(p.active_key(Algorithm::RS256).unwrap().jwk.kid, current);

        // Unknown and already revoked kids.
        for kid in ["no-such-kid", active.as_str()] {
            let err = f.km.revoke(kid).await.unwrap_err();
            assert!(
                matches!(err, KeyError::UnknownKey { kid: ref k } if k == kid),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn an_imported_pem_key_becomes_active_and_its_tokens_verify() {
        let f = fixture().await;
        let before = fold(f.log.as_ref()).await;
        let old = before.active_key(Algorithm::ES256).unwrap().jwk.kid.clone();
        let der = generate_pkcs8(Algorithm::ES256).unwrap();
        let text = pem("PRIVATE KEY", &der);

        let new = f.km.import_pem(Algorithm::ES256, &text).await.unwrap();
        let p = fold(f.log.as_ref()).await;
        assert_eq!(p.active_key(Algorithm::ES256).unwrap().jwk.kid, new.kid);
        assert_eq!(p.key(&old).unwrap().state, KeyState::Retired);
        // The imported key is the one that signs: same public key as the PEM.
        let imported =
            signet_jose::SigningKey::from_pem(new.kid.clone(), Algorithm::ES256, &text).unwrap();
        assert_eq!(p.key(&new.kid).unwrap().jwk, *imported.public_jwk());
        let token = JwsSigner::new(Arc::new(imported), "at+jwt")
            .sign(br#"{"sub":"x"}"#)
            .unwrap();
        let jwks = jwks(&p);
        let verified = verify_compact(&token, |kid| jwks.find(kid)).unwrap();
        assert_eq!(verified.kid, new.kid);
        // It is sealed in the vault: the manager opens it again.
        let keys = f.km.active_keys(&p).await.unwrap();
        assert!(keys.iter().any(|k| k.kid() == new.kid));
        // No private key material in the log.
        for e in f.log.read_from(1, usize::MAX).await.unwrap() {
            let text = String::from_utf8(e.payload).unwrap();
            assert!(!text.contains("\"d\""), "{text}");
        }
    }

    #[tokio::test]
    async fn a_bad_pem_is_refused_without_echoing_it() {
        let f = fixture().await;
        let der = generate_pkcs8(Algorithm::EdDSA).unwrap();
        let eddsa = pem("PRIVATE KEY", &der);
        let cases = [
            (Algorithm::ES256, "not a pem at all".to_owned()),
            // An Ed25519 key offered as ES256.
            (Algorithm::ES256, eddsa.clone()),
            // A PKCS#1 block cannot hold an EC key.
            (Algorithm::ES256, pem("RSA PRIVATE KEY", &der)),
            (Algorithm::RS256, pem("PRIVATE KEY", b"garbage")),
        ];
        let seq = f.log.last_seq().await.unwrap();
        for (alg, text) in cases {
            let err = f.km.import_pem(alg, &text).await.unwrap_err();
            assert!(
                matches!(err, KeyError::BadPem { alg: a, .. } if a == alg),
                "{err}"
            );
            let message = err.to_string();
            assert!(!message.contains(&STANDARD.encode(&der)[..20]), "{message}");
        }
        assert_eq!(f.log.last_seq().await.unwrap(), seq, "nothing written");
    }

    #[tokio::test]
    async fn a_manager_that_may_not_write_changes_nothing() {
        let f = fixture().await;
        let leading = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let leading = leading.clone();
            f.km.write_only_while(move || leading.load(std::sync::atomic::Ordering::SeqCst));
        }
        let seq = f.log.last_seq().await.unwrap();
        let err = f.km.rotate(Algorithm::ES256).await.unwrap_err();
        assert!(matches!(err, KeyError::NotLeader), "{err}");
        let p = fold(f.log.as_ref()).await;
        let kid = p.active_key(Algorithm::ES256).unwrap().jwk.kid.clone();
        assert!(matches!(
            f.km.revoke(&kid).await.unwrap_err(),
            KeyError::NotLeader
        ));
        assert!(matches!(
            f.km.tick(f.km.now() + 40 * 86_400).await.unwrap_err(),
            KeyError::NotLeader
        ));
        assert_eq!(f.log.last_seq().await.unwrap(), seq, "nothing written");
        leading.store(true, std::sync::atomic::Ordering::SeqCst);
        f.km.rotate(Algorithm::ES256).await.unwrap();
    }

    #[tokio::test]
    async fn serve_hears_of_new_keys_before_they_activate() {
        let f = fixture().await;
        let seen: Arc<std::sync::Mutex<Vec<Vec<String>>>> = Arc::default();
        {
            let seen = seen.clone();
            f.km.on_keys_changed(move |keys| {
                let kids = keys.iter().map(|k| k.kid().to_owned()).collect();
                seen.lock().unwrap().push(kids);
            });
        }
        let new = f.km.rotate(Algorithm::ES256).await.unwrap();
        let p = fold(f.log.as_ref()).await;
        let seen = seen.lock().unwrap();
        // First call: right after the publication, before the activation retired the old
        // key (four active keys and the new published one).
        assert!(seen[0].contains(&new.kid));
        assert_eq!(seen[0].len(), 5, "{seen:?}");
        assert_eq!(p.key(&new.kid).unwrap().state, KeyState::Active);
        assert_eq!(seen.last().unwrap().len(), 4, "the active keys");
    }
}
