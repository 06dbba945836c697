//! [`RedbKv`]: a [`ProjectionKv`] in one redb file of the data directory, for the
//! all-in-one node.
//!
//! Two tables: `entries` (key → `tag | seq | value`, see [`Entry`]) and `meta`
//! (`applied_seq`, `format`). Every `apply` is one write transaction (redb serializes
//! writers, so the compare and the write are atomic) committed without fsync; raising the
//! watermark commits with fsync, which makes every earlier `apply` durable too (redb persists
//! non-durable commits with the next durable one). A crash therefore loses at most applies
//! after the watermark, which the node applies again when it resumes from the watermark.
//!
//! Only one process may open the file at a time; a second open fails with a clear message.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{validate_apply, validate_key, Entry, KvError, ProjectionKv, Result};
use crate::Seq;

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const APPLIED_SEQ: &str = "applied_seq";
const FORMAT_KEY: &str = "format";
const FORMAT: u64 = 1;

/// The embedded [`ProjectionKv`]; see the [module documentation](self).
#[derive(Clone)]
pub struct RedbKv {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbKv")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn db_err(e: impl Into<redb::Error>) -> KvError {
    match e.into() {
        redb::Error::Io(e) => KvError::Io(e),
        redb::Error::Corrupted(m) => KvError::Corrupt(m),
        other => KvError::Backend(other.to_string()),
    }
}

impl RedbKv {
    /// Opens (or creates) the redb file at `path`, creating its directory.
    pub async fn open(path: &Path) -> Result<RedbKv> {
        let path = path.to_path_buf();
        let inner = blocking(move || open_db(path)).await?;
        Ok(RedbKv {
            inner: Arc::new(inner),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking(move || f(&inner.db)).await
    }
}

async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(KvError::Backend(format!(
            "projection store task failed: {e}"
        ))),
    }
}

fn open_db(path: PathBuf) -> Result<Inner> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A store dropped a moment ago may still be closing on a blocking thread: give it a
    // little time before calling the file taken.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let db = loop {
        match Database::create(&path) {
            Ok(db) => break db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(KvError::Backend(format!(
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
        let format = meta.get(FORMAT_KEY).map_err(db_err)?.map(|v| v.value());
        match format {
            None => {
                meta.insert(FORMAT_KEY, FORMAT).map_err(db_err)?;
            }
            Some(FORMAT) => {}
            Some(other) => {
                return Err(KvError::Corrupt(format!(
                    "{}: unknown format {other} (this version reads format {FORMAT})",
                    path.display()
                )))
            }
        }
        tx.open_table(ENTRIES).map_err(db_err)?;
    }
    tx.commit().map_err(db_err)?;
    Ok(Inner { db, path })
}

#[async_trait]
impl ProjectionKv for RedbKv {
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Seq)>> {
        validate_key(key)?;
        let key = key.to_owned();
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(ENTRIES).map_err(db_err)?;
            let Some(raw) = table.get(key.as_str()).map_err(db_err)? else {
                return Ok(None);
            };
            let entry = Entry::decode(&key, raw.value())?;
            Ok(entry.value.map(|v| (v, entry.seq)))
        })
        .await
    }

    async fn apply(&self, key: &str, value: Option<&[u8]>, seq: Seq) -> Result<bool> {
        validate_apply(key, value, seq)?;
        let key = key.to_owned();
        let encoded = Entry::encode(seq, value);
        self.run(move |db| {
            let mut tx = db.begin_write().map_err(db_err)?;
            tx.set_durability(Durability::None)
                .map_err(|e| KvError::Backend(e.to_string()))?;
            let wrote = {
                let mut table = tx.open_table(ENTRIES).map_err(db_err)?;
                let stored = match table.get(key.as_str()).map_err(db_err)? {
                    Some(raw) => Some(Entry::decode(&key, raw.value())?.seq),
                    None => None,
                };
                if stored.is_some_and(|s| s >= seq) {
                    false
                } else {
                    table
                        .insert(key.as_str(), encoded.as_slice())
                        .map_err(db_err)?;
                    true
                }
            };
            if wrote {
                tx.commit().map_err(db_err)?;
            } else {
                tx.abort().map_err(db_err)?;
            }
            Ok(wrote)
        })
        .await
    }

    async fn applied_seq(&self) -> Result<Seq> {
        self.run(|db| {
            let tx = db.begin_read().map_err(db_err)?;
            let meta = tx.open_table(META).map_err(db_err)?;
            Ok(meta
                .get(APPLIED_SEQ)
                .map_err(db_err)?
                .map_or(0, |v| v.value()))
        })
        .await
    }

    async fn set_applied_seq(&self, seq: Seq) -> Result<()> {
        self.run(move |db| {
            // Durable (the default): it also makes every earlier non-durable apply durable.
            let tx = db.begin_write().map_err(db_err)?;
            {
                let mut meta = tx.open_table(META).map_err(db_err)?;
                let current = meta
                    .get(APPLIED_SEQ)
                    .map_err(db_err)?
                    .map_or(0, |v| v.value());
                if seq > current {
                    meta.insert(APPLIED_SEQ, seq).map_err(db_err)?;
                }
            }
            tx.commit().map_err(db_err)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::contract;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn contract_suite() {
        let dir = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicUsize::new(0);
        contract::run_all(|| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.path().join(format!("kv-{i}.redb"));
            async move {
                let kv: contract::DynKv = Arc::new(RedbKv::open(&path).await.unwrap());
                kv
            }
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restart_keeps_values_and_the_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("users.redb");
        contract::restart(|| {
            let path = path.clone();
            async move {
                let kv: contract::DynKv = Arc::new(RedbKv::open(&path).await.unwrap());
                kv
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_second_open_of_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.redb");
        let _first = RedbKv::open(&path).await.unwrap();
        let second = RedbKv::open(&path).await.unwrap_err();
        assert!(second.to_string().contains("already open"), "{second}");
    }
}
