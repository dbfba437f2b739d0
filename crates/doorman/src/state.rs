//! The state every request may need, built once at start-up and shared by reference. Handlers
//! import it; it imports no handler.

use std::sync::Arc;

use doorman_guard::Guard;
use doorman_token::Tokens;

use crate::accounts::throttle::LoginThrottle;
use crate::accounts::{Accounts, PasswordHasher, StoreUserCheck};
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
    /// Failed-login counters, consulted before any password is hashed.
    pub throttle: LoginThrottle,
    pub guard: Guard,
    /// The guard's user check, which revocations made here update at once.
    pub users: Arc<StoreUserCheck>,
    pub metrics: crate::metrics::Metrics,
    /// The wall clock token times and pruning read (see `clock`).
    pub clock: crate::clock::WallClock,
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
        // Reads are served from a read-only database (tokens verify, users are looked up), so
        // it is not refused; but the operator hears of it now, not from the first 503.
        if let Ok(false) = store.writable().await {
            let database = match config.store.database_url.split_once("://") {
                Some(("postgres" | "postgresql", _)) => "the PostgreSQL database".to_owned(),
                _ => config.store.database_url.clone(),
            };
            tracing::warn!(
                %database,
                "the database is read-only: writes (logins, refreshes, blacklisting) will answer \
                 503 and /readyz says not ready until it takes writes again"
            );
        }
        let keys = crate::keys::effective(&config.keys.key, &store).await?;
        let tokens = Arc::new(Tokens::new(keys, config.tokens.rules.clone()));
        let metrics = crate::metrics::Metrics::new();
        if let Some(ttl) = config.accounts.user_cache_ttl {
            store.hold_blacklist(ttl, config.accounts.user_cache_size, &metrics);
        }
        let hasher = PasswordHasher::new(config.accounts.password_hash_workers)
            .with_md5(config.accounts.accept_md5_password_hashes)
            .with_metrics(metrics.clone());
        let clock = crate::clock::WallClock::default();
        let accounts = Accounts::new(store.clone(), hasher).with_clock(clock.clone());
        let users = StoreUserCheck::shared(
            store.clone(),
            config.accounts.check_user_is_active,
            config.accounts.accept_tokens_during_outage,
            config.accounts.user_cache_ttl,
            config.accounts.user_cache_size,
            &metrics,
        );
        let throttle = LoginThrottle::new(&config.accounts.login_throttle, store.clone())?;
        tracing::info!(counters = throttle.backend(), "login throttling");
        if config.cookies.enabled && !config.cookies.secure {
            tracing::warn!(
                "token_cookie_secure is off: the token cookies go over plain http too; for development only"
            );
        }
        let guard = Guard::from_shared(tokens.clone())
            .with_header_types(config.tokens.auth_header_types.clone())
            .with_user_check(users.clone());
        Ok(AppState(Arc::new(Shared {
            config: Arc::new(config),
            tokens,
            store,
            accounts,
            throttle,
            guard,
            users,
            metrics,
            clock,
        })))
    }
}
