//! Signet's short-lived shared state: authorization codes, browser sessions, refresh-token
//! families, consents, device codes, reference tokens and rate-limit counters.
//!
//! This crate owns the [`Store`] trait and its backends. It knows nothing of OAuth: values
//! are opaque bytes chosen by the caller, and every entry lives in one [`Namespace`] under a
//! caller-chosen key. Backends: [`embedded::EmbeddedStore`] (one redb file in the data
//! directory) for the all-in-one node, and [`redis::RedisStore`] (a single Redis, Redis
//! behind Sentinel, or a Redis Cluster) for cluster mode. Both pass the one contract suite in
//! `contract` (feature `contract-tests`).
//!
//! # The contract
//!
//! - **Every entry has a TTL.** There is no way to store something forever; a zero TTL is an
//!   error ([`StoreError::InvalidTtl`]). An expired entry is never returned, whether or not
//!   the backend has physically removed it yet.
//! - **One-time values are consumed exactly once.** [`Store::consume`] is an atomic get and
//!   delete: however many tasks or nodes race for one authorization code, exactly one gets
//!   `Some`.
//! - **Indexes.** An entry may be tied to a refresh-token family, a browser session and/or a
//!   subject ([`Index`]), so that logging out, revoking a family or deleting a user removes
//!   everything tied to it ([`Store::delete_by`]). Refresh-token families may themselves be
//!   tied to a session or subject; deleting those deletes the family and, with it, every
//!   entry tied to the family.
//! - **Refresh-token families** rotate one-time ([`Store::rotate`]): presenting the current
//!   token replaces it with a new one and retires the old one; presenting a retired token
//!   again is reuse (RFC 9700 section 4.14.2): the whole family is deleted atomically and
//!   [`Rotation::Reused`] is returned so the caller publishes a family revocation. When N
//!   callers race to rotate one token, exactly one gets [`Rotation::Rotated`], exactly one of
//!   the others (the first to run after the winner) gets [`Rotation::Reused`] and deletes the
//!   family, and the rest get [`Rotation::Unknown`] (the family is gone by then). A racing
//!   duplicate presentation is indistinguishable from a stolen token being replayed, so
//!   strict rotation revokes; there is no grace window.
//! - **Counters** ([`Store::incr`]) are fixed windows: the first increment creates the counter
//!   with the window as its TTL; later increments within the window do not extend it. A
//!   counter is an ordinary entry whose value is the count in ASCII decimal, so
//!   [`Store::get`] reads it and [`Store::delete`] resets it.
//! - **Keys are identifiers, not secrets.** Backends store keys as given (Redis shows them
//!   to anyone with `KEYS`/`MONITOR`); for a bearer secret such as an authorization code or
//!   a refresh token, pass a digest of it (for example base64url SHA-256), never the secret.
//!   Error messages never contain keys or values.
//!
//! # Keys
//! Keys, family ids, session ids and subjects are 1 to [`MAX_KEY_LEN`] bytes of visible
//! ASCII (`!` to `~`) other than `{` and `}` (which would change a Redis Cluster hash slot).
//! Anything else is [`StoreError::InvalidKey`].

#![forbid(unsafe_code)]

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
pub mod embedded;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;

/// The most entries [`Store::entries_by`] returns.
pub const MAX_LISTED: usize = 1_000;

/// The longest key, family id, session id or subject accepted, in bytes.
pub const MAX_KEY_LEN: usize = 512;

