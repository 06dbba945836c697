//! The key manager: owns Signet's signing keys. It generates them, keeps the private halves
//! sealed under a key-encryption key (KEK), records every key's public lifecycle as events
//! in the configuration log, and hands parsed keys to the code that signs.
//!
//! Must not: put a private key or the KEK in the event log, a log line or an error message.
//! In `signet serve` it runs in-process on files in the data directory ([`FileVault`]); in a
//! cluster it is its own service (`signet keymanager`) keeping sealed keys in a JetStream KV
//! bucket ([`KvVault`]) and leasing them to issuers over NATS ([`lease`], [`service`]),
//! each private key sealed to the issuer's ephemeral X25519 key.
//!
//! Keys rotate on the schedule of a [`KeyPolicy`] ([`plan`], [`KeyManager::tick`]), and the
//! admin API rotates, revokes and imports them through [`KeyAdmin`]: the [`KeyManager`]
//! itself in `serve`, [`RemoteKeyAdmin`] on a cluster issuer ([`remote`]). Of several key
//! managers only the holder of the leader lock ([`lock`]) changes keys; all answer leases.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod cluster;
pub mod kek;
pub mod lease;
pub mod lock;
mod manager;
pub mod remote;
pub mod service;
pub mod vault;

pub use admin::{KeyAdmin, NewKey};
pub use kek::{Kek, Sealed};
pub use lease::{
    ClusterSecret, Lease, LeaseClient, LeaseError, LeasedKeys, RenewalHandle, LEASE_QUEUE_GROUP,
    LEASE_SUBJECT,
};
pub use lock::{LeaderLock, LockConfig, LEADER_KEY, LOCK_BUCKET};
pub use manager::{plan, KeyManager, KeyPolicy, Step, MAX_JWKS_MAX_AGE};
pub use remote::{RemoteKeyAdmin, ADMIN_QUEUE_GROUP, ADMIN_SUBJECT};
pub use service::{serve_leases, KeyManagerService, LeaseListener};
pub use vault::{FileVault, KeyVault, KvVault, KvVaultConfig};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("KEK file {path}: {reason}")]
    KekFile { path: String, reason: String },
    #[error("the KEK does not open the stored key {kid}: wrong KEK, or the key file was altered")]
    Unseal { kid: String },
    #[error("stored key {kid} is unreadable: {reason}")]
    BadKeyFile { kid: String, reason: String },
    #[error("the active {alg} key {kid} has no private key in the vault")]
    Missing {
        kid: String,
        alg: signet_core::Algorithm,
    },
    #[error(transparent)]
    Jose(#[from] signet_jose::JoseError),
    #[error(transparent)]
    EventLog(#[from] signet_eventlog::EventLogError),
    #[error("key vault I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("key vault: {0}")]
    Vault(String),
    #[error("cluster secret {0}")]
    ClusterSecret(String),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("configuration log cannot be applied: {0}")]
    Projection(String),
    #[error("crypto failure: {0}")]
    Crypto(&'static str),
    /// No signing key has this kid (never existed, or already removed): a 404.
    #[error("no signing key {kid:?}")]
    UnknownKey { kid: String },
    /// An imported PEM is not a usable private key of the algorithm: a 400. The reason
    /// names the problem, never the key.
    #[error("the PEM is not a usable {alg} private key: {reason}")]
    BadPem {
        alg: signet_core::Algorithm,
        reason: String,
    },
    /// This key manager no longer holds the leader lock; the leader does key changes.
    #[error("this key manager does not lead the cluster (the leader changes keys)")]
    NotLeader,
    #[error("key rotation policy: {0}")]
    Policy(String),
    /// The key manager refused or failed a remote key operation for a reason it does not
    /// share (see its log).
    #[error("the key manager could not do it: {0}")]
    Remote(String),
}
