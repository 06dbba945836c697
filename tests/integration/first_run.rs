//! A newcomer's first run (issue 20): the issuer follows `--listen`, the redirect-URI
//! policy, a taken port that leaves nothing behind, readable unknown-field errors, a
//! walkthrough that fails loudly, and a README and test command that set expectations.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::{
    eventually, free_port, signet_bin, verify_jwt, with_log_filter, Serve, ServeOptions,
};
use tokio::io::AsyncReadExt;

const WALKTHROUGH_SECRET: &str = "walkthrough-admin-secret-0123456789";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

fn readme() -> String {
    std::fs::read_to_string(repo_root().join("README.md")).expect("README.md")
}

/// Runs `signet serve <args>` that is expected to exit on its own; its status and stderr.
async fn serve_until_exit(args: &[String]) -> anyhow::Result<(std::process::ExitStatus, String)> {
    let mut child = tokio::process::Command::new(signet_bin())
        .arg("serve")
        .args(args)
        .env_remove("SIGNET_ADMIN_CLIENT_SECRET")
        .env("SIGNET_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stderr = String::new();
    let mut pipe = child.stderr.take().expect("stderr");
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        pipe.read_to_string(&mut stderr).await?;
        child.wait().await
    })
    .await??;
    Ok((status, stderr))
}

/// Item 1: without `--issuer` the issuer is the public listen address, in discovery, in
/// tokens and in the ready line (which prints addresses plainly, item 7); the data
/// directory's creation is announced with its absolute path (item 3).
#[tokio::test]
async fn the_issuer_follows_listen_and_the_ready_line_is_plain() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("fresh").join("data");
    let opts = ServeOptions {
        omit_issuer: true,
        capture_logs: true,
        ..Default::default()
    };
    let s = with_log_filter("info", Serve::start(&data, opts)).await?;
    let d: Value = s
        .http()
        .get(format!("{}/.well-known/openid-configuration", s.public))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(d["issuer"], s.public.as_str());
    assert_eq!(d["token_endpoint"], format!("{}/oauth2/token", s.public));
    let token = s.admin_token().await?;
    let claims = verify_jwt(&token, &s.jwks().await?, &s.public, "signet")?;
    assert_eq!(claims["iss"], s.public.as_str());

    let (public_port, admin_port) = s.options.ports.expect("ports");
    let logs = eventually(Duration::from_secs(10), || {
        let logs = s.logs();
        async move { logs.contains("signet serve is ready").then_some(logs) }
    })
    .await?;
    let ready = logs
        .lines()
        .find(|l| l.contains("signet serve is ready"))
        .unwrap_or_default();
    assert!(
        ready.contains(&format!("issuer=http://127.0.0.1:{public_port}"))
            && ready.contains(&format!("public=127.0.0.1:{public_port}"))
            && ready.contains(&format!("admin=127.0.0.1:{admin_port}"))
            && !ready.contains("Some("),
        "{ready}"
    );
    let absolute = data.canonicalize()?;
    assert!(
        logs.lines()
            .any(|l| l.contains("created the data directory")
                && l.contains(&absolute.display().to_string())),
        "{logs}"
    );
    // Nothing announces a directory that already exists.
    s.stop().await?;
    let again = ServeOptions {
        omit_issuer: true,
        capture_logs: true,
        ports: Some((public_port, admin_port)),
        ..Default::default()
    };
    let s = with_log_filter("info", Serve::start(&data, again)).await?;
    assert!(!s.logs().contains("created the data directory"));
    s.stop().await?;
    Ok(())
}

