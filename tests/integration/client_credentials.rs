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

/// Reads one HTTP/1.1 response off `buf` (refilled from `conn`): its status, its
/// `X-Request-Id` and its body.
async fn read_response(
    conn: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> anyhow::Result<(u16, String, String)> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end].to_vec())?;
            let mut lines = head.split("\r\n");
            let status: u16 = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("no status line in {head:?}"))?;
            let (mut len, mut id) = (0usize, String::new());
            for line in lines {
                let (name, value) = line.split_once(':').unwrap_or((line, ""));
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => len = value.trim().parse()?,
                    "x-request-id" => id = value.trim().to_owned(),
                    _ => {}
                }
            }
            let total = end + 4 + len;
            if buf.len() >= total {
                let body = String::from_utf8(buf[end + 4..total].to_vec())?;
                buf.drain(..total);
                return Ok((status, id, body));
            }
        }
        let mut chunk = [0u8; 16384];
        let n = conn.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed with {} bytes unread", buf.len());
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// HTTP/1.1 pipelining (RFC 9112 section 9.3.2): a client writes several requests at once
/// on one connection; each is answered, in order, and without delay. Every answer is its
/// own write, so without TCP_NODELAY Nagle's algorithm holds each one after the first
/// until the client's delayed ACK: about 40 ms a round on Linux, against a few ms here.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order_without_nagle_delays() -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;

    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    register_backend(&s).await?;
    let host = s.public.trim_start_matches("http://").to_owned();
    let path = format!(
        "{}/oauth2/token",
        s.issuer.trim_start_matches(s.public.as_str())
    );
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "backend:backend-secret-0123456789",
    );
    let mut conn = tokio::net::TcpStream::connect(&host).await?;
    let mut buf = Vec::new();
    const DEPTH: usize = 8;
    let mut rounds = Vec::new();
    for round in 0..12 {
        // One write: DEPTH requests, every other one with a scope the client lacks.
        let mut batch = String::new();
        for i in 0..DEPTH {
            let scope = if i % 2 == 0 { "orders.read" } else { "admin" };
            let body = format!("grant_type=client_credentials&scope={scope}");
            batch.push_str(&format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {basic}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nX-Request-Id: p{round}-{i}\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        }
        let started = std::time::Instant::now();
        conn.write_all(batch.as_bytes()).await?;
        for i in 0..DEPTH {
            let (status, id, body) = read_response(&mut conn, &mut buf).await?;
            assert_eq!(id, format!("p{round}-{i}"), "answers in request order");
            if i % 2 == 0 {
                assert_eq!(status, 200, "{body}");
                assert!(body.contains("\"access_token\""), "{body}");
            } else {
                assert_eq!(status, 400, "{body}");
                assert!(body.contains("\"invalid_scope\""), "{body}");
            }
        }
        rounds.push(started.elapsed());
    }
    assert!(buf.is_empty(), "{} bytes beyond the answers", buf.len());
    // A request followed by an empty line, which some clients send after a body (RFC 9112
    // section 2.2: a server ignores it): answered at once, and the connection still
    // serves. (hyper's experimental `pipeline_flush` held such an answer until the next
    // request arrived.)
    for i in 0..2 {
        conn.write_all(
            format!(
                "GET {}/healthz HTTP/1.1\r\nHost: {host}\r\nX-Request-Id: crlf-{i}\r\n\r\n\r\n",
                path.trim_end_matches("/oauth2/token")
            )
            .as_bytes(),
        )
        .await?;
        let (status, id, _) = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            read_response(&mut conn, &mut buf),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no answer to a request followed by an empty line"))??;
        assert_eq!((status, id.as_str()), (200, format!("crlf-{i}").as_str()));
    }
    // The median round after the first few (Linux acknowledges at once early in a
    // connection, hiding Nagle there).
    let mut steady = rounds[4..].to_vec();
    steady.sort();
    let median = steady[steady.len() / 2];
    assert!(
        median < std::time::Duration::from_millis(30),
        "a round of {DEPTH} pipelined requests took {median:?} (rounds: {rounds:?})"
    );
    s.stop().await?;
    Ok(())
}
