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

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::helpers::{Backend, TEST_SECRET, TestDatabase, backend, lines_until, stderr_lines};
use crate::ledger::{PASSWORD, Until, check, load, random_below};

const CLIENTS: usize = 4;

/// The `doorman` binary with the test's database and settings, nothing from the environment.
fn doorman(dir: &std::path::Path, database: &TestDatabase) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_doorman"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOORMAN_DATA_DIR", dir.join("data"))
        .env("DOORMAN_DATABASE_URL", &database.url)
        .env("DOORMAN_SIGNING_KEY", TEST_SECRET)
        .env("DOORMAN_ROTATE_REFRESH_TOKENS", "true")
        .env("DOORMAN_BLACKLIST_AFTER_ROTATION", "true")
        // The reuse grace takes a replay of the latest rotated-out token, for a few seconds, as
        // a retry after a lost answer (which is what a crash makes); off, so that every
        // rotated-out token must be refused and a lost rotation would show.
        .env("DOORMAN_REFRESH_REUSE_GRACE", "0")
        .env("DOORMAN_PASSWORD_HASH_WORKERS", "2");
    cmd
}

/// The running child and where it listens.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Spawns `doorman serve` on a port of the system's choosing and waits for its first 200
    /// on `/healthz`; the time from the spawn to that answer.
    async fn start(
        dir: &std::path::Path,
        database: &TestDatabase,
        client: &Client,
    ) -> (Server, Duration) {
        let spawned = Instant::now();
        let mut child = doorman(dir, database)
            .env("DOORMAN_LOG_FORMAT", "json")
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn doorman serve");
        let lines = stderr_lines(&mut child);
        let log = tokio::task::block_in_place(|| {
            lines_until(&lines, |line| {
                serde_json::from_str::<Value>(line).is_ok_and(|l| l["addr"].is_string())
            })
        });
        let listening: Value = log
            .last()
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or_default();
        let addr = listening["addr"].as_str().unwrap_or_default();
        let mut server = Server {
            child,
            base: format!("http://{addr}"),
        };
        loop {
            let ok = client
                .get(format!("{}/healthz", server.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if ok {
                return (server, spawned.elapsed());
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("doorman serve ended before answering /healthz: {status}");
            }
            assert!(
                spawned.elapsed() < Duration::from_secs(30),
                "doorman serve did not answer /healthz within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// SIGKILL, and the child reaped.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
        let out = doorman(dir.path(), &database).arg("migrate").output().expect("doorman migrate");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let users: Vec<String> = (0..CLIENTS).map(|i| format!("crash{i}")).collect();
        for user in &users {
            use std::io::Write;
            let mut child = doorman(dir.path(), &database)
                .args(["user", "create", user, "--password-stdin"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("doorman user create");
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(format!("{PASSWORD}\n").as_bytes()).expect("the password");
            }
            let out = child.wait_with_output().expect("doorman user create");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let client = Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let kills = kills();
        let (mut server, _) = Server::start(dir.path(), &database, &client).await;
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
            let (restarted, startup) = Server::start(dir.path(), &database, &client).await;
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
