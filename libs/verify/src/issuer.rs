//! The issuer as a resource server sees it: its discovery document (OpenID Connect
//! Discovery 1.0 section 4), fetched from `<issuer>/.well-known/openid-configuration`,
//! whose `issuer` must equal the configured issuer exactly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use serde::Deserialize;

/// The members of the discovery document this crate uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Discovery {
    pub(crate) issuer: String,
    pub(crate) jwks_uri: String,
    #[serde(default)]
    pub(crate) introspection_endpoint: Option<String>,
}

/// How long a discovery document is used before it is fetched again.
const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(3600);
/// The largest response body read from the issuer.
const MAX_BODY: usize = 1 << 20;

struct Cached {
    doc: Arc<Discovery>,
    fetched: Instant,
}

/// HTTP access to one issuer, with its discovery document cached.
pub(crate) struct IssuerClient {
    pub(crate) http: reqwest::Client,
    pub(crate) issuer: String,
    discovery: ArcSwapOption<Cached>,
    fetch: tokio::sync::Mutex<()>,
}

impl IssuerClient {
    pub(crate) fn new(http: reqwest::Client, issuer: String) -> Self {
        IssuerClient {
            http,
            issuer,
            discovery: ArcSwapOption::empty(),
            fetch: tokio::sync::Mutex::new(()),
        }
    }

    /// `<issuer>/<path>` for an issuer that may carry a path.
    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer.trim_end_matches('/'))
    }

    /// The discovery document, fetched when missing or older than an hour.
    pub(crate) async fn discovery(&self) -> Result<Arc<Discovery>, String> {
        if let Some(c) = self.discovery.load_full() {
            if c.fetched.elapsed() < DISCOVERY_MAX_AGE {
                return Ok(c.doc.clone());
            }
        }
        let _one_at_a_time = self.fetch.lock().await;
        if let Some(c) = self.discovery.load_full() {
            if c.fetched.elapsed() < DISCOVERY_MAX_AGE {
                return Ok(c.doc.clone());
            }
        }
        let url = self.endpoint("/.well-known/openid-configuration");
        let (body, _) = self.get(&url).await?;
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|e| format!("{url} is not a discovery document: {e}"))?;
        if doc.issuer != self.issuer {
            return Err(format!(
                "{url} names the issuer {:?}, not the configured {:?}",
                doc.issuer, self.issuer
            ));
        }
        let doc = Arc::new(doc);
        self.discovery.store(Some(Arc::new(Cached {
            doc: doc.clone(),
            fetched: Instant::now(),
        })));
        Ok(doc)
    }

    /// Forgets the discovery document (after the JWKS behind it could not be fetched).
    pub(crate) fn forget_discovery(&self) {
        self.discovery.store(None);
    }

    /// GETs `url`, expecting 200; returns the body and the `Cache-Control` header.
    pub(crate) async fn get(&self, url: &str) -> Result<(Vec<u8>, Option<String>), String> {
        let resp = self
            .http
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status();
        if status != reqwest::StatusCode::OK {
            return Err(format!("GET {url} answered {status}"));
        }
        let cache_control = resp
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(resp)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        Ok((body, cache_control))
    }
}

/// Reads a response body of at most [`MAX_BODY`] bytes.
pub(crate) async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("the response is larger than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
