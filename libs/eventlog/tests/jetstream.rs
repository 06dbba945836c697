//! [`JetStreamLog`] against a real `nats-server -js` (`$NATS_SERVER`, or the one
//! `scripts/test.sh` installs in `target/venv`): the backend-independent contract suite, then
//! what only a network backend has (server restarts, outages, existing streams, URLs) and the
//! snapshot object store.
//!
//! Every wait is bounded; nothing sleeps for a fixed time (polling uses a backoff).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, object_store::ObjectMetadata, stream};
use futures::stream::BoxStream;
use futures::StreamExt;
use signet_eventlog::contract::{self, event, DynLog};
use signet_eventlog::jetstream::{
    JetStreamConfig, JetStreamLog, ACTOR_HEADER, AT_HEADER, DEFAULT_SNAPSHOT_BUCKET,
    DEFAULT_STREAM, SNAPSHOT_CRC_KEY, SNAPSHOT_OBJECT, SNAPSHOT_SEQ_KEY, SNAPSHOT_SIZE_KEY,
};
use signet_eventlog::{
    EventLog, EventLogError, ExpectedVersion, NewEvent, RecordedEvent, Result, Seq, Snapshot,
};
use signet_tests::eventually;
use signet_tests::nats::NatsServer;
use tokio::sync::Mutex;

/// Upper bound for anything a test waits on.
const WAIT: Duration = Duration::from_secs(60);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

async fn start_server() -> NatsServer {
    within("nats-server to start", NatsServer::start())
        .await
        .expect("start nats-server (run scripts/test.sh, or set NATS_SERVER)")
}

async fn connect(url: &str) -> Arc<JetStreamLog> {
    within("connect", JetStreamLog::connect(JetStreamConfig::new(url)))
        .await
        .expect("connect to the test nats-server")
}

async fn raw_jetstream(url: &str) -> jetstream::Context {
    let client = within("raw connect", async_nats::connect(url))
        .await
        .expect("raw connect");
    jetstream::new(client)
}

/// Polls until the log answers again after a NATS outage.
async fn wait_until_usable(log: &JetStreamLog) {
    eventually(WAIT, || async { log.last_seq().await.ok() })
        .await
        .expect("the log answers again after the restart");
}

