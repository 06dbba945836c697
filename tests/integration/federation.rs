//! Sign-in through an upstream OpenID Connect provider (issue 16): a second `signet serve`
//! is the upstream (no mock), at `http://localhost:<port>` so that its cookies and the
//! downstream's (`http://127.0.0.1:<port>`) stay apart as in a real browser. The browser is
//! driven over HTTP, one cookie jar per host, each redirect followed by hand.

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::browser::{params_of, Browser, Page, PKCE_CHALLENGE, PKCE_VERIFIER};
use signet_tests::{free_port, verify_jwt, Serve, ServeOptions};

const REDIRECT: &str = "http://127.0.0.1:1/cb";
const LOGGED_OUT: &str = "http://127.0.0.1:1/bye";
const PASSWORD: &str = "correct horse battery staple";
const UP_SECRET: &str = "upstream-secret-0123456789";

/// The upstream (at `localhost`) and the downstream (at `127.0.0.1`, with the provider
/// `up`), and the clients of the downstream: `app` (any provider), `restricted` (only the
/// provider `other`), `fedonly` (only `up`, no password form).
struct Pair {
    up: Serve,
    down: Serve,
    up_issuer: String,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn start_upstream(dir: &std::path::Path) -> anyhow::Result<(Serve, String)> {
    let (public, admin) = (free_port(), free_port());
    let issuer = format!("http://localhost:{public}");
    let up = Serve::start(
        dir,
        ServeOptions {
            ports: Some((public, admin)),
            omit_issuer: true,
            // Its clients' `jwksUri` may be the downstream's JWKS on loopback.
            extra_args: vec![
                "--issuer".into(),
                issuer.clone(),
                "--allow-private-outbound".into(),
            ],
            ..Default::default()
        },
    )
    .await?;
    Ok((up, issuer))
}

async fn pair() -> anyhow::Result<Pair> {
    let (d1, d2) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (up, up_issuer) = start_upstream(d1.path()).await?;
    let down = Serve::start(
        d2.path(),
        ServeOptions {
            extra_args: vec!["--allow-private-outbound".into()],
            capture_logs: true,
            ..Default::default()
        },
    )
    .await?;
    up.create(
        "/User",
        json!({"username": "alice", "password": PASSWORD, "claims": {
            "name": "Alice Upstream", "email": "alice@up.example", "email_verified": true
        }}),
    )
    .await?;
    up.create(
        "/Client",
        json!({
            "clientId": "signet-down", "allowedGrantTypes": ["authorization_code"],
            "clientSecrets": [{"value": UP_SECRET}], "requireConsent": false,
            "alwaysIncludeUserClaimsInIdToken": true,
            "redirectUris": [format!("{}/federation/up/callback", down.issuer)],
            "postLogoutRedirectUris": [format!("{}/federation/up/logged-out", down.issuer)],
            "allowedScopes": ["openid", "profile", "email"]
        }),
    )
    .await?;
    down.create(
        "/IdentityProvider",
        json!({
            "scheme": "up", "displayName": "Upstream Corp", "type": "oidc",
            "authority": up_issuer, "clientId": "signet-down", "clientSecret": UP_SECRET,
            "claimMappings": {"name": "name", "email": "email", "email_verified": "email_verified"}
        }),
    )
    .await?;
    for (id, extra) in [
        ("app", json!({})),
        (
            "restricted",
            json!({"identityProviderRestrictions": ["other"]}),
        ),
        (
            "fedonly",
            json!({"identityProviderRestrictions": ["up"], "enableLocalLogin": false}),
        ),
    ] {
        let mut body = json!({
            "clientId": id, "allowedGrantTypes": ["authorization_code"],
            "requireClientSecret": false, "requireConsent": false,
            "redirectUris": [REDIRECT], "postLogoutRedirectUris": [LOGGED_OUT],
            "allowedScopes": ["openid", "profile", "email"]
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        down.create("/Client", body).await?;
    }
    Ok(Pair {
        up,
        down,
        up_issuer,
        _dirs: (d1, d2),
    })
}

fn authorize_url(issuer: &str, client: &str, extra: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&format!("{issuer}/oauth2/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("client_id", client)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile email")
        .append_pair("state", "s")
        .append_pair("nonce", "n-down")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

/// A browser with one cookie jar per host.
struct TwoHosts {
    down: Browser,
    up: Browser,
}

impl TwoHosts {
    fn new() -> Self {
        TwoHosts {
            down: Browser::new(),
            up: Browser::new(),
        }
    }

    fn jar(&mut self, url: &str) -> &mut Browser {
        if url.starts_with("http://localhost") {
            &mut self.up
        } else {
            &mut self.down
        }
    }

    /// GETs `url` and follows redirects until a page, or a redirect to the client.
    async fn follow(&mut self, url: &str) -> anyhow::Result<(String, Page)> {
        let mut url = url.to_owned();
        for _ in 0..10 {
            let page = self.jar(&url).get(&url).await?;
            if !matches!(page.status, 302 | 303) {
                return Ok((url, page));
            }
            let next = page.location()?.to_string();
            if next.starts_with(REDIRECT) {
                return Ok((url, page));
            }
            url = next;
        }
        bail!("too many redirects")
    }

    /// Presses the provider button of the downstream login page at `login_url`; returns
    /// the redirect to the provider.
    async fn press(&mut self, login_url: &str, login: &Page) -> anyhow::Result<Page> {
        let action = button_action(login).context("no provider button")?;
        let (i, c) = (login.hidden("interaction")?, login.hidden("csrf")?);
        let _ = login_url;
        self.down
            .post_form(&action, &[("interaction", &i), ("csrf", &c)])
            .await
    }

    /// At the upstream login page (`url`): signs in as alice; the answer redirects back to
    /// the downstream callback.
    async fn upstream_sign_in(&mut self, url: &str, page: &Page) -> anyhow::Result<Page> {
        let action = url.split('?').next().unwrap_or_default().to_owned();
        let (i, c) = (page.hidden("interaction")?, page.hidden("csrf")?);
        self.up
            .post_form(
                &action,
                &[
                    ("interaction", &i),
                    ("csrf", &c),
                    ("username", "alice"),
                    ("password", PASSWORD),
                ],
            )
            .await
    }
}

/// The action of the provider `up`'s button (the page escapes `/` as `&#x2f;`).
fn button_action(login: &Page) -> Option<String> {
    let body = login.body.replace("&#x2f;", "/");
    let marker = "/federation/up/start";
    let at = body.find(marker)?;
    let start = body[..at].rfind('"')? + 1;
    Some(body[start..at + marker.len()].to_owned())
}

/// Through the downstream authorize, the upstream sign-in and the callback: the redirect
/// to the client.
async fn federated_sign_in(p: &Pair, b: &mut TwoHosts, client: &str) -> anyhow::Result<Page> {
    let (login_url, login) = b
        .follow(&authorize_url(&p.down.issuer, client, &[]))
        .await?;
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(login.body.contains("Upstream Corp"), "{}", login.body);
    let to_up = b.press(&login_url, &login).await?;
    assert_eq!(to_up.status, 303, "{}", to_up.body);
    let (up_login_url, up_login) = b.follow(to_up.location()?.as_str()).await?;
    assert_eq!(up_login.status, 200, "{}", up_login.body);
    let back = b.upstream_sign_in(&up_login_url, &up_login).await?;
    assert_eq!(back.status, 302, "{}", back.body);
    let callback = back.location()?.to_string();
    assert!(callback.contains("/federation/up/callback"), "{callback}");
    let page = b.down.get(&callback).await?;
    Ok(page)
}

/// Where a successful callback sends the browser: its page moves on by itself (meta
/// refresh; see `federation::fresh_navigation`) to the client.
fn landing(page: &Page) -> anyhow::Result<url::Url> {
    if page.status != 200 {
        bail!("the callback answered {}: {}", page.status, page.body);
    }
    let marker = "id=\"continue\"";
    let at = page.body.find(marker).context("no continue link")?;
    let href = page.body[..at]
        .rsplit_once("href=\"")
        .context("no href")?
        .1
        .split('"')
        .next()
        .unwrap_or_default()
        .replace("&#x2f;", "/")
        .replace("&#x3d;", "=")
        .replace("&amp;", "&");
    let u = url::Url::parse(&href)?;
    assert!(
        page.body.contains("http-equiv=\"refresh\""),
        "{}",
        page.body
    );
    Ok(u)
}

async fn redeem(s: &Serve, client: &str, redirect: &Page) -> anyhow::Result<Value> {
    let code = params_of(&landing(redirect)?, false)
        .remove("code")
        .context("no code")?;
    let (status, _, body) = s
        .token_request(
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", PKCE_VERIFIER),
                ("client_id", client),
            ],
        )
        .await?;
    if status != 200 {
        bail!("token: {status} {body}");
    }
    Ok(body)
}

#[tokio::test]
async fn a_user_signs_in_through_an_upstream_signet_and_is_provisioned_once() -> anyhow::Result<()>
{
    let p = pair().await?;
    let mut b = TwoHosts::new();
    let done = federated_sign_in(&p, &mut b, "app").await?;
    assert!(landing(&done)?.as_str().starts_with(REDIRECT));
    let tokens = redeem(&p.down, "app", &done).await?;
    let jwks = p.down.jwks().await?;
    let id = verify_jwt(
        tokens["id_token"].as_str().context("id_token")?,
        &jwks,
        &p.down.issuer,
        "app",
    )?;
    assert_eq!(id["idp"], "up", "{id}");
    assert_eq!(
        id["amr"],
        json!(["pwd"]),
        "the upstream's amr is kept: {id}"
    );
    assert_eq!(id["nonce"], "n-down");
    let sub = id["sub"].as_str().context("sub")?.to_owned();

    // The user was made just in time, with the mapped claims and the link.
    let (status, user) = p
        .down
        .admin_call(Method::GET, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["claims"]["name"], "Alice Upstream", "{user}");
    assert_eq!(user["claims"]["email"], "alice@up.example", "{user}");
    assert_eq!(user["externalLogins"][0]["scheme"], "up", "{user}");
    let up_user =
        p.up.admin_call(Method::GET, "/User?username=alice", None)
            .await?
            .1;
    assert_eq!(
        user["externalLogins"][0]["subject"], up_user[0]["sub"],
        "linked by the upstream sub: {user}"
    );
    let username = user["username"].as_str().unwrap_or_default().to_owned();
    assert!(username.starts_with("up:"), "{username}");
    // No password works for it.
    let mut local = Browser::new();
    let r = local
        .sign_in(
            &authorize_url(&p.down.issuer, "app", &[]),
            &username,
            PASSWORD,
        )
        .await?;
    assert_eq!(r.status, 200, "the login page again: {}", r.body);

    // A second sign-in, from a fresh browser, finds the same user.
    let mut b2 = TwoHosts::new();
    let again = federated_sign_in(&p, &mut b2, "app").await?;
    let tokens = redeem(&p.down, "app", &again).await?;
    let id2 = verify_jwt(
        tokens["id_token"].as_str().context("id_token")?,
        &jwks,
        &p.down.issuer,
        "app",
    )?;
    assert_eq!(id2["sub"], sub.as_str());
    let (_, found) = p
        .down
        .admin_call(Method::GET, &format!("/User?username={username}"), None)
        .await?;
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");

    // The admin removes the link: the identity may no longer sign in as that user.
    let (status, body) = p
        .down
        .admin_call(
            Method::DELETE,
            &format!("/User/{sub}/ExternalLogin/up"),
            None,
        )
        .await?;
    assert_eq!(status, 204, "{body}");
    let (_, user) = p
        .down
        .admin_call(Method::GET, &format!("/User/{sub}"), None)
        .await?;
    assert!(user.get("externalLogins").is_none(), "{user}");
    let mut b3 = TwoHosts::new();
    let refused = federated_sign_in(&p, &mut b3, "app").await?;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("no longer linked"),
        "{}",
        refused.body
    );
    Ok(())
}

/// RP-initiated logout of a session that came from the upstream continues at the upstream's
/// end-session endpoint (with the upstream ID token as hint), which ends the upstream
/// session and comes back to Signet, which goes on to the client's post-logout URI.
#[tokio::test]
async fn signing_out_continues_at_the_upstream_and_comes_back() -> anyhow::Result<()> {
    let p = pair().await?;
    let mut b = TwoHosts::new();
    let done = federated_sign_in(&p, &mut b, "app").await?;
    let tokens = redeem(&p.down, "app", &done).await?;
    let hint = tokens["id_token"].as_str().context("id_token")?;
    let mut u = url::Url::parse(&format!("{}/oauth2/logout", p.down.issuer))?;
    u.query_pairs_mut()
        .append_pair("id_token_hint", hint)
        .append_pair("post_logout_redirect_uri", LOGGED_OUT)
        .append_pair("state", "bye-state");
    let r = b.down.get(u.as_str()).await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let at_up = r.location()?;
    assert!(at_up.as_str().starts_with(&p.up_issuer), "{at_up}");
    let q = params_of(&at_up, false);
    assert_eq!(q["client_id"], "signet-down");
    assert!(q["post_logout_redirect_uri"].ends_with("/federation/up/logged-out"));
    // The upstream ends its session (the hint's sid is the browser's session there) and
    // sends the browser back; Signet goes on to the client.
    let r = b.up.get(at_up.as_str()).await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let back = r.location()?.to_string();
    assert!(back.starts_with(&p.down.issuer), "{back}");
    let r = b.down.get(&back).await?;
    assert_eq!(r.status, 302, "{}", r.body);
    let end = r.location()?;
    assert!(end.as_str().starts_with(LOGGED_OUT), "{end}");
    assert_eq!(params_of(&end, false)["state"], "bye-state");
    // Signed out at both: a new authorization request shows the login pages again.
    let (_, login) = b.follow(&authorize_url(&p.down.issuer, "app", &[])).await?;
    assert!(login.body.contains("Upstream Corp"), "{}", login.body);
    let to_up = b.press("", &login).await?;
    let (up_url, _) = b.follow(to_up.location()?.as_str()).await?;
    assert!(
        up_url.contains("/login"),
        "signed out upstream too: {up_url}"
    );
    // The logged-out URL again (a used state): the signed-out page, no redirect.
    let again = b.down.get(&back).await?;
    assert_eq!(again.status, 200);
    Ok(())
}

#[tokio::test]
async fn restrictions_local_login_acr_values_and_bad_callbacks() -> anyhow::Result<()> {
    let p = pair().await?;

    // A client restricted to another provider is not offered `up`, and acr_values for it
    // is refused back to the client.
    let mut b = TwoHosts::new();
    let (_, login) = b
        .follow(&authorize_url(&p.down.issuer, "restricted", &[]))
        .await?;
    assert_eq!(login.status, 200);
    assert!(!login.body.contains("Upstream Corp"), "{}", login.body);
    assert!(login.body.contains("name=\"password\""));
    let r = b
        .down
        .get(&authorize_url(
            &p.down.issuer,
            "restricted",
            &[("acr_values", "idp:up")],
        ))
        .await?;
    assert_eq!(r.status, 302);
    let back = params_of(&r.location()?, false);
    assert_eq!(back["error"], "invalid_request", "{back:?}");
    assert_eq!(back["state"], "s");

    // enableLocalLogin: false hides the password form, and a password POST is refused.
    let mut b = TwoHosts::new();
    let (login_url, login) = b
        .follow(&authorize_url(&p.down.issuer, "fedonly", &[]))
        .await?;
    assert!(login.body.contains("Upstream Corp"));
    assert!(!login.body.contains("name=\"password\""), "{}", login.body);
    let action = login_url.split('?').next().unwrap_or_default().to_owned();
    let (i, c) = (login.hidden("interaction")?, login.hidden("csrf")?);
    let refused = b
        .down
        .post_form(
            &action,
            &[
                ("interaction", &i),
                ("csrf", &c),
                ("username", "anyone"),
                ("password", PASSWORD),
            ],
        )
        .await?;
    assert_eq!(refused.status, 403, "{}", refused.body);

    // acr_values=idp:up goes straight to the provider; the flow completes.
    let mut b = TwoHosts::new();
    let r = b
        .down
        .get(&authorize_url(
            &p.down.issuer,
            "fedonly",
            &[("acr_values", "idp:up")],
        ))
        .await?;
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.location()?;
    assert!(to.as_str().starts_with(&p.up_issuer), "{to}");
    let q = params_of(&to, false);
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q.contains_key("nonce") && q.contains_key("state"));
    let (up_login_url, up_login) = b.follow(to.as_str()).await?;
    let back = b.upstream_sign_in(&up_login_url, &up_login).await?;
    let callback = back.location()?.to_string();
    let done = b.down.get(&callback).await?;
    assert!(landing(&done)?.as_str().starts_with(REDIRECT));

    // The same callback again (a replayed state): a page, not a 5xx.
    let replay = b.down.get(&callback).await?;
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(replay.body.contains("already used"), "{}", replay.body);
    // A made-up state.
    let forged = b
        .down
        .get(&format!(
            "{}/federation/up/callback?code=x&state=made-up",
            p.down.issuer
        ))
        .await?;
    assert_eq!(forged.status, 400);

    // A callback in another browser (login CSRF) is refused.
    let mut b = TwoHosts::new();
    let r = b
        .down
        .get(&authorize_url(
            &p.down.issuer,
            "app",
            &[("acr_values", "idp:up")],
        ))
        .await?;
    let (up_login_url, up_login) = b.follow(r.location()?.as_str()).await?;
    let back = b.upstream_sign_in(&up_login_url, &up_login).await?;
    let mut other = Browser::new();
    let stolen = other.get(back.location()?.as_str()).await?;
    assert_eq!(stolen.status, 400, "{}", stolen.body);

    // The provider answers an error: access_denied goes back to the client.
    let mut b = TwoHosts::new();
    let r = b
        .down
        .get(&authorize_url(
            &p.down.issuer,
            "app",
            &[("acr_values", "idp:up")],
        ))
        .await?;
    let state = params_of(&r.location()?, false)["state"].clone();
    let denied = b
        .down
        .get(&format!(
            "{}/federation/up/callback?error=access_denied&state={state}",
            p.down.issuer
        ))
        .await?;
    assert_eq!(denied.status, 302, "{}", denied.body);
    let back = params_of(&denied.location()?, false);
    assert_eq!(back["error"], "access_denied");
    assert_eq!(back["state"], "s");

    // A wrong `iss` (mix-up, RFC 9207) is refused.
    let mut b = TwoHosts::new();
    let r = b
        .down
        .get(&authorize_url(
            &p.down.issuer,
            "app",
            &[("acr_values", "idp:up")],
        ))
        .await?;
    let state = params_of(&r.location()?, false)["state"].clone();
    let mixed = b
        .down
        .get(&format!(
            "{}/federation/up/callback?code=x&state={state}&iss=https%3A%2F%2Fevil.example",
            p.down.issuer
        ))
        .await?;
    assert_eq!(mixed.status, 400, "{}", mixed.body);

    // The provider deleted: not offered, and its callbacks refused.
    let (status, _) = p
        .down
        .admin_call(Method::DELETE, "/IdentityProvider/up", None)
        .await?;
    assert_eq!(status, 204);
    let mut b = TwoHosts::new();
    let (_, login) = b
        .follow(&authorize_url(&p.down.issuer, "fedonly", &[]))
        .await?;
    assert!(!login.body.contains("Upstream Corp"), "{}", login.body);
    assert!(
        !p.down.logs().contains(UP_SECRET),
        "the secret never in the logs"
    );
    // The metrics counted the starts, the failures and the one user made.
    let metrics = p
        .down
        .http()
        .get(format!("{}/metrics", p.down.issuer))
        .send()
        .await?
        .text()
        .await?;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    // Four redirects to the provider; five refusals (replay, made-up state, another
    // browser, access_denied, wrong iss).
    assert_eq!(value("signet_federation_starts_total"), 4.0, "{metrics}");
    assert_eq!(value("signet_federation_failures_total"), 5.0, "{metrics}");
    assert_eq!(
        value("signet_federation_users_created_total"),
        1.0,
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn a_login_hint_in_a_providers_domain_goes_straight_to_it() -> anyhow::Result<()> {
    let p = pair().await?;
    let provider = json!({
        "scheme": "up", "displayName": "Upstream Corp", "type": "oidc",
        "authority": p.up_issuer, "clientId": "signet-down",
        "domains": ["Up.Example"]
    });
    let (status, body) = p
        .down
        .admin_call(reqwest::Method::PUT, "/IdentityProvider", Some(&provider))
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["domains"], json!(["up.example"]), "{body}");
    assert_eq!(body["hasClientSecret"], true, "the stored secret stays");
    // A domain belongs to one provider.
    let (status, body) = p
        .down
        .admin_call(
            reqwest::Method::POST,
            "/IdentityProvider",
            Some(
                &json!({"scheme": "other", "type": "oidc", "authority": p.up_issuer,
                "clientId": "x", "domains": ["elsewhere.example", "UP.example"]}),
            ),
        )
        .await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("domains[1]"), "{body}");

    // alice@up.example goes straight to the provider, and the sign-in completes.
    let mut b = TwoHosts::new();
    let r = b
        .down
        .get(&authorize_url(
            &p.down.issuer,
            "app",
            &[("login_hint", "alice@UP.example")],
        ))
        .await?;
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.location()?;
    assert!(to.as_str().starts_with(&p.up_issuer), "{to}");
    let (up_login_url, up_login) = b.follow(to.as_str()).await?;
    let back = b.upstream_sign_in(&up_login_url, &up_login).await?;
    let done = b.down.get(back.location()?.as_str()).await?;
    let tokens = redeem(&p.down, "app", &done).await?;
    assert!(tokens["id_token"].is_string(), "{tokens}");

    // Another domain, a bare name, or a client restricted to other providers: the login page.
    for (client, hint) in [
        ("app", "bob@other.example"),
        ("app", "up.example"),
        ("app", "alice@sub.up.example"),
        ("restricted", "alice@up.example"),
    ] {
        let mut b = TwoHosts::new();
        let r = b
            .down
            .get(&authorize_url(
                &p.down.issuer,
                client,
                &[("login_hint", hint)],
            ))
            .await?;
        assert_eq!(r.status, 302, "{client} {hint}: {}", r.body);
        assert!(
            r.location()?.path().ends_with("/login"),
            "{client} {hint}: {}",
            r.location()?
        );
    }
    Ok(())
}

/// Signs a local user in on `/account/links` of the downstream, presses Link for `up`,
/// signs in upstream as alice: the callback's answer.
async fn link_as(p: &Pair, b: &mut TwoHosts, user: &str) -> anyhow::Result<Page> {
    let url = format!("{}/account/links", p.down.issuer);
    let back = b.down.sign_in(&url, user, PASSWORD).await?;
    assert_eq!(back.status, 302, "{}", back.body);
    let page = b.down.get(&url).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Upstream Corp"), "{}", page.body);
    assert!(page.body.contains("Not linked"), "{}", page.body);
    let csrf = page.hidden("csrf")?;
    let forged = b
        .down
        .post_form(&format!("{url}/up"), &[("csrf", "forged")])
        .await?;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let to_up = b
        .down
        .post_form(&format!("{url}/up"), &[("csrf", &csrf)])
        .await?;
    assert_eq!(to_up.status, 303, "{}", to_up.body);
    let to = to_up.location()?;
    assert!(to.as_str().starts_with(&p.up_issuer), "{to}");
    let (up_login_url, up_login) = b.follow(to.as_str()).await?;
    let back = b.upstream_sign_in(&up_login_url, &up_login).await?;
    assert_eq!(back.status, 302, "{}", back.body);
    b.down.get(back.location()?.as_str()).await
}

async fn federated_sub(p: &Pair) -> anyhow::Result<String> {
    let mut b = TwoHosts::new();
    let done = federated_sign_in(p, &mut b, "app").await?;
    let tokens = redeem(&p.down, "app", &done).await?;
    let id = verify_jwt(
        tokens["id_token"].as_str().context("id_token")?,
        &p.down.jwks().await?,
        &p.down.issuer,
        "app",
    )?;
    assert_eq!(id["idp"], "up", "{id}");
    Ok(id["sub"].as_str().context("sub")?.to_owned())
}

#[tokio::test]
async fn a_local_user_links_an_upstream_identity_after_signing_in() -> anyhow::Result<()> {
    let p = pair().await?;
    let mut subs = Vec::new();
    for name in ["bob", "carol"] {
        let u = p
            .down
            .create("/User", json!({"username": name, "password": PASSWORD}))
            .await?;
        subs.push(u["sub"].as_str().context("sub")?.to_owned());
    }
    let bob = subs[0].clone();

    // Bob, signed in, links alice's upstream identity; the callback goes back to the page.
    let mut b = TwoHosts::new();
    let done = link_as(&p, &mut b, "bob").await?;
    assert!(
        landing(&done)?.path().ends_with("/account/links"),
        "{}",
        done.body
    );
    let url = format!("{}/account/links", p.down.issuer);
    let page = b.down.get(&url).await?;
    assert!(page.body.contains("id=\"link-up\">Linked"), "{}", page.body);
    let (_, user) = p
        .down
        .admin_call(reqwest::Method::GET, &format!("/User/{bob}"), None)
        .await?;
    assert_eq!(user["externalLogins"][0]["scheme"], "up", "{user}");

    // Signing in through the provider as alice is now signing in as bob.
    assert_eq!(federated_sub(&p).await?, bob);

    // Carol cannot take the identity: a page, and nothing changes.
    let mut c = TwoHosts::new();
    let refused = link_as(&p, &mut c, "carol").await?;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("already linked"), "{}", refused.body);
    assert_eq!(federated_sub(&p).await?, bob);

