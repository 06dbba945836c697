//! The axum/tower layer: claims in the extensions, RFC 6750 challenges.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::{Extension, Router};
use common::{claims, key, now, token, StubIssuer};
use serde_json::json;
use signet_verify::{
    Algorithm, BearerAuthLayer, Claims, IntrospectionConfig, Revocations, Verifier,
};
use tower::ServiceExt;

async fn whoami(claims: Claims) -> String {
    format!(
        "{} {}",
        claims.sub.unwrap_or_default(),
        claims.scopes.join(",")
    )
}

async fn via_extension(Extension(claims): Extension<Claims>) -> String {
    claims.client_id.unwrap_or_default()
}

fn app(layer: BearerAuthLayer) -> Router {
    Router::new()
        .route("/orders", get(whoami))
        .route("/client", get(via_extension))
        .layer(layer)
}

async fn call(app: &Router, path: &str, auth: Option<&str>) -> (StatusCode, String, String) {
    let mut req = Request::get(path);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let challenge = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        challenge,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn the_layer_admits_good_tokens_and_challenges_the_rest() {
    let k = key(Algorithm::ES256, "es");
    let issuer = StubIssuer::start(&[&k]).await;
    issuer.answer(
        "opaque-1",
        json!({"active": true, "sub": "alice", "client_id": "script",
               "scope": "orders.read", "exp": now() + 600}),
    );
    let verifier = Verifier::builder(&issuer.url, "orders-api")
        .introspection(IntrospectionConfig::new("orders-api", "api-secret"))
        .build()
        .unwrap();
    let app = app(BearerAuthLayer::new(verifier.clone())
        .require_scopes(["orders.read"])
        .realm("orders"));

    let good = token(&k, &claims(&issuer.url, "orders-api"));
    let (status, _, body) = call(&app, "/orders", Some(&format!("Bearer {good}"))).await;
    assert_eq!(status, 200);
    assert_eq!(body, "backend orders.read,orders.write");
    let (status, _, body) = call(&app, "/client", Some(&format!("bearer {good}"))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "backend"));
    // Opaque tokens through introspection.
    let (status, _, body) = call(&app, "/orders", Some("Bearer opaque-1")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "alice orders.read")
    );

    // No token: 401 without an error code (RFC 6750 section 3.1).
    let (status, challenge, _) = call(&app, "/orders", None).await;
    assert_eq!(status, 401);
    assert_eq!(challenge, "Bearer realm=\"orders\"");
    let (status, challenge, _) = call(&app, "/orders", Some("Basic YTpi")).await;
    assert_eq!(
        (status.as_u16(), challenge.as_str()),
        (401, "Bearer realm=\"orders\"")
    );

    // Bad tokens: 401 invalid_token.
    let mut c = claims(&issuer.url, "orders-api");
    c["exp"] = json!(now() - 3600);
    let expired = token(&k, &c);
    for bad in [expired.as_str(), "garbage.token.here", "opaque-unknown"] {
        let (status, challenge, body) = call(&app, "/orders", Some(&format!("Bearer {bad}"))).await;
        assert_eq!(status, 401, "{bad}");
        assert!(
            challenge.starts_with(
                "Bearer realm=\"orders\", error=\"invalid_token\", error_description=\""
            ),
            "{challenge}"
        );
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "invalid_token");
    }
    let (_, challenge, _) = call(&app, "/orders", Some(&format!("Bearer {expired}"))).await;
    assert!(
        challenge.contains("error_description=\"the token has expired\""),
        "{challenge}"
    );

    // Malformed header: 400 invalid_request.
    let (status, challenge, _) = call(&app, "/orders", Some("Bearer ")).await;
    assert_eq!(status, 400);
    assert!(
        challenge.contains("error=\"invalid_request\""),
        "{challenge}"
    );

    // Missing scope: 403 insufficient_scope with the scope needed.
    let strict = app_with_scopes(&verifier, &["orders.read", "orders.delete"]);
    let (status, challenge, body) = call(&strict, "/orders", Some(&format!("Bearer {good}"))).await;
    assert_eq!(status, 403);
    assert_eq!(
        challenge,
        "Bearer realm=\"orders-api\", error=\"insufficient_scope\", error_description=\"the token lacks the required scope orders.read orders.delete\", scope=\"orders.read orders.delete\""
    );
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "insufficient_scope");
}

fn app_with_scopes(verifier: &Verifier, scopes: &[&str]) -> Router {
    app(BearerAuthLayer::new(verifier.clone()).require_scopes(scopes.iter().copied()))
}

#[tokio::test]
async fn the_layer_answers_503_until_the_revocation_history_is_replayed() {
    let k = key(Algorithm::ES256, "es");
    let issuer = StubIssuer::start(&[&k]).await;
    let revs = Revocations::new();
    let verifier = Verifier::builder(&issuer.url, "orders-api")
        .revocations(revs.clone())
        .build()
        .unwrap();
    let app = app(BearerAuthLayer::new(verifier));
    let good = token(&k, &claims(&issuer.url, "orders-api"));
    let (status, challenge, body) = call(&app, "/orders", Some(&format!("Bearer {good}"))).await;
    assert_eq!(status, 503);
    assert_eq!(challenge, "");
    assert!(body.contains("temporarily_unavailable"), "{body}");
    revs.mark_caught_up();
    let (status, _, _) = call(&app, "/orders", Some(&format!("Bearer {good}"))).await;
    assert_eq!(status, 200);
}
