//! SSO sessions as shared state: who signed in, when and how, and which clients received
//! tokens in the session; ending one everywhere.
//!
//! Store layout (namespace [`Namespace::Session`], every entry tied to the session's
//! [`Index::Session`] and the user's [`Index::Subject`], so ending either removes all):
//!
//! | key | value |
//! |---|---|
//! | `<SHA-256 of the cookie>` | the [`Session`] (the browser's key to it: one read per request) |
//! | `sid:<sid>` | the same [`Session`] (found by `sid`: admin and account pages, logout hints) |
//! | `rp:<sid>:<digest of client_id>` | a client that received a code or tokens in it: a [`Participant`] (JSON; a bare `client_id` in entries written before) |
//!
//! One entry per participating client (rather than a list in the session) keeps two
//! browser tabs signing in to two clients at once from losing one of them.
//!
//! Ending a session ([`end`]) publishes a session revocation first (every access token
//! carrying its `sid` stops verifying, at every issuer and resource server), then deletes
//! everything tied to it: the cookie and records, unused codes, and the refresh-token
//! families bound to it. In between it enqueues a back-channel logout delivery for each
//! participating client with a `backChannelLogoutUri` ([`super::backchannel`]), so the
//! clients are told even if this node dies; its result names the front-channel logout
//! URIs the browser's signed-out page loads ([`Ended::front_channel`]).

use axum::http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use signet_core::mfa::Level;
use signet_core::oauth::OAuthError;
use signet_store::{Index, Namespace};

use super::browser::{cookie, digest_key, random_token, set_cookie, StoreResult, SESSION_COOKIE};
use crate::state::AppState;

/// A signed-in user at this authorization server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// The session id (`sid` in ID tokens); not the cookie value.
    pub sid: String,
    pub sub: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    /// When the session ends (Unix seconds) whatever happens.
    #[serde(default)]
    pub expires_at: i64,
    /// The browser's `User-Agent` at sign-in, cut to [`USER_AGENT_CHARS`] characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The client address at sign-in (after `--trusted-proxies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// When each level ([`Level`]) was last reached in this session (Unix seconds): a
    /// step-up raises the level without moving `auth_time`'s password step. Sessions
    /// written before levels existed reached `pwd` at `auth_time`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub levels: BTreeMap<Level, i64>,
    /// The upstream identity provider (scheme) the user signed in through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    /// Where signing out continues at that provider (RP-initiated logout), when it has an
    /// `end_session_endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_logout: Option<UpstreamLogout>,
}

/// The upstream's end-session endpoint and the ID token it issued (its `id_token_hint`).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpstreamLogout {
    pub scheme: String,
    pub end_session_endpoint: String,
    pub client_id: String,
    pub id_token: String,
}

impl std::fmt::Debug for UpstreamLogout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamLogout")
            .field("scheme", &self.scheme)
            .field("end_session_endpoint", &self.end_session_endpoint)
            .finish_non_exhaustive()
    }
}

/// How much of a `User-Agent` a session keeps.
pub const USER_AGENT_CHARS: usize = 200;

/// Where a sign-in came from, as its session records it.
#[derive(Debug, Clone, Default)]
pub struct SignInFacts {
    pub user_agent: Option<String>,
    pub address: Option<std::net::IpAddr>,
}

impl SignInFacts {
    /// The facts of a request: its `User-Agent` (control characters dropped, cut to
    /// [`USER_AGENT_CHARS`] characters) and its resolved client address.
    pub fn of(headers: &HeaderMap, addr: Option<std::net::IpAddr>) -> Self {
        let user_agent = headers
            .get(axum::http::header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .map(|ua| {
                ua.chars()
                    .filter(|c| !c.is_control())
                    .take(USER_AGENT_CHARS)
                    .collect::<String>()
            })
            .filter(|ua| !ua.trim().is_empty());
        SignInFacts {
            user_agent,
            address: addr,
        }
    }
}

impl Session {
    /// The level the session reached (by its `amr`).
    pub fn level(&self) -> Level {
        Level::of_amr(&self.amr)
    }

