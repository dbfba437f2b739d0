//! The SQLite backend: one file in WAL mode with foreign keys on. Writes that decide a race
//! start with `BEGIN IMMEDIATE`, which takes SQLite's single write lock up front, so racing
//! rotations queue (within `busy_timeout`) instead of failing half-way.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};
use time::OffsetDateTime;

use super::{
    BlacklistOutcome, MigrationStatus, NewUser, OutstandingToken, RotateOutcome, StoreError, User,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(database_url: &str) -> Result<SqliteStore, StoreError> {
        let options = if database_url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(database_url).map_err(|e| {
                StoreError::Database(format!("bad SQLite URL {database_url:?}: {e}"))
            })?
        } else {
            SqliteConnectOptions::new().filename(database_url)
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            crate::keys::create_private_dir(dir).map_err(|e| {
                StoreError::Unavailable(format!("could not create {}: {e}", dir.display()))
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool })
    }

    pub async fn migrate(&self) -> Result<Vec<MigrationStatus>, StoreError> {
        let before = self.migration_status().await?;
        MIGRATOR.run(&self.pool).await?;
        Ok(before
            .into_iter()
            .filter(|m| !m.applied)
            .map(|m| MigrationStatus { applied: true, ..m })
            .collect())
    }

    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>, StoreError> {
        let table: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&self.pool)
        .await?;
        let applied: Vec<i64> = match table {
            Some(_) => {
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                    .fetch_all(&self.pool)
                    .await?
            }
            None => Vec::new(),
        };
        Ok(MIGRATOR
            .iter()
            .map(|m| MigrationStatus {
                version: m.version,
                description: m.description.to_string(),
                applied: applied.contains(&m.version),
            })
            .collect())
    }

    pub async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let row = sqlx::query(
            "INSERT INTO users (username, password, is_active, is_superuser, date_joined)
             VALUES ($1, $2, $3, $4, $5)
             RETURNING id, username, password, is_active, is_superuser, last_login, date_joined",
        )
        .bind(&new.username)
        .bind(&new.password_hash)
        .bind(new.is_active)
        .bind(new.is_superuser)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::UsernameTaken,
            _ => StoreError::from(e),
        })?;
        user_from_row(&row)
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        let sql = "SELECT id, username, password, is_active, is_superuser, last_login, date_joined FROM users WHERE username = $1";
        let row = sqlx::query(sql)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        let sql = "SELECT id, username, password, is_active, is_superuser, last_login, date_joined FROM users WHERE id = $1";
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let sql = "SELECT id, username, password, is_active, is_superuser, last_login, date_joined FROM users ORDER BY id";
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
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
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM blacklisted_tokens b JOIN outstanding_tokens o ON o.id = b.token_id WHERE o.jti = $1",
        )
        .bind(jti)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    pub async fn blacklist(
        &self,
        token: &OutstandingToken,
    ) -> Result<BlacklistOutcome, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if blacklist_old {
            insert_outstanding(&mut tx, old).await?;
            if !insert_blacklisted(&mut tx, &old.jti).await? {
                tx.rollback().await?;
                return Ok(RotateOutcome::AlreadyBlacklisted);
            }
        }
        insert_outstanding(&mut tx, new).await?;
        tx.commit().await?;
        Ok(RotateOutcome::Rotated)
    }

    pub async fn flush_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM outstanding_tokens WHERE expires_at <= $1")
            .bind(now.unix_timestamp())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

