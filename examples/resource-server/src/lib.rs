//! A resource server: another team's service that trusts doorman's access tokens without
//! sharing any secret with it. It learns doorman's public keys from the JWKS URL and keeps
//! following them through key rotations.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let router = resource_server::router("http://127.0.0.1:8000/.well-known/jwks.json").await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8001").await?;
//! axum::serve(listener, router).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use doorman_guard::{Authenticated, Guard, JwksError, JwksOptions, JwksSource};
use doorman_token::TokenRules;
use serde_json::{Value, json};

/// The service's routes, guarded by doorman's keys from `jwks_url`.
pub async fn router(jwks_url: &str) -> Result<Router, JwksError> {
    let source = JwksSource::fetch(jwks_url, TokenRules::default(), JwksOptions::default()).await?;
    Ok(router_with(source))
}

/// As [`router`], with a JWKS source set up by the caller (other options, or to watch it).
pub fn router_with(source: Arc<JwksSource>) -> Router {
    Router::new()
        .route("/orders/", get(orders))
        .with_state(Guard::from_jwks(source))
}

/// A protected route: only a valid doorman access token gets here.
async fn orders(user: Authenticated) -> axum::Json<Value> {
    axum::Json(json!({
        "user_id": user.user_id,
        "orders": [],
    }))
}
