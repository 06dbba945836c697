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
use super::high_security::{claims, signer_client, ClientKeyPair, ASSERTION_TYPE};
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

/// The FAPI 2.0 flow on the cluster (issue 14's "done when"): pushed at node 2, signed in
/// at node 1, redeemed at node 2 with `private_key_jwt` and a DPoP proof whose `htu` is the
/// shared issuer's; the token is refused by a resource server without its proof, and the
/// request URI and the assertion are spent cluster-wide. Then the replay caches' cost:
/// Redis commands per `client_credentials` grant with a shared secret (none: the hot path
/// touches no network), with `private_key_jwt`, and with `private_key_jwt` and DPoP,
/// printed for `loadtests/RESULTS.md` and bounded here.
#[tokio::test]
async fn a_fapi2_client_signs_in_across_cluster_nodes() -> anyhow::Result<()> {
    use signet_tests::cluster::Cluster;
    use signet_tests::eventually;
    use std::time::Duration;

    let c = Cluster::start(2).await?;
    let key = ClientKeyPair::new(Algorithm::ES256, "bank-key");
    for (path, body) in [
        (
            "/User",
            json!({"username": "pia", "password": PASSWORD, "claims": {"name": "Pia"}}),
        ),
        ("/Resource/ApiScope", json!({"name": "orders.read"})),
        (
            "/Resource/ApiResource",
            json!({"name": "orders-api", "scopes": ["orders.read"]}),
        ),
        ("/Client", fapi2_client("bank", &key)),
        ("/Client", signer_client("machine", &key)),
        (
            "/Client",
            json!({"clientId": "shared", "allowedGrantTypes": ["client_credentials"],
                   "clientSecrets": [{"value": "shared secret 0123456789abcdef"}],
                   "allowedScopes": ["orders.read"]}),
        ),
    ] {
        let (st, b) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        assert_eq!(st, 201, "{path}: {b}");
    }
    let node = |i: usize| c.issuers[i].public.clone();
    let http = reqwest::Client::new();

    // Pushed at node 2 (once it knows the client), with the shared issuer as audience.
    let (st, _, body) = eventually(Duration::from_secs(10), || async {
        let form = with_aud(pushed_request(), &key, "bank", json!(c.issuer));
        let r = push(&http, &node(1), &form).await.ok()?;
        (r.0 == 201).then_some(r)
    })
    .await?;
    assert_eq!(st, 201, "{body}");
    let request_uri = body["request_uri"].as_str().unwrap_or_default().to_owned();
    // The same assertion again, at node 1: its jti is spent cluster-wide.
    let form = with_aud(pushed_request(), &key, "bank", json!(c.issuer));
    assert_eq!(push(&http, &node(0), &form).await?.0, 201);
    let (st, _, b) = push(&http, &node(1), &form).await?;
    assert_eq!(
        (st, b["error"].as_str()),
        (401, Some("invalid_client")),
        "{b}"
    );

    // Signed in at node 1 with the request pushed at node 2; the request URI is then spent.
    eventually(Duration::from_secs(10), || async {
        let r = Browser::new()
            .get(&format!("{}/login", node(0)))
            .await
            .ok()?;
        (r.status < 500).then_some(())
    })
    .await?;
    let r = Browser::new()
        .sign_in(
            &authorize_url(&node(0), "bank", &request_uri, ""),
            "pia",
            PASSWORD,
        )
        .await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let back = params_of(&r.location()?, false);
    assert_eq!(back["iss"], c.issuer, "{back:?}");
    let again = Browser::new()
        .get(&authorize_url(&node(1), "bank", &request_uri, ""))
        .await?;
    assert!(
        again.status == 400 || params_of(&again.location()?, false).contains_key("error"),
        "a spent request_uri at node 2: {} {}",
        again.status,
        again.body
    );

    // Redeemed at node 2: the proof's htu is the issuer's token endpoint.
    let htu = format!("{}/oauth2/token", c.issuer);
    let dpop = DpopKey::new(Algorithm::ES256);
    let redeem = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", back["code"].clone()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("code_verifier", PKCE_VERIFIER.to_owned()),
    ];
    let r = http
        .post(format!("{}/oauth2/token", node(1)))
        .header("DPoP", dpop.proof("POST", &htu, None, None))
        .form(&with_aud(redeem, &key, "bank", json!(c.issuer)))
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
    let at = verify_jwt(&access, &c.jwks(1).await?, &c.issuer, "orders-api")?;
    assert_eq!(at["cnf"]["jkt"], dpop.jkt(), "{at}");

    let rs = ExampleResourceServer::start(&c.issuer, "orders-api").await?;
    let orders = format!("{}/orders", rs.base);
    let proof = dpop.proof("GET", &orders, Some(&access), None);
    let ok = http
        .get(&orders)
        .header("Authorization", format!("DPoP {access}"))
        .header("DPoP", proof)
        .send()
        .await?;
    assert_eq!(ok.status(), 200);
    let bare = http
        .get(&orders)
        .header("Authorization", format!("DPoP {access}"))
        .send()
        .await?;
    assert_eq!(bare.status(), 401, "no proof");
    let bearer = http
        .get(&orders)
        .header("Authorization", format!("Bearer {access}"))
        .send()
        .await?;
    assert_eq!(bearer.status(), 401, "as a bearer token");

    // The replay caches' cost, in Redis commands per grant at one node.
    const N: usize = 20;
    let cc = |extra: Vec<(&'static str, String)>| {
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("scope", "orders.read".to_owned()),
        ];
        form.extend(extra);
        form
    };
    let monitor = c.redis.monitor().await?;
    let mut figures = Vec::new();
    for kind in ["shared secret", "private_key_jwt", "private_key_jwt + DPoP"] {
        monitor.take().await?;
        for _ in 0..N {
            let mut req = http.post(format!("{}/oauth2/token", node(1)));
            let form = match kind {
                "shared secret" => {
                    req = req.basic_auth("shared", Some("shared secret 0123456789abcdef"));
                    cc(vec![])
                }
                _ => with_aud(cc(vec![]), &key, "machine", json!(c.issuer)),
            };
            if kind.ends_with("DPoP") {
                req = req.header("DPoP", dpop.proof("POST", &htu, None, None));
            }
            let r = req.form(&form).send().await?;
            assert_eq!(r.status(), 200, "{kind}: {}", r.text().await?);
        }
        let seen = monitor.take().await?;
        eprintln!("redis commands for {N} client_credentials grants, {kind}: {seen:?}");
        figures.push(seen.total_round_trips());
    }
    // No round trip with a shared secret; one per replay cache (the assertion's jti, the
    // proof's jti) otherwise, each one script (EXISTS, HSET, PEXPIRE in one EVALSHA).
    assert_eq!(figures, [0, N, 2 * N]);
    Ok(())
}