    /// When `level` was last reached in this session; `None` if it never was.
    pub fn level_time(&self, level: Level) -> Option<i64> {
        if self.level() < level {
            return None;
        }
        Some(
            self.levels
                .range(level..)
                .map(|(_, t)| *t)
                .max()
                .unwrap_or(self.auth_time),
        )
    }

    /// How long the session still lives, at least a second.
    pub fn remaining(&self, now: i64) -> std::time::Duration {
        std::time::Duration::from_secs(self.expires_at.saturating_sub(now).max(1) as u64)
    }
}

/// A session that has ended, and who took part in it.
#[derive(Debug, Clone)]
pub struct Ended {
    pub session: Session,
    /// The `client_id`s that received a code or tokens in it.
    pub clients: Vec<String>,
    /// The front-channel logout URIs (OIDC Front-Channel Logout 1.0) of the participating
    /// clients that registered one, with `iss` and `sid` when they require the session:
    /// the page that answers the browser loads them in iframes.
    pub front_channel: Vec<String>,
    /// Back-channel logout deliveries enqueued.
    pub back_channel: usize,
}

/// A client that received a code or tokens in a session, and at which redirect URI (its
/// pairwise subject depends on the redirect URI's host).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Participant {
    pub client_id: String,
    #[serde(default)]
    pub redirect_uri: Option<String>,
}

const SID_PREFIX: &str = "sid:";
const RP_PREFIX: &str = "rp:";

fn rp_key(sid: &str, client_id: &str) -> String {
    format!("{RP_PREFIX}{sid}:{}", &digest_key(client_id)[..22])
}

/// The session of this browser, if its cookie names a live session of a user who still
/// exists and is enabled.
pub async fn load_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Session>, OAuthError> {
    let Some(value) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(bytes) = state
        .store
        .get(Namespace::Session, &digest_key(value))
        .await
        .or_unavailable()?
    else {
        return Ok(None);
    };
    let Ok(mut session) = serde_json::from_slice::<Session>(&bytes) else {
        return Ok(None);
    };
    if session.expires_at == 0 {
        // Written before sessions recorded their end: the lifetime they were created with.
        session.expires_at = session.auth_time + state.config.session_lifetime.as_secs() as i64;
    }
    Ok(super::user_tokens::enabled_user(state, &session.sub)
        .await?
        .map(|_| session))
}

/// A live session by its id.
pub async fn by_sid(state: &AppState, sid: &str) -> Result<Option<Session>, OAuthError> {
    if signet_store::validate_key("session id", sid).is_err() {
        return Ok(None);
    }
    let bytes = state
        .store
        .get(Namespace::Session, &format!("{SID_PREFIX}{sid}"))
        .await
        .or_unavailable()?;
    Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
}

/// The user's live sessions, newest first.
pub async fn of_user(state: &AppState, sub: &str) -> Result<Vec<Session>, OAuthError> {
    let entries = state
        .store
        .entries_by(Index::Subject(sub), Namespace::Session)
        .await
        .or_unavailable()?;
    let mut out: Vec<Session> = entries
        .into_iter()
        .filter(|(k, _)| k.starts_with(SID_PREFIX))
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect();
    out.sort_by(|a: &Session, b: &Session| b.auth_time.cmp(&a.auth_time).then(a.sid.cmp(&b.sid)));
    Ok(out)
}

/// The clients that received a code or tokens in the session.
pub async fn clients_of(state: &AppState, sid: &str) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = participants(state, sid)
        .await?
        .into_iter()
        .map(|p| p.client_id)
        .collect();
    out.dedup();
    Ok(out)
}

/// The clients that received a code or tokens in the session, by `client_id`.
pub async fn participants(state: &AppState, sid: &str) -> Result<Vec<Participant>, OAuthError> {
    let entries = state
        .store
        .entries_by(Index::Session(sid), Namespace::Session)
        .await
        .or_unavailable()?;
    let mut out: Vec<Participant> = entries
        .into_iter()
        .filter(|(k, _)| k.starts_with(RP_PREFIX))
        .filter_map(|(_, v)| parse_participant(v))
        .collect();
    out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    out.dedup_by(|a, b| a.client_id == b.client_id);
    Ok(out)
}

