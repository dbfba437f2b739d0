//! What every backend must do alike. Each test is an async function given a fresh, empty
//! [`Store`], and [`on_both_backends!`] runs it twice, as `NAME::sqlite` (a file of its own) and
//! `NAME::postgres` (a database of its own, created on `DOORMAN_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`, and dropped afterwards), so one backend can't drift
//! from the other unnoticed. When PostgreSQL can't be reached the PostgreSQL half says SKIPPED
//! loudly and passes, or fails under `DOORMAN_REQUIRE_ALL=1`, as the integration tests do. What
//! only one backend does is tested beside it (`sqlite.rs`, `sqlite/group_commit.rs`).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use time::OffsetDateTime;

use super::{
    AUDIT_USER_AGENT_MAX, AuditEvent, AuditFilter, BlacklistOutcome, NewUser, OutstandingToken,
    RotateOutcome, Store, StoreError, User,
};
use super::{PostgresStore, SqliteStore};

/// Makes `NAME::sqlite` and `NAME::postgres` tests of the async function `NAME(store: Store)`;
/// `multi_thread` after the name gives them a 4-worker runtime, for the races.
macro_rules! on_both_backends {
    ($test:ident) => {
        on_both_backends!($test, #[tokio::test]);
    };
    ($test:ident, multi_thread) => {
        on_both_backends!(
            $test,
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        );
    };
    ($test:ident, #[$runtime:meta]) => {
        mod $test {
            #[$runtime]
            async fn sqlite() {
                super::run(super::Backend::Sqlite, stringify!($test), super::$test).await
            }
            #[$runtime]
            async fn postgres() {
                super::run(super::Backend::Postgres, stringify!($test), super::$test).await
            }
        }
    };
}

/// For tests elsewhere in the crate that need a store of each backend (they import `run` and
/// `Backend` beside it, which the expanded tests name as `super::`).
pub(crate) use on_both_backends;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `test` on a fresh store of `backend`, or skips it loudly when PostgreSQL is unreachable.
/// The store's database goes afterwards, whether the test passed or not.
pub(crate) async fn run<T, F>(backend: Backend, name: &str, test: T)
where
    T: FnOnce(Store) -> F,
    F: Future<Output = ()>,
{
    let fresh = match backend {
        Backend::Sqlite => FreshStore::sqlite().await,
        Backend::Postgres if !postgres_reachable() => {
            skip_or_fail(
                &format!("the PostgreSQL half of store test {name}"),
                &format!("PostgreSQL is unreachable at {}", postgres_admin_url()),
            );
            return;
        }
        Backend::Postgres => FreshStore::postgres().await,
    };
    let outcome = AssertUnwindSafe(test(fresh.store.clone()))
        .catch_unwind()
        .await;
    fresh.remove(outcome.is_ok()).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A test that can't run here: a failure under `DOORMAN_REQUIRE_ALL=1`, else a skip said on the
/// real stderr (the harness captures `eprintln!` of passing tests, and a skip must not go
/// unnoticed).
fn skip_or_fail(what: &str, reason: &str) {
    if std::env::var("DOORMAN_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("DOORMAN_REQUIRE_ALL=1 but {what} can't run: {reason}");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: {what}, because {reason} ***\n"
    );
}

/// The server the PostgreSQL tests create their databases on.
fn postgres_admin_url() -> String {
    std::env::var("DOORMAN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Asked once per test binary: a port that answers TCP is taken as PostgreSQL being there (a
/// database that then refuses the tests fails them rather than skipping).
fn postgres_reachable() -> bool {
    static REACHABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REACHABLE.get_or_init(|| {
        let Ok(options) = postgres_admin_url().parse::<sqlx::postgres::PgConnectOptions>() else {
            return false;
        };
        let address = format!("{}:{}", options.get_host(), options.get_port());
        std::net::ToSocketAddrs::to_socket_addrs(&address)
            .ok()
            .and_then(|mut addrs| addrs.next())
            .is_some_and(|addr| {
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3))
                    .is_ok()
            })
    })
}

/// A store on a database no other test uses.
struct FreshStore {
    store: Store,
    /// The SQLite file's directory, removed on drop.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database to drop afterwards.
    postgres_name: Option<String>,
}

impl FreshStore {
    async fn sqlite() -> FreshStore {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}",
            dir.path().join("sub/doorman.sqlite3").display()
        );
        FreshStore {
            store: Store::connect(&url).await.unwrap(),
            _dir: Some(dir),
            postgres_name: None,
        }
    }

    async fn postgres() -> FreshStore {
        use sqlx::Connection;
        let name = format!("doorman_store_test_{}", uuid::Uuid::new_v4().simple());
        let admin = postgres_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to the test PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .expect("create a test database");
        let _ = conn.close().await;
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        let store = Store::connect(&format!("{base}/{name}")).await.unwrap();
        assert_eq!(store.backend(), "postgres");
        FreshStore {
            store,
            _dir: None,
            postgres_name: Some(name),
        }
    }

    /// Closes the store (only after a pass: a failed test may have left tasks holding
    /// connections, which closing would wait for) and drops its PostgreSQL database, together
    /// with any connection still open on it.
    async fn remove(self, passed: bool) {
        if passed {
            self.store.close().await;
        }
        let Some(name) = &self.postgres_name else {
            return;
        };
        use sqlx::Connection;
        let dropped = async {
            let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await?;
            conn.close().await
        }
        .await;
        if let Err(error) = dropped {
            eprintln!("note: could not drop the test database {name}: {error}");
        }
    }
}

/// The one number `sql` selects (a count, a stored time), read alike on both backends.
async fn number(store: &Store, sql: &'static str) -> i64 {
    let found: Result<i64, sqlx::Error> = match store {
        Store::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await,
        Store::Postgres(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await,
    };
    found.unwrap()
}

/// Transactions SQLite's group commit made and the writes they held; `None` on PostgreSQL,
/// which writes each call in a transaction of its own.
fn group_commits(store: &Store) -> Option<(u64, u64)> {
    match store {
        Store::Sqlite(s) => Some(s.group_commits()),
        Store::Postgres(_) => None,
    }
}

pub(super) fn token(jti: &str, user_id: Option<i64>, expires_in: i64) -> OutstandingToken {
    let now = OffsetDateTime::now_utc();
    OutstandingToken {
        jti: jti.into(),
        user_id,
        created_at: Some(now),
        expires_at: now + time::Duration::seconds(expires_in),
        client_addr: None,
        user_agent: None,
    }
}

pub(super) fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        password_hash: "h".into(),
        is_active: true,
        is_superuser: false,
    }
}

