//! Refresh-token families and reuse detection (RFC 9700 section 4.14.2): with rotation and
//! blacklisting on, a rotated-out refresh token presented again after `refresh_reuse_grace`
//! revokes every token that descends from the same login, on every instance. Inside the window
//! it revokes nothing and is answered with the same successor its rotation made, while that
//! one is live, and a new access token; once the successor is rotated out or blacklisted the
//! replay is refused.

use std::time::Duration;

use doorman::store::{AuditEvent, AuditFilter};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const BLACKLISTED: &str = r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#;

/// Rotation with blacklisting, and the grace window given.
fn rotating(grace: &'static str) -> [(&'static str, &'static str); 3] {
    [
        ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
        ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
        ("DOORMAN_REFRESH_REUSE_GRACE", grace),
    ]
}

/// Refreshes `refresh` at `app`, expecting success; the rotated refresh token.
async fn rotate(app: &TestApp, refresh: &str) -> String {
    let res = app.refresh(refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["refresh"].as_str().unwrap().to_owned()
}

/// A refresh sent as an attacker would, with a user agent of its own.
async fn replay(app: &TestApp, refresh: &str) -> (StatusCode, String) {
    let res = app
        .client
        .post(app.url("/api/token/refresh/"))
        .header("user-agent", "replayer/1.0")
        .json(&json!({"refresh": refresh}))
        .send()
        .await
        .unwrap();
    status_body(res).await
}

async fn family_revocations(app: &TestApp) -> Vec<AuditEvent> {
    app.state
        .store
        .audit_events(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "family_revoked")
        .collect()
}

/// The value of a counter without labels in `/metrics`, 0 when it was never counted.
async fn counter(app: &TestApp, name: &str) -> f64 {
    let text = metrics_text(app).await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn assert_verify_refuses(app: &TestApp, token: &str) {
    let (status, body) = status_body(app.verify(token).await).await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            r#"{"non_field_errors":["Token is blacklisted"]}"#
        )
    );
}

