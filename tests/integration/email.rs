//! E-mail against the real binary and a real SMTP server (`aiosmtpd`, see
//! `tests/support/smtp.rs`): the password reset by e-mail link end to end (the message is
//! read from the server's mailbox and its link followed), single use, expiry, a link killed
//! by a later password change, a tampered link, the neutral page for unknown names (no
//! enumeration, no mail), the relay down (the same page, a warning without the link), the
//! feature off without `--smtp-url`, a reset begun on one cluster node and finished on the
//! other, and header injection refused.

use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::browser::{Browser, Page, PKCE_CHALLENGE};
use signet_tests::cluster::Cluster;
use signet_tests::smtp::SmtpServer;
use signet_tests::{eventually, Serve, ServeOptions};

const REDIRECT: &str = "http://127.0.0.1:1/cb";
const MIA_PASSWORD: &str = "mia's password 12";
const NEW_PASSWORD: &str = "a fresh password 34";
const RESET_SUBJECT: &str = "Reset your password";
const CHANGED_SUBJECT: &str = "Your password was changed";

fn web_client() -> Value {
    json!({"clientId": "web", "allowedGrantTypes": ["authorization_code"],
        "requireClientSecret": false, "requireConsent": false, "clientName": "Web Shop",
        "redirectUris": [REDIRECT], "allowedScopes": ["openid", "email"]})
}

fn authorize_url(issuer: &str) -> String {
    let mut u = url::Url::parse(&format!("{issuer}/oauth2/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("client_id", "web")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email")
        .append_pair("state", "s")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    u.to_string()
}

fn smtp_args(smtp: &str) -> Vec<String> {
    vec![
        "--smtp-url".into(),
        smtp.into(),
        "--smtp-from".into(),
        "Signet <no-reply@signet.example>".into(),
    ]
}

/// `href="..."` of the element with `id`.
fn href_of(page: &str, id: &str) -> anyhow::Result<String> {
    let at = page
        .find(&format!("id=\"{id}\""))
        .with_context(|| format!("no #{id}"))?;
    let start = page[..at].rfind("href=\"").context("no href")? + 6;
    let end = page[start..].find('"').context("unterminated")? + start;
    Ok(page[start..end]
        .replace("&#x2f;", "/")
        .replace("&amp;", "&"))
}

/// Opens the login page for the web client and follows "Forgot your password?": the
/// forgot form.
async fn forgot_form(b: &mut Browser, issuer: &str) -> anyhow::Result<(String, Page)> {
    let auth = b.get(&authorize_url(issuer)).await?;
    assert_eq!(auth.status, 302, "{}", auth.body);
    let login = b.get(auth.location()?.as_str()).await?;
    assert_eq!(login.status, 200, "{}", login.body);
    let link = href_of(&login.body, "forgot-password")?;
    let form = b.get(&link).await?;
    assert_eq!(form.status, 200, "{}", form.body);
    Ok((link.split('?').next().unwrap().to_owned(), form))
}

/// Posts `username` on the forgot form; the (neutral) answer.
async fn ask_reset(b: &mut Browser, issuer: &str, username: &str) -> anyhow::Result<Page> {
    let (action, form) = forgot_form(b, issuer).await?;
    let (interaction, csrf) = (form.hidden("interaction")?, form.hidden("csrf")?);
    b.post_form(
        &action,
        &[
            ("interaction", &interaction),
            ("csrf", &csrf),
            ("username", username),
        ],
    )
    .await
}

/// The page without the interaction id in its "back to sign in" link (each page is for
/// its own sign-in).
fn without_interaction(body: &str) -> String {
    match body.split_once("interaction=") {
        Some((a, b)) => format!("{a}{}", &b[b.find('"').unwrap_or(0)..]),
        None => body.to_owned(),
    }
}

fn neutral(page: &Page) {
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("If an account with that name exists"),
        "{}",
        page.body
    );
}

/// Posts the new password on the reset form of `link`.
async fn set_password(
    b: &mut Browser,
    link: &str,
    new: &str,
    confirm: &str,
) -> anyhow::Result<Page> {
    let token = url::Url::parse(link)?
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .context("no token")?;
    let action = link.split('?').next().unwrap().to_owned();
    b.post_form(
        &action,
        &[("token", &token), ("new", new), ("confirm", confirm)],
    )
    .await
}

