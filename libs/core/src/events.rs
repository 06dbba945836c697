//! Configuration events: the only way configuration changes. Each event belongs to one
//! aggregate, whose subject is `signet.events.<aggregate>.<id>` (public: resource servers
//! subscribe to these). API scopes and identity resources share the `scope` aggregate, so
//! one name can never be both. A username has an aggregate of its own (`username`, keyed by
//! [`crate::user::username_id`]): a write claims it with an expected version before the user
//! event that takes the name, so that two nodes can never give one name twice.

use serde::{Deserialize, Serialize};
use signet_jose::Jwk;

use crate::client::Client;
use crate::resource::ApiResource;
use crate::scope::ScopeResource;
use crate::user::UserRecord;
use crate::UnixTime;

/// The subject prefix of configuration events.
pub const SUBJECT_PREFIX: &str = "signet.events";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", deny_unknown_fields)]
pub enum Event {
    #[serde(rename = "client.created")]
    ClientCreated(Box<Client>),
    #[serde(rename = "client.replaced")]
    ClientReplaced(Box<Client>),
    #[serde(rename = "client.deleted", rename_all = "camelCase")]
    ClientDeleted { client_id: String },
    #[serde(rename = "api_resource.created")]
    ApiResourceCreated(Box<ApiResource>),
    #[serde(rename = "api_resource.replaced")]
    ApiResourceReplaced(Box<ApiResource>),
    #[serde(rename = "api_resource.deleted")]
    ApiResourceDeleted { name: String },
    #[serde(rename = "api_scope.created")]
    ApiScopeCreated(ScopeResource),
    #[serde(rename = "api_scope.replaced")]
    ApiScopeReplaced(ScopeResource),
    #[serde(rename = "api_scope.deleted")]
    ApiScopeDeleted { name: String },
    #[serde(rename = "identity_resource.created")]
    IdentityResourceCreated(ScopeResource),
    #[serde(rename = "identity_resource.replaced")]
    IdentityResourceReplaced(ScopeResource),
    #[serde(rename = "identity_resource.deleted")]
    IdentityResourceDeleted { name: String },
    /// A new key enters the JWKS; it signs nothing until activated.
    #[serde(rename = "signing_key.published")]
    SigningKeyPublished { jwk: Jwk, at: UnixTime },
    #[serde(rename = "signing_key.activated")]
    SigningKeyActivated { kid: String, at: UnixTime },
    /// Stops signing; stays in the JWKS until removed.
    #[serde(rename = "signing_key.retired")]
    SigningKeyRetired { kid: String, at: UnixTime },
    /// Leaves the JWKS (after its last token expired, or at once when revoked).
    #[serde(rename = "signing_key.removed")]
    SigningKeyRemoved {
        kid: String,
        at: UnixTime,
        revoked: bool,
    },
    /// A user was created; the record carries the password's argon2id hash, never the
    /// password. Users are projected outside memory (the issuer's users projection).
    #[serde(rename = "user.created")]
    UserCreated(Box<UserRecord>),
    /// A user was replaced (username, claims, enabled, and maybe the password hash).
    #[serde(rename = "user.replaced")]
    UserReplaced(Box<UserRecord>),
    #[serde(rename = "user.deleted")]
    UserDeleted { sub: String },
    /// A user made an API key (the record holds its SHA-256, never the key). Projected
    /// outside memory, with the users.
    #[serde(rename = "api_key.created")]
    ApiKeyCreated(Box<crate::api_key::ApiKeyRecord>),
    /// An API key was revoked (by its owner, or with its user).
    #[serde(rename = "api_key.revoked")]
    ApiKeyRevoked { id: String, sub: String },
    /// A username was claimed for user `sub`, before the `user.created` or `user.replaced`
    /// that gives it the name. `name` is [`crate::user::username_id`] of the username, never
    /// the username itself (the subject must be safe for any name).
    #[serde(rename = "username.claimed")]
    UsernameClaimed { name: String, sub: String },
    /// User `sub` gave the username up (deleted, renamed, or its write failed).
    #[serde(rename = "username.released")]
    UsernameReleased { name: String, sub: String },
}

