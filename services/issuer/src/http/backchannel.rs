//! OpenID Connect Back-Channel Logout 1.0: when a session ends, each participating client
//! with a `backChannelLogoutUri` is sent a logout token, server to server.
//!
//! 1. [`enqueue`] (called by [`super::sessions::end`]) pushes one [`Delivery`] per such
//!    client onto the node's durable queue (a JetStream work-queue stream in a cluster, a
//!    redb file in `serve`'s data directory), so the delivery outlives the node that
//!    ended the session: any issuer drains the queue.
//! 2. [`spawn_worker`] pulls deliveries and POSTs `logout_token=<JWT>` (section 2.5)
//!    through [`signet_outbound`]: no redirects followed, short timeouts, a bounded body,
//!    and the address guard (link-local and metadata addresses never; loopback and private
//!    ones only with `--allow-private-outbound`).
//! 3. The token is signed at delivery time, not at enqueue time: it lives two minutes
//!    (`exp`, section 2.4 asks for a short life), and a delivery retried for longer would
//!    otherwise carry an expired token; it is signed with a key the JWKS publishes at that
//!    moment (a key revoked meanwhile never signs); and the queue holds no credential.
//!    Each attempt has its own `jti`.
//! 4. Outcomes (section 2.8 says a receiver answers 200, or 400 when the logout request
//!    failed): any 2xx is delivered. 408, 429 and 5xx, timeouts and connection failures
//!    are retried with exponential backoff (`--backchannel-retry-base`, doubling, at most
//!    10 minutes apart) up to `--backchannel-max-attempts`. Other 4xx (400 included: the
//!    receiver rejected the token, and the same claims would be rejected again), a
//!    redirect (never followed), an address the guard refuses and an invalid URL are
//!    given up at once. A delivery given up logs a warning (client, reason, attempts;
//!    never the token) and counts in `signet_backchannel_logout_given_up_total`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use signet_core::authorize::subject_for;
use signet_core::oauth::{ErrorCode, OAuthError};
use signet_eventlog::queue::Job;
use signet_outbound::{Answer, OutboundError};

use super::sessions::{Participant, Session};
use crate::state::AppState;
use crate::telemetry::{BACKCHANNEL_DELIVERED, BACKCHANNEL_FAILED, BACKCHANNEL_GIVEN_UP};

/// The `events` member of a logout token (section 2.4).
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A logout token's lifetime: short, as section 2.4 recommends (two minutes).
pub const LOGOUT_TOKEN_LIFETIME: i64 = 120;

/// One queued delivery: what signing the logout token needs, no credential.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Delivery {
    pub client_id: String,
    pub sid: String,
    /// The user's own `sub` (the token carries the subject the client knows).
    pub sub: String,
    /// Where the client received its tokens (its pairwise subject's sector).
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// When the session ended (Unix seconds).
    pub ended_at: i64,
}

