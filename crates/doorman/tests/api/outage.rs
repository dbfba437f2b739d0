//! PostgreSQL going away and coming back, on a cluster this test starts itself (its own data
//! directory and port; the shared one is never touched): access tokens keep working, endpoints
//! that need the database answer 503 in time instead of hanging, and doorman recovers without a
//! restart.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// A throwaway PostgreSQL cluster. As root, its commands run as the `postgres` user (initdb
/// refuses root).
pub(crate) struct OwnPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub(crate) port: u16,
    as_postgres: bool,
}

impl OwnPostgres {
    /// `None` with the reason when this machine can't run one.
    pub(crate) fn create() -> Result<OwnPostgres, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no /usr/lib/postgresql: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .ok_or("no PostgreSQL server binaries under /usr/lib/postgresql")?;
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let cluster = OwnPostgres {
            bin,
            dir,
            port,
            as_postgres,
        };
        if as_postgres {
            cluster.run(Command::new("chown").args(["postgres:", &cluster.path(".")]))?;
        }
        let data = cluster.path("data");
        cluster.run(cluster.pg("initdb").args([
            "-D",
            &data,
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]))?;
        Ok(cluster)
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    pub(crate) fn pg(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    pub(crate) fn run(&self, command: &mut Command) -> Result<(), String> {
        let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{command:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    pub(crate) fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.path(".")
        );
        self.run(self.pg("pg_ctl").args([
            "-D",
            &self.path("data"),
            "-l",
            &self.path("log"),
            "-o",
            &options,
            "-w",
            "start",
        ]))
        .unwrap();
    }

    /// A fast shutdown: open connections are cut, as when a database host goes away.
    pub(crate) fn stop(&self) {
        self.stop_with("fast");
    }

    /// A shutdown in `mode`: `fast`, or `immediate` (a crash: the postmaster and its backends
    /// quit without a checkpoint, and the next start runs crash recovery).
    pub(crate) fn stop_with(&self, mode: &str) {
        self.run(
            self.pg("pg_ctl")
                .args(["-D", &self.path("data"), "-m", mode, "-w", "stop"]),
        )
        .unwrap();
    }

    /// `psql` as the superuser, one statement; its unaligned output.
    pub(crate) fn psql(&self, statement: &str) -> Result<String, String> {
        let mut command = self.pg("psql");
        command.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atc",
            statement,
        ]);
        let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{command:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self
            .pg("pg_ctl")
            .args(["-D", &self.path("data"), "-m", "immediate", "stop"])
            .output();
    }
}

pub(crate) async fn timed(request: reqwest::RequestBuilder) -> (StatusCode, Value, Duration) {
    let (status, body, took, _) = timed_with_retry_after(request).await;
    (status, body, took)
}

