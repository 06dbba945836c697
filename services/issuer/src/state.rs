//! Application state shared by every handler: the projection (read lock-free through
//! `ArcSwap`), the signers, the event log, and the node's readiness.
//!
//! The projection has one writer, the follower task, which folds events from the log into a
//! copy and swaps it in. Writers of the admin API append to the log and then wait until the
//! follower has applied their event, so a write is visible on this node when it answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use signet_core::projection::Projection;
use signet_core::Algorithm;
use signet_eventlog::{EventLog, EventLogError, RecordedEvent, Seq};
use signet_jose::{JwsSigner, SigningKey};
use signet_store::Store;
use tokio::sync::watch;

use crate::config::NodeConfig;

/// How long `/readyz` waits for the store to answer a ping.
pub const STORE_PING_PATIENCE: Duration = Duration::from_secs(1);

/// The signers of the active keys, one per algorithm.
#[derive(Debug, Default)]
pub struct Signers {
    access_tokens: [Option<JwsSigner>; 4],
    id_tokens: [Option<JwsSigner>; 4],
    logout_tokens: [Option<JwsSigner>; 4],
}

fn slot(alg: Algorithm) -> usize {
    match alg {
        Algorithm::RS256 => 0,
        Algorithm::PS256 => 1,
        Algorithm::ES256 => 2,
        Algorithm::EdDSA => 3,
    }
}

impl Signers {
    /// Signers for the keys the projection says are active, among `held` (the keys this
    /// node holds: unsealed from the vault, or leased). Returns the active kids it lacks.
    ///
    /// Until it holds a newly activated key (a lease renewal away, after an immediate
    /// rotation), the node keeps signing with the held key of that algorithm the JWKS
    /// still has (the one just retired), so tokens stay verifiable and requests do not
    /// fail meanwhile. The keys of `previous` (the signers this replaces) stand in too:
    /// the held set may run ahead of the projection (the key manager hands out a new key
    /// as soon as its events are written, before this node's follower has applied them),
    /// and the key it just dropped is still the one the projection knows. A revoked key
    /// is no longer in the projection and never signs.
    pub fn new(
        held: &[Arc<SigningKey>],
        p: &Projection,
        previous: &Signers,
    ) -> (Self, Vec<String>) {
        let mut s = Signers::default();
        let mut missing = Vec::new();
        for alg in Algorithm::ALL {
            let Some(active) = p.active_key(alg) else {
                continue;
            };
            let key = match held.iter().find(|k| k.kid() == active.jwk.kid) {
                Some(k) => Some(k),
                None => {
                    missing.push(active.jwk.kid.clone());
                    let previous = previous.access_token(alg).map(|s| s.key());
                    stand_in(held.iter().chain(previous), p, alg)
                }
            };
            if let Some(k) = key {
                s.access_tokens[slot(alg)] = Some(JwsSigner::new(k.clone(), "at+jwt"));
                s.id_tokens[slot(alg)] = Some(JwsSigner::new(k.clone(), "JWT"));
                s.logout_tokens[slot(alg)] = Some(JwsSigner::new(k.clone(), "logout+jwt"));
            }
        }
        (s, missing)
    }

    /// The access-token signer (`typ: at+jwt`, RFC 9068) for `alg`.
    pub fn access_token(&self, alg: Algorithm) -> Option<&JwsSigner> {
        self.access_tokens[slot(alg)].as_ref()
    }

    /// The ID-token signer (`typ: JWT`) for `alg`.
    pub fn id_token(&self, alg: Algorithm) -> Option<&JwsSigner> {
        self.id_tokens[slot(alg)].as_ref()
    }

    /// The back-channel logout-token signer (`typ: logout+jwt`, OIDC Back-Channel Logout
    /// section 2.4) for `alg`: the ID-token key, under its own type.
    pub fn logout_token(&self, alg: Algorithm) -> Option<&JwsSigner> {
        self.logout_tokens[slot(alg)].as_ref()
    }

    pub fn is_empty(&self) -> bool {
        self.access_tokens.iter().all(Option::is_none)
    }
}

