//! The revocation subscriber: replays the JetStream stream `SIGNET_REVOCATIONS` from its
//! first event, then follows it live, into a shared [`Revocations`].
//!
//! It reads with an ordered consumer of its own making (ephemeral, one replica, memory
//! storage, no acknowledgements, `DeliverPolicy::All` at first): every delivery must carry
//! the next consumer sequence, otherwise one was lost on the way and the consumer is
//! recreated at the next stream sequence still needed; the same happens when pulling fails,
//! when heartbeats stop, and when the client reconnects (a restarted server has lost the
//! consumer). Replays are harmless: a revocation set is idempotent.
//!
//! The stream is created by the issuers. Until it exists (or while NATS is unreachable)
//! the subscriber retries with a backoff and reports [`FeedPhase::StreamMissing`] or
//! [`FeedPhase::Connecting`]. It reports "caught up" once it has applied every event up to
//! the stream's last sequence at the time it first bound to it; a server that must not
//! accept a revoked token waits for that ([`Revocations::wait_caught_up`]), and the
//! [`Verifier`](crate::Verifier) refuses to decide before it (503).
//!
//! Undecodable events are skipped with a warning. Expired entries are pruned periodically.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy, ReplayPolicy},
    context::GetStreamErrorKind,
    ErrorCode,
};
use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::error::ConfigError;
use crate::feed::{FeedPhase, Revocations};
use crate::revocation::{Revocation, STREAM, SUBJECT_PREFIX};
use crate::unix_now;

/// How a [`RevocationSubscriber`] behaves.
#[derive(Debug, Clone)]
pub struct SubscriberOptions {
    /// The stream (default [`STREAM`], `SIGNET_REVOCATIONS`).
    pub stream: String,
    /// How often expired entries are dropped (default 60 s).
    pub prune_interval: Duration,
    /// The longest pause between two attempts to reach NATS or the stream (default 5 s).
    pub max_backoff: Duration,
    /// Idle heartbeat of the pull requests (default 2 s); two missed ones recreate the
    /// consumer.
    pub heartbeat: Duration,
    /// The connection name shown by the NATS server.
    pub client_name: String,
}

impl Default for SubscriberOptions {
    fn default() -> Self {
        SubscriberOptions {
            stream: STREAM.to_owned(),
            prune_interval: Duration::from_secs(60),
            max_backoff: Duration::from_secs(5),
            heartbeat: Duration::from_secs(2),
            client_name: "signet-verify".to_owned(),
        }
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BATCH: usize = 256;
/// How often the stream is asked whether the replay is over while no event arrives.
const CATCH_UP_CHECK: Duration = Duration::from_millis(500);
/// How often the connection state is looked at (for reconnections).
const CONNECTION_CHECK: Duration = Duration::from_millis(250);
/// Inactive consumers left behind (after a reconnection) are removed by the server.
const CONSUMER_INACTIVE: Duration = Duration::from_secs(30);

/// A running subscriber. Dropping it stops it.
pub struct RevocationSubscriber {
    task: JoinHandle<()>,
    revocations: Revocations,
}

impl std::fmt::Debug for RevocationSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationSubscriber")
            .field("revocations", &self.revocations)
            .finish_non_exhaustive()
    }
}

impl RevocationSubscriber {
    /// Connects to `nats_url` (in the background, retrying forever) and feeds
    /// `revocations`. Must be called inside a Tokio runtime. Fails only for a URL that
    /// cannot be a NATS server address.
    pub fn connect(nats_url: &str, revocations: Revocations) -> Result<Self, ConfigError> {
        Self::connect_with(nats_url, revocations, SubscriberOptions::default())
    }

    /// [`connect`](Self::connect) with options.
    pub fn connect_with(
        nats_url: &str,
        revocations: Revocations,
        options: SubscriberOptions,
    ) -> Result<Self, ConfigError> {
        for part in nats_url.split(',') {
            part.trim()
                .parse::<async_nats::ServerAddr>()
                .map_err(|e| ConfigError::NatsUrl(nats_url.to_owned(), e.to_string()))?;
        }
        let url = nats_url.to_owned();
        let revs = revocations.clone();
        let task = tokio::spawn(async move {
            revs.update_status(|s| s.phase = FeedPhase::Connecting);
            let connected = async_nats::ConnectOptions::new()
                .name(&options.client_name)
                .retry_on_initial_connect()
                .max_reconnects(None)
                .connect(url.as_str())
                .await;
            match connected {
                Ok(client) => follow(client, revs, options).await,
                Err(e) => {
                    tracing::error!(error = %e, "cannot connect to NATS for revocations");
                    revs.update_status(|s| {
                        s.phase = FeedPhase::Stopped;
                        s.last_error = Some(e.to_string());
                    });
                }
            }
        });
        Ok(RevocationSubscriber { task, revocations })
    }