/// As [`timed`], with the answer's `Retry-After`, if any.
async fn timed_with_retry_after(
    request: reqwest::RequestBuilder,
) -> (StatusCode, Value, Duration, Option<String>) {
    let started = Instant::now();
    let res = request.send().await.unwrap();
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = res.json().await.unwrap_or(Value::Null);
    (status, body, started.elapsed(), retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_and_recovery() {
    let cluster = match OwnPostgres::create() {
        Ok(cluster) => cluster,
        Err(reason) => {
            skip_or_fail("the PostgreSQL outage test", &reason);
            return;
        }
    };
    cluster.start();
    let url = cluster.url();
    let app = spawn_app_with(&[
        ("DOORMAN_DATABASE_URL", &url),
        ("DOORMAN_DATABASE_ACQUIRE_TIMEOUT", "2"),
        ("DOORMAN_PRUNE_INTERVAL", "0"),
    ])
    .await;
    let (refresh, access) = app.login().await;
    // A blacklisting acknowledged just before the database goes away must survive it.
    let (revoked, _) = app.login().await;
    assert_eq!(app.blacklist(&revoked).await.status(), StatusCode::OK);
    let hello = || app.client.get(app.url("/hello/")).bearer_auth(&access);
    let login = || {
        app.client
            .post(app.url("/api/token/"))
            .json(&credentials(ALICE))
    };
    let refresh_request = || {
        app.client
            .post(app.url("/api/token/refresh/"))
            .json(&json!({"refresh": refresh}))
    };

    cluster.stop();

    // Verification needs no database: /hello/ keeps answering, and quickly once the first
    // failed lookup has been noticed.
    for i in 0..5 {
        let (status, body, took) = timed(hello()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let limit = if i == 0 { 4 } else { 1 };
        assert!(took < Duration::from_secs(limit), "/hello/ took {took:?}");
    }
    // What needs the database answers 503 within the acquire timeout (2 s), never hangs.
    // Each 503 says when to try again.
    for request in [login(), refresh_request()] {
        let (status, body, took, retry_after) = timed_with_retry_after(request).await;
        assert_eq!(
            (status, body, retry_after.as_deref()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"detail": "Service temporarily unavailable, try again later."}),
                Some("2")
            )
        );
        assert!(took < Duration::from_secs(4), "a 503 took {took:?}");
    }

    // Readiness says so, for the load balancer; liveness does not.
    let (status, body, took, retry_after) =
        timed_with_retry_after(app.client.get(app.url("/readyz"))).await;
    assert_eq!(
        (status, body, retry_after.as_deref()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "database": "unreachable"}),
            Some("2")
        )
    );
    assert!(took < Duration::from_secs(4), "/readyz took {took:?}");
    let (status, _, _) = timed(app.client.get(app.url("/healthz"))).await;
    assert_eq!(status, StatusCode::OK);

    cluster.start();

    // Back without a restart of doorman.
    let started = Instant::now();
    loop {
        let (status, _, _) = timed(login()).await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "doorman did not recover"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body, _) = timed(refresh_request()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, _) = timed(hello()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, _) = timed(app.client.get(app.url("/readyz"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = status_body(app.refresh(&revoked).await).await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::UNAUTHORIZED,
            r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#
        )
    );
}

/// One `/hello/` answered under load: when it was sent, its status and how long it took.
pub(crate) struct Answer {
    pub(crate) at: Instant,
    pub(crate) status: StatusCode,
    pub(crate) took: Duration,
}

/// `/hello/` with a valid token from `clients` loops at once, each pausing `pause` between
/// requests, until `stop`.
pub(crate) fn hello_load(
    app: &TestApp,
    access: &str,
    clients: usize,
    pause: Duration,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Answer>>> {
    (0..clients)
        .map(|_| {
            let client = app.client.clone();
            let url = app.url("/hello/");
            let access = access.to_owned();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = Instant::now();
                    let status = match client.get(&url).bearer_auth(&access).send().await {
                        Ok(res) => res.status(),
                        Err(_) => StatusCode::IM_A_TEAPOT,
                    };
                    answers.push(Answer {
                        at: started,
                        status,
                        took: started.elapsed(),
                    });
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                answers
            })
        })
        .collect()
}

pub(crate) async fn answers(load: Vec<tokio::task::JoinHandle<Vec<Answer>>>) -> Vec<Answer> {
    let mut all = Vec::new();
    for task in load {
        all.extend(task.await.unwrap());
    }
    all.sort_by_key(|a| a.at);
    all
}

