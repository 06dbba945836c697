//! Mutual TLS (RFC 8705) end to end. Certificates are minted per test with the `openssl`
//! CLI (an independent implementation): a CA, a server certificate for 127.0.0.1, a client
//! certificate the CA issued, and self-signed client certificates (one with the CA-issued
//! one's subject, as an attacker would make). Signet terminates TLS itself
//! (`--tls-cert/--tls-key`, `--tls-client-ca`) and clients present certificates through
//! reqwest's rustls identities; behind a "proxy" (this test process, a trusted peer) the
//! certificate travels in `X-SSL-Client-Cert`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use signet_tests::browser::{params_of, Browser, PKCE_CHALLENGE, PKCE_VERIFIER};
use signet_tests::{verify_jwt, Serve, ServeOptions};

use super::dpop::ExampleResourceServer;

const API_SECRET: &str = "orders-api-secret-0123456789";
const BACKEND_SECRET: &str = "backend-secret-0123456789";
const REDIRECT: &str = "http://127.0.0.1:1/cb";
const HEADER: &str = "X-SSL-Client-Cert";

/// Certificates in a directory, by name: `<name>.pem` (certificate) and `<name>.key`.
struct Pki {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("run openssl")?;
    ensure!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

impl Pki {
    /// A CA (`ca`), a server certificate for 127.0.0.1 (`server`), a client certificate
    /// from the CA (`issued`: CN=payments,O=Acme Corp,C=SE), the same subject self-signed
    /// (`forged`), and two other self-signed client certificates (`selfie`, `other`).
    fn new() -> anyhow::Result<Pki> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let mut ca = vec![
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Test CA",
        ];
        ca.extend(EC);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(d, &ca)?;
        for (name, subject, ext) in [
            (
                "server",
                "/CN=127.0.0.1",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n",
            ),
            (
                "issued",
                "/C=SE/O=Acme Corp/CN=payments",
                "extendedKeyUsage=clientAuth\nbasicConstraints=critical,CA:FALSE\n",
            ),
        ] {
            std::fs::write(d.join(format!("{name}.ext")), ext)?;
            let (key, csr) = (format!("{name}.key"), format!("{name}.csr"));
            let mut req = vec!["req", "-new", "-nodes", "-subj", subject];
            req.extend(EC);
            req.extend(["-keyout", &key, "-out", &csr]);
            openssl(d, &req)?;
            let (pem, ext) = (format!("{name}.pem"), format!("{name}.ext"));
            openssl(
                d,
                &[
                    "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key",
                    "-CAcreateserial", "-days", "2", "-extfile", &ext, "-out", &pem,
                ],
            )?;
        }
        for (name, subject) in [
            ("forged", "/C=SE/O=Acme Corp/CN=payments"),
            ("selfie", "/CN=selfie"),
            ("other", "/CN=other"),
        ] {
            let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
            let mut req = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", subject];
            req.extend(EC);
            req.extend(["-keyout", &key, "-out", &pem]);
            openssl(d, &req)?;
        }
        Ok(Pki { dir })
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn pem(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(&format!("{name}.pem"))).unwrap()
    }

    fn der(&self, name: &str) -> Vec<u8> {
        pem::parse(self.pem(name)).unwrap().into_contents()
    }

    /// `X509CertificateBase64`: the DER in standard base64.
    fn b64(&self, name: &str) -> String {
        STANDARD.encode(self.der(name))
    }

    /// `x5t#S256`, computed here with aws-lc-rs.
    fn x5t(&self, name: &str) -> String {
        URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &self.der(name),
        ))
    }

    /// An HTTPS client that trusts the test CA and presents `name`'s certificate (none for
    /// `None`).
    fn client(&self, name: Option<&str>) -> anyhow::Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.pem("ca"))?)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(name) = name {
            let mut pem = self.pem(name);
            pem.extend(std::fs::read(self.path(&format!("{name}.key")))?);
            b = b.identity(reqwest::Identity::from_pem(&pem)?);
        }
        Ok(b.build()?)
    }
}

