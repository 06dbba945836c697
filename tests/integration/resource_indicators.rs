//! Resource indicators (RFC 8707) against the real `signet serve`: `resource` narrows an
//! access token's `aud` (checked by `libs/verify` expecting each audience) and scopes, at
//! client_credentials, the code flow (also pushed) and refresh; bad values are
//! `invalid_target`.

use anyhow::Context;
use serde_json::{json, Value};
use signet_tests::browser::{params_of, Browser, PKCE_CHALLENGE, PKCE_VERIFIER};
use signet_tests::{Serve, ServeOptions};

const ORDERS: &str = "https://orders.example.com";
const BILLING: &str = "https://billing.example.com";
/// A resource whose scope no client here may use.
const OTHER: &str = "https://other.example.com";
const SECRET: &str = "resource-indicator-secret-0123";
const PASSWORD: &str = "rita's password 123";
const REDIRECT: &str = "http://127.0.0.1:1/cb";

/// Two API resources named by URI (each with one scope), a third the clients may not use,
/// a machine client `svc` and a code-flow client `web` allowed both, and user `rita`.
async fn setup() -> anyhow::Result<(tempfile::TempDir, Serve)> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    for (scope, resource) in [
        ("orders.read", ORDERS),
        ("billing.read", BILLING),
        ("other.read", OTHER),
    ] {
        s.create("/Resource/ApiScope", json!({ "name": scope }))
            .await?;
        s.create(
            "/Resource/ApiResource",
            json!({ "name": resource, "scopes": [scope] }),
        )
        .await?;
    }
    s.create(
        "/Client",
        json!({
            "clientId": "svc",
            "allowedGrantTypes": ["client_credentials"],
            "clientSecrets": [{ "value": SECRET }],
            "allowedScopes": ["orders.read", "billing.read"],
        }),
    )
    .await?;
    s.create(
        "/Client",
        json!({
            "clientId": "web",
            "allowedGrantTypes": ["authorization_code"],
            "clientSecrets": [{ "value": SECRET }],
            "redirectUris": [REDIRECT],
            "allowedScopes": ["openid", "orders.read", "billing.read"],
            "allowOfflineAccess": true,
            "requireConsent": false,
        }),
    )
    .await?;
    s.create("/User", json!({ "username": "rita", "password": PASSWORD }))
        .await?;
    Ok((dir, s))
}

fn verifier(s: &Serve, audience: &str) -> anyhow::Result<signet_verify::Verifier> {
    Ok(signet_verify::Verifier::builder(&s.issuer, audience).build()?)
}

/// Asserts `token` verifies for exactly the audiences `yes` and is refused for `no`.
async fn assert_audiences(s: &Serve, token: &str, yes: &[&str], no: &[&str]) -> anyhow::Result<()> {
    for a in yes {
        verifier(s, a)?
            .verify(token)
            .await
            .with_context(|| format!("a verifier expecting {a} refused the token"))?;
    }
    for a in no {
        assert!(
            verifier(s, a)?.verify(token).await.is_err(),
            "a verifier expecting {a} accepted the token"
        );
    }
    Ok(())
}

async fn token(s: &Serve, client: &str, form: &[(&str, &str)]) -> anyhow::Result<(u16, Value)> {
    let (status, _, body) = s.token_request(Some((client, SECRET)), form).await?;
    Ok((status, body))
}

fn access_token(body: &Value) -> anyhow::Result<String> {
    Ok(body["access_token"]
        .as_str()
        .with_context(|| format!("no access_token in {body}"))?
        .to_owned())
}

