//! The SQLite backend: one file in WAL mode with foreign keys on. Writes that decide a race
//! start with `BEGIN IMMEDIATE`, which takes SQLite's single write lock up front, so racing
//! writers queue (within `busy_timeout`) instead of failing half-way with `SQLITE_BUSY`.
//! The writes made at request rate (rotations, blacklistings, family revocations, logins'
//! token rows and `last_login`) go through one group commit (`group_commit`), so they cost one disk sync per
//! group rather than one each, and never hold the pool's other connections waiting for the
//! write lock.

use std::str::FromStr;
use std::sync::Arc;

use sqlx::SqliteConnection;
use sqlx::error::DatabaseError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteError, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use time::OffsetDateTime;

use super::{
    BlacklistOutcome, KeyRotation, KeyRow, MigrationInfo, MigrationStatus, NewUser,
    OutstandingToken, PoolSettings, RotateOutcome, StoreError, StoredKey, User, UserRow,
    newly_applied,
};

mod group_commit;
mod inline;
mod read_only;

use group_commit::GroupCommit;
use inline::InlineReads;
use read_only::{ReadOnlySeen, close_idle};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Readers run side by side under WAL; writers queue on SQLite's lock whatever the pool size,
/// so a few connections are plenty.
const DEFAULT_MAX_CONNECTIONS: u32 = 8;

/// How many times the readiness probe tries a write before it reports the storage read-only
/// (see [`SqliteStore::writable`]).
const WRITABLE_TRIES: usize = 4;

super::portable::portable_queries!(SqliteStore, SqliteConnection);
super::import::import_queries!(SqliteConnection);

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    writes: GroupCommit,
    read_only: Arc<ReadOnlySeen>,
    /// The request path's point lookups, made on the calling thread (see [`InlineReads`]);
    /// `None` for an in-memory database.
    inline: Option<Arc<InlineReads>>,
}

