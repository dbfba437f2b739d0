//! What SQLite's read-only refusals leave behind: when the last one was seen, so connections
//! opened before it are replaced, and the closing of the idle ones. Shared by the store and its
//! group commit's writer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use sqlx::error::DatabaseError;
use sqlx::sqlite::{SqliteError, SqlitePool};

use super::inline::InlineReads;
use crate::store::StoreError;

/// When SQLite last refused a write because the database was read-only. A connection opened
/// while the file or its file system was read-only stays read-only for good (SQLite falls back
/// to opening the file, and the `-shm` all of a process's connections share, read-only), so
/// once storage is writable again the connections opened before that refusal are closed as
/// the pool hands them out, rather than failing writes until a restart. The calling thread's
/// lookup connections ([`InlineReads`]) are closed at each refusal.
#[derive(Debug)]
pub(crate) struct ReadOnlySeen {
    start: std::time::Instant,
    /// Nanoseconds after `start` of the last refusal; 0: never.
    last: AtomicU64,
    inline: OnceLock<Arc<InlineReads>>,
}

impl ReadOnlySeen {
    pub(super) fn new() -> ReadOnlySeen {
        ReadOnlySeen {
            start: std::time::Instant::now(),
            last: AtomicU64::new(0),
            inline: OnceLock::new(),
        }
    }

    /// The lookup connections to close at each refusal.
    pub(super) fn close_with_each_refusal(&self, inline: Arc<InlineReads>) {
        let _ = self.inline.set(inline);
    }

    /// Notes `error` if it is SQLite's read-only refusal; whether it was.
    pub(super) fn note(&self, error: &sqlx::Error) -> bool {
        let read_only = is_read_only(error);
        if read_only {
            let now = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.last.store(now.max(1), Ordering::Release);
            if let Some(inline) = self.inline.get() {
                inline.close_all();
            }
        }
        read_only
    }

    /// As [`ReadOnlySeen::note`], for an error already converted.
    pub(super) fn note_store(&self, error: &StoreError) -> bool {
        match error {
            StoreError::Unavailable(cause) | StoreError::Database(cause) => cause
                .downcast_ref::<sqlx::Error>()
                .is_some_and(|e| self.note(e)),
            StoreError::UsernameTaken | StoreError::Migration(_) => false,
        }
    }

    /// Whether a connection of this age was opened before the last refusal.
    pub(super) fn opened_before_last(&self, age: std::time::Duration) -> bool {
        let last = self.last.load(Ordering::Acquire);
        if last == 0 {
            return false;
        }
        let opened = self.start.elapsed().saturating_sub(age);
        u64::try_from(opened.as_nanos()).unwrap_or(u64::MAX) <= last
    }
}

/// Closes the pool's idle connections, after a read-only refusal. SQLite shares one `-shm`
/// mapping among the connections of a process to a file, opened read-only when the file
/// system was: a fresh connection can only write once every connection opened before is gone
/// (those in use are closed as they are handed out next, see [`ReadOnlySeen`]).
pub(super) async fn close_idle(pool: &SqlitePool) {
    while let Some(conn) = pool.try_acquire() {
        let _ = conn.close().await;
    }
}

/// SQLite's read-only refusal (SQLITE_READONLY and its extended codes).
fn is_read_only(error: &sqlx::Error) -> bool {
    const READONLY: i32 = 8;
    match error {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<SqliteError>()
            .and_then(|e| e.code())
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| code & 0xff == READONLY),
        _ => false,
    }
}
