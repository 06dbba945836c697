//! Key leases: the wire protocol between issuers and key managers on `signet.keys.lease`
//! (NATS request/reply, key managers in the queue group `signet-keymanagers`), and its
//! cryptography. Everything here is pure (callers pass `now`), so it is unit-tested without
//! a network; [`client`] and [`crate::service`] put it on NATS.
//!
//! Request (issuer → key manager), JSON:
//! ```json
//! {"issuer": "issuer-1", "public_key": "<X25519 public key, base64url>",
//!  "timestamp": 1767225600, "nonce": "<32 random bytes, base64url>",
//!  "mac": "<HMAC-SHA256(cluster secret, request fields), base64url>"}
//! ```
//! Reply (key manager → issuer), JSON:
//! ```json
//! {"public_key": "<the key manager's X25519 public key, base64url>",
//!  "expires_at": 1767226200,
//!  "keys": [{"kid": "es256-...", "alg": "ES256", "sealed": "<base64url>"}],
//!  "mac": "<HMAC-SHA256(cluster secret, reply fields and the request nonce), base64url>"}
//! ```
//! or, for any refused request, `{"error": "unauthorized"}` (never any key material).
//!
//! Each `sealed` is `nonce (12 bytes) || AES-256-GCM ciphertext || tag` of the key's PKCS#8
//! private key, under `HKDF-SHA256(ikm = X25519(ephemeral key manager key, ephemeral issuer
//! key), salt = request nonce, info = "signet-lease-v1" || issuer || kid)`, with associated
//! data `kid | alg | expires_at | issuer`. Both sides use fresh ephemeral keys for every
//! lease, so a recorded reply opens for nobody, and a key manager answers only requests
//! that prove knowledge of the cluster secret, are fresh (timestamp within 60 s) and not
//! replayed (nonce cache). The reply's MAC lets the issuer refuse keys from anyone but a
//! key manager.
//!
//! Every composite input (MAC data, HKDF info, AEAD associated data) is a domain string
//! followed by length-prefixed fields (`u32` big-endian length, then the bytes), so no two
//! distinct field lists encode alike.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};
use signet_core::{Algorithm, UnixTime};
use signet_jose::SigningKey;

use crate::KeyError;

pub mod client;

pub use client::{LeaseClient, LeasedKeys, RenewalHandle};

/// The NATS subject of lease requests.
pub const LEASE_SUBJECT: &str = "signet.keys.lease";
/// The queue group key managers answer leases in (one answer per request).
pub const LEASE_QUEUE_GROUP: &str = "signet-keymanagers";
/// How long a lease lasts unless configured otherwise.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(600);
/// How far a request's timestamp may be from the key manager's clock, in seconds.
pub const MAX_CLOCK_SKEW: i64 = 60;
/// The one error a refused request gets.
pub const UNAUTHORIZED: &str = "unauthorized";
/// The error of a request the key manager could not serve (e.g. its vault failed).
pub const UNAVAILABLE: &str = "unavailable";

const REQUEST_DOMAIN: &[u8] = b"signet-lease-request-v1";
const REPLY_DOMAIN: &[u8] = b"signet-lease-reply-v1";
const HKDF_INFO: &[u8] = b"signet-lease-v1";
const AAD_DOMAIN: &[u8] = b"signet-lease-key-v1";
pub(crate) const X25519_LEN: usize = 32;
const NONCE_BYTES: usize = 32;
const MAX_ISSUER_LEN: usize = 128;

/// The clock leases are judged by: seconds since the Unix epoch. Injected so tests can
/// move time instead of waiting.
pub type Clock = Arc<dyn Fn() -> UnixTime + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    })
}

pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), &'static str> {
    SystemRandom::new().fill(buf).map_err(|_| "no randomness")
}

