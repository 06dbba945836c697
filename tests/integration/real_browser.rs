//! The sign-in flow in a real browser: Debian's headless Chromium, driven through
//! chromedriver, fills in Signet's login and consent pages (no JavaScript on them) and lands
//! at a relying party with a code, which the relying party redeems with its PKCE verifier.
//! On a `serve` node and on a cluster.

use std::time::Duration;

use anyhow::Context;
use fantoccini::Locator;
use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::chrome::{relying_party, Chrome};
use signet_tests::cluster::Cluster;
use signet_tests::{eventually, Serve, ServeOptions};

const VERIFIER: &str = "dBjftJeZ4CVP-mJ0LbmCqxJW9X8Nqn_H96LJPLkgK0Y";
const CHALLENGE: &str = "mUC84QHW1XnmFGk31dqlZ81-q8-qS-OxrweG_XEDeIU";
const PASSWORD: &str = "bob's long password";

fn user() -> Value {
    json!({"username": "bob", "password": PASSWORD, "claims": {"name": "Bob"}})
}

fn client(redirect: &str) -> Value {
    json!({
        "clientId": "spa", "clientName": "Bob's Notes",
        "allowedGrantTypes": ["authorization_code"], "requireClientSecret": false,
        "requireConsent": true, "redirectUris": [redirect],
        "allowedScopes": ["openid", "profile"]
    })
}

/// Chromium signs in through `authorize_base` (a node's public URL); the code is redeemed at
/// `token_base`. Returns the token response.
async fn sign_in_with_chromium(
    authorize_base: &str,
    token_base: &str,
    issuer: &str,
    redirect: &str,
) -> anyhow::Result<Value> {
    let authorize = format!(
        "{authorize_base}/oauth2/authorize?client_id=spa&response_type=code&scope=openid%20profile&state=s1&nonce=n1&code_challenge={CHALLENGE}&code_challenge_method=S256&redirect_uri={}",
        url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
    );
    let chrome = Chrome::start().await?;
    let c = &chrome.client;
    c.goto(&authorize).await?;
    chrome.sign_in("bob", PASSWORD).await?;
    let allow = match eventually(Duration::from_secs(15), || async {
        c.find(Locator::Css("button[value=allow]")).await.ok()
    })
    .await
    {
        Ok(a) => a,
        Err(e) => anyhow::bail!(
            "no consent page ({e}); at {:?}: {}",
            c.current_url().await,
            c.source().await.unwrap_or_default()
        ),
    };
    assert!(c.source().await?.contains("Notes"), "branded consent page");
    allow.click().await?;
    let landed = eventually(Duration::from_secs(15), || async {
        let u = c.current_url().await.ok()?;
        u.as_str().starts_with(redirect).then_some(u)
    })
    .await?;
    chrome.client.close().await?;
    let params: std::collections::BTreeMap<String, String> =
        landed.query_pairs().into_owned().collect();
    assert_eq!(params.get("state").map(String::as_str), Some("s1"));
    assert_eq!(params.get("iss").map(String::as_str), Some(issuer));
    let code = params.get("code").context("a code at the relying party")?;
    let r = reqwest::Client::new()
        .post(format!("{token_base}/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await?;
    assert!(body["id_token"].is_string(), "{body}");
    Ok(body)
}

#[tokio::test]
async fn a_person_signs_in_with_chromium_on_serve() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let redirect = format!("{}/cb", relying_party().await?);
    s.create("/User", user()).await?;
    s.create("/Client", client(&redirect)).await?;
    sign_in_with_chromium(&s.issuer, &s.issuer, &s.issuer, &redirect).await?;
    Ok(())
}

/// On a cluster: the browser starts at node 2, signs in at the shared issuer URL (node 1),
/// and the code is redeemed at node 2.
#[tokio::test]
async fn a_person_signs_in_with_chromium_on_a_cluster() -> anyhow::Result<()> {
    let c = Cluster::start(2).await?;
    let redirect = format!("{}/cb", relying_party().await?);
    for (path, body) in [("/User", user()), ("/Client", client(&redirect))] {
        let (status, resp) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        assert_eq!(status, 201, "{path}: {resp}");
    }
    // Node 2 has applied both writes once it knows the client.
    eventually(Duration::from_secs(10), || async {
        let (status, _) = c
            .admin_call(1, Method::GET, "/Client/spa", None)
            .await
            .ok()?;
        (status == 200).then_some(())
    })
    .await?;
    sign_in_with_chromium(
        &c.issuers[1].public,
        &c.issuers[1].public,
        &c.issuer,
        &redirect,
    )
    .await?;
    Ok(())
}