/// Enqueues a delivery for each participating client with a `backChannelLogoutUri`.
/// Returns how many.
pub async fn enqueue(
    state: &AppState,
    session: &Session,
    participants: &[Participant],
    now: i64,
) -> Result<usize, OAuthError> {
    let p = state.projection.load();
    let deliveries: Vec<Delivery> = participants
        .iter()
        .filter(|part| {
            p.client(&part.client_id)
                .is_some_and(|c| c.client.enabled && c.client.back_channel_logout_uri.is_some())
        })
        .map(|part| Delivery {
            client_id: part.client_id.clone(),
            sid: session.sid.clone(),
            sub: session.sub.clone(),
            redirect_uri: part.redirect_uri.clone(),
            ended_at: now,
        })
        .collect();
    if deliveries.is_empty() {
        return Ok(0);
    }
    let Some(queue) = state.logout_queue() else {
        tracing::error!("no back-channel logout queue on this node; clients are not told");
        return Ok(0);
    };
    for d in &deliveries {
        let bytes = serde_json::to_vec(d).map_err(|_| OAuthError::server_error("delivery"))?;
        queue.push(&bytes).await.map_err(|e| {
            tracing::error!(error = %e, "could not enqueue a back-channel logout");
            OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the session could not be ended; retry shortly",
            )
        })?;
    }
    Ok(deliveries.len())
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Worth another attempt; the reason is a metric label.
    Retry(&'static str),
    /// Will never succeed.
    GiveUp(&'static str),
}

/// Section 2.8 and the module's rules: what an answer (or failure) means.
pub fn classify(result: &Result<Answer, OutboundError>) -> Outcome {
    match result {
        Ok(a) if (200..300).contains(&a.status) => Outcome::Delivered,
        Ok(a) if a.status == 408 || a.status == 429 => Outcome::Retry("status_4xx_transient"),
        Ok(a) if a.status >= 500 => Outcome::Retry("status_5xx"),
        Ok(_) => Outcome::GiveUp("status_4xx"),
        Err(OutboundError::Redirected { .. }) => Outcome::GiveUp("redirect"),
        Err(OutboundError::Refused { .. }) => Outcome::GiveUp("address_refused"),
        Err(OutboundError::InvalidUrl(_)) => Outcome::GiveUp("invalid_url"),
        Err(OutboundError::Timeout) => Outcome::Retry("timeout"),
        Err(OutboundError::Connect) => Outcome::Retry("connect"),
        Err(OutboundError::Resolve { .. }) => Outcome::Retry("resolve"),
        Err(OutboundError::BodyTooLarge { .. }) => Outcome::Retry("body_too_large"),
        Err(OutboundError::Http(_)) => Outcome::Retry("http"),
    }
}

/// The claims of a logout token (section 2.4): never a `nonce`.
pub fn logout_claims(
    iss: &str,
    client_id: &str,
    sub: &str,
    sid: &str,
    jti: &str,
    now: i64,
) -> serde_json::Value {
    serde_json::json!({
        "iss": iss,
        "aud": client_id,
        "iat": now,
        "exp": now + LOGOUT_TOKEN_LIFETIME,
        "jti": jti,
        "events": { LOGOUT_EVENT: {} },
        "sub": sub,
        "sid": sid,
    })
}

/// Signs the delivery's logout token now; `Err` with the outcome when it cannot be.
fn sign(state: &AppState, d: &Delivery, now: i64) -> Result<(String, String), Outcome> {
    let p = state.projection.load();
    let Some(client) = p.client(&d.client_id).filter(|c| c.client.enabled) else {
        return Err(Outcome::GiveUp("client_gone"));
    };
    let Some(uri) = client.client.back_channel_logout_uri.clone() else {
        return Err(Outcome::GiveUp("client_gone"));
    };
    let alg = super::user_tokens::id_token_alg(state, client)
        .map_err(|_| Outcome::Retry("no_signing_key"))?;
    let redirect = d.redirect_uri.as_deref().unwrap_or_default();
    let sub = subject_for(client, redirect, &d.sub);
    let jti = super::grants::client_credentials::new_jti().map_err(|_| Outcome::Retry("random"))?;
    let claims = logout_claims(
        state.config.issuer.as_str(),
        &d.client_id,
        &sub,
        &d.sid,
        &jti,
        now,
    );
    let payload = serde_json::to_vec(&claims).map_err(|_| Outcome::GiveUp("claims"))?;
    let signers = state.signers.load();
    let signer = signers
        .logout_token(alg)
        .ok_or(Outcome::Retry("no_signing_key"))?;
    let token = signer.sign(&payload).map_err(|e| {
        tracing::error!(error = %e, "signing a logout token failed");
        Outcome::Retry("signing")
    })?;
    Ok((uri, token))
}

/// One attempt at a delivery.
async fn attempt(state: &AppState, d: &Delivery) -> Outcome {
    let (uri, token) = match sign(state, d, super::token::now()) {
        Ok(t) => t,
        Err(outcome) => return outcome,
    };
    let Some(outbound) = state.outbound() else {
        return Outcome::Retry("no_outbound_client");
    };
    let result = outbound.post_form(&uri, &[("logout_token", &token)]).await;
    if let Err(e) = &result {
        tracing::debug!(client_id = %d.client_id, error = %e, "back-channel logout attempt failed");
    }
    classify(&result)
}

/// Handles one job: an attempt, then ack, retry later, or give up.
async fn handle(state: &AppState, job: Job) {
    let Ok(d) = serde_json::from_slice::<Delivery>(&job.payload) else {
        tracing::warn!("a back-channel logout delivery could not be read; dropped");
        metrics::counter!(BACKCHANNEL_GIVEN_UP, "reason" => "unreadable").increment(1);
        let _ = job.give_up().await;
        return;
    };
    let n = job.attempt;
    let max = state.config.backchannel.max_attempts;
    let outcome = attempt(state, &d).await;
    let settled = match outcome {
        Outcome::Delivered => {
            metrics::counter!(BACKCHANNEL_DELIVERED).increment(1);
            tracing::info!(client_id = %d.client_id, sid = %d.sid, attempt = n, "back-channel logout delivered");
            job.ack().await
        }
        Outcome::Retry(reason) if n < max => {
            metrics::counter!(BACKCHANNEL_FAILED, "reason" => reason).increment(1);
            let delay = state.config.backchannel.backoff(n);
            tracing::info!(client_id = %d.client_id, reason, attempt = n, retry_in_ms = delay.as_millis() as u64, "back-channel logout failed; will retry");
            job.retry(delay).await
        }
        Outcome::Retry(reason) | Outcome::GiveUp(reason) => {
            metrics::counter!(BACKCHANNEL_FAILED, "reason" => reason).increment(1);
            metrics::counter!(BACKCHANNEL_GIVEN_UP, "reason" => reason).increment(1);
            tracing::warn!(client_id = %d.client_id, sid = %d.sid, reason, attempts = n, "back-channel logout given up");
            job.give_up().await
        }
    };
    if let Err(e) = settled {
        // The queue redelivers it after its lease.
        tracing::warn!(error = %e, "could not settle a back-channel logout delivery");
    }
}

/// Drains the node's logout queue until aborted: up to `concurrency` deliveries at once,
/// so a receiver that hangs delays no other.
pub fn spawn_worker(state: AppState) -> Option<tokio::task::JoinHandle<()>> {
    let queue = state.logout_queue()?.clone();
    let limit = Arc::new(tokio::sync::Semaphore::new(
        state.config.backchannel.concurrency.max(1),
    ));
    Some(tokio::spawn(async move {
        loop {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            match queue.pull(Duration::from_secs(1)).await {
                Ok(Some(job)) => {
                    let state = state.clone();
                    tokio::spawn(async move {
                        handle(&state, job).await;
                        drop(permit);
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "back-channel logout queue unavailable; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> Result<Answer, OutboundError> {
        Ok(Answer {
            status,
            headers: Default::default(),
            body: bytes::Bytes::new(),
        })
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(&answer(200)), Outcome::Delivered);
        assert_eq!(classify(&answer(204)), Outcome::Delivered);
        for s in [500, 502, 503, 429, 408] {
            assert!(matches!(classify(&answer(s)), Outcome::Retry(_)), "{s}");
        }
        for s in [400, 401, 404, 410] {
            assert!(matches!(classify(&answer(s)), Outcome::GiveUp(_)), "{s}");
        }
        assert_eq!(
            classify(&Err(OutboundError::Redirected { status: 302 })),
            Outcome::GiveUp("redirect")
        );
        assert_eq!(
            classify(&Err(OutboundError::Refused {
                host: "169.254.169.254".into(),
                reason: "link-local"
            })),
            Outcome::GiveUp("address_refused")
        );
        assert_eq!(
            classify(&Err(OutboundError::Timeout)),
            Outcome::Retry("timeout")
        );
        assert_eq!(
            classify(&Err(OutboundError::Connect)),
            Outcome::Retry("connect")
        );
    }

    #[test]
    fn logout_claims_follow_section_2_4() {
        let c = logout_claims("https://id.example", "app", "u1", "s1", "j1", 1000);
        assert_eq!(c["aud"], "app");
        assert_eq!(c["exp"], 1000 + LOGOUT_TOKEN_LIFETIME);
        assert!(c["events"][LOGOUT_EVENT].as_object().unwrap().is_empty());
        assert_eq!(
            (c["sid"].as_str(), c["sub"].as_str()),
            (Some("s1"), Some("u1"))
        );
        assert!(c.get("nonce").is_none());
    }

    #[test]
    fn deliveries_round_trip_without_a_token() {
        let d = Delivery {
            client_id: "app".into(),
            sid: "s".into(),
            sub: "u".into(),
            redirect_uri: Some("https://rp/cb".into()),
            ended_at: 5,
        };
        let bytes = serde_json::to_vec(&d).unwrap();
        assert_eq!(serde_json::from_slice::<Delivery>(&bytes).unwrap(), d);
    }
}
