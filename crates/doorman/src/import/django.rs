//! Reading a Django database without changing it: its users (`auth_user`, or a custom user
//! model's table with the same columns) and simplejwt's outstanding and blacklisted tokens,
//! all from one snapshot. SQLite is opened read-only; PostgreSQL in a read-only, repeatable-read
//! transaction on a session whose transactions are all read-only. Times come out as Unix
//! seconds; a row whose values can't be taken is returned as [`Unreadable`], for the report.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, Connection, FromRow};

/// simplejwt's `token_blacklist` tables (fixed names: the app's own models).
pub const OUTSTANDING_TABLE: &str = "token_blacklist_outstandingtoken";
pub const BLACKLISTED_TABLE: &str = "token_blacklist_blacklistedtoken";

/// The columns of Django's `auth_user` doorman copies; a custom user table must have them too.
pub const USER_COLUMNS: &[&str] = &[
    "id",
    "username",
    "password",
    "is_active",
    "is_superuser",
    "is_staff",
    "email",
    "first_name",
    "last_name",
    "last_login",
    "date_joined",
];

/// Why a Django database can't be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

fn failed(context: impl std::fmt::Display) -> impl FnOnce(sqlx::Error) -> SourceError {
    move |e| SourceError(format!("{context}: {}", describe(&e)))
}

/// A database error's message, without sqlx's wrapping.
fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    }
}

/// The user table's name, checked to be a plain SQL identifier (letters, digits, `_`, not
/// starting with a digit, at most 63 bytes: PostgreSQL's limit) before it goes into SQL; it
/// is quoted there too, so it names exactly that table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserTable(String);

impl UserTable {
    pub fn parse(name: &str) -> Result<UserTable, String> {
        let mut chars = name.chars();
        let starts_well = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !starts_well || name.len() > 63 || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!(
                "{name:?} is not a table name doorman takes: letters, digits and _, not starting \
                 with a digit, at most 63 characters"
            ));
        }
        Ok(UserTable(name.to_owned()))
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl Default for UserTable {
    fn default() -> Self {
        UserTable("auth_user".to_owned())
    }
}

/// A user row of the Django database: the user as it will be written.
pub use crate::store::import::ImportedUser as DjangoUser;

/// An outstanding token row of the Django database, with its blacklisting (never the token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DjangoToken {
    /// The row's id in Django, for the report.
    pub row: i64,
    pub jti: String,
    pub user_id: Option<i64>,
    pub created_at: Option<i64>,
    pub expires_at: i64,
    pub blacklisted_at: Option<i64>,
}

/// A row that could not be taken, and why (never its password hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// "user 7 (\"bob\")" or "refresh token row 12", as the report says it.
    pub what: String,
    /// The user's id, when the row is a user's and its id could be read.
    pub user_id: Option<i64>,
    pub reason: String,
}

/// What one read of the Django database found.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub users: Vec<Result<DjangoUser, Unreadable>>,
    /// `None` when simplejwt's blacklist app is not installed (no token tables).
    pub tokens: Option<Vec<Result<DjangoToken, Unreadable>>>,
}

/// An open Django database.
pub enum DjangoDatabase {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl std::fmt::Debug for DjangoDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DjangoDatabase::Sqlite(_) => "DjangoDatabase::Sqlite",
            DjangoDatabase::Postgres(_) => "DjangoDatabase::Postgres",
        })
    }
}

