//! Token verification: JWT access tokens (RFC 9068) locally against the issuer's JWKS,
//! opaque tokens through introspection (RFC 7662), both against the revocation set.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};
use signet_jose::{Algorithm, JoseError};

use crate::claims::{Claims, TokenKind};
use crate::error::{ConfigError, VerifyError};
use crate::feed::Revocations;
use crate::introspect::{IntrospectionConfig, Introspector};
use crate::issuer::IssuerClient;
use crate::jwks::{JwksCache, JwksStats, DEFAULT_REFETCH_INTERVAL, MAX_JWKS_AGE};
use crate::unix_now;

/// The `events` member of a back-channel logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The claims of a verified back-channel logout token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LogoutClaims {
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub sid: Option<String>,
}

/// What a resource server passes to [`Verifier::verify_dpop`]: the request's `DPoP`
/// header, its method and its URL as the client addressed it (scheme, host, port, path).
#[derive(Debug, Clone, Copy)]
pub struct DpopRequest<'a> {
    pub proof: &'a str,
    pub method: &'a str,
    pub url: &'a str,
}

/// The default age a DPoP proof may have (its `iat` in the past), in seconds.
pub const DEFAULT_DPOP_MAX_AGE: Duration = Duration::from_secs(60);
/// The default bound of the DPoP replay cache, in proofs.
pub const DEFAULT_DPOP_REPLAY_CAPACITY: usize = 100_000;
/// How far ahead a proof's `iat` may be (the leeway, at most this), in seconds.
const DPOP_MAX_FUTURE: i64 = 5;

/// The `cnf.jkt` of a token's claims (RFC 9449 section 6).
fn bound_jkt(claims: &Claims) -> Option<&str> {
    claims
        .raw
        .get("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(Value::as_str)
}

/// The `cnf.x5t#S256` of a token's claims (RFC 8705 section 3.1).
fn bound_x5t(claims: &Claims) -> Option<&str> {
    claims
        .raw
        .get("cnf")
        .and_then(|c| c.get("x5t#S256"))
        .and_then(Value::as_str)
}

fn refuse_bound(claims: Claims) -> Result<Claims, VerifyError> {
    if bound_jkt(&claims).is_some() {
        return Err(VerifyError::DpopBound);
    }
    if bound_x5t(&claims).is_some() {
        return Err(VerifyError::CertificateMismatch);
    }
    Ok(claims)
}

/// RFC 8705 section 3: a certificate-bound token's `x5t#S256` must be the SHA-256
/// thumbprint of `cert_der`, the client certificate of the request; an unbound token
/// passes whatever the certificate.
pub fn check_certificate_binding(
    claims: &Claims,
    cert_der: Option<&[u8]>,
) -> Result<(), VerifyError> {
    let Some(bound) = bound_x5t(claims) else {
        return Ok(());
    };
    let presented = cert_der.map(|der| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
    });
    match presented {
        Some(t) if subtle_eq(t.as_bytes(), bound.as_bytes()) => Ok(()),
        _ => Err(VerifyError::CertificateMismatch),
    }
}