/// Where an entry lives. Namespaces are disjoint: the same key in two namespaces is two
/// entries. Refresh-token families have their own space ([`Store::create_family`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Namespace {
    /// Authorization codes (consumed once at the token endpoint).
    AuthorizationCode,
    /// Browser sessions at the authorization server.
    Session,
    /// Remembered consents (subject + client).
    Consent,
    /// Device codes of the device flow (RFC 8628), looked up by the polling client.
    DeviceCode,
    /// User codes of the device flow, looked up when the user types them.
    UserCode,
    /// Reference (opaque) access tokens, looked up by introspection.
    ReferenceToken,
    /// Pushed authorization requests (RFC 9126).
    PushedAuthorizationRequest,
    /// One-time identifiers that must not be replayed (client assertion `jti`, DPoP proofs),
    /// written with [`Store::insert`].
    ReplayGuard,
    /// Rate-limit counters ([`Store::incr`]).
    RateLimit,
    /// Sign-in interactions in progress: an authorization request waiting for the user at
    /// the login or consent page.
    Interaction,
    /// Pairwise subjects (OIDC Core section 8.1) back to the user they stand for, while
    /// tokens carrying them live (userinfo resolves them).
    PairwiseSubject,
    /// Sliding-expiry windows of reusable refresh tokens (renewed at each use; the family
    /// dies when its window runs out).
    SlidingWindow,
}

impl Namespace {
    /// Every namespace.
    pub const ALL: [Namespace; 12] = [
        Namespace::AuthorizationCode,
        Namespace::Session,
        Namespace::Consent,
        Namespace::DeviceCode,
        Namespace::UserCode,
        Namespace::ReferenceToken,
        Namespace::PushedAuthorizationRequest,
        Namespace::ReplayGuard,
        Namespace::RateLimit,
        Namespace::Interaction,
        Namespace::PairwiseSubject,
        Namespace::SlidingWindow,
    ];

    /// The stable name used in storage keys. Never change one: stored entries would vanish.
    pub fn as_str(self) -> &'static str {
        match self {
            Namespace::AuthorizationCode => "code",
            Namespace::Session => "session",
            Namespace::Consent => "consent",
            Namespace::DeviceCode => "device",
            Namespace::UserCode => "user_code",
            Namespace::ReferenceToken => "reftoken",
            Namespace::PushedAuthorizationRequest => "par",
            Namespace::ReplayGuard => "replay",
            Namespace::RateLimit => "ratelimit",
            Namespace::Interaction => "interaction",
            Namespace::PairwiseSubject => "pairwise",
            Namespace::SlidingWindow => "sliding",
        }
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ties an entry to something it must die with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Index<'a> {
    /// A refresh-token family (for example reference access tokens issued from it).
    Family(&'a str),
    /// A browser session (`sid`).
    Session(&'a str),
    /// A subject (`sub`): everything of one user.
    Subject(&'a str),
}

impl Index<'_> {
    /// The id this index points at.
    pub fn id(&self) -> &str {
        match self {
            Index::Family(id) | Index::Session(id) | Index::Subject(id) => id,
        }
    }

    /// `family`, `session` or `subject`.
    pub fn kind(&self) -> &'static str {
        match self {
            Index::Family(_) => "family",
            Index::Session(_) => "session",
            Index::Subject(_) => "subject",
        }
    }
}

/// The outcome of [`Store::rotate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The presented token was the family's current one: it is now retired, and the new
    /// token is current. `old_value` is the value stored with the presented token.
    Rotated { old_value: Vec<u8> },
    /// The presented token had already been rotated away: the whole family (its tokens and
    /// every entry tied to it with [`Index::Family`]) has been deleted. Publish a family
    /// revocation.
    Reused,
    /// No such family, or the family never had this token. Nothing changed (guessing keys
    /// must not let anyone revoke someone else's family).
    Unknown,
}

