//! Signed request objects (RFC 9101, JAR) on `serve`: by value at the authorization
//! endpoint and inside a pushed request; only the object's parameters are used;
//! `requireRequestObject` refuses plain and unsigned requests; every bad object (another
//! client's key, `alg: none`, HMAC with the public key, expired, wrong `aud`/`iss`/
//! `client_id`, unsigned, garbage) is `invalid_request_object`: the error page at the
//! authorization endpoint (nothing in a failed object is trusted for a redirect), JSON at
//! PAR. Objects are signed with `jsonwebtoken`.

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use signet_jose::Algorithm;
use signet_tests::browser::{params_of, Browser, PKCE_CHALLENGE, PKCE_VERIFIER};
use signet_tests::{Serve, ServeOptions};

use super::high_security::{now, ClientKeyPair};
use super::par::{authorize_url, push, with_assertion};

const REDIRECT: &str = "http://127.0.0.1:1/cb";
const PASSWORD: &str = "pia's password 1";

/// The claims of a good request object of `jar-web` for `issuer`.
fn object(issuer: &str) -> Value {
    json!({
        "iss": "jar-web", "aud": issuer, "exp": now() + 300, "iat": now(), "nbf": now(),
        "client_id": "jar-web", "response_type": "code", "scope": "openid profile",
        "redirect_uri": REDIRECT, "state": "signed-state", "nonce": "n",
        "code_challenge": PKCE_CHALLENGE, "code_challenge_method": "S256",
        "max_age": 3600,
    })
}

async fn setup(s: &Serve, key: &ClientKeyPair, other: &ClientKeyPair) -> anyhow::Result<()> {
    s.create(
        "/User",
        json!({"username": "pia", "password": PASSWORD, "claims": {"name": "Pia"}}),
    )
    .await?;
    for (id, k) in [("jar-web", key), ("other", other)] {
        s.create(
            "/Client",
            json!({
            "clientId": id, "allowedGrantTypes": ["authorization_code"],
            "clientSecrets": [{"type": "JsonWebKey", "value": k.public_jwk()}],
            "requireRequestObject": true, "requireConsent": false,
            "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile"]}),
        )
        .await?;
    }
    Ok(())
}

fn authorize_with(issuer: &str, pairs: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&format!("{issuer}/oauth2/authorize")).unwrap();
    for (k, v) in pairs {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

/// Redeems `code` for `jar-web` (private_key_jwt) and returns the token response.
async fn redeem(s: &Serve, key: &ClientKeyPair, code: &str) -> anyhow::Result<Value> {
    let token_url = format!("{}/oauth2/token", s.issuer);
    let form = with_assertion(
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_verifier", PKCE_VERIFIER.to_owned()),
        ],
        key,
        "jar-web",
        &token_url,
    );
    let r = reqwest::Client::new()
        .post(&token_url)
        .form(&form)
        .send()
        .await?;
    Ok(r.json().await?)
}

