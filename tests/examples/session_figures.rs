//! Measures the sign-out figure of issue 13 on a local cluster of real processes (NATS,
//! Redis, a key manager, two issuers) and a resource server built on `libs/verify` (its
//! example, following the revocation stream): a user signs in at issuer 1, the RP signs
//! them out (RP-initiated logout with `id_token_hint`) at issuer 2, and the clock runs
//! until the resource server refuses the access token issued in the session: p50/p99 over
//! N sign-outs, plus the logout request alone.
//!
//! Run:
//!   cargo build -p signet -p signet-verify --example resource_server
//!   NATS_SERVER=target/venv/bin/nats-server \
//!     cargo run -p signet-tests --example session_figures -- [sign-outs]
//! (`SIGNET_BIN=target/release/signet` and `--release` everywhere for release figures.)

use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::browser::{params_of, Browser, PKCE_CHALLENGE, PKCE_VERIFIER};
use signet_tests::cluster::Cluster;
use signet_tests::{eventually, free_port};

const SECRET: &str = "figures-client-secret-0123456789";
const PASSWORD: &str = "figures password 12";
const REDIRECT: &str = "http://127.0.0.1:1/cb";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Signs `user` in with a new browser at `node` and redeems the code there.
async fn sign_in(node: &str, http: &reqwest::Client) -> anyhow::Result<(Browser, Value)> {
    let mut u = url::Url::parse(&format!("{node}/oauth2/authorize"))?;
    u.query_pairs_mut()
        .append_pair("client_id", "app")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid orders.read")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    let mut b = Browser::new();
    let r = b.sign_in(u.as_str(), "fig", PASSWORD).await?;
    let code = params_of(&r.location()?, false)
        .remove("code")
        .context("code")?;
    let body: Value = http
        .post(format!("{node}/oauth2/token"))
        .basic_auth("app", Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", PKCE_VERIFIER),
        ])
        .send()
        .await?
        .json()
        .await?;
    Ok((b, body))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let c = Cluster::start(2).await?;
    for (path, body) in [
        (
            "/User",
            json!({"username": "fig", "password": PASSWORD, "claims": {}}),
        ),
        ("/Resource/ApiScope", json!({"name": "orders.read"})),
        (
            "/Resource/ApiResource",
            json!({"name": "orders-api", "scopes": ["orders.read"]}),
        ),
        (
            "/Client",
            json!({"clientId": "app", "allowedGrantTypes": ["authorization_code"],
                "clientSecrets": [{"value": SECRET}], "redirectUris": [REDIRECT],
                "requireConsent": false, "allowedScopes": ["openid", "orders.read"]}),
        ),
    ] {
        let (status, resp) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        anyhow::ensure!(status == 201, "{path}: {resp}");
    }
    let example = signet_tests::signet_bin()
        .parent()
        .map(|d| d.join("examples/resource_server"))
        .context("no target dir")?;
    let port = free_port();
    let _rs = tokio::process::Command::new(&example)
        .args(["--issuer", &c.issuer, "--audience", "orders-api"])
        .args(["--nats", &c.nats.url])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let rs = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(30), || async {
        let r = http.get(format!("{rs}/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await?;
    let (node1, node2) = (c.issuers[0].public.clone(), c.issuers[1].public.clone());
    // Node 2 knows the client before the timing starts.
    eventually(Duration::from_secs(10), || async {
        let (s, _) = c
            .admin_call(1, Method::GET, "/Client/app", None)
            .await
            .ok()?;
        (s == 200).then_some(())
    })
    .await?;
    let status_at_rs = |token: String| {
        let req = http.get(format!("{rs}/orders")).bearer_auth(token);
        async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };

    let (mut until_refused, mut logout_only) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let (mut b, t) = sign_in(&node1, &http).await?;
        let at = t["access_token"]
            .as_str()
            .context("access_token")?
            .to_owned();
        let hint = t["id_token"].as_str().context("id_token")?.to_owned();
        anyhow::ensure!(status_at_rs(at.clone()).await == 200, "accepted first");
        let mut u = url::Url::parse(&format!("{node2}/oauth2/logout"))?;
        u.query_pairs_mut().append_pair("id_token_hint", &hint);
        let start = Instant::now();
        let r = b.get(u.as_str()).await?;
        logout_only.push(start.elapsed());
        anyhow::ensure!(r.status == 200, "logout: {} {}", r.status, r.body);
        loop {
            if status_at_rs(at.clone()).await == 401 {
                break;
            }
            anyhow::ensure!(start.elapsed() < Duration::from_secs(10), "never refused");
        }
        until_refused.push(start.elapsed());
    }
    until_refused.sort();
    logout_only.sort();
    println!(
        "RP-initiated logout at issuer 2 until the resource server refuses the session's access token ({n}): p50 {:?}, p99 {:?}, max {:?}",
        percentile(&until_refused, 0.5),
        percentile(&until_refused, 0.99),
        until_refused[n - 1]
    );
    println!(
        "the logout request alone ({n}): p50 {:?}, p99 {:?}",
        percentile(&logout_only, 0.5),
        percentile(&logout_only, 0.99)
    );
    Ok(())
}
