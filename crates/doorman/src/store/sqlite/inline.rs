//! The point lookups on the request path (is this refresh token blacklisted?), made on the
//! calling thread through SQLite's C API (rusqlite) instead of through sqlx's driver.
//!
//! sqlx runs each SQLite connection on a thread of its own and a query is a message to that
//! thread and an answer back: about 70 us a lookup on this machine's two cores, where the
//! lookup itself, a cached prepared statement on a page already in memory, costs SQLite 2 to
//! 5 us (`cargo bench -p doorman --bench sqlite_lookup` measures the three ways side by
//! side). A refresh or the verify of a refresh token makes one such lookup, so it was most of
//! their cost.
//!
//! Exact by construction: each lookup is a statement of its own, which in WAL mode reads the
//! newest committed state, so a blacklisting committed by this server, the CLI or any other
//! process is seen by the next lookup. There is nothing to invalidate.
//!
//! Never worse than sqlx: a lookup that can't be made here at once (every connection busy on
//! another thread, `SQLITE_BUSY`, an I/O error, a database that can't be opened) answers
//! `None` and the caller makes it through sqlx as before, with its waits, its timeouts and its
//! errors. These connections never wait for a lock (`busy_timeout` 0), so a thread answering
//! requests is never held by one, and they can't write (`query_only`).
//!
//! After a read-only refusal they are all closed ([`InlineReads::close_all`], called by
//! `ReadOnlySeen`) and opened again by the next lookups: a connection that looked up while the
//! storage was read-only holds SQLite's read-only `-shm` mapping, which every connection of the
//! process to the file shares, and with it no connection could write again until a restart.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension as _};

/// The blacklist check, as the store's sqlx query makes it.
const IS_BLACKLISTED: &str = "SELECT b.id FROM blacklisted_tokens b
                              JOIN outstanding_tokens o ON o.id = b.token_id
                              WHERE o.jti = ?1";

#[derive(Debug)]
pub(super) struct InlineReads {
    path: PathBuf,
    /// One per thread that may look up at once, and one spare; a lookup takes the first free.
    /// `None`: closed (see [`InlineReads::close_all`]), opened again by the next lookup on it.
    connections: Vec<Mutex<Option<Connection>>>,
    /// Where the next lookup starts looking for a free connection.
    next: AtomicUsize,
}

impl InlineReads {
    /// Read connections to the database file at `path`; `None` for an in-memory database
    /// (another connection would be another database) or when the file can't be opened (the
    /// store then reads through sqlx only).
    pub(super) fn open(path: &Path, in_memory: bool) -> Option<InlineReads> {
        if in_memory || path.as_os_str().is_empty() || path == Path::new(":memory:") {
            return None;
        }
        let count = std::thread::available_parallelism()
            .map_or(2, usize::from)
            .clamp(1, 8)
            + 1;
        let connections = (0..count)
            .map(|_| open_one(path).map(|conn| Mutex::new(Some(conn))))
            .collect::<Result<Vec<_>, _>>();
        match connections {
            Ok(connections) => Some(InlineReads {
                path: path.to_owned(),
                connections,
                next: AtomicUsize::new(0),
            }),
            Err(e) => {
                tracing::debug!(error = %e, "SQLite lookups go through sqlx only");
                None
            }
        }
    }

    /// Whether the token with this jti is blacklisted; `None` when it could not be looked up
    /// here (see the module's documentation).
    pub(super) fn is_blacklisted(&self, jti: &str) -> Option<bool> {
        self.with(|conn| {
            conn.prepare_cached(IS_BLACKLISTED)?
                .query_row([jti], |row| row.get::<_, i64>(0))
                .optional()
                .map(|found| found.is_some())
        })
    }

