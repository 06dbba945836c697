//! The standard suite (`suite`) and the comparison runner (`compare`): start or reach the
//! node, register the fixtures, run wrk per scenario, write the JSON result file, print a
//! table.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use signet_jose::Algorithm;

use crate::admin::Admin;
use crate::scenario::url_parts::Issuer;
use crate::scenario::{Fixtures, Scenario};
use crate::server::{sibling_signet_bin, LocalServer, Target};
use crate::sign::{measure_pinned, SignRate};
use crate::stats::{fmt_us, Mode, RunResult};
use crate::wrk::{self, WrkRun};

/// Where the load goes.
#[derive(Debug, Clone)]
pub enum Node {
    /// Start `signet serve` from this binary (pinned to `cpus` if given).
    Local {
        signet_bin: Option<PathBuf>,
        cpus: Option<String>,
    },
    /// A running node or load balancer.
    Remote(Target),
}

/// Options of `suite`.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub node: Node,
    /// `taskset -c` list for wrk.
    pub client_cpus: Option<String>,
    pub scenarios: Vec<Scenario>,
    /// Each measured run (closed and open), whole seconds.
    pub duration: Duration,
    /// A closed-loop run before each scenario's measurements, not recorded (0: none).
    pub warmup: Duration,
    pub connections: u32,
    pub open_connections: u32,
    pub threads: u32,
    /// HTTP/1.1 pipelining depth of the prepared-request scenarios (1: none).
    pub pipeline: u32,
    /// Open-loop rate as a fraction of the closed-loop throughput just measured...
    pub open_fraction: f64,
    /// ...or this fixed rate (requests per second).
    pub open_rate: Option<f64>,
    pub out: PathBuf,
    /// Name prefix of the registered scopes, resources and clients.
    pub prefix: String,
    /// Run the started server and wrk at the highest priority (`nice -n -20`).
    pub boost: bool,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        SuiteOptions {
            node: Node::Local {
                signet_bin: None,
                cpus: None,
            },
            client_cpus: None,
            scenarios: Scenario::STANDARD.to_vec(),
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            connections: 32,
            open_connections: 64,
            threads: 1,
            pipeline: 1,
            open_fraction: 0.7,
            open_rate: None,
            out: PathBuf::from("target/loadtests/suite.json"),
            prefix: "signet-lt".into(),
            boost: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    /// `/proc/loadavg` when the run started (others' work on a shared machine shows here).
    pub loadavg_at_start: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            loadavg_at_start: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }
}

/// A run plus what the runner saw of the server meanwhile (local node only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measured {
    #[serde(flatten)]
    pub run: RunResult,
    /// Server CPU time / wall time over the run (1.0 = one core busy).
    pub server_cpu: Option<f64>,
    /// Server resident memory after the run, KiB.
    pub server_rss_kib: Option<u64>,
}

/// The JSON result file of `suite`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteReport {
    pub command: String,
    pub tool: String,
    pub machine: Machine,
    pub issuer: String,
    pub local_node: bool,
    pub server_cpus: Option<String>,
    pub client_cpus: Option<String>,
    pub server_rss_kib_at_rest: Option<u64>,
    pub runs: Vec<Measured>,
}

/// The node, up and administered.
struct Prepared {
    local: Option<LocalServer>,
    target: Target,
    issuer: Issuer,
    fixtures: Fixtures,
    /// Mints each run's one-time inputs.
    admin: Admin,
}

async fn prepare(node: &Node, prefix: &str, boost: bool) -> Result<Prepared> {
    let (local, target) = match node {
        Node::Local { signet_bin, cpus } => {
            let bin = match signet_bin {
                Some(b) => b.clone(),
                None => sibling_signet_bin().context("cannot locate the signet binary")?,
            };
            let cpus = cpus.clone();
            let server = tokio::task::spawn_blocking(move || {
                LocalServer::start(&bin, cpus.as_deref(), boost)
            })
            .await??;
            let target = server.target.clone();
            (Some(server), target)
        }
        Node::Remote(t) => (None, t.clone()),
    };
    let admin = Admin::connect(&target).await?;
    let fixtures = admin.setup(prefix).await?;
    admin.check(&fixtures).await?;
    let issuer = Issuer::parse(&target.issuer)?;
    Ok(Prepared {
        local,
        target,
        issuer,
        fixtures,
        admin,
    })
}

