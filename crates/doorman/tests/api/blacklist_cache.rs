//! The blacklist held in memory (on PostgreSQL, the whole blacklist while it is small enough,
//! else the database's "not blacklisted" answers for `user_cache_ttl`, both kept up to date by
//! PostgreSQL's notifications; SQLite reads the database every time): whoever blacklists a
//! token (this instance, another, the CLI, SQL by hand), every instance refuses it at once or
//! within milliseconds, never after `user_cache_ttl`, which these tests set to a minute so that
//! only the notifications can explain a refusal in time. Run on both backends: the behaviour
//! is the same.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::*;

/// Long enough that a kept answer outliving a blacklisting shows as a test failure.
const LONG_TTL: [(&str, &str); 1] = [("DOORMAN_USER_CACHE_TTL", "60")];
/// As [`LONG_TTL`], and room for 3 tokens only: a blacklist of more is not held whole.
const SMALL: [(&str, &str); 2] = [
    ("DOORMAN_USER_CACHE_TTL", "60"),
    ("DOORMAN_USER_CACHE_SIZE", "3"),
];

/// How long a blacklisting made elsewhere may take to be seen (PostgreSQL's notification,
/// on a busy machine).
const SEEN_WITHIN: Duration = Duration::from_secs(2);

/// A refresh token for alice (user 1) with this jti, signed with the test key.
fn refresh_token(jti: &str) -> String {
    mint(&format!(
        r#"{{"token_type":"refresh","exp":{},"iat":{},"jti":"{jti}","user_id":"1"}}"#,
        now() + 600,
        now()
    ))
}

/// simplejwt's answer to the verify of a blacklisted token (400, this body).
const BLACKLISTED: &str = r#"{"non_field_errors":["Token is blacklisted"]}"#;