dual_test! {
    /// A thief's copy of an early token, replayed after the grace window, revokes the family:
    /// the live end of the chain is refused from then on (refresh and verify), as is every
    /// other member, while another login of the same user goes on. The revocation is in the
    /// audit trail with the replaying client and in the metrics; the answer is the usual one.
    async fn a_replay_after_the_grace_window_revokes_the_family() {
        let app = spawn_app_with(&rotating("1s")).await;
        let (r1, _) = app.login().await;
        let (other, _) = app.login().await;
        let r2 = rotate(&app, &r1).await;
        let r3 = rotate(&app, &r2).await;
        let r4 = rotate(&app, &r3).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;

        assert_eq!(replay(&app, &r1).await, (StatusCode::UNAUTHORIZED, BLACKLISTED.to_owned()));
        assert_refused_as_blacklisted(&app, &r4).await;
        assert_verify_refuses(&app, &r4).await;
        for spent in [&r2, &r3] {
            assert_refused_as_blacklisted(&app, spent).await;
        }
        let other_next = rotate(&app, &other).await;
        assert_eq!(app.verify(&other_next).await.status(), StatusCode::OK);

        let events = family_revocations(&app).await;
        assert_eq!(events.len(), 1, "{events:?}");
        let event = &events[0];
        assert_eq!(event.user_id, Some(1));
        assert_eq!(event.username.as_deref(), Some(ALICE.0));
        assert_eq!(event.client_addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(event.user_agent.as_deref(), Some("replayer/1.0"));
        assert_eq!(event.detail.as_deref(), Some(r#"{"revoked":1}"#));
        // Replays of r2 and r3 above were detected too, with nothing left to revoke.
        assert_eq!(counter(&app, "doorman_refresh_reuse_detected_total").await, 3.0);
    }
}

/// The refresh token in a successful refresh's answer, and the answer's access token.
async fn refreshed(res: reqwest::Response) -> (String, String) {
    let (status, body) = status_body(res).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    (
        body["refresh"].as_str().unwrap().to_owned(),
        body["access"].as_str().unwrap().to_owned(),
    )
}

fn jti_of(token: &str) -> String {
    payload(token)["jti"].as_str().unwrap().to_owned()
}

/// The claims the store's refresh rows are about: jti, iat, exp.
fn times_of(token: &str) -> (String, i64, i64) {
    let claims = payload(token);
    (
        jti_of(token),
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    )
}

/// A labelled counter in `/metrics`, 0 when it was never counted.
async fn replays(app: &TestApp, outcome: &str) -> f64 {
    counter(
        app,
        &format!("doorman_refresh_replays_total{{outcome=\"{outcome}\"}}"),
    )
    .await
}

/// How many outstanding rows the family of the login token `first` holds, read from the
/// database itself.
async fn family_rows(app: &TestApp, first: &str) -> i64 {
    use sqlx::Connection;
    let sql = "SELECT COUNT(*) FROM outstanding_tokens WHERE family = $1";
    let family = jti_of(first);
    match backend() {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
                .await
                .unwrap();
            sqlx::query_scalar(sql)
                .bind(family)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.database_url)
                .await
                .unwrap();
            sqlx::query_scalar(sql)
                .bind(family)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
    }
}

dual_test! {
    /// A replay inside the window (a retry after a lost answer, a second tab) is answered
    /// with the successor its rotation made, the same token (HS256 signs alike), not a new
    /// one: the family keeps its two rows, and the successor carries the jti, iat and exp the
    /// store recorded for it, not the replay's time; the access token beside it is new and
    /// works. Once the successor is rotated in turn, the replay is refused; nothing is ever
    /// revoked, and the live end keeps working.
    async fn a_replay_inside_the_grace_window_is_given_the_same_successor() {
        let app = spawn_app_with(&rotating("")).await;
        assert_eq!(
            app.state.config.tokens.refresh_reuse_grace,
            Duration::from_secs(10),
            "the documented default"
        );
        let (r1, _) = app.login().await;
        let (r2, first_access) = refreshed(app.refresh(&r1).await).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;

        let (again, access) = refreshed(app.refresh(&r1).await).await;
        assert_eq!(again, r2);
        let stored = app.state.store.rotated_out(&jti_of(&r1)).await.unwrap().unwrap();
        let successor = stored.live_successor.unwrap();
        assert_eq!(
            times_of(&again),
            (
                successor.jti,
                successor.created_at.unwrap().unix_timestamp(),
                successor.expires_at.unix_timestamp(),
            )
        );
        assert!(payload(&access)["iat"].as_i64() > payload(&r2)["iat"].as_i64(), "a new access token");
        assert_ne!(jti_of(&access), jti_of(&first_access));
        assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK);
        let (third, _) = refreshed(app.refresh(&r1).await).await;
        assert_eq!(third, r2);
        assert_eq!(family_rows(&app, &r1).await, 2, "no fork, no growth");

        let r3 = rotate(&app, &r2).await;
        assert_eq!(replay(&app, &r1).await, (StatusCode::UNAUTHORIZED, BLACKLISTED.to_owned()));
        // r2's own replay is given r3.
        assert_eq!(refreshed(app.refresh(&r2).await).await.0, r3);
        rotate(&app, &r3).await;
        assert_eq!(family_rows(&app, &r1).await, 4);
        assert!(family_revocations(&app).await.is_empty());
        assert_eq!(counter(&app, "doorman_refresh_reuse_detected_total").await, 0.0);
        assert_eq!(replays(&app, "reissued").await, 3.0);
        assert_eq!(replays(&app, "refused").await, 1.0);
    }
}

dual_test! {
    /// A successor that was logged out (blacklisted) or whose family was revoked is no longer
    /// given to a replay inside the window: the replay is refused as before, and revokes
    /// nothing of its own.
    async fn a_replay_inside_the_window_is_refused_once_the_successor_is_blacklisted() {
        let app = spawn_app_with(&rotating("")).await;
        let (r1, _) = app.login().await;
        let (other, _) = app.login().await;
        let r2 = rotate(&app, &r1).await;
        assert_eq!(app.blacklist(&r2).await.status(), StatusCode::OK);
        assert_eq!(replay(&app, &r1).await, (StatusCode::UNAUTHORIZED, BLACKLISTED.to_owned()));
        assert_refused_as_blacklisted(&app, &r2).await;
        rotate(&app, &other).await;
        assert!(family_revocations(&app).await.is_empty());
        assert_eq!(replays(&app, "reissued").await, 0.0);
    }
}

dual_test! {
    /// The replay passes a refresh's checks: once the user is deactivated, a replay inside the
    /// window is refused as blacklisted (the token error first, as ever), and so is the
    /// successor itself (its user is gone). Without the user cache, so that a deactivation
    /// written straight to the store shows at once (`refresh.rs` has the cache's bound).
    async fn a_replay_inside_the_window_needs_an_active_user() {
        let [rotate_on, blacklist_on, grace] = rotating("");
        let app = spawn_app_with(&[rotate_on, blacklist_on, grace, ("DOORMAN_USER_CACHE_TTL", "0")]).await;
        let (r1, _) = app.login().await;
        let r2 = rotate(&app, &r1).await;
        assert_eq!(refreshed(app.refresh(&r1).await).await.0, r2);
        app.state.store.set_active(ALICE.0, false).await.unwrap();
        assert_eq!(replay(&app, &r1).await, (StatusCode::UNAUTHORIZED, BLACKLISTED.to_owned()));
        assert_eq!(app.refresh(&r2).await.status(), StatusCode::UNAUTHORIZED);
        app.state.store.set_active(ALICE.0, true).await.unwrap();
        assert_eq!(refreshed(app.refresh(&r1).await).await.0, r2);
    }
}

dual_test! {
    /// Twenty refreshes of one token at once: exactly one rotation happens (the family gains
    /// one row), and every request, the losers inside the window included, gets 200 with the
    /// winner's successor, the same token, and an access token of its own. Nothing is revoked
    /// and the successor goes on.
    multi_thread async fn parallel_refreshes_of_one_token_all_get_the_one_successor() {
        let app = spawn_app_with(&rotating("")).await;
        let (r1, _) = app.login().await;
        let app = std::sync::Arc::new(app);
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(20));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (app, start, r1) = (app.clone(), start.clone(), r1.clone());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                refreshed(app.refresh(&r1).await).await
            }));
        }
        let mut successors = std::collections::BTreeSet::new();
        let mut accesses = std::collections::BTreeSet::new();
        for task in tasks {
            let (refresh, access) = task.await.unwrap();
            successors.insert(refresh);
            accesses.insert(jti_of(&access));
        }
        assert_eq!(successors.len(), 1, "{successors:?}");
        assert_eq!(accesses.len(), 20);
        assert_eq!(family_rows(&app, &r1).await, 2, "one rotation");
        let successor = successors.pop_first().unwrap();
        let stored = app.state.store.rotated_out(&jti_of(&r1)).await.unwrap().unwrap();
        assert_eq!(Some(jti_of(&successor)), stored.live_successor.map(|s| s.jti));
        assert_eq!(replays(&app, "reissued").await, 19.0);
        let next = rotate(&app, &successor).await;
        assert_eq!(app.verify(&next).await.status(), StatusCode::OK);
        assert!(family_revocations(&app).await.is_empty());
    }
}

