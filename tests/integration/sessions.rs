//! Sessions users and operators can see and end (issue 13, items 1, 5 and 6): what ends a
//! session ends the access tokens issued in it everywhere (introspection and `libs/verify`),
//! while an `offline_access` refresh token outlives it unless its client sets
//! `coordinateLifetimeWithUserSession`.

use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::browser::{params_of, Browser, PKCE_CHALLENGE, PKCE_VERIFIER};
use signet_tests::cluster::Cluster;
use signet_tests::{eventually, Serve, ServeOptions};

const SECRET: &str = "sessions-client-secret-0123";
const API_SECRET: &str = "sessions-api-secret-0123456";
const REDIRECT: &str = "http://127.0.0.1:1/cb";

/// Authorizes `client_id` with browser `b` at `authorize_base` (signing `user` in when
/// the browser has no session), then redeems the code at `token_base`.
pub(crate) async fn authorize(
    b: &mut Browser,
    authorize_base: &str,
    token_base: &str,
    client_id: &str,
    scope: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<Value> {
    let (body, _) = authorize_code(
        b,
        authorize_base,
        token_base,
        client_id,
        scope,
        user,
        password,
    )
    .await?;
    Ok(body)
}

/// [`authorize`], returning the code it redeemed too.
pub(crate) async fn authorize_code(
    b: &mut Browser,
    authorize_base: &str,
    token_base: &str,
    client_id: &str,
    scope: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<(Value, String)> {
    let mut u = url::Url::parse(&format!("{authorize_base}/oauth2/authorize"))?;
    u.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", scope)
        .append_pair("nonce", "n")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    let mut r = b.get(u.as_str()).await?;
    anyhow::ensure!(r.status == 302, "authorize: {} {}", r.status, r.body);
    if r.location()?.path().ends_with("/login") {
        r = b.sign_in(u.as_str(), user, password).await?;
    }
    anyhow::ensure!(r.status == 302, "sign-in: {} {}", r.status, r.body);
    let code = params_of(&r.location()?, false)
        .remove("code")
        .with_context(|| format!("no code in {}", r.location().unwrap()))?;
    let body = redeem(token_base, client_id, &code).await?;
    anyhow::ensure!(body.0 == 200, "token: {}", body.1);
    Ok((body.1, code))
}

/// Redeems `code` for `client_id` at `token_base`: status and body.
async fn redeem(token_base: &str, client_id: &str, code: &str) -> anyhow::Result<(u16, Value)> {
    let resp = reqwest::Client::new()
        .post(format!("{token_base}/oauth2/token"))
        .basic_auth(client_id, Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", PKCE_VERIFIER),
        ])
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await?))
}

