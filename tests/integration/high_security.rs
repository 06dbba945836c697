//! High-security clients (issue 14): `JsonWebKey` client secrets, `private_key_jwt` at the
//! token, introspection and revocation endpoints (RFC 7523), on `serve` and across cluster
//! nodes. Assertions are signed with `jsonwebtoken` (an independent implementation) and
//! sent with the `oauth2` crate where it can carry them (extra parameters), raw otherwise.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, Scope, TokenResponse, TokenUrl};
use reqwest::Method;
use serde_json::{json, Value};
use signet_jose::{generate_pkcs8, Algorithm, SigningKey};
use signet_tests::{verify_jwt, Serve, ServeOptions};

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client's key pair: the private half signs assertions, the public JWK is registered.
pub struct ClientKeyPair {
    pub key: Arc<SigningKey>,
}

impl ClientKeyPair {
    pub fn new(alg: Algorithm, kid: &str) -> Self {
        let der = generate_pkcs8(alg).unwrap();
        ClientKeyPair {
            key: Arc::new(SigningKey::from_pkcs8(kid, alg, &der).unwrap()),
        }
    }

    /// The public JWK as the JSON string a `JsonWebKey` secret's value holds.
    pub fn public_jwk(&self) -> String {
        serde_json::to_string(self.key.public_jwk()).unwrap()
    }

    /// A signed assertion with these claims, by `jsonwebtoken`.
    pub fn sign(&self, claims: &Value) -> String {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let der = self.key.pkcs8_der();
        // PKCS#8 as PEM: jsonwebtoken reads RSA DER only as PKCS#1.
        let rsa_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec()));
        let (alg, enc) = match self.key.alg() {
            Algorithm::ES256 => (
                jsonwebtoken::Algorithm::ES256,
                jsonwebtoken::EncodingKey::from_ec_der(der),
            ),
            Algorithm::EdDSA => (
                jsonwebtoken::Algorithm::EdDSA,
                jsonwebtoken::EncodingKey::from_ed_der(der),
            ),
            Algorithm::RS256 => (
                jsonwebtoken::Algorithm::RS256,
                jsonwebtoken::EncodingKey::from_rsa_pem(rsa_pem.as_bytes()).unwrap(),
            ),
            Algorithm::PS256 => (
                jsonwebtoken::Algorithm::PS256,
                jsonwebtoken::EncodingKey::from_rsa_pem(rsa_pem.as_bytes()).unwrap(),
            ),
        };
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = Some(self.key.kid().to_owned());
        jsonwebtoken::encode(&header, claims, &enc).unwrap()
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Good assertion claims for `client` at `aud`, with a fresh `jti`.
pub fn claims(client: &str, aud: &str) -> Value {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    json!({"iss": client, "sub": client, "aud": aud, "exp": now() + 60, "iat": now(),
           "jti": format!("jti-{}-{n}", now())})
}

/// The `client_credentials` form with an assertion.
pub fn assertion_form<'a>(assertion: &'a str, scope: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("scope", scope),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ]
}

/// The orders API and a client `signer` whose secret is the public JWK of `key`.
pub fn signer_client(id: &str, key: &ClientKeyPair) -> Value {
    json!({"clientId": id, "allowedGrantTypes": ["client_credentials"],
        "clientSecrets": [{"type": "JsonWebKey", "value": key.public_jwk(),
                           "description": "signing key"}],
        "allowedScopes": ["orders.read"]})
}