struct Runner<'a> {
    p: &'a Prepared,
    client_cpus: Option<String>,
    threads: u32,
    pipeline: u32,
    boost: bool,
}

impl Runner<'_> {
    async fn run(
        &self,
        scenario: Scenario,
        mode: Mode,
        connections: u32,
        duration: Duration,
    ) -> Result<Measured> {
        let fx = &self.p.fixtures;
        let minted = self
            .p
            .admin
            .mint(fx, scenario.needs(connections))
            .await
            .with_context(|| format!("preparing {scenario}"))?;
        let spec = WrkRun {
            url: self.p.issuer.url(scenario.path()),
            workload: scenario.requests(&self.p.issuer, fx, &minted),
            mode,
            connections,
            threads: self.threads,
            pipeline: if scenario.chained() { 1 } else { self.pipeline },
            duration,
            cpus: self.client_cpus.clone(),
            boost: self.boost,
        };
        let cpu_before = self.p.local.as_ref().and_then(|s| s.cpu_time());
        let name = scenario.name();
        let run = tokio::task::spawn_blocking(move || wrk::run(&name, &spec)).await??;
        let local = self.p.local.as_ref();
        // Unknown when threads that ran before exited meanwhile (the sum then shrinks: the
        // blocking pool's threads, e.g. after password hashing, end when idle).
        let server_cpu = match (cpu_before, local.and_then(|s| s.cpu_time())) {
            (Some(a), Some(b)) if run.duration_s > 0.0 => {
                b.checked_sub(a).map(|d| d.as_secs_f64() / run.duration_s)
            }
            _ => None,
        };
        Ok(Measured {
            run,
            server_cpu,
            server_rss_kib: local.and_then(|s| s.rss_kib()),
        })
    }
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs the suite: per scenario a closed-loop run (the maximum throughput) and an open-loop
/// run at `open_fraction` of it (or at `open_rate`). Writes `opts.out`.
pub async fn run_suite(opts: &SuiteOptions) -> Result<SuiteReport> {
    let tool = wrk::check_wrk()?;
    let machine = Machine::probe();
    let p = prepare(&opts.node, &opts.prefix, opts.boost).await?;
    let runner = Runner {
        p: &p,
        client_cpus: opts.client_cpus.clone(),
        threads: opts.threads,
        pipeline: opts.pipeline,
        boost: opts.boost,
    };
    let rss_at_rest = p.local.as_ref().and_then(|s| s.rss_kib());
    let mut runs = Vec::new();
    for &sc in &opts.scenarios {
        if !opts.warmup.is_zero() {
            runner
                .run(sc, Mode::Closed, opts.connections, opts.warmup)
                .await?;
        }
        let closed = runner
            .run(sc, Mode::Closed, opts.connections, opts.duration)
            .await?;
        let rate = opts
            .open_rate
            .unwrap_or(closed.run.ok_throughput * opts.open_fraction)
            .max(1.0);
        runs.push(closed);
        runs.push(
            runner
                .run(
                    sc,
                    Mode::Open { rate },
                    opts.open_connections,
                    opts.duration,
                )
                .await?,
        );
    }
    let report = report(opts, "suite", tool, machine, &p, rss_at_rest, runs);
    write_json(&opts.out, &report)?;
    Ok(report)
}

/// One scenario (the first of `opts.scenarios`), closed loop, or open loop at `rate`.
pub async fn run_one(opts: &SuiteOptions, rate: Option<f64>) -> Result<SuiteReport> {
    let sc = *opts.scenarios.first().context("no scenario given")?;
    let tool = wrk::check_wrk()?;
    let machine = Machine::probe();
    let p = prepare(&opts.node, &opts.prefix, opts.boost).await?;
    let runner = Runner {
        p: &p,
        client_cpus: opts.client_cpus.clone(),
        threads: opts.threads,
        pipeline: opts.pipeline,
        boost: opts.boost,
    };
    let rss_at_rest = p.local.as_ref().and_then(|s| s.rss_kib());
    if !opts.warmup.is_zero() {
        runner
            .run(sc, Mode::Closed, opts.connections, opts.warmup)
            .await?;
    }
    let (mode, conns) = match rate {
        Some(rate) => (Mode::Open { rate }, opts.open_connections),
        None => (Mode::Closed, opts.connections),
    };
    let run = runner.run(sc, mode, conns, opts.duration).await?;
    let report = report(opts, "run", tool, machine, &p, rss_at_rest, vec![run]);
    write_json(&opts.out, &report)?;
    Ok(report)
}

