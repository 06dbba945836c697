//! Property tests of the HTTP surface as a whole: generated requests go through the real
//! routers of a node on a temporary data directory (`tower::ServiceExt::oneshot`, no
//! socket). Whatever the request, the answer is never a 5xx; protocol errors are RFC 6749
//! JSON and admin errors JSON naming the field; the same request gets the same status;
//! the authorization endpoint never sends the browser to a URI the client did not
//! register (byte for byte, or a registered loopback IP URI with another port); no answer
//! repeats a secret from the request.
//!
//! The parsers on their own are fuzzed next to them (`form/fuzz.rs`,
//! `client_auth/fuzz.rs`, and `signet-core`'s and `signet-jose`'s `fuzz` modules).

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};
use signet_core::fuzz::{
    json_object, nasty_string, API_RESOURCE_MEMBERS, CLIENT_MEMBERS, SCOPE_MEMBERS, USER_MEMBERS,
};
use signet_core::redirect_uri::redirect_uri_matches;
use tower::ServiceExt;

pub(crate) use signet_core::fuzz::config;

use crate::{Node, NodeConfig};

const ADMIN_SECRET: &str = "fuzz-admin-secret-0123456789abcdefghijklmnop";
const BACKEND_SECRET: &str = "fuzz-backend-secret-0123456789";
const WEB_REDIRECTS: &[&str] = &["https://app.example/cb", "http://127.0.0.1/cb"];

/// A node, its two routers and an admin token, on a runtime of its own.
struct Harness {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    _node: Node,
    public: Router,
    admin: Router,
    token: String,
    /// The issuer URL: redirects under it are the server's own pages.
    issuer: String,
}

/// Status, headers and body of one answer.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    /// Whether the answer carries `WWW-Authenticate`.
    challenge: bool,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

