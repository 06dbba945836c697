//! [`RedbQueue`]: a [`WorkQueue`] in one redb file of the data directory, for the
//! all-in-one node (one process per data directory).
//!
//! One table, `jobs`: id (u64, rising) → `due (u64 ms since the epoch, big endian) |
//! attempts (u32 big endian) | payload`. A push commits with fsync. A pull picks the job
//! due first, raises its attempt count (committed without fsync: a crash may hand the job
//! out once more under the same number) and leases it in memory; `retry` moves its due
//! time, `ack` and `give_up` delete it. After a restart every job is available again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::Notify;

use super::{check_payload, Job, QueueError, Result, Settle, WorkQueue};

const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
const HEADER: usize = 12;

/// The embedded [`WorkQueue`]; see the [module documentation](self).
#[derive(Clone)]
pub struct RedbQueue {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    /// Jobs handed out and not settled, until when.
    leased: Mutex<HashMap<u64, Instant>>,
    lease: Duration,
    /// Woken by a push or a retry.
    changed: Notify,
}

impl std::fmt::Debug for RedbQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbQueue")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn db_err(e: impl Into<redb::Error>) -> QueueError {
    match e.into() {
        redb::Error::Io(e) => QueueError::Io(e),
        redb::Error::Corrupted(m) => QueueError::Corrupt(m),
        other => QueueError::Backend(other.to_string()),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn encode(due: u64, attempts: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&due.to_be_bytes());
    out.extend_from_slice(&attempts.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn decode(id: u64, bytes: &[u8]) -> Result<(u64, u32, &[u8])> {
    if bytes.len() < HEADER {
        return Err(QueueError::Corrupt(format!(
            "job {id}: shorter than its header"
        )));
    }
    let due = u64::from_be_bytes(bytes[..8].try_into().unwrap_or_default());
    let attempts = u32::from_be_bytes(bytes[8..12].try_into().unwrap_or_default());
    Ok((due, attempts, &bytes[HEADER..]))
}

async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(QueueError::Backend(format!("queue task failed: {e}"))),
    }
}

/// What a pull found: a job taken, or when the next one is due.
enum Found {
    Taken(u64, u32, Vec<u8>),
    NextDue(Option<u64>),
}

impl RedbQueue {
    /// Opens (or creates) the queue file at `path`; a job handed out and not settled within
    /// `lease` is handed out again.
    pub async fn open(path: &Path, lease: Duration) -> Result<RedbQueue> {
        let path = path.to_path_buf();
        let p = path.clone();
        let db = blocking(move || {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let db = Database::create(&p).map_err(db_err)?;
            let tx = db.begin_write().map_err(db_err)?;
            tx.open_table(JOBS).map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(db)
        })
        .await?;
        Ok(RedbQueue {
            inner: Arc::new(Inner {
                db,
                path,
                leased: Mutex::new(HashMap::new()),
                lease,
                changed: Notify::new(),
            }),
        })
    }

    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking(move || f(&inner)).await
    }

    /// Takes the job due first, if one is due now and not leased. Looks in a read
    /// transaction; writes (the attempt count) only when it takes one.
    fn take(inner: &Inner) -> Result<Found> {
        let now = now_ms();
        let instant = Instant::now();
        let mut leased = inner.leased.lock().unwrap_or_else(|e| e.into_inner());
        leased.retain(|_, until| *until > instant);
        let best = {
            let tx = inner.db.begin_read().map_err(db_err)?;
            let table = tx.open_table(JOBS).map_err(db_err)?;
            let mut best: Option<(u64, u64)> = None;
            for row in table.iter().map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                let id = k.value();
                if leased.contains_key(&id) {
                    continue;
                }
                let (due, _, _) = decode(id, v.value())?;
                if best.is_none_or(|(d, _)| due < d) {
                    best = Some((due, id));
                }
            }
            best
        };
        let id = match best {
            Some((due, id)) if due <= now => id,
            Some((due, _)) => return Ok(Found::NextDue(Some(due))),
            None => return Ok(Found::NextDue(None)),
        };
        let mut tx = inner.db.begin_write().map_err(db_err)?;
        tx.set_durability(Durability::None).map_err(db_err)?;
        let found = {
            let mut table = tx.open_table(JOBS).map_err(db_err)?;
            let bytes = table.get(id).map_err(db_err)?.map(|v| v.value().to_vec());
            match bytes {
                // Settled meanwhile (only this process writes, so not expected).
                None => Found::NextDue(None),
                Some(bytes) => {
                    let (due, attempts, payload) = decode(id, &bytes)?;
                    let attempt = attempts.saturating_add(1);
                    table
                        .insert(id, encode(due, attempt, payload).as_slice())
                        .map_err(db_err)?;
                    leased.insert(id, instant + inner.lease);
                    Found::Taken(id, attempt, payload.to_vec())
                }
            }
        };
        tx.commit().map_err(db_err)?;
        Ok(found)
    }
}

