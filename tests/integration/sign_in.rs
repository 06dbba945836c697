//! A person signs in to a web app through Signet: the authorization code flow with PKCE,
//! with the `openidconnect` crate as the relying party and the login form driven over
//! HTTP; SSO, consent, userinfo, and the negative cases of OIDC basic OP conformance.

use anyhow::Context;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AuthorizationCode, ClientId, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use serde_json::json;
use signet_tests::browser::{params_of, Browser};
use signet_tests::{Serve, ServeOptions};

const REDIRECT: &str = "http://127.0.0.1:1/cb";
const PASSWORD: &str = "correct horse battery staple";

/// A user `alice` and a public web client `web` (code + PKCE, no consent), plus a
/// confidential one `conf` that requires consent. Returns alice's `sub`.
async fn setup(s: &Serve) -> anyhow::Result<String> {
    let user = s
        .create(
            "/User",
            json!({"username": "alice", "password": PASSWORD, "claims": {
                "name": "Alice Example", "email": "alice@example.com", "email_verified": true,
                "given_name": "Alice"
            }}),
        )
        .await?;
    s.create(
        "/Client",
        json!({
            "clientId": "web", "clientName": "Web App",
            "allowedGrantTypes": ["authorization_code"],
            "requireClientSecret": false, "requireConsent": false,
            "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile", "email"]
        }),
    )
    .await?;
    s.create(
        "/Client",
        json!({
            "clientId": "conf", "clientName": "Confidential App",
            "allowedGrantTypes": ["authorization_code"],
            "clientSecrets": [{"value": "conf-secret-0123456789"}],
            "requireConsent": true, "allowRememberConsent": true,
            "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile", "email"]
        }),
    )
    .await?;
    Ok(user["sub"]
        .as_str()
        .context("POST /User returns sub")?
        .to_owned())
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn code_flow_with_pkce_through_the_openidconnect_crate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let sub = setup(&s).await?;
    let http = http();

    let meta =
        CoreProviderMetadata::discover_async(IssuerUrl::new(s.issuer.clone())?, &http).await?;
    let client = CoreClient::from_provider_metadata(meta, ClientId::new("web".into()), None)
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into())?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_extra_param("login_hint", "alice")
        .set_pkce_challenge(challenge)
        .url();

    let mut browser = Browser::new();
    // login_hint prefills the form.
    let first = browser.get(url.as_str()).await?;
    let login = browser.get(first.location()?.as_str()).await?;
    assert!(login.body.contains("value=\"alice\""), "{}", login.body);
    assert!(login.body.contains("Web App"), "branded: {}", login.body);

    let mut browser = Browser::new();
    let done = browser.sign_in(url.as_str(), "alice", PASSWORD).await?;
    assert_eq!(done.status, 302, "{}", done.body);
    let back = done.location()?;
    assert!(back.as_str().starts_with(REDIRECT), "{back}");
    let p = params_of(&back, false);
    assert_eq!(p.get("state"), Some(csrf.secret()), "state echoed");
    assert_eq!(p.get("iss"), Some(&s.issuer), "RFC 9207 iss");
    let code = p.get("code").context("code")?.clone();
    assert!(browser.cookies.contains_key("signet_session"));

    let token = client
        .exchange_code(AuthorizationCode::new(code.clone()))?
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let id_token = token.id_token().context("an ID token")?;
    let claims = id_token.claims(&client.id_token_verifier(), &nonce)?;
    assert_eq!(claims.subject().as_str(), sub);
    assert!(claims.auth_time().is_some());
    let at_hash = claims.access_token_hash().context("at_hash")?;
    let expected = openidconnect::AccessTokenHash::from_token(
        token.access_token(),
        id_token.signing_alg()?,
        id_token.signing_key(&client.id_token_verifier())?,
    )?;
    assert_eq!(at_hash, &expected);

    let info: CoreUserInfoClaims = client
        .user_info(token.access_token().clone(), None)?
        .request_async(&http)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(info.subject().as_str(), sub);
    assert_eq!(info.email().map(|e| e.as_str()), Some("alice@example.com"));
    assert_eq!(info.email_verified(), Some(true));

    // SSO: the same browser, prompt=none, answers at once with a code and the same auth_time.
    let (challenge, _verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_prompt(openidconnect::core::CoreAuthPrompt::None)
        .set_pkce_challenge(challenge)
        .url();
    let sso = browser.get(url.as_str()).await?;
    assert_eq!(sso.status, 302);
    assert!(
        params_of(&sso.location()?, false).contains_key("code"),
        "{:?}",
        sso.location()
    );

    // Code reuse: refused, and the session the code came from ends (RFC 9700 4.5).
    let (status, _, body) = s
        .token_request(
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "web"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &"a".repeat(43)),
            ],
        )
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let after = browser.get(url.as_str()).await?;
    let p = params_of(&after.location()?, false);
    assert_eq!(p.get("error").map(String::as_str), Some("login_required"));
    // ... and the tokens issued in that session are revoked.
    let r = http
        .get(format!("{}/userinfo", s.issuer))
        .bearer_auth(token.access_token().secret())
        .send()
        .await?;
    assert_eq!(
        r.status(),
        401,
        "tokens of a replayed code's session are revoked"
    );

    // Without a session, prompt=none answers login_required at the redirect URI.
    let fresh = Browser::new().get(url.as_str()).await?;
    let p = params_of(&fresh.location()?, false);
    assert_eq!(p.get("error").map(String::as_str), Some("login_required"));
    assert_eq!(p.get("iss"), Some(&s.issuer));
    Ok(())
}

