//! Passkeys against the real binary. In headless Chromium with WebDriver's virtual
//! authenticator (CTAP2, internal, resident keys, user verification): enrollment on
//! `/account/security`, then a fresh browser signs in with the passkey through a client
//! asking `acr_values=phr`; the ID token and the introspected access token say `phr` and
//! `["hwk", "user"]`. Then, over plain HTTP with assertions built here (the test's own
//! software authenticator, or the virtual authenticator's key read back through WebDriver):
//! a replayed assertion, a wrong origin, a wrong RP ID, a counter going back, another
//! user's credential and a removed credential are refused with a page, never a 5xx. On a
//! two-node cluster, enrollment and sign-in begin at one node and finish at the other.
//!
//! The issuer URL names `localhost`: a WebAuthn RP ID must be a domain name.

use std::time::Duration;

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use fantoccini::Locator;
use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::browser::{params_of, Browser, Page, PKCE_CHALLENGE, PKCE_VERIFIER};
use signet_tests::chrome::{relying_party, Chrome};
use signet_tests::cluster::Cluster;
use signet_tests::{eventually, verify_jwt, Serve, ServeOptions};

#[path = "../../libs/core/src/passkey/soft.rs"]
mod soft;
use soft::{Claims, SoftKey, UP, UV};

const ADA_PASSWORD: &str = "ada's long password";
const BEN_PASSWORD: &str = "ben's long password";
const API_SECRET: &str = "orders-api-secret-0123456789";
const REDIRECT: &str = "http://127.0.0.1:1/cb";

/// A WebDriver command of the WebAuthn extension (W3C WebAuthn section 11).
#[derive(Debug)]
struct WebAuthn {
    method: http::Method,
    path: String,
    body: Option<Value>,
}

impl fantoccini::wd::WebDriverCompatibleCommand for WebAuthn {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/webauthn/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(Value::to_string),
        )
    }
}

/// Adds a virtual platform authenticator that holds resident keys and verifies the user.
async fn add_authenticator(c: &fantoccini::Client) -> anyhow::Result<String> {
    let id = c
        .issue_cmd(WebAuthn {
            method: http::Method::POST,
            path: "authenticator".into(),
            body: Some(json!({
                "protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
                "hasUserVerification": true, "isUserVerified": true,
                "automaticPresenceSimulation": true,
            })),
        })
        .await?;
    Ok(id.as_str().context("an authenticator id")?.to_owned())
}

