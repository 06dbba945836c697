//! The behaviour every [`EventLog`] backend must show, as a reusable test suite.
//!
//! Compiled for this crate's own tests and, for other crates, behind the `contract-tests`
//! feature. Each check is a `pub async fn` that takes a fresh, empty log and panics with a
//! descriptive message when the backend breaks the contract; [`run_all`] runs every check
//! that needs only a fresh log, and [`restart`] checks durability across a reopen.
//!
//! The checks spawn Tokio tasks and use timeouts only as upper bounds (they never sleep), so
//! run them inside a Tokio runtime; a multi-threaded runtime makes the races real:
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn contract() {
//!     signet_eventlog::contract::run_all(|| async { fresh_log().await }).await;
//! }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;

use crate::{
    EventLog, EventLogError, ExpectedVersion, NewEvent, RecordedEvent, Result, Seq, Snapshot,
};

/// A shared handle on the log under test.
pub type DynLog = Arc<dyn EventLog>;

/// Upper bound for anything a check waits on; reaching it fails the check.
const WAIT: Duration = Duration::from_secs(20);

const SUBJECT_A: &str = "signet.events.client.web-app";
const SUBJECT_B: &str = "signet.events.client.cli";
const SUBJECT_C: &str = "signet.events.scope.profile";

/// Runs every check that needs only a fresh, empty log; `make` is called once per check.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = DynLog>,
{
    empty_log(make().await).await;
    append_and_read(make().await).await;
    payload_round_trip(make().await).await;
    expected_version(make().await).await;
    conflict_leaves_nothing_behind(make().await).await;
    racing_appends_one_winner(make().await).await;
    concurrent_appends_dense(make().await).await;
    read_from_ranges(make().await).await;
    follow_history_then_live(make().await).await;
    follow_from_future_seq(make().await).await;
    follow_races_with_appends(make().await).await;
    snapshots(make().await).await;
    invalid_subjects_rejected(make().await).await;
    invalid_payload_rejected(make().await).await;
}

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// The event the checks append: payload `{"n":<n>}`.
pub fn event(subject: &str, n: u64) -> NewEvent {
    NewEvent {
        subject: subject.to_owned(),
        actor: "contract-test".to_owned(),
        at_ms: 1_700_000_000_000 + n as i64,
        payload: format!(r#"{{"n":{n}}}"#).into_bytes(),
    }
}

fn ok<T>(result: Result<T>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{what}: unexpected error: {error}"),
    }
}

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

async fn append(log: &DynLog, event: NewEvent, expected: ExpectedVersion) -> Seq {
    let what = format!("append to {} with {expected:?}", event.subject);
    ok(within(&what, log.append(event, expected)).await, &what)
}

async fn join<T>(handle: tokio::task::JoinHandle<T>) -> T {
    match within("a spawned task", handle).await {
        Ok(value) => value,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("spawned task failed: {error}"),
        },
    }
}

/// Reads the whole log and checks it is dense from 1.
async fn read_all(log: &DynLog) -> Vec<RecordedEvent> {
    let events = ok(log.read_from(1, usize::MAX).await, "read_from(1, MAX)");
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.seq, i as Seq + 1, "read_from(1) is not dense from 1");
    }
    events
}

/// Takes the next `count` events from a follow stream, checking they are `first, first+1, ...`.
async fn take_next(
    stream: &mut BoxStream<'static, Result<RecordedEvent>>,
    first: Seq,
    count: u64,
) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    for seq in first..first + count {
        let what = format!("follow to yield event {seq}");
        match within(&what, stream.next()).await {
            Some(Ok(event)) => {
                assert_eq!(
                    event.seq, seq,
                    "follow yielded {} where {seq} was due",
                    event.seq
                );
                out.push(event);
            }
            Some(Err(error)) => {
                panic!("follow yielded an error where event {seq} was due: {error}")
            }
            None => panic!("follow stream ended where event {seq} was due"),
        }
    }
    out
}