    // Bob unlinks (CSRF-checked); the next sign-in through the provider makes its own user,
    // which then holds the identity: bob cannot link it again.
    let csrf = page.hidden("csrf")?;
    let forged = b
        .down
        .post_form(&format!("{url}/up/remove"), &[("csrf", "x")])
        .await?;
    assert_eq!(forged.status, 403);
    let unlinked = b
        .down
        .post_form(&format!("{url}/up/remove"), &[("csrf", &csrf)])
        .await?;
    assert_eq!(unlinked.status, 303, "{}", unlinked.body);
    let own = federated_sub(&p).await?;
    assert!(own != bob && own != subs[1], "a just-in-time user: {own}");
    let mut b = TwoHosts::new();
    let refused = link_as(&p, &mut b, "bob").await?;
    assert_eq!(refused.status, 400, "{}", refused.body);
    Ok(())
}

/// Signs in through provider `scheme` by `acr_values=idp:<scheme>`: the ID token's claims.
async fn sign_in_via(p: &Pair, scheme: &str) -> anyhow::Result<Value> {
    let mut b = TwoHosts::new();
    let r = b
        .down
        .get(&authorize_url(
            &p.down.issuer,
            "app",
            &[("acr_values", &format!("idp:{scheme}"))],
        ))
        .await?;
    assert_eq!(r.status, 303, "{}", r.body);
    let (up_login_url, up_login) = b.follow(r.location()?.as_str()).await?;
    let back = b.upstream_sign_in(&up_login_url, &up_login).await?;
    assert_eq!(back.status, 302, "{}", back.body);
    let done = b.down.get(back.location()?.as_str()).await?;
    let tokens = redeem(&p.down, "app", &done).await?;
    verify_jwt(
        tokens["id_token"].as_str().context("id_token")?,
        &p.down.jwks().await?,
        &p.down.issuer,
        "app",
    )
}

