//! Key lifecycle decisions: which algorithms must have an active key, generating and sealing
//! keys, and recording their public lifecycle in the event log (publish, then activate).

use std::sync::Arc;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use signet_core::events::{Aggregate, Event};
use signet_core::keys::KeyState;
use signet_core::projection::Projection;
use signet_core::{Algorithm, UnixTime};
use signet_eventlog::{EventLog, ExpectedVersion, NewEvent, Seq};
use signet_jose::{b64url, generate_pkcs8, SigningKey};

use crate::{FileVault, Kek, KeyError};

/// Which algorithms always have an active key.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    pub algorithms: Vec<Algorithm>,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        KeyPolicy {
            algorithms: Algorithm::ALL.to_vec(),
        }
    }
}

pub struct KeyManager {
    kek: Kek,
    vault: FileVault,
    log: Arc<dyn EventLog>,
    policy: KeyPolicy,
}

/// The actor recorded on key lifecycle events.
pub const ACTOR: &str = "keymanager";

fn new_kid(alg: Algorithm) -> Result<String, KeyError> {
    let mut bytes = [0u8; 12];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::Crypto("no randomness"))?;
    Ok(format!(
        "{}-{}",
        alg.as_str().to_ascii_lowercase(),
        b64url(&bytes)
    ))
}

impl KeyManager {
    pub fn new(kek: Kek, vault: FileVault, log: Arc<dyn EventLog>, policy: KeyPolicy) -> Self {
        KeyManager {
            kek,
            vault,
            log,
            policy,
        }
    }

    async fn append(&self, event: Event, expected: Seq, now: UnixTime) -> Result<Seq, KeyError> {
        let new = NewEvent {
            subject: event.subject(),
            actor: ACTOR.to_owned(),
            at_ms: now * 1000,
            payload: event.to_json(),
        };
        Ok(self
            .log
            .append(new, ExpectedVersion::Exact(expected))
            .await?)
    }

    /// Makes sure every algorithm of the policy has an active key: a missing one is
    /// generated, sealed into the vault (durably, before anything refers to it), published
    /// and activated. Returns the sequence of the last event appended, if any.
    pub async fn ensure_active(
        &self,
        p: &Projection,
        now: UnixTime,
    ) -> Result<Option<Seq>, KeyError> {
        let mut last = None;
        for &alg in &self.policy.algorithms {
            if p.active_key(alg).is_some() {
                continue;
            }
            let kid = new_kid(alg)?;
            let der = generate_pkcs8(alg)?;
            let key = SigningKey::from_pkcs8(kid.clone(), alg, &der)?;
            self.vault.put(&self.kek, &key)?;
            let published = self
                .append(
                    Event::SigningKeyPublished {
                        jwk: key.public_jwk().clone(),
                        at: now,
                    },
                    p.version(Aggregate::SigningKey, &kid),
                    now,
                )
                .await?;
            let activated = self
                .append(
                    Event::SigningKeyActivated {
                        kid: kid.clone(),
                        at: now,
                    },
                    published,
                    now,
                )
                .await?;
            tracing::info!(%kid, %alg, "generated and activated a signing key");
            last = Some(activated);
        }
        Ok(last)
    }

    /// Unseals the private half of every active key in the projection.
    pub fn active_keys(&self, p: &Projection) -> Result<Vec<Arc<SigningKey>>, KeyError> {
        p.keys()
            .filter(|k| k.state == KeyState::Active)
            .map(|k| {
                let key = self
                    .vault
                    .get(&self.kek, &k.jwk.kid, k.jwk.alg)?
                    .ok_or_else(|| KeyError::Missing {
                        kid: k.jwk.kid.clone(),
                        alg: k.jwk.alg,
                    })?;
                if key.public_jwk() != &k.jwk {
                    return Err(KeyError::BadKeyFile {
                        kid: k.jwk.kid.clone(),
                        reason: "the private key does not match the published public key".into(),
                    });
                }
                Ok(Arc::new(key))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fold_all(log: &dyn EventLog) -> Projection {
        let mut p = Projection::new();
        for e in log.read_from(1, usize::MAX).await.unwrap() {
            let ev = Event::from_json(&e.payload).unwrap();
            p.apply(e.seq, &e.subject, ev).unwrap();
        }
        p
    }

    #[tokio::test]
    async fn keys_are_generated_once_sealed_and_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let kek_path = dir.path().join("kek");
        let open = || async {
            let log = signet_eventlog::embedded::FileLog::open(&dir.path().join("log")).unwrap();
            let km = KeyManager::new(
                Kek::load_or_create(&kek_path).unwrap(),
                FileVault::open(&dir.path().join("keys")).unwrap(),
                log.clone(),
                KeyPolicy::default(),
            );
            (log, km)
        };
        let (log, km) = open().await;
        let p = fold_all(log.as_ref()).await;
        assert!(km.ensure_active(&p, 1000).await.unwrap().is_some());
        let p = fold_all(log.as_ref()).await;
        let keys = km.active_keys(&p).unwrap();
        assert_eq!(keys.len(), 4);
        assert_eq!(
            km.ensure_active(&p, 1001).await.unwrap(),
            None,
            "nothing to do twice"
        );
        let kids: Vec<String> = keys.iter().map(|k| k.kid().to_owned()).collect();
        // No private key material in the log.
        for e in log.read_from(1, usize::MAX).await.unwrap() {
            let text = String::from_utf8(e.payload).unwrap();
            assert!(!text.contains("\"d\""), "{text}");
        }
        drop((log, km));

        let (log, km) = open().await;
        let p = fold_all(log.as_ref()).await;
        let again: Vec<String> = km
            .active_keys(&p)
            .unwrap()
            .iter()
            .map(|k| k.kid().to_owned())
            .collect();
        assert_eq!(again, kids);

        // Another KEK cannot open the vault: a clear error naming the key.
        std::fs::write(
            &kek_path,
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [9u8; 32]),
        )
        .unwrap();
        let (_log, km) = open().await;
        let err = km.active_keys(&p).unwrap_err().to_string();
        assert!(err.contains("KEK does not open"), "{err}");
    }
}
