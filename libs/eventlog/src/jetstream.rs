//! The cluster event log backend: [`JetStreamLog`], the [`EventLog`] on a NATS JetStream stream,
//! so that any number of stateless issuer nodes follow one log.
//!
//! This module owns everything Signet keeps in JetStream for its configuration and identity
//! events: the event stream (`SIGNET_EVENTS` by default), its settings and the check of an
//! existing stream's settings at start-up, the headers an event carries, the mapping of
//! optimistic concurrency onto JetStream, reading and following the stream, and the projection
//! snapshot in an object store bucket (`SIGNET_SNAPSHOTS` by default).
//!
//! # Stream layout
//!
//! One stream over the subjects `signet.events.>`; every event lives on its aggregate's subject
//! `signet.events.<aggregate>.<id>` (built by `signet-core`). The event's global sequence is the
//! JetStream stream sequence, so sequences are dense and start at 1. The stream is created at
//! [`JetStreamLog::connect`] when missing, with:
//!
//! | setting | value | why |
//! |---|---|---|
//! | storage | file | events are the source of truth |
//! | replicas | [`JetStreamConfig::replicas`] (1 in tests, 3 in production) | |
//! | retention | limits, with no limit at all (`max_age` 0, no message/byte/per-subject cap) | events are kept forever |
//! | discard | new | if an operator ever adds a size cap, appends fail instead of old events being dropped |
//! | `deny_delete`, `deny_purge` | true, rollups not allowed | an acknowledged event is never removed, so the sequence stays dense |
//! | `allow_direct` | true | last-by-subject reads (aggregate versions) are served without a consumer |
//!
//! An existing stream is used as it is if its settings are compatible, and refused with an
//! error listing every conflicting setting otherwise (other subjects, memory storage, another
//! replica count, a retention other than limits, an age or per-subject limit, deletes or
//! purges allowed, a mirror or sources, asynchronous persistence, ...). A stream whose messages
//! are not dense from 1 (something deleted events before `deny_delete` was set) is refused as
//! [`EventLogError::Corrupt`].
//!
//! # Event messages
//!
//! The message body is the event's JSON payload (as given, minus any whitespace around the JSON
//! value, which the embedded backend drops too). Headers:
//!
//! - `Signet-Actor`: the actor, percent-encoded (every byte outside visible ASCII `!`..`~`, and
//!   `%` itself, becomes `%XX`), so any string fits in a header;
//! - `Signet-At-Ms`: the writer's time, milliseconds since the Unix epoch, in decimal;
//! - `Nats-Expected-Stream`: the stream name, so an event can never land in another stream;
//! - `Nats-Expected-Last-Subject-Sequence`: see below.
//!
//! A message on the stream without the two `Signet-` headers, with unparsable ones, or with a
//! body that is not JSON is not a Signet event: reading it is [`EventLogError::Corrupt`].
//!
//! # Optimistic concurrency
//!
//! An aggregate's version is the stream sequence of the last message on its subject (0 when it
//! has none), which is exactly what JetStream checks for the header
//! `Nats-Expected-Last-Subject-Sequence`. `append(.., ExpectedVersion::Exact(v))` publishes with
//! that header set to `v` (`0`: the subject must have no message yet); `ExpectedVersion::Any`
//! sends no header. The stream leader checks and stores atomically, so of several writers
//! racing with the same expected version exactly one wins; the others get the JetStream error
//! 10071 (wrong last sequence), returned as [`EventLogError::Conflict`] with the subject's
//! current version looked up on the leader. An append returns only after the PubAck, that is
//! once the stream (a quorum of replicas when replicated) has stored the event; with one
//! replica, whether that includes an `fsync` is the server's `sync_interval` setting.
//!
//! An append made while the client is disconnected fails at once. An append whose PubAck does
//! not arrive in time (the connection broke after the publish) fails with a message saying the
//! outcome is unknown: the event may have been stored. Retrying with the same
//! `ExpectedVersion::Exact` is safe (it conflicts if the first attempt was stored); retrying an
//! `ExpectedVersion::Any` append may store the event twice.
//!
//! # Reading and following
//!
//! [`EventLog::read_from`] and [`EventLog::follow`] use *ordered consumers*: ephemeral,
//! single-replica, memory-storage pull consumers with no acknowledgements, starting at a stream
//! sequence, deleted when the reader is done (and expired by the server after a period of
//! inactivity if that delete is lost). A reader pulls in batches (1000 messages for
//! `read_from`), so reading 100k events takes about a hundred pull requests, not one request
//! per event. It checks every message: the consumer (delivery) sequence must grow by one,
//! otherwise a delivery was lost on the way (a follower then recreates its consumer from the
//! next sequence it needs, `read_from` fails); the stream sequence must be exactly the next
//! one: a message already yielded (after a recreation) is dropped, and a jump is a hole in the
//! log, [`EventLogError::Gap`], never skipped.
//!
//! The ordered-consumer logic is implemented here rather than with `async-nats`'s
//! `pull::OrderedConfig`, because that one restarts from the very first event when it has to
//! recreate its consumer before delivering anything, reports missed heartbeats only after 30 s,
//! and surfaces some reconnect errors to the caller. A follower instead:
//!
//! - yields every event with sequence >= `from`, then the live tail, in order, each exactly once;
//! - keeps going when NATS goes away: the client reconnects by itself (forever, with a backoff
//!   capped at 2 s). The follower drops its consumer when the client reports a reconnection (a
//!   restarted server has lost it), when pulling fails, or when two idle heartbeats (2 s apart)
//!   are missed; it then waits until the client is connected and recreates the consumer at the
//!   next sequence it needs, retrying with a backoff capped at 2 s while JetStream is
//!   unavailable. Nothing is yielded meanwhile: a follower stalls while NATS is down and resumes
//!   where it stopped, typically within milliseconds of the server being back;
//! - ends only after yielding an error: a [`EventLogError::Gap`], an event that cannot be
//!   decoded ([`EventLogError::Corrupt`]), or the stream itself missing for ten consecutive
//!   attempts (deleted by an operator).
//!
//! [`EventLog::last_seq`] is the stream state's last sequence (answered by the leader);
//! [`EventLog::subject_version`] gets the last message of the subject, with a direct get when the
//! stream allows it. In a replicated stream a direct get may be answered by a replica that is a
//! moment behind the leader, so the version may briefly lag an acknowledged append; that can only
//! cause a spurious [`EventLogError::Conflict`], never a lost update, because the append itself
//! is checked by the leader.
//!
//! # Snapshots
//!
//! A JetStream object store bucket (`SIGNET_SNAPSHOTS` by default, file storage, same replica
//! count, created at connect when missing) holds one object, `projection`: its data is the
//! snapshot bytes (chunked by the object store, so snapshots of any size work), and its metadata
//! records `signet-seq` (the snapshot's sequence), `signet-size` and `signet-crc32` (CRC-32 of the
//! data, lowercase hex). A save replaces the object (saves from one handle are serialised); a
//! load verifies the object store's SHA-256 digest, the size and the CRC and returns
//! [`EventLogError::Corrupt`] on any mismatch or missing metadata. A load that races with a save
//! on another node retries on the new object. Two nodes saving at the same moment leave one
//! complete snapshot, but the chunks of the other may stay behind unreferenced: let one node
//! (or one node at a time) save snapshots.
//!
//! # Errors
//!
//! Every `async-nats` error becomes [`EventLogError::Backend`] with what was being done, the
//! server URL and the stream name. Credentials in the URL (`nats://user:password@host`) never
//! appear in a message: they are replaced by `***`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State as ConnectionState;
use async_nats::header::{NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_EXPECTED_STREAM};
use async_nats::jetstream::{
    self as js,
    consumer::{pull, AckPolicy, DeliverPolicy, ReplayPolicy},
    context::{CreateStreamErrorKind, GetStreamErrorKind, PublishErrorKind},
    object_store::{self, GetErrorKind, ObjectMetadata, ObjectStore},
    stream::{
        self, DirectGetErrorKind, DiscardPolicy, LastRawMessageErrorKind, PersistenceMode,
        RetentionPolicy, StorageType,
    },
    ErrorCode,
};
use async_nats::{ConnectOptions, Event, HeaderMap, ServerAddr};
use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use serde_json::value::RawValue;
use tokio::io::AsyncReadExt;
use tokio::sync::{watch, Mutex};