fn dead(page: &Page) {
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("This link has expired"), "{}", page.body);
}

/// Signs in at the web client; whether it worked (a redirect to the client with a code).
async fn signs_in(issuer: &str, user: &str, password: &str) -> anyhow::Result<bool> {
    let mut b = Browser::new();
    let r = b.sign_in(&authorize_url(issuer), user, password).await?;
    Ok(r.status == 302 && r.location()?.as_str().starts_with(REDIRECT))
}

/// A relay and `signet serve` sending through it (with `extra` flags), with user mia
/// (`mia@example.com`); returns mia's `sub` too.
async fn serve_with_mia(
    extra: &[&str],
) -> anyhow::Result<(SmtpServer, tempfile::TempDir, Serve, String)> {
    let smtp = SmtpServer::start().await?;
    let dir = tempfile::tempdir()?;
    let mut args = smtp_args(&smtp.url());
    args.extend(extra.iter().map(|a| a.to_string()));
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            extra_args: args,
            ..ServeOptions::default()
        },
    )
    .await?;
    let mia = s
        .create(
            "/User",
            json!({"username": "mia", "password": MIA_PASSWORD,
                "claims": {"email": "mia@example.com"}}),
        )
        .await?;
    let sub = mia["sub"].as_str().context("sub")?.to_owned();
    Ok((smtp, dir, s, sub))
}

#[tokio::test]
async fn password_reset_by_email_end_to_end() -> anyhow::Result<()> {
    let (smtp, _dir, s, sub) = serve_with_mia(&[]).await?;
    s.create(
        "/User",
        json!({"username": "pat", "password": "pat's password 12",
            "claims": {"email": "pat@example.com"}}),
    )
    .await?;
    s.create("/Client", web_client()).await?;

    // Mia is signed in on the account page (a session the reset ends).
    let mut account = Browser::new();
    let back = account
        .sign_in(
            &format!("{}/account/security", s.issuer),
            "mia",
            MIA_PASSWORD,
        )
        .await?;
    assert_eq!(back.status, 302, "{}", back.body);
    let page = account
        .get(&format!("{}/account/security", s.issuer))
        .await?;
    assert_eq!(page.status, 200);

    // An unknown name, a name with a header injection, and mia's: the same page.
    let mut b = Browser::new();
    let unknown = ask_reset(&mut b, &s.issuer, "nobody").await?;
    neutral(&unknown);
    let injected = ask_reset(&mut b, &s.issuer, "mia\r\nBcc: x@evil.example").await?;
    neutral(&injected);
    let known = ask_reset(&mut b, &s.issuer, "mia").await?;
    neutral(&known);
    assert_eq!(
        without_interaction(&known.body),
        without_interaction(&unknown.body),
        "the page does not tell whether the account exists"
    );
    let mail = smtp.wait_for("mia@example.com", RESET_SUBJECT, 1).await?;
    assert!(
        mail.raw.contains("From: Signet <no-reply@signet.example>"),
        "{}",
        mail.raw
    );
    assert!(
        mail.body.contains("Web Shop"),
        "the client's branding: {}",
        mail.body
    );
    assert!(mail.raw.contains("text/html"), "an HTML part");
    assert_eq!(smtp.messages().len(), 1, "no mail for an unknown name");
    assert!(!mail.raw.to_ascii_lowercase().contains("bcc"));
    let link = mail.link(&format!("{}/login/reset?token=", s.issuer))?;
    let token = link.rsplit('=').next().unwrap();
    assert!(token.len() >= 43, "at least 256 bits: {token}");

    // The form; mistakes keep the link usable.
    let form = b.get(&link).await?;
    assert_eq!(form.status, 200, "{}", form.body);
    let r = set_password(&mut b, &link, NEW_PASSWORD, "something else").await?;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("do not match"), "{}", r.body);
    let r = set_password(&mut b, &link, "short", "short").await?;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("The new password"), "{}", r.body);
    // A tampered token is refused and does not spend the real one.
    let mut tampered = link.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    dead(&b.get(&tampered).await?);
    dead(&set_password(&mut b, &tampered, NEW_PASSWORD, NEW_PASSWORD).await?);
    // A form from another site is refused.
    let cross = b
        .post_form_with(
            &format!("{}/login/reset", s.issuer),
            &[
                ("token", token),
                ("new", NEW_PASSWORD),
                ("confirm", NEW_PASSWORD),
            ],
            &[("Sec-Fetch-Site", "cross-site")],
        )
        .await?;
    assert_eq!(cross.status, 403, "{}", cross.body);

    let done = set_password(&mut b, &link, NEW_PASSWORD, NEW_PASSWORD).await?;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("reset-done"), "{}", done.body);
    let notice = smtp.wait_for("mia@example.com", CHANGED_SUBJECT, 1).await?;
    assert!(
        !notice.body.contains("token="),
        "the notice carries no link"
    );

    // Used once: the link is dead.
    dead(&b.get(&link).await?);
    dead(&set_password(&mut b, &link, "yet another pass 56", "yet another pass 56").await?);
    // The new password signs in, the old one does not; the old session is over.
    assert!(signs_in(&s.issuer, "mia", NEW_PASSWORD).await?);
    assert!(!signs_in(&s.issuer, "mia", MIA_PASSWORD).await?);
    let after = account
        .get(&format!("{}/account/security", s.issuer))
        .await?;
    assert_ne!(after.status, 200, "the session from before the reset ended");
    // The audit trail records the reset, without the password.
    let (status, events) = s
        .admin_call(Method::GET, "/Events?aggregate=user", None)
        .await?;
    assert_eq!(status, 200, "{events}");
    let text = events.to_string();
    assert!(text.contains("password_reset"), "{text}");
    assert!(text.contains(&sub), "{text}");
    assert!(!text.contains(NEW_PASSWORD));

    // A later password change (here by an administrator) kills an unused link.
    neutral(&ask_reset(&mut b, &s.issuer, "mia").await?);
    let second = smtp.wait_for("mia@example.com", RESET_SUBJECT, 2).await?;
    let link2 = second.link(&format!("{}/login/reset?token=", s.issuer))?;
    assert_ne!(link2, link);
    assert_eq!(b.get(&link2).await?.status, 200);
    let (status, body) = s
        .admin_call(
            Method::PUT,
            &format!("/User/{sub}"),
            Some(
                &json!({"username": "mia", "password": "an admin's choice 78",
                "claims": {"email": "mia@example.com"}}),
            ),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    dead(&set_password(&mut b, &link2, "yet another pass 56", "yet another pass 56").await?);
    assert!(signs_in(&s.issuer, "mia", "an admin's choice 78").await?);
    Ok(())
}

