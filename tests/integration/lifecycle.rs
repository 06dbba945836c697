//! Token lifecycle on a `serve` node: refresh-token rotation and reuse detection, reference
//! access tokens, introspection (RFC 7662) for every token kind and caller, revocation (RFC
//! 7009) and admin revocations, and revocations surviving a restart.

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::browser::code_flow;
use signet_tests::{Serve, ServeOptions};

const REDIRECT: &str = "http://127.0.0.1:1/cb";
const PASSWORD: &str = "erin's password 123";
const API_SECRET: &str = "orders-api-secret-0123456789";

/// A user, an API with a secret (an introspection caller), and three clients: `app`
/// (one-time refresh tokens, JWT access tokens), `refapp` (reference access tokens,
/// reusable refresh tokens), `other` (a stranger).
async fn setup(s: &Serve) -> anyhow::Result<()> {
    s.create(
        "/User",
        json!({"username": "erin", "password": PASSWORD, "claims": {"name": "Erin"}}),
    )
    .await?;
    s.create("/Resource/ApiScope", json!({"name": "orders.read"}))
        .await?;
    s.create(
        "/Resource/ApiResource",
        json!({"name": "orders-api", "scopes": ["orders.read"], "apiSecrets": [{"value": API_SECRET}]}),
    )
    .await?;
    for (id, extra) in [
        ("app", json!({})),
        (
            "refapp",
            json!({"accessTokenType": 1, "refreshTokenUsage": 0, "refreshTokenExpiration": 1}),
        ),
        ("other", json!({})),
    ] {
        let mut body = json!({
            "clientId": id, "allowedGrantTypes": ["authorization_code"],
            "clientSecrets": [{"value": format!("{id}-secret-0123456789")}],
            "allowOfflineAccess": true, "requireConsent": false,
            "redirectUris": [REDIRECT],
            "allowedScopes": ["openid", "profile", "offline_access", "orders.read"]
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        s.create("/Client", body).await?;
    }
    Ok(())
}

fn secret(id: &str) -> String {
    format!("{id}-secret-0123456789")
}

async fn tokens(s: &Serve, client: &str) -> anyhow::Result<Value> {
    code_flow(
        &s.issuer,
        &s.issuer,
        client,
        Some(&secret(client)),
        REDIRECT,
        "openid profile offline_access orders.read",
        "erin",
        PASSWORD,
    )
    .await
}

async fn refresh(s: &Serve, client: &str, token: &str) -> anyhow::Result<(u16, Value)> {
    let sec = secret(client);
    let (status, _, body) = s
        .token_request(
            Some((client, &sec)),
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
        )
        .await?;
    Ok((status, body))
}

/// Introspects as the API resource (`as_client: None`) or as a client.
async fn introspect(s: &Serve, token: &str, as_client: Option<&str>) -> anyhow::Result<Value> {
    let http = reqwest::Client::new();
    let req = http.post(format!("{}/oauth2/introspect", s.issuer));
    let req = match as_client {
        None => req.basic_auth("orders-api", Some(API_SECRET)),
        Some(c) => req.basic_auth(c, Some(secret(c))),
    };
    let r = req.form(&[("token", token)]).send().await?;
    anyhow::ensure!(r.status() == 200, "introspection answered {}", r.status());
    Ok(r.json().await?)
}

async fn revoke(s: &Serve, client: &str, token: &str) -> anyhow::Result<u16> {
    let r = reqwest::Client::new()
        .post(format!("{}/oauth2/revoke", s.issuer))
        .basic_auth(client, Some(secret(client)))
        .form(&[("token", token)])
        .send()
        .await?;
    Ok(r.status().as_u16())
}

async fn userinfo(s: &Serve, token: &str) -> anyhow::Result<u16> {
    Ok(reqwest::Client::new()
        .get(format!("{}/userinfo", s.issuer))
        .bearer_auth(token)
        .send()
        .await?
        .status()
        .as_u16())
}

fn str_of<'a>(v: &'a Value, k: &str) -> anyhow::Result<&'a str> {
    v[k].as_str().with_context(|| format!("no {k} in {v}"))
}