use crate::{
    validate_subject, EventLog, EventLogError, ExpectedVersion, NewEvent, RecordedEvent, Result,
    Seq, Snapshot,
};

/// Default name of the event stream.
pub const DEFAULT_STREAM: &str = "SIGNET_EVENTS";
/// Default name of the snapshot object store bucket.
pub const DEFAULT_SNAPSHOT_BUCKET: &str = "SIGNET_SNAPSHOTS";
/// The subjects of the event stream.
pub const STREAM_SUBJECTS: &str = "signet.events.>";
/// Every event subject starts with this.
pub const SUBJECT_PREFIX: &str = "signet.events.";
/// The object holding the projection snapshot in the snapshot bucket.
pub const SNAPSHOT_OBJECT: &str = "projection";
/// Header carrying the event's actor (percent-encoded).
pub const ACTOR_HEADER: &str = "Signet-Actor";
/// Header carrying the event's time in milliseconds since the Unix epoch.
pub const AT_HEADER: &str = "Signet-At-Ms";
/// Snapshot object metadata: the snapshot's sequence.
pub const SNAPSHOT_SEQ_KEY: &str = "signet-seq";
/// Snapshot object metadata: the data's length in bytes.
pub const SNAPSHOT_SIZE_KEY: &str = "signet-size";
/// Snapshot object metadata: CRC-32 of the data, 8 lowercase hex digits.
pub const SNAPSHOT_CRC_KEY: &str = "signet-crc32";
/// Default bound on establishing the connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on one JetStream API request or PubAck.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages per pull request of `read_from`.
const READ_BATCH: usize = 1000;
/// Messages per pull request of a follower.
const FOLLOW_BATCH: usize = 256;
/// Idle heartbeat of a follower's pull requests; two missed ones recreate the consumer.
const FOLLOW_HEARTBEAT: Duration = Duration::from_secs(2);
/// Expiry of a follower's pull requests.
const FOLLOW_EXPIRES: Duration = Duration::from_secs(20);
/// A `read_from` (or snapshot load) that makes no progress for this long fails.
const READ_IDLE: Duration = Duration::from_secs(10);
/// The server deletes a reader's consumer after this long without activity (a fallback: the
/// reader deletes it itself when done).
const CONSUMER_INACTIVE: Duration = Duration::from_secs(60);
/// Follower retry backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A follower gives up after finding the stream missing this many times in a row.
const STREAM_MISSING_LIMIT: u32 = 10;
/// Attempts of a snapshot load that races with saves elsewhere.
const SNAPSHOT_LOAD_ATTEMPTS: usize = 3;

/// How to reach the JetStream event log.
#[derive(Clone)]
pub struct JetStreamConfig {
    /// NATS server URL(s), comma-separated: `nats://host:4222`, optionally with credentials
    /// (`nats://user:password@host:4222`), which never appear in error messages.
    pub url: String,
    /// Name of the event stream (default [`DEFAULT_STREAM`]).
    pub stream: String,
    /// Replicas of the stream and of the snapshot bucket when they are created, and the count an
    /// existing stream must have (default 1; 3 in production).
    pub replicas: usize,
    /// Name of the snapshot object store bucket (default [`DEFAULT_SNAPSHOT_BUCKET`]).
    pub snapshot_bucket: String,
    /// Bound on establishing the connection (default [`DEFAULT_CONNECT_TIMEOUT`]); connecting
    /// fails after it instead of retrying.
    pub connect_timeout: Duration,
}

impl JetStreamConfig {
    /// The defaults, with the given server URL.
    pub fn new(url: impl Into<String>) -> JetStreamConfig {
        JetStreamConfig {
            url: url.into(),
            ..JetStreamConfig::default()
        }
    }

