//! Test support for Signet's cross-service integration tests: spawn the real `signet`
//! binary on free loopback ports with its own data directory, wait until it is ready (with
//! bounded patience, never a fixed sleep), and talk to it as a user would.
//!
//! The binary is `target/<profile>/signet` beside the test executable (or `$SIGNET_BIN`);
//! the README's test command builds it before the tests run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub mod browser;
pub mod chrome;
pub mod cluster;
pub mod ha;
pub mod lb;
pub mod ldap;
pub mod nats;
pub mod receiver;
pub mod redis;
pub mod smtp;
pub mod tmpfs;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Polls `check` until it returns `Some`, for at most `patience`.
pub async fn eventually<T, F, Fut>(patience: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if start.elapsed() > patience {
            bail!("condition not met within {patience:?}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

tokio::task_local! {
    static LOG_FILTER: String;
}

/// Runs `f` (typically `Serve::start`) with `SIGNET_LOG` set to `filter` for the nodes it
/// spawns, without touching this process's environment.
pub async fn with_log_filter<F: std::future::Future>(filter: &str, f: F) -> F::Output {
    LOG_FILTER.scope(filter.to_owned(), f).await
}

/// The `SIGNET_LOG` of spawned nodes unless a test or `SIGNET_TEST_LOG` says otherwise:
/// warnings, except the ones every fresh test node gives by design (the KEK created beside
/// the data), so that a real warning stands out in the test log.
pub const DEFAULT_LOG_FILTER: &str = "warn,signet_keymanager::kek=error";

/// `SIGNET_TEST_LOG`, or [`DEFAULT_LOG_FILTER`].
pub fn default_log_filter() -> String {
    std::env::var("SIGNET_TEST_LOG").unwrap_or_else(|_| DEFAULT_LOG_FILTER.into())
}

fn log_filter() -> String {
    LOG_FILTER
        .try_with(Clone::clone)
        .ok()
        .unwrap_or_else(default_log_filter)
}

/// Waits until `url` answers 200 (true), or `exited()` says the process died (false).
pub async fn wait_http_ready(
    http: &reqwest::Client,
    url: &str,
    mut exited: impl FnMut() -> bool,
) -> Result<bool> {
    eventually(Duration::from_secs(60), || {
        let dead = exited();
        let request = http.get(url).send();
        async move {
            if dead {
                return Some(false);
            }
            match request.await {
                Ok(r) if r.status() == 200 => Some(true),
                _ => None,
            }
        }
    })
    .await
}

/// The `signet` binary under test.
pub fn signet_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SIGNET_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/integration-<hash> -> target/<profile>/signet
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("signet");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p signet` first (the README's test command does)",
        bin.display()
    );
    bin
}

/// A free loopback port, never handed out twice in this test process, and taken from below
/// the kernel's ephemeral range (32768 and up on Linux) so that no outgoing connection of
/// any process can hold it between now and the moment the child binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 12_000;
    const SPAN: u16 = 20_000;
    // Spread test processes running side by side over the range.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = LOW + (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (start - LOW + n) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {LOW} and {}", LOW + SPAN)
}

/// Options for a `signet serve` process.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Path appended to the issuer URL, e.g. `/auth`.
    pub issuer_path: String,
    pub admin_secret: Option<String>,
    pub extra_args: Vec<String>,
    /// Public and admin ports; `None`: free ones. A restart keeps its issuer URL by
    /// reusing the ports of the first start ([`Serve::options`]).
    pub ports: Option<(u16, u16)>,
    /// Capture stderr (the logs) instead of inheriting it; see [`Serve::logs`].
    pub capture_logs: bool,
    /// Start without `--issuer`: the node derives it from `--listen` (the URL is the same
    /// `http://127.0.0.1:<port>` when `issuer_path` is empty).
    pub omit_issuer: bool,
    /// The public listener speaks TLS (`extra_args` carry `--tls-cert`/`--tls-key`): the
    /// issuer is `https://127.0.0.1:<port>`, and this harness's own client accepts the
    /// test's certificate without checking it.
    pub https: bool,
    /// The host of the issuer URL instead of `127.0.0.1` (the node still listens on
    /// `127.0.0.1`): `localhost` for passkeys, whose RP ID must be a domain name.
    pub host: Option<String>,
    /// A command (and its arguments) that runs the binary, which is appended with its own
    /// arguments: `nsenter ...` to start it in another namespace ([`tmpfs::Tmpfs::launcher`]).
    /// Empty: the binary is started directly. The launcher must exec the binary, so that the
    /// process this harness signals is the node.
    pub launcher: Vec<String>,
}

/// A running `signet serve`.
pub struct Serve {
    child: Child,
    /// The options of this start, with the ports it got: start again with them to keep
    /// the issuer URL.
    pub options: ServeOptions,
    pub issuer: String,
    pub public: String,
    pub admin: String,
    pub data_dir: PathBuf,
    pub admin_secret: String,
    pub stdout: String,
    logs: std::sync::Arc<std::sync::Mutex<String>>,
    http: reqwest::Client,
}

impl Serve {
    /// Starts `signet serve` on `data_dir` and waits until `/readyz` answers 200.
    pub async fn start(data_dir: &Path, opts: ServeOptions) -> Result<Serve> {
        let mut last_err = None;
        let attempts = if opts.ports.is_some() { 1 } else { 5 };
        for _ in 0..attempts {
            match Self::try_start(data_dir, &opts).await {
                Ok(s) => return Ok(s),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("could not start")))
    }

    async fn try_start(data_dir: &Path, opts: &ServeOptions) -> Result<Serve> {
        let (public_port, admin_port) = opts.ports.unwrap_or_else(|| (free_port(), free_port()));
        let scheme = if opts.https { "https" } else { "http" };
        let host = opts.host.as_deref().unwrap_or("127.0.0.1");
        let public = format!("{scheme}://{host}:{public_port}");
        let issuer = format!("{public}{}", opts.issuer_path);
        let mut cmd = match opts.launcher.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(signet_bin());
                cmd
            }
            None => Command::new(signet_bin()),
        };
        cmd.arg("serve").arg("--data-dir").arg(data_dir);
        if !opts.omit_issuer {
            cmd.arg("--issuer").arg(&issuer);
        }
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{public_port}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin_port}"))
            .args(&opts.extra_args)
            .env_remove("SIGNET_ADMIN_CLIENT_SECRET")
            .env("SIGNET_LOG", log_filter())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if opts.capture_logs {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .kill_on_drop(true);
        if let Some(s) = &opts.admin_secret {
            cmd.env("SIGNET_ADMIN_CLIENT_SECRET", s);
        }
        let mut child = cmd.spawn().context("spawn signet")?;
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(err) = child.stderr.take() {
            let logs = logs.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut l) = logs.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(opts.https)
            .build()?;
        let ready_url = format!("{issuer}/readyz");
        let ready = wait_http_ready(&http, &ready_url, || {
            child.try_wait().ok().flatten().is_some()
        })
        .await?;
        if !ready {
            bail!("signet exited during start-up (port taken?)");
        }
        // What the node printed on stdout (the generated admin secret on first start).
        let mut stdout = String::new();
        if let Some(out) = child.stdout.take() {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(200), lines.next_line()).await
            {
                stdout.push_str(&line);
                stdout.push('\n');
                if line.starts_with("Set SIGNET_ADMIN_CLIENT_SECRET") {
                    break;
                }
            }
        }
        let admin_secret = match &opts.admin_secret {
            Some(s) => s.clone(),
            None => stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix("client_secret:"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
        };
        Ok(Serve {
            child,
            options: ServeOptions {
                ports: Some((public_port, admin_port)),
                ..opts.clone()
            },
            issuer,
            public,
            admin: format!("http://127.0.0.1:{admin_port}/admin/v1"),
            data_dir: data_dir.to_path_buf(),
            admin_secret,
            stdout,
            logs,
            http,
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// What the node logged so far (with `capture_logs`).
    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stops the process with SIGTERM and waits for it to exit.
    pub async fn stop(mut self) -> Result<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .context("signet did not stop within 30s of SIGTERM")??;
        Ok(status)
    }

    /// SIGKILL (a crash: no shutdown, nothing flushed) and waits for the process to exit.
    pub async fn kill(mut self) -> Result<std::process::ExitStatus> {
        self.child.start_kill()?;
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .context("signet did not exit within 30s of SIGKILL")??;
        Ok(status)
    }

    /// `POST /oauth2/token` with a form body and optional Basic credentials.
    pub async fn token_request(
        &self,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Result<(u16, reqwest::header::HeaderMap, Value)> {
        let mut req = self
            .http
            .post(format!("{}/oauth2/token", self.issuer))
            .form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json().await.unwrap_or(Value::Null);
        Ok((status, headers, body))
    }

    /// A fresh admin token (client_credentials as `signet-admin`).
    pub async fn admin_token(&self) -> Result<String> {
        let (status, _, body) = self
            .token_request(
                Some(("signet-admin", &self.admin_secret)),
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "signet.admin"),
                ],
            )
            .await?;
        if status != 200 {
            bail!("admin token request failed: {status} {body}");
        }
        Ok(body["access_token"].as_str().unwrap_or_default().to_owned())
    }

    /// An admin API call with a fresh admin token. `path` is under `/admin/v1`.
    pub async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let token = self.admin_token().await?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.admin))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        };
        Ok((status, body))
    }

    /// `POST` that must answer 201.
    pub async fn create(&self, path: &str, body: Value) -> Result<Value> {
        let (status, resp) = self
            .admin_call(reqwest::Method::POST, path, Some(&body))
            .await?;
        if status != 201 {
            bail!("POST {path} answered {status}: {resp}");
        }
        Ok(resp)
    }

    /// `POST /oauth2/introspect` as the API resource `(name, secret)`; must answer 200.
    pub async fn introspect(&self, resource: (&str, &str), token: &str) -> Result<Value> {
        let r = self
            .http
            .post(format!("{}/oauth2/introspect", self.issuer))
            .basic_auth(resource.0, Some(resource.1))
            .form(&[("token", token)])
            .send()
            .await?;
        if r.status() != 200 {
            bail!("introspection answered {}", r.status());
        }
        Ok(r.json().await?)
    }

    pub async fn jwks(&self) -> Result<jsonwebtoken::jwk::JwkSet> {
        Ok(self
            .http
            .get(format!("{}/oauth2/jwks", self.issuer))
            .send()
            .await?
            .json()
            .await?)
    }
}

/// Verifies a JWT with `jsonwebtoken` (an independent implementation) against a JWKS.
pub fn verify_jwt(
    token: &str,
    jwks: &jsonwebtoken::jwk::JwkSet,
    issuer: &str,
    audience: &str,
) -> Result<Value> {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.context("no kid")?;
    let jwk = jwks.find(&kid).context("kid not in the JWKS")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk)?;
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    Ok(jsonwebtoken::decode::<Value>(token, &key, &v)?.claims)
}