fn report(
    opts: &SuiteOptions,
    command: &str,
    tool: String,
    machine: Machine,
    p: &Prepared,
    rss_at_rest: Option<u64>,
    runs: Vec<Measured>,
) -> SuiteReport {
    SuiteReport {
        command: command.into(),
        tool,
        machine,
        issuer: p.target.issuer.clone(),
        local_node: p.local.is_some(),
        server_cpus: match &opts.node {
            Node::Local { cpus, .. } => cpus.clone(),
            Node::Remote(_) => None,
        },
        client_cpus: opts.client_cpus.clone(),
        server_rss_kib_at_rest: rss_at_rest,
        runs,
    }
}

/// The table `suite` prints.
pub fn suite_table(r: &SuiteReport) -> String {
    let mut out = format!(
        "{} against {} ({}; server cpus {}, wrk cpus {}; {} x {})\n",
        r.tool,
        r.issuer,
        if r.local_node {
            "local serve"
        } else {
            "remote"
        },
        r.server_cpus.as_deref().unwrap_or("any"),
        r.client_cpus.as_deref().unwrap_or("any"),
        r.machine.cpus,
        r.machine.cpu_model,
    );
    out.push_str(&format!(
        "{:<26} {:<14} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6}  {}\n",
        "scenario", "mode", "conns", "req/s", "p50", "p99", "p99.9", "max", "cpu", "errors"
    ));
    for m in &r.runs {
        let run = &m.run;
        out.push_str(&format!(
            "{:<26} {:<14} {:>5} {:>9.0} {:>9} {:>9} {:>9} {:>9} {:>6}  {}\n",
            run.scenario,
            run.mode.label(),
            run.connections,
            run.throughput,
            fmt_us(run.latency.p50_us),
            fmt_us(run.latency.p99_us),
            fmt_us(run.latency.p999_us),
            fmt_us(run.latency.max_us),
            m.server_cpu
                .map(|c| format!("{:.0}%", c * 100.0))
                .unwrap_or_else(|| "-".into()),
            run.error_summary(),
        ));
        if let Some(flows) = run.flow_throughput {
            let names: Vec<&str> = run.steps.iter().map(|s| s.step.as_str()).collect();
            out.push_str(&format!(
                "{:<26} {:<14} {:>5} {:>9.0}  flows/s (a flow: {} requests, {})\n",
                "",
                "",
                "",
                flows,
                names.len(),
                names.join(" + "),
            ));
        }
        if run.steps.len() > 1 {
            for st in &run.steps {
                out.push_str(&format!(
                    "{:<26} {:<14} {:>5} {:>9.0} {:>9} {:>9} {:>9} {:>9} {:>6}  {}\n",
                    format!("  step {}", st.step),
                    "",
                    "",
                    st.ok_throughput,
                    fmt_us(st.latency.p50_us),
                    fmt_us(st.latency.p99_us),
                    fmt_us(st.latency.p999_us),
                    fmt_us(st.latency.max_us),
                    "",
                    if st.failed == 0 {
                        "-".to_owned()
                    } else {
                        st.failed.to_string()
                    },
                ));
            }
        }
    }
    if let Some(rest) = r.server_rss_kib_at_rest {
        let after = r.runs.iter().filter_map(|m| m.server_rss_kib).max();
        out.push_str(&format!(
            "server RSS: {:.1} MiB after the set-up (fixtures and one sign-in, whose argon2id \
             hash takes 19 MiB for a moment), {} at most after a run\n",
            rest as f64 / 1024.0,
            after.map_or("-".into(), |a| format!("{:.1} MiB", a as f64 / 1024.0)),
        ));
    }
    out
}

/// Options of `compare`.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub signet_bin: Option<PathBuf>,
    /// The one core for the server and for the raw signing loop.
    pub server_cpu: String,
    /// The core for wrk.
    pub client_cpu: String,
    pub algorithms: Vec<Algorithm>,
    pub duration: Duration,
    pub sign_duration: Duration,
    pub warmup: Duration,
    pub connections: u32,
    pub open_connections: u32,
    /// HTTP/1.1 pipelining depth (1: none, as most clients).
    pub pipeline: u32,
    /// Open-loop rate as a fraction of the measured maximum (the 70 %).
    pub open_fraction: f64,
    pub out: PathBuf,
    /// Run the server, wrk and the signing loop at the highest priority (`nice -n -20`).
    pub boost: bool,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            signet_bin: None,
            server_cpu: "0".into(),
            client_cpu: "1".into(),
            algorithms: Algorithm::ALL.to_vec(),
            duration: Duration::from_secs(10),
            sign_duration: Duration::from_secs(3),
            warmup: Duration::from_secs(1),
            connections: 32,
            open_connections: 64,
            pipeline: 1,
            open_fraction: 0.7,
            out: PathBuf::from("target/loadtests/compare.json"),
            boost: true,
        }
    }
}