/// A family's current refresh token, from [`Store::family_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyToken {
    pub key: String,
    pub value: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A key or id breaks the rules in the crate docs. The offending text is not repeated:
    /// it may be a secret.
    #[error("invalid {what}: {reason}")]
    InvalidKey {
        what: &'static str,
        reason: &'static str,
    },
    /// A zero TTL or window: every entry must expire.
    #[error("a TTL must be positive")]
    InvalidTtl,
    /// An argument that is well-formed but not allowed (for example a family tied to a
    /// family, or rotating a token into itself).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// [`Store::create_family`] with an id that is already in use.
    #[error("refresh-token family already exists")]
    FamilyExists,
    /// [`Store::incr`] on an entry whose value is not a counter.
    #[error("the entry is not a counter")]
    NotACounter,
    /// The backend's configuration is wrong (for example an unusable Redis URL).
    #[error("store configuration: {0}")]
    Config(String),
    /// The backend cannot be reached (or did not answer in time).
    #[error("store unreachable: {0}")]
    Unavailable(String),
    /// The backend answered something that cannot be decoded (never treated as a miss).
    #[error("store answer cannot be decoded: {0}")]
    Decode(String),
    /// The stored data is damaged.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Any other backend failure.
    #[error("store backend: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The short-lived state store. Implementations are cheap to share (`Arc<dyn Store>`).
