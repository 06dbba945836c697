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
}

impl VerifierBuilder {
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
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        if token.is_empty() {
            return Err(VerifyError::MissingToken);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Malformed("the token is too long".into()));
        }
        if looks_like_jwt(token) {
            self.verify_jwt(token).await
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
    pub async fn verify_jwt(&self, token: &str) -> Result<Claims, VerifyError> {
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
