//! The FAPI 2.0 Security Profile switch (`profile: "fapi2"`, issue 14 item 7) on `serve`: a
//! client that sets it must set every flag the profile demands (each missing one is a 400
//! naming it), and then signs a user in with a pushed request, PKCE, `private_key_jwt`
//! whose only accepted audience is the issuer identifier (a string), and DPoP: its access
//! token is refused by a `libs/verify` resource server without the proof.

use reqwest::Method;
use serde_json::{json, Value};
use signet_jose::Algorithm;
use signet_tests::browser::{params_of, Browser, PKCE_CHALLENGE, PKCE_VERIFIER};
use signet_tests::{verify_jwt, Serve, ServeOptions};

use super::dpop::{DpopKey, ExampleResourceServer};
use super::high_security::{claims, ClientKeyPair, ASSERTION_TYPE};
use super::par::{authorize_url, push};

const REDIRECT: &str = "https://bank.example/cb";
const PASSWORD: &str = "pia's password 1";

/// A FAPI 2.0 client with its key.
pub fn fapi2_client(id: &str, key: &ClientKeyPair) -> Value {
    json!({
        "clientId": id, "profile": "fapi2",
        "allowedGrantTypes": ["authorization_code"],
        "clientSecrets": [{"type": "JsonWebKey", "value": key.public_jwk()}],
        "requirePushedAuthorization": true, "authorizationCodeLifetime": 60,
        "requireDPoP": true, "requireConsent": false, "redirectUris": [REDIRECT],
        "allowedScopes": ["openid", "profile", "orders.read"],
    })
}

/// The form with a client assertion whose `aud` is `aud` (any JSON value).
fn with_aud(
    mut form: Vec<(&'static str, String)>,
    key: &ClientKeyPair,
    client: &str,
    aud: Value,
) -> Vec<(&'static str, String)> {
    let mut c = claims(client, "");
    c["aud"] = aud;
    form.push(("client_assertion_type", ASSERTION_TYPE.to_owned()));
    form.push(("client_assertion", key.sign(&c)));
    form
}

fn pushed_request() -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".to_owned()),
        ("scope", "openid profile orders.read".to_owned()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("state", "fapi-state".to_owned()),
        ("nonce", "n".to_owned()),
        ("code_challenge", PKCE_CHALLENGE.to_owned()),
        ("code_challenge_method", "S256".to_owned()),
    ]
}

