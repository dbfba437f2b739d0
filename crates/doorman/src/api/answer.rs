//! What every view shares: DRF's negotiation, reading a bounded body, the JSON rendering and
//! DRF's `finalize_response`. Below the handlers and above nothing of doorman's but the error
//! type, so the server's gate renders its own answers with it too.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

use super::error::ApiError;
pub use super::render::render;

/// DRF's content negotiation: the `?format=` override (404 for a format other than JSON),
/// then the Accept header (406). Returns the indent asked for.
pub fn negotiate(
    headers: &http::HeaderMap,
    query: Option<&str>,
) -> Result<Option<usize>, doorman_drf::DrfError> {
    doorman_drf::format_override(query)?;
    doorman_drf::negotiate(headers.get(header::ACCEPT))
}

/// How much of an oversized body is still read, and thrown away, before the 413 goes out.
/// Closing a connection with unread data makes the kernel reset it, and the client (or nginx,
/// which then answers 502) may see the reset instead of the 413. Beyond this much the
/// connection is closed anyway; `request_timeout` bounds the time spent.
const DRAINED_AFTER_LIMIT: usize = 1024 * 1024;

/// Reads the whole body, refusing more than `limit` bytes (413).
pub async fn read_body(mut body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| ApiError::PayloadTooLarge)?.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen <= limit {
            kept.extend_from_slice(&data);
        } else if seen > limit.saturating_add(DRAINED_AFTER_LIMIT) {
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(kept.freeze())
}

/// A view's successful answer.
pub struct Answer {
    /// Borrowed for an answer that never changes (`/hello/`'s), so it isn't built per request.
    pub body: std::borrow::Cow<'static, Value>,
    /// The body carries tokens: `Cache-Control: no-store` keeps them out of caches.
    pub carries_tokens: bool,
}

impl Answer {
    pub fn plain(body: Value) -> Answer {
        Answer {
            body: std::borrow::Cow::Owned(body),
            carries_tokens: false,
        }
    }

    pub fn tokens(body: Value) -> Answer {
        Answer {
            body: std::borrow::Cow::Owned(body),
            carries_tokens: true,
        }
    }

    /// An answer made once, for every request.
    pub fn fixed(body: &'static Value) -> Answer {
        Answer {
            body: std::borrow::Cow::Borrowed(body),
            carries_tokens: false,
        }
    }
}

/// DRF's `finalize_response`: render the answer or the error, and set the headers every
/// response of a view gets (`Allow`; `WWW-Authenticate` on 401).
pub fn finish(
    result: Result<Answer, ApiError>,
    indent: Option<usize>,
    allow: &'static str,
    www_authenticate: &str,
) -> Response {
    let mut response = match result {
        Ok(answer) => {
            let mut response = render(StatusCode::OK, &answer.body, indent);
            if answer.carries_tokens {
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            response
        }
        Err(error) => {
            let mut response = render(error.status(), &error.body(), indent);
            doorman_guard::add_challenge(&mut response, www_authenticate);
            super::error::add_retry_after(&mut response, &error);
            response
        }
    };
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}
