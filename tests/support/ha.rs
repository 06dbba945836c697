//! A Signet cluster laid out for high availability, on loopback, for the fault tests: a
//! 3-node NATS JetStream cluster with the users and permissions of
//! `deploy/nats/accounts.conf`, Redis with a primary, two replicas and three Sentinels on
//! `deploy/redis/sentinel/redis.conf`, two key managers, three issuers (streams and buckets
//! with 3 replicas) and HAProxy on `deploy/haproxy/haproxy.cfg` in front ([`crate::lb`]).
//!
//! The same layout as `deploy/local/cluster.sh`, built from the test helpers so that each
//! piece can be killed, restarted and inspected. Every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::cluster::{IssuerNode, Proc};
use crate::lb::{LoadBalancer, Upstream};
use crate::nats::nats_server_bin;
use crate::redis::{command, redis_server_bin, RedisServer, Reply};
use crate::{eventually, free_port, wait_http_ready};

/// `deploy/` in this checkout.
pub fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The passwords of the users in `deploy/nats/accounts.conf`.
#[derive(Debug, Clone)]
pub struct NatsPasswords {
    pub keymanager: String,
    pub issuer: String,
    pub verifier: String,
    pub sys: String,
}

impl NatsPasswords {
    fn generate() -> Result<NatsPasswords> {
        Ok(NatsPasswords {
            keymanager: random_hex(24)?,
            issuer: random_hex(24)?,
            verifier: random_hex(24)?,
            sys: random_hex(24)?,
        })
    }

