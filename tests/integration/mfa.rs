//! Second factors and step-up against the real binary: TOTP enrollment on
//! `/account/security`, sign-in with a password and a TOTP code (or a recovery code)
//! through the authorization code flow, `acr`/`amr` in the ID token, single-use codes (also
//! across two cluster nodes), the drift window, the per-user lockout, step-up of a
//! password session by `acr_values`, and the client's `requiredAcr`. TOTP codes are
//! computed here (RFC 6238, a few lines of our own over HMAC-SHA-1), not by the server's
//! code.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::browser::{params_of, Browser, Page, PKCE_CHALLENGE, PKCE_VERIFIER};
use signet_tests::cluster::Cluster;
use signet_tests::{eventually, verify_jwt, Serve, ServeOptions};

const REDIRECT: &str = "http://127.0.0.1:1/cb";
const MIA_PASSWORD: &str = "mia's password 12";

fn base32_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buf, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base32") as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

/// RFC 6238 (SHA-1, 6 digits, 30 s) of step `step`.
fn totp_at_step(secret: &[u8], step: u64) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &step.to_be_bytes());
    let h = mac.as_ref();
    let o = (h[19] & 0xf) as usize;
    let n = (u32::from(h[o] & 0x7f) << 24)
        | (u32::from(h[o + 1]) << 16)
        | (u32::from(h[o + 2]) << 8)
        | u32::from(h[o + 3]);
    format!("{:06}", n % 1_000_000)
}

fn current_step() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30
}

/// A user's authenticator as the test holds it: the secret and the steps already used.
struct Authenticator {
    secret: Vec<u8>,
    used: HashSet<u64>,
}

impl Authenticator {
    /// A code the server accepts (within the drift window) and nobody used yet.
    fn fresh(&mut self) -> anyhow::Result<String> {
        let now = current_step();
        for step in [now + 1, now, now - 1] {
            if self.used.insert(step) {
                return Ok(totp_at_step(&self.secret, step));
            }
        }
        bail!("every step of the window is used; the test ran too many sign-ins in 30 s")
    }

    /// A code three steps away: outside the window.
    fn outside_window(&self) -> String {
        totp_at_step(&self.secret, current_step() + 3)
    }
}

fn text_of(page: &str, id: &str) -> anyhow::Result<String> {
    let marker = format!("id=\"{id}\">");
    let start = page.find(&marker).with_context(|| format!("no #{id}"))? + marker.len();
    let end = page[start..].find('<').context("unterminated")?;
    Ok(page[start..start + end].to_owned())
}

fn recovery_codes(page: &str) -> anyhow::Result<Vec<String>> {
    let start = page
        .find("id=\"recovery-codes\"")
        .context("no recovery codes")?;
    let list = &page[start..page[start..].find("</ul>").context("unterminated")? + start];
    Ok(list
        .split("<code>")
        .skip(1)
        .filter_map(|c| c.split("</code>").next())
        .map(str::to_owned)
        .collect())
}

