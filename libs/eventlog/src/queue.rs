//! Durable work queues: jobs that must survive the node that enqueued them (back-channel
//! logout deliveries today). Any node may take a job; a job taken and never settled (its
//! node died) becomes available again after the queue's lease.
//!
//! The contract, which [`contract`] checks for every backend:
//!
//! - [`WorkQueue::push`] is durable when it returns.
//! - [`WorkQueue::pull`] hands out a due job to one taker at a time, with its attempt
//!   number (1 the first time it is handed out, counting every hand-out, settled or not).
//! - The taker settles it: [`Job::ack`] (done) and [`Job::give_up`] remove it;
//!   [`Job::retry`] hands it out again, to any taker, no sooner than after the delay.
//! - A job neither settled nor retried within the lease is handed out again.
//!
//! Backends: [`embedded::RedbQueue`] (a redb file in the data directory, for `serve`) and
//! [`jetstream::JetStreamQueue`] (a JetStream work-queue stream with one durable pull
//! consumer that every issuer of a cluster drains).

use std::time::Duration;

use async_trait::async_trait;

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
pub mod embedded;
pub mod jetstream;

/// The largest job payload, in bytes.
pub const MAX_PAYLOAD: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("job of {len} bytes exceeds {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("queue store corrupt: {0}")]
    Corrupt(String),
    #[error("queue I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("queue: {0}")]
    Backend(String),
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// How a job handed out is settled; one implementation per backend.
#[async_trait]
pub trait Settle: Send + Sync {
    async fn ack(self: Box<Self>) -> Result<()>;
    async fn retry(self: Box<Self>, delay: Duration) -> Result<()>;
    async fn give_up(self: Box<Self>) -> Result<()>;
}

/// A job handed out by [`WorkQueue::pull`].
pub struct Job {
    pub payload: Vec<u8>,
    /// 1 the first time the job is handed out.
    pub attempt: u32,
    settle: Box<dyn Settle>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("attempt", &self.attempt)
            .field("len", &self.payload.len())
            .finish()
    }
}

impl Job {
    pub fn new(payload: Vec<u8>, attempt: u32, settle: Box<dyn Settle>) -> Self {
        Job {
            payload,
            attempt,
            settle,
        }
    }

    /// Done: the job is removed.
    pub async fn ack(self) -> Result<()> {
        self.settle.ack().await
    }

    /// Hands the job out again (to any taker) after `delay`.
    pub async fn retry(self, delay: Duration) -> Result<()> {
        self.settle.retry(delay).await
    }

    /// Will never succeed: the job is removed.
    pub async fn give_up(self) -> Result<()> {
        self.settle.give_up().await
    }
}

/// A durable work queue; see the [module documentation](self). Cheap to share
/// (`Arc<dyn WorkQueue>`).
#[async_trait]
pub trait WorkQueue: Send + Sync + 'static {
    /// Adds a job, due at once; durable when it returns.
    async fn push(&self, payload: &[u8]) -> Result<()>;

    /// The next due job, waiting up to `wait` for one; `None` if none came.
    async fn pull(&self, wait: Duration) -> Result<Option<Job>>;
}

fn check_payload(payload: &[u8]) -> Result<()> {
    if payload.len() > MAX_PAYLOAD {
        return Err(QueueError::TooLarge {
            len: payload.len(),
            max: MAX_PAYLOAD,
        });
    }
    Ok(())
}
