//! DPoP (RFC 9449) end to end: proofs at the token endpoint for client_credentials, the
//! code flow (`dpop_jkt`) and refresh (public clients' refresh tokens bound to the key);
//! `cnf.jkt` in access tokens and introspection; the `libs/verify` example resource server
//! and `/userinfo` demanding the proof; `requireDPoP`; server nonces and replay across
//! cluster nodes; bad proofs, each refused with the standard error. Proofs are signed with
//! `jsonwebtoken` (an independent implementation); `ath` is hashed with aws-lc-rs and the
//! thumbprint computed by `jsonwebtoken`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use reqwest::Method;
use serde_json::{json, Value};
use signet_jose::Algorithm;
use signet_tests::browser::{params_of, Browser, PKCE_CHALLENGE, PKCE_VERIFIER};
use signet_tests::{eventually, verify_jwt, Serve, ServeOptions};

use super::high_security::{now, ClientKeyPair};

const API_SECRET: &str = "orders-api-secret-0123456789";
const BACKEND_SECRET: &str = "backend-secret-0123456789";
const REDIRECT: &str = "http://127.0.0.1:1/cb";

/// A client's DPoP key: signs proofs whose header carries its public JWK.
pub struct DpopKey {
    pair: ClientKeyPair,
}

impl DpopKey {
    pub fn new(alg: Algorithm) -> Self {
        DpopKey {
            pair: ClientKeyPair::new(alg, "dpop"),
        }
    }

    /// The public JWK, as `jsonwebtoken` reads it.
    pub fn jwk(&self) -> Jwk {
        serde_json::from_str(&self.pair.public_jwk()).unwrap()
    }

    /// The RFC 7638 SHA-256 thumbprint, by `jsonwebtoken`.
    pub fn jkt(&self) -> String {
        self.jwk().thumbprint(ThumbprintHash::SHA256).unwrap()
    }

    /// A proof with exactly these claims.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(claims, |_| {})
    }

    /// A proof with these claims and a header changed by `edit`.
    pub fn sign_with(
        &self,
        claims: &Value,
        edit: impl FnOnce(&mut jsonwebtoken::Header),
    ) -> String {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let der = self.pair.key.pkcs8_der();
        let (alg, enc) = match self.pair.key.alg() {
            Algorithm::ES256 => (
                jsonwebtoken::Algorithm::ES256,
                jsonwebtoken::EncodingKey::from_ec_der(der),
            ),
            Algorithm::EdDSA => (
                jsonwebtoken::Algorithm::EdDSA,
                jsonwebtoken::EncodingKey::from_ed_der(der),
            ),
            other => {
                let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec()));
                let alg = if other == Algorithm::RS256 {
                    jsonwebtoken::Algorithm::RS256
                } else {
                    jsonwebtoken::Algorithm::PS256
                };
                (
                    alg,
                    jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
                )
            }
        };
        let mut header = jsonwebtoken::Header::new(alg);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.jwk());
        edit(&mut header);
        jsonwebtoken::encode(&header, claims, &enc).unwrap()
    }

    /// A fresh proof for `htm` at `htu`, with `ath` for `token` and a `nonce` if given.
    pub fn proof(&self, htm: &str, htu: &str, token: Option<&str>, nonce: Option<&str>) -> String {
        self.sign(&claims(htm, htu, token, nonce))
    }
}

/// Fresh proof claims: a new `jti`, `iat` now.
pub fn claims(htm: &str, htu: &str, token: Option<&str>, nonce: Option<&str>) -> Value {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut c = json!({"jti": format!("proof-{}-{}", now(), N.fetch_add(1, Ordering::Relaxed)),
                       "htm": htm, "htu": htu, "iat": now()});
    if let Some(t) = token {
        c["ath"] = ath(t).into();
    }
    if let Some(n) = nonce {
        c["nonce"] = n.into();
    }
    c
}

/// base64url(SHA-256(token)).
pub fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ))
}