dual_test! {
    /// With a key doorman manages, the replay's successor has the same header and claims as
    /// the one first given; with EdDSA and RS256 it is the same token, with ES256 and PS256
    /// (fresh randomness in each signature) only the signature differs, and both verify.
    async fn a_replayed_successor_is_the_same_token_under_deterministic_algorithms() {
        for (alg, same_token) in [("EdDSA", true), ("RS256", true), ("ES256", false), ("PS256", false)] {
            let mut settings = rotating("").to_vec();
            settings.extend([("DOORMAN_SIGNING_KEY", ""), ("DOORMAN_ALGORITHM", alg)]);
            let app = spawn_app_with(&settings).await;
            let (r1, _) = app.login().await;
            let r2 = rotate(&app, &r1).await;
            let (again, _) = refreshed(app.refresh(&r1).await).await;
            let signed_part = |t: &str| t.rsplit_once('.').unwrap().0.to_owned();
            assert_eq!(signed_part(&again), signed_part(&r2), "{alg}");
            assert_eq!(again == r2, same_token, "{alg}");
            assert_eq!(app.verify(&again).await.status(), StatusCode::OK, "{alg}");
            assert!(!rotate(&app, &again).await.is_empty(), "{alg}");
        }
    }
}

dual_test! {
    /// Two instances on one database: a token rotated on A and replayed on B inside the window
    /// gets A's successor from B.
    async fn a_replay_on_another_instance_gets_the_same_successor() {
        let a = spawn_app_with(&rotating("")).await;
        let b = spawn_second_instance(&a, &rotating("")).await;
        let (r1, _) = a.login().await;
        let r2 = rotate(&a, &r1).await;
        assert_eq!(refreshed(b.refresh(&r1).await).await.0, r2);
        assert_eq!(family_rows(&a, &r1).await, 2);
    }
}