/// The issue-7 targets for one algorithm.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Targets {
    /// Minimum `client_credentials` throughput as a fraction of the raw signing rate.
    pub min_ratio: Option<f64>,
    /// Maximum p99 at `open_fraction` of the maximum throughput, µs.
    pub max_p99_us: Option<f64>,
}

pub fn targets(alg: Algorithm) -> Targets {
    match alg {
        Algorithm::RS256 => Targets {
            min_ratio: Some(0.90),
            max_p99_us: None,
        },
        Algorithm::PS256 => Targets {
            min_ratio: None,
            max_p99_us: None,
        },
        Algorithm::ES256 => Targets {
            min_ratio: Some(0.50),
            max_p99_us: Some(2000.0),
        },
        Algorithm::EdDSA => Targets {
            min_ratio: Some(0.40),
            max_p99_us: Some(2000.0),
        },
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComparisonRow {
    pub alg: String,
    pub sign: SignRate,
    /// Closed loop, server on one core: its maximum.
    pub max: Measured,
    /// Open loop at `open_fraction` of `max`.
    pub open: Measured,
    /// `max.ok_throughput / sign.rate` (wall clock).
    pub ratio: f64,
    /// The same per CPU second: server answers per second of server CPU time over
    /// signatures per second of the signing thread's CPU time. Other processes taking turns
    /// on the core (a shared machine) lower both wall-clock rates, but not these.
    pub ratio_per_cpu: Option<f64>,
    pub targets: Targets,
    pub ratio_met: Option<bool>,
    pub p99_met: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompareReport {
    pub command: String,
    pub tool: String,
    pub machine: Machine,
    pub server_cpu: String,
    pub client_cpu: String,
    /// HTTP/1.1 pipelining depth of wrk's connections (1: none).
    #[serde(default = "crate::stats::one")]
    pub pipeline: u32,
    pub open_fraction: f64,
    pub boost: bool,
    pub rows: Vec<ComparisonRow>,
}

/// (a) raw signing rate per core, (b) `client_credentials` throughput with the server pinned
/// to `server_cpu` and wrk on `client_cpu`, side by side per algorithm; writes `opts.out`.
pub async fn run_compare(opts: &CompareOptions) -> Result<CompareReport> {
    let tool = wrk::check_wrk()?;
    let machine = Machine::probe();
    let node = Node::Local {
        signet_bin: opts.signet_bin.clone(),
        cpus: Some(opts.server_cpu.clone()),
    };
    let p = prepare(&node, "signet-lt", opts.boost).await?;
    let runner = Runner {
        p: &p,
        client_cpus: Some(opts.client_cpu.clone()),
        threads: 1,
        pipeline: opts.pipeline,
        boost: opts.boost,
    };
    let mut rows = Vec::new();
    for &alg in &opts.algorithms {
        let sc = Scenario::ClientCredentials(alg);
        let sign_pinned = || {
            let (d, cpu, boost) = (opts.sign_duration, opts.server_cpu.clone(), opts.boost);
            tokio::task::spawn_blocking(move || measure_pinned(alg, d, Some(&cpu), boost))
        };
        // The signing rate right before and right after the server's maximum, averaged: the
        // machine's speed drifts (other guests, other work), and the two should see the same.
        let before = sign_pinned().await??;
        if !opts.warmup.is_zero() {
            runner
                .run(sc, Mode::Closed, opts.connections, opts.warmup)
                .await?;
        }
        let max = runner
            .run(sc, Mode::Closed, opts.connections, opts.duration)
            .await?;
        let after = sign_pinned().await??;
        let sign = SignRate::mean(&before, &after);
        let rate = (max.run.ok_throughput * opts.open_fraction).max(1.0);
        let open = runner
            .run(
                sc,
                Mode::Open { rate },
                opts.open_connections,
                opts.duration,
            )
            .await?;
        let ratio = max.run.ok_throughput / sign.rate;
        let ratio_per_cpu = match (max.server_cpu, sign.rate_per_cpu_second) {
            (Some(c), Some(r)) if c > 0.0 && r > 0.0 => Some(max.run.ok_throughput / c / r),
            _ => None,
        };
        let t = targets(alg);
        rows.push(ComparisonRow {
            alg: alg.as_str().to_owned(),
            ratio,
            ratio_per_cpu,
            ratio_met: t.min_ratio.map(|m| ratio_per_cpu.unwrap_or(ratio) >= m),
            p99_met: t.max_p99_us.map(|m| open.run.latency.p99_us < m),
            targets: t,
            sign,
            max,
            open,
        });
    }
    let report = CompareReport {
        command: "compare".into(),
        tool,
        machine,
        server_cpu: opts.server_cpu.clone(),
        client_cpu: opts.client_cpu.clone(),
        pipeline: opts.pipeline,
        open_fraction: opts.open_fraction,
        boost: opts.boost,
        rows,
    };
    write_json(&opts.out, &report)?;
    Ok(report)
}

/// The table `compare` prints.
pub fn compare_table(r: &CompareReport) -> String {
    let pipelined = match r.pipeline {
        0 | 1 => String::new(),
        n => format!("; {n} requests pipelined per write"),
    };
    let mut out = format!(
        "{}; server and signing loop on cpu {}, wrk on cpu {}{pipelined}; {} x {}\n",
        r.tool, r.server_cpu, r.client_cpu, r.machine.cpus, r.machine.cpu_model
    );
    let pct = (r.open_fraction * 100.0).round();
    out.push_str(&format!(
        "{:<6} {:>9} {:>9} {:>6} {:>9} {:>9} {:>7} {:>7} {:>7}  {:>8} {:>9} {:>9} {:>7}  {}\n",
        "alg",
        "sign/s",
        "sign/cpu",
        "server",
        "signet/s",
        "/cpu-s",
        "ratio",
        "cpu-rt",
        "target",
        format!("p99@{pct}%"),
        "p99.9",
        "max",
        "target",
        "errors"
    ));
    let cpu = |c: Option<f64>| c.map_or("-".to_owned(), |c| format!("{:.0}%", c * 100.0));
    for row in &r.rows {
        let o = &row.open.run.latency;
        let per_cpu = row
            .max
            .server_cpu
            .filter(|c| *c > 0.0)
            .map(|c| row.max.run.ok_throughput / c);
        let errors = format!(
            "closed {}, open {} (server {} during it)",
            row.max.run.error_summary(),
            row.open.run.error_summary(),
            cpu(row.open.server_cpu),
        );
        out.push_str(&format!(
            "{:<6} {:>9.0} {:>9} {:>6} {:>9.0} {:>9} {:>6.1}% {:>7} {:>7}  {:>8} {:>9} {:>9} {:>7}  {}\n",
            row.alg,
            row.sign.rate,
            row.sign
                .rate_per_cpu_second
                .map_or("-".into(), |r| format!("{r:.0}")),
            cpu(row.max.server_cpu),
            row.max.run.ok_throughput,
            per_cpu.map_or("-".into(), |r| format!("{r:.0}")),
            row.ratio * 100.0,
            row.ratio_per_cpu
                .map_or("-".into(), |r| format!("{:.1}%", r * 100.0)),
            match (row.targets.min_ratio, row.ratio_met) {
                (Some(m), Some(met)) => format!(
                    "{}{:.0}%",
                    if met { ">=" } else { "<" },
                    m * 100.0
                ),
                _ => "-".into(),
            },
            fmt_us(o.p99_us),
            fmt_us(o.p999_us),
            fmt_us(o.max_us),
            match (row.targets.max_p99_us, row.p99_met) {
                (Some(m), Some(met)) => format!("{}{}", if met { "<" } else { ">=" }, fmt_us(m))
                    .replace(' ', ""),
                _ => "-".into(),
            },
            errors,
        ));
    }
    out.push_str(
        "sign/s, signet/s: per wall-clock second; sign/cpu, /cpu-s: per CPU second of the \
         signing thread / the server; ratio = signet/s / sign/s, cpu-rt = /cpu-s / sign/cpu \
         (the target column judges cpu-rt); p99@: open loop at that share of signet/s\n",
    );
    out
}
