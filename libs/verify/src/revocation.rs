//! Revocations: the public wire format on NATS (`signet.revocations.<kind>` in the
//! JetStream stream `SIGNET_REVOCATIONS`) and the in-memory set that answers "is this token
//! revoked?" without I/O.
//!
//! Payloads are JSON objects with the revoked identifier, `exp` (when the last token the
//! revocation affects expires anyway: the entry can be dropped then), `issued_before` where
//! it applies (tokens issued at or before it are revoked), and `at` (when it was revoked):
//!
//! | subject | payload |
//! |---|---|
//! | `signet.revocations.token` | `{"jti": "...", "exp": 1700000600, "at": 1700000000}` |
//! | `signet.revocations.family` | `{"family": "...", "exp": ..., "at": ...}` |
//! | `signet.revocations.session` | `{"sid": "...", "exp": ..., "at": ...}` |
//! | `signet.revocations.subject` | `{"sub": "...", "issued_before": ..., "exp": ..., "at": ...}` |
//! | `signet.revocations.client` | `{"client_id": "...", "issued_before": ..., "exp": ..., "at": ...}` |
//! | `signet.revocations.key` | `{"kid": "...", "exp": ..., "at": ...}` |

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The subject prefix of revocation events.
pub const SUBJECT_PREFIX: &str = "signet.revocations";
/// The JetStream stream that keeps them.
pub const STREAM: &str = "SIGNET_REVOCATIONS";

/// What is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// One token, by `jti`.
    Token { jti: String },
    /// A refresh-token family and every token issued from it (`family` claim or record).
    Family { family: String },
    /// A sign-in session and every token issued in it (`sid`).
    Session { sid: String },
    /// Every token of a subject issued at or before `issued_before`.
    Subject { sub: String, issued_before: i64 },
    /// Every token of a client issued at or before `issued_before`.
    Client {
        client_id: String,
        issued_before: i64,
    },
    /// Every token signed by a key (`kid`).
    Key { kid: String },
}

impl Target {
    /// The `<kind>` of the subject.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Token { .. } => "token",
            Target::Family { .. } => "family",
            Target::Session { .. } => "session",
            Target::Subject { .. } => "subject",
            Target::Client { .. } => "client",
            Target::Key { .. } => "key",
        }
    }
}

/// One revocation event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub target: Target,
    /// When the last affected token expires anyway (Unix seconds).
    pub exp: i64,
    /// When it was revoked (Unix seconds).
    pub at: i64,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issued_before: Option<i64>,
    exp: i64,
    at: i64,
}

/// A revocation event that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("subject {0:?} is not signet.revocations.<kind>")]
    Subject(String),
    #[error("payload is not a revocation: {0}")]
    Payload(String),
    #[error("payload lacks {0}")]
    Missing(&'static str),
}

impl Revocation {
    /// `signet.revocations.<kind>`.
    pub fn subject(&self) -> String {
        format!("{SUBJECT_PREFIX}.{}", self.target.kind())
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut w = Wire {
            jti: None,
            family: None,
            sid: None,
            sub: None,
            client_id: None,
            kid: None,
            issued_before: None,
            exp: self.exp,
            at: self.at,
        };
        match &self.target {
            Target::Token { jti } => w.jti = Some(jti.clone()),
            Target::Family { family } => w.family = Some(family.clone()),
            Target::Session { sid } => w.sid = Some(sid.clone()),
            Target::Subject { sub, issued_before } => {
                w.sub = Some(sub.clone());
                w.issued_before = Some(*issued_before);
            }
            Target::Client {
                client_id,
                issued_before,
            } => {
                w.client_id = Some(client_id.clone());
                w.issued_before = Some(*issued_before);
            }
            Target::Key { kid } => w.kid = Some(kid.clone()),
        }
        serde_json::to_vec(&w).unwrap_or_default()
    }

    /// Decodes an event from its subject and payload.
    pub fn from_message(subject: &str, payload: &[u8]) -> Result<Revocation, DecodeError> {
        let kind = subject
            .strip_prefix(SUBJECT_PREFIX)
            .and_then(|k| k.strip_prefix('.'))
            .ok_or_else(|| DecodeError::Subject(subject.chars().take(80).collect()))?;
        let w: Wire =
            serde_json::from_slice(payload).map_err(|e| DecodeError::Payload(e.to_string()))?;
        let target = match kind {
            "token" => Target::Token {
                jti: w.jti.ok_or(DecodeError::Missing("jti"))?,
            },
            "family" => Target::Family {
                family: w.family.ok_or(DecodeError::Missing("family"))?,
            },
            "session" => Target::Session {
                sid: w.sid.ok_or(DecodeError::Missing("sid"))?,
            },
            "subject" => Target::Subject {
                sub: w.sub.ok_or(DecodeError::Missing("sub"))?,
                issued_before: w
                    .issued_before
                    .ok_or(DecodeError::Missing("issued_before"))?,
            },
            "client" => Target::Client {
                client_id: w.client_id.ok_or(DecodeError::Missing("client_id"))?,
                issued_before: w
                    .issued_before
                    .ok_or(DecodeError::Missing("issued_before"))?,
            },
            "key" => Target::Key {
                kid: w.kid.ok_or(DecodeError::Missing("kid"))?,
            },
            other => return Err(DecodeError::Subject(other.chars().take(80).collect())),
        };
        Ok(Revocation {
            target,
            exp: w.exp,
            at: w.at,
        })
    }
}

