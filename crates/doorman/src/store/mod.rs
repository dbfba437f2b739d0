//! The store: users, outstanding refresh tokens and the blacklist. One enum dispatches to a
//! backend, so callers never know which database runs: SQLite (one file, the default) or
//! PostgreSQL (many doorman instances sharing one database). Both have the same schema meaning
//! and their own numbered migrations. Every write that decides who wins a race (blacklist,
//! rotation) is a single transaction.

pub mod health;
pub mod import;
mod portable;
mod postgres;
pub mod settings;
mod sqlite;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod tests;
pub mod throttle;

use std::fmt;
use std::time::Duration;

use sqlx::FromRow;
use time::OffsetDateTime;

pub use postgres::{PRUNE_LOCK, PostgresStore};
pub use sqlite::SqliteStore;

/// The database behind doorman.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// Connection pool limits (the `database_*` settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections one doorman holds; `None` is the backend's default (SQLite 8,
    /// PostgreSQL 10).
    pub max_connections: Option<u32>,
    /// How long a request waits for a connection (and, on SQLite, for the write lock) before
    /// the store reports itself unavailable (a 503).
    pub acquire_timeout: Duration,
    /// PostgreSQL's `statement_timeout` for every doorman statement: a stuck query fails
    /// instead of holding a request.
    pub statement_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: None,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// A user row (Django's `auth_user`, the columns doorman needs).
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub is_active: bool,
    pub is_superuser: bool,
    pub last_login: Option<OffsetDateTime>,
    pub date_joined: OffsetDateTime,
    /// Unix second at or before which every token of the user was revoked (log out
    /// everywhere): a token with an `iat` at or before it is refused. `None`: never revoked.
    pub tokens_valid_after: Option<i64>,
}

// A user printed into a log must not carry its password hash along.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &"[redacted]")
            .field("is_active", &self.is_active)
            .field("is_superuser", &self.is_superuser)
            .field("last_login", &self.last_login)
            .field("date_joined", &self.date_joined)
            .field("tokens_valid_after", &self.tokens_valid_after)
            .finish()
    }
}

impl User {
    /// Whether a token of this user issued at `iat` (whole seconds; `None`: the token has no
    /// `iat`) was revoked since: issued at or before the revocation's second. A token without
    /// `iat` can't show it is newer, so it is revoked once anything of the user's was.
    pub fn revoked(&self, iat: Option<i64>) -> bool {
        is_revoked(self.tokens_valid_after, iat)
    }
}

/// [`User::revoked`] for a `tokens_valid_after` read on its own (the user cache keeps only it).
pub fn is_revoked(tokens_valid_after: Option<i64>, iat: Option<i64>) -> bool {
    match (tokens_valid_after, iat) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(after), Some(iat)) => iat <= after,
    }
}

/// A user as the admin API shows one: Django's `auth_user` columns but the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSummary {
    pub id: i64,
    pub username: String,
    pub is_active: bool,
    pub is_superuser: bool,
    pub is_staff: bool,
    pub email: String,
    pub last_login: Option<OffsetDateTime>,
    pub date_joined: OffsetDateTime,
}

#[derive(FromRow)]
struct UserSummaryRow {
    id: i64,
    username: String,
    is_active: bool,
    is_superuser: bool,
    is_staff: bool,
    email: String,
    last_login: Option<i64>,
    date_joined: i64,
}

impl TryFrom<UserSummaryRow> for UserSummary {
    type Error = StoreError;

    fn try_from(row: UserSummaryRow) -> Result<UserSummary, StoreError> {
        let time = |secs: i64| {
            OffsetDateTime::from_unix_timestamp(secs)
                .map_err(|e| StoreError::Database(format!("bad timestamp {secs}: {e}").into()))
        };
        Ok(UserSummary {
            id: row.id,
            username: row.username,
            is_active: row.is_active,
            is_superuser: row.is_superuser,
            is_staff: row.is_staff,
            email: row.email,
            last_login: row.last_login.map(time).transpose()?,
            date_joined: time(row.date_joined)?,
        })
    }
}

/// One page of [`Store::find_users`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserPage {
    /// How many users match, on every page.
    pub count: i64,
    pub users: Vec<UserSummary>,
}

/// An audit event with its id, the key the admin API pages by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberedAuditEvent {
    pub id: i64,
    pub event: AuditEvent,
}

#[derive(FromRow)]
struct AuditPageRow {
    id: i64,
    #[sqlx(flatten)]
    event: AuditRow,
}

