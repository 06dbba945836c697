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
    Ok(())
}
