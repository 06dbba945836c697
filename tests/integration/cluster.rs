//! Cluster mode with real processes: nats-server with JetStream, a key manager, and
//! stateless issuers that follow one event log and lease their signing keys.

use reqwest::Method;
use serde_json::json;
use signet_tests::cluster::Cluster;
use signet_tests::{eventually, verify_jwt};
use std::time::Duration;

const SECRET: &str = "cluster-client-secret-0123456789";

#[tokio::test]
async fn issuers_share_configuration_and_keys_and_survive_outages() -> anyhow::Result<()> {
    let mut c = Cluster::start(3).await?;

    // Register through node 1.
    for (path, body) in [
        ("/Resource/ApiScope", json!({"name": "c.read"})),
        (
            "/Resource/ApiResource",
            json!({"name": "c-api", "scopes": ["c.read"], "allowedAccessTokenSigningAlgorithms": ["ES256"]}),
        ),
        (
            "/Client",
            json!({"clientId": "svc", "allowedGrantTypes": ["client_credentials"], "clientSecrets": [{"value": SECRET}], "allowedScopes": ["c.read"]}),
        ),
    ] {
        let (status, resp) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        assert_eq!(status, 201, "{path}: {resp}");
    }
    // Tokens from nodes 2 and 3 verify against node 1's JWKS.
    let jwks = c.jwks(0).await?;
    for node in [1, 2] {
        let body = eventually(Duration::from_secs(10), || async {
            match c.token(node, "svc", SECRET, None).await {
                Ok((200, b)) => Some(b),
                _ => None,
            }
        })
        .await?;
        let claims = verify_jwt(
            body["access_token"].as_str().unwrap(),
            &jwks,
            &c.issuer,
            "c-api",
        )?;
        assert_eq!(claims["sub"], "svc");
        assert_eq!(
            jsonwebtoken::decode_header(body["access_token"].as_str().unwrap())?.alg,
            jsonwebtoken::Algorithm::ES256
        );
    }

    // Racing writes of one new client on two nodes: exactly one 201, one 409.
    let body = json!({"clientId": "raced", "allowedGrantTypes": ["client_credentials"], "clientSecrets": [{"value": SECRET}], "allowedScopes": ["c.read"]});
    let (a, b) = tokio::join!(
        c.admin_call(0, Method::POST, "/Client", Some(&body)),
        c.admin_call(1, Method::POST, "/Client", Some(&body)),
    );
    let mut statuses = vec![a?.0, b?.0];
    statuses.sort();
    assert_eq!(statuses, vec![201, 409]);

    // The key manager stops: issuers keep signing with their leased keys.
    let km = c.keymanager.take().unwrap();
    km.stop().await?;
    for node in 0..3 {
        let (status, body) = c.token(node, "svc", SECRET, None).await?;
        assert_eq!(status, 200, "node {node} without key manager: {body}");
    }

    // An issuer restarts and rebuilds from the log (snapshot + tail); it needs a key manager
    // for its first lease, so bring one back.
    c.keymanager = Some(c.spawn_keymanager().await?);
    let node = c.issuers.remove(2);
    let port: u16 = node.public.rsplit(':').next().unwrap().parse()?;
    node.proc.stop().await?;
    let restarted = c.spawn_issuer(port).await?;
    c.issuers.push(restarted);
    c.wait_ready(2).await?;
    let (status, body) = c.token(2, "raced", SECRET, None).await?;
    assert_eq!(
        status, 200,
        "restarted issuer knows clients registered before: {body}"
    );

    // NATS restarts: nothing acknowledged is lost, and nodes follow new writes again.
    c.nats.restart().await?;
    let (status, _) = eventually(Duration::from_secs(30), || async {
        match c
            .admin_call(
                0,
                Method::POST,
                "/Resource/ApiScope",
                Some(&json!({"name": "after.restart"})),
            )
            .await
        {
            Ok((201, b)) => Some((201, b)),
            _ => None,
        }
    })
    .await?;
    assert_eq!(status, 201);
    eventually(Duration::from_secs(30), || async {
        match c
            .admin_call(2, Method::GET, "/Resource/ApiScope/after.restart", None)
            .await
        {
            Ok((200, _)) => Some(()),
            _ => None,
        }
    })
    .await?;
    let (status, _) = c.admin_call(2, Method::GET, "/Client/raced", None).await?;
    assert_eq!(
        status, 200,
        "acknowledged before the NATS restart, still there"
    );
    for node in 0..3 {
        c.wait_ready(node).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_wrong_nats_url_or_missing_secret_fails_fast_with_a_clear_message() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("secret");
    std::fs::write(
        &secret,
        "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0NTY3OA==",
    )?;
    let port = signet_tests::free_port();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(signet_tests::signet_bin())
            .args([
                "issuer",
                "--nats",
                &format!("nats://127.0.0.1:{port}"),
                "--cluster-secret-file",
            ])
            .arg(&secret)
            .args([
                "--listen",
                &format!("127.0.0.1:{}", signet_tests::free_port()),
            ])
            .args([
                "--admin-listen",
                &format!("127.0.0.1:{}", signet_tests::free_port()),
            ])
            .env("SIGNET_LOG", "off")
            .output(),
    )
    .await??;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    let out = tokio::process::Command::new(signet_tests::signet_bin())
        .args(["keymanager", "--nats", "nats://127.0.0.1:4222"])
        .env_remove("SIGNET_CLUSTER_SECRET_FILE")
        .env("SIGNET_LOG", "off")
        .output()
        .await?;
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster-secret-file"));

    // A Redis URL that is not one of the accepted forms: refused before connecting, and
    // the password is not echoed.
    let out = tokio::process::Command::new(signet_tests::signet_bin())
        .args(["issuer", "--redis", "http://user:hunter2@127.0.0.1:6379"])
        .arg("--cluster-secret-file")
        .arg(&secret)
        .env("SIGNET_LOG", "off")
        .output()
        .await?;
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("redis") && stderr.contains("invalid Redis URL"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    Ok(())
}

/// `--redis` pointing at nothing: the issuer exits at start naming Redis.
#[tokio::test]
async fn an_unreachable_redis_fails_the_start() -> anyhow::Result<()> {
    let nats = signet_tests::nats::NatsServer::start().await?;
    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("secret");
    std::fs::write(
        &secret,
        "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0NTY3OA==",
    )?;
    let redis_port = signet_tests::free_port();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(signet_tests::signet_bin())
            .args(["issuer", "--nats", &nats.url])
            .args(["--redis", &format!("redis://127.0.0.1:{redis_port}")])
            .arg("--cluster-secret-file")
            .arg(&secret)
            .args([
                "--listen",
                &format!("127.0.0.1:{}", signet_tests::free_port()),
            ])
            .args([
                "--admin-listen",
                &format!("127.0.0.1:{}", signet_tests::free_port()),
            ])
            .env("SIGNET_LOG", "off")
            .output(),
    )
    .await??;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("short-lived state store") && stderr.contains(&redis_port.to_string()),
        "{stderr}"
    );
    Ok(())
}

