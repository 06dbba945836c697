//! Key lifecycle decisions: which algorithms must have an active key, generating and sealing
//! keys, the rotation schedule, and recording every key's public lifecycle in the event log
//! (published → active → retired → removed).
//!
//! Rotation, per algorithm, with the [`KeyPolicy`] intervals (see [`plan`]):
//!
//! ```text
//! key A:  active ──────────────── rotate_after ────────────────▶ retired ── retire_for ──▶ removed
//! key B:                      published ── prepublish ──▶ active ───────────── ...
//! ```
//!
//! B enters the JWKS `prepublish` before it signs (longer than any verifier's JWKS cache),
//! so no verifier meets a token signed with a key it has not fetched; A stays in the JWKS
//! `retire_for` after it stopped signing (at least the longest token lifetime), so every
//! token it signed verifies until it expires.
//!
//! Every event is appended with the key's expected version (optimistic concurrency): a
//! second writer racing on the same key gets a conflict, which the manager reads as
//! "someone else did it", catches up and decides again at the next tick. In a cluster only
//! the key manager holding the leader lock ([`crate::lock`]) writes at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use signet_core::events::{Aggregate, Event};
use signet_core::keys::{KeyState, PublicKeyRecord};
use signet_core::projection::Projection;
use signet_core::{Algorithm, UnixTime};
use signet_eventlog::{EventLog, EventLogError, ExpectedVersion, NewEvent, Seq};
use signet_jose::{b64url, generate_pkcs8, SigningKey};

use crate::lease::{system_clock, Clock};
use crate::{Kek, KeyError, KeyVault};

/// The longest JWKS `Cache-Control: max-age` Signet serves (`--jwks-max-age` is at most
/// 3600 s): a key must be published longer than this before it signs.
pub const MAX_JWKS_MAX_AGE: Duration = Duration::from_secs(3600);

/// Which algorithms always have an active key, and the rotation schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Algorithms that always have an active key (all four by default). Keys of other
    /// algorithms that are active (imported) rotate on the same schedule.
    pub algorithms: Vec<Algorithm>,
    /// How long a key signs before the next one takes over (30 days).
    pub rotate_after: Duration,
    /// How long before it activates a new key is published in the JWKS (2 hours); must
    /// exceed the longest JWKS cache lifetime ([`MAX_JWKS_MAX_AGE`]).
    pub prepublish: Duration,
    /// How long a retired key stays in the JWKS (24 hours). Removal waits at least the
    /// longest token lifetime of any client too, whichever is longer.
    pub retire_for: Duration,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        KeyPolicy {
            algorithms: Algorithm::ALL.to_vec(),
            rotate_after: Duration::from_secs(30 * 24 * 3600),
            prepublish: Duration::from_secs(2 * 3600),
            retire_for: Duration::from_secs(24 * 3600),
        }
    }
}

impl KeyPolicy {
    /// The shortest `retire_for`: the default access-token lifetime.
    pub const MIN_RETIRE_FOR: Duration = Duration::from_secs(3600);

    /// Checks the schedule: `prepublish` longer than any JWKS cache, `rotate_after` longer
    /// than `prepublish`, `retire_for` at least [`Self::MIN_RETIRE_FOR`].
    pub fn validate(&self) -> Result<(), KeyError> {
        let s = |d: Duration| d.as_secs();
        if self.prepublish <= MAX_JWKS_MAX_AGE {
            return Err(KeyError::Policy(format!(
                "prepublish ({} s) must exceed the longest JWKS cache lifetime ({} s), or verifiers meet tokens signed with keys they have not fetched",
                s(self.prepublish),
                s(MAX_JWKS_MAX_AGE)
            )));
        }
        if self.rotate_after <= self.prepublish {
            return Err(KeyError::Policy(format!(
                "rotate_after ({} s) must be longer than prepublish ({} s)",
                s(self.rotate_after),
                s(self.prepublish)
            )));
        }
        if self.retire_for < Self::MIN_RETIRE_FOR {
            return Err(KeyError::Policy(format!(
                "retire_for ({} s) must be at least {} s (the default access-token lifetime)",
                s(self.retire_for),
                s(Self::MIN_RETIRE_FOR)
            )));
        }
        if self.algorithms.is_empty() {
            return Err(KeyError::Policy("no signing algorithm".to_owned()));
        }
        Ok(())
    }
}

/// One change of the rotation schedule, as [`plan`] decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Generate, seal and publish the next key of this algorithm.
    Publish(Algorithm),
    /// Make this published key the signing key of its algorithm.
    Activate(String),
    /// Stop signing with this key; it stays in the JWKS.
    Retire(String),
    /// Take this retired key out of the JWKS (its last token expired).
    Remove(String),
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The longest lifetime, in seconds, of a token any client gets signed.
fn longest_token_lifetime(p: &Projection) -> i64 {
    p.clients()
        .map(|c| c.access_token_lifetime.max(c.identity_token_lifetime))
        .max()
        .map(i64::from)
        .unwrap_or(0)
}

