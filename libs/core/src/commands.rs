//! Admin commands decided against the projection: validate a body (on its own and against
//! the rest of the configuration), and turn it into the one event to append together with
//! the aggregate version the append must expect. Pure: the caller appends.

use crate::client::{Client, ClientPolicy};
use crate::events::{Aggregate, Event};
use crate::identity_provider::IdentityProvider;
use crate::projection::Projection;
use crate::registration::{InitialAccessToken, RegisteredClient, RegistrationInfo};
use crate::resource::ApiResource;
use crate::scope::{ScopeKind, ScopeResource};
use crate::secret::SecretInput;
use crate::validation::{Collector, ValidationErrors};

/// The scope a client asks for to get refresh tokens (OIDC Core section 11).
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Clients the server itself depends on; they cannot be deleted.
pub const PROTECTED_CLIENTS: &[&str] = &[crate::bootstrap::ADMIN_CLIENT_ID];

#[derive(Debug, Clone)]
pub enum Command {
    CreateClient(Box<Client<SecretInput>>),
    /// `keep_secrets`: the body had no `clientSecrets` member, so the stored ones stay.
    ReplaceClient {
        client: Box<Client<SecretInput>>,
        keep_secrets: bool,
    },
    DeleteClient(String),
    CreateApiResource(Box<ApiResource<SecretInput>>),
    ReplaceApiResource {
        resource: Box<ApiResource<SecretInput>>,
        keep_secrets: bool,
    },
    DeleteApiResource(String),
    CreateScope(ScopeKind, ScopeResource),
    ReplaceScope(ScopeKind, ScopeResource),
    DeleteScope(ScopeKind, String),
    /// An initial access token, already checked on its own (`into_record`).
    CreateInitialAccessToken(Box<InitialAccessToken>),
    /// A replacement record, built over the stored one (same value, creation and uses).
    ReplaceInitialAccessToken(Box<InitialAccessToken>),
    DeleteInitialAccessToken(String),
    /// An upstream identity provider, already checked on its own (`into_record`).
    CreateIdentityProvider(Box<IdentityProvider>),
    ReplaceIdentityProvider(Box<IdentityProvider>),
    DeleteIdentityProvider(String),
    /// Takes one use of an initial access token for a registration (refused when it is
    /// gone, expired at `now`, or used up).
    UseInitialAccessToken {
        id: String,
        client_id: String,
        now: crate::UnixTime,
    },
    /// RFC 7591: a client registers itself.
    RegisterClient {
        client: Box<Client<SecretInput>>,
        registration: Box<RegistrationInfo>,
    },
    /// RFC 7592 section 2.2: a registered client replaces its metadata; `keep_secrets`: its
    /// stored secrets stay.
    ReplaceRegistration {
        client: Box<Client<SecretInput>>,
        registration: Box<RegistrationInfo>,
        keep_secrets: bool,
    },
}

/// What to append: the event, and the version its aggregate must still have.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub event: Event,
    pub expected_version: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} does not exist")]
    NotFound(String),
    /// The aggregate is referenced or protected and cannot be removed.
    #[error("{0}")]
    InUse(String),
    /// An initial access token is gone, expired or used up.
    #[error("{0}")]
    Unusable(String),
}

fn check_client_scopes(
    p: &Projection,
    client: &Client<SecretInput>,
) -> Result<(), ValidationErrors> {
    let mut c = Collector::default();
    for (i, s) in client.allowed_scopes.iter().enumerate() {
        if s == OFFLINE_ACCESS {
            c.check(
                client.allow_offline_access,
                format!("allowedScopes[{i}]"),
                "offline_access needs allowOfflineAccess: true",
            );
        } else {
            c.check(
                p.scope(s).is_some(),
                format!("allowedScopes[{i}]"),
                format!("scope {s:?} does not exist (create it as an ApiScope or IdentityResource first)"),
            );
        }
    }
    c.finish()
}

fn check_resource_scopes(
    p: &Projection,
    r: &ApiResource<SecretInput>,
) -> Result<(), ValidationErrors> {
    let mut c = Collector::default();
    for (i, s) in r.scopes.iter().enumerate() {
        match p.scope(s) {
            Some(e) if e.kind == ScopeKind::Api => {}
            Some(_) => c.push(
                format!("scopes[{i}]"),
                format!("{s:?} is an IdentityResource, not an ApiScope"),
            ),
            None => c.push(
                format!("scopes[{i}]"),
                format!("ApiScope {s:?} does not exist"),
            ),
        }
    }
    c.finish()
}

fn check_token_scopes(p: &Projection, t: &InitialAccessToken) -> Result<(), ValidationErrors> {
    let mut c = Collector::default();
    for (i, s) in t.policy.allowed_scopes.iter().enumerate() {
        c.check(
            s == OFFLINE_ACCESS || p.scope(s).is_some(),
            format!("allowedScopes[{i}]"),
            format!("scope {s:?} does not exist"),
        );
    }
    c.finish()
}