/// The credentials the virtual authenticator holds (with their private keys).
async fn credentials(c: &fantoccini::Client, authenticator: &str) -> anyhow::Result<Vec<Value>> {
    let v = c
        .issue_cmd(WebAuthn {
            method: http::Method::GET,
            path: format!("authenticator/{authenticator}/credentials"),
            body: None,
        })
        .await?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn b64(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap_or_default();
    B64.decode(s.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(s))
        .unwrap_or_default()
}

async fn wait_for(
    c: &fantoccini::Client,
    css: &str,
) -> anyhow::Result<fantoccini::elements::Element> {
    let found = eventually(Duration::from_secs(15), || async {
        let e = c.find(Locator::Css(css)).await.ok()?;
        e.is_displayed().await.ok()?.then_some(e)
    })
    .await;
    match found {
        Ok(e) => Ok(e),
        Err(e) => bail!(
            "no visible {css} ({e}) at {:?}: {}",
            c.current_url().await,
            c.source().await.unwrap_or_default()
        ),
    }
}

async fn wait_text(c: &fantoccini::Client, text: &str) -> anyhow::Result<()> {
    let found = eventually(Duration::from_secs(15), || async {
        c.source().await.ok()?.contains(text).then_some(())
    })
    .await;
    if found.is_err() {
        bail!(
            "no {text:?} at {:?}: {}",
            c.current_url().await,
            c.source().await.unwrap_or_default()
        );
    }
    Ok(())
}

fn authorize_url(issuer: &str, redirect: &str, extra: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&format!("{issuer}/oauth2/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("client_id", "web")
        .append_pair("redirect_uri", redirect)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid orders.read")
        .append_pair("state", "s")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

fn setup(redirect: &str) -> Vec<(&'static str, Value)> {
    let mut redirects = vec![redirect];
    if redirect != REDIRECT {
        redirects.push(REDIRECT);
    }
    vec![
        (
            "/User",
            json!({"username": "ada", "password": ADA_PASSWORD}),
        ),
        (
            "/User",
            json!({"username": "ben", "password": BEN_PASSWORD}),
        ),
        ("/Resource/ApiScope", json!({"name": "orders.read"})),
        (
            "/Resource/ApiResource",
            json!({"name": "orders-api", "scopes": ["orders.read"], "apiSecrets": [{"value": API_SECRET}]}),
        ),
        (
            "/Client",
            json!({"clientId": "web", "allowedGrantTypes": ["authorization_code"],
                "requireClientSecret": false, "requireConsent": false,
                "redirectUris": redirects, "allowedScopes": ["openid", "orders.read"]}),
        ),
        (
            "/Client",
            json!({"clientId": "strict", "allowedGrantTypes": ["authorization_code"],
                "requireClientSecret": false, "requireConsent": false,
                "redirectUris": [REDIRECT], "allowedScopes": ["openid"],
                "properties": {"requiredAcr": "phr"}}),
        ),
    ]
}

/// The token response for the code in `landed` (a redirect to the client).
async fn redeem(token_base: &str, redirect: &str, landed: &url::Url) -> anyhow::Result<Value> {
    let params = params_of(landed, false);
    let code = params
        .get("code")
        .with_context(|| format!("no code: {params:?}"))?;
    let r = reqwest::Client::new()
        .post(format!("{token_base}/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", PKCE_VERIFIER),
            ("client_id", "web"),
        ])
        .send()
        .await?;
    let body: Value = r.json().await?;
    if !body["id_token"].is_string() {
        bail!("no ID token: {body}");
    }
    Ok(body)
}

#[tokio::test]
async fn passkey_enrollment_and_sign_in_in_chromium_then_bad_assertions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            host: Some("localhost".into()),
            ..Default::default()
        },
    )
    .await?;
    let redirect = format!("{}/cb", relying_party().await?);
    let mut ada_sub = String::new();
    for (path, body) in setup(&redirect) {
        let created = s.create(path, body).await?;
        if created["username"] == "ada" {
            ada_sub = created["sub"].as_str().context("sub")?.to_owned();
        }
    }
    let origin = s.issuer.clone();

    // Ada enrolls a passkey on her account page.
    let chrome = Chrome::start().await?;
    let c = &chrome.client;
    let authenticator = add_authenticator(c).await?;
    c.goto(&format!("{}/account/security", s.issuer)).await?;
    chrome.sign_in("ada", ADA_PASSWORD).await?;
    wait_for(c, "#passkey-add").await?;
    assert!(c.source().await?.contains("No passkey yet"));
    c.find(Locator::Css("#passkey-name"))
        .await?
        .send_keys("Ada's laptop")
        .await?;
    c.find(Locator::Css("#passkey-add")).await?.click().await?;
    wait_text(c, "Your passkey is added.").await?;
    assert!(c.source().await?.contains("s laptop"));
    let held = credentials(c, &authenticator).await?;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(
        held[0]["isResidentCredential"], true,
        "a discoverable credential"
    );
    assert_eq!(
        held[0]["rpId"], "localhost",
        "the RP ID is the issuer's host"
    );
    let ada_sub = ada_sub.clone();
    let user_handle = b64(&held[0]["userHandle"]);
    assert_eq!(user_handle.len(), 64, "a 64-byte random user handle");
    assert!(!String::from_utf8_lossy(&user_handle).contains(&ada_sub));

    // Signed out (a fresh browser state), Ada signs in with the passkey alone through a
    // client that asks for a phishing-resistant sign-in.
    c.delete_all_cookies().await?;
    c.goto(&authorize_url(
        &s.issuer,
        &redirect,
        &[("acr_values", "phr")],
    ))
    .await?;
    // The login page starts a conditional request (passkeys in the username field's
    // autofill); the virtual authenticator, which needs no user gesture, may answer it at
    // once. Otherwise the button does it.
    let clicked = std::sync::atomic::AtomicBool::new(false);
    let (clicked_ref, redirect_ref) = (&clicked, &redirect);
    let landed = eventually(Duration::from_secs(15), || async move {
        use std::sync::atomic::Ordering::SeqCst;
        let u = c.current_url().await.ok()?;
        if u.as_str().starts_with(redirect_ref.as_str()) {
            return Some(u);
        }
        if !clicked_ref.load(SeqCst) {
            if let Ok(b) = c.find(Locator::Css("#passkey-sign-in")).await {
                if b.is_displayed().await.unwrap_or(false) && b.click().await.is_ok() {
                    clicked_ref.store(true, SeqCst);
                }
            }
        }
        None
    })
    .await;
    let landed = match landed {
        Ok(u) => u,
        Err(e) => bail!(
            "no redirect to the client after the passkey ({e}) at {:?}: {}",
            c.current_url().await,
            c.source().await.unwrap_or_default()
        ),
    };
    eprintln!(
        "passkey sign-in through {}",
        if clicked.into_inner() {
            "the button"
        } else {
            "conditional UI"
        }
    );
    let tokens = redeem(&s.issuer, &redirect, &landed).await?;
    let id = verify_jwt(
        tokens["id_token"].as_str().unwrap(),
        &s.jwks().await?,
        &s.issuer,
        "web",
    )?;
    assert_eq!(id["acr"], "phr", "{id}");
    assert_eq!(id["amr"], json!(["hwk", "user"]), "{id}");
    let access = tokens["access_token"].as_str().context("access token")?;
    let i = s.introspect(("orders-api", API_SECRET), access).await?;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["acr"], "phr", "{i}");
    assert_eq!(i["amr"], json!(["hwk", "user"]), "{i}");

    // The account page lists the passkey with its last use.
    c.goto(&format!("{}/account/security", s.issuer)).await?;
    wait_text(c, "last used").await?;

    let held = credentials(c, &authenticator).await?;
    chrome.client.close().await?;

    // Another browser: a password sign-in (its authenticator is attached afterwards, so
    // the login page's conditional request finds nothing), then a client asking `phr`
    // steps the session up on the second-factor page, through its "Use a passkey" button.
    let chrome = Chrome::start().await?;
    let c = &chrome.client;
    c.goto(&format!("{}/account/security", s.issuer)).await?;
    wait_for(c, "#password").await?;
    chrome.sign_in("ada", ADA_PASSWORD).await?;
    wait_for(c, "#passkey-add").await?;
    let authenticator = add_authenticator(c).await?;
    let mut imported = held[0].clone();
    if let Some(o) = imported.as_object_mut() {
        o.retain(|k, _| {
            matches!(
                k.as_str(),
                "credentialId"
                    | "isResidentCredential"
                    | "rpId"
                    | "privateKey"
                    | "userHandle"
                    | "signCount"
            )
        });
    }
    c.issue_cmd(WebAuthn {
        method: http::Method::POST,
        path: format!("authenticator/{authenticator}/credential"),
        body: Some(imported),
    })
    .await?;
    c.goto(&authorize_url(
        &s.issuer,
        &redirect,
        &[("acr_values", "phr")],
    ))
    .await?;
    wait_text(c, "Use your passkey to continue").await?;
    wait_for(c, "#passkey-sign-in").await?.click().await?;
    let landed = eventually(Duration::from_secs(15), || async {
        let u = c.current_url().await.ok()?;
        u.as_str().starts_with(&redirect).then_some(u)
    })
    .await
    .with_context(|| "no redirect to the client after the step-up")?;
    let tokens = redeem(&s.issuer, &redirect, &landed).await?;
    let id = verify_jwt(
        tokens["id_token"].as_str().unwrap(),
        &s.jwks().await?,
        &s.issuer,
        "web",
    )?;
    assert_eq!(id["acr"], "phr", "{id}");
    assert_eq!(id["amr"], json!(["pwd", "hwk", "user", "mfa"]), "{id}");
    let held = credentials(c, &authenticator).await?;
    chrome.client.close().await?;

    // The virtual authenticator's key, read back: assertions built here from now on.
    let count = held[0]["signCount"].as_u64().context("signCount")? as u32;
    assert!(count >= 2, "the authenticator counts: {count}");
    let ada_key = SoftKey::from_pkcs8(&b64(&held[0]["privateKey"]), b64(&held[0]["credentialId"]));
    let ada_handle = B64.encode(&user_handle);

    let good = Claims {
        origin: &origin,
        rp_id: "localhost",
        challenge: "",
        flags: UP | UV,
        counter: count + 1,
    };
    // A good assertion over HTTP signs in (the counter moves on).
    let mut b = Browser::new();
    let (mut login, options) = login_options(&mut b, &s.issuer, &[]).await?;
    let challenge = options["challenge"]
        .as_str()
        .context("challenge")?
        .to_owned();
    assert_eq!(options["userVerification"], "required");
    assert_eq!(options["rpId"], "localhost");
    let response = ada_key.assert(
        &Claims {
            challenge: &challenge,
            ..good.clone()
        },
        &ada_handle,
    );
    let ok = post_assertion(&mut b, &s.issuer, &login, &response).await?;
    assert_eq!(ok.status, 302, "{}", ok.body);
    // Replayed: the challenge was used.
    (login, _) = login_options(&mut b, &s.issuer, &[]).await?;
    let replay = post_assertion(&mut b, &s.issuer, &login, &response).await?;
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(
        replay.body.contains("expired or was already used"),
        "{}",
        replay.body
    );

    // Wrong origin, wrong RP ID, no user verification, a counter gone back.
    let mut next = count + 2;
    for (what, claims, message) in [
        (
            "origin",
            Claims {
                origin: "http://localhost:1",
                ..good.clone()
            },
            "could not be verified",
        ),
        (
            "rp id",
            Claims {
                rp_id: "example.com",
                ..good.clone()
            },
            "could not be verified",
        ),
        (
            "uv",
            Claims {
                flags: UP,
                ..good.clone()
            },
            "could not be verified",
        ),
        (
            "counter",
            Claims {
                counter: count,
                ..good.clone()
            },
            "may have been copied",
        ),
    ] {
        let (login, options) = login_options(&mut b, &s.issuer, &[]).await?;
        let challenge = options["challenge"].as_str().unwrap().to_owned();
        let mut claims = Claims {
            challenge: &challenge,
            ..claims
        };
        if what != "counter" {
            claims.counter = next;
            next += 1;
        }
        let r = post_assertion(
            &mut b,
            &s.issuer,
            &login,
            &ada_key.assert(&claims, &ada_handle),
        )
        .await?;
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        assert!(r.body.contains(message), "{what}: {}", r.body);
        assert!(
            r.body.contains("passkey-sign-in"),
            "{what}: the login page again"
        );
    }

    // Ben enrolls a software passkey over HTTP; his credential does not sign in as Ada,
    // and once removed it signs in as nobody.
    let ben_key = SoftKey::generate();
    let mut ben = Browser::new();
    let ben_handle = enroll_over_http(
        &mut ben,
        &s.issuer,
        &s.issuer,
        "ben",
        BEN_PASSWORD,
        &ben_key,
        &origin,
    )
    .await?;
    let (login, options) = login_options(&mut b, &s.issuer, &[]).await?;
    let challenge = options["challenge"].as_str().unwrap().to_owned();
    let mixed = ben_key.assert(
        &Claims {
            challenge: &challenge,
            counter: 0,
            ..good.clone()
        },
        &ada_handle,
    );
    let r = post_assertion(&mut b, &s.issuer, &login, &mixed).await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("not registered here"), "{}", r.body);
    let security = ben.get(&format!("{}/account/security", s.issuer)).await?;
    let csrf = security.hidden("csrf")?;
    let removed = ben
        .post_form(
            &format!("{}/account/security/passkey/remove", s.issuer),
            &[("csrf", &csrf), ("id", &B64.encode(&ben_key.credential_id))],
        )
        .await?;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert!(removed.body.contains("The passkey is removed."));
    let (login, options) = login_options(&mut b, &s.issuer, &[]).await?;
    let challenge = options["challenge"].as_str().unwrap().to_owned();
    let gone = ben_key.assert(
        &Claims {
            challenge: &challenge,
            counter: 0,
            ..good.clone()
        },
        &ben_handle,
    );
    let r = post_assertion(&mut b, &s.issuer, &login, &gone).await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("not registered here"), "{}", r.body);
    // Garbage is a page, not a 5xx.
    let (login, _) = login_options(&mut b, &s.issuer, &[]).await?;
    let r = post_assertion(&mut b, &s.issuer, &login, "{\"id\":1}").await?;
    assert_eq!(r.status, 400, "{}", r.body);

    // The admin's factor reset removes Ada's passkey too.
    let (status, view) = s
        .admin_call(Method::DELETE, &format!("/User/{ada_sub}/factors"), None)
        .await?;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["factors"]["passkeys"], json!([]), "{view}");
    Ok(())
}