impl DjangoDatabase {
    /// Opens the database `url` names, read-only: `postgres://` or `postgresql://`;
    /// `sqlite://path`, `sqlite:path` or a plain path. Returns it with how the report names
    /// it (never a password).
    pub async fn open(url: &str) -> Result<(DjangoDatabase, String), SourceError> {
        match url.split_once("://").map(|(scheme, _)| scheme) {
            Some("postgres" | "postgresql") => {
                let options = PgConnectOptions::from_str(url)
                    .map_err(|e| SourceError(format!("not a PostgreSQL URL: {e}")))?;
                DjangoDatabase::open_postgres(options).await
            }
            Some("sqlite") | None => {
                let options = if url.starts_with("sqlite:") {
                    SqliteConnectOptions::from_str(url)
                        .map_err(|e| SourceError(format!("not a SQLite URL: {e}")))?
                } else {
                    SqliteConnectOptions::new().filename(url)
                };
                // Never created, never written: a wrong path is an error, not a new file.
                let options = options.read_only(true).create_if_missing(false);
                let path = options.get_filename().to_owned();
                let name = format!("SQLite database {}", path.display());
                if !Path::new(&path).is_file() {
                    return Err(SourceError(format!(
                        "no Django database at {}: no such file",
                        path.display()
                    )));
                }
                let conn = SqliteConnection::connect_with(&options)
                    .await
                    .map_err(failed(format!("could not open the {name}")))?;
                Ok((DjangoDatabase::Sqlite(conn), name))
            }
            Some(scheme) => Err(SourceError(format!(
                "unsupported database URL scheme {scheme:?}: doorman reads Django databases on \
                 SQLite (a path or sqlite://) and PostgreSQL (postgres://)"
            ))),
        }
    }

    /// Opens a PostgreSQL database on a session whose every transaction is read-only.
    async fn open_postgres(
        options: PgConnectOptions,
    ) -> Result<(DjangoDatabase, String), SourceError> {
        let options = options
            .application_name("doorman import")
            .options([("default_transaction_read_only", "on")]);
        let name = format!(
            "PostgreSQL database {} on {}:{}",
            options.get_database().unwrap_or("(default)"),
            options.get_host(),
            options.get_port()
        );
        let conn = PgConnection::connect_with(&options)
            .await
            .map_err(failed(format!("could not connect to the {name}")))?;
        Ok((DjangoDatabase::Postgres(conn), name))
    }

    /// Reads the users of `table` and simplejwt's tokens in one snapshot.
    pub async fn read(&mut self, table: &UserTable) -> Result<Snapshot, SourceError> {
        match self {
            DjangoDatabase::Sqlite(conn) => read_sqlite(conn, table).await,
            DjangoDatabase::Postgres(conn) => read_postgres(conn, table).await,
        }
    }

    pub async fn close(self) {
        let _ = match self {
            DjangoDatabase::Sqlite(conn) => conn.close().await,
            DjangoDatabase::Postgres(conn) => conn.close().await,
        };
    }
}

/// Checks that the user table has every column doorman copies; `columns` are the table's
/// (empty when there is no such table).
fn check_user_columns(table: &UserTable, columns: &[String]) -> Result<(), SourceError> {
    if columns.is_empty() {
        return Err(SourceError(format!(
            "not a Django database: it has no table {} (Django's users are in auth_user; a \
             custom user model's table is named with --user-table)",
            table.name()
        )));
    }
    let missing: Vec<&str> = USER_COLUMNS
        .iter()
        .copied()
        .filter(|c| !columns.iter().any(|have| have.eq_ignore_ascii_case(c)))
        .collect();
    if !missing.is_empty() {
        return Err(SourceError(format!(
            "{} is not a Django user table: it has no column {}",
            table.name(),
            missing.join(", ")
        )));
    }
    Ok(())
}

/// Whether simplejwt's token tables are there: both, or neither (the blacklist app is not
/// installed); one without the other is no simplejwt schema.
fn check_token_tables(outstanding: bool, blacklisted: bool) -> Result<bool, SourceError> {
    match (outstanding, blacklisted) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        _ => Err(SourceError(format!(
            "the Django database has only one of simplejwt's tables {OUTSTANDING_TABLE} and \
             {BLACKLISTED_TABLE}; run Django's migrations for rest_framework_simplejwt.token_blacklist"
        ))),
    }
}

#[derive(FromRow)]
struct SqliteUserRow {
    id: Option<i64>,
    id_text: Option<String>,
    username: String,
    password: String,
    is_active: i64,
    is_superuser: i64,
    is_staff: i64,
    email: String,
    first_name: String,
    last_name: String,
    last_login: Option<String>,
    date_joined: Option<String>,
}

#[derive(FromRow)]
struct SqliteTokenRow {
    id: i64,
    jti: Option<String>,
    user_id: Option<i64>,
    created_at: Option<String>,
    expires_at: Option<String>,
    blacklisted: bool,
    blacklisted_at: Option<String>,
}

