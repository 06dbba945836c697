//! Revocations at an issuer node: publishing them durably, and the node's in-memory
//! [`RevocationSet`] that the token, userinfo and introspection endpoints consult.
//!
//! - Cluster: the JetStream stream `SIGNET_REVOCATIONS` (subjects `signet.revocations.>`,
//!   kept [`RETENTION`], longer than any token lives). A revocation is answered only once
//!   JetStream acknowledged it; every node (and every subscribed resource server) follows
//!   the stream from its start, so a node that starts late misses nothing.
//! - `serve`: an append-only file `<data-dir>/revocations.jsonl`, fsynced before the
//!   revocation is acknowledged, read back at start (entries past their `exp` are dropped
//!   and the file rewritten). While the node runs, a maintenance task
//!   ([`Revocations::spawn_maintenance`]) drops expired entries from the in-memory set every
//!   [`MAINTENANCE_EVERY`] and compacts the file ([`Revocations::compact`]) once it holds at
//!   least [`COMPACT_MIN_ENTRIES`] lines and more than twice the live entries, so neither
//!   grows without bound.
//!
//! # Compaction
//!
//! Appends are never blocked for the bulk of the work and never lost:
//! 1. holding the append lock, note the file's length (every line before it is complete);
//! 2. without the lock, copy the live entries of that prefix into `revocations.jsonl.tmp`;
//! 3. holding the append lock, copy the lines appended meanwhile verbatim after them, fsync
//!    the temp file, rename it over `revocations.jsonl`, fsync the directory.
//!
//! A crash before the rename leaves the old file whole (the temp file is overwritten by the
//! next compaction); after it, the new file holds every live entry. Appends open the file by
//! name, so the next append after the rename goes to the new file.
//!
//! The wire format is `signet_verify::revocation` (public; resource servers decode it).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use signet_verify::revocation::{Revocation, RevocationSet, TokenFacts, STREAM, SUBJECT_PREFIX};

/// How long the stream keeps revocations: longer than the longest token lifetime a client
/// may configure by default (30 days for refresh tokens), plus a day.
pub const RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);

/// The embedded file is compacted only once it holds at least this many lines...
pub const COMPACT_MIN_ENTRIES: u64 = 10_000;
/// ... and more than this many times the live entries.
pub const COMPACT_RATIO: u64 = 2;
/// How often the embedded node drops expired entries from its set and checks the file.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("revocation stream: {0}")]
    Nats(String),
    #[error("revocation file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

enum Sink {
    File(FileSink),
    JetStream(jetstream::Context),
}

/// The embedded revocation file.
struct FileSink {
    path: PathBuf,
    /// Serialises appends and the swap at the end of a compaction. Owned guards move into
    /// the blocking tasks, so a cancelled caller cannot release it halfway through.
    state: Arc<tokio::sync::Mutex<FileState>>,
    /// One compaction at a time.
    compacting: tokio::sync::Mutex<()>,
    /// Wakes the maintenance task when the file has grown past `check_at`.
    wake: Arc<tokio::sync::Notify>,
}

struct FileState {
    /// Lines in the file.
    entries: u64,
    /// When `entries` reaches this, the maintenance task is woken to prune and check.
    check_at: u64,
}

impl FileState {
    fn new(entries: u64) -> FileState {
        FileState {
            entries,
            check_at: next_check(entries),
        }
    }
}

fn next_check(entries: u64) -> u64 {
    COMPACT_MIN_ENTRIES.max(entries.saturating_mul(COMPACT_RATIO))
}

/// What one compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// Lines in the file before.
    pub before: u64,
    /// Lines in the file after: the live entries plus those appended during the compaction.
    pub after: u64,
}

/// The node's revocations.
pub struct Revocations {
    set: RwLock<RevocationSet>,
    sink: Sink,
    /// Whether the set holds every revocation published before this node started (a node
    /// is not ready before: it would accept revoked tokens).
    caught_up: std::sync::atomic::AtomicBool,
}

fn now() -> i64 {
    crate::http::token::now()
}

