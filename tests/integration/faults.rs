//! Fault tests on a cluster laid out for high availability, behind a real HAProxy
//! (`signet_tests::ha`: 3 NATS servers with the deploy permissions, Redis with Sentinel,
//! 2 key managers, 3 issuers, `deploy/haproxy/haproxy.cfg`), and one run of the local
//! cluster script itself.
//!
//! The figures (failed requests while an issuer dies, time until HAProxy evicts it, admin
//! writes during a NATS node crash, Redis failover timings) are printed with `eprintln!`
//! (`cargo test -p signet-tests --test integration faults -- --nocapture`); the assertions
//! are bounds, not timings. Every wait is bounded; nothing sleeps for a fixed time.
//!
//! Sessions and refresh tokens are also checked through the issuers across a Redis
//! failover, and revocation delivery across the loss of the NATS node leading the
//! revocation stream.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use signet_store::redis::{RedisConfig, RedisStore};
use signet_store::{Namespace, Rotation, Store};
use signet_tests::ha::{deploy_dir, HaCluster, RedisHa};
use signet_tests::redis::command;
use signet_tests::{eventually, verify_jwt};
use tokio::task::JoinHandle;

/// One fault test at a time: each runs a whole cluster, and the figures mean little when two
/// of them share the machine's cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PATIENCE: Duration = Duration::from_secs(60);
const CLIENT: &str = "loader";
const SECRET: &str = "fault-client-secret-0123456789";

/// A scope, an ES256 API holding it and a `client_credentials` client, registered through
/// the load balancer; returns once every issuer issues tokens to the client.
async fn register_client(c: &HaCluster) -> Result<()> {
    let token = c.admin_token().await?;
    for (path, body) in [
        ("/Resource/ApiScope", json!({"name": "faults.read"})),
        (
            "/Resource/ApiResource",
            json!({"name": "faults-api", "scopes": ["faults.read"],
                   "allowedAccessTokenSigningAlgorithms": ["ES256"]}),
        ),
        (
            "/Client",
            json!({"clientId": CLIENT, "allowedGrantTypes": ["client_credentials"],
                   "clientSecrets": [{"value": SECRET}], "allowedScopes": ["faults.read"]}),
        ),
    ] {
        let (status, resp) = c
            .admin_call(&c.lb.admin, &token, Method::POST, path, Some(&body))
            .await?;
        ensure!(
            status == 201,
            "POST {path} through the load balancer: {status} {resp}"
        );
    }
    for node in &c.issuers {
        eventually(PATIENCE, || async {
            matches!(
                c.token(&node.public, CLIENT, SECRET, None).await,
                Ok((200, _))
            )
            .then_some(())
        })
        .await
        .with_context(|| format!("{} never issued a token to the new client", node.public))?;
    }
    Ok(())
}

