//! `signet admin`, the CLI over the admin API: the real binary against a real node, as an
//! operator or a script uses it. `apply` creates, leaves alone and replaces (with a dry run
//! that shows the diff and writes nothing); an invalid file writes nothing at all; each kind
//! of failure has its exit code and one line on stderr.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use signet_tests::{free_port, signet_bin, Serve, ServeOptions};
use tokio::io::AsyncWriteExt;

/// What one `signet admin ...` run printed and returned.
#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Out {
    pub(crate) fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "{self:#?}");
        &self.stdout
    }

    /// A failure: this exit code, and exactly one line on stderr, which it returns.
    pub(crate) fn one_line(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "{self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {self:#?}");
        assert!(lines[0].starts_with("signet admin: "), "{self:#?}");
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        lines[0]
    }
}

/// Runs the CLI against a node with the admin URL, issuer and secret in the environment.
pub(crate) struct Admin {
    env: Vec<(&'static str, String)>,
}

impl Admin {
    pub(crate) fn for_node(s: &Serve) -> Admin {
        let (_, admin_port) = s.options.ports.expect("ports");
        Admin {
            env: vec![
                ("SIGNET_ADMIN_URL", format!("http://127.0.0.1:{admin_port}")),
                ("SIGNET_ISSUER", s.issuer.clone()),
                ("SIGNET_ADMIN_CLIENT_SECRET", s.admin_secret.clone()),
            ],
        }
    }

    /// The same, with one variable changed (or removed with `None`).
    fn with(&self, key: &'static str, value: Option<&str>) -> Admin {
        let mut env: Vec<_> = self
            .env
            .iter()
            .filter(|(k, _)| *k != key)
            .cloned()
            .collect();
        if let Some(v) = value {
            env.push((key, v.to_owned()));
        }
        Admin { env }
    }

    pub(crate) async fn run(&self, args: &[&str]) -> Out {
        self.run_stdin(args, None).await
    }

