//! The behaviour every [`ProjectionKv`] backend must show, as a reusable test suite
//! (compiled for this crate's tests and, for other crates, behind the `contract-tests`
//! feature, like [`crate::contract`]).
//!
//! Each check is a `pub async fn` that takes a fresh, empty store and panics with a message
//! when the backend breaks the contract; [`run_all`] runs every check, and [`restart`]
//! checks durability across a reopen. Run them in a multi-threaded Tokio runtime so the
//! races are real:
//!
//! ```text
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn contract() {
//!     signet_eventlog::kv::contract::run_all(|| async { fresh_store().await }).await;
//! }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{KvError, ProjectionKv, MAX_KEY_LEN, MAX_VALUE_LEN};
use crate::Seq;

/// A shared handle on the store under test.
pub type DynKv = Arc<dyn ProjectionKv>;

/// Upper bound for anything a check waits on.
const WAIT: Duration = Duration::from_secs(30);

/// Runs every check that needs only a fresh, empty store; `make` is called once per check.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = DynKv>,
{
    empty_store(make().await).await;
    apply_and_get(make().await).await;
    only_newer_sequences_write(make().await).await;
    tombstones_hold_their_sequence(make().await).await;
    values_are_bytes(make().await).await;
    keys_are_distinct(make().await).await;
    invalid_arguments_rejected(make().await).await;
    watermark_only_rises(make().await).await;
    racing_appliers_leave_the_newest(make().await).await;
}

fn ok<T>(result: super::Result<T>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error: {e}"),
    }
}

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

async fn get(kv: &DynKv, key: &str) -> Option<(Vec<u8>, Seq)> {
    let what = format!("get {key:?}");
    ok(within(&what, kv.get(key)).await, &what)
}

async fn apply(kv: &DynKv, key: &str, value: Option<&[u8]>, seq: Seq) -> bool {
    let what = format!("apply {key:?} at {seq}");
    ok(within(&what, kv.apply(key, value, seq)).await, &what)
}

/// A fresh store is empty, at watermark 0.
pub async fn empty_store(kv: DynKv) {
    assert_eq!(get(&kv, "sub:nobody").await, None);
    assert_eq!(ok(kv.applied_seq().await, "applied_seq"), 0);
}

/// A value reads back with the sequence that wrote it.
pub async fn apply_and_get(kv: DynKv) {
    assert!(apply(&kv, "sub:a", Some(b"one"), 3).await);
    assert_eq!(get(&kv, "sub:a").await, Some((b"one".to_vec(), 3)));
    assert!(apply(&kv, "sub:b", Some(b"two"), 4).await);
    assert_eq!(get(&kv, "sub:a").await, Some((b"one".to_vec(), 3)));
    assert_eq!(get(&kv, "sub:b").await, Some((b"two".to_vec(), 4)));
}

/// Older and equal sequences are ignored (replays, slower nodes); newer ones overwrite.
pub async fn only_newer_sequences_write(kv: DynKv) {
    assert!(apply(&kv, "k", Some(b"v5"), 5).await);
    assert!(
        !apply(&kv, "k", Some(b"v4"), 4).await,
        "an older event wrote"
    );
    assert!(!apply(&kv, "k", Some(b"other"), 5).await, "a replay wrote");
    assert!(!apply(&kv, "k", None, 2).await, "an older delete wrote");
    assert_eq!(get(&kv, "k").await, Some((b"v5".to_vec(), 5)));
    assert!(apply(&kv, "k", Some(b"v9"), 9).await);
    assert_eq!(get(&kv, "k").await, Some((b"v9".to_vec(), 9)));
}

