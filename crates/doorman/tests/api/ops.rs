//! What operators and load balancers rely on: health and readiness, security headers on every
//! answer, and overload turning into quick 503s with `Retry-After` instead of a pile-up.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

dual_test! {
    async fn health_and_readiness_answer_json() {
        let app = spawn_app().await;
        for (path, body) in [
            ("/healthz", json!({"status": "ok"})),
            ("/readyz", json!({"status": "ready", "database": "ok", "migrations": "applied"})),
        ] {
            let res = app.client.get(app.url(path)).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert_eq!(res.headers()["cache-control"], "no-store");
            assert_eq!(res.json::<Value>().await.unwrap(), body);
            let res = app.client.post(app.url(path)).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
            assert_eq!(res.headers()["allow"], "GET, HEAD");
        }
    }
}

dual_test! {
    /// Every kind of answer carries the security headers: a success, a 401, a 404, a 405,
    /// the 301 of APPEND_SLASH and a token response.
    async fn security_headers_are_on_every_answer() {
        let app = spawn_app().await;
        let (_, access) = app.login().await;
        let responses = [
            app.get_hello(&access).await,
            app.client.get(app.url("/hello/")).send().await.unwrap(),
            app.client.get(app.url("/nope/")).send().await.unwrap(),
            app.client.delete(app.url("/api/token/")).send().await.unwrap(),
            app.client.get(app.url("/hello")).send().await.unwrap(),
            app.post_token(&credentials(ALICE)).await,
        ];
        for res in responses {
            let h = res.headers();
            let status = res.status();
            assert_eq!(h["x-content-type-options"], "nosniff", "{status}");
            assert_eq!(h["referrer-policy"], "no-referrer", "{status}");
            assert_eq!(h["x-frame-options"], "DENY", "{status}");
            assert_eq!(
                h["content-security-policy"],
                "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
                "{status}"
            );
            assert!(h.contains_key("x-request-id"), "{status}");
        }
        // A request id the client (or a proxy) sent is kept and echoed.
        let res = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", "trace-me-0042")
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-request-id"], "trace-me-0042");
    }
}

dual_test! {
    /// One request slot, a hashing budget of two logins (one hashing, one waiting) and a burst
    /// of logins (each an argon2 hash): the extra requests are refused at once with 503 JSON
    /// and Retry-After, never queued into a timeout or a 500.
    multi_thread async fn overload_sheds_with_503_and_retry_after() {
        let app = spawn_app_with(&[
            ("DOORMAN_MAX_CONCURRENT_REQUESTS", "1"),
            ("DOORMAN_PASSWORD_HASH_WORKERS", "1"),
            ("DOORMAN_LOGIN_QUEUE_MAX", "1"),
        ])
        .await;
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let client = app.client.clone();
            let url = app.url("/api/token/");
            tasks.push(tokio::spawn(async move {
                let res = client
                    .post(url)
                    .json(&credentials(ALICE))
                    .send()
                    .await
                    .unwrap();
                let status = res.status();
                let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                // Shed or not, the answer carries the edge's headers.
                assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{status}");
                assert!(res.headers().contains_key("x-request-id"), "{status}");
                (status, retry, res.text().await.unwrap())
            }));
        }
        let (mut ok, mut shed) = (0, 0);
        for task in tasks {
            let (status, retry, body) = task.await.unwrap();
            match status {
                StatusCode::OK => ok += 1,
                StatusCode::SERVICE_UNAVAILABLE => {
                    shed += 1;
                    assert_eq!(retry.as_deref(), Some("1"));
                    assert_eq!(body, r#"{"detail":"Service temporarily unavailable, try again later."}"#);
                }
                other => panic!("{other}: {body}"),
            }
        }
        assert!(ok >= 1 && shed >= 1, "ok {ok}, shed {shed}");
    }
}

dual_test! {
    /// A request past `request_timeout` is answered 503 with Retry-After, not left hanging.
    async fn a_request_past_its_deadline_gets_503() {
        let app = spawn_app_with(&[("DOORMAN_REQUEST_TIMEOUT", "1ms")]).await;
        let res = app
            .post_token(&credentials(ALICE))
            .await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()["retry-after"], "5");
        assert_eq!(
            res.json::<Value>().await.unwrap(),
            json!({"detail": "The request took too long; try again later."})
        );
    }
}

