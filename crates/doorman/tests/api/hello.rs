//! `/hello/` behind the guard: simplejwt's `JWTAuthentication` answers, including the per-request
//! user lookup.

use reqwest::StatusCode;

use crate::helpers::*;

dual_test! {
    async fn hello_with_a_valid_access_token() {
        let app = spawn_app().await;
        let (_, access) = app.login().await;
        let res = app.get_hello(&access).await;
        assert_eq!(res.headers()["allow"], "GET, HEAD, OPTIONS");
        let (s, b) = status_body(res).await;
        assert_eq!(
            (s, b.as_str()),
            (StatusCode::OK, r#"{"message":"Hello, World!"}"#)
        );
    }
}

dual_test! {
    async fn hello_header_variants() {
        let app = spawn_app().await;
        let (_, access) = app.login().await;
        let get = |h: Option<String>| {
            let mut r = app.client.get(app.url("/hello/"));
            if let Some(h) = h {
                r = r.header("Authorization", h);
            }
            r.send()
        };
        let not_provided = r#"{"detail":"Authentication credentials were not provided."}"#;
        for h in [
            None,
            Some("Basic abc".to_owned()),
            Some(format!("bearer {access}")),
            Some(String::new()),
        ] {
            let res = get(h.clone()).await.unwrap();
            assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"api\"");
            let (s, b) = status_body(res).await;
            assert_eq!(
                (s, b.as_str()),
                (StatusCode::UNAUTHORIZED, not_provided),
                "{h:?}"
            );
        }
        let bad = r#"{"detail":"Authorization header must contain two space-delimited values","code":"bad_authorization_header"}"#;
        for h in ["Bearer".to_owned(), format!("Bearer {access} extra")] {
            let (s, b) = status_body(get(Some(h)).await.unwrap()).await;
            assert_eq!((s, b.as_str()), (StatusCode::UNAUTHORIZED, bad));
        }
        let (s, _) = status_body(get(Some(format!("Bearer   {access}  "))).await.unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = status_body(get(Some(format!("Bearer\t{access}"))).await.unwrap()).await;
        assert_eq!(s, StatusCode::OK);
    }
}

dual_test! {
    async fn hello_token_rejections() {
        let app = spawn_app().await;
        let (refresh, _) = app.login().await;
        let (s, b) = status_body(app.get_hello(&refresh).await).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(
            b,
            r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token has wrong type"}]}"#
        );
        let no_user = mint(&format!(
            r#"{{"token_type":"access","exp":{},"iat":1,"jti":"a"}}"#,
            now() + 60
        ));
        let (s, b) = status_body(app.get_hello(&no_user).await).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::UNAUTHORIZED,
                r#"{"detail":"Token contained no recognizable user identification","code":"token_not_valid"}"#
            )
        );
        for user_id in [r#""999""#, "999", "null", r#""abc""#] {
            let t = mint_access(user_id);
            let (s, b) = status_body(app.get_hello(&t).await).await;
            assert_eq!(
                (s, b.as_str()),
                (
                    StatusCode::UNAUTHORIZED,
                    r#"{"detail":"User not found","code":"user_not_found"}"#
                ),
                "{user_id}"
            );
        }
        let numeric = mint_access("1");
        assert_eq!(app.get_hello(&numeric).await.status(), StatusCode::OK);
        let inactive = mint_access(r#""2""#);
        let (s, b) = status_body(app.get_hello(&inactive).await).await;
        assert_eq!(
            (s, b.as_str()),
            (StatusCode::UNAUTHORIZED, r#"{"detail":"User is inactive","code":"user_inactive"}"#)
        );
    }
}

dual_test! {
    async fn inactive_users_pass_when_the_check_is_off() {
        let app = spawn_app_with(&[("DOORMAN_CHECK_USER_IS_ACTIVE", "false")]).await;
        let inactive = mint_access(r#""2""#);
        assert_eq!(app.get_hello(&inactive).await.status(), StatusCode::OK);
    }
}

dual_test! {
    async fn without_the_user_cache_deactivation_stops_access_at_once() {
        let app = spawn_app_with(&[("DOORMAN_USER_CACHE_TTL", "0")]).await;
        let (_, access) = app.login().await;
        assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK);
        app.state.store.set_active("alice", false).await.unwrap();
        let (s, b) = status_body(app.get_hello(&access).await).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::UNAUTHORIZED,
                r#"{"detail":"User is inactive","code":"user_inactive"}"#
            )
        );
    }
}