#[tokio::test]
async fn a_request_object_by_value_signs_in_with_only_its_parameters() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let key = ClientKeyPair::new(Algorithm::ES256, "jar-key");
    let other = ClientKeyPair::new(Algorithm::EdDSA, "other-key");
    setup(&s, &key, &other).await?;

    let doc: Value = reqwest::get(format!("{}/.well-known/openid-configuration", s.issuer))
        .await?
        .json()
        .await?;
    assert_eq!(doc["request_parameter_supported"], true, "{doc}");
    assert_eq!(doc["request_uri_parameter_supported"], false, "{doc}");
    let algs = doc["request_object_signing_alg_values_supported"].clone();
    assert_eq!(algs, json!(["RS256", "PS256", "ES256", "EdDSA"]), "{doc}");

    // requireRequestObject without keys to verify objects with is refused when written.
    let (st, b) = s
        .admin_call(
            reqwest::Method::POST,
            "/Client",
            Some(
                &json!({"clientId": "keyless", "allowedGrantTypes": ["authorization_code"],
                "clientSecrets": [{"value": "keyless-secret-0123456789"}],
                "requireRequestObject": true, "redirectUris": [REDIRECT],
                "allowedScopes": ["openid"]}),
            ),
        )
        .await?;
    assert_eq!(
        (st, b["field"].as_str()),
        (400, Some("requireRequestObject")),
        "{b}"
    );

    // requireRequestObject: a plain request goes back with invalid_request.
    let plain = [
        ("client_id", "jar-web"),
        ("response_type", "code"),
        ("scope", "openid"),
        ("redirect_uri", REDIRECT),
        ("state", "plain-state"),
        ("code_challenge", PKCE_CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let r = Browser::new()
        .get(&authorize_with(&s.issuer, &plain))
        .await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let back = params_of(&r.location()?, false);
    assert_eq!(back["error"], "invalid_request", "{back:?}");
    assert!(
        back["error_description"].contains("request object"),
        "{back:?}"
    );
    assert_eq!(back["state"], "plain-state");

    // A request_uri at the client's own URL is not fetched: request_uri_not_supported.
    let mut by_reference = plain.to_vec();
    by_reference.push(("request_uri", "https://app.example/request.jwt"));
    let r = Browser::new()
        .get(&authorize_with(&s.issuer, &by_reference))
        .await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let back = params_of(&r.location()?, false);
    assert_eq!(back["error"], "request_uri_not_supported", "{back:?}");

    // By value: the outer state and scope are ignored, the object's are used. The object
    // may be longer than a single parameter may (2048 bytes), up to 8192.
    let mut claims = object(&s.issuer);
    claims["x_pad_a"] = json!("a".repeat(1500));
    claims["x_pad_b"] = json!("b".repeat(1500));
    let jwt = key.sign(&claims);
    assert!(jwt.len() > 4000, "{}", jwt.len());
    let url = authorize_with(
        &s.issuer,
        &[
            ("client_id", "jar-web"),
            ("response_type", "code"),
            ("request", &jwt),
            ("state", "evil"),
            ("scope", "openid"),
            ("redirect_uri", "http://127.0.0.1:1/elsewhere"),
        ],
    );
    let mut b = Browser::new();
    let r = b.sign_in(&url, "pia", PASSWORD).await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let location = r.location()?;
    assert_eq!(location.path(), "/cb", "{location}");
    let back = params_of(&location, false);
    assert_eq!(back["state"], "signed-state", "{back:?}");
    let tokens = redeem(&s, &key, &back["code"]).await?;
    assert_eq!(tokens["scope"], "openid profile", "{tokens}");
    assert!(tokens["id_token"].is_string(), "{tokens}");

    // An outer response_type must be the object's; the outer client_id the object's.
    for (pairs, error, fragment) in [
        (
            vec![("client_id", "jar-web"), ("response_type", "token")],
            "invalid_request",
            "response_type differs",
        ),
        (
            vec![("client_id", "other")],
            "invalid_request_object",
            "signature does not verify",
        ),
    ] {
        let mut pairs = pairs;
        pairs.push(("request", &jwt));
        let r = Browser::new()
            .get(&authorize_with(&s.issuer, &pairs))
            .await?;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains(error), "{}", r.body);
        assert!(r.body.contains(fragment), "{fragment}: {}", r.body);
    }
    Ok(())
}

#[tokio::test]
async fn a_request_object_inside_a_pushed_request_signs_in() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let key = ClientKeyPair::new(Algorithm::PS256, "jar-key");
    let other = ClientKeyPair::new(Algorithm::EdDSA, "other-key");
    setup(&s, &key, &other).await?;
    let http = reqwest::Client::new();
    let par_url = format!("{}/oauth2/par", s.issuer);

    // requireRequestObject: a push without a request object is refused.
    let plain = vec![
        ("response_type", "code".to_owned()),
        ("scope", "openid".to_owned()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("code_challenge", PKCE_CHALLENGE.to_owned()),
        ("code_challenge_method", "S256".to_owned()),
    ];
    let (st, _, body) = push(
        &http,
        &s.issuer,
        &with_assertion(plain.clone(), &key, "jar-web", &par_url),
    )
    .await?;
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["error"], "invalid_request", "{body}");

    // The object is pushed; the outer scope and state are ignored.
    let mut form = vec![
        ("request", key.sign(&object(&s.issuer))),
        ("scope", "openid".to_owned()),
        ("state", "evil".to_owned()),
    ];
    form = with_assertion(form, &key, "jar-web", &par_url);
    let (st, _, body) = push(&http, &s.issuer, &form).await?;
    assert_eq!(st, 201, "{body}");
    let uri = body["request_uri"].as_str().unwrap().to_owned();
    let mut b = Browser::new();
    let r = b
        .sign_in(
            &authorize_url(&s.issuer, "jar-web", &uri, ""),
            "pia",
            PASSWORD,
        )
        .await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let back = params_of(&r.location()?, false);
    assert_eq!(back["state"], "signed-state", "{back:?}");
    let tokens = redeem(&s, &key, &back["code"]).await?;
    assert_eq!(tokens["scope"], "openid profile", "{tokens}");

    // Pushed by another client (authenticated as `other`): the object names jar-web.
    let form = with_assertion(
        vec![("request", key.sign(&object(&s.issuer)))],
        &other,
        "other",
        &par_url,
    );
    let (st, _, body) = push(&http, &s.issuer, &form).await?;
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["error"], "invalid_request_object", "{body}");
    Ok(())
}

