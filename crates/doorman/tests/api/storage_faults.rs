//! SQLite's storage failing under a running server: the disk filling up, the data directory
//! turning read-only, the database locked by another process. Writes answer 503 JSON with
//! `Retry-After` while reads go on, and once the storage is back writes succeed again without a
//! restart and the file is intact. SQLite only: for PostgreSQL the same promises are tested by
//! taking its server away (`outage.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// A file system mounted for a test, unmounted when dropped, even when the test panics.
struct Mount {
    path: PathBuf,
}

impl Mount {
    /// Runs `mount` with `args` for `path`; `None` (after a loud skip) when mounting is not
    /// possible here (not root, no mount namespace rights).
    fn new(what: &str, args: &[&str], path: &Path) -> Option<Mount> {
        match Command::new("mount").args(args).arg(path).output() {
            Ok(out) if out.status.success() => Some(Mount {
                path: path.to_owned(),
            }),
            Ok(out) => {
                skip_or_fail(what, &String::from_utf8_lossy(&out.stderr));
                None
            }
            Err(e) => {
                skip_or_fail(what, &format!("mount could not run: {e}"));
                None
            }
        }
    }

    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", options])
            .arg(&self.path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazy: the server may still hold the files open when the test ends.
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
    }
}

const ROTATING: [(&str, &str); 2] = [
    ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
    ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
];

/// A server whose SQLite file is `dir/doorman.sqlite3`, rotating and blacklisting.
async fn app_on(dir: &Path, more: &[(&str, &str)]) -> TestApp {
    let url = format!("sqlite://{}", dir.join("doorman.sqlite3").display());
    let mut settings = vec![("DOORMAN_DATABASE_URL", url.as_str())];
    settings.extend_from_slice(&ROTATING);
    settings.extend_from_slice(more);
    spawn_app_with(&settings).await
}

/// What the tests ask of a server, whether started with its users ([`TestApp`]) or on a
/// database prepared beforehand.
trait Server {
    fn client(&self) -> &reqwest::Client;
    fn base(&self) -> String;