async fn read_sqlite(
    conn: &mut SqliteConnection,
    table: &UserTable,
) -> Result<Snapshot, SourceError> {
    let mut tx = conn
        .begin()
        .await
        .map_err(failed("could not read the Django database"))?;
    let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
        .bind(table.name())
        .fetch_all(&mut *tx)
        .await
        .map_err(failed("could not read the Django database"))?;
    check_user_columns(table, &columns)?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ($1, $2)",
    )
    .bind(OUTSTANDING_TABLE)
    .bind(BLACKLISTED_TABLE)
    .fetch_all(&mut *tx)
    .await
    .map_err(failed("could not read the Django database"))?;
    let has_tokens = check_token_tables(
        tables.iter().any(|t| t == OUTSTANDING_TABLE),
        tables.iter().any(|t| t == BLACKLISTED_TABLE),
    )?;

    // Values are taken as Django writes them (text times, 0/1 flags), cast so that a value of
    // another type makes the row unreadable rather than the read fail.
    let sql = format!(
        "SELECT CASE WHEN typeof(id) = 'integer' THEN id END AS id, CAST(id AS TEXT) AS id_text,
                COALESCE(CAST(username AS TEXT), '') AS username,
                COALESCE(CAST(password AS TEXT), '') AS password,
                COALESCE(CAST(is_active AS INTEGER), 0) AS is_active,
                COALESCE(CAST(is_superuser AS INTEGER), 0) AS is_superuser,
                COALESCE(CAST(is_staff AS INTEGER), 0) AS is_staff,
                COALESCE(CAST(email AS TEXT), '') AS email,
                COALESCE(CAST(first_name AS TEXT), '') AS first_name,
                COALESCE(CAST(last_name AS TEXT), '') AS last_name,
                CAST(last_login AS TEXT) AS last_login, CAST(date_joined AS TEXT) AS date_joined
         FROM {} ORDER BY id",
        table.quoted()
    );
    let rows: Vec<SqliteUserRow> = sqlx::query_as(AssertSqlSafe(sql))
        .fetch_all(&mut *tx)
        .await
        .map_err(failed(format!("could not read {}", table.name())))?;
    let users = rows.into_iter().map(sqlite_user).collect();

    let tokens = if has_tokens {
        let rows: Vec<SqliteTokenRow> = sqlx::query_as(
            "SELECT o.id AS id, CAST(o.jti AS TEXT) AS jti,
                    CASE WHEN typeof(o.user_id) = 'integer' THEN o.user_id END AS user_id,
                    CAST(o.created_at AS TEXT) AS created_at,
                    CAST(o.expires_at AS TEXT) AS expires_at,
                    b.id IS NOT NULL AS blacklisted,
                    CAST(b.blacklisted_at AS TEXT) AS blacklisted_at
             FROM token_blacklist_outstandingtoken o
             LEFT JOIN token_blacklist_blacklistedtoken b ON b.token_id = o.id
             ORDER BY o.id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(failed(format!("could not read {OUTSTANDING_TABLE}")))?;
        Some(rows.into_iter().map(sqlite_token).collect())
    } else {
        None
    };
    // Read-only: nothing to commit.
    let _ = tx.rollback().await;
    Ok(Snapshot { users, tokens })
}

fn sqlite_user(row: SqliteUserRow) -> Result<DjangoUser, Unreadable> {
    let what = |id: &str| format!("user {id} ({:?})", row.username);
    let Some(id) = row.id else {
        let id = row.id_text.as_deref().unwrap_or("NULL");
        return Err(Unreadable {
            what: what(id),
            user_id: None,
            reason: "its id is not an integer".into(),
        });
    };
    let time = |column: &str, text: &Option<String>| -> Result<Option<i64>, Unreadable> {
        text.as_deref()
            .map(|t| {
                parse_datetime(t).map_err(|reason| Unreadable {
                    what: what(&id.to_string()),
                    user_id: Some(id),
                    reason: format!("{column} {t:?}: {reason}"),
                })
            })
            .transpose()
    };
    let last_login = time("last_login", &row.last_login)?;
    let Some(date_joined) = time("date_joined", &row.date_joined)? else {
        return Err(Unreadable {
            what: what(&id.to_string()),
            user_id: Some(id),
            reason: "date_joined is NULL".into(),
        });
    };
    Ok(DjangoUser {
        id,
        username: row.username,
        password_hash: row.password,
        is_active: row.is_active != 0,
        is_superuser: row.is_superuser != 0,
        is_staff: row.is_staff != 0,
        email: row.email,
        first_name: row.first_name,
        last_name: row.last_name,
        last_login,
        date_joined,
    })
}

