//! The device authorization grant (RFC 8628): a command-line client (the `oauth2` crate's
//! device flow) gets a user code, a person approves it at `/device` in headless Chromium
//! after signing in there, and the client's polling receives the tokens; the same with
//! the HTTP form browser for denial, wrong, reused, expired and guessed user codes, polling
//! too fast, another client's device code; on a cluster, approval at node 1 and polling at
//! node 2.

use std::time::Duration;

use anyhow::Context;
use fantoccini::Locator;
use oauth2::basic::BasicClient;
use oauth2::{
    ClientId, DeviceAuthorizationUrl, Scope, StandardDeviceAuthorizationResponse, TokenResponse,
    TokenUrl,
};
use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::browser::{Browser, Page};
use signet_tests::chrome::Chrome;
use signet_tests::cluster::Cluster;
use signet_tests::{eventually, verify_jwt, Serve, ServeOptions};

const PASSWORD: &str = "correct horse battery staple";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn tv(id: &str) -> Value {
    json!({
        "clientId": id, "clientName": "Living Room TV",
        "allowedGrantTypes": [DEVICE_GRANT], "requireClientSecret": false,
        "allowOfflineAccess": true, "allowedScopes": ["openid", "profile"]
    })
}

async fn setup(s: &Serve) -> anyhow::Result<String> {
    let user = s
        .create(
            "/User",
            json!({"username": "alice", "password": PASSWORD, "claims": {"name": "Alice"}}),
        )
        .await?;
    s.create("/Client", tv("tv")).await?;
    Ok(user["sub"].as_str().context("sub")?.to_owned())
}

async fn serve(dir: &std::path::Path) -> anyhow::Result<Serve> {
    Serve::start(
        dir,
        ServeOptions {
            extra_args: vec!["--device-poll-interval".into(), "1".into()],
            ..Default::default()
        },
    )
    .await
}

/// `POST /oauth2/device_authorization` at `base`.
async fn start_device(base: &str, form: &[(&str, &str)]) -> anyhow::Result<(u16, Value)> {
    let r = reqwest::Client::new()
        .post(format!("{base}/oauth2/device_authorization"))
        .form(form)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await?))
}

/// One poll of the token endpoint at `base`.
async fn poll(base: &str, client_id: &str, device_code: &str) -> anyhow::Result<(u16, Value)> {
    let r = reqwest::Client::new()
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("grant_type", DEVICE_GRANT),
            ("client_id", client_id),
            ("device_code", device_code),
        ])
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await?))
}