/// Redis down: `/readyz` answers 503 (the load balancer stops sending browser flows
/// here), while `client_credentials`, which needs no Redis, keeps working. Redis back:
/// ready again.
#[tokio::test]
async fn a_redis_outage_makes_the_node_unready_but_client_credentials_keeps_working(
) -> anyhow::Result<()> {
    let mut c = Cluster::start(1).await?;
    let readyz = format!("{}/readyz", c.issuers[0].public);
    c.redis.kill().await?;
    let status = eventually(Duration::from_secs(20), || async {
        let s = c.http.get(&readyz).send().await.ok()?.status().as_u16();
        (s == 503).then_some(s)
    })
    .await?;
    assert_eq!(status, 503);
    // The admin client's token: client_credentials through the same node.
    c.admin_token(0).await?;
    c.redis.restart().await?;
    c.wait_ready(0).await?;
    Ok(())
}

/// Rotations through the admin API (executed by the leading key manager) while tokens are
/// issued and verified without pause: no token ever fails to verify. Then the leading key
/// manager crashes and the standby takes over key administration.
#[tokio::test]
async fn rotation_under_load_never_breaks_verification_and_survives_a_leader_crash(
) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let c = Cluster::start(2).await?;
    let standby = c.spawn_keymanager().await?;
    for (path, body) in [
        ("/Resource/ApiScope", json!({"name": "r.read"})),
        (
            "/Resource/ApiResource",
            json!({"name": "r-api", "scopes": ["r.read"], "allowedAccessTokenSigningAlgorithms": ["ES256"]}),
        ),
        (
            "/Client",
            json!({"clientId": "svc", "allowedGrantTypes": ["client_credentials"], "clientSecrets": [{"value": SECRET}], "allowedScopes": ["r.read"]}),
        ),
    ] {
        let (status, resp) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        assert_eq!(status, 201, "{path}: {resp}");
    }
    eventually(Duration::from_secs(10), || async {
        matches!(c.token(1, "svc", SECRET, None).await, Ok((200, _))).then_some(())
    })
    .await?;

    let c = Arc::new(c);
    let stop = Arc::new(AtomicBool::new(false));
    let (issued, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let kids = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let load = {
        let (c, stop, issued, failures, kids) = (
            c.clone(),
            stop.clone(),
            issued.clone(),
            failures.clone(),
            kids.clone(),
        );
        tokio::spawn(async move {
            let mut jwks = [c.jwks(0).await.unwrap(), c.jwks(1).await.unwrap()];
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let node = i % 2;
                i += 1;
                let Ok((200, body)) = c.token(node, "svc", SECRET, None).await else {
                    failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let token = body["access_token"].as_str().unwrap_or_default().to_owned();
                let kid = jsonwebtoken::decode_header(&token)
                    .ok()
                    .and_then(|h| h.kid)
                    .unwrap_or_default();
                // A verifier refetches the JWKS when it meets an unknown kid.
                if jwks[node].find(&kid).is_none() {
                    jwks[node] = c.jwks(node).await.unwrap();
                }
                match verify_jwt(&token, &jwks[node], &c.issuer, "r-api") {
                    Ok(_) => {
                        issued.fetch_add(1, Ordering::Relaxed);
                        kids.lock().unwrap().insert(kid);
                    }
                    Err(e) => {
                        eprintln!("verification failed for kid {kid}: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    let rotate = |node: usize| {
        let c = c.clone();
        async move {
            c.admin_call(
                node,
                Method::POST,
                "/Key/rotate",
                Some(&json!({"alg": "ES256"})),
            )
            .await
        }
    };
    for round in 0..3 {
        let (status, body) = rotate(round % 2).await?;
        assert_eq!(status, 201, "rotation {round}: {body}");
    }
    // The first key manager started first and leads; it crashes. The standby takes over
    // key administration (within the lock's TTL).
    let leader_crash = {
        // The cluster handle is shared with the load task: crash the leader by its pid.
        let pid = c.keymanager.as_ref().and_then(|p| p.pid()).unwrap();
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?
    };
    assert!(leader_crash.success());
    let body = eventually(Duration::from_secs(60), || async {
        match rotate(1).await {
            Ok((201, b)) => Some(b),
            _ => None,
        }
    })
    .await?;
    assert!(body["kid"].as_str().is_some());
    stop.store(true, Ordering::Relaxed);
    load.await?;
    let (ok, failed) = (
        issued.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    assert_eq!(failed, 0, "{failed} of {} tokens failed", ok + failed);
    assert!(ok > 20, "tokens issued and verified: {ok}");
    assert!(
        kids.lock().unwrap().len() >= 3,
        "tokens were signed by the rotated keys: {:?}",
        kids.lock().unwrap()
    );
    standby.stop().await?;
    Ok(())
}

/// Browser sign-in across nodes: the authorization request at node 2, the login page at
/// node 1 (the shared issuer URL), the code redeemed at node 2, and the SSO session (in
/// Redis) honoured by node 2 with `prompt=none`.
#[tokio::test]
async fn a_code_from_one_node_is_redeemed_at_another_and_sso_spans_nodes() -> anyhow::Result<()> {
    use signet_tests::browser::{params_of, Browser};
    const REDIRECT: &str = "http://127.0.0.1:1/cb";
    const VERIFIER: &str = "dBjftJeZ4CVP-mJ0LbmCqxJW9X8Nqn_H96LJPLkgK0Y";
    const CHALLENGE: &str = "mUC84QHW1XnmFGk31dqlZ81-q8-qS-OxrweG_XEDeIU";

    let c = Cluster::start(2).await?;
    let (status, user) = c
        .admin_call(
            0,
            Method::POST,
            "/User",
            Some(&json!({"username": "dora", "password": "dora's password 1", "claims": {"name": "Dora"}})),
        )
        .await?;
    assert_eq!(status, 201, "{user}");
    let (status, resp) = c
        .admin_call(
            0,
            Method::POST,
            "/Client",
            Some(
                &json!({"clientId": "web", "allowedGrantTypes": ["authorization_code"],
                "requireClientSecret": false, "requireConsent": false,
                "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile"]}),
            ),
        )
        .await?;
    assert_eq!(status, 201, "{resp}");
    let authorize = |node: usize, extra: &str| {
        format!(
            "{}/oauth2/authorize?client_id=web&response_type=code&scope=openid%20profile&state=x&redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fcb&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
            c.issuers[node].public
        )
    };
    // Node 2 must know the client and the user before the browser arrives there.
    eventually(Duration::from_secs(10), || async {
        let r = Browser::new().get(&authorize(1, "")).await.ok()?;
        (r.status == 302).then_some(())
    })
    .await?;
    let mut b = Browser::new();
    let r = b
        .sign_in(&authorize(1, ""), "dora", "dora's password 1")
        .await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let code = params_of(&r.location()?, false)["code"].clone();
    let token = c
        .http
        .post(format!("{}/oauth2/token", c.issuers[1].public))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "web"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await?;
    assert_eq!(token.status(), 200);
    let body: serde_json::Value = token.json().await?;
    assert!(body["id_token"].is_string(), "{body}");
    // SSO at node 2 with the session node 1 started.
    let r = b.get(&authorize(1, "&prompt=none")).await?;
    assert!(
        params_of(&r.location()?, false).contains_key("code"),
        "{:?}",
        r.location()
    );
    Ok(())
}
