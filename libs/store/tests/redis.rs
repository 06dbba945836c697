//! [`RedisStore`] against real `redis-server` processes (`$REDIS_SERVER`, or the one
//! `scripts/test.sh` installs): the backend-independent contract suite on a single Redis, a
//! 3-primary Redis Cluster and a Sentinel-watched master, then what only Redis has: URLs and
//! topologies, undecodable data, key layout in Cluster slots, reconnects and a Sentinel
//! failover.
//!
//! Every wait is bounded; nothing sleeps for a fixed time (polling uses a backoff).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signet_store::contract::{self, DynStore};
use signet_store::redis::{RedisConfig, RedisStore};
use signet_store::{Index, Namespace, Rotation, Store, StoreError};
use signet_tests::eventually;
use signet_tests::redis::{RedisCluster, RedisSentinel, RedisServer, Reply};

/// Upper bound for anything a test waits on.
const WAIT: Duration = Duration::from_secs(60);
const LONG: Duration = Duration::from_secs(600);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// A distinct key prefix per store, so checks sharing one Redis never see each other.
fn fresh_prefix() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("t{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn connect(config: RedisConfig) -> RedisStore {
    within("connect", RedisStore::connect(config))
        .await
        .unwrap_or_else(|e| panic!("connect to the test Redis: {e}"))
}

async fn connect_dyn(url: &str, prefix: &str) -> DynStore {
    Arc::new(connect(RedisConfig::new(url).with_prefix(prefix)).await)
}

fn cluster_url(cluster: &RedisCluster) -> String {
    format!("redis+cluster://{}", cluster.addrs().join(","))
}

async fn start_server() -> RedisServer {
    within("redis-server to start", RedisServer::start())
        .await
        .expect("start redis-server (run scripts/test.sh, or set REDIS_SERVER)")
}

async fn start_cluster() -> RedisCluster {
    within("the redis cluster to start", RedisCluster::start())
        .await
        .expect("start a 3-node redis cluster (run scripts/test.sh)")
}

