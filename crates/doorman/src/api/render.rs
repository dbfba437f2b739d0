//! DRF's `JSONRenderer` answer: every JSON response doorman makes, views' and the gate's,
//! starts here.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

/// Headers a view's response usually ends up with: content type, `Allow`, `Cache-Control` or
/// `WWW-Authenticate`, four security headers and `X-Request-Id`.
const RESPONSE_HEADERS: usize = 10;

/// A JSON response rendered like DRF's `JSONRenderer` (compact, or indented on request).
pub fn render(status: StatusCode, body: &Value, indent: Option<usize>) -> Response {
    let mut response = Response::new(Body::from(doorman_drf::render_json(body, indent)));
    *response.status_mut() = status;
    // Room for this view's headers and the edge's security headers and request id at once,
    // instead of a reallocation halfway through them.
    response.headers_mut().reserve(RESPONSE_HEADERS);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
