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
//! Events are small configuration events, so every event is kept in memory
//! (`Vec<Arc<RecordedEvent>>`) together with each subject's version; reads and followers are
//! served from memory and the file is only ever appended to.
//!
//! A data directory must be opened by one [`FileLog`] at a time (no file lock is taken).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
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

/// The embedded [`EventLog`]: one append-only, fsynced file in a data directory.
///
/// - Appends are serialised by an async mutex; the write and `fsync` run on the blocking
///   thread pool. An append is acknowledged only after `sync_data` succeeded. Once an append
///   has acquired the writer it runs to completion even if the caller's future is dropped, so
///   a cancelled append is either fully applied or not applied at all.
/// - If writing or syncing a record fails, the file is truncated back to its previous length
///   and the in-memory state does not move. If even that truncation fails, the writer refuses
///   further appends (every append returns [`EventLogError::Backend`]) until the log is
///   reopened, which repairs or rejects the tail.
/// - [`EventLog::follow`] streams are served from memory and woken by a watch channel, so a
///   slow follower never lags or loses events. A follow stream yields every event, then
///   waits for more; when the log is closed ([`FileLog::close`]) or the last `FileLog` handle
///   is dropped, the stream yields the events it has not yet delivered, then one
///   `Err(EventLogError::Closed)`, and then ends.
/// - After [`FileLog::close`], every method returns [`EventLogError::Closed`].
pub struct FileLog {
    shared: Arc<Shared>,
    writer: Arc<Mutex<Writer>>,
    snapshot_lock: Arc<Mutex<()>>,
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

/// The in-memory image of the log. Only appends (holding the writer) modify it.
#[derive(Default)]
struct State {
    /// `events[i].seq == i + 1`.
    events: Vec<Arc<RecordedEvent>>,
    /// Subject -> sequence of its last event.
    subjects: HashMap<String, Seq>,
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
        fs::create_dir_all(dir)?;
        let log_path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let scan = scan_log(&bytes, &log_path)?;
        drop(bytes);

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

        let last = scan.state.events.len() as Seq;
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
            #[cfg(test)]
            fail_next: None,
        };
        tracing::debug!(dir = %dir.display(), last_seq = last, "event log opened");
        Ok(Arc::new(FileLog {
            shared,
            writer: Arc::new(Mutex::new(writer)),
            snapshot_lock: Arc::new(Mutex::new(())),
        }))
    }

    /// The data directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
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

    fn read_batch(&self, from: Seq, max: usize) -> Vec<Arc<RecordedEvent>> {
        let state = self.read();
        let start = usize::try_from(from.max(1) - 1).unwrap_or(usize::MAX);
        state
            .events
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take(max)
            .cloned()
            .collect()
    }
}

impl State {
    fn last_seq(&self) -> Seq {
        self.events.len() as Seq
    }

    fn subject_version(&self, subject: &str) -> Seq {
        self.subjects.get(subject).copied().unwrap_or(0)
    }

