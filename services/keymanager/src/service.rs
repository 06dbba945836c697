//! The key manager's lease service: answers [`LEASE_SUBJECT`] requests in the queue group
//! [`LEASE_QUEUE_GROUP`] (so with several key managers each request gets one answer, from
//! any of them), with the published and active keys of the current projection sealed to
//! the requesting issuer. Refused requests get `{"error":"unauthorized"}` and a warning in
//! the log that names the reason, never a secret.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use signet_core::projection::Projection;
use tokio::sync::Semaphore;

use crate::lease::{
    error_reply, system_clock, Clock, ClusterSecret, LeaseAuthority, LEASE_QUEUE_GROUP,
    LEASE_SUBJECT, UNAUTHORIZED, UNAVAILABLE,
};
use crate::{KeyError, KeyManager};

/// Lease requests handled at once by one key manager.
const CONCURRENCY: usize = 32;

type ProjectionSource = Arc<dyn Fn() -> Arc<Projection> + Send + Sync>;

/// Answers lease requests for one key manager.
pub struct KeyManagerService {
    manager: Arc<KeyManager>,
    projection: ProjectionSource,
    authority: LeaseAuthority,
    lease_ttl: i64,
    clock: Clock,
    granted: AtomicU64,
    refused: AtomicU64,
}

impl std::fmt::Debug for KeyManagerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyManagerService")
            .field("lease_ttl", &self.lease_ttl)
            .field("granted", &self.granted())
            .field("refused", &self.refused())
            .finish_non_exhaustive()
    }
}

impl KeyManagerService {
    /// `projection` returns the current projection (e.g. `ArcSwap::load_full`); leases
    /// last `lease_ttl` (whole seconds, at least one).
    pub fn new(
        manager: Arc<KeyManager>,
        projection: impl Fn() -> Arc<Projection> + Send + Sync + 'static,
        secret: ClusterSecret,
        lease_ttl: Duration,
    ) -> Self {
        KeyManagerService {
            manager,
            projection: Arc::new(projection),
            authority: LeaseAuthority::new(secret),
            lease_ttl: i64::try_from(lease_ttl.as_secs())
                .unwrap_or(i64::MAX)
                .max(1),
            clock: system_clock(),
            granted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The clock that judges request timestamps and sets lease ends.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Leases granted so far.
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
    }

    /// Requests refused so far (unauthenticated, stale, replayed or unservable).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Opens every published or active key of the current projection with the KEK; an
    /// error (e.g. `the KEK does not open the stored key ...`) must stop the key manager.
    pub async fn check_vault(&self) -> Result<usize, KeyError> {
        let p = (self.projection)();
        self.manager.check_vault(&p).await
    }

    /// The reply to one request payload: a sealed lease, or an error without key material.
    pub async fn answer(&self, request: &[u8]) -> Vec<u8> {
        let now = (self.clock)();
        let verified = match self.authority.verify(request, now) {
            Ok(v) => v,
            Err(reason) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%reason, "refused a key lease request");
                return error_reply(UNAUTHORIZED);
            }
        };
        let p = (self.projection)();
        let keys = match self.manager.leasable_keys(&p).await {
            Ok(keys) => keys,
            Err(error) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, issuer = verified.issuer(), "cannot serve a key lease");
                return error_reply(UNAVAILABLE);
            }
        };
        let expires_at = now.saturating_add(self.lease_ttl);
        let reply = self
            .authority
            .seal(&verified, &keys, expires_at)
            .and_then(|r| serde_json::to_vec(&r).map_err(|_| KeyError::Crypto("encode")));
        match reply {
            Ok(body) => {
                self.granted.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    issuer = verified.issuer(),
                    keys = keys.len(),
                    expires_at,
                    "leased signing keys"
                );
                body
            }
            Err(error) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, issuer = verified.issuer(), "cannot seal a key lease");
                error_reply(UNAVAILABLE)
            }
        }
    }

    /// Subscribes to [`LEASE_SUBJECT`] in the queue group; once this returns, the server
    /// routes lease requests to this key manager.
    pub async fn listen(
        self: &Arc<Self>,
        nats: async_nats::Client,
    ) -> Result<LeaseListener, KeyError> {
        let nats_err = |e: &dyn std::fmt::Display| KeyError::Nats(e.to_string());
        let subscriber = nats
            .queue_subscribe(LEASE_SUBJECT, LEASE_QUEUE_GROUP.to_owned())
            .await
            .map_err(|e| nats_err(&e))?;
        nats.flush().await.map_err(|e| nats_err(&e))?;
        tracing::info!(
            subject = LEASE_SUBJECT,
            queue = LEASE_QUEUE_GROUP,
            "answering key leases"
        );
        Ok(LeaseListener {
            service: self.clone(),
            nats,
            subscriber,
        })
    }

    /// [`listen`](Self::listen), then answer until `shutdown` completes.
    pub async fn serve(
        self: Arc<Self>,
        nats: async_nats::Client,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), KeyError> {
        self.listen(nats).await?.run(shutdown).await
    }
}

/// A subscribed lease service; [`run`](Self::run) answers requests.
pub struct LeaseListener {
    service: Arc<KeyManagerService>,
    nats: async_nats::Client,
    subscriber: async_nats::Subscriber,
}

impl std::fmt::Debug for LeaseListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseListener").finish_non_exhaustive()
    }
}

impl LeaseListener {
    /// Answers requests until `shutdown` completes (or the connection closes), then
    /// unsubscribes and finishes the requests in flight.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) -> Result<(), KeyError> {
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        tokio::pin!(shutdown);
        loop {
            let message = tokio::select! {
                _ = &mut shutdown => break,
                m = self.subscriber.next() => m,
            };
            let Some(message) = message else {
                tracing::warn!("the lease subscription closed");
                break;
            };
            let Some(reply_to) = message.reply else {
                continue;
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let service = self.service.clone();
            let nats = self.nats.clone();
            tokio::spawn(async move {
                let body = service.answer(&message.payload).await;
                if let Err(error) = nats.publish(reply_to, body.into()).await {
                    tracing::warn!(%error, "could not send a key lease reply");
                }
                drop(permit);
            });
        }
        if let Err(error) = self.subscriber.unsubscribe().await {
            tracing::warn!(%error, "unsubscribing from key leases failed");
        }
        // Wait for the answers in flight, then make sure they left.
        let all = u32::try_from(CONCURRENCY).unwrap_or(u32::MAX);
        let _ = permits.acquire_many(all).await;
        let _ = self.nats.flush().await;
        tracing::info!("stopped answering key leases");
        Ok(())
    }
}

/// Serves key leases until `shutdown`: checks first that the KEK opens every published
/// and active key (a clear error otherwise), then answers on [`LEASE_SUBJECT`].
pub async fn serve_leases(
    nats: async_nats::Client,
    manager: Arc<KeyManager>,
    projection: impl Fn() -> Arc<Projection> + Send + Sync + 'static,
    secret: ClusterSecret,
    lease_ttl: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), KeyError> {
    let service = Arc::new(KeyManagerService::new(
        manager, projection, secret, lease_ttl,
    ));
    let n = service.check_vault().await?;
    tracing::info!(keys = n, "the KEK opens every published and active key");
    service.serve(nats, shutdown).await
}