#[tokio::test]
async fn a_fapi2_client_signs_in_with_par_pkce_and_private_key_jwt() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let key = ClientKeyPair::new(Algorithm::ES256, "bank-key");
    s.create(
        "/User",
        json!({"username": "pia", "password": PASSWORD, "claims": {"name": "Pia"}}),
    )
    .await?;
    s.create("/Resource/ApiScope", json!({"name": "orders.read"}))
        .await?;
    s.create(
        "/Resource/ApiResource",
        json!({"name": "orders-api", "scopes": ["orders.read"]}),
    )
    .await?;
    let dpop = DpopKey::new(Algorithm::ES256);

    // The profile demands its flags: each missing one is named.
    for (field, value) in [
        ("requirePushedAuthorization", json!(false)),
        ("requireDPoP", json!(false)),
        ("authorizationCodeLifetime", json!(300)),
        ("redirectUris", json!(["http://127.0.0.1:1/cb"])),
        ("allowedGrantTypes", json!(["implicit"])),
    ] {
        let mut body = fapi2_client("bank", &key);
        body[field] = value;
        let (st, b) = s.admin_call(Method::POST, "/Client", Some(&body)).await?;
        assert_eq!(st, 400, "{field}: {b}");
        assert!(
            b["field"].as_str().is_some_and(|f| f.starts_with(field)),
            "{field}: {b}"
        );
        assert!(b.to_string().contains("profile fapi2"), "{field}: {b}");
    }
    s.create("/Client", fapi2_client("bank", &key)).await?;
    let (_, read) = s.admin_call(Method::GET, "/Client/bank", None).await?;
    assert_eq!(read["profile"], "fapi2", "{read}");

    // A plain authorization request is refused: PAR is required.
    let mut plain = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer))?;
    plain.query_pairs_mut().append_pair("client_id", "bank");
    for (k, v) in pushed_request() {
        plain.query_pairs_mut().append_pair(k, &v);
    }
    let r = Browser::new().get(plain.as_str()).await?;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(params_of(&r.location()?, false)["error"], "invalid_request");

    // The assertion's audience is the issuer identifier as a string, nothing else.
    let http = reqwest::Client::new();
    let par_url = format!("{}/oauth2/par", s.issuer);
    for aud in [
        json!(par_url),
        json!(format!("{}/oauth2/token", s.issuer)),
        json!([s.issuer]),
    ] {
        let form = with_aud(pushed_request(), &key, "bank", aud.clone());
        let (st, _, body) = push(&http, &s.issuer, &form).await?;
        assert_eq!(
            (st, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{aud}: {body}"
        );
        assert!(
            body["error_description"]
                .as_str()
                .unwrap_or_default()
                .contains("fapi2"),
            "{aud}: {body}"
        );
    }
    let form = with_aud(pushed_request(), &key, "bank", json!(s.issuer));
    let (st, _, body) = push(&http, &s.issuer, &form).await?;
    assert_eq!(st, 201, "{body}");
    assert!(body["expires_in"].as_i64().unwrap() <= 60, "{body}");
    let request_uri = body["request_uri"].as_str().unwrap().to_owned();

    let r = Browser::new()
        .sign_in(
            &authorize_url(&s.issuer, "bank", &request_uri, ""),
            "pia",
            PASSWORD,
        )
        .await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let back = params_of(&r.location()?, false);
    assert_eq!(back["state"], "fapi-state", "{back:?}");
    assert_eq!(
        back["iss"], s.issuer,
        "RFC 9207 iss in the response: {back:?}"
    );

    let token_url = format!("{}/oauth2/token", s.issuer);
    let redeem = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", back["code"].clone()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("code_verifier", PKCE_VERIFIER.to_owned()),
    ];
    // The token endpoint URL as audience is refused here too (and the code survives it:
    // the client is not authenticated, so nothing is consumed).
    let form = with_aud(redeem.clone(), &key, "bank", json!(token_url));
    let r = http
        .post(&token_url)
        .header("DPoP", dpop.proof("POST", &token_url, None, None))
        .form(&form)
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    // requireDPoP: without a proof the code is not redeemed.
    let form = with_aud(redeem.clone(), &key, "bank", json!(s.issuer));
    let r = http.post(&token_url).form(&form).send().await?;
    let status = r.status();
    let refused: Value = r.json().await?;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"], "invalid_dpop_proof", "{refused}");
    let form = with_aud(redeem, &key, "bank", json!(s.issuer));
    let r = http
        .post(&token_url)
        .header("DPoP", dpop.proof("POST", &token_url, None, None))
        .form(&form)
        .send()
        .await?;
    let status = r.status();
    let tokens: Value = r.json().await?;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "DPoP", "{tokens}");
    let access = tokens["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let at = verify_jwt(&access, &s.jwks().await?, &s.issuer, "orders-api")?;
    assert_eq!(at["cnf"]["jkt"], dpop.jkt(), "{at}");

    // A resource server (libs/verify) takes the token only with its proof.
    let rs = ExampleResourceServer::start(&s.issuer, "orders-api").await?;
    let orders = format!("{}/orders", rs.base);
    let call = |auth: String, proof: Option<String>| {
        let mut req = http.get(&orders).header("Authorization", auth);
        if let Some(p) = proof {
            req = req.header("DPoP", p);
        }
        async move { anyhow::Ok(req.send().await?.status().as_u16()) }
    };
    let proof = dpop.proof("GET", &orders, Some(&access), None);
    assert_eq!(call(format!("DPoP {access}"), Some(proof)).await?, 200);
    assert_eq!(call(format!("Bearer {access}"), None).await?, 401);
    assert_eq!(call(format!("DPoP {access}"), None).await?, 401);
    let thief = DpopKey::new(Algorithm::ES256);
    let stolen = thief.proof("GET", &orders, Some(&access), None);
    assert_eq!(call(format!("DPoP {access}"), Some(stolen)).await?, 401);
    let id = verify_jwt(
        tokens["id_token"].as_str().unwrap_or_default(),
        &s.jwks().await?,
        &s.issuer,
        "bank",
    )?;
    assert_eq!(id["nonce"], "n", "{id}");
    Ok(())
}