/// `client_credentials` requests in a loop from `workers` tasks.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<(Instant, String)>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(issuer: &str, workers: usize) -> Load {
        let load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            ok: Arc::new(AtomicU64::new(0)),
            failures: Arc::new(Mutex::new(Vec::new())),
            tasks: Vec::new(),
        };
        let http = reqwest::Client::new();
        let url = format!("{issuer}/oauth2/token");
        let tasks = (0..workers)
            .map(|_| {
                let (http, url) = (http.clone(), url.clone());
                let (stop, ok, failures) =
                    (load.stop.clone(), load.ok.clone(), load.failures.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let outcome = http
                            .post(&url)
                            .basic_auth(CLIENT, Some(SECRET))
                            .form(&[("grant_type", "client_credentials")])
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                        let failure = match outcome {
                            Ok(r) if r.status() == 200 => match r.json::<Value>().await {
                                Ok(b) if b["access_token"].is_string() => None,
                                Ok(b) => Some(format!("200 without a token: {b}")),
                                Err(e) => Some(format!("unreadable 200: {e}")),
                            },
                            Ok(r) => Some(format!("status {}", r.status().as_u16())),
                            Err(e) => Some(format!("error: {e}")),
                        };
                        match failure {
                            None => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(f) => failures.lock().unwrap().push((Instant::now(), f)),
                        }
                    }
                })
            })
            .collect();
        Load { tasks, ..load }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    fn failures(&self) -> Vec<(Instant, String)> {
        self.failures.lock().unwrap().clone()
    }

    /// Waits until `n` requests succeeded in all.
    async fn wait_ok(&self, n: u64) -> Result<()> {
        eventually(PATIENCE, || async { (self.ok() >= n).then_some(()) })
            .await
            .with_context(|| {
                format!(
                    "{} of {n} requests succeeded; failures: {:?}",
                    self.ok(),
                    self.failures().iter().map(|f| &f.1).collect::<Vec<_>>()
                )
            })
    }

    async fn finish(self) -> (u64, Vec<(Instant, String)>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

/// The distinct kinds of failure in `failures` (text after the first `: `), with counts.
fn kinds<'a>(failures: impl IntoIterator<Item = &'a String>) -> Vec<(String, usize)> {
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for f in failures {
        let kind = f.split_once(": ").map_or(f.as_str(), |(_, k)| k).to_owned();
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    kinds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_killed_under_load_then_every_key_manager_stopped() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let mut c = HaCluster::start(&[]).await?;
    eprintln!("faults: HA cluster ready in {:?}", started.elapsed());
    register_client(&c).await?;

    const WORKERS: usize = 8;
    let load = Load::start(&c.issuer, WORKERS);
    load.wait_ok(300).await?;
    ensure!(
        load.failures().is_empty(),
        "failures before any fault: {:?}",
        load.failures()
    );

    // kill -9 issuer 2 in the middle of the load.
    let before = c.lb.server("public_ready", "issuer2").await?;
    let victim = c.issuers.remove(1);
    let ok_at_kill = load.ok();
    let killed_at = Instant::now();
    victim.proc.kill().await?;
    c.lb.wait_status("public_ready", "issuer2", "DOWN", PATIENCE)
        .await?;
    let eviction = killed_at.elapsed();
    load.wait_ok(ok_at_kill + 500).await?;
    let after = c.lb.server("public_ready", "issuer2").await?;
    let sent_to_dead = after.sessions - before.sessions;
    let kill_failures = load.failures();

    // Every key manager stops: the issuers keep signing with their leased keys.
    for km in &mut c.keymanagers {
        km.take().context("key manager")?.stop().await?;
    }
    let ok_at_km = load.ok();
    load.wait_ok(ok_at_km + 500).await?;
    let (ok_total, failures) = load.finish().await;

    eprintln!(
        "faults: issuer kill -9 under load ({WORKERS} concurrent clients through HAProxy): \
         {} of {} requests failed ({:?}); HAProxy marked the issuer DOWN {:?} after the kill; \
         from just before the kill on, HAProxy sent it {} request(s) ({} failed to connect and \
         went to another issuer, {} lost their response)",
        kill_failures.len(),
        ok_at_km + kill_failures.len() as u64,
        kinds(kill_failures.iter().map(|f| &f.1)),
        eviction,
        sent_to_dead,
        after.connection_errors - before.connection_errors,
        after.response_errors - before.response_errors,
    );
    eprintln!(
        "faults: both key managers stopped: {} more tokens issued, {} failed",
        ok_total - ok_at_km,
        failures.len() - kill_failures.len()
    );
    // Only requests HAProxy had sent to the killed issuer may fail: those in flight when it
    // died, and those it sent before noticing (it marks a server down at its first error).
    let lost_on_dead = after.response_errors - before.response_errors;
    ensure!(
        kill_failures.len() as u64 <= sent_to_dead.max(lost_on_dead)
            && kill_failures.len() <= 2 * WORKERS,
        "{} requests failed when one issuer died, HAProxy sent it {sent_to_dead}: \
         {kill_failures:?}",
        kill_failures.len()
    );
    for (at, what) in &kill_failures {
        ensure!(
            *at >= killed_at && at.duration_since(killed_at) <= eviction + Duration::from_secs(2),
            "a request failed outside the kill ({:?} after it): {what}",
            at.checked_duration_since(killed_at)
        );
    }
    ensure!(
        failures.len() == kill_failures.len(),
        "requests failed without key managers: {:?}",
        &failures[kill_failures.len()..]
    );

    // The issuers stay ready (their lease is valid), and key administration, which needs a
    // key manager, says so.
    for node in &c.issuers {
        let status = c
            .http
            .get(format!("{}/readyz", node.public))
            .send()
            .await?
            .status();
        ensure!(
            status == 200,
            "{} not ready without key managers: {status}",
            node.public
        );
    }
    let token = c.admin_token().await?;
    let (status, body) = c
        .admin_call(
            &c.lb.admin,
            &token,
            Method::POST,
            "/Key/rotate",
            Some(&json!({"alg": "ES256"})),
        )
        .await?;
    ensure!(
        status == 503,
        "key rotation without key managers: {status} {body}"
    );
    Ok(())
}

/// Admin writes (new API scopes) one after the other through the load balancer.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, Instant)>>>,
    failed: Arc<Mutex<Vec<(Instant, String)>>>,
    task: JoinHandle<()>,
}

impl Writer {
    fn start(c: &HaCluster, token: String) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let url = format!("{}/Resource/ApiScope", c.lb.admin);
        let http = reqwest::Client::new();
        let task = {
            let (stop, acked, failed) = (stop.clone(), acked.clone(), failed.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let name = format!("w{n}");
                    let r = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"name": name}))
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 201 => {
                            acked.lock().unwrap().push((name, Instant::now()));
                        }
                        Ok(r) => failed
                            .lock()
                            .unwrap()
                            .push((Instant::now(), format!("{name}: {}", r.status()))),
                        Err(e) => failed
                            .lock()
                            .unwrap()
                            .push((Instant::now(), format!("{name}: {e}"))),
                    }
                }
            })
        };
        Writer {
            stop,
            acked,
            failed,
            task,
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn wait_acked(&self, n: usize) -> Result<()> {
        eventually(PATIENCE, || async { (self.acked() >= n).then_some(()) })
            .await
            .with_context(|| {
                format!(
                    "{} of {n} admin writes acknowledged; failures: {:?}",
                    self.acked(),
                    self.failed.lock().unwrap()
                )
            })
    }

    async fn finish(self) -> (Vec<(String, Instant)>, Vec<(Instant, String)>) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let acked = self.acked.lock().unwrap().clone();
        let failed = self.failed.lock().unwrap().clone();
        (acked, failed)
    }
}

