//! The real Django + simplejwt app under gunicorn, for interop tests. The app is the reference
//! app kept in `tests/interop/reference-app` (`DOORMAN_DJANGO_REFERENCE` points elsewhere);
//! its Python packages come from PyPI, pinned to the versions the contract was recorded with,
//! into a venv kept under the target directory (or `DOORMAN_DJANGO_VENV`). Where Python can't be had the tests say so loudly and pass, unless
//! `DOORMAN_REQUIRE_ALL=1` (set by `.ci/run`) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The versions `tests/contract/simplejwt-5.5.1.json` was recorded with (bench/run installs the
/// same file for the benchmark's Django peer).
const REQUIREMENTS: &str = include_str!("../interop/requirements.txt");

fn packages() -> Vec<&'static str> {
    REQUIREMENTS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect()
}

pub struct ReferenceApp {
    pub base_url: String,
    venv: PathBuf,
    /// The app's SQLite database and the SECRET_KEY it signs with.
    database: PathBuf,
    secret: String,
    child: Child,
    _dir: tempfile::TempDir,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The reference app's directory (where its `manage.py` is).
pub fn reference_dir() -> PathBuf {
    std::env::var_os("DOORMAN_DJANGO_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("crates/doorman/tests/interop/reference-app"))
}

fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOORMAN_DJANGO_VENV") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join("django-venv")
}

/// Reports why the reference app can't run: a loud skip, or a failure under DOORMAN_REQUIRE_ALL.
fn unavailable(reason: String) -> Option<ReferenceApp> {
    crate::helpers::skip_or_fail("a Django interop test", &reason);
    None
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("could not run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn ensure_venv(venv: &Path) -> Result<(), String> {
    ensure_python_venv(venv, &packages(), "bin/gunicorn")
}

/// Creates a venv with `packages` once, whichever test gets there first (a lock directory
/// serializes them); it counts as made when it holds `needs` and its marker.
pub fn ensure_python_venv(venv: &Path, packages: &[&str], needs: &str) -> Result<(), String> {
    // The marker names the packages, so a change of pins reinstalls instead of trusting the venv.
    let wanted = packages.join("\n");
    let ready = |v: &Path| {
        v.join(needs).exists()
            && std::fs::read_to_string(v.join(".doorman-ready")).is_ok_and(|m| m == wanted)
    };
    if ready(venv) {
        return Ok(());
    }
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let lock = venv.with_extension("lock");
    let started = Instant::now();
    while std::fs::create_dir(&lock).is_err() {
        if ready(venv) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("timed out waiting for {}", lock.display()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let result = (|| {
        if ready(venv) {
            return Ok(());
        }
        if !venv.join("bin/pip").exists() {
            run(Command::new("python3").args(["-m", "venv"]).arg(venv))?;
        }
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "-q"])
            .args(packages))?;
        std::fs::write(venv.join(".doorman-ready"), &wanted).map_err(|e| e.to_string())
    })();
    let _ = std::fs::remove_dir(&lock);
    result
}

/// The venv with the pinned Python packages, built on first use.
async fn python_venv() -> Result<PathBuf, String> {
    if Command::new("python3")
        .args(["-m", "venv", "--help"])
        .stdout(Stdio::null())
        .status()
        .map_or(true, |s| !s.success())
    {
        return Err("python3 with the venv module is not installed".into());
    }
    let venv = venv_dir();
    tokio::task::spawn_blocking({
        let venv = venv.clone();
        move || ensure_venv(&venv)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r)
    .map_err(|reason| format!("the Python packages could not be installed: {reason}"))?;
    Ok(venv)
}

/// Python with PyJWT, `cryptography` and `requests`, for interop scripts that need no Django
/// app; `None` after a loud skip (a failure under `DOORMAN_REQUIRE_ALL=1`).
pub struct Python {
    venv: PathBuf,
}

impl Python {
    pub async fn get() -> Option<Python> {
        match python_venv().await {
            Ok(venv) => Some(Python { venv }),
            Err(reason) => {
                crate::helpers::skip_or_fail("a Python interop test", &reason);
                None
            }
        }
    }

    /// Runs a script on a blocking thread, so a doorman served by the test's runtime answers.
    pub async fn run(&self, script: &Path, args: &[&str]) -> Output {
        let mut command = Command::new(self.venv.join("bin/python"));
        command.arg(script).args(args);
        Python::output(command).await
    }

    /// As [`Python::run`], in `dir` and with `env` added to the environment.
    pub async fn run_in(
        &self,
        dir: &Path,
        env: &[(&str, &str)],
        script: &Path,
        args: &[&str],
    ) -> Output {
        let mut command = Command::new(self.venv.join("bin/python"));
        command
            .arg(script)
            .args(args)
            .current_dir(dir)
            .envs(env.iter().copied());
        Python::output(command).await
    }

    async fn output(mut command: Command) -> Output {
        tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("python thread")
            .expect("run python")
    }
}

/// The reference app's `manage.py` on a database of the test's own, without a server: a real
/// Django database (its migrations, users made by Django, simplejwt's token tables) for tests
/// that read one. `None` after a loud skip (a failure under `DOORMAN_REQUIRE_ALL=1`).
pub struct DjangoProject {
    venv: PathBuf,
    env: Vec<(String, String)>,
}

/// Where a [`DjangoProject`] keeps its data.
pub enum DjangoDatabase<'a> {
    Sqlite(&'a Path),
    /// A database on the PostgreSQL server of `url` (`postgres://user@host:port/name`).
    Postgres(&'a str),
}

impl DjangoProject {
    /// Runs Django's migrations on `database` (SECRET_KEY `secret`, so the tokens it issues
    /// verify where `secret` is the HS256 key).
    pub async fn migrated(database: DjangoDatabase<'_>, secret: &str) -> Option<DjangoProject> {
        let reference = reference_dir();
        if !reference.join("manage.py").exists() {
            unavailable(format!(
                "the reference app is not at {}",
                reference.display()
            ));
            return None;
        }
        let venv = match python_venv().await {
            Ok(venv) => venv,
            Err(reason) => {
                unavailable(reason);
                return None;
            }
        };
        let mut env = vec![("PEER_SECRET_KEY".to_owned(), secret.to_owned())];
        match database {
            DjangoDatabase::Sqlite(path) => {
                env.push(("PEER_DB".into(), path.display().to_string()));
            }
            DjangoDatabase::Postgres(url) => {
                let options: sqlx::postgres::PgConnectOptions =
                    url.parse().expect("a PostgreSQL URL");
                env.extend([
                    (
                        "PEER_PG_NAME".into(),
                        options.get_database().unwrap_or("").to_owned(),
                    ),
                    ("PEER_PG_HOST".into(), options.get_host().to_owned()),
                    ("PEER_PG_PORT".into(), options.get_port().to_string()),
                    ("PEER_PG_USER".into(), options.get_username().to_owned()),
                ]);
            }
        }
        let project = DjangoProject { venv, env };
        project.manage(&["migrate", "-v", "0"]).await;
        Some(project)
    }

    /// Runs `manage.py ARGS`, failing the test when it fails; its stdout.
    pub async fn manage(&self, args: &[&str]) -> String {
        let mut command = Command::new(self.venv.join("bin/python"));
        command
            .arg("manage.py")
            .args(args)
            .current_dir(reference_dir())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let out = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("python thread")
            .expect("run manage.py");
        assert!(
            out.status.success(),
            "manage.py {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs Python code in `manage.py shell`; its stdout.
    pub async fn shell(&self, code: &str) -> String {
        self.manage(&["shell", "-c", code]).await
    }
}

impl ReferenceApp {
    /// Starts the reference app on a free port with its own fresh database and users (alice,
    /// id 1; inactive, id 2), signing with `secret`; `rotate` turns on ROTATE_REFRESH_TOKENS
    /// and BLACKLIST_AFTER_ROTATION.
    pub async fn start(secret: &str, rotate: bool) -> Option<ReferenceApp> {
        let reference = reference_dir();
        if !reference.join("manage.py").exists() {
            return unavailable(format!(
                "the reference app is not at {}",
                reference.display()
            ));
        }
        let venv = match python_venv().await {
            Ok(venv) => venv,
            Err(reason) => return unavailable(reason),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("peer.sqlite3");
        let setup = Command::new("bash")
            .arg(reference.join("setup.sh"))
            .arg(&venv)
            .env("PEER_DB", &db)
            .output()
            .expect("run setup.sh");
        assert!(
            setup.status.success(),
            "setup.sh failed: {}",
            String::from_utf8_lossy(&setup.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new(venv.join("bin/gunicorn"))
            .args([
                "-w",
                "2",
                "-b",
                &format!("127.0.0.1:{port}"),
                "peerapi.wsgi",
            ])
            .current_dir(&reference)
            .env("PEER_DB", &db)
            .env("PEER_SECRET_KEY", secret)
            .env("PEER_ROTATE", if rotate { "1" } else { "0" })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gunicorn");
        let app = ReferenceApp {
            base_url: format!("http://127.0.0.1:{port}"),
            venv,
            database: db,
            secret: secret.to_owned(),
            child,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while client
            .get(format!("{}/hello/", app.base_url))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the reference app did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(app)
    }

    /// The SQLite file the running app serves from, as `doorman import django --from` takes it.
    pub fn database(&self) -> &Path {
        &self.database
    }

    /// The app's `manage.py` on the database it serves from, for what a Django operator does
    /// beside the running server (a `manage.py shell` that changes a password).
    pub fn project(&self) -> DjangoProject {
        DjangoProject {
            venv: self.venv.clone(),
            env: vec![
                ("PEER_SECRET_KEY".to_owned(), self.secret.clone()),
                ("PEER_DB".to_owned(), self.database.display().to_string()),
            ],
        }
    }

    /// Runs a script with the venv's Python (see [`Python::run`]); it has `requests`.
    pub async fn python(&self, script: &Path, args: &[&str]) -> Output {
        Python {
            venv: self.venv.clone(),
        }
        .run(script, args)
        .await
    }
}

impl Drop for ReferenceApp {
    fn drop(&mut self) {
        // SIGTERM lets the gunicorn master stop its workers; SIGKILL would orphan them.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
