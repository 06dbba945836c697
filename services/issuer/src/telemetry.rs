//! Observability: Prometheus metrics and the per-request context of logs.
//!
//! Metric names follow Prometheus conventions: the `signet_` prefix, base units
//! (`_seconds`, `_total`), and label values from small fixed sets (route templates, grant
//! types, algorithms, reasons) — never a client id, user or token. Process metrics use the
//! standard `process_*` names.
//!
//! Every request gets an `X-Request-Id` (the caller's, when it is a sane value; a fresh
//! random one otherwise), echoed on the response and carried by a span around the request,
//! so every log line of the request names it, with the client's address (the resolved
//! one: behind a trusted proxy, the address it forwarded). Logs carry paths, never query
//! strings, headers or bodies: those can hold credentials.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

pub const HTTP_REQUESTS: &str = "signet_http_requests_total";
pub const HTTP_DURATION: &str = "signet_http_request_duration_seconds";
pub const TOKENS_ISSUED: &str = "signet_tokens_issued_total";
pub const SIGNING_DURATION: &str = "signet_token_signing_duration_seconds";
pub const CLIENT_AUTH_FAILURES: &str = "signet_client_auth_failures_total";
pub const REQUEST_OBJECT_FAILURES: &str = "signet_request_object_failures_total";
pub const CLIENT_JWKS_FETCHES: &str = "signet_client_jwks_fetches_total";
pub const DPOP_FAILURES: &str = "signet_dpop_proof_failures_total";
pub const EVENTLOG_APPLIED: &str = "signet_eventlog_applied_sequence";
pub const EVENTLOG_HEAD: &str = "signet_eventlog_head_sequence";
pub const EVENTLOG_LAG: &str = "signet_eventlog_lag_events";
pub const EVENTLOG_ERRORS: &str = "signet_eventlog_errors_total";
/// Reopens of the embedded store after a failed write (a full disk), by `outcome`.
pub const STORE_REOPENS: &str = signet_store::embedded::REOPENS_METRIC;
pub const SIGNING_KEYS: &str = "signet_signing_keys";
pub const CONFIG_OBJECTS: &str = "signet_config_objects";
pub const READY: &str = "signet_ready";
pub const KEY_LEASE_EXPIRY: &str = "signet_key_lease_expiry_timestamp_seconds";
pub const NATS_CONNECTED: &str = "signet_nats_connected";
pub const BUILD_INFO: &str = "signet_build_info";
pub const LOGIN_FAILURES: &str = "signet_login_failures_total";
/// Refused second-factor codes (wrong, reused, or while throttled).
pub const OTP_FAILURES: &str = "signet_otp_failures_total";
/// E-mails handed to the SMTP relay (`kind`: reset, password_changed, verify; `outcome`:
/// sent, failed).
pub const MAIL_SENT: &str = "signet_mail_sent_total";
/// Refused passkey sign-ins, by `reason` (`counter` for a counter that went back: a
/// possibly cloned authenticator).
pub const PASSKEY_FAILURES: &str = "signet_passkey_failures_total";
/// Upstream sign-ins started (redirects to an identity provider).
pub const FEDERATION_STARTS: &str = "signet_federation_starts_total";
/// Upstream sign-ins that failed (provider unreachable, bad state, invalid ID token, ...).
pub const FEDERATION_FAILURES: &str = "signet_federation_failures_total";
/// Users created just in time by an upstream sign-in.
pub const FEDERATION_USERS_CREATED: &str = "signet_federation_users_created_total";
/// Wrong, expired or used user codes entered at the device page.
pub const DEVICE_CODE_FAILURES: &str = "signet_device_user_code_failures_total";
/// Answers of `POST /oauth2/register`, by `outcome` (`registered` or the error code).
pub const REGISTRATIONS: &str = "signet_client_registrations_total";
pub const REVOCATIONS: &str = "signet_revocations_total";
pub const BACKCHANNEL_DELIVERED: &str = "signet_backchannel_logout_delivered_total";
pub const BACKCHANNEL_FAILED: &str = "signet_backchannel_logout_failed_attempts_total";
pub const BACKCHANNEL_GIVEN_UP: &str = "signet_backchannel_logout_given_up_total";

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
        BACKCHANNEL_DELIVERED,
        "Back-channel logout tokens a receiver accepted (2xx)"
    );
    describe_counter!(
        BACKCHANNEL_FAILED,
        "Back-channel logout delivery attempts that failed, by reason (status, timeout, connect, refused, redirect, ...)"
    );
    describe_counter!(
        BACKCHANNEL_GIVEN_UP,
        "Back-channel logout deliveries given up (a permanent failure, or the attempts bound reached)"
    );
    describe_counter!(
        LOGIN_FAILURES,
        "Failed sign-ins at the login page (wrong username or password, disabled user)"
    );
    describe_counter!(
        MAIL_SENT,
        "E-mails handed to the SMTP relay, by kind (reset, password_changed, verify) and outcome (sent, failed)"
    );
    describe_counter!(
        OTP_FAILURES,
        "Refused second-factor codes (TOTP or recovery code: wrong, reused, or while throttled)"
    );
    describe_counter!(
        PASSKEY_FAILURES,
        "Refused passkey sign-ins, by reason (unknown credential, wrong origin or RP, counter gone back, invalid)"
    );
    describe_counter!(
        FEDERATION_STARTS,
        "Sign-ins started at an upstream identity provider"
    );
    describe_counter!(
        FEDERATION_FAILURES,
        "Upstream sign-ins that failed (provider unreachable or erring, replayed or foreign state, invalid ID token)"
    );
    describe_counter!(
        FEDERATION_USERS_CREATED,
        "Users created just in time by an upstream sign-in"
    );
    describe_counter!(
        REGISTRATIONS,
        "Dynamic client registrations at /oauth2/register, by outcome (registered or the RFC 7591 error code)"
    );
    describe_counter!(
        DEVICE_CODE_FAILURES,
        "Wrong, expired or used user codes entered at the device page"
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
    describe_counter!(
        CLIENT_JWKS_FETCHES,
        "Fetches of clients' jwksUri key sets (cache misses, stale sets and unknown kids)"
    );
    describe_counter!(
        DPOP_FAILURES,
        "Refused DPoP proofs (RFC 9449) at the token and userinfo endpoints, by reason"
    );
    describe_counter!(
        REQUEST_OBJECT_FAILURES,
        "Refused signed request objects (RFC 9101) at the authorization and PAR endpoints, by reason"
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
    describe_counter!(
        STORE_REOPENS,
        "Attempts to reopen the embedded store (serve) after a failed write such as a full disk, by outcome (reopened, failed)"
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

/// How often histogram samples are folded into their buckets (see [`spawn_upkeep`]).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Folds the recorder's histogram samples into their buckets every [`UPKEEP_INTERVAL`].
/// The Prometheus recorder keeps every recorded sample until this runs (a scrape does it
/// too): without it, an unscraped node grew by about 38 bytes per request (two histogram
/// samples each), 0.3 MB a second at 8,000 requests per second. Abort the task to stop.
pub fn spawn_upkeep() -> tokio::task::JoinHandle<()> {
    let m = metrics();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            m.upkeep();
        }
    })
}

