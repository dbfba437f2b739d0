//! Builds the application: the shared state and the router. This is the one place routes are
//! listed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any};
use doorman_guard::Guard;
use doorman_token::Tokens;
use http::{HeaderValue, Request, StatusCode, Uri, header};

use crate::accounts::{Accounts, PasswordHasher, StoreUserCheck};
use crate::api::views::View;
use crate::api::{ApiError, health, hello, tokens, wellknown};
use crate::config::Config;
use crate::store::Store;

/// Everything a request may need, built once at start-up and shared by reference: axum clones
/// the state for every request (often several times), so it is one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub tokens: Arc<Tokens>,
    pub store: Store,
    pub accounts: Accounts,
    pub guard: Guard,
    pub metrics: crate::metrics::Metrics,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl axum::extract::FromRef<AppState> for Guard {
    fn from_ref(state: &AppState) -> Guard {
        state.guard.clone()
    }
}

/// The token views and their paths (simplejwt's URL names, as the reference app routes them).
const TOKEN_VIEWS: [(&str, View); 4] = [
    ("/api/token/", View::TokenObtainPair),
    ("/api/token/refresh/", View::TokenRefresh),
    ("/api/token/verify/", View::TokenVerify),
    ("/api/token/blacklist/", View::TokenBlacklist),
];
const SLIDING_VIEWS: [(&str, View); 2] = [
    ("/api/token/sliding/", View::TokenObtainSliding),
    ("/api/token/sliding/refresh/", View::TokenRefreshSliding),
];
const HELLO: &str = "/hello/";

impl AppState {
    /// Opens the store (migrating it unless told not to), loads the keys, and wires the guard.
    pub async fn build(config: Config, migrate: bool) -> anyhow::Result<AppState> {
        crate::keys::create_private_dir(&config.store.data_dir)?;
        let store = Store::connect_with(&config.store.database_url, &config.store.pool).await?;
        if migrate {
            let applied = store.migrate().await?;
            for m in &applied {
                tracing::info!(version = m.version, description = %m.description, "applied migration");
            }
        } else if store.pending_migrations().await? > 0 {
            anyhow::bail!("the database has pending migrations; run `doorman migrate`");
        }
        let keys = crate::keys::effective(&config.keys.key, &store).await?;
        let tokens = Arc::new(Tokens::new(keys, config.tokens.rules.clone()));
        let metrics = crate::metrics::Metrics::new();
        let hasher = PasswordHasher::new(config.accounts.password_hash_workers)
            .with_metrics(metrics.clone());
        let accounts = Accounts::new(store.clone(), hasher);
        let guard = Guard::from_shared(tokens.clone())
            .with_header_types(config.tokens.auth_header_types.clone())
            .with_user_check(StoreUserCheck::shared(
                store.clone(),
                config.accounts.check_user_is_active,
                config.accounts.accept_tokens_during_outage,
                config.accounts.user_cache_ttl,
                config.accounts.user_cache_size,
                &metrics,
            ));
        Ok(AppState(Arc::new(Shared {
            config: Arc::new(config),
            tokens,
            store,
            accounts,
            guard,
            metrics,
        })))
    }

