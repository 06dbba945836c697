//! The issuer's signing keys: fetched through discovery's `jwks_uri`, cached no longer than
//! the JWKS response's `Cache-Control: max-age` (and never longer than an hour), and fetched
//! again on an unknown `kid` at most once per refetch interval, so that tokens naming made-up
//! keys cannot make a resource server hammer its issuer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use serde_json::Value;
use signet_jose::{Jwk, Jwks};

use crate::error::VerifyError;
use crate::issuer::IssuerClient;

/// The longest time a JWKS is used before it is fetched again, whatever the issuer says.
pub const MAX_JWKS_AGE: Duration = Duration::from_secs(3600);
/// The lifetime of a JWKS whose response has no `max-age`.
pub const DEFAULT_JWKS_AGE: Duration = Duration::from_secs(300);
/// The default least pause between two JWKS fetches.
pub const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// A fetched key set and how long it may be used.
#[derive(Debug)]
pub(crate) struct KeySet {
    pub(crate) jwks: Jwks,
    expires: Instant,
}

impl KeySet {
    fn fresh(&self, now: Instant) -> bool {
        now < self.expires
    }
}

#[derive(Default)]
struct FetchState {
    /// When the last fetch was attempted, successful or not.
    last_attempt: Option<Instant>,
    /// Why the last attempt failed, while it is the latest.
    last_error: Option<String>,
}

/// Counters for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JwksStats {
    /// JWKS fetches attempted.
    pub fetches: u64,
}

/// The JWKS cache of one verifier.
pub(crate) struct JwksCache {
    issuer: Arc<IssuerClient>,
    /// The least pause between two fetches (also the shortest lifetime of a key set).
    refetch_interval: Duration,
    /// The longest lifetime of a key set (at most [`MAX_JWKS_AGE`]).
    max_age: Duration,
    current: ArcSwapOption<KeySet>,
    fetch: tokio::sync::Mutex<FetchState>,
    fetches: std::sync::atomic::AtomicU64,
}

impl JwksCache {
    pub(crate) fn new(
        issuer: Arc<IssuerClient>,
        refetch_interval: Duration,
        max_age: Duration,
    ) -> Self {
        JwksCache {
            issuer,
            refetch_interval,
            max_age: max_age.min(MAX_JWKS_AGE),
            current: ArcSwapOption::empty(),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            fetches: Default::default(),
        }
    }

    pub(crate) fn stats(&self) -> JwksStats {
        JwksStats {
            fetches: self.fetches.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// A current key set that holds `kid`: the cached one, or a freshly fetched one when the
    /// cache is empty, expired, or lacks `kid` (at most one fetch per refetch interval).
    pub(crate) async fn key_set_with(&self, kid: &str) -> Result<Arc<KeySet>, VerifyError> {
        if let Some(set) = self.current.load_full() {
            if set.fresh(Instant::now()) && set.jwks.find(kid).is_some() {
                return Ok(set);
            }
        }
        let mut state = self.fetch.lock().await;
        // Another request may have fetched while this one waited.
        let now = Instant::now();
        let cached = self.current.load_full().filter(|s| s.fresh(now));
        if let Some(set) = &cached {
            if set.jwks.find(kid).is_some() {
                return Ok(set.clone());
            }
        }
        if let Some(last) = state.last_attempt {
            if now.duration_since(last) < self.refetch_interval {
                return Err(match (&cached, &state.last_error) {
                    (Some(_), _) => VerifyError::UnknownKey(truncate(kid)),
                    (None, Some(e)) => VerifyError::KeysUnavailable(e.clone()),
                    (None, None) => VerifyError::KeysUnavailable("no key set".into()),
                });
            }
        }
        state.last_attempt = Some(now);
        match self.fetch_once().await {
            Ok(set) => {
                state.last_error = None;
                let set = Arc::new(set);
                self.current.store(Some(set.clone()));
                if set.jwks.find(kid).is_some() {
                    Ok(set)
                } else {
                    Err(VerifyError::UnknownKey(truncate(kid)))
                }
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer.issuer, error = %e, "fetching the JWKS failed");
                state.last_error = Some(e.clone());
                match cached {
                    // The cached set is still within its lifetime: the key is just unknown.
                    Some(_) => Err(VerifyError::UnknownKey(truncate(kid))),
                    None => Err(VerifyError::KeysUnavailable(e)),
                }
            }
        }
    }

    /// Fetches discovery (when needed) and the JWKS.
    async fn fetch_once(&self) -> Result<KeySet, String> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let discovery = self.issuer.discovery().await?;
        let (body, cache_control) = match self.issuer.get(&discovery.jwks_uri).await {
            Ok(r) => r,
            Err(e) => {
                // The issuer may have moved its JWKS: read discovery again next time.
                self.issuer.forget_discovery();
                return Err(e);
            }
        };
        let jwks = parse_jwks(&body).map_err(|e| format!("{}: {e}", discovery.jwks_uri))?;
        let age = lifetime(
            cache_control.as_deref(),
            self.max_age,
            self.refetch_interval,
        );
        Ok(KeySet {
            jwks,
            expires: Instant::now() + age,
        })
    }
}