fn assert_event(event: &RecordedEvent, seq: Seq, new: &NewEvent) {
    assert_eq!(event.seq, seq, "sequence of {new:?}");
    assert_eq!(event.subject, new.subject, "subject of event {seq}");
    assert_eq!(event.actor, new.actor, "actor of event {seq}");
    assert_eq!(event.at_ms, new.at_ms, "at_ms of event {seq}");
    assert_eq!(
        String::from_utf8_lossy(&event.payload),
        String::from_utf8_lossy(&new.payload),
        "payload of event {seq}"
    );
}

// ---------------------------------------------------------------------------------------------
// checks
// ---------------------------------------------------------------------------------------------

/// A fresh log is empty.
pub async fn empty_log(log: DynLog) {
    assert_eq!(ok(log.last_seq().await, "last_seq"), 0);
    assert_eq!(
        ok(log.subject_version(SUBJECT_A).await, "subject_version"),
        0
    );
    assert!(ok(log.read_from(1, 10).await, "read_from").is_empty());
    assert!(ok(log.read_from(0, 10).await, "read_from(0)").is_empty());
    assert!(ok(log.load_snapshot().await, "load_snapshot").is_none());
}

/// Appends get dense global sequences from 1, and read back field for field.
pub async fn append_and_read(log: DynLog) {
    let appended = [
        event(SUBJECT_A, 1),
        event(SUBJECT_B, 2),
        event(SUBJECT_A, 3),
    ];
    for (i, new) in appended.iter().enumerate() {
        let seq = append(&log, new.clone(), ExpectedVersion::Any).await;
        assert_eq!(seq, i as Seq + 1, "append #{i} got sequence {seq}");
    }
    assert_eq!(ok(log.last_seq().await, "last_seq"), 3);
    assert_eq!(ok(log.subject_version(SUBJECT_A).await, "version"), 3);
    assert_eq!(ok(log.subject_version(SUBJECT_B).await, "version"), 2);
    assert_eq!(ok(log.subject_version(SUBJECT_C).await, "version"), 0);
    let events = read_all(&log).await;
    assert_eq!(events.len(), 3);
    for (i, (event, new)) in events.iter().zip(&appended).enumerate() {
        assert_event(event, i as Seq + 1, new);
    }
}

/// Any JSON value round-trips byte for byte (compact JSON, as `signet-core` writes it).
pub async fn payload_round_trip(log: DynLog) {
    let payloads: [&str; 8] = [
        r#"{"type":"ClientRegistered","client_id":"web-app","redirect_uris":["https://a.example/cb"]}"#,
        r#"[1,2.5,-3e7,true,false,null]"#,
        r#""a string with \"escapes\", \\ and \u00e9 and é and 🦀""#,
        "42",
        "null",
        r#"{"nested":{"deep":{"deeper":[{"k":"v"}]}},"empty":{},"list":[]}"#,
        r#"{"key order":"is","kept":"as written","a":1}"#,
        r#"{"big":18446744073709551615,"neg":-9223372036854775808,"float":1.0000000000000002}"#,
    ];
    for (i, payload) in payloads.iter().enumerate() {
        let new = NewEvent {
            subject: SUBJECT_A.to_owned(),
            actor: "contract-test".to_owned(),
            at_ms: -1 - i as i64,
            payload: payload.as_bytes().to_vec(),
        };
        let seq = append(&log, new.clone(), ExpectedVersion::Any).await;
        let read = ok(log.read_from(seq, 1).await, "read_from");
        assert_eq!(read.len(), 1, "read_from({seq}, 1)");
        assert_event(&read[0], seq, &new);
    }
}

