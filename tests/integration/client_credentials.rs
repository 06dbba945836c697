//! The first real job: an admin registers an API and a backend client, the backend gets
//! tokens with a real OAuth client crate, and tokens verify against the JWKS with an
//! independent JWT library, for every algorithm.

use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use serde_json::json;
use signet_tests::{verify_jwt, Serve, ServeOptions};

pub async fn register_backend(s: &Serve) -> anyhow::Result<()> {
    s.create(
        "/Resource/ApiScope",
        json!({"name": "orders.read", "displayName": "Read orders"}),
    )
    .await?;
    s.create("/Resource/ApiScope", json!({"name": "orders.write"}))
        .await?;
    s.create("/Resource/ApiResource", json!({
        "name": "orders-api", "displayName": "Orders API", "scopes": ["orders.read", "orders.write"],
    }))
    .await?;
    s.create("/Client", json!({
        "clientId": "backend",
        "clientName": "Order sync job",
        "allowedGrantTypes": ["client_credentials"],
        "clientSecrets": [{"value": "backend-secret-0123456789"}],
        "allowedScopes": ["orders.read", "orders.write"],
        "accessTokenLifetime": 600,
        "clientClaimsPrefix": "client_",
        "claims": [{"type": "tier", "value": "gold"}, {"type": "role", "value": "a"}, {"type": "role", "value": "b"}],
    }))
    .await?;
    Ok(())
}

#[tokio::test]
async fn backend_gets_tokens_with_the_oauth2_crate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    register_backend(&s).await?;

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let client = BasicClient::new(ClientId::new("backend".into()))
            .set_client_secret(ClientSecret::new("backend-secret-0123456789".into()))
            .set_token_uri(TokenUrl::new(format!("{}/oauth2/token", s.issuer))?)
            .set_auth_type(auth.clone());
        let token = client
            .exchange_client_credentials()
            .add_scope(Scope::new("orders.read".into()))
            .request_async(&http)
            .await
            .map_err(|e| anyhow::anyhow!("{auth:?}: {e:?}"))?;
        assert_eq!(token.expires_in().map(|d| d.as_secs()), Some(600));
        let scopes: Vec<String> = token
            .scopes()
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(scopes, vec!["orders.read"]);

        let jwks = s.jwks().await?;
        let claims = verify_jwt(
            token.access_token().secret(),
            &jwks,
            &s.issuer,
            "orders-api",
        )?;
        assert_eq!(claims["sub"], "backend");
        assert_eq!(claims["client_id"], "backend");
        assert_eq!(claims["scope"], "orders.read");
        assert_eq!(claims["aud"], "orders-api");
        assert_eq!(claims["client_tier"], "gold");
        assert_eq!(claims["client_role"], json!(["a", "b"]));
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            600
        );
        assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 22));
        let header = jsonwebtoken::decode_header(token.access_token().secret())?;
        assert_eq!(
            header.typ.as_deref(),
            Some("at+jwt"),
            "RFC 9068 section 2.1"
        );
        assert_eq!(
            header.alg,
            jsonwebtoken::Algorithm::RS256,
            "the server default"
        );
    }

    // No scope asked: every API scope the client is allowed (RFC 6749 section 3.3 default).
    let (status, headers, body) = s
        .token_request(
            Some(("backend", "backend-secret-0123456789")),
            &[("grant_type", "client_credentials")],
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "orders.read orders.write");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(headers["cache-control"], "no-store");
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn every_algorithm_verifies_with_an_independent_library() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let algs = ["RS256", "PS256", "ES256", "EdDSA"];
    for alg in algs {
        let scope = format!("api.{}", alg.to_lowercase());
        s.create("/Resource/ApiScope", json!({"name": scope}))
            .await?;
        s.create("/Resource/ApiResource", json!({
            "name": format!("api-{alg}"), "scopes": [scope], "allowedAccessTokenSigningAlgorithms": [alg],
        }))
        .await?;
    }
    let scopes: Vec<String> = algs
        .iter()
        .map(|a| format!("api.{}", a.to_lowercase()))
        .collect();
    s.create("/Client", json!({
        "clientId": "svc", "allowedGrantTypes": ["client_credentials"],
        "clientSecrets": [{"value": "svc-secret-abcdefghijkl"}], "allowedScopes": scopes, "includeJwtId": false,
    }))
    .await?;
    let jwks = s.jwks().await?;
    assert_eq!(jwks.keys.len(), 4);
    for alg in algs {
        let scope = format!("api.{}", alg.to_lowercase());
        let (status, _, body) = s
            .token_request(
                Some(("svc", "svc-secret-abcdefghijkl")),
                &[("grant_type", "client_credentials"), ("scope", &scope)],
            )
            .await?;
        assert_eq!(status, 200, "{alg}: {body}");
        let token = body["access_token"].as_str().unwrap();
        let header = jsonwebtoken::decode_header(token)?;
        assert_eq!(format!("{:?}", header.alg), alg);
        let claims = verify_jwt(token, &jwks, &s.issuer, &format!("api-{alg}"))?;
        assert!(claims.get("jti").is_none(), "includeJwtId: false");
    }
    // Two resources with different algorithm restrictions share none: invalid_scope.
    let (status, _, body) = s
        .token_request(
            Some(("svc", "svc-secret-abcdefghijkl")),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "api.rs256 api.es256"),
            ],
        )
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    s.stop().await?;
    Ok(())
}
