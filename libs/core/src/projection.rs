//! The projection: configuration folded from the event log, plus what the hot path derives
//! from it once (decoded secret hashes, pre-serialized client claims, the scope-to-audience
//! index, the JWKS document). Readers get it through an `ArcSwap` in the issuer, so the
//! token endpoint reads it without locks or I/O; writers fold events into a copy.
//!
//! `apply` trusts nothing: a gap in sequences, an event for the wrong subject, or an event
//! that contradicts the state (creating what exists, changing what does not) is an error
//! that stops the node, never a skipped event.
//!
//! Users are not held here: their events (`user.*`, `api_key.*`, `username.*`) only advance
//! the sequence; the issuer projects them into a key-value store outside memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use signet_jose::{Algorithm, Jwks};

use crate::client::{Client, GrantType};
use crate::events::{Aggregate, Event};
use crate::identity_provider::IdentityProvider;
use crate::keys::{KeyState, PublicKeyRecord};
use crate::registration::{InitialAccessToken, RegistrationInfo};
use crate::resource::ApiResource;
use crate::scope::{ScopeKind, ScopeResource};
use crate::secret::SecretSet;

enum Change {
    Create,
    Replace,
}

/// A client as the hot path needs it.
#[derive(Debug)]
pub struct ClientEntry {
    pub client: Client,
    pub secrets: SecretSet,
    /// The client's `claims` as JSON object members (`"k":v,...`, no braces; empty when it
    /// has none), already prefixed, typed and grouped into arrays where a type repeats.
    pub claims_json: String,
    /// Which life of this `clientId` this is: the sequence of the event that created it.
    /// Codes, refresh tokens, reference tokens and consents carry it, so a deleted client's
    /// are dead for good, even after a client with the same id is created again.
    pub incarnation: u64,
    /// Set when the client registered itself (RFC 7591); admin-created clients have none.
    pub registration: Option<RegistrationInfo>,
}

/// An initial access token and how many registrations used it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitialAccessTokenEntry {
    pub token: InitialAccessToken,
    pub uses: u32,
}

impl ClientEntry {
    pub fn new(client: Client) -> Self {
        Self::with_incarnation(client, 0)
    }

    pub fn with_incarnation(client: Client, incarnation: u64) -> Self {
        ClientEntry {
            secrets: SecretSet::new(&client.client_secrets),
            claims_json: client_claims_json(&client),
            client,
            incarnation,
            registration: None,
        }
    }

    pub fn allows(&self, g: GrantType) -> bool {
        self.client.allows(g)
    }
}

fn typed_claim_value(value: &str, value_type: Option<&str>) -> Value {
    let t = value_type.unwrap_or("");
    let parsed = if t.ends_with("#integer") || t.ends_with("#int") || t.ends_with("#long") {
        value.parse::<i64>().ok().map(Value::from)
    } else if t.ends_with("#boolean") {
        value.parse::<bool>().ok().map(Value::from)
    } else if t.ends_with("#double") {
        value.parse::<f64>().ok().map(Value::from)
    } else if t == "json" {
        serde_json::from_str(value).ok()
    } else {
        None
    };
    parsed.unwrap_or_else(|| Value::String(value.to_owned()))
}

fn client_claims_json(client: &Client) -> String {
    let mut map: Map<String, Value> = Map::new();
    for claim in &client.claims {
        let name = client.claim_name(claim);
        let v = typed_claim_value(&claim.value, claim.value_type.as_deref());
        match map.get_mut(&name) {
            None => {
                map.insert(name, v);
            }
            Some(Value::Array(a)) => a.push(v),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, v]);
            }
        }
    }
    if map.is_empty() {
        return String::new();
    }
    let s = Value::Object(map).to_string();
    s[1..s.len() - 1].to_owned()
}

/// An API resource with its decoded introspection secrets.
#[derive(Debug)]
pub struct ResourceEntry {
    pub resource: ApiResource,
    pub secrets: SecretSet,
}

