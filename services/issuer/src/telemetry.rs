//! Observability: Prometheus metrics and the per-request context of logs.
//!
//! Metric names follow Prometheus conventions: the `signet_` prefix, base units
//! (`_seconds`, `_total`), and label values from small fixed sets (route templates, grant
//! types, algorithms, reasons) — never a client id, user or token. Process metrics use the
//! standard `process_*` names.
//!
//! Every request gets an `X-Request-Id` (the caller's, when it is a sane value; a fresh
//! random one otherwise), echoed on the response and carried by a span around the request,
//! so every log line of the request names it. Logs carry paths, never query strings,
//! headers or bodies: those can hold credentials.

use std::sync::OnceLock;
use std::time::Instant;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

pub const HTTP_REQUESTS: &str = "signet_http_requests_total";
pub const HTTP_DURATION: &str = "signet_http_request_duration_seconds";
pub const TOKENS_ISSUED: &str = "signet_tokens_issued_total";
pub const SIGNING_DURATION: &str = "signet_token_signing_duration_seconds";
pub const CLIENT_AUTH_FAILURES: &str = "signet_client_auth_failures_total";
pub const EVENTLOG_APPLIED: &str = "signet_eventlog_applied_sequence";
pub const EVENTLOG_HEAD: &str = "signet_eventlog_head_sequence";
pub const EVENTLOG_LAG: &str = "signet_eventlog_lag_events";
pub const EVENTLOG_ERRORS: &str = "signet_eventlog_errors_total";
pub const SIGNING_KEYS: &str = "signet_signing_keys";
pub const CONFIG_OBJECTS: &str = "signet_config_objects";
pub const READY: &str = "signet_ready";
pub const KEY_LEASE_EXPIRY: &str = "signet_key_lease_expiry_timestamp_seconds";
pub const NATS_CONNECTED: &str = "signet_nats_connected";
pub const BUILD_INFO: &str = "signet_build_info";
pub const LOGIN_FAILURES: &str = "signet_login_failures_total";
pub const REVOCATIONS: &str = "signet_revocations_total";

/// Latency buckets, in seconds: 50 µs to 5 s.
const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

pub struct Metrics {
    handle: Option<PrometheusHandle>,
    process: metrics_process::Collector,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics registry, installed on first use.
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS)
            .map(PrometheusBuilder::build_recorder);
        let handle = match recorder {
            Ok(recorder) => {
                let handle = recorder.handle();
                // Another recorder may own the process (an embedding application); then
                // this node's /metrics shows what it can, and the app exports the rest.
                metrics::set_global_recorder(recorder).ok().map(|()| handle)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics disabled");
                None
            }
        };
        describe();
        let process = metrics_process::Collector::default();
        process.describe();
        metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        Metrics { handle, process }
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        REVOCATIONS,
        "Revocations this node published, by kind (token, family, session, subject, client)"
    );
    describe_counter!(
        LOGIN_FAILURES,
        "Failed sign-ins at the login page (wrong username or password, disabled user)"
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template, method and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency, by route template and method"
    );
    describe_counter!(
        TOKENS_ISSUED,
        "Access tokens issued, by grant type and signing algorithm"
    );
    describe_histogram!(
        SIGNING_DURATION,
        Unit::Seconds,
        "Time to sign one token, by algorithm"
    );
    describe_counter!(
        CLIENT_AUTH_FAILURES,
        "Failed client authentications at the token endpoint, by reason"
    );
    describe_gauge!(
        EVENTLOG_APPLIED,
        "Sequence of the last configuration event this node applied"
    );
    describe_gauge!(
        EVENTLOG_HEAD,
        "Sequence of the last event in the configuration log"
    );
    describe_gauge!(
        EVENTLOG_LAG,
        "Configuration events in the log not yet applied by this node"
    );
    describe_counter!(
        EVENTLOG_ERRORS,
        "Event log operations that failed, by operation"
    );
    describe_gauge!(
        SIGNING_KEYS,
        "Signing keys in the JWKS, by algorithm and state"
    );
    describe_gauge!(
        CONFIG_OBJECTS,
        "Configuration objects in the projection, by kind"
    );
    describe_gauge!(
        READY,
        "1 when the node is ready (configuration followed, keys loaded)"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the labels name the build");
}

impl Metrics {
    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        self.process.collect();
        self.handle
            .as_ref()
            .map(PrometheusHandle::render)
            .unwrap_or_default()
    }
}

/// Counts and times requests by route template (`route_layer`: after routing, so the
/// template is known; unmatched requests are not labelled by their raw path).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::histogram!(HTTP_DURATION, "route" => route.clone(), "method" => method.clone())
        .record(start.elapsed().as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "route" => route, "method" => method, "status" => status)
        .increment(1);
    resp
}

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A caller's request id is kept when it is 1 to 128 visible ASCII characters.
fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
}

fn new_request_id() -> HeaderValue {
    let mut bytes = [0u8; 12];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return HeaderValue::from_static("unavailable");
    }
    HeaderValue::from_str(&signet_jose::b64url(&bytes))
        .unwrap_or_else(|_| HeaderValue::from_static("unavailable"))
}

/// Sets the request id, runs the request inside a span that carries it, echoes it on the
/// response, and logs the outcome (5xx but 503 at error, the rest at debug).
pub async fn request_context(mut req: Request, next: Next) -> Response {
    let id = match req.headers().get(&X_REQUEST_ID) {
        Some(v) if acceptable(v) => v.clone(),
        _ => new_request_id(),
    };
    req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or_default(),
        method = %req.method(),
        path = req.uri().path(),
    );
    let start = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    resp.headers_mut().insert(X_REQUEST_ID.clone(), id);
    let status = resp.status().as_u16();
    let micros = start.elapsed().as_micros() as u64;
    span.in_scope(|| {
        // 503 is an expected answer (not ready yet, no key lease): not an error to page on.
        if status >= 500 && status != 503 {
            tracing::error!(status, micros, "request failed");
        } else {
            tracing::debug!(status, micros, "request done");
        }
    });
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_callers_are_bounded() {
        assert!(acceptable(&HeaderValue::from_static("abc-123")));
        assert!(!acceptable(&HeaderValue::from_static("")));
        assert!(!acceptable(&HeaderValue::from_static("has space")));
        assert!(!acceptable(
            &HeaderValue::from_str(&"x".repeat(129)).unwrap()
        ));
        assert_ne!(new_request_id(), new_request_id());
    }
}
