//! The embedded event log backend: [`FileLog`], one append-only file in the data directory.
//!
//! This module owns the on-disk format of a single-node Signet event log and everything that
//! touches it: the record file `events.log`, the snapshot file `snapshot.bin`, recovery at
//! open, durable appends and live following.
//!
//! # Files
//!
//! `events.log` starts with a 12-byte header (`SIGNETEV` + format version, u32 little endian),
//! followed by one frame per event:
//!
//! ```text
//! u32 LE body length | u32 LE CRC-32 of the body | body (JSON `RecordedEvent`)
//! ```
//!
//! The body is the JSON-serialised [`RecordedEvent`], the payload embedded as a raw JSON value.
//! Sequences must be exactly 1, 2, 3, ... in file order.
//!
//! `snapshot.bin` holds one snapshot:
//!
//! ```text
//! "SIGNETSN" | u32 LE version | u64 LE seq | u32 LE data length | u32 LE CRC-32 | data
//! ```
//!
//! with the CRC covering the seq, length and data fields. It is replaced atomically: written to
//! `snapshot.bin.tmp`, fsynced, renamed over `snapshot.bin`, then the directory is fsynced.
//!
//! # Recovery
//!
//! [`FileLog::open`] reads and verifies every record. Any damaged record (bad CRC, bad length
//! field, unparsable body, non-dense sequence, invalid subject) or a bad file header is
//! [`EventLogError::Corrupt`], naming the file, the byte offset and the reason; the node must not
//! start on it. The only damage that is repaired is a *torn final record*: the file ends in the
//! middle of a frame (or in zero fill after the last frame), which is what a crash during an
//! append that was never acknowledged leaves behind. That tail is truncated away with a
//! warning. A final record that is complete but fails its CRC is corrupt, not torn.
//!
//! # Memory
//!
//! Memory grows with the number of *subjects*, not with the number or size of events: the
//! log keeps in memory each subject's version (for expected-version appends), a sparse index
//! (the file offset of every [`ReadCache::index_stride`]-th event) and a bounded cache of the
//! newest events ([`ReadCache::events`] events, at most [`ReadCache::bytes`] bytes of
//! payload). Reads and followers at the tail are served from that cache; older events are
//! read back from `events.log` on demand (seek to the nearest indexed frame, then read
//! forward, verifying each frame's CRC again), on the blocking thread pool. Opening streams
//! the file through a fixed-size buffer instead of loading it whole. [`FileLog::memory`]
//! reports the figures.
//!
//! A data directory must be opened by one [`FileLog`] at a time (no file lock is taken).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use serde_json::value::RawValue;
use tokio::sync::{watch, Mutex, OwnedMutexGuard};

use crate::{
    validate_subject, EventLog, EventLogError, ExpectedVersion, NewEvent, RecordedEvent, Result,
    Seq, Snapshot,
};

#[cfg(test)]
mod tests;

/// Name of the record file inside the data directory.
pub const LOG_FILE: &str = "events.log";
/// Name of the snapshot file inside the data directory.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";
/// Name of the temporary file a snapshot is written to before being renamed into place.
pub const SNAPSHOT_TMP_FILE: &str = "snapshot.bin.tmp";
/// The largest record body accepted on append and at open (16 MiB).
pub const MAX_RECORD_LEN: usize = 16 << 20;
/// The most appends written (and fsynced) together by one group commit.
pub const MAX_BATCH: usize = 256;

const LOG_MAGIC: &[u8; 8] = b"SIGNETEV";
const SNAPSHOT_MAGIC: &[u8; 8] = b"SIGNETSN";
const FORMAT_VERSION: u32 = 1;
/// Magic + version.
const FILE_HEADER_LEN: usize = 12;
/// Body length + CRC.
const FRAME_HEADER_LEN: usize = 8;
/// Magic + version + seq + data length + CRC.
const SNAPSHOT_HEADER_LEN: usize = 28;
/// How many events a follower copies out of the shared log per lock acquisition.
const FOLLOW_BATCH: usize = 256;
/// Buffer size for streaming `events.log` at open and for reads from disk.
const READ_BUFFER: usize = 256 << 10;

/// How much of the log [`FileLog`] keeps in memory (see the module docs, *Memory*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadCache {
    /// The newest events kept in memory, at most this many.
    pub events: usize,
    /// ... and at most this many bytes (subject, actor and payload lengths summed).
    pub bytes: usize,
    /// The sparse index keeps the file offset of every `index_stride`-th event (at least 1);
    /// a read from disk skips at most `index_stride - 1` frames to reach its start.
    pub index_stride: u64,
}

impl Default for ReadCache {
    fn default() -> Self {
        ReadCache {
            events: 1024,
            bytes: 4 << 20,
            index_stride: 64,
        }
    }
}

/// What [`FileLog`] holds in memory, from [`FileLog::memory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    /// Events in the log.
    pub events: u64,
    /// Events held in memory (the newest ones), bounded by [`ReadCache`].
    pub cached_events: usize,
    /// Bytes of those events (subject, actor, payload).
    pub cached_bytes: usize,
    /// Subjects tracked for expected-version appends.
    pub subjects: usize,
    /// Entries of the sparse file-offset index (`events / index_stride`, rounded up).
    pub index_entries: usize,
}