/// A token request with optional DPoP headers: status, headers, body.
pub async fn token_with(
    http: &reqwest::Client,
    base: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
    proofs: &[&str],
) -> anyhow::Result<(u16, reqwest::header::HeaderMap, Value)> {
    let mut req = http.post(format!("{base}/oauth2/token")).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    for p in proofs {
        req = req.header("DPoP", *p);
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    Ok((status, headers, r.json().await.unwrap_or(Value::Null)))
}

/// The `libs/verify` example resource server (`GET /orders`), running until dropped.
pub struct ExampleResourceServer {
    _child: tokio::process::Child,
    pub base: String,
}

impl ExampleResourceServer {
    /// Starts it for tokens of `issuer` with `audience` and waits until it is ready.
    pub async fn start(issuer: &str, audience: &str) -> anyhow::Result<Self> {
        Self::start_with(issuer, audience, &[]).await
    }

    /// [`start`](Self::start) with more flags (e.g. `--client-cert-header`).
    pub async fn start_with(issuer: &str, audience: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let example = signet_tests::signet_bin()
            .parent()
            .map(|d| d.join("examples/resource_server"))
            .context("no target dir")?;
        let port = signet_tests::free_port();
        let child = tokio::process::Command::new(&example)
            .args(["--issuer", issuer, "--audience", audience])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env_remove("SIGNET_ISSUER")
            .env_remove("SIGNET_NATS_URL")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("run {} (cargo test builds it)", example.display()))?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually(Duration::from_secs(20), || async {
            let r = http.get(format!("{base}/readyz")).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await?;
        Ok(ExampleResourceServer {
            _child: child,
            base,
        })
    }
}

async fn register(s: &Serve) -> anyhow::Result<()> {
    for (path, body) in [
        ("/Resource/ApiScope", json!({"name": "orders.read"})),
        (
            "/Resource/ApiResource",
            json!({"name": "orders-api", "scopes": ["orders.read"], "apiSecrets": [{"value": API_SECRET}]}),
        ),
        (
            "/Client",
            json!({"clientId": "backend", "allowedGrantTypes": ["client_credentials"],
                   "clientSecrets": [{"value": BACKEND_SECRET}], "allowedScopes": ["orders.read"]}),
        ),
        (
            "/Client",
            json!({"clientId": "strict", "allowedGrantTypes": ["client_credentials"], "requireDPoP": true,
                   "clientSecrets": [{"value": BACKEND_SECRET}], "allowedScopes": ["orders.read"]}),
        ),
    ] {
        s.create(path, body).await?;
    }
    Ok(())
}

const CC: &[(&str, &str)] = &[
    ("grant_type", "client_credentials"),
    ("scope", "orders.read"),
];

#[tokio::test]
async fn client_credentials_tokens_are_bound_and_a_resource_server_demands_the_proof(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    register(&s).await?;
    let http = reqwest::Client::new();
    let htu = format!("{}/oauth2/token", s.issuer);

    // Discovery names exactly the proof algorithms.
    let doc: Value = http
        .get(format!("{}/.well-known/openid-configuration", s.issuer))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        doc["dpop_signing_alg_values_supported"],
        json!(["RS256", "PS256", "ES256", "EdDSA"])
    );

    // Every algorithm binds: token_type DPoP, cnf.jkt the key's thumbprint.
    let mut bound = None;
    for alg in Algorithm::ALL {
        let key = DpopKey::new(alg);
        let (st, h, body) = token_with(
            &http,
            &s.issuer,
            Some(("backend", BACKEND_SECRET)),
            CC,
            &[&key.proof("POST", &htu, None, None)],
        )
        .await?;
        assert_eq!(st, 200, "{alg}: {body}");
        assert_eq!(body["token_type"], "DPoP", "{body}");
        assert_eq!(h["cache-control"], "no-store");
        assert!(h.get("dpop-nonce").is_none(), "nonces are off by default");
        let token = body["access_token"].as_str().context("token")?.to_owned();
        let claims = verify_jwt(&token, &s.jwks().await?, &s.issuer, "orders-api")?;
        assert_eq!(claims["cnf"], json!({"jkt": key.jkt()}), "{alg}");
        if alg == Algorithm::ES256 {
            bound = Some((key, token));
        }
    }
    let (key, token) = bound.unwrap();
    // Introspection shows the binding.
    let i = s.introspect(("orders-api", API_SECRET), &token).await?;
    assert_eq!(i["active"], true);
    assert_eq!(i["cnf"]["jkt"], key.jkt());
    assert_eq!(i["token_type"], "DPoP", "RFC 9449 section 6.2: {i}");
    // Without a proof: a plain bearer token, no cnf.
    let (st, _, plain) =
        token_with(&http, &s.issuer, Some(("backend", BACKEND_SECRET)), CC, &[]).await?;
    assert_eq!(st, 200);
    assert_eq!(plain["token_type"], "Bearer");
    let plain = plain["access_token"].as_str().unwrap().to_owned();
    assert!(
        verify_jwt(&plain, &s.jwks().await?, &s.issuer, "orders-api")?
            .get("cnf")
            .is_none()
    );

    // The libs/verify example resource server.
    let server = ExampleResourceServer::start(&s.issuer, "orders-api").await?;
    let rs = &server.base;
    let orders = format!("{rs}/orders");
    let call = |auth: String, proofs: Vec<String>| {
        let mut req = http.get(&orders).header("Authorization", auth);
        for p in proofs {
            req = req.header("DPoP", p);
        }
        async move {
            let r = req.send().await?;
            let challenge = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            anyhow::Ok((r.status().as_u16(), challenge))
        }
    };
    let dpop = format!("DPoP {token}");
    let good = key.proof("GET", &orders, Some(&token), None);
    assert_eq!(call(dpop.clone(), vec![good.clone()]).await?.0, 200);
    // The same proof again: replayed.
    let (st, ch) = call(dpop.clone(), vec![good]).await?;
    assert_eq!(st, 401);
    assert!(
        ch.starts_with("DPoP ") && ch.contains("invalid_dpop_proof"),
        "{ch}"
    );
    assert!(ch.contains("algs=\"RS256 PS256 ES256 EdDSA\""), "{ch}");
    // As a bearer token; without a proof; with another key; wrong ath, htu, htm; two proofs.
    let (st, ch) = call(format!("Bearer {token}"), vec![]).await?;
    assert_eq!(st, 401);
    assert!(
        ch.starts_with("DPoP ") && ch.contains("invalid_token"),
        "{ch}"
    );
    assert_eq!(call(dpop.clone(), vec![]).await?.0, 401);
    let other = DpopKey::new(Algorithm::ES256);
    for proof in [
        other.proof("GET", &orders, Some(&token), None),
        key.proof("GET", &orders, Some("another token"), None),
        key.proof("GET", &format!("{rs}/other"), Some(&token), None),
        key.proof("POST", &orders, Some(&token), None),
    ] {
        let (st, ch) = call(dpop.clone(), vec![proof]).await?;
        assert_eq!(st, 401, "{ch}");
        assert!(ch.contains("invalid_dpop_proof"), "{ch}");
    }
    let two = vec![
        key.proof("GET", &orders, Some(&token), None),
        key.proof("GET", &orders, Some(&token), None),
    ];
    assert_eq!(call(dpop.clone(), two).await?.0, 401);
    // An unbound token with the DPoP scheme is refused; as Bearer it works.
    let p = key.proof("GET", &orders, Some(&plain), None);
    assert_eq!(call(format!("DPoP {plain}"), vec![p]).await?.0, 401);
    assert_eq!(call(format!("Bearer {plain}"), vec![]).await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn bad_proofs_are_refused_with_invalid_dpop_proof() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    register(&s).await?;
    let http = reqwest::Client::new();
    let htu = format!("{}/oauth2/token", s.issuer);
    let key = DpopKey::new(Algorithm::ES256);
    let basic = Some(("backend", BACKEND_SECRET));

    let replayed = key.proof("POST", &htu, None, None);
    let (st, _, b) = token_with(&http, &s.issuer, basic, CC, &[&replayed]).await?;
    assert_eq!(st, 200, "{b}");
    let mut expired = claims("POST", &htu, None, None);
    expired["iat"] = (now() - 120).into();
    let mut future = claims("POST", &htu, None, None);
    future["iat"] = (now() + 60).into();
    let mut private = serde_json::to_value(key.jwk())?;
    private["d"] = "AAAA".into();
    let unsigned = |alg: &str| {
        let h = json!({"typ": "dpop+jwt", "alg": alg, "jwk": key.jwk()});
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(h.to_string()),
            URL_SAFE_NO_PAD.encode(claims("POST", &htu, None, None).to_string())
        )
    };
    let hmac = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.typ = Some("dpop+jwt".into());
        h.jwk = Some(key.jwk());
        jsonwebtoken::encode(
            &h,
            &claims("POST", &htu, None, None),
            &jsonwebtoken::EncodingKey::from_secret(b"a shared secret"),
        )?
    };
    let private_jwk = {
        let c = claims("POST", &htu, None, None);
        let h = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private});
        // Signed properly, but the header's key has a private member.
        let good = key.sign(&c);
        let sig = good.rsplit('.').next().unwrap().to_owned();
        format!(
            "{}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(h.to_string()),
            URL_SAFE_NO_PAD.encode(c.to_string())
        )
    };
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("replayed", vec![replayed]),
        ("expired iat", vec![key.sign(&expired)]),
        ("future iat", vec![key.sign(&future)]),
        ("other method", vec![key.proof("GET", &htu, None, None)]),
        (
            "other URL",
            vec![key.proof("POST", &format!("{}/oauth2/par", s.issuer), None, None)],
        ),
        ("alg none", vec![unsigned("none")]),
        ("HMAC", vec![hmac]),
        ("private key in jwk", vec![private_jwk]),
        (
            "typ JWT",
            vec![key.sign_with(&claims("POST", &htu, None, None), |h| {
                h.typ = Some("JWT".into())
            })],
        ),
        (
            "no jwk",
            vec![key.sign_with(&claims("POST", &htu, None, None), |h| h.jwk = None)],
        ),
        ("garbage", vec!["not a jwt".into()]),
        (
            "two DPoP headers",
            vec![
                key.proof("POST", &htu, None, None),
                key.proof("POST", &htu, None, None),
            ],
        ),
    ];
    for (what, proofs) in cases {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let (st, _, b) = token_with(&http, &s.issuer, basic, CC, &proofs).await?;
        assert_eq!(
            (st, b["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{what}: {b}"
        );
    }
    // requireDPoP: refused without a proof, bound with one.
    let strict = Some(("strict", BACKEND_SECRET));
    let (st, _, b) = token_with(&http, &s.issuer, strict, CC, &[]).await?;
    assert_eq!(
        (st, b["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{b}"
    );
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("requireDPoP"),
        "{b}"
    );
    let (st, _, b) = token_with(
        &http,
        &s.issuer,
        strict,
        CC,
        &[&key.proof("POST", &htu, None, None)],
    )
    .await?;
    assert_eq!((st, b["token_type"].as_str()), (200, Some("DPoP")), "{b}");
    // The refusals are counted by reason.
    let metrics = http
        .get(format!("{}/metrics", s.issuer))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("signet_dpop_proof_failures_total{reason=\"iat\"}"),
        "{metrics}"
    );
    // The admin API takes bearer tokens only: a DPoP-bound admin token is refused there.
    let admin = Some(("signet-admin", s.admin_secret.as_str()));
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", "signet.admin"),
    ];
    let proof = key.proof("POST", &htu, None, None);
    let (st, _, b) = token_with(&http, &s.issuer, admin, &form, &[&proof]).await?;
    assert_eq!((st, b["token_type"].as_str()), (200, Some("DPoP")), "{b}");
    let r = http
        .get(format!("{}/Client", s.admin))
        .bearer_auth(b["access_token"].as_str().unwrap())
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await?;
    assert!(body.to_string().contains("DPoP-bound"), "{body}");
    Ok(())
}