    fn env(&self) -> [(&'static str, &str); 4] {
        [
            ("SIGNET_NATS_KEYMANAGER_PASSWORD", &self.keymanager),
            ("SIGNET_NATS_ISSUER_PASSWORD", &self.issuer),
            ("SIGNET_NATS_VERIFIER_PASSWORD", &self.verifier),
            ("SIGNET_NATS_SYS_PASSWORD", &self.sys),
        ]
    }

    /// The password of `user` (`keymanager`, `issuer`, `verifier` or `sys`).
    pub fn of(&self, user: &str) -> &str {
        match user {
            "keymanager" => &self.keymanager,
            "issuer" => &self.issuer,
            "verifier" => &self.verifier,
            "sys" => &self.sys,
            other => panic!("no NATS user {other} in deploy/nats/accounts.conf"),
        }
    }
}

/// One server of the NATS cluster.
pub struct NatsNode {
    child: Option<Child>,
    /// `signet-nats-<n>`: JetStream's name for it (stream leaders are named so).
    pub name: String,
    pub port: u16,
    pub monitor_port: u16,
    conf: PathBuf,
}

/// Three `nats-server` with JetStream, clustered, `sync_interval: always`, and the accounts
/// of `deploy/nats/accounts.conf`. Killed when dropped.
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
    pub passwords: NatsPasswords,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl NatsCluster {
    pub async fn start() -> Result<NatsCluster> {
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start().await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("the NATS cluster did not start")))
    }

    async fn try_start() -> Result<NatsCluster> {
        let dir = tempfile::tempdir()?;
        std::fs::copy(
            deploy_dir().join("nats/accounts.conf"),
            dir.path().join("accounts.conf"),
        )?;
        let ports: Vec<(u16, u16, u16)> = (0..3)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let routes: String = ports
            .iter()
            .map(|(_, route, _)| format!("    nats-route://127.0.0.1:{route}\n"))
            .collect();
        let mut nodes = Vec::new();
        for (i, (port, route, monitor)) in ports.iter().enumerate() {
            let name = format!("signet-nats-{}", i + 1);
            let store = dir.path().join(format!("data-{}", i + 1));
            let conf = dir.path().join(format!("nats-{}.conf", i + 1));
            std::fs::write(
                &conf,
                format!(
                    "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\n\
                     jetstream {{\n  store_dir: \"{store}\"\n  sync_interval: always\n  \
                     max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n\
                     cluster {{\n  name: signet-test\n  listen: 127.0.0.1:{route}\n  \
                     routes: [\n{routes}  ]\n}}\ninclude \"accounts.conf\"\n",
                    store = store.display(),
                ),
            )?;
            nodes.push(NatsNode {
                child: None,
                name,
                port: *port,
                monitor_port: *monitor,
                conf,
            });
        }
        let mut cluster = NatsCluster {
            nodes,
            passwords: NatsPasswords::generate()?,
            _dir: dir,
            http: reqwest::Client::new(),
        };
        for i in 0..3 {
            cluster.spawn(i)?;
        }
        for i in 0..3 {
            cluster.wait_healthy(i).await?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let bin = nats_server_bin();
        let node = &mut self.nodes[i];
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&node.conf)
            .envs(self.passwords.env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {}: run scripts/test.sh (it installs nats-server) or set NATS_SERVER",
                    bin.display()
                )
            })?;
        node.child = Some(child);
        Ok(())
    }

    /// Waits until node `i` answers `/healthz` with 200: JetStream runs, the cluster has a
    /// meta leader, and this node's replicas of every stream are current.
    pub async fn wait_healthy(&mut self, i: usize) -> Result<()> {
        let url = format!("http://127.0.0.1:{}/healthz", self.nodes[i].monitor_port);
        let http = self.http.clone();
        let node = &mut self.nodes[i];
        let ok = wait_http_ready(&http, &url, || {
            node.child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some())
        })
        .await?;
        if !ok {
            bail!("{} exited (port taken?)", node.name);
        }
        Ok(())
    }

    /// `nats://user:password@127.0.0.1:<port>,...` over every node.
    pub fn url(&self, user: &str) -> String {
        let password = self.passwords.of(user);
        self.nodes
            .iter()
            .map(|n| format!("nats://{user}:{password}@127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILL node `i` (a crash) and wait for it to exit.
    pub async fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.start_kill()?;
            tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .context("nats-server did not die")??;
        }
        Ok(())
    }

    /// Starts node `i` again on its storage and waits until it is healthy (caught up).
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i).await?;
        self.spawn(i)?;
        self.wait_healthy(i).await
    }

    /// Whether node `i` knows `stream` in the SIGNET account.
    pub async fn has_stream(&self, i: usize, stream: &str) -> bool {
        self.stream_state(i, stream).await.is_ok()
    }

    /// What node `i` knows of `stream` in the SIGNET account (`/jsz`): its leader's server
    /// name and this node's last sequence.
    pub async fn stream_state(&self, i: usize, stream: &str) -> Result<(String, u64)> {
        let jsz: Value = self
            .http
            .get(format!(
                "http://127.0.0.1:{}/jsz?accounts=true&streams=true",
                self.nodes[i].monitor_port
            ))
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .json()
            .await?;
        let streams = jsz["account_details"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten());
        for s in streams {
            if s["name"] == stream {
                let leader = s["cluster"]["leader"].as_str().unwrap_or_default();
                let last = s["state"]["last_seq"].as_u64().unwrap_or(0);
                return Ok((leader.to_owned(), last));
            }
        }
        bail!("node {i} does not know stream {stream}")
    }
}

/// A `redis-server --sentinel`. Killed when dropped.
pub struct Sentinel {
    _child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// Redis for the cluster: a primary and two replicas including
/// `deploy/redis/sentinel/redis.conf` (`min-replicas-to-write 1`), watched by three Sentinels
/// (quorum 2, down after 1 s).
pub struct RedisHa {
    /// The primary at start, then the two replicas.
    pub nodes: Vec<RedisServer>,
    pub sentinels: Vec<Sentinel>,
}

impl RedisHa {
    /// The Sentinels' name of the primary.
    pub const MASTER: &'static str = "signet";

    pub async fn start() -> Result<RedisHa> {
        let include = deploy_dir().join("redis/sentinel/redis.conf");
        let include = include.display().to_string();
        let primary = RedisServer::start_with(&["--include", &include]).await?;
        let port = primary.port.to_string();
        let mut nodes = vec![primary];
        for _ in 0..2 {
            nodes.push(
                RedisServer::start_with(&[
                    "--include",
                    &include,
                    "--replicaof",
                    "127.0.0.1",
                    &port,
                ])
                .await?,
            );
        }
        for node in &nodes[1..] {
            let p = node.port;
            eventually(Duration::from_secs(60), || async move {
                let info = command(p, &["INFO", "replication"]).await.ok()?.text()?;
                info.contains("master_link_status:up").then_some(())
            })
            .await
            .context("a replica never synced with the primary")?;
        }
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels.push(start_sentinel(nodes[0].port).await?);
        }
        let ha = RedisHa { nodes, sentinels };
        ha.wait_sentinels().await?;
        Ok(ha)
    }