/// Optimistic concurrency: `Exact(v)` must match the subject's version, `Any` always passes.
pub async fn expected_version(log: DynLog) {
    // Exact(0) on a new subject succeeds.
    let a1 = append(&log, event(SUBJECT_A, 1), ExpectedVersion::Exact(0)).await;
    assert_eq!(a1, 1);
    // Exact(0) on an existing subject conflicts, reporting the actual version.
    match log
        .append(event(SUBJECT_A, 2), ExpectedVersion::Exact(0))
        .await
    {
        Err(EventLogError::Conflict {
            subject,
            expected,
            actual,
        }) => {
            assert_eq!((subject.as_str(), expected, actual), (SUBJECT_A, 0, 1));
        }
        other => panic!("Exact(0) on an existing subject: expected Conflict, got {other:?}"),
    }
    // Other subjects are independent: their version is their own last event.
    let b = append(&log, event(SUBJECT_B, 3), ExpectedVersion::Exact(0)).await;
    assert_eq!(b, 2);
    // The version is the global sequence of the subject's last event, not a per-subject count.
    match log
        .append(event(SUBJECT_B, 4), ExpectedVersion::Exact(1))
        .await
    {
        Err(EventLogError::Conflict {
            subject,
            expected,
            actual,
        }) => {
            assert_eq!((subject.as_str(), expected, actual), (SUBJECT_B, 1, 2));
        }
        other => panic!("Exact(1) on a subject at version 2: expected Conflict, got {other:?}"),
    }
    // A stale version conflicts, the current one succeeds.
    let a2 = append(&log, event(SUBJECT_A, 5), ExpectedVersion::Exact(a1)).await;
    assert_eq!(a2, 3);
    match log
        .append(event(SUBJECT_A, 6), ExpectedVersion::Exact(a1))
        .await
    {
        Err(EventLogError::Conflict {
            expected, actual, ..
        }) => {
            assert_eq!((expected, actual), (a1, a2));
        }
        other => panic!("stale Exact version: expected Conflict, got {other:?}"),
    }
    // A version from the future conflicts too.
    match log
        .append(event(SUBJECT_A, 7), ExpectedVersion::Exact(99))
        .await
    {
        Err(EventLogError::Conflict {
            expected, actual, ..
        }) => {
            assert_eq!((expected, actual), (99, a2));
        }
        other => panic!("future Exact version: expected Conflict, got {other:?}"),
    }
    // Any never conflicts.
    let a3 = append(&log, event(SUBJECT_A, 8), ExpectedVersion::Any).await;
    assert_eq!(a3, 4);
    let c = append(&log, event(SUBJECT_C, 9), ExpectedVersion::Any).await;
    assert_eq!(c, 5);
    assert_eq!(ok(log.subject_version(SUBJECT_A).await, "version"), a3);
    assert_eq!(ok(log.subject_version(SUBJECT_B).await, "version"), b);
    assert_eq!(ok(log.subject_version(SUBJECT_C).await, "version"), c);
    assert_eq!(ok(log.last_seq().await, "last_seq"), 5);
}

/// A rejected append stores nothing and consumes no sequence.
pub async fn conflict_leaves_nothing_behind(log: DynLog) {
    append(&log, event(SUBJECT_A, 1), ExpectedVersion::Exact(0)).await;
    for _ in 0..3 {
        let result = log
            .append(event(SUBJECT_A, 2), ExpectedVersion::Exact(0))
            .await;
        assert!(
            matches!(result, Err(EventLogError::Conflict { .. })),
            "got {result:?}"
        );
    }
    assert_eq!(ok(log.last_seq().await, "last_seq"), 1);
    assert_eq!(read_all(&log).await.len(), 1);
    let next = append(&log, event(SUBJECT_B, 3), ExpectedVersion::Any).await;
    assert_eq!(next, 2, "a conflict consumed a sequence");
}

