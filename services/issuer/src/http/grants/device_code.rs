//! `grant_type=urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 section 3.4): the
//! device polls with its device code until the user decided at `/device`
//! ([`crate::http::device`]).
//!
//! - Pending: `authorization_pending`; polling again within the interval: `slow_down`, and
//!   the device's interval grows by 5 seconds (section 3.5). The polls of the current
//!   interval and the number of slow-downs are counters in the store, so a device polling
//!   several nodes is held to the same interval.
//! - Denied: `access_denied`, once (the code is consumed).
//! - Approved: tokens as for an authorization code, once (the code is consumed: of racing
//!   polls, exactly one gets them).
//! - Past its lifetime: `expired_token`; unknown, used or another client's: `invalid_grant`.

use crate::http::user_tokens::Cnf;
use std::time::Duration;

use axum::response::Response;
use signet_core::client::GrantType;
use signet_core::oauth::{ErrorCode, OAuthError};
use signet_core::projection::{ClientEntry, Projection};
use signet_store::Namespace;

use crate::http::browser::{digest_key, StoreResult};
use crate::http::device::{remaining, Decision, DeviceGrant, MAX_INTERVAL_SECS};
use crate::http::error::ProtocolError;
use crate::http::form::OAuthForm;
use crate::state::AppState;

fn invalid() -> OAuthError {
    OAuthError::invalid_grant("the device code is invalid, expired or used")
}

pub async fn grant(
    state: &AppState,
    p: &Projection,
    client: &ClientEntry,
    form: &OAuthForm,
    cnf: Cnf<'_>,
    now: i64,
) -> Result<Response, ProtocolError> {
    if !client.allows(GrantType::DeviceCode) {
        return Err(OAuthError::unauthorized_client(
            "the client may not use the device authorization grant",
        )
        .into());
    }
    let code = form
        .get("device_code")
        .ok_or_else(|| OAuthError::invalid_request("device_code is required"))?;
    if code.len() > 128 {
        return Err(invalid().into());
    }
    // RFC 8707: the token may be narrowed to resources the granted scopes reach.
    let resources = form.resources()?;
    let key = digest_key(code);
    let grant: DeviceGrant = state
        .store
        .get(Namespace::DeviceCode, &key)
        .await
        .or_unavailable()?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(invalid)?;
    if grant.client_id != client.client.client_id
        || !crate::http::introspect::client_holds(p, &grant.client_id, grant.client_gen)
    {
        return Err(
            OAuthError::invalid_grant("the device code was issued to another client").into(),
        );
    }
    if now >= grant.expires_at {
        return Err(OAuthError::new(ErrorCode::ExpiredToken, "the device code has expired").into());
    }
    match grant.decision {
        Decision::Pending => Err(pending(state, &key, &grant, now).await?.into()),
        Decision::Denied | Decision::Approved(_) => {
            // A resource the grant cannot be narrowed to is refused before the decision is
            // taken, so the device can poll again with a valid one.
            if let Decision::Approved(g) = &grant.decision {
                g.for_resources(p, resources.clone(), state.config.default_algorithm)?;
            }
            // Exactly one poll gets the decision.
            let Some(bytes) = state
                .store
                .consume(Namespace::DeviceCode, &key)
                .await
                .or_unavailable()?
            else {
                return Err(invalid().into());
            };
            let consumed: DeviceGrant = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
            match consumed.decision {
                Decision::Approved(user_grant) => {
                    let user =
                        crate::http::user_tokens::active_user(state, &user_grant.sub).await?;
                    super::authorization_code::tokens(
                        state,
                        p,
                        client,
                        &user_grant,
                        resources,
                        &user,
                        cnf,
                        now,
                    )
                    .await
                }
                Decision::Denied => Err(OAuthError::new(
                    ErrorCode::AccessDenied,
                    "the user denied the request",
                )
                .into()),
                Decision::Pending => Err(invalid().into()),
            }
        }
    }
}

/// The answer while the user has not decided: `authorization_pending`, or `slow_down` when
/// the device already polled in its current interval window (the window then stays, and
/// the interval grows by 5 s for the windows to come). Both counters are fixed-window store
/// counters: atomic across nodes, and cheap (the embedded store commits them without
/// fsync), so a polling storm costs two reads and one increment per poll.
async fn pending(
    state: &AppState,
    key: &str,
    grant: &DeviceGrant,
    now: i64,
) -> Result<OAuthError, OAuthError> {
    let base = state.config.device_poll_interval.as_secs().max(1);
    let slowed = state
        .store
        .get(Namespace::RateLimit, &slow_key(key))
        .await
        .or_unavailable()?
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    let polls = state
        .store
        .incr(
            Namespace::RateLimit,
            &poll_key(key),
            Duration::from_secs(interval_after(base, slowed)),
        )
        .await
        .or_unavailable()?;
    if polls <= 1 {
        return Ok(OAuthError::new(
            ErrorCode::AuthorizationPending,
            "the user has not decided yet",
        ));
    }
    let slowed = state
        .store
        .incr(Namespace::RateLimit, &slow_key(key), remaining(grant, now))
        .await
        .or_unavailable()?;
    let interval = interval_after(base, slowed);
    tracing::debug!(client_id = %grant.client_id, interval, "device polls too fast");
    Ok(OAuthError::new(
        ErrorCode::SlowDown,
        format!("poll at most every {interval} seconds"),
    ))
}

/// The interval after `slowed` slow-downs: 5 s more each (RFC 8628 section 3.5), at most
/// [`MAX_INTERVAL_SECS`].
pub fn interval_after(base: u64, slowed: u64) -> u64 {
    base.saturating_add(slowed.saturating_mul(5))
        .min(MAX_INTERVAL_SECS.max(base))
}

fn poll_key(device_key: &str) -> String {
    format!("device:poll:{device_key}")
}

fn slow_key(device_key: &str) -> String {
    format!("device:slow:{device_key}")
}

#[cfg(test)]
mod tests {
    use super::interval_after;

    #[test]
    fn intervals_grow_by_five_seconds_up_to_a_minute() {
        assert_eq!(interval_after(5, 0), 5);
        assert_eq!(interval_after(5, 1), 10);
        assert_eq!(interval_after(1, 2), 11);
        assert_eq!(interval_after(5, 100), 60);
        assert_eq!(interval_after(5, u64::MAX), 60);
    }
}