/// Only API scopes can be made available for users' API keys: an identity scope on a key
/// would let a script read the user's profile claims as the user.
fn check_api_keys_property(kind: ScopeKind, s: &ScopeResource) -> Result<(), ValidationErrors> {
    let mut c = Collector::default();
    c.check(
        kind == ScopeKind::Api || !s.for_api_keys(),
        format!("properties.{}", crate::scope::API_KEYS_PROPERTY),
        "only API scopes can be put on users' API keys",
    );
    c.finish()
}

/// Replacing the bootstrap objects must not cut the admin API off: the `signet` resource
/// keeps holding `signet.admin`, that scope stays enabled, and the `signet-admin` client
/// stays able to get it.
fn guard_admin_access(cmd: &Command) -> Result<(), CommandError> {
    use crate::bootstrap::{ADMIN_CLIENT_ID, ADMIN_RESOURCE, ADMIN_SCOPE};
    let lockout = |what: &str| {
        Err(CommandError::InUse(format!(
            "{what}: that would lock everyone out of the admin API"
        )))
    };
    match cmd {
        Command::ReplaceApiResource { resource, .. }
            if resource.name == ADMIN_RESOURCE
                && (!resource.enabled || !resource.scopes.iter().any(|s| s == ADMIN_SCOPE)) =>
        {
            lockout("API resource \"signet\" must stay enabled and hold signet.admin")
        }
        Command::ReplaceScope(ScopeKind::Api, s) if s.name == ADMIN_SCOPE && !s.enabled => {
            lockout("ApiScope \"signet.admin\" must stay enabled")
        }
        Command::ReplaceClient { client, .. }
            if client.client_id == ADMIN_CLIENT_ID
                && (!client.enabled
                    || !client.allows(crate::client::GrantType::ClientCredentials)
                    || !client.allowed_scopes.iter().any(|s| s == ADMIN_SCOPE)) =>
        {
            lockout("client \"signet-admin\" must stay enabled with client_credentials and signet.admin")
        }
        _ => Ok(()),
    }
}

/// Decides a command against the current projection, with the default policy.
pub fn decide(p: &Projection, cmd: Command) -> Result<Decision, CommandError> {
    decide_with(p, &ClientPolicy::default(), cmd)
}

