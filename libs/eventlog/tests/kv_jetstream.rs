//! [`JetStreamKv`] against a real `nats-server -js` (`$NATS_SERVER`, or the one
//! `scripts/test.sh` installs in `target/venv`): the backend-independent projection-store
//! contract, durability across a server restart, and several handles (nodes) racing on one
//! bucket.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use signet_eventlog::kv::contract::{self, DynKv};
use signet_eventlog::kv::jetstream::{JetStreamKv, JetStreamKvConfig};
use signet_eventlog::kv::ProjectionKv;
use signet_tests::nats::NatsServer;

const WAIT: Duration = Duration::from_secs(60);

async fn start_server() -> NatsServer {
    tokio::time::timeout(WAIT, NatsServer::start())
        .await
        .expect("nats-server in time")
        .expect("start nats-server (run scripts/test.sh, or set NATS_SERVER)")
}

async fn open(url: &str, bucket: &str) -> JetStreamKv {
    let client = async_nats::connect(url).await.expect("connect");
    JetStreamKv::open(client, JetStreamKvConfig::new(bucket, 1))
        .await
        .expect("open the bucket")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_suite() {
    let server = start_server().await;
    let n = AtomicUsize::new(0);
    contract::run_all(|| {
        let bucket = format!("CONTRACT_{}", n.fetch_add(1, Ordering::Relaxed));
        let url = server.url.clone();
        async move {
            let kv: DynKv = Arc::new(open(&url, &bucket).await);
            kv
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_and_server_restart_keep_everything() {
    let mut server = start_server().await;
    let url = server.url.clone();
    contract::restart(|| {
        let url = url.clone();
        async move {
            let kv: DynKv = Arc::new(open(&url, "SIGNET_USERS").await);
            kv
        }
    })
    .await;
    server.restart().await.expect("restart nats-server");
    let kv = open(&url, "SIGNET_USERS").await;
    assert_eq!(kv.applied_seq().await.unwrap(), 6);
    assert_eq!(kv.get("sub:a").await.unwrap(), Some((b"alice".to_vec(), 4)));
    assert_eq!(kv.get("sub:b").await.unwrap(), None);
    assert!(!kv.apply("sub:b", Some(b"bob"), 5).await.unwrap());
}

/// Two nodes (two connections, two handles) apply the same events, one forwards and one
/// backwards, at the same time: the bucket ends as the newest event of each key says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_on_one_bucket() {
    let server = start_server().await;
    let a = open(&server.url, "RACE").await;
    let b = open(&server.url, "RACE").await;
    let run = |kv: JetStreamKv, reverse: bool| async move {
        let mut order: Vec<u64> = (1..=40).collect();
        if reverse {
            order.reverse();
        }
        for s in order {
            let key = format!("k{}", s % 2);
            let value = (!s.is_multiple_of(5)).then(|| s.to_string().into_bytes());
            kv.apply(&key, value.as_deref(), s).await.unwrap();
        }
        kv.set_applied_seq(40).await.unwrap();
    };
    tokio::join!(run(a.clone(), false), run(b.clone(), true));
    assert_eq!(a.get("k0").await.unwrap(), None, "event 40 deleted k0");
    assert_eq!(b.get("k1").await.unwrap(), Some((b"39".to_vec(), 39)));
    assert_eq!(a.applied_seq().await.unwrap(), 40);
}

#[tokio::test]
async fn bad_configuration_is_refused() {
    let server = start_server().await;
    let client = async_nats::connect(&server.url).await.unwrap();
    for (bucket, replicas) in [("a.b", 1), ("", 1), ("OK", 0), ("OK", 6)] {
        let e = JetStreamKv::open(client.clone(), JetStreamKvConfig::new(bucket, replicas))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("invalid"), "{e}");
    }
}
