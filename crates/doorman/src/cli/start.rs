//! What every command starts from: the settings, checked against doorman's routes, and for
//! the administrative commands the migrated store.

use crate::config::{Config, Overrides};
use crate::store::settings::StoreConfig;

use super::failure::Failure;

/// The configuration every command runs with, checked against doorman's routes too.
pub fn load_config(
    file: Option<&std::path::Path>,
    overrides: &Overrides,
) -> Result<Config, Failure> {
    let config = Config::load(file, overrides).map_err(Failure::runtime)?;
    crate::router::check_static_files(&config).map_err(Failure::runtime)?;
    Ok(config)
}

/// Opens the store for an administrative command, refusing to run on an unmigrated database.
pub async fn open_store(config: &StoreConfig) -> Result<crate::store::Store, Failure> {
    crate::keys::create_private_dir(&config.data_dir)?;
    let store = crate::store::Store::connect_with(&config.database_url, &config.pool).await?;
    if store.pending_migrations().await? > 0 {
        return Err(Failure::runtime(
            "the database has pending migrations; run `doorman migrate` first",
        ));
    }
    Ok(store)
}