/// The published, not yet active keys of `alg`, oldest first.
fn pending(p: &Projection, alg: Algorithm) -> Vec<&PublicKeyRecord> {
    let mut v: Vec<&PublicKeyRecord> = p
        .keys()
        .filter(|k| k.jwk.alg == alg && k.state == KeyState::Published)
        .collect();
    v.sort_by(|a, b| (a.published_at, &a.jwk.kid).cmp(&(b.published_at, &b.jwk.kid)));
    v
}

/// What the rotation schedule asks for at `now`, in the order to do it. Pure.
///
/// For every algorithm of the policy and every algorithm with an active key:
/// - the next key is published `prepublish` before the active one is `rotate_after` old
///   (unless a published key is already waiting);
/// - it activates once the active key is `rotate_after` old *and* it has been published for
///   `prepublish` (a late publication delays the rotation, never shortens the
///   pre-publication), and the previous key retires in the same breath;
/// - older keys still active beside the newest (a race) retire;
/// - with no active key but a published one (a key manager stopped between publishing and
///   activating), the oldest published key activates at once: nothing signs otherwise.
///
/// Retired keys are removed `retire_for` after retiring, or after the longest token
/// lifetime of any client when that is longer. An algorithm without any key is
/// [`KeyManager::ensure_active`]'s business.
pub fn plan(p: &Projection, policy: &KeyPolicy, now: UnixTime) -> Vec<Step> {
    let rotate_after = secs(policy.rotate_after);
    let prepublish = secs(policy.prepublish);
    let keep_retired = secs(policy.retire_for).max(longest_token_lifetime(p));
    let algs: Vec<Algorithm> = Algorithm::ALL
        .into_iter()
        .filter(|alg| {
            policy.algorithms.contains(alg)
                || p.keys()
                    .any(|k| k.jwk.alg == *alg && k.state == KeyState::Active)
        })
        .collect();
    let mut steps = Vec::new();
    for alg in algs {
        let waiting = pending(p, alg);
        let next = waiting.first();
        let Some(active) = p.active_key(alg) else {
            if let Some(next) = next {
                steps.push(Step::Activate(next.jwk.kid.clone()));
            }
            continue;
        };
        for other in p.keys().filter(|k| {
            k.jwk.alg == alg && k.state == KeyState::Active && k.jwk.kid != active.jwk.kid
        }) {
            steps.push(Step::Retire(other.jwk.kid.clone()));
        }
        let activated = active.activated_at.unwrap_or(active.published_at);
        let due = activated.saturating_add(rotate_after);
        match next {
            None if now >= due.saturating_sub(prepublish) => steps.push(Step::Publish(alg)),
            Some(next) if now >= due && now >= next.published_at.saturating_add(prepublish) => {
                steps.push(Step::Activate(next.jwk.kid.clone()));
                steps.push(Step::Retire(active.jwk.kid.clone()));
            }
            _ => {}
        }
    }
    for k in p.keys().filter(|k| k.state == KeyState::Retired) {
        let retired = k.retired_at.unwrap_or(k.published_at);
        if now >= retired.saturating_add(keep_retired) {
            steps.push(Step::Remove(k.jwk.kid.clone()));
        }
    }
    steps
}

/// Called with the keys an issuer should hold (published and active) whenever they change.
type KeysChanged = Box<dyn Fn(Vec<Arc<SigningKey>>) + Send + Sync>;

pub struct KeyManager {
    kek: Kek,
    vault: Arc<dyn KeyVault>,
    log: Arc<dyn EventLog>,
    policy: KeyPolicy,
    /// Private keys already unsealed and checked against their public record, by kid
    /// (parsing an RSA key is costly; leases ask for the same keys again and again).
    parsed: Mutex<HashMap<String, Arc<SigningKey>>>,
    /// The manager's own view of the log, caught up before every decision; holding its
    /// lock serializes this process's key changes (ticks and admin operations).
    view: tokio::sync::Mutex<Projection>,
    keys_changed: OnceLock<KeysChanged>,
    /// When set, appends only while it says yes (the leader lock).
    write_guard: OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
    clock: Clock,
}

impl std::fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyManager")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn leasable(state: KeyState) -> bool {
    matches!(state, KeyState::Published | KeyState::Active)
}

/// The actor recorded on key lifecycle events.
pub const ACTOR: &str = "keymanager";

pub(crate) fn new_kid(alg: Algorithm) -> Result<String, KeyError> {
    let mut bytes = [0u8; 12];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::Crypto("no randomness"))?;
    Ok(format!(
        "{}-{}",
        alg.as_str().to_ascii_lowercase(),
        b64url(&bytes)
    ))
}

fn is_conflict(e: &KeyError) -> bool {
    matches!(e, KeyError::EventLog(EventLogError::Conflict { .. }))
}

impl KeyManager {
    pub fn new(
        kek: Kek,
        vault: Arc<dyn KeyVault>,
        log: Arc<dyn EventLog>,
        policy: KeyPolicy,
    ) -> Self {
        KeyManager {
            kek,
            vault,
            log,
            policy,
            parsed: Mutex::new(HashMap::new()),
            view: tokio::sync::Mutex::new(Projection::new()),
            keys_changed: OnceLock::new(),
            write_guard: OnceLock::new(),
            clock: system_clock(),
        }
    }

