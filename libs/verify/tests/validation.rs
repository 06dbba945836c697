//! Validation edge cases against an in-process issuer serving discovery and the JWKS.

mod common;

use std::time::Duration;

use common::{claims, eventually, key, now, sign_raw, token, StubIssuer};
use serde_json::json;
use signet_verify::revocation::{Revocation, Target};
use signet_verify::{Algorithm, Revocations, TokenKind, Verifier, VerifyError};

fn verifier(issuer: &StubIssuer) -> Verifier {
    Verifier::builder(&issuer.url, "orders-api")
        .build()
        .unwrap()
}

#[tokio::test]
async fn good_tokens_of_every_algorithm_verify() {
    let keys: Vec<_> = Algorithm::ALL
        .iter()
        .map(|alg| key(*alg, &format!("k-{alg}")))
        .collect();
    let refs: Vec<_> = keys.iter().map(|k| &**k).collect();
    let issuer = StubIssuer::start(&refs).await;
    let v = verifier(&issuer);
    for k in &keys {
        let c = v
            .verify(&token(k, &claims(&issuer.url, "orders-api")))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", k.alg()));
        assert_eq!(c.sub.as_deref(), Some("backend"));
        assert_eq!(c.client_id.as_deref(), Some("backend"));
        assert_eq!(c.scopes, ["orders.read", "orders.write"]);
        assert_eq!(c.aud, ["orders-api"]);
        assert_eq!(c.jti.as_deref(), Some("jti-1"));
        assert!(c.exp.is_some() && c.iat.is_some());
        assert_eq!(
            c.kind,
            TokenKind::Jwt {
                kid: k.kid().to_owned(),
                alg: k.alg()
            }
        );
        assert_eq!(c.raw["iss"], issuer.url);
    }
    // One discovery + JWKS fetch served all of them.
    assert_eq!(issuer.jwks_fetches(), 1);
}

#[tokio::test]
async fn algorithms_outside_the_allow_list_or_unlike_the_key_are_refused() {
    let rs = key(Algorithm::RS256, "rs");
    let issuer = StubIssuer::start(&[&rs]).await;
    let only_es = Verifier::builder(&issuer.url, "orders-api")
        .algorithms([Algorithm::ES256])
        .build()
        .unwrap();
    let good = token(&rs, &claims(&issuer.url, "orders-api"));
    assert_eq!(
        only_es.verify(&good).await,
        Err(VerifyError::AlgorithmNotAllowed("RS256".into()))
    );
    // Refused before any key lookup.
    assert_eq!(issuer.jwks_fetches(), 0);

    // The header claims PS256 but the key is an RS256 key (a PSS signature with it).
    let v = verifier(&issuer);
    let mut header = json!({"alg": "PS256", "kid": "rs", "typ": "at+jwt"});
    let forged = sign_raw(&rs, &header, &claims(&issuer.url, "orders-api"));
    assert_eq!(
        v.verify(&forged).await,
        Err(VerifyError::AlgorithmNotAllowed("PS256".into()))
    );
    header["alg"] = json!("RS512");
    let forged = sign_raw(&rs, &header, &claims(&issuer.url, "orders-api"));
    assert_eq!(
        v.verify(&forged).await,
        Err(VerifyError::AlgorithmNotAllowed("RS512".into()))
    );
}

#[tokio::test]
async fn alg_none_is_refused() {
    let k = key(Algorithm::ES256, "es");
    let issuer = StubIssuer::start(&[&k]).await;
    let v = verifier(&issuer);
    let b64 = |v: serde_json::Value| signet_jose::b64url(v.to_string().as_bytes());
    for alg in ["none", "None", "NONE"] {
        let unsigned = format!(
            "{}.{}.",
            b64(json!({"alg": alg, "kid": "es", "typ": "at+jwt"})),
            b64(claims(&issuer.url, "orders-api"))
        );
        assert_eq!(
            v.verify(&unsigned).await,
            Err(VerifyError::AlgorithmNotAllowed(alg.into()))
        );
    }
    assert_eq!(issuer.jwks_fetches(), 0);
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_is_refused() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair;
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let rs = key(Algorithm::RS256, "rs");
    let issuer = StubIssuer::start(&[&rs]).await;
    let v = verifier(&issuer);
    assert!(v
        .verify(&token(&rs, &claims(&issuer.url, "orders-api")))
        .await
        .is_ok());

    // What an attacker can know of the public key, in every usual encoding.
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(rs.pkcs8_der()).unwrap();
    let spki = pair.public_key().as_der().unwrap().as_ref().to_vec();
    let pem_text = pem::encode(&pem::Pem::new("PUBLIC KEY", spki.clone()));
    let jwk_json = serde_json::to_vec(rs.public_jwk()).unwrap();
    for secret in [pem_text.into_bytes(), spki, jwk_json] {
        for alg in [
            jsonwebtoken::Algorithm::HS256,
            jsonwebtoken::Algorithm::HS384,
            jsonwebtoken::Algorithm::HS512,
        ] {
            let mut header = jsonwebtoken::Header::new(alg);
            header.kid = Some("rs".into());
            header.typ = Some("at+jwt".into());
            let forged = jsonwebtoken::encode(
                &header,
                &claims(&issuer.url, "orders-api"),
                &jsonwebtoken::EncodingKey::from_secret(&secret),
            )
            .unwrap();
            assert_eq!(
                v.verify(&forged).await,
                Err(VerifyError::AlgorithmNotAllowed(format!("{alg:?}"))),
            );
        }
    }
    assert_eq!(issuer.jwks_fetches(), 1, "forgeries cause no refetch");
}

