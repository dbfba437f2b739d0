//! The one layer every request passes first and every response last: request headers that
//! must not be printed are marked sensitive, the request gets an `X-Request-Id` (the client's
//! or proxy's own, else a new UUID) that its response echoes, every response gets the security
//! headers, and on the API listener each request is counted and logged.
//!
//! One hand-written service instead of a tower-http layer per job: each `Router::layer` costs
//! a boxed service clone and a boxed future per request, and eight of them were a measurable
//! share of `/hello/`'s time.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::Request;
use http::header::{self, Entry};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::access::Observed;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers every response carries (nginx's usual `add_header` set): no MIME sniffing, no
/// referrer leaks, no framing, and a CSP that lets nothing load (doorman serves JSON). A
/// response that sets one itself keeps its own.
const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
];

/// Request headers whose values debugging output must hide.
const SENSITIVE: [HeaderName; 2] = [header::AUTHORIZATION, header::COOKIE];

#[derive(Clone)]
pub struct EdgeLayer {
    observed: Option<Observed>,
}

impl EdgeLayer {
    /// `observed`: where to count and log requests; `None` (the admin listener) for neither.
    pub fn new(observed: Option<Observed>) -> EdgeLayer {
        EdgeLayer { observed }
    }
}

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            observed: self.observed.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    observed: Option<Observed>,
}

impl<S, B> tower::Service<Request> for Edge<S>
where
    S: tower::Service<Request, Response = http::Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: 'static,
{
    type Response = http::Response<B>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<B>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        mark_sensitive(request.headers_mut());
        let request_id = request_id(request.headers_mut());
        let observed = self.observed.clone();
        let seen = observed.as_ref().map(|o| o.see(&mut request, started));
        let answer = self.inner.call(request);
        Box::pin(async move {
            let Ok(mut response) = answer.await;
            let headers = response.headers_mut();
            for (name, value) in SECURITY_HEADERS {
                if let Entry::Vacant(entry) = headers.entry(name) {
                    entry.insert(HeaderValue::from_static(value));
                }
            }
            if let Some(id) = &request_id
                && let Entry::Vacant(entry) = headers.entry(REQUEST_ID)
            {
                entry.insert(id.clone());
            }
            if let (Some(observed), Some(seen)) = (observed, seen) {
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

fn mark_sensitive(headers: &mut HeaderMap) {
    for name in SENSITIVE {
        if let Entry::Occupied(mut entry) = headers.entry(name) {
            for value in entry.iter_mut() {
                value.set_sensitive(true);
            }
        }
    }
}

/// The request's id: the one it came with, else a new UUID (put on the request too, so the
/// handlers see the same one).
fn request_id(headers: &mut HeaderMap) -> Option<HeaderValue> {
    if let Some(id) = headers.get(REQUEST_ID) {
        return Some(id.clone());
    }
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    let id = HeaderValue::from_str(id).ok()?;
    headers.insert(REQUEST_ID, id.clone());
    Some(id)
}