/// Constant-time equality of two byte strings (their lengths are public).
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The DER of a client certificate as a TLS-terminating proxy forwards it in a header:
/// base64 DER (HAProxy `%[ssl_c_der,base64]`) or URL-encoded PEM (nginx
/// `$ssl_client_escaped_cert`). `None` for anything else (and for an empty value). Read
/// such a header only from the proxy itself: anyone else can send it.
pub fn certificate_from_header(value: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let decoded: String = if value.contains('%') {
        let bytes: Vec<u8> = {
            let v = value.as_bytes();
            let hex = |b: u8| char::from(b).to_digit(16);
            let mut out = Vec::with_capacity(v.len());
            let mut i = 0;
            while i < v.len() {
                match (
                    v[i],
                    v.get(i + 1).copied().and_then(hex),
                    v.get(i + 2).copied().and_then(hex),
                ) {
                    (b'%', Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    (b, _, _) => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            out
        };
        String::from_utf8(bytes).ok()?
    } else {
        value.to_owned()
    };
    let text = decoded.trim();
    let body: String = if text.starts_with("-----BEGIN CERTIFICATE-----") {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----"))
            .collect()
    } else {
        text.to_owned()
    };
    if body.is_empty() {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .ok()
}

/// The `jti`s of DPoP proofs seen, until their proofs expire. Bounded: when full after
/// expired entries are dropped, new proofs are refused (failing closed, never forgetting a
/// live proof).
#[derive(Debug)]
struct ReplayCache {
    seen: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    capacity: usize,
}

impl ReplayCache {
    fn record(&self, key: &str, now: i64, ttl: i64) -> Result<(), VerifyError> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(exp) = seen.get(key) {
            if *exp >= now {
                return Err(VerifyError::InvalidDpopProof(
                    "the proof was already used: each jti is accepted once".into(),
                ));
            }
        }
        if seen.len() >= self.capacity {
            seen.retain(|_, exp| *exp >= now);
            if seen.len() >= self.capacity {
                return Err(VerifyError::InvalidDpopProof(
                    "too many recent proofs to remember; retry shortly".into(),
                ));
            }
        }
        seen.insert(key.to_owned(), now + ttl);
        Ok(())
    }
}

/// The default clock leeway for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The longest token this crate looks at.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Builds a [`Verifier`].
#[derive(Debug, Clone)]
pub struct VerifierBuilder {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    refetch_interval: Duration,
    max_jwks_age: Duration,
    introspection: Option<IntrospectionConfig>,
    revocations: Option<Revocations>,
    require_caught_up: bool,
    http: Option<reqwest::Client>,
    http_timeout: Duration,
    dpop_max_age: Duration,
    dpop_replay_capacity: usize,
}

impl VerifierBuilder {
    /// How old a DPoP proof may be (default 60 s).
    pub fn dpop_max_age(mut self, age: Duration) -> Self {
        self.dpop_max_age = age;
        self
    }

    /// How many DPoP proofs the replay cache remembers at most (default 100 000); when
    /// full of live proofs, new ones are refused.
    pub fn dpop_replay_capacity(mut self, capacity: usize) -> Self {
        self.dpop_replay_capacity = capacity.max(1);
        self
    }

    /// Which algorithms are accepted (default: all four Signet signs with: RS256, PS256,
    /// ES256, EdDSA). `none` and HMAC are never accepted.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Clock leeway for `exp` and `nbf` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The least pause between two JWKS fetches, which bounds the refetches caused by
    /// tokens with unknown `kid`s (default 10 s). It is also the shortest time a JWKS is
    /// kept, even when the issuer says `max-age=0`.
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// The longest time a JWKS is kept (default and at most one hour; the issuer's
    /// `Cache-Control: max-age` shortens it).
    pub fn max_jwks_age(mut self, age: Duration) -> Self {
        self.max_jwks_age = age.min(MAX_JWKS_AGE);
        self
    }

    /// Accepts opaque tokens (reference tokens, API keys) through introspection.
    pub fn introspection(mut self, config: IntrospectionConfig) -> Self {
        self.introspection = Some(config);
        self
    }

    /// Refuses tokens found in this revocation set (usually fed by a
    /// [`RevocationSubscriber`](crate::RevocationSubscriber)). Until the set is caught up,
    /// verification answers [`VerifyError::RevocationsNotReady`] (503), unless
    /// [`require_caught_up(false)`](Self::require_caught_up).
    pub fn revocations(mut self, revocations: Revocations) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Whether tokens are refused (503) until the revocation history is replayed (default
    /// true).
    pub fn require_caught_up(mut self, require: bool) -> Self {
        self.require_caught_up = require;
        self
    }

    /// The HTTP client for discovery, JWKS and introspection (default: one with
    /// [`http_timeout`](Self::http_timeout), no redirects).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Timeout of each request to the issuer with the default client (default 10 s).
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    pub fn build(self) -> Result<Verifier, ConfigError> {
        let absolute = |u: &str| {
            reqwest::Url::parse(u)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .is_some()
        };
        if !absolute(&self.issuer) {
            return Err(ConfigError::Issuer(self.issuer));
        }
        if self.audience.is_empty() {
            return Err(ConfigError::Audience);
        }
        if self.algorithms.is_empty() {
            return Err(ConfigError::Algorithms);
        }
        if let Some(endpoint) = self
            .introspection
            .as_ref()
            .and_then(|i| i.endpoint.as_ref())
        {
            if !absolute(endpoint) {
                return Err(ConfigError::IntrospectionEndpoint(endpoint.clone()));
            }
        }
        let http = match self.http {
            Some(c) => c,
            None => reqwest::Client::builder()
                .timeout(self.http_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("signet-verify/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ConfigError::HttpClient(e.to_string()))?,
        };
        let issuer = Arc::new(IssuerClient::new(http, self.issuer));
        let jwks = JwksCache::new(issuer.clone(), self.refetch_interval, self.max_jwks_age);
        let introspector = self
            .introspection
            .map(|c| Introspector::new(issuer.clone(), c));
        Ok(Verifier {
            inner: Arc::new(Inner {
                issuer,
                audience: self.audience,
                algorithms: self.algorithms,
                leeway: i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX),
                jwks,
                introspector,
                revocations: self.revocations,
                require_caught_up: self.require_caught_up,
                dpop_max_age: i64::try_from(self.dpop_max_age.as_secs()).unwrap_or(i64::MAX),
                dpop_replay: ReplayCache {
                    seen: Default::default(),
                    capacity: self.dpop_replay_capacity,
                },
            }),
        })
    }
}

struct Inner {
    issuer: Arc<IssuerClient>,
    audience: String,
    algorithms: Vec<Algorithm>,
    leeway: i64,
    jwks: JwksCache,
    introspector: Option<Introspector>,
    revocations: Option<Revocations>,
    require_caught_up: bool,
    dpop_max_age: i64,
    dpop_replay: ReplayCache,
}

/// Verifies access tokens for one audience of one issuer. Cheap to clone; share one.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer.issuer)
            .field("audience", &self.inner.audience)
            .field("algorithms", &self.inner.algorithms)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// Whether `token` has the shape of a JWS (three base64url parts, the first a JSON object
/// with an `alg`). Anything else is opaque: a reference token or an API key.
pub fn looks_like_jwt(token: &str) -> bool {
    parse_header(token).is_ok()
}

fn parse_header(token: &str) -> Result<Header, VerifyError> {
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| VerifyError::Malformed("the header is not base64url".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| VerifyError::Malformed("the header is not a JWS header".into()))
}

impl Verifier {
    /// A verifier of tokens issued by `issuer` (exactly as in its discovery document and
    /// the tokens' `iss`) for `audience` (an API resource name).
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            issuer: issuer.into(),
            audience: audience.into(),
            algorithms: Algorithm::ALL.to_vec(),
            leeway: DEFAULT_LEEWAY,
            refetch_interval: DEFAULT_REFETCH_INTERVAL,
            max_jwks_age: MAX_JWKS_AGE,
            introspection: None,
            revocations: None,
            require_caught_up: true,
            http: None,
            http_timeout: Duration::from_secs(10),
            dpop_max_age: DEFAULT_DPOP_MAX_AGE,
            dpop_replay_capacity: DEFAULT_DPOP_REPLAY_CAPACITY,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer.issuer
    }

    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// The revocation set consulted, if any.
    pub fn revocations(&self) -> Option<&Revocations> {
        self.inner.revocations.as_ref()
    }

    /// Whether opaque tokens are accepted (introspection is configured).
    pub fn accepts_opaque_tokens(&self) -> bool {
        self.inner.introspector.is_some()
    }

    /// JWKS fetch counters.
    pub fn jwks_stats(&self) -> JwksStats {
        self.inner.jwks.stats()
    }

    /// Introspection requests sent to the issuer so far.
    pub fn introspection_requests(&self) -> u64 {
        self.inner
            .introspector
            .as_ref()
            .map_or(0, Introspector::requests)
    }

    /// Fetches discovery and the JWKS now (at start, to fail early on a wrong issuer).
    pub async fn warm_up(&self) -> Result<(), VerifyError> {
        // A kid no issuer uses: this fetches, then answers "unknown key".
        match self
            .inner
            .jwks
            .key_set_with("\u{0}signet-verify-warm-up")
            .await
        {
            Ok(_) | Err(VerifyError::UnknownKey(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Verifies a bearer token: a JWT locally, anything else through introspection (when
    /// configured).
    ///
    /// A DPoP-bound token (`cnf.jkt`, RFC 9449 section 6) is refused here
    /// ([`VerifyError::DpopBound`]): it is only good with its proof,
    /// [`verify_dpop`](Self::verify_dpop).
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let claims = self.verify_any(token).await?;
        refuse_bound(claims)
    }

    /// Verifies a bearer token presented over mutual TLS (RFC 8705 section 3):
    /// `cert_der` is the DER of the client certificate of the request (the TLS
    /// connection's, or the header of the proxy that terminated it, see
    /// [`certificate_from_header`]). A certificate-bound token (`cnf.x5t#S256`) passes only
    /// with that certificate; an unbound token passes as with [`verify`](Self::verify); a
    /// DPoP-bound token is refused ([`VerifyError::DpopBound`]).
    pub async fn verify_mtls(
        &self,
        token: &str,
        cert_der: Option<&[u8]>,
    ) -> Result<Claims, VerifyError> {
        let claims = self.verify_any(token).await?;
        if bound_jkt(&claims).is_some() {
            return Err(VerifyError::DpopBound);
        }
        check_certificate_binding(&claims, cert_der)?;
        Ok(claims)
    }

    /// Verifies a DPoP-bound access token presented with `Authorization: DPoP` and its
    /// proof (RFC 9449 section 7): the token as [`verify`](Self::verify) does, then the
    /// proof (`typ`, an asymmetric `alg`, its public `jwk`, the signature, `htm` = the
    /// request's method, `htu` = its URL without query and fragment, `iat` within
    /// [`dpop_max_age`](VerifierBuilder::dpop_max_age) past and the leeway ahead, `ath` =
    /// the token's hash), that the proof's key is the token's `cnf.jkt`, and that the
    /// proof's `jti` was not seen before by this verifier (an in-memory cache per process,
    /// bounded by [`dpop_replay_capacity`](VerifierBuilder::dpop_replay_capacity); several
    /// processes behind a load balancer each keep their own, so a proof could be replayed
    /// once per process within its short window).
    pub async fn verify_dpop(
        &self,
        token: &str,
        request: &DpopRequest<'_>,
    ) -> Result<Claims, VerifyError> {
        let claims = self.verify_any(token).await?;
        let jkt = bound_jkt(&claims).ok_or(VerifyError::NotDpopBound)?;
        // Signet binds a token to DPoP or to a certificate, never both; one bound to both
        // (another issuer's) needs the certificate too.
        if bound_x5t(&claims).is_some() {
            return Err(VerifyError::CertificateMismatch);
        }
        let now = unix_now();
        let proof = signet_jose::verify_proof(
            request.proof,
            &signet_jose::ProofCheck {
                method: request.method,
                url: request.url,
                now,
                max_age: self.inner.dpop_max_age,
                max_future: self.inner.leeway.min(DPOP_MAX_FUTURE),
                access_token: Some(token),
            },
        )
        .map_err(|e| VerifyError::InvalidDpopProof(e.to_string()))?;
        if proof.jkt != jkt {
            return Err(VerifyError::InvalidDpopProof(
                "the proof is made with another key than the token is bound to".into(),
            ));
        }
        self.inner.dpop_replay.record(
            &format!("{}:{}", proof.jkt, proof.jti),
            now,
            self.inner.dpop_max_age + DPOP_MAX_FUTURE,
        )?;
        Ok(claims)
    }

    async fn verify_any(&self, token: &str) -> Result<Claims, VerifyError> {
        if token.is_empty() {
            return Err(VerifyError::MissingToken);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Malformed("the token is too long".into()));
        }
        if looks_like_jwt(token) {
            self.verify_jwt_any(token).await
        } else if self.inner.introspector.is_some() {
            self.introspect(token).await
        } else {
            Err(VerifyError::OpaqueNotAccepted)
        }
    }

    /// [`verify`](Self::verify), then demands every scope in `required`.
    pub async fn verify_with_scopes<S: AsRef<str>>(
        &self,
        token: &str,
        required: &[S],
    ) -> Result<Claims, VerifyError> {
        let claims = self.verify(token).await?;
        claims.require_scopes(required)?;
        Ok(claims)
    }

    /// Verifies a back-channel logout token as the relying party it is addressed to (OIDC
    /// Back-Channel Logout 1.0 section 2.6), with the verifier's audience as the client's
    /// `client_id`: `alg` in the allow-list, a key of the issuer's JWKS, the signature,
    /// `typ` `logout+jwt`, `iss`, `aud`, `iat`, `exp` (with the leeway), an `events`
    /// object with the back-channel logout event (an object), no `nonce`, and a `sid` or a
    /// `sub`. Replay detection by `jti` is the caller's (it needs storage).
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutClaims, VerifyError> {
        let verified = self.verify_signature(token).await?;
        let typ_ok = verified.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("logout+jwt") || t.eq_ignore_ascii_case("application/logout+jwt")
        });
        if !typ_ok {
            return Err(VerifyError::NotALogoutToken("typ is not logout+jwt"));
        }
        let map: Map<String, Value> = serde_json::from_slice(&verified.payload)
            .map_err(|_| VerifyError::Malformed("the payload is not a JSON object".into()))?;
        let claims: LogoutClaims = serde_json::from_value(Value::Object(map.clone()))
            .map_err(|_| VerifyError::NotALogoutToken("a claim has the wrong type"))?;
        if claims.iss != self.issuer() {
            return Err(VerifyError::WrongIssuer(Some(short(&claims.iss))));
        }
        let aud_ok = match map.get("aud") {
            Some(Value::String(a)) => *a == self.inner.audience,
            Some(Value::Array(v)) => v.iter().any(|a| *a == *self.inner.audience),
            _ => false,
        };
        if !aud_ok {
            return Err(VerifyError::WrongAudience);
        }
        let now = unix_now();
        if now > claims.exp.saturating_add(self.inner.leeway) {
            return Err(VerifyError::Expired);
        }
        if claims.iat > now.saturating_add(self.inner.leeway) {
            return Err(VerifyError::NotYetValid);
        }
        let event_ok = map
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT))
            .is_some_and(Value::is_object);
        if !event_ok {
            return Err(VerifyError::NotALogoutToken(
                "events lacks the back-channel logout event",
            ));
        }
        if map.contains_key("nonce") {
            return Err(VerifyError::NotALogoutToken("it carries a nonce"));
        }
        if claims.sid.is_none() && claims.sub.is_none() {
            return Err(VerifyError::NotALogoutToken(
                "it carries neither sid nor sub",
            ));
        }
        Ok(claims)
    }

    /// The header checks, the key lookup and the signature of a JWT.
    async fn verify_signature(&self, token: &str) -> Result<signet_jose::VerifiedJws, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Malformed("the token is too long".into()));
        }
        let header = parse_header(token)?;
        let alg: Algorithm = header
            .alg
            .parse()
            .map_err(|_| VerifyError::AlgorithmNotAllowed(short(&header.alg)))?;
        if !self.inner.algorithms.contains(&alg) {
            return Err(VerifyError::AlgorithmNotAllowed(short(&header.alg)));
        }
        let kid = header
            .kid
            .ok_or_else(|| VerifyError::Malformed("the header has no kid".into()))?;
        let keys = self.inner.jwks.key_set_with(&kid).await?;
        signet_jose::verify_compact(token, |k| keys.jwks.find(k)).map_err(|e| match e {
            JoseError::Malformed(m) => VerifyError::Malformed(m.to_owned()),
            JoseError::AlgorithmNotAllowed(a) => VerifyError::AlgorithmNotAllowed(short(&a)),
            JoseError::UnknownKey(k) => VerifyError::UnknownKey(short(&k)),
            _ => VerifyError::BadSignature,
        })
    }

    /// Verifies a JWT access token (RFC 9068): `alg` in the allow-list, a key of the
    /// issuer's JWKS, the signature, `typ` `at+jwt`, `iss`, `aud`, `exp`, `nbf`, and the
    /// revocation set.
    /// A DPoP-bound token is refused ([`VerifyError::DpopBound`]).
    pub async fn verify_jwt(&self, token: &str) -> Result<Claims, VerifyError> {
        refuse_bound(self.verify_jwt_any(token).await?)
    }

    async fn verify_jwt_any(&self, token: &str) -> Result<Claims, VerifyError> {
        let verified = self.verify_signature(token).await?;
        let typ_ok = verified.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(VerifyError::WrongType(verified.typ.as_deref().map(short)));
        }
        let map: Map<String, Value> = serde_json::from_slice(&verified.payload)
            .map_err(|_| VerifyError::Malformed("the payload is not a JSON object".into()))?;
        let claims = Claims::from_map(
            map,
            TokenKind::Jwt {
                kid: verified.kid,
                alg: verified.alg,
            },
        )?;
        if claims.iss.as_deref() != Some(self.issuer()) {
            return Err(VerifyError::WrongIssuer(claims.iss.as_deref().map(short)));
        }
        if claims.exp.is_none() {
            return Err(VerifyError::MissingClaim("exp"));
        }
        if !claims.aud.iter().any(|a| *a == self.inner.audience) {
            return Err(VerifyError::WrongAudience);
        }
        self.check_time_and_revocation(&claims)?;
        Ok(claims)
    }

    /// Verifies an opaque token through introspection: the issuer must call it active; an
    /// `iss` or `aud` in its answer must match, and the revocation set must not cover it.
    pub async fn introspect(&self, token: &str) -> Result<Claims, VerifyError> {
        let introspector = self
            .inner
            .introspector
            .as_ref()
            .ok_or(VerifyError::OpaqueNotAccepted)?;
        let claims = introspector.introspect(token, self.inner.leeway).await?;
        if claims
            .iss
            .as_deref()
            .is_some_and(|iss| iss != self.issuer())
        {
            return Err(VerifyError::WrongIssuer(claims.iss.as_deref().map(short)));
        }
        if !claims.aud.is_empty() && !claims.aud.iter().any(|a| *a == self.inner.audience) {
            return Err(VerifyError::WrongAudience);
        }
        self.check_time_and_revocation(&claims)?;
        Ok(Arc::unwrap_or_clone(claims))
    }

    fn check_time_and_revocation(&self, claims: &Claims) -> Result<(), VerifyError> {
        let now = unix_now();
        let leeway = self.inner.leeway;
        if claims
            .exp
            .is_some_and(|exp| now > exp.saturating_add(leeway))
        {
            return Err(VerifyError::Expired);
        }
        let nbf = match claims.raw.get("nbf") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                    .ok_or(VerifyError::MissingClaim("nbf"))?,
            ),
        };
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(VerifyError::NotYetValid);
        }
        if let Some(revs) = &self.inner.revocations {
            if revs.is_revoked(&claims.token_facts()) {
                return Err(VerifyError::Revoked);
            }
            if self.inner.require_caught_up && !revs.is_caught_up() {
                return Err(VerifyError::RevocationsNotReady);
            }
        }
        Ok(())
    }
}

