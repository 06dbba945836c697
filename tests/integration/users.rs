//! Users through the admin API of real `signet` processes: create, read, look up, replace
//! and delete; usernames unique regardless of case; bodies refused with the field named and
//! the password never echoed nor read back; users kept across a restart (the projection
//! outside memory is resumed from its watermark); and in a cluster, a user created at one
//! issuer is read at another (the shared JetStream KV bucket).

use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::cluster::Cluster;
use signet_tests::{Serve, ServeOptions};

const PASSWORD: &str = "correct-horse-battery-staple-7";

/// No answer may carry a password or its hash.
fn assert_no_secret(body: &Value, passwords: &[&str]) {
    let text = body.to_string();
    for p in passwords {
        assert!(!text.contains(p), "a password is echoed: {text}");
    }
    for leak in [
        "argon2",
        "\"passwordHash\":",
        "password_hash",
        "\"password\":",
    ] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

fn sub_of(view: &Value) -> String {
    let sub = view["sub"].as_str().unwrap_or_default().to_owned();
    assert_eq!(sub.len(), 22, "a generated sub: {view}");
    assert!(
        sub.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{sub}"
    );
    sub
}

#[tokio::test]
async fn create_read_replace_delete_and_refusals() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let claims = json!({
        "name": "Alice Liddell",
        "given_name": "Alice",
        "email": "alice@example.com",
        "email_verified": true,
        "address": {"locality": "Oxford", "country": "UK"},
        "updated_at": 1_700_000_000,
        "department": {"name": "wonderland", "floor": 3}
    });
    let (status, alice) = s
        .admin_call(
            Method::POST,
            "/User",
            Some(&json!({"username": "Alice", "password": PASSWORD, "claims": claims})),
        )
        .await?;
    assert_eq!(status, 201, "{alice}");
    assert_no_secret(&alice, &[PASSWORD]);
    let sub = sub_of(&alice);
    assert_eq!(alice["username"], "Alice");
    assert_eq!(alice["enabled"], true);
    assert_eq!(alice["claims"], claims);
    assert!(alice["createdAt"]
        .as_i64()
        .is_some_and(|t| t > 1_700_000_000));

    // Read back by sub, and by username in any case.
    let (status, read) = s
        .admin_call(Method::GET, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!((status, &read), (200, &alice));
    for name in ["alice", "ALICE", "aLiCe"] {
        let (status, found) = s
            .admin_call(Method::GET, &format!("/User?username={name}"), None)
            .await?;
        assert_eq!((status, found), (200, json!([alice.clone()])), "{name}");
    }
    let (status, none) = s
        .admin_call(Method::GET, "/User?username=nobody", None)
        .await?;
    assert_eq!((status, none), (200, json!([])));
    let (status, body) = s.admin_call(Method::GET, "/User", None).await?;
    assert_eq!((status, body["field"].as_str()), (400, Some("username")));

    // A taken username, whatever its case: 409.
    let second = "another-password-123";
    let (status, body) = s
        .admin_call(
            Method::POST,
            "/User",
            Some(&json!({"username": "ALICE", "password": second})),
        )
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    assert_no_secret(&body, &[second]);

    // Bad bodies: 400 naming the field, never echoing the password.
    let short = "sh0rt!";
    for (body, field) in [
        (
            json!({"username": "bob", "password": PASSWORD, "claims": {"email_verified": "yes"}}),
            "claims.email_verified",
        ),
        (
            json!({"username": "bob", "password": PASSWORD, "claims": {"sub": "admin"}}),
            "claims.sub",
        ),
        (
            json!({"username": "bob", "password": PASSWORD, "claims": {"auth_time": 1}}),
            "claims.auth_time",
        ),
        (json!({"username": "bob", "password": short}), "password"),
        (
            json!({"username": "bob", "password": 123_456_789_012_u64}),
            "password",
        ),
        (json!({"username": "bob"}), "password"),
        (json!({"username": "", "password": PASSWORD}), "username"),
        (json!({"password": PASSWORD}), "username"),
        (
            json!({"username": "bob", "password": PASSWORD, "claims": {"address": {"zip": "1"}}}),
            "claims.address.zip",
        ),
        (
            json!({"username": "bob", "password": PASSWORD, "passwordHash": "x"}),
            "passwordHash",
        ),
    ] {
        let (status, resp) = s.admin_call(Method::POST, "/User", Some(&body)).await?;
        assert_eq!(status, 400, "{body}: {resp}");
        assert_eq!(resp["error"], "invalid_body", "{resp}");
        assert_eq!(resp["field"], field, "{body}: {resp}");
        assert!(
            resp["rule"].as_str().is_some_and(|r| !r.is_empty()),
            "{resp}"
        );
        assert_no_secret(&resp, &[PASSWORD, short, "123456789012"]);
    }
    let (status, found) = s
        .admin_call(Method::GET, "/User?username=bob", None)
        .await?;
    assert_eq!(
        (status, found),
        (200, json!([])),
        "a refused body created a user"
    );

    // Replace: username, claims, enabled; the password stays unless given.
    let (status, replaced) = s
        .admin_call(
            Method::PUT,
            &format!("/User/{sub}"),
            Some(&json!({"username": "alice.liddell", "claims": {"nickname": "Al"}, "enabled": false})),
        )
        .await?;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["sub"], sub.as_str());
    assert_eq!(replaced["username"], "alice.liddell");
    assert_eq!(replaced["claims"], json!({"nickname": "Al"}));
    assert_eq!(replaced["enabled"], false);
    assert_eq!(replaced["createdAt"], alice["createdAt"]);
    assert_no_secret(&replaced, &[PASSWORD]);
    let (_, found) = s
        .admin_call(Method::GET, "/User?username=Alice", None)
        .await?;
    assert_eq!(found, json!([]), "the old username was released");
    let new_password = "a-brand-new-password";
    let (status, body) = s
        .admin_call(
            Method::PUT,
            &format!("/User/{sub}"),
            Some(&json!({"username": "alice.liddell", "password": new_password})),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_no_secret(&body, &[new_password, PASSWORD]);
    let (status, body) = s
        .admin_call(
            Method::PUT,
            &format!("/User/{sub}"),
            Some(&json!({"username": "alice.liddell", "password": "short"})),
        )
        .await?;
    assert_eq!((status, body["field"].as_str()), (400, Some("password")));

    // Someone else takes the released name; renaming onto a taken name is 409.
    let bob = s
        .create("/User", json!({"username": "alice", "password": PASSWORD}))
        .await?;
    let bob_sub = sub_of(&bob);
    assert_ne!(bob_sub, sub);
    let (status, _) = s
        .admin_call(
            Method::PUT,
            &format!("/User/{bob_sub}"),
            Some(&json!({"username": "ALICE.LIDDELL"})),
        )
        .await?;
    assert_eq!(status, 409);

    // Missing users: 404 for every verb.
    for (method, body) in [
        (Method::GET, None),
        (Method::PUT, Some(json!({"username": "ghost"}))),
        (Method::DELETE, None),
    ] {
        let (status, resp) = s
            .admin_call(
                method.clone(),
                "/User/AAAAAAAAAAAAAAAAAAAAAA",
                body.as_ref(),
            )
            .await?;
        assert_eq!(
            (status, resp["error"].as_str()),
            (404, Some("not_found")),
            "{method}"
        );
    }

    // A sub that is not UTF-8 names no user: a JSON 404.
    for method in [Method::GET, Method::DELETE] {
        let (status, resp) = s.admin_call(method.clone(), "/User/%FF%FE", None).await?;
        assert_eq!(
            (status, resp["error"].as_str()),
            (404, Some("not_found")),
            "{method}"
        );
    }

    // Delete: 204, then gone (and its username free).
    let (status, _) = s
        .admin_call(Method::DELETE, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!(status, 204);
    let (status, _) = s
        .admin_call(Method::GET, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!(status, 404);
    let (status, _) = s
        .admin_call(Method::DELETE, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!(status, 404);
    s.create(
        "/User",
        json!({"username": "Alice.Liddell", "password": PASSWORD}),
    )
    .await?;
    // Bob is untouched.
    let (status, read) = s
        .admin_call(Method::GET, &format!("/User/{bob_sub}"), None)
        .await?;
    assert_eq!((status, read), (200, bob));
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn users_survive_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let mut views = Vec::new();
    for i in 0..3 {
        let v = s
            .create(
                "/User",
                json!({"username": format!("User{i}"), "password": PASSWORD, "claims": {"email": format!("u{i}@example.com")}}),
            )
            .await?;
        views.push(v);
    }
    let deleted = sub_of(&views[2]);
    let (status, _) = s
        .admin_call(Method::DELETE, &format!("/User/{deleted}"), None)
        .await?;
    assert_eq!(status, 204);
    let options = s.options.clone();
    let secret = s.admin_secret.clone();
    s.stop().await?;

    let mut s = Serve::start(dir.path(), options).await?;
    s.admin_secret = secret;
    for v in &views[..2] {
        let sub = sub_of(v);
        let (status, read) = s
            .admin_call(Method::GET, &format!("/User/{sub}"), None)
            .await?;
        assert_eq!((status, &read), (200, v));
        let name = v["username"].as_str().unwrap_or_default().to_lowercase();
        let (_, found) = s
            .admin_call(Method::GET, &format!("/User?username={name}"), None)
            .await?;
        assert_eq!(found, json!([v.clone()]));
    }
    let (status, _) = s
        .admin_call(Method::GET, &format!("/User/{deleted}"), None)
        .await?;
    assert_eq!(status, 404);
    // Still unique after the restart; the deleted user's name is free.
    let (status, _) = s
        .admin_call(
            Method::POST,
            "/User",
            Some(&json!({"username": "USER0", "password": PASSWORD})),
        )
        .await?;
    assert_eq!(status, 409);
    s.create("/User", json!({"username": "user2", "password": PASSWORD}))
        .await?;
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_user_created_at_one_issuer_is_read_at_another() -> anyhow::Result<()> {
    let c = Cluster::start(2).await?;
    let (status, view) = c
        .admin_call(
            0,
            Method::POST,
            "/User",
            Some(&json!({"username": "Carol", "password": PASSWORD, "claims": {"email": "carol@example.com", "email_verified": false}})),
        )
        .await?;
    assert_eq!(status, 201, "{view}");
    assert_no_secret(&view, &[PASSWORD]);
    let sub = sub_of(&view);
    let (status, read) = c
        .admin_call(1, Method::GET, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!((status, &read), (200, &view));
    let (status, found) = c
        .admin_call(1, Method::GET, "/User?username=carol", None)
        .await?;
    assert_eq!((status, found), (200, json!([view.clone()])));
    // The username is taken at the other issuer too.
    let (status, _) = c
        .admin_call(
            1,
            Method::POST,
            "/User",
            Some(&json!({"username": "CAROL", "password": PASSWORD})),
        )
        .await?;
    assert_eq!(status, 409);
    // Replaced at node 1, deleted at node 0.
    let (status, replaced) = c
        .admin_call(
            1,
            Method::PUT,
            &format!("/User/{sub}"),
            Some(&json!({"username": "carol.c"})),
        )
        .await?;
    assert_eq!(status, 200, "{replaced}");
    let (status, read) = c
        .admin_call(0, Method::GET, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!((status, read["username"].as_str()), (200, Some("carol.c")));
    let (status, _) = c
        .admin_call(0, Method::DELETE, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!(status, 204);
    let (status, _) = c
        .admin_call(1, Method::GET, &format!("/User/{sub}"), None)
        .await?;
    assert_eq!(status, 404);
    Ok(())
}
