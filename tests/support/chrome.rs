//! Debian's headless Chromium driven through chromedriver (WebDriver, with `fantoccini`),
//! and a tiny relying party that answers its redirect URI.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::free_port;

fn chromedriver_bin() -> String {
    std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}

fn chromium_bin() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// A running chromedriver and one browser session.
pub struct Chrome {
    _driver: Child,
    _profile: tempfile::TempDir,
    pub client: fantoccini::Client,
}

impl Chrome {
    pub async fn start() -> Result<Chrome> {
        let port = free_port();
        let driver = Command::new(chromedriver_bin())
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {}: run scripts/test.sh (it installs chromium and chromium-driver) or set CHROMEDRIVER",
                    chromedriver_bin()
                )
            })?;
        let profile = tempfile::tempdir()?;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium_bin(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let client = loop {
            let mut builder = fantoccini::ClientBuilder::new(
                hyper_util::client::legacy::connect::HttpConnector::new(),
            );
            builder.capabilities(caps.clone());
            match builder.connect(&url).await {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    bail!("chromedriver did not start a session: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Ok(Chrome {
            _driver: driver,
            _profile: profile,
            client,
        })
    }

    /// On Signet's login page (the current page): types the username and password and
    /// submits the form.
    pub async fn sign_in(&self, username: &str, password: &str) -> Result<()> {
        use fantoccini::Locator;
        let c = &self.client;
        c.find(Locator::Css("#username"))
            .await?
            .send_keys(username)
            .await?;
        c.find(Locator::Css("#password"))
            .await?
            .send_keys(password)
            .await?;
        c.find(Locator::Css("button[type=submit]"))
            .await?
            .click()
            .await?;
        Ok(())
    }
}

/// A relying party's redirect endpoint on loopback: answers every request with a small page
/// so the browser lands somewhere real. Returns its base URL.
pub async fn relying_party() -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let body = "<!doctype html><title>Relying party</title><p>signed in</p>";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(format!("http://{addr}"))
}