/// Starts a session for `sub` lasting `lifetime`; returns it and the cookie to set.
pub async fn create_session(
    state: &AppState,
    sub: &str,
    amr: Vec<String>,
    facts: SignInFacts,
    now: i64,
) -> Result<(Session, HeaderValue), OAuthError> {
    create_session_via(state, sub, amr, None, facts, now).await
}

/// [`create_session`] for a sign-in through the upstream identity provider `idp`.
pub async fn create_session_via(
    state: &AppState,
    sub: &str,
    amr: Vec<String>,
    idp: Option<(String, Option<UpstreamLogout>)>,
    facts: SignInFacts,
    now: i64,
) -> Result<(Session, HeaderValue), OAuthError> {
    let (idp, upstream_logout) = match idp {
        Some((scheme, logout)) => (Some(scheme), logout),
        None => (None, None),
    };
    let lifetime = state.config.session_lifetime;
    let value = random_token()?;
    let reached = Level::of_amr(&amr);
    let levels = Level::ALL
        .into_iter()
        .filter(|l| *l <= reached)
        .map(|l| (l, now))
        .collect();
    let session = Session {
        levels,
        sid: random_token()?[..22].to_owned(),
        sub: sub.to_owned(),
        auth_time: now,
        amr,
        expires_at: now.saturating_add(lifetime.as_secs() as i64),
        user_agent: facts.user_agent,
        address: facts.address.map(|a| a.to_string()),
        idp,
        upstream_logout,
    };
    let bytes = serde_json::to_vec(&session).map_err(|_| OAuthError::server_error("session"))?;
    let index = [Index::Subject(sub), Index::Session(&session.sid)];
    // The record first: a cookie never points at a session that cannot be found by `sid`.
    for key in [format!("{SID_PREFIX}{}", session.sid), digest_key(&value)] {
        state
            .store
            .put(Namespace::Session, &key, &bytes, lifetime, &index)
            .await
            .or_unavailable()?;
    }
    let cookie = set_cookie(state, SESSION_COOKIE, &value, lifetime.as_secs());
    Ok((session, cookie))
}

/// Raises this browser's session after a second factor (step-up): the same session (same
/// `sid`, same clients, same expiry), its `amr` with the factor added and the new level
/// reached at `now`. The cookie must still name the session `sid`.
pub async fn step_up(
    state: &AppState,
    headers: &HeaderMap,
    sid: &str,
    now: i64,
    added: impl FnOnce(&[String]) -> Vec<String>,
) -> Result<Option<Session>, OAuthError> {
    let Some(value) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(mut session) = load_session(state, headers).await? else {
        return Ok(None);
    };
    if session.sid != sid {
        return Ok(None);
    }
    session.amr = added(&session.amr);
    if session.levels.is_empty() {
        session.levels.insert(Level::Pwd, session.auth_time);
    }
    let reached = session.level();
    for l in Level::ALL
        .into_iter()
        .filter(|l| *l <= reached && *l > Level::Pwd)
    {
        session.levels.insert(l, now);
    }
    let bytes = serde_json::to_vec(&session).map_err(|_| OAuthError::server_error("session"))?;
    let ttl = session.remaining(now);
    let index = [Index::Subject(&session.sub), Index::Session(&session.sid)];
    for key in [format!("{SID_PREFIX}{}", session.sid), digest_key(value)] {
        state
            .store
            .put(Namespace::Session, &key, &bytes, ttl, &index)
            .await
            .or_unavailable()?;
    }
    Ok(Some(session))
}

/// A stored participant entry: JSON, or (written before entries were JSON) the bare
/// `client_id`.
fn parse_participant(v: Vec<u8>) -> Option<Participant> {
    if let Ok(p) = serde_json::from_slice::<Participant>(&v) {
        return Some(p);
    }
    String::from_utf8(v)
        .ok()
        .filter(|s| !s.is_empty() && !s.starts_with('{'))
        .map(|client_id| Participant {
            client_id,
            redirect_uri: None,
        })
}