#[async_trait]
impl WorkQueue for RedbQueue {
    async fn push(&self, payload: &[u8]) -> Result<()> {
        check_payload(payload)?;
        let payload = payload.to_vec();
        self.run(move |inner| {
            let tx = inner.db.begin_write().map_err(db_err)?;
            {
                let mut table = tx.open_table(JOBS).map_err(db_err)?;
                let next = table
                    .last()
                    .map_err(db_err)?
                    .map_or(1, |(k, _)| k.value() + 1);
                table
                    .insert(next, encode(now_ms(), 0, &payload).as_slice())
                    .map_err(db_err)?;
            }
            tx.commit().map_err(db_err)?;
            Ok(())
        })
        .await?;
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn pull(&self, wait: Duration) -> Result<Option<Job>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a push in between is not missed.
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.run(Self::take).await? {
                Found::Taken(id, attempt, payload) => {
                    let settle = RedbSettle {
                        queue: self.clone(),
                        id,
                    };
                    return Ok(Some(Job::new(payload, attempt, Box::new(settle))));
                }
                Found::NextDue(next) => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Ok(None);
                    }
                    // Wake for the next due job, a lease running out, or a change.
                    let mut until = deadline.min(now + Duration::from_millis(500));
                    if let Some(due) = next {
                        let ms = due.saturating_sub(now_ms());
                        until = until.min(now + Duration::from_millis(ms));
                    }
                    tokio::select! {
                        () = &mut changed => {}
                        () = tokio::time::sleep_until(until) => {}
                    }
                }
            }
        }
    }
}

struct RedbSettle {
    queue: RedbQueue,
    id: u64,
}

impl RedbSettle {
    async fn finish(self, delay: Option<Duration>) -> Result<()> {
        let id = self.id;
        self.queue
            .run(move |inner| {
                let tx = inner.db.begin_write().map_err(db_err)?;
                {
                    let mut table = tx.open_table(JOBS).map_err(db_err)?;
                    match delay {
                        None => {
                            table.remove(id).map_err(db_err)?;
                        }
                        Some(delay) => {
                            let bytes = table.get(id).map_err(db_err)?.map(|v| v.value().to_vec());
                            if let Some(bytes) = bytes {
                                let (_, attempts, payload) = decode(id, &bytes)?;
                                let due = now_ms() + delay.as_millis() as u64;
                                table
                                    .insert(id, encode(due, attempts, payload).as_slice())
                                    .map_err(db_err)?;
                            }
                        }
                    }
                }
                tx.commit().map_err(db_err)?;
                inner
                    .leased
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                Ok(())
            })
            .await?;
        self.queue.inner.changed.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl Settle for RedbSettle {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.finish(None).await
    }

    async fn retry(self: Box<Self>, delay: Duration) -> Result<()> {
        self.finish(Some(delay)).await
    }

    async fn give_up(self: Box<Self>) -> Result<()> {
        self.finish(None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn contract() {
        let dir = tempfile::tempdir().unwrap();
        let q = RedbQueue::open(&dir.path().join("q.redb"), Duration::from_secs(30))
            .await
            .unwrap();
        super::super::contract::run_all(Arc::new(q)).await;
        let q = RedbQueue::open(&dir.path().join("lease.redb"), Duration::from_millis(300))
            .await
            .unwrap();
        super::super::contract::unsettled_jobs_come_back(Arc::new(q), Duration::from_millis(300))
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        {
            let q = RedbQueue::open(&path, Duration::from_secs(30))
                .await
                .unwrap();
            q.push(b"a").await.unwrap();
            q.push(b"b").await.unwrap();
            let job = q.pull(Duration::from_secs(1)).await.unwrap().unwrap();
            assert_eq!(job.payload, b"a");
            // The node dies with `a` taken and unsettled.
        }
        let q = RedbQueue::open(&path, Duration::from_secs(30))
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(job) = q.pull(Duration::from_millis(200)).await.unwrap() {
            got.push((job.payload.clone(), job.attempt));
            job.ack().await.unwrap();
        }
        assert_eq!(got, vec![(b"a".to_vec(), 2), (b"b".to_vec(), 1)]);
    }
}