/// Eight writers race with the same expected version: exactly one wins, the others conflict
/// and see the winner's sequence. Checked both for `Exact(0)` and for `Exact(v > 0)`.
pub async fn racing_appends_one_winner(log: DynLog) {
    const WRITERS: usize = 8;
    // Keep the sequence numbers of the two rounds apart with unrelated events.
    append(&log, event(SUBJECT_C, 0), ExpectedVersion::Any).await;
    let mut versions = vec![0];
    let seeded = append(&log, event(SUBJECT_B, 0), ExpectedVersion::Exact(0)).await;
    versions.push(seeded);
    for (round, (subject, expected)) in [(SUBJECT_A, 0), (SUBJECT_B, seeded)]
        .into_iter()
        .enumerate()
    {
        let before = ok(log.last_seq().await, "last_seq");
        let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|i| {
                let log = Arc::clone(&log);
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    let result = log
                        .append(event(subject, i as u64), ExpectedVersion::Exact(expected))
                        .await;
                    (i, result)
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut conflicts = Vec::new();
        for task in tasks {
            match join(task).await {
                (i, Ok(seq)) => winners.push((i, seq)),
                (
                    _,
                    Err(EventLogError::Conflict {
                        expected: e,
                        actual,
                        ..
                    }),
                ) => {
                    assert_eq!(e, expected);
                    conflicts.push(actual);
                }
                (i, Err(error)) => panic!("round {round}: writer {i} failed: {error}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: expected exactly one winner, got {winners:?}"
        );
        let (winner, seq) = winners[0];
        assert_eq!(seq, before + 1, "round {round}: winner's sequence");
        assert!(
            conflicts.iter().all(|actual| *actual == seq),
            "round {round}: losers must see the winner's sequence {seq}: {conflicts:?}"
        );
        assert_eq!(
            ok(log.last_seq().await, "last_seq"),
            seq,
            "round {round}: losers appended"
        );
        assert_eq!(ok(log.subject_version(subject).await, "version"), seq);
        let stored = ok(log.read_from(seq, 10).await, "read_from");
        assert_eq!(stored.len(), 1);
        assert_event(&stored[0], seq, &event(subject, winner as u64));
    }
}

/// Concurrent `Any` appends on many subjects get distinct, dense sequences.
pub async fn concurrent_appends_dense(log: DynLog) {
    const WRITERS: u64 = 8;
    const EACH: u64 = 25;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let subject = format!("signet.events.writer.w{w}");
                let mut seqs = Vec::new();
                let mut version = 0;
                for i in 0..EACH {
                    // Alternate Exact (own subject, so never conflicting) and Any.
                    let expected = if i % 2 == 0 {
                        ExpectedVersion::Exact(version)
                    } else {
                        ExpectedVersion::Any
                    };
                    version = append(&log, event(&subject, w * 1000 + i), expected).await;
                    seqs.push(version);
                }
                (subject, seqs)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let (subject, seqs) = join(task).await;
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{subject}: sequences not increasing: {seqs:?}"
        );
        assert_eq!(
            ok(log.subject_version(&subject).await, "version"),
            *seqs.last().unwrap_or(&0)
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    let expected: Vec<Seq> = (1..=WRITERS * EACH).collect();
    assert_eq!(all, expected, "sequences are not distinct and dense");
    let events = read_all(&log).await;
    assert_eq!(events.len() as u64, WRITERS * EACH);
}

/// `read_from(from, max)`: inclusive start, `max` cap, 0 treated like 1, past the end empty.
pub async fn read_from_ranges(log: DynLog) {
    for n in 1..=10 {
        append(&log, event(SUBJECT_A, n), ExpectedVersion::Any).await;
    }
    let seqs = |events: Vec<RecordedEvent>| events.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(ok(log.read_from(1, 100).await, "read")),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(seqs(ok(log.read_from(0, 3).await, "read")), vec![1, 2, 3]);
    assert_eq!(seqs(ok(log.read_from(4, 3).await, "read")), vec![4, 5, 6]);
    assert_eq!(seqs(ok(log.read_from(9, 100).await, "read")), vec![9, 10]);
    assert_eq!(seqs(ok(log.read_from(10, 1).await, "read")), vec![10]);
    assert!(ok(log.read_from(11, 100).await, "read").is_empty());
    assert!(ok(log.read_from(1_000_000, 100).await, "read").is_empty());
    assert!(ok(log.read_from(Seq::MAX, 100).await, "read").is_empty());
    assert!(ok(log.read_from(1, 0).await, "read").is_empty());
    for (i, event) in ok(log.read_from(1, 100).await, "read").iter().enumerate() {
        assert_event(event, i as Seq + 1, &self::event(SUBJECT_A, i as u64 + 1));
    }
}

/// `follow` yields the stored history from `from`, then live events, in order.
pub async fn follow_history_then_live(log: DynLog) {
    for n in 1..=5 {
        append(&log, event(SUBJECT_A, n), ExpectedVersion::Any).await;
    }
    let mut from_start = ok(log.follow(1).await, "follow(1)");
    let mut from_zero = ok(log.follow(0).await, "follow(0)");
    let mut from_middle = ok(log.follow(3).await, "follow(3)");
    let mut from_next = ok(log.follow(6).await, "follow(6)");

    let history = take_next(&mut from_start, 1, 5).await;
    for (i, e) in history.iter().enumerate() {
        assert_event(e, i as Seq + 1, &event(SUBJECT_A, i as u64 + 1));
    }
    take_next(&mut from_zero, 1, 5).await;
    take_next(&mut from_middle, 3, 3).await;

    for n in 6..=8 {
        append(&log, event(SUBJECT_B, n), ExpectedVersion::Any).await;
    }
    for stream in [
        &mut from_start,
        &mut from_zero,
        &mut from_middle,
        &mut from_next,
    ] {
        let live = take_next(stream, 6, 3).await;
        for (i, e) in live.iter().enumerate() {
            assert_event(e, 6 + i as Seq, &event(SUBJECT_B, 6 + i as u64));
        }
    }
    // One more live event arrives exactly once, right after the previous ones.
    append(&log, event(SUBJECT_C, 9), ExpectedVersion::Any).await;
    for stream in [
        &mut from_start,
        &mut from_zero,
        &mut from_middle,
        &mut from_next,
    ] {
        take_next(stream, 9, 1).await;
    }
}

/// `follow` from a sequence past the end waits for it and starts exactly there.
pub async fn follow_from_future_seq(log: DynLog) {
    append(&log, event(SUBJECT_A, 1), ExpectedVersion::Any).await;
    let mut stream = ok(log.follow(4).await, "follow(4)");
    let mut on_empty = ok(log.follow(1).await, "follow(1)");
    for n in 2..=5 {
        append(&log, event(SUBJECT_A, n), ExpectedVersion::Any).await;
    }
    take_next(&mut stream, 4, 2).await;
    take_next(&mut on_empty, 1, 5).await;
}

/// Followers that subscribe while appends are racing see every event exactly once, in order,
/// from their start sequence.
pub async fn follow_races_with_appends(log: DynLog) {
    const TOTAL: u64 = 300;
    const HISTORY: u64 = 20;
    const FOLLOWERS: u64 = 12;
    for n in 1..=HISTORY {
        append(&log, event(SUBJECT_A, n), ExpectedVersion::Any).await;
    }
    let writer = {
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            for n in HISTORY + 1..=TOTAL {
                append(&log, event(SUBJECT_A, n), ExpectedVersion::Any).await;
                if n % 5 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut followers = Vec::new();
    for k in 0..FOLLOWERS {
        // Starts spread over history, the racing region and beyond the current end.
        let from = 1 + (k * 29) % TOTAL;
        let mut stream = ok(log.follow(from).await, "follow");
        followers.push(tokio::spawn(async move {
            let events = take_next(&mut stream, from, TOTAL - from + 1).await;
            for e in &events {
                assert_eq!(
                    String::from_utf8_lossy(&e.payload),
                    format!(r#"{{"n":{}}}"#, e.seq),
                    "payload of event {}",
                    e.seq
                );
            }
            (from, stream)
        }));
        tokio::task::yield_now().await;
    }
    join(writer).await;
    let mut streams = Vec::new();
    for follower in followers {
        streams.push(join(follower).await);
    }
    // Nothing is repeated after the last event: the next item is the next append.
    append(&log, event(SUBJECT_B, TOTAL + 1), ExpectedVersion::Any).await;
    for (from, mut stream) in streams {
        let next = take_next(&mut stream, TOTAL + 1, 1).await;
        assert_eq!(next[0].subject, SUBJECT_B, "follower from {from}");
    }
}

/// Snapshots: none at first, then the latest saved one; a save replaces the previous one.
pub async fn snapshots(log: DynLog) {
    assert!(ok(log.load_snapshot().await, "load_snapshot").is_none());
    let first = Snapshot {
        seq: 3,
        data: br#"{"clients":["web-app"]}"#.to_vec(),
    };
    ok(log.save_snapshot(first.clone()).await, "save_snapshot");
    assert_eq!(
        ok(log.load_snapshot().await, "load_snapshot"),
        Some(first.clone())
    );
    assert_eq!(
        ok(log.load_snapshot().await, "load_snapshot again"),
        Some(first)
    );

    // Replaced by a bigger and then by a smaller one (no leftover bytes of the old one).
    let bigger = Snapshot {
        seq: 10,
        data: vec![0xAB; 64 * 1024],
    };
    ok(log.save_snapshot(bigger.clone()).await, "save_snapshot");
    assert_eq!(ok(log.load_snapshot().await, "load_snapshot"), Some(bigger));
    let smaller = Snapshot {
        seq: 11,
        data: Vec::new(),
    };
    ok(log.save_snapshot(smaller.clone()).await, "save_snapshot");
    assert_eq!(
        ok(log.load_snapshot().await, "load_snapshot"),
        Some(smaller)
    );

    // Concurrent saves leave one complete snapshot.
    let tasks: Vec<_> = (0..4u64)
        .map(|i| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let snapshot = Snapshot {
                    seq: 100 + i,
                    data: vec![i as u8; 1000 + i as usize],
                };
                ok(
                    log.save_snapshot(snapshot).await,
                    "concurrent save_snapshot",
                );
            })
        })
        .collect();
    for task in tasks {
        join(task).await;
    }
    let last = ok(log.load_snapshot().await, "load_snapshot");
    let Some(last) = last else {
        panic!("no snapshot after concurrent saves");
    };
    let i = last.seq.checked_sub(100).filter(|i| *i < 4);
    let Some(i) = i else {
        panic!("unexpected snapshot seq {}", last.seq);
    };
    assert_eq!(
        last.data,
        vec![i as u8; 1000 + i as usize],
        "snapshot data mixed up"
    );
    // Snapshots are not events.
    assert_eq!(ok(log.last_seq().await, "last_seq"), 0);
}

/// Subjects with empty tokens, whitespace or wildcards are rejected and store nothing.
pub async fn invalid_subjects_rejected(log: DynLog) {
    let bad = [
        "",
        ".",
        "signet..events",
        ".signet.events",
        "signet.events.",
        "signet.events.client.web app",
        "signet.events.client.web\tapp",
        "signet.events.client.web\napp",
        " signet.events",
        "signet.events.*",
        "signet.events.>",
        "signet.*.client",
        "signet.events.cli*nt",
        "signet.events.a>b",
        "signet.events.\u{0}",
    ];
    for subject in bad {
        match log.append(event(subject, 1), ExpectedVersion::Any).await {
            Err(EventLogError::InvalidSubject(s)) => assert_eq!(s, subject),
            other => panic!("subject {subject:?}: expected InvalidSubject, got {other:?}"),
        }
        match log
            .append(event(subject, 1), ExpectedVersion::Exact(0))
            .await
        {
            Err(EventLogError::InvalidSubject(_)) => {}
            other => {
                panic!("subject {subject:?} with Exact(0): expected InvalidSubject, got {other:?}")
            }
        }
    }
    assert_eq!(
        ok(log.last_seq().await, "last_seq"),
        0,
        "a rejected subject was stored"
    );
    // Valid subjects in the `signet.events.` namespace every backend stores (the JetStream
    // stream covers only `signet.events.>`); `validate_subject`'s own tests cover the rest.
    for good in [
        "signet.events.x",
        "signet.events.client.web-app",
        "signet.events.a.b_c.d-e.F9.x:y",
    ] {
        append(&log, event(good, 1), ExpectedVersion::Any).await;
    }
    assert_eq!(ok(log.last_seq().await, "last_seq"), 3);
}

/// A payload that is not one JSON value is rejected and stores nothing.
pub async fn invalid_payload_rejected(log: DynLog) {
    let bad: [&[u8]; 6] = [
        b"",
        b"not json",
        b"{\"a\":",
        b"{} {}",
        b"\xff\xfe",
        b"{\"a\":1}x",
    ];
    for payload in bad {
        let new = NewEvent {
            payload: payload.to_vec(),
            ..event(SUBJECT_A, 1)
        };
        let result = log.append(new, ExpectedVersion::Any).await;
        assert!(
            result.is_err(),
            "payload {:?} was accepted",
            String::from_utf8_lossy(payload)
        );
    }
    assert_eq!(
        ok(log.last_seq().await, "last_seq"),
        0,
        "a rejected payload was stored"
    );
    assert_eq!(ok(log.subject_version(SUBJECT_A).await, "version"), 0);
    assert_eq!(
        append(&log, event(SUBJECT_A, 1), ExpectedVersion::Exact(0)).await,
        1
    );
}

/// Everything survives a restart: events, subject versions, the snapshot, and the next
/// sequence; conflicts are still detected against the persisted versions.
///
/// `reopen` receives the current handle, must drop or close it (the check holds no other
/// clone), and returns a new handle on the same storage. It is called twice.
pub async fn restart<R, Fut>(log: DynLog, mut reopen: R)
where
    R: FnMut(DynLog) -> Fut,
    Fut: Future<Output = DynLog>,
{
    let appended = [
        event(SUBJECT_A, 1),
        event(SUBJECT_B, 2),
        event(SUBJECT_A, 3),
        event(SUBJECT_C, 4),
    ];
    for new in &appended {
        append(&log, new.clone(), ExpectedVersion::Any).await;
    }
    let snapshot = Snapshot {
        seq: 3,
        data: b"projection state".to_vec(),
    };
    ok(log.save_snapshot(snapshot.clone()).await, "save_snapshot");

    let log = within("reopen", reopen(log)).await;
    assert_eq!(ok(log.last_seq().await, "last_seq after restart"), 4);
    assert_eq!(ok(log.subject_version(SUBJECT_A).await, "version"), 3);
    assert_eq!(ok(log.subject_version(SUBJECT_B).await, "version"), 2);
    assert_eq!(ok(log.subject_version(SUBJECT_C).await, "version"), 4);
    let events = read_all(&log).await;
    assert_eq!(events.len(), 4);
    for (i, (e, new)) in events.iter().zip(&appended).enumerate() {
        assert_event(e, i as Seq + 1, new);
    }
    assert_eq!(
        ok(log.load_snapshot().await, "load_snapshot after restart"),
        Some(snapshot)
    );

    match log
        .append(event(SUBJECT_A, 5), ExpectedVersion::Exact(1))
        .await
    {
        Err(EventLogError::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (1, 3)),
        other => panic!("stale version after restart: expected Conflict, got {other:?}"),
    }
    let mut stream = ok(log.follow(1).await, "follow after restart");
    take_next(&mut stream, 1, 4).await;
    let seq = append(&log, event(SUBJECT_A, 5), ExpectedVersion::Exact(3)).await;
    assert_eq!(seq, 5, "sequence after restart");
    take_next(&mut stream, 5, 1).await;
    drop(stream);

    let log = within("second reopen", reopen(log)).await;
    assert_eq!(ok(log.last_seq().await, "last_seq after second restart"), 5);
    assert_eq!(ok(log.subject_version(SUBJECT_A).await, "version"), 5);
    assert_eq!(read_all(&log).await.len(), 5);
    assert_eq!(
        append(&log, event(SUBJECT_B, 6), ExpectedVersion::Exact(2)).await,
        6
    );
}