async fn insert_outstanding(
    conn: &mut SqliteConnection,
    token: &OutstandingToken,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outstanding_tokens (jti, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)
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

/// True when this call added the row; false when the token was already blacklisted.
async fn insert_blacklisted(conn: &mut SqliteConnection, jti: &str) -> Result<bool, StoreError> {
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

fn user_from_row(row: &SqliteRow) -> Result<User, StoreError> {
    let time = |secs: i64| {
        OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|e| StoreError::Database(format!("bad timestamp {secs}: {e}")))
    };
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password")?,
        is_active: row.try_get("is_active")?,
        is_superuser: row.try_get("is_superuser")?,
        last_login: row
            .try_get::<Option<i64>, _>("last_login")?
            .map(time)
            .transpose()?,
        date_joined: time(row.try_get("date_joined")?)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::Store;
    use super::*;

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}",
            dir.path().join("sub/doorman.sqlite3").display()
        );
        let store = Store::connect(&url).await.unwrap();
        (store, dir)
    }

    fn token(jti: &str, user_id: Option<i64>, expires_in: i64) -> OutstandingToken {
        let now = OffsetDateTime::now_utc();
        OutstandingToken {
            jti: jti.into(),
            user_id,
            created_at: Some(now),
            expires_at: now + time::Duration::seconds(expires_in),
        }
    }

    fn new_user(name: &str) -> NewUser {
        NewUser {
            username: name.into(),
            password_hash: "h".into(),
            is_active: true,
            is_superuser: false,
        }
    }

    #[tokio::test]
    async fn migrations_apply_once_and_are_listed() {
        let (store, _dir) = store().await;
        assert_eq!(store.pending_migrations().await.unwrap(), 1);
        let applied = store.migrate().await.unwrap();
        assert_eq!(applied.len(), 1);
        assert_eq!(applied[0].version, 1);
        assert!(store.migrate().await.unwrap().is_empty());
        assert!(
            store
                .migration_status()
                .await
                .unwrap()
                .iter()
                .all(|m| m.applied)
        );
    }

    #[tokio::test]
    async fn users() {
        let (store, _dir) = store().await;
        store.migrate().await.unwrap();
        let alice = store.create_user(new_user("alice")).await.unwrap();
        assert_eq!(alice.id, 1);
        assert!(matches!(
            store.create_user(new_user("alice")).await,
            Err(StoreError::UsernameTaken)
        ));
        assert_eq!(
            store.user_by_username("alice").await.unwrap(),
            Some(alice.clone())
        );
        assert_eq!(
            store.user_by_username("Alice").await.unwrap(),
            None,
            "usernames are case-sensitive, as in Django"
        );
        assert!(store.set_active("alice", false).await.unwrap());
        assert!(!store.user_by_id(1).await.unwrap().unwrap().is_active);
        assert!(!store.set_active("nobody", false).await.unwrap());
        store
            .record_login(1, OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert!(
            store
                .user_by_id(1)
                .await
                .unwrap()
                .unwrap()
                .last_login
                .is_some()
        );
        assert!(store.set_password_hash(1, "new").await.unwrap());
        assert_eq!(store.list_users().await.unwrap()[0].password_hash, "new");
        store
            .record_outstanding(&token("t1", Some(1), 60))
            .await
            .unwrap();
        assert!(store.delete_user("alice").await.unwrap());
        assert!(!store.delete_user("alice").await.unwrap());
        // The outstanding row stays, without owner, so it can still be blacklisted.
        assert_eq!(
            store.blacklist(&token("t1", None, 60)).await.unwrap(),
            BlacklistOutcome::Added
        );
    }

    #[tokio::test]
    async fn blacklist_creates_unknown_tokens_and_is_idempotent() {
        let (store, _dir) = store().await;
        store.migrate().await.unwrap();
        assert!(!store.is_blacklisted("x").await.unwrap());
        assert_eq!(
            store.blacklist(&token("x", None, 60)).await.unwrap(),
            BlacklistOutcome::Added
        );
        assert!(store.is_blacklisted("x").await.unwrap());
        assert_eq!(
            store.blacklist(&token("x", None, 60)).await.unwrap(),
            BlacklistOutcome::AlreadyBlacklisted
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_rotations_have_one_winner() {
        let (store, _dir) = store().await;
        store.migrate().await.unwrap();
        store
            .record_outstanding(&token("old", None, 60))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .rotate(
                        &token("old", None, 60),
                        &token(&format!("new{i}"), None, 60),
                        true,
                    )
                    .await
                    .unwrap()
            }));
        }
        let mut rotated = 0;
        for t in tasks {
            if t.await.unwrap() == RotateOutcome::Rotated {
                rotated += 1;
            }
        }
        assert_eq!(rotated, 1);
    }

    #[tokio::test]
    async fn flush_removes_expired_rows_and_their_blacklist_entries() {
        let (store, _dir) = store().await;
        store.migrate().await.unwrap();
        store.blacklist(&token("gone", None, -10)).await.unwrap();
        store
            .record_outstanding(&token("stale", None, 0))
            .await
            .unwrap();
        store
            .record_outstanding(&token("live", None, 600))
            .await
            .unwrap();
        assert_eq!(
            store
                .flush_expired(OffsetDateTime::now_utc())
                .await
                .unwrap(),
            2
        );
        assert!(!store.is_blacklisted("gone").await.unwrap());
        assert_eq!(
            store.blacklist(&token("live", None, 600)).await.unwrap(),
            BlacklistOutcome::Added
        );
    }
}