/// Records that `client_id` received a code or tokens in the session, at `redirect_uri`.
pub async fn add_client(
    state: &AppState,
    session: &Session,
    client_id: &str,
    redirect_uri: &str,
    now: i64,
) -> Result<(), OAuthError> {
    let participant = Participant {
        client_id: client_id.to_owned(),
        redirect_uri: Some(redirect_uri.to_owned()),
    };
    let bytes =
        serde_json::to_vec(&participant).map_err(|_| OAuthError::server_error("session"))?;
    state
        .store
        .put(
            Namespace::Session,
            &rp_key(&session.sid, client_id),
            &bytes,
            session.remaining(now),
            &[Index::Session(&session.sid), Index::Subject(&session.sub)],
        )
        .await
        .or_unavailable()
}

/// How long after a session ends an access token issued in it may still be presented.
const LONGEST_TOKEN_SECS: i64 = 30 * 24 * 3600;

/// Ends a session at every node: publishes its revocation (access tokens carrying its `sid`
/// stop verifying everywhere), then deletes everything tied to it. Returns who took part.
pub async fn end(state: &AppState, session: Session, now: i64) -> Result<Ended, OAuthError> {
    let participants = participants(state, &session.sid).await?;
    let clients: Vec<String> = participants.iter().map(|p| p.client_id.clone()).collect();
    let revocation = signet_verify::revocation::Revocation {
        target: signet_verify::revocation::Target::Session {
            sid: session.sid.clone(),
        },
        exp: now + LONGEST_TOKEN_SECS,
        at: now,
    };
    state.revocations.revoke(revocation).await.map_err(|e| {
        tracing::error!(error = %e, "could not publish a session revocation");
        OAuthError::new(
            signet_core::oauth::ErrorCode::TemporarilyUnavailable,
            "the session could not be ended; retry shortly",
        )
    })?;
    // Before the records go: a failure here leaves the session to be ended again.
    let back_channel = super::backchannel::enqueue(state, &session, &participants, now).await?;
    state
        .store
        .delete_by_session(&session.sid)
        .await
        .or_unavailable()?;
    let front_channel = front_channel_uris(state, &session, &participants);
    tracing::info!(sid = %session.sid, clients = clients.len(), back_channel, front_channel = front_channel.len(), "session ended");
    Ok(Ended {
        session,
        clients,
        front_channel,
        back_channel,
    })
}

/// OIDC Front-Channel Logout 1.0 section 2: each participating client's
/// `frontChannelLogoutUri`, with `iss` and `sid` added when it requires the session.
fn front_channel_uris(
    state: &AppState,
    session: &Session,
    participants: &[Participant],
) -> Vec<String> {
    let p = state.projection.load();
    participants
        .iter()
        .filter_map(|part| {
            let client = p.client(&part.client_id).filter(|c| c.client.enabled)?;
            let uri = client.client.front_channel_logout_uri.as_deref()?;
            front_channel_uri(
                uri,
                client.client.front_channel_logout_session_required,
                state.config.issuer.as_str(),
                &session.sid,
            )
        })
        .collect()
}

