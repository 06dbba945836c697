//! The issuer's side of key leases: [`LeaseClient`] asks the key managers for a lease over
//! NATS, and [`LeasedKeys`] holds the last good lease, renews it in the background at about
//! half its lifetime, and keeps serving it while the key managers are down, until it ends.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use signet_core::UnixTime;
use signet_jose::SigningKey;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{system_clock, Clock, ClusterSecret, Lease, LeaseError, PendingLease, LEASE_SUBJECT};

/// Asks the key managers for a lease on [`LEASE_SUBJECT`].
#[derive(Clone)]
pub struct LeaseClient {
    nats: async_nats::Client,
    issuer_id: String,
    secret: ClusterSecret,
    timeout: Duration,
    clock: Clock,
}

impl std::fmt::Debug for LeaseClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseClient")
            .field("issuer_id", &self.issuer_id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl LeaseClient {
    /// How long a lease request waits for an answer unless told otherwise.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    pub fn new(
        nats: async_nats::Client,
        issuer_id: impl Into<String>,
        secret: ClusterSecret,
    ) -> Self {
        LeaseClient {
            nats,
            issuer_id: issuer_id.into(),
            secret,
            timeout: Self::DEFAULT_TIMEOUT,
            clock: system_clock(),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The clock that stamps requests and judges the reply's expiry.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn issuer_id(&self) -> &str {
        &self.issuer_id
    }

    /// One lease: a fresh ephemeral key and nonce, one request, and the reply opened and
    /// checked (see [`PendingLease::open`]).
    pub async fn lease(&self) -> Result<Lease, LeaseError> {
        let pending = PendingLease::new(&self.secret, &self.issuer_id, (self.clock)())?;
        let request = async_nats::Request::new()
            .payload(pending.request_json().into())
            .timeout(Some(self.timeout));
        let reply = self
            .nats
            .send_request(LEASE_SUBJECT, request)
            .await
            .map_err(|e| LeaseError::Unavailable(e.to_string()))?;
        pending.open(&self.secret, &reply.payload, (self.clock)())
    }
}

struct Shared {
    lease: ArcSwapOption<Lease>,
    clock: Clock,
    renew: Notify,
}

/// The keys an issuer signs with: the last good lease, served while it lasts.
#[derive(Clone)]
pub struct LeasedKeys {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LeasedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedKeys")
            .field("expires_at", &self.expires_at())
            .finish_non_exhaustive()
    }
}

/// The background renewal task; stopped when this handle is dropped or [`stop`]ped.
///
/// [`stop`]: RenewalHandle::stop
#[derive(Debug)]
pub struct RenewalHandle {
    task: JoinHandle<()>,
}

impl RenewalHandle {
    pub fn stop(self) {}
}

impl Drop for RenewalHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The first retry after a failed renewal; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The shortest wait between two successful renewals.
const MIN_RENEWAL: Duration = Duration::from_millis(500);
/// The renewal task looks at the clock at least this often (clock adjustments).
const MAX_TICK: Duration = Duration::from_secs(5);

fn secs(n: i64) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

fn kids(keys: &[Arc<SigningKey>]) -> BTreeSet<String> {
    keys.iter().map(|k| k.kid().to_owned()).collect()
}

impl LeasedKeys {
    pub fn new(clock: Clock) -> Self {
        LeasedKeys {
            shared: Arc::new(Shared {
                lease: ArcSwapOption::empty(),
                clock,
                renew: Notify::new(),
            }),
        }
    }

    /// Keeps `lease` as the current lease.
    pub fn install(&self, lease: Lease) {
        self.shared.lease.store(Some(Arc::new(lease)));
    }

    fn now(&self) -> UnixTime {
        (self.shared.clock)()
    }

    /// The leased keys while the lease lasts (`now < expires_at`); empty without a lease
    /// or once it has ended.
    pub fn signer_keys(&self) -> Vec<Arc<SigningKey>> {
        match self.shared.lease.load_full() {
            Some(lease) if self.now() < lease.expires_at => lease.keys.clone(),
            _ => Vec::new(),
        }
    }

