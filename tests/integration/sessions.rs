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
use signet_tests::eventually;

const SECRET: &str = "sessions-client-secret-0123";
const API_SECRET: &str = "sessions-api-secret-0123456";
const REDIRECT: &str = "http://127.0.0.1:1/cb";

/// Authorizes `client_id` with browser `b` at `authorize_base` (signing `user` in when
/// the browser has no session), then redeems the code at `token_base`.
pub async fn authorize(
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
pub async fn authorize_code(
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
pub fn claims_of(jwt: &str) -> anyhow::Result<Value> {
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
    // though it is not tied to the session.
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