async fn append(log: &JetStreamLog, new: NewEvent, expected: ExpectedVersion) -> Seq {
    let what = format!("append to {}", new.subject);
    within(&what, log.append(new, expected))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Takes the next `count` events, checking they are `first, first+1, ...`.
async fn take_next(
    stream: &mut BoxStream<'static, Result<RecordedEvent>>,
    first: Seq,
    count: u64,
) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    for seq in first..first + count {
        match within(&format!("follow to yield {seq}"), stream.next()).await {
            Some(Ok(event)) => {
                assert_eq!(
                    event.seq, seq,
                    "follow yielded {} where {seq} was due",
                    event.seq
                );
                out.push(event);
            }
            Some(Err(e)) => panic!("follow yielded an error where {seq} was due: {e}"),
            None => panic!("follow ended where {seq} was due"),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The contract suite
// ---------------------------------------------------------------------------------------------

/// Every contract check on its own server (so each gets an empty stream and bucket with the
/// production names and subjects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_run_all() {
    let servers = Arc::new(Mutex::new(Vec::new()));
    contract::run_all(|| {
        let servers = Arc::clone(&servers);
        async move {
            let server = start_server().await;
            let log = connect(&server.url).await;
            servers.lock().await.push(server);
            log as DynLog
        }
    })
    .await;
}

/// Durability across a new connection: drop the handle, connect again to the same stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_restart_by_reconnecting() {
    let server = start_server().await;
    let url = server.url.clone();
    let log = connect(&url).await;
    contract::restart(log, |old| {
        let url = url.clone();
        async move {
            drop(old);
            connect(&url).await as DynLog
        }
    })
    .await;
}

/// Durability across a restart of nats-server itself: nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_restart_nats_server() {
    let server = Arc::new(Mutex::new(start_server().await));
    let url = server.lock().await.url.clone();
    let log = connect(&url).await;
    contract::restart(log, |old| {
        let url = url.clone();
        let server = Arc::clone(&server);
        async move {
            drop(old);
            within("nats-server restart", server.lock().await.restart())
                .await
                .expect("restart nats-server");
            connect(&url).await as DynLog
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Outages and restarts
// ---------------------------------------------------------------------------------------------

/// Followers keep going across a nats-server restart: the events appended after it arrive, with
/// no gap and no repeat, both for a follower that had delivered events and for one waiting at
/// the tail. Appends fail fast while the server is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_resumes_across_nats_restart() {
    let mut server = start_server().await;
    let log = connect(&server.url).await;
    for n in 1..=3 {
        append(
            &log,
            event("signet.events.client.a", n),
            ExpectedVersion::Any,
        )
        .await;
    }
    let mut from_start = log.follow(1).await.expect("follow(1)");
    take_next(&mut from_start, 1, 3).await;
    let mut at_tail = log.follow(4).await.expect("follow(4)");

    within("nats-server to stop", server.stop())
        .await
        .expect("stop nats-server");
    eventually(WAIT, || async {
        (log.client().connection_state() != async_nats::connection::State::Connected).then_some(())
    })
    .await
    .expect("the client notices the server is gone");
    let started = Instant::now();
    let error = log
        .append(event("signet.events.client.a", 99), ExpectedVersion::Any)
        .await
        .expect_err("append while NATS is down");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "append while NATS is down took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(&error, EventLogError::Backend(m) if m.contains("not connected")),
        "{error}"
    );

    within("nats-server restart", server.restart())
        .await
        .expect("restart nats-server");
    let restarted = Instant::now();
    wait_until_usable(&log).await;
    assert_eq!(log.last_seq().await.expect("last_seq"), 3, "events lost");
    for n in 4..=6 {
        append(
            &log,
            event("signet.events.client.b", n),
            ExpectedVersion::Any,
        )
        .await;
    }
    let resumed = take_next(&mut from_start, 4, 3).await;
    take_next(&mut at_tail, 4, 3).await;
    eprintln!(
        "followers resumed {:?} after nats-server was back",
        restarted.elapsed()
    );
    for (e, n) in resumed.iter().zip(4..) {
        assert_eq!(e.payload, event("signet.events.client.b", n).payload);
    }
    // Nothing repeated: the next item is the next append.
    append(
        &log,
        event("signet.events.client.c", 7),
        ExpectedVersion::Any,
    )
    .await;
    take_next(&mut from_start, 7, 1).await;
    take_next(&mut at_tail, 7, 1).await;
    let all = log.read_from(1, usize::MAX).await.expect("read_from");
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
}

/// A wrong or unreachable URL fails within the connect timeout, with a message that names the
/// server but not its credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_fails_fast() {
    let timeout = Duration::from_secs(1);
    let config = |url: String| JetStreamConfig {
        connect_timeout: timeout,
        ..JetStreamConfig::new(url)
    };

    // Nothing listens on the port: refused at once.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let started = Instant::now();
    let error = JetStreamLog::connect(config(format!(
        "nats://alice:s3cret-pw@127.0.0.1:{closed_port}"
    )))
    .await
    .expect_err("connect to a closed port");
    let message = error.to_string();
    eprintln!("closed port, after {:?}: {message}", started.elapsed());
    assert!(
        started.elapsed() < timeout * 3,
        "took {:?}",
        started.elapsed()
    );
    assert!(
        message.contains(&format!("127.0.0.1:{closed_port}")),
        "{message}"
    );
    assert!(message.contains("***@"), "{message}");
    assert!(
        !message.contains("s3cret") && !message.contains("alice"),
        "{message}"
    );

    // Something listens but never speaks NATS: bounded by the connect timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let started = Instant::now();
    let error = within(
        "connect to a silent server",
        JetStreamLog::connect(config(format!(
            "nats://bob:hunter2-pw@127.0.0.1:{silent_port}"
        ))),
    )
    .await
    .expect_err("connect to a silent server");
    let elapsed = started.elapsed();
    let message = error.to_string();
    eprintln!("silent server, after {elapsed:?}: {message}");
    assert!(elapsed < timeout * 4, "took {elapsed:?}: {message}");
    assert!(message.contains("cannot connect"), "{message}");
    assert!(message.contains("no answer within 1s"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    drop(silent);

    // Not a URL at all.
    let error = JetStreamLog::connect(config("nats://[::1".to_owned()))
        .await
        .expect_err("connect to a malformed URL");
    assert!(error.to_string().contains("invalid NATS URL"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// The stream
// ---------------------------------------------------------------------------------------------

/// A new stream gets Signet's settings: file storage, deletes and purges denied, direct gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_is_created_with_signet_settings() {
    let server = start_server().await;
    let log = connect(&server.url).await;
    append(
        &log,
        event("signet.events.client.a", 1),
        ExpectedVersion::Exact(0),
    )
    .await;

    let js = raw_jetstream(&server.url).await;
    let stream = js
        .get_stream(DEFAULT_STREAM)
        .await
        .expect("the stream exists");
    let config = &stream.cached_info().config;
    assert_eq!(config.subjects, ["signet.events.>"]);
    assert_eq!(config.storage, stream::StorageType::File);
    assert_eq!(config.retention, stream::RetentionPolicy::Limits);
    assert_eq!(config.discard, stream::DiscardPolicy::New);
    assert_eq!(config.num_replicas, 1);
    assert!(config.deny_delete && config.deny_purge && config.allow_direct);
    assert!(!config.allow_rollup);
    assert!(config.max_age.is_zero());
    assert!(
        stream.delete_message(1).await.is_err(),
        "an event could be deleted"
    );
    assert!(stream.purge().await.is_err(), "the stream could be purged");
    js.get_object_store(DEFAULT_SNAPSHOT_BUCKET)
        .await
        .expect("the snapshot bucket exists");

    // The message itself: body, subject and headers as documented.
    let message = stream.direct_get(1).await.expect("direct get of event 1");
    assert_eq!(message.subject.as_str(), "signet.events.client.a");
    assert_eq!(&message.payload[..], br#"{"n":1}"#);
    assert_eq!(
        message.headers.get(ACTOR_HEADER).map(|v| v.as_str()),
        Some("contract-test")
    );
    assert_eq!(
        message.headers.get(AT_HEADER).map(|v| v.as_str()),
        Some("1700000000001")
    );

    // Connecting again to the existing stream works and sees the event.
    drop(log);
    let log = connect(&server.url).await;
    assert_eq!(
        log.subject_version("signet.events.client.a").await.unwrap(),
        1
    );
}

/// An existing stream whose settings conflict is refused with every conflict named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_stream_is_refused() {
    let server = start_server().await;
    let js = raw_jetstream(&server.url).await;
    js.create_stream(stream::Config {
        name: DEFAULT_STREAM.to_owned(),
        subjects: vec!["signet.events.>".to_owned()],
        storage: stream::StorageType::Memory,
        max_age: Duration::from_secs(3600),
        ..stream::Config::default()
    })
    .await
    .expect("create a conflicting stream");
    let error = JetStreamLog::connect(JetStreamConfig::new(&server.url))
        .await
        .expect_err("connect to a conflicting stream");
    let message = error.to_string();
    eprintln!("conflicting stream: {message}");
    for expected in [
        DEFAULT_STREAM,
        "storage is Memory",
        "max_age",
        "deny_delete",
        "deny_purge",
    ] {
        assert!(
            message.contains(expected),
            "{expected:?} missing from: {message}"
        );
    }

    // Another server: a stream created by Signet with one replica, then a node expecting 3.
    let other = start_server().await;
    drop(connect(&other.url).await);
    let error = JetStreamLog::connect(JetStreamConfig {
        replicas: 3,
        ..JetStreamConfig::new(&other.url)
    })
    .await
    .expect_err("connect expecting 3 replicas");
    assert!(
        error.to_string().contains("replicas is 1 (expected 3)"),
        "{error}"
    );

    // A stream with another name already holding the subjects.
    let third = start_server().await;
    drop(connect(&third.url).await);
    let error = JetStreamLog::connect(JetStreamConfig {
        stream: "OTHER_EVENTS".to_owned(),
        ..JetStreamConfig::new(&third.url)
    })
    .await
    .expect_err("connect with a second stream on the same subjects");
    assert!(
        error.to_string().contains(DEFAULT_STREAM),
        "the owner is not named: {error}"
    );
}

/// Subjects outside `signet.events.` are not in the stream: rejected, version 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_outside_the_stream_are_rejected() {
    let server = start_server().await;
    let log = connect(&server.url).await;
    for subject in ["signet", "signet.other.x", "a.b", "signet.eventsx.y"] {
        match log.append(event(subject, 1), ExpectedVersion::Any).await {
            Err(EventLogError::InvalidSubject(s)) => assert_eq!(s, subject),
            other => panic!("{subject}: expected InvalidSubject, got {other:?}"),
        }
        assert_eq!(log.subject_version(subject).await.unwrap(), 0);
    }
    assert!(matches!(
        log.subject_version("signet.events.*").await,
        Err(EventLogError::InvalidSubject(_))
    ));
    assert_eq!(log.last_seq().await.unwrap(), 0);
}

/// Actors and times of any shape round-trip through the headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_and_times_round_trip() {
    let server = start_server().await;
    let log = connect(&server.url).await;
    let cases = [
        ("", 0),
        ("signet-admin", 1_700_000_000_000),
        ("admin client\r\nwith: colons %41 é 🦀", -1),
        ("  padded  ", i64::MIN),
        ("system", i64::MAX),
    ];
    let mut stream = log.follow(1).await.expect("follow");
    for (i, (actor, at_ms)) in cases.iter().enumerate() {
        let new = NewEvent {
            subject: "signet.events.client.x".to_owned(),
            actor: (*actor).to_owned(),
            at_ms: *at_ms,
            payload: b" {\"i\": 1} ".to_vec(),
        };
        let seq = append(&log, new, ExpectedVersion::Any).await;
        assert_eq!(seq, i as Seq + 1);
    }
    let read = log.read_from(1, 100).await.expect("read_from");
    let followed = take_next(&mut stream, 1, cases.len() as u64).await;
    for events in [read, followed] {
        assert_eq!(events.len(), cases.len());
        for (event, (actor, at_ms)) in events.iter().zip(cases) {
            assert_eq!((event.actor.as_str(), event.at_ms), (actor, at_ms));
            // Stored without the surrounding whitespace, like the embedded backend.
            assert_eq!(event.payload, b"{\"i\": 1}");
        }
    }
}

/// A message on the stream that Signet did not write (no headers) is corruption, reported by
/// both readers; the follower ends after the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_messages_are_corrupt() {
    let server = start_server().await;
    let log = connect(&server.url).await;
    append(
        &log,
        event("signet.events.client.a", 1),
        ExpectedVersion::Any,
    )
    .await;
    let js = raw_jetstream(&server.url).await;
    js.publish("signet.events.client.b", br#"{"n":2}"#.to_vec().into())
        .await
        .expect("publish")
        .await
        .expect("ack");

    assert_eq!(log.read_from(1, 1).await.expect("read event 1").len(), 1);
    match log.read_from(1, 10).await {
        Err(EventLogError::Corrupt { reason, .. }) => {
            assert!(reason.contains("headers"), "{reason}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let mut stream = log.follow(1).await.expect("follow");
    take_next(&mut stream, 1, 1).await;
    match within("the follower's error", stream.next()).await {
        Some(Err(EventLogError::Corrupt { .. })) => {}
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(
        within("the follower to end", stream.next()).await.is_none(),
        "the follower went on after an error"
    );
}

/// Many events read back in order and densely, in batches; a follower from 1 gets them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_many_events_in_batches() {
    const TOTAL: u64 = 100_000;
    const CHUNK: u64 = 1000;
    let server = start_server().await;
    let log = connect(&server.url).await;

    // Seed quickly with pipelined publishes carrying Signet's headers.
    let started = Instant::now();
    let js = raw_jetstream(&server.url).await;
    for chunk in 0..TOTAL / CHUNK {
        let mut acks = Vec::new();
        for i in 0..CHUNK {
            let n = chunk * CHUNK + i + 1;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(ACTOR_HEADER, "seed");
            headers.insert(AT_HEADER, n.to_string());
            let subject = format!("signet.events.client.c{}", n % 97);
            let ack = js
                .publish_with_headers(subject, headers, format!(r#"{{"n":{n}}}"#).into())
                .await
                .expect("publish");
            acks.push(ack);
        }
        for ack in acks {
            ack.await.expect("ack");
        }
    }
    eprintln!("seeded {TOTAL} events in {:?}", started.elapsed());

    let started = Instant::now();
    let events = within("read_from(1, MAX)", log.read_from(1, usize::MAX))
        .await
        .expect("read_from");
    eprintln!(
        "read_from(1) of {TOTAL} events took {:?}",
        started.elapsed()
    );
    assert_eq!(events.len() as u64, TOTAL);
    for (event, seq) in events.iter().zip(1..) {
        assert_eq!(event.seq, seq);
        assert_eq!(event.at_ms, seq as i64);
    }
    drop(events);

    let window = log.read_from(50_000, 3000).await.expect("read a window");
    assert_eq!(window.len(), 3000);
    assert_eq!(window[0].seq, 50_000);
    assert_eq!(window[2999].seq, 52_999);
    assert_eq!(
        log.subject_version("signet.events.client.c0")
            .await
            .unwrap(),
        TOTAL - TOTAL % 97
    );

    let started = Instant::now();
    let mut stream = log.follow(1).await.expect("follow");
    let mut next = 1;
    while next <= TOTAL {
        match within("follow", stream.next()).await {
            Some(Ok(event)) => assert_eq!(event.seq, next),
            other => panic!("follow at {next}: {other:?}"),
        }
        next += 1;
    }
    eprintln!(
        "follow(1) through {TOTAL} events took {:?}",
        started.elapsed()
    );
    append(
        &log,
        event("signet.events.client.z", 0),
        ExpectedVersion::Any,
    )
    .await;
    take_next(&mut stream, TOTAL + 1, 1).await;
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

/// A multi-megabyte snapshot (about 100k clients' worth) round-trips, survives a reconnect, and
/// is replaced by a later, smaller one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_snapshot_round_trips() {
    let server = start_server().await;
    let log = connect(&server.url).await;
    let data: Vec<u8> = (0..5 * 1024 * 1024 + 7)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let big = Snapshot { seq: 100_000, data };
    let started = Instant::now();
    within("save", log.save_snapshot(big.clone()))
        .await
        .expect("save a 5 MiB snapshot");
    let loaded = within("load", log.load_snapshot()).await.expect("load");
    eprintln!("5 MiB snapshot saved and loaded in {:?}", started.elapsed());
    assert!(
        loaded.as_ref() == Some(&big),
        "the big snapshot came back different"
    );

    drop(log);
    let log = connect(&server.url).await;
    let loaded = log.load_snapshot().await.expect("load after reconnect");
    assert!(loaded.as_ref() == Some(&big), "different after a reconnect");

    let small = Snapshot {
        seq: 100_001,
        data: b"small".to_vec(),
    };
    log.save_snapshot(small.clone()).await.expect("save small");
    assert_eq!(log.load_snapshot().await.expect("load"), Some(small));
}

/// A snapshot object whose data does not match its recorded checksum, size or sequence is
/// `Corrupt`, never returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_snapshot_is_detected() {
    let server = start_server().await;
    let log = connect(&server.url).await;
    let js = raw_jetstream(&server.url).await;
    let bucket = js
        .get_object_store(DEFAULT_SNAPSHOT_BUCKET)
        .await
        .expect("the snapshot bucket");
    let put = |metadata: &[(&str, &str)], data: &'static [u8]| {
        let bucket = bucket.clone();
        let metadata = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        async move {
            bucket
                .put(
                    ObjectMetadata {
                        name: SNAPSHOT_OBJECT.to_owned(),
                        metadata,
                        ..ObjectMetadata::default()
                    },
                    &mut &data[..],
                )
                .await
                .expect("put a forged snapshot");
        }
    };
    let good_crc = format!("{:08x}", crc32fast::hash(b"data"));
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[
                (SNAPSHOT_SEQ_KEY, "5"),
                (SNAPSHOT_SIZE_KEY, "4"),
                (SNAPSHOT_CRC_KEY, "00000000"),
            ],
            "CRC",
        ),
        (
            &[(SNAPSHOT_SIZE_KEY, "4"), (SNAPSHOT_CRC_KEY, &good_crc)],
            SNAPSHOT_SEQ_KEY,
        ),
        (
            &[
                (SNAPSHOT_SEQ_KEY, "five"),
                (SNAPSHOT_SIZE_KEY, "4"),
                (SNAPSHOT_CRC_KEY, &good_crc),
            ],
            SNAPSHOT_SEQ_KEY,
        ),
        (
            &[
                (SNAPSHOT_SEQ_KEY, "5"),
                (SNAPSHOT_SIZE_KEY, "3"),
                (SNAPSHOT_CRC_KEY, &good_crc),
            ],
            "bytes",
        ),
    ];
    for (metadata, expected) in cases {
        put(metadata, b"data").await;
        match log.load_snapshot().await {
            Err(EventLogError::Corrupt { reason, .. }) => {
                assert!(reason.contains(expected), "{expected:?} not in {reason:?}")
            }
            other => panic!("{metadata:?}: expected Corrupt, got {other:?}"),
        }
    }
    // The same object with the right metadata loads.
    put(
        &[
            (SNAPSHOT_SEQ_KEY, "5"),
            (SNAPSHOT_SIZE_KEY, "4"),
            (SNAPSHOT_CRC_KEY, &good_crc),
        ],
        b"data",
    )
    .await;
    assert_eq!(
        log.load_snapshot().await.expect("load"),
        Some(Snapshot {
            seq: 5,
            data: b"data".to_vec()
        })
    );
}
