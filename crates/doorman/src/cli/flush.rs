//! `doorman flush-expired-tokens`: simplejwt's `flushexpiredtokens`, for cron or by hand; it
//! also deletes the audit events older than `audit_retention` and the login throttle's rows past
//! their expiry, as the background pruning does.

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
    if let Some(retention) = config.store.audit_retention {
        let pruned = store
            .prune_audit_older_than(time::OffsetDateTime::now_utc(), retention)
            .await?;
        // Said only when there was something to delete, so the answer stays one line for
        // scripts that read it.
        if pruned > 0 {
            println!("Deleted {pruned} audit event(s) older than the audit_retention.");
        }
    }
    // Forgotten failures and known addresses past their time; not worth a line of output.
    store
        .prune_throttle(crate::accounts::throttle::now_ms())
        .await?;
    Ok(())
}
