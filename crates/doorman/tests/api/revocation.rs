//! Log out everywhere: `POST /api/token/revoke-all/`, `doorman user revoke`, and the
//! revocations that come with a password set, a deactivation and a deletion. Old refresh and
//! sliding tokens are refused (blacklisted) at once on the instance that revoked and within
//! milliseconds on the others, old access tokens at once on the instance that revoked and
//! within `user_cache_ttl` on the others; tokens issued afterwards work, from
//! the very same second on.

use std::time::{Duration, Instant};

use doorman::store::AuditFilter;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const REVOKE_ALL: &str = "/api/token/revoke-all/";
const REVOKED_ACCESS: &str = r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token is blacklisted"}]}"#;
const HELLO: &str = r#"{"message":"Hello, World!"}"#;

async fn revoke_all(app: &TestApp, access: &str) -> reqwest::Response {
    app.client
        .post(app.url(REVOKE_ALL))
        .bearer_auth(access)
        .header("user-agent", "revocation-test/1.0")
        .send()
        .await
        .unwrap()
}

async fn assert_revoked_access(app: &TestApp, access: &str) {
    let res = app.get_hello(access).await;
    assert_eq!(
        res.headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some("Bearer realm=\"api\"")
    );
    assert_eq!(
        status_body(res).await,
        (StatusCode::UNAUTHORIZED, REVOKED_ACCESS.to_owned())
    );
}

async fn assert_hello(app: &TestApp, access: &str) {
    assert_eq!(
        status_body(app.get_hello(access).await).await,
        (StatusCode::OK, HELLO.to_owned())
    );
}

fn iat(token: &str) -> i64 {
    payload(token)["iat"].as_i64().unwrap()
}

async fn tokens_valid_after(app: &TestApp, user_id: i64) -> Option<i64> {
    let user = app.state.store.user_by_id(user_id).await.unwrap().unwrap();
    user.tokens_valid_after
}

