//! The server's lifecycle: bind the listeners first (so the port is known, port 0 in tests),
//! build the state, then serve until told to stop, with the background jobs beside.

use std::future::Future;
use std::net::SocketAddr;

use crate::config::Config;
use crate::state::AppState;

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
        crate::router::check_static_files(&config)?;
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
        let router = crate::router::api(state.clone());
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
        let pruning = self.state.config.store.prune_interval.map(|every| {
            tokio::spawn(crate::jobs::prune_expired(
                self.state.store.clone(),
                self.state.clock.clone(),
                self.state.metrics.clone(),
                every,
                self.state.config.tokens.rules.leeway,
                self.state.config.store.audit_retention,
            ))
        });
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
        .then(|| tokio::spawn(crate::jobs::refresh_keys(self.state.clone())));
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
            http2_max_concurrent_streams: config.server.http2_max_concurrent_streams,
            http2_idle_timeout: config.server.http2_idle_timeout,
            http2_keepalive_interval: config.server.http2_keepalive_interval,
            http2_keepalive_timeout: config.server.http2_keepalive_timeout,
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
            let admin_router = crate::router::admin(self.state.clone());
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
