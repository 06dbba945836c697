//! The introspection client (RFC 7662) against a small local stub of the issuer's
//! endpoint (the issuer's own `/oauth2/introspect` is being written; the stub has its
//! exact shape: HTTP Basic as an API resource, form `token=...`, `{"active": ...}`).

mod common;

use std::time::Duration;

use common::{eventually, now, StubIssuer};
use serde_json::json;
use signet_verify::revocation::{Revocation, Target};
use signet_verify::{IntrospectionConfig, Revocations, TokenKind, Verifier, VerifyError};

fn active(issuer: &str, exp: i64) -> serde_json::Value {
    json!({
        "active": true,
        "iss": issuer,
        "sub": "alice",
        "client_id": "script",
        "aud": ["orders-api"],
        "scope": "orders.read",
        "token_type": "Bearer",
        "exp": exp,
        "iat": now(),
        "jti": "ref-1",
    })
}

fn verifier(issuer: &StubIssuer, config: IntrospectionConfig) -> Verifier {
    Verifier::builder(&issuer.url, "orders-api")
        .introspection(config)
        .build()
        .unwrap()
}

#[tokio::test]
async fn active_tokens_are_accepted_and_cached_briefly() {
    let issuer = StubIssuer::start(&[]).await;
    issuer.answer("ref-token-1", active(&issuer.url, now() + 600));
    let v = verifier(
        &issuer,
        IntrospectionConfig::new("orders-api", "api-secret"),
    );
    assert!(v.accepts_opaque_tokens());
    let c = v.verify("ref-token-1").await.unwrap();
    assert_eq!(c.sub.as_deref(), Some("alice"));
    assert_eq!(c.client_id.as_deref(), Some("script"));
    assert_eq!(c.scopes, ["orders.read"]);
    assert_eq!(c.kind, TokenKind::Introspected);
    assert_eq!(c.raw["token_type"], "Bearer");
    assert_eq!(issuer.introspections(), 1);
    // The advertised endpoint was used.
    assert_eq!(
        issuer.state.introspection_paths.lock().unwrap().as_slice(),
        ["/advertised/introspect"]
    );
    for _ in 0..10 {
        assert!(v.verify("ref-token-1").await.is_ok());
    }
    assert_eq!(issuer.introspections(), 1, "answered from the cache");
    assert!(v
        .verify_with_scopes("ref-token-1", &["orders.read"])
        .await
        .is_ok());
    assert!(matches!(
        v.verify_with_scopes("ref-token-1", &["orders.write"]).await,
        Err(VerifyError::InsufficientScope { .. })
    ));

    // Inactive (unknown, expired, revoked at the issuer): refused, and cached too.
    assert_eq!(v.verify("unknown-token").await, Err(VerifyError::Inactive));
    assert_eq!(v.verify("unknown-token").await, Err(VerifyError::Inactive));
    assert_eq!(issuer.introspections(), 2);
}

