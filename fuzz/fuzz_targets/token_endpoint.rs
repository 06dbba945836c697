//! `POST /oauth2/token` through the real public router of a node on a temporary data
//! directory (no socket). The input's first line is the `Authorization` header (empty: none),
//! the rest the form body. Never a 5xx; every error is RFC 6749 JSON.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request};
use axum::Router;
use libfuzzer_sys::fuzz_target;
use signet_issuer::{Node, NodeConfig};
use tower::ServiceExt;

struct Harness {
    rt: tokio::runtime::Runtime,
    public: Router,
    // Kept alive for the whole run: the node holds the data directory.
    _node: Node,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let node = rt.block_on(async {
            let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            let node = Node::start(NodeConfig {
                listen: any_port,
                admin_listen: any_port,
                admin_client_secret: Some("fuzz-admin-secret-0123456789abcdef".to_owned()),
                ..NodeConfig::new(dir.path().to_path_buf())
            })
            .await
            .expect("node start");
            // The follower runs on this runtime: spawned inside it.
            node.state().spawn_follower();
            node
        });
        let public = signet_issuer::http::public_router(node.state().clone());
        Harness {
            rt,
            public,
            _node: node,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let (auth, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let mut req = Request::post("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if !auth.is_empty() {
        let Ok(v) = HeaderValue::from_bytes(auth) else {
            return;
        };
        req = req.header(header::AUTHORIZATION, v);
    }
    let req = req.body(Body::from(body.to_vec())).expect("request");
    let (status, bytes) = h.rt.block_on(async {
        let resp = h.public.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        (
            status,
            axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .expect("body"),
        )
    });
    assert!(!status.is_server_error(), "{status}");
    if !status.is_success() {
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON error");
        assert!(v["error"].is_string(), "{v}");
    }
});
