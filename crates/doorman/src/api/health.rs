//! `/healthz` (the process answers) and `/readyz` (it can serve: the database answers, takes
//! writes and has every migration applied), for load balancers and orchestrators.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use http::{HeaderValue, Method, Request, StatusCode};
use serde_json::{Value, json};

use super::endpoint::{Budget, Endpoint, Listener, always};
use super::error::ApiError;
use super::render::render;
use crate::state::AppState;

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "/healthz",
        allow: "GET, HEAD",
        metadata: None,
        metrics_label: "/healthz",
        listener: Listener::ApiAndAdmin,
        compressed: false,
        budget: Budget::Exempt,
        enabled: always,
        handler: |endpoint| any(move |request| healthz(request, endpoint)),
    },
    Endpoint {
        path: "/readyz",
        allow: "GET, HEAD",
        metadata: None,
        metrics_label: "/readyz",
        listener: Listener::ApiAndAdmin,
        compressed: false,
        budget: Budget::Exempt,
        enabled: always,
        handler: |endpoint| any(move |state, request| readyz(state, request, endpoint)),
    },
    Endpoint {
        path: "/metrics",
        allow: "GET, HEAD",
        metadata: None,
        metrics_label: "/metrics",
        listener: Listener::AdminElseApi,
        compressed: true,
        budget: Budget::Exempt,
        enabled: always,
        handler: |endpoint| any(move |state, request| metrics(state, request, endpoint)),
    },
];

/// Prometheus text exposition of doorman's metrics.
async fn metrics(
    State(state): State<AppState>,
    request: Request<Body>,
    endpoint: &'static Endpoint,
) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return answer(request.method(), StatusCode::OK, Value::Null, endpoint);
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

async fn healthz(request: Request<Body>, endpoint: &'static Endpoint) -> Response {
    answer(
        request.method(),
        StatusCode::OK,
        json!({"status": "ok"}),
        endpoint,
    )
}

async fn readyz(
    State(state): State<AppState>,
    request: Request<Body>,
    endpoint: &'static Endpoint,
) -> Response {
    let (status, body) = match state.store.pending_migrations().await {
        // Probed, not remembered from the last failed write: a probe sees storage come back
        // without waiting for a client's write to succeed, and costs one `BEGIN IMMEDIATE`
        // (nothing written) per probe on SQLite, one query on PostgreSQL.
        Ok(0) => match state.store.writable().await {
            Ok(true) => (
                StatusCode::OK,
                json!({"status": "ready", "database": "ok", "migrations": "applied"}),
            ),
            Ok(false) => {
                tracing::warn!("readiness check: the database is read-only");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"status": "unavailable", "database": "read-only", "migrations": "applied"}),
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "readiness check: the database takes no writes");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"status": "unavailable", "database": "unreachable"}),
                )
            }
        },
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
    answer(request.method(), status, body, endpoint)
}

fn answer(method: &Method, status: StatusCode, body: Value, endpoint: &Endpoint) -> Response {
    let mut response = match *method {
        Method::GET | Method::HEAD => render(status, &body, None),
        ref other => {
            let error = ApiError::MethodNotAllowed(other.as_str().to_owned());
            render(error.status(), &error.body(), None)
        }
    };
    let not_ready = response.status() == StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        http::header::ALLOW,
        HeaderValue::from_static(endpoint.allow),
    );
    if not_ready {
        // A load balancer may ask again sooner; a client reading the 503 should not.
        headers.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from(doorman_guard::UNAVAILABLE_RETRY_AFTER_SECS),
        );
    }
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}
