//! A real HAProxy in front of three issuers, on the very configuration users deploy
//! (`deploy/haproxy/haproxy.cfg`, whose addresses come from the environment), with free
//! loopback ports. The binary is `$HAPROXY`, else `haproxy` on `PATH` (`scripts/test.sh`
//! installs Debian's `haproxy`).
//!
//! HAProxy's view of its servers (up or down, connection errors, retries, redispatches) is
//! read from the stats page's CSV, so tests can see when it evicts a dead issuer.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use crate::{eventually, free_port, wait_http_ready};

pub fn haproxy_bin() -> PathBuf {
    std::env::var_os("HAPROXY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("haproxy"))
}

/// `deploy/haproxy/haproxy.cfg`.
pub fn config_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy/haproxy.cfg")
}

/// One issuer behind the load balancer: `127.0.0.1:<port>` of its two listeners.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub public: String,
    pub admin: String,
}

/// One row of HAProxy's statistics: a server of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStat {
    /// `public_ready`, `public_live`, `admin_ready` or `admin_live`.
    pub backend: String,
    /// `issuer1` to `issuer3`.
    pub server: String,
    /// `UP`, `DOWN`, `UP 1/2` (going down), `DOWN 1/2` (coming up), `MAINT`, ...
    pub status: String,
    /// Requests sent to it (`stot`: sessions).
    pub sessions: u64,
    /// Failed connections to it (`econ`).
    pub connection_errors: u64,
    /// Responses that failed (`eresp`: the server closed or reset the connection).
    pub response_errors: u64,
    /// Connection retries (`wretr`) and redispatches to another server (`wredis`).
    pub retries: u64,
    pub redispatches: u64,
}

/// A running HAProxy. Killed when dropped.
pub struct LoadBalancer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub public_port: u16,
    pub admin_port: u16,
    pub stats_port: u16,
    /// `http://127.0.0.1:<public port>`: the issuer URL.
    pub public: String,
    /// `http://127.0.0.1:<admin port>/admin/v1`.
    pub admin: String,
    http: reqwest::Client,
}

impl LoadBalancer {
    /// Starts HAProxy on `public_port` (chosen before the issuers start, since it is their
    /// issuer URL) in front of exactly three issuers, and waits until it answers `/readyz`
    /// through both frontends.
    pub async fn start(public_port: u16, upstreams: &[Upstream]) -> Result<LoadBalancer> {
        if upstreams.len() != 3 {
            bail!(
                "deploy/haproxy/haproxy.cfg has three issuers, not {}",
                upstreams.len()
            );
        }
        let mut last = None;
        for _ in 0..3 {
            let dir = tempfile::tempdir()?;
            let mut lb = LoadBalancer {
                child: None,
                dir,
                public_port,
                admin_port: free_port(),
                stats_port: free_port(),
                public: format!("http://127.0.0.1:{public_port}"),
                admin: String::new(),
                http: reqwest::Client::new(),
            };
            lb.admin = format!("http://127.0.0.1:{}/admin/v1", lb.admin_port);
            match lb.spawn(upstreams).await {
                Ok(()) => return Ok(lb),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("haproxy did not start")))
    }

