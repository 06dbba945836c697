//! Sign-in through an LDAP directory (issue 16, `type: "ldap"`) against a real OpenLDAP
//! `slapd` (tests/support/ldap.rs): StartTLS and ldaps with the test CA, the service
//! account's search, the user's bind, groups from `memberOf`, the same answer for every
//! wrong username or password (LDAP injection included), an empty password refused before
//! any bind, a directory that is down or refuses the service account, client
//! restrictions, the admin API's rules, and the cluster.

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::browser::{params_of, Browser, Page, PKCE_CHALLENGE, PKCE_VERIFIER};
use signet_tests::ldap::{self, Slapd};
use signet_tests::{free_port, verify_jwt, Serve, ServeOptions};

const REDIRECT: &str = "http://127.0.0.1:1/cb";
const WRONG: &str = "The username or password is wrong.";
const DOWN: &str = "The directory could not be reached";

/// The provider `corp` on `slapd`: StartTLS with the test CA, groups to roles.
fn corp(slapd: &Slapd) -> Value {
    json!({
        "scheme": "corp", "displayName": "Corporate Directory", "type": "ldap",
        "url": slapd.url(), "startTls": true, "caCertificate": slapd.ca_pem,
        "bindDn": ldap::SERVICE_DN, "bindPassword": ldap::SERVICE_PASSWORD,
        "userSearchBase": ldap::PEOPLE, "userSearchFilter": "(uid={username})",
        "groupRoleMappings": {ldap::ADMINS_GROUP: "admin", ldap::STAFF_GROUP: "staff"},
        "timeoutSeconds": 3
    })
}

fn with(mut body: Value, patch: Value) -> Value {
    for (k, v) in patch.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn app(s: &Serve, id: &str, extra: Value) -> anyhow::Result<()> {
    s.create(
        "/Client",
        with(
            json!({"clientId": id, "allowedGrantTypes": ["authorization_code"],
                   "requireClientSecret": false, "requireConsent": false,
                   "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile", "email"]}),
            extra,
        ),
    )
    .await?;
    Ok(())
}