fn sqlite_token(row: SqliteTokenRow) -> Result<DjangoToken, Unreadable> {
    let what = format!("refresh token row {}", row.id);
    let unreadable = |reason: String| Unreadable {
        what: what.clone(),
        user_id: None,
        reason,
    };
    let time = |column: &str, text: &Option<String>| -> Result<Option<i64>, Unreadable> {
        text.as_deref()
            .map(|t| parse_datetime(t).map_err(|r| unreadable(format!("{column} {t:?}: {r}"))))
            .transpose()
    };
    let jti = row
        .jti
        .filter(|j| !j.is_empty())
        .ok_or_else(|| unreadable("it has no jti".into()))?;
    let created_at = time("created_at", &row.created_at)?;
    let expires_at = time("expires_at", &row.expires_at)?
        .ok_or_else(|| unreadable("expires_at is NULL".into()))?;
    let blacklisted_at = if row.blacklisted {
        Some(
            time("blacklisted_at", &row.blacklisted_at)?
                .ok_or_else(|| unreadable("blacklisted_at is NULL".into()))?,
        )
    } else {
        None
    };
    Ok(DjangoToken {
        row: row.id,
        jti,
        user_id: row.user_id,
        created_at,
        expires_at,
        blacklisted_at,
    })
}

#[derive(FromRow)]
struct PgUserRow {
    id: i64,
    username: String,
    password: String,
    is_active: bool,
    is_superuser: bool,
    is_staff: bool,
    email: String,
    first_name: String,
    last_name: String,
    last_login: Option<i64>,
    date_joined: Option<i64>,
}

#[derive(FromRow)]
struct PgTokenRow {
    id: i64,
    jti: Option<String>,
    user_id: Option<i64>,
    created_at: Option<i64>,
    expires_at: Option<i64>,
    blacklisted: bool,
    blacklisted_at: Option<i64>,
}

/// Unix seconds of a `timestamp with time zone` column (or, when Django ran with
/// `USE_TZ = False`, `without`, whose value is then taken as UTC), whole seconds down.
macro_rules! epoch {
    ($column:literal) => {
        concat!("floor(EXTRACT(EPOCH FROM ", $column, "))::BIGINT")
    };
}

