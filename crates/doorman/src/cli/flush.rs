//! `doorman flush-expired-tokens`: simplejwt's `flushexpiredtokens`, for cron or by hand.

use super::failure::Failure;
use super::start::open_store;
use crate::config::Config;

pub async fn run(config: &Config) -> Result<(), Failure> {
    let store = open_store(&config.store).await?;
    // Tokens still decode for `leeway` after they expire; their rows stay until then.
    let removed = store
        .flush_expired(time::OffsetDateTime::now_utc(), config.tokens.rules.leeway)
        .await?;
    println!("Deleted {removed} expired token(s).");
    Ok(())
}
