//! Token introspection (RFC 7662) for opaque tokens: reference access tokens and API keys.
//!
//! The resource server authenticates as an API resource (its name and one of its
//! `apiSecrets`) with HTTP Basic (RFC 6749 section 2.3.1: both form-urlencoded first), and
//! posts `token=<token>` to the issuer's `introspection_endpoint` (from discovery; else
//! `<issuer>/oauth2/introspect`). Answers are cached briefly (by a SHA-256 of the token, so
//! the cache holds no usable token), never beyond the token's `exp`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::claims::{Claims, TokenKind};
use crate::error::VerifyError;
use crate::issuer::{read_limited, IssuerClient};
use crate::unix_now;

/// The default lifetime of a cached introspection answer.
pub const DEFAULT_INTROSPECTION_CACHE: Duration = Duration::from_secs(30);
/// The default largest number of cached answers.
pub const DEFAULT_INTROSPECTION_CACHE_ENTRIES: usize = 10_000;

/// How a resource server introspects opaque tokens.
#[derive(Clone)]
pub struct IntrospectionConfig {
    /// The API resource's name (the Basic user name).
    pub client_id: String,
    /// One of the API resource's `apiSecrets`.
    pub client_secret: String,
    /// The endpoint; `None`: discovery's `introspection_endpoint`, else
    /// `<issuer>/oauth2/introspect`.
    pub endpoint: Option<String>,
    /// How long an answer is reused (default 30 s; never beyond the token's `exp`; zero
    /// disables the cache).
    pub cache_ttl: Duration,
    /// The largest number of cached answers (default 10,000).
    pub max_cache_entries: usize,
}

impl IntrospectionConfig {
    /// Credentials of an API resource, with the default cache.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        IntrospectionConfig {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            endpoint: None,
            cache_ttl: DEFAULT_INTROSPECTION_CACHE,
            max_cache_entries: DEFAULT_INTROSPECTION_CACHE_ENTRIES,
        }
    }
}

impl std::fmt::Debug for IntrospectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionConfig")
            .field("client_id", &self.client_id)
            .field("endpoint", &self.endpoint)
            .field("cache_ttl", &self.cache_ttl)
            .field("max_cache_entries", &self.max_cache_entries)
            .finish_non_exhaustive()
    }
}

type Answer = Result<Arc<Claims>, VerifyError>;

/// The introspection client of one verifier.
pub(crate) struct Introspector {
    issuer: Arc<IssuerClient>,
    config: IntrospectionConfig,
    /// The Basic `Authorization` value, built once.
    authorization: String,
    cache: Mutex<HashMap<[u8; 32], (Instant, Answer)>>,
    requests: std::sync::atomic::AtomicU64,
}

impl Introspector {
    pub(crate) fn new(issuer: Arc<IssuerClient>, config: IntrospectionConfig) -> Self {
        use base64::Engine;
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let pair = format!("{}:{}", enc(&config.client_id), enc(&config.client_secret));
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        );
        Introspector {
            issuer,
            config,
            authorization,
            cache: Mutex::new(HashMap::new()),
            requests: Default::default(),
        }
    }

    /// Requests sent to the issuer so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The claims of an active token, or why it is not accepted. Only the issuer's answer is
    /// checked here (active, `exp`, `nbf`); the caller checks issuer, audience and revocation.
    pub(crate) async fn introspect(&self, token: &str, leeway: i64) -> Answer {
        let key = digest(token);
        let now = Instant::now();
        if let Ok(cache) = self.cache.lock() {
            if let Some((until, answer)) = cache.get(&key) {
                if now < *until {
                    return recheck(answer.clone(), leeway);
                }
            }
        }
        let answer = self.request(token).await;
        if let Err(e) = &answer {
            if e.is_unavailable() {
                // Say nothing about the token: ask again next time.
                return answer;
            }
        }
        let ttl = match &answer {
            Ok(claims) => match claims.exp {
                Some(exp) => Duration::from_secs(u64::try_from(exp - unix_now()).unwrap_or(0))
                    .min(self.config.cache_ttl),
                None => self.config.cache_ttl,
            },
            Err(_) => self.config.cache_ttl,
        };
        if !ttl.is_zero() {
            if let Ok(mut cache) = self.cache.lock() {
                if cache.len() >= self.config.max_cache_entries {
                    cache.retain(|_, (until, _)| now < *until);
                }
                if cache.len() < self.config.max_cache_entries {
                    cache.insert(key, (now + ttl, answer.clone()));
                }
            }
        }
        recheck(answer, leeway)
    }

    async fn endpoint(&self) -> Result<String, VerifyError> {
        if let Some(e) = &self.config.endpoint {
            return Ok(e.clone());
        }
        match self.issuer.discovery().await {
            Ok(d) => Ok(d
                .introspection_endpoint
                .clone()
                .unwrap_or_else(|| self.issuer.endpoint("/oauth2/introspect"))),
            Err(e) => Err(VerifyError::IntrospectionUnavailable(e)),
        }
    }

    async fn request(&self, token: &str) -> Answer {
        let endpoint = self.endpoint().await?;
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let unavailable = |e: String| VerifyError::IntrospectionUnavailable(e);
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .finish();
        let resp = self
            .issuer
            .http
            .post(&endpoint)
            .header(http::header::AUTHORIZATION, &self.authorization)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| unavailable(format!("POST {endpoint}: {e}")))?;
        let status = resp.status();
        if status != reqwest::StatusCode::OK {
            if status == reqwest::StatusCode::UNAUTHORIZED {
                tracing::error!(
                    endpoint = %endpoint,
                    client_id = %self.config.client_id,
                    "the issuer refused this resource server's introspection credentials"
                );
            }
            return Err(unavailable(format!("POST {endpoint} answered {status}")));
        }
        let body = read_limited(resp)
            .await
            .map_err(|e| unavailable(format!("POST {endpoint}: {e}")))?;
        let map: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("{endpoint} did not answer a JSON object: {e}")))?;
        match map.get("active") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => return Err(VerifyError::Inactive),
            _ => {
                return Err(unavailable(format!(
                    "{endpoint} answered without a boolean active member"
                )))
            }
        }
        Claims::from_map(map, TokenKind::Introspected).map(Arc::new)
    }
}

/// A cached answer is checked against the clock again: the token may have expired since.
fn recheck(answer: Answer, leeway: i64) -> Answer {
    let claims = answer?;
    let now = unix_now();
    if claims
        .exp
        .is_some_and(|exp| now > exp.saturating_add(leeway))
    {
        return Err(VerifyError::Expired);
    }
    if let Some(nbf) = claims.raw.get("nbf").and_then(Value::as_i64) {
        if nbf > now.saturating_add(leeway) {
            return Err(VerifyError::NotYetValid);
        }
    }
    Ok(claims)
}

fn digest(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}
