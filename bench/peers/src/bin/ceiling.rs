//! The ceiling for `GET /hello/`: axum on tokio, as doorman is, answering doorman's body and
//! content type with no authentication, no logging and no middleware. What doorman adds on top
//! (token checks, the user check, access log, metrics, security headers) is what the benchmark
//! prices against it.
//!
//! Usage: ceiling ADDRESS [BUSY_NS]   (e.g. 127.0.0.1:0; prints `listening on ADDRESS` once
//! bound)
//!
//! With `BUSY_NS`, each `/hello/` first spins on the CPU for that many nanoseconds: the bare
//! ceiling plus a known amount of work per request, which calibrates the ratio targets (how much
//! work a server may add per request and still reach a given fraction of the ceiling; the
//! harness's `--busy-ns`). Without it the handler is the plain one, unchanged.
//!
//! SIGTERM ends it through `main`'s return rather than the signal's default, so that exit
//! handlers run: a build instrumented for profile-guided optimisation (`bench/pgo`) writes its
//! profile in one.

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header;
use axum::routing::get;
use tokio::signal::unix::{SignalKind, signal};

/// The same allocator as doorman, so that the comparison is of the code, not of malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn hello() -> impl axum::response::IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"message":"Hello, World!"}"#,
    )
}

/// `/hello/` after `busy` of work on the CPU.
async fn busy_hello(busy: Duration) -> impl axum::response::IntoResponse {
    let until = Instant::now() + busy;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    hello().await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let busy = match args.next() {
        Some(ns) => Duration::from_nanos(ns.parse()?),
        None => Duration::ZERO,
    };
    // Before `listening on`: whoever waits for that line may send SIGTERM at once.
    let mut terminate = signal(SignalKind::terminate())?;
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening on {}", listener.local_addr()?);
    let app = if busy.is_zero() {
        Router::new().route("/hello/", get(hello))
    } else {
        Router::new().route("/hello/", get(move || busy_hello(busy)))
    };
    tokio::select! {
        served = axum::serve(listener, app).into_future() => served?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
