//! Strict `application/x-www-form-urlencoded` request parsing for protocol endpoints
//! (RFC 6749 section 3.2): the right content type, a bounded body, no repeated parameter
//! (but `resource`, RFC 8707),
//! and empty values treated as omitted (section 3.1). Failures are RFC 6749 errors.

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{header, Request};
use signet_core::oauth::OAuthError;

use super::error::ProtocolError;

/// Form bodies on protocol endpoints are small; anything larger is refused (413).
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// Parameters that may be given more than once: `resource` (RFC 8707 section 2).
pub const REPEATABLE: &[&str] = &["resource"];

/// A parsed form body, plus the request headers the endpoint needs.
#[derive(Debug)]
pub struct OAuthForm {
    params: Vec<(String, String)>,
    pub headers: axum::http::HeaderMap,
    /// The client certificate of the request (mutual TLS), if any.
    pub cert: Option<super::client_cert::PresentedCert>,
}

impl OAuthForm {
    /// The value of a parameter; empty values count as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every non-empty value of a parameter that may repeat ([`REPEATABLE`]), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The `resource` values (RFC 8707), checked: absolute URIs without fragment.
    pub fn resources(&self) -> Result<Vec<String>, OAuthError> {
        signet_core::grants::resource_indicators::parse_resources(self.get_all("resource"))
    }

    /// Every parameter, in request order.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    pub fn parse(body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
        let mut params: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(body) {
            if !REPEATABLE.contains(&k.as_ref()) && params.iter().any(|(seen, _)| *seen == k) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {:?} is repeated",
                    truncate(&k)
                )));
            }
            params.push((k.into_owned(), v.into_owned()));
        }
        Ok(params)
    }
}

/// Parameter names echoed in errors are cut short: the body is the caller's, not ours.
fn truncate(s: &str) -> Cow<'_, str> {
    if s.len() <= 64 {
        Cow::Borrowed(s)
    } else {
        let mut end = 64;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        Cow::Owned(format!("{}...", &s[..end]))
    }
}

pub fn is_form(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = ProtocolError;

    async fn from_request(req: Request<Body>, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        if !is_form(&parts.headers) {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            )
            .into());
        }
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| ProtocolError::too_large(MAX_FORM_BYTES))?;
        Ok(OAuthForm {
            params: Self::parse(&bytes)?,
            headers: parts.headers,
            cert: parts.extensions.get().cloned(),
        })
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_empty_parameters() {
        let e = OAuthForm::parse(b"scope=a&scope=b").unwrap_err();
        assert!(e.description.contains("\"scope\" is repeated"));
        let f = OAuthForm {
            params: OAuthForm::parse(b"grant_type=client_credentials&scope=&x=a%20b").unwrap(),
            headers: Default::default(),
            cert: None,
        };
        assert_eq!(f.get("grant_type"), Some("client_credentials"));
        assert_eq!(f.get("scope"), None);
        assert_eq!(f.get("x"), Some("a b"));
        let f = OAuthForm {
            params: OAuthForm::parse(b"resource=urn%3Aa&resource=urn%3Ab&resource=").unwrap(),
            headers: Default::default(),
            cert: None,
        };
        assert_eq!(
            f.get_all("resource").collect::<Vec<_>>(),
            ["urn:a", "urn:b"]
        );
        let long = format!("{}=1&{}=2", "k".repeat(100), "k".repeat(100));
        let e = OAuthForm::parse(long.as_bytes()).unwrap_err();
        assert!(e.description.len() < 120);
    }
}
