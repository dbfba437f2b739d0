//! Login throttling, as an attacker meets it: repeated wrong passwords, parallel bursts,
//! failures spread over many addresses, password spraying, several instances, and Redis.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::reference_app::ReferenceApp;

/// Behind a trusted proxy on loopback, so each request can say which client it is for.
const PROXIED: (&str, &str) = ("DOORMAN_TRUSTED_PROXIES", "127.0.0.1");
/// For tests that don't wait a block out: a first wait no slow machine outlasts. (A block
/// starts when the attempt that earns it is reserved, before its hash.)
const LONG_WAITS: (&str, &str) = ("DOORMAN_LOGIN_BACKOFF_BASE", "30s");

/// A login as the client at `addr` (forwarded by the trusted proxy).
async fn login_from(
    app: &TestApp,
    addr: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    app.client
        .post(app.url("/api/token/"))
        .header("X-Forwarded-For", addr)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

/// A metric's value from the instance's `/metrics` (0 when it hasn't appeared yet).
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = metrics_text(app).await;
    text.lines()
        .filter_map(|line| line.strip_prefix(name))
        .filter_map(|rest| rest.strip_prefix(' '))
        .map(|value| value.trim().parse::<f64>().unwrap())
        .sum()
}

/// Hashes the instance has waited a slot for: one per password check.
async fn hashes(app: &TestApp) -> f64 {
    metric(app, "doorman_password_hash_wait_seconds_count").await
}

async fn assert_throttled(res: reqwest::Response) -> u64 {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1);
    let unit = if wait == 1 { "second" } else { "seconds" };
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"detail": format!("Request was throttled. Expected available in {wait} {unit}.")})
    );
    wait
}

