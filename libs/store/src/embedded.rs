//! [`EmbeddedStore`]: the short-lived state of the all-in-one node, in one redb file
//! (`store.redb`) in the data directory.
//!
//! # Data model
//!
//! Every record is an *item* named by an item ref: `e:<namespace>:<key>` for an entry,
//! `f:<family id>` for a refresh-token family. Five tables:
//!
//! | table | key | value |
//! |---|---|---|
//! | `items` | item ref | the record (below) |
//! | `index` | (index ref, item ref) | nothing; index refs are `f:<family>`, `s:<sid>`, `u:<sub>` |
//! | `expiry` | (expires at, Unix ms; item ref) | nothing: the sweeper's queue |
//! | `retired` | (family id, retired token key) | nothing |
//! | `meta` | `"format"` | the format version, 1 |
//!
//! A record is `kind (1 entry, 2 family) | expires at (u64 LE, Unix ms) | index count (u16
//! LE) | each index ref (u16 LE length + bytes) | [family: current key (u16 LE length +
//! bytes)] | value`. A record that does not decode is [`StoreError::Corrupt`], never a miss.
//!
//! Each record knows its index refs, so removing an item removes exactly its index and
//! expiry rows; nothing dangles.
//!
//! # Atomicity, durability, expiry
//!
//! Reads are one redb read transaction each and see a consistent snapshot. Writes go through
//! **group commit**: every write operation is queued to one writer thread, which takes
//! whatever is queued (at most [`MAX_BATCH`] operations, never waiting for more to arrive),
//! applies the operations in queue order in ONE write transaction, commits it once (one
//! fsync), and only then answers each caller with its own result. So `consume`, `insert`,
//! `incr` and `rotate` stay atomic and serialised (an operation sees the operations queued
//! before it, in the same batch or an earlier one), each caller is acknowledged only once its
//! write is durable, and N concurrent writers share one fsync instead of waiting for N.
//!
//! An operation that fails on its own (an existing family, a counter that is not one, a
//! corrupt record) fails alone: the batch transaction is aborted and the rest of the batch is
//! applied again without it, so nothing it half-wrote survives. A database failure (an I/O
//! error such as a full disk, or a failed commit) fails every operation of the batch: none is
//! acknowledged. A batch of counter increments only commits without fsync (a crash may lose
//! the last increments; a clean shutdown keeps them); a batch holding any other write is
//! durable.
//!
//! # A failed write (a full disk)
//!
//! After an I/O error redb refuses every later transaction (`PreviousIo`) until the file is
//! reopened; the file itself stays valid (a transaction that failed never committed). Writes
//! and reads then fail with [`StoreError::Io`] / [`StoreError::Unavailable`] (503
//! `temporarily_unavailable` at the endpoints). The writer thread recovers by itself: at most
//! once per [`EmbeddedConfig::reopen_interval`], and only once the file system has at least
//! [`REOPEN_MIN_FREE`] bytes free, it closes the database (once no read is inside it) and
//! opens it again (redb repairs it at open; reads meanwhile answer `Unavailable`); writes then
//! succeed again without a restart. Each attempt counts in [`REOPENS_METRIC`] and logs a warning.
//!
//! Expired items are invisible at once (every read checks the expiry) and removed by a
//! background sweeper every [`EmbeddedConfig::sweep_interval`] (and by [`EmbeddedStore::sweep`]).
//! A family that expires takes its retired keys with it, but not the entries tied to it
//! (they keep their own TTLs), exactly like the Redis backend.
//!
//! Only one process may open the file at a time; a second open fails with a clear message.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction,
};

use crate::{
    dedup_index, ttl_millis, validate_family, validate_index, validate_key, FamilyToken, Index,
    Namespace, Result, Rotation, Store, StoreError,
};

/// The file in the data directory.
pub const FILE_NAME: &str = "store.redb";

const ITEMS: TableDefinition<&str, &[u8]> = TableDefinition::new("items");
const INDEX: TableDefinition<(&str, &str), ()> = TableDefinition::new("index");
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiry");
const RETIRED: TableDefinition<(&str, &str), ()> = TableDefinition::new("retired");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const FORMAT: u64 = 1;

const KIND_ENTRY: u8 = 1;
const KIND_FAMILY: u8 = 2;

/// Items removed per sweeper transaction (keeps each write short).
const SWEEP_BATCH: usize = 2_000;

/// The most write operations one group commit applies in one transaction.
pub const MAX_BATCH: usize = 256;

/// The free space (bytes) the file system must have before the store is reopened after a
/// failed write: reopening on a disk that is still full would only fail again.
pub const REOPEN_MIN_FREE: u64 = 1 << 20;

/// Counter of attempts to reopen the store after a failed write, by `outcome` (`reopened`,
/// `failed`).
pub const REOPENS_METRIC: &str = "signet_store_reopens_total";

/// Options for [`EmbeddedStore::open_with`].
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// How often the background sweeper removes expired items (default 60 s).
    pub sweep_interval: Duration,
    /// The page cache redb keeps in memory, in bytes (default [`DEFAULT_CACHE_SIZE`]). redb's
    /// own default is 1 GiB, which a busy node fills with pages of short-lived items: RSS
    /// grew by ~90 MiB in a 5 s refresh run. The working set (live codes, sessions, families)
    /// is small and the OS page cache holds the file anyway.
    pub cache_size: usize,
    /// After a failed write, the least time between two attempts to reopen the database
    /// (default 1 s; see the module docs, *A failed write*).
    pub reopen_interval: Duration,
}

/// The default [`EmbeddedConfig::cache_size`]: 16 MiB.
pub const DEFAULT_CACHE_SIZE: usize = 16 << 20;

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            sweep_interval: Duration::from_secs(60),
            cache_size: DEFAULT_CACHE_SIZE,
            reopen_interval: Duration::from_secs(1),
        }
    }
}

/// The embedded [`Store`]. Dropping it stops the sweeper and closes the file.
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    /// The queue of the writer thread; dropping it stops the thread (after its batch).
    jobs: mpsc::Sender<Box<dyn Job>>,
    sweeper: tokio::task::JoinHandle<()>,
}

struct Inner {
    /// The database; `None` only while it is being reopened after a failed write (or that
    /// failed). Every read and write holds the read lock for its whole transaction, so a
    /// reopen (taking it out under the write lock) never closes the file under one.
    db: RwLock<Option<Database>>,
    path: PathBuf,
    cache_size: usize,
    reopen_interval: Duration,
    /// Successful reopens after a failed write.
    reopens: AtomicU64,
    /// Write transactions committed by the writer thread.
    commits: AtomicU64,
    /// Write operations acknowledged (after their commit).
    committed_ops: AtomicU64,
    /// Write operations handed to the writer thread.
    queued_ops: AtomicU64,
    /// Test hook: the next batch fails at its commit as a full disk would.
    #[cfg(test)]
    fail_next_commit: std::sync::atomic::AtomicBool,
    /// Test hook: the writer takes this lock before draining the queue, so a test holding it
    /// decides what one batch holds.
    #[cfg(test)]
    gate: tokio::sync::Mutex<()>,
    /// Test hook: a disk that fills up (see `tests::Disk`).
    #[cfg(test)]
    disk: Option<Arc<tests::Disk>>,
}

