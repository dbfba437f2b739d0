//! `GET /hello/`: the protected example view. DRF's order holds: content negotiation, then
//! authentication and permission (so `POST /hello/` without credentials is 401, not 405), then
//! the method.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{Method, Request};
use serde_json::json;

use super::views::View;
use super::{Answer, ApiError, finish};
use crate::app::AppState;

const ALLOW: &str = "GET, HEAD, OPTIONS";

/// The answer to every authenticated `GET`.
static HELLO: std::sync::LazyLock<serde_json::Value> =
    std::sync::LazyLock::new(|| json!({"message": "Hello, World!"}));

pub async fn hello(State(state): State<AppState>, request: Request<Body>) -> Response {
    let www = state.guard.www_authenticate();
    let headers = request.headers();
    let indent = match super::negotiate(headers, request.uri().query()) {
        Ok(indent) => indent,
        Err(e) => return finish(Err(e.into()), None, ALLOW, www),
    };
    let result = match state.guard.authenticate(headers).await {
        Err(rejection) => {
            match &rejection {
                doorman_guard::Rejection::InvalidToken(e) => state.metrics.token_refused(e),
                doorman_guard::Rejection::UserNotFound | doorman_guard::Rejection::UserInactive => {
                    state.metrics.token_rejected("user")
                }
                _ => {}
            }
            Err(ApiError::Auth(rejection))
        }
        Ok(_) => match *request.method() {
            Method::GET | Method::HEAD => Ok(Answer::fixed(&HELLO)),
            Method::OPTIONS => Ok(Answer::plain(doorman_drf::options_metadata(
                &View::Hello.metadata(),
            ))),
            ref other => Err(ApiError::MethodNotAllowed(other.as_str().to_owned())),
        },
    };
    finish(result, indent, ALLOW, www)
}
