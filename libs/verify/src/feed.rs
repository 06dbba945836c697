//! A shared, thread-safe [`RevocationSet`] with the state of whatever feeds it (usually a
//! [`RevocationSubscriber`](crate::RevocationSubscriber)).

use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::revocation::{Revocation, RevocationSet, TokenFacts};

/// Where the feed of a [`Revocations`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedPhase {
    /// Nothing feeds it yet.
    Idle,
    /// Waiting for NATS.
    Connecting,
    /// NATS is up, but the stream `SIGNET_REVOCATIONS` does not exist (yet); retrying.
    StreamMissing,
    /// Replaying the stream's history up to `target`, its last sequence at start.
    Replaying { target: u64 },
    /// Following the live stream.
    Following,
    /// The consumer is being recreated (after a reconnection or a lost delivery).
    Resuming,
    /// Stopped (the subscriber was shut down).
    Stopped,
}

/// A snapshot of the feed's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedStatus {
    pub phase: FeedPhase,
    /// Whether the history that existed at start has been applied. Once true, stays true.
    pub caught_up: bool,
    /// The stream sequence of the last event applied (0: none).
    pub last_sequence: u64,
    /// The last problem seen (connection, stream, undecodable event), for readiness pages.
    pub last_error: Option<String>,
}

struct Inner {
    set: RwLock<RevocationSet>,
    status: watch::Sender<FeedStatus>,
}

/// The revocations in force, shared between a feed and any number of verifiers (cloning is
/// cheap). Lookups take a read lock for a few hash probes; the feed takes the write lock for
/// one insert at a time.
#[derive(Clone)]
pub struct Revocations {
    inner: Arc<Inner>,
}

impl Default for Revocations {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("len", &self.len())
            .field("status", &self.status())
            .finish()
    }
}

impl Revocations {
    /// An empty set, not caught up.
    pub fn new() -> Self {
        let (status, _) = watch::channel(FeedStatus {
            phase: FeedPhase::Idle,
            caught_up: false,
            last_sequence: 0,
            last_error: None,
        });
        Revocations {
            inner: Arc::new(Inner {
                set: RwLock::new(RevocationSet::new()),
                status,
            }),
        }
    }

    /// Adds a revocation (idempotent).
    pub fn insert(&self, r: &Revocation) {
        match self.inner.set.write() {
            Ok(mut set) => set.insert(r),
            Err(poisoned) => poisoned.into_inner().insert(r),
        }
    }

    /// Whether a token with these facts is revoked.
    pub fn is_revoked(&self, facts: &TokenFacts<'_>) -> bool {
        match self.inner.set.read() {
            Ok(set) => set.is_revoked(facts),
            Err(poisoned) => poisoned.into_inner().is_revoked(facts),
        }
    }

    /// Drops the entries whose tokens have all expired by `now` (Unix seconds).
    pub fn prune(&self, now: i64) -> usize {
        match self.inner.set.write() {
            Ok(mut set) => set.prune(now),
            Err(poisoned) => poisoned.into_inner().prune(now),
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        match self.inner.set.read() {
            Ok(set) => set.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The feed's state now.
    pub fn status(&self) -> FeedStatus {
        self.inner.status.borrow().clone()
    }

    /// Whether the history has been replayed (see [`FeedStatus::caught_up`]).
    pub fn is_caught_up(&self) -> bool {
        self.inner.status.borrow().caught_up
    }

    /// Resolves once the history has been replayed. Wrap it in a timeout.
    pub async fn wait_caught_up(&self) {
        let mut rx = self.inner.status.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|s| s.caught_up).await;
    }

    /// A receiver of every status change.
    pub fn watch_status(&self) -> watch::Receiver<FeedStatus> {
        self.inner.status.subscribe()
    }

    /// Declares the set complete: for a set fed by other means than the subscriber (or
    /// deliberately used without history).
    pub fn mark_caught_up(&self) {
        self.update_status(|s| s.caught_up = true);
    }

    /// Changes the status (for feeds).
    pub(crate) fn update_status(&self, f: impl FnOnce(&mut FeedStatus)) {
        self.inner.status.send_modify(f);
    }
}
