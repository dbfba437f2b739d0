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

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::child::{Server, create_user, migrate};
use crate::helpers::{Backend, TestDatabase, backend};

const CLIENTS: usize = 4;
const PASSWORD: &str = "crash-test-password-1";

/// A random number below `n`, from a v4 UUID's random bits (no random crate needed here).
fn random_below(n: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() as u64) % n
}

/// The child's settings: rotation with blacklisting after it.
const SETTINGS: &[(&str, &str)] = &[
    ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
    ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
    // The reuse grace takes a replay of the latest rotated-out token, for a few seconds, as
    // a retry after a lost answer (which is what a crash makes); off, so that every
    // rotated-out token must be refused and a lost rotation would show.
    ("DOORMAN_REFRESH_REUSE_GRACE", "0"),
];

/// A request that was sent but got no answer: the server died under it.
#[derive(Debug, Clone)]
enum InFlight {
    Login,
    Rotation { old: String },
    Blacklist { refresh: String },
    RevokeAll { refresh: String },
}

/// One client's record of what the server acknowledged during a run.
#[derive(Debug, Default)]
struct Ledger {
    /// Every refresh token the client received (from a login or a rotation answered 200).
    issued: Vec<String>,
    /// The token the client holds: the newest successor, not spent by any acknowledged answer.
    current: Option<(String, String)>,
    /// Access tokens received since the last revoke-all answered 200.
    access: Vec<String>,
    /// Access tokens received before a revoke-all answered 200: refused.
    revoked_access: Vec<String>,
    logins: usize,
    rotations: usize,
    blacklists: usize,
    revocations: usize,
    in_flight: Option<InFlight>,
    /// Answers no crash explains (an unexpected status during the load).
    anomalies: Vec<String>,
}