///
/// Every write that changes more than one record is atomic: no reader and no crash ever
/// sees half of it (see each backend's docs for how, and for Redis Cluster's per-slot
/// limits).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores `value` under `key` for `ttl`, replacing any entry there (and its indexes), and
    /// ties it to each of `index`.
    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
        ttl: Duration,
        index: &[Index<'_>],
    ) -> Result<()>;

    /// Stores `value` under `key` for `ttl` only if no live entry is there. Returns whether
    /// it stored it: of N racing inserts of one key, exactly one gets `true`.
    async fn insert(&self, ns: Namespace, key: &str, value: &[u8], ttl: Duration) -> Result<bool>;

    /// The live entry's value.
    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>>;

    /// Atomically reads and deletes the entry: of N racing callers, exactly one gets `Some`.
    async fn consume(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>>;

    /// Deletes the entry; `true` if there was a live one.
    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool>;

    /// Adds one to the fixed-window counter `key` and returns the new count. The first
    /// increment creates the counter with `window` as its TTL; later ones keep that expiry.
    /// [`StoreError::NotACounter`] if the entry holds something other than a count.
    async fn incr(&self, ns: Namespace, key: &str, window: Duration) -> Result<u64>;

    /// Starts a refresh-token family with its first token `token_key` (carrying `value`),
    /// alive for `ttl`, tied to each of `index` (sessions and subjects only).
    /// [`StoreError::FamilyExists`] if the id is taken.
    async fn create_family(
        &self,
        family: &str,
        token_key: &str,
        value: &[u8],
        ttl: Duration,
        index: &[Index<'_>],
    ) -> Result<()>;

    /// The family's current token, if the family is alive.
    async fn family_token(&self, family: &str) -> Result<Option<FamilyToken>>;

    /// One-time rotation: if `presented` is the family's current token, `new_key` (with
    /// `new_value`) becomes current, `presented` is retired, and the family lives `ttl` from
    /// now. See [`Rotation`] for the other outcomes.
    async fn rotate(
        &self,
        family: &str,
        presented: &str,
        new_key: &str,
        new_value: &[u8],
        ttl: Duration,
    ) -> Result<Rotation>;

    /// Deletes a family and every entry tied to it. Returns how many records went: the
    /// family counts one, each entry tied to it one more (0 if there was no such family and
    /// nothing tied to it).
    async fn delete_family(&self, family: &str) -> Result<u64>;

    /// Deletes everything tied to `index`: entries, and for sessions and subjects also
    /// families (with the entries tied to those). Returns how many records went.
    /// `delete_by(Index::Family(id))` deletes only the entries tied to the family; see
    /// [`Store::delete_family`] for the family itself.
    async fn delete_by(&self, index: Index<'_>) -> Result<u64>;

    /// The live entries of namespace `ns` tied to `index`, as `(key, value)` pairs in no
    /// particular order, at most [`MAX_LISTED`] of them. For listing small sets (a user's
    /// sessions, a session's clients); there is no other way to enumerate entries.
    async fn entries_by(&self, index: Index<'_>, ns: Namespace) -> Result<Vec<(String, Vec<u8>)>>;

    /// Checks that the backend answers (readiness). The embedded store always does.
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    /// [`Store::delete_by`] a session.
    async fn delete_by_session(&self, sid: &str) -> Result<u64> {
        self.delete_by(Index::Session(sid)).await
    }

    /// [`Store::delete_by`] a subject.
    async fn delete_by_subject(&self, sub: &str) -> Result<u64> {
        self.delete_by(Index::Subject(sub)).await
    }
}

/// Checks a key, family id, session id or subject against the rules in the crate docs.
pub fn validate_key(what: &'static str, key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        "empty"
    } else if key.len() > MAX_KEY_LEN {
        "longer than 512 bytes"
    } else if !key
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
    {
        "only visible ASCII other than { and } is allowed"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidKey { what, reason })
}

/// Checks every id of `index`.
pub fn validate_index(index: &[Index<'_>]) -> Result<()> {
    for i in index {
        let what = match i {
            Index::Family(_) => "family id",
            Index::Session(_) => "session id",
            Index::Subject(_) => "subject",
        };
        validate_key(what, i.id())?;
    }
    Ok(())
}

/// Checks the arguments of [`Store::create_family`] (both backends): the ids, and that a
/// family is tied only to sessions and subjects, never to another family.
pub fn validate_family(family: &str, token_key: &str, index: &[Index<'_>]) -> Result<()> {
    validate_key("family id", family)?;
    validate_key("token key", token_key)?;
    validate_index(index)?;
    if index.iter().any(|i| matches!(i, Index::Family(_))) {
        return Err(StoreError::InvalidArgument(
            "a family can be tied to sessions and subjects only",
        ));
    }
    Ok(())
}

/// A TTL in whole milliseconds (at least 1), or [`StoreError::InvalidTtl`] for zero.
pub fn ttl_millis(ttl: Duration) -> Result<u64> {
    if ttl.is_zero() {
        return Err(StoreError::InvalidTtl);
    }
    let ms = ttl.as_millis().max(1);
    // Far beyond any lifetime Signet uses; keeps `now + ttl` from overflowing.
    Ok(u64::try_from(ms).unwrap_or(u64::MAX).min(MAX_TTL_MS))
}

/// The longest TTL honoured (about 30 years); longer ones are cut to it.
pub const MAX_TTL_MS: u64 = 1_000 * 60 * 60 * 24 * 365 * 30;

/// The same indexes without repeats, in their given order.
fn dedup_index<'a>(index: &[Index<'a>]) -> Vec<Index<'a>> {
    let mut out: Vec<Index<'a>> = Vec::with_capacity(index.len());
    for i in index {
        if !out.contains(i) {
            out.push(*i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        for good in ["a", "abc-DEF_123.~", "x:y/z=+", &"k".repeat(MAX_KEY_LEN)] {
            assert!(validate_key("key", good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "a b",
            "a\nb",
            "{tag}",
            "a}",
            "é",
            "\u{0}",
            &"k".repeat(MAX_KEY_LEN + 1),
        ] {
            match validate_key("key", bad) {
                Err(StoreError::InvalidKey { what: "key", .. }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn ttls() {
        assert!(matches!(
            ttl_millis(Duration::ZERO),
            Err(StoreError::InvalidTtl)
        ));
        assert_eq!(ttl_millis(Duration::from_nanos(1)).ok(), Some(1));
        assert_eq!(ttl_millis(Duration::from_secs(2)).ok(), Some(2_000));
        assert_eq!(ttl_millis(Duration::MAX).ok(), Some(MAX_TTL_MS));
    }

    #[test]
    fn namespaces_have_distinct_names() {
        let mut names: Vec<_> = Namespace::ALL.iter().map(|n| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Namespace::ALL.len());
        for n in names {
            assert!(validate_key("ns", n).is_ok() && !n.contains(':'));
        }
    }

    #[test]
    fn index_dedup() {
        let d = dedup_index(&[
            Index::Subject("a"),
            Index::Session("a"),
            Index::Subject("a"),
        ]);
        assert_eq!(d, vec![Index::Subject("a"), Index::Session("a")]);
    }
}
