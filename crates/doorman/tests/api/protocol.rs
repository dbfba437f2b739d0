//! DRF's HTTP behaviour around the views: negotiation, methods, media types, redirects, 404s.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

dual_test! {
    async fn wrong_method_is_405_with_allow() {
        let app = spawn_app().await;
        for path in [
            "/api/token/",
            "/api/token/refresh/",
            "/api/token/verify/",
            "/api/token/blacklist/",
        ] {
            let res = app.client.get(app.url(path)).send().await.unwrap();
            assert_eq!(res.headers()["allow"], "POST, OPTIONS");
            let (s, b) = status_body(res).await;
            assert_eq!(
                (s, b.as_str()),
                (
                    StatusCode::METHOD_NOT_ALLOWED,
                    r#"{"detail":"Method \"GET\" not allowed."}"#
                ),
                "{path}"
            );
        }
        let res = app.client.delete(app.url("/api/token/")).send().await.unwrap();
        let (s, b) = status_body(res).await;
        assert_eq!(
            (s, b.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, r#"{"detail":"Method \"DELETE\" not allowed."}"#)
        );
    }
}

dual_test! {
    async fn unsupported_media_type() {
        let app = spawn_app().await;
        let (s, b) = status_body(app.post_body("/api/token/", "text/plain", "x").await).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                r#"{"detail":"Unsupported media type \"text/plain\" in request."}"#
            )
        );
        let res = app
            .client
            .post(app.url("/api/token/"))
            .body("x")
            .send()
            .await
            .unwrap();
        let (s, b) = status_body(res).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                r#"{"detail":"Unsupported media type \"\" in request."}"#
            )
        );
    }
}

dual_test! {
    async fn malformed_json_is_a_python_style_parse_error() {
        let app = spawn_app().await;
        let (s, b) = status_body(app.post_body("/api/token/", "application/json", "{").await).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::BAD_REQUEST,
                r#"{"detail":"JSON parse error - Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"}"#
            )
        );
        let (s, b) = status_body(app.post_body("/api/token/", "application/json", "nope").await).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::BAD_REQUEST,
                r#"{"detail":"JSON parse error - Expecting value: line 1 column 1 (char 0)"}"#
            )
        );
    }
}

dual_test! {
    async fn not_acceptable_and_indent() {
        let app = spawn_app().await;
        let post_accepting = |path: &str, accept: &'static str| {
            app.client
                .post(app.url(path))
                .header("accept", accept)
                .json(&json!({}))
                .send()
        };
        let (s, b) = status_body(post_accepting("/api/token/", "text/html").await.unwrap()).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::NOT_ACCEPTABLE,
                r#"{"detail":"Could not satisfy the request Accept header."}"#
            )
        );
        let res = post_accepting("/api/token/verify/", "application/json; indent=4")
            .await
            .unwrap();
        let (s, b) = status_body(res).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(
            b,
            "{\n    \"token\": [\n        \"This field is required.\"\n    ]\n}"
        );
    }
}

dual_test! {
    async fn missing_trailing_slash_redirects_permanently() {
        let app = spawn_app().await;
        for (method, path, location) in [
            ("POST", "/api/token", "/api/token/"),
            ("GET", "/hello", "/hello/"),
            ("POST", "/api/token/refresh?a=1", "/api/token/refresh/?a=1"),
        ] {
            let res = app
                .client
                .request(method.parse().unwrap(), app.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY, "{path}");
            assert_eq!(res.headers()["location"], location);
        }
    }
}

dual_test! {
    async fn unknown_paths_are_json_404() {
        let app = spawn_app().await;
        for path in ["/", "/nope", "/api/token/nope/", "/admin/"] {
            let res = app.client.get(app.url(path)).send().await.unwrap();
            assert_eq!(res.headers()["content-type"], "application/json");
            let (s, b) = status_body(res).await;
            assert_eq!(
                (s, b.as_str()),
                (StatusCode::NOT_FOUND, r#"{"detail":"Not found."}"#),
                "{path}"
            );
        }
    }
}

dual_test! {
    async fn options_describes_the_view() {
        let app = spawn_app().await;
        let res = app
            .client
            .request(reqwest::Method::OPTIONS, app.url("/api/token/"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["allow"], "POST, OPTIONS");
        let (s, b) = status_body(res).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::OK,
                concat!(
                    r#"{"name":"Token Obtain Pair","description":"Takes a set of user "#,
                    r#"credentials and returns an access and refresh JSON web\ntoken pair to "#,
                    r#"prove the authentication of those credentials.","renders":"#,
                    r#"["application/json"],"parses":["application/json","#,
                    r#""application/x-www-form-urlencoded","multipart/form-data"],"actions":"#,
                    r#"{"POST":{"username":{"type":"string","required":true,"read_only":false,"#,
                    r#""label":"Username"},"password":{"type":"string","required":true,"#,
                    r#""read_only":false,"label":"Password"}}}}"#
                )
            )
        );
    }
}

dual_test! {
    async fn oversized_bodies_are_refused_cleanly() {
        let app = spawn_app().await;
        let big = format!(r#"{{"username":"{}","password":"x"}}"#, "a".repeat(200_000));
        let (s, b) = status_body(app.post_body("/api/token/", "application/json", big).await).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"detail":"Request body is too large."}"#
            )
        );
    }
}

dual_test! {
    async fn responses_carry_a_request_id() {
        let app = spawn_app().await;
        let res = app
            .client
            .get(app.url("/hello/"))
            .header("x-request-id", "abc-123")
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-request-id"], "abc-123");
        // Made up where the client sent none: a UUID v4, as text in its usual lower-case form.
        let res = app.client.get(app.url("/hello/")).send().await.unwrap();
        let made = res.headers()["x-request-id"].to_str().unwrap();
        let uuid = uuid::Uuid::parse_str(made).unwrap();
        assert_eq!((uuid.get_version_num(), uuid.hyphenated().to_string().as_str()), (4, made));
    }
}