async fn token(
    http: &reqwest::Client,
    issuer: &str,
    form: &[(&str, &str)],
    header: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    let mut req = http.post(format!("{issuer}/oauth2/token")).form(form);
    if let Some(h) = header {
        req = req.header(HEADER, h);
    }
    let r = req.send().await?;
    Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
}

fn cc(client: &str) -> Vec<(&str, &str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", client),
        ("scope", "orders.read"),
    ]
}

async fn register_api(s: &Serve) -> anyhow::Result<()> {
    s.create("/Resource/ApiScope", json!({"name": "orders.read"}))
        .await?;
    s.create(
        "/Resource/ApiResource",
        json!({"name": "orders-api", "scopes": ["orders.read"], "apiSecrets": [{"value": API_SECRET}]}),
    )
    .await?;
    Ok(())
}

fn machine(id: &str, secrets: Value) -> Value {
    json!({"clientId": id, "allowedGrantTypes": ["client_credentials"],
           "clientSecrets": secrets, "allowedScopes": ["orders.read"]})
}

#[tokio::test]
async fn mtls_client_authentication_and_certificate_bound_tokens_over_signets_own_tls(
) -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let path = |f: &str| pki.path(f).display().to_string();
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            https: true,
            extra_args: vec![
                "--tls-cert".into(),
                path("server.pem"),
                "--tls-key".into(),
                path("server.key"),
                "--tls-client-ca".into(),
                path("ca.pem"),
            ],
            ..Default::default()
        },
    )
    .await?;
    ensure!(s.issuer.starts_with("https://"), "{}", s.issuer);
    register_api(&s).await?;
    // The DN as written differs from the certificate's in case, spacing and attribute names.
    s.create(
        "/Client",
        machine(
            "pki",
            json!([{"type": "X509Name", "value": "cn=Payments,  O=ACME   corp, 2.5.4.6=se"}]),
        ),
    )
    .await?;
    s.create(
        "/Client",
        machine(
            "selfie",
            json!([{"type": "X509CertificateBase64", "value": pki.b64("selfie")}]),
        ),
    )
    .await?;
    s.create(
        "/Client",
        machine("backend", json!([{"value": BACKEND_SECRET}])),
    )
    .await?;

    // Discovery offers both methods and bound tokens; no aliases (the endpoints take
    // certificates themselves).
    let none = pki.client(None)?;
    let doc: Value = none
        .get(format!("{}/.well-known/openid-configuration", s.issuer))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(doc["tls_client_certificate_bound_access_tokens"], true);
    for member in [
        "token_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        let methods = doc[member].as_array().context("methods")?;
        for m in ["tls_client_auth", "self_signed_tls_client_auth"] {
            assert!(methods.contains(&json!(m)), "{member}: {methods:?}");
        }
    }
    assert!(doc.get("mtls_endpoint_aliases").is_none(), "{doc}");

    let jwks = s.jwks().await?;
    // tls_client_auth: the CA's certificate with the registered subject.
    let issued = pki.client(Some("issued"))?;
    let (st, body) = token(&issued, &s.issuer, &cc("pki"), None).await?;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let bound = body["access_token"].as_str().context("token")?.to_owned();
    let claims = verify_jwt(&bound, &jwks, &s.issuer, "orders-api")?;
    assert_eq!(claims["cnf"], json!({"x5t#S256": pki.x5t("issued")}));
    // The same subject self-signed, another certificate, no certificate: invalid_client.
    for who in [Some("forged"), Some("selfie"), None] {
        let (st, body) = token(&pki.client(who)?, &s.issuer, &cc("pki"), None).await?;
        assert_eq!(
            (st, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{who:?}: {body}"
        );
    }

    // self_signed_tls_client_auth: exactly the registered certificate.
    let selfie = pki.client(Some("selfie"))?;
    let (st, body) = token(&selfie, &s.issuer, &cc("selfie"), None).await?;
    assert_eq!(st, 200, "{body}");
    let selfie_token = body["access_token"].as_str().context("token")?.to_owned();
    assert_eq!(
        verify_jwt(&selfie_token, &jwks, &s.issuer, "orders-api")?["cnf"]["x5t#S256"],
        pki.x5t("selfie")
    );
    for who in [Some("other"), Some("issued"), None] {
        let (st, body) = token(&pki.client(who)?, &s.issuer, &cc("selfie"), None).await?;
        assert_eq!(
            (st, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{who:?}: {body}"
        );
    }
    // A certificate client cannot fall back to a secret.
    let mut with_secret = cc("selfie");
    with_secret.push(("client_secret", BACKEND_SECRET));
    let (st, _) = token(&selfie, &s.issuer, &with_secret, None).await?;
    assert_eq!(st, 401);

    // A shared-secret client that presents a certificate gets a token bound to it; without
    // one, a plain bearer token.
    let mut backend = cc("backend");
    backend.push(("client_secret", BACKEND_SECRET));
    let (st, body) = token(&pki.client(Some("other"))?, &s.issuer, &backend, None).await?;
    assert_eq!(st, 200, "{body}");
    let other_token = body["access_token"].as_str().context("token")?.to_owned();
    assert_eq!(
        verify_jwt(&other_token, &jwks, &s.issuer, "orders-api")?["cnf"]["x5t#S256"],
        pki.x5t("other")
    );
    let (st, body) = token(&none, &s.issuer, &backend, None).await?;
    assert_eq!(st, 200, "{body}");
    let plain = body["access_token"].as_str().context("token")?.to_owned();
    assert!(verify_jwt(&plain, &jwks, &s.issuer, "orders-api")?
        .get("cnf")
        .is_none());

    // Introspection returns the binding; the mTLS client authenticates there too.
    let i = s.introspect(("orders-api", API_SECRET), &bound).await?;
    assert_eq!(i["cnf"]["x5t#S256"], pki.x5t("issued"), "{i}");
    let own = |http: &reqwest::Client| {
        http.post(format!("{}/oauth2/introspect", s.issuer))
            .form(&[("token", selfie_token.as_str()), ("client_id", "selfie")])
            .send()
    };
    let r = own(&selfie).await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await?["active"], true);
    assert_eq!(own(&pki.client(Some("other"))?).await?.status(), 401);
    // Revocation with mTLS client authentication.
    let r = selfie
        .post(format!("{}/oauth2/revoke", s.issuer))
        .form(&[("token", selfie_token.as_str()), ("client_id", "selfie")])
        .send()
        .await?;
    assert_eq!(r.status(), 200);

    // libs/verify checks the binding (the example resource server, with the certificate
    // from a proxy header, is exercised behind the proxy below).
    let verifier = signet_verify::Verifier::builder(&s.issuer, "orders-api")
        .http_client(pki.client(None)?)
        .build()?;
    let ok = verifier
        .verify_mtls(&bound, Some(&pki.der("issued")))
        .await?;
    assert_eq!(ok.raw["cnf"]["x5t#S256"], pki.x5t("issued"));
    for cert in [Some(pki.der("other")), None] {
        let e = verifier
            .verify_mtls(&bound, cert.as_deref())
            .await
            .unwrap_err();
        assert!(
            matches!(e, signet_verify::VerifyError::CertificateMismatch),
            "{e}"
        );
    }
    assert!(matches!(
        verifier.verify(&bound).await.unwrap_err(),
        signet_verify::VerifyError::CertificateMismatch
    ));
    verifier.verify_mtls(&plain, None).await?;
    Ok(())
}