/// The held key of `alg` that best stands in for an active key this node lacks: one the
/// JWKS still has, active before retired before published, the most recent first.
fn stand_in<'k>(
    held: impl Iterator<Item = &'k Arc<SigningKey>>,
    p: &Projection,
    alg: Algorithm,
) -> Option<&'k Arc<SigningKey>> {
    use signet_core::keys::KeyState;
    let rank = |state: KeyState| match state {
        KeyState::Active => 2,
        KeyState::Retired => 1,
        KeyState::Published => 0,
    };
    held.filter(|k| k.alg() == alg)
        .filter_map(|k| p.key(k.kid()).map(|r| (k, r)))
        .max_by_key(|(_, r)| (rank(r.state), r.activated_at, r.published_at))
        .map(|(k, _)| k)
}

#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error(transparent)]
    Projection(#[from] signet_core::projection::ProjectionError),
    #[error(transparent)]
    Log(#[from] EventLogError),
}

/// Folds one recorded event into a projection.
pub fn fold(p: &mut Projection, e: &RecordedEvent) -> Result<(), FoldError> {
    Ok(p.apply_json(e.seq, &e.subject, &e.payload)?)
}

/// Reads every event after the projection's sequence from `log` and folds it.
pub async fn catch_up(log: &dyn EventLog, p: &mut Projection) -> Result<(), FoldError> {
    loop {
        let batch = log.read_from(p.seq() + 1, 1024).await?;
        if batch.is_empty() {
            return Ok(());
        }
        for e in &batch {
            fold(p, e)?;
        }
    }
}

pub struct Inner {
    pub config: NodeConfig,
    pub projection: ArcSwap<Projection>,
    pub signers: ArcSwap<Signers>,
    pub log: Arc<dyn EventLog>,
    /// Short-lived shared state: codes, sessions, refresh-token families (embedded in
    /// `serve`, Redis in a cluster).
    pub store: Arc<dyn Store>,
    /// Users, projected outside memory (embedded redb in `serve`, JetStream KV in a cluster).
    pub users: crate::users::Users,
    /// Revocations in force (token, family, session, subject, client, key), and where new
    /// ones are published.
    pub revocations: Arc<crate::revocations::Revocations>,
    /// Private keys this node holds (unsealed from the vault, or leased).
    held_keys: ArcSwap<Vec<Arc<SigningKey>>>,
    /// Held while the signers are re-picked (see [`AppState::refresh_signers`]).
    signers_refresh: std::sync::Mutex<()>,
    /// Called when the projection activates a key this node does not hold (cluster: renew
    /// the lease now).
    on_missing_key: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    applied: watch::Sender<Seq>,
    follower_failed: AtomicBool,
    /// Cluster mode: the NATS connection and the key lease, for readiness and metrics.
    cluster: std::sync::OnceLock<ClusterStatus>,
    /// Seals the configuration secrets that must be read back (`client_secret_jwt`).
    config_sealer: std::sync::OnceLock<crate::sealer::ConfigSealer>,
    /// Key administration (rotate, revoke, import) for the admin API, when available.
    key_admin: std::sync::OnceLock<Arc<dyn signet_keymanager::KeyAdmin>>,
    /// The server's own outbound HTTP (back-channel logout), behind the address guard.
    outbound: std::sync::OnceLock<signet_outbound::Outbound>,
    /// Clients' key sets fetched from their `jwksUri`.
    pub client_jwks: crate::http::client_jwks::JwksCache,
    /// Upstream identity providers' discovery documents and keys, and the secrets' sealer.
    pub federation: crate::http::federation::Federation,
    /// The durable queue of back-channel logout deliveries, once the node has opened it.
    logout_queue: std::sync::OnceLock<Arc<dyn signet_eventlog::queue::WorkQueue>>,
    /// The cluster-shared DPoP nonce key, as this node last read it.
    pub dpop_nonces: crate::http::dpop::NonceKeys,
}

pub struct ClusterStatus {
    pub nats: async_nats::Client,
    pub leased: signet_keymanager::LeasedKeys,
}

/// Cheap to clone; one per node.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("the projection did not reach event {0} in time")]
    Timeout(Seq),
    #[error("the projection stopped (see the log)")]
    Stopped,
}

