//! Key administration across a cluster: issuers forward the admin API's rotate, revoke and
//! import to the key managers over NATS request/reply on [`ADMIN_SUBJECT`], and the leading
//! key manager carries them out ([`RemoteKeyAdmin`] on the issuer, [`AdminService`] on the
//! key manager).
//!
//! Routing: only the key manager holding the leader lock subscribes to [`ADMIN_SUBJECT`]
//! (in the queue group [`ADMIN_QUEUE_GROUP`]), and only while it leads; it checks the lock
//! again before acting and answers `{"error":"not_leader"}` when it lost it meanwhile. The
//! client retries "no responders" (no leader right now, e.g. during a hand-over) and
//! `not_leader` with a short backoff until its timeout, never a request that timed out
//! (it may have been carried out).
//!
//! Requests are authenticated like key leases: an HMAC-SHA256 under the cluster secret over
//! every field, a timestamp within 60 s, a nonce never seen before (replay cache). Success
//! replies carry an HMAC over the reply and the request's nonce, so nobody without the
//! secret can make an issuer believe a key was revoked. Error replies carry only a code
//! (and, for `bad_pem`, what is wrong with it), never key material.
//!
//! Request, JSON (absent members omitted):
//! ```json
//! {"issuer": "issuer-1", "op": "rotate" | "revoke" | "import_begin" | "import",
//!  "alg": "ES256", "kid": "es256-...", "handle": "...", "public_key": "...",
//!  "sealed_pem": "...", "timestamp": 1767225600, "nonce": "<32 random bytes>",
//!  "mac": "<HMAC-SHA256(cluster secret, fields)>"}
//! ```
//! Reply: `{"kid": ..., "alg": ..., "handle": ..., "public_key": ..., "mac": ...}` or
//! `{"error": "unauthorized" | "not_leader" | "unknown_key" | "bad_pem" | "retry" |
//! "bad_request" | "failed", "message": ...}`.
//!
//! Importing a PEM key takes two round trips so that the private key never crosses NATS in
//! plaintext and a recorded exchange opens for nobody later (as with leases):
//! 1. `import_begin` {alg}: the leader makes an ephemeral X25519 key, keeps its private half
//!    for 60 s under a random one-time `handle`, and answers {handle, public_key} (MACed);
//! 2. `import` {alg, handle, public_key, sealed_pem}: the issuer makes its own ephemeral
//!    X25519 key and seals the PEM with AES-256-GCM under `HKDF-SHA256(ikm = X25519
//!    shared secret, salt = handle, info = "signet-key-import-v1" | issuer | alg | handle)`,
//!    associated data the same fields; `sealed_pem` is `nonce (12 bytes) || ciphertext ||
//!    tag`, base64url. The leader takes the handle (used once), opens the PEM and imports it.
//!
//! When leadership moved between the two steps the handle is unknown: the answer is
//! `retry`, and the client starts over.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use aws_lc_rs::rand::SystemRandom;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use signet_core::{Algorithm, UnixTime};

use crate::lease::{
    b64url, canonical, fill_random, system_clock, valid_issuer, Clock, ClusterSecret, ReplayCache,
    MAX_CLOCK_SKEW, X25519_LEN,
};
use crate::lock::Leadership;
use crate::{KeyAdmin, KeyError, KeyManager, NewKey};

/// The NATS subject of key administration requests.
pub const ADMIN_SUBJECT: &str = "signet.keys.admin";
/// The queue group the leading key manager answers them in.
pub const ADMIN_QUEUE_GROUP: &str = "signet-keymanagers";

const REQUEST_DOMAIN: &[u8] = b"signet-key-admin-request-v1";
const REPLY_DOMAIN: &[u8] = b"signet-key-admin-reply-v1";
const IMPORT_INFO: &[u8] = b"signet-key-import-v1";
const IMPORT_AAD: &[u8] = b"signet-key-import-aad-v1";
const NONCE_BYTES: usize = 32;
const HANDLE_BYTES: usize = 16;
/// How long an `import_begin` handle stays usable, in seconds.
const IMPORT_WINDOW: UnixTime = 60;
/// Import handles kept at most at once.
const MAX_PENDING_IMPORTS: usize = 32;
/// A PEM larger than this is no signing key (RSA-8192 PKCS#8 is about 6.5 KB).
const MAX_PEM_LEN: usize = 16 * 1024;

