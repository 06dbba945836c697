//! The behaviour every [`Store`] backend must show, as a reusable test suite.
//!
//! Compiled for this crate's own tests and, for other crates, behind the `contract-tests`
//! feature. Each check is a `pub async fn` that takes a fresh, empty store and panics with a
//! descriptive message when the backend breaks the contract; [`run_all`] runs every check
//! that needs only a fresh store, and [`restart`] checks what survives a reopen.
//!
//! TTL checks use TTLs of about a second and poll with bounded patience (never a fixed sleep
//! longer than the TTL needs). The race checks spawn Tokio tasks; a multi-threaded runtime
//! makes the races real:
//!
//! ```text
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn contract() {
//!     signet_store::contract::run_all(|| async { fresh_store().await }).await;
//! }
//! ```

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{FamilyToken, Index, Namespace, Result, Rotation, Store, StoreError};

/// A shared handle on the store under test.
pub type DynStore = Arc<dyn Store>;

/// Upper bound for anything a check waits on; reaching it fails the check.
const WAIT: Duration = Duration::from_secs(20);
/// A TTL long enough never to run out during a check.
const LONG: Duration = Duration::from_secs(600);
/// A TTL short enough to watch it run out.
const SHORT: Duration = Duration::from_millis(1_000);
/// Tasks in each race.
const RACERS: usize = 16;

const NS: Namespace = Namespace::AuthorizationCode;

/// Runs every check that needs only a fresh store; `make` is called once per check.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = DynStore>,
{
    let started = Instant::now();
    // The TTL checks wait about a second each: run them side by side.
    let (a, b, c, d) = (make().await, make().await, make().await, make().await);
    tokio::join!(
        ttl_expiry(a),
        counter_window(b),
        family_ttl(c),
        expired_entries_leave_indexes_usable(d)
    );
    answers_ping(make().await).await;
    put_get_round_trip(make().await).await;
    overwrite_replaces_value_and_indexes(make().await).await;
    namespaces_are_isolated(make().await).await;
    large_values(make().await).await;
    ttl_is_mandatory(make().await).await;
    invalid_keys_rejected(make().await).await;
    insert_only_if_absent(make().await).await;
    insert_race_one_winner(make().await).await;
    consume_once(make().await).await;
    consume_race_one_winner(make().await).await;
    delete_entries(make().await).await;
    counters(make().await).await;
    counter_race(make().await).await;
    families_rotate(make().await).await;
    rotate_unknown_keys_change_nothing(make().await).await;
    reuse_deletes_whole_family(make().await).await;
    rotate_race_one_winner(make().await).await;
    delete_family_cascades(make().await).await;
    delete_by_session_and_subject(make().await).await;
    entries_by_lists_live_entries(make().await).await;
    consumed_entries_are_not_counted(make().await).await;
    puts_racing_delete_by_subject_leave_no_orphans(make().await).await;
    tracing::debug!(elapsed = ?started.elapsed(), "store contract suite done");
}

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

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

async fn join<T>(handle: tokio::task::JoinHandle<T>) -> T {
    match within("a spawned task", handle).await {
        Ok(value) => value,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("spawned task failed: {error}"),
        },
    }
}