async fn call(router: &Router, req: Request<Body>) -> Answer {
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let location = resp
        .headers()
        .get(header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let challenge = resp.headers().contains_key(header::WWW_AUTHENTICATE);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body")
        .to_vec();
    Answer {
        status,
        location,
        challenge,
        body,
    }
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

fn form_post(path: &str, authorization: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut r =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(a) = authorization {
        r = r.header(header::AUTHORIZATION, a);
    }
    r.body(Body::from(body)).expect("request")
}

impl Harness {
    fn start() -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let (node, public, admin, token) = rt.block_on(async {
            let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            let node = Node::start(NodeConfig {
                listen: any_port,
                admin_listen: any_port,
                admin_client_secret: Some(ADMIN_SECRET.to_owned()),
                ..NodeConfig::new(dir.path().to_path_buf())
            })
            .await
            .expect("node start");
            node.state().spawn_follower();
            let public = super::public_router(node.state().clone());
            let admin = super::admin_router(node.state().clone());
            let a = call(
                &public,
                form_post(
                    "/oauth2/token",
                    Some(&basic("signet-admin", ADMIN_SECRET)),
                    b"grant_type=client_credentials&scope=signet.admin".to_vec(),
                ),
            )
            .await;
            assert_eq!(a.status, StatusCode::OK);
            let token = a.json().expect("json")["access_token"]
                .as_str()
                .expect("token")
                .to_owned();
            (node, public, admin, token)
        });
        let issuer = node.state().config.issuer.as_str().to_owned();
        let h = Harness {
            issuer,
            rt,
            _dir: dir,
            _node: node,
            public,
            admin,
            token,
        };
        for (path, body) in [
            ("/Resource/ApiScope", json!({"name": "orders.read"})),
            (
                "/Resource/ApiResource",
                json!({"name": "orders", "scopes": ["orders.read"]}),
            ),
            (
                "/Client",
                json!({
                    "clientId": "backend", "allowedGrantTypes": ["client_credentials"],
                    "clientSecrets": [{"value": BACKEND_SECRET}], "allowedScopes": ["orders.read"]
                }),
            ),
            (
                "/Client",
                json!({
                    "clientId": "web", "allowedGrantTypes": ["authorization_code"],
                    "redirectUris": WEB_REDIRECTS, "requireClientSecret": false,
                    "allowedScopes": ["openid", "profile", "orders.read"], "allowOfflineAccess": true
                }),
            ),
        ] {
            let a = h.admin_post(path, serde_json::to_vec(&body).expect("json"));
            assert_eq!(a.status, StatusCode::CREATED, "{path}");
        }
        h
    }

    fn admin_post(&self, path: &str, body: Vec<u8>) -> Answer {
        let req = Request::post(format!("/admin/v1{path}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .body(Body::from(body))
            .expect("request");
        self.rt.block_on(call(&self.admin, req))
    }

    /// Runs `test` on `cases` values of `strategy`; on failure, panics with the minimal
    /// failing input proptest shrank it to.
    fn check<S: Strategy>(
        &self,
        cases: u32,
        strategy: S,
        test: impl Fn(&Harness, S::Value) -> Result<(), TestCaseError>,
    ) where
        S::Value: std::fmt::Debug,
    {
        let mut runner = TestRunner::new(config(cases));
        if let Err(e) = runner.run(&strategy, |v| test(self, v)) {
            panic!("{e}");
        }
    }
}

/// An RFC 6749 section 5.2 error body.
fn protocol_error(a: &Answer) -> Result<(), TestCaseError> {
    let body = a.json();
    prop_assert!(
        body.as_ref().is_some_and(|b| b["error"].is_string()),
        "{} {}",
        a.status,
        String::from_utf8_lossy(&a.body)
    );
    Ok(())
}

/// `name=value` pairs (names may repeat) as a form body, values form-encoded.
fn form(pairs: &[(String, String)]) -> Vec<u8> {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish().into_bytes()
}

fn pairs(
    names: &'static [&'static str],
    values: Vec<&'static str>,
) -> impl Strategy<Value = Vec<(String, String)>> {
    let value = prop_oneof![
        3 => prop::sample::select(values).prop_map(str::to_owned),
        1 => nasty_string(),
    ];
    prop::collection::vec(
        (prop::sample::select(names).prop_map(str::to_owned), value),
        0..7,
    )
}

const TOKEN_PARAMS: &[&str] = &[
    "grant_type",
    "scope",
    "client_id",
    "client_secret",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "subject_token",
    "subject_token_type",
    "resource",
    "audience",
    "device_code",
];

/// Good token requests (the first authenticates with Basic), which [`token_request`] edits.
fn token_template(which: usize) -> Vec<(&'static str, &'static str)> {
    match which {
        0 => vec![
            ("grant_type", "client_credentials"),
            ("scope", "orders.read"),
        ],
        1 => vec![
            ("grant_type", "client_credentials"),
            ("client_id", "backend"),
            ("client_secret", BACKEND_SECRET),
        ],
        2 => vec![
            ("grant_type", "authorization_code"),
            ("client_id", "web"),
            ("code", "not-a-code"),
            ("redirect_uri", "https://app.example/cb"),
            (
                "code_verifier",
                "dBjftJeZ4CVP-mJ0LbmCqxJW9X8Nqn_H96LJPLkgK0Y",
            ),
        ],
        3 => vec![
            ("grant_type", "refresh_token"),
            ("client_id", "web"),
            ("refresh_token", "not-a-token"),
        ],
        _ => vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("client_id", "web"),
            ("subject_token", "sk_abc"),
            (
                "subject_token_type",
                "urn:signet:params:oauth:token-type:api_key",
            ),
        ],
    }
}

/// Pairs of `base` with some dropped (`keep`) and `extra` ones replacing or repeating them.
fn edit(
    base: &[(&str, &str)],
    keep: Vec<bool>,
    extra: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = base
        .iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|((n, v), _)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    for (n, v) in extra {
        // Mostly replace, sometimes repeat.
        if v.len() % 4 != 0 {
            p.retain(|(k, _)| *k != n);
        }
        p.push((n, v));
    }
    p
}

fn token_request() -> impl Strategy<Value = (Option<String>, String, Vec<u8>)> {
    let values = vec![
        "client_credentials",
        "authorization_code",
        "refresh_token",
        "password",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "urn:ietf:params:oauth:grant-type:device_code",
        "backend",
        "web",
        BACKEND_SECRET,
        "orders.read",
        "openid",
        "orders.read orders.read",
        "https://app.example/cb",
        "urn:ietf:params:oauth:token-type:access_token",
        "sk_abc",
    ];
    let authorization = prop_oneof![
        Just(basic("backend", &format!("{BACKEND_SECRET}&x"))),
        Just(basic("backend", "wrong-secret-0123456789")),
        Just(basic("web", "")),
        Just(basic("nobody", BACKEND_SECRET)),
        Just("Basic".to_owned()),
        Just("Basic !!!".to_owned()),
        Just("Bearer abc".to_owned()),
        (nasty_string(), nasty_string()).prop_map(|(a, b)| basic(&a, &b)),
    ];
    let content_type = prop_oneof![
        6 => Just("application/x-www-form-urlencoded".to_owned()),
        1 => prop::sample::select(vec![
            "application/x-www-form-urlencoded; charset=UTF-8", "application/json",
            "text/plain", "APPLICATION/X-WWW-FORM-URLENCODED", "",
        ])
        .prop_map(str::to_owned),
    ];
    let edited = (
        0usize..5,
        prop::collection::vec(prop::bool::weighted(0.85), 5),
        prop::collection::vec(
            (
                prop::sample::select(TOKEN_PARAMS).prop_map(str::to_owned),
                prop_oneof![
                    3 => prop::sample::select(values).prop_map(str::to_owned),
                    1 => nasty_string(),
                ],
            ),
            0..3,
        ),
        prop::option::weighted(0.3, prop::option::of(authorization)),
    )
        .prop_map(|(which, keep, extra, auth)| {
            let default = (which == 0).then(|| basic("backend", BACKEND_SECRET));
            let auth = auth.unwrap_or(default);
            (auth, form(&edit(&token_template(which), keep, extra)))
        });
    let raw = (
        prop::option::of(Just(basic("backend", BACKEND_SECRET))),
        prop::collection::vec(any::<u8>(), 0..100),
    );
    let request = prop_oneof![6 => edited, 1 => raw];
    (request, content_type).prop_map(|((auth, body), ct)| (auth, ct, body))
}

#[test]
fn the_token_endpoint_answers_any_request_with_rfc6749_json() {
    let h = Harness::start();
    h.check(
        96,
        token_request(),
        |h, (authorization, content_type, body)| {
            let build = || {
                let mut r = Request::post("/oauth2/token")
                    .header(header::CONTENT_TYPE, content_type.as_str());
                if let Some(a) = &authorization {
                    r = r.header(header::AUTHORIZATION, a.as_str());
                }
                r.body(Body::from(body.clone())).expect("request")
            };
            let a = h.rt.block_on(call(&h.public, build()));
            let b = h.rt.block_on(call(&h.public, build()));
            prop_assert!(!a.status.is_server_error(), "{}", a.status);
            prop_assert_eq!(a.status, b.status);
            if a.status == StatusCode::OK {
                prop_assert!(a.json().is_some_and(|j| j["access_token"].is_string()));
                // Only the backend's exact secret authenticates (a trailing `&x` is part of it).
                let form = String::from_utf8_lossy(&body);
                prop_assert!(
                    authorization.as_deref() == Some(basic("backend", BACKEND_SECRET).as_str())
                        || form.contains("client_id=web")
                        || form.contains("client_secret="),
                    "{authorization:?} {form}"
                );
            } else {
                protocol_error(&a)?;
                prop_assert_eq!(
                    a.json().map(|j| j["error"].clone()),
                    b.json().map(|j| j["error"].clone())
                );
                // RFC 6749 section 5.2: a 401 carries a challenge exactly when the client
                // used the Authorization header.
                if a.status == StatusCode::UNAUTHORIZED {
                    prop_assert_eq!(a.challenge, authorization.is_some());
                }
            }
            Ok(())
        },
    );
}

const AUTHORIZE_PARAMS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "request",
];

