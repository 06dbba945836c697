//! The axum/tower layer: takes the `Authorization: Bearer` token (RFC 6750 section 2.1),
//! verifies it, puts the [`Claims`] into the request extensions, and answers failures with
//! RFC 6750 `WWW-Authenticate` challenges.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{routing::get, Router};
//! use signet_verify::{BearerAuthLayer, Claims, Verifier};
//!
//! let verifier = Verifier::builder("https://id.example.com", "orders-api").build()?;
//! let app: Router = Router::new()
//!     .route("/orders", get(|claims: Claims| async move { format!("hello {:?}", claims.sub) }))
//!     .layer(BearerAuthLayer::new(verifier).require_scopes(["orders.read"]));
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{Request, StatusCode};
use tower::{Layer, Service};

use crate::claims::Claims;
use crate::error::VerifyError;
use crate::verifier::Verifier;

/// A [`tower::Layer`] that demands a valid bearer token (and optionally scopes).
#[derive(Clone, Debug)]
pub struct BearerAuthLayer {
    verifier: Verifier,
    scopes: Arc<[String]>,
    realm: Arc<str>,
    /// `scheme://host[:port]` the clients address, for DPoP's `htu`.
    public_origin: Option<Arc<str>>,
    /// The header in which the TLS-terminating proxy in front forwards the client
    /// certificate (mutual TLS, RFC 8705).
    client_cert_header: Option<http::HeaderName>,
}

impl BearerAuthLayer {
    /// Demands a token `verifier` accepts. The realm of the challenges is the audience.
    pub fn new(verifier: Verifier) -> Self {
        let realm = Arc::from(verifier.audience());
        BearerAuthLayer {
            verifier,
            scopes: Arc::from([]),
            realm,
            public_origin: None,
            client_cert_header: None,
        }
    }

    /// Behind a proxy that terminates mutual TLS: the header in which it forwards the
    /// client's certificate (base64 DER or URL-encoded PEM, see
    /// [`crate::certificate_from_header`]). Bearer tokens are then verified with
    /// [`Verifier::verify_mtls`]: a certificate-bound token passes only with its
    /// certificate. The proxy must remove the header from what clients send: it is
    /// believed as it arrives.
    pub fn client_cert_header(mut self, name: http::HeaderName) -> Self {
        self.client_cert_header = Some(name);
        self
    }

    /// The origin (`https://api.example.com`) clients address this server at: a DPoP
    /// proof's `htu` must be this origin plus the request's path (RFC 9449 section 4.3).
    /// Without it the origin is `http://` plus the request's `Host` header, which is right
    /// only for a plain-http server reached directly: set it behind TLS or a proxy.
    pub fn public_origin(mut self, origin: impl AsRef<str>) -> Self {
        self.public_origin = Some(Arc::from(origin.as_ref().trim_end_matches('/')));
        self
    }

    /// Verifies the request's token: `Authorization: Bearer` (a DPoP-bound token is
    /// refused there), or `Authorization: DPoP` with exactly one `DPoP` proof header for
    /// this `method` and `path` (RFC 9449 section 7).
    pub async fn authenticate_request(
        &self,
        method: &http::Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Claims, AuthError> {
        let Some(Credentials::Dpop(token)) = credentials(headers).map_err(AuthError::Request)?
        else {
            return self.authenticate(headers).await;
        };
        let mut proofs = headers.get_all(DPOP_HEADER).iter();
        let proof = match (proofs.next(), proofs.next()) {
            (Some(p), None) => p.to_str().map_err(|_| {
                AuthError::Token(VerifyError::InvalidDpopProof(
                    "the DPoP header is not visible ASCII".into(),
                ))
            })?,
            (None, _) => {
                return Err(AuthError::Token(VerifyError::InvalidDpopProof(
                    "the request has no DPoP header".into(),
                )))
            }
            (Some(_), Some(_)) => {
                return Err(AuthError::Token(VerifyError::InvalidDpopProof(
                    "send exactly one DPoP header".into(),
                )))
            }
        };
        let origin = match &self.public_origin {
            Some(o) => o.to_string(),
            None => {
                let host = headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .ok_or_else(|| AuthError::Request("the request has no Host header".into()))?;
                format!("http://{host}")
            }
        };
        let url = format!("{origin}{path}");
        let request = crate::verifier::DpopRequest {
            proof,
            method: method.as_str(),
            url: &url,
        };
        let claims = self
            .verifier
            .verify_dpop(token, &request)
            .await
            .map_err(AuthError::Token)?;
        claims
            .require_scopes(&self.scopes)
            .map_err(AuthError::Token)?;
        Ok(claims)
    }

    /// Also demands every one of `scopes` (403 `insufficient_scope` otherwise).
    pub fn require_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The `realm` of the `WWW-Authenticate` challenges.
    pub fn realm(mut self, realm: impl AsRef<str>) -> Self {
        self.realm = Arc::from(realm.as_ref());
        self
    }

    /// Verifies the bearer token of a request's headers against this layer's demands.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Claims, AuthError> {
        let token = bearer_token(headers)
            .map_err(AuthError::Request)?
            .ok_or(AuthError::Token(VerifyError::MissingToken))?;
        let claims = match &self.client_cert_header {
            None => self.verifier.verify(token).await,
            Some(name) => {
                let der = match headers.get(name) {
                    None => None,
                    Some(v) => Some(
                        v.to_str()
                            .ok()
                            .and_then(crate::certificate_from_header)
                            .ok_or_else(|| {
                                AuthError::Request(
                                    "the client certificate header is malformed".into(),
                                )
                            })?,
                    ),
                };
                self.verifier.verify_mtls(token, der.as_deref()).await
            }
        }
        .map_err(AuthError::Token)?;
        claims
            .require_scopes(&self.scopes)
            .map_err(AuthError::Token)?;
        Ok(claims)
    }