/// `domain || (u32be len || field)*`: an unambiguous encoding of a field list.
pub(crate) fn canonical(domain: &[u8], fields: &[&[u8]]) -> Vec<u8> {
    let len = domain.len() + fields.iter().map(|f| f.len() + 4).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(domain);
    for f in fields {
        let n = u32::try_from(f.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

// ---------------------------------------------------------------------------------------
// The cluster secret

/// The secret every issuer and key manager of a cluster shares (at least 32 bytes, base64
/// in a file, like the KEK). Issuers prove with it that they may lease keys; key managers
/// prove with it that the keys they hand out are theirs. Debug never prints it.
#[derive(Clone)]
pub struct ClusterSecret {
    key: hmac::Key,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// The minimum length of a cluster secret, in bytes.
    pub const MIN_LEN: usize = 32;

    /// A 32-byte key for another purpose shared by the cluster's nodes, named by `label`
    /// (HMAC-SHA-256 of the label under the secret).
    pub fn derive_key(&self, label: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.key, label);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(KeyError::ClusterSecret(format!(
                "holds {} bytes; at least {} are needed",
                bytes.len(),
                Self::MIN_LEN
            )));
        }
        Ok(ClusterSecret {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        })
    }

    /// From base64 text (standard alphabet; surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::ClusterSecret("not base64".to_owned()))?;
        Self::from_bytes(&bytes)
    }

    /// Reads the secret from `path` (base64 of at least 32 bytes).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let err = |reason: String| KeyError::ClusterSecret(format!("{}: {reason}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::from_base64(&text).map_err(|e| match e {
            KeyError::ClusterSecret(reason) => err(reason),
            other => other,
        })
    }

    /// Reads the secret from `path`; when the file is absent, creates it (mode 0600) from
    /// 32 fresh random bytes. Copy it to every issuer and key manager of the cluster.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        if path.exists() {
            return Self::load(path);
        }
        let err = |reason: String| KeyError::ClusterSecret(format!("{}: {reason}", path.display()));
        let mut bytes = [0u8; 32];
        fill_random(&mut bytes).map_err(KeyError::Crypto)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(path).map_err(|e| err(e.to_string()))?;
        f.write_all(STANDARD.encode(bytes).as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| err(e.to_string()))?;
        tracing::warn!(path = %path.display(), "created a new cluster secret; give every issuer and key manager the same one");
        Self::from_bytes(&bytes)
    }

    pub(crate) fn sign(&self, data: &[u8]) -> String {
        b64url(hmac::sign(&self.key, data).as_ref())
    }

    /// Constant-time check of a base64url MAC.
    pub(crate) fn verify(&self, data: &[u8], mac_b64: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(mac_b64) {
            Ok(tag) => hmac::verify(&self.key, data, &tag).is_ok(),
            Err(_) => false,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Wire types

/// A lease request, as sent on [`LEASE_SUBJECT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// Who asks (an issuer node's id; visible ASCII, at most 128 characters).
    pub issuer: String,
    /// The issuer's ephemeral X25519 public key, base64url.
    pub public_key: String,
    /// When the request was made, Unix seconds.
    pub timestamp: UnixTime,
    /// 32 random bytes, base64url: the replay guard and the HKDF salt.
    pub nonce: String,
    /// HMAC-SHA256 under the cluster secret of the fields above, base64url.
    pub mac: String,
}

impl LeaseRequest {
    fn mac_input(&self) -> Vec<u8> {
        let ts = self.timestamp.to_string();
        canonical(
            REQUEST_DOMAIN,
            &[
                self.issuer.as_bytes(),
                self.public_key.as_bytes(),
                ts.as_bytes(),
                self.nonce.as_bytes(),
            ],
        )
    }
}

/// One leased key in a reply: its private key sealed to the requesting issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedKey {
    pub kid: String,
    pub alg: Algorithm,
    /// base64url of `nonce (12 bytes) || ciphertext || tag`.
    pub sealed: String,
}

/// A granted lease, as sent back to the issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseReply {
    /// The key manager's ephemeral X25519 public key, base64url.
    pub public_key: String,
    /// When the lease ends, Unix seconds.
    pub expires_at: UnixTime,
    pub keys: Vec<SealedKey>,
    /// HMAC-SHA256 under the cluster secret of the reply and the request it answers.
    pub mac: String,
}

impl LeaseReply {
    fn mac_input(&self, request: &LeaseRequest) -> Vec<u8> {
        let exp = self.expires_at.to_string();
        let mut fields: Vec<&[u8]> = vec![
            request.issuer.as_bytes(),
            request.public_key.as_bytes(),
            request.nonce.as_bytes(),
            self.public_key.as_bytes(),
            exp.as_bytes(),
        ];
        for k in &self.keys {
            fields.extend([
                k.kid.as_bytes(),
                k.alg.as_str().as_bytes(),
                k.sealed.as_bytes(),
            ]);
        }
        canonical(REPLY_DOMAIN, &fields)
    }
}

