//! The audit trail: `GET /admin/v1/Events` and `signet admin events` against a real node.
//! Every change is there with the admin client that made it, and no secret's hash is: not
//! a client secret's SHA-256, not a user's argon2id password hash, not an API key's SHA-256.
//! The filters and paging work, bad parameters are 400s naming them, and the CLI prints one
//! JSON line per event, following new ones until interrupted.

use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Value};
use signet_core::secret::SecretDigest;
use signet_tests::browser::Browser;
use signet_tests::{Serve, ServeOptions};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::admin_cli::Admin;

const CLIENT_SECRET: &str = "audit-backend-secret-0123456789";
const PASSWORD: &str = "ida's password 12345";

/// Makes an API key for `user` through the account page, as a person would.
async fn make_api_key(s: &Serve, user: &str) -> anyhow::Result<String> {
    let mut b = Browser::new();
    let page = format!("{}/account/api-keys", s.issuer);
    let back = b.sign_in(&page, user, PASSWORD).await?;
    anyhow::ensure!(back.status == 302, "sign-in: {}", back.body);
    let form = b.get(back.location()?.as_str()).await?;
    let csrf = form.hidden("csrf")?;
    let made = b
        .post_form(
            &page,
            &[("csrf", &csrf), ("name", "ci"), ("scopes", "audit.read")],
        )
        .await?;
    anyhow::ensure!(made.status == 200, "API key: {}", made.body);
    let start = made.body.find("<code id=\"new-key\">").context("no key")? + 19;
    let end = made.body[start..].find("</code>").context("unterminated")?;
    Ok(made.body[start..start + end].to_owned())
}

async fn events(s: &Serve, query: &str) -> anyhow::Result<(u16, Value)> {
    s.admin_call(Method::GET, &format!("/Events{query}"), None)
        .await
}

#[tokio::test]
async fn the_audit_trail_shows_changes_and_no_secret() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(&dir.path().join("data"), ServeOptions::default()).await?;
    s.create(
        "/Resource/ApiScope",
        json!({"name": "audit.read", "properties": {"signet:apiKeys": "true"}}),
    )
    .await?;
    s.create(
        "/Client",
        json!({"clientId": "audit-backend", "allowedGrantTypes": ["client_credentials"],
            "clientSecrets": [{"value": CLIENT_SECRET}], "allowedScopes": ["audit.read"]}),
    )
    .await?;
    let user = s
        .create(
            "/User",
            json!({"username": "ida", "password": PASSWORD, "claims": {}}),
        )
        .await?;
    let sub = user["sub"].as_str().context("sub")?.to_owned();
    let key = make_api_key(&s, "ida").await?;

    let (status, page) = events(&s, "").await?;
    assert_eq!(status, 200, "{page}");
    let text = page.to_string();
    // No secret, and no hash of one.
    for secret in [CLIENT_SECRET, PASSWORD, key.as_str()] {
        assert!(!text.contains(secret), "a secret is shown: {text}");
    }
    for hash in [
        SecretDigest::of(CLIENT_SECRET).to_b64url(),
        SecretDigest::of(&key).to_b64url(),
    ] {
        assert!(!text.contains(&hash), "a SHA-256 is shown: {text}");
    }
    assert!(
        !text.contains("$argon2"),
        "a password hash is shown: {text}"
    );

    let list = page["events"].as_array().context("events")?;
    let find = |aggregate: &str, id: &str| {
        list.iter()
            .find(|e| e["aggregate"] == aggregate && e["id"] == id)
            .unwrap_or_else(|| panic!("no {aggregate} {id} event in {text}"))
    };
    let client = find("client", "audit-backend");
    assert_eq!(client["actor"], "signet-admin", "{client}");
    assert_eq!(client["change"], "created");
    assert_eq!(
        client["data"]["clientSecrets"][0]["sha256"], "[redacted]",
        "{client}"
    );
    assert!(client["at"].as_str().is_some_and(|at| at.ends_with('Z')));
    let created = find("user", &sub);
    assert_eq!(created["actor"], "signet-admin");
    assert_eq!(created["data"]["username"], "ida");
    assert_eq!(created["data"]["passwordHash"], "[redacted]");
    let api_key = list
        .iter()
        .find(|e| e["aggregate"] == "api_key")
        .context("no api_key event")?;
    assert_eq!(api_key["change"], "created");
    assert_eq!(api_key["data"]["sha256"], "[redacted]");
    assert_eq!(api_key["data"]["sub"], sub);
    assert_eq!(api_key["actor"], sub, "a user makes their own keys");
    assert_eq!(find("api_scope", "audit.read")["change"], "created");
    // Sequences ascend; `next` is the last one.
    let seqs: Vec<u64> = list.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let last = *seqs.last().context("no events")?;
    assert_eq!(page["next"], last);

    // Filters, `since` (exclusive) and `limit`.
    let (_, users) = events(&s, "?aggregate=user").await?;
    let users = users["events"].as_array().context("events")?.clone();
    assert!(!users.is_empty() && users.iter().all(|e| e["aggregate"] == "user"));
    let (_, two) = events(&s, "?limit=2").await?;
    assert_eq!(two["events"].as_array().map(Vec::len), Some(2), "{two}");
    assert_eq!(two["next"], two["events"][1]["seq"]);
    let (_, rest) = events(&s, &format!("?since={}", two["next"])).await?;
    let rest: Vec<u64> = rest["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert_eq!(rest, seqs[2..], "the rest, after `since`");
    let (_, none) = events(&s, &format!("?since={last}")).await?;
    assert_eq!(none, json!({"events": [], "next": last}));

    // Bad parameters: 400 naming them.
    for (query, field) in [
        ("?aggregate=nope", "aggregate"),
        ("?since=-1", "since"),
        ("?since=soon", "since"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?from=1", "from"),
    ] {
        let (status, body) = events(&s, query).await?;
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some(field)),
            "{query}: {body}"
        );
    }

    // The CLI: the same events, one JSON line each.
    let admin = Admin::for_node(&s);
    let out = admin.run(&["events", "--aggregate", "client"]).await;
    let lines: Vec<Value> = out
        .ok()
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(lines.iter().all(|e| e["aggregate"] == "client"), "{out:?}");
    assert!(lines.iter().any(|e| e["id"] == "audit-backend"), "{out:?}");
    let out = admin
        .run(&["events", "--since", &seqs[0].to_string(), "--limit", "1"])
        .await;
    let line: Value = serde_json::from_str(out.ok().trim())?;
    assert_eq!(line["seq"], seqs[1]);
    assert!(!out.stdout.contains("$argon2"));

    // --follow prints what comes later, and stops on SIGINT.
    let mut follow = admin
        .command(&["events", "--follow", "--since", &last.to_string()])
        .spawn()?;
    let mut lines = BufReader::new(follow.stdout.take().context("stdout")?).lines();
    s.create("/Resource/ApiScope", json!({"name": "audit.later"}))
        .await?;
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("no line from --follow within 30s")??
        .context("--follow ended")?;
    let e: Value = serde_json::from_str(&line)?;
    assert_eq!(
        (&e["id"], &e["change"]),
        (&json!("audit.later"), &json!("created"))
    );
    let pid = follow.id().context("pid")?;
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()?;
    let status = tokio::time::timeout(Duration::from_secs(30), follow.wait())
        .await
        .context("--follow did not stop within 30s of SIGINT")??;
    assert!(status.success(), "{status:?}");
    Ok(())
}