on_both_backends!(migrations_apply_once_and_are_listed);
async fn migrations_apply_once_and_are_listed(store: Store) {
    let known = match &store {
        Store::Sqlite(_) => SqliteStore::migrator().iter().count(),
        Store::Postgres(_) => PostgresStore::migrator().iter().count(),
    };
    assert!(known >= 1);
    assert_eq!(store.pending_migrations().await.unwrap(), known);
    let status = store.migration_status().await.unwrap();
    assert!(status.iter().all(|m| !m.applied && m.applied_at.is_none()));

    let before = OffsetDateTime::now_utc() - time::Duration::seconds(5);
    let applied = store.migrate().await.unwrap();
    assert_eq!(applied.len(), known);
    assert_eq!(applied[0].version, 1);
    assert_eq!(applied[0].description, "initial");

    assert!(store.migrate().await.unwrap().is_empty());
    assert_eq!(store.pending_migrations().await.unwrap(), 0);
    let status = store.migration_status().await.unwrap();
    assert_eq!(status.len(), known);
    for m in status {
        let at = m.applied_at.unwrap();
        assert!(m.applied);
        assert!(at >= before && at <= OffsetDateTime::now_utc() + time::Duration::seconds(5));
    }
}

on_both_backends!(users);
async fn users(store: Store) {
    store.migrate().await.unwrap();
    let before = OffsetDateTime::now_utc().unix_timestamp();
    let alice = store.create_user(new_user("alice")).await.unwrap();
    assert_eq!(alice.id, 1);
    assert_eq!(alice.username, "alice");
    assert!(alice.is_active && !alice.is_superuser && alice.last_login.is_none());
    assert!(alice.date_joined.unix_timestamp() >= before);
    assert!(matches!(
        store.create_user(new_user("alice")).await,
        Err(StoreError::UsernameTaken)
    ));
    let bob = store
        .create_user(NewUser {
            is_superuser: true,
            is_active: false,
            ..new_user("bob")
        })
        .await
        .unwrap();
    assert!(bob.is_superuser && !bob.is_active);

    assert_eq!(
        store.user_by_username("alice").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.user_by_id(bob.id).await.unwrap(), Some(bob.clone()));
    assert_eq!(store.user_by_id(99).await.unwrap(), None);
    assert_eq!(
        store.user_by_username("Alice").await.unwrap(),
        None,
        "usernames are case-sensitive, as in Django"
    );
    let names: Vec<_> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    assert!(store.set_active("alice", false).await.unwrap());
    assert!(!store.user_by_id(1).await.unwrap().unwrap().is_active);
    assert!(!store.set_active("nobody", false).await.unwrap());

    let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    store.record_login(1, at).await.unwrap();
    assert_eq!(
        store.user_by_id(1).await.unwrap().unwrap().last_login,
        Some(at)
    );

    assert!(store.set_password_hash(1, "new").await.unwrap());
    assert!(!store.set_password_hash(99, "new").await.unwrap());
    assert_eq!(
        store.user_by_id(1).await.unwrap().unwrap().password_hash,
        "new"
    );

    assert!(store.delete_user("alice").await.unwrap());
    assert!(!store.delete_user("alice").await.unwrap());
    assert_eq!(store.user_by_username("alice").await.unwrap(), None);
    // The name is free again.
    store.create_user(new_user("alice")).await.unwrap();
}

on_both_backends!(replacing_a_password_hash_needs_the_hash_read_before);
async fn replacing_a_password_hash_needs_the_hash_read_before(store: Store) {
    store.migrate().await.unwrap();
    let alice = store.create_user(new_user("alice")).await.unwrap();
    let hash =
        |store: Store| async move { store.user_by_id(1).await.unwrap().unwrap().password_hash };
    // The hash changed since it was read ("h" became "changed"): nothing is written.
    assert!(store.set_password_hash(alice.id, "changed").await.unwrap());
    assert!(
        !store
            .replace_password_hash(alice.id, "h", "rehash-of-h")
            .await
            .unwrap()
    );
    assert_eq!(hash(store.clone()).await, "changed");
    // Still the hash read: it is replaced.
    assert!(
        store
            .replace_password_hash(alice.id, "changed", "rehash")
            .await
            .unwrap()
    );
    assert_eq!(hash(store.clone()).await, "rehash");
    // No such user.
    assert!(!store.replace_password_hash(99, "h", "x").await.unwrap());
}

