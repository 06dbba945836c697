//! Regression tests of the black-box security review (issue 19): each attack as the review
//! made it, against the real `signet serve`, and the refusal that now answers it.

use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::browser::{code_flow, Browser};
use signet_tests::{eventually, Serve, ServeOptions};

const PASSWORD: &str = "hana's password 12";
const API_SECRET: &str = "orders-api-secret-0123456789";
const WEB_SECRET: &str = "web-client-secret-0123456789";
const REDIRECT: &str = "http://127.0.0.1:1/cb";

/// A node with user `hana`, API scope `orders.read` (available for API keys) and
/// `orders.write` (not), and API resource `orders-api` with an introspection secret.
async fn setup() -> anyhow::Result<(tempfile::TempDir, Serve, String)> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let user = s
        .create(
            "/User",
            json!({"username": "hana", "password": PASSWORD, "claims": {"email": "hana@example.com"}}),
        )
        .await?;
    let sub = user["sub"].as_str().context("sub")?.to_owned();
    s.create(
        "/Resource/ApiScope",
        json!({"name": "orders.read", "properties": {"signet:apiKeys": "true"}}),
    )
    .await?;
    s.create("/Resource/ApiScope", json!({"name": "orders.write"}))
        .await?;
    s.create(
        "/Resource/ApiResource",
        json!({"name": "orders-api", "scopes": ["orders.read", "orders.write"], "apiSecrets": [{"value": API_SECRET}]}),
    )
    .await?;
    Ok((dir, s, sub))
}

/// A confidential code-flow client without consent.
fn web_client(id: &str, scopes: &[&str], extra: Value) -> Value {
    let mut c = json!({
        "clientId": id,
        "allowedGrantTypes": ["authorization_code"],
        "clientSecrets": [{"value": WEB_SECRET}],
        "redirectUris": [REDIRECT],
        "allowedScopes": scopes,
        "allowOfflineAccess": true,
        "requireConsent": false,
    });
    if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
        c.extend(extra);
    }
    c
}

async fn introspect(s: &Serve, token: &str) -> anyhow::Result<Value> {
    s.introspect(("orders-api", API_SECRET), token).await
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

async fn refresh(s: &Serve, client: &str, token: &str) -> anyhow::Result<(u16, Value)> {
    let (status, _, body) = s
        .token_request(
            Some((client, WEB_SECRET)),
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
        )
        .await?;
    Ok((status, body))
}

/// An authorization request of client `web` (code, PKCE) for `openid`.
fn authorize_url(s: &Serve) -> anyhow::Result<url::Url> {
    let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer))?;
    u.query_pairs_mut()
        .append_pair("client_id", "web")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("code_challenge", signet_tests::browser::PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    Ok(u)
}

/// Signs hana in to `client` and returns the token response.
async fn sign_in(s: &Serve, client: &str, scope: &str) -> anyhow::Result<Value> {
    code_flow(
        &s.issuer,
        &s.issuer,
        client,
        Some(WEB_SECRET),
        REDIRECT,
        scope,
        "hana",
        PASSWORD,
    )
    .await
}

fn token_of(v: &Value, member: &str) -> anyhow::Result<String> {
    Ok(v[member]
        .as_str()
        .with_context(|| format!("no {member} in {v}"))?
        .to_owned())
}

/// The signed-in cookie header and JSON CSRF token of hana's account pages.
async fn account_session(s: &Serve) -> anyhow::Result<(Browser, String, String)> {
    let mut b = Browser::new();
    let back = b
        .sign_in(&format!("{}/account/api-keys", s.issuer), "hana", PASSWORD)
        .await?;
    anyhow::ensure!(back.status == 302, "sign-in: {}", back.body);
    let cookie = b.cookie_header().unwrap_or_default();
    let list: Value = reqwest::Client::new()
        .get(format!("{}/account/api-keys/keys", s.issuer))
        .header("cookie", &cookie)
        .send()
        .await?
        .json()
        .await?;
    let csrf = list["csrf"].as_str().context("csrf")?.to_owned();
    Ok((b, cookie, csrf))
}

