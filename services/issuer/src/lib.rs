//! Signet's HTTP surface and node wiring: the public OAuth/OIDC endpoints, the admin API,
//! health, and the code that builds a node from its event log and keys.
//!
//! Handlers parse and answer; rules live in `signet-core`; I/O sits behind the `EventLog`
//! trait (and later the store trait). Errors become HTTP responses in one place,
//! [`http::error`].

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod factors;
pub mod http;
pub mod mail;
pub mod node;
pub mod revocations;
pub mod sealer;
pub mod state;
pub mod telemetry;
pub mod users;

pub use config::NodeConfig;
pub use node::{serve, Node};
pub use state::AppState;
