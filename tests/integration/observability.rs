//! Operability: Prometheus metrics that move with traffic, request ids on responses and in
//! every log line of a request, JSON logs, and no secret in any log line.

use serde_json::{json, Value};
use signet_tests::{Serve, ServeOptions};

fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_move_under_load_and_request_ids_are_echoed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    s.create("/Resource/ApiScope", json!({"name": "m.read"}))
        .await?;
    s.create("/Resource/ApiResource", json!({"name": "m-api", "scopes": ["m.read"], "allowedAccessTokenSigningAlgorithms": ["EdDSA"]})).await?;
    s.create(
        "/Client",
        json!({"clientId": "m", "allowedGrantTypes": ["client_credentials"],
        "clientSecrets": [{"value": "metrics-secret-0123456789"}], "allowedScopes": ["m.read"]}),
    )
    .await?;
    let admin_base = s.admin.trim_end_matches("/admin/v1").to_owned();
    let scrape = || async {
        s.http()
            .get(format!("{admin_base}/metrics"))
            .send()
            .await?
            .text()
            .await
    };
    let before = scrape().await?;
    for _ in 0..20 {
        let (st, _, _) = s
            .token_request(
                Some(("m", "metrics-secret-0123456789")),
                &[("grant_type", "client_credentials")],
            )
            .await?;
        assert_eq!(st, 200);
    }
    for _ in 0..3 {
        let (st, _, _) = s
            .token_request(
                Some(("m", "wrong")),
                &[("grant_type", "client_credentials")],
            )
            .await?;
        assert_eq!(st, 401);
    }
    let after = scrape().await?;
    let issued = |t: &str| {
        metric(
            t,
            "signet_tokens_issued_total",
            &[("grant_type", "client_credentials"), ("alg", "EdDSA")],
        )
    };
    assert_eq!(issued(&after) - issued(&before), 20.0, "{after}");
    let failures = |t: &str| {
        metric(
            t,
            "signet_client_auth_failures_total",
            &[("reason", "invalid_secret")],
        )
    };
    assert_eq!(failures(&after) - failures(&before), 3.0);
    let route = [
        ("route", "/oauth2/token"),
        ("method", "POST"),
        ("status", "200"),
    ];
    assert!(
        metric(&after, "signet_http_requests_total", &route)
            - metric(&before, "signet_http_requests_total", &route)
            >= 20.0
    );
    assert!(
        metric(
            &after,
            "signet_http_request_duration_seconds_count",
            &[("route", "/oauth2/token")]
        ) >= 23.0
    );
    assert!(
        metric(
            &after,
            "signet_token_signing_duration_seconds_count",
            &[("alg", "EdDSA")]
        ) >= 20.0
    );
    assert_eq!(
        metric(
            &after,
            "signet_signing_keys",
            &[("alg", "RS256"), ("state", "active")]
        ),
        1.0
    );
    assert_eq!(metric(&after, "signet_eventlog_lag_events", &[]), 0.0);
    assert!(metric(&after, "signet_eventlog_applied_sequence", &[]) > 10.0);
    assert_eq!(metric(&after, "signet_ready", &[]), 1.0);
    assert!(
        after.contains("process_resident_memory_bytes"),
        "process metrics"
    );
    // Never a client id as a label value.
    assert!(!after.contains("\"m\""), "no client id in labels");
    // The public listener serves /metrics too (DESIGN.md's endpoint list).
    let public = s.http().get(format!("{}/metrics", s.issuer)).send().await?;
    assert_eq!(public.status(), 200);

    // X-Request-Id: generated, or the caller's when sane.
    let r = s.http().get(format!("{}/healthz", s.issuer)).send().await?;
    assert!(r.headers()["x-request-id"].len() >= 16);
    let r = s
        .http()
        .get(format!("{}/healthz", s.issuer))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await?;
    assert_eq!(r.headers()["x-request-id"], "trace-abc-123");
    let r = s
        .http()
        .get(format!("{}/healthz", s.issuer))
        .header("x-request-id", "x".repeat(300))
        .send()
        .await?;
    assert_ne!(r.headers()["x-request-id"].len(), 300);
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn logs_are_json_carry_request_ids_and_never_secrets() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let admin_secret = "log-test-admin-secret-0123456789";
    let opts = ServeOptions {
        admin_secret: Some(admin_secret.into()),
        capture_logs: true,
        extra_args: vec!["--log-format".into(), "json".into()],
        ..Default::default()
    };
    // Trace everything Signet logs: nothing secret may appear even at the most verbose level.
    let s = signet_tests::with_log_filter("trace", Serve::start(dir.path(), opts)).await?;
    let client_secret = "log-test-client-secret-0123456789";
    s.create("/Resource/ApiScope", json!({"name": "l.read"}))
        .await?;
    s.create(
        "/Client",
        json!({"clientId": "logger", "allowedGrantTypes": ["client_credentials"],
        "clientSecrets": [{"value": client_secret}], "allowedScopes": ["l.read"]}),
    )
    .await?;
    let (_, _, body) = s
        .token_request(
            Some(("logger", client_secret)),
            &[("grant_type", "client_credentials")],
        )
        .await?;
    let access_token = body["access_token"].as_str().unwrap().to_owned();
    let form_secret =
        format!("grant_type=client_credentials&client_id=logger&client_secret={client_secret}");
    s.http()
        .post(format!("{}/oauth2/token", s.issuer))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_secret)
        .send()
        .await?;
    s.token_request(
        Some(("logger", "a-wrong-secret-value-987")),
        &[("grant_type", "client_credentials")],
    )
    .await?;
    let admin_token = s.admin_token().await?;
    let r = s
        .http()
        .get(format!("{}/Client", s.admin))
        .bearer_auth(&admin_token)
        .header("x-request-id", "req-under-test")
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    // At trace level every request logs its outcome inside its span, request id included.
    let logs = signet_tests::eventually(std::time::Duration::from_secs(10), || {
        let logs = s.logs();
        async move { logs.contains("req-under-test").then_some(logs) }
    })
    .await?;
    let mut lines = 0;
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{line}"
        );
        lines += 1;
    }
    assert!(lines > 5, "JSON log lines: {lines}");
    let tagged: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("req-under-test"))
        .collect();
    assert!(!tagged.is_empty());
    for secret in [
        admin_secret,
        client_secret,
        "a-wrong-secret-value-987",
        access_token.as_str(),
        admin_token.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret or token reached the logs");
    }
    // Token halves are as secret as the whole.
    let signature = access_token.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature));
    s.stop().await?;
    Ok(())
}
