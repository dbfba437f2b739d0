//! Group commit for the writes SQLite gets at request rate: rotations and blacklistings, which
//! decide races, what logins write (the new token's outstanding row, `last_login`, the audit
//! event), and the revocation of a refresh-token family on reuse, which must be ordered among
//! the rotations of its members.
//!
//! SQLite has one writer, and with `synchronous = FULL` every commit waits for the disk, so one
//! transaction per rotation caps rotations at the disk's sync rate whatever the load. Here the
//! writes queue for one task, which takes whatever has queued while the previous commit was on
//! its way to disk and applies it in one `BEGIN IMMEDIATE` transaction with one commit, in a
//! fixed handful of statements whatever the group's size (each takes the group as a JSON
//! array). No write is answered before the commit that holds it is on disk, and no write waits
//! for a timer: a lone write commits at once. With every token write on this one task, the
//! other connections of the pool never wait for SQLite's write lock (its busy handler sleeps
//! up to 100 ms at a time while holding the connection), so they stay free for the reads
//! every request needs, the user lookups behind `/hello/` among them.
//!
//! The queue is first come, first served, and the outcomes are decided in queue order, so the
//! group gives every write the answer it would have had in a transaction of its own: of racing
//! rotations of one token exactly one wins, whether the others are in its group or a later
//! one. A failing statement takes the whole group's transaction down; the group is then rolled
//! back and committed write by write, so the failing write gets its error and its neighbours
//! commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::read_only::{ReadOnlySeen, close_idle};
use crate::store::throttle::{self, LoginKey, ThrottleRules, Verdict};
use crate::store::{AuditEvent, BlacklistOutcome, OutstandingToken, RotateOutcome, StoreError};

throttle::throttle_queries!(SqliteConnection);

/// Most writes in one transaction; more wait for the next one.
const MAX_GROUP: usize = 256;
/// Writes that may wait for the writer before callers wait to queue.
const QUEUE: usize = 4096;

/// A queued write, its answer once known, and where the answer goes.
pub(super) enum Write {
    Blacklist {
        token: OutstandingToken,
        answer: Answer<BlacklistOutcome>,
    },
    Rotate {
        old: OutstandingToken,
        new: OutstandingToken,
        blacklist_old: bool,
        answer: Answer<RotateOutcome>,
    },
    /// A newly issued refresh or sliding token's outstanding row (idempotent on its jti).
    Record {
        token: OutstandingToken,
        answer: Answer<()>,
    },
    /// A user's `last_login` (unix seconds); the latest of a group's wins.
    Login {
        user_id: i64,
        at: i64,
        answer: Answer<()>,
    },
    /// An event of the audit trail (a login's, mostly).
    Audit {
        event: AuditEvent,
        answer: Answer<()>,
    },
    /// Every token of a refresh-token family blacklisted; answered with how many were not yet.
    RevokeFamily { family: String, answer: Answer<u64> },
    /// A login attempt reserved against its throttling counters (`store::throttle`).
    ThrottleReserve {
        key: LoginKey,
        rules: ThrottleRules,
        now: i64,
        answer: Answer<Verdict>,
    },
    /// A successful login's clearing of its throttling counters.
    ThrottleSucceeded {
        key: LoginKey,
        rules: ThrottleRules,
        now: i64,
        answer: Answer<()>,
    },
}

pub(super) struct Answer<T> {
    to: oneshot::Sender<Result<T, StoreError>>,
    result: Option<Result<T, StoreError>>,
}

impl<T> Answer<T> {
    /// An answer to fill in, and where it will arrive.
    fn new() -> (Answer<T>, Receiver<T>) {
        let (to, from) = oneshot::channel();
        (Answer { to, result: None }, from)
    }

    fn send(self, fallback: impl FnOnce() -> StoreError) {
        let result = self.result.unwrap_or_else(|| Err(fallback()));
        // The caller may have given up waiting (its request was cancelled): the write stands.
        let _ = self.to.send(result);
    }
}

/// A write to queue, and where its answer will arrive.
pub(super) fn blacklist(token: OutstandingToken) -> (Write, Receiver<BlacklistOutcome>) {
    let (answer, from) = Answer::new();
    (Write::Blacklist { token, answer }, from)
}

pub(super) fn rotate(
    old: OutstandingToken,
    new: OutstandingToken,
    blacklist_old: bool,
) -> (Write, Receiver<RotateOutcome>) {
    let (answer, from) = Answer::new();
    let write = Write::Rotate {
        old,
        new,
        blacklist_old,
        answer,
    };
    (write, from)
}