impl AppState {
    pub fn new(
        config: NodeConfig,
        log: Arc<dyn EventLog>,
        store: Arc<dyn Store>,
        users: crate::users::Users,
        revocations: Arc<crate::revocations::Revocations>,
        projection: Projection,
        held_keys: Vec<Arc<SigningKey>>,
    ) -> Self {
        let (applied, _) = watch::channel(projection.seq());
        let state = AppState(Arc::new(Inner {
            config,
            projection: ArcSwap::from_pointee(projection),
            signers: ArcSwap::from_pointee(Signers::default()),
            log,
            store,
            users,
            revocations,
            held_keys: ArcSwap::from_pointee(held_keys),
            signers_refresh: std::sync::Mutex::new(()),
            on_missing_key: std::sync::OnceLock::new(),
            applied,
            follower_failed: AtomicBool::new(false),
            cluster: std::sync::OnceLock::new(),
            config_sealer: std::sync::OnceLock::new(),
            key_admin: std::sync::OnceLock::new(),
            outbound: std::sync::OnceLock::new(),
            client_jwks: Default::default(),
            federation: Default::default(),
            logout_queue: std::sync::OnceLock::new(),
            dpop_nonces: Default::default(),
        }));
        state.refresh_signers();
        state
    }

    /// Replaces the keys this node holds (a new lease) and re-picks the signers.
    pub fn set_held_keys(&self, keys: Vec<Arc<SigningKey>>) {
        self.held_keys.store(Arc::new(keys));
        self.refresh_signers();
    }

    /// Registers what to do when an active key is not held (once).
    pub fn on_missing_key(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.0.on_missing_key.set(Box::new(f));
    }

    /// Signs with the keys the projection says are active, among those held.
    ///
    /// The follower (a new projection) and the key lease (new held keys) both call it; one
    /// at a time, so that the last to run, which sees both newest values, is also the last
    /// to store.
    fn refresh_signers(&self) {
        let _one_at_a_time = self
            .signers_refresh
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (signers, missing) = Signers::new(
            &self.held_keys.load(),
            &self.projection.load(),
            &self.signers.load(),
        );
        self.signers.store(Arc::new(signers));
        if !missing.is_empty() {
            tracing::warn!(kids = ?missing, "active signing keys not held by this node");
            if let Some(f) = self.0.on_missing_key.get() {
                f();
            }
        }
    }

    /// Cluster mode: what readiness and metrics also look at.
    pub fn set_cluster(&self, nats: async_nats::Client, leased: signet_keymanager::LeasedKeys) {
        let _ = self.0.cluster.set(ClusterStatus { nats, leased });
    }

    pub fn cluster(&self) -> Option<&ClusterStatus> {
        self.0.cluster.get()
    }

    /// Registers the key administration the admin API's `/Key` routes use (once).
    pub fn set_key_admin(&self, admin: Arc<dyn signet_keymanager::KeyAdmin>) {
        let _ = self.0.key_admin.set(admin);
    }

    /// Registers the outbound HTTP client (once).
    pub fn set_outbound(&self, outbound: signet_outbound::Outbound) {
        let _ = self.0.outbound.set(outbound);
    }

    /// The outbound HTTP client, once the node has built it.
    pub fn outbound(&self) -> Option<&signet_outbound::Outbound> {
        self.0.outbound.get()
    }

    /// Registers the back-channel logout queue (once).
    pub fn set_logout_queue(&self, queue: Arc<dyn signet_eventlog::queue::WorkQueue>) {
        let _ = self.0.logout_queue.set(queue);
    }

    /// The back-channel logout queue, when this node has one.
    pub fn logout_queue(&self) -> Option<&Arc<dyn signet_eventlog::queue::WorkQueue>> {
        self.0.logout_queue.get()
    }

