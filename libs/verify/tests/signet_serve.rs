//! Against a real `signet serve` process: real tokens verify, tampered and foreign ones do
//! not, both through the library and through the example resource server (a separate
//! process). The binary is `target/<profile>/signet` beside this test (or `$SIGNET_BIN`):
//! build it with `cargo build -p signet` first (the README's test command does).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::{eventually, free_port};
use serde_json::{json, Value};
use signet_verify::{Algorithm, TokenKind, Verifier, VerifyError};
use tokio::process::{Child, Command};

const ADMIN_SECRET: &str = "verify-test-admin-secret-0123456789";
const BACKEND_SECRET: &str = "backend-secret-0123456789";

/// `target/<profile>/<name>` (or `examples/<name>`) beside this test executable.
fn target_bin(rel: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/signet_serve-<hash> -> target/<profile>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join(rel)
}

fn signet_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SIGNET_BIN") {
        return PathBuf::from(p);
    }
    let bin = target_bin("signet");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p signet` first",
        bin.display()
    );
    bin
}

struct Serve {
    _child: Child,
    _data: tempfile::TempDir,
    issuer: String,
    admin: String,
    http: reqwest::Client,
}

/// Waits until `url` answers 200; false if the process died first.
async fn wait_ready(http: &reqwest::Client, url: &str, child: &mut Child) -> Result<bool> {
    eventually(Duration::from_secs(60), || {
        let dead = child.try_wait().ok().flatten().is_some();
        let req = http.get(url).send();
        async move {
            if dead {
                return Some(false);
            }
            match req.await {
                Ok(r) if r.status() == 200 => Some(true),
                _ => None,
            }
        }
    })
    .await
}

impl Serve {
    async fn start() -> Result<Serve> {
        let http = reqwest::Client::new();
        for _ in 0..5 {
            let data = tempfile::tempdir()?;
            let (public, admin) = (free_port(), free_port());
            let issuer = format!("http://127.0.0.1:{public}");
            let mut child = Command::new(signet_bin())
                .arg("serve")
                .arg("--data-dir")
                .arg(data.path())
                .args(["--issuer", &issuer])
                .args(["--listen", &format!("127.0.0.1:{public}")])
                .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
                .env("SIGNET_ADMIN_CLIENT_SECRET", ADMIN_SECRET)
                .env("SIGNET_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("spawn signet")?;
            if wait_ready(&http, &format!("{issuer}/readyz"), &mut child).await? {
                return Ok(Serve {
                    _child: child,
                    _data: data,
                    issuer,
                    admin: format!("http://127.0.0.1:{admin}/admin/v1"),
                    http,
                });
            }
        }
        bail!("signet serve did not start")
    }

    async fn token(&self, id: &str, secret: &str, scope: Option<&str>) -> Result<String> {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let resp = self
            .http
            .post(format!("{}/oauth2/token", self.issuer))
            .basic_auth(id, Some(secret))
            .form(&form)
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if status != 200 {
            bail!("token request for {id} answered {status}: {body}");
        }
        Ok(body["access_token"]
            .as_str()
            .context("no access_token")?
            .to_owned())
    }

    async fn create(&self, path: &str, body: Value) -> Result<()> {
        let admin = self
            .token("signet-admin", ADMIN_SECRET, Some("signet.admin"))
            .await?;
        let resp = self
            .http
            .post(format!("{}{path}", self.admin))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await?;
        if resp.status() != 201 {
            bail!(
                "POST {path} answered {}: {}",
                resp.status(),
                resp.text().await?
            );
        }
        Ok(())
    }

    /// Scopes, two APIs (ES256 and the default RS256) and a backend client.
    async fn register(&self) -> Result<()> {
        for scope in ["orders.read", "orders.write", "billing.read"] {
            self.create("/Resource/ApiScope", json!({"name": scope}))
                .await?;
        }
        self.create(
            "/Resource/ApiResource",
            json!({"name": "orders-api", "scopes": ["orders.read", "orders.write"],
                   "allowedAccessTokenSigningAlgorithms": ["ES256"]}),
        )
        .await?;
        self.create(
            "/Resource/ApiResource",
            json!({"name": "billing-api", "scopes": ["billing.read"]}),
        )
        .await?;
        self.create(
            "/Client",
            json!({"clientId": "backend", "allowedGrantTypes": ["client_credentials"],
                   "clientSecrets": [{"value": BACKEND_SECRET}],
                   "allowedScopes": ["orders.read", "orders.write", "billing.read"],
                   "accessTokenLifetime": 600}),
        )
        .await
    }
}

/// The same token with its payload replaced (signature kept).
fn with_payload(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    edit(&mut payload);
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    )
}

#[tokio::test]
async fn real_tokens_verify_and_tampered_ones_do_not() {
    let serve = Serve::start().await.unwrap();
    serve.register().await.unwrap();
    let orders = Verifier::builder(&serve.issuer, "orders-api")
        .build()
        .unwrap();
    orders.warm_up().await.unwrap();

    let t = serve
        .token("backend", BACKEND_SECRET, Some("orders.read"))
        .await
        .unwrap();
    let c = orders
        .verify_with_scopes(&t, &["orders.read"])
        .await
        .unwrap();
    assert_eq!(c.sub.as_deref(), Some("backend"));
    assert_eq!(c.client_id.as_deref(), Some("backend"));
    assert_eq!(c.iss.as_deref(), Some(serve.issuer.as_str()));
    assert_eq!(c.aud, ["orders-api"]);
    assert_eq!(c.scopes, ["orders.read"]);
    assert!(matches!(
        c.kind,
        TokenKind::Jwt {
            alg: Algorithm::ES256,
            ..
        }
    ));
    assert!(matches!(
        orders.verify_with_scopes(&t, &["orders.write"]).await,
        Err(VerifyError::InsufficientScope { .. })
    ));

    // Tampered: more scope, another subject, a later expiry, a broken signature.
    let tampered = [
        with_payload(&t, |p| p["scope"] = json!("orders.read orders.write")),
        with_payload(&t, |p| p["sub"] = json!("admin")),
        with_payload(&t, |p| p["exp"] = json!(p["exp"].as_i64().unwrap() + 3600)),
        {
            let mut s = t.clone();
            let last = s.pop().unwrap();
            s.push(if last == 'A' { 'Q' } else { 'A' });
            s
        },
    ];
    for bad in &tampered {
        let e = orders.verify(bad).await.unwrap_err();
        assert!(
            matches!(e, VerifyError::BadSignature | VerifyError::Malformed(_)),
            "{e:?}"
        );
        assert_eq!(e.status(), 401);
    }

    // A real token for another API (RS256, aud billing-api).
    let billing = serve
        .token("backend", BACKEND_SECRET, Some("billing.read"))
        .await
        .unwrap();
    assert_eq!(
        orders.verify(&billing).await,
        Err(VerifyError::WrongAudience)
    );
    let billing_verifier = Verifier::builder(&serve.issuer, "billing-api")
        .build()
        .unwrap();
    let c = billing_verifier.verify(&billing).await.unwrap();
    assert!(matches!(
        c.kind,
        TokenKind::Jwt {
            alg: Algorithm::RS256,
            ..
        }
    ));
    let es_only = Verifier::builder(&serve.issuer, "billing-api")
        .algorithms([Algorithm::ES256])
        .build()
        .unwrap();
    assert_eq!(
        es_only.verify(&billing).await,
        Err(VerifyError::AlgorithmNotAllowed("RS256".into()))
    );
    // A verifier configured with another issuer URL refuses the discovery document.
    let wrong_issuer = Verifier::builder(format!("{}/", serve.issuer), "orders-api")
        .build()
        .unwrap();
    assert!(wrong_issuer.verify(&t).await.unwrap_err().is_unavailable());
    // Discovery and the JWKS were fetched once for all of it.
    assert_eq!(orders.jwks_stats().fetches, 1);
}

/// The example resource server, as a separate process.
struct Example {
    child: Child,
    url: String,
}

impl Example {
    async fn start(issuer: &str) -> Result<Example> {
        let bin = target_bin("examples/resource_server");
        if !bin.exists() {
            bail!(
                "{} is missing (cargo test builds examples; run `cargo build -p signet-verify --example resource_server`)",
                bin.display()
            );
        }
        let http = reqwest::Client::new();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args(["--issuer", issuer, "--audience", "orders-api"])
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .env_remove("SIGNET_NATS_URL")
                .env_remove("ORDERS_API_SECRET")
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()?;
            let url = format!("http://127.0.0.1:{port}");
            if wait_ready(&http, &format!("{url}/readyz"), &mut child).await? {
                return Ok(Example { child, url });
            }
        }
        bail!("the example did not start")
    }
}

#[tokio::test]
async fn the_example_resource_server_protects_orders() {
    let serve = Serve::start().await.unwrap();
    serve.register().await.unwrap();
    let mut example = Example::start(&serve.issuer).await.unwrap();
    let http = reqwest::Client::new();
    let orders = format!("{}/orders", example.url);

    let resp = http.get(&orders).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"orders-api\""
    );

    let t = serve
        .token("backend", BACKEND_SECRET, Some("orders.read"))
        .await
        .unwrap();
    let resp = http.get(&orders).bearer_auth(&t).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["claims"]["sub"], "backend");
    assert_eq!(body["claims"]["scopes"], json!(["orders.read"]));
    assert_eq!(body["claims"]["raw"]["iss"], serve.issuer);

    // It printed the claims.
    use tokio::io::AsyncBufReadExt;
    let stdout = example.child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let printed = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("\"sub\":\"backend\"") {
                return Some(line);
            }
        }
        None
    })
    .await
    .unwrap();
    assert!(printed.is_some());

    let tampered = with_payload(&t, |p| p["scope"] = json!("orders.read orders.write"));
    let resp = http
        .get(&orders)
        .bearer_auth(&tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer realm=\"orders-api\", error=\"invalid_token\""),
        "{challenge}"
    );

    let billing = serve
        .token("backend", BACKEND_SECRET, Some("billing.read"))
        .await
        .unwrap();
    let resp = http
        .get(&orders)
        .bearer_auth(&billing)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let write_only = serve
        .token("backend", BACKEND_SECRET, Some("orders.write"))
        .await
        .unwrap();
    let resp = http
        .get(&orders)
        .bearer_auth(&write_only)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.ends_with("scope=\"orders.read\""), "{challenge}");
}
