//! Dynamic client registration (RFC 7591) and its management (RFC 7592) against the real
//! binary: initial access tokens from the admin API, a registration through the
//! `openidconnect` crate, the registered client getting tokens, read/update/delete with the
//! registration access token, the refusals, and a registration at one node of a cluster
//! used at another.

use anyhow::Context;
use openidconnect::core::{CoreClientRegistrationRequest, CoreGrantType};
use openidconnect::registration::EmptyAdditionalClientMetadata;
use openidconnect::{AccessToken, RegistrationUrl};
use reqwest::Method;
use serde_json::{json, Value};
use signet_core::secret::SecretDigest;
use signet_tests::cluster::Cluster;
use signet_tests::{eventually, Serve, ServeOptions};
use std::time::Duration;

const FLAG: &str = "--dynamic-client-registration";

async fn serve(dir: &std::path::Path) -> anyhow::Result<Serve> {
    Serve::start(
        dir,
        ServeOptions {
            extra_args: vec![FLAG.into()],
            ..Default::default()
        },
    )
    .await
}

/// A JSON request with an optional bearer token: (status, headers, body).
async fn call(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<(u16, reqwest::header::HeaderMap, Value)> {
    let mut req = http.request(method, url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await?;
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?
    };
    Ok((status, headers, body))
}

async fn orders_api(s: &Serve) -> anyhow::Result<()> {
    s.create("/Resource/ApiScope", json!({"name": "orders.read"}))
        .await?;
    s.create(
        "/Resource/ApiResource",
        json!({"name": "orders-api", "scopes": ["orders.read"]}),
    )
    .await?;
    Ok(())
}

/// `POST /admin/v1/InitialAccessToken`; answers (its id, its value).
async fn initial_access_token(s: &Serve, body: Value) -> anyhow::Result<(String, String)> {
    let created = s.create("/InitialAccessToken", body).await?;
    let id = created["id"].as_str().context("id")?.to_owned();
    let token = created["token"].as_str().context("token")?.to_owned();
    Ok((id, token))
}

#[tokio::test]
async fn a_backend_registers_itself_gets_tokens_and_manages_its_registration() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let s = serve(dir.path()).await?;
    orders_api(&s).await?;
    let d: Value = s
        .http()
        .get(format!("{}/.well-known/openid-configuration", s.issuer))
        .send()
        .await?
        .json()
        .await?;
    let endpoint = format!("{}/oauth2/register", s.issuer);
    assert_eq!(d["registration_endpoint"], endpoint.as_str());

    let (iat_id, iat) = initial_access_token(
        &s,
        json!({"description": "CI pipelines", "maxUses": 5,
            "allowedGrantTypes": ["client_credentials", "authorization_code"],
            "allowedScopes": ["orders.read"], "maxAccessTokenLifetime": 600}),
    )
    .await?;
    assert!(iat.starts_with(&format!("{iat_id}.")));
    // Reads never show the value or its hash.
    let (status, listed) = s
        .admin_call(Method::GET, "/InitialAccessToken", None)
        .await?;
    assert_eq!(status, 200);
    let text = listed.to_string();
    assert!(!text.contains(&iat) && !text.contains(&SecretDigest::of(&iat).to_b64url()));
    assert_eq!(listed[0]["id"], iat_id.as_str());
    assert_eq!(listed[0]["uses"], 0);
    assert_eq!(listed[0]["maxUses"], 5);

    // The registration, through a maintained client library.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let registered = CoreClientRegistrationRequest::new(vec![], EmptyAdditionalClientMetadata {})
        .set_grant_types(Some(vec![CoreGrantType::ClientCredentials]))
        .set_initial_access_token(Some(AccessToken::new(iat.clone())))
        .register_async(&RegistrationUrl::new(endpoint.clone())?, &http)
        .await
        .map_err(|e| anyhow::anyhow!("registration failed: {e:?}"))?;
    let client_id = registered.client_id().to_string();
    let secret = registered
        .client_secret()
        .context("a confidential client gets a secret")?
        .secret()
        .clone();
    let rat = registered
        .registration_access_token()
        .context("registration_access_token")?
        .secret()
        .clone();
    let config_uri = registered
        .registration_client_uri()
        .context("registration_client_uri")?
        .to_string();
    assert_eq!(config_uri, format!("{endpoint}/{client_id}"));
    assert!(registered.client_id_issued_at().is_some());
    assert_eq!(
        registered.client_secret_expires_at().map(|t| t.timestamp()),
        Some(0)
    );

    // The client works: client_credentials with the issued secret, under the token's cap.
    let (status, _, body) = s
        .token_request(
            Some((&client_id, &secret)),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "orders.read"),
            ],
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 600);
    let claims = signet_tests::verify_jwt(
        body["access_token"].as_str().context("access_token")?,
        &s.jwks().await?,
        &s.issuer,
        "orders-api",
    )?;
    assert_eq!(claims["client_id"], client_id.as_str());

    // RFC 7592 read: the metadata, no credential.
    let (status, headers, read) = call(&http, Method::GET, &config_uri, Some(&rat), None).await?;
    assert_eq!(status, 200, "{read}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(read["client_id"], client_id.as_str());
    assert_eq!(read["grant_types"], json!(["client_credentials"]));
    assert_eq!(read["scope"], "orders.read");
    assert_eq!(read["token_endpoint_auth_method"], "client_secret_basic");
    assert!(read.get("client_secret").is_none() && read.get("registration_access_token").is_none());
    // Another token, or the initial access token, is not this client's.
    for wrong in [iat.as_str(), "not-the-token", &secret] {
        let (status, headers, body) =
            call(&http, Method::GET, &config_uri, Some(wrong), None).await?;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_token");
        assert!(headers["www-authenticate"].to_str()?.starts_with("Bearer"));
    }
    let (status, _, _) = call(&http, Method::GET, &config_uri, None, None).await?;
    assert_eq!(status, 401);

    // RFC 7592 update: new metadata, same secret (kept), a wrong client_secret refused.
    let update = json!({"client_id": client_id, "grant_types": ["client_credentials"],
        "client_name": "Nightly export", "scope": "orders.read",
        "token_endpoint_auth_method": "client_secret_post"});
    let (status, _, updated) =
        call(&http, Method::PUT, &config_uri, Some(&rat), Some(&update)).await?;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["client_name"], "Nightly export");
    assert_eq!(updated["token_endpoint_auth_method"], "client_secret_post");
    assert!(updated.get("client_secret").is_none(), "the secret is kept");
    let mut wrong = update.clone();
    wrong["client_secret"] = json!("not-the-secret-at-all");
    let (status, _, body) = call(&http, Method::PUT, &config_uri, Some(&rat), Some(&wrong)).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client_metadata"))
    );
    let mut widen = update.clone();
    widen["grant_types"] = json!(["urn:ietf:params:oauth:grant-type:device_code"]);
    let (status, _, body) = call(&http, Method::PUT, &config_uri, Some(&rat), Some(&widen)).await?;
    assert_eq!(
        status, 400,
        "an update stays under the token's policy: {body}"
    );
    let (status, _, body) = s
        .token_request(
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", &secret),
                ("scope", "orders.read"),
            ],
        )
        .await?;
    assert_eq!(status, 200, "the kept secret still works: {body}");

    // Racing updates: each is applied or answered 409, never a 5xx.
    let racers = (0..8).map(|i| {
        let mut body = update.clone();
        body["client_name"] = json!(format!("racer {i}"));
        let (http, uri, rat) = (http.clone(), config_uri.clone(), rat.clone());
        async move { call(&http, Method::PUT, &uri, Some(&rat), Some(&body)).await }
    });
    let mut applied = 0;
    for r in futures::future::join_all(racers).await {
        let (status, _, body) = r?;
        assert!(status == 200 || status == 409, "{status} {body}");
        applied += usize::from(status == 200);
    }
    assert!(applied >= 1);

    // The audit trail: the registration is an event whose actor is the initial access
    // token, with every secret redacted.
    let (_, events) = s.admin_call(Method::GET, "/Events", None).await?;
    let text = events.to_string();
    for secret in [iat.as_str(), &secret, &rat] {
        assert!(!text.contains(secret));
        assert!(!text.contains(&SecretDigest::of(secret).to_b64url()));
    }
    let list = events["events"].as_array().context("events")?;
    let reg = list
        .iter()
        .find(|e| e["id"] == client_id.as_str() && e["change"] == "registered")
        .with_context(|| format!("no registration event in {text}"))?;
    assert_eq!(reg["actor"], format!("initial_access_token:{iat_id}"));
    assert_eq!(reg["data"]["registration"]["tokenSha256"], "[redacted]");
    let (_, one) = s
        .admin_call(Method::GET, &format!("/InitialAccessToken/{iat_id}"), None)
        .await?;
    assert_eq!(one["uses"], 1);

    // RFC 7592 delete: 204, the client is gone and its tokens with it.
    let (status, _, _) = call(&http, Method::DELETE, &config_uri, Some(&rat), None).await?;
    assert_eq!(status, 204);
    let (status, _, _) = s
        .token_request(
            Some((&client_id, &secret)),
            &[("grant_type", "client_credentials")],
        )
        .await?;
    assert_eq!(status, 401);
    let (status, _, _) = call(&http, Method::GET, &config_uri, Some(&rat), None).await?;
    assert_eq!(status, 401);
    let (status, _) = s
        .admin_call(Method::GET, &format!("/Client/{client_id}"), None)
        .await?;
    assert_eq!(status, 404);

    // An admin-created client has no registration access token to manage it with.
    s.create(
        "/Client",
        json!({"clientId": "admin-made", "allowedGrantTypes": ["client_credentials"],
            "clientSecrets": [{"value": "admin-made-secret-0123"}], "allowedScopes": ["orders.read"]}),
    )
    .await?;
    let (status, _, _) = call(
        &http,
        Method::GET,
        &format!("{endpoint}/admin-made"),
        Some(&rat),
        None,
    )
    .await?;
    assert_eq!(status, 401);

    // Deleting the initial access token ends registrations with it.
    let (status, _) = s
        .admin_call(
            Method::DELETE,
            &format!("/InitialAccessToken/{iat_id}"),
            None,
        )
        .await?;
    assert_eq!(status, 204);
    let body = json!({"grant_types": ["client_credentials"]});
    let (status, _, _) = call(&http, Method::POST, &endpoint, Some(&iat), Some(&body)).await?;
    assert_eq!(status, 401);
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn registrations_that_break_the_rules_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = serve(dir.path()).await?;
    orders_api(&s).await?;
    let http = s.http().clone();
    let endpoint = format!("{}/oauth2/register", s.issuer);
    let (_, iat) = initial_access_token(
        &s,
        json!({"allowedGrantTypes": ["authorization_code", "refresh_token"],
            "allowedScopes": ["openid", "orders.read", "offline_access"],
            "redirectUriPatterns": ["https://*.example.com/*", "http://127.0.0.1/*"],
            "allowPublicClients": true}),
    )
    .await?;
    let web = |uri: &str| json!({"redirect_uris": [uri]});
    for (body, error) in [
        (web("javascript:alert(1)"), "invalid_redirect_uri"),
        (web("data:text/html,hi"), "invalid_redirect_uri"),
        (web("http://app.example.com/cb"), "invalid_redirect_uri"),
        (web("https://app.example.com/cb#x"), "invalid_redirect_uri"),
        (web("https://app.other.org/cb"), "invalid_redirect_uri"),
        (web("http://127.0.0.1/cb"), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["https://app.example.com/cb"], "grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example.com/cb"], "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example.com/cb"], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example.com/cb"], "scope": "signet.admin"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example.com/cb"], "token_endpoint_auth_method": "tls_client_auth"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example.com/cb"], "jwks_uri": "https://app.example.com/jwks"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example.com/cb"], "client_id": "chosen"}),
            "invalid_client_metadata",
        ),
        (json!(["not", "an", "object"]), "invalid_client_metadata"),
        (
            json!({"redirect_uris": ["https://app.example.com/cb"], "client_name": "x".repeat(70_000)}),
            "invalid_client_metadata",
        ),
    ] {
        let (status, headers, answer) =
            call(&http, Method::POST, &endpoint, Some(&iat), Some(&body)).await?;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"], error, "{body}: {answer}");
        assert!(answer["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()));
        assert_eq!(headers["cache-control"], "no-store");
    }
    // What the policy allows is registered: a native app on loopback, and a web app with
    // refresh tokens; unknown metadata is ignored and not echoed.
    let mut flows = Vec::new();
    for body in [
        json!({"application_type": "native", "redirect_uris": ["http://127.0.0.1/cb"],
            "token_endpoint_auth_method": "none", "software_version": "1.2"}),
        json!({"redirect_uris": ["https://app.example.com/cb"],
            "grant_types": ["authorization_code", "refresh_token"], "scope": "openid offline_access"}),
    ] {
        let (status, _, answer) =
            call(&http, Method::POST, &endpoint, Some(&iat), Some(&body)).await?;
        assert_eq!(status, 201, "{body}: {answer}");
        assert!(answer.get("software_version").is_none());
        let client_id = answer["client_id"].as_str().context("client_id")?;
        let (status, client) = s
            .admin_call(Method::GET, &format!("/Client/{client_id}"), None)
            .await?;
        assert_eq!(status, 200);
        if body["token_endpoint_auth_method"] == "none" {
            assert_eq!(client["requireClientSecret"], false);
            assert!(answer.get("client_secret").is_none());
        } else {
            assert_eq!(client["allowOfflineAccess"], true);
            assert!(answer["client_secret"].is_string());
        }
        flows.push((
            client_id.to_owned(),
            answer["client_secret"].as_str().map(str::to_owned),
            body["redirect_uris"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            body["scope"].as_str().unwrap_or("openid").to_owned(),
        ));
    }
    // Both sign a user in with the authorization code flow (PKCE).
    s.create(
        "/User",
        json!({"username": "reggie", "password": "registration-password-1", "claims": {}}),
    )
    .await?;
    for (client_id, secret, redirect, scope) in &flows {
        let tokens = signet_tests::browser::code_flow(
            &s.issuer,
            &s.issuer,
            client_id,
            secret.as_deref(),
            redirect,
            scope,
            "reggie",
            "registration-password-1",
        )
        .await?;
        assert!(tokens["id_token"].is_string(), "{tokens}");
        assert_eq!(
            tokens.get("refresh_token").is_some(),
            scope.contains("offline_access"),
            "{tokens}"
        );
    }

    // Bad tokens: none, unknown, forged with a known id, an admin access token.
    let body = web("https://app.example.com/cb");
    let forged = format!("{}.AAAA", iat.rsplit_once('.').context("dot")?.0);
    let admin = s.admin_token().await?;
    for token in [
        None,
        Some("nope"),
        Some(forged.as_str()),
        Some(admin.as_str()),
    ] {
        let (status, headers, answer) =
            call(&http, Method::POST, &endpoint, token, Some(&body)).await?;
        assert_eq!(status, 401, "{token:?}: {answer}");
        assert_eq!(answer["error"], "invalid_token");
        assert!(headers.contains_key("www-authenticate"));
    }

    // maxUses 1: the second registration is refused, and a refused body used nothing.
    let (_, once) = initial_access_token(&s, json!({"maxUses": 1})).await?;
    let (status, _, _) = call(
        &http,
        Method::POST,
        &endpoint,
        Some(&once),
        Some(&web("javascript:x")),
    )
    .await?;
    assert_eq!(status, 400);
    let (status, _, answer) =
        call(&http, Method::POST, &endpoint, Some(&once), Some(&body)).await?;
    assert_eq!(status, 201, "{answer}");
    let (status, _, answer) =
        call(&http, Method::POST, &endpoint, Some(&once), Some(&body)).await?;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("invalid_token")),
        "{answer}"
    );

    // An expired token: a one-second lifetime, polled (with a body it would refuse) until
    // the refusal is the token's.
    let (_, short) = initial_access_token(&s, json!({"lifetime": 1})).await?;
    let bad_body = web("javascript:x");
    let answer = eventually(Duration::from_secs(5), || async {
        let (status, _, answer) = call(
            &http,
            Method::POST,
            &endpoint,
            Some(&short),
            Some(&bad_body),
        )
        .await
        .ok()?;
        (status == 401).then_some(answer)
    })
    .await?;
    assert_eq!(answer["error"], "invalid_token");
    assert!(answer["error_description"]
        .as_str()
        .unwrap_or("")
        .contains("expired"));

    // Every answer is counted by outcome.
    let metrics = s
        .http()
        .get(format!("{}/metrics", s.issuer))
        .send()
        .await?
        .text()
        .await?;
    for outcome in [
        "registered",
        "invalid_token",
        "invalid_redirect_uri",
        "invalid_client_metadata",
    ] {
        assert!(
            metrics.contains(&format!(
                "signet_client_registrations_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome}: {metrics}"
        );
    }

    // The admin API refuses bad initial access token bodies naming the field.
    for (body, field) in [
        (json!({"bogus": 1}), "bogus"),
        (json!([null, null]), "body"),
        (json!({"maxUses": 0}), "maxUses"),
        (
            json!({"allowedScopes": ["no.such.scope"]}),
            "allowedScopes[0]",
        ),
        (
            json!({"allowedGrantTypes": ["password"]}),
            "allowedGrantTypes[0]",
        ),
        (
            json!({"redirectUriPatterns": ["*"]}),
            "redirectUriPatterns[0]",
        ),
        (
            json!({"lifetime": 1, "expiresAt": "2099-01-01T00:00:00Z"}),
            "lifetime",
        ),
    ] {
        let (status, answer) = s
            .admin_call(Method::POST, "/InitialAccessToken", Some(&body))
            .await?;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["field"].as_str().is_some_and(|f| f.contains(field)),
            "{body}: {answer}"
        );
    }
    // The admin API's status codes, in order: a second create is 409, a missing token 404,
    // a replacement without an id or with a bad field a 400 naming it.
    for (method, path, body, want, field) in [
        (
            Method::POST,
            "/InitialAccessToken",
            Some(json!({"id": "fixed"})),
            201,
            None,
        ),
        (
            Method::POST,
            "/InitialAccessToken",
            Some(json!({"id": "fixed"})),
            409,
            None,
        ),
        (Method::GET, "/InitialAccessToken/missing", None, 404, None),
        (
            Method::PUT,
            "/InitialAccessToken",
            Some(json!({"id": "missing"})),
            404,
            None,
        ),
        (
            Method::PUT,
            "/InitialAccessToken",
            Some(json!({"description": "no id"})),
            400,
            Some("id"),
        ),
        (
            Method::PUT,
            "/InitialAccessToken",
            Some(json!({"id": "fixed", "maxUses": 0})),
            400,
            Some("maxUses"),
        ),
    ] {
        let (status, answer) = s.admin_call(method.clone(), path, body.as_ref()).await?;
        assert_eq!(status, want, "{method} {path} {body:?}: {answer}");
        if let Some(field) = field {
            assert_eq!(answer["field"].as_str(), Some(field), "{answer}");
        }
    }
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn registration_is_off_by_default() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let d: Value = s
        .http()
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            s.issuer
        ))
        .send()
        .await?
        .json()
        .await?;
    assert!(d.get("registration_endpoint").is_none(), "{d}");
    let (_, iat) = initial_access_token(&s, json!({})).await?;
    for (method, path) in [
        (Method::POST, ""),
        (Method::GET, "/x"),
        (Method::DELETE, "/x"),
    ] {
        let (status, _, _) = call(
            s.http(),
            method,
            &format!("{}/oauth2/register{path}", s.issuer),
            Some(&iat),
            Some(&json!({"redirect_uris": ["https://a.example/cb"]})),
        )
        .await?;
        assert_eq!(status, 404);
    }
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_registration_at_one_node_works_at_another_and_uses_are_counted_across_nodes(
) -> anyhow::Result<()> {
    let c = Cluster::start_with(2, vec![FLAG.into()]).await?;
    let (status, _) = c
        .admin_call(
            0,
            Method::POST,
            "/Resource/ApiScope",
            Some(&json!({"name": "jobs.run"})),
        )
        .await?;
    assert_eq!(status, 201);
    let (status, created) = c
        .admin_call(
            0,
            Method::POST,
            "/InitialAccessToken",
            Some(
                &json!({"maxUses": 1, "allowedGrantTypes": ["client_credentials"],
                "allowedScopes": ["jobs.run"]}),
            ),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let iat = created["token"].as_str().context("token")?.to_owned();
    let body = json!({"grant_types": ["client_credentials"]});
    // The token reaches node 2 through the event log.
    eventually(Duration::from_secs(10), || async {
        let (status, listed) = c
            .admin_call(1, Method::GET, "/InitialAccessToken", None)
            .await
            .ok()?;
        (status == 200 && listed.as_array().is_some_and(|l| l.len() == 1)).then_some(())
    })
    .await?;
    // Both nodes at once with a one-use token: exactly one registration.
    let register = |i: usize| {
        let url = format!("{}/oauth2/register", c.issuers[i].public);
        let (http, iat, body) = (c.http.clone(), iat.clone(), body.clone());
        async move { call(&http, Method::POST, &url, Some(&iat), Some(&body)).await }
    };
    let (a, b) = tokio::join!(register(0), register(1));
    let (a, b) = (a?, b?);
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 401], "{} / {}", a.2, b.2);
    let registered = if a.0 == 201 { a.2 } else { b.2 };
    let client_id = registered["client_id"]
        .as_str()
        .context("client_id")?
        .to_owned();
    let secret = registered["client_secret"]
        .as_str()
        .context("secret")?
        .to_owned();
    // The client gets tokens at both nodes.
    for i in 0..2 {
        eventually(Duration::from_secs(10), || async {
            let (status, _) = c
                .token(i, &client_id, &secret, Some("jobs.run"))
                .await
                .ok()?;
            (status == 200).then_some(())
        })
        .await
        .with_context(|| format!("the registered client at node {i}"))?;
    }
    // Managed at the other node too.
    let rat = registered["registration_access_token"]
        .as_str()
        .context("rat")?;
    let other = c
        .issuers
        .iter()
        .map(|n| n.public.clone())
        .collect::<Vec<_>>();
    for node in &other {
        let url = format!("{node}/oauth2/register/{client_id}");
        let (status, _, answer) = call(&c.http, Method::GET, &url, Some(rat), None).await?;
        assert_eq!(status, 200, "{answer}");
    }
    Ok(())
}

