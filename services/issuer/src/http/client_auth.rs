//! Client authentication at the token endpoint (RFC 6749 section 2.3.1): HTTP Basic
//! (`client_secret_basic`, with the id and secret form-urlencoded first) or body parameters
//! (`client_secret_post`), never both; a public client (`requireClientSecret: false`) sends
//! only its `client_id`.
//!
//! Every failure is the same `invalid_client` with the same description, and an unknown
//! client costs the same hash and compare as a known one, so neither the answer nor its
//! timing tells which client ids exist.

use std::borrow::Cow;
use std::sync::Arc;

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use signet_core::oauth::OAuthError;
use signet_core::projection::{ClientEntry, Projection};
use signet_core::secret::{dummy_check, SecretDigest};
use signet_core::UnixTime;

use super::form::OAuthForm;

const FAILED: &str = "client authentication failed";

struct Presented<'a> {
    id: Cow<'a, str>,
    secret: Option<Cow<'a, str>>,
}

/// The decoded `id:secret` of an HTTP Basic `Authorization` header, if there is one.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<String>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::invalid_client(FAILED);
    let value = value.to_str().map_err(|_| bad())?;
    let (scheme, rest) = value.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let decoded = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    String::from_utf8(decoded).map(Some).map_err(|_| bad())
}

/// RFC 6749 section 2.3.1: both parts of the Basic credentials are
/// application/x-www-form-urlencoded values: `+` is a space, `%XX` a byte, any other
/// character itself. A part without `%` or `+` decodes to itself and is borrowed; any other
/// goes through the form decoder as one value. A raw `&` is part of the value, not a
/// separator (it once cut the value short, so `secret&anything` authenticated as
/// `secret`).
fn form_unescape(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        form_urlencoded::parse(format!("x={}", s.replace('&', "%26")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default(),
    )
}

fn from_basic(decoded: &str) -> Result<Presented<'_>, OAuthError> {
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| OAuthError::invalid_client(FAILED))?;
    Ok(Presented {
        id: form_unescape(id),
        secret: Some(form_unescape(secret)),
    })
}

/// Authenticates the client of a token request. Returns its projection entry.
pub fn authenticate(
    p: &Projection,
    form: &OAuthForm,
    now: UnixTime,
) -> Result<Arc<ClientEntry>, OAuthError> {
    let result = authenticate_inner(p, form, now);
    if let Err((reason, _)) = &result {
        metrics::counter!(crate::telemetry::CLIENT_AUTH_FAILURES, "reason" => *reason).increment(1);
    }
    result.map_err(|(_, e)| e)
}

/// Like [`authenticate`], with the failure's reason for metrics (a fixed set of labels).
fn authenticate_inner(
    p: &Projection,
    form: &OAuthForm,
    now: UnixTime,
) -> Result<Arc<ClientEntry>, (&'static str, OAuthError)> {
    let malformed = |e| ("malformed", e);
    let decoded = basic_credentials(&form.headers).map_err(malformed)?;
    let basic = decoded
        .as_deref()
        .map(from_basic)
        .transpose()
        .map_err(malformed)?;
    let presented = match (basic, form.get("client_id"), form.get("client_secret")) {
        (Some(_), _, Some(_)) => {
            return Err(malformed(OAuthError::invalid_request(
                "use one client authentication method: HTTP Basic or client_secret in the body, not both",
            )))
        }
        (Some(b), Some(id), None) if id != b.id => {
            return Err(malformed(OAuthError::invalid_request(
                "client_id in the body differs from the authenticated client",
            )))
        }
        (Some(b), _, None) => b,
        (None, Some(id), secret) => Presented {
            id: Cow::Borrowed(id),
            secret: secret.map(Cow::Borrowed),
        },
        (None, None, Some(_)) => {
            return Err(malformed(OAuthError::invalid_request("client_secret without client_id")))
        }
        (None, None, None) => {
            return Err(("missing", OAuthError::invalid_client("client authentication is required")))
        }
    };

    let digest = presented.secret.as_deref().map(SecretDigest::of);
    let Some(entry) = p.client(&presented.id) else {
        if let Some(d) = &digest {
            dummy_check(d);
        }
        return Err(("unknown_client", OAuthError::invalid_client(FAILED)));
    };
    let ok = match &digest {
        Some(d) => entry.secrets.matches(d, now),
        // A public client identifies itself; a confidential one must prove it.
        None => !entry.client.require_client_secret,
    };
    if !ok {
        return Err(("invalid_secret", OAuthError::invalid_client(FAILED)));
    }
    if !entry.client.enabled {
        return Err(("disabled", OAuthError::invalid_client(FAILED)));
    }
    Ok(entry.clone())
}

/// The id and secret of an HTTP Basic `Authorization` header (form-urlencoded parts, RFC
/// 6749 section 2.3.1), if there is one. Used by introspection callers.
pub fn basic_id_secret(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(decoded) = basic_credentials(headers)? else {
        return Ok(None);
    };
    let p = from_basic(&decoded)?;
    Ok(p.secret.map(|s| (p.id.into_owned(), s.into_owned())))
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    /// What the decoder did before the borrowed fast path: parse `x=<part>` as a form.
    fn via_form(s: &str) -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    }

    #[test]
    fn basic_parts_decode_as_form_values() {
        for part in [
            "backend",
            "secret-0123456789",
            "a=b",
            "",
            "a%3Ab",
            "a+b",
            "%zz",
            "caf%C3%A9",
        ] {
            assert_eq!(form_unescape(part), via_form(part), "{part:?}");
        }
        assert!(matches!(form_unescape("backend"), Cow::Borrowed(_)));
        let p = from_basic("my%20id:s%3Acret").unwrap();
        assert_eq!(
            (p.id.as_ref(), p.secret.as_deref()),
            ("my id", Some("s:cret"))
        );
        assert!(from_basic("no-colon").is_err());
    }

    /// Found by `fuzz::basic_parts_decode_as_form_values` (minimal input `&`): a raw `&`
    /// is a character of the value. Before, `backend:secret&x` authenticated as
    /// `backend:secret`, and `&` decoded to nothing.
    #[test]
    fn a_raw_ampersand_is_part_of_the_value() {
        assert_eq!(form_unescape("&"), "&");
        assert_eq!(form_unescape("a&b"), "a&b");
        assert_eq!(form_unescape("a+%26&b"), "a &&b");
        let p = from_basic("backend:s3cret&x").unwrap();
        assert_eq!(p.secret.as_deref(), Some("s3cret&x"));
    }
}