    async fn post(&self, path: &str, body: &Value) -> Response {
        self.client()
            .post(format!("{}{path}", self.base()))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn post_token(&self, body: &Value) -> Response {
        self.post("/api/token/", body).await
    }

    async fn refresh(&self, refresh: &str) -> Response {
        self.post("/api/token/refresh/", &json!({ "refresh": refresh }))
            .await
    }

    async fn blacklist(&self, refresh: &str) -> Response {
        self.post("/api/token/blacklist/", &json!({ "refresh": refresh }))
            .await
    }

    async fn verify(&self, token: &str) -> Response {
        self.post("/api/token/verify/", &json!({ "token": token }))
            .await
    }

    async fn get_hello(&self, token: &str) -> Response {
        get_hello_at(self.client(), &self.base(), token).await
    }

    async fn readyz(&self) -> Response {
        self.client()
            .get(format!("{}/readyz", self.base()))
            .send()
            .await
            .unwrap()
    }
}

impl Server for TestApp {
    fn client(&self) -> &reqwest::Client {
        &self.client
    }
    fn base(&self) -> String {
        self.address.clone()
    }
}

/// A server on a database prepared beforehand (no users created at start).
struct Bare {
    client: reqwest::Client,
    base: String,
}

impl Server for Bare {
    fn client(&self) -> &reqwest::Client {
        &self.client
    }
    fn base(&self) -> String {
        self.base.clone()
    }
}

/// An unavailable write's answer: 503, a JSON `detail`, and `Retry-After`.
async fn assert_unavailable(res: Response, what: &str) {
    let status = res.status();
    let retry_after = res.headers().get("retry-after").cloned();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {body}");
    assert!(body["detail"].is_string(), "{what}: {body}");
    assert!(retry_after.is_some(), "{what}: no Retry-After");
}

/// A login, a refresh (rotating, so blacklisting the first refresh token) and a blacklisting
/// of the successor, all answered 200; the refresh token used first is then refused.
async fn round(app: &impl Server, round: usize) {
    let res = app.post_token(&credentials(ALICE)).await;
    let (status, body) = (res.status(), res.text().await.unwrap());
    assert_eq!(status, StatusCode::OK, "round {round} login: {body}");
    let pair: Value = serde_json::from_str(&body).unwrap();
    let refresh = pair["refresh"].as_str().unwrap();
    let res = app.refresh(refresh).await;
    let (status, body) = (res.status(), res.text().await.unwrap());
    assert_eq!(status, StatusCode::OK, "round {round} refresh: {body}");
    let next: Value = serde_json::from_str(&body).unwrap();
    let res = app.blacklist(next["refresh"].as_str().unwrap()).await;
    let (status, body) = (res.status(), res.text().await.unwrap());
    assert_eq!(status, StatusCode::OK, "round {round} blacklist: {body}");
    assert_eq!(
        app.refresh(refresh).await.status(),
        StatusCode::UNAUTHORIZED,
        "round {round}: the rotated-out token"
    );
}

const BOB: (&str, &str) = ("bob", "bob-password-1");

async fn revoke_all(app: &TestApp, access: &str) -> Response {
    app.client
        .post(app.url("/api/token/revoke-all/"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
}

async fn integrity(path: &Path) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    verdict
}

/// The disk filling up: logins and refreshes answer 503 with `Retry-After` while access tokens
/// keep working; once space returns every write succeeds again (a connection whose commit
/// failed on the full disk must not go back to the pool with its transaction open) and the
/// file is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_recovers_when_space_returns() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("small");
    std::fs::create_dir(&dir).unwrap();
    let Some(_mount) = Mount::new(
        "the full-disk test",
        &["-t", "tmpfs", "-o", "size=8m", "tmpfs"],
        &dir,
    ) else {
        return;
    };
    let app = app_on(&dir, &[]).await;
    let (refresh, access) = app.login().await;
    app.create_user(BOB.0, BOB.1, true).await;
    let (_, bobs_access) = app.login_as(BOB.0, BOB.1).await;

    // Fill the disk, then log in until a write needs space SQLite can't get.
    let filler = dir.join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
    }
    let mut refused = None;
    for _ in 0..200 {
        let res = app.post_token(&credentials(ALICE)).await;
        if res.status() != StatusCode::OK {
            refused = Some(res);
            break;
        }
    }
    let refused = refused.expect("200 logins on a full disk all succeeded");
    assert_unavailable(refused, "a login on a full disk").await;
    assert_unavailable(app.refresh(&refresh).await, "a refresh on a full disk").await;
    // Logging out everywhere is a transaction of its own, not the group commit's: its
    // connections too must not go back to the pool with the failed transaction open.
    for _ in 0..12 {
        assert_unavailable(
            revoke_all(&app, &bobs_access).await,
            "a revocation on a full disk",
        )
        .await;
    }
    assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK);
    assert_eq!(app.verify(&access).await.status(), StatusCode::OK);

    std::fs::remove_file(&filler).unwrap();
    for i in 0..30 {
        round(&app, i).await;
        let (_, bobs_access) = app.login_as(BOB.0, BOB.1).await;
        let res = revoke_all(&app, &bobs_access).await;
        let (status, body) = (res.status(), res.text().await.unwrap());
        assert_eq!(status, StatusCode::OK, "round {i} revoke-all: {body}");
    }
    assert_eq!(integrity(&dir.join("doorman.sqlite3")).await, "ok");
}