/// The token a `signet admin` run printed (`token: VALUE  (shown once...)`).
fn printed_token(stdout: &str) -> Option<String> {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("token: "))?;
    Some(
        line.trim_start()["token: ".len()..]
            .split_whitespace()
            .next()?
            .to_owned(),
    )
}

#[tokio::test]
async fn signet_admin_and_the_openapi_document_cover_initial_access_tokens() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = serve(dir.path()).await?;
    let admin = crate::admin_cli::Admin::for_node(&s);
    let file = dir.path().join("objects.yaml");
    let objects = "\
- kind: ApiScope
  spec: {name: jobs.run}
- kind: InitialAccessToken
  spec: {id: ci, description: CI runners, maxUses: 2, lifetime: 3600,
         allowedGrantTypes: [client_credentials], allowedScopes: [jobs.run]}
";
    std::fs::write(&file, objects)?;
    let out = admin
        .run(&["apply", "-f", file.to_str().context("path")?])
        .await;
    let token = printed_token(out.ok()).with_context(|| format!("no token in {out:?}"))?;
    // The printed token registers a client.
    let endpoint = format!("{}/oauth2/register", s.issuer);
    let body = json!({"grant_types": ["client_credentials"]});
    let (status, _, answer) =
        call(s.http(), Method::POST, &endpoint, Some(&token), Some(&body)).await?;
    assert_eq!(status, 201, "{answer}");
    // Applying again changes nothing and prints no token; a change replaces the token,
    // which keeps its value and its uses.
    let out = admin
        .run(&["apply", "-f", file.to_str().context("path")?])
        .await;
    assert!(printed_token(out.ok()).is_none(), "{out:?}");
    std::fs::write(&file, objects.replace("maxUses: 2", "maxUses: 3"))?;
    let out = admin
        .run(&["apply", "-f", file.to_str().context("path")?])
        .await;
    assert!(printed_token(out.ok()).is_none(), "{out:?}");
    assert!(
        out.stdout.contains("maxUses"),
        "the diff names the field: {out:?}"
    );
    let out = admin.run(&["initial-access-token", "list"]).await;
    assert!(
        out.ok().contains("ci") && out.stdout.contains("CI runners"),
        "{out:?}"
    );
    let out = admin
        .run(&["initial-access-token", "get", "ci", "-o", "json"])
        .await;
    let shown: Value = serde_json::from_str(out.ok())?;
    assert_eq!(
        (shown["uses"].as_u64(), shown["maxUses"].as_u64()),
        (Some(1), Some(3))
    );
    let (status, _, answer) =
        call(s.http(), Method::POST, &endpoint, Some(&token), Some(&body)).await?;
    assert_eq!(status, 201, "the replaced token keeps its value: {answer}");
    assert!(shown.get("token").is_none() && !out.stdout.contains(&token));
    let one = dir.path().join("one.json");
    std::fs::write(
        &one,
        r#"{"id": "nightly", "allowedGrantTypes": ["client_credentials"], "allowedScopes": ["jobs.run"]}"#,
    )?;
    let out = admin
        .run(&[
            "initial-access-token",
            "create",
            "-f",
            one.to_str().context("path")?,
        ])
        .await;
    let second = printed_token(out.ok()).with_context(|| format!("{out:?}"))?;
    assert!(second.starts_with("nightly."));
    std::fs::write(
        &one,
        r#"{"id": "nightly", "description": "renamed", "allowedScopes": ["jobs.run"]}"#,
    )?;
    let out = admin
        .run(&[
            "initial-access-token",
            "update",
            "-f",
            one.to_str().context("path")?,
        ])
        .await;
    out.ok();
    let (_, nightly) = s
        .admin_call(Method::GET, "/InitialAccessToken/nightly", None)
        .await?;
    assert_eq!(nightly["description"], "renamed");
    assert_eq!(
        nightly["allowedGrantTypes"],
        json!(["authorization_code"]),
        "replaced, defaults and all"
    );
    std::fs::write(&one, r#"{"id": "bad", "maxUses": 0}"#)?;
    let out = admin
        .run(&[
            "initial-access-token",
            "create",
            "-f",
            one.to_str().context("path")?,
        ])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("maxUses"), "{out:?}");
    admin
        .run(&["initial-access-token", "delete", "ci"])
        .await
        .ok();
    let out = admin.run(&["initial-access-token", "get", "ci"]).await;
    out.one_line(5);

    // The OpenAPI document describes the resource.
    let doc: Value = s
        .http()
        .get(format!("{}/openapi.json", s.admin))
        .send()
        .await?
        .json()
        .await?;
    let paths = &doc["paths"];
    for (path, methods) in [
        ("/admin/v1/InitialAccessToken", &["get", "post", "put"][..]),
        ("/admin/v1/InitialAccessToken/{id}", &["get", "delete"][..]),
    ] {
        for m in methods {
            assert!(paths[path].get(*m).is_some(), "{path} {m}: {paths}");
        }
    }
    let schema = &doc["components"]["schemas"]["InitialAccessTokenInput"]["properties"];
    for field in [
        "maxUses",
        "redirectUriPatterns",
        "allowPublicClients",
        "maxAccessTokenLifetime",
    ] {
        assert!(schema.get(field).is_some(), "{field}: {schema}");
    }
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn software_statements_from_a_trusted_key_override_the_metadata() -> anyhow::Result<()> {
    use crate::high_security::{assertion_form, claims, ClientKeyPair};
    use signet_jose::Algorithm;
    let dir = tempfile::tempdir()?;
    let vendor = ClientKeyPair::new(Algorithm::ES256, "vendor-1");
    let jwks = dir.path().join("vendors.jwks");
    std::fs::write(
        &jwks,
        json!({"keys": [serde_json::from_str::<Value>(&vendor.public_jwk())?]}).to_string(),
    )?;
    let s = Serve::start(
        &dir.path().join("data"),
        ServeOptions {
            extra_args: vec![
                FLAG.into(),
                "--registration-software-statement-jwks".into(),
                jwks.to_str().context("path")?.into(),
            ],
            ..Default::default()
        },
    )
    .await?;
    orders_api(&s).await?;
    let (_, iat) = initial_access_token(
        &s,
        json!({"allowedGrantTypes": ["client_credentials"], "allowedScopes": ["orders.read"]}),
    )
    .await?;
    let endpoint = format!("{}/oauth2/register", s.issuer);
    // The client's own key, for private_key_jwt, comes inside the signed statement.
    let client_key = ClientKeyPair::new(Algorithm::EdDSA, "app-key");
    let statement = vendor.sign(&json!({
        "iss": "https://vendor.example", "client_name": "Signed Name",
        "grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [serde_json::from_str::<Value>(&client_key.public_jwk())?]},
        "exp": crate::high_security::now() + 300,
    }));
    let body = json!({"client_name": "Plain Name", "token_endpoint_auth_method": "client_secret_basic",
        "software_statement": statement});
    let (status, _, answer) =
        call(s.http(), Method::POST, &endpoint, Some(&iat), Some(&body)).await?;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["client_name"], "Signed Name");
    assert_eq!(answer["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(answer["software_statement_iss"], "https://vendor.example");
    assert!(answer.get("client_secret").is_none(), "{answer}");
    assert_eq!(answer["jwks"]["keys"][0]["kid"], "app-key");
    let client_id = answer["client_id"].as_str().context("client_id")?;
    let assertion = client_key.sign(&claims(client_id, &s.issuer));
    let (status, _, token) = s
        .token_request(None, &assertion_form(&assertion, "orders.read"))
        .await?;
    assert_eq!(
        status, 200,
        "the registered key authenticates the client: {token}"
    );
    // client_secret_jwt: the issued secret keys the client's HMAC assertions.
    let body = json!({"grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_jwt"});
    let (status, _, answer) =
        call(s.http(), Method::POST, &endpoint, Some(&iat), Some(&body)).await?;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["token_endpoint_auth_method"], "client_secret_jwt");
    let secret = answer["client_secret"].as_str().context("client_secret")?;
    let hmac_id = answer["client_id"].as_str().context("client_id")?;
    let assertion = crate::high_security::hmac_sign(
        jsonwebtoken::Algorithm::HS256,
        secret,
        &claims(hmac_id, &s.issuer),
    );
    let (status, _, token) = s
        .token_request(None, &assertion_form(&assertion, "orders.read"))
        .await?;
    assert_eq!(status, 200, "client_secret_jwt after registration: {token}");

    // A statement signed by another key, an HMAC one, or an expired one is refused.
    let stranger = ClientKeyPair::new(Algorithm::ES256, "vendor-1");
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let hmac = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iss": "https://vendor.example"}),
        &jsonwebtoken::EncodingKey::from_secret(vendor.public_jwk().as_bytes()),
    )?;
    for bad in [
        stranger.sign(&json!({"iss": "https://vendor.example"})),
        hmac,
        vendor.sign(&json!({"iss": "https://vendor.example", "exp": 1})),
        vendor.sign(&json!({"client_name": "no issuer"})),
        "not-a-jwt".to_owned(),
    ] {
        let body = json!({"grant_types": ["client_credentials"], "software_statement": bad});
        let (status, _, answer) =
            call(s.http(), Method::POST, &endpoint, Some(&iat), Some(&body)).await?;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"], "invalid_software_statement", "{answer}");
    }
    s.stop().await?;
    Ok(())
}
