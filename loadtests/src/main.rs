//! `signet-loadtests`: `suite` (the standard load-test suite), `run` (one scenario, one mode),
//! `compare` (throughput on one core against the raw signing rate), `sign` (the raw signing
//! rate on this thread; `compare` runs it pinned), `scale` (1, 2 and 3 issuers behind the
//! local cluster's load balancer).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use signet_jose::Algorithm;
use signet_loadtests::scale::{
    scale_table, ClusterSource, Pinning, DEFAULT_LADDER, DEFAULT_SCENARIOS,
};
use signet_loadtests::suite::{compare_table, suite_table};
use signet_loadtests::{
    run_compare, run_scale, run_suite, CompareOptions, Node, ScaleOptions, Scenario, SuiteOptions,
    Target,
};

#[derive(Parser)]
#[command(name = "signet-loadtests", about = "Load tests for Signet (wrk + Lua)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The standard suite: every scenario closed loop, then open loop at a fraction of it.
    Suite(SuiteArgs),
    /// One scenario in one mode.
    Run {
        #[command(flatten)]
        common: SuiteArgs,
        /// Offered rate (requests per second) for an open-loop run; closed loop without it.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Raw signing rate per core vs. client_credentials throughput on one core.
    Compare(CompareArgs),
    /// Throughput with 1, 2 and 3 issuers behind the local cluster's HAProxy, latency along
    /// an open-loop ladder up to that maximum, and the issuers' memory.
    Scale(ScaleArgs),
    /// Measure the raw signing rate on this thread and print it as JSON (used by `compare`).
    Sign {
        #[arg(long)]
        alg: Algorithm,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
}

#[derive(Args, Clone)]
struct SuiteArgs {
    /// Run against this issuer URL (a node or a load balancer) instead of starting one.
    #[arg(long)]
    target: Option<String>,
    /// The target's admin listener (with --target). The admin client's secret comes from
    /// SIGNET_ADMIN_CLIENT_SECRET (environment only: flags show in `ps`).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    admin_url: String,
    #[arg(long, default_value = "signet-admin")]
    admin_client_id: String,
    /// The signet binary to start (default: target/<profile>/signet beside this one).
    #[arg(long, env = "SIGNET_BIN")]
    signet_bin: Option<PathBuf>,
    /// taskset -c list for the started server (default "0" on 2+ cores).
    #[arg(long)]
    server_cpus: Option<String>,
    /// taskset -c list for wrk (default "1" on 2+ cores when the server is local).
    #[arg(long)]
    client_cpus: Option<String>,
    /// Do not pin anything.
    #[arg(long)]
    no_pin: bool,
    /// Run the started server and wrk at the highest priority (nice -n -20; needs root or
    /// CAP_SYS_NICE) so that other work on a shared machine does not take their cores.
    #[arg(long)]
    boost: bool,
    /// Scenarios, comma-separated (default: the standard suite; the extras are
    /// introspection_reference, login and healthz).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    #[command(flatten)]
    load: LoadArgs,
    /// Open-loop rate as a fraction of the closed-loop throughput.
    #[arg(long, default_value_t = 0.7)]
    open_fraction: f64,
    /// Fixed open-loop rate (requests per second) instead.
    #[arg(long)]
    open_rate: Option<f64>,
    /// The JSON result file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// How long and how wide each wrk run is (`suite`, `run`, `scale`).
#[derive(Args, Clone)]
struct LoadArgs {
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of unrecorded closed-loop warm-up before each closed-loop run.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Connections of a closed-loop run.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Connections of an open-loop run.
    #[arg(long, default_value_t = 64)]
    open_connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// HTTP/1.1 pipelining depth: requests each connection writes at once (1: none, as
    /// most clients). Scenarios that chain requests through answers are never pipelined.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pipeline: u32,
}

#[derive(Args)]
struct CompareArgs {
    #[arg(long, env = "SIGNET_BIN")]
    signet_bin: Option<PathBuf>,
    /// The core for the server and the signing loop.
    #[arg(long, default_value = "0")]
    server_cpu: String,
    /// The core for wrk.
    #[arg(long, default_value = "1")]
    client_cpu: String,
    /// Algorithms, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    algorithms: Vec<Algorithm>,
    #[arg(long, default_value_t = 10)]
    duration: u64,
    #[arg(long, default_value_t = 3)]
    sign_seconds: u64,
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    #[arg(long, default_value_t = 32)]
    connections: u32,
    #[arg(long, default_value_t = 64)]
    open_connections: u32,
    /// HTTP/1.1 pipelining depth (1: none, as most clients).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pipeline: u32,
    #[arg(long, default_value_t = 0.7)]
    open_fraction: f64,
    #[arg(long, default_value = "target/loadtests/compare.json")]
    out: PathBuf,
    /// Leave the server, wrk and the signing loop at normal priority (by default they run
    /// at nice -20 so that other work on a shared machine does not take their cores).
    #[arg(long)]
    no_boost: bool,
}

#[derive(Args)]
struct ScaleArgs {
    /// Measure the running cluster `deploy/local/cluster.sh up` started with
    /// SIGNET_LOCAL_DIR=<dir> (its ports, pid files, admin secret and HAProxy admin socket)
    /// instead of starting one. Its rotation, CPU affinity and scheduling are restored at
    /// the end.
    #[arg(long)]
    cluster_dir: Option<PathBuf>,
    /// Measure a running cluster through this issuer URL (its load balancer) instead of
    /// the address in its cluster.env; its files are in --cluster-dir, else in
    /// $SIGNET_LOCAL_DIR or ${TMPDIR:-/tmp}/signet-local-cluster (cluster.sh's default).
    #[arg(long)]
    target: Option<String>,
    /// With --target: the load balancer's admin listener.
    #[arg(long, requires = "target")]
    admin_url: Option<String>,
    #[arg(long, default_value = "signet-admin")]
    admin_client_id: String,
    /// The signet binary the started cluster runs (default: target/release/signet, beside
    /// this one).
    #[arg(long, env = "SIGNET_BIN")]
    signet_bin: Option<PathBuf>,
    /// The cluster script (default: deploy/local/cluster.sh of this source tree).
    #[arg(long)]
    cluster_script: Option<PathBuf>,
    /// SIGNET_PORT_BASE of the started cluster (it takes base..base+70, base+80 and
    /// base+81); default: a free block between 20000 and 32000.
    #[arg(long)]
    port_base: Option<u16>,
    /// Issuers in rotation, comma-separated, each 1 to 3.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    nodes: Vec<usize>,
    /// Scenarios, comma-separated (default: client_credentials_es256,refresh_token).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Open-loop rates as fractions of each closed-loop maximum, comma-separated (default:
    /// 0.25,0.5,0.7,0.85,0.95).
    #[arg(long, value_delimiter = ',')]
    ladder: Vec<f64>,
    /// taskset -c list for the issuers: one list for all (default "0" on 2+ cores), or one
    /// per issuer separated by '/' (e.g. 0/1/2).
    #[arg(long)]
    server_cpus: Option<String>,
    /// taskset -c list for wrk and HAProxy (default "1" on 2+ cores).
    #[arg(long)]
    client_cpus: Option<String>,
    /// taskset -c list for NATS, Redis, the Sentinels and the key managers (default: the
    /// issuers' cores).
    #[arg(long)]
    backing_cpus: Option<String>,
    /// Do not pin anything.
    #[arg(long)]
    no_pin: bool,
    /// Run the cluster's processes and wrk in the real-time class (chrt -f 1; else their
    /// autogroups at nice -20).
    #[arg(long)]
    boost: bool,
    #[command(flatten)]
    load: LoadArgs,
    /// The JSON result file.
    #[arg(long, default_value = "target/loadtests/scale.json")]
    out: PathBuf,
}

fn scale_options(a: ScaleArgs) -> Result<ScaleOptions> {
    let multi = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    let default = |given: Option<String>, d: &str| given.or_else(|| multi.then(|| d.to_owned()));
    let pinning = if a.no_pin {
        Pinning::default()
    } else {
        let server = default(a.server_cpus, "0");
        let client = default(a.client_cpus, "1");
        Pinning::parse(
            server.as_deref(),
            client.as_deref(),
            a.backing_cpus.as_deref(),
        )
    };
    let dir = a.cluster_dir.or_else(|| {
        a.target
            .as_ref()
            .map(|_| match std::env::var_os("SIGNET_LOCAL_DIR") {
                Some(d) => PathBuf::from(d),
                None => std::env::temp_dir().join("signet-local-cluster"),
            })
    });
    let cluster = match dir {
        Some(dir) => ClusterSource::Existing {
            dir,
            // Else the cluster's own secrets/admin-secret.
            admin_secret: std::env::var("SIGNET_ADMIN_CLIENT_SECRET").ok(),
            issuer: a.target,
            admin: a.admin_url,
        },
        None => ClusterSource::Start {
            signet_bin: a.signet_bin,
            script: a.cluster_script,
            port_base: a.port_base,
            env: Vec::new(),
        },
    };
    Ok(ScaleOptions {
        cluster,
        scenarios: if a.scenarios.is_empty() {
            DEFAULT_SCENARIOS.to_vec()
        } else {
            a.scenarios
        },
        nodes: a.nodes,
        ladder: if a.ladder.is_empty() {
            DEFAULT_LADDER.to_vec()
        } else {
            a.ladder
        },
        pinning,
        boost: a.boost,
        duration: Duration::from_secs(a.load.duration.max(1)),
        warmup: Duration::from_secs(a.load.warmup),
        connections: a.load.connections,
        open_connections: a.load.open_connections,
        threads: a.load.threads,
        pipeline: a.load.pipeline,
        out: a.out,
        admin_client_id: a.admin_client_id,
        ..ScaleOptions::default()
    })
}

fn suite_options(a: &SuiteArgs, command: &str) -> Result<SuiteOptions> {
    let multi = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    let pin = |given: &Option<String>, default: &str, local: bool| -> Option<String> {
        if a.no_pin {
            None
        } else {
            given
                .clone()
                .or_else(|| (multi && local).then(|| default.to_owned()))
        }
    };
    let node = match &a.target {
        Some(issuer) => {
            let secret = std::env::var("SIGNET_ADMIN_CLIENT_SECRET")
                .context("--target needs the admin secret in SIGNET_ADMIN_CLIENT_SECRET")?;
            Node::Remote(Target {
                issuer: issuer.clone(),
                admin: a.admin_url.clone(),
                admin_client_id: a.admin_client_id.clone(),
                admin_secret: secret,
            })
        }
        None => Node::Local {
            signet_bin: a.signet_bin.clone(),
            cpus: pin(&a.server_cpus, "0", true),
        },
    };
    let local = a.target.is_none();
    Ok(SuiteOptions {
        node,
        client_cpus: pin(&a.client_cpus, "1", local),
        scenarios: if a.scenarios.is_empty() {
            Scenario::STANDARD.to_vec()
        } else {
            a.scenarios.clone()
        },
        duration: Duration::from_secs(a.load.duration.max(1)),
        warmup: Duration::from_secs(a.load.warmup),
        connections: a.load.connections,
        open_connections: a.load.open_connections,
        threads: a.load.threads,
        pipeline: a.load.pipeline,
        open_fraction: a.open_fraction,
        open_rate: a.open_rate,
        out: a
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("target/loadtests/{command}.json"))),
        prefix: "signet-lt".into(),
        boost: a.boost,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Suite(a) => {
            let opts = suite_options(&a, "suite")?;
            let report = run_suite(&opts).await?;
            print!("{}", suite_table(&report));
            println!("results: {}", opts.out.display());
        }
        Cmd::Run { common, rate } => {
            if common.scenarios.len() != 1 {
                bail!("`run` takes exactly one --scenarios name");
            }
            let opts = suite_options(&common, "run")?;
            let report = signet_loadtests::suite::run_one(&opts, rate).await?;
            print!("{}", suite_table(&report));
            println!("results: {}", opts.out.display());
        }
        Cmd::Compare(a) => {
            let opts = CompareOptions {
                signet_bin: a.signet_bin,
                server_cpu: a.server_cpu,
                client_cpu: a.client_cpu,
                algorithms: if a.algorithms.is_empty() {
                    Algorithm::ALL.to_vec()
                } else {
                    a.algorithms
                },
                duration: Duration::from_secs(a.duration.max(1)),
                sign_duration: Duration::from_secs(a.sign_seconds.max(1)),
                warmup: Duration::from_secs(a.warmup),
                connections: a.connections,
                open_connections: a.open_connections,
                pipeline: a.pipeline,
                open_fraction: a.open_fraction,
                out: a.out,
                boost: !a.no_boost,
            };
            let report = run_compare(&opts).await?;
            print!("{}", compare_table(&report));
            println!("results: {}", opts.out.display());
        }
        Cmd::Scale(a) => {
            let opts = scale_options(a)?;
            // Ctrl-C drops the run, whose cluster guard then stops the cluster (or restores
            // a running one); wrk, in the same process group, gets the signal too.
            let report = tokio::select! {
                r = run_scale(&opts) => r?,
                _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            };
            print!("{}", scale_table(&report));
            println!("results: {}", opts.out.display());
            let errors = report.errors();
            if errors > 0 {
                eprintln!("scale: {errors} error(s) over the runs (see the errors column)");
            }
        }
        Cmd::Sign { alg, seconds } => {
            let r = signet_loadtests::sign::measure(alg, Duration::from_secs_f64(seconds))?;
            println!("{}", serde_json::to_string(&r)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_depth_is_between_1_and_256() {
        for cmd in ["run", "suite", "compare", "scale"] {
            for bad in ["0", "257", "-1", "x"] {
                let args = ["signet-loadtests", cmd, "--pipeline", bad];
                assert!(Cli::try_parse_from(args).is_err(), "{cmd} --pipeline {bad}");
            }
            let args = ["signet-loadtests", cmd, "--pipeline", "256"];
            assert!(Cli::try_parse_from(args).is_ok(), "{cmd} --pipeline 256");
        }
    }
}