    pub(crate) async fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = self.command(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().expect("spawn signet admin");
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).await.expect("write stdin");
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("signet admin finished within 60s")
            .expect("signet admin ran");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `signet admin <args>` with this environment only, output piped, not yet started.
    pub(crate) fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(signet_bin());
        cmd.arg("admin").args(args);
        for var in [
            "SIGNET_ADMIN_URL",
            "SIGNET_ADMIN_TOKEN_URL",
            "SIGNET_ISSUER",
            "SIGNET_ADMIN_CLIENT_ID",
            "SIGNET_ADMIN_CLIENT_SECRET",
            "SIGNET_CONFIG",
            "SIGNET_LOG_FORMAT",
            "SIGNET_OTLP_ENDPOINT",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("SIGNET_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// Everything the admin API lists, to show that a failed command wrote nothing.
async fn snapshot(s: &Serve) -> anyhow::Result<Vec<Value>> {
    let mut all = Vec::new();
    for path in [
        "/Client",
        "/Resource/ApiResource",
        "/Resource/ApiScope",
        "/Resource/IdentityResource",
    ] {
        let (status, body) = s.admin_call(Method::GET, path, None).await?;
        assert_eq!(status, 200, "{body}");
        all.push(body);
    }
    Ok(all)
}

async fn get(s: &Serve, path: &str) -> anyhow::Result<Value> {
    let (status, body) = s.admin_call(Method::GET, path, None).await?;
    assert_eq!(status, 200, "{path}: {body}");
    Ok(body)
}

async fn token_status(s: &Serve, id: &str, secret: &str) -> anyhow::Result<u16> {
    let (status, _, _) = s
        .token_request(Some((id, secret)), &[("grant_type", "client_credentials")])
        .await?;
    Ok(status)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path.display().to_string()
}

/// Two scopes, one API resource, three clients: a list, then a second YAML document.
const PLATFORM: &str = "\
# The orders platform.
- kind: ApiScope
  spec: {name: orders.read, displayName: Read orders}
- kind: ApiScope
  spec: {name: orders.write}
- kind: ApiResource
  spec:
    name: orders-api
    scopes: [orders.read, orders.write]
    allowedAccessTokenSigningAlgorithms: [ES256]
---
- kind: Client
  spec:
    clientId: backend
    clientName: Order backend
    allowedGrantTypes: [client_credentials]
    clientSecrets: [{value: backend-secret-0123456789}]
    allowedScopes: [orders.read, orders.write]
- kind: Client
  spec:
    clientId: reports
    allowedGrantTypes: [client_credentials]
    clientSecrets: [{value: reports-secret-0123456789, description: reporting job}]
    allowedScopes: [orders.read]
    accessTokenLifetime: 600
- kind: Client
  spec:
    clientId: web
    allowedGrantTypes: [authorization_code]
    requireClientSecret: false
    redirectUris: ['https://shop.example/callback']
    allowedScopes: [openid, profile, orders.read]
";

#[tokio::test]
async fn apply_creates_leaves_alone_and_replaces_with_a_diff() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(&dir.path().join("data"), ServeOptions::default()).await?;
    let admin = Admin::for_node(&s);
    let file = write(dir.path(), "platform.yaml", PLATFORM);

    // Everything is missing: all six are created, scopes before what names them.
    let out = admin.run(&["apply", "-f", &file]).await;
    let stdout = out.ok();
    assert!(
        stdout.ends_with("6 created, 0 replaced, 0 unchanged\n"),
        "{out:#?}"
    );
    let order: Vec<&str> = stdout.lines().take(6).collect();
    assert_eq!(
        order,
        [
            "api-scope/orders.read created",
            "api-scope/orders.write created",
            "api-resource/orders-api created",
            "client/backend created",
            "client/reports created",
            "client/web created",
        ]
    );
    assert_eq!(
        get(&s, "/Resource/ApiScope/orders.read").await?["displayName"],
        "Read orders"
    );
    assert_eq!(
        get(&s, "/Resource/ApiResource/orders-api").await?["scopes"][1],
        "orders.write"
    );
    assert_eq!(
        get(&s, "/Client/web").await?["redirectUris"][0],
        "https://shop.example/callback"
    );
    // The secrets were sent: the backends get tokens.
    assert_eq!(
        token_status(&s, "backend", "backend-secret-0123456789").await?,
        200
    );
    assert_eq!(
        token_status(&s, "reports", "reports-secret-0123456789").await?,
        200
    );

    // Applying the same file again changes nothing.
    let out = admin.run(&["apply", "-f", &file]).await;
    assert!(
        out.ok().ends_with("0 created, 0 replaced, 6 unchanged\n"),
        "{out:#?}"
    );
    assert_eq!(out.stdout.matches(" unchanged\n").count(), 7, "{out:#?}");

    // One client changes in the file: the dry run shows the diff and writes nothing.
    let changed = PLATFORM.replace("accessTokenLifetime: 600", "accessTokenLifetime: 900");
    write(dir.path(), "platform.yaml", &changed);
    let before = snapshot(&s).await?;
    let out = admin.run(&["apply", "-f", &file, "--dry-run"]).await;
    let stdout = out.ok();
    assert!(
        stdout.contains("client/reports replaced (dry run)\n    accessTokenLifetime: 600 -> 900\n"),
        "{out:#?}"
    );
    assert!(stdout.contains("client/backend unchanged\n"), "{out:#?}");
    assert!(
        stdout.ends_with("dry run: 0 to create, 1 to replace, 5 unchanged; nothing was written\n"),
        "{out:#?}"
    );
    assert_eq!(snapshot(&s).await?, before, "a dry run writes nothing");
    assert_eq!(
        get(&s, "/Client/reports").await?["accessTokenLifetime"],
        600
    );

    // The real apply replaces that one client, and keeps its secret working.
    let out = admin.run(&["apply", "-f", &file]).await;
    let stdout = out.ok();
    assert!(
        stdout.ends_with("0 created, 1 replaced, 5 unchanged\n"),
        "{out:#?}"
    );
    assert!(stdout.contains("client/reports replaced\n    accessTokenLifetime: 600 -> 900\n"));
    assert_eq!(
        get(&s, "/Client/reports").await?["accessTokenLifetime"],
        900
    );
    assert_eq!(
        token_status(&s, "reports", "reports-secret-0123456789").await?,
        200
    );

    // The JSON list is the server's own.
    let out = admin.run(&["client", "list", "--output", "json"]).await;
    let listed: Value = serde_json::from_str(out.ok())?;
    assert_eq!(listed, get(&s, "/Client").await?);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["clientId"].as_str().unwrap())
        .collect();
    for id in ["backend", "reports", "web", "signet-admin"] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }

