//! The key manager: owns Signet's signing keys. It generates them, keeps the private halves
//! sealed under a key-encryption key (KEK), records every key's public lifecycle as events
//! in the configuration log, and hands parsed keys to the code that signs.
//!
//! Must not: put a private key or the KEK in the event log, a log line or an error message.
//! In `signet serve` it runs in-process on files in the data directory; in a cluster it is
//! its own service (`signet keymanager`) leasing keys to issuers over NATS.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod kek;
mod manager;
pub mod vault;

pub use kek::Kek;
pub use manager::{KeyManager, KeyPolicy};
pub use vault::FileVault;

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
    #[error("crypto failure: {0}")]
    Crypto(&'static str),
}