    /// Registers the node's sealer of configuration secrets (once).
    pub fn set_config_sealer(&self, sealer: crate::sealer::ConfigSealer) {
        let _ = self.0.config_sealer.set(sealer);
    }

    /// The sealer of configuration secrets, once the node has one.
    pub fn config_sealer(&self) -> Option<&crate::sealer::ConfigSealer> {
        self.0.config_sealer.get()
    }

    /// The key administration, when this node has one.
    pub fn key_admin(&self) -> Option<&Arc<dyn signet_keymanager::KeyAdmin>> {
        self.0.key_admin.get()
    }

    /// Ready: the follower is alive and keys are loaded; in a cluster, NATS is connected
    /// and the key lease is valid.
    pub fn is_ready(&self) -> bool {
        let cluster_ok = self.cluster().is_none_or(|c| {
            c.nats.connection_state() == async_nats::connection::State::Connected
                && c.leased.is_valid()
        });
        cluster_ok
            && self.users.is_running()
            && self.revocations.is_caught_up()
            && !self.follower_failed.load(Ordering::Relaxed)
            && !self.signers.load().is_empty()
    }

    /// [`AppState::is_ready`], and the short-lived state store answers within
    /// [`STORE_PING_PATIENCE`].
    pub async fn is_ready_with_store(&self) -> bool {
        self.is_ready() && self.store_reachable().await
    }

    /// Whether the store answers a ping in time.
    pub async fn store_reachable(&self) -> bool {
        match tokio::time::timeout(STORE_PING_PATIENCE, self.store.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(%error, "short-lived state store unreachable");
                false
            }
            Err(_) => {
                tracing::warn!("short-lived state store did not answer in time");
                false
            }
        }
    }

    /// Waits until this node's projection has applied event `seq`.
    pub async fn wait_applied(&self, seq: Seq, patience: Duration) -> Result<(), WaitError> {
        let mut rx = self.applied.subscribe();
        let wait = async move { rx.wait_for(|applied| *applied >= seq).await.is_ok() };
        match tokio::time::timeout(patience, wait).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(WaitError::Stopped),
            Err(_) if self.follower_failed.load(Ordering::Relaxed) => Err(WaitError::Stopped),
            Err(_) => Err(WaitError::Timeout(seq)),
        }
    }

    /// Follows the log's live tail and folds it into the projection, batching events that
    /// arrive together into one swap. Stops loudly on an event it cannot apply: the node
    /// keeps serving the last good projection and reports not ready.
    pub fn spawn_follower(&self) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            if let Err(e) = state.follow().await {
                state.follower_failed.store(true, Ordering::Relaxed);
                metrics::counter!(crate::telemetry::EVENTLOG_ERRORS, "op" => "follow").increment(1);
                tracing::error!(error = %e, "configuration follower stopped; this node is not ready");
            }
        })
    }

    async fn follow(&self) -> Result<(), FoldError> {
        let from = self.projection.load().seq() + 1;
        let mut stream = self.log.follow(from).await?.ready_chunks(512);
        while let Some(batch) = stream.next().await {
            let mut next = Projection::clone(&self.projection.load());
            for e in batch {
                let e = e?;
                fold(&mut next, &e)?;
            }
            let seq = next.seq();
            self.projection.store(Arc::new(next));
            self.refresh_signers();
            self.applied.send_replace(seq);
        }
        Err(EventLogError::Closed.into())
    }
}

#[cfg(test)]
mod tests {
    use signet_core::events::Event;
    use signet_jose::generate_pkcs8;

    use super::*;

    fn key(kid: &str) -> Arc<SigningKey> {
        let der = generate_pkcs8(Algorithm::ES256).unwrap();
        Arc::new(SigningKey::from_pkcs8(kid, Algorithm::ES256, &der).unwrap())
    }

    fn apply(p: &mut Projection, event: Event) {
        let subject = event.subject();
        p.apply(p.seq() + 1, &subject, event).unwrap();
    }