    fn routes(&self) -> impl Iterator<Item = (&'static str, View)> + '_ {
        let sliding = if self.config.tokens.sliding_tokens {
            &SLIDING_VIEWS[..]
        } else {
            &[]
        };
        TOKEN_VIEWS.iter().chain(sliding.iter()).copied()
    }

    fn is_route(&self, path: &str) -> bool {
        path == HELLO || self.routes().any(|(p, _)| p == path)
    }
}

fn token_route(view: View) -> MethodRouter<AppState> {
    any(move |state: State<AppState>, request: Request<Body>| {
        tokens::endpoint(state, view, request)
    })
}

/// The router with every route and the fallback.
pub fn router(state: AppState) -> crate::serve::App {
    let mut router = Router::new()
        .route(HELLO, any(hello::hello))
        .route(
            wellknown::JWKS_PATH,
            any(wellknown::jwks).layer(crate::serve::compression()),
        )
        .route(
            wellknown::DISCOVERY_PATH,
            any(wellknown::discovery).layer(crate::serve::compression()),
        )
        .route(health::HEALTHZ, any(health::healthz))
        .route(health::READYZ, any(health::readyz));
    // With an admin bind, metrics are served there only.
    if state.config.server.admin_bind.is_none() {
        router = router.route(
            health::METRICS,
            any(health::metrics).layer(crate::serve::compression()),
        );
    }
    for (path, view) in state.routes() {
        router = router.route(path, token_route(view));
    }
    let limits = crate::serve::Limits::from(&state.config.server);
    let routes: Vec<&'static str> = [HELLO, wellknown::JWKS_PATH, wellknown::DISCOVERY_PATH]
        .into_iter()
        .chain([health::HEALTHZ, health::READYZ, health::METRICS])
        .chain(state.routes().map(|(path, _)| path))
        .collect();
    let observed = crate::serve::access::Observed::new(
        limits.trusted_proxies.clone(),
        state.metrics.clone(),
        routes,
    );
    if let Some(files) = &state.config.static_files {
        router = router.nest_service(
            files.url.trim_end_matches('/'),
            crate::serve::static_files::service(files),
        );
    }
    let app = router.fallback(fallback).with_state(state);
    crate::serve::stack(app, &limits, observed)
}

/// The admin listener's routes (`admin_bind`): metrics and the health checks, nothing else.
pub fn admin_router(state: AppState) -> crate::serve::App {
    let router = Router::new()
        .route(
            health::METRICS,
            any(health::metrics).layer(crate::serve::compression()),
        )
        .route(health::HEALTHZ, any(health::healthz))
        .route(health::READYZ, any(health::readyz))
        .fallback(|| async { ApiError::NotFound.into_response() });
    crate::serve::admin_stack(router.with_state(state))
}

/// Django's `APPEND_SLASH`: a known path without its slash is redirected (301, for every
/// method, as `CommonMiddleware` does); anything else is DRF's JSON 404.
async fn fallback(State(state): State<AppState>, uri: Uri) -> Response {
    let path = uri.path();
    if !path.ends_with('/') && state.is_route(&format!("{path}/")) {
        let location = match uri.query() {
            Some(q) => format!("{path}/?{q}"),
            None => format!("{path}/"),
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

/// A bound, ready-to-run server.
pub struct Application {
    listeners: Vec<crate::serve::listen::Listener>,
    admin_listeners: Vec<crate::serve::listen::Listener>,
    router: crate::serve::App,
    state: AppState,
}

impl Application {
    /// Binds first (so the port is known, port 0 in tests), then prepares the state.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_with(config, true).await
    }

    pub async fn build_with(config: Config, migrate: bool) -> anyhow::Result<Application> {
        let listeners =
            crate::serve::listen::open_all(&config.server.bind, config.server.unix_socket_mode)
                .await
                .map_err(|e| anyhow::anyhow!("could not listen on {e}"))?;
        let mut admin_listeners = Vec::new();
        if let Some(admin) = &config.server.admin_bind {
            let listener =
                crate::serve::listen::Listener::open(admin, config.server.unix_socket_mode)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("could not listen on {admin} (admin_bind): {e}")
                    })?;
            admin_listeners.push(listener);
        }
        let state = AppState::build(config, migrate).await?;
        let router = router(state.clone());
        Ok(Application {
            listeners,
            admin_listeners,
            router,
            state,
        })
    }

    /// The first TCP address listened on (an error when there is none).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.local_addrs()
            .into_iter()
            .next()
            .ok_or_else(|| std::io::Error::other("not listening on TCP"))
    }