/// The payload of a JWT, unverified (the tests verify signatures elsewhere).
pub(crate) fn claims_of(jwt: &str) -> anyhow::Result<Value> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).context("not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Two clients with refresh tokens, `loose` (the default: its refresh tokens outlive the
/// session) and `tied` (`coordinateLifetimeWithUserSession`), signed in to in one browser
/// session on a cluster node; the RP signs the user out; a resource server on
/// `libs/verify` (following the revocation stream) then refuses both access tokens issued
/// in the session, as introspection does; `loose`'s refresh token still works and its new
/// access token verifies there, `tied`'s is `invalid_grant`.
#[tokio::test]
async fn ending_a_session_revokes_its_tokens_everywhere_but_offline_refresh_tokens_outlive_it(
) -> anyhow::Result<()> {
    let c = Cluster::start(1).await?;
    let mut bodies = vec![
        (
            "/User",
            json!({"username": "ines", "password": "ines password 12", "claims": {}}),
        ),
        ("/Resource/ApiScope", json!({"name": "orders.read"})),
        (
            "/Resource/ApiResource",
            json!({"name": "orders-api", "scopes": ["orders.read"],
                "apiSecrets": [{"value": API_SECRET}]}),
        ),
    ];
    for (id, coordinated) in [("loose", false), ("tied", true)] {
        bodies.push((
            "/Client",
            json!({"clientId": id, "allowedGrantTypes": ["authorization_code"],
                "clientSecrets": [{"value": SECRET}], "redirectUris": [REDIRECT],
                "allowOfflineAccess": true, "requireConsent": false,
                "coordinateLifetimeWithUserSession": coordinated,
                "allowedScopes": ["openid", "offline_access", "orders.read"]}),
        ));
    }
    for (path, body) in bodies {
        let (status, resp) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        assert_eq!(status, 201, "{path}: {resp}");
    }
    let (st, tied) = c.admin_call(0, Method::GET, "/Client/tied", None).await?;
    assert_eq!(st, 200);
    assert_eq!(tied["coordinateLifetimeWithUserSession"], true, "{tied}");
    let node = c.issuers[0].public.clone();
    let scope = "openid offline_access orders.read";
    let mut b = Browser::new();
    let loose = authorize(
        &mut b,
        &node,
        &node,
        "loose",
        scope,
        "ines",
        "ines password 12",
    )
    .await?;
    let tied = authorize(
        &mut b,
        &node,
        &node,
        "tied",
        scope,
        "ines",
        "ines password 12",
    )
    .await?;
    let id_token = loose["id_token"].as_str().context("id_token")?;
    let sid = claims_of(id_token)?["sid"]
        .as_str()
        .context("sid")?
        .to_owned();
    let at = |t: &Value| t["access_token"].as_str().unwrap_or_default().to_owned();
    let rt = |t: &Value| t["refresh_token"].as_str().unwrap_or_default().to_owned();
    for t in [&loose, &tied] {
        assert_eq!(claims_of(&at(t))?["sid"], sid.as_str(), "one SSO session");
    }

    let example = signet_tests::signet_bin()
        .parent()
        .map(|d| d.join("examples/resource_server"))
        .context("no target dir")?;
    let port = signet_tests::free_port();
    let _rs = tokio::process::Command::new(&example)
        .args(["--issuer", &c.issuer, "--audience", "orders-api"])
        .args(["--nats", &c.nats.url])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("SIGNET_ISSUER")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("run {} (cargo test builds it)", example.display()))?;
    let rs = format!("http://127.0.0.1:{port}");
    let http = c.http.clone();
    eventually(Duration::from_secs(20), || async {
        let r = http.get(format!("{rs}/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await?;
    let orders = |token: String| {
        let req = http.get(format!("{rs}/orders")).bearer_auth(token);
        async move { anyhow::Ok(req.send().await?.status().as_u16()) }
    };
    let active = |token: String| {
        let req = http
            .post(format!("{node}/oauth2/introspect"))
            .basic_auth("orders-api", Some(API_SECRET))
            .form(&[("token", token)]);
        async move {
            let v: Value = req.send().await?.json().await?;
            anyhow::Ok(v["active"] == true)
        }
    };
    let refresh = |client: &'static str, token: String| {
        let req = http
            .post(format!("{node}/oauth2/token"))
            .basic_auth(client, Some(SECRET))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
            ]);
        async move {
            let r = req.send().await?;
            let status = r.status().as_u16();
            anyhow::Ok((status, r.json::<Value>().await?))
        }
    };
    for t in [&loose, &tied] {
        assert_eq!(orders(at(t)).await?, 200);
        assert!(active(at(t)).await?);
    }
    // A refresh before the sign-out: the loose family's access tokens speak for the family.
    let (st, before) = refresh("loose", rt(&loose)).await?;
    assert_eq!(st, 200, "{before}");
    let offline = claims_of(&at(&before))?;
    assert!(
        offline["sid"]
            .as_str()
            .unwrap_or_default()
            .starts_with("offline-")
            && offline["sid"] != sid.as_str(),
        "{offline}"
    );
    assert_eq!(
        claims_of(before["id_token"].as_str().context("id")?)?["sid"],
        sid.as_str()
    );
    let (st, tied_before) = refresh("tied", rt(&tied)).await?;
    assert_eq!(st, 200, "{tied_before}");
    assert_eq!(claims_of(&at(&tied_before))?["sid"], sid.as_str());

    // RP-initiated logout by `loose`.
    let mut u = url::Url::parse(&format!("{node}/oauth2/logout"))?;
    u.query_pairs_mut().append_pair("id_token_hint", id_token);
    let r = b.get(u.as_str()).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("signed out"), "{}", r.body);

    // (a) Every access token issued in the session is refused, by the issuer and by the
    // resource server (through the revocation stream, not by asking the issuer).
    for t in [&loose, &tied, &tied_before] {
        assert!(!active(at(t)).await?, "introspection");
        eventually(Duration::from_secs(10), || async {
            (orders(at(t)).await.ok()? == 401).then_some(())
        })
        .await
        .context("libs/verify refuses the session's access token")?;
    }
    // (b) The loose family outlives the session: its refreshed access tokens still work.
    assert!(active(at(&before)).await?);
    assert_eq!(orders(at(&before)).await?, 200);
    let (st, after) = refresh("loose", rt(&before)).await?;
    assert_eq!(st, 200, "{after}");
    assert!(active(at(&after)).await?);
    assert_eq!(orders(at(&after)).await?, 200);
    assert_eq!(claims_of(&at(&after))?["sid"], offline["sid"]);
    // (c) The tied family died with the session, and so did its access tokens.
    let (st, body) = refresh("tied", rt(&tied_before)).await?;
    assert_eq!(
        (st, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(orders(at(&tied_before)).await?, 401);

    // A replayed code still ends what it started (RFC 9700 4.5), the loose family too,
    // though it is not tied to the session, even after the session ended.
    let mut b = Browser::new();
    let (fresh, code) = authorize_code(
        &mut b,
        &node,
        &node,
        "loose",
        scope,
        "ines",
        "ines password 12",
    )
    .await?;
    let mut u = url::Url::parse(&format!("{node}/oauth2/logout"))?;
    u.query_pairs_mut()
        .append_pair("id_token_hint", fresh["id_token"].as_str().context("id")?);
    assert_eq!(b.get(u.as_str()).await?.status, 200);
    assert!(!active(at(&fresh)).await?, "issued in the session");
    let (st, _) = redeem(&node, "loose", &code).await?;
    assert_eq!(st, 400);
    let (st, body) = refresh("loose", rt(&fresh)).await?;
    assert_eq!(
        (st, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    eventually(Duration::from_secs(10), || async {
        (orders(at(&fresh)).await.ok()? == 401).then_some(())
    })
    .await?;
    // The other family lives on.
    let (st, _) = refresh("loose", rt(&after)).await?;
    assert_eq!(st, 200);
    Ok(())
}

const PASSWORD: &str = "omar password 1234";

/// `signet serve` with `--session-lifetime 120`, user `omar` (and `zoe`), and a client
/// `app` ("Orders App") without consent; returns omar's and zoe's `sub`.
async fn serve_with_users() -> anyhow::Result<(tempfile::TempDir, Serve, String, String)> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            extra_args: vec![
                "--session-lifetime".into(),
                "120".into(),
                "--trusted-proxies".into(),
                "127.0.0.3".into(),
            ],
            ..Default::default()
        },
    )
    .await?;
    let mut subs = Vec::new();
    for name in ["omar", "zoe"] {
        let u = s
            .create(
                "/User",
                json!({"username": name, "password": PASSWORD, "claims": {}}),
            )
            .await?;
        subs.push(u["sub"].as_str().context("sub")?.to_owned());
    }
    for (id, name, sso) in [("app", "Orders App", None), ("brief", "Brief", Some(1))] {
        s.create(
            "/Client",
            json!({"clientId": id, "clientName": name, "allowedGrantTypes": ["authorization_code"],
                "clientSecrets": [{"value": SECRET}], "redirectUris": [REDIRECT],
                "allowedScopes": ["openid"], "requireConsent": false,
                "userSsoLifetime": sso}),
        )
        .await?;
    }
    let zoe = subs.pop().context("zoe")?;
    let omar = subs.pop().context("omar")?;
    Ok((dir, s, omar, zoe))
}

/// `prompt=none` at `client` with browser `b`: the `error` of the answer, if any.
async fn silent(s: &Serve, b: &mut Browser, client: &str) -> anyhow::Result<Option<String>> {
    silent_at(&s.issuer, b, client).await
}

/// `prompt=none` at `base` for `client` with browser `b`: the `error` of the answer, if any.
async fn silent_at(base: &str, b: &mut Browser, client: &str) -> anyhow::Result<Option<String>> {
    let mut u = url::Url::parse(&format!("{base}/oauth2/authorize"))?;
    u.query_pairs_mut()
        .append_pair("client_id", client)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("prompt", "none")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    let r = b.get(u.as_str()).await?;
    anyhow::ensure!(r.status == 302, "authorize: {} {}", r.status, r.body);
    Ok(params_of(&r.location()?, false).remove("error"))
}

/// A browser leaving from 127.0.0.2 with a 300-character `User-Agent`.
fn browser_from_2() -> anyhow::Result<Browser> {
    let ua = format!("SessionTest/1.0 {}", "x".repeat(284));
    Browser::from_address_with("127.0.0.2".parse()?, &[("user-agent", ua.as_str())])
}

/// Signs omar in with `b` at `app`: the token response.
async fn sign_in(s: &Serve, b: &mut Browser) -> anyhow::Result<Value> {
    authorize(b, &s.issuer, &s.issuer, "app", "openid", "omar", PASSWORD).await
}

/// Operators list, read and end a user's sessions (`/admin/v1/User/{sub}/Session`):
/// each shows where (address, user agent), when (`--session-lifetime` bounds it, as the
/// cookie's Max-Age) and which apps; ending one signs that browser out and revokes its
/// tokens; another user's `sid` is 404; disabling the user ends the rest.
#[tokio::test]
async fn operators_see_and_end_a_users_sessions() -> anyhow::Result<()> {
    let (_dir, s, omar, zoe) = serve_with_users().await?;
    let mut b1 = browser_from_2()?;
    // The session cookie lives as long as the session.
    let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer))?;
    u.query_pairs_mut()
        .append_pair("client_id", "app")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    let r = b1.sign_in(u.as_str(), "omar", PASSWORD).await?;
    let set_cookie = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("signet_session="))
        .context("session cookie")?
        .to_owned();
    assert!(set_cookie.contains("Max-Age=120"), "{set_cookie}");
    let t1 = sign_in(&s, &mut b1).await?;
    let mut b2 = Browser::new();
    let t2 = sign_in(&s, &mut b2).await?;
    let sid_of = |t: &Value| -> anyhow::Result<String> {
        Ok(
            claims_of(t["id_token"].as_str().context("id_token")?)?["sid"]
                .as_str()
                .context("sid")?
                .to_owned(),
        )
    };
    let (sid1, sid2) = (sid_of(&t1)?, sid_of(&t2)?);

    let (st, list) = s
        .admin_call(Method::GET, &format!("/User/{omar}/Session"), None)
        .await?;
    assert_eq!(st, 200, "{list}");
    let list = list.as_array().context("a list")?.clone();
    assert_eq!(list.len(), 2, "{list:?}");
    let one = list
        .iter()
        .find(|v| v["sid"] == sid1.as_str())
        .context("session 1 listed")?;
    assert_eq!(one["sub"], omar.as_str());
    assert_eq!(one["address"], "127.0.0.2", "{one}");
    let ua = one["userAgent"].as_str().context("userAgent")?;
    assert!(
        ua.starts_with("SessionTest/1.0 ") && ua.chars().count() == 200,
        "{ua}"
    );
    assert_eq!(one["amr"], json!(["pwd"]));
    assert_eq!(
        one["clients"],
        json!([{"clientId": "app", "clientName": "Orders App"}])
    );
    let auth_time = one["authTime"].as_i64().context("authTime")?;
    assert_eq!(one["expiresAt"].as_i64(), Some(auth_time + 120), "{one}");
    let (st, got) = s
        .admin_call(Method::GET, &format!("/User/{omar}/Session/{sid1}"), None)
        .await?;
    assert_eq!((st, &got), (200, one), "read one");

    // Unknown user, unknown sid, a sid of another user: 404 with a JSON error body.
    for (method, path) in [
        (Method::GET, "/User/nobody/Session".to_owned()),
        (Method::DELETE, "/User/nobody/Session".to_owned()),
        (
            Method::GET,
            format!("/User/{omar}/Session/{}", "A".repeat(22)),
        ),
        (Method::GET, format!("/User/{zoe}/Session/{sid1}")),
        (Method::DELETE, format!("/User/{zoe}/Session/{sid1}")),
        (Method::GET, format!("/User/{omar}/Session/%00")),
    ] {
        let (st, body) = s.admin_call(method.clone(), &path, None).await?;
        assert_eq!(st, 404, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    assert_eq!(
        silent(&s, &mut b1, "app").await?,
        None,
        "zoe's 404 ended nothing"
    );

    // End session 1: that browser is signed out, its token revoked; session 2 lives on.
    let (st, _) = s
        .admin_call(
            Method::DELETE,
            &format!("/User/{omar}/Session/{sid1}"),
            None,
        )
        .await?;
    assert_eq!(st, 204);
    assert_eq!(
        silent(&s, &mut b1, "app").await?.as_deref(),
        Some("login_required")
    );
    assert_eq!(silent(&s, &mut b2, "app").await?, None);
    let userinfo = |t: &Value| {
        let req = s
            .http()
            .get(format!("{}/userinfo", s.issuer))
            .bearer_auth(t["access_token"].as_str().unwrap_or_default());
        async move { anyhow::Ok(req.send().await?.status().as_u16()) }
    };
    assert_eq!(userinfo(&t1).await?, 401);
    assert_eq!(userinfo(&t2).await?, 200);
    let (st, _) = s
        .admin_call(
            Method::DELETE,
            &format!("/User/{omar}/Session/{sid1}"),
            None,
        )
        .await?;
    assert_eq!(st, 404, "ended already");
    let (_, list) = s
        .admin_call(Method::GET, &format!("/User/{omar}/Session"), None)
        .await?;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["sid"], sid2.as_str());

    // All of them.
    let (st, _) = s
        .admin_call(Method::DELETE, &format!("/User/{omar}/Session"), None)
        .await?;
    assert_eq!(st, 204);
    assert_eq!(
        silent(&s, &mut b2, "app").await?.as_deref(),
        Some("login_required")
    );
    assert_eq!(userinfo(&t2).await?, 401);
    let (st, list) = s
        .admin_call(Method::GET, &format!("/User/{omar}/Session"), None)
        .await?;
    assert_eq!((st, list), (200, json!([])));

    // Behind a trusted proxy, the address is the one it forwards.
    let mut b3 = Browser::from_address_with(
        "127.0.0.3".parse()?,
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("user-agent", "ProxiedBrowser"),
        ],
    )?;
    sign_in(&s, &mut b3).await?;
    let (_, list) = s
        .admin_call(Method::GET, &format!("/User/{omar}/Session"), None)
        .await?;
    assert_eq!(list[0]["address"], "203.0.113.9", "{list}");
    assert_eq!(list[0]["userAgent"], "ProxiedBrowser", "{list}");

    // A session revocation through /revocations ends a live session the same way.
    let sid3 = list[0]["sid"].as_str().context("sid")?.to_owned();
    let (st, body) = s
        .admin_call(Method::POST, "/revocations", Some(&json!({"sid": sid3})))
        .await?;
    assert_eq!(st, 201, "{body}");
    assert_eq!(
        silent(&s, &mut b3, "app").await?.as_deref(),
        Some("login_required")
    );
    let (_, list) = s
        .admin_call(Method::GET, &format!("/User/{omar}/Session"), None)
        .await?;
    assert_eq!(list, json!([]));
    let mut b3 = Browser::new();
    sign_in(&s, &mut b3).await?;

    // Disabling the user ends the sessions signed in since.
    let (st, body) = s
        .admin_call(
            Method::PUT,
            &format!("/User/{omar}"),
            Some(&json!({"username": "omar", "claims": {}, "enabled": false})),
        )
        .await?;
    assert_eq!(st, 200, "{body}");
    let (st, list) = s
        .admin_call(Method::GET, &format!("/User/{omar}/Session"), None)
        .await?;
    assert_eq!((st, list), (200, json!([])));
    Ok(())
}

