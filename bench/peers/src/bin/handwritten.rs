//! The `/hello/` a Rust developer would write by hand: axum on tokio, a Bearer token checked
//! with jsonwebtoken (signature, `exp`, `token_type` is `access`), doorman's body and content
//! type, and nothing else: no database, no user check, no access log, no metrics, no security
//! headers, no limits. The same allocator as doorman. The benchmark holds doorman's `/hello/`,
//! with its defaults on, against it.
//!
//! Usage: handwritten ADDRESS HS256 SECRET
//!        handwritten ADDRESS EdDSA X
//!
//! (`X`: the Ed25519 public key as JWK's base64url `x`, e.g. from doorman's
//! `/.well-known/jwks.json`.) Prints `listening on ADDRESS` once bound; SIGTERM ends it through
//! `main`'s return.

use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;
use tokio::signal::unix::{SignalKind, signal};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The claims the check reads; `exp` is checked by jsonwebtoken's validation.
#[derive(Deserialize)]
struct Claims {
    token_type: String,
}

struct Checker {
    key: DecodingKey,
    validation: Validation,
}

fn refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::WWW_AUTHENTICATE, r#"Bearer realm="api""#),
        ],
        r#"{"detail":"Given token not valid for any token type","code":"token_not_valid"}"#,
    )
        .into_response()
}

async fn hello(State(checker): State<Arc<Checker>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let Some(token) = token else {
        return refused();
    };
    match decode::<Claims>(token, &checker.key, &checker.validation) {
        Ok(data) if data.claims.token_type == "access" => (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"message":"Hello, World!"}"#,
        )
            .into_response(),
        _ => refused(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: handwritten ADDRESS (HS256 SECRET | EdDSA X)";
    let address = args.next().context(usage)?;
    let algorithm = args.next().context(usage)?;
    let key = args.next().context(usage)?;
    let (algorithm, key) = match algorithm.as_str() {
        "HS256" => (Algorithm::HS256, DecodingKey::from_secret(key.as_bytes())),
        "EdDSA" => (Algorithm::EdDSA, DecodingKey::from_ed_components(&key)?),
        other => bail!("unknown algorithm {other}: {usage}"),
    };
    let mut validation = Validation::new(algorithm);
    validation.set_required_spec_claims(&["exp"]);
    let checker = Arc::new(Checker { key, validation });
    // Before `listening on`: whoever waits for that line may send SIGTERM at once.
    let mut terminate = signal(SignalKind::terminate())?;
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening on {}", listener.local_addr()?);
    let app = Router::new()
        .route("/hello/", get(hello))
        .with_state(checker);
    tokio::select! {
        served = axum::serve(listener, app).into_future() => served?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
