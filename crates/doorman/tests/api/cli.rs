//! The `doorman` command line, run as a user would: real processes against a real SQLite file.

use assert_cmd::Command;
use predicates_free::*;

use crate::helpers::*;

/// Minimal string predicates so the tests read plainly without another dependency.
mod predicates_free {
    pub fn stdout_of(out: &std::process::Output) -> String {
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    pub fn stderr_of(out: &std::process::Output) -> String {
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn doorman(dir: &std::path::Path) -> Command {
    let mut cmd = Command::cargo_bin("doorman").unwrap();
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOORMAN_DATA_DIR", dir.join("data"));
    cmd
}

/// `doorman` against the test's own database.
fn doorman_on(dir: &std::path::Path, database: &TestDatabase) -> Command {
    let mut cmd = doorman(dir);
    cmd.env("DOORMAN_DATABASE_URL", &database.url);
    cmd
}

dual_test! {
    async fn migrate_list_then_apply() {
        let dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::create(dir.path()).await;
        let out = doorman_on(dir.path(), &database)
            .args(["migrate", "--list"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        // Every migration listed as pending, then applied, in the same order: the list itself
        // grows with the schema, so it is read from the first answer.
        let listed = stdout_of(&out);
        let migrations: Vec<&str> = listed
            .lines()
            .map(|l| l.strip_prefix("[ ] ").unwrap_or_else(|| panic!("not pending: {l}")))
            .collect();
        assert_eq!(migrations.first(), Some(&"0001 initial"), "{listed}");
        let out = doorman_on(dir.path(), &database).arg("migrate").output().unwrap();
        let applied: Vec<String> = migrations.iter().map(|m| format!("Applied {m}\n")).collect();
        assert_eq!(stdout_of(&out), applied.concat());
        let out = doorman_on(dir.path(), &database)
            .args(["migrate", "--list"])
            .output()
            .unwrap();
        let listed: Vec<String> = migrations.iter().map(|m| format!("[X] {m}\n")).collect();
        assert_eq!(stdout_of(&out), listed.concat());
        let out = doorman_on(dir.path(), &database).arg("migrate").output().unwrap();
        assert_eq!(stdout_of(&out).trim(), "No migrations to apply.");
    }
}

dual_test! {
    async fn user_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::create(dir.path()).await;
        doorman_on(dir.path(), &database).arg("migrate").assert().success();
        let create = |args: &[&str], stdin: &str| {
            doorman_on(dir.path(), &database)
                .args(args)
                .write_stdin(stdin.to_owned())
                .output()
                .unwrap()
        };
        let out = create(
            &["user", "create", "dora", "--password-stdin", "--superuser"],
            "dora-password-1\n",
        );
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert_eq!(stdout_of(&out), "Created user dora (id 1).\n");
        let out = create(
            &["user", "create", "dora", "--password-stdin"],
            "dora-password-1\n",
        );
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stderr_of(&out).trim(),
            "error: that username is already taken"
        );
        let out = create(&["user", "create", "eve", "--password-stdin"], "short\n");
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(stderr_of(&out).trim(), "error: a password has at least 8 characters");
        let out = create(
            &["user", "create", "bad name", "--password-stdin"],
            "long-enough-1\n",
        );
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stderr_of(&out).trim(),
            "error: a username may contain only letters, digits and @/./+/-/_"
        );
        let out = create(
            &["user", "create", "eve", "--password-stdin", "--inactive"],
            "eve-password-1\n",
        );
        assert!(out.status.success());
        let out = doorman_on(dir.path(), &database).args(["user", "list"]).output().unwrap();
        // Username, active, superuser: the columns that say who is what (PostgreSQL spends an
        // id on the refused duplicate, so eve's id depends on the backend).
        let list = stdout_of(&out);
        let rows: Vec<Vec<&str>> = list
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().skip(1).take(3).collect())
            .collect();
        assert_eq!(rows, [["dora", "yes", "yes"], ["eve", "no", "no"]], "{list}");
        for args in [
            ["user", "activate", "eve"],
            ["user", "deactivate", "dora"],
            ["user", "delete", "dora"],
        ] {
            doorman_on(dir.path(), &database).args(args).assert().success();
        }
        let out = doorman_on(dir.path(), &database)
            .args(["user", "delete", "dora"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(stderr_of(&out).trim(), "error: no user named \"dora\"");
        let out = create(
            &["user", "set-password", "eve", "--password-stdin"],
            "eve-password-2\n",
        );
        assert!(out.status.success(), "{}", stderr_of(&out));
        // No terminal and no --password-stdin: a usage error, not a hang.
        let out = create(&["user", "create", "fred"], "");
        assert_eq!(out.status.code(), Some(2));
    }
}

#[test]
fn usage_errors_exit_2_and_help_exists_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let out = doorman(dir.path()).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["user", "--help"],
        vec!["user", "create", "--help"],
        vec!["user", "list", "--help"],
        vec!["user", "set-password", "--help"],
        vec!["token", "decode", "--help"],
        vec!["flush-expired-tokens", "--help"],
        vec!["keys", "--help"],
        vec!["keys", "list", "--help"],
        vec!["keys", "generate", "--help"],
        vec!["keys", "rotate", "--help"],
        vec!["keys", "retire", "--help"],
        vec!["check", "--help"],
        vec!["audit", "--help"],
    ] {
        let out = doorman(dir.path()).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(stdout_of(&out).contains("Usage:"), "{args:?}");
    }
    let out = doorman(dir.path())
        .args(["serve", "--workers", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    // An unknown algorithm for a new key is a usage error; an HMAC one is refused.
    doorman(dir.path()).arg("migrate").assert().success();
    for alg in ["XS256", "HS256"] {
        let out = doorman(dir.path())
            .args(["keys", "generate", "--alg", alg])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{alg}: {}", stderr_of(&out));
    }
    let out = doorman(dir.path())
        .args(["keys", "rotate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_of(&out).trim(),
        "error: there is no next key to promote; run `doorman keys generate` first"
    );
}

#[test]
fn bad_configuration_stops_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = doorman(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DOORMAN_SIGNING_KEY", "short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_of(&out),
        "error: configuration error: setting `signing_key` (from environment variable \
         DOORMAN_SIGNING_KEY): an HS256 secret must be at least 32 bytes (RFC 7518 §3.2), this \
         one has 5\n"
    );
}

dual_test! {
    async fn token_decode_and_verify() {
        let app = spawn_app().await;
        let (_, access) = app.login().await;
        let dir = tempfile::tempdir().unwrap();
        let out = doorman(dir.path())
            .args(["token", "decode", &access])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        // The header and the claims as they stand in the token, then its two times in UTC.
        let text = stdout_of(&out);
        let claims = payload(&access);
        let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap();
        let decoded = format!(
            "header:\n{}\npayload:\n{}\n",
            pretty(&serde_json::json!({"alg": "HS256", "typ": "JWT"})),
            pretty(&claims)
        );
        let times = text.strip_prefix(&decoded).unwrap_or_else(|| panic!("{text}"));
        let utc = |claim: &str| {
            let t = time::OffsetDateTime::from_unix_timestamp(claims[claim].as_i64().unwrap())
                .unwrap();
            format!(
                "{claim:<13}{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC (",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        };
        let lines: Vec<&str> = times.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with(&utc("exp")), "{text}");
        assert!(lines[1].starts_with(&utc("iat")), "{text}");
        let out = doorman(dir.path())
            .args(["token", "decode", "-", "--verify"])
            .env("DOORMAN_SIGNING_KEY", TEST_SECRET)
            .write_stdin(access.clone())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert_eq!(
            stdout_of(&out).lines().last(),
            Some("verified: signature and claims are valid (access token)")
        );
        let out = doorman(dir.path())
            .args(["token", "decode", &access, "--verify"])
            .env(
                "DOORMAN_SIGNING_KEY",
                "another-secret-of-at-least-32-bytes-long",
            )
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(stderr_of(&out).trim(), "error: verification failed: Token is invalid");
        let out = doorman(dir.path())
            .args(["token", "decode", "abc"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stderr_of(&out).trim(),
            "error: not a JWT: expected 3 dot-separated parts, found 1"
        );
    }
}

dual_test! {
    async fn cli_users_log_in_on_the_server_and_flush_works() {
        let app = spawn_app().await;
        let dir = tempfile::tempdir().unwrap();
        let out = doorman(dir.path())
            .args([
                "--database-url",
                &app.database_url,
                "user",
                "create",
                "gina",
                "--password-stdin",
            ])
            .write_stdin("gina-password-1\n")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        app.login_as("gina", "gina-password-1").await;

        // Two expired tokens (one blacklisted) and a live blacklisted one: flush takes the first two.
        let store = &app.state.store;
        let now = time::OffsetDateTime::now_utc();
        store
            .record_outstanding(&row("expired", now - time::Duration::hours(1)))
            .await
            .unwrap();
        store
            .blacklist(&row(
                "expired-blacklisted",
                now - time::Duration::seconds(1),
            ))
            .await
            .unwrap();
        store
            .blacklist(&row("live-blacklisted", now + time::Duration::hours(1)))
            .await
            .unwrap();
        let out = doorman(dir.path())
            .args(["--database-url", &app.database_url, "flush-expired-tokens"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert_eq!(stdout_of(&out), "Deleted 2 expired token(s).\n");
        assert!(!store.is_blacklisted("expired-blacklisted").await.unwrap());
        assert!(store.is_blacklisted("live-blacklisted").await.unwrap());
        // The login's own refresh token is a day from expiry and stays: a second flush finds nothing.
        let out = doorman(dir.path())
            .args(["--database-url", &app.database_url, "flush-expired-tokens"])
            .output()
            .unwrap();
        assert_eq!(stdout_of(&out), "Deleted 0 expired token(s).\n");
    }
}

dual_test! {
    /// `flush-expired-tokens` keeps the rows of tokens that still decode within `leeway` (a
    /// blacklisted one stays refused) and deletes those past `exp + leeway`.
    async fn flush_waits_out_the_leeway() {
        // The background job is off, so only the command prunes.
        let app =
            spawn_app_with(&[("DOORMAN_LEEWAY", "30"), ("DOORMAN_PRUNE_INTERVAL", "0")]).await;
        let store = &app.state.store;
        let (within, within_row) = expired_refresh("within-leeway", 1);
        let (_, past_row) = expired_refresh("past-leeway", 31);
        store.blacklist(&within_row).await.unwrap();
        store.blacklist(&past_row).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = doorman(dir.path())
            .args(["--database-url", &app.database_url, "flush-expired-tokens"])
            .env("DOORMAN_LEEWAY", "30")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert_eq!(stdout_of(&out), "Deleted 1 expired token(s).\n");
        assert!(!store.is_blacklisted("past-leeway").await.unwrap());
        assert!(store.is_blacklisted("within-leeway").await.unwrap());
        assert_refused_as_blacklisted(&app, &within).await;
    }
}

dual_test! {
    /// On a terminal, `user create` asks twice with echo off; differing answers create nobody.
    /// The command runs on a pseudo-terminal whose echo is on, as in a user's shell.
    async fn user_create_prompts_twice_on_a_terminal() {
        let app = spawn_app().await;
        let dir = tempfile::tempdir().unwrap();
        let database_url = app.database_url.clone();
        let data_dir = dir.path().join("data");
        let run = move |name: &str, first: &str, second: &str| -> (Option<i32>, String) {
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c")
                .arg("stty echo && exec \"$0\" \"$@\"")
                .arg(assert_cmd::cargo::cargo_bin("doorman"))
                .args(["--database-url", &database_url, "user", "create", name])
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("DOORMAN_DATA_DIR", &data_dir);
            let mut session = rexpect::session::spawn_command(cmd, Some(60_000)).unwrap();
            let mut seen = session.exp_string("Password: ").unwrap();
            wait_for_echo_off(&session);
            session.send_line(first).unwrap();
            seen += &session.exp_string("Password (again): ").unwrap();
            wait_for_echo_off(&session);
            session.send_line(second).unwrap();
            seen += &session.exp_eof().unwrap();
            let code = match session.process().wait().unwrap() {
                rexpect::process::WaitStatus::Exited(_, code) => Some(code),
                _ => None,
            };
            (code, seen)
        };
        let (code, seen) = tokio::task::spawn_blocking({
            let run = run.clone();
            move || run("hana", "hana-password-1", "hana-password-1")
        })
        .await
        .unwrap();
        assert_eq!(code, Some(0), "{seen}");
        assert!(
            !seen.contains("hana-password-1"),
            "the password was echoed: {seen}"
        );
        app.login_as("hana", "hana-password-1").await;

        let (code, seen) =
            tokio::task::spawn_blocking(move || run("ivan", "ivan-password-1", "something-else-1"))
                .await
                .unwrap();
        assert_eq!(code, Some(1), "{seen}");
        assert!(seen.contains("the two passwords differ"), "{seen}");
        assert!(
            app.state
                .store
                .user_by_username("ivan")
                .await
                .unwrap()
                .is_none()
        );
    }
}

/// Waits (up to 10 s) until the program on the terminal has switched echo off.
fn wait_for_echo_off(session: &rexpect::session::PtySession) {
    let terminal = session.process().get_file_handle().unwrap();
    let started = std::time::Instant::now();
    loop {
        let flags = nix::sys::termios::tcgetattr(&terminal).unwrap();
        if !flags
            .local_flags
            .contains(nix::sys::termios::LocalFlags::ECHO)
        {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "echo stayed on at the password prompt"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// With no configuration at all, `serve` generates an Ed25519 key on first start, keeps it
/// owner-only in the data directory, says so in its log, and reuses it on the next start.
#[test]
fn serve_generates_its_key_once_and_says_so() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    // `linger`: how long it serves before SIGTERM (the key set is rechecked every 250 ms).
    let start = |linger: std::time::Duration| -> (String, std::process::ExitStatus) {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("doorman"))
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DOORMAN_KEY_REFRESH_INTERVAL", "250ms")
            .args(["serve", "--bind", "127.0.0.1:0", "--workers", "2"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut log = String::new();
        for line in BufReader::new(child.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            log.push_str(&line);
            log.push('\n');
            if line.contains("doorman is listening") {
                std::thread::sleep(linger);
                // SIGTERM: a graceful stop, exit status 0.
                std::process::Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()
                    .unwrap();
            }
        }
        assert!(log.contains("doorman stopped"), "{log}");
        (log, child.wait().unwrap())
    };
    let (first, status) = start(std::time::Duration::ZERO);
    assert!(status.success(), "{first}");
    assert!(
        first.contains("generated a new signing key") && first.contains("\"alg\":\"EdDSA\""),
        "{first}"
    );
    let key_file = std::fs::read_dir(dir.path().join("doorman-data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pem"))
        .expect("a key file in the data directory");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", key_file.display());
    let pem = std::fs::read_to_string(&key_file).unwrap();

    // Serving a while, with several key-set checks: the key is read (and logged) once.
    let (second, status) = start(std::time::Duration::from_millis(1500));
    assert!(status.success(), "{second}");
    assert!(!second.contains("generated a new"), "{second}");
    assert_eq!(
        second
            .matches("using the signing key from the data directory")
            .count(),
        1,
        "{second}"
    );
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), pem);
}

/// `doorman check --deploy`: on the defaults only the warnings about accepting tokens during a
/// database outage (a default kept for availability) and about the discovery document's URLs
/// following the request (no `public_url`), warnings for what is legal but unwise,
/// and an error (exit 1) for private keys others can read.
#[test]
fn check_deploy_reports_unwise_settings() {
    let dir = tempfile::tempdir().unwrap();
    doorman(dir.path()).arg("migrate").assert().success();
    let out = doorman(dir.path())
        .args(["check", "--deploy"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    const OUTAGE: &str = "WARNING public_url: unset: the discovery document names whatever \
        host each request was sent to, so it is answered Cache-Control: no-store; set it to the \
        https URL clients reach doorman at\n\
        WARNING accept_tokens_during_outage: true: while the database can't \
        be reached, access tokens of deactivated or revoked users keep working until they expire; \
        set it to false to answer 503 instead\n";
    assert_eq!(
        stdout_of(&out),
        format!("{OUTAGE}System check identified 2 issue(s) (0 error(s)).\n")
    );

    let out = doorman(dir.path())
        .args(["check", "--deploy"])
        .env(
            "DOORMAN_SIGNING_KEY",
            "doorman-check-test-secret-0123456789ab",
        )
        .env("DOORMAN_BIND", "0.0.0.0:8000")
        .env("DOORMAN_CORS_ALLOWED_ORIGINS", "*")
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "warnings alone exit 0: {}",
        stderr_of(&out)
    );
    // These seven warnings and no other, each line opening with what it is about (the advice
    // after that is prose).
    let report = stdout_of(&out);
    let expected = [
        "WARNING algorithm: HS256 shares its secret",
        "WARNING signing_key: the secret is short or repetitive",
        "WARNING bind: serving plain HTTP on 0.0.0.0:8000",
        "WARNING public_url: unset",
        "WARNING cors_allowed_origins: \"*\"",
        "WARNING RUST_LOG: debug or trace",
        "WARNING accept_tokens_during_outage: true: while the database",
        "System check identified 7 issue(s) (0 error(s)).",
    ];
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{report}");
    for (line, start) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(start),
            "{start:?} is not at its place in:\n{report}"
        );
    }
    assert_eq!(lines[7], expected[7]);

    use std::os::unix::fs::PermissionsExt;
    let data = dir.path().join("data");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = doorman(dir.path())
        .args(["check", "--deploy"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout_of(&out),
        format!(
            "{OUTAGE}ERROR data_dir: {}: readable by group or others (mode 0755); it holds private \
             keys: chmod go-rwx\nSystem check identified 3 issue(s) (1 error(s)).\n",
            data.display()
        )
    );
    let out = doorman(dir.path()).arg("check").output().unwrap();
    assert!(
        out.status.success(),
        "without --deploy only the configuration is checked"
    );
}

/// `log_format = "text"` gives human lines even when stderr is not a terminal (JSON is the
/// default there, as the access-log test reads).
#[test]
fn log_format_text_is_honoured() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("doorman"))
        .current_dir(dir.path())
        .env_clear()
        .env("DOORMAN_LOG_FORMAT", "text")
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("doorman is listening"))
        .expect("a listening line");
    assert!(!listening.trim_start().starts_with('{'), "{listening}");
    assert!(listening.contains("INFO"), "{listening}");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    for _ in lines {}
    assert!(child.wait().unwrap().success());
}

dual_test! {
    async fn user_and_key_commands_leave_audit_events() {
        let dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::create(dir.path()).await;
        let run = |args: &[&str], stdin: &str| {
            let out = doorman_on(dir.path(), &database)
                .env("DOORMAN_ALGORITHM", "ES256")
                .args(args)
                .write_stdin(stdin.to_owned())
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
            stdout_of(&out)
        };
        run(&["migrate"], "");
        run(&["user", "create", "gus", "--password-stdin"], "gus-password-1\n");
        run(&["user", "set-password", "gus", "--password-stdin"], "gus-password-2\n");
        run(&["user", "deactivate", "gus"], "");
        run(&["user", "activate", "gus"], "");
        run(&["user", "delete", "gus"], "");
        run(&["keys", "generate"], "");
        let rotated = run(&["keys", "rotate"], "");
        let promoted = rotated.split(' ').next().unwrap().to_owned();
        run(&["keys", "generate"], "");
        let listed = run(&["keys", "list"], "");
        let next = listed
            .lines()
            .find(|line| line.contains(" next "))
            .and_then(|line| line.split(' ').next())
            .unwrap()
            .to_owned();
        run(&["keys", "retire", &next], "");

        let store = doorman::store::Store::connect(&database.url).await.unwrap();
        let events = store
            .audit_events(&doorman::store::AuditFilter::default())
            .await
            .unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "user_created",
                "password_set",
                "tokens_revoked",
                "user_deactivated",
                "tokens_revoked",
                "user_activated",
                // Revoked before the user goes, while the token rows still name him.
                "tokens_revoked",
                "user_deleted",
                // The data directory's key, made on first use, taken under management as the
                // current key; then the next key.
                "key_generated",
                "key_generated",
                "key_generated",
                "key_rotated",
                "key_generated",
                "key_retired",
            ]
        );
        // Every user event names gus and his id, the one after his deletion too.
        for event in &events[..8] {
            assert_eq!(event.username.as_deref(), Some("gus"), "{event:?}");
            assert_eq!(event.user_id, events[0].user_id, "{event:?}");
            assert!(event.user_id.is_some());
        }
        assert_eq!(
            events[0].detail.as_deref(),
            Some(r#"{"superuser":false,"active":true}"#)
        );
        let reasons: Vec<String> = [2, 4, 6]
            .iter()
            .map(|&i| {
                let detail: serde_json::Value =
                    serde_json::from_str(events[i].detail.as_deref().unwrap()).unwrap();
                detail["reason"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(reasons, ["password_set", "deactivated", "deleted"]);
        let rotation: serde_json::Value =
            serde_json::from_str(events[11].detail.as_deref().unwrap()).unwrap();
        assert_eq!(rotation["current"], promoted.as_str());
        let retired: serde_json::Value =
            serde_json::from_str(events[13].detail.as_deref().unwrap()).unwrap();
        assert_eq!(retired, serde_json::json!({"kid": next, "by": "command"}));
        let made: serde_json::Value =
            serde_json::from_str(events[8].detail.as_deref().unwrap()).unwrap();
        let adopted: serde_json::Value =
            serde_json::from_str(events[9].detail.as_deref().unwrap()).unwrap();
        assert_eq!(made["state"], "data directory");
        assert_eq!(adopted["state"], "current");
        assert_eq!(made["kid"], adopted["kid"]);
        // Names and ids only: no password, and no key material.
        let table = format!("{events:?}");
        for secret in ["gus-password-1", "gus-password-2", "PRIVATE KEY"] {
            assert!(!table.contains(secret), "{table}");
        }
        store.close().await;
    }
}

/// An audit event at `at` (whole seconds), for tests that need known times.
fn audit_at(kind: &str, username: &str, at: time::OffsetDateTime) -> doorman::store::AuditEvent {
    doorman::store::AuditEvent {
        at: at.replace_nanosecond(0).unwrap(),
        kind: kind.into(),
        username: Some(username.into()),
        user_id: None,
        client_addr: None,
        user_agent: None,
        detail: None,
    }
}

dual_test! {
    async fn audit_lists_the_trail_oldest_first_as_text_or_json() {
        let dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::create(dir.path()).await;
        doorman_on(dir.path(), &database).arg("migrate").assert().success();
        let store = doorman::store::Store::connect(&database.url).await.unwrap();
        let now = time::OffsetDateTime::now_utc();
        let mut failed = audit_at("login_failed", "ivy", now - time::Duration::hours(3));
        failed.client_addr = Some("192.0.2.9".into());
        failed.user_agent = Some("curl/8.5 \"x\"".into());
        let mut created = audit_at("user_created", "jon", now - time::Duration::minutes(30));
        created.user_id = Some(7);
        created.detail = Some(r#"{"superuser":false,"active":true}"#.into());
        let succeeded = audit_at("login_succeeded", "ivy", now - time::Duration::minutes(5));
        for event in [&failed, &created, &succeeded] {
            store.record_audit(event).await.unwrap();
        }
        store.close().await;
        let at = |e: &doorman::store::AuditEvent| {
            e.at.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .unwrap()
        };
        let audit = |args: &[&str]| {
            let out = doorman_on(dir.path(), &database).arg("audit").args(args).output().unwrap();
            assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
            stdout_of(&out)
        };

        assert_eq!(
            audit(&[]),
            format!(
                "{}  login_failed user=\"ivy\" from=192.0.2.9 agent=\"curl/8.5 \\\"x\\\"\"\n\
                 {}  user_created user=\"jon\" id=7 detail={{\"superuser\":false,\"active\":true}}\n\
                 {}  login_succeeded user=\"ivy\"\n",
                at(&failed),
                at(&created),
                at(&succeeded)
            )
        );
        assert_eq!(
            audit(&["--user", "ivy", "--since", "1h"]),
            format!("{}  login_succeeded user=\"ivy\"\n", at(&succeeded))
        );
        assert_eq!(audit(&["--user", "nobody"]), "");

        let rfc3339 = |e: &doorman::store::AuditEvent| {
            e.at.format(&time::format_description::well_known::Rfc3339).unwrap()
        };
        assert_eq!(
            audit(&["--since", "2h", "--json"]),
            format!(
                "{{\"at\":\"{}\",\"kind\":\"user_created\",\"username\":\"jon\",\"user_id\":7,\
                 \"client_addr\":null,\"user_agent\":null,\"detail\":{{\"superuser\":false,\"active\":true}}}}\n\
                 {{\"at\":\"{}\",\"kind\":\"login_succeeded\",\"username\":\"ivy\",\"user_id\":null,\
                 \"client_addr\":null,\"user_agent\":null,\"detail\":null}}\n",
                rfc3339(&created),
                rfc3339(&succeeded)
            )
        );

        let out = doorman_on(dir.path(), &database)
            .args(["audit", "--since", "yesterday"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            stderr_of(&out),
            "error: --since \"yesterday\": expected seconds or a duration like 30m, 1h or 7d\n"
        );
    }
}

dual_test! {
    async fn flushing_prunes_audit_events_past_their_retention() {
        let dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::create(dir.path()).await;
        doorman_on(dir.path(), &database).arg("migrate").assert().success();
        let store = doorman::store::Store::connect(&database.url).await.unwrap();
        let now = time::OffsetDateTime::now_utc();
        let old = audit_at("login_failed", "kim", now - time::Duration::days(100));
        let recent = audit_at("login_failed", "kim", now - time::Duration::days(10));
        for event in [&old, &recent] {
            store.record_audit(event).await.unwrap();
        }
        let flush = |retention: Option<&str>| {
            let mut cmd = doorman_on(dir.path(), &database);
            if let Some(retention) = retention {
                cmd.env("DOORMAN_AUDIT_RETENTION", retention);
            }
            let out = cmd.arg("flush-expired-tokens").output().unwrap();
            assert!(out.status.success(), "{}", stderr_of(&out));
            stdout_of(&out)
        };
        let all = doorman::store::AuditFilter::default();

        // "0" keeps them all, and the answer is the one line it always was.
        assert_eq!(flush(Some("0")), "Deleted 0 expired token(s).\n");
        assert_eq!(store.audit_events(&all).await.unwrap().len(), 2);
        // The default, 90 days, takes the 100-day-old one.
        assert_eq!(
            flush(None),
            "Deleted 0 expired token(s).\nDeleted 1 audit event(s) older than the audit_retention.\n"
        );
        assert_eq!(store.audit_events(&all).await.unwrap(), vec![recent.clone()]);
        assert_eq!(
            flush(Some("7d")),
            "Deleted 0 expired token(s).\nDeleted 1 audit event(s) older than the audit_retention.\n"
        );
        assert!(store.audit_events(&all).await.unwrap().is_empty());
        store.close().await;
    }
}

dual_test! {
    async fn background_pruning_removes_audit_events_past_their_retention() {
        let app = spawn_app_with(&[
            ("DOORMAN_AUDIT_RETENTION", "1d"),
            ("DOORMAN_PRUNE_INTERVAL", "100ms"),
        ])
        .await;
        let store = &app.state.store;
        let now = time::OffsetDateTime::now_utc();
        let old = audit_at("login_failed", "lou", now - time::Duration::days(2));
        let recent = audit_at("login_failed", "lou", now - time::Duration::hours(2));
        store.record_audit(&old).await.unwrap();
        store.record_audit(&recent).await.unwrap();
        let all = doorman::store::AuditFilter::default();
        let started = std::time::Instant::now();
        while store.audit_events(&all).await.unwrap().len() > 1 {
            assert!(started.elapsed() < std::time::Duration::from_secs(15), "never pruned");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(store.audit_events(&all).await.unwrap(), vec![recent]);
    }
}