    /// Waits until every Sentinel knows both replicas and the two other Sentinels (so that
    /// two of them can agree on a failover).
    pub async fn wait_sentinels(&self) -> Result<()> {
        for s in &self.sentinels {
            let port = s.port;
            eventually(Duration::from_secs(60), || async move {
                let reply = command(port, &["SENTINEL", "MASTER", Self::MASTER])
                    .await
                    .ok()?;
                let fields: Vec<String> = reply.items().iter().filter_map(Reply::text).collect();
                let get = |k: &str| {
                    fields
                        .chunks(2)
                        .find(|kv| kv[0] == k)
                        .and_then(|kv| kv.get(1).cloned())
                };
                (get("num-slaves").as_deref() == Some("2")
                    && get("num-other-sentinels").as_deref() == Some("2"))
                .then_some(())
            })
            .await
            .with_context(|| format!("sentinel {port} never saw the whole set"))?;
        }
        Ok(())
    }

    /// Waits until no failover is under way: every Sentinel names the same primary and
    /// flags it plain `master` (not down, no failover in progress). A failover that has just
    /// ended may be followed by another one while the promotion settles; this waits that out
    /// too; and until the primary has an online replica, so that it takes writes. Returns
    /// the primary's port.
    pub async fn wait_settled(&self) -> Result<u16> {
        eventually(Duration::from_secs(60), || async {
            let mut agreed = None;
            for s in &self.sentinels {
                let reply = command(s.port, &["SENTINEL", "MASTER", Self::MASTER])
                    .await
                    .ok()?;
                let fields: Vec<String> = reply.items().iter().filter_map(Reply::text).collect();
                let get = |k: &str| {
                    fields
                        .chunks(2)
                        .find(|kv| kv[0] == k)
                        .and_then(|kv| kv.get(1).cloned())
                };
                if get("flags").as_deref() != Some("master") {
                    return None;
                }
                let port: u16 = get("port")?.parse().ok()?;
                if *agreed.get_or_insert(port) != port {
                    return None;
                }
            }
            // And the primary can write: a replica is online (`min-replicas-to-write`; a
            // replica re-attached to a new primary is not while its full sync runs).
            let port = agreed?;
            let info = command(port, &["INFO", "replication"]).await.ok()?.text()?;
            (info.contains("role:master") && info.contains("state=online")).then_some(port)
        })
        .await
        .context("the Sentinels never settled on one primary")
    }

    /// `redis+sentinel://127.0.0.1:<s1>,.../signet`.
    pub fn url(&self) -> String {
        let addrs: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{}", addrs.join(","), Self::MASTER)
    }

    /// The primary's port according to the first Sentinel that answers.
    pub async fn master_port(&self) -> Result<u16> {
        for s in &self.sentinels {
            if let Ok(reply) = command(
                s.port,
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", Self::MASTER],
            )
            .await
            {
                if let Some(port) = reply.items().get(1).and_then(Reply::text) {
                    return Ok(port.parse()?);
                }
            }
        }
        bail!("no sentinel named a primary")
    }

    /// The node listening on `port`.
    pub fn node_mut(&mut self, port: u16) -> Option<&mut RedisServer> {
        self.nodes.iter_mut().find(|n| n.port == port)
    }
}