#[tokio::test]
async fn refresh_rotation_reuse_detection_introspection_and_revocation() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    setup(&s).await?;

    // Code flow with offline_access: a refresh token.
    let t = tokens(&s, "app").await?;
    let at1 = str_of(&t, "access_token")?.to_owned();
    let rt1 = str_of(&t, "refresh_token")?.to_owned();
    let i = introspect(&s, &at1, None).await?;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["client_id"], "app");
    assert_eq!(
        (i["token_type"].as_str(), i["token_use"].as_str()),
        (Some("Bearer"), Some("access_token")),
        "{i}"
    );
    let i = introspect(&s, &rt1, Some("app")).await?;
    assert_eq!(i["token_use"], "refresh_token", "{i}");
    assert_eq!(introspect(&s, &at1, Some("other")).await?["active"], false);
    assert_eq!(introspect(&s, &rt1, Some("app")).await?["active"], true);
    assert_eq!(
        introspect(&s, &rt1, None).await?["active"],
        false,
        "not the API's"
    );
    for junk in ["", "x", "a.b.c", &"z".repeat(9000)] {
        if junk.is_empty() {
            continue;
        }
        assert_eq!(introspect(&s, junk, None).await?["active"], false);
    }

    // One-time rotation: rt1 → rt2; rt1 again is reuse: the family dies, with the access
    // tokens issued from it.
    let (status, r2) = refresh(&s, "app", &rt1).await?;
    assert_eq!(status, 200, "{r2}");
    let rt2 = str_of(&r2, "refresh_token")?.to_owned();
    let at2 = str_of(&r2, "access_token")?.to_owned();
    assert_ne!(rt2, rt1);
    assert!(r2["id_token"].is_string());
    assert_eq!(userinfo(&s, &at2).await?, 200);
    // Another client presenting it: refused, nothing changes.
    let (status, body) = refresh(&s, "other", &rt2).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = refresh(&s, "app", &rt1).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = refresh(&s, "app", &rt2).await?;
    assert_eq!(status, 400, "the whole family is revoked");
    assert_eq!(introspect(&s, &at2, None).await?["active"], false);
    assert_eq!(introspect(&s, &at1, None).await?["active"], false);
    assert_eq!(userinfo(&s, &at2).await?, 401);

    // Revocation endpoint: another client's token is ignored (and stays valid); the
    // owner's revocation works for access and refresh tokens.
    let t = tokens(&s, "app").await?;
    let at = str_of(&t, "access_token")?.to_owned();
    let rt = str_of(&t, "refresh_token")?.to_owned();
    assert_eq!(revoke(&s, "other", &at).await?, 200);
    assert_eq!(introspect(&s, &at, None).await?["active"], true);
    assert_eq!(revoke(&s, "app", &at).await?, 200);
    assert_eq!(introspect(&s, &at, None).await?["active"], false);
    assert_eq!(userinfo(&s, &at).await?, 401);
    assert_eq!(introspect(&s, &rt, Some("app")).await?["active"], true);
    assert_eq!(revoke(&s, "app", &rt).await?, 200);
    let (status, _) = refresh(&s, "app", &rt).await?;
    assert_eq!(status, 400);
    assert_eq!(
        revoke(&s, "app", "garbage").await?,
        200,
        "RFC 7009: unknown is fine"
    );
    // Unauthenticated revocation: 401.
    let r = reqwest::Client::new()
        .post(format!("{}/oauth2/revoke", s.issuer))
        .form(&[("token", at.as_str())])
        .send()
        .await?;
    assert_eq!(r.status(), 401);

    // Reference access tokens: opaque, answered by introspection and userinfo; reusable
    // refresh tokens stay the same.
    let t = tokens(&s, "refapp").await?;
    let reference = str_of(&t, "access_token")?.to_owned();
    assert_eq!(reference.matches('.').count(), 0, "opaque: {reference}");
    let i = introspect(&s, &reference, None).await?;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["token_kind"], "reference");
    assert_eq!(userinfo(&s, &reference).await?, 200);
    let rt = str_of(&t, "refresh_token")?.to_owned();
    let (status, r) = refresh(&s, "refapp", &rt).await?;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        str_of(&r, "refresh_token")?,
        rt,
        "refreshTokenUsage 0 reuses"
    );
    assert_eq!(revoke(&s, "refapp", &reference).await?, 200);
    assert_eq!(introspect(&s, &reference, None).await?["active"], false);

    // Admin revocation of everything of a subject: every token of erin stops working, and
    // stays revoked across a restart.
    let t = tokens(&s, "app").await?;
    let at = str_of(&t, "access_token")?.to_owned();
    let sub = introspect(&s, &at, None).await?["sub"]
        .as_str()
        .context("sub")?
        .to_owned();
    let (status, body) = s
        .admin_call(Method::POST, "/revocations", Some(&json!({"sub": sub})))
        .await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["kind"], "subject");
    assert_eq!(introspect(&s, &at, None).await?["active"], false);
    // Bad bodies name the field.
    let (status, body) = s
        .admin_call(Method::POST, "/revocations", Some(&json!({})))
        .await?;
    assert_eq!(status, 400, "{body}");
    let (status, body) = s
        .admin_call(
            Method::POST,
            "/revocations",
            Some(&json!({"jti": "x", "issuedBefore": 5})),
        )
        .await?;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("issuedBefore"))
    );

    let opts = s.options.clone();
    let data = s.data_dir.clone();
    s.stop().await?;
    let s = Serve::start(&data, opts).await?;
    assert_eq!(
        introspect(&s, &at, None).await?["active"],
        false,
        "after a restart"
    );
    assert_eq!(userinfo(&s, &at).await?, 401);
    Ok(())
}

