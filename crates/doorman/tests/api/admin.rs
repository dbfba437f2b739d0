//! The superuser admin API: each action by a superuser and its effect on the user it names,
//! each refused to a normal user (403) and without a token (401), the user list's search and
//! pagination, and audit events naming the superuser who acted.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const ROOT: (&str, &str) = ("root", "root-password-1");
const USERS: &str = "/api/admin/users/";
const AUDIT: &str = "/api/admin/audit/";
const FORBIDDEN: &str = r#"{"detail":"You do not have permission to perform this action."}"#;
const NOT_PROVIDED: &str = r#"{"detail":"Authentication credentials were not provided."}"#;

/// The test server with a superuser `root` besides alice: root's access token.
async fn with_root(settings: &[(&str, &str)]) -> (TestApp, String) {
    let app = spawn_app_with(settings).await;
    app.state
        .accounts
        .create_user(ROOT.0, ROOT.1.to_owned().into(), true, true)
        .await
        .unwrap();
    let (_, access) = app.login_as(ROOT.0, ROOT.1).await;
    (app, access)
}

async fn get(app: &TestApp, access: &str, path: &str) -> (StatusCode, Value) {
    let res = app
        .client
        .get(app.url(path))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    let status = res.status();
    if status == StatusCode::OK {
        assert_eq!(res.headers()["cache-control"], "no-store", "{path}");
    }
    (status, res.json().await.unwrap())
}

async fn post(app: &TestApp, access: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    let res = app
        .client
        .post(app.url(path))
        .bearer_auth(access)
        .json(body)
        .send()
        .await
        .unwrap();
    (res.status(), res.json().await.unwrap())
}

async fn action(app: &TestApp, access: &str, name: &str, username: &str) -> (StatusCode, Value) {
    post(
        app,
        access,
        &format!("/api/admin/users/{name}/"),
        &json!({"username": username}),
    )
    .await
}

/// The `detail` of the newest audit event of this kind about `username`.
async fn detail_of(app: &TestApp, kind: &str, username: &str) -> Value {
    let events = app
        .state
        .store
        .audit_events(&Default::default())
        .await
        .unwrap();
    let event = events
        .iter()
        .rev()
        .find(|e| e.kind == kind && e.username.as_deref() == Some(username))
        .unwrap_or_else(|| panic!("no {kind} event about {username}: {events:?}"));
    serde_json::from_str(event.detail.as_deref().unwrap()).unwrap()
}

