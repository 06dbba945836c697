//! The revocation subscriber against a real `nats-server -js`: the test creates the stream
//! `SIGNET_REVOCATIONS` itself (the issuers do in production), publishes revocations before
//! and after the subscriber starts, and checks that it sees both.

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use common::nats::NatsServer;
use common::{claims, eventually, free_port, key, now, token, StubIssuer};
use serde_json::json;
use signet_verify::revocation::Target;
use signet_verify::revocation::{Revocation, TokenFacts, STREAM, SUBJECT_PREFIX};
use signet_verify::{
    Algorithm, FeedPhase, RevocationSubscriber, Revocations, SubscriberOptions, Verifier,
    VerifyError,
};

const PATIENCE: Duration = Duration::from_secs(60);

async fn create_stream(js: &jetstream::Context) -> anyhow::Result<()> {
    js.create_stream(stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![format!("{SUBJECT_PREFIX}.>")],
        max_age: Duration::from_secs(24 * 3600),
        ..Default::default()
    })
    .await?;
    Ok(())
}

async fn publish(js: &jetstream::Context, r: &Revocation) -> anyhow::Result<()> {
    js.publish(r.subject(), r.to_json().into()).await?.await?;
    Ok(())
}

async fn publish_raw(js: &jetstream::Context, subject: &str, payload: &[u8]) -> anyhow::Result<()> {
    js.publish(subject.to_owned(), payload.to_vec().into())
        .await?
        .await?;
    Ok(())
}

fn token_rev(jti: &str) -> Revocation {
    Revocation {
        target: Target::Token { jti: jti.into() },
        exp: now() + 600,
        at: now(),
    }
}

fn jti(j: &str) -> TokenFacts<'_> {
    TokenFacts {
        jti: Some(j),
        iat: now(),
        ..Default::default()
    }
}

