//! No accepted field is silently ignored (issue 18, item 4), over HTTP: a field whose
//! value is invalid is a 400 naming it (a bad logout URI too); API scopes' and resources' `userClaims` put the
//! user's claims into access tokens; `updateAccessTokenClaimsOnRefresh` decides whether a
//! refresh reloads them; `showInDiscoveryDocument` of an API resource takes effect.

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::browser::code_flow;
use signet_tests::{verify_jwt, Serve, ServeOptions};

const REDIRECT: &str = "http://127.0.0.1:1/cb";
const PASSWORD: &str = "correct horse battery staple";

#[tokio::test]
async fn fields_without_their_feature_are_refused_naming_the_field() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let base = json!({
        "clientId": "app", "allowedGrantTypes": ["authorization_code"],
        "requireClientSecret": false, "redirectUris": ["https://app.example/cb"],
    });
    // enableLocalLogin and identityProviderRestrictions take effect
    // (tests/integration/federation.rs); a restriction that cannot be a provider's scheme is
    // refused naming it.
    let mut body = base.clone();
    body["identityProviderRestrictions"] = json!(["ok", "not a scheme"]);
    let (status, resp) = s.admin_call(Method::POST, "/Client", Some(&body)).await?;
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["field"], "identityProviderRestrictions[1]", "{resp}");
    // The device flow's fields take effect (tests/integration/device.rs); an unknown
    // user code type is refused by name.
    let mut body = base.clone();
    body["allowedGrantTypes"] = json!(["urn:ietf:params:oauth:grant-type:device_code"]);
    body["userCodeType"] = json!("Emoji");
    let (status, resp) = s.admin_call(Method::POST, "/Client", Some(&body)).await?;
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["field"], "userCodeType", "{resp}");
    // Front- and back-channel logout URIs take effect (tests/integration/channel_logout.rs);
    // one that is not an absolute http(s) URL is refused naming it.
    for field in ["backChannelLogoutUri", "frontChannelLogoutUri"] {
        let mut body = base.clone();
        body[field] = json!("ftp://app.example/logout");
        let (status, resp) = s.admin_call(Method::POST, "/Client", Some(&body)).await?;
        assert_eq!(status, 400, "{field}: {resp}");
        assert_eq!(resp["field"], field, "{resp}");
    }
    // Defaults written out are fine.
    let mut body = base.clone();
    body["enableLocalLogin"] = json!(true);
    body["deviceCodeLifetime"] = json!(300);
    body["backChannelLogoutSessionRequired"] = json!(true);
    s.create("/Client", body).await?;

    // An API resource kept out of discovery takes its scopes along.
    s.create("/Resource/ApiScope", json!({"name": "hidden.read"}))
        .await?;
    s.create("/Resource/ApiScope", json!({"name": "shown.read"}))
        .await?;
    s.create(
        "/Resource/ApiResource",
        json!({"name": "hidden-api", "scopes": ["hidden.read"], "showInDiscoveryDocument": false}),
    )
    .await?;
    let d: Value = s
        .http()
        .get(format!("{}/.well-known/openid-configuration", s.issuer))
        .send()
        .await?
        .json()
        .await?;
    let scopes = d["scopes_supported"].as_array().context("scopes")?;
    assert!(scopes.iter().any(|x| x == "shown.read"), "{scopes:?}");
    assert!(!scopes.iter().any(|x| x == "hidden.read"), "{scopes:?}");
    s.stop().await?;
    Ok(())
}

async fn refresh(s: &Serve, client: &str, token: &str) -> anyhow::Result<(u16, Value)> {
    let (status, _, body) = s
        .token_request(
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", client),
            ],
        )
        .await?;
    Ok((status, body))
}

#[tokio::test]
async fn access_tokens_carry_user_claims_and_refresh_reloads_them_when_asked() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    s.create(
        "/Resource/ApiScope",
        json!({"name": "orders", "userClaims": ["department"]}),
    )
    .await?;
    s.create(
        "/Resource/ApiResource",
        json!({"name": "orders-api", "scopes": ["orders"], "userClaims": ["email"]}),
    )
    .await?;
    let user = s
        .create(
            "/User",
            json!({"username": "alice", "password": PASSWORD,
                   "claims": {"email": "alice@example.com", "department": "sales", "name": "Alice"}}),
        )
        .await?;
    let sub = user["sub"].as_str().context("sub")?.to_owned();
    for (id, update) in [("fresh", true), ("kept", false)] {
        s.create(
            "/Client",
            json!({
                "clientId": id, "allowedGrantTypes": ["authorization_code"],
                "requireClientSecret": false, "redirectUris": [REDIRECT],
                "allowOfflineAccess": true, "allowedScopes": ["openid", "orders"],
                "updateAccessTokenClaimsOnRefresh": update,
                // includeJwtId: false (as the reference client has it) leaves jti out.
                "includeJwtId": update,
            }),
        )
        .await?;
    }
    let jwks = s.jwks().await?;
    let mut refresh_tokens = Vec::new();
    for id in ["fresh", "kept"] {
        let t = code_flow(
            &s.issuer,
            &s.issuer,
            id,
            None,
            REDIRECT,
            "openid orders offline_access",
            "alice",
            PASSWORD,
        )
        .await?;
        let at = verify_jwt(
            t["access_token"].as_str().context("access_token")?,
            &jwks,
            &s.issuer,
            "orders-api",
        )?;
        assert_eq!(at["department"], "sales", "the API scope's claim: {at}");
        assert_eq!(
            at["email"], "alice@example.com",
            "the resource's claim: {at}"
        );
        assert!(at.get("name").is_none(), "no claim nobody asked for: {at}");
        assert_eq!(at.get("jti").is_some(), id == "fresh", "includeJwtId: {at}");
        refresh_tokens.push(t["refresh_token"].as_str().context("refresh")?.to_owned());
    }

    // The user changes department.
    let (status, body) = s
        .admin_call(
            Method::PUT,
            &format!("/User/{sub}"),
            Some(&json!({"username": "alice",
                "claims": {"email": "alice@example.com", "department": "marketing"}})),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let mut next = String::new();
    for (id, token, department) in [
        ("fresh", &refresh_tokens[0], "marketing"),
        ("kept", &refresh_tokens[1], "sales"),
    ] {
        let (status, body) = refresh(&s, id, token).await?;
        assert_eq!(status, 200, "{id}: {body}");
        let at = verify_jwt(
            body["access_token"].as_str().context("access_token")?,
            &jwks,
            &s.issuer,
            "orders-api",
        )?;
        assert_eq!(at["department"], department, "{id}: {at}");
        next = body["refresh_token"]
            .as_str()
            .context("rotated")?
            .to_owned();
    }

    // A disabled user gets nothing more, whichever claims the client would use.
    let (status, body) = s
        .admin_call(
            Method::PUT,
            &format!("/User/{sub}"),
            Some(&json!({"username": "alice", "enabled": false})),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = refresh(&s, "kept", &next).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    s.stop().await?;
    Ok(())
}
