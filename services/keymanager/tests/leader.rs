//! Several key managers over a real `nats-server -js`: one leads (a lock with a TTL in the
//! JetStream KV bucket `SIGNET_LOCKS`), only the leader changes keys, a standby takes over
//! when the leader goes, and issuers rotate, revoke and import keys through the leader on
//! `signet.keys.admin`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::StreamExt;
use signet_core::keys::KeyState;
use signet_core::projection::Projection;
use signet_core::Algorithm;
use signet_eventlog::jetstream::{JetStreamConfig, JetStreamLog, DEFAULT_STREAM};
use signet_eventlog::EventLog;
use signet_jose::{generate_pkcs8, verify_compact, Jwks, JwsSigner, SigningKey};
use signet_keymanager::cluster::{ClusterOptions, KeyManagerConfig};
use signet_keymanager::{
    ClusterSecret, KeyAdmin, KeyError, KeyPolicy, LeaderLock, LockConfig, RemoteKeyAdmin,
    ADMIN_SUBJECT, LEADER_KEY, LOCK_BUCKET,
};
use signet_tests::eventually;
use signet_tests::nats::NatsServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TTL: Duration = Duration::from_secs(2);
const PATIENCE: Duration = Duration::from_secs(20);

fn lock_config() -> LockConfig {
    LockConfig {
        ttl: TTL,
        ..LockConfig::default()
    }
}

async fn js(nats: &NatsServer) -> Result<async_nats::jetstream::Context> {
    Ok(async_nats::jetstream::new(
        async_nats::connect(&nats.url).await?,
    ))
}

/// Waits until exactly one of `locks` leads; returns its index.
async fn sole_leader(locks: &[&LeaderLock], patience: Duration) -> Result<usize> {
    eventually(patience, || async {
        let leaders: Vec<usize> = (0..locks.len()).filter(|i| locks[*i].is_leader()).collect();
        (leaders.len() == 1).then(|| leaders[0])
    })
    .await
}