impl SqliteStore {
    /// `acquire_timeout` bounds both the wait for a pooled connection and the wait for SQLite's
    /// write lock (`busy_timeout`); past it the store reports itself unavailable.
    pub async fn connect(
        database_url: &str,
        settings: &PoolSettings,
    ) -> Result<SqliteStore, StoreError> {
        let options = if database_url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(database_url)?
        } else {
            SqliteConnectOptions::new().filename(database_url)
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before it is acknowledged, so a blacklisting survives a
            // power loss too (NORMAL may roll the last commits back in WAL mode).
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(settings.acquire_timeout);
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            create_private_dir(dir).await.map_err(|e| {
                StoreError::Unavailable(format!("could not create {}: {e}", dir.display()).into())
            })?;
        }
        let path = options.get_filename().to_path_buf();
        let in_memory = database_url.contains("mode=memory");
        let read_only = Arc::new(ReadOnlySeen::new());
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS))
            .acquire_timeout(settings.acquire_timeout)
            .after_release(|conn, _| Box::pin(async move { Ok(transaction_ended(conn).await) }))
            .before_acquire({
                let read_only = read_only.clone();
                move |_, meta| {
                    let fresh = !read_only.opened_before_last(meta.age);
                    Box::pin(async move { Ok(fresh) })
                }
            })
            .connect_with(options)
            .await?;
        let writes = GroupCommit::start(pool.clone(), read_only.clone());
        // After the pool: it has created the file if it was missing.
        let inline = InlineReads::open(&path, in_memory).map(Arc::new);
        if let Some(inline) = &inline {
            read_only.close_with_each_refusal(inline.clone());
        }
        Ok(SqliteStore {
            pool,
            writes,
            read_only,
            inline,
        })
    }

    /// The blacklist check made on the calling thread; `None` when it must go through sqlx
    /// (see [`InlineReads`]).
    pub fn is_blacklisted_inline(&self, jti: &str) -> Option<bool> {
        self.inline.as_ref()?.is_blacklisted(jti)
    }

    /// A `BEGIN IMMEDIATE` transaction for the writes outside the group commit, noting a
    /// read-only database (see [`ReadOnlySeen`]).
    async fn begin_immediate(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(|e| {
            self.read_only.note(&e);
            e.into()
        })
    }

    /// Probes for writes with a write that is rolled back (a table created in a `BEGIN
    /// IMMEDIATE` transaction: SQLite takes the lock and opens a read-only file without
    /// complaint and refuses only the first change), so a read-only file or file system shows
    /// before a client's write meets it. It waits for the write lock like any write, at most
    /// `database_acquire_timeout`. A refusal closes the pool's older connections (see
    /// [`ReadOnlySeen`]) and is tried again on a fresh connection, [`WRITABLE_TRIES`] times in
    /// all over about a tenth of a second: storage writable again is seen at the first probe.
    pub async fn writable(&self) -> Result<bool, StoreError> {
        for attempt in 0..WRITABLE_TRIES {
            if attempt > 1 {
                // A connection opened before the refusal may still be on its way back to the
                // pool (its release check runs after the request that used it has answered),
                // or closing; it holds the read-only mapping until it is gone.
                tokio::time::sleep(std::time::Duration::from_millis(25 * attempt as u64)).await;
            }
            let mut conn = self.pool.acquire().await?;
            let (probe, ended) = match sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
                Ok(_) => {
                    let probe = sqlx::query("CREATE TABLE doorman_write_probe (x)")
                        .execute(&mut *conn)
                        .await;
                    let ended = sqlx::query("ROLLBACK").execute(&mut *conn).await.is_ok();
                    (probe, ended)
                }
                Err(e) => (Err(e), true),
            };
            // A connection refused as read-only shares the read-only mapping: closed here and
            // now. Given back to the pool it would stay open until the pool's return task ran,
            // and on a busy machine the next try's fresh connection would open beside it,
            // share the mapping and fail in turn. One whose transaction didn't end is closed
            // too.
            let read_only = matches!(&probe, Err(e) if self.read_only.note(e));
            if read_only || !ended {
                let _ = conn.close().await;
            }
            match probe {
                Ok(_) => return Ok(true),
                Err(_) if read_only => close_idle(&self.pool).await,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }

    pub async fn rotate_signing_keys(
        &self,
        now: i64,
        retire_after: i64,
    ) -> Result<KeyRotation, StoreError> {
        let mut tx = self.begin_immediate().await?;
        let rotation = Self::promote_next_key(&mut tx, now, retire_after).await?;
        tx.commit().await?;
        Ok(rotation)
    }

    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>, StoreError> {
        // sqlx creates its bookkeeping table on the first run; before that nothing is applied.
        let table: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&self.pool)
        .await?;
        let applied: Vec<(i64, Option<i64>)> = match table {
            Some(_) => {
                sqlx::query_as(
                    "SELECT version, CAST(strftime('%s', installed_on) AS INTEGER)
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
        // The `$`-separated fields one at a time, as PostgreSQL's split_part gives them: each
        // step takes the text before the next `$` (or the end) and keeps what follows.
        Ok(sqlx::query_scalar(
            "WITH s1 AS (SELECT substr(password, 1, instr(password || '$', '$') - 1) AS f1,
                                substr(password, instr(password || '$', '$') + 1) AS r
                         FROM users),
                  s2 AS (SELECT f1, substr(r, 1, instr(r || '$', '$') - 1) AS f2,
                                substr(r, instr(r || '$', '$') + 1) AS r
                         FROM s1 WHERE f1 IN ('', 'argon2', 'pbkdf2_sha256', 'pbkdf2_sha1',
                                              'bcrypt', 'bcrypt_sha256', 'scrypt')),
                  s3 AS (SELECT f1, f2, substr(r, 1, instr(r || '$', '$') - 1) AS f3,
                                substr(r, instr(r || '$', '$') + 1) AS r FROM s2),
                  s4 AS (SELECT f1, f2, f3, substr(r, 1, instr(r || '$', '$') - 1) AS f4,
                                substr(r, instr(r || '$', '$') + 1) AS r FROM s3),
                  s5 AS (SELECT f1, f2, f3, f4, substr(r, 1, instr(r || '$', '$') - 1) AS f5
                         FROM s4)
             SELECT DISTINCT CASE
                 WHEN f1 IN ('pbkdf2_sha256', 'pbkdf2_sha1') THEN f1 || '$' || f2
                 WHEN f1 IN ('bcrypt', 'bcrypt_sha256') THEN f1 || '$$' || f3 || '$' || f4
                 WHEN f1 = 'scrypt' THEN f1 || '$' || f2 || '$$' || f4 || '$' || f5
                 ELSE f1 || '$' || f2 || '$' || f3 || '$' || f4
             END
             FROM s5",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes in a `BEGIN IMMEDIATE` transaction of its own: rare (an operator, a user
    /// logging out everywhere), so not worth a place in the group commit, and still serialised
    /// with it by SQLite's one write lock. A rotation committed before it has its successor
    /// blacklisted here; one committed after finds its old token blacklisted.
    pub async fn revoke_user_tokens(
        &self,
        id: i64,
    ) -> Result<Option<super::Revocation>, StoreError> {
        let mut tx = self.begin_immediate().await?;
        let revocation = revoke_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(revocation)
    }

    /// Sets a user's `last_login` in a group commit (see `group_commit`).
    pub async fn record_login(&self, id: i64, at: OffsetDateTime) -> Result<(), StoreError> {
        self.writes.apply(group_commit::login(id, at)).await
    }

    /// Appends an audit event in a group commit (see `group_commit`).
    pub async fn record_audit(&self, event: super::AuditEvent) -> Result<(), StoreError> {
        self.writes.apply(group_commit::audit(event)).await
    }

    /// Records a newly issued token in a group commit (see `group_commit`).
    pub async fn record_outstanding(&self, token: &OutstandingToken) -> Result<(), StoreError> {
        self.writes.apply(group_commit::record(token.clone())).await
    }

    /// Blacklists in a group commit (see `group_commit`).
    pub async fn blacklist(
        &self,
        token: &OutstandingToken,
    ) -> Result<BlacklistOutcome, StoreError> {
        self.writes
            .apply(group_commit::blacklist(token.clone()))
            .await
    }

    /// Rotates in a group commit (see `group_commit`): whoever is queued first wins.
    pub async fn rotate(
        &self,
        old: &OutstandingToken,
        new: &OutstandingToken,
        blacklist_old: bool,
    ) -> Result<RotateOutcome, StoreError> {
        let write = group_commit::rotate(old.clone(), new.clone(), blacklist_old);
        self.writes.apply(write).await
    }

    /// Revokes a refresh-token family in a group commit (see `group_commit`), in queue order
    /// among the rotations of its members.
    pub async fn revoke_family(&self, family: &str) -> Result<u64, StoreError> {
        self.writes
            .apply(group_commit::revoke_family(family.to_owned()))
            .await
    }

    /// Reserves a login attempt in a group commit (see `group_commit` and `store::throttle`).
    pub async fn throttle_reserve(
        &self,
        key: &super::throttle::LoginKey,
        rules: &super::throttle::ThrottleRules,
        now: i64,
    ) -> Result<super::throttle::Verdict, StoreError> {
        let write = group_commit::throttle_reserve(key.clone(), *rules, now);
        self.writes.apply(write).await
    }

    /// Clears a successful login's counters in a group commit.
    pub async fn throttle_succeeded(
        &self,
        key: &super::throttle::LoginKey,
        rules: &super::throttle::ThrottleRules,
        now: i64,
    ) -> Result<(), StoreError> {
        let write = group_commit::throttle_succeeded(key.clone(), *rules, now);
        self.writes.apply(write).await
    }

    /// Writes a batch of an import in one `BEGIN IMMEDIATE` transaction (each item in a
    /// savepoint of its own), committed, or rolled back for a dry run. Short batches keep a
    /// running server's writes from waiting long for the lock.
    pub async fn import_batch(
        &self,
        items: &[super::import::ImportItem],
        dry_run: bool,
    ) -> Result<Vec<Result<super::import::ItemOutcome, StoreError>>, StoreError> {
        let mut tx = self.begin_immediate().await?;
        let outcomes = import_items_in(&mut tx, items).await?;
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(outcomes)
    }

    /// Moves AUTOINCREMENT's counter of user ids to at least `through`, so a user created
    /// here later never gets an id at or below it. (SQLite raises the counter by itself when a
    /// larger id is inserted; this makes it so before the insert, whatever the order.)
    pub async fn reserve_user_ids(&self, through: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_immediate().await?;
        sqlx::query(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'users', 0
             WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'users')",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE sqlite_sequence SET seq = MAX(seq, $1) WHERE name = 'users'")
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

    /// Transactions the group commit has committed and the writes they held.
    pub fn group_commits(&self) -> (u64, u64) {
        self.writes.stats()
    }
}

#[cfg(test)]
impl SqliteStore {
    /// For the tests' own SQL, such as counting rows.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(super) fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }
}

/// SQLite result codes that mean the storage can't serve this request, rather than that the
/// request is wrong: the lock stayed taken past `busy_timeout` (BUSY, LOCKED), or the file
/// can't be opened, read, written or grown, or is damaged (CANTOPEN, IOERR, READONLY, FULL,
/// CORRUPT, NOTADB). The client is told 503 and to retry; the operator reads the log line.
/// Extended codes carry the primary one in their low byte.
pub(super) fn is_unavailable(error: &(dyn DatabaseError + 'static)) -> bool {
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const READONLY: i32 = 8;
    const IOERR: i32 = 10;
    const CORRUPT: i32 = 11;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    const NOTADB: i32 = 26;
    error
        .try_downcast_ref::<SqliteError>()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| {
            matches!(
                code & 0xff,
                BUSY | LOCKED | READONLY | IOERR | CORRUPT | FULL | CANTOPEN | NOTADB
            )
        })
}

/// Whether a connection going back to the pool is out of any transaction, so it may be
/// reused; `false` closes it. When `COMMIT` fails on a full disk or an I/O error, SQLite has
/// already rolled the transaction back, so the `ROLLBACK` sqlx sends when the `Transaction`
/// drops fails too, and sqlx still counts the transaction as open: every later
/// `begin_with("BEGIN IMMEDIATE")` on that connection would fail ("non-zero transaction
/// depth", a 500) long after the disk had space again. A fresh connection costs far less.
async fn transaction_ended(conn: &mut SqliteConnection) -> bool {
    use sqlx::Connection;
    if !conn.is_in_transaction() {
        return true;
    }
    // The dropped `Transaction`'s rollback is queued on the connection's worker, maybe not run
    // yet: a ping waits for it, and only a transaction still open after it is one to close.
    if conn.ping().await.is_err() {
        return false;
    }
    let ended = !conn.is_in_transaction();
    if !ended {
        tracing::warn!("a connection whose transaction could not end was closed");
    }
    ended
}

/// The database's directory, created owner-only when doorman makes it: the file holds password
/// hashes.
async fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::tests::{new_user, token};
    use super::super::{Store, StoreError};
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

    async fn migrated() -> (Store, tempfile::TempDir) {
        let (store, dir) = store().await;
        store.migrate().await.unwrap();
        (store, dir)
    }

    fn pool(store: &Store) -> &SqlitePool {
        match store {
            Store::Sqlite(s) => &s.pool,
            Store::Postgres(_) => panic!("not SQLite"),
        }
    }

    async fn count(store: &Store, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(pool(store))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn connects_to_every_url_form_and_sets_the_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        for url in [
            format!("sqlite://{}", path("a/one.db")),
            format!("sqlite:{}", path("b/two.db")),
            path("c/d/three.db"),
        ] {
            let store = Store::connect(&url).await.unwrap();
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(pool(&store))
                .await
                .unwrap();
            assert_eq!(mode, "wal", "{url}");
            assert_eq!(count(&store, "PRAGMA foreign_keys").await, 1);
            assert_eq!(count(&store, "PRAGMA synchronous").await, 2, "FULL");
            assert_eq!(count(&store, "PRAGMA busy_timeout").await, 5000);
        }
        assert!(dir.path().join("c/d/three.db").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("c/d"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        assert!(matches!(
            Store::connect("mysql://localhost/doorman").await,
            Err(StoreError::Database(_))
        ));
    }

    #[tokio::test]
    async fn an_unopenable_file_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: SQLite can't open it.
        let url = format!("sqlite://{}", dir.path().display());
        assert!(matches!(
            Store::connect(&url).await,
            Err(StoreError::Unavailable(_))
        ));
    }

    /// Storage that can't take writes (a read-only file or mount, a damaged file) is "not
    /// now" for the requests that meet it: a 503 with `Retry-After`, never a 500. Reads go on.
    #[tokio::test]
    async fn a_read_only_database_is_unavailable_for_writes() {
        let (store, dir) = migrated().await;
        let alice = store.create_user(new_user("alice")).await.unwrap();
        drop(store);
        let url = format!(
            "sqlite://{}?mode=ro",
            dir.path().join("sub/doorman.sqlite3").display()
        );
        let read_only = Store::connect(&url).await.unwrap();
        assert_eq!(
            read_only.user_by_id(alice.id).await.unwrap().map(|u| u.id),
            Some(alice.id)
        );
        let refused = read_only.create_user(new_user("bob")).await.unwrap_err();
        assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
        let refused = read_only
            .record_outstanding(&token("ro", Some(alice.id), 60))
            .await
            .unwrap_err();
        assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
    }

    /// Logins' writes (token rows, `last_login`) waiting for SQLite's write lock (held here by
    /// another process's transaction, as a slow disk sync would hold it) wait in the group
    /// commit's queue, not on connections of the pool: reads, such as the user lookups behind
    /// `/hello/`, still get a connection at once. (Each on a connection of its own, sixteen
    /// waiting writes held all eight, and reads waited for the lock too.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writes_waiting_for_the_lock_leave_the_pool_to_reads() {
        use sqlx::Connection;
        let (store, dir) = migrated().await;
        let alice = store.create_user(new_user("alice")).await.unwrap();
        let path = dir.path().join("sub/doorman.sqlite3");
        let mut other = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();

        let mut writes = tokio::task::JoinSet::new();
        for i in 0..16 {
            let (recording, logging_in) = (store.clone(), store.clone());
            let user = alice.id;
            writes.spawn(async move {
                recording
                    .record_outstanding(&token(&format!("login{i}"), Some(user), 60))
                    .await
            });
            writes.spawn(async move {
                logging_in
                    .record_login(user, OffsetDateTime::now_utc())
                    .await
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            store.user_by_id(alice.id),
        )
        .await
        .expect("a read waited behind writes queued for the lock")
        .unwrap();
        assert_eq!(read.map(|u| u.username), Some("alice".to_owned()));
        assert!(
            writes.try_join_next().is_none(),
            "a write got past the lock"
        );

        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        while let Some(done) = writes.join_next().await {
            done.unwrap().unwrap();
        }
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM outstanding_tokens WHERE jti LIKE 'login%'"
            )
            .await,
            16
        );
        let alice = store.user_by_id(alice.id).await.unwrap().unwrap();
        assert!(alice.last_login.is_some());
    }

    /// A write that fails inside a group is undone alone: its blacklisting of the old token
    /// goes with it, and the writes around it commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_write_is_rolled_back_alone() {
        let (store, _dir) = migrated().await;
        sqlx::query(
            "CREATE TRIGGER poison BEFORE INSERT ON outstanding_tokens
             WHEN NEW.jti = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned jti'); END",
        )
        .execute(pool(&store))
        .await
        .unwrap();
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(21));
        let mut tasks = Vec::new();
        for i in 0..21 {
            let (store, start) = (store.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                let new = if i == 10 {
                    "poison".to_string()
                } else {
                    format!("next{i}")
                };
                store
                    .rotate(
                        &token(&format!("old{i}"), None, 60),
                        &token(&new, None, 60),
                        true,
                    )
                    .await
            }));
        }
        for (i, task) in tasks.into_iter().enumerate() {
            let outcome = task.await.unwrap();
            if i == 10 {
                let error = outcome.unwrap_err();
                assert!(matches!(error, StoreError::Database(_)), "{error:?}");
                assert!(error.to_string().contains("poisoned jti"), "{error}");
            } else {
                assert_eq!(outcome.unwrap(), RotateOutcome::Rotated);
            }
        }
        assert!(!store.is_blacklisted("old10").await.unwrap());
        assert!(store.is_blacklisted("old9").await.unwrap());
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM blacklisted_tokens").await,
            20
        );
        // The old token was not spent: it can still rotate.
        assert_eq!(
            store
                .rotate(&token("old10", None, 60), &token("next10", None, 60), true)
                .await
                .unwrap(),
            RotateOutcome::Rotated
        );
    }
}
