//! RP-Initiated Logout 1.0 at `/oauth2/logout`: a relying party builds the end-session URL
//! with the `openidconnect` crate from discovery; the browser's session ends (at every node:
//! it lives in the shared store), `prompt=none` then says `login_required`, and every bad
//! request gets an error page, never a redirect.

use std::str::FromStr;

use anyhow::Context;
use openidconnect::core::CoreIdToken;
use openidconnect::{
    ClientId, CsrfToken, IssuerUrl, LogoutRequest, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout,
};
use serde_json::{json, Value};
use signet_tests::browser::{code_flow, params_of, Browser, PKCE_CHALLENGE, PKCE_VERIFIER};
use signet_tests::{Serve, ServeOptions};

const PASSWORD: &str = "logout password 12";
const SECRET: &str = "logout-client-secret-0123";
const REDIRECT: &str = "http://127.0.0.1:1/cb";
const AFTER: &str = "https://app.example/signed-out";

async fn setup() -> anyhow::Result<(tempfile::TempDir, Serve)> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    s.create(
        "/User",
        json!({"username": "lena", "password": PASSWORD, "claims": {}}),
    )
    .await?;
    for (id, after) in [("app", AFTER), ("other", "https://other.example/bye")] {
        s.create(
            "/Client",
            json!({"clientId": id, "allowedGrantTypes": ["authorization_code"],
                "clientSecrets": [{"value": SECRET}], "redirectUris": [REDIRECT],
                "postLogoutRedirectUris": [after],
                "allowedScopes": ["openid"], "requireConsent": false}),
        )
        .await?;
    }
    Ok((dir, s))
}

/// Signs lena in with browser `b` at client `app`; returns the ID token.
async fn sign_in(s: &Serve, b: &mut Browser) -> anyhow::Result<String> {
    let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer))?;
    u.query_pairs_mut()
        .append_pair("client_id", "app")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    let r = b.sign_in(u.as_str(), "lena", PASSWORD).await?;
    let code = params_of(&r.location()?, false)
        .remove("code")
        .context("code")?;
    let (st, _, t) = s
        .token_request(
            Some(("app", SECRET)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", PKCE_VERIFIER),
            ],
        )
        .await?;
    anyhow::ensure!(st == 200, "token: {t}");
    Ok(t["id_token"].as_str().context("id_token")?.to_owned())
}

/// `prompt=none` at client `app` with browser `b`: the `error` of the answer, if any.
async fn silent(s: &Serve, b: &mut Browser) -> anyhow::Result<Option<String>> {
    let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer))?;
    u.query_pairs_mut()
        .append_pair("client_id", "app")
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

#[tokio::test]
async fn a_relying_party_signs_the_user_out_with_the_openidconnect_crate() -> anyhow::Result<()> {
    let (_dir, s) = setup().await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let meta = ProviderMetadataWithLogout::discover_async(IssuerUrl::new(s.issuer.clone())?, &http)
        .await?;
    let end_session = meta
        .additional_metadata()
        .end_session_endpoint
        .clone()
        .context("discovery advertises end_session_endpoint")?;
    let doc: Value = http
        .get(format!("{}/.well-known/openid-configuration", s.issuer))
        .send()
        .await?
        .json()
        .await?;
    // Front- and back-channel logout work (tests/integration/channel_logout.rs).
    assert_eq!(doc["frontchannel_logout_supported"], true, "{doc}");
    assert_eq!(doc["backchannel_logout_supported"], true, "{doc}");

    let mut b = Browser::new();
    let id_token = sign_in(&s, &mut b).await?;
    assert_eq!(silent(&s, &mut b).await?, None, "signed in");
    let url = LogoutRequest::from(end_session.clone())
        .set_id_token_hint(&CoreIdToken::from_str(&id_token)?)
        .set_client_id(ClientId::new("app".into()))
        .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new(AFTER.into())?)
        .set_state(CsrfToken::new("bye-123".into()))
        .http_get_url();
    let r = b.get(url.as_str()).await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let to = r.location()?;
    assert_eq!(to.as_str(), format!("{AFTER}?state=bye-123"));
    assert!(!b.cookies.contains_key("signet_session"), "cookie cleared");
    assert_eq!(silent(&s, &mut b).await?.as_deref(), Some("login_required"));

    // The session is gone from the store, not only from this browser: its old cookie no
    // longer signs anyone in.
    let mut b = Browser::new();
    let id_token = sign_in(&s, &mut b).await?;
    let stolen = b.cookies.clone();
    let url = LogoutRequest::from(end_session.clone())
        .set_id_token_hint(&CoreIdToken::from_str(&id_token)?)
        .http_get_url();
    let r = b.get(url.as_str()).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("signed out"), "{}", r.body);
    let mut replay = Browser::new();
    replay.cookies = stolen;
    assert_eq!(
        silent(&s, &mut replay).await?.as_deref(),
        Some("login_required")
    );

    // An expired hint is still a hint (section 4): tested by the confirmation path below
    // with a hint of an ended session, which must ask the user instead of signing out.
    let mut b = Browser::new();
    sign_in(&s, &mut b).await?;
    let url = LogoutRequest::from(end_session)
        .set_id_token_hint(&CoreIdToken::from_str(&id_token)?)
        .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new(AFTER.into())?)
        .http_get_url();
    let page = b.get(url.as_str()).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Sign out"), "{}", page.body);
    assert_eq!(
        silent(&s, &mut b).await?,
        None,
        "not signed out before confirming"
    );
    // The confirmation form: a forged CSRF token, a foreign origin, then the real thing.
    let action = format!("{}/oauth2/logout", s.issuer);
    let form = |csrf: &str| -> Vec<(&str, String)> {
        vec![
            ("logout_confirm", "yes".into()),
            ("csrf", csrf.into()),
            ("client_id", "app".into()),
            ("post_logout_redirect_uri", AFTER.into()),
        ]
    };
    let forged = form("forged");
    let forged: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(b.post_form(&action, &forged).await?.status, 403);
    let csrf = page.hidden("csrf")?;
    let good = form(&csrf);
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = b
        .post_form_with(&action, &good, &[("sec-fetch-site", "cross-site")])
        .await?;
    assert_eq!(r.status, 403);
    assert_eq!(silent(&s, &mut b).await?, None, "still signed in");
    let r = b
        .post_form_with(&action, &good, &[("sec-fetch-site", "same-origin")])
        .await?;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(r.location()?.as_str(), AFTER);
    assert_eq!(silent(&s, &mut b).await?.as_deref(), Some("login_required"));
    Ok(())
}