/// A session: a refresh-token family of one user that still has a live token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The family's id (the jti of its first token).
    pub id: String,
    /// The jti of its live token (the newest, should there be more than one).
    pub token_id: String,
    /// When the family's first token still stored was issued (its login).
    pub started_at: Option<OffsetDateTime>,
    /// When its newest token was issued: the last rotation (with rotation off, refreshing
    /// writes nothing, so this stays the login's time).
    pub last_used_at: Option<OffsetDateTime>,
    pub expires_at: OffsetDateTime,
    /// The newest token's client.
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
}

/// What [`Store::revoke_user_tokens`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The user's name, for the audit trail.
    pub username: String,
    /// The user's `tokens_valid_after` now: every token issued at or before this second is
    /// refused.
    pub tokens_valid_after: i64,
    /// Outstanding refresh and sliding tokens this call blacklisted.
    pub blacklisted: u64,
}

#[derive(Clone)]
pub struct NewUser {
    pub username: String,
    pub password_hash: String,
    pub is_active: bool,
    pub is_superuser: bool,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("password_hash", &"[redacted]")
            .field("is_active", &self.is_active)
            .field("is_superuser", &self.is_superuser)
            .finish()
    }
}

/// What the store keeps of a refresh or sliding token: its id, owner and expiry, never the
/// token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutstandingToken {
    pub jti: String,
    /// `None` for a token whose user is unknown here; a user that does not exist (any more) is
    /// stored as `None` too rather than refused.
    pub user_id: Option<i64>,
    pub created_at: Option<OffsetDateTime>,
    pub expires_at: OffsetDateTime,
    /// The address of the client it was issued to, when known (a session's "where").
    pub client_addr: Option<String>,
    /// The User-Agent of the request it was issued to; the store keeps at most
    /// [`AUDIT_USER_AGENT_MAX`] characters of it.
    pub user_agent: Option<String>,
}

impl OutstandingToken {
    /// This token with its user agent cut to what the store keeps; borrowed when it fits.
    fn bounded(&self) -> std::borrow::Cow<'_, OutstandingToken> {
        match &self.user_agent {
            Some(agent) if agent.char_indices().nth(AUDIT_USER_AGENT_MAX).is_some() => {
                let mut token = self.clone();
                token.user_agent = Some(crate::audit::bounded(agent.clone()));
                std::borrow::Cow::Owned(token)
            }
            _ => std::borrow::Cow::Borrowed(self),
        }
    }
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

/// A rotated-out refresh token as the store knows it: which family it belongs to, whose it
/// is, when the rotation that blacklisted it was committed, and the token that rotation made
/// while that one is live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotatedOut {
    /// The jti of the family's first token.
    pub family: String,
    pub user_id: Option<i64>,
    pub rotated_at: OffsetDateTime,
    /// The successor's row (the rotation recorded its jti on this one), or `None` once it is
    /// blacklisted (rotated out in turn, logged out, revoked with its family) or flushed.
    pub live_successor: Option<OutstandingToken>,
}

/// What a refresh with an already blacklisted token amounts to (see [`Store::replayed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replay {
    /// The token was not rotated out (blacklisted by a logout, a family revocation, or never
    /// recorded): nothing to detect.
    NotRotatedOut,
    /// Rotated out less than the grace window ago: a retry or a second tab, left alone. The
    /// successor the rotation made is given while it is live, for the replay to be answered
    /// with it again.
    WithinGrace {
        live_successor: Option<OutstandingToken>,
    },
    /// Rotated out longer ago than the grace window: its family was revoked. `revoked` counts
    /// the tokens this call blacklisted (0 when an earlier replay revoked them already).
    FamilyRevoked {
        family: String,
        user_id: Option<i64>,
        revoked: u64,
    },
}

/// Where a managed key is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Published in the JWKS, verifies, does not sign yet.
    Next,
    /// Signs (one at a time).
    Current,
    /// Verifies until `retire_after`: every token it signed has expired by then.
    Retiring,
    /// Never used again.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Current => "current",
            KeyState::Retiring => "retiring",
            KeyState::Retired => "retired",
        }
    }

    fn parse(text: &str) -> Result<KeyState, StoreError> {
        match text {
            "next" => Ok(KeyState::Next),
            "current" => Ok(KeyState::Current),
            "retiring" => Ok(KeyState::Retiring),
            "retired" => Ok(KeyState::Retired),
            other => Err(StoreError::Database(
                format!("unknown key state {other:?}").into(),
            )),
        }
    }
}