/// The aggregate an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Client,
    ApiResource,
    Scope,
    SigningKey,
    User,
    ApiKey,
    Username,
}

impl Aggregate {
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregate::Client => "client",
            Aggregate::ApiResource => "api_resource",
            Aggregate::Scope => "scope",
            Aggregate::SigningKey => "signing_key",
            Aggregate::User => "user",
            Aggregate::ApiKey => "api_key",
            Aggregate::Username => "username",
        }
    }

    /// `signet.events.<aggregate>.<id>`, with the id escaped so that any id is one subject
    /// token: bytes outside `[A-Za-z0-9_-]` become `~XX` (hex), which NATS allows.
    pub fn subject(self, id: &str) -> String {
        let mut s = format!("{SUBJECT_PREFIX}.{}.", self.as_str());
        for b in id.bytes() {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                s.push(b as char);
            } else {
                s.push_str(&format!("~{b:02X}"));
            }
        }
        s
    }
}

impl Event {
    pub fn aggregate(&self) -> (Aggregate, &str) {
        match self {
            Event::ClientCreated(c) | Event::ClientReplaced(c) => (Aggregate::Client, &c.client_id),
            Event::ClientDeleted { client_id } => (Aggregate::Client, client_id),
            Event::ApiResourceCreated(r) | Event::ApiResourceReplaced(r) => {
                (Aggregate::ApiResource, &r.name)
            }
            Event::ApiResourceDeleted { name } => (Aggregate::ApiResource, name),
            Event::ApiScopeCreated(s)
            | Event::ApiScopeReplaced(s)
            | Event::IdentityResourceCreated(s)
            | Event::IdentityResourceReplaced(s) => (Aggregate::Scope, &s.name),
            Event::ApiScopeDeleted { name } | Event::IdentityResourceDeleted { name } => {
                (Aggregate::Scope, name)
            }
            Event::SigningKeyPublished { jwk, .. } => (Aggregate::SigningKey, &jwk.kid),
            Event::SigningKeyActivated { kid, .. }
            | Event::SigningKeyRetired { kid, .. }
            | Event::SigningKeyRemoved { kid, .. } => (Aggregate::SigningKey, kid),
            Event::UserCreated(u) | Event::UserReplaced(u) => (Aggregate::User, &u.sub),
            Event::UserDeleted { sub } => (Aggregate::User, sub),
            Event::ApiKeyCreated(k) => (Aggregate::ApiKey, &k.id),
            Event::ApiKeyRevoked { id, .. } => (Aggregate::ApiKey, id),
            Event::UsernameClaimed { name, .. } | Event::UsernameReleased { name, .. } => {
                (Aggregate::Username, name)
            }
        }
    }

    pub fn subject(&self) -> String {
        let (agg, id) = self.aggregate();
        agg.subject(id)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing these plain data types cannot fail (no maps with non-string keys).
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_escape_ids() {
        assert_eq!(
            Aggregate::Client.subject("web-app_1"),
            "signet.events.client.web-app_1"
        );
        assert_eq!(
            Aggregate::Client.subject("a.b c"),
            "signet.events.client.a~2Eb~20c"
        );
        assert_eq!(
            Aggregate::Scope.subject("signet.admin"),
            "signet.events.scope.signet~2Eadmin"
        );
    }

    #[test]
    fn events_round_trip_and_unknown_events_fail() {
        let e = Event::ClientDeleted {
            client_id: "x".into(),
        };
        let json = e.to_json();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"type":"client.deleted","data":{"clientId":"x"}}"#
        );
        assert_eq!(Event::from_json(&json).unwrap(), e);
        assert!(Event::from_json(br#"{"type":"client.exploded","data":{}}"#).is_err());
        let e = Event::UsernameClaimed {
            name: "abc".into(),
            sub: "s1".into(),
        };
        assert_eq!(e.subject(), "signet.events.username.abc");
        assert_eq!(
            std::str::from_utf8(&e.to_json()).unwrap(),
            r#"{"type":"username.claimed","data":{"name":"abc","sub":"s1"}}"#
        );
        assert_eq!(Event::from_json(&e.to_json()).unwrap(), e);
    }
}
