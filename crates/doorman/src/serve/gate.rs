//! Every request's way through doorman, as one hyper service per connection: the edge (request
//! id, sensitive headers, security headers, access log and metrics), the concurrency limit (503
//! with `Retry-After` at once when every slot is busy, never a queue), the deadline (503), and
//! panics turned into JSON 500s, around the router.
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
use std::sync::atomic::{AtomicUsize, Ordering};
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
use super::linger::Linger;
use crate::api::error::ApiError;

/// The application every listener serves: the router and what runs around it. Cloned per
/// connection (one reference count).
#[derive(Clone)]
pub struct App(Arc<Shared>);

struct Shared {
    router: Router,
    /// Where requests are counted and logged; `None` on the admin listener.
    observed: Option<Observed>,
    /// The concurrency limit and the deadline; `None` on the admin listener.
    limits: Option<Limits>,
    /// Larger announced bodies are refused from the head (413); `u64::MAX` on the admin
    /// listener.
    max_body_bytes: u64,
}

struct Limits {
    in_flight: AtomicUsize,
    max_in_flight: usize,
    timeout: Duration,
}

impl App {
    /// The API listener's application: every request counted and logged, at most
    /// `max_in_flight` at once (`0` counts as 1), each answered within `timeout`.
    pub fn new(router: Router, observed: Observed, max_in_flight: usize, timeout: Duration) -> App {
        App(Arc::new(Shared {
            router,
            observed: Some(observed),
            limits: Some(Limits {
                in_flight: AtomicUsize::new(0),
                max_in_flight: max_in_flight.max(1),
                timeout,
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

    /// The admin listener's: the edge's headers and the panic catcher only.
    pub fn admin(router: Router) -> App {
        App(Arc::new(Shared {
            router,
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
            linger: Linger::default(),
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
    /// Shared with the connection's socket: whether it lingers when closed.
    linger: Linger,
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
    /// What the connection's socket reads to know whether to linger when closed.
    pub fn linger(&self) -> Linger {
        self.linger.clone()
    }

    fn handle(&self, mut request: Request<Body>) -> Answer {
        let started = Instant::now();
        let shared = Arc::clone(&self.app.0);
        self.linger.expect_body(framing::announces_body(&request));
        let version = request.version();
        let refusal = framing::check(&request, shared.max_body_bytes).err();
        let request_id = edge::before(request.headers_mut());
        let seen = shared
            .observed
            .as_ref()
            .map(|o| o.see(&mut request, self.peer, started));
        let router = shared.router.clone();
        let hsts = self.hsts;
        Box::pin(async move {
            // A request refused from its head takes no slot.
            let admitted = match refusal {
                Some(refusal) => Err(framing::refused(refusal, version)),
                None => Ok(shared.limits.as_ref().map(Slot::take)),
            };
            let mut response = match admitted {
                Err(answer) => answer,
                Ok(Some(None)) => refused(Refusal::Overloaded),
                Ok(slot) => {
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

/// A request's place among those handled at once, given back when dropped.
struct Slot<'a> {
    limits: &'a Limits,
}

impl Slot<'_> {
    /// A free slot, or `None` when every one is busy.
    fn take(limits: &Limits) -> Option<Slot<'_>> {
        limits
            .in_flight
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n < limits.max_in_flight).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot { limits })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.limits.in_flight.fetch_sub(1, Ordering::Release);
    }
}

enum Refusal {
    /// Every slot busy.
    Overloaded,
    /// The deadline passed.
    Late,
}

/// 503 JSON, with `Retry-After` so well-behaved clients back off.
fn refused(why: Refusal) -> Response {
    let (detail, retry_after) = match why {
        Refusal::Late => ("The request took too long; try again later.", "5"),
        Refusal::Overloaded => (doorman_guard::UNAVAILABLE_DETAIL, "1"),
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
    use axum::routing::get;
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
        App::new(router, observed, max_in_flight, timeout)
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
