//! The token endpoint in process, no sockets: a real node (data directory, event log, key
//! manager, one active key per algorithm) configured through its own admin API, then
//! `POST /oauth2/token` (`client_credentials`, HTTP Basic) through the public router, per
//! signing algorithm, followed by the pieces of that request on their own so every
//! microsecond above the signature has a name.
//!
//! Groups:
//!
//! - `token_endpoint/<alg>` (one per algorithm; throughput in requests per second):
//!   - `full_request`: `router.clone().oneshot(request)` and the whole body read. The
//!     request is built outside the timing (`iter_batched`).
//!   - `grant`: `http::grants::client_credentials::grant` on an authenticated client and a
//!     parsed form: decision, jti, claims, signature, JSON response.
//!   - `decide`: `signet_core::grants::client_credentials::decide` (c).
//!   - `sign`: the node's own `JwsSigner` for the algorithm on the claims `grant` writes.
//! - `token_endpoint/pieces` (algorithm-independent):
//!   - `router_healthz`: `GET /healthz` through the same router: axum routing, the timeout
//!     layer and a JSON body, i.e. the floor of any request.
//!   - `form_extract`: `OAuthForm::from_request` (content type, body collect, parse).
//!   - `form_parse`: `OAuthForm::parse` on the body (e).
//!   - `authenticate`: `http::client_auth::authenticate` (Basic decode, lookup, hash, compare).
//!   - `projection_load`: the `ArcSwap` load of the projection every request does.
//!   - `client_lookup`: `projection.client("bench")` (a).
//!   - `secret_check`: `SecretDigest::of(secret)` + `entry.secrets.matches(..)` (b).
//!   - `new_jti`: 128 random bits, base64url (`includeJwtId` is on, the default).
//!   - `claims_write_json`: `AccessTokenClaims { .. }.write_json` into a reused buffer (d).
//!   - `token_response`: the RFC 6749 section 5.1 JSON response around a signed token.
//!
//! Runtime: one current-thread tokio runtime for setup and every async benchmark, driven by
//! criterion's `to_async` (feature `async_tokio`). Criterion enters the runtime once per
//! sample (`block_on` around the whole loop of iterations), not once per request, so the
//! runtime's own cost is amortized away; a current-thread runtime adds no cross-thread
//! wake-ups, and the in-process handler never waits on I/O anyway. The node's follower task
//! (spawned on the same runtime) sleeps on the log's notification channel while measuring.
//! Synchronous pieces use plain `iter`.
//!
//! Run with `cargo bench -p signet-issuer --bench token_endpoint` (add `-- --quick`).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, Throughput,
};
use serde_json::{json, Value};
use signet_core::grants::client_credentials::decide;
use signet_core::grants::AccessTokenClaims;
use signet_core::secret::SecretDigest;
use signet_core::Algorithm;
use signet_issuer::http::client_auth::authenticate;
use signet_issuer::http::form::OAuthForm;
use signet_issuer::http::grants::client_credentials::{grant, new_jti, token_response};
use signet_issuer::http::token::now;
use signet_issuer::{AppState, Node, NodeConfig};
use tower::ServiceExt;

const ADMIN_SECRET: &str = "bench-admin-secret-0123456789abcdefghijklmnop";
const CLIENT_ID: &str = "bench";
const CLIENT_SECRET: &str = "bench-client-secret-0123456789abcdefghijklmno";

fn scope_of(alg: Algorithm) -> String {
    format!("bench.{}", alg.as_str().to_ascii_lowercase())
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

fn token_request(authorization: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, authorization)
        .body(Body::from(body.to_owned()))
        .expect("request")
}

async fn call(router: &Router, req: Request<Body>) -> (StatusCode, axum::body::Bytes) {
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, body)
}

async fn admin_post(admin: &Router, token: &str, path: &str, body: Value) {
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/admin/v1{path}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(body.to_string()))
        .expect("request");
    let (status, body) = call(admin, req).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "POST {path}: {}",
        String::from_utf8_lossy(&body)
    );
}

/// The `alg` of a compact JWS's protected header.
fn header_alg(token: &str) -> String {
    let h = token.split('.').next().expect("header");
    let h: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("b64")).expect("json");
    h["alg"].as_str().expect("alg").to_owned()
}