dual_test! {
    /// Deactivation refuses the user's refresh token and access token at once and records the
    /// superuser; activation lets them log in again; deactivating oneself is refused.
    async fn deactivate_and_activate() {
        let (app, root) = with_root(&[]).await;
        let (refresh, access) = app.login().await;
        let (status, user) = action(&app, &root, "deactivate", "alice").await;
        assert_eq!(status, StatusCode::OK, "{user}");
        assert_eq!(user["username"], "alice");
        assert_eq!(user["is_active"], false);
        assert_eq!(user["blacklisted"], 1);
        assert_eq!(app.refresh(&refresh).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.get_hello(&access).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.post_token(&credentials(ALICE)).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(detail_of(&app, "user_deactivated", "alice").await, json!({"by": "root"}));
        assert_eq!(
            detail_of(&app, "tokens_revoked", "alice").await,
            json!({"reason": "deactivated", "blacklisted": 1, "by": "root"})
        );

        let (status, user) = action(&app, &root, "activate", "alice").await;
        assert_eq!((status, user["is_active"].clone()), (StatusCode::OK, json!(true)));
        app.login().await;
        assert_eq!(detail_of(&app, "user_activated", "alice").await, json!({"by": "root"}));

        assert_eq!(
            action(&app, &root, "deactivate", "root").await,
            (StatusCode::BAD_REQUEST, json!({"detail": "You can't deactivate your own account."}))
        );
        for name in ["deactivate", "activate", "revoke", "unlock"] {
            assert_eq!(
                action(&app, &root, name, "nobody").await,
                (StatusCode::NOT_FOUND, json!({"detail": "Not found."})),
                "{name}"
            );
        }
    }
}

dual_test! {
    /// Revoke logs the user out everywhere; unlock lets a throttled user log in at once.
    async fn revoke_and_unlock() {
        let (app, root) = with_root(&[
            ("DOORMAN_LOGIN_BACKOFF_BASE", "30s"),
        ])
        .await;
        let (refresh, access) = app.login().await;
        let (status, user) = action(&app, &root, "revoke", "alice").await;
        assert_eq!((status, user["blacklisted"].clone()), (StatusCode::OK, json!(1)));
        assert_refused_as_blacklisted(&app, &refresh).await;
        assert_eq!(app.get_hello(&access).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(detail_of(&app, "tokens_revoked", "alice").await["by"], "root");

        for _ in 0..5 {
            app.post_token(&json!({"username": "alice", "password": "wrong-password-9"})).await;
        }
        assert_eq!(app.post_token(&credentials(ALICE)).await.status(), StatusCode::TOO_MANY_REQUESTS);
        let (status, user) = action(&app, &root, "unlock", "alice").await;
        assert_eq!(status, StatusCode::OK, "{user}");
        assert!(user["cleared"].as_u64().unwrap() >= 1, "{user}");
        assert_eq!(app.post_token(&credentials(ALICE)).await.status(), StatusCode::OK);
        assert_eq!(detail_of(&app, "user_unlocked", "alice").await["by"], "root");
    }
}

dual_test! {
    /// Creating users: 201 with the user, Django's duplicate message, field errors, booleans as
    /// DRF reads them (a form's "on", JSON's true).
    async fn create_users() {
        let (app, root) = with_root(&[]).await;
        let (status, user) = post(&app, &root, USERS, &json!({"username": "carol", "password": "carol-password-1"})).await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        let keys: Vec<&str> = user.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "username", "is_active", "is_superuser", "is_staff", "email", "last_login", "date_joined"]);
        assert_eq!((user["is_active"].clone(), user["is_superuser"].clone(), user["last_login"].clone()), (json!(true), json!(false), Value::Null));
        app.login_as("carol", "carol-password-1").await;
        assert_eq!(detail_of(&app, "user_created", "carol").await, json!({"superuser": false, "active": true, "by": "root"}));

        let res = app.client.post(app.url(USERS)).bearer_auth(&root)
            .form(&[("username", "dave"), ("password", "dave-password-1"), ("is_superuser", "on"), ("is_active", "false")])
            .send().await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let dave: Value = res.json().await.unwrap();
        assert_eq!((dave["is_superuser"].clone(), dave["is_active"].clone()), (json!(true), json!(false)));

        for (body, expected) in [
            (json!({"username": "carol", "password": "another-password-1"}), json!({"username": ["A user with that username already exists."]})),
            (json!({}), json!({"username": ["This field is required."], "password": ["This field is required."]})),
            (json!({"username": "e", "password": "short"}), json!({"password": ["A password has at least 8 characters."]})),
            (json!({"username": "bad name!", "password": "a-fine-password-1"}), json!({"username": ["A username may contain only letters, digits and @/./+/-/_."]})),
            (json!({"username": "x".repeat(151), "password": "a-fine-password-1"}), json!({"username": ["A username has 1 to 150 characters."]})),
            (json!({"username": "f", "password": "a-fine-password-1", "is_superuser": "maybe"}), json!({"is_superuser": ["Must be a valid boolean."]})),
            (json!({"username": "f", "password": "a-fine-password-1", "is_active": null}), json!({"is_active": ["This field may not be null."]})),
            (json!([1]), json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]})),
        ] {
            assert_eq!(post(&app, &root, USERS, &body).await, (StatusCode::BAD_REQUEST, expected), "{body}");
        }
    }
}