/// Parses a JWK Set, keeping the signing keys this crate can verify with and skipping the
/// others (other algorithms, encryption keys, members it does not know).
pub(crate) fn parse_jwks(body: &[u8]) -> Result<Jwks, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS has no keys array")?;
    let keys = keys
        .iter()
        .filter_map(|k| match serde_json::from_value::<Jwk>(k.clone()) {
            Ok(jwk) if jwk.use_ == "sig" => Some(jwk),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "skipping a JWK this verifier cannot use");
                None
            }
        })
        .collect();
    Ok(Jwks { keys })
}

/// How long a JWKS fetched with this `Cache-Control` is used: its `max-age` (else
/// [`DEFAULT_JWKS_AGE`]), at most `max_age` and [`MAX_JWKS_AGE`], and at least the refetch
/// interval, so that even `max-age=0` cannot make every request fetch.
pub(crate) fn lifetime(
    cache_control: Option<&str>,
    max_age_cap: Duration,
    refetch_interval: Duration,
) -> Duration {
    cache_control
        .and_then(max_age)
        .unwrap_or(DEFAULT_JWKS_AGE)
        .min(max_age_cap)
        .min(MAX_JWKS_AGE)
        .max(refetch_interval)
}

/// The `max-age` of a `Cache-Control` value; `no-store` and `no-cache` count as 0.
pub(crate) fn max_age(cache_control: &str) -> Option<Duration> {
    let mut age = None;
    for directive in cache_control.split(',') {
        let directive = directive.trim();
        let (name, value) = directive
            .split_once('=')
            .map_or((directive, None), |(n, v)| (n.trim(), Some(v.trim())));
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age") {
            age = value
                .map(|v| v.trim_matches('"'))
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
        }
    }
    age
}

/// A `kid` as it may appear in an error: attackers choose it, so keep it short.
fn truncate(kid: &str) -> String {
    kid.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_reads_the_directive() {
        assert_eq!(
            max_age("public, max-age=900"),
            Some(Duration::from_secs(900))
        );
        assert_eq!(max_age("MAX-AGE=\"5\""), Some(Duration::from_secs(5)));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
        assert_eq!(max_age("no-store, max-age=900"), Some(Duration::ZERO));
    }

    #[test]
    fn lifetime_is_max_age_capped_at_an_hour_and_floored_at_the_refetch_interval() {
        let s = Duration::from_secs;
        assert_eq!(
            lifetime(Some("public, max-age=900"), MAX_JWKS_AGE, s(10)),
            s(900)
        );
        assert_eq!(
            lifetime(Some("max-age=86400"), MAX_JWKS_AGE, s(10)),
            s(3600)
        );
        assert_eq!(lifetime(Some("max-age=86400"), s(60), s(10)), s(60));
        assert_eq!(lifetime(None, MAX_JWKS_AGE, s(10)), DEFAULT_JWKS_AGE);
        assert_eq!(lifetime(Some("no-store"), MAX_JWKS_AGE, s(10)), s(10));
        assert_eq!(lifetime(Some("max-age=2"), MAX_JWKS_AGE, s(10)), s(10));
    }

    #[test]
    fn jwks_parsing_skips_unusable_keys() {
        let body = br#"{"keys":[
            {"kty":"oct","kid":"h","alg":"HS256","use":"sig","k":"c2VjcmV0"},
            {"kty":"OKP","kid":"e","alg":"EdDSA","use":"sig","crv":"Ed25519","x":"AAAA"},
            {"kty":"OKP","kid":"enc","alg":"EdDSA","use":"enc","crv":"Ed25519","x":"AAAA"}
        ]}"#;
        let jwks = parse_jwks(body).unwrap();
        assert_eq!(jwks.keys.len(), 1);
        assert_eq!(jwks.keys[0].kid, "e");
        assert!(parse_jwks(b"[]").is_err());
        assert!(parse_jwks(b"nope").is_err());
    }
}