async fn post(s: &Serve, path: &str, form: &[(&str, &str)]) -> anyhow::Result<(u16, Value)> {
    let r = s
        .http()
        .post(format!("{}{path}", s.issuer))
        .form(form)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

fn none_alg(claims: &Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[tokio::test]
async fn private_key_jwt_authenticates_at_token_introspection_and_revocation() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    super::client_credentials::register_backend(&s).await?;
    let es = ClientKeyPair::new(Algorithm::ES256, "signer-es");
    let ed = ClientKeyPair::new(Algorithm::EdDSA, "other-ed");
    s.create("/Client", signer_client("signer", &es)).await?;
    s.create("/Client", signer_client("other", &ed)).await?;
    // Reads never return the key, only its type.
    let (_, read) = s.admin_call(Method::GET, "/Client/signer", None).await?;
    assert_eq!(
        read["clientSecrets"],
        json!([{"type": "JsonWebKey", "description": "signing key", "expiration": null}])
    );

    // The oauth2 crate sends the assertion as extra parameters (no secret).
    let token_url = format!("{}/oauth2/token", s.issuer);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    for aud in [s.issuer.clone(), token_url.clone()] {
        let assertion = es.sign(&claims("signer", &aud));
        let token = BasicClient::new(ClientId::new("signer".into()))
            .set_token_uri(TokenUrl::new(token_url.clone())?)
            .set_auth_type(AuthType::RequestBody)
            .exchange_client_credentials()
            .add_scope(Scope::new("orders.read".into()))
            .add_extra_param("client_assertion_type", ASSERTION_TYPE)
            .add_extra_param("client_assertion", assertion)
            .request_async(&http)
            .await
            .map_err(|e| anyhow::anyhow!("aud {aud}: {e:?}"))?;
        let claims = verify_jwt(
            token.access_token().secret(),
            &s.jwks().await?,
            &s.issuer,
            "orders-api",
        )?;
        assert_eq!(claims["client_id"], "signer");
    }

    // Each refusal is invalid_client (401), never the assertion echoed.
    let refused = |st: u16, body: &Value, want: &str| {
        assert_eq!(st, 401, "{body}");
        assert_eq!(body["error"], "invalid_client", "{body}");
        let d = body["error_description"].as_str().unwrap_or_default();
        assert!(d.contains(want), "{want:?} not in {body}");
        assert!(!d.contains("eyJ"), "{body}");
    };
    let good = claims("signer", &s.issuer);
    let once = es.sign(&good);
    let (st, b) = post(&s, "/oauth2/token", &assertion_form(&once, "orders.read")).await?;
    assert_eq!(st, 200, "{b}");
    // Replay: the same jti again, even in a new assertion.
    let (st, b) = post(&s, "/oauth2/token", &assertion_form(&once, "orders.read")).await?;
    refused(st, &b, "already used");
    let mut later = good.clone();
    later["exp"] = json!(now() + 120);
    let again = es.sign(&later);
    let (st, b) = post(&s, "/oauth2/token", &assertion_form(&again, "orders.read")).await?;
    refused(st, &b, "already used");

    let with = |k: &str, v: Value| {
        let mut c = claims("signer", &s.issuer);
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v;
        }
        es.sign(&c)
    };
    for (assertion, want) in [
        (with("exp", json!(now() - 120)), "expired"),
        (with("exp", Value::Null), "no exp"),
        (with("exp", json!(now() + 3600)), "too far ahead"),
        (with("aud", json!("https://elsewhere.example")), "aud"),
        (
            with("aud", json!(format!("{}/oauth2/introspect", s.issuer))),
            "aud",
        ),
        (with("jti", Value::Null), "jti"),
        (with("iss", json!("other")), "iss and sub"),
        (with("nbf", json!(now() + 600)), "not valid yet"),
        (with("iat", json!(now() + 600)), "in the future"),
        (none_alg(&claims("signer", &s.issuer)), "alg"),
        // HMAC keyed with the public key: the algorithm-confusion attack.
        (
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims("signer", &s.issuer),
                &jsonwebtoken::EncodingKey::from_secret(es.public_jwk().as_bytes()),
            )?,
            "alg",
        ),
        // Another client's key, claiming to be `signer`.
        (
            ed.sign(&claims("signer", &s.issuer)),
            "client authentication failed",
        ),
        ("not.a.jwt".to_owned(), "not a JWT"),
    ] {
        let (st, b) = post(
            &s,
            "/oauth2/token",
            &assertion_form(&assertion, "orders.read"),
        )
        .await?;
        refused(st, &b, want);
    }
    // A wrong assertion type, a body client_id that is not the assertion's, a shared
    // secret beside the assertion.
    let fresh = es.sign(&claims("signer", &s.issuer));
    let mut form = assertion_form(&fresh, "orders.read");
    form[2].1 = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer";
    let (st, b) = post(&s, "/oauth2/token", &form).await?;
    refused(st, &b, "client_assertion_type");
    let mut form = assertion_form(&fresh, "orders.read");
    form.push(("client_id", "other"));
    let (st, b) = post(&s, "/oauth2/token", &form).await?;
    refused(st, &b, "differs");
    let mut form = assertion_form(&fresh, "orders.read");
    form.push(("client_secret", "backend-secret-0123456789"));
    let (st, b) = post(&s, "/oauth2/token", &form).await?;
    assert_eq!(
        (st, b["error"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    // The methods do not mix: the key client has no shared secret, and a shared-secret
    // client cannot present an assertion (signed with any key).
    let (st, _, b) = s
        .token_request(
            Some(("signer", &es.public_jwk())),
            &[("grant_type", "client_credentials")],
        )
        .await?;
    refused(st, &b, "client authentication failed");
    let backend = es.sign(&claims("backend", &s.issuer));
    let (st, b) = post(
        &s,
        "/oauth2/token",
        &assertion_form(&backend, "orders.read"),
    )
    .await?;
    refused(st, &b, "client authentication failed");

    // Introspection and revocation take assertions too (aud: the issuer or that endpoint).
    let a = es.sign(&claims("signer", &s.issuer));
    let (_, t) = post(&s, "/oauth2/token", &assertion_form(&a, "orders.read")).await?;
    let access = t["access_token"].as_str().unwrap().to_owned();
    let a = es.sign(&claims(
        "signer",
        &format!("{}/oauth2/introspect", s.issuer),
    ));
    let (st, b) = post(
        &s,
        "/oauth2/introspect",
        &[
            ("token", &access),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &a),
        ],
    )
    .await?;
    assert_eq!(
        (st, &b["active"], &b["client_id"]),
        (200, &json!(true), &json!("signer")),
        "{b}"
    );
    let a = es.sign(&claims("signer", &s.issuer));
    let r = s
        .http()
        .post(format!("{}/oauth2/revoke", s.issuer))
        .form(&[
            ("token", access.as_str()),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &a),
        ])
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let a2 = es.sign(&claims("signer", &s.issuer));
    let (st, b) = post(
        &s,
        "/oauth2/introspect",
        &[
            ("token", &access),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &a2),
        ],
    )
    .await?;
    assert_eq!((st, &b["active"]), (200, &json!(false)), "{b}");
    // The replayed assertion is refused at revocation too.
    let r = s
        .http()
        .post(format!("{}/oauth2/revoke", s.issuer))
        .form(&[
            ("token", access.as_str()),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &a),
        ])
        .send()
        .await?;
    assert_eq!(r.status(), 401);

    // An expired key no longer verifies; a disabled client is refused alike.
    let mut body = signer_client("signer", &es);
    body["clientSecrets"][0]["expiration"] = json!("2020-01-01T00:00:00Z");
    let (st, b) = s.admin_call(Method::PUT, "/Client", Some(&body)).await?;
    assert_eq!(st, 200, "{b}");
    let a = es.sign(&claims("signer", &s.issuer));
    let (st, b) = post(&s, "/oauth2/token", &assertion_form(&a, "orders.read")).await?;
    refused(st, &b, "client authentication failed");

    // Each replay is counted under its own reason.
    let metrics = s
        .http()
        .get(format!("{}/metrics", s.issuer))
        .send()
        .await?
        .text()
        .await?;
    let replays = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"signet_client_auth_failures_total{reason="replayed_assertion"} "#)
        })
        .map(str::trim);
    assert_eq!(replays, Some("3"), "{metrics}");

    // Discovery advertises the method and its algorithms.
    let d: Value = s
        .http()
        .get(format!("{}/.well-known/openid-configuration", s.issuer))
        .send()
        .await?
        .json()
        .await?;
    for k in [
        "token_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        let methods = d[k].as_array().unwrap();
        assert!(methods.contains(&json!("private_key_jwt")), "{k}: {d}");
        assert!(methods.contains(&json!("client_secret_jwt")), "{k}: {d}");
        let algs = &d[k.replace("methods", "signing_alg_values")];
        assert_eq!(
            algs,
            &json!(["RS256", "PS256", "ES256", "EdDSA", "HS256", "HS384", "HS512"]),
            "{k}: {d}"
        );
    }
    Ok(())
}