    /// The clock of admin operations and [`tick`](Self::tick)s run without a time.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    /// Now, by this manager's clock.
    pub fn now(&self) -> UnixTime {
        (self.clock)()
    }

    /// Registers (once) what to call with the keys an issuer should hold — the published
    /// and active ones — after this manager published a key (before it activates it) and
    /// after every change it made. `signet serve` hands them to its signers.
    pub fn on_keys_changed(&self, f: impl Fn(Vec<Arc<SigningKey>>) + Send + Sync + 'static) {
        let _ = self.keys_changed.set(Box::new(f));
    }

    /// Lets this manager append events only while `may_write` says yes (in a cluster:
    /// while it holds the leader lock), checked before every append, so a key manager that
    /// lost the lock in the middle of a tick or an operation stops there
    /// ([`KeyError::NotLeader`]). Set once.
    pub fn write_only_while(&self, may_write: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.write_guard.set(Box::new(may_write));
    }

    fn cached(&self, record: &PublicKeyRecord) -> Option<Arc<SigningKey>> {
        let parsed = self.parsed.lock().ok()?;
        parsed
            .get(&record.jwk.kid)
            .filter(|k| k.public_jwk() == &record.jwk)
            .cloned()
    }

    fn remember(&self, key: Arc<SigningKey>) {
        if let Ok(mut parsed) = self.parsed.lock() {
            parsed.insert(key.kid().to_owned(), key);
        }
    }

    fn forget(&self, kid: &str) {
        if let Ok(mut parsed) = self.parsed.lock() {
            parsed.remove(kid);
        }
    }

    /// Unseals one key from the vault and checks it against its published public key.
    async fn unseal(&self, record: &PublicKeyRecord) -> Result<Arc<SigningKey>, KeyError> {
        let kid = &record.jwk.kid;
        let key = self
            .vault
            .get(&self.kek, kid, record.jwk.alg)
            .await?
            .ok_or_else(|| KeyError::Missing {
                kid: kid.clone(),
                alg: record.jwk.alg,
            })?;
        if key.public_jwk() != &record.jwk {
            return Err(KeyError::BadKeyFile {
                kid: kid.clone(),
                reason: "the private key does not match the published public key".into(),
            });
        }
        let key = Arc::new(key);
        self.remember(key.clone());
        Ok(key)
    }

    /// The private key of `record`, from the cache or else the vault.
    async fn private_key(&self, record: &PublicKeyRecord) -> Result<Arc<SigningKey>, KeyError> {
        match self.cached(record) {
            Some(key) => Ok(key),
            None => self.unseal(record).await,
        }
    }

    async fn append(&self, event: Event, expected: Seq, now: UnixTime) -> Result<Seq, KeyError> {
        if self.write_guard.get().is_some_and(|may_write| !may_write()) {
            return Err(KeyError::NotLeader);
        }
        let new = NewEvent {
            subject: event.subject(),
            actor: ACTOR.to_owned(),
            at_ms: now.saturating_mul(1000),
            payload: event.to_json(),
        };
        Ok(self
            .log
            .append(new, ExpectedVersion::Exact(expected))
            .await?)
    }

    async fn catch_up(&self, p: &mut Projection) -> Result<(), KeyError> {
        crate::cluster::catch_up(self.log.as_ref(), p).await
    }

    /// Appends `event` if its key is still at version `expected` (taken from the projection
    /// the decision was made on), then catches `p` up with the log.
    async fn write(
        &self,
        p: &mut Projection,
        event: Event,
        expected: Seq,
        now: UnixTime,
    ) -> Result<Seq, KeyError> {
        let seq = self.append(event, expected, now).await?;
        self.catch_up(p).await?;
        Ok(seq)
    }