    fn validate(&self) -> Result<()> {
        let invalid = |what: String| Err(EventLogError::Backend(what));
        if !is_valid_name(&self.stream) {
            return invalid(format!(
                "invalid JetStream stream name {:?}: use letters, digits, `-` and `_`",
                self.stream
            ));
        }
        if !is_valid_name(&self.snapshot_bucket) {
            return invalid(format!(
                "invalid snapshot bucket name {:?}: use letters, digits, `-` and `_`",
                self.snapshot_bucket
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return invalid(format!(
                "invalid replica count {}: JetStream supports 1 to 5",
                self.replicas
            ));
        }
        if self.connect_timeout.is_zero() {
            return invalid("the NATS connect timeout must be positive".to_owned());
        }
        Ok(())
    }
}

impl Default for JetStreamConfig {
    fn default() -> JetStreamConfig {
        JetStreamConfig {
            url: "nats://127.0.0.1:4222".to_owned(),
            stream: DEFAULT_STREAM.to_owned(),
            replicas: 1,
            snapshot_bucket: DEFAULT_SNAPSHOT_BUCKET.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl fmt::Debug for JetStreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamConfig")
            .field("url", &redact_url(&self.url))
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .field("snapshot_bucket", &self.snapshot_bucket)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// The [`EventLog`] on NATS JetStream; see the [module documentation](self).
pub struct JetStreamLog {
    shared: Arc<Shared>,
    /// Serialises this handle's snapshot saves (the object store replaces objects in steps).
    snapshot_lock: Mutex<()>,
}

/// What the log handle and its followers share.
struct Shared {
    client: async_nats::Client,
    /// For publishing (its acker task lives as long as the log).
    context: js::Context,
    stream: stream::Stream<()>,
    snapshots: ObjectStore,
    stream_name: String,
    bucket: String,
    /// Whether the stream allows direct gets.
    direct: bool,
    /// The server URL without credentials.
    url: String,
    /// Strings removed from every error message (the URL's credentials).
    secrets: Vec<String>,
    /// `true` while connected, from the client's event callback.
    connected: watch::Receiver<bool>,
}

impl JetStreamLog {
    /// Connects to NATS, creates the event stream and the snapshot bucket if they are missing
    /// (or checks the existing stream's settings), and returns the log.
    ///
    /// Fails within [`JetStreamConfig::connect_timeout`] when the server cannot be reached (no
    /// retry on the first connection; afterwards the client reconnects forever), and with an
    /// error listing every conflicting setting when the stream exists with settings Signet
    /// cannot work with.
    pub async fn connect(config: JetStreamConfig) -> Result<Arc<JetStreamLog>> {
        config.validate()?;
        let url = redact_url(&config.url);
        let secrets = url_secrets(&config.url);
        let scrubbed = |message: String| EventLogError::Backend(scrub(&secrets, message));

        let addrs = config
            .url
            .split(',')
            .map(|part| part.trim().parse::<ServerAddr>())
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| scrubbed(format!("invalid NATS URL {url}: {e}")))?;
        if addrs.is_empty() {
            return Err(scrubbed(format!("invalid NATS URL {url:?}: no server")));
        }

        let (connected_tx, connected) = watch::channel(true);
        let connected_tx = Arc::new(connected_tx);
        let mut options = ConnectOptions::new();
        // async-nats does not read credentials from the URL: take them from the first URL
        // that has some (`nats://user:password@host` or `nats://token@host`).
        if let Some(addr) = addrs.iter().find(|a| a.username().is_some()) {
            let user = percent_decode(addr.username().unwrap_or_default());
            options = match addr.password() {
                Some(password) => options.user_and_password(user, percent_decode(password)),
                None => options.token(user),
            };
        }
        let options = options
            .name("signet")
            .connection_timeout(config.connect_timeout)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                let connected_tx = Arc::clone(&connected_tx);
                async move { on_event(&connected_tx, event) }
            });
        let client =
            match tokio::time::timeout(config.connect_timeout, options.connect(addrs)).await {
                Ok(Ok(client)) => client,
                Ok(Err(e)) if e.kind() != async_nats::ConnectErrorKind::TimedOut => {
                    return Err(scrubbed(format!("cannot connect to NATS at {url}: {e}")));
                }
                Ok(Err(_)) | Err(_) => {
                    return Err(scrubbed(format!(
                        "cannot connect to NATS at {url}: no answer within {:?}",
                        config.connect_timeout
                    )));
                }
            };

        let context = js::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client.clone());
        let setup = Setup {
            context: &context,
            config: &config,
            url: &url,
            secrets: &secrets,
        };
        let info = setup.event_stream().await?;
        let snapshots = setup.snapshot_bucket().await?;
        let stream = context
            .get_stream_no_info(&config.stream)
            .await
            .map_err(|e| scrubbed(format!("stream {}: {e}", config.stream)))?;
        let direct = info.config.allow_direct;
        if !direct {
            tracing::info!(stream = %config.stream,
                "the event stream does not allow direct gets; versions are read from the leader");
        }
        tracing::info!(url = %url, stream = %config.stream, last_seq = info.state.last_sequence,
            replicas = info.config.num_replicas, "JetStream event log connected");
        Ok(Arc::new(JetStreamLog {
            shared: Arc::new(Shared {
                client,
                context,
                stream,
                snapshots,
                stream_name: config.stream.clone(),
                bucket: config.snapshot_bucket.clone(),
                direct,
                url,
                secrets,
                connected,
            }),
            snapshot_lock: Mutex::new(()),
        }))
    }

    /// The NATS connection, for other users of the same server (it reconnects by itself).
    pub fn client(&self) -> &async_nats::Client {
        &self.shared.client
    }

    /// The event stream's name.
    pub fn stream_name(&self) -> &str {
        &self.shared.stream_name
    }
}

impl fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamLog")
            .field("url", &self.shared.url)
            .field("stream", &self.shared.stream_name)
            .field("snapshot_bucket", &self.shared.bucket)
            .field("direct", &self.shared.direct)
            .finish()
    }
}