/// Item 1: an explicit loopback issuer on another port than `--listen` gets one warning.
#[tokio::test]
async fn a_loopback_issuer_on_another_port_is_warned_about() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (public, other) = (free_port(), free_port());
    // Serve::start waits on <issuer>/readyz, which is nobody here: start the node directly.
    let data = dir.path().join("d2");
    let mut child = tokio::process::Command::new(signet_bin())
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--issuer", &format!("http://127.0.0.1:{other}")])
        .args(["--listen", &format!("127.0.0.1:{public}")])
        .args(["--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .env_remove("SIGNET_ADMIN_CLIENT_SECRET")
        .env("SIGNET_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stderr = child.stderr.take().expect("stderr");
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(60), || {
        let r = http.get(format!("http://127.0.0.1:{public}/readyz")).send();
        async move { r.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
    })
    .await?;
    // Start-up logs are a few lines: the pipe holds them until the node is gone.
    child.start_kill()?;
    let mut logs = String::new();
    stderr.read_to_string(&mut logs).await?;
    child.wait().await?;
    let warnings: Vec<_> = logs
        .lines()
        .filter(|l| l.contains("does not listen on"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(
        warnings[0].contains(&format!("127.0.0.1:{other}"))
            && warnings[0].contains(&format!("127.0.0.1:{public}")),
        "{logs}"
    );
    Ok(())
}

fn client_body(id: &str, redirects: Value) -> Value {
    json!({"clientId": id, "allowedGrantTypes": ["authorization_code"],
        "requireClientSecret": false, "redirectUris": redirects, "allowedScopes": ["openid"]})
}

/// Item 2: every refused redirect URI gets a 400 naming `redirectUris[i]` and the rule;
/// loopback and private-use URIs are accepted, and a loopback IP redirect URI matches any
/// port at the authorization endpoint (RFC 8252 section 7.3) while others match exactly.
#[tokio::test]
async fn redirect_uris_follow_the_policy() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let opts = ServeOptions {
        capture_logs: true,
        ..Default::default()
    };
    let s = Serve::start(dir.path(), opts).await?;
    let (status, body) = s
        .admin_call(
            Method::POST,
            "/Client",
            Some(&client_body(
                "web",
                json!([
                    "https://app.example.com/cb",
                    "http://app.example.com/callback",
                    "ftp://files.example.com/cb",
                    "javascript://app.example.com/%0Aalert(1)"
                ]),
            )),
        )
        .await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_body");
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    let fields: Vec<_> = errors.iter().map(|e| e["field"].as_str()).collect();
    assert_eq!(
        fields,
        vec![
            Some("redirectUris[1]"),
            Some("redirectUris[2]"),
            Some("redirectUris[3]")
        ],
        "{body}"
    );
    assert!(errors[0]["rule"]
        .as_str()
        .unwrap_or("")
        .contains("loopback"));
    assert!(errors[1]["rule"]
        .as_str()
        .unwrap_or("")
        .contains("\"ftp:\""));
    assert!(errors[2]["rule"]
        .as_str()
        .unwrap_or("")
        .contains("never allowed"));
    // The same rules for postLogoutRedirectUris.
    let mut body = client_body("web", json!(["https://app.example.com/cb"]));
    body["postLogoutRedirectUris"] = json!(["https://app.example.com/", "http://app.example.com/"]);
    let (status, answer) = s.admin_call(Method::POST, "/Client", Some(&body)).await?;
    assert_eq!(status, 400);
    assert_eq!(answer["field"], "postLogoutRedirectUris[1]", "{answer}");
    // Nothing was written.
    let (status, _) = s.admin_call(Method::GET, "/Client/web", None).await?;
    assert_eq!(status, 404);

    s.create(
        "/Client",
        client_body(
            "native",
            json!([
                "http://127.0.0.1/cb",
                "http://[::1]/cb",
                "http://localhost:3000/cb",
                "com.example.app:/oauth2redirect"
            ]),
        ),
    )
    .await?;
    // localhost is accepted, with a warning: the name may resolve elsewhere.
    assert!(
        s.logs().contains("redirect_uri=http://localhost:3000/cb"),
        "{}",
        s.logs()
    );
    let authorize = |redirect: &str| {
        let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.issuer)).unwrap();
        u.query_pairs_mut()
            .append_pair("client_id", "native")
            .append_pair("redirect_uri", redirect)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid")
            .append_pair("state", "st")
            .append_pair("nonce", "n")
            .append_pair(
                "code_challenge",
                "mUC84QHW1XnmFGk31dqlZ81-q8-qS-OxrweG_XEDeIU",
            )
            .append_pair("code_challenge_method", "S256")
            .append_pair("prompt", "none");
        s.http().get(u.to_string()).send()
    };
    // prompt=none without a session answers at the redirect URI: the one requested, port
    // included.
    let r = authorize("http://127.0.0.1:54321/cb").await?;
    let location = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        location.starts_with("http://127.0.0.1:54321/cb?") && location.contains("login_required"),
        "{} {location}",
        r.status()
    );
    let r = authorize("http://[::1]:8/cb").await?;
    assert!(r.status().is_redirection(), "{}", r.status());
    for unregistered in [
        "http://127.0.0.1:54321/cb/other",
        "http://localhost:3001/cb",
        "com.example.app:/other",
    ] {
        let r = authorize(unregistered).await?;
        assert_eq!(r.status(), 400, "{unregistered}");
        assert!(r.headers().get("location").is_none(), "{unregistered}");
    }
    s.stop().await?;

    // The development flag accepts plain http anywhere, still never javascript:, and says
    // so at start.
    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            extra_args: vec!["--insecure-allow-any-redirect-uri".into()],
            capture_logs: true,
            ..Default::default()
        },
    )
    .await?;
    s.create(
        "/Client",
        client_body("dev", json!(["http://app.example.com/callback"])),
    )
    .await?;
    let (status, body) = s
        .admin_call(
            Method::POST,
            "/Client",
            Some(&client_body(
                "bad",
                json!(["javascript://app.example.com/%0Aalert(1)"]),
            )),
        )
        .await?;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("redirectUris[0]"))
    );
    assert!(
        s.logs().contains("--insecure-allow-any-redirect-uri is on"),
        "{}",
        s.logs()
    );
    s.stop().await?;
    Ok(())
}