on_both_backends!(password_hash_parameters_leave_out_salts_and_digests);
async fn password_hash_parameters_leave_out_salts_and_digests(store: Store) {
    store.migrate().await.unwrap();
    assert!(store.password_hash_parameters().await.unwrap().is_empty());
    for (name, hash) in [
        ("a", "pbkdf2_sha256$1000000$salt$aGFzaA=="),
        ("b", "pbkdf2_sha256$1000000$other$aGFzaA=="),
        ("c", "pbkdf2_sha256$870000$salt$aGFzaA=="),
        ("d", "pbkdf2_sha256$"),
        ("d2", "pbkdf2_sha256$600"),
        ("e", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
        ("e2", "$argon2id$v=19$m=19456,t=2,p=1$b3RoZXI$aGFzaA"),
        ("f", "argon2$argon2id$v=19$m=102400,t=2,p=8$c2FsdA$aGFzaA"),
        ("f2", "argon2$argon2id$v=19$m=102400,t=2,p=8$b3RoZXI$aGFzaA"),
        ("g", "!unusable"),
        ("h", "pbkdf2_sha1$5000$salt$aGFzaA=="),
        (
            "i",
            "bcrypt$$2b$12$RWwgqabsYwibFQqsUG0R1.qFabGGJziIprB/QG3NF2tcG.bOwXujC",
        ),
        (
            "i2",
            "bcrypt$$2b$12$ow.VjcLKmoztcerurFF0b.Gi8qGlSbrbfdPh1sPHrWIqdiM5xxR1W",
        ),
        (
            "j",
            "bcrypt_sha256$$2b$13$Gk0TEIzk.wb5rCMQTunrGOfpI07Fq1/Nr3ueLB1D/dcqHNId8/Wmm",
        ),
        ("k", "scrypt$16384$saltA$8$5$aGFzaA=="),
        ("k2", "scrypt$16384$saltB$8$5$b3RoZXI="),
        ("l", "md5$salt$5de0dfa47b289a714dd29761ac8c4f7d"),
        ("m", "plaintext"),
    ] {
        store
            .create_user(NewUser {
                password_hash: hash.into(),
                ..new_user(name)
            })
            .await
            .unwrap();
    }
    let mut parameters = store.password_hash_parameters().await.unwrap();
    parameters.sort();
    assert_eq!(
        parameters,
        [
            "$argon2id$v=19$m=19456,t=2,p=1",
            "argon2$argon2id$v=19$m=102400,t=2,p=8",
            "bcrypt$$2b$12",
            "bcrypt_sha256$$2b$13",
            "pbkdf2_sha1$5000",
            "pbkdf2_sha256$",
            "pbkdf2_sha256$1000000",
            "pbkdf2_sha256$600",
            "pbkdf2_sha256$870000",
            "scrypt$16384$$8$5",
        ]
    );
}

#[test]
fn a_user_printed_for_debugging_hides_its_hash() {
    let user = User {
        id: 1,
        username: "alice".into(),
        password_hash: "$argon2id$secret-ish".into(),
        is_active: true,
        is_superuser: false,
        last_login: None,
        date_joined: OffsetDateTime::UNIX_EPOCH,
        tokens_valid_after: None,
    };
    assert!(!format!("{user:?}").contains("argon2id"));
}

#[test]
fn a_token_is_revoked_when_issued_at_or_before_the_revocations_second() {
    use super::is_revoked;
    assert!(!is_revoked(None, Some(5)));
    assert!(!is_revoked(None, None));
    assert!(is_revoked(Some(10), Some(9)));
    assert!(
        is_revoked(Some(10), Some(10)),
        "the same second counts as before"
    );
    assert!(!is_revoked(Some(10), Some(11)));
    // Without `iat` a token can't show it came after.
    assert!(is_revoked(Some(10), None));
}

on_both_backends!(revoking_blacklists_every_token_of_the_user_and_sets_the_time);
async fn revoking_blacklists_every_token_of_the_user_and_sets_the_time(store: Store) {
    store.migrate().await.unwrap();
    let alice = store.create_user(new_user("alice")).await.unwrap();
    let bob = store.create_user(new_user("bob")).await.unwrap();
    assert_eq!(alice.tokens_valid_after, None);
    for jti in ["a1", "a2", "a3"] {
        store
            .record_outstanding(&token(jti, Some(alice.id), 60))
            .await
            .unwrap();
    }
    store
        .record_outstanding(&token("b1", Some(bob.id), 60))
        .await
        .unwrap();
    // One already blacklisted (a logout), one long expired but not yet flushed.
    store
        .blacklist(&token("a1", Some(alice.id), 60))
        .await
        .unwrap();
    store
        .record_outstanding(&token("a-old", Some(alice.id), -3600))
        .await
        .unwrap();

    let before = crate::unix_now();
    let revocation = store.revoke_user_tokens(alice.id).await.unwrap().unwrap();
    let after = crate::unix_now();
    assert_eq!(revocation.username, "alice");
    assert_eq!(
        revocation.blacklisted, 3,
        "a2, a3 and a-old; a1 was already"
    );
    assert!((before..=after).contains(&revocation.tokens_valid_after));
    for jti in ["a1", "a2", "a3", "a-old"] {
        assert!(store.is_blacklisted(jti).await.unwrap(), "{jti}");
    }
    assert!(!store.is_blacklisted("b1").await.unwrap());
    let read = store.user_by_id(alice.id).await.unwrap().unwrap();
    assert_eq!(read.tokens_valid_after, Some(revocation.tokens_valid_after));
    assert_eq!(
        store.user_by_username("alice").await.unwrap().unwrap(),
        read
    );
    assert_eq!(
        store
            .user_by_id(bob.id)
            .await
            .unwrap()
            .unwrap()
            .tokens_valid_after,
        None
    );

    // Again: nothing left to blacklist; the time never goes back (a clock stepped back, or
    // another machine's behind).
    sqlx_set_valid_after(&store, alice.id, i64::MAX / 2).await;
    let again = store.revoke_user_tokens(alice.id).await.unwrap().unwrap();
    assert_eq!(again.blacklisted, 0);
    assert_eq!(again.tokens_valid_after, i64::MAX / 2);

    // A rotation after the revocation finds its old token blacklisted.
    assert_eq!(
        store
            .rotate(
                &token("a2", Some(alice.id), 60),
                &token("a4", Some(alice.id), 60),
                true
            )
            .await
            .unwrap(),
        RotateOutcome::AlreadyBlacklisted
    );
    assert_eq!(store.revoke_user_tokens(9999).await.unwrap(), None);
}

/// Sets a user's `tokens_valid_after` behind the store's back.
async fn sqlx_set_valid_after(store: &Store, id: i64, at: i64) {
    let sql = "UPDATE users SET tokens_valid_after = $1 WHERE id = $2";
    match store {
        Store::Sqlite(s) => {
            sqlx::query(sql)
                .bind(at)
                .bind(id)
                .execute(s.pool())
                .await
                .unwrap();
        }
        Store::Postgres(s) => {
            sqlx::query(sql)
                .bind(at)
                .bind(id)
                .execute(s.pool())
                .await
                .unwrap();
        }
    }
}

// Racing revocations of one user, and rotations of the user's tokens beside them, end with
// every one of the tokens blacklisted: nothing deadlocks, nothing is lost.
on_both_backends!(revocations_race_rotations_and_each_other, multi_thread);
async fn revocations_race_rotations_and_each_other(store: Store) {
    store.migrate().await.unwrap();
    let alice = store.create_user(new_user("alice")).await.unwrap();
    for i in 0..40 {
        store
            .record_outstanding(&token(&format!("r{i}"), Some(alice.id), 60))
            .await
            .unwrap();
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(44));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (store, start) = (store.clone(), start.clone());
        tasks.spawn(async move {
            start.wait().await;
            store
                .revoke_user_tokens(alice.id)
                .await
                .map(|r| r.map(|r| r.blacklisted))
        });
    }
    for i in 0..40 {
        let (store, start) = (store.clone(), start.clone());
        tasks.spawn(async move {
            start.wait().await;
            store
                .rotate(
                    &token(&format!("r{i}"), Some(alice.id), 60),
                    &token(&format!("s{i}"), Some(alice.id), 60),
                    true,
                )
                .await
                .map(|outcome| Some(u64::from(outcome == RotateOutcome::Rotated)))
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    // Every old token is blacklisted (by a revocation or by its rotation), and a successor
    // left live was recorded too late for the last revocation to see: its `created_at` (its
    // `iat`) is at or before the user's `tokens_valid_after`, so it is refused by that.
    let valid_after = store
        .user_by_id(alice.id)
        .await
        .unwrap()
        .unwrap()
        .tokens_valid_after
        .unwrap();
    let live_after = number(
        &store,
        "SELECT COALESCE(MAX(o.created_at), 0) FROM outstanding_tokens o
         WHERE NOT EXISTS (SELECT 1 FROM blacklisted_tokens b WHERE b.token_id = o.id)",
    )
    .await;
    assert!(live_after <= valid_after, "{live_after} > {valid_after}");
    for i in 0..40 {
        assert!(
            store.is_blacklisted(&format!("r{i}")).await.unwrap(),
            "r{i}"
        );
    }
}

on_both_backends!(deleting_a_user_keeps_their_tokens_without_owner);
async fn deleting_a_user_keeps_their_tokens_without_owner(store: Store) {
    store.migrate().await.unwrap();
    let alice = store.create_user(new_user("alice")).await.unwrap();
    store
        .record_outstanding(&token("t1", Some(alice.id), 60))
        .await
        .unwrap();
    store
        .blacklist(&token("t2", Some(alice.id), 60))
        .await
        .unwrap();
    assert_eq!(
        number(
            &store,
            "SELECT COUNT(*) FROM outstanding_tokens WHERE user_id = 1"
        )
        .await,
        2
    );
    assert!(store.delete_user("alice").await.unwrap());
    assert_eq!(
        number(
            &store,
            "SELECT COUNT(*) FROM outstanding_tokens WHERE user_id IS NULL"
        )
        .await,
        2
    );
    assert!(store.is_blacklisted("t2").await.unwrap());
    assert_eq!(
        store
            .blacklist(&token("t1", Some(alice.id), 60))
            .await
            .unwrap(),
        BlacklistOutcome::Added
    );
}

on_both_backends!(record_outstanding_is_idempotent_and_tolerates_unknown_owners);
async fn record_outstanding_is_idempotent_and_tolerates_unknown_owners(store: Store) {
    store.migrate().await.unwrap();
    let t = token("t", Some(42), 60);
    store.record_outstanding(&t).await.unwrap();
    store.record_outstanding(&t).await.unwrap();
    if let Some(stats) = group_commits(&store) {
        assert_eq!(
            stats,
            (2, 2),
            "on SQLite through the group commit, like every token write: never on a pool \
             connection of its own, waiting for the write lock"
        );
    }
    assert_eq!(
        number(&store, "SELECT COUNT(*) FROM outstanding_tokens").await,
        1
    );
    assert_eq!(
        number(
            &store,
            "SELECT COUNT(*) FROM outstanding_tokens WHERE user_id IS NULL"
        )
        .await,
        1,
        "user 42 does not exist"
    );
    assert!(!store.is_blacklisted("t").await.unwrap());
}

on_both_backends!(blacklist_creates_unknown_tokens_and_is_idempotent);
async fn blacklist_creates_unknown_tokens_and_is_idempotent(store: Store) {
    store.migrate().await.unwrap();
    assert!(!store.is_blacklisted("x").await.unwrap());
    let x = token("x", None, 60);
    assert_eq!(store.blacklist(&x).await.unwrap(), BlacklistOutcome::Added);
    assert!(store.is_blacklisted("x").await.unwrap());
    assert_eq!(
        number(
            &store,
            "SELECT expires_at FROM outstanding_tokens WHERE jti = 'x'"
        )
        .await,
        x.expires_at.unix_timestamp()
    );
    assert_eq!(
        store.blacklist(&x).await.unwrap(),
        BlacklistOutcome::AlreadyBlacklisted
    );
    assert_eq!(
        number(&store, "SELECT COUNT(*) FROM outstanding_tokens").await,
        1
    );
    assert_eq!(
        number(&store, "SELECT COUNT(*) FROM blacklisted_tokens").await,
        1
    );
}

on_both_backends!(rotation_records_the_successor_and_refuses_a_blacklisted_token);
async fn rotation_records_the_successor_and_refuses_a_blacklisted_token(store: Store) {
    store.migrate().await.unwrap();
    let old = token("old", None, 60);
    assert_eq!(
        store
            .rotate(&old, &token("new1", None, 60), true)
            .await
            .unwrap(),
        RotateOutcome::Rotated
    );
    assert!(store.is_blacklisted("old").await.unwrap());
    assert!(!store.is_blacklisted("new1").await.unwrap());

    // Already blacklisted: nothing is written, the successor included.
    assert_eq!(
        store
            .rotate(&old, &token("new2", None, 60), true)
            .await
            .unwrap(),
        RotateOutcome::AlreadyBlacklisted
    );
    assert_eq!(
        store
            .rotate(&old, &token("new3", None, 60), false)
            .await
            .unwrap(),
        RotateOutcome::AlreadyBlacklisted
    );
    assert_eq!(
        number(
            &store,
            "SELECT COUNT(*) FROM outstanding_tokens WHERE jti IN ('new2', 'new3')"
        )
        .await,
        0
    );

    // Without blacklisting, the old token stays usable and the successor is recorded.
    assert_eq!(
        store
            .rotate(&token("new1", None, 60), &token("new4", None, 60), false)
            .await
            .unwrap(),
        RotateOutcome::Rotated
    );
    assert!(!store.is_blacklisted("new1").await.unwrap());
    assert_eq!(
        number(
            &store,
            "SELECT COUNT(*) FROM outstanding_tokens WHERE jti = 'new4'"
        )
        .await,
        1
    );
}

on_both_backends!(concurrent_rotations_have_one_winner, multi_thread);
async fn concurrent_rotations_have_one_winner(store: Store) {
    store.migrate().await.unwrap();
    store
        .record_outstanding(&token("old", None, 60))
        .await
        .unwrap();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
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
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            RotateOutcome::Rotated => rotated += 1,
            RotateOutcome::AlreadyBlacklisted => refused += 1,
        }
    }
    assert_eq!((rotated, refused), (1, 19));
    assert_eq!(
        number(&store, "SELECT COUNT(*) FROM blacklisted_tokens").await,
        1
    );
    assert_eq!(
        number(
            &store,
            "SELECT COUNT(*) FROM outstanding_tokens WHERE jti LIKE 'new%'"
        )
        .await,
        1,
        "only the winner's successor is recorded"
    );
}

on_both_backends!(concurrent_blacklists_have_one_adder, multi_thread);
async fn concurrent_blacklists_have_one_adder(store: Store) {
    store.migrate().await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.blacklist(&token("x", None, 60)).await.unwrap()
        }));
    }
    let mut added = 0;
    for t in tasks {
        if t.await.unwrap() == BlacklistOutcome::Added {
            added += 1;
        }
    }
    assert_eq!(added, 1);
}

