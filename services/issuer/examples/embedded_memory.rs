//! Measures the memory of a `serve` node's embedded storage with many users and many
//! revocations: the event log ([`FileLog`]), the users projection (redb) and the revocation
//! set and file, as the node runs them.
//!
//! ```text
//! cargo run -p signet-issuer --example embedded_memory -- [USERS] [REVOCATIONS] [DIR]
//! ```
//!
//! Defaults: 100,000 users, 1,000,000 revocations, a fresh directory under `/dev/shm` (or the
//! system temp directory). Every write is fsynced as in the node; on tmpfs that is cheap,
//! which keeps the run short and changes nothing about memory.
//!
//! Users are appended to the log directly as `user.created` events (one real argon2id hash
//! computed once and reused: the admin API's per-user hashing would take about 100,000 x
//! 20 ms, and the hash's size, not its value, matters here); the projection is then built
//! by the node's own code (`Users::open_embedded`, catch-up into redb). Revocations go
//! through `Revocations::revoke` with a short `exp`, with the maintenance task `serve` runs;
//! once they have all expired, one more maintenance pass runs. Last, for comparison, every
//! event is read into memory at once, which is what the log held before it kept only an
//! index. VmRSS is read from `/proc/self/status` after each phase (Linux only).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{Map, Value};
use signet_core::events::Event;
use signet_core::user::UserRecord;
use signet_eventlog::embedded::FileLog;
use signet_eventlog::{EventLog, ExpectedVersion, NewEvent};
use signet_issuer::revocations::Revocations;
use signet_issuer::users::Users;
use signet_verify::revocation::{Revocation, Target};

/// How long the measured revocations live.
const REVOCATION_TTL: i64 = 5;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn report(phase: &str, started: Instant) {
    println!(
        "{phase:<58} VmRSS {:>8.1} MiB   ({:.1} s)",
        rss_kib() as f64 / 1024.0,
        started.elapsed().as_secs_f64()
    );
}

fn file_mib(path: &std::path::Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let users: u64 = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let revocations: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let root = match args.next() {
        Some(dir) => PathBuf::from(dir),
        None => {
            let shm = PathBuf::from("/dev/shm");
            let base = if shm.is_dir() {
                shm
            } else {
                std::env::temp_dir()
            };
            base.join(format!("signet-embedded-memory-{}", std::process::id()))
        }
    };
    std::fs::create_dir_all(&root)?;
    println!("data directory {}", root.display());
    let started = Instant::now();
    report("start", started);

    // 1. Users: user.created events appended to the log like the admin API does.
    let hash = signet_core::user::hash_password("correct horse battery staple", &[7; 16])
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let events_dir = root.join("events");
    {
        let log = FileLog::open(&events_dir)?;
        for i in 0..users {
            let mut claims = Map::new();
            claims.insert("email".into(), Value::from(format!("user{i}@example.com")));
            claims.insert("name".into(), Value::from(format!("User Number {i}")));
            let record = UserRecord {
                sub: format!("u{i:020}"),
                username: format!("user{i}"),
                password_hash: hash.clone(),
                claims,
                enabled: true,
                created_at: now(),
                updated_at: now(),
                totp: None,
                recovery_codes: Vec::new(),
                must_change_password: false,
                external_logins: Vec::new(),
                passkeys: Vec::new(),
                passkey_handle: None,
            };
            let event = Event::UserCreated(Box::new(record));
            log.append(
                NewEvent {
                    subject: event.subject(),
                    actor: "signet-admin".into(),
                    at_ms: now() * 1000,
                    payload: event.to_json(),
                },
                ExpectedVersion::Exact(0),
            )
            .await?;
        }
        report(&format!("{users} users appended to the event log"), started);
        println!("  {:?}", log.memory());
    }
    println!(
        "  events.log: {:.1} MiB",
        file_mib(&events_dir.join("events.log"))
    );

    // 2. A node's start: open the log, build the users projection.
    let log = FileLog::open(&events_dir)?;
    report("event log reopened (as at a node's start)", started);
    println!("  {:?}", log.memory());
    let dyn_log: Arc<dyn EventLog> = log.clone();
    let users_projection = Users::open_embedded(&root, dyn_log)
        .await
        .context("users projection")?;
    report("users projection caught up (redb)", started);
    println!(
        "  users.redb: {:.1} MiB",
        file_mib(&root.join("projections").join("users.redb"))
    );
    let last = format!("u{:020}", users.saturating_sub(1));
    anyhow::ensure!(
        users == 0 || users_projection.by_sub(&last).await?.is_some(),
        "the last user is not in the projection"
    );

    // 3. Revocations, as `serve` takes them, with its maintenance task.
    let revs = Revocations::open_embedded(&root).await?;
    let maintenance = revs.spawn_maintenance();
    let mut last_exp = 0;
    for i in 0..revocations {
        let at = now();
        last_exp = at + REVOCATION_TTL;
        revs.revoke(Revocation {
            target: Target::Token {
                jti: format!("jti-{i:016x}-measured"),
            },
            exp: last_exp,
            at,
        })
        .await?;
        let written = i + 1;
        if written % (revocations / 4).max(1) == 0 && written < revocations {
            report(&format!("  {written} revocations written"), started);
            println!(
                "    set: {} entries; file: {:?} lines",
                revs.len(),
                revs.file_entries().await
            );
        }
    }
    report(
        &format!("{revocations} revocations written (exp = at + {REVOCATION_TTL} s)"),
        started,
    );
    let revocation_file = root.join(signet_issuer::revocations::FILE_NAME);
    println!(
        "  set: {} entries; file: {:?} lines, {:.1} MiB",
        revs.len(),
        revs.file_entries().await,
        file_mib(&revocation_file)
    );

    // 4. Once they have all expired: one maintenance pass (the task does this every minute).
    while now() <= last_exp {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let compaction = revs.maintain().await?;
    report("all expired; after a maintenance pass", started);
    println!(
        "  compaction {compaction:?}; set: {} entries; file: {:?} lines, {:.1} MiB",
        revs.len(),
        revs.file_entries().await,
        file_mib(&revocation_file)
    );
    println!("  event log {:?}", log.memory());

    // 5. For comparison: every event held in memory, as the FileLog before issue 18 did
    // (it kept a `Vec<Arc<RecordedEvent>>` of the whole log).
    let every_event = log.read_from(1, usize::MAX).await?;
    report(
        &format!(
            "for comparison: all {} events held in memory",
            every_event.len()
        ),
        started,
    );
    drop(every_event);

    if let Some(task) = maintenance {
        task.abort();
    }
    drop(users_projection);
    drop(revs);
    log.close().await;
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