/// `doorman_user_lookups_total{source="..."}` from the instance's /metrics.
async fn user_lookups(app: &TestApp, source: &str) -> u64 {
    let text = metrics_text(app).await;
    let prefix = format!("doorman_user_lookups_total{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Polls `/hello/` on every instance until each answers `expected` (a 401 body) instead of
/// `before`; the time that took.
async fn until_refused(
    apps: &[&TestApp],
    access: &str,
    before: (StatusCode, &str),
    expected: &str,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    for app in apps {
        loop {
            let (s, b) = status_body(app.get_hello(access).await).await;
            if b == expected {
                assert_eq!(s, StatusCode::UNAUTHORIZED);
                break;
            }
            assert_eq!(
                (s, b.as_str()),
                before,
                "neither the old answer nor the new one"
            );
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "still accepted after 5 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    started.elapsed()
}

dual_test! {
    /// The user cache: a steady stream of /hello/ costs no lookup per request, and a user
    /// deactivated, then deleted, by the CLI (another process, as an operator would) is
    /// refused by both instances within user_cache_ttl (1 s).
    multi_thread async fn user_cache_saves_lookups_and_bounds_staleness_to_one_second() {
        let a = spawn_app().await;
        let b = spawn_second_instance(&a, &[]).await;
        let (_, access) = a.login().await;
        assert_eq!(b.get_hello(&access).await.status(), StatusCode::OK);

        let (cached, asked) = (user_lookups(&a, "cache").await, user_lookups(&a, "database").await);
        let started = std::time::Instant::now();
        for _ in 0..50 {
            assert_eq!(a.get_hello(&access).await.status(), StatusCode::OK);
        }
        let seconds = started.elapsed().as_secs();
        let asked = user_lookups(&a, "database").await - asked;
        let cached = user_lookups(&a, "cache").await - cached;
        assert!(asked <= seconds + 1, "{asked} lookups in {seconds} s");
        assert_eq!(asked + cached, 50);

        let cli = |args: &[&str]| {
            let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("doorman"))
                .current_dir(a.dir.path())
                .env_clear()
                .env("DOORMAN_DATABASE_URL", &a.database_url)
                .env("DOORMAN_SIGNING_KEY", TEST_SECRET)
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        };
        // Both instances hold alice as active right now.
        assert_eq!(a.get_hello(&access).await.status(), StatusCode::OK);
        assert_eq!(b.get_hello(&access).await.status(), StatusCode::OK);
        let hello = r#"{"message":"Hello, World!"}"#;
        let inactive = r#"{"detail":"User is inactive","code":"user_inactive"}"#;
        let not_found = r#"{"detail":"User not found","code":"user_not_found"}"#;
        for (change, before, refusal) in [
            ("deactivate", (StatusCode::OK, hello), inactive),
            ("delete", (StatusCode::UNAUTHORIZED, inactive), not_found),
        ] {
            cli(&["user", change, "alice"]);
            let took = until_refused(&[&a, &b], &access, before, refusal).await;
            // 1 s of cache, plus a little for the requests themselves on a busy machine.
            assert!(took < std::time::Duration::from_millis(1300), "{change}: {took:?}");
        }
    }
}

dual_test! {
    /// Requests for a user the cache doesn't hold, arriving together, wait for one lookup
    /// instead of each asking the database (as they did on every expiry under load).
    multi_thread async fn concurrent_misses_for_a_user_share_one_lookup() {
        // A minute of cache: no expiry during the test, so one lookup is all there may be.
        let app = spawn_app_with(&[("DOORMAN_USER_CACHE_TTL", "60")]).await;
        let (_, access) = app.login().await;
        let asked = user_lookups(&app, "database").await;
        let cached = user_lookups(&app, "cache").await;
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let (client, url, access) = (app.client.clone(), app.url("/hello/"), access.clone());
            requests.spawn(async move { client.get(url).bearer_auth(access).send().await });
        }
        while let Some(answer) = requests.join_next().await {
            assert_eq!(answer.unwrap().unwrap().status(), StatusCode::OK);
        }
        assert_eq!(user_lookups(&app, "database").await - asked, 1);
        assert_eq!(user_lookups(&app, "cache").await - cached, 63);
    }
}

dual_test! {
    async fn hello_method_order_is_drfs() {
        let app = spawn_app().await;
        let (_, access) = app.login().await;
        // Authentication comes before the method check.
        let (s, _) = status_body(app.client.post(app.url("/hello/")).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let res = app
            .client
            .post(app.url("/hello/"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["allow"], "GET, HEAD, OPTIONS");
        let (s, b) = status_body(res).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"detail":"Method \"POST\" not allowed."}"#
            )
        );
        let res = app
            .client
            .head(app.url("/hello/"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.text().await.unwrap(), "");
    }
}

dual_test! {
    async fn eddsa_deployment_issues_and_accepts_its_own_tokens() {
        let app = spawn_app_with(&[("DOORMAN_SIGNING_KEY", "")]).await;
        let (refresh, access) = app.login().await;
        let header = {
            use base64::Engine;
            let seg = access.split('.').next().unwrap();
            String::from_utf8(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(seg)
                    .unwrap(),
            )
            .unwrap()
        };
        let kid = app.state.tokens.keys().signing().kid().unwrap().to_owned();
        assert_eq!(header, format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"JWT"}}"#));
        assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK);
        assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);
        assert!(app.dir.path().join("data/signing-key.pem").exists());
        // An HS256 token signed with the shared test secret is not accepted by an EdDSA deployment.
        let forged = mint_access(r#""1""#);
        assert_eq!(
            app.get_hello(&forged).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
}