/// Connects to NATS as `user` of `deploy/nats/accounts.conf`; the receiver gets the
/// server's error messages (permission violations).
async fn nats_as(
    c: &HaCluster,
    user: &str,
) -> Result<(
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_user_and_password(
        user.into(),
        c.nats.passwords.of(user).into(),
    )
    .event_callback(move |event| {
        let tx = tx.clone();
        async move {
            if let async_nats::Event::ServerError(e) = event {
                let _ = tx.send(e.to_string().to_lowercase());
            }
        }
    })
    .connect(format!("nats://127.0.0.1:{}", c.nats.nodes[0].port))
    .await?;
    Ok((client, rx))
}

async fn expect_violation(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    what: &str,
    subject: &str,
) -> Result<()> {
    let message = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .with_context(|| format!("no permissions violation for {what} {subject}"))?
        .context("connection closed")?;
    ensure!(
        message.contains("permissions violation") && message.contains(&subject.to_lowercase()),
        "{what} {subject}: unexpected server error {message}"
    );
    Ok(())
}

/// The permissions of `deploy/nats/accounts.conf`, on the running cluster.
async fn check_nats_permissions(c: &HaCluster) -> Result<()> {
    // Only key managers answer key leases and key administration.
    let (issuer, mut issuer_errors) = nats_as(c, "issuer").await?;
    let _s = issuer
        .queue_subscribe("signet.keys.lease", "signet-keymanagers".into())
        .await?;
    expect_violation(
        &mut issuer_errors,
        "an issuer subscribing to",
        "signet.keys.lease",
    )
    .await?;
    let _s = issuer.subscribe("signet.keys.admin").await?;
    expect_violation(
        &mut issuer_errors,
        "an issuer subscribing to",
        "signet.keys.admin",
    )
    .await?;
    // Only key managers publish signing keys (what enters the JWKS).
    issuer
        .publish("signet.events.signing_key.forged", "{}".into())
        .await?;
    expect_violation(
        &mut issuer_errors,
        "an issuer publishing",
        "signet.events.signing_key.forged",
    )
    .await?;
    // Issuers cannot read the sealed keys.
    issuer
        .publish("$JS.API.STREAM.INFO.KV_SIGNET_KEYS", "".into())
        .await?;
    expect_violation(
        &mut issuer_errors,
        "an issuer publishing",
        "$JS.API.STREAM.INFO.KV_SIGNET_KEYS",
    )
    .await?;

    // Resource servers read revocations, which only issuers publish.
    let (verifier, mut verifier_errors) = nats_as(c, "verifier").await?;
    let mut revocations = verifier.subscribe("signet.revocations.>").await?;
    verifier.flush().await?;
    let (keymanager, mut keymanager_errors) = nats_as(c, "keymanager").await?;
    keymanager
        .publish(
            "signet.revocations.token",
            "{\"from\":\"keymanager\"}".into(),
        )
        .await?;
    expect_violation(
        &mut keymanager_errors,
        "a key manager publishing",
        "signet.revocations.token",
    )
    .await?;
    // Key managers cannot read the users' projection (password hashes).
    keymanager
        .publish("$JS.API.STREAM.INFO.KV_SIGNET_USERS", "".into())
        .await?;
    expect_violation(
        &mut keymanager_errors,
        "a key manager publishing",
        "$JS.API.STREAM.INFO.KV_SIGNET_USERS",
    )
    .await?;
    issuer
        .publish("signet.revocations.token", "{\"from\":\"issuer\"}".into())
        .await?;
    issuer.flush().await?;
    let got = tokio::time::timeout(Duration::from_secs(10), revocations.next())
        .await
        .context("the verifier got no revocation")?
        .context("subscription ended")?;
    ensure!(
        got.payload.as_ref() == b"{\"from\":\"issuer\"}",
        "the verifier got {:?} (the key manager's publish went through?)",
        got.payload
    );
    verifier
        .publish("signet.revocations.token", "{}".into())
        .await?;
    expect_violation(
        &mut verifier_errors,
        "a verifier publishing",
        "signet.revocations.token",
    )
    .await?;
    let _s = verifier.subscribe("signet.keys.lease").await?;
    expect_violation(
        &mut verifier_errors,
        "a verifier subscribing to",
        "signet.keys.lease",
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_node_crash_loses_no_acknowledged_admin_write() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let mut c = HaCluster::start(&[]).await?;
    check_nats_permissions(&c).await?;
    register_client(&c).await?;

    // Optimistic concurrency holds on a replicated stream too: two admins racing on one
    // object through two issuers get one 201 and one 409.
    let token = c.admin_token().await?;
    let body = json!({"clientId": "raced", "allowedGrantTypes": ["client_credentials"],
                      "clientSecrets": [{"value": SECRET}], "allowedScopes": ["faults.read"]});
    let (a, b) = tokio::join!(
        c.admin_call(
            &c.issuers[0].admin,
            &token,
            Method::POST,
            "/Client",
            Some(&body)
        ),
        c.admin_call(
            &c.issuers[1].admin,
            &token,
            Method::POST,
            "/Client",
            Some(&body)
        ),
    );
    let (a, b) = (a?, b?);
    let mut statuses = [a.0, b.0];
    statuses.sort();
    ensure!(
        statuses == [201, 409],
        "racing writes on an R3 stream: {a:?} and {b:?}"
    );

    let load = Load::start(&c.issuer, 2);
    let writer = Writer::start(&c, c.admin_token().await?);
    writer.wait_acked(20).await?;

    // kill -9 the NATS server leading the event stream, then start it again.
    let (leader, _) = c.nats.stream_state(0, "SIGNET_EVENTS").await?;
    let victim = c
        .nats
        .nodes
        .iter()
        .position(|n| n.name == leader)
        .with_context(|| format!("no node named {leader}"))?;
    let acked_at_kill = writer.acked();
    let killed_at = Instant::now();
    c.nats.kill(victim).await?;
    writer.wait_acked(acked_at_kill + 20).await?;
    let restarting_at = Instant::now();
    c.nats.restart(victim).await?;
    let rejoined_in = restarting_at.elapsed();
    let acked_at_rejoin = writer.acked();
    writer.wait_acked(acked_at_rejoin + 20).await?;
    let (acked, failed) = writer.finish().await;
    let (tokens, token_failures) = load.finish().await;

    // Every acknowledged write is on every issuer, and on every NATS server.
    for node in &c.issuers {
        let token = c.admin_token().await?;
        let missing = eventually(PATIENCE, || async {
            let (status, body) = c
                .admin_call(&node.admin, &token, Method::GET, "/Resource/ApiScope", None)
                .await
                .ok()?;
            if status != 200 {
                return None;
            }
            let names: std::collections::HashSet<&str> = body
                .as_array()?
                .iter()
                .filter_map(|s| s["name"].as_str())
                .collect();
            let missing: Vec<&String> = acked
                .iter()
                .map(|(n, _)| n)
                .filter(|n| !names.contains(n.as_str()))
                .collect();
            missing.is_empty().then_some(())
        })
        .await;
        ensure!(
            missing.is_ok(),
            "{} lacks acknowledged writes after the NATS crash",
            node.admin
        );
    }
    let seqs = eventually(PATIENCE, || async {
        let mut seqs = Vec::new();
        for i in 0..3 {
            seqs.push(c.nats.stream_state(i, "SIGNET_EVENTS").await.ok()?.1);
        }
        seqs.windows(2).all(|w| w[0] == w[1]).then_some(seqs)
    })
    .await
    .context("the NATS servers never agreed on the event stream")?;

    let during_outage = acked
        .iter()
        .filter(|(_, at)| *at > killed_at && *at < restarting_at)
        .count();
    let (gap_end, longest_gap) = acked
        .windows(2)
        .map(|w| (w[1].1, w[1].1.duration_since(w[0].1)))
        .max_by_key(|(_, gap)| *gap)
        .unwrap_or((killed_at, Duration::ZERO));
    eprintln!(
        "faults: NATS stream leader {leader} killed (kill -9), restarted after the next 20 \
         writes: {} admin writes acknowledged ({during_outage} while it was down), {} failed \
         ({:?}); longest gap between two acknowledged writes {longest_gap:?} (ending {:?} after \
         the kill); the node rejoined and caught up {rejoined_in:?} after its restart; stream at \
         sequence {} on all three servers; tokens through HAProxy meanwhile: {tokens} issued, \
         {} failed",
        acked.len(),
        failed.len(),
        kinds(failed.iter().map(|f| &f.1)),
        gap_end.checked_duration_since(killed_at),
        seqs[0],
        token_failures.len(),
    );
    ensure!(
        token_failures.is_empty(),
        "token requests failed while a NATS server was down: {token_failures:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_failover_keeps_sessions_families_and_consumed_codes() -> Result<()> {
    let _serial = SERIAL.lock().await;
    const LONG: Duration = Duration::from_secs(600);
    let mut redis = RedisHa::start().await?;
    let store =
        Arc::new(RedisStore::connect(RedisConfig::new(redis.url()).with_prefix("faults")).await?);

    // State written before the failover.
    store
        .put(Namespace::Session, "session-1", b"alice", LONG, &[])
        .await?;
    store
        .put(Namespace::AuthorizationCode, "code-used", b"c1", LONG, &[])
        .await?;
    ensure!(
        store
            .consume(Namespace::AuthorizationCode, "code-used")
            .await?
            .is_some(),
        "consume before the failover"
    );
    store
        .put(Namespace::AuthorizationCode, "code-fresh", b"c2", LONG, &[])
        .await?;
    store
        .create_family("family-1", "rt-1", b"r1", LONG, &[])
        .await?;
    ensure!(matches!(
        store
            .rotate("family-1", "rt-1", "rt-2", b"r2", LONG)
            .await?,
        Rotation::Rotated { .. }
    ));

    // Replication is asynchronous: wait until both replicas have all of the above, so that
    // what the test checks is the failover, not the replication window (deploy/README.md).
    let primary = redis.master_port().await?;
    let synced_in = wait_replicated(&redis, primary).await?;

    // Writes and reads go on while the primary dies.
    let stop = Arc::new(AtomicBool::new(false));
    let ops = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut log: Vec<(Instant, String, bool)> = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("op-{n}");
                let ok = store
                    .put(Namespace::Consent, &key, b"v", LONG, &[])
                    .await
                    .is_ok();
                log.push((Instant::now(), key, ok));
            }
            log
        })
    };
    let wait_ops = |n: usize| {
        let store = store.clone();
        async move {
            // Progress: the n-th key exists.
            eventually(PATIENCE, || {
                let store = store.clone();
                async move {
                    matches!(
                        store.get(Namespace::Consent, &format!("op-{n}")).await,
                        Ok(Some(_))
                    )
                    .then_some(())
                }
            })
            .await
        }
    };
    wait_ops(50).await?;
    let lag = replica_lag(&redis, primary).await.unwrap_or(-1);
    let killed_at = Instant::now();
    redis
        .node_mut(primary)
        .context("the primary")?
        .kill()
        .await?;
    let new_primary = eventually(PATIENCE, || async {
        redis.master_port().await.ok().filter(|p| *p != primary)
    })
    .await
    .context("Sentinel never promoted a replica")?;
    let promoted_in = killed_at.elapsed();
    // Writes work again (the other replica follows the new primary, so
    // min-replicas-to-write is met).
    let writes_back_in = eventually(PATIENCE, || {
        let store = store.clone();
        async move {
            store
                .put(Namespace::Session, "after", b"v", LONG, &[])
                .await
                .ok()
                .map(|()| killed_at.elapsed())
        }
    })
    .await
    .context("no write succeeded after the failover")?;
    stop.store(true, Ordering::Relaxed);
    let log = ops.await?;
    // The checks below are not retried (a consume must not run twice), so they wait until
    // no failover is under way.
    redis.wait_settled().await?;
    let acked: Vec<&(Instant, String, bool)> = log.iter().filter(|(_, _, ok)| *ok).collect();
    let failed = log.iter().filter(|(_, _, ok)| !*ok).count();
    let failing: Vec<Duration> = log
        .iter()
        .filter(|(at, _, ok)| !*ok && *at > killed_at)
        .map(|(at, _, _)| at.duration_since(killed_at))
        .collect();
    let window = match (failing.first(), failing.last()) {
        (Some(first), Some(last)) => format!("from {first:?} to {last:?} after the kill"),
        _ => "none".into(),
    };
    let mut lost = 0;
    for (_, key, _) in &acked {
        if store.get(Namespace::Consent, key).await?.is_none() {
            lost += 1;
        }
    }

    // What was written before the failover is there; what was consumed stays consumed.
    ensure!(
        store.get(Namespace::Session, "session-1").await?.as_deref() == Some(&b"alice"[..]),
        "the session written before the failover is gone"
    );
    ensure!(
        store
            .consume(Namespace::AuthorizationCode, "code-used")
            .await?
            .is_none(),
        "a code consumed before the failover was accepted again after it"
    );
    ensure!(
        store
            .consume(Namespace::AuthorizationCode, "code-fresh")
            .await?
            .as_deref()
            == Some(&b"c2"[..]),
        "an unused code did not survive the failover"
    );
    ensure!(
        store
            .consume(Namespace::AuthorizationCode, "code-fresh")
            .await?
            .is_none(),
        "a code was consumed twice"
    );
    ensure!(
        matches!(
            store
                .rotate("family-1", "rt-2", "rt-3", b"r3", LONG)
                .await?,
            Rotation::Rotated { .. }
        ),
        "the refresh-token family does not rotate after the failover"
    );
    ensure!(
        store
            .rotate("family-1", "rt-1", "rt-4", b"r4", LONG)
            .await?
            == Rotation::Reused,
        "a token retired before the failover was not detected as reused after it"
    );

    // The old primary comes back as a replica of the current primary. That is usually the
    // replica promoted above, but with a 1 s down-after the Sentinels may fail over a second
    // time while the first promotion settles (seen on a busy machine), so the primary is
    // asked for again rather than assumed.
    redis
        .node_mut(primary)
        .context("the old primary")?
        .restart()
        .await?;
    let rejoined = eventually(PATIENCE, || async {
        let current = redis.master_port().await.ok().filter(|p| *p != primary)?;
        let info = command(primary, &["INFO", "replication"])
            .await
            .ok()?
            .text()?;
        (info.contains("role:slave")
            && info.contains(&format!("master_port:{current}"))
            && info.contains("master_link_status:up"))
        .then_some(current)
    })
    .await;

    eprintln!(
        "faults: Redis failover (Sentinel, down-after 1 s, quorum 2 of 3): replicas had the \
         pre-failover state {synced_in:?} after its last write; replica lag just before the \
         kill (primary offset minus the best replica's) {lag} bytes; Sentinel promoted a replica {promoted_in:?} after the kill; writes \
         succeeded again {writes_back_in:?} after it; store writes (one client, back to back) \
         during the failover: {} acknowledged, {failed} failed ({window}), {lost} acknowledged \
         but lost; old primary back as a replica: {} (first promoted {new_primary}, \
         primary at the end {:?})",
        acked.len(),
        rejoined.is_ok(),
        rejoined.as_ref().ok(),
    );
    rejoined.context("the old primary never became a replica of the new one")?;
    Ok(())
}

