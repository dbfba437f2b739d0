//! Key discovery for services that verify doorman's tokens themselves: the JWKS
//! (`/.well-known/jwks.json`, RFC 7517) and the OpenID discovery document
//! (`/.well-known/openid-configuration`) that OIDC-aware JWT libraries start from.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, Request, header};
use serde_json::{Value, json};

use super::{Answer, ApiError, finish};
use crate::app::AppState;

const ALLOW: &str = "GET, HEAD, OPTIONS";

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

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

pub async fn jwks(State(state): State<AppState>, request: Request<Body>) -> Response {
    let body = state.tokens.keys().jwks();
    cacheable(answer(request.method(), body), max_age(&state))
}

pub async fn discovery(State(state): State<AppState>, request: Request<Body>) -> Response {
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
        "token_endpoint": format!("{base}/api/token/"),
        "grant_types_supported": ["password", "refresh_token"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [alg],
        "token_endpoint_auth_methods_supported": ["none"],
    });
    cacheable(answer(request.method(), body), max_age(&state))
}

fn answer(method: &Method, body: Value) -> Response {
    let result = match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Ok(Answer::plain(body)),
        ref other => Err(ApiError::MethodNotAllowed(other.as_str().to_owned())),
    };
    finish(result, None, ALLOW, "")
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
