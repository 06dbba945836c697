//! Key leases over a real `nats-server -js`: the key manager answers `signet.keys.lease`
//! with keys sealed to the issuer, only for authenticated, fresh, unreplayed requests, and
//! issuers keep a lease through a key-manager outage until it ends.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use signet_core::events::{Aggregate, Event};
use signet_core::projection::Projection;
use signet_core::{Algorithm, UnixTime};
use signet_eventlog::embedded::FileLog;
use signet_eventlog::{EventLog, ExpectedVersion, NewEvent};
use signet_jose::{generate_pkcs8, verify_compact, Jwks, JwsSigner, SigningKey};
use signet_keymanager::lease::{Clock, LeaseReply, PendingLease};
use signet_keymanager::{
    serve_leases, ClusterSecret, Kek, KeyManager, KeyManagerService, KeyPolicy, KeyVault, KvVault,
    KvVaultConfig, LeaseClient, LeaseError, LeasedKeys, LEASE_SUBJECT,
};
use signet_tests::eventually;
use signet_tests::nats::NatsServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const PATIENCE: Duration = Duration::from_secs(20);

fn secret(byte: u8) -> ClusterSecret {
    ClusterSecret::from_bytes(&[byte; 32]).expect("secret")
}

fn kek(byte: u8) -> Kek {
    Kek::from_bytes(&[byte; 32]).expect("kek")
}

/// A settable clock, shared by the key manager, the client and the lease holder.
#[derive(Clone)]
struct FakeClock(Arc<AtomicI64>);

impl FakeClock {
    fn new() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs();
        FakeClock(Arc::new(AtomicI64::new(now as i64)))
    }
    fn clock(&self) -> Clock {
        let c = self.0.clone();
        Arc::new(move || c.load(Ordering::SeqCst))
    }
    fn set(&self, t: UnixTime) {
        self.0.store(t, Ordering::SeqCst);
    }
}

async fn fold(log: &dyn EventLog) -> Result<Projection> {
    let mut p = Projection::new();
    for e in log.read_from(1, usize::MAX).await? {
        p.apply(e.seq, &e.subject, Event::from_json(&e.payload)?)?;
    }
    Ok(p)
}

/// A cluster in miniature: a NATS server, an embedded event log with active keys for every
/// algorithm plus one published (not yet active) ES256 key, the sealed keys in the
/// JetStream KV vault.
struct Cluster {
    nats: NatsServer,
    _dir: tempfile::TempDir,
    log: Arc<FileLog>,
    vault: Arc<KvVault>,
    projection: Arc<Projection>,
    published_kid: String,
}

impl Cluster {
    async fn start() -> Result<Cluster> {
        let nats = NatsServer::start().await?;
        let dir = tempfile::tempdir()?;
        let log = FileLog::open(&dir.path().join("log"))?;
        let client = async_nats::connect(&nats.url).await?;
        let vault = Arc::new(
            KvVault::open(
                &async_nats::jetstream::new(client),
                &KvVaultConfig::default(),
            )
            .await?,
        );
        let km = KeyManager::new(kek(1), vault.clone(), log.clone(), KeyPolicy::default());
        km.ensure_active(&fold(log.as_ref()).await?, 1000).await?;
        // The next ES256 key: published, not yet active.
        let kid = "es256-next".to_owned();
        let next =
            SigningKey::from_pkcs8(&kid, Algorithm::ES256, &generate_pkcs8(Algorithm::ES256)?)?;
        vault.put(&kek(1), &next).await?;
        let event = Event::SigningKeyPublished {
            jwk: next.public_jwk().clone(),
            at: 1001,
        };
        log.append(
            NewEvent {
                subject: Aggregate::SigningKey.subject(&kid),
                actor: "keymanager".into(),
                at_ms: 1_001_000,
                payload: event.to_json(),
            },
            ExpectedVersion::Exact(0),
        )
        .await?;
        let projection = Arc::new(fold(log.as_ref()).await?);
        Ok(Cluster {
            nats,
            _dir: dir,
            log,
            vault,
            projection,
            published_kid: kid,
        })
    }