/// The embedded [`EventLog`]: one append-only, fsynced file in a data directory.
///
/// - Appends use **group commit**: each append joins a queue, then takes the writer (an async
///   mutex); whoever holds the writer takes every queued append (in batches of at most
///   [`MAX_BATCH`], never waiting for more to arrive), checks each one's
///   [`ExpectedVersion`] in queue order (an append sees the earlier ones of its batch), and
///   writes the batch's records with one `write` and one `sync_data` on the blocking thread
///   pool. Each append is acknowledged only after that `sync_data` succeeded. An append whose
///   caller went away before a writer took it is dropped unwritten; once taken it runs to
///   completion, so a cancelled append is either fully applied or not applied at all.
/// - If writing or syncing a batch fails, the file is truncated back to its previous length,
///   every append of the batch fails, and the in-memory state does not move. If even that truncation fails, the writer refuses
///   further appends (every append returns [`EventLogError::Backend`]) until the log is
///   reopened, which repairs or rejects the tail.
/// - [`EventLog::follow`] streams are served from the cache of newest events (older events
///   from the file) and woken by a watch channel, so a slow follower never lags or loses
///   events. A follow stream yields every event, then waits for more; when the log is closed
///   ([`FileLog::close`]) or the last `FileLog` handle is dropped, the stream yields the
///   events it has not yet delivered, then one `Err(EventLogError::Closed)`, and then ends.
///   A follower whose read from the file fails yields that error and ends.
/// - After [`FileLog::close`], every method returns [`EventLogError::Closed`].
pub struct FileLog {
    shared: Arc<Shared>,
    writer: Arc<Mutex<Writer>>,
    /// Appends waiting for a writer, in arrival order.
    queue: Arc<std::sync::Mutex<VecDeque<Queued>>>,
    snapshot_lock: Arc<Mutex<()>>,
}

/// An append in the group-commit queue.
struct Queued {
    pending: Pending,
    expected: ExpectedVersion,
    reply: tokio::sync::oneshot::Sender<Result<Seq>>,
}

/// What the log handle, in-flight appends and followers share.
struct Shared {
    dir: PathBuf,
    log_path: PathBuf,
    snapshot_path: PathBuf,
    state: RwLock<State>,
    closed: AtomicBool,
    /// A receiver kept only to be cloned by new followers; the sender lives in [`Writer`], so
    /// followers see the channel close when the log is closed or dropped.
    notify_rx: watch::Receiver<Seq>,
}

/// What the log keeps in memory. Only appends (holding the writer) modify it.
struct State {
    limits: ReadCache,
    /// The sequence of the last event (0: none).
    last: Seq,
    /// Subject -> sequence of its last event.
    subjects: HashMap<String, Seq>,
    /// `index[i]` is the file offset of the frame of event `i * index_stride + 1`.
    index: Vec<u64>,
    /// The newest events, oldest first, ending with event `last` (empty only when the cache
    /// limits leave no room or the log is empty).
    tail: VecDeque<Arc<RecordedEvent>>,
    /// Bytes of the events in `tail`, as counted by [`event_bytes`].
    tail_bytes: usize,
}

/// Where the events a read asks for are.
enum ReadPlan {
    /// In the cache (possibly none at all).
    Memory(Vec<Arc<RecordedEvent>>),
    /// On disk: `count` events from `from`, reading forward from the frame at `offset`,
    /// which holds event `offset_seq`.
    Disk {
        offset: u64,
        offset_seq: Seq,
        from: Seq,
        count: usize,
    },
}

/// The append side, behind the async mutex.
struct Writer {
    /// `None` once the log is closed.
    file: Option<File>,
    /// Current length of `events.log`; every byte before it is a verified record.
    len: u64,
    /// Wakes followers after each append; `None` once the log is closed.
    notify: Option<watch::Sender<Seq>>,
    /// Set when a failed append could not be rolled back; appends are refused from then on.
    failed: Option<String>,
    /// Batches written and synced (each one `write` + one `sync_data`).
    commits: u64,
    #[cfg(test)]
    fail_next: Option<tests::FailPoint>,
}

impl FileLog {
    /// Opens (or creates) the log kept in `dir`, creating the directory if it is missing.
    ///
    /// This reads and verifies the whole of `events.log` with blocking file I/O; call it at
    /// startup or from `spawn_blocking`. It needs no Tokio runtime. A torn final record is
    /// truncated away (with a warning); any other damage is [`EventLogError::Corrupt`].
    /// The result is an `Arc` so it can be shared directly, or coerced to
    /// `Arc<dyn EventLog>`.
    pub fn open(dir: &Path) -> Result<Arc<FileLog>> {
        Self::open_with(dir, ReadCache::default())
    }

    /// [`FileLog::open`] with explicit in-memory limits (tests use tiny ones so that reads
    /// go to disk).
    pub fn open_with(dir: &Path, limits: ReadCache) -> Result<Arc<FileLog>> {
        let limits = ReadCache {
            index_stride: limits.index_stride.max(1),
            ..limits
        };
        fs::create_dir_all(dir)?;
        let log_path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)?;
        let scan = scan_log(&mut file, &log_path, limits)?;

