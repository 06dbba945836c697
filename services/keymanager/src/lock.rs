//! The key managers' leader lock: of all key managers of a cluster, the one holding it is the
//! only one that changes keys (makes sure every algorithm has one, rotates on schedule,
//! carries out admin operations); all of them answer leases.
//!
//! The lock is the key [`LEADER_KEY`] of the JetStream KV bucket [`LOCK_BUCKET`] (history 1,
//! `max_age` = the lock's TTL, so an entry nobody renews disappears after the TTL):
//! - a standby tries to `create` the key (fails while it exists) every TTL/3;
//! - the leader `update`s it at the revision it last wrote every TTL/3, and steps down as
//!   soon as an update fails (someone else holds it, or it cannot reach JetStream);
//! - the leader considers itself leader only until 2/3 of the TTL after the start of its
//!   last successful write (the earliest another key manager can acquire is a full TTL
//!   after that write), so it stops acting before anybody else can start;
//! - [`LeaderLock::release`] deletes the key (at its revision) so a standby takes over
//!   within TTL/3; a key manager that dies is replaced within about TTL + TTL/3.
//!
//! The value is the holder's id (unique per process); a holder whose renewal answer got
//! lost finds its own id there and takes the lock back at that revision.
//!
//! The bucket's `max_age` is the TTL every key manager uses: one that finds the bucket
//! created with another TTL adopts it (a shorter TTL than the renewal period would let two
//! leaders overlap).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::KeyError;

/// The KV bucket of the leader locks.
pub const LOCK_BUCKET: &str = "SIGNET_LOCKS";
/// The key of the key managers' leader lock.
pub const LEADER_KEY: &str = "keymanager-leader";
/// The shortest lock TTL.
pub const MIN_TTL: Duration = Duration::from_secs(1);

/// Where the lock lives and how long it lasts without renewal.
#[derive(Debug, Clone)]
pub struct LockConfig {
    /// [`LOCK_BUCKET`].
    pub bucket: String,
    /// [`LEADER_KEY`].
    pub key: String,
    /// How long the lock outlives its holder (15 s; at least [`MIN_TTL`]).
    pub ttl: Duration,
    /// Replicas of the bucket when this key manager creates it.
    pub replicas: usize,
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig {
            bucket: LOCK_BUCKET.to_owned(),
            key: LEADER_KEY.to_owned(),
            ttl: Duration::from_secs(15),
            replicas: 1,
        }
    }
}

struct Held {
    revision: u64,
    valid_until: Instant,
}

struct Shared {
    config: LockConfig,
    /// The TTL in force: the bucket's `max_age`.
    ttl: Duration,
    holder: String,
    js: jetstream::Context,
    /// Reopened after a backend error (e.g. the bucket vanished with a memory-only server).
    store: tokio::sync::Mutex<Option<kv::Store>>,
    held: Mutex<Option<Held>>,
    leading: watch::Sender<bool>,
}

/// A key manager's view of the leader lock, kept by a background task until dropped.
pub struct LeaderLock {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for LeaderLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderLock")
            .field("holder", &self.shared.holder)
            .field("ttl", &self.shared.ttl)
            .field("leader", &self.is_leader())
            .finish_non_exhaustive()
    }
}

/// A cheap handle that tells whether this process leads.
#[derive(Clone)]
pub struct Leadership {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("leader", &self.is_leader())
            .finish()
    }
}

impl Leadership {
    /// Whether this process holds the lock now (and its last renewal is recent enough).
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// Changes of leadership (`true` when acquired, `false` when lost).
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.shared.leading.subscribe()
    }
}

fn lock_err(what: &str, e: impl std::fmt::Display) -> KeyError {
    KeyError::Nats(format!("leader lock: {what}: {e}"))
}

async fn open_bucket(js: &jetstream::Context, config: &LockConfig) -> Result<kv::Store, KeyError> {
    if let Ok(store) = js.get_key_value(config.bucket.as_str()).await {
        return Ok(store);
    }
    let created = js
        .create_key_value(kv::Config {
            bucket: config.bucket.clone(),
            description: "Signet leader locks".to_owned(),
            history: 1,
            max_age: config.ttl,
            storage: jetstream::stream::StorageType::File,
            num_replicas: config.replicas.max(1),
            ..Default::default()
        })
        .await;
    match created {
        Ok(store) => Ok(store),
        // Another key manager created it meanwhile.
        Err(e) => js
            .get_key_value(config.bucket.as_str())
            .await
            .map_err(|_| lock_err(&format!("create bucket {}", config.bucket), e)),
    }
}

impl Shared {
    fn is_leader(&self) -> bool {
        self.held
            .lock()
            .map(|h| h.as_ref().is_some_and(|h| Instant::now() < h.valid_until))
            .unwrap_or(false)
    }

    fn held_revision(&self) -> Option<u64> {
        self.held
            .lock()
            .ok()
            .and_then(|h| h.as_ref().map(|h| h.revision))
    }

    fn keep(&self, revision: u64, started: Instant) {
        let acquired = match self.held.lock() {
            Ok(mut held) => {
                let acquired = held.is_none();
                *held = Some(Held {
                    revision,
                    valid_until: started + self.ttl * 2 / 3,
                });
                acquired
            }
            Err(_) => return,
        };
        if acquired {
            tracing::info!(holder = %self.holder, ttl_ms = self.ttl.as_millis() as u64, "acquired the key managers' leader lock");
        }
        self.leading
            .send_if_modified(|l| !std::mem::replace(l, true));
    }