#[tokio::test]
async fn expired_links_relay_down_and_email_off() -> anyhow::Result<()> {
    // A one-second link lifetime: the link dies on its own.
    let (smtp, _dir, s, _) = serve_with_mia(&["--email-link-ttl", "1"]).await?;
    s.create("/Client", web_client()).await?;
    let mut b = Browser::new();
    neutral(&ask_reset(&mut b, &s.issuer, "mia").await?);
    let mail = smtp.wait_for("mia@example.com", RESET_SUBJECT, 1).await?;
    let link = mail.link(&format!("{}/login/reset?token=", s.issuer))?;
    eventually(Duration::from_secs(10), || async {
        let page = Browser::new().get(&link).await.ok()?;
        (page.status == 400).then_some(())
    })
    .await?;
    dead(&set_password(&mut b, &link, NEW_PASSWORD, NEW_PASSWORD).await?);
    assert!(signs_in(&s.issuer, "mia", MIA_PASSWORD).await?);

    // A client that takes no passwords offers no reset, and refuses one asked anyway.
    let mut nolocal = web_client();
    nolocal["clientId"] = "nolocal".into();
    nolocal["enableLocalLogin"] = false.into();
    s.create("/Client", nolocal).await?;
    let auth = b
        .get(&authorize_url(&s.issuer).replace("client_id=web", "client_id=nolocal"))
        .await?;
    assert_eq!(auth.status, 302, "{}", auth.body);
    let login_url = auth.location()?;
    let login = b.get(login_url.as_str()).await?;
    assert!(!login.body.contains("forgot-password"), "{}", login.body);
    let id = login_url
        .query_pairs()
        .find(|(k, _)| k == "interaction")
        .map(|(_, v)| v.into_owned())
        .context("interaction")?;
    let form = b
        .get(&format!("{}/login/forgot?interaction={id}", s.issuer))
        .await?;
    let refused = b
        .post_form(
            &format!("{}/login/forgot", s.issuer),
            &[
                ("interaction", &form.hidden("interaction")?),
                ("csrf", &form.hidden("csrf")?),
                ("username", "mia"),
            ],
        )
        .await?;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("does not accept passwords"));
    assert_eq!(smtp.messages().len(), 1);
    s.stop().await?;

    // The relay is down: the same neutral page, a warning without the link.
    let closed = signet_tests::free_port();
    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            extra_args: smtp_args(&format!("smtp://127.0.0.1:{closed}")),
            capture_logs: true,
            ..ServeOptions::default()
        },
    )
    .await?;
    s.create(
        "/User",
        json!({"username": "mia", "password": MIA_PASSWORD,
            "claims": {"email": "mia@example.com"}}),
    )
    .await?;
    s.create("/Client", web_client()).await?;
    neutral(&ask_reset(&mut b, &s.issuer, "mia").await?);
    eventually(Duration::from_secs(20), || async {
        s.logs().contains("e-mail not sent").then_some(())
    })
    .await
    .with_context(|| s.logs())?;
    let logs = s.logs();
    assert!(!logs.contains("token="), "{logs}");
    assert!(!logs.contains("mia@example.com"), "{logs}");
    s.stop().await?;

    // Without --smtp-url: no link on the login page, the routes say the feature is off.
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    s.create("/Client", web_client()).await?;
    let auth = b.get(&authorize_url(&s.issuer)).await?;
    let login = b.get(auth.location()?.as_str()).await?;
    assert_eq!(login.status, 200);
    assert!(!login.body.contains("forgot-password"), "{}", login.body);
    for path in ["/login/forgot", "/login/reset?token=abc"] {
        let page = b.get(&format!("{}{path}", s.issuer)).await?;
        assert_eq!(page.status, 404, "{path}");
        assert!(page.body.contains("E-mail is not set up"), "{}", page.body);
    }
    Ok(())
}