/// Waits until every replica's offset reaches the primary's; returns how long that took.
async fn wait_replicated(redis: &RedisHa, primary: u16) -> Result<Duration> {
    let start = Instant::now();
    let target = info_field(primary, "master_repl_offset").await?;
    for node in redis.nodes.iter().filter(|n| n.port != primary) {
        let port = node.port;
        eventually(PATIENCE, || async move {
            let offset = info_field(port, "slave_repl_offset").await.ok()?;
            (offset >= target).then_some(())
        })
        .await
        .with_context(|| format!("replica {port} never caught up"))?;
    }
    Ok(start.elapsed())
}

/// Bytes the primary has written that the most advanced replica has not received yet,
/// sampled now (each replica's own offset, not the once-a-second acknowledgements the
/// primary knows of).
async fn replica_lag(redis: &RedisHa, primary: u16) -> Result<i64> {
    let master = info_field(primary, "master_repl_offset").await?;
    let mut best = i64::MIN;
    for node in redis.nodes.iter().filter(|n| n.port != primary) {
        best = best.max(info_field(node.port, "slave_repl_offset").await?);
    }
    Ok((master - best).max(0))
}

async fn info_field(port: u16, name: &str) -> Result<i64> {
    let info = command(port, &["INFO", "replication"])
        .await?
        .text()
        .context("INFO")?;
    field(&info, name)
}

