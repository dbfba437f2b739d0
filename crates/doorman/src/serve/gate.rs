//! Every request's way through doorman, as one hyper service per connection: the edge (request
//! id, sensitive headers, security headers, access log and metrics), the wait for the body
//! (408 past `body_read_timeout`; no slot is held meanwhile), the concurrency limit (503 with
//! `Retry-After` at once when every slot is busy, never a queue), the deadline (503), and
//! panics turned into JSON 500s, around the router.
//!
//! Requests draw on one of three budgets, by the endpoint's declaration ([`Budget`]): logins
//! take their slot from the hashing budget (password hash workers plus a short queue), never
//! from the general slots, so a login flood sheds logins and leaves the token checks' slots
//! alone; the health checks and the metrics take no slot at all, so no flood sheds them.
//!
//! One service instead of tower's `LoadShed`, `ConcurrencyLimit`, `Timeout`, tower-http's
//! `CatchPanic` and hyper-util's `TowerToHyperService` around them: that stack was cloned for
//! every request (boxed, with a semaphore handle holding a boxed future of its own), and each
//! clone and drop wrote reference counts shared by every core. Here a request takes one slot
//! in a counter and one clone of the router, as a bare axum server does.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use http::{HeaderValue, Request, StatusCode, header};
use hyper::body::Incoming;
use tower::ServiceExt;

use super::access::Observed;
use super::edge;
use super::framing;
use super::heads::Heads;
use super::linger::Linger;
use crate::api::error::ApiError;

/// The application every listener serves: the router and what runs around it. Cloned per
/// connection (one reference count).
#[derive(Clone)]
pub struct App(Arc<Shared>);

struct Shared {
    router: Router,
    /// Which budget each path's requests draw on; any other path: the general slots.
    budgets: std::collections::HashMap<&'static str, Budget>,
    /// Where requests are counted and logged; `None` on the admin listener.
    observed: Option<Observed>,
    /// The concurrency limit and the deadline; `None` on the admin listener.
    limits: Option<Limits>,
    /// Larger announced bodies are refused from the head (413); `u64::MAX` on the admin
    /// listener.
    max_body_bytes: u64,
}

/// What every request on the API listener runs under.
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    /// Requests answered at once (`0` counts as 1); a request counts once its body is in.
    pub max_in_flight: usize,
    /// How long answering one may take, once its body is in.
    pub timeout: Duration,
    /// The largest body a view reads: a body is waited for before the slot up to this size.
    pub max_body_bytes: usize,
    /// How long a body may take to arrive once the head is in.
    pub body_read_timeout: Duration,
    /// Logins answered at once (`0` counts as 1): the password hash workers plus the queue a
    /// login may wait in for one (see [`Budget::Hashing`]).
    pub max_logins: usize,
}

/// Which slots an endpoint's requests take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// One of the `max_concurrent_requests` slots.
    General,
    /// One of the hashing budget's slots (`password_hash_workers + login_queue_max`), not a
    /// general one. A login spends most of its time waiting for a hash worker; were it to do
    /// so in a general slot, a flood of logins would hold every slot and token checks would
    /// be shed behind them. A separate pool instead of reserving part of the general one: the
    /// pool's size is what bounds a login's wait (at most `login_queue_max / workers` hashes
    /// ahead of it), and a login beyond it is refused at once rather than queued for seconds.
    Hashing,
    /// No slot: the health checks and the metrics are cheap, and a load balancer that saw them
    /// shed would take a busy instance for a dead one.
    Exempt,
}

struct Limits {
    in_flight: AtomicUsize,
    max_in_flight: usize,
    /// Logins being answered, out of `max_logins` (the hashing budget).
    logins: AtomicUsize,
    max_logins: usize,
    timeout: Duration,
    max_body_bytes: usize,
    body_read_timeout: Duration,
    /// Body bytes held by requests, theirs until they are answered.
    buffered: AtomicUsize,
    /// At most this many: `max_in_flight` bodies of the largest size, the memory the limit
    /// bounded when the slot was taken before the body was read.
    max_buffered: usize,
}