/// Authorizes as `pia` with PKCE; returns the code.
async fn code(issuer: &str, client: &str) -> anyhow::Result<String> {
    let mut u = url::Url::parse(&format!("{issuer}/oauth2/authorize"))?;
    u.query_pairs_mut()
        .append_pair("client_id", client)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile offline_access")
        .append_pair("state", "s")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    let r = Browser::new()
        .sign_in(u.as_str(), "pia", "pia's password 1")
        .await?;
    ensure!(r.status == 302, "login answered {}: {}", r.status, r.body);
    params_of(&r.location()?, false)
        .get("code")
        .cloned()
        .context("no code")
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_certificate_header_binds_tokens_and_refresh_tokens(
) -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    // This test process is the proxy: a trusted peer.
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            extra_args: vec![
                "--trusted-proxies".into(),
                "127.0.0.1".into(),
                "--mtls-base-url".into(),
                "https://mtls.example".into(),
            ],
            ..Default::default()
        },
    )
    .await?;
    register_api(&s).await?;
    let http = reqwest::Client::new();

    // Discovery: self-signed only (no CA configured), aliases at the proxy's mTLS host.
    let doc: Value = http
        .get(format!("{}/.well-known/openid-configuration", s.issuer))
        .send()
        .await?
        .json()
        .await?;
    let methods = doc["token_endpoint_auth_methods_supported"]
        .as_array()
        .context("methods")?;
    assert!(methods.contains(&json!("self_signed_tls_client_auth")));
    assert!(!methods.contains(&json!("tls_client_auth")), "{methods:?}");
    assert_eq!(
        doc["mtls_endpoint_aliases"],
        json!({
            "token_endpoint": "https://mtls.example/oauth2/token",
            "pushed_authorization_request_endpoint": "https://mtls.example/oauth2/par",
            "introspection_endpoint": "https://mtls.example/oauth2/introspect",
            "revocation_endpoint": "https://mtls.example/oauth2/revoke",
            "device_authorization_endpoint": "https://mtls.example/oauth2/device_authorization",
            "userinfo_endpoint": "https://mtls.example/userinfo",
        })
    );

    // Admin validation of certificate secrets names the value.
    for (kind, value) in [
        ("X509CertificateBase64", "not base64!"),
        ("X509CertificateBase64", "AAAA"),
        ("X509Name", "not a dn"),
    ] {
        let (st, body) = s
            .admin_call(
                reqwest::Method::POST,
                "/Client",
                Some(&machine("bad", json!([{"type": kind, "value": value}]))),
            )
            .await?;
        assert_eq!(st, 400, "{kind} {value}: {body}");
        assert!(
            body.to_string().contains("clientSecrets[0].value"),
            "{body}"
        );
    }
    s.create(
        "/Client",
        machine(
            "selfie",
            json!([{"type": "X509CertificateBase64", "value": pki.b64("selfie")}]),
        ),
    )
    .await?;

    // base64 DER (HAProxy) and URL-encoded PEM (nginx) both work.
    let pem_escaped: String = url::form_urlencoded::byte_serialize(&pki.pem("selfie"))
        .collect::<String>()
        .replace('+', "%20");
    for header in [pki.b64("selfie"), pem_escaped] {
        let (st, body) = token(&http, &s.issuer, &cc("selfie"), Some(&header)).await?;
        assert_eq!(st, 200, "{body}");
        let t = body["access_token"].as_str().context("token")?;
        assert_eq!(
            verify_jwt(t, &s.jwks().await?, &s.issuer, "orders-api")?["cnf"]["x5t#S256"],
            pki.x5t("selfie")
        );
    }
    let (st, body) = token(&http, &s.issuer, &cc("selfie"), Some(&pki.b64("other"))).await?;
    assert_eq!((st, body["error"].as_str()), (401, Some("invalid_client")));
    // With a DPoP proof as well, the token is bound to the DPoP key only.
    let key = super::dpop::DpopKey::new(signet_jose::Algorithm::ES256);
    let proof = key.proof("POST", &format!("{}/oauth2/token", s.issuer), None, None);
    let r = http
        .post(format!("{}/oauth2/token", s.issuer))
        .form(&cc("selfie"))
        .header(HEADER, pki.b64("selfie"))
        .header("DPoP", proof)
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await?;
    assert_eq!(body["token_type"], "DPoP");
    let t = body["access_token"].as_str().context("token")?;
    assert_eq!(
        verify_jwt(t, &s.jwks().await?, &s.issuer, "orders-api")?["cnf"],
        json!({"jkt": key.jkt()})
    );
    // Bytes that are no certificate: invalid_request, never a 5xx.
    let (st, body) = token(&http, &s.issuer, &cc("selfie"), Some("bm90IGEgY2VydA==")).await?;
    assert_eq!(
        (st, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );

    // A public client's refresh tokens are bound to the certificate of the code exchange.
    s.create(
        "/User",
        json!({"username": "pia", "password": "pia's password 1", "claims": {"name": "Pia"}}),
    )
    .await?;
    s.create(
        "/Client",
        json!({"clientId": "app", "allowedGrantTypes": ["authorization_code"],
               "requireClientSecret": false, "requireConsent": false, "allowOfflineAccess": true,
               "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile", "offline_access"]}),
    )
    .await?;
    let c = code(&s.issuer, "app").await?;
    let mine = pki.b64("other");
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", "app"),
        ("code", c.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", PKCE_VERIFIER),
    ];
    let (st, body) = token(&http, &s.issuer, &form, Some(&mine)).await?;
    assert_eq!(st, 200, "{body}");
    let access = body["access_token"].as_str().context("access")?.to_owned();
    let refresh = body["refresh_token"]
        .as_str()
        .context("refresh")?
        .to_owned();
    let again = [
        ("grant_type", "refresh_token"),
        ("client_id", "app"),
        ("refresh_token", refresh.as_str()),
    ];
    for other in [Some(pki.b64("selfie")), None] {
        let (st, body) = token(&http, &s.issuer, &again, other.as_deref()).await?;
        assert_eq!(
            (st, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{body}"
        );
    }
    let (st, body) = token(&http, &s.issuer, &again, Some(&mine)).await?;
    assert_eq!(st, 200, "{body}");

    // /userinfo demands the certificate of a bound token.
    let userinfo = |cert: Option<String>| {
        let mut req = http
            .get(format!("{}/userinfo", s.issuer))
            .bearer_auth(&access);
        if let Some(c) = cert {
            req = req.header(HEADER, c);
        }
        req.send()
    };
    let r = userinfo(Some(mine.clone())).await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await?["name"], "Pia");
    for cert in [Some(pki.b64("selfie")), None] {
        let r = userinfo(cert).await?;
        assert_eq!(r.status(), 401);
        let challenge = r.headers()["www-authenticate"].to_str()?.to_owned();
        assert!(challenge.contains("invalid_token"), "{challenge}");
    }

    // The example resource server behind the same kind of proxy.
    let rs = ExampleResourceServer::start_with(
        &s.issuer,
        "orders-api",
        &["--client-cert-header", HEADER],
    )
    .await?;
    let (_, body) = token(&http, &s.issuer, &cc("selfie"), Some(&pki.b64("selfie"))).await?;
    let bound = body["access_token"].as_str().context("token")?.to_owned();
    let orders = |cert: Option<String>| {
        let mut req = http.get(format!("{}/orders", rs.base)).bearer_auth(&bound);
        if let Some(c) = cert {
            req = req.header(HEADER, c);
        }
        req.send()
    };
    assert_eq!(orders(Some(pki.b64("selfie"))).await?.status(), 200);
    assert_eq!(orders(Some(pki.b64("other"))).await?.status(), 401);
    assert_eq!(orders(None).await?.status(), 401);
    Ok(())
}