async fn revoked_eventually(revs: &Revocations, j: &str) {
    eventually(PATIENCE, || {
        let hit = revs.is_revoked(&jti(j));
        async move { hit.then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{j} never revoked: {e}; status {:?}", revs.status()));
}

#[tokio::test]
async fn a_late_subscriber_replays_the_history_then_follows_live() {
    let nats = NatsServer::start().await.unwrap();
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = jetstream::new(client);
    create_stream(&js).await.unwrap();

    // History: published before any subscriber exists.
    publish(&js, &token_rev("early-1")).await.unwrap();
    publish(
        &js,
        &Revocation {
            target: Target::Subject {
                sub: "alice".into(),
                issued_before: now(),
            },
            exp: now() + 600,
            at: now(),
        },
    )
    .await
    .unwrap();
    // Undecodable events are skipped.
    publish_raw(&js, "signet.revocations.token", b"not json")
        .await
        .unwrap();
    publish_raw(&js, "signet.revocations.planet", br#"{"exp":1,"at":1}"#)
        .await
        .unwrap();
    // Already expired: pruned.
    publish(
        &js,
        &Revocation {
            target: Target::Token {
                jti: "stale".into(),
            },
            exp: now() - 10,
            at: now() - 700,
        },
    )
    .await
    .unwrap();
    publish(&js, &token_rev("early-2")).await.unwrap();

    let revs = Revocations::new();
    let options = SubscriberOptions {
        prune_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let sub = RevocationSubscriber::connect_with(&nats.url, revs.clone(), options).unwrap();
    tokio::time::timeout(PATIENCE, revs.wait_caught_up())
        .await
        .unwrap_or_else(|_| panic!("never caught up: {:?}", revs.status()));
    // Caught up means the whole history is in.
    assert!(revs.is_revoked(&jti("early-1")));
    assert!(revs.is_revoked(&jti("early-2")));
    assert!(revs.is_revoked(&TokenFacts {
        sub: Some("alice"),
        iat: now() - 60,
        ..Default::default()
    }));
    let status = revs.status();
    assert_eq!(status.last_sequence, 6);
    assert!(status.last_error.is_some(), "{status:?}");
    assert_eq!(status.phase, FeedPhase::Following);
    eventually(PATIENCE, || {
        let gone = !revs.is_revoked(&jti("stale"));
        async move { gone.then_some(()) }
    })
    .await
    .unwrap();
    assert_eq!(revs.len(), 3);

    // Live: published after the subscriber caught up.
    publish(&js, &token_rev("live-1")).await.unwrap();
    revoked_eventually(&revs, "live-1").await;

    // A verifier fed by it refuses the revoked token and takes the others.
    let k = key(Algorithm::ES256, "es");
    let issuer = StubIssuer::start(&[&k]).await;
    let v = Verifier::builder(&issuer.url, "orders-api")
        .revocations(revs.clone())
        .build()
        .unwrap();
    let mut c = claims(&issuer.url, "orders-api");
    c["jti"] = json!("live-2");
    let t = token(&k, &c);
    assert!(v.verify(&t).await.is_ok());
    publish(&js, &token_rev("live-2")).await.unwrap();
    eventually(PATIENCE, || {
        let v = v.clone();
        let t = t.clone();
        async move { (v.verify(&t).await == Err(VerifyError::Revoked)).then_some(()) }
    })
    .await
    .unwrap();

    // Another subscriber starting now replays everything, live events included.
    let late = Revocations::new();
    let _late_sub = RevocationSubscriber::connect(&nats.url, late.clone()).unwrap();
    tokio::time::timeout(PATIENCE, late.wait_caught_up())
        .await
        .unwrap();
    for j in ["early-1", "early-2", "live-1", "live-2"] {
        assert!(late.is_revoked(&jti(j)), "{j}");
    }

    sub.shutdown().await;
    assert_eq!(revs.status().phase, FeedPhase::Stopped);
}

#[tokio::test]
async fn the_subscriber_waits_for_nats_and_for_the_stream() {
    // The subscriber starts before NATS exists.
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let revs = Revocations::new();
    let options = SubscriberOptions {
        max_backoff: Duration::from_millis(500),
        ..Default::default()
    };
    let _sub = RevocationSubscriber::connect_with(&url, revs.clone(), options).unwrap();
    eventually(PATIENCE, || {
        let phase = revs.status().phase;
        async move { (phase == FeedPhase::Connecting).then_some(()) }
    })
    .await
    .unwrap();
    assert!(!revs.is_caught_up());

    // NATS comes up without the stream: not ready, and saying why.
    let nats = NatsServer::start_on(port).await.unwrap();
    eventually(PATIENCE, || {
        let phase = revs.status().phase;
        async move { (phase == FeedPhase::StreamMissing).then_some(()) }
    })
    .await
    .unwrap();
    assert!(!revs.is_caught_up());
    assert!(revs.status().last_error.is_some());

    // An issuer creates the stream and revokes something.
    let js = jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    create_stream(&js).await.unwrap();
    publish(&js, &token_rev("first")).await.unwrap();
    tokio::time::timeout(PATIENCE, revs.wait_caught_up())
        .await
        .unwrap_or_else(|_| panic!("never caught up: {:?}", revs.status()));
    revoked_eventually(&revs, "first").await;
}

#[tokio::test]
async fn the_subscriber_resumes_after_a_nats_restart() {
    let mut nats = NatsServer::start().await.unwrap();
    let js = jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    create_stream(&js).await.unwrap();
    publish(&js, &token_rev("before")).await.unwrap();

    let revs = Revocations::new();
    let options = SubscriberOptions {
        max_backoff: Duration::from_millis(500),
        heartbeat: Duration::from_millis(500),
        ..Default::default()
    };
    let _sub = RevocationSubscriber::connect_with(&nats.url, revs.clone(), options).unwrap();
    tokio::time::timeout(PATIENCE, revs.wait_caught_up())
        .await
        .unwrap();
    assert!(revs.is_revoked(&jti("before")));

    nats.restart().await.unwrap();
    // The stream is file-backed: it survived. Publish once the test's client is back.
    let js = jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    publish(&js, &token_rev("after-restart")).await.unwrap();
    revoked_eventually(&revs, "after-restart").await;
    assert!(revs.is_caught_up());
    assert_eq!(revs.status().last_sequence, 2);
}

#[tokio::test]
async fn bad_nats_urls_are_refused() {
    let revs = Revocations::new();
    assert!(RevocationSubscriber::connect("http://[::1", revs).is_err());
}