#[tokio::test]
async fn bad_request_objects_are_refused_at_authorize_and_par() -> anyhow::Result<()> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let key = ClientKeyPair::new(Algorithm::ES256, "jar-key");
    let other = ClientKeyPair::new(Algorithm::EdDSA, "other-key");
    setup(&s, &key, &other).await?;
    let http = reqwest::Client::new();
    let par_url = format!("{}/oauth2/par", s.issuer);
    let good = object(&s.issuer);
    let with = |name: &str, v: Value| {
        let mut c = good.clone();
        match v {
            Value::Null => c.as_object_mut().unwrap().remove(name),
            v => c.as_object_mut().unwrap().insert(name.to_owned(), v),
        };
        key.sign(&c)
    };
    let encode = |header: &str, claims: &Value| {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    };
    let cases = [
        (other.sign(&good), "signature does not verify"),
        (
            format!("{}.", encode(r#"{"alg":"none"}"#, &good)),
            "alg is not allowed",
        ),
        // HMAC keyed with the public key: the algorithm-confusion attack.
        (
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &good,
                &jsonwebtoken::EncodingKey::from_secret(key.public_jwk().as_bytes()),
            )?,
            "alg is not allowed",
        ),
        // Unsigned: an ES256 header without a signature.
        (
            format!("{}.", encode(r#"{"alg":"ES256","kid":"jar-key"}"#, &good)),
            "signature does not verify",
        ),
        (with("exp", json!(now() - 120)), "has expired"),
        (with("exp", Value::Null), "has no exp"),
        (with("exp", json!(now() + 7200)), "too far ahead"),
        (with("nbf", json!(now() + 600)), "not valid yet"),
        (
            with("aud", json!("https://elsewhere.example")),
            "aud must be",
        ),
        (with("iss", json!("other")), "iss must be"),
        (with("client_id", json!("other")), "client_id must be"),
        (
            with("request_uri", json!("https://app.example/r")),
            "must not contain",
        ),
        ("garbage".to_owned(), "not a signed JWT"),
        ("a.b.c".to_owned(), "not a signed JWT"),
    ];
    for (jwt, fragment) in &cases {
        let url = authorize_with(
            &s.issuer,
            &[
                ("client_id", "jar-web"),
                ("request", jwt),
                ("redirect_uri", REDIRECT),
            ],
        );
        let r = Browser::new().get(&url).await?;
        assert_eq!(r.status, 400, "{fragment}: {}", r.body);
        assert!(r.body.contains("invalid_request_object"), "{}", r.body);
        assert!(r.body.contains(fragment), "{fragment}: {}", r.body);

        let form = with_assertion(vec![("request", jwt.clone())], &key, "jar-web", &par_url);
        let (st, _, body) = push(&http, &s.issuer, &form).await?;
        assert_eq!(st, 400, "{fragment}: {body}");
        assert_eq!(body["error"], "invalid_request_object", "{body}");
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(description.contains(fragment), "{fragment}: {body}");
    }

    // Each refusal is counted by reason: two alg cases, at both endpoints.
    let metrics = s
        .http()
        .get(format!("{}/metrics", s.issuer))
        .send()
        .await?
        .text()
        .await?;
    let count = |reason: &str| {
        let prefix = format!("signet_request_object_failures_total{{reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_owned()))
    };
    assert_eq!(count("alg").as_deref(), Some("4"), "{metrics}");
    assert_eq!(count("malformed").as_deref(), Some("4"), "{metrics}");
    assert_eq!(count("signature").as_deref(), Some("4"), "{metrics}");

    // Longer than 8192 bytes: invalid_request naming the parameter, at both.
    let long = "x".repeat(8193);
    let url = authorize_with(&s.issuer, &[("client_id", "jar-web"), ("request", &long)]);
    let r = Browser::new().get(&url).await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("longer than 8192 bytes"), "{}", r.body);
    let form = with_assertion(vec![("request", long)], &key, "jar-web", &par_url);
    let (st, _, body) = push(&http, &s.issuer, &form).await?;
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("8192"),
        "{body}"
    );
    Ok(())
}

/// RFC 8707 inside a request object: `resource` as an array of strings narrows the access
/// token's audience like repeated `resource` parameters do.
#[tokio::test]
async fn a_request_object_carries_resource_indicators() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let key = ClientKeyPair::new(Algorithm::ES256, "jar-key");
    let other = ClientKeyPair::new(Algorithm::EdDSA, "other-key");
    setup(&s, &key, &other).await?;
    for (path, body) in [
        ("/Resource/ApiScope", json!({"name": "orders.read"})),
        ("/Resource/ApiScope", json!({"name": "stock.read"})),
        (
            "/Resource/ApiResource",
            json!({"name": "https://orders.example", "scopes": ["orders.read"]}),
        ),
        (
            "/Resource/ApiResource",
            json!({"name": "https://stock.example", "scopes": ["stock.read"]}),
        ),
    ] {
        s.create(path, body).await?;
    }
    let (st, mut client) = s
        .admin_call(reqwest::Method::GET, "/Client/jar-web", None)
        .await?;
    assert_eq!(st, 200, "{client}");
    client["allowedScopes"] = json!(["openid", "profile", "orders.read", "stock.read"]);
    client["clientSecrets"] = json!([{"type": "JsonWebKey", "value": key.public_jwk()}]);
    let (st, resp) = s
        .admin_call(reqwest::Method::PUT, "/Client", Some(&client))
        .await?;
    assert_eq!(st, 200, "{resp}");
    let mut claims = object(&s.issuer);
    claims["scope"] = json!("openid orders.read stock.read");
    claims["resource"] = json!(["https://orders.example"]);
    let url = authorize_with(
        &s.issuer,
        &[("client_id", "jar-web"), ("request", &key.sign(&claims))],
    );
    let mut b = Browser::new();
    let r = b.sign_in(&url, "pia", PASSWORD).await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let back = params_of(&r.location()?, false);
    let tokens = redeem(&s, &key, back.get("code").context("code")?).await?;
    let at = tokens["access_token"].as_str().context("access_token")?;
    let payload = at.split('.').nth(1).context("a JWT")?;
    let at: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
    assert_eq!(at["aud"], json!("https://orders.example"), "{at}");
    // Not an array of strings: refused as a bad request object.
    claims["resource"] = json!([1]);
    let url = authorize_with(
        &s.issuer,
        &[("client_id", "jar-web"), ("request", &key.sign(&claims))],
    );
    let r = b.get(&url).await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("invalid_request_object"), "{}", r.body);
    Ok(())
}

