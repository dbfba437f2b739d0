//! The accounts' settings: how the user behind a token is checked (and cached, and trusted
//! while the database is out), how many passwords are hashed at once, and whether a login is
//! recorded.

use std::time::Duration;

use serde::Deserialize;

use crate::config::source::{ConfigError, Sources};
use crate::config::values::{self, Flag};

/// The accounts' settings as the layers give them.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct AccountSettings {
    check_user_is_active: Flag,
    accept_tokens_during_outage: Flag,
    #[serde(with = "values::duration")]
    user_cache_ttl: Duration,
    #[serde(with = "values::count")]
    user_cache_size: usize,
    #[serde(with = "values::count")]
    password_hash_workers: usize,
    update_last_login: Flag,
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            check_user_is_active: Flag(true),
            accept_tokens_during_outage: Flag(true),
            user_cache_ttl: Duration::from_secs(1),
            user_cache_size: 100_000,
            password_hash_workers: 0,
            update_last_login: Flag(false),
        }
    }
}

/// How users are checked and their passwords hashed.
#[derive(Clone, Debug)]
pub struct AccountsConfig {
    pub check_user_is_active: bool,
    /// When the database can't be reached, a valid access token is accepted without the user
    /// lookup (and the outage logged) instead of answering 503.
    pub accept_tokens_during_outage: bool,
    /// How long an instance reuses a user lookup for authenticated requests, i.e. the longest a
    /// deactivated or deleted user's access tokens keep working on any instance; `None`: every
    /// request looks the user up.
    pub user_cache_ttl: Option<Duration>,
    /// Most users the cache holds at once.
    pub user_cache_size: u64,
    /// Passwords hashed at once (one per core unless set).
    pub password_hash_workers: usize,
    /// A login sets the user's `last_login`, as Django's `update_last_login` does.
    pub update_last_login: bool,
}

impl AccountSettings {
    pub fn validate(self, src: &Sources) -> Result<AccountsConfig, ConfigError> {
        if self.user_cache_ttl > Duration::from_secs(60) {
            return Err(src.fail(
                "user_cache_ttl",
                "expected at most 60 seconds (it bounds how long a deactivated user keeps access)",
            ));
        }
        let password_hash_workers = match self.password_hash_workers {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        };
        Ok(AccountsConfig {
            check_user_is_active: self.check_user_is_active.0,
            accept_tokens_during_outage: self.accept_tokens_during_outage.0,
            user_cache_ttl: Some(self.user_cache_ttl).filter(|t| !t.is_zero()),
            user_cache_size: u64::try_from(self.user_cache_size).unwrap_or(u64::MAX),
            password_hash_workers,
            update_last_login: self.update_last_login.0,
        })
    }
}