async fn start_sentinel(master_port: u16) -> Result<Sentinel> {
    let mut last = None;
    for _ in 0..5 {
        let port = free_port();
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("sentinel.conf");
        let name = RedisHa::MASTER;
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 10000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir = dir.path().display(),
            ),
        )?;
        let mut child = Command::new(redis_server_bin())
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run redis-server --sentinel")?;
        let up = eventually(Duration::from_secs(30), || {
            let exited = child.try_wait().ok().flatten().is_some();
            async move {
                if exited {
                    return Some(false);
                }
                matches!(command(port, &["PING"]).await, Ok(Reply::Simple(s)) if s == "PONG")
                    .then_some(true)
            }
        })
        .await?;
        if up {
            return Ok(Sentinel {
                _child: child,
                port,
                _dir: dir,
            });
        }
        last = Some(anyhow::anyhow!(
            "redis-server --sentinel exited (port taken?)"
        ));
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("sentinel did not start")))
}

/// The whole cluster behind HAProxy.
pub struct HaCluster {
    pub nats: NatsCluster,
    pub redis: RedisHa,
    pub dir: tempfile::TempDir,
    pub secret_file: PathBuf,
    pub kek_file: PathBuf,
    /// The issuer URL: the load balancer's public address.
    pub issuer: String,
    pub admin_secret: String,
    pub keymanagers: Vec<Option<Proc>>,
    pub issuers: Vec<IssuerNode>,
    pub lb: LoadBalancer,
    pub http: reqwest::Client,
}

impl HaCluster {
    /// Everything up and ready; `issuer_args` are added to every issuer's command line.
    pub async fn start(issuer_args: &[&str]) -> Result<HaCluster> {
        let (nats, redis) = tokio::try_join!(NatsCluster::start(), RedisHa::start())?;
        let dir = tempfile::tempdir()?;
        let secret_file = dir.path().join("cluster-secret");
        let kek_file = dir.path().join("kek");
        for file in [&secret_file, &kek_file] {
            let mut bytes = [0u8; 32];
            std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
            std::fs::write(
                file,
                base64::engine::general_purpose::STANDARD.encode(bytes),
            )?;
        }
        let public_port = free_port();
        let http = reqwest::Client::new();
        // The first key manager creates the streams, buckets and first keys; the others
        // start once it has, rather than all racing to create them.
        let mut first = Starting::keymanager(&nats, &kek_file, &secret_file).await?;
        {
            let nats = &nats;
            poll_starting(
                std::slice::from_mut(&mut first),
                Duration::from_secs(120),
                "the first key manager to set up JetStream",
                || async move { nats.has_stream(0, "KV_SIGNET_LOCKS").await },
            )
            .await?;
        }
        let mut starting = vec![
            first,
            Starting::keymanager(&nats, &kek_file, &secret_file).await?,
        ];
        let issuer = format!("http://127.0.0.1:{public_port}");
        let admin_secret = format!("ha-admin-secret-{}", random_hex(12)?);
        let mut listens = Vec::new();
        for i in 0..3 {
            let (port, admin_port) = (free_port(), free_port());
            let mut args: Vec<String> = vec![
                "issuer".into(),
                "--replicas".into(),
                "3".into(),
                "--cluster-secret-file".into(),
                secret_file.display().to_string(),
                "--issuer".into(),
                issuer.clone(),
                "--issuer-id".into(),
                format!("issuer-{}", i + 1),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--admin-listen".into(),
                format!("127.0.0.1:{admin_port}"),
                "--redis".into(),
                redis.url(),
            ];
            args.extend(issuer_args.iter().map(|s| s.to_string()));
            let env = vec![
                ("SIGNET_NATS_URL", nats.url("issuer")),
                ("SIGNET_ADMIN_CLIENT_SECRET", admin_secret.clone()),
            ];
            starting.push(Starting::spawn(format!("issuer-{}", i + 1), args, env).await?);
            listens.push((port, admin_port));
        }
        // Every issuer ready; a process that exits meanwhile is started again.
        {
            let (http, listens) = (&http, &listens);
            poll_starting(
                &mut starting,
                Duration::from_secs(180),
                "the issuers to be ready",
                || async move {
                    for (port, _) in listens {
                        let r = http
                            .get(format!("http://127.0.0.1:{port}/readyz"))
                            .send()
                            .await;
                        if !matches!(r, Ok(r) if r.status() == 200) {
                            return false;
                        }
                    }
                    true
                },
            )
            .await?;
        }
        let mut procs = starting.into_iter().map(|s| s.proc);
        let keymanagers = vec![procs.next(), procs.next()];
        let issuers: Vec<IssuerNode> = procs
            .zip(&listens)
            .map(|(proc, (port, admin_port))| IssuerNode {
                proc,
                public: format!("http://127.0.0.1:{port}"),
                admin: format!("http://127.0.0.1:{admin_port}/admin/v1"),
            })
            .collect();
        let upstreams: Vec<Upstream> = issuers
            .iter()
            .map(|n| Upstream {
                public: n.public.trim_start_matches("http://").to_owned(),
                admin: n
                    .admin
                    .trim_start_matches("http://")
                    .trim_end_matches("/admin/v1")
                    .to_owned(),
            })
            .collect();
        let lb = LoadBalancer::start(public_port, &upstreams).await?;
        Ok(HaCluster {
            nats,
            redis,
            dir,
            secret_file,
            kek_file,
            issuer,
            admin_secret,
            keymanagers,
            issuers,
            lb,
            http,
        })
    }

