//! Keys a client publishes at its `jwksUri` (a JWK Set, RFC 7517 section 5), for
//! `private_key_jwt` assertions and signed request objects.
//!
//! - Fetched through [`signet_outbound`] (the address guard, no redirects, short timeouts,
//!   a bounded body), only from the URI an administrator registered.
//! - Cached per client, no longer than the answer's `Cache-Control: max-age` and never
//!   longer than [`MAX_FRESHNESS`]; an answer without `max-age` (or with `no-store` or
//!   `no-cache`) is fresh for [`DEFAULT_FRESHNESS`] unless that is shorter than the
//!   refetch interval, which is the floor: a client cannot make every request fetch.
//! - A `kid` that the cached set lacks triggers one refetch, at most once per
//!   [`MIN_REFETCH`] per client (a key rotated at the client is picked up at once; a flood of
//!   made-up `kid`s costs the client's server one request per interval).
//! - One fetch per client at a time: concurrent requests wait for it instead of fetching
//!   too.
//! - A set with a private or symmetric key is refused whole (the client has leaked its
//!   key, or published the wrong file); keys of unsupported types or for encryption
//!   (`use: enc`) are skipped.
//!
//! A set is cached per node: a cluster's nodes each fetch (a node's cache is its own, and
//! the client's keys are public).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use signet_jose::{ClientKey, ClientKeyError};

/// The longest a fetched set is used without asking again.
pub const MAX_FRESHNESS: Duration = Duration::from_secs(3600);
/// How long a set without `max-age` is used.
pub const DEFAULT_FRESHNESS: Duration = Duration::from_secs(300);
/// The shortest time between two fetches of one client's set.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// The most keys taken from one set.
const MAX_KEYS: usize = 32;

/// Why a client's keys could not be had. Messages name the host at most, never a key.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("no outbound HTTP client on this node")]
    NoOutbound,
    #[error("fetching the client's jwksUri failed: {0}")]
    Fetch(#[from] signet_outbound::OutboundError),
    #[error("the client's jwksUri answered HTTP {0}")]
    Status(u16),
    #[error("the client's jwksUri is not a JWK Set (a JSON object with a keys array)")]
    NotASet,
    #[error("the client's JWK Set has a key that is not public: {0}")]
    PrivateKey(ClientKeyError),
}

/// A fetched set and when it was fetched.
#[derive(Clone)]
struct Fetched {
    /// The URI and the client's incarnation it was fetched for: a changed client starts
    /// over.
    uri: String,
    incarnation: u64,
    keys: Arc<Vec<ClientKey>>,
    at: Instant,
    fresh_for: Duration,
}

/// Per client: the last set, behind an async lock held across a fetch (single flight).
type Slot = Arc<tokio::sync::Mutex<Option<Fetched>>>;

/// The node's cache of clients' key sets.
#[derive(Default)]
pub struct JwksCache {
    slots: Mutex<HashMap<String, Slot>>,
}

/// What the cache should do with what it holds.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Use,
    Fetch,
}

/// Pure: whether a cached set serves a request for `kid` at `now`.
fn decide(
    cached: Option<&Fetched>,
    uri: &str,
    incarnation: u64,
    kid: Option<&str>,
    now: Instant,
) -> Decision {
    let Some(f) = cached.filter(|f| f.uri == uri && f.incarnation == incarnation) else {
        return Decision::Fetch;
    };
    let age = now.saturating_duration_since(f.at);
    if age >= f.fresh_for {
        return Decision::Fetch;
    }
    let known = kid.is_none_or(|k| {
        f.keys
            .iter()
            .any(|key| key.kid().is_none_or(|have| have == k))
    });
    if !known && age >= MIN_REFETCH {
        return Decision::Fetch;
    }
    Decision::Use
}

/// Pure: how long an answer with this `Cache-Control` is used.
fn freshness(cache_control: Option<&str>) -> Duration {
    let mut max_age = None;
    let mut uncacheable = false;
    for directive in cache_control.unwrap_or("").split(',').map(str::trim) {
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        match name.to_ascii_lowercase().as_str() {
            "no-store" | "no-cache" => uncacheable = true,
            "max-age" => max_age = value.trim_matches('"').parse::<u64>().ok(),
            _ => {}
        }
    }
    let chosen = if uncacheable {
        Duration::ZERO
    } else {
        max_age.map_or(DEFAULT_FRESHNESS, Duration::from_secs)
    };
    chosen.clamp(MIN_REFETCH, MAX_FRESHNESS)
}

/// Pure: the usable keys of a JWK Set document.
fn parse_set(body: &[u8]) -> Result<Vec<ClientKey>, JwksError> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| JwksError::NotASet)?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwksError::NotASet)?;
    let mut out = Vec::new();
    for jwk in keys {
        match ClientKey::parse(&jwk.to_string()) {
            Ok(k) if out.len() < MAX_KEYS => out.push(k),
            Ok(_) => {}
            Err(e @ ClientKeyError::PrivateMember(_)) => return Err(JwksError::PrivateKey(e)),
            // Another key type, an encryption key, a short RSA key: not one to verify with.
            Err(_) => {}
        }
    }
    Ok(out)
}