/// Signs `alice` in from `/device` (or a `verification_uri_complete`): returns the page the
/// login lands on, followed to its end.
async fn sign_in_at_device(b: &mut Browser, url: &str) -> anyhow::Result<Page> {
    let first = b.get(url).await?;
    anyhow::ensure!(first.status == 303, "{}: {}", first.status, first.body);
    let login_url = first.location()?;
    anyhow::ensure!(login_url.path().ends_with("/login"), "{login_url}");
    let login = b.get(login_url.as_str()).await?;
    let action = login_url.as_str().split('?').next().unwrap_or_default();
    let (interaction, csrf) = (login.hidden("interaction")?, login.hidden("csrf")?);
    let done = b
        .post_form(
            action,
            &[
                ("interaction", &interaction),
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await?;
    anyhow::ensure!(done.status == 303, "{}: {}", done.status, done.body);
    let back = done.location()?;
    anyhow::ensure!(back.path().ends_with("/device"), "{back}");
    b.get(back.as_str()).await
}

/// Posts the device page's form with `user_code` and `decision`.
async fn submit(
    b: &mut Browser,
    base: &str,
    page: &Page,
    user_code: &str,
    decision: &str,
) -> anyhow::Result<Page> {
    let (interaction, csrf) = (page.hidden("interaction")?, page.hidden("csrf")?);
    b.post_form(
        &format!("{base}/device"),
        &[
            ("interaction", &interaction),
            ("csrf", &csrf),
            ("user_code", user_code),
            ("decision", decision),
        ],
    )
    .await
}

/// The CLI's side through the `oauth2` crate; Chromium signs in at `/device`, enters the
/// code in lower case without its dash, sees the client and scopes, and allows.
#[tokio::test]
async fn a_cli_signs_in_with_the_device_flow_and_chromium_on_serve() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = serve(dir.path()).await?;
    let sub = setup(&s).await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let meta: Value = http
        .get(format!("{}/.well-known/openid-configuration", s.issuer))
        .send()
        .await?
        .json()
        .await?;
    let device_url = meta["device_authorization_endpoint"]
        .as_str()
        .context("device_authorization_endpoint")?;
    assert_eq!(
        device_url,
        format!("{}/oauth2/device_authorization", s.issuer)
    );
    let client = BasicClient::new(ClientId::new("tv".into()))
        .set_device_authorization_url(DeviceAuthorizationUrl::new(device_url.into())?)
        .set_token_uri(TokenUrl::new(
            meta["token_endpoint"].as_str().context("token")?.into(),
        )?);
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("offline_access".into()))
        .request_async(&http)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let user_code = details.user_code().secret().clone();
    assert_eq!(user_code.len(), 9, "{user_code}");
    assert_eq!(&user_code[4..5], "-");
    assert!(
        user_code
            .chars()
            .all(|c| c == '-' || "BCDFGHJKLMNPQRSTVWXZ".contains(c)),
        "{user_code}"
    );
    assert_eq!(
        details.verification_uri().as_str(),
        format!("{}/device", s.issuer)
    );
    assert_eq!(
        details
            .verification_uri_complete()
            .context("verification_uri_complete")?
            .secret(),
        &format!("{}/device?user_code={user_code}", s.issuer)
    );
    assert_eq!(details.expires_in(), Duration::from_secs(300));
    assert_eq!(details.interval(), Duration::from_secs(1));

    // The CLI polls while the person signs in on "another device".
    let polling = {
        let client = client.clone();
        let details = details.clone();
        let http = http.clone();
        tokio::spawn(async move {
            client
                .exchange_device_access_token(&details)
                .request_async(&http, tokio::time::sleep, Some(Duration::from_secs(60)))
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))
        })
    };

    let chrome = Chrome::start().await?;
    let c = &chrome.client;
    c.goto(details.verification_uri().as_str()).await?;
    chrome.sign_in("alice", PASSWORD).await?;
    let field = eventually(Duration::from_secs(15), || async {
        c.find(Locator::Css("#user_code")).await.ok()
    })
    .await?;
    field
        .send_keys(&user_code.replace('-', "").to_lowercase())
        .await?;
    c.find(Locator::Css("button[value=lookup]"))
        .await?
        .click()
        .await?;
    let allow = eventually(Duration::from_secs(15), || async {
        c.find(Locator::Css("button[value=allow]")).await.ok()
    })
    .await?;
    let source = c.source().await?;
    assert!(source.contains("Living Room TV"), "client named: {source}");
    assert!(source.contains(&user_code), "code shown: {source}");
    assert!(source.contains("Offline access"), "scopes shown: {source}");
    allow.click().await?;
    eventually(Duration::from_secs(15), || async {
        c.find(Locator::Css("#device-done")).await.ok()
    })
    .await?;
    assert!(c.source().await?.contains("Your device is connected"));
    chrome.client.close().await?;

    let token = polling.await??;
    let jwks = s.jwks().await?;
    let claims = verify_jwt(
        token.access_token().secret(),
        &jwks,
        &s.issuer,
        &format!("{}/resources", s.issuer),
    )?;
    assert_eq!(claims["sub"], sub.as_str());
    assert_eq!(claims["client_id"], "tv");
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert!(claims["sid"].is_string(), "{claims}");
    let refresh = token.refresh_token().context("a refresh token")?;

    // The refresh token works, and the device code is spent.
    let (status, _, body) = s
        .token_request(
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "tv"),
                ("refresh_token", refresh.secret()),
            ],
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = poll(&s.issuer, "tv", details.device_code().secret()).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    s.stop().await?;
    Ok(())
}

