//! A disk that fills up under `signet serve`: its data directory sits on a 16 MiB tmpfs of
//! its own (a private mount namespace, `signet_tests::tmpfs`), which the test fills to the
//! last page. Writes then fail with 503 `temporarily_unavailable` (protocol endpoints) or a
//! JSON 503 (admin API), never a 500, and use nothing up; stateless grants and reads go on.
//! Once the space is freed the same process writes again (the store reopens itself, the
//! event log rolled its failed append back), and a restart on the same data directory finds
//! every acknowledged write and nothing else.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use signet_tests::browser::{authorization_code, code_flow, PKCE_CHALLENGE, PKCE_VERIFIER};
use signet_tests::tmpfs::Tmpfs;
use signet_tests::{eventually, Serve, ServeOptions};

const REDIRECT: &str = "http://127.0.0.1:1/cb";
const PASSWORD: &str = "kim's password 123";
const SECRET: &str = "app-secret-0123456789";
const SVC_SECRET: &str = "svc-secret-0123456789";
const API_SECRET: &str = "orders-api-secret-0123456789";

async fn token(
    s: &Serve,
    basic: (&str, &str),
    form: &[(&str, &str)],
) -> anyhow::Result<(u16, Value)> {
    let (status, _, body) = s.token_request(Some(basic), form).await?;
    Ok((status, body))
}

async fn refresh(s: &Serve, rt: &str) -> anyhow::Result<(u16, Value)> {
    token(
        s,
        ("app", SECRET),
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await
}

async fn redeem(s: &Serve, code: &str) -> anyhow::Result<(u16, Value)> {
    token(
        s,
        ("app", SECRET),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", PKCE_VERIFIER),
        ],
    )
    .await
}

async fn client_credentials(s: &Serve) -> anyhow::Result<(u16, Value)> {
    token(
        s,
        ("svc", SVC_SECRET),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "orders.read"),
        ],
    )
    .await
}