    /// Feeds `revocations` through a client the caller connected (with its own
    /// credentials, TLS, ...). Must be called inside a Tokio runtime.
    pub fn with_client(
        client: async_nats::Client,
        revocations: Revocations,
        options: SubscriberOptions,
    ) -> Self {
        let revs = revocations.clone();
        let task = tokio::spawn(follow(client, revs, options));
        RevocationSubscriber { task, revocations }
    }

    /// The set this subscriber feeds.
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// Stops the subscriber; the set keeps what it holds.
    pub async fn shutdown(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for RevocationSubscriber {
    fn drop(&mut self) {
        self.task.abort();
        self.revocations
            .update_status(|s| s.phase = FeedPhase::Stopped);
    }
}

/// Deletes an ephemeral consumer when its reader is done (best effort: the server also
/// removes it after [`CONSUMER_INACTIVE`]).
struct ConsumerGuard {
    stream: jetstream::stream::Stream,
    name: String,
}

impl Drop for ConsumerGuard {
    fn drop(&mut self) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let stream = self.stream.clone();
            let name = std::mem::take(&mut self.name);
            rt.spawn(async move {
                if let Err(e) = stream.delete_consumer(&name).await {
                    tracing::debug!(consumer = %name, error = %e, "deleting a consumer failed");
                }
            });
        }
    }
}

struct Follower {
    client: async_nats::Client,
    js: jetstream::Context,
    revs: Revocations,
    options: SubscriberOptions,
    /// The next stream sequence to apply.
    next: u64,
    /// The stream's last sequence when first bound: the end of the history.
    target: Option<u64>,
    caught_up: bool,
    backoff: Duration,
}

async fn follow(client: async_nats::Client, revs: Revocations, options: SubscriberOptions) {
    let js = jetstream::new(client.clone());
    let mut f = Follower {
        client,
        js,
        revs,
        options,
        next: 1,
        target: None,
        caught_up: false,
        backoff: BACKOFF_MIN,
    };
    let mut prune = tokio::time::interval(f.options.prune_interval);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stream = f.bind(&mut prune).await;
        if let Err(e) = f.consume(stream, &mut prune).await {
            tracing::warn!(error = %e, next = f.next, "revocation consumer interrupted; resuming");
            f.revs.update_status(|s| {
                s.phase = FeedPhase::Resuming;
                s.last_error = Some(e);
            });
            f.pause(&mut prune).await;
        }
    }
}