/// Authorizes as `pia` with PKCE and `extra` parameters; returns the code.
async fn code(s: &Serve, client: &str, extra: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer))?;
    u.query_pairs_mut()
        .append_pair("client_id", client)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile offline_access")
        .append_pair("state", "s")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        u.query_pairs_mut().append_pair(k, v);
    }
    let mut b = Browser::new();
    let r = b.sign_in(u.as_str(), "pia", "pia's password 1").await?;
    anyhow::ensure!(r.status == 302, "login answered {}: {}", r.status, r.body);
    let back = params_of(&r.location()?, false);
    back.get("code")
        .cloned()
        .with_context(|| format!("no code: {back:?}"))
}

#[tokio::test]
async fn a_code_bound_with_dpop_jkt_and_a_public_clients_refresh_tokens_need_the_key(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    s.create(
        "/User",
        json!({"username": "pia", "password": "pia's password 1", "claims": {"name": "Pia"}}),
    )
    .await?;
    s.create(
        "/Client",
        json!({"clientId": "spa", "allowedGrantTypes": ["authorization_code"],
               "requireClientSecret": false, "requireConsent": false, "allowOfflineAccess": true,
               "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile", "offline_access"]}),
    )
    .await?;
    let http = reqwest::Client::new();
    let htu = format!("{}/oauth2/token", s.issuer);
    let key = DpopKey::new(Algorithm::ES256);
    let other = DpopKey::new(Algorithm::EdDSA);
    let jkt = key.jkt();
    let redeem = |code: String| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", "spa".to_owned()),
            ("code", code),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_verifier", PKCE_VERIFIER.to_owned()),
        ]
    };
    let send = |form: Vec<(&'static str, String)>, proof: Option<String>| {
        let http = http.clone();
        let base = s.issuer.clone();
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let proofs: Vec<&str> = proof.iter().map(String::as_str).collect();
            token_with(&http, &base, None, &form, &proofs).await
        }
    };

    // A malformed dpop_jkt is refused at the authorization endpoint.
    let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer))?;
    u.query_pairs_mut()
        .append_pair("client_id", "spa")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("dpop_jkt", "short");
    let r = Browser::new().get(u.as_str()).await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let back = params_of(&r.location()?, false);
    assert_eq!(back["error"], "invalid_request", "{back:?}");
    assert!(back["error_description"].contains("dpop_jkt"), "{back:?}");

    // A bound code redeemed with another key, or without a proof: invalid_grant.
    for proof in [Some(other.proof("POST", &htu, None, None)), None] {
        let c = code(&s, "spa", &[("dpop_jkt", &jkt)]).await?;
        let (st, _, b) = send(redeem(c), proof).await?;
        assert_eq!(
            (st, b["error"].as_str()),
            (400, Some("invalid_grant")),
            "{b}"
        );
    }
    // With its key: DPoP-bound tokens.
    let c = code(&s, "spa", &[("dpop_jkt", &jkt)]).await?;
    let (st, _, b) = send(redeem(c), Some(key.proof("POST", &htu, None, None))).await?;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["token_type"], "DPoP");
    let at = b["access_token"].as_str().unwrap().to_owned();
    let claims = verify_jwt(
        &at,
        &s.jwks().await?,
        &s.issuer,
        &format!("{}/resources", s.issuer),
    )?;
    assert_eq!(claims["cnf"]["jkt"], jkt);
    let refresh = b["refresh_token"]
        .as_str()
        .context("refresh token")?
        .to_owned();

    // /userinfo: the proof with ath, not as a bearer token.
    let userinfo = format!("{}/userinfo", s.issuer);
    let r = http
        .get(&userinfo)
        .header("Authorization", format!("DPoP {at}"))
        .header("DPoP", key.proof("GET", &userinfo, Some(&at), None))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await?["name"], "Pia");
    let r = http.get(&userinfo).bearer_auth(&at).send().await?;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()?
        .starts_with("DPoP "));
    let r = http
        .get(&userinfo)
        .header("Authorization", format!("DPoP {at}"))
        .header("DPoP", other.proof("GET", &userinfo, Some(&at), None))
        .send()
        .await?;
    assert_eq!(r.status(), 401);

    // The public client's refresh token is bound: another key or no proof is refused and
    // does not use the token up; its key refreshes.
    let refresh_form = || {
        vec![
            ("grant_type", "refresh_token".to_owned()),
            ("client_id", "spa".to_owned()),
            ("refresh_token", refresh.clone()),
        ]
    };
    for proof in [Some(other.proof("POST", &htu, None, None)), None] {
        let (st, _, b) = send(refresh_form(), proof).await?;
        assert_eq!(
            (st, b["error"].as_str()),
            (400, Some("invalid_grant")),
            "{b}"
        );
    }
    let (st, _, b) = send(refresh_form(), Some(key.proof("POST", &htu, None, None))).await?;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["token_type"], "DPoP");
    let at = b["access_token"].as_str().unwrap();
    let claims = verify_jwt(
        at,
        &s.jwks().await?,
        &s.issuer,
        &format!("{}/resources", s.issuer),
    )?;
    assert_eq!(claims["cnf"]["jkt"], jkt);
    // A proof with a pushed request binds its code to the proof's key (RFC 9449 section
    // 10.1); a dpop_jkt naming another key is refused.
    let par = format!("{}/oauth2/par", s.issuer);
    let pushed = |proof: String, extra: Option<(&'static str, String)>| {
        let mut form = vec![
            ("client_id", "spa".to_owned()),
            ("response_type", "code".to_owned()),
            ("scope", "openid".to_owned()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("nonce", "n".to_owned()),
            ("code_challenge", PKCE_CHALLENGE.to_owned()),
            ("code_challenge_method", "S256".to_owned()),
        ];
        form.extend(extra);
        let req = http.post(&par).header("DPoP", proof).form(&form);
        async move {
            let r = req.send().await?;
            anyhow::Ok((r.status().as_u16(), r.json::<Value>().await?))
        }
    };
    let (st, b) = pushed(
        key.proof("POST", &par, None, None),
        Some(("dpop_jkt", other.jkt())),
    )
    .await?;
    assert_eq!(
        (st, b["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{b}"
    );
    let (st, b) = pushed(key.proof("POST", &par, None, None), None).await?;
    assert_eq!(st, 201, "{b}");
    let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer))?;
    u.query_pairs_mut()
        .append_pair("client_id", "spa")
        .append_pair("request_uri", b["request_uri"].as_str().unwrap());
    let r = Browser::new()
        .sign_in(u.as_str(), "pia", "pia's password 1")
        .await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let c = params_of(&r.location()?, false)["code"].clone();
    let (st, _, b) = send(redeem(c), Some(other.proof("POST", &htu, None, None))).await?;
    assert_eq!(
        (st, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
    Ok(())
}

#[tokio::test]
async fn nonces_and_proofs_are_shared_by_every_cluster_node() -> anyhow::Result<()> {
    use signet_tests::cluster::Cluster;

    let c = Cluster::start_with(2, vec!["--dpop-nonce".into()]).await?;
    let signer = ClientKeyPair::new(Algorithm::ES256, "signer-key");
    for (path, body) in [
        ("/Resource/ApiScope", json!({"name": "orders.read"})),
        (
            "/Resource/ApiResource",
            json!({"name": "orders-api", "scopes": ["orders.read"]}),
        ),
        (
            "/Client",
            json!({"clientId": "backend", "allowedGrantTypes": ["client_credentials"],
                   "clientSecrets": [{"value": BACKEND_SECRET}], "allowedScopes": ["orders.read"]}),
        ),
        (
            "/Client",
            super::high_security::signer_client("signer", &signer),
        ),
    ] {
        let (st, b) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        assert_eq!(st, 201, "{b}");
    }
    // The proof's htu is the issuer's token endpoint, whichever node answers.
    let htu = format!("{}/oauth2/token", c.issuer);
    let key = DpopKey::new(Algorithm::ES256);
    let basic = Some(("backend", BACKEND_SECRET));
    let node = |i: usize| c.issuers[i].public.clone();
    // Until node 1 knows the client, any answer; then a proof without a nonce is told to
    // use one.
    let (_, h, b) = eventually(Duration::from_secs(10), || async {
        let p = key.proof("POST", &htu, None, None);
        let r = token_with(&c.http, &node(1), basic, CC, &[&p]).await.ok()?;
        (r.2["error"] == "use_dpop_nonce").then_some(r)
    })
    .await?;
    assert!(
        b["error_description"].as_str().unwrap().contains("nonce"),
        "{b}"
    );
    let nonce = h["dpop-nonce"].to_str()?.to_owned();
    // Node 1's nonce works at node 0, and the success carries a nonce too.
    let proof = key.proof("POST", &htu, None, Some(&nonce));
    let (st, h, b) = token_with(&c.http, &node(0), basic, CC, &[&proof]).await?;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["token_type"], "DPoP");
    assert!(h.get("dpop-nonce").is_some());
    // The same proof at node 1: replayed.
    let (st, _, b) = token_with(&c.http, &node(1), basic, CC, &[&proof]).await?;
    assert_eq!(
        (st, b["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{b}"
    );
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{b}"
    );
    // A nonce no node made (or one too old: outside the current and previous windows).
    let forged = key.proof(
        "POST",
        &htu,
        None,
        Some("bm90LWEtbm9uY2Utb2YtdGhpcy1zZXJ2ZXI"),
    );
    let (st, h, b) = token_with(&c.http, &node(1), basic, CC, &[&forged]).await?;
    assert_eq!(
        (st, b["error"].as_str()),
        (400, Some("use_dpop_nonce")),
        "{b}"
    );
    assert_eq!(
        h["dpop-nonce"].to_str()?,
        nonce,
        "one nonce per window at every node"
    );

    // A client that authenticates with an assertion answers use_dpop_nonce by sending the
    // same request again, assertion and all: the refused proof spent nothing.
    let assertion = signer.sign(&super::high_security::claims("signer", &c.issuer));
    let form = super::high_security::assertion_form(&assertion, "orders.read");
    let first = key.proof("POST", &htu, None, None);
    let (st, h, b) = token_with(&c.http, &node(1), None, &form, &[&first]).await?;
    assert_eq!(
        (st, b["error"].as_str()),
        (400, Some("use_dpop_nonce")),
        "{b}"
    );
    let nonce = h["dpop-nonce"].to_str()?.to_owned();
    let again = key.proof("POST", &htu, None, Some(&nonce));
    let (st, _, b) = token_with(&c.http, &node(0), None, &form, &[&again]).await?;
    assert_eq!(st, 200, "the same assertion after use_dpop_nonce: {b}");
    assert_eq!(b["token_type"], "DPoP", "{b}");
    Ok(())
}
