//! `scale`: throughput with 1, 2 and 3 issuers behind the local cluster's HAProxy, how
//! latency grows as the offered rate approaches that maximum, and the issuers' memory.
//!
//! The cluster is `deploy/local/cluster.sh`'s (3 NATS, Redis with Sentinel, 2 key managers,
//! 3 issuers, HAProxy): started here in a temporary directory on free ports and stopped at
//! the end (also on an error or Ctrl-C), or one already running (`--cluster-dir`). The
//! number of issuers in rotation is set through HAProxy's runtime API (the admin socket
//! `run/haproxy.sock` of `deploy/haproxy/haproxy.cfg`): `set server <backend>/issuerN state
//! maint|ready` in both public backends, then the stats are polled until HAProxy reports
//! exactly the wanted servers UP. Issuers out of rotation keep running (idle).
//!
//! Per node count and scenario: an unrecorded closed-loop warm-up, a closed-loop run (the
//! maximum), then an open-loop ladder (constant arrival rate) at fractions of that maximum,
//! each run with the wrk runner of the other subcommands (latency from each request's due
//! time). Around each run the runner reads every issuer's CPU time and requests routed to
//! it (HAProxy's `stot`), and samples its VmRSS every `sample_interval`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::admin::Admin;
use crate::scenario::url_parts::Issuer;
use crate::scenario::{Fixtures, Scenario};
use crate::server::{process_cpu_time, rand_u128, realtime_permitted, sibling_signet_bin, Target};
use crate::stats::{fmt_us, Mode, RunResult};
use crate::suite::{write_json, Machine};
use crate::wrk::{self, WrkRun};

/// The issuers of `deploy/local/cluster.sh` (and server lines of `deploy/haproxy/haproxy.cfg`).
pub const ISSUERS: usize = 3;

/// The cluster's processes other than the issuers and HAProxy.
pub const BACKING: [&str; 11] = [
    "nats-1",
    "nats-2",
    "nats-3",
    "redis-1",
    "redis-2",
    "redis-3",
    "sentinel-1",
    "sentinel-2",
    "sentinel-3",
    "keymanager-1",
    "keymanager-2",
];

/// The public backends of `deploy/haproxy/haproxy.cfg` (`public_live` serves only when no
/// issuer is ready; both get the same server states).
const PUBLIC_BACKENDS: [&str; 2] = ["public_ready", "public_live"];

/// The scenarios `scale` runs by default.
pub const DEFAULT_SCENARIOS: [Scenario; 2] = [
    Scenario::ClientCredentials(signet_jose::Algorithm::ES256),
    Scenario::RefreshToken,
];

/// The default open-loop ladder: fractions of the closed-loop maximum.
pub const DEFAULT_LADDER: [f64; 5] = [0.25, 0.5, 0.7, 0.85, 0.95];

/// Which cluster to measure.
#[derive(Debug, Clone)]
pub enum ClusterSource {
    /// Start one with `cluster.sh up` in a temporary directory, `down` at the end.
    Start {
        /// `SIGNET_BIN` for the script (default: the `signet` beside this executable).
        signet_bin: Option<PathBuf>,
        /// `deploy/local/cluster.sh` (default: found from this crate's source directory,
        /// else from the working directory).
        script: Option<PathBuf>,
        /// `SIGNET_PORT_BASE` (the internal ports are base..base+70, the public and admin
        /// ports base+80 and base+81); default: a free block between 20000 and 32000.
        port_base: Option<u16>,
        /// More environment for the script (NATS_SERVER, REDIS_SERVER, HAPROXY, ...).
        env: Vec<(String, String)>,
    },
    /// A cluster `cluster.sh up` started with `SIGNET_LOCAL_DIR=dir` (ports from its
    /// `cluster.env`, the admin secret from `secrets/admin-secret` unless `admin_secret`),
    /// optionally reached through other URLs. Its rotation and the processes' CPU affinity
    /// and scheduling are restored at the end.
    Existing {
        dir: PathBuf,
        issuer: Option<String>,
        admin: Option<String>,
        admin_secret: Option<String>,
    },
}

/// Where each process runs (`taskset -c` lists); `None`: left as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Pinning {
    /// Issuer i (0-based) gets `issuers[i % len]`; empty: not pinned.
    pub issuers: Vec<String>,
    pub haproxy: Option<String>,
    pub wrk: Option<String>,
    /// NATS, Redis, the Sentinels and the key managers.
    pub backing: Option<String>,
}

impl Pinning {
    /// `--server-cpus 0` (every issuer on core 0) or `0/1/2` (issuer-1 on 0, issuer-2 on 1,
    /// issuer-3 on 2; fewer lists repeat); wrk and HAProxy on `client`; the rest on
    /// `backing`, by default every core of the issuers.
    pub fn parse(server: Option<&str>, client: Option<&str>, backing: Option<&str>) -> Pinning {
        let issuers: Vec<String> = server
            .map(|s| {
                s.split('/')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let backing = backing
            .map(str::to_owned)
            .or_else(|| (!issuers.is_empty()).then(|| issuers.join(",")));
        Pinning {
            issuers,
            haproxy: client.map(str::to_owned),
            wrk: client.map(str::to_owned),
            backing,
        }
    }

    pub fn issuer(&self, i: usize) -> Option<&str> {
        (!self.issuers.is_empty()).then(|| self.issuers[i % self.issuers.len()].as_str())
    }
}

/// Options of `scale`.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    pub cluster: ClusterSource,
    pub scenarios: Vec<Scenario>,
    /// Issuers in rotation, each 1 to 3, in the order measured.
    pub nodes: Vec<usize>,
    /// Open-loop rates as fractions of the closed-loop maximum, in the order run.
    pub ladder: Vec<f64>,
    pub pinning: Pinning,
    /// Issuers, HAProxy and the backing processes in the real-time class (`chrt -f 1`, else
    /// their autogroups at nice -20), wrk too (see [`crate::server::launcher`]).
    pub boost: bool,
    /// Each measured run, whole seconds.
    pub duration: Duration,
    /// Closed-loop warm-up before each maximum, not recorded (0: none).
    pub warmup: Duration,
    pub connections: u32,
    pub open_connections: u32,
    pub threads: u32,
    /// HTTP/1.1 pipelining depth of the prepared-request scenarios (1: none).
    pub pipeline: u32,
    pub out: PathBuf,
    /// Name prefix of the registered scopes, resources and clients.
    pub prefix: String,
    pub admin_client_id: String,
    /// How often the issuers' VmRSS is read during a run.
    pub sample_interval: Duration,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        ScaleOptions {
            cluster: ClusterSource::Start {
                signet_bin: None,
                script: None,
                port_base: None,
                env: Vec::new(),
            },
            scenarios: DEFAULT_SCENARIOS.to_vec(),
            nodes: vec![1, 2, 3],
            ladder: DEFAULT_LADDER.to_vec(),
            pinning: Pinning::default(),
            boost: false,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            connections: 32,
            open_connections: 64,
            threads: 1,
            pipeline: 1,
            out: PathBuf::from("target/loadtests/scale.json"),
            prefix: "signet-lt".into(),
            admin_client_id: "signet-admin".into(),
            sample_interval: Duration::from_millis(50),
        }
    }
}