/// The shared secret of the `ClientSecretJwt` tests: 48 bytes (HS256 and HS384, not HS512).
pub const JWT_SECRET: &str = "hmac-secret-0123456789abcdef0123456789abcdefghij";

/// A client that authenticates with `client_secret_jwt`.
pub fn hmac_client(id: &str) -> Value {
    json!({"clientId": id, "allowedGrantTypes": ["client_credentials"],
        "clientSecrets": [{"type": "ClientSecretJwt", "value": JWT_SECRET}],
        "allowedScopes": ["orders.read"]})
}

/// An assertion signed by `jsonwebtoken` with an HMAC keyed by `secret`.
pub fn hmac_sign(alg: jsonwebtoken::Algorithm, secret: &str, claims: &Value) -> String {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// `client_secret_jwt` (RFC 7523 section 2.2, OIDC Core section 9): a client whose secret
/// is a `ClientSecretJwt` signs its assertions with it (HS256/384/512; a secret shorter
/// than the hash is refused), at the token and introspection endpoints, sent by the
/// `oauth2` crate; it never authenticates by sending the secret itself. The secret is
/// sealed: neither the data directory nor `/Events` holds it, and it survives a restart.
#[tokio::test]
async fn client_secret_jwt_authenticates_with_a_sealed_shared_secret() -> anyhow::Result<()> {
    use jsonwebtoken::Algorithm::{HS256, HS384, HS512};
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    super::client_credentials::register_backend(&s).await?;
    s.create("/Client", hmac_client("hmac")).await?;
    let (_, read) = s.admin_call(Method::GET, "/Client/hmac", None).await?;
    assert_eq!(
        read["clientSecrets"],
        json!([{"type": "ClientSecretJwt", "description": null, "expiration": null}])
    );

    let token_url = format!("{}/oauth2/token", s.issuer);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut issued = String::new();
    for alg in [HS256, HS384] {
        let assertion = hmac_sign(alg, JWT_SECRET, &claims("hmac", &s.issuer));
        let token = BasicClient::new(ClientId::new("hmac".into()))
            .set_token_uri(TokenUrl::new(token_url.clone())?)
            .set_auth_type(AuthType::RequestBody)
            .exchange_client_credentials()
            .add_scope(Scope::new("orders.read".into()))
            .add_extra_param("client_assertion_type", ASSERTION_TYPE)
            .add_extra_param("client_assertion", assertion)
            .request_async(&http)
            .await
            .map_err(|e| anyhow::anyhow!("{alg:?}: {e:?}"))?;
        let at = verify_jwt(
            token.access_token().secret(),
            &s.jwks().await?,
            &s.issuer,
            "orders-api",
        )?;
        assert_eq!(at["client_id"], "hmac");
        issued = token.access_token().secret().clone();
    }
    // Introspection of its own token, authenticated the same way.
    let token = issued.as_str();
    let assertion = hmac_sign(HS256, JWT_SECRET, &claims("hmac", &s.issuer));
    let (st, b) = post(
        &s,
        "/oauth2/introspect",
        &[
            ("token", token),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ],
    )
    .await?;
    assert_eq!((st, b["active"].as_bool()), (200, Some(true)), "{b}");

    let refused = |st: u16, body: &Value, want: &str| {
        assert_eq!(
            (st, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{body}"
        );
        let d = body["error_description"].as_str().unwrap_or_default();
        assert!(d.contains(want), "{want:?} not in {body}");
    };
    let once = hmac_sign(HS256, JWT_SECRET, &claims("hmac", &s.issuer));
    let (st, b) = post(&s, "/oauth2/token", &assertion_form(&once, "orders.read")).await?;
    assert_eq!(st, 200, "{b}");
    let (st, b) = post(&s, "/oauth2/token", &assertion_form(&once, "orders.read")).await?;
    refused(st, &b, "already used");
    // Another secret; a hash longer than the secret; a public-key alg; the secret sent.
    let wrong = "another-secret-0123456789abcdef0123456789abcdefg";
    let forged = hmac_sign(HS256, wrong, &claims("hmac", &s.issuer));
    let (st, b) = post(&s, "/oauth2/token", &assertion_form(&forged, "orders.read")).await?;
    refused(st, &b, "authentication failed");
    let long = hmac_sign(HS512, JWT_SECRET, &claims("hmac", &s.issuer));
    let (st, b) = post(&s, "/oauth2/token", &assertion_form(&long, "orders.read")).await?;
    refused(st, &b, "longer secret");
    let es = ClientKeyPair::new(Algorithm::ES256, "es");
    let signed = es.sign(&claims("hmac", &s.issuer));
    let (st, b) = post(&s, "/oauth2/token", &assertion_form(&signed, "orders.read")).await?;
    refused(st, &b, "HS256");
    let (st, _, b) = s
        .token_request(
            Some(("hmac", JWT_SECRET)),
            &[("grant_type", "client_credentials")],
        )
        .await?;
    assert_eq!(
        (st, b["error"].as_str()),
        (401, Some("invalid_client")),
        "{b}"
    );
    // HMAC is never accepted from a client with public keys (keyed with its public JWK).
    s.create("/Client", signer_client("signer", &es)).await?;
    let confused = hmac_sign(HS256, &es.public_jwk(), &claims("signer", &s.issuer));
    let (st, b) = post(
        &s,
        "/oauth2/token",
        &assertion_form(&confused, "orders.read"),
    )
    .await?;
    refused(st, &b, "HMAC only");

    // Checked when written, naming the field.
    for (secrets, field) in [
        (
            json!([{"type": "ClientSecretJwt", "value": "too-short-0123456789"}]),
            "clientSecrets[0].value",
        ),
        (
            json!([{"type": "ClientSecretJwt"}]),
            "clientSecrets[0].value",
        ),
        (
            json!([{"type": "ClientSecretJwt", "value": JWT_SECRET}, {"value": "shared-secret-0123456789"}]),
            "clientSecrets",
        ),
    ] {
        let mut body = hmac_client("bad");
        body["clientSecrets"] = secrets;
        let (st, b) = s.admin_call(Method::POST, "/Client", Some(&body)).await?;
        assert_eq!(st, 400, "{b}");
        assert_eq!(b["field"], field, "{b}");
    }

    // Sealed: not in the data directory, not in the audit trail; a restart keeps it.
    let (_, events) = s.admin_call(Method::GET, "/Events", None).await?;
    assert!(!events.to_string().contains(JWT_SECRET), "{events}");
    s.stop().await?;
    for entry in walk(dir.path())? {
        let bytes = std::fs::read(&entry)?;
        assert!(
            !bytes
                .windows(JWT_SECRET.len())
                .any(|w| w == JWT_SECRET.as_bytes()),
            "the secret is in {}",
            entry.display()
        );
    }
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let again = hmac_sign(HS256, JWT_SECRET, &claims("hmac", &s.issuer));
    let (st, b) = post(&s, "/oauth2/token", &assertion_form(&again, "orders.read")).await?;
    assert_eq!(st, 200, "after a restart: {b}");
    Ok(())
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

/// Keys the admin API refuses, naming the field: a private JWK, an unsupported key type,
/// the certificate types (mTLS is not offered yet), a mix of keys and shared secrets.
#[tokio::test]
async fn client_keys_are_checked_when_written() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    super::client_credentials::register_backend(&s).await?;
    let es = ClientKeyPair::new(Algorithm::ES256, "k");
    let mut private: Value = serde_json::from_str(&es.public_jwk())?;
    private["d"] = json!("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
    let rsa = ClientKeyPair::new(Algorithm::RS256, "r");
    let mut hs: Value = serde_json::from_str(&rsa.public_jwk())?;
    hs["alg"] = json!("HS256");
    for (secrets, field, want) in [
        (
            json!([{"type": "JsonWebKey", "value": private.to_string()}]),
            "clientSecrets[0].value",
            "private",
        ),
        (
            json!([{"type": "JsonWebKey", "value": hs.to_string()}]),
            "clientSecrets[0].value",
            "HS256",
        ),
        (
            json!([{"type": "JsonWebKey", "value": "{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}"}]),
            "clientSecrets[0].value",
            "private",
        ),
        // Certificates (mutual TLS, tests/integration/mtls.rs) are checked as certificates.
        (
            json!([{"type": "X509CertificateBase64", "value": "MIIB"}]),
            "clientSecrets[0].value",
            "DER in standard base64",
        ),
        (
            json!([{"type": "X509Name", "value": "svc"}]),
            "clientSecrets[0].value",
            "distinguished name",
        ),
        (
            json!([{"type": "X509Certificate", "value": "MIIB"}]),
            "clientSecrets[0].type",
            "must be SharedSecret, JsonWebKey, ClientSecretJwt, X509CertificateBase64 or X509Name",
        ),
        (
            json!([{"type": "JsonWebKey", "value": es.public_jwk()},
                   {"value": "svc-secret-0123456789"}]),
            "clientSecrets",
            "never a mix",
        ),
    ] {
        let mut body = signer_client("keyed", &es);
        body["clientSecrets"] = secrets;
        let (st, b) = s.admin_call(Method::POST, "/Client", Some(&body)).await?;
        assert_eq!((st, b["field"].as_str()), (400, Some(field)), "{b}");
        assert!(b.to_string().contains(want), "{want:?} not in {b}");
    }
    // An RSA key (RS256) authenticates too.
    s.create("/Client", signer_client("rsa", &rsa)).await?;
    let a = rsa.sign(&claims("rsa", &s.issuer));
    let (st, b) = post(&s, "/oauth2/token", &assertion_form(&a, "orders.read")).await?;
    assert_eq!(st, 200, "{b}");
    Ok(())
}

/// A `jti` used at node 1 is refused at node 2: the replay cache is the cluster's store
/// (Redis), not a node's memory.
#[tokio::test]
async fn an_assertion_used_at_one_node_is_refused_at_another() -> anyhow::Result<()> {
    use signet_tests::cluster::Cluster;
    use signet_tests::eventually;
    use std::time::Duration;

    let c = Cluster::start(2).await?;
    let es = ClientKeyPair::new(Algorithm::ES256, "cluster-key");
    for (path, body) in [
        ("/Resource/ApiScope", json!({"name": "orders.read"})),
        (
            "/Resource/ApiResource",
            json!({"name": "orders-api", "scopes": ["orders.read"]}),
        ),
        ("/Client", signer_client("signer", &es)),
        ("/Client", hmac_client("hmac")),
    ] {
        let (st, b) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        assert_eq!(st, 201, "{b}");
    }
    let at = |node: usize, assertion: String| {
        let url = format!("{}/oauth2/token", c.issuers[node].public);
        let http = c.http.clone();
        async move {
            let r = http
                .post(url)
                .form(&assertion_form(&assertion, "orders.read"))
                .send()
                .await?;
            let status = r.status().as_u16();
            anyhow::Ok((status, r.json::<Value>().await.unwrap_or(Value::Null)))
        }
    };
    // The assertion's aud is the shared issuer identifier, whichever node answers.
    eventually(Duration::from_secs(10), || async {
        let (st, _) = at(1, es.sign(&claims("signer", &c.issuer))).await.ok()?;
        (st == 200).then_some(())
    })
    .await?;
    let once = es.sign(&claims("signer", &c.issuer));
    let (st, b) = at(0, once.clone()).await?;
    assert_eq!(st, 200, "{b}");
    let (st, b) = at(1, once).await?;
    assert_eq!(
        (st, b["error"].as_str()),
        (401, Some("invalid_client")),
        "{b}"
    );
    assert!(
        b["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("already used"),
        "{b}"
    );
    // client_secret_jwt: sealed at node 1 (under the cluster secret), opened at node 2.
    let hmac = |claims: &Value| hmac_sign(jsonwebtoken::Algorithm::HS256, JWT_SECRET, claims);
    eventually(Duration::from_secs(10), || async {
        let (st, _) = at(1, hmac(&claims("hmac", &c.issuer))).await.ok()?;
        (st == 200).then_some(())
    })
    .await?;
    let once = hmac(&claims("hmac", &c.issuer));
    assert_eq!(at(1, once.clone()).await?.0, 200);
    let (st, b) = at(0, once).await?;
    assert_eq!(
        (st, b["error"].as_str()),
        (401, Some("invalid_client")),
        "{b}"
    );
    Ok(())
}

/// A client that publishes its keys at a `jwksUri` authenticates with them: the set is
/// fetched once and cached per its `Cache-Control`, a rotated key (an unknown `kid`) is
/// picked up by one rate-limited refetch however many assertions name it, and a set that
/// cannot be used (a private key in it, an error, a redirect) is `invalid_client`, never a
/// 5xx. The field is checked when written.
#[tokio::test]
async fn a_client_authenticates_with_the_keys_at_its_jwks_uri() -> anyhow::Result<()> {
    use signet_tests::eventually;
    use signet_tests::receiver::Receiver;
    use std::time::Duration;

    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            extra_args: vec!["--allow-private-outbound".into()],
            ..Default::default()
        },
    )
    .await?;
    super::client_credentials::register_backend(&s).await?;
    let jwks = Receiver::start().await?;
    let first = ClientKeyPair::new(Algorithm::ES256, "first");
    let second = ClientKeyPair::new(Algorithm::EdDSA, "second");
    let set = |keys: &[&ClientKeyPair]| {
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| serde_json::from_str(&k.public_jwk()).unwrap())
            .collect();
        json!({ "keys": keys }).to_string()
    };
    jwks.serve_document(
        "application/jwk-set+json",
        &["Cache-Control: public, max-age=3600"],
        &set(&[&first]),
    );
    let client = |id: &str, uri: &str| {
        json!({"clientId": id, "allowedGrantTypes": ["client_credentials"],
               "jwksUri": uri, "allowedScopes": ["orders.read"]})
    };
    s.create(
        "/Client",
        client("published", &format!("{}/jwks", jwks.base)),
    )
    .await?;
    // Reads show the URI.
    let (_, read) = s.admin_call(Method::GET, "/Client/published", None).await?;
    assert_eq!(read["jwksUri"], format!("{}/jwks", jwks.base));

    for _ in 0..3 {
        let a = first.sign(&claims("published", &s.issuer));
        let (st, b) = post(&s, "/oauth2/token", &assertion_form(&a, "orders.read")).await?;
        assert_eq!(st, 200, "{b}");
    }
    assert_eq!(jwks.received("/jwks").len(), 1, "the set is cached");
    // The shared-secret methods are not this client's.
    let (st, b) = post(
        &s,
        "/oauth2/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "published"),
            ("client_secret", "published-secret-0123"),
        ],
    )
    .await?;
    assert_eq!(
        (st, b["error"].as_str()),
        (401, Some("invalid_client")),
        "{b}"
    );

    // The client rotates to a key the cache does not know: assertions naming it are
    // refused until one refetch (at most one per interval) finds it; then it works.
    jwks.serve_document(
        "application/jwk-set+json",
        &["Cache-Control: max-age=3600"],
        &set(&[&second]),
    );
    let refused = std::sync::atomic::AtomicUsize::new(0);
    eventually(Duration::from_secs(30), || {
        let a = second.sign(&claims("published", &s.issuer));
        let s = &s;
        let refused = &refused;
        async move {
            let (st, b) = post(s, "/oauth2/token", &assertion_form(&a, "orders.read"))
                .await
                .ok()?;
            if st == 200 {
                return Some(());
            }
            assert_eq!(
                (st, b["error"].as_str()),
                (401, Some("invalid_client")),
                "{b}"
            );
            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            None
        }
    })
    .await?;
    assert_eq!(
        jwks.received("/jwks").len(),
        2,
        "{refused:?} refused assertions with an unknown kid cost one refetch"
    );
    // The old key left the set.
    let a = first.sign(&claims("published", &s.issuer));
    let (st, _) = post(&s, "/oauth2/token", &assertion_form(&a, "orders.read")).await?;
    assert_eq!(st, 401);

    // Sets that cannot be used.
    let mut private: Value = serde_json::from_str(&first.public_jwk())?;
    private["d"] = json!("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
    for (i, (status, body)) in [
        (200, json!({ "keys": [private] }).to_string()),
        (200, "not json".to_owned()),
        (500, set(&[&first])),
        (302, set(&[&first])),
    ]
    .into_iter()
    .enumerate()
    {
        let bad = Receiver::start().await?;
        bad.serve_document("application/json", &[], &body);
        bad.answer(
            status,
            (status == 302).then_some(&format!("{}/jwks", jwks.base)[..]),
        );
        let id = format!("bad-{i}");
        s.create("/Client", client(&id, &format!("{}/jwks", bad.base)))
            .await?;
        let a = first.sign(&claims(&id, &s.issuer));
        let (st, b) = post(&s, "/oauth2/token", &assertion_form(&a, "orders.read")).await?;
        assert_eq!(
            (st, b["error"].as_str()),
            (401, Some("invalid_client")),
            "{i}: {b}"
        );
        assert!(
            b["error_description"]
                .as_str()
                .unwrap_or_default()
                .contains("jwksUri"),
            "{i}: {b}"
        );
    }
    assert_eq!(
        jwks.received("/jwks").len(),
        2,
        "a redirect is not followed"
    );

    // The field is checked when written.
    for (patch, field) in [
        (json!({"jwksUri": "http://keys.example/jwks"}), "jwksUri"),
        (
            json!({"jwksUri": "https://keys.example/jwks#frag"}),
            "jwksUri",
        ),
        (json!({"jwksUri": "not a url"}), "jwksUri"),
        (
            json!({"jwksUri": "https://keys.example/jwks",
                   "clientSecrets": [{"value": "shared-secret-0123456789"}]}),
            "jwksUri",
        ),
    ] {
        let mut body = client("checked", "https://keys.example/jwks");
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (st, b) = s.admin_call(Method::POST, "/Client", Some(&body)).await?;
        assert_eq!(
            (st, b["field"].as_str()),
            (400, Some(field)),
            "{patch}: {b}"
        );
    }
    Ok(())
}