/// Signs `b` in on the account page and enrolls an authenticator there; returns it and the
/// recovery codes.
async fn enroll(
    b: &mut Browser,
    issuer: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<(Authenticator, Vec<String>)> {
    let url = format!("{issuer}/account/security");
    let back = b.sign_in(&url, user, password).await?;
    assert_eq!(back.status, 302, "{}", back.body);
    let page = b.get(&url).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<svg"), "a QR code as SVG");
    let secret = base32_decode(&text_of(&page.body, "totp-secret")?);
    assert_eq!(secret.len(), 20);
    let (sealed, csrf) = (page.hidden("secret")?, page.hidden("csrf")?);
    assert!(!sealed.contains(&text_of(&page.body, "totp-secret")?.replace(' ', "")));
    let mut auth = Authenticator {
        secret,
        used: HashSet::new(),
    };
    let action = format!("{url}/totp");
    // A wrong code does not turn it on; a forged form is refused.
    let wrong = b
        .post_form(
            &action,
            &[
                ("csrf", &csrf),
                ("secret", &sealed),
                ("code", &auth.outside_window()),
            ],
        )
        .await?;
    assert_eq!(wrong.status, 400, "{}", wrong.body);
    assert!(wrong.body.contains("The code is wrong"));
    let forged = b
        .post_form(
            &action,
            &[("csrf", "forged"), ("secret", &sealed), ("code", "123456")],
        )
        .await?;
    assert_eq!(forged.status, 403);
    let code = auth.fresh()?;
    let done = b
        .post_form(
            &action,
            &[("csrf", &csrf), ("secret", &sealed), ("code", &code)],
        )
        .await?;
    assert_eq!(done.status, 200, "{}", done.body);
    let codes = recovery_codes(&done.body)?;
    assert_eq!(codes.len(), 10);
    let again = b.get(&url).await?;
    assert!(again.body.contains("An authenticator app is set up"));
    assert!(
        !again.body.contains(&codes[0]),
        "recovery codes are shown once"
    );
    Ok((auth, codes))
}

fn authorize_url(issuer: &str, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&format!("{issuer}/oauth2/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("state", "s")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

/// Posts `code` on the code page `otp` leads to (`node` replaces the issuer's origin when
/// given: the step lands on another node).
async fn post_code(
    b: &mut Browser,
    otp: &Page,
    code: &str,
    node: Option<(&str, &str)>,
) -> anyhow::Result<Page> {
    assert_eq!(otp.status, 303, "{}", otp.body);
    let mut url = otp.location()?.to_string();
    if let Some((from, to)) = node {
        url = url.replacen(from, to, 1);
    }
    assert!(url.contains("/login/otp?interaction="), "{url}");
    let page = b.get(&url).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    let action = url.split('?').next().unwrap().to_owned();
    let (interaction, csrf) = (page.hidden("interaction")?, page.hidden("csrf")?);
    b.post_form(
        &action,
        &[
            ("interaction", &interaction),
            ("csrf", &csrf),
            ("code", code),
        ],
    )
    .await
}

/// Posts another code on the code page just answered (`page`, the page with the error).
async fn post_again(
    b: &mut Browser,
    action: &str,
    page: &Page,
    code: &str,
) -> anyhow::Result<Page> {
    let (interaction, csrf) = (page.hidden("interaction")?, page.hidden("csrf")?);
    b.post_form(
        action,
        &[
            ("interaction", &interaction),
            ("csrf", &csrf),
            ("code", code),
        ],
    )
    .await
}

/// The ID token's claims for the authorization response `r` (a redirect with a code).
async fn id_token_of(
    http: &reqwest::Client,
    token_base: &str,
    issuer: &str,
    jwks: &jsonwebtoken::jwk::JwkSet,
    client_id: &str,
    r: &Page,
) -> anyhow::Result<Value> {
    assert_eq!(r.status, 302, "{}", r.body);
    let params = params_of(&r.location()?, false);
    let code = params
        .get("code")
        .with_context(|| format!("no code: {params:?}"))?;
    let resp = http
        .post(format!("{token_base}/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", PKCE_VERIFIER),
            ("client_id", client_id),
        ])
        .send()
        .await?;
    let body: Value = resp.json().await?;
    let id = body["id_token"]
        .as_str()
        .with_context(|| format!("{body}"))?;
    verify_jwt(id, jwks, issuer, client_id)
}

fn amr(claims: &Value) -> Vec<String> {
    claims["amr"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn public_client(id: &str, properties: Value) -> Value {
    json!({"clientId": id, "allowedGrantTypes": ["authorization_code"],
        "requireClientSecret": false, "requireConsent": false,
        "redirectUris": [REDIRECT], "allowedScopes": ["openid"], "properties": properties})
}

#[tokio::test]
async fn totp_enrollment_sign_in_step_up_recovery_and_lockout() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let mia = s
        .create(
            "/User",
            json!({"username": "mia", "password": MIA_PASSWORD}),
        )
        .await?;
    let sub = mia["sub"].as_str().context("sub")?.to_owned();
    s.create(
        "/User",
        json!({"username": "pat", "password": "pat's password 12"}),
    )
    .await?;
    s.create("/Client", public_client("web", json!({}))).await?;
    s.create(
        "/Client",
        public_client("strict", json!({"requiredAcr": "mfa"})),
    )
    .await?;
    // An unknown level is refused, naming the property.
    let (status, body) = s
        .admin_call(
            Method::POST,
            "/Client",
            Some(&public_client("gold", json!({"requiredAcr": "gold"}))),
        )
        .await?;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("properties.requiredAcr"),
        "{body}"
    );
    let jwks = s.jwks().await?;
    let http = reqwest::Client::new();
    let discovery: Value = http
        .get(format!("{}/.well-known/openid-configuration", s.issuer))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        discovery["acr_values_supported"],
        json!(["pwd", "mfa", "phr"])
    );

    // Mia signs in on the account page (a password session) and turns TOTP on.
    let mut account = Browser::new();
    let (mut auth, codes) = enroll(&mut account, &s.issuer, "mia", MIA_PASSWORD).await?;
    let (_, view) = s
        .admin_call(Method::GET, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!(view["factors"]["totp"], true, "{view}");
    assert_eq!(view["factors"]["recoveryCodes"], 10, "{view}");
    // Audited, never in plaintext.
    let (_, events) = s
        .admin_call(Method::GET, "/Events?aggregate=user&limit=1000", None)
        .await?;
    let events = events.to_string();
    assert!(
        events.contains("\"security_changed\"") && events.contains("totp_enrolled"),
        "{events}"
    );
    assert!(!events.contains(&codes[0]));
    let records = std::fs::read_dir(dir.path().join("events"))?
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect::<String>();
    assert!(
        !records.contains(&mia_secret_b32(&auth)),
        "the secret is sealed in the log"
    );

    // Step-up: the password session suffices for a plain request (acr pwd) ...
    let plain = account.get(&authorize_url(&s.issuer, "web", &[])).await?;
    let claims = id_token_of(&http, &s.issuer, &s.issuer, &jwks, "web", &plain).await?;
    assert_eq!(claims["acr"], "pwd");
    assert_eq!(amr(&claims), ["pwd"]);
    let auth_time = claims["auth_time"].clone();
    // ... and a request for mfa asks only for the code, then carries acr mfa in the same
    // session (same sid, same password time).
    let asked = account
        .get(&authorize_url(&s.issuer, "web", &[("acr_values", "mfa")]))
        .await?;
    assert!(
        asked.location()?.path().ends_with("/login/otp"),
        "{:?}",
        asked.location()
    );
    let code = auth.fresh()?;
    let stepped = post_code(&mut account, &asked, &code, None).await?;
    let up = id_token_of(&http, &s.issuer, &s.issuer, &jwks, "web", &stepped).await?;
    assert_eq!(up["acr"], "mfa", "{up}");
    assert_eq!(amr(&up), ["pwd", "otp", "mfa"]);
    assert_eq!(up["sid"], claims["sid"]);
    assert_eq!(up["auth_time"], auth_time);
    // The raised session now answers mfa requests at once.
    let again = account
        .get(&authorize_url(&s.issuer, "web", &[("acr_values", "mfa")]))
        .await?;
    assert!(params_of(&again.location()?, false).contains_key("code"));

    // A fresh sign-in: password, then the code page; acr mfa in the ID token.
    let mut b = Browser::new();
    let otp = b
        .sign_in(&authorize_url(&s.issuer, "web", &[]), "mia", MIA_PASSWORD)
        .await?;
    let action = format!("{}/login/otp", s.issuer);
    let outside = post_code(&mut b, &otp, &auth.outside_window(), None).await?;
    assert_eq!(outside.status, 200);
    assert!(
        outside.body.contains("The code is wrong"),
        "{}",
        outside.body
    );
    let code = auth.fresh()?;
    let signed_in = post_again(&mut b, &action, &outside, &code).await?;
    let claims = id_token_of(&http, &s.issuer, &s.issuer, &jwks, "web", &signed_in).await?;
    assert_eq!(claims["acr"], "mfa");
    assert_eq!(amr(&claims), ["pwd", "otp", "mfa"]);

    // The same code again, in another browser: refused (single use).
    let mut c = Browser::new();
    let otp = c
        .sign_in(&authorize_url(&s.issuer, "web", &[]), "mia", MIA_PASSWORD)
        .await?;
    let reused = post_code(&mut c, &otp, &code, None).await?;
    assert!(reused.body.contains("used already"), "{}", reused.body);
    // A recovery code works instead, once.
    let recovered = post_again(&mut c, &action, &reused, &codes[3]).await?;
    let claims = id_token_of(&http, &s.issuer, &s.issuer, &jwks, "web", &recovered).await?;
    assert_eq!(claims["acr"], "mfa");
    let mut d = Browser::new();
    let otp = d
        .sign_in(&authorize_url(&s.issuer, "web", &[]), "mia", MIA_PASSWORD)
        .await?;
    let spent = post_code(&mut d, &otp, &codes[3], None).await?;
    assert!(spent.body.contains("The code is wrong"), "{}", spent.body);
    let (_, view) = s
        .admin_call(Method::GET, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!(view["factors"]["recoveryCodes"], 9, "{view}");

    // requiredAcr: pat has no second factor, so the strict client is refused; mia gets in
    // with her code.
    let mut p = Browser::new();
    let refused = p
        .sign_in(
            &authorize_url(&s.issuer, "strict", &[]),
            "pat",
            "pat's password 12",
        )
        .await?;
    let params = params_of(&refused.location()?, false);
    assert_eq!(
        params.get("error").map(String::as_str),
        Some("access_denied"),
        "{params:?}"
    );
    // Pat's password session: a voluntary acr_values=mfa goes on with what was reached (the
    // ID token says pwd); an essential acr claim for mfa is refused; a claims parameter
    // that is no JSON object is invalid.
    let best_effort = p
        .get(&authorize_url(
            &s.issuer,
            "web",
            &[("acr_values", "mfa"), ("prompt", "none")],
        ))
        .await?;
    let claims = id_token_of(&http, &s.issuer, &s.issuer, &jwks, "web", &best_effort).await?;
    assert_eq!(claims["acr"], "pwd");
    let essential =
        json!({"id_token": {"acr": {"essential": true, "values": ["mfa"]}}}).to_string();
    for (claims, error) in [
        (essential.as_str(), "access_denied"),
        ("[1]", "invalid_request"),
    ] {
        let r = p
            .get(&authorize_url(&s.issuer, "web", &[("claims", claims)]))
            .await?;
        let params = params_of(&r.location()?, false);
        assert_eq!(
            params.get("error").map(String::as_str),
            Some(error),
            "{params:?}"
        );
    }

    // Brute force: wrong codes lock the user's code step for a while, even for a right code.
    let mut e = Browser::new();
    let otp = e
        .sign_in(
            &authorize_url(&s.issuer, "strict", &[]),
            "mia",
            MIA_PASSWORD,
        )
        .await?;
    let mut page = post_code(&mut e, &otp, &auth.outside_window(), None).await?;
    let mut tries = 1;
    while page.status != 429 {
        tries += 1;
        assert!(tries <= 5, "never throttled");
        page = post_again(&mut e, &action, &page, &auth.outside_window()).await?;
    }
    assert!(page.body.contains("Too many wrong codes"));
    // A code of the current step (right, if used: the lockout answers before anything).
    let code = totp_at_step(&auth.secret, current_step());
    let still = post_again(&mut e, &action, &page, &code).await?;
    assert_eq!(still.status, 429, "locked out, even with a right code");

    // Removal from the account page with the password.
    let url = format!("{}/account/security", s.issuer);
    let page = account.get(&url).await?;
    let csrf = page.hidden("csrf")?;
    let wrong = account
        .post_form(
            &format!("{url}/totp/remove"),
            &[("csrf", &csrf), ("password", "nope")],
        )
        .await?;
    assert!(wrong.body.contains("The password is wrong"));
    let removed = account
        .post_form(
            &format!("{url}/totp/remove"),
            &[("csrf", &csrf), ("password", MIA_PASSWORD)],
        )
        .await?;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert!(removed.body.contains("No authenticator app is set up"));
    let (_, view) = s
        .admin_call(Method::GET, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!(view["factors"]["totp"], false, "{view}");
    assert_eq!(view["factors"]["recoveryCodes"], 0, "{view}");
    Ok(())
}

fn mia_secret_b32(auth: &Authenticator) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buf, mut bits, mut out) = (0u32, 0u32, String::new());
    for b in &auth.secret {
        buf = (buf << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    out
}

/// The second step lands on another node (the pending step is in Redis), and a code used
/// at one node is refused at the other.
#[tokio::test]
async fn second_factor_spans_cluster_nodes() -> anyhow::Result<()> {
    let c = Cluster::start(2).await?;
    for (path, body) in [
        (
            "/User",
            json!({"username": "mia", "password": MIA_PASSWORD}),
        ),
        ("/Client", public_client("web", json!({}))),
    ] {
        let (status, resp) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        assert_eq!(status, 201, "{path}: {resp}");
    }
    let node0 = c.issuers[0].public.clone();
    let node1 = c.issuers[1].public.clone();
    eventually(Duration::from_secs(10), || async {
        let (s, _) = c
            .admin_call(1, Method::GET, "/Client/web", None)
            .await
            .ok()?;
        (s == 200).then_some(())
    })
    .await?;
    let jwks = c.jwks(0).await?;
    let mut account = Browser::new();
    let (mut auth, _) = enroll(&mut account, &c.issuer, "mia", MIA_PASSWORD).await?;
    // Node 1 sees the enrollment (the users projection follows the log).
    eventually(Duration::from_secs(10), || async {
        let (_, v) = c
            .admin_call(1, Method::GET, "/User?username=mia", None)
            .await
            .ok()?;
        v.to_string().contains("\"totp\":true").then_some(())
    })
    .await?;

    let mut b = Browser::new();
    let otp = b
        .sign_in(&authorize_url(&c.issuer, "web", &[]), "mia", MIA_PASSWORD)
        .await?;
    let code = auth.fresh()?;
    let done = post_code(&mut b, &otp, &code, Some((&node0, &node1))).await?;
    let claims = id_token_of(&c.http, &node1, &c.issuer, &jwks, "web", &done).await?;
    assert_eq!(claims["acr"], "mfa");

    let mut other = Browser::new();
    let otp = other
        .sign_in(&authorize_url(&c.issuer, "web", &[]), "mia", MIA_PASSWORD)
        .await?;
    let replayed = post_code(&mut other, &otp, &code, Some((&node0, &node1))).await?;
    assert!(replayed.body.contains("used already"), "{}", replayed.body);
    Ok(())
}

/// The password policy (`--password-min-length`, the common-password list) at the admin
/// API and on the account page, and a self-service password change.
#[tokio::test]
async fn password_policy_and_self_service_change() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            extra_args: vec!["--password-min-length".into(), "12".into()],
            ..ServeOptions::default()
        },
    )
    .await?;
    for (password, rule) in [
        ("eleven char", "must be 12 to 1024 characters"),
        ("Unbelievable", "most commonly used"),
    ] {
        let (status, body) = s
            .admin_call(
                Method::POST,
                "/User",
                Some(&json!({"username": "ola", "password": password})),
            )
            .await?;
        assert_eq!(status, 400, "{body}");
        let text = body.to_string();
        assert!(
            text.contains("\"password\"") && text.contains(rule),
            "{text}"
        );
        assert!(!text.contains(password), "the password is not echoed");
    }
    let ola = s
        .create(
            "/User",
            json!({"username": "ola", "password": "ola's password 12"}),
        )
        .await?;
    let sub = ola["sub"].as_str().context("sub")?.to_owned();
    let (status, body) = s
        .admin_call(
            Method::PUT,
            &format!("/User/{sub}"),
            Some(&json!({"username": "ola", "password": "contortionist"})),
        )
        .await?;
    assert_eq!(status, 400, "{body}");

    let mut b = Browser::new();
    let url = format!("{}/account/security", s.issuer);
    b.sign_in(&url, "ola", "ola's password 12").await?;
    let page = b.get(&url).await?;
    let csrf = page.hidden("csrf")?;
    let action = format!("{url}/password");
    for (current, new, confirm, says) in [
        (
            "ola's password 12",
            "businessbabe",
            "businessbabe",
            "most commonly used",
        ),
        ("ola's password 12", "short", "short", "must be 12 to 1024"),
        (
            "ola's password 12",
            "a new password 34",
            "a new password 35",
            "do not match",
        ),
        (
            "wrong password 12",
            "a new password 34",
            "a new password 34",
            "current password is wrong",
        ),
    ] {
        let r = b
            .post_form(
                &action,
                &[
                    ("csrf", &csrf),
                    ("current", current),
                    ("new", new),
                    ("confirm", confirm),
                ],
            )
            .await?;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains(says), "{says}: {}", r.body);
    }
    let forged = b
        .post_form(
            &action,
            &[
                ("csrf", "x"),
                ("current", "ola's password 12"),
                ("new", "a new password 34"),
                ("confirm", "a new password 34"),
            ],
        )
        .await?;
    assert_eq!(forged.status, 403);
    let done = b
        .post_form(
            &action,
            &[
                ("csrf", &csrf),
                ("current", "ola's password 12"),
                ("new", "a new password 34"),
                ("confirm", "a new password 34"),
            ],
        )
        .await?;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Your password is changed"));
    // The new password signs in; the old one does not.
    let mut fresh = Browser::new();
    let ok = fresh.sign_in(&url, "ola", "a new password 34").await?;
    assert_eq!(ok.status, 302, "{}", ok.body);
    let mut old = Browser::new();
    let no = old.sign_in(&url, "ola", "ola's password 12").await?;
    assert!(no.body.contains("The username or password is wrong"));
    Ok(())
}