    /// The admin listener's TCP address (`admin_bind`), if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listeners
            .iter()
            .find_map(|l| l.local_addr().ok())
    }

    /// Every TCP address listened on.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Where it listens, for the log: `http://127.0.0.1:8000/, unix:/run/doorman.sock`.
    pub fn listening_on(&self) -> String {
        let all: Vec<String> = self.listeners.iter().map(|l| l.describe()).collect();
        all.join(", ")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight (up to
    /// `shutdown_timeout`).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let pruning = self
            .state
            .config
            .store
            .prune_interval
            .map(|every| tokio::spawn(prune_expired(self.state.store.clone(), every)));
        let metrics_upkeep = tokio::spawn(
            self.state
                .metrics
                .clone()
                .keep_up(crate::metrics::UPKEEP_EVERY),
        );
        let key_refresh = matches!(
            self.state.config.keys.key,
            crate::keys::KeyConfig::Generated { .. }
        )
        .then(|| tokio::spawn(refresh_keys(self.state.clone())));
        let config = &self.state.config;
        let tls = match &config.server.tls {
            Some(files) => {
                let tls = crate::serve::tls::Tls::new(files).map_err(std::io::Error::other)?;
                tls.reload_on_sighup()?;
                Some(tls)
            }
            None => None,
        };
        let limits = crate::serve::listen::ConnectionLimits {
            header_read_timeout: config.server.header_read_timeout,
            max_header_bytes: config.server.max_header_bytes,
            shutdown_timeout: config.server.shutdown_timeout,
            tls,
        };
        // One stop signal for the API listeners and the admin one.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let signal = tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let stopped_too = stopped.clone();
        let admin = if self.admin_listeners.is_empty() {
            None
        } else {
            let admin_router = admin_router(self.state.clone());
            let admin_limits = limits.clone();
            let listeners = self.admin_listeners;
            Some(tokio::spawn(crate::serve::listen::serve(
                listeners,
                admin_router,
                admin_limits,
                wait_for_stop(stopped_too),
            )))
        };
        let served = crate::serve::listen::serve(
            self.listeners,
            self.router,
            limits,
            wait_for_stop(stopped),
        )
        .await;
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        signal.abort();
        metrics_upkeep.abort();
        for task in [pruning, key_refresh].into_iter().flatten() {
            task.abort();
        }
        served
    }
}

async fn wait_for_stop(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Rereads the managed key set every `key_refresh_interval`, retires keys whose tokens have
/// all expired, and swaps the set in when it changed (a rotation made by any instance or the
/// CLI). A failure is logged and retried at the next tick; the keys in use stay.
async fn refresh_keys(state: AppState) {
    use crate::store::KeyState;
    let mut ticks = tokio::time::interval(state.config.keys.key_refresh_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    // What the stored set looked like when last applied: keys are parsed again only when it
    // changes, and an instance without a managed set keeps its configured or generated key.
    let mut applied: Option<Vec<(String, KeyState, bool)>> = None;
    loop {
        ticks.tick().await;
        let now = crate::unix_now();
        let stored = match state.store.signing_keys().await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(error = %e, "could not reload the signing keys");
                continue;
            }
        };
        let expired = |k: &crate::store::StoredKey| {
            k.state == KeyState::Retiring && k.retire_after.is_none_or(|t| t <= now)
        };
        if stored.iter().any(expired)
            && let Err(e) = state.store.retire_expired_keys(now).await
        {
            tracing::warn!(error = %e, "could not retire expired signing keys");
        }
        let shape: Vec<(String, KeyState, bool)> = stored
            .iter()
            .map(|k| (k.kid.clone(), k.state, expired(k)))
            .collect();
        if applied.as_ref() == Some(&shape) {
            continue;
        }
        match crate::keys::managed_key_set(&stored, now) {
            Ok(Some(keys)) => {
                let in_use = state.tokens.keys();
                if crate::keys::describe(&keys) != crate::keys::describe(&in_use) {
                    tracing::info!(
                        signing = keys.signing().kid().unwrap_or_default(),
                        keys = keys.keys().count(),
                        "the signing key set changed; using it now"
                    );
                    state.tokens.replace_keys(keys);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not load the stored signing keys");
                continue;
            }
        }
        applied = Some(shape);
    }
}

/// The background pruning task: every `every`, deletes outstanding (and with them
/// blacklisted) rows past their expiry, so no cron job is needed. On PostgreSQL one instance
/// at a time does it; a failure is logged and retried at the next tick.
async fn prune_expired(store: Store, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.prune_expired(time::OffsetDateTime::now_utc()).await {
            Ok(Some(0)) => {}
            Ok(Some(deleted)) => tracing::info!(deleted, "pruned expired tokens"),
            Ok(None) => tracing::debug!("another instance is pruning expired tokens"),
            Err(e) => tracing::warn!(error = %e, "could not prune expired tokens"),
        }
    }
}