    /// This manager's view of the log, caught up, locked for a decision.
    async fn view(&self) -> Result<tokio::sync::MutexGuard<'_, Projection>, KeyError> {
        let mut view = self.view.lock().await;
        self.catch_up(&mut view).await?;
        Ok(view)
    }

    /// Starts this manager's view of the log from `p` (which must have been folded from the
    /// same log) when it is further along, so the first decision does not replay the log.
    pub async fn seed(&self, p: &Projection) {
        let mut view = self.view.lock().await;
        if p.seq() > view.seq() {
            *view = p.clone();
        }
    }

    /// The configuration as the log says now (this manager's view, caught up).
    pub async fn projection(&self) -> Result<Projection, KeyError> {
        Ok(self.view().await?.clone())
    }

    /// Tells [`on_keys_changed`](Self::on_keys_changed) the keys to hold now.
    async fn announce(&self, p: &Projection) {
        let Some(f) = self.keys_changed.get() else {
            return;
        };
        match self.leasable_keys(p).await {
            Ok(keys) => f(keys),
            Err(error) => {
                tracing::error!(%error, "cannot open the published and active keys");
            }
        }
    }

    fn generate(alg: Algorithm) -> Result<SigningKey, KeyError> {
        let kid = new_kid(alg)?;
        let der = generate_pkcs8(alg)?;
        Ok(SigningKey::from_pkcs8(kid, alg, &der)?)
    }

    /// Seals `key` into the vault (durably, before anything refers to it), publishes it,
    /// and announces it. Returns the sequence of the publication.
    async fn publish(
        &self,
        p: &mut Projection,
        key: SigningKey,
        now: UnixTime,
    ) -> Result<Seq, KeyError> {
        self.vault.put(&self.kek, &key).await?;
        let expected = p.version(Aggregate::SigningKey, key.kid());
        let event = Event::SigningKeyPublished {
            jwk: key.public_jwk().clone(),
            at: now,
        };
        let seq = self.write(p, event, expected, now).await?;
        tracing::info!(kid = key.kid(), alg = %key.alg(), "published a signing key");
        self.remember(Arc::new(key));
        self.announce(p).await;
        Ok(seq)
    }

    /// Makes sure every algorithm of the policy has an active key: the oldest published
    /// key of an algorithm without one activates; with none, a key is generated, sealed,
    /// published and activated at once (fine on a fresh cluster, where no verifier has
    /// cached anything). `p` is caught up with the log first. Returns the sequence of the
    /// last event appended, if any. A conflict (another writer got there first) ends the
    /// pass without an error.
    pub async fn ensure_active(
        &self,
        p: &Projection,
        now: UnixTime,
    ) -> Result<Option<Seq>, KeyError> {
        let mut p = p.clone();
        self.catch_up(&mut p).await?;
        self.ensure_active_in(&mut p, now).await
    }

    async fn ensure_active_in(
        &self,
        p: &mut Projection,
        now: UnixTime,
    ) -> Result<Option<Seq>, KeyError> {
        let mut last = None;
        for &alg in &self.policy.algorithms {
            if p.active_key(alg).is_some() {
                continue;
            }
            let result = async {
                let (kid, expected) = match pending(p, alg).first() {
                    Some(next) => (
                        next.jwk.kid.clone(),
                        p.version(Aggregate::SigningKey, &next.jwk.kid),
                    ),
                    None => {
                        let key = Self::generate(alg)?;
                        let kid = key.kid().to_owned();
                        (kid, self.publish(p, key, now).await?)
                    }
                };
                let event = Event::SigningKeyActivated {
                    kid: kid.clone(),
                    at: now,
                };
                let seq = self.write(p, event, expected, now).await?;
                tracing::info!(%kid, %alg, "activated a signing key");
                Ok::<_, KeyError>(seq)
            }
            .await;
            match result {
                Ok(seq) => last = Some(seq),
                Err(e) if is_conflict(&e) => {
                    tracing::info!(%alg, "another key manager changed the keys first");
                    self.catch_up(p).await?;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(last)
    }

    /// Carries out the rotation schedule ([`plan`]) at `now`: publishes next keys,
    /// activates them (retiring the previous ones), removes retired keys whose tokens have
    /// expired. `p` is caught up with the log first. Returns the sequence of the last
    /// event appended, if any. A conflict (another writer got there first) ends the tick
    /// without an error.
    pub async fn rotate_tick(
        &self,
        p: &Projection,
        now: UnixTime,
    ) -> Result<Option<Seq>, KeyError> {
        let mut p = p.clone();
        self.catch_up(&mut p).await?;
        self.rotate_in(&mut p, now).await
    }

    async fn rotate_in(&self, p: &mut Projection, now: UnixTime) -> Result<Option<Seq>, KeyError> {
        let base = p.clone();
        let version = |kid: &str| base.version(Aggregate::SigningKey, kid);
        let mut last = None;
        for step in plan(&base, &self.policy, now) {
            let result = match &step {
                Step::Publish(alg) => match Self::generate(*alg) {
                    Ok(key) => self.publish(p, key, now).await,
                    Err(e) => Err(e),
                },
                Step::Activate(kid) => {
                    let event = Event::SigningKeyActivated {
                        kid: kid.clone(),
                        at: now,
                    };
                    self.write(p, event, version(kid), now).await
                }
                Step::Retire(kid) => {
                    let event = Event::SigningKeyRetired {
                        kid: kid.clone(),
                        at: now,
                    };
                    self.write(p, event, version(kid), now).await
                }
                Step::Remove(kid) => {
                    let event = Event::SigningKeyRemoved {
                        kid: kid.clone(),
                        at: now,
                        revoked: false,
                    };
                    let seq = self.write(p, event, version(kid), now).await;
                    if seq.is_ok() {
                        self.forget(kid);
                    }
                    seq
                }
            };
            match result {
                Ok(seq) => {
                    tracing::info!(?step, "key rotation");
                    last = Some(seq);
                }
                Err(e) if is_conflict(&e) => {
                    tracing::info!(?step, "another key manager changed the keys first");
                    self.catch_up(p).await?;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if last.is_some() {
            self.announce(p).await;
        }
        Ok(last)
    }

    /// One pass of key upkeep on this manager's own view of the log: [`ensure_active`]
    /// then [`rotate_tick`]. Returns whether it changed any key. In a cluster only the
    /// leader runs it.
    ///
    /// [`ensure_active`]: Self::ensure_active
    /// [`rotate_tick`]: Self::rotate_tick
    pub async fn tick(&self, now: UnixTime) -> Result<bool, KeyError> {
        let mut view = self.view().await?;
        let ensured = self.ensure_active_in(&mut view, now).await?;
        let rotated = self.rotate_in(&mut view, now).await?;
        Ok(ensured.is_some() || rotated.is_some())
    }

    /// Seals `key`, publishes it, activates it and retires the keys of its algorithm that
    /// were active: the immediate rotation of the admin API. Verifiers that cached the
    /// JWKS before meet an unknown kid and refetch it.
    async fn install_active(
        &self,
        p: &mut Projection,
        key: SigningKey,
        now: UnixTime,
    ) -> Result<String, KeyError> {
        let kid = key.kid().to_owned();
        let alg = key.alg();
        let previous: Vec<(String, Seq)> = p
            .keys()
            .filter(|k| k.jwk.alg == alg && k.state == KeyState::Active)
            .map(|k| {
                (
                    k.jwk.kid.clone(),
                    p.version(Aggregate::SigningKey, &k.jwk.kid),
                )
            })
            .collect();
        let published = self.publish(p, key, now).await?;
        let event = Event::SigningKeyActivated {
            kid: kid.clone(),
            at: now,
        };
        self.write(p, event, published, now).await?;
        tracing::info!(%kid, %alg, "activated a signing key now (admin)");
        for (old, expected) in previous {
            let event = Event::SigningKeyRetired {
                kid: old.clone(),
                at: now,
            };
            match self.write(p, event, expected, now).await {
                Ok(_) => tracing::info!(kid = %old, %alg, "retired a signing key"),
                // Retired or removed meanwhile by someone else: nothing left to do.
                Err(e) if is_conflict(&e) => self.catch_up(p).await?,
                Err(e) => return Err(e),
            }
        }
        self.announce(p).await;
        Ok(kid)
    }

    /// Generates a key for `alg` and makes it active now (see [`crate::KeyAdmin::rotate`]).
    pub(crate) async fn rotate_now(&self, alg: Algorithm) -> Result<String, KeyError> {
        let mut view = self.view().await?;
        let key = Self::generate(alg)?;
        self.install_active(&mut view, key, self.now()).await
    }

    /// Takes `kid` out of the JWKS now (see [`crate::KeyAdmin::revoke`]).
    pub(crate) async fn revoke_now(&self, kid: &str) -> Result<(), KeyError> {
        let mut view = self.view().await?;
        let now = self.now();
        let record = view.key(kid).cloned().ok_or_else(|| KeyError::UnknownKey {
            kid: kid.to_owned(),
        })?;
        let alg = record.jwk.alg;
        if view
            .active_key(alg)
            .is_some_and(|active| active.jwk.kid == kid)
        {
            // The algorithm keeps a signer: a new key takes over first.
            self.install_active(&mut view, Self::generate(alg)?, now)
                .await?;
        }
        let expected = view.version(Aggregate::SigningKey, kid);
        let event = Event::SigningKeyRemoved {
            kid: kid.to_owned(),
            at: now,
            revoked: true,
        };
        self.write(&mut view, event, expected, now).await?;
        self.forget(kid);
        tracing::warn!(%kid, %alg, "revoked a signing key: it left the JWKS");
        self.announce(&view).await;
        Ok(())
    }

    /// Imports a PEM private key for `alg` under a fresh kid and makes it active now (see
    /// [`crate::KeyAdmin::import_pem`]).
    pub(crate) async fn import_now(&self, alg: Algorithm, pem: &str) -> Result<String, KeyError> {
        let kid = new_kid(alg)?;
        let key = SigningKey::from_pem(kid, alg, pem).map_err(|e| KeyError::BadPem {
            alg,
            reason: e.to_string(),
        })?;
        let mut view = self.view().await?;
        let kid = self.install_active(&mut view, key, self.now()).await?;
        tracing::info!(%kid, %alg, "imported a signing key");
        Ok(kid)
    }

    /// Unseals the private half of every active key in the projection.
    pub async fn active_keys(&self, p: &Projection) -> Result<Vec<Arc<SigningKey>>, KeyError> {
        let mut keys = Vec::new();
        for record in p.keys().filter(|k| k.state == KeyState::Active) {
            keys.push(self.private_key(record).await?);
        }
        Ok(keys)
    }

    /// The private half of every key an issuer may hold: the active keys and the published
    /// ones (so issuers hold the next key before it activates). Forgets parsed keys that
    /// left this set.
    pub async fn leasable_keys(&self, p: &Projection) -> Result<Vec<Arc<SigningKey>>, KeyError> {
        let mut keys = Vec::new();
        for record in p.keys().filter(|k| leasable(k.state)) {
            keys.push(self.private_key(record).await?);
        }
        if let Ok(mut parsed) = self.parsed.lock() {
            parsed.retain(|kid, _| p.key(kid).is_some_and(|r| leasable(r.state)));
        }
        Ok(keys)
    }

    /// Opens every published or active key from the vault (not from the cache) and checks
    /// it against its public record: run at start, so that a wrong KEK stops the key
    /// manager with a clear error instead of failing leases later. Returns how many keys
    /// it opened.
    pub async fn check_vault(&self, p: &Projection) -> Result<usize, KeyError> {
        let mut n = 0;
        for record in p.keys().filter(|k| leasable(k.state)) {
            self.unseal(record).await?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fold_all(log: &dyn EventLog) -> Projection {
        let mut p = Projection::new();
        for e in log.read_from(1, usize::MAX).await.unwrap() {
            let ev = Event::from_json(&e.payload).unwrap();
            p.apply(e.seq, &e.subject, ev).unwrap();
        }
        p
    }

    const DAY: i64 = 24 * 3600;
    const HOUR: i64 = 3600;
    const T0: i64 = 1_700_000_000;

    fn jwk(kid: &str, alg: Algorithm) -> signet_jose::Jwk {
        signet_jose::Jwk {
            kty: "EC".into(),
            kid: kid.into(),
            alg,
            use_: "sig".into(),
            n: None,
            e: None,
            crv: Some("P-256".into()),
            x: Some("x".into()),
            y: Some("y".into()),
        }
    }

    fn apply(p: &mut Projection, event: Event) {
        let subject = event.subject();
        p.apply(p.seq() + 1, &subject, event).unwrap();
    }

    fn published(p: &mut Projection, kid: &str, alg: Algorithm, at: i64) {
        apply(
            p,
            Event::SigningKeyPublished {
                jwk: jwk(kid, alg),
                at,
            },
        );
    }

    fn activated(p: &mut Projection, kid: &str, at: i64) {
        apply(
            p,
            Event::SigningKeyActivated {
                kid: kid.into(),
                at,
            },
        );
    }

    fn retired(p: &mut Projection, kid: &str, at: i64) {
        apply(
            p,
            Event::SigningKeyRetired {
                kid: kid.into(),
                at,
            },
        );
    }

    fn es256_only() -> KeyPolicy {
        KeyPolicy {
            algorithms: vec![Algorithm::ES256],
            ..KeyPolicy::default()
        }
    }

    /// An ES256 key `a`, published and activated at T0.
    fn fresh() -> Projection {
        let mut p = Projection::new();
        published(&mut p, "a", Algorithm::ES256, T0);
        activated(&mut p, "a", T0);
        p
    }

    #[test]
    fn the_policy_defaults_and_its_checks() {
        let d = KeyPolicy::default();
        assert_eq!(d.rotate_after, Duration::from_secs(30 * 86_400));
        assert_eq!(d.prepublish, Duration::from_secs(7200));
        assert_eq!(d.retire_for, Duration::from_secs(86_400));
        assert_eq!(d.algorithms, Algorithm::ALL.to_vec());
        d.validate().unwrap();
        let bad = |p: KeyPolicy| p.validate().unwrap_err().to_string();
        let e = bad(KeyPolicy {
            prepublish: MAX_JWKS_MAX_AGE,
            ..KeyPolicy::default()
        });
        assert!(e.contains("JWKS cache"), "{e}");
        let e = bad(KeyPolicy {
            rotate_after: Duration::from_secs(7200),
            ..KeyPolicy::default()
        });
        assert!(e.contains("rotate_after"), "{e}");
        let e = bad(KeyPolicy {
            retire_for: Duration::from_secs(60),
            ..KeyPolicy::default()
        });
        assert!(e.contains("retire_for"), "{e}");
        let e = bad(KeyPolicy {
            algorithms: vec![],
            ..KeyPolicy::default()
        });
        assert!(e.contains("algorithm"), "{e}");
    }

    #[test]
    fn a_fresh_key_needs_nothing_until_the_next_one_must_be_published() {
        let p = fresh();
        let policy = es256_only();
        assert_eq!(plan(&p, &policy, T0), vec![]);
        let publish_at = T0 + 30 * DAY - 2 * HOUR;
        assert_eq!(plan(&p, &policy, publish_at - 1), vec![]);
        assert_eq!(
            plan(&p, &policy, publish_at),
            vec![Step::Publish(Algorithm::ES256)]
        );
        // Late (the key manager was down): still published first, never activated at once.
        assert_eq!(
            plan(&p, &policy, T0 + 40 * DAY),
            vec![Step::Publish(Algorithm::ES256)]
        );
    }

    #[test]
    fn the_next_key_activates_after_rotate_after_and_at_least_prepublish_after_publication() {
        let policy = es256_only();
        let mut p = fresh();
        let publish_at = T0 + 30 * DAY - 2 * HOUR;
        published(&mut p, "b", Algorithm::ES256, publish_at);
        // Waiting: nothing more to publish, nothing to activate yet.
        assert_eq!(plan(&p, &policy, publish_at + 1), vec![]);
        assert_eq!(plan(&p, &policy, T0 + 30 * DAY - 1), vec![]);
        assert_eq!(
            plan(&p, &policy, T0 + 30 * DAY),
            vec![Step::Activate("b".into()), Step::Retire("a".into())]
        );

        // Published late: the activation waits for the full pre-publication.
        let mut p = fresh();
        let late = T0 + 31 * DAY;
        published(&mut p, "b", Algorithm::ES256, late);
        assert_eq!(plan(&p, &policy, late + 2 * HOUR - 1), vec![]);
        assert_eq!(
            plan(&p, &policy, late + 2 * HOUR),
            vec![Step::Activate("b".into()), Step::Retire("a".into())]
        );
    }

    #[test]
    fn retired_keys_are_removed_after_retire_for_or_the_longest_token_lifetime() {
        let policy = es256_only();
        let mut p = fresh();
        published(&mut p, "b", Algorithm::ES256, T0 + DAY);
        activated(&mut p, "b", T0 + 2 * DAY);
        retired(&mut p, "a", T0 + 2 * DAY);
        let retired_at = T0 + 2 * DAY;
        assert_eq!(plan(&p, &policy, retired_at + DAY - 1), vec![]);
        assert_eq!(
            plan(&p, &policy, retired_at + DAY),
            vec![Step::Remove("a".into())]
        );

        // A client whose access tokens live two days keeps the key in the JWKS that long.
        let mut client: signet_core::client::Client = signet_core::client::Client::new("long");
        client.access_token_lifetime = 2 * 86_400;
        apply(&mut p, Event::ClientCreated(Box::new(client)));
        assert_eq!(plan(&p, &policy, retired_at + DAY), vec![]);
        assert_eq!(plan(&p, &policy, retired_at + 2 * DAY - 1), vec![]);
        assert_eq!(
            plan(&p, &policy, retired_at + 2 * DAY),
            vec![Step::Remove("a".into())]
        );
    }

    #[test]
    fn leftovers_of_crashes_and_races_are_tidied() {
        let policy = es256_only();
        // Published, never activated, nothing active: activate at once.
        let mut p = Projection::new();
        published(&mut p, "a", Algorithm::ES256, T0);
        published(&mut p, "b", Algorithm::ES256, T0 + 1);
        assert_eq!(plan(&p, &policy, T0 + 2), vec![Step::Activate("a".into())]);
        // Two active keys (two writers raced): the older retires.
        activated(&mut p, "a", T0 + 2);
        activated(&mut p, "b", T0 + 3);
        assert_eq!(plan(&p, &policy, T0 + 4), vec![Step::Retire("a".into())]);
        // An algorithm outside the policy rotates too once it has an active key
        // (imported), but gets none by itself.
        let mut p = fresh();
        assert!(plan(&p, &policy, T0 + 30 * DAY)
            .iter()
            .all(|s| *s == Step::Publish(Algorithm::ES256)));
        published(&mut p, "r", Algorithm::RS256, T0);
        activated(&mut p, "r", T0);
        assert_eq!(
            plan(&p, &policy, T0 + 30 * DAY - 2 * HOUR),
            vec![
                Step::Publish(Algorithm::RS256),
                Step::Publish(Algorithm::ES256)
            ]
        );
    }

    /// Runs the schedule for a year in ten-minute ticks, doing what `plan` says, and checks
    /// the promises: always one signing key, every key in the JWKS `prepublish` before it
    /// signs and `retire_for` after it stopped, never more than three keys in the JWKS.
    #[test]
    fn a_year_of_rotation_keeps_every_promise() {
        let policy = es256_only();
        let mut p = fresh();
        let mut n = 0;
        let mut removed = 0;
        let mut t = T0;
        while t < T0 + 365 * DAY {
            for step in plan(&p, &policy, t) {
                match step {
                    Step::Publish(alg) => {
                        n += 1;
                        published(&mut p, &format!("k{n}"), alg, t);
                    }
                    Step::Activate(kid) => {
                        let k = p.key(&kid).unwrap();
                        assert!(t - k.published_at >= 2 * HOUR, "{kid} pre-published");
                        activated(&mut p, &kid, t);
                    }
                    Step::Retire(kid) => retired(&mut p, &kid, t),
                    Step::Remove(kid) => {
                        let k = p.key(&kid).unwrap();
                        assert!(t - k.retired_at.unwrap() >= DAY, "{kid} kept");
                        removed += 1;
                        apply(
                            &mut p,
                            Event::SigningKeyRemoved {
                                kid,
                                at: t,
                                revoked: false,
                            },
                        );
                    }
                }
            }
            let active = p.keys().filter(|k| k.state == KeyState::Active).count();
            assert_eq!(active, 1, "at {t}");
            assert!(p.keys().count() <= 3);
            t += 600;
        }
        // 365 days / 30: twelve rotations, every old key removed a day later.
        assert_eq!(n, 12);
        assert_eq!(removed, 12);
        let a = p.active_key(Algorithm::ES256).unwrap();
        assert!(a.activated_at.unwrap() - T0 <= 12 * 30 * DAY + 600);
    }

    #[tokio::test]
    async fn rotate_tick_carries_out_the_schedule_and_a_racing_writer_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let log = signet_eventlog::embedded::FileLog::open(&dir.path().join("log")).unwrap();
        let vault: Arc<dyn KeyVault> =
            Arc::new(crate::FileVault::open(&dir.path().join("keys")).unwrap());
        let km = |log: Arc<dyn EventLog>| {
            KeyManager::new(
                Kek::from_bytes(&[5u8; 32]).unwrap(),
                vault.clone(),
                log,
                es256_only(),
            )
        };
        let (a, b) = (km(log.clone()), km(log.clone()));
        let p0 = fold_all(log.as_ref()).await;
        assert!(a.ensure_active(&p0, T0).await.unwrap().is_some());
        // b is handed a stale projection: it catches up with the log before deciding, so
        // no second key.
        assert_eq!(b.ensure_active(&p0, T0).await.unwrap(), None);
        let p = fold_all(log.as_ref()).await;
        assert_eq!(p.keys().count(), 1);
        let first = p.active_key(Algorithm::ES256).unwrap().jwk.kid.clone();
        assert_eq!(a.rotate_tick(&p, T0 + 1).await.unwrap(), None);

        let publish_at = T0 + 30 * DAY - 2 * HOUR;
        assert!(a.rotate_tick(&p, publish_at).await.unwrap().is_some());
        let p = fold_all(log.as_ref()).await;
        let next = p
            .keys()
            .find(|k| k.state == KeyState::Published)
            .unwrap()
            .jwk
            .kid
            .clone();
        // The published key is leasable before it signs.
        let held = a.leasable_keys(&p).await.unwrap();
        assert!(held.iter().any(|k| k.kid() == next));

        // a activates; b decided on the same projection before it saw that (a real race):
        // its appends carry the old versions, conflict, and count as done.
        let at = T0 + 30 * DAY;
        assert!(a.rotate_tick(&p, at).await.unwrap().is_some());
        let head = log.last_seq().await.unwrap();
        let mut stale = p.clone();
        assert_eq!(b.rotate_in(&mut stale, at).await.unwrap(), None);
        assert_eq!(log.last_seq().await.unwrap(), head, "nothing written twice");
        assert_eq!(stale.seq(), head, "caught up after the conflict");
        let p = fold_all(log.as_ref()).await;
        assert_eq!(p.active_key(Algorithm::ES256).unwrap().jwk.kid, next);
        assert_eq!(p.key(&first).unwrap().state, KeyState::Retired);
        assert!(p.key(&first).unwrap().retired_at == Some(at));

        assert_eq!(a.rotate_tick(&p, at + DAY - 1).await.unwrap(), None);
        assert!(a.rotate_tick(&p, at + DAY).await.unwrap().is_some());
        let p = fold_all(log.as_ref()).await;
        assert!(p.key(&first).is_none(), "removed after retire_for");
        assert_eq!(p.keys().count(), 1);
    }

    #[tokio::test]
    async fn keys_are_generated_once_sealed_and_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let kek_path = dir.path().join("kek");
        let open = || async {
            let log = signet_eventlog::embedded::FileLog::open(&dir.path().join("log")).unwrap();
            let km = KeyManager::new(
                Kek::load_or_create(&kek_path).unwrap(),
                Arc::new(crate::FileVault::open(&dir.path().join("keys")).unwrap()),
                log.clone(),
                KeyPolicy::default(),
            );
            (log, km)
        };
        let (log, km) = open().await;
        let p = fold_all(log.as_ref()).await;
        assert!(km.ensure_active(&p, 1000).await.unwrap().is_some());
        let p = fold_all(log.as_ref()).await;
        let keys = km.active_keys(&p).await.unwrap();
        assert_eq!(keys.len(), 4);
        assert_eq!(
            km.ensure_active(&p, 1001).await.unwrap(),
            None,
            "nothing to do twice"
        );
        let kids: Vec<String> = keys.iter().map(|k| k.kid().to_owned()).collect();
        // No private key material in the log.
        for e in log.read_from(1, usize::MAX).await.unwrap() {
            let text = String::from_utf8(e.payload).unwrap();
            assert!(!text.contains("\"d\""), "{text}");
        }
        drop((log, km));

        let (log, km) = open().await;
        let p = fold_all(log.as_ref()).await;
        let again: Vec<String> = km
            .active_keys(&p)
            .await
            .unwrap()
            .iter()
            .map(|k| k.kid().to_owned())
            .collect();
        assert_eq!(again, kids);

        // Another KEK cannot open the vault: a clear error naming the key.
        std::fs::write(
            &kek_path,
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [9u8; 32]),
        )
        .unwrap();
        let (_log, km) = open().await;
        let err = km.active_keys(&p).await.unwrap_err().to_string();
        assert!(err.contains("KEK does not open"), "{err}");
        let err = km.check_vault(&p).await.unwrap_err().to_string();
        assert!(err.contains("KEK does not open"), "{err}");
    }
}