        let mut len = scan.valid_len;
        if let Some(torn) = &scan.torn {
            tracing::warn!(
                path = %log_path.display(),
                offset = torn.offset,
                dropped_bytes = torn.dropped,
                reason = %torn.reason,
                "event log ends in a torn record (an append interrupted by a crash, never \
                 acknowledged); truncating it"
            );
            file.set_len(len)?;
            file.sync_all()?;
        }
        if len == 0 {
            // New (or torn during creation) file: write the header and make it durable.
            let mut header = Vec::with_capacity(FILE_HEADER_LEN);
            header.extend_from_slice(LOG_MAGIC);
            header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            file.write_all(&header)?;
            file.sync_all()?;
            sync_dir(dir)?;
            len = FILE_HEADER_LEN as u64;
        }

        // A leftover from a crash during `save_snapshot`; the real snapshot is untouched.
        match fs::remove_file(dir.join(SNAPSHOT_TMP_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }

        let last = scan.state.last;
        let (notify, notify_rx) = watch::channel(last);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            log_path,
            snapshot_path: dir.join(SNAPSHOT_FILE),
            state: RwLock::new(scan.state),
            closed: AtomicBool::new(false),
            notify_rx,
        });
        let writer = Writer {
            file: Some(file),
            len,
            notify: Some(notify),
            failed: None,
            commits: 0,
            #[cfg(test)]
            fail_next: None,
        };
        tracing::debug!(dir = %dir.display(), last_seq = last, "event log opened");
        Ok(Arc::new(FileLog {
            shared,
            writer: Arc::new(Mutex::new(writer)),
            queue: Arc::new(std::sync::Mutex::new(VecDeque::new())),
            snapshot_lock: Arc::new(Mutex::new(())),
        }))
    }

    /// The data directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// What the log holds in memory right now.
    pub fn memory(&self) -> MemoryUse {
        let state = self.shared.read();
        MemoryUse {
            events: state.last,
            cached_events: state.tail.len(),
            cached_bytes: state.tail_bytes,
            subjects: state.subjects.len(),
            index_entries: state.index.len(),
        }
    }

    /// Closes the log: waits for an in-flight append, closes the file, and ends every follow
    /// stream (each yields its remaining events, then `Err(Closed)`). Afterwards every method
    /// returns [`EventLogError::Closed`]. Dropping the last handle has the same effect on
    /// followers.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let mut writer = self.writer.lock().await;
        writer.file = None;
        writer.notify = None;
    }
}

impl fmt::Debug for FileLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileLog")
            .field("dir", &self.shared.dir)
            .field("last_seq", &self.shared.read().last_seq())
            .field("closed", &self.shared.closed.load(Ordering::SeqCst))
            .finish()
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the state is still a
        // consistent prefix (pushes happen last), so ignoring the poison is sound.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn ensure_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(EventLogError::Closed)
        } else {
            Ok(())
        }
    }

    /// Up to `max` events from `from`: from the cache when it holds `from`, else from disk
    /// (on the blocking pool).
    async fn read_batch(
        self: &Arc<Self>,
        from: Seq,
        max: usize,
    ) -> Result<Vec<Arc<RecordedEvent>>> {
        let plan = self.read().plan(from, max);
        match plan {
            ReadPlan::Memory(events) => Ok(events),
            ReadPlan::Disk {
                offset,
                offset_seq,
                from,
                count,
            } => {
                let path = self.log_path.clone();
                tokio::task::spawn_blocking(move || {
                    read_frames(&path, offset, offset_seq, from, count)
                })
                .await
                .map_err(|e| EventLogError::Backend(format!("read task failed: {e}")))?
            }
        }
    }
}

/// What an event costs in the cache: its variable-length fields.
fn event_bytes(event: &RecordedEvent) -> usize {
    event.subject.len() + event.actor.len() + event.payload.len()
}

impl State {
    fn new(limits: ReadCache) -> State {
        State {
            limits,
            last: 0,
            subjects: HashMap::new(),
            index: Vec::new(),
            tail: VecDeque::new(),
            tail_bytes: 0,
        }
    }

    fn last_seq(&self) -> Seq {
        self.last
    }

    fn subject_version(&self, subject: &str) -> Seq {
        self.subjects.get(subject).copied().unwrap_or(0)
    }

    /// Records event `last + 1`, whose frame starts at byte `offset` of `events.log`.
    fn push(&mut self, event: Arc<RecordedEvent>, offset: u64) {
        let seq = event.seq;
        if (seq - 1).is_multiple_of(self.limits.index_stride) {
            self.index.push(offset);
        }
        match self.subjects.get_mut(&event.subject) {
            Some(version) => *version = seq,
            None => {
                self.subjects.insert(event.subject.clone(), seq);
            }
        }
        self.last = seq;
        self.tail_bytes += event_bytes(&event);
        self.tail.push_back(event);
        while self.tail.len() > self.limits.events || self.tail_bytes > self.limits.bytes {
            match self.tail.pop_front() {
                Some(old) => self.tail_bytes -= event_bytes(&old),
                None => break,
            }
        }
    }

