//! A crash during a burst of writes loses nothing that was acknowledged: `signet serve` is
//! killed with SIGKILL while several clients rotate one-time refresh tokens as fast as they
//! can (the embedded store's group commit batching their writes), then restarted on the same
//! data directory. Every refresh token a client received still refreshes exactly once, and
//! every token an acknowledged rotation retired stays refused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use signet_tests::browser::code_flow;
use signet_tests::{eventually, Serve, ServeOptions};

const REDIRECT: &str = "http://127.0.0.1:1/cb";
const PASSWORD: &str = "kim's password 123";
const SECRET: &str = "app-secret-0123456789";
/// Clients rotating at the same time (one refresh-token family each).
const WORKERS: usize = 8;
/// Acknowledged rotations before the kill.
const BEFORE_KILL: usize = 120;

/// What one client saw: the refresh tokens it received, oldest first, and whether its last
/// request may have reached the node (sent, then cut off by the kill without an answer).
#[derive(Default)]
struct Seen {
    tokens: Vec<String>,
    maybe_in_flight: bool,
}

async fn refresh(
    http: &reqwest::Client,
    issuer: &str,
    token: &str,
) -> reqwest::Result<(u16, Value)> {
    let r = http
        .post(format!("{issuer}/oauth2/token"))
        .basic_auth("app", Some(SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_a_refresh_burst_loses_no_acknowledged_rotation() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    s.create("/User", json!({"username": "kim", "password": PASSWORD}))
        .await?;
    s.create(
        "/Client",
        json!({
            "clientId": "app", "allowedGrantTypes": ["authorization_code"],
            "clientSecrets": [{"value": SECRET}],
            "allowOfflineAccess": true, "requireConsent": false,
            "redirectUris": [REDIRECT],
            "allowedScopes": ["openid", "offline_access"],
            // One-time refresh tokens: every refresh is a durable rotation.
            "refreshTokenUsage": 1
        }),
    )
    .await?;
    let mut seen = Vec::new();
    for _ in 0..WORKERS {
        let t = code_flow(
            &s.issuer,
            &s.issuer,
            "app",
            Some(SECRET),
            REDIRECT,
            "openid offline_access",
            "kim",
            PASSWORD,
        )
        .await?;
        let rt = t["refresh_token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no refresh token in {t}"))?;
        seen.push(Arc::new(Mutex::new(Seen {
            tokens: vec![rt.to_owned()],
            maybe_in_flight: false,
        })));
    }

    // The burst: each worker rotates its family in a loop until the node dies.
    let acked = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in &seen {
        let (w, acked, issuer) = (w.clone(), acked.clone(), s.issuer.clone());
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let current = w.lock().map(|s| s.tokens.last().cloned()).ok().flatten();
                let Some(current) = current else {
                    return Err(anyhow::anyhow!("no token"));
                };
                match refresh(&http, &issuer, &current).await {
                    Ok((200, body)) => {
                        let Some(next) = body["refresh_token"].as_str() else {
                            return Err(anyhow::anyhow!("200 without a refresh token: {body}"));
                        };
                        if let Ok(mut s) = w.lock() {
                            s.tokens.push(next.to_owned());
                        }
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok((status, body)) => {
                        return Err(anyhow::anyhow!("refresh answered {status}: {body}"))
                    }
                    Err(e) => {
                        // Refused connections never reached the node; anything else might
                        // have (the rotation may be durable without its answer).
                        if let Ok(mut s) = w.lock() {
                            s.maybe_in_flight = !e.is_connect();
                        }
                        return Ok(());
                    }
                }
            }
        }));
    }
    let a = acked.clone();
    eventually(Duration::from_secs(60), || {
        let a = a.clone();
        async move { (a.load(Ordering::SeqCst) >= BEFORE_KILL).then_some(()) }
    })
    .await?;
    let options = s.options.clone();
    let admin_secret = s.admin_secret.clone();
    let status = s.kill().await?;
    assert!(!status.success(), "killed, not stopped: {status:?}");
    for w in workers {
        w.await??;
    }
    let total = acked.load(Ordering::SeqCst);
    assert!(total >= BEFORE_KILL);

    let mut s = Serve::start(dir.path(), options).await?;
    s.admin_secret = admin_secret;
    let http = reqwest::Client::new();
    let mut clean = 0;
    for (i, w) in seen.iter().enumerate() {
        let (tokens, maybe_in_flight) = {
            let w = w.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            (w.tokens.clone(), w.maybe_in_flight)
        };
        let last = tokens.last().ok_or_else(|| anyhow::anyhow!("no token"))?;
        let (status, body) = refresh(&http, &s.issuer, last).await?;
        if status == 200 {
            clean += 1;
            // Exactly once: presenting it again is reuse.
            let (again, body) = refresh(&http, &s.issuer, last).await?;
            assert_eq!(
                (again, body["error"].as_str()),
                (400, Some("invalid_grant")),
                "family {i}: {body}"
            );
        } else {
            // Only a rotation of the last token that reached the node before the kill (its
            // answer lost) may have moved the family on; presenting `last` was then reuse,
            // which revoked the family.
            assert!(
                maybe_in_flight,
                "family {i}: the last acknowledged refresh token is refused after the crash \
                 ({status} {body}) and no request of that client can have reached the node"
            );
            assert_eq!(body["error"], "invalid_grant", "family {i}: {body}");
        }
        // Every token an acknowledged rotation retired stays retired: none refreshes (had a
        // rotation been lost, its predecessor would still be current and answer 200).
        for (k, old) in tokens[..tokens.len() - 1].iter().enumerate().rev() {
            let (status, body) = refresh(&http, &s.issuer, old).await?;
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("invalid_grant")),
                "family {i}: token {k} of {} was retired by an acknowledged rotation: {body}",
                tokens.len()
            );
        }
    }
    eprintln!(
        "crash: {total} acknowledged rotations by {WORKERS} clients before SIGKILL; after the \
         restart {clean} of {WORKERS} families refreshed with their last token, the others had \
         a rotation in flight at the kill; every retired token stayed refused"
    );
    s.stop().await?;
    Ok(())
}