/// Reusable refresh tokens with sliding expiry: each use renews the window; unused for
/// longer than `slidingRefreshTokenLifetime`, the token is dead.
#[tokio::test]
async fn reusable_sliding_refresh_tokens_expire_when_unused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    setup(&s).await?;
    s.create(
        "/Client",
        json!({
            "clientId": "slider", "allowedGrantTypes": ["authorization_code"],
            "clientSecrets": [{"value": secret("slider")}],
            "allowOfflineAccess": true, "requireConsent": false,
            "refreshTokenUsage": 0, "refreshTokenExpiration": 0,
            "slidingRefreshTokenLifetime": 2, "redirectUris": [REDIRECT],
            "allowedScopes": ["openid", "offline_access"]
        }),
    )
    .await?;
    let t = code_flow(
        &s.issuer,
        &s.issuer,
        "slider",
        Some(&secret("slider")),
        REDIRECT,
        "openid offline_access",
        "erin",
        PASSWORD,
    )
    .await?;
    let rt = str_of(&t, "refresh_token")?.to_owned();
    // Used within the window, again and again: the same token keeps working.
    for _ in 0..3 {
        let (status, body) = refresh(&s, "slider", &rt).await?;
        assert_eq!(status, 200, "{body}");
        assert_eq!(str_of(&body, "refresh_token")?, rt);
    }
    // Unused for longer than the window (2 s): wait on the clock, the thing under test.
    let last_use = std::time::Instant::now();
    signet_tests::eventually(std::time::Duration::from_secs(10), || async {
        (last_use.elapsed() > std::time::Duration::from_millis(2200)).then_some(())
    })
    .await?;
    let (status, body) = refresh(&s, "slider", &rt).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    Ok(())
}

/// `client_credentials` with `accessTokenType: 1`: an opaque handle that introspection
/// answers for, until it is revoked.
#[tokio::test]
async fn client_credentials_reference_tokens() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    setup(&s).await?;
    s.create(
        "/Client",
        json!({"clientId": "svc", "allowedGrantTypes": ["client_credentials"],
            "clientSecrets": [{"value": secret("svc")}], "accessTokenType": 1,
            "allowedScopes": ["orders.read"]}),
    )
    .await?;
    let sec = secret("svc");
    let (status, _, body) = s
        .token_request(Some(("svc", &sec)), &[("grant_type", "client_credentials")])
        .await?;
    assert_eq!(status, 200, "{body}");
    let handle = str_of(&body, "access_token")?.to_owned();
    assert!(!handle.contains('.'), "opaque: {handle}");
    let i = introspect(&s, &handle, None).await?;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["client_id"], "svc");
    assert_eq!(revoke(&s, "svc", &handle).await?, 200);
    assert_eq!(introspect(&s, &handle, None).await?["active"], false);
    Ok(())
}