#[derive(Debug, Clone)]
pub struct ScopeEntry {
    pub kind: ScopeKind,
    pub scope: Arc<ScopeResource>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProjectionError {
    /// The payload is not a known configuration event (e.g. written by a newer version).
    #[error("event {seq} on {subject} is not a known configuration event: {reason}")]
    Decode {
        seq: u64,
        subject: String,
        reason: String,
    },
    #[error("sequence gap: projection at {at}, next event is {got}")]
    Gap { at: u64, got: u64 },
    #[error("event {seq} on {subject} is inconsistent with the projection: {reason}")]
    Inconsistent {
        seq: u64,
        subject: String,
        reason: String,
    },
}

/// Everything the configuration log says, as of event `seq`.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    seq: u64,
    clients: HashMap<String, Arc<ClientEntry>>,
    resources: BTreeMap<String, Arc<ResourceEntry>>,
    scopes: BTreeMap<String, ScopeEntry>,
    keys: BTreeMap<String, PublicKeyRecord>,
    initial_access_tokens: BTreeMap<String, InitialAccessTokenEntry>,
    identity_providers: BTreeMap<String, Arc<IdentityProvider>>,
    versions: HashMap<String, u64>,
    // Derived.
    audiences: HashMap<String, Vec<Arc<ResourceEntry>>>,
    jwks_json: Arc<str>,
}

/// The serializable part of a projection (derived data is rebuilt on load).
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    seq: u64,
    clients: Vec<Client>,
    resources: Vec<ApiResource>,
    api_scopes: Vec<ScopeResource>,
    identity_resources: Vec<ScopeResource>,
    keys: Vec<PublicKeyRecord>,
    versions: BTreeMap<String, u64>,
    /// Each client's incarnation ([`ClientEntry::incarnation`]).
    #[serde(default)]
    incarnations: BTreeMap<String, u64>,
    /// The registrations of self-registered clients, by client id.
    #[serde(default)]
    registrations: BTreeMap<String, RegistrationInfo>,
    #[serde(default)]
    initial_access_tokens: Vec<InitialAccessTokenEntry>,
    #[serde(default)]
    identity_providers: Vec<IdentityProvider>,
}

impl Projection {
    pub fn new() -> Self {
        let mut p = Projection::default();
        p.rebuild_jwks();
        p
    }

    /// The sequence of the last applied event.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The version of an aggregate: the sequence of its last event, 0 when it has none.
    pub fn version(&self, aggregate: Aggregate, id: &str) -> u64 {
        self.versions
            .get(&aggregate.subject(id))
            .copied()
            .unwrap_or(0)
    }

    pub fn client(&self, client_id: &str) -> Option<&Arc<ClientEntry>> {
        self.clients.get(client_id)
    }

    pub fn clients(&self) -> impl Iterator<Item = &Client> {
        let mut v: Vec<&Client> = self.clients.values().map(|e| &e.client).collect();
        v.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        v.into_iter()
    }

    pub fn initial_access_token(&self, id: &str) -> Option<&InitialAccessTokenEntry> {
        self.initial_access_tokens.get(id)
    }

    /// An upstream identity provider by scheme.
    pub fn identity_provider(&self, scheme: &str) -> Option<&Arc<IdentityProvider>> {
        self.identity_providers.get(scheme)
    }

    /// Every upstream identity provider, by scheme.
    pub fn identity_providers(&self) -> impl Iterator<Item = &Arc<IdentityProvider>> {
        self.identity_providers.values()
    }

    pub fn initial_access_tokens(&self) -> impl Iterator<Item = &InitialAccessTokenEntry> {
        self.initial_access_tokens.values()
    }

    pub fn api_resource(&self, name: &str) -> Option<&Arc<ResourceEntry>> {
        self.resources.get(name)
    }

    pub fn api_resources(&self) -> impl Iterator<Item = &ApiResource> {
        self.resources.values().map(|e| &e.resource)
    }

    pub fn scope(&self, name: &str) -> Option<&ScopeEntry> {
        self.scopes.get(name)
    }

    pub fn scopes(&self, kind: ScopeKind) -> impl Iterator<Item = &ScopeResource> {
        self.scopes
            .values()
            .filter(move |e| e.kind == kind)
            .map(|e| e.scope.as_ref())
    }

