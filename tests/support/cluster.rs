//! A Signet cluster on loopback for tests: real `nats-server`, `signet keymanager` and
//! `signet issuer` processes. All issuers share one issuer URL (as behind a load balancer).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use tokio::process::{Child, Command};

use crate::nats::NatsServer;
use crate::redis::RedisServer;
use crate::{free_port, signet_bin, wait_http_ready};

/// A `signet` process (key manager or issuer). Killed when dropped.
pub struct Proc {
    child: Child,
    pub args: Vec<String>,
}

impl Proc {
    pub async fn spawn(args: Vec<String>, env: &[(&str, String)]) -> Result<Proc> {
        let mut cmd = Command::new(signet_bin());
        cmd.args(&args)
            .env_remove("SIGNET_ADMIN_CLIENT_SECRET")
            .env("SIGNET_LOG", crate::default_log_filter())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Ok(Proc {
            child: cmd.spawn().context("spawn signet")?,
            args,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// SIGKILL (a crash) and wait.
    pub async fn kill(mut self) -> Result<()> {
        self.child.start_kill()?;
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??;
        Ok(())
    }

    /// SIGTERM and wait.
    pub async fn stop(mut self) -> Result<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        Ok(tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??)
    }
}

/// One issuer node: its process and where it listens.
pub struct IssuerNode {
    pub proc: Proc,
    /// `http://127.0.0.1:<public port>` (not the issuer URL, which is shared).
    pub public: String,
    /// `http://127.0.0.1:<admin port>/admin/v1`.
    pub admin: String,
}

pub struct Cluster {
    pub nats: NatsServer,
    /// The issuers' short-lived state store (`--redis`).
    pub redis: RedisServer,
    pub dir: tempfile::TempDir,
    pub secret_file: PathBuf,
    pub kek_file: PathBuf,
    /// The issuer URL every node signs with.
    pub issuer: String,
    pub admin_secret: String,
    pub keymanager: Option<Proc>,
    pub issuers: Vec<IssuerNode>,
    pub http: reqwest::Client,
    /// Flags every issuer this cluster spawns gets besides the standard ones.
    pub issuer_args: Vec<String>,
}

impl Cluster {
    /// NATS, one key manager, and `issuers` issuer nodes, all ready.
    pub async fn start(issuers: usize) -> Result<Cluster> {
        Self::start_with(issuers, Vec::new()).await
    }

    /// [`Cluster::start`], with `issuer_args` added to every issuer's flags.
    pub async fn start_with(issuers: usize, issuer_args: Vec<String>) -> Result<Cluster> {
        Self::start_on("127.0.0.1", issuers, issuer_args).await
    }

    /// [`Cluster::start_with`], with the shared issuer URL naming `host` (the first node's
    /// port): `localhost` for passkeys, whose RP ID must be a domain name.
    pub async fn start_on(host: &str, issuers: usize, issuer_args: Vec<String>) -> Result<Cluster> {
        let (nats, redis) = tokio::try_join!(NatsServer::start(), RedisServer::start())?;
        let dir = tempfile::tempdir()?;
        let secret_file = dir.path().join("cluster-secret");
        let mut secret = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut secret)?;
        std::fs::write(
            &secret_file,
            base64::engine::general_purpose::STANDARD.encode(secret),
        )?;
        let kek_file = dir.path().join("kek");
        let first_port = free_port();
        let mut c = Cluster {
            nats,
            redis,
            dir,
            secret_file,
            kek_file,
            issuer: format!("http://{host}:{first_port}"),
            admin_secret: "cluster-admin-secret-0123456789".into(),
            keymanager: None,
            issuers: Vec::new(),
            http: reqwest::Client::new(),
            issuer_args,
        };
        c.keymanager = Some(c.spawn_keymanager().await?);
        for i in 0..issuers {
            let port = if i == 0 { first_port } else { free_port() };
            let node = c.spawn_issuer(port).await?;
            c.issuers.push(node);
        }
        for i in 0..issuers {
            c.wait_ready(i).await?;
        }
        Ok(c)
    }

    pub async fn spawn_keymanager(&self) -> Result<Proc> {
        Proc::spawn(
            vec![
                "keymanager".into(),
                "--nats".into(),
                self.nats.url.clone(),
                "--kek-file".into(),
                self.kek_file.display().to_string(),
                "--cluster-secret-file".into(),
                self.secret_file.display().to_string(),
            ],
            &[],
        )
        .await
    }

    pub async fn spawn_issuer(&self, port: u16) -> Result<IssuerNode> {
        let admin_port = free_port();
        let mut args: Vec<String> = vec![
            "issuer".into(),
            "--nats".into(),
            self.nats.url.clone(),
            "--cluster-secret-file".into(),
            self.secret_file.display().to_string(),
            "--redis".into(),
            self.redis.url.clone(),
            "--issuer".into(),
            self.issuer.clone(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--admin-listen".into(),
            format!("127.0.0.1:{admin_port}"),
        ];
        args.extend(self.issuer_args.iter().cloned());
        let proc = Proc::spawn(
            args,
            &[("SIGNET_ADMIN_CLIENT_SECRET", self.admin_secret.clone())],
        )
        .await?;
        Ok(IssuerNode {
            proc,
            public: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin_port}/admin/v1"),
        })
    }

    /// Waits until issuer `i` answers `/readyz` with 200.
    pub async fn wait_ready(&mut self, i: usize) -> Result<()> {
        let url = format!("{}/readyz", self.issuers[i].public);
        let http = self.http.clone();
        let node = &mut self.issuers[i].proc;
        let ok = wait_http_ready(&http, &url, || node.exited()).await?;
        if !ok {
            bail!("issuer {i} exited before it was ready");
        }
        Ok(())
    }

    /// `client_credentials` at issuer `i`.
    pub async fn token(
        &self,
        i: usize,
        id: &str,
        secret: &str,
        scope: Option<&str>,
    ) -> Result<(u16, serde_json::Value)> {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let r = self
            .http
            .post(format!("{}/oauth2/token", self.issuers[i].public))
            .basic_auth(id, Some(secret))
            .form(&form)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(serde_json::Value::Null)))
    }

    pub async fn admin_token(&self, i: usize) -> Result<String> {
        let (status, body) = self
            .token(i, "signet-admin", &self.admin_secret, Some("signet.admin"))
            .await?;
        if status != 200 {
            bail!("admin token at issuer {i}: {status} {body}");
        }
        Ok(body["access_token"].as_str().unwrap_or_default().to_owned())
    }

    /// An admin API call at issuer `i`.
    pub async fn admin_call(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value)> {
        let token = self.admin_token(i).await?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.issuers[i].admin))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((
            status,
            if text.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_str(&text)?
            },
        ))
    }

    pub async fn jwks(&self, i: usize) -> Result<jsonwebtoken::jwk::JwkSet> {
        Ok(self
            .http
            .get(format!("{}/oauth2/jwks", self.issuers[i].public))
            .send()
            .await?
            .json()
            .await?)
    }
}