/// A managed signing key as stored: the private key PEM and its state.
#[derive(Clone)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub state: KeyState,
    pub private_pem: secrecy::SecretString,
    pub created_at: i64,
    pub state_since: i64,
    pub retire_after: Option<i64>,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .field("private_pem", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("state_since", &self.state_since)
            .field("retire_after", &self.retire_after)
            .finish()
    }
}

#[derive(FromRow)]
struct KeyRow {
    kid: String,
    alg: String,
    state: String,
    private_pem: String,
    created_at: i64,
    state_since: i64,
    retire_after: Option<i64>,
}

impl TryFrom<KeyRow> for StoredKey {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<StoredKey, StoreError> {
        Ok(StoredKey {
            kid: row.kid,
            alg: row.alg,
            state: KeyState::parse(&row.state)?,
            private_pem: row.private_pem.into(),
            created_at: row.created_at,
            state_since: row.state_since,
            retire_after: row.retire_after,
        })
    }
}

/// The longest user agent (and username) the audit trail keeps, in characters; a longer one
/// is cut (the client chooses them, not the table's size).
pub const AUDIT_USER_AGENT_MAX: usize = 512;

/// A security event of the audit trail, as written and as read back. Never holds a password
/// or a token: `detail` is for what names a thing (a key id), not for secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: OffsetDateTime,
    /// What happened, such as `login_succeeded` (the names are the audit module's).
    pub kind: String,
    /// The username as given (for a failed login, whatever the client sent).
    pub username: Option<String>,
    /// The user's id when known; kept after the user is deleted.
    pub user_id: Option<i64>,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
}

/// Which audit events to read: all of them, or those of one username, or since a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub username: Option<String>,
    /// Events at or after this time.
    pub since: Option<OffsetDateTime>,
}

/// An `audit_events` row as stored: `at` is Unix seconds.
#[derive(FromRow)]
struct AuditRow {
    at: i64,
    kind: String,
    username: Option<String>,
    user_id: Option<i64>,
    client_addr: Option<String>,
    user_agent: Option<String>,
    detail: Option<String>,
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> Result<AuditEvent, StoreError> {
        let at = OffsetDateTime::from_unix_timestamp(row.at)
            .map_err(|e| StoreError::Database(format!("bad timestamp {}: {e}", row.at).into()))?;
        Ok(AuditEvent {
            at,
            kind: row.kind,
            username: row.username,
            user_id: row.user_id,
            client_addr: row.client_addr,
            user_agent: row.user_agent,
            detail: row.detail,
        })
    }
}

/// How many connections the pool holds, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub open: u32,
    pub idle: usize,
    pub max: u32,
    /// Whether the database is believed to answer (always on SQLite; see [`health`]).
    pub reachable: bool,
    /// Calls refused at once because the database was down, since start.
    pub fast_failures: u64,
}

/// What `keys rotate` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRotation {
    /// `promoted` is now current; `retiring` (the old current, if any) verifies until its
    /// retire_after.
    Rotated {
        promoted: String,
        retiring: Option<String>,
    },
    /// There is no next key to promote.
    NoNextKey,
}

/// A migration applied by [`Store::migrate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationInfo {
    pub version: i64,
    pub description: String,
}

/// A migration this build knows, and whether (and when) the database has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationStatus {
    pub version: i64,
    pub description: String,
    /// Whether the database has it; the same as `applied_at.is_some()` whenever the
    /// database recorded a readable time.
    pub applied: bool,
    pub applied_at: Option<OffsetDateTime>,
}

/// Whatever the database library reported, kept for logs.
pub type ErrorCause = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("that username is already taken")]
    UsernameTaken,
    /// The database could not be reached or stayed locked too long; worth retrying later
    /// (a 503, not a 500).
    #[error("the database is unavailable: {0}")]
    Unavailable(ErrorCause),
    #[error("a database migration failed: {0}")]
    Migration(ErrorCause),
    #[error("database error: {0}")]
    Database(ErrorCause),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            StoreError::Unavailable(Box::new(error))
        } else {
            StoreError::Database(Box::new(error))
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        match error {
            sqlx::migrate::MigrateError::Execute(inner) if is_unavailable(&inner) => {
                StoreError::Unavailable(Box::new(inner))
            }
            other => StoreError::Migration(Box::new(other)),
        }
    }
}

/// Failures that say "not now" rather than "never": no connection in time, the connection
/// itself broke, or the backend reports it is busy or cannot reach its storage.
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            sqlite::is_unavailable(db.as_ref()) || postgres::is_unavailable(db.as_ref())
        }
        _ => false,
    }
}