/// PostgreSQL stopped under load and started again. Once doorman has seen it gone, token
/// checks answer from the token at once (no request waits for the pool's acquire timeout,
/// here the default 5 s) and writes answer 503 with `Retry-After` at once; after the restart
/// a login succeeds within 2 s, and what was acknowledged before holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_under_load_is_answered_at_once() {
    let cluster = match OwnPostgres::create() {
        Ok(cluster) => cluster,
        Err(reason) => {
            skip_or_fail("the PostgreSQL outage-under-load test", &reason);
            return;
        }
    };
    cluster.start();
    let url = cluster.url();
    let app = spawn_app_with(&[
        ("DOORMAN_DATABASE_URL", &url),
        ("DOORMAN_PRUNE_INTERVAL", "0"),
        // Every token check looks its user up.
        ("DOORMAN_USER_CACHE_TTL", "0"),
    ])
    .await;
    let (refresh, access) = app.login().await;
    let (revoked, _) = app.login().await;
    assert_eq!(app.blacklist(&revoked).await.status(), StatusCode::OK);
    let (to_blacklist, _) = app.login().await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = hello_load(&app, &access, 4, Duration::ZERO, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| cluster.stop());
    tokio::time::sleep(Duration::from_millis(700)).await;

    // Writes: 503 JSON with Retry-After, well under a second each.
    let mut slowest_write = Duration::ZERO;
    for _ in 0..5 {
        for request in [
            app.client
                .post(app.url("/api/token/"))
                .json(&credentials(ALICE)),
            app.client
                .post(app.url("/api/token/refresh/"))
                .json(&json!({ "refresh": refresh })),
            app.client
                .post(app.url("/api/token/blacklist/"))
                .json(&json!({ "refresh": to_blacklist })),
        ] {
            let (status, body, took, retry_after) = timed_with_retry_after(request).await;
            assert_eq!(
                (status, body, retry_after.as_deref()),
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"detail": "Service temporarily unavailable, try again later."}),
                    Some("2")
                )
            );
            slowest_write = slowest_write.max(took);
        }
    }
    assert!(
        slowest_write < Duration::from_millis(500),
        "a 503 took {slowest_write:?}"
    );
    let (status, _, took) = timed(app.client.get(app.url("/readyz"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < Duration::from_millis(500), "/readyz took {took:?}");
    let metrics = metrics_text(&app).await;
    assert!(
        metrics.contains("doorman_database_reachable 0"),
        "{metrics}"
    );
    // Past the user check's lookup pause (2 s): its next lookups fail at once too.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    tokio::task::block_in_place(|| cluster.start());
    let back = Instant::now();
    loop {
        let (status, body, _) = timed(
            app.client
                .post(app.url("/api/token/"))
                .json(&credentials(ALICE)),
        )
        .await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "no login within 2 s of PostgreSQL's return"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = back.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = answers(load).await;

    // Every token check answered 200. The requests in flight when PostgreSQL went away wait
    // for the probe (started a quarter second into a call); none waits longer than that.
    let refused: Vec<_> = answers
        .iter()
        .filter(|a| a.status != StatusCode::OK)
        .map(|a| (a.at, a.status))
        .collect();
    assert!(refused.is_empty(), "token checks refused: {refused:?}");
    let slowest = answers.iter().map(|a| a.took).max().unwrap_or_default();
    let over_100ms = answers
        .iter()
        .filter(|a| a.took > Duration::from_millis(100))
        .count();
    println!(
        "{} token checks, slowest {slowest:?}, {over_100ms} over 100 ms; slowest 503 \
         {slowest_write:?}; a login succeeded {recovered:?} after PostgreSQL's return",
        answers.len()
    );
    assert!(
        answers.len() > 50,
        "too few token checks: {}",
        answers.len()
    );
    assert!(
        slowest < Duration::from_millis(1500),
        "a token check took {slowest:?}"
    );

    // Nothing acknowledged was lost, and the refused blacklisting did not happen.
    let (status, body) = status_body(app.refresh(&revoked).await).await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::UNAUTHORIZED,
            r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#
        )
    );
    assert_eq!(app.refresh(&to_blacklist).await.status(), StatusCode::OK);
    assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);
}

/// A logout everywhere acknowledged by this instance holds on it when PostgreSQL goes away
/// right after: the access tokens it revoked are refused on `/hello/` during the outage, while
/// other tokens are still accepted from the token. (Lookups that can't reach the database
/// accepted every token, the revoked ones included; so did the 2 s pause of lookups after a
/// single lookup failed on a connection killed from the server side.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_everywhere_holds_through_an_outage() {
    let cluster = match OwnPostgres::create() {
        Ok(cluster) => cluster,
        Err(reason) => {
            skip_or_fail("the logout-everywhere outage test", &reason);
            return;
        }
    };
    cluster.start();
    let url = cluster.url();
    let app = spawn_app_with(&[
        ("DOORMAN_DATABASE_URL", &url),
        ("DOORMAN_PRUNE_INTERVAL", "0"),
        // Every token check looks its user up.
        ("DOORMAN_USER_CACHE_TTL", "0"),
    ])
    .await;
    app.create_user("bob", "bob-password-1", true).await;
    let (_, revoked) = app.login().await;
    let (_, other) = app.login_as("bob", "bob-password-1").await;
    let res = app
        .client
        .post(app.url("/api/token/revoke-all/"))
        .bearer_auth(&revoked)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.get_hello(&revoked).await.status(),
        StatusCode::UNAUTHORIZED
    );

    tokio::task::block_in_place(|| cluster.stop());
    for _ in 0..3 {
        let (status, body, _) =
            timed(app.client.get(app.url("/hello/")).bearer_auth(&revoked)).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a revoked token during the outage: {body}"
        );
        let (status, body, _) = timed(app.client.get(app.url("/hello/")).bearer_auth(&other)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "another user's token during the outage: {body}"
        );
    }
    tokio::task::block_in_place(|| cluster.start());
}

