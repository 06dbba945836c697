//! `signet keymanager`: the key-manager service of a cluster. It follows the JetStream
//! configuration log, keeps private keys sealed under the KEK in a JetStream KV bucket,
//! makes sure every algorithm has an active key, and answers key leases on
//! `signet.keys.lease`. Several key managers may run; all of them answer leases.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use signet_core::projection::Projection;
use signet_eventlog::jetstream::{JetStreamConfig, JetStreamLog};
use signet_eventlog::EventLog;

use crate::lease::ClusterSecret;
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

/// Runs the key manager until `shutdown` resolves.
pub async fn run(
    config: KeyManagerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), KeyError> {
    let secret = ClusterSecret::load(&config.cluster_secret_file)?;
    let kek = Kek::load_or_create(&config.kek_file)?;
    let log = JetStreamLog::connect(JetStreamConfig {
        stream: config.stream.clone(),
        replicas: config.replicas,
        ..JetStreamConfig::new(config.nats_url.clone())
    })
    .await?;
    let nats = log.client().clone();
    let vault = KvVault::open(
        &async_nats::jetstream::new(nats.clone()),
        &KvVaultConfig {
            replicas: config.replicas,
            ..KvVaultConfig::default()
        },
    )
    .await?;
    let log: Arc<dyn EventLog> = log;
    let mut projection = Projection::new();
    catch_up(log.as_ref(), &mut projection).await?;
    let manager = Arc::new(KeyManager::new(
        kek,
        Arc::new(vault),
        log.clone(),
        KeyPolicy::default(),
    ));
    manager
        .ensure_active(&projection, signet_core_now())
        .await?;
    catch_up(log.as_ref(), &mut projection).await?;

    // Follow the log so leases always carry the current published and active keys.
    let current = Arc::new(ArcSwap::from_pointee(projection));
    let follower = {
        let current = current.clone();
        let log = log.clone();
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
    };
    let result = serve_leases(
        nats,
        manager,
        move || current.load_full(),
        secret,
        config.lease_ttl,
        shutdown,
    )
    .await;
    follower.abort();
    result
}

fn signet_core_now() -> signet_core::UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