dual_test! {
    /// CORS only for the listed origins: preflights answered, other origins get no CORS
    /// headers, and without configuration there are none at all.
    async fn cors_allows_only_the_listed_origins() {
        let app = spawn_app_with(&[("DOORMAN_CORS_ALLOWED_ORIGINS", "https://app.example.com")]).await;
        let preflight = |origin: &'static str| {
            app.client
                .request(reqwest::Method::OPTIONS, app.url("/api/token/"))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type")
                .send()
        };
        let res = preflight("https://app.example.com").await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let h = res.headers();
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(h["access-control-allow-methods"], "GET,POST,OPTIONS");
        assert_eq!(h["access-control-allow-headers"], "authorization,content-type,accept");
        assert_eq!(h["access-control-max-age"], "600");
        assert!(h.get("access-control-allow-credentials").is_none());
        let res = preflight("https://evil.example.net").await.unwrap();
        assert!(res.headers().get("access-control-allow-origin").is_none());

        let res = app
            .client
            .post(app.url("/api/token/"))
            .header("origin", "https://app.example.com")
            .json(&credentials(ALICE))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example.com");

        let plain = spawn_app().await;
        let res = plain
            .client
            .get(plain.url("/hello/"))
            .header("origin", "https://app.example.com")
            .send()
            .await
            .unwrap();
        assert!(res.headers().get("access-control-allow-origin").is_none());
    }
}

/// The server's own log, read from a real `doorman serve` process: one access line per
/// request with the client address taken from a trusted proxy's X-Forwarded-For, and not a
/// trace of a password, a token or an Authorization header anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_and_no_secrets_in_logs() {
    let dir = tempfile::tempdir().unwrap();
    let binary = assert_cmd::cargo::cargo_bin("doorman");
    let run = |args: &[&str], stdin: &str| {
        assert_cmd::Command::new(&binary)
            .current_dir(dir.path())
            .env_clear()
            .env("DOORMAN_SIGNING_KEY", TEST_SECRET)
            .args(args)
            .write_stdin(stdin.to_owned())
            .assert()
            .success();
    };
    run(&["migrate"], "");
    run(
        &["user", "create", "logan", "--password-stdin"],
        "logan-secret-password-1\n",
    );
    let mut child = std::process::Command::new(&binary)
        .current_dir(dir.path())
        .env_clear()
        .env("DOORMAN_SIGNING_KEY", TEST_SECRET)
        .env("DOORMAN_TRUSTED_PROXIES", "127.0.0.1")
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines_rx = stderr_lines(&mut child);
    // The log is JSON from its first line on, not only from the one naming the address.
    let mut log = lines_until(&lines_rx, |line| {
        serde_json::from_str::<Value>(line).unwrap()["addr"].is_string()
    });
    let listening: Value = serde_json::from_str(log.last().unwrap()).unwrap();
    let base = format!("http://{}", listening["addr"].as_str().unwrap());
    let client = reqwest::Client::new();
    let login = |password: &'static str| {
        client
            .post(format!("{base}/api/token/"))
            .header("x-forwarded-for", "198.51.100.7")
            .json(&json!({"username": "logan", "password": password}))
            .send()
    };
    let pair: Value = login("logan-secret-password-1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        login("logan-wrong-password-9").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let access = pair["access"].as_str().unwrap().to_owned();
    let refresh = pair["refresh"].as_str().unwrap().to_owned();
    let res = get_hello_at(&client, &base, &access).await;
    assert_eq!(res.status(), StatusCode::OK);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    client
        .post(format!("{base}/api/token/refresh/"))
        .json(&json!({"refresh": refresh}))
        .send()
        .await
        .unwrap();
    get_hello_at(&client, &base, "not.a.token").await;
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    log.extend(lines_rx.iter());
    let all = log.join("\n");

    for secret in [
        "logan-secret-password-1",
        "logan-wrong-password-9",
        access.as_str(),
        refresh.as_str(),
        "not.a.token",
        "Bearer",
        TEST_SECRET,
    ] {
        assert!(!all.contains(secret), "the log holds {secret:?}:\n{all}");
    }
    let access_lines: Vec<Value> = log
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["target"] == "doorman::access")
        .collect();
    assert_eq!(access_lines.len(), 5, "{all}");
    let hello = access_lines
        .iter()
        .find(|e| e["request_id"] == request_id.as_str())
        .unwrap_or_else(|| panic!("no access line for {request_id}:\n{all}"));
    assert_eq!(hello["method"], "GET");
    assert_eq!(hello["path"], "/hello/");
    assert_eq!(hello["status"], 200);
    assert!(hello["latency_ms"].as_f64().is_some());
    // The peer is 127.0.0.1, a trusted proxy here; the client is the one it forwarded for.
    let logins: Vec<&Value> = access_lines
        .iter()
        .filter(|e| e["path"] == "/api/token/")
        .collect();
    assert_eq!(logins.len(), 2);
    assert!(
        logins.iter().all(|e| e["client"] == "198.51.100.7"),
        "{all}"
    );
    assert_eq!(hello["client"], "127.0.0.1");
}

