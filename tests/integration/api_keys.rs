//! API keys: a signed-in user makes keys on `/account/api-keys` (the HTML page and its JSON
//! API), a key is accepted through introspection and exchanged for a short-lived JWT (RFC
//! 8693), and revoking it stops the key and what was exchanged for it.

use anyhow::Context;
use serde_json::{json, Value};
use signet_tests::browser::Browser;
use signet_tests::{Serve, ServeOptions};

const PASSWORD: &str = "hana's password 12";
const API_SECRET: &str = "orders-api-secret-0123456789";
const EXCHANGER: &str = "exchanger-secret-0123456789";

async fn introspect(s: &Serve, token: &str) -> anyhow::Result<Value> {
    s.introspect(("orders-api", API_SECRET), token).await
}

async fn exchange(s: &Serve, key: &str) -> anyhow::Result<(u16, Value)> {
    let (status, _, body) = s
        .token_request(
            Some(("exchanger", EXCHANGER)),
            &[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", key),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
            ],
        )
        .await?;
    Ok((status, body))
}

fn new_key(page: &str) -> anyhow::Result<String> {
    let start = page
        .find("<code id=\"new-key\">")
        .context("no new key shown")?
        + 19;
    let end = page[start..].find("</code>").context("unterminated")?;
    Ok(page[start..start + end].to_owned())
}