/// Item 3: a taken port fails the start with the address, exits non-zero, and leaves no
/// data directory, KEK or keys behind.
#[tokio::test]
async fn a_taken_port_fails_before_anything_is_written() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let taken_addr = taken.local_addr()?.to_string();
    for (flag, other) in [
        ("--listen", "--admin-listen"),
        ("--admin-listen", "--listen"),
    ] {
        let data = dir.path().join("typo").join("data");
        let (status, stderr) = serve_until_exit(&[
            "--data-dir".into(),
            data.display().to_string(),
            flag.into(),
            taken_addr.clone(),
            other.into(),
            format!("127.0.0.1:{}", free_port()),
        ])
        .await?;
        assert!(!status.success(), "{flag}: {status:?} {stderr}");
        assert!(
            stderr.contains(&format!("cannot listen on {taken_addr} ({flag})")),
            "{stderr}"
        );
        assert!(!dir.path().join("typo").exists(), "{flag}: files were left");
    }
    drop(taken);
    Ok(())
}

/// Item 4: a typo in a member name answers one short rule with the closest member.
#[tokio::test]
async fn an_unknown_field_names_the_closest_known_one() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let token = s.admin_token().await?;
    let resp = s
        .http()
        .post(format!("{}/Client", s.admin))
        .bearer_auth(token)
        .json(&json!({"clientId": "backend", "allowedGrantType": ["client_credentials"]}))
        .send()
        .await?;
    assert_eq!(resp.status(), 400);
    let text = resp.text().await?;
    assert!(text.len() < 600, "{} bytes: {text}", text.len());
    let body: Value = serde_json::from_str(&text)?;
    assert_eq!(body["error"], "invalid_body");
    assert_eq!(body["field"], "allowedGrantType");
    assert_eq!(body["errors"][0]["field"], "allowedGrantType");
    assert_eq!(
        body["errors"][0]["rule"],
        "unknown field `allowedGrantType`, did you mean \"allowedGrantTypes\"?"
    );
    s.stop().await?;
    Ok(())
}

/// The README code block that contains `needle`, with the default ports replaced by `s`'s.
fn readme_block(s: &Serve, needle: &str) -> String {
    let readme = readme();
    let block = readme
        .split("```")
        .skip(1)
        .step_by(2)
        .find(|b| b.contains(needle))
        .unwrap_or_else(|| panic!("no README code block with {needle:?}"));
    let (public, admin) = s.options.ports.expect("ports");
    block
        .trim_start_matches("sh")
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{public}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{admin}"))
}

