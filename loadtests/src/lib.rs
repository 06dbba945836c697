//! Signet's load tests: wrk (Debian's package) with one Lua script for every scenario, in
//! closed-loop and open-loop (constant arrival rate) runs, with latency measured from each
//! request's due time so that coordinated omission is not hidden; and the comparison runner
//! that sets the token endpoint's throughput on one core against the raw signing rate.
//!
//! `cargo run --release -p signet-loadtests -- suite` runs the standard suite against a
//! `signet serve` it starts; `-- compare` runs the comparison; `-- scale` measures 1, 2 and
//! 3 issuers behind the local cluster's load balancer. See `loadtests/RESULTS.md`.

pub mod admin;
pub mod scale;
pub mod scenario;
pub mod server;
pub mod sign;
pub mod stats;
pub mod suite;
pub mod wrk;

pub use scale::{run_scale, ScaleOptions, ScaleReport};
pub use scenario::Scenario;
pub use server::{LocalServer, Target};
pub use stats::{Mode, RunResult};
pub use suite::{run_compare, run_suite, CompareOptions, Node, SuiteOptions, SuiteReport};