impl App {
    /// The API listener's application: every request counted and logged, its body waited for
    /// within `body_read_timeout` without holding a slot, then at most `max_in_flight` at
    /// once, each answered within `timeout`.
    pub fn new(router: Router, observed: Observed, limits: RequestLimits) -> App {
        let max_in_flight = limits.max_in_flight.max(1);
        App(Arc::new(Shared {
            router,
            budgets: std::collections::HashMap::new(),
            observed: Some(observed),
            limits: Some(Limits {
                in_flight: AtomicUsize::new(0),
                max_in_flight,
                logins: AtomicUsize::new(0),
                max_logins: limits.max_logins.max(1),
                timeout: limits.timeout,
                max_body_bytes: limits.max_body_bytes,
                body_read_timeout: limits.body_read_timeout,
                buffered: AtomicUsize::new(0),
                max_buffered: max_in_flight.saturating_mul(limits.max_body_bytes.max(1)),
            }),
            max_body_bytes: u64::MAX,
        }))
    }

    /// The same application, refusing announced bodies over `max_body_bytes` from the head.
    /// Call before the first connection.
    pub fn with_max_body_bytes(mut self, max_body_bytes: usize) -> App {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.max_body_bytes = u64::try_from(max_body_bytes).unwrap_or(u64::MAX);
        }
        self
    }

    /// The same application, with each listed path's requests drawing on its budget instead of
    /// the general slots. Call before the first connection.
    pub fn with_budgets(
        mut self,
        budgets: impl IntoIterator<Item = (&'static str, Budget)>,
    ) -> App {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.budgets.extend(budgets);
        }
        self
    }

    /// The admin listener's: the edge's headers and the panic catcher only.
    pub fn admin(router: Router) -> App {
        App(Arc::new(Shared {
            router,
            budgets: std::collections::HashMap::new(),
            observed: None,
            limits: None,
            max_body_bytes: u64::MAX,
        }))
    }

    /// The service for one connection: `peer` is the TCP peer (`None` on a Unix socket), and
    /// `hsts` adds `Strict-Transport-Security` to every response (connections over TLS).
    pub fn connection(&self, peer: Option<SocketAddr>, hsts: bool) -> Gate {
        Gate {
            app: self.clone(),
            peer,
            hsts,
            activity: None,
            linger: Linger::default(),
            heads: Heads::default(),
        }
    }

    /// Answers one request as a connection would.
    #[cfg(test)]
    async fn answer(&self, request: Request<Body>, peer: Option<SocketAddr>) -> Response {
        let Ok(response) = self.connection(peer, false).handle(request).await;
        response
    }
}

/// One connection's service (see [`App::connection`]).
pub struct Gate {
    app: App,
    peer: Option<SocketAddr>,
    hsts: bool,
    /// Where the connection's deadlines see its requests come and go, when it has them.
    activity: Option<Arc<Activity>>,
    /// Shared with the connection's socket: whether it lingers when closed.
    linger: Linger,
    /// Shared with the connection's head scanner, when it has one: which request carried
    /// both `Content-Length` and `Transfer-Encoding`.
    heads: Heads,
}

/// What a connection's idle deadlines need to know about its requests: whether any has come
/// yet, how many are being answered, and when the last one ended. hyper's header deadline
/// covers HTTP/1 alone; the listener uses this for connections that may speak HTTP/2.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    any: AtomicBool,
    /// Told when the first request comes, which may bring the deadline forward.
    first: tokio::sync::Notify,
    in_flight: AtomicUsize,
    /// When the last request ended (or [`Activity::touch`] was called), in milliseconds after
    /// `opened`.
    last: AtomicU64,
}

