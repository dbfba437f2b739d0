//! The PostgreSQL backend: one database shared by any number of doorman instances. Races are
//! settled by PostgreSQL's unique constraints under READ COMMITTED: of two transactions
//! inserting the same blacklist row, the second waits for the first to commit and then inserts
//! nothing (`ON CONFLICT DO NOTHING`), so exactly one rotation of a refresh token wins, on
//! whichever instance it runs.

mod blacklist_memory;

use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgPool, PgPoolOptions};
use time::OffsetDateTime;

use super::{
    BlacklistOutcome, KeyRotation, KeyRow, MigrationInfo, MigrationStatus, NewUser,
    OutstandingToken, PoolSettings, RotateOutcome, StoreError, StoredKey, User, UserRow,
    newly_applied,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

const DEFAULT_MAX_CONNECTIONS: u32 = 10;

super::portable::portable_queries!(PostgresStore, PgConnection);
super::throttle::throttle_queries!(PgConnection);
super::import::import_queries!(PgConnection);
use super::throttle;

#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// Whether the database answers; every call through [`super::Store`] checks it first.
    health: super::health::Health,
    /// The blacklist held in memory, once [`PostgresStore::hold_blacklist`] has started
    /// holding it.
    memory: blacklist_memory::Shared,
    /// For the listening connection's pool.
    options: std::sync::Arc<PgConnectOptions>,
    acquire_timeout: Duration,
}