/// Decides a command against the current projection and the server's policy (lifetime
/// bounds, redirect-URI rules).
pub fn decide_with(
    p: &Projection,
    policy: &ClientPolicy,
    cmd: Command,
) -> Result<Decision, CommandError> {
    guard_admin_access(&cmd)?;
    match cmd {
        Command::CreateClient(client) => {
            client.validate_with(policy)?;
            check_client_scopes(p, &client)?;
            if p.client(&client.client_id).is_some() {
                return Err(CommandError::AlreadyExists(format!(
                    "client {:?}",
                    client.client_id
                )));
            }
            let v = p.version(Aggregate::Client, &client.client_id);
            Ok(Decision {
                event: Event::ClientCreated(Box::new(client.map_secrets(SecretInput::into_stored))),
                expected_version: v,
            })
        }
        Command::ReplaceClient {
            client,
            keep_secrets,
        } => {
            // With the stored secrets kept, the body's (empty) list says nothing about them.
            let existing = p
                .client(&client.client_id)
                .ok_or_else(|| CommandError::NotFound(format!("client {:?}", client.client_id)))?;
            if !keep_secrets {
                client.validate_with(policy)?;
            } else {
                // Validate as if the stored secrets were present.
                let mut probe = (*client).clone();
                probe.client_secrets = existing
                    .client
                    .client_secrets
                    .iter()
                    .map(|s| SecretInput {
                        description: None,
                        value: s
                            .sha256
                            .as_ref()
                            .or(s.sealed.as_ref())
                            .map(|_| "stored-secret-placeholder-of-32-characters".to_owned())
                            .or_else(|| s.jwk.clone()),
                        expiration: s.expiration,
                        kind: s.kind.clone(),
                        sealed: s.sealed.clone(),
                    })
                    .collect();
                probe.validate_with(policy)?;
            }
            check_client_scopes(p, &client)?;
            let mut stored = client.map_secrets(SecretInput::into_stored);
            if keep_secrets {
                stored.client_secrets = existing.client.client_secrets.clone();
            }
            Ok(Decision {
                expected_version: p.version(Aggregate::Client, &stored.client_id),
                event: Event::ClientReplaced(Box::new(stored)),
            })
        }
        Command::DeleteClient(id) => {
            if p.client(&id).is_none() {
                return Err(CommandError::NotFound(format!("client {id:?}")));
            }
            if PROTECTED_CLIENTS.contains(&id.as_str()) {
                return Err(CommandError::InUse(format!(
                    "client {id:?} is the bootstrap admin client and cannot be deleted"
                )));
            }
            Ok(Decision {
                expected_version: p.version(Aggregate::Client, &id),
                event: Event::ClientDeleted { client_id: id },
            })
        }
        Command::CreateApiResource(r) => {
            r.validate()?;
            check_resource_scopes(p, &r)?;
            if p.api_resource(&r.name).is_some() {
                return Err(CommandError::AlreadyExists(format!(
                    "API resource {:?}",
                    r.name
                )));
            }
            Ok(Decision {
                expected_version: p.version(Aggregate::ApiResource, &r.name),
                event: Event::ApiResourceCreated(Box::new(r.map_secrets(SecretInput::into_stored))),
            })
        }
        Command::ReplaceApiResource {
            resource,
            keep_secrets,
        } => {
            let existing = p.api_resource(&resource.name).ok_or_else(|| {
                CommandError::NotFound(format!("API resource {:?}", resource.name))
            })?;
            resource.validate()?;
            check_resource_scopes(p, &resource)?;
            let mut stored = resource.map_secrets(SecretInput::into_stored);
            if keep_secrets {
                stored.api_secrets = existing.resource.api_secrets.clone();
            }
            Ok(Decision {
                expected_version: p.version(Aggregate::ApiResource, &stored.name),
                event: Event::ApiResourceReplaced(Box::new(stored)),
            })
        }
        Command::DeleteApiResource(name) => {
            if p.api_resource(&name).is_none() {
                return Err(CommandError::NotFound(format!("API resource {name:?}")));
            }
            if name == crate::bootstrap::ADMIN_RESOURCE {
                return Err(CommandError::InUse(format!(
                    "API resource {name:?} guards the admin API and cannot be deleted"
                )));
            }
            Ok(Decision {
                expected_version: p.version(Aggregate::ApiResource, &name),
                event: Event::ApiResourceDeleted { name },
            })
        }
        Command::CreateScope(kind, s) => {
            s.validate()?;
            check_api_keys_property(kind, &s)?;
            if let Some(e) = p.scope(&s.name) {
                return Err(CommandError::AlreadyExists(format!(
                    "{} {:?}",
                    e.kind.label(),
                    s.name
                )));
            }
            if s.name == OFFLINE_ACCESS {
                return Err(CommandError::Invalid(ValidationErrors::single(
                    "name",
                    "offline_access is built in",
                )));
            }
            Ok(Decision {
                expected_version: p.version(Aggregate::Scope, &s.name),
                event: match kind {
                    ScopeKind::Api => Event::ApiScopeCreated(s),
                    ScopeKind::Identity => Event::IdentityResourceCreated(s),
                },
            })
        }
        Command::ReplaceScope(kind, s) => {
            s.validate()?;
            check_api_keys_property(kind, &s)?;
            match p.scope(&s.name) {
                Some(e) if e.kind == kind => {}
                _ => {
                    return Err(CommandError::NotFound(format!(
                        "{} {:?}",
                        kind.label(),
                        s.name
                    )))
                }
            }
            Ok(Decision {
                expected_version: p.version(Aggregate::Scope, &s.name),
                event: match kind {
                    ScopeKind::Api => Event::ApiScopeReplaced(s),
                    ScopeKind::Identity => Event::IdentityResourceReplaced(s),
                },
            })
        }
        Command::ReplaceInitialAccessToken(t) => {
            check_token_scopes(p, &t)?;
            if p.initial_access_token(&t.id).is_none() {
                return Err(CommandError::NotFound(format!(
                    "initial access token {:?}",
                    t.id
                )));
            }
            Ok(Decision {
                expected_version: p.version(Aggregate::InitialAccessToken, &t.id),
                event: Event::InitialAccessTokenReplaced(t),
            })
        }
        Command::CreateInitialAccessToken(t) => {
            check_token_scopes(p, &t)?;
            if p.initial_access_token(&t.id).is_some() {
                return Err(CommandError::AlreadyExists(format!(
                    "initial access token {:?}",
                    t.id
                )));
            }
            Ok(Decision {
                expected_version: p.version(Aggregate::InitialAccessToken, &t.id),
                event: Event::InitialAccessTokenCreated(t),
            })
        }
        Command::CreateIdentityProvider(idp) => {
            if p.identity_provider(&idp.scheme).is_some() {
                return Err(CommandError::AlreadyExists(format!(
                    "identity provider {:?}",
                    idp.scheme
                )));
            }
            Ok(Decision {
                expected_version: p.version(Aggregate::IdentityProvider, &idp.scheme),
                event: Event::IdentityProviderCreated(idp),
            })
        }
        Command::ReplaceIdentityProvider(idp) => {
            if p.identity_provider(&idp.scheme).is_none() {
                return Err(CommandError::NotFound(format!(
                    "identity provider {:?}",
                    idp.scheme
                )));
            }
            Ok(Decision {
                expected_version: p.version(Aggregate::IdentityProvider, &idp.scheme),
                event: Event::IdentityProviderReplaced(idp),
            })
        }
        Command::DeleteIdentityProvider(scheme) => {
            if p.identity_provider(&scheme).is_none() {
                return Err(CommandError::NotFound(format!(
                    "identity provider {scheme:?}"
                )));
            }
            // A client naming it in identityProviderRestrictions keeps the name: the
            // provider is just not offered any more (nothing half-deleted).
            Ok(Decision {
                expected_version: p.version(Aggregate::IdentityProvider, &scheme),
                event: Event::IdentityProviderDeleted { scheme },
            })
        }
        Command::DeleteInitialAccessToken(id) => {
            if p.initial_access_token(&id).is_none() {
                return Err(CommandError::NotFound(format!(
                    "initial access token {id:?}"
                )));
            }
            Ok(Decision {
                expected_version: p.version(Aggregate::InitialAccessToken, &id),
                event: Event::InitialAccessTokenDeleted { id },
            })
        }
        Command::UseInitialAccessToken { id, client_id, now } => {
            let t = p.initial_access_token(&id).ok_or_else(|| {
                CommandError::Unusable("the initial access token is unknown".into())
            })?;
            if t.token.expires_at <= now {
                return Err(CommandError::Unusable(
                    "the initial access token has expired".into(),
                ));
            }
            if t.token.max_uses.is_some_and(|max| t.uses >= max) {
                return Err(CommandError::Unusable(
                    "the initial access token is used up".into(),
                ));
            }
            Ok(Decision {
                expected_version: p.version(Aggregate::InitialAccessToken, &id),
                event: Event::InitialAccessTokenUsed { id, client_id },
            })
        }
        Command::RegisterClient {
            client,
            registration,
        } => {
            client.validate_with(policy)?;
            check_client_scopes(p, &client)?;
            if p.client(&client.client_id).is_some() {
                return Err(CommandError::AlreadyExists(format!(
                    "client {:?}",
                    client.client_id
                )));
            }
            Ok(Decision {
                expected_version: p.version(Aggregate::Client, &client.client_id),
                event: Event::ClientRegistered(Box::new(RegisteredClient {
                    client: client.map_secrets(SecretInput::into_stored),
                    registration: *registration,
                })),
            })
        }
        Command::ReplaceRegistration {
            client,
            registration,
            keep_secrets,
        } => {
            let existing = p
                .client(&client.client_id)
                .filter(|e| e.registration.is_some())
                .ok_or_else(|| CommandError::NotFound(format!("client {:?}", client.client_id)))?;
            // With the stored secrets kept, the new secret in the body is a placeholder
            // that only lets the rules see a secret.
            client.validate_with(policy)?;
            check_client_scopes(p, &client)?;
            let mut stored = client.map_secrets(SecretInput::into_stored);
            if keep_secrets {
                stored.client_secrets = existing.client.client_secrets.clone();
            }
            Ok(Decision {
                expected_version: p.version(Aggregate::Client, &stored.client_id),
                event: Event::ClientRegistrationReplaced(Box::new(RegisteredClient {
                    client: stored,
                    registration: *registration,
                })),
            })
        }
        Command::DeleteScope(kind, name) => {
            match p.scope(&name) {
                Some(e) if e.kind == kind => {}
                _ => return Err(CommandError::NotFound(format!("{} {name:?}", kind.label()))),
            }
            let mut users: Vec<String> = p
                .clients()
                .filter(|c| c.allowed_scopes.contains(&name))
                .map(|c| format!("client {:?}", c.client_id))
                .collect();
            users.extend(
                p.api_resources()
                    .filter(|r| r.scopes.contains(&name))
                    .map(|r| format!("API resource {:?}", r.name)),
            );
            users.extend(
                p.initial_access_tokens()
                    .filter(|t| t.token.policy.allowed_scopes.contains(&name))
                    .map(|t| format!("initial access token {:?}", t.token.id)),
            );
            if !users.is_empty() {
                return Err(CommandError::InUse(format!(
                    "{} {name:?} is still used by {}",
                    kind.label(),
                    users.join(", ")
                )));
            }
            Ok(Decision {
                expected_version: p.version(Aggregate::Scope, &name),
                event: match kind {
                    ScopeKind::Api => Event::ApiScopeDeleted { name },
                    ScopeKind::Identity => Event::IdentityResourceDeleted { name },
                },
            })
        }
    }
}

#[cfg(test)]
mod tests;
