//! OpenID Connect Front-Channel and Back-Channel Logout 1.0: when a session ends through
//! RP-initiated logout, the other clients of the session are told, through the browser
//! (hidden iframes on the signed-out page) and server to server (a logout token from a
//! durable queue, retried with backoff, never following a redirect nor reaching a
//! link-local address), on `serve` and across a cluster whose delivering node dies.

use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::browser::{params_of, Browser, PKCE_CHALLENGE, PKCE_VERIFIER};
use signet_tests::chrome::{relying_party, Chrome};
use signet_tests::cluster::Cluster;
use signet_tests::receiver::Receiver;
use signet_tests::{eventually, free_port, Serve, ServeOptions};

const PASSWORD: &str = "channel logout password";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// `serve` that may reach loopback receivers, retrying quickly.
fn options(max_attempts: u32) -> ServeOptions {
    ServeOptions {
        extra_args: vec![
            "--allow-private-outbound".into(),
            "--backchannel-retry-base".into(),
            "100ms".into(),
            "--backchannel-max-attempts".into(),
            max_attempts.to_string(),
        ],
        ..Default::default()
    }
}

fn user() -> Value {
    json!({"username": "ines", "password": PASSWORD, "claims": {}})
}

/// A public client with PKCE, redirecting to `redirect`, with optional logout URIs.
fn client(id: &str, redirect: &str, front: Option<String>, back: Option<String>) -> Value {
    json!({
        "clientId": id, "allowedGrantTypes": ["authorization_code"],
        "requireClientSecret": false, "requireConsent": false,
        "redirectUris": [redirect], "postLogoutRedirectUris": [format!("{redirect}/bye")],
        "allowedScopes": ["openid"],
        "frontChannelLogoutUri": front, "backChannelLogoutUri": back,
    })
}

fn authorize_url(base: &str, client_id: &str, redirect: &str, prompt: Option<&str>) -> String {
    let mut u = url::Url::parse(&format!("{base}/oauth2/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("nonce", "n1")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    if let Some(p) = prompt {
        u.query_pairs_mut().append_pair("prompt", p);
    }
    u.into()
}

/// Redeems `code` at `base`; returns the ID token.
async fn redeem(base: &str, client_id: &str, redirect: &str, code: &str) -> anyhow::Result<String> {
    let r = reqwest::Client::new()
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", PKCE_VERIFIER),
        ])
        .send()
        .await?;
    let body: Value = r.json().await?;
    Ok(body["id_token"]
        .as_str()
        .with_context(|| format!("id_token: {body}"))?
        .to_owned())
}

/// The `sid` claim of a token (its signature is checked elsewhere).
fn sid_of(jwt: &str) -> anyhow::Result<String> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).context("a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    let v: Value = serde_json::from_slice(&bytes)?;
    Ok(v["sid"].as_str().context("sid")?.to_owned())
}

/// The sum of a counter's samples whose line contains every one of `parts`.
async fn counter(public: &str, parts: &[&str]) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{public}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#') && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Signs in with the HTTP browser at `first`, then at each of `more` by SSO; returns the
/// first client's ID token.
async fn sign_in_to(
    base: &str,
    b: &mut Browser,
    redirect: &str,
    first: &str,
    more: &[&str],
) -> anyhow::Result<String> {
    let r = b
        .sign_in(
            &authorize_url(base, first, redirect, None),
            "ines",
            PASSWORD,
        )
        .await?;
    let code = params_of(&r.location()?, false)
        .remove("code")
        .context("code")?;
    let id_token = redeem(base, first, redirect, &code).await?;
    for id in more {
        let r = b.get(&authorize_url(base, id, redirect, None)).await?;
        anyhow::ensure!(r.status == 302, "SSO at {id}: {} {}", r.status, r.body);
        let code = params_of(&r.location()?, false)
            .remove("code")
            .context("SSO code")?;
        redeem(base, id, redirect, &code).await?;
    }
    Ok(id_token)
}

