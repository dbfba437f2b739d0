//! The cookie mode for browser apps (`token_cookies`): the tokens as HttpOnly cookies at the
//! paths that take them, the refresh token taken from its cookie, the access cookie on the
//! protected views, and the strict `Origin` check on every request a cookie authenticates.
//! With the mode off, nothing of it shows.

use axum_extra::extract::cookie::{Cookie, SameSite};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const REFRESH: &str = "/api/token/refresh/";
const BLACKLIST: &str = "/api/token/blacklist/";
const REVOKE_ALL: &str = "/api/token/revoke-all/";
const EVIL: &str = "https://evil.example";

const COOKIES: (&str, &str) = ("DOORMAN_TOKEN_COOKIES", "true");
const ACCESS_COOKIE: (&str, &str) = ("DOORMAN_TOKEN_COOKIE_ACCESS", "true");

/// Every `Set-Cookie` of a response, parsed.
fn set_cookies(res: &Response) -> Vec<Cookie<'static>> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| Cookie::parse(v.to_str().unwrap().to_owned()).unwrap())
        .collect()
}

/// The `(name, path)` of each cookie, sorted.
fn names_and_paths(cookies: &[Cookie<'static>]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = cookies
        .iter()
        .map(|c| (c.name().to_owned(), c.path().unwrap_or("").to_owned()))
        .collect();
    all.sort();
    all
}

/// The attributes every token cookie has under the default settings.
fn assert_token_cookie(cookie: &Cookie<'static>, value: &str, max_age: i64) {
    assert_eq!(cookie.value(), value, "{cookie}");
    assert_eq!(cookie.http_only(), Some(true), "{cookie}");
    assert_eq!(cookie.secure(), Some(true), "{cookie}");
    assert_eq!(cookie.same_site(), Some(SameSite::Strict), "{cookie}");
    assert_eq!(
        cookie.max_age(),
        Some(time::Duration::seconds(max_age)),
        "{cookie}"
    );
    assert_eq!(cookie.domain(), None, "{cookie}");
}

/// An expired cookie: empty, `Max-Age=0`.
fn assert_expired(cookie: &Cookie<'static>) {
    assert_eq!(cookie.value(), "", "{cookie}");
    assert_eq!(cookie.max_age(), Some(time::Duration::ZERO), "{cookie}");
    assert_eq!(cookie.http_only(), Some(true), "{cookie}");
}

fn expired_refresh_cookies() -> Vec<(String, String)> {
    vec![
        ("doorman_refresh".into(), BLACKLIST.into()),
        ("doorman_refresh".into(), REFRESH.into()),
    ]
}

/// A POST to `path` carrying `cookie` (`name=value`), and `origin` when given, with an empty
/// JSON object as body.
fn post_with_cookie(
    app: &TestApp,
    path: &str,
    cookie: &str,
    origin: Option<&str>,
) -> RequestBuilder {
    let mut request = app
        .client
        .post(app.url(path))
        .header("cookie", cookie)
        .json(&json!({}));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request
}

async fn send(request: RequestBuilder) -> Response {
    request.send().await.unwrap()
}

/// Logs alice in with the mode on: the answer, its body's tokens, and its cookies.
async fn log_in(app: &TestApp) -> (String, String, Vec<Cookie<'static>>) {
    let res = app.post_token(&credentials(ALICE)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookies = set_cookies(&res);
    let body: Value = res.json().await.unwrap();
    (
        body["refresh"].as_str().unwrap().to_owned(),
        body["access"].as_str().unwrap().to_owned(),
        cookies,
    )
}

/// The cookie of this name and path among `cookies`.
fn cookie_at<'a>(cookies: &'a [Cookie<'static>], name: &str, path: &str) -> &'a Cookie<'static> {
    cookies
        .iter()
        .find(|c| c.name() == name && c.path() == Some(path))
        .unwrap_or_else(|| panic!("no {name} cookie at {path} among {cookies:?}"))
}

dual_test! {
    async fn with_the_mode_off_no_cookie_is_set_or_read() {
        let app = spawn_app().await;
        let origin = app.address.clone();
        let res = app.post_token(&credentials(ALICE)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(set_cookies(&res).is_empty());
        let (refresh, access) = app.login().await;
        let res = app.refresh(&refresh).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(set_cookies(&res).is_empty());

        for path in [REFRESH, BLACKLIST] {
            let cookie = format!("doorman_refresh={refresh}");
            let res = send(post_with_cookie(&app, path, &cookie, Some(&origin))).await;
            assert_eq!(
                status_body(res).await,
                (StatusCode::BAD_REQUEST, r#"{"refresh":["This field is required."]}"#.to_owned()),
                "{path}"
            );
        }
        let res = send(
            app.client
                .get(app.url("/hello/"))
                .header("cookie", format!("doorman_access={access}")),
        )
        .await;
        assert_eq!(
            status_body(res).await,
            (
                StatusCode::UNAUTHORIZED,
                r#"{"detail":"Authentication credentials were not provided."}"#.to_owned()
            )
        );
        // Login CSRF is a concern of the cookie mode only: API clients may send any Origin.
        let res = send(
            app.client
                .post(app.url("/api/token/"))
                .header("origin", EVIL)
                .json(&credentials(ALICE)),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
        // The refresh token was never blacklisted by the cookie-carrying blacklist above.
        assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);
    }
}

dual_test! {
    async fn login_sets_the_refresh_cookie_at_its_two_paths_and_the_access_cookie() {
        let app = spawn_app_with(&[COOKIES, ACCESS_COOKIE]).await;
        let res = app.post_token(&credentials(ALICE)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["cache-control"], "no-store");
        let cookies = set_cookies(&res);
        let body: Value = res.json().await.unwrap();
        // The body is what it always was: both tokens, nothing else.
        assert_eq!(body.as_object().unwrap().len(), 2);
        let refresh = body["refresh"].as_str().unwrap();
        let access = body["access"].as_str().unwrap();
        assert_eq!(
            names_and_paths(&cookies),
            [
                ("doorman_access".to_owned(), "/".to_owned()),
                ("doorman_refresh".to_owned(), BLACKLIST.to_owned()),
                ("doorman_refresh".to_owned(), REFRESH.to_owned()),
            ]
        );
        for path in [REFRESH, BLACKLIST] {
            assert_token_cookie(cookie_at(&cookies, "doorman_refresh", path), refresh, 86_400);
        }
        assert_token_cookie(cookie_at(&cookies, "doorman_access", "/"), access, 300);

        // Without access cookies, the refresh cookie only; other names and attributes as set.
        let app = spawn_app_with(&[
            COOKIES,
            ("DOORMAN_TOKEN_COOKIE_REFRESH_NAME", "__Secure-rt"),
            ("DOORMAN_TOKEN_COOKIE_SAMESITE", "Lax"),
            ("DOORMAN_TOKEN_COOKIE_DOMAIN", "example.com"),
            ("DOORMAN_REFRESH_TOKEN_LIFETIME", "2h"),
        ])
        .await;
        let (refresh, _, cookies) = log_in(&app).await;
        assert_eq!(
            names_and_paths(&cookies),
            [
                ("__Secure-rt".to_owned(), BLACKLIST.to_owned()),
                ("__Secure-rt".to_owned(), REFRESH.to_owned()),
            ]
        );
        for cookie in &cookies {
            assert_eq!(cookie.value(), refresh);
            assert_eq!(cookie.same_site(), Some(SameSite::Lax));
            assert_eq!(cookie.domain(), Some("example.com"));
            assert_eq!(cookie.max_age(), Some(time::Duration::hours(2)));
        }
        // A failed login sets nothing.
        let res = app.post_token(&credentials((ALICE.0, "wrong"))).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(set_cookies(&res).is_empty());
    }
}

dual_test! {
    async fn refresh_takes_the_cookie_when_the_body_has_no_token() {
        let app = spawn_app_with(&[COOKIES]).await;
        let origin = app.address.clone();
        let (refresh, _, _) = log_in(&app).await;
        let cookie = format!("doorman_refresh={refresh}");
        let res = send(post_with_cookie(&app, REFRESH, &cookie, Some(&origin))).await;
        assert_eq!(res.status(), StatusCode::OK);
        // No rotation, no access cookie: nothing to set.
        assert!(set_cookies(&res).is_empty());
        let body: Value = res.json().await.unwrap();
        assert_eq!(payload(body["access"].as_str().unwrap())["token_type"], "access");

        // A blank field, a form body, an empty body: the cookie stands in.
        for (content_type, body) in [
            ("application/json", r#"{"refresh": "  "}"#),
            ("application/x-www-form-urlencoded", "refresh="),
            ("application/json", ""),
        ] {
            let res = send(
                app.client
                    .post(app.url(REFRESH))
                    .header("cookie", &cookie)
                    .header("origin", &origin)
                    .header("content-type", content_type)
                    .body(body),
            )
            .await;
            assert_eq!(res.status(), StatusCode::OK, "{body:?}");
        }
        // A field given wins over the cookie, and its failure expires no cookie.
        let res = send(
            app.client
                .post(app.url(REFRESH))
                .header("cookie", &cookie)
                .json(&json!({"refresh": "not-a-token"})),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(set_cookies(&res).is_empty());
        let res = send(
            app.client
                .post(app.url(REFRESH))
                .header("cookie", &cookie)
                .json(&json!({"refresh": null})),
        )
        .await;
        assert_eq!(
            status_body(res).await,
            (StatusCode::BAD_REQUEST, r#"{"refresh":["This field may not be null."]}"#.to_owned())
        );
        // Neither: DRF's answer as ever.
        let res = app.post_json(REFRESH, &json!({})).await;
        assert_eq!(
            status_body(res).await,
            (StatusCode::BAD_REQUEST, r#"{"refresh":["This field is required."]}"#.to_owned())
        );
        // An empty cookie is no cookie; a garbage one is a refused token, and expired.
        let res = send(post_with_cookie(&app, REFRESH, "doorman_refresh=", Some(&origin))).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let res = send(post_with_cookie(&app, REFRESH, "doorman_refresh=x.y.z", Some(&origin))).await;
        let expired = set_cookies(&res);
        assert_eq!(
            status_body(res).await,
            (
                StatusCode::UNAUTHORIZED,
                r#"{"detail":"Token is invalid","code":"token_not_valid"}"#.to_owned()
            )
        );
        assert_eq!(names_and_paths(&expired), expired_refresh_cookies());
        expired.iter().for_each(assert_expired);
    }
}

dual_test! {
    async fn odd_cookie_headers_get_json_answers() {
        let app = spawn_app_with(&[COOKIES, ACCESS_COOKIE]).await;
        let origin = app.address.clone();
        let huge = format!("doorman_refresh={}", "a".repeat(12_000));
        let access_huge = format!("doorman_access={}", "a.b".repeat(4_000));
        for (path, cookie, status) in [
            // No `=`, an empty name, only separators, another name's value: no cookie.
            (REFRESH, "doorman_refresh".to_owned(), StatusCode::BAD_REQUEST),
            (REFRESH, "=abc; ;;".to_owned(), StatusCode::BAD_REQUEST),
            (BLACKLIST, "doorman_refreshx=a.b.c".to_owned(), StatusCode::BAD_REQUEST),
            // Any value at all is a token the views refuse.
            (REFRESH, huge.clone(), StatusCode::UNAUTHORIZED),
            (BLACKLIST, "doorman_refresh=\"a.b.c\"".to_owned(), StatusCode::UNAUTHORIZED),
            (REFRESH, "doorman_refresh=%00%ff".to_owned(), StatusCode::UNAUTHORIZED),
            (REVOKE_ALL, access_huge.clone(), StatusCode::UNAUTHORIZED),
        ] {
            let res = send(post_with_cookie(&app, path, &cookie, Some(&origin))).await;
            assert_eq!(res.status(), status, "{path} {cookie:.40}");
            assert_eq!(res.headers()["content-type"], "application/json");
            let body: Value = res.json().await.unwrap();
            assert!(body.is_object(), "{body}");
        }
        let res = send(app.client.get(app.url("/hello/")).header("cookie", access_huge)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
}

dual_test! {
    async fn rotation_replaces_the_cookie_and_the_rotated_out_one_is_expired() {
        let app = spawn_app_with(&[
            COOKIES,
            ACCESS_COOKIE,
            ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
            ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
            ("DOORMAN_REFRESH_REUSE_GRACE", "0"),
        ])
        .await;
        let origin = app.address.clone();
        let (old, _, _) = log_in(&app).await;
        let res = send(post_with_cookie(&app, REFRESH, &format!("doorman_refresh={old}"), Some(&origin))).await;
        assert_eq!(res.status(), StatusCode::OK);
        let cookies = set_cookies(&res);
        let body: Value = res.json().await.unwrap();
        let new = body["refresh"].as_str().unwrap();
        assert_ne!(new, old);
        for path in [REFRESH, BLACKLIST] {
            assert_token_cookie(cookie_at(&cookies, "doorman_refresh", path), new, 86_400);
        }
        assert_token_cookie(
            cookie_at(&cookies, "doorman_access", "/"),
            body["access"].as_str().unwrap(),
            300,
        );
        assert_eq!(cookies.len(), 3);

        // The rotated-out token, still in a stale cookie: refused, and its cookie expired.
        let res = send(post_with_cookie(&app, REFRESH, &format!("doorman_refresh={old}"), Some(&origin))).await;
        let expired = set_cookies(&res);
        assert_eq!(
            status_body(res).await,
            (
                StatusCode::UNAUTHORIZED,
                r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#.to_owned()
            )
        );
        assert_eq!(names_and_paths(&expired), expired_refresh_cookies());
        expired.iter().for_each(assert_expired);
    }
}

dual_test! {
    async fn blacklist_by_cookie_logs_out_and_expires_every_cookie() {
        let app = spawn_app_with(&[COOKIES, ACCESS_COOKIE]).await;
        let origin = app.address.clone();
        let (refresh, _, _) = log_in(&app).await;
        let cookie = format!("doorman_refresh={refresh}");
        let res = send(post_with_cookie(&app, BLACKLIST, &cookie, Some(&origin))).await;
        let expired = set_cookies(&res);
        assert_eq!(status_body(res).await, (StatusCode::OK, "{}".to_owned()));
        assert_eq!(
            names_and_paths(&expired),
            [
                ("doorman_access".to_owned(), "/".to_owned()),
                ("doorman_refresh".to_owned(), BLACKLIST.to_owned()),
                ("doorman_refresh".to_owned(), REFRESH.to_owned()),
            ]
        );
        expired.iter().for_each(assert_expired);

        // The blacklisted cookie fails refresh, which expires it again.
        let res = send(post_with_cookie(&app, REFRESH, &cookie, Some(&origin))).await;
        let expired = set_cookies(&res);
        assert_eq!(
            status_body(res).await,
            (
                StatusCode::UNAUTHORIZED,
                r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#.to_owned()
            )
        );
        assert_eq!(names_and_paths(&expired), expired_refresh_cookies());
        expired.iter().for_each(assert_expired);
        assert_refused_as_blacklisted(&app, &refresh).await;
    }
}

dual_test! {
    async fn the_access_cookie_authenticates_hello_and_revoke_all_unless_a_header_is_sent() {
        let app = spawn_app_with(&[COOKIES, ACCESS_COOKIE]).await;
        let origin = app.address.clone();
        let (refresh, access, _) = log_in(&app).await;
        let cookie = format!("doorman_access={access}");
        let hello = |authorization: Option<&str>| {
            let mut request = app.client.get(app.url("/hello/")).header("cookie", &cookie);
            if let Some(value) = authorization {
                request = request.header("authorization", value.to_owned());
            }
            request.send()
        };
        // A GET changes nothing: no Origin needed.
        let res = hello(None).await.unwrap();
        assert_eq!(
            status_body(res).await,
            (StatusCode::OK, r#"{"message":"Hello, World!"}"#.to_owned())
        );
        // A header, when sent, is all that is looked at: a bad token loses over a good cookie,
        // and so does another scheme (no credentials, as simplejwt sees it).
        let res = hello(Some("Bearer not-a-token")).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "token_not_valid");
        let res = hello(Some("Basic YWxpY2U6eA==")).await.unwrap();
        assert_eq!(
            status_body(res).await,
            (
                StatusCode::UNAUTHORIZED,
                r#"{"detail":"Authentication credentials were not provided."}"#.to_owned()
            )
        );
        // A refused access cookie is a 401 as a refused header is.
        let res = send(
            app.client
                .get(app.url("/hello/"))
                .header("cookie", "doorman_access=x.y.z"),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.headers().contains_key("www-authenticate"));
        // POST /hello/ by cookie is checked before the method (as DRF's CSRF check is).
        let res = send(post_with_cookie(&app, "/hello/", &cookie, Some(EVIL))).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let res = send(post_with_cookie(&app, "/hello/", &cookie, Some(&origin))).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);

        let res = send(post_with_cookie(&app, REVOKE_ALL, &cookie, Some(&origin))).await;
        assert_eq!(status_body(res).await, (StatusCode::OK, "{}".to_owned()));
        assert_refused_as_blacklisted(&app, &refresh).await;

        // Without token_cookie_access, the access cookie is no credential.
        let app = spawn_app_with(&[COOKIES]).await;
        let (_, access, _) = log_in(&app).await;
        let res = send(
            app.client
                .get(app.url("/hello/"))
                .header("cookie", format!("doorman_access={access}")),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
}

dual_test! {
    async fn cross_site_posts_by_cookie_are_refused_and_change_nothing() {
        let app = spawn_app_with(&[COOKIES, ACCESS_COOKIE]).await;
        let (refresh, access, _) = log_in(&app).await;
        let cookies = [
            (REFRESH, format!("doorman_refresh={refresh}")),
            (BLACKLIST, format!("doorman_refresh={refresh}")),
            (REVOKE_ALL, format!("doorman_access={access}")),
        ];
        for (path, cookie) in &cookies {
            // What a hostile page's auto-submitted form sends.
            let res = send(
                app.client
                    .post(app.url(path))
                    .header("cookie", cookie)
                    .header("origin", EVIL)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body("next=%2F"),
            )
            .await;
            assert!(set_cookies(&res).is_empty(), "{path}");
            assert_eq!(
                status_body(res).await,
                (
                    StatusCode::FORBIDDEN,
                    r#"{"detail":"CSRF Failed: Origin checking failed - https://evil.example does not match any trusted origins."}"#.to_owned()
                ),
                "{path}"
            );
            let res = send(post_with_cookie(&app, path, cookie, None)).await;
            assert_eq!(
                status_body(res).await,
                (StatusCode::FORBIDDEN, r#"{"detail":"CSRF Failed: Origin header missing."}"#.to_owned()),
                "{path}"
            );
            let res = send(post_with_cookie(&app, path, cookie, Some("null"))).await;
            assert_eq!(
                status_body(res).await,
                (
                    StatusCode::FORBIDDEN,
                    r#"{"detail":"CSRF Failed: Origin checking failed - null does not match any trusted origins."}"#.to_owned()
                ),
                "{path}"
            );
            // Another scheme or port of doorman's own host is another origin.
            let other_port = app.address.replace("http://", "https://");
            let res = send(post_with_cookie(&app, path, cookie, Some(&other_port))).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
        }
        // Nothing was blacklisted or revoked: both tokens still work.
        assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK);
        assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);
        // A token in the body is no cookie: no Origin needed.
        assert_eq!(app.blacklist(&refresh).await.status(), StatusCode::OK);
    }
}

dual_test! {
    async fn trusted_origins_pass_the_check() {
        let app = spawn_app_with(&[
            COOKIES,
            ACCESS_COOKIE,
            ("DOORMAN_CSRF_TRUSTED_ORIGINS", "https://app.example.com"),
            ("DOORMAN_CORS_ALLOWED_ORIGINS", "https://spa.example.org"),
        ])
        .await;
        let (refresh, access, _) = log_in(&app).await;
        let cookie = format!("doorman_refresh={refresh}");
        for origin in ["https://app.example.com", "https://spa.example.org"] {
            let res = send(post_with_cookie(&app, REFRESH, &cookie, Some(origin))).await;
            assert_eq!(res.status(), StatusCode::OK, "{origin}");
            // Login from a trusted page is fine too.
            let res = send(
                app.client
                    .post(app.url("/api/token/"))
                    .header("origin", origin)
                    .json(&credentials(ALICE)),
            )
            .await;
            assert_eq!(res.status(), StatusCode::OK, "{origin}");
        }
        let res = send(post_with_cookie(&app, REFRESH, &cookie, Some("https://other.example.com"))).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let res = send(post_with_cookie(
            &app,
            REVOKE_ALL,
            &format!("doorman_access={access}"),
            Some("https://app.example.com"),
        ))
        .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}

dual_test! {
    async fn behind_a_trusted_proxy_the_forwarded_scheme_makes_the_origin() {
        let forwarded = |app: &TestApp, cookie: &str, origin: &str| {
            post_with_cookie(app, REFRESH, cookie, Some(origin))
                .header("x-forwarded-for", "203.0.113.9")
                .header("x-forwarded-proto", "https")
        };
        let app = spawn_app_with(&[COOKIES, ("DOORMAN_TRUSTED_PROXIES", "127.0.0.1")]).await;
        let (refresh, _, _) = log_in(&app).await;
        let cookie = format!("doorman_refresh={refresh}");
        let https = app.address.replace("http://", "https://");
        let res = send(forwarded(&app, &cookie, &https)).await;
        assert_eq!(res.status(), StatusCode::OK);
        // The client used https: its page's origin is not the http one.
        let res = send(forwarded(&app, &cookie, &app.address)).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);

        // From an untrusted peer, X-Forwarded-Proto is not believed.
        let app = spawn_app_with(&[COOKIES]).await;
        let (refresh, _, _) = log_in(&app).await;
        let cookie = format!("doorman_refresh={refresh}");
        let https = app.address.replace("http://", "https://");
        let res = send(forwarded(&app, &cookie, &https)).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let res = send(forwarded(&app, &cookie, &app.address)).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}

dual_test! {
    async fn a_login_from_a_foreign_page_is_refused_in_the_cookie_mode() {
        let app = spawn_app_with(&[COOKIES]).await;
        let login = |origin: Option<&str>| {
            let mut request = app.client.post(app.url("/api/token/")).json(&credentials(ALICE));
            if let Some(origin) = origin {
                request = request.header("origin", origin.to_owned());
            }
            request.send()
        };
        let res = login(Some(EVIL)).await.unwrap();
        assert!(set_cookies(&res).is_empty());
        assert_eq!(
            status_body(res).await,
            (
                StatusCode::FORBIDDEN,
                r#"{"detail":"CSRF Failed: Origin checking failed - https://evil.example does not match any trusted origins."}"#.to_owned()
            )
        );
        let res = login(Some("null")).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        // The sliding login too.
        let res = send(
            app.client
                .post(app.url("/api/token/sliding/"))
                .header("origin", EVIL)
                .json(&credentials(ALICE)),
        )
        .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        // Same origin, or no Origin at all (an API client): logged in.
        let res = login(Some(&app.address)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(set_cookies(&res).len(), 2);
        let res = login(None).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}

#[test]
fn doorman_check_refuses_bad_cookie_settings() {
    let dir = tempfile::tempdir().unwrap();
    for (pairs, expected) in [
        (
            vec![("DOORMAN_TOKEN_COOKIE_SAMESITE", "sometimes")],
            "setting `token_cookie_samesite` (from environment variable DOORMAN_TOKEN_COOKIE_SAMESITE): expected Strict, Lax or None, got \"sometimes\"",
        ),
        (
            vec![
                ("DOORMAN_TOKEN_COOKIE_SAMESITE", "None"),
                ("DOORMAN_TOKEN_COOKIE_SECURE", "false"),
            ],
            "None needs token_cookie_secure = true",
        ),
        (
            vec![(
                "DOORMAN_CSRF_TRUSTED_ORIGINS",
                "https://app.example.com/login",
            )],
            "setting `csrf_trusted_origins` (from environment variable DOORMAN_CSRF_TRUSTED_ORIGINS): expected origins like https://app.example.com",
        ),
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_doorman"));
        cmd.arg("check")
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DOORMAN_DATA_DIR", dir.path().join("data"));
        for (k, v) in &pairs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{pairs:?}");
        assert!(
            stderr.contains("configuration error: ") && stderr.contains(expected),
            "{pairs:?}: {stderr}"
        );
    }
}
