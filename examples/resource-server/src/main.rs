//! `cargo run -p resource-server -- JWKS_URL [BIND]`, e.g.
//! `cargo run -p resource-server -- http://127.0.0.1:8000/.well-known/jwks.json 127.0.0.1:8001`,
//! then `curl -H "Authorization: Bearer $ACCESS" http://127.0.0.1:8001/orders/`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(jwks_url) = args.next() else {
        eprintln!("usage: resource-server JWKS_URL [BIND]");
        return ExitCode::from(2);
    };
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:8001".to_owned());
    let router = match resource_server::router(&jwks_url).await {
        Ok(router) => router,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(&bind).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: could not listen on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("resource-server on http://{bind}/orders/, keys from {jwks_url}");
    match axum::serve(listener, router).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
