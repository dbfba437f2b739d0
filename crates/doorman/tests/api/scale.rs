//! Several doorman processes on one database: token state is shared and races are settled in
//! the database, whichever instance a request reaches. Each test runs on PostgreSQL (the
//! deployment this is for) and on one SQLite file shared by both processes.

use std::process::{Child, Command, Stdio};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// A `doorman serve` process on a free port.
struct Instance {
    base: String,
    child: Child,
}

impl Instance {
    fn start(dir: &std::path::Path, database: &TestDatabase, env: &[(&str, &str)]) -> Instance {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin("doorman"));
        command
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DOORMAN_DATABASE_URL", &database.url)
            .env("DOORMAN_DATA_DIR", dir.join("data"))
            .env("DOORMAN_PASSWORD_HASH_WORKERS", "1")
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let address = |line: &str| {
            serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|entry| entry["addr"].as_str().map(str::to_owned))
        };
        let log = lines_until(&stderr_lines(&mut child), |line| address(line).is_some());
        let base = format!("http://{}", address(log.last().unwrap()).unwrap());
        Instance { base, child }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The CLI against the shared database.
fn cli(dir: &std::path::Path, database: &TestDatabase, args: &[&str], stdin: &str) {
    let out = assert_cmd::Command::cargo_bin("doorman")
        .unwrap()
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOORMAN_DATABASE_URL", &database.url)
        .env("DOORMAN_DATA_DIR", dir.join("data"))
        .args(args)
        .write_stdin(stdin.to_owned())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn post(client: &Client, url: String, body: Value) -> (StatusCode, Value) {
    let res = client.post(url).json(&body).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

/// Both instances sign with the same configured Ed25519 key and rotate with blacklisting.
fn shared_settings(pem: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DOORMAN_ALGORITHM", "EdDSA".to_owned()),
        ("DOORMAN_SIGNING_KEY", pem.to_owned()),
        ("DOORMAN_ROTATE_REFRESH_TOKENS", "true".to_owned()),
        ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true".to_owned()),
    ]
}

fn start_two(dir: &std::path::Path, database: &TestDatabase) -> (Instance, Instance) {
    let (_, pem) = doorman_token::Key::generate_ed25519().unwrap();
    let settings = shared_settings(&pem);
    let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Migrate once up front; both then start on the migrated schema.
    cli(dir, database, &["migrate"], "");
    (
        Instance::start(dir, database, &env),
        Instance::start(dir, database, &env),
    )
}

dual_test! {
    /// Login at A, refresh at B, blacklist at B: A refuses the blacklisted token. A user made
    /// with the CLI logs in at both, and each verifies the other's tokens.
    async fn two_instances_share_users_tokens_and_the_blacklist() {
        let dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::create(dir.path()).await;
        let (a, b) = start_two(dir.path(), &database);
        let nina = ("nina", "nina-password-1");
        cli(dir.path(), &database, &["user", "create", nina.0, "--password-stdin"], &format!("{}\n", nina.1));
        let client = Client::new();
        let (_, access_b) = obtain_pair_at(&client, &b.base, nina).await;
        let (refresh, access) = obtain_pair_at(&client, &a.base, nina).await;

        // Each verifies the other's tokens.
        for (instance, token) in [(&a, &access_b), (&b, &access)] {
            assert_eq!(get_hello_at(&client, &instance.base, token).await.status(), StatusCode::OK);
        }

        // Refresh at B (rotating), then blacklist the new token at B.
        let (status, refreshed) = post(&client, b.url("/api/token/refresh/"), json!({"refresh": refresh})).await;
        assert_eq!(status, StatusCode::OK, "{refreshed}");
        let (status, body) = post(&client, b.url("/api/token/blacklist/"), json!({"refresh": refreshed["refresh"]})).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // A refuses both the token B rotated out and the one B blacklisted.
        for token in [json!(refresh), refreshed["refresh"].clone()] {
            let (status, body) = post(&client, a.url("/api/token/refresh/"), json!({"refresh": token})).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(body, json!({"detail": "Token is blacklisted", "code": "token_not_valid"}));
            let (status, body) = post(&client, a.url("/api/token/verify/"), json!({"token": token})).await;
            assert_eq!(
                (status, body),
                (StatusCode::BAD_REQUEST, json!({"non_field_errors": ["Token is blacklisted"]}))
            );
        }
    }
}

dual_test! {
    /// Twenty refreshes of one token, split across two processes: exactly one rotates it, and
    /// the others (inside `refresh_reuse_grace`) are given its successor, on either process.
    multi_thread async fn twenty_refreshes_across_two_instances_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::create(dir.path()).await;
        let (a, b) = start_two(dir.path(), &database);
        let omar = ("omar", "omar-password-1");
        cli(dir.path(), &database, &["user", "create", omar.0, "--password-stdin"], &format!("{}\n", omar.1));
        let client = Client::new();
        let (refresh, _) = obtain_pair_at(&client, &a.base, omar).await;
        let body = json!({"refresh": refresh});
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(20));
        let mut tasks = Vec::new();
        for i in 0..20 {
            let url = if i % 2 == 0 { a.url("/api/token/refresh/") } else { b.url("/api/token/refresh/") };
            let (client, body, barrier) = (client.clone(), body.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                post(&client, url, body).await
            }));
        }
        let mut successors = std::collections::BTreeSet::new();
        for task in tasks {
            let (status, body) = task.await.unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
            successors.insert(body["refresh"].as_str().unwrap().to_owned());
        }
        assert_eq!(successors.len(), 1, "exactly one refresh must rotate: {successors:?}");
    }
}

