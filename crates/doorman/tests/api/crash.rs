//! kill -9 under write load: the real `doorman serve` as a child process, clients logging in,
//! refreshing (rotation with blacklisting), blacklisting and logging out everywhere at full
//! speed, each keeping a ledger of the answers it received; the child is killed with SIGKILL
//! at a random moment, restarted on the same database, and the ledger is checked against it
//! over HTTP. An acknowledged write must survive the crash; a request in flight at the kill may
//! have happened or not, but must not be answered with a 500.
//!
//! The suite kills 3 times per backend; `DOORMAN_CRASH_KILLS=20` runs the long version:
//!
//!     DOORMAN_CRASH_KILLS=20 cargo test -p doorman --test api crash:: -- --nocapture

use std::time::Duration;

use reqwest::Client;

use crate::child::{Server, create_user, migrate};
use crate::helpers::{Backend, TestDatabase, backend};
use crate::ledger::{PASSWORD, Until, check, load, random_below};

const CLIENTS: usize = 4;

/// The child's settings: rotation with blacklisting after it.
const SETTINGS: &[(&str, &str)] = &[
    ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
    ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
    // The reuse grace takes a replay of the latest rotated-out token, for a few seconds, as
    // a retry after a lost answer (which is what a crash makes); off, so that every
    // rotated-out token must be refused and a lost rotation would show.
    ("DOORMAN_REFRESH_REUSE_GRACE", "0"),
];

/// `PRAGMA integrity_check` on the SQLite file, opened read-only with the server dead.
async fn integrity(database: &TestDatabase) -> String {
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(&database.url)
        .expect("the SQLite URL")
        .read_only(true);
    let mut conn = options
        .connect()
        .await
        .expect("open the SQLite file read-only");
    let answer: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .expect("PRAGMA integrity_check");
    answer
}

/// Kills from `DOORMAN_CRASH_KILLS`, 3 by default.
fn kills() -> usize {
    match std::env::var("DOORMAN_CRASH_KILLS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("DOORMAN_CRASH_KILLS={v:?} is not a count")),
        Err(_) => 3,
    }
}

dual_test! {
    multi_thread async fn acknowledged_writes_survive_kill_nine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let database = TestDatabase::create(dir.path()).await;
        migrate(dir.path(), &database, SETTINGS);
        let users: Vec<String> = (0..CLIENTS).map(|i| format!("crash{i}")).collect();
        for user in &users {
            create_user(dir.path(), &database, SETTINGS, &[user.as_str()], PASSWORD);
        }
        let client = Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let kills = kills();
        let (mut server, _) = Server::start(dir.path(), &database, SETTINGS, &client).await;
        let mut startups = Vec::new();
        let mut checked_total = 0;
        let mut acknowledged_total = 0;
        // Logins, rotations, blacklists and revoke-alls acknowledged.
        let mut kinds = [0; 4];
        // Writes in flight at a kill, or answered 503: (took effect, did not).
        let mut in_flight = (0, 0);
        let mut failures = Vec::new();
        for kill in 1..=kills {
            let ready = std::sync::Arc::new(tokio::sync::Barrier::new(users.len() + 1));
            let tasks: Vec<_> = users
                .iter()
                .map(|user| {
                    let (client, base) = (client.clone(), server.base.clone());
                    tokio::spawn(load(client, base, user.clone(), ready.clone(), Until::ServerGone))
                })
                .collect();
            tokio::time::timeout(Duration::from_secs(30), ready.wait())
                .await
                .expect("every client logged in within 30 s");
            tokio::time::sleep(Duration::from_millis(100 + random_below(701))).await;
            server.kill();
            let mut ledgers = Vec::new();
            for task in tasks {
                ledgers.push(task.await.expect("a client task"));
            }
            if backend() == Backend::Sqlite {
                let answer = integrity(&database).await;
                assert_eq!(answer, "ok", "integrity check after kill {kill}");
            }
            let (restarted, startup) = Server::start(dir.path(), &database, SETTINGS, &client).await;
            server = restarted;
            startups.push(startup);
            let mut checked = 0;
            for ledger in &ledgers {
                let found = check(&client, &server.base, ledger).await;
                checked += found.requests;
                in_flight.0 += found.took_effect;
                in_flight.1 += found.did_not;
                failures.extend(found.failures.into_iter().map(|f| format!("kill {kill}: {f}")));
            }
            checked_total += checked;
            let acknowledged: usize = ledgers.iter().map(|l| l.acknowledged()).sum();
            acknowledged_total += acknowledged;
            for ledger in &ledgers {
                kinds[0] += ledger.logins;
                kinds[1] += ledger.rotations;
                kinds[2] += ledger.blacklists;
                kinds[3] += ledger.revocations;
            }
            println!(
                "{:?} kill {kill}: {acknowledged} writes acknowledged ({} in flight), {checked} checks, start-up {startup:?}",
                backend(),
                ledgers.iter().filter(|l| l.in_flight.is_some()).count()
            );
        }
        let mut sorted = startups.clone();
        sorted.sort();
        if let (Some(min), Some(max)) = (sorted.first(), sorted.last()) {
            println!(
                "{:?}: {kills} kills, {acknowledged_total} writes acknowledged \
                 ({} logins, {} rotations, {} blacklists, {} revoke-alls), {checked_total} checks, \
                 writes in flight at a kill or answered 503: {} took effect, {} did not; \
                 start-up after a crash min {min:?} median {:?} max {max:?}",
                backend(),
                kinds[0],
                kinds[1],
                kinds[2],
                kinds[3],
                in_flight.0,
                in_flight.1,
                sorted[sorted.len() / 2]
            );
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        if kills > 0 {
            assert!(checked_total > 0, "no acknowledged answer to check");
        }
    }
}
