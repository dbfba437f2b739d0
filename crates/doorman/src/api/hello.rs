//! `GET /hello/`: the protected example view. DRF's order holds: content negotiation, then
//! authentication and permission (so `POST /hello/` without credentials is 401, not 405), then
//! the method. In the cookie mode the access cookie authenticates too (`cookies::caller`).

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use doorman_drf::ViewMetadata;
use http::{Method, Request};
use serde_json::json;

use super::answer::{Answer, finish, negotiate};
use super::cookies;
use super::endpoint::{Endpoint, Listener, always};
use super::error::ApiError;
use crate::state::AppState;

pub const ENDPOINTS: &[Endpoint] = &[Endpoint {
    path: "/hello/",
    allow: "GET, HEAD, OPTIONS",
    // The reference app's `HelloView`, which has no docstring.
    metadata: Some(ViewMetadata {
        name: "Hello",
        description: "",
        post_fields: None,
    }),
    metrics_label: "/hello/",
    listener: Listener::Api,
    compressed: false,
    budget: super::endpoint::Budget::General,
    enabled: always,
    handler: |endpoint| any(move |state, request| hello(state, request, endpoint)),
}];

/// The answer to every authenticated `GET`.
static HELLO: std::sync::LazyLock<serde_json::Value> =
    std::sync::LazyLock::new(|| json!({"message": "Hello, World!"}));

async fn hello(
    State(state): State<AppState>,
    request: Request<Body>,
    endpoint: &'static Endpoint,
) -> Response {
    let www = state.guard.www_authenticate();
    let (parts, _body) = request.into_parts();
    let indent = match negotiate(&parts.headers, parts.uri.query()) {
        Ok(indent) => indent,
        Err(e) => return finish(Err(e.into()), None, endpoint.allow, www),
    };
    let result = match cookies::caller(&state, &parts).await {
        Err(refused) => Err(count_refusal(&state, refused)),
        Ok(_) => match parts.method {
            Method::GET | Method::HEAD => Ok(Answer::fixed(&HELLO)),
            Method::OPTIONS => Ok(Answer::plain(endpoint.options())),
            ref other => Err(ApiError::MethodNotAllowed(other.as_str().to_owned())),
        },
    };
    finish(result, indent, endpoint.allow, www)
}

/// Counts why a protected view refused its caller, and passes the refusal on.
pub(super) fn count_refusal(state: &AppState, refused: ApiError) -> ApiError {
    if let ApiError::Auth(rejection) = &refused {
        match rejection {
            doorman_guard::Rejection::InvalidToken(e) => state.metrics.token_refused(e),
            doorman_guard::Rejection::UserNotFound | doorman_guard::Rejection::UserInactive => {
                state.metrics.token_rejected("user")
            }
            _ => {}
        }
    }
    refused
}