// --- the result file ----------------------------------------------------------------------

/// One issuer over one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuerRun {
    pub name: String,
    pub in_rotation: bool,
    /// Requests HAProxy sent it during the run (`stot` of its public servers).
    pub requests: Option<u64>,
    /// Its CPU time over the run's wall time (1.0 = one core busy).
    pub cpu: Option<f64>,
    /// VmRSS right before the run, the largest seen while it ran and right after it, KiB.
    pub rss_kib_before: Option<u64>,
    pub rss_kib_max: Option<u64>,
    pub rss_kib_after: Option<u64>,
}

/// One measured run with `nodes` issuers in rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleRun {
    pub nodes: usize,
    /// `"max"` (closed loop) or the ladder step, e.g. `"85%"`.
    pub step: String,
    /// Open loop: the offered rate as a fraction of the maximum of the same node count.
    pub fraction: Option<f64>,
    #[serde(flatten)]
    pub run: RunResult,
    pub issuers: Vec<IssuerRun>,
    /// HAProxy's CPU time over the run (it shares the client cores with wrk).
    pub haproxy_cpu: Option<f64>,
    /// The backing processes' CPU time over the run, summed by kind (`nats`, `redis`,
    /// `sentinel`, `keymanager`): what the issuers' round trips cost where they land.
    #[serde(default)]
    pub backing_cpu: BTreeMap<String, f64>,
}

/// What one run measured besides wrk's figures.
struct Measured {
    run: RunResult,
    issuers: Vec<IssuerRun>,
    haproxy_cpu: Option<f64>,
    backing_cpu: BTreeMap<String, f64>,
}

/// The kind of a backing process: its name without the instance number.
fn backing_kind(name: &str) -> &str {
    name.rsplit_once('-').map_or(name, |(kind, _)| kind)
}

/// The closed loop and the ladder of one scenario with one node count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodesResult {
    pub nodes: usize,
    pub max: ScaleRun,
    pub ladder: Vec<ScaleRun>,
    /// `max.run.ok_throughput` over that of the first node count measured.
    pub speedup: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioScale {
    pub scenario: String,
    pub by_nodes: Vec<NodesResult>,
}

/// One process of the cluster: where it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessPlacement {
    pub name: String,
    pub pid: u32,
    /// `Cpus_allowed_list` of /proc/<pid>/status after pinning (every thread was pinned
    /// with `taskset -a`).
    pub cpus: String,
    /// Its threads when the measurements began.
    pub threads: Option<u64>,
}

/// The JSON result file of `scale`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleReport {
    pub command: String,
    pub tool: String,
    pub machine: Machine,
    /// The load balancer's public address (the issuer URL).
    pub issuer: String,
    /// Whether this run started (and stopped) the cluster.
    pub started_cluster: bool,
    pub signet_bin: Option<String>,
    /// What was asked (`taskset -c` lists).
    pub pinning: Pinning,
    /// What each process got.
    pub placement: Vec<ProcessPlacement>,
    /// wrk's `taskset -c` list (it is started per run).
    pub wrk_cpus: Option<String>,
    /// `"chrt -f 1"`, `"autogroup nice -20"` or null.
    pub boost: Option<String>,
    pub ladder: Vec<f64>,
    pub connections: u32,
    pub open_connections: u32,
    pub threads: u32,
    pub duration_s: u64,
    /// Every issuer's VmRSS after the fixtures were registered, before any load, KiB.
    pub rss_kib_at_rest: BTreeMap<String, Option<u64>>,
    /// ... and after the last run.
    pub rss_kib_at_end: BTreeMap<String, Option<u64>>,
    pub scenarios: Vec<ScenarioScale>,
}

impl ScaleReport {
    /// Every run, in scenario and node-count order.
    pub fn runs(&self) -> impl Iterator<Item = &ScaleRun> {
        self.scenarios.iter().flat_map(|s| {
            s.by_nodes
                .iter()
                .flat_map(|n| std::iter::once(&n.max).chain(n.ladder.iter()))
        })
    }

    /// Errors over every run.
    pub fn errors(&self) -> u64 {
        self.runs().map(|r| r.run.errors).sum()
    }
}

// --- the cluster ----------------------------------------------------------------------------

/// `deploy/local/cluster.sh`.
pub fn default_cluster_script() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/cluster.sh");
    if built.exists() {
        return built;
    }
    PathBuf::from("deploy/local/cluster.sh")
}