/// The data directory read-only (a bind mount remounted read-only, as a full or failing disk
/// is remounted by the kernel, with the database's `-wal` and `-shm` left behind by a crash):
/// the server starts and serves reads, writes answer 503 with `Retry-After`, `/readyz` 503;
/// made writable again, writes succeed without a restart and `/readyz` is back to 200 within a
/// second (at its first probe but on a busy machine), even after blacklist lookups made while
/// it was read-only.
/// (Linux refuses to remount read-only a file system with files open for writing, so the
/// database is prepared by a first server that is then closed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_data_directory_refuses_writes_until_writable_again() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data-ro");
    std::fs::create_dir(&dir).unwrap();
    let source = dir.display().to_string();
    let Some(mount) = Mount::new("the read-only test", &["--bind", &source], &dir) else {
        return;
    };
    let url = format!("sqlite://{}", dir.join("doorman.sqlite3").display());
    let first = bound_app(root.path(), &[("DOORMAN_DATABASE_URL", url.as_str())]).await;
    first
        .state()
        .accounts
        .create_user(ALICE.0, ALICE.1.to_owned().into(), false, true)
        .await
        .unwrap();
    let leftover = keep_wal_files(&dir);
    first.state().store.close().await;
    drop(first);
    drop(leftover);

    mount.remount("remount,ro,bind");
    let mut settings = vec![("DOORMAN_DATABASE_URL", url.as_str())];
    settings.extend_from_slice(&ROTATING);
    let second = tempfile::tempdir().unwrap();
    let app = Bare {
        client: reqwest::Client::new(),
        base: format!("http://{}", serve_bound(second.path(), &settings).await),
    };
    assert_unavailable(
        app.post_token(&credentials(ALICE)).await,
        "a login on a read-only directory",
    )
    .await;
    let access = mint_access("1");
    assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK);
    assert_eq!(app.verify(&access).await.status(), StatusCode::OK);
    // A refresh token's verify and refresh look the blacklist up (on the calling thread, see
    // `store::sqlite::inline`): the lookup answers, the rotation's write is refused.
    let refresh = mint(&format!(
        r#"{{"token_type":"refresh","exp":{},"iat":{},"jti":"ro-refresh","user_id":"1"}}"#,
        now() + 600,
        now()
    ));
    assert_eq!(app.verify(&refresh).await.status(), StatusCode::OK);
    assert_unavailable(
        app.refresh(&refresh).await,
        "a rotation on a read-only directory",
    )
    .await;
    let res = app.readyz().await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["database"], json!("read-only"), "{body}");

    mount.remount("remount,rw,bind");
    // Ready at the first probe; within a second on a machine busy with other tests.
    let writable = std::time::Instant::now();
    // Polled for up to 10 s, so that a failure says whether it was slow or stuck.
    let mut last = String::new();
    while writable.elapsed() < Duration::from_secs(10) {
        let res = app.readyz().await;
        if res.status() == StatusCode::OK {
            break;
        }
        last = res.text().await.unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready_after = writable.elapsed();
    println!("ready {ready_after:?} after the storage became writable");
    assert!(
        ready_after < Duration::from_secs(1),
        "/readyz not 200 within a second of the storage becoming writable \
         ({ready_after:?}; last answer {last})"
    );
    for i in 0..5 {
        round(&app, i).await;
    }
    assert_eq!(integrity(&dir.join("doorman.sqlite3")).await, "ok");
}

/// Copies of the database's `-wal` and `-shm` files, put back when dropped: a crashed server
/// leaves them behind, and SQLite can only open a WAL database read-only when they exist.
struct WalFiles(Vec<(PathBuf, Vec<u8>)>);

fn keep_wal_files(dir: &Path) -> WalFiles {
    WalFiles(
        ["doorman.sqlite3-wal", "doorman.sqlite3-shm"]
            .iter()
            .map(|name| dir.join(name))
            .filter_map(|path| std::fs::read(&path).ok().map(|bytes| (path, bytes)))
            .collect(),
    )
}

impl Drop for WalFiles {
    fn drop(&mut self) {
        for (path, bytes) in &self.0 {
            if !path.exists() {
                let _ = std::fs::write(path, bytes);
            }
        }
    }
}

/// Another process holding SQLite's lock (`BEGIN EXCLUSIVE`) for longer than
/// `database_acquire_timeout`: writes answer 503 with `Retry-After` in about that time, reads
/// that need no write go on, and writes succeed once the lock goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_by_another_process_refuses_writes_until_released() {
    use sqlx::Connection;
    let root = tempfile::tempdir().unwrap();
    let app = app_on(root.path(), &[("DOORMAN_DATABASE_ACQUIRE_TIMEOUT", "1s")]).await;
    let (refresh, access) = app.login().await;

    let path = root.path().join("doorman.sqlite3");
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();

    let started = std::time::Instant::now();
    assert_unavailable(app.refresh(&refresh).await, "a refresh while locked").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_unavailable(
        app.post_token(&credentials(ALICE)).await,
        "a login while locked",
    )
    .await;
    assert_eq!(app.verify(&access).await.status(), StatusCode::OK);
    // In WAL mode readers pass another connection's write lock: the user lookup answers.
    assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK);

    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    let _ = other.close().await;
    for i in 0..3 {
        round(&app, i).await;
    }
}
