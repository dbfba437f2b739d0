//! The real `doorman serve` binary as a child process of the test, so that its memory, file
//! descriptors and death are its own: started on a port of the system's choosing with a test
//! database and `DOORMAN_*` settings, nothing else from the environment.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::helpers::{TEST_SECRET, TestDatabase, lines_until, stderr_lines};

/// The `doorman` binary (this build's, or `DOORMAN_BIN`'s, to measure a release build) with
/// the test's database, the test key, two hash workers and `settings` on top, nothing from the
/// environment but `PATH`.
pub(crate) fn doorman(
    dir: &std::path::Path,
    database: &TestDatabase,
    settings: &[(&str, &str)],
) -> Command {
    let binary =
        std::env::var_os("DOORMAN_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_doorman").into());
    let mut cmd = Command::new(binary);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOORMAN_DATA_DIR", dir.join("data"))
        .env("DOORMAN_DATABASE_URL", &database.url)
        .env("DOORMAN_SIGNING_KEY", TEST_SECRET)
        .env("DOORMAN_PASSWORD_HASH_WORKERS", "2");
    for (name, value) in settings {
        cmd.env(name, value);
    }
    cmd
}

/// `doorman user create NAME --password-stdin` with `password`, which must succeed.
pub(crate) fn create_user(
    dir: &std::path::Path,
    database: &TestDatabase,
    settings: &[(&str, &str)],
    args: &[&str],
    password: &str,
) {
    use std::io::Write;
    let mut child = doorman(dir, database, settings)
        .args(["user", "create"])
        .args(args)
        .arg("--password-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("doorman user create");
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("{password}\n").as_bytes())
            .expect("the password");
    }
    let out = child.wait_with_output().expect("doorman user create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `doorman migrate`, which must succeed.
pub(crate) fn migrate(dir: &std::path::Path, database: &TestDatabase, settings: &[(&str, &str)]) {
    let out = doorman(dir, database, settings)
        .arg("migrate")
        .output()
        .expect("doorman migrate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The running child and where it listens.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    /// The lines of its log at level WARN or ERROR since it started listening.
    warnings: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Spawns `doorman serve` on a port of the system's choosing and waits for its first 200
    /// on `/healthz`; the time from the spawn to that answer.
    pub(crate) async fn start(
        dir: &std::path::Path,
        database: &TestDatabase,
        settings: &[(&str, &str)],
        client: &Client,
    ) -> (Server, Duration) {
        let mut cmd = doorman(dir, database, settings);
        cmd.args(["serve", "--bind", "127.0.0.1:0"]);
        Server::spawn(cmd, client).await
    }

    /// The same pinned to one CPU core (`taskset -c CORE`), with one runtime worker.
    pub(crate) async fn start_on_core(
        dir: &std::path::Path,
        database: &TestDatabase,
        settings: &[(&str, &str)],
        client: &Client,
        core: usize,
    ) -> (Server, Duration) {
        let doorman = doorman(dir, database, settings);
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", &core.to_string()])
            .arg(doorman.get_program())
            .args(["serve", "--bind", "127.0.0.1:0", "--workers", "1"])
            .current_dir(dir)
            .env_clear()
            .envs(doorman.get_envs().filter_map(|(k, v)| Some((k, v?))));
        Server::spawn(cmd, client).await
    }

    async fn spawn(mut cmd: Command, client: &Client) -> (Server, Duration) {
        let spawned = Instant::now();
        let mut child = cmd
            .env("DOORMAN_LOG_FORMAT", "json")
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
        // The rest of the log is read as it comes (the server's logging waits when its pipe is
        // full), and only its warnings and errors are kept.
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let kept = warnings.clone();
        std::thread::spawn(move || {
            for line in lines.iter() {
                if line.contains(r#""level":"WARN""#) || line.contains(r#""level":"ERROR""#) {
                    kept.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(line);
                }
            }
        });
        let mut server = Server {
            child,
            base: format!("http://{addr}"),
            warnings,
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

    /// The child's process id, for reading its `/proc` entries.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lines its log has said at level WARN or ERROR so far.
    pub(crate) fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the child is still running (a crash under load shows here).
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, and the child reaped.
    pub(crate) fn kill(&mut self) {
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
