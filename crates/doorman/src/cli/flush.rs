//! `doorman flush-expired-tokens`: simplejwt's `flushexpiredtokens`, for cron or by hand.

use super::failure::Failure;
use super::start::open_store;
use crate::store::settings::StoreConfig;

pub async fn run(config: &StoreConfig) -> Result<(), Failure> {
    let store = open_store(config).await?;
    let removed = store.flush_expired(time::OffsetDateTime::now_utc()).await?;
    println!("Deleted {removed} expired token(s).");
    Ok(())
}
