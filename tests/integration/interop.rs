//! Interoperability with widely used relying-party libraries (issue 18): openid-client
//! (Node, `tests/interop/node/openid_client.mjs`) and Authlib (Python,
//! `tests/interop/authlib_client.py`) each discover a real `signet serve`, run the code flow
//! with PKCE and `offline_access` for a client registered exactly as the reference's
//! real-life client body, redeem the code, refresh, and read `invalid_client` from a
//! refresh with a wrong secret by `client_secret_basic` and by `client_secret_post`.
//!
//! The body (`tests/fixtures/reference-client.json`) is changed only where it must be: a
//! code flow instead of `implicit` (an implicit client never gets refresh tokens), a
//! loopback redirect URI, and a secret to authenticate with. The sign-in itself is this
//! test's `Browser` on the login form; the scripts print the authorization URL and read
//! back the URL the browser was redirected to.
//!
//! Node and the npm modules (`npm ci` in `tests/interop/node`) and Authlib in
//! `target/venv` are installed by `scripts/test.sh`, which exports `NODE_INTEROP_DIR` and
//! `AUTHLIB_PYTHON`; unset, the test looks in those places.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use signet_tests::browser::Browser;
use signet_tests::{verify_jwt, Serve, ServeOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const REFERENCE: &str = include_str!("../fixtures/reference-client.json");
const REDIRECT: &str = "http://127.0.0.1:9/cb";
const SECRET: &str = "interop-secret-0123456789";
const PASSWORD: &str = "correct horse battery staple";
/// One script's whole run, however slow the machine.
const PATIENCE: Duration = Duration::from_secs(120);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

/// The reference's real-life client, changed only where unavoidable.
fn reference_client() -> anyhow::Result<Value> {
    let mut body: Value = serde_json::from_str(REFERENCE)?;
    body["allowedGrantTypes"] = json!(["authorization_code"]);
    body["redirectUris"] = json!([REDIRECT]);
    body["clientSecrets"][0]["value"] = json!(SECRET);
    Ok(body)
}

/// Runs one script: reads its authorization URL, signs in there as `alice`, hands it the
/// redirect, and returns its result line.
async fn run(mut cmd: Command, name: &str) -> anyhow::Result<Value> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {name}"))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let talk = async {
        let first: Value = serde_json::from_str(
            &lines
                .next_line()
                .await?
                .context("the script ended before printing its authorization URL")?,
        )?;
        let url = first["authorize"].as_str().context("authorize")?;
        let page = Browser::new().sign_in(url, "alice", PASSWORD).await?;
        if page.status != 302 {
            bail!("login answered {}: {}", page.status, page.body);
        }
        stdin
            .write_all(format!("{}\n", page.location()?).as_bytes())
            .await?;
        stdin.flush().await?;
        let last = lines
            .next_line()
            .await?
            .context("the script ended without its result")?;
        Ok(serde_json::from_str::<Value>(&last)?)
    };
    let result = tokio::time::timeout(PATIENCE, talk)
        .await
        .with_context(|| format!("{name} took longer than {PATIENCE:?}"))??;
    let status = tokio::time::timeout(PATIENCE, child.wait()).await??;
    if !status.success() {
        bail!("{name} exited with {status}");
    }
    Ok(result)
}

fn script_args(s: &Serve) -> [&str; 5] {
    [
        s.issuer.as_str(),
        "mediaeditorfrontend",
        SECRET,
        REDIRECT,
        "openid profile api1 offline_access",
    ]
}

/// What both libraries must have got: a refresh token that worked, and `invalid_client`
/// read from both failed authentications.
fn check(s: &Serve, jwks: &jsonwebtoken::jwk::JwkSet, r: &Value) -> anyhow::Result<()> {
    let lib = r["library"].as_str().unwrap_or("?");
    assert!(r["refresh_token"].as_str().is_some(), "{lib}: {r}");
    let aud = format!("{}/resources", s.issuer);
    for member in ["access_token", "refreshed_access_token"] {
        let token = r[member].as_str().context(member)?;
        let claims = verify_jwt(token, jwks, &s.issuer, &aud)?;
        assert_eq!(
            claims["client_id"], "mediaeditorfrontend",
            "{lib}: {claims}"
        );
        // includeJwtId: false, as the reference body has it (so a refresh within the
        // same second may well return the same access token).
        assert!(claims.get("jti").is_none(), "{lib}: {claims}");
        // The reference client's claims (alwaysSendClientClaims).
        assert_eq!(claims["mediaportal_user"], "admin", "{lib}: {claims}");
    }
    // refreshTokenUsage: 1 (one time only): the refresh rotated the token.
    assert!(
        r["refreshed_refresh_token"].as_str().is_some(),
        "{lib}: {r}"
    );
    assert_ne!(r["refresh_token"], r["refreshed_refresh_token"], "{lib}");
    eprintln!("{lib}: basic {}, post {}", r["basic"], r["post"]);
    for method in ["basic", "post"] {
        assert_eq!(
            r[method]["error"], "invalid_client",
            "{lib} reads invalid_client from a failed client_secret_{method}: {r}"
        );
    }
    Ok(())
}

async fn setup() -> anyhow::Result<(tempfile::TempDir, Serve)> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    for scope in [
        "identityscope",
        "mediaeditorscope",
        "api1",
        "configportalscope",
    ] {
        s.create("/Resource/ApiScope", json!({"name": scope}))
            .await?;
    }
    s.create("/Client", reference_client()?).await?;
    s.create(
        "/User",
        json!({"username": "alice", "password": PASSWORD, "claims": {"name": "Alice"}}),
    )
    .await?;
    Ok((dir, s))
}

#[tokio::test]
async fn openid_client_gets_refresh_tokens_and_reads_invalid_client() -> anyhow::Result<()> {
    let dir = std::env::var_os("NODE_INTEROP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("tests/interop/node"));
    assert!(
        dir.join("node_modules/openid-client").is_dir(),
        "openid-client is missing in {}: run scripts/test.sh once (it runs `npm ci` there), \
         or set NODE_INTEROP_DIR",
        dir.display()
    );
    let (_dir, s) = setup().await?;
    let mut cmd = Command::new(std::env::var_os("NODE").unwrap_or_else(|| "node".into()));
    cmd.arg(dir.join("openid_client.mjs"))
        .args(script_args(&s))
        .current_dir(&dir);
    let r = run(cmd, "openid_client.mjs").await?;
    check(&s, &s.jwks().await?, &r)?;
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn authlib_gets_refresh_tokens_and_reads_invalid_client() -> anyhow::Result<()> {
    let python = std::env::var_os("AUTHLIB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/venv/bin/python"));
    let has_authlib = std::process::Command::new(&python)
        .args(["-c", "import authlib"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_authlib,
        "Authlib is missing for {}: run scripts/test.sh once (it installs Authlib into \
         target/venv), or set AUTHLIB_PYTHON to a python with Authlib",
        python.display()
    );
    let (_dir, s) = setup().await?;
    let mut cmd = Command::new(&python);
    cmd.arg(workspace_root().join("tests/interop/authlib_client.py"))
        .args(script_args(&s));
    let r = run(cmd, "authlib_client.py").await?;
    check(&s, &s.jwks().await?, &r)?;
    s.stop().await?;
    Ok(())
}
