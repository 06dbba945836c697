//! The users projection: `user.*` events folded from the log into a [`ProjectionKv`] outside
//! memory (DESIGN.md: large aggregates are projected into a key-value store, still written
//! only through events), and the user commands of the admin API.
//!
//! Keys:
//!
//! | key | value |
//! |---|---|
//! | `sub:<sub>` | the [`UserRecord`] as JSON; its sequence is the user's version |
//! | `username:<normalized username>` | the `sub` holding that username |
//! | `passkey:<user handle>` | the `sub` whose passkeys carry that WebAuthn user handle |
//!
//! Backends: `<data-dir>/projections/users.redb` in `serve`, the JetStream KV bucket
//! [`USERS_BUCKET`] in a cluster (shared by every issuer: each applies every event, and the
//! store keeps what the newest event says, see [`signet_eventlog::kv`]).
//!
//! A node catches up at start from the store's watermark to the log's head, then follows the
//! log's tail in a task of its own, raising the watermark after each user event (and after
//! quiet periods otherwise). Every write of an event derives from the event and what the
//! store holds, each key tagged with the event's sequence, so replays and several nodes
//! folding the same events at once leave the same state: a username index entry is removed
//! only while it still points at the user that gives the name up.
//!
//! Writes ([`Users::create`], [`Users::replace`], [`Users::delete`]) are serialized on a node
//! and decided once the node has applied the whole log. Across nodes, a username has an
//! aggregate of its own (`signet.events.username.<id>`, [`signet_core::user::username_id`]):
//! a write that gives a user a name first appends `username.claimed` there, demanding the
//! version it read, then the user event; a delete or rename appends `username.released`
//! after the user event. Two nodes claiming one name within the same milliseconds: one
//! append finds the version moved and that write answers 409, so a name is never given
//! twice. A claim whose user event never followed (its writer died between the two
//! appends) holds the name for [`ORPHAN_CLAIM_AFTER`], after which the name may be claimed
//! again; a writer that took half that long between its two appends gives up instead.
//! The claims are read from the log (the last event of the name's subject), not projected.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use futures::StreamExt;
use signet_core::api_key::{self, ApiKeyRecord, NewApiKey};
use signet_core::events::{Aggregate, Event, SecurityChange};
use signet_core::user::{
    external_login_id as link_id, federated_sub, hash_password, sub_from_bytes, username_id,
    username_key, CheckedUser, ExternalLogin, PasswordError, UserRecord, NO_PASSWORD,
};
use signet_core::validation::ValidationErrors;
use signet_eventlog::kv::embedded::RedbKv;
use signet_eventlog::kv::jetstream::{JetStreamKv, JetStreamKvConfig};
use signet_eventlog::kv::{validate_key, KvError, ProjectionKv};
use signet_eventlog::{EventLog, EventLogError, ExpectedVersion, NewEvent, RecordedEvent, Seq};
use tokio::sync::watch;

/// The JetStream KV bucket of the users projection in a cluster.
pub const USERS_BUCKET: &str = "SIGNET_USERS";
/// The file of the users projection in `serve`'s data directory.
pub const USERS_FILE: &str = "projections/users.redb";
/// Key prefix of user records.
pub const SUB_PREFIX: &str = "sub:";
/// Key prefix of the username index.
pub const USERNAME_PREFIX: &str = "username:";
/// Key prefix of the passkey user-handle index.
pub const PASSKEY_PREFIX: &str = "passkey:";
/// Key prefix of API key records (`apikey:<id>`).
pub const API_KEY_PREFIX: &str = "apikey:";
/// Key prefix of each user's list of API key ids (`apikeys:<sub>`).
pub const API_KEYS_OF_PREFIX: &str = "apikeys:";

/// Events read per batch while catching up.
const CATCH_UP_BATCH: usize = 1024;
/// Without user events, the watermark is raised after this many events...
const WATERMARK_EVERY: u64 = 1024;
/// ... or after this long without events.
const WATERMARK_IDLE: Duration = Duration::from_millis(500);
/// How long a username claim whose user event never came holds the name (see the module).
/// Far longer than a write takes (the request timeout bounds it, 30 s by default), and than
/// the clock skew between nodes (the claim's time is its writer's clock).
pub const ORPHAN_CLAIM_AFTER: Duration = Duration::from_secs(300);
/// Retry bounds of a store operation that failed for a reason that may pass (NATS away).
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("users projection store")]
    Kv(#[from] KvError),
    #[error("event log")]
    Log(#[from] EventLogError),
    #[error("event {seq} on {subject} is not a user event this node knows: {reason}")]
    Decode {
        seq: Seq,
        subject: String,
        reason: String,
    },
    #[error("stored user {key:?} does not decode: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("sequence gap: the users projection is at {at}, the next event is {got}")]
    Gap { at: Seq, got: Seq },
    #[error(
        "the users projection has applied event {applied}, but the event log ends at {head}: \
         the log was replaced; remove the users projection ({USERS_FILE} in the data directory, \
         or the {USERS_BUCKET} bucket) to rebuild it"
    )]
    Ahead { applied: Seq, head: Seq },
    #[error("the users projection did not reach event {0} in time")]
    Timeout(Seq),
    #[error("the users projection stopped (see the log)")]
    Stopped,
}