async fn post(
    client: &Client,
    url: String,
    body: Value,
    access: Option<&str>,
) -> Result<(StatusCode, Value), reqwest::Error> {
    let mut request = client.post(url).json(&body);
    if let Some(access) = access {
        request = request.bearer_auth(access);
    }
    let res = request.send().await?;
    let status = res.status();
    let body = res.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// The pair in a 200 answer of the login or refresh view.
fn pair(body: &Value) -> Option<(String, String)> {
    Some((
        body["refresh"].as_str()?.to_owned(),
        body["access"].as_str()?.to_owned(),
    ))
}

/// Logs in, rotates, blacklists and revokes as `username` as fast as answers come, until the
/// server stops answering; the ledger of what it acknowledged. `ready` is waited on after the
/// first login, so that the kill falls among the writes, not among the first logins' hashing.
async fn load(
    client: Client,
    base: String,
    username: String,
    ready: std::sync::Arc<tokio::sync::Barrier>,
) -> Ledger {
    let mut ledger = Ledger::default();
    loop {
        let Some((refresh, access)) = ledger.current.clone() else {
            let sent = post(
                &client,
                format!("{base}/api/token/"),
                json!({"username": username, "password": PASSWORD}),
                None,
            )
            .await;
            match sent {
                Err(_) => {
                    ledger.in_flight = Some(InFlight::Login);
                    return ledger;
                }
                Ok((StatusCode::OK, body)) => match pair(&body) {
                    Some((r, a)) => {
                        ledger.issued.push(r.clone());
                        ledger.access.push(a.clone());
                        ledger.current = Some((r, a));
                        ledger.logins += 1;
                        if ledger.logins == 1 {
                            ready.wait().await;
                        }
                    }
                    None => ledger
                        .anomalies
                        .push(format!("login 200 without a pair: {body}")),
                },
                Ok((status, _))
                    if status == StatusCode::SERVICE_UNAVAILABLE
                        || status == StatusCode::TOO_MANY_REQUESTS => {}
                Ok((status, body)) => ledger.anomalies.push(format!("login {status}: {body}")),
            }
            continue;
        };
        // Mostly rotations, the write that matters most; now and then a blacklist or a logout
        // everywhere, which end the chain and make the client log in again (a login hashes a
        // password, a hundred times a rotation's work: rarer, so the kill finds rotations too).
        match random_below(40) {
            0..=37 => {
                let sent = post(
                    &client,
                    format!("{base}/api/token/refresh/"),
                    json!({"refresh": refresh}),
                    None,
                )
                .await;
                match sent {
                    Err(_) => {
                        ledger.in_flight = Some(InFlight::Rotation { old: refresh });
                        return ledger;
                    }
                    Ok((StatusCode::OK, body)) => match pair(&body) {
                        Some((r, a)) => {
                            ledger.issued.push(r.clone());
                            ledger.access.push(a.clone());
                            ledger.current = Some((r, a));
                            ledger.rotations += 1;
                        }
                        None => ledger
                            .anomalies
                            .push(format!("refresh 200 without a pair: {body}")),
                    },
                    Ok((StatusCode::SERVICE_UNAVAILABLE, _)) => {}
                    Ok((status, body)) => {
                        // The token is this client's alone and unspent by any answer it got.
                        ledger
                            .anomalies
                            .push(format!("refresh of the current token {status}: {body}"));
                        ledger.current = None;
                    }
                }
            }
            38 => {
                let sent = post(
                    &client,
                    format!("{base}/api/token/blacklist/"),
                    json!({"refresh": refresh}),
                    None,
                )
                .await;
                match sent {
                    Err(_) => {
                        ledger.in_flight = Some(InFlight::Blacklist { refresh });
                        return ledger;
                    }
                    Ok((StatusCode::OK, _)) => {
                        ledger.current = None;
                        ledger.blacklists += 1;
                    }
                    Ok((StatusCode::SERVICE_UNAVAILABLE, _)) => {}
                    Ok((status, body)) => {
                        ledger
                            .anomalies
                            .push(format!("blacklist of the current token {status}: {body}"));
                        ledger.current = None;
                    }
                }
            }
            _ => {
                let sent = post(
                    &client,
                    format!("{base}/api/token/revoke-all/"),
                    json!({}),
                    Some(&access),
                )
                .await;
                match sent {
                    Err(_) => {
                        ledger.in_flight = Some(InFlight::RevokeAll { refresh });
                        return ledger;
                    }
                    Ok((StatusCode::OK, _)) => {
                        ledger.current = None;
                        let before = std::mem::take(&mut ledger.access);
                        ledger.revoked_access.extend(before);
                        ledger.revocations += 1;
                    }
                    Ok((StatusCode::SERVICE_UNAVAILABLE, _)) => {}
                    Ok((status, body)) => {
                        ledger
                            .anomalies
                            .push(format!("revoke-all {status}: {body}"));
                        ledger.current = None;
                    }
                }
            }
        }
    }
}

/// What the restarted server says to a refresh with `token`.
async fn refresh_status(client: &Client, base: &str, token: &str) -> StatusCode {
    post(
        client,
        format!("{base}/api/token/refresh/"),
        json!({"refresh": token}),
        None,
    )
    .await
    .map_or(StatusCode::BAD_GATEWAY, |(status, _)| status)
}

/// Checks a ledger against the restarted server: the failures found, how many requests that
/// took, and whether the write in flight at the kill (if any, but a login) took effect.
async fn check(client: &Client, base: &str, ledger: &Ledger) -> (Vec<String>, usize, Option<bool>) {
    let mut failures = ledger.anomalies.clone();
    let mut checked = 0;
    let mut took_effect = None;
    let doubtful = match &ledger.in_flight {
        Some(InFlight::Rotation { old }) => Some(old.clone()),
        Some(InFlight::Blacklist { refresh }) | Some(InFlight::RevokeAll { refresh }) => {
            Some(refresh.clone())
        }
        Some(InFlight::Login) | None => None,
    };
    let current = ledger.current.as_ref().map(|(r, _)| r.clone());
    // Every token but the current one was spent by an acknowledged rotation, blacklist or
    // revoke-all: refused, crash or not.
    for (at, token) in ledger.issued.iter().enumerate() {
        if Some(token) == current.as_ref() {
            continue;
        }
        checked += 1;
        let status = refresh_status(client, base, token).await;
        if status != StatusCode::UNAUTHORIZED {
            failures.push(format!(
                "a token spent by an acknowledged answer got {status} after the crash: token {} of the {} issued, {} rotations acknowledged, in flight {:?}",
                at + 1,
                ledger.issued.len(),
                ledger.rotations,
                ledger.in_flight,
            ));
        }
    }
    for access in &ledger.revoked_access {
        checked += 1;
        let status = client
            .get(format!("{base}/hello/"))
            .bearer_auth(access)
            .send()
            .await
            .map_or(StatusCode::BAD_GATEWAY, |r| r.status());
        if status != StatusCode::UNAUTHORIZED {
            failures.push(format!(
                "an access token issued before an acknowledged revoke-all got {status}"
            ));
        }
    }
    if let Some(token) = current {
        let status = refresh_status(client, base, &token).await;
        if doubtful.as_ref() == Some(&token) {
            took_effect = Some(status == StatusCode::UNAUTHORIZED);
            // In flight at the kill: it happened or it didn't, never a 500.
            if status != StatusCode::OK && status != StatusCode::UNAUTHORIZED {
                failures.push(format!(
                    "the token of a request in flight at the kill got {status}"
                ));
            }
        } else {
            checked += 1;
            if status != StatusCode::OK {
                failures.push(format!("the newest successor of acknowledged rotations got {status} after the crash: {:?}", ledger.in_flight));
            }
        }
    }
    (failures, checked, took_effect)
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
        // Writes in flight at a kill: (took effect, did not).
        let mut in_flight = (0, 0);
        let mut failures = Vec::new();
        for kill in 1..=kills {
            let ready = std::sync::Arc::new(tokio::sync::Barrier::new(users.len() + 1));
            let tasks: Vec<_> = users
                .iter()
                .map(|user| {
                    let (client, base) = (client.clone(), server.base.clone());
                    tokio::spawn(load(client, base, user.clone(), ready.clone()))
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
                let (found, n, took_effect) = check(&client, &server.base, ledger).await;
                checked += n;
                match took_effect {
                    Some(true) => in_flight.0 += 1,
                    Some(false) => in_flight.1 += 1,
                    None => {}
                }
                failures.extend(found.into_iter().map(|f| format!("kill {kill}: {f}")));
            }
            checked_total += checked;
            let acknowledged: usize = ledgers.iter().map(|l| l.logins + l.rotations + l.blacklists + l.revocations).sum();
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
                 writes in flight at a kill: {} took effect, {} did not; \
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