dual_test! {
    /// Without any cron job, expired outstanding and blacklisted rows disappear; live ones stay.
    /// On PostgreSQL an instance holding the pruning lock keeps the others from pruning.
    async fn expired_tokens_are_pruned_in_the_background() {
        let app = spawn_app_with(&[("DOORMAN_PRUNE_INTERVAL", "1")]).await;
        let store = &app.state.store;
        let now = time::OffsetDateTime::now_utc();
        let expired = row("expired", now - time::Duration::seconds(1));
        let live = row("live", now + time::Duration::hours(1));
        store.blacklist(&expired).await.unwrap();
        store.blacklist(&live).await.unwrap();
        let started = std::time::Instant::now();
        while store.is_blacklisted("expired").await.unwrap() {
            assert!(started.elapsed() < std::time::Duration::from_secs(15), "never pruned");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(store.is_blacklisted("live").await.unwrap());

        if backend() == Backend::Postgres {
            use sqlx::Connection;
            let mut holder = sqlx::PgConnection::connect(&app.database_url).await.unwrap();
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(doorman::store::PRUNE_LOCK)
                .execute(&mut holder)
                .await
                .unwrap();
            store.blacklist(&row("expired-2", now - time::Duration::seconds(1))).await.unwrap();
            assert_eq!(store.prune_expired(now, std::time::Duration::ZERO).await.unwrap(), None, "the lock is held");
            sqlx::query("SELECT pg_advisory_unlock_all()")
                .execute(&mut holder)
                .await
                .unwrap();
            // Free again: this call or the background task (whichever runs first) prunes it.
            assert!(store.prune_expired(now, std::time::Duration::ZERO).await.unwrap().is_some());
            assert!(!store.is_blacklisted("expired-2").await.unwrap());
        }
    }
}

dual_test! {
    /// With `leeway`, a token still decodes for that long after its `exp`: the background job
    /// keeps its blacklist row until then, so it can't be refreshed again in the meantime, and
    /// prunes it once `exp + leeway` has passed.
    async fn background_pruning_waits_out_the_leeway() {
        let app = spawn_app_with(&[
            ("DOORMAN_LEEWAY", "30"),
            ("DOORMAN_PRUNE_INTERVAL", "100ms"),
        ])
        .await;
        let store = &app.state.store;
        let (within, within_row) = expired_refresh("within-leeway", 1);
        let (_, past_row) = expired_refresh("past-leeway", 31);
        store.blacklist(&within_row).await.unwrap();
        store.blacklist(&past_row).await.unwrap();
        // Once the job has pruned the row past the leeway, it has also looked at the other.
        let started = std::time::Instant::now();
        while store.is_blacklisted("past-leeway").await.unwrap() {
            assert!(started.elapsed() < std::time::Duration::from_secs(15), "never pruned");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(store.is_blacklisted("within-leeway").await.unwrap());
        assert_refused_as_blacklisted(&app, &within).await;
    }
}
