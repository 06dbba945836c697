//! Revocations at an issuer node: publishing them durably, and the node's in-memory
//! [`RevocationSet`] that the token, userinfo and introspection endpoints consult.
//!
//! - Cluster: the JetStream stream `SIGNET_REVOCATIONS` (subjects `signet.revocations.>`,
//!   kept [`RETENTION`], longer than any token lives). A revocation is answered only once
//!   JetStream acknowledged it; every node (and every subscribed resource server) follows
//!   the stream from its start, so a node that starts late misses nothing.
//! - `serve`: an append-only file `<data-dir>/revocations.jsonl`, fsynced before the
//!   revocation is acknowledged, read back at start (entries past their `exp` are dropped
//!   and the file rewritten).
//!
//! The wire format is `signet_verify::revocation` (public; resource servers decode it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use signet_verify::revocation::{Revocation, RevocationSet, TokenFacts, STREAM, SUBJECT_PREFIX};

/// How long the stream keeps revocations: longer than the longest token lifetime a client
/// may configure by default (30 days for refresh tokens), plus a day.
pub const RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("revocation stream: {0}")]
    Nats(String),
    #[error("revocation file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

enum Sink {
    File {
        path: PathBuf,
        lock: tokio::sync::Mutex<()>,
    },
    JetStream(jetstream::Context),
}

/// The node's revocations.
pub struct Revocations {
    set: RwLock<RevocationSet>,
    sink: Sink,
    /// Whether the set holds every revocation published before this node started (a node
    /// is not ready before: it would accept revoked tokens).
    caught_up: std::sync::atomic::AtomicBool,
}

fn now() -> i64 {
    crate::http::token::now()
}

impl Revocations {
    /// `serve`: the file in the data directory.
    pub async fn open_embedded(data_dir: &Path) -> Result<Arc<Revocations>, RevocationError> {
        let path = data_dir.join("revocations.jsonl");
        let p = path.clone();
        let set = tokio::task::spawn_blocking(move || load_file(&p))
            .await
            .map_err(|e| RevocationError::Io {
                path: path.display().to_string(),
                source: std::io::Error::other(e),
            })??;
        Ok(Arc::new(Revocations {
            set: RwLock::new(set),
            sink: Sink::File {
                path,
                lock: tokio::sync::Mutex::new(()),
            },
            caught_up: std::sync::atomic::AtomicBool::new(true),
        }))
    }