/// Dispatches each call to the backend in use; on PostgreSQL through its [`health::Health`],
/// so that calls fail at once while the database is down.
macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Sqlite($store) => $call,
            Store::Postgres($store) => $store.health().guard(async { $call }).await,
        }
    };
}

impl Store {
    /// Opens the database a URL names with default pool settings.
    pub async fn connect(database_url: &str) -> Result<Store, StoreError> {
        Store::connect_with(database_url, &PoolSettings::default()).await
    }

    /// Opens the database a URL names: `postgres://` or `postgresql://` for PostgreSQL;
    /// `sqlite://path`, `sqlite:path` or a plain path for SQLite, creating the file and its
    /// directory (owner-only) on first use.
    pub async fn connect_with(
        database_url: &str,
        settings: &PoolSettings,
    ) -> Result<Store, StoreError> {
        match database_url.split_once("://").map(|(scheme, _)| scheme) {
            Some("postgres" | "postgresql") => Ok(Store::Postgres(
                PostgresStore::connect(database_url, settings).await?,
            )),
            Some("sqlite") | None => Ok(Store::Sqlite(
                SqliteStore::connect(database_url, settings).await?,
            )),
            // Without this an unknown URL would quietly become a file of that name.
            Some(scheme) => Err(StoreError::Database(
                format!("unsupported database URL scheme {scheme:?}; use sqlite:// or postgres://")
                    .into(),
            )),
        }
    }

    /// Which backend runs, for logs: "sqlite" or "postgres".
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    pub fn pool_stats(&self) -> PoolStats {
        match self {
            Store::Sqlite(s) => s.pool_stats(),
            Store::Postgres(s) => PoolStats {
                reachable: s.health().reachable(),
                fast_failures: s.health().fast_failures(),
                ..s.pool_stats()
            },
        }
    }

