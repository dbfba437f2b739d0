//! Key discovery for services that verify doorman's tokens themselves: the JWKS
//! (`/.well-known/jwks.json`, RFC 7517) and the OpenID discovery document
//! (`/.well-known/openid-configuration`) that OIDC-aware JWT libraries start from.
//!
//! The discovery document names URLs, and a verifier fetches keys from its `jwks_uri`, so
//! those URLs come from `public_url`, never from what a client sent. Without `public_url` the
//! document follows the request (its `Host`, https when doorman serves TLS or a trusted proxy
//! says the client used it), which is what a development set-up reached at several names
//! needs, and it is then answered `Cache-Control: no-store`: a client that sends
//! `Host: evil.example` gets its own answer back and no shared cache keeps it for anyone else.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use http::{HeaderValue, Method, Request, header};
use serde_json::{Value, json};

use super::answer::{Answer, finish};
use super::endpoint::{Endpoint, Listener, always};
use super::error::ApiError;
use crate::serve::ClientUsedHttps;
use crate::state::AppState;

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: JWKS_PATH,
        allow: "GET, HEAD, OPTIONS",
        metadata: None,
        metrics_label: JWKS_PATH,
        listener: Listener::Api,
        compressed: true,
        budget: super::endpoint::Budget::General,
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
        budget: super::endpoint::Budget::General,
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
    let configured = state.config.tokens.public_url.clone();
    let base = configured.clone().unwrap_or_else(|| {
        reached_at(
            request.headers(),
            request.uri(),
            request.extensions(),
            state.config.server.tls.is_some(),
        )
    });
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
    let response = answer(request.method(), body, endpoint);
    match configured {
        Some(_) => cacheable(response, max_age(&state)),
        None => uncached(response),
    }
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

/// An answer that names the request's own host: kept by no cache.
fn uncached(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `<scheme>://<Host>` as the client reached doorman: https when doorman serves TLS or a
/// trusted proxy said the client used https; the `Host` (or HTTP/2's `:authority`) when it is
/// a valid host and port, else `localhost`.
pub(super) fn reached_at(
    headers: &http::HeaderMap,
    uri: &http::Uri,
    extensions: &http::Extensions,
    serves_tls: bool,
) -> String {
    let https = serves_tls || extensions.get::<ClientUsedHttps>().is_some();
    let scheme = if https { "https" } else { "http" };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .filter(|h| {
            h.parse::<http::uri::Authority>()
                .is_ok_and(|a| a.as_str() == *h && !h.contains('@'))
        })
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}