fn field(info: &str, name: &str) -> Result<i64> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .with_context(|| format!("no {name} in INFO"))?
        .trim()
        .parse()
        .with_context(|| format!("{name} is not a number"))
}

/// A run of loopback ports free right now, below the range `free_port` hands out (so no
/// other test gets one of them meanwhile).
fn free_port_block(len: u16) -> Result<u16> {
    let offset = (std::process::id() % 80) as u16;
    for i in 0..80u16 {
        let start = 3000 + ((offset + i) % 80) * 110;
        if (start..start + len).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return Ok(start);
        }
    }
    bail!("no {len} free loopback ports in a row below 12000")
}

/// Runs `deploy/local/cluster.sh <cmd>` with `env`.
async fn cluster_sh(cmd: &str, env: &[(String, String)]) -> Result<std::process::Output> {
    let script = deploy_dir().join("local/cluster.sh");
    tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new("bash")
            .arg(&script)
            .arg(cmd)
            .env_remove("SIGNET_ADMIN_CLIENT_SECRET")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("cluster.sh {cmd} took more than 240 s"))?
    .with_context(|| format!("run {}", script.display()))
}

/// Runs `cluster.sh down` when dropped, so a failing test leaves nothing running.
struct Down(Vec<(String, String)>);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(deploy_dir().join("local/cluster.sh"))
            .arg("down")
            .envs(self.0.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_cluster_script_serves_tokens_through_haproxy() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let base = tempfile::tempdir()?;
    let first = free_port_block(82)?;
    let (public, admin) = (first + 80, first + 81);
    let admin_secret = "script-admin-secret-0123456789";
    let mut env = vec![
        (
            "SIGNET_LOCAL_DIR".to_owned(),
            base.path().display().to_string(),
        ),
        ("SIGNET_PUBLIC_PORT".into(), public.to_string()),
        ("SIGNET_ADMIN_PORT".into(), admin.to_string()),
        ("SIGNET_PORT_BASE".into(), first.to_string()),
        (
            "SIGNET_BIN".into(),
            signet_tests::signet_bin().display().to_string(),
        ),
        (
            "NATS_SERVER".into(),
            signet_tests::nats::nats_server_bin().display().to_string(),
        ),
    ];
    let down = Down(env.clone());
    env.push(("SIGNET_ADMIN_CLIENT_SECRET".into(), admin_secret.into()));
    let started = Instant::now();
    let up = cluster_sh("up", &env).await?;
    let stdout = String::from_utf8_lossy(&up.stdout).into_owned();
    ensure!(
        up.status.success(),
        "cluster.sh up failed: {}\n{stdout}\n{}",
        up.status,
        String::from_utf8_lossy(&up.stderr)
    );
    eprintln!("faults: cluster.sh up took {:?}", started.elapsed());
    let issuer = format!("http://127.0.0.1:{public}");
    ensure!(
        stdout.contains(&format!("public endpoints   {issuer}"))
            && stdout.contains(&format!("http://127.0.0.1:{admin}/admin/v1")),
        "cluster.sh up does not say where it listens:\n{stdout}"
    );

    // A client registered and served through the load balancer.
    let http = reqwest::Client::new();
    let token = |id: &'static str, secret: &'static str, scope: Option<&'static str>| {
        let (http, issuer) = (http.clone(), issuer.clone());
        async move {
            let mut form = vec![("grant_type", "client_credentials")];
            if let Some(s) = scope {
                form.push(("scope", s));
            }
            let r = http
                .post(format!("{issuer}/oauth2/token"))
                .basic_auth(id, Some(secret))
                .form(&form)
                .send()
                .await?;
            let status = r.status().as_u16();
            let body: Value = r.json().await?;
            ensure!(status == 200, "token for {id}: {status} {body}");
            Ok::<String, anyhow::Error>(body["access_token"].as_str().unwrap_or_default().into())
        }
    };
    let admin_token = token("signet-admin", admin_secret, Some("signet.admin")).await?;
    for (path, body) in [
        ("/Resource/ApiScope", json!({"name": "script.read"})),
        (
            "/Resource/ApiResource",
            json!({"name": "script-api", "scopes": ["script.read"]}),
        ),
        (
            "/Client",
            json!({"clientId": "script-client", "allowedGrantTypes": ["client_credentials"],
                   "clientSecrets": [{"value": SECRET}], "allowedScopes": ["script.read"]}),
        ),
    ] {
        let r = http
            .post(format!("http://127.0.0.1:{admin}/admin/v1{path}"))
            .bearer_auth(&admin_token)
            .json(&body)
            .send()
            .await?;
        let status = r.status().as_u16();
        ensure!(status == 201, "POST {path}: {status} {}", r.text().await?);
    }
    // Every issuer behind the load balancer serves the new client (round robin: several tries).
    for _ in 0..6 {
        let access = eventually(PATIENCE, || async {
            token("script-client", SECRET, None).await.ok()
        })
        .await?;
        let jwks = http
            .get(format!("{issuer}/oauth2/jwks"))
            .send()
            .await?
            .json()
            .await?;
        let claims = verify_jwt(&access, &jwks, &issuer, "script-api")?;
        ensure!(claims["client_id"] == "script-client", "{claims}");
    }

    let status = cluster_sh("status", &env).await?;
    let status_out = String::from_utf8_lossy(&status.stdout).into_owned();
    ensure!(
        status.status.code() == Some(0) && !status_out.contains("stopped"),
        "cluster.sh status: {}\n{status_out}",
        status.status
    );
    let down_out = cluster_sh("down", &env).await?;
    ensure!(
        down_out.status.success(),
        "cluster.sh down: {}\n{}",
        down_out.status,
        String::from_utf8_lossy(&down_out.stderr)
    );
    let status = cluster_sh("status", &env).await?;
    ensure!(
        status.status.code() == Some(3),
        "cluster.sh status after down: {}\n{}",
        status.status,
        String::from_utf8_lossy(&status.stdout)
    );
    for port in [public, admin, first, first + 30, first + 50] {
        ensure!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} still taken after cluster.sh down"
        );
    }
    drop(down);
    Ok(())
}

