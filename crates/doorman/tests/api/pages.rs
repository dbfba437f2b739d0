//! The built-in pages as HTTP answers: each page's own CSP and `no-store`, the scripts' and
//! style sheet's content types, caching and ETag revalidation, the JSON errors of every other
//! method or path, and `web_pages = false` turning them all into the 404 of an unknown path.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const PAGES: [&str; 4] = ["/ui/", "/ui/debugger/", "/ui/account/", "/ui/admin/"];
const ASSETS: [(&str, &str); 7] = [
    ("/ui/static/pages.css", "text/css; charset=utf-8"),
    ("/ui/static/common.js", "text/javascript; charset=utf-8"),
    ("/ui/static/session.js", "text/javascript; charset=utf-8"),
    ("/ui/static/debugger.js", "text/javascript; charset=utf-8"),
    ("/ui/static/account.js", "text/javascript; charset=utf-8"),
    ("/ui/static/admin.js", "text/javascript; charset=utf-8"),
    ("/ui/static/icon.svg", "image/svg+xml"),
];
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).send().await.unwrap()
}

dual_test! {
    async fn every_page_carries_its_own_csp_and_is_never_cached() {
        let app = spawn_app().await;
        for path in PAGES {
            let res = get(&app, path).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            let headers = res.headers().clone();
            assert_eq!(headers["content-security-policy"], CSP, "{path}");
            assert_eq!(headers["cache-control"], "no-store", "{path}");
            assert_eq!(headers["content-type"], "text/html; charset=utf-8", "{path}");
            assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(headers["x-frame-options"], "DENY", "{path}");
            assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
            assert!(headers.get("etag").is_none(), "{path}");
            let body = res.text().await.unwrap();
            assert!(body.contains("data-token-cookies=\"off\""), "{path}");
            assert!(!body.contains("<script>"), "{path}: an inline script");
            // HEAD: the same headers, no body.
            let res = app.client.head(app.url(path)).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.headers()["content-security-policy"], CSP);
            assert_eq!(res.text().await.unwrap(), "");
        }
        // The JSON API keeps its own policy, which lets nothing load.
        let res = get(&app, "/api/schema/").await;
        assert_ne!(res.headers()["content-security-policy"], CSP);
    }
}

dual_test! {
    async fn scripts_and_styles_are_cached_and_revalidated() {
        let app = spawn_app().await;
        for (path, content_type) in ASSETS {
            let res = get(&app, path).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert_eq!(res.headers()["content-type"], content_type, "{path}");
            assert_eq!(res.headers()["cache-control"], "public, max-age=300", "{path}");
            assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
            let etag = res.headers()["etag"].to_str().unwrap().to_owned();
            assert!(etag.starts_with("W/\""), "{etag}");
            assert!(!res.bytes().await.unwrap().is_empty());

            let res = app
                .client
                .get(app.url(path))
                .header("If-None-Match", &etag)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{path}");
            assert_eq!(res.headers()["etag"], etag.as_str());
            assert_eq!(res.bytes().await.unwrap().len(), 0);

            let res = app
                .client
                .get(app.url(path))
                .header("If-None-Match", "\"something-else\"")
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
        }
        // Compressed for a client that takes it (they carry no tokens).
        let res = app
            .client
            .get(app.url("/ui/static/common.js"))
            .header("Accept-Encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["content-encoding"], "gzip");
    }
}

dual_test! {
    async fn other_methods_and_paths_get_json_errors() {
        let app = spawn_app().await;
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            for path in ["/ui/", "/ui/static/session.js"] {
                let res = app
                    .client
                    .request(method.parse().unwrap(), app.url(path))
                    .body("{}")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert_eq!(res.headers()["allow"], "GET, HEAD");
                let body: Value = res.json().await.unwrap();
                assert_eq!(body, json!({"detail": format!("Method \"{method}\" not allowed.")}));
            }
        }
        for path in [
            "/ui/nothing/",
            "/ui/static/",
            "/ui/static/../index.html",
            "/ui/static/session.js/",
            "/ui/static/%2e%2e/%2e%2e/etc/passwd",
            "/ui/index.html",
        ] {
            let res = get(&app, path).await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body, json!({"detail": "Not found."}), "{path}");
        }
        // Without the slash: Django's redirect, as for every other path.
        let res = get(&app, "/ui/debugger").await;
        assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(res.headers()["location"], "/ui/debugger/");
        // A huge query changes nothing.
        let res = get(&app, &format!("/ui/?{}", "a".repeat(8000))).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}

dual_test! {
    async fn in_cookie_mode_the_pages_are_told_so() {
        let app = spawn_app_with(&[("DOORMAN_TOKEN_COOKIES", "true")]).await;
        for path in PAGES {
            let body = get(&app, path).await.text().await.unwrap();
            assert!(body.contains("<html lang=\"en\" data-token-cookies=\"on\">"), "{path}");
            assert!(!body.contains("data-token-cookies=\"off\""), "{path}");
        }
    }
}

dual_test! {
    async fn web_pages_off_leaves_only_the_json_404() {
        let app = spawn_app_with(&[("DOORMAN_WEB_PAGES", "false")]).await;
        for path in PAGES.into_iter().chain(ASSETS.iter().map(|(p, _)| *p)) {
            let res = get(&app, path).await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body, json!({"detail": "Not found."}));
        }
        // The API is untouched.
        let (_, access) = app.login().await;
        assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK);
    }
}

dual_test! {
    async fn the_pages_stay_out_of_the_openapi_document() {
        let app = spawn_app().await;
        let document: Value = get(&app, "/api/schema/").await.json().await.unwrap();
        let paths = document["paths"].as_object().unwrap();
        assert!(paths.contains_key("/api/token/"));
        assert!(paths.keys().all(|p| !p.starts_with("/ui/")), "{:?}", paths.keys());
    }
}

#[test]
fn static_files_cant_mount_over_the_pages() {
    let dir = tempfile::tempdir().unwrap();
    let env: std::collections::BTreeMap<String, String> = [
        ("DOORMAN_STATIC_ROOT", dir.path().display().to_string()),
        ("DOORMAN_STATIC_URL", "/ui/static/".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = doorman::config::Config::load_from(None, &env, &Default::default()).unwrap();
    let error = doorman::router::check_static_files(&config).unwrap_err();
    assert!(
        error.to_string().contains("no doorman route uses"),
        "{error}"
    );
}