fn authorize_url(issuer: &str, client: &str, extra: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&format!("{issuer}/oauth2/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("client_id", client)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile email")
        .append_pair("state", "s")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

/// GETs `url` and follows redirects to a page.
async fn follow(b: &mut Browser, url: &str) -> anyhow::Result<(String, Page)> {
    let mut url = url.to_owned();
    for _ in 0..10 {
        let page = b.get(&url).await?;
        if !matches!(page.status, 302 | 303) {
            return Ok((url, page));
        }
        url = page.location()?.to_string();
    }
    bail!("too many redirects")
}

/// The action of the button of provider `scheme` on a login page.
fn button_action(login: &Page, scheme: &str) -> Option<String> {
    let body = login.body.replace("&#x2f;", "/");
    let marker = format!("/federation/{scheme}/start");
    let at = body.find(&marker)?;
    let start = body[..at].rfind('"')? + 1;
    Some(body[start..at + marker.len()].to_owned())
}

/// Through authorize and the provider's button to the directory form: its URL and page.
async fn directory_form(
    b: &mut Browser,
    issuer: &str,
    client: &str,
    scheme: &str,
) -> anyhow::Result<(String, Page)> {
    let (_, login) = follow(b, &authorize_url(issuer, client, &[])).await?;
    assert_eq!(login.status, 200, "{}", login.body);
    let action = button_action(&login, scheme).context("no provider button")?;
    let (i, c) = (login.hidden("interaction")?, login.hidden("csrf")?);
    let to_form = b
        .post_form(&action, &[("interaction", &i), ("csrf", &c)])
        .await?;
    assert_eq!(to_form.status, 303, "{}", to_form.body);
    let url = to_form.location()?.to_string();
    assert!(
        url.contains(&format!("/federation/{scheme}/ldap?interaction=")),
        "{url}"
    );
    let form = b.get(&url).await?;
    assert_eq!(form.status, 200, "{}", form.body);
    Ok((url, form))
}

/// Posts the directory form at `url` (a node's form URL: the action is the same path).
async fn submit(
    b: &mut Browser,
    url: &str,
    form: &Page,
    username: &str,
    password: &str,
) -> anyhow::Result<Page> {
    let action = url.split('?').next().unwrap_or_default().to_owned();
    let (i, c) = (form.hidden("interaction")?, form.hidden("csrf")?);
    b.post_form(
        &action,
        &[
            ("interaction", &i),
            ("csrf", &c),
            ("username", username),
            ("password", password),
        ],
    )
    .await
}

/// The code a successful sign-in's page moves on to.
fn code_of(page: &Page) -> anyhow::Result<String> {
    if page.status != 200 || !page.body.contains("id=\"continue\"") {
        bail!("not a sign-in: {} {}", page.status, page.body);
    }
    let at = page.body.find("id=\"continue\"").unwrap_or_default();
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
    assert!(u.as_str().starts_with(REDIRECT), "{u}");
    params_of(&u, false).remove("code").context("no code")
}

async fn redeem(s: &Serve, client: &str, code: &str) -> anyhow::Result<Value> {
    let (status, _, body) = s
        .token_request(
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
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

async fn serve(dir: &std::path::Path) -> anyhow::Result<Serve> {
    Serve::start(
        dir,
        ServeOptions {
            capture_logs: true,
            ..Default::default()
        },
    )
    .await
}

#[tokio::test]
async fn a_directory_user_signs_in_over_starttls_and_is_provisioned_once() -> anyhow::Result<()> {
    let slapd = Slapd::start().await?;
    let dir = tempfile::tempdir()?;
    let s = serve(dir.path()).await?;
    s.create("/IdentityProvider", corp(&slapd)).await?;
    app(&s, "app", json!({})).await?;

    let mut b = Browser::new();
    let (url, form) = directory_form(&mut b, &s.issuer, "app", "corp").await?;
    assert!(form.body.contains("Corporate Directory"), "{}", form.body);
    let done = submit(&mut b, &url, &form, "alice", ldap::ALICE_PASSWORD).await?;
    let tokens = redeem(&s, "app", &code_of(&done)?).await?;
    let id = verify_jwt(
        tokens["id_token"].as_str().context("id_token")?,
        &s.jwks().await?,
        &s.issuer,
        "app",
    )?;
    assert_eq!(id["idp"], "corp", "{id}");
    assert_eq!(id["amr"], json!(["pwd"]), "{id}");
    let sub = id["sub"].as_str().context("sub")?.to_owned();

    // Just in time, with the mapped attributes, the roles of its groups and the link by
    // entryUUID.
    let (status, user) = s
        .admin_call(Method::GET, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!(status, 200, "{user}");
    let claims = &user["claims"];
    assert_eq!(claims["name"], "Alice Liddell", "{user}");
    assert_eq!(claims["email"], "alice@example.org", "{user}");
    assert_eq!(claims["given_name"], "Alice", "{user}");
    assert_eq!(claims["family_name"], "Liddell", "{user}");
    assert_eq!(claims["preferred_username"], "alice", "{user}");
    assert_eq!(claims["roles"], json!(["admin", "staff"]), "{user}");
    assert_eq!(user["externalLogins"][0]["scheme"], "corp", "{user}");
    let subject = user["externalLogins"][0]["subject"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(subject.len(), 36, "an entryUUID: {user}");

    // The second sign-in finds the same user; bob gets his own, with his group only.
    let mut b = Browser::new();
    let (url, form) = directory_form(&mut b, &s.issuer, "app", "corp").await?;
    let done = submit(&mut b, &url, &form, "ALICE", ldap::ALICE_PASSWORD).await?;
    let tokens = redeem(&s, "app", &code_of(&done)?).await?;
    let again = verify_jwt(
        tokens["id_token"].as_str().context("id_token")?,
        &s.jwks().await?,
        &s.issuer,
        "app",
    )?;
    assert_eq!(again["sub"], sub.as_str(), "the same user");
    let mut b = Browser::new();
    let (url, form) = directory_form(&mut b, &s.issuer, "app", "corp").await?;
    let done = submit(&mut b, &url, &form, "bob", ldap::BOB_PASSWORD).await?;
    let tokens = redeem(&s, "app", &code_of(&done)?).await?;
    let bob = verify_jwt(
        tokens["id_token"].as_str().context("id_token")?,
        &s.jwks().await?,
        &s.issuer,
        "app",
    )?;
    assert_ne!(bob["sub"], sub.as_str(), "bob is another user");
    let (_, bob) = s
        .admin_call(
            Method::GET,
            &format!("/User/{}", bob["sub"].as_str().unwrap_or_default()),
            None,
        )
        .await?;
    assert_eq!(bob["claims"]["roles"], json!(["staff"]), "{bob}");

    // A non-ASCII username is found (UTF-8 in the filter, RFC 4515).
    let mut b = Browser::new();
    let (url, form) = directory_form(&mut b, &s.issuer, "app", "corp").await?;
    let done = submit(&mut b, &url, &form, "zoë", ldap::ZOE_PASSWORD).await?;
    code_of(&done)?;

    // No directory password in the audit trail, the event log or the log.
    let (_, events) = s.admin_call(Method::GET, "/Events", None).await?;
    let events = events.to_string();
    let raw: Vec<Vec<u8>> = std::fs::read_dir(dir.path().join("events"))?
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read(e.path()).unwrap_or_default())
        .collect();
    for secret in [
        ldap::SERVICE_PASSWORD,
        ldap::ALICE_PASSWORD,
        ldap::BOB_PASSWORD,
    ] {
        assert!(!events.contains(secret), "{events}");
        assert!(!s.logs().contains(secret), "{}", s.logs());
        assert!(
            !raw.iter()
                .any(|f| f.windows(secret.len()).any(|w| w == secret.as_bytes())),
            "the event log holds {secret:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn wrong_passwords_unknown_users_and_injections_get_the_same_answer() -> anyhow::Result<()> {
    let slapd = Slapd::start().await?;
    let dir = tempfile::tempdir()?;
    let s = serve(dir.path()).await?;
    s.create("/IdentityProvider", corp(&slapd)).await?;
    // The same directory, found by a filter that would match everyone if `*` got through.
    s.create(
        "/IdentityProvider",
        with(
            corp(&slapd),
            json!({"scheme": "wild", "userSearchFilter": "(&(objectClass=inetOrgPerson)(uid={username}))"}),
        ),
    )
    .await?;
    app(&s, "app", json!({})).await?;
    let mut b = Browser::new();
    for (scheme, username, password) in [
        ("corp", "alice", "not her password"),
        ("corp", "nobody", ldap::ALICE_PASSWORD),
        ("corp", "*", ldap::ALICE_PASSWORD),
        ("corp", "admin)(|(uid=*", ldap::ALICE_PASSWORD),
        ("wild", "*", ldap::ALICE_PASSWORD),
        ("wild", "*)(uid=alice", ldap::ALICE_PASSWORD),
        ("wild", "al*", ldap::ALICE_PASSWORD),
        ("wild", "alice\\", ldap::ALICE_PASSWORD),
    ] {
        let (url, form) = directory_form(&mut b, &s.issuer, "app", scheme).await?;
        let r = submit(&mut b, &url, &form, username, password).await?;
        assert_eq!(r.status, 200, "{username}: {}", r.body);
        assert!(r.body.contains(WRONG), "{username}: {}", r.body);
        assert!(!r.body.contains("continue"), "{username}: {}", r.body);
    }
    // An empty password never reaches the directory (an unauthenticated bind would
    // succeed, RFC 4513 section 5.1.2): refused as wrong, even where the directory is down.
    s.create(
        "/IdentityProvider",
        with(
            corp(&slapd),
            json!({"scheme": "down", "url": format!("ldap://127.0.0.1:{}", free_port())}),
        ),
    )
    .await?;
    for scheme in ["corp", "down"] {
        let (url, form) = directory_form(&mut b, &s.issuer, "app", scheme).await?;
        let r = submit(&mut b, &url, &form, "alice", "").await?;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains(WRONG), "{}", r.body);
    }
    let (_, events) = s.admin_call(Method::GET, "/Events", None).await?;
    assert!(
        !events.to_string().contains("user.created"),
        "nobody was created: {events}"
    );

    // The password form's throttle: five failures for one name from this address, then
    // even the right password waits.
    for _ in 0..4 {
        let (url, form) = directory_form(&mut b, &s.issuer, "app", "corp").await?;
        let r = submit(&mut b, &url, &form, "alice", "guess").await?;
        assert!(r.body.contains(WRONG), "{}", r.body);
    }
    let (url, form) = directory_form(&mut b, &s.issuer, "app", "corp").await?;
    let r = submit(&mut b, &url, &form, "alice", ldap::ALICE_PASSWORD).await?;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("Too many sign-in attempts"), "{}", r.body);
    Ok(())
}

#[tokio::test]
async fn a_directory_that_is_down_refuses_the_service_account_or_is_untrusted_is_a_page(
) -> anyhow::Result<()> {
    let slapd = Slapd::start().await?;
    let dir = tempfile::tempdir()?;
    let s = serve(dir.path()).await?;
    let closed = free_port();
    for patch in [
        json!({"scheme": "down", "url": format!("ldap://127.0.0.1:{closed}")}),
        json!({"scheme": "badbind", "bindPassword": "not the service password"}),
        // ldaps with the system's trust store: the test CA is not in it.
        json!({"scheme": "untrusted", "url": slapd.ldaps_url(), "startTls": false, "caCertificate": null}),
        // StartTLS required but the certificate is for another CA.
        json!({"scheme": "otherca", "caCertificate": ldap::unrelated_ca()?}),
        // ldaps with the test CA works.
        json!({"scheme": "ldaps", "url": slapd.ldaps_url(), "startTls": false}),
    ] {
        let mut body = with(corp(&slapd), patch);
        body.as_object_mut().unwrap().retain(|_, v| !v.is_null());
        s.create("/IdentityProvider", body).await?;
    }
    app(&s, "app", json!({})).await?;
    let mut b = Browser::new();
    for scheme in ["down", "badbind", "untrusted", "otherca"] {
        let (url, form) = directory_form(&mut b, &s.issuer, "app", scheme).await?;
        let r = submit(&mut b, &url, &form, "alice", ldap::ALICE_PASSWORD).await?;
        assert_eq!(r.status, 200, "{scheme}: {}", r.body);
        assert!(r.body.contains(DOWN), "{scheme}: {}", r.body);
        assert!(!r.body.contains(WRONG), "{scheme}: {}", r.body);
    }
    let logs = s.logs();
    assert!(logs.contains("refused the service account"), "{logs}");
    assert!(logs.contains("directory sign-in failed"), "{logs}");
    let mut b = Browser::new();
    let (url, form) = directory_form(&mut b, &s.issuer, "app", "ldaps").await?;
    let r = submit(&mut b, &url, &form, "alice", ldap::ALICE_PASSWORD).await?;
    code_of(&r)?;
    Ok(())
}

#[tokio::test]
async fn client_restrictions_and_acr_values_apply_to_directories() -> anyhow::Result<()> {
    let slapd = Slapd::start().await?;
    let dir = tempfile::tempdir()?;
    let s = serve(dir.path()).await?;
    s.create("/IdentityProvider", corp(&slapd)).await?;
    app(
        &s,
        "restricted",
        json!({"identityProviderRestrictions": ["other"]}),
    )
    .await?;
    app(
        &s,
        "dironly",
        json!({"identityProviderRestrictions": ["corp"], "enableLocalLogin": false}),
    )
    .await?;
    let mut b = Browser::new();
    let (_, login) = follow(&mut b, &authorize_url(&s.issuer, "restricted", &[])).await?;
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(button_action(&login, "corp").is_none(), "{}", login.body);
    // Its interaction cannot reach the directory form, nor post to it.
    let (i, c) = (login.hidden("interaction")?, login.hidden("csrf")?);
    let form = b
        .get(&format!(
            "{}/federation/corp/ldap?interaction={i}",
            s.issuer
        ))
        .await?;
    assert_eq!(form.status, 400, "{}", form.body);
    let r = b
        .post_form(
            &format!("{}/federation/corp/ldap", s.issuer),
            &[
                ("interaction", &i),
                ("csrf", &c),
                ("username", "alice"),
                ("password", ldap::ALICE_PASSWORD),
            ],
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(!r.body.contains("continue"), "{}", r.body);
    // A forged CSRF token is refused.
    let (url, form) = directory_form(&mut b, &s.issuer, "dironly", "corp").await?;
    let action = url.split('?').next().unwrap_or_default().to_owned();
    let r = b
        .post_form(
            &action,
            &[
                ("interaction", &form.hidden("interaction")?),
                ("csrf", "forged"),
                ("username", "alice"),
                ("password", ldap::ALICE_PASSWORD),
            ],
        )
        .await?;
    assert!(matches!(r.status, 400 | 403), "{} {}", r.status, r.body);
    // acr_values=idp:corp goes straight to the directory form.
    let (url, form) = follow(
        &mut b,
        &authorize_url(&s.issuer, "dironly", &[("acr_values", "idp:corp")]),
    )
    .await?;
    assert!(url.contains("/federation/corp/ldap?interaction="), "{url}");
    let r = submit(&mut b, &url, &form, "alice", ldap::ALICE_PASSWORD).await?;
    code_of(&r)?;
    Ok(())
}

#[tokio::test]
async fn the_admin_api_validates_ldap_providers_and_never_returns_the_bind_password(
) -> anyhow::Result<()> {
    let slapd = Slapd::start().await?;
    let dir = tempfile::tempdir()?;
    let s = serve(dir.path()).await?;
    let good = corp(&slapd);
    for (patch, field) in [
        (
            json!({"url": "ldap://ldap.example.org", "startTls": false}),
            "url",
        ),
        (json!({"url": "http://ldap.example.org"}), "url"),
        (json!({"url": "ldaps://a", "startTls": true}), "startTls"),
        (json!({"bindPassword": ""}), "bindPassword"),
        (json!({"bindPassword": null}), "bindPassword"),
        (json!({"bindDn": "signet"}), "bindDn"),
        (json!({"userSearchBase": null}), "userSearchBase"),
        (
            json!({"userSearchFilter": "(uid=alice)"}),
            "userSearchFilter",
        ),
        (json!({"caCertificate": "junk"}), "caCertificate"),
        (json!({"subjectAttribute": "a b"}), "subjectAttribute"),
        (
            json!({"attributeMappings": {"mail": "iss"}}),
            "attributeMappings.mail",
        ),
        (
            json!({"groupRoleMappings": {"admins": "a"}}),
            "groupRoleMappings.admins",
        ),
        (json!({"timeoutSeconds": 600}), "timeoutSeconds"),
        (json!({"clientId": "x"}), "clientId"),
        (json!({"clientSecret": "x"}), "clientSecret"),
        (json!({"authority": "https://a.example"}), "authority"),
        (json!({"scopes": ["openid"]}), "scopes"),
    ] {
        let mut body = with(good.clone(), patch.clone());
        body.as_object_mut().unwrap().retain(|_, v| !v.is_null());
        let (status, resp) = s
            .admin_call(Method::POST, "/IdentityProvider", Some(&body))
            .await?;
        assert_eq!(status, 400, "{patch}: {resp}");
        assert!(resp.to_string().contains(field), "{patch}: {resp}");
    }
    // An ldap field on an oidc provider.
    let (status, resp) = s
        .admin_call(
            Method::POST,
            "/IdentityProvider",
            Some(
                &json!({"scheme": "o", "type": "oidc", "authority": "https://a.example",
                         "clientId": "c", "bindDn": ldap::SERVICE_DN}),
            ),
        )
        .await?;
    assert_eq!(status, 400, "{resp}");
    assert!(resp.to_string().contains("bindDn"), "{resp}");

    let created = s.create("/IdentityProvider", good.clone()).await?;
    assert_eq!(created["hasBindPassword"], true, "{created}");
    assert_eq!(created["subjectAttribute"], "entryUUID", "{created}");
    assert_eq!(created["timeoutSeconds"], 3, "{created}");
    assert!(created.get("bindPassword").is_none(), "{created}");
    assert!(
        !created.to_string().contains(ldap::SERVICE_PASSWORD),
        "{created}"
    );
    // PUT without bindPassword keeps it (and the sign-in still binds).
    let mut body = good.clone();
    body.as_object_mut().unwrap().remove("bindPassword");
    body["displayName"] = json!("Directory");
    let (status, read) = s
        .admin_call(Method::PUT, "/IdentityProvider", Some(&body))
        .await?;
    assert_eq!(
        (status, &read["hasBindPassword"]),
        (200, &json!(true)),
        "{read}"
    );
    app(&s, "app", json!({})).await?;
    let mut b = Browser::new();
    let (url, form) = directory_form(&mut b, &s.issuer, "app", "corp").await?;
    code_of(&submit(&mut b, &url, &form, "alice", ldap::ALICE_PASSWORD).await?)?;
    let (_, events) = s.admin_call(Method::GET, "/Events", None).await?;
    assert!(
        !events.to_string().contains(ldap::SERVICE_PASSWORD),
        "{events}"
    );
    let (_, list) = s.admin_call(Method::GET, "/IdentityProvider", None).await?;
    assert!(!list.to_string().contains(ldap::SERVICE_PASSWORD), "{list}");
    Ok(())
}

/// On the cluster: the directory form is shown by node 1, posted to node 2 (which opens
/// the bind password node 1 sealed: both derive the key from the cluster secret), and the
/// code is redeemed at node 1.
#[tokio::test]
async fn on_the_cluster_the_directory_sign_in_and_the_code_may_use_different_nodes(
) -> anyhow::Result<()> {
    use signet_tests::cluster::Cluster;
    use std::time::Duration;
    let slapd = Slapd::start().await?;
    let c = Cluster::start_with(2, vec![]).await?;
    for (path, body) in [
        ("/IdentityProvider", corp(&slapd)),
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
    let (node1, node2) = (c.issuers[0].public.clone(), c.issuers[1].public.clone());
    signet_tests::eventually(Duration::from_secs(10), || async {
        let (status, _) = c
            .admin_call(1, Method::GET, "/IdentityProvider/corp", None)
            .await
            .ok()?;
        (status == 200).then_some(())
    })
    .await?;
    let mut b = Browser::new();
    let (url, form) = directory_form(&mut b, &c.issuer, "app", "corp").await?;
    let at_node2 = url.replacen(&c.issuer, &node2, 1);
    let done = submit(&mut b, &at_node2, &form, "alice", ldap::ALICE_PASSWORD).await?;
    let code = code_of(&done)?;
    let token: Value = c
        .http
        .post(format!("{node1}/oauth2/token"))
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
        &c.jwks(0).await?,
        &c.issuer,
        "app",
    )?;
    assert_eq!(id["idp"], "corp", "{id}");
    assert_eq!(id["amr"], json!(["pwd"]), "{id}");
    let (status, user) = c
        .admin_call(
            0,
            Method::GET,
            &format!("/User/{}", id["sub"].as_str().unwrap_or_default()),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["claims"]["roles"], json!(["admin", "staff"]), "{user}");
    Ok(())
}

/// The whole flow in headless Chromium: the directory's button on the login page, the
/// directory form (its CSP lets the form's answer go on to the client), the relying party
/// with a code.
#[tokio::test]
async fn a_person_signs_in_with_the_directory_in_chromium() -> anyhow::Result<()> {
    use fantoccini::Locator;
    use signet_tests::chrome::{relying_party, Chrome};
    use std::time::Duration;
    let slapd = Slapd::start().await?;
    let dir = tempfile::tempdir()?;
    let s = serve(dir.path()).await?;
    s.create("/IdentityProvider", corp(&slapd)).await?;
    let redirect = format!("{}/cb", relying_party().await?);
    s.create(
        "/Client",
        json!({"clientId": "spa", "allowedGrantTypes": ["authorization_code"],
               "requireClientSecret": false, "requireConsent": false,
               "redirectUris": [redirect], "allowedScopes": ["openid", "profile"]}),
    )
    .await?;
    let mut authorize = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer))?;
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
    signet_tests::eventually(Duration::from_secs(15), || async {
        let u = c.current_url().await.ok()?;
        u.path().ends_with("/federation/corp/ldap").then_some(())
    })
    .await?;
    chrome.sign_in("alice", ldap::ALICE_PASSWORD).await?;
    let landed = match signet_tests::eventually(Duration::from_secs(15), || async {
        let u = c.current_url().await.ok()?;
        u.as_str().starts_with(&redirect).then_some(u)
    })
    .await
    {
        Ok(u) => u,
        Err(e) => bail!(
            "never reached the relying party ({e}); at {:?}: {}",
            c.current_url().await,
            c.source().await.unwrap_or_default()
        ),
    };
    chrome.client.close().await?;
    let params: std::collections::BTreeMap<String, String> =
        landed.query_pairs().into_owned().collect();
    assert_eq!(params.get("state").map(String::as_str), Some("s1"));
    let code = params.get("code").context("a code")?;
    let token: Value = reqwest::Client::new()
        .post(format!("{}/oauth2/token", s.issuer))
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
        &s.jwks().await?,
        &s.issuer,
        "spa",
    )?;
    assert_eq!(id["idp"], "corp", "{id}");
    Ok(())
}