/// A refusal, as sent back: no key material, no reason beyond the error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}

/// The reply for a refused request.
pub fn error_reply(error: &str) -> Vec<u8> {
    serde_json::to_vec(&ErrorReply {
        error: error.to_owned(),
    })
    .unwrap_or_else(|_| br#"{"error":"unavailable"}"#.to_vec())
}

fn hkdf_info(issuer: &str, kid: &str) -> Vec<u8> {
    canonical(HKDF_INFO, &[issuer.as_bytes(), kid.as_bytes()])
}

fn key_aad(kid: &str, alg: Algorithm, expires_at: UnixTime, issuer: &str) -> Vec<u8> {
    let exp = expires_at.to_string();
    canonical(
        AAD_DOMAIN,
        &[
            kid.as_bytes(),
            alg.as_str().as_bytes(),
            exp.as_bytes(),
            issuer.as_bytes(),
        ],
    )
}

/// The AES-256-GCM key for one leased key, from the X25519 shared secret.
fn wrapping_key(shared: &[u8], salt: &[u8], issuer: &str, kid: &str) -> Result<LessSafeKey, ()> {
    let prk = Salt::new(HKDF_SHA256, salt).extract(shared);
    let info = hkdf_info(issuer, kid);
    let info_parts = [info.as_slice()];
    let okm = prk.expand(&info_parts, &AES_256_GCM).map_err(|_| ())?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

pub(crate) fn valid_issuer(issuer: &str) -> bool {
    !issuer.is_empty()
        && issuer.len() <= MAX_ISSUER_LEN
        && issuer.bytes().all(|b| b.is_ascii_graphic())
}

// ---------------------------------------------------------------------------------------
// Issuer side

/// Errors of leasing keys, on the issuer's side. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("no key manager answered the lease request: {0}")]
    Unavailable(String),
    #[error("the key manager refused the lease: {0}")]
    Refused(String),
    #[error("the lease reply is malformed: {0}")]
    Malformed(&'static str),
    #[error("the lease reply is not authenticated by the cluster secret (wrong secret, or not from a key manager)")]
    BadReplyMac,
    #[error("the lease expired at {expires_at} before it arrived")]
    Expired { expires_at: UnixTime },
    #[error("the leased key {kid} does not unseal: altered, or not sealed to this request")]
    Unseal { kid: String },
    #[error("the leased key {kid} is not a valid {alg} private key")]
    KeyMismatch { kid: String, alg: Algorithm },
    #[error("invalid issuer id {0:?}: 1 to 128 visible ASCII characters")]
    InvalidIssuer(String),
    #[error("lease crypto failure: {0}")]
    Crypto(&'static str),
}

/// A lease: the keys an issuer may sign with until `expires_at`.
#[derive(Debug, Clone)]
pub struct Lease {
    pub keys: Vec<Arc<SigningKey>>,
    pub expires_at: UnixTime,
}

/// A request in flight: what the issuer keeps to open the reply. Used once.
pub struct PendingLease {
    private: EphemeralPrivateKey,
    request: LeaseRequest,
}

impl std::fmt::Debug for PendingLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLease")
            .field("issuer", &self.request.issuer)
            .finish_non_exhaustive()
    }
}

impl PendingLease {
    /// A fresh request: new ephemeral X25519 key, random nonce, MAC under `secret`.
    pub fn new(secret: &ClusterSecret, issuer: &str, now: UnixTime) -> Result<Self, LeaseError> {
        if !valid_issuer(issuer) {
            return Err(LeaseError::InvalidIssuer(issuer.to_owned()));
        }
        let rng = SystemRandom::new();
        let private = EphemeralPrivateKey::generate(&X25519, &rng)
            .map_err(|_| LeaseError::Crypto("X25519 key generation"))?;
        let public = private
            .compute_public_key()
            .map_err(|_| LeaseError::Crypto("X25519 public key"))?;
        let mut nonce = [0u8; NONCE_BYTES];
        fill_random(&mut nonce).map_err(LeaseError::Crypto)?;
        let mut request = LeaseRequest {
            issuer: issuer.to_owned(),
            public_key: b64url(public.as_ref()),
            timestamp: now,
            nonce: b64url(&nonce),
            mac: String::new(),
        };
        request.mac = secret.sign(&request.mac_input());
        Ok(PendingLease { private, request })
    }

    pub fn request(&self) -> &LeaseRequest {
        &self.request
    }

    /// The request as JSON, for the wire.
    pub fn request_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.request).unwrap_or_default()
    }

    /// Opens a reply to this request: refuses an error reply, a reply without a valid MAC,
    /// an expired lease, a key that does not unseal and a key that is not of its algorithm.
    pub fn open(
        self,
        secret: &ClusterSecret,
        reply: &[u8],
        now: UnixTime,
    ) -> Result<Lease, LeaseError> {
        let value: serde_json::Value =
            serde_json::from_slice(reply).map_err(|_| LeaseError::Malformed("not JSON"))?;
        if let Some(error) = value.get("error") {
            let error = error.as_str().unwrap_or("unknown error");
            // Only a short, printable code is echoed.
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect();
            return Err(LeaseError::Refused(error));
        }
        let reply: LeaseReply = serde_json::from_value(value)
            .map_err(|_| LeaseError::Malformed("not a lease reply"))?;
        if !secret.verify(&reply.mac_input(&self.request), &reply.mac) {
            return Err(LeaseError::BadReplyMac);
        }
        if reply.expires_at <= now {
            return Err(LeaseError::Expired {
                expires_at: reply.expires_at,
            });
        }
        let mut seen = std::collections::HashSet::new();
        if !reply.keys.iter().all(|k| seen.insert(k.kid.as_str())) {
            return Err(LeaseError::Malformed("a kid appears twice"));
        }
        let peer = URL_SAFE_NO_PAD
            .decode(&reply.public_key)
            .ok()
            .filter(|k| k.len() == X25519_LEN)
            .ok_or(LeaseError::Malformed("the public key is not an X25519 key"))?;
        let salt = URL_SAFE_NO_PAD
            .decode(&self.request.nonce)
            .map_err(|_| LeaseError::Malformed("nonce"))?;
        let issuer = self.request.issuer.as_str();
        let expires_at = reply.expires_at;
        let keys = agree_ephemeral(
            self.private,
            UnparsedPublicKey::new(&X25519, &peer),
            LeaseError::Malformed("the public key is not an X25519 key"),
            |shared| {
                reply
                    .keys
                    .iter()
                    .map(|k| {
                        let unseal = || LeaseError::Unseal { kid: k.kid.clone() };
                        let blob = URL_SAFE_NO_PAD.decode(&k.sealed).map_err(|_| unseal())?;
                        if blob.len() < NONCE_LEN {
                            return Err(unseal());
                        }
                        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
                        let nonce =
                            Nonce::try_assume_unique_for_key(nonce).map_err(|_| unseal())?;
                        let key = wrapping_key(shared, &salt, issuer, &k.kid)
                            .map_err(|_| LeaseError::Crypto("HKDF"))?;
                        let mut buf = ciphertext.to_vec();
                        let aad = key_aad(&k.kid, k.alg, expires_at, issuer);
                        let der = key
                            .open_in_place(nonce, Aad::from(aad), &mut buf)
                            .map_err(|_| unseal())?;
                        let key = SigningKey::from_pkcs8(k.kid.clone(), k.alg, der).map_err(|_| {
                            LeaseError::KeyMismatch {
                                kid: k.kid.clone(),
                                alg: k.alg,
                            }
                        });
                        // Do not leave the plaintext key behind in this buffer.
                        buf.fill(0);
                        key.map(Arc::new)
                    })
                    .collect::<Result<Vec<_>, _>>()
            },
        )?;
        Ok(Lease { keys, expires_at })
    }
}