impl Follower {
    /// Sleeps for the current backoff (pruning meanwhile) and doubles it.
    async fn pause(&mut self, prune: &mut tokio::time::Interval) {
        let sleep = tokio::time::sleep(self.backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                _ = prune.tick() => self.prune(),
            }
        }
        self.backoff = (self.backoff * 2).min(self.options.max_backoff);
    }

    fn prune(&self) {
        let dropped = self.revs.prune(unix_now());
        if dropped > 0 {
            tracing::debug!(dropped, "pruned expired revocations");
        }
    }

    /// Gets the stream, retrying until it exists and answers.
    async fn bind(&mut self, prune: &mut tokio::time::Interval) -> jetstream::stream::Stream {
        loop {
            match self.js.get_stream(&self.options.stream).await {
                Ok(stream) => return stream,
                Err(e) => {
                    let missing = matches!(e.kind(), GetStreamErrorKind::JetStream(ref err)
                        if err.error_code() == ErrorCode::STREAM_NOT_FOUND);
                    let phase = if missing {
                        FeedPhase::StreamMissing
                    } else {
                        FeedPhase::Connecting
                    };
                    tracing::debug!(error = %e, stream = %self.options.stream, "revocation stream not available");
                    let message = if missing {
                        format!("the stream {} does not exist (yet)", self.options.stream)
                    } else {
                        format!("the stream {} is not reachable: {e}", self.options.stream)
                    };
                    self.revs.update_status(|s| {
                        s.phase = phase;
                        s.last_error = Some(message);
                    });
                    self.pause(prune).await;
                }
            }
        }
    }

    fn set_caught_up(&mut self) {
        if !self.caught_up {
            self.caught_up = true;
            tracing::info!(
                last_sequence = self.next.saturating_sub(1),
                "revocation history replayed"
            );
        }
        self.revs.update_status(|s| {
            s.caught_up = true;
            s.phase = FeedPhase::Following;
        });
    }

    /// Whether the stream's state shows that nothing of the history is left to read.
    fn history_done(&self, state: &jetstream::stream::State) -> bool {
        let target = self.target.unwrap_or(0);
        state.messages == 0 || state.last_sequence < self.next || state.first_sequence > target
    }

    /// Reads from `self.next` until something breaks; returns why.
    async fn consume(
        &mut self,
        stream: jetstream::stream::Stream,
        prune: &mut tokio::time::Interval,
    ) -> Result<(), String> {
        let state = stream.cached_info().state.clone();
        if state.last_sequence.saturating_add(1) < self.next {
            tracing::warn!(
                last_sequence = state.last_sequence,
                next = self.next,
                "the revocation stream is behind what was read (recreated?); replaying it"
            );
            self.next = 1;
        }
        let target = *self.target.get_or_insert(state.last_sequence);
        if !self.caught_up && (self.history_done(&state) || self.next > target) {
            self.set_caught_up();
        } else if !self.caught_up {
            self.revs
                .update_status(|s| s.phase = FeedPhase::Replaying { target });
        }
        let config = pull::Config {
            description: Some("signet-verify revocation subscriber".to_owned()),
            deliver_policy: if self.next <= 1 {
                DeliverPolicy::All
            } else {
                DeliverPolicy::ByStartSequence {
                    start_sequence: self.next,
                }
            },
            ack_policy: AckPolicy::None,
            replay_policy: ReplayPolicy::Instant,
            filter_subject: format!("{SUBJECT_PREFIX}.>"),
            inactive_threshold: CONSUMER_INACTIVE,
            num_replicas: 1,
            memory_storage: true,
            ..pull::Config::default()
        };
        let consumer = stream
            .create_consumer(config)
            .await
            .map_err(|e| format!("create a consumer at {}: {e}", self.next))?;
        let _guard = ConsumerGuard {
            stream: stream.clone(),
            name: consumer.cached_info().name.clone(),
        };
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(BATCH)
            .heartbeat(self.options.heartbeat)
            .expires(self.options.heartbeat * 10)
            .messages()
            .await
            .map_err(|e| format!("pull from {}: {e}", self.next))?;
        if self.caught_up {
            self.revs.update_status(|s| s.phase = FeedPhase::Following);
        }
        let mut delivered = 0u64;
        let mut check = tokio::time::interval(CATCH_UP_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut connection = tokio::time::interval(CONNECTION_CHECK);
        connection.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_connected = true;
        loop {
            tokio::select! {
                biased;
                item = messages.next() => {
                    let message = match item {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => return Err(format!("pulling failed: {e}")),
                        None => return Err("the consumer ended".to_owned()),
                    };
                    let info = message.info().map_err(|e| format!("a delivery without metadata: {e}"))?;
                    let (seq, consumer_seq, pending) =
                        (info.stream_sequence, info.consumer_sequence, info.pending);
                    if consumer_seq != delivered + 1 {
                        return Err(format!(
                            "delivery {consumer_seq} arrived after {delivered}: one was lost"
                        ));
                    }
                    delivered = consumer_seq;
                    self.backoff = BACKOFF_MIN;
                    if seq < self.next {
                        continue;
                    }
                    self.apply(seq, message.subject.as_str(), &message.payload);
                    if !self.caught_up && (self.next > target || pending == 0) {
                        self.set_caught_up();
                    }
                }
                _ = prune.tick() => self.prune(),
                _ = check.tick(), if !self.caught_up => {
                    if let Ok(info) = stream.get_info().await {
                        if self.history_done(&info.state) {
                            self.set_caught_up();
                        }
                    }
                }
                _ = connection.tick() => {
                    let connected = self.client.connection_state() == State::Connected;
                    if connected && !was_connected {
                        return Err("NATS reconnected; recreating the consumer".to_owned());
                    }
                    was_connected = connected;
                }
            }
        }
    }

    fn apply(&mut self, seq: u64, subject: &str, payload: &[u8]) {
        self.next = seq + 1;
        match Revocation::from_message(subject, payload) {
            Ok(r) => {
                self.revs.insert(&r);
                self.revs.update_status(|s| s.last_sequence = seq);
            }
            Err(e) => {
                tracing::warn!(seq, subject, error = %e, "skipping an undecodable revocation event");
                self.revs.update_status(|s| {
                    s.last_sequence = seq;
                    s.last_error = Some(format!("event {seq} on {subject}: {e}"));
                });
            }
        }
    }
}