/// What a user write can fail with (mapped to HTTP in `http::error`).
#[derive(Debug, thiserror::Error)]
pub enum UserWriteError {
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("username {0:?} is taken")]
    UsernameTaken(String),
    /// The upstream identity is linked to another user already.
    #[error("the identity of provider {0:?} is linked to another user")]
    LinkTaken(String),
    #[error("user {0:?} does not exist")]
    NotFound(String),
    /// The user was changed by a racing write (another node).
    #[error("the user was changed concurrently by another write")]
    Conflict,
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error("event log: {0}")]
    Log(EventLogError),
    #[error(transparent)]
    Hash(#[from] PasswordError),
    #[error("no randomness available")]
    Random,
}

/// What the follower task shares with the handle.
struct Shared {
    kv: Arc<dyn ProjectionKv>,
    log: Arc<dyn EventLog>,
    applied: watch::Sender<Seq>,
    failed: AtomicBool,
    /// Records read by [`Users::current`], dropped as the follower folds their events.
    cache: cache::RecordCache,
}

struct Inner {
    shared: Arc<Shared>,
    /// Serializes this node's user writes (uniqueness of usernames).
    writes: tokio::sync::Mutex<()>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// The users projection of this node; cheap to clone. Its follower stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Users(Arc<Inner>);

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("applied", &self.applied_seq())
            .finish()
    }
}

fn sub_key(sub: &str) -> String {
    format!("{SUB_PREFIX}{sub}")
}

fn index_key(normalized: &str) -> String {
    format!("{USERNAME_PREFIX}{normalized}")
}

