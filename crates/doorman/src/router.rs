//! The API and admin routers, derived from the endpoint declarations in [`crate::api`]: which
//! listener serves what, the metrics' route labels, the trailing-slash redirect and the
//! static files' mount.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use http::{HeaderValue, StatusCode, Uri, header};

use crate::api::{self, ApiError, Endpoint};
use crate::config::{Config, ConfigError};
use crate::serve::{App, Limits};
use crate::state::AppState;

/// The API listener's application: every endpoint the configuration turns on, static files,
/// and the fallback, behind the gate.
pub fn api(state: AppState) -> App {
    let config = &state.config;
    let mut router = Router::new();
    for endpoint in api::endpoints().filter(|e| e.on_api(config)) {
        router = router.route(endpoint.path, method_router(endpoint));
    }
    // The OpenAPI document depends on the configuration only: made once, for every request.
    let schema = api::schema::document(config, api::endpoints());
    router = router.layer(axum::Extension(std::sync::Arc::new(
        api::schema::Published::new(schema),
    )));
    let mut limits = Limits::from(&config.server);
    limits.max_logins = config
        .accounts
        .password_hash_workers
        .saturating_add(config.accounts.login_queue_max);
    let budgets = api::endpoints()
        .filter(|e| e.on_api(config) && e.budget != crate::serve::Budget::General)
        .map(|e| (e.path, e.budget))
        .collect();
    // Every endpoint turned on keeps its label on the API listener, served there or not.
    let labels = api::endpoints()
        .filter(|e| (e.enabled)(config))
        .map(|e| (e.path, e.metrics_label))
        .collect();
    let observed = crate::serve::access::Observed::new(
        limits.trusted_proxies.clone(),
        state.metrics.clone(),
        labels,
    );
    if let Some(files) = &config.static_files {
        router = router.nest_service(
            files.url.trim_end_matches('/'),
            crate::serve::static_files::service(files),
        );
    }
    let app = router.fallback(fallback).with_state(state);
    crate::serve::stack(app, &limits, observed, budgets)
}

/// The admin listener's application (`admin_bind`): the endpoints declared for it, nothing
/// else.
pub fn admin(state: AppState) -> App {
    let mut router = Router::new();
    for endpoint in api::endpoints().filter(|e| e.on_admin(&state.config)) {
        router = router.route(endpoint.path, method_router(endpoint));
    }
    let router = router.fallback(|| async { ApiError::NotFound.into_response() });
    crate::serve::admin_stack(router.with_state(state))
}

/// Refuses static files mounted where one of doorman's endpoints lives. Part of loading the
/// configuration: every command checks it right after [`Config::load`], and
/// [`crate::Application::build`] too.
pub fn check_static_files(config: &Config) -> Result<(), ConfigError> {
    match &config.static_files {
        Some(files) => files.check_prefixes(&api::reserved_prefixes()),
        None => Ok(()),
    }
}

fn method_router(endpoint: &'static Endpoint) -> MethodRouter<AppState> {
    let route = (endpoint.handler)(endpoint);
    if endpoint.compressed {
        route.layer(crate::serve::compression())
    } else {
        route
    }
}

/// Django's `APPEND_SLASH`: a known path without its slash is redirected (301, for every
/// method, as `CommonMiddleware` does); anything else is DRF's JSON 404.
async fn fallback(State(state): State<AppState>, uri: Uri) -> Response {
    let path = uri.path();
    let slashed = format!("{path}/");
    let known = api::endpoints().any(|e| e.path == slashed && e.on_api(&state.config));
    if !path.ends_with('/') && known {
        let location = match uri.query() {
            Some(q) => format!("{path}/?{q}"),
            None => slashed,
        };
        if let Ok(value) = HeaderValue::from_str(&location) {
            let html = HeaderValue::from_static("text/html; charset=utf-8");
            return (
                StatusCode::MOVED_PERMANENTLY,
                [(header::LOCATION, value), (header::CONTENT_TYPE, html)],
            )
                .into_response();
        }
    }
    ApiError::NotFound.into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::Overrides;

    fn with_static_url(url: &str) -> Config {
        let dir = std::env::temp_dir();
        let env: BTreeMap<String, String> = [
            ("DOORMAN_STATIC_ROOT", dir.display().to_string()),
            ("DOORMAN_STATIC_URL", url.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Config::load_from(None, &env, &Overrides::default()).unwrap()
    }

    #[test]
    fn static_files_stay_off_every_endpoints_prefix() {
        for url in [
            "/api/",
            "/api/token/x/",
            "/hello/",
            "/.well-known/",
            "/metrics/",
        ] {
            assert_eq!(
                check_static_files(&with_static_url(url))
                    .unwrap_err()
                    .to_string(),
                format!(
                    "configuration error: setting `static_url` (from environment variable DOORMAN_STATIC_URL): expected a prefix like /static/ that no doorman route uses, got {url:?}"
                ),
            );
        }
        for url in ["/static/", "/apis/", "/assets/hello/"] {
            check_static_files(&with_static_url(url)).unwrap();
        }
    }
}
