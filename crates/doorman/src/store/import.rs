//! What `doorman import django` writes: a Django user with its refresh tokens, as one unit
//! that lands whole or not at all (a savepoint inside the batch's transaction), keeping
//! Django's user id. Decisions that need the database's current rows (is this the same user,
//! what changed since the last import) are made here, inside the transaction that writes them.

use std::fmt;

use sqlx::FromRow;

/// A Django user ready to be written: `auth_user`'s columns, times in Unix seconds.
#[derive(Clone, PartialEq, Eq)]
pub struct ImportedUser {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub is_active: bool,
    pub is_superuser: bool,
    pub is_staff: bool,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub last_login: Option<i64>,
    pub date_joined: i64,
}

// Printed into a log, a user must not carry its password hash along.
impl fmt::Debug for ImportedUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportedUser")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &"[redacted]")
            .field("is_active", &self.is_active)
            .field("is_superuser", &self.is_superuser)
            .field("is_staff", &self.is_staff)
            .field("email", &self.email)
            .field("first_name", &self.first_name)
            .field("last_name", &self.last_name)
            .field("last_login", &self.last_login)
            .field("date_joined", &self.date_joined)
            .finish()
    }
}

/// A row of simplejwt's outstanding tokens (never the token itself), with its blacklisting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedToken {
    pub jti: String,
    pub created_at: Option<i64>,
    pub expires_at: i64,
    /// When Django blacklisted it; `None` while it is live there.
    pub blacklisted_at: Option<i64>,
}

/// One unit of an import: a user and its refresh tokens, or (`user: None`) tokens whose user
/// Django no longer has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportItem {
    pub user: Option<ImportedUser>,
    pub tokens: Vec<ImportedToken>,
}

/// What became of an item's user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserOutcome {
    Added,
    /// The same user (same id and username) with `changed` fields taken from Django.
    /// `revoked`: the user was deactivated by this import and logged out everywhere, with
    /// this many refresh tokens blacklisted.
    Updated {
        changed: Vec<&'static str>,
        revoked: Option<u64>,
    },
    Unchanged,
    /// doorman has another user under this id: nothing written, tokens neither.
    IdTaken {
        username: String,
    },
    /// doorman has this username under another id: nothing written, tokens neither.
    UsernameTaken {
        id: i64,
    },
}

impl UserOutcome {
    /// Whether the user is in doorman now, so its tokens were written too.
    pub fn kept(&self) -> bool {
        matches!(
            self,
            UserOutcome::Added | UserOutcome::Updated { .. } | UserOutcome::Unchanged
        )
    }
}

/// What became of an item's tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenOutcome {
    /// Outstanding rows written.
    pub added: u64,
    /// Already recorded here.
    pub unchanged: u64,
    /// Blacklisted here by this import (new rows included).
    pub blacklisted: u64,
    /// Blacklisted in Django and already here.
    pub already_blacklisted: u64,
    /// Recorded here for another user: left alone.
    pub other_owner: u64,
}

