//! A relying party's logout endpoints on loopback: records every request (method, target,
//! body) and answers with a status the test sets (and a `Location` for redirects). Serves
//! front-channel logout iframes (GET) and back-channel logout tokens (POST).

use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub body: String,
}

impl Received {
    /// A form or query parameter of the request.
    pub fn param(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        url::form_urlencoded::parse(query.as_bytes())
            .chain(url::form_urlencoded::parse(self.body.as_bytes()))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    status: u16,
    location: Option<String>,
    /// A document served instead of the logout page: content type, extra header lines,
    /// body.
    document: Option<(String, String, String)>,
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    shared: Arc<Mutex<Shared>>,
    arrived: Arc<tokio::sync::Notify>,
}

impl Receiver {
    /// Starts on a free loopback port, answering 200.
    pub async fn start() -> Result<Receiver> {
        Self::start_on(0).await
    }

    /// Starts on `port` (0: a free one), answering 200.
    pub async fn start_on(port: u16) -> Result<Receiver> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared {
            status: 200,
            ..Default::default()
        }));
        let s = shared.clone();
        let arrived = Arc::new(tokio::sync::Notify::new());
        let notify = arrived.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let s = s.clone();
                let notify = notify.clone();
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    let (status, location, document) = {
                        let mut g = s.lock().unwrap();
                        g.received.push(req);
                        (g.status, g.location.clone(), g.document.clone())
                    };
                    notify.notify_waiters();
                    let (content_type, extra, body) = document.unwrap_or_else(|| {
                        (
                            "text/html".into(),
                            String::new(),
                            "<!doctype html><title>logout</title><p>ok</p>".into(),
                        )
                    });
                    let location = location
                        .map(|l| format!("Location: {l}\r\n"))
                        .unwrap_or_default();
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n{extra}{location}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Ok(Receiver {
            base: format!("http://{addr}"),
            shared,
            arrived,
        })
    }

    /// Answers every request from now on with `status` (and `Location: location`).
    pub fn answer(&self, status: u16, location: Option<&str>) {
        let mut g = self.shared.lock().unwrap();
        g.status = status;
        g.location = location.map(str::to_owned);
    }

    /// Serves `body` as `content_type` from now on, with `headers` (`Name: value` lines
    /// without line ends) beside it: a client's JWK Set, for example.
    pub fn serve_document(&self, content_type: &str, headers: &[&str], body: &str) {
        let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
        self.shared.lock().unwrap().document =
            Some((content_type.to_owned(), extra, body.to_owned()));
    }

    /// Waits (up to `patience`) until `n` requests under `path` have arrived.
    pub async fn wait_for(&self, path: &str, n: usize, patience: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.received(path).len() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.received(path).len() >= n;
            }
        }
    }

    /// The requests received so far whose path starts with `path`.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.shared
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|r| r.target.starts_with(path))
            .cloned()
            .collect()
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let len: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    Some(Received {
        method,
        target,
        body,
    })
}