#[tokio::test]
async fn signet_authenticates_to_providers_with_basic_or_its_own_signed_assertion(
) -> anyhow::Result<()> {
    let p = pair().await?;
    // client_secret_basic with the stored secret.
    let (status, body) = p
        .down
        .admin_call(
            reqwest::Method::PUT,
            "/IdentityProvider",
            Some(
                &json!({"scheme": "up", "displayName": "Upstream Corp", "type": "oidc",
                "authority": p.up_issuer, "clientId": "signet-down",
                "clientAuthMethod": "client_secret_basic"}),
            ),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["clientAuthMethod"], "client_secret_basic");
    assert_eq!(sign_in_via(&p, "up").await?["idp"], "up");

    // private_key_jwt: the upstream knows Signet's JWKS, and no secret is shared.
    p.up.create(
        "/Client",
        json!({
            "clientId": "signet-keys", "allowedGrantTypes": ["authorization_code"],
            "jwksUri": format!("{}/oauth2/jwks", p.down.issuer), "requireConsent": false,
            "redirectUris": [format!("{}/federation/keys/callback", p.down.issuer)],
            "allowedScopes": ["openid", "profile", "email"]
        }),
    )
    .await?;
    // Its ID tokens carry no profile claims (they come with an access token): the userinfo
    // endpoint has them.
    let provider = json!({"scheme": "keys", "type": "oidc", "authority": p.up_issuer,
        "clientId": "signet-keys", "clientAuthMethod": "private_key_jwt",
        "getClaimsFromUserinfoEndpoint": true});
    let mut with_secret = provider.clone();
    with_secret["clientSecret"] = json!("not with keys");
    let (status, body) = p
        .down
        .admin_call(
            reqwest::Method::POST,
            "/IdentityProvider",
            Some(&with_secret),
        )
        .await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("clientSecret"), "{body}");
    p.down.create("/IdentityProvider", provider).await?;
    let id = sign_in_via(&p, "keys").await?;
    assert_eq!(id["idp"], "keys", "{id}");
    assert_eq!(id["amr"], json!(["pwd"]), "{id}");
    let sub = id["sub"].as_str().context("sub")?;
    let (_, user) = p
        .down
        .admin_call(reqwest::Method::GET, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!(user["claims"]["name"], "Alice Upstream", "{user}");
    assert_eq!(user["claims"]["email"], "alice@up.example", "{user}");

    // The same upstream client without Signet's keys (another JWKS) refuses the assertion:
    // the sign-in ends on a page, not a 5xx.
    let (status, body) =
        p.up.admin_call(
            reqwest::Method::PUT,
            "/Client",
            Some(&json!({
                "clientId": "signet-keys", "allowedGrantTypes": ["authorization_code"],
                "jwksUri": format!("{}/oauth2/jwks", p.up_issuer), "requireConsent": false,
                "redirectUris": [format!("{}/federation/keys/callback", p.down.issuer)],
                "allowedScopes": ["openid", "profile", "email"]
            })),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let mut b = TwoHosts::new();
    let r = b
        .down
        .get(&authorize_url(
            &p.down.issuer,
            "app",
            &[("acr_values", "idp:keys")],
        ))
        .await?;
    let (up_login_url, up_login) = b.follow(r.location()?.as_str()).await?;
    let back = b.upstream_sign_in(&up_login_url, &up_login).await?;
    let failed = b.down.get(back.location()?.as_str()).await?;
    assert_eq!(failed.status, 400, "{}", failed.body);
    assert!(
        failed.body.contains("could not be reached") || failed.body.contains("cannot be trusted"),
        "{}",
        failed.body
    );
    Ok(())
}

#[tokio::test]
async fn an_unreachable_provider_is_a_page_not_a_5xx() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            extra_args: vec!["--allow-private-outbound".into()],
            ..Default::default()
        },
    )
    .await?;
    let closed = free_port();
    s.create(
        "/IdentityProvider",
        json!({"scheme": "up", "type": "oidc", "authority": format!("http://127.0.0.1:{closed}"),
               "clientId": "x"}),
    )
    .await?;
    s.create(
        "/Client",
        json!({"clientId": "app", "allowedGrantTypes": ["authorization_code"],
               "requireClientSecret": false, "redirectUris": [REDIRECT],
               "allowedScopes": ["openid", "profile", "email"]}),
    )
    .await?;
    let mut b = Browser::new();
    let r = b
        .get(&authorize_url(
            &s.issuer,
            "app",
            &[("acr_values", "idp:up")],
        ))
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("could not be reached"), "{}", r.body);
    Ok(())
}