/// Raw requests and the HTTP form browser: the ID token, denial, and every bad input.
#[tokio::test]
async fn device_flow_refuses_bad_input() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = serve(dir.path()).await?;
    let sub = setup(&s).await?;
    let base = s.issuer.clone();
    s.create("/Client", tv("other")).await?;
    let mut numeric = tv("keypad");
    numeric["userCodeType"] = json!("Numeric");
    numeric["deviceCodeLifetime"] = json!(1);
    s.create("/Client", numeric).await?;
    s.create(
        "/Client",
        json!({"clientId": "web", "allowedGrantTypes": ["authorization_code"],
               "requireClientSecret": false, "redirectUris": ["http://127.0.0.1:1/cb"],
               "allowedScopes": ["openid"]}),
    )
    .await?;
    s.create(
        "/Client",
        json!({"clientId": "box", "allowedGrantTypes": [DEVICE_GRANT],
               "clientSecrets": [{"value": "box-secret-0123456789"}], "allowedScopes": ["openid"]}),
    )
    .await?;

    // The admin API documents the accepted user code types.
    let doc: Value = s
        .http()
        .get(format!("{}/openapi.json", s.admin))
        .send()
        .await?
        .json()
        .await?;
    let described = doc
        .pointer("/components/schemas/Client/properties/userCodeType/description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        described.contains("Numeric") && described.contains("XXXX-XXXX"),
        "{described}"
    );

    // The device authorization endpoint's errors.
    for (form, status, error) in [
        (
            vec![("client_id", "web"), ("scope", "openid")],
            400,
            "unauthorized_client",
        ),
        (
            vec![("client_id", "tv"), ("scope", "openid email")],
            400,
            "invalid_scope",
        ),
        (vec![("client_id", "tv")], 400, "invalid_scope"),
        (
            vec![("client_id", "nobody"), ("scope", "openid")],
            401,
            "invalid_client",
        ),
        (
            vec![("client_id", "box"), ("scope", "openid")],
            401,
            "invalid_client",
        ),
        (
            vec![
                ("client_id", "box"),
                ("client_secret", "wrong-secret-0123456789"),
                ("scope", "openid"),
            ],
            401,
            "invalid_client",
        ),
        (vec![("scope", "openid")], 401, "invalid_client"),
    ] {
        let (got, body) = start_device(&base, &form).await?;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{form:?}: {body}"
        );
    }
    let r = s
        .http()
        .get(format!("{base}/oauth2/device_authorization"))
        .send()
        .await?;
    assert_eq!(r.status(), 405);
    assert_eq!(r.json::<Value>().await?["error"], "invalid_request");
    let r = s
        .http()
        .post(format!("{base}/oauth2/device_authorization"))
        .header("content-type", "application/json")
        .body(r#"{"client_id":"tv"}"#)
        .send()
        .await?;
    assert_eq!(r.status(), 400, "not a form");
    let (status, body) = start_device(
        &base,
        &[
            ("client_id", "box"),
            ("client_secret", "box-secret-0123456789"),
            ("scope", "openid"),
        ],
    )
    .await?;
    assert_eq!(status, 200, "a confidential client authenticates: {body}");

    // Polling: pending, then too fast.
    let (_, d) = start_device(&base, &[("client_id", "tv"), ("scope", "openid profile")]).await?;
    let device_code = d["device_code"].as_str().context("device_code")?.to_owned();
    let user_code = d["user_code"].as_str().context("user_code")?.to_owned();
    let (status, body) = poll(&base, "tv", &device_code).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("authorization_pending")),
        "{body}"
    );
    let (status, body) = poll(&base, "tv", &device_code).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("slow_down")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("every 6 seconds"),
        "interval raised by 5 s: {body}"
    );
    let (_, body) = poll(&base, "tv", &device_code).await?;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("every 11 seconds"),
        "{body}"
    );
    // Another client's device code; a made-up one; no device code.
    let (status, body) = poll(&base, "other", &device_code).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (_, body) = poll(&base, "tv", "made-up").await?;
    assert_eq!(body["error"], "invalid_grant");
    let (status, _, body) = s
        .token_request(None, &[("grant_type", DEVICE_GRANT), ("client_id", "tv")])
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (_, body) = poll(&base, "web", &device_code).await?;
    assert_eq!(body["error"], "unauthorized_client");

    // A person signs in through verification_uri_complete and lands on the confirmation.
    let mut b = Browser::new();
    let complete = d["verification_uri_complete"]
        .as_str()
        .context("complete")?;
    let confirm = sign_in_at_device(&mut b, complete).await?;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(confirm.body.contains("Living Room TV"), "{}", confirm.body);
    assert!(confirm.body.contains(&user_code), "{}", confirm.body);
    // A form with a wrong CSRF token, and one from another site.
    let interaction = confirm.hidden("interaction")?;
    let forged = b
        .post_form(
            &format!("{base}/device"),
            &[
                ("interaction", &interaction),
                ("csrf", "forged"),
                ("user_code", &user_code),
                ("decision", "allow"),
            ],
        )
        .await?;
    assert_eq!(forged.status, 403);
    let csrf = confirm.hidden("csrf")?;
    let cross = b
        .post_form_with(
            &format!("{base}/device"),
            &[
                ("interaction", &interaction),
                ("csrf", &csrf),
                ("user_code", &user_code),
                ("decision", "allow"),
            ],
            &[("Sec-Fetch-Site", "cross-site")],
        )
        .await?;
    assert_eq!(cross.status, 403);
    // Another browser cannot use this one's interaction.
    let mut other = Browser::new();
    let stolen = submit(&mut other, &base, &confirm, &user_code, "allow").await?;
    assert_eq!(stolen.status, 403, "{}", stolen.body);

    // Deny: the device hears access_denied once, then the code is gone.
    let done = submit(&mut b, &base, &confirm, &user_code, "deny").await?;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Access denied"), "{}", done.body);
    let (status, body) = poll(&base, "tv", &device_code).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("access_denied")),
        "{body}"
    );
    let (_, body) = poll(&base, "tv", &device_code).await?;
    assert_eq!(body["error"], "invalid_grant");

    // The used user code, a wrong one, and junk are refused on the page.
    let page = b.get(&format!("{base}/device")).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    for typed in [user_code.as_str(), "BCDF-GHJK", "not a code"] {
        let again = submit(&mut b, &base, &page, typed, "lookup").await?;
        assert_eq!(again.status, 400, "{typed}: {}", again.body);
        assert!(
            again.body.contains("wrong, expired or already used"),
            "{}",
            again.body
        );
    }

    // Approve (typed with spaces, lower case): tokens with an ID token for alice, once.
    let (_, d) = start_device(&base, &[("client_id", "tv"), ("scope", "openid profile")]).await?;
    let device_code = d["device_code"].as_str().context("device_code")?.to_owned();
    let typed = d["user_code"]
        .as_str()
        .context("user_code")?
        .replace('-', " ")
        .to_lowercase();
    let confirm = submit(&mut b, &base, &page, &typed, "lookup").await?;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let normalized = confirm.hidden("user_code")?;
    let done = submit(&mut b, &base, &confirm, &normalized, "allow").await?;
    assert!(
        done.body.contains("Your device is connected"),
        "{}",
        done.body
    );
    // The same user code cannot be decided twice.
    let twice = submit(&mut b, &base, &confirm, &normalized, "deny").await?;
    assert!(twice.status == 400 || twice.status == 403, "{}", twice.body);
    let (status, tokens) = poll(&base, "tv", &device_code).await?;
    assert_eq!(status, 200, "{tokens}");
    assert!(
        tokens.get("refresh_token").is_none(),
        "no offline_access asked"
    );
    let id = verify_jwt(
        tokens["id_token"].as_str().context("id_token")?,
        &s.jwks().await?,
        &base,
        "tv",
    )?;
    assert_eq!(id["sub"], sub.as_str());
    assert!(id["auth_time"].is_i64() && id["sid"].is_string(), "{id}");
    let (_, body) = poll(&base, "tv", &device_code).await?;
    assert_eq!(body["error"], "invalid_grant", "redeemed once");

    // An approval dies with the user's sign-in state: revoked before the device polls, the
    // device gets nothing.
    let (_, d) = start_device(&base, &[("client_id", "tv"), ("scope", "openid")]).await?;
    let device_code = d["device_code"].as_str().context("device_code")?.to_owned();
    let page = b.get(&format!("{base}/device")).await?;
    let code = d["user_code"].as_str().context("user_code")?;
    let done = submit(&mut b, &base, &page, code, "allow").await?;
    assert!(
        done.body.contains("Your device is connected"),
        "{}",
        done.body
    );
    let (status, body) = s
        .admin_call(Method::POST, "/revocations", Some(&json!({"sub": sub})))
        .await?;
    assert_eq!(status, 201, "{body}");
    let (_, body) = poll(&base, "tv", &device_code).await?;
    assert_eq!(body["error"], "invalid_grant", "{body}");
    // Signed out by the revocation: sign in again.
    let mut b = Browser::new();
    let again = sign_in_at_device(&mut b, &format!("{base}/device")).await?;
    assert_eq!(again.status, 200, "{}", again.body);

    // Numeric codes; a 1-second lifetime expires: expired_token, and the code is refused.
    let (_, d) = start_device(&base, &[("client_id", "keypad"), ("scope", "openid")]).await?;
    let code = d["user_code"].as_str().context("user_code")?.to_owned();
    assert!(
        code.len() == 11
            && code.chars().enumerate().all(|(i, c)| if i == 3 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }),
        "{code}"
    );
    assert_eq!(d["expires_in"], 1);
    let device_code = d["device_code"].as_str().context("device_code")?.to_owned();
    eventually(Duration::from_secs(10), || async {
        let (_, body) = poll(&base, "keypad", &device_code).await.ok()?;
        (body["error"] == "expired_token").then_some(())
    })
    .await?;
    let page = b.get(&format!("{base}/device")).await?;
    let expired = submit(&mut b, &base, &page, &code, "lookup").await?;
    assert_eq!(expired.status, 400, "{}", expired.body);
    assert!(
        expired.body.contains("wrong, expired or already used"),
        "{}",
        expired.body
    );

    // The client's userSsoLifetime holds here as at the authorization endpoint: a sign-in
    // older than it goes through the login page again, and comes back to the code.
    let mut strict = tv("strict");
    strict["userSsoLifetime"] = json!(1);
    s.create("/Client", strict).await?;
    let (_, d) = start_device(&base, &[("client_id", "strict"), ("scope", "openid")]).await?;
    let complete = d["verification_uri_complete"]
        .as_str()
        .context("complete")?
        .to_owned();
    let login = eventually(Duration::from_secs(10), || {
        let mut probe = Browser::new();
        probe.cookies = b.cookies.clone();
        let complete = complete.clone();
        async move {
            let page = probe.get(&complete).await.ok()?;
            (page.status == 303).then_some(page)
        }
    })
    .await?;
    assert!(login.location()?.path().ends_with("/login"));
    let confirm = sign_in_at_device(&mut b, &complete).await?;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(
        confirm.body.contains("name=\"decision\" value=\"allow\""),
        "{}",
        confirm.body
    );
    s.stop().await?;
    Ok(())
}