#[tokio::test]
async fn typ_must_be_at_jwt() {
    let k = key(Algorithm::EdDSA, "ed");
    let issuer = StubIssuer::start(&[&k]).await;
    let v = verifier(&issuer);
    let c = claims(&issuer.url, "orders-api");
    for (typ, ok) in [
        (json!("at+jwt"), true),
        (json!("AT+JWT"), true),
        (json!("application/at+jwt"), true),
        (json!("JWT"), false),
        (json!("jwt"), false),
        (json!(null), false),
    ] {
        let mut header = json!({"alg": "EdDSA", "kid": "ed"});
        if !typ.is_null() {
            header["typ"] = typ.clone();
        }
        let r = v.verify(&sign_raw(&k, &header, &c)).await;
        if ok {
            assert!(r.is_ok(), "{typ}: {r:?}");
        } else {
            assert!(matches!(r, Err(VerifyError::WrongType(_))), "{typ}: {r:?}");
        }
    }
}

#[tokio::test]
async fn issuer_audience_and_times_are_checked() {
    let k = key(Algorithm::ES256, "es");
    let issuer = StubIssuer::start(&[&k]).await;
    let v = Verifier::builder(&issuer.url, "orders-api")
        .leeway(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = claims(&issuer.url, "orders-api");
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = base.clone();
        f(&mut c);
        token(&k, &c)
    };
    let now = now();
    let cases: Vec<(&str, String, Result<(), VerifyError>)> = vec![
        ("good", with(&|_| {}), Ok(())),
        (
            "other issuer",
            with(&|c| c["iss"] = json!("https://evil.example")),
            Err(VerifyError::WrongIssuer(Some(
                "https://evil.example".into(),
            ))),
        ),
        (
            "issuer with a trailing slash",
            with(&|c| c["iss"] = json!(format!("{}/", issuer.url))),
            Err(VerifyError::WrongIssuer(Some(format!("{}/", issuer.url)))),
        ),
        (
            "no issuer",
            with(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
            Err(VerifyError::WrongIssuer(None)),
        ),
        (
            "other audience",
            with(&|c| c["aud"] = json!("billing-api")),
            Err(VerifyError::WrongAudience),
        ),
        (
            "audience list with ours",
            with(&|c| c["aud"] = json!(["billing-api", "orders-api"])),
            Ok(()),
        ),
        (
            "audience list without ours",
            with(&|c| c["aud"] = json!(["billing-api"])),
            Err(VerifyError::WrongAudience),
        ),
        (
            "no audience",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            Err(VerifyError::WrongAudience),
        ),
        (
            "expired long ago",
            with(&|c| c["exp"] = json!(now - 3600)),
            Err(VerifyError::Expired),
        ),
        (
            "expired just beyond the leeway",
            with(&|c| c["exp"] = json!(now - 40)),
            Err(VerifyError::Expired),
        ),
        (
            "expired within the leeway",
            with(&|c| c["exp"] = json!(now - 5)),
            Ok(()),
        ),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            Err(VerifyError::MissingClaim("exp")),
        ),
        (
            "exp is text",
            with(&|c| c["exp"] = json!("tomorrow")),
            Err(VerifyError::MissingClaim("exp")),
        ),
        (
            "nbf in the future",
            with(&|c| c["nbf"] = json!(now + 600)),
            Err(VerifyError::NotYetValid),
        ),
        (
            "nbf within the leeway",
            with(&|c| c["nbf"] = json!(now + 10)),
            Ok(()),
        ),
    ];
    for (name, t, want) in cases {
        assert_eq!(v.verify(&t).await.map(|_| ()), want, "{name}");
    }

    let strict = Verifier::builder(&issuer.url, "orders-api")
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(
        strict
            .verify(&with(&|c| c["exp"] = json!(now - 5)))
            .await
            .map(|_| ()),
        Err(VerifyError::Expired)
    );
}