#[tokio::test]
async fn the_admin_api_validates_identity_providers_and_never_returns_the_secret(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let good = json!({"scheme": "corp", "type": "oidc", "authority": "https://login.example.com",
                      "clientId": "signet", "clientSecret": "s3cret-value-123"});
    for (patch, field) in [
        (json!({"scheme": "a b"}), "scheme"),
        // An ldap provider names its directory, not an authority and a client id.
        (json!({"type": "ldap"}), "url"),
        (json!({"type": "saml"}), "type"),
        (
            json!({"authority": "http://login.example.com"}),
            "authority",
        ),
        (json!({"responseType": "id_token"}), "responseType"),
        (json!({"scopes": ["profile"]}), "scopes"),
        (json!({"claimMappings": {"x": "iss"}}), "claimMappings.x"),
        (json!({"surprise": 1}), "surprise"),
    ] {
        let mut body = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, resp) = s
            .admin_call(Method::POST, "/IdentityProvider", Some(&body))
            .await?;
        assert_eq!(status, 400, "{patch}: {resp}");
        assert!(
            resp["field"].as_str().unwrap_or_default().contains(field)
                || resp.to_string().contains(field),
            "{patch}: {resp}"
        );
    }
    let created = s.create("/IdentityProvider", good.clone()).await?;
    assert_eq!(created["hasClientSecret"], true);
    assert_eq!(created["scopes"], json!(["openid", "profile", "email"]));
    assert!(!created.to_string().contains("s3cret"), "{created}");
    let (status, _) = s
        .admin_call(Method::POST, "/IdentityProvider", Some(&good))
        .await?;
    assert_eq!(status, 409);
    // PUT without clientSecret keeps it; with null removes it.
    let mut body = good.clone();
    body.as_object_mut().unwrap().remove("clientSecret");
    body["displayName"] = json!("Corp");
    let (status, read) = s
        .admin_call(Method::PUT, "/IdentityProvider", Some(&body))
        .await?;
    assert_eq!(
        (status, &read["hasClientSecret"]),
        (200, &json!(true)),
        "{read}"
    );
    body["clientSecret"] = Value::Null;
    let (_, read) = s
        .admin_call(Method::PUT, "/IdentityProvider", Some(&body))
        .await?;
    assert_eq!(read["hasClientSecret"], false, "{read}");
    // The audit trail and the event log never hold the secret.
    let (_, events) = s.admin_call(Method::GET, "/Events", None).await?;
    assert!(!events.to_string().contains("s3cret"), "{events}");
    let raw = std::fs::read_dir(dir.path().join("events"))?
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read(e.path()).unwrap_or_default())
        .any(|bytes| bytes.windows(6).any(|w| w == b"s3cret"));
    assert!(!raw, "the event log holds the secret sealed only");
    let (status, _) = s
        .admin_call(Method::DELETE, "/IdentityProvider/corp", None)
        .await?;
    assert_eq!(status, 204);
    let (status, _) = s
        .admin_call(Method::GET, "/IdentityProvider/corp", None)
        .await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test]