/// Starts a node on a fresh data directory and configures the bench client through the
/// admin API. Returns the node (kept alive: it holds the directory lock and the log).
async fn start_node(dir: &std::path::Path) -> Node {
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let node = Node::start(NodeConfig {
        listen: any_port,
        admin_listen: any_port,
        admin_client_secret: Some(ADMIN_SECRET.to_owned()),
        ..NodeConfig::new(dir.to_path_buf())
    })
    .await
    .expect("node start");
    let state = node.state().clone();
    // Admin writes answer once this node's projection applied them: that is the follower.
    state.spawn_follower();
    let public = signet_issuer::http::public_router(state.clone());
    let admin = signet_issuer::http::admin_router(state.clone());

    let (status, body) = call(
        &public,
        token_request(
            &basic("signet-admin", ADMIN_SECRET),
            "grant_type=client_credentials&scope=signet.admin",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).expect("token response");
    let admin_token = body["access_token"].as_str().expect("access_token");

    let mut scopes = vec!["bench.read".to_owned()];
    scopes.extend(Algorithm::ALL.map(scope_of));
    for s in &scopes {
        admin_post(
            &admin,
            admin_token,
            "/Resource/ApiScope",
            json!({"name": s, "displayName": format!("Bench scope {s}")}),
        )
        .await;
    }
    admin_post(
        &admin,
        admin_token,
        "/Resource/ApiResource",
        json!({"name": "bench-api", "scopes": ["bench.read"]}),
    )
    .await;
    for alg in Algorithm::ALL {
        admin_post(
            &admin,
            admin_token,
            "/Resource/ApiResource",
            json!({
                "name": format!("bench-api-{}", alg.as_str().to_ascii_lowercase()),
                "scopes": [scope_of(alg)],
                "allowedAccessTokenSigningAlgorithms": [alg.as_str()],
            }),
        )
        .await;
    }
    admin_post(
        &admin,
        admin_token,
        "/Client",
        json!({
            "clientId": CLIENT_ID,
            "clientName": "Benchmark service",
            "allowedGrantTypes": ["client_credentials"],
            "clientSecrets": [{"description": "bench", "value": CLIENT_SECRET}],
            "allowedScopes": scopes,
            "claims": [
                {"type": "role", "value": "bench.reader"},
                {"type": "tenant", "value": "acme"},
            ],
        }),
    )
    .await;
    node
}

fn configure<M: criterion::measurement::Measurement>(group: &mut BenchmarkGroup<'_, M>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
}

fn bench_token_endpoint(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let node = rt.block_on(start_node(dir.path()));
    let state: AppState = node.state().clone();
    let router = signet_issuer::http::public_router(state.clone());
    let authorization = basic(CLIENT_ID, CLIENT_SECRET);

    let p = state.projection.load_full();
    let entry = p.client(CLIENT_ID).expect("bench client applied").clone();
    let default_alg = state.config.default_algorithm;
    let iss = state.config.issuer.as_str();

    for alg in Algorithm::ALL {
        let body = format!("grant_type=client_credentials&scope={}", scope_of(alg));

        // Once, before timing: the request succeeds and is signed with `alg`.
        let (status, resp) = rt.block_on(call(&router, token_request(&authorization, &body)));
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&resp));
        let resp: Value = serde_json::from_slice(&resp).expect("token response");
        let token = resp["access_token"].as_str().expect("access_token");
        assert_eq!(header_alg(token), alg.as_str());

        let form = rt.block_on(async {
            OAuthForm::from_request(token_request(&authorization, &body), &())
                .await
                .expect("form")
        });
        let scope = form.get("scope");
        let decided = decide(&p, &entry, scope, default_alg).expect("grant");
        assert_eq!(decided.alg, alg);
        let signers = state.signers.load();
        let signer = signers.access_token(alg).expect("active key");
        let jti = new_jti().expect("jti");
        let mut claims = Vec::with_capacity(1024);
        AccessTokenClaims {
            iss,
            sub: &entry.client.client_id,
            aud: &decided.audiences,
            client_id: &entry.client.client_id,
            scopes: &decided.scopes,
            iat: now(),
            exp: now() + 3600,
            jti: Some(&jti),
            extra_json: &entry.claims_json,
        }
        .write_json(&mut claims);

        let mut group = c.benchmark_group(format!("token_endpoint/{alg}"));
        configure(&mut group);
        group.throughput(Throughput::Elements(1));
        let router = &router;
        group.bench_function("full_request", |b| {
            b.to_async(&rt).iter_batched(
                || token_request(&authorization, &body),
                |req| async move {
                    let (status, body) = call(router, req).await;
                    debug_assert_eq!(status, StatusCode::OK);
                    body
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function("grant", |b| {
            b.iter(|| {
                matches!(
                    grant(
                        &state,
                        &p,
                        &entry,
                        black_box(&form),
                        Default::default(),
                        now()
                    )
                    .expect("grant"),
                    signet_issuer::http::grants::client_credentials::Issued::Response(_)
                )
            })
        });
        group.bench_function("decide", |b| {
            b.iter(|| decide(&p, &entry, black_box(scope), default_alg).expect("decide"))
        });
        group.bench_function("sign", |b| {
            b.iter(|| signer.sign(black_box(&claims)).expect("sign"))
        });
        group.finish();
    }

    // Algorithm-independent pieces, on the RS256 request.
    let body = format!(
        "grant_type=client_credentials&scope={}",
        scope_of(Algorithm::RS256)
    );
    let form = rt.block_on(async {
        OAuthForm::from_request(token_request(&authorization, &body), &())
            .await
            .expect("form")
    });
    let decided = decide(&p, &entry, form.get("scope"), default_alg).expect("grant");
    let jti = new_jti().expect("jti");
    let t = now();
    let claims = AccessTokenClaims {
        iss,
        sub: &entry.client.client_id,
        aud: &decided.audiences,
        client_id: &entry.client.client_id,
        scopes: &decided.scopes,
        iat: t,
        exp: t + 3600,
        jti: Some(&jti),
        extra_json: &entry.claims_json,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    claims.write_json(&mut buf);
    let signed = state
        .signers
        .load()
        .access_token(Algorithm::RS256)
        .expect("active key")
        .sign(&buf)
        .expect("sign");
    let healthz = || {
        Request::builder()
            .uri("/healthz")
            .body(Body::empty())
            .expect("request")
    };
    assert_eq!(rt.block_on(call(&router, healthz())).0, StatusCode::OK);

    let mut group = c.benchmark_group("token_endpoint/pieces");
    configure(&mut group);
    let r = &router;
    group.bench_function("router_healthz", |b| {
        b.to_async(&rt).iter_batched(
            healthz,
            |req| async move { call(r, req).await.1 },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("form_extract", |b| {
        b.to_async(&rt).iter_batched(
            || token_request(&authorization, &body),
            |req| async move { OAuthForm::from_request(req, &()).await.expect("form") },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("form_parse", |b| {
        b.iter(|| OAuthForm::parse(black_box(body.as_bytes())).expect("parse"))
    });
    group.bench_function("authenticate", |b| {
        let state = &state;
        let (p, form) = (&p, &form);
        b.to_async(&rt).iter(|| async move {
            authenticate(state, p, black_box(form), "/oauth2/token", now())
                .await
                .expect("authenticated")
        })
    });
    group.bench_function("projection_load", |b| {
        b.iter(|| black_box(state.projection.load()).seq())
    });
    group.bench_function("client_lookup", |b| {
        b.iter(|| p.client(black_box(CLIENT_ID)).is_some())
    });
    group.bench_function("secret_check", |b| {
        b.iter(|| {
            let d = SecretDigest::of(black_box(CLIENT_SECRET));
            entry.secrets.matches(&d, t)
        })
    });
    group.bench_function("new_jti", |b| b.iter(|| new_jti().expect("jti")));
    group.bench_function("claims_write_json", |b| {
        b.iter(|| {
            buf.clear();
            // Built per iteration, as `grant` does: borrowed fields, nothing allocated.
            AccessTokenClaims {
                iat: black_box(t),
                ..claims.clone()
            }
            .write_json(&mut buf);
            black_box(buf.len())
        })
    });
    group.bench_function("token_response", |b| {
        b.iter(|| token_response(black_box(&signed), "Bearer", 3600, &decided.scopes))
    });
    group.finish();

    drop(router);
    drop(state);
    drop(node);
    drop(rt);
}

criterion_group!(benches, bench_token_endpoint);
criterion_main!(benches);