#[tokio::test]
async fn users_make_use_and_revoke_api_keys() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    s.create(
        "/User",
        json!({"username": "hana", "password": PASSWORD, "claims": {}}),
    )
    .await?;
    // The operator makes the scope available for users' keys.
    s.create(
        "/Resource/ApiScope",
        json!({"name": "orders.read", "properties": {"signet:apiKeys": "true"}}),
    )
    .await?;
    s.create(
        "/Resource/ApiResource",
        json!({"name": "orders-api", "scopes": ["orders.read"], "apiSecrets": [{"value": API_SECRET}]}),
    )
    .await?;
    s.create(
        "/Client",
        json!({"clientId": "exchanger",
            "allowedGrantTypes": ["urn:ietf:params:oauth:grant-type:token-exchange"],
            "clientSecrets": [{"value": EXCHANGER}], "allowedScopes": ["orders.read"]}),
    )
    .await?;

    // Not signed in: the JSON API says 401; the page sends the browser to the login page
    // and back.
    let mut b = Browser::new();
    let r = b
        .get(&format!("{}/account/api-keys/keys", s.issuer))
        .await?;
    assert_eq!(r.status, 401);
    let back = b
        .sign_in(&format!("{}/account/api-keys", s.issuer), "hana", PASSWORD)
        .await?;
    assert_eq!(back.status, 302, "{}", back.body);
    assert!(back.location()?.path().ends_with("/account/api-keys"));
    let page = b.get(back.location()?.as_str()).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.hidden("csrf")?;
    let action = format!("{}/account/api-keys", s.issuer);

    // Make a key with the form: shown once.
    let forged = b
        .post_form(
            &action,
            &[
                ("csrf", "forged"),
                ("name", "ci"),
                ("scopes", "orders.read"),
            ],
        )
        .await?;
    assert_eq!(forged.status, 403);
    let made = b
        .post_form(
            &action,
            &[
                ("csrf", &csrf),
                ("name", "ci"),
                ("scopes", "orders.read"),
                ("lifetimeDays", "30"),
            ],
        )
        .await?;
    assert_eq!(made.status, 200, "{}", made.body);
    let key = new_key(&made.body)?;
    assert!(key.starts_with("sgk_"), "{key}");
    let again = b.get(&action).await?;
    assert!(!again.body.contains(&key), "shown only once");
    assert!(again.body.contains("ci"));
    // Bad input names the problem.
    let bad = b
        .post_form(
            &action,
            &[("csrf", &csrf), ("name", "x"), ("scopes", "no.such.scope")],
        )
        .await?;
    assert_eq!(bad.status, 400);

    // Introspection accepts it for the API it is meant for.
    let i = introspect(&s, &key).await?;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["token_kind"], "api_key");
    assert_eq!(i["scope"], "orders.read");
    assert_eq!(
        introspect(&s, &format!("{}x", &key[..key.len() - 1])).await?["active"],
        false
    );

    // Token exchange: a JWT for hana, for the API.
    let (status, t) = exchange(&s, &key).await?;
    assert_eq!(status, 200, "{t}");
    assert_eq!(
        t["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    let jwt = t["access_token"]
        .as_str()
        .context("access_token")?
        .to_owned();
    let claims = signet_tests::verify_jwt(&jwt, &s.jwks().await?, &s.issuer, "orders-api")?;
    assert_eq!(claims["sub"], i["sub"]);
    assert_eq!(introspect(&s, &jwt).await?["active"], true);

    // The JSON API: list, make (CSRF header required), revoke.
    let http = reqwest::Client::new();
    let cookie = b
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let list: Value = http
        .get(format!("{}/account/api-keys/keys", s.issuer))
        .header("cookie", &cookie)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(list["keys"].as_array().map(Vec::len), Some(1), "{list}");
    let json_csrf = list["csrf"].as_str().context("csrf")?.to_owned();
    let r = http
        .post(format!("{}/account/api-keys/keys", s.issuer))
        .header("cookie", &cookie)
        .json(&json!({"name": "script", "scopes": ["orders.read"]}))
        .send()
        .await?;
    assert_eq!(r.status(), 403, "no CSRF header");
    let r = http
        .post(format!("{}/account/api-keys/keys", s.issuer))
        .header("cookie", &cookie)
        .header("x-csrf-token", &json_csrf)
        .json(&json!({"name": "script", "scopes": ["orders.read"], "lifetimeDays": 0}))
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await?;
    assert_eq!(body["field"], "lifetimeDays", "{body}");
    let r = http
        .post(format!("{}/account/api-keys/keys", s.issuer))
        .header("cookie", &cookie)
        .header("x-csrf-token", &json_csrf)
        .json(&json!({"name": "script", "scopes": ["orders.read"]}))
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let second: Value = r.json().await?;
    let second_key = second["key"].as_str().context("key")?.to_owned();
    assert_eq!(introspect(&s, &second_key).await?["active"], true);
    let r = http
        .delete(format!(
            "{}/account/api-keys/keys/{}",
            s.issuer,
            second["id"].as_str().unwrap()
        ))
        .header("cookie", &cookie)
        .header("x-csrf-token", &json_csrf)
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    assert_eq!(introspect(&s, &second_key).await?["active"], false);

    // A resource server on `libs/verify` (its example, introspecting opaque tokens as the
    // API): the live key works, the revoked one does not.
    let example = signet_tests::signet_bin()
        .parent()
        .map(|d| d.join("examples/resource_server"))
        .context("no target dir")?;
    let port = signet_tests::free_port();
    let _rs = tokio::process::Command::new(&example)
        .args(["--issuer", &s.issuer, "--audience", "orders-api"])
        .args(["--introspection-secret", API_SECRET])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("SIGNET_ISSUER")
        .env_remove("SIGNET_NATS_URL")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("run {} (cargo test builds it)", example.display()))?;
    let rs = format!("http://127.0.0.1:{port}");
    signet_tests::eventually(std::time::Duration::from_secs(20), || async {
        let r = http.get(format!("{rs}/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await?;
    let orders = |token: String| {
        let req = http.get(format!("{rs}/orders")).bearer_auth(token);
        async move { anyhow::Ok(req.send().await?.status().as_u16()) }
    };
    assert_eq!(orders(key.clone()).await?, 200);
    assert_eq!(orders(second_key.clone()).await?, 401);

    // Revoke the first with the page's form: the key and the JWT it was exchanged for stop.
    let id = i["jti"].as_str().context("jti")?.to_owned();
    let r = b
        .post_form(&format!("{action}/{id}/revoke"), &[("csrf", &csrf)])
        .await?;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(introspect(&s, &key).await?["active"], false);
    assert_eq!(introspect(&s, &jwt).await?["active"], false);
    let (status, body) = exchange(&s, &key).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Another user's key id cannot be revoked by hana: 404.
    let r = b
        .post_form(
            &format!("{action}/{}/revoke", "A".repeat(22)),
            &[("csrf", &csrf)],
        )
        .await?;
    assert_eq!(r.status, 404);
    Ok(())
}