#[tokio::test]
async fn client_credentials_tokens_are_narrowed_to_the_requested_resource() -> anyhow::Result<()> {
    let (_dir, s) = setup().await?;
    let cc = ("grant_type", "client_credentials");

    // Without `resource`: every API the scopes reach, as before.
    let (st, body) = token(&s, "svc", &[cc]).await?;
    assert_eq!(st, 200, "{body}");
    assert_audiences(&s, &access_token(&body)?, &[ORDERS, BILLING], &[OTHER]).await?;

    // One resource: its audience only, its scopes only.
    let (st, body) = token(&s, "svc", &[cc, ("resource", ORDERS)]).await?;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["scope"], "orders.read");
    assert_audiences(&s, &access_token(&body)?, &[ORDERS], &[BILLING]).await?;

    // `resource` repeated: both.
    let (st, body) = token(
        &s,
        "svc",
        &[cc, ("resource", BILLING), ("resource", ORDERS)],
    )
    .await?;
    assert_eq!(st, 200, "{body}");
    assert_audiences(&s, &access_token(&body)?, &[ORDERS, BILLING], &[OTHER]).await?;

    // invalid_target: unknown, relative, with a fragment, a resource whose scopes the
    // client may not use, a resource none of the requested scopes belongs to.
    for form in [
        vec![cc, ("resource", "https://unknown.example.com")],
        vec![cc, ("resource", "/orders")],
        vec![cc, ("resource", "orders")],
        vec![cc, ("resource", "https://orders.example.com#x")],
        vec![cc, ("resource", OTHER)],
        vec![cc, ("resource", ORDERS), ("resource", OTHER)],
        vec![cc, ("scope", "billing.read"), ("resource", ORDERS)],
    ] {
        let (st, body) = token(&s, "svc", &form).await?;
        assert_eq!(
            (st, body["error"].as_str()),
            (400, Some("invalid_target")),
            "{form:?}: {body}"
        );
    }
    // Other parameters still may not repeat.
    let (st, body) = token(
        &s,
        "svc",
        &[cc, ("scope", "orders.read"), ("scope", "orders.read")],
    )
    .await?;
    assert_eq!(
        (st, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    Ok(())
}

/// `/oauth2/authorize` for `web` with `resources`, then signs rita in (or, when `browser`
/// is signed in already, goes straight through); returns the redirect's parameters.
async fn authorize(
    s: &Serve,
    b: &mut Browser,
    query: &[(&str, &str)],
    signed_in: bool,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer))?;
    u.query_pairs_mut().extend_pairs(query);
    let r = if signed_in {
        b.get(u.as_str()).await?
    } else {
        b.sign_in(u.as_str(), "rita", PASSWORD).await?
    };
    anyhow::ensure!(
        r.status == 302,
        "authorize answered {}: {}",
        r.status,
        r.body
    );
    Ok(params_of(&r.location()?, false))
}

fn code_query<'a>(resources: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    let mut q = vec![
        ("client_id", "web"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "openid orders.read billing.read offline_access"),
        ("code_challenge", PKCE_CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    q.extend(resources.iter().map(|r| ("resource", *r)));
    q
}

async fn redeem(s: &Serve, code: &str, resources: &[&str]) -> anyhow::Result<(u16, Value)> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", PKCE_VERIFIER),
    ];
    form.extend(resources.iter().map(|r| ("resource", *r)));
    token(s, "web", &form).await
}

async fn refresh(s: &Serve, rt: &str, resources: &[&str]) -> anyhow::Result<(u16, Value)> {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", rt)];
    form.extend(resources.iter().map(|r| ("resource", *r)));
    token(s, "web", &form).await
}