async fn signet_admin_applies_identity_providers_with_a_write_only_secret() -> anyhow::Result<()> {
    use crate::admin_cli::Admin;
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let admin = Admin::for_node(&s);
    let file = dir.path().join("idp.yaml");
    let write = |display: &str, secret: bool| -> std::io::Result<()> {
        let secret = if secret {
            "    clientSecret: cli-s3cret-value\n"
        } else {
            ""
        };
        std::fs::write(
            &file,
            format!(
                "kind: IdentityProvider\nspec:\n    scheme: corp\n    displayName: {display}\n    type: oidc\n    authority: https://login.example.com\n    clientId: signet\n{secret}"
            ),
        )
    };
    write("Corp", true)?;
    let path = file.to_str().unwrap_or_default().to_owned();
    let out = admin.run(&["apply", "-f", &path]).await;
    assert!(out.ok().contains("created"), "{out:?}");
    // Unchanged without the secret (the stored one stays), replaced on a visible change.
    write("Corp", false)?;
    let out = admin.run(&["apply", "-f", &path]).await;
    assert!(out.ok().contains("unchanged"), "{out:?}");
    write("Corp Inc", false)?;
    let out = admin.run(&["apply", "-f", &path]).await;
    assert!(out.ok().contains("replaced"), "{out:?}");
    let out = admin
        .run(&["identity-provider", "get", "corp", "-o", "json"])
        .await;
    let shown: Value = serde_json::from_str(out.ok())?;
    assert_eq!(shown["displayName"], "Corp Inc");
    assert_eq!(shown["hasClientSecret"], true, "{shown}");
    assert!(!out.stdout.contains("s3cret"));
    // An invalid spec is refused naming the field, before anything is written.
    std::fs::write(
        &file,
        "kind: IdentityProvider\nspec:\n    scheme: corp\n    type: ldap\n    authority: https://a\n    clientId: c\n",
    )?;
    let out = admin.run(&["apply", "-f", &path]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("url"), "{out:?}");
    assert!(out.stderr.contains("clientId"), "{out:?}");
    let out = admin.run(&["identity-provider", "delete", "corp"]).await;
    out.ok();
    // An ldap provider: its bindPassword is write-only like a clientSecret.
    let ldap = |password: bool| {
        format!(
            "kind: IdentityProvider\nspec:\n    scheme: dir\n    type: ldap\n    url: ldaps://ldap.example.org\n    bindDn: cn=signet,dc=example,dc=org\n    userSearchBase: ou=people,dc=example,dc=org\n    userSearchFilter: (uid={{username}})\n{}",
            if password { "    bindPassword: cli-b1nd-value\n" } else { "" }
        )
    };
    std::fs::write(&file, ldap(false))?;
    let out = admin.run(&["apply", "-f", &path]).await;
    assert_ne!(out.code, 0, "created without a bind password: {out:?}");
    assert!(out.stderr.contains("bindPassword"), "{out:?}");
    std::fs::write(&file, ldap(true))?;
    let out = admin.run(&["apply", "-f", &path]).await;
    assert!(out.ok().contains("created"), "{out:?}");
    std::fs::write(&file, ldap(false))?;
    let out = admin.run(&["apply", "-f", &path]).await;
    assert!(out.ok().contains("unchanged"), "{out:?}");
    let out = admin
        .run(&["identity-provider", "get", "dir", "-o", "json"])
        .await;
    let shown: Value = serde_json::from_str(out.ok())?;
    assert_eq!(shown["hasBindPassword"], true, "{shown}");
    assert!(!out.stdout.contains("b1nd"));
    Ok(())
}