/// A client's `userSsoLifetime` asks for a new sign-in once the session is older, while
/// the same session still signs in silently at a client without it.
#[tokio::test]
async fn user_sso_lifetime_forces_a_new_sign_in() -> anyhow::Result<()> {
    let (_dir, s, omar, _) = serve_with_users().await?;
    let mut b = Browser::new();
    let first = sign_in(&s, &mut b).await?;
    assert_eq!(silent(&s, &mut b, "brief").await?, None, "fresh session");
    eventually(Duration::from_secs(10), || async {
        let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer)).ok()?;
        u.query_pairs_mut()
            .append_pair("client_id", "brief")
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid")
            .append_pair("code_challenge", PKCE_CHALLENGE)
            .append_pair("code_challenge_method", "S256");
        let mut probe = Browser::new();
        probe.cookies = b.cookies.clone();
        let r = probe.get(u.as_str()).await.ok()?;
        r.location()
            .ok()
            .filter(|l| l.path().ends_with("/login"))
            .map(|_| ())
    })
    .await
    .context("userSsoLifetime: 1 sends the user to the login page")?;
    assert_eq!(
        silent(&s, &mut b, "brief").await?.as_deref(),
        Some("login_required")
    );
    assert_eq!(silent(&s, &mut b, "app").await?, None, "still signed in");

    // Signing in again in this browser replaces its session: the old one ends (its
    // tokens stop) rather than lingering with nobody holding its cookie.
    let (st, before) = s
        .admin_call(Method::GET, &format!("/User/{omar}/Session"), None)
        .await?;
    assert_eq!(
        (st, before.as_array().map(Vec::len)),
        (200, Some(1)),
        "{before}"
    );
    let old_sid = before[0]["sid"].as_str().context("sid")?.to_owned();
    let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer))?;
    u.query_pairs_mut()
        .append_pair("client_id", "brief")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    let r = b.sign_in(u.as_str(), "omar", PASSWORD).await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let (_, after) = s
        .admin_call(Method::GET, &format!("/User/{omar}/Session"), None)
        .await?;
    assert_eq!(after.as_array().map(Vec::len), Some(1), "{after}");
    assert_ne!(after[0]["sid"], old_sid.as_str(), "a new session");
    let r = s
        .http()
        .get(format!("{}/userinfo", s.issuer))
        .bearer_auth(first["access_token"].as_str().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(r.status(), 401, "the old session's token");
    Ok(())
}

