//! Measures the figure issue 13 asks for: RP-initiated logout at one node until the
//! back-channel receiver has the logout token, p50/p99 over N logouts, on `serve` and on a
//! local cluster (NATS, Redis, a key manager, two issuers; the logout at issuer 0).
//! Each round signs a user in (not timed), then times `GET /oauth2/logout` (with an
//! `id_token_hint`) until the receiver (a loopback HTTP server) has the POST.
//!
//! Run:
//!   cargo build -p signet
//!   NATS_SERVER=target/venv/bin/nats-server \
//!     cargo run -p signet-tests --example logout_figures -- [logouts, default 50]
//! (`SIGNET_BIN=target/release/signet` and `--release` for release figures.)

use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::browser::{params_of, Browser, PKCE_CHALLENGE, PKCE_VERIFIER};
use signet_tests::cluster::Cluster;
use signet_tests::receiver::Receiver;
use signet_tests::{Serve, ServeOptions};

const PASSWORD: &str = "figures logout password";
const REDIRECT: &str = "http://127.0.0.1:1/cb";
const FLAGS: [&str; 1] = ["--allow-private-outbound"];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn client(receiver: &Receiver) -> Value {
    json!({
        "clientId": "app", "allowedGrantTypes": ["authorization_code"],
        "requireClientSecret": false, "requireConsent": false,
        "redirectUris": [REDIRECT], "allowedScopes": ["openid"],
        "backChannelLogoutUri": format!("{}/bc", receiver.base),
    })
}

fn user() -> Value {
    json!({"username": "fig", "password": PASSWORD, "claims": {}})
}

/// Signs in at `base` (a node's public URL); returns the browser and the ID token.
async fn sign_in(base: &str) -> anyhow::Result<(Browser, String)> {
    let mut b = Browser::new();
    let mut u = url::Url::parse(&format!("{base}/oauth2/authorize"))?;
    u.query_pairs_mut()
        .append_pair("client_id", "app")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    let r = b.sign_in(u.as_str(), "fig", PASSWORD).await?;
    let code = params_of(&r.location()?, false)
        .remove("code")
        .context("code")?;
    let t: Value = reqwest::Client::new()
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "app"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", PKCE_VERIFIER),
        ])
        .send()
        .await?
        .json()
        .await?;
    Ok((b, t["id_token"].as_str().context("id_token")?.to_owned()))
}

/// N rounds at `base`; returns the sorted latencies.
async fn rounds(base: &str, receiver: &Receiver, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (mut b, id_token) = sign_in(base).await?;
        let started = Instant::now();
        let r = b
            .get(&format!("{base}/oauth2/logout?id_token_hint={id_token}"))
            .await?;
        anyhow::ensure!(r.status == 200, "logout: {} {}", r.status, r.body);
        anyhow::ensure!(
            receiver
                .wait_for("/bc", i + 1, Duration::from_secs(30))
                .await,
            "logout token {} not received",
            i + 1
        );
        out.push(started.elapsed());
    }
    out.sort();
    Ok(out)
}

fn report(what: &str, sorted: &[Duration]) {
    println!(
        "{what}: {} logouts, logout -> receiver has the token: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        sorted.len(),
        percentile(sorted, 0.5).as_secs_f64() * 1000.0,
        percentile(sorted, 0.99).as_secs_f64() * 1000.0,
        sorted[sorted.len() - 1].as_secs_f64() * 1000.0,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(50)
        .max(1);

    let receiver = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            extra_args: FLAGS.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        },
    )
    .await?;
    s.create("/User", user()).await?;
    s.create("/Client", client(&receiver)).await?;
    report("serve", &rounds(&s.issuer, &receiver, n).await?);
    s.stop().await?;

    let receiver = Receiver::start().await?;
    let c = Cluster::start_with(2, FLAGS.iter().map(|f| f.to_string()).collect()).await?;
    for (path, body) in [("/User", user()), ("/Client", client(&receiver))] {
        let (status, resp) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        anyhow::ensure!(status == 201, "{path}: {resp}");
    }
    report(
        "cluster (2 issuers)",
        &rounds(&c.issuers[0].public, &receiver, n).await?,
    );
    Ok(())
}
