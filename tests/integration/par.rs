//! Pushed authorization requests (RFC 9126) on `serve` and across cluster nodes: the push
//! authenticates the client (private_key_jwt, a shared secret, or a public client's id), is
//! checked as the authorization endpoint checks, and yields a one-time `request_uri` bound
//! to the client; `requirePushedAuthorization` and `--require-pushed-authorization-requests`
//! refuse plain requests.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use signet_jose::Algorithm;
use signet_tests::browser::{params_of, Browser, PKCE_CHALLENGE, PKCE_VERIFIER};
use signet_tests::{Serve, ServeOptions};

use super::high_security::{claims, ClientKeyPair, ASSERTION_TYPE};

const REDIRECT: &str = "http://127.0.0.1:1/cb";

/// The pushed parameters of a code flow request with PKCE.
fn request(client_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("client_id", client_id.to_owned()),
        ("response_type", "code".to_owned()),
        ("scope", "openid profile".to_owned()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("state", "pushed-state".to_owned()),
        ("nonce", "n".to_owned()),
        ("code_challenge", PKCE_CHALLENGE.to_owned()),
        ("code_challenge_method", "S256".to_owned()),
    ]
}

pub async fn push(
    http: &reqwest::Client,
    base: &str,
    form: &[(&str, String)],
) -> anyhow::Result<(u16, reqwest::header::HeaderMap, Value)> {
    let r = http
        .post(format!("{base}/oauth2/par"))
        .form(form)
        .send()
        .await?;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    Ok((status, headers, r.json().await.unwrap_or(Value::Null)))
}

pub fn authorize_url(base: &str, client_id: &str, request_uri: &str, extra: &str) -> String {
    let mut u = url::Url::parse(&format!("{base}/oauth2/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("request_uri", request_uri);
    format!("{u}{extra}")
}

pub fn with_assertion(
    mut form: Vec<(&'static str, String)>,
    key: &ClientKeyPair,
    client: &str,
    aud: &str,
) -> Vec<(&'static str, String)> {
    form.push(("client_assertion_type", ASSERTION_TYPE.to_owned()));
    form.push(("client_assertion", key.sign(&claims(client, aud))));
    form
}

async fn setup_user_and_clients(s: &Serve, key: &ClientKeyPair) -> anyhow::Result<()> {
    s.create(
        "/User",
        json!({"username": "pia", "password": "pia's password 1", "claims": {"name": "Pia"}}),
    )
    .await?;
    s.create(
        "/Client",
        json!({
        "clientId": "fapi-web", "allowedGrantTypes": ["authorization_code"],
        "clientSecrets": [{"type": "JsonWebKey", "value": key.public_jwk()}],
        "requirePushedAuthorization": true, "requireConsent": false,
        "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile"]}),
    )
    .await?;
    s.create(
        "/Client",
        json!({
        "clientId": "spa", "allowedGrantTypes": ["authorization_code"],
        "requireClientSecret": false, "requireConsent": false,
        "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile"]}),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_pushed_request_signs_in_once_with_private_key_jwt() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let key = ClientKeyPair::new(Algorithm::ES256, "fapi-key");
    setup_user_and_clients(&s, &key).await?;
    let http = reqwest::Client::new();
    let par_url = format!("{}/oauth2/par", s.issuer);

    // requirePushedAuthorization: a plain request goes back with invalid_request.
    let mut b = Browser::new();
    let mut plain = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer))?;
    for (k, v) in request("fapi-web") {
        plain.query_pairs_mut().append_pair(k, &v);
    }
    let r = b.get(plain.as_str()).await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let back = params_of(&r.location()?, false);
    assert_eq!(back["error"], "invalid_request", "{back:?}");
    assert!(back["error_description"].contains("pushed"), "{back:?}");
    assert_eq!(back["state"], "pushed-state");

    // The push, authenticated by an assertion whose aud is the PAR endpoint.
    let (st, headers, body) = push(
        &http,
        &s.issuer,
        &with_assertion(request("fapi-web"), &key, "fapi-web", &par_url),
    )
    .await?;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["expires_in"], 60);
    assert_eq!(headers["cache-control"], "no-store");
    let uri = body["request_uri"].as_str().unwrap().to_owned();
    assert!(
        uri.starts_with("urn:ietf:params:oauth:request_uri:"),
        "{uri}"
    );

    // Parameters outside the pushed request are ignored (RFC 9126 section 4).
    let url = authorize_url(&s.issuer, "fapi-web", &uri, "&state=evil&scope=openid");
    let r = b.sign_in(&url, "pia", "pia's password 1").await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let back = params_of(&r.location()?, false);
    assert_eq!(back["state"], "pushed-state", "{back:?}");
    let code = back["code"].clone();
    let token_url = format!("{}/oauth2/token", s.issuer);
    let mut form = with_assertion(
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_verifier", PKCE_VERIFIER.to_owned()),
        ],
        &key,
        "fapi-web",
        &token_url,
    );
    let r = http.post(&token_url).form(&form).send().await?;
    let body: Value = r.json().await?;
    assert_eq!(body["scope"], "openid profile", "{body}");
    assert!(body["id_token"].is_string(), "{body}");
    // The assertion is spent.
    form.retain(|(k, _)| *k != "code");
    let r = http.post(&token_url).form(&form).send().await?;
    assert_eq!(r.status(), 401);

    // The request_uri is spent too: a second use is refused on the error page.
    let r = Browser::new()
        .get(&authorize_url(&s.issuer, "fapi-web", &uri, ""))
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("invalid_request_uri"), "{}", r.body);
    let r = Browser::new()
        .get(&authorize_url(
            &s.issuer,
            "fapi-web",
            "urn:ietf:params:oauth:request_uri:made-up",
            "",
        ))
        .await?;
    assert!(
        r.status == 400 && r.body.contains("invalid_request_uri"),
        "{}",
        r.body
    );

    // Bound to its client: another client_id cannot use it, and leaves it usable.
    let (st, _, body) = push(&http, &s.issuer, &request("spa")).await?;
    assert_eq!(st, 201, "{body}");
    let spa_uri = body["request_uri"].as_str().unwrap().to_owned();
    let r = Browser::new()
        .get(&authorize_url(&s.issuer, "fapi-web", &spa_uri, ""))
        .await?;
    assert!(
        r.status == 400 && r.body.contains("another client"),
        "{}",
        r.body
    );
    let r = Browser::new()
        .get(&authorize_url(&s.issuer, "spa", &spa_uri, ""))
        .await?;
    assert_eq!(r.status, 302, "{}", r.body);
    assert!(r.location()?.path().ends_with("/login"));

    // Bad pushes: each answered as JSON with the standard error, never a redirect.
    let mut bad_redirect = request("spa");
    bad_redirect[3].1 = "https://attacker.example/cb".into();
    let mut bad_scope = request("spa");
    bad_scope[2].1 = "openid admin".into();
    let mut nested = request("spa");
    nested.push(("request_uri", uri.clone()));
    let mut no_pkce = request("spa");
    no_pkce.truncate(6);
    let mut other_id = with_assertion(request("fapi-web"), &key, "fapi-web", &par_url);
    other_id[0].1 = "spa".into();
    for (form, status, error) in [
        (bad_redirect, 400, "invalid_request"),
        (bad_scope, 400, "invalid_scope"),
        (nested, 400, "invalid_request"),
        (no_pkce, 400, "invalid_request"),
        (request("fapi-web"), 401, "invalid_client"),
        (other_id, 401, "invalid_client"),
    ] {
        let (st, _, body) = push(&http, &s.issuer, &form).await?;
        assert_eq!(
            (st, body["error"].as_str()),
            (status, Some(error)),
            "{form:?}: {body}"
        );
    }

    let r = http.get(&par_url).send().await?;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let body: Value = r.json().await?;
    assert_eq!(body["error"], "invalid_request");

    // Discovery.
    let d: Value = http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            s.issuer
        ))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(d["pushed_authorization_request_endpoint"], par_url);
    assert_eq!(d["require_pushed_authorization_requests"], false);
    Ok(())
}

