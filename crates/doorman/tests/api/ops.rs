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
            app.post_token(&json!({"username": "alice", "password": "alice-password-1"})).await,
        ];
        for res in responses {
            let h = res.headers();
            let status = res.status();
            assert_eq!(h["x-content-type-options"], "nosniff", "{status}");
            assert_eq!(h["referrer-policy"], "no-referrer", "{status}");
            assert_eq!(h["x-frame-options"], "DENY", "{status}");
            assert!(
                h["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"),
                "{status}"
            );
            assert!(h.contains_key("x-request-id"), "{status}");
        }
    }
}

dual_test! {
    /// One request slot and a burst of logins (each an argon2 hash): the extra requests are
    /// refused at once with 503 JSON and Retry-After, never queued into a timeout or a 500.
    multi_thread async fn overload_sheds_with_503_and_retry_after() {
        let app = spawn_app_with(&[("DOORMAN_MAX_CONCURRENT_REQUESTS", "1")]).await;
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let client = app.client.clone();
            let url = app.url("/api/token/");
            tasks.push(tokio::spawn(async move {
                let res = client
                    .post(url)
                    .json(&json!({"username": "alice", "password": "alice-password-1"}))
                    .send()
                    .await
                    .unwrap();
                let status = res.status();
                let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
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
            .post_token(&json!({"username": "alice", "password": "alice-password-1"}))
            .await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()["retry-after"], "5");
        assert_eq!(
            res.json::<Value>().await.unwrap(),
            json!({"detail": "The request took too long; try again later."})
        );
    }
}