/// On the cluster: the sign-in starts at node 1 and the provider's callback lands at node 2,
/// which finds the pending sign-in in Redis, opens the client secret node 1 sealed (both
/// derive the key from the cluster secret) and provisions the user through JetStream.
#[tokio::test]
async fn on_the_cluster_the_callback_may_land_at_another_node() -> anyhow::Result<()> {
    use signet_tests::cluster::Cluster;
    use std::time::Duration;
    let up_dir = tempfile::tempdir()?;
    let (up, up_issuer) = start_upstream(up_dir.path()).await?;
    let c = Cluster::start_with(2, vec!["--allow-private-outbound".into()]).await?;
    up.create(
        "/User",
        json!({"username": "alice", "password": PASSWORD, "claims": {"name": "Alice Upstream"}}),
    )
    .await?;
    up.create(
        "/Client",
        json!({
            "clientId": "signet-down", "allowedGrantTypes": ["authorization_code"],
            "clientSecrets": [{"value": UP_SECRET}], "requireConsent": false,
            "alwaysIncludeUserClaimsInIdToken": true,
            "redirectUris": [format!("{}/federation/up/callback", c.issuer)],
            "allowedScopes": ["openid", "profile", "email"]
        }),
    )
    .await?;
    for (path, body) in [
        (
            "/IdentityProvider",
            json!({"scheme": "up", "displayName": "Upstream Corp", "type": "oidc",
                   "authority": up_issuer, "clientId": "signet-down", "clientSecret": UP_SECRET}),
        ),
        (
            "/Client",
            json!({"clientId": "app", "allowedGrantTypes": ["authorization_code"],
                   "requireClientSecret": false, "requireConsent": false,
                   "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile", "email"]}),
        ),
    ] {
        let (status, resp) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        assert_eq!(status, 201, "{resp}");
    }
    let node2 = c.issuers[1].public.clone();
    // Node 2 must know the provider before the browser arrives there.
    signet_tests::eventually(Duration::from_secs(10), || async {
        let (status, _) = c
            .admin_call(1, Method::GET, "/IdentityProvider/up", None)
            .await
            .ok()?;
        (status == 200).then_some(())
    })
    .await?;

    let mut b = TwoHosts::new();
    let (login_url, login) = b.follow(&authorize_url(&c.issuer, "app", &[])).await?;
    assert_eq!(login.status, 200, "{}", login.body);
    let to_up = b.press(&login_url, &login).await?;
    let (up_login_url, up_login) = b.follow(to_up.location()?.as_str()).await?;
    let back = b.upstream_sign_in(&up_login_url, &up_login).await?;
    let callback = back.location()?.to_string();
    let at_node2 = callback.replacen(&c.issuer, &node2, 1);
    assert_ne!(at_node2, callback);
    let done = b.down.get(&at_node2).await?;
    let code = params_of(&landing(&done)?, false)
        .remove("code")
        .context("no code")?;
    let token: Value = c
        .http
        .post(format!("{node2}/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "app"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", PKCE_VERIFIER),
        ])
        .send()
        .await?
        .json()
        .await?;
    let id = verify_jwt(
        token["id_token"].as_str().context("id_token")?,
        &c.jwks(1).await?,
        &c.issuer,
        "app",
    )?;
    assert_eq!(id["idp"], "up", "{id}");
    let (status, user) = c
        .admin_call(
            0,
            Method::GET,
            &format!("/User/{}", id["sub"].as_str().unwrap_or_default()),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["claims"]["name"], "Alice Upstream");
    Ok(())
}