    // The same objects as a JSON array on standard input, with the JSON report.
    let objects: Value = serde_json::json!([
        {"kind": "ApiScope", "spec": {"name": "orders.read", "displayName": "Read orders"}},
        {"kind": "IdentityResource", "spec": {"name": "tenant", "userClaims": ["tenant_id"]}},
    ]);
    let out = admin
        .run_stdin(
            &["apply", "-f", "-", "-o", "json"],
            Some(&objects.to_string()),
        )
        .await;
    let report: Value = serde_json::from_str(out.ok())?;
    assert_eq!(
        (
            &report["created"],
            &report["unchanged"],
            &report["complete"]
        ),
        (&Value::from(1), &Value::from(1), &Value::Bool(true)),
        "{report}"
    );
    assert_eq!(
        get(&s, "/Resource/IdentityResource/tenant").await?["userClaims"][0],
        "tenant_id"
    );
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn an_invalid_file_writes_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(&dir.path().join("data"), ServeOptions::default()).await?;
    let admin = Admin::for_node(&s);
    let before = snapshot(&s).await?;

    // One bad object among good ones: every problem named, nothing written.
    let file = write(
        dir.path(),
        "bad.yaml",
        "\
- kind: ApiScope
  spec: {name: inventory.read}
- kind: Client
  spec:
    clientId: inventory
    allowedGrantTypes: [client_credentials]
    clientSecrets: [{value: inventory-secret-0123456789}]
    allowedScopes: [inventory.read]
- kind: Client
  spec:
    clientId: broken
    allowedGrantTypes: [client_credentials]
    clientSecrets: [{value: broken-secret-0123456789}]
    accessTokenLifetime: 0
- kind: ApiScope
  spec: {name: inventory.write}
",
    );
    let out = admin.run(&["apply", "-f", &file]).await;
    assert_eq!(out.code, 2, "{out:#?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{file}: object 3 (Client broken): accessTokenLifetime: must be a positive number of seconds"),
            format!("signet admin: {file} is invalid (1 problem); nothing was written"),
        ],
        "{out:#?}"
    );
    assert_eq!(out.stdout, "");
    assert_eq!(snapshot(&s).await?, before, "nothing was created");

    // A problem only the server's state reveals (a scope that exists nowhere) also stops
    // the apply before its first write, though the scope before it was valid.
    let file = write(
        dir.path(),
        "dangling.yaml",
        "\
- kind: ApiScope
  spec: {name: inventory.read}
- kind: Client
  spec:
    clientId: inventory
    allowedGrantTypes: [client_credentials]
    clientSecrets: [{value: inventory-secret-0123456789}]
    allowedScopes: [inventory.read, inventory.admin]
",
    );
    let out = admin.run(&["apply", "-f", &file]).await;
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr.starts_with(&format!(
            "{file}: object 2 (Client inventory): allowedScopes[1]: scope \"inventory.admin\" exists neither on the server nor in the file"
        )),
        "{out:#?}"
    );
    assert_eq!(snapshot(&s).await?, before, "nothing was created");

    // Broken syntax: one line for the problem, one for the verdict.
    let file = write(
        dir.path(),
        "broken.yaml",
        "- kind: ApiScope\n  spec: {name: [\n",
    );
    let out = admin.run(&["apply", "-f", &file, "--dry-run"]).await;
    assert_eq!(out.code, 2, "{out:#?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{out:#?}");
    assert!(
        lines[0].starts_with(&format!("{file}: invalid YAML: ")),
        "{out:#?}"
    );
    let out = admin
        .run_stdin(
            &["apply", "-f", "-"],
            Some("[{\"kind\": \"Client\", \"spec\": {}},]"),
        )
        .await;
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.starts_with("<stdin>: line 1 column"), "{out:#?}");
    assert_eq!(snapshot(&s).await?, before);
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn each_failure_has_its_exit_code_and_one_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(&dir.path().join("data"), ServeOptions::default()).await?;
    let admin = Admin::for_node(&s);

    // A wrong secret: 3.
    let out = admin
        .with(
            "SIGNET_ADMIN_CLIENT_SECRET",
            Some("not-the-admin-secret-0123456789"),
        )
        .run(&["client", "list"])
        .await;
    let line = out.one_line(3);
    assert!(line.contains("authentication failed"), "{line}");
    assert!(line.contains("wrong or expired"), "{line}");
    assert!(
        !line.contains("not-the-admin-secret"),
        "the secret is never printed: {line}"
    );
    // A client that may not administer: 3 too.
    let out = admin
        .with("SIGNET_ADMIN_CLIENT_ID", Some("nobody"))
        .run(&["client", "list"])
        .await;
    out.one_line(3);

    // A wrong URL (nothing listens there): 4, for the admin API and the token endpoint.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let out = admin
        .with("SIGNET_ADMIN_URL", Some(&closed))
        .run(&["client", "list"])
        .await;
    let line = out.one_line(4);
    assert!(
        line.contains(&format!("cannot connect to the admin API at {closed}")),
        "{line}"
    );
    let out = admin
        .with("SIGNET_ISSUER", Some(&closed))
        .run(&["client", "list"])
        .await;
    assert!(out.one_line(4).contains("token endpoint"), "{out:#?}");
    // The public listener is not the admin API: 4.
    let out = admin
        .with("SIGNET_ADMIN_URL", Some(&s.public))
        .run(&["api-scope", "get", "openid"])
        .await;
    assert!(
        out.one_line(4).contains("not a Signet admin API"),
        "{out:#?}"
    );
    // A URL that is no URL, and a missing secret: usage, 2.
    let out = admin
        .with("SIGNET_ADMIN_URL", Some("localhost:8081"))
        .run(&["client", "list"])
        .await;
    out.one_line(2);
    let out = admin
        .with("SIGNET_ADMIN_CLIENT_SECRET", None)
        .run(&["client", "list"])
        .await;
    assert!(
        out.one_line(2).contains("SIGNET_ADMIN_CLIENT_SECRET"),
        "{out:#?}"
    );

    // A missing object: 5, for get, update and delete.
    let out = admin.run(&["client", "get", "no-such-client"]).await;
    assert_eq!(
        out.one_line(5),
        "signet admin: client/no-such-client not found"
    );
    let out = admin.run(&["api-resource", "delete", "no-such-api"]).await;
    out.one_line(5);
    let out = admin
        .run_stdin(
            &["api-scope", "update", "-f", "-"],
            Some("name: no-such-scope\n"),
        )
        .await;
    out.one_line(5);

    // A refusal by the server: 1, with its reason.
    let out = admin.run(&["client", "delete", "signet-admin"]).await;
    assert!(
        out.one_line(1).contains("bootstrap admin client"),
        "{out:#?}"
    );

    // The secret may also come from a file (with its trailing newline).
    let secret_file = write(dir.path(), "secret", &format!("{}\n", s.admin_secret));
    let out = admin
        .with("SIGNET_ADMIN_CLIENT_SECRET", None)
        .run(&[
            "identity-resource",
            "get",
            "openid",
            "--client-secret-file",
            &secret_file,
        ])
        .await;
    assert!(out.ok().contains("openid"), "{out:#?}");
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn kind_verbs_create_get_update_delete() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(&dir.path().join("data"), ServeOptions::default()).await?;
    let admin = Admin::for_node(&s);

    // An id with characters that need escaping in a URL path.
    let scope = write(
        dir.path(),
        "scope.json",
        r#"{"name": "urn:shop/orders#read", "displayName": "Orders"}"#,
    );
    let out = admin.run(&["api-scope", "create", "-f", &scope]).await;
    assert_eq!(out.ok(), "api-scope/urn:shop/orders#read created\n");
    let out = admin
        .run(&["api-scope", "get", "urn:shop/orders#read"])
        .await;
    assert!(
        out.ok().contains("urn:shop/orders#read   Orders"),
        "{out:#?}"
    );

    let client = write(
        dir.path(),
        "client.yaml",
        "\
kind: Client
spec:
  clientId: cli-client
  clientName: Made by the CLI
  allowedGrantTypes: [client_credentials]
  clientSecrets: [{value: cli-client-secret-0123456789}]
  allowedScopes: ['urn:shop/orders#read']
",
    );
    let out = admin.run(&["client", "create", "-f", &client]).await;
    assert_eq!(out.ok(), "client/cli-client created\n");
    // Creating it again is refused by the server.
    let out = admin.run(&["client", "create", "-f", &client]).await;
    assert!(out.one_line(1).contains("already exists"), "{out:#?}");

    // Table output for people: headers and the client's row.
    let out = admin.run(&["client", "get", "cli-client"]).await;
    let table = out.ok();
    assert!(table.starts_with("CLIENT ID "), "{table}");
    assert!(table.contains("cli-client"), "{table}");
    assert!(table.contains("Made by the CLI"), "{table}");
    let out = admin.run(&["clients", "ls"]).await;
    assert!(out.ok().contains("cli-client"), "{out:#?}");

    // Update from standard input, without secrets: the stored secret is kept.
    let update = r#"{"clientId": "cli-client", "clientName": "Renamed", "allowedGrantTypes": ["client_credentials"], "allowedScopes": ["urn:shop/orders#read"], "accessTokenLifetime": 120}"#;
    let out = admin
        .run_stdin(&["client", "update", "-f", "-"], Some(update))
        .await;
    assert_eq!(out.ok(), "client/cli-client replaced\n");
    let out = admin
        .run(&["client", "get", "cli-client", "-o", "json"])
        .await;
    let shown: Value = serde_json::from_str(out.ok())?;
    assert_eq!(
        (&shown["clientName"], &shown["accessTokenLifetime"]),
        (&Value::from("Renamed"), &Value::from(120))
    );
    assert_eq!(
        token_status(&s, "cli-client", "cli-client-secret-0123456789").await?,
        200
    );

    // Delete, then it is gone; the scope it used can go next.
    let out = admin.run(&["client", "delete", "cli-client"]).await;
    assert_eq!(out.ok(), "client/cli-client deleted\n");
    let out = admin.run(&["client", "get", "cli-client"]).await;
    out.one_line(5);
    let out = admin
        .run(&["api-scope", "rm", "urn:shop/orders#read"])
        .await;
    assert_eq!(out.ok(), "api-scope/urn:shop/orders#read deleted\n");
    s.stop().await?;
    Ok(())
}