#[tokio::test]
async fn the_deploy_configs_are_accepted_by_their_servers() -> Result<()> {
    let deploy = deploy_dir();
    let dir = tempfile::tempdir()?;
    // NATS: the production server file, with its variables set.
    let nats = tokio::process::Command::new(signet_tests::nats::nats_server_bin())
        .arg("-t")
        .arg("-c")
        .arg(deploy.join("nats/nats-server.conf"))
        .envs([
            ("SIGNET_NATS_NAME", "nats-1"),
            ("SIGNET_NATS_KEYMANAGER_PASSWORD", "a"),
            ("SIGNET_NATS_ISSUER_PASSWORD", "b"),
            ("SIGNET_NATS_VERIFIER_PASSWORD", "c"),
            ("SIGNET_NATS_SYS_PASSWORD", "d"),
        ])
        .output()
        .await?;
    ensure!(
        nats.status.success(),
        "nats-server -t: {}",
        String::from_utf8_lossy(&nats.stderr)
    );
    // HAProxy: the file with production-like addresses.
    let haproxy = tokio::process::Command::new(signet_tests::lb::haproxy_bin())
        .arg("-c")
        .arg("-f")
        .arg(signet_tests::lb::config_file())
        .envs([
            ("SIGNET_LB_PUBLIC_BIND", "127.0.0.1:80"),
            ("SIGNET_LB_ADMIN_BIND", "127.0.0.1:8081"),
            ("SIGNET_LB_STATS_BIND", "127.0.0.1:8404"),
            ("SIGNET_ISSUER_1_PUBLIC", "10.0.1.11:8080"),
            ("SIGNET_ISSUER_1_ADMIN", "10.0.1.11:8081"),
            ("SIGNET_ISSUER_2_PUBLIC", "10.0.1.12:8080"),
            ("SIGNET_ISSUER_2_ADMIN", "10.0.1.12:8081"),
            ("SIGNET_ISSUER_3_PUBLIC", "10.0.1.13:8080"),
            ("SIGNET_ISSUER_3_ADMIN", "10.0.1.13:8081"),
        ])
        .env("SIGNET_LB_STATE_DIR", dir.path())
        .output()
        .await?;
    ensure!(
        haproxy.status.success(),
        "haproxy -c: {}{}",
        String::from_utf8_lossy(&haproxy.stdout),
        String::from_utf8_lossy(&haproxy.stderr)
    );
    // Redis Cluster variant: a node starts on it (the Sentinel variant runs in the tests above).
    let node = signet_tests::redis::RedisServer::start_with(&[
        "--include",
        &deploy
            .join("redis/cluster/redis.conf")
            .display()
            .to_string(),
        "--cluster-config-file",
        &dir.path().join("nodes.conf").display().to_string(),
    ])
    .await?;
    let info = node
        .command(&["CONFIG", "GET", "min-replicas-to-write"])
        .await?;
    ensure!(
        info.items().get(1).and_then(|v| v.text()).as_deref() == Some("1"),
        "{info:?}"
    );
    let cluster = node.command(&["INFO", "cluster"]).await?.text();
    ensure!(
        cluster.is_some_and(|c| c.contains("cluster_enabled:1")),
        "not a cluster node"
    );
    Ok(())
}