impl Activity {
    /// A connection opened at `opened`, with no request yet.
    pub fn new(opened: Instant) -> Activity {
        Activity {
            opened,
            any: AtomicBool::new(false),
            first: tokio::sync::Notify::new(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
        }
    }

    /// When the connection will have been quiet too long: `first` after it opened while no
    /// request has come, else `idle` after the last one ended; `None` while one is answered.
    pub fn quiet_at(&self, first: Duration, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if !self.any.load(Ordering::Acquire) {
            return Some(self.opened + first);
        }
        let last = Duration::from_millis(self.last.load(Ordering::Acquire));
        Some(self.opened + last + idle)
    }

    /// Whether a request has come.
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Completes when the first request has come.
    pub async fn first_request(&self) {
        if !self.any() {
            self.first.notified().await;
        }
    }

    /// Counts from now, as if a request had just ended.
    pub fn touch(&self) {
        self.any.store(true, Ordering::Release);
        self.mark_end();
    }

    fn mark_end(&self) {
        let since = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(since, Ordering::AcqRel);
    }
}

/// A request being answered on a connection with [`Activity`]; it ends when dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: Arc<Activity>) -> Busy {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        if !activity.any.swap(true, Ordering::AcqRel) {
            activity.first.notify_one();
        }
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.mark_end();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Gate {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Answer {
        self.handle(request.map(Body::new))
    }
}

impl Gate {
    /// The same service, telling `activity` when requests come and go.
    pub fn watched(self, activity: Arc<Activity>) -> Gate {
        Gate {
            activity: Some(activity),
            ..self
        }
    }

    /// What the connection's socket reads to know whether to linger when closed.
    pub fn linger(&self) -> Linger {
        self.linger.clone()
    }

    /// What the connection's head scanner marks (see [`super::heads`]).
    pub fn heads(&self) -> Heads {
        self.heads.clone()
    }

    fn handle(&self, mut request: Request<Body>) -> Answer {
        let busy = self.activity.clone().map(Busy::begin);
        let started = Instant::now();
        let shared = Arc::clone(&self.app.0);
        self.linger.expect_body(framing::announces_body(&request));
        let version = request.version();
        let both_lengths = version <= http::Version::HTTP_11 && self.heads.next_has_both_lengths();
        let refusal = if both_lengths {
            Some(framing::BOTH_LENGTHS)
        } else {
            framing::check(&request, shared.max_body_bytes).err()
        };
        let request_id = edge::before(request.headers_mut());
        let seen = shared
            .observed
            .as_ref()
            .map(|o| o.see(&mut request, self.peer, started));
        let router = shared.router.clone();
        let hsts = self.hsts;
        Box::pin(async move {
            let _busy = busy;
            // A request refused from its head reads no body and takes no slot.
            let arrived = match refusal {
                Some(refusal) => Err(framing::refused(refusal, version)),
                None => match shared.limits.as_ref() {
                    Some(limits) => match arrive(request, limits).await {
                        Ok((request, held)) => Ok((request, Some(held))),
                        Err(Refusal::SlowBody) => Err(too_slow(version)),
                        Err(refusal) => Err(refused(refusal)),
                    },
                    None => Ok((request, None)),
                },
            };
            let mut response = match arrived {
                Err(answer) => answer,
                Ok((request, _held)) => answer(&shared, router, request).await,
            };
            edge::after(response.headers_mut(), request_id.as_ref());
            if hsts {
                response.headers_mut().insert(
                    header::STRICT_TRANSPORT_SECURITY,
                    HeaderValue::from_static("max-age=31536000; includeSubDomains"),
                );
            }
            if let (Some(observed), Some(seen)) = (&shared.observed, seen) {
                let none = HeaderValue::from_static("-");
                observed.record(
                    seen,
                    response.status().as_u16(),
                    request_id.as_ref().unwrap_or(&none),
                );
            }
            Ok(response)
        })
    }
}

