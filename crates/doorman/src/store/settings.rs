//! The store's settings: where the data lives (`data_dir`, `database_url`), the connection
//! pool's limits, how often expired rows are pruned, and how long audit events are kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::PoolSettings;
use crate::config::source::{ConfigError, Sources};
use crate::config::values;

/// The store's settings as the layers give them.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct StoreSettings {
    data_dir: PathBuf,
    database_url: Option<String>,
    #[serde(with = "values::count")]
    database_max_connections: usize,
    #[serde(with = "values::duration")]
    database_acquire_timeout: Duration,
    #[serde(with = "values::duration")]
    database_statement_timeout: Duration,
    #[serde(with = "values::duration")]
    prune_interval: Duration,
    #[serde(with = "values::duration")]
    audit_retention: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            data_dir: PathBuf::from("doorman-data"),
            database_url: None,
            database_max_connections: 0,
            database_acquire_timeout: PoolSettings::default().acquire_timeout,
            database_statement_timeout: PoolSettings::default().statement_timeout,
            prune_interval: Duration::from_secs(3600),
            audit_retention: DEFAULT_AUDIT_RETENTION,
        }
    }
}

/// 90 days: long enough to look back over a quarter when something comes to light late, short
/// enough that a login storm's failures don't pile up for good.
const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// Where doorman keeps its data and how it uses the database.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The SQLite database's home by default, and a generated signing key's.
    pub data_dir: PathBuf,
    pub database_url: String,
    pub pool: PoolSettings,
    /// How often expired outstanding and blacklisted rows are deleted; `None` turns the
    /// background task off (`flush-expired-tokens` still works).
    pub prune_interval: Option<Duration>,
    /// How long audit events are kept; older ones go with the pruning (the background task
    /// and `flush-expired-tokens`). `None` keeps them for good.
    pub audit_retention: Option<Duration>,
}

impl StoreSettings {
    /// The data directory, which other sections put files in too (a generated key).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn validate(self, src: &Sources) -> Result<StoreConfig, ConfigError> {
        let acquire_timeout =
            src.nonzero("database_acquire_timeout", self.database_acquire_timeout)?;
        let statement_timeout = src.nonzero(
            "database_statement_timeout",
            self.database_statement_timeout,
        )?;
        let max_connections = match self.database_max_connections {
            0 => None,
            n => Some(
                u32::try_from(n)
                    .ok()
                    .filter(|n| *n <= 10_000)
                    .ok_or_else(|| {
                        src.fail("database_max_connections", "expected at most 10000")
                    })?,
            ),
        };
        let database_url = self.database_url.unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.data_dir.join("doorman.sqlite3").display()
            )
        });
        Ok(StoreConfig {
            data_dir: self.data_dir,
            database_url,
            pool: PoolSettings {
                max_connections,
                acquire_timeout,
                statement_timeout,
            },
            prune_interval: Some(self.prune_interval).filter(|i| !i.is_zero()),
            audit_retention: Some(self.audit_retention).filter(|r| !r.is_zero()),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::PoolSettings;
    use crate::config::Overrides;
    use crate::config::testing::load;

    #[test]
    fn pool_and_pruning_settings() {
        let c = load(None, &[], Overrides::default()).unwrap();
        assert_eq!(c.store.pool, PoolSettings::default());
        assert_eq!(c.store.prune_interval, Some(Duration::from_secs(3600)));
        assert_eq!(
            c.store.audit_retention,
            Some(Duration::from_secs(90 * 24 * 3600))
        );
        let c = load(
            Some("audit_retention = \"30d\"\n"),
            &[],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.store.audit_retention,
            Some(Duration::from_secs(30 * 24 * 3600))
        );
        let c = load(
            None,
            &[("DOORMAN_AUDIT_RETENTION", "0")],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.store.audit_retention, None,
            "0 keeps audit events for good"
        );
        let c = load(
            Some("database_max_connections = 32\nprune_interval = \"0\"\n"),
            &[
                ("DOORMAN_DATABASE_ACQUIRE_TIMEOUT", "2"),
                ("DOORMAN_DATABASE_STATEMENT_TIMEOUT", "1m"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.store.pool,
            PoolSettings {
                max_connections: Some(32),
                acquire_timeout: Duration::from_secs(2),
                statement_timeout: Duration::from_secs(60),
            }
        );
        assert_eq!(c.store.prune_interval, None, "0 turns pruning off");
        for (name, value) in [
            ("DOORMAN_DATABASE_ACQUIRE_TIMEOUT", "0"),
            ("DOORMAN_DATABASE_STATEMENT_TIMEOUT", "0s"),
            ("DOORMAN_DATABASE_MAX_CONNECTIONS", "100000"),
        ] {
            let err = load(None, &[(name, value)], Overrides::default())
                .unwrap_err()
                .to_string();
            let setting = name.trim_start_matches("DOORMAN_").to_lowercase();
            assert!(err.contains(&setting) && err.contains(name), "{err}");
        }
    }
}