/// A delete leaves a tombstone with its sequence: the key reads as absent, an older write
/// cannot bring it back, a newer one can. Deleting a key never written records it too.
pub async fn tombstones_hold_their_sequence(kv: DynKv) {
    assert!(apply(&kv, "k", Some(b"v"), 3).await);
    assert!(apply(&kv, "k", None, 6).await);
    assert_eq!(get(&kv, "k").await, None);
    assert!(!apply(&kv, "k", Some(b"old"), 4).await, "resurrected");
    assert!(!apply(&kv, "k", None, 6).await, "a replayed delete wrote");
    assert_eq!(get(&kv, "k").await, None);
    assert!(apply(&kv, "k", Some(b"new"), 7).await);
    assert_eq!(get(&kv, "k").await, Some((b"new".to_vec(), 7)));

    assert!(apply(&kv, "never", None, 10).await);
    assert!(!apply(&kv, "never", Some(b"late"), 9).await, "resurrected");
    assert_eq!(get(&kv, "never").await, None);
    assert!(apply(&kv, "never", None, 11).await);
    assert_eq!(get(&kv, "never").await, None);
}

/// Any bytes round-trip, an empty value is not a delete, and the largest value fits.
pub async fn values_are_bytes(kv: DynKv) {
    let all: Vec<u8> = (0..=255).collect();
    assert!(apply(&kv, "bytes", Some(&all), 1).await);
    assert_eq!(get(&kv, "bytes").await, Some((all, 1)));
    assert!(apply(&kv, "empty", Some(b""), 2).await);
    assert_eq!(get(&kv, "empty").await, Some((Vec::new(), 2)));
    let json = br#"{"sub":"q1B3n0hXz5T9kQ2mW8rYvA","claims":{"name":"\u00e9"}}"#;
    assert!(apply(&kv, "json", Some(json), 3).await);
    assert_eq!(get(&kv, "json").await, Some((json.to_vec(), 3)));
    let big: Vec<u8> = (0..MAX_VALUE_LEN).map(|i| (i % 251) as u8).collect();
    assert!(apply(&kv, "big", Some(&big), u64::MAX).await);
    assert_eq!(get(&kv, "big").await, Some((big, u64::MAX)));
}

/// Keys are arbitrary strings (separators, wildcards, escapes, non-ASCII, the longest
/// allowed), each its own entry.
pub async fn keys_are_distinct(kv: DynKv) {
    let longest = "é".repeat(MAX_KEY_LEN / 2);
    let keys: Vec<String> = [
        "username:alice",
        "username:Alice",
        "username:élodie",
        "username:a.b",
        "username:a=2Eb",
        "username:a~2Eb",
        "username:a b",
        "username:*",
        "username:>",
        "username:$KV",
        "username:",
        "sub:alice",
        ":",
        ".",
        "=",
        "applied_seq",
        "signet.applied_seq",
        "🦀",
    ]
    .iter()
    .map(|k| (*k).to_owned())
    .chain([longest])
    .collect();
    for (i, key) in keys.iter().enumerate() {
        assert!(
            apply(&kv, key, Some(key.as_bytes()), i as Seq + 1).await,
            "{key:?}"
        );
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            get(&kv, key).await,
            Some((key.as_bytes().to_vec(), i as Seq + 1)),
            "{key:?}"
        );
    }
    assert_eq!(get(&kv, "username:ALICE").await, None);
    assert_eq!(
        ok(kv.applied_seq().await, "applied_seq"),
        0,
        "keys are not the watermark"
    );
}

/// Bad keys, sequence 0 and oversized values are refused and write nothing.
pub async fn invalid_arguments_rejected(kv: DynKv) {
    let too_long = "x".repeat(MAX_KEY_LEN + 1);
    for key in ["", "a\nb", "a\u{0}", too_long.as_str()] {
        assert!(
            matches!(
                kv.apply(key, Some(b"v"), 1).await,
                Err(KvError::InvalidKey(_))
            ),
            "apply {key:?}"
        );
        assert!(
            matches!(kv.get(key).await, Err(KvError::InvalidKey(_))),
            "get {key:?}"
        );
    }
    assert!(matches!(
        kv.apply("k", Some(b"v"), 0).await,
        Err(KvError::InvalidSeq)
    ));
    let big = vec![7u8; MAX_VALUE_LEN + 1];
    assert!(matches!(
        kv.apply("k", Some(&big), 1).await,
        Err(KvError::TooLarge { .. })
    ));
    assert_eq!(get(&kv, "k").await, None);
}