    fn lose(&self, reason: &str) {
        let had = self
            .held
            .lock()
            .map(|mut h| h.take().is_some())
            .unwrap_or(false);
        if had {
            tracing::warn!(holder = %self.holder, %reason, "lost the key managers' leader lock");
        }
        self.leading
            .send_if_modified(|l| std::mem::replace(l, false));
    }

    async fn store(&self) -> Result<kv::Store, KeyError> {
        let mut store = self.store.lock().await;
        if let Some(s) = store.as_ref() {
            return Ok(s.clone());
        }
        let s = open_bucket(&self.js, &self.config).await?;
        *store = Some(s.clone());
        Ok(s)
    }

    async fn reset_store(&self) {
        *self.store.lock().await = None;
    }

    /// One round: renew the lock if held, else try to acquire it.
    async fn attempt(&self) {
        let bound = self.ttl / 3;
        let store = match tokio::time::timeout(bound, self.store()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return self.lose(&e.to_string()),
            Err(_) => return self.lose("JetStream did not answer in time"),
        };
        let key = self.config.key.as_str();
        let value = bytes::Bytes::from(self.holder.clone().into_bytes());
        let started = Instant::now();
        if let Some(revision) = self.held_revision() {
            match tokio::time::timeout(bound, store.update(key, value, revision)).await {
                Ok(Ok(revision)) => self.keep(revision, started),
                Ok(Err(e)) => {
                    self.lose(&format!("renewal refused: {e}"));
                    self.reset_store().await;
                }
                Err(_) => self.lose("renewal timed out"),
            }
            return;
        }
        match tokio::time::timeout(bound, store.create(key, value.clone())).await {
            Ok(Ok(revision)) => self.keep(revision, started),
            Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                // Ours from before (a renewal whose answer was lost)? Take it back.
                let entry = tokio::time::timeout(bound, store.entry(key)).await;
                if let Ok(Ok(Some(entry))) = entry {
                    if entry.operation == kv::Operation::Put && entry.value == value {
                        let update = store.update(key, value, entry.revision);
                        if let Ok(Ok(revision)) = tokio::time::timeout(bound, update).await {
                            self.keep(revision, started);
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "leader lock: acquiring failed");
                self.reset_store().await;
            }
            Err(_) => tracing::debug!("leader lock: acquiring timed out"),
        }
    }
}

impl LeaderLock {
    /// Opens (or creates) the lock bucket, tries once to acquire the lock, then keeps
    /// trying (standby) or renewing (leader) every TTL/3 in the background. `holder`
    /// identifies this process (unique per process: e.g. host, pid and a random suffix).
    pub async fn start(
        js: jetstream::Context,
        config: LockConfig,
        holder: impl Into<String>,
    ) -> Result<Self, KeyError> {
        if config.ttl < MIN_TTL {
            return Err(KeyError::Nats(format!(
                "leader lock: the TTL must be at least {} s",
                MIN_TTL.as_secs()
            )));
        }
        let store = open_bucket(&js, &config).await?;
        let mut ttl = config.ttl;
        match store.status().await {
            Ok(status) if !status.max_age().is_zero() && status.max_age() != config.ttl => {
                tracing::warn!(
                    bucket = %config.bucket,
                    configured_ms = config.ttl.as_millis() as u64,
                    bucket_ms = status.max_age().as_millis() as u64,
                    "the lock bucket has another TTL; using the bucket's"
                );
                ttl = status.max_age().max(MIN_TTL);
            }
            Ok(_) => {}
            Err(e) => return Err(lock_err("bucket status", e)),
        }
        let (leading, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            config,
            ttl,
            holder: holder.into(),
            js,
            store: tokio::sync::Mutex::new(Some(store)),
            held: Mutex::new(None),
            leading,
        });
        shared.attempt().await;
        let task = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(shared.ttl / 3).await;
                    shared.attempt().await;
                }
            })
        };
        Ok(LeaderLock { shared, task })
    }

    /// Whether this process holds the lock now.
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// A handle for the tasks that act only while leading.
    pub fn leadership(&self) -> Leadership {
        Leadership {
            shared: self.shared.clone(),
        }
    }

    /// Changes of leadership (`true` when acquired, `false` when lost).
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.shared.leading.subscribe()
    }

    /// This process's id in the lock.
    pub fn holder(&self) -> &str {
        &self.shared.holder
    }

    /// The TTL in force (the bucket's).
    pub fn ttl(&self) -> Duration {
        self.shared.ttl
    }

    /// Stops renewing and, when leading, deletes the lock so a standby takes over at its
    /// next attempt instead of after the TTL.
    pub async fn release(&self) {
        self.task.abort();
        let revision = self.shared.held_revision();
        self.shared.lose("released");
        let Some(revision) = revision else {
            return;
        };
        if let Ok(store) = self.shared.store().await {
            let delete =
                store.delete_expect_revision(self.shared.config.key.as_str(), Some(revision));
            match tokio::time::timeout(self.shared.ttl / 3, delete).await {
                Ok(Ok(())) => tracing::info!("released the key managers' leader lock"),
                _ => tracing::warn!("could not release the leader lock; it expires after its TTL"),
            }
        }
    }
}

impl Drop for LeaderLock {
    /// Stops renewing (the lock expires after its TTL); [`release`](Self::release) first
    /// hands it over at once.
    fn drop(&mut self) {
        self.task.abort();
    }
}