#[tokio::test]
async fn the_certificate_header_from_an_untrusted_peer_is_refused() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            capture_logs: true,
            extra_args: vec!["--trusted-proxies".into(), "10.0.0.0/8".into()],
            ..Default::default()
        },
    )
    .await?;
    register_api(&s).await?;
    s.create(
        "/Client",
        machine(
            "selfie",
            json!([{"type": "X509CertificateBase64", "value": pki.b64("selfie")}]),
        ),
    )
    .await?;
    s.create(
        "/Client",
        machine("backend", json!([{"value": BACKEND_SECRET}])),
    )
    .await?;
    let http = reqwest::Client::new();
    let (st, body) = token(&http, &s.issuer, &cc("selfie"), Some(&pki.b64("selfie"))).await?;
    assert_eq!(
        (st, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // Even for a client with a secret: the header is never trusted from this peer.
    let mut backend = cc("backend");
    backend.push(("client_secret", BACKEND_SECRET));
    let (st, body) = token(&http, &s.issuer, &backend, Some(&pki.b64("selfie"))).await?;
    assert_eq!(
        (st, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let (st, _) = token(&http, &s.issuer, &backend, None).await?;
    assert_eq!(st, 200);
    // Without TLS or --mtls-base-url, discovery offers no mutual TLS.
    let doc: Value = http
        .get(format!("{}/.well-known/openid-configuration", s.issuer))
        .send()
        .await?
        .json()
        .await?;
    assert!(doc
        .get("tls_client_certificate_bound_access_tokens")
        .is_none());
    assert!(!doc.to_string().contains("tls_client_auth"), "{doc}");
    assert!(
        s.logs().contains("not a trusted proxy"),
        "the refusal is logged"
    );
    Ok(())
}

/// HAProxy on `deploy/haproxy/mtls.cfg` in front of `serve` (all three server lines point
/// at it): it asks for client certificates, accepts a self-signed one, forwards it in the
/// header, and drops a header the client wrote itself.
#[tokio::test]
async fn haproxy_on_the_deploy_config_forwards_client_certificates() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let lb_port = signet_tests::free_port();
    let base = format!("https://127.0.0.1:{lb_port}");
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            extra_args: vec![
                "--trusted-proxies".into(),
                "127.0.0.1".into(),
                "--mtls-base-url".into(),
                base.clone(),
            ],
            ..Default::default()
        },
    )
    .await?;
    register_api(&s).await?;
    s.create(
        "/Client",
        machine(
            "selfie",
            json!([{"type": "X509CertificateBase64", "value": pki.b64("selfie")}]),
        ),
    )
    .await?;
    let mut combined = pki.pem("server");
    combined.extend(std::fs::read(pki.path("server.key"))?);
    std::fs::write(pki.path("server-combined.pem"), combined)?;
    let upstream = s.issuer.trim_start_matches("http://").to_owned();
    let _haproxy = tokio::process::Command::new(signet_tests::lb::haproxy_bin())
        .arg("-db")
        .arg("-f")
        .arg(signet_tests::lb::config_file().with_file_name("mtls.cfg"))
        .env("SIGNET_MTLS_BIND", format!("127.0.0.1:{lb_port}"))
        .env("SIGNET_MTLS_CERT", pki.path("server-combined.pem"))
        .env("SIGNET_MTLS_CLIENT_CA", pki.path("ca.pem"))
        .env("SIGNET_ISSUER_1_PUBLIC", &upstream)
        .env("SIGNET_ISSUER_2_PUBLIC", &upstream)
        .env("SIGNET_ISSUER_3_PUBLIC", &upstream)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("run haproxy (scripts/test.sh installs it)")?;
    let selfie = pki.client(Some("selfie"))?;
    signet_tests::eventually(std::time::Duration::from_secs(20), || async {
        let r = selfie.get(format!("{base}/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await?;
    let (st, body) = token(&selfie, &base, &cc("selfie"), None).await?;
    assert_eq!(st, 200, "{body}");
    let t = body["access_token"].as_str().context("token")?;
    assert_eq!(
        verify_jwt(t, &s.jwks().await?, &s.issuer, "orders-api")?["cnf"]["x5t#S256"],
        pki.x5t("selfie")
    );
    // Without a certificate, a header the client wrote is dropped by HAProxy.
    let none = pki.client(None)?;
    let (st, body) = token(&none, &base, &cc("selfie"), Some(&pki.b64("selfie"))).await?;
    assert_eq!(
        (st, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // Discovery points the aliases at HAProxy.
    let doc: Value = none
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        doc["mtls_endpoint_aliases"]["token_endpoint"],
        format!("{base}/oauth2/token")
    );
    Ok(())
}

/// On the cluster, behind a "proxy" (this process, trusted by both issuers): a public
/// client's refresh token bound to a certificate at node 0 is refreshed at node 1 with that
/// certificate only, and a certificate client authenticates at either node.
#[tokio::test]
async fn a_certificate_binding_made_at_one_cluster_node_holds_at_another() -> anyhow::Result<()> {
    use signet_tests::cluster::Cluster;
    let pki = Pki::new()?;
    let c = Cluster::start_with(2, vec!["--trusted-proxies".into(), "127.0.0.1".into()]).await?;
    for (path, body) in [
        ("/Resource/ApiScope", json!({"name": "orders.read"})),
        (
            "/Resource/ApiResource",
            json!({"name": "orders-api", "scopes": ["orders.read"]}),
        ),
        (
            "/Client",
            machine(
                "selfie",
                json!([{"type": "X509CertificateBase64", "value": pki.b64("selfie")}]),
            ),
        ),
        (
            "/User",
            json!({"username": "pia", "password": "pia's password 1", "claims": {"name": "Pia"}}),
        ),
        (
            "/Client",
            json!({"clientId": "app", "allowedGrantTypes": ["authorization_code"],
                   "requireClientSecret": false, "requireConsent": false, "allowOfflineAccess": true,
                   "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile", "offline_access"]}),
        ),
    ] {
        let (st, b) = c
            .admin_call(0, reqwest::Method::POST, path, Some(&body))
            .await?;
        assert_eq!(st, 201, "{b}");
    }
    let node = |i: usize| c.issuers[i].public.clone();
    let http = reqwest::Client::new();
    let selfie = pki.b64("selfie");
    // Node 1 learns the clients from the event stream.
    let (st, body) = signet_tests::eventually(std::time::Duration::from_secs(10), || async {
        let r = token(&http, &node(1), &cc("selfie"), Some(&selfie))
            .await
            .ok()?;
        (r.0 == 200).then_some(r)
    })
    .await?;
    assert_eq!(st, 200, "{body}");
    assert!(body["access_token"].is_string());
    let c0 = code(&node(0), "app").await?;
    let mine = pki.b64("other");
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", "app"),
        ("code", c0.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", PKCE_VERIFIER),
    ];
    let (st, body) = token(&http, &node(0), &form, Some(&mine)).await?;
    assert_eq!(st, 200, "{body}");
    let refresh = body["refresh_token"]
        .as_str()
        .context("refresh")?
        .to_owned();
    let again = [
        ("grant_type", "refresh_token"),
        ("client_id", "app"),
        ("refresh_token", refresh.as_str()),
    ];
    let (st, body) = token(&http, &node(1), &again, Some(&selfie)).await?;
    assert_eq!(
        (st, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (st, body) = token(&http, &node(1), &again, Some(&mine)).await?;
    assert_eq!(st, 200, "{body}");
    Ok(())
}

/// `--mtls-listen`: the public endpoints again on a second TLS port that asks for client
/// certificates, while the main port does not; discovery names the second port in
/// `mtls_endpoint_aliases`.
#[tokio::test]
async fn a_separate_mtls_listener_is_where_certificates_count() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let path = |f: &str| pki.path(f).display().to_string();
    let mtls_port = signet_tests::free_port();
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            https: true,
            extra_args: vec![
                "--tls-cert".into(),
                path("server.pem"),
                "--tls-key".into(),
                path("server.key"),
                "--mtls-listen".into(),
                format!("127.0.0.1:{mtls_port}"),
            ],
            ..Default::default()
        },
    )
    .await?;
    register_api(&s).await?;
    s.create(
        "/Client",
        machine(
            "selfie",
            json!([{"type": "X509CertificateBase64", "value": pki.b64("selfie")}]),
        ),
    )
    .await?;
    let mtls = format!("https://127.0.0.1:{mtls_port}");
    let selfie = pki.client(Some("selfie"))?;
    let doc: Value = selfie
        .get(format!("{}/.well-known/openid-configuration", s.issuer))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(doc["tls_client_certificate_bound_access_tokens"], true);
    assert_eq!(
        doc["mtls_endpoint_aliases"]["token_endpoint"],
        format!("{mtls}/oauth2/token"),
        "{doc}"
    );
    // The main port never asks, so the client's certificate is not sent there.
    let (st, body) = token(&selfie, &s.issuer, &cc("selfie"), None).await?;
    assert_eq!(
        (st, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let (st, body) = token(&selfie, &mtls, &cc("selfie"), None).await?;
    assert_eq!(st, 200, "{body}");
    let t = body["access_token"].as_str().context("token")?;
    assert_eq!(
        verify_jwt(t, &s.jwks().await?, &s.issuer, "orders-api")?["cnf"]["x5t#S256"],
        pki.x5t("selfie")
    );
    Ok(())
}