dual_test! {
    /// Search is a case-insensitive substring with `%` and `_` taken literally; pages follow
    /// DRF's limit/offset shape; bad numbers are 400.
    async fn list_search_and_pages() {
        let (app, root) = with_root(&[]).await;
        for name in ["100_sure", "100abc", "Zed_1", "zedd"] {
            app.create_user(name, "some-password-1", true).await;
        }
        let (status, page) = get(&app, &root, "/api/admin/users/?search=%25").await;
        assert_eq!(status, StatusCode::OK);
        let names = |page: &Value| -> Vec<String> {
            page["results"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_owned()).collect()
        };
        // No username may hold a `%`: taken as a wildcard, it would have matched them all.
        assert_eq!((page["count"].clone(), page["results"].clone()), (json!(0), json!([])));
        let (_, page) = get(&app, &root, "/api/admin/users/?search=_").await;
        assert_eq!(names(&page), ["100_sure", "Zed_1"]);
        let (_, page) = get(&app, &root, "/api/admin/users/?search=0_s").await;
        assert_eq!(names(&page), ["100_sure"]);
        let (_, page) = get(&app, &root, "/api/admin/users/?search=ZED").await;
        assert_eq!(names(&page), ["Zed_1", "zedd"]);

        // alice, inactive, root and the four: seven users.
        let (_, first) = get(&app, &root, "/api/admin/users/?limit=3").await;
        assert_eq!((first["count"].clone(), first["previous"].clone()), (json!(7), Value::Null));
        assert_eq!(names(&first), ["alice", "inactive", "root"]);
        let next = first["next"].as_str().unwrap();
        assert!(next.starts_with(&app.address), "{next}");
        let (_, second) = get(&app, &root, &next[app.address.len()..]).await;
        assert_eq!(names(&second), ["100_sure", "100abc", "Zed_1"]);
        let previous = second["previous"].as_str().unwrap();
        assert!(!previous.contains("offset"), "{previous}");
        let (_, third) = get(&app, &root, &second["next"].as_str().unwrap()[app.address.len()..]).await;
        assert_eq!((names(&third), third["next"].clone()), (vec!["zedd".to_owned()], Value::Null));
        assert!(third["previous"].as_str().unwrap().contains("offset=3"));
        let (_, all) = get(&app, &root, "/api/admin/users/?limit=100000").await;
        assert_eq!(all["results"].as_array().unwrap().len(), 7);

        for query in ["limit=0", "limit=x", "offset=-1", "limit=1e3", "offset=99999999999999999999"] {
            let (status, body) = get(&app, &root, &format!("/api/admin/users/?{query}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
            assert!(body["detail"].is_string(), "{body}");
        }
        let (status, body) = get(&app, &root, "/api/admin/users/?offset=1000").await;
        assert_eq!((status, body["results"].clone()), (StatusCode::OK, json!([])));
    }
}

dual_test! {
    /// The audit trail, newest first, one username's, paged by event id.
    async fn audit_pages() {
        let (app, root) = with_root(&[]).await;
        for _ in 0..3 {
            app.login().await;
        }
        action(&app, &root, "revoke", "alice").await;
        let (status, page) = get(&app, &root, "/api/admin/audit/?username=alice&limit=2").await;
        assert_eq!(status, StatusCode::OK);
        let results = page["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["kind"], "tokens_revoked");
        assert_eq!(results[0]["detail"]["by"], "root");
        assert_eq!(results[0]["client_addr"], "127.0.0.1");
        assert_eq!(results[1]["kind"], "login_succeeded");
        assert!(results[0]["id"].as_i64() > results[1]["id"].as_i64());
        let mut seen = 2;
        let mut next = page["next"].as_str().map(str::to_owned);
        while let Some(url) = next {
            let (_, page) = get(&app, &root, &url[app.address.len()..]).await;
            let results = page["results"].as_array().unwrap();
            assert!(results.iter().all(|e| e["username"] == "alice"));
            seen += results.len();
            next = page["next"].as_str().map(str::to_owned);
        }
        // Three logins and the revocation.
        assert_eq!(seen, 4);
        let (status, _) = get(&app, &root, "/api/admin/audit/?before=abc").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (_, all) = get(&app, &root, AUDIT).await;
        assert!(all["results"].as_array().unwrap().iter().any(|e| e["username"] == "root"));
    }
}

dual_test! {
    /// A normal user's valid token is 403 on every admin endpoint (OPTIONS too), no token is
    /// 401, and nothing changes.
    async fn only_superusers_get_in() {
        let (app, root) = with_root(&[]).await;
        let (_, alice) = app.login().await;
        let paths = [
            (reqwest::Method::GET, USERS),
            (reqwest::Method::POST, USERS),
            (reqwest::Method::OPTIONS, USERS),
            (reqwest::Method::POST, "/api/admin/users/deactivate/"),
            (reqwest::Method::POST, "/api/admin/users/activate/"),
            (reqwest::Method::POST, "/api/admin/users/unlock/"),
            (reqwest::Method::POST, "/api/admin/users/revoke/"),
            (reqwest::Method::GET, AUDIT),
        ];
        for (method, path) in paths {
            let body = json!({"username": "root", "password": "a-fine-password-1"});
            let res = app.client.request(method.clone(), app.url(path)).bearer_auth(&alice).json(&body).send().await.unwrap();
            assert_eq!(status_body(res).await, (StatusCode::FORBIDDEN, FORBIDDEN.to_owned()), "{method} {path}");
            let res = app.client.request(method.clone(), app.url(path)).json(&body).send().await.unwrap();
            assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"api\"");
            assert_eq!(status_body(res).await, (StatusCode::UNAUTHORIZED, NOT_PROVIDED.to_owned()), "{method} {path}");
        }
        let root_user = app.state.store.user_by_username("root").await.unwrap().unwrap();
        assert!(root_user.is_active);
        // An inactive superuser is no superuser: its token is refused by the user check.
        let res = app.client.delete(app.url(USERS)).bearer_auth(&root).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        let res = app.client.get(app.url("/api/admin/users/revoke/")).bearer_auth(&root).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}

/// The other pages' URLs start at `public_url` when it is set, whatever Host the request named.
#[tokio::test]
async fn page_links_start_at_the_public_url() {
    let (app, root) = with_root(&[("DOORMAN_PUBLIC_URL", "https://auth.example.com/id")]).await;
    let res = app
        .client
        .get(app.url("/api/admin/users/?limit=1&search=e"))
        .header("host", "evil.example")
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    let page: Value = res.json().await.unwrap();
    assert_eq!(
        page["next"],
        "https://auth.example.com/id/api/admin/users/?search=e&limit=1&offset=1"
    );
}