/// The whole flow in headless Chromium: the provider's button on Signet's login page (the
/// page's CSP allows the redirect to the provider), the upstream Signet's login page, the
/// callback (a cross-site navigation: the interaction cookie is SameSite=Lax), and the
/// relying party with a code.
#[tokio::test]
async fn a_person_signs_in_through_the_upstream_with_chromium() -> anyhow::Result<()> {
    use fantoccini::Locator;
    use signet_tests::chrome::{relying_party, Chrome};
    use std::time::Duration;
    let (d1, d2) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (up, up_issuer) = start_upstream(d1.path()).await?;
    let down = Serve::start(
        d2.path(),
        ServeOptions {
            extra_args: vec!["--allow-private-outbound".into()],
            ..Default::default()
        },
    )
    .await?;
    let redirect = format!("{}/cb", relying_party().await?);
    up.create(
        "/User",
        json!({"username": "alice", "password": PASSWORD, "claims": {"name": "Alice Upstream"}}),
    )
    .await?;
    up.create(
        "/Client",
        json!({
            "clientId": "signet-down", "allowedGrantTypes": ["authorization_code"],
            "clientSecrets": [{"value": UP_SECRET}], "requireConsent": false,
            "redirectUris": [format!("{}/federation/up/callback", down.issuer)],
            "allowedScopes": ["openid", "profile"]
        }),
    )
    .await?;
    down.create(
        "/IdentityProvider",
        json!({"scheme": "up", "displayName": "Upstream Corp", "type": "oidc",
               "authority": up_issuer, "clientId": "signet-down", "clientSecret": UP_SECRET,
               "scopes": ["openid", "profile"]}),
    )
    .await?;
    down.create(
        "/Client",
        json!({"clientId": "spa", "allowedGrantTypes": ["authorization_code"],
               "requireClientSecret": false, "requireConsent": false,
               "redirectUris": [redirect], "allowedScopes": ["openid", "profile"]}),
    )
    .await?;
    let mut authorize = url::Url::parse(&format!("{}/oauth2/authorize", down.issuer))?;
    authorize
        .query_pairs_mut()
        .append_pair("client_id", "spa")
        .append_pair("redirect_uri", &redirect)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile")
        .append_pair("state", "s1")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    let chrome = Chrome::start().await?;
    let c = &chrome.client;
    c.goto(authorize.as_str()).await?;
    c.find(Locator::Css("button.provider"))
        .await?
        .click()
        .await?;
    // The upstream's login page.
    eventually_at(c, &format!("{up_issuer}/login")).await?;
    signet_tests::eventually(Duration::from_secs(15), || async {
        c.find(Locator::Css("#password")).await.ok()
    })
    .await?;
    chrome.sign_in("alice", PASSWORD).await?;
    let landed = match signet_tests::eventually(Duration::from_secs(15), || async {
        let u = c.current_url().await.ok()?;
        u.as_str().starts_with(&redirect).then_some(u)
    })
    .await
    {
        Ok(u) => u,
        Err(e) => anyhow::bail!(
            "never reached the relying party ({e}); at {:?}: {}",
            c.current_url().await,
            c.source()
                .await
                .unwrap_or_default()
                .split("<main")
                .nth(1)
                .unwrap_or_default()
                .to_owned()
        ),
    };
    let source = c.source().await.unwrap_or_default();
    chrome.client.close().await?;
    let params: std::collections::BTreeMap<String, String> =
        landed.query_pairs().into_owned().collect();
    assert_eq!(
        params.get("state").map(String::as_str),
        Some("s1"),
        "{source}"
    );
    let code = params.get("code").context("a code")?;
    let token: Value = reqwest::Client::new()
        .post(format!("{}/oauth2/token", down.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", code),
            ("redirect_uri", &redirect),
            ("code_verifier", PKCE_VERIFIER),
        ])
        .send()
        .await?
        .json()
        .await?;
    let id = verify_jwt(
        token["id_token"].as_str().context("id_token")?,
        &down.jwks().await?,
        &down.issuer,
        "spa",
    )?;
    assert_eq!(id["idp"], "up");
    Ok(())
}

