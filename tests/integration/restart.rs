//! A restart keeps every client, resource and key: a token issued before it verifies after
//! it, and the same client keeps working. One process per data directory.

use serde_json::json;
use signet_tests::{verify_jwt, Serve, ServeOptions};

#[tokio::test]
async fn restart_keeps_configuration_keys_and_tokens() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    assert!(
        s.stdout.contains("client_secret:"),
        "first start prints the generated secret"
    );
    super::client_credentials::register_backend(&s).await?;
    let (status, _, body) = s
        .token_request(
            Some(("backend", "backend-secret-0123456789")),
            &[("grant_type", "client_credentials")],
        )
        .await?;
    assert_eq!(status, 200);
    let before = body["access_token"].as_str().unwrap().to_owned();
    let jwks_before = s.jwks().await?;

    // A second process on the same data directory is refused while the first runs.
    let second = serve_to_completion(dir.path())?;
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("another signet process"));

    let secret = s.admin_secret.clone();
    let options = s.options.clone();
    let status = s.stop().await?;
    assert!(status.success(), "SIGTERM is a clean shutdown: {status:?}");

    let mut s = Serve::start(dir.path(), options).await?;
    assert!(
        !s.stdout.contains("client_secret:"),
        "the secret is printed only once"
    );
    s.admin_secret = secret;
    let jwks_after = s.jwks().await?;
    assert_eq!(jwks_before.keys.len(), jwks_after.keys.len());
    let claims = verify_jwt(&before, &jwks_after, &s.issuer, "orders-api")?;
    assert_eq!(claims["sub"], "backend");
    let (status, body) = s
        .admin_call(reqwest::Method::GET, "/Client/backend", None)
        .await?;
    assert_eq!(
        (status, body["clientName"].as_str()),
        (200, Some("Order sync job"))
    );
    let (status, _, body) = s
        .token_request(
            Some(("backend", "backend-secret-0123456789")),
            &[("grant_type", "client_credentials")],
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        jsonwebtoken::decode_header(body["access_token"].as_str().unwrap())?.kid,
        jsonwebtoken::decode_header(&before)?.kid
    );
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn admin_secret_from_the_environment() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let opts = ServeOptions {
        admin_secret: Some("first-admin-secret-0123456789".into()),
        ..Default::default()
    };
    let s = Serve::start(dir.path(), opts).await?;
    assert!(
        !s.stdout.contains("client_secret:"),
        "nothing printed when the secret is given"
    );
    s.admin_token().await?;
    s.stop().await?;
    // Changing SIGNET_ADMIN_CLIENT_SECRET replaces the secret at the next start.
    let opts = ServeOptions {
        admin_secret: Some("second-admin-secret-0123456789".into()),
        ..Default::default()
    };
    let s = Serve::start(dir.path(), opts).await?;
    s.admin_token().await?;
    let (status, _, _) = s
        .token_request(
            Some(("signet-admin", "first-admin-secret-0123456789")),
            &[("grant_type", "client_credentials")],
        )
        .await?;
    assert_eq!(status, 401);
    // The secret never reaches the event log or the data directory in plaintext.
    s.create("/Resource/ApiScope", json!({"name": "x"})).await?;
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry)?;
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("second-admin-secret"), "{}", entry.display());
        assert!(!text.contains("first-admin-secret"), "{}", entry.display());
    }
    s.stop().await?;
    Ok(())
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn a_corrupt_event_log_stops_the_node_with_a_clear_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    s.create("/Resource/ApiScope", json!({"name": "a"})).await?;
    s.create("/Resource/ApiScope", json!({"name": "b"})).await?;
    s.stop().await?;
    // Flip one byte in the middle of the log: a damaged record, not a torn tail.
    let log = dir.path().join("events").join("events.log");
    let mut bytes = std::fs::read(&log)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&log, bytes)?;
    let out = serve_to_completion(dir.path())?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("corrupt") && stderr.contains("events.log"),
        "{stderr}"
    );
    Ok(())
}

/// Runs `signet serve` on `dir` for a start-up that must fail, and returns its output.
fn serve_to_completion(dir: &std::path::Path) -> std::io::Result<std::process::Output> {
    std::process::Command::new(signet_tests::signet_bin())
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args([
            "--listen",
            &format!("127.0.0.1:{}", signet_tests::free_port()),
        ])
        .args([
            "--admin-listen",
            &format!("127.0.0.1:{}", signet_tests::free_port()),
        ])
        .env("SIGNET_LOG", "off")
        .output()
}