    /// Closes every pooled connection (at shutdown).
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close_all().await,
        }
    }

    /// Holds the blacklist in memory on PostgreSQL, exact by PostgreSQL's notifications: all of
    /// it while it has at most `size` tokens, else the "not blacklisted" answers for `ttl` (a
    /// serving instance's choice, with the user cache's settings). SQLite's lookups need none:
    /// they cost microseconds.
    pub fn hold_blacklist(
        &self,
        ttl: std::time::Duration,
        size: u64,
        metrics: &crate::metrics::Metrics,
    ) {
        if let Store::Postgres(s) = self {
            s.hold_blacklist(ttl, size, metrics);
        }
    }

    /// Applies pending migrations; returns the ones applied now.
    pub async fn migrate(&self) -> Result<Vec<MigrationInfo>, StoreError> {
        dispatch!(self, s => s.migrate().await)
    }

    /// Every migration this build knows, applied or pending, in order.
    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>, StoreError> {
        dispatch!(self, s => s.migration_status().await)
    }

    /// Whether the database takes writes now (`false`: it answers, read-only), checked
    /// without writing anything; for readiness.
    pub async fn writable(&self) -> Result<bool, StoreError> {
        dispatch!(self, s => s.writable().await)
    }

    pub async fn pending_migrations(&self) -> Result<usize, StoreError> {
        Ok(self
            .migration_status()
            .await?
            .iter()
            .filter(|m| !m.applied)
            .count())
    }

    /// Fails with [`StoreError::UsernameTaken`] when the name exists (case-sensitively, as in
    /// Django).
    pub async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        dispatch!(self, s => s.create_user(new).await)
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        dispatch!(self, s => s.user_by_username(username).await)
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        dispatch!(self, s => s.user_by_id(id).await)
    }

    /// Every user, ordered by id.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        dispatch!(self, s => s.list_users().await)
    }

    /// Returns false when there is no such user.
    pub async fn set_password_hash(&self, id: i64, hash: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.set_password_hash(id, hash).await)
    }

    /// Compare-and-set: stores `hash` only if the user's stored hash is still `expected`, for
    /// writes decided on a hash read earlier (a login's rehash) that must not undo a password
    /// change made since. False when the hash changed or there is no such user.
    pub async fn replace_password_hash(
        &self,
        id: i64,
        expected: &str,
        hash: &str,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.replace_password_hash(id, expected, hash).await)
    }

    /// The distinct parameters of the stored hashes that have a work factor (doorman's own
    /// and Django's `argon2`, `pbkdf2_sha256`, `pbkdf2_sha1`, `bcrypt`, `bcrypt_sha256` and
    /// `scrypt`), each written as its hash with the salt and digest left out:
    /// `pbkdf2_sha256$1000000`, `argon2$argon2id$v=19$m=102400,t=2,p=8`, `bcrypt$$2b$12`,
    /// `scrypt$16384$$8$5` (unparsed: a malformed hash gives whatever text sits in those
    /// fields). One scan of the users table, a few rows back.
    pub async fn password_hash_parameters(&self) -> Result<Vec<String>, StoreError> {
        dispatch!(self, s => s.password_hash_parameters().await)
    }

    /// Returns false when there is no such user.
    pub async fn set_active(&self, username: &str, active: bool) -> Result<bool, StoreError> {
        dispatch!(self, s => s.set_active(username, active).await)
    }

    /// Returns false when there is no such user. Their outstanding tokens stay, without owner,
    /// so they can still be blacklisted and flushed.
    pub async fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete_user(username).await)
    }

    /// Logs the user out everywhere, in one transaction: blacklists every outstanding refresh
    /// and sliding token of the user not blacklisted yet, then sets `tokens_valid_after` to
    /// the current second (never lowering it), read after the blacklisting so that a token
    /// recorded too late to be blacklisted here was issued at or before it, and is refused by
    /// its `iat`. `None` when there is no such user.
    pub async fn revoke_user_tokens(&self, id: i64) -> Result<Option<Revocation>, StoreError> {
        dispatch!(self, s => s.revoke_user_tokens(id).await)
    }

    /// Sets `last_login` (Django's `update_last_login`).
    pub async fn record_login(&self, id: i64, at: OffsetDateTime) -> Result<(), StoreError> {
        dispatch!(self, s => s.record_login(id, at).await)
    }

    /// Records a newly issued refresh or sliding token (idempotent on its jti); it starts a
    /// family of its own.
    pub async fn record_outstanding(&self, token: &OutstandingToken) -> Result<(), StoreError> {
        let token = token.bounded();
        dispatch!(self, s => s.record_outstanding(&token).await)
    }

    pub async fn is_blacklisted(&self, jti: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => match s.is_blacklisted_inline(jti) {
                Some(found) => Ok(found),
                None => s.is_blacklisted(jti).await,
            },
            // What is known in memory holds while the database is away too: nothing can be
            // blacklisted then (and nothing is answered from memory once the listening
            // connection has broken).
            Store::Postgres(s) => match s.known_blacklisted(jti) {
                Some(known) => Ok(known),
                None => s.health().guard(s.is_blacklisted_keeping(jti)).await,
            },
        }
    }

    /// Blacklists a token, creating its outstanding row first if this server never recorded it
    /// (simplejwt's `get_or_create`).
    pub async fn blacklist(
        &self,
        token: &OutstandingToken,
    ) -> Result<BlacklistOutcome, StoreError> {
        dispatch!(self, s => s.blacklist(token).await)
    }

    /// Rotation in one transaction: blacklist `old` (when `blacklist_old`, creating its
    /// outstanding row if needed, and marking it rotated out now) and record `new` in `old`'s
    /// family. If `old` is already blacklisted nothing is written, so of racing rotations of
    /// one token exactly one gets `Rotated`.
    pub async fn rotate(
        &self,
        old: &OutstandingToken,
        new: &OutstandingToken,
        blacklist_old: bool,
    ) -> Result<RotateOutcome, StoreError> {
        let new = new.bounded();
        dispatch!(self, s => s.rotate(old, &new, blacklist_old).await)
    }

    /// The rotated-out refresh token `jti`, or `None` when it was never rotated out.
    pub async fn rotated_out(&self, jti: &str) -> Result<Option<RotatedOut>, StoreError> {
        let Some(row) = dispatch!(self, s => s.rotated_out(jti).await)? else {
            return Ok(None);
        };
        let portable::RotatedOutRow {
            family,
            jti,
            user_id,
            rotated_at_ms,
            successor_jti,
            successor_user_id,
            successor_created_at,
            successor_expires_at,
        } = row;
        let rotated_at =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(rotated_at_ms) * 1_000_000)
                .map_err(|e| {
                    StoreError::Database(format!("bad rotation time {rotated_at_ms}: {e}").into())
                })?;
        let time = |secs: i64| {
            OffsetDateTime::from_unix_timestamp(secs)
                .map_err(|e| StoreError::Database(format!("bad timestamp {secs}: {e}").into()))
        };
        let live_successor = match (successor_jti, successor_expires_at) {
            (Some(jti), Some(expires_at)) => Some(OutstandingToken {
                jti,
                user_id: successor_user_id,
                created_at: successor_created_at.map(time).transpose()?,
                expires_at: time(expires_at)?,
                client_addr: None,
                user_agent: None,
            }),
            _ => None,
        };
        Ok(Some(RotatedOut {
            family: family.unwrap_or(jti),
            user_id,
            rotated_at,
            live_successor,
        }))
    }

    /// The users whose name contains `search` (case-insensitively; `%` and `_` are plain
    /// characters), `limit` of them from `offset` in id order, and how many match in all.
    pub async fn find_users(
        &self,
        search: &str,
        limit: i64,
        offset: i64,
    ) -> Result<UserPage, StoreError> {
        let mut pattern = String::with_capacity(search.len() + 2);
        pattern.push('%');
        for c in search.chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        let (count, rows) = dispatch!(self, s => s.find_users(&pattern, limit, offset).await)?;
        let users = rows
            .into_iter()
            .map(UserSummary::try_from)
            .collect::<Result<_, _>>()?;
        Ok(UserPage { count, users })
    }

    /// The user of this name as the admin API shows one.
    pub async fn user_summary(&self, username: &str) -> Result<Option<UserSummary>, StoreError> {
        let row = dispatch!(self, s => s.user_summary(username).await)?;
        row.map(UserSummary::try_from).transpose()
    }

    /// Up to `limit` audit events, newest first: of `username` when given, and recorded
    /// before the event `before` (an id) when given.
    pub async fn audit_page(
        &self,
        username: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<NumberedAuditEvent>, StoreError> {
        let rows = dispatch!(self, s => s.audit_page(username, before, limit).await)?;
        rows.into_iter()
            .map(|row| {
                Ok(NumberedAuditEvent {
                    id: row.id,
                    event: AuditEvent::try_from(row.event)?,
                })
            })
            .collect()
    }

    /// The user's sessions: each refresh-token family of theirs with a token neither
    /// blacklisted nor expired at `now`, the most recently used first.
    pub async fn sessions(
        &self,
        user_id: i64,
        now: OffsetDateTime,
    ) -> Result<Vec<Session>, StoreError> {
        let rows = dispatch!(self, s => s.user_tokens(user_id).await)?;
        sessions_of(rows, now)
    }

    /// Whether `family` is a refresh-token family of the user's (live or not).
    pub async fn owns_family(&self, user_id: i64, family: &str) -> Result<bool, StoreError> {
        let rows = dispatch!(self, s => s.user_tokens(user_id).await)?;
        Ok(rows.iter().any(|row| row.family == family))
    }

    /// Blacklists every token of a refresh-token family at once, in one statement (a row
    /// without a family is the family of its own jti). A rotation of one of them racing this
    /// either finds its token blacklisted or has its successor blacklisted too. Returns how
    /// many tokens this call blacklisted.
    pub async fn revoke_family(&self, family: &str) -> Result<u64, StoreError> {
        dispatch!(self, s => s.revoke_family(family).await)
    }

    /// Reuse detection (RFC 9700 section 4.14.2) for a refresh presented with an already
    /// blacklisted token: when the token was rotated out at least `grace` before `now`, its
    /// whole family is revoked. A replay inside the window (a retry after a lost answer, two
    /// tabs refreshing at once) revokes nothing and is given the rotation's successor while it
    /// is live; a `grace` of 0 revokes on any replay.
    pub async fn replayed(
        &self,
        jti: &str,
        now: OffsetDateTime,
        grace: Duration,
    ) -> Result<Replay, StoreError> {
        let Some(rotated) = self.rotated_out(jti).await? else {
            return Ok(Replay::NotRotatedOut);
        };
        // A clock behind the rotating instance's gives a negative age: inside any window.
        let age = now - rotated.rotated_at;
        if age < time::Duration::try_from(grace).unwrap_or(time::Duration::MAX) {
            return Ok(Replay::WithinGrace {
                live_successor: rotated.live_successor,
            });
        }
        let revoked = self.revoke_family(&rotated.family).await?;
        Ok(Replay::FamilyRevoked {
            family: rotated.family,
            user_id: rotated.user_id,
            revoked,
        })
    }

    /// Deletes outstanding tokens with `expires_at + leeway <= now`, and their blacklist rows
    /// with them (simplejwt's `flushexpiredtokens`). Returns how many outstanding rows went.
    ///
    /// `leeway` is the tokens' `leeway`: a token still decodes until `exp + leeway`, so its rows
    /// must stay until then, or a blacklisted or rotated-out refresh token would work again.
    pub async fn flush_expired(
        &self,
        now: OffsetDateTime,
        leeway: Duration,
    ) -> Result<u64, StoreError> {
        let cutoff = expiry_cutoff(now, leeway);
        dispatch!(self, s => s.flush_expired(cutoff).await)
    }

    /// Writes a batch of `doorman import django` in one transaction, each item (a user with
    /// its refresh tokens) whole or not at all: an item that fails is rolled back alone and
    /// answered with its error. With `dry_run` the transaction is rolled back at the end, so
    /// the outcomes are what an import would do and nothing is written.
    pub async fn import_batch(
        &self,
        items: &[import::ImportItem],
        dry_run: bool,
    ) -> Result<Vec<Result<import::ItemOutcome, StoreError>>, StoreError> {
        dispatch!(self, s => s.import_batch(items, dry_run).await)
    }

    /// Makes sure a user created from now on gets an id above `through` (the largest id an
    /// import is about to write), on either backend's id counter.
    pub async fn reserve_user_ids(&self, through: i64) -> Result<(), StoreError> {
        dispatch!(self, s => s.reserve_user_ids(through).await)
    }

    /// A user with every column an import writes (Django's `auth_user` fields).
    pub async fn imported_user(&self, id: i64) -> Result<Option<import::ImportedUser>, StoreError> {
        dispatch!(self, s => s.imported_user(id).await)
    }

    /// Every managed key, oldest first, retired ones included.
    pub async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        dispatch!(self, s => s.signing_keys().await)
    }

    /// Adds a key (a new `next` key, or the first `current` one).
    pub async fn add_signing_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        dispatch!(self, s => s.add_signing_key(key).await)
    }

    /// In one transaction: the current key becomes retiring until `retire_after`, and the
    /// oldest next key becomes current.
    pub async fn rotate_signing_keys(
        &self,
        now: i64,
        retire_after: i64,
    ) -> Result<KeyRotation, StoreError> {
        dispatch!(self, s => s.rotate_signing_keys(now, retire_after).await)
    }

    /// Retires a next or retiring key at once; false when there is no such key or it is the
    /// current one (rotate first).
    pub async fn retire_signing_key(&self, kid: &str, now: i64) -> Result<bool, StoreError> {
        dispatch!(self, s => s.retire_signing_key(kid, now).await)
    }

    /// Retires the retiring keys whose tokens have all expired; returns their kids (those this
    /// call retired, not another instance's), for the audit trail.
    pub async fn retire_expired_keys(&self, now: i64) -> Result<Vec<String>, StoreError> {
        dispatch!(self, s => s.retire_expired_keys(now).await)
    }

    /// Appends an event to the audit trail (a user agent longer than
    /// [`AUDIT_USER_AGENT_MAX`] characters is cut). On SQLite it rides the group commit, so
    /// a login's event costs no disk sync of its own.
    pub async fn record_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut event = event.clone();
        if let Some(agent) = &mut event.user_agent
            && let Some((cut, _)) = agent.char_indices().nth(AUDIT_USER_AGENT_MAX)
        {
            agent.truncate(cut);
        }
        dispatch!(self, s => s.record_audit(event).await)
    }

    /// The audit events `filter` selects, oldest first (in the order they were recorded).
    pub async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        dispatch!(self, s => s.audit_events(filter).await)
    }

    /// Deletes the audit events older than `retention` at `now`; returns how many went.
    pub async fn prune_audit_older_than(
        &self,
        now: OffsetDateTime,
        retention: Duration,
    ) -> Result<u64, StoreError> {
        self.prune_audit(expiry_cutoff(now, retention)).await
    }

    /// Deletes the audit events recorded before `before`; returns how many went.
    pub async fn prune_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        dispatch!(self, s => s.prune_audit(before).await)
    }

    /// Reserves a login attempt against its throttling counters before its password is
    /// checked (see [`throttle`]): refused while a counter is blocked, else counted as a
    /// failure in each, atomically.
    pub async fn throttle_reserve(
        &self,
        key: &throttle::LoginKey,
        rules: &throttle::ThrottleRules,
        now_ms: i64,
    ) -> Result<throttle::Verdict, StoreError> {
        dispatch!(self, s => s.throttle_reserve(key, rules, now_ms).await)
    }

    /// After a successful login: clears the username's failures, takes this attempt back from
    /// the address's count, and remembers the address as known to the username.
    pub async fn throttle_succeeded(
        &self,
        key: &throttle::LoginKey,
        rules: &throttle::ThrottleRules,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.throttle_succeeded(key, rules, now_ms).await)
    }

    /// Clears a username's throttling counters (from anywhere and from every address);
    /// returns how many held failures.
    pub async fn throttle_unlock(&self, username: &str) -> Result<u64, StoreError> {
        dispatch!(self, s => s.throttle_unlock(username).await)
    }

    /// Deletes the throttling rows past their expiry at `now_ms`; returns how many went.
    pub async fn prune_throttle(&self, now_ms: i64) -> Result<u64, StoreError> {
        dispatch!(self, s => s.prune_throttle(now_ms).await)
    }

    /// [`flush_expired`](Self::flush_expired) for the background pruning task: on PostgreSQL
    /// at most one instance prunes at a time (an advisory lock); `None` when another one holds
    /// it.
    pub async fn prune_expired(
        &self,
        now: OffsetDateTime,
        leeway: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let cutoff = expiry_cutoff(now, leeway);
        match self {
            Store::Sqlite(s) => s.flush_expired(cutoff).await.map(Some),
            Store::Postgres(s) => s.flush_expired_exclusively(cutoff).await,
        }
    }
}

