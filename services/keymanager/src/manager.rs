//! Key lifecycle decisions: which algorithms must have an active key, generating and sealing
//! keys, and recording their public lifecycle in the event log (publish, then activate).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use signet_core::events::{Aggregate, Event};
use signet_core::keys::{KeyState, PublicKeyRecord};
use signet_core::projection::Projection;
use signet_core::{Algorithm, UnixTime};
use signet_eventlog::{EventLog, ExpectedVersion, NewEvent, Seq};
use signet_jose::{b64url, generate_pkcs8, SigningKey};

use crate::{Kek, KeyError, KeyVault};

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
    vault: Arc<dyn KeyVault>,
    log: Arc<dyn EventLog>,
    policy: KeyPolicy,
    /// Private keys already unsealed and checked against their public record, by kid
    /// (parsing an RSA key is costly; leases ask for the same keys again and again).
    parsed: Mutex<HashMap<String, Arc<SigningKey>>>,
}

impl std::fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyManager")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn leasable(state: KeyState) -> bool {
    matches!(state, KeyState::Published | KeyState::Active)
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
    pub fn new(
        kek: Kek,
        vault: Arc<dyn KeyVault>,
        log: Arc<dyn EventLog>,
        policy: KeyPolicy,
    ) -> Self {
        KeyManager {
            kek,
            vault,
            log,
            policy,
            parsed: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, record: &PublicKeyRecord) -> Option<Arc<SigningKey>> {
        let parsed = self.parsed.lock().ok()?;
        parsed
            .get(&record.jwk.kid)
            .filter(|k| k.public_jwk() == &record.jwk)
            .cloned()
    }

    fn remember(&self, key: Arc<SigningKey>) {
        if let Ok(mut parsed) = self.parsed.lock() {
            parsed.insert(key.kid().to_owned(), key);
        }
    }

    /// Unseals one key from the vault and checks it against its published public key.
    async fn unseal(&self, record: &PublicKeyRecord) -> Result<Arc<SigningKey>, KeyError> {
        let kid = &record.jwk.kid;
        let key = self
            .vault
            .get(&self.kek, kid, record.jwk.alg)
            .await?
            .ok_or_else(|| KeyError::Missing {
                kid: kid.clone(),
                alg: record.jwk.alg,
            })?;
        if key.public_jwk() != &record.jwk {
            return Err(KeyError::BadKeyFile {
                kid: kid.clone(),
                reason: "the private key does not match the published public key".into(),
            });
        }
        let key = Arc::new(key);
        self.remember(key.clone());
        Ok(key)
    }

    /// The private key of `record`, from the cache or else the vault.
    async fn private_key(&self, record: &PublicKeyRecord) -> Result<Arc<SigningKey>, KeyError> {
        match self.cached(record) {
            Some(key) => Ok(key),
            None => self.unseal(record).await,
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
            self.vault.put(&self.kek, &key).await?;
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
            self.remember(Arc::new(key));
            tracing::info!(%kid, %alg, "generated and activated a signing key");
            last = Some(activated);
        }
        Ok(last)
    }

    /// Unseals the private half of every active key in the projection.
    pub async fn active_keys(&self, p: &Projection) -> Result<Vec<Arc<SigningKey>>, KeyError> {
        let mut keys = Vec::new();
        for record in p.keys().filter(|k| k.state == KeyState::Active) {
            keys.push(self.private_key(record).await?);
        }
        Ok(keys)
    }

    /// The private half of every key an issuer may hold: the active keys and the published
    /// ones (so issuers hold the next key before it activates). Forgets parsed keys that
    /// left this set.
    pub async fn leasable_keys(&self, p: &Projection) -> Result<Vec<Arc<SigningKey>>, KeyError> {
        let mut keys = Vec::new();
        for record in p.keys().filter(|k| leasable(k.state)) {
            keys.push(self.private_key(record).await?);
        }
        if let Ok(mut parsed) = self.parsed.lock() {
            parsed.retain(|kid, _| p.key(kid).is_some_and(|r| leasable(r.state)));
        }
        Ok(keys)
    }

    /// Opens every published or active key from the vault (not from the cache) and checks
    /// it against its public record: run at start, so that a wrong KEK stops the key
    /// manager with a clear error instead of failing leases later. Returns how many keys
    /// it opened.
    pub async fn check_vault(&self, p: &Projection) -> Result<usize, KeyError> {
        let mut n = 0;
        for record in p.keys().filter(|k| leasable(k.state)) {
            self.unseal(record).await?;
            n += 1;
        }
        Ok(n)
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
                Arc::new(crate::FileVault::open(&dir.path().join("keys")).unwrap()),
                log.clone(),
                KeyPolicy::default(),
            );
            (log, km)
        };
        let (log, km) = open().await;
        let p = fold_all(log.as_ref()).await;
        assert!(km.ensure_active(&p, 1000).await.unwrap().is_some());
        let p = fold_all(log.as_ref()).await;
        let keys = km.active_keys(&p).await.unwrap();
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
            .await
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
        let err = km.active_keys(&p).await.unwrap_err().to_string();
        assert!(err.contains("KEK does not open"), "{err}");
        let err = km.check_vault(&p).await.unwrap_err().to_string();
        assert!(err.contains("KEK does not open"), "{err}");
    }
}