/// A good authorization request of `web`, with some parameters changed, dropped or added.
fn authorize_request() -> impl Strategy<Value = Vec<(String, String)>> {
    let values = vec![
        "web",
        "backend",
        "https://app.example/cb",
        "http://127.0.0.1:4000/cb",
        "http://127.0.0.1:4000/cb/",
        "http://[::1]:4000/cb",
        "https://app.example/cb?x",
        "https://evil.example/cb",
        "code",
        "token",
        "code id_token",
        "form_post",
        "fragment",
        "openid",
        "openid profile offline_access",
        "S256",
        "plain",
        "none",
        "login",
        "0",
    ];
    let good = vec![
        ("client_id", "web"),
        ("redirect_uri", "https://app.example/cb"),
        ("response_type", "code"),
        ("scope", "openid profile"),
        ("state", "s"),
        (
            "code_challenge",
            "mUC84QHW1XnmFGk31dqlZ81-q8-qS-OxrweG_XEDeIU",
        ),
        ("code_challenge_method", "S256"),
    ];
    (
        prop::collection::vec(prop::bool::weighted(0.8), good.len()),
        pairs(AUTHORIZE_PARAMS, values),
    )
        .prop_map(move |(keep, extra)| edit(&good, keep, extra))
}

#[test]
fn the_authorization_endpoint_never_redirects_to_an_unregistered_uri() {
    let h = Harness::start();
    h.check(
        96,
        (authorize_request(), prop::bool::ANY),
        |h, (params, post)| {
            let query = String::from_utf8(form(&params)).expect("utf-8");
            let req = if post {
                form_post("/oauth2/authorize", None, query.into_bytes())
            } else {
                Request::get(format!("/oauth2/authorize?{query}"))
                    .body(Body::empty())
                    .expect("request")
            };
            let a = h.rt.block_on(call(&h.public, req));
            prop_assert!(!a.status.is_server_error(), "{}", a.status);
            let Some(location) = a.location else {
                return Ok(());
            };
            let own_page = |page: &str| location.starts_with(&format!("{}{page}", h.issuer));
            if location.starts_with('/') || own_page("/login?") || own_page("/consent?") {
                return Ok(()); // our own sign-in pages
            }
            // The client's redirect URI: the requested one (which must match a registered
            // one), or the only registered one when the request named none.
            let requested: Vec<&str> = params
                .iter()
                .filter(|(k, _)| k == "redirect_uri")
                .map(|(_, v)| v.as_str())
                .collect();
            let target = match requested.as_slice() {
                [uri] if !uri.is_empty() => *uri,
                _ => {
                    return Err(TestCaseError::fail(format!(
                        "redirected to {location} without one redirect_uri"
                    )))
                }
            };
            prop_assert!(
                WEB_REDIRECTS
                    .iter()
                    .any(|g| redirect_uri_matches(g, target)),
                "redirected to unregistered {target}"
            );
            let rest = location.strip_prefix(target);
            prop_assert!(
                rest.is_some_and(|r| r.starts_with(['?', '#', '&'])),
                "{location} is not {target} with parameters"
            );
            Ok(())
        },
    );
}

