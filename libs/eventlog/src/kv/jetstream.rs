//! [`JetStreamKv`]: a [`ProjectionKv`] in a JetStream KV bucket (e.g. `SIGNET_USERS`), shared
//! by every node of a cluster.
//!
//! The bucket is created when missing (history 1, file storage, the configured replica
//! count). Each projection key is stored under a KV key made of its bytes, those outside
//! `[A-Za-z0-9_-]` escaped as `=XX` (upper-case hex): `sub:abc` is `sub=3Aabc`. The escape
//! never produces a `.`, so the watermark lives under [`WATERMARK_KEY`], which no projection
//! key can map to. Values are [`Entry`] bytes (`tag | seq | value`); the watermark is its
//! sequence in decimal.
//!
//! `apply` and `set_applied_seq` are compare-and-set loops on the KV revision (JetStream's
//! expected-last-subject-sequence): read the entry, give up if it is at least as new, else
//! write expecting the revision read; a racing writer (another node) makes the write fail
//! and the loop read again. A read served by a lagging replica can only make a write fail
//! and retry, never skip a newer event.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use bytes::Bytes;

use super::{validate_apply, validate_key, Entry, KvError, ProjectionKv, Result};
use crate::Seq;

/// The KV key of the watermark.
pub const WATERMARK_KEY: &str = "signet.applied_seq";
/// Compare-and-set attempts before a write gives up.
const CAS_ATTEMPTS: u32 = 100;

/// Where a projection lives in JetStream.
#[derive(Debug, Clone)]
pub struct JetStreamKvConfig {
    /// The KV bucket, created when missing (e.g. `SIGNET_USERS`).
    pub bucket: String,
    /// Replicas of the bucket when this node creates it (1; 3 in production).
    pub replicas: usize,
    /// The bucket's description when this node creates it.
    pub description: String,
}

impl JetStreamKvConfig {
    pub fn new(bucket: impl Into<String>, replicas: usize) -> Self {
        let bucket = bucket.into();
        JetStreamKvConfig {
            description: format!("Signet projection {bucket}"),
            bucket,
            replicas,
        }
    }
}

/// The cluster [`ProjectionKv`]; see the [module documentation](self).
#[derive(Clone)]
pub struct JetStreamKv {
    store: kv::Store,
    bucket: String,
}

impl fmt::Debug for JetStreamKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamKv")
            .field("bucket", &self.bucket)
            .finish()
    }
}

/// The KV key of a projection key; see the [module documentation](self).
pub fn kv_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

impl JetStreamKv {
    /// Opens the bucket on `client`'s server, creating it when missing.
    pub async fn open(client: async_nats::Client, config: JetStreamKvConfig) -> Result<Self> {
        let valid = !config.bucket.is_empty()
            && config
                .bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(KvError::Backend(format!(
                "invalid KV bucket name {:?}: use letters, digits, `-` and `_`",
                config.bucket
            )));
        }
        if !(1..=5).contains(&config.replicas) {
            return Err(KvError::Backend(format!(
                "invalid replica count {}: JetStream supports 1 to 5",
                config.replicas
            )));
        }
        let js = jetstream::new(client);
        let bucket = config.bucket.clone();
        let store = match js.get_key_value(bucket.as_str()).await {
            Ok(store) => store,
            Err(_) => {
                let created = js
                    .create_key_value(kv::Config {
                        bucket: bucket.clone(),
                        description: config.description.clone(),
                        history: 1,
                        storage: jetstream::stream::StorageType::File,
                        num_replicas: config.replicas,
                        max_value_size: (super::MAX_VALUE_LEN + 64) as i32,
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(store) => {
                        tracing::info!(bucket = %bucket, replicas = config.replicas,
                            "created the projection bucket");
                        store
                    }
                    // Possibly created concurrently by another node.
                    Err(e) => js.get_key_value(bucket.as_str()).await.map_err(|_| {
                        KvError::Backend(format!("cannot create KV bucket {bucket}: {e}"))
                    })?,
                }
            }
        };
        Ok(JetStreamKv { store, bucket })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn backend(&self, what: &str, e: impl fmt::Display) -> KvError {
        KvError::Backend(format!("KV bucket {}: {what}: {e}", self.bucket))
    }

    /// The current entry of a KV key: `(revision, bytes)`; revision 0 when absent.
    async fn entry(&self, key: &str) -> Result<(u64, Option<Bytes>)> {
        match self.store.entry(key).await {
            Ok(Some(e)) => match e.operation {
                kv::Operation::Put => Ok((e.revision, Some(e.value))),
                // Never written by Signet, but an operator may delete or purge keys.
                kv::Operation::Delete | kv::Operation::Purge => Ok((e.revision, None)),
            },
            Ok(None) => Ok((0, None)),
            Err(e) => Err(self.backend("read", e)),
        }
    }

    /// Writes `value` under `key` if `newer(current)` holds, by compare-and-set.
    async fn cas(
        &self,
        key: &str,
        value: Bytes,
        newer: impl Fn(Option<&Bytes>) -> Result<bool>,
    ) -> Result<bool> {
        let mut pause = Duration::from_millis(1);
        for _ in 0..CAS_ATTEMPTS {
            let (revision, current) = self.entry(key).await?;
            if !newer(current.as_ref())? {
                return Ok(false);
            }
            match self.store.update(key, value.clone(), revision).await {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    // Another writer came first: read again.
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(self.backend("write", e)),
            }
        }
        Err(self.backend(
            "write",
            format!("gave up after {CAS_ATTEMPTS} racing writes"),
        ))
    }
}

#[async_trait]
impl ProjectionKv for JetStreamKv {
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Seq)>> {
        validate_key(key)?;
        let (_, bytes) = self.entry(&kv_key(key)).await?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let entry = Entry::decode(key, &bytes)?;
        Ok(entry.value.map(|v| (v, entry.seq)))
    }

    async fn apply(&self, key: &str, value: Option<&[u8]>, seq: Seq) -> Result<bool> {
        validate_apply(key, value, seq)?;
        let encoded = Bytes::from(Entry::encode(seq, value));
        self.cas(&kv_key(key), encoded, |current| match current {
            None => Ok(true),
            Some(bytes) => Ok(Entry::decode(key, bytes)?.seq < seq),
        })
        .await
    }

    async fn applied_seq(&self) -> Result<Seq> {
        let (_, bytes) = self.entry(WATERMARK_KEY).await?;
        bytes.map_or(Ok(0), |b| parse_watermark(&b))
    }

    async fn set_applied_seq(&self, seq: Seq) -> Result<()> {
        let value = Bytes::from(seq.to_string());
        self.cas(WATERMARK_KEY, value, |current| match current {
            None => Ok(seq > 0),
            Some(bytes) => Ok(parse_watermark(bytes)? < seq),
        })
        .await
        .map(|_| ())
    }
}

fn parse_watermark(bytes: &[u8]) -> Result<Seq> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| KvError::Corrupt(format!("the watermark {WATERMARK_KEY} is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_keys_escape_everything_but_the_safe_set_and_never_make_a_dot() {
        assert_eq!(kv_key("sub:q1B3n0hX-z_9"), "sub=3Aq1B3n0hX-z_9");
        assert_eq!(kv_key("username:a.b é"), "username=3Aa=2Eb=20=C3=A9");
        assert_ne!(kv_key("a.b"), kv_key("a=2Eb"));
        assert!(!kv_key("signet.applied_seq").contains('.'));
        assert_ne!(kv_key("signet.applied_seq"), WATERMARK_KEY);
    }
}