/// Runs shell commands with `set -e`, as a script of the walkthrough would.
async fn sh(script: &str) -> anyhow::Result<std::process::Output> {
    Ok(tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .output()
        .await?)
}

/// Item 5: the README walkthrough stops at its first error (a wrong admin secret fails the
/// token step, not three steps later), and a bearer value that is no token is told so.
#[tokio::test]
async fn the_walkthrough_fails_loudly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            admin_secret: Some("not-the-walkthrough-secret-0123456789".into()),
            ..Default::default()
        },
    )
    .await?;
    let token_step = readme_block(&s, "ADMIN_TOKEN=$(");
    let register_step = readme_block(&s, "/admin/v1/Resource/ApiScope");
    let out = sh(&format!("{token_step}\n{register_step}")).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    let (status, _) = s
        .admin_call(Method::GET, "/Resource/ApiScope/orders.read", None)
        .await?;
    assert_eq!(status, 404, "nothing after the failed step ran");

    // What the old walkthrough sent: the token endpoint's error JSON as a bearer token.
    for (bearer, says) in [
        (
            r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
            "not a token at all but JSON",
        ),
        ("null", "not a token at all"),
        (
            "eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
            "the access token is invalid",
        ),
    ] {
        let resp = s
            .http()
            .get(format!("{}/Client", s.admin))
            .header("authorization", format!("Bearer {bearer}"))
            .send()
            .await?;
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await?;
        assert!(
            body["error_description"]
                .as_str()
                .unwrap_or("")
                .contains(says),
            "{bearer}: {body}"
        );
    }
    s.stop().await?;

    // With the right secret the same commands go through.
    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            admin_secret: Some(WALKTHROUGH_SECRET.into()),
            ..Default::default()
        },
    )
    .await?;
    let token_step = readme_block(&s, "ADMIN_TOKEN=$(");
    let register_step = readme_block(&s, "/admin/v1/Resource/ApiScope");
    let backend_step = readme_block(&s, "\nTOKEN=$(curl");
    let out = sh(&format!(
        "{token_step}\n{register_step}\n{backend_step}\ntest -n \"$TOKEN\""
    ))
    .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, _) = s.admin_call(Method::GET, "/Client/backend", None).await?;
    assert_eq!(status, 200);
    s.stop().await?;
    Ok(())
}

/// Items 6 and 7: the README says what the first build costs and what the test command
/// installs; the test command installs quietly; test nodes do not log the KEK warning every
/// fresh node gives (so a real warning stands out).
#[tokio::test]
async fn readme_and_test_command_set_expectations_quietly() -> anyhow::Result<()> {
    let readme = readme().split_whitespace().collect::<Vec<_>>().join(" ");
    for expectation in [
        "about ten minutes on two cores",
        "cargo install --path services/signet",
        "python3 -m venv",
        "Redis",
        "Chromium",
        "chromedriver",
        "wrk",
        "HAProxy",
        "nats-server",
        "root",
        "--insecure-allow-any-redirect-uri",
    ] {
        assert!(readme.contains(expectation), "README lacks {expectation:?}");
    }
    let script = std::fs::read_to_string(repo_root().join("scripts/test.sh"))?;
    let installs: Vec<_> = script
        .lines()
        .filter(|l| l.contains("apt-get install") || l.contains("apt-get update"))
        .collect();
    assert!(!installs.is_empty());
    for line in installs {
        assert!(line.contains("-qq"), "not quiet: {line}");
        if line.contains("apt-get install") {
            assert!(line.contains("Dpkg::Use-Pty=0"), "progress bars: {line}");
        }
    }

    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            capture_logs: true,
            ..Default::default()
        },
    )
    .await?;
    s.admin_token().await?;
    let logs = s.logs();
    assert!(!logs.contains("key-encryption key"), "{logs}");
    s.stop().await?;
    Ok(())
}