    /// One leased key by kid, while the lease lasts.
    pub fn key(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.signer_keys().into_iter().find(|k| k.kid() == kid)
    }

    /// When the last good lease ends (or ended), Unix seconds; `None` before the first.
    /// For the lease-expiry metric.
    pub fn expires_at(&self) -> Option<UnixTime> {
        self.shared.lease.load().as_ref().map(|l| l.expires_at)
    }

    /// Whether a lease is in force now.
    pub fn is_valid(&self) -> bool {
        self.expires_at().is_some_and(|e| self.now() < e)
    }

    /// Asks the renewal task to renew at once (e.g. the issuer saw a key activated that
    /// it does not hold).
    pub fn renew_now(&self) {
        self.shared.renew.notify_one();
    }

    /// Starts the background renewal: it leases at once, then renews at about half of each
    /// lease's lifetime; when the key managers do not answer it retries with backoff
    /// (200 ms doubling to 10 s) and keeps the current lease until it ends. `on_update`
    /// gets the new keys whenever the set of leased kids changes, and an empty list when
    /// the lease ends without a renewal. Needs a Tokio runtime.
    pub fn spawn_renewal(
        &self,
        client: LeaseClient,
        on_update: impl Fn(Vec<Arc<SigningKey>>) + Send + Sync + 'static,
    ) -> RenewalHandle {
        let this = self.clone();
        RenewalHandle {
            task: tokio::spawn(async move { this.renewal_loop(client, on_update).await }),
        }
    }

    async fn renewal_loop(
        self,
        client: LeaseClient,
        on_update: impl Fn(Vec<Arc<SigningKey>>) + Send + Sync + 'static,
    ) {
        let mut backoff = MIN_BACKOFF;
        // The kids last announced through `on_update` (empty: none, or the lease ended).
        let mut announced: BTreeSet<String> = BTreeSet::new();
        loop {
            let next_attempt = match client.lease().await {
                Ok(lease) => {
                    let now = self.now();
                    // Expiries are whole seconds, so a lease may have up to a second less
                    // than it says: renew at half of what surely remains.
                    let surely_left_ms = (lease.expires_at - now - 1).max(0).saturating_mul(1000);
                    let half =
                        Duration::from_millis(u64::try_from(surely_left_ms / 2).unwrap_or(0))
                            .max(MIN_RENEWAL);
                    let keys = lease.keys.clone();
                    tracing::info!(
                        keys = keys.len(),
                        expires_at = lease.expires_at,
                        "leased signing keys"
                    );
                    self.install(lease);
                    backoff = MIN_BACKOFF;
                    let kids = kids(&keys);
                    if kids != announced {
                        announced = kids;
                        on_update(keys);
                    }
                    half
                }
                Err(error) => {
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tracing::warn!(
                        %error,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        lease_expires_at = self.expires_at(),
                        "key lease failed; keeping the current lease until it ends"
                    );
                    wait
                }
            };
            let deadline = Instant::now() + next_attempt;
            loop {
                let now = self.now();
                let expires_at = self.expires_at();
                if !announced.is_empty() && expires_at.is_none_or(|e| now >= e) {
                    tracing::error!(
                        expires_at,
                        "the key lease ended without a renewal; no keys to sign with"
                    );
                    announced.clear();
                    on_update(Vec::new());
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let mut wait = left.min(MAX_TICK);
                if let Some(e) = expires_at.filter(|e| *e > now) {
                    wait = wait.min(secs(e - now));
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.shared.renew.notified() => {
                        // Something changed (a key was activated that this issuer does not
                        // hold): try now, and from the shortest backoff again, so failures
                        // while the key managers were starting do not delay the first lease.
                        backoff = MIN_BACKOFF;
                        break;
                    }
                }
            }
        }
    }
}
