//! `signet keymanager`: the key-manager service of a cluster. It follows the JetStream
//! configuration log, keeps private keys sealed under the KEK in a JetStream KV bucket,
//! and answers key leases on `signet.keys.lease`. Several key managers may run: all of
//! them answer leases; the one holding the leader lock ([`crate::lock`], KV bucket
//! `SIGNET_LOCKS`) is the only one that changes keys — it makes sure every algorithm has
//! an active key at start, runs the rotation schedule ([`KeyManager::tick`]) every
//! `rotation_interval`, and carries out key administration from the issuers
//! ([`crate::remote`], `signet.keys.admin`). A standby takes over within about the lock's
//! TTL when the leader dies, at once when it stops cleanly.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::{FutureExt, StreamExt};
use signet_core::projection::Projection;
use signet_eventlog::jetstream::{JetStreamConfig, JetStreamLog};
use signet_eventlog::EventLog;

use crate::lease::ClusterSecret;
use crate::lock::{LeaderLock, LockConfig};
use crate::remote::AdminService;
use crate::vault::kv::{KvVault, KvVaultConfig};
use crate::{serve_leases, Kek, KeyError, KeyManager, KeyPolicy};

/// Everything `signet keymanager` needs.
#[derive(Debug, Clone)]
pub struct KeyManagerConfig {
    pub nats_url: String,
    pub stream: String,
    pub replicas: usize,
    pub kek_file: PathBuf,
    pub cluster_secret_file: PathBuf,
    pub lease_ttl: Duration,
    /// Algorithms and rotation schedule (validated at start).
    pub policy: KeyPolicy,
}

/// Reads the log after the projection's sequence and folds it.
pub async fn catch_up(log: &dyn EventLog, p: &mut Projection) -> Result<(), KeyError> {
    loop {
        let batch = log.read_from(p.seq() + 1, 1024).await?;
        if batch.is_empty() {
            return Ok(());
        }
        for e in &batch {
            p.apply_json(e.seq, &e.subject, &e.payload)
                .map_err(|e| KeyError::Projection(e.to_string()))?;
        }
    }
}

/// What `signet keymanager` does beyond [`KeyManagerConfig`]: the rotation schedule and
/// the leader lock.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The leader lock: bucket, key, TTL (15 s).
    pub lock: LockConfig,
    /// How often the leader runs the rotation schedule (10 s).
    pub rotation_interval: Duration,
    /// This process's id in the leader lock (default: host name, pid and a random suffix).
    pub instance_id: Option<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            lock: LockConfig::default(),
            rotation_interval: Duration::from_secs(10),
            instance_id: None,
        }
    }
}

fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "keymanager".to_owned());
    let mut suffix = [0u8; 6];
    let _ = crate::lease::fill_random(&mut suffix);
    format!(
        "{host}-{}-{}",
        std::process::id(),
        crate::lease::b64url(&suffix)
    )
}

/// How often a standby looks whether the leader has created the first keys.
const KEYS_POLL: Duration = Duration::from_millis(250);

/// Runs the key manager with the default [`ClusterOptions`] until `shutdown` resolves.
pub async fn run(
    config: KeyManagerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), KeyError> {
    run_with(config, ClusterOptions::default(), shutdown).await
}

/// Waits until every algorithm of the policy has an active key: the leader makes sure of
/// it itself, a standby waits for the leader (or for the lock, when the leader is gone).
async fn wait_for_keys(manager: &KeyManager, lock: &LeaderLock) -> Result<(), KeyError> {
    let mut waiting_logged = false;
    loop {
        if lock.is_leader() {
            match manager.tick(manager.now()).await {
                Ok(_) => return Ok(()),
                // Lost the lock half-way: the next leader finishes.
                Err(KeyError::NotLeader) => continue,
                Err(e) => return Err(e),
            }
        }
        let p = manager.projection().await?;
        if manager
            .policy()
            .algorithms
            .iter()
            .all(|alg| p.active_key(*alg).is_some())
        {
            return Ok(());
        }
        if !waiting_logged {
            tracing::info!("standby: waiting for the leading key manager to create the first keys");
            waiting_logged = true;
        }
        tokio::time::sleep(KEYS_POLL).await;
    }
}