/// A client that publishes its keys at a `jwksUri` signs request objects with them, by value
/// at the authorization endpoint and inside a push; the set is fetched once for all of it.
/// A set that cannot be fetched is `invalid_request_object` on the error page.
#[tokio::test]
async fn request_objects_verify_with_the_keys_at_the_clients_jwks_uri() -> anyhow::Result<()> {
    use signet_tests::receiver::Receiver;

    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            extra_args: vec!["--allow-private-outbound".into()],
            ..Default::default()
        },
    )
    .await?;
    let key = ClientKeyPair::new(Algorithm::ES256, "published-key");
    let jwks = Receiver::start().await?;
    let public: Value = serde_json::from_str(&key.public_jwk())?;
    jwks.serve_document(
        "application/jwk-set+json",
        &["Cache-Control: max-age=600"],
        &json!({ "keys": [public] }).to_string(),
    );
    let down = Receiver::start().await?;
    down.answer(503, None);
    s.create(
        "/User",
        json!({"username": "pia", "password": PASSWORD, "claims": {"name": "Pia"}}),
    )
    .await?;
    for (id, uri) in [("jar-web", &jwks.base), ("other", &down.base)] {
        s.create(
            "/Client",
            json!({
            "clientId": id, "allowedGrantTypes": ["authorization_code"],
            "jwksUri": format!("{uri}/jwks"),
            "requireRequestObject": true, "requireConsent": false,
            "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile"]}),
        )
        .await?;
    }

    // By value.
    let jwt = key.sign(&object(&s.issuer));
    let url = authorize_with(&s.issuer, &[("client_id", "jar-web"), ("request", &jwt)]);
    let r = Browser::new().sign_in(&url, "pia", PASSWORD).await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let back = params_of(&r.location()?, false);
    assert_eq!(back["state"], "signed-state", "{back:?}");
    let tokens = redeem(&s, &key, &back["code"]).await?;
    assert_eq!(tokens["scope"], "openid profile", "{tokens}");

    // Pushed.
    let http = reqwest::Client::new();
    let par_url = format!("{}/oauth2/par", s.issuer);
    let form = with_assertion(
        vec![("request", key.sign(&object(&s.issuer)))],
        &key,
        "jar-web",
        &par_url,
    );
    let (st, _, body) = push(&http, &s.issuer, &form).await?;
    assert_eq!(st, 201, "{body}");
    assert_eq!(jwks.received("/jwks").len(), 1, "one fetch served it all");

    // The other client's set cannot be had.
    let mut claims = object(&s.issuer);
    for k in ["iss", "client_id"] {
        claims[k] = json!("other");
    }
    let url = authorize_with(
        &s.issuer,
        &[("client_id", "other"), ("request", &key.sign(&claims))],
    );
    let r = Browser::new().get(&url).await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("invalid_request_object"), "{}", r.body);
    assert!(r.body.contains("jwksUri"), "{}", r.body);
    Ok(())
}
