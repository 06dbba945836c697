//! Test helpers: signing keys and tokens, a small in-process issuer (discovery, JWKS and
//! introspection, with counters), free ports, and polling with a deadline (no fixed
//! sleeps).
#![allow(dead_code)]

pub mod nats;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use signet_jose::{b64url, generate_pkcs8, Algorithm, Jwk, SigningKey};

/// Polls `check` until it returns `Some`, for at most `patience`.
pub async fn eventually<T, F, Fut>(patience: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if start.elapsed() > patience {
            anyhow::bail!("condition not met within {patience:?}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A free loopback port for a child process, taken from below the kernel's ephemeral range
/// so that no outgoing connection can hold it meanwhile.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU16;
    const LOW: u16 = 12_000;
    const SPAN: u16 = 20_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Another offset than tests/support's, so both suites running at once rarely collide.
    let start = LOW + ((std::process::id() * 7 + 9_999) % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (start - LOW + n) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port")
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A new signing key.
pub fn key(alg: Algorithm, kid: &str) -> Arc<SigningKey> {
    let der = generate_pkcs8(alg).expect("generate");
    Arc::new(SigningKey::from_pkcs8(kid, alg, &der).expect("parse"))
}

/// A compact JWS with any header and payload, signed by `key`.
pub fn sign_raw(key: &SigningKey, header: &Value, payload: &Value) -> String {
    let mut out = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(payload.to_string().as_bytes())
    );
    let mut sig = Vec::new();
    key.sign_into(out.as_bytes(), &mut sig).expect("sign");
    out.push('.');
    out.push_str(&b64url(&sig));
    out
}

/// An RFC 9068 access token header for `key`.
pub fn at_header(key: &SigningKey) -> Value {
    json!({"alg": key.alg().as_str(), "kid": key.kid(), "typ": "at+jwt"})
}

/// Claims of a good token for `issuer` and `aud`.
pub fn claims(issuer: &str, aud: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer,
        "sub": "backend",
        "aud": aud,
        "exp": now + 600,
        "nbf": now,
        "iat": now,
        "jti": "jti-1",
        "client_id": "backend",
        "scope": "orders.read orders.write",
    })
}

/// A good access token.
pub fn token(key: &SigningKey, claims: &Value) -> String {
    sign_raw(key, &at_header(key), claims)
}

/// What the stub issuer serves and counts.
pub struct StubState {
    pub issuer: String,
    pub keys: Mutex<Vec<Jwk>>,
    pub cache_control: Mutex<String>,
    /// The `issuer` of the discovery document (default: the real one).
    pub discovery_issuer: Mutex<Option<String>>,
    /// Whether discovery advertises `introspection_endpoint` (under another path than the
    /// fallback, to tell them apart).
    pub advertise_introspection: Mutex<bool>,
    pub jwks_fetches: AtomicU64,
    pub discovery_fetches: AtomicU64,
    /// Introspection: accepted Basic credentials, and answers by token.
    pub credentials: (String, String),
    pub answers: Mutex<HashMap<String, Value>>,
    pub introspections: AtomicU64,
    /// Which path the last introspection came to.
    pub introspection_paths: Mutex<Vec<String>>,
}

/// An in-process issuer on a loopback port. Stops when dropped.
pub struct StubIssuer {
    pub url: String,
    pub state: Arc<StubState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StubIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StubIssuer {
    pub async fn start(keys: &[&SigningKey]) -> StubIssuer {
        Self::start_with_credentials(keys, ("orders-api", "api-secret")).await
    }

    pub async fn start_with_credentials(keys: &[&SigningKey], creds: (&str, &str)) -> StubIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}");
        let state = Arc::new(StubState {
            issuer: url.clone(),
            keys: Mutex::new(keys.iter().map(|k| k.public_jwk().clone()).collect()),
            cache_control: Mutex::new("public, max-age=900".into()),
            discovery_issuer: Mutex::new(None),
            advertise_introspection: Mutex::new(true),
            jwks_fetches: AtomicU64::new(0),
            discovery_fetches: AtomicU64::new(0),
            credentials: (creds.0.to_owned(), creds.1.to_owned()),
            answers: Mutex::new(HashMap::new()),
            introspections: AtomicU64::new(0),
            introspection_paths: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/keys", get(jwks))
            .route("/oauth2/introspect", post(introspect))
            .route("/advertised/introspect", post(introspect))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StubIssuer { url, state, task }
    }

    pub fn set_keys(&self, keys: &[&SigningKey]) {
        *self.state.keys.lock().unwrap() = keys.iter().map(|k| k.public_jwk().clone()).collect();
    }

    pub fn jwks_fetches(&self) -> u64 {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn introspections(&self) -> u64 {
        self.state.introspections.load(Ordering::SeqCst)
    }

    pub fn answer(&self, token: &str, answer: Value) {
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(token.to_owned(), answer);
    }
}

async fn discovery(State(s): State<Arc<StubState>>) -> Json<Value> {
    s.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    let issuer = s
        .discovery_issuer
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| s.issuer.clone());
    let mut doc = json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/keys", s.issuer),
        "token_endpoint": format!("{}/oauth2/token", s.issuer),
    });
    if *s.advertise_introspection.lock().unwrap() {
        doc["introspection_endpoint"] = json!(format!("{}/advertised/introspect", s.issuer));
    }
    Json(doc)
}

async fn jwks(State(s): State<Arc<StubState>>) -> Response {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys = s.keys.lock().unwrap().clone();
    let cache_control = s.cache_control.lock().unwrap().clone();
    (
        [(axum::http::header::CACHE_CONTROL, cache_control)],
        Json(json!({ "keys": keys })),
    )
        .into_response()
}

/// RFC 7662 with HTTP Basic client authentication (RFC 6749 section 2.3.1: the id and
/// secret are form-urlencoded before base64).
async fn introspect(
    State(s): State<Arc<StubState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    s.introspections.fetch_add(1, Ordering::SeqCst);
    s.introspection_paths
        .lock()
        .unwrap()
        .push(uri.path().to_owned());
    let authorized = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            let dec = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((dec(id)?, dec(secret)?))
        })
        .is_some_and(|(id, secret)| id == s.credentials.0 && secret == s.credentials.1);
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let Some(token) = form.get("token") else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request"})),
        )
            .into_response();
    };
    let answer = s
        .answers
        .lock()
        .unwrap()
        .get(token)
        .cloned()
        .unwrap_or_else(|| json!({"active": false}));
    Json(answer).into_response()
}
