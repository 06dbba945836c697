//! Client addresses behind a load balancer (`--trusted-proxies`): login throttling and the
//! request log use the address a trusted proxy forwarded, and ignore `X-Forwarded-For`
//! from anyone else.

use std::net::IpAddr;

use serde_json::json;
use signet_tests::browser::Browser;
use signet_tests::{Serve, ServeOptions};

const PASSWORD: &str = "hana's password 12";
const REDIRECT: &str = "http://127.0.0.1:1/cb";

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Signs in as hana at the login page of a fresh authorization request; the status.
async fn try_password(b: &mut Browser, s: &Serve, password: &str) -> anyhow::Result<u16> {
    let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer))?;
    u.query_pairs_mut()
        .append_pair("client_id", "web")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("code_challenge", signet_tests::browser::PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    Ok(b.sign_in(u.as_str(), "hana", password).await?.status)
}

/// Five failures from one client address make it wait for that name
/// (`MAX_FAILURES_PER_PAIR`); each failure comes through a fresh `browser()`.
async fn lock_out(
    s: &Serve,
    mut browser: impl FnMut(usize) -> anyhow::Result<Browser>,
) -> anyhow::Result<()> {
    for i in 0..5 {
        let status = try_password(&mut browser(i)?, s, "wrong password").await?;
        anyhow::ensure!(status == 200, "failure {i} answered {status}");
    }
    Ok(())
}

/// `signet serve --trusted-proxies 127.0.0.2/32`: 127.0.0.2 plays the load balancer,
/// 127.0.0.1 and 127.0.0.3 are clients that reach the node directly.
#[tokio::test]
async fn throttling_counts_the_forwarded_address_only_from_trusted_proxies() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = signet_tests::with_log_filter(
        "warn,signet_issuer::telemetry=debug",
        Serve::start(
            dir.path(),
            ServeOptions {
                extra_args: vec!["--trusted-proxies".into(), "127.0.0.2/32".into()],
                capture_logs: true,
                ..ServeOptions::default()
            },
        ),
    )
    .await?;
    s.create(
        "/User",
        json!({"username": "hana", "password": PASSWORD, "claims": {}}),
    )
    .await?;
    s.create(
        "/Client",
        json!({
            "clientId": "web", "allowedGrantTypes": ["authorization_code"],
            "clientSecrets": [{"value": "web-client-secret-0123456789"}],
            "redirectUris": [REDIRECT], "allowedScopes": ["openid"], "requireConsent": false,
        }),
    )
    .await?;

    // An attacker at 127.0.0.1 forges a new X-Forwarded-For on every try: ignored, it is
    // held by its real address, even with the right password.
    lock_out(&s, |i| {
        Browser::from_address_with(
            loopback(1),
            &[("x-forwarded-for", &format!("198.51.100.{i}"))],
        )
    })
    .await?;
    let mut forged =
        Browser::from_address_with(loopback(1), &[("x-forwarded-for", "198.51.100.77")])?;
    assert_eq!(try_password(&mut forged, &s, PASSWORD).await?, 429);

    // Through the load balancer, the client it names is the one held: 203.0.113.1 fails
    // five times and waits; the balancer's own address is not what is counted, so
    // 203.0.113.2 through the same balancer signs in.
    let via_lb = |client: &str| {
        let client = client.to_owned();
        move |_: usize| Browser::from_address_with(loopback(2), &[("x-forwarded-for", &client)])
    };
    lock_out(&s, via_lb("203.0.113.1")).await?;
    assert_eq!(
        try_password(&mut via_lb("203.0.113.1")(0)?, &s, PASSWORD).await?,
        429
    );
    // A client that forged an entry itself: the balancer appended the real one, which
    // counts (the right-most untrusted entry).
    assert_eq!(
        try_password(&mut via_lb("198.51.100.9, 203.0.113.1")(0)?, &s, PASSWORD).await?,
        429
    );
    assert_eq!(
        try_password(&mut via_lb("203.0.113.1, 203.0.113.2")(0)?, &s, PASSWORD).await?,
        302
    );
    // The direct attacker's address, forwarded by the balancer, is the same client.
    assert_eq!(
        try_password(&mut via_lb("127.0.0.1")(0)?, &s, PASSWORD).await?,
        429
    );
    // Another direct client, not a trusted proxy, claiming to forward for a free address:
    // it is itself, and itself is not held.
    let mut direct =
        Browser::from_address_with(loopback(3), &[("x-forwarded-for", "203.0.113.1")])?;
    assert_eq!(try_password(&mut direct, &s, PASSWORD).await?, 302);

    // The request log names the same client: the forwarded one through the balancer, the
    // peer otherwise (a spoofed header never shows).
    for (from, forwarded, id) in [
        (2, "203.0.113.50", "via-lb"),
        (1, "198.51.100.66", "direct"),
    ] {
        let r = reqwest::Client::builder()
            .local_address(loopback(from))
            .build()?
            .get(format!("{}/healthz", s.issuer))
            .header("x-forwarded-for", forwarded)
            .header("x-request-id", id)
            .send()
            .await?;
        assert_eq!(r.status(), 200);
    }
    let logs = signet_tests::eventually(std::time::Duration::from_secs(10), || {
        let logs = s.logs();
        async move { logs.contains(r#"request_id="direct""#).then_some(logs) }
    })
    .await?;
    let line = |id: &str| {
        logs.lines()
            .find(|l| l.contains(&format!("request_id=\"{id}\"")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("via-lb").contains("client=203.0.113.50"), "{logs}");
    assert!(line("direct").contains("client=127.0.0.1"), "{logs}");
    assert!(!logs.contains("198.51.100.66"), "{logs}");
    Ok(())
}

/// A malformed range is refused at start, naming it, with the configuration exit code.
#[tokio::test]
async fn a_malformed_trusted_proxy_stops_the_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for bad in ["10.0.0.0/33", "10.0.0.1,example.com", "127.0.0.2/32,"] {
        let out = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            tokio::process::Command::new(signet_tests::signet_bin())
                .args(["serve", "--data-dir"])
                .arg(dir.path().join("d"))
                .args(["--trusted-proxies", bad])
                .env_remove("SIGNET_ADMIN_CLIENT_SECRET")
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await??;
        assert_eq!(out.status.code(), Some(78), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("trusted_proxies") && stderr.contains("invalid trusted proxy"),
            "{bad}: {stderr}"
        );
    }
    Ok(())
}