    /// The response for a failure: status, `WWW-Authenticate`, and a JSON body.
    pub fn reject(&self, error: &AuthError) -> Response {
        rejection(&self.realm, error)
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of a [`BearerAuthLayer`].
#[derive(Clone, Debug)]
pub struct BearerAuth<S> {
    inner: S,
    layer: BearerAuthLayer,
}

impl<S, B> Service<Request<B>> for BearerAuth<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone is not ready; the original is (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            match layer
                .authenticate_request(req.method(), &path, req.headers())
                .await
            {
                Ok(claims) => {
                    req.extensions_mut().insert(claims);
                    inner.call(req).await
                }
                Err(e) => {
                    tracing::debug!(error = %e, "bearer token refused");
                    Ok(layer.reject(&e))
                }
            }
        })
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The `Authorization` header is malformed (400 `invalid_request`).
    #[error("invalid request: {0}")]
    Request(String),
    /// The token was missing or not accepted.
    #[error(transparent)]
    Token(#[from] VerifyError),
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Request(_) => StatusCode::BAD_REQUEST,
            AuthError::Token(e) => e.status(),
        }
    }
}

/// The request header carrying a DPoP proof.
const DPOP_HEADER: &str = "dpop";

enum Credentials<'h> {
    Bearer(&'h str),
    Dpop(&'h str),
}

/// The bearer token of `Authorization: Bearer <token>` (scheme case-insensitive); `None`
/// without the header or with another scheme (the request carries no bearer token).
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, String> {
    Ok(match credentials(headers)? {
        Some(Credentials::Bearer(t)) => Some(t),
        _ => None,
    })
}

/// The token of `Authorization: Bearer <token>` or `Authorization: DPoP <token>` (RFC 9449
/// section 7.1; schemes case-insensitive); `None` without the header or with another
/// scheme.
fn credentials(headers: &HeaderMap) -> Result<Option<Credentials<'_>>, String> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("more than one Authorization header".into());
    }
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not visible ASCII".to_owned())?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let dpop = scheme.eq_ignore_ascii_case("dpop");
    if !scheme.eq_ignore_ascii_case("bearer") && !dpop {
        // Another scheme carries no bearer token: answered like a missing token.
        return Ok(None);
    }
    let token = rest.trim_matches(' ');
    if token.is_empty() {
        return Err("the Bearer credentials are empty".into());
    }
    // b64token (RFC 6750 section 2.1).
    let body = token.trim_end_matches('=');
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if !ok {
        return Err("the bearer token has characters a token cannot have".into());
    }
    Ok(Some(if dpop {
        Credentials::Dpop(token)
    } else {
        Credentials::Bearer(token)
    }))
}

/// Text fit for a quoted-string of a challenge (RFC 6750 section 3: `%x20-21 / %x23-5B /
/// %x5D-7E`).
fn quotable(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '?',
        })
        .collect()
}