// ---------------------------------------------------------------------------------------
// Key manager side

/// Why a request was refused (logged by the key manager, never sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("bad MAC (the issuer does not hold the cluster secret)")]
    BadMac,
    #[error("timestamp {skew} s off (more than {MAX_CLOCK_SKEW} s)")]
    Stale { skew: i64 },
    #[error("replayed nonce")]
    Replayed,
}

/// Nonces of accepted requests, kept until their timestamp can no longer pass the skew
/// check; bounded (the oldest are dropped first when full).
#[derive(Debug)]
pub(crate) struct ReplayCache {
    until: HashMap<String, UnixTime>,
    order: VecDeque<(UnixTime, String)>,
    capacity: usize,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> Self {
        ReplayCache {
            until: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Admits a request's nonce once: it is kept until the request's `timestamp` can no
    /// longer pass the skew check. False when it was seen (a replay) or the lock is poisoned.
    pub(crate) fn admit(
        cache: &std::sync::Mutex<ReplayCache>,
        nonce: &str,
        timestamp: UnixTime,
        now: UnixTime,
    ) -> bool {
        let until = timestamp.max(now).saturating_add(MAX_CLOCK_SKEW + 1);
        cache
            .lock()
            .map(|mut c| c.insert(nonce, until, now))
            .unwrap_or(false)
    }

    /// Records `nonce` until `until`; false if it is already there.
    pub(crate) fn insert(&mut self, nonce: &str, until: UnixTime, now: UnixTime) -> bool {
        while let Some((t, _)) = self.order.front() {
            if *t >= now && self.order.len() < self.capacity {
                break;
            }
            if let Some((t, n)) = self.order.pop_front() {
                if self.until.get(&n) == Some(&t) {
                    self.until.remove(&n);
                }
            }
        }
        if self.until.get(nonce).is_some_and(|t| *t >= now) {
            return false;
        }
        self.until.insert(nonce.to_owned(), until);
        self.order.push_back((until, nonce.to_owned()));
        true
    }
}

/// A request that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedRequest {
    request: LeaseRequest,
    peer: Vec<u8>,
    salt: Vec<u8>,
}

impl VerifiedRequest {
    pub fn issuer(&self) -> &str {
        &self.request.issuer
    }
}

/// The key manager's half of the protocol: checks requests and seals replies.
#[derive(Debug)]
pub struct LeaseAuthority {
    secret: ClusterSecret,
    replay: std::sync::Mutex<ReplayCache>,
}

impl LeaseAuthority {
    /// Nonces remembered at most (about 100 bytes each).
    pub const REPLAY_CAPACITY: usize = 100_000;