/// Starts a sign-in at `issuer` (any node's origin; signed out first) and asks the login page for passkey
/// options: the login page (for its hidden fields) and the options.
async fn login_options(
    b: &mut Browser,
    issuer: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<(Page, Value)> {
    b.cookies.clear();
    let r = b.get(&authorize_url(issuer, REDIRECT, extra)).await?;
    let login_url = r.location()?.to_string();
    let page = b.get(&login_url).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("passkey-sign-in"),
        "the login page offers passkeys"
    );
    let options = options_at(b, &format!("{issuer}/login/passkey/options"), &page).await?;
    Ok((page, options))
}

async fn options_at(b: &mut Browser, url: &str, page: &Page) -> anyhow::Result<Value> {
    let mut form = vec![("csrf".to_owned(), page.hidden("csrf")?)];
    if let Ok(i) = page.hidden("interaction") {
        form.push(("interaction".to_owned(), i));
    }
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = b.post_form(url, &fields).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    Ok(serde_json::from_str(&r.body)?)
}

async fn post_assertion(
    b: &mut Browser,
    issuer: &str,
    page: &Page,
    response: &str,
) -> anyhow::Result<Page> {
    b.post_form(
        &format!("{issuer}/login/passkey"),
        &[
            ("interaction", &page.hidden("interaction")?),
            ("csrf", &page.hidden("csrf")?),
            ("response", response),
        ],
    )
    .await
}