async fn eventually_at(c: &fantoccini::Client, prefix: &str) -> anyhow::Result<()> {
    signet_tests::eventually(std::time::Duration::from_secs(15), || async {
        let u = c.current_url().await.ok()?;
        u.as_str().starts_with(prefix).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("never reached {prefix}: {e}"))
}

/// A GitHub-shaped OAuth 2.0 provider (no OpenID Connect): `/authorize` answers with a code
/// at once, `/token` redeems it (checking the PKCE verifier and the client secret, JSON only
/// when asked with `Accept: application/json`, as GitHub), `/user` answers the user with a
/// numeric `id` for the bearer token.
async fn github_like() -> anyhow::Result<String> {
    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Redirect};
    use axum::routing::{get, post};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    type Shared = Arc<Mutex<Option<String>>>;
    async fn authorize(
        State(challenge): State<Shared>,
        Query(q): Query<HashMap<String, String>>,
    ) -> impl IntoResponse {
        *challenge.lock().unwrap() = q.get("code_challenge").cloned();
        let mut to = url::Url::parse(&q["redirect_uri"]).unwrap();
        to.query_pairs_mut()
            .append_pair("code", "gh-code")
            .append_pair("state", &q["state"]);
        Redirect::to(to.as_str())
    }
    async fn token(
        State(challenge): State<Shared>,
        headers: HeaderMap,
        body: String,
    ) -> axum::response::Response {
        let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        let ok = form.get("code").map(String::as_str) == Some("gh-code")
            && form.get("client_secret").map(String::as_str) == Some(UP_SECRET)
            && challenge.lock().unwrap().as_deref()
                == Some(signet_jose::b64url(digest.as_ref()).as_str());
        let json = headers
            .get("accept")
            .is_some_and(|a| a.as_bytes() == b"application/json");
        match (ok, json) {
            (true, true) => {
                axum::Json(json!({"access_token": "gho_1", "token_type": "bearer", "scope": ""}))
                    .into_response()
            }
            (true, false) => "access_token=gho_1&token_type=bearer".into_response(),
            (false, _) => axum::Json(json!({"error": "bad_verification_code"})).into_response(),
        }
    }
    async fn user(headers: HeaderMap) -> axum::response::Response {
        if headers.get("authorization").map(|v| v.as_bytes()) != Some(b"Bearer gho_1") {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        axum::Json(
            json!({"id": 4242, "login": "octocat", "name": "The Octocat",
                          "email": "octo@example.com", "amr": ["forged"]}),
        )
        .into_response()
    }
    let app = axum::Router::new()
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/user", get(user))
        .with_state(Shared::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(base)
}

#[tokio::test]
async fn a_user_signs_in_through_an_oauth2_only_provider() -> anyhow::Result<()> {
    let gh = github_like().await?;
    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            extra_args: vec!["--allow-private-outbound".into()],
            ..Default::default()
        },
    )
    .await?;
    // The oauth2 shape's own rules.
    let (status, resp) = s
        .admin_call(
            Method::POST,
            "/IdentityProvider",
            Some(&json!({"scheme": "gh", "type": "oauth2", "clientId": "c",
                          "authorizationEndpoint": format!("{gh}/authorize")})),
        )
        .await?;
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["field"], "tokenEndpoint", "{resp}");
    let created = s
        .create(
            "/IdentityProvider",
            json!({"scheme": "gh", "displayName": "GitHub", "type": "oauth2",
                   "clientId": "gh-client", "clientSecret": UP_SECRET,
                   "authorizationEndpoint": format!("{gh}/authorize"),
                   "tokenEndpoint": format!("{gh}/token"),
                   "userinfoEndpoint": format!("{gh}/user"),
                   "subjectClaim": "id", "scopes": ["read:user"],
                   "claimMappings": {"name": "name", "email": "email", "login": "nickname"}}),
        )
        .await?;
    assert_eq!(created["subjectClaim"], "id", "{created}");
    s.create(
        "/Client",
        json!({"clientId": "app", "allowedGrantTypes": ["authorization_code"],
               "requireClientSecret": false, "requireConsent": false,
               "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile", "email"]}),
    )
    .await?;
    let mut b = Browser::new();
    let r = b
        .get(&authorize_url(
            &s.issuer,
            "app",
            &[("acr_values", "idp:gh")],
        ))
        .await?;
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.location()?;
    let q = params_of(&to, false);
    assert!(!q.contains_key("nonce"), "no OpenID Connect: {to}");
    assert_eq!(q["scope"], "read:user");
    let at_gh = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .get(to.as_str())
        .send()
        .await?;
    let callback = at_gh
        .headers()
        .get("location")
        .context("the provider redirects")?
        .to_str()?
        .to_owned();
    let done = b.get(&callback).await?;
    let tokens = redeem(&s, "app", &done).await?;
    let id = verify_jwt(
        tokens["id_token"].as_str().context("id_token")?,
        &s.jwks().await?,
        &s.issuer,
        "app",
    )?;
    assert_eq!(id["idp"], "gh");
    assert_eq!(
        id["amr"],
        json!(["fed"]),
        "the userinfo's amr is not trusted"
    );
    let (_, user) = s
        .admin_call(
            Method::GET,
            &format!("/User/{}", id["sub"].as_str().unwrap_or_default()),
            None,
        )
        .await?;
    assert_eq!(
        user["externalLogins"][0],
        json!({"scheme": "gh", "subject": "4242"})
    );
    assert_eq!(user["claims"]["nickname"], "octocat", "{user}");
    assert_eq!(user["username"], "gh:4242");
    Ok(())
}