/// A SQLite database doorman can read but not write (a read-only file or mount; here SQLite's
/// own read-only mode): what needs a write is answered 503 with `Retry-After`, never 500, and
/// what only reads goes on.
#[tokio::test]
async fn a_read_only_sqlite_database_answers_writes_503() {
    let first = spawn_app().await;
    let (refresh, access) = first.login_as(ALICE.0, ALICE.1).await;
    assert!(
        first.database_url.starts_with("sqlite:"),
        "{}",
        first.database_url
    );
    let read_only_url = format!("{}?mode=ro", first.database_url);
    let app = spawn_second_instance(&first, &[("DOORMAN_DATABASE_URL", &read_only_url)]).await;

    let (status, body, _, retry_after) = timed_with_retry_after(
        app.client
            .post(app.url("/api/token/"))
            .json(&json!({"username": ALICE.0, "password": ALICE.1})),
    )
    .await;
    assert_eq!(
        (status, body, retry_after.as_deref()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"detail": "Service temporarily unavailable, try again later."}),
            Some("2")
        )
    );
    assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK);
    let res = app
        .post_json("/api/token/refresh/", &json!({ "refresh": refresh }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// A tmpfs of a few megabytes, mounted for one test (root only) and lazily unmounted after.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Result<SmallDisk, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("mounting a tmpfs needs root".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .map_err(|e| format!("could not run mount: {e}"))?;
        if !status.success() {
            return Err(format!("mount -t tmpfs failed: {status}"));
        }
        Ok(SmallDisk { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the disk under `dir` with one file until it is full; returns the file.
fn fill(dir: &std::path::Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let small = [0u8; 512];
    while file.write_all(&small).is_ok() {}
    let _ = file.flush();
    path
}

/// The disk under SQLite fills, and space comes back: while it is full the writes answer 503
/// with `Retry-After`, never 500, and once it is back every login and refresh succeeds again.
/// (A connection whose COMMIT failed went back to the pool with its transaction open, and
/// every request that drew it later failed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_they_come_back_with_the_space() {
    let disk = match SmallDisk::mount("8m") {
        Ok(disk) => disk,
        Err(reason) => {
            skip_or_fail("the full-disk test", &reason);
            return;
        }
    };
    let url = format!("sqlite://{}", disk.path().join("doorman.sqlite3").display());
    let app = spawn_app_with(&[
        ("DOORMAN_DATABASE_URL", &url),
        ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
        ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
    ])
    .await;
    let login = || {
        app.client
            .post(app.url("/api/token/"))
            .json(&json!({"username": ALICE.0, "password": ALICE.1}))
    };
    let (status, _, _) = timed(login()).await;
    assert_eq!(status, StatusCode::OK);

    let filler = fill(disk.path());
    let mut refused = 0;
    for _ in 0..50 {
        let (status, body, _, retry_after) = timed_with_retry_after(login()).await;
        match status {
            StatusCode::OK => continue,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(retry_after.as_deref(), Some("2"), "{body}");
                refused += 1;
                break;
            }
            other => panic!("a login on a full disk answered {other}: {body}"),
        }
    }
    assert_eq!(refused, 1, "no login was refused on a full disk");

    std::fs::remove_file(&filler).unwrap();
    for i in 0..30 {
        let (status, body, _) = timed(login()).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "login {i} after the space came back: {body}"
        );
        let refresh = body["refresh"].as_str().unwrap().to_owned();
        let (status, body, _) = timed(
            app.client
                .post(app.url("/api/token/refresh/"))
                .json(&json!({ "refresh": refresh })),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "refresh {i} after the space came back: {body}"
        );
    }
}