/// The router's answer, within the concurrency limit and the deadline (when the listener has
/// them), with a panic turned into a JSON 500.
async fn answer(shared: &Shared, router: Router, request: Request<Body>) -> Response {
    let budget = shared
        .budgets
        .get(request.uri().path())
        .copied()
        .unwrap_or(Budget::General);
    let slot = match shared.limits.as_ref().map(|l| Slot::take(l, budget)) {
        Some(Err(refusal)) => {
            if let (Refusal::LoginsBusy, Some(observed)) = (&refusal, &shared.observed) {
                observed.metrics().login_shed();
            }
            return refused(refusal);
        }
        Some(Ok(slot)) => slot,
        None => None,
    };
    let timeout = shared.limits.as_ref().map(|l| l.timeout);
    let answer = AssertUnwindSafe(router.oneshot(request)).catch_unwind();
    let answer = match timeout {
        Some(timeout) => tokio::time::timeout(timeout, answer).await,
        None => Ok(answer.await),
    };
    drop(slot);
    match answer {
        Ok(Ok(Ok(response))) => response,
        Ok(Ok(Err(never))) => match never {},
        Ok(Err(panic)) => {
            tracing::error!(
                panic = panic_message(panic.as_ref()),
                "a request handler panicked"
            );
            ApiError::Internal.into_response()
        }
        Err(_elapsed) => {
            tracing::warn!("a request ran past request_timeout");
            refused(Refusal::Late)
        }
    }
}

/// What a panic said, for the log line: its message when it has one (`panic!` with text,
/// `expect`), else a placeholder.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(no message)"
    }
}

/// A request's place among those handled at once in its budget, given back when dropped.
struct Slot<'a> {
    taken: &'a AtomicUsize,
}

impl Slot<'_> {
    /// A free slot of `budget` (`None` for a budget without slots), or the refusal when every
    /// one is busy.
    fn take(limits: &Limits, budget: Budget) -> Result<Option<Slot<'_>>, Refusal> {
        let (taken, max, refusal) = match budget {
            Budget::Exempt => return Ok(None),
            Budget::General => (&limits.in_flight, limits.max_in_flight, Refusal::Overloaded),
            Budget::Hashing => (&limits.logins, limits.max_logins, Refusal::LoginsBusy),
        };
        taken
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .map(|_| Some(Slot { taken }))
            .map_err(|_| refusal)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.taken.fetch_sub(1, Ordering::Release);
    }
}

/// Body bytes a request holds until it is answered, given back when dropped.
struct Held<'a> {
    limits: &'a Limits,
    bytes: usize,
}

impl Held<'_> {
    /// Takes `n` more bytes from the budget, or refuses the request when it is spent.
    fn take(&mut self, n: usize) -> Result<(), Refusal> {
        let max = self.limits.max_buffered;
        self.limits
            .buffered
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |held| {
                held.checked_add(n).filter(|total| *total <= max)
            })
            .map_err(|_| Refusal::Overloaded)?;
        self.bytes += n;
        Ok(())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.limits.buffered.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Waits for a request's body before the request takes a slot, so that a client that sends a
/// head and then its body slowly, or never, holds its connection but no slot: the body must be
/// in within `body_read_timeout` (408 past it). A body up to `max_body_bytes` is handed on
/// whole; a larger one is handed on as it comes once that much is in, and one whose
/// `Content-Length` says it is larger isn't waited for at all (nor is `100 Continue` sent for
/// it): the view refuses both with 413. The bytes waiting come out of a budget shared by every
/// request (503 when it is spent), so the memory bodies take stays bounded.
async fn arrive(
    request: Request<Body>,
    limits: &Limits,
) -> Result<(Request<Body>, Held<'_>), Refusal> {
    use http_body::Body as _;
    use http_body_util::BodyExt;
    let mut held = Held { limits, bytes: 0 };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = declared.is_some_and(|n| n > limits.max_body_bytes as u64);
    if request.body().is_end_stream() || too_large {
        return Ok((request, held));
    }
    let (parts, mut body) = request.into_parts();
    let deadline = tokio::time::Instant::now() + limits.body_read_timeout;
    let mut kept = bytes::BytesMut::new();
    let rest = loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_elapsed) => return Err(Refusal::SlowBody),
            Ok(None) => break None,
            // Handed on for the view to see, after what came before it.
            Ok(Some(Err(e))) => {
                break Some(Body::from_stream(futures_util::stream::iter([Err::<
                    bytes::Bytes,
                    _,
                >(
                    e
                )])));
            }
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers
                };
                held.take(data.len())?;
                kept.extend_from_slice(&data);
                if kept.len() > limits.max_body_bytes {
                    break Some(body);
                }
            }
        }
    };
    let kept = kept.freeze();
    let body = match rest {
        None => Body::from(kept),
        Some(rest) => {
            use futures_util::StreamExt;
            let first = futures_util::stream::iter([Ok::<_, axum::Error>(kept)]);
            Body::from_stream(first.chain(rest.into_data_stream()))
        }
    };
    Ok((Request::from_parts(parts, body), held))
}

