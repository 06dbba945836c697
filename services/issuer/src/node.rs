//! Building and running a node. `serve` is the all-in-one node: event log, key manager and
//! issuer in one process, on files in the data directory:
//!
//! ```text
//! <data-dir>/LOCK        one process per data directory
//! <data-dir>/events/     the configuration event log and its snapshot (signet-eventlog)
//! <data-dir>/keys/       private signing keys, sealed under the KEK (signet-keymanager)
//! <data-dir>/store/      short-lived state: codes, sessions, refresh tokens (signet-store)
//! <data-dir>/projections/users.redb   users, projected outside memory (crate::users)
//! <data-dir>/revocations.jsonl  revocations in force (crate::revocations)
//! <data-dir>/queues/backchannel.redb  back-channel logout deliveries (http::backchannel)
//! <data-dir>/kek         the key-encryption key, unless --kek-file puts it elsewhere
//! ```
//!
//! Start-up: lock the directory, load the latest snapshot and replay the log after it,
//! write what must exist from the start (standard identity resources, the admin API's
//! scope and resource, the bootstrap admin client), make sure every algorithm has an
//! active key, then follow the log's live tail and serve.
//!
//! Signing keys: in `serve` the key manager runs in-process — it rotates keys on its
//! schedule (a tick every [`ROTATION_INTERVAL`]), hands the node every key it publishes
//! before that key activates, and is the node's key administration (`/admin/v1/Key`). In
//! a cluster the node leases keys from the key managers and forwards key administration
//! to the leading one over NATS ([`RemoteKeyAdmin`]), renewing its lease after each change.

use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use signet_core::bootstrap::{self, ADMIN_CLIENT_ID};
use signet_core::commands::{decide, Command, CommandError};
use signet_core::events::Aggregate;
use signet_core::projection::Projection;
use signet_core::scope::ScopeKind;
use signet_core::secret::SecretDigest;
use signet_eventlog::embedded::FileLog;
use signet_eventlog::jetstream::{JetStreamConfig, JetStreamLog};
use signet_eventlog::{EventLog, EventLogError, ExpectedVersion, NewEvent, Snapshot};
use signet_keymanager::lease::system_clock;
use signet_keymanager::{
    ClusterSecret, FileVault, Kek, KeyError, KeyManager, LeaseClient, LeasedKeys, RemoteKeyAdmin,
};
use signet_store::embedded::EmbeddedStore;
use signet_store::redis::{RedisConfig, RedisStore};
use signet_store::{Store, StoreError};
use tokio::net::TcpListener;

use crate::config::{Backend, ClusterSettings, NodeConfig};
use crate::http;
use crate::state::{catch_up, AppState, FoldError};