    /// Cluster: makes sure the stream exists (created with `replicas`) and starts empty;
    /// [`Revocations::spawn_follower`] fills the set from the stream.
    pub async fn open_jetstream(
        nats: async_nats::Client,
        replicas: usize,
    ) -> Result<Arc<Revocations>, RevocationError> {
        let js = jetstream::new(nats);
        js.get_or_create_stream(stream::Config {
            name: STREAM.to_owned(),
            description: Some(
                "Signet revocations: signet.revocations.<kind> (token, family, session, subject, client, key)"
                    .to_owned(),
            ),
            subjects: vec![format!("{SUBJECT_PREFIX}.>")],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            discard: stream::DiscardPolicy::Old,
            max_age: RETENTION,
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        })
        .await
        .map_err(|e| RevocationError::Nats(e.to_string()))?;
        Ok(Arc::new(Revocations {
            set: RwLock::new(RevocationSet::new()),
            sink: Sink::JetStream(js),
            caught_up: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Cluster: follows the stream from its first message into the set, for ever
    /// (reconnecting after errors; replays are harmless). Also prunes expired entries.
    pub fn spawn_follower(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let Sink::JetStream(js) = &self.sink else {
            return None;
        };
        let js = js.clone();
        let me = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match follow(&js, &me).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "revocation follower failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }))
    }

    /// Publishes `r` durably, then applies it to this node's set.
    pub async fn revoke(&self, r: Revocation) -> Result<(), RevocationError> {
        match &self.sink {
            Sink::JetStream(js) => {
                js.publish(r.subject(), r.to_json().into())
                    .await
                    .map_err(|e| RevocationError::Nats(e.to_string()))?
                    .await
                    .map_err(|e| RevocationError::Nats(e.to_string()))?;
            }
            Sink::File { path, lock } => {
                let _guard = lock.lock().await;
                let line = file_line(&r);
                let p = path.clone();
                tokio::task::spawn_blocking(move || append_line(&p, &line))
                    .await
                    .map_err(|e| RevocationError::Io {
                        path: path.display().to_string(),
                        source: std::io::Error::other(e),
                    })??;
            }
        }
        metrics::counter!(crate::telemetry::REVOCATIONS, "kind" => r.target.kind()).increment(1);
        self.apply(&r);
        Ok(())
    }

    fn apply(&self, r: &Revocation) {
        if let Ok(mut set) = self.set.write() {
            set.insert(r);
        }
    }

    /// Whether a token with these facts is revoked.
    pub fn is_revoked(&self, facts: &TokenFacts<'_>) -> bool {
        self.set.read().is_ok_and(|s| s.is_revoked(facts))
    }

    /// Whether every revocation published before this node started is in the set.
    pub fn is_caught_up(&self) -> bool {
        self.caught_up.load(std::sync::atomic::Ordering::Acquire)
    }

    fn set_caught_up(&self) {
        self.caught_up
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Entries in the set.
    pub fn len(&self) -> usize {
        self.set.read().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops entries whose tokens have expired.
    pub fn prune(&self) -> usize {
        self.set.write().map(|mut s| s.prune(now())).unwrap_or(0)
    }
}

async fn follow(
    js: &jetstream::Context,
    me: &std::sync::Weak<Revocations>,
) -> Result<(), RevocationError> {
    let err = |e: &dyn std::fmt::Display| RevocationError::Nats(e.to_string());
    let mut stream = js.get_stream(STREAM).await.map_err(|e| err(&e))?;
    let state = stream.info().await.map_err(|e| err(&e))?.state.clone();
    // The newest message outlives the older ones (limits drop the oldest first), so the
    // replay reaches `head` unless the stream is empty.
    let head = state.last_sequence;
    if state.messages == 0 {
        if let Some(me) = me.upgrade() {
            me.set_caught_up();
        }
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| err(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| err(&e))?;
    let mut prune_at = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| err(&e))?;
        let Some(me) = me.upgrade() else {
            return Ok(());
        };
        match Revocation::from_message(m.subject.as_str(), &m.payload) {
            Ok(r) => me.apply(&r),
            Err(e) => tracing::warn!(error = %e, "skipping an undecodable revocation"),
        }
        if !me.is_caught_up() && m.info().is_ok_and(|i| i.stream_sequence >= head) {
            me.set_caught_up();
        }
        if tokio::time::Instant::now() >= prune_at {
            me.prune();
            prune_at = tokio::time::Instant::now() + Duration::from_secs(60);
        }
    }
    Err(RevocationError::Nats(
        "the revocation consumer ended".into(),
    ))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct FileRecord {
    subject: String,
    payload: serde_json::Value,
}

fn file_line(r: &Revocation) -> String {
    let rec = FileRecord {
        subject: r.subject(),
        payload: serde_json::from_slice(&r.to_json()).unwrap_or_default(),
    };
    let mut s = serde_json::to_string(&rec).unwrap_or_default();
    s.push('\n');
    s
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RevocationError + '_ {
    move |source| RevocationError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn append_line(path: &Path, line: &str) -> Result<(), RevocationError> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(line.as_bytes()).map_err(io_err(path))?;
    f.sync_data().map_err(io_err(path))
}

/// Reads the file (a torn last line from a crash is ignored), drops expired entries and
/// rewrites the file with the rest.
fn load_file(path: &Path) -> Result<RevocationSet, RevocationError> {
    let mut set = RevocationSet::new();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(set),
        Err(e) => return Err(io_err(path)(e)),
    };
    let now = now();
    let mut kept = String::new();
    for line in text.lines() {
        let Ok(rec) = serde_json::from_str::<FileRecord>(line) else {
            continue;
        };
        let payload = serde_json::to_vec(&rec.payload).unwrap_or_default();
        let Ok(r) = Revocation::from_message(&rec.subject, &payload) else {
            continue;
        };
        if r.exp > now {
            set.insert(&r);
            kept.push_str(&file_line(&r));
        }
    }
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(&tmp, kept).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use signet_verify::revocation::Target;

    use super::*;

    #[tokio::test]
    async fn embedded_revocations_survive_a_restart_and_expired_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let revs = Revocations::open_embedded(dir.path()).await.unwrap();
        let live = Revocation {
            target: Target::Token { jti: "j1".into() },
            exp: now() + 600,
            at: now(),
        };
        let dead = Revocation {
            target: Target::Token { jti: "j0".into() },
            exp: now() - 1,
            at: now() - 100,
        };
        revs.revoke(live).await.unwrap();
        revs.revoke(dead).await.unwrap();
        let facts = |jti| TokenFacts {
            jti: Some(jti),
            iat: now(),
            ..Default::default()
        };
        assert!(revs.is_revoked(&facts("j1")));
        drop(revs);
        let again = Revocations::open_embedded(dir.path()).await.unwrap();
        assert!(again.is_revoked(&facts("j1")));
        assert!(
            !again.is_revoked(&facts("j0")),
            "expired entries are dropped"
        );
        assert_eq!(again.len(), 1);
    }
}