enum Refusal {
    /// Every slot busy, or the memory for bodies spent.
    Overloaded,
    /// Every slot of the hashing budget busy: a login would wait too long for a hash worker.
    LoginsBusy,
    /// The deadline passed.
    Late,
    /// The body didn't arrive in time.
    SlowBody,
}

/// 408 JSON for a body that didn't come in time (nginx's `client_body_timeout` answer). An
/// HTTP/1 connection is closed after it: the body's unread rest would be read as the next
/// request.
fn too_slow(version: http::Version) -> Response {
    let mut response = crate::api::render::render(
        StatusCode::REQUEST_TIMEOUT,
        &serde_json::json!({ "detail": "The request body did not arrive in time." }),
        None,
    );
    if version < http::Version::HTTP_2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// 503 JSON, with `Retry-After` so well-behaved clients back off.
fn refused(why: Refusal) -> Response {
    let (detail, retry_after) = match why {
        Refusal::Late => ("The request took too long; try again later.", "5"),
        // The same answer as any shed request: the client can't tell the budgets apart, and
        // needn't. 503 rather than 429: the server is short of capacity, the client did
        // nothing wrong (the throttle's 429s say that).
        Refusal::Overloaded | Refusal::LoginsBusy => (doorman_guard::UNAVAILABLE_DETAIL, "1"),
        Refusal::SlowBody => return too_slow(http::Version::HTTP_2),
    };
    let mut response = crate::api::render::render(
        StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({ "detail": detail }),
        None,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(retry_after));
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use axum::routing::{get, post};
    use http::HeaderMap;
    use tokio::sync::watch;

    use super::*;
    use crate::metrics::Metrics;
    use crate::serve::TrustedProxies;

    /// `/ok/` answers, `/panic/` panics, `/hold/` waits until `release` turns true.
    fn gate(max_in_flight: usize, timeout: Duration, release: watch::Receiver<bool>) -> App {
        let router = Router::new()
            .route("/ok/", get(|| async { "ok" }))
            .route("/panic/", get(panics))
            .route(
                "/echo/",
                post(|body: bytes::Bytes| async move { body.len().to_string() }),
            )
            .route(
                "/hold/",
                get(move || {
                    let mut release = release.clone();
                    async move {
                        let _ = release.wait_for(|go| *go).await;
                        "held"
                    }
                }),
            );
        let observed = Observed::new(TrustedProxies::new(Vec::new()), Metrics::new(), vec![]);
        App::new(
            router,
            observed,
            RequestLimits {
                max_in_flight,
                timeout,
                max_body_bytes: 1024,
                body_read_timeout: Duration::from_secs(5),
                max_logins: 1,
            },
        )
    }

    async fn panics() -> &'static str {
        panic!("a handler bug")
    }

    fn get_request(path: &str) -> Request<Body> {
        Request::get(path)
            .header(header::HOST, "doorman")
            .body(Body::empty())
            .unwrap()
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn assert_edge_headers(headers: &HeaderMap) {
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert!(headers.contains_key("x-request-id"));
    }

    /// A handler's panic is a JSON 500 with the edge's headers, and its slot is given back.
    #[tokio::test]
    async fn a_panic_is_a_json_500_and_frees_its_slot() {
        let app = gate(1, Duration::from_secs(5), watch::channel(false).1);
        let response = app.answer(get_request("/panic/"), None).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_edge_headers(response.headers());
        assert!(body(response).await.starts_with("{\"detail\":"));
        let response = app.answer(get_request("/ok/"), None).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// Past the deadline: 503 JSON with `Retry-After: 5`, and the slot is given back.
    #[tokio::test]
    async fn a_late_request_is_a_503_and_frees_its_slot() {
        let (_release, released) = watch::channel(false);
        let app = gate(1, Duration::from_millis(20), released);
        let response = app.answer(get_request("/hold/"), None).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "5");
        assert_edge_headers(response.headers());
        assert_eq!(
            body(response).await,
            r#"{"detail":"The request took too long; try again later."}"#
        );
        let response = app.answer(get_request("/ok/"), None).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// With every slot busy a request is refused at once (503, `Retry-After: 1`), not queued;
    /// once a slot is free again the next one is served.
    #[tokio::test]
    async fn a_request_beyond_the_limit_is_refused_at_once() {
        let (release, released) = watch::channel(false);
        let app = gate(2, Duration::from_secs(30), released);
        let held: Vec<_> = (0..2)
            .map(|_| {
                tokio::spawn({
                    let app = app.clone();
                    async move { app.answer(get_request("/hold/"), None).await }
                })
            })
            .collect();
        // Wait until both hold their slot.
        while app
            .0
            .limits
            .as_ref()
            .unwrap()
            .in_flight
            .load(Ordering::Acquire)
            < 2
        {
            tokio::task::yield_now().await;
        }
        let refused = tokio::time::timeout(
            Duration::from_secs(5),
            app.answer(get_request("/ok/"), None),
        )
        .await
        .unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()["retry-after"], "1");
        assert_edge_headers(refused.headers());
        assert_eq!(
            body(refused).await,
            r#"{"detail":"Service temporarily unavailable, try again later."}"#
        );
        release.send_replace(true);
        for held in held {
            assert_eq!(body(held.await.unwrap()).await, "held");
        }
        assert_eq!(
            app.0
                .limits
                .as_ref()
                .unwrap()
                .in_flight
                .load(Ordering::Acquire),
            0
        );
        let response = app.answer(get_request("/ok/"), None).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// Logins draw on the hashing budget alone: with it spent a login is refused at once
    /// (503, `Retry-After: 1`) while the general slots still answer; with the general slots
    /// spent a login and an exempt path still answer. Every slot is given back.
    #[tokio::test]
    async fn logins_and_exempt_paths_do_not_take_the_general_slots() {
        let (release, released) = watch::channel(false);
        let router = Router::new()
            .route("/ok/", get(|| async { "ok" }))
            .route("/healthz", get(|| async { "alive" }))
            .route(
                "/login/",
                get(move || {
                    let mut release = released.clone();
                    async move {
                        let _ = release.wait_for(|go| *go).await;
                        "logged in"
                    }
                }),
            );
        let observed = Observed::new(TrustedProxies::new(Vec::new()), Metrics::new(), vec![]);
        let limits = RequestLimits {
            max_in_flight: 1,
            timeout: Duration::from_secs(30),
            max_body_bytes: 1024,
            body_read_timeout: Duration::from_secs(5),
            max_logins: 1,
        };
        let app = App::new(router, observed, limits)
            .with_budgets([("/login/", Budget::Hashing), ("/healthz", Budget::Exempt)]);
        let held = tokio::spawn({
            let app = app.clone();
            async move { app.answer(get_request("/login/"), None).await }
        });
        let state = app.0.limits.as_ref().unwrap();
        while state.logins.load(Ordering::Acquire) < 1 {
            tokio::task::yield_now().await;
        }
        let shed = app.answer(get_request("/login/"), None).await;
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()["retry-after"], "1");
        assert_eq!(
            body(shed).await,
            r#"{"detail":"Service temporarily unavailable, try again later."}"#
        );
        assert_eq!(state.in_flight.load(Ordering::Acquire), 0);
        let ok = app.answer(get_request("/ok/"), None).await;
        assert_eq!(ok.status(), StatusCode::OK);
        // The one general slot taken: health still answers.
        state.in_flight.store(1, Ordering::Release);
        let refused = app.answer(get_request("/ok/"), None).await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        let health = app.answer(get_request("/healthz"), None).await;
        assert_eq!(body(health).await, "alive");
        state.in_flight.store(0, Ordering::Release);
        release.send_replace(true);
        assert_eq!(body(held.await.unwrap()).await, "logged in");
        assert_eq!(state.logins.load(Ordering::Acquire), 0);
    }

    /// A POST whose body is still coming, with `n` bytes already sent; the sender sends more.
    fn posting(n: usize) -> (Request<Body>, tokio::sync::mpsc::Sender<bytes::Bytes>) {
        let (more, rest) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
        more.try_send(bytes::Bytes::from(vec![b'x'; n])).unwrap();
        let stream = futures_util::stream::unfold(rest, |mut rest| async move {
            rest.recv()
                .await
                .map(|chunk| (Ok::<_, std::io::Error>(chunk), rest))
        });
        let request = Request::post("/echo/")
            .header(header::HOST, "doorman")
            .body(Body::from_stream(stream))
            .unwrap();
        (request, more)
    }

    /// A request whose body hasn't all come holds no slot: with the one slot free, a second
    /// request is answered meanwhile. The body bytes waiting are bounded (here by one slot
    /// times 1024 bytes): a second body that would go past it is refused with 503, and once
    /// the first is answered its bytes are free again.
    #[tokio::test]
    async fn a_body_on_its_way_holds_no_slot_and_bodies_waiting_are_bounded() {
        let app = gate(1, Duration::from_secs(5), watch::channel(false).1);
        let (first, more) = posting(600);
        let waiting = tokio::spawn({
            let app = app.clone();
            async move { app.answer(first, None).await }
        });
        let limits = app.0.limits.as_ref().unwrap();
        while limits.buffered.load(Ordering::Acquire) < 600 {
            tokio::task::yield_now().await;
        }
        assert_eq!(limits.in_flight.load(Ordering::Acquire), 0);
        let response = app.answer(get_request("/ok/"), None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let (second, _more) = posting(600);
        let response = app.answer(second, None).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        more.send(bytes::Bytes::from_static(b"yz")).await.unwrap();
        drop(more);
        let response = waiting.await.unwrap();
        assert_eq!(body(response).await, "602");
        assert_eq!(limits.buffered.load(Ordering::Acquire), 0);
        let (third, more) = posting(1000);
        drop(more);
        assert_eq!(body(app.answer(third, None).await).await, "1000");
    }

    /// The message the log line carries is read from the payload whichever way the panic was
    /// raised: static text, formatted text, or a payload that is not text at all.
    #[test]
    fn a_panics_message_is_read_from_its_payload() {
        let caught = std::panic::catch_unwind(|| panic!("static text")).unwrap_err();
        assert_eq!(panic_message(caught.as_ref()), "static text");
        let n = 7;
        let caught = std::panic::catch_unwind(move || panic!("formatted {n}")).unwrap_err();
        assert_eq!(panic_message(caught.as_ref()), "formatted 7");
        let caught = std::panic::catch_unwind(|| std::panic::panic_any(42)).unwrap_err();
        assert_eq!(panic_message(caught.as_ref()), "(no message)");
    }

    /// The admin listener's gate has no limit and no deadline, but the edge's headers.
    #[tokio::test]
    async fn the_admin_gate_adds_the_edge_headers_only() {
        let app = App::admin(Router::new().route("/ok/", get(|| async { "ok" })));
        let response = app.answer(get_request("/ok/"), None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_edge_headers(response.headers());
        assert!(app.0.limits.is_none() && app.0.observed.is_none());
    }
}
