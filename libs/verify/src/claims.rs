//! The verified claims of a token, as handlers see them.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::VerifyError;
use crate::revocation::TokenFacts;

/// How a token was verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TokenKind {
    /// A JWT access token checked locally against the issuer's JWKS.
    Jwt {
        /// The signing key's `kid`.
        kid: String,
        /// The JWS algorithm.
        alg: signet_jose::Algorithm,
    },
    /// An opaque token (reference token or API key) the issuer declared active (RFC 7662).
    Introspected,
}

/// The claims of a verified token, put into the request extensions by the
/// [`BearerAuthLayer`](crate::BearerAuthLayer). Handlers take them with
/// `Extension<Claims>` or directly as an extractor (`claims: Claims`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claims {
    /// `sub`: the user, or the client for `client_credentials` tokens.
    pub sub: Option<String>,
    /// `client_id`: the client the token was issued to.
    pub client_id: Option<String>,
    /// The `scope` claim split on spaces.
    pub scopes: Vec<String>,
    /// `aud`, always as a list.
    pub aud: Vec<String>,
    /// `iss`.
    pub iss: Option<String>,
    /// `exp` (Unix seconds); always present for JWTs.
    pub exp: Option<i64>,
    /// `iat` (Unix seconds).
    pub iat: Option<i64>,
    /// `jti`.
    pub jti: Option<String>,
    /// How the token was verified.
    pub kind: TokenKind,
    /// Every claim, as sent by the issuer.
    pub raw: Map<String, Value>,
}

impl Claims {
    /// Reads the registered claims out of a JSON object. Claims of the wrong type are
    /// errors (a `sub` that is a number is not "no sub").
    pub(crate) fn from_map(
        raw: Map<String, Value>,
        kind: TokenKind,
    ) -> Result<Claims, VerifyError> {
        fn string(
            raw: &Map<String, Value>,
            name: &'static str,
        ) -> Result<Option<String>, VerifyError> {
            match raw.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(VerifyError::MissingClaim(name)),
            }
        }
        fn time(raw: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, VerifyError> {
            match raw.get(name) {
                None | Some(Value::Null) => Ok(None),
                // NumericDate may carry a fraction (RFC 7519 section 2); whole seconds suffice.
                Some(Value::Number(n)) => n
                    .as_i64()
                    .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                    .map(Some)
                    .ok_or(VerifyError::MissingClaim(name)),
                Some(_) => Err(VerifyError::MissingClaim(name)),
            }
        }
        let aud = match raw.get("aud") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(VerifyError::MissingClaim("aud"))?,
            Some(_) => return Err(VerifyError::MissingClaim("aud")),
        };
        let scopes = match raw.get("scope") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.split_ascii_whitespace().map(str::to_owned).collect(),
            // Some issuers send a list; accept it rather than lose the scopes.
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(VerifyError::MissingClaim("scope"))?,
            Some(_) => return Err(VerifyError::MissingClaim("scope")),
        };
        Ok(Claims {
            sub: string(&raw, "sub")?,
            client_id: string(&raw, "client_id")?,
            scopes,
            aud,
            iss: string(&raw, "iss")?,
            exp: time(&raw, "exp")?,
            iat: time(&raw, "iat")?,
            jti: string(&raw, "jti")?,
            kind,
            raw,
        })
    }

    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// `Ok` when the token grants every scope in `required`; otherwise
    /// [`VerifyError::InsufficientScope`] naming all of `required` (RFC 6750 section 3:
    /// the `scope` attribute lists the scopes needed to access the resource).
    pub fn require_scopes<S: AsRef<str>>(&self, required: &[S]) -> Result<(), VerifyError> {
        if required.iter().all(|r| self.has_scope(r.as_ref())) {
            Ok(())
        } else {
            Err(VerifyError::InsufficientScope {
                required: required.iter().map(|r| r.as_ref().to_owned()).collect(),
            })
        }
    }

    /// What a [`RevocationSet`](crate::revocation::RevocationSet) needs to know about this
    /// token. A token without `iat` counts as issued at the beginning of time, so every
    /// "issued before" revocation of its subject or client covers it.
    pub fn token_facts(&self) -> TokenFacts<'_> {
        TokenFacts {
            jti: self.jti.as_deref(),
            sub: self.sub.as_deref(),
            client_id: self.client_id.as_deref(),
            sid: self.raw.get("sid").and_then(Value::as_str),
            family: self.raw.get("family").and_then(Value::as_str),
            kid: match &self.kind {
                TokenKind::Jwt { kid, .. } => Some(kid.as_str()),
                TokenKind::Introspected => None,
            },
            iat: self.iat.unwrap_or(i64::MIN),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Result<Claims, VerifyError> {
        let Value::Object(map) = v else {
            panic!("not an object")
        };
        Claims::from_map(map, TokenKind::Introspected)
    }

    #[test]
    fn audience_and_scope_take_both_shapes() {
        let c = claims(json!({"aud": "a", "scope": "x  y", "exp": 10.5})).unwrap();
        assert_eq!(c.aud, ["a"]);
        assert_eq!(c.scopes, ["x", "y"]);
        assert_eq!(c.exp, Some(10));
        let c = claims(json!({"aud": ["a", "b"], "scope": ["x"]})).unwrap();
        assert_eq!(c.aud, ["a", "b"]);
        assert!(c.has_scope("x"));
        assert!(c.require_scopes(&["x"]).is_ok());
        assert_eq!(
            c.require_scopes(&["x", "z"]),
            Err(VerifyError::InsufficientScope {
                required: vec!["x".into(), "z".into()]
            })
        );
    }

    #[test]
    fn wrongly_typed_claims_are_errors() {
        assert!(claims(json!({"sub": 1})).is_err());
        assert!(claims(json!({"aud": [1]})).is_err());
        assert!(claims(json!({"exp": "soon"})).is_err());
        assert!(claims(json!({"scope": 3})).is_err());
    }
}
