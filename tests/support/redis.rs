//! Real `redis-server` processes on free loopback ports with temporary directories, for the
//! store's contract and integration tests: a single server ([`RedisServer`]), a 3-primary
//! Redis Cluster ([`RedisCluster`]) and a master + replica watched by one Sentinel
//! ([`RedisSentinel`]). Nothing is persisted (`--save ""`, `--appendonly no`).
//!
//! The binaries are `$REDIS_SERVER` and `$REDIS_CLI`, else `redis-server` and `redis-cli` on
//! `PATH` (`scripts/test.sh` installs Debian's `redis-server` and `redis-tools`). Readiness is
//! polled over RESP with bounded patience, never a fixed sleep.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::{eventually, free_port};

/// How long a server may take to answer its first `PING`.
const START_PATIENCE: Duration = Duration::from_secs(30);

pub fn redis_server_bin() -> PathBuf {
    std::env::var_os("REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

pub fn redis_cli_bin() -> PathBuf {
    std::env::var_os("REDIS_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-cli"))
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text: simple and bulk strings, integers; `None` for anything else.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Int(n) => Some(n.to_string()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    pub fn items(&self) -> &[Reply] {
        match self {
            Reply::Array(Some(items)) => items,
            _ => &[],
        }
    }
}

/// Parses one RESP2 reply from the start of `buf`: the reply and its length, or `None` when
/// `buf` holds only part of it.
fn parse_reply(buf: &[u8]) -> Option<(Reply, usize)> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = String::from_utf8_lossy(&buf[1..line_end]).into_owned();
    let after = line_end + 2;
    match buf.first()? {
        b'+' => Some((Reply::Simple(line), after)),
        b'-' => Some((Reply::Error(line), after)),
        b':' => Some((Reply::Int(line.parse().ok()?), after)),
        b'$' => {
            let len: i64 = line.parse().ok()?;
            if len < 0 {
                return Some((Reply::Bulk(None), after));
            }
            let end = after + usize::try_from(len).ok()?;
            if buf.len() < end + 2 {
                return None;
            }
            Some((Reply::Bulk(Some(buf[after..end].to_vec())), end + 2))
        }
        b'*' => {
            let len: i64 = line.parse().ok()?;
            if len < 0 {
                return Some((Reply::Array(None), after));
            }
            let mut at = after;
            let mut items = Vec::new();
            for _ in 0..len {
                let (item, used) = parse_reply(&buf[at..])?;
                items.push(item);
                at += used;
            }
            Some((Reply::Array(Some(items)), at))
        }
        _ => Some((Reply::Error(format!("unparsable reply: {line}")), after)),
    }
}

/// Sends one command to `127.0.0.1:port` on a fresh connection and reads its reply.
pub async fn command(port: u16, args: &[&str]) -> Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    stream.write_all(&out).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some((reply, _)) = parse_reply(&buf) {
            return Ok(reply);
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .context("redis reply timed out")??;
        if n == 0 {
            bail!("redis closed the connection before replying");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A running `redis-server`. Killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    /// `redis://127.0.0.1:<port>`.
    pub url: String,
}

impl RedisServer {
    /// Starts a plain server.
    pub async fn start() -> Result<RedisServer> {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra `redis-server` arguments (retrying on a taken port).
    pub async fn start_with(extra: &[&str]) -> Result<RedisServer> {
        let mut last = None;
        for _ in 0..5 {
            let port = free_port();
            let mut s = RedisServer {
                child: None,
                port,
                dir: tempfile::tempdir()?,
                extra: extra.iter().map(|s| s.to_string()).collect(),
                url: format!("redis://127.0.0.1:{port}"),
            };
            match s.spawn().await {
                Ok(()) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) -> Result<()> {
        let bin = redis_server_bin();
        let mut child = Command::new(&bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {}: run scripts/test.sh (it installs redis-server) or set REDIS_SERVER",
                    bin.display()
                )
            })?;
        let port = self.port;
        let ok = eventually(START_PATIENCE, || {
            let exited = child.try_wait().ok().flatten().is_some();
            async move {
                if exited {
                    return Some(false);
                }
                match command(port, &["PING"]).await {
                    Ok(Reply::Simple(s)) if s == "PONG" => Some(true),
                    _ => None,
                }
            }
        })
        .await?;
        if !ok {
            bail!("redis-server exited at start (port taken?)");
        }
        self.child = Some(child);
        Ok(())
    }

    /// One command to this server.
    pub async fn command(&self, args: &[&str]) -> Result<Reply> {
        command(self.port, args).await
    }

    /// Starts watching every command this server runs (`MONITOR`).
    pub async fn monitor(&self) -> Result<Monitor> {
        Monitor::start(self.port).await
    }

    /// Kills the server (SIGKILL: as abrupt as a crash) and waits for it to exit.
    pub async fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill()?;
            tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .context("redis-server did not die")??;
        }
        Ok(())
    }

    /// Restarts on the same port, or starts again after [`RedisServer::kill`] (empty:
    /// nothing is persisted).
    pub async fn restart(&mut self) -> Result<()> {
        self.kill().await?;
        self.spawn().await
    }
}

/// Three `redis-server --cluster-enabled yes` primaries joined with
/// `redis-cli --cluster create` (no replicas), all 16384 slots served.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub async fn start() -> Result<RedisCluster> {
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start().await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis cluster did not start")))
    }

    async fn try_start() -> Result<RedisCluster> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            // The cluster bus gets its own free port (the default, port + 10000, may be taken).
            let bus = free_port().to_string();
            nodes.push(
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    "--cluster-port",
                    &bus,
                ])
                .await?,
            );
        }
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        let cli = redis_cli_bin();
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            Command::new(&cli)
                .args(["--cluster", "create"])
                .args(&addrs)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .context("redis-cli --cluster create timed out")?
        .with_context(|| {
            format!(
                "cannot run {}: run scripts/test.sh (it installs redis-tools) or set REDIS_CLI",
                cli.display()
            )
        })?;
        if !output.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_ok().await?;
        Ok(cluster)
    }

    /// Waits until every node says `cluster_state:ok` and knows all three primaries.
    pub async fn wait_ok(&self) -> Result<()> {
        for node in &self.nodes {
            let port = node.port;
            eventually(Duration::from_secs(60), || async move {
                let info = command(port, &["CLUSTER", "INFO"]).await.ok()?.text()?;
                (info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3"))
                    .then_some(())
            })
            .await
            .with_context(|| format!("cluster node {port} never reached cluster_state:ok"))?;
        }
        Ok(())
    }

    /// `127.0.0.1:<port>` of each primary.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }
}

