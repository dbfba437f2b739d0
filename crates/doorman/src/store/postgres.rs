//! The PostgreSQL backend: one database shared by any number of doorman instances. Races are
//! settled by PostgreSQL's unique constraints under READ COMMITTED: of two transactions
//! inserting the same blacklist row, the second waits for the first to commit and then inserts
//! nothing (`ON CONFLICT DO NOTHING`), so exactly one rotation of a refresh token wins, on
//! whichever instance it runs.

use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgPool, PgPoolOptions};
use time::OffsetDateTime;

use super::{
    BlacklistOutcome, MigrationInfo, MigrationStatus, NewUser, OutstandingToken, PoolSettings,
    RotateOutcome, StoreError, User, UserRow, newly_applied,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// Every user query reads the same columns, in the shape of `UserRow`.
macro_rules! select_users {
    ($rest:literal) => {
        concat!(
            "SELECT id, username, password, is_active, is_superuser, last_login, date_joined ",
            "FROM users ",
            $rest
        )
    };
}

#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects lazily: the pool opens connections on demand, so doorman starts (and keeps
    /// verifying access tokens) while PostgreSQL is down, and recovers by itself when it is
    /// back. The first query says whether the database is there.
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
            .connect_lazy_with(options);
        let store = PostgresStore { pool };
        // Fail start-up (and the CLI) clearly when the database can't be reached at all.
        sqlx::query("SELECT 1").execute(&store.pool).await?;
        Ok(store)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn migrate(&self) -> Result<Vec<MigrationInfo>, StoreError> {
        let before = self.migration_status().await?;
        // sqlx takes an advisory lock around the run, so instances starting together migrate
        // once.
        MIGRATOR.run(&self.pool).await?;
        Ok(newly_applied(&before, self.migration_status().await?))
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
        Ok(MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| {
                let installed = applied.iter().find(|(version, _)| *version == m.version);
                MigrationStatus {
                    version: m.version,
                    description: m.description.to_string(),
                    applied: installed.is_some(),
                    applied_at: installed
                        .and_then(|(_, at)| *at)
                        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok()),
                }
            })
            .collect())
    }

    pub async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let row: UserRow = sqlx::query_as(
            "INSERT INTO users (username, password, is_active, is_superuser, date_joined)
             VALUES ($1, $2, $3, $4, $5)
             RETURNING id, username, password, is_active, is_superuser, last_login, date_joined",
        )
        .bind(&new.username)
        .bind(&new.password_hash)
        .bind(new.is_active)
        .bind(new.is_superuser)
        .bind(OffsetDateTime::now_utc().unix_timestamp())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::UsernameTaken,
            _ => StoreError::from(e),
        })?;
        row.try_into()
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(select_users!("WHERE username = $1"))
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        row.map(User::try_from).transpose()
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(select_users!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(User::try_from).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = sqlx::query_as(select_users!("ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(User::try_from).collect()
    }

    pub async fn set_password_hash(&self, id: i64, hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET password = $1 WHERE id = $2")
            .bind(hash)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_active(&self, username: &str, active: bool) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET is_active = $1 WHERE username = $2")
            .bind(active)
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn record_login(&self, id: i64, at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET last_login = $1 WHERE id = $2")
            .bind(at.unix_timestamp())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn record_outstanding(&self, token: &OutstandingToken) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_outstanding(&mut conn, token).await
    }

    pub async fn is_blacklisted(&self, jti: &str) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        is_blacklisted(&mut conn, jti).await
    }

    pub async fn blacklist(
        &self,
        token: &OutstandingToken,
    ) -> Result<BlacklistOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_outstanding(&mut tx, token).await?;
        let added = insert_blacklisted(&mut tx, &token.jti).await?;
        tx.commit().await?;
        Ok(if added {
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
        let mut tx = self.pool.begin().await?;
        let old_is_live = if blacklist_old {
            // The unique blacklist row is the arbiter: a racing transaction that inserted it
            // first makes this insert wait for its commit and then add nothing.
            insert_outstanding(&mut tx, old).await?;
            insert_blacklisted(&mut tx, &old.jti).await?
        } else {
            // Lock the old token's row so a blacklisting of it can't slip in between the check
            // and the new token's insert.
            insert_outstanding(&mut tx, old).await?;
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
        insert_outstanding(&mut tx, new).await?;
        tx.commit().await?;
        Ok(RotateOutcome::Rotated)
    }

    pub async fn flush_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        // Blacklist rows go by ON DELETE CASCADE, in the same statement.
        let done = sqlx::query("DELETE FROM outstanding_tokens WHERE expires_at <= $1")
            .bind(now.unix_timestamp())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// [`flush_expired`](Self::flush_expired) by at most one instance at a time: a
    /// transaction-scoped advisory lock; `None` when another instance holds it.
    pub async fn flush_expired_exclusively(
        &self,
        now: OffsetDateTime,
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
            .bind(now.unix_timestamp())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(done.rows_affected()))
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

async fn insert_outstanding(
    conn: &mut PgConnection,
    token: &OutstandingToken,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outstanding_tokens (jti, user_id, created_at, expires_at)
         VALUES ($1, (SELECT id FROM users WHERE id = $2), $3, $4)
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(&token.jti)
    .bind(token.user_id)
    .bind(token.created_at.map(OffsetDateTime::unix_timestamp))
    .bind(token.expires_at.unix_timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

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

async fn is_blacklisted(conn: &mut PgConnection, jti: &str) -> Result<bool, StoreError> {
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM blacklisted_tokens b JOIN outstanding_tokens o ON o.id = b.token_id
         WHERE o.jti = $1",
    )
    .bind(jti)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some())
}