impl JwksCache {
    /// The keys published at `uri` by the client (`incarnation` of it), for a JWS whose
    /// header names `kid`.
    pub async fn keys(
        &self,
        outbound: Option<&signet_outbound::Outbound>,
        client_id: &str,
        incarnation: u64,
        uri: &str,
        kid: Option<&str>,
    ) -> Result<Arc<Vec<ClientKey>>, JwksError> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.entry(client_id.to_owned()).or_default().clone()
        };
        let mut held = slot.lock().await;
        if decide(held.as_ref(), uri, incarnation, kid, Instant::now()) == Decision::Use {
            if let Some(f) = held.as_ref() {
                return Ok(f.keys.clone());
            }
        }
        let outbound = outbound.ok_or(JwksError::NoOutbound)?;
        metrics::counter!(crate::telemetry::CLIENT_JWKS_FETCHES).increment(1);
        let answer = outbound.get(uri).await?;
        if answer.status != 200 {
            return Err(JwksError::Status(answer.status));
        }
        let keys = Arc::new(parse_set(&answer.body)?);
        let cache_control = answer
            .headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok());
        *held = Some(Fetched {
            uri: uri.to_owned(),
            incarnation,
            keys: keys.clone(),
            at: Instant::now(),
            fresh_for: freshness(cache_control),
        });
        Ok(keys)
    }
}

/// The keys `entry`'s client publishes at its `jwksUri`, for verifying `jws`; `None` for a
/// client without one. Failures are logged here (client and host, never a key).
pub async fn published_keys(
    state: &crate::state::AppState,
    entry: &signet_core::projection::ClientEntry,
    jws: &str,
) -> Result<Option<Arc<Vec<ClientKey>>>, JwksError> {
    let Some(uri) = entry.client.jwks_uri.as_deref() else {
        return Ok(None);
    };
    let kid = header_kid(jws);
    state
        .client_jwks
        .keys(
            state.outbound(),
            &entry.client.client_id,
            entry.incarnation,
            uri,
            kid.as_deref(),
        )
        .await
        .map(Some)
        .inspect_err(|e| {
            tracing::warn!(client_id = %entry.client.client_id, error = %e, "client keys unavailable");
        })
}

/// Part `index` of a compact JWS (0: the protected header, 1: the payload) as JSON, read
/// without checking anything: only to pick the client and keys to verify it with.
pub fn unverified_part(jws: &str, index: usize) -> Option<Value> {
    use base64::Engine;
    let part = jws.split('.').nth(index)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `kid` in a compact JWS's protected header, when it has one (read unverified: it only
/// picks the keys to try).
pub fn header_kid(jws: &str) -> Option<String> {
    let header = unverified_part(jws, 0)?;
    header.get("kid").and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC: &str = r#"{"kty":"EC","crv":"P-256","kid":"a","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    fn fetched(kid_json: &str, at: Instant, fresh_for: Duration) -> Fetched {
        Fetched {
            uri: "https://c.example/jwks".into(),
            incarnation: 1,
            keys: Arc::new(vec![ClientKey::parse(kid_json).unwrap()]),
            at,
            fresh_for,
        }
    }

    #[test]
    fn cache_control_bounds_freshness() {
        assert_eq!(freshness(None), DEFAULT_FRESHNESS);
        assert_eq!(freshness(Some("max-age=60")), Duration::from_secs(60));
        assert_eq!(freshness(Some("public, max-age=86400")), MAX_FRESHNESS);
        assert_eq!(freshness(Some("max-age=0")), MIN_REFETCH);
        assert_eq!(freshness(Some("no-store")), MIN_REFETCH);
        assert_eq!(freshness(Some("no-cache, max-age=600")), MIN_REFETCH);
        assert_eq!(freshness(Some("max-age=junk")), DEFAULT_FRESHNESS);
    }

    #[test]
    fn a_cached_set_serves_until_stale_and_unknown_kids_refetch_rate_limited() {
        let t0 = Instant::now();
        let f = fetched(EC, t0, Duration::from_secs(60));
        let uri = "https://c.example/jwks";
        assert_eq!(decide(None, uri, 1, None, t0), Decision::Fetch);
        assert_eq!(decide(Some(&f), uri, 1, Some("a"), t0), Decision::Use);
        assert_eq!(decide(Some(&f), uri, 1, None, t0), Decision::Use);
        // Another URI or a new life of the client: start over.
        assert_eq!(
            decide(Some(&f), "https://c.example/other", 1, None, t0),
            Decision::Fetch
        );
        assert_eq!(decide(Some(&f), uri, 2, None, t0), Decision::Fetch);
        // An unknown kid: not again within MIN_REFETCH, then once.
        assert_eq!(
            decide(Some(&f), uri, 1, Some("b"), t0 + Duration::from_secs(1)),
            Decision::Use
        );
        assert_eq!(
            decide(Some(&f), uri, 1, Some("b"), t0 + MIN_REFETCH),
            Decision::Fetch
        );
        // Stale: fetched again whatever the kid.
        assert_eq!(
            decide(Some(&f), uri, 1, Some("a"), t0 + Duration::from_secs(60)),
            Decision::Fetch
        );
    }

    #[test]
    fn a_set_with_a_private_key_is_refused_whole_and_odd_keys_are_skipped() {
        let set = format!(r#"{{"keys":[{EC},{{"kty":"oct","k":"c2VjcmV0"}}]}}"#);
        assert!(matches!(
            parse_set(set.as_bytes()),
            Err(JwksError::PrivateKey(_))
        ));
        let set = format!(r#"{{"keys":[{EC},{{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}}]}}"#);
        assert_eq!(parse_set(set.as_bytes()).unwrap().len(), 1);
        assert!(matches!(parse_set(b"[]"), Err(JwksError::NotASet)));
        assert!(matches!(
            parse_set(b"{\"keys\":{}}"),
            Err(JwksError::NotASet)
        ));
    }

    #[test]
    fn the_kid_comes_from_the_protected_header() {
        use base64::Engine;
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"alg":"ES256","kid":"k1"}"#);
        assert_eq!(header_kid(&format!("{h}.e30.sig")).as_deref(), Some("k1"));
        assert_eq!(header_kid("!!.e30.sig"), None);
    }
}