#[async_trait]
impl EventLog for JetStreamLog {
    async fn append(&self, event: NewEvent, expected: ExpectedVersion) -> Result<Seq> {
        validate_subject(&event.subject)?;
        if !event.subject.starts_with(SUBJECT_PREFIX) {
            // Not in the stream: JetStream would not even answer.
            return Err(EventLogError::InvalidSubject(event.subject));
        }
        let payload = normalize_payload(&event.payload)?;
        let shared = &self.shared;
        shared.ensure_connected("append")?;

        let mut headers = HeaderMap::new();
        headers.insert(NATS_EXPECTED_STREAM, shared.stream_name.as_str());
        headers.insert(ACTOR_HEADER, encode_header(&event.actor));
        headers.insert(AT_HEADER, event.at_ms.to_string());
        if let ExpectedVersion::Exact(version) = expected {
            headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, version.to_string());
        }
        let subject = event.subject;
        let what = || format!("append to {subject}");
        let ack = shared
            .context
            .publish_with_headers(subject.clone(), headers, payload.into())
            .await
            .map_err(|e| shared.backend(what(), e))?;
        match ack.await {
            Ok(ack) if ack.stream == shared.stream_name => Ok(ack.sequence),
            Ok(ack) => Err(shared.backend(
                what(),
                format!(
                    "stored in stream {} at sequence {} instead of {}",
                    ack.stream, ack.sequence, shared.stream_name
                ),
            )),
            Err(e) if is_wrong_last_sequence(&e) => {
                let ExpectedVersion::Exact(expected) = expected else {
                    return Err(shared.backend(what(), e));
                };
                let actual = shared.leader_subject_version(&subject).await?;
                Err(EventLogError::Conflict {
                    subject,
                    expected,
                    actual,
                })
            }
            Err(e) if e.kind() == PublishErrorKind::TimedOut => Err(shared.backend(
                what(),
                format!(
                    "no acknowledgement within {REQUEST_TIMEOUT:?}; the event may or may not \
                     have been stored"
                ),
            )),
            Err(e) => Err(shared.backend(what(), e)),
        }
    }

    async fn last_seq(&self) -> Result<Seq> {
        self.shared.last_seq().await
    }

    async fn subject_version(&self, subject: &str) -> Result<Seq> {
        validate_subject(subject)?;
        if !subject.starts_with(SUBJECT_PREFIX) {
            return Ok(0);
        }
        let shared = &self.shared;
        if !shared.direct {
            return shared.leader_subject_version(subject).await;
        }
        match shared.stream.direct_get_last_for_subject(subject).await {
            Ok(message) => Ok(message.sequence),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(0),
            Err(e) => Err(shared.backend(format!("version of {subject}"), e)),
        }
    }

    async fn read_from(&self, from: Seq, max: usize) -> Result<Vec<RecordedEvent>> {
        let shared = &self.shared;
        if max == 0 {
            return Ok(Vec::new());
        }
        let from = from.max(1);
        let last = shared.last_seq().await?;
        if from > last {
            return Ok(Vec::new());
        }
        let count = usize::try_from(last - from + 1)
            .unwrap_or(usize::MAX)
            .min(max);
        let what = || format!("read events from {from}");
        let mut cursor = shared
            .open_cursor(from, count.min(READ_BATCH), false)
            .await
            .map_err(|e| shared.backend(what(), e))?;
        let mut events = Vec::with_capacity(count.min(1 << 16));
        let mut next = from;
        let mut progress = tokio::time::Instant::now();
        while events.len() < count {
            let item = tokio::time::timeout(READ_IDLE, cursor.messages.next())
                .await
                .map_err(|_| {
                    shared.backend(
                        what(),
                        format!("no event {next} within {READ_IDLE:?} (of {count} expected)"),
                    )
                })?;
            let message = match item {
                Some(Ok(message)) => message,
                // In a cluster, the server holding a new consumer tells the others that it
                // listens asynchronously: a pull may briefly find no responder. Open the
                // consumer again from where the read is.
                Some(Err(e))
                    if e.kind() == pull::MessagesErrorKind::NoResponders
                        && progress.elapsed() < READ_IDLE =>
                {
                    tokio::time::sleep(BACKOFF_MIN).await;
                    cursor = shared
                        .open_cursor(next, (count - events.len()).min(READ_BATCH), false)
                        .await
                        .map_err(|e| shared.backend(what(), e))?;
                    continue;
                }
                Some(Err(e)) => return Err(shared.backend(what(), e)),
                None => return Err(shared.backend(what(), "the consumer ended")),
            };
            progress = tokio::time::Instant::now();
            let (stream_seq, consumer_seq) = sequences(&message)
                .map_err(|e| shared.backend(what(), format!("unreadable delivery: {e}")))?;
            if consumer_seq != cursor.delivered + 1 {
                return Err(shared.backend(
                    what(),
                    format!(
                        "a delivery was lost (delivery {consumer_seq} after {})",
                        cursor.delivered
                    ),
                ));
            }
            cursor.delivered = consumer_seq;
            if stream_seq != next {
                return Err(EventLogError::Gap {
                    expected: next,
                    got: stream_seq,
                });
            }
            events.push(shared.decode(stream_seq, &message)?);
            next += 1;
        }
        Ok(events)
    }

    async fn follow(&self, from: Seq) -> Result<BoxStream<'static, Result<RecordedEvent>>> {
        let mut connected = self.shared.connected.clone();
        connected.mark_unchanged();
        let follower = Follower {
            shared: Arc::clone(&self.shared),
            next: from.max(1),
            cursor: None,
            backoff: BACKOFF_MIN,
            stream_missing: 0,
            connected: Some(connected),
            done: false,
        };
        Ok(futures::stream::unfold(follower, Follower::step).boxed())
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        let shared = &self.shared;
        shared.ensure_connected("save snapshot")?;
        let crc = crc32fast::hash(&snapshot.data);
        let metadata = ObjectMetadata {
            name: SNAPSHOT_OBJECT.to_owned(),
            description: Some(format!(
                "Signet projection snapshot at event {}",
                snapshot.seq
            )),
            metadata: HashMap::from([
                (SNAPSHOT_SEQ_KEY.to_owned(), snapshot.seq.to_string()),
                (
                    SNAPSHOT_SIZE_KEY.to_owned(),
                    snapshot.data.len().to_string(),
                ),
                (SNAPSHOT_CRC_KEY.to_owned(), format!("{crc:08x}")),
            ]),
            ..ObjectMetadata::default()
        };
        let _guard = self.snapshot_lock.lock().await;
        shared
            .snapshots
            .put(metadata, &mut snapshot.data.as_slice())
            .await
            .map_err(|e| {
                shared.backend(
                    format!(
                        "save snapshot at event {} ({} bytes) in bucket {}",
                        snapshot.seq,
                        snapshot.data.len(),
                        shared.bucket
                    ),
                    e,
                )
            })?;
        Ok(())
    }

    async fn load_snapshot(&self) -> Result<Option<Snapshot>> {
        let shared = &self.shared;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match shared.load_snapshot_once().await {
                Err(LoadError::Retry(error)) if attempt < SNAPSHOT_LOAD_ATTEMPTS => {
                    tracing::debug!(%error, "snapshot replaced while being read; reading again");
                }
                Err(LoadError::Retry(error)) | Err(LoadError::Fail(error)) => return Err(error),
                Ok(snapshot) => return Ok(snapshot),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connection and stream set-up
// ---------------------------------------------------------------------------------------------

/// What stream and bucket set-up at connect needs.
struct Setup<'a> {
    context: &'a js::Context,
    config: &'a JetStreamConfig,
    url: &'a str,
    secrets: &'a [String],
}

impl Setup<'_> {
    fn error(&self, message: String) -> EventLogError {
        EventLogError::Backend(scrub(self.secrets, message))
    }

    /// Gets the event stream, checking its settings, or creates it.
    async fn event_stream(&self) -> Result<stream::Info> {
        let name = &self.config.stream;
        let info = match self.context.get_stream(name).await {
            Ok(stream) => stream.cached_info().clone(),
            Err(e) if is_stream_not_found(&e) => match self.create_stream().await? {
                Some(info) => info,
                None => self.existing_stream().await?,
            },
            Err(e) => return Err(self.unavailable(e)),
        };
        let conflicts = stream_conflicts(&info.config, self.config.replicas);
        if !conflicts.is_empty() {
            return Err(self.error(format!(
                "JetStream stream {name} on {} exists with settings Signet's event log cannot \
                 use: {}. Change those settings (`nats stream edit {name}`; the storage type \
                 and some others need a new stream), or configure another stream name",
                self.url,
                conflicts.join("; ")
            )));
        }
        check_dense(&info, name)?;
        Ok(info)
    }

    /// Creates the event stream; `None` when someone else created it first.
    async fn create_stream(&self) -> Result<Option<stream::Info>> {
        let name = &self.config.stream;
        match self
            .context
            .create_stream(desired_stream(self.config))
            .await
        {
            Ok(stream) => {
                tracing::info!(stream = %name, replicas = self.config.replicas,
                    "created the JetStream event stream");
                Ok(Some(stream.cached_info().clone()))
            }
            Err(e) => match e.kind() {
                CreateStreamErrorKind::JetStream(err)
                    if err.error_code() == ErrorCode::STREAM_NAME_EXIST =>
                {
                    Ok(None)
                }
                CreateStreamErrorKind::JetStream(err)
                    if err.error_code() == ErrorCode::STREAM_SUBJECT_OVERLAP =>
                {
                    let owner = self
                        .context
                        .stream_by_subject(STREAM_SUBJECTS)
                        .await
                        .map(|owner| format!("stream {owner}"))
                        .unwrap_or_else(|_| "another stream".to_owned());
                    Err(self.error(format!(
                        "cannot create JetStream stream {name} on {}: its subjects \
                         {STREAM_SUBJECTS} already belong to {owner}; configure that stream's \
                         name instead, or remove it",
                        self.url
                    )))
                }
                CreateStreamErrorKind::JetStreamUnavailable => Err(self.error(format!(
                    "cannot create JetStream stream {name}: JetStream is not available on {} \
                     (is the server started with JetStream enabled, `nats-server -js`?)",
                    self.url
                ))),
                _ => Err(self.error(format!(
                    "cannot create JetStream stream {name} on {} with {} replica(s): {e}",
                    self.url, self.config.replicas
                ))),
            },
        }
    }

    async fn existing_stream(&self) -> Result<stream::Info> {
        self.context
            .get_stream(&self.config.stream)
            .await
            .map(|stream| stream.cached_info().clone())
            .map_err(|e| self.unavailable(e))
    }

    fn unavailable(&self, e: impl fmt::Display) -> EventLogError {
        let e = e.to_string();
        let hint = if e.contains("no responders") {
            " (is JetStream enabled on the server, `nats-server -js`?)"
        } else {
            ""
        };
        self.error(format!(
            "cannot look up JetStream stream {} on {}: {e}{hint}",
            self.config.stream, self.url
        ))
    }

    /// Gets the snapshot bucket, creating it when missing.
    async fn snapshot_bucket(&self) -> Result<ObjectStore> {
        let bucket = &self.config.snapshot_bucket;
        let what = |e: &dyn fmt::Display| {
            self.error(format!(
                "snapshot object store bucket {bucket} on {}: {e}",
                self.url
            ))
        };
        match self.context.get_stream(format!("OBJ_{bucket}")).await {
            Ok(_) => {}
            Err(e) if is_stream_not_found(&e) => {
                let config = object_store::Config {
                    bucket: bucket.clone(),
                    description: Some("Signet projection snapshots".to_owned()),
                    storage: StorageType::File,
                    num_replicas: self.config.replicas,
                    ..object_store::Config::default()
                };
                match self.context.create_object_store(config).await {
                    Ok(store) => {
                        tracing::info!(bucket = %bucket, "created the snapshot bucket");
                        return Ok(store);
                    }
                    // Possibly created concurrently by another node: get it below.
                    Err(e) => tracing::debug!(error = %e, "creating the snapshot bucket failed"),
                }
            }
            Err(e) => return Err(what(&e)),
        }
        self.context
            .get_object_store(bucket)
            .await
            .map_err(|e| what(&e))
    }
}