/// (a) Chromium signs in to two clients, signs out of one (RP-initiated, with a
/// post_logout_redirect_uri): the other's front-channel iframe loads with `iss` and `sid`,
/// the browser then continues to the redirect, the other's back-channel receiver gets a
/// logout token that `signet-verify` accepts for the session's `sid`, and `prompt=none`
/// says `login_required`.
#[tokio::test]
async fn chromium_signs_out_and_the_other_client_hears_by_front_and_back_channel(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), options(5)).await?;
    let rp = relying_party().await?;
    let redirect = format!("{rp}/cb");
    let notes = Receiver::start().await?;
    s.create("/User", user()).await?;
    s.create("/Client", client("web", &redirect, None, None))
        .await?;
    s.create(
        "/Client",
        client(
            "notes",
            &redirect,
            Some(format!("{}/fc", notes.base)),
            Some(format!("{}/bc", notes.base)),
        ),
    )
    .await?;

    let chrome = Chrome::start().await?;
    let c = &chrome.client;
    let landed = |prefix: String| {
        let c = c.clone();
        async move {
            eventually(Duration::from_secs(15), || async {
                let u = c.current_url().await.ok()?;
                u.as_str().starts_with(&prefix).then_some(u)
            })
            .await
        }
    };
    c.goto(&authorize_url(&s.issuer, "web", &redirect, None))
        .await?;
    chrome.sign_in("ines", PASSWORD).await?;
    let at = landed(redirect.clone()).await?;
    let code = params_of(&at, false).remove("code").context("web code")?;
    let id_token = redeem(&s.issuer, "web", &redirect, &code).await?;
    let sid = sid_of(&id_token)?;
    // Single sign-on at the second client.
    c.goto(&authorize_url(&s.issuer, "notes", &redirect, None))
        .await?;
    let at = landed(redirect.clone()).await?;
    let code = params_of(&at, false).remove("code").context("notes code")?;
    redeem(&s.issuer, "notes", &redirect, &code).await?;

    // RP-initiated logout at `web`.
    let mut end = url::Url::parse(&format!("{}/oauth2/logout", s.issuer))?;
    end.query_pairs_mut()
        .append_pair("id_token_hint", &id_token)
        .append_pair("post_logout_redirect_uri", &format!("{redirect}/bye"))
        .append_pair("state", "st-1");
    c.goto(end.as_str()).await?;
    let bye = landed(format!("{redirect}/bye")).await?;
    assert_eq!(
        params_of(&bye, false).get("state").map(String::as_str),
        Some("st-1")
    );
    let fc = notes.received("/fc");
    assert_eq!(fc.len(), 1, "the front-channel iframe loaded once: {fc:?}");
    assert_eq!(fc[0].method, "GET");
    assert_eq!(fc[0].param("iss").as_deref(), Some(s.issuer.as_str()));
    assert_eq!(fc[0].param("sid").as_deref(), Some(sid.as_str()));
    assert!(notes.received("/cb").is_empty() && !fc.is_empty());

    let bc = eventually(Duration::from_secs(10), || async {
        notes.received("/bc").into_iter().next()
    })
    .await?;
    assert_eq!(bc.method, "POST");
    let token = bc.param("logout_token").context("logout_token")?;
    let verifier = signet_verify::Verifier::builder(&s.issuer, "notes").build()?;
    let claims = verifier.verify_logout_token(&token).await?;
    assert_eq!(claims.sid.as_deref(), Some(sid.as_str()));
    assert!(claims.sub.is_some() && claims.exp - claims.iat <= 120);
    // Not a logout token for the other client.
    let other = signet_verify::Verifier::builder(&s.issuer, "web").build()?;
    assert!(other.verify_logout_token(&token).await.is_err());

    // Signed out: no silent sign-in.
    c.goto(&authorize_url(&s.issuer, "web", &redirect, Some("none")))
        .await?;
    let at = landed(redirect.clone()).await?;
    assert_eq!(
        params_of(&at, false).get("error").map(String::as_str),
        Some("login_required")
    );
    chrome.client.close().await?;
    assert!(counter(&s.issuer, &["signet_backchannel_logout_delivered_total"]).await? >= 1.0);
    Ok(())
}

