//! `signet`: one binary, one subcommand per role. Parses flags, environment and the TOML
//! config file into a validated configuration, then calls into the libraries.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod admin;
mod config;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;
use config::{Cli, Command};

/// Exit code for a configuration that cannot be used (sysexits EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// mimalloc instead of glibc's malloc: a request allocates and frees a few dozen small
/// buffers (headers, the form, the claims, the response), and glibc's arenas spent about
/// 9% of a node's CPU on them under load (`loadtests/RESULTS.md`, "What a request costs").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _telemetry = match telemetry::init(cli.log_format, cli.otlp_endpoint.as_deref()) {
        Ok(guard) => guard,
        Err(e) => return config_error(e),
    };
    let file = cli.config.as_deref();
    match cli.command {
        Command::Admin(args) => admin::run(args),
        Command::Serve(args) => with_config(args.resolve(file), |c| run(serve(c))),
        Command::Issuer(args) => with_config(args.resolve(file), |c| run(serve(c))),
        Command::Keymanager(args) => with_config(args.resolve(file), |c| {
            run(async move { Ok(signet_keymanager::cluster::run(c, shutdown_signal()).await?) })
        }),
    }
}

fn config_error(e: anyhow::Error) -> ExitCode {
    eprintln!("signet: invalid configuration: {e:#}");
    ExitCode::from(EXIT_CONFIG)
}

fn with_config<C>(resolved: anyhow::Result<C>, f: impl FnOnce(C) -> ExitCode) -> ExitCode {
    match resolved {
        Ok(c) => f(c),
        Err(e) => config_error(e),
    }
}

/// The blocking pool's threads per core (at least [`MIN_BLOCKING_THREADS`]): `serve`'s
/// embedded stores read there, and files, DNS lookups and password hashing (itself limited
/// to one job per core) run there. Tokio's default of 512 let every concurrent request start
/// a thread of its own: 64 connections of refresh grants on one core kept 65 threads, each
/// with its own allocator heap, about 40 MiB of the node's memory (loadtests/RESULTS.md,
/// issue 21). The reads take microseconds: a few threads per core keep up with them.
const BLOCKING_THREADS_PER_CORE: usize = 4;
const MIN_BLOCKING_THREADS: usize = 8;

/// Runs a role on a multi-threaded runtime; its error is one line on stderr and exit 1.
fn run(role: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads((cores * BLOCKING_THREADS_PER_CORE).max(MIN_BLOCKING_THREADS))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("signet: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(role) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: signet_issuer::NodeConfig) -> anyhow::Result<()> {
    let node = signet_issuer::Node::start(config).await?;
    // The issuer as settled at start (derived from the public address unless configured).
    let issuer = node.state().config.issuer.as_str().to_owned();
    if let Some(secret) = node.generated_admin_secret() {
        println!("Created the bootstrap admin client. This secret is shown once and stored only as a hash:");
        println!(
            "  client_id:     {}",
            signet_core::bootstrap::ADMIN_CLIENT_ID
        );
        println!("  client_secret: {secret}");
        println!("Set SIGNET_ADMIN_CLIENT_SECRET to choose it yourself.");
    }
    let plain = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let (public, admin) = (plain(node.public_addr()), plain(node.admin_addr()));
    tracing::info!(%issuer, %public, %admin, "signet serve is ready");
    node.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