/// The settings of a new event stream.
fn desired_stream(config: &JetStreamConfig) -> stream::Config {
    stream::Config {
        name: config.stream.clone(),
        description: Some(
            "Signet configuration and identity events: signet.events.<aggregate>.<id>".to_owned(),
        ),
        subjects: vec![STREAM_SUBJECTS.to_owned()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas: config.replicas,
        discard: DiscardPolicy::New,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        max_age: Duration::ZERO,
        allow_direct: true,
        deny_delete: true,
        deny_purge: true,
        allow_rollup: false,
        ..stream::Config::default()
    }
}

/// Every setting of an existing event stream that Signet cannot work with.
fn stream_conflicts(config: &stream::Config, replicas: usize) -> Vec<String> {
    let mut conflicts = Vec::new();
    let mut conflict = |what: String| conflicts.push(what);
    if config.subjects != [STREAM_SUBJECTS] {
        conflict(format!(
            "subjects are {:?} (expected [\"{STREAM_SUBJECTS}\"])",
            config.subjects
        ));
    }
    if config.storage != StorageType::File {
        conflict(format!(
            "storage is {:?} (expected File: events are the source of truth)",
            config.storage
        ));
    }
    if config.retention != RetentionPolicy::Limits {
        conflict(format!(
            "retention is {:?} (expected Limits: events are kept forever)",
            config.retention
        ));
    }
    if config.num_replicas.max(1) != replicas {
        conflict(format!(
            "replicas is {} (expected {replicas})",
            config.num_replicas
        ));
    }
    if !config.max_age.is_zero() {
        conflict(format!(
            "max_age is {:?} (expected none: events must never expire)",
            config.max_age
        ));
    }
    if config.max_messages_per_subject > 0 {
        conflict(format!(
            "max_msgs_per_subject is {} (expected unlimited: an aggregate keeps its whole \
             history)",
            config.max_messages_per_subject
        ));
    }
    if config.discard == DiscardPolicy::Old && (config.max_messages > 0 || config.max_bytes > 0) {
        conflict(
            "discard policy is Old with a size limit (expected New: acknowledged events must \
             never be dropped)"
                .to_owned(),
        );
    }
    if !config.deny_delete {
        conflict("deny_delete is false (expected true: events are never deleted)".to_owned());
    }
    if !config.deny_purge {
        conflict("deny_purge is false (expected true: events are never purged)".to_owned());
    }
    if config.allow_rollup {
        conflict("rollups are allowed (expected not: a rollup purges events)".to_owned());
    }
    if config.sealed {
        conflict("the stream is sealed (it accepts no more events)".to_owned());
    }
    if config.no_ack {
        conflict("no_ack is set (appends need acknowledgements)".to_owned());
    }
    if config.mirror.is_some() {
        conflict("the stream is a mirror (it accepts no appends)".to_owned());
    }
    if config.sources.as_ref().is_some_and(|s| !s.is_empty()) {
        conflict("the stream has sources (only Signet appends events)".to_owned());
    }
    if config.subject_transform.is_some() {
        conflict("the stream has a subject transform".to_owned());
    }
    if config.allow_message_ttl {
        conflict("per-message TTLs are allowed (events must never expire)".to_owned());
    }
    if config.allow_message_counter {
        conflict("the stream is a counter stream".to_owned());
    }
    if config.persist_mode == Some(PersistenceMode::Async) {
        conflict("persistence mode is async (acknowledgements must follow storage)".to_owned());
    }
    if config.first_sequence.is_some_and(|first| first > 1) {
        conflict(format!(
            "first sequence is {:?} (expected 1: sequences are dense from 1)",
            config.first_sequence
        ));
    }
    conflicts
}

/// Refuses a stream whose messages are not exactly the sequences 1..=last.
fn check_dense(info: &stream::Info, name: &str) -> Result<()> {
    let state = &info.state;
    let dense =
        state.messages == state.last_sequence && (state.messages == 0 || state.first_sequence == 1);
    if dense {
        return Ok(());
    }
    Err(EventLogError::Corrupt {
        path: format!("JetStream stream {name}"),
        offset: 0,
        reason: format!(
            "the stream holds {} messages for sequences {} to {}: events were deleted, so the \
             log is no longer dense from 1",
            state.messages, state.first_sequence, state.last_sequence
        ),
    })
}

fn is_stream_not_found(error: &js::context::GetStreamError) -> bool {
    matches!(error.kind(), GetStreamErrorKind::JetStream(e)
        if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Stream and bucket names: what every JetStream API accepts and a shell needs no quoting for.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Reconnect backoff: immediately, then 50 ms doubling up to 2 s.
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(16);
    (BACKOFF_MIN * 2u32.pow(exp)).min(BACKOFF_MAX)
}

fn on_event(connected: &watch::Sender<bool>, event: Event) {
    match event {
        Event::Connected => {
            tracing::info!("NATS connection (re)established");
            connected.send_replace(true);
        }
        Event::Disconnected => {
            tracing::warn!("NATS connection lost; reconnecting");
            connected.send_replace(false);
        }
        Event::Closed => {
            connected.send_replace(false);
        }
        Event::SlowConsumer(sid) => {
            tracing::warn!(
                sid,
                "NATS slow consumer: messages were dropped (the event log \
                recreates its consumers and loses nothing)"
            );
        }
        other => tracing::warn!(event = %other, "NATS event"),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared operations
// ---------------------------------------------------------------------------------------------

impl Shared {
    fn backend(&self, what: impl fmt::Display, error: impl fmt::Display) -> EventLogError {
        EventLogError::Backend(scrub(
            &self.secrets,
            format!(
                "{what} (NATS {}, stream {}): {error}",
                self.url, self.stream_name
            ),
        ))
    }

    fn ensure_connected(&self, what: &str) -> Result<()> {
        match self.client.connection_state() {
            ConnectionState::Connected => Ok(()),
            state => Err(self.backend(
                what,
                format!("not connected to NATS ({state:?}); the client is reconnecting"),
            )),
        }
    }

    /// Waits until the client is connected (no bound: followers wait out NATS outages).
    /// `false` when the client is closed for good.
    async fn wait_connected(&self) -> bool {
        let mut connected = self.connected.clone();
        loop {
            if self.client.connection_state() == ConnectionState::Connected {
                return true;
            }
            // The event callback is asynchronous: poll the state as well, so a missed event
            // costs at most a second.
            let changed = tokio::time::timeout(Duration::from_secs(1), connected.changed()).await;
            if let Ok(Err(_)) = changed {
                return false;
            }
        }
    }

    async fn last_seq(&self) -> Result<Seq> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| self.backend("read the stream's last sequence", e))?;
        Ok(info.state.last_sequence)
    }

    /// The subject's version as the stream leader sees it.
    async fn leader_subject_version(&self, subject: &str) -> Result<Seq> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(message.sequence),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) => Err(self.backend(format!("version of {subject}"), e)),
        }
    }

    /// Creates an ordered consumer (ephemeral, R1, memory, no acks) from `from` and starts
    /// pulling.
    async fn open_cursor(
        &self,
        from: Seq,
        batch: usize,
        follow: bool,
    ) -> Result<Cursor, OpenError> {
        let config = pull::Config {
            description: Some(
                if follow {
                    "signet-eventlog follower"
                } else {
                    "signet-eventlog reader"
                }
                .to_owned(),
            ),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ack_policy: AckPolicy::None,
            replay_policy: ReplayPolicy::Instant,
            inactive_threshold: CONSUMER_INACTIVE,
            num_replicas: 1,
            memory_storage: true,
            ..pull::Config::default()
        };
        let consumer = self.stream.create_consumer(config).await.map_err(|e| {
            let missing = matches!(e.kind(), stream::ConsumerErrorKind::JetStream(ref err)
                if err.error_code() == ErrorCode::STREAM_NOT_FOUND);
            OpenError {
                message: format!("create consumer at {from}: {e}"),
                stream_missing: missing,
            }
        })?;
        let guard = ConsumerGuard {
            stream: self.stream.clone(),
            name: consumer.cached_info().name.clone(),
        };
        let builder = consumer.stream().max_messages_per_batch(batch.max(1));
        let builder = if follow {
            builder.expires(FOLLOW_EXPIRES).heartbeat(FOLLOW_HEARTBEAT)
        } else {
            builder
        };
        let messages = builder.messages().await.map_err(|e| OpenError {
            message: format!("pull from consumer at {from}: {e}"),
            stream_missing: false,
        })?;
        Ok(Cursor {
            _guard: guard,
            messages,
            delivered: 0,
        })
    }

    /// Builds the event stored at `seq` from its message.
    fn decode(&self, seq: Seq, message: &async_nats::Message) -> Result<RecordedEvent> {
        let corrupt = |reason: String| EventLogError::Corrupt {
            path: format!("JetStream stream {} event {seq}", self.stream_name),
            offset: 0,
            reason,
        };
        let headers = message.headers.as_ref().ok_or_else(|| {
            corrupt(format!(
                "the message on {} has no headers: it was not written by Signet",
                message.subject
            ))
        })?;
        let header = |name: &str| {
            headers
                .get(name)
                .map(|value| value.as_str())
                .ok_or_else(|| corrupt(format!("the message has no {name} header")))
        };
        let actor = decode_header(header(ACTOR_HEADER)?)
            .map_err(|e| corrupt(format!("bad {ACTOR_HEADER} header: {e}")))?;
        let at = header(AT_HEADER)?;
        let at_ms = at
            .parse::<i64>()
            .map_err(|e| corrupt(format!("bad {AT_HEADER} header {at:?}: {e}")))?;
        let payload = message.payload.to_vec();
        if let Err(e) = serde_json::from_slice::<&RawValue>(&payload) {
            return Err(corrupt(format!("the payload is not JSON: {e}")));
        }
        Ok(RecordedEvent {
            seq,
            subject: message.subject.to_string(),
            actor,
            at_ms,
            payload,
        })
    }

    async fn load_snapshot_once(&self) -> Result<Option<Snapshot>, LoadError> {
        let what = || format!("load snapshot from bucket {}", self.bucket);
        let mut object = match self.snapshots.get(SNAPSHOT_OBJECT).await {
            Ok(object) => object,
            Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LoadError::Fail(self.backend(what(), e))),
        };
        let info = object.info().clone();
        let corrupt = |reason: String| EventLogError::Corrupt {
            path: format!(
                "JetStream object store {} object {SNAPSHOT_OBJECT}",
                self.bucket
            ),
            offset: 0,
            reason,
        };
        // The size comes from the object's metadata: do not trust it with a huge allocation.
        let mut data = Vec::with_capacity(info.size.min(64 << 20));
        let read = loop {
            match tokio::time::timeout(READ_IDLE, object.read_buf(&mut data)).await {
                Ok(Ok(0)) => break Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => break Err(e.to_string()),
                Err(_) => break Err(format!("no progress within {READ_IDLE:?}")),
            }
        };
        drop(object);
        if let Err(reason) = read {
            // A save elsewhere may have replaced the object (and purged its chunks) meanwhile.
            return match self.snapshots.info(SNAPSHOT_OBJECT).await {
                Ok(now) if now.nuid != info.nuid => Err(LoadError::Retry(self.backend(
                    what(),
                    format!("the snapshot was replaced while being read: {reason}"),
                ))),
                _ if reason.contains("digest") => Err(LoadError::Fail(corrupt(format!(
                    "object data does not match its SHA-256 digest ({reason})"
                )))),
                _ => Err(LoadError::Fail(self.backend(what(), reason))),
            };
        }
        let meta = |key: &str| {
            info.metadata
                .get(key)
                .ok_or_else(|| corrupt(format!("the snapshot object has no {key} metadata")))
        };
        let seq = meta(SNAPSHOT_SEQ_KEY)?;
        let seq = seq
            .parse::<Seq>()
            .map_err(|e| corrupt(format!("bad {SNAPSHOT_SEQ_KEY} metadata {seq:?}: {e}")))?;
        let size = meta(SNAPSHOT_SIZE_KEY)?;
        if size.parse::<usize>().ok() != Some(data.len()) || info.size != data.len() {
            return Err(LoadError::Fail(corrupt(format!(
                "the snapshot has {} bytes where its metadata says {size} (object size {})",
                data.len(),
                info.size
            ))));
        }
        let stored = meta(SNAPSHOT_CRC_KEY)?;
        let computed = format!("{:08x}", crc32fast::hash(&data));
        if !stored.eq_ignore_ascii_case(&computed) {
            return Err(LoadError::Fail(corrupt(format!(
                "snapshot CRC mismatch (stored {stored}, computed {computed}) over {} bytes",
                data.len()
            ))));
        }
        Ok(Some(Snapshot { seq, data }))
    }
}

