//! The background jobs a serving instance runs beside its listeners: rereading the managed
//! key set, and pruning expired token rows, old audit events and login throttling rows past
//! their expiry.

use crate::audit;
use crate::state::AppState;
use crate::store::Store;

/// Rereads the managed key set every `key_refresh_interval`, retires keys whose tokens have
/// all expired, and swaps the set in when it changed (a rotation made by any instance or the
/// CLI). A failure is logged and retried at the next tick; the keys in use stay.
pub async fn refresh_keys(state: AppState) {
    use crate::store::KeyState;
    let mut ticks = tokio::time::interval(state.config.keys.key_refresh_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    // What the stored set looked like when last applied: keys are parsed again only when it
    // changes, and an instance without a managed set keeps its configured or generated key.
    let mut applied: Option<Vec<(String, KeyState, bool)>> = None;
    loop {
        ticks.tick().await;
        let now = crate::unix_now();
        let stored = match state.store.signing_keys().await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(error = %e, "could not reload the signing keys");
                continue;
            }
        };
        let expired = |k: &crate::store::StoredKey| {
            k.state == KeyState::Retiring && k.retire_after.is_none_or(|t| t <= now)
        };
        if stored.iter().any(expired) {
            match state.store.retire_expired_keys(now).await {
                Ok(kids) => {
                    for kid in kids {
                        audit::Event::new(audit::Kind::KeyRetired)
                            .detail(serde_json::json!({"kid": kid, "by": "expiry"}))
                            .record(&state.store)
                            .await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not retire expired signing keys"),
            }
        }
        let shape: Vec<(String, KeyState, bool)> = stored
            .iter()
            .map(|k| (k.kid.clone(), k.state, expired(k)))
            .collect();
        if applied.as_ref() == Some(&shape) {
            continue;
        }
        match crate::keys::managed_key_set(&stored, now) {
            Ok(Some(keys)) => {
                let in_use = state.tokens.keys();
                if crate::keys::describe(&keys) != crate::keys::describe(&in_use) {
                    tracing::info!(
                        signing = keys.signing().kid().unwrap_or_default(),
                        keys = keys.keys().count(),
                        "the signing key set changed; using it now"
                    );
                    state.tokens.replace_keys(keys);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not load the stored signing keys");
                continue;
            }
        }
        applied = Some(shape);
    }
}

/// The background pruning task: every `every`, deletes outstanding (and with them
/// blacklisted) rows whose tokens no longer decode (past their expiry plus `leeway`), and the
/// audit events older than `audit_retention` (`None`: kept for good), so no cron job is
/// needed. On PostgreSQL one instance at a time does it; a failure is logged and retried at
/// the next tick. The time it prunes by is the wall clock checked against the monotonic one
/// (`clock::TrustedTime`): a clock stepped ahead must not delete the rows that keep spent
/// tokens refused, or they would be accepted again once it is stepped back.
pub async fn prune_expired(
    store: Store,
    clock: crate::clock::WallClock,
    metrics: crate::metrics::Metrics,
    every: std::time::Duration,
    leeway: std::time::Duration,
    audit_retention: Option<std::time::Duration>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut trusted = crate::clock::TrustedTime::new(clock.now_ms(), std::time::Instant::now());
    loop {
        ticks.tick().await;
        let checked = trusted.check(clock.now_ms(), std::time::Instant::now());
        if checked.ahead_ms > 0 {
            metrics.prune_clock_ahead();
        }
        let now_ms = checked.now_ms;
        let now =
            time::OffsetDateTime::UNIX_EPOCH.saturating_add(time::Duration::milliseconds(now_ms));
        // Forgotten failures and known addresses past their time; any instance may do it.
        match store.prune_throttle(now_ms).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned login throttling rows"),
            Err(e) => tracing::warn!(error = %e, "could not prune login throttling rows"),
        }
        match store.prune_expired(now, leeway).await {
            Ok(Some(0)) => {}
            Ok(Some(deleted)) => tracing::info!(deleted, "pruned expired tokens"),
            Ok(None) => {
                tracing::debug!("another instance is pruning expired tokens");
                continue;
            }
            Err(e) => tracing::warn!(error = %e, "could not prune expired tokens"),
        }
        let Some(retention) = audit_retention else {
            continue;
        };
        match store.prune_audit_older_than(now, retention).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned old audit events"),
            Err(e) => tracing::warn!(error = %e, "could not prune old audit events"),
        }
    }
}
