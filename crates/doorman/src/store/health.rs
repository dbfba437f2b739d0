//! Whether PostgreSQL can be reached, known in one place, so that an outage costs each request
//! nothing more than a check of a flag. Without it every call would wait the full
//! `database_acquire_timeout` in the pool (which keeps retrying a refused connection until
//! then) before failing, and token checks would stall whenever their lookup pause ran out.
//!
//! A call failing as unavailable only raises a suspicion: one background probe (a fresh
//! connection and `SELECT 1`, bounded by [`PROBE_TIMEOUT`]) decides. A connection killed from
//! the server side (`pg_terminate_backend`, a pooler restart) costs only the calls on it: the
//! probe answers and nothing else fails. When the probe fails the database is marked down:
//! calls fail at once with [`StoreError::Unavailable`], calls already waiting in the pool are
//! cut short, and the probe repeats every [`PROBE_EVERY`] until PostgreSQL answers, when
//! calls reach it again. Only the probe ever tests the database while it is down; requests
//! never pile onto it.
//!
//! SQLite has none of this on purpose: its "unavailable" is a write lock another process
//! holds or a full or read-only disk, conditions of one statement on a local file, while
//! reads keep working; failing every read because one write waited would turn a busy lock
//! into an outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::watch;

use super::StoreError;

/// How long a call may take before the probe is asked whether the database is still there.
/// doorman's statements take milliseconds; this bounds how long requests stall when
/// PostgreSQL vanishes while they wait for a connection.
pub const SUSPECT_AFTER: Duration = Duration::from_millis(250);

/// While the database answers, slow calls start a probe at most this often.
pub const SLOW_PROBE_EVERY: Duration = Duration::from_secs(1);

/// How long to wait between probes while the database is down: service resumes within about
/// this long (plus a connection) of PostgreSQL answering again.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

/// The longest one probe may take: a database that answers slower than this is treated as
/// down (a host that drops packets never refuses a connection).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The reachability of one PostgreSQL database, shared by every clone of its store.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    /// `true` while the last probe failed; watched by the calls in flight.
    down: watch::Sender<bool>,
    /// Whether a probe task runs (at most one).
    probing: AtomicBool,
    /// Calls refused without reaching the database since start.
    fast_failures: AtomicU64,
    /// How the probe connects: the pool's own options.
    options: PgConnectOptions,
    /// The monotonic origin of `last_answer_ms`.
    started: Instant,
    /// When a probe last succeeded, in milliseconds since `started`; 0 before any did.
    last_answer_ms: AtomicU64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("reachable", &self.reachable())
            .field("fast_failures", &self.fast_failures())
            .finish()
    }
}

impl Health {
    pub fn new(options: PgConnectOptions) -> Health {
        Health {
            inner: Arc::new(Inner {
                down: watch::Sender::new(false),
                probing: AtomicBool::new(false),
                fast_failures: AtomicU64::new(0),
                options,
                started: Instant::now(),
                last_answer_ms: AtomicU64::new(0),
            }),
        }
    }

    /// Whether the database is believed to answer (the last probe, if any, succeeded).
    pub fn reachable(&self) -> bool {
        !*self.inner.down.borrow()
    }

    /// How many calls were refused at once because the database was down.
    pub fn fast_failures(&self) -> u64 {
        self.inner.fast_failures.load(Ordering::Relaxed)
    }

    /// Runs `call` unless the database is down, and stops waiting for it once the database is
    /// found down meanwhile; an unavailable failure starts a probe.
    pub async fn guard<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let mut down = self.inner.down.subscribe();
        if *down.borrow_and_update() {
            return Err(self.fast_failure());
        }
        // The pool retries a refused connection until its acquire timeout without failing,
        // so a call that waits this long may be waiting for a database that is gone: the
        // probe finds out, and ends the wait if so.
        let slow = async {
            tokio::time::sleep(SUSPECT_AFTER).await;
            self.suspect_slowness();
            std::future::pending::<std::convert::Infallible>().await
        };
        let result = tokio::select! {
            biased;
            result = call => result,
            // Dropping the call rolls back its transaction, if it had one: nothing it did
            // was acknowledged.
            Ok(_) = down.wait_for(|down| *down) => Err(self.fast_failure()),
            never = slow => match never {},
        };
        if matches!(result, Err(StoreError::Unavailable(_))) {
            self.suspect();
        }
        result
    }

    fn fast_failure(&self) -> StoreError {
        self.inner.fast_failures.fetch_add(1, Ordering::Relaxed);
        StoreError::Unavailable("PostgreSQL does not answer; waiting for it to come back".into())
    }

    /// [`Health::suspect`] for a slow call, at most once per [`SLOW_PROBE_EVERY`] while the
    /// probes succeed: slow statements under load must not add a connection each.
    fn suspect_slowness(&self) {
        let last = self.inner.last_answer_ms.load(Ordering::Relaxed);
        if last != 0 && self.elapsed_ms().saturating_sub(last) < millis(SLOW_PROBE_EVERY) {
            return;
        }
        self.suspect();
    }

    fn elapsed_ms(&self) -> u64 {
        millis(self.inner.started.elapsed())
    }

    /// Starts the probe unless one runs.
    fn suspect(&self) {
        if self.inner.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let health = self.clone();
        tokio::spawn(async move { health.probe_until_up().await });
    }

    async fn probe_until_up(self) {
        loop {
            match self.probe().await {
                Ok(()) => {
                    // At least 1, never the 0 that means "no answer yet".
                    self.inner
                        .last_answer_ms
                        .store(self.elapsed_ms().max(1), Ordering::Relaxed);
                    // Cleared first: a failure from now on starts a probe of its own.
                    self.inner.probing.store(false, Ordering::Release);
                    if self.inner.down.send_replace(false) {
                        tracing::info!("PostgreSQL answers again; database calls resumed");
                    }
                    return;
                }
                Err(error) => {
                    if !self.inner.down.send_replace(true) {
                        tracing::warn!(
                            %error,
                            "PostgreSQL does not answer; database calls fail at once until it does"
                        );
                    }
                }
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// A fresh connection (not the pool's, which would wait out its acquire timeout) and the
    /// cheapest statement.
    async fn probe(&self) -> Result<(), StoreError> {
        let attempt = async {
            let mut conn = PgConnection::connect_with(&self.inner.options).await?;
            sqlx::query("SELECT 1").execute(&mut conn).await?;
            conn.close().await?;
            Ok::<(), sqlx::Error>(())
        };
        match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Unavailable(
                format!("no answer within {PROBE_TIMEOUT:?}").into(),
            )),
        }
    }
}