/// Group-commit counters, from [`EmbeddedStore::commit_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Write transactions committed by the writer.
    pub commits: u64,
    /// Write operations acknowledged after their commit.
    pub operations: u64,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.sweeper.abort();
    }
}

/// One queued write operation with its caller's answer channel (type-erased for the queue).
trait Job: Send {
    /// Whether its commit must be durable (everything but counter increments).
    fn durable(&self) -> bool;
    /// Applies the operation in the batch transaction, keeping its result for [`Job::answer`].
    /// May run more than once: a batch retried without a failed operation applies the others
    /// again in a fresh transaction.
    fn apply(&mut self, t: &mut Tx<'_>) -> Result<()>;
    /// Answers the caller: its kept result if `outcome` is `Ok`, else the error.
    fn answer(self: Box<Self>, outcome: Result<()>);
}

struct TypedJob<T, F> {
    op: F,
    durable: bool,
    out: Option<T>,
    reply: tokio::sync::oneshot::Sender<Result<T>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnMut(&mut Tx<'_>) -> Result<T> + Send,
{
    fn durable(&self) -> bool {
        self.durable
    }

    fn apply(&mut self, t: &mut Tx<'_>) -> Result<()> {
        self.out = Some((self.op)(t)?);
        Ok(())
    }

    fn answer(self: Box<Self>, outcome: Result<()>) {
        let TypedJob { out, reply, .. } = *self;
        let result = outcome.and_then(|()| {
            out.ok_or_else(|| StoreError::Backend("write applied without a result".into()))
        });
        // The caller may have gone (its future dropped): the write stands, nobody to tell.
        let _ = reply.send(result);
    }
}

/// Why a batch transaction did not commit.
enum BatchFailure {
    /// Operation `i` failed on its own: it is answered with the error, the rest retried.
    Op(usize, StoreError),
    /// The database failed: every operation of the batch gets the error.
    Db(StoreError),
}

/// An error for each caller of a failed batch (`StoreError` is not `Clone`: `io::Error`).
fn replicate(e: &StoreError) -> StoreError {
    match e {
        StoreError::InvalidKey { what, reason } => StoreError::InvalidKey { what, reason },
        StoreError::InvalidTtl => StoreError::InvalidTtl,
        StoreError::InvalidArgument(m) => StoreError::InvalidArgument(m),
        StoreError::FamilyExists => StoreError::FamilyExists,
        StoreError::NotACounter => StoreError::NotACounter,
        StoreError::Config(m) => StoreError::Config(m.clone()),
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Decode(m) => StoreError::Decode(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::Io(io) => StoreError::Io(std::io::Error::new(io.kind(), io.to_string())),
        StoreError::Backend(m) => StoreError::Backend(m.clone()),
    }
}

fn db_failure(e: impl Into<redb::Error>) -> BatchFailure {
    BatchFailure::Db(db_err(e))
}

/// The writer thread: takes what is queued (blocking only when nothing is), commits it as one
/// batch, answers, repeats. Ends when the store (the only sender) is dropped. After a batch
/// failed with an I/O error it reopens the database (see the module docs, *A failed write*):
/// at the first batch or timeout past `retry_at`, answering batches before that at once.
fn writer_loop(inner: Arc<Inner>, jobs: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    // Set while the database needs reopening: when to try next.
    let mut retry_at: Option<Instant> = None;
    loop {
        let first = match retry_at {
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Some(at) => match jobs.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    retry_at = inner.recover();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            },
        };
        batch.push(first);
        #[cfg(test)]
        let _gate = inner.gate.blocking_lock();
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if retry_at.is_some_and(|at| Instant::now() >= at) {
            retry_at = inner.recover();
        }
        if retry_at.is_some() {
            for job in batch.drain(..) {
                job.answer(Err(StoreError::Unavailable(
                    "an earlier write failed (disk full?): the store refuses writes until the \
                     disk has room again"
                        .into(),
                )));
            }
            continue;
        }
        if inner.commit_batch(&mut batch) {
            tracing::warn!(
                retry_every = ?inner.reopen_interval,
                "the store refuses writes until it is reopened; it will be once the disk has \
                 room"
            );
            retry_at = Some(Instant::now() + inner.reopen_interval);
        }
        batch.clear();
    }
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(e) => StoreError::Io(e),
        // After a failed write (a full disk), redb refuses every write until the file is
        // reopened; the file itself is intact (the failed transaction never committed).
        redb::Error::PreviousIo | redb::Error::DatabaseClosed => StoreError::Unavailable(
            "an earlier write failed (disk full?): the store refuses writes until it is \
             reopened, once the disk has room"
                .into(),
        ),
        redb::Error::Corrupted(m) => StoreError::Corrupt(m),
        other => StoreError::Backend(other.to_string()),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/store.redb` with the default options.
    pub async fn open(dir: &Path) -> Result<EmbeddedStore> {
        Self::open_with(dir, EmbeddedConfig::default()).await
    }

    /// Opens (or creates) `dir/store.redb` and starts the sweeper. Must run inside a Tokio
    /// runtime.
    pub async fn open_with(dir: &Path, config: EmbeddedConfig) -> Result<EmbeddedStore> {
        Self::start(
            dir,
            config,
            #[cfg(test)]
            None,
        )
        .await
    }

    async fn start(
        dir: &Path,
        config: EmbeddedConfig,
        #[cfg(test)] disk: Option<Arc<tests::Disk>>,
    ) -> Result<EmbeddedStore> {
        let dir = dir.to_path_buf();
        let sweep_interval = config.sweep_interval;
        let inner = blocking(move || {
            open_db(
                &dir,
                &config,
                #[cfg(test)]
                disk,
            )
        })
        .await?;
        let inner = Arc::new(inner);
        let (jobs, queue) = mpsc::channel();
        let writer_inner = inner.clone();
        std::thread::Builder::new()
            .name("signet-store-writer".into())
            .spawn(move || writer_loop(writer_inner, queue))?;
        let sweeper = tokio::spawn(sweep_loop(
            Arc::downgrade(&inner),
            sweep_interval.max(Duration::from_millis(10)),
        ));
        Ok(EmbeddedStore {
            inner,
            jobs,
            sweeper,
        })
    }

    /// How many times the store was reopened after a failed write (see the module docs,
    /// *A failed write*).
    pub fn reopens(&self) -> u64 {
        self.inner.reopens.load(Ordering::Relaxed)
    }

    /// How many write transactions and operations group commit has committed so far.
    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            commits: self.inner.commits.load(Ordering::Relaxed),
            operations: self.inner.committed_ops.load(Ordering::Relaxed),
        }
    }

    /// Queues a write operation for the writer thread and waits for its answer, which comes
    /// only after the batch holding it committed (durably, unless `durable` is false).
    /// `op` may run more than once (see [`Job::apply`]), each time in a fresh transaction.
    async fn write<T, F>(&self, durable: bool, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Box::new(TypedJob {
            op,
            durable,
            out: None,
            reply,
        });
        self.inner.queued_ops.fetch_add(1, Ordering::Relaxed);
        if self.jobs.send(job).is_err() {
            return Err(StoreError::Backend("the store writer has stopped".into()));
        }
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Backend("the store writer has stopped".into())),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Removes every expired item now; returns how many went.
    pub async fn sweep(&self) -> Result<u64> {
        let inner = self.inner.clone();
        blocking(move || inner.sweep(now_ms())).await
    }

    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking(move || f(&inner)).await
    }
}

async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::Backend(format!("store task failed: {e}"))),
    }
}

fn open_db(
    dir: &Path,
    config: &EmbeddedConfig,
    #[cfg(test)] disk: Option<Arc<tests::Disk>>,
) -> Result<Inner> {
    std::fs::create_dir_all(dir)?;
    let inner = Inner {
        db: RwLock::new(None),
        path: dir.join(FILE_NAME),
        cache_size: config.cache_size,
        reopen_interval: config.reopen_interval,
        reopens: AtomicU64::new(0),
        commits: AtomicU64::new(0),
        committed_ops: AtomicU64::new(0),
        queued_ops: AtomicU64::new(0),
        #[cfg(test)]
        fail_next_commit: std::sync::atomic::AtomicBool::new(false),
        #[cfg(test)]
        gate: tokio::sync::Mutex::new(()),
        #[cfg(test)]
        disk,
    };
    let db = inner.open_database()?;
    *inner.db.write().unwrap_or_else(PoisonError::into_inner) = Some(db);
    Ok(inner)
}

impl Inner {
    /// Opens (or creates) the database file and checks its format.
    fn open_database(&self) -> Result<Database> {
        let path = &self.path;
        // A store dropped a moment ago may still be closing on a blocking thread: give it a
        // little time before calling the file taken.
        let deadline = Instant::now() + Duration::from_secs(2);
        let db = loop {
            match self.create_database() {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                    return Err(StoreError::Config(format!(
                        "{} is already open (another signet process on the same data directory?)",
                        path.display()
                    )))
                }
                Err(e) => return Err(db_err(e)),
            }
        };
        let tx = db.begin_write().map_err(db_err)?;
        {
            let mut meta = tx.open_table(META).map_err(db_err)?;
            let format = meta.get("format").map_err(db_err)?.map(|v| v.value());
            match format {
                None => {
                    meta.insert("format", FORMAT).map_err(db_err)?;
                }
                Some(FORMAT) => {}
                Some(other) => {
                    return Err(StoreError::Corrupt(format!(
                        "{} has store format {other}; this build reads format {FORMAT}",
                        path.display()
                    )))
                }
            }
            tx.open_table(ITEMS).map_err(db_err)?;
            tx.open_table(INDEX).map_err(db_err)?;
            tx.open_table(EXPIRY).map_err(db_err)?;
            tx.open_table(RETIRED).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(db)
    }

    fn create_database(&self) -> std::result::Result<Database, redb::DatabaseError> {
        let mut builder = Database::builder();
        builder.set_cache_size(self.cache_size);
        #[cfg(test)]
        if let Some(disk) = &self.disk {
            return disk.create(&builder, &self.path);
        }
        builder.create(&self.path)
    }

    /// Runs `f` on the database, holding off a reopen meanwhile.
    fn with_db<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let slot = self.db.read().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            Some(db) => f(db),
            None => Err(StoreError::Unavailable(
                "the store could not be reopened after a failed write (disk full?); retrying"
                    .into(),
            )),
        }
    }

    /// Bytes free for this process on the file system of the store.
    fn free_space(&self) -> Result<u64> {
        #[cfg(test)]
        if let Some(disk) = &self.disk {
            return Ok(disk.free());
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let st = rustix::fs::statvfs(dir).map_err(|e| StoreError::Io(e.into()))?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// After a failed write: reopens the database if the disk has room. Returns when to try
    /// again, or `None` once the store is writable again.
    fn recover(&self) -> Option<Instant> {
        let again = Some(Instant::now() + self.reopen_interval);
        match self.free_space() {
            Ok(free) if free < REOPEN_MIN_FREE => {
                tracing::debug!(
                    free,
                    "the store stays closed to writes: the disk is still full"
                );
                return again;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "free space unknown; reopening the store"),
        }
        // Closed first (an open database holds the file's lock), once no reader is inside
        // it; while the file is reopened (and repaired) readers answer `Unavailable` at once
        // rather than wait.
        let old = self
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(old);
        match self.open_database() {
            Ok(db) => {
                *self.db.write().unwrap_or_else(PoisonError::into_inner) = Some(db);
                self.reopens.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(REOPENS_METRIC, "outcome" => "reopened").increment(1);
                tracing::warn!(
                    path = %self.path.display(),
                    "the store was reopened after a failed write; writes resume"
                );
                None
            }
            Err(e) => {
                metrics::counter!(REOPENS_METRIC, "outcome" => "failed").increment(1);
                tracing::warn!(error = %e, path = %self.path.display(),
                    "could not reopen the store after a failed write; retrying");
                again
            }
        }
    }
}

async fn sweep_loop(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        match blocking(move || strong.sweep(now_ms())).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "store sweeper removed expired items"),
            Err(e) => tracing::warn!(error = %e, "store sweeper failed"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// records
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    kind: u8,
    expires_ms: u64,
    index: Vec<String>,
    /// The current token key of a family; empty for an entry.
    current: String,
    value: Vec<u8>,
}

impl Record {
    fn live(&self, now: u64) -> bool {
        self.expires_ms > now
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(16 + self.value.len() + self.current.len());
        out.push(self.kind);
        out.extend_from_slice(&self.expires_ms.to_le_bytes());
        put_u16(&mut out, self.index.len())?;
        for i in &self.index {
            put_str(&mut out, i)?;
        }
        if self.kind == KIND_FAMILY {
            put_str(&mut out, &self.current)?;
        }
        out.extend_from_slice(&self.value);
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> Result<Record> {
        let mut r = Reader { bytes, at: 0 };
        let kind = r.take(1)?[0];
        if kind != KIND_ENTRY && kind != KIND_FAMILY {
            return Err(StoreError::Corrupt(format!("unknown record kind {kind}")));
        }
        let mut exp = [0u8; 8];
        exp.copy_from_slice(r.take(8)?);
        let count = r.u16()?;
        let mut index = Vec::with_capacity(count);
        for _ in 0..count {
            index.push(r.string()?);
        }
        let current = if kind == KIND_FAMILY {
            r.string()?
        } else {
            String::new()
        };
        Ok(Record {
            kind,
            expires_ms: u64::from_le_bytes(exp),
            index,
            current,
            value: bytes[r.at..].to_vec(),
        })
    }
}

fn put_u16(out: &mut Vec<u8>, n: usize) -> Result<()> {
    let n = u16::try_from(n).map_err(|_| StoreError::InvalidArgument("too many indexes"))?;
    out.extend_from_slice(&n.to_le_bytes());
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<()> {
    put_u16(out, s.len())?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(StoreError::Corrupt("record truncated".into())),
        }
    }

    fn u16(&mut self) -> Result<usize> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_le_bytes([b[0], b[1]])))
    }

    fn string(&mut self) -> Result<String> {
        let n = self.u16()?;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| StoreError::Corrupt("record text not UTF-8".into()))
    }
}

fn entry_ref(ns: Namespace, key: &str) -> String {
    format!("e:{}:{key}", ns.as_str())
}

fn family_ref(id: &str) -> String {
    format!("f:{id}")
}

fn index_ref(index: &Index<'_>) -> String {
    match index {
        Index::Family(id) => format!("f:{id}"),
        Index::Session(id) => format!("s:{id}"),
        Index::Subject(id) => format!("u:{id}"),
    }
}

// ---------------------------------------------------------------------------------------------
// transactions
// ---------------------------------------------------------------------------------------------

/// The tables of one write transaction.
struct Tx<'t> {
    items: Table<'t, &'static str, &'static [u8]>,
    index: Table<'t, (&'static str, &'static str), ()>,
    expiry: Table<'t, (u64, &'static str), ()>,
    retired: Table<'t, (&'static str, &'static str), ()>,
}

impl Inner {
    /// Commits a batch of queued operations (see the module docs, *Atomicity*) and answers
    /// every caller. Returns whether the database failed in a way that needs a reopen (an
    /// I/O error, or redb refusing writes after an earlier one).
    fn commit_batch(&self, batch: &mut Vec<Box<dyn Job>>) -> bool {
        loop {
            if batch.is_empty() {
                return false;
            }
            match self.try_batch(batch) {
                Ok(()) => {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    self.committed_ops
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    for job in batch.drain(..) {
                        job.answer(Ok(()));
                    }
                    return false;
                }
                Err(BatchFailure::Op(i, e)) => {
                    // The transaction was aborted: apply the others again, without it.
                    batch.remove(i).answer(Err(e));
                }
                Err(BatchFailure::Db(e)) => {
                    tracing::error!(error = %e, operations = batch.len(),
                        "store write failed; no operation of the batch was applied");
                    for job in batch.drain(..) {
                        job.answer(Err(replicate(&e)));
                    }
                    return matches!(e, StoreError::Io(_) | StoreError::Unavailable(_));
                }
            }
        }
    }

    /// One attempt at a batch: one write transaction, every operation in order, one commit.
    /// On failure the transaction is dropped (aborted) and nothing was applied.
    fn try_batch(&self, batch: &mut [Box<dyn Job>]) -> std::result::Result<(), BatchFailure> {
        let slot = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let Some(db) = slot.as_ref() else {
            return Err(BatchFailure::Db(StoreError::Unavailable(
                "the store could not be reopened after a failed write (disk full?)".into(),
            )));
        };
        let mut tx: WriteTransaction = db.begin_write().map_err(db_failure)?;
        if !batch.iter().any(|j| j.durable()) {
            tx.set_durability(Durability::None).map_err(db_failure)?;
        }
        {
            let mut t = Tx {
                items: tx.open_table(ITEMS).map_err(db_failure)?,
                index: tx.open_table(INDEX).map_err(db_failure)?,
                expiry: tx.open_table(EXPIRY).map_err(db_failure)?,
                retired: tx.open_table(RETIRED).map_err(db_failure)?,
            };
            for (i, job) in batch.iter_mut().enumerate() {
                if let Err(e) = job.apply(&mut t) {
                    return Err(match e {
                        StoreError::Io(_) | StoreError::Backend(_) => BatchFailure::Db(e),
                        e => BatchFailure::Op(i, e),
                    });
                }
            }
        }
        #[cfg(test)]
        if self.fail_next_commit.swap(false, Ordering::SeqCst) {
            return Err(BatchFailure::Db(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "injected: no space left on device",
            ))));
        }
        tx.commit().map_err(db_failure)?;
        Ok(())
    }

    /// Runs `f` in one write transaction and commits it (durably unless `durable` is false).
    fn write<T>(&self, durable: bool, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.with_db(|db| {
            let mut tx: WriteTransaction = db.begin_write().map_err(db_err)?;
            if !durable {
                tx.set_durability(Durability::None).map_err(db_err)?;
            }
            let out = {
                let mut t = Tx {
                    items: tx.open_table(ITEMS).map_err(db_err)?,
                    index: tx.open_table(INDEX).map_err(db_err)?,
                    expiry: tx.open_table(EXPIRY).map_err(db_err)?,
                    retired: tx.open_table(RETIRED).map_err(db_err)?,
                };
                f(&mut t)?
            };
            tx.commit().map_err(db_err)?;
            Ok(out)
        })
    }

    /// Reads one live record in a read transaction.
    fn read_live(&self, item: &str, now: u64) -> Result<Option<Record>> {
        self.with_db(|db| {
            let tx = db.begin_read().map_err(db_err)?;
            let items = tx.open_table(ITEMS).map_err(db_err)?;
            let rec = match items.get(item).map_err(db_err)? {
                Some(v) => Record::decode(v.value())?,
                None => return Ok(None),
            };
            Ok(rec.live(now).then_some(rec))
        })
    }

    fn sweep(&self, now: u64) -> Result<u64> {
        let mut total = 0;
        loop {
            let (removed, more) = self.write(true, |t| {
                let mut due = Vec::new();
                for row in t
                    .expiry
                    .range(..(now.saturating_add(1), ""))
                    .map_err(db_err)?
                {
                    let (k, _) = row.map_err(db_err)?;
                    let (at, item) = k.value();
                    if at > now {
                        break;
                    }
                    due.push((at, item.to_owned()));
                    if due.len() >= SWEEP_BATCH {
                        break;
                    }
                }
                let more = due.len() >= SWEEP_BATCH;
                let mut removed = 0;
                for (at, item) in due {
                    match t.load(&item)? {
                        Some(rec) if !rec.live(now) => {
                            t.remove_item(&item, &rec, false, now)?;
                            removed += 1;
                        }
                        // Re-written with a later expiry: its row was replaced; drop a stale one.
                        _ => {
                            t.expiry.remove((at, item.as_str())).map_err(db_err)?;
                        }
                    }
                }
                Ok((removed, more))
            })?;
            total += removed;
            if !more {
                return Ok(total);
            }
        }
    }
}

impl Tx<'_> {
    fn load(&self, item: &str) -> Result<Option<Record>> {
        match self.items.get(item).map_err(db_err)? {
            Some(v) => Ok(Some(Record::decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Loads a record; an expired one is removed and reported as absent.
    fn load_live(&mut self, item: &str, now: u64) -> Result<Option<Record>> {
        match self.load(item)? {
            Some(rec) if rec.live(now) => Ok(Some(rec)),
            Some(rec) => {
                self.remove_item(item, &rec, false, now)?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    fn store(&mut self, item: &str, rec: &Record) -> Result<()> {
        self.items
            .insert(item, rec.encode()?.as_slice())
            .map_err(db_err)?;
        for i in &rec.index {
            self.index.insert((i.as_str(), item), ()).map_err(db_err)?;
        }
        self.expiry
            .insert((rec.expires_ms, item), ())
            .map_err(db_err)?;
        Ok(())
    }

    /// Removes an item with its index and expiry rows (and a family's retired keys). With
    /// `cascade`, a family also takes the entries tied to it. Returns how many live records
    /// went.
    fn remove_item(&mut self, item: &str, rec: &Record, cascade: bool, now: u64) -> Result<u64> {
        self.items.remove(item).map_err(db_err)?;
        for i in &rec.index {
            self.index.remove((i.as_str(), item)).map_err(db_err)?;
        }
        self.expiry.remove((rec.expires_ms, item)).map_err(db_err)?;
        let mut removed = u64::from(rec.live(now));
        if rec.kind == KIND_FAMILY {
            let id = item.strip_prefix("f:").unwrap_or(item);
            let keys = self.range_pairs_retired(id)?;
            for k in keys {
                self.retired.remove((id, k.as_str())).map_err(db_err)?;
            }
            if cascade {
                removed += self.delete_index(item, now)?;
            }
        }
        Ok(removed)
    }

    fn range_pairs_retired(&self, id: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for row in self.retired.range((id, "")..).map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            let (fam, key) = k.value();
            if fam != id {
                break;
            }
            out.push(key.to_owned());
        }
        Ok(out)
    }

    /// Deletes every item tied to the index ref; returns how many live records went.
    fn delete_index(&mut self, index: &str, now: u64) -> Result<u64> {
        let mut members = Vec::new();
        for row in self.index.range((index, "")..).map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            let (i, item) = k.value();
            if i != index {
                break;
            }
            members.push(item.to_owned());
        }
        let mut removed = 0;
        for item in members {
            match self.load(&item)? {
                Some(rec) => removed += self.remove_item(&item, &rec, true, now)?,
                None => {
                    self.index.remove((index, item.as_str())).map_err(db_err)?;
                }
            }
        }
        Ok(removed)
    }
}

fn expiry(now: u64, ttl: Duration) -> Result<u64> {
    Ok(now.saturating_add(ttl_millis(ttl)?))
}

fn index_refs(index: &[Index<'_>]) -> Vec<String> {
    dedup_index(index).iter().map(index_ref).collect()
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
        ttl: Duration,
        index: &[Index<'_>],
    ) -> Result<()> {
        validate_key("key", key)?;
        validate_index(index)?;
        let now = now_ms();
        let rec = Record {
            kind: KIND_ENTRY,
            expires_ms: expiry(now, ttl)?,
            index: index_refs(index),
            current: String::new(),
            value: value.to_vec(),
        };
        let item = entry_ref(ns, key);
        self.write(true, move |t| {
            if let Some(old) = t.load(&item)? {
                t.remove_item(&item, &old, false, now)?;
            }
            t.store(&item, &rec)
        })
        .await
    }

    async fn insert(&self, ns: Namespace, key: &str, value: &[u8], ttl: Duration) -> Result<bool> {
        validate_key("key", key)?;
        let now = now_ms();
        let rec = Record {
            kind: KIND_ENTRY,
            expires_ms: expiry(now, ttl)?,
            index: Vec::new(),
            current: String::new(),
            value: value.to_vec(),
        };
        let item = entry_ref(ns, key);
        self.write(true, move |t| {
            if t.load_live(&item, now)?.is_some() {
                return Ok(false);
            }
            t.store(&item, &rec)?;
            Ok(true)
        })
        .await
    }

    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>> {
        validate_key("key", key)?;
        let item = entry_ref(ns, key);
        self.run(move |db| Ok(db.read_live(&item, now_ms())?.map(|r| r.value)))
            .await
    }

    async fn consume(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>> {
        validate_key("key", key)?;
        let item = entry_ref(ns, key);
        self.write(true, move |t| {
            let now = now_ms();
            match t.load_live(&item, now)? {
                Some(rec) => {
                    t.remove_item(&item, &rec, false, now)?;
                    Ok(Some(rec.value))
                }
                None => Ok(None),
            }
        })
        .await
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        Ok(self.consume(ns, key).await?.is_some())
    }

    async fn incr(&self, ns: Namespace, key: &str, window: Duration) -> Result<u64> {
        validate_key("key", key)?;
        let window = ttl_millis(window)?;
        let item = entry_ref(ns, key);
        self.write(false, move |t| {
            let now = now_ms();
            {
                let rec = match t.load_live(&item, now)? {
                    Some(mut rec) => {
                        let n = std::str::from_utf8(&rec.value)
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok())
                            .ok_or(StoreError::NotACounter)?;
                        rec.value = n.saturating_add(1).to_string().into_bytes();
                        rec
                    }
                    None => Record {
                        kind: KIND_ENTRY,
                        expires_ms: now.saturating_add(window),
                        index: Vec::new(),
                        current: String::new(),
                        value: b"1".to_vec(),
                    },
                };
                // Same expiry and indexes: rewriting the item row is enough, the others stay.
                t.store(&item, &rec)?;
                let n = std::str::from_utf8(&rec.value)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or(StoreError::NotACounter)?;
                Ok(n)
            }
        })
        .await
    }

    async fn create_family(
        &self,
        family: &str,
        token_key: &str,
        value: &[u8],
        ttl: Duration,
        index: &[Index<'_>],
    ) -> Result<()> {
        validate_family(family, token_key, index)?;
        let now = now_ms();
        let rec = Record {
            kind: KIND_FAMILY,
            expires_ms: expiry(now, ttl)?,
            index: index_refs(index),
            current: token_key.to_owned(),
            value: value.to_vec(),
        };
        let item = family_ref(family);
        self.write(true, move |t| {
            if t.load_live(&item, now)?.is_some() {
                return Err(StoreError::FamilyExists);
            }
            t.store(&item, &rec)
        })
        .await
    }

    async fn family_token(&self, family: &str) -> Result<Option<FamilyToken>> {
        validate_key("family id", family)?;
        let item = family_ref(family);
        self.run(move |db| {
            Ok(db.read_live(&item, now_ms())?.map(|r| FamilyToken {
                key: r.current,
                value: r.value,
            }))
        })
        .await
    }

    async fn rotate(
        &self,
        family: &str,
        presented: &str,
        new_key: &str,
        new_value: &[u8],
        ttl: Duration,
    ) -> Result<Rotation> {
        validate_key("family id", family)?;
        validate_key("token key", presented)?;
        validate_key("token key", new_key)?;
        if presented == new_key {
            return Err(StoreError::InvalidArgument(
                "the new token key must differ from the presented one",
            ));
        }
        let ttl = ttl_millis(ttl)?;
        let item = family_ref(family);
        let id = family.to_owned();
        let (presented, new_key, new_value) =
            (presented.to_owned(), new_key.to_owned(), new_value.to_vec());
        self.write(true, move |t| {
            let now = now_ms();
            {
                let Some(mut rec) = t.load_live(&item, now)? else {
                    return Ok(Rotation::Unknown);
                };
                if rec.current == presented {
                    t.expiry
                        .remove((rec.expires_ms, item.as_str()))
                        .map_err(db_err)?;
                    // Cloned, not moved: a retried batch applies this operation again.
                    let old_value = std::mem::replace(&mut rec.value, new_value.clone());
                    rec.current.clone_from(&new_key);
                    rec.expires_ms = now.saturating_add(ttl);
                    t.store(&item, &rec)?;
                    t.retired
                        .insert((id.as_str(), presented.as_str()), ())
                        .map_err(db_err)?;
                    return Ok(Rotation::Rotated { old_value });
                }
                let reused = t
                    .retired
                    .get((id.as_str(), presented.as_str()))
                    .map_err(db_err)?
                    .is_some();
                if reused {
                    t.remove_item(&item, &rec, true, now)?;
                    Ok(Rotation::Reused)
                } else {
                    Ok(Rotation::Unknown)
                }
            }
        })
        .await
    }

    async fn delete_family(&self, family: &str) -> Result<u64> {
        validate_key("family id", family)?;
        let item = family_ref(family);
        self.write(true, move |t| {
            let now = now_ms();
            match t.load(&item)? {
                Some(rec) => t.remove_item(&item, &rec, true, now),
                // Gone (or never there): entries tied to it may still be.
                None => t.delete_index(&item, now),
            }
        })
        .await
    }

    async fn entries_by(&self, index: Index<'_>, ns: Namespace) -> Result<Vec<(String, Vec<u8>)>> {
        validate_index(&[index])?;
        let index = index_ref(&index);
        let prefix = entry_ref(ns, "");
        self.run(move |inner| inner.with_db(|db| entries_by(db, &index, &prefix)))
            .await
    }

    async fn delete_by(&self, index: Index<'_>) -> Result<u64> {
        validate_index(&[index])?;
        let index = index_ref(&index);
        self.write(true, move |t| t.delete_index(&index, now_ms()))
            .await
    }
}

/// The live entries under `prefix` tied to the index ref `index` (at most
/// [`crate::MAX_LISTED`]), in one read transaction.
fn entries_by(db: &Database, index: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let now = now_ms();
    let tx = db.begin_read().map_err(db_err)?;
    let idx = tx.open_table(INDEX).map_err(db_err)?;
    let items = tx.open_table(ITEMS).map_err(db_err)?;
    let mut out = Vec::new();
    for row in idx.range((index, prefix)..).map_err(db_err)? {
        let (k, _) = row.map_err(db_err)?;
        let (i, item) = k.value();
        let Some(key) = item.strip_prefix(prefix).filter(|_| i == index) else {
            break;
        };
        if let Some(v) = items.get(item).map_err(db_err)? {
            let rec = Record::decode(v.value())?;
            if rec.live(now) {
                out.push((key.to_owned(), rec.value));
                if out.len() == crate::MAX_LISTED {
                    break;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{self, DynStore};
    use redb::ReadableTableMetadata;

    async fn open(dir: &Path) -> DynStore {
        Arc::new(
            EmbeddedStore::open(dir)
                .await
                .unwrap_or_else(|e| panic!("open {}: {e}", dir.display())),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn contract_suite() {
        let dirs = std::sync::Mutex::new(Vec::new());
        contract::run_all(|| async {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
            let store = open(dir.path()).await;
            dirs.lock().unwrap_or_else(|e| e.into_inner()).push(dir);
            store
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn contract_restart() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().to_path_buf();
        let store = open(&path).await;
        contract::restart(store, move |old| {
            let path = path.clone();
            async move {
                drop(old);
                open(&path).await
            }
        })
        .await;
    }

    #[test]
    fn records_round_trip() {
        for rec in [
            Record {
                kind: KIND_ENTRY,
                expires_ms: 42,
                index: vec![],
                current: String::new(),
                value: vec![],
            },
            Record {
                kind: KIND_FAMILY,
                expires_ms: u64::MAX,
                index: vec!["s:abc".into(), "u:alice".into()],
                current: "tok".into(),
                value: vec![0, 1, 2, 255],
            },
        ] {
            let bytes = rec.encode().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(Record::decode(&bytes).ok(), Some(rec.clone()));
            // Every strict prefix that cuts the header is corrupt, never a silent miss.
            let header = bytes.len() - rec.value.len();
            for cut in 0..header {
                assert!(
                    matches!(Record::decode(&bytes[..cut]), Err(StoreError::Corrupt(_))),
                    "cut at {cut}"
                );
            }
        }
        assert!(matches!(
            Record::decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sweeper_removes_expired_items() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let store = EmbeddedStore::open_with(
            dir.path(),
            EmbeddedConfig {
                sweep_interval: Duration::from_millis(50),
                ..EmbeddedConfig::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("open: {e}"));
        let short = Duration::from_millis(200);
        let long = Duration::from_secs(60);
        for i in 0..50 {
            let key = format!("k{i}");
            let ttl = if i % 2 == 0 { short } else { long };
            store
                .put(Namespace::Session, &key, b"v", ttl, &[Index::Subject("u")])
                .await
                .unwrap_or_else(|e| panic!("put: {e}"));
        }
        store
            .create_family("fam", "t0", b"v", short, &[Index::Subject("u")])
            .await
            .unwrap_or_else(|e| panic!("create_family: {e}"));
        store
            .rotate("fam", "t0", "t1", b"v", short)
            .await
            .unwrap_or_else(|e| panic!("rotate: {e}"));
        // The background sweeper (every 50 ms) empties the expiry queue of the short ones.
        let inner = store.inner.clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (items, index, expiry, retired) = {
                let inner = inner.clone();
                blocking(move || {
                    inner.with_db(|db| {
                        let tx = db.begin_read().map_err(db_err)?;
                        Ok((
                            tx.open_table(ITEMS)
                                .map_err(db_err)?
                                .len()
                                .map_err(db_err)?,
                            tx.open_table(INDEX)
                                .map_err(db_err)?
                                .len()
                                .map_err(db_err)?,
                            tx.open_table(EXPIRY)
                                .map_err(db_err)?
                                .len()
                                .map_err(db_err)?,
                            tx.open_table(RETIRED)
                                .map_err(db_err)?
                                .len()
                                .map_err(db_err)?,
                        ))
                    })
                })
                .await
                .unwrap_or_else(|e| panic!("count: {e}"))
            };
            if (items, index, expiry, retired) == (25, 25, 25, 0) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sweeper left items={items} index={index} expiry={expiry} retired={retired}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(store.sweep().await.ok(), Some(0));
        assert_eq!(
            store.delete_by_subject("u").await.ok(),
            Some(25),
            "the long-lived entries are still indexed"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn second_open_of_one_directory_fails_clearly() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let _first = EmbeddedStore::open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("open: {e}"));
        let started = std::time::Instant::now();
        match EmbeddedStore::open(dir.path()).await {
            Err(StoreError::Config(m)) => assert!(m.contains("already open"), "{m}"),
            other => panic!("second open: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(15));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupt_record_is_an_error_not_a_miss() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let store = EmbeddedStore::open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("open: {e}"));
        let inner = store.inner.clone();
        blocking(move || {
            inner.write(true, |t| {
                t.items
                    .insert("e:code:bad", &[KIND_ENTRY, 1, 2][..])
                    .map_err(db_err)?;
                Ok(())
            })
        })
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
        for result in [
            store.get(Namespace::AuthorizationCode, "bad").await,
            store.consume(Namespace::AuthorizationCode, "bad").await,
        ] {
            assert!(matches!(result, Err(StoreError::Corrupt(_))), "{result:?}");
        }
    }

    /// A store whose writer is held at its gate: operations queued now form one batch once
    /// [`Gated::release`] is called.
    struct Gated {
        store: Arc<EmbeddedStore>,
        _dir: tempfile::TempDir,
    }

    impl Gated {
        async fn open() -> Gated {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
            let store = EmbeddedStore::open(dir.path())
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            Gated {
                store: Arc::new(store),
                _dir: dir,
            }
        }

        /// Waits until `n` operations in all were handed to the writer.
        async fn queued(&self, n: u64) {
            while self.store.inner.queued_ops.load(Ordering::SeqCst) < n {
                tokio::task::yield_now().await;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_inserts_of_one_key_share_one_commit_and_one_wins() {
        let g = Gated::open().await;
        let gate = g.store.inner.gate.lock().await;
        let n = 64;
        let mut tasks = Vec::new();
        for i in 0..n {
            let store = g.store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .insert(
                        Namespace::ReplayGuard,
                        "jti-1",
                        format!("v{i}").as_bytes(),
                        Duration::from_secs(60),
                    )
                    .await
            }));
        }
        g.queued(n).await;
        drop(gate);
        let mut winners = 0;
        for t in tasks {
            match t.await {
                Ok(Ok(true)) => winners += 1,
                Ok(Ok(false)) => {}
                other => panic!("insert: {other:?}"),
            }
        }
        assert_eq!(winners, 1, "exactly one insert of the key succeeds");
        assert_eq!(
            g.store.commit_stats(),
            CommitStats {
                commits: 1,
                operations: n
            },
            "the {n} inserts were one batch, one commit"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_applies_its_operations_in_queue_order() {
        let g = Gated::open().await;
        let ttl = Duration::from_secs(60);
        g.store
            .create_family("fam", "t0", b"v0", ttl, &[])
            .await
            .unwrap_or_else(|e| panic!("create_family: {e}"));
        let gate = g.store.inner.gate.lock().await;
        let s = g.store.clone();
        let put = tokio::spawn(async move {
            s.put(Namespace::AuthorizationCode, "c", b"code", ttl, &[])
                .await
        });
        g.queued(2).await;
        let s = g.store.clone();
        let consume =
            tokio::spawn(async move { s.consume(Namespace::AuthorizationCode, "c").await });
        g.queued(3).await;
        let s = g.store.clone();
        let consume_again =
            tokio::spawn(async move { s.consume(Namespace::AuthorizationCode, "c").await });
        g.queued(4).await;
        // Two clients present the same refresh token at once: one rotation wins, the other
        // is reuse and revokes the family.
        let s = g.store.clone();
        let first = tokio::spawn(async move { s.rotate("fam", "t0", "t1", b"v1", ttl).await });
        g.queued(5).await;
        let s = g.store.clone();
        let second = tokio::spawn(async move { s.rotate("fam", "t0", "t2", b"v2", ttl).await });
        g.queued(6).await;
        drop(gate);
        assert_eq!(put.await.ok().and_then(|r| r.ok()), Some(()));
        assert_eq!(
            consume.await.ok().and_then(|r| r.ok()),
            Some(Some(b"code".to_vec())),
            "the consume sees the put queued before it in the same batch"
        );
        assert_eq!(consume_again.await.ok().and_then(|r| r.ok()), Some(None));
        assert_eq!(
            first.await.ok().and_then(|r| r.ok()),
            Some(Rotation::Rotated {
                old_value: b"v0".to_vec()
            })
        );
        assert_eq!(
            second.await.ok().and_then(|r| r.ok()),
            Some(Rotation::Reused)
        );
        assert_eq!(g.store.family_token("fam").await.ok(), Some(None));
        let stats = g.store.commit_stats();
        assert_eq!((stats.commits, stats.operations), (2, 6), "{stats:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_operation_that_fails_alone_fails_alone() {
        let g = Gated::open().await;
        let ttl = Duration::from_secs(60);
        g.store
            .create_family("fam", "t0", b"v0", ttl, &[])
            .await
            .unwrap_or_else(|e| panic!("create_family: {e}"));
        g.store
            .put(Namespace::RateLimit, "text", b"not a number", ttl, &[])
            .await
            .unwrap_or_else(|e| panic!("put: {e}"));
        let gate = g.store.inner.gate.lock().await;
        let s = g.store.clone();
        let a = tokio::spawn(async move { s.put(Namespace::Session, "a", b"A", ttl, &[]).await });
        g.queued(3).await;
        let s = g.store.clone();
        let dup = tokio::spawn(async move {
            s.create_family("fam", "x0", b"other", ttl, &[Index::Subject("u")])
                .await
        });
        g.queued(4).await;
        let s = g.store.clone();
        let bad = tokio::spawn(async move {
            s.incr(Namespace::RateLimit, "text", Duration::from_secs(1))
                .await
        });
        g.queued(5).await;
        let s = g.store.clone();
        let b = tokio::spawn(async move { s.put(Namespace::Session, "b", b"B", ttl, &[]).await });
        g.queued(6).await;
        drop(gate);
        assert!(matches!(a.await, Ok(Ok(()))));
        assert!(matches!(dup.await, Ok(Err(StoreError::FamilyExists))));
        assert!(matches!(bad.await, Ok(Err(StoreError::NotACounter))));
        assert!(matches!(b.await, Ok(Ok(()))));
        assert_eq!(
            g.store.get(Namespace::Session, "a").await.ok(),
            Some(Some(b"A".to_vec()))
        );
        assert_eq!(
            g.store.get(Namespace::Session, "b").await.ok(),
            Some(Some(b"B".to_vec()))
        );
        assert_eq!(
            g.store.family_token("fam").await.ok(),
            Some(Some(FamilyToken {
                key: "t0".into(),
                value: b"v0".to_vec()
            })),
            "the refused create_family left the family as it was"
        );
        assert_eq!(
            g.store
                .entries_by(Index::Subject("u"), Namespace::Session)
                .await
                .ok(),
            Some(vec![])
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_commit_acknowledges_nobody() {
        let g = Gated::open().await;
        let ttl = Duration::from_secs(60);
        g.store
            .put(Namespace::AuthorizationCode, "old", b"o", ttl, &[])
            .await
            .unwrap_or_else(|e| panic!("put: {e}"));
        let gate = g.store.inner.gate.lock().await;
        g.store.inner.fail_next_commit.store(true, Ordering::SeqCst);
        let mut tasks = Vec::new();
        for i in 0..16 {
            let s = g.store.clone();
            tasks.push(tokio::spawn(async move {
                s.put(Namespace::Session, &format!("k{i}"), b"v", ttl, &[])
                    .await
            }));
        }
        g.queued(17).await;
        let s = g.store.clone();
        let consume =
            tokio::spawn(async move { s.consume(Namespace::AuthorizationCode, "old").await });
        g.queued(18).await;
        drop(gate);
        for t in tasks {
            match t.await {
                Ok(Err(StoreError::Io(e))) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::StorageFull)
                }
                other => panic!("put in a failed batch: {other:?}"),
            }
        }
        assert!(matches!(consume.await, Ok(Err(StoreError::Io(_)))));
        for i in 0..16 {
            let got = g.store.get(Namespace::Session, &format!("k{i}")).await;
            assert!(matches!(got, Ok(None)), "k{i}: {got:?}");
        }
        // Writes are refused until the writer has reopened the store (within a second: the
        // disk has room).
        let deadline = Instant::now() + Duration::from_secs(20);
        let consumed = loop {
            match g.store.consume(Namespace::AuthorizationCode, "old").await {
                Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => break other,
            }
        };
        assert_eq!(
            consumed.ok(),
            Some(Some(b"o".to_vec())),
            "the consumption in the failed batch did not happen"
        );
        assert_eq!(g.store.commit_stats().operations, 2);
        assert_eq!(g.store.reopens(), 1);
    }

    #[test]
    fn a_store_stopped_by_an_earlier_io_error_is_unavailable() {
        // A full disk: the failing commit is `Io` (503 at the endpoints), and every later
        // write, refused by redb until the file is reopened, is `Unavailable` (503 as well),
        // never `Backend` (500).
        assert!(matches!(
            db_err(redb::Error::Io(std::io::Error::from(
                std::io::ErrorKind::StorageFull
            ))),
            StoreError::Io(_)
        ));
        assert!(matches!(
            db_err(redb::Error::PreviousIo),
            StoreError::Unavailable(_)
        ));
    }

    /// A disk that fills up, for [`EmbeddedStore::start`]: the store's file behind a backend
    /// whose writes fail with `StorageFull` while `full` is set (as a full file system
    /// fails them), and the free space the reopen check sees.
    #[derive(Debug, Default)]
    pub(super) struct Disk {
        pub(super) full: std::sync::atomic::AtomicBool,
    }

    impl Disk {
        pub(super) fn free(&self) -> u64 {
            if self.full.load(Ordering::SeqCst) {
                0
            } else {
                1 << 30
            }
        }

        pub(super) fn create(
            self: &Arc<Self>,
            builder: &redb::Builder,
            path: &Path,
        ) -> std::result::Result<Database, redb::DatabaseError> {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            builder.create_with_backend(FullableBackend {
                file: redb::backends::FileBackend::new(file)?,
                disk: self.clone(),
            })
        }
    }

    #[derive(Debug)]
    struct FullableBackend {
        file: redb::backends::FileBackend,
        disk: Arc<Disk>,
    }

    impl redb::StorageBackend for FullableBackend {
        fn len(&self) -> std::io::Result<u64> {
            self.file.len()
        }

        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.file.read(offset, out)
        }

        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.file.set_len(len)
        }

        fn sync_data(&self) -> std::io::Result<()> {
            self.file.sync_data()
        }

        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            if self.disk.full.load(Ordering::SeqCst) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "test: no space left on device",
                ));
            }
            self.file.write(offset, data)
        }

        fn close(&self) -> std::io::Result<()> {
            self.file.close()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_stopped_by_a_full_disk_reopens_once_the_disk_has_room() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let disk = Arc::new(Disk::default());
        let interval = Duration::from_millis(20);
        let store = EmbeddedStore::start(
            dir.path(),
            EmbeddedConfig {
                reopen_interval: interval,
                ..EmbeddedConfig::default()
            },
            Some(disk.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("open: {e}"));
        let ttl = Duration::from_secs(60);
        store
            .create_family("fam", "t0", b"v0", ttl, &[])
            .await
            .unwrap_or_else(|e| panic!("create_family: {e}"));
        store
            .put(Namespace::AuthorizationCode, "code", b"c", ttl, &[])
            .await
            .unwrap_or_else(|e| panic!("put: {e}"));

        disk.full.store(true, Ordering::SeqCst);
        // The write that meets the full disk fails with its I/O error; redb then refuses
        // every write (PreviousIo), and the store is not reopened while the disk stays full,
        // however many reopen intervals go by.
        match store.rotate("fam", "t0", "t1", b"v1", ttl).await {
            Err(StoreError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::StorageFull),
            other => panic!("rotation on a full disk: {other:?}"),
        }
        let full_since = Instant::now();
        while full_since.elapsed() < interval * 5 {
            let r = store.put(Namespace::Session, "s", b"s", ttl, &[]).await;
            assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
            tokio::time::sleep(interval / 4).await;
        }
        assert_eq!(store.reopens(), 0, "never reopened while the disk is full");

        // Room again: the writer reopens the file (redb repairs it) and writes succeed,
        // without a restart.
        disk.full.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match store.put(Namespace::Session, "s", b"s", ttl, &[]).await {
                Ok(()) => break,
                Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(interval / 4).await;
                }
                other => panic!("write once the disk has room: {other:?}"),
            }
        }
        assert_eq!(store.reopens(), 1);
        assert_eq!(
            store.get(Namespace::Session, "s").await.ok(),
            Some(Some(b"s".to_vec()))
        );
        // Nothing acknowledged was lost and nothing failed half-happened: the rotation that
        // met the full disk did not use the token up.
        assert_eq!(
            store.family_token("fam").await.ok(),
            Some(Some(FamilyToken {
                key: "t0".into(),
                value: b"v0".to_vec()
            }))
        );
        assert_eq!(
            store.rotate("fam", "t0", "t1", b"v1", ttl).await.ok(),
            Some(Rotation::Rotated {
                old_value: b"v0".to_vec()
            })
        );
        assert_eq!(
            store
                .consume(Namespace::AuthorizationCode, "code")
                .await
                .ok(),
            Some(Some(b"c".to_vec()))
        );
        // And the reopened file opens again after a restart.
        drop(store);
        let store = EmbeddedStore::open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("reopen: {e}"));
        assert_eq!(
            store.family_token("fam").await.ok(),
            Some(Some(FamilyToken {
                key: "t1".into(),
                value: b"v1".to_vec()
            }))
        );
    }
}
