//! Signet's domain: the configuration model (clients, API resources, API scopes, identity
//! resources), its validation rules, the events that change it, the projection folded from
//! those events, and the OAuth rules that read it.
//!
//! Pure: no I/O, no clocks (callers pass `now`), no HTTP types. Storage and transport live
//! behind the traits of `signet-eventlog` (and later `signet-store`).

#![forbid(unsafe_code)]

pub mod api_key;
pub mod authorize;
pub mod bootstrap;
pub mod client;
pub mod commands;
pub mod device;
pub mod events;
#[cfg(test)]
mod field_coverage;
#[cfg(any(test, feature = "proptest"))]
pub mod fuzz;
pub mod grants;
pub mod identity_provider;
pub mod keys;
pub mod mfa;
pub mod mtls;
pub mod oauth;
pub mod passkey;
pub mod projection;
pub mod redirect_uri;
pub mod registration;
pub mod resource;
pub mod scope;
pub mod secret;
pub mod user;
pub mod validation;

pub use signet_jose::Algorithm;

/// Seconds since the Unix epoch.
pub type UnixTime = i64;