impl std::ops::AddAssign for TokenOutcome {
    fn add_assign(&mut self, other: TokenOutcome) {
        self.added += other.added;
        self.unchanged += other.unchanged;
        self.blacklisted += other.blacklisted;
        self.already_blacklisted += other.already_blacklisted;
        self.other_owner += other.other_owner;
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemOutcome {
    /// `None` for an item of ownerless tokens.
    pub user: Option<UserOutcome>,
    pub tokens: TokenOutcome,
}

/// The user columns an import compares, as stored.
#[derive(FromRow)]
pub(super) struct StoredUser {
    pub username: String,
    pub password: String,
    pub imported_password_sha256: Option<String>,
    pub is_active: bool,
    pub is_superuser: bool,
    pub is_staff: bool,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub last_login: Option<i64>,
    pub date_joined: i64,
}

impl StoredUser {
    pub(super) fn into_imported(self, id: i64) -> ImportedUser {
        ImportedUser {
            id,
            username: self.username,
            password_hash: self.password,
            is_active: self.is_active,
            is_superuser: self.is_superuser,
            is_staff: self.is_staff,
            email: self.email,
            first_name: self.first_name,
            last_name: self.last_name,
            last_login: self.last_login,
            date_joined: self.date_joined,
        }
    }
}

/// How the same user, already here, is brought up to date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Update {
    /// The fields that change, by Django's names, for the report; empty: nothing to report.
    pub changed: Vec<&'static str>,
    /// Django's hash, when it replaces the stored one.
    pub password: Option<String>,
    pub last_login: Option<i64>,
    /// Whether anything at all is written (the digest of the hash copied may be all).
    pub write: bool,
    /// The user goes from active to inactive.
    pub deactivated: bool,
}

/// What to write over `stored` for `incoming`. Django is the source of every field, with two
/// exceptions made for what doorman writes by itself: the password is taken only when Django's
/// hash changed since the last import (doorman rewrites hashes when it upgrades them on login,
/// and a copy of the old hash must not undo that, nor a password set here), and `last_login`
/// only moves forward (a login here is as real as one there).
pub(super) fn plan_update(stored: &StoredUser, incoming: &ImportedUser, digest: &str) -> Update {
    let mut changed = Vec::new();
    let django_changed_it = stored.imported_password_sha256.as_deref() != Some(digest);
    let password = (django_changed_it && stored.password != incoming.password_hash)
        .then(|| incoming.password_hash.clone());
    if password.is_some() {
        changed.push("password");
    }
    let mut differs = |name: &'static str, differ: bool| {
        if differ {
            changed.push(name);
        }
    };
    differs("is_active", stored.is_active != incoming.is_active);
    differs("is_superuser", stored.is_superuser != incoming.is_superuser);
    differs("is_staff", stored.is_staff != incoming.is_staff);
    differs("email", stored.email != incoming.email);
    differs("first_name", stored.first_name != incoming.first_name);
    differs("last_name", stored.last_name != incoming.last_name);
    differs("date_joined", stored.date_joined != incoming.date_joined);
    let last_login = match (stored.last_login, incoming.last_login) {
        (Some(here), Some(there)) => Some(here.max(there)),
        (here, there) => here.or(there),
    };
    differs("last_login", last_login != stored.last_login);
    Update {
        write: !changed.is_empty() || django_changed_it,
        deactivated: stored.is_active && !incoming.is_active,
        changed,
        password,
        last_login,
    }
}

