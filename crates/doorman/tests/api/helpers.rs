//! `spawn_app()`: the real server on 127.0.0.1:0 with a fresh database, and typed request
//! helpers. `TEST_LOG=1` shows the server's logs.
//!
//! Every test written with [`dual_test!`] runs twice: on a fresh SQLite file, and on a fresh
//! PostgreSQL database (created per test on `DOORMAN_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`, and dropped afterwards). When PostgreSQL can't be
//! reached the PostgreSQL half says SKIPPED loudly, or fails under `DOORMAN_REQUIRE_ALL=1`.

use std::collections::BTreeMap;
use std::sync::Once;

use doorman::config::{Config, Overrides};
use doorman::{AppState, Application};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

/// Clearly a test key: the HS256 secret the tests (and the Django peer) share.
pub const TEST_SECRET: &str = "doorman-test-only-hs256-secret-0123456789abcdef";
pub const ALICE: (&str, &str) = ("alice", "alice-password-1");
pub const INACTIVE: (&str, &str) = ("inactive", "inactive-password-1");

static TRACING: Once = Once::new();

pub struct TestApp {
    pub address: String,
    pub client: Client,
    pub state: AppState,
    pub database_url: String,
    pub dir: tempfile::TempDir,
    /// Dropped last: the PostgreSQL database, if the test runs on one.
    pub _database: TestDatabase,
}

/// The database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

tokio::task_local! {
    /// The backend of the running [`dual_test!`] half.
    pub static BACKEND: Backend;
}

/// The backend of the running test (SQLite outside [`dual_test!`]).
pub fn backend() -> Backend {
    BACKEND.try_with(|b| *b).unwrap_or(Backend::Sqlite)
}

/// A test that runs once on SQLite and once on PostgreSQL, as `NAME::sqlite` and
/// `NAME::postgres`. `multi_thread` before `async fn` gives it a 4-worker runtime.
macro_rules! dual_test {
    ($(#[$meta:meta])* multi_thread async fn $name:ident() $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::helpers::run_on($crate::helpers::Backend::Sqlite, async move $body).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::helpers::run_on($crate::helpers::Backend::Postgres, async move $body).await
            }
        }
    };
    ($(#[$meta:meta])* async fn $name:ident() $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                $crate::helpers::run_on($crate::helpers::Backend::Sqlite, async move $body).await
            }
            #[tokio::test]
            async fn postgres() {
                $crate::helpers::run_on($crate::helpers::Backend::Postgres, async move $body).await
            }
        }
    };
}

/// Runs a test body on `backend`, or skips it loudly when that backend is unreachable.
pub async fn run_on(backend: Backend, body: impl std::future::Future<Output = ()>) {
    if backend == Backend::Postgres && !postgres_reachable() {
        skip_or_fail(
            "the PostgreSQL half of this test",
            &format!("PostgreSQL is unreachable at {}", postgres_admin_url()),
        );
        return;
    }
    BACKEND.scope(backend, body).await;
}

/// A test that can't run here: a failure under `DOORMAN_REQUIRE_ALL=1` (set by `.ci/run`),
/// else a skip said on the real stderr (the harness captures `eprintln!` of passing tests,
/// and a skip must not go unnoticed).
pub fn skip_or_fail(what: &str, reason: &str) {
    if std::env::var("DOORMAN_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("DOORMAN_REQUIRE_ALL=1 but {what} can't run: {reason}");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: {what}, because {reason} ***\n"
    );
}

/// The server PostgreSQL test databases are created on.
pub fn postgres_admin_url() -> String {
    std::env::var("DOORMAN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Whether the test PostgreSQL answers on its port (asked once per test binary).
pub fn postgres_reachable() -> bool {
    static REACHABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REACHABLE.get_or_init(|| {
        use std::str::FromStr;
        let Ok(options) = sqlx::postgres::PgConnectOptions::from_str(&postgres_admin_url()) else {
            return false;
        };
        let address = format!("{}:{}", options.get_host(), options.get_port());
        std::net::ToSocketAddrs::to_socket_addrs(&address)
            .ok()
            .and_then(|mut addrs| addrs.next())
            .is_some_and(|addr| {
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3))
                    .is_ok()
            })
    })
}

