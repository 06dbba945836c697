//! Usernames are unique across the issuers of a cluster: two issuers given one username
//! (in any case or width) within the same milliseconds answer one 201 (or 200) and one 409,
//! because each write first claims the username's aggregate with an expected version.

use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::cluster::Cluster;
use signet_tests::eventually;

const PASSWORD: &str = "a racer's password";
const ROUNDS: usize = 20;

/// `method path` with `body` at issuer `i`, with a token fetched beforehand (so that both
/// racers send at once); the status and the body.
async fn call(
    c: &Cluster,
    token: &str,
    i: usize,
    method: Method,
    path: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let r = c
        .http
        .request(method, format!("{}{path}", c.issuers[i].admin))
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    let text = r.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Two spellings of one username: case and full width fold to the same key.
fn spellings(round: usize) -> (String, String) {
    let base = format!("racer{round}");
    let other = match round % 3 {
        0 => base.clone(),
        1 => base.to_uppercase(),
        // Full-width letters and digits (U+FF01..): ｒａｃｅｒ１２
        _ => base
            .chars()
            .map(|ch| char::from_u32(ch as u32 - 0x21 + 0xFF01).unwrap_or(ch))
            .collect(),
    };
    (base, other)
}

fn one_won(a: &(u16, Value), b: &(u16, Value), ok: u16) -> bool {
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    statuses == [ok, 409]
}

#[tokio::test]
async fn two_issuers_racing_on_one_username_give_one_success_and_one_conflict() -> anyhow::Result<()>
{
    let c = Cluster::start(2).await?;
    let tokens = [c.admin_token(0).await?, c.admin_token(1).await?];

    // Creations: the same name at both issuers at once.
    for round in 0..ROUNDS {
        let (first, second) = spellings(round);
        let body = |name: &str| json!({"username": name, "password": PASSWORD, "claims": {}});
        let (one, two) = (body(&first), body(&second));
        let (a, b) = tokio::join!(
            call(&c, &tokens[0], 0, Method::POST, "/User", &one),
            call(&c, &tokens[1], 1, Method::POST, "/User", &two),
        );
        let (a, b) = (a?, b?);
        anyhow::ensure!(
            one_won(&a, &b, 201),
            "round {round}: {first:?} and {second:?} gave {a:?} and {b:?}"
        );
        let winner = if a.0 == 201 { &a.1 } else { &b.1 };
        let sub = winner["sub"].as_str().context("sub")?;
        // Both issuers resolve either spelling to the winner (the other once it applied
        // the event).
        for (i, token) in tokens.iter().enumerate() {
            for name in [&first, &second] {
                let path = format!("/User?username={}", urlencode(name));
                eventually(Duration::from_secs(10), || async {
                    let (status, found) = call(&c, token, i, Method::GET, &path, &Value::Null)
                        .await
                        .ok()?;
                    (status == 200 && found[0]["sub"] == sub && found[1].is_null()).then_some(())
                })
                .await
                .with_context(|| format!("round {round}: {name:?} at issuer {i}"))?;
            }
        }
    }

    // Renames: two users take one new name at once.
    for round in 0..ROUNDS {
        let mut subs = Vec::new();
        for (i, who) in ["left", "right"].iter().enumerate() {
            let (status, user) = call(
                &c,
                &tokens[i],
                i,
                Method::POST,
                "/User",
                &json!({"username": format!("{who}{round}"), "password": PASSWORD}),
            )
            .await?;
            anyhow::ensure!(status == 201, "{status} {user}");
            subs.push(user["sub"].as_str().context("sub")?.to_owned());
        }
        let (first, second) = spellings(round + 100);
        let body = |name: &str| json!({"username": name, "claims": {}});
        let (one, two) = (body(&first), body(&second));
        let (left, right) = (format!("/User/{}", subs[0]), format!("/User/{}", subs[1]));
        let (a, b) = tokio::join!(
            call(&c, &tokens[0], 0, Method::PUT, &left, &one),
            call(&c, &tokens[1], 1, Method::PUT, &right, &two),
        );
        let (a, b) = (a?, b?);
        anyhow::ensure!(
            one_won(&a, &b, 200),
            "rename round {round}: {first:?} and {second:?} gave {a:?} and {b:?}"
        );
        // The winner's old name is free again: a new user takes it at the other issuer.
        let (winner, old) = if a.0 == 200 {
            (0, "left")
        } else {
            (1, "right")
        };
        let (status, body) = call(
            &c,
            &tokens[1 - winner],
            1 - winner,
            Method::POST,
            "/User",
            &json!({"username": format!("{old}{round}"), "password": PASSWORD}),
        )
        .await?;
        anyhow::ensure!(
            status == 201,
            "old name {old}{round} not freed: {status} {body}"
        );
    }

    // A deleted user's name is free again, at the other issuer too.
    let (status, user) = call(
        &c,
        &tokens[0],
        0,
        Method::POST,
        "/User",
        &json!({"username": "leaver", "password": PASSWORD}),
    )
    .await?;
    anyhow::ensure!(status == 201, "{status} {user}");
    let sub = user["sub"].as_str().context("sub")?;
    let (status, _) = c
        .admin_call(0, Method::DELETE, &format!("/User/{sub}"), None)
        .await?;
    anyhow::ensure!(status == 204, "delete: {status}");
    let (status, user) = call(
        &c,
        &tokens[1],
        1,
        Method::POST,
        "/User",
        &json!({"username": "Leaver", "password": PASSWORD}),
    )
    .await?;
    anyhow::ensure!(status == 201, "{status} {user}");
    Ok(())
}
