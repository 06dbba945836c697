//! Measures the figures issue 3 asks for, on a local cluster of real processes:
//! - admin write on node 1 until visible on node 3: p50/p99 over N writes;
//! - time for a new issuer to be ready with 10,000 and 100,000 clients in the log, with and
//!   without a snapshot;
//! - resident memory of an issuer holding 100,000 clients.
//!
//! Run (release binaries, after `cargo build --release -p signet`):
//!   SIGNET_BIN=target/release/signet NATS_SERVER=target/venv/bin/nats-server \
//!     cargo run --release -p signet-tests --example cluster_figures -- [writes]

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use signet_core::client::{Client, GrantType};
use signet_core::events::Event;
use signet_core::secret::SecretInput;
use signet_eventlog::jetstream::{JetStreamConfig, JetStreamLog};
use signet_eventlog::{EventLog, ExpectedVersion, NewEvent};
use signet_tests::cluster::Cluster;
use signet_tests::{eventually, free_port};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Appends `n` client.created events straight to the log (what n admin writes leave).
async fn seed_clients(log: &Arc<JetStreamLog>, from: usize, n: usize) -> anyhow::Result<()> {
    let mut pending = Vec::new();
    for i in from..from + n {
        let mut c: Client<SecretInput> = Client::new(format!("seeded-{i:06}"));
        c.allowed_grant_types = vec![GrantType::ClientCredentials];
        c.allowed_scopes = vec!["signet.admin".into()];
        c.client_secrets = vec![SecretInput {
            description: None,
            value: Some(format!("seed-secret-{i:06}-0123456789")),
            expiration: None,
            kind: "SharedSecret".into(),
            sealed: None,
        }];
        let e = Event::ClientCreated(Box::new(c.map_secrets(SecretInput::into_stored)));
        let log = log.clone();
        pending.push(tokio::spawn(async move {
            log.append(
                NewEvent {
                    subject: e.subject(),
                    actor: "figures".into(),
                    at_ms: 0,
                    payload: e.to_json(),
                },
                ExpectedVersion::Exact(0),
            )
            .await
        }));
        if pending.len() >= 256 {
            for p in pending.drain(..) {
                p.await??;
            }
        }
    }
    for p in pending {
        p.await??;
    }
    Ok(())
}

async fn time_to_ready(c: &mut Cluster) -> anyhow::Result<(Duration, Option<u64>)> {
    let start = Instant::now();
    let node = c.spawn_issuer(free_port()).await?;
    c.issuers.push(node);
    let i = c.issuers.len() - 1;
    c.wait_ready(i).await?;
    let took = start.elapsed();
    let pid = c.issuers[i].proc.pid();
    Ok((took, pid.and_then(rss_kib)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let writes: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let mut c = Cluster::start(3).await?;

    // 1. Write on node 1, visible on node 3 (admin tokens fetched once, outside the timing).
    let token1 = c.admin_token(0).await?;
    let token3 = c.admin_token(2).await?;
    let mut lat = Vec::with_capacity(writes);
    for i in 0..writes {
        let name = format!("vis.{i}");
        let start = Instant::now();
        let r = c
            .http
            .request(
                Method::POST,
                format!("{}/Resource/ApiScope", c.issuers[0].admin),
            )
            .bearer_auth(&token1)
            .json(&json!({"name": name}))
            .send()
            .await?;
        anyhow::ensure!(r.status() == 201, "write failed: {}", r.status());
        let url = format!("{}/Resource/ApiScope/{name}", c.issuers[2].admin);
        let token = token3.clone();
        eventually(Duration::from_secs(10), || {
            let (http, url, token) = (c.http.clone(), url.clone(), token.clone());
            async move {
                let r = http.get(&url).bearer_auth(&token).send().await.ok()?;
                (r.status() == 200).then_some(())
            }
        })
        .await?;
        lat.push(start.elapsed());
    }
    lat.sort();
    println!(
        "write on node 1 -> visible on node 3, {writes} writes: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );

    // 2. and 3. Issuer start-up with many clients, without and with a snapshot.
    let log = JetStreamLog::connect(JetStreamConfig::new(c.nats.url.clone())).await?;
    let mut seeded = 0;
    for target in [10_000usize, 100_000] {
        let t = Instant::now();
        seed_clients(&log, seeded, target - seeded).await?;
        seeded = target;
        println!(
            "seeded {target} clients in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        // Without a snapshot: delete the one a previous issuer left.
        let store = async_nats::jetstream::new(log.client().clone())
            .get_object_store("SIGNET_SNAPSHOTS")
            .await;
        if let Ok(store) = store {
            let _ = store.delete("projection").await;
        }
        let (took, rss) = time_to_ready(&mut c).await?;
        println!(
            "new issuer ready with {target} clients, no snapshot: {:.2} s, RSS {} MiB",
            took.as_secs_f64(),
            rss.unwrap_or(0) / 1024
        );
        // Stopping it writes a snapshot; the next one starts from it.
        let node = c.issuers.pop().unwrap();
        node.proc.stop().await?;
        let (took, rss) = time_to_ready(&mut c).await?;
        println!(
            "new issuer ready with {target} clients, from snapshot: {:.2} s, RSS {} MiB",
            took.as_secs_f64(),
            rss.unwrap_or(0) / 1024
        );
        let node = c.issuers.pop().unwrap();
        node.proc.stop().await?;
    }
    Ok(())
}
