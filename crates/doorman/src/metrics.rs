//! Prometheus metrics, served at `/metrics`. The recorder belongs to the application (no
//! process-global recorder), so several doorman instances in one process (as in the tests)
//! keep separate counts.
//!
//! Label values are bounded: routes are doorman's own paths (anything else is `other`),
//! statuses are numbers, rejection reasons come from a fixed list.

use std::sync::Arc;
use std::time::Duration;

use ::metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

const META: Metadata<'static> = Metadata::new("doorman", Level::INFO, Some("doorman::metrics"));

/// How often the latency samples recorded since the last upkeep are folded into their buckets
/// (see [`Metrics::keep_up`]).
pub const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Latency buckets, in seconds: from a cached verify (sub-millisecond) to a slow login.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    /// The request counter and latency histogram of each (method, route, status) seen so far,
    /// so that a request costs a map lookup, not label strings and two registrations. Bounded
    /// like the labels: methods and routes are fixed lists, statuses are numbers.
    /// Looked up without a lock or a clone: a read lock's count and the handles' `Arc`s are
    /// written by every request, on whichever core it runs.
    requests: Arc<RequestHandles>,
}

type RequestHandles = doorman_token::hot::HotCache<
    (&'static str, &'static str, u16),
    (::metrics::Counter, ::metrics::Histogram),
>;

