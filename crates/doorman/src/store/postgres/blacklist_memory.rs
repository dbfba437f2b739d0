//! The blacklist in memory, for PostgreSQL's blacklist checks, made exact by `LISTEN`/`NOTIFY`.
//!
//! A refresh (rotation off) or the verify of a refresh token asks whether the token is
//! blacklisted; on PostgreSQL a round trip to the server each time, most of either request's
//! cost. But the blacklist only ever grows by blacklistings, and PostgreSQL announces each: the
//! `doorman_blacklisted` trigger (migration 0009) notifies the token's expiry and jti when any
//! transaction that blacklisted it commits, whoever made it (an instance, the CLI, an import,
//! SQL by hand). So a serving instance holds the blacklist in memory:
//!
//! 1. **The whole blacklist** (the jtis of every blacklisted token, until pruned), while it has
//!    at most `user_cache_size` of them: listening first, then reading them all, then
//!    adding each one notified. While that copy is whole, a lookup needs no database at all.
//! 2. Otherwise (too many; being read again; the listening connection down), the database is
//!    asked, and its **"not blacklisted" answers are kept**, each `user_cache_ttl` at most.
//!
//! What holds either way:
//! - a blacklisting made through this instance is known to it before its request is answered;
//! - one made elsewhere as soon as PostgreSQL delivers its notification (milliseconds), and in
//!   any case within `user_cache_ttl`;
//! - nothing is answered from memory while the listening connection is down: when it breaks,
//!   the copy counts as partial and the kept answers are forgotten, until a new connection
//!   listens and the blacklist has been read again (notifications sent in between are lost,
//!   and with them nothing that was relied on);
//! - a lookup that races a notification keeps nothing: every notification bumps a generation,
//!   and an answer is kept only if the generation did not move between the start of its lookup
//!   and after it was stored (stored first, then checked, then withdrawn if it moved); a read
//!   of the whole blacklist is only taken as whole if nothing made it partial meanwhile.
//!
//! Every jti in the copy is blacklisted for good (rows are only deleted once expired), so the
//! copy is never wrong about what it holds, only possibly missing some; "whole" is what lets
//! it answer "no".

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{Notify, watch};

/// The channel the migration's trigger notifies.
const CHANNEL: &str = "doorman_blacklisted";
/// The payload that means "many tokens were blacklisted at once: read the blacklist again".
const EVERYTHING: &str = "*";
/// Longer jtis are never kept (the trigger notifies `*` for them).
const LONGEST_KEPT_JTI: usize = 4000;
/// The pause between attempts to listen again, doubled up to [`RELISTEN_MAX`].
const RELISTEN_FIRST: Duration = Duration::from_millis(50);
const RELISTEN_MAX: Duration = Duration::from_secs(2);
/// How often a blacklist too big to hold is counted again.
const RECOUNT_EVERY: Duration = Duration::from_secs(60);

/// What is known; shared by the store's clones, and found by the listening task through a weak
/// reference, so the task ends when the last store is dropped.
pub(super) type Shared = Arc<OnceLock<BlacklistMemory>>;

pub(crate) struct BlacklistMemory {
    /// The blacklist's jtis (and expiries) known here; see [`Copy`].
    copy: RwLock<Copy>,
    /// At most this many jtis in the copy (`user_cache_size`).
    most: usize,
    /// Bumped by whatever makes the copy partial; a read of the whole blacklist is taken as
    /// whole only if this did not move while it ran.
    partial_since: AtomicU64,
    /// Asks the listening task to read the whole blacklist again (shared with the task, which
    /// waits on it without holding the rest).
    reread: Arc<Notify>,
    /// The database's "not blacklisted" answers, used while the copy is partial.
    kept: moka::sync::Cache<String, ()>,
    /// Bumped by every forgetting of a kept answer; see the module's documentation.
    generation: AtomicU64,
    /// Whether the listening connection is up; nothing is answered from memory while it isn't.
    listening: AtomicBool,
    /// Dropped with this, which ends the listening task.
    _stop: watch::Sender<()>,
    /// The listening connection's own pool (one connection), closed with the store.
    pool: PgPool,
    /// `doorman_blacklist_lookups_total{source="memory"}` and `{source="database"}`.
    from_memory: metrics::Counter,
    from_database: metrics::Counter,
}

/// The jtis known to be blacklisted, with their tokens' expiries.
#[derive(Default)]
struct Copy {
    jtis: HashMap<String, i64>,
    /// Whether every blacklisted token not yet expired is in `jtis`.
    whole: bool,
}