    /// Enabled API resources holding the API scope `scope`.
    pub fn audiences_of(&self, scope: &str) -> &[Arc<ResourceEntry>] {
        self.audiences.get(scope).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn keys(&self) -> impl Iterator<Item = &PublicKeyRecord> {
        self.keys.values()
    }

    pub fn key(&self, kid: &str) -> Option<&PublicKeyRecord> {
        self.keys.get(kid)
    }

    /// The active key for `alg` (the newest activated, if several).
    pub fn active_key(&self, alg: Algorithm) -> Option<&PublicKeyRecord> {
        self.keys
            .values()
            .filter(|k| k.state == KeyState::Active && k.jwk.alg == alg)
            .max_by_key(|k| k.activated_at)
    }

    /// The JWKS document (RFC 7517 section 5), serialized once per key change.
    pub fn jwks_json(&self) -> &Arc<str> {
        &self.jwks_json
    }

    /// Decodes one event's JSON payload and folds it. On error the projection is unchanged.
    pub fn apply_json(
        &mut self,
        seq: u64,
        subject: &str,
        payload: &[u8],
    ) -> Result<(), ProjectionError> {
        let event = Event::from_json(payload).map_err(|e| ProjectionError::Decode {
            seq,
            subject: subject.to_owned(),
            reason: e.to_string(),
        })?;
        self.apply(seq, subject, event)
    }

    /// Folds one event. On error the projection is unchanged.
    pub fn apply(&mut self, seq: u64, subject: &str, event: Event) -> Result<(), ProjectionError> {
        if seq != self.seq + 1 {
            return Err(ProjectionError::Gap {
                at: self.seq,
                got: seq,
            });
        }
        let inconsistent = |reason: String| ProjectionError::Inconsistent {
            seq,
            subject: subject.to_owned(),
            reason,
        };
        if event.subject() != subject {
            return Err(inconsistent(format!(
                "the event belongs to {}",
                event.subject()
            )));
        }
        // Users live in their own projection outside memory (the issuer's users
        // projection): this one only moves past their events, and keeps no version for
        // them (their versions are the log's and that projection's).
        if matches!(
            event.aggregate().0,
            Aggregate::User | Aggregate::ApiKey | Aggregate::Username
        ) {
            self.seq = seq;
            return Ok(());
        }
        let exists = |present: bool, want: bool, what: &str| {
            if present == want {
                Ok(())
            } else if want {
                Err(inconsistent(format!("{what} does not exist")))
            } else {
                Err(inconsistent(format!("{what} already exists")))
            }
        };
        let event_kind = match &event {
            Event::ClientReplaced(_)
            | Event::ClientRegistrationReplaced(_)
            | Event::ApiResourceReplaced(_)
            | Event::ApiScopeReplaced(_)
            | Event::IdentityResourceReplaced(_) => Change::Replace,
            _ => Change::Create,
        };
        match event {
            Event::ClientCreated(c) | Event::ClientReplaced(c) => {
                let present = self.clients.contains_key(&c.client_id);
                exists(present, matches!(event_kind, Change::Replace), "client")?;
                let incarnation = match event_kind {
                    Change::Replace => self.clients[&c.client_id].incarnation,
                    Change::Create => seq,
                };
                // An admin's replacement keeps the registration of a registered client.
                let registration = match event_kind {
                    Change::Replace => self.clients[&c.client_id].registration.clone(),
                    Change::Create => None,
                };
                let mut entry = ClientEntry::with_incarnation(*c, incarnation);
                entry.registration = registration;
                self.clients
                    .insert(entry.client.client_id.clone(), Arc::new(entry));
            }
            Event::ClientRegistered(r) | Event::ClientRegistrationReplaced(r) => {
                let id = r.client.client_id.clone();
                let replace = matches!(event_kind, Change::Replace);
                exists(self.clients.contains_key(&id), replace, "client")?;
                let incarnation = if replace {
                    let existing = &self.clients[&id];
                    if existing.registration.is_none() {
                        return Err(inconsistent("the client was not registered".into()));
                    }
                    existing.incarnation
                } else {
                    seq
                };
                let r = *r;
                let mut entry = ClientEntry::with_incarnation(r.client, incarnation);
                entry.registration = Some(r.registration);
                self.clients.insert(id, Arc::new(entry));
            }
            Event::InitialAccessTokenCreated(t) => {
                exists(
                    self.initial_access_tokens.contains_key(&t.id),
                    false,
                    "initial access token",
                )?;
                self.initial_access_tokens
                    .insert(t.id.clone(), InitialAccessTokenEntry { token: *t, uses: 0 });
            }
            Event::InitialAccessTokenReplaced(t) => {
                let entry = self
                    .initial_access_tokens
                    .get_mut(&t.id)
                    .ok_or_else(|| inconsistent("initial access token does not exist".into()))?;
                entry.token = *t;
            }
            Event::InitialAccessTokenUsed { id, .. } => {
                let t = self
                    .initial_access_tokens
                    .get_mut(&id)
                    .ok_or_else(|| inconsistent("initial access token does not exist".into()))?;
                t.uses = t.uses.saturating_add(1);
            }
            Event::IdentityProviderCreated(idp) => {
                exists(
                    self.identity_providers.contains_key(&idp.scheme),
                    false,
                    "identity provider",
                )?;
                self.identity_providers
                    .insert(idp.scheme.clone(), Arc::new(*idp));
            }
            Event::IdentityProviderReplaced(idp) => {
                exists(
                    self.identity_providers.contains_key(&idp.scheme),
                    true,
                    "identity provider",
                )?;
                self.identity_providers
                    .insert(idp.scheme.clone(), Arc::new(*idp));
            }
            Event::IdentityProviderDeleted { scheme } => {
                exists(
                    self.identity_providers.contains_key(&scheme),
                    true,
                    "identity provider",
                )?;
                self.identity_providers.remove(&scheme);
            }
            Event::InitialAccessTokenDeleted { id } => {
                exists(
                    self.initial_access_tokens.contains_key(&id),
                    true,
                    "initial access token",
                )?;
                self.initial_access_tokens.remove(&id);
            }
            Event::ClientDeleted { client_id } => {
                exists(self.clients.contains_key(&client_id), true, "client")?;
                self.clients.remove(&client_id);
            }
            Event::ApiResourceCreated(r) | Event::ApiResourceReplaced(r) => {
                let present = self.resources.contains_key(&r.name);
                exists(
                    present,
                    matches!(event_kind, Change::Replace),
                    "API resource",
                )?;
                let entry = ResourceEntry {
                    secrets: SecretSet::new(&r.api_secrets),
                    resource: *r,
                };
                self.resources
                    .insert(entry.resource.name.clone(), Arc::new(entry));
                self.rebuild_audiences();
            }
            Event::ApiResourceDeleted { name } => {
                exists(self.resources.contains_key(&name), true, "API resource")?;
                self.resources.remove(&name);
                self.rebuild_audiences();
            }
            Event::ApiScopeCreated(s) | Event::ApiScopeReplaced(s) => {
                exists(
                    self.scopes.contains_key(&s.name),
                    matches!(event_kind, Change::Replace),
                    "scope",
                )?;
                self.put_scope(ScopeKind::Api, s).map_err(inconsistent)?;
            }
            Event::IdentityResourceCreated(s) | Event::IdentityResourceReplaced(s) => {
                exists(
                    self.scopes.contains_key(&s.name),
                    matches!(event_kind, Change::Replace),
                    "scope",
                )?;
                self.put_scope(ScopeKind::Identity, s)
                    .map_err(inconsistent)?;
            }
            Event::ApiScopeDeleted { name } | Event::IdentityResourceDeleted { name } => {
                exists(self.scopes.contains_key(&name), true, "scope")?;
                self.scopes.remove(&name);
                self.rebuild_audiences();
            }
            Event::SigningKeyPublished { jwk, at } => {
                exists(self.keys.contains_key(&jwk.kid), false, "signing key")?;
                self.keys.insert(
                    jwk.kid.clone(),
                    PublicKeyRecord {
                        jwk,
                        state: KeyState::Published,
                        published_at: at,
                        activated_at: None,
                        retired_at: None,
                    },
                );
                self.rebuild_jwks();
            }
            Event::SigningKeyActivated { kid, at } => {
                let k = self
                    .keys
                    .get_mut(&kid)
                    .ok_or_else(|| inconsistent("signing key does not exist".into()))?;
                k.state = KeyState::Active;
                k.activated_at = Some(at);
            }
            Event::SigningKeyRetired { kid, at } => {
                let k = self
                    .keys
                    .get_mut(&kid)
                    .ok_or_else(|| inconsistent("signing key does not exist".into()))?;
                k.state = KeyState::Retired;
                k.retired_at = Some(at);
            }
            Event::SigningKeyRemoved { kid, .. } => {
                exists(self.keys.contains_key(&kid), true, "signing key")?;
                self.keys.remove(&kid);
                self.rebuild_jwks();
            }
            Event::UserCreated(_)
            | Event::UserReplaced(_)
            | Event::UserDeleted { .. }
            | Event::UserSecurityChanged { .. }
            | Event::ApiKeyCreated(_)
            | Event::ApiKeyRevoked { .. }
            | Event::UsernameClaimed { .. }
            | Event::UsernameReleased { .. } => {}
        }
        self.versions.insert(subject.to_owned(), seq);
        self.seq = seq;
        Ok(())
    }

    fn put_scope(&mut self, kind: ScopeKind, s: ScopeResource) -> Result<(), String> {
        if let Some(existing) = self.scopes.get(&s.name) {
            if existing.kind != kind {
                return Err(format!("{} is a {}", s.name, existing.kind.label()));
            }
        }
        self.scopes.insert(
            s.name.clone(),
            ScopeEntry {
                kind,
                scope: Arc::new(s),
            },
        );
        self.rebuild_audiences();
        Ok(())
    }

    fn rebuild_audiences(&mut self) {
        let mut audiences: HashMap<String, Vec<Arc<ResourceEntry>>> = HashMap::new();
        for entry in self.resources.values().filter(|e| e.resource.enabled) {
            for scope in &entry.resource.scopes {
                audiences
                    .entry(scope.clone())
                    .or_default()
                    .push(entry.clone());
            }
        }
        self.audiences = audiences;
    }

    fn rebuild_jwks(&mut self) {
        let jwks = Jwks {
            keys: self.keys.values().map(|k| k.jwk.clone()).collect(),
        };
        self.jwks_json = serde_json::to_string(&jwks).unwrap_or_default().into();
    }

    /// Serializes the projection's state for a snapshot.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let data = SnapshotData {
            seq: self.seq,
            clients: self.clients().cloned().collect(),
            resources: self.api_resources().cloned().collect(),
            api_scopes: self.scopes(ScopeKind::Api).cloned().collect(),
            identity_resources: self.scopes(ScopeKind::Identity).cloned().collect(),
            keys: self.keys.values().cloned().collect(),
            versions: self.versions.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            incarnations: self
                .clients
                .values()
                .map(|e| (e.client.client_id.clone(), e.incarnation))
                .collect(),
            registrations: self
                .clients
                .values()
                .filter_map(|e| {
                    e.registration
                        .clone()
                        .map(|r| (e.client.client_id.clone(), r))
                })
                .collect(),
            initial_access_tokens: self.initial_access_tokens.values().cloned().collect(),
            identity_providers: self
                .identity_providers
                .values()
                .map(|p| (**p).clone())
                .collect(),
        };
        serde_json::to_vec(&data).unwrap_or_default()
    }

    /// Rebuilds a projection from a snapshot written by [`Projection::to_snapshot`].
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let data: SnapshotData = serde_json::from_slice(bytes)?;
        let mut p = Projection {
            seq: data.seq,
            versions: data.versions.into_iter().collect(),
            ..Projection::default()
        };
        for c in data.clients {
            let incarnation = data.incarnations.get(&c.client_id).copied().unwrap_or(0);
            let registration = data.registrations.get(&c.client_id).cloned();
            let mut entry = ClientEntry::with_incarnation(c, incarnation);
            entry.registration = registration;
            p.clients
                .insert(entry.client.client_id.clone(), Arc::new(entry));
        }
        for idp in data.identity_providers {
            p.identity_providers
                .insert(idp.scheme.clone(), Arc::new(idp));
        }
        for t in data.initial_access_tokens {
            p.initial_access_tokens.insert(t.token.id.clone(), t);
        }
        for r in data.resources {
            let secrets = SecretSet::new(&r.api_secrets);
            p.resources.insert(
                r.name.clone(),
                Arc::new(ResourceEntry {
                    resource: r,
                    secrets,
                }),
            );
        }
        for (kind, list) in [
            (ScopeKind::Api, data.api_scopes),
            (ScopeKind::Identity, data.identity_resources),
        ] {
            for s in list {
                p.scopes.insert(
                    s.name.clone(),
                    ScopeEntry {
                        kind,
                        scope: Arc::new(s),
                    },
                );
            }
        }
        for k in data.keys {
            p.keys.insert(k.jwk.kid.clone(), k);
        }
        p.rebuild_audiences();
        p.rebuild_jwks();
        Ok(p)
    }
}

#[cfg(test)]
mod tests;