/// The `user` kind: create, get (by sub or username), list by username, update (a
/// rename through `sub`), apply (create, unchanged, replace; a dry run writes nothing),
/// sessions and logout (one with --sid, then all), delete; missing users exit 5.
#[tokio::test]
async fn user_verbs_and_sessions() -> anyhow::Result<()> {
    use signet_tests::browser::code_flow;
    let dir = tempfile::tempdir()?;
    let s = Serve::start(&dir.path().join("data"), ServeOptions::default()).await?;
    let admin = Admin::for_node(&s);
    const PW: &str = "cli user password 1";
    let user = write(
        dir.path(),
        "user.yaml",
        &format!("kind: User\nspec:\n  username: cleo\n  password: {PW}\n  claims: {{email: cleo@example.com}}\n"),
    );
    let out = admin.run(&["user", "create", "-f", &user]).await;
    let line = out.ok().trim().to_owned();
    assert!(line.starts_with("user/cleo created (sub "), "{line}");
    let sub = line
        .trim_start_matches("user/cleo created (sub ")
        .trim_end_matches(')')
        .to_owned();
    let out = admin.run(&["user", "create", "-f", &user]).await;
    assert!(out.one_line(1).contains("cleo"), "{out:#?}");
    for id in [sub.as_str(), "cleo", "CLEO"] {
        let out = admin.run(&["user", "get", id, "-o", "json"]).await;
        let shown: Value = serde_json::from_str(out.ok())?;
        assert_eq!(shown["sub"], sub.as_str(), "{id}");
        assert!(shown.get("password").is_none());
    }
    let out = admin.run(&["users", "ls", "--username", "cleo"]).await;
    let table = out.ok();
    assert!(table.starts_with("USERNAME "), "{table}");
    assert!(
        table.contains("cleo") && table.contains(&sub) && table.contains("email"),
        "{table}"
    );
    let out = admin.run(&["user", "get", "nobody"]).await;
    assert!(
        out.one_line(5).contains("user/nobody not found"),
        "{out:#?}"
    );
    // An invalid file is refused before anything is sent, naming the field.
    let bad = write(
        dir.path(),
        "bad.json",
        r#"{"username": "x", "password": "short"}"#,
    );
    let out = admin.run(&["user", "create", "-f", &bad]).await;
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("password"), "{out:#?}");

    // Rename through sub (the stored password stays).
    let rename = format!(
        r#"{{"sub": "{sub}", "username": "cleo2", "claims": {{"email": "cleo@example.com"}}}}"#
    );
    let out = admin
        .run_stdin(&["user", "update", "-f", "-"], Some(&rename))
        .await;
    assert_eq!(out.ok(), "user/cleo2 replaced\n");
    assert_eq!(get(&s, &format!("/User/{sub}")).await?["username"], "cleo2");

    // apply: cleo2 unchanged, dan created; then dan's claims change (dry run first).
    let users = |dan_email: &str| {
        format!(
            "- {{username: cleo2, claims: {{email: cleo@example.com}}}}\n- kind: User\n  spec: {{username: dan, password: '{PW}', claims: {{email: {dan_email}}}}}\n"
        )
    };
    let file = write(dir.path(), "users.yaml", &users("dan@example.com"));
    let out = admin.run(&["user", "apply", "-f", &file]).await;
    assert_eq!(
        out.ok(),
        "user/cleo2 unchanged\nuser/dan created\n1 created, 0 replaced, 1 unchanged\n"
    );
    let file = write(dir.path(), "users.yaml", &users("dan@new.example"));
    let out = admin
        .run(&["user", "apply", "-f", &file, "--dry-run"])
        .await;
    assert_eq!(
        out.ok(),
        "user/cleo2 unchanged\nuser/dan replaced (dry run)\n    changed: claims\n\
         dry run: 0 to create, 1 to replace, 1 unchanged; nothing was written\n"
    );
    let out = admin.run(&["user", "get", "dan", "-o", "json"]).await;
    let dan: Value = serde_json::from_str(out.ok())?;
    assert_eq!(
        dan["claims"]["email"], "dan@example.com",
        "dry run wrote nothing"
    );
    let out = admin
        .run(&["user", "apply", "-f", &file, "-o", "json"])
        .await;
    let report: Value = serde_json::from_str(out.ok())?;
    assert_eq!(report["users"][1]["action"], "replace", "{report}");
    let out = admin.run(&["user", "get", "dan", "-o", "json"]).await;
    let dan: Value = serde_json::from_str(out.ok())?;
    assert_eq!(dan["claims"]["email"], "dan@new.example");
    // A user the server does not have, without a password: refused before any write.
    let file = write(dir.path(), "new.yaml", "- {username: eve}\n");
    let out = admin.run(&["user", "apply", "-f", &file]).await;
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("needs a password"), "{out:#?}");

    // Sessions: two browsers sign in as cleo2; list, end one by sid, then all.
    s.create(
        "/Client",
        serde_json::json!({"clientId": "web", "allowedGrantTypes": ["authorization_code"],
            "clientSecrets": [{"value": "cli-web-secret-0123456789"}],
            "redirectUris": ["http://127.0.0.1:1/cb"], "allowedScopes": ["openid"],
            "requireConsent": false}),
    )
    .await?;
    let mut sids = Vec::new();
    for _ in 0..2 {
        let t = code_flow(
            &s.issuer,
            &s.issuer,
            "web",
            Some("cli-web-secret-0123456789"),
            "http://127.0.0.1:1/cb",
            "openid",
            "cleo2",
            PW,
        )
        .await?;
        let id = t["id_token"].as_str().unwrap_or_default();
        sids.push(
            crate::sessions::claims_of(id)?["sid"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let out = admin.run(&["user", "sessions", "cleo2"]).await;
    let table = out.ok();
    assert!(table.starts_with("SID "), "{table}");
    assert!(
        sids.iter().all(|sid| table.contains(sid.as_str())),
        "{table}"
    );
    assert!(table.contains("web"), "{table}");
    let out = admin
        .run(&["user", "logout", "cleo2", "--sid", &sids[0]])
        .await;
    assert_eq!(
        out.ok(),
        format!("session {} of user/cleo2 ended\n", sids[0])
    );
    let out = admin.run(&["user", "sessions", &sub, "-o", "json"]).await;
    let left: Value = serde_json::from_str(out.ok())?;
    assert_eq!(left.as_array().map(Vec::len), Some(1), "{left}");
    assert_eq!(left[0]["sid"], sids[1].as_str());
    let out = admin
        .run(&["user", "logout", "cleo2", "--sid", &sids[0]])
        .await;
    assert!(out.one_line(5).contains("no live session"), "{out:#?}");
    let out = admin.run(&["user", "logout", "cleo2"]).await;
    assert_eq!(out.ok(), "every session of user/cleo2 ended\n");
    let out = admin
        .run(&["user", "sessions", "cleo2", "-o", "json"])
        .await;
    assert_eq!(out.ok().trim(), "[]");

    let out = admin.run(&["user", "delete", "dan"]).await;
    assert_eq!(out.ok(), "user/dan deleted\n");
    let out = admin.run(&["user", "delete", "dan"]).await;
    assert_eq!(out.code, 5, "{out:#?}");
    Ok(())
}