/// Guessing user codes is throttled per client address: past the limit even a right code
/// is refused from that address, while another address still gets through.
#[tokio::test]
async fn user_code_guessing_is_throttled_per_address() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = serve(dir.path()).await?;
    setup(&s).await?;
    let base = s.issuer.clone();
    let (_, d) = start_device(&base, &[("client_id", "tv"), ("scope", "openid")]).await?;
    let user_code = d["user_code"].as_str().context("user_code")?.to_owned();

    let mut guesser = Browser::from_address("127.0.0.2".parse()?);
    let page = sign_in_at_device(&mut guesser, &format!("{base}/device")).await?;
    for i in 0..20 {
        let wrong = submit(&mut guesser, &base, &page, "BBBB-BBBB", "lookup").await?;
        assert_eq!(wrong.status, 400, "guess {i}: {}", wrong.body);
    }
    let held = submit(&mut guesser, &base, &page, &user_code, "lookup").await?;
    assert_eq!(held.status, 429, "{}", held.body);
    assert!(held.body.contains("Too many wrong codes"), "{}", held.body);

    let mut person = Browser::from_address("127.0.0.3".parse()?);
    let page = sign_in_at_device(&mut person, &format!("{base}/device")).await?;
    let confirm = submit(&mut person, &base, &page, &user_code, "lookup").await?;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let metrics = s
        .http()
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("signet_device_user_code_failures_total 20"),
        "{metrics}"
    );
    s.stop().await?;
    Ok(())
}

