//! Key discovery for services that verify doorman's tokens themselves: the JWKS
//! (`/.well-known/jwks.json`, RFC 7517) and the OpenID discovery document
//! (`/.well-known/openid-configuration`) that OIDC-aware JWT libraries start from.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use http::{HeaderMap, HeaderValue, Method, Request, header};
use serde_json::{Value, json};

use super::answer::{Answer, finish};
use super::endpoint::{Endpoint, Listener, always};
use super::error::ApiError;
use crate::state::AppState;

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: JWKS_PATH,
        allow: "GET, HEAD, OPTIONS",
        metadata: None,
        metrics_label: JWKS_PATH,
        listener: Listener::Api,
        compressed: true,
        enabled: always,
        handler: |endpoint| any(move |state, request| jwks(state, request, endpoint)),
    },
    Endpoint {
        path: "/.well-known/openid-configuration",
        allow: "GET, HEAD, OPTIONS",
        metadata: None,
        metrics_label: "/.well-known/openid-configuration",
        listener: Listener::Api,
        compressed: true,
        enabled: always,
        handler: |endpoint| any(move |state, request| discovery(state, request, endpoint)),
    },
];

/// Named in the discovery document, so it is needed apart from its declaration.
const JWKS_PATH: &str = "/.well-known/jwks.json";

/// How long clients may cache the JWKS at most.
pub const JWKS_MAX_AGE_SECS: u64 = 300;

/// The JWKS's `max-age`: at most 5 minutes, and never longer than the access token lifetime,
/// so it stays shorter than a rotation's overlap (a retiring key verifies for at least the
/// longest token lifetime).
fn max_age(state: &AppState) -> u64 {
    JWKS_MAX_AGE_SECS.min(
        state
            .config
            .tokens
            .rules
            .access_token_lifetime
            .as_secs()
            .max(1),
    )
}

async fn jwks(
    State(state): State<AppState>,
    request: Request<Body>,
    endpoint: &'static Endpoint,
) -> Response {
    let body = state.tokens.keys().jwks();
    cacheable(answer(request.method(), body, endpoint), max_age(&state))
}

async fn discovery(
    State(state): State<AppState>,
    request: Request<Body>,
    endpoint: &'static Endpoint,
) -> Response {
    let base = base_url(request.headers());
    let issuer = state
        .config
        .tokens
        .rules
        .issuer
        .clone()
        .unwrap_or_else(|| base.clone());
    let alg = state.tokens.keys().signing().alg().as_str();
    let body = json!({
        "issuer": issuer,
        "jwks_uri": format!("{base}{JWKS_PATH}"),
        "token_endpoint": format!("{base}{}", super::tokens::OBTAIN_PAIR_PATH),
        "grant_types_supported": ["password", "refresh_token"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [alg],
        "token_endpoint_auth_methods_supported": ["none"],
    });
    cacheable(answer(request.method(), body, endpoint), max_age(&state))
}

fn answer(method: &Method, body: Value, endpoint: &Endpoint) -> Response {
    let result = match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Ok(Answer::plain(body)),
        ref other => Err(ApiError::MethodNotAllowed(other.as_str().to_owned())),
    };
    finish(result, None, endpoint.allow, "")
}

fn cacheable(mut response: Response, max_age: u64) -> Response {
    if response.status().is_success()
        && let Ok(value) = HeaderValue::from_str(&format!("public, max-age={max_age}"))
    {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}

/// `http://<Host>` as the client reached us (TLS and trusted proxies come with the server
/// work; until then the discovery document names plain HTTP unless `issuer` is set).
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    format!("http://{host}")
}
