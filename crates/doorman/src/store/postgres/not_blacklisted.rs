//! "Not blacklisted" answers kept for PostgreSQL's blacklist checks, made exact by
//! `LISTEN`/`NOTIFY`.
//!
//! A refresh (rotation off) or the verify of a refresh token asks whether the token is
//! blacklisted; on PostgreSQL that is a round trip to the server each time, most of either
//! request's cost. Almost every answer is "no", and a "no" can only turn into "yes" by a
//! blacklisting, which PostgreSQL announces: the `doorman_blacklisted` trigger (migration
//! 0009) notifies the token's jti when any transaction that blacklisted it commits, whoever
//! made it (an instance, the CLI, an import, SQL by hand).
//!
//! So an instance keeps the "no" answers, `user_cache_ttl` at most each and `user_cache_size`
//! in all, and forgets one the moment its notification arrives:
//! - a blacklisting made through this instance is forgotten before its request is answered;
//! - one made elsewhere as soon as PostgreSQL delivers its notification (milliseconds), and in
//!   any case within `user_cache_ttl`;
//! - answers are only kept and used while the listening connection is up: when it breaks,
//!   everything kept is forgotten and lookups go to the database until a new connection
//!   listens again (notifications sent in between are lost, and with them nothing kept).
//!
//! A lookup that races a notification keeps nothing: every notification bumps a generation,
//! and an answer is kept only if the generation did not move between the start of its lookup
//! and after it was stored (stored first, then checked, then withdrawn if it moved, so no
//! interleaving leaves a stale answer kept).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::watch;

/// The channel the migration's trigger notifies.
const CHANNEL: &str = "doorman_blacklisted";
/// The payload that means "forget everything" (many tokens blacklisted at once).
const EVERYTHING: &str = "*";
/// Longer jtis are never kept (the trigger notifies `*` for them).
const LONGEST_KEPT_JTI: usize = 4000;
/// The pause between attempts to listen again, doubled up to [`RELISTEN_MAX`].
const RELISTEN_FIRST: Duration = Duration::from_millis(50);
const RELISTEN_MAX: Duration = Duration::from_secs(2);

/// The kept answers; shared by the store's clones, and found by the listening task through a
/// weak reference, so the task ends when the last store is dropped.
pub(super) type Shared = Arc<OnceLock<NotBlacklisted>>;

pub(crate) struct NotBlacklisted {
    kept: moka::sync::Cache<String, ()>,
    /// Bumped by every forgetting; see the module's documentation.
    generation: AtomicU64,
    /// Whether the listening connection is up; nothing is kept or used while it isn't.
    listening: AtomicBool,
    /// Dropped with this, which ends the listening task.
    _stop: watch::Sender<()>,
    /// The listening connection's own pool (one connection), closed with the store.
    pool: PgPool,
    /// `doorman_blacklist_lookups_total{source="kept"}` and `{source="database"}`.
    from_kept: metrics::Counter,
    from_database: metrics::Counter,
}

impl std::fmt::Debug for NotBlacklisted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotBlacklisted")
            .field("kept", &self.kept.entry_count())
            .field("listening", &self.listening.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Where a lookup started: what [`NotBlacklisted::keep`] checks before keeping its answer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ticket(u64);

impl NotBlacklisted {
    /// Starts keeping answers in `shared` (once; later calls change nothing), listening on a
    /// connection of `pool`'s own, which should have room for one.
    pub(super) fn start(
        shared: &Shared,
        pool: PgPool,
        ttl: Duration,
        size: u64,
        metrics: &crate::metrics::Metrics,
    ) {
        let (stop, stopped) = watch::channel(());
        let cache = NotBlacklisted {
            kept: moka::sync::Cache::builder()
                .max_capacity(size)
                .time_to_live(ttl)
                .build(),
            generation: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            _stop: stop,
            pool: pool.clone(),
            from_kept: metrics.blacklist_lookups("kept"),
            from_database: metrics.blacklist_lookups("database"),
        };
        if shared.set(cache).is_ok() {
            tokio::spawn(listen(Arc::downgrade(shared), pool, stopped));
        }
    }

    /// Whether the database said "not blacklisted" for `jti` recently enough, with nothing
    /// heard since.
    pub(super) fn known(&self, jti: &str) -> bool {
        let known = self.listening.load(Ordering::SeqCst) && self.kept.contains_key(jti);
        if known {
            self.from_kept.increment(1);
        }
        known
    }

    /// Taken before a lookup (in the database) whose "no" may be kept; `None` while not
    /// listening.
    pub(super) fn ticket(&self) -> Option<Ticket> {
        self.from_database.increment(1);
        let generation = self.generation.load(Ordering::SeqCst);
        self.listening
            .load(Ordering::SeqCst)
            .then_some(Ticket(generation))
    }

    /// Keeps the database's "not blacklisted" for `jti`, unless something was forgotten since
    /// `ticket` was taken.
    pub(super) fn keep(&self, jti: &str, ticket: Ticket) {
        if jti.len() > LONGEST_KEPT_JTI {
            return;
        }
        self.kept.insert(jti.to_owned(), ());
        if self.generation.load(Ordering::SeqCst) != ticket.0
            || !self.listening.load(Ordering::SeqCst)
        {
            self.kept.invalidate(jti);
        }
    }

    /// Forgets `jti` (blacklisted now).
    pub(super) fn forget(&self, jti: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.kept.invalidate(jti);
    }

    /// Forgets everything (many tokens blacklisted at once, or the listening connection lost).
    pub(super) fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.kept.invalidate_all();
    }

    /// Stops listening (the store is closing).
    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    fn heard(&self, payload: &str) {
        if payload == EVERYTHING {
            self.forget_all();
        } else {
            self.forget(payload);
        }
    }

    fn set_listening(&self, listening: bool) {
        if listening {
            self.forget_all();
            self.listening.store(true, Ordering::SeqCst);
        } else {
            self.listening.store(false, Ordering::SeqCst);
            self.forget_all();
        }
    }
}

/// The listening task: listens, forwards each notification, and when the connection breaks
/// stops the answers' use and listens again (pausing between failed attempts), until the store
/// is dropped or closed.
async fn listen(
    shared: Weak<OnceLock<NotBlacklisted>>,
    pool: PgPool,
    mut stop: watch::Receiver<()>,
) {
    let mut pause = RELISTEN_FIRST;
    loop {
        let subscribed = tokio::select! {
            _ = stop.changed() => return,
            subscribed = subscribe(&pool) => subscribed,
        };
        let mut listener = match subscribed {
            Ok(listener) => listener,
            Err(_) if pool.is_closed() => return,
            Err(e) => {
                tracing::debug!(error = %e, "could not listen for blacklistings; retrying");
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(RELISTEN_MAX);
                continue;
            }
        };
        pause = RELISTEN_FIRST;
        match shared.upgrade() {
            Some(shared) => {
                if let Some(cache) = shared.get() {
                    cache.set_listening(true);
                }
            }
            None => return,
        }
        loop {
            let next = tokio::select! {
                _ = stop.changed() => return,
                next = listener.try_recv() => next,
            };
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let Some(cache) = shared.get() else {
                return;
            };
            match next {
                Ok(Some(notification)) => cache.heard(notification.payload()),
                Ok(None) | Err(_) => {
                    cache.set_listening(false);
                    tracing::debug!("the connection listening for blacklistings was lost");
                    break;
                }
            }
        }
        if pool.is_closed() {
            return;
        }
    }
}

async fn subscribe(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection is noticed (`Ok(None)`) before it is replaced, by this task.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