/// One front-channel logout URI: http(s) only; `iss` and `sid` appended when required.
pub fn front_channel_uri(
    uri: &str,
    session_required: bool,
    iss: &str,
    sid: &str,
) -> Option<String> {
    let mut url = url::Url::parse(uri).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    if session_required {
        url.query_pairs_mut()
            .append_pair("iss", iss)
            .append_pair("sid", sid);
    }
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::{front_channel_uri, parse_participant, Participant};

    #[test]
    fn participant_entries_old_and_new() {
        let new = serde_json::to_vec(&Participant {
            client_id: "web".into(),
            redirect_uri: Some("https://rp/cb".into()),
        })
        .unwrap();
        assert_eq!(
            parse_participant(new).unwrap().redirect_uri.as_deref(),
            Some("https://rp/cb")
        );
        let old = parse_participant(b"legacy-client".to_vec()).unwrap();
        assert_eq!(
            (old.client_id.as_str(), old.redirect_uri),
            ("legacy-client", None)
        );
        assert_eq!(parse_participant(b"{broken".to_vec()), None);
        assert_eq!(parse_participant(vec![0xff]), None);
    }

    #[test]
    fn front_channel_uris_carry_iss_and_sid_when_required() {
        let iss = "https://id.example.com";
        assert_eq!(
            front_channel_uri("https://rp.example/logout?x=1", true, iss, "s1").as_deref(),
            Some("https://rp.example/logout?x=1&iss=https%3A%2F%2Fid.example.com&sid=s1")
        );
        assert_eq!(
            front_channel_uri("https://rp.example/logout", false, iss, "s1").as_deref(),
            Some("https://rp.example/logout")
        );
        assert_eq!(
            front_channel_uri("javascript:alert(1)", true, iss, "s1"),
            None
        );
        assert_eq!(front_channel_uri("not a url", true, iss, "s1"), None);
    }
}

/// A client of a session, as users and operators see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionClient {
    /// The client's `clientId`.
    pub client_id: String,
    /// Its `clientName` (its `clientId` when it has none or no longer exists).
    pub client_name: String,
}

/// A live session as users (`/account/sessions`) and operators (`/admin/v1/User/{sub}/Session`)
/// see it: where, when, which apps. Never the cookie.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// The session id (`sid` in ID tokens and logout tokens).
    pub sid: String,
    /// The user's `sub`.
    pub sub: String,
    /// When the user signed in, starting the session (Unix seconds).
    pub auth_time: i64,
    /// When the session ends at the latest (Unix seconds).
    pub expires_at: i64,
    /// How the user authenticated (RFC 8176 values, e.g. `pwd`).
    pub amr: Vec<String>,
    /// The browser's `User-Agent` at sign-in (at most 200 characters).
    pub user_agent: Option<String>,
    /// The client address at sign-in.
    pub address: Option<String>,
    /// The clients that received a code or tokens in the session.
    pub clients: Vec<SessionClient>,
}

/// The view of a session, with its clients' display names.
pub async fn view(state: &AppState, session: &Session) -> Result<SessionView, OAuthError> {
    let ids = clients_of(state, &session.sid).await?;
    let p = state.projection.load();
    let clients = ids
        .into_iter()
        .map(|client_id| {
            let client_name = p
                .client(&client_id)
                .and_then(|c| c.client.client_name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| client_id.clone());
            SessionClient {
                client_id,
                client_name,
            }
        })
        .collect();
    let expires_at = if session.expires_at == 0 {
        session.auth_time + state.config.session_lifetime.as_secs() as i64
    } else {
        session.expires_at
    };
    Ok(SessionView {
        sid: session.sid.clone(),
        sub: session.sub.clone(),
        auth_time: session.auth_time,
        expires_at,
        amr: session.amr.clone(),
        user_agent: session.user_agent.clone(),
        address: session.address.clone(),
        clients,
    })
}

/// The live session `sid` of user `sub` (a session of another user is none of theirs).
pub async fn of_user_by_sid(
    state: &AppState,
    sub: &str,
    sid: &str,
) -> Result<Option<Session>, OAuthError> {
    Ok(by_sid(state, sid).await?.filter(|s| s.sub == sub))
}

/// Ends every live session of `sub` but `keep` (each through [`end`]); returns how many.
pub async fn end_all_of_user(
    state: &AppState,
    sub: &str,
    keep: Option<&str>,
    now: i64,
) -> Result<usize, OAuthError> {
    if signet_store::validate_key("subject", sub).is_err() {
        // No state can be stored under such a subject: it has no sessions.
        return Ok(0);
    }
    let mut ended = 0;
    for session in of_user(state, sub).await? {
        if keep.is_some_and(|k| k == session.sid) {
            continue;
        }
        end(state, session, now).await?;
        ended += 1;
    }
    Ok(ended)
}