    #[test]
    fn until_it_holds_a_new_active_key_a_node_signs_with_the_retired_one_never_a_revoked_one() {
        let (old, new) = (key("old"), key("new"));
        let mut p = Projection::new();
        for k in [&old, &new] {
            let jwk = k.public_jwk().clone();
            apply(&mut p, Event::SigningKeyPublished { jwk, at: 1 });
        }
        apply(
            &mut p,
            Event::SigningKeyActivated {
                kid: "old".into(),
                at: 2,
            },
        );
        let held = vec![old.clone()];
        let (s, missing) = Signers::new(&held, &p, &Signers::default());
        assert!(missing.is_empty());
        assert_eq!(s.access_token(Algorithm::ES256).unwrap().key().kid(), "old");

        // Rotated now; the node does not hold the new key yet: the retired key stands in.
        apply(
            &mut p,
            Event::SigningKeyActivated {
                kid: "new".into(),
                at: 3,
            },
        );
        apply(
            &mut p,
            Event::SigningKeyRetired {
                kid: "old".into(),
                at: 3,
            },
        );
        let (s, missing) = Signers::new(&held, &p, &Signers::default());
        assert_eq!(missing, vec!["new".to_owned()]);
        assert_eq!(s.access_token(Algorithm::ES256).unwrap().key().kid(), "old");
        let (s, missing) = Signers::new(&[old.clone(), new.clone()], &p, &Signers::default());
        assert!(missing.is_empty());
        assert_eq!(s.access_token(Algorithm::ES256).unwrap().key().kid(), "new");

        // Revoked: it is no longer in the projection and never signs again.
        apply(
            &mut p,
            Event::SigningKeyRemoved {
                kid: "old".into(),
                at: 4,
                revoked: true,
            },
        );
        let (s, missing) = Signers::new(&held, &p, &Signers::default());
        assert_eq!(missing, vec!["new".to_owned()]);
        assert!(s.access_token(Algorithm::ES256).is_none());
    }

    #[test]
    fn when_the_held_keys_run_ahead_of_the_projection_the_previous_signer_stands_in() {
        let (old, new) = (key("old"), key("new"));
        let mut p = Projection::new();
        let jwk = old.public_jwk().clone();
        apply(&mut p, Event::SigningKeyPublished { jwk, at: 1 });
        apply(
            &mut p,
            Event::SigningKeyActivated {
                kid: "old".into(),
                at: 2,
            },
        );
        let (before, _) = Signers::new(std::slice::from_ref(&old), &p, &Signers::default());

        // The key manager rotated and handed out only the new key; this node's projection
        // has not seen the new key's events yet.
        let (s, missing) = Signers::new(std::slice::from_ref(&new), &p, &before);
        assert_eq!(missing, vec!["old".to_owned()]);
        assert_eq!(s.access_token(Algorithm::ES256).unwrap().key().kid(), "old");
        assert_eq!(s.id_token(Algorithm::ES256).unwrap().key().kid(), "old");

        // Without the previous signer there is nothing to sign with: the gap this closes.
        let (s, _) = Signers::new(std::slice::from_ref(&new), &p, &Signers::default());
        assert!(s.access_token(Algorithm::ES256).is_none());

        // Once the projection catches up the new key signs; a revoked previous key never
        // stands in.
        let jwk = new.public_jwk().clone();
        apply(&mut p, Event::SigningKeyPublished { jwk, at: 3 });
        apply(
            &mut p,
            Event::SigningKeyActivated {
                kid: "new".into(),
                at: 3,
            },
        );
        apply(
            &mut p,
            Event::SigningKeyRemoved {
                kid: "old".into(),
                at: 3,
                revoked: true,
            },
        );
        let (s, missing) = Signers::new(std::slice::from_ref(&new), &p, &before);
        assert!(missing.is_empty());
        assert_eq!(s.access_token(Algorithm::ES256).unwrap().key().kid(), "new");
        let (s, _) = Signers::new(&[], &p, &before);
        assert!(s.access_token(Algorithm::ES256).is_none());
    }
}