/// Groups a user's rows (oldest first) into their families, keeping those with a live token.
fn sessions_of(
    rows: Vec<portable::UserTokenRow>,
    now: OffsetDateTime,
) -> Result<Vec<Session>, StoreError> {
    let time = |secs: i64| {
        OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|e| StoreError::Database(format!("bad timestamp {secs}: {e}").into()))
    };
    let now = now.unix_timestamp();
    // Families in the order of their first row; each row is newer than the one before. Found
    // through an index, so a user with thousands of logins costs no quadratic scan.
    let mut families: Vec<(String, Vec<portable::UserTokenRow>)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for row in rows {
        match index.get(&row.family).and_then(|&at| families.get_mut(at)) {
            Some((_, members)) => members.push(row),
            None => {
                index.insert(row.family.clone(), families.len());
                families.push((row.family.clone(), vec![row]));
            }
        }
    }
    let mut sessions = Vec::new();
    for (id, members) in families {
        let Some(live) = members
            .iter()
            .rev()
            .find(|row| row.blacklist_id.is_none() && row.expires_at > now)
        else {
            continue;
        };
        let Some(newest) = members.last() else {
            continue;
        };
        let first_created = members.iter().filter_map(|row| row.created_at).min();
        let last_created = members.iter().filter_map(|row| row.created_at).max();
        sessions.push(Session {
            id,
            token_id: live.jti.clone(),
            started_at: first_created.map(time).transpose()?,
            last_used_at: last_created.map(time).transpose()?,
            expires_at: time(live.expires_at)?,
            client_addr: newest.client_addr.clone(),
            user_agent: newest.user_agent.clone(),
        });
    }
    // Newest use first; of two used in the same second, the later login first.
    sessions.reverse();
    sessions.sort_by_key(|session| std::cmp::Reverse(session.last_used_at));
    Ok(sessions)
}