/// (b) A receiver answering 500 is retried and given up after the attempts bound (the
/// metric says so); one that redirects is given up at once and its target never reached;
/// one at the metadata address is never contacted. The signed-out page frames exactly the
/// front-channel origin. Signet itself answers 200 throughout.
#[tokio::test]
async fn failing_redirecting_and_link_local_receivers_are_given_up() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            capture_logs: true,
            ..options(3)
        },
    )
    .await?;
    let redirect = "http://127.0.0.1:1/cb";
    let failing = Receiver::start().await?;
    failing.answer(500, None);
    let target = Receiver::start().await?;
    let redirecting = Receiver::start().await?;
    redirecting.answer(307, Some(&format!("{}/bc", target.base)));
    s.create("/User", user()).await?;
    s.create(
        "/Client",
        client(
            "failing",
            redirect,
            Some(format!("{}/fc", failing.base)),
            Some(format!("{}/bc", failing.base)),
        ),
    )
    .await?;
    s.create(
        "/Client",
        client(
            "redirecting",
            redirect,
            None,
            Some(format!("{}/bc", redirecting.base)),
        ),
    )
    .await?;
    s.create(
        "/Client",
        client(
            "metadata",
            redirect,
            None,
            Some("http://169.254.169.254/latest/meta-data/".into()),
        ),
    )
    .await?;
    let mut b = Browser::new();
    let id_token = sign_in_to(
        &s.issuer,
        &mut b,
        redirect,
        "failing",
        &["redirecting", "metadata"],
    )
    .await?;
    let r = b
        .get(&format!(
            "{}/oauth2/logout?id_token_hint={id_token}",
            s.issuer
        ))
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let csp = r
        .headers
        .get("content-security-policy")
        .context("CSP")?
        .to_str()?
        .to_owned();
    assert!(
        csp.contains(&format!("frame-src {};", failing.base)),
        "frame-src allows exactly the front-channel origin: {csp}"
    );
    assert!(csp.contains("script-src 'none'"), "{csp}");
    // One iframe (minijinja escapes the slashes of the attribute).
    let hostport = failing.base.trim_start_matches("http://");
    assert_eq!(r.body.matches("<iframe").count(), 1, "{}", r.body);
    assert!(
        r.body.contains(&format!("{hostport}&#x2f;fc?iss=")),
        "{}",
        r.body
    );

    let given_up = |reason: &'static str| {
        let issuer = s.issuer.clone();
        async move {
            counter(
                &issuer,
                &[
                    "signet_backchannel_logout_given_up_total",
                    &format!("reason=\"{reason}\""),
                ],
            )
            .await
            .unwrap_or(0.0)
        }
    };
    eventually(Duration::from_secs(15), || async {
        (given_up("status_5xx").await >= 1.0
            && given_up("redirect").await >= 1.0
            && given_up("address_refused").await >= 1.0)
            .then_some(())
    })
    .await
    .context("every delivery given up")?;
    assert_eq!(
        failing.received("/bc").len(),
        3,
        "three attempts, then given up"
    );
    assert_eq!(
        redirecting.received("/bc").len(),
        1,
        "a redirect is not retried"
    );
    assert!(
        target.received("/").is_empty(),
        "the redirect is never followed"
    );
    let failed = counter(
        &s.issuer,
        &[
            "signet_backchannel_logout_failed_attempts_total",
            "status_5xx",
        ],
    )
    .await?;
    assert_eq!(failed, 3.0);
    // The log says it was given up, never with the token (a JWT starts with `eyJ`).
    let logs = s.logs();
    assert_eq!(
        logs.matches("back-channel logout given up").count(),
        3,
        "{logs}"
    );
    assert!(!logs.contains("eyJ"), "no token in the logs");
    Ok(())
}