impl PostgresStore {
    /// Opens the pool and checks once that PostgreSQL answers (so a start-up against a missing
    /// database fails with a clear error). Connections are opened on demand afterwards, so a
    /// running doorman rides out an outage and reconnects by itself when the database is back.
    pub async fn connect(
        database_url: &str,
        settings: &PoolSettings,
    ) -> Result<PostgresStore, StoreError> {
        let statement_timeout = millis(settings.statement_timeout);
        let options: PgConnectOptions = database_url
            .parse::<PgConnectOptions>()
            .map_err(|e| StoreError::Database(Box::new(e)))?
            .application_name("doorman")
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS))
            .acquire_timeout(settings.acquire_timeout)
            // A connection that broke while PostgreSQL was away is found out before use.
            .test_before_acquire(true)
            .connect_lazy_with(options.clone());
        let store = PostgresStore {
            pool,
            health: super::health::Health::new(options.clone()),
            memory: Default::default(),
            options: std::sync::Arc::new(options),
            acquire_timeout: settings.acquire_timeout,
        };
        // Fail start-up (and the CLI) clearly when the database can't be reached at all.
        sqlx::query("SELECT 1").execute(&store.pool).await?;
        Ok(store)
    }

    /// Whether the database answers, checked before each call.
    pub(crate) fn health(&self) -> &super::health::Health {
        &self.health
    }

    /// Starts holding the blacklist in memory, kept up to date by PostgreSQL's notifications:
    /// the whole of it while it has at most `size` tokens, else the database's "not
    /// blacklisted" answers for `ttl` (see [`blacklist_memory`]). For a serving instance; the
    /// CLI asks the database every time.
    pub fn hold_blacklist(&self, ttl: Duration, size: u64, metrics: &crate::metrics::Metrics) {
        // Its own pool of one: the listening connection is held for good, and a pool's
        // `close` waits for the connections given out.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(self.acquire_timeout)
            .test_before_acquire(true)
            .connect_lazy_with(
                PgConnectOptions::clone(&self.options)
                    .application_name("doorman blacklist listener"),
            );
        blacklist_memory::BlacklistMemory::start(&self.memory, pool, ttl, size, metrics);
    }

    /// Whether `jti` is blacklisted, when that is known without asking the database.
    pub(crate) fn known_blacklisted(&self, jti: &str) -> Option<bool> {
        self.memory.get()?.known(jti)
    }

    /// The blacklist lookup in the database, keeping a "not blacklisted" answer when the
    /// blacklist is held in memory.
    pub(crate) async fn is_blacklisted_keeping(&self, jti: &str) -> Result<bool, StoreError> {
        let memory = self.memory.get();
        let ticket = memory.and_then(|memory| memory.ticket());
        let found = self.is_blacklisted(jti).await?;
        if !found && let (Some(memory), Some(ticket)) = (memory, ticket) {
            memory.keep(jti, ticket);
        }
        Ok(found)
    }

    /// Tells the blacklist held in memory (when it is held) what a write through this instance
    /// blacklisted, before its request is answered rather than when PostgreSQL's notification
    /// comes back: the blacklisted tokens' jtis and expiries, or `None` when they are not known
    /// (a failed write may have committed), which sends lookups to the database until the
    /// blacklist has been read again.
    fn blacklisted_here(&self, blacklisted: Option<&[(String, i64)]>) {
        if let Some(memory) = self.memory.get() {
            match blacklisted {
                Some(tokens) => {
                    for (jti, expires_at) in tokens {
                        memory.blacklisted(jti, *expires_at);
                    }
                }
                None => memory.blacklisted_unknown(),
            }
        }
    }

    /// Closes the pools, the listening connection's too.
    pub async fn close_all(&self) {
        self.close().await;
        if let Some(memory) = self.memory.get() {
            memory.close().await;
        }
    }

    pub async fn rotate_signing_keys(
        &self,
        now: i64,
        retire_after: i64,
    ) -> Result<KeyRotation, StoreError> {
        let mut tx = self.pool.begin().await?;
        // One rotation at a time across instances: the others wait, then see the new state.
        sqlx::query("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let rotation = Self::promote_next_key(&mut tx, now, retire_after).await?;
        tx.commit().await?;
        Ok(rotation)
    }

    /// A standby (in recovery) or a database set `default_transaction_read_only` refuses
    /// writes.
    pub async fn writable(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>, StoreError> {
        let table: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                .fetch_one(&self.pool)
                .await?;
        let applied: Vec<(i64, Option<i64>)> = match table {
            Some(_) => {
                sqlx::query_as(
                    "SELECT version, EXTRACT(EPOCH FROM installed_on)::BIGINT
                     FROM _sqlx_migrations WHERE success",
                )
                .fetch_all(&self.pool)
                .await?
            }
            None => Vec::new(),
        };
        Ok(super::statuses(&MIGRATOR, &applied))
    }

    pub async fn password_hash_parameters(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT CASE
                 WHEN f1 IN ('pbkdf2_sha256', 'pbkdf2_sha1') THEN f1 || '$' || f2
                 WHEN f1 IN ('bcrypt', 'bcrypt_sha256') THEN f1 || '$$' || f3 || '$' || f4
                 WHEN f1 = 'scrypt' THEN f1 || '$' || f2 || '$$' || f4 || '$' || f5
                 ELSE f1 || '$' || f2 || '$' || f3 || '$' || f4
             END
             FROM (SELECT split_part(password, '$', 1) AS f1, split_part(password, '$', 2) AS f2,
                          split_part(password, '$', 3) AS f3, split_part(password, '$', 4) AS f4,
                          split_part(password, '$', 5) AS f5
                   FROM users) AS fields
             WHERE f1 IN ('', 'argon2', 'pbkdf2_sha256', 'pbkdf2_sha1', 'bcrypt',
                          'bcrypt_sha256', 'scrypt')",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes in one transaction. A rotation racing it either commits first (its successor is
    /// then blacklisted here, or, inserted too late for this statement to see, carries an
    /// `iat` at or before the time set after it) or finds its old token blacklisted.
    pub async fn revoke_user_tokens(
        &self,
        id: i64,
    ) -> Result<Option<super::Revocation>, StoreError> {
        let revoked = async {
            let mut tx = self.pool.begin().await?;
            let revocation = revoke_in(&mut tx, id).await?;
            let tokens = blacklisted_tokens(
                &mut tx,
                "SELECT o.jti, o.expires_at FROM outstanding_tokens o
                 JOIN blacklisted_tokens b ON b.token_id = o.id
                 WHERE o.user_id = $1",
                id,
            )
            .await?;
            tx.commit().await?;
            Ok((revocation, tokens))
        }
        .await;
        self.blacklisted_here(revoked.as_ref().ok().map(|(_, t)| t.as_slice()));
        revoked.map(|(revocation, _)| revocation)
    }

    /// Reserves a login attempt in a transaction of its own: the counters' row locks make
    /// racing reservations, on any instance, take their turns.
    pub async fn throttle_reserve(
        &self,
        key: &super::throttle::LoginKey,
        rules: &super::throttle::ThrottleRules,
        now: i64,
    ) -> Result<super::throttle::Verdict, StoreError> {
        let mut tx = self.pool.begin().await?;
        let verdict = throttle_reserve_in(&mut tx, key, rules, now).await?;
        tx.commit().await?;
        Ok(verdict)
    }

    pub async fn throttle_succeeded(
        &self,
        key: &super::throttle::LoginKey,
        rules: &super::throttle::ThrottleRules,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        throttle_succeeded_in(&mut tx, key, rules, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn record_login(&self, id: i64, at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET last_login = $1 WHERE id = $2")
            .bind(at.unix_timestamp())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn record_audit(&self, event: super::AuditEvent) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_events
             (at, kind, username, user_id, client_addr, user_agent, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(event.at.unix_timestamp())
        .bind(&event.kind)
        .bind(&event.username)
        .bind(event.user_id)
        .bind(&event.client_addr)
        .bind(&event.user_agent)
        .bind(&event.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a newly issued token (idempotent on its jti).
    pub async fn record_outstanding(&self, token: &OutstandingToken) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_outstanding(&mut conn, token, None).await
    }

    pub async fn blacklist(
        &self,
        token: &OutstandingToken,
    ) -> Result<BlacklistOutcome, StoreError> {
        let added = async {
            let mut tx = self.pool.begin().await?;
            insert_outstanding(&mut tx, token, None).await?;
            let added = insert_blacklisted(&mut tx, &token.jti).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(added)
        }
        .await;
        let tokens = [(token.jti.clone(), token.expires_at.unix_timestamp())];
        self.blacklisted_here(added.as_ref().ok().map(|_| &tokens[..]));
        Ok(if added? {
            BlacklistOutcome::Added
        } else {
            BlacklistOutcome::AlreadyBlacklisted
        })
    }

    pub async fn rotate(
        &self,
        old: &OutstandingToken,
        new: &OutstandingToken,
        blacklist_old: bool,
    ) -> Result<RotateOutcome, StoreError> {
        let rotated = self.rotate_once(old, new, blacklist_old).await;
        // Rotated or found blacklisted already, `old` is blacklisted now.
        if blacklist_old {
            let tokens = [(old.jti.clone(), old.expires_at.unix_timestamp())];
            self.blacklisted_here(rotated.as_ref().ok().map(|_| &tokens[..]));
        }
        rotated
    }

    async fn rotate_once(
        &self,
        old: &OutstandingToken,
        new: &OutstandingToken,
        blacklist_old: bool,
    ) -> Result<RotateOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_outstanding(&mut tx, old, None).await?;
        let family = lock_family_of(&mut tx, &old.jti).await?;
        let old_is_live = if blacklist_old {
            // The unique blacklist row is the arbiter: a racing transaction that inserted it
            // first makes this insert wait for its commit and then add nothing. The row is
            // marked rotated out, with its successor, in the same statement, for reuse
            // detection and for answering a replay inside the grace window.
            let rotated = sqlx::query(
                "WITH added AS (
                     INSERT INTO blacklisted_tokens (token_id, blacklisted_at)
                     SELECT id, $1 FROM outstanding_tokens WHERE jti = $2
                     ON CONFLICT (token_id) DO NOTHING
                     RETURNING token_id
                 )
                 UPDATE outstanding_tokens SET rotated_at_ms = $3, replaced_by = $4
                 WHERE id IN (SELECT token_id FROM added)",
            )
            .bind(OffsetDateTime::now_utc().unix_timestamp())
            .bind(&old.jti)
            .bind(unix_millis(OffsetDateTime::now_utc()))
            .bind(&new.jti)
            .execute(&mut *tx)
            .await?;
            rotated.rows_affected() == 1
        } else {
            // Lock the old token's row so a blacklisting of it can't slip in between the check
            // and the new token's insert.
            sqlx::query("SELECT 1 FROM outstanding_tokens WHERE jti = $1 FOR UPDATE")
                .bind(&old.jti)
                .execute(&mut *tx)
                .await?;
            !is_blacklisted(&mut tx, &old.jti).await?
        };
        if !old_is_live {
            tx.rollback().await?;
            return Ok(RotateOutcome::AlreadyBlacklisted);
        }
        insert_outstanding(&mut tx, new, Some(&family)).await?;
        tx.commit().await?;
        Ok(RotateOutcome::Rotated)
    }

    pub async fn revoke_family(&self, family: &str) -> Result<u64, StoreError> {
        let revoked = self.revoke_family_once(family).await;
        self.blacklisted_here(revoked.as_ref().ok().map(|(_, t)| t.as_slice()));
        revoked.map(|(count, _)| count)
    }

    async fn revoke_family_once(
        &self,
        family: &str,
    ) -> Result<(u64, Vec<(String, i64)>), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Rotations within the family hold its lock until they commit: waiting for it waits
        // them out, so their successors are seen below; one starting later waits for this
        // transaction and then finds its token blacklisted.
        lock_family(&mut tx, family).await?;
        let done = sqlx::query(super::portable::REVOKE_FAMILY)
            .bind(OffsetDateTime::now_utc().unix_timestamp())
            .bind(family)
            .execute(&mut *tx)
            .await?;
        let tokens = blacklisted_tokens(
            &mut tx,
            "SELECT o.jti, o.expires_at FROM outstanding_tokens o
             JOIN blacklisted_tokens b ON b.token_id = o.id
             WHERE o.family = $1 OR o.jti = $1",
            family,
        )
        .await?;
        tx.commit().await?;
        Ok((done.rows_affected(), tokens))
    }

    /// Writes a batch of an import in one transaction (each item in a savepoint of its own),
    /// committed, or rolled back for a dry run.
    pub async fn import_batch(
        &self,
        items: &[super::import::ImportItem],
        dry_run: bool,
    ) -> Result<Vec<Result<super::import::ItemOutcome, StoreError>>, StoreError> {
        let imported = async {
            let mut tx = self.pool.begin().await?;
            let outcomes = import_items_in(&mut tx, items).await?;
            if dry_run {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
            }
            Ok(outcomes)
        }
        .await;
        // What an import blacklisted is not listed; it runs from the CLI, which holds nothing.
        self.blacklisted_here(None);
        imported
    }

    /// Moves the users' id sequence to at least `through`, so a user created here later (by
    /// this instance or another, even while the import runs) never gets an id at or below it.
    /// The table lock waits out every transaction inserting a user and holds off new ones
    /// while the sequence is read and moved, so it can't be moved back below an id just
    /// given out. Sequences are not transactional: this is never part of a dry run.
    pub async fn reserve_user_ids(&self, through: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "SELECT setval(s.seq, $1)
             FROM (SELECT pg_get_serial_sequence('users', 'id')::regclass AS seq) s
             WHERE $1 > COALESCE(pg_sequence_last_value(s.seq), 0)",
        )
        .bind(through)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn imported_user(
        &self,
        id: i64,
    ) -> Result<Option<super::import::ImportedUser>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        imported_user_in(&mut conn, id).await
    }

    /// [`flush_expired`](Self::flush_expired) by at most one instance at a time: a
    /// transaction-scoped advisory lock; `None` when another instance holds it.
    pub async fn flush_expired_exclusively(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<Option<u64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(PRUNE_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            tx.rollback().await?;
            return Ok(None);
        }
        let done = sqlx::query("DELETE FROM outstanding_tokens WHERE expires_at <= $1")
            .bind(cutoff.unix_timestamp())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(done.rows_affected()))
    }
}

#[cfg(test)]
impl PostgresStore {
    /// For the tests' own SQL, such as counting rows.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(super) fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }
}

/// The advisory lock key of the pruning task ("doorman" as bytes).
pub const PRUNE_LOCK: i64 = 0x0064_6f6f_726d_616e;

fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// SQLSTATEs that mean "not now" rather than "never": connection exceptions (class 08),
/// insufficient resources (53: too many connections, out of memory or disk), operator
/// intervention (57: shutdown, cannot connect now, statement timeout), and serialization or
/// deadlock failures (40) that a retry settles.
pub(super) fn is_unavailable(error: &(dyn DatabaseError + 'static)) -> bool {
    error
        .try_downcast_ref::<PgDatabaseError>()
        .map(PgDatabaseError::code)
        .is_some_and(|code| {
            ["08", "53", "57", "40"]
                .iter()
                .any(|class| code.starts_with(class))
        })
}
/// The blacklisted tokens (jti, expiry) `query` lists for `key`, expired ones too (whether a
/// token has expired is the wall clock's say, which may step back).
async fn blacklisted_tokens<'k, K>(
    conn: &mut PgConnection,
    query: &'static str,
    key: K,
) -> Result<Vec<(String, i64)>, StoreError>
where
    K: sqlx::Encode<'k, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + 'k,
{
    Ok(sqlx::query_as(query)
        .bind(key)
        .fetch_all(&mut *conn)
        .await?)
}

/// True when this call added the row; false when the token was already blacklisted (or has no
/// outstanding row to point at).
async fn insert_blacklisted(conn: &mut PgConnection, jti: &str) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO blacklisted_tokens (token_id, blacklisted_at)
         SELECT id, $1 FROM outstanding_tokens WHERE jti = $2
         ON CONFLICT (token_id) DO NOTHING",
    )
    .bind(OffsetDateTime::now_utc().unix_timestamp())
    .bind(jti)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The advisory lock class of refresh-token families (the two-key lock space, apart from the
/// one-key locks of the pruning task and of sqlx's migrations).
const FAMILY_LOCK_CLASS: i32 = 0x646f_6f72;

/// Takes the transaction-scoped lock of a family: its rotations and its revocation take turns,
/// so a revocation can't miss a successor being recorded. Distinct families may share a lock
/// (the key is a 32-bit hash); they then only wait for each other.
async fn lock_family(conn: &mut PgConnection, family: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(FAMILY_LOCK_CLASS)
        .bind(family)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The family of the outstanding row `jti` (which exists), locked as [`lock_family`] does, in
/// one round trip (the lock's `void` is read as an empty text).
async fn lock_family_of(conn: &mut PgConnection, jti: &str) -> Result<String, StoreError> {
    let (family, _locked): (String, String) = sqlx::query_as(
        "SELECT COALESCE(family, jti),
                pg_advisory_xact_lock($2, hashtext(COALESCE(family, jti)))::text
         FROM outstanding_tokens WHERE jti = $1",
    )
    .bind(jti)
    .bind(FAMILY_LOCK_CLASS)
    .fetch_one(&mut *conn)
    .await?;
    Ok(family)
}

fn unix_millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Get-or-create of the outstanding row, in `family` (`None`: a family of its own). An owner that does not exist (deleted, or a token from
/// elsewhere) is stored as NULL rather than failing the foreign key. (SQLite's counterpart, for
/// a whole group at once, is in `sqlite/group_commit.rs`.)
async fn insert_outstanding(
    conn: &mut PgConnection,
    token: &OutstandingToken,
    family: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outstanding_tokens
             (jti, user_id, created_at, expires_at, family, client_addr, user_agent)
         VALUES ($1, (SELECT id FROM users WHERE id = $2), $3, $4, COALESCE($5, $1), $6, $7)
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(&token.jti)
    .bind(token.user_id)
    .bind(token.created_at.map(OffsetDateTime::unix_timestamp))
    .bind(token.expires_at.unix_timestamp())
    .bind(family)
    .bind(token.client_addr.as_deref())
    .bind(token.user_agent.as_deref())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