    pub fn new(secret: ClusterSecret) -> Self {
        LeaseAuthority {
            secret,
            replay: std::sync::Mutex::new(ReplayCache::new(Self::REPLAY_CAPACITY)),
        }
    }

    /// Checks a request: well-formed, MAC under the cluster secret, timestamp within
    /// [`MAX_CLOCK_SKEW`] of `now`, nonce not seen before. Only authenticated requests
    /// reach the replay cache.
    pub fn verify(&self, bytes: &[u8], now: UnixTime) -> Result<VerifiedRequest, Refusal> {
        let request: LeaseRequest =
            serde_json::from_slice(bytes).map_err(|_| Refusal::Malformed("not a lease request"))?;
        if !valid_issuer(&request.issuer) {
            return Err(Refusal::Malformed("issuer id"));
        }
        if !self.secret.verify(&request.mac_input(), &request.mac) {
            return Err(Refusal::BadMac);
        }
        let skew = request.timestamp.saturating_sub(now);
        if skew.saturating_abs() > MAX_CLOCK_SKEW {
            return Err(Refusal::Stale { skew });
        }
        let peer = URL_SAFE_NO_PAD
            .decode(&request.public_key)
            .ok()
            .filter(|k| k.len() == X25519_LEN)
            .ok_or(Refusal::Malformed("public key"))?;
        let salt = URL_SAFE_NO_PAD
            .decode(&request.nonce)
            .ok()
            .filter(|n| (16..=64).contains(&n.len()))
            .ok_or(Refusal::Malformed("nonce"))?;
        if !ReplayCache::admit(&self.replay, &request.nonce, request.timestamp, now) {
            return Err(Refusal::Replayed);
        }
        Ok(VerifiedRequest {
            request,
            peer,
            salt,
        })
    }