    fn push(&mut self, event: Arc<RecordedEvent>) {
        self.subjects.insert(event.subject.clone(), event.seq);
        self.events.push(event);
    }
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
        let writer = Arc::clone(&self.writer).lock_owned().await;
        let shared = Arc::clone(&self.shared);
        // The blocking task owns the writer guard: it completes even if this future is
        // dropped, so the file and the in-memory state never diverge.
        tokio::task::spawn_blocking(move || append_locked(&shared, writer, pending, expected))
            .await
            .map_err(|e| EventLogError::Backend(format!("append task failed: {e}")))?
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

/// The critical section of an append, run on the blocking pool while holding the writer.
fn append_locked(
    shared: &Shared,
    mut writer: OwnedMutexGuard<Writer>,
    pending: Pending,
    expected: ExpectedVersion,
) -> Result<Seq> {
    let writer = &mut *writer;
    let Some(file) = writer.file.as_ref() else {
        return Err(EventLogError::Closed);
    };
    if let Some(reason) = &writer.failed {
        return Err(EventLogError::Backend(format!(
            "event log writer is stopped after an unrecoverable write failure ({reason}); \
             reopen the log"
        )));
    }

    let (last, actual) = {
        let state = shared.read();
        (state.last_seq(), state.subject_version(&pending.subject))
    };
    if let ExpectedVersion::Exact(expected) = expected {
        if expected != actual {
            return Err(EventLogError::Conflict {
                subject: pending.subject,
                expected,
                actual,
            });
        }
    }

    let event = RecordedEvent {
        seq: last + 1,
        subject: pending.subject,
        actor: pending.actor,
        at_ms: pending.at_ms,
        payload: pending.payload,
    };
    let body = serde_json::to_vec(&event)
        .map_err(|e| EventLogError::Backend(format!("cannot encode event: {e}")))?;
    if body.len() > MAX_RECORD_LEN {
        return Err(EventLogError::Backend(format!(
            "event of {} bytes exceeds the {MAX_RECORD_LEN}-byte record limit",
            body.len()
        )));
    }
    let frame = encode_frame(&body);

    let before = writer.len;
    #[cfg(test)]
    let fail = writer.fail_next.take();
    #[cfg(not(test))]
    let fail = NoFailPoint;
    if let Err(error) = write_frame(file, &frame, fail) {
        // Roll back: no partial record may survive a failed append.
        match truncate(file, before, fail) {
            Ok(()) => {
                tracing::error!(%error, path = %shared.log_path.display(),
                    "event log append failed; the record was rolled back");
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
        return Err(error.into());
    }
    writer.len = before + frame.len() as u64;

    let seq = event.seq;
    shared.write().push(Arc::new(event));
    if let Some(notify) = &writer.notify {
        notify.send_replace(seq);
    }
    Ok(seq)
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
            self.buf
                .extend(self.shared.read_batch(self.next, FOLLOW_BATCH));
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

/// Verifies the whole record file and rebuilds the in-memory state.
fn scan_log(bytes: &[u8], path: &Path) -> Result<Scan> {
    let mut header = [0u8; FILE_HEADER_LEN];
    header[..8].copy_from_slice(LOG_MAGIC);
    header[8..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());

    if bytes.len() < FILE_HEADER_LEN {
        if header.starts_with(bytes) {
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
                state: State::default(),
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
    let version = le_u32(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(corrupt(
            path,
            8,
            format!(
                "unsupported format version {version} (this build reads version {FORMAT_VERSION})"
            ),
        ));
    }

    let mut state = State::default();
    let mut pos = FILE_HEADER_LEN;
    let mut torn = None;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let expected_seq = state.last_seq() + 1;
        if rest.iter().all(|b| *b == 0) {
            torn = Some(TornTail {
                offset: pos as u64,
                dropped: rest.len() as u64,
                reason: format!("{} zero bytes after the last record", rest.len()),
            });
            break;
        }
        if rest.len() < FRAME_HEADER_LEN {
            torn = Some(TornTail {
                offset: pos as u64,
                dropped: rest.len() as u64,
                reason: format!(
                    "incomplete record header ({} of {FRAME_HEADER_LEN} bytes)",
                    rest.len()
                ),
            });
            break;
        }
        let len = le_u32(rest, 0) as usize;
        let stored_crc = le_u32(rest, 4);
        if len > MAX_RECORD_LEN {
            return Err(corrupt(
                path,
                pos,
                format!(
                    "record {expected_seq}: length field {len} exceeds the \
                     {MAX_RECORD_LEN}-byte limit (damaged length field)"
                ),
            ));
        }
        let available = &rest[FRAME_HEADER_LEN..];
        if available.len() < len {
            // Looks like the file ends mid-record. That is a torn append only if what is
            // there is an unfinished body; a complete body means the length field is damaged
            // and later records would be thrown away, so that is corruption.
            if holds_complete_json(available) {
                return Err(corrupt(
                    path,
                    pos,
                    format!(
                        "record {expected_seq}: length field says {len} bytes but only {} \
                         remain and they start with a complete record (damaged length field)",
                        available.len()
                    ),
                ));
            }
            torn = Some(TornTail {
                offset: pos as u64,
                dropped: rest.len() as u64,
                reason: format!(
                    "incomplete record body ({} of {len} bytes)",
                    available.len()
                ),
            });
            break;
        }
        let body = &available[..len];
        let computed_crc = crc32fast::hash(body);
        if computed_crc != stored_crc {
            return Err(corrupt(
                path,
                pos,
                format!(
                    "record {expected_seq}: CRC mismatch (stored {stored_crc:#010x}, computed \
                     {computed_crc:#010x}) over its {len}-byte body"
                ),
            ));
        }
        let event: RecordedEvent = serde_json::from_slice(body).map_err(|e| {
            corrupt(
                path,
                pos,
                format!("record {expected_seq}: body is not a valid event: {e}"),
            )
        })?;
        if event.seq != expected_seq {
            return Err(corrupt(
                path,
                pos,
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
                pos,
                format!("record {expected_seq}: invalid subject {:?}", event.subject),
            ));
        }
        state.push(Arc::new(event));
        pos += FRAME_HEADER_LEN + len;
    }
    Ok(Scan {
        state,
        // Only whole records advance `pos`; on a torn tail it stops at the tail's start.
        valid_len: pos as u64,
        torn,
    })
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