#[tokio::test]
async fn exactly_one_contender_leads_and_another_takes_over_when_it_goes() -> Result<()> {
    let nats = NatsServer::start().await?;
    let a = LeaderLock::start(js(&nats).await?, lock_config(), "a").await?;
    let b = LeaderLock::start(js(&nats).await?, lock_config(), "b").await?;
    assert!(a.is_leader(), "the first contender acquires at once");
    assert!(!b.is_leader());

    // Over a few renewals (a TTL and a half), never two leaders, never none.
    let until = Instant::now() + TTL * 3 / 2;
    while Instant::now() < until {
        assert!(a.is_leader() ^ b.is_leader());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kv = js(&nats).await?.get_key_value(LOCK_BUCKET).await?;
    assert_eq!(kv.get(LEADER_KEY).await?.as_deref(), Some(&b"a"[..]));
    assert_eq!(kv.status().await?.max_age(), TTL);

    // The leader dies without a word: the lock expires, the standby takes it within about
    // TTL + TTL/3.
    let gone = Instant::now();
    drop(a);
    eventually(TTL * 3, || async { b.is_leader().then_some(()) })
        .await
        .context("the standby did not take over")?;
    let took = gone.elapsed();
    assert!(took <= TTL * 2, "took {took:?}");

    // A clean stop hands over at once (at the standby's next attempt, TTL/3).
    let c = LeaderLock::start(js(&nats).await?, lock_config(), "c").await?;
    assert!(!c.is_leader());
    let mut c_leading = c.watch();
    let released = Instant::now();
    b.release().await;
    assert!(!b.is_leader());
    tokio::time::timeout(TTL, c_leading.wait_for(|l| *l))
        .await
        .context("c did not take over after the release")??;
    assert!(released.elapsed() < TTL, "{:?}", released.elapsed());
    assert_eq!(sole_leader(&[&b, &c], PATIENCE).await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_lock_bucket_with_another_ttl_is_adopted() -> Result<()> {
    let nats = NatsServer::start().await?;
    let first = LeaderLock::start(js(&nats).await?, lock_config(), "a").await?;
    let other = LeaderLock::start(
        js(&nats).await?,
        LockConfig {
            ttl: Duration::from_secs(30),
            ..LockConfig::default()
        },
        "b",
    )
    .await?;
    assert_eq!(
        other.ttl(),
        TTL,
        "a longer TTL would renew after the lock expired"
    );
    assert!(first.is_leader() && !other.is_leader());
    Ok(())
}

#[tokio::test]
async fn leadership_comes_back_after_a_nats_restart() -> Result<()> {
    let mut nats = NatsServer::start().await?;
    let a = LeaderLock::start(js(&nats).await?, lock_config(), "a").await?;
    let b = LeaderLock::start(js(&nats).await?, lock_config(), "b").await?;
    assert_eq!(sole_leader(&[&a, &b], PATIENCE).await?, 0);
    nats.restart().await?;
    // Renewals failed while the server was away; afterwards exactly one leads again.
    sole_leader(&[&a, &b], PATIENCE).await?;
    let until = Instant::now() + TTL;
    while Instant::now() < until {
        assert!(!(a.is_leader() && b.is_leader()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sole_leader(&[&a, &b], PATIENCE).await?;
    Ok(())
}

/// A key manager (`cluster::run_with`) in this process.
struct Km {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), KeyError>>,
}

impl Km {
    /// Stops cleanly (releases the lock).
    async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, &mut self.task).await???;
        Ok(())
    }

    /// Dies without a word: the lock expires after its TTL.
    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

struct Setup {
    nats: NatsServer,
    dir: tempfile::TempDir,
    secret: ClusterSecret,
}

impl Setup {
    async fn start() -> Result<Setup> {
        let nats = NatsServer::start().await?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("kek"), STANDARD.encode([4u8; 32]))?;
        std::fs::write(dir.path().join("secret"), STANDARD.encode([8u8; 32]))?;
        Ok(Setup {
            nats,
            dir,
            secret: ClusterSecret::from_bytes(&[8u8; 32])?,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spawn_km(&self, id: &str) -> Km {
        let config = KeyManagerConfig {
            nats_url: self.nats.url.clone(),
            stream: DEFAULT_STREAM.to_owned(),
            replicas: 1,
            kek_file: self.path("kek"),
            cluster_secret_file: self.path("secret"),
            lease_ttl: Duration::from_secs(600),
            policy: KeyPolicy::default(),
        };
        let options = ClusterOptions {
            lock: lock_config(),
            rotation_interval: Duration::from_millis(200),
            instance_id: Some(id.to_owned()),
        };
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(signet_keymanager::cluster::run_with(
            config,
            options,
            async move {
                let _ = rx.await;
            },
        ));
        Km {
            stop: Some(tx),
            task,
        }
    }

    async fn log(&self) -> Result<Arc<JetStreamLog>> {
        Ok(JetStreamLog::connect(JetStreamConfig::new(self.nats.url.clone())).await?)
    }

    /// The configuration as the log says now.
    async fn projection(&self) -> Result<Projection> {
        let log = self.log().await?;
        let mut p = Projection::new();
        signet_keymanager::cluster::catch_up(log.as_ref(), &mut p).await?;
        Ok(p)
    }

    /// Waits until every algorithm has an active key.
    async fn keys(&self) -> Result<Projection> {
        eventually(PATIENCE, || async {
            let p = self.projection().await.ok()?;
            Algorithm::ALL
                .iter()
                .all(|alg| p.active_key(*alg).is_some())
                .then_some(p)
        })
        .await
    }

    /// Which key manager holds the leader lock.
    async fn leader(&self) -> Result<String> {
        let kv = js(&self.nats).await?.get_key_value(LOCK_BUCKET).await?;
        let value = kv.get(LEADER_KEY).await?.context("nobody leads")?;
        Ok(String::from_utf8(value.to_vec())?)
    }

    async fn admin(&self, secret: ClusterSecret) -> Result<RemoteKeyAdmin> {
        let nats = async_nats::connect(&self.nats.url).await?;
        Ok(RemoteKeyAdmin::new(nats, secret, "issuer-1").with_timeout(TTL * 5))
    }
}

fn assert_one_active_key_per_algorithm(p: &Projection) {
    for alg in Algorithm::ALL {
        let active = p
            .keys()
            .filter(|k| k.jwk.alg == alg && k.state == KeyState::Active)
            .count();
        assert_eq!(active, 1, "{alg}: {:?}", p.keys().collect::<Vec<_>>());
    }
}

async fn published_events(setup: &Setup) -> Result<usize> {
    let log = setup.log().await?;
    Ok(log
        .read_from(1, usize::MAX)
        .await?
        .iter()
        .filter(|e| String::from_utf8_lossy(&e.payload).contains("signing_key.published"))
        .count())
}

#[tokio::test]
async fn two_key_managers_starting_together_create_one_active_key_per_algorithm() -> Result<()> {
    let setup = Setup::start().await?;
    let a = setup.spawn_km("km-a");
    let b = setup.spawn_km("km-b");
    let p = setup.keys().await?;
    assert_one_active_key_per_algorithm(&p);
    assert_eq!(p.keys().count(), 4);
    let leader = setup.leader().await?;
    assert!(leader == "km-a" || leader == "km-b", "{leader}");

    // Both run through their start-up and a few rotation ticks (200 ms): still four keys.
    // The leader stops cleanly; the standby takes over and finds nothing to do either.
    let (gone, stays) = if leader == "km-a" { (a, b) } else { (b, a) };
    tokio::time::sleep(TTL / 2).await;
    gone.stop().await?;
    eventually(PATIENCE, || async {
        let now = setup.leader().await.ok()?;
        (now != leader).then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await; // a couple of the new leader's ticks
    let p = setup.projection().await?;
    assert_one_active_key_per_algorithm(&p);
    assert_eq!(published_events(&setup).await?, 4, "no key made twice");
    stays.stop().await
}

fn pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

#[tokio::test]
async fn issuers_rotate_revoke_and_import_keys_through_the_leader() -> Result<()> {
    let setup = Setup::start().await?;
    let km = setup.spawn_km("km-a");
    let before = setup.keys().await?;
    let admin = setup.admin(setup.secret.clone()).await?;

    // Everything on the admin subject, as an eavesdropper sees it.
    let spy = async_nats::connect(&setup.nats.url).await?;
    let mut wire = spy.subscribe(ADMIN_SUBJECT).await?;
    spy.flush().await?;

    // Rotate: a new active key, the old one retired and still in the JWKS.
    let old = before
        .active_key(Algorithm::ES256)
        .context("es256")?
        .jwk
        .kid
        .clone();
    let new = admin.rotate(Algorithm::ES256).await?;
    assert_eq!(new.alg, Algorithm::ES256);
    let p = setup.projection().await?;
    assert_eq!(
        p.active_key(Algorithm::ES256).context("es256")?.jwk.kid,
        new.kid
    );
    assert_eq!(p.key(&old).context("old")?.state, KeyState::Retired);
    assert_one_active_key_per_algorithm(&p);

    // Revoke the active key: gone from the JWKS at once, another key signs.
    admin.revoke(&new.kid).await?;
    let p = setup.projection().await?;
    assert!(p.key(&new.kid).is_none());
    let jwks: Jwks = serde_json::from_str(p.jwks_json())?;
    assert!(jwks.find(&new.kid).is_none());
    let successor = p.active_key(Algorithm::ES256).context("es256")?;
    assert_ne!(successor.jwk.kid, new.kid);
    assert_one_active_key_per_algorithm(&p);

    // Unknown kid: a distinct error.
    let err = admin.revoke("no-such-kid").await.unwrap_err();
    assert!(
        matches!(err, KeyError::UnknownKey { ref kid } if kid == "no-such-kid"),
        "{err}"
    );

    // Import: the key becomes active, tokens it signs verify against its JWK, and the PEM
    // never crosses NATS in the clear.
    let der = generate_pkcs8(Algorithm::EdDSA)?;
    let text = pem(&der);
    let imported = admin.import_pem(Algorithm::EdDSA, &text).await?;
    let p = setup.projection().await?;
    assert_eq!(
        p.active_key(Algorithm::EdDSA).context("eddsa")?.jwk.kid,
        imported.kid
    );
    let key = Arc::new(SigningKey::from_pem(
        imported.kid.clone(),
        Algorithm::EdDSA,
        &text,
    )?);
    let token = JwsSigner::new(key, "at+jwt").sign(br#"{"sub":"x"}"#)?;
    let jwks: Jwks = serde_json::from_str(p.jwks_json())?;
    assert_eq!(
        verify_compact(&token, |kid| jwks.find(kid))?.kid,
        imported.kid
    );

    // A bad PEM: a distinct error, nothing written.
    let seq = p.seq();
    let err = admin
        .import_pem(Algorithm::ES256, &pem(&der))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::BadPem {
                alg: Algorithm::ES256,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(setup.projection().await?.seq(), seq);

    // Someone without the cluster secret is refused.
    let stranger = setup.admin(ClusterSecret::from_bytes(&[9u8; 32])?).await?;
    let err = stranger.rotate(Algorithm::ES256).await.unwrap_err();
    assert!(err.to_string().contains("unauthorized"), "{err}");
    assert_eq!(setup.projection().await?.seq(), seq);

    let pkcs8_b64 = STANDARD.encode(&der);
    let body_b64 = pkcs8_b64[24..56].to_owned();
    let mut seen = 0;
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(200), wire.next()).await
    {
        let payload = String::from_utf8_lossy(&message.payload);
        assert!(!payload.contains("PRIVATE KEY"), "{payload}");
        assert!(!payload.contains(&body_b64), "{payload}");
        seen += 1;
    }
    assert!(seen >= 6, "saw {seen} requests");
    km.stop().await
}

#[tokio::test]
async fn key_administration_follows_the_leader_when_it_goes() -> Result<()> {
    let setup = Setup::start().await?;
    let a = setup.spawn_km("km-a");
    setup.keys().await?;
    let b = setup.spawn_km("km-b");
    let admin = setup.admin(setup.secret.clone()).await?;
    assert_eq!(setup.leader().await?, "km-a");
    admin.rotate(Algorithm::RS256).await?;

    // The leader stops cleanly: the standby answers (the client retries meanwhile).
    a.stop().await?;
    let started = Instant::now();
    let key = admin.rotate(Algorithm::PS256).await?;
    assert!(started.elapsed() < TTL * 2, "{:?}", started.elapsed());
    assert_eq!(setup.leader().await?, "km-b");
    let p = setup.projection().await?;
    assert_eq!(
        p.active_key(Algorithm::PS256).context("ps256")?.jwk.kid,
        key.kid
    );

    // The new leader dies: its lock expires after the TTL, and the restarted standby takes
    // over (within TTL + TTL/3 of the last renewal); the client retries meanwhile.
    // An aborted task's NATS subscription can outlive it for a moment, and a request
    // routed there times out (timeouts are never retried: the change may have been made),
    // so wait for the takeover, bounded, before the next admin request.
    let a = setup.spawn_km("km-a");
    b.crash().await;
    let crashed = Instant::now();
    while setup.leader().await.ok().as_deref() != Some("km-a") {
        assert!(
            crashed.elapsed() < TTL * 3,
            "no takeover after {:?}",
            crashed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = crashed.elapsed();
    assert!(took < TTL * 3, "took {took:?}");
    let key = admin.rotate(Algorithm::EdDSA).await?;
    let p = setup.projection().await?;
    assert_eq!(
        p.active_key(Algorithm::EdDSA).context("eddsa")?.jwk.kid,
        key.kid
    );
    assert_one_active_key_per_algorithm(&p);
    if published_events(&setup).await? != 7 {
        bail!("expected the 4 first keys and 3 rotations");
    }
    a.stop().await
}