/// A master, one replica of it, and one Sentinel (quorum 1) watching them under
/// [`RedisSentinel::MASTER`], with a 1 s down-after so a failover takes a few seconds.
pub struct RedisSentinel {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel: RedisServer,
}

impl RedisSentinel {
    pub const MASTER: &'static str = "signet-master";

    pub async fn start() -> Result<RedisSentinel> {
        let master = RedisServer::start().await?;
        let replica_of = master.port.to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &replica_of]).await?;
        let mut last = None;
        for _ in 0..5 {
            match Self::start_sentinel(&master).await {
                Ok(sentinel) => {
                    let s = RedisSentinel {
                        master,
                        replica,
                        sentinel,
                    };
                    s.wait_ready().await?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis sentinel did not start")))
    }

    async fn start_sentinel(master: &RedisServer) -> Result<RedisServer> {
        let port = free_port();
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("sentinel.conf");
        let name = Self::MASTER;
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {name} 127.0.0.1 {mport} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 10000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir = dir.path().display(),
                mport = master.port,
            ),
        )?;
        let bin = redis_server_bin();
        let mut child = Command::new(&bin)
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {} --sentinel", bin.display()))?;
        let ok = eventually(START_PATIENCE, || {
            let exited = child.try_wait().ok().flatten().is_some();
            async move {
                if exited {
                    return Some(false);
                }
                match command(port, &["PING"]).await {
                    Ok(Reply::Simple(s)) if s == "PONG" => Some(true),
                    _ => None,
                }
            }
        })
        .await?;
        if !ok {
            bail!("redis-server --sentinel exited at start (port taken?)");
        }
        Ok(RedisServer {
            child: Some(child),
            port,
            dir,
            extra: Vec::new(),
            url: format!("redis://127.0.0.1:{port}"),
        })
    }

    /// Waits until the replica is in sync and the Sentinel knows it (so it can fail over).
    async fn wait_ready(&self) -> Result<()> {
        let replica = self.replica.port;
        eventually(Duration::from_secs(60), || async move {
            let info = command(replica, &["INFO", "replication"])
                .await
                .ok()?
                .text()?;
            info.contains("master_link_status:up").then_some(())
        })
        .await
        .context("the replica never synced with the master")?;
        let sentinel = self.sentinel.port;
        eventually(Duration::from_secs(60), || async move {
            let replicas = command(sentinel, &["SENTINEL", "REPLICAS", Self::MASTER])
                .await
                .ok()?;
            (!replicas.items().is_empty()).then_some(())
        })
        .await
        .context("the sentinel never discovered the replica")?;
        Ok(())
    }

    /// The port of the master the Sentinel currently names.
    pub async fn master_port(&self) -> Result<u16> {
        let reply = command(
            self.sentinel.port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", Self::MASTER],
        )
        .await?;
        let port = reply
            .items()
            .get(1)
            .and_then(Reply::text)
            .context("sentinel named no master")?;
        Ok(port.parse()?)
    }

    /// `127.0.0.1:<port>` of the Sentinel.
    pub fn sentinel_addr(&self) -> String {
        self.sentinel.addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse() {
        assert_eq!(
            parse_reply(b"+PONG\r\n"),
            Some((Reply::Simple("PONG".into()), 7))
        );
        assert_eq!(parse_reply(b"$5\r\nhel"), None);
        assert_eq!(
            parse_reply(b"*2\r\n$1\r\na\r\n:7\r\n"),
            Some((
                Reply::Array(Some(vec![Reply::Bulk(Some(b"a".to_vec())), Reply::Int(7)])),
                15
            ))
        );
        assert_eq!(parse_reply(b"$-1\r\n"), Some((Reply::Bulk(None), 5)));
    }
}