fn authorize_url(s: &Serve, client: &str, extra: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer)).unwrap();
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("client_id", client)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid profile")
            .append_pair("state", "st-1")
            .append_pair("nonce", "n-1")
            .append_pair(
                "code_challenge",
                "mUC84QHW1XnmFGk31dqlZ81-q8-qS-OxrweG_XEDeIU",
            )
            .append_pair("code_challenge_method", "S256");
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

const VERIFIER: &str = "dBjftJeZ4CVP-mJ0LbmCqxJW9X8Nqn_H96LJPLkgK0Y";

#[tokio::test]
async fn consent_wrong_pkce_mismatched_client_and_bad_requests() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    setup(&s).await?;

    // An unregistered redirect URI: the error page, never a redirect.
    let mut b = Browser::new();
    let bad = authorize_url(&s, "conf", &[]).replace("127.0.0.1%3A1", "evil.example");
    let page = b.get(&bad).await?;
    assert_eq!(page.status, 400);
    assert!(page.headers.get("location").is_none());
    assert!(page.body.contains("redirect_uri"), "{}", page.body);
    // Unknown client: the same.
    let page = b.get(&authorize_url(&s, "nobody", &[])).await?;
    assert_eq!(page.status, 400);
    assert!(page.headers.get("location").is_none());
    // Missing PKCE for a client that requires it: at the redirect URI, with state.
    let no_pkce = authorize_url(&s, "conf", &[]).replace("code_challenge=", "x=");
    let r = b.get(&no_pkce).await?;
    let p = params_of(&r.location()?, false);
    assert_eq!(p.get("error").map(String::as_str), Some("invalid_request"));
    assert_eq!(p.get("state").map(String::as_str), Some("st-1"));
    // A response type the client may not use.
    let r = b
        .get(
            &authorize_url(&s, "conf", &[]).replace("response_type=code", "response_type=id_token"),
        )
        .await?;
    let p = params_of(&r.location()?, true);
    assert_eq!(
        p.get("error").map(String::as_str),
        Some("unauthorized_client")
    );

    // Consent: sign in, see the scopes, allow and remember.
    let mut b = Browser::new();
    let r = b
        .sign_in(&authorize_url(&s, "conf", &[]), "alice", PASSWORD)
        .await?;
    let consent_url = r.location()?;
    assert!(consent_url.path().ends_with("/consent"), "{consent_url}");
    let page = b.get(consent_url.as_str()).await?;
    assert!(page.body.contains("Confidential App"), "{}", page.body);
    let (interaction, csrf) = (page.hidden("interaction")?, page.hidden("csrf")?);
    let action = format!("{}/consent", s.issuer);
    // A forged CSRF token is refused.
    let forged = b
        .post_form(
            &action,
            &[
                ("interaction", &interaction),
                ("csrf", "forged"),
                ("decision", "allow"),
            ],
        )
        .await?;
    assert_eq!(forged.status, 403);
    let r = b
        .post_form(
            &action,
            &[
                ("interaction", &interaction),
                ("csrf", &csrf),
                ("scope", "openid"),
                ("scope", "profile"),
                ("remember", "yes"),
                ("decision", "allow"),
            ],
        )
        .await?;
    let code = params_of(&r.location()?, false)
        .get("code")
        .context("code after consent")?
        .clone();

    // The code redeemed by another client: refused (and gone).
    let (status, _, body) = s
        .token_request(
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "web"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // Remembered consent: prompt=none works silently now; a wrong verifier is refused.
    let r = b
        .get(&authorize_url(&s, "conf", &[("prompt", "none")]))
        .await?;
    let code = params_of(&r.location()?, false)
        .get("code")
        .context("silent code")?
        .clone();
    let conf = Some(("conf", "conf-secret-0123456789"));
    let (status, _, body) = s
        .token_request(
            conf,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &"b".repeat(43)),
            ],
        )
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let r = b
        .get(&authorize_url(&s, "conf", &[("prompt", "none")]))
        .await?;
    let code = params_of(&r.location()?, false)["code"].clone();
    let (status, _, body) = s
        .token_request(
            conf,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert!(body["id_token"].is_string());

    // prompt=consent with prompt=none is impossible; prompt=consent alone shows the page.
    let r = b
        .get(&authorize_url(&s, "conf", &[("prompt", "consent")]))
        .await?;
    assert!(r.location()?.path().ends_with("/consent"));

    // Deny: access_denied at the redirect URI.
    let page = b.get(r.location()?.as_str()).await?;
    let r = b
        .post_form(
            &action,
            &[
                ("interaction", &page.hidden("interaction")?),
                ("csrf", &page.hidden("csrf")?),
                ("decision", "deny"),
            ],
        )
        .await?;
    let p = params_of(&r.location()?, false);
    assert_eq!(p.get("error").map(String::as_str), Some("access_denied"));

    // A wrong password: the form again with one message; no session.
    let mut b = Browser::new();
    let r = b
        .sign_in(&authorize_url(&s, "web", &[]), "alice", "wrong password")
        .await?;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("The username or password is wrong."));
    assert!(!b.cookies.contains_key("signet_session"));
    Ok(())
}

