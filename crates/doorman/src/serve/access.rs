//! One access-log line per request (`target: doorman::access`): method, path, status, latency,
//! client address (through trusted proxies) and request id. Never a header value or a body, so
//! tokens and passwords can't reach the log.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::client::{ClientAddr, TrustedProxies};
use crate::metrics::Metrics;

/// What the access middleware needs: whose forwarding headers to believe, where to count,
/// and doorman's routes (a path outside them is counted as `other`).
#[derive(Clone)]
pub struct Observed {
    proxies: TrustedProxies,
    metrics: Metrics,
    routes: std::sync::Arc<[&'static str]>,
}

impl Observed {
    pub fn new(proxies: TrustedProxies, metrics: Metrics, routes: Vec<&'static str>) -> Observed {
        Observed {
            proxies,
            metrics,
            routes: routes.into(),
        }
    }

    fn route(&self, path: &str) -> &'static str {
        self.routes
            .iter()
            .find(|r| **r == path)
            .copied()
            .unwrap_or("other")
    }
}

/// Longest path written to the log; longer ones are cut (and marked).
const MAX_LOGGED_PATH: usize = 200;

pub async fn log(State(observed): State<Observed>, mut request: Request, next: Next) -> Response {
    let proxies = &observed.proxies;
    let started = Instant::now();
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    let client = match peer {
        Some(peer) => Some(proxies.client(peer, request.headers())),
        None => proxies.client_over_unix(request.headers()),
    };
    if let Some(client) = client {
        request.extensions_mut().insert(ClientAddr(client));
    }
    let method = request.method().clone();
    let path = logged_path(request.uri().path());
    let route = observed.route(request.uri().path());
    let response = next.run(request).await;
    observed.metrics.request(
        &method,
        route,
        response.status().as_u16(),
        started.elapsed(),
    );
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info!(
        target: "doorman::access",
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        client = %client.map_or_else(|| "-".to_owned(), |c| c.to_string()),
        request_id,
        "request"
    );
    response
}

fn logged_path(path: &str) -> String {
    if path.len() <= MAX_LOGGED_PATH {
        return path.to_owned();
    }
    let mut cut = MAX_LOGGED_PATH;
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &path[..cut])
}
