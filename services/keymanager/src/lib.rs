//! The key manager: owns Signet's signing keys. It generates them, keeps the private halves
//! sealed under a key-encryption key (KEK), records every key's public lifecycle as events
//! in the configuration log, and hands parsed keys to the code that signs.
//!
//! Must not: put a private key or the KEK in the event log, a log line or an error message.
//! In `signet serve` it runs in-process on files in the data directory ([`FileVault`]); in a
//! cluster it is its own service (`signet keymanager`) keeping sealed keys in a JetStream KV
//! bucket ([`KvVault`]) and leasing them to issuers over NATS ([`lease`], [`service`]),
//! each private key sealed to the issuer's ephemeral X25519 key.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cluster;
pub mod kek;
pub mod lease;
mod manager;
pub mod service;
pub mod vault;

pub use kek::Kek;
pub use lease::{
    ClusterSecret, Lease, LeaseClient, LeaseError, LeasedKeys, RenewalHandle, LEASE_QUEUE_GROUP,
    LEASE_SUBJECT,
};
pub use manager::{KeyManager, KeyPolicy};
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
}