/// Signs `b` in with a password on the account page at `begin` (a node's origin), gets
/// creation options there and finishes the enrollment of `key` at `finish`; returns the
/// user handle the options carried.
async fn enroll_over_http(
    b: &mut Browser,
    begin: &str,
    finish: &str,
    user: &str,
    password: &str,
    key: &SoftKey,
    origin: &str,
) -> anyhow::Result<String> {
    let url = format!("{begin}/account/security");
    let back = b.sign_in(&url, user, password).await?;
    assert_eq!(back.status, 302, "{}", back.body);
    let page = b.get(&url).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("passkey-add"), "{}", page.body);
    let csp = page
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let options = options_at(
        b,
        &format!("{begin}/account/security/passkey/options"),
        &page,
    )
    .await?;
    let public_key = options.get("publicKey").unwrap_or(&options).clone();
    assert_eq!(
        public_key["authenticatorSelection"]["residentKey"],
        "required"
    );
    assert_eq!(
        public_key["authenticatorSelection"]["userVerification"],
        "required"
    );
    let handle = public_key["user"]["id"]
        .as_str()
        .context("user.id")?
        .to_owned();
    let challenge = public_key["challenge"]
        .as_str()
        .context("challenge")?
        .to_owned();
    let response = key.register(&Claims {
        origin,
        rp_id: "localhost",
        challenge: &challenge,
        flags: UP | UV,
        counter: 0,
    });
    let done = b
        .post_form(
            &format!("{finish}/account/security/passkey"),
            &[
                ("csrf", &page.hidden("csrf")?),
                ("name", "soft key"),
                ("response", &response),
            ],
        )
        .await?;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains("Your passkey is added."),
        "{}",
        done.body
    );
    // The same response again: the challenge is gone.
    let again = b
        .post_form(
            &format!("{finish}/account/security/passkey"),
            &[
                ("csrf", &page.hidden("csrf")?),
                ("name", "again"),
                ("response", &response),
            ],
        )
        .await?;
    assert_eq!(again.status, 400, "{}", again.body);
    assert!(
        again.body.contains("expired or was already used"),
        "{}",
        again.body
    );
    Ok(handle)
}

