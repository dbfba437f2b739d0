//! What sits between the socket and the router: request ids, tracing without secrets, panics
//! turned into JSON 500s, load shedding and a deadline per request (503 JSON, never a hang),
//! security headers on every response, and the signals that stop the server gracefully.

use std::time::Duration;

use axum::Router;
use http::{HeaderValue, header};

pub mod access;
pub mod client;
pub mod edge;
pub mod framing;
pub mod gate;
pub mod heads;
pub mod linger;
pub mod listen;
pub mod settings;
pub mod static_files;
pub mod tls;

pub use client::{ClientAddr, ClientUsedHttps, ForwardedHeader, TrustedProxies};

/// The limits every request runs under (the `max_concurrent_requests` and `request_timeout`
/// settings).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Requests handled at once; more are refused at once with 503 and `Retry-After`.
    pub max_concurrent_requests: usize,
    /// How long one request may take before it is answered 503.
    pub request_timeout: Duration,
    /// The largest body a view reads; a larger announced one is refused from the head (413).
    pub max_body_bytes: usize,
    /// How long a request's body may take to arrive (408 past it).
    pub body_read_timeout: Duration,
    /// Logins answered at once, from their own budget (`password_hash_workers +
    /// login_queue_max`); more are refused at once with 503 and `Retry-After`.
    pub max_logins: usize,
    /// Whose forwarding headers name the client.
    pub trusted_proxies: TrustedProxies,
    /// Browser origins allowed to call the API (CORS); empty: no CORS headers at all.
    pub cors_allowed_origins: Vec<HeaderValue>,
    /// Whether those origins may send credentials (cookies, HTTP auth).
    pub cors_allow_credentials: bool,
}

impl From<&settings::ServerConfig> for Limits {
    fn from(config: &settings::ServerConfig) -> Limits {
        Limits {
            max_concurrent_requests: config.max_concurrent_requests,
            request_timeout: config.request_timeout,
            max_body_bytes: config.max_body_bytes,
            body_read_timeout: config.body_read_timeout,
            // Set from the accounts' settings by whoever has them (the router).
            max_logins: 1,
            trusted_proxies: TrustedProxies::new(config.trusted_proxies.clone())
                .trusting_unix_socket(config.trust_unix_socket_peers)
                .reading(config.forwarded_header),
            cors_allowed_origins: config
                .cors_allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect(),
            cors_allow_credentials: config.cors_allow_credentials,
        }
    }
}

/// CORS for browser clients on other origins: an explicit allow-list (never `*` with
/// credentials; the configuration refuses that), preflights answered here.
fn cors(limits: &Limits) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if limits.cors_allowed_origins.is_empty() {
        return None;
    }
    let origins = if limits.cors_allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(limits.cors_allowed_origins.clone())
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([http::Method::GET, http::Method::POST, http::Method::OPTIONS])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
            .allow_credentials(limits.cors_allow_credentials)
            .max_age(Duration::from_secs(600)),
    )
}

/// Compression for the routes where it pays: the JWKS, discovery, metrics and static files.
/// The simplejwt views stay uncompressed (and without `Vary`), as the contract records them,
/// and their answers carry tokens, which compression would expose to BREACH-style attacks.
pub fn compression() -> tower_http::compression::CompressionLayer<CompressWhereSafe> {
    tower_http::compression::CompressionLayer::new().compress_when(CompressWhereSafe)
}

/// Compresses answers where it pays and is safe: not tiny ones, and never those carrying
/// tokens (`Cache-Control: no-store`).
#[derive(Clone, Copy, Debug)]
pub struct CompressWhereSafe;

impl tower_http::compression::Predicate for CompressWhereSafe {
    fn should_compress<B>(&self, response: &http::Response<B>) -> bool
    where
        B: http_body::Body,
    {
        use tower_http::compression::predicate::DefaultPredicate;
        let carries_secrets = response
            .headers()
            .get(header::CACHE_CONTROL)
            .is_some_and(|v| v.as_bytes().starts_with(b"no-store"));
        !carries_secrets && DefaultPredicate::new().should_compress(response)
    }
}

pub use gate::{App, Budget};

/// The API listener's application: the router (with CORS, when configured) behind the gate
/// (request id, security headers, access log and metrics, the concurrency limit and the
/// deadline with 503 JSON when either trips, panics turned into JSON 500s).
pub fn stack(
    app: Router,
    limits: &Limits,
    observed: access::Observed,
    budgets: Vec<(&'static str, Budget)>,
) -> App {
    let app = match cors(limits) {
        Some(cors) => app.layer(cors),
        None => app,
    };
    App::new(
        app,
        observed,
        gate::RequestLimits {
            max_in_flight: limits.max_concurrent_requests,
            timeout: limits.request_timeout,
            max_body_bytes: limits.max_body_bytes,
            body_read_timeout: limits.body_read_timeout,
            max_logins: limits.max_logins,
        },
    )
    .with_max_body_bytes(limits.max_body_bytes)
    .with_budgets(budgets)
}

/// The admin listener's: the router behind the gate without the access log or the limits.
pub fn admin_stack(app: Router) -> App {
    App::admin(app)
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that arrives right after start-up is a graceful
/// stop rather than the default kill. Fails when they can't be installed.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutdown requested; finishing requests in flight");
    })
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested; finishing requests in flight");
    })
}