fn rejection(realm: &str, error: &AuthError) -> Response {
    let status = error.status();
    let (code, description) = match error {
        AuthError::Request(d) => (Some("invalid_request"), d.clone()),
        AuthError::Token(e) => (e.oauth_error(), e.to_string()),
    };
    // RFC 9449 section 7.1: DPoP errors are answered with a DPoP challenge naming the
    // algorithms a proof may use.
    let dpop = matches!(
        error,
        AuthError::Token(
            VerifyError::InvalidDpopProof(_) | VerifyError::DpopBound | VerifyError::NotDpopBound
        )
    );
    let scheme = if dpop { "DPoP" } else { "Bearer" };
    let mut challenge = format!("{scheme} realm=\"{}\"", quotable(realm));
    if let Some(code) = code {
        challenge.push_str(&format!(
            ", error=\"{code}\", error_description=\"{}\"",
            quotable(&description)
        ));
    }
    if dpop {
        let algs: Vec<&str> = signet_jose::DPOP_ALGORITHMS
            .iter()
            .map(|a| a.as_str())
            .collect();
        challenge.push_str(&format!(", algs=\"{}\"", algs.join(" ")));
    }
    if let AuthError::Token(VerifyError::InsufficientScope { required }) = error {
        challenge.push_str(&format!(", scope=\"{}\"", quotable(&required.join(" "))));
    }
    let body = match (error, code) {
        (_, Some(code)) => serde_json::json!({"error": code, "error_description": description}),
        (AuthError::Token(e), None) if e.is_unavailable() => {
            serde_json::json!({"error": "temporarily_unavailable", "error_description": description})
        }
        _ => serde_json::Value::Null,
    };
    let mut resp = if body.is_null() {
        Response::new(Body::empty())
    } else {
        let mut r = Response::new(Body::from(body.to_string()));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    *resp.status_mut() = status;
    let unavailable = matches!(error, AuthError::Token(e) if e.is_unavailable());
    if !unavailable {
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
    }
    if let AuthError::Token(e) = error {
        if let Some(after) = e.retry_after() {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(after.as_secs()));
        }
    }
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

/// Handlers behind a [`BearerAuthLayer`] take the verified claims as an extractor.
impl<S: Send + Sync> FromRequestParts<S> for Claims {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Claims>().cloned().ok_or_else(|| {
            tracing::error!("Claims extracted on a route without BearerAuthLayer");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "this route is not protected by BearerAuthLayer",
            )
                .into_response()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_tokens_are_read_per_rfc_6750() {
        assert_eq!(bearer_token(&headers(&[])), Ok(None));
        assert_eq!(bearer_token(&headers(&["Basic abc"])), Ok(None));
        assert_eq!(
            bearer_token(&headers(&["Bearer a.b-c_d~e+f/g=="])),
            Ok(Some("a.b-c_d~e+f/g=="))
        );
        assert_eq!(bearer_token(&headers(&["bearer abc"])), Ok(Some("abc")));
        assert!(bearer_token(&headers(&["Bearer "])).is_err());
        assert!(bearer_token(&headers(&["Bearer a\"b"])).is_err());
        assert!(bearer_token(&headers(&["Bearer ==="])).is_err());
        assert!(bearer_token(&headers(&["Bearer a", "Bearer b"])).is_err());
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        let r = rejection("orders", &AuthError::Token(VerifyError::MissingToken));
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer realm=\"orders\"");

        let r = rejection("orders", &AuthError::Token(VerifyError::Expired));
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"orders\", error=\"invalid_token\", error_description=\"the token has expired\""
        );

        let r = rejection(
            "orders",
            &AuthError::Token(VerifyError::InsufficientScope {
                required: vec!["a".into(), "b".into()],
            }),
        );
        assert_eq!(r.status(), 403);
        let h = r.headers()[WWW_AUTHENTICATE].to_str().unwrap().to_owned();
        assert!(h.contains("error=\"insufficient_scope\""), "{h}");
        assert!(h.ends_with(", scope=\"a b\""), "{h}");

        let r = rejection(
            "or\"ders",
            &AuthError::Token(VerifyError::WrongType(Some("x\"\\y".into()))),
        );
        let h = r.headers()[WWW_AUTHENTICATE].to_str().unwrap().to_owned();
        assert!(h.starts_with("Bearer realm=\"or?ders\""), "{h}");
        assert!(!h.contains('\\'), "{h}");

        let r = rejection("orders", &AuthError::Request("bad".into()));
        assert_eq!(r.status(), 400);
        assert!(r.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_request\""));

        let r = rejection(
            "orders",
            &AuthError::Token(VerifyError::RevocationsNotReady),
        );
        assert_eq!(r.status(), 503);
        assert!(r.headers().get(WWW_AUTHENTICATE).is_none());
        assert_eq!(r.headers()[RETRY_AFTER], "1");
    }
}