/// Sliding login: the sliding token.
async fn sliding_login(app: &TestApp, (username, password): (&str, &str)) -> String {
    let res = app
        .post_json(
            "/api/token/sliding/",
            &json!({"username": username, "password": password}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

dual_test! {
    /// Every login's refresh token, the sliding token and every access token of the user are
    /// refused at once; another user's are not; the user can log in again right away.
    async fn revoke_all_logs_the_user_out_everywhere() {
        let app = spawn_app().await;
        app.create_user("bob", "bob-password-1", true).await;
        let (refresh1, access1) = app.login().await;
        let (refresh2, access2) = app.login().await;
        let sliding = sliding_login(&app, ALICE).await;
        let (bob_refresh, bob_access) = app.login_as("bob", "bob-password-1").await;
        // The user check has cached alice as she was.
        assert_hello(&app, &access1).await;
        assert_hello(&app, &access2).await;

        let res = revoke_all(&app, &access1).await;
        assert!(res.headers().get("www-authenticate").is_none());
        assert_eq!(res.headers()["allow"], "POST, OPTIONS");
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(status_body(res).await, (StatusCode::OK, "{}".to_owned()));

        // Access tokens: at once, although the cache held alice a moment ago.
        assert_revoked_access(&app, &access1).await;
        assert_revoked_access(&app, &access2).await;
        // Refresh and sliding tokens: blacklisted, for every view that takes them.
        assert_refused_as_blacklisted(&app, &refresh1).await;
        assert_refused_as_blacklisted(&app, &refresh2).await;
        assert_eq!(
            status_body(app.verify(&refresh1).await).await,
            (StatusCode::BAD_REQUEST, r#"{"non_field_errors":["Token is blacklisted"]}"#.to_owned())
        );
        assert_eq!(
            status_body(app.blacklist(&refresh2).await).await,
            (StatusCode::UNAUTHORIZED, r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#.to_owned())
        );
        let slid = app
            .post_json("/api/token/sliding/refresh/", &json!({"token": sliding}))
            .await;
        assert_eq!(
            status_body(slid).await,
            (StatusCode::UNAUTHORIZED, r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#.to_owned())
        );
        // The revocation itself can't be repeated with the revoked token.
        assert_eq!(
            status_body(revoke_all(&app, &access2).await).await,
            (StatusCode::UNAUTHORIZED, REVOKED_ACCESS.to_owned())
        );

        // Bob is untouched.
        assert_hello(&app, &bob_access).await;
        assert_eq!(app.refresh(&bob_refresh).await.status(), StatusCode::OK);

        // Alice logs in again right away, and everything works.
        let (refresh3, access3) = app.login().await;
        assert_hello(&app, &access3).await;
        let res = app.refresh(&refresh3).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        assert_hello(&app, body["access"].as_str().unwrap()).await;
        let sliding = sliding_login(&app, ALICE).await;
        let slid = app
            .post_json("/api/token/sliding/refresh/", &json!({"token": sliding}))
            .await;
        assert_eq!(slid.status(), StatusCode::OK);

        // The audit trail: who, from where, why, and how many tokens went.
        let events = app
            .state
            .store
            .audit_events(&AuditFilter { username: Some("alice".into()), since: None })
            .await
            .unwrap();
        let revoked: Vec<_> = events.iter().filter(|e| e.kind == "tokens_revoked").collect();
        assert_eq!(revoked.len(), 1, "{events:?}");
        assert_eq!(revoked[0].user_id, Some(1));
        assert_eq!(revoked[0].client_addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(revoked[0].user_agent.as_deref(), Some("revocation-test/1.0"));
        assert_eq!(
            revoked[0].detail.as_deref(),
            Some(r#"{"reason":"api","blacklisted":3}"#)
        );
    }
}

dual_test! {
    /// `iat` has whole seconds: a token issued in the revocation's own second, just before it,
    /// is refused; a login in that same second, just after it, gets tokens that work (it waits
    /// for the next second to issue them).
    async fn the_boundary_is_exact_within_one_second() {
        let app = spawn_app().await;
        let mut same_second = 0;
        // Three rounds, and more (up to ten) until one fell in a single second, as a loaded
        // machine may take longer than a second over a login and a revocation.
        for round in 0..10 {
            if round >= 3 && same_second > 0 {
                break;
            }
            // Start early in a second, so the login, the revocation and the next login
            // usually fall in the same one.
            let into_second = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_millis();
            tokio::time::sleep(Duration::from_millis(u64::from(1010 - into_second))).await;
            let (refresh_before, access_before) = app.login().await;
            assert_eq!(revoke_all(&app, &access_before).await.status(), StatusCode::OK);
            let (refresh_after, access_after) = app.login().await;
            let revoked = tokens_valid_after(&app, 1).await.unwrap();

            assert!(iat(&access_before) <= revoked);
            assert!(iat(&access_after) > revoked, "{} <= {revoked}", iat(&access_after));
            assert_revoked_access(&app, &access_before).await;
            assert_refused_as_blacklisted(&app, &refresh_before).await;
            assert_hello(&app, &access_after).await;
            assert_eq!(app.refresh(&refresh_after).await.status(), StatusCode::OK);
            if iat(&access_before) == revoked {
                // The first login came in the revocation's second: the one after it was
                // issued past that second (asserted above), however slow the machine.
                same_second += 1;
            }
        }
        assert!(same_second > 0, "never issued a token in the revocation's second");
    }
}

dual_test! {
    /// The view is DRF's: no credentials, a bad token, an expired one or a refresh token as the
    /// Bearer get /hello/'s 401s with `WWW-Authenticate`; another method with a valid token is
    /// 405; OPTIONS describes it; a body is never read.
    async fn revoke_all_refuses_what_hello_refuses() {
        let app = spawn_app().await;
        let (refresh, access) = app.login().await;
        let url = app.url(REVOKE_ALL);
        let expired = mint(&format!(
            r#"{{"token_type":"access","exp":{},"iat":{},"jti":"x","user_id":"1"}}"#,
            now() - 10,
            now() - 310
        ));
        for bearer in [None, Some("not-a-token"), Some(expired.as_str()), Some(refresh.as_str())] {
            let mut post = app.client.post(&url);
            let mut hello = app.client.get(app.url("/hello/"));
            if let Some(token) = bearer {
                post = post.bearer_auth(token);
                hello = hello.bearer_auth(token);
            }
            let res = post.send().await.unwrap();
            assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"api\"");
            let (status, body) = status_body(res).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{bearer:?}");
            assert_eq!(body, status_body(hello.send().await.unwrap()).await.1, "{bearer:?}");
        }
        let (status, body) = status_body(
            app.client.get(&url).bearer_auth(&access).send().await.unwrap(),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, r#"{"detail":"Method \"GET\" not allowed."}"#)
        );
        // Without credentials the method doesn't matter: authentication comes first.
        let res = app.client.delete(&url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let res = app
            .client
            .request(reqwest::Method::OPTIONS, &url)
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let options: Value = res.json().await.unwrap();
        assert_eq!(options["name"], "Token Revoke All");
        assert!(options.get("actions").is_none());
        // A body, even a malformed one, is not the view's business; nothing was revoked by
        // any of the above.
        assert_hello(&app, &access).await;
        let res = app
            .client
            .post(&url)
            .bearer_auth(&access)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(status_body(res).await, (StatusCode::OK, "{}".to_owned()));
        assert_revoked_access(&app, &access).await;
    }
}

dual_test! {
    /// Refreshes racing the revocation, with rotation and blacklisting on: whatever each chain
    /// of rotations held when the revocation answered, refresh token or access token, is
    /// refused afterwards. None slips through by being recorded or issued while it ran.
    multi_thread async fn no_token_racing_the_revocation_survives_it() {
        let app = spawn_app_with(&[
            ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
            ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
        ])
        .await;
        let mut logins = Vec::new();
        for _ in 0..8 {
            logins.push(app.login().await);
        }
        let (_, revoker) = app.login().await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut chains = tokio::task::JoinSet::new();
        for (refresh, access) in logins {
            let (client, url, stop) = (app.client.clone(), app.url("/api/token/refresh/"), stop.clone());
            chains.spawn(async move {
                let (mut refresh, mut accesses) = (refresh, vec![access]);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let res = client.post(&url).json(&json!({"refresh": refresh})).send().await.unwrap();
                    if res.status() != StatusCode::OK {
                        break;
                    }
                    let body: Value = res.json().await.unwrap();
                    refresh = body["refresh"].as_str().unwrap().to_owned();
                    accesses.push(body["access"].as_str().unwrap().to_owned());
                }
                (refresh, accesses)
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(revoke_all(&app, &revoker).await.status(), StatusCode::OK);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut refreshed = 0;
        while let Some(chain) = chains.join_next().await {
            let (refresh, accesses) = chain.unwrap();
            refreshed += accesses.len() - 1;
            assert_refused_as_blacklisted(&app, &refresh).await;
            for access in &accesses {
                assert_revoked_access(&app, access).await;
            }
        }
        assert!(refreshed > 0, "no refresh ran beside the revocation");
    }
}

/// Polls `/hello/` with `access` until it is refused with `expected`; how long that took.
async fn until_refused(app: &TestApp, access: &str, expected: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = status_body(app.get_hello(access).await).await;
        if body == expected {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            return started.elapsed();
        }
        assert_eq!((status, body.as_str()), (StatusCode::OK, HELLO));
        assert!(
            started.elapsed() < within,
            "still accepted after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

dual_test! {
    /// `user revoke`, `set-password`, `deactivate` and `delete`, run as an operator would (a
    /// process of their own): each refuses the user's refresh tokens at once and their access
    /// tokens within user_cache_ttl (1 s) on the running server.
    async fn every_command_that_should_log_a_user_out_does() {
        let app = spawn_app().await;
        let inactive = r#"{"detail":"User is inactive","code":"user_inactive"}"#;
        let not_found = r#"{"detail":"User not found","code":"user_not_found"}"#;
        let mut password = ALICE.1.to_owned();
        for (args, new_password, refusal) in [
            (vec!["user", "revoke", "alice"], None, REVOKED_ACCESS),
            (vec!["user", "set-password", "alice", "--password-stdin"], Some("alice-password-2"), REVOKED_ACCESS),
            (vec!["user", "deactivate", "alice"], None, inactive),
            (vec!["user", "delete", "alice"], None, not_found),
        ] {
            if args[1] == "delete" {
                cli(&app, &["user", "activate", "alice"], "");
            }
            let (refresh, access) = app.login_as("alice", &password).await;
            // After the activation the server may hold alice as inactive for up to 1 s more.
            let started = Instant::now();
            while app.get_hello(&access).await.status() != StatusCode::OK {
                assert!(started.elapsed() < Duration::from_secs(3), "{args:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let stdin = new_password.map(|p| format!("{p}\n")).unwrap_or_default();
            let said = cli(&app, &args, &stdin);
            assert!(said.contains("Logged alice out everywhere: 1 refresh"), "{said}");
            assert_refused_as_blacklisted(&app, &refresh).await;
            let took = until_refused(&app, &access, refusal, Duration::from_secs(3)).await;
            assert!(took <= Duration::from_millis(1300), "{args:?}: {took:?}");
            if let Some(new_password) = new_password {
                password = new_password.to_owned();
            }
        }
        // What the trail says of them, the deletion's revocation before the deletion.
        let events = app
            .state
            .store
            .audit_events(&AuditFilter { username: Some("alice".into()), since: None })
            .await
            .unwrap();
        let kinds: Vec<(&str, Option<String>)> = events
            .iter()
            .filter(|e| !e.kind.starts_with("login"))
            .map(|e| {
                let reason = e.detail.as_deref().and_then(|d| {
                    serde_json::from_str::<Value>(d).ok()?["reason"].as_str().map(str::to_owned)
                });
                (e.kind.as_str(), reason)
            })
            .collect();
        let r = |s: &str| Some(s.to_owned());
        assert_eq!(
            kinds,
            [
                ("tokens_revoked", r("cli")),
                ("password_set", None),
                ("tokens_revoked", r("password_set")),
                ("user_deactivated", None),
                ("tokens_revoked", r("deactivated")),
                ("user_activated", None),
                ("tokens_revoked", r("deleted")),
                ("user_deleted", None),
            ]
        );
        assert!(events.iter().all(|e| e.user_id == Some(1)), "{events:?}");
    }
}

dual_test! {
    /// Two instances on one database, user_cache_ttl 2 s on both: after a revocation on A, an
    /// old access token that B had just accepted (so B holds the user in its cache) is refused
    /// by B within user_cache_ttl, and by A at once. The time is measured and printed.
    multi_thread async fn another_instance_refuses_old_access_tokens_within_the_cache_ttl() {
        let ttl = Duration::from_secs(2);
        let settings = [("DOORMAN_USER_CACHE_TTL", "2")];
        let a = spawn_app_with(&settings).await;
        let b = spawn_second_instance(&a, &settings).await;
        let (refresh, access) = a.login().await;
        let (_, revoker) = a.login().await;
        assert_hello(&a, &access).await;
        assert_hello(&b, &access).await;

        assert_eq!(revoke_all(&a, &revoker).await.status(), StatusCode::OK);
        let revoked_at = Instant::now();
        assert_revoked_access(&a, &access).await;
        // Refresh tokens: on B as soon as PostgreSQL's notification of the blacklisting
        // reaches it (B holds the blacklist in memory), well within user_cache_ttl; on SQLite
        // at once. Every answer before the refusal is a refresh.
        let refused = loop {
            let (status, body) = status_body(b.refresh(&refresh).await).await;
            if status == StatusCode::UNAUTHORIZED {
                assert_eq!(body, r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#);
                break revoked_at.elapsed();
            }
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(backend(), Backend::Postgres, "SQLite refreshed a revoked token");
            assert!(revoked_at.elapsed() < ttl, "B still refreshes after {:?}", revoked_at.elapsed());
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        eprintln!("revocation on A to B refusing its refresh token ({:?}): {refused:?}", backend());
        let took = loop {
            let (status, body) = status_body(b.get_hello(&access).await).await;
            if status == StatusCode::UNAUTHORIZED {
                assert_eq!(body, REVOKED_ACCESS);
                break revoked_at.elapsed();
            }
            assert_eq!(body, HELLO);
            assert!(revoked_at.elapsed() < ttl * 3, "B still accepts after {:?}", revoked_at.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!("revocation on A to refusal on B ({:?}): {took:?}", backend());
        assert!(took <= ttl + Duration::from_millis(300), "{took:?}");
        // A new login on B works at once.
        let (_, fresh) = b.login().await;
        assert_hello(&b, &fresh).await;
        assert_hello(&a, &fresh).await;
    }
}