/// On a two-node cluster: the passkey is enrolled with options from node 1 and the
/// response posted to node 2; a sign-in asks node 2 for options and finishes at node 1;
/// a password session is stepped up to `phr` by the client's `requiredAcr`, through the
/// passkey, across the nodes too.
#[tokio::test]
async fn passkey_ceremonies_finish_on_the_other_node() -> anyhow::Result<()> {
    let c = Cluster::start_on("localhost", 2, Vec::new()).await?;
    for (path, body) in setup(REDIRECT) {
        let (status, resp) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        assert_eq!(status, 201, "{path}: {resp}");
    }
    eventually(Duration::from_secs(10), || async {
        let (status, _) = c
            .admin_call(1, Method::GET, "/Client/strict", None)
            .await
            .ok()?;
        (status == 200).then_some(())
    })
    .await?;
    let (n1, n2) = (c.issuers[0].public.clone(), c.issuers[1].public.clone());
    let key = SoftKey::generate();
    let mut b = Browser::new();
    let handle = enroll_over_http(&mut b, &n1, &n2, "ada", ADA_PASSWORD, &key, &c.issuer).await?;

    // The account session is a password session: the strict client steps it up through
    // the passkey (options at node 2, assertion at node 1).
    let r = b.get(&authorize_url_for(&n1, "strict")).await?;
    assert_eq!(r.status, 303, "{}", r.body);
    let step = r.location()?.to_string();
    assert!(step.contains("/login/otp?interaction="), "{step}");
    let page = b.get(&step.replacen(&c.issuer, &n2, 1)).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("passkey-sign-in"), "{}", page.body);
    assert!(!page.body.contains("name=\"code\""), "phr: no code form");
    let options = options_at(&mut b, &format!("{n2}/login/passkey/options"), &page).await?;
    let challenge = options["challenge"].as_str().unwrap().to_owned();
    let assertion = key.assert(
        &Claims {
            origin: &c.issuer,
            rp_id: "localhost",
            challenge: &challenge,
            flags: UP | UV,
            counter: 0,
        },
        &handle,
    );
    let done = post_assertion(&mut b, &n1, &page, &assertion).await?;
    assert_eq!(done.status, 302, "{}", done.body);
    let landed = done.location()?;
    assert!(landed.as_str().starts_with(REDIRECT), "{landed}");
    let params = params_of(&landed, false);
    let tokens: Value = reqwest::Client::new()
        .post(format!("{n2}/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", params.get("code").context("code")?),
            ("redirect_uri", REDIRECT),
            ("code_verifier", PKCE_VERIFIER),
            ("client_id", "strict"),
        ])
        .send()
        .await?
        .json()
        .await?;
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(format!("{n2}/oauth2/jwks"))
        .await?
        .json()
        .await?;
    let id = verify_jwt(
        tokens["id_token"].as_str().context("id_token")?,
        &jwks,
        &c.issuer,
        "strict",
    )?;
    assert_eq!(id["acr"], "phr", "{id}");
    assert_eq!(id["amr"], json!(["pwd", "hwk", "user", "mfa"]), "{id}");

    // Ben has no passkey: the strict client cannot be satisfied, and says so (no loop).
    let mut ben = Browser::new();
    let url = format!("{n1}/account/security");
    ben.sign_in(&url, "ben", BEN_PASSWORD).await?;
    let r = ben.get(&authorize_url_for(&n2, "strict")).await?;
    assert!(matches!(r.status, 302 | 303), "{}", r.body);
    let to = r.location()?;
    let params = params_of(&to, false);
    assert_eq!(
        params.get("error").map(String::as_str),
        Some("access_denied"),
        "{to}"
    );
    Ok(())
}

fn authorize_url_for(base: &str, client: &str) -> String {
    authorize_url(base, REDIRECT, &[])
        .replacen("client_id=web", &format!("client_id={client}"), 1)
        .replacen("scope=openid+orders.read", "scope=openid", 1)
}