/// Verifies `token` on `app` until it is refused as blacklisted: the time that took. Every
/// answer before is a 200.
async fn until_blacklisted(app: &TestApp, token: &str, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = status_body(app.verify(token).await).await;
        if status != StatusCode::OK {
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::BAD_REQUEST, BLACKLISTED),
                "{what}"
            );
            return started.elapsed();
        }
        assert_eq!(status, StatusCode::OK, "{what}: {body}");
        assert!(
            started.elapsed() < SEEN_WITHIN,
            "{what}: still verified after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `doorman_blacklist_lookups_total{source="..."}` from the instance's /metrics.
async fn blacklist_lookups(app: &TestApp, source: &str) -> u64 {
    let text = metrics_text(app).await;
    let prefix = format!("doorman_blacklist_lookups_total{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Verifies `token` on `app` until, on PostgreSQL, a verify is answered from memory (checked
/// with the metrics, so that the tests here test something; a server just started answers
/// from memory once its listening connection is up and has read the blacklist, milliseconds
/// later).
async fn verified_and_kept(app: &TestApp, token: &str) {
    let started = Instant::now();
    loop {
        let kept = blacklist_lookups(app, "memory").await;
        assert_eq!(app.verify(token).await.status(), StatusCode::OK);
        assert_eq!(app.verify(token).await.status(), StatusCode::OK);
        if backend() == Backend::Sqlite || blacklist_lookups(app, "memory").await > kept {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "nothing answered from memory"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn jti(token: &str) -> String {
    payload(token)["jti"].as_str().unwrap().to_owned()
}

dual_test! {
    /// A token blacklisted through this instance is refused by the very next request, every
    /// time (the kept answer is forgotten before the blacklisting is answered).
    async fn a_blacklisting_here_is_seen_by_the_next_request() {
        let app = spawn_app_with(&LONG_TTL).await;
        for i in 0..30 {
            let token = refresh_token(&format!("here-{i}"));
            verified_and_kept(&app, &token).await;
            assert_eq!(app.blacklist(&token).await.status(), StatusCode::OK);
            let (status, body) = status_body(app.verify(&token).await).await;
            assert_eq!((status, body.as_str()), (StatusCode::BAD_REQUEST, BLACKLISTED), "round {i}");
            assert_refused_as_blacklisted(&app, &token).await;
        }
        // Many at once: log out everywhere.
        let (refresh, access) = app.login().await;
        let (other, _) = app.login().await;
        verified_and_kept(&app, &refresh).await;
        verified_and_kept(&app, &other).await;
        let res = app
            .client
            .post(app.url("/api/token/revoke-all/"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        for token in [&refresh, &other] {
            let (status, body) = status_body(app.verify(token).await).await;
            assert_eq!((status, body.as_str()), (StatusCode::BAD_REQUEST, BLACKLISTED));
        }
    }
}

dual_test! {
    /// Blacklisted by another instance, by the CLI's `user revoke` (a process of its own) and
    /// by SQL typed by hand: an instance that had just verified the token (and kept the answer)
    /// refuses it within milliseconds, not after its minute of `user_cache_ttl`.
    multi_thread async fn a_blacklisting_elsewhere_is_seen_within_milliseconds() {
        let a = spawn_app_with(&LONG_TTL).await;
        let b = spawn_second_instance(&a, &LONG_TTL).await;

        let token = refresh_token("by-b");
        verified_and_kept(&a, &token).await;
        assert_eq!(b.blacklist(&token).await.status(), StatusCode::OK);
        let took = until_blacklisted(&a, &token, "blacklisted by another instance").await;
        eprintln!("blacklisted on B, refused on A ({:?}) after {took:?}", backend());

        let (refresh, _) = a.login().await;
        verified_and_kept(&a, &refresh).await;
        verified_and_kept(&b, &refresh).await;
        cli(&a, &["user", "revoke", "alice"], "");
        let took = until_blacklisted(&a, &refresh, "revoked by the CLI").await;
        until_blacklisted(&b, &refresh, "revoked by the CLI, on B").await;
        eprintln!("revoked by the CLI, refused on A ({:?}) after {took:?}", backend());

        if backend() == Backend::Postgres {
            let (token, _) = a.login().await;
            verified_and_kept(&a, &token).await;
            let pool = sqlx::PgPool::connect(&a.database_url).await.unwrap();
            sqlx::query("INSERT INTO blacklisted_tokens (token_id, blacklisted_at) \
                         SELECT id, 0 FROM outstanding_tokens WHERE jti = $1")
                .bind(jti(&token))
                .execute(&pool)
                .await
                .unwrap();
            until_blacklisted(&a, &token, "blacklisted by SQL").await;
        }
    }
}

dual_test! {
    /// While a token is verified on one instance as fast as four clients can, another
    /// instance blacklists it: once the first instance has refused it, it never accepts it
    /// again (no lookup that raced the blacklisting leaves its "no" kept).
    multi_thread async fn no_lookup_racing_a_blacklisting_keeps_a_stale_answer() {
        let a = spawn_app_with(&LONG_TTL).await;
        let b = spawn_second_instance(&a, &LONG_TTL).await;
        for round in 0..5 {
            let token = refresh_token(&format!("race-{round}"));
            verified_and_kept(&a, &token).await;
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let mut verifiers = tokio::task::JoinSet::new();
            for _ in 0..4 {
                let (client, url, token, stop) =
                    (a.client.clone(), a.url("/api/token/verify/"), token.clone(), stop.clone());
                verifiers.spawn(async move {
                    let mut answers = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let res = client
                            .post(&url)
                            .json(&serde_json::json!({ "token": token }))
                            .send()
                            .await
                            .unwrap();
                        answers.push(res.status());
                    }
                    answers
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(b.blacklist(&token).await.status(), StatusCode::OK);
            until_blacklisted(&a, &token, "racing verifies").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            while let Some(answers) = verifiers.join_next().await {
                let answers = answers.unwrap();
                let first_refusal = answers
                    .iter()
                    .position(|s| *s == StatusCode::BAD_REQUEST)
                    .expect("refused before the end");
                assert!(
                    answers[first_refusal..].iter().all(|s| *s == StatusCode::BAD_REQUEST),
                    "round {round}: accepted again after a refusal: {answers:?}"
                );
            }
            for _ in 0..20 {
                assert_eq!(a.verify(&token).await.status(), StatusCode::BAD_REQUEST);
            }
        }
    }
}

/// The connection that listens for blacklistings killed from the server side, and a token
/// blacklisted by SQL right after, while it can't listen again: that notification is lost, so
/// the instance must have forgotten what it kept when the connection broke. Once it can, it
/// listens again and keeps answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listening_connection_forgets_what_was_kept() {
    run_on(Backend::Postgres, async {
        let a = spawn_app_with(&LONG_TTL).await;
        // One connection, opened before new ones are refused below.
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&a.database_url)
            .await
            .unwrap();
        let database: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        // A database can't refuse connections to itself: that is said from another one.
        let admin = sqlx::PgPool::connect(&postgres_admin_url()).await.unwrap();
        for round in 0..3 {
            // Recorded as outstanding by the login, so SQL can blacklist it below.
            let (token, _) = a.login().await;
            // Listening again after the previous round's kill: answers from memory again.
            verified_and_kept(&a, &token).await;
            // New connections to the database refused, the listener killed, then the token
            // blacklisted: its notification goes out while nobody of this instance listens
            // (and can't listen again). The instance's pooled connections stay up.
            let allow = |allowed: bool| {
                format!(r#"ALTER DATABASE "{database}" ALLOW_CONNECTIONS {allowed}"#)
            };
            sqlx::raw_sql(sqlx::AssertSqlSafe(allow(false)))
                .execute(&admin)
                .await
                .unwrap();
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND application_name = 'doorman blacklist listener'",
            )
            .bind(&database)
            .fetch_all(&mut conn)
            .await
            .unwrap();
            assert_eq!(killed, [true], "round {round}: the listening connection");
            sqlx::query(
                "INSERT INTO blacklisted_tokens (token_id, blacklisted_at) \
                         SELECT id, 0 FROM outstanding_tokens WHERE jti = $1",
            )
            .bind(jti(&token))
            .execute(&mut conn)
            .await
            .unwrap();
            let refused = until_blacklisted(&a, &token, "blacklisted while not listening").await;
            sqlx::raw_sql(sqlx::AssertSqlSafe(allow(true)))
                .execute(&admin)
                .await
                .unwrap();
            eprintln!("round {round}: refused after {refused:?}");
        }
    })
    .await;
}

dual_test! {
    /// Tokens never seen before are checked without the database while the blacklist is held
    /// whole; with room for 3 tokens and 5 blacklisted, it is asked again, and every answer is
    /// right either way.
    async fn distinct_tokens_are_checked_in_memory_while_the_blacklist_fits() {
        for (settings, fits) in [(&LONG_TTL[..], true), (&SMALL[..], false)] {
            let app = spawn_app_with(settings).await;
            let blacklisted: Vec<String> = (0..5).map(|i| refresh_token(&format!("b-{i}"))).collect();
            for token in &blacklisted {
                assert_eq!(app.blacklist(token).await.status(), StatusCode::OK);
            }
            verified_and_kept(&app, &refresh_token("warm-up")).await;
            let asked = blacklist_lookups(&app, "database").await;
            for i in 0..20 {
                let token = refresh_token(&format!("fresh-{i}"));
                assert_eq!(app.verify(&token).await.status(), StatusCode::OK);
            }
            for token in &blacklisted {
                let (status, body) = status_body(app.verify(token).await).await;
                assert_eq!((status, body.as_str()), (StatusCode::BAD_REQUEST, BLACKLISTED));
            }
            let asked = blacklist_lookups(&app, "database").await - asked;
            if backend() == Backend::Postgres {
                if fits {
                    assert_eq!(asked, 0, "database lookups with the whole blacklist in memory");
                } else {
                    assert!(asked >= 20, "{asked} database lookups with the blacklist too big");
                }
            }
        }
    }
}