/// Users see their sessions at `/account/sessions` (HTML and JSON: where, when, which
/// apps, which one is this browser) and end one, every other one, or all; forms need the
/// CSRF field, JSON writes the `X-CSRF-Token` header, cross-site writes are refused, a
/// session of someone else is 404; ending this browser's session clears its cookie.
#[tokio::test]
async fn users_see_and_end_their_sessions_on_the_account_page() -> anyhow::Result<()> {
    let (_dir, s, _, _) = serve_with_users().await?;
    let page_url = format!("{}/account/sessions", s.issuer);
    let http = s.http().clone();
    // Not signed in: JSON says 401, the page asks to sign in and comes back.
    let r = http.get(format!("{page_url}/list")).send().await?;
    assert_eq!(r.status(), 401);
    let mut b1 = browser_from_2()?;
    let back = b1.sign_in(&page_url, "omar", PASSWORD).await?;
    assert_eq!(back.status, 302, "{}", back.body);
    assert_eq!(
        back.location()?.as_str(),
        page_url,
        "back to the sessions page"
    );
    let mut b2 = Browser::new();
    let t2 = sign_in(&s, &mut b2).await?;
    let sid2 = claims_of(t2["id_token"].as_str().context("id_token")?)?["sid"]
        .as_str()
        .context("sid")?
        .to_owned();
    // zoe's session, which omar cannot end.
    let mut bz = Browser::new();
    let tz = authorize(
        &mut bz, &s.issuer, &s.issuer, "app", "openid", "zoe", PASSWORD,
    )
    .await?;
    let zoe_sid = claims_of(tz["id_token"].as_str().context("id_token")?)?["sid"]
        .as_str()
        .context("sid")?
        .to_owned();

    let page = b1.get(&page_url).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    for shown in [
        "This browser",
        "127.0.0.2",
        "SessionTest",
        "Orders App",
        " UTC",
    ] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }
    assert!(!page.body.contains(&zoe_sid), "only omar's sessions");
    let csrf = page.hidden("csrf")?;
    let cookie = |b: &Browser| b.cookie_header().unwrap_or_default();
    let list = |b: &Browser| {
        let req = http
            .get(format!("{page_url}/list"))
            .header("cookie", cookie(b));
        async move { anyhow::Ok(req.send().await?.json::<Value>().await?) }
    };
    let mine = list(&b1).await?;
    let sessions = mine["sessions"].as_array().context("sessions")?;
    assert_eq!(sessions.len(), 2, "{mine}");
    assert_eq!(sessions[0]["current"], true, "this browser's first: {mine}");
    assert_eq!(sessions[0]["address"], "127.0.0.2");
    let own_sid = sessions[0]["sid"].as_str().context("sid")?.to_owned();
    assert_eq!(sessions[1]["sid"], sid2.as_str());
    assert_eq!(sessions[1]["current"], false);
    assert_eq!(
        sessions[1]["clients"],
        json!([{"clientId": "app", "clientName": "Orders App"}])
    );
    let json_csrf = mine["csrf"].as_str().context("csrf")?.to_owned();

    // Refused: a forged form, a cross-site form, JSON without the header or cross-site,
    // and a session that is not omar's (404, zoe stays signed in).
    let end2 = format!("{page_url}/{sid2}/end");
    let r = b1.post_form(&end2, &[("csrf", "forged")]).await?;
    assert_eq!(r.status, 403);
    let r = b1
        .post_form_with(
            &end2,
            &[("csrf", &csrf)],
            &[("sec-fetch-site", "cross-site")],
        )
        .await?;
    assert_eq!(r.status, 403);
    let delete = |b: &Browser, path: String, headers: Vec<(&'static str, String)>| {
        let mut req = http
            .delete(format!("{page_url}/list{path}"))
            .header("cookie", cookie(b));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move {
            let r = req.send().await?;
            let status = r.status().as_u16();
            let set = r
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect::<Vec<_>>();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            anyhow::Ok((status, set, body))
        }
    };
    let (st, _, body) = delete(&b1, format!("/{sid2}"), vec![]).await?;
    assert_eq!((st, body["field"].as_str()), (403, Some("X-CSRF-Token")));
    let (st, _, _) = delete(
        &b1,
        format!("/{sid2}"),
        vec![
            ("x-csrf-token", json_csrf.clone()),
            ("origin", "https://evil.example".into()),
        ],
    )
    .await?;
    assert_eq!(st, 403);
    let (st, _, _) = delete(
        &b1,
        format!("/{zoe_sid}"),
        vec![("x-csrf-token", json_csrf.clone())],
    )
    .await?;
    assert_eq!(st, 404);
    let r = b1
        .post_form(&format!("{page_url}/{zoe_sid}/end"), &[("csrf", &csrf)])
        .await?;
    assert_eq!(r.status, 404);
    assert_eq!(
        silent(&s, &mut bz, "app").await?,
        None,
        "zoe still signed in"
    );
    assert_eq!(silent(&s, &mut b2, "app").await?, None);

    // End the other session with the form: that browser is signed out, this one is not.
    let r = b1.post_form(&end2, &[("csrf", &csrf)]).await?;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location()?.as_str(), page_url);
    assert_eq!(
        silent(&s, &mut b2, "app").await?.as_deref(),
        Some("login_required")
    );
    assert_eq!(silent(&s, &mut b1, "app").await?, None);

    // Every other one, through JSON.
    let mut b3 = Browser::new();
    sign_in(&s, &mut b3).await?;
    let (st, set, _) = delete(
        &b1,
        "?others=true".into(),
        vec![("x-csrf-token", json_csrf.clone())],
    )
    .await?;
    assert_eq!(st, 204);
    assert!(set.is_empty(), "this browser keeps its cookie: {set:?}");
    assert_eq!(
        silent(&s, &mut b3, "app").await?.as_deref(),
        Some("login_required")
    );
    assert_eq!(
        list(&b1).await?["sessions"].as_array().map(Vec::len),
        Some(1)
    );
    let (st, _, body) = delete(
        &b1,
        "?others=maybe".into(),
        vec![("x-csrf-token", json_csrf.clone())],
    )
    .await?;
    assert_eq!((st, body["field"].as_str()), (400, Some("others")));

    // This browser's own session through JSON: its cookie is cleared.
    let mut b4 = Browser::new();
    b4.sign_in(&page_url, "omar", PASSWORD).await?;
    let own4 = list(&b4).await?;
    let sid4 = own4["sessions"][0]["sid"]
        .as_str()
        .context("sid")?
        .to_owned();
    let (st, set, _) = delete(
        &b4,
        format!("/{sid4}"),
        vec![(
            "x-csrf-token",
            own4["csrf"].as_str().unwrap_or_default().into(),
        )],
    )
    .await?;
    assert_eq!(st, 204);
    assert!(
        set.iter()
            .any(|c| c.starts_with("signet_session=") && c.contains("Max-Age=0")),
        "{set:?}"
    );

    // Everywhere, with the form: this browser too; the page then asks to sign in.
    let r = b1
        .post_form(&format!("{page_url}/end-all"), &[("csrf", &csrf)])
        .await?;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(!b1.cookies.contains_key("signet_session"), "cookie cleared");
    let again = b1.get(&page_url).await?;
    assert_eq!(again.status, 302);
    assert!(again.location()?.path().ends_with("/login"));
    let r = http
        .get(format!("{page_url}/list"))
        .header("cookie", format!("signet_session={own_sid}"))
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    Ok(())
}