/// The first of `len` loopback ports in a row that are free right now, searched in blocks
/// between `lo` and `hi` (keep both below the kernel's ephemeral range, 32768 on Linux).
pub fn free_port_block(len: u16, lo: u16, hi: u16) -> Result<u16> {
    ensure!(
        hi > lo && hi - lo >= len,
        "no room for {len} ports in {lo}..{hi}"
    );
    let step = len.max(1);
    let blocks = (hi - lo) / step;
    let offset = (std::process::id() % u32::from(blocks)) as u16;
    for i in 0..blocks {
        let start = lo + ((offset + i) % blocks) * step;
        if (start..start + len).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return Ok(start);
        }
    }
    bail!("no {len} free loopback ports in a row between {lo} and {hi}")
}

/// The pid of cluster process `name` from `<dir>/run/<name>.pid` ("pid start-time", as
/// `cluster.sh` writes it) while that process runs.
pub fn pid_of(dir: &Path, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("run").join(format!("{name}.pid"))).ok()?;
    let mut it = text.split_whitespace();
    let pid: u32 = it.next()?.parse().ok()?;
    let started = it.next()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: field 3 (state) is fields[0], field 22 (start time) fields[19].
    (fields.first() != Some(&"Z") && fields.get(19) == Some(&started)).then_some(pid)
}

/// A `Key:` line of /proc/<pid>/status.
fn status_field(pid: u32, key: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

/// VmRSS of `pid`, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS")?
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn cpus_allowed(pid: u32) -> Option<String> {
    status_field(pid, "Cpus_allowed_list")
}

/// Sends one command to HAProxy's runtime API (the admin socket) and returns its answer.
pub fn haproxy_command(socket: &Path, command: &str) -> Result<String> {
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("HAProxy's admin socket {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("{command}\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .with_context(|| format!("HAProxy's answer to {command:?}"))?;
    Ok(out)
}

/// A server of a public backend in HAProxy's `show stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub backend: String,
    pub server: String,
    pub status: String,
    /// Requests sent to it so far.
    pub stot: u64,
}

/// The issuer servers of the public backends from HAProxy's `show stat` CSV.
pub fn parse_show_stat(csv: &str) -> Vec<ServerState> {
    let mut lines = csv.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.split(',').collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(st), Some(stot)) =
        (col("pxname"), col("svname"), col("status"), col("stot"))
    else {
        return Vec::new();
    };
    lines
        .map(|l| l.split(',').collect::<Vec<&str>>())
        .filter(|f| {
            f.len() > st.max(stot)
                && PUBLIC_BACKENDS.contains(&f[px])
                && f[sv].starts_with("issuer")
        })
        .map(|f| ServerState {
            backend: f[px].to_owned(),
            server: f[sv].to_owned(),
            status: f[st].to_owned(),
            stot: f[stot].parse().unwrap_or(0),
        })
        .collect()
}

/// A cluster `cluster.sh` runs, seen through its directory.
struct Cluster {
    dir: PathBuf,
    public_port: u16,
    admin_port: u16,
    port_base: u16,
    /// Set when this run started it: `cluster.sh down` on drop.
    started: Option<Started>,
    /// The processes of an existing cluster with the affinity to give back on drop (None:
    /// not pinned here), and whether to put them back in the normal scheduling class.
    restore: Vec<(u32, Option<String>)>,
    restore_policy: bool,
}

struct Started {
    script: PathBuf,
    env: Vec<(String, String)>,
    /// The temporary base directory; kept (not removed) after a failure.
    temp: Option<tempfile::TempDir>,
}

impl Cluster {
    fn socket(&self) -> PathBuf {
        self.dir.join("run/haproxy.sock")
    }

