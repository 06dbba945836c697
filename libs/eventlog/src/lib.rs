//! The append-only event log that carries Signet's configuration and identity events.
//!
//! This crate owns the [`EventLog`] trait and its backends. It knows nothing of clients or
//! scopes: payloads are opaque JSON bytes, typed by `signet-core`. The trait is shaped after
//! NATS JetStream so both backends fit it:
//!
//! - every event lives on a *subject* (`signet.events.<aggregate>.<id>`), and an aggregate's
//!   *version* is the global sequence of the last event on its subject (0: none yet), like
//!   JetStream's expected-last-subject-sequence;
//! - sequences are global, dense and start at 1;
//! - `follow` is an ordered consumer from a start sequence that never skips or repeats.
//!
//! Backends: [`embedded::FileLog`] (one file in the data directory, fsynced before an append
//! is acknowledged) for the all-in-one node, and [`jetstream::JetStreamLog`] (the NATS
//! JetStream stream `SIGNET_EVENTS`, acknowledged by the stream before an append returns) for
//! cluster mode, where any number of issuer nodes follow one log.
//!
//! [`kv`] holds the key-value projections of large aggregates (users, later API keys),
//! folded from the log into a store outside memory: [`kv::embedded::RedbKv`] (a redb file)
//! and [`kv::jetstream::JetStreamKv`] (a JetStream KV bucket), with one contract suite.
//!
//! [`queue`] holds durable work queues (back-channel logout deliveries) with the same two
//! homes: a redb file, and a JetStream work-queue stream.

#![forbid(unsafe_code)]

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
pub mod embedded;
pub mod jetstream;
pub mod kv;
pub mod queue;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

/// A global, dense sequence number. The first event has sequence 1.
pub type Seq = u64;

/// What an append demands of the aggregate's current version (optimistic concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check (used only for events that cannot conflict, such as system bootstrap).
    Any,
    /// The subject's last event must have exactly this sequence; `Exact(0)` means the
    /// subject must have no event yet.
    Exact(Seq),
}

/// An event to append. `payload` is JSON produced by `signet-core`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// e.g. `signet.events.client.web-app`; see `signet_core::events::subject`.
    pub subject: String,
    /// Who caused the event: an admin client id, or `system`.
    pub actor: String,
    /// Milliseconds since the Unix epoch, chosen by the writer.
    pub at_ms: i64,
    pub payload: Vec<u8>,
}

/// An event as stored, with its global sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub seq: Seq,
    pub subject: String,
    pub actor: String,
    pub at_ms: i64,
    /// The JSON payload, kept as raw bytes (base64 is not used: the envelope is JSON with
    /// the payload embedded as a JSON value).
    #[serde(with = "raw_json")]
    pub payload: Vec<u8>,
}

/// A snapshot of a projection: the state after applying every event up to `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub seq: Seq,
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    /// The aggregate's version was not the expected one: someone else wrote first.
    #[error("version conflict on {subject}: expected {expected}, found {actual}")]
    Conflict {
        subject: String,
        expected: Seq,
        actual: Seq,
    },
    /// The stored log is damaged; the node must not start on it.
    #[error("event log corrupt at {path} (byte offset {offset}): {reason}")]
    Corrupt {
        path: String,
        offset: u64,
        reason: String,
    },
    /// A reader saw a hole in the sequence (a bug or data loss upstream); never skipped.
    #[error("sequence gap: expected event {expected}, got {got}")]
    Gap { expected: Seq, got: Seq },
    #[error("invalid subject {0:?}")]
    InvalidSubject(String),
    #[error("event log I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("event log backend: {0}")]
    Backend(String),
    #[error("event log closed")]
    Closed,
}

pub type Result<T, E = EventLogError> = std::result::Result<T, E>;

/// The event log. Implementations are cheap to share (`Arc<dyn EventLog>`).
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends one event if the subject's version matches `expected`. Returns the event's
    /// sequence only once the event is durable (fsynced / acknowledged by the stream).
    async fn append(&self, event: NewEvent, expected: ExpectedVersion) -> Result<Seq>;

    /// The sequence of the last event in the log (0 when empty).
    async fn last_seq(&self) -> Result<Seq>;

    /// The version of one subject: the sequence of its last event, 0 when it has none.
    async fn subject_version(&self, subject: &str) -> Result<Seq>;

    /// Up to `max` events with sequence >= `from`, in order.
    async fn read_from(&self, from: Seq, max: usize) -> Result<Vec<RecordedEvent>>;

    /// Every event with sequence >= `from`, in order, then the live tail as it is appended.
    /// The stream never skips or repeats a sequence; it ends only with an error.
    async fn follow(&self, from: Seq) -> Result<BoxStream<'static, Result<RecordedEvent>>>;

    /// Stores a snapshot, replacing any older one.
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()>;

    /// The latest snapshot, if any.
    async fn load_snapshot(&self) -> Result<Option<Snapshot>>;
}

/// Checks a subject the way both backends require: non-empty, made of `.`-separated
/// non-empty tokens, with no whitespace, no control characters and no NATS wildcards
/// (`*`, `>`). Returns [`EventLogError::InvalidSubject`] otherwise.
pub fn validate_subject(subject: &str) -> Result<()> {
    let valid = !subject.is_empty()
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| !c.is_whitespace() && !c.is_control() && c != '*' && c != '>')
        });
    if valid {
        Ok(())
    } else {
        Err(EventLogError::InvalidSubject(subject.to_owned()))
    }
}

mod raw_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue = serde_json::from_slice(bytes)
            .map_err(|e| serde::ser::Error::custom(format!("payload is not JSON: {e}")))?;
        raw.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        Ok(raw.get().as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_validated() {
        for good in [
            "signet",
            "signet.events.client.web-app",
            "a.b_c.d-e.F9.x:y",
            "signet.events.client.caf~C3~A9",
        ] {
            assert!(validate_subject(good).is_ok(), "{good:?}");
        }
        for bad in [
            "", ".", "a..b", ".a", "a.", "a b", "a\tb", "a.*", "a.>", "a>b", "a\u{0}",
        ] {
            assert!(
                matches!(validate_subject(bad), Err(EventLogError::InvalidSubject(s)) if s == bad),
                "{bad:?}"
            );
        }
    }
}
