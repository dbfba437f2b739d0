//! The accounts' settings: how the user behind a token is checked (and cached, and trusted
//! while the database is out), how many passwords are hashed at once, whether Django's MD5
//! hashes are checked, whether a login is recorded, and how failed logins are throttled
//! (`docs/throttling.md`).

use std::time::Duration;

use serde::Deserialize;

use crate::config::source::{ConfigError, Sources};
use crate::config::values::{self, Flag};
use crate::store::throttle::{Bucket, ThrottleRules};

/// `login_queue_max`'s default, per hash worker: deep enough that a burst of logins from one
/// service's workers (tens at once) waits its turn instead of being shed, shallow enough that
/// an admitted login waits at most 32 hashes (about 0.6 s at 20 ms a hash) before its own.
const DEFAULT_LOGIN_QUEUE_PER_WORKER: usize = 32;

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
    #[serde(with = "values::count")]
    login_queue_max: usize,
    accept_md5_password_hashes: Flag,
    update_last_login: Flag,
    login_throttle: Flag,
    #[serde(with = "values::count")]
    login_free_attempts: usize,
    #[serde(with = "values::count")]
    login_account_free_attempts: usize,
    #[serde(with = "values::count")]
    login_account_max_failures: usize,
    #[serde(with = "values::count")]
    login_address_free_attempts: usize,
    #[serde(with = "values::duration")]
    login_backoff_base: Duration,
    #[serde(with = "values::duration")]
    login_backoff_max: Duration,
    #[serde(with = "values::duration")]
    login_throttle_window: Duration,
    #[serde(with = "values::duration")]
    login_known_address_ttl: Duration,
    rate_limit_url: Option<String>,
    rate_limit_prefix: String,
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            check_user_is_active: Flag(true),
            accept_tokens_during_outage: Flag(true),
            user_cache_ttl: Duration::from_secs(1),
            user_cache_size: 100_000,
            password_hash_workers: 0,
            login_queue_max: 0,
            accept_md5_password_hashes: Flag(false),
            update_last_login: Flag(false),
            login_throttle: Flag(true),
            login_free_attempts: 5,
            login_account_free_attempts: 20,
            login_account_max_failures: 100,
            login_address_free_attempts: 100,
            login_backoff_base: Duration::from_secs(1),
            login_backoff_max: Duration::from_secs(15 * 60),
            login_throttle_window: Duration::from_secs(24 * 3600),
            login_known_address_ttl: Duration::from_secs(30 * 24 * 3600),
            rate_limit_url: None,
            rate_limit_prefix: "doorman".to_owned(),
        }
    }
}