async fn make_key(
    s: &Serve,
    cookie: &str,
    csrf: &str,
    scopes: &[&str],
) -> anyhow::Result<(u16, Value)> {
    let r = reqwest::Client::new()
        .post(format!("{}/account/api-keys/keys", s.issuer))
        .header("cookie", cookie)
        .header("x-csrf-token", csrf)
        .json(&json!({"name": "x", "scopes": scopes}))
        .send()
        .await?;
    Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
}

/// High: a user could put `signet.admin` on an API key, exchange it for a JWT and call the
/// admin API with it. Three layers now refuse: the key's scopes, the admin API's token
/// check, and the exchange.
#[tokio::test]
async fn a_user_cannot_obtain_a_credential_the_admin_api_accepts() -> anyhow::Result<()> {
    let (_dir, s, sub) = setup().await?;
    s.create(
        "/Client",
        json!({"clientId": "exchanger",
            "allowedGrantTypes": ["urn:ietf:params:oauth:grant-type:token-exchange"],
            "clientSecrets": [{"value": "exchanger-secret-0123456789"}],
            "allowedScopes": ["orders.read", "orders.write", "signet.admin"]}),
    )
    .await?;

    // Only operators allow-list scopes for keys, and never the admin or identity scopes.
    for (path, body) in [
        (
            "/Resource/ApiScope",
            json!({"name": "signet.admin", "displayName": "Signet administration", "properties": {"signet:apiKeys": "true"}}),
        ),
        (
            "/Resource/IdentityResource",
            json!({"name": "profile", "userClaims": ["name"], "properties": {"signet:apiKeys": "true"}}),
        ),
        (
            "/Resource/ApiScope",
            json!({"name": "orders.read", "properties": {"signet:apiKeys": "yes"}}),
        ),
    ] {
        let (st, b) = s.admin_call(Method::PUT, path, Some(&body)).await?;
        assert_eq!(st, 400, "{path} {b}");
        assert_eq!(b["field"], "properties.signet:apiKeys", "{b}");
    }

    // Layer 1: the key's scopes. The review's request answered 201; now 400 naming the scope.
    let (_b, cookie, csrf) = account_session(&s).await?;
    for (scopes, field) in [
        (vec!["orders.read", "signet.admin"], "scopes[1]"),
        (vec!["orders.write"], "scopes[0]"),
        (vec!["openid"], "scopes[0]"),
    ] {
        let (st, b) = make_key(&s, &cookie, &csrf, &scopes).await?;
        assert_eq!(st, 400, "{scopes:?} {b}");
        assert_eq!(b["field"], field, "{b}");
    }
    let (st, made) = make_key(&s, &cookie, &csrf, &["orders.read"]).await?;
    assert_eq!(st, 201, "{made}");
    let key = token_of(&made, "key")?;

    // Layer 3: the exchange never widens what the key carries.
    let exchange = |scope: Option<&'static str>| {
        let key = key.clone();
        let s = &s;
        async move {
            let mut form = vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", key.as_str()),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
            ];
            if let Some(sc) = scope {
                form.push(("scope", sc));
            }
            s.token_request(Some(("exchanger", "exchanger-secret-0123456789")), &form)
                .await
        }
    };
    let (st, _, b) = exchange(Some("orders.read signet.admin")).await?;
    assert_eq!(
        (st, b["error"].as_str()),
        (400, Some("invalid_scope")),
        "{b}"
    );
    let (st, _, b) = exchange(None).await?;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["scope"], "orders.read");

    // Layer 2: the admin API takes no token issued for a user, whatever its scope. A
    // code-flow client allowed signet.admin gets hana a token with aud signet and scope
    // signet.admin: the admin API refuses it.
    s.create(
        "/Client",
        web_client("portal", &["openid", "signet.admin"], json!({})),
    )
    .await?;
    let t = sign_in(&s, "portal", "openid signet.admin").await?;
    let at = token_of(&t, "access_token")?;
    let claims = signet_tests::verify_jwt(&at, &s.jwks().await?, &s.issuer, "signet")?;
    assert_eq!(claims["scope"], "openid signet.admin", "{claims}");
    let r = s
        .http()
        .get(format!("{}/User/{sub}", s.admin))
        .bearer_auth(&at)
        .send()
        .await?;
    assert_eq!(r.status(), 401, "{}", r.text().await?);

    // An operator withdrawing a scope from keys ends its use at once.
    let (st, b) = s
        .admin_call(
            Method::PUT,
            "/Resource/ApiScope",
            Some(&json!({"name": "orders.read", "properties": {"signet:apiKeys": "false"}})),
        )
        .await?;
    assert_eq!(st, 200, "{b}");
    assert_eq!(introspect(&s, &key).await?["active"], false);
    let (st, _, b) = exchange(None).await?;
    assert_eq!(
        (st, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
    Ok(())
}

/// Medium: introspection said `active: true` for tokens of a disabled or deleted user or
/// client while `/userinfo` refused them; a deleted client's codes and tokens came back with
/// a client created again under the same id.
#[tokio::test]
async fn tokens_end_with_their_user_and_client_everywhere() -> anyhow::Result<()> {
    let (_dir, s, sub) = setup().await?;
    let scopes = ["openid", "email", "orders.read"];
    s.create("/Client", web_client("web", &scopes, json!({})))
        .await?;
    s.create(
        "/Client",
        web_client("webref", &scopes, json!({"accessTokenType": 1})),
    )
    .await?;
    let verifier = signet_verify::Verifier::builder(&s.issuer, "orders-api")
        .introspection(signet_verify::IntrospectionConfig {
            cache_ttl: Duration::ZERO,
            ..signet_verify::IntrospectionConfig::new("orders-api", API_SECRET)
        })
        .build()?;
    let scope = "openid email orders.read offline_access";
    let user_url = format!("/User/{sub}");
    let (_, user) = s.admin_call(Method::GET, &user_url, None).await?;
    let set_enabled = |enabled: bool| {
        let mut body = user.clone();
        body["enabled"] = enabled.into();
        if let Some(o) = body.as_object_mut() {
            o.retain(|k, _| ["username", "claims", "enabled"].contains(&k.as_str()));
        }
        let s = &s;
        let user_url = user_url.clone();
        async move { s.admin_call(Method::PUT, &user_url, Some(&body)).await }
    };

    // A disabled user: introspection, userinfo, libs/verify and refresh all refuse, and
    // the user's API keys are revoked.
    let (_b, cookie, csrf) = account_session(&s).await?;
    let (st, made) = make_key(&s, &cookie, &csrf, &["orders.read"]).await?;
    assert_eq!(st, 201, "{made}");
    let key = token_of(&made, "key")?;
    assert_eq!(introspect(&s, &key).await?["active"], true);
    let jwt = sign_in(&s, "web", scope).await?;
    let reference = sign_in(&s, "webref", scope).await?;
    let (at, rt) = (
        token_of(&jwt, "access_token")?,
        token_of(&jwt, "refresh_token")?,
    );
    let ref_at = token_of(&reference, "access_token")?;
    assert_eq!(introspect(&s, &at).await?["active"], true);
    assert_eq!(userinfo(&s, &at).await?, 200);
    assert!(verifier.verify(&ref_at).await.is_ok());
    let (st, b) = set_enabled(false).await?;
    assert_eq!(st, 200, "{b}");
    for t in [&at, &ref_at] {
        assert_eq!(introspect(&s, t).await?["active"], false, "disabled user");
        assert_eq!(userinfo(&s, t).await?, 401);
    }
    assert!(verifier.verify(&ref_at).await.is_err());
    assert_eq!(refresh(&s, "web", &rt).await?.0, 400);
    // Enabled again: the tokens issued before stay revoked (a `subject` revocation), and
    // so do the keys.
    let (st, _) = set_enabled(true).await?;
    assert_eq!(st, 200);
    assert_eq!(introspect(&s, &at).await?["active"], false);
    assert_eq!(introspect(&s, &key).await?["active"], false);

    // A deleted client: its tokens, codes and refresh tokens end for good, even once a
    // client with the same id exists again.
    let fresh = eventually(Duration::from_secs(5), || async {
        let t = sign_in(&s, "web", scope).await.ok()?;
        let at = t["access_token"].as_str()?.to_owned();
        (userinfo(&s, &at).await.ok()? == 200).then_some(t)
    })
    .await?;
    let (at, rt) = (
        token_of(&fresh, "access_token")?,
        token_of(&fresh, "refresh_token")?,
    );
    // An unredeemed code of the client.
    let mut b = Browser::new();
    let u = authorize_url(&s)?;
    let r = b.sign_in(u.as_str(), "hana", PASSWORD).await?;
    let code = signet_tests::browser::params_of(&r.location()?, false)
        .remove("code")
        .context("code")?;

    let (st, _) = s.admin_call(Method::DELETE, "/Client/web", None).await?;
    assert_eq!(st, 204);
    assert_eq!(
        introspect(&s, &at).await?["active"],
        false,
        "deleted client"
    );
    assert_eq!(userinfo(&s, &at).await?, 401);
    s.create("/Client", web_client("web", &scopes, json!({})))
        .await?;
    assert_eq!(introspect(&s, &at).await?["active"], false, "re-created");
    assert_eq!(userinfo(&s, &at).await?, 401);
    let (st, b) = refresh(&s, "web", &rt).await?;
    assert_eq!(
        (st, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
    let (st, _, b) = s
        .token_request(
            Some(("web", WEB_SECRET)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", signet_tests::browser::PKCE_VERIFIER),
            ],
        )
        .await?;
    assert_eq!(
        (st, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
    // The new client starts clean and works.
    eventually(Duration::from_secs(5), || async {
        let t = sign_in(&s, "web", scope).await.ok()?;
        let at = t["access_token"].as_str()?.to_owned();
        (userinfo(&s, &at).await.ok()? == 200 && introspect(&s, &at).await.ok()?["active"] == true)
            .then_some(())
    })
    .await?;

    // A disabled client: the same.
    let fresh = sign_in(&s, "webref", scope).await?;
    let ref_at = token_of(&fresh, "access_token")?;
    let (st, b) = s
        .admin_call(
            Method::PUT,
            "/Client",
            Some(&web_client(
                "webref",
                &scopes,
                json!({"accessTokenType": 1, "enabled": false}),
            )),
        )
        .await?;
    assert_eq!(st, 200, "{b}");
    assert_eq!(introspect(&s, &ref_at).await?["active"], false);
    assert!(verifier.verify(&ref_at).await.is_err());
    Ok(())
}

/// Low: a public client's `client_id` alone was enough to introspect its tokens.
#[tokio::test]
async fn introspection_needs_an_authenticated_caller() -> anyhow::Result<()> {
    let (_dir, s, _) = setup().await?;
    s.create(
        "/Client",
        json!({"clientId": "spa", "allowedGrantTypes": ["authorization_code"],
            "requireClientSecret": false, "redirectUris": [REDIRECT],
            "allowedScopes": ["openid", "orders.read"], "requireConsent": false}),
    )
    .await?;
    let t = code_flow(
        &s.issuer,
        &s.issuer,
        "spa",
        None,
        REDIRECT,
        "openid orders.read",
        "hana",
        PASSWORD,
    )
    .await?;
    let at = token_of(&t, "access_token")?;
    let r = s
        .http()
        .post(format!("{}/oauth2/introspect", s.issuer))
        .form(&[("client_id", "spa"), ("token", at.as_str())])
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    let b: Value = r.json().await?;
    assert_eq!(b["error"], "invalid_client", "{b}");
    assert_eq!(introspect(&s, &at).await?["active"], true);
    Ok(())
}

/// Low: JSON answers lacked `nosniff`, and a form post from a foreign origin was accepted
/// when its CSRF token was valid.
#[tokio::test]
async fn every_answer_says_nosniff_and_foreign_form_posts_are_refused() -> anyhow::Result<()> {
    let (_dir, s, _) = setup().await?;
    let token = s.admin_token().await?;
    for (url, bearer) in [
        (
            format!("{}/.well-known/openid-configuration", s.issuer),
            None,
        ),
        (format!("{}/oauth2/jwks", s.issuer), None),
        (format!("{}/userinfo", s.issuer), None),
        (format!("{}/Client", s.admin), Some(&token)),
    ] {
        let mut req = s.http().get(&url);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let r = req.send().await?;
        assert_eq!(
            r.headers()
                .get("x-content-type-options")
                .map(|v| v.as_bytes()),
            Some(&b"nosniff"[..]),
            "{url}"
        );
    }
    let (_, h, _) = s
        .token_request(None, &[("grant_type", "client_credentials")])
        .await?;
    assert_eq!(h["x-content-type-options"], "nosniff");

    // The login form, with a valid CSRF token, posted from another site.
    s.create("/Client", web_client("web", &["openid"], json!({})))
        .await?;
    let u = authorize_url(&s)?;
    let mut b = Browser::new();
    let login_url = b.get(u.as_str()).await?.location()?;
    let login = b.get(login_url.as_str()).await?;
    let form = [
        ("interaction", login.hidden("interaction")?),
        ("csrf", login.hidden("csrf")?),
        ("username", "hana".to_owned()),
        ("password", PASSWORD.to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let action = format!("{}/login", s.issuer);
    for headers in [
        [("origin", "https://evil.example")],
        [("sec-fetch-site", "cross-site")],
    ] {
        let r = b.post_form_with(&action, &form, &headers).await?;
        assert_eq!(r.status, 403, "{headers:?}: {}", r.body);
    }
    for headers in [
        [
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "same-site"),
        ],
        [("origin", "null"), ("sec-fetch-site", "cross-site")],
    ] {
        let r = b.post_form_with(&action, &form, &headers).await?;
        assert_eq!(r.status, 403, "{headers:?}: {}", r.body);
    }
    // The same form from our own page: what Chromium sends (our pages' no-referrer policy
    // makes its Origin `null`) is accepted...
    let mut twin = Browser::new();
    twin.cookies = b.cookies.clone();
    let r = twin
        .post_form_with(
            &action,
            &form,
            &[("origin", "null"), ("sec-fetch-site", "same-origin")],
        )
        .await?;
    assert_eq!(r.status, 302, "{}", r.body);
    // ... and so is what a browser without Sec-Fetch-Site sends.
    let login_url = b.get(u.as_str()).await?.location()?;
    let login = b.get(login_url.as_str()).await?;
    let form = [
        ("interaction", login.hidden("interaction")?),
        ("csrf", login.hidden("csrf")?),
        ("username", "hana".to_owned()),
        ("password", PASSWORD.to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let origin = url::Url::parse(&s.issuer)?.origin().ascii_serialization();
    let r = b
        .post_form_with(&action, &form, &[("origin", &origin)])
        .await?;
    assert_eq!(r.status, 302, "{}", r.body);

    // The account JSON API refuses a foreign Origin even with the CSRF header.
    let (_b, cookie, csrf) = account_session(&s).await?;
    let r = reqwest::Client::new()
        .post(format!("{}/account/api-keys/keys", s.issuer))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .header("origin", "https://evil.example")
        .json(&json!({"name": "x", "scopes": ["orders.read"]}))
        .send()
        .await?;
    assert_eq!(r.status(), 403);
    Ok(())
}

/// Signs in at the login page of a fresh authorization request; returns the status.
async fn try_password(b: &mut Browser, s: &Serve, password: &str) -> anyhow::Result<u16> {
    let u = authorize_url(s)?;
    Ok(b.sign_in(u.as_str(), "hana", password).await?.status)
}

fn loopback(last: u8) -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, last])
}

/// Low: about ten wrong passwords from anywhere locked the user out, even with the right
/// password from any address. Now an address that guesses waits for that name, the user
/// signs in from elsewhere, and a wide attack blocks only browsers the user never used.
#[tokio::test]
async fn nobody_can_lock_a_user_out_and_guessing_stays_slow() -> anyhow::Result<()> {
    let (_dir, s, _) = setup().await?;
    s.create("/Client", web_client("web", &["openid"], json!({})))
        .await?;
    // One address guesses: after five failures it waits, even with the right password.
    let mut attacker = Browser::from_address(loopback(2));
    for _ in 0..5 {
        assert_eq!(
            try_password(&mut attacker, &s, "wrong password").await?,
            200
        );
    }
    assert_eq!(
        try_password(&mut attacker, &s, "wrong password").await?,
        429
    );
    assert_eq!(try_password(&mut attacker, &s, PASSWORD).await?, 429);
    // The user, from another address, signs in; the browser is known from now on.
    let mut hana = Browser::from_address(loopback(3));
    assert_eq!(try_password(&mut hana, &s, PASSWORD).await?, 302);
    assert!(hana.cookies.contains_key("signet_device"));

    // Many addresses guess: past fifty failures for the account, browsers the user never
    // signed in with wait; the user's known browser still signs in.
    for last in 10..21 {
        let mut b = Browser::from_address(loopback(last));
        for _ in 0..5 {
            try_password(&mut b, &s, "wrong password").await?;
        }
    }
    let mut stranger = Browser::from_address(loopback(4));
    assert_eq!(try_password(&mut stranger, &s, PASSWORD).await?, 429);
    // (Signed out: only the device cookie is left.)
    hana.cookies.retain(|k, _| k == "signet_device");
    assert_eq!(try_password(&mut hana, &s, PASSWORD).await?, 302);
    // A stolen-looking device cookie (not this user's) is worth nothing.
    let mut forged = Browser::from_address(loopback(5));
    forged
        .cookies
        .insert("signet_device".into(), "made-up-value".into());
    assert_eq!(try_password(&mut forged, &s, PASSWORD).await?, 429);
    Ok(())
}

/// Low: weak admin input was accepted: a one-character client secret, lifetimes up to 2^31
/// seconds, a username with a Cyrillic letter that looks like another.
#[tokio::test]
async fn weak_admin_input_is_refused() -> anyhow::Result<()> {
    let (_dir, s, _) = setup().await?;
    let backend = |extra: Value| {
        let mut c = json!({"clientId": "svc", "allowedGrantTypes": ["client_credentials"],
            "clientSecrets": [{"value": "svc-secret-0123456789"}], "allowedScopes": ["orders.read"]});
        if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
            c.extend(extra);
        }
        c
    };
    for (body, field) in [
        (
            backend(json!({"clientSecrets": [{"value": "a"}]})),
            "clientSecrets[0].value",
        ),
        (
            backend(
                json!({"clientSecrets": [{"type": "JsonWebKey", "value": "{\"kty\":\"oct\"}"}]}),
            ),
            "clientSecrets[0].value",
        ),
        (
            backend(json!({"clientSecrets": [{"type": "X509Name", "value": "svc"}]})),
            "clientSecrets[0].value",
        ),
        (
            backend(json!({"accessTokenLifetime": 2_147_483_647u32})),
            "accessTokenLifetime",
        ),
    ] {
        let (st, b) = s.admin_call(Method::POST, "/Client", Some(&body)).await?;
        assert_eq!(st, 400, "{b}");
        assert_eq!(b["field"], field, "{b}");
    }
    let (st, b) = s
        .admin_call(
            Method::POST,
            "/Resource/ApiResource",
            Some(&json!({"name": "weak-api", "apiSecrets": [{"value": "short"}]})),
        )
        .await?;
    assert_eq!(
        (st, b["field"].as_str()),
        (400, Some("apiSecrets[0].value")),
        "{b}"
    );
    let (st, b) = s
        .admin_call(
            Method::POST,
            "/User",
            Some(&json!({"username": "h\u{430}na", "password": "a long password"})),
        )
        .await?;
    assert_eq!((st, b["field"].as_str()), (400, Some("username")), "{b}");
    // Width and case variants of an existing name are the same name.
    let (st, _) = s
        .admin_call(
            Method::POST,
            "/User",
            Some(&json!({"username": "ＨＡＮＡ", "password": "a long password"})),
        )
        .await?;
    assert_eq!(st, 409);
    // The lifetime bounds are the operator's: a node started with a lower one refuses more.
    let dir = tempfile::tempdir()?;
    let strict = Serve::start(
        dir.path(),
        ServeOptions {
            extra_args: vec!["--lifetime-limits".into(), "accessTokenLifetime=600".into()],
            ..ServeOptions::default()
        },
    )
    .await?;
    strict
        .create("/Resource/ApiScope", json!({"name": "orders.read"}))
        .await?;
    let (st, b) = strict
        .admin_call(
            Method::POST,
            "/Client",
            Some(&backend(json!({"accessTokenLifetime": 601}))),
        )
        .await?;
    assert_eq!(
        (st, b["field"].as_str()),
        (400, Some("accessTokenLifetime")),
        "{b}"
    );
    Ok(())
}