/// Runs the key manager until `shutdown` resolves; on shutdown it releases the leader lock
/// so a standby takes over at once.
pub async fn run_with(
    config: KeyManagerConfig,
    options: ClusterOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), KeyError> {
    config.policy.validate()?;
    let secret = ClusterSecret::load(&config.cluster_secret_file)?;
    let kek = Kek::load_or_create(&config.kek_file)?;
    let log = JetStreamLog::connect(JetStreamConfig {
        stream: config.stream.clone(),
        replicas: config.replicas,
        ..JetStreamConfig::new(config.nats_url.clone())
    })
    .await?;
    let nats = log.client().clone();
    let js = async_nats::jetstream::new(nats.clone());
    let vault = KvVault::open(
        &js,
        &KvVaultConfig {
            replicas: config.replicas,
            ..KvVaultConfig::default()
        },
    )
    .await?;
    let log: Arc<dyn EventLog> = log;
    let manager = Arc::new(KeyManager::new(
        kek,
        Arc::new(vault),
        log.clone(),
        config.policy.clone(),
    ));
    let lock = LeaderLock::start(
        js,
        LockConfig {
            replicas: config.replicas,
            ..options.lock.clone()
        },
        options.instance_id.clone().unwrap_or_else(instance_id),
    )
    .await?;
    {
        let leadership = lock.leadership();
        manager.write_only_while(move || leadership.is_leader());
    }
    tracing::info!(
        holder = lock.holder(),
        leader = lock.is_leader(),
        "key manager started"
    );

    let shutdown = shutdown.shared();
    let result = async {
        tokio::select! {
            r = wait_for_keys(&manager, &lock) => r?,
            () = shutdown.clone() => return Ok(()),
        }
        let projection = manager.projection().await?;

        // Follow the log so leases always carry the current published and active keys.
        let current = Arc::new(ArcSwap::from_pointee(projection));
        let follower = AbortOnDrop(spawn_follower(current.clone(), log.clone()));

        // The leader's rotation schedule.
        let _rotation = AbortOnDrop({
            let manager = manager.clone();
            let leadership = lock.leadership();
            let interval = options.rotation_interval.max(Duration::from_millis(100));
            tokio::spawn(async move {
                let mut leading = leadership.watch();
                loop {
                    if leadership.is_leader() {
                        match manager.tick(manager.now()).await {
                            Ok(true) => tracing::info!("key rotation changed the signing keys"),
                            Ok(false) => {}
                            Err(KeyError::NotLeader) => {
                                tracing::info!("lost the leader lock during key rotation")
                            }
                            Err(error) => tracing::error!(%error, "key rotation failed; retrying at the next tick"),
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        r = leading.changed() => if r.is_err() { return },
                    }
                }
            })
        });

        // Key administration, while leading; leases, always.
        let admin = Arc::new(AdminService::new(
            manager.clone(),
            lock.leadership(),
            secret.clone(),
        ));
        let admin = admin.serve(nats.clone(), shutdown.clone());
        let leases = serve_leases(
            nats.clone(),
            manager.clone(),
            move || current.load_full(),
            secret,
            config.lease_ttl,
            shutdown.clone(),
        );
        tokio::pin!(admin, leases);
        let mut admin_done = false;
        let result = loop {
            tokio::select! {
                r = &mut leases => break r,
                r = &mut admin, if !admin_done => {
                    admin_done = true;
                    if let Err(error) = r {
                        tracing::error!(%error, "key administration stopped");
                    }
                }
            }
        };
        drop(follower);
        result
    }
    .await;
    lock.release().await;
    result
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn spawn_follower(
    current: Arc<ArcSwap<Projection>>,
    log: Arc<dyn EventLog>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let from = current.load().seq() + 1;
        let mut stream = match log.follow(from).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot follow the configuration log");
                return;
            }
        };
        while let Some(item) = stream.next().await {
            let applied = item.map_err(|e| e.to_string()).and_then(|e| {
                let mut next = Projection::clone(&current.load());
                next.apply_json(e.seq, &e.subject, &e.payload)
                    .map_err(|e| e.to_string())
                    .map(|()| next)
            });
            match applied {
                Ok(next) => current.store(Arc::new(next)),
                Err(e) => {
                    tracing::error!(error = %e, "configuration follower stopped; leases carry the last known keys");
                    return;
                }
            }
        }
    })
}
