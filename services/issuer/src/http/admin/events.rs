//! `GET /admin/v1/Events`: the audit trail, read from the event log. Each configuration
//! event is shown with who made it (the admin client id, `system` or `keymanager`), when,
//! which object it changed and how, and its payload with every secret hash redacted
//! ([`Event::redacted`]). Read-only; the log itself is the record, nothing is kept here.
//!
//! Paging is by sequence: `since` is exclusive and the answer's `next` is what to pass as
//! `since` to go on. One request reads at most [`SCAN`] events of the log, so a filter that
//! matches rarely still answers promptly: fewer than `limit` events and a `next` past them
//! means "nothing more in this stretch, ask again".

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use signet_core::events::Event;
use signet_core::validation::ValidationErrors;
use signet_eventlog::{RecordedEvent, Seq};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::OpenApi;

use super::common::log_error;
#[allow(unused_imports)] // the OpenAPI annotations name them
use super::common::{BadRequest, Forbidden, Unauthorized, Unavailable};
use crate::http::error::ApiError;
use crate::state::AppState;

/// The kinds of aggregate `aggregate=` accepts: the part of an event's `type` before the dot.
pub const AGGREGATES: [&str; 10] = [
    "client",
    "api_resource",
    "api_scope",
    "identity_resource",
    "signing_key",
    "user",
    "username",
    "api_key",
    "initial_access_token",
    "identity_provider",
];
/// The schema of `aggregate=` in the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[schema(as = AggregateKind, description = "A kind of configuration object.")]
#[allow(dead_code)] // a schema only
#[allow(non_camel_case_types)]
pub enum AggregateKindSchema {
    client,
    api_resource,
    api_scope,
    identity_resource,
    signing_key,
    user,
    username,
    api_key,
    initial_access_token,
    identity_provider,
}

/// `limit` when none is given.
const DEFAULT_LIMIT: usize = 100;
/// The largest `limit`.
const MAX_LIMIT: usize = 1000;
/// Events of the log one request reads at most (whatever the filter).
const SCAN: usize = 10_000;
/// Events read from the log at a time.
const BATCH: usize = 1000;

/// The routes, relative to `/admin/v1`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/Events", get(list_events))
}

/// This resource's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(list_events),
    components(schemas(AggregateKindSchema)),
    tags((name = "Event", description = "The audit trail: every configuration change, who made it and when, with secret hashes redacted. Read-only."))
)]
pub struct Api;

/// One change in the audit trail.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AuditEvent)]
pub struct AuditEvent {
    /// The event's sequence number in the log (global, dense, from 1).
    #[schema(example = 42)]
    seq: Seq,
    /// When it was written (RFC 3339, UTC).
    #[schema(example = "2026-12-03T08:00:00.123Z")]
    at: String,
    /// Who made the change: the admin client id, `system` (bootstrap) or `keymanager`.
    #[schema(example = "signet-admin")]
    actor: String,
    /// The kind of object: `client`, `api_resource`, `api_scope`, `identity_resource`,
    /// `signing_key`, `user`, `username` (the claims that keep usernames unique), `api_key`, `initial_access_token` (dynamic client registration; a registration is a `client` event) or `identity_provider`.
    #[schema(example = "client")]
    aggregate: String,
    /// The object's id (`clientId`, `name`, `kid`, `sub` or the API key's id); null for an
    /// event this node does not know.
    #[schema(example = "backend")]
    id: Option<String>,
    /// What happened to it: `created`, `replaced`, `deleted`, `published`, `activated`,
    /// `retired`, `removed` or `revoked`.
    #[schema(example = "created")]
    change: String,
    /// The event's payload as on `signet.events.*`, with every secret hash (`sha256`,
    /// `passwordHash`) replaced by `"[redacted]"`; null for an event this node does not know.
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
}

/// A page of the audit trail.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// The events, oldest first.
    events: Vec<AuditEvent>,
    /// The sequence to pass as `since` for what follows (the last event read; `since` when
    /// the log has nothing newer).
    next: Seq,
}