/// `--require-pushed-authorization-requests`: every client must push; a public client
/// pushes with its client_id alone.
#[tokio::test]
async fn the_server_switch_requires_pushed_requests_from_every_client() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            extra_args: vec!["--require-pushed-authorization-requests".into()],
            ..ServeOptions::default()
        },
    )
    .await?;
    let key = ClientKeyPair::new(Algorithm::ES256, "fapi-key");
    setup_user_and_clients(&s, &key).await?;
    let mut plain = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer))?;
    for (k, v) in request("spa") {
        plain.query_pairs_mut().append_pair(k, &v);
    }
    let r = Browser::new().get(plain.as_str()).await?;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(params_of(&r.location()?, false)["error"], "invalid_request");
    let http = reqwest::Client::new();
    let (st, _, body) = push(&http, &s.issuer, &request("spa")).await?;
    assert_eq!(st, 201, "{body}");
    let uri = body["request_uri"].as_str().unwrap();
    let r = Browser::new()
        .sign_in(
            &authorize_url(&s.issuer, "spa", uri, ""),
            "pia",
            "pia's password 1",
        )
        .await?;
    assert!(params_of(&r.location()?, false).contains_key("code"));
    let d: Value = http
        .get(format!("{}/.well-known/openid-configuration", s.issuer))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(d["require_pushed_authorization_requests"], true);
    // The field reads back.
    let (_, c) = s.admin_call(Method::GET, "/Client/fapi-web", None).await?;
    assert_eq!(c["requirePushedAuthorization"], true);
    Ok(())
}

/// A request pushed at node 1 is used at node 2, once: the store is the cluster's.
#[tokio::test]
async fn a_request_uri_pushed_at_one_node_is_used_once_at_another() -> anyhow::Result<()> {
    use signet_tests::cluster::Cluster;
    use signet_tests::eventually;

    let c = Cluster::start(2).await?;
    let (st, b) = c
        .admin_call(
            0,
            Method::POST,
            "/Client",
            Some(&json!({
            "clientId": "spa", "allowedGrantTypes": ["authorization_code"],
            "requireClientSecret": false, "requirePushedAuthorization": true,
            "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile"]})),
        )
        .await?;
    assert_eq!(st, 201, "{b}");
    let uri = eventually(Duration::from_secs(10), || async {
        let (st, _, body) = push(&c.http, &c.issuers[1].public, &request("spa"))
            .await
            .ok()?;
        (st == 201).then(|| body["request_uri"].as_str().map(str::to_owned))?
    })
    .await?;
    // Pushed at node 2 (index 1), used at node 1, then refused at node 2.
    let r = Browser::new()
        .get(&authorize_url(&c.issuers[0].public, "spa", &uri, ""))
        .await?;
    assert_eq!(r.status, 302, "{}", r.body);
    assert!(r.location()?.path().ends_with("/login"));
    let r = Browser::new()
        .get(&authorize_url(&c.issuers[1].public, "spa", &uri, ""))
        .await?;
    assert!(
        r.status == 400 && r.body.contains("invalid_request_uri"),
        "{}",
        r.body
    );
    Ok(())
}
