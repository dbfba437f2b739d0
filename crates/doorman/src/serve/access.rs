//! One access-log line per request (`target: doorman::access`): method, path, status, latency,
//! client address (through trusted proxies) and request id. Never a header value or a body, so
//! tokens and passwords can't reach the log.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use http::{HeaderValue, Method, Uri};

use super::client::{ClientAddr, ClientUsedHttps, TrustedProxies};
use crate::metrics::Metrics;

/// What the access log needs: whose forwarding headers to believe, where to count, and
/// doorman's routes with their metrics labels (a path outside them is counted as `other`).
#[derive(Clone)]
pub struct Observed(Arc<Inner>);

struct Inner {
    proxies: TrustedProxies,
    metrics: Metrics,
    routes: Vec<(&'static str, &'static str)>,
}

/// What is kept of a request until its response is logged.
pub struct Seen {
    started: Instant,
    method: Method,
    /// Cloning a parsed URI shares its bytes, so no copy of the path is made per request.
    uri: Uri,
    route: &'static str,
    client: Option<IpAddr>,
}

impl Observed {
    /// Where requests are counted.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// `routes`: each path with its label.
    pub fn new(
        proxies: TrustedProxies,
        metrics: Metrics,
        routes: Vec<(&'static str, &'static str)>,
    ) -> Observed {
        Observed(Arc::new(Inner {
            proxies,
            metrics,
            routes,
        }))
    }

    fn route(&self, path: &str) -> &'static str {
        self.0
            .routes
            .iter()
            .find(|(route, _)| *route == path)
            .map_or("other", |(_, label)| label)
    }

    /// Notes the request, and tells the handlers who the client is ([`ClientAddr`]) and
    /// whether a trusted proxy said it used https ([`ClientUsedHttps`]).
    /// `peer`: the TCP peer, `None` over a Unix socket.
    pub fn see(&self, request: &mut Request, peer: Option<SocketAddr>, started: Instant) -> Seen {
        let proxies = &self.0.proxies;
        let forwarded = match peer {
            Some(peer) => proxies.behind(peer.ip(), request.headers()),
            None => proxies.over_unix(request.headers()),
        };
        let client = forwarded.client;
        if let Some(client) = client {
            request.extensions_mut().insert(ClientAddr(client));
        }
        if forwarded.https {
            request.extensions_mut().insert(ClientUsedHttps);
        }
        Seen {
            started,
            method: request.method().clone(),
            uri: request.uri().clone(),
            route: self.route(request.uri().path()),
            client,
        }
    }

    /// Counts the request and writes its line.
    pub fn record(&self, seen: Seen, status: u16, request_id: &HeaderValue) {
        let elapsed = seen.started.elapsed();
        self.0
            .metrics
            .request(&seen.method, seen.route, status, elapsed);
        log_request(
            seen.method.as_str(),
            seen.uri.path(),
            status,
            elapsed,
            seen.client,
            request_id.to_str().unwrap_or("-"),
        );
    }
}

/// The access-log line of one request (public for the access-log benchmark).
pub fn log_request(
    method: &str,
    path: &str,
    status: u16,
    latency: Duration,
    client: Option<IpAddr>,
    request_id: &str,
) {
    tracing::info!(
        target: "doorman::access",
        method,
        path = &*logged_path(path),
        status,
        latency_ms = latency.as_secs_f64() * 1000.0,
        client = %OrDash(client),
        request_id,
        "request"
    );
}

struct OrDash(Option<IpAddr>);

impl fmt::Display for OrDash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Longest path written to the log; longer ones are cut (and marked).
const MAX_LOGGED_PATH: usize = 200;

fn logged_path(path: &str) -> Cow<'_, str> {
    if path.len() <= MAX_LOGGED_PATH {
        return Cow::Borrowed(path);
    }
    let mut cut = MAX_LOGGED_PATH;
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}...", &path[..cut]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// A long path is cut at `MAX_LOGGED_PATH` bytes, on a character boundary, and marked; a
    /// short one is logged as it is, uncopied.
    #[test]
    fn long_paths_are_cut_on_a_character_boundary() {
        assert!(matches!(logged_path("/hello/"), Cow::Borrowed("/hello/")));
        let long = format!("/{}", "é".repeat(150));
        let cut = logged_path(&long);
        let kept = cut
            .strip_suffix("...")
            .unwrap_or_else(|| panic!("not marked: {cut}"));
        assert!(kept.len() <= MAX_LOGGED_PATH && kept.len() >= MAX_LOGGED_PATH - 1);
        assert!(long.starts_with(kept));
    }
}
