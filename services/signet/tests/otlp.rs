//! With the `otlp` feature, `signet serve --otlp-endpoint URL` exports its request spans
//! over OTLP/HTTP. A small collector stand-in receives them: it checks what reaches the
//! wire (path, content type, service and span names), not a mock of the exporter.
#![cfg(feature = "otlp")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;

type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn request_spans_reach_an_otlp_collector() {
    let received: Received = Arc::default();
    let sink = received.clone();
    let collector = axum::Router::new().route(
        "/v1/traces",
        post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let ct = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                sink.lock().unwrap().push((ct, body.to_vec()));
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let dir = tempfile::tempdir().unwrap();
    let (public, admin) = (free_port(), free_port());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_signet"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--issuer", &format!("http://127.0.0.1:{public}")])
        .args(["--listen", &format!("127.0.0.1:{public}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--otlp-endpoint", &format!("http://{collector_addr}")])
        .env("SIGNET_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{public}/readyz"))
            .send()
            .await
        {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "signet did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        http.get(format!("http://127.0.0.1:{public}/healthz"))
            .send()
            .await
            .unwrap();
    }
    // A clean shutdown flushes the batch exporter.
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());

    let got = received.lock().unwrap().clone();
    assert!(!got.is_empty(), "no OTLP export reached the collector");
    let all: Vec<u8> = got.iter().flat_map(|(_, b)| b.clone()).collect();
    assert!(
        got.iter().all(|(ct, _)| ct == "application/x-protobuf"),
        "{:?}",
        got.iter().map(|g| &g.0).collect::<Vec<_>>()
    );
    let contains = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"signet"), "service name exported");
    assert!(contains(b"request"), "request span exported");
    assert!(contains(b"/healthz"), "span attributes exported");
}