/// An administrator removes a user's second factors (`signet admin user reset-factors`,
/// `DELETE /admin/v1/User/{sub}/factors`): the user signs in with the password alone.
#[tokio::test]
async fn admins_reset_a_users_factors() -> anyhow::Result<()> {
    use crate::admin_cli::Admin;
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let zoe = s
        .create(
            "/User",
            json!({"username": "zoe", "password": "zoe's password 12"}),
        )
        .await?;
    let sub = zoe["sub"].as_str().context("sub")?.to_owned();
    s.create("/Client", public_client("web", json!({}))).await?;
    let jwks = s.jwks().await?;
    let mut account = Browser::new();
    enroll(&mut account, &s.issuer, "zoe", "zoe's password 12").await?;
    let mut b = Browser::new();
    let asked = b
        .sign_in(
            &authorize_url(&s.issuer, "web", &[]),
            "zoe",
            "zoe's password 12",
        )
        .await?;
    assert_eq!(asked.status, 303, "the code page first");

    let admin = Admin::for_node(&s);
    let out = admin.run(&["user", "reset-factors", "zoe"]).await;
    assert!(out.ok().contains("second factors removed"), "{out:#?}");
    let out = admin.run(&["user", "reset-factors", "nobody"]).await;
    assert!(out.one_line(5).contains("nobody"), "{out:#?}");
    let (status, _) = s
        .admin_call(Method::DELETE, "/User/no-such-sub/factors", None)
        .await?;
    assert_eq!(status, 404);
    let (_, view) = s
        .admin_call(Method::GET, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!(view["factors"]["totp"], false, "{view}");
    let (_, events) = s
        .admin_call(Method::GET, "/Events?aggregate=user&limit=1000", None)
        .await?;
    assert!(events.to_string().contains("factors_reset"));

    let mut c = Browser::new();
    let r = c
        .sign_in(
            &authorize_url(&s.issuer, "web", &[]),
            "zoe",
            "zoe's password 12",
        )
        .await?;
    let claims = id_token_of(
        &reqwest::Client::new(),
        &s.issuer,
        &s.issuer,
        &jwks,
        "web",
        &r,
    )
    .await?;
    assert_eq!(claims["acr"], "pwd");
    Ok(())
}

/// `mustChangePassword`: the next sign-in (after every factor) asks for a new password under
/// the policy before it finishes, and the mark is cleared.
#[tokio::test]
async fn a_forced_password_change_comes_before_the_session() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let kai = s
        .create(
            "/User",
            json!({"username": "kai", "password": "kai's password 12", "mustChangePassword": true}),
        )
        .await?;
    assert_eq!(kai["mustChangePassword"], true, "{kai}");
    let sub = kai["sub"].as_str().context("sub")?.to_owned();
    s.create("/Client", public_client("web", json!({}))).await?;
    let jwks = s.jwks().await?;
    let mut b = Browser::new();
    let asked = b
        .sign_in(
            &authorize_url(&s.issuer, "web", &[]),
            "kai",
            "kai's password 12",
        )
        .await?;
    assert_eq!(asked.status, 303, "{}", asked.body);
    let url = asked.location()?.to_string();
    assert!(url.contains("/login/password?interaction="), "{url}");
    let page = b.get(&url).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    let action = url.split('?').next().unwrap().to_owned();
    let (interaction, csrf) = (page.hidden("interaction")?, page.hidden("csrf")?);
    for (new, says) in [
        ("password", "must be 10 to 1024"),
        ("Unbelievable", "most commonly used"),
        ("kai's password 12", "not used here"),
    ] {
        let r = b
            .post_form(
                &action,
                &[
                    ("interaction", &interaction),
                    ("csrf", &csrf),
                    ("new", new),
                    ("confirm", new),
                ],
            )
            .await?;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains(says), "{says}: {}", r.body);
    }
    let forged = b
        .post_form(
            &action,
            &[
                ("interaction", &interaction),
                ("csrf", "x"),
                ("new", "kai's new password 3"),
                ("confirm", "kai's new password 3"),
            ],
        )
        .await?;
    assert_eq!(forged.status, 403);
    let done = b
        .post_form(
            &action,
            &[
                ("interaction", &interaction),
                ("csrf", &csrf),
                ("new", "kai's new password 3"),
                ("confirm", "kai's new password 3"),
            ],
        )
        .await?;
    let claims = id_token_of(
        &reqwest::Client::new(),
        &s.issuer,
        &s.issuer,
        &jwks,
        "web",
        &done,
    )
    .await?;
    assert_eq!(claims["acr"], "pwd");
    let (_, view) = s
        .admin_call(Method::GET, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!(view["mustChangePassword"], false, "{view}");
    // The next sign-in goes straight through with the new password.
    let mut c = Browser::new();
    let r = c
        .sign_in(
            &authorize_url(&s.issuer, "web", &[]),
            "kai",
            "kai's new password 3",
        )
        .await?;
    assert_eq!(r.status, 302, "{}", r.body);
    assert!(params_of(&r.location()?, false).contains_key("code"));
    Ok(())
}