/// Asked at node 0, the link is followed at node 1 (the link is in Redis, the user in the
/// shared log), and it works once across both.
#[tokio::test]
async fn reset_spans_cluster_nodes() -> anyhow::Result<()> {
    let smtp = SmtpServer::start().await?;
    let c = Cluster::start_with(2, smtp_args(&smtp.url())).await?;
    for (path, body) in [
        (
            "/User",
            json!({"username": "mia", "password": MIA_PASSWORD,
                "claims": {"email": "mia@example.com"}}),
        ),
        ("/Client", web_client()),
    ] {
        let (status, resp) = c.admin_call(0, Method::POST, path, Some(&body)).await?;
        assert_eq!(status, 201, "{path}: {resp}");
    }
    let node0 = c.issuers[0].public.clone();
    let node1 = c.issuers[1].public.clone();
    eventually(Duration::from_secs(10), || async {
        let (s, v) = c
            .admin_call(1, Method::GET, "/User?username=mia", None)
            .await
            .ok()?;
        (s == 200 && v.to_string().contains("mia")).then_some(())
    })
    .await?;
    let mut b = Browser::new();
    neutral(&ask_reset(&mut b, &node0, "mia").await?);
    let mail = smtp.wait_for("mia@example.com", RESET_SUBJECT, 1).await?;
    let link = mail
        .link(&format!("{}/login/reset?token=", c.issuer))?
        .replacen(&node0, &node1, 1);
    assert!(link.starts_with(&node1), "{link}");
    assert_eq!(b.get(&link).await?.status, 200);
    let done = set_password(&mut b, &link, NEW_PASSWORD, NEW_PASSWORD).await?;
    assert_eq!(done.status, 200, "{}", done.body);
    let back = link.replacen(&node1, &node0, 1);
    dead(&b.get(&back).await?);
    eventually(Duration::from_secs(10), || async {
        signs_in(&node0, "mia", NEW_PASSWORD)
            .await
            .ok()
            .filter(|ok| *ok)
    })
    .await?;
    Ok(())
}