on_both_backends!(concurrent_writes_keep_one_winner_per_token, multi_thread);
/// Many rotations at once keep the rule of one winner per token: 64 distinct tokens all rotate;
/// each of 8 tokens raced by 4 requests rotates once; the losers wrote nothing. On SQLite they
/// also share transactions, through the group commit.
async fn concurrent_writes_keep_one_winner_per_token(store: Store) {
    store.migrate().await.unwrap();
    let olds: Vec<String> = (0..64)
        .map(|i| format!("solo{i}"))
        .chain((0..32).map(|i| format!("raced{}", i % 8)))
        .collect();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(olds.len()));
    let mut tasks = Vec::new();
    for (i, old) in olds.into_iter().enumerate() {
        let (store, start) = (store.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let outcome = store
                .rotate(
                    &token(&old, None, 60),
                    &token(&format!("next{i}"), None, 60),
                    true,
                )
                .await
                .unwrap();
            (old, outcome)
        }));
    }
    let mut rotated = std::collections::BTreeMap::<String, usize>::new();
    for task in tasks {
        let (old, outcome) = task.await.unwrap();
        let won = usize::from(outcome == RotateOutcome::Rotated);
        *rotated.entry(old).or_default() += won;
    }
    assert_eq!(rotated.len(), 72);
    assert!(rotated.values().all(|&won| won == 1), "{rotated:?}");
    assert_eq!(
        number(&store, "SELECT COUNT(*) FROM blacklisted_tokens").await,
        72
    );
    assert_eq!(
        number(
            &store,
            "SELECT COUNT(*) FROM outstanding_tokens WHERE jti LIKE 'next%'"
        )
        .await,
        72,
        "only the winners' successors are recorded"
    );
    if let Some((groups, writes)) = group_commits(&store) {
        assert_eq!(writes, 96);
        assert!(
            groups < writes / 2,
            "96 racing writes took {groups} transactions"
        );
    }
}