/// The `expires_at` at or before which a token no longer decodes at `now`: the verifier
/// refuses `exp <= now - leeway`, so exactly those rows may go.
fn expiry_cutoff(now: OffsetDateTime, leeway: Duration) -> OffsetDateTime {
    now.checked_sub(time::Duration::try_from(leeway).unwrap_or(time::Duration::MAX))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Every up migration the build knows, with whether and when the database applied it
/// (`applied` holds version and Unix time of the applied ones).
fn statuses(
    migrator: &sqlx::migrate::Migrator,
    applied: &[(i64, Option<i64>)],
) -> Vec<MigrationStatus> {
    migrator
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
        .collect()
}

/// The migrations now applied that were pending before.
fn newly_applied(before: &[MigrationStatus], after: Vec<MigrationStatus>) -> Vec<MigrationInfo> {
    after
        .into_iter()
        .filter(|now| {
            now.applied
                && before
                    .iter()
                    .any(|then| then.version == now.version && !then.applied)
        })
        .map(|m| MigrationInfo {
            version: m.version,
            description: m.description,
        })
        .collect()
}

/// A `users` row as stored: times are Unix seconds.
#[derive(FromRow)]
struct UserRow {
    id: i64,
    username: String,
    password: String,
    is_active: bool,
    is_superuser: bool,
    last_login: Option<i64>,
    date_joined: i64,
    tokens_valid_after: Option<i64>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<User, StoreError> {
        let time = |secs: i64| {
            OffsetDateTime::from_unix_timestamp(secs)
                .map_err(|e| StoreError::Database(format!("bad timestamp {secs}: {e}").into()))
        };
        Ok(User {
            id: row.id,
            username: row.username,
            password_hash: row.password,
            is_active: row.is_active,
            is_superuser: row.is_superuser,
            last_login: row.last_login.map(time).transpose()?,
            date_joined: time(row.date_joined)?,
            tokens_valid_after: row.tokens_valid_after,
        })
    }
}
