//! [`JetStreamQueue`] against a real `nats-server -js`: the work-queue contract, and a job
//! taken by one handle (node) that never settles it goes to another after the lease.

use std::sync::Arc;
use std::time::Duration;

use signet_eventlog::queue::contract;
use signet_eventlog::queue::jetstream::{JetStreamQueue, JetStreamQueueConfig};
use signet_tests::nats::NatsServer;

async fn open(url: &str, stream: &str, lease: Duration) -> JetStreamQueue {
    let client = async_nats::connect(url).await.expect("connect");
    JetStreamQueue::open(
        client,
        JetStreamQueueConfig {
            stream: stream.to_owned(),
            subject: format!("test.{stream}"),
            consumer: "workers".to_owned(),
            replicas: 1,
            lease,
            max_age: Duration::from_secs(3600),
            max_deliver: 20,
        },
    )
    .await
    .expect("open the queue")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_suite_and_leases() {
    let server = tokio::time::timeout(Duration::from_secs(60), NatsServer::start())
        .await
        .expect("nats-server in time")
        .expect("start nats-server (run scripts/test.sh, or set NATS_SERVER)");
    contract::run_all(Arc::new(
        open(&server.url, "Q1", Duration::from_secs(30)).await,
    ))
    .await;
    let lease = Duration::from_secs(1);
    contract::unsettled_jobs_come_back(Arc::new(open(&server.url, "Q2", lease).await), lease).await;

    // Two nodes on one queue: the one that took the job dies (never settles it); the other
    // takes it after the lease.
    use signet_eventlog::queue::WorkQueue;
    let first = open(&server.url, "Q3", lease).await;
    let second = open(&server.url, "Q3", lease).await;
    first.push(b"job").await.unwrap();
    let taken = first.pull(Duration::from_secs(5)).await.unwrap().unwrap();
    drop(first);
    std::mem::forget(taken);
    let job = second
        .pull(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("redelivered to the other node");
    assert_eq!((job.payload.as_slice(), job.attempt), (&b"job"[..], 2));
    job.ack().await.unwrap();
    assert!(second
        .pull(Duration::from_millis(500))
        .await
        .unwrap()
        .is_none());
}