on_both_backends!(flush_removes_expired_rows_and_their_blacklist_entries);
async fn flush_removes_expired_rows_and_their_blacklist_entries(store: Store) {
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
    store
        .blacklist(&token("live-blacklisted", None, 600))
        .await
        .unwrap();
    // Taken after "stale" was made, which expires the moment it is made: taken before, a
    // second that ticked over in between left "stale" unexpired (times are kept in seconds).
    let now = OffsetDateTime::now_utc();
    assert_eq!(store.flush_expired(now, Duration::ZERO).await.unwrap(), 2);
    assert!(!store.is_blacklisted("gone").await.unwrap());
    assert!(store.is_blacklisted("live-blacklisted").await.unwrap());
    assert_eq!(
        number(&store, "SELECT COUNT(*) FROM outstanding_tokens").await,
        2
    );
    assert_eq!(
        number(&store, "SELECT COUNT(*) FROM blacklisted_tokens").await,
        1,
        "the expired token's blacklist row went with it"
    );
    assert_eq!(store.flush_expired(now, Duration::ZERO).await.unwrap(), 0);
    assert_eq!(
        store.blacklist(&token("live", None, 600)).await.unwrap(),
        BlacklistOutcome::Added
    );
}

on_both_backends!(pruning_removes_expired_rows_as_flushing_does);
/// The background task prunes through its own path on PostgreSQL (under an advisory lock, which
/// nothing else holds here), so it is checked on both backends apart from flushing.
async fn pruning_removes_expired_rows_as_flushing_does(store: Store) {
    store.migrate().await.unwrap();
    store.blacklist(&token("gone", None, -10)).await.unwrap();
    store
        .record_outstanding(&token("live", None, 600))
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        store.prune_expired(now, Duration::ZERO).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        number(&store, "SELECT COUNT(*) FROM outstanding_tokens").await,
        1
    );
    assert_eq!(
        number(&store, "SELECT COUNT(*) FROM blacklisted_tokens").await,
        0,
        "the expired token's blacklist row went with it"
    );
    assert_eq!(
        store.prune_expired(now, Duration::ZERO).await.unwrap(),
        Some(0)
    );
}

on_both_backends!(flushing_and_pruning_wait_out_the_leeway);
/// A token still decodes for `leeway` after its expiry, so its rows stay until then; the
/// verifier refuses `exp <= now - leeway`, and exactly those rows go.
async fn flushing_and_pruning_wait_out_the_leeway(store: Store) {
    store.migrate().await.unwrap();
    let leeway = Duration::from_secs(30);
    store.blacklist(&token("within", None, -20)).await.unwrap();
    store.blacklist(&token("past", None, -40)).await.unwrap();
    let now = OffsetDateTime::now_utc();
    assert_eq!(store.flush_expired(now, leeway).await.unwrap(), 1);
    assert!(store.is_blacklisted("within").await.unwrap());
    assert!(!store.is_blacklisted("past").await.unwrap());
    assert_eq!(store.prune_expired(now, leeway).await.unwrap(), Some(0));
    // Once its expiry plus the leeway has passed, it goes too.
    let later = now + time::Duration::seconds(30);
    assert_eq!(store.prune_expired(later, leeway).await.unwrap(), Some(1));
    assert!(!store.is_blacklisted("within").await.unwrap());
}

fn audit_event(kind: &str, username: Option<&str>, at: OffsetDateTime) -> AuditEvent {
    AuditEvent {
        at: at.replace_nanosecond(0).unwrap(),
        kind: kind.into(),
        username: username.map(Into::into),
        user_id: None,
        client_addr: Some("192.0.2.7".into()),
        user_agent: Some("curl/8".into()),
        detail: None,
    }
}

