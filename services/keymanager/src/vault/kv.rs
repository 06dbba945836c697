//! The cluster key vault: a JetStream KV bucket (default `SIGNET_KEYS`, history 1, file
//! storage, replicated as configured) holding, under each kid, the same sealed JSON document
//! the [`FileVault`](super::FileVault) writes to a file. Every key manager of a cluster
//! reads the keys any of them generated; the KEK never leaves the key managers.

use async_nats::jetstream;
use async_nats::jetstream::kv;
use async_trait::async_trait;
use signet_core::Algorithm;
use signet_jose::SigningKey;

use super::{decode_key, encode_key, KeyVault};
use crate::{Kek, KeyError};

/// Where the cluster keeps sealed keys.
#[derive(Debug, Clone)]
pub struct KvVaultConfig {
    /// The KV bucket, created if missing (`SIGNET_KEYS`).
    pub bucket: String,
    /// Replicas of the bucket when this key manager creates it (1; 3 in production).
    pub replicas: usize,
}

impl Default for KvVaultConfig {
    fn default() -> Self {
        KvVaultConfig {
            bucket: "SIGNET_KEYS".to_owned(),
            replicas: 1,
        }
    }
}

/// Sealed keys in a JetStream KV bucket.
#[derive(Clone)]
pub struct KvVault {
    store: kv::Store,
}

impl std::fmt::Debug for KvVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvVault")
            .field("bucket", &self.store.name)
            .finish()
    }
}

fn backend(what: &str, e: impl std::fmt::Display) -> KeyError {
    KeyError::Vault(format!("{what}: {e}"))
}

/// A KV key for `kid`: bytes outside `[A-Za-z0-9_-]` become `=XX` (upper-case hex), so any
/// kid (imported keys may carry their own) is a valid, unambiguous KV key.
pub(crate) fn kv_key(kid: &str) -> String {
    let mut out = String::with_capacity(kid.len());
    for b in kid.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

impl KvVault {
    /// Opens the bucket, creating it (history 1, file storage, `replicas`) when missing.
    pub async fn open(js: &jetstream::Context, config: &KvVaultConfig) -> Result<Self, KeyError> {
        if let Ok(store) = js.get_key_value(config.bucket.as_str()).await {
            return Ok(KvVault { store });
        }
        let created = js
            .create_key_value(kv::Config {
                bucket: config.bucket.clone(),
                description: "Signet signing keys, sealed under the KEK".to_owned(),
                history: 1,
                storage: jetstream::stream::StorageType::File,
                num_replicas: config.replicas.max(1),
                ..Default::default()
            })
            .await;
        match created {
            Ok(store) => Ok(KvVault { store }),
            // Another key manager may have created it meanwhile.
            Err(e) => js
                .get_key_value(config.bucket.as_str())
                .await
                .map(|store| KvVault { store })
                .map_err(|_| backend(&format!("create bucket {}", config.bucket), e)),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.store.name
    }
}

#[async_trait]
impl KeyVault for KvVault {
    async fn put(&self, kek: &Kek, key: &SigningKey) -> Result<(), KeyError> {
        let doc = encode_key(kek, key)?;
        self.store
            .put(kv_key(key.kid()), doc.into())
            .await
            .map_err(|e| backend("put", e))?;
        Ok(())
    }

    async fn get(
        &self,
        kek: &Kek,
        kid: &str,
        alg: Algorithm,
    ) -> Result<Option<SigningKey>, KeyError> {
        let Some(bytes) = self
            .store
            .get(kv_key(kid))
            .await
            .map_err(|e| backend("get", e))?
        else {
            return Ok(None);
        };
        decode_key(kek, kid, alg, &bytes).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_keys_escape_everything_but_the_safe_set() {
        assert_eq!(kv_key("es256-AbC_9"), "es256-AbC_9");
        assert_eq!(kv_key("a.b c/=é"), "a=2Eb=20c=2F=3D=C3=A9");
        assert_ne!(kv_key("a.b"), kv_key("a=2Eb"));
    }
}