/// The query, checked: each bad value is a 400 naming its parameter.
#[derive(Debug, PartialEq)]
struct EventQuery {
    aggregate: Option<String>,
    since: Seq,
    limit: usize,
}

fn invalid(param: &str, rule: &str) -> ApiError {
    ApiError::Invalid(ValidationErrors::single(param, rule))
}

impl EventQuery {
    fn parse(q: &HashMap<String, String>) -> Result<EventQuery, ApiError> {
        if let Some(unknown) = q
            .keys()
            .find(|k| !matches!(k.as_str(), "aggregate" | "since" | "limit"))
        {
            if unknown.is_empty() {
                return Err(invalid("query", "a query parameter has no name"));
            }
            return Err(invalid(
                unknown,
                "unknown query parameter (known: aggregate, since, limit)",
            ));
        }
        let aggregate = match q.get("aggregate") {
            None => None,
            Some(a) if AGGREGATES.contains(&a.as_str()) => Some(a.clone()),
            Some(_) => {
                return Err(invalid(
                    "aggregate",
                    "must be one of client, api_resource, api_scope, identity_resource, signing_key, user, username, api_key",
                ))
            }
        };
        let since = match q.get("since") {
            None => 0,
            // At most i64::MAX: the document's `int64`, and more than any log holds.
            Some(s) => s
                .parse::<i64>()
                .ok()
                .and_then(|n| Seq::try_from(n).ok())
                .ok_or_else(|| {
                    invalid(
                        "since",
                        "must be a sequence number (a whole number from 0 to 2^63-1)",
                    )
                })?,
        };
        let limit = match q.get("limit") {
            None => DEFAULT_LIMIT,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| invalid("limit", "must be a whole number from 1 to 1000"))?,
        };
        Ok(EventQuery {
            aggregate,
            since,
            limit,
        })
    }
}

/// A recorded event as the audit trail shows it. The payload is parsed and redacted; one
/// this node cannot parse (written by a newer version) shows its type only, never its data.
fn audit_event(r: RecordedEvent) -> AuditEvent {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.at_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    let (type_name, id, data) = match Event::from_json(&r.payload) {
        Ok(event) => {
            let redacted = event.redacted();
            let id = redacted.aggregate().1.to_owned();
            let data = serde_json::to_value(&redacted)
                .ok()
                .and_then(|mut v| v.get_mut("data").map(Value::take));
            (redacted.type_name(), Some(id), data)
        }
        Err(_) => {
            let type_name = serde_json::from_slice::<Value>(&r.payload)
                .ok()
                .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            (type_name, None, None)
        }
    };
    let (aggregate, change) = type_name.split_once('.').unwrap_or((&type_name, ""));
    AuditEvent {
        seq: r.seq,
        at,
        actor: r.actor,
        aggregate: aggregate.to_owned(),
        id,
        change: change.to_owned(),
        data,
    }
}

