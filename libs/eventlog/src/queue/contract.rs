//! The backend-independent contract of [`WorkQueue`], run against every backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::WorkQueue;

pub type DynQueue = Arc<dyn WorkQueue>;

const WAIT: Duration = Duration::from_secs(5);

/// Push, pull, ack, retry with a delay, give up, and payload bounds, on an empty queue.
pub async fn run_all(queue: DynQueue) {
    assert!(
        queue
            .pull(Duration::from_millis(100))
            .await
            .unwrap()
            .is_none(),
        "an empty queue hands out nothing"
    );
    queue.push(b"one").await.unwrap();
    let job = queue.pull(WAIT).await.unwrap().expect("the job");
    assert_eq!((job.payload.as_slice(), job.attempt), (&b"one"[..], 1));
    assert!(
        queue
            .pull(Duration::from_millis(200))
            .await
            .unwrap()
            .is_none(),
        "a job is handed to one taker at a time"
    );
    let started = Instant::now();
    job.retry(Duration::from_millis(600)).await.unwrap();
    let again = queue.pull(WAIT).await.unwrap().expect("retried");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "not before the delay: {:?}",
        started.elapsed()
    );
    assert_eq!(again.attempt, 2);
    again.ack().await.unwrap();
    assert!(queue
        .pull(Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());

    queue.push(b"two").await.unwrap();
    let job = queue.pull(WAIT).await.unwrap().expect("the job");
    job.give_up().await.unwrap();
    assert!(queue
        .pull(Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());

    let big = vec![0u8; super::MAX_PAYLOAD + 1];
    assert!(matches!(
        queue.push(&big).await,
        Err(super::QueueError::TooLarge { .. })
    ));
}

/// A job taken and never settled is handed out again after the lease (`lease` is the
/// backend's).
pub async fn unsettled_jobs_come_back(queue: DynQueue, lease: Duration) {
    queue.push(b"lost").await.unwrap();
    let job = queue.pull(WAIT).await.unwrap().expect("the job");
    std::mem::forget(job);
    let again = queue
        .pull(lease + WAIT)
        .await
        .unwrap()
        .expect("handed out again after the lease");
    assert_eq!((again.payload.as_slice(), again.attempt), (&b"lost"[..], 2));
    again.ack().await.unwrap();
}