/// The operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminOp {
    Rotate,
    Revoke,
    ImportBegin,
    Import,
}

impl AdminOp {
    fn as_str(self) -> &'static str {
        match self {
            AdminOp::Rotate => "rotate",
            AdminOp::Revoke => "revoke",
            AdminOp::ImportBegin => "import_begin",
            AdminOp::Import => "import",
        }
    }
}

/// A key administration request, as sent on [`ADMIN_SUBJECT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminRequest {
    pub issuer: String,
    pub op: AdminOp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<Algorithm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// The requester's ephemeral X25519 public key (`import`), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The PEM sealed to the key manager's ephemeral key (`import`), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_pem: Option<String>,
    pub timestamp: UnixTime,
    pub nonce: String,
    pub mac: String,
}

/// An optional field in MAC input: absent and empty encode differently.
fn opt(v: Option<&str>) -> Vec<u8> {
    match v {
        None => Vec::new(),
        Some(v) => {
            let mut out = Vec::with_capacity(v.len() + 1);
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out
        }
    }
}

impl AdminRequest {
    fn mac_input(&self) -> Vec<u8> {
        let ts = self.timestamp.to_string();
        let fields = [
            self.issuer.as_bytes().to_vec(),
            self.op.as_str().as_bytes().to_vec(),
            opt(self.alg.map(|a| a.as_str())),
            opt(self.kid.as_deref()),
            opt(self.handle.as_deref()),
            opt(self.public_key.as_deref()),
            opt(self.sealed_pem.as_deref()),
            ts.into_bytes(),
            self.nonce.as_bytes().to_vec(),
        ];
        let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        canonical(REQUEST_DOMAIN, &refs)
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<Algorithm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// The key manager's ephemeral X25519 public key (`import_begin`), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// HMAC-SHA256 under the cluster secret of the reply and the request it answers.
    pub mac: String,
}

impl AdminReply {
    fn mac_input(&self, request: &AdminRequest) -> Vec<u8> {
        let fields = [
            request.issuer.as_bytes().to_vec(),
            request.op.as_str().as_bytes().to_vec(),
            request.nonce.as_bytes().to_vec(),
            opt(self.kid.as_deref()),
            opt(self.alg.map(|a| a.as_str())),
            opt(self.handle.as_deref()),
            opt(self.public_key.as_deref()),
        ];
        let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        canonical(REPLY_DOMAIN, &refs)
    }
}

/// A refusal: a code, and for `bad_pem` what is wrong (never the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminError {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn error_body(code: &str, message: Option<String>) -> Vec<u8> {
    serde_json::to_vec(&AdminError {
        error: code.to_owned(),
        message,
    })
    .unwrap_or_else(|_| br#"{"error":"failed"}"#.to_vec())
}

/// Printable ASCII only, bounded: what a client echoes of a remote error.
fn printable(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(max)
        .collect()
}

/// The AES-256-GCM key and associated data that seal one imported PEM.
fn import_key(
    shared: &[u8],
    handle: &[u8],
    issuer: &str,
    alg: Algorithm,
    handle_b64: &str,
) -> Result<(LessSafeKey, Vec<u8>), KeyError> {
    let fields: [&[u8]; 3] = [
        issuer.as_bytes(),
        alg.as_str().as_bytes(),
        handle_b64.as_bytes(),
    ];
    let info = canonical(IMPORT_INFO, &fields);
    let prk = Salt::new(HKDF_SHA256, handle).extract(shared);
    let info_parts = [info.as_slice()];
    let okm = prk
        .expand(&info_parts, &AES_256_GCM)
        .map_err(|_| KeyError::Crypto("HKDF"))?;
    Ok((
        LessSafeKey::new(UnboundKey::from(okm)),
        canonical(IMPORT_AAD, &fields),
    ))
}

fn decode_x25519(b64: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(b64)
        .ok()
        .filter(|k| k.len() == X25519_LEN)
}

fn x25519_keypair() -> Result<(EphemeralPrivateKey, String), KeyError> {
    let private = EphemeralPrivateKey::generate(&X25519, &SystemRandom::new())
        .map_err(|_| KeyError::Crypto("X25519 key generation"))?;
    let public = private
        .compute_public_key()
        .map_err(|_| KeyError::Crypto("X25519 public key"))?;
    Ok((private, b64url(public.as_ref())))
}

// ---------------------------------------------------------------------------------------
// Issuer side

/// The issuer's [`KeyAdmin`]: forwards each operation to the leading key manager.
#[derive(Clone)]
pub struct RemoteKeyAdmin {
    nats: async_nats::Client,
    secret: ClusterSecret,
    issuer_id: String,
    timeout: Duration,
    clock: Clock,
    on_change: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for RemoteKeyAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeyAdmin")
            .field("issuer_id", &self.issuer_id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What the key manager answered.
enum Answer {
    Done(AdminReply),
    Refused {
        code: String,
        message: Option<String>,
    },
}

/// The first wait before asking again when no key manager leads; doubles up to 1 s.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

impl RemoteKeyAdmin {
    /// How long one operation may take, retries included, unless told otherwise (key
    /// generation, the vault and the log are on the key manager's side).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    pub fn new(
        nats: async_nats::Client,
        secret: ClusterSecret,
        issuer_id: impl Into<String>,
    ) -> Self {
        RemoteKeyAdmin {
            nats,
            secret,
            issuer_id: issuer_id.into(),
            timeout: Self::DEFAULT_TIMEOUT,
            clock: system_clock(),
            on_change: None,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to do after every change the key manager made (an issuer renews its key lease
    /// at once, so it holds the new key before its signers need it).
    pub fn on_change(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_change = Some(Arc::new(f));
        self
    }

    fn changed(&self) {
        if let Some(f) = &self.on_change {
            f();
        }
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn request(&self, op: AdminOp) -> Result<AdminRequest, KeyError> {
        if !valid_issuer(&self.issuer_id) {
            return Err(KeyError::Remote(format!(
                "invalid issuer id {:?}: 1 to 128 visible ASCII characters",
                self.issuer_id
            )));
        }
        let mut nonce = [0u8; NONCE_BYTES];
        fill_random(&mut nonce).map_err(KeyError::Crypto)?;
        Ok(AdminRequest {
            issuer: self.issuer_id.clone(),
            op,
            alg: None,
            kid: None,
            handle: None,
            public_key: None,
            sealed_pem: None,
            timestamp: (self.clock)(),
            nonce: b64url(&nonce),
            mac: String::new(),
        })
    }

    /// Sends `template` (fresh timestamp, nonce and MAC on every attempt) until the leader
    /// answers, retrying while no key manager leads, within the timeout.
    async fn call(&self, template: AdminRequest) -> Result<Answer, KeyError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut backoff = RETRY_MIN;
        loop {
            let mut request = self.request(template.op)?;
            request.alg = template.alg;
            request.kid.clone_from(&template.kid);
            request.handle.clone_from(&template.handle);
            request.public_key.clone_from(&template.public_key);
            request.sealed_pem.clone_from(&template.sealed_pem);
            request.mac = self.secret.sign(&request.mac_input());
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(KeyError::Nats(
                    "no key manager leads the cluster (none holds the leader lock)".to_owned(),
                ));
            }
            let body = serde_json::to_vec(&request).map_err(|_| KeyError::Crypto("encode"))?;
            let sent = self
                .nats
                .send_request(
                    ADMIN_SUBJECT,
                    async_nats::Request::new()
                        .payload(body.into())
                        .timeout(Some(left)),
                )
                .await;
            let retry = match sent {
                Ok(reply) => match Self::read(&self.secret, &request, &reply.payload)? {
                    Answer::Refused { code, .. } if code == "not_leader" => true,
                    answer => return Ok(answer),
                },
                Err(e) => match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => true,
                    async_nats::RequestErrorKind::TimedOut => {
                        return Err(KeyError::Nats(
                            "the key manager did not answer in time; the change may or may not have been made".to_owned(),
                        ))
                    }
                    _ => return Err(KeyError::Nats(e.to_string())),
                },
            };
            if retry {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                tokio::time::sleep(backoff.min(left)).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }

    fn read(
        secret: &ClusterSecret,
        request: &AdminRequest,
        raw: &[u8],
    ) -> Result<Answer, KeyError> {
        let malformed = || KeyError::Remote("the key manager's answer is malformed".to_owned());
        let value: serde_json::Value = serde_json::from_slice(raw).map_err(|_| malformed())?;
        if value.get("error").is_some() {
            let e: AdminError = serde_json::from_value(value).map_err(|_| malformed())?;
            return Ok(Answer::Refused {
                code: printable(&e.error, 64),
                message: e.message.map(|m| printable(&m, 300)),
            });
        }
        let reply: AdminReply = serde_json::from_value(value).map_err(|_| malformed())?;
        if !secret.verify(&reply.mac_input(request), &reply.mac) {
            return Err(KeyError::Remote(
                "the answer is not authenticated by the cluster secret (wrong secret, or not from a key manager)".to_owned(),
            ));
        }
        Ok(Answer::Done(reply))
    }

    fn refused(code: String, message: Option<String>, request: &AdminRequest) -> KeyError {
        match code.as_str() {
            "unknown_key" => KeyError::UnknownKey {
                kid: request.kid.clone().unwrap_or_default(),
            },
            "bad_pem" => KeyError::BadPem {
                alg: request.alg.unwrap_or(Algorithm::RS256),
                reason: message.unwrap_or_else(|| "refused".to_owned()),
            },
            "unauthorized" => KeyError::Remote(
                "refused as unauthorized: does this issuer have the key managers' cluster secret, and a clock within 60 s of theirs?".to_owned(),
            ),
            _ => KeyError::Remote(match message {
                Some(m) => format!("{code}: {m}"),
                None => code,
            }),
        }
    }

    fn new_key(reply: AdminReply, alg: Algorithm) -> Result<NewKey, KeyError> {
        match reply.kid {
            Some(kid) => Ok(NewKey {
                kid,
                alg: reply.alg.unwrap_or(alg),
            }),
            None => Err(KeyError::Remote(
                "the key manager's answer names no key".to_owned(),
            )),
        }
    }

    /// One import attempt (`import_begin`, then `import`); `Ok(None)` when the leader asks
    /// to start over.
    async fn import_once(&self, alg: Algorithm, pem: &str) -> Result<Option<NewKey>, KeyError> {
        let mut begin = self.request(AdminOp::ImportBegin)?;
        begin.alg = Some(alg);
        let reply = match self.call(begin.clone()).await? {
            Answer::Done(reply) => reply,
            Answer::Refused { code, .. } if code == "retry" => return Ok(None),
            Answer::Refused { code, message } => return Err(Self::refused(code, message, &begin)),
        };
        let bad = || KeyError::Remote("the key manager's import key is malformed".to_owned());
        let handle_b64 = reply.handle.ok_or_else(bad)?;
        let handle = URL_SAFE_NO_PAD.decode(&handle_b64).map_err(|_| bad())?;
        let peer = reply
            .public_key
            .as_deref()
            .and_then(decode_x25519)
            .ok_or_else(bad)?;
        let (private, public) = x25519_keypair()?;
        let issuer = self.issuer_id.clone();
        let sealed = agree_ephemeral(
            private,
            UnparsedPublicKey::new(&X25519, &peer),
            KeyError::Crypto("X25519 agreement"),
            |shared| {
                let (key, aad) = import_key(shared, &handle, &issuer, alg, &handle_b64)?;
                let mut nonce = [0u8; NONCE_LEN];
                fill_random(&mut nonce).map_err(KeyError::Crypto)?;
                let mut buf = pem.as_bytes().to_vec();
                key.seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    &mut buf,
                )
                .map_err(|_| KeyError::Crypto("AES-GCM seal"))?;
                let mut blob = nonce.to_vec();
                blob.extend_from_slice(&buf);
                Ok(b64url(&blob))
            },
        )?;
        let mut import = self.request(AdminOp::Import)?;
        import.alg = Some(alg);
        import.handle = Some(handle_b64);
        import.public_key = Some(public);
        import.sealed_pem = Some(sealed);
        match self.call(import.clone()).await? {
            Answer::Done(reply) => Self::new_key(reply, alg).map(Some),
            Answer::Refused { code, .. } if code == "retry" => Ok(None),
            Answer::Refused { code, message } => Err(Self::refused(code, message, &import)),
        }
    }
}

#[async_trait]
impl KeyAdmin for RemoteKeyAdmin {
    async fn rotate(&self, alg: Algorithm) -> Result<NewKey, KeyError> {
        let mut request = self.request(AdminOp::Rotate)?;
        request.alg = Some(alg);
        match self.call(request.clone()).await? {
            Answer::Done(reply) => {
                self.changed();
                Self::new_key(reply, alg)
            }
            Answer::Refused { code, message } => Err(Self::refused(code, message, &request)),
        }
    }

    async fn revoke(&self, kid: &str) -> Result<(), KeyError> {
        let mut request = self.request(AdminOp::Revoke)?;
        request.kid = Some(kid.to_owned());
        match self.call(request.clone()).await? {
            Answer::Done(_) => {
                self.changed();
                Ok(())
            }
            Answer::Refused { code, message } => Err(Self::refused(code, message, &request)),
        }
    }

    /// Two round trips; the PEM travels sealed to the leader's one-time X25519 key.
    async fn import_pem(&self, alg: Algorithm, pem: &str) -> Result<NewKey, KeyError> {
        if pem.len() > MAX_PEM_LEN {
            return Err(KeyError::BadPem {
                alg,
                reason: format!("longer than {MAX_PEM_LEN} bytes"),
            });
        }
        for _ in 0..3 {
            if let Some(key) = self.import_once(alg, pem).await? {
                self.changed();
                return Ok(key);
            }
        }
        Err(KeyError::Nats(
            "the leading key manager changed during the import; retry".to_owned(),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Key manager side

struct PendingImport {
    private: EphemeralPrivateKey,
    issuer: String,
    alg: Algorithm,
    until: UnixTime,
}

/// Carries out key administration requests on the leading key manager.
pub struct AdminService {
    manager: Arc<KeyManager>,
    leadership: Leadership,
    secret: ClusterSecret,
    replay: Mutex<ReplayCache>,
    imports: Mutex<HashMap<String, PendingImport>>,
    clock: Clock,
}

impl std::fmt::Debug for AdminService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminService")
            .field("leadership", &self.leadership)
            .finish_non_exhaustive()
    }
}

/// Why a request was refused (logged, never sent).
fn refuse(reason: &str) -> Vec<u8> {
    tracing::warn!(%reason, "refused a key administration request");
    error_body("unauthorized", None)
}

impl AdminService {
    pub fn new(manager: Arc<KeyManager>, leadership: Leadership, secret: ClusterSecret) -> Self {
        AdminService {
            manager,
            leadership,
            secret,
            replay: Mutex::new(ReplayCache::new(10_000)),
            imports: Mutex::new(HashMap::new()),
            clock: system_clock(),
        }
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn verify(&self, raw: &[u8], now: UnixTime) -> Result<AdminRequest, Vec<u8>> {
        let request: AdminRequest =
            serde_json::from_slice(raw).map_err(|_| refuse("not a key administration request"))?;
        if !valid_issuer(&request.issuer) {
            return Err(refuse("issuer id"));
        }
        if !self.secret.verify(&request.mac_input(), &request.mac) {
            return Err(refuse(
                "bad MAC (the requester does not hold the cluster secret)",
            ));
        }
        let skew = request.timestamp.saturating_sub(now);
        if skew.saturating_abs() > MAX_CLOCK_SKEW {
            return Err(refuse(&format!("timestamp {skew} s off")));
        }
        let nonce_ok = URL_SAFE_NO_PAD
            .decode(&request.nonce)
            .is_ok_and(|n| (16..=64).contains(&n.len()));
        if !nonce_ok {
            return Err(refuse("nonce"));
        }
        if !ReplayCache::admit(&self.replay, &request.nonce, request.timestamp, now) {
            return Err(refuse("replayed nonce"));
        }
        Ok(request)
    }

    fn done(&self, request: &AdminRequest, mut reply: AdminReply) -> Vec<u8> {
        reply.mac = self.secret.sign(&reply.mac_input(request));
        serde_json::to_vec(&reply).unwrap_or_else(|_| error_body("failed", None))
    }

    fn key_reply(&self, request: &AdminRequest, key: NewKey) -> Vec<u8> {
        let reply = AdminReply {
            kid: Some(key.kid),
            alg: Some(key.alg),
            handle: None,
            public_key: None,
            mac: String::new(),
        };
        self.done(request, reply)
    }

    fn failed(&self, request: &AdminRequest, error: KeyError) -> Vec<u8> {
        match error {
            KeyError::UnknownKey { .. } => error_body("unknown_key", None),
            KeyError::NotLeader => error_body("not_leader", None),
            KeyError::BadPem { reason, .. } => error_body("bad_pem", Some(reason)),
            error => {
                tracing::error!(%error, op = request.op.as_str(), issuer = %request.issuer, "key administration failed");
                error_body("failed", None)
            }
        }
    }

    /// The reply to one request payload.
    pub async fn answer(&self, raw: &[u8]) -> Vec<u8> {
        let now = (self.clock)();
        let request = match self.verify(raw, now) {
            Ok(r) => r,
            Err(body) => return body,
        };
        if !self.leadership.is_leader() {
            return error_body("not_leader", None);
        }
        let bad_request = |what: &str| error_body("bad_request", Some(what.to_owned()));
        tracing::info!(op = request.op.as_str(), issuer = %request.issuer, alg = ?request.alg, kid = ?request.kid, "key administration request");
        match request.op {
            AdminOp::Rotate => {
                let Some(alg) = request.alg else {
                    return bad_request("alg is required");
                };
                match self.manager.rotate(alg).await {
                    Ok(key) => self.key_reply(&request, key),
                    Err(e) => self.failed(&request, e),
                }
            }
            AdminOp::Revoke => {
                let Some(kid) = request.kid.as_deref() else {
                    return bad_request("kid is required");
                };
                match self.manager.revoke(kid).await {
                    Ok(()) => {
                        let reply = AdminReply {
                            kid: Some(kid.to_owned()),
                            alg: None,
                            handle: None,
                            public_key: None,
                            mac: String::new(),
                        };
                        self.done(&request, reply)
                    }
                    Err(e) => self.failed(&request, e),
                }
            }
            AdminOp::ImportBegin => {
                let Some(alg) = request.alg else {
                    return bad_request("alg is required");
                };
                match self.begin_import(&request.issuer, alg, now) {
                    Ok((handle, public_key)) => {
                        let reply = AdminReply {
                            kid: None,
                            alg: Some(alg),
                            handle: Some(handle),
                            public_key: Some(public_key),
                            mac: String::new(),
                        };
                        self.done(&request, reply)
                    }
                    Err(e) => self.failed(&request, e),
                }
            }
            AdminOp::Import => self.import(&request, now).await,
        }
    }

    fn begin_import(
        &self,
        issuer: &str,
        alg: Algorithm,
        now: UnixTime,
    ) -> Result<(String, String), KeyError> {
        let (private, public) = x25519_keypair()?;
        let mut handle = [0u8; HANDLE_BYTES];
        fill_random(&mut handle).map_err(KeyError::Crypto)?;
        let handle = b64url(&handle);
        let mut imports = self
            .imports
            .lock()
            .map_err(|_| KeyError::Crypto("import state poisoned"))?;
        imports.retain(|_, p| p.until >= now);
        if imports.len() >= MAX_PENDING_IMPORTS {
            let oldest = imports
                .iter()
                .min_by_key(|(_, p)| p.until)
                .map(|(h, _)| h.clone());
            if let Some(h) = oldest {
                imports.remove(&h);
            }
        }
        imports.insert(
            handle.clone(),
            PendingImport {
                private,
                issuer: issuer.to_owned(),
                alg,
                until: now.saturating_add(IMPORT_WINDOW),
            },
        );
        Ok((handle, public))
    }

    async fn import(&self, request: &AdminRequest, now: UnixTime) -> Vec<u8> {
        let (Some(alg), Some(handle_b64), Some(peer), Some(sealed)) = (
            request.alg,
            request.handle.as_deref(),
            request.public_key.as_deref(),
            request.sealed_pem.as_deref(),
        ) else {
            return error_body(
                "bad_request",
                Some("alg, handle, public_key and sealed_pem are required".to_owned()),
            );
        };
        let pending = self
            .imports
            .lock()
            .ok()
            .and_then(|mut imports| imports.remove(handle_b64));
        let Some(pending) =
            pending.filter(|p| p.until >= now && p.issuer == request.issuer && p.alg == alg)
        else {
            // Unknown (another leader began it, or it expired): start over.
            return error_body("retry", None);
        };
        let opened = (|| {
            let bad = || KeyError::Remote("the sealed PEM is malformed".to_owned());
            let peer = decode_x25519(peer).ok_or_else(bad)?;
            let handle = URL_SAFE_NO_PAD.decode(handle_b64).map_err(|_| bad())?;
            let blob = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| bad())?;
            if blob.len() < NONCE_LEN || blob.len() > MAX_PEM_LEN + NONCE_LEN + 16 {
                return Err(bad());
            }
            agree_ephemeral(
                pending.private,
                UnparsedPublicKey::new(&X25519, &peer),
                KeyError::Crypto("X25519 agreement"),
                |shared| {
                    let (key, aad) = import_key(shared, &handle, &request.issuer, alg, handle_b64)?;
                    let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
                    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
                    let mut buf = ciphertext.to_vec();
                    let pem = key
                        .open_in_place(nonce, Aad::from(aad), &mut buf)
                        .map(|plain| String::from_utf8(plain.to_vec()))
                        .map_err(|_| KeyError::Remote("the sealed PEM does not open".to_owned()));
                    buf.fill(0);
                    match pem {
                        Ok(Ok(pem)) => Ok(pem),
                        Ok(Err(e)) => {
                            let mut bytes = e.into_bytes();
                            bytes.fill(0);
                            Err(KeyError::BadPem {
                                alg,
                                reason: "not UTF-8 text".to_owned(),
                            })
                        }
                        Err(e) => Err(e),
                    }
                },
            )
        })();
        let pem = match opened {
            Ok(pem) => pem,
            Err(KeyError::BadPem { reason, .. }) => return error_body("bad_pem", Some(reason)),
            Err(error) => {
                tracing::warn!(%error, issuer = %request.issuer, "refused a key import");
                return error_body("bad_request", Some(error.to_string()));
            }
        };
        let result = self.manager.import_pem(alg, &pem).await;
        let mut pem = pem.into_bytes();
        pem.fill(0);
        match result {
            Ok(key) => self.key_reply(request, key),
            Err(e) => self.failed(request, e),
        }
    }

    /// Answers [`ADMIN_SUBJECT`] while this key manager leads (subscribing when it gains
    /// the lock, unsubscribing when it loses it) until `shutdown` completes.
    pub async fn serve(
        self: Arc<Self>,
        nats: async_nats::Client,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), KeyError> {
        let nats_err = |e: &dyn std::fmt::Display| KeyError::Nats(e.to_string());
        let mut leading = self.leadership.watch();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = leading.wait_for(|l| *l) => if r.is_err() { return Ok(()) },
            }
            let mut subscriber = nats
                .queue_subscribe(ADMIN_SUBJECT, ADMIN_QUEUE_GROUP.to_owned())
                .await
                .map_err(|e| nats_err(&e))?;
            nats.flush().await.map_err(|e| nats_err(&e))?;
            tracing::info!(
                subject = ADMIN_SUBJECT,
                "leading: answering key administration"
            );
            let stop = loop {
                tokio::select! {
                    _ = &mut shutdown => break true,
                    r = leading.changed() => {
                        if r.is_err() {
                            break true;
                        }
                        if !*leading.borrow_and_update() {
                            break false;
                        }
                    }
                    m = subscriber.next() => {
                        let Some(message) = m else { break false };
                        let Some(reply_to) = message.reply else { continue };
                        let body = self.answer(&message.payload).await;
                        if let Err(error) = nats.publish(reply_to, body.into()).await {
                            tracing::warn!(%error, "could not send a key administration reply");
                        }
                    }
                }
            };
            if let Err(error) = subscriber.unsubscribe().await {
                tracing::warn!(%error, "unsubscribing from key administration failed");
            }
            let _ = nats.flush().await;
            tracing::info!("stopped answering key administration");
            if stop {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_cover_every_field_and_absent_differs_from_empty() {
        let base = AdminRequest {
            issuer: "issuer-1".into(),
            op: AdminOp::Revoke,
            alg: None,
            kid: Some("k".into()),
            handle: None,
            public_key: None,
            sealed_pem: None,
            timestamp: 1,
            nonce: "n".into(),
            mac: String::new(),
        };
        let mut empty = base.clone();
        empty.handle = Some(String::new());
        assert_ne!(base.mac_input(), empty.mac_input());
        let mut other = base.clone();
        other.op = AdminOp::Rotate;
        assert_ne!(base.mac_input(), other.mac_input());
        let mut moved = base.clone();
        moved.kid = None;
        moved.handle = Some("k".into());
        assert_ne!(base.mac_input(), moved.mac_input());
    }

    fn shared(private: EphemeralPrivateKey, public_b64: &str) -> Vec<u8> {
        let peer = decode_x25519(public_b64).unwrap();
        agree_ephemeral(private, UnparsedPublicKey::new(&X25519, &peer), (), |s| {
            Ok(s.to_vec())
        })
        .unwrap()
    }

    #[test]
    fn a_pem_sealed_by_the_client_opens_only_with_the_same_handle_issuer_and_alg() {
        let (km_private, km_public) = x25519_keypair().unwrap();
        let (client_private, client_public) = x25519_keypair().unwrap();
        let handle_b64 = b64url(&[7u8; HANDLE_BYTES]);
        let handle = [7u8; HANDLE_BYTES];
        let client_side = shared(client_private, &km_public);
        let km_side = shared(km_private, &client_public);
        assert_eq!(client_side, km_side);

        let nonce = || Nonce::assume_unique_for_key([0u8; NONCE_LEN]);
        let (key, aad) = import_key(
            &client_side,
            &handle,
            "issuer-1",
            Algorithm::ES256,
            &handle_b64,
        )
        .unwrap();
        let mut sealed = b"-----BEGIN PRIVATE KEY-----".to_vec();
        key.seal_in_place_append_tag(nonce(), Aad::from(aad), &mut sealed)
            .unwrap();

        let open = |shared: &[u8], handle_b64: &str, issuer: &str, alg: Algorithm| {
            let (key, aad) = import_key(shared, &handle, issuer, alg, handle_b64).unwrap();
            let mut buf = sealed.clone();
            key.open_in_place(nonce(), Aad::from(aad), &mut buf)
                .map(|p| p.to_vec())
                .ok()
        };
        assert_eq!(
            open(&km_side, &handle_b64, "issuer-1", Algorithm::ES256).unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert!(open(&km_side, &handle_b64, "issuer-2", Algorithm::ES256).is_none());
        assert!(open(&km_side, &handle_b64, "issuer-1", Algorithm::EdDSA).is_none());
        assert!(open(&km_side, "other-handle", "issuer-1", Algorithm::ES256).is_none());
        let (other, _) = x25519_keypair().unwrap();
        let stranger = shared(other, &client_public);
        assert!(open(&stranger, &handle_b64, "issuer-1", Algorithm::ES256).is_none());
    }
}