/// What a token says about itself, for [`RevocationSet::is_revoked`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenFacts<'a> {
    pub jti: Option<&'a str>,
    pub sub: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub sid: Option<&'a str>,
    pub family: Option<&'a str>,
    pub kid: Option<&'a str>,
    /// `iat` (Unix seconds).
    pub iat: i64,
}

#[derive(Debug, Default)]
struct Map<K> {
    /// id → (expiry of the entry, issued_before or i64::MAX for "all").
    entries: HashMap<K, (i64, i64)>,
}

impl Map<Box<str>> {
    fn insert(&mut self, id: &str, exp: i64, issued_before: i64) {
        let e = self
            .entries
            .entry(id.into())
            .or_insert((exp, issued_before));
        e.0 = e.0.max(exp);
        e.1 = e.1.max(issued_before);
    }

    fn hit(&self, id: Option<&str>, iat: i64) -> bool {
        id.and_then(|id| self.entries.get(id))
            .is_some_and(|(_, before)| iat <= *before)
    }

    fn prune(&mut self, now: i64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, (exp, _)| *exp > now);
        before - self.entries.len()
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The revocations in force, in memory: each entry is dropped once the tokens it affects
/// have expired anyway ([`RevocationSet::prune`]). Lookups are a handful of hash probes.
#[derive(Debug, Default)]
pub struct RevocationSet {
    tokens: Map<Box<str>>,
    families: Map<Box<str>>,
    sessions: Map<Box<str>>,
    subjects: Map<Box<str>>,
    clients: Map<Box<str>>,
    keys: Map<Box<str>>,
}

impl RevocationSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a revocation (idempotent; replays are harmless).
    pub fn insert(&mut self, r: &Revocation) {
        const ALL: i64 = i64::MAX;
        match &r.target {
            Target::Token { jti } => self.tokens.insert(jti, r.exp, ALL),
            Target::Family { family } => self.families.insert(family, r.exp, ALL),
            Target::Session { sid } => self.sessions.insert(sid, r.exp, ALL),
            Target::Subject { sub, issued_before } => {
                self.subjects.insert(sub, r.exp, *issued_before)
            }
            Target::Client {
                client_id,
                issued_before,
            } => self.clients.insert(client_id, r.exp, *issued_before),
            Target::Key { kid } => self.keys.insert(kid, r.exp, ALL),
        }
    }

    /// Whether any revocation covers a token with these facts.
    pub fn is_revoked(&self, t: &TokenFacts<'_>) -> bool {
        self.tokens.hit(t.jti, t.iat)
            || self.families.hit(t.family, t.iat)
            || self.sessions.hit(t.sid, t.iat)
            || self.subjects.hit(t.sub, t.iat)
            || self.clients.hit(t.client_id, t.iat)
            || self.keys.hit(t.kid, t.iat)
    }

    /// Drops entries whose tokens have all expired by `now`; returns how many went.
    pub fn prune(&mut self, now: i64) -> usize {
        self.tokens.prune(now)
            + self.families.prune(now)
            + self.sessions.prune(now)
            + self.subjects.prune(now)
            + self.clients.prune(now)
            + self.keys.prune(now)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.tokens.len()
            + self.families.len()
            + self.sessions.len()
            + self.subjects.len()
            + self.clients.len()
            + self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(target: Target) -> Revocation {
        Revocation {
            target,
            exp: 1_000,
            at: 10,
        }
    }

    #[test]
    fn wire_round_trip_for_every_kind() {
        for t in [
            Target::Token { jti: "j".into() },
            Target::Family { family: "f".into() },
            Target::Session { sid: "s".into() },
            Target::Subject {
                sub: "u".into(),
                issued_before: 5,
            },
            Target::Client {
                client_id: "c".into(),
                issued_before: 5,
            },
            Target::Key { kid: "k".into() },
        ] {
            let rev = r(t);
            let back = Revocation::from_message(&rev.subject(), &rev.to_json()).unwrap();
            assert_eq!(back, rev);
        }
        assert!(
            Revocation::from_message("signet.revocations.token", b"{\"exp\":1,\"at\":1}").is_err()
        );
        assert!(Revocation::from_message("other.token", b"{}").is_err());
        assert!(Revocation::from_message("signet.revocations.token", b"nope").is_err());
    }

    #[test]
    fn the_set_matches_what_each_kind_covers_and_forgets_expired_entries() {
        let mut set = RevocationSet::new();
        set.insert(&r(Target::Token { jti: "j1".into() }));
        set.insert(&r(Target::Subject {
            sub: "alice".into(),
            issued_before: 100,
        }));
        let facts = |jti, sub, iat| TokenFacts {
            jti: Some(jti),
            sub: Some(sub),
            iat,
            ..Default::default()
        };
        assert!(set.is_revoked(&facts("j1", "bob", 500)));
        assert!(!set.is_revoked(&facts("j2", "bob", 500)));
        assert!(set.is_revoked(&facts("j2", "alice", 100)));
        assert!(!set.is_revoked(&facts("j2", "alice", 101)), "issued after");
        assert_eq!(set.len(), 2);
        assert_eq!(set.prune(999), 0);
        assert_eq!(set.prune(1_000), 2);
        assert!(set.is_empty());
    }
}