    /// Runs `lookup` on a free connection, if there is one and it succeeds.
    fn with<T>(&self, lookup: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Option<T> {
        let count = self.connections.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..count {
            let Some(slot) = self.connections.get((start + i) % count) else {
                continue;
            };
            // A poisoned lock only means a panic elsewhere mid-lookup; the connection holds
            // no transaction between statements.
            let mut conn = match slot.try_lock() {
                Ok(conn) => conn,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => continue,
            };
            if conn.is_none() {
                match open_one(&self.path) {
                    Ok(opened) => *conn = Some(opened),
                    Err(e) => {
                        tracing::debug!(error = %e, "an inline SQLite connection could not be opened; going through sqlx");
                        return None;
                    }
                }
            }
            let conn = conn.as_ref()?;
            return match lookup(conn) {
                Ok(value) => Some(value),
                Err(e) => {
                    tracing::debug!(error = %e, "an inline SQLite lookup failed; going through sqlx");
                    None
                }
            };
        }
        None
    }
}

impl InlineReads {
    /// Closes every connection; each is opened again by the next lookup made on it. A lookup
    /// in progress is waited for (microseconds).
    pub(super) fn close_all(&self) {
        for slot in &self.connections {
            let mut conn = slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *conn = None;
        }
    }
}

fn open_one(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::ZERO)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn database(dir: &Path) -> (std::path::PathBuf, Connection) {
        let path = dir.join("inline.sqlite3");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE outstanding_tokens (id INTEGER PRIMARY KEY, jti TEXT NOT NULL UNIQUE);
             CREATE TABLE blacklisted_tokens (id INTEGER PRIMARY KEY, token_id INTEGER NOT NULL UNIQUE);
             INSERT INTO outstanding_tokens (id, jti) VALUES (1, 'live'), (2, 'spent');
             INSERT INTO blacklisted_tokens (token_id) VALUES (2);",
        )
        .unwrap();
        (path, conn)
    }

    /// A blacklisting committed by another connection (the store's writer, the CLI, another
    /// process) is seen by the very next lookup: nothing is cached.
    #[test]
    fn lookups_see_other_connections_commits_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = database(dir.path());
        let reads = InlineReads::open(&path, false).unwrap();
        assert_eq!(reads.is_blacklisted("spent"), Some(true));
        assert_eq!(reads.is_blacklisted("live"), Some(false));
        assert_eq!(reads.is_blacklisted("unknown"), Some(false));
        writer
            .execute("INSERT INTO blacklisted_tokens (token_id) VALUES (1)", [])
            .unwrap();
        assert_eq!(reads.is_blacklisted("live"), Some(true));
        writer
            .execute("DELETE FROM blacklisted_tokens", [])
            .unwrap();
        assert_eq!(reads.is_blacklisted("spent"), Some(false));
    }

    /// A write in progress doesn't show, and doesn't hold a lookup up (WAL).
    #[test]
    fn uncommitted_writes_are_not_seen_and_do_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = database(dir.path());
        let reads = InlineReads::open(&path, false).unwrap();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        writer
            .execute("INSERT INTO blacklisted_tokens (token_id) VALUES (1)", [])
            .unwrap();
        let started = std::time::Instant::now();
        assert_eq!(reads.is_blacklisted("live"), Some(false));
        assert!(started.elapsed() < Duration::from_millis(100));
        writer.execute_batch("COMMIT").unwrap();
        assert_eq!(reads.is_blacklisted("live"), Some(true));
    }

    /// A lookup that fails (here: no tables yet, before the migrations) answers `None`, and
    /// the caller goes through sqlx, whose error is classified as every other.
    #[test]
    fn a_failed_lookup_answers_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.sqlite3");
        drop(Connection::open(&path).unwrap());
        let reads = InlineReads::open(&path, false).unwrap();
        assert_eq!(reads.is_blacklisted("any"), None);
    }

    /// Every connection busy (each taken by a thread mid-lookup): `None`, not a wait.
    #[test]
    fn no_free_connection_answers_none() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _writer) = database(dir.path());
        let reads = InlineReads::open(&path, false).unwrap();
        let held: Vec<_> = reads
            .connections
            .iter()
            .map(|c| c.lock().unwrap())
            .collect();
        assert_eq!(reads.is_blacklisted("spent"), None);
        drop(held);
        assert_eq!(reads.is_blacklisted("spent"), Some(true));
    }

    /// Closed connections are opened again by the next lookups, which see the same data.
    #[test]
    fn closed_connections_reopen_on_the_next_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _writer) = database(dir.path());
        let reads = InlineReads::open(&path, false).unwrap();
        assert_eq!(reads.is_blacklisted("spent"), Some(true));
        reads.close_all();
        assert!(
            reads
                .connections
                .iter()
                .all(|c| c.lock().unwrap().is_none())
        );
        for _ in 0..reads.connections.len() {
            assert_eq!(reads.is_blacklisted("spent"), Some(true));
            assert_eq!(reads.is_blacklisted("live"), Some(false));
        }
        assert!(
            reads
                .connections
                .iter()
                .all(|c| c.lock().unwrap().is_some())
        );
    }

    #[test]
    fn in_memory_and_missing_databases_have_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(InlineReads::open(Path::new(":memory:"), false).is_none());
        assert!(InlineReads::open(&dir.path().join("x.sqlite3"), true).is_none());
        assert!(InlineReads::open(&dir.path().join("no/such/dir/x.sqlite3"), false).is_none());
    }
}
