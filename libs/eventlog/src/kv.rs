//! Key-value projections: large aggregates (users, later API keys) folded from the event log
//! into a store outside memory (DESIGN.md, "Data: three kinds, three homes"). Still written
//! only through events: the writer of a [`ProjectionKv`] is a follower of the log.
//!
//! The contract, which [`contract`] checks for every backend:
//!
//! - Every stored key remembers the sequence of the event that last wrote it, including a
//!   delete (a *tombstone*). [`ProjectionKv::apply`] writes only when its sequence is newer
//!   than the stored one, atomically (compare-and-set), so replays are idempotent and any
//!   number of nodes may apply the same events, in any interleaving, and leave what the
//!   newest event says.
//! - [`ProjectionKv::get`] returns a live value and the sequence that wrote it (for a key
//!   that one aggregate's events alone write, that is the aggregate's version); a tombstone
//!   reads as absent.
//! - A watermark, [`ProjectionKv::applied_seq`], records how far the log has been applied;
//!   it only rises, and survives restarts, so a node resumes where the projection stopped.
//!   Writers raise it only after applying every event up to it; values applied after the
//!   last watermark may be applied again on resume (harmless, by the first rule).
//!
//! Backends: [`embedded::RedbKv`] (one redb file in the data directory) and
//! [`jetstream::JetStreamKv`] (a JetStream KV bucket shared by the nodes of a cluster).
//!
//! Keys are 1 to [`MAX_KEY_LEN`] bytes of UTF-8 without control characters; values are at
//! most [`MAX_VALUE_LEN`] bytes; sequences start at 1.

use async_trait::async_trait;

use crate::Seq;

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
pub mod embedded;
pub mod jetstream;

/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 1100;
/// The largest value, in bytes (a JetStream message must hold it with its header).
pub const MAX_VALUE_LEN: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("invalid projection key: {0}")]
    InvalidKey(String),
    #[error("projection value of {len} bytes exceeds {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("sequence 0 is not an event (sequences start at 1)")]
    InvalidSeq,
    /// A stored entry does not decode; the projection must be rebuilt.
    #[error("projection store corrupt: {0}")]
    Corrupt(String),
    #[error("projection store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("projection store: {0}")]
    Backend(String),
}

pub type Result<T, E = KvError> = std::result::Result<T, E>;

/// A key-value projection; see the [module documentation](self). Cheap to share
/// (`Arc<dyn ProjectionKv>`).
#[async_trait]
pub trait ProjectionKv: Send + Sync + 'static {
    /// The live value of `key` and the sequence that wrote it; `None` when absent or deleted.
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Seq)>>;

    /// Sets `key` to `value` (`None`: deletes it, leaving a tombstone) as of event `seq`, if
    /// `seq` is newer than the sequence stored for `key` (value or tombstone). Returns
    /// whether it wrote. Atomic against concurrent `apply`s, here and on other nodes.
    async fn apply(&self, key: &str, value: Option<&[u8]>, seq: Seq) -> Result<bool>;

    /// The watermark: every event up to it has been applied (0: none).
    async fn applied_seq(&self) -> Result<Seq>;

    /// Raises the watermark to `seq` (a lower `seq` leaves it as it is). Durable when it
    /// returns, together with every `apply` made before it.
    async fn set_applied_seq(&self, seq: Seq) -> Result<()>;
}

/// Checks a key against the rules of the [module documentation](self).
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(KvError::InvalidKey(format!(
            "keys are 1 to {MAX_KEY_LEN} bytes (got {})",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(KvError::InvalidKey(
            "keys must not contain control characters".to_owned(),
        ));
    }
    Ok(())
}

/// Checks the arguments of [`ProjectionKv::apply`].
pub fn validate_apply(key: &str, value: Option<&[u8]>, seq: Seq) -> Result<()> {
    validate_key(key)?;
    if seq == 0 {
        return Err(KvError::InvalidSeq);
    }
    if let Some(v) = value {
        if v.len() > MAX_VALUE_LEN {
            return Err(KvError::TooLarge {
                len: v.len(),
                max: MAX_VALUE_LEN,
            });
        }
    }
    Ok(())
}

/// A stored entry: `tag (1: value, 0: tombstone) | seq (u64 big endian) | value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub seq: Seq,
    pub value: Option<Vec<u8>>,
}

const TAG_TOMBSTONE: u8 = 0;
const TAG_VALUE: u8 = 1;
const ENTRY_HEADER: usize = 9;

impl Entry {
    pub(crate) fn encode(seq: Seq, value: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENTRY_HEADER + value.map_or(0, <[u8]>::len));
        out.push(if value.is_some() {
            TAG_VALUE
        } else {
            TAG_TOMBSTONE
        });
        out.extend_from_slice(&seq.to_be_bytes());
        if let Some(v) = value {
            out.extend_from_slice(v);
        }
        out
    }

    pub(crate) fn decode(key: &str, bytes: &[u8]) -> Result<Entry> {
        let corrupt = |why: &str| KvError::Corrupt(format!("entry {key:?}: {why}"));
        if bytes.len() < ENTRY_HEADER {
            return Err(corrupt("shorter than its header"));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[1..ENTRY_HEADER]);
        let seq = Seq::from_be_bytes(seq);
        if seq == 0 {
            return Err(corrupt("sequence 0"));
        }
        let value = match bytes[0] {
            TAG_VALUE => Some(bytes[ENTRY_HEADER..].to_vec()),
            TAG_TOMBSTONE if bytes.len() == ENTRY_HEADER => None,
            TAG_TOMBSTONE => return Err(corrupt("a tombstone with a value")),
            _ => return Err(corrupt("unknown tag")),
        };
        Ok(Entry { seq, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_corrupt() {
        for (seq, value) in [(1, Some(&b"v"[..])), (u64::MAX, Some(&b""[..])), (7, None)] {
            let bytes = Entry::encode(seq, value);
            let e = Entry::decode("k", &bytes).unwrap();
            assert_eq!((e.seq, e.value.as_deref()), (seq, value));
        }
        for bad in [
            &b""[..],
            &[1, 0, 0, 0, 0, 0, 0, 0][..],
            &[1, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[2, 0, 0, 0, 0, 0, 0, 0, 1][..],
            &[0, 0, 0, 0, 0, 0, 0, 0, 1, 5][..],
        ] {
            assert!(
                matches!(Entry::decode("k", bad), Err(KvError::Corrupt(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keys_and_arguments_are_checked() {
        assert!(validate_key("sub:abc").is_ok());
        assert!(validate_key(&"é".repeat(MAX_KEY_LEN / 2)).is_ok());
        for bad in [String::new(), "a\nb".into(), "x".repeat(MAX_KEY_LEN + 1)] {
            assert!(matches!(validate_key(&bad), Err(KvError::InvalidKey(_))));
        }
        assert!(matches!(
            validate_apply("k", None, 0),
            Err(KvError::InvalidSeq)
        ));
        let big = vec![0u8; MAX_VALUE_LEN + 1];
        assert!(matches!(
            validate_apply("k", Some(&big), 1),
            Err(KvError::TooLarge { .. })
        ));
    }
}