pub(super) fn record(token: OutstandingToken) -> (Write, Receiver<()>) {
    let (answer, from) = Answer::new();
    (Write::Record { token, answer }, from)
}

pub(super) fn login(user_id: i64, at: time::OffsetDateTime) -> (Write, Receiver<()>) {
    let (answer, from) = Answer::new();
    let at = at.unix_timestamp();
    (
        Write::Login {
            user_id,
            at,
            answer,
        },
        from,
    )
}

pub(super) fn audit(event: AuditEvent) -> (Write, Receiver<()>) {
    let (answer, from) = Answer::new();
    (Write::Audit { event, answer }, from)
}

pub(super) fn revoke_family(family: String) -> (Write, Receiver<u64>) {
    let (answer, from) = Answer::new();
    (Write::RevokeFamily { family, answer }, from)
}

pub(super) fn throttle_reserve(
    key: LoginKey,
    rules: ThrottleRules,
    now: i64,
) -> (Write, Receiver<Verdict>) {
    let (answer, from) = Answer::new();
    let write = Write::ThrottleReserve {
        key,
        rules,
        now,
        answer,
    };
    (write, from)
}

pub(super) fn throttle_succeeded(
    key: LoginKey,
    rules: ThrottleRules,
    now: i64,
) -> (Write, Receiver<()>) {
    let (answer, from) = Answer::new();
    let write = Write::ThrottleSucceeded {
        key,
        rules,
        now,
        answer,
    };
    (write, from)
}

pub(super) type Receiver<T> = oneshot::Receiver<Result<T, StoreError>>;

/// The queue's sending end, shared by every clone of the store.
#[derive(Clone, Debug)]
pub(super) struct GroupCommit {
    queue: mpsc::Sender<Write>,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct Stats {
    groups: AtomicU64,
    writes: AtomicU64,
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the database writer has stopped".into())
}

impl GroupCommit {
    /// Starts the writer task; it ends when the last clone of the store is dropped.
    pub(super) fn start(pool: SqlitePool, read_only: Arc<ReadOnlySeen>) -> GroupCommit {
        let (queue, waiting) = mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        let writer = Writer { pool, read_only };
        tokio::spawn(writer.run(waiting, stats.clone()));
        GroupCommit { queue, stats }
    }

    /// Queues a write and waits until the transaction that holds it has committed.
    pub(super) async fn apply<T>(
        &self,
        (write, answer): (Write, Receiver<T>),
    ) -> Result<T, StoreError> {
        self.queue.send(write).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Transactions committed and writes they held, since start.
    pub(super) fn stats(&self) -> (u64, u64) {
        (
            self.stats.groups.load(Ordering::Relaxed),
            self.stats.writes.load(Ordering::Relaxed),
        )
    }
}

impl Write {
    fn answer(self, fallback: impl FnOnce() -> StoreError) {
        match self {
            Write::Blacklist { answer, .. } => answer.send(fallback),
            Write::Rotate { answer, .. } => answer.send(fallback),
            Write::Record { answer, .. } => answer.send(fallback),
            Write::Login { answer, .. } => answer.send(fallback),
            Write::Audit { answer, .. } => answer.send(fallback),
            Write::RevokeFamily { answer, .. } => answer.send(fallback),
            Write::ThrottleReserve { answer, .. } => answer.send(fallback),
            Write::ThrottleSucceeded { answer, .. } => answer.send(fallback),
        }
    }

    fn fail(&mut self, error: StoreError) {
        match self {
            Write::Blacklist { answer, .. } => answer.result = Some(Err(error)),
            Write::Rotate { answer, .. } => answer.result = Some(Err(error)),
            Write::Record { answer, .. } => answer.result = Some(Err(error)),
            Write::Login { answer, .. } => answer.result = Some(Err(error)),
            Write::Audit { answer, .. } => answer.result = Some(Err(error)),
            Write::RevokeFamily { answer, .. } => answer.result = Some(Err(error)),
            Write::ThrottleReserve { answer, .. } => answer.result = Some(Err(error)),
            Write::ThrottleSucceeded { answer, .. } => answer.result = Some(Err(error)),
        }
    }