    fn plan(&self, from: Seq, max: usize) -> ReadPlan {
        let from = from.max(1);
        if from > self.last || max == 0 {
            return ReadPlan::Memory(Vec::new());
        }
        let available = usize::try_from(self.last - from + 1).unwrap_or(usize::MAX);
        let count = available.min(max);
        if let Some(first) = self.tail.front().map(|e| e.seq) {
            if first <= from {
                let skip = usize::try_from(from - first).unwrap_or(usize::MAX);
                return ReadPlan::Memory(
                    self.tail.iter().skip(skip).take(count).cloned().collect(),
                );
            }
        }
        let slot = (from - 1) / self.limits.index_stride;
        let (offset, offset_seq) = match usize::try_from(slot)
            .ok()
            .and_then(|slot| self.index.get(slot))
        {
            Some(offset) => (*offset, slot * self.limits.index_stride + 1),
            // Not reached (every event up to `last` is indexed); reading from the first
            // frame is slow but still right.
            None => (FILE_HEADER_LEN as u64, 1),
        };
        ReadPlan::Disk {
            offset,
            offset_seq,
            from,
            count,
        }
    }
}

/// Reads `count` events from `from` out of the record file, starting at the frame at
/// `offset` (event `offset_seq`) and skipping the frames before `from`. Every frame is
/// checked again (CRC, sequence): a file damaged since it was opened is
/// [`EventLogError::Corrupt`], never a wrong event.
fn read_frames(
    path: &Path,
    offset: u64,
    offset_seq: Seq,
    from: Seq,
    count: usize,
) -> Result<Vec<Arc<RecordedEvent>>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    let mut out = Vec::with_capacity(count.min(FOLLOW_BATCH * 4));
    let mut pos = offset;
    let mut seq = offset_seq;
    let mut body = Vec::new();
    let at = |pos: u64| usize::try_from(pos).unwrap_or(usize::MAX);
    while out.len() < count {
        let mut header = [0u8; FRAME_HEADER_LEN];
        reader.read_exact(&mut header).map_err(|e| {
            corrupt(
                path,
                at(pos),
                format!("record {seq}: cannot read its header: {e}"),
            )
        })?;
        let len = le_u32(&header, 0) as usize;
        let stored_crc = le_u32(&header, 4);
        if len > MAX_RECORD_LEN {
            return Err(corrupt(
                path,
                at(pos),
                format!("record {seq}: length field {len} exceeds the {MAX_RECORD_LEN}-byte limit"),
            ));
        }
        body.resize(len, 0);
        reader.read_exact(&mut body).map_err(|e| {
            corrupt(
                path,
                at(pos),
                format!("record {seq}: cannot read its body: {e}"),
            )
        })?;
        if crc32fast::hash(&body) != stored_crc {
            return Err(corrupt(
                path,
                at(pos),
                format!("record {seq}: CRC mismatch"),
            ));
        }
        if seq >= from {
            let event: RecordedEvent = serde_json::from_slice(&body).map_err(|e| {
                corrupt(
                    path,
                    at(pos),
                    format!("record {seq}: body is not a valid event: {e}"),
                )
            })?;
            if event.seq != seq {
                return Err(corrupt(
                    path,
                    at(pos),
                    format!("record has sequence {} where {seq} was expected", event.seq),
                ));
            }
            out.push(Arc::new(event));
        }
        pos += (FRAME_HEADER_LEN + len) as u64;
        seq += 1;
    }
    Ok(out)
}

#[async_trait]
impl EventLog for FileLog {
    async fn append(&self, event: NewEvent, expected: ExpectedVersion) -> Result<Seq> {
        self.shared.ensure_open()?;
        validate_subject(&event.subject)?;
        let payload = normalize_payload(&event.payload)?;
        let pending = Pending {
            subject: event.subject,
            actor: event.actor,
            at_ms: event.at_ms,
            payload,
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        lock_queue(&self.queue).push_back(Queued {
            pending,
            expected,
            reply,
        });
        let writer = Arc::clone(&self.writer).lock_owned().await;
        // Whoever holds the writer writes everything queued (this append, unless an earlier
        // holder already took it with its own batch).
        if !lock_queue(&self.queue).is_empty() {
            let shared = Arc::clone(&self.shared);
            let queue = Arc::clone(&self.queue);
            // The blocking task owns the writer guard: it completes even if this future is
            // dropped, so the file and the in-memory state never diverge.
            tokio::task::spawn_blocking(move || drain_queue(&shared, writer, &queue));
        }
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(EventLogError::Backend("append task failed".into())),
        }
    }

    async fn last_seq(&self) -> Result<Seq> {
        self.shared.ensure_open()?;
        Ok(self.shared.read().last_seq())
    }

    async fn subject_version(&self, subject: &str) -> Result<Seq> {
        self.shared.ensure_open()?;
        Ok(self.shared.read().subject_version(subject))
    }

    async fn read_from(&self, from: Seq, max: usize) -> Result<Vec<RecordedEvent>> {
        self.shared.ensure_open()?;
        Ok(self
            .shared
            .read_batch(from, max)
            .await?
            .into_iter()
            .map(|event| RecordedEvent::clone(&event))
            .collect())
    }