    /// Seals `keys` to the requester with a fresh ephemeral key; the lease ends at
    /// `expires_at`.
    pub fn seal(
        &self,
        request: &VerifiedRequest,
        keys: &[Arc<SigningKey>],
        expires_at: UnixTime,
    ) -> Result<LeaseReply, KeyError> {
        let raw: Vec<(&str, Algorithm, &[u8])> = keys
            .iter()
            .map(|k| (k.kid(), k.alg(), k.pkcs8_der()))
            .collect();
        self.seal_raw(request, &raw, expires_at)
    }

    fn seal_raw(
        &self,
        request: &VerifiedRequest,
        keys: &[(&str, Algorithm, &[u8])],
        expires_at: UnixTime,
    ) -> Result<LeaseReply, KeyError> {
        let rng = SystemRandom::new();
        let private = EphemeralPrivateKey::generate(&X25519, &rng)
            .map_err(|_| KeyError::Crypto("X25519 key generation"))?;
        let public = private
            .compute_public_key()
            .map_err(|_| KeyError::Crypto("X25519 public key"))?;
        let issuer = request.request.issuer.as_str();
        let sealed = agree_ephemeral(
            private,
            UnparsedPublicKey::new(&X25519, &request.peer),
            KeyError::Crypto("X25519 agreement (bad issuer public key)"),
            |shared| {
                keys.iter()
                    .map(|&(kid, alg, der)| {
                        let key = wrapping_key(shared, &request.salt, issuer, kid)
                            .map_err(|_| KeyError::Crypto("HKDF"))?;
                        let mut nonce = [0u8; NONCE_LEN];
                        fill_random(&mut nonce).map_err(KeyError::Crypto)?;
                        let mut buf = der.to_vec();
                        key.seal_in_place_append_tag(
                            Nonce::assume_unique_for_key(nonce),
                            Aad::from(key_aad(kid, alg, expires_at, issuer)),
                            &mut buf,
                        )
                        .map_err(|_| KeyError::Crypto("seal failed"))?;
                        let mut blob = Vec::with_capacity(NONCE_LEN + buf.len());
                        blob.extend_from_slice(&nonce);
                        blob.extend_from_slice(&buf);
                        Ok(SealedKey {
                            kid: kid.to_owned(),
                            alg,
                            sealed: b64url(&blob),
                        })
                    })
                    .collect::<Result<Vec<_>, KeyError>>()
            },
        )?;
        let mut reply = LeaseReply {
            public_key: b64url(public.as_ref()),
            expires_at,
            keys: sealed,
            mac: String::new(),
        };
        reply.mac = self.secret.sign(&reply.mac_input(&request.request));
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signet_jose::{generate_pkcs8, verify_compact, JwsSigner};

    const NOW: UnixTime = 1_767_225_600;

    fn secret(byte: u8) -> ClusterSecret {
        ClusterSecret::from_bytes(&[byte; 32]).unwrap()
    }

    fn keys() -> Vec<Arc<SigningKey>> {
        [Algorithm::ES256, Algorithm::EdDSA]
            .into_iter()
            .map(|alg| {
                let kid = format!("{}-test", alg.as_str().to_ascii_lowercase());
                Arc::new(SigningKey::from_pkcs8(kid, alg, &generate_pkcs8(alg).unwrap()).unwrap())
            })
            .collect()
    }

    /// A request, the authority's reply to it, and the keys it sealed.
    fn exchange() -> (
        PendingLease,
        LeaseAuthority,
        LeaseReply,
        Vec<Arc<SigningKey>>,
    ) {
        let authority = LeaseAuthority::new(secret(1));
        let pending = PendingLease::new(&secret(1), "issuer-1", NOW).unwrap();
        let verified = authority.verify(&pending.request_json(), NOW).unwrap();
        let keys = keys();
        let reply = authority.seal(&verified, &keys, NOW + 600).unwrap();
        (pending, authority, reply, keys)
    }

    /// Re-signs a tampered reply, as an attacker holding the cluster secret could: the
    /// AEAD must still refuse it.
    fn remac(reply: &mut LeaseReply, request: &LeaseRequest) {
        reply.mac = secret(1).sign(&reply.mac_input(request));
    }

    #[test]
    fn round_trip_gives_the_keys_that_sign() {
        let (pending, _, reply, keys) = exchange();
        let json = serde_json::to_vec(&reply).unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        // No private key on the wire: neither the DER nor its base64 forms.
        for k in &keys {
            assert!(!text.contains(&b64url(k.pkcs8_der())));
            assert!(!text.contains(&STANDARD.encode(k.pkcs8_der())));
        }
        let lease = pending.open(&secret(1), &json, NOW).unwrap();
        assert_eq!(lease.expires_at, NOW + 600);
        assert_eq!(lease.keys.len(), 2);
        for (got, want) in lease.keys.iter().zip(&keys) {
            assert_eq!(got.public_jwk(), want.public_jwk());
            let token = JwsSigner::new(got.clone(), "at+jwt").sign(b"{}").unwrap();
            verify_compact(&token, |_| Some(want.public_jwk())).unwrap();
        }
    }

    #[test]
    fn request_refusals() {
        let authority = LeaseAuthority::new(secret(1));
        let ok = PendingLease::new(&secret(1), "issuer-1", NOW).unwrap();
        let wrong = PendingLease::new(&secret(2), "issuer-1", NOW).unwrap();
        assert_eq!(
            authority.verify(&wrong.request_json(), NOW).unwrap_err(),
            Refusal::BadMac
        );
        // Altering any field breaks the MAC.
        let mut altered = ok.request().clone();
        altered.issuer = "issuer-2".into();
        assert_eq!(
            authority
                .verify(&serde_json::to_vec(&altered).unwrap(), NOW)
                .unwrap_err(),
            Refusal::BadMac
        );
        let stale = PendingLease::new(&secret(1), "issuer-1", NOW - 61).unwrap();
        assert_eq!(
            authority.verify(&stale.request_json(), NOW).unwrap_err(),
            Refusal::Stale { skew: -61 }
        );
        let future = PendingLease::new(&secret(1), "issuer-1", NOW + 61).unwrap();
        assert!(matches!(
            authority.verify(&future.request_json(), NOW),
            Err(Refusal::Stale { skew: 61 })
        ));
        assert!(authority.verify(b"{}", NOW).is_err());
        assert!(authority.verify(b"not json", NOW).is_err());
        // Accepted once, refused when replayed, even a little later.
        authority.verify(&ok.request_json(), NOW).unwrap();
        assert_eq!(
            authority.verify(&ok.request_json(), NOW + 30).unwrap_err(),
            Refusal::Replayed
        );
        // Within skew at the edge.
        let edge = PendingLease::new(&secret(1), "issuer-1", NOW - 60).unwrap();
        authority.verify(&edge.request_json(), NOW).unwrap();
        assert!(PendingLease::new(&secret(1), "bad issuer", NOW).is_err());
        assert!(PendingLease::new(&secret(1), "", NOW).is_err());
    }

    #[test]
    fn replay_cache_is_bounded_and_forgets_expired_nonces() {
        let mut cache = ReplayCache::new(3);
        assert!(cache.insert("a", 100, 0));
        assert!(!cache.insert("a", 100, 50));
        assert!(cache.insert("b", 100, 0));
        assert!(cache.insert("c", 100, 0));
        assert!(cache.insert("d", 100, 0), "full: the oldest goes");
        assert_eq!(cache.until.len(), 3);
        assert!(cache.insert("a", 100, 0));
        // Past their time, entries are dropped.
        assert!(cache.insert("e", 300, 200));
        assert_eq!(cache.until.len(), 1);
    }

    #[test]
    fn tampered_replies_are_refused() {
        // A flipped byte of `sealed`, with a valid MAC: the AEAD refuses it.
        let (pending, _, mut reply, _) = exchange();
        let mut blob = URL_SAFE_NO_PAD.decode(&reply.keys[0].sealed).unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 1;
        reply.keys[0].sealed = b64url(&blob);
        remac(&mut reply, pending.request());
        let err = pending
            .open(&secret(1), &serde_json::to_vec(&reply).unwrap(), NOW)
            .unwrap_err();
        assert!(
            matches!(err, LeaseError::Unseal { ref kid } if kid == "es256-test"),
            "{err}"
        );

        // Kids swapped between two entries: wrong HKDF key and AAD.
        let (pending, _, mut reply, _) = exchange();
        let (a, b) = (reply.keys[0].kid.clone(), reply.keys[1].kid.clone());
        reply.keys[0].kid = b;
        reply.keys[1].kid = a;
        remac(&mut reply, pending.request());
        let err = pending
            .open(&secret(1), &serde_json::to_vec(&reply).unwrap(), NOW)
            .unwrap_err();
        assert!(matches!(err, LeaseError::Unseal { .. }), "{err}");

        // A later expires_at: the AAD no longer matches.
        let (pending, _, mut reply, _) = exchange();
        reply.expires_at += 3600;
        remac(&mut reply, pending.request());
        let err = pending
            .open(&secret(1), &serde_json::to_vec(&reply).unwrap(), NOW)
            .unwrap_err();
        assert!(matches!(err, LeaseError::Unseal { .. }), "{err}");

        // Without the cluster secret, any change is caught by the MAC first.
        let (pending, _, mut reply, _) = exchange();
        reply.expires_at += 1;
        let err = pending
            .open(&secret(1), &serde_json::to_vec(&reply).unwrap(), NOW)
            .unwrap_err();
        assert!(matches!(err, LeaseError::BadReplyMac), "{err}");

        // A reply from someone with another secret.
        let (pending, _, reply, _) = exchange();
        let err = pending
            .open(&secret(2), &serde_json::to_vec(&reply).unwrap(), NOW)
            .unwrap_err();
        assert!(matches!(err, LeaseError::BadReplyMac), "{err}");

        // A reply to another request (another ephemeral key) does not open.
        let (_, authority, _, keys) = exchange();
        let mine = PendingLease::new(&secret(1), "issuer-1", NOW).unwrap();
        let theirs = PendingLease::new(&secret(1), "issuer-1", NOW).unwrap();
        let verified = authority.verify(&theirs.request_json(), NOW).unwrap();
        let reply = authority.seal(&verified, &keys, NOW + 600).unwrap();
        let err = mine
            .open(&secret(1), &serde_json::to_vec(&reply).unwrap(), NOW)
            .unwrap_err();
        assert!(matches!(err, LeaseError::BadReplyMac), "{err}");

        // An expired lease, and an error reply.
        let (pending, _, reply, _) = exchange();
        let err = pending
            .open(&secret(1), &serde_json::to_vec(&reply).unwrap(), NOW + 600)
            .unwrap_err();
        assert!(matches!(err, LeaseError::Expired { .. }), "{err}");
        let (pending, ..) = exchange();
        let err = pending
            .open(&secret(1), &error_reply(UNAUTHORIZED), NOW)
            .unwrap_err();
        assert!(
            matches!(err, LeaseError::Refused(ref e) if e == "unauthorized"),
            "{err}"
        );
    }

    #[test]
    fn a_key_that_is_not_of_its_claimed_algorithm_is_refused() {
        // An Ed25519 private key sealed under the label ES256 (a bug, or a forgery by a
        // holder of the cluster secret): it unseals, and is refused as the wrong algorithm.
        let authority = LeaseAuthority::new(secret(1));
        let pending = PendingLease::new(&secret(1), "issuer-1", NOW).unwrap();
        let verified = authority.verify(&pending.request_json(), NOW).unwrap();
        let der = generate_pkcs8(Algorithm::EdDSA).unwrap();
        let reply = authority
            .seal_raw(&verified, &[("k1", Algorithm::ES256, &der)], NOW + 600)
            .unwrap();
        let err = pending
            .open(&secret(1), &serde_json::to_vec(&reply).unwrap(), NOW)
            .unwrap_err();
        assert!(
            matches!(err, LeaseError::KeyMismatch { ref kid, alg: Algorithm::ES256 } if kid == "k1"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_checked_and_never_printed() {
        assert!(ClusterSecret::from_bytes(&[0u8; 31]).is_err());
        let s = secret(42);
        assert_eq!(format!("{s:?}"), "ClusterSecret(..)");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster-secret");
        assert!(ClusterSecret::load(&path).is_err());
        ClusterSecret::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        ClusterSecret::load(&path).unwrap();
        std::fs::write(&path, STANDARD.encode([1u8; 16])).unwrap();
        let err = ClusterSecret::load(&path).unwrap_err().to_string();
        assert!(err.contains("holds 16 bytes"), "{err}");
        assert!(err.contains("cluster-secret"), "{err}");
    }
}