impl Metrics {
    /// Folds pending histogram samples into their buckets (bounded memory).
    pub fn upkeep(&self) {
        if let Some(h) = &self.handle {
            h.run_upkeep();
        }
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        self.process.collect();
        self.handle
            .as_ref()
            .map(PrometheusHandle::render)
            .unwrap_or_default()
    }
}

/// Handles of the per-request metrics, resolved once per thread and label set. The
/// `metrics` macros build a key (allocating its label list, and here the label strings) and
/// look it up in the recorder's registry on every call; on the token endpoint that was four
/// lookups per request. A handle stays valid for the life of the recorder, which is the
/// process's.
mod handles {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use axum::http::Method;
    use metrics::{Counter, Histogram};

    /// One route template's handles: few methods and statuses each, so a short list.
    #[derive(Default)]
    struct Route {
        durations: Vec<(Method, Histogram)>,
        requests: Vec<(Method, u16, Counter)>,
    }

    thread_local! {
        static ROUTES: RefCell<HashMap<Box<str>, Route>> = RefCell::new(HashMap::new());
        static COUNTERS: RefCell<HashMap<(&'static str, &'static str, &'static str), Counter>> =
            RefCell::new(HashMap::new());
        static HISTOGRAMS: RefCell<HashMap<(&'static str, &'static str), Histogram>> =
            RefCell::new(HashMap::new());
    }

    /// Records one answered request of `route` (a template, or "unmatched").
    pub fn http_request(route: &str, method: &Method, status: u16, seconds: f64) {
        ROUTES.with(|routes| {
            let mut routes = routes.borrow_mut();
            let r = match routes.get_mut(route) {
                Some(r) => r,
                None => routes.entry(route.into()).or_default(),
            };
            let duration = match r.durations.iter().find(|(m, _)| m == method) {
                Some((_, h)) => h,
                None => {
                    super::metrics(); // a handle resolved before the recorder is a no-op
                    let h = metrics::histogram!(super::HTTP_DURATION,
                        "route" => route.to_owned(), "method" => method.as_str().to_owned());
                    r.durations.push((method.clone(), h));
                    &r.durations[r.durations.len() - 1].1
                }
            };
            duration.record(seconds);
            let count = match r
                .requests
                .iter()
                .find(|(m, s, _)| *s == status && m == method)
            {
                Some((_, _, c)) => c,
                None => {
                    super::metrics();
                    let c = metrics::counter!(super::HTTP_REQUESTS,
                        "route" => route.to_owned(), "method" => method.as_str().to_owned(),
                        "status" => status.to_string());
                    r.requests.push((method.clone(), status, c));
                    &r.requests[r.requests.len() - 1].2
                }
            };
            count.increment(1);
        });
    }

    /// Counts one issued token.
    pub fn token_issued(grant_type: &'static str, alg: &'static str) {
        COUNTERS.with(|c| {
            c.borrow_mut()
                .entry((super::TOKENS_ISSUED, grant_type, alg))
                .or_insert_with(|| {
                    super::metrics();
                    metrics::counter!(super::TOKENS_ISSUED, "grant_type" => grant_type, "alg" => alg)
                })
                .increment(1)
        });
    }

    /// Records the time one signature took.
    pub fn signing_duration(alg: &'static str, seconds: f64) {
        HISTOGRAMS.with(|h| {
            h.borrow_mut()
                .entry((super::SIGNING_DURATION, alg))
                .or_insert_with(|| {
                    super::metrics();
                    metrics::histogram!(super::SIGNING_DURATION, "alg" => alg)
                })
                .record(seconds)
        });
    }
}

pub use handles::{signing_duration, token_issued};

/// Counts and times requests by route template (`route_layer`: after routing, so the
/// template is known; unmatched requests are not labelled by their raw path).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let start = Instant::now();
    let resp = next.run(req).await;
    handles::http_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        &method,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
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

/// Sets the request id, runs the request inside a span that carries it, bounded by the
/// node's request timeout (503 when it runs out), echoes the id on the response, and logs
/// the outcome (5xx but 503 at error, the rest at debug).
///
/// The timeout is `tokio::time::timeout`, which polls the request first and arms its timer
/// only when the request is still pending: a request answered on its first poll (every
/// `client_credentials` grant) never touches the timer wheel. (tower-http's `TimeoutLayer`
/// polls its timer first, which registers it for every request; when the node had no
/// timer pending, each registration also woke the I/O driver with an `eventfd` write: one
/// extra system call per request.)
pub async fn request_context(
    State(timeout): State<Duration>,
    mut req: Request,
    next: Next,
) -> Response {
    let id = match req.headers().get(&X_REQUEST_ID) {
        Some(v) if acceptable(v) => v.clone(),
        _ => new_request_id(),
    };
    req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
    let client = req
        .extensions()
        .get::<crate::http::client_addr::ClientAddr>()
        .map(|c| tracing::field::display(c.0));
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or_default(),
        client,
        method = %req.method(),
        path = req.uri().path(),
    );
    let start = Instant::now();
    let mut resp = match tokio::time::timeout(timeout, next.run(req).instrument(span.clone())).await
    {
        Ok(resp) => resp,
        Err(_) => {
            span.in_scope(|| {
                tracing::warn!(timeout_ms = timeout.as_millis() as u64, "request timed out")
            });
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    };
    resp.headers_mut().insert(X_REQUEST_ID.clone(), id);
    // Every answer, JSON as well as HTML: browsers must never sniff a token response or an
    // admin document into something executable.
    resp.headers_mut().insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
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

    async fn call(router: axum::Router, path: &str) -> Response {
        use tower::ServiceExt;
        let req = Request::builder()
            .uri(path)
            .header("x-request-id", "caller-1")
            .body(axum::body::Body::empty())
            .unwrap();
        router.oneshot(req).await.unwrap()
    }

    fn router(timeout: Duration) -> axum::Router {
        use axum::routing::get;
        axum::Router::new()
            .route("/fast", get(|| async { "ok" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "late"
                }),
            )
            .route_layer(axum::middleware::from_fn(track))
            .layer(axum::middleware::from_fn_with_state(
                timeout,
                request_context,
            ))
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_timeout_is_answered_503_with_its_id() {
        let resp = call(router(Duration::from_secs(30)), "/slow").await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[&X_REQUEST_ID], "caller-1");
        let resp = call(router(Duration::from_secs(30)), "/fast").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[&X_REQUEST_ID], "caller-1");
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_method_and_status() {
        let count = || {
            metrics()
                .render()
                .lines()
                .find(|l| {
                    l.starts_with(HTTP_REQUESTS)
                        && l.contains(r#"route="/fast""#)
                        && l.contains(r#"method="GET""#)
                        && l.contains(r#"status="200""#)
                })
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let before = count();
        for _ in 0..3 {
            call(router(Duration::from_secs(30)), "/fast").await;
        }
        // Other tests in this process may count the same route; never fewer than ours.
        assert!(count() >= before + 3, "{}", metrics().render());
        let _ = call(router(Duration::from_secs(30)), "/nowhere").await;
        token_issued("client_credentials", "EdDSA");
        signing_duration("EdDSA", 0.00001);
        let text = metrics().render();
        assert!(
            text.lines().any(|l| l.starts_with(TOKENS_ISSUED)
                && l.contains(r#"grant_type="client_credentials""#)
                && l.contains(r#"alg="EdDSA""#)),
            "{text}"
        );
        assert!(text.contains(SIGNING_DURATION), "{text}");
    }

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