    async fn follow(&self, from: Seq) -> Result<BoxStream<'static, Result<RecordedEvent>>> {
        self.shared.ensure_open()?;
        let follower = Follower {
            shared: Arc::clone(&self.shared),
            rx: self.shared.notify_rx.clone(),
            next: from.max(1),
            buf: VecDeque::new(),
            closed: false,
            done: false,
        };
        Ok(stream::unfold(follower, Follower::step).boxed())
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        self.shared.ensure_open()?;
        let encoded = encode_snapshot(&snapshot)?;
        let guard = Arc::clone(&self.snapshot_lock).lock_owned().await;
        let dir = self.shared.dir.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            write_snapshot(&dir, &encoded)
        })
        .await
        .map_err(|e| EventLogError::Backend(format!("snapshot task failed: {e}")))?
    }

    async fn load_snapshot(&self) -> Result<Option<Snapshot>> {
        self.shared.ensure_open()?;
        let path = self.shared.snapshot_path.clone();
        tokio::task::spawn_blocking(move || match fs::read(&path) {
            Ok(bytes) => decode_snapshot(&bytes, &path).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await
        .map_err(|e| EventLogError::Backend(format!("snapshot task failed: {e}")))?
    }
}

/// A validated event waiting for the writer.
struct Pending {
    subject: String,
    actor: String,
    at_ms: i64,
    payload: Vec<u8>,
}

/// Checks the payload is one JSON value and returns it without surrounding whitespace, exactly
/// as it will read back from the file.
fn normalize_payload(payload: &[u8]) -> Result<Vec<u8>> {
    let raw: &RawValue = serde_json::from_slice(payload)
        .map_err(|e| EventLogError::Backend(format!("event payload is not JSON: {e}")))?;
    Ok(raw.get().as_bytes().to_vec())
}

fn lock_queue(
    queue: &std::sync::Mutex<VecDeque<Queued>>,
) -> std::sync::MutexGuard<'_, VecDeque<Queued>> {
    // Pushing and draining cannot leave the queue half-changed: ignoring poison is sound.
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An error for each append of a failed batch (`io::Error` is not `Clone`).
fn replicate(e: &EventLogError) -> EventLogError {
    match e {
        EventLogError::Io(io) => EventLogError::Io(io::Error::new(io.kind(), io.to_string())),
        other => EventLogError::Backend(other.to_string()),
    }
}

/// Holding the writer, on the blocking pool: writes every queued append, [`MAX_BATCH`] at a
/// time, until the queue is empty.
fn drain_queue(
    shared: &Shared,
    mut writer: OwnedMutexGuard<Writer>,
    queue: &std::sync::Mutex<VecDeque<Queued>>,
) {
    loop {
        let batch: Vec<Queued> = {
            let mut q = lock_queue(queue);
            let n = q.len().min(MAX_BATCH);
            q.drain(..n).collect()
        };
        if batch.is_empty() {
            return;
        }
        append_batch(shared, &mut writer, batch);
    }
}

/// One group commit: checks each append in order, writes the accepted ones' frames with one
/// write and one `sync_data`, then answers every caller.
fn append_batch(shared: &Shared, writer: &mut Writer, batch: Vec<Queued>) {
    // A caller that went away before its append was taken: not written (as if cancelled
    // before it reached the writer).
    let batch = batch.into_iter().filter(|q| !q.reply.is_closed());
    let Some(file) = writer.file.as_ref() else {
        for q in batch {
            let _ = q.reply.send(Err(EventLogError::Closed));
        }
        return;
    };
    if let Some(reason) = &writer.failed {
        for q in batch {
            let _ = q.reply.send(Err(EventLogError::Backend(format!(
                "event log writer is stopped after an unrecoverable write failure ({reason}); \
                 reopen the log"
            ))));
        }
        return;
    }

    let before = writer.len;
    let mut frames: Vec<u8> = Vec::new();
    // (event, frame offset, caller) of each accepted append, in order.
    let mut accepted = Vec::new();
    {
        let state = shared.read();
        let mut last = state.last_seq();
        // Subject versions as the batch's earlier appends leave them.
        let mut versions: HashMap<String, Seq> = HashMap::new();
        for q in batch {
            let Queued {
                pending,
                expected,
                reply,
            } = q;
            let actual = versions
                .get(&pending.subject)
                .copied()
                .unwrap_or_else(|| state.subject_version(&pending.subject));
            if let ExpectedVersion::Exact(expected) = expected {
                if expected != actual {
                    let _ = reply.send(Err(EventLogError::Conflict {
                        subject: pending.subject,
                        expected,
                        actual,
                    }));
                    continue;
                }
            }
            let event = RecordedEvent {
                seq: last + 1,
                subject: pending.subject,
                actor: pending.actor,
                at_ms: pending.at_ms,
                payload: pending.payload,
            };
            let body = match serde_json::to_vec(&event) {
                Ok(body) if body.len() <= MAX_RECORD_LEN => body,
                Ok(body) => {
                    let _ = reply.send(Err(EventLogError::Backend(format!(
                        "event of {} bytes exceeds the {MAX_RECORD_LEN}-byte record limit",
                        body.len()
                    ))));
                    continue;
                }
                Err(e) => {
                    let _ = reply.send(Err(EventLogError::Backend(format!(
                        "cannot encode event: {e}"
                    ))));
                    continue;
                }
            };
            let offset = before + frames.len() as u64;
            frames.extend_from_slice(&encode_frame(&body));
            last = event.seq;
            versions.insert(event.subject.clone(), event.seq);
            accepted.push((event, offset, reply));
        }
    }
    if accepted.is_empty() {
        return;
    }

    #[cfg(test)]
    let fail = writer.fail_next.take();
    #[cfg(not(test))]
    let fail = NoFailPoint;
    if let Err(error) = write_frame(file, &frames, fail) {
        // Roll back: no partial record may survive a failed append.
        match truncate(file, before, fail) {
            Ok(()) => {
                tracing::error!(%error, path = %shared.log_path.display(), appends = accepted.len(),
                    "event log append failed; the records were rolled back");
            }
            Err(truncate_error) => {
                tracing::error!(%error, %truncate_error, path = %shared.log_path.display(),
                    "event log append failed and could not be rolled back; refusing appends");
                writer.failed = Some(format!(
                    "append failed ({error}) and truncating to {before} bytes failed \
                     ({truncate_error})"
                ));
            }
        }
        let error = EventLogError::from(error);
        for (_, _, reply) in accepted {
            let _ = reply.send(Err(replicate(&error)));
        }
        return;
    }
    writer.len = before + frames.len() as u64;
    writer.commits += 1;

    let mut replies = Vec::with_capacity(accepted.len());
    let mut last = 0;
    {
        let mut state = shared.write();
        for (event, offset, reply) in accepted {
            last = event.seq;
            replies.push((event.seq, reply));
            state.push(Arc::new(event), offset);
        }
    }
    if let Some(notify) = &writer.notify {
        notify.send_replace(last);
    }
    for (seq, reply) in replies {
        let _ = reply.send(Ok(seq));
    }
}

/// Stand-in for the test-only fault injection point in non-test builds.
#[cfg(not(test))]
#[derive(Clone, Copy)]
struct NoFailPoint;

#[cfg(not(test))]
fn write_frame(mut file: &File, frame: &[u8], _fail: NoFailPoint) -> io::Result<()> {
    file.write_all(frame)?;
    file.sync_data()
}

#[cfg(not(test))]
fn truncate(file: &File, len: u64, _fail: NoFailPoint) -> io::Result<()> {
    file.set_len(len)?;
    file.sync_data()
}

#[cfg(test)]
fn write_frame(mut file: &File, frame: &[u8], fail: Option<tests::FailPoint>) -> io::Result<()> {
    use tests::FailPoint;
    match fail {
        Some(FailPoint::PartialWrite | FailPoint::PartialWriteThenTruncate) => {
            file.write_all(&frame[..frame.len() / 2])?;
            Err(io::Error::other("injected write failure"))
        }
        Some(FailPoint::Sync) => {
            file.write_all(frame)?;
            Err(io::Error::other("injected fsync failure"))
        }
        None => {
            file.write_all(frame)?;
            file.sync_data()
        }
    }
}

#[cfg(test)]
fn truncate(file: &File, len: u64, fail: Option<tests::FailPoint>) -> io::Result<()> {
    if fail == Some(tests::FailPoint::PartialWriteThenTruncate) {
        return Err(io::Error::other("injected truncate failure"));
    }
    file.set_len(len)?;
    file.sync_data()
}

/// The state behind one follow stream.
struct Follower {
    shared: Arc<Shared>,
    rx: watch::Receiver<Seq>,
    /// The sequence the stream yields next.
    next: Seq,
    buf: VecDeque<Arc<RecordedEvent>>,
    /// The writer is gone: drain what is left, then yield `Closed`.
    closed: bool,
    done: bool,
}

impl Follower {
    async fn step(mut self) -> Option<(Result<RecordedEvent>, Self)> {
        if self.done {
            return None;
        }
        loop {
            if let Some(event) = self.buf.pop_front() {
                if event.seq != self.next {
                    self.done = true;
                    let gap = EventLogError::Gap {
                        expected: self.next,
                        got: event.seq,
                    };
                    return Some((Err(gap), self));
                }
                self.next += 1;
                return Some((Ok(RecordedEvent::clone(&event)), self));
            }
            // Mark the current notification seen *before* reading, so an append that lands
            // after the read below still wakes `changed()`: nothing is missed.
            self.rx.mark_unchanged();
            match self.shared.read_batch(self.next, FOLLOW_BATCH).await {
                Ok(batch) => self.buf.extend(batch),
                Err(error) => {
                    self.done = true;
                    return Some((Err(error), self));
                }
            }
            if !self.buf.is_empty() {
                continue;
            }
            if self.closed {
                self.done = true;
                return Some((Err(EventLogError::Closed), self));
            }
            if self.rx.changed().await.is_err() {
                // Every event is pushed before the sender can be dropped, so one more read
                // (the next loop turn) sees everything there will ever be.
                self.closed = true;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Record file format
// ---------------------------------------------------------------------------------------------

fn encode_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    // `body.len() <= MAX_RECORD_LEN < u32::MAX`, checked by the caller.
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    frame.extend_from_slice(body);
    frame
}

/// The outcome of reading `events.log`.
struct Scan {
    state: State,
    /// Length of the verified prefix (header + whole records); 0 when there is no header yet.
    valid_len: u64,
    torn: Option<TornTail>,
}

struct TornTail {
    offset: u64,
    dropped: u64,
    reason: String,
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut buf = [0u8; 4];
    buf.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(buf)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(buf)
}

fn corrupt(path: &Path, offset: usize, reason: impl Into<String>) -> EventLogError {
    EventLogError::Corrupt {
        path: path.display().to_string(),
        offset: offset as u64,
        reason: reason.into(),
    }
}

/// Verifies the whole record file, streaming it through a fixed-size buffer, and rebuilds
/// the in-memory state (index, subject versions, newest events).
fn scan_log(file: &mut File, path: &Path, limits: ReadCache) -> Result<Scan> {
    let file_len = file.metadata()?.len();
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::with_capacity(READ_BUFFER, &*file);
    let mut header = [0u8; FILE_HEADER_LEN];
    header[..8].copy_from_slice(LOG_MAGIC);
    header[8..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());

    if file_len < FILE_HEADER_LEN as u64 {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes)?;
        if header.starts_with(&bytes) {
            // Empty, or a crash while the header of a new file was being written.
            let torn = (!bytes.is_empty()).then(|| TornTail {
                offset: 0,
                dropped: bytes.len() as u64,
                reason: format!(
                    "incomplete file header ({} of {FILE_HEADER_LEN} bytes)",
                    bytes.len()
                ),
            });
            return Ok(Scan {
                state: State::new(limits),
                valid_len: 0,
                torn,
            });
        }
        return Err(corrupt(
            path,
            0,
            "bad magic: this is not a Signet event log file",
        ));
    }
    let mut bytes = [0u8; FILE_HEADER_LEN];
    reader.read_exact(&mut bytes)?;
    if &bytes[..8] != LOG_MAGIC {
        return Err(corrupt(
            path,
            0,
            format!(
                "bad magic {:?}: this is not a Signet event log file (expected {:?})",
                String::from_utf8_lossy(&bytes[..8]),
                String::from_utf8_lossy(LOG_MAGIC)
            ),
        ));
    }
    let version = le_u32(&bytes, 8);
    if version != FORMAT_VERSION {
        return Err(corrupt(
            path,
            8,
            format!(
                "unsupported format version {version} (this build reads version {FORMAT_VERSION})"
            ),
        ));
    }

    let mut state = State::new(limits);
    let mut pos = FILE_HEADER_LEN as u64;
    let mut torn = None;
    let mut body = Vec::new();
    let at = |pos: u64| usize::try_from(pos).unwrap_or(usize::MAX);
    while pos < file_len {
        let rest = file_len - pos;
        let expected_seq = state.last_seq() + 1;
        let mut frame_header = [0u8; FRAME_HEADER_LEN];
        let head_len = usize::try_from(rest).map_or(FRAME_HEADER_LEN, |r| r.min(FRAME_HEADER_LEN));
        reader.read_exact(&mut frame_header[..head_len])?;
        if frame_header[..head_len].iter().all(|b| *b == 0) && rest_is_zero(&mut reader)? {
            torn = Some(TornTail {
                offset: pos,
                dropped: rest,
                reason: format!("{rest} zero bytes after the last record"),
            });
            break;
        }
        if head_len < FRAME_HEADER_LEN {
            torn = Some(TornTail {
                offset: pos,
                dropped: rest,
                reason: format!("incomplete record header ({rest} of {FRAME_HEADER_LEN} bytes)"),
            });
            break;
        }
        // A zero header followed by non-zero bytes: `rest_is_zero` consumed the reader, but
        // the length is 0, so nothing more is read below and the empty body is rejected.
        let len = le_u32(&frame_header, 0) as usize;
        let stored_crc = le_u32(&frame_header, 4);
        if len > MAX_RECORD_LEN {
            return Err(corrupt(
                path,
                at(pos),
                format!(
                    "record {expected_seq}: length field {len} exceeds the \
                     {MAX_RECORD_LEN}-byte limit (damaged length field)"
                ),
            ));
        }
        let available = rest - FRAME_HEADER_LEN as u64;
        if available < len as u64 {
            // Looks like the file ends mid-record. That is a torn append only if what is
            // there is an unfinished body; a complete body means the length field is damaged
            // and later records would be thrown away, so that is corruption.
            // (`available < len <= MAX_RECORD_LEN`: reading it is bounded.)
            let mut tail = Vec::new();
            reader.read_to_end(&mut tail)?;
            if holds_complete_json(&tail) {
                return Err(corrupt(
                    path,
                    at(pos),
                    format!(
                        "record {expected_seq}: length field says {len} bytes but only {} \
                         remain and they start with a complete record (damaged length field)",
                        tail.len()
                    ),
                ));
            }
            torn = Some(TornTail {
                offset: pos,
                dropped: rest,
                reason: format!("incomplete record body ({} of {len} bytes)", tail.len()),
            });
            break;
        }
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
        let computed_crc = crc32fast::hash(&body);
        if computed_crc != stored_crc {
            return Err(corrupt(
                path,
                at(pos),
                format!(
                    "record {expected_seq}: CRC mismatch (stored {stored_crc:#010x}, computed \
                     {computed_crc:#010x}) over its {len}-byte body"
                ),
            ));
        }
        let event: RecordedEvent = serde_json::from_slice(&body).map_err(|e| {
            corrupt(
                path,
                at(pos),
                format!("record {expected_seq}: body is not a valid event: {e}"),
            )
        })?;
        if event.seq != expected_seq {
            return Err(corrupt(
                path,
                at(pos),
                format!(
                    "record has sequence {} where {expected_seq} was expected (sequences must \
                     be dense from 1)",
                    event.seq
                ),
            ));
        }
        if validate_subject(&event.subject).is_err() {
            return Err(corrupt(
                path,
                at(pos),
                format!("record {expected_seq}: invalid subject {:?}", event.subject),
            ));
        }
        state.push(Arc::new(event), pos);
        pos += (FRAME_HEADER_LEN + len) as u64;
    }
    Ok(Scan {
        state,
        // Only whole records advance `pos`; on a torn tail it stops at the tail's start.
        valid_len: pos,
        torn,
    })
}

/// Whether everything left in `reader` is zero bytes (consumes it).
fn rest_is_zero(reader: &mut impl io::BufRead) -> io::Result<bool> {
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(true);
        }
        if chunk.iter().any(|b| *b != 0) {
            return Ok(false);
        }
        let n = chunk.len();
        reader.consume(n);
    }
}

/// Whether `bytes` starts with a complete JSON value (used to tell a torn body from a damaged
/// length field: an unfinished `{...}` body never is one).
fn holds_complete_json(bytes: &[u8]) -> bool {
    let mut values =
        serde_json::Deserializer::from_slice(bytes).into_iter::<serde::de::IgnoredAny>();
    matches!(values.next(), Some(Ok(_)))
}

// ---------------------------------------------------------------------------------------------
// Snapshot file format
// ---------------------------------------------------------------------------------------------

fn snapshot_crc(seq: &[u8], len: &[u8], data: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(seq);
    hasher.update(len);
    hasher.update(data);
    hasher.finalize()
}

fn encode_snapshot(snapshot: &Snapshot) -> Result<Vec<u8>> {
    let len = u32::try_from(snapshot.data.len()).map_err(|_| {
        EventLogError::Backend(format!(
            "snapshot of {} bytes is too large",
            snapshot.data.len()
        ))
    })?;
    let seq = snapshot.seq.to_le_bytes();
    let len = len.to_le_bytes();
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_LEN + snapshot.data.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&seq);
    out.extend_from_slice(&len);
    out.extend_from_slice(&snapshot_crc(&seq, &len, &snapshot.data).to_le_bytes());
    out.extend_from_slice(&snapshot.data);
    Ok(out)
}