/// On a cluster: the device starts at node 1, polls node 1 and then node 2 too fast (the
/// interval holds across nodes), the person approves at node 1, and node 2 hands out the
/// tokens.
#[tokio::test]
async fn device_flow_across_a_cluster() -> anyhow::Result<()> {
    let c = Cluster::start(2).await?;
    let user = json!({"username": "alice", "password": PASSWORD});
    for (path, body) in [("/User", user), ("/Client", tv("tv"))] {
        let (status, resp) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        assert_eq!(status, 201, "{path}: {resp}");
    }
    eventually(Duration::from_secs(10), || async {
        let (status, _) = c
            .admin_call(1, Method::GET, "/Client/tv", None)
            .await
            .ok()?;
        (status == 200).then_some(())
    })
    .await?;
    let (node1, node2) = (c.issuers[0].public.clone(), c.issuers[1].public.clone());
    let (status, d) = start_device(
        &node1,
        &[("client_id", "tv"), ("scope", "openid offline_access")],
    )
    .await?;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["verification_uri"], format!("{}/device", c.issuer));
    assert_eq!(d["interval"], 5);
    let device_code = d["device_code"].as_str().context("device_code")?.to_owned();
    let (_, body) = poll(&node1, "tv", &device_code).await?;
    assert_eq!(body["error"], "authorization_pending", "{body}");
    let (_, body) = poll(&node2, "tv", &device_code).await?;
    assert_eq!(body["error"], "slow_down", "{body}");

    let mut b = Browser::new();
    let complete = d["verification_uri_complete"]
        .as_str()
        .context("complete")?;
    let confirm = sign_in_at_device(&mut b, complete).await?;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let done = submit(
        &mut b,
        &node1,
        &confirm,
        &confirm.hidden("user_code")?,
        "allow",
    )
    .await?;
    assert!(
        done.body.contains("Your device is connected"),
        "{}",
        done.body
    );

    let (status, tokens) = poll(&node2, "tv", &device_code).await?;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    assert!(tokens["id_token"].is_string(), "{tokens}");
    let (_, body) = poll(&node1, "tv", &device_code).await?;
    assert_eq!(body["error"], "invalid_grant", "redeemed once across nodes");
    Ok(())
}