/// The watermark only rises.
pub async fn watermark_only_rises(kv: DynKv) {
    ok(kv.set_applied_seq(5).await, "set 5");
    assert_eq!(ok(kv.applied_seq().await, "applied_seq"), 5);
    ok(kv.set_applied_seq(3).await, "set 3");
    assert_eq!(ok(kv.applied_seq().await, "applied_seq"), 5, "it fell");
    ok(kv.set_applied_seq(9).await, "set 9");
    assert_eq!(ok(kv.applied_seq().await, "applied_seq"), 9);
    // Racing raises leave the highest.
    let mut tasks = Vec::new();
    for seq in [20, 12, 17, 11, 19, 15] {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move { kv.set_applied_seq(seq).await }));
    }
    for t in tasks {
        ok(within("set_applied_seq", t).await.expect("task"), "set");
    }
    assert_eq!(ok(kv.applied_seq().await, "applied_seq"), 20);
    assert_eq!(
        get(&kv, "applied_seq").await,
        None,
        "the watermark is not a key"
    );
}

/// Several appliers (as several nodes following one log) apply the same events in different
/// orders at once: every key ends as its newest event left it.
pub async fn racing_appliers_leave_the_newest(kv: DynKv) {
    const EVENTS: Seq = 24;
    const KEYS: usize = 3;
    // Event s writes key s % KEYS: a value, or a delete for every fourth event.
    let write = |s: Seq| -> (String, Option<Vec<u8>>) {
        let key = format!("race:{}", s as usize % KEYS);
        let value = (!s.is_multiple_of(4)).then(|| format!("v{s}").into_bytes());
        (key, value)
    };
    let mut tasks = Vec::new();
    for applier in 0..4u64 {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            // Each applier its own order: forwards, backwards, odd-then-even, strided.
            let mut order: Vec<Seq> = (1..=EVENTS).collect();
            match applier {
                1 => order.reverse(),
                2 => order.sort_by_key(|s| (s.is_multiple_of(2), *s)),
                3 => order.sort_by_key(|s| (s * 7) % (EVENTS + 1)),
                _ => {}
            }
            for s in order {
                let (key, value) = write(s);
                kv.apply(&key, value.as_deref(), s).await?;
            }
            Ok::<(), KvError>(())
        }));
    }
    for t in tasks {
        ok(within("an applier", t).await.expect("task"), "applier");
    }
    for k in 0..KEYS {
        let key = format!("race:{k}");
        let newest = (1..=EVENTS)
            .rev()
            .find(|s| *s as usize % KEYS == k)
            .unwrap_or(0);
        let expected = write(newest).1.map(|v| (v, newest));
        assert_eq!(get(&kv, &key).await, expected, "{key}");
        // And nothing older can change it now.
        assert!(!apply(&kv, &key, Some(b"late"), newest).await, "{key}");
    }
}

/// Values, tombstones and the watermark survive a reopen: `make` opens the same store each
/// time it is called (the previous handle is dropped first).
pub async fn restart<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = DynKv>,
{
    {
        let kv = make().await;
        assert!(apply(&kv, "sub:a", Some(b"alice"), 4).await);
        assert!(apply(&kv, "sub:b", Some(b"bob"), 5).await);
        assert!(apply(&kv, "sub:b", None, 6).await);
        ok(kv.set_applied_seq(6).await, "set_applied_seq");
        // Applied after the watermark: a backend may lose it in a crash (not before the
        // watermark passes it), so the node applies it again when it resumes.
        assert!(apply(&kv, "sub:c", Some(b"carol"), 7).await);
    }
    let kv = make().await;
    assert_eq!(ok(kv.applied_seq().await, "applied_seq"), 6);
    assert_eq!(get(&kv, "sub:a").await, Some((b"alice".to_vec(), 4)));
    assert_eq!(get(&kv, "sub:b").await, None);
    assert!(
        !apply(&kv, "sub:b", Some(b"bob"), 5).await,
        "tombstone lost"
    );
    // A replay from the watermark is harmless.
    apply(&kv, "sub:c", Some(b"carol"), 7).await;
    assert!(!apply(&kv, "sub:c", Some(b"carol"), 7).await);
    assert_eq!(get(&kv, "sub:c").await, Some((b"carol".to_vec(), 7)));
}