/// Through the issuers behind HAProxy: a signed-in browser's session and a refresh token
/// keep working across a Redis failover (Sentinel promotes a replica), and a revocation
/// published while the NATS node leading the revocation stream is down reaches every
/// issuer once the cluster has a leader again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_refresh_tokens_and_revocations_survive_redis_failover_and_nats_loss() -> Result<()>
{
    use signet_tests::browser::{code_flow, params_of, Browser, PKCE_CHALLENGE};
    let _serial = SERIAL.lock().await;
    const REDIRECT: &str = "http://127.0.0.1:1/cb";
    const PASSWORD: &str = "gus's password 123";
    let mut c = HaCluster::start(&[]).await?;
    let token = c.admin_token().await?;
    let admin = c.issuers[0].admin.clone();
    for (path, body) in [
        (
            "/User",
            json!({"username": "gus", "password": PASSWORD, "claims": {}}),
        ),
        (
            "/Client",
            json!({"clientId": "app", "allowedGrantTypes": ["authorization_code"],
                "clientSecrets": [{"value": SECRET}], "allowOfflineAccess": true,
                "requireConsent": false, "redirectUris": [REDIRECT],
                "allowedScopes": ["openid", "offline_access"]}),
        ),
    ] {
        let (status, resp) = c
            .admin_call(&admin, &token, Method::POST, path, Some(&body))
            .await?;
        ensure!(status == 201, "{path}: {status} {resp}");
    }
    // Every issuer knows the client before the browser arrives through the balancer.
    for node in &c.issuers {
        let url = format!("{}/Client/app", node.admin);
        eventually(PATIENCE, || async {
            let r = c.http.get(&url).bearer_auth(&token).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await?;
    }
    let authorize = format!(
        "{}/oauth2/authorize?client_id=app&response_type=code&scope=openid%20offline_access&redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fcb&code_challenge={PKCE_CHALLENGE}&code_challenge_method=S256&prompt=none",
        c.issuer
    );
    let tokens = eventually(PATIENCE, || async {
        code_flow(
            &c.issuer,
            &c.issuer,
            "app",
            Some(SECRET),
            REDIRECT,
            "openid offline_access",
            "gus",
            PASSWORD,
        )
        .await
        .ok()
    })
    .await?;
    let mut browser = Browser::new();
    let login = browser
        .sign_in(&authorize.replace("&prompt=none", ""), "gus", PASSWORD)
        .await?;
    ensure!(
        login.status == 302,
        "sign-in: {} {}",
        login.status,
        login.body
    );
    let refresh = |rt: String| {
        let http = c.http.clone();
        let url = format!("{}/oauth2/token", c.issuer);
        async move {
            let r = http
                .post(url)
                .basic_auth("app", Some(SECRET))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                ])
                .send()
                .await?;
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            anyhow::Ok((status, body))
        }
    };
    let (status, rotated) = refresh(
        tokens["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
    .await?;
    ensure!(status == 200, "refresh before the failover: {rotated}");
    let rt = rotated["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Redis failover: what the session and the family wrote is on the replicas first.
    let primary = c.redis.master_port().await?;
    wait_replicated(&c.redis, primary).await?;
    let killed_at = Instant::now();
    c.redis
        .node_mut(primary)
        .context("the primary")?
        .kill()
        .await?;
    eventually(PATIENCE, || async {
        c.redis.master_port().await.ok().filter(|p| *p != primary)
    })
    .await
    .context("Sentinel never promoted a replica")?;
    // The SSO session answers silently again, and the refresh token rotates.
    let deadline = Instant::now() + PATIENCE;
    let sso = loop {
        if let Ok(r) = browser.get(&authorize).await {
            if r.location()
                .is_ok_and(|l| params_of(&l, false).contains_key("code"))
            {
                break killed_at.elapsed();
            }
        }
        ensure!(
            Instant::now() < deadline,
            "the SSO session did not survive the failover"
        );
        // Poll interval while Sentinel promotes a replica.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, body) = eventually(PATIENCE, || async {
        match refresh(rt.clone()).await {
            Ok((s, b)) if s != 503 && s != 500 => Some((s, b)),
            _ => None,
        }
    })
    .await?;
    ensure!(status == 200, "refresh after the failover: {status} {body}");
    eprintln!("redis failover through the issuers: SSO session answering again {sso:?} after the kill; refresh token rotated after it");

    // NATS: the node leading SIGNET_REVOCATIONS dies; a revocation made meanwhile still
    // reaches every issuer.
    let access = body["access_token"].as_str().unwrap_or_default().to_owned();
    let (leader, _) = c.nats.stream_state(0, "SIGNET_REVOCATIONS").await?;
    let victim = c
        .nats
        .nodes
        .iter()
        .position(|n| n.name == leader)
        .with_context(|| format!("no node named {leader}"))?;
    c.nats.kill(victim).await?;
    let revoked_at = Instant::now();
    eventually(PATIENCE, || async {
        let r = c
            .http
            .post(format!("{}/oauth2/revoke", c.issuer))
            .basic_auth("app", Some(SECRET))
            .form(&[("token", access.as_str())])
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await
    .context("the revocation was never acknowledged")?;
    let acknowledged = revoked_at.elapsed();
    c.nats.restart(victim).await?;
    for node in &c.issuers {
        let url = format!("{}/oauth2/introspect", node.public);
        eventually(PATIENCE, || async {
            let r = c
                .http
                .post(&url)
                .basic_auth("app", Some(SECRET))
                .form(&[("token", access.as_str())])
                .send()
                .await
                .ok()?;
            let v: Value = r.json().await.ok()?;
            (v["active"] == false).then_some(())
        })
        .await
        .with_context(|| format!("{} still accepts the revoked token", node.public))?;
    }
    eprintln!(
        "revocation during a NATS node loss: acknowledged {acknowledged:?} after the kill; refused at every issuer"
    );
    Ok(())
}
