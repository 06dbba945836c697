//! Cross-service integration tests, one binary: each module starts real `signet` processes
//! (see `signet_tests`, the support crate) and acts as a user would.

mod admin_api;
mod admin_cli;
mod api_keys;
mod audit;
mod bad_input;
mod channel_logout;
mod client_credentials;
mod cluster;
mod crash;
mod device;
mod discovery;
mod faults;
mod first_run;
mod high_security;
mod interop;
mod keys;
mod lifecycle;
mod loadtests;
mod logout;
mod model_fields;
mod observability;
mod par;
mod proxies;
mod real_browser;
mod request_objects;
mod resource_indicators;
mod restart;
mod schemathesis;
mod security;
mod sessions;
mod sign_in;
mod username_race;
mod users;
