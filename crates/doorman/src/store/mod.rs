//! The store: users, outstanding refresh tokens and the blacklist. One enum dispatches to a
//! backend, so handlers never know which database runs (SQLite today; PostgreSQL joins as a
//! second variant). Every write that decides who wins a race (blacklist, rotation) is a single
//! transaction.

mod sqlite;

use time::OffsetDateTime;

pub use sqlite::SqliteStore;

/// The database behind doorman.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
}

/// A user row (Django's `auth_user`, the columns doorman needs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub is_active: bool,
    pub is_superuser: bool,
    pub last_login: Option<OffsetDateTime>,
    pub date_joined: OffsetDateTime,
}

#[derive(Clone, Debug)]
pub struct NewUser {
    pub username: String,
    pub password_hash: String,
    pub is_active: bool,
    pub is_superuser: bool,
}

/// What the store keeps of a refresh or sliding token: its id and expiry, never the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutstandingToken {
    pub jti: String,
    pub user_id: Option<i64>,
    pub created_at: Option<OffsetDateTime>,
    pub expires_at: OffsetDateTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlacklistOutcome {
    Added,
    AlreadyBlacklisted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotateOutcome {
    Rotated,
    /// Another request blacklisted the old token first; nothing was written.
    AlreadyBlacklisted,
}

/// A migration this build knows, and whether the database has it.
#[derive(Clone, Debug)]
pub struct MigrationStatus {
    pub version: i64,
    pub description: String,
    pub applied: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("that username is already taken")]
    UsernameTaken,
    /// The database could not be reached in time; worth retrying later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error.to_string()),
            _ => StoreError::Database(error.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migration(error.to_string())
    }
}

/// Dispatches each call to the backend in use.
macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Sqlite($store) => $call,
        }
    };
}

impl Store {
    /// Opens the database a URL names (`sqlite://path`, `sqlite:path` or a plain path),
    /// creating the SQLite file and its directory on first use.
    pub async fn connect(database_url: &str) -> Result<Store, StoreError> {
        Ok(Store::Sqlite(SqliteStore::connect(database_url).await?))
    }

    /// Applies pending migrations; returns the ones applied now.
    pub async fn migrate(&self) -> Result<Vec<MigrationStatus>, StoreError> {
        dispatch!(self, s => s.migrate().await)
    }

    /// Every migration this build knows, applied or pending.
    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>, StoreError> {
        dispatch!(self, s => s.migration_status().await)
    }

    pub async fn pending_migrations(&self) -> Result<usize, StoreError> {
        Ok(self
            .migration_status()
            .await?
            .iter()
            .filter(|m| !m.applied)
            .count())
    }

    pub async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        dispatch!(self, s => s.create_user(new).await)
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        dispatch!(self, s => s.user_by_username(username).await)
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        dispatch!(self, s => s.user_by_id(id).await)
    }

    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        dispatch!(self, s => s.list_users().await)
    }

    pub async fn set_password_hash(&self, id: i64, hash: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.set_password_hash(id, hash).await)
    }

    /// Returns false when there is no such user.
    pub async fn set_active(&self, username: &str, active: bool) -> Result<bool, StoreError> {
        dispatch!(self, s => s.set_active(username, active).await)
    }

    /// Returns false when there is no such user. Their outstanding tokens stay, without owner.
    pub async fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete_user(username).await)
    }

    pub async fn record_login(&self, id: i64, at: OffsetDateTime) -> Result<(), StoreError> {
        dispatch!(self, s => s.record_login(id, at).await)
    }

    /// Records a newly issued refresh or sliding token (idempotent on its id).
    pub async fn record_outstanding(&self, token: &OutstandingToken) -> Result<(), StoreError> {
        dispatch!(self, s => s.record_outstanding(token).await)
    }

    pub async fn is_blacklisted(&self, jti: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.is_blacklisted(jti).await)
    }

    /// Blacklists a token, creating its outstanding row first if this server never issued it.
    pub async fn blacklist(
        &self,
        token: &OutstandingToken,
    ) -> Result<BlacklistOutcome, StoreError> {
        dispatch!(self, s => s.blacklist(token).await)
    }

    /// Rotation in one transaction: blacklist `old` (when asked) and record `new`. Of racing
    /// rotations of one token, exactly one gets `Rotated`.
    pub async fn rotate(
        &self,
        old: &OutstandingToken,
        new: &OutstandingToken,
        blacklist_old: bool,
    ) -> Result<RotateOutcome, StoreError> {
        dispatch!(self, s => s.rotate(old, new, blacklist_old).await)
    }

    /// Deletes outstanding tokens that have expired, with their blacklist rows.
    pub async fn flush_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        dispatch!(self, s => s.flush_expired(now).await)
    }
}