/// On `/account/security` a user asks to change their e-mail address: the new address
/// gets a confirmation link, and only following it changes `email` and makes
/// `email_verified` true (seen in userinfo). Header injection and other non-addresses are
/// refused with a clear page and no mail.
#[tokio::test]
async fn email_change_and_verification() -> anyhow::Result<()> {
    let (smtp, _dir, s, sub) = serve_with_mia(&[]).await?;
    s.create("/Client", web_client()).await?;
    let url = format!("{}/account/security", s.issuer);
    let mut b = Browser::new();
    let back = b.sign_in(&url, "mia", MIA_PASSWORD).await?;
    assert_eq!(back.status, 302, "{}", back.body);
    let page = b.get(&url).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("mia@example.com (not verified)"),
        "{}",
        page.body
    );
    let csrf = page.hidden("csrf")?;
    let action = format!("{url}/email");
    // The address an administrator set, not verified yet: a confirmation link to it.
    let r = b
        .post_form(&action, &[("csrf", &csrf), ("email", "mia@example.com")])
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    smtp.wait_for("mia@example.com", "Confirm your e-mail address", 1)
        .await?;

    // Header injection and other non-addresses: a clear refusal, no mail.
    for (bad, why) in [
        ("victim@example.com\r\nBcc: x@evil.example", "line break"),
        ("victim@example.com\nBcc: x@evil.example", "line break"),
        (
            "victim@example.com, x@evil.example",
            "not an e-mail address",
        ),
        ("Victim <victim@example.com>", "not an e-mail address"),
        ("not an address", "not an e-mail address"),
    ] {
        let r = b
            .post_form(&action, &[("csrf", &csrf), ("email", bad)])
            .await?;
        assert_eq!(r.status, 400, "{bad:?}: {}", r.body);
        assert!(r.body.contains(why), "{bad:?}: {}", r.body);
    }
    // A forged form is refused.
    let forged = b
        .post_form(&action, &[("csrf", "forged"), ("email", "x@example.com")])
        .await?;
    assert_eq!(forged.status, 403, "{}", forged.body);

    let r = b
        .post_form(
            &action,
            &[("csrf", &csrf), ("email", "mia.new@example.com")],
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("We sent a confirmation link"), "{}", r.body);
    let mail = smtp
        .wait_for("mia.new@example.com", "Confirm your e-mail address", 1)
        .await?;
    assert_eq!(
        smtp.messages().len(),
        2,
        "nothing went to the refused addresses"
    );
    // Pending until the link is followed.
    let (_, user) = s
        .admin_call(Method::GET, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!(user["claims"]["email"], "mia@example.com", "{user}");
    let link = mail.link(&format!("{}/account/email/verify?token=", s.issuer))?;
    // Opening the link (as a mail scanner would) changes nothing; the button does.
    let confirm = Browser::new().get(&link).await?;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let token = confirm.hidden("token")?;
    let verify = format!("{}/account/email/verify", s.issuer);
    let mut other = Browser::new();
    let done = other.post_form(&verify, &[("token", &token)]).await?;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("email-verified"), "{}", done.body);
    dead(&other.post_form(&verify, &[("token", &token)]).await?);
    dead(&other.get(&link).await?);

    let (_, user) = s
        .admin_call(Method::GET, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!(user["claims"]["email"], "mia.new@example.com", "{user}");
    assert_eq!(user["claims"]["email_verified"], true, "{user}");
    let page = b.get(&url).await?;
    assert!(
        page.body.contains("mia.new@example.com (verified)"),
        "{}",
        page.body
    );

    // A relying party sees the verified address.
    let tokens = signet_tests::browser::code_flow(
        &s.issuer,
        &s.issuer,
        "web",
        None,
        REDIRECT,
        "openid email",
        "mia",
        MIA_PASSWORD,
    )
    .await?;
    let access = tokens["access_token"].as_str().context("access_token")?;
    let info: Value = reqwest::Client::new()
        .get(format!("{}/userinfo", s.issuer))
        .bearer_auth(access)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(info["email"], "mia.new@example.com", "{info}");
    assert_eq!(info["email_verified"], true, "{info}");
    Ok(())
}