    /// `client_credentials` at `base` (the load balancer's issuer URL or one issuer's).
    pub async fn token(
        &self,
        base: &str,
        id: &str,
        secret: &str,
        scope: Option<&str>,
    ) -> Result<(u16, Value)> {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let r = self
            .http
            .post(format!("{base}/oauth2/token"))
            .basic_auth(id, Some(secret))
            .form(&form)
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// An admin token, through the load balancer.
    pub async fn admin_token(&self) -> Result<String> {
        let (status, body) = self
            .token(
                &self.issuer,
                "signet-admin",
                &self.admin_secret,
                Some("signet.admin"),
            )
            .await?;
        if status != 200 {
            bail!("admin token through the load balancer: {status} {body}");
        }
        Ok(body["access_token"].as_str().unwrap_or_default().to_owned())
    }

    /// An admin call with `token` at `admin` (`.../admin/v1` of the load balancer or of
    /// one issuer).
    pub async fn admin_call(
        &self,
        admin: &str,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{admin}{path}"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            },
        ))
    }
}

/// A key manager or issuer being started: started again (at most 3 times) when it exits
/// before the cluster is ready, as systemd's `Restart=on-failure` would. A process meeting
/// a JetStream cluster that is still settling (a new stream's leader being elected, a new
/// consumer not yet known to every server) may give up at start-up.
struct Starting {
    name: String,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    proc: Proc,
    restarts: usize,
}

impl Starting {
    async fn spawn(
        name: String,
        args: Vec<String>,
        env: Vec<(&'static str, String)>,
    ) -> Result<Starting> {
        let proc = Proc::spawn(args.clone(), &env).await?;
        Ok(Starting {
            name,
            args,
            env,
            proc,
            restarts: 0,
        })
    }

    async fn keymanager(nats: &NatsCluster, kek: &Path, secret: &Path) -> Result<Starting> {
        Starting::spawn(
            "keymanager".into(),
            vec![
                "keymanager".into(),
                "--replicas".into(),
                "3".into(),
                "--kek-file".into(),
                kek.display().to_string(),
                "--cluster-secret-file".into(),
                secret.display().to_string(),
            ],
            vec![("SIGNET_NATS_URL", nats.url("keymanager"))],
        )
        .await
    }

    /// Starts the process again if it exited; fails once it exited more than 3 times.
    async fn keep_running(&mut self) -> Result<()> {
        if !self.proc.exited() {
            return Ok(());
        }
        if self.restarts >= 3 {
            bail!("{} kept exiting at start-up", self.name);
        }
        self.restarts += 1;
        eprintln!(
            "ha: {} exited at start-up; starting it again (as systemd's Restart=on-failure would)",
            self.name
        );
        self.proc = Proc::spawn(self.args.clone(), &self.env).await?;
        Ok(())
    }
}

/// Polls `ready` until it is true, for at most `patience`, keeping `procs` running.
async fn poll_starting<F, Fut>(
    procs: &mut [Starting],
    patience: Duration,
    what: &str,
    mut ready: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        for p in procs.iter_mut() {
            p.keep_running().await?;
        }
        if ready().await {
            return Ok(());
        }
        if start.elapsed() > patience {
            bail!("timed out after {patience:?} waiting for {what}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