    /// The token whose being blacklisted decides this write; `None`: nothing does.
    fn decided_by(&self) -> Option<&OutstandingToken> {
        match self {
            Write::Blacklist { token, .. } => Some(token),
            Write::Rotate { old, .. } => Some(old),
            Write::Record { .. }
            | Write::Login { .. }
            | Write::Audit { .. }
            | Write::RevokeFamily { .. }
            | Write::ThrottleReserve { .. }
            | Write::ThrottleSucceeded { .. } => None,
        }
    }

    /// The user and time of a login's `last_login`.
    fn last_login(&self) -> Option<(i64, i64)> {
        match self {
            Write::Login { user_id, at, .. } => Some((*user_id, *at)),
            _ => None,
        }
    }

    /// Whether this write blacklists the deciding token (a rotation without
    /// `blacklist_after_rotation` only checks it).
    fn blacklists(&self) -> bool {
        match self {
            Write::Blacklist { .. } => true,
            Write::Rotate { blacklist_old, .. } => *blacklist_old,
            Write::Record { .. }
            | Write::Login { .. }
            | Write::Audit { .. }
            | Write::RevokeFamily { .. }
            | Write::ThrottleReserve { .. }
            | Write::ThrottleSucceeded { .. } => false,
        }
    }

    fn revokes_a_family(&self) -> bool {
        matches!(self, Write::RevokeFamily { .. })
    }

    /// Sets the answer given whether the deciding token was blacklisted before this write;
    /// returns the token to record as outstanding when the write goes ahead (a rotation's
    /// successor, a recorded token).
    fn decide(&mut self, was_blacklisted: bool) -> Option<&OutstandingToken> {
        match self {
            Write::Blacklist { answer, .. } => {
                answer.result = Some(Ok(if was_blacklisted {
                    BlacklistOutcome::AlreadyBlacklisted
                } else {
                    BlacklistOutcome::Added
                }));
                None
            }
            Write::Rotate { new, answer, .. } => {
                if was_blacklisted {
                    answer.result = Some(Ok(RotateOutcome::AlreadyBlacklisted));
                    None
                } else {
                    answer.result = Some(Ok(RotateOutcome::Rotated));
                    Some(new)
                }
            }
            Write::Record { token, answer } => {
                answer.result = Some(Ok(()));
                Some(token)
            }
            Write::Login { answer, .. } | Write::Audit { answer, .. } => {
                answer.result = Some(Ok(()));
                None
            }
            // Applied on their own, between the runs of the other writes (see `apply`).
            Write::RevokeFamily { .. } => None,
            // Answered when its statements run, after the others (see `apply_run`).
            Write::ThrottleReserve { .. } | Write::ThrottleSucceeded { .. } => None,
        }
    }
}

/// Why a group's transaction failed.
enum Failed {
    /// Beginning, committing or rolling back failed.
    Transaction(StoreError),
    /// A statement of the group's failed; the transaction was rolled back.
    Write(StoreError),
}

/// The writer task's connection pool, and where it notes a read-only database.
struct Writer {
    pool: SqlitePool,
    read_only: Arc<ReadOnlySeen>,
}

impl Writer {
    async fn run(self, mut waiting: mpsc::Receiver<Write>, stats: Arc<Stats>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while waiting.recv_many(&mut group, MAX_GROUP).await > 0 {
            match self.commit(&mut group).await {
                Ok(()) => {
                    stats.groups.fetch_add(1, Ordering::Relaxed);
                    stats
                        .writes
                        .fetch_add(group.len() as u64, Ordering::Relaxed);
                    for write in group.drain(..) {
                        write.answer(stopped);
                    }
                }
                Err(e) => {
                    // Nothing of the group was committed: every write in it gets the error, the
                    // answers found before the failure included.
                    let unavailable = matches!(e, StoreError::Unavailable(_));
                    let message = e.to_string();
                    for mut write in group.drain(..) {
                        let cause = message.clone().into();
                        write.fail(if unavailable {
                            StoreError::Unavailable(cause)
                        } else {
                            StoreError::Database(cause)
                        });
                        write.answer(stopped);
                    }
                }
            }
        }
    }