enum LoadError {
    /// Worth another attempt: the object changed under the reader.
    Retry(EventLogError),
    Fail(EventLogError),
}

impl From<EventLogError> for LoadError {
    fn from(error: EventLogError) -> Self {
        LoadError::Fail(error)
    }
}

/// Why an ordered consumer could not be opened.
#[derive(Debug)]
struct OpenError {
    message: String,
    /// The stream does not exist (deleted?), as opposed to NATS being unavailable.
    stream_missing: bool,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An ordered consumer being pulled from.
struct Cursor {
    _guard: ConsumerGuard,
    messages: pull::Stream,
    /// Consumer (delivery) sequence of the last message received.
    delivered: u64,
}

/// Deletes an ephemeral consumer when its reader is done (best effort, in the background; the
/// server also removes it after [`CONSUMER_INACTIVE`]).
struct ConsumerGuard {
    stream: stream::Stream<()>,
    name: String,
}

impl Drop for ConsumerGuard {
    fn drop(&mut self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let stream = self.stream.clone();
            let name = std::mem::take(&mut self.name);
            runtime.spawn(async move {
                if let Err(e) = stream.delete_consumer(&name).await {
                    tracing::debug!(consumer = %name, error = %e, "deleting a consumer failed");
                }
            });
        }
    }
}