/// A test's own database: a SQLite file under the test's directory, or a PostgreSQL database
/// created for it and dropped (with its connections) when this is dropped.
pub struct TestDatabase {
    pub url: String,
    postgres_name: Option<String>,
}

impl TestDatabase {
    /// A new, empty database on the running test's backend.
    pub async fn create(dir: &std::path::Path) -> TestDatabase {
        TestDatabase::create_on(backend(), dir).await
    }

    /// A new, empty database on `backend`, whichever the running test's is.
    pub async fn create_on(backend: Backend, dir: &std::path::Path) -> TestDatabase {
        match backend {
            Backend::Sqlite => TestDatabase {
                url: format!("sqlite://{}", dir.join("data/doorman.sqlite3").display()),
                postgres_name: None,
            },
            Backend::Postgres => {
                use sqlx::Connection;
                let name = format!("doorman_test_{}", uuid::Uuid::new_v4().simple());
                let admin = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("connect to the test PostgreSQL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut conn)
                    .await
                    .expect("create a test database");
                let _ = conn.close().await;
                let base = admin
                    .rsplit_once('/')
                    .map_or(admin.as_str(), |(base, _)| base);
                TestDatabase {
                    url: format!("{base}/{name}"),
                    postgres_name: Some(name),
                }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime: do the async work on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .map(|_| ())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("note: could not drop a test database: {dropped:?}");
        }
    }
}

/// A bound server from exactly these settings (plus a fresh data dir and [`TEST_SECRET`]), not
/// running yet; unlike [`spawn_app_with`], an empty value is passed on as empty.
pub async fn bound_app(dir: &std::path::Path, settings: &[(&str, &str)]) -> Application {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert(
        "DOORMAN_DATA_DIR".into(),
        dir.join("data").display().to_string(),
    );
    env.insert("DOORMAN_SIGNING_KEY".into(), TEST_SECRET.into());
    for (k, v) in settings {
        env.insert((*k).into(), (*v).into());
    }
    let config = Config::load_from(None, &env, &Overrides::default()).unwrap();
    Application::build(config).await.unwrap()
}

/// The default test server: HS256 with [`TEST_SECRET`], simplejwt's defaults otherwise, and
/// the reference app's users (alice id 1, inactive id 2).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// As [`spawn_app`], with `DOORMAN_*` settings added or replaced (an empty value removes one).
pub async fn spawn_app_with(settings: &[(&str, &str)]) -> TestApp {
    with_users(start_app(settings, Empty::Removes).await).await
}

/// As [`spawn_app_with`], except that an empty value is passed on as empty: a setting turned
/// off (`DOORMAN_TOKEN_TYPE_CLAIM=""`), not one back at its default.
pub async fn spawn_app_with_empty(settings: &[(&str, &str)]) -> TestApp {
    with_users(start_app(settings, Empty::Kept).await).await
}

async fn with_users(app: TestApp) -> TestApp {
    app.create_user(ALICE.0, ALICE.1, true).await;
    app.create_user(INACTIVE.0, INACTIVE.1, false).await;
    app
}

/// A server from exactly these settings (see [`bound_app`]) on a loopback port, serving in the
/// background until the test ends; where it listens.
pub async fn serve_bound(dir: &std::path::Path, settings: &[(&str, &str)]) -> std::net::SocketAddr {
    let mut all = vec![("DOORMAN_BIND", "127.0.0.1:0")];
    all.extend_from_slice(settings);
    let app = bound_app(dir, &all).await;
    let addr = app.local_addr().expect("a TCP listener");
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    addr
}

/// Another instance on `first`'s database and data directory (so also its generated key),
/// with `settings` on top of the test defaults.
pub async fn spawn_second_instance(first: &TestApp, settings: &[(&str, &str)]) -> TestApp {
    let data_dir = first.data_dir().display().to_string();
    let mut all = vec![
        ("DOORMAN_DATABASE_URL", first.database_url.as_str()),
        ("DOORMAN_DATA_DIR", data_dir.as_str()),
    ];
    all.extend_from_slice(settings);
    start_app(&all, Empty::Removes).await
}

/// What an empty setting given to [`start_app`] means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Empty {
    /// Back to the test default (or doorman's).
    Removes,
    /// Empty, as given.
    Kept,
}

async fn start_app(settings: &[(&str, &str)], empty: Empty) -> TestApp {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            doorman::telemetry::init("debug");
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let database = if settings.iter().any(|(k, _)| *k == "DOORMAN_DATABASE_URL") {
        TestDatabase {
            url: String::new(),
            postgres_name: None,
        }
    } else {
        TestDatabase::create(dir.path()).await
    };
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    if !database.url.is_empty() {
        env.insert("DOORMAN_DATABASE_URL".into(), database.url.clone());
    }
    env.insert(
        "DOORMAN_DATA_DIR".into(),
        dir.path().join("data").display().to_string(),
    );
    env.insert("DOORMAN_BIND".into(), "127.0.0.1:0".into());
    env.insert("DOORMAN_SIGNING_KEY".into(), TEST_SECRET.into());
    env.insert("DOORMAN_PASSWORD_HASH_WORKERS".into(), "2".into());
    for (k, v) in settings {
        if v.is_empty() && empty == Empty::Removes {
            env.remove(*k);
        } else {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
    }
    let config = Config::load_from(None, &env, &Overrides::default()).expect("test config");
    let database_url = config.store.database_url.clone();
    let app = Application::build(config).await.expect("build app");
    let address = format!("http://{}", app.local_addr().expect("local addr"));
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp {
        address,
        client: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        state,
        database_url,
        dir,
        _database: database,
    }
}

impl TestApp {
    /// The data directory this instance was started with.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.state.config.store.data_dir.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn create_user(&self, name: &str, password: &str, active: bool) -> i64 {
        self.state
            .accounts
            .create_user(name, password.to_owned().into(), false, active)
            .await
            .expect("create user")
            .id
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// A POST of exactly this body, declared as `content_type`.
    pub async fn post_body(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        self.client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_token(&self, body: &Value) -> Response {
        self.post_json("/api/token/", body).await
    }

    /// Logs alice in and returns (refresh, access).
    pub async fn login(&self) -> (String, String) {
        self.login_as(ALICE.0, ALICE.1).await
    }

    pub async fn login_as(&self, username: &str, password: &str) -> (String, String) {
        obtain_pair_at(&self.client, &self.address, (username, password)).await
    }

    pub async fn get_hello(&self, token: &str) -> Response {
        get_hello_at(&self.client, &self.address, token).await
    }

    pub async fn refresh(&self, refresh: &str) -> Response {
        self.post_json("/api/token/refresh/", &json!({"refresh": refresh}))
            .await
    }

    pub async fn verify(&self, token: &str) -> Response {
        self.post_json("/api/token/verify/", &json!({"token": token}))
            .await
    }

    pub async fn blacklist(&self, refresh: &str) -> Response {
        self.post_json("/api/token/blacklist/", &json!({"refresh": refresh}))
            .await
    }
}

/// The login body simplejwt's obtain view takes.
pub fn credentials((username, password): (&str, &str)) -> Value {
    json!({"username": username, "password": password})
}

/// Logs in at the server (doorman or Django) at `base` and returns (refresh, access).
pub async fn obtain_pair_at(client: &Client, base: &str, user: (&str, &str)) -> (String, String) {
    let res = client
        .post(format!("{}/api/token/", base.trim_end_matches('/')))
        .json(&credentials(user))
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "login of {} at {base}",
        user.0
    );
    let body: Value = res.json().await.expect("json");
    (
        body["refresh"].as_str().expect("refresh").to_owned(),
        body["access"].as_str().expect("access").to_owned(),
    )
}

/// `/hello/` at the server at `base`, with `token` as the Bearer.
pub async fn get_hello_at(client: &Client, base: &str, token: &str) -> Response {
    client
        .get(format!("{}/hello/", base.trim_end_matches('/')))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("request")
}

/// Status and body text of a response.
pub async fn status_body(res: Response) -> (StatusCode, String) {
    let status = res.status();
    (status, res.text().await.expect("body"))
}

/// The decoded payload of a token.
pub fn payload(token: &str) -> Value {
    use base64::Engine;
    let segment = token.split('.').nth(1).expect("payload segment");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json payload")
}

/// An HS256 token over exactly this header and payload text, signed with `secret`.
pub fn sign_hs256(header: &str, payload: &str, secret: &[u8]) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// A token over exactly these claims (JSON text), as the test server would sign it.
pub fn mint(claims: &str) -> String {
    sign_hs256(HS256_HEADER, claims, TEST_SECRET.as_bytes())
}

/// An access token for `user_id` (JSON text: `"1"`, `1`, `null`...) that lives a minute.
pub fn mint_access(user_id: &str) -> String {
    mint(&format!(
        r#"{{"token_type":"access","exp":{},"iat":1,"jti":"a","user_id":{user_id}}}"#,
        now() + 60
    ))
}

/// What the store keeps of a token of alice's (id 1) issued two days ago.
pub fn row(jti: &str, expires_at: time::OffsetDateTime) -> doorman::store::OutstandingToken {
    doorman::store::OutstandingToken {
        jti: jti.to_owned(),
        user_id: Some(1),
        created_at: Some(time::OffsetDateTime::now_utc() - time::Duration::days(2)),
        expires_at,
        client_addr: None,
        user_agent: None,
    }
}

pub const HS256_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

pub fn now() -> i64 {
    doorman::unix_now()
}

/// A child process's stderr, line by line, read on a thread of its own: the process never
/// blocks on a full pipe, whether or not anyone reads the lines.
pub fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// The lines up to and including the first that `last` accepts, within 30 s; a process that
/// ends or stays silent first fails the test with what it did say.
pub fn lines_until(
    lines: &std::sync::mpsc::Receiver<String>,
    last: impl Fn(&str) -> bool,
) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let done = last(&line);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(e) => panic!(
                "{e} before the line awaited; the log so far:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// A refresh token of alice's (id 1) with this `jti` that expired `ago` seconds ago, and the
/// row the store keeps of it.
pub fn expired_refresh(jti: &str, ago: i64) -> (String, doorman::store::OutstandingToken) {
    let exp = now() - ago;
    let token = mint(&format!(
        r#"{{"token_type":"refresh","exp":{exp},"iat":{},"jti":"{jti}","user_id":1}}"#,
        exp - 86_400
    ));
    let expires_at = time::OffsetDateTime::from_unix_timestamp(exp).expect("a valid time");
    (token, row(jti, expires_at))
}

/// simplejwt's answer to a refresh with a blacklisted token: 401 and this body.
pub async fn assert_refused_as_blacklisted(app: &TestApp, refresh: &str) {
    let (status, body) = status_body(app.refresh(refresh).await).await;
    assert_eq!(
        (status, body.as_str()),
        (
            reqwest::StatusCode::UNAUTHORIZED,
            r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#
        )
    );
}

/// The instance's `/metrics` page, as text.
pub async fn metrics_text(app: &TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Taken by the tests that load the whole machine and measure what it does under that load
/// (the soak, the overload, the login flood, PostgreSQL restarted under writes): two of them
/// at once would measure each other, so they run one at a time, beside the lighter tests.
pub static WHOLE_MACHINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `doorman` with these arguments (and `stdin`) against the app's database, as an
/// operator would: it must succeed; its standard output.
pub fn cli(app: &TestApp, args: &[&str], stdin: &str) -> String {
    let out = assert_cmd::Command::cargo_bin("doorman")
        .unwrap()
        .current_dir(app.dir.path())
        .env_clear()
        .env("DOORMAN_DATABASE_URL", &app.database_url)
        .env("DOORMAN_SIGNING_KEY", TEST_SECRET)
        .args(args)
        .write_stdin(stdin.to_owned())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
