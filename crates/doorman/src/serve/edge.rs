//! What every request meets first and every response last: request headers that must not be
//! printed are marked sensitive, the request gets an `X-Request-Id` (the client's or proxy's
//! own, else a new UUID) that its response echoes, and every response gets the security
//! headers. [`super::gate`] runs these around every request.
//!
//! Plain functions instead of a tower-http layer per job: each `Router::layer` costs a boxed
//! service clone and a boxed future per request, and eight of them were a measurable share of
//! `/hello/`'s time.

use http::header::{self, Entry};
use http::{HeaderMap, HeaderName, HeaderValue};

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

/// What the edge does to a request on its way in: marks the headers that must not be printed,
/// and gives the request its id (returned, for the response and the log).
pub fn before(headers: &mut HeaderMap) -> Option<HeaderValue> {
    mark_sensitive(headers);
    request_id(headers)
}

/// What it does to every response on its way out: the security headers and the request id,
/// unless the response set them itself.
pub fn after(headers: &mut HeaderMap, request_id: Option<&HeaderValue>) {
    for (name, value) in SECURITY_HEADERS {
        if let Entry::Vacant(entry) = headers.entry(name) {
            entry.insert(HeaderValue::from_static(value));
        }
    }
    if let Some(id) = request_id
        && let Entry::Vacant(entry) = headers.entry(REQUEST_ID)
    {
        entry.insert(id.clone());
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
