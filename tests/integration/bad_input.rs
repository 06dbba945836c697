//! Bad input gets the right status and a standard body, never a panic or a 500, and a
//! failed request writes nothing. RFC 6749 section 5.2 on the token endpoint (401 with
//! `WWW-Authenticate`), a JSON body naming the field on the admin API.

use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::{Serve, ServeOptions};

async fn raw_token(
    s: &Serve,
    content_type: Option<&str>,
    body: Vec<u8>,
    basic: Option<(&str, &str)>,
) -> anyhow::Result<(u16, reqwest::header::HeaderMap, Value)> {
    let mut req = s
        .http()
        .post(format!("{}/oauth2/token", s.issuer))
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    Ok((status, headers, resp.json().await?))
}

fn assert_error(status: u16, body: &Value, want_status: u16, want: &str) {
    assert_eq!(
        (status, body["error"].as_str()),
        (want_status, Some(want)),
        "{body}"
    );
    assert!(body["error_description"].is_string(), "{body}");
}

const FORM: &str = "application/x-www-form-urlencoded";
const SECRET: &str = "bad-input-secret-0123456789";

async fn setup() -> anyhow::Result<(tempfile::TempDir, Serve)> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    s.create("/Resource/ApiScope", json!({"name": "api.read"}))
        .await?;
    s.create("/Resource/ApiScope", json!({"name": "api.other"}))
        .await?;
    s.create("/Client", json!({"clientId": "svc", "allowedGrantTypes": ["client_credentials"],
        "clientSecrets": [{"value": SECRET}, {"value": "expired-secret-0123456789", "expiration": "2020-01-01T00:00:00Z"}],
        "allowedScopes": ["api.read"]}))
        .await?;
    s.create("/Client", json!({"clientId": "spa", "allowedGrantTypes": ["authorization_code"], "requireClientSecret": false,
        "redirectUris": ["https://spa.example/cb"], "allowedScopes": ["openid"]}))
        .await?;
    Ok((dir, s))
}

