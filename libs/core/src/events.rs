//! Configuration events: the only way configuration changes. Each event belongs to one
//! aggregate, whose subject is `signet.events.<aggregate>.<id>` (public: resource servers
//! subscribe to these). API scopes and identity resources share the `scope` aggregate, so
//! one name can never be both. A username has an aggregate of its own (`username`, keyed by
//! [`crate::user::username_id`]): a write claims it with an expected version before the user
//! event that takes the name, so that two nodes can never give one name twice.
//! [`Event::redacted`] is an event fit to show people (the audit trail): every secret hash
//! replaced by [`REDACTED`].

use serde::{Deserialize, Serialize};
use signet_jose::Jwk;

use crate::client::Client;
use crate::identity_provider::IdentityProvider;
use crate::registration::{InitialAccessToken, RegisteredClient};
use crate::resource::ApiResource;
use crate::scope::ScopeResource;
use crate::secret::StoredSecret;
use crate::user::UserRecord;
use crate::UnixTime;

/// How a user's sign-in security changed ([`Event::UserSecurityChanged`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityChange {
    /// A TOTP authenticator was enrolled (with new recovery codes).
    TotpEnrolled,
    /// The TOTP authenticator and the recovery codes were removed by the user.
    TotpRemoved,
    /// An administrator removed the user's TOTP authenticator and recovery codes.
    FactorsReset,
    /// New recovery codes replaced the old ones.
    RecoveryCodesRegenerated,
    /// A recovery code was used (and is gone).
    RecoveryCodeUsed,
    /// The user changed their password (the record carries the new hash).
    PasswordChanged,
    /// The user set a new password through an e-mailed reset link.
    PasswordReset,
    /// The user followed a verification link: the record's `email` is that address,
    /// `email_verified` true.
    EmailVerified,
    /// A passkey was added (the record carries its public key).
    PasskeyAdded,
    /// The user removed one of their passkeys.
    PasskeyRemoved,
    /// A passkey signed in: its counter and last-used time moved.
    PasskeyUsed,
}

/// The subject prefix of configuration events.
pub const SUBJECT_PREFIX: &str = "signet.events";

