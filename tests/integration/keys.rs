//! Key administration against a real `signet serve`: list the keys, rotate one (the old key
//! retires and still verifies the tokens it signed, new tokens carry the new kid), revoke a
//! key (gone from the JWKS at once, its tokens stop verifying), import a PEM key (it signs
//! the next tokens); bad input is a 400 naming the member and never echoes a PEM. Then the
//! same through `signet admin key`.

use reqwest::Method;
use serde_json::{json, Value};
use signet_jose::Algorithm;
use signet_tests::{verify_jwt, with_log_filter, Serve, ServeOptions};

use crate::admin_cli::Admin;

const SECRET: &str = "keys-backend-secret-0123456789";

/// A scope, an API resource restricted to `alg`, and a backend client for it; returns the
/// client id (the audience is `<prefix>-api`).
async fn backend_for(s: &Serve, prefix: &str, alg: &str) -> anyhow::Result<String> {
    let scope = format!("{prefix}.read");
    s.create("/Resource/ApiScope", json!({"name": scope}))
        .await?;
    s.create(
        "/Resource/ApiResource",
        json!({
            "name": format!("{prefix}-api"),
            "scopes": [scope],
            "allowedAccessTokenSigningAlgorithms": [alg],
        }),
    )
    .await?;
    let client = format!("{prefix}-backend");
    s.create(
        "/Client",
        json!({
            "clientId": client,
            "allowedGrantTypes": ["client_credentials"],
            "clientSecrets": [{"value": SECRET}],
            "allowedScopes": [scope],
        }),
    )
    .await?;
    Ok(client)
}

/// A `client_credentials` token of `client` and the kid in its header.
async fn token(s: &Serve, client: &str) -> anyhow::Result<(String, String)> {
    let (status, _, body) = s
        .token_request(
            Some((client, SECRET)),
            &[("grant_type", "client_credentials")],
        )
        .await?;
    anyhow::ensure!(status == 200, "token for {client}: {status} {body}");
    let token = body["access_token"].as_str().unwrap_or_default().to_owned();
    let kid = jsonwebtoken::decode_header(&token)?.kid.unwrap_or_default();
    Ok((token, kid))
}

async fn keys(s: &Serve) -> anyhow::Result<Vec<Value>> {
    let (status, body) = s.admin_call(Method::GET, "/Key", None).await?;
    assert_eq!(status, 200, "{body}");
    Ok(body.as_array().expect("a list").clone())
}

fn find<'a>(keys: &'a [Value], kid: &str) -> Option<&'a Value> {
    keys.iter().find(|k| k["kid"] == kid)
}

fn active_kid(keys: &[Value], alg: &str) -> String {
    let active: Vec<&Value> = keys
        .iter()
        .filter(|k| k["alg"] == alg && k["state"] == "active")
        .collect();
    assert_eq!(active.len(), 1, "one active {alg} key: {keys:?}");
    active[0]["kid"].as_str().unwrap().to_owned()
}

async fn jwks_kids(s: &Serve) -> anyhow::Result<Vec<String>> {
    let jwks = s.jwks().await?;
    Ok(jwks
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect())
}

/// A new private key for `alg` as a PKCS#8 PEM document.
fn pkcs8_pem(alg: Algorithm) -> String {
    let der = signet_jose::generate_pkcs8(alg).expect("generate");
    pem::encode(&pem::Pem::new("PRIVATE KEY", der))
}

/// The base64 body of a PEM (what must never show in an answer or a log line).
fn pem_body(pem_text: &str) -> String {
    pem_text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("")
}