impl std::fmt::Debug for BlacklistMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlacklistMemory")
            .field("kept", &self.kept.entry_count())
            .field("listening", &self.listening.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Where a lookup started: what [`BlacklistMemory::keep`] checks before keeping its answer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ticket(u64);

impl BlacklistMemory {
    /// Starts holding the blacklist in `shared` (once; later calls change nothing), listening
    /// on a connection of `pool`'s own, which should have room for one.
    pub(super) fn start(
        shared: &Shared,
        pool: PgPool,
        ttl: Duration,
        size: u64,
        metrics: &crate::metrics::Metrics,
    ) {
        let (stop, stopped) = watch::channel(());
        let cache = BlacklistMemory {
            copy: RwLock::new(Copy::default()),
            most: usize::try_from(size).unwrap_or(usize::MAX),
            partial_since: AtomicU64::new(0),
            reread: Arc::new(Notify::new()),
            kept: moka::sync::Cache::builder()
                .max_capacity(size)
                .time_to_live(ttl)
                .build(),
            generation: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            _stop: stop,
            pool: pool.clone(),
            from_memory: metrics.blacklist_lookups("memory"),
            from_database: metrics.blacklist_lookups("database"),
        };
        let reread = cache.reread.clone();
        if shared.set(cache).is_ok() {
            tokio::spawn(listen(Arc::downgrade(shared), pool, reread, stopped));
        }
    }

    /// Whether `jti` is blacklisted, when that is known here without asking the database.
    pub(super) fn known(&self, jti: &str) -> Option<bool> {
        if !self.listening.load(Ordering::SeqCst) {
            return None;
        }
        let known = {
            let copy = self.copy.read().unwrap_or_else(|e| e.into_inner());
            match copy.jtis.get(jti) {
                // Expired, the token may have been pruned already: the database says.
                Some(expires_at) if *expires_at <= crate::unix_now() => None,
                Some(_) => Some(true),
                None => copy.whole.then_some(false),
            }
        };
        let known = known.or_else(|| self.kept.contains_key(jti).then_some(false));
        if known.is_some() {
            self.from_memory.increment(1);
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

    /// `jti` (of a token expiring at `expires_at`) is blacklisted now.
    pub(super) fn blacklisted(&self, jti: &str, expires_at: i64) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.kept.invalidate(jti);
        let mut copy = self.copy.write().unwrap_or_else(|e| e.into_inner());
        copy.jtis.insert(jti.to_owned(), expires_at);
        if copy.jtis.len() > self.most {
            // Too many to hold: asked of the database again, until a recount finds room. (No
            // entry is dropped for having expired by the wall clock: a clock stepped forward
            // and then back would make the copy miss tokens the database still holds.)
            self.partial_since.fetch_add(1, Ordering::SeqCst);
            *copy = Copy::default();
        }
    }

    /// Tokens not known one by one were blacklisted (many at once): the copy is partial and
    /// every kept answer forgotten, until the blacklist has been read again.
    pub(super) fn blacklisted_unknown(&self) {
        self.partial_since.fetch_add(1, Ordering::SeqCst);
        self.copy.write().unwrap_or_else(|e| e.into_inner()).whole = false;
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.kept.invalidate_all();
        self.reread.notify_one();
    }

    /// Stops listening (the store is closing).
    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    fn heard(&self, payload: &str) {
        let parsed = payload
            .split_once(' ')
            .and_then(|(expires_at, jti)| Some((expires_at.parse::<i64>().ok()?, jti)));
        match parsed {
            Some((expires_at, jti)) if payload != EVERYTHING => self.blacklisted(jti, expires_at),
            // `*`, or a payload from another release: read everything again.
            _ => self.blacklisted_unknown(),
        }
    }

    fn stopped_listening(&self) {
        self.listening.store(false, Ordering::SeqCst);
        self.blacklisted_unknown();
    }

    /// Reads the whole blacklist (expired rows not yet pruned too: whether a token has expired
    /// is the wall clock's say, which may step back) on `listener`'s connection, which listens
    /// already, so a blacklisting committed after the read's snapshot is notified: the copy is
    /// whole once both are in, unless something made it partial meanwhile or there are more
    /// than it may hold.
    async fn read_whole(&self, listener: &mut PgListener) -> Result<(), sqlx::Error> {
        let since = self.partial_since.load(Ordering::SeqCst);
        let limit = i64::try_from(self.most.saturating_add(1)).unwrap_or(i64::MAX);
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT o.jti, o.expires_at FROM blacklisted_tokens b
             JOIN outstanding_tokens o ON o.id = b.token_id
             LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *listener)
        .await?;
        let mut copy = self.copy.write().unwrap_or_else(|e| e.into_inner());
        if rows.len() > self.most {
            *copy = Copy::default();
            tracing::info!(
                most = self.most,
                "the blacklist has more tokens than user_cache_size: blacklist checks ask \
                 PostgreSQL (and keep its \"not blacklisted\" answers for user_cache_ttl)"
            );
            return Ok(());
        }
        copy.jtis.extend(rows);
        copy.whole = self.partial_since.load(Ordering::SeqCst) == since;
        Ok(())
    }

    fn whole(&self) -> bool {
        self.copy.read().unwrap_or_else(|e| e.into_inner()).whole
    }
}

/// The listening task: listens, reads the whole blacklist, applies each notification, reads
/// the blacklist again when asked (`*`, a revocation here) or, while it is too big to hold, every
/// [`RECOUNT_EVERY`]; when the connection breaks it stops answering from memory and starts again
/// (pausing between failed attempts), until the store is dropped or closed.
async fn listen(
    weak: Weak<OnceLock<BlacklistMemory>>,
    pool: PgPool,
    reread: Arc<Notify>,
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
        let mut read = true;
        let mut last_read = tokio::time::Instant::now();
        loop {
            // The state is held only while the task works on it, never while it waits.
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let Some(memory) = shared.get() else {
                return;
            };
            if read {
                memory.listening.store(true, Ordering::SeqCst);
                let done = tokio::select! {
                    _ = stop.changed() => return,
                    done = memory.read_whole(&mut listener) => done,
                };
                if let Err(e) = done {
                    tracing::debug!(error = %e, "could not read the blacklist");
                    memory.stopped_listening();
                    break;
                }
                read = false;
                last_read = tokio::time::Instant::now();
            }
            let recount = !memory.whole();
            drop(shared);
            let next = tokio::select! {
                biased;
                _ = stop.changed() => return,
                () = reread.notified() => None,
                () = tokio::time::sleep_until(last_read + RECOUNT_EVERY), if recount => None,
                next = listener.try_recv() => Some(next),
            };
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let Some(memory) = shared.get() else {
                return;
            };
            match next {
                None => read = true,
                Some(Ok(Some(notification))) => memory.heard(notification.payload()),
                Some(Ok(None) | Err(_)) => {
                    memory.stopped_listening();
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