fn decode_snapshot(bytes: &[u8], path: &Path) -> Result<Snapshot> {
    if bytes.len() < SNAPSHOT_HEADER_LEN {
        return Err(corrupt(
            path,
            0,
            format!(
                "snapshot file is {} bytes, shorter than its {SNAPSHOT_HEADER_LEN}-byte header",
                bytes.len()
            ),
        ));
    }
    if &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt(
            path,
            0,
            "bad magic: this is not a Signet snapshot file",
        ));
    }
    let version = le_u32(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(corrupt(
            path,
            8,
            format!("unsupported snapshot format version {version} (this build reads version {FORMAT_VERSION})"),
        ));
    }
    let seq = le_u64(bytes, 12);
    let len = le_u32(bytes, 20) as usize;
    let stored_crc = le_u32(bytes, 24);
    let data = &bytes[SNAPSHOT_HEADER_LEN..];
    if data.len() != len {
        return Err(corrupt(
            path,
            20,
            format!(
                "snapshot length field says {len} bytes of data but the file holds {}",
                data.len()
            ),
        ));
    }
    let computed_crc = snapshot_crc(&bytes[12..20], &bytes[20..24], data);
    if computed_crc != stored_crc {
        return Err(corrupt(
            path,
            24,
            format!(
                "snapshot CRC mismatch (stored {stored_crc:#010x}, computed {computed_crc:#010x})"
            ),
        ));
    }
    Ok(Snapshot {
        seq,
        data: data.to_vec(),
    })
}

/// Atomically replaces `snapshot.bin`: temp file, fsync, rename, directory fsync.
fn write_snapshot(dir: &Path, encoded: &[u8]) -> Result<()> {
    let tmp = dir.join(SNAPSHOT_TMP_FILE);
    let result = (|| -> io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(encoded)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        // Best effort: a leftover temp file is also removed at the next open.
        let _ = fs::remove_file(&tmp);
    }
    Ok(result?)
}

/// Makes a directory entry change (create, rename) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
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