#[tokio::test]
async fn code_flow_and_refresh_narrow_to_granted_resources() -> anyhow::Result<()> {
    let (_dir, s) = setup().await?;
    let mut b = Browser::new();

    // Granted for both; the code redeemed for orders only.
    let p = authorize(&s, &mut b, &code_query(&[ORDERS, BILLING]), false).await?;
    let code = p.get("code").with_context(|| format!("no code: {p:?}"))?;
    let (st, body) = redeem(&s, code, &[ORDERS]).await?;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["scope"], "openid orders.read offline_access");
    assert!(body["id_token"].is_string() && body["refresh_token"].is_string());
    assert_audiences(&s, &access_token(&body)?, &[ORDERS], &[BILLING]).await?;
    let rt = body["refresh_token"]
        .as_str()
        .context("refresh_token")?
        .to_owned();

    // The refresh token keeps the whole grant: billing alone, then both, then neither
    // named (the grant's resources).
    let (st, body) = refresh(&s, &rt, &[BILLING]).await?;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["scope"], "openid billing.read offline_access");
    assert_audiences(&s, &access_token(&body)?, &[BILLING], &[ORDERS]).await?;
    let rt = body["refresh_token"].as_str().unwrap_or(&rt).to_owned();
    let (st, body) = refresh(&s, &rt, &[]).await?;
    assert_eq!(st, 200, "{body}");
    assert_audiences(&s, &access_token(&body)?, &[ORDERS, BILLING], &[OTHER]).await?;
    let rt = body["refresh_token"].as_str().unwrap_or(&rt).to_owned();
    // Another resource (even a known one) than the grant's: invalid_target.
    for r in [OTHER, "https://unknown.example.com", "relative"] {
        let (st, body) = refresh(&s, &rt, &[r]).await?;
        assert_eq!(
            (st, body["error"].as_str()),
            (400, Some("invalid_target")),
            "{r}: {body}"
        );
    }

    // Granted for orders only: the code cannot be widened to billing, and a refresh token
    // of that grant cannot either.
    let p = authorize(&s, &mut b, &code_query(&[ORDERS]), true).await?;
    let code = p.get("code").context("code")?;
    let (st, body) = redeem(&s, code, &[BILLING]).await?;
    assert_eq!(
        (st, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    let p = authorize(&s, &mut b, &code_query(&[ORDERS]), true).await?;
    let (st, body) = redeem(&s, p.get("code").context("code")?, &[]).await?;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["scope"], "openid orders.read offline_access");
    assert_audiences(&s, &access_token(&body)?, &[ORDERS], &[BILLING]).await?;
    let rt = body["refresh_token"]
        .as_str()
        .context("refresh_token")?
        .to_owned();
    let (st, body) = refresh(&s, &rt, &[BILLING]).await?;
    assert_eq!(
        (st, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );

    // Bad `resource` at the authorization endpoint: back to the client as invalid_target.
    for r in [
        "https://unknown.example.com",
        "/orders",
        "https://orders.example.com/#f",
        OTHER,
    ] {
        let p = authorize(&s, &mut b, &code_query(&[r]), true).await?;
        assert_eq!(
            p.get("error").map(String::as_str),
            Some("invalid_target"),
            "{r}: {p:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn pushed_requests_carry_resource() -> anyhow::Result<()> {
    let (_dir, s) = setup().await?;
    let http = reqwest::Client::new();
    let push = |resources: Vec<&'static str>| {
        let mut form = code_query(&resources);
        form.retain(|(k, _)| *k != "client_id");
        let req = http
            .post(format!("{}/oauth2/par", s.issuer))
            .basic_auth("web", Some(SECRET))
            .form(&form);
        async move {
            let r = req.send().await?;
            anyhow::Ok((r.status().as_u16(), r.json::<Value>().await?))
        }
    };
    let (st, body) = push(vec!["https://orders.example.com#f"]).await?;
    assert_eq!(
        (st, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );

    let (st, body) = push(vec![BILLING]).await?;
    assert_eq!(st, 201, "{body}");
    let request_uri = body["request_uri"].as_str().context("request_uri")?;
    let mut b = Browser::new();
    let p = authorize(
        &s,
        &mut b,
        &[("client_id", "web"), ("request_uri", request_uri)],
        false,
    )
    .await?;
    let (st, body) = redeem(&s, p.get("code").context("code")?, &[]).await?;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["scope"], "openid billing.read offline_access");
    assert_audiences(&s, &access_token(&body)?, &[BILLING], &[ORDERS]).await?;
    Ok(())
}

/// A token from the authorization endpoint (implicit `token`) is narrowed too: its `aud`
/// and its `scope` claim.
#[tokio::test]
async fn implicit_tokens_are_narrowed_at_the_authorization_endpoint() -> anyhow::Result<()> {
    let (_dir, s) = setup().await?;
    s.create(
        "/Client",
        json!({
            "clientId": "spa", "allowedGrantTypes": ["implicit"],
            "allowAccessTokensViaBrowser": true, "requireConsent": false,
            "requireClientSecret": false, "redirectUris": [REDIRECT],
            "allowedScopes": ["orders.read", "billing.read"],
        }),
    )
    .await?;
    let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer))?;
    u.query_pairs_mut()
        .append_pair("client_id", "spa")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "token")
        .append_pair("scope", "orders.read billing.read")
        .append_pair("resource", BILLING);
    let r = Browser::new().sign_in(u.as_str(), "rita", PASSWORD).await?;
    anyhow::ensure!(r.status == 302, "login answered {}: {}", r.status, r.body);
    let p = params_of(&r.location()?, true);
    let at = p
        .get("access_token")
        .with_context(|| format!("no token: {p:?}"))?;
    let claims = verifier(&s, BILLING)?.verify(at).await?;
    assert!(claims.has_scope("billing.read") && !claims.has_scope("orders.read"));
    assert!(verifier(&s, ORDERS)?.verify(at).await.is_err());
    Ok(())
}