/// A `MONITOR` connection: the commands a server ran, those sent by clients (one round trip
/// each) apart from those a script ran.
pub struct Monitor {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, bool)>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The commands seen in one window, by name: `(name, how many)`.
#[derive(Debug, Default, PartialEq)]
pub struct Commands {
    /// Sent by clients: each one a round trip.
    pub round_trips: Vec<(String, usize)>,
    /// Run inside scripts (`EVALSHA`), no round trip of their own.
    pub in_scripts: Vec<(String, usize)>,
}

impl Commands {
    pub fn total_round_trips(&self) -> usize {
        self.round_trips.iter().map(|(_, n)| n).sum()
    }
}

impl Monitor {
    async fn start(port: u16) -> Result<Monitor> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"*1\r\n$7\r\nMONITOR\r\n").await?;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ok_tx, ok_rx) = tokio::sync::oneshot::channel();
        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut ok = Some(ok_tx);
                let mut lines = tokio::io::BufReader::new(stream);
                let mut line = String::new();
                while tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line)
                    .await
                    .is_ok_and(|n| n > 0)
                {
                    // `+OK`, then `+<time> [<db> <client>|lua] "<command>" "<arg>"...`
                    if let Some((source, rest)) =
                        line.split_once(" [").and_then(|(_, r)| r.split_once("] "))
                    {
                        let name = rest.split('"').nth(1).unwrap_or_default().to_lowercase();
                        let from_script = source.ends_with("lua");
                        if let Ok(mut s) = seen.lock() {
                            s.push((name, from_script));
                        }
                    } else if let Some(tx) = ok.take() {
                        let _ = tx.send(());
                    }
                    line.clear();
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(10), ok_rx)
            .await
            .context("MONITOR did not answer")??;
        Ok(Monitor { port, seen, task })
    }

    /// The commands run since the last call (or since the start), ending with a marker
    /// command this sends and waits for, so nothing run before the call is missed.
    pub async fn take(&self) -> Result<Commands> {
        command(self.port, &["ECHO", "signet-monitor-marker"]).await?;
        let seen = eventually(Duration::from_secs(10), || async {
            let mut s = self.seen.lock().ok()?;
            let end = s.iter().position(|(name, _)| name == "echo")?;
            let window: Vec<(String, bool)> = s.drain(..=end).collect();
            Some(window)
        })
        .await?;
        let mut out = Commands::default();
        for (name, from_script) in &seen[..seen.len() - 1] {
            let list = if *from_script {
                &mut out.in_scripts
            } else {
                &mut out.round_trips
            };
            match list.iter_mut().find(|(n, _)| n == name) {
                Some((_, count)) => *count += 1,
                None => list.push((name.clone(), 1)),
            }
        }
        Ok(out)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}