#[test]
fn the_admin_api_answers_any_body_with_json_naming_the_field() {
    let h = Harness::start();
    let kinds = prop_oneof![
        json_object(CLIENT_MEMBERS).prop_map(|b| ("/Client", b)),
        json_object(API_RESOURCE_MEMBERS).prop_map(|b| ("/Resource/ApiResource", b)),
        json_object(SCOPE_MEMBERS).prop_map(|b| ("/Resource/ApiScope", b)),
        json_object(SCOPE_MEMBERS).prop_map(|b| ("/Resource/IdentityResource", b)),
        json_object(USER_MEMBERS).prop_map(|b| ("/User", b)),
    ];
    let secret = "[A-Za-z0-9]{20}".prop_map(|s| format!("fz{s}"));
    h.check(
        64,
        (kinds, secret, 0u8..4),
        |h, ((path, mut body), secret, how)| {
            // A secret somewhere it belongs: it must never come back.
            if let Some(map) = body.as_object_mut() {
                match (path, how) {
                    ("/Client", 0 | 1) => {
                        map.insert("clientSecrets".into(), json!([{"value": secret}]));
                    }
                    ("/Resource/ApiResource", 0 | 1) => {
                        map.insert("apiSecrets".into(), json!([{"value": secret}]));
                    }
                    ("/User", 0 | 1) => {
                        map.insert("password".into(), json!(secret));
                    }
                    _ => {}
                }
            }
            let bytes = if how == 3 {
                // Broken JSON: cut short.
                let b = serde_json::to_vec(&body).expect("json");
                b[..b.len() / 2].to_vec()
            } else {
                serde_json::to_vec(&body).expect("json")
            };
            let a = h.admin_post(path, bytes);
            prop_assert!(!a.status.is_server_error(), "{}", a.status);
            let text = String::from_utf8_lossy(&a.body);
            prop_assert!(!text.contains(&secret), "{text}");
            if a.status == StatusCode::BAD_REQUEST {
                let j = a.json();
                prop_assert!(
                    j.as_ref().is_some_and(|j| j["error"].is_string()
                        && j["field"].as_str().is_some_and(|f| !f.is_empty())),
                    "{text}"
                );
            } else {
                prop_assert!(
                    [StatusCode::CREATED, StatusCode::CONFLICT].contains(&a.status),
                    "{} {text}",
                    a.status
                );
            }
            Ok(())
        },
    );
}

/// Other methods and odd paths: never a 5xx, always JSON.
#[test]
fn odd_methods_and_paths_are_answered_without_a_server_error() {
    let h = Harness::start();
    let method = prop::sample::select(vec![
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ]);
    let path = prop_oneof![
        prop::sample::select(vec![
            "/oauth2/token",
            "/oauth2/authorize",
            "/oauth2/introspect",
            "/oauth2/revoke",
            "/userinfo",
            "/oauth2/jwks",
            "/.well-known/openid-configuration",
            "/login",
            "/consent",
            "/oauth2/device_authorization",
            "/device",
            "/account/api-keys/keys",
            "/oauth2/token/",
            "//oauth2/token",
        ])
        .prop_map(str::to_owned),
        "/[a-z%./]{0,20}",
    ];
    h.check(
        64,
        (method, path, prop::collection::vec(any::<u8>(), 0..40)),
        |h, (m, p, body)| {
            let Ok(req) = Request::builder()
                .method(m)
                .uri(p.as_str())
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::AUTHORIZATION, "Bearer not-a-token")
                .body(Body::from(body))
            else {
                return Ok(()); // not a valid request target: never reaches the server
            };
            let a = h.rt.block_on(call(&h.public, req));
            prop_assert!(!a.status.is_server_error(), "{} {p}", a.status);
            Ok(())
        },
    );
}