async fn put(store: &DynStore, ns: Namespace, key: &str, value: &[u8], index: &[Index<'_>]) {
    let what = format!("put {ns}/{key}");
    ok(
        within(&what, store.put(ns, key, value, LONG, index)).await,
        &what,
    );
}

async fn get(store: &DynStore, ns: Namespace, key: &str) -> Option<Vec<u8>> {
    let what = format!("get {ns}/{key}");
    ok(within(&what, store.get(ns, key)).await, &what)
}

async fn create_family(store: &DynStore, id: &str, key: &str, value: &[u8], index: &[Index<'_>]) {
    let what = format!("create_family {id}");
    ok(
        within(&what, store.create_family(id, key, value, LONG, index)).await,
        &what,
    );
}

async fn rotate(store: &DynStore, id: &str, presented: &str, new_key: &str) -> Rotation {
    let what = format!("rotate {id}: {presented} -> {new_key}");
    ok(
        within(
            &what,
            store.rotate(id, presented, new_key, new_key.as_bytes(), LONG),
        )
        .await,
        &what,
    )
}

async fn family_token(store: &DynStore, id: &str) -> Option<FamilyToken> {
    let what = format!("family_token {id}");
    ok(within(&what, store.family_token(id)).await, &what)
}

/// Polls until `key` is gone, for at most `WAIT`; returns how long that took from `since`.
async fn until_gone(store: &DynStore, ns: Namespace, key: &str, since: Instant) -> Duration {
    let mut pause = Duration::from_millis(20);
    loop {
        if get(store, ns, key).await.is_none() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < WAIT,
            "{ns}/{key} still there {WAIT:?} after its TTL"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 256) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// checks
// ---------------------------------------------------------------------------------------------

/// Values round-trip byte for byte, including empty and non-UTF-8 ones; a missing key is
/// `None`.
/// A reachable backend answers [`Store::ping`].
pub async fn answers_ping(store: DynStore) {
    store.ping().await.expect("a reachable store answers ping");
}

pub async fn put_get_round_trip(store: DynStore) {
    assert_eq!(get(&store, NS, "missing").await, None);
    let values: [&[u8]; 4] = [
        b"",
        b"plain",
        &[0, 255, 0xc3, 0x28, 10, 13],
        "é🦀".as_bytes(),
    ];
    for (i, value) in values.iter().enumerate() {
        let key = format!("k{i}");
        put(&store, NS, &key, value, &[]).await;
        assert_eq!(
            get(&store, NS, &key).await.as_deref(),
            Some(*value),
            "value {i} read back"
        );
    }
    // Keys may use every allowed character.
    let odd = "!\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az|~";
    put(&store, NS, odd, b"odd", &[]).await;
    assert_eq!(get(&store, NS, odd).await.as_deref(), Some(&b"odd"[..]));
    let long = "k".repeat(crate::MAX_KEY_LEN);
    put(&store, NS, &long, b"long", &[]).await;
    assert_eq!(get(&store, NS, &long).await.as_deref(), Some(&b"long"[..]));
}

/// A put replaces the value and the indexes of an existing key.
pub async fn overwrite_replaces_value_and_indexes(store: DynStore) {
    put(&store, NS, "k", b"one", &[Index::Subject("alice")]).await;
    put(&store, NS, "k", b"two", &[Index::Subject("bob")]).await;
    assert_eq!(get(&store, NS, "k").await.as_deref(), Some(&b"two"[..]));
    assert_eq!(
        ok(store.delete_by_subject("alice").await, "delete_by_subject"),
        0,
        "the old index no longer holds the entry"
    );
    assert_eq!(get(&store, NS, "k").await.as_deref(), Some(&b"two"[..]));
    assert_eq!(
        ok(store.delete_by_subject("bob").await, "delete_by_subject"),
        1
    );
    assert_eq!(get(&store, NS, "k").await, None);
}

/// The same key in two namespaces is two entries; families are their own space.
pub async fn namespaces_are_isolated(store: DynStore) {
    for (i, ns) in Namespace::ALL.iter().enumerate() {
        put(&store, *ns, "same", format!("v{i}").as_bytes(), &[]).await;
    }
    create_family(&store, "same", "same", b"fam", &[]).await;
    for (i, ns) in Namespace::ALL.iter().enumerate() {
        assert_eq!(
            get(&store, *ns, "same").await,
            Some(format!("v{i}").into_bytes()),
            "namespace {ns}"
        );
    }
    assert!(ok(store.delete(Namespace::Session, "same").await, "delete"));
    assert_eq!(get(&store, Namespace::Session, "same").await, None);
    assert_eq!(
        get(&store, Namespace::Consent, "same").await.as_deref(),
        Some(&b"v2"[..])
    );
    assert_eq!(
        ok(
            store.consume(Namespace::DeviceCode, "same").await,
            "consume"
        )
        .as_deref(),
        Some(&b"v3"[..])
    );
    assert_eq!(
        family_token(&store, "same").await.map(|t| t.value),
        Some(b"fam".to_vec())
    );
}

/// Values of several MiB round-trip.
pub async fn large_values(store: DynStore) {
    for size in [64 * 1024, 1024 * 1024, 4 * 1024 * 1024] {
        let value = bytes(size);
        let key = format!("big{size}");
        put(&store, NS, &key, &value, &[Index::Subject("big")]).await;
        assert!(
            get(&store, NS, &key).await == Some(value.clone()),
            "{size} bytes read back"
        );
        assert!(
            ok(store.consume(NS, &key).await, "consume") == Some(value),
            "{size} bytes consumed"
        );
    }
    let value = bytes(1024 * 1024);
    create_family(&store, "bigfam", "t0", &value, &[]).await;
    let what = "rotate a large family";
    match ok(store.rotate("bigfam", "t0", "t1", &value, LONG).await, what) {
        Rotation::Rotated { old_value } => assert!(old_value == value, "{what}: old value"),
        other => panic!("{what}: {other:?}"),
    }
}

/// Entries, counters and families disappear after their TTL, and not before.
pub async fn ttl_expiry(store: DynStore) {
    let start = Instant::now();
    ok(store.put(NS, "short", b"v", SHORT, &[]).await, "put short");
    ok(
        store
            .put(NS, "short-indexed", b"v", SHORT, &[Index::Session("s")])
            .await,
        "put short indexed",
    );
    assert!(ok(
        store.insert(NS, "short-insert", b"v", SHORT).await,
        "insert"
    ));
    put(&store, NS, "long", b"v", &[]).await;
    let fresh = get(&store, NS, "short").await;
    if start.elapsed() < SHORT / 2 {
        assert_eq!(fresh.as_deref(), Some(&b"v"[..]), "a fresh entry is there");
    }
    for key in ["short", "short-indexed", "short-insert"] {
        let after = until_gone(&store, NS, key, start).await;
        assert!(
            after >= SHORT - Duration::from_millis(50),
            "{key} vanished after {after:?}, before its TTL of {SHORT:?}"
        );
    }
    assert_eq!(
        ok(store.consume(NS, "short").await, "consume expired"),
        None
    );
    assert!(
        ok(
            store.insert(NS, "short-insert", b"again", LONG).await,
            "insert over expired"
        ),
        "an expired entry does not block an insert"
    );
    assert_eq!(get(&store, NS, "long").await.as_deref(), Some(&b"v"[..]));
}

/// Every write needs a positive TTL.
pub async fn ttl_is_mandatory(store: DynStore) {
    let zero = Duration::ZERO;
    let results = [
        store.put(NS, "k", b"v", zero, &[]).await.map(|_| ()),
        store.insert(NS, "k", b"v", zero).await.map(|_| ()),
        store.incr(NS, "k", zero).await.map(|_| ()),
        store.create_family("f", "t", b"v", zero, &[]).await,
    ];
    for (i, r) in results.into_iter().enumerate() {
        assert!(matches!(r, Err(StoreError::InvalidTtl)), "write {i}: {r:?}");
    }
    create_family(&store, "f", "t0", b"v", &[]).await;
    let r = store.rotate("f", "t0", "t1", b"v", zero).await;
    assert!(matches!(r, Err(StoreError::InvalidTtl)), "rotate: {r:?}");
    assert_eq!(
        rotate(&store, "f", "t0", "t1").await,
        Rotation::Rotated {
            old_value: b"v".to_vec()
        }
    );
    // A sub-millisecond TTL is rounded up, not refused.
    ok(
        store
            .put(NS, "tiny", b"v", Duration::from_micros(10), &[])
            .await,
        "put with a 10 µs TTL",
    );
    assert_eq!(get(&store, NS, "k").await, None, "nothing was written");
}

/// Malformed keys and ids are refused before anything is written.
pub async fn invalid_keys_rejected(store: DynStore) {
    let long = "k".repeat(crate::MAX_KEY_LEN + 1);
    for bad in ["", "a b", "a\nb", "{tag}", "caf\u{e9}", long.as_str()] {
        let results = [
            store.put(NS, bad, b"v", LONG, &[]).await.err(),
            store
                .put(NS, "k", b"v", LONG, &[Index::Subject(bad)])
                .await
                .err(),
            store
                .put(NS, "k", b"v", LONG, &[Index::Session(bad)])
                .await
                .err(),
            store
                .put(NS, "k", b"v", LONG, &[Index::Family(bad)])
                .await
                .err(),
            store.get(NS, bad).await.err(),
            store.consume(NS, bad).await.err(),
            store.incr(NS, bad, LONG).await.err(),
            store.create_family(bad, "t", b"v", LONG, &[]).await.err(),
            store.create_family("f", bad, b"v", LONG, &[]).await.err(),
            store.rotate("f", bad, "t2", b"v", LONG).await.err(),
            store.delete_by_subject(bad).await.err(),
        ];
        for (i, r) in results.into_iter().enumerate() {
            assert!(
                matches!(r, Some(StoreError::InvalidKey { .. })),
                "call {i} with {bad:?}: {r:?}"
            );
        }
    }
    assert_eq!(get(&store, NS, "k").await, None, "nothing was written");
    let r = store
        .create_family("f", "t", b"v", LONG, &[Index::Family("other")])
        .await;
    assert!(matches!(r, Err(StoreError::InvalidArgument(_))), "{r:?}");
    create_family(&store, "f", "t", b"v", &[]).await;
    let r = store.rotate("f", "t", "t", b"v", LONG).await;
    assert!(matches!(r, Err(StoreError::InvalidArgument(_))), "{r:?}");
    // An error message never repeats the key: it may be a secret.
    let secret = "secret token value";
    let msg = store
        .get(NS, secret)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(!msg.contains(secret) && !msg.is_empty(), "{msg}");
}

/// `insert` writes only where no live entry is.
pub async fn insert_only_if_absent(store: DynStore) {
    assert!(ok(store.insert(NS, "k", b"first", LONG).await, "insert"));
    assert!(!ok(
        store.insert(NS, "k", b"second", LONG).await,
        "insert again"
    ));
    assert_eq!(get(&store, NS, "k").await.as_deref(), Some(&b"first"[..]));
    assert!(ok(store.delete(NS, "k").await, "delete"));
    assert!(ok(
        store.insert(NS, "k", b"third", LONG).await,
        "insert after delete"
    ));
    assert_eq!(get(&store, NS, "k").await.as_deref(), Some(&b"third"[..]));
}

/// Of N racing inserts of one key, exactly one wins, and its value is the one stored.
pub async fn insert_race_one_winner(store: DynStore) {
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let v = format!("racer{i}");
                (
                    v.clone(),
                    store
                        .insert(Namespace::ReplayGuard, "jti", v.as_bytes(), LONG)
                        .await,
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (v, r) = join(t).await;
        if ok(r, "racing insert") {
            winners.push(v);
        }
    }
    assert_eq!(winners.len(), 1, "racing inserts: winners {winners:?}");
    assert_eq!(
        get(&store, Namespace::ReplayGuard, "jti").await,
        Some(winners[0].clone().into_bytes())
    );
}

/// `consume` returns the value once, then nothing.
pub async fn consume_once(store: DynStore) {
    put(
        &store,
        NS,
        "code",
        b"grant",
        &[Index::Session("s"), Index::Subject("u")],
    )
    .await;
    assert_eq!(
        ok(store.consume(NS, "code").await, "consume").as_deref(),
        Some(&b"grant"[..])
    );
    assert_eq!(ok(store.consume(NS, "code").await, "consume again"), None);
    assert_eq!(get(&store, NS, "code").await, None);
    assert_eq!(
        ok(store.consume(NS, "never").await, "consume missing"),
        None
    );
}

/// N tasks consuming one code: exactly one gets it.
pub async fn consume_race_one_winner(store: DynStore) {
    for round in 0..3 {
        let key = format!("code{round}");
        put(&store, NS, &key, b"grant", &[Index::Subject("u")]).await;
        let tasks: Vec<_> = (0..RACERS)
            .map(|_| {
                let store = store.clone();
                let key = key.clone();
                tokio::spawn(async move { store.consume(NS, &key).await })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            if let Some(v) = ok(join(t).await, "racing consume") {
                assert_eq!(v, b"grant");
                winners += 1;
            }
        }
        assert_eq!(
            winners, 1,
            "round {round}: {winners} tasks consumed one code"
        );
    }
}

/// `delete` reports whether there was a live entry.
pub async fn delete_entries(store: DynStore) {
    put(&store, NS, "k", b"v", &[Index::Subject("u")]).await;
    assert!(ok(store.delete(NS, "k").await, "delete"));
    assert!(!ok(store.delete(NS, "k").await, "delete again"));
    assert_eq!(get(&store, NS, "k").await, None);
    assert_eq!(
        ok(store.delete_by_subject("u").await, "delete_by_subject"),
        0
    );
}

/// Counters count from 1, read back as ASCII decimal, reset with `delete`, and refuse to
/// count a non-counter.
pub async fn counters(store: DynStore) {
    let ns = Namespace::RateLimit;
    for expected in 1..=5 {
        let n = ok(store.incr(ns, "client:a", LONG).await, "incr");
        assert_eq!(n, expected);
    }
    assert_eq!(ok(store.incr(ns, "client:b", LONG).await, "incr b"), 1);
    assert_eq!(
        get(&store, ns, "client:a").await.as_deref(),
        Some(&b"5"[..])
    );
    assert!(ok(store.delete(ns, "client:a").await, "reset"));
    assert_eq!(
        ok(store.incr(ns, "client:a", LONG).await, "incr after reset"),
        1
    );
    // Counters live in the namespace they are given.
    assert_eq!(
        ok(
            store.incr(Namespace::DeviceCode, "client:a", LONG).await,
            "incr"
        ),
        1
    );
    put(&store, ns, "text", b"not a number", &[]).await;
    let r = store.incr(ns, "text", LONG).await;
    assert!(matches!(r, Err(StoreError::NotACounter)), "{r:?}");
    assert_eq!(
        get(&store, ns, "text").await.as_deref(),
        Some(&b"not a number"[..]),
        "a refused increment changes nothing"
    );
    // A counter may start from a stored count.
    put(&store, ns, "preset", b"41", &[]).await;
    assert_eq!(ok(store.incr(ns, "preset", LONG).await, "incr preset"), 42);
}

/// A counter's window starts at its first increment and is not extended by later ones.
pub async fn counter_window(store: DynStore) {
    let ns = Namespace::RateLimit;
    let start = Instant::now();
    assert_eq!(ok(store.incr(ns, "w", SHORT).await, "incr"), 1);
    let mut last = 1;
    // Keep counting well past the window: the count must drop back to 1 once, after the
    // first increment's window ended, however often we increment.
    let reset_at = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = ok(store.incr(ns, "w", SHORT).await, "incr");
        if n == 1 {
            break start.elapsed();
        }
        assert_eq!(n, last + 1, "counter skipped");
        last = n;
        assert!(start.elapsed() < WAIT, "the window never ended");
    };
    assert!(
        reset_at >= SHORT - Duration::from_millis(50),
        "the window ended after {reset_at:?}, before {SHORT:?}"
    );
    assert!(
        reset_at < SHORT * 3,
        "later increments extended the window: reset after {reset_at:?}"
    );
    assert!(last >= 5, "only {last} increments inside the window");
}

/// Of N racing increments, each gets a distinct count and the total is N.
pub async fn counter_race(store: DynStore) {
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.incr(Namespace::RateLimit, "hot", LONG).await })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for t in tasks {
        seen.insert(ok(join(t).await, "racing incr"));
    }
    let expected: BTreeSet<u64> = (1..=RACERS as u64).collect();
    assert_eq!(seen, expected, "racing increments");
}

/// A family rotates one token at a time; the current token reads back.
pub async fn families_rotate(store: DynStore) {
    assert_eq!(family_token(&store, "fam").await, None);
    assert_eq!(
        rotate(&store, "fam", "t0", "t1").await,
        Rotation::Unknown,
        "no such family"
    );
    create_family(&store, "fam", "t0", b"t0", &[]).await;
    let r = store.create_family("fam", "x", b"x", LONG, &[]).await;
    assert!(matches!(r, Err(StoreError::FamilyExists)), "{r:?}");
    assert_eq!(
        family_token(&store, "fam").await,
        Some(FamilyToken {
            key: "t0".into(),
            value: b"t0".to_vec()
        }),
        "a failed create changes nothing"
    );
    for i in 0..5 {
        let (cur, next) = (format!("t{i}"), format!("t{}", i + 1));
        assert_eq!(
            rotate(&store, "fam", &cur, &next).await,
            Rotation::Rotated {
                old_value: cur.clone().into_bytes()
            },
            "rotation {i}"
        );
        assert_eq!(
            family_token(&store, "fam").await,
            Some(FamilyToken {
                key: next.clone(),
                value: next.into_bytes()
            })
        );
    }
}

/// Presenting a key the family never had (or to a family that does not exist) changes
/// nothing: guessing must not revoke anyone's family.
pub async fn rotate_unknown_keys_change_nothing(store: DynStore) {
    create_family(&store, "fam", "t0", b"t0", &[]).await;
    assert_eq!(
        rotate(&store, "fam", "guess", "t9").await,
        Rotation::Unknown
    );
    assert_eq!(rotate(&store, "other", "t0", "t9").await, Rotation::Unknown);
    assert_eq!(
        family_token(&store, "fam").await.map(|t| t.key),
        Some("t0".into())
    );
    assert!(matches!(
        rotate(&store, "fam", "t0", "t1").await,
        Rotation::Rotated { .. }
    ));
}

/// Presenting a rotated token again deletes the whole family, and every entry tied to it,
/// but nothing else.
pub async fn reuse_deletes_whole_family(store: DynStore) {
    create_family(
        &store,
        "fam",
        "t0",
        b"t0",
        &[Index::Session("s"), Index::Subject("u")],
    )
    .await;
    create_family(&store, "other", "o0", b"o0", &[Index::Subject("u")]).await;
    put(
        &store,
        Namespace::ReferenceToken,
        "at1",
        b"a",
        &[Index::Family("fam")],
    )
    .await;
    put(
        &store,
        Namespace::ReferenceToken,
        "at2",
        b"a",
        &[Index::Family("fam"), Index::Subject("u")],
    )
    .await;
    put(
        &store,
        Namespace::ReferenceToken,
        "at3",
        b"a",
        &[Index::Family("other")],
    )
    .await;
    assert!(matches!(
        rotate(&store, "fam", "t0", "t1").await,
        Rotation::Rotated { .. }
    ));
    assert!(matches!(
        rotate(&store, "fam", "t1", "t2").await,
        Rotation::Rotated { .. }
    ));
    assert_eq!(
        rotate(&store, "fam", "t0", "t3").await,
        Rotation::Reused,
        "t0 again"
    );
    assert_eq!(
        family_token(&store, "fam").await,
        None,
        "the family is gone"
    );
    assert_eq!(
        rotate(&store, "fam", "t2", "t3").await,
        Rotation::Unknown,
        "even its current token"
    );
    assert_eq!(
        rotate(&store, "fam", "t1", "t3").await,
        Rotation::Unknown,
        "reported once"
    );
    for key in ["at1", "at2"] {
        assert_eq!(
            get(&store, Namespace::ReferenceToken, key).await,
            None,
            "{key} tied to the family"
        );
    }
    assert!(get(&store, Namespace::ReferenceToken, "at3")
        .await
        .is_some());
    assert!(family_token(&store, "other").await.is_some());
    // The dead family no longer counts for its session or subject.
    assert_eq!(
        ok(store.delete_by_session("s").await, "delete_by_session"),
        0
    );
    assert_eq!(
        ok(store.delete_by_subject("u").await, "delete_by_subject"),
        2,
        "family `other` and its reference token at3"
    );
    // The id can start a new family.
    create_family(&store, "fam", "n0", b"n0", &[]).await;
    assert_eq!(
        rotate(&store, "fam", "t0", "n1").await,
        Rotation::Unknown,
        "old keys mean nothing"
    );
}

/// N tasks rotating one refresh token: exactly one `Rotated`, exactly one `Reused` (the first
/// loser, which deletes the family) and the rest `Unknown`.
pub async fn rotate_race_one_winner(store: DynStore) {
    for round in 0..3 {
        let fam = format!("fam{round}");
        create_family(&store, &fam, "t0", b"t0", &[Index::Subject("u")]).await;
        put(
            &store,
            Namespace::ReferenceToken,
            &format!("at{round}"),
            b"a",
            &[Index::Family(&fam)],
        )
        .await;
        let tasks: Vec<_> = (0..RACERS)
            .map(|i| {
                let store = store.clone();
                let fam = fam.clone();
                tokio::spawn(async move {
                    let new = format!("new{i}");
                    store.rotate(&fam, "t0", &new, new.as_bytes(), LONG).await
                })
            })
            .collect();
        let (mut rotated, mut reused, mut unknown) = (0, 0, 0);
        for t in tasks {
            match ok(join(t).await, "racing rotate") {
                Rotation::Rotated { old_value } => {
                    assert_eq!(old_value, b"t0");
                    rotated += 1;
                }
                Rotation::Reused => reused += 1,
                Rotation::Unknown => unknown += 1,
            }
        }
        assert_eq!(
            (rotated, reused, unknown),
            (1, 1, RACERS - 2),
            "round {round}: (rotated, reused, unknown)"
        );
        assert_eq!(
            family_token(&store, &fam).await,
            None,
            "the family is revoked"
        );
        assert_eq!(
            get(&store, Namespace::ReferenceToken, &format!("at{round}")).await,
            None
        );
    }
}

/// `delete_family` removes the family and what is tied to it, and counts them.
pub async fn delete_family_cascades(store: DynStore) {
    create_family(&store, "fam", "t0", b"t0", &[Index::Session("s")]).await;
    assert!(matches!(
        rotate(&store, "fam", "t0", "t1").await,
        Rotation::Rotated { .. }
    ));
    put(
        &store,
        Namespace::ReferenceToken,
        "at1",
        b"a",
        &[Index::Family("fam")],
    )
    .await;
    put(
        &store,
        Namespace::ReferenceToken,
        "at2",
        b"a",
        &[Index::Family("fam")],
    )
    .await;
    put(
        &store,
        Namespace::ReferenceToken,
        "keep",
        b"a",
        &[Index::Family("keep")],
    )
    .await;
    assert_eq!(ok(store.delete_family("fam").await, "delete_family"), 3);
    assert_eq!(family_token(&store, "fam").await, None);
    assert_eq!(
        rotate(&store, "fam", "t0", "t2").await,
        Rotation::Unknown,
        "a retired key after delete"
    );
    assert_eq!(rotate(&store, "fam", "t1", "t2").await, Rotation::Unknown);
    assert_eq!(
        ok(store.delete_family("fam").await, "delete_family again"),
        0
    );
    assert!(get(&store, Namespace::ReferenceToken, "keep")
        .await
        .is_some());
    // Entries tied to a family that does not exist (any more) still go with it.
    assert_eq!(
        ok(store.delete_family("keep").await, "delete_family keep"),
        1
    );
    assert_eq!(
        ok(store.delete_by_session("s").await, "delete_by_session"),
        0
    );
}

/// `entries_by` lists the live entries of one namespace tied to an index, and nothing else.
pub async fn entries_by_lists_live_entries(store: DynStore) {
    let (alice, bob) = (Index::Subject("alice"), Index::Subject("bob"));
    let ss = Namespace::Session;
    put(&store, ss, "a1", b"one", &[alice]).await;
    put(&store, ss, "a2", b"two", &[Index::Session("s"), alice]).await;
    put(&store, ss, "gone", b"x", &[alice]).await;
    put(&store, ss, "moved", b"x", &[alice]).await;
    put(&store, ss, "moved", b"y", &[bob]).await;
    put(&store, ss, "b1", b"bob", &[bob]).await;
    put(&store, Namespace::Consent, "a3", b"other ns", &[alice]).await;
    ok(store.consume(ss, "gone").await, "consume");
    let mut listed = ok(store.entries_by(alice, ss).await, "entries_by alice");
    listed.sort();
    assert_eq!(
        listed,
        vec![
            ("a1".into(), b"one".to_vec()),
            ("a2".into(), b"two".to_vec())
        ],
        "entries_by lists exactly the live entries of the namespace tied to the index"
    );
    let mut listed = ok(store.entries_by(bob, ss).await, "entries_by bob");
    listed.sort();
    assert_eq!(
        listed,
        vec![
            ("b1".into(), b"bob".to_vec()),
            ("moved".into(), b"y".to_vec())
        ]
    );
    assert_eq!(
        ok(
            store.entries_by(Index::Session("s"), ss).await,
            "by session"
        ),
        vec![("a2".into(), b"two".to_vec())]
    );
    assert!(ok(
        store.entries_by(Index::Subject("nobody"), ss).await,
        "empty"
    )
    .is_empty());
    ok(store.delete_by_subject("alice").await, "delete_by_subject");
    assert!(ok(store.entries_by(alice, ss).await, "after delete").is_empty());
}

/// Deleting by session or subject removes exactly what is tied to it, families included.
pub async fn delete_by_session_and_subject(store: DynStore) {
    let (s1, s2) = (Index::Session("s1"), Index::Session("s2"));
    let (alice, bob) = (Index::Subject("alice"), Index::Subject("bob"));
    put(&store, Namespace::Session, "s1", b"session", &[alice]).await;
    put(&store, Namespace::Session, "s2", b"session", &[alice]).await;
    put(&store, NS, "c1", b"code", &[s1, alice]).await;
    put(&store, NS, "c2", b"code", &[s2, alice]).await;
    put(
        &store,
        Namespace::Consent,
        "alice:app",
        b"consent",
        &[alice],
    )
    .await;
    put(&store, Namespace::Session, "s3", b"session", &[bob]).await;
    put(&store, NS, "c3", b"code", &[Index::Session("s3"), bob]).await;
    put(&store, NS, "loose", b"code", &[]).await;
    create_family(&store, "f1", "t0", b"t", &[s1, alice]).await;
    put(
        &store,
        Namespace::ReferenceToken,
        "at1",
        b"a",
        &[Index::Family("f1")],
    )
    .await;
    create_family(&store, "f3", "t0", b"t", &[Index::Session("s3"), bob]).await;

    // Session s1: code c1, family f1 and its reference token at1.
    assert_eq!(
        ok(store.delete_by_session("s1").await, "delete_by_session s1"),
        3
    );
    assert_eq!(get(&store, NS, "c1").await, None);
    assert_eq!(family_token(&store, "f1").await, None);
    assert_eq!(get(&store, Namespace::ReferenceToken, "at1").await, None);
    assert!(get(&store, NS, "c2").await.is_some());
    assert_eq!(ok(store.delete_by_session("s1").await, "again"), 0);

    // Subject alice: sessions s1 and s2, code c2, the consent.
    assert_eq!(
        ok(
            store.delete_by_subject("alice").await,
            "delete_by_subject alice"
        ),
        4
    );
    for (ns, key) in [
        (Namespace::Session, "s1"),
        (Namespace::Session, "s2"),
        (NS, "c2"),
        (Namespace::Consent, "alice:app"),
    ] {
        assert_eq!(get(&store, ns, key).await, None, "{ns}/{key}");
    }
    // Bob's and untied entries stay.
    assert!(get(&store, Namespace::Session, "s3").await.is_some());
    assert!(get(&store, NS, "c3").await.is_some());
    assert!(get(&store, NS, "loose").await.is_some());
    assert!(family_token(&store, "f3").await.is_some());
    // An index can be used again after a delete.
    put(&store, NS, "c4", b"code", &[alice]).await;
    assert_eq!(ok(store.delete_by(alice).await, "delete_by alice"), 1);
    assert_eq!(ok(store.delete_by_subject("nobody").await, "nobody"), 0);
    assert_eq!(ok(store.delete_by_subject("bob").await, "bob"), 3);
}

/// Entries that were consumed, deleted or overwritten elsewhere are not counted again.
pub async fn consumed_entries_are_not_counted(store: DynStore) {
    for i in 0..6 {
        put(
            &store,
            NS,
            &format!("c{i}"),
            b"code",
            &[Index::Subject("u")],
        )
        .await;
    }
    assert!(ok(store.consume(NS, "c0").await, "consume").is_some());
    assert!(ok(store.delete(NS, "c1").await, "delete"));
    put(&store, NS, "c2", b"code", &[]).await;
    assert_eq!(
        ok(store.delete_by_subject("u").await, "delete_by_subject"),
        3
    );
    assert!(
        get(&store, NS, "c2").await.is_some(),
        "c2 was re-put without the index"
    );
}

/// Entries that expired leave their indexes working for the others.
pub async fn expired_entries_leave_indexes_usable(store: DynStore) {
    let start = Instant::now();
    ok(
        store
            .put(NS, "short", b"v", SHORT, &[Index::Subject("u")])
            .await,
        "put short",
    );
    put(&store, NS, "long", b"v", &[Index::Subject("u")]).await;
    until_gone(&store, NS, "short", start).await;
    assert_eq!(
        ok(store.delete_by_subject("u").await, "delete_by_subject"),
        1
    );
    assert_eq!(get(&store, NS, "long").await, None);
}

/// A family lives `ttl` from its creation or last rotation.
pub async fn family_ttl(store: DynStore) {
    let start = Instant::now();
    ok(
        store
            .create_family("short", "t0", b"v", SHORT, &[Index::Subject("u")])
            .await,
        "create short family",
    );
    ok(
        store.create_family("slide", "t0", b"v", SHORT, &[]).await,
        "create sliding family",
    );
    // Rotating pushes the expiry out: rotate `slide` to a long TTL.
    assert!(matches!(
        rotate(&store, "slide", "t0", "t1").await,
        Rotation::Rotated { .. }
    ));
    loop {
        if family_token(&store, "short").await.is_none() {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "family still there {WAIT:?} after its TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = start.elapsed();
    assert!(
        after >= SHORT - Duration::from_millis(50),
        "family expired after {after:?}"
    );
    assert_eq!(rotate(&store, "short", "t0", "t1").await, Rotation::Unknown);
    ok(
        store.create_family("short", "n0", b"v", LONG, &[]).await,
        "an expired family id can be reused",
    );
    assert_eq!(
        family_token(&store, "slide").await.map(|t| t.key),
        Some("t1".into())
    );
}

/// Puts racing with deletes by their subject never leave an entry that the subject's index
/// no longer knows: after the race, one more delete by the subject removes every survivor.
pub async fn puts_racing_delete_by_subject_leave_no_orphans(store: DynStore) {
    const PUTS: usize = 48;
    let putters: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..PUTS / 4 {
                    let key = format!("k{t}-{i}");
                    let idx = [Index::Subject("racy"), Index::Session("racy-s")];
                    ok(store.put(NS, &key, b"v", LONG, &idx).await, "racing put");
                }
            })
        })
        .collect();
    let deleter = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..8 {
                ok(
                    store.delete_by_subject("racy").await,
                    "racing delete_by_subject",
                );
                tokio::task::yield_now().await;
            }
        })
    };
    for p in putters {
        join(p).await;
    }
    join(deleter).await;
    let mut survivors = 0;
    for t in 0..4 {
        for i in 0..PUTS / 4 {
            if get(&store, NS, &format!("k{t}-{i}")).await.is_some() {
                survivors += 1;
            }
        }
    }
    assert_eq!(
        ok(
            store.delete_by_subject("racy").await,
            "final delete_by_subject"
        ),
        survivors,
        "every surviving entry is still in its subject's index"
    );
    for t in 0..4 {
        for i in 0..PUTS / 4 {
            let key = format!("k{t}-{i}");
            assert_eq!(get(&store, NS, &key).await, None, "{key} orphaned");
        }
    }
    assert_eq!(ok(store.delete_by_session("racy-s").await, "session"), 0);
}

