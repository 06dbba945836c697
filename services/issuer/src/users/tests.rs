use serde_json::json;
use signet_core::scope::ScopeResource;
use signet_core::user::{verify_password, NewUser, UserReplacement};
use signet_core::validation::from_json;
use signet_eventlog::embedded::FileLog;

use super::*;

const PATIENCE: Duration = Duration::from_secs(10);
const PASSWORD: &str = "correct horse battery staple";

fn checked(body: serde_json::Value) -> CheckedUser {
    from_json::<NewUser>(body.to_string().as_bytes())
        .unwrap()
        .check()
        .unwrap()
}

fn replacement(body: serde_json::Value) -> CheckedUser {
    from_json::<UserReplacement>(body.to_string().as_bytes())
        .unwrap()
        .check()
        .unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    log: Arc<dyn EventLog>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = FileLog::open(&dir.path().join("events")).unwrap();
        Fixture { dir, log }
    }

    async fn kv(&self, name: &str) -> Arc<dyn ProjectionKv> {
        Arc::new(RedbKv::open(&self.dir.path().join(name)).await.unwrap())
    }

    /// Appends a configuration event users ignore.
    async fn other_event(&self, name: &str) -> Seq {
        let s: ScopeResource = from_json(json!({ "name": name }).to_string().as_bytes()).unwrap();
        let e = Event::ApiScopeCreated(s);
        self.log
            .append(
                NewEvent {
                    subject: e.subject(),
                    actor: "test".into(),
                    at_ms: 0,
                    payload: e.to_json(),
                },
                ExpectedVersion::Any,
            )
            .await
            .unwrap()
    }
}

