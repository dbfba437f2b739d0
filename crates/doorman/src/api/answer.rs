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

/// Reads the whole body, refusing more than `limit` bytes (413) as soon as the limit is
/// crossed. What the client is still sending is read and dropped after the answer, while the
/// connection lingers (`serve::linger`), so the 413 isn't lost to a connection reset.
pub async fn read_body(mut body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut kept = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| ApiError::PayloadTooLarge)?.into_data() else {
            continue; // trailers
        };
        if kept.len().saturating_add(data.len()) > limit {
            return Err(ApiError::PayloadTooLarge);
        }
        kept.extend_from_slice(&data);
    }
    Ok(kept.freeze())
}

/// A view's successful answer.
pub struct Answer {
    /// Borrowed for an answer that never changes (`/hello/`'s), so it isn't built per request.
    pub body: std::borrow::Cow<'static, Value>,
    /// The body carries tokens: `Cache-Control: no-store` keeps them out of caches.
    pub carries_tokens: bool,
    /// 200, or 201 for a view that created something.
    pub status: StatusCode,
}

impl Answer {
    pub fn plain(body: Value) -> Answer {
        Answer {
            body: std::borrow::Cow::Owned(body),
            carries_tokens: false,
            status: StatusCode::OK,
        }
    }

    pub fn tokens(body: Value) -> Answer {
        Answer {
            body: std::borrow::Cow::Owned(body),
            carries_tokens: true,
            status: StatusCode::OK,
        }
    }

    /// An answer carrying a user's data (sessions, accounts, audit events): never cached,
    /// like tokens.
    pub fn private(body: Value) -> Answer {
        Answer::tokens(body)
    }

    /// 201 with what was created, carrying a user's data like [`Answer::private`].
    pub fn created(body: Value) -> Answer {
        Answer {
            status: StatusCode::CREATED,
            ..Answer::private(body)
        }
    }

    /// An answer made once, for every request.
    pub fn fixed(body: &'static Value) -> Answer {
        Answer {
            body: std::borrow::Cow::Borrowed(body),
            carries_tokens: false,
            status: StatusCode::OK,
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
            let mut response = render(answer.status, &answer.body, indent);
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