async fn contract_and_restart(url: &str) {
    let started = Instant::now();
    contract::run_all(|| async { connect_dyn(url, &fresh_prefix()).await }).await;
    // The state is in Redis: a new client process sees it all.
    let prefix = fresh_prefix();
    let store = connect_dyn(url, &prefix).await;
    contract::restart(store, |old| {
        let prefix = prefix.clone();
        async move {
            drop(old);
            connect_dyn(url, &prefix).await
        }
    })
    .await;
    eprintln!("contract suite against {url}: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_redis_contract() {
    let server = start_server().await;
    contract_and_restart(&server.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_contract() {
    let cluster = start_cluster().await;
    contract_and_restart(&cluster_url(&cluster)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_contract_and_failover() {
    let setup = within("master, replica and sentinel", RedisSentinel::start())
        .await
        .expect("start redis master, replica and sentinel");
    let url = format!(
        "redis+sentinel://{}/{}",
        setup.sentinel_addr(),
        RedisSentinel::MASTER
    );
    contract::run_all(|| async { connect_dyn(&url, &fresh_prefix()).await }).await;

    let store = connect(RedisConfig::new(&url).with_prefix("failover")).await;
    store
        .put(Namespace::Session, "before", b"v", LONG, &[])
        .await
        .expect("put before the failover");
    let mut setup = setup;
    let old_master = setup.master.port;
    setup.master.kill().await.expect("kill the master");
    // Sentinel promotes the replica (down-after 1 s); the store follows it by itself.
    eventually(WAIT, || async {
        setup.master_port().await.ok().filter(|p| *p != old_master)
    })
    .await
    .expect("sentinel promoted the replica");
    let started = Instant::now();
    eventually(WAIT, || async {
        store
            .put(
                Namespace::Session,
                "after",
                b"v",
                LONG,
                &[Index::Subject("u")],
            )
            .await
            .ok()
    })
    .await
    .expect("the store writes to the new master");
    eprintln!(
        "store usable {:?} after sentinel named the new master",
        started.elapsed()
    );
    assert_eq!(
        store
            .get(Namespace::Session, "after")
            .await
            .ok()
            .flatten()
            .as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(store.delete_by_subject("u").await.ok(), Some(1));

    // A single-Redis URL that names a Sentinel or a replica is refused with advice.
    for (url, needle) in [
        (setup.sentinel.url.clone(), "Sentinel"),
        (format!("redis://{}", setup.master.addr()), "cannot connect"),
    ] {
        match RedisStore::connect(short_timeouts(&url)).await {
            Err(e) => assert!(e.to_string().contains(needle), "{url}: {e}"),
            Ok(_) => panic!("{url}: connected"),
        }
    }
}

fn short_timeouts(url: &str) -> RedisConfig {
    let mut c = RedisConfig::new(url);
    c.connect_timeout = Duration::from_secs(1);
    c.response_timeout = Duration::from_secs(1);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_urls_fail_fast_with_clear_messages() {
    let server = start_server().await;
    let cluster = start_cluster().await;
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &server.port.to_string()])
        .await
        .expect("start a replica");
    // Nothing listens there (a free port, never handed to a server).
    let dead = signet_tests::free_port();
    let cases: Vec<(String, &str)> = vec![
        ("localhost:6379".into(), "no scheme"),
        (
            "http://user:hunter2@127.0.0.1:6379".into(),
            "unknown scheme",
        ),
        (
            "redis+sentinel://user:hunter2@127.0.0.1:1".into(),
            "master name",
        ),
        (
            format!("redis://user:hunter2@127.0.0.1:{dead}"),
            "cannot connect",
        ),
        (
            format!("redis+cluster://user:hunter2@127.0.0.1:{dead}"),
            "cannot connect",
        ),
        (
            format!("redis+sentinel://user:hunter2@127.0.0.1:{dead}/m"),
            "Sentinel",
        ),
        (
            format!("redis://{}", cluster.addrs()[0]),
            "redis+cluster://",
        ),
        (
            format!("redis+cluster://{}", server.addr()),
            "not a Redis Cluster",
        ),
        (replica.url.clone(), "replica"),
    ];
    for (url, needle) in cases {
        let started = Instant::now();
        let result = RedisStore::connect(short_timeouts(&url)).await;
        let elapsed = started.elapsed();
        let message = match result {
            Err(e @ (StoreError::Config(_) | StoreError::Unavailable(_))) => e.to_string(),
            Err(other) => panic!("{url}: unexpected error kind: {other:?}"),
            Ok(_) => panic!("{url}: connected"),
        };
        assert!(message.contains(needle), "{url}: {message}");
        assert!(
            !message.contains("hunter2"),
            "{url}: credentials in {message}"
        );
        assert!(elapsed < Duration::from_secs(5), "{url}: took {elapsed:?}");
        eprintln!("{url} -> {message} ({elapsed:?})");
    }
    let bad_prefix = RedisConfig::new(&server.url).with_prefix("{x}");
    assert!(matches!(
        RedisStore::connect(bad_prefix).await,
        Err(StoreError::Config(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_answers_are_errors_not_misses() {
    let server = start_server().await;
    let store = connect(RedisConfig::new(&server.url).with_prefix("p")).await;
    let raw = |args: &'static [&'static str]| {
        let server = &server;
        async move {
            match server.command(args).await {
                Ok(Reply::Error(e)) => panic!("{args:?}: {e}"),
                Ok(_) => {}
                Err(e) => panic!("{args:?}: {e}"),
            }
        }
    };
    raw(&["SET", "p:e:code:string", "x"]).await;
    raw(&["HSET", "p:e:code:novalue", "i", "x"]).await;
    raw(&["HSET", "p:{f:broken}:r", "v", "x"]).await;
    raw(&["SET", "p:{f:stringy}:r", "x"]).await;
    let ns = Namespace::AuthorizationCode;
    for key in ["string", "novalue"] {
        for (op, result) in [
            ("get", store.get(ns, key).await.map(|_| ())),
            ("consume", store.consume(ns, key).await.map(|_| ())),
        ] {
            assert!(
                matches!(result, Err(StoreError::Decode(_))),
                "{op} {key}: {result:?}"
            );
        }
    }
    let r = store.incr(ns, "string", LONG).await;
    assert!(matches!(r, Err(StoreError::Decode(_))), "incr: {r:?}");
    for fam in ["broken", "stringy"] {
        let r = store.family_token(fam).await;
        assert!(
            matches!(r, Err(StoreError::Decode(_))),
            "family_token {fam}: {r:?}"
        );
        let r = store.rotate(fam, "a", "b", b"v", LONG).await;
        assert!(
            matches!(r, Err(StoreError::Decode(_))),
            "rotate {fam}: {r:?}"
        );
    }
    // The broken data is still there: an error is not a delete.
    assert_eq!(
        server.command(&["EXISTS", "p:e:code:novalue"]).await.ok(),
        Some(Reply::Int(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_key_layout() {
    let cluster = start_cluster().await;
    let store = connect(RedisConfig::new(cluster_url(&cluster)).with_prefix("lay")).await;
    store
        .create_family("fam1", "t0", b"v", LONG, &[Index::Subject("alice")])
        .await
        .expect("create family");
    assert!(matches!(
        store.rotate("fam1", "t0", "t1", b"v", LONG).await,
        Ok(Rotation::Rotated { .. })
    ));
    for i in 0..60 {
        store
            .put(
                Namespace::AuthorizationCode,
                &format!("code{i}"),
                b"v",
                LONG,
                &[Index::Subject("alice"), Index::Family("fam1")],
            )
            .await
            .expect("put");
    }
    let node = &cluster.nodes[0];
    let slot = |key: &'static str| async move {
        node.command(&["CLUSTER", "KEYSLOT", key])
            .await
            .ok()
            .and_then(|r| r.text())
            .unwrap_or_default()
    };
    // A family's record, retired set and index share one slot.
    let family_slot = slot("lay:{f:fam1}:r").await;
    assert_eq!(slot("lay:{f:fam1}:x").await, family_slot);
    assert_eq!(slot("lay:{f:fam1}:i").await, family_slot);
    // The entries spread over all three primaries.
    for n in &cluster.nodes {
        let keys = n.command(&["DBSIZE"]).await.ok().and_then(|r| r.text());
        let keys: u64 = keys.and_then(|k| k.parse().ok()).unwrap_or(0);
        assert!(keys >= 5, "node {} holds only {keys} keys", n.port);
    }
    assert_eq!(store.delete_by_subject("alice").await.ok(), Some(61));
    for n in &cluster.nodes {
        let keys = n.command(&["DBSIZE"]).await.ok().and_then(|r| r.text());
        assert_eq!(keys.as_deref(), Some("0"), "node {} keeps keys", n.port);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_redis_restart() {
    let mut server = start_server().await;
    let store = connect(RedisConfig::new(&server.url).with_prefix("rc")).await;
    store
        .put(Namespace::Session, "s", b"v", LONG, &[])
        .await
        .expect("put");
    // An outage: calls fail fast with `Unavailable`, then work again once Redis is back.
    within("kill redis", server.kill()).await.expect("kill");
    let started = Instant::now();
    match within(
        "a call during the outage",
        store.get(Namespace::Session, "s"),
    )
    .await
    {
        Err(StoreError::Unavailable(m)) => eprintln!("during the outage: {m}"),
        other => panic!("a call during the outage: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    within("start redis again", server.restart())
        .await
        .expect("restart");
    // Nothing is persisted; the store must simply work again on its own.
    let started = Instant::now();
    eventually(WAIT, || async {
        store
            .put(Namespace::Session, "s2", b"v", LONG, &[])
            .await
            .ok()
    })
    .await
    .expect("the store reconnects");
    eprintln!("usable again {:?} after the restart", started.elapsed());
    assert_eq!(
        store
            .get(Namespace::Session, "s2")
            .await
            .ok()
            .flatten()
            .as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(store.get(Namespace::Session, "s").await.ok(), Some(None));
}