#[tokio::test]
async fn the_cache_expires() {
    let issuer = StubIssuer::start(&[]).await;
    issuer.answer("ref-token-1", active(&issuer.url, now() + 600));
    let mut config = IntrospectionConfig::new("orders-api", "api-secret");
    config.cache_ttl = Duration::from_millis(200);
    let v = verifier(&issuer, config);
    assert!(v.verify("ref-token-1").await.is_ok());
    // Revoked at the issuer: refused once the cached answer is gone.
    issuer.answer("ref-token-1", json!({"active": false}));
    eventually(Duration::from_secs(10), || {
        let v = v.clone();
        async move { (v.verify("ref-token-1").await == Err(VerifyError::Inactive)).then_some(()) }
    })
    .await
    .unwrap();
    assert!(issuer.introspections() >= 2);

    // A cached answer never outlives the token: with exp 1 s away and a long cache, the
    // token is refused as expired once exp (plus leeway) has passed.
    let v = Verifier::builder(&issuer.url, "orders-api")
        .introspection(IntrospectionConfig::new("orders-api", "api-secret"))
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    issuer.answer("short-lived", active(&issuer.url, now() + 1));
    assert!(v.verify("short-lived").await.is_ok());
    eventually(Duration::from_secs(10), || {
        let v = v.clone();
        async move {
            matches!(
                v.verify("short-lived").await,
                Err(VerifyError::Expired | VerifyError::Inactive)
            )
            .then_some(())
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_fallback_endpoint_and_form_encoded_credentials() {
    let issuer = StubIssuer::start_with_credentials(&[], ("api:orders résumé", "s3cr3t:+&=")).await;
    *issuer.state.advertise_introspection.lock().unwrap() = false;
    issuer.answer("tok", active(&issuer.url, now() + 600));
    let v = verifier(
        &issuer,
        IntrospectionConfig::new("api:orders résumé", "s3cr3t:+&="),
    );
    assert!(v.verify("tok").await.is_ok());
    assert_eq!(
        issuer.state.introspection_paths.lock().unwrap().as_slice(),
        ["/oauth2/introspect"]
    );
}

#[tokio::test]
async fn answers_for_another_issuer_or_audience_are_refused() {
    let issuer = StubIssuer::start(&[]).await;
    let mut other_aud = active(&issuer.url, now() + 600);
    other_aud["aud"] = json!("billing-api");
    issuer.answer("other-aud", other_aud);
    let mut other_iss = active(&issuer.url, now() + 600);
    other_iss["iss"] = json!("https://evil.example");
    issuer.answer("other-iss", other_iss);
    let mut expired = active(&issuer.url, now() - 3600);
    expired["exp"] = json!(now() - 3600);
    issuer.answer("expired", expired);
    let mut bare = json!({"active": true, "scope": "orders.read"});
    bare["exp"] = json!(now() + 60);
    issuer.answer("bare", bare);
    issuer.answer("weird", json!({"active": "yes"}));
    let v = verifier(
        &issuer,
        IntrospectionConfig::new("orders-api", "api-secret"),
    );
    assert_eq!(v.verify("other-aud").await, Err(VerifyError::WrongAudience));
    assert!(matches!(
        v.verify("other-iss").await,
        Err(VerifyError::WrongIssuer(_))
    ));
    assert_eq!(v.verify("expired").await, Err(VerifyError::Expired));
    // Only `active` is required by RFC 7662.
    assert!(v.verify("bare").await.is_ok());
    assert!(matches!(
        v.verify("weird").await,
        Err(VerifyError::IntrospectionUnavailable(_))
    ));
}

#[tokio::test]
async fn wrong_credentials_are_503_and_not_cached() {
    let issuer = StubIssuer::start(&[]).await;
    issuer.answer("tok", active(&issuer.url, now() + 600));
    let v = verifier(&issuer, IntrospectionConfig::new("orders-api", "wrong"));
    for _ in 0..3 {
        let e = v.verify("tok").await.unwrap_err();
        assert!(
            matches!(e, VerifyError::IntrospectionUnavailable(_)),
            "{e:?}"
        );
        assert_eq!(e.status(), 503);
    }
    assert_eq!(issuer.introspections(), 3);
}

#[tokio::test]
async fn introspected_tokens_are_checked_against_revocations() {
    let issuer = StubIssuer::start(&[]).await;
    issuer.answer("tok", active(&issuer.url, now() + 600));
    let revs = Revocations::new();
    revs.mark_caught_up();
    let v = Verifier::builder(&issuer.url, "orders-api")
        .introspection(IntrospectionConfig::new("orders-api", "api-secret"))
        .revocations(revs.clone())
        .build()
        .unwrap();
    assert!(v.verify("tok").await.is_ok());
    revs.insert(&Revocation {
        target: Target::Subject {
            sub: "alice".into(),
            issued_before: now() + 1,
        },
        exp: now() + 600,
        at: now(),
    });
    assert_eq!(v.verify("tok").await, Err(VerifyError::Revoked));
}