fn implicit_url(s: &Serve, client: &str, response_type: &str, extra: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer)).unwrap();
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("client_id", client)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("response_type", response_type)
            .append_pair("scope", "openid profile email")
            .append_pair("state", "st-2")
            .append_pair("nonce", "n-2");
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

/// Implicit and hybrid responses, form_post, pairwise subjects, CORS, throttling, a deleted
/// user's session, and bad input at the authorization endpoint.
#[tokio::test]
async fn implicit_hybrid_pairwise_cors_throttling_and_bad_input() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let sub = setup(&s).await?;
    s.create(
        "/Client",
        json!({
            "clientId": "implicit", "allowedGrantTypes": ["implicit"],
            "allowAccessTokensViaBrowser": true, "requireConsent": false,
            "requireClientSecret": false, "pairWiseSubjectSalt": "salt-1",
            "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile", "email"],
            "allowedCorsOrigins": ["https://spa.example"]
        }),
    )
    .await?;
    s.create(
        "/Client",
        json!({
            "clientId": "hybrid", "allowedGrantTypes": ["hybrid"], "requireConsent": false,
            "requirePkce": false,
            "clientSecrets": [{"value": "hybrid-secret-0123456789"}],
            "alwaysIncludeUserClaimsInIdToken": true,
            "allowedIdentityTokenSigningAlgorithms": ["ES256"],
            "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile", "email"]
        }),
    )
    .await?;
    let jwks = s.jwks().await?;

    // Implicit `id_token token`: both in the fragment; the ID token carries at_hash and a
    // pairwise subject, never alice's own.
    let mut b = Browser::new();
    let r = b
        .sign_in(
            &implicit_url(&s, "implicit", "id_token token", &[]),
            "alice",
            PASSWORD,
        )
        .await?;
    let p = params_of(&r.location()?, true);
    assert_eq!(p.get("state").map(String::as_str), Some("st-2"));
    assert_eq!(p.get("iss"), Some(&s.issuer));
    let id = signet_tests::verify_jwt(&p["id_token"], &jwks, &s.issuer, "implicit")?;
    assert_eq!(id["nonce"], "n-2");
    assert!(id["at_hash"].is_string());
    let pairwise = id["sub"].as_str().unwrap().to_owned();
    assert_ne!(pairwise, sub, "pairwise subject");
    // Userinfo answers for the pairwise subject, with CORS for the registered origin.
    let http = http();
    let r = http
        .get(format!("{}/userinfo", s.issuer))
        .bearer_auth(&p["access_token"])
        .header("Origin", "https://spa.example")
        .send()
        .await?;
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("https://spa.example")
    );
    let info: serde_json::Value = r.json().await?;
    assert_eq!(info["sub"], pairwise.as_str());
    assert_eq!(info["email"], "alice@example.com");
    let r = http
        .get(format!("{}/userinfo", s.issuer))
        .bearer_auth(&p["access_token"])
        .header("Origin", "https://other.example")
        .send()
        .await?;
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // No token, a bad token: RFC 6750 answers.
    let r = http.get(format!("{}/userinfo", s.issuer)).send().await?;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = http
        .get(format!("{}/userinfo", s.issuer))
        .bearer_auth("not.a.token")
        .send()
        .await?;
    assert_eq!(r.status(), 401);

    // Implicit `id_token` alone: the user's claims go into the ID token.
    let r = b
        .get(&implicit_url(&s, "implicit", "id_token", &[]))
        .await?;
    let p = params_of(&r.location()?, true);
    let id = signet_tests::verify_jwt(&p["id_token"], &jwks, &s.issuer, "implicit")?;
    assert_eq!(id["email"], "alice@example.com");

    // Implicit without a nonce: refused at the redirect URI (fragment).
    let r = b
        .get(&implicit_url(&s, "implicit", "id_token", &[]).replace("nonce=n-2", "x=1"))
        .await?;
    let p = params_of(&r.location()?, true);
    assert_eq!(p.get("error").map(String::as_str), Some("invalid_request"));
    // Tokens in a query string: refused.
    let r = b
        .get(&implicit_url(
            &s,
            "implicit",
            "id_token",
            &[("response_mode", "query")],
        ))
        .await?;
    assert!(params_of(&r.location()?, true).contains_key("error"));

    // Hybrid `code id_token` with form_post: an auto-submitting form carrying both; c_hash
    // binds the code; ES256 as the client asks; user claims always included.
    let mut b = Browser::new();
    let r = b
        .sign_in(
            &implicit_url(
                &s,
                "hybrid",
                "code id_token",
                &[("response_mode", "form_post")],
            ),
            "alice",
            PASSWORD,
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    // minijinja escapes '/' in attributes; browsers decode it.
    let action = format!("action=\"{}\"", REDIRECT.replace('/', "&#x2f;"));
    assert!(r.body.contains(&action), "{}", r.body);
    let code = r.hidden("code")?;
    let id_token = r.hidden("id_token")?;
    assert_eq!(r.hidden("state")?, "st-2");
    let id = signet_tests::verify_jwt(&id_token, &jwks, &s.issuer, "hybrid")?;
    assert!(id["c_hash"].is_string());
    assert_eq!(
        jsonwebtoken::decode_header(&id_token)?.alg,
        jsonwebtoken::Algorithm::ES256
    );
    assert_eq!(id["name"], "Alice Example");
    let (status, _, body) = s
        .token_request(
            Some(("hybrid", "hybrid-secret-0123456789")),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await?;
    assert_eq!(status, 200, "{body}");

    // Oversized parameters: the error page.
    let long = "x".repeat(5000);
    let r = Browser::new()
        .get(&implicit_url(&s, "web", "code", &[("login_hint", &long)]))
        .await?;
    assert_eq!(r.status, 400);
    assert!(r.headers.get("location").is_none());

    // Login throttling per address and account: after 5 failures from this address (in a
    // browser alice never signed in with), even the right password waits here.
    let mut b = Browser::new();
    for _ in 0..5 {
        let r = b
            .sign_in(&authorize_url(&s, "web", &[]), "alice", "wrong")
            .await?;
        assert_eq!(r.status, 200);
    }
    let r = b
        .sign_in(&authorize_url(&s, "web", &[]), "alice", PASSWORD)
        .await?;
    assert_eq!(r.status, 429);
    assert!(r.body.contains("Too many sign-in attempts"));

    // A session of a user who is then deleted: no longer a session.
    let mut b = Browser::new();
    let carol = s
        .create(
            "/User",
            json!({"username": "carol", "password": PASSWORD, "claims": {}}),
        )
        .await?["sub"]
        .as_str()
        .context("sub")?
        .to_owned();
    let r = b
        .sign_in(&authorize_url(&s, "web", &[]), "carol", PASSWORD)
        .await?;
    assert_eq!(r.status, 302);
    assert!(params_of(&r.location()?, false).contains_key("code"));
    let (status, _) = s
        .admin_call(reqwest::Method::DELETE, &format!("/User/{carol}"), None)
        .await?;
    assert_eq!(status, 204);
    let r = b
        .get(&authorize_url(&s, "web", &[("prompt", "none")]))
        .await?;
    let p = params_of(&r.location()?, false);
    assert_eq!(p.get("error").map(String::as_str), Some("login_required"));
    Ok(())
}

/// A code past `authorizationCodeLifetime` is refused; a login form with a forged CSRF
/// token, or from another browser, is refused; `id_token` without `openid` is refused.
#[tokio::test]
async fn expired_codes_forged_login_forms_and_missing_openid() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    setup(&s).await?;
    s.create(
        "/Client",
        json!({
            "clientId": "brief", "allowedGrantTypes": ["authorization_code"],
            "requireClientSecret": false, "requireConsent": false,
            "authorizationCodeLifetime": 1,
            "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile"]
        }),
    )
    .await?;
    let mut b = Browser::new();
    let r = b
        .sign_in(&authorize_url(&s, "brief", &[]), "alice", PASSWORD)
        .await?;
    let code = params_of(&r.location()?, false)["code"].clone();
    // The code lives one second: wait on the clock for it to pass (the thing under test).
    let issued = std::time::Instant::now();
    signet_tests::eventually(std::time::Duration::from_secs(5), || async {
        (issued.elapsed() > std::time::Duration::from_millis(1100)).then_some(())
    })
    .await?;
    let (status, _, body) = s
        .token_request(
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "brief"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // Forged CSRF token at the login form.
    let mut b = Browser::new();
    let first = b.get(&authorize_url(&s, "web", &[])).await?;
    let login_url = first.location()?;
    let page = b.get(login_url.as_str()).await?;
    let interaction = page.hidden("interaction")?;
    let action = format!("{}/login", s.issuer);
    let r = b
        .post_form(
            &action,
            &[
                ("interaction", &interaction),
                ("csrf", "forged"),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await?;
    assert_eq!(r.status, 403);
    // The right token from another browser (no binding cookie): refused too.
    let csrf = page.hidden("csrf")?;
    let r = Browser::new()
        .post_form(
            &action,
            &[
                ("interaction", &interaction),
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await?;
    assert_eq!(r.status, 403);
    // An unknown interaction: the error page.
    let r = b
        .get(&format!("{}/login?interaction=nope", s.issuer))
        .await?;
    assert_eq!(r.status, 400);

    // id_token without the openid scope.
    s.create(
        "/Client",
        json!({
            "clientId": "imp", "allowedGrantTypes": ["implicit"], "requireClientSecret": false,
            "redirectUris": [REDIRECT], "allowedScopes": ["openid", "profile"]
        }),
    )
    .await?;
    let r = b
        .get(
            &authorize_url(&s, "imp", &[])
                .replace("response_type=code", "response_type=id_token")
                .replace("scope=openid+profile", "scope=profile"),
        )
        .await?;
    let p = params_of(&r.location()?, true);
    assert_eq!(p.get("error").map(String::as_str), Some("invalid_scope"));
    Ok(())
}