/// Variants that wrap a cause keep it as their `source`, and their message does not repeat
/// it: `signet` prints the whole chain (`{:#}`), one cause after another.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("cannot listen on {addr} ({flag})")]
    Bind {
        addr: SocketAddr,
        flag: &'static str,
        source: std::io::Error,
    },
    #[error("event log")]
    Log(#[from] EventLogError),
    #[error("configuration log cannot be applied")]
    Fold(#[from] FoldError),
    #[error("bootstrap")]
    Bootstrap(#[from] CommandError),
    #[error("signing keys")]
    Keys(#[from] KeyError),
    #[error("snapshot cannot be read: {0}")]
    Snapshot(serde_json::Error),
    #[error("revocations")]
    Revocations(#[from] crate::revocations::RevocationError),
    #[error("short-lived state store")]
    Store(#[from] StoreError),
    #[error("users projection")]
    Users(#[from] crate::users::UsersError),
    #[error("back-channel logout queue")]
    Queue(#[from] signet_eventlog::queue::QueueError),
    #[error("outbound HTTP client")]
    Outbound(#[from] signet_outbound::OutboundError),
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// The actor recorded on events the node writes by itself.
pub const SYSTEM_ACTOR: &str = "system";

/// How many times a cluster issuer tries its start-up reads and bootstrap writes.
const STARTUP_ATTEMPTS: u32 = 5;

/// How often `serve`'s in-process key manager runs the rotation schedule.
pub const ROTATION_INTERVAL: Duration = Duration::from_secs(60);

/// The bound public and admin listeners, before the node is built.
struct Listeners {
    public: TcpListener,
    admin: TcpListener,
}

/// A started node: state built, listeners bound, not yet serving.
pub struct Node {
    state: AppState,
    public: TcpListener,
    admin: TcpListener,
    generated_admin_secret: Option<String>,
    _resources: Resources,
}

fn now() -> i64 {
    http::token::now()
}

fn random_secret() -> Result<String, NodeError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| NodeError::DataDir {
            path: String::new(),
            reason: "no randomness available".into(),
        })?;
    Ok(signet_jose::b64url(&bytes))
}

fn lock_data_dir(dir: &std::path::Path) -> Result<File, NodeError> {
    let err = |reason: String| NodeError::DataDir {
        path: dir.display().to_string(),
        reason,
    };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        // A typo'd --data-dir would otherwise be created silently, with all its parents.
        let path = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        tracing::info!(path = %path.display(), "created the data directory");
    }
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))
        .map_err(|e| err(e.to_string()))?;
    lock.try_lock()
        .map_err(|_| err("another signet process is using it".into()))?;
    Ok(lock)
}

async fn run_command(
    log: &dyn EventLog,
    p: &mut Projection,
    cmd: Command,
) -> Result<(), NodeError> {
    let d = decide(p, cmd)?;
    let new = NewEvent {
        subject: d.event.subject(),
        actor: SYSTEM_ACTOR.to_owned(),
        at_ms: now() * 1000,
        payload: d.event.to_json(),
    };
    match log
        .append(new, ExpectedVersion::Exact(d.expected_version))
        .await
    {
        // Another node bootstrapped the same object first: take its version.
        Ok(_) | Err(EventLogError::Conflict { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    catch_up(log, p).await?;
    Ok(())
}

/// Writes what must exist from the start. Objects that ever existed are left alone (an
/// admin may have deleted a standard identity resource on purpose). Returns the admin
/// secret when one was generated.
async fn bootstrap_config(
    log: &dyn EventLog,
    p: &mut Projection,
    admin_secret: Option<&str>,
) -> Result<Option<String>, NodeError> {
    let fresh = |p: &Projection, agg, id: &str| p.version(agg, id) == 0;
    for s in bootstrap::standard_identity_resources() {
        if fresh(p, Aggregate::Scope, &s.name) {
            run_command(log, p, Command::CreateScope(ScopeKind::Identity, s)).await?;
        }
    }
    let scope = bootstrap::admin_scope();
    if fresh(p, Aggregate::Scope, &scope.name) {
        run_command(log, p, Command::CreateScope(ScopeKind::Api, scope)).await?;
    }
    let resource = bootstrap::admin_resource();
    if fresh(p, Aggregate::ApiResource, &resource.name) {
        run_command(log, p, Command::CreateApiResource(Box::new(resource))).await?;
    }
    match p.client(ADMIN_CLIENT_ID) {
        None => {
            let (secret, generated) = match admin_secret {
                Some(s) => (s.to_owned(), None),
                None => {
                    let s = random_secret()?;
                    (s.clone(), Some(s))
                }
            };
            run_command(
                log,
                p,
                Command::CreateClient(Box::new(bootstrap::admin_client(secret))),
            )
            .await?;
            tracing::info!(
                client_id = ADMIN_CLIENT_ID,
                "created the bootstrap admin client"
            );
            Ok(generated)
        }
        Some(existing) => {
            // SIGNET_ADMIN_CLIENT_SECRET changed: it becomes the admin client's one secret.
            if let Some(s) = admin_secret {
                if !existing.secrets.matches(&SecretDigest::of(s), now()) {
                    let mut client = existing
                        .client
                        .clone()
                        .map_secrets(|_| unreachable_secret());
                    client.client_secrets = bootstrap::admin_client(s.to_owned()).client_secrets;
                    run_command(
                        log,
                        p,
                        Command::ReplaceClient {
                            client: Box::new(client),
                            keep_secrets: false,
                        },
                    )
                    .await?;
                    tracing::warn!(
                        client_id = ADMIN_CLIENT_ID,
                        "admin client secret replaced from SIGNET_ADMIN_CLIENT_SECRET"
                    );
                }
            }
            Ok(None)
        }
    }
}

// `map_secrets` above is called and its result's secrets replaced at once; the closure
// must still produce a value of the input type.
fn unreachable_secret() -> signet_core::secret::SecretInput {
    signet_core::secret::SecretInput {
        description: None,
        value: None,
        expiration: None,
        kind: "SharedSecret".to_owned(),
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `serve`'s key rotation: the in-process key manager's schedule, every
/// [`ROTATION_INTERVAL`] (the first tick at once). New keys reach the signers through
/// [`KeyManager::on_keys_changed`].
fn spawn_rotation(keys: Arc<KeyManager>) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut interval = tokio::time::interval(ROTATION_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            match keys.tick(keys.now()).await {
                Ok(true) => tracing::info!("key rotation changed the signing keys"),
                Ok(false) => {}
                Err(error) => {
                    tracing::error!(%error, "key rotation failed; retrying at the next tick")
                }
            }
        }
    }))
}

/// What a running node holds on to besides its state.
enum Resources {
    /// One process per data directory, the key rotation task and the revocation maintenance
    /// task (both stop when dropped).
    Embedded {
        _lock: File,
        _rotation: AbortOnDrop,
        _revocations: Option<AbortOnDrop>,
        _backchannel: Option<AbortOnDrop>,
    },
    /// The key-lease renewal task (stops when dropped).
    Cluster {
        _renewal: signet_keymanager::RenewalHandle,
        /// Follows the revocation stream into the node's set.
        _revocations: Option<AbortOnDrop>,
        /// Drains the back-channel logout queue.
        _backchannel: Option<AbortOnDrop>,
    },
}

/// A back-channel delivery taken by a node that dies is handed out again after this long
/// (more than an attempt's outbound timeout).
const LOGOUT_QUEUE_LEASE: Duration = Duration::from_secs(30);

/// Loads the latest snapshot and replays the log after it.
async fn load_projection(log: &dyn EventLog) -> Result<Projection, NodeError> {
    let mut projection = match log.load_snapshot().await? {
        Some(s) => Projection::from_snapshot(&s.data).map_err(NodeError::Snapshot)?,
        None => Projection::new(),
    };
    let from_snapshot = projection.seq();
    catch_up(log, &mut projection).await?;
    tracing::info!(
        snapshot = from_snapshot,
        replayed = projection.seq() - from_snapshot,
        "configuration loaded"
    );
    Ok(projection)
}

async fn bind(addr: SocketAddr, flag: &'static str) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind { addr, flag, source })
}

/// Binds both listeners: the first thing a node does, so a taken port fails the start
/// before anything is written (no data directory, KEK or keys left behind).
async fn bind_both(config: &NodeConfig) -> Result<(TcpListener, TcpListener), NodeError> {
    let public = bind(config.listen, "--listen").await?;
    let admin = bind(config.admin_listen, "--admin-listen").await?;
    Ok((public, admin))
}

/// Settles the issuer URL once the public listener is bound: derived from its address when
/// none was configured; otherwise, for `serve`, a warning when a loopback issuer names
/// another port than the one this node listens on (discovery and every token would point
/// nowhere). Cluster issuers behind a load balancer on loopback legitimately differ.
fn settle_issuer(config: &mut NodeConfig, public: &TcpListener) {
    let Ok(bound) = public.local_addr() else {
        return;
    };
    if config.issuer_from_listen {
        config.issuer = crate::config::IssuerUrl::from_listen(bound);
        return;
    }
    if !matches!(config.backend, Backend::Embedded { .. }) {
        return;
    }
    let issuer = &config.issuer;
    let listen_reaches_loopback = bound.ip().is_loopback() || bound.ip().is_unspecified();
    if issuer.is_loopback() && (issuer.port() != Some(bound.port()) || !listen_reaches_loopback) {
        tracing::warn!(
            issuer = issuer.as_str(),
            listen = %bound,
            "the issuer URL names a loopback address this node does not listen on; discovery and tokens will point elsewhere (leave --issuer out to derive it from --listen)"
        );
    }
}

/// Start-up warnings about settings meant for development only.
fn warn_insecure(config: &NodeConfig) {
    if config.client_policy.redirect_uris == signet_core::redirect_uri::RedirectUriPolicy::AllowAny
    {
        tracing::warn!("--insecure-allow-any-redirect-uri is on: clients may register plain-http and arbitrary-scheme redirect URIs; never use this in production");
    }
}

impl Node {
    /// Binds both listeners first (a taken port fails the start before anything is
    /// written), settles the issuer URL, then builds the node for its backend (rebuilds the
    /// projection, bootstraps, gets keys).
    pub async fn start(mut config: NodeConfig) -> Result<Node, NodeError> {
        // Install the metrics recorder before anything counts.
        crate::telemetry::metrics();
        let (public, admin) = bind_both(&config).await?;
        settle_issuer(&mut config, &public);
        warn_insecure(&config);
        let listeners = Listeners { public, admin };
        match config.backend.clone() {
            Backend::Embedded { data_dir, kek_file } => {
                Self::start_embedded(config, listeners, data_dir, kek_file).await
            }
            Backend::Cluster(cluster) => Self::start_cluster(config, listeners, cluster).await,
        }
    }

    async fn start_embedded(
        config: NodeConfig,
        Listeners { public, admin }: Listeners,
        data_dir: PathBuf,
        kek_file: Option<PathBuf>,
    ) -> Result<Node, NodeError> {
        let lock = lock_data_dir(&data_dir)?;
        let events_dir = data_dir.join("events");
        let log: Arc<dyn EventLog> =
            tokio::task::spawn_blocking(move || FileLog::open(&events_dir))
                .await
                .map_err(|e| NodeError::DataDir {
                    path: data_dir.display().to_string(),
                    reason: e.to_string(),
                })??;
        let mut projection = load_projection(log.as_ref()).await?;
        let generated_admin_secret = bootstrap_config(
            log.as_ref(),
            &mut projection,
            config.admin_client_secret.as_deref(),
        )
        .await?;

        let kek_path = kek_file.unwrap_or_else(|| data_dir.join("kek"));
        let kek = Kek::load_or_create(&kek_path)?;
        let sealing_key = kek.derive_key(http::federation::SEAL_LABEL);
        let keys = Arc::new(KeyManager::new(
            kek,
            Arc::new(FileVault::open(&data_dir.join("keys"))?),
            log.clone(),
            config.key_policy.clone(),
        ));
        keys.seed(&projection).await;
        keys.ensure_active(&projection, now()).await?;
        catch_up(log.as_ref(), &mut projection).await?;
        // Published keys too: the node holds the next key before it activates.
        let held = keys.leasable_keys(&projection).await?;

        let store = EmbeddedStore::open(&data_dir.join("store")).await?;
        let users = crate::users::Users::open_embedded(&data_dir, log.clone()).await?;
        let revocations = crate::revocations::Revocations::open_embedded(&data_dir).await?;
        let revocation_maintenance = revocations.spawn_maintenance().map(AbortOnDrop);
        let state = AppState::new(
            config,
            log,
            Arc::new(store),
            users,
            revocations,
            projection,
            held,
        );
        {
            // Weak: the key manager lives in the state (as its key administration).
            let state = Arc::downgrade(&state.0);
            keys.on_keys_changed(move |held| {
                if let Some(inner) = state.upgrade() {
                    AppState(inner).set_held_keys(held);
                }
            });
        }
        state.set_key_admin(keys.clone());
        if let Some(sealer) = http::federation::Sealer::new(sealing_key) {
            state.federation.set_sealer(sealer);
        }
        let queue = signet_eventlog::queue::embedded::RedbQueue::open(
            &data_dir.join("queues").join("backchannel.redb"),
            LOGOUT_QUEUE_LEASE,
        )
        .await?;
        state.set_logout_queue(Arc::new(queue));
        state.set_outbound(signet_outbound::Outbound::new(
            state.config.outbound.clone(),
        )?);
        let backchannel = http::backchannel::spawn_worker(state.clone()).map(AbortOnDrop);
        let rotation = spawn_rotation(keys);
        Ok(Node {
            state,
            public,
            admin,
            generated_admin_secret,
            _resources: Resources::Embedded {
                _lock: lock,
                _rotation: rotation,
                _revocations: revocation_maintenance,
                _backchannel: backchannel,
            },
        })
    }

    async fn start_cluster(
        config: NodeConfig,
        Listeners { public, admin }: Listeners,
        cluster: ClusterSettings,
    ) -> Result<Node, NodeError> {
        let secret = ClusterSecret::load(&cluster.cluster_secret_file)?;
        let log = JetStreamLog::connect(JetStreamConfig {
            stream: cluster.stream.clone(),
            replicas: cluster.replicas,
            ..JetStreamConfig::new(cluster.nats_url.clone())
        })
        .await?;
        let nats = log.client().clone();
        let log: Arc<dyn EventLog> = log;
        // An unreachable Redis fails the start (as an unreachable NATS does).
        let store: Arc<dyn Store> =
            Arc::new(RedisStore::connect(RedisConfig::new(cluster.redis_url.clone())).await?);
        // Issuers starting together race on the bootstrap writes, and a fresh clustered
        // stream may briefly answer reads with "no responders": retry the start-up reads and
        // writes a few times before giving up (each attempt starts from a fresh read).
        let mut attempt = 0;
        let (projection, generated_admin_secret) = loop {
            attempt += 1;
            let result = async {
                let mut projection = load_projection(log.as_ref()).await?;
                let generated = bootstrap_config(
                    log.as_ref(),
                    &mut projection,
                    config.admin_client_secret.as_deref(),
                )
                .await?;
                Ok::<_, NodeError>((projection, generated))
            }
            .await;
            match result {
                Ok(r) => break r,
                Err(e) if attempt < STARTUP_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "start-up read or bootstrap failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250 * attempt as u64)).await;
                }
                Err(e) => return Err(e),
            }
        };

        // A new KV bucket on a clustered JetStream may briefly answer "no responders".
        let mut attempt = 0;
        let users = loop {
            attempt += 1;
            match crate::users::Users::open_jetstream(nats.clone(), cluster.replicas, log.clone())
                .await
            {
                Ok(u) => break u,
                Err(e) if attempt < STARTUP_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "users projection not reachable yet; retrying");
                    tokio::time::sleep(Duration::from_millis(250 * attempt as u64)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        // No key yet: the node is not ready until its first lease arrives.
        let revocations =
            crate::revocations::Revocations::open_jetstream(nats.clone(), cluster.replicas).await?;
        let revocation_follower = revocations.spawn_follower().map(AbortOnDrop);
        let state = AppState::new(
            config,
            log,
            store,
            users,
            revocations,
            projection,
            Vec::new(),
        );
        if let Some(sealer) =
            http::federation::Sealer::new(secret.derive_key(http::federation::SEAL_LABEL))
        {
            state.federation.set_sealer(sealer);
        }
        let leased = LeasedKeys::new(system_clock());
        let client = LeaseClient::new(nats.clone(), cluster.issuer_id.clone(), secret.clone());
        let renewal = {
            let state = state.clone();
            leased.spawn_renewal(client, move |keys| state.set_held_keys(keys))
        };
        {
            let leased = leased.clone();
            state.on_missing_key(move || leased.renew_now());
        }
        {
            // Key administration goes to the leading key manager; after a change the lease
            // is renewed at once, so this node holds the new key.
            let leased = leased.clone();
            let remote = RemoteKeyAdmin::new(nats.clone(), secret, cluster.issuer_id.clone())
                .on_change(move || leased.renew_now());
            state.set_key_admin(Arc::new(remote));
        }
        let queue = signet_eventlog::queue::jetstream::JetStreamQueue::open(
            nats.clone(),
            signet_eventlog::queue::jetstream::JetStreamQueueConfig {
                stream: "SIGNET_BACKCHANNEL".to_owned(),
                subject: "signet.backchannel.logout".to_owned(),
                consumer: "signet-issuers".to_owned(),
                replicas: cluster.replicas,
                lease: LOGOUT_QUEUE_LEASE,
                // A logout older than a day tells a client nothing its session has not.
                max_age: Duration::from_secs(24 * 3600),
                max_deliver: 100,
            },
        )
        .await?;
        state.set_logout_queue(Arc::new(queue));
        state.set_outbound(signet_outbound::Outbound::new(
            state.config.outbound.clone(),
        )?);
        let backchannel = http::backchannel::spawn_worker(state.clone()).map(AbortOnDrop);
        state.set_cluster(nats, leased);
        Ok(Node {
            state,
            public,
            admin,
            generated_admin_secret,
            _resources: Resources::Cluster {
                _renewal: renewal,
                _revocations: revocation_follower,
                _backchannel: backchannel,
            },
        })
    }

    pub fn public_addr(&self) -> Option<SocketAddr> {
        self.public.local_addr().ok()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.local_addr().ok()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The admin secret generated on first start (print it once; it is stored only as a
    /// hash).
    pub fn generated_admin_secret(&self) -> Option<&str> {
        self.generated_admin_secret.as_deref()
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests (bounded by the
    /// configured grace period) and writes a snapshot so the next start replays less.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), NodeError> {
        let Node {
            state,
            public,
            admin,
            _resources,
            ..
        } = self;
        let follower = state.spawn_follower();
        let upkeep = crate::telemetry::spawn_upkeep();
        let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
        let signal = |tx: &tokio::sync::broadcast::Sender<()>| {
            let mut rx = tx.subscribe();
            async move {
                let _ = rx.recv().await;
            }
        };
        // The client address reaches handlers (login throttling per address) and logs.
        let trusted = std::sync::Arc::new(state.config.trusted_proxies.clone());
        let public_server = http::server::serve(
            public,
            http::public_router(state.clone()),
            trusted.clone(),
            signal(&tx),
        );
        let admin_server = http::server::serve(
            admin,
            http::admin_router(state.clone()),
            trusted,
            signal(&tx),
        );
        let mut servers = tokio::spawn(async move {
            let (a, b) = tokio::join!(public_server, admin_server);
            a.and(b)
        });
        let result = tokio::select! {
            r = &mut servers => r,
            () = shutdown => {
                tracing::info!("shutting down: draining in-flight requests");
                let _ = tx.send(());
                match tokio::time::timeout(state.config.shutdown_grace, &mut servers).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!("grace period over; closing remaining connections");
                        servers.abort();
                        Ok(Ok(()))
                    }
                }
            }
        };
        follower.abort();
        upkeep.abort();
        let p = state.projection.load();
        if let Err(e) = state
            .log
            .save_snapshot(Snapshot {
                seq: p.seq(),
                data: p.to_snapshot(),
            })
            .await
        {
            tracing::warn!(error = %e, "could not write a snapshot");
        }
        match result {
            Ok(r) => r.map_err(NodeError::Serve),
            Err(e) => Err(NodeError::Serve(std::io::Error::other(e))),
        }
    }
}

/// Starts a node and serves until `shutdown` resolves.
pub async fn serve(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    Node::start(config).await?.run(shutdown).await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use signet_core::Algorithm;

    use super::*;

    async fn settle(state: &AppState) {
        let head = state.log.last_seq().await.unwrap();
        state
            .wait_applied(head, Duration::from_secs(10))
            .await
            .unwrap();
    }

    fn signer_kid(state: &AppState, alg: Algorithm) -> Option<String> {
        state
            .signers
            .load()
            .access_token(alg)
            .map(|s| s.key().kid().to_owned())
    }

    fn active_kid(state: &AppState, alg: Algorithm) -> String {
        state
            .projection
            .load()
            .active_key(alg)
            .map(|k| k.jwk.kid.clone())
            .unwrap_or_default()
    }

    /// `serve`'s key administration: the in-process key manager, whose new keys reach the
    /// signers before they activate, so signing never stops.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serve_rotates_revokes_and_imports_keys_without_a_signing_gap() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig::new(dir.path().to_path_buf());
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.admin_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let node = Node::start(config).await.unwrap();
        let state = node.state().clone();
        let follower = state.spawn_follower();
        let admin = state.key_admin().unwrap().clone();
        let alg = Algorithm::ES256;
        let old = active_kid(&state, alg);
        assert_eq!(signer_kid(&state, alg).as_deref(), Some(old.as_str()));

        // Watch the signer through every change.
        let stop = Arc::new(AtomicBool::new(false));
        let gaps = Arc::new(AtomicUsize::new(0));
        let watcher = {
            let (state, stop, gaps) = (state.clone(), stop.clone(), gaps.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if signer_kid(&state, alg).is_none() {
                        gaps.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::task::yield_now().await;
                }
            })
        };

        let new = admin.rotate(alg).await.unwrap();
        settle(&state).await;
        assert_eq!(active_kid(&state, alg), new.kid);
        assert_eq!(signer_kid(&state, alg), Some(new.kid.clone()));
        let p = state.projection.load();
        assert!(
            p.jwks_json().contains(&old),
            "the retired key stays in the JWKS"
        );

        admin.revoke(&new.kid).await.unwrap();
        settle(&state).await;
        let successor = active_kid(&state, alg);
        assert_ne!(successor, new.kid);
        assert!(!state.projection.load().jwks_json().contains(&new.kid));
        assert_eq!(signer_kid(&state, alg), Some(successor));

        let der = signet_jose::generate_pkcs8(alg).unwrap();
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
        let imported = admin.import_pem(alg, &pem).await.unwrap();
        settle(&state).await;
        assert_eq!(signer_kid(&state, alg), Some(imported.kid));

        stop.store(true, Ordering::Relaxed);
        watcher.await.unwrap();
        assert_eq!(
            gaps.load(Ordering::Relaxed),
            0,
            "no moment without a signer"
        );
        follower.abort();
    }
}