#[tokio::test]
async fn rotate_revoke_and_import_through_the_admin_api() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = with_log_filter(
        "trace",
        Serve::start(
            dir.path(),
            ServeOptions {
                capture_logs: true,
                ..ServeOptions::default()
            },
        ),
    )
    .await?;

    // Four keys, one active per algorithm, public data only.
    let before = keys(&s).await?;
    assert_eq!(before.len(), 4, "{before:?}");
    for alg in ["RS256", "PS256", "ES256", "EdDSA"] {
        active_kid(&before, alg);
    }
    for k in &before {
        for member in [
            "kid",
            "alg",
            "state",
            "publishedAt",
            "activatedAt",
            "retiredAt",
            "jwk",
        ] {
            assert!(k.get(member).is_some(), "{member} in {k}");
        }
        assert_eq!(k["jwk"]["kid"], k["kid"]);
        assert!(k["activatedAt"].as_i64().is_some() && k["retiredAt"].is_null());
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(k["jwk"].get(private).is_none(), "private {private}: {k}");
        }
    }
    let old_es = active_kid(&before, "ES256");
    let (status, one) = s
        .admin_call(Method::GET, &format!("/Key/{old_es}"), None)
        .await?;
    assert_eq!((status, &one), (200, find(&before, &old_es).unwrap()));
    let (status, body) = s.admin_call(Method::GET, "/Key/es256-nope", None).await?;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));

    // An ES256-only API: its tokens are signed by the active ES256 key.
    let client = backend_for(&s, "ledger", "ES256").await?;
    let (before_rotation, kid) = token(&s, &client).await?;
    assert_eq!(kid, old_es);

    // Rotate: 201 with the new kid, active at once; the old key retires and stays in the
    // JWKS, so the token it signed still verifies.
    let token_admin = s.admin_token().await?;
    let resp = s
        .http()
        .post(format!("{}/Key/rotate", s.admin))
        .bearer_auth(&token_admin)
        .json(&json!({"alg": "ES256"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str()?.to_owned();
    let rotated: Value = resp.json().await?;
    let new_es = rotated["kid"].as_str().expect("kid").to_owned();
    assert_eq!(rotated, json!({"kid": new_es, "alg": "ES256"}));
    assert_ne!(new_es, old_es);
    assert_eq!(location, format!("/admin/v1/Key/{new_es}"));
    let after = keys(&s).await?;
    assert_eq!(active_kid(&after, "ES256"), new_es);
    let old = find(&after, &old_es).expect("the old key is listed");
    assert_eq!(old["state"], "retired", "{old}");
    assert!(old["retiredAt"].as_i64().is_some(), "{old}");
    for alg in ["RS256", "PS256", "EdDSA"] {
        assert_eq!(active_kid(&after, alg), active_kid(&before, alg), "{alg}");
    }
    let kids = jwks_kids(&s).await?;
    assert!(kids.contains(&old_es) && kids.contains(&new_es), "{kids:?}");
    let jwks = s.jwks().await?;
    verify_jwt(&before_rotation, &jwks, &s.issuer, "ledger-api")?;
    let (after_rotation, kid) = token(&s, &client).await?;
    assert_eq!(kid, new_es, "new tokens use the new key");
    verify_jwt(&after_rotation, &jwks, &s.issuer, "ledger-api")?;

    // Bad rotations name `alg`.
    for body in [
        json!({"alg": "HS256"}),
        json!({"alg": "none"}),
        json!({}),
        json!({"alg": 256}),
    ] {
        let (status, err) = s
            .admin_call(Method::POST, "/Key/rotate", Some(&body))
            .await?;
        assert_eq!(
            (status, err["field"].as_str()),
            (400, Some("alg")),
            "{body}: {err}"
        );
    }

    // Revoke the retired key: gone from the JWKS at once, and the token it signed no
    // longer verifies against the served JWKS.
    let (status, body) = s
        .admin_call(Method::DELETE, &format!("/Key/{old_es}"), None)
        .await?;
    assert_eq!(status, 204, "{body}");
    assert!(!jwks_kids(&s).await?.contains(&old_es));
    let (status, _) = s
        .admin_call(Method::GET, &format!("/Key/{old_es}"), None)
        .await?;
    assert_eq!(status, 404);
    let jwks = s.jwks().await?;
    let err = verify_jwt(&before_rotation, &jwks, &s.issuer, "ledger-api")
        .expect_err("a token of a revoked key must not verify");
    assert!(err.to_string().contains("kid not in the JWKS"), "{err}");
    verify_jwt(&after_rotation, &jwks, &s.issuer, "ledger-api")?;
    // Unknown (and already revoked) kids are 404.
    for kid in ["es256-unknown", old_es.as_str()] {
        let (status, body) = s
            .admin_call(Method::DELETE, &format!("/Key/{kid}"), None)
            .await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("not_found")),
            "{kid}"
        );
    }

    // Import an EdDSA key: it becomes the active EdDSA key; tokens carry its kid and verify.
    let old_ed = active_kid(&after, "EdDSA");
    let pem_text = pkcs8_pem(Algorithm::EdDSA);
    let resp = s
        .http()
        .post(format!("{}/Key/import", s.admin))
        .bearer_auth(s.admin_token().await?)
        .json(&json!({"alg": "EdDSA", "pem": pem_text}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let imported: Value = resp.json().await?;
    assert_eq!(imported["alg"], "EdDSA");
    let new_ed = imported["kid"].as_str().expect("kid").to_owned();
    let listed = keys(&s).await?;
    assert_eq!(active_kid(&listed, "EdDSA"), new_ed);
    assert_eq!(find(&listed, &old_ed).unwrap()["state"], "retired");
    let ed_client = backend_for(&s, "edge", "EdDSA").await?;
    let (ed_token, kid) = token(&s, &ed_client).await?;
    assert_eq!(kid, new_ed);
    verify_jwt(&ed_token, &s.jwks().await?, &s.issuer, "edge-api")?;

    // Bad PEMs are a 400 naming `pem`, and the answer never echoes the PEM.
    let es_pem = pkcs8_pem(Algorithm::ES256);
    let truncated = pem_text.replace(&pem_body(&pem_text)[..20], "");
    for (alg, bad) in [
        ("RS256", es_pem.as_str()),
        ("EdDSA", "not a pem at all"),
        ("EdDSA", truncated.as_str()),
        (
            "ES256",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        ),
    ] {
        let body = json!({"alg": alg, "pem": bad});
        let (status, err) = s
            .admin_call(Method::POST, "/Key/import", Some(&body))
            .await?;
        assert_eq!((status, err["field"].as_str()), (400, Some("pem")), "{err}");
        let text = err.to_string();
        for secret in [pem_body(&es_pem), pem_body(&truncated), "MIIB".to_owned()] {
            assert!(!text.contains(&secret), "the PEM is echoed: {text}");
        }
    }
    let (status, err) = s
        .admin_call(
            Method::POST,
            "/Key/import",
            Some(&json!({"alg": "EdDSA", "pem": pem_text, "extra": 1})),
        )
        .await?;
    assert_eq!((status, err["field"].as_str()), (400, Some("extra")));
    assert!(!err.to_string().contains(&pem_body(&pem_text)), "{err}");
    // The refused imports changed nothing.
    assert_eq!(keys(&s).await?, listed);

    // Neither PEM reached a log line, even at trace level.
    let logs = s.logs();
    assert!(!logs.is_empty(), "logs were captured");
    for p in [&pem_text, &es_pem] {
        assert!(!logs.contains(&pem_body(p)), "a PEM reached the logs");
    }
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn the_cli_lists_rotates_imports_and_revokes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(&dir.path().join("data"), ServeOptions::default()).await?;
    let admin = Admin::for_node(&s);

    // A table of the four keys: KID ALG STATE ACTIVATED.
    let out = admin.run(&["key", "list"]).await;
    let table = out.ok().to_owned();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["KID", "ALG", "STATE", "ACTIVATED"]);
    for k in keys(&s).await? {
        let kid = k["kid"].as_str().unwrap();
        let row = lines
            .iter()
            .find(|l| l.starts_with(kid))
            .unwrap_or_else(|| panic!("{kid} in\n{table}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1..3], [k["alg"].as_str().unwrap(), "active"], "{row}");
        assert!(cells[3].ends_with('Z') && cells[3].contains('T'), "{row}");
    }
    let out = admin.run(&["-o", "json", "key", "list"]).await;
    let listed: Value = serde_json::from_str(out.ok())?;
    assert_eq!(listed.as_array().map(Vec::len), Some(4));
    let old_es = active_kid(listed.as_array().unwrap(), "ES256");

    // Rotate.
    let out = admin.run(&["key", "rotate", "--alg", "ES256"]).await;
    let line = out.ok().trim().to_owned();
    let new_es = active_kid(&keys(&s).await?, "ES256");
    assert_ne!(new_es, old_es);
    assert_eq!(line, format!("key/{new_es} created (the active ES256 key)"));
    let out = admin.run(&["key", "get", &old_es]).await;
    assert!(
        out.ok().lines().nth(1).unwrap().contains(" retired "),
        "{out:#?}"
    );
    let out = admin.run(&["key", "get", &new_es, "-o", "json"]).await;
    let got: Value = serde_json::from_str(out.ok())?;
    assert_eq!(
        (got["kid"].as_str(), got["state"].as_str()),
        (Some(new_es.as_str()), Some("active"))
    );
    let out = admin
        .run(&["-o", "json", "key", "rotate", "--alg", "RS256"])
        .await;
    let rotated: Value = serde_json::from_str(out.ok())?;
    assert_eq!(rotated["alg"], "RS256");

    // Import from a file; the PEM is never printed.
    let pem_text = pkcs8_pem(Algorithm::EdDSA);
    let pem_path = dir.path().join("edge.pem");
    std::fs::write(&pem_path, &pem_text)?;
    let out = admin
        .run(&[
            "key",
            "import",
            "--alg",
            "EdDSA",
            "-f",
            pem_path.to_str().unwrap(),
        ])
        .await;
    let line = out.ok().trim().to_owned();
    let new_ed = active_kid(&keys(&s).await?, "EdDSA");
    assert_eq!(
        line,
        format!("key/{new_ed} imported (the active EdDSA key)")
    );
    assert!(!out.stderr.contains(&pem_body(&pem_text)));
    // A PEM the server refuses: exit 1, one line naming `pem`, no PEM in it.
    let es_path = dir.path().join("es.pem");
    let es_pem = pkcs8_pem(Algorithm::ES256);
    std::fs::write(&es_path, &es_pem)?;
    let out = admin
        .run(&[
            "key",
            "import",
            "--alg",
            "RS256",
            "-f",
            es_path.to_str().unwrap(),
        ])
        .await;
    let line = out.one_line(1);
    assert!(line.contains("pem:"), "{line}");
    assert!(!out.stderr.contains(&pem_body(&es_pem)) && !out.stdout.contains(&pem_body(&es_pem)));

    // Revoke: the retired key goes; an unknown kid is exit 5.
    let out = admin.run(&["key", "revoke", &old_es]).await;
    assert_eq!(out.ok().trim(), format!("key/{old_es} revoked"));
    assert!(!jwks_kids(&s).await?.contains(&old_es));
    let out = admin.run(&["key", "revoke", "es256-unknown"]).await;
    let line = out.one_line(5);
    assert!(line.contains("key/es256-unknown not found"), "{line}");
    let out = admin.run(&["key", "get", "es256-unknown"]).await;
    out.one_line(5);

    // Usage errors send nothing: exit 2.
    let out = admin.run(&["key", "rotate", "--alg", "HS256"]).await;
    assert_eq!(out.code, 2, "{out:#?}");
    let out = admin
        .run(&[
            "key",
            "import",
            "--alg",
            "EdDSA",
            "-f",
            "/nonexistent/key.pem",
        ])
        .await;
    out.one_line(2);
    s.stop().await?;
    Ok(())
}