/// More (method, route, status) combinations than doorman answers with; were there more, the
/// handles would be made again after the map is emptied, the counts kept by the recorder.
const REQUEST_HANDLES: usize = 4096;

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The method as a label: the standard ones by name, anything else `other` (a client picks
/// the method, and labels must stay a fixed set).
fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        Metrics {
            recorder: Arc::new(recorder),
            handle,
            requests: Arc::new(RequestHandles::new(REQUEST_HANDLES)),
        }
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> ::metrics::Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &META)
    }

    fn histogram(&self, name: &'static str, labels: Vec<Label>) -> ::metrics::Histogram {
        self.recorder
            .register_histogram(&Key::from_parts(name, labels), &META)
    }

    fn gauge(&self, name: &'static str, labels: Vec<Label>) -> ::metrics::Gauge {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &META)
    }

    /// One request answered: `route` is a doorman path or `other`.
    pub fn request(
        &self,
        method: &http::Method,
        route: &'static str,
        status: u16,
        latency: Duration,
    ) {
        let method = method_label(method);
        let key = (method, route, status);
        let seconds = latency.as_secs_f64();
        let counted = self.requests.read(&key, |(count, latency_histogram)| {
            count.increment(1);
            latency_histogram.record(seconds);
        });
        if counted.is_some() {
            return;
        }
        // A combination not seen before: its handles, kept for the next time.
        let labels = || {
            vec![
                Label::new("method", method),
                Label::new("route", route),
                Label::new("status", status.to_string()),
            ]
        };
        let count = self.counter("doorman_http_requests_total", labels());
        let latency_histogram = self.histogram("doorman_http_request_duration_seconds", labels());
        count.increment(1);
        latency_histogram.record(seconds);
        self.requests.insert(key, (count, latency_histogram), None);
    }

    /// Tokens handed out: `kind` is refresh, access or sliding.
    pub fn token_issued(&self, kind: &'static str) {
        self.counter(
            "doorman_tokens_issued_total",
            vec![Label::new("type", kind)],
        )
        .increment(1);
    }

    /// A successful refresh (or sliding refresh).
    pub fn token_refreshed(&self) {
        self.counter("doorman_tokens_refreshed_total", vec![])
            .increment(1);
    }

    /// A token refused, labelled by why.
    pub fn token_refused(&self, error: &doorman_token::TokenError) {
        use doorman_token::TokenError;
        let reason = match error {
            TokenError::Invalid => "invalid",
            TokenError::Expired | TokenError::ClaimExpired(_) => "expired",
            TokenError::Blacklisted => "blacklisted",
            TokenError::WrongType | TokenError::NoType => "wrong_type",
            TokenError::NoId | TokenError::MissingClaim(_) => "missing_claim",
        };
        self.token_rejected(reason);
    }

    /// A token refused, by a reason from a fixed list (expired, invalid, blacklisted, ...).
    pub fn token_rejected(&self, reason: &'static str) {
        self.counter(
            "doorman_tokens_rejected_total",
            vec![Label::new("reason", reason)],
        )
        .increment(1);
    }

    /// A rotated-out refresh token presented after the reuse grace window (its family revoked,
    /// or revoked before by an earlier replay).
    pub fn refresh_reuse_detected(&self) {
        self.counter("doorman_refresh_reuse_detected_total", vec![])
            .increment(1);
    }

    /// A rotated-out refresh token presented again inside the reuse grace window: `reissued`
    /// when answered with its rotation's successor, `refused` when that one was no longer live
    /// (or the token failed a refresh's other checks).
    pub fn refresh_replay(&self, outcome: &'static str) {
        self.counter(
            "doorman_refresh_replays_total",
            vec![Label::new("outcome", outcome)],
        )
        .increment(1);
    }

    pub fn login(&self, succeeded: bool) {
        let outcome = if succeeded { "succeeded" } else { "failed" };
        self.counter("doorman_logins_total", vec![Label::new("outcome", outcome)])
            .increment(1);
    }

    /// A prune that acted on the monotonic clock's time because the wall clock had jumped
    /// ahead (see `clock::TrustedTime`).
    pub fn prune_clock_ahead(&self) {
        self.counter("doorman_prune_clock_ahead_total", vec![])
            .increment(1);
    }

    /// A login refused by the login throttle before its password was checked.
    pub fn login_throttled(&self) {
        self.counter("doorman_logins_throttled_total", vec![])
            .increment(1);
    }

    /// The counter of `/hello/` user checks answered from `source`: `cache` or `database`.
    pub fn user_lookups(&self, source: &'static str) -> ::metrics::Counter {
        self.counter(
            "doorman_user_lookups_total",
            vec![Label::new("source", source)],
        )
    }

    /// The counter of PostgreSQL blacklist lookups answered from `source`: `memory` (the
    /// blacklist held in memory, or a "not blacklisted" answer kept) or `database`.
    pub fn blacklist_lookups(&self, source: &'static str) -> ::metrics::Counter {
        self.counter(
            "doorman_blacklist_lookups_total",
            vec![Label::new("source", source)],
        )
    }

    /// A password hash waited `wait` for a slot of the hashing pool.
    pub fn hash_waited(&self, wait: Duration) {
        self.histogram("doorman_password_hash_wait_seconds", vec![])
            .record(wait.as_secs_f64());
    }

    /// A login refused at once because the hashing budget was spent (503).
    pub fn login_shed(&self) {
        self.counter("doorman_logins_shed_total", vec![])
            .increment(1);
    }

    /// Hashes waiting for a slot right now.
    pub fn hash_queue(&self, depth: usize) {
        self.gauge("doorman_password_hash_queue_depth", vec![])
            .set(depth as f64);
    }

    /// Folds the histogram samples recorded so far into their buckets every `every`, for as
    /// long as it runs. The exporter keeps each sample until a scrape of `/metrics` or an
    /// upkeep drains it, and the recorder is built without the exporter's own upkeep task: an
    /// instance nobody scrapes grew by about 20 bytes per request, without end (10 MB per
    /// 500 000 requests at full load).
    pub async fn keep_up(self, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.handle.run_upkeep();
        }
    }

    /// The text exposition, with the database pool gauges brought up to date first.
    pub fn render(&self, pool: crate::store::PoolStats) -> String {
        self.gauge(
            "doorman_db_pool_connections",
            vec![Label::new("state", "open")],
        )
        .set(f64::from(pool.open));
        self.gauge(
            "doorman_db_pool_connections",
            vec![Label::new("state", "idle")],
        )
        .set(pool.idle as f64);
        self.gauge("doorman_db_pool_max_connections", vec![])
            .set(f64::from(pool.max));
        self.gauge("doorman_database_reachable", vec![])
            .set(if pool.reachable { 1.0 } else { 0.0 });
        self.counter("doorman_database_fast_failures_total", vec![])
            .absolute(pool.fast_failures);
        self.handle.render()
    }
}