#[tokio::test]
async fn token_endpoint_refuses_bad_requests_with_rfc6749_errors() -> anyhow::Result<()> {
    let (_dir, s) = setup().await?;
    let ok = Some(("svc", SECRET));
    let cc = b"grant_type=client_credentials".to_vec();

    let (st, _, b) = raw_token(
        &s,
        Some("application/json"),
        br#"{"grant_type":"client_credentials"}"#.to_vec(),
        ok,
    )
    .await?;
    assert_error(st, &b, 400, "invalid_request");
    let (st, _, b) = raw_token(&s, None, cc.clone(), ok).await?;
    assert_error(st, &b, 400, "invalid_request");
    let big = format!("grant_type=client_credentials&pad={}", "x".repeat(20_000)).into_bytes();
    let (st, _, b) = raw_token(&s, Some(FORM), big, ok).await?;
    assert_error(st, &b, 413, "invalid_request");
    let (st, _, b) = raw_token(
        &s,
        Some(FORM),
        b"grant_type=client_credentials&scope=api.read&scope=api.read".to_vec(),
        ok,
    )
    .await?;
    assert_error(st, &b, 400, "invalid_request");
    assert!(b["error_description"]
        .as_str()
        .unwrap()
        .contains("repeated"));
    let (st, _, b) = raw_token(&s, Some(FORM), b"scope=api.read".to_vec(), ok).await?;
    assert_error(st, &b, 400, "invalid_request");
    let (st, _, b) = raw_token(
        &s,
        Some(FORM),
        vec![0xff, 0xfe, b'=', 0x80, b'&', b'%', b'z'],
        ok,
    )
    .await?;
    assert_error(st, &b, 400, "invalid_request");
    let (st, _, b) = raw_token(
        &s,
        Some(FORM),
        b"grant_type=password&username=a&password=b".to_vec(),
        ok,
    )
    .await?;
    assert_error(st, &b, 400, "unsupported_grant_type");

    // Client authentication failures: 401, one message for all, and (RFC 6749 section
    // 5.2) a Basic challenge carrying the error only when the Authorization header was used.
    for basic in [
        Some(("nobody", SECRET)),
        Some(("svc", "wrong")),
        Some(("svc", "expired-secret-0123456789")),
        None,
    ] {
        let (st, h, b) = raw_token(&s, Some(FORM), cc.clone(), basic).await?;
        assert_error(st, &b, 401, "invalid_client");
        match basic {
            Some(_) => {
                let c = h["www-authenticate"].to_str()?;
                assert!(c.starts_with("Basic realm="), "{h:?}");
                assert!(c.contains("error=\"invalid_client\""), "{h:?}");
            }
            None => assert!(h.get("www-authenticate").is_none(), "{h:?}"),
        }
    }
    // A confidential client that sends no secret, and a malformed Basic header.
    let (st, _, b) = raw_token(
        &s,
        Some(FORM),
        b"grant_type=client_credentials&client_id=svc".to_vec(),
        None,
    )
    .await?;
    assert_error(st, &b, 401, "invalid_client");
    let resp = s
        .http()
        .post(format!("{}/oauth2/token", s.issuer))
        .header("authorization", "Basic !!!")
        .header("content-type", FORM)
        .body(cc.clone())
        .send()
        .await?;
    assert_eq!(resp.status(), 401);
    // Two authentication methods at once.
    let body =
        format!("grant_type=client_credentials&client_id=svc&client_secret={SECRET}").into_bytes();
    let (st, _, b) = raw_token(&s, Some(FORM), body, ok).await?;
    assert_error(st, &b, 400, "invalid_request");
    // client_secret_post works on its own.
    let body =
        format!("grant_type=client_credentials&client_id=svc&client_secret={SECRET}").into_bytes();
    let (st, _, b) = raw_token(&s, Some(FORM), body, None).await?;
    assert_eq!(st, 200, "{b}");

    // A public client may not use client_credentials.
    let (st, _, b) = raw_token(
        &s,
        Some(FORM),
        b"grant_type=client_credentials&client_id=spa".to_vec(),
        None,
    )
    .await?;
    assert_error(st, &b, 400, "unauthorized_client");
    // Unknown, not-allowed and identity scopes.
    for scope in ["nope", "api.other", "openid", "api.read  x"] {
        let body = format!(
            "grant_type=client_credentials&scope={}",
            scope.replace(' ', "+")
        )
        .into_bytes();
        let (st, _, b) = raw_token(&s, Some(FORM), body, ok).await?;
        assert_error(st, &b, 400, "invalid_scope");
    }
    // Only POST.
    let r = s
        .http()
        .get(format!("{}/oauth2/token", s.issuer))
        .send()
        .await?;
    assert_eq!(r.status(), 405);
    assert_eq!(r.json::<Value>().await?["error"], "invalid_request");
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn admin_api_refuses_bad_requests_and_writes_nothing() -> anyhow::Result<()> {
    let (_dir, s) = setup().await?;
    let (_, before) = s.admin_call(Method::GET, "/Client", None).await?;
    let url = format!("{}/Client", s.admin);

    // Authentication and authorization (RFC 6750).
    let r = s.http().get(&url).send().await?;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"signet-admin\""
    );
    let r = s.http().get(&url).bearer_auth("not.a.jwt").send().await?;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()?
        .contains("invalid_token"));
    let r = s
        .http()
        .get(&url)
        .basic_auth("signet-admin", Some(&s.admin_secret))
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    // A valid token of another API.
    let (_, _, t) = s
        .token_request(
            Some(("svc", SECRET)),
            &[("grant_type", "client_credentials")],
        )
        .await?;
    let r = s
        .http()
        .get(&url)
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    // A token for the admin API without the admin scope: 403.
    s.create("/Resource/ApiScope", json!({"name": "signet.audit"}))
        .await?;
    let (st, b) = s
        .admin_call(
            Method::PUT,
            "/Resource/ApiResource",
            Some(&json!({"name": "signet", "scopes": ["signet.admin", "signet.audit"]})),
        )
        .await?;
    assert_eq!(st, 200, "{b}");
    s.create(
        "/Client",
        json!({"clientId": "auditor", "allowedGrantTypes": ["client_credentials"],
        "clientSecrets": [{"value": SECRET}], "allowedScopes": ["signet.audit"]}),
    )
    .await?;
    let (_, _, t) = s
        .token_request(
            Some(("auditor", SECRET)),
            &[("grant_type", "client_credentials")],
        )
        .await?;
    let r = s
        .http()
        .get(&url)
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await?;
    assert_eq!(r.status(), 403);
    assert!(r.headers()["www-authenticate"]
        .to_str()?
        .contains("insufficient_scope"));
    // An auditor's token whose payload is swapped for one claiming the admin scope.
    let token = t["access_token"].as_str().unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&base64::Engine::decode(&engine, &parts[1])?)?;
    claims["scope"] = json!("signet.admin");
    parts[1] = base64::Engine::encode(&engine, claims.to_string());
    let r = s
        .http()
        .get(&url)
        .bearer_auth(parts.join("."))
        .send()
        .await?;
    assert_eq!(r.status(), 401);

    // Bodies: each error names the field and the rule.
    let cases = [
        (
            json!({"clientId": "c1", "allowedGrantTypes": ["client_credentials"], "clientSecrets": [{"value": "secret-0123456789abc"}], "bogus": 1}),
            "bogus",
        ),
        (
            json!({"clientId": "c1", "allowedGrantTypes": ["client_credentials"], "clientSecrets": [{"value": "secret-0123456789abc"}], "accessTokenLifetime": "long"}),
            "accessTokenLifetime",
        ),
        (
            json!({"clientId": "c1", "allowedGrantTypes": ["password"]}),
            "allowedGrantTypes[0]",
        ),
        (
            json!({"allowedGrantTypes": ["client_credentials"]}),
            "clientId",
        ),
        (
            json!({"clientId": "c1", "allowedGrantTypes": ["authorization_code"], "requireClientSecret": false, "redirectUris": ["/cb"]}),
            "redirectUris[0]",
        ),
        (
            json!({"clientId": "c1", "allowedGrantTypes": ["client_credentials"], "clientSecrets": [{"value": "secret-0123456789abc"}], "allowedScopes": ["nope"]}),
            "allowedScopes[0]",
        ),
        (
            json!({"clientId": "c1", "allowedGrantTypes": ["client_credentials"], "clientSecrets": [{"value": "secret-0123456789abc"}], "accessTokenLifetime": 0}),
            "accessTokenLifetime",
        ),
        (
            json!({"clientId": "c1", "allowedGrantTypes": ["client_credentials", "implicit"], "clientSecrets": [{"value": "secret-0123456789abc"}], "redirectUris": ["https://a/cb"]}),
            "allowedGrantTypes",
        ),
        (
            json!({"clientId": "c1", "allowedGrantTypes": ["client_credentials"], "clientSecrets": [{"value": "secret-0123456789abc", "extra": true}]}),
            "clientSecrets[0].extra",
        ),
    ];
    for (body, field) in cases {
        let (st, b) = s.admin_call(Method::POST, "/Client", Some(&body)).await?;
        assert_eq!(
            (st, b["error"].as_str()),
            (400, Some("invalid_body")),
            "{body} -> {b}"
        );
        assert!(
            b["field"].as_str().is_some_and(|f| f.starts_with(field))
                || b["rule"].as_str().is_some_and(|r| r.contains(field)),
            "field {field} named in {b}"
        );
        assert!(b["rule"].is_string());
    }
    let token = s.admin_token().await?;
    let r = s
        .http()
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await?["field"], "body");
    let r = s
        .http()
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await?;
    assert_eq!(r.status(), 415);
    let huge = json!({"clientId": "c1", "description": "x".repeat(2 * 1024 * 1024)});
    let r = s
        .http()
        .post(&url)
        .bearer_auth(&token)
        .json(&huge)
        .send()
        .await?;
    assert_eq!(r.status(), 413);
    // The unread body is still on the connection: it must not be reused.
    assert_eq!(r.headers()["connection"], "close");
    // Duplicate client; unknown route; wrong method.
    let (st, _) = s.admin_call(Method::POST, "/Client", Some(&json!({"clientId": "svc", "allowedGrantTypes": ["client_credentials"], "clientSecrets": [{"value": "secret-0123456789abc"}]}))).await?;
    assert_eq!(st, 409);
    let (st, b) = s.admin_call(Method::GET, "/Nope", None).await?;
    assert_eq!((st, b["error"].as_str()), (404, Some("not_found")));
    let (st, _) = s.admin_call(Method::PATCH, "/Client", None).await?;
    assert_eq!(st, 405);

    // Nothing was written by any failed request.
    let (_, after) = s.admin_call(Method::GET, "/Client", None).await?;
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["clientId"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut expected = ids(&before);
    expected.push("auditor".into());
    expected.sort();
    assert_eq!(ids(&after), expected);
    let (_, svc) = s.admin_call(Method::GET, "/Client/svc", None).await?;
    assert_eq!(svc["accessTokenLifetime"], 3600);
    s.stop().await?;
    Ok(())
}