dual_test! {
    /// Five wrong passwords are answered as always; the sixth at once is DRF's 429, costs no
    /// hash, and is audited and counted. Even the right password waits out the block, then
    /// logs in and clears the failures.
    async fn repeated_failures_get_drfs_429_without_hashing() {
        let app = spawn_app().await;
        let before = hashes(&app).await;
        for _ in 0..5 {
            let res = app.post_token(&credentials((ALICE.0, "wrong-password"))).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
        let hashed = hashes(&app).await;
        assert_eq!(hashed, before + 5.0);
        let res = app.post_token(&credentials((ALICE.0, "wrong-password"))).await;
        assert_eq!(assert_throttled(res).await, 1);
        let res = app.post_token(&credentials(ALICE)).await;
        assert_throttled(res).await;
        assert_eq!(hashes(&app).await, hashed, "a throttled attempt hashed");
        assert_eq!(metric(&app, "doorman_logins_throttled_total").await, 2.0);

        let events = app
            .state
            .store
            .audit_events(&doorman::store::AuditFilter::default())
            .await
            .unwrap();
        let throttled: Vec<_> = events.iter().filter(|e| e.kind == "login_throttled").collect();
        assert_eq!(throttled.len(), 2);
        assert_eq!(throttled[0].username.as_deref(), Some("alice"));
        assert_eq!(throttled[0].user_id, Some(1));
        assert_eq!(throttled[0].client_addr.as_deref(), Some("127.0.0.1"));

        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let res = app.post_token(&credentials(ALICE)).await;
        assert_eq!(res.status(), StatusCode::OK);
        // Cleared: five free failures again.
        for _ in 0..5 {
            let res = app.post_token(&credentials((ALICE.0, "wrong-password"))).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
        assert_throttled(app.post_token(&credentials(ALICE)).await).await;
    }
}

dual_test! {
    /// Waits grow: after the block of 1 s, one more failure blocks for 2 s.
    async fn waits_double_after_each_failure_past_the_free_ones() {
        let app = spawn_app().await;
        for _ in 0..5 {
            app.post_token(&credentials((ALICE.0, "wrong-password"))).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let res = app.post_token(&credentials((ALICE.0, "wrong-password"))).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let res = app.post_token(&credentials((ALICE.0, "wrong-password"))).await;
        assert_eq!(assert_throttled(res).await, 2);
    }
}

dual_test! {
    /// Fifty wrong passwords at once get no more through than one at a time would: exactly
    /// the five free ones are checked (401), the rest are throttled (429).
    multi_thread async fn parallel_wrong_logins_pass_no_more_than_the_free_ones() {
        let app = spawn_app_with(&[LONG_WAITS]).await;
        let before = hashes(&app).await;
        let mut burst = Vec::new();
        for _ in 0..50 {
            let (client, url) = (app.client.clone(), app.url("/api/token/"));
            burst.push(tokio::spawn(async move {
                client
                    .post(url)
                    .json(&credentials((ALICE.0, "wrong-password")))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }));
        }
        let mut statuses = Vec::new();
        for request in burst {
            statuses.push(request.await.unwrap());
        }
        let refused = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
        let throttled = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
        assert_eq!((refused, throttled), (5, 45), "{statuses:?}");
        assert_eq!(hashes(&app).await, before + 5.0);
    }
}

dual_test! {
    /// Parallel logins with the right password (a service logging in from several workers
    /// behind one address) are not refused for the failures their reservations count while
    /// in flight: the ones past the free five wait their turn, and every one logs in.
    multi_thread async fn parallel_right_logins_from_one_address_all_get_in() {
        let app = spawn_app_with(&[LONG_WAITS]).await;
        let before = hashes(&app).await;
        let mut burst = Vec::new();
        for _ in 0..30 {
            let (client, url) = (app.client.clone(), app.url("/api/token/"));
            burst.push(tokio::spawn(async move {
                client
                    .post(url)
                    .json(&credentials(ALICE))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }));
        }
        let mut statuses = Vec::new();
        for request in burst {
            statuses.push(request.await.unwrap());
        }
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "{statuses:?}"
        );
        assert_eq!(hashes(&app).await, before + 30.0);
        assert_eq!(metric(&app, "doorman_logins_throttled_total").await, 0.0);
    }
}

/// Sends a login on a raw connection, and hangs up without reading the answer once the
/// server has started on it (its attempt reserved: the throttle's metric of reservations
/// moved, or a password check began).
async fn hang_up_after(app: &TestApp, username: &str, password: &str) {
    use tokio::io::AsyncWriteExt;
    let body = json!({"username": username, "password": password}).to_string();
    let head = format!(
        "POST /api/token/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let before = hashes(app).await;
    let addr = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    // The hash-wait metric counts a password check as it starts: hang up in the middle of it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while hashes(app).await <= before && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    drop(stream);
}

dual_test! {
    /// A login whose client hangs up before the answer is decided all the same: with the right
    /// password it clears its failure (a client's timeouts don't pile up failures that were
    /// never made), and with a wrong one it counts (hanging up gains an attacker nothing).
    multi_thread async fn a_login_whose_client_hangs_up_is_decided_all_the_same() {
        let app = spawn_app_with(&[LONG_WAITS]).await;
        for _ in 0..10 {
            hang_up_after(&app, ALICE.0, ALICE.1).await;
        }
        // Ten abandoned right logins, twice the free failures: none of them stays a failure.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(app.post_token(&credentials(ALICE)).await.status(), StatusCode::OK);

        for _ in 0..5 {
            hang_up_after(&app, ALICE.0, "wrong-password").await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_throttled(app.post_token(&credentials(ALICE)).await).await;
    }
}

/// An attacker failing for alice from many addresses reaches the account's limit, and new
/// addresses are throttled for alice even with her password; but the address she logged in
/// from before still lets her in, and her login there clears the account's failures.
async fn failures_elsewhere_spare_alices_own_address(counters: &[(&str, &str)]) {
    // Waits long enough that none ends during the test.
    let mut settings = vec![
        PROXIED,
        ("DOORMAN_LOGIN_ACCOUNT_FREE_ATTEMPTS", "10"),
        LONG_WAITS,
    ];
    settings.extend_from_slice(counters);
    let app = spawn_app_with(&settings).await;
    let home = "198.51.100.20";
    assert_eq!(
        login_from(&app, home, ALICE.0, ALICE.1).await.status(),
        StatusCode::OK
    );
    let mut statuses = Vec::new();
    for n in 1..=30 {
        let res = login_from(&app, &format!("203.0.113.{n}"), ALICE.0, "guess").await;
        statuses.push(res.status());
    }
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(checked, 10, "{statuses:?}");
    let res = login_from(&app, "192.0.2.99", ALICE.0, ALICE.1).await;
    assert_throttled(res).await;
    let res = login_from(&app, home, ALICE.0, ALICE.1).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "alice is locked out of her own address"
    );
    // Her success cleared the account's failures: new addresses are let in again.
    let res = login_from(&app, "192.0.2.99", ALICE.0, ALICE.1).await;
    assert_eq!(res.status(), StatusCode::OK);
}

dual_test! {
    async fn failures_from_elsewhere_dont_lock_alice_out_of_her_own_address() {
        failures_elsewhere_spare_alices_own_address(&[]).await;
    }
}

#[tokio::test]
async fn with_redis_failures_from_elsewhere_dont_lock_alice_out_of_her_own_address() {
    if let Some(redis) = RedisCounters::for_test("the Redis known-address test") {
        failures_elsewhere_spare_alices_own_address(&redis.settings()).await;
    }
}

/// One address trying one password on many usernames is stopped by the address's own counter,
/// though no username failed twice; other addresses are untouched.
async fn spraying_is_throttled(counters: &[(&str, &str)]) {
    let mut settings = vec![
        PROXIED,
        ("DOORMAN_LOGIN_ADDRESS_FREE_ATTEMPTS", "12"),
        LONG_WAITS,
    ];
    settings.extend_from_slice(counters);
    let app = spawn_app_with(&settings).await;
    let sprayer = "203.0.113.66";
    let mut statuses = Vec::new();
    for n in 0..20 {
        let res = login_from(&app, sprayer, &format!("user{n}"), "Winter2026!").await;
        statuses.push(res.status());
    }
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(checked, 12, "{statuses:?}");
    assert_throttled(login_from(&app, sprayer, ALICE.0, ALICE.1).await).await;
    let res = login_from(&app, "198.51.100.1", ALICE.0, ALICE.1).await;
    assert_eq!(res.status(), StatusCode::OK);
}

dual_test! {
    async fn password_spraying_from_one_address_is_throttled() {
        spraying_is_throttled(&[]).await;
    }
}

#[tokio::test]
async fn with_redis_password_spraying_from_one_address_is_throttled() {
    if let Some(redis) = RedisCounters::for_test("the Redis spraying test") {
        spraying_is_throttled(&redis.settings()).await;
    }
}

dual_test! {
    /// Many people logging in successfully behind one address (an office's NAT) don't fill
    /// its counter: each success takes its own attempt back, and only failures add up.
    async fn successful_logins_dont_fill_the_address_counter() {
        let app = spawn_app_with(&[
            PROXIED,
            ("DOORMAN_LOGIN_ADDRESS_FREE_ATTEMPTS", "3"),
            LONG_WAITS,
        ])
        .await;
        let office = "192.0.2.10";
        for _ in 0..8 {
            assert_eq!(login_from(&app, office, ALICE.0, ALICE.1).await.status(), StatusCode::OK);
        }
        for name in ["bob", "carol", "dave"] {
            let res = login_from(&app, office, name, "wrong-password").await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
        assert_throttled(login_from(&app, office, ALICE.0, ALICE.1).await).await;
    }
}

dual_test! {
    /// An IPv6 client is counted by its /64: hopping between addresses of one subscriber's
    /// block doesn't buy fresh attempts, and another block is another client.
    async fn ipv6_clients_are_counted_by_their_slash_64() {
        let app = spawn_app_with(&[PROXIED, LONG_WAITS]).await;
        for n in 1..=5 {
            let res = login_from(&app, &format!("2001:db8:1:2::{n}"), ALICE.0, "guess").await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
        let res = login_from(&app, "2001:db8:1:2:ffff::99", ALICE.0, ALICE.1).await;
        assert_throttled(res).await;
        let res = login_from(&app, "2001:db8:1:3::1", ALICE.0, ALICE.1).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}

dual_test! {
    /// The sliding login is the same login: failures at either endpoint count together, and
    /// both answer 429.
    async fn the_sliding_login_shares_the_counters() {
        let app = spawn_app_with(&[LONG_WAITS]).await;
        for n in 0..5 {
            let path = if n % 2 == 0 { "/api/token/sliding/" } else { "/api/token/" };
            let res = app.post_json(path, &credentials((ALICE.0, "wrong-password"))).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
        assert_throttled(app.post_json("/api/token/sliding/", &credentials(ALICE)).await).await;
        assert_throttled(app.post_json("/api/token/", &credentials(ALICE)).await).await;
    }
}

dual_test! {
    /// Failures are forgotten `login_throttle_window` after the last one: the background
    /// pruning deletes the counters then, and the username starts afresh.
    async fn the_background_pruning_forgets_old_failures() {
        let app = spawn_app_with(&[
            ("DOORMAN_LOGIN_BACKOFF_BASE", "1s"),
            ("DOORMAN_LOGIN_BACKOFF_MAX", "1s"),
            ("DOORMAN_LOGIN_THROTTLE_WINDOW", "1s"),
            ("DOORMAN_PRUNE_INTERVAL", "1s"),
        ])
        .await;
        for _ in 0..3 {
            let res = app.post_token(&credentials((ALICE.0, "wrong-password"))).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
        // Expired a second after the last failure; pruned at the next tick, within another.
        tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
        // `unlock` counts the rows holding failures, expired or not: none are left.
        assert_eq!(app.state.throttle.unlock(ALICE.0).await.unwrap(), 0);
        for _ in 0..5 {
            let res = app.post_token(&credentials((ALICE.0, "wrong-password"))).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
        assert_eq!(app.state.throttle.unlock(ALICE.0).await.unwrap(), 2);
    }
}

dual_test! {
    /// Requests refused before any credential is checked (a field missing) count nowhere.
    async fn a_request_missing_a_field_counts_nowhere() {
        let app = spawn_app_with(&[LONG_WAITS]).await;
        for _ in 0..10 {
            let res = app.post_token(&json!({"username": ALICE.0})).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        }
        for _ in 0..5 {
            let res = app.post_token(&credentials((ALICE.0, "wrong-password"))).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
        assert_throttled(app.post_token(&credentials(ALICE)).await).await;
    }
}

dual_test! {
    /// Two instances on one database share the counters: a burst spread over both gets no
    /// more failures checked than one instance would, and both refuse once the limit is
    /// reached.
    multi_thread async fn instances_on_one_database_share_the_counters() {
        let first = spawn_app_with(&[LONG_WAITS]).await;
        let second = spawn_second_instance(&first, &[LONG_WAITS]).await;
        let mut burst = Vec::new();
        for n in 0..40 {
            let app = if n % 2 == 0 { &first } else { &second };
            let (client, url) = (app.client.clone(), app.url("/api/token/"));
            burst.push(tokio::spawn(async move {
                client
                    .post(url)
                    .json(&credentials((ALICE.0, "wrong-password")))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }));
        }
        let mut statuses = Vec::new();
        for request in burst {
            statuses.push(request.await.unwrap());
        }
        let refused = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
        assert_eq!(refused, 5, "{statuses:?}");
        assert_throttled(second.post_token(&credentials(ALICE)).await).await;
        assert_throttled(first.post_token(&credentials(ALICE)).await).await;
    }
}

dual_test! {
    /// `login_throttle = false` keeps no counters at all.
    async fn throttling_can_be_turned_off() {
        let app = spawn_app_with(&[("DOORMAN_LOGIN_THROTTLE", "false")]).await;
        for _ in 0..8 {
            let res = app.post_token(&credentials((ALICE.0, "wrong-password"))).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
        assert_eq!(app.post_token(&credentials(ALICE)).await.status(), StatusCode::OK);
    }
}

dual_test! {
    /// `doorman user unlock` clears the username's failures: throttled before, let in after,
    /// and the unlock is in the audit trail.
    async fn user_unlock_clears_the_failures() {
        let app = spawn_app_with(&[PROXIED, LONG_WAITS]).await;
        for addr in ["203.0.113.1", "203.0.113.2"] {
            for _ in 0..5 {
                login_from(&app, addr, ALICE.0, "wrong-password").await;
            }
            assert_throttled(login_from(&app, addr, ALICE.0, ALICE.1).await).await;
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_doorman"))
            .args(["user", "unlock", "alice"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DOORMAN_DATABASE_URL", &app.database_url)
            .env("DOORMAN_DATA_DIR", app.data_dir())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // Two pairs and the account.
        assert_eq!(stdout, "Unlocked alice: cleared 3 failed-login counters (database).\n");
        for addr in ["203.0.113.1", "203.0.113.2"] {
            assert_eq!(login_from(&app, addr, ALICE.0, ALICE.1).await.status(), StatusCode::OK);
        }
        let events = app
            .state
            .store
            .audit_events(&doorman::store::AuditFilter::default())
            .await
            .unwrap();
        let unlocked = events.iter().find(|e| e.kind == "user_unlocked").unwrap();
        assert_eq!(unlocked.user_id, Some(1));
        // Nothing to unlock and no such user: an error, not a silent success.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_doorman"))
            .args(["user", "unlock", "nobody"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DOORMAN_DATABASE_URL", &app.database_url)
            .env("DOORMAN_DATA_DIR", app.data_dir())
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("no user named \"nobody\""));
    }
}

/// Redis at 127.0.0.1:6379 (or `DOORMAN_TEST_REDIS_URL`) with a key prefix of the test's
/// own, so tests running at once don't share counters.
struct RedisCounters {
    url: String,
    prefix: String,
}

impl RedisCounters {
    /// `None` after saying why `what` can't run (a failure under `DOORMAN_REQUIRE_ALL=1`).
    fn for_test(what: &str) -> Option<RedisCounters> {
        let url = std::env::var("DOORMAN_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let reachable = url
            .strip_prefix("redis://")
            .map(|rest| rest.split('/').next().unwrap_or(rest))
            .and_then(|host| std::net::ToSocketAddrs::to_socket_addrs(host).ok()?.next())
            .is_some_and(|addr| {
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
                    .is_ok()
            });
        if !reachable {
            skip_or_fail(what, &format!("Redis is unreachable at {url}"));
            return None;
        }
        let prefix = format!("doorman-test-{}", uuid::Uuid::new_v4().simple());
        Some(RedisCounters { url, prefix })
    }

    /// The settings that use it; what the test leaves there expires within the hour.
    fn settings(&self) -> [(&str, &str); 4] {
        [
            ("DOORMAN_RATE_LIMIT_URL", self.url.as_str()),
            ("DOORMAN_RATE_LIMIT_PREFIX", self.prefix.as_str()),
            ("DOORMAN_LOGIN_THROTTLE_WINDOW", "1h"),
            ("DOORMAN_LOGIN_KNOWN_ADDRESS_TTL", "1h"),
        ]
    }
}

/// Two instances with their own SQLite files share the counters through Redis: the limit
/// holds across them, under a parallel burst too, and `user unlock` clears it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_counters_hold_across_instances() {
    let Some(redis) = RedisCounters::for_test("the Redis throttling test") else {
        return;
    };
    let mut settings = redis.settings().to_vec();
    settings.push(LONG_WAITS);
    let first = spawn_app_with(&settings).await;
    let second = spawn_app_with(&settings).await;
    assert_ne!(first.database_url, second.database_url);

    let mut burst = Vec::new();
    for n in 0..50 {
        let app = if n % 2 == 0 { &first } else { &second };
        let (client, url) = (app.client.clone(), app.url("/api/token/"));
        burst.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&credentials((ALICE.0, "wrong-password")))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut statuses = Vec::new();
    for request in burst {
        statuses.push(request.await.unwrap());
    }
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(refused, 5, "{statuses:?}");
    assert_throttled(first.post_token(&credentials(ALICE)).await).await;
    assert_throttled(second.post_token(&credentials(ALICE)).await).await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_doorman"))
        .args(["user", "unlock", "alice"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOORMAN_DATABASE_URL", &first.database_url)
        .env("DOORMAN_DATA_DIR", first.data_dir())
        .env("DOORMAN_RATE_LIMIT_URL", &redis.url)
        .env("DOORMAN_RATE_LIMIT_PREFIX", &redis.prefix)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Unlocked alice: cleared 2 failed-login counters (redis).\n"
    );
    assert_eq!(
        second.post_token(&credentials(ALICE)).await.status(),
        StatusCode::OK
    );
}

/// With the counters out of reach, a login is answered 503 with `Retry-After`: never let
/// through unthrottled, and never a password checked.
#[tokio::test]
async fn unreachable_counters_answer_503_not_an_unthrottled_login() {
    // Nothing listens on port 1.
    let app = spawn_app_with(&[("DOORMAN_RATE_LIMIT_URL", "redis://127.0.0.1:1")]).await;
    let before = hashes(&app).await;
    for credentials in [credentials(ALICE), credentials((ALICE.0, "wrong"))] {
        let res = app.post_token(&credentials).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().contains_key("retry-after"));
    }
    assert_eq!(hashes(&app).await, before);
}

/// A Redis server of the test's own on a free port, stopped when dropped.
struct OwnRedis {
    child: std::process::Child,
}

impl OwnRedis {
    fn start(port: u16) -> Option<OwnRedis> {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let redis = OwnRedis { child };
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(redis);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        None
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis going away while doorman runs: logins are answered 503 (never let through
/// unthrottled, no password checked) until it is back, and then counted again.
#[tokio::test]
async fn a_redis_outage_answers_503_until_it_is_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Some(redis) = OwnRedis::start(port) else {
        skip_or_fail("the Redis outage test", "redis-server could not be started");
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let app = spawn_app_with(&[("DOORMAN_RATE_LIMIT_URL", &url), LONG_WAITS]).await;
    assert_eq!(
        app.post_token(&credentials(ALICE)).await.status(),
        StatusCode::OK
    );
    let res = app
        .post_token(&credentials((ALICE.0, "wrong-password")))
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    drop(redis);
    let before = hashes(&app).await;
    for credentials in [credentials(ALICE), credentials((ALICE.0, "wrong-password"))] {
        let res = app.post_token(&credentials).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().contains_key("retry-after"));
    }
    assert_eq!(
        hashes(&app).await,
        before,
        "a password was checked without its counters"
    );

    // Back (empty: it kept nothing): logins are counted from scratch.
    let _redis = OwnRedis::start(port).unwrap();
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        status = app
            .post_token(&credentials((ALICE.0, "wrong-password")))
            .await
            .status();
        if status != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for _ in 0..4 {
        let res = app
            .post_token(&credentials((ALICE.0, "wrong-password")))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_throttled(app.post_token(&credentials(ALICE)).await).await;
}

/// A real login's 429 has the shape DRF's throttle gives it: the reference app's login view
/// behind DRF's own throttle answers with the same status, content type, `Retry-After` and
/// body text for the same wait, the singular "1 second" included.
#[tokio::test]
async fn a_throttled_login_is_answered_as_drf_answers() {
    let Some(django) = ReferenceApp::start(TEST_SECRET, false).await else {
        return;
    };
    let client = reqwest::Client::new();
    for (path, base) in [("/throttled/second/", "1s"), ("/throttled/minute/", "60s")] {
        let mut theirs = None;
        for _ in 0..4 {
            let res = client
                .post(format!("{}{path}", django.base_url))
                .json(&json!({"username": "alice", "password": "wrong"}))
                .send()
                .await
                .unwrap();
            if res.status() == StatusCode::TOO_MANY_REQUESTS {
                theirs = Some(res);
                break;
            }
        }
        let theirs = theirs.unwrap_or_else(|| panic!("{path}: no 429 in a burst of four"));
        let their_wait = theirs.headers()["retry-after"].to_str().unwrap().to_owned();
        let their_type = theirs.headers()["content-type"].clone();
        let their_body = theirs.text().await.unwrap();

        let app = spawn_app_with(&[
            ("DOORMAN_LOGIN_BACKOFF_BASE", base),
            ("DOORMAN_LOGIN_BACKOFF_MAX", base),
        ])
        .await;
        for _ in 0..5 {
            app.post_token(&credentials((ALICE.0, "wrong"))).await;
        }
        // Every wait is `base` (base = max); on a machine slow enough that one ended before
        // the next attempt, the attempt after earns another.
        let mut ours = app.post_token(&credentials((ALICE.0, "wrong"))).await;
        for _ in 0..10 {
            if ours.status() == StatusCode::TOO_MANY_REQUESTS {
                break;
            }
            ours = app.post_token(&credentials((ALICE.0, "wrong"))).await;
        }
        assert_eq!(ours.status(), StatusCode::TOO_MANY_REQUESTS);
        let our_wait = ours.headers()["retry-after"].to_str().unwrap().to_owned();
        assert_eq!(ours.headers()["content-type"], their_type, "{path}");
        let our_body = ours.text().await.unwrap();
        // The waits may differ by the second that passed: compare the answers with each
        // one's own wait written in.
        assert_eq!(
            our_body.replace(&our_wait, "N"),
            their_body.replace(&their_wait, "N"),
            "{path}"
        );
        assert_eq!(
            our_wait == "1",
            their_wait == "1",
            "{path}: {our_wait} vs {their_wait}"
        );
    }
}
