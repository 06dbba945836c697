//! Cross-service integration tests, one binary: each module starts real `signet` processes
//! (see `signet_tests`, the support crate) and acts as a user would.

mod admin_api;
mod admin_cli;
mod bad_input;
mod client_credentials;
mod cluster;
mod discovery;
mod keys;
mod observability;
mod restart;
mod schemathesis;