/// The hex SHA-256 of a password hash as copied from Django, kept to tell on the next import
/// whether Django's hash changed since.
pub(super) fn password_digest(hash: &str) -> String {
    use std::fmt::Write;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, hash.as_bytes());
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// Expands, in the calling backend module, the import's statements over `$conn`, that
/// backend's connection type; they run inside the caller's transaction. The module has the
/// portable queries' `revoke_in` in scope.
macro_rules! import_queries {
    ($conn:ty) => {
        /// Writes every item, each in a savepoint of its own: an item that fails is rolled
        /// back alone and answered with its error, unless the database itself is unavailable,
        /// which fails the batch.
        async fn import_items_in(
            conn: &mut $conn,
            items: &[super::import::ImportItem],
        ) -> Result<Vec<Result<super::import::ItemOutcome, StoreError>>, StoreError> {
            use sqlx::Connection;
            let mut outcomes = Vec::with_capacity(items.len());
            for item in items {
                let mut savepoint = conn.begin().await?;
                match import_item_in(&mut savepoint, item).await {
                    Ok(outcome) => {
                        savepoint.commit().await?;
                        outcomes.push(Ok(outcome));
                    }
                    Err(e @ StoreError::Unavailable(_)) => return Err(e),
                    Err(e) => {
                        savepoint.rollback().await?;
                        outcomes.push(Err(e));
                    }
                }
            }
            Ok(outcomes)
        }

        async fn import_item_in(
            conn: &mut $conn,
            item: &super::import::ImportItem,
        ) -> Result<super::import::ItemOutcome, StoreError> {
            use super::import::{ItemOutcome, TokenOutcome};
            let (user, owner) = match &item.user {
                Some(user) => {
                    let outcome = import_user_in(&mut *conn, user).await?;
                    if !outcome.kept() {
                        return Ok(ItemOutcome {
                            user: Some(outcome),
                            tokens: TokenOutcome::default(),
                        });
                    }
                    (Some(outcome), Some(user.id))
                }
                None => (None, None),
            };
            let mut tokens = TokenOutcome::default();
            for token in &item.tokens {
                tokens += import_token_in(&mut *conn, token, owner).await?;
            }
            Ok(ItemOutcome { user, tokens })
        }

        async fn import_user_in(
            conn: &mut $conn,
            user: &super::import::ImportedUser,
        ) -> Result<super::import::UserOutcome, StoreError> {
            use super::import::{StoredUser, UserOutcome, password_digest, plan_update};
            let digest = password_digest(&user.password_hash);
            let stored: Option<StoredUser> = sqlx::query_as(
                "SELECT username, password, imported_password_sha256, is_active, is_superuser,
                        is_staff, email, first_name, last_name, last_login, date_joined
                 FROM users WHERE id = $1",
            )
            .bind(user.id)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(stored) = stored {
                if stored.username != user.username {
                    return Ok(UserOutcome::IdTaken {
                        username: stored.username,
                    });
                }
                let update = plan_update(&stored, user, &digest);
                if !update.write {
                    return Ok(UserOutcome::Unchanged);
                }
                sqlx::query(
                    "UPDATE users SET password = COALESCE($2, password),
                         imported_password_sha256 = $3, is_active = $4, is_superuser = $5,
                         is_staff = $6, email = $7, first_name = $8, last_name = $9,
                         last_login = $10, date_joined = $11
                     WHERE id = $1",
                )
                .bind(user.id)
                .bind(update.password.as_deref())
                .bind(&digest)
                .bind(user.is_active)
                .bind(user.is_superuser)
                .bind(user.is_staff)
                .bind(&user.email)
                .bind(&user.first_name)
                .bind(&user.last_name)
                .bind(update.last_login)
                .bind(user.date_joined)
                .execute(&mut *conn)
                .await?;
                // Deactivated in Django: logged out everywhere here, as `user deactivate` does.
                let revoked = if update.deactivated {
                    revoke_in(&mut *conn, user.id).await?.map(|r| r.blacklisted)
                } else {
                    None
                };
                if update.changed.is_empty() {
                    return Ok(UserOutcome::Unchanged);
                }
                return Ok(UserOutcome::Updated {
                    changed: update.changed,
                    revoked,
                });
            }
            let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
                .bind(&user.username)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(id) = taken {
                return Ok(UserOutcome::UsernameTaken { id });
            }
            sqlx::query(
                "INSERT INTO users (id, username, password, imported_password_sha256, is_active,
                     is_superuser, is_staff, email, first_name, last_name, last_login, date_joined)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(user.id)
            .bind(&user.username)
            .bind(&user.password_hash)
            .bind(&digest)
            .bind(user.is_active)
            .bind(user.is_superuser)
            .bind(user.is_staff)
            .bind(&user.email)
            .bind(&user.first_name)
            .bind(&user.last_name)
            .bind(user.last_login)
            .bind(user.date_joined)
            .execute(&mut *conn)
            .await?;
            Ok(UserOutcome::Added)
        }

        /// Records the token (a family of its own, as a login's token is) unless it is here
        /// already, then blacklists it when Django did. A blacklisting here is never undone.
        async fn import_token_in(
            conn: &mut $conn,
            token: &super::import::ImportedToken,
            owner: Option<i64>,
        ) -> Result<super::import::TokenOutcome, StoreError> {
            use super::import::TokenOutcome;
            let mut outcome = TokenOutcome::default();
            let added: Option<i64> = sqlx::query_scalar(
                "INSERT INTO outstanding_tokens (jti, user_id, created_at, expires_at, family)
                 VALUES ($1, $2, $3, $4, $1)
                 ON CONFLICT (jti) DO NOTHING RETURNING id",
            )
            .bind(&token.jti)
            .bind(owner)
            .bind(token.created_at)
            .bind(token.expires_at)
            .fetch_optional(&mut *conn)
            .await?;
            let id = match added {
                Some(id) => {
                    outcome.added = 1;
                    id
                }
                None => {
                    let (id, user_id): (i64, Option<i64>) = sqlx::query_as(
                        "SELECT id, user_id FROM outstanding_tokens WHERE jti = $1",
                    )
                    .bind(&token.jti)
                    .fetch_one(&mut *conn)
                    .await?;
                    if user_id.is_some() && owner.is_some() && user_id != owner {
                        outcome.other_owner = 1;
                        return Ok(outcome);
                    }
                    outcome.unchanged = 1;
                    id
                }
            };
            if let Some(at) = token.blacklisted_at {
                let done = sqlx::query(
                    "INSERT INTO blacklisted_tokens (token_id, blacklisted_at) VALUES ($1, $2)
                     ON CONFLICT (token_id) DO NOTHING",
                )
                .bind(id)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() == 1 {
                    outcome.blacklisted = 1;
                } else {
                    outcome.already_blacklisted = 1;
                }
            }
            Ok(outcome)
        }

        async fn imported_user_in(
            conn: &mut $conn,
            id: i64,
        ) -> Result<Option<super::import::ImportedUser>, StoreError> {
            let stored: Option<super::import::StoredUser> = sqlx::query_as(
                "SELECT username, password, imported_password_sha256, is_active, is_superuser,
                        is_staff, email, first_name, last_name, last_login, date_joined
                 FROM users WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
            Ok(stored.map(|s| s.into_imported(id)))
        }
    };
}

pub(super) use import_queries;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::store::tests::{Backend, on_both_backends, run};
    use crate::store::{NewUser, Store};

    fn stored(hash: &str, digest: Option<&str>) -> StoredUser {
        StoredUser {
            username: "alice".into(),
            password: hash.into(),
            imported_password_sha256: digest.map(str::to_owned),
            is_active: true,
            is_superuser: false,
            is_staff: false,
            email: "a@example.com".into(),
            first_name: "Alice".into(),
            last_name: "Liddell".into(),
            last_login: Some(100),
            date_joined: 10,
        }
    }

    fn incoming(hash: &str) -> ImportedUser {
        ImportedUser {
            id: 1,
            username: "alice".into(),
            password_hash: hash.into(),
            is_active: true,
            is_superuser: false,
            is_staff: false,
            email: "a@example.com".into(),
            first_name: "Alice".into(),
            last_name: "Liddell".into(),
            last_login: Some(100),
            date_joined: 10,
        }
    }

    #[test]
    fn the_same_row_again_changes_nothing() {
        let d = password_digest("pbkdf2_sha256$1$a$b");
        let plan = plan_update(
            &stored("pbkdf2_sha256$1$a$b", Some(&d)),
            &incoming("pbkdf2_sha256$1$a$b"),
            &d,
        );
        assert!(!plan.write);
        assert!(plan.changed.is_empty());
        assert_eq!(plan.password, None);
    }

    #[test]
    fn a_hash_upgraded_here_is_kept_while_django_still_has_the_old_one() {
        let d = password_digest("pbkdf2_sha256$1$a$b");
        let plan = plan_update(
            &stored("$argon2id$v=19$m=19456,t=2,p=1$x$y", Some(&d)),
            &incoming("pbkdf2_sha256$1$a$b"),
            &d,
        );
        assert!(!plan.write, "{plan:?}");
        assert_eq!(plan.password, None);
    }

    #[test]
    fn a_password_changed_in_django_replaces_whatever_is_here() {
        let old = password_digest("pbkdf2_sha256$1$a$b");
        let new = password_digest("pbkdf2_sha256$1$c$d");
        let plan = plan_update(
            &stored("$argon2id$v=19$m=19456,t=2,p=1$x$y", Some(&old)),
            &incoming("pbkdf2_sha256$1$c$d"),
            &new,
        );
        assert_eq!(plan.changed, ["password"]);
        assert_eq!(plan.password.as_deref(), Some("pbkdf2_sha256$1$c$d"));
        assert!(plan.write);
    }

    #[test]
    fn a_user_never_imported_takes_a_different_hash_and_records_a_same_one() {
        let d = password_digest("pbkdf2_sha256$1$a$b");
        let same = plan_update(
            &stored("pbkdf2_sha256$1$a$b", None),
            &incoming("pbkdf2_sha256$1$a$b"),
            &d,
        );
        assert!(same.write && same.changed.is_empty() && same.password.is_none());
        let other = plan_update(
            &stored("$argon2id$x", None),
            &incoming("pbkdf2_sha256$1$a$b"),
            &d,
        );
        assert_eq!(other.changed, ["password"]);
    }

    #[test]
    fn fields_follow_django_and_last_login_only_moves_forward() {
        let d = password_digest("h$1");
        let mut django = incoming("h$1");
        django.is_active = false;
        django.is_staff = true;
        django.email = "alice@example.org".into();
        django.last_login = Some(50);
        let plan = plan_update(&stored("h$1", Some(&d)), &django, &d);
        assert_eq!(plan.changed, ["is_active", "is_staff", "email"]);
        assert!(plan.deactivated);
        assert_eq!(plan.last_login, Some(100));
        django.last_login = Some(200);
        let plan = plan_update(&stored("h$1", Some(&d)), &django, &d);
        assert_eq!(plan.last_login, Some(200));
        assert!(plan.changed.contains(&"last_login"));
        let mut never = stored("h$1", Some(&d));
        never.last_login = None;
        django.last_login = None;
        assert_eq!(plan_update(&never, &django, &d).last_login, None);
    }

    #[test]
    fn the_digest_is_hex_sha256() {
        assert_eq!(
            password_digest(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    fn account(id: i64, name: &str, jtis: &[(&str, bool)]) -> ImportItem {
        let mut user = incoming("pbkdf2_sha256$1$a$b");
        user.id = id;
        user.username = name.into();
        ImportItem {
            user: Some(user),
            tokens: jtis
                .iter()
                .map(|(jti, blacklisted)| ImportedToken {
                    jti: (*jti).into(),
                    created_at: Some(1),
                    expires_at: crate::unix_now() + 3600,
                    blacklisted_at: blacklisted.then_some(2),
                })
                .collect(),
        }
    }

    /// Runs SQL of the test's own on either backend.
    async fn execute(store: &Store, sql: &'static str) {
        match store {
            Store::Sqlite(s) => sqlx::raw_sql(sql).execute(s.pool()).await.map(|_| ()),
            Store::Postgres(s) => sqlx::raw_sql(sql).execute(s.pool()).await.map(|_| ()),
        }
        .unwrap();
    }

    async fn count(store: &Store, sql: &'static str) -> i64 {
        match store {
            Store::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await,
            Store::Postgres(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await,
        }
        .unwrap()
    }

    on_both_backends!(an_item_that_fails_is_rolled_back_alone);
    /// A user whose second token can't be written leaves neither itself nor its first token
    /// behind; the users around it are written.
    async fn an_item_that_fails_is_rolled_back_alone(store: Store) {
        store.migrate().await.unwrap();
        match &store {
            Store::Sqlite(_) => {
                execute(
                    &store,
                    "CREATE TRIGGER poison BEFORE INSERT ON outstanding_tokens
                     WHEN NEW.jti = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned jti'); END",
                )
                .await
            }
            Store::Postgres(_) => {
                execute(
                    &store,
                    "CREATE FUNCTION poison() RETURNS trigger AS $$
                     BEGIN IF NEW.jti = 'poison' THEN RAISE EXCEPTION 'poisoned jti'; END IF;
                     RETURN NEW; END $$ LANGUAGE plpgsql;
                     CREATE TRIGGER poison BEFORE INSERT ON outstanding_tokens
                     FOR EACH ROW EXECUTE FUNCTION poison()",
                )
                .await
            }
        }
        let items = [
            account(1, "alice", &[("a1", false)]),
            account(2, "bob", &[("b1", true), ("poison", false)]),
            account(3, "carol", &[]),
        ];
        let outcomes = store.import_batch(&items, false).await.unwrap();
        assert_eq!(outcomes[0].as_ref().unwrap().user, Some(UserOutcome::Added));
        let error = outcomes[1].as_ref().unwrap_err();
        assert!(error.to_string().contains("poisoned jti"), "{error}");
        assert_eq!(outcomes[2].as_ref().unwrap().user, Some(UserOutcome::Added));
        assert!(store.user_by_id(2).await.unwrap().is_none());
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM outstanding_tokens WHERE jti = 'b1'"
            )
            .await,
            0
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM blacklisted_tokens").await,
            0
        );
        assert_eq!(count(&store, "SELECT COUNT(*) FROM users").await, 2);
    }

    on_both_backends!(a_dry_run_writes_nothing_and_a_rerun_changes_nothing);
    async fn a_dry_run_writes_nothing_and_a_rerun_changes_nothing(store: Store) {
        store.migrate().await.unwrap();
        let items = [
            account(5, "alice", &[("a1", false), ("a2", true)]),
            ImportItem {
                user: None,
                tokens: vec![ImportedToken {
                    jti: "orphan".into(),
                    created_at: None,
                    expires_at: crate::unix_now() + 60,
                    blacklisted_at: None,
                }],
            },
        ];
        let dry = store.import_batch(&items, true).await.unwrap();
        assert_eq!(count(&store, "SELECT COUNT(*) FROM users").await, 0);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM outstanding_tokens").await,
            0
        );
        let wet = store.import_batch(&items, false).await.unwrap();
        assert_eq!(dry.len(), 2);
        for (dry, wet) in dry.iter().zip(&wet) {
            assert_eq!(dry.as_ref().unwrap(), wet.as_ref().unwrap());
        }
        let first = wet[0].as_ref().unwrap();
        assert_eq!(first.user, Some(UserOutcome::Added));
        assert_eq!(
            first.tokens,
            TokenOutcome {
                added: 2,
                blacklisted: 1,
                ..TokenOutcome::default()
            }
        );
        assert_eq!(wet[1].as_ref().unwrap().user, None);
        assert_eq!(wet[1].as_ref().unwrap().tokens.added, 1);
        // Ids kept, families of their own, the blacklisting where Django had it.
        let alice = store.imported_user(5).await.unwrap().unwrap();
        assert_eq!(alice, items[0].user.clone().unwrap());
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM outstanding_tokens WHERE family = jti AND user_id = 5"
            )
            .await,
            2
        );
        assert!(store.is_blacklisted("a2").await.unwrap());
        assert!(!store.is_blacklisted("a1").await.unwrap());

        let again = store.import_batch(&items, false).await.unwrap();
        let first = again[0].as_ref().unwrap();
        assert_eq!(first.user, Some(UserOutcome::Unchanged));
        assert_eq!(
            first.tokens,
            TokenOutcome {
                unchanged: 2,
                already_blacklisted: 1,
                ..TokenOutcome::default()
            }
        );
    }

    on_both_backends!(other_users_are_never_overwritten);
    async fn other_users_are_never_overwritten(store: Store) {
        store.migrate().await.unwrap();
        let root = store
            .create_user(NewUser {
                username: "root".into(),
                password_hash: "h".into(),
                is_active: true,
                is_superuser: true,
            })
            .await
            .unwrap();
        let items = [
            account(root.id, "carol", &[("c1", false)]),
            account(root.id + 1, "root", &[]),
        ];
        let outcomes = store.import_batch(&items, false).await.unwrap();
        assert_eq!(
            outcomes[0].as_ref().unwrap().user,
            Some(UserOutcome::IdTaken {
                username: "root".into()
            })
        );
        assert_eq!(
            outcomes[1].as_ref().unwrap().user,
            Some(UserOutcome::UsernameTaken { id: root.id })
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM outstanding_tokens").await,
            0
        );
        let kept = store.user_by_id(root.id).await.unwrap().unwrap();
        assert_eq!(
            (kept.username.as_str(), kept.password_hash.as_str()),
            ("root", "h")
        );
    }

    on_both_backends!(a_deactivation_logs_out_and_ids_stay_reserved);
    async fn a_deactivation_logs_out_and_ids_stay_reserved(store: Store) {
        store.migrate().await.unwrap();
        let items = [account(40, "dora", &[("d1", false)])];
        store.reserve_user_ids(41).await.unwrap();
        store.import_batch(&items, false).await.unwrap();
        let mut gone = items[0].clone();
        if let Some(user) = &mut gone.user {
            user.is_active = false;
        }
        let outcome = store.import_batch(&[gone], false).await.unwrap();
        assert_eq!(
            outcome[0].as_ref().unwrap().user,
            Some(UserOutcome::Updated {
                changed: vec!["is_active"],
                revoked: Some(1)
            })
        );
        assert!(store.is_blacklisted("d1").await.unwrap());
        let dora = store.user_by_id(40).await.unwrap().unwrap();
        assert!(!dora.is_active && dora.tokens_valid_after.is_some());
        // A user created afterwards gets an id above every one reserved, on both backends.
        let next = store
            .create_user(NewUser {
                username: "native".into(),
                password_hash: "h".into(),
                is_active: true,
                is_superuser: false,
            })
            .await
            .unwrap();
        assert_eq!(next.id, 42);
        // Reserving less never moves the counter back.
        store.reserve_user_ids(3).await.unwrap();
        let after = store
            .create_user(NewUser {
                username: "native2".into(),
                password_hash: "h".into(),
                is_active: true,
                is_superuser: false,
            })
            .await
            .unwrap();
        assert_eq!(after.id, next.id + 1, "no id is spent on reserving");
    }
}