    fn issuer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.public_port)
    }

    fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// Issuer `i` (1-based) on its own public listener.
    fn direct_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.port_base + 50 + (i as u16 - 1))
    }

    fn pid(&self, name: &str) -> Result<u32> {
        pid_of(&self.dir, name).with_context(|| {
            format!(
                "{name} of the cluster in {} is not running",
                self.dir.display()
            )
        })
    }

    fn issuer_pids(&self) -> Result<Vec<u32>> {
        (1..=ISSUERS)
            .map(|i| self.pid(&format!("issuer-{i}")))
            .collect()
    }

    /// Reads the ports of the cluster in `dir` (its `cluster.env`).
    fn open(dir: &Path) -> Result<Cluster> {
        let env_file = dir.join("cluster.env");
        let text = std::fs::read_to_string(&env_file).with_context(|| {
            format!(
                "{} is missing: is there a cluster (`deploy/local/cluster.sh up`) with \
                 SIGNET_LOCAL_DIR={}?",
                env_file.display(),
                dir.display()
            )
        })?;
        let vars: BTreeMap<&str, u16> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter_map(|(k, v)| Some((k.trim(), v.trim().parse().ok()?)))
            .collect();
        let get = |k: &str| {
            vars.get(k)
                .copied()
                .with_context(|| format!("no {k} in {}", env_file.display()))
        };
        Ok(Cluster {
            dir: dir.to_owned(),
            public_port: get("PUBLIC_PORT")?,
            admin_port: get("ADMIN_PORT")?,
            port_base: get("PORT_BASE")?,
            started: None,
            restore: Vec::new(),
            restore_policy: false,
        })
    }

    /// `cluster.sh up` in a new temporary directory.
    fn start(
        script: &Path,
        signet_bin: &Path,
        port_base: Option<u16>,
        extra_env: &[(String, String)],
        admin_secret: &str,
    ) -> Result<Cluster> {
        ensure!(
            script.exists(),
            "{} is missing (--cluster-script)",
            script.display()
        );
        ensure!(
            signet_bin.exists(),
            "{} is missing: build it first (cargo build --release -p signet) or pass --signet-bin",
            signet_bin.display()
        );
        let temp = tempfile::Builder::new().prefix("signet-scale-").tempdir()?;
        let base = match port_base {
            Some(b) => b,
            None => free_port_block(82, 20_000, 32_000)?,
        };
        let (public, admin) = (base + 80, base + 81);
        let mut env = vec![
            (
                "SIGNET_LOCAL_DIR".to_owned(),
                temp.path().display().to_string(),
            ),
            ("SIGNET_PUBLIC_PORT".into(), public.to_string()),
            ("SIGNET_ADMIN_PORT".into(), admin.to_string()),
            ("SIGNET_PORT_BASE".into(), base.to_string()),
            ("SIGNET_BIN".into(), signet_bin.display().to_string()),
            (
                "SIGNET_LOG".into(),
                std::env::var("SIGNET_LOG").unwrap_or_else(|_| "warn".into()),
            ),
        ];
        env.extend(extra_env.iter().cloned());
        let cluster = Cluster {
            dir: temp.path().to_owned(),
            public_port: public,
            admin_port: admin,
            port_base: base,
            started: Some(Started {
                script: script.to_owned(),
                env: env.clone(),
                temp: Some(temp),
            }),
            restore: Vec::new(),
            restore_policy: false,
        };
        eprintln!(
            "scale: starting the local cluster (cluster.sh up) in {}, ports {base}..{} and {public}, {admin}",
            cluster.dir.display(),
            base + 70
        );
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(script)
            .arg("up")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("SIGNET_ADMIN_CLIENT_SECRET", admin_secret)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            let mut cluster = cluster;
            let kept = cluster.keep_files();
            bail!(
                "cluster.sh up failed ({}; files kept in {}):\n{}{}",
                out.status,
                kept.map_or("-".into(), |d| d.display().to_string()),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        eprintln!(
            "scale: cluster up in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(cluster)
    }

    /// Keeps the temporary directory (logs) of a started cluster; returns it.
    fn keep_files(&mut self) -> Option<PathBuf> {
        let temp = self.started.as_mut()?.temp.take()?;
        Some(temp.keep())
    }

    /// Puts issuers 1..=n in rotation and the others in maintenance, then waits until
    /// HAProxy reports exactly those UP.
    fn set_rotation(&self, n: usize) -> Result<()> {
        let socket = self.socket();
        for i in 1..=ISSUERS {
            let state = if i <= n { "ready" } else { "maint" };
            for backend in PUBLIC_BACKENDS {
                let answer = haproxy_command(
                    &socket,
                    &format!("set server {backend}/issuer{i} state {state}"),
                )?;
                ensure!(
                    answer.trim().is_empty(),
                    "HAProxy refused to set {backend}/issuer{i} {state}: {answer}"
                );
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let servers = parse_show_stat(&haproxy_command(&socket, "show stat")?);
            let wanted = |s: &ServerState| {
                let i: usize = s.server.trim_start_matches("issuer").parse().unwrap_or(0);
                if i <= n {
                    s.status == "UP"
                } else {
                    s.status.starts_with("MAINT")
                }
            };
            if servers.len() == 2 * ISSUERS && servers.iter().all(wanted) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("HAProxy did not put {n} issuer(s) in rotation within 30 s: {servers:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Requests HAProxy has sent to each issuer so far (both public backends).
    fn routed(&self) -> Option<[u64; ISSUERS]> {
        let servers = parse_show_stat(&haproxy_command(&self.socket(), "show stat").ok()?);
        let mut out = [0; ISSUERS];
        for s in servers {
            let i: usize = s.server.trim_start_matches("issuer").parse().ok()?;
            *out.get_mut(i.checked_sub(1)?)? += s.stot;
        }
        Some(out)
    }

    /// Pins every process as `p` asks (every thread: `taskset -a`) and, with `boost`, puts
    /// them ahead of other work. Returns what boost did.
    fn place(&mut self, p: &Pinning, boost: bool) -> Result<Option<String>> {
        let mut plan: Vec<(String, Option<String>)> = Vec::new();
        for i in 0..ISSUERS {
            plan.push((format!("issuer-{}", i + 1), p.issuer(i).map(str::to_owned)));
        }
        plan.push(("haproxy".into(), p.haproxy.clone()));
        for name in BACKING {
            plan.push((name.to_owned(), p.backing.clone()));
        }
        let existing = self.started.is_none();
        for (name, cpus) in &plan {
            let pid = self.pid(name)?;
            if existing {
                let before = cpus.as_ref().and_then(|_| cpus_allowed(pid));
                self.restore.push((pid, before));
            }
            if let Some(cpus) = cpus {
                run_quiet(Command::new("taskset").args(["-a", "-p", "-c", cpus, &pid.to_string()]))
                    .with_context(|| format!("pinning {name} (pid {pid}) to cpus {cpus}"))?;
            }
        }
        if !boost {
            return Ok(None);
        }
        self.restore_policy = existing;
        let how = if realtime_permitted() {
            "chrt -f 1"
        } else {
            "autogroup nice -20"
        };
        for (name, _) in &plan {
            let pid = self.pid(name)?;
            if realtime_permitted() {
                run_quiet(Command::new("chrt").args(["-a", "-f", "-p", "1", &pid.to_string()]))
                    .with_context(|| format!("boosting {name} (pid {pid})"))?;
            } else {
                // cluster.sh starts each process in a session (autogroup) of its own.
                let _ = std::fs::write(format!("/proc/{pid}/autogroup"), "-20");
            }
        }
        Ok(Some(how.to_owned()))
    }

    fn placement(&self) -> Vec<ProcessPlacement> {
        let names = (1..=ISSUERS)
            .map(|i| format!("issuer-{i}"))
            .chain(["haproxy".to_owned()])
            .chain(BACKING.iter().map(|s| s.to_string()));
        names
            .filter_map(|name| {
                let pid = pid_of(&self.dir, &name)?;
                Some(ProcessPlacement {
                    cpus: cpus_allowed(pid).unwrap_or_else(|| "?".into()),
                    threads: status_field(pid, "Threads").and_then(|t| t.parse().ok()),
                    name,
                    pid,
                })
            })
            .collect()
    }
}

fn run_quiet(cmd: &mut Command) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    ensure!(
        out.status.success(),
        "{:?} failed ({}): {}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(s) = &self.started {
            eprintln!("scale: stopping the local cluster (cluster.sh down)");
            let status = Command::new("bash")
                .arg(&s.script)
                .arg("down")
                .envs(s.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status();
            if !matches!(status, Ok(s) if s.success()) {
                eprintln!(
                    "scale: cluster.sh down failed ({status:?}); stop it with \
                     SIGNET_LOCAL_DIR={} {} down",
                    self.dir.display(),
                    s.script.display()
                );
            }
            return;
        }
        // An existing cluster: every issuer back in rotation, affinity and policy restored.
        let _ = self.set_rotation(ISSUERS);
        for (pid, cpus) in self
            .restore
            .iter()
            .filter_map(|(p, c)| Some((p, c.as_ref()?)))
        {
            let _ =
                run_quiet(Command::new("taskset").args(["-a", "-p", "-c", cpus, &pid.to_string()]));
        }
        if self.restore_policy && realtime_permitted() {
            for (pid, _) in &self.restore {
                let _ =
                    run_quiet(Command::new("chrt").args(["-a", "-o", "-p", "0", &pid.to_string()]));
            }
        }
    }
}

// --- measuring ----------------------------------------------------------------------------

/// VmRSS of some processes, sampled on a thread of its own until stopped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<Mutex<Vec<Option<u64>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pids: Vec<u32>, every: Duration) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(Mutex::new(vec![None; pids.len()]));
        let (s, m) = (stop.clone(), max.clone());
        let thread = std::thread::spawn(move || loop {
            let last = s.load(Ordering::Relaxed);
            let now: Vec<Option<u64>> = pids.iter().map(|&p| rss_kib(p)).collect();
            {
                let mut max = m.lock().unwrap_or_else(|e| e.into_inner());
                for (slot, v) in max.iter_mut().zip(now) {
                    *slot = (*slot).max(v);
                }
            }
            if last {
                return;
            }
            std::thread::sleep(every);
        });
        RssSampler {
            stop,
            max,
            thread: Some(thread),
        }
    }

    /// Stops (after one last sample) and returns the maxima.
    fn finish(mut self) -> Vec<Option<u64>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct Ctx<'a> {
    opts: &'a ScaleOptions,
    cluster: &'a Cluster,
    issuer: Issuer,
    admin: Admin,
    fixtures: Fixtures,
    issuer_pids: Vec<u32>,
    haproxy_pid: u32,
    /// The backing processes by name ([`BACKING`]).
    backing_pids: Vec<(&'static str, u32)>,
}

impl Ctx<'_> {
    async fn measure(
        &self,
        scenario: Scenario,
        nodes: usize,
        mode: Mode,
        connections: u32,
        duration: Duration,
    ) -> Result<Measured> {
        let minted = self
            .admin
            .mint(&self.fixtures, scenario.needs(connections))
            .await
            .with_context(|| format!("preparing {scenario}"))?;
        let spec = WrkRun {
            url: self.issuer.url(scenario.path()),
            workload: scenario.requests(&self.issuer, &self.fixtures, &minted),
            mode,
            connections,
            threads: self.opts.threads,
            pipeline: if scenario.chained() {
                1
            } else {
                self.opts.pipeline
            },
            duration,
            cpus: self.opts.pinning.wrk.clone(),
            boost: self.opts.boost,
        };
        let pids = self.issuer_pids.clone();
        let cpu_before: Vec<Option<Duration>> = pids.iter().map(|&p| process_cpu_time(p)).collect();
        let rss_before: Vec<Option<u64>> = pids.iter().map(|&p| rss_kib(p)).collect();
        let lb_before = process_cpu_time(self.haproxy_pid);
        let backing_before: Vec<Option<Duration>> = self
            .backing_pids
            .iter()
            .map(|&(_, p)| process_cpu_time(p))
            .collect();
        let routed_before = self.cluster.routed();
        let sampler = RssSampler::start(pids.clone(), self.opts.sample_interval);
        let name = scenario.name();
        let run = tokio::task::spawn_blocking(move || wrk::run(&name, &spec)).await;
        let rss_max = sampler.finish();
        let run = run??;
        let routed_after = self.cluster.routed();
        let share = |before: Option<Duration>, after: Option<Duration>| match (before, after) {
            (Some(a), Some(b)) if run.duration_s > 0.0 => {
                b.checked_sub(a).map(|d| d.as_secs_f64() / run.duration_s)
            }
            _ => None,
        };
        let issuers = pids
            .iter()
            .enumerate()
            .map(|(i, &pid)| IssuerRun {
                name: format!("issuer-{}", i + 1),
                in_rotation: i < nodes,
                requests: match (routed_before, routed_after) {
                    (Some(a), Some(b)) => Some(b[i].saturating_sub(a[i])),
                    _ => None,
                },
                cpu: share(cpu_before[i], process_cpu_time(pid)),
                rss_kib_before: rss_before[i],
                rss_kib_max: rss_max[i],
                rss_kib_after: rss_kib(pid),
            })
            .collect();
        let lb = share(lb_before, process_cpu_time(self.haproxy_pid));
        let mut backing_cpu = BTreeMap::new();
        for (&(name, pid), before) in self.backing_pids.iter().zip(backing_before) {
            if let Some(c) = share(before, process_cpu_time(pid)) {
                *backing_cpu
                    .entry(backing_kind(name).to_owned())
                    .or_insert(0.0) += c;
            }
        }
        Ok(Measured {
            run,
            issuers,
            haproxy_cpu: lb,
            backing_cpu,
        })
    }

    async fn scenario_at(&self, scenario: Scenario, nodes: usize) -> Result<NodesResult> {
        let o = self.opts;
        if !o.warmup.is_zero() {
            self.measure(scenario, nodes, Mode::Closed, o.connections, o.warmup)
                .await?;
        }
        let Measured {
            run,
            issuers,
            haproxy_cpu,
            backing_cpu,
        } = self
            .measure(scenario, nodes, Mode::Closed, o.connections, o.duration)
            .await?;
        eprintln!(
            "scale: {scenario}, {nodes} issuer(s): max {:.0} req/s, p99 {}, errors {}",
            run.ok_throughput,
            fmt_us(run.latency.p99_us),
            run.error_summary()
        );
        let maximum = run.ok_throughput;
        let max = ScaleRun {
            nodes,
            step: "max".into(),
            fraction: None,
            run,
            issuers,
            haproxy_cpu,
            backing_cpu,
        };
        let mut ladder = Vec::new();
        for &f in &o.ladder {
            let rate = (maximum * f).max(1.0);
            let Measured {
                run,
                issuers,
                haproxy_cpu,
                backing_cpu,
            } = self
                .measure(
                    scenario,
                    nodes,
                    Mode::Open { rate },
                    o.open_connections,
                    o.duration,
                )
                .await?;
            eprintln!(
                "scale: {scenario}, {nodes} issuer(s): {:.0}% = {rate:.0}/s offered, {:.0} req/s, p99 {}, errors {}",
                f * 100.0,
                run.ok_throughput,
                fmt_us(run.latency.p99_us),
                run.error_summary()
            );
            ladder.push(ScaleRun {
                nodes,
                step: format!("{:.0}%", f * 100.0),
                fraction: Some(f),
                run,
                issuers,
                haproxy_cpu,
                backing_cpu,
            });
        }
        Ok(NodesResult {
            nodes,
            max,
            ladder,
            speedup: None,
        })
    }
}

/// Waits until issuer `i`, asked directly, serves every fixture (the others apply the admin
/// writes a moment after the issuer that took them).
async fn wait_issuer_ready(cluster: &Cluster, i: usize, t: &Target, fx: &Fixtures) -> Result<()> {
    let direct = Target {
        issuer: cluster.direct_url(i),
        ..t.clone()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let outcome = match Admin::connect(&direct).await {
            Ok(a) => a.check(fx).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("issuer-{i} never served the fixtures")))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Runs `scale`; writes `opts.out`.
pub async fn run_scale(opts: &ScaleOptions) -> Result<ScaleReport> {
    ensure!(!opts.scenarios.is_empty(), "no scenario given");
    ensure!(
        !opts.nodes.is_empty() && opts.nodes.iter().all(|n| (1..=ISSUERS).contains(n)),
        "--nodes takes 1 to {ISSUERS} (the issuers of deploy/local/cluster.sh), not {:?}",
        opts.nodes
    );
    ensure!(
        opts.ladder.iter().all(|f| *f > 0.0 && f.is_finite()),
        "ladder fractions must be positive: {:?}",
        opts.ladder
    );
    let tool = wrk::check_wrk()?;
    let machine = Machine::probe();
    let (mut cluster, secret, signet_bin) = match &opts.cluster {
        ClusterSource::Start {
            signet_bin,
            script,
            port_base,
            env,
        } => {
            let bin = match signet_bin {
                Some(b) => b.clone(),
                None => sibling_signet_bin().context("cannot locate the signet binary")?,
            };
            let script = script.clone().unwrap_or_else(default_cluster_script);
            let secret = format!("scale-admin-{:032x}", rand_u128());
            let (script2, bin2, env2, secret2, base) =
                (script, bin.clone(), env.clone(), secret.clone(), *port_base);
            let c = tokio::task::spawn_blocking(move || {
                Cluster::start(&script2, &bin2, base, &env2, &secret2)
            })
            .await??;
            (c, secret, Some(bin.display().to_string()))
        }
        ClusterSource::Existing {
            dir,
            issuer: _,
            admin: _,
            admin_secret,
        } => {
            let c = Cluster::open(dir)?;
            let secret = match admin_secret {
                Some(s) => s.clone(),
                None => std::fs::read_to_string(dir.join("secrets/admin-secret"))
                    .context("the admin secret: set SIGNET_ADMIN_CLIENT_SECRET")?
                    .trim()
                    .to_owned(),
            };
            (c, secret, None)
        }
    };
    let result = measure_all(opts, &mut cluster, &secret, tool, machine, signet_bin).await;
    match result {
        Ok(report) => {
            write_json(&opts.out, &report)?;
            Ok(report)
        }
        Err(e) => match cluster.keep_files() {
            Some(dir) => Err(e.context(format!(
                "the cluster's logs are kept in {}/logs",
                dir.display()
            ))),
            None => Err(e),
        },
    }
}

async fn measure_all(
    opts: &ScaleOptions,
    cluster: &mut Cluster,
    secret: &str,
    tool: String,
    machine: Machine,
    signet_bin: Option<String>,
) -> Result<ScaleReport> {
    let (issuer_url, admin_url) = match &opts.cluster {
        ClusterSource::Existing { issuer, admin, .. } => (
            issuer.clone().unwrap_or_else(|| cluster.issuer_url()),
            admin.clone().unwrap_or_else(|| cluster.admin_url()),
        ),
        ClusterSource::Start { .. } => (cluster.issuer_url(), cluster.admin_url()),
    };
    let target = Target {
        issuer: issuer_url.clone(),
        admin: admin_url,
        admin_client_id: opts.admin_client_id.clone(),
        admin_secret: secret.to_owned(),
    };
    // The fixtures through one issuer (the sign-in's pages must meet an issuer that knows
    // the user just created), then wait until every issuer measured serves them.
    tokio::task::block_in_place(|| cluster.set_rotation(1))?;
    let admin = Admin::connect(&target).await?;
    let fixtures = admin.setup(&opts.prefix).await?;
    let most = opts.nodes.iter().copied().max().unwrap_or(1);
    for i in 1..=most {
        wait_issuer_ready(cluster, i, &target, &fixtures).await?;
    }
    let boost = tokio::task::block_in_place(|| cluster.place(&opts.pinning, opts.boost))?;
    let placement = cluster.placement();
    let issuer_pids = cluster.issuer_pids()?;
    let haproxy_pid = cluster.pid("haproxy")?;
    let names: Vec<String> = (1..=ISSUERS).map(|i| format!("issuer-{i}")).collect();
    let rss_now = |pids: &[u32]| -> BTreeMap<String, Option<u64>> {
        names
            .iter()
            .cloned()
            .zip(pids.iter().map(|&p| rss_kib(p)))
            .collect()
    };
    let rss_at_rest = rss_now(&issuer_pids);
    let cluster: &Cluster = cluster;
    let ctx = Ctx {
        opts,
        cluster,
        issuer: Issuer::parse(&issuer_url)?,
        admin,
        fixtures,
        issuer_pids: issuer_pids.clone(),
        haproxy_pid,
        backing_pids: BACKING
            .iter()
            .filter_map(|&name| Some((name, pid_of(&cluster.dir, name)?)))
            .collect(),
    };
    let mut by_scenario: Vec<ScenarioScale> = opts
        .scenarios
        .iter()
        .map(|s| ScenarioScale {
            scenario: s.name(),
            by_nodes: Vec::new(),
        })
        .collect();
    for &n in &opts.nodes {
        tokio::task::block_in_place(|| cluster.set_rotation(n))?;
        for (k, &sc) in opts.scenarios.iter().enumerate() {
            let r = ctx.scenario_at(sc, n).await?;
            by_scenario[k].by_nodes.push(r);
        }
    }
    for s in &mut by_scenario {
        let base = s.by_nodes.first().map(|r| r.max.run.ok_throughput);
        for r in &mut s.by_nodes {
            r.speedup = base
                .filter(|b| *b > 0.0)
                .map(|b| r.max.run.ok_throughput / b);
        }
    }
    Ok(ScaleReport {
        command: "scale".into(),
        tool,
        machine,
        issuer: issuer_url,
        started_cluster: cluster.started.is_some(),
        signet_bin,
        pinning: opts.pinning.clone(),
        placement,
        wrk_cpus: opts.pinning.wrk.clone(),
        boost,
        ladder: opts.ladder.clone(),
        connections: opts.connections,
        open_connections: opts.open_connections,
        threads: opts.threads,
        duration_s: opts.duration.as_secs().max(1),
        rss_kib_at_rest: rss_at_rest,
        rss_kib_at_end: rss_now(&issuer_pids),
        scenarios: by_scenario,
    })
}

// --- the table ------------------------------------------------------------------------------

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

fn pct(c: Option<f64>) -> String {
    c.map_or("-".into(), |c| format!("{:.0}%", c * 100.0))
}

/// The table `scale` prints.
pub fn scale_table(r: &ScaleReport) -> String {
    let mut out = format!(
        "{} through HAProxy at {} ({}); {} x {}; load {}\n",
        r.tool,
        r.issuer,
        if r.started_cluster {
            "cluster started by this run"
        } else {
            "running cluster"
        },
        r.machine.cpus,
        r.machine.cpu_model,
        r.machine.loadavg_at_start,
    );
    // Where everything ran, grouped by core list.
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &r.placement {
        groups
            .entry(p.cpus.clone())
            .or_default()
            .push(p.name.clone());
    }
    if let Some(w) = &r.wrk_cpus {
        groups.entry(w.clone()).or_default().push("wrk".into());
    } else {
        groups.entry("any".into()).or_default().push("wrk".into());
    }
    let cores: Vec<String> = groups
        .iter()
        .map(|(cpus, names)| format!("cpus {cpus}: {}", names.join(" ")))
        .collect();
    out.push_str(&format!("placement: {}\n", cores.join("; ")));
    let threads: Vec<String> = r
        .placement
        .iter()
        .filter(|p| p.name.starts_with("issuer") || p.name == "haproxy")
        .map(|p| {
            format!(
                "{} {}",
                p.name,
                p.threads.map_or("?".into(), |t| t.to_string())
            )
        })
        .collect();
    out.push_str(&format!(
        "threads: {} (thread pools were sized at start, before pinning){}\n",
        threads.join(", "),
        r.boost
            .as_deref()
            .map_or(String::new(), |b| format!("; boost: {b}"))
    ));
    out.push_str(&format!(
        "{:<26} {:>5} {:<5} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>14} {:>5} {:>19}  {}\n",
        "scenario",
        "nodes",
        "run",
        "offered",
        "req/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "issuer cpu",
        "lb",
        "nats/redis/sen/km",
        "errors"
    ));
    for s in &r.scenarios {
        for n in &s.by_nodes {
            for run in std::iter::once(&n.max).chain(n.ladder.iter()) {
                let offered = match run.run.mode {
                    Mode::Closed => "closed".to_owned(),
                    Mode::Open { rate } => format!("{rate:.0}"),
                };
                let cpus: Vec<String> = run
                    .issuers
                    .iter()
                    .map(|i| {
                        if i.in_rotation {
                            i.cpu.map_or("?".into(), |c| format!("{:.0}", c * 100.0))
                        } else {
                            "-".into()
                        }
                    })
                    .collect();
                let backing: Vec<String> = ["nats", "redis", "sentinel", "keymanager"]
                    .iter()
                    .map(|k| pct(run.backing_cpu.get(*k).copied()))
                    .collect();
                out.push_str(&format!(
                    "{:<26} {:>5} {:<5} {:>8} {:>9.0} {:>9} {:>9} {:>9} {:>9} {:>14} {:>5} {:>19}  {}\n",
                    s.scenario,
                    run.nodes,
                    run.step,
                    offered,
                    run.run.ok_throughput,
                    fmt_us(run.run.latency.p50_us),
                    fmt_us(run.run.latency.p99_us),
                    fmt_us(run.run.latency.p999_us),
                    fmt_us(run.run.latency.max_us),
                    format!("{}%", cpus.join("/")),
                    pct(run.haproxy_cpu),
                    backing.join("/"),
                    run.run.error_summary(),
                ));
            }
        }
    }
    out.push_str(
        "(req/s: successful answers per second; offered: the open-loop rate; issuer cpu: each \
         issuer's CPU time over the run, 100 = one core, - = out of rotation; lb: HAProxy's; \
         nats/redis/sen/km: the NATS servers', Redis servers', Sentinels' and key managers' \
         CPU time, each kind summed)\n",
    );
    out.push_str("\nmaximum by issuers in rotation (closed loop; x: against the first count)\n");
    for s in &r.scenarios {
        let cells: Vec<String> = s
            .by_nodes
            .iter()
            .map(|n| {
                format!(
                    "{} node{}: {:.0}/s ({:.2}x)",
                    n.nodes,
                    if n.nodes == 1 { "" } else { "s" },
                    n.max.run.ok_throughput,
                    n.speedup.unwrap_or(f64::NAN)
                )
            })
            .collect();
        out.push_str(&format!("{:<26} {}\n", s.scenario, cells.join("   ")));
    }
    let rest: Vec<String> = r
        .rss_kib_at_rest
        .iter()
        .map(|(k, v)| format!("{k} {}", mib(*v)))
        .collect();
    out.push_str(&format!(
        "\nissuer memory (VmRSS, MiB): at rest {}\n",
        rest.join(", ")
    ));
    for s in &r.scenarios {
        for n in &s.by_nodes {
            let runs: Vec<&ScaleRun> = std::iter::once(&n.max).chain(n.ladder.iter()).collect();
            let per: Vec<String> = (0..ISSUERS)
                .map(|i| {
                    let max = runs
                        .iter()
                        .filter_map(|r| r.issuers.get(i))
                        .filter_map(|x| x.rss_kib_max.max(x.rss_kib_after))
                        .max();
                    format!("issuer-{} {}", i + 1, mib(max))
                })
                .collect();
            out.push_str(&format!(
                "{:<26} {:>5}  max under load {}\n",
                s.scenario,
                n.nodes,
                per.join(", ")
            ));
        }
    }
    let end: Vec<String> = r
        .rss_kib_at_end
        .iter()
        .map(|(k, v)| format!("{k} {}", mib(*v)))
        .collect();
    out.push_str(&format!("after the last run: {}\n", end.join(", ")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_per_node_or_shared() {
        let p = Pinning::parse(Some("0"), Some("1"), None);
        assert_eq!(p.issuer(0), Some("0"));
        assert_eq!(p.issuer(2), Some("0"));
        assert_eq!(p.backing.as_deref(), Some("0"));
        assert_eq!(
            (p.haproxy.as_deref(), p.wrk.as_deref()),
            (Some("1"), Some("1"))
        );
        let p = Pinning::parse(Some("0/1-2"), Some("3"), Some("4"));
        assert_eq!(
            (p.issuer(0), p.issuer(1), p.issuer(2)),
            (Some("0"), Some("1-2"), Some("0"))
        );
        assert_eq!(p.backing.as_deref(), Some("4"));
        let p = Pinning::parse(Some("0/1"), None, None);
        assert_eq!(p.backing.as_deref(), Some("0,1"));
        let p = Pinning::parse(None, None, None);
        assert_eq!(p.issuer(0), None);
        assert_eq!((p.backing, p.wrk), (None, None));
    }

    #[test]
    fn show_stat_gives_the_public_issuer_servers() {
        let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight\n\
                   public,FRONTEND,,,0,1,100,5,0,0,0,0,0,,,,,OPEN,\n\
                   public_ready,issuer1,0,0,0,1,,120,0,0,,0,,0,0,0,0,UP,1\n\
                   public_ready,issuer2,0,0,0,1,,7,0,0,,0,,0,0,0,0,MAINT,1\n\
                   public_ready,BACKEND,0,0,0,1,,127,0,0,,0,,0,0,0,0,UP,1\n\
                   admin_ready,issuer1,0,0,0,1,,3,0,0,,0,,0,0,0,0,UP,1\n\
                   public_live,issuer3,0,0,0,1,,2,0,0,,0,,0,0,0,0,MAINT (resolution),1\n";
        let s = parse_show_stat(csv);
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0],
            ServerState {
                backend: "public_ready".into(),
                server: "issuer1".into(),
                status: "UP".into(),
                stot: 120
            }
        );
        assert_eq!(s[1].status, "MAINT");
        assert_eq!((s[2].backend.as_str(), s[2].stot), ("public_live", 2));
        assert!(parse_show_stat("").is_empty());
    }

    #[test]
    fn port_blocks_are_free() {
        let b = free_port_block(5, 20_000, 32_000).unwrap();
        assert!((20_000..32_000).contains(&b));
        assert!(free_port_block(50, 10, 20).is_err());
    }

    #[test]
    fn pid_files_need_the_matching_start_time() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        let me = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let start = rest.split_whitespace().nth(19).unwrap().to_owned();
        std::fs::write(dir.path().join("run/x.pid"), format!("{me} {start}\n")).unwrap();
        assert_eq!(pid_of(dir.path(), "x"), Some(me));
        std::fs::write(dir.path().join("run/y.pid"), format!("{me} 1\n")).unwrap();
        assert_eq!(pid_of(dir.path(), "y"), None);
        assert_eq!(pid_of(dir.path(), "z"), None);
        assert!(rss_kib(me).is_some_and(|k| k > 0));
    }
}