/// What [`Event::redacted`] puts in place of a secret's hash.
pub const REDACTED: &str = "[redacted]";

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
    /// A user's sign-in security changed (`change` says how): a second factor enrolled or
    /// removed, recovery codes made or one used. The record carries the TOTP secret only
    /// sealed and the recovery codes only as digests.
    #[serde(rename = "user.security_changed")]
    UserSecurityChanged {
        change: SecurityChange,
        user: Box<UserRecord>,
    },
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
    /// A client registered itself (RFC 7591) with an initial access token; the
    /// registration carries the SHA-256 of its registration access token (RFC 7592).
    #[serde(rename = "client.registered")]
    ClientRegistered(Box<RegisteredClient>),
    /// A registered client replaced its metadata (RFC 7592 section 2.2).
    #[serde(rename = "client.registration_replaced")]
    ClientRegistrationReplaced(Box<RegisteredClient>),
    /// An admin created an initial access token (it holds the SHA-256 of the value).
    #[serde(rename = "initial_access_token.created")]
    InitialAccessTokenCreated(Box<InitialAccessToken>),
    /// An admin replaced a token's description, expiry, uses or policy (its value stays).
    #[serde(rename = "initial_access_token.replaced")]
    InitialAccessTokenReplaced(Box<InitialAccessToken>),
    /// A registration used an initial access token (appended with the token's expected
    /// version, so two nodes cannot both take its last use).
    #[serde(rename = "initial_access_token.used", rename_all = "camelCase")]
    InitialAccessTokenUsed { id: String, client_id: String },
    #[serde(rename = "initial_access_token.deleted")]
    InitialAccessTokenDeleted { id: String },
    /// An upstream identity provider was created (its client secret only sealed).
    #[serde(rename = "identity_provider.created")]
    IdentityProviderCreated(Box<IdentityProvider>),
    #[serde(rename = "identity_provider.replaced")]
    IdentityProviderReplaced(Box<IdentityProvider>),
    #[serde(rename = "identity_provider.deleted")]
    IdentityProviderDeleted { scheme: String },
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
    InitialAccessToken,
    IdentityProvider,
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
            Aggregate::InitialAccessToken => "initial_access_token",
            Aggregate::IdentityProvider => "identity_provider",
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
            Event::UserSecurityChanged { user, .. } => (Aggregate::User, &user.sub),
            Event::UserDeleted { sub } => (Aggregate::User, sub),
            Event::ApiKeyCreated(k) => (Aggregate::ApiKey, &k.id),
            Event::ApiKeyRevoked { id, .. } => (Aggregate::ApiKey, id),
            Event::UsernameClaimed { name, .. } | Event::UsernameReleased { name, .. } => {
                (Aggregate::Username, name)
            }
            Event::ClientRegistered(r) | Event::ClientRegistrationReplaced(r) => {
                (Aggregate::Client, &r.client.client_id)
            }
            Event::InitialAccessTokenCreated(t) | Event::InitialAccessTokenReplaced(t) => {
                (Aggregate::InitialAccessToken, &t.id)
            }
            Event::InitialAccessTokenUsed { id, .. } | Event::InitialAccessTokenDeleted { id } => {
                (Aggregate::InitialAccessToken, id)
            }
            Event::IdentityProviderCreated(p) | Event::IdentityProviderReplaced(p) => {
                (Aggregate::IdentityProvider, &p.scheme)
            }
            Event::IdentityProviderDeleted { scheme } => (Aggregate::IdentityProvider, scheme),
        }
    }

    /// This event with every secret replaced by [`REDACTED`]: the SHA-256 of client and
    /// API resource secrets (and the sealed form of a `ClientSecretJwt`), the argon2id hash of a user's password and the SHA-256 of an
    /// API key. Events never hold a secret's plaintext, but a hash of a secret is still
    /// not for showing: an unsalted SHA-256 identifies a key, and any hash invites an
    /// offline guess. Every variant is matched by name, so a new one must be decided here.
    pub fn redacted(&self) -> Event {
        fn secrets(list: &mut [StoredSecret]) {
            for s in list.iter_mut() {
                if s.sha256.is_some() {
                    s.sha256 = Some(REDACTED.to_owned());
                }
                // A sealed ClientSecretJwt is no plaintext either, but not for showing.
                if s.sealed.is_some() {
                    s.sealed = Some(REDACTED.to_owned());
                }
            }
        }
        let mut e = self.clone();
        match &mut e {
            Event::ClientCreated(c) | Event::ClientReplaced(c) => secrets(&mut c.client_secrets),
            Event::ApiResourceCreated(r) | Event::ApiResourceReplaced(r) => {
                secrets(&mut r.api_secrets)
            }
            Event::UserCreated(u)
            | Event::UserReplaced(u)
            | Event::UserSecurityChanged { user: u, .. } => {
                u.password_hash = REDACTED.to_owned();
                if let Some(t) = &mut u.totp {
                    t.sealed = REDACTED.to_owned();
                }
                for c in &mut u.recovery_codes {
                    *c = REDACTED.to_owned();
                }
            }
            Event::ApiKeyCreated(k) => k.sha256 = REDACTED.to_owned(),
            Event::ClientRegistered(r) | Event::ClientRegistrationReplaced(r) => {
                secrets(&mut r.client.client_secrets);
                r.registration.token_sha256 = REDACTED.to_owned();
            }
            Event::InitialAccessTokenCreated(t) | Event::InitialAccessTokenReplaced(t) => {
                t.sha256 = REDACTED.to_owned()
            }
            // Sealed, but still not for showing.
            Event::IdentityProviderCreated(p) | Event::IdentityProviderReplaced(p) => {
                if p.client_secret_sealed.is_some() {
                    p.client_secret_sealed = Some(REDACTED.to_owned());
                }
            }
            // Nothing secret: names, ids, times, and public keys.
            Event::ClientDeleted { .. }
            | Event::ApiResourceDeleted { .. }
            | Event::ApiScopeCreated(_)
            | Event::ApiScopeReplaced(_)
            | Event::ApiScopeDeleted { .. }
            | Event::IdentityResourceCreated(_)
            | Event::IdentityResourceReplaced(_)
            | Event::IdentityResourceDeleted { .. }
            | Event::SigningKeyPublished { .. }
            | Event::SigningKeyActivated { .. }
            | Event::SigningKeyRetired { .. }
            | Event::SigningKeyRemoved { .. }
            | Event::UserDeleted { .. }
            | Event::ApiKeyRevoked { .. }
            // The name is a SHA-256 of the normalized username, which the user events
            // show anyway.
            | Event::UsernameClaimed { .. }
            | Event::UsernameReleased { .. }
            | Event::InitialAccessTokenUsed { .. }
            | Event::InitialAccessTokenDeleted { .. }
            | Event::IdentityProviderDeleted { .. } => {}
        }
        e
    }

    /// The event's `type` (`client.created`, ...): its kind of aggregate and its change.
    pub fn type_name(&self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut m)) => match m.remove("type") {
                Some(serde_json::Value::String(t)) => t,
                _ => String::new(),
            },
            _ => String::new(),
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

    /// One event of every variant, each secret a distinct `SECRET-...` string.
    fn every_variant() -> Vec<Event> {
        let client: Box<Client> = serde_json::from_value(serde_json::json!({
            "clientId": "web",
            "clientSecrets": [
                {"sha256": "SECRET-client-1", "type": "SharedSecret"},
                {"description": "no value", "type": "SharedSecret"},
            ],
        }))
        .unwrap();
        let resource: Box<ApiResource> = serde_json::from_value(serde_json::json!({
            "name": "orders",
            "apiSecrets": [{"sha256": "SECRET-resource-1", "type": "SharedSecret"}],
        }))
        .unwrap();
        let scope: ScopeResource =
            serde_json::from_value(serde_json::json!({"name": "orders.read"})).unwrap();
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "OKP", "kid": "k1", "alg": "EdDSA", "use": "sig", "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        }))
        .unwrap();
        let user = Box::new(UserRecord {
            sub: "u1".into(),
            username: "alice".into(),
            password_hash: "SECRET-$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            claims: Default::default(),
            enabled: true,
            created_at: 1,
            updated_at: 2,
            totp: None,
            recovery_codes: Vec::new(),
            must_change_password: false,
            external_logins: Vec::new(),
            passkeys: Vec::new(),
            passkey_handle: None,
        });
        let key = Box::new(crate::api_key::ApiKeyRecord {
            id: "k1".into(),
            sub: "u1".into(),
            name: "ci".into(),
            scopes: vec!["orders.read".into()],
            sha256: "SECRET-api-key".into(),
            created_at: 1,
            expires_at: None,
        });
        let name = || "n".to_owned();
        let registered = Box::new(crate::registration::RegisteredClient {
            client: (*client).clone(),
            registration: crate::registration::RegistrationInfo {
                token_sha256: "SECRET-registration-token".into(),
                initial_access_token: "t1".into(),
                policy: Default::default(),
                token_endpoint_auth_method: "client_secret_basic".into(),
                application_type: "web".into(),
                issued_at: 1,
                software_statement_iss: None,
            },
        });
        let iat = Box::new(InitialAccessToken {
            id: "t1".into(),
            description: None,
            sha256: "SECRET-iat".into(),
            created_at: 1,
            expires_at: 2,
            max_uses: Some(1),
            policy: Default::default(),
        });
        let idp = Box::new(IdentityProvider {
            scheme: "corp".into(),
            display_name: "Corp".into(),
            enabled: true,
            provider_type: crate::identity_provider::ProviderType::Oidc,
            authority: "https://login.example.com".into(),
            client_id: "signet".into(),
            client_secret_sealed: Some("SECRET-sealed".into()),
            client_auth_method: None,
            get_claims_from_userinfo_endpoint: false,
            scopes: vec!["openid".into()],
            claim_mappings: Default::default(),
            response_type: "code".into(),
            oauth2: None,
            domains: vec!["example.com".into()],
            ldap: None,
        });
        vec![
            Event::ClientCreated(client.clone()),
            Event::ClientReplaced(client),
            Event::ClientDeleted {
                client_id: "web".into(),
            },
            Event::ApiResourceCreated(resource.clone()),
            Event::ApiResourceReplaced(resource),
            Event::ApiResourceDeleted { name: name() },
            Event::ApiScopeCreated(scope.clone()),
            Event::ApiScopeReplaced(scope.clone()),
            Event::ApiScopeDeleted { name: name() },
            Event::IdentityResourceCreated(scope.clone()),
            Event::IdentityResourceReplaced(scope),
            Event::IdentityResourceDeleted { name: name() },
            Event::SigningKeyPublished { jwk, at: 1 },
            Event::SigningKeyActivated {
                kid: "k1".into(),
                at: 2,
            },
            Event::SigningKeyRetired {
                kid: "k1".into(),
                at: 3,
            },
            Event::SigningKeyRemoved {
                kid: "k1".into(),
                at: 4,
                revoked: true,
            },
            Event::UserCreated(user.clone()),
            Event::UserReplaced(user),
            Event::UserDeleted { sub: "u1".into() },
            Event::ApiKeyCreated(key),
            Event::ApiKeyRevoked {
                id: "k1".into(),
                sub: "u1".into(),
            },
            Event::UsernameClaimed {
                name: "n1".into(),
                sub: "u1".into(),
            },
            Event::UsernameReleased {
                name: "n1".into(),
                sub: "u1".into(),
            },
            Event::ClientRegistered(registered.clone()),
            Event::ClientRegistrationReplaced(registered),
            Event::InitialAccessTokenCreated(iat.clone()),
            Event::InitialAccessTokenReplaced(iat),
            Event::InitialAccessTokenUsed {
                id: "t1".into(),
                client_id: "web".into(),
            },
            Event::InitialAccessTokenDeleted { id: "t1".into() },
            Event::UserSecurityChanged {
                change: SecurityChange::TotpEnrolled,
                user: Box::new(UserRecord {
                    sub: "u1".into(),
                    username: "alice".into(),
                    password_hash: "SECRET-$argon2id$x".into(),
                    claims: Default::default(),
                    enabled: true,
                    created_at: 1,
                    updated_at: 2,
                    totp: Some(crate::user::TotpFactor {
                        sealed: "SECRET-sealed".into(),
                        enrolled_at: 2,
                    }),
                    recovery_codes: vec!["SECRET-digest".into()],
                    must_change_password: false,
                    external_logins: Vec::new(),
                    passkeys: Vec::new(),
                    passkey_handle: None,
                }),
            },
            Event::IdentityProviderCreated(idp.clone()),
            Event::IdentityProviderReplaced(idp),
            Event::IdentityProviderDeleted {
                scheme: "corp".into(),
            },
        ]
    }

    /// The position of a variant in [`every_variant`]; a new variant does not compile here
    /// until it has a sample.
    fn variant(e: &Event) -> usize {
        match e {
            Event::ClientCreated(_) => 0,
            Event::ClientReplaced(_) => 1,
            Event::ClientDeleted { .. } => 2,
            Event::ApiResourceCreated(_) => 3,
            Event::ApiResourceReplaced(_) => 4,
            Event::ApiResourceDeleted { .. } => 5,
            Event::ApiScopeCreated(_) => 6,
            Event::ApiScopeReplaced(_) => 7,
            Event::ApiScopeDeleted { .. } => 8,
            Event::IdentityResourceCreated(_) => 9,
            Event::IdentityResourceReplaced(_) => 10,
            Event::IdentityResourceDeleted { .. } => 11,
            Event::SigningKeyPublished { .. } => 12,
            Event::SigningKeyActivated { .. } => 13,
            Event::SigningKeyRetired { .. } => 14,
            Event::SigningKeyRemoved { .. } => 15,
            Event::UserCreated(_) => 16,
            Event::UserReplaced(_) => 17,
            Event::UserDeleted { .. } => 18,
            Event::ApiKeyCreated(_) => 19,
            Event::ApiKeyRevoked { .. } => 20,
            Event::UsernameClaimed { .. } => 21,
            Event::UsernameReleased { .. } => 22,
            Event::ClientRegistered(_) => 23,
            Event::ClientRegistrationReplaced(_) => 24,
            Event::InitialAccessTokenCreated(_) => 25,
            Event::InitialAccessTokenReplaced(_) => 26,
            Event::InitialAccessTokenUsed { .. } => 27,
            Event::InitialAccessTokenDeleted { .. } => 28,
            Event::UserSecurityChanged { .. } => 29,
            Event::IdentityProviderCreated(_) => 30,
            Event::IdentityProviderReplaced(_) => 31,
            Event::IdentityProviderDeleted { .. } => 32,
        }
    }

    #[test]
    fn redaction_removes_every_secret_of_every_variant() {
        let events = every_variant();
        let covered: Vec<usize> = events.iter().map(variant).collect();
        assert_eq!(
            covered,
            (0..=32).collect::<Vec<_>>(),
            "one sample per variant"
        );
        let mut secrets_seen = 0;
        for e in &events {
            let raw = String::from_utf8(e.to_json()).unwrap();
            let redacted = e.redacted();
            let shown = String::from_utf8(redacted.to_json()).unwrap();
            assert!(!shown.contains("SECRET"), "{shown}");
            if raw.contains("SECRET") {
                secrets_seen += 1;
                assert!(shown.contains(REDACTED), "{shown}");
            } else {
                assert_eq!(&redacted, e, "nothing secret, nothing changed");
            }
            // The same event otherwise: type, aggregate and id are kept.
            assert_eq!(redacted.type_name(), e.type_name());
            assert_eq!(redacted.aggregate(), e.aggregate());
        }
        // The samples do carry secrets: client, resource, user and API key events.
        assert_eq!(secrets_seen, 14);
        // A secret without a value stays without one (no hash to hide).
        let Event::ClientCreated(c) = events[0].redacted() else {
            unreachable!()
        };
        assert_eq!(c.client_secrets[0].sha256.as_deref(), Some(REDACTED));
        assert_eq!(c.client_secrets[1].sha256, None);
        assert_eq!(events[2].type_name(), "client.deleted");
    }
}