fn decode_record(key: &str, bytes: &[u8]) -> Result<UserRecord, UsersError> {
    serde_json::from_slice(bytes).map_err(|e| UsersError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// Whether a store error may pass by itself (a backend away), so the operation is retried.
fn transient(e: &UsersError) -> bool {
    matches!(e, UsersError::Kv(KvError::Backend(_) | KvError::Io(_)))
}

impl Shared {
    async fn record(&self, sub: &str) -> Result<Option<(UserRecord, Seq)>, UsersError> {
        let key = sub_key(sub);
        if validate_key(&key).is_err() {
            return Ok(None);
        }
        match self.kv.get(&key).await? {
            Some((bytes, seq)) => Ok(Some((decode_record(&key, &bytes)?, seq))),
            None => Ok(None),
        }
    }

    /// Removes the username index entry `normalized` as of `seq` if it still points at `sub`.
    async fn release_username(
        &self,
        normalized: &str,
        sub: &str,
        seq: Seq,
    ) -> Result<(), UsersError> {
        let key = index_key(normalized);
        if let Some((holder, _)) = self.kv.get(&key).await? {
            if holder == sub.as_bytes() {
                self.kv.apply(&key, None, seq).await?;
            }
        }
        Ok(())
    }

    /// The ids of a user's API keys, and the list's sequence.
    async fn key_ids(&self, sub: &str) -> Result<(Vec<String>, Seq), UsersError> {
        let key = format!("{API_KEYS_OF_PREFIX}{sub}");
        if validate_key(&key).is_err() {
            return Ok((Vec::new(), 0));
        }
        match self.kv.get(&key).await? {
            Some((bytes, seq)) => Ok((
                serde_json::from_slice(&bytes).map_err(|e| UsersError::Corrupt {
                    key,
                    reason: e.to_string(),
                })?,
                seq,
            )),
            None => Ok((Vec::new(), 0)),
        }
    }

    /// Rewrites a user's API key list as of `seq`.
    async fn set_key_ids(&self, sub: &str, ids: &[String], seq: Seq) -> Result<(), UsersError> {
        let key = format!("{API_KEYS_OF_PREFIX}{sub}");
        let json = serde_json::to_vec(ids).unwrap_or_default();
        self.kv.apply(&key, Some(&json), seq).await?;
        Ok(())
    }

    /// Folds one event; returns whether it was a user or API key event.
    async fn fold(&self, e: &RecordedEvent) -> Result<bool, UsersError> {
        let user_subjects = Aggregate::User.subject("");
        let key_subjects = Aggregate::ApiKey.subject("");
        if !e.subject.starts_with(&user_subjects) && !e.subject.starts_with(&key_subjects) {
            return Ok(false);
        }
        let decode = |reason: String| UsersError::Decode {
            seq: e.seq,
            subject: e.subject.clone(),
            reason,
        };
        let event = Event::from_json(&e.payload).map_err(|err| decode(err.to_string()))?;
        if event.subject() != e.subject {
            return Err(decode(format!("the event belongs to {}", event.subject())));
        }
        let seq = e.seq;
        match event {
            Event::UserCreated(r)
            | Event::UserReplaced(r)
            | Event::UserSecurityChanged { user: r, .. } => {
                let new_key = r.username_key();
                if let Some((old, _)) = self.record(&r.sub).await? {
                    if old.username_key() != new_key {
                        self.release_username(&old.username_key(), &r.sub, seq)
                            .await?;
                    }
                }
                let json = serde_json::to_vec(&r).map_err(|err| decode(err.to_string()))?;
                // The index first, the record last: a record at this sequence means the
                // whole event is applied.
                self.kv
                    .apply(&index_key(&new_key), Some(r.sub.as_bytes()), seq)
                    .await?;
                // A user handle is random and never given to another user: its entry is
                // written once and only read back through the record that names it.
                if let Some(handle) = &r.passkey_handle {
                    let key = format!("{PASSKEY_PREFIX}{handle}");
                    if validate_key(&key).is_ok() {
                        self.kv.apply(&key, Some(r.sub.as_bytes()), seq).await?;
                    }
                }
                self.kv.apply(&sub_key(&r.sub), Some(&json), seq).await?;
                self.cache.drop_record(&r.sub);
            }
            Event::UserDeleted { sub } => {
                if let Some((old, _)) = self.record(&sub).await? {
                    self.release_username(&old.username_key(), &sub, seq)
                        .await?;
                    if let Some(handle) = &old.passkey_handle {
                        let key = format!("{PASSKEY_PREFIX}{handle}");
                        if validate_key(&key).is_ok() {
                            self.kv.apply(&key, None, seq).await?;
                        }
                    }
                }
                self.kv.apply(&sub_key(&sub), None, seq).await?;
                self.cache.drop_record(&sub);
            }
            Event::ApiKeyCreated(k) => {
                let json = serde_json::to_vec(&k).map_err(|err| decode(err.to_string()))?;
                let (mut ids, _) = self.key_ids(&k.sub).await?;
                if !ids.contains(&k.id) {
                    ids.push(k.id.clone());
                }
                self.set_key_ids(&k.sub, &ids, seq).await?;
                self.kv
                    .apply(&format!("{API_KEY_PREFIX}{}", k.id), Some(&json), seq)
                    .await?;
            }
            Event::ApiKeyRevoked { id, sub } => {
                let (mut ids, _) = self.key_ids(&sub).await?;
                ids.retain(|i| *i != id);
                self.set_key_ids(&sub, &ids, seq).await?;
                self.kv
                    .apply(&format!("{API_KEY_PREFIX}{id}"), None, seq)
                    .await?;
            }
            other => {
                return Err(decode(format!(
                    "a {} event on a user subject",
                    other.aggregate().0.as_str()
                )))
            }
        }
        Ok(true)
    }

    /// Folds one event, retrying while the store is unreachable.
    async fn fold_retrying(&self, e: &RecordedEvent) -> Result<bool, UsersError> {
        let mut pause = RETRY_MIN;
        loop {
            match self.fold(e).await {
                Err(err) if transient(&err) => {
                    tracing::warn!(seq = e.seq, error = %err, "users projection: retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
                other => return other,
            }
        }
    }

    async fn set_watermark(&self, seq: Seq) -> Result<(), UsersError> {
        let mut pause = RETRY_MIN;
        loop {
            match self.kv.set_applied_seq(seq).await.map_err(UsersError::from) {
                Err(err) if transient(&err) => {
                    tracing::warn!(seq, error = %err, "users projection watermark: retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
                other => return other,
            }
        }
    }

    /// Applies the log from the watermark to its head; returns the last applied sequence.
    async fn catch_up(&self) -> Result<Seq, UsersError> {
        let mut at = self.kv.applied_seq().await?;
        let head = self.log.last_seq().await?;
        if at > head {
            return Err(UsersError::Ahead { applied: at, head });
        }
        let from = at;
        loop {
            let batch = self.log.read_from(at + 1, CATCH_UP_BATCH).await?;
            if batch.is_empty() {
                break;
            }
            for e in &batch {
                if e.seq != at + 1 {
                    return Err(UsersError::Gap { at, got: e.seq });
                }
                self.fold_retrying(e).await?;
                at = e.seq;
            }
            self.set_watermark(at).await?;
        }
        tracing::info!(from, to = at, "users projection caught up");
        self.applied.send_replace(at);
        Ok(at)
    }

    /// Follows the log's tail from `at + 1`. Returns only with an error.
    async fn follow(&self, mut at: Seq) -> Result<(), UsersError> {
        let mut stream = self.log.follow(at + 1).await?;
        let mut persisted = at;
        loop {
            let next = if persisted < at {
                match tokio::time::timeout(WATERMARK_IDLE, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        self.set_watermark(at).await?;
                        persisted = at;
                        continue;
                    }
                }
            } else {
                stream.next().await
            };
            let e = match next {
                Some(Ok(e)) => e,
                Some(Err(err)) => return Err(err.into()),
                None => return Err(EventLogError::Closed.into()),
            };
            if e.seq != at + 1 {
                return Err(UsersError::Gap { at, got: e.seq });
            }
            let user = self.fold_retrying(&e).await?;
            at = e.seq;
            if user || at - persisted >= WATERMARK_EVERY {
                self.set_watermark(at).await?;
                persisted = at;
            }
            self.applied.send_replace(at);
        }
    }
}

fn random16() -> Result<[u8; 16], UserWriteError> {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| UserWriteError::Random)?;
    Ok(b)
}

/// Runs argon2id work (hashing or checking a password) on the blocking pool, at most one
/// job per core at a time. Each job takes tens of milliseconds and about 19 MiB; tokio's
/// blocking pool would otherwise run up to 512 at once, so a burst of sign-ins could take
/// gigabytes and starve the node. Waiting jobs queue (bounded by the request timeout).
pub async fn password_work<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let slots = SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    });
    let _slot = slots.acquire().await.ok()?;
    tokio::task::spawn_blocking(job).await.ok()
}

/// Hashes a password on the blocking pool (argon2id takes tens of milliseconds).
pub async fn hash(password: &str) -> Result<String, UserWriteError> {
    let salt = random16()?;
    let password = password.to_owned();
    password_work(move || hash_password(&password, &salt))
        .await
        .ok_or(UserWriteError::Random)?
        .map_err(UserWriteError::from)
}

fn now() -> i64 {
    crate::http::token::now()
}

/// A username's aggregate as the log has it: its version, and who holds the claim (with
/// when it was claimed, in milliseconds) unless it was released or never claimed.
struct Claim {
    id: String,
    version: Seq,
    holder: Option<(String, i64)>,
}

impl Users {
    /// Catches up from the store's watermark to the log's head, then follows the log in a
    /// task of its own.
    pub async fn start(
        kv: Arc<dyn ProjectionKv>,
        log: Arc<dyn EventLog>,
    ) -> Result<Users, UsersError> {
        let (applied, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            kv,
            log,
            applied,
            failed: AtomicBool::new(false),
            cache: cache::RecordCache::default(),
        });
        let at = shared.catch_up().await?;
        let follower = {
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = shared.follow(at).await {
                    shared.failed.store(true, Ordering::Relaxed);
                    shared.cache.clear();
                    // Wakes the writers waiting for an event it will never apply.
                    shared.applied.send_modify(|_| {});
                    metrics::counter!(crate::telemetry::EVENTLOG_ERRORS, "op" => "follow")
                        .increment(1);
                    tracing::error!(error = %e, "users projection stopped");
                }
            })
        };
        Ok(Users(Arc::new(Inner {
            shared,
            writes: tokio::sync::Mutex::new(()),
            follower,
        })))
    }

    /// `serve`: the projection in `<data_dir>/projections/users.redb`.
    pub async fn open_embedded(
        data_dir: &std::path::Path,
        log: Arc<dyn EventLog>,
    ) -> Result<Users, UsersError> {
        let kv = RedbKv::open(&data_dir.join(USERS_FILE)).await?;
        Users::start(Arc::new(kv), log).await
    }

    /// A cluster issuer: the projection in the JetStream KV bucket [`USERS_BUCKET`].
    pub async fn open_jetstream(
        nats: async_nats::Client,
        replicas: usize,
        log: Arc<dyn EventLog>,
    ) -> Result<Users, UsersError> {
        let kv = JetStreamKv::open(nats, JetStreamKvConfig::new(USERS_BUCKET, replicas)).await?;
        Users::start(Arc::new(kv), log).await
    }

    /// The last event this node's users projection applied.
    pub fn applied_seq(&self) -> Seq {
        *self.0.shared.applied.borrow()
    }

    /// Whether the follower is still running.
    pub fn is_running(&self) -> bool {
        !self.0.shared.failed.load(Ordering::Relaxed)
    }

    /// The user with `sub`.
    pub async fn by_sub(&self, sub: &str) -> Result<Option<UserRecord>, UsersError> {
        Ok(self.0.shared.record(sub).await?.map(|(r, _)| r))
    }

    /// The user with `sub`, as the token paths read it: from this node's cache when it
    /// holds the record (see [`cache`]), else from the store. Admin reads and sign-in pages
    /// use [`Users::by_sub`], which always reads the store.
    pub async fn current(&self, sub: &str) -> Result<Option<Arc<UserRecord>>, UsersError> {
        let shared = &self.0.shared;
        let ticket = match shared.cache.get(sub) {
            Ok(hit) => return Ok(Some(hit)),
            Err(ticket) => ticket,
        };
        let Some((record, _)) = shared.record(sub).await? else {
            return Ok(None);
        };
        let record = Arc::new(record);
        // A follower that stopped drops nothing any more: cache only while it runs.
        if self.is_running() {
            shared.cache.insert(ticket, record.clone());
        }
        Ok(Some(record))
    }

    /// The user signing in as `username` (case-insensitive).
    pub async fn by_username(&self, username: &str) -> Result<Option<UserRecord>, UsersError> {
        let normalized = username_key(username);
        let key = index_key(&normalized);
        if validate_key(&key).is_err() {
            return Ok(None);
        }
        let Some((sub, _)) = self.0.shared.kv.get(&key).await? else {
            return Ok(None);
        };
        let Ok(sub) = String::from_utf8(sub) else {
            return Err(UsersError::Corrupt {
                key,
                reason: "the sub is not UTF-8".into(),
            });
        };
        Ok(self
            .by_sub(&sub)
            .await?
            .filter(|r| r.username_key() == normalized))
    }

    /// The user whose passkeys carry WebAuthn user handle `handle` (base64url).
    pub async fn by_passkey_handle(&self, handle: &str) -> Result<Option<UserRecord>, UsersError> {
        let key = format!("{PASSKEY_PREFIX}{handle}");
        if handle.is_empty() || validate_key(&key).is_err() {
            return Ok(None);
        }
        let Some((sub, _)) = self.0.shared.kv.get(&key).await? else {
            return Ok(None);
        };
        let Ok(sub) = String::from_utf8(sub) else {
            return Ok(None);
        };
        Ok(self
            .by_sub(&sub)
            .await?
            .filter(|r| r.passkey_handle.as_deref() == Some(handle)))
    }

    /// Waits until this node's users projection has applied event `seq`.
    pub async fn wait_applied(&self, seq: Seq, patience: Duration) -> Result<(), UsersError> {
        let shared = &self.0.shared;
        let failed = || shared.failed.load(Ordering::Relaxed);
        let mut rx = shared.applied.subscribe();
        let wait = async move {
            let reached = rx.wait_for(|applied| *applied >= seq || failed()).await;
            matches!(reached, Ok(applied) if *applied >= seq)
        };
        match tokio::time::timeout(patience, wait).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(UsersError::Stopped),
            Err(_) if failed() => Err(UsersError::Stopped),
            Err(_) => Err(UsersError::Timeout(seq)),
        }
    }

    /// Waits until this node has applied the whole log as it is now.
    async fn settle(&self, patience: Duration) -> Result<(), UserWriteError> {
        let head = self
            .0
            .shared
            .log
            .last_seq()
            .await
            .map_err(UserWriteError::Log)?;
        Ok(self.wait_applied(head, patience).await?)
    }

    /// The claim `id` (a username's [`username_id`], any spelling; or an upstream identity's
    /// [`link_id`]), read from the last event of its subject.
    async fn claim_of_id(&self, id: String) -> Result<Claim, UserWriteError> {
        let log = &self.0.shared.log;
        let subject = Aggregate::Username.subject(&id);
        let version = log
            .subject_version(&subject)
            .await
            .map_err(UserWriteError::Log)?;
        if version == 0 {
            return Ok(Claim {
                id,
                version,
                holder: None,
            });
        }
        let last = log
            .read_from(version, 1)
            .await
            .map_err(UserWriteError::Log)?
            .into_iter()
            .next()
            .filter(|e| e.seq == version && e.subject == subject);
        let decode = |reason: String| UsersError::Decode {
            seq: version,
            subject: subject.clone(),
            reason,
        };
        let Some(last) = last else {
            return Err(decode("the subject's last event cannot be read".into()).into());
        };
        let holder = match Event::from_json(&last.payload) {
            Ok(Event::UsernameClaimed { sub, .. }) => Some((sub, last.at_ms)),
            Ok(Event::UsernameReleased { .. }) => None,
            Ok(other) => {
                return Err(decode(format!("a {} event", other.aggregate().0.as_str())).into())
            }
            Err(e) => return Err(decode(e.to_string()).into()),
        };
        Ok(Claim {
            id,
            version,
            holder,
        })
    }

    /// Claims `username` for `sub` with the version just read: `UsernameTaken` when someone
    /// else holds it, or claims it in the same instant (the append finds the version
    /// moved). Returns whether this call made the claim (false: `sub` held it already).
    async fn claim(
        &self,
        actor: &str,
        username: &str,
        sub: &str,
        patience: Duration,
    ) -> Result<bool, UserWriteError> {
        let key = username_key(username);
        self.claim_id(
            actor,
            username_id(username),
            sub,
            |r| r.username_key() == key,
            || UserWriteError::UsernameTaken(username.to_owned()),
            patience,
        )
        .await
    }

    /// Claims `id` for `sub` (see [`Users::claim`]): `holds` says whether the current
    /// holder still uses what it claimed, `taken` is the error when it does.
    async fn claim_id(
        &self,
        actor: &str,
        id: String,
        sub: &str,
        holds: impl Fn(&UserRecord) -> bool,
        taken: impl Fn() -> UserWriteError,
        patience: Duration,
    ) -> Result<bool, UserWriteError> {
        let claim = self.claim_of_id(id).await?;
        if let Some((holder, at_ms)) = &claim.holder {
            if holder == sub {
                return Ok(false);
            }
            let holds = self.by_sub(holder).await?.is_some_and(|r| holds(&r));
            let age_ms = now() * 1000 - at_ms;
            let young = age_ms < ORPHAN_CLAIM_AFTER.as_millis() as i64;
            if holds || young {
                return Err(taken());
            }
            tracing::warn!(
                holder = %holder,
                claimed_ms_ago = age_ms,
                "a claim whose user never took it is claimed again"
            );
        }
        let event = Event::UsernameClaimed {
            name: claim.id,
            sub: sub.to_owned(),
        };
        match self.append(actor, &event, claim.version, patience).await {
            Ok(_) => Ok(true),
            Err(UserWriteError::Conflict) => Err(taken()),
            Err(e) => Err(e),
        }
    }

    /// Releases `sub`'s claim on `username`, if it holds it. Failing leaves an orphan claim
    /// (freed after [`ORPHAN_CLAIM_AFTER`]), so it is logged, not answered.
    async fn release(&self, actor: &str, username: &str, sub: &str, patience: Duration) {
        self.release_id(actor, username_id(username), sub, patience)
            .await
    }

    /// Releases `sub`'s claim `id`, if it holds it (see [`Users::release`]).
    async fn release_id(&self, actor: &str, id: String, sub: &str, patience: Duration) {
        let released = async {
            let claim = self.claim_of_id(id).await?;
            if claim.holder.as_ref().is_some_and(|(h, _)| h == sub) {
                let event = Event::UsernameReleased {
                    name: claim.id,
                    sub: sub.to_owned(),
                };
                match self.append(actor, &event, claim.version, patience).await {
                    // Moved on meanwhile: no longer this user's to release.
                    Ok(_) | Err(UserWriteError::Conflict) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, UserWriteError>(())
        };
        if let Err(e) = released.await {
            tracing::warn!(
                sub,
                error = %e,
                "could not release a claim; it is free again after {} s",
                ORPHAN_CLAIM_AFTER.as_secs()
            );
        }
    }

    /// A writer that held its claim this long without taking the name gives up (others may
    /// take the claim for abandoned past [`ORPHAN_CLAIM_AFTER`]).
    fn claim_still_fresh(since: std::time::Instant) -> Result<(), UserWriteError> {
        if since.elapsed() < ORPHAN_CLAIM_AFTER / 2 {
            Ok(())
        } else {
            Err(UserWriteError::Conflict)
        }
    }

    async fn append(
        &self,
        actor: &str,
        event: &Event,
        expected: Seq,
        patience: Duration,
    ) -> Result<Seq, UserWriteError> {
        let new = NewEvent {
            subject: event.subject(),
            actor: actor.to_owned(),
            at_ms: now() * 1000,
            payload: event.to_json(),
        };
        let seq = self
            .0
            .shared
            .log
            .append(new, ExpectedVersion::Exact(expected))
            .await
            .map_err(|e| match e {
                EventLogError::Conflict { .. } => UserWriteError::Conflict,
                other => UserWriteError::Log(other),
            })?;
        self.wait_applied(seq, patience).await?;
        Ok(seq)
    }

    /// An API key by id.
    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, UsersError> {
        let key = format!("{API_KEY_PREFIX}{id}");
        if validate_key(&key).is_err() {
            return Ok(None);
        }
        match self.0.shared.kv.get(&key).await? {
            Some((bytes, _)) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
                UsersError::Corrupt {
                    key,
                    reason: e.to_string(),
                }
            })?)),
            None => Ok(None),
        }
    }

    /// A user's API keys.
    pub async fn api_keys_of(&self, sub: &str) -> Result<Vec<ApiKeyRecord>, UsersError> {
        let (ids, _) = self.0.shared.key_ids(sub).await?;
        let mut keys = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(k) = self.api_key(&id).await? {
                keys.push(k);
            }
        }
        Ok(keys)
    }

    /// Makes an API key for `sub`; returns its record and the key (shown once).
    pub async fn create_api_key(
        &self,
        sub: &str,
        request: NewApiKey,
        patience: Duration,
    ) -> Result<(ApiKeyRecord, String), UserWriteError> {
        request.check()?;
        let _writing = self.0.writes.lock().await;
        self.settle(patience).await?;
        if self.api_keys_of(sub).await?.len() >= api_key::MAX_KEYS_PER_USER {
            return Err(ValidationErrors::single(
                "name",
                "this user already holds the most API keys allowed (50); revoke one first",
            )
            .into());
        }
        let id = signet_jose::b64url(&random16()?);
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| UserWriteError::Random)?;
        let key = api_key::format_key(&id, &signet_jose::b64url(&secret));
        let now = now();
        let record = ApiKeyRecord {
            id,
            sub: sub.to_owned(),
            name: request.name.trim().to_owned(),
            scopes: request.scopes,
            sha256: signet_core::secret::SecretDigest::of(&key).to_b64url(),
            created_at: now,
            expires_at: request
                .lifetime_days
                .map(|d| now + i64::from(d) * 24 * 3600),
        };
        let event = Event::ApiKeyCreated(Box::new(record.clone()));
        self.append(sub, &event, 0, patience).await?;
        Ok((record, key))
    }

    /// Revokes one of `sub`'s API keys; `NotFound` when `sub` has no such key.
    pub async fn revoke_api_key(
        &self,
        sub: &str,
        id: &str,
        patience: Duration,
    ) -> Result<ApiKeyRecord, UserWriteError> {
        let _writing = self.0.writes.lock().await;
        self.settle(patience).await?;
        let record = self
            .api_key(id)
            .await?
            .filter(|k| k.sub == sub)
            .ok_or_else(|| UserWriteError::NotFound(format!("API key {id}")))?;
        let version = self
            .0
            .shared
            .kv
            .get(&format!("{API_KEY_PREFIX}{id}"))
            .await
            .map_err(UsersError::from)?
            .map(|(_, seq)| seq)
            .unwrap_or(0);
        let event = Event::ApiKeyRevoked {
            id: id.to_owned(),
            sub: sub.to_owned(),
        };
        self.append(sub, &event, version, patience).await?;
        Ok(record)
    }

    /// Creates a user with a new random `sub`; answers once this node applied it.
    pub async fn create(
        &self,
        actor: &str,
        user: CheckedUser,
        patience: Duration,
    ) -> Result<UserRecord, UserWriteError> {
        let password = user
            .password
            .as_ref()
            .ok_or_else(|| ValidationErrors::single("password", "is required to create a user"))?;
        let password_hash = hash(password.expose()).await?;
        let _writing = self.0.writes.lock().await;
        self.settle(patience).await?;
        if self.by_username(&user.username).await?.is_some() {
            return Err(UserWriteError::UsernameTaken(user.username));
        }
        let sub = sub_from_bytes(&random16()?);
        let since = std::time::Instant::now();
        let username = user.username.clone();
        self.claim(actor, &username, &sub, patience).await?;
        if let Err(e) = Self::claim_still_fresh(since) {
            self.release(actor, &username, &sub, patience).await;
            return Err(e);
        }
        let record = UserRecord::new(sub, user, password_hash, now());
        let event = Event::UserCreated(Box::new(record.clone()));
        // Whatever happens now, the claim stays: if the event was appended (even when the
        // answer was lost) the name is the user's; if not, the claim is an orphan.
        self.append(actor, &event, 0, patience).await?;
        Ok(record)
    }

    /// Replaces a user's username, claims and `enabled`, and its password when `user` has
    /// one; answers once this node applied it.
    pub async fn replace(
        &self,
        actor: &str,
        sub: &str,
        user: CheckedUser,
        patience: Duration,
    ) -> Result<UserRecord, UserWriteError> {
        let password_hash = match &user.password {
            Some(p) => Some(hash(p.expose()).await?),
            None => None,
        };
        let _writing = self.0.writes.lock().await;
        self.settle(patience).await?;
        let (old, version) = self
            .0
            .shared
            .record(sub)
            .await?
            .ok_or_else(|| UserWriteError::NotFound(sub.to_owned()))?;
        let renamed = old.username_key() != user.username_key();
        let mut claimed = false;
        if renamed {
            if let Some(holder) = self.by_username(&user.username).await? {
                if holder.sub != sub {
                    return Err(UserWriteError::UsernameTaken(user.username));
                }
            }
            let since = std::time::Instant::now();
            claimed = self.claim(actor, &user.username, sub, patience).await?;
            if let Err(e) = Self::claim_still_fresh(since) {
                if claimed {
                    self.release(actor, &user.username, sub, patience).await;
                }
                return Err(e);
            }
        }
        let new_name = user.username.clone();
        let record = old.replaced(user, password_hash, now());
        let event = Event::UserReplaced(Box::new(record.clone()));
        match self.append(actor, &event, version, patience).await {
            Ok(_) => {}
            // Certainly not appended: the new name goes back.
            Err(UserWriteError::Conflict) => {
                if claimed {
                    self.release(actor, &new_name, sub, patience).await;
                }
                return Err(UserWriteError::Conflict);
            }
            Err(e) => return Err(e),
        }
        if renamed {
            self.release(actor, &old.username, sub, patience).await;
        }
        Ok(record)
    }

    /// Changes a user's sign-in security: `change` maps the stored record (at its version)
    /// to the new one, or refuses with an error; the write appends
    /// [`Event::UserSecurityChanged`] demanding that version, so two racing changes (two
    /// nodes taking one recovery code) cannot both land: the second gets
    /// [`UserWriteError::Conflict`]. Answers once this node applied it.
    pub async fn change_security(
        &self,
        actor: &str,
        sub: &str,
        what: SecurityChange,
        change: impl FnOnce(&UserRecord) -> Result<UserRecord, UserWriteError>,
        patience: Duration,
    ) -> Result<UserRecord, UserWriteError> {
        let (old, version) = self
            .0
            .shared
            .record(sub)
            .await?
            .ok_or_else(|| UserWriteError::NotFound(sub.to_owned()))?;
        let mut record = change(&old)?;
        record.updated_at = now();
        let event = Event::UserSecurityChanged {
            change: what,
            user: Box::new(record.clone()),
        };
        self.append(actor, &event, version, patience).await?;
        Ok(record)
    }

    /// The user an upstream identity signs in as: the user linked to (`scheme`,
    /// `subject`), created on first sign-in (just in time) with `claims` under a free
    /// username (`<scheme>:<subject>`, else `<scheme>:<sub>`, suffixed `-2`, `-3`... when
    /// taken: a name collision never links). Its `sub` is [`federated_sub`], so nodes
    /// racing to create it meet on the user's aggregate. `Ok(None)`: that user exists but
    /// the link was removed by an admin (the identity may not sign in as it).
    pub async fn federated(
        &self,
        scheme: &str,
        subject: &str,
        claims: serde_json::Map<String, serde_json::Value>,
        patience: Duration,
    ) -> Result<Option<(UserRecord, bool)>, UserWriteError> {
        let sub = federated_sub(scheme, subject);
        let link = ExternalLogin {
            scheme: scheme.to_owned(),
            subject: subject.to_owned(),
        };
        let linked = |r: &UserRecord| r.external_logins.contains(&link);
        if let Some(r) = self.linked_user(&link).await? {
            return Ok(Some((r, false)));
        }
        if let Some(r) = self.by_sub(&sub).await? {
            return Ok(linked(&r).then_some((r, false)));
        }
        let _writing = self.0.writes.lock().await;
        self.settle(patience).await?;
        if let Some(r) = self.linked_user(&link).await? {
            return Ok(Some((r, false)));
        }
        if let Some(r) = self.by_sub(&sub).await? {
            return Ok(linked(&r).then_some((r, false)));
        }
        let actor = format!("federation:{scheme}");
        // The identity is claimed first, as linking it to an existing user claims it: one
        // user per upstream identity, whichever node or path gets there first.
        match self
            .claim_id(
                &actor,
                link_id(&link),
                &sub,
                |r| r.external_logins.contains(&link),
                || UserWriteError::LinkTaken(scheme.to_owned()),
                patience,
            )
            .await
        {
            Ok(_) => {}
            Err(UserWriteError::LinkTaken(_)) => {
                // Linked (or being linked) to an existing user meanwhile.
                self.settle(patience).await?;
                return Ok(self.linked_user(&link).await?.map(|r| (r, false)));
            }
            Err(e) => return Err(e),
        }
        let created = self
            .create_federated(&actor, scheme, subject, &sub, &link, claims, patience)
            .await;
        let kept = matches!(created, Ok(Some(_)))
            || matches!(self.by_sub(&sub).await, Ok(Some(ref r)) if linked(r));
        if !kept {
            self.release_id(&actor, link_id(&link), &sub, patience)
                .await;
        }
        created
    }

    /// The user that claimed the upstream identity `link` and holds it.
    async fn linked_user(
        &self,
        link: &ExternalLogin,
    ) -> Result<Option<UserRecord>, UserWriteError> {
        let claim = self.claim_of_id(link_id(link)).await?;
        let Some((holder, _)) = claim.holder else {
            return Ok(None);
        };
        Ok(self
            .by_sub(&holder)
            .await?
            .filter(|r| r.external_logins.contains(link)))
    }

    /// The just-in-time user of `link` (its identity claimed by the caller).
    #[allow(clippy::too_many_arguments)]
    async fn create_federated(
        &self,
        actor: &str,
        scheme: &str,
        subject: &str,
        sub: &str,
        link: &ExternalLogin,
        claims: serde_json::Map<String, serde_json::Value>,
        patience: Duration,
    ) -> Result<Option<(UserRecord, bool)>, UserWriteError> {
        let (actor, sub) = (actor.to_owned(), sub.to_owned());
        let linked = |r: &UserRecord| r.external_logins.contains(link);
        let mut base = format!("{scheme}:{subject}");
        if signet_core::user::check_federated(base.clone(), Default::default()).is_err() {
            base = format!("{scheme}:{sub}");
        }
        let mut chosen = None;
        for n in 1..=20 {
            let name = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            if self.by_username(&name).await?.is_some() {
                continue;
            }
            match self.claim(&actor, &name, &sub, patience).await {
                Ok(_) => {
                    chosen = Some(name);
                    break;
                }
                Err(UserWriteError::UsernameTaken(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        let Some(username) = chosen else {
            return Err(UserWriteError::UsernameTaken(base));
        };
        let (checked, dropped) = match signet_core::user::check_federated(username.clone(), claims)
        {
            Ok(c) => c,
            Err(e) => {
                self.release(&actor, &username, &sub, patience).await;
                return Err(e.into());
            }
        };
        if !dropped.is_empty() {
            tracing::warn!(
                scheme,
                ?dropped,
                "upstream claims that break the user rules were left out"
            );
        }
        let mut record = UserRecord::new(sub.clone(), checked, NO_PASSWORD.to_owned(), now());
        record.external_logins.push(link.clone());
        // A user deleted before may have had this sub: the append expects its last version.
        let version = self
            .0
            .shared
            .log
            .subject_version(&Aggregate::User.subject(&sub))
            .await
            .map_err(UserWriteError::Log)?;
        let event = Event::UserCreated(Box::new(record.clone()));
        match self.append(&actor, &event, version, patience).await {
            Ok(_) => Ok(Some((record, true))),
            Err(UserWriteError::Conflict) => {
                // Another node created it first.
                self.release(&actor, &username, &sub, patience).await;
                self.wait_applied(
                    self.0
                        .shared
                        .log
                        .last_seq()
                        .await
                        .map_err(UserWriteError::Log)?,
                    patience,
                )
                .await?;
                Ok(self.by_sub(&sub).await?.filter(linked).map(|r| (r, false)))
            }
            Err(e) => Err(e),
        }
    }

    /// Links the upstream identity (`scheme`, `subject`) to the existing user `sub` (its
    /// owner signed in and then at the provider): later sign-ins through that identity are
    /// this user. Refused (`LinkTaken`) when the identity belongs to another user, and when
    /// `sub` is linked to another identity of the same provider.
    pub async fn link_external(
        &self,
        actor: &str,
        sub: &str,
        scheme: &str,
        subject: &str,
        patience: Duration,
    ) -> Result<UserRecord, UserWriteError> {
        let link = ExternalLogin {
            scheme: scheme.to_owned(),
            subject: subject.to_owned(),
        };
        let _writing = self.0.writes.lock().await;
        self.settle(patience).await?;
        let (old, version) = self
            .0
            .shared
            .record(sub)
            .await?
            .ok_or_else(|| UserWriteError::NotFound(sub.to_owned()))?;
        if old.external_logins.contains(&link) {
            return Ok(old);
        }
        if old.external_logins.iter().any(|l| l.scheme == scheme) {
            return Err(UserWriteError::LinkTaken(scheme.to_owned()));
        }
        // The identity's own just-in-time user, made before identities were claimed.
        let own = federated_sub(scheme, subject);
        if own != sub
            && self
                .by_sub(&own)
                .await?
                .is_some_and(|r| r.external_logins.contains(&link))
        {
            return Err(UserWriteError::LinkTaken(scheme.to_owned()));
        }
        self.claim_id(
            actor,
            link_id(&link),
            sub,
            |r| r.external_logins.contains(&link),
            || UserWriteError::LinkTaken(scheme.to_owned()),
            patience,
        )
        .await?;
        let mut record = old.clone();
        record.external_logins.push(link.clone());
        record.updated_at = now();
        let event = Event::UserReplaced(Box::new(record.clone()));
        match self.append(actor, &event, version, patience).await {
            Ok(_) => Ok(record),
            Err(e) => {
                self.release_id(actor, link_id(&link), sub, patience).await;
                Err(e)
            }
        }
    }

    /// Removes the link of `sub` to an upstream identity of `scheme`.
    pub async fn remove_external_login(
        &self,
        actor: &str,
        sub: &str,
        scheme: &str,
        patience: Duration,
    ) -> Result<UserRecord, UserWriteError> {
        let _writing = self.0.writes.lock().await;
        self.settle(patience).await?;
        let (old, version) = self
            .0
            .shared
            .record(sub)
            .await?
            .ok_or_else(|| UserWriteError::NotFound(sub.to_owned()))?;
        if !old.external_logins.iter().any(|l| l.scheme == scheme) {
            return Err(UserWriteError::NotFound(format!(
                "the link of user {sub:?} to {scheme:?}"
            )));
        }
        let mut record = old.clone();
        record.external_logins.retain(|l| l.scheme != scheme);
        record.updated_at = now();
        let event = Event::UserReplaced(Box::new(record.clone()));
        self.append(actor, &event, version, patience).await?;
        for link in old.external_logins.iter().filter(|l| l.scheme == scheme) {
            self.release_id(actor, link_id(link), sub, patience).await;
        }
        Ok(record)
    }

    /// Deletes a user; answers (with what was deleted) once this node applied it.
    pub async fn delete(
        &self,
        actor: &str,
        sub: &str,
        patience: Duration,
    ) -> Result<UserRecord, UserWriteError> {
        let _writing = self.0.writes.lock().await;
        self.settle(patience).await?;
        let (old, version) = self
            .0
            .shared
            .record(sub)
            .await?
            .ok_or_else(|| UserWriteError::NotFound(sub.to_owned()))?;
        let event = Event::UserDeleted {
            sub: sub.to_owned(),
        };
        self.append(actor, &event, version, patience).await?;
        self.release(actor, &old.username, sub, patience).await;
        for link in &old.external_logins {
            self.release_id(actor, link_id(link), sub, patience).await;
        }
        Ok(old)
    }
}

pub mod cache;
#[cfg(test)]
mod tests;