async fn read_postgres(
    conn: &mut PgConnection,
    table: &UserTable,
) -> Result<Snapshot, SourceError> {
    // One snapshot for the three tables: a token blacklisted while this runs is seen with its
    // blacklisting or not at all, never half.
    let mut tx = conn
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(failed("could not read the Django database"))?;
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::TEXT, format_type(atttypid, atttypmod)
         FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
    )
    .bind(table.quoted())
    .fetch_all(&mut *tx)
    .await
    .map_err(failed("could not read the Django database"))?;
    let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
    check_user_columns(table, &names)?;
    let types: HashMap<&str, &str> = columns
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    if let Some(id_type) = types.get("id")
        && !matches!(*id_type, "smallint" | "integer" | "bigint")
    {
        return Err(SourceError(format!(
            "{}.id is {id_type}: doorman keeps Django's user ids, and they must be integers",
            table.name()
        )));
    }
    let present: Vec<Option<String>> =
        sqlx::query_scalar("SELECT to_regclass($1)::TEXT UNION ALL SELECT to_regclass($2)::TEXT")
            .bind(OUTSTANDING_TABLE)
            .bind(BLACKLISTED_TABLE)
            .fetch_all(&mut *tx)
            .await
            .map_err(failed("could not read the Django database"))?;
    let has_tokens = check_token_tables(
        present.first().is_some_and(Option::is_some),
        present.get(1).is_some_and(Option::is_some),
    )?;

    let sql = format!(
        concat!(
            "SELECT id::BIGINT AS id, COALESCE(username::TEXT, '') AS username,
                    COALESCE(password::TEXT, '') AS password,
                    COALESCE(is_active, FALSE) AS is_active,
                    COALESCE(is_superuser, FALSE) AS is_superuser,
                    COALESCE(is_staff, FALSE) AS is_staff,
                    COALESCE(email::TEXT, '') AS email,
                    COALESCE(first_name::TEXT, '') AS first_name,
                    COALESCE(last_name::TEXT, '') AS last_name, ",
            epoch!("last_login"),
            " AS last_login, ",
            epoch!("date_joined"),
            " AS date_joined FROM {} ORDER BY id"
        ),
        table.quoted()
    );
    let rows: Vec<PgUserRow> = sqlx::query_as(AssertSqlSafe(sql))
        .fetch_all(&mut *tx)
        .await
        .map_err(failed(format!("could not read {}", table.name())))?;
    let users = rows
        .into_iter()
        .map(|row| {
            let Some(date_joined) = row.date_joined else {
                return Err(Unreadable {
                    what: format!("user {} ({:?})", row.id, row.username),
                    user_id: Some(row.id),
                    reason: "date_joined is NULL".into(),
                });
            };
            Ok(DjangoUser {
                id: row.id,
                username: row.username,
                password_hash: row.password,
                is_active: row.is_active,
                is_superuser: row.is_superuser,
                is_staff: row.is_staff,
                email: row.email,
                first_name: row.first_name,
                last_name: row.last_name,
                last_login: row.last_login,
                date_joined,
            })
        })
        .collect();

    let tokens = if has_tokens {
        let rows: Vec<PgTokenRow> = sqlx::query_as(concat!(
            "SELECT o.id::BIGINT AS id, o.jti::TEXT AS jti, o.user_id::BIGINT AS user_id, ",
            epoch!("o.created_at"),
            " AS created_at, ",
            epoch!("o.expires_at"),
            " AS expires_at, b.id IS NOT NULL AS blacklisted, ",
            epoch!("b.blacklisted_at"),
            " AS blacklisted_at
             FROM token_blacklist_outstandingtoken o
             LEFT JOIN token_blacklist_blacklistedtoken b ON b.token_id = o.id
             ORDER BY o.id"
        ))
        .fetch_all(&mut *tx)
        .await
        .map_err(failed(format!("could not read {OUTSTANDING_TABLE}")))?;
        Some(
            rows.into_iter()
                .map(|row| {
                    let unreadable = |reason: &str| Unreadable {
                        what: format!("refresh token row {}", row.id),
                        user_id: None,
                        reason: reason.to_owned(),
                    };
                    let jti = row
                        .jti
                        .clone()
                        .filter(|j| !j.is_empty())
                        .ok_or_else(|| unreadable("it has no jti"))?;
                    let expires_at = row
                        .expires_at
                        .ok_or_else(|| unreadable("expires_at is NULL"))?;
                    let blacklisted_at = match (row.blacklisted, row.blacklisted_at) {
                        (false, _) => None,
                        (true, Some(at)) => Some(at),
                        (true, None) => return Err(unreadable("blacklisted_at is NULL")),
                    };
                    Ok(DjangoToken {
                        row: row.id,
                        jti,
                        user_id: row.user_id,
                        created_at: row.created_at,
                        expires_at,
                        blacklisted_at,
                    })
                })
                .collect(),
        )
    } else {
        None
    };
    let _ = tx.rollback().await;
    Ok(Snapshot { users, tokens })
}

