//! `/healthz` (the process answers) and `/readyz` (it can serve: the database answers and every
//! migration is applied), for load balancers and orchestrators.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{Method, Request, StatusCode};
use serde_json::{Value, json};

use super::{ApiError, render};
use crate::app::AppState;

pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";
pub const METRICS: &str = "/metrics";

/// Prometheus text exposition of doorman's metrics.
pub async fn metrics(State(state): State<AppState>, request: Request<Body>) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return answer(request.method(), StatusCode::OK, Value::Null);
    }
    let text = state.metrics.render(state.store.pool_stats());
    let mut response = Response::new(Body::from(text));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

pub async fn healthz(request: Request<Body>) -> Response {
    answer(request.method(), StatusCode::OK, json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<AppState>, request: Request<Body>) -> Response {
    let (status, body) = match state.store.pending_migrations().await {
        Ok(0) => (
            StatusCode::OK,
            json!({"status": "ready", "database": "ok", "migrations": "applied"}),
        ),
        Ok(pending) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "status": "unavailable",
                "database": "ok",
                "migrations": format!("{pending} pending; run `doorman migrate`"),
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "unavailable", "database": "unreachable"}),
            )
        }
    };
    answer(request.method(), status, body)
}

fn answer(method: &Method, status: StatusCode, body: Value) -> Response {
    let mut response = match *method {
        Method::GET | Method::HEAD => render(status, &body, None),
        ref other => {
            let error = ApiError::MethodNotAllowed(other.as_str().to_owned());
            render(error.status(), &error.body(), None)
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        http::header::ALLOW,
        http::HeaderValue::from_static("GET, HEAD"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}
