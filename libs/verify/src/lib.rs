//! Signet's resource-server SDK: verify access tokens offline, hear revocations live.
//!
//! - [`Verifier`]: discovery (`<issuer>/.well-known/openid-configuration`, whose `issuer`
//!   must equal the configured one) and the JWKS, cached no longer than the JWKS response's
//!   `Cache-Control: max-age` and never longer than an hour, fetched again on an unknown
//!   `kid` at most once per refetch interval (default 10 s). JWT access tokens (RFC 9068)
//!   are checked locally: signature, `alg` allow-list (never `none`, never HMAC, and the
//!   key's own algorithm only), `typ: at+jwt`, `iss`, `aud` (string or list) containing the
//!   configured audience, `exp`/`nbf` with a leeway (default 30 s), scopes, and the
//!   revocation set. Opaque tokens (reference tokens, API keys) go through introspection
//!   (RFC 7662) when it is configured ([`IntrospectionConfig`]), with a short cache.
//! - [`RevocationSubscriber`]: replays the JetStream stream `SIGNET_REVOCATIONS` (subjects
//!   `signet.revocations.<kind>`, payloads in [`revocation`]) from its start, then follows
//!   it live, into a shared [`Revocations`] set; it reports when the history is replayed
//!   ([`Revocations::is_caught_up`]), and the verifier answers 503 until then. Without NATS
//!   the crate works the same, and revocation is by introspection or expiry.
//! - [`BearerAuthLayer`]: an axum/tower layer that reads `Authorization: Bearer`, verifies
//!   the token, puts the [`Claims`] into the request extensions (and makes them an
//!   extractor), and answers RFC 6750 challenges: 401 (`invalid_token`, or no error code
//!   when there is no token), 403 `insufficient_scope` with `scope=`, 400
//!   `invalid_request` for a malformed `Authorization` header, 503 with `Retry-After` while
//!   the issuer's keys or the revocation history are unavailable.
//!
//! # Errors
//!
//! [`VerifyError`] says why a token was refused and maps to the HTTP answer
//! ([`VerifyError::status`], [`VerifyError::oauth_error`]).
//!
//! # Example resource server
//!
//! `examples/resource_server.rs` protects `GET /orders` with the scope `orders.read` and
//! answers with the verified claims. Against a local `signet serve` (see the README's
//! walkthrough, which registers the `orders-api` resource and a `backend` client):
//!
//! ```sh
//! cargo run -p signet-verify --example resource_server -- \
//!     --issuer http://127.0.0.1:8080 --audience orders-api --listen 127.0.0.1:9000
//! # optionally: --nats nats://127.0.0.1:4222 (revocation events),
//! #             --introspection-secret SECRET (opaque tokens, as the API resource)
//! TOKEN=$(curl -s -u backend:backend-secret-0123456789 -d grant_type=client_credentials \
//!   http://127.0.0.1:8080/oauth2/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
//! curl -i -H "Authorization: Bearer $TOKEN" http://127.0.0.1:9000/orders
//! ```
//!
//! # In code
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{routing::get, Router};
//! use signet_verify::{BearerAuthLayer, Claims, RevocationSubscriber, Revocations, Verifier};
//!
//! let revocations = Revocations::new();
//! let _subscriber = RevocationSubscriber::connect("nats://127.0.0.1:4222", revocations.clone())?;
//! let verifier = Verifier::builder("http://127.0.0.1:8080", "orders-api")
//!     .revocations(revocations)
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/orders", get(|claims: Claims| async move { format!("{:?}", claims.sub) }))
//!     .layer(BearerAuthLayer::new(verifier).require_scopes(["orders.read"]));
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod claims;
mod error;
mod feed;
mod introspect;
mod issuer;
mod jwks;
mod layer;
pub mod revocation;
mod subscriber;
mod verifier;

pub use claims::{Claims, TokenKind};
pub use error::{ConfigError, VerifyError};
pub use feed::{FeedPhase, FeedStatus, Revocations};
pub use introspect::{
    IntrospectionConfig, DEFAULT_INTROSPECTION_CACHE, DEFAULT_INTROSPECTION_CACHE_ENTRIES,
};
pub use jwks::{JwksStats, DEFAULT_JWKS_AGE, DEFAULT_REFETCH_INTERVAL, MAX_JWKS_AGE};
pub use layer::{AuthError, BearerAuth, BearerAuthLayer};
pub use signet_jose::Algorithm;
pub use subscriber::{RevocationSubscriber, SubscriberOptions};
pub use verifier::{
    certificate_from_header, check_certificate_binding, looks_like_jwt, DpopRequest, LogoutClaims,
    Verifier, VerifierBuilder, BACKCHANNEL_LOGOUT_EVENT, DEFAULT_DPOP_MAX_AGE,
    DEFAULT_DPOP_REPLAY_CAPACITY, DEFAULT_LEEWAY, MAX_TOKEN_LEN,
};

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