/// Attacker-chosen text as it may appear in an error.
fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod mtls_tests {
    use super::*;
    use base64::Engine;

    fn claims(cnf: Value) -> Claims {
        let Value::Object(map) = serde_json::json!({"sub": "s", "cnf": cnf}) else {
            unreachable!()
        };
        Claims::from_map(map, crate::TokenKind::Introspected).unwrap()
    }

    #[test]
    fn a_certificate_bound_token_needs_its_certificate() {
        let der = b"certificate bytes";
        let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der));
        let bound = claims(serde_json::json!({"x5t#S256": x5t}));
        assert!(check_certificate_binding(&bound, Some(der)).is_ok());
        for other in [Some(&b"other"[..]), None] {
            assert!(matches!(
                check_certificate_binding(&bound, other),
                Err(VerifyError::CertificateMismatch)
            ));
        }
        assert!(matches!(
            refuse_bound(bound),
            Err(VerifyError::CertificateMismatch)
        ));
        let unbound = claims(serde_json::json!({}));
        assert!(check_certificate_binding(&unbound, None).is_ok());
    }

    #[test]
    fn proxy_headers_decode_from_base64_der_or_url_encoded_pem() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"\x30\x03\x02\x01\x01");
        assert_eq!(
            certificate_from_header(&b64).unwrap(),
            b"\x30\x03\x02\x01\x01"
        );
        let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
        let escaped: String = form_urlencoded::byte_serialize(pem.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        assert_eq!(
            certificate_from_header(&escaped).unwrap(),
            b"\x30\x03\x02\x01\x01"
        );
        assert!(certificate_from_header("").is_none());
        assert!(certificate_from_header("%%not base64").is_none());
    }
}