/// How failed logins are throttled (`docs/throttling.md`).
#[derive(Clone, Debug)]
pub struct LoginThrottleConfig {
    /// Off: no counter is kept or consulted.
    pub enabled: bool,
    pub rules: ThrottleRules,
    /// Where the counters live when not in the database: a Redis server's URL.
    pub redis_url: Option<String>,
    /// What every Redis key of doorman's starts with, so several deployments (or tests) can
    /// share one server.
    pub redis_prefix: String,
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
    /// Logins that may wait for a hash worker beyond those hashing (32 per worker unless
    /// set); a login beyond them is refused at once with 503, so an admitted one waits for at
    /// most `login_queue_max / password_hash_workers` hashes before its own.
    pub login_queue_max: usize,
    /// Django's salted MD5 hashes (`md5$...`) log in (and are upgraded) instead of being
    /// refused; off by default (`docs/security.md` says why).
    pub accept_md5_password_hashes: bool,
    /// A login sets the user's `last_login`, as Django's `update_last_login` does.
    pub update_last_login: bool,
    pub login_throttle: LoginThrottleConfig,
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
        let login_queue_max = match self.login_queue_max {
            0 => password_hash_workers.saturating_mul(DEFAULT_LOGIN_QUEUE_PER_WORKER),
            n if n > 100_000 => {
                return Err(src.fail("login_queue_max", "expected at most 100000"));
            }
            n => n,
        };
        let login_throttle = self.login_throttle_config(src)?;
        Ok(AccountsConfig {
            check_user_is_active: self.check_user_is_active.0,
            accept_tokens_during_outage: self.accept_tokens_during_outage.0,
            user_cache_ttl: Some(self.user_cache_ttl).filter(|t| !t.is_zero()),
            user_cache_size: u64::try_from(self.user_cache_size).unwrap_or(u64::MAX),
            password_hash_workers,
            login_queue_max,
            accept_md5_password_hashes: self.accept_md5_password_hashes.0,
            update_last_login: self.update_last_login.0,
            login_throttle,
        })
    }

    fn login_throttle_config(&self, src: &Sources) -> Result<LoginThrottleConfig, ConfigError> {
        let attempts = |key: &str, n: usize| -> Result<u32, ConfigError> {
            match u32::try_from(n) {
                Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
                _ => Err(src.fail(key, "expected a number of attempts from 1 to 1000000")),
            }
        };
        let pair = attempts("login_free_attempts", self.login_free_attempts)?;
        let account = attempts(
            "login_account_free_attempts",
            self.login_account_free_attempts,
        )?;
        let address = attempts(
            "login_address_free_attempts",
            self.login_address_free_attempts,
        )?;
        let ceiling = match self.login_account_max_failures {
            0 => None,
            n => match u32::try_from(n) {
                Ok(n) if n >= account => Some(n),
                _ => {
                    return Err(src.fail(
                        "login_account_max_failures",
                        format!(
                            "expected 0 (no ceiling) or at least login_account_free_attempts ({account})"
                        ),
                    ));
                }
            },
        };
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let positive = |key: &str, d: Duration| match d.is_zero() {
            true => Err(src.fail(key, "expected a duration longer than 0 seconds")),
            false => Ok(d),
        };
        let base = positive("login_backoff_base", self.login_backoff_base)?;
        if self.login_backoff_max < base {
            return Err(src.fail("login_backoff_max", "expected at least login_backoff_base"));
        }
        if self.login_throttle_window < self.login_backoff_max {
            return Err(src.fail(
                "login_throttle_window",
                "expected at least login_backoff_max (failures must be remembered while they block)",
            ));
        }
        let known = positive("login_known_address_ttl", self.login_known_address_ttl)?;
        let redis_url = match self.rate_limit_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) if url.starts_with("redis://") || url.starts_with("redis+unix://") => {
                Some(url.to_owned())
            }
            Some(_) => {
                return Err(src.fail(
                    "rate_limit_url",
                    "expected a redis:// or redis+unix:// URL, or nothing for the database",
                ));
            }
        };
        let prefix = self.rate_limit_prefix.trim();
        if prefix.is_empty() || prefix.len() > 64 || prefix.chars().any(char::is_whitespace) {
            return Err(src.fail(
                "rate_limit_prefix",
                "expected 1 to 64 characters without spaces",
            ));
        }
        Ok(LoginThrottleConfig {
            enabled: self.login_throttle.0,
            rules: ThrottleRules {
                pair: Bucket {
                    free: pair,
                    ceiling: None,
                },
                account: Bucket {
                    free: account,
                    ceiling,
                },
                address: Bucket {
                    free: address,
                    ceiling: None,
                },
                base_ms: millis(base),
                max_ms: millis(self.login_backoff_max),
                window_ms: millis(self.login_throttle_window),
                known_ms: millis(known),
            },
            redis_url,
            redis_prefix: prefix.to_owned(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::Overrides;
    use crate::config::testing::load;
    use crate::store::throttle::Bucket;

    #[test]
    fn login_throttle_defaults_and_values() {
        let c = load(None, &[], Overrides::default()).unwrap();
        let t = c.accounts.login_throttle;
        assert!(t.enabled && t.redis_url.is_none());
        assert_eq!(
            t.rules.pair,
            Bucket {
                free: 5,
                ceiling: None
            }
        );
        assert_eq!(
            t.rules.account,
            Bucket {
                free: 20,
                ceiling: Some(100)
            }
        );
        assert_eq!(t.rules.address.free, 100);
        assert_eq!((t.rules.base_ms, t.rules.max_ms), (1_000, 900_000));
        assert_eq!(t.rules.window_ms, 86_400_000);
        assert_eq!(t.rules.known_ms, 30 * 86_400_000);
        let c = load(
            Some("login_account_max_failures = 0\nrate_limit_url = \"redis://127.0.0.1:6379/2\"\n"),
            &[("DOORMAN_LOGIN_BACKOFF_BASE", "250ms")],
            Overrides::default(),
        )
        .unwrap();
        let t = c.accounts.login_throttle;
        assert_eq!(t.rules.account.ceiling, None, "0: no ceiling");
        assert_eq!(t.rules.base_ms, 250);
        assert_eq!(t.redis_url.as_deref(), Some("redis://127.0.0.1:6379/2"));
    }

    #[test]
    fn bad_login_throttle_settings_are_named_and_explained() {
        for (name, value, expected) in [
            ("DOORMAN_LOGIN_FREE_ATTEMPTS", "0", "from 1 to 1000000"),
            (
                "DOORMAN_LOGIN_ADDRESS_FREE_ATTEMPTS",
                "many",
                "whole number",
            ),
            (
                "DOORMAN_LOGIN_ACCOUNT_MAX_FAILURES",
                "10",
                "at least login_account_free_attempts",
            ),
            ("DOORMAN_LOGIN_BACKOFF_BASE", "0", "longer than 0"),
            (
                "DOORMAN_LOGIN_BACKOFF_MAX",
                "500ms",
                "at least login_backoff_base",
            ),
            (
                "DOORMAN_LOGIN_THROTTLE_WINDOW",
                "1m",
                "at least login_backoff_max",
            ),
            ("DOORMAN_RATE_LIMIT_URL", "http://cache:6379", "redis://"),
            ("DOORMAN_RATE_LIMIT_PREFIX", "two words", "without spaces"),
        ] {
            let err = load(None, &[(name, value)], Overrides::default())
                .unwrap_err()
                .to_string();
            let setting = name.trim_start_matches("DOORMAN_").to_lowercase();
            assert!(err.contains(&setting) && err.contains(name), "{err}");
            assert!(err.contains(expected), "{name}: {err}");
        }
    }
}