    /// Commits the group, each write answered: `Err` only when the transaction itself could not
    /// be had or committed (nothing committed).
    async fn commit(&self, group: &mut [Write]) -> Result<(), StoreError> {
        let mut first = self.transaction(group).await;
        if let Err(Failed::Transaction(e) | Failed::Write(e)) = &first
            && self.read_only.note_store(e)
        {
            // Refused as read-only: once the connections opened before are closed (see
            // `ReadOnlySeen`), this try is on a fresh one, which can write if the storage
            // can again.
            close_idle(&self.pool).await;
            first = match self.transaction(group).await {
                // Still read-only: the storage's failure, not a write's; tried write by write
                // it would only fail each of them again.
                Err(Failed::Write(e)) if self.read_only.note_store(&e) => {
                    Err(Failed::Transaction(e))
                }
                other => other,
            };
        }
        match first {
            Ok(()) => Ok(()),
            Err(Failed::Transaction(e)) => Err(e),
            Err(Failed::Write(e)) if group.len() == 1 => {
                group[0].fail(e);
                Ok(())
            }
            Err(Failed::Write(_)) => {
                for write in group.iter_mut() {
                    if let Err(Failed::Transaction(e) | Failed::Write(e)) =
                        self.transaction(std::slice::from_mut(write)).await
                    {
                        write.fail(e);
                    }
                }
                Ok(())
            }
        }
    }

    /// One `BEGIN IMMEDIATE` transaction for the group, begun and ended by hand rather than with
    /// sqlx's `Transaction`: when `COMMIT` fails (a full disk, an I/O error), SQLite leaves the
    /// transaction open, and a connection going back to the pool like that would fail every
    /// request that drew it later. So a failed end is rolled back, and a connection that can't
    /// roll back is closed instead of returned, as is one refused as read-only.
    async fn transaction(&self, group: &mut [Write]) -> Result<(), Failed> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| Failed::Transaction(e.into()))?;
        if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
            let e = StoreError::from(e);
            if self.read_only.note_store(&e) {
                let _ = conn.close().await;
            }
            return Err(Failed::Transaction(e));
        }
        let applied = apply(&mut conn, group).await;
        let end = if applied.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        if let Err(e) = sqlx::query(end).execute(&mut *conn).await {
            if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                tracing::warn!(error = %e, "a connection whose transaction could not end was closed");
                let _ = conn.close().await;
            }
            return Err(Failed::Transaction(e.into()));
        }
        if let Err(e) = &applied
            && self.read_only.note_store(e)
        {
            // Refused as read-only, the connection shares the read-only mapping: closed here
            // rather than given back to the pool, where it would stay open until the pool's
            // return task ran, and the next try's fresh connection could open beside it.
            let _ = conn.close().await;
        }
        applied.map_err(Failed::Write)
    }
}

/// The group's writes in queue order: each family revocation on its own, and the runs of
/// other writes between them as [`apply_run`] does, so the writes after a revocation find its
/// tokens blacklisted, as they would in transactions of their own.
async fn apply(conn: &mut SqliteConnection, group: &mut [Write]) -> Result<(), StoreError> {
    for run in group.chunk_by_mut(|a, b| !a.revokes_a_family() && !b.revokes_a_family()) {
        match run {
            [Write::RevokeFamily { family, answer }] => {
                let revoked = sqlx::query(crate::store::portable::REVOKE_FAMILY)
                    .bind(time::OffsetDateTime::now_utc().unix_timestamp())
                    .bind(family.as_str())
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                answer.result = Some(Ok(revoked));
            }
            run => apply_run(conn, run).await?,
        }
    }
    Ok(())
}