#[tokio::test]
async fn tampered_and_malformed_tokens_are_refused() {
    let k = key(Algorithm::ES256, "es");
    let issuer = StubIssuer::start(&[&k]).await;
    let v = verifier(&issuer);
    let good = token(&k, &claims(&issuer.url, "orders-api"));
    let (head, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let mut other = claims(&issuer.url, "orders-api");
    other["scope"] = json!("orders.read orders.write admin");
    let swapped = format!(
        "{head}.{}.{sig}",
        signet_jose::b64url(other.to_string().as_bytes())
    );
    assert_eq!(v.verify(&swapped).await, Err(VerifyError::BadSignature));
    assert!(v.verify(&tamper(&good)).await.is_err());
    for garbage in [
        "a.b",
        "a.b.c.d",
        "!!!.b.c",
        &format!("{head}.%%%.{sig}"),
        &format!("{head}.{sig}"),
    ] {
        assert!(v.verify(garbage).await.is_err(), "{garbage}");
    }
    // A header without kid.
    let no_kid = sign_raw(
        &k,
        &json!({"alg": "ES256", "typ": "at+jwt"}),
        &claims(&issuer.url, "orders-api"),
    );
    assert!(matches!(
        v.verify(&no_kid).await,
        Err(VerifyError::Malformed(_))
    ));
    // Too long.
    assert!(matches!(
        v.verify(&"a".repeat(20_000)).await,
        Err(VerifyError::Malformed(_))
    ));
    // Not a JWT and no introspection configured.
    assert_eq!(
        v.verify("opaque-reference-token").await,
        Err(VerifyError::OpaqueNotAccepted)
    );
    assert_eq!(v.verify("").await, Err(VerifyError::MissingToken));
}

#[tokio::test]
async fn required_scopes() {
    let k = key(Algorithm::ES256, "es");
    let issuer = StubIssuer::start(&[&k]).await;
    let v = verifier(&issuer);
    let t = token(&k, &claims(&issuer.url, "orders-api"));
    assert!(v.verify_with_scopes(&t, &["orders.read"]).await.is_ok());
    assert!(v
        .verify_with_scopes(&t, &["orders.read", "orders.write"])
        .await
        .is_ok());
    let e = v
        .verify_with_scopes(&t, &["orders.read", "orders.delete"])
        .await
        .unwrap_err();
    assert_eq!(
        e,
        VerifyError::InsufficientScope {
            required: vec!["orders.read".into(), "orders.delete".into()]
        }
    );
    assert_eq!(e.status(), 403);
    assert_eq!(e.oauth_error(), Some("insufficient_scope"));
    assert_eq!(VerifyError::Expired.status(), 401);
    assert_eq!(VerifyError::Expired.oauth_error(), Some("invalid_token"));
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let old = key(Algorithm::ES256, "old");
    let issuer = StubIssuer::start(&[&old]).await;
    let interval = Duration::from_millis(1500);
    let v = Verifier::builder(&issuer.url, "orders-api")
        .refetch_interval(interval)
        .build()
        .unwrap();
    assert!(v
        .verify(&token(&old, &claims(&issuer.url, "orders-api")))
        .await
        .is_ok());
    assert_eq!(issuer.jwks_fetches(), 1);
    let last_fetch = std::time::Instant::now();

    // Garbage kids, many times, right away: at most one more fetch.
    let stranger = key(Algorithm::ES256, "stranger");
    let garbage = token(&stranger, &claims(&issuer.url, "orders-api"));
    for _ in 0..50 {
        assert_eq!(
            v.verify(&garbage).await,
            Err(VerifyError::UnknownKey("stranger".into()))
        );
    }
    assert!(issuer.jwks_fetches() <= 2, "{}", issuer.jwks_fetches());
    // Known keys keep verifying without fetching.
    assert!(v
        .verify(&token(&old, &claims(&issuer.url, "orders-api")))
        .await
        .is_ok());

    // A new key appears in the JWKS: it is found at the next allowed refetch.
    let new = key(Algorithm::ES256, "new");
    issuer.set_keys(&[&old, &new]);
    let start = std::time::Instant::now();
    let t = token(&new, &claims(&issuer.url, "orders-api"));
    let first = v.verify(&t).await;
    if last_fetch.elapsed() < interval {
        // Within the interval of the last fetch: not asked again, so not found yet.
        assert_eq!(first, Err(VerifyError::UnknownKey("new".into())));
    }
    eventually(Duration::from_secs(20), || {
        let v = v.clone();
        let t = t.clone();
        async move { v.verify(&t).await.ok() }
    })
    .await
    .unwrap();
    let elapsed = start.elapsed();
    // However many attempts it took, the issuer was asked at most once per interval.
    let fetches = issuer.jwks_fetches();
    let allowed = 2 + 1 + (elapsed.as_millis() / interval.as_millis()) as u64;
    assert!(fetches <= allowed, "{fetches} fetches in {elapsed:?}");
    assert_eq!(v.jwks_stats().fetches, fetches);
}

#[tokio::test]
async fn the_jwks_is_kept_no_longer_than_its_max_age() {
    let a = key(Algorithm::ES256, "a");
    let issuer = StubIssuer::start(&[&a]).await;
    *issuer.state.cache_control.lock().unwrap() = "public, max-age=1".into();
    let v = Verifier::builder(&issuer.url, "orders-api")
        .refetch_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let t = token(&a, &claims(&issuer.url, "orders-api"));
    assert!(v.verify(&t).await.is_ok());
    // The key leaves the JWKS (revoked at the issuer): refused once the cache expired.
    issuer.set_keys(&[]);
    eventually(Duration::from_secs(10), || {
        let v = v.clone();
        let t = t.clone();
        async move { matches!(v.verify(&t).await, Err(VerifyError::UnknownKey(_))).then_some(()) }
    })
    .await
    .unwrap();
    assert!(issuer.jwks_fetches() >= 2);
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_refused() {
    let k = key(Algorithm::ES256, "es");
    let issuer = StubIssuer::start(&[&k]).await;
    *issuer.state.discovery_issuer.lock().unwrap() = Some("https://evil.example".into());
    let v = verifier(&issuer);
    let e = v
        .verify(&token(&k, &claims(&issuer.url, "orders-api")))
        .await
        .unwrap_err();
    assert!(matches!(e, VerifyError::KeysUnavailable(_)), "{e:?}");
    assert_eq!(e.status(), 503);
    assert!(v.warm_up().await.is_err());
    assert_eq!(issuer.jwks_fetches(), 0);
}

#[tokio::test]
async fn an_unreachable_issuer_is_503_not_401() {
    let k = key(Algorithm::ES256, "es");
    // Nothing listens there.
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let v = Verifier::builder(&url, "orders-api")
        .http_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let e = v
        .verify(&token(&k, &claims(&url, "orders-api")))
        .await
        .unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
    assert_eq!(e.status(), 503);
}

#[tokio::test]
async fn revoked_tokens_are_refused_and_an_unreplayed_set_is_not_ready() {
    let k = key(Algorithm::ES256, "es");
    let issuer = StubIssuer::start(&[&k]).await;
    let revs = Revocations::new();
    let v = Verifier::builder(&issuer.url, "orders-api")
        .revocations(revs.clone())
        .build()
        .unwrap();
    let t = token(&k, &claims(&issuer.url, "orders-api"));
    assert_eq!(v.verify(&t).await, Err(VerifyError::RevocationsNotReady));
    revs.mark_caught_up();
    assert!(v.verify(&t).await.is_ok());

    let rev = |target| Revocation {
        target,
        exp: now() + 600,
        at: now(),
    };
    revs.insert(&rev(Target::Token {
        jti: "jti-2".into(),
    }));
    assert!(v.verify(&t).await.is_ok(), "another jti");
    revs.insert(&rev(Target::Client {
        client_id: "backend".into(),
        issued_before: now() - 100,
    }));
    assert!(v.verify(&t).await.is_ok(), "issued after the cut-off");
    revs.insert(&rev(Target::Key { kid: "es".into() }));
    assert_eq!(v.verify(&t).await, Err(VerifyError::Revoked));

    let revs = Revocations::new();
    revs.mark_caught_up();
    let v = Verifier::builder(&issuer.url, "orders-api")
        .revocations(revs.clone())
        .build()
        .unwrap();
    let mut c = claims(&issuer.url, "orders-api");
    c["family"] = json!("fam-1");
    c["sid"] = json!("sid-1");
    let t = token(&k, &c);
    assert!(v.verify(&t).await.is_ok());
    revs.insert(&rev(Target::Family {
        family: "fam-1".into(),
    }));
    assert_eq!(v.verify(&t).await, Err(VerifyError::Revoked));

    let revs = Revocations::new();
    let lenient = Verifier::builder(&issuer.url, "orders-api")
        .revocations(revs.clone())
        .require_caught_up(false)
        .build()
        .unwrap();
    assert!(lenient.verify(&t).await.is_ok());
    revs.insert(&rev(Target::Session {
        sid: "sid-1".into(),
    }));
    assert_eq!(lenient.verify(&t).await, Err(VerifyError::Revoked));
}

#[tokio::test]
async fn bad_configuration_is_refused() {
    assert!(Verifier::builder("not a url", "a").build().is_err());
    assert!(Verifier::builder("ftp://x", "a").build().is_err());
    assert!(Verifier::builder("http://x", "").build().is_err());
    assert!(Verifier::builder("http://x", "a")
        .algorithms([])
        .build()
        .is_err());
}

/// OIDC Back-Channel Logout 1.0 section 2.6, as the relying party `web-app` checks a token.
#[tokio::test]
async fn logout_tokens_are_verified_as_a_relying_party_would() {
    let k = key(Algorithm::ES256, "es");
    let issuer = StubIssuer::start(&[&*k]).await;
    let v = Verifier::builder(&issuer.url, "web-app").build().unwrap();
    let header = json!({"alg": "ES256", "kid": "es", "typ": "logout+jwt"});
    let good = || {
        json!({
            "iss": issuer.url,
            "aud": "web-app",
            "iat": now(),
            "exp": now() + 120,
            "jti": "j1",
            "events": {signet_verify::BACKCHANNEL_LOGOUT_EVENT: {}},
            "sid": "s1",
            "sub": "u1",
        })
    };
    let c = v
        .verify_logout_token(&sign_raw(&k, &header, &good()))
        .await
        .unwrap();
    assert_eq!(
        (c.sid.as_deref(), c.sub.as_deref()),
        (Some("s1"), Some("u1"))
    );

    let refused = |mutate: &dyn Fn(&mut serde_json::Value)| {
        let mut c = good();
        mutate(&mut c);
        sign_raw(&k, &header, &c)
    };
    let cases: Vec<(String, VerifyError)> = vec![
        (
            refused(&|c| c["nonce"] = json!("n")),
            VerifyError::NotALogoutToken("it carries a nonce"),
        ),
        (
            refused(&|c| c["events"] = json!({})),
            VerifyError::NotALogoutToken("events lacks the back-channel logout event"),
        ),
        (
            refused(&|c| {
                c.as_object_mut().unwrap().remove("sid");
                c.as_object_mut().unwrap().remove("sub");
            }),
            VerifyError::NotALogoutToken("it carries neither sid nor sub"),
        ),
        (
            refused(&|c| c["aud"] = json!("other")),
            VerifyError::WrongAudience,
        ),
        (
            refused(&|c| c["exp"] = json!(now() - 3600)),
            VerifyError::Expired,
        ),
        (
            refused(&|c| {
                c.as_object_mut().unwrap().remove("iat");
            }),
            VerifyError::NotALogoutToken("a claim has the wrong type"),
        ),
        (
            refused(&|c| c["iss"] = json!("https://evil.example")),
            VerifyError::WrongIssuer(Some("https://evil.example".into())),
        ),
    ];
    for (token, expected) in cases {
        assert_eq!(v.verify_logout_token(&token).await, Err(expected));
    }
    // An ID token or access token is not a logout token.
    for typ in ["JWT", "at+jwt"] {
        let h = json!({"alg": "ES256", "kid": "es", "typ": typ});
        assert_eq!(
            v.verify_logout_token(&sign_raw(&k, &h, &good())).await,
            Err(VerifyError::NotALogoutToken("typ is not logout+jwt"))
        );
    }
    // A tampered signature.
    let t = tamper(&sign_raw(&k, &header, &good()));
    assert!(v.verify_logout_token(&t).await.is_err());
}

/// The token with one character of its signature changed: one well inside it, whose six
/// bits all count (the last character's low bits may be padding), always to another one.
/// (The version this replaces popped the last character, then compared the new last one,
/// so it put the same character back about one time in 64.)
fn tamper(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let i = chars.len() - 10;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    assert_ne!(tampered, token);
    tampered
}