    /// The environment `deploy/haproxy/haproxy.cfg` reads.
    fn env(&self, upstreams: &[Upstream]) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "SIGNET_LB_PUBLIC_BIND".into(),
                format!("127.0.0.1:{}", self.public_port),
            ),
            (
                "SIGNET_LB_ADMIN_BIND".into(),
                format!("127.0.0.1:{}", self.admin_port),
            ),
            (
                "SIGNET_LB_STATS_BIND".into(),
                format!("127.0.0.1:{}", self.stats_port),
            ),
            (
                "SIGNET_LB_STATE_DIR".into(),
                self.dir.path().display().to_string(),
            ),
        ];
        for (i, u) in upstreams.iter().enumerate() {
            env.push((format!("SIGNET_ISSUER_{}_PUBLIC", i + 1), u.public.clone()));
            env.push((format!("SIGNET_ISSUER_{}_ADMIN", i + 1), u.admin.clone()));
        }
        env
    }

    async fn spawn(&mut self, upstreams: &[Upstream]) -> Result<()> {
        let bin = haproxy_bin();
        let mut child = Command::new(&bin)
            .arg("-db")
            .arg("-f")
            .arg(config_file())
            .envs(self.env(upstreams))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {}: run scripts/test.sh (it installs haproxy) or set HAPROXY",
                    bin.display()
                )
            })?;
        for url in [
            format!("{}/readyz", self.public),
            format!("http://127.0.0.1:{}/readyz", self.admin_port),
        ] {
            let ok = wait_http_ready(&self.http, &url, || {
                child.try_wait().ok().flatten().is_some()
            })
            .await?;
            if !ok {
                bail!("haproxy exited at start (port taken?)");
            }
        }
        self.child = Some(child);
        Ok(())
    }

    /// What HAProxy says of each issuer in each backend.
    pub async fn servers(&self) -> Result<Vec<ServerStat>> {
        let csv = self
            .http
            .get(format!("http://127.0.0.1:{}/;csv", self.stats_port))
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        parse_stats(&csv)
    }

    /// One server of one backend.
    pub async fn server(&self, backend: &str, server: &str) -> Result<ServerStat> {
        self.servers()
            .await?
            .into_iter()
            .find(|s| s.backend == backend && s.server == server)
            .with_context(|| format!("no server {backend}/{server} in HAProxy's stats"))
    }

    /// Polls until `backend/server` has exactly `status` (`UP` or `DOWN`); returns how long
    /// it took.
    pub async fn wait_status(
        &self,
        backend: &str,
        server: &str,
        status: &str,
        patience: Duration,
    ) -> Result<Duration> {
        let start = Instant::now();
        eventually(patience, || async {
            let s = self.server(backend, server).await.ok()?;
            (s.status == status).then_some(())
        })
        .await
        .with_context(|| format!("HAProxy never said {backend}/{server} is {status}"))?;
        Ok(start.elapsed())
    }
}

/// Parses HAProxy's stats CSV (`# pxname,svname,...` then one line per proxy or server)
/// into the server rows.
pub fn parse_stats(csv: &str) -> Result<Vec<ServerStat>> {
    let mut lines = csv.lines();
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .context("the stats CSV has no header")?;
    let columns: Vec<&str> = header.split(',').collect();
    let col = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .with_context(|| format!("no column {name} in the stats CSV"))
    };
    let (px, sv, status) = (col("pxname")?, col("svname")?, col("status")?);
    let (stot, econ, eresp, wretr, wredis) = (
        col("stot")?,
        col("econ")?,
        col("eresp")?,
        col("wretr")?,
        col("wredis")?,
    );
    let mut out = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < columns.len() || matches!(f[sv], "FRONTEND" | "BACKEND") {
            continue;
        }
        let num = |i: usize| f[i].parse::<u64>().unwrap_or(0);
        out.push(ServerStat {
            backend: f[px].to_owned(),
            server: f[sv].to_owned(),
            status: f[status].to_owned(),
            sessions: num(stot),
            connection_errors: num(econ),
            response_errors: num(eresp),
            retries: num(wretr),
            redispatches: num(wredis),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_csv_parses() {
        let csv = "# pxname,svname,qcur,stot,econ,eresp,wretr,wredis,status,\n\
                   public,FRONTEND,,10,,,,,OPEN,\n\
                   public_ready,issuer1,0,7,2,1,3,1,DOWN,\n\
                   public_ready,issuer2,0,5,0,0,0,0,UP 1/2,\n\
                   public_ready,BACKEND,0,12,2,1,3,1,UP,\n";
        let rows = parse_stats(csv).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            ServerStat {
                backend: "public_ready".into(),
                server: "issuer1".into(),
                status: "DOWN".into(),
                sessions: 7,
                connection_errors: 2,
                response_errors: 1,
                retries: 3,
                redispatches: 1,
            }
        );
        assert_eq!(rows[1].status, "UP 1/2");
    }
}
