//! A second yardstick for `GET /hello/`: the ceiling's axum server with the production
//! middleware a user would put around it from the field's crates (tower, tower-http, tracing,
//! metrics), as axum's examples wire them: sensitive headers marked, an `X-Request-Id` made and
//! echoed, a JSON access-log line per request (tower-http's `TraceLayer` at INFO, through
//! tracing-subscriber and tracing-appender's non-blocking writer to stdout), request metrics (a
//! counter and a latency histogram per method, route and status, as axum's
//! `prometheus-metrics` example records them), four security headers, a panic catcher, a
//! deadline, and a concurrency limit that refuses at once. No authentication: what doorman adds
//! over this is the token and user checks (and the DRF contract's headers).
//!
//! The benchmark's target is against the bare ceiling (`ceiling.rs`); this one is reported
//! beside it, so that the price of authentication can be told apart from the price of running
//! as a production server.
//!
//! Usage: ceiling-stack ADDRESS   (e.g. 127.0.0.1:0; prints `listening on ADDRESS` once bound)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::signal::unix::{SignalKind, signal};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

/// The same allocator as doorman, so that the comparison is of the code, not of malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// doorman's defaults for the same two limits.
const MAX_IN_FLIGHT: usize = 1024;
const DEADLINE: Duration = Duration::from_secs(30);

/// The latency buckets of axum's `prometheus-metrics` example.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

async fn hello() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"message":"Hello, World!"}"#,
    )
}

/// The access log's fields, as axum's `request-id` example puts the id into the span, with the
/// client's address beside it.
fn request_span(request: &Request) -> tracing::Span {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    tracing::info_span!(
        "request",
        method = %request.method(),
        uri = %request.uri(),
        version = ?request.version(),
        client = ?client,
        request_id = ?request.headers().get("x-request-id"),
    )
}

/// A request counted and timed, labelled by method, route and status.
async fn track_metrics(request: Request, next: Next) -> impl IntoResponse {
    let started = Instant::now();
    let path = match request.extensions().get::<MatchedPath>() {
        Some(matched) => matched.as_str().to_owned(),
        None => request.uri().path().to_owned(),
    };
    let method = request.method().clone();
    let response = next.run(request).await;
    let labels = [
        ("method", method.to_string()),
        ("path", path),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_requests_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let (writer, _flush_on_exit) = tracing_appender::non_blocking(std::io::stdout());
    tracing_subscriber::fmt()
        .json()
        .with_writer(writer)
        .with_max_level(Level::INFO)
        .init();
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("http_requests_duration_seconds".into()),
            &BUCKETS,
        )?
        .install_recorder()?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            metrics.run_upkeep();
        }
    });

    let mut terminate = signal(SignalKind::terminate())?;
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening on {}", listener.local_addr()?);

    let security =
        |name, value| SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value));
    let stack = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(security(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(security(header::REFERRER_POLICY, "no-referrer"))
        .layer(security(header::X_FRAME_OPTIONS, "DENY"))
        .layer(security(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ))
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            StatusCode::SERVICE_UNAVAILABLE
        }))
        .load_shed()
        .concurrency_limit(MAX_IN_FLIGHT)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            DEADLINE,
        ))
        .layer(CatchPanicLayer::new());
    let app = Router::new()
        .route("/hello/", get(hello))
        .route_layer(middleware::from_fn(track_metrics))
        .layer(stack);
    tokio::select! {
        served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).into_future() => served?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