/// What survives a restart: live entries with their indexes, counters, families with their
/// retired keys; what expired meanwhile stays gone. `reopen` gets the old handle (drop it)
/// and returns a new one on the same storage.
pub async fn restart<R, Fut>(store: DynStore, mut reopen: R)
where
    R: FnMut(DynStore) -> Fut,
    Fut: Future<Output = DynStore>,
{
    put(
        &store,
        Namespace::Session,
        "sess",
        b"session",
        &[Index::Subject("u")],
    )
    .await;
    put(&store, NS, "code", b"code", &[Index::Session("sess")]).await;
    ok(
        store
            .put(NS, "short", b"v", Duration::from_millis(300), &[])
            .await,
        "put short",
    );
    for _ in 0..3 {
        ok(store.incr(Namespace::RateLimit, "n", LONG).await, "incr");
    }
    create_family(&store, "fam", "t0", b"t0", &[Index::Subject("u")]).await;
    assert!(matches!(
        rotate(&store, "fam", "t0", "t1").await,
        Rotation::Rotated { .. }
    ));
    put(
        &store,
        Namespace::ReferenceToken,
        "at",
        b"a",
        &[Index::Family("fam")],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(350)).await;

    let store = within("reopen", reopen(store)).await;
    assert_eq!(
        get(&store, Namespace::Session, "sess").await.as_deref(),
        Some(&b"session"[..])
    );
    assert_eq!(
        get(&store, NS, "short").await,
        None,
        "expired before the restart"
    );
    assert_eq!(
        ok(
            store.incr(Namespace::RateLimit, "n", LONG).await,
            "incr after restart"
        ),
        4
    );
    assert_eq!(
        family_token(&store, "fam").await.map(|t| t.key),
        Some("t1".into())
    );
    assert_eq!(
        ok(store.consume(NS, "code").await, "consume").as_deref(),
        Some(&b"code"[..])
    );

    let store = within("second reopen", reopen(store)).await;
    assert_eq!(
        ok(store.consume(NS, "code").await, "consume after restart"),
        None,
        "consumed stays consumed"
    );
    assert_eq!(
        rotate(&store, "fam", "t0", "t2").await,
        Rotation::Reused,
        "retired keys survive"
    );
    assert_eq!(get(&store, Namespace::ReferenceToken, "at").await, None);
    assert_eq!(
        ok(store.delete_by_subject("u").await, "delete_by_subject"),
        1,
        "the session"
    );
}