/// (c) On a cluster, node 0 ends the session while the receiver is down; node 0 tries,
/// fails and dies; node 1 delivers the token once the receiver is up.
#[tokio::test]
async fn a_delivery_outlives_the_issuer_that_started_it() -> anyhow::Result<()> {
    let mut c = Cluster::start_with(
        2,
        vec![
            "--allow-private-outbound".into(),
            "--backchannel-retry-base".into(),
            "200ms".into(),
            "--backchannel-max-attempts".into(),
            "12".into(),
        ],
    )
    .await?;
    let port = free_port();
    let redirect = "http://127.0.0.1:1/cb";
    let body = client(
        "app",
        redirect,
        None,
        Some(format!("http://127.0.0.1:{port}/bc")),
    );
    for (path, body) in [("/User", user()), ("/Client", body)] {
        let (status, resp) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        anyhow::ensure!(status == 201, "{path}: {resp}");
    }
    eventually(Duration::from_secs(10), || async {
        let (status, _) = c
            .admin_call(1, Method::GET, "/Client/app", None)
            .await
            .ok()?;
        (status == 200).then_some(())
    })
    .await?;
    let node0 = c.issuers[0].public.clone();
    let mut b = Browser::new();
    let id_token = sign_in_to(&node0, &mut b, redirect, "app", &[]).await?;
    let sid = sid_of(&id_token)?;
    let r = b
        .get(&format!("{node0}/oauth2/logout?id_token_hint={id_token}"))
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    // Node 0 has tried (the receiver is down) ...
    eventually(Duration::from_secs(15), || async {
        let n = counter(&node0, &["signet_backchannel_logout_failed_attempts_total"])
            .await
            .ok()?;
        (n >= 1.0).then_some(())
    })
    .await
    .context("node 0 attempted the delivery")?;
    // ... and dies; the receiver comes up.
    let node = c.issuers.remove(0);
    node.proc.kill().await?;
    let receiver = Receiver::start_on(port).await?;
    // Patience beyond the queue's 30 s lease: node 0 may have died holding the delivery.
    let got = eventually(Duration::from_secs(60), || async {
        receiver.received("/bc").into_iter().next()
    })
    .await
    .context("node 1 delivered the logout token")?;
    let token = got.param("logout_token").context("logout_token")?;
    let header = jsonwebtoken::decode_header(&token)?;
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let claims = signet_tests::verify_jwt(&token, &c.jwks(0).await?, &c.issuer, "app")?;
    assert_eq!(claims["sid"], sid.as_str());
    assert!(claims["events"][EVENT].is_object(), "{claims}");
    assert!(claims.get("nonce").is_none());
    let delivered = counter(
        &c.issuers[0].public,
        &["signet_backchannel_logout_delivered_total"],
    )
    .await?;
    assert_eq!(delivered, 1.0, "node 1 delivered it");
    Ok(())
}

/// A client with pairwise subjects gets the `sub` its ID token carried, not the user's own;
/// the token verifies with `signet-verify` for that client only.
#[tokio::test]
async fn the_logout_token_names_the_subject_the_client_knows() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), options(3)).await?;
    let redirect = "http://127.0.0.1:1/cb";
    let receiver = Receiver::start().await?;
    let user = s.create("/User", user()).await?;
    let mut body = client(
        "pairwise",
        redirect,
        None,
        Some(format!("{}/bc", receiver.base)),
    );
    body["pairWiseSubjectSalt"] = json!("a-salt-for-this-client");
    s.create("/Client", body).await?;
    let mut b = Browser::new();
    let id_token = sign_in_to(&s.issuer, &mut b, redirect, "pairwise", &[]).await?;
    let id_claims = signet_tests::verify_jwt(&id_token, &s.jwks().await?, &s.issuer, "pairwise")?;
    let pairwise_sub = id_claims["sub"].as_str().context("sub")?.to_owned();
    assert_ne!(Some(pairwise_sub.as_str()), user["sub"].as_str());
    let r = b
        .get(&format!(
            "{}/oauth2/logout?id_token_hint={id_token}",
            s.issuer
        ))
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(receiver.wait_for("/bc", 1, Duration::from_secs(10)).await);
    let token = receiver.received("/bc")[0]
        .param("logout_token")
        .context("logout_token")?;
    let claims = signet_verify::Verifier::builder(&s.issuer, "pairwise")
        .build()?
        .verify_logout_token(&token)
        .await?;
    assert_eq!(claims.sub.as_deref(), Some(pairwise_sub.as_str()));
    assert_eq!(claims.sid, id_claims["sid"].as_str().map(str::to_owned));
    Ok(())
}
