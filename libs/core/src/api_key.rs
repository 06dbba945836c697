//! API keys: long-lived, scoped bearer credentials that users make for their scripts (the
//! reference auth service's recommendation for automation). A key is shown once, at
//! creation: `sgk_<id>_<secret>`; only its SHA-256 is stored. Keys are events like the rest
//! of the configuration (`api_key.created`, `api_key.revoked`) and live, like users, in a
//! projection outside memory.

use serde::{Deserialize, Serialize};

use crate::grants::client_credentials::valid_scope_token;
use crate::validation::ValidationErrors;
use crate::UnixTime;

/// The prefix of every API key (lets scanners and introspection recognise them).
pub const PREFIX: &str = "sgk_";
/// Keys a user may hold at once.
pub const MAX_KEYS_PER_USER: usize = 50;

/// A stored API key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyRecord {
    /// The public part of the key (`sgk_<id>_...`); also its `jti`.
    pub id: String,
    /// The user who owns it.
    pub sub: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// SHA-256 of the whole key, base64url.
    pub sha256: String,
    pub created_at: UnixTime,
    #[serde(default)]
    pub expires_at: Option<UnixTime>,
}

impl ApiKeyRecord {
    /// What the owner sees (no hash).
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "scopes": self.scopes,
            "createdAt": self.created_at,
            "expiresAt": self.expires_at,
        })
    }

    pub fn is_expired(&self, now: UnixTime) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

/// A request to make a key.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewApiKey {
    pub name: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Days the key lives (1 to 3650); without it, until revoked.
    #[serde(default)]
    pub lifetime_days: Option<u32>,
}

impl NewApiKey {
    /// Checks the request; scopes are checked against what the user may grant elsewhere.
    pub fn check(&self) -> Result<(), ValidationErrors> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(ValidationErrors::single(
                "name",
                "must be 1 to 100 characters without control characters",
            ));
        }
        if self.scopes.is_empty() || self.scopes.len() > 50 {
            return Err(ValidationErrors::single(
                "scopes",
                "must list 1 to 50 scopes",
            ));
        }
        for (i, s) in self.scopes.iter().enumerate() {
            if !valid_scope_token(s) {
                return Err(ValidationErrors::single(
                    format!("scopes[{i}]"),
                    "must be a scope token (RFC 6749 section 3.3)",
                ));
            }
        }
        if let Some(d) = self.lifetime_days {
            if !(1..=3650).contains(&d) {
                return Err(ValidationErrors::single(
                    "lifetimeDays",
                    "must be between 1 and 3650",
                ));
            }
        }
        Ok(())
    }
}

/// Whether a user may hold `scope` on an API key now: an enabled API scope that an operator
/// made available for keys ([`crate::scope::API_KEYS_PROPERTY`]), never the admin scope.
/// Checked when a key is made and again each time it is used, so withdrawing a scope from
/// keys takes effect at once.
pub fn scope_allowed(p: &crate::projection::Projection, scope: &str) -> bool {
    scope != crate::bootstrap::ADMIN_SCOPE
        && p.scope(scope).is_some_and(|e| {
            e.kind == crate::scope::ScopeKind::Api && e.scope.enabled && e.scope.for_api_keys()
        })
}

/// `sgk_<id>_<secret>`.
pub fn format_key(id: &str, secret: &str) -> String {
    format!("{PREFIX}{id}_{secret}")
}

/// The id of a presented key, if it has the shape (22-character id, 43-character secret,
/// both base64url).
pub fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_at_checked(22)?;
    let secret = secret.strip_prefix('_')?;
    let b64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (b64(id) && secret.len() == 43 && b64(secret)).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_one_shape() {
        let id = "a".repeat(22);
        let secret = "b".repeat(43);
        let key = format_key(&id, &secret);
        assert_eq!(key_id(&key), Some(id.as_str()));
        assert_eq!(key_id("sgk_short"), None);
        assert_eq!(key_id(&key.replace("sgk_", "sk_")), None);
        assert_eq!(key_id(&format!("{key}x")), None);
    }

    #[test]
    fn requests_are_checked_naming_the_field() {
        let ok = NewApiKey {
            name: "ci".into(),
            scopes: vec!["orders.read".into()],
            lifetime_days: Some(30),
        };
        assert!(ok.check().is_ok());
        let bad = |f: fn(&mut NewApiKey)| {
            let mut k = ok.clone();
            f(&mut k);
            k.check().unwrap_err().errors[0].field.clone()
        };
        assert_eq!(bad(|k| k.name = " ".into()), "name");
        assert_eq!(bad(|k| k.scopes.clear()), "scopes");
        assert_eq!(bad(|k| k.scopes = vec!["a b".into()]), "scopes[0]");
        assert_eq!(bad(|k| k.lifetime_days = Some(0)), "lifetimeDays");
    }
}