#[tokio::test]
async fn bad_logout_requests_never_redirect() -> anyhow::Result<()> {
    let (_dir, s) = setup().await?;
    let mut b = Browser::new();
    let id_token = sign_in(&s, &mut b).await?;
    // A second issuer's ID token: signed, but not by us.
    let dir = tempfile::tempdir()?;
    let foreign = Serve::start(dir.path(), ServeOptions::default()).await?;
    foreign
        .create(
            "/User",
            json!({"username": "lena", "password": PASSWORD, "claims": {}}),
        )
        .await?;
    foreign
        .create(
            "/Client",
            json!({"clientId": "app", "allowedGrantTypes": ["authorization_code"],
                "clientSecrets": [{"value": SECRET}], "redirectUris": [REDIRECT],
                "allowedScopes": ["openid"], "requireConsent": false}),
        )
        .await?;
    let foreign_token = code_flow(
        &foreign.issuer,
        &foreign.issuer,
        "app",
        Some(SECRET),
        REDIRECT,
        "openid",
        "lena",
        PASSWORD,
    )
    .await?;
    let foreign_id = foreign_token["id_token"].as_str().context("id_token")?;
    let mut tampered = id_token.clone();
    tampered.pop();
    tampered.push(if id_token.ends_with('A') { 'B' } else { 'A' });

    let logout = |params: &[(&str, &str)]| {
        let mut u = url::Url::parse(&format!("{}/oauth2/logout", s.issuer)).unwrap();
        for (k, v) in params {
            u.query_pairs_mut().append_pair(k, v);
        }
        u
    };
    for params in [
        vec![("id_token_hint", foreign_id)],
        vec![("id_token_hint", tampered.as_str())],
        vec![("id_token_hint", "not-a-jwt")],
        // Registered, but for another client.
        vec![
            ("id_token_hint", id_token.as_str()),
            ("post_logout_redirect_uri", "https://other.example/bye"),
        ],
        // Not registered at all.
        vec![
            ("client_id", "app"),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ],
        // No client named: no redirect URI can be trusted.
        vec![("post_logout_redirect_uri", AFTER)],
        // The hint names another client than client_id.
        vec![("id_token_hint", id_token.as_str()), ("client_id", "other")],
        vec![("client_id", "nobody")],
    ] {
        let r = b.get(logout(&params).as_str()).await?;
        assert_eq!(r.status, 400, "{params:?}: {}", r.body);
        assert!(r.headers.get("location").is_none(), "{params:?}");
    }
    // Nothing above signed the user out.
    assert_eq!(silent(&s, &mut b).await?, None);
    // Without any session, a valid request is simply answered.
    let mut nobody = Browser::new();
    let r = nobody
        .get(
            logout(&[
                ("client_id", "app"),
                ("post_logout_redirect_uri", AFTER),
                ("state", "s"),
            ])
            .as_str(),
        )
        .await?;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(r.location()?.as_str(), format!("{AFTER}?state=s"));
    Ok(())
}