/// The stream and delivery sequences of a consumer message.
fn sequences(message: &js::Message) -> Result<(Seq, u64), String> {
    let info = message.info().map_err(|e| e.to_string())?;
    Ok((info.stream_sequence, info.consumer_sequence))
}

// ---------------------------------------------------------------------------------------------
// Follow
// ---------------------------------------------------------------------------------------------

/// The state behind one follow stream.
struct Follower {
    shared: Arc<Shared>,
    /// The sequence the stream yields next.
    next: Seq,
    cursor: Option<Cursor>,
    /// Pause before the next attempt after a failure.
    backoff: Duration,
    /// Consecutive attempts that found the stream missing.
    stream_missing: u32,
    /// Connection state changes; `None` once the client is gone for good.
    connected: Option<watch::Receiver<bool>>,
    done: bool,
}

/// Resolves when the client connects again after a disconnection (never if it is gone).
async fn reconnected(connected: &mut Option<watch::Receiver<bool>>) {
    loop {
        let Some(rx) = connected.as_mut() else {
            return std::future::pending().await;
        };
        if rx.changed().await.is_err() {
            *connected = None;
            continue;
        }
        if *rx.borrow_and_update() {
            return;
        }
    }
}

/// What one message (or its absence) means to a follower.
enum Delivery {
    Event(Seq, Box<js::Message>),
    Duplicate,
    Lost(String),
    Broken(String),
}

impl Follower {
    async fn step(mut self) -> Option<(Result<RecordedEvent>, Self)> {
        if self.done {
            return None;
        }
        loop {
            let Some(cursor) = self.cursor.as_mut() else {
                if let Err(error) = self.open().await {
                    self.done = true;
                    return Some((Err(error), self));
                }
                continue;
            };
            let item = tokio::select! {
                biased;
                item = cursor.messages.next() => item,
                () = reconnected(&mut self.connected) => {
                    // A restarted server has lost the consumer: do not wait for heartbeats.
                    tracing::info!(next = self.next,
                        "NATS reconnected; recreating the follower's consumer");
                    self.cursor = None;
                    continue;
                }
            };
            let delivery = match item {
                Some(Ok(message)) => match sequences(&message) {
                    Ok((stream_seq, consumer_seq)) if consumer_seq == cursor.delivered + 1 => {
                        cursor.delivered = consumer_seq;
                        if stream_seq < self.next {
                            Delivery::Duplicate
                        } else {
                            Delivery::Event(stream_seq, Box::new(message))
                        }
                    }
                    Ok((_, consumer_seq)) => Delivery::Lost(format!(
                        "delivery {consumer_seq} after {}",
                        cursor.delivered
                    )),
                    Err(e) => Delivery::Broken(format!("unreadable delivery: {e}")),
                },
                Some(Err(e)) => Delivery::Broken(e.to_string()),
                None => Delivery::Broken("the consumer ended".to_owned()),
            };
            match delivery {
                Delivery::Event(seq, message) => {
                    if seq != self.next {
                        self.done = true;
                        let gap = EventLogError::Gap {
                            expected: self.next,
                            got: seq,
                        };
                        return Some((Err(gap), self));
                    }
                    let event = self.shared.decode(seq, &message);
                    if event.is_ok() {
                        self.next += 1;
                        self.backoff = BACKOFF_MIN;
                    } else {
                        self.done = true;
                    }
                    return Some((event, self));
                }
                Delivery::Duplicate => {
                    tracing::debug!(next = self.next, "follower dropped a redelivered event");
                }
                Delivery::Lost(what) => {
                    tracing::warn!(next = self.next, %what,
                        "follower lost a delivery; recreating its consumer");
                    self.cursor = None;
                }
                Delivery::Broken(error) => {
                    tracing::warn!(next = self.next, %error,
                        "follower's consumer broke (NATS unavailable?); recreating it");
                    self.cursor = None;
                    self.pause().await;
                }
            }
        }
    }

    /// Opens a cursor at `next`, waiting out NATS outages; errors only when the stream is gone
    /// or the client is closed.
    async fn open(&mut self) -> Result<()> {
        loop {
            if !self.shared.wait_connected().await {
                return Err(EventLogError::Closed);
            }
            match self.shared.open_cursor(self.next, FOLLOW_BATCH, true).await {
                Ok(cursor) => {
                    self.stream_missing = 0;
                    self.cursor = Some(cursor);
                    return Ok(());
                }
                Err(error) => {
                    if error.stream_missing {
                        self.stream_missing += 1;
                        if self.stream_missing >= STREAM_MISSING_LIMIT {
                            return Err(self.shared.backend(
                                format!("follow from event {}", self.next),
                                format!(
                                    "the stream is gone ({} attempts in a row): {error}",
                                    self.stream_missing
                                ),
                            ));
                        }
                    } else {
                        self.stream_missing = 0;
                    }
                    tracing::warn!(next = self.next, error = %self.shared.backend("follow", &error),
                        "follower cannot recreate its consumer yet; retrying");
                    self.pause().await;
                }
            }
        }
    }