dual_test! {
    /// Prometheus metrics count what happened: requests by route and status (unknown paths as
    /// `other`), logins, tokens issued, refreshed and refused by reason, the password-hash
    /// queue, and the database pool.
    async fn metrics_count_requests_logins_and_tokens() {
        let app = spawn_app().await;
        let (refresh, access) = app.login().await;
        assert_eq!(
            app.post_token(&json!({"username": "alice", "password": "nope-nope-1"})).await.status(),
            StatusCode::UNAUTHORIZED
        );
        // Twice: the second is counted through the handles the first one made.
        assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK);
        assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK);
        assert_eq!(app.get_hello("not-a-token").await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);
        assert_eq!(app.refresh(&access).await.status(), StatusCode::UNAUTHORIZED);
        app.client.get(app.url("/nope/secret-path")).send().await.unwrap();

        let res = app.client.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
        let text = res.text().await.unwrap();
        let value = |series: &str| -> f64 {
            text.lines()
                .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
                .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        };
        assert_eq!(value(r#"doorman_http_requests_total{method="POST",route="/api/token/",status="200"}"#), 1.0);
        assert_eq!(value(r#"doorman_http_requests_total{method="POST",route="/api/token/",status="401"}"#), 1.0);
        assert_eq!(value(r#"doorman_http_requests_total{method="GET",route="/hello/",status="200"}"#), 2.0);
        assert_eq!(value(r#"doorman_http_request_duration_seconds_count{method="GET",route="/hello/",status="200"}"#), 2.0);
        assert_eq!(value(r#"doorman_http_requests_total{method="GET",route="other",status="404"}"#), 1.0);
        assert!(!text.contains("secret-path"), "raw paths must not become labels");
        assert_eq!(value(r#"doorman_logins_total{outcome="succeeded"}"#), 1.0);
        assert_eq!(value(r#"doorman_logins_total{outcome="failed"}"#), 1.0);
        assert_eq!(value(r#"doorman_tokens_issued_total{type="access"}"#), 2.0);
        assert_eq!(value(r#"doorman_tokens_issued_total{type="refresh"}"#), 1.0);
        assert_eq!(value("doorman_tokens_refreshed_total"), 1.0);
        assert_eq!(value(r#"doorman_tokens_rejected_total{reason="invalid"}"#), 1.0);
        assert_eq!(value(r#"doorman_tokens_rejected_total{reason="wrong_type"}"#), 1.0);
        // Four hashes, each waiting for a slot once: the test's two users made, two logins.
        assert_eq!(value("doorman_password_hash_wait_seconds_count"), 4.0);
        assert_eq!(value("doorman_password_hash_queue_depth"), 0.0);
        assert!(value(r#"doorman_db_pool_connections{state="open"}"#) >= 1.0);
        assert!(value("doorman_db_pool_max_connections") >= 1.0);
        assert!(text.contains("doorman_http_request_duration_seconds_bucket"), "{text}");
    }
}

dual_test! {
    /// A body over `max_body_bytes` is refused with 413 JSON before any parsing.
    async fn bodies_over_the_limit_get_413() {
        let app = spawn_app_with(&[("DOORMAN_MAX_BODY_BYTES", "2048")]).await;
        let small = credentials(ALICE);
        assert_eq!(app.post_token(&small).await.status(), StatusCode::OK);
        let big = json!({"username": "alice", "password": "x".repeat(3000)});
        let res = app.post_token(&big).await;
        let (s, b) = status_body(res).await;
        assert_eq!(
            (s, b.as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, r#"{"detail":"Request body is too large."}"#)
        );
    }
}
