//! The ceiling for `GET /hello/`: axum on tokio, as doorman is, answering doorman's body and
//! content type with no authentication, no logging and no middleware. What doorman adds on top
//! (token checks, the user check, access log, metrics, security headers) is what the benchmark
//! prices against it.
//!
//! Usage: ceiling ADDRESS   (e.g. 127.0.0.1:0; prints `listening on ADDRESS` once bound)
//!
//! SIGTERM ends it through `main`'s return rather than the signal's default, so that exit
//! handlers run: a build instrumented for profile-guided optimisation (`bench/pgo`) writes its
//! profile in one.

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    // Before `listening on`: whoever waits for that line may send SIGTERM at once.
    let mut terminate = signal(SignalKind::terminate())?;
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening on {}", listener.local_addr()?);
    let app = Router::new().route("/hello/", get(hello));
    tokio::select! {
        served = axum::serve(listener, app).into_future() => served?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