on_both_backends!(audit_events_are_kept_in_order_filtered_and_pruned);
async fn audit_events_are_kept_in_order_filtered_and_pruned(store: Store) {
    store.migrate().await.unwrap();
    let now = OffsetDateTime::now_utc();
    let old = audit_event("login_failed", Some("ann"), now - time::Duration::days(2));
    let mut created = audit_event("user_created", Some("bob"), now);
    created.user_id = Some(41);
    created.client_addr = None;
    created.user_agent = None;
    created.detail = Some(r#"{"superuser":false}"#.into());
    let login = audit_event("login_succeeded", Some("ann"), now);
    for event in [&old, &created, &login] {
        store.record_audit(event).await.unwrap();
    }

    // Oldest first; events of one second in the order they were recorded.
    let all = store.audit_events(&AuditFilter::default()).await.unwrap();
    assert_eq!(all, vec![old.clone(), created.clone(), login.clone()]);
    let ann = AuditFilter {
        username: Some("ann".into()),
        since: None,
    };
    assert_eq!(
        store.audit_events(&ann).await.unwrap(),
        vec![old.clone(), login.clone()]
    );
    let recent = AuditFilter {
        username: None,
        since: Some(now - time::Duration::hours(1)),
    };
    assert_eq!(
        store.audit_events(&recent).await.unwrap(),
        vec![created.clone(), login.clone()]
    );
    let both = AuditFilter {
        username: Some("ann".into()),
        since: Some(now - time::Duration::hours(1)),
    };
    assert_eq!(
        store.audit_events(&both).await.unwrap(),
        vec![login.clone()]
    );

    assert_eq!(
        store
            .prune_audit(now - time::Duration::days(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .prune_audit(now - time::Duration::days(1))
            .await
            .unwrap(),
        0
    );
    let all = store.audit_events(&AuditFilter::default()).await.unwrap();
    assert_eq!(all, vec![created, login]);
}

on_both_backends!(an_audit_event_outlives_its_user_and_keeps_a_bounded_user_agent);
async fn an_audit_event_outlives_its_user_and_keeps_a_bounded_user_agent(store: Store) {
    store.migrate().await.unwrap();
    let user = store.create_user(new_user("cat")).await.unwrap();
    let mut event = audit_event("user_created", Some("cat"), OffsetDateTime::now_utc());
    event.user_id = Some(user.id);
    // Multi-byte characters: the bound is in characters, as both databases count them.
    event.user_agent = Some("é".repeat(AUDIT_USER_AGENT_MAX + 100));
    store.record_audit(&event).await.unwrap();
    assert!(store.delete_user("cat").await.unwrap());

    let kept = store.audit_events(&AuditFilter::default()).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].user_id, Some(user.id));
    assert_eq!(kept[0].user_agent, Some("é".repeat(AUDIT_USER_AGENT_MAX)));
}

/// Runs a statement of the test's own, alike on both backends.
async fn execute(store: &Store, sql: &'static str) {
    match store {
        Store::Sqlite(s) => sqlx::query(sql).execute(s.pool()).await.map(|_| ()),
        Store::Postgres(s) => sqlx::query(sql).execute(s.pool()).await.map(|_| ()),
    }
    .unwrap();
}

/// The tokens of family `family` no blacklist row refuses.
async fn live_in_family(store: &Store, family: &str) -> Vec<String> {
    let sql = "SELECT o.jti FROM outstanding_tokens o
               LEFT JOIN blacklisted_tokens b ON b.token_id = o.id
               WHERE (o.family = $1 OR o.jti = $1) AND b.id IS NULL ORDER BY o.jti";
    match store {
        Store::Sqlite(s) => {
            sqlx::query_scalar(sql)
                .bind(family)
                .fetch_all(s.pool())
                .await
        }
        Store::Postgres(s) => {
            sqlx::query_scalar(sql)
                .bind(family)
                .fetch_all(s.pool())
                .await
        }
    }
    .unwrap()
}

on_both_backends!(a_replay_past_the_grace_window_revokes_the_whole_family);
/// A login's token starts a family and its rotations inherit it. A rotated-out token presented
/// again inside the grace window revokes nothing; past it, every token of its family is
/// blacklisted at once, and no other family is touched. A second replay revokes nothing more;
/// a token blacklisted by the revocation (not rotated out) is no replay of its own.
async fn a_replay_past_the_grace_window_revokes_the_whole_family(store: Store) {
    use super::Replay;
    store.migrate().await.unwrap();
    let alice = store.create_user(new_user("alice")).await.unwrap();
    let mine = |jti: &str| token(jti, Some(alice.id), 60);
    store.record_outstanding(&mine("r1")).await.unwrap();
    store.record_outstanding(&mine("s1")).await.unwrap();
    for (old, new) in [("r1", "r2"), ("r2", "r3"), ("s1", "s2")] {
        assert_eq!(
            store.rotate(&mine(old), &mine(new), true).await.unwrap(),
            RotateOutcome::Rotated
        );
    }
    let rotated = store.rotated_out("r1").await.unwrap().unwrap();
    assert_eq!(
        (rotated.family.as_str(), rotated.user_id),
        ("r1", Some(alice.id))
    );
    let now = OffsetDateTime::now_utc();
    assert!((now - rotated.rotated_at).abs() < time::Duration::seconds(5));
    assert_eq!(store.rotated_out("r3").await.unwrap(), None, "live");
    assert_eq!(
        number(
            &store,
            "SELECT COUNT(*) FROM outstanding_tokens WHERE family = 'r1'"
        )
        .await,
        3,
        "the login's token and both successors"
    );

    let grace = Duration::from_secs(10);
    let later = |secs| rotated.rotated_at + time::Duration::seconds(secs);
    // r1's successor, r2, was rotated out in turn: nothing live to give again.
    assert_eq!(
        store.replayed("r1", later(9), grace).await.unwrap(),
        Replay::WithinGrace {
            live_successor: None
        }
    );
    assert_eq!(live_in_family(&store, "r1").await, ["r3"]);

    assert_eq!(
        store.replayed("r1", later(10), grace).await.unwrap(),
        Replay::FamilyRevoked {
            family: "r1".into(),
            user_id: Some(alice.id),
            revoked: 1,
        }
    );
    assert!(store.is_blacklisted("r3").await.unwrap());
    assert!(live_in_family(&store, "r1").await.is_empty());
    assert_eq!(live_in_family(&store, "s1").await, ["s2"], "another login");

    // Replaying the middle of the chain finds the family revoked already.
    assert!(matches!(
        store.replayed("r2", later(60), grace).await.unwrap(),
        Replay::FamilyRevoked { revoked: 0, .. }
    ));
    assert_eq!(
        store.replayed("r3", later(60), grace).await.unwrap(),
        Replay::NotRotatedOut
    );
    assert_eq!(
        store.replayed("s2", later(60), grace).await.unwrap(),
        Replay::NotRotatedOut
    );
    // A logout blacklists without rotating: no replay either.
    store.blacklist(&mine("s2")).await.unwrap();
    assert_eq!(
        store.replayed("s2", later(60), grace).await.unwrap(),
        Replay::NotRotatedOut
    );

    // No grace: a replay at once revokes.
    store.record_outstanding(&mine("t1")).await.unwrap();
    store.rotate(&mine("t1"), &mine("t2"), true).await.unwrap();
    assert!(matches!(
        store
            .replayed("t1", OffsetDateTime::now_utc(), Duration::ZERO)
            .await
            .unwrap(),
        Replay::FamilyRevoked { revoked: 1, .. }
    ));
    assert!(store.is_blacklisted("t2").await.unwrap());

    // Without blacklisting, a rotation leaves no rotated-out token behind.
    store.record_outstanding(&mine("u1")).await.unwrap();
    store.rotate(&mine("u1"), &mine("u2"), false).await.unwrap();
    assert_eq!(store.rotated_out("u1").await.unwrap(), None);
    assert_eq!(live_in_family(&store, "u1").await, ["u1", "u2"]);
}

on_both_backends!(a_row_from_before_families_is_a_family_of_its_own);
/// Rows written before families existed (or moved over from Django) have no family: each is
/// the first of its own, its successors join it, and its revocation reaches them.
async fn a_row_from_before_families_is_a_family_of_its_own(store: Store) {
    use super::Replay;
    store.migrate().await.unwrap();
    execute(
        &store,
        "INSERT INTO outstanding_tokens (jti, expires_at) VALUES ('django', 9999999999)",
    )
    .await;
    let t = |jti: &str| token(jti, None, 60);
    store.rotate(&t("django"), &t("next"), true).await.unwrap();
    store.rotate(&t("next"), &t("last"), true).await.unwrap();
    // A token this server never recorded, rotated: its row is made, first of its family.
    store
        .rotate(&t("foreign"), &t("child"), true)
        .await
        .unwrap();
    assert_eq!(
        number(
            &store,
            "SELECT COUNT(*) FROM outstanding_tokens
             WHERE family IS NULL AND jti = 'django'"
        )
        .await,
        1
    );
    assert_eq!(
        number(
            &store,
            "SELECT COUNT(*) FROM outstanding_tokens WHERE family = 'django'"
        )
        .await,
        2
    );
    assert!(matches!(
        store
            .replayed("django", OffsetDateTime::now_utc(), Duration::ZERO)
            .await
            .unwrap(),
        Replay::FamilyRevoked { revoked: 1, ref family, .. } if family == "django"
    ));
    assert!(store.is_blacklisted("last").await.unwrap());
    assert_eq!(live_in_family(&store, "foreign").await, ["child"]);
}

on_both_backends!(
    a_revocation_racing_rotations_of_its_family_misses_no_successor,
    multi_thread
);
/// A family revoked while one of its tokens is being rotated ends with no live token: either
/// the rotation finds its token blacklisted, or its successor is blacklisted with the rest.
/// Forty families, each raced at once by a rotation, a revocation and a second rotation.
async fn a_revocation_racing_rotations_of_its_family_misses_no_successor(store: Store) {
    store.migrate().await.unwrap();
    let t = |jti: String| token(&jti, None, 60);
    for f in 0..40 {
        store
            .record_outstanding(&t(format!("f{f}a")))
            .await
            .unwrap();
        store
            .rotate(&t(format!("f{f}a")), &t(format!("f{f}b")), true)
            .await
            .unwrap();
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(120));
    let mut tasks = tokio::task::JoinSet::new();
    for f in 0..40 {
        for job in 0..3 {
            let (store, start) = (store.clone(), start.clone());
            tasks.spawn(async move {
                start.wait().await;
                match job {
                    0 => {
                        store.revoke_family(&format!("f{f}a")).await.unwrap();
                    }
                    1 => {
                        let first = store
                            .rotate(&t(format!("f{f}b")), &t(format!("f{f}c")), true)
                            .await
                            .unwrap();
                        if first == RotateOutcome::Rotated {
                            store
                                .rotate(&t(format!("f{f}c")), &t(format!("f{f}d")), true)
                                .await
                                .unwrap();
                        }
                    }
                    _ => {
                        store
                            .rotate(&t(format!("f{f}b")), &t(format!("f{f}e")), true)
                            .await
                            .unwrap();
                    }
                }
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    for f in 0..40 {
        let live = live_in_family(&store, &format!("f{f}a")).await;
        // A rotation after the revocation found its token blacklisted; one before it had its
        // successor revoked with the rest: in any order, nothing of the family is left.
        assert!(live.is_empty(), "family f{f}a kept {live:?}");
    }
}

/// What the store keeps of a token: its id, owner and times to the second.
fn stored(token: &OutstandingToken) -> (String, Option<i64>, Option<i64>, i64) {
    (
        token.jti.clone(),
        token.user_id,
        token.created_at.map(OffsetDateTime::unix_timestamp),
        token.expires_at.unix_timestamp(),
    )
}

/// The live successor a replay of `jti` inside a 10 s window is given, as [`stored`] shows it.
async fn successor_given(
    store: &Store,
    jti: &str,
) -> Option<(String, Option<i64>, Option<i64>, i64)> {
    match store
        .replayed(jti, OffsetDateTime::now_utc(), Duration::from_secs(10))
        .await
        .unwrap()
    {
        super::Replay::WithinGrace { live_successor } => live_successor.as_ref().map(stored),
        other => panic!("{jti}: {other:?}"),
    }
}

on_both_backends!(a_replay_inside_the_grace_window_is_given_the_live_successor);
/// A rotation records on the rotated-out row which token replaced it; a replay inside the
/// window is given that successor's row (its id, owner, creation and expiry) while it is live,
/// and nothing once it was rotated out in turn, logged out or revoked with its family.
async fn a_replay_inside_the_grace_window_is_given_the_live_successor(store: Store) {
    store.migrate().await.unwrap();
    let alice = store.create_user(new_user("alice")).await.unwrap();
    let mine = |jti: &str, expires_in| token(jti, Some(alice.id), expires_in);
    store.record_outstanding(&mine("t1", 60)).await.unwrap();
    let t2 = mine("t2", 3600);
    store.rotate(&mine("t1", 60), &t2, true).await.unwrap();
    let rotated = store.rotated_out("t1").await.unwrap().unwrap();
    assert_eq!(
        rotated.live_successor.as_ref().map(stored),
        Some(stored(&t2))
    );
    assert_eq!(successor_given(&store, "t1").await, Some(stored(&t2)));
    // Asking again changes nothing: the same successor, no new row.
    assert_eq!(successor_given(&store, "t1").await, Some(stored(&t2)));
    assert_eq!(live_in_family(&store, "t1").await, ["t2"]);

    // The successor rotated in turn: the first replay gets nothing, the second the new end.
    let t3 = mine("t3", 3600);
    store.rotate(&t2, &t3, true).await.unwrap();
    assert_eq!(successor_given(&store, "t1").await, None);
    assert_eq!(successor_given(&store, "t2").await, Some(stored(&t3)));
    // The successor logged out (blacklisted, not rotated).
    store.blacklist(&t3).await.unwrap();
    assert_eq!(successor_given(&store, "t2").await, None);

    // The family revoked.
    store.record_outstanding(&mine("u1", 60)).await.unwrap();
    store
        .rotate(&mine("u1", 60), &mine("u2", 60), true)
        .await
        .unwrap();
    assert!(successor_given(&store, "u1").await.is_some());
    store.revoke_family("u1").await.unwrap();
    assert_eq!(successor_given(&store, "u1").await, None);

    // The successor flushed (expired) with its row.
    store.record_outstanding(&mine("w1", 60)).await.unwrap();
    store
        .rotate(&mine("w1", 60), &mine("w2", -5), true)
        .await
        .unwrap();
    store
        .flush_expired(OffsetDateTime::now_utc(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(successor_given(&store, "w1").await, None);
}

on_both_backends!(
    racing_rotations_of_one_token_record_the_winners_successor,
    multi_thread
);
/// Twenty rotations of one token at once, each with a successor of its own: one wins, the
/// family gains exactly one row, and the rotated-out token names the winner's successor, the
/// one every loser is then given.
async fn racing_rotations_of_one_token_record_the_winners_successor(store: Store) {
    store.migrate().await.unwrap();
    let t = |jti: String| token(&jti, None, 60);
    store.record_outstanding(&t("v0".into())).await.unwrap();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 1..=20 {
        let (store, start, new) = (store.clone(), start.clone(), t(format!("v{i}")));
        tasks.spawn(async move {
            start.wait().await;
            let outcome = store.rotate(&t("v0".into()), &new, true).await.unwrap();
            (outcome, new.jti)
        });
    }
    let mut winners = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (outcome, jti) = done.unwrap();
        if outcome == RotateOutcome::Rotated {
            winners.push(jti);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(live_in_family(&store, "v0").await, winners);
    assert_eq!(
        number(
            &store,
            "SELECT COUNT(*) FROM outstanding_tokens WHERE family = 'v0'"
        )
        .await,
        2
    );
    let given = successor_given(&store, "v0").await.map(|s| s.0);
    assert_eq!(given.as_ref(), winners.first());
}

on_both_backends!(sessions_are_the_users_live_families_with_their_newest_client);
async fn sessions_are_the_users_live_families_with_their_newest_client(store: Store) {
    store.migrate().await.unwrap();
    let alice = store.create_user(new_user("alice")).await.unwrap();
    let bob = store.create_user(new_user("bob")).await.unwrap();
    let base = OffsetDateTime::now_utc();
    let at = |secs: i64| base - time::Duration::seconds(secs);
    let issued = |jti: &str, user: i64, ago: i64, addr: &str, agent: String| OutstandingToken {
        created_at: Some(at(ago)),
        client_addr: Some(addr.to_owned()),
        user_agent: Some(agent),
        ..token(jti, Some(user), 3600)
    };
    // A login from a laptop 300 s ago, rotated from a phone 100 s ago; a login 200 s ago from
    // a client with an overlong user agent; a login that was logged out; bob's login.
    let laptop = issued("laptop", alice.id, 300, "192.0.2.1", "laptop/1".into());
    store.record_outstanding(&laptop).await.unwrap();
    let phone = issued("phone", alice.id, 100, "192.0.2.2", "phone/1".into());
    assert_eq!(
        store.rotate(&laptop, &phone, true).await.unwrap(),
        RotateOutcome::Rotated
    );
    let long = issued(
        "long",
        alice.id,
        200,
        "192.0.2.3",
        "é".repeat(AUDIT_USER_AGENT_MAX + 9),
    );
    store.record_outstanding(&long).await.unwrap();
    let gone = issued("gone", alice.id, 50, "192.0.2.4", "gone/1".into());
    store.record_outstanding(&gone).await.unwrap();
    store.blacklist(&gone).await.unwrap();
    let expired = OutstandingToken {
        created_at: Some(at(7200)),
        ..token("expired", Some(alice.id), -10)
    };
    store.record_outstanding(&expired).await.unwrap();
    store
        .record_outstanding(&issued("bobs", bob.id, 10, "192.0.2.9", "bob/1".into()))
        .await
        .unwrap();

    let sessions = store
        .sessions(alice.id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let ids: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["laptop", "long"]);
    let rotated = &sessions[0];
    assert_eq!(rotated.token_id, "phone");
    let secs = |t: Option<OffsetDateTime>| t.unwrap().unix_timestamp();
    assert_eq!(secs(rotated.started_at), at(300).unix_timestamp());
    assert_eq!(secs(rotated.last_used_at), at(100).unix_timestamp());
    assert_eq!(rotated.client_addr.as_deref(), Some("192.0.2.2"));
    assert_eq!(rotated.user_agent.as_deref(), Some("phone/1"));
    assert_eq!(
        sessions[1].user_agent,
        Some("é".repeat(AUDIT_USER_AGENT_MAX))
    );
    assert!(store.owns_family(alice.id, "laptop").await.unwrap());
    assert!(store.owns_family(alice.id, "gone").await.unwrap());
    assert!(!store.owns_family(alice.id, "bobs").await.unwrap());
    assert!(!store.owns_family(bob.id, "laptop").await.unwrap());
    assert!(!store.owns_family(alice.id, "phone").await.unwrap());

    store.revoke_family("laptop").await.unwrap();
    let left = store
        .sessions(alice.id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, "long");
    assert_eq!(
        store
            .sessions(bob.id, OffsetDateTime::now_utc())
            .await
            .unwrap()
            .len(),
        1
    );
}