dual_test! {
    multi_thread async fn a_burst_of_replays_revokes_the_family_once() {
        let app = spawn_app_with(&rotating("0")).await;
        let (r1, _) = app.login().await;
        let r2 = rotate(&app, &r1).await;
        let app = std::sync::Arc::new(app);
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(20));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (app, start, r1) = (app.clone(), start.clone(), r1.clone());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                replay(&app, &r1).await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), (StatusCode::UNAUTHORIZED, BLACKLISTED.to_owned()));
        }
        assert_refused_as_blacklisted(&app, &r2).await;
        let events = family_revocations(&app).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].detail.as_deref(), Some(r#"{"revoked":1}"#));
        assert_eq!(counter(&app, "doorman_refresh_reuse_detected_total").await, 20.0);
    }
}

dual_test! {
    /// With `refresh_reuse_grace = 0` even a replay at once revokes the family.
    async fn without_a_grace_window_any_replay_revokes() {
        let app = spawn_app_with(&rotating("0")).await;
        let (r1, _) = app.login().await;
        let r2 = rotate(&app, &r1).await;
        assert_refused_as_blacklisted(&app, &r1).await;
        assert_refused_as_blacklisted(&app, &r2).await;
    }
}

dual_test! {
    /// Without `blacklist_after_rotation` a rotated-out token stays valid, as in simplejwt:
    /// using it again is no replay, and nothing is revoked.
    async fn without_blacklisting_after_rotation_nothing_is_revoked() {
        let app = spawn_app_with(&[
            ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
            ("DOORMAN_REFRESH_REUSE_GRACE", "0"),
        ])
        .await;
        let (r1, _) = app.login().await;
        let r2 = rotate(&app, &r1).await;
        rotate(&app, &r1).await;
        rotate(&app, &r2).await;
        assert!(family_revocations(&app).await.is_empty());
    }
}

dual_test! {
    /// Two instances on one database: a token rotated on B and replayed on A after the
    /// window; B refuses the successor's refresh at once (the rotation's transaction decides),
    /// and its verify within milliseconds.
    async fn a_revocation_on_one_instance_holds_on_another_at_once() {
        let a = spawn_app_with(&rotating("1s")).await;
        let b = spawn_second_instance(&a, &rotating("1s")).await;
        let (r1, _) = a.login().await;
        let r2 = rotate(&b, &r1).await;
        let r3 = rotate(&a, &r2).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(replay(&a, &r1).await, (StatusCode::UNAUTHORIZED, BLACKLISTED.to_owned()));
        // The refresh: at once, the rotation's transaction finds r3 blacklisted.
        assert_refused_as_blacklisted(&b, &r3).await;
        // The verify: answered from B's blacklist in memory on PostgreSQL, so as soon as
        // PostgreSQL's notification reaches B (milliseconds), within user_cache_ttl (1 s).
        let started = std::time::Instant::now();
        while app_verifies(&b, &r3).await {
            assert!(started.elapsed() < Duration::from_secs(1), "B still verifies r3");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_verify_refuses(&b, &r3).await;
    }
}

/// Whether `app` verifies `token` (200).
async fn app_verifies(app: &TestApp, token: &str) -> bool {
    app.verify(token).await.status() == StatusCode::OK
}