/// A pushed authorization request carrying ~12 KB of extension parameters: each one stored
/// needs fresh pages of the store file, so a full disk cannot hide it in freed pages.
async fn push(s: &Serve) -> anyhow::Result<(u16, Value)> {
    let filler = "x".repeat(2000);
    let mut form = vec![
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("state", "s"),
        ("code_challenge", PKCE_CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let names = ["x1", "x2", "x3", "x4", "x5", "x6"];
    for n in names {
        form.push((n, filler.as_str()));
    }
    let r = s
        .http()
        .post(format!("{}/oauth2/par", s.issuer))
        .basic_auth("app", Some(SECRET))
        .form(&form)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// A client whose creation event is larger than a page, so that its append needs new space
/// in the event log's file (a small one could fit in the slack of the last page).
fn big_client() -> Value {
    let uris: Vec<String> = (0..40)
        .map(|i| format!("https://app.example/callback/{i}/{}", "p".repeat(100)))
        .collect();
    json!({
        "clientId": "big", "allowedGrantTypes": ["authorization_code"],
        "clientSecrets": [{"value": "big-secret-0123456789"}],
        "redirectUris": uris, "allowedScopes": ["openid"]
    })
}

fn assert_unavailable(what: &str, (status, body): &(u16, Value)) {
    assert_eq!(
        (*status, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{what} on a full disk: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_with_503_and_the_node_recovers_when_space_returns(
) -> anyhow::Result<()> {
    let Some(disk) = Tmpfs::mount("16m").await? else {
        return Ok(());
    };
    let data = disk.dir().join("data");
    let s = Serve::start(
        &data,
        ServeOptions {
            launcher: disk.launcher(),
            capture_logs: true,
            ..ServeOptions::default()
        },
    )
    .await?;
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
            "refreshTokenUsage": 1
        }),
    )
    .await?;
    s.create("/Resource/ApiScope", json!({"name": "orders.read"}))
        .await?;
    s.create(
        "/Resource/ApiResource",
        json!({"name": "orders-api", "scopes": ["orders.read"], "apiSecrets": [{"value": API_SECRET}]}),
    )
    .await?;
    s.create(
        "/Client",
        json!({"clientId": "svc", "allowedGrantTypes": ["client_credentials"],
            "clientSecrets": [{"value": SVC_SECRET}], "allowedScopes": ["orders.read"]}),
    )
    .await?;

    // Before: a refresh token (rotated once), an unredeemed code, an access token.
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
    let rt0 = t["refresh_token"].as_str().context("refresh_token")?;
    let (status, body) = refresh(&s, rt0).await?;
    assert_eq!(status, 200, "{body}");
    let rt1 = body["refresh_token"]
        .as_str()
        .context("rotated refresh_token")?
        .to_owned();
    let code = authorization_code(
        &s.issuer,
        "app",
        REDIRECT,
        "openid offline_access",
        "kim",
        PASSWORD,
    )
    .await?;
    let (status, body) = client_credentials(&s).await?;
    assert_eq!(status, 200, "{body}");
    let at = body["access_token"]
        .as_str()
        .context("access_token")?
        .to_owned();

    // The disk fills up. The store still has freed pages inside its file, so small writes
    // may land there; the first write that needs new space fails, and from then on the
    // store refuses every write until it is reopened, which it is not while the disk is
    // full.
    let filled = disk.fill()?;
    let mut pushes = 0;
    let failed = loop {
        let r = push(&s).await?;
        match r.0 {
            201 if pushes < 50 => pushes += 1,
            503 => break r,
            _ => bail!("pushed request {pushes} on a full disk ({filled} bytes filler): {r:?}"),
        }
    };
    assert_unavailable("a pushed authorization request", &failed);
    eprintln!(
        "disk_full: {filled} bytes of filler; {pushes} pushed requests fitted before the \
         first 503"
    );
    assert_unavailable("a refresh", &refresh(&s, &rt1).await?);
    assert_unavailable("a code redemption", &redeem(&s, &code).await?);
    let (status, body) = s
        .admin_call(reqwest::Method::POST, "/Client", Some(&big_client()))
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("unavailable")),
        "an admin write on a full disk: {body}"
    );

    // Reads and stateless grants go on.
    let discovery = s
        .http()
        .get(format!("{}/.well-known/openid-configuration", s.issuer))
        .send()
        .await?;
    assert_eq!(discovery.status(), 200);
    assert!(!s.jwks().await?.keys.is_empty());
    let (status, body) = client_credentials(&s).await?;
    assert_eq!(status, 200, "client_credentials on a full disk: {body}");
    let i = s.introspect(("orders-api", API_SECRET), &at).await?;
    assert_eq!(i["active"], true, "{i}");

    // Space again: the same process writes again, without a restart. The failed attempts
    // used nothing up: the refresh token and the code still work, once each.
    disk.free()?;
    let (node, current) = (&s, rt1.as_str());
    let (status, body) = eventually(Duration::from_secs(30), || async move {
        match refresh(node, current).await {
            Ok((503, _)) => None,
            other => Some(other),
        }
    })
    .await??;
    assert_eq!(status, 200, "the refresh once the disk has room: {body}");
    let rt2 = body["refresh_token"].as_str().context("rt2")?.to_owned();
    let (status, body) = redeem(&s, &code).await?;
    assert_eq!(status, 200, "the code once the disk has room: {body}");
    assert_eq!(redeem(&s, &code).await?.0, 400, "a code is redeemed once");
    assert_eq!(push(&s).await?.0, 201);
    s.create("/Client", big_client()).await?;
    let (status, body) = refresh(&s, &rt2).await?;
    assert_eq!(status, 200, "{body}");
    let rt3 = body["refresh_token"].as_str().context("rt3")?.to_owned();
    let logs = s.logs();
    assert!(
        logs.contains("the store was reopened after a failed write"),
        "{logs}"
    );
    assert!(!logs.contains("panicked"), "{logs}");

    // A restart on the same data directory: the store and the log open (neither is
    // corrupt), every acknowledged write is there and nothing that failed.
    let options = s.options.clone();
    let admin_secret = s.admin_secret.clone();
    s.stop().await?;
    let mut s = Serve::start(&data, options).await?;
    s.admin_secret = admin_secret;
    let (status, body) = refresh(&s, &rt3).await?;
    assert_eq!(
        status, 200,
        "the newest refresh token after the restart: {body}"
    );
    let (status, body) = refresh(&s, &rt3).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "the newest refresh token refreshes once: {body}"
    );
    for old in [rt0, rt1.as_str(), rt2.as_str()] {
        let (status, body) = refresh(&s, old).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "a rotated refresh token: {body}"
        );
    }
    for client in ["app", "svc", "big"] {
        let (status, body) = s
            .admin_call(reqwest::Method::GET, &format!("/Client/{client}"), None)
            .await?;
        assert_eq!(status, 200, "client {client} after the restart: {body}");
    }
    s.stop().await?;
    Ok(())
}