/// Reads the audit trail: events after `since`, oldest first, at most `limit`, optionally of
/// one kind of object only. Secret hashes are redacted.
#[utoipa::path(
    get,
    path = "/admin/v1/Events",
    tag = "Event",
    params(
        ("aggregate" = Option<AggregateKindSchema>, Query, description = "Only events of this kind of object: `client`, `api_resource`, `api_scope`, `identity_resource`, `signing_key`, `user`, `username` (the claims that keep usernames unique), `api_key`, `initial_access_token` (dynamic client registration; a registration is a `client` event) or `identity_provider`."),
        ("since" = Option<u64>, Query, description = "Only events with a greater sequence number (exclusive; default 0: from the start). Pass the previous answer's `next`."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many events, 1 to 1000 (default 100)."),
    ),
    responses(
        (status = 200, description = "The events and where to go on from.", body = EventPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
async fn list_events(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<EventPage>, ApiError> {
    let q = EventQuery::parse(&query)?;
    let mut events = Vec::new();
    let mut next = q.since;
    let mut scanned = 0;
    'read: while scanned < SCAN && events.len() < q.limit {
        let Some(from) = next.checked_add(1) else {
            break;
        };
        let batch = state
            .log
            .read_from(from, BATCH.min(SCAN - scanned))
            .await
            .map_err(log_error)?;
        if batch.is_empty() {
            break;
        }
        scanned += batch.len();
        for r in batch {
            next = r.seq;
            let e = audit_event(r);
            if q.aggregate.as_deref().is_none_or(|a| a == e.aggregate) {
                events.push(e);
                if events.len() == q.limit {
                    break 'read;
                }
            }
        }
    }
    Ok(Json(EventPage { events, next }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Result<EventQuery, String> {
        let map = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        EventQuery::parse(&map).map_err(|e| match e {
            ApiError::Invalid(v) => v.errors[0].field.clone(),
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn the_query_is_checked_and_each_bad_value_is_named() {
        assert_eq!(
            query(&[]).unwrap(),
            EventQuery {
                aggregate: None,
                since: 0,
                limit: 100
            }
        );
        assert_eq!(
            query(&[("aggregate", "user"), ("since", "7"), ("limit", "1000")]).unwrap(),
            EventQuery {
                aggregate: Some("user".into()),
                since: 7,
                limit: 1000
            }
        );
        for (pairs, field) in [
            (&[("aggregate", "users")][..], "aggregate"),
            (&[("aggregate", "")][..], "aggregate"),
            (&[("since", "-1")][..], "since"),
            (&[("since", "x")][..], "since"),
            (&[("since", "9223372036854775808")][..], "since"),
            (&[("", "null")][..], "query"),
            (&[("limit", "0")][..], "limit"),
            (&[("limit", "1001")][..], "limit"),
            (&[("limit", "")][..], "limit"),
            (&[("after", "1")][..], "after"),
        ] {
            assert_eq!(query(pairs).unwrap_err(), field, "{pairs:?}");
        }
    }

    #[test]
    fn the_document_lists_the_accepted_aggregates() {
        let doc = super::super::openapi::json().unwrap();
        assert_eq!(
            doc["components"]["schemas"]["AggregateKind"]["enum"],
            serde_json::json!(AGGREGATES)
        );
        let op = &doc["paths"]["/admin/v1/Events"]["get"];
        for status in ["200", "400", "401", "403", "503"] {
            assert!(op["responses"].get(status).is_some(), "{status}");
        }
    }

    #[test]
    fn events_are_shown_redacted() {
        let user = serde_json::json!({"type": "user.created", "data": {
            "sub": "u1", "username": "alice", "passwordHash": "$argon2id$SECRET",
            "claims": {}, "enabled": true, "createdAt": 1, "updatedAt": 1}});
        let e = audit_event(RecordedEvent {
            seq: 3,
            subject: "signet.events.user.u1".into(),
            actor: "signet-admin".into(),
            at_ms: 1_764_748_800_123,
            payload: serde_json::to_vec(&user).unwrap(),
        });
        assert_eq!(
            (e.seq, e.at.as_str(), e.actor.as_str()),
            (3, "2025-12-03T08:00:00.123Z", "signet-admin")
        );
        assert_eq!(
            (e.aggregate.as_str(), e.id.as_deref(), e.change.as_str()),
            ("user", Some("u1"), "created")
        );
        let data = e.data.unwrap();
        assert_eq!(data["passwordHash"], "[redacted]");
        assert_eq!(data["username"], "alice");
        // An event of a newer version: its type, never its data.
        let e = audit_event(RecordedEvent {
            seq: 4,
            subject: "signet.events.thing.x".into(),
            actor: "system".into(),
            at_ms: 0,
            payload: br#"{"type":"thing.made","data":{"secret":"SECRET"}}"#.to_vec(),
        });
        assert_eq!((e.aggregate.as_str(), e.change.as_str()), ("thing", "made"));
        assert_eq!((e.id, e.data), (None, None));
    }
}
