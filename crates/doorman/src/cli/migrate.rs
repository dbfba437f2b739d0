//! `doorman migrate [--list]`: apply pending migrations, or show each with its state (like
//! Django's `showmigrations`).

use clap::Args;

use super::failure::Failure;
use crate::store::Store;
use crate::store::settings::StoreConfig;

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// List every migration as applied [X] or pending [ ] and change nothing
    #[arg(long)]
    list: bool,
}

pub async fn run(config: &StoreConfig, args: MigrateArgs) -> Result<(), Failure> {
    crate::keys::create_private_dir(&config.data_dir)?;
    let store = Store::connect_with(&config.database_url, &config.pool).await?;
    if args.list {
        for m in store.migration_status().await? {
            let mark = if m.applied { "X" } else { " " };
            println!("[{mark}] {:04} {}", m.version, m.description);
        }
        return Ok(());
    }
    let applied = store.migrate().await?;
    if applied.is_empty() {
        println!("No migrations to apply.");
    }
    for m in applied {
        println!("Applied {:04} {}", m.version, m.description);
    }
    Ok(())
}