impl Revocations {
    /// `serve`: the file in the data directory.
    pub async fn open_embedded(data_dir: &Path) -> Result<Arc<Revocations>, RevocationError> {
        let path = data_dir.join(FILE_NAME);
        let p = path.clone();
        let (set, entries) = tokio::task::spawn_blocking(move || load_file(&p, now()))
            .await
            .map_err(|e| RevocationError::Io {
                path: path.display().to_string(),
                source: std::io::Error::other(e),
            })??;
        Ok(Arc::new(Revocations {
            set: RwLock::new(set),
            sink: Sink::File(FileSink {
                path,
                state: Arc::new(tokio::sync::Mutex::new(FileState::new(entries))),
                compacting: tokio::sync::Mutex::new(()),
                wake: Arc::new(tokio::sync::Notify::new()),
            }),
            caught_up: std::sync::atomic::AtomicBool::new(true),
        }))
    }

    /// Cluster: makes sure the stream exists (created with `replicas`) and starts empty;
    /// [`Revocations::spawn_follower`] fills the set from the stream.
    pub async fn open_jetstream(
        nats: async_nats::Client,
        replicas: usize,
    ) -> Result<Arc<Revocations>, RevocationError> {
        let js = jetstream::new(nats);
        js.get_or_create_stream(stream::Config {
            name: STREAM.to_owned(),
            description: Some(
                "Signet revocations: signet.revocations.<kind> (token, family, session, subject, client, key)"
                    .to_owned(),
            ),
            subjects: vec![format!("{SUBJECT_PREFIX}.>")],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            discard: stream::DiscardPolicy::Old,
            max_age: RETENTION,
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        })
        .await
        .map_err(|e| RevocationError::Nats(e.to_string()))?;
        Ok(Arc::new(Revocations {
            set: RwLock::new(RevocationSet::new()),
            sink: Sink::JetStream(js),
            caught_up: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Cluster: follows the stream from its first message into the set, for ever
    /// (reconnecting after errors; replays are harmless). Also prunes expired entries.
    pub fn spawn_follower(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let Sink::JetStream(js) = &self.sink else {
            return None;
        };
        let js = js.clone();
        let me = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match follow(&js, &me).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "revocation follower failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }))
    }

    /// Publishes `r` durably, then applies it to this node's set.
    pub async fn revoke(&self, r: Revocation) -> Result<(), RevocationError> {
        match &self.sink {
            Sink::JetStream(js) => {
                js.publish(r.subject(), r.to_json().into())
                    .await
                    .map_err(|e| RevocationError::Nats(e.to_string()))?
                    .await
                    .map_err(|e| RevocationError::Nats(e.to_string()))?;
            }
            Sink::File(file) => {
                let guard = Arc::clone(&file.state).lock_owned().await;
                let line = file_line(&r);
                let p = file.path.clone();
                let grown = tokio::task::spawn_blocking(move || {
                    let mut state = guard;
                    append_line(&p, &line)?;
                    state.entries += 1;
                    Ok::<_, RevocationError>(state.entries >= state.check_at)
                })
                .await
                .map_err(|e| RevocationError::Io {
                    path: file.path.display().to_string(),
                    source: std::io::Error::other(e),
                })??;
                if grown {
                    file.wake.notify_one();
                }
            }
        }
        metrics::counter!(crate::telemetry::REVOCATIONS, "kind" => r.target.kind()).increment(1);
        self.apply(&r);
        Ok(())
    }

    fn apply(&self, r: &Revocation) {
        if let Ok(mut set) = self.set.write() {
            set.insert(r);
        }
    }

    /// Whether a token with these facts is revoked.
    pub fn is_revoked(&self, facts: &TokenFacts<'_>) -> bool {
        self.set.read().is_ok_and(|s| s.is_revoked(facts))
    }

    /// Whether every revocation published before this node started is in the set.
    pub fn is_caught_up(&self) -> bool {
        self.caught_up.load(std::sync::atomic::Ordering::Acquire)
    }

    fn set_caught_up(&self) {
        self.caught_up
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Entries in the set.
    pub fn len(&self) -> usize {
        self.set.read().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops entries whose tokens have expired.
    pub fn prune(&self) -> usize {
        self.set.write().map(|mut s| s.prune(now())).unwrap_or(0)
    }

    #[cfg(test)]
    async fn file_state_entries_add(&self, n: u64) {
        if let Sink::File(file) = &self.sink {
            file.state.lock().await.entries += n;
        }
    }

    /// `serve`: lines in the revocation file (live and expired); `None` in a cluster.
    pub async fn file_entries(&self) -> Option<u64> {
        match &self.sink {
            Sink::File(file) => Some(file.state.lock().await.entries),
            Sink::JetStream(_) => None,
        }
    }

    /// `serve`: a task that, every [`MAINTENANCE_EVERY`] and whenever the file has grown
    /// enough, runs [`Revocations::maintain`]. Stops when the node is dropped. `None` in a
    /// cluster (the follower prunes there).
    pub fn spawn_maintenance(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let Sink::File(file) = &self.sink else {
            return None;
        };
        let wake = Arc::clone(&file.wake);
        let me = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(MAINTENANCE_EVERY) => {}
                }
                let Some(me) = me.upgrade() else {
                    return;
                };
                if let Err(error) = me.maintain().await {
                    tracing::warn!(%error, "revocation file compaction failed; the old file is kept");
                }
            }
        }))
    }

    /// Drops expired entries from the set; in `serve`, compacts the file when it holds at
    /// least [`COMPACT_MIN_ENTRIES`] lines and more than [`COMPACT_RATIO`] times the live
    /// entries. Returns what a compaction did, if one ran.
    pub async fn maintain(&self) -> Result<Option<Compaction>, RevocationError> {
        let pruned = self.prune();
        let live = self.len() as u64;
        let Sink::File(file) = &self.sink else {
            return Ok(None);
        };
        let entries = {
            let mut state = file.state.lock().await;
            state.check_at = next_check(state.entries);
            state.entries
        };
        tracing::debug!(pruned, live, entries, "revocation maintenance");
        if entries >= COMPACT_MIN_ENTRIES && entries > live.saturating_mul(COMPACT_RATIO) {
            return self.compact().await;
        }
        Ok(None)
    }

    /// `serve`: rewrites the file with its live entries (see the module docs), whatever its
    /// size. `None` in a cluster.
    pub async fn compact(&self) -> Result<Option<Compaction>, RevocationError> {
        self.compact_with(async {}).await
    }

    /// [`Revocations::compact`], running `meanwhile` between the copy of the live entries
    /// and the swap (tests append there, racing the compaction).
    async fn compact_with(
        &self,
        meanwhile: impl std::future::Future<Output = ()>,
    ) -> Result<Option<Compaction>, RevocationError> {
        let Sink::File(file) = &self.sink else {
            return Ok(None);
        };
        let _one = file.compacting.lock().await;
        let join_err = |e: tokio::task::JoinError| RevocationError::Io {
            path: file.path.display().to_string(),
            source: std::io::Error::other(e),
        };
        // 1. Every line before `prefix` is complete: appends hold the lock while they write.
        let (prefix, before) = {
            let state = file.state.lock().await;
            (file_len(&file.path)?, state.entries)
        };
        // 2. The live entries of the prefix, into the temp file; appends go on meanwhile.
        let path = file.path.clone();
        let cutoff = now();
        let kept = tokio::task::spawn_blocking(move || {
            write_live(&path, &tmp_path(&path), prefix, cutoff, |_| {})
        })
        .await
        .map_err(join_err)??;
        meanwhile.await;
        // 3. Holding the lock: the lines appended meanwhile, then the swap.
        let guard = Arc::clone(&file.state).lock_owned().await;
        let path = file.path.clone();
        let after = tokio::task::spawn_blocking(move || {
            let mut state = guard;
            let appended = finish_rewrite(&path, &tmp_path(&path), prefix)?;
            state.entries = kept + appended;
            state.check_at = next_check(state.entries);
            Ok::<_, RevocationError>(state.entries)
        })
        .await
        .map_err(join_err)??;
        tracing::info!(before, after, "revocation file compacted");
        Ok(Some(Compaction { before, after }))
    }
}

async fn follow(
    js: &jetstream::Context,
    me: &std::sync::Weak<Revocations>,
) -> Result<(), RevocationError> {
    let err = |e: &dyn std::fmt::Display| RevocationError::Nats(e.to_string());
    let mut stream = js.get_stream(STREAM).await.map_err(|e| err(&e))?;
    let state = stream.info().await.map_err(|e| err(&e))?.state.clone();
    // The newest message outlives the older ones (limits drop the oldest first), so the
    // replay reaches `head` unless the stream is empty.
    let head = state.last_sequence;
    if state.messages == 0 {
        if let Some(me) = me.upgrade() {
            me.set_caught_up();
        }
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| err(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| err(&e))?;
    let mut prune_at = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| err(&e))?;
        let Some(me) = me.upgrade() else {
            return Ok(());
        };
        match Revocation::from_message(m.subject.as_str(), &m.payload) {
            Ok(r) => me.apply(&r),
            Err(e) => tracing::warn!(error = %e, "skipping an undecodable revocation"),
        }
        if !me.is_caught_up() && m.info().is_ok_and(|i| i.stream_sequence >= head) {
            me.set_caught_up();
        }
        if tokio::time::Instant::now() >= prune_at {
            me.prune();
            prune_at = tokio::time::Instant::now() + Duration::from_secs(60);
        }
    }
    Err(RevocationError::Nats(
        "the revocation consumer ended".into(),
    ))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct FileRecord {
    subject: String,
    payload: serde_json::Value,
}

fn file_line(r: &Revocation) -> String {
    let rec = FileRecord {
        subject: r.subject(),
        payload: serde_json::from_slice(&r.to_json()).unwrap_or_default(),
    };
    let mut s = serde_json::to_string(&rec).unwrap_or_default();
    s.push('\n');
    s
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RevocationError + '_ {
    move |source| RevocationError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Appends one line durably. A failed write is cut back off (best effort), so the next
/// line does not glue onto a fragment of this one.
fn append_line(path: &Path, line: &str) -> Result<(), RevocationError> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    let before = f.metadata().map_err(io_err(path))?.len();
    let written = f.write_all(line.as_bytes()).and_then(|()| f.sync_data());
    if let Err(error) = written {
        if let Err(truncate) = f.set_len(before).and_then(|()| f.sync_data()) {
            tracing::error!(%error, %truncate, path = %path.display(),
                "a failed revocation append could not be cut back off");
        }
        return Err(io_err(path)(error));
    }
    Ok(())
}

/// The revocation file's name in the data directory.
pub const FILE_NAME: &str = "revocations.jsonl";

fn tmp_path(path: &Path) -> PathBuf {
    path.with_extension("jsonl.tmp")
}

fn file_len(path: &Path) -> Result<u64, RevocationError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Decodes one line; `None` for a torn or foreign line.
fn parse_line(line: &str) -> Option<Revocation> {
    let rec = serde_json::from_str::<FileRecord>(line).ok()?;
    let payload = serde_json::to_vec(&rec.payload).ok()?;
    Revocation::from_message(&rec.subject, &payload).ok()
}

/// Writes the entries of the first `prefix` bytes of `path` that are still live at `now`
/// to a fresh `tmp` (not yet synced), calling `on_live` for each; returns how many. Streams:
/// memory does not grow with the file.
fn write_live(
    path: &Path,
    tmp: &Path,
    prefix: u64,
    now: i64,
    mut on_live: impl FnMut(&Revocation),
) -> Result<u64, RevocationError> {
    let mut out = BufWriter::new(File::create(tmp).map_err(io_err(tmp))?);
    let mut kept = 0;
    match File::open(path) {
        Ok(f) => {
            let mut reader = BufReader::new(f.take(prefix));
            let mut line = String::new();
            loop {
                line.clear();
                // A line that is not UTF-8 is as good as torn: skip its bytes.
                let n = match reader.read_line(&mut line) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        let mut skipped = Vec::new();
                        reader
                            .read_until(b'\n', &mut skipped)
                            .map_err(io_err(path))?;
                        continue;
                    }
                    Err(e) => return Err(io_err(path)(e)),
                };
                if n == 0 {
                    break;
                }
                let Some(r) = parse_line(line.trim_end_matches('\n')) else {
                    continue;
                };
                if r.exp > now {
                    on_live(&r);
                    out.write_all(file_line(&r).as_bytes())
                        .map_err(io_err(tmp))?;
                    kept += 1;
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    out.flush().map_err(io_err(tmp))?;
    Ok(kept)
}

/// Appends to `tmp` what `path` holds past `prefix` (lines appended during a compaction;
/// the caller holds the append lock), makes `tmp` durable and renames it over `path`, then
/// makes the rename durable. Returns the number of lines copied.
fn finish_rewrite(path: &Path, tmp: &Path, prefix: u64) -> Result<u64, RevocationError> {
    let mut appended = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.seek(SeekFrom::Start(prefix)).map_err(io_err(path))?;
            f.read_to_end(&mut appended).map_err(io_err(path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    let mut out = OpenOptions::new()
        .append(true)
        .open(tmp)
        .map_err(io_err(tmp))?;
    out.write_all(&appended).map_err(io_err(tmp))?;
    out.sync_all().map_err(io_err(tmp))?;
    drop(out);
    std::fs::rename(tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir).map_err(io_err(dir))?;
    }
    Ok(appended.iter().filter(|b| **b == b'\n').count() as u64)
}

/// Makes a rename durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Reads the file (a torn last line from a crash is ignored), keeps the entries live at
/// `now` in the set and rewrites the file with them (durably). Returns the set and the
/// number of lines in the new file. Streams the file.
fn load_file(path: &Path, now: i64) -> Result<(RevocationSet, u64), RevocationError> {
    let mut set = RevocationSet::new();
    let prefix = file_len(path)?;
    if prefix == 0 && !path.exists() {
        return Ok((set, 0));
    }
    let tmp = tmp_path(path);
    let kept = write_live(path, &tmp, prefix, now, |r| set.insert(r))?;
    finish_rewrite(path, &tmp, prefix)?;
    Ok((set, kept))
}

#[cfg(test)]
mod tests {
    use signet_verify::revocation::Target;

    use super::*;

    #[tokio::test]
    async fn embedded_revocations_survive_a_restart_and_expired_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let revs = Revocations::open_embedded(dir.path()).await.unwrap();
        let live = Revocation {
            target: Target::Token { jti: "j1".into() },
            exp: now() + 600,
            at: now(),
        };
        let dead = Revocation {
            target: Target::Token { jti: "j0".into() },
            exp: now() - 1,
            at: now() - 100,
        };
        revs.revoke(live).await.unwrap();
        revs.revoke(dead).await.unwrap();
        let facts = |jti| TokenFacts {
            jti: Some(jti),
            iat: now(),
            ..Default::default()
        };
        assert!(revs.is_revoked(&facts("j1")));
        drop(revs);
        let again = Revocations::open_embedded(dir.path()).await.unwrap();
        assert!(again.is_revoked(&facts("j1")));
        assert!(
            !again.is_revoked(&facts("j0")),
            "expired entries are dropped"
        );
        assert_eq!(again.len(), 1);
    }

    fn token(jti: &str, exp: i64) -> Revocation {
        Revocation {
            target: Target::Token { jti: jti.into() },
            exp,
            at: now(),
        }
    }

    fn revoked(revs: &Revocations, jti: &str) -> bool {
        revs.is_revoked(&TokenFacts {
            jti: Some(jti),
            iat: now(),
            ..Default::default()
        })
    }

    /// Writes `n` expired and `live` live token revocations straight into the file.
    fn fill_file(dir: &Path, expired: u64, live: u64) {
        let mut text = String::new();
        for i in 0..expired {
            text.push_str(&file_line(&token(&format!("dead-{i}"), now() - 10)));
        }
        for i in 0..live {
            text.push_str(&file_line(&token(&format!("live-{i}"), now() + 600)));
        }
        std::fs::write(dir.join(FILE_NAME), text).unwrap();
    }

    fn lines(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join(FILE_NAME))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_racing_a_compaction_all_survive_it() {
        let dir = tempfile::tempdir().unwrap();
        let revs = Revocations::open_embedded(dir.path()).await.unwrap();
        // Expired entries appended while running (the start-up rewrite cannot drop them).
        for i in 0..300 {
            revs.revoke(token(&format!("old-{i}"), now() - 1))
                .await
                .unwrap();
        }
        for i in 0..20 {
            revs.revoke(token(&format!("before-{i}"), now() + 600))
                .await
                .unwrap();
        }
        assert_eq!(revs.file_entries().await, Some(320));
        // Appends land between the copy of the live prefix and the swap: in the old file,
        // after the prefix the compaction copied.
        let racing = async {
            let tasks = (0..50).map(|i| {
                let revs = Arc::clone(&revs);
                tokio::spawn(async move {
                    revs.revoke(token(&format!("during-{i}"), now() + 600))
                        .await
                        .unwrap();
                })
            });
            for task in tasks.collect::<Vec<_>>() {
                task.await.unwrap();
            }
        };
        let done = revs.compact_with(racing).await.unwrap().unwrap();
        assert_eq!(
            done,
            Compaction {
                before: 320,
                after: 70
            }
        );
        assert_eq!(revs.file_entries().await, Some(70));
        assert_eq!(lines(dir.path()).len(), 70);
        // Appends after the swap go to the new file.
        revs.revoke(token("after", now() + 600)).await.unwrap();
        assert_eq!(lines(dir.path()).len(), 71);
        assert!(!dir.path().join("revocations.jsonl.tmp").exists());
        drop(revs);

        let again = Revocations::open_embedded(dir.path()).await.unwrap();
        for i in 0..20 {
            assert!(revoked(&again, &format!("before-{i}")), "before-{i}");
        }
        for i in 0..50 {
            assert!(revoked(&again, &format!("during-{i}")), "during-{i} lost");
        }
        assert!(revoked(&again, "after"));
        assert!(!revoked(&again, "old-0"));
        assert_eq!(again.len(), 71);
    }

    #[tokio::test]
    async fn a_compaction_interrupted_before_the_rename_leaves_the_old_file_valid() {
        let dir = tempfile::tempdir().unwrap();
        fill_file(dir.path(), 5, 3);
        let before = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        // The first half of a compaction, then a "crash": a temp file and nothing else.
        let path = dir.path().join(FILE_NAME);
        let kept = write_live(&path, &tmp_path(&path), u64::MAX, now(), |_| {}).unwrap();
        assert_eq!(kept, 3);
        assert!(tmp_path(&path).exists());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the old file is untouched"
        );
        // Also a half-written temp file from an earlier crash.
        std::fs::write(tmp_path(&path), b"{\"subject\":\"signet.revoc").unwrap();

        let revs = Revocations::open_embedded(dir.path()).await.unwrap();
        for i in 0..3 {
            assert!(revoked(&revs, &format!("live-{i}")));
        }
        assert_eq!(revs.len(), 3);
        assert_eq!(lines(dir.path()).len(), 3);
        assert!(!tmp_path(&path).exists());
    }

    #[tokio::test]
    async fn maintenance_prunes_the_set_and_compacts_past_the_thresholds() {
        let dir = tempfile::tempdir().unwrap();
        let revs = Revocations::open_embedded(dir.path()).await.unwrap();
        // Below COMPACT_MIN_ENTRIES: the set is pruned, the file is left alone.
        for i in 0..10 {
            revs.revoke(token(&format!("short-{i}"), now() - 1))
                .await
                .unwrap();
        }
        revs.revoke(token("long", now() + 600)).await.unwrap();
        assert_eq!(revs.len(), 11);
        assert_eq!(revs.maintain().await.unwrap(), None);
        assert_eq!(revs.len(), 1, "expired entries leave the set while running");
        assert_eq!(revs.file_entries().await, Some(11));
        drop(revs);

        // Past COMPACT_MIN_ENTRIES and more than twice the live entries: compacted.
        fill_file(dir.path(), 0, 0);
        let revs = Revocations::open_embedded(dir.path()).await.unwrap();
        let n = COMPACT_MIN_ENTRIES;
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&file_line(&token(&format!("d{i}"), now() - 1)));
        }
        append_line(&dir.path().join(FILE_NAME), &text).unwrap();
        revs.file_state_entries_add(n).await;
        revs.revoke(token("live", now() + 600)).await.unwrap();
        assert_eq!(
            revs.maintain().await.unwrap(),
            Some(Compaction {
                before: n + 1,
                after: 1
            })
        );
        assert_eq!(lines(dir.path()).len(), 1);
        assert!(revoked(&revs, "live"));

        // Mostly live: past the minimum but not twice the live set, so not compacted.
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&file_line(&token(&format!("l{i}"), now() + 600)));
        }
        append_line(&dir.path().join(FILE_NAME), &text).unwrap();
        revs.file_state_entries_add(n).await;
        for i in 0..n {
            revs.apply(&token(&format!("l{i}"), now() + 600));
        }
        assert_eq!(revs.maintain().await.unwrap(), None);
        assert_eq!(revs.file_entries().await, Some(n + 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_maintenance_task_compacts_once_the_file_has_grown() {
        let dir = tempfile::tempdir().unwrap();
        let revs = Revocations::open_embedded(dir.path()).await.unwrap();
        let _task = revs.spawn_maintenance().unwrap();
        let mut text = String::new();
        for i in 0..COMPACT_MIN_ENTRIES {
            text.push_str(&file_line(&token(&format!("d{i}"), now() - 1)));
        }
        append_line(&dir.path().join(FILE_NAME), &text).unwrap();
        revs.file_state_entries_add(COMPACT_MIN_ENTRIES).await;
        // This append takes the file past the threshold and wakes the task, long before
        // its periodic pass.
        revs.revoke(token("live", now() + 600)).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while revs.file_entries().await != Some(1) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not compacted: {:?} lines",
                revs.file_entries().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(lines(dir.path()).len(), 1);
        assert!(revoked(&revs, "live"));
    }
}