    async fn pause(&mut self) {
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers
// ---------------------------------------------------------------------------------------------

/// Checks the payload is one JSON value and returns it without surrounding whitespace (what
/// the embedded backend stores too).
fn normalize_payload(payload: &[u8]) -> Result<Vec<u8>> {
    let raw: &RawValue = serde_json::from_slice(payload)
        .map_err(|e| EventLogError::Backend(format!("event payload is not JSON: {e}")))?;
    Ok(raw.get().as_bytes().to_vec())
}

/// Percent-encodes every byte outside visible ASCII, and `%`.
fn encode_header(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (b'!'..=b'~').contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn decode_header(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i} of {value:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|e| format!("not UTF-8 once decoded: {e}"))
}

/// Whether a publish failed on its expected last subject sequence. A single server answers
/// 10071 (which async-nats names); a clustered stream answers 10164, which it does not.
fn is_wrong_last_sequence(e: &js::context::PublishError) -> bool {
    e.kind() == PublishErrorKind::WrongLastSequence
        || std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<js::Error>())
            .is_some_and(|je| je.error_code() == ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT)
}

/// Decodes the `%XX` escapes of a URL's user or password.
fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL(s) with any `user:password@` (or token) replaced by `***@`.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|part| {
            let part = part.trim();
            let (scheme, rest) = match part.find("://") {
                Some(i) => part.split_at(i + 3),
                None => ("", part),
            };
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(authority_end);
            match authority.rfind('@') {
                Some(at) => format!("{scheme}***@{}{tail}", &authority[at + 1..]),
                None => part.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The credential strings of the URL(s), to scrub from messages that might echo them.
fn url_secrets(url: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    for part in url.split(',') {
        let rest = part.find("://").map_or(part, |i| &part[i + 3..]);
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            secrets.push(userinfo.to_owned());
            secrets.extend(
                userinfo
                    .split(':')
                    .filter(|piece| piece.len() >= 4)
                    .map(str::to_owned),
            );
        }
    }
    // Longest first, so a whole `user:password` is replaced before its pieces.
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    secrets.retain(|secret| !secret.is_empty());
    secrets
}

fn scrub(secrets: &[String], message: String) -> String {
    secrets.iter().fold(message, |message, secret| {
        if message.contains(secret.as_str()) {
            message.replace(secret.as_str(), "***")
        } else {
            message
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact_url("nats://alice:s3cret@nats.example:4222"),
            "nats://***@nats.example:4222"
        );
        assert_eq!(
            redact_url("tls://token@a:4222, nats://u:p@b:4222/x"),
            "tls://***@a:4222,nats://***@b:4222/x"
        );
        assert_eq!(redact_url("u:p@host:4222"), "***@host:4222");
        assert_eq!(redact_url("nats://host/path@x"), "nats://host/path@x");
    }

    #[test]
    fn secrets_are_scrubbed() {
        let secrets = url_secrets("nats://alice:s3cret-pw@host:4222,nats://tok3n@other");
        let message = "failed for alice:s3cret-pw and s3cret-pw and tok3n".to_owned();
        let scrubbed = scrub(&secrets, message);
        assert!(!scrubbed.contains("s3cret"), "{scrubbed}");
        assert!(!scrubbed.contains("tok3n"), "{scrubbed}");
        assert!(url_secrets("nats://host:4222").is_empty());
    }

    #[test]
    fn headers_round_trip() {
        for value in [
            "",
            "signet-admin",
            "system",
            "with space",
            "tab\tand\r\nnewline",
            "100%",
            "é 🦀 ünïcödé",
            "%41",
        ] {
            let encoded = encode_header(value);
            assert!(
                encoded.bytes().all(|b| (b'!'..=b'~').contains(&b)),
                "{encoded:?}"
            );
            assert_eq!(decode_header(&encoded).as_deref(), Ok(value));
        }
        assert_eq!(encode_header("signet-admin"), "signet-admin");
        assert!(decode_header("%4").is_err());
        assert!(decode_header("%zz").is_err());
        assert!(decode_header("%FF").is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(is_valid_name("SIGNET_EVENTS"));
        assert!(is_valid_name("signet-test_01"));
        for bad in ["", "A.B", "A B", "A*", "A>", "é"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
        let config = JetStreamConfig {
            replicas: 0,
            ..JetStreamConfig::default()
        };
        assert!(config.validate().is_err());
        assert!(JetStreamConfig::default().validate().is_ok());
        let debug = format!("{:?}", JetStreamConfig::new("nats://a:b@h:1"));
        assert!(!debug.contains("a:b"), "{debug}");
    }

    #[test]
    fn desired_stream_has_no_conflicts() {
        for replicas in [1, 3] {
            let config = JetStreamConfig {
                replicas,
                ..JetStreamConfig::default()
            };
            let desired = desired_stream(&config);
            assert_eq!(desired.num_replicas, replicas);
            assert!(stream_conflicts(&desired, replicas).is_empty());
        }
    }

    #[test]
    fn conflicting_settings_are_listed() {
        let good = stream::Config {
            name: DEFAULT_STREAM.to_owned(),
            subjects: vec![STREAM_SUBJECTS.to_owned()],
            num_replicas: 3,
            discard: DiscardPolicy::New,
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            ..stream::Config::default()
        };
        assert!(stream_conflicts(&good, 3).is_empty());
        // Discard old without limits drops nothing.
        let old_unlimited = stream::Config {
            discard: DiscardPolicy::Old,
            max_messages: -1,
            ..good.clone()
        };
        assert!(stream_conflicts(&old_unlimited, 3).is_empty());

        let bad = stream::Config {
            subjects: vec!["signet.>".to_owned()],
            storage: StorageType::Memory,
            retention: RetentionPolicy::WorkQueue,
            max_age: Duration::from_secs(3600),
            max_messages_per_subject: 1,
            discard: DiscardPolicy::Old,
            max_bytes: 1 << 30,
            deny_delete: false,
            deny_purge: false,
            allow_rollup: true,
            ..good.clone()
        };
        let conflicts = stream_conflicts(&bad, 1).join("; ");
        for word in [
            "subjects",
            "storage",
            "retention",
            "replicas is 3 (expected 1)",
            "max_age",
            "max_msgs_per_subject",
            "discard",
            "deny_delete",
            "deny_purge",
            "rollups",
        ] {
            assert!(conflicts.contains(word), "{word} missing from {conflicts}");
        }
    }

    #[test]
    fn reconnect_delay_is_capped() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), BACKOFF_MIN);
        assert_eq!(reconnect_delay(3), BACKOFF_MIN * 2);
        assert_eq!(reconnect_delay(1000), BACKOFF_MAX);
        assert_eq!(reconnect_delay(usize::MAX), BACKOFF_MAX);
    }
}
