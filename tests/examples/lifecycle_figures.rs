//! Measures the figures issue 6 asks for, on a local cluster of real processes (NATS,
//! Redis, a key manager, two issuers) and a resource server built on `libs/verify` (its
//! example, following the revocation stream):
//! - revocation at one issuer node (`POST /oauth2/revoke`) until the resource server
//!   refuses the token: p50/p99 over N revocations;
//! - the memory of a `RevocationSet` holding 1,000,000 token revocations;
//! - introspection requests per second at one issuer (concurrent clients on this machine).
//!
//! Run (release binaries):
//!   cargo build --release -p signet -p signet-verify --example resource_server
//!   SIGNET_BIN=target/release/signet NATS_SERVER=target/venv/bin/nats-server \
//!     cargo run --release -p signet-tests --example lifecycle_figures -- [revocations]

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use signet_tests::cluster::Cluster;
use signet_tests::{eventually, free_port};
use signet_verify::revocation::{Revocation, RevocationSet, Target};

const SECRET: &str = "figures-client-secret-0123456789";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn revocation_set_memory() {
    let before = rss_kib();
    let mut set = RevocationSet::new();
    for i in 0..1_000_000u64 {
        // jti values as Signet makes them: 22 characters of base64url.
        let jti = format!("{i:0>22}");
        set.insert(&Revocation {
            target: Target::Token { jti },
            exp: 2_000_000_000,
            at: 1,
        });
    }
    let after = rss_kib();
    println!(
        "revocation set: {} entries, RSS grew {} MiB ({} bytes per entry)",
        set.len(),
        (after - before) / 1024,
        (after - before) * 1024 / 1_000_000
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    revocation_set_memory();

    let c = Cluster::start(2).await?;
    for (path, body) in [
        ("/Resource/ApiScope", json!({"name": "orders.read"})),
        (
            "/Resource/ApiResource",
            json!({"name": "orders-api", "scopes": ["orders.read"],
                "apiSecrets": [{"value": SECRET}], "allowedAccessTokenSigningAlgorithms": ["ES256"]}),
        ),
        (
            "/Client",
            json!({"clientId": "svc", "allowedGrantTypes": ["client_credentials"],
                "clientSecrets": [{"value": SECRET}], "allowedScopes": ["orders.read"]}),
        ),
    ] {
        let (status, resp) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        anyhow::ensure!(status == 201, "{path}: {resp}");
    }
    let example = signet_tests::signet_bin()
        .parent()
        .map(|d| d.join("examples/resource_server"))
        .ok_or_else(|| anyhow::anyhow!("no target dir"))?;
    let port = free_port();
    let _rs = tokio::process::Command::new(&example)
        .args(["--issuer", &c.issuer, "--audience", "orders-api"])
        .args([
            "--nats",
            &c.nats.url,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
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

    // Tokens first (outside the timing).
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        let (status, body) = c.token(0, "svc", SECRET, None).await?;
        anyhow::ensure!(status == 200, "{body}");
        tokens.push(body["access_token"].as_str().unwrap_or_default().to_owned());
    }
    let status_at_rs = |token: &str| {
        let req = http.get(format!("{rs}/orders")).bearer_auth(token);
        async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    anyhow::ensure!(status_at_rs(&tokens[0]).await == 200);

    let mut lat = Vec::with_capacity(n);
    for t in &tokens {
        let start = Instant::now();
        let r = http
            .post(format!("{}/oauth2/revoke", c.issuers[0].public))
            .basic_auth("svc", Some(SECRET))
            .form(&[("token", t.as_str())])
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200);
        loop {
            if status_at_rs(t).await == 401 {
                break;
            }
            anyhow::ensure!(start.elapsed() < Duration::from_secs(10), "never refused");
        }
        lat.push(start.elapsed());
    }
    lat.sort();
    println!(
        "revocation at issuer 1 until refusal at the resource server ({n}): p50 {:?}, p99 {:?}, max {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );

    // Introspection throughput: 16 concurrent callers for 5 s against issuer 2, one live
    // token (the resource's credentials).
    let (_, body) = c.token(0, "svc", SECRET, None).await?;
    let live = body["access_token"].as_str().unwrap_or_default().to_owned();
    let url = format!("{}/oauth2/introspect", c.issuers[1].public);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, url, live) = (http.clone(), url.clone(), live.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            while Instant::now() < deadline {
                let r = http
                    .post(&url)
                    .basic_auth("orders-api", Some(SECRET))
                    .form(&[("token", live.as_str())])
                    .send()
                    .await;
                if matches!(r, Ok(ref r) if r.status() == 200) {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await?;
    }
    println!(
        "introspection: {} requests/s (16 concurrent callers, JWT access token, issuer 2)",
        total / 5
    );
    Ok(())
}
