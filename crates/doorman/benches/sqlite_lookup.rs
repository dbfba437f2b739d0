//! One point lookup on SQLite, the blacklist check every refresh and verify of a refresh token
//! makes, through each way doorman could make it, on the same file:
//!
//! - `sqlx`: sqlx's SQLite driver from a pool, as the store does (each connection runs on a
//!   worker thread of its own; a query is a message to it and an answer back);
//! - `rusqlite/blocking pool`: rusqlite with a cached prepared statement on tokio's blocking
//!   pool;
//! - `rusqlite/inline`: rusqlite with a cached prepared statement, called on the async thread
//!   itself (SQLite's own C API cost, plus rusqlite's thin wrapper).
//!
//! The file is in WAL mode with doorman's token tables, 100,000 outstanding tokens and 10,000
//! of them blacklisted; the lookups alternate between a blacklisted and a live token.
//!
//!     cargo bench -p doorman --bench sqlite_lookup

#![allow(clippy::expect_used)] // a benchmark: a failed set-up should stop it loudly

use std::hint::black_box;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use criterion::{Criterion, criterion_group, criterion_main};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

const LOOKUP: &str =
    "SELECT b.id FROM blacklisted_tokens b JOIN outstanding_tokens o ON o.id = b.token_id
                      WHERE o.jti = $1";
const TOKENS: usize = 100_000;
const BLACKLISTED_EVERY: usize = 10;

fn jti(n: usize) -> String {
    format!("{n:032x}")
}

/// A database like doorman's: the token tables (as its first migration makes them) and rows.
fn prepare(path: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE outstanding_tokens (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             jti TEXT NOT NULL UNIQUE,
             user_id INTEGER,
             created_at INTEGER,
             expires_at INTEGER NOT NULL
         );
         CREATE TABLE blacklisted_tokens (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             token_id INTEGER NOT NULL UNIQUE REFERENCES outstanding_tokens (id) ON DELETE CASCADE,
             blacklisted_at INTEGER NOT NULL
         );",
    )
    .expect("schema");
    conn.execute_batch("BEGIN").expect("begin");
    for n in 0..TOKENS {
        conn.execute(
            "INSERT INTO outstanding_tokens (jti, user_id, created_at, expires_at) VALUES (?1, 1, 0, 4102444800)",
            [jti(n)],
        )
        .expect("insert");
        if n % BLACKLISTED_EVERY == 0 {
            conn.execute(
                "INSERT INTO blacklisted_tokens (token_id, blacklisted_at) VALUES (last_insert_rowid(), 0)",
                [],
            )
            .expect("blacklist");
        }
    }
    conn.execute_batch("COMMIT").expect("commit");
    conn
}

fn blacklisted(conn: &rusqlite::Connection, jti: &str) -> bool {
    let mut statement = conn.prepare_cached(LOOKUP).expect("prepare");
    let mut rows = statement.query([jti]).expect("query");
    rows.next().expect("step").is_some()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lookup.sqlite3");
    drop(prepare(&path));
    let (hit, miss) = (jti(0), jti(1));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let mut group = c.benchmark_group("blacklist lookup");

    let pool = runtime.block_on(async {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .expect("options")
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .expect("pool")
    });
    let mut flip = false;
    group.bench_function("sqlx", |b| {
        b.iter(|| {
            flip = !flip;
            let jti = if flip { &hit } else { &miss };
            let found: Option<i64> = runtime
                .block_on(
                    sqlx::query_scalar(LOOKUP)
                        .bind(jti.as_str())
                        .fetch_optional(&pool),
                )
                .expect("lookup");
            black_box(found)
        })
    });

    let connections: Arc<Vec<Mutex<rusqlite::Connection>>> = Arc::new(
        (0..4)
            .map(|_| Mutex::new(rusqlite::Connection::open(&path).expect("open")))
            .collect(),
    );
    group.bench_function("rusqlite/blocking pool", |b| {
        b.iter(|| {
            flip = !flip;
            let jti = if flip { hit.clone() } else { miss.clone() };
            let connections = connections.clone();
            let found = runtime.block_on(async move {
                tokio::task::spawn_blocking(move || {
                    let conn = connections[0].lock().expect("lock");
                    blacklisted(&conn, &jti)
                })
                .await
                .expect("task")
            });
            black_box(found)
        })
    });

    group.bench_function("rusqlite/inline", |b| {
        let conn = connections[1].lock().expect("lock");
        b.iter(|| {
            flip = !flip;
            let jti = if flip { &hit } else { &miss };
            // Through `block_on` as the others are, so that only the lookup differs.
            black_box(runtime.block_on(async { blacklisted(&conn, jti) }))
        })
    });
    group.finish();

    // The answers agree.
    let conn = connections[2].lock().expect("lock");
    assert!(blacklisted(&conn, &hit) && !blacklisted(&conn, &miss));
}

criterion_group!(benches, bench);
criterion_main!(benches);