async fn state_of(users: &Users, subs: &[&str], names: &[&str]) -> Vec<Option<UserRecord>> {
    let mut out = Vec::new();
    for s in subs {
        out.push(users.by_sub(s).await.unwrap());
    }
    for n in names {
        out.push(users.by_username(n).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_read_replace_delete() {
    let f = Fixture::new();
    let users = Users::start(f.kv("users.redb").await, f.log.clone())
        .await
        .unwrap();
    f.other_event("read").await;
    let alice = users
        .create(
            "admin",
            checked(
                json!({"username": "Alice", "password": PASSWORD, "claims": {"email": "a@x.y"}}),
            ),
            PATIENCE,
        )
        .await
        .unwrap();
    assert_eq!(alice.sub.len(), 22);
    assert!(verify_password(&alice.password_hash, PASSWORD));
    assert_eq!(users.applied_seq(), f.log.last_seq().await.unwrap());
    // Case-insensitive lookups; the projection has what the event said.
    for name in ["alice", "ALICE", "Alice"] {
        assert_eq!(
            users.by_username(name).await.unwrap().as_ref(),
            Some(&alice)
        );
    }
    assert_eq!(
        users.by_sub(&alice.sub).await.unwrap().as_ref(),
        Some(&alice)
    );
    assert_eq!(users.by_sub("nobody").await.unwrap(), None);
    assert_eq!(users.by_sub("").await.unwrap(), None);
    assert_eq!(users.by_sub(&"x".repeat(5000)).await.unwrap(), None);
    assert_eq!(users.by_username("a\u{0}b").await.unwrap(), None);

    // A taken username, in any case.
    let taken = users
        .create(
            "admin",
            checked(json!({"username": "aLiCe", "password": PASSWORD})),
            PATIENCE,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(taken, UserWriteError::UsernameTaken(_)),
        "{taken:?}"
    );

    // Rename: the old name is released, the hash kept without a password.
    let renamed = users
        .replace(
            "admin",
            &alice.sub,
            replacement(json!({"username": "Alice.L", "enabled": false})),
            PATIENCE,
        )
        .await
        .unwrap();
    assert_eq!(renamed.password_hash, alice.password_hash);
    assert_eq!(users.by_username("alice").await.unwrap(), None);
    assert_eq!(
        users.by_username("alice.l").await.unwrap().as_ref(),
        Some(&renamed)
    );
    // A new password replaces the hash.
    let repassworded = users
        .replace(
            "admin",
            &alice.sub,
            replacement(json!({"username": "alice.l", "password": "another password"})),
            PATIENCE,
        )
        .await
        .unwrap();
    assert!(verify_password(
        &repassworded.password_hash,
        "another password"
    ));
    assert!(!verify_password(&repassworded.password_hash, PASSWORD));

    // The released name can be taken by someone else; renaming onto a taken name is refused.
    let bob = users
        .create(
            "admin",
            checked(json!({"username": "ALICE", "password": PASSWORD})),
            PATIENCE,
        )
        .await
        .unwrap();
    let e = users
        .replace(
            "admin",
            &bob.sub,
            replacement(json!({"username": "Alice.L"})),
            PATIENCE,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, UserWriteError::UsernameTaken(_)), "{e:?}");
    let e = users
        .replace(
            "admin",
            "ghost",
            replacement(json!({"username": "g"})),
            PATIENCE,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, UserWriteError::NotFound(_)), "{e:?}");

    // Delete: the record and its username go.
    let gone = users.delete("admin", &alice.sub, PATIENCE).await.unwrap();
    assert_eq!(gone.sub, alice.sub);
    assert_eq!(users.by_sub(&alice.sub).await.unwrap(), None);
    assert_eq!(users.by_username("alice.l").await.unwrap(), None);
    assert_eq!(
        users.by_username("alice").await.unwrap().unwrap().sub,
        bob.sub
    );
    let e = users
        .delete("admin", &alice.sub, PATIENCE)
        .await
        .unwrap_err();
    assert!(matches!(e, UserWriteError::NotFound(_)), "{e:?}");
    // Deleting a user does not touch another's name.
    let e = users
        .create(
            "admin",
            checked(json!({"username": "alice.l", "password": PASSWORD})),
            PATIENCE,
        )
        .await;
    assert!(e.is_ok());
}

/// Restarts resume from the watermark; a projection rebuilt from scratch, and two nodes
/// folding the same log into one store, end in the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rebuild_and_two_nodes_agree() {
    let f = Fixture::new();
    let kv = f.kv("users.redb").await;
    let users = Users::start(kv.clone(), f.log.clone()).await.unwrap();
    let mut subs = Vec::new();
    for i in 0..6 {
        let u = users
            .create(
                "admin",
                checked(json!({"username": format!("user{i}"), "password": PASSWORD})),
                PATIENCE,
            )
            .await
            .unwrap();
        subs.push(u.sub);
        f.other_event(&format!("scope{i}")).await;
    }
    users
        .replace(
            "admin",
            &subs[0],
            replacement(json!({"username": "renamed"})),
            PATIENCE,
        )
        .await
        .unwrap();
    users.delete("admin", &subs[1], PATIENCE).await.unwrap();
    users
        .create(
            "admin",
            checked(json!({"username": "USER1", "password": PASSWORD})),
            PATIENCE,
        )
        .await
        .unwrap();
    let head = f.log.last_seq().await.unwrap();
    users.wait_applied(head, PATIENCE).await.unwrap();
    let names = ["user0", "renamed", "user1", "user2", "user5"];
    let sub_refs: Vec<&str> = subs.iter().map(String::as_str).collect();
    let expected = state_of(&users, &sub_refs, &names).await;
    assert!(expected[0].is_some() && expected[1].is_none());
    assert!(expected[6].is_none(), "user0 was renamed");
    drop(users);
    drop(kv);

    // Restart on the same store: resumes at the watermark, same state.
    let kv = f.kv("users.redb").await;
    assert!(kv.applied_seq().await.unwrap() >= head - 1);
    let users = Users::start(kv, f.log.clone()).await.unwrap();
    assert_eq!(users.applied_seq(), head);
    assert_eq!(state_of(&users, &sub_refs, &names).await, expected);

    // From scratch: same state.
    let rebuilt = Users::start(f.kv("rebuilt.redb").await, f.log.clone())
        .await
        .unwrap();
    assert_eq!(state_of(&rebuilt, &sub_refs, &names).await, expected);

    // Two nodes folding one log into one shared store at once.
    let shared = f.kv("shared.redb").await;
    let (a, b) = tokio::join!(
        Users::start(shared.clone(), f.log.clone()),
        Users::start(shared.clone(), f.log.clone())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(state_of(&a, &sub_refs, &names).await, expected);
    assert_eq!(state_of(&b, &sub_refs, &names).await, expected);
    // A write through one is visible through the other once it applied it.
    let carol = a
        .create(
            "admin",
            checked(json!({"username": "carol", "password": PASSWORD})),
            PATIENCE,
        )
        .await
        .unwrap();
    b.wait_applied(f.log.last_seq().await.unwrap(), PATIENCE)
        .await
        .unwrap();
    assert_eq!(b.by_username("Carol").await.unwrap(), Some(carol));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_ahead_of_the_log_is_refused() {
    let f = Fixture::new();
    let kv = f.kv("users.redb").await;
    kv.set_applied_seq(5).await.unwrap();
    let e = Users::start(kv, f.log.clone()).await.unwrap_err();
    assert!(
        matches!(
            e,
            UsersError::Ahead {
                applied: 5,
                head: 0
            }
        ),
        "{e}"
    );
}

/// An event on a user subject that is not a user event stops the projection, loudly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_events_on_user_subjects_stop_it() {
    let f = Fixture::new();
    let users = Users::start(f.kv("users.redb").await, f.log.clone())
        .await
        .unwrap();
    let seq = f
        .log
        .append(
            NewEvent {
                subject: Aggregate::User.subject("x"),
                actor: "test".into(),
                at_ms: 0,
                payload: br#"{"type":"user.exploded","data":{}}"#.to_vec(),
            },
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    let e = users.wait_applied(seq, PATIENCE).await.unwrap_err();
    assert!(matches!(e, UsersError::Stopped), "{e}");
    assert!(!users.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_work_runs_at_most_one_job_per_core() {
    use std::sync::atomic::AtomicUsize;
    static RUNNING: AtomicUsize = AtomicUsize::new(0);
    static MOST: AtomicUsize = AtomicUsize::new(0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs: Vec<_> = (0..4 * cores + 4)
        .map(|i| {
            tokio::spawn(password_work(move || {
                let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
                MOST.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                RUNNING.fetch_sub(1, Ordering::SeqCst);
                i
            }))
        })
        .collect();
    for (i, job) in jobs.into_iter().enumerate() {
        assert_eq!(job.await.unwrap(), Some(i));
    }
    let most = MOST.load(Ordering::SeqCst);
    assert!(
        most >= 1 && most <= cores,
        "{most} jobs at once on {cores} cores"
    );
}

/// Appends a username claim for `sub` made `age` ago (as a writer that died before its
/// user event would leave it).
async fn claim_made(f: &Fixture, username: &str, sub: &str, age: Duration) -> Seq {
    let e = Event::UsernameClaimed {
        name: username_id(username),
        sub: sub.into(),
    };
    let subject = e.subject();
    let version = f.log.subject_version(&subject).await.unwrap();
    f.log
        .append(
            NewEvent {
                subject,
                actor: "test".into(),
                at_ms: now() * 1000 - age.as_millis() as i64,
                payload: e.to_json(),
            },
            ExpectedVersion::Exact(version),
        )
        .await
        .unwrap()
}

/// Two nodes (each its own projection store, one log) creating and renaming to one name
/// at once: exactly one wins each time, whatever the spelling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_give_one_username_twice() {
    let f = Fixture::new();
    let a = Users::start(f.kv("a.redb").await, f.log.clone())
        .await
        .unwrap();
    let b = Users::start(f.kv("b.redb").await, f.log.clone())
        .await
        .unwrap();
    for round in 0..10 {
        let (x, y) = tokio::join!(
            a.create(
                "admin",
                checked(json!({"username": format!("twin{round}"), "password": PASSWORD})),
                PATIENCE
            ),
            b.create(
                "admin",
                checked(json!({"username": format!("TWIN{round}"), "password": PASSWORD})),
                PATIENCE
            ),
        );
        assert!(
            matches!(
                (&x, &y),
                (Ok(_), Err(UserWriteError::UsernameTaken(_)))
                    | (Err(UserWriteError::UsernameTaken(_)), Ok(_))
            ),
            "round {round}: {x:?} {y:?}"
        );
    }
    // Renames of two users to one new name.
    let left = a
        .create(
            "admin",
            checked(json!({"username": "left", "password": PASSWORD})),
            PATIENCE,
        )
        .await
        .unwrap();
    let right = b
        .create(
            "admin",
            checked(json!({"username": "right", "password": PASSWORD})),
            PATIENCE,
        )
        .await
        .unwrap();
    let (x, y) = tokio::join!(
        a.replace(
            "admin",
            &left.sub,
            replacement(json!({"username": "middle"})),
            PATIENCE
        ),
        b.replace(
            "admin",
            &right.sub,
            replacement(json!({"username": "Middle"})),
            PATIENCE
        ),
    );
    assert_eq!(x.is_ok() as u8 + y.is_ok() as u8, 1, "{x:?} {y:?}");
    assert!(matches!(
        x.as_ref().err().or(y.as_ref().err()),
        Some(UserWriteError::UsernameTaken(_))
    ));
    // The winner's old name is free again, at the other node too; so is a deleted user's.
    let freed = if x.is_ok() { "left" } else { "right" };
    b.create(
        "admin",
        checked(json!({"username": freed, "password": PASSWORD})),
        PATIENCE,
    )
    .await
    .unwrap();
    let gone = a
        .create(
            "admin",
            checked(json!({"username": "gone", "password": PASSWORD})),
            PATIENCE,
        )
        .await
        .unwrap();
    a.delete("admin", &gone.sub, PATIENCE).await.unwrap();
    b.create(
        "admin",
        checked(json!({"username": "Gone", "password": PASSWORD})),
        PATIENCE,
    )
    .await
    .unwrap();
}

/// A claim whose user event never came holds the name for a while, then frees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_claim_frees_the_name_after_a_while() {
    let f = Fixture::new();
    let users = Users::start(f.kv("users.redb").await, f.log.clone())
        .await
        .unwrap();
    claim_made(&f, "ghost", "no-such-user", Duration::from_secs(1)).await;
    let e = users
        .create(
            "admin",
            checked(json!({"username": "Ghost", "password": PASSWORD})),
            PATIENCE,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, UserWriteError::UsernameTaken(_)), "{e:?}");
    claim_made(&f, "ghost", "no-such-user", ORPHAN_CLAIM_AFTER * 2).await;
    let u = users
        .create(
            "admin",
            checked(json!({"username": "ghost", "password": PASSWORD})),
            PATIENCE,
        )
        .await
        .unwrap();
    assert_eq!(users.by_username("GHOST").await.unwrap(), Some(u));
    // Now the name is the user's for good.
    let e = users
        .create(
            "admin",
            checked(json!({"username": "ghost", "password": PASSWORD})),
            PATIENCE,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, UserWriteError::UsernameTaken(_)), "{e:?}");
}