    async fn client(&self) -> Result<async_nats::Client> {
        Ok(async_nats::connect(&self.nats.url).await?)
    }

    fn manager(&self, kek_byte: u8) -> Arc<KeyManager> {
        Arc::new(KeyManager::new(
            kek(kek_byte),
            self.vault.clone(),
            self.log.clone(),
            KeyPolicy::default(),
        ))
    }

    fn service(&self, ttl: Duration, clock: Option<Clock>) -> Arc<KeyManagerService> {
        let p = self.projection.clone();
        let mut s = KeyManagerService::new(self.manager(1), move || p.clone(), secret(7), ttl);
        if let Some(c) = clock {
            s = s.with_clock(c);
        }
        Arc::new(s)
    }

    /// Starts answering leases; the returned sender stops it.
    async fn run(&self, service: &Arc<KeyManagerService>) -> Result<Running> {
        service.check_vault().await?;
        let listener = service.listen(self.client().await?).await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(listener.run(async move {
            let _ = stopped.await;
        }));
        Ok(Running { stop, task })
    }
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), signet_keymanager::KeyError>>,
}

impl Running {
    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(PATIENCE, self.task).await???;
        Ok(())
    }
}

#[tokio::test]
async fn lease_round_trip_gives_keys_that_sign_tokens_verifiable_with_the_jwks() -> Result<()> {
    let cluster = Cluster::start().await?;
    let service = cluster.service(Duration::from_secs(600), None);
    let running = cluster.run(&service).await?;
    let nats = cluster.client().await?;

    let lease = LeaseClient::new(nats.clone(), "issuer-1", secret(7))
        .lease()
        .await?;
    let now = signet_keymanager::lease::system_clock()();
    assert!(
        (now + 590..=now + 601).contains(&lease.expires_at),
        "{}",
        lease.expires_at
    );
    let jwks: Jwks = serde_json::from_str(cluster.projection.jwks_json())?;
    let mut kids: Vec<&str> = lease.keys.iter().map(|k| k.kid()).collect();
    kids.sort_unstable();
    let mut want: Vec<&str> = cluster
        .projection
        .keys()
        .map(|k| k.jwk.kid.as_str())
        .collect();
    want.sort_unstable();
    assert_eq!(kids, want, "every active and published key");
    assert_eq!(kids.len(), 5);
    assert!(kids.contains(&cluster.published_kid.as_str()));
    for key in &lease.keys {
        let token = JwsSigner::new(key.clone(), "at+jwt").sign(br#"{"sub":"x"}"#)?;
        let verified = verify_compact(&token, |kid| jwks.find(kid))?;
        assert_eq!(verified.kid, key.kid());
        assert_eq!(verified.payload, br#"{"sub":"x"}"#);
    }

    // On the wire: a reply whose keys are sealed, never the PKCS#8 in any encoding.
    let pending = PendingLease::new(&secret(7), "issuer-1", now)?;
    let raw = nats
        .request(LEASE_SUBJECT, pending.request_json().into())
        .await?
        .payload;
    let text = std::str::from_utf8(&raw)?;
    let reply: LeaseReply = serde_json::from_str(text)?;
    assert_eq!(reply.keys.len(), 5);
    for key in &lease.keys {
        assert!(!text.contains(&URL_SAFE_NO_PAD.encode(key.pkcs8_der())));
        assert!(!text.contains(&STANDARD.encode(key.pkcs8_der())));
    }
    assert_eq!(pending.open(&secret(7), &raw, now)?.keys.len(), 5);
    assert_eq!(service.granted(), 2);
    running.stop().await
}

#[tokio::test]
async fn unauthenticated_stale_and_replayed_requests_get_no_key_material() -> Result<()> {
    let cluster = Cluster::start().await?;
    let service = cluster.service(Duration::from_secs(600), None);
    let running = cluster.run(&service).await?;
    let nats = cluster.client().await?;
    let now = signet_keymanager::lease::system_clock()();

    // A wrong cluster secret.
    let err = LeaseClient::new(nats.clone(), "issuer-1", secret(8))
        .lease()
        .await
        .unwrap_err();
    assert!(
        matches!(err, LeaseError::Refused(ref e) if e == "unauthorized"),
        "{err}"
    );
    let wrong = PendingLease::new(&secret(8), "issuer-1", now)?;
    let raw = nats
        .request(LEASE_SUBJECT, wrong.request_json().into())
        .await?
        .payload;
    assert_eq!(&raw[..], br#"{"error":"unauthorized"}"#);

    // Garbage.
    let raw = nats.request(LEASE_SUBJECT, "hello".into()).await?.payload;
    assert_eq!(&raw[..], br#"{"error":"unauthorized"}"#);

    // A stale timestamp (and one too far ahead).
    for ts in [now - 120, now + 120] {
        let stale = PendingLease::new(&secret(7), "issuer-1", ts)?;
        let raw = nats
            .request(LEASE_SUBJECT, stale.request_json().into())
            .await?
            .payload;
        assert_eq!(&raw[..], br#"{"error":"unauthorized"}"#, "timestamp {ts}");
    }

    // The same request twice: served once, refused when replayed.
    let pending = PendingLease::new(&secret(7), "issuer-1", now)?;
    let request = pending.request_json();
    let first = nats
        .request(LEASE_SUBJECT, request.clone().into())
        .await?
        .payload;
    let replayed = nats.request(LEASE_SUBJECT, request.into()).await?.payload;
    assert_eq!(&replayed[..], br#"{"error":"unauthorized"}"#);
    assert_eq!(pending.open(&secret(7), &first, now)?.keys.len(), 5);

    assert_eq!(service.granted(), 1);
    assert_eq!(service.refused(), 6);
    running.stop().await
}

#[tokio::test]
async fn tampered_replies_are_refused_by_the_client() -> Result<()> {
    let cluster = Cluster::start().await?;
    let service = cluster.service(Duration::from_secs(600), None);
    let running = cluster.run(&service).await?;
    let nats = cluster.client().await?;
    let now = signet_keymanager::lease::system_clock()();

    type Tamper = fn(&mut LeaseReply);
    let tampers: [(&str, Tamper); 4] = [
        ("flipped byte of sealed", |r| {
            let mut blob = URL_SAFE_NO_PAD.decode(&r.keys[0].sealed).expect("b64");
            blob[20] ^= 0x01;
            r.keys[0].sealed = URL_SAFE_NO_PAD.encode(blob);
        }),
        ("swapped kids", |r| {
            let a = r.keys[0].kid.clone();
            r.keys[0].kid = std::mem::replace(&mut r.keys[1].kid, a);
        }),
        ("later expires_at", |r| r.expires_at += 3600),
        ("another public key", |r| {
            r.public_key = URL_SAFE_NO_PAD.encode([9u8; 32]);
        }),
    ];
    for (what, tamper) in tampers {
        let pending = PendingLease::new(&secret(7), "issuer-1", now)?;
        let raw = nats
            .request(LEASE_SUBJECT, pending.request_json().into())
            .await?
            .payload;
        let mut reply: LeaseReply = serde_json::from_slice(&raw)?;
        tamper(&mut reply);
        let err = pending
            .open(&secret(7), &serde_json::to_vec(&reply)?, now)
            .expect_err(what);
        assert!(matches!(err, LeaseError::BadReplyMac), "{what}: {err}");
        let message = err.to_string();
        assert!(!message.contains(&reply.keys[0].sealed), "{message}");
    }
    running.stop().await
}

#[tokio::test]
async fn two_key_managers_in_the_queue_group_both_serve_leases() -> Result<()> {
    let cluster = Cluster::start().await?;
    let a = cluster.service(Duration::from_secs(600), None);
    let b = cluster.service(Duration::from_secs(600), None);
    let running_a = cluster.run(&a).await?;
    let running_b = cluster.run(&b).await?;
    let client = LeaseClient::new(cluster.client().await?, "issuer-1", secret(7));

    // Each request gets one answer, from either; over many requests both answer.
    let mut n = 0;
    while a.granted() == 0 || b.granted() == 0 {
        assert_eq!(client.lease().await?.keys.len(), 5);
        n += 1;
        assert!(n <= 200, "one key manager never answered: {a:?} {b:?}");
    }
    assert_eq!(a.granted() + b.granted(), n);

    // With one stopped, the other answers everything.
    running_a.stop().await?;
    let before = b.granted();
    for _ in 0..10 {
        assert_eq!(client.lease().await?.keys.len(), 5);
    }
    assert_eq!(b.granted(), before + 10);
    running_b.stop().await
}

#[tokio::test]
async fn leased_keys_outlive_a_key_manager_outage_until_the_lease_ends() -> Result<()> {
    let cluster = Cluster::start().await?;
    let clock = FakeClock::new();
    let service = cluster.service(Duration::from_secs(600), Some(clock.clock()));
    let running = cluster.run(&service).await?;
    let client = LeaseClient::new(cluster.client().await?, "issuer-1", secret(7))
        .with_clock(clock.clock())
        .with_timeout(Duration::from_secs(2));

    let leased = LeasedKeys::new(clock.clock());
    assert!(leased.signer_keys().is_empty());
    assert_eq!(leased.expires_at(), None);
    let updates: Arc<Mutex<Vec<usize>>> = Arc::default();
    let seen = updates.clone();
    let _renewal = leased.spawn_renewal(client, move |keys| {
        seen.lock().expect("lock").push(keys.len());
    });
    eventually(PATIENCE, || async {
        (!leased.signer_keys().is_empty()).then_some(())
    })
    .await?;
    let expires_at = leased.expires_at().context("expiry")?;
    assert_eq!(leased.signer_keys().len(), 5);
    assert_eq!(*updates.lock().expect("lock"), [5]);

    // The key manager goes away; renewals fail, the lease is still served.
    running.stop().await?;
    leased.renew_now();
    clock.set(expires_at - 1);
    leased.renew_now();
    assert_eq!(leased.signer_keys().len(), 5, "served until the lease ends");
    assert!(leased.is_valid());
    let before = service.granted();

    // At the end of the lease, no keys; the issuer is told.
    clock.set(expires_at);
    assert!(leased.signer_keys().is_empty());
    assert!(!leased.is_valid());
    leased.renew_now();
    eventually(PATIENCE, || async {
        (updates.lock().ok()?.as_slice() == [5, 0]).then_some(())
    })
    .await?;
    assert_eq!(
        leased.expires_at(),
        Some(expires_at),
        "the metric keeps the last expiry"
    );
    assert_eq!(service.granted(), before);

    // A key manager comes back: the next renewal restores the keys.
    let running = cluster.run(&service).await?;
    leased.renew_now();
    eventually(PATIENCE, || async {
        (leased.signer_keys().len() == 5).then_some(())
    })
    .await?;
    assert_eq!(leased.expires_at(), Some(expires_at + 600));
    eventually(PATIENCE, || async {
        (updates.lock().ok()?.as_slice() == [5, 0, 5]).then_some(())
    })
    .await?;
    running.stop().await
}

#[tokio::test]
async fn leases_are_renewed_at_half_their_lifetime() -> Result<()> {
    let cluster = Cluster::start().await?;
    let service = cluster.service(Duration::from_secs(2), None);
    let running = cluster.run(&service).await?;
    let client = LeaseClient::new(cluster.client().await?, "issuer-1", secret(7));
    let leased = LeasedKeys::new(signet_keymanager::lease::system_clock());
    let _renewal = leased.spawn_renewal(client, |_| {});
    eventually(PATIENCE, || async { leased.expires_at() }).await?;
    let first = leased.expires_at().context("expiry")?;
    // A 2 s lease is renewed about every second: a later expiry within a few seconds,
    // and the keys never lapse meanwhile.
    eventually(PATIENCE, || async {
        assert_eq!(leased.signer_keys().len(), 5);
        (service.granted() >= 3 && leased.expires_at()? > first).then_some(())
    })
    .await?;
    running.stop().await
}

#[tokio::test]
async fn a_wrong_kek_stops_the_key_manager_with_a_clear_error() -> Result<()> {
    let cluster = Cluster::start().await?;
    let p = cluster.projection.clone();
    let service = KeyManagerService::new(
        cluster.manager(2),
        move || p.clone(),
        secret(7),
        Duration::from_secs(600),
    );
    let err = service.check_vault().await.unwrap_err().to_string();
    assert!(
        err.contains("the KEK does not open the stored key"),
        "{err}"
    );

    // serve_leases checks first and never starts answering.
    let p = cluster.projection.clone();
    let err = tokio::time::timeout(
        PATIENCE,
        serve_leases(
            cluster.client().await?,
            cluster.manager(2),
            move || p.clone(),
            secret(7),
            Duration::from_secs(600),
            std::future::pending(),
        ),
    )
    .await?
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("the KEK does not open the stored key"),
        "{err}"
    );
    let no_one = LeaseClient::new(cluster.client().await?, "issuer-1", secret(7))
        .lease()
        .await
        .unwrap_err();
    assert!(matches!(no_one, LeaseError::Unavailable(_)), "{no_one}");

    // The right KEK opens all five.
    assert_eq!(
        cluster.manager(1).check_vault(&cluster.projection).await?,
        5
    );
    Ok(())
}

#[tokio::test]
async fn the_kv_vault_keeps_sealed_keys_across_connections() -> Result<()> {
    let nats = NatsServer::start().await?;
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await?);
    let vault = KvVault::open(&js, &KvVaultConfig::default()).await?;
    assert_eq!(vault.bucket(), "SIGNET_KEYS");
    let key = SigningKey::from_pkcs8(
        "ed.1/x",
        Algorithm::EdDSA,
        &generate_pkcs8(Algorithm::EdDSA)?,
    )?;
    vault.put(&kek(1), &key).await?;

    // Another connection opens the existing bucket and reads the key.
    let js2 = async_nats::jetstream::new(async_nats::connect(&nats.url).await?);
    let again = KvVault::open(&js2, &KvVaultConfig::default()).await?;
    let back = again
        .get(&kek(1), "ed.1/x", Algorithm::EdDSA)
        .await?
        .context("stored")?;
    assert_eq!(back.public_jwk(), key.public_jwk());
    assert!(again
        .get(&kek(1), "absent", Algorithm::EdDSA)
        .await?
        .is_none());
    let err = again
        .get(&kek(2), "ed.1/x", Algorithm::EdDSA)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("KEK does not open"), "{err}");

    // The bucket: history 1, file storage; the entry is the sealed document, no plaintext.
    let store = js2.get_key_value("SIGNET_KEYS").await?;
    let status = store.status().await?;
    assert_eq!(status.history(), 1);
    let raw = store.get("ed=2E1=2Fx").await?.context("escaped key")?;
    let doc: serde_json::Value = serde_json::from_slice(&raw)?;
    assert_eq!(doc["kid"], "ed.1/x");
    assert!(!String::from_utf8_lossy(&raw).contains(&STANDARD.encode(key.pkcs8_der())));
    Ok(())
}