/// The device grant: the token request names the resource; a resource the grant cannot be
/// narrowed to is refused without using the approval up.
#[tokio::test]
async fn device_tokens_are_narrowed_at_the_token_request() -> anyhow::Result<()> {
    const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
    let (_dir, s) = setup().await?;
    s.create(
        "/Client",
        json!({
            "clientId": "tv", "allowedGrantTypes": [DEVICE_GRANT],
            "requireClientSecret": false, "allowedScopes": ["orders.read", "billing.read"],
        }),
    )
    .await?;
    let http = reqwest::Client::new();
    let d: Value = http
        .post(format!("{}/oauth2/device_authorization", s.issuer))
        .form(&[("client_id", "tv"), ("scope", "orders.read billing.read")])
        .send()
        .await?
        .json()
        .await?;
    let device_code = d["device_code"].as_str().with_context(|| format!("{d}"))?;

    // rita signs in at verification_uri_complete and allows.
    let mut b = Browser::new();
    approve_device(&mut b, &s.issuer, &d).await?;

    let poll = |resource: &'static str| {
        let req = http.post(format!("{}/oauth2/token", s.issuer)).form(&[
            ("grant_type", DEVICE_GRANT),
            ("client_id", "tv"),
            ("device_code", device_code),
            ("resource", resource),
        ]);
        async move {
            let r = req.send().await?;
            anyhow::Ok((r.status().as_u16(), r.json::<Value>().await?))
        }
    };
    for bad in [OTHER, "https://unknown.example.com", "relative"] {
        let (st, body) = poll(bad).await?;
        assert_eq!(
            (st, body["error"].as_str()),
            (400, Some("invalid_target")),
            "{bad}: {body}"
        );
    }
    let (st, body) = poll(ORDERS).await?;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["scope"], "orders.read");
    assert_audiences(&s, &access_token(&body)?, &[ORDERS], &[BILLING]).await?;

    // `resource` at the device authorization request: refused there when unknown; else the
    // grant is for that resource, and the token request cannot widen it.
    let authorize_device = |resource: &'static str| {
        let req = http
            .post(format!("{}/oauth2/device_authorization", s.issuer))
            .form(&[
                ("client_id", "tv"),
                ("scope", "orders.read billing.read"),
                ("resource", resource),
            ]);
        async move {
            let r = req.send().await?;
            anyhow::Ok((r.status().as_u16(), r.json::<Value>().await?))
        }
    };
    let (st, body) = authorize_device("https://unknown.example.com").await?;
    assert_eq!(
        (st, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    let (st, d) = authorize_device(BILLING).await?;
    assert_eq!(st, 200, "{d}");
    // Another browser (one signed in already goes straight to the confirmation).
    approve_device(&mut Browser::new(), &s.issuer, &d).await?;
    let device_code = d["device_code"].as_str().context("device_code")?;
    let token = |resource: Option<&'static str>| {
        let mut form = vec![
            ("grant_type", DEVICE_GRANT),
            ("client_id", "tv"),
            ("device_code", device_code),
        ];
        form.extend(resource.map(|r| ("resource", r)));
        let req = http.post(format!("{}/oauth2/token", s.issuer)).form(&form);
        async move {
            let r = req.send().await?;
            anyhow::Ok((r.status().as_u16(), r.json::<Value>().await?))
        }
    };
    let (st, body) = token(Some(ORDERS)).await?;
    assert_eq!(
        (st, body["error"].as_str()),
        (400, Some("invalid_target")),
        "not granted: {body}"
    );
    let (st, body) = token(None).await?;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["scope"], "billing.read");
    assert_audiences(&s, &access_token(&body)?, &[BILLING], &[ORDERS]).await?;
    Ok(())
}

/// Signs rita in with `b` at the device authorization answer `d`'s
/// `verification_uri_complete` and allows the device.
async fn approve_device(b: &mut Browser, issuer: &str, d: &Value) -> anyhow::Result<()> {
    let complete = d["verification_uri_complete"]
        .as_str()
        .context("complete")?;
    let first = b.get(complete).await?;
    let login_url = first.location()?;
    let login = b.get(login_url.as_str()).await?;
    let action = login_url.as_str().split('?').next().unwrap_or_default();
    let (interaction, csrf) = (login.hidden("interaction")?, login.hidden("csrf")?);
    let done = b
        .post_form(
            action,
            &[
                ("interaction", &interaction),
                ("csrf", &csrf),
                ("username", "rita"),
                ("password", PASSWORD),
            ],
        )
        .await?;
    let confirm = b.get(done.location()?.as_str()).await?;
    let (interaction, csrf) = (confirm.hidden("interaction")?, confirm.hidden("csrf")?);
    let allowed = b
        .post_form(
            &format!("{issuer}/device"),
            &[
                ("interaction", &interaction),
                ("csrf", &csrf),
                ("user_code", &confirm.hidden("user_code")?),
                ("decision", "allow"),
            ],
        )
        .await?;
    assert!(
        allowed.body.contains("Your device is connected"),
        "{}",
        allowed.body
    );
    Ok(())
}