/// Unix seconds (whole, rounded down) of a datetime as Django's SQLite backend stores it:
/// `YYYY-MM-DD HH:MM[:SS[.ffffff]]`, `T` allowed for the space, optionally followed by `Z` or
/// an offset `±HH[[:]MM]` (Django's own `parse_datetime` rules). A time without an offset is
/// UTC: with `USE_TZ = True` (Django's default) that is how Django writes every datetime,
/// and simplejwt writes its token times in UTC either way.
pub fn parse_datetime(text: &str) -> Result<i64, String> {
    let bad = || "not a date and time Django writes".to_owned();
    let text = text.trim();
    let (date, rest) = text
        .split_once([' ', 'T'])
        .ok_or_else(|| "no time of day".to_owned())?;
    let mut date_parts = date.split('-');
    let (Some(y), Some(mo), Some(d), None) = (
        date_parts.next(),
        date_parts.next(),
        date_parts.next(),
        date_parts.next(),
    ) else {
        return Err(bad());
    };
    let year: i32 = digits(y, 4, 4).ok_or_else(bad)?;
    let month: u8 = digits(mo, 1, 2).ok_or_else(bad)?;
    let day: u8 = digits(d, 1, 2).ok_or_else(bad)?;

    // The offset, if any, starts at the first `Z`, `+` or `-` after the time of day.
    let rest = rest.trim_start();
    let split = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(split);
    let clock = clock.trim_end();
    let mut clock_parts = clock.splitn(3, ':');
    let hour: u8 = clock_parts
        .next()
        .and_then(|h| digits(h, 1, 2))
        .ok_or_else(bad)?;
    let minute: u8 = clock_parts
        .next()
        .and_then(|m| digits(m, 1, 2))
        .ok_or_else(bad)?;
    let second: u8 = match clock_parts.next() {
        None => 0,
        Some(s) => {
            let (whole, fraction) = s.split_once(['.', ',']).unwrap_or((s, ""));
            // Up to 12 digits, as Django's parser takes (only the first 6 count; whole
            // seconds are kept here).
            if !fraction.is_empty() && digits::<u64>(fraction, 1, 12).is_none() {
                return Err(bad());
            }
            if s.ends_with(['.', ',']) {
                return Err(bad());
            }
            digits(whole, 1, 2).ok_or_else(bad)?
        }
    };
    let offset_seconds = match zone {
        "" | "Z" | "z" => 0,
        _ => {
            let sign: i32 = if zone.starts_with('-') { -1 } else { 1 };
            let body = &zone[1..];
            let (h, m) = match body.split_once(':') {
                Some((h, m)) => (h, m),
                None if body.len() == 4 => body.split_at(2),
                None => (body, "00"),
            };
            let h: i32 = digits(h, 2, 2).ok_or_else(bad)?;
            let m: i32 = digits(m, 2, 2).ok_or_else(bad)?;
            if h > 23 || m > 59 {
                return Err(bad());
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let month = time::Month::try_from(month).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(year, month, day).map_err(|e| e.to_string())?;
    let clock = time::Time::from_hms(hour, minute, second).map_err(|e| e.to_string())?;
    let local = time::PrimitiveDateTime::new(date, clock)
        .assume_utc()
        .unix_timestamp();
    Ok(local - i64::from(offset_seconds))
}

/// `text` as a number when it is `min..=max` ASCII digits.
fn digits<T: FromStr>(text: &str, min: usize, max: usize) -> Option<T> {
    if text.len() < min || text.len() > max || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::tests::{Backend, on_both_backends, run};

    #[test]
    fn django_sqlite_datetimes() {
        // 2024-03-01 12:34:56 UTC
        let t = 1_709_296_496;
        for text in [
            "2024-03-01 12:34:56",
            "2024-03-01 12:34:56.789012",
            "2024-03-01T12:34:56.7",
            "2024-03-01 12:34:56Z",
            "2024-03-01 12:34:56.123+00:00",
            "2024-03-01 14:34:56+02:00",
            "2024-03-01 14:34:56+0200",
            "2024-03-01 14:34:56+02",
            "2024-03-01 07:04:56.5-05:30",
            "2024-3-1 12:34:56",
            "2024-03-01 12:34:56,000001",
            " 2024-03-01 12:34:56 ",
        ] {
            assert_eq!(parse_datetime(text), Ok(t), "{text}");
        }
        assert_eq!(parse_datetime("2024-03-01 12:34"), Ok(t - 56));
        // A day's change across the offset.
        assert_eq!(
            parse_datetime("2024-03-02 01:00:00+03:00"),
            parse_datetime("2024-03-01 22:00:00")
        );
        assert_eq!(parse_datetime("1970-01-01 00:00:00"), Ok(0));
    }

    #[test]
    fn what_is_not_a_django_datetime_is_refused() {
        for text in [
            "",
            "2024-03-01",
            "yesterday",
            "2024-13-01 00:00:00",
            "2024-02-30 00:00:00",
            "2024-03-01 24:00:00",
            "2024-03-01 12:60:00",
            "2024-03-01 12:00:61",
            "2024-03-01 12:00:00.",
            "2024-03-01 12:00:00.abc",
            "2024-03-01 12:00:00+25:00",
            "2024-03-01 12:00:00+2",
            "2024-03-01 12:00:00 PST",
            "24-03-01 12:00:00",
            "2024-03-01-05 12:00:00",
            "1709296496",
            "2024-03-01 12",
        ] {
            assert!(parse_datetime(text).is_err(), "{text}");
        }
    }

    #[test]
    fn user_tables_are_plain_identifiers() {
        for good in ["auth_user", "accounts_user", "_x", "Users2"] {
            assert_eq!(UserTable::parse(good).unwrap().name(), good);
        }
        for bad in [
            "",
            "1users",
            "auth_user; DROP TABLE auth_user",
            "a\"b",
            "public.auth_user",
            "naïve",
            &"x".repeat(64),
        ] {
            assert!(UserTable::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(UserTable::default().quoted(), "\"auth_user\"");
    }

    #[test]
    fn a_table_missing_columns_is_named() {
        let table = UserTable::default();
        let err = check_user_columns(&table, &[]).unwrap_err();
        assert!(err.0.contains("no table auth_user"), "{err}");
        let some: Vec<String> = ["id", "username", "password"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let err = check_user_columns(&table, &some).unwrap_err();
        assert!(
            err.0.ends_with(
                "no column is_active, is_superuser, is_staff, email, first_name, last_name, \
                 last_login, date_joined"
            ),
            "{err}"
        );
        let all: Vec<String> = USER_COLUMNS.iter().map(|s| s.to_uppercase()).collect();
        assert!(check_user_columns(&table, &all).is_ok());
        assert!(check_token_tables(true, true).unwrap());
        assert!(!check_token_tables(false, false).unwrap());
        assert!(check_token_tables(true, false).is_err());
    }

    on_both_backends!(the_django_database_is_never_written);
    /// Whatever SQL ran on the connection an import reads through, the database refuses to be
    /// changed: SQLite is opened read-only, PostgreSQL's session makes every transaction
    /// read-only. (The store under test only provides a database to point at.)
    async fn the_django_database_is_never_written(store: Store) {
        let mut source = match &store {
            Store::Sqlite(_) => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("django.sqlite3");
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let mut conn = SqliteConnection::connect(&url).await.unwrap();
                sqlx::query("CREATE TABLE t (x INTEGER)")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
                // Even a URL asking to create the file opens it read-only.
                let (source, name) = DjangoDatabase::open(&url).await.unwrap();
                assert_eq!(name, format!("SQLite database {}", path.display()));
                let DjangoDatabase::Sqlite(mut conn) = source else {
                    panic!("not SQLite")
                };
                let refused = sqlx::query("INSERT INTO t VALUES (1)")
                    .execute(&mut conn)
                    .await
                    .unwrap_err();
                assert!(refused.to_string().contains("readonly"), "{refused}");
                return;
            }
            Store::Postgres(s) => {
                let options = (*s.pool().connect_options()).clone();
                DjangoDatabase::open_postgres(options).await.unwrap().0
            }
        };
        let DjangoDatabase::Postgres(conn) = &mut source else {
            panic!("not PostgreSQL")
        };
        let refused = sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut *conn)
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("read-only transaction"),
            "{refused}"
        );
        // Not a Django database: said so, and nothing made.
        let error = source.read(&UserTable::default()).await.unwrap_err();
        assert!(error.0.starts_with("not a Django database"), "{error}");
        source.close().await;
    }
}