/// A session lives in the shared store: signed in at issuer 0, `prompt=none` succeeds at
/// issuer 1 with the same cookie; after RP-initiated logout at issuer 0, both say
/// `login_required`.
#[tokio::test]
async fn after_logout_at_one_node_no_node_knows_the_session() -> anyhow::Result<()> {
    let c = Cluster::start(2).await?;
    for (path, body) in [
        (
            "/User",
            json!({"username": "noor", "password": "noor password 12", "claims": {}}),
        ),
        (
            "/Client",
            json!({"clientId": "app", "allowedGrantTypes": ["authorization_code"],
                "clientSecrets": [{"value": SECRET}], "redirectUris": [REDIRECT],
                "requireConsent": false, "allowedScopes": ["openid"]}),
        ),
    ] {
        let (status, resp) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        assert_eq!(status, 201, "{path}: {resp}");
    }
    let (n0, n1) = (c.issuers[0].public.clone(), c.issuers[1].public.clone());
    let mut b = Browser::new();
    let t = authorize(
        &mut b,
        &n0,
        &n0,
        "app",
        "openid",
        "noor",
        "noor password 12",
    )
    .await?;
    let id_token = t["id_token"].as_str().context("id_token")?.to_owned();
    // Issuer 1 knows the session at once (the store is shared); the client reaches it
    // through NATS, so it is asked until it knows that too.
    let cookies = b.cookies.clone();
    eventually(Duration::from_secs(20), || {
        let (n1, cookies) = (n1.clone(), cookies.clone());
        async move {
            let mut probe = Browser::new();
            probe.cookies = cookies;
            matches!(silent_at(&n1, &mut probe, "app").await, Ok(None)).then_some(())
        }
    })
    .await
    .context("issuer 1 never honoured the session started at issuer 0")?;
    let mut u = url::Url::parse(&format!("{n0}/oauth2/logout"))?;
    u.query_pairs_mut().append_pair("id_token_hint", &id_token);
    let r = b.get(u.as_str()).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    for node in [&n1, &n0] {
        assert_eq!(
            silent_at(node, &mut b, "app").await?.as_deref(),
            Some("login_required"),
            "{node}"
        );
    }
    Ok(())
}