/// A run of writes, in a handful of statements:
/// 1. the outstanding rows of the tokens to blacklist are created where missing (simplejwt's
///    get-or-create);
/// 2. which of the deciding tokens are blacklisted already, and their families, are read;
/// 3. in queue order, each write is decided: it goes ahead unless its token was blacklisted
///    before it (already, or by an earlier write of the group), and a write that blacklists
///    marks its token for the writes after it;
/// 4. the tokens of the writes that went ahead are blacklisted (the rotated ones marked rotated
///    out with their successors' jtis, a statement of its own), and the rotations' successors
///    (in their predecessors' families) and the tokens to record are recorded;
/// 5. the logins' `last_login` are set (a statement only when the group has logins);
/// 6. the audit events are appended, in queue order (one only when the group has any);
/// 7. the login throttling's writes run one after the other in queue order, a few statements
///    each (their counters are the same table's rows, and each reservation must see the
///    ones queued before it).
async fn apply_run(conn: &mut SqliteConnection, group: &mut [Write]) -> Result<(), StoreError> {
    let to_blacklist: Vec<(&OutstandingToken, Option<&str>)> = group
        .iter()
        .filter(|w| w.blacklists())
        .filter_map(Write::decided_by)
        .map(|t| (t, None))
        .collect();
    let created = record_outstanding(conn, &to_blacklist).await?;

    let deciding: Vec<&str> = group
        .iter()
        .filter_map(Write::decided_by)
        .map(|t| t.jti.as_str())
        .collect();
    let known: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT o.jti, COALESCE(o.family, o.jti), b.id IS NOT NULL
         FROM outstanding_tokens o LEFT JOIN blacklisted_tokens b ON b.token_id = o.id
         WHERE o.jti IN (SELECT value FROM json_each($1))",
    )
    .bind(json(&deciding)?)
    .fetch_all(&mut *conn)
    .await?;
    let mut blacklisted: HashSet<String> = known
        .iter()
        .filter(|(_, _, blacklisted)| *blacklisted)
        .map(|(jti, _, _)| jti.clone())
        .collect();
    let mut families: HashMap<String, String> = known
        .into_iter()
        .map(|(jti, family, _)| (jti, family))
        .collect();

    let mut newly_blacklisted = Vec::new();
    let mut rotated_out = Vec::new();
    let mut successors = Vec::new();
    for write in group.iter_mut() {
        let jti = write.decided_by().map(|t| t.jti.clone());
        let was_blacklisted = jti.as_ref().is_some_and(|jti| blacklisted.contains(jti));
        let blacklists = write.blacklists();
        let successor_jti = match &*write {
            Write::Rotate { new, .. } => Some(new.jti.clone()),
            _ => None,
        };
        // A token the store has no row of is the first of its family.
        let family = jti
            .as_ref()
            .map(|jti| families.get(jti).unwrap_or(jti).clone());
        if let Some(successor) = write.decide(was_blacklisted) {
            if let Some(family) = &family {
                families.insert(successor.jti.clone(), family.clone());
            }
            successors.push((successor.clone(), family));
        }
        if let Some(jti) = jti
            && !was_blacklisted
            && blacklists
        {
            blacklisted.insert(jti.clone());
            if let Some(successor_jti) = successor_jti {
                rotated_out.push((jti.clone(), successor_jti));
            }
            newly_blacklisted.push(jti);
        }
    }

    if !newly_blacklisted.is_empty() {
        let now = time::OffsetDateTime::now_utc();
        let added = sqlx::query(
            "INSERT INTO blacklisted_tokens (token_id, blacklisted_at)
             SELECT id, $1 FROM outstanding_tokens WHERE jti IN (SELECT value FROM json_each($2))
             ON CONFLICT (token_id) DO NOTHING",
        )
        .bind(now.unix_timestamp())
        .bind(json(&newly_blacklisted)?)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        // The write lock is held, so what was read in step 2 still stands.
        if added != newly_blacklisted.len() as u64 {
            return Err(StoreError::Database(
                format!(
                    "blacklisted {added} tokens of {} (a write outside the lock?)",
                    newly_blacklisted.len()
                )
                .into(),
            ));
        }
        if !rotated_out.is_empty() {
            let millis = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
            sqlx::query(
                "UPDATE outstanding_tokens
                 SET rotated_at_ms = $1, replaced_by = json_extract(t.value, '$[1]')
                 FROM json_each($2) AS t WHERE jti = json_extract(t.value, '$[0]')",
            )
            .bind(millis)
            .bind(json(&rotated_out)?)
            .execute(&mut *conn)
            .await?;
        }
    }
    let successors: Vec<(&OutstandingToken, Option<&str>)> = successors
        .iter()
        .map(|(token, family)| (token, family.as_deref()))
        .collect();
    record_outstanding(conn, &successors).await?;
    // A successor rotated again within the group had its row made in step 1, in a family of
    // its own: it joins its predecessor's, as it would have one write at a time.
    let rejoining: Vec<(&str, &str)> = successors
        .iter()
        .filter(|(token, _)| created.contains(&token.jti))
        .filter_map(|(token, family)| Some((token.jti.as_str(), (*family)?)))
        .collect();
    if !rejoining.is_empty() {
        sqlx::query(
            "UPDATE outstanding_tokens SET family = json_extract(t.value, '$[1]')
             FROM json_each($1) AS t WHERE jti = json_extract(t.value, '$[0]')",
        )
        .bind(json(&rejoining)?)
        .execute(&mut *conn)
        .await?;
    }

    let logins: Vec<(i64, i64)> = group.iter().filter_map(Write::last_login).collect();
    if !logins.is_empty() {
        sqlx::query(
            "UPDATE users SET last_login = t.at
             FROM (SELECT json_extract(value, '$[0]') AS id, MAX(json_extract(value, '$[1]')) AS at
                   FROM json_each($1) GROUP BY 1) AS t
             WHERE users.id = t.id",
        )
        .bind(json(&logins)?)
        .execute(&mut *conn)
        .await?;
    }

    let events: Vec<_> = group
        .iter()
        .filter_map(|w| match w {
            Write::Audit { event, .. } => Some((
                event.at.unix_timestamp(),
                event.kind.as_str(),
                event.username.as_deref(),
                event.user_id,
                event.client_addr.as_deref(),
                event.user_agent.as_deref(),
                event.detail.as_deref(),
            )),
            _ => None,
        })
        .collect();
    if !events.is_empty() {
        // json_each walks the array in order, so ids follow the queue.
        sqlx::query(
            "INSERT INTO audit_events
             (at, kind, username, user_id, client_addr, user_agent, detail)
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                    json_extract(value, '$[2]'), json_extract(value, '$[3]'),
                    json_extract(value, '$[4]'), json_extract(value, '$[5]'),
                    json_extract(value, '$[6]')
             FROM json_each($1) ORDER BY key",
        )
        .bind(json(&events)?)
        .execute(&mut *conn)
        .await?;
    }

    for write in group.iter_mut() {
        match write {
            Write::ThrottleReserve {
                key,
                rules,
                now,
                answer,
            } => {
                let verdict = throttle_reserve_in(conn, key, rules, *now).await?;
                answer.result = Some(Ok(verdict));
            }
            Write::ThrottleSucceeded {
                key,
                rules,
                now,
                answer,
            } => {
                throttle_succeeded_in(conn, key, rules, *now).await?;
                answer.result = Some(Ok(()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// An outstanding row as [`record_outstanding`] sends it: jti, owner, created, expires, family,
/// client address, user agent.
type OutstandingRow<'a> = (
    &'a str,
    Option<i64>,
    Option<i64>,
    i64,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

/// Get-or-create of outstanding rows, in one statement, each in the family given (`None`: a
/// family of its own). An owner that does not exist is stored as NULL, as one write at a time
/// does it. Returns the jtis of the rows it made.
async fn record_outstanding(
    conn: &mut SqliteConnection,
    tokens: &[(&OutstandingToken, Option<&str>)],
) -> Result<HashSet<String>, StoreError> {
    if tokens.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<OutstandingRow> = tokens
        .iter()
        .map(|(t, family)| {
            (
                t.jti.as_str(),
                t.user_id,
                t.created_at.map(time::OffsetDateTime::unix_timestamp),
                t.expires_at.unix_timestamp(),
                *family,
                t.client_addr.as_deref(),
                t.user_agent.as_deref(),
            )
        })
        .collect();
    // `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the INSERT.
    Ok(sqlx::query_scalar(
        "INSERT INTO outstanding_tokens
             (jti, user_id, created_at, expires_at, family, client_addr, user_agent)
         SELECT json_extract(t.value, '$[0]'),
                (SELECT id FROM users WHERE id = json_extract(t.value, '$[1]')),
                json_extract(t.value, '$[2]'), json_extract(t.value, '$[3]'),
                COALESCE(json_extract(t.value, '$[4]'), json_extract(t.value, '$[0]')),
                json_extract(t.value, '$[5]'), json_extract(t.value, '$[6]')
         FROM json_each($1) AS t WHERE true
         ON CONFLICT (jti) DO NOTHING
         RETURNING jti",
    )
    .bind(json(&rows)?)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect())
}

fn json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(Box::new(e)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::store::Store;

    async fn commit(pool: &SqlitePool, group: &mut [Write]) -> Result<(), StoreError> {
        let writer = Writer {
            pool: pool.clone(),
            read_only: Arc::new(ReadOnlySeen::new()),
        };
        writer.commit(group).await
    }

    async fn pool() -> (SqlitePool, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("db").display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        match store {
            Store::Sqlite(s) => (s.pool, dir),
            Store::Postgres(_) => panic!("not SQLite"),
        }
    }

    fn token(jti: &str) -> OutstandingToken {
        OutstandingToken {
            jti: jti.to_string(),
            user_id: None,
            created_at: None,
            expires_at: time::OffsetDateTime::now_utc() + time::Duration::minutes(5),
            client_addr: None,
            user_agent: None,
        }
    }

    enum Waiting {
        Blacklist(Receiver<BlacklistOutcome>),
        Rotate(Receiver<RotateOutcome>),
        Record(Receiver<()>),
        Revoke(Receiver<u64>),
    }

    /// Writes that race on the same tokens, in every mix of kinds.
    fn writes() -> (Vec<Write>, Vec<Waiting>) {
        let mut writes = Vec::new();
        let mut waiting = Vec::new();
        let rotate_ = |old: &str, new: &str, blacklist_old: bool| {
            let (w, r) = rotate(token(old), token(new), blacklist_old);
            (w, Waiting::Rotate(r))
        };
        let record_ = |jti: &str| {
            let (w, r) = record(token(jti));
            (w, Waiting::Record(r))
        };
        let list = vec![
            record_("r"),
            rotate_("a", "b", true),
            rotate_("a", "c", true),
            rotate_("b", "d", true),
            rotate_("e", "f", false),
            rotate_("e", "g", false),
            {
                let (w, r) = blacklist(token("e"));
                (w, Waiting::Blacklist(r))
            },
            rotate_("e", "h", false),
            rotate_("e", "i", true),
            {
                let (w, r) = blacklist(token("old"));
                (w, Waiting::Blacklist(r))
            },
            rotate_("old", "j", true),
            record_("r"),
            record_("e"),
            record_("k"),
            {
                let (w, r) = blacklist(token("k"));
                (w, Waiting::Blacklist(r))
            },
            {
                let (w, r) = blacklist(token("k"));
                (w, Waiting::Blacklist(r))
            },
            // A family revoked between rotations of its members: d (a's, through b) goes
            // with it, and rotating d afterwards is refused; m, of another family, goes on.
            record_("l"),
            rotate_("l", "m", true),
            {
                let (w, r) = revoke_family("a".into());
                (w, Waiting::Revoke(r))
            },
            rotate_("d", "n", true),
            rotate_("m", "o", true),
            {
                let (w, r) = revoke_family("a".into());
                (w, Waiting::Revoke(r))
            },
        ];
        for (w, r) in list {
            writes.push(w);
            waiting.push(r);
        }
        (writes, waiting)
    }

    async fn answers(waiting: Vec<Waiting>) -> Vec<String> {
        let mut out = Vec::new();
        for w in waiting {
            out.push(match w {
                Waiting::Blacklist(r) => format!("{:?}", r.await.unwrap().unwrap()),
                Waiting::Rotate(r) => format!("{:?}", r.await.unwrap().unwrap()),
                Waiting::Record(r) => format!("{:?}", r.await.unwrap().unwrap()),
                Waiting::Revoke(r) => format!("revoked {}", r.await.unwrap().unwrap()),
            });
        }
        out
    }

    /// Each token: whether it is blacklisted, its family, whether it was rotated out, and the
    /// successor that rotation made.
    async fn tables(
        pool: &SqlitePool,
    ) -> Vec<(String, bool, Option<String>, bool, Option<String>)> {
        sqlx::query_as(
            "SELECT o.jti, b.id IS NOT NULL, o.family, o.rotated_at_ms IS NOT NULL, o.replaced_by
             FROM outstanding_tokens o
             LEFT JOIN blacklisted_tokens b ON b.token_id = o.id ORDER BY o.jti",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    }

    /// Logins in one group, among token writes: each is answered, a user's `last_login` is
    /// the latest of the group's, and a login of a user that is gone changes nothing.
    #[tokio::test]
    async fn a_group_sets_each_users_latest_login() {
        let (pool, _dir) = pool().await;
        sqlx::query(
            "INSERT INTO users (id, username, password, date_joined) VALUES
             (1, 'alice', 'h', 0), (2, 'bob', 'h', 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let at = |secs| time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
        let (mut writes, mut waiting) = (Vec::new(), Vec::new());
        for (user, secs) in [(1, 100), (2, 50), (1, 300), (99, 400), (1, 200)] {
            let (w, r) = login(user, at(secs));
            writes.push(w);
            waiting.push(r);
        }
        let (w, r) = record(token("t"));
        writes.push(w);
        commit(&pool, &mut writes).await.unwrap();
        for write in writes {
            write.answer(stopped);
        }
        for r in waiting {
            r.await.unwrap().unwrap();
        }
        r.await.unwrap().unwrap();
        let logins: Vec<(i64, Option<i64>)> =
            sqlx::query_as("SELECT id, last_login FROM users ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(logins, [(1, Some(300)), (2, Some(50))]);
        assert_eq!(
            tables(&pool).await,
            [("t".to_owned(), false, Some("t".to_owned()), false, None)]
        );
    }

    /// Audit events in one group, among token writes, are each answered and appended in queue
    /// order; one that can't be written (a user agent past the table's bound, which the store
    /// cuts before it gets here) fails alone and its neighbours commit.
    #[tokio::test]
    async fn a_group_appends_its_audit_events_in_queue_order() {
        let (pool, _dir) = pool().await;
        let event = |kind: &str, agent: usize| AuditEvent {
            at: time::OffsetDateTime::from_unix_timestamp(100).unwrap(),
            kind: kind.into(),
            username: Some("ann".into()),
            user_id: None,
            client_addr: None,
            user_agent: Some("a".repeat(agent)),
            detail: None,
        };
        let (mut writes, mut waiting) = (Vec::new(), Vec::new());
        for (kind, agent) in [
            ("first", 1),
            ("too_long", 513),
            ("second", 512),
            ("third", 0),
        ] {
            let (w, r) = audit(event(kind, agent));
            writes.push(w);
            waiting.push(r);
        }
        let (w, r) = record(token("t"));
        writes.push(w);
        commit(&pool, &mut writes).await.unwrap();
        for write in writes {
            write.answer(stopped);
        }
        let mut answers = Vec::new();
        for r in waiting {
            answers.push(r.await.unwrap().is_ok());
        }
        assert_eq!(answers, [true, false, true, true]);
        r.await.unwrap().unwrap();
        let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM audit_events ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(kinds, ["first", "second", "third"]);
        assert_eq!(
            tables(&pool).await,
            [("t".to_owned(), false, Some("t".to_owned()), false, None)]
        );
    }

    /// One group gives every write the answer, and leaves the tables as, the same writes one
    /// transaction each.
    #[tokio::test]
    async fn a_group_decides_as_the_writes_one_by_one_would() {
        let (one_by_one, _a) = pool().await;
        let (grouped, _b) = pool().await;
        for pool in [&one_by_one, &grouped] {
            sqlx::query(
                "INSERT INTO outstanding_tokens (jti, expires_at) VALUES ('old', 9999999999);
                 INSERT INTO blacklisted_tokens (token_id, blacklisted_at)
                 SELECT id, 0 FROM outstanding_tokens WHERE jti = 'old'",
            )
            .execute(pool)
            .await
            .unwrap();
        }
        let (mut writes, waiting) = super::tests::writes();
        for write in &mut writes {
            commit(&one_by_one, std::slice::from_mut(write))
                .await
                .unwrap();
        }
        for write in writes {
            write.answer(stopped);
        }
        let expected = answers(waiting).await;
        assert_eq!(
            expected,
            [
                "()",
                "Rotated",
                "AlreadyBlacklisted",
                "Rotated",
                "Rotated",
                "Rotated",
                "Added",
                "AlreadyBlacklisted",
                "AlreadyBlacklisted",
                "AlreadyBlacklisted",
                "AlreadyBlacklisted",
                "()",
                "()",
                "()",
                "Added",
                "AlreadyBlacklisted",
                "()",
                "Rotated",
                "revoked 1",
                "AlreadyBlacklisted",
                "Rotated",
                "revoked 0",
            ]
        );

        let (mut writes, waiting) = super::tests::writes();
        commit(&grouped, &mut writes).await.unwrap();
        for write in writes {
            write.answer(stopped);
        }
        assert_eq!(answers(waiting).await, expected);
        let rows = tables(&grouped).await;
        assert_eq!(rows, tables(&one_by_one).await);
        let family_of = |jti: &str| {
            let row = rows.iter().find(|row| row.0 == jti).unwrap();
            (row.2.as_deref(), row.3)
        };
        let successor_of = |jti: &str| {
            let row = rows.iter().find(|row| row.0 == jti).unwrap();
            row.4.as_deref()
        };
        // Successors join their predecessor's family; rotated tokens are marked.
        assert_eq!(family_of("a"), (Some("a"), true));
        assert_eq!(family_of("d"), (Some("a"), false));
        assert_eq!(family_of("o"), (Some("l"), false));
        assert_eq!(
            family_of("old"),
            (None, false),
            "a row from before families"
        );
        // A rotated-out token names the successor of the rotation that won, never a loser's;
        // rotations that blacklist nothing, or were refused, name none.
        assert_eq!(successor_of("a"), Some("b"));
        assert_eq!(successor_of("b"), Some("d"));
        assert_eq!(successor_of("m"), Some("o"));
        assert_eq!(successor_of("e"), None);
        assert_eq!(successor_of("d"), None);
        assert_eq!(successor_of("old"), None);
    }
}
