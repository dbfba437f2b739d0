//! The token views against simplejwt's contract: bodies, claims, status codes and headers.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

dual_test! {
    async fn obtain_returns_refresh_then_access_with_simplejwt_claims() {
        let app = spawn_app().await;
        let res = app
            .post_token(&credentials(ALICE))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(res.headers()["cache-control"], "no-store");
        let text = res.text().await.unwrap();
        assert!(
            text.starts_with(r#"{"refresh":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."#),
            "{text}"
        );
        let body: Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["refresh", "access"]);
        let refresh = payload(body["refresh"].as_str().unwrap());
        let access = payload(body["access"].as_str().unwrap());
        let order: Vec<_> = refresh.as_object().unwrap().keys().cloned().collect();
        assert_eq!(order, ["token_type", "exp", "iat", "jti", "user_id"]);
        let order: Vec<_> = access.as_object().unwrap().keys().cloned().collect();
        assert_eq!(order, ["token_type", "exp", "iat", "jti", "user_id"]);
        assert_eq!(refresh["token_type"], "refresh");
        assert_eq!(access["token_type"], "access");
        assert_eq!(refresh["user_id"], "1");
        assert_eq!(
            access["exp"].as_i64().unwrap() - access["iat"].as_i64().unwrap(),
            300
        );
        assert_eq!(
            refresh["exp"].as_i64().unwrap() - refresh["iat"].as_i64().unwrap(),
            86_400
        );
    }
}

dual_test! {
    async fn obtain_refuses_unknown_wrong_and_inactive_alike() {
        let app = spawn_app().await;
        for (u, p) in [
            ("alice", "wrong-password"),
            ("nobody", "alice-password-1"),
            INACTIVE,
        ] {
            let res = app.post_token(&json!({"username": u, "password": p})).await;
            assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"api\"");
            let (status, body) = status_body(res).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{u}");
            assert_eq!(
                body,
                r#"{"detail":"No active account found with the given credentials"}"#
            );
        }
    }
}

dual_test! {
    async fn obtain_trims_fields_and_accepts_forms() {
        let app = spawn_app().await;
        let res = app
            .post_token(&json!({"username": " alice ", "password": "  alice-password-1 "}))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let res = app
            .client
            .post(app.url("/api/token/"))
            .form(&[("username", "alice"), ("password", "alice-password-1")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let form = reqwest::multipart::Form::new()
            .text("username", "alice")
            .text("password", "alice-password-1");
        let res = app
            .client
            .post(app.url("/api/token/"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}

dual_test! {
    async fn obtain_field_errors() {
        let app = spawn_app().await;
        let (s, b) = status_body(app.post_token(&json!({})).await).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(
            b,
            r#"{"username":["This field is required."],"password":["This field is required."]}"#
        );
        let (s, b) = status_body(
            app.post_token(&json!({"username": "", "password": null}))
                .await,
        )
        .await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::BAD_REQUEST,
                r#"{"username":["This field may not be blank."],"password":["This field may not be null."]}"#
            )
        );
        let (s, b) = status_body(
            app.post_token(&json!({"username": ["a"], "password": "x"}))
                .await,
        )
        .await;
        assert_eq!(
            (s, b.as_str()),
            (StatusCode::BAD_REQUEST, r#"{"username":["Not a valid string."]}"#)
        );
        let (s, b) = status_body(app.post_token(&json!([1])).await).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::BAD_REQUEST,
                r#"{"non_field_errors":["Invalid data. Expected a dictionary, but got list."]}"#
            )
        );
    }
}

dual_test! {
    async fn refresh_gives_a_new_access_token_and_keeps_claims() {
        let app = spawn_app().await;
        let (refresh, _) = app.login().await;
        let res = app.refresh(&refresh).await;
        assert_eq!(res.headers()["cache-control"], "no-store");
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            body.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["access"]
        );
        let access = body["access"].as_str().unwrap();
        assert_eq!(payload(access)["user_id"], "1");
        assert_eq!(app.get_hello(access).await.status(), StatusCode::OK);
    }
}

dual_test! {
    async fn refresh_with_rotation_returns_access_then_refresh() {
        let app = spawn_app_with(&[("DOORMAN_ROTATE_REFRESH_TOKENS", "true")]).await;
        let (refresh, _) = app.login().await;
        let body: Value = app.refresh(&refresh).await.json().await.unwrap();
        assert_eq!(
            body.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["access", "refresh"]
        );
        let new = payload(body["refresh"].as_str().unwrap());
        let old = payload(&refresh);
        assert_ne!(new["jti"], old["jti"]);
        assert_eq!(new["user_id"], old["user_id"]);
        // Without BLACKLIST_AFTER_ROTATION the old token keeps working, as in simplejwt.
        assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);
    }
}

dual_test! {
    async fn token_errors_have_simplejwt_bodies() {
        let app = spawn_app().await;
        let (refresh, access) = app.login().await;
        let (s, b) = status_body(app.refresh(&access).await).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(
            b,
            r#"{"detail":"Token has wrong type","code":"token_not_valid"}"#
        );
        let (s, b) = status_body(app.refresh("garbage").await).await;
        assert_eq!(
            (s, b.as_str()),
            (StatusCode::UNAUTHORIZED, r#"{"detail":"Token is invalid","code":"token_not_valid"}"#)
        );
        let expired = mint(&format!(
            r#"{{"token_type":"refresh","exp":{},"iat":1,"jti":"x","user_id":"1"}}"#,
            now() - 1
        ));
        let (s, b) = status_body(app.refresh(&expired).await).await;
        assert_eq!(
            (s, b.as_str()),
            (StatusCode::UNAUTHORIZED, r#"{"detail":"Token is expired","code":"token_not_valid"}"#)
        );
        let no_exp = mint(r#"{"token_type":"refresh","jti":"x","user_id":"1"}"#);
        let (s, b) = status_body(app.refresh(&no_exp).await).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::UNAUTHORIZED,
                r#"{"detail":"Token has no 'exp' claim","code":"token_not_valid"}"#
            )
        );
        let no_jti = mint(&format!(
            r#"{{"token_type":"refresh","exp":{},"user_id":"1"}}"#,
            now() + 60
        ));
        let (s, b) = status_body(app.refresh(&no_jti).await).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "simplejwt answers 500 here");
        assert_eq!(
            b,
            r#"{"detail":"Token has no id","code":"token_not_valid"}"#
        );
        let no_type = mint(&format!(r#"{{"exp":{},"jti":"y","user_id":"1"}}"#, now() + 60));
        let (s, b) = status_body(app.refresh(&no_type).await).await;
        assert_eq!(
            (s, b.as_str()),
            (StatusCode::UNAUTHORIZED, r#"{"detail":"Token has no type","code":"token_not_valid"}"#)
        );
        let (s, b) = status_body(app.verify(&refresh).await).await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "{}"));
    }
}

dual_test! {
    async fn refresh_refuses_deleted_inactive_and_odd_users() {
        let app = spawn_app().await;
        let bob = app.create_user("bob", "bob-password-1", true).await;
        let (refresh, _) = app.login_as("bob", "bob-password-1").await;
        app.state.store.set_active("bob", false).await.unwrap();
        let (s, b) = status_body(app.refresh(&refresh).await).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(
            b,
            r#"{"detail":"No active account found for the given token."}"#
        );
        app.state.store.delete_user("bob").await.unwrap();
        let (s, b) = status_body(app.refresh(&refresh).await).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::UNAUTHORIZED,
                r#"{"detail":"No active account found for the given token."}"#
            ),
            "user {bob} deleted: simplejwt 5.5.1 answers 500"
        );
        for (i, user_id) in [r#""abc""#, "0", r#""""#, "false", "null", "1.5"]
            .into_iter()
            .enumerate()
        {
            let t = mint(&format!(
                r#"{{"token_type":"refresh","exp":{},"iat":1,"jti":"j{i}","user_id":{user_id}}}"#,
                now() + 60
            ));
            let (s, b) = status_body(app.refresh(&t).await).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "user_id {user_id}");
            assert_eq!(
                b, r#"{"detail":"No active account found for the given token."}"#,
                "user_id {user_id}"
            );
        }
    }
}

dual_test! {
    /// A refresh asks the guard's cached user check: a user deactivated by another process
    /// (here straight in the store, past this instance's cache) can refresh for at most
    /// `user_cache_ttl` (1 s) more, never longer. A refresh token blacklisted by another
    /// instance is refused by the next refresh and verify here: the blacklist is not cached.
    multi_thread async fn refresh_sees_other_processes_within_user_cache_ttl_and_blacklists_at_once() {
        let app = spawn_app().await;
        let other = spawn_second_instance(&app, &[]).await;
        app.create_user("bob", "bob-password-1", true).await;
        let (refresh, _) = app.login_as("bob", "bob-password-1").await;
        assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);
        let started = std::time::Instant::now();
        app.state.store.set_active("bob", false).await.unwrap();
        loop {
            let (s, b) = status_body(app.refresh(&refresh).await).await;
            if s == StatusCode::UNAUTHORIZED {
                assert_eq!(b, r#"{"detail":"No active account found for the given token."}"#);
                break;
            }
            assert_eq!(s, StatusCode::OK, "{b}");
            // 1 s of cache, plus a little for the requests themselves on a busy machine.
            let took = started.elapsed();
            assert!(took < std::time::Duration::from_millis(1800), "still refreshing after {took:?}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }

        app.create_user("carol", "carol-password-1", true).await;
        let (refresh, _) = app.login_as("carol", "carol-password-1").await;
        assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);
        assert_eq!(other.blacklist(&refresh).await.status(), StatusCode::OK);
        let blacklisted = r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#;
        let (s, b) = status_body(app.refresh(&refresh).await).await;
        assert_eq!((s, b.as_str()), (StatusCode::UNAUTHORIZED, blacklisted));
        // simplejwt's verify says it as a validation error.
        let (s, b) = status_body(app.verify(&refresh).await).await;
        assert_eq!(
            (s, b.as_str()),
            (StatusCode::BAD_REQUEST, r#"{"non_field_errors":["Token is blacklisted"]}"#)
        );
    }
}

dual_test! {
    async fn blacklist_then_refresh_and_verify_are_refused() {
        let app = spawn_app().await;
        let (refresh, _) = app.login().await;
        let (s, b) = status_body(app.blacklist(&refresh).await).await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "{}"));
        let (s, b) = status_body(app.refresh(&refresh).await).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(
            b,
            r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#
        );
        let (s, b) = status_body(app.blacklist(&refresh).await).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::UNAUTHORIZED,
                r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#
            )
        );
        // simplejwt's verify ignores the blacklist unless BLACKLIST_AFTER_ROTATION; doorman never does.
        let (s, b) = status_body(app.verify(&refresh).await).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::BAD_REQUEST,
                r#"{"non_field_errors":["Token is blacklisted"]}"#
            )
        );
    }
}

dual_test! {
    async fn blacklist_accepts_a_refresh_token_this_server_never_issued() {
        let app = spawn_app().await;
        let foreign = mint(&format!(
            r#"{{"token_type":"refresh","exp":{},"iat":1,"jti":"f00d","user_id":"1"}}"#,
            now() + 60
        ));
        assert_eq!(app.blacklist(&foreign).await.status(), StatusCode::OK);
        assert_eq!(
            app.refresh(&foreign).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
}

dual_test! {
    async fn rotation_with_blacklist_refuses_the_old_token() {
        let app = spawn_app_with(&[
            ("DOORMAN_ROTATE_REFRESH_TOKENS", "1"),
            ("DOORMAN_BLACKLIST_AFTER_ROTATION", "1"),
        ])
        .await;
        let (refresh, _) = app.login().await;
        let body: Value = app.refresh(&refresh).await.json().await.unwrap();
        let successor = body["refresh"].as_str().unwrap();
        // Inside refresh_reuse_grace the old token is given its successor again (a retry after
        // a lost answer); once the successor is used, the old token is refused.
        let again: Value = app.refresh(&refresh).await.json().await.unwrap();
        assert_eq!(again["refresh"].as_str(), Some(successor));
        assert_eq!(app.refresh(successor).await.status(), StatusCode::OK);
        let (s, b) = status_body(app.refresh(&refresh).await).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::UNAUTHORIZED,
                r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#
            )
        );
    }
}

dual_test! {
    async fn sliding_tokens_obtain_and_refresh() {
        let app = spawn_app().await;
        let res = app
            .post_json(
                "/api/token/sliding/",
                &credentials(ALICE),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        let token = body["token"].as_str().unwrap();
        let claims = payload(token);
        let order: Vec<_> = claims.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            order,
            ["token_type", "exp", "iat", "jti", "refresh_exp", "user_id"]
        );
        let res = app
            .post_json("/api/token/sliding/refresh/", &json!({"token": token}))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let again: Value = res.json().await.unwrap();
        assert_eq!(
            payload(again["token"].as_str().unwrap())["jti"],
            claims["jti"]
        );
        let stale = mint(&format!(
            r#"{{"token_type":"sliding","exp":{},"iat":1,"jti":"s1","refresh_exp":{},"user_id":"1"}}"#,
            now() + 60,
            now() - 1
        ));
        let (s, b) = status_body(
            app.post_json("/api/token/sliding/refresh/", &json!({"token": stale}))
                .await,
        )
        .await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::UNAUTHORIZED,
                r#"{"detail":"Token 'refresh_exp' claim has expired","code":"token_not_valid"}"#
            )
        );
        // A sliding token is not an access token.
        assert_eq!(
            app.get_hello(token).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
}

dual_test! {
    async fn sliding_routes_can_be_switched_off() {
        let app = spawn_app_with(&[("DOORMAN_SLIDING_TOKENS", "false")]).await;
        let (s, b) = status_body(app.post_json("/api/token/sliding/", &json!({})).await).await;
        assert_eq!(
            (s, b.as_str()),
            (StatusCode::NOT_FOUND, r#"{"detail":"Not found."}"#)
        );
    }
}

dual_test! {
    async fn update_last_login_records_the_login() {
        let app = spawn_app_with(&[("DOORMAN_UPDATE_LAST_LOGIN", "true")]).await;
        let last_login = async || {
            let alice = app.state.store.user_by_username("alice").await.unwrap();
            alice.unwrap().last_login
        };
        assert!(last_login().await.is_none());
        app.login().await;
        assert!(last_login().await.is_some());
    }
}

dual_test! {
    async fn custom_claim_names_and_audience() {
        let app = spawn_app_with(&[
            ("DOORMAN_USER_ID_CLAIM", "uid"),
            ("DOORMAN_AUDIENCE", "api"),
            ("DOORMAN_ISSUER", "doorman"),
        ])
        .await;
        let (refresh, access) = app.login().await;
        let claims = payload(&access);
        assert_eq!(claims["uid"], "1");
        assert_eq!(claims["aud"], "api");
        assert_eq!(claims["iss"], "doorman");
        assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK);
        assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);
        let wrong_aud = mint(&format!(
            r#"{{"token_type":"access","exp":{},"iat":1,"jti":"a","uid":"1","aud":"other","iss":"doorman"}}"#,
            now() + 60
        ));
        assert_eq!(
            app.get_hello(&wrong_aud).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
}

dual_test! {
    async fn django_password_hashes_log_in_and_are_upgraded() {
        let app = spawn_app().await;
        // Django's PBKDF2PasswordHasher output for "carol-password-1" (1000 iterations, salt "saltsalt").
        let django = "pbkdf2_sha256$1000$saltsalt$7yXn0aC1wCLgIKkZTFxSjbYZX5zqwSInAQugDf3LJf8=";
        let user = app
            .state
            .store
            .create_user(doorman::store::NewUser {
                username: "carol".into(),
                password_hash: django.into(),
                is_active: true,
                is_superuser: false,
            })
            .await
            .unwrap();
        app.login_as("carol", "carol-password-1").await;
        let stored = app
            .state
            .store
            .user_by_id(user.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash;
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        app.login_as("carol", "carol-password-1").await;
    }
}

dual_test! {
    /// Verify skips the blacklist lookup only for tokens whose type claim says "access". With
    /// the type claim turned off (`token_type_claim = ""`) nothing says so: a blacklisted
    /// refresh token must still fail verify.
    async fn verify_checks_the_blacklist_when_token_types_are_off() {
        let app = spawn_app_with_empty(&[("DOORMAN_TOKEN_TYPE_CLAIM", "")]).await;
        let (refresh, access) = app.login().await;
        assert!(payload(&refresh).get("token_type").is_none());
        assert_eq!(app.blacklist(&refresh).await.status(), StatusCode::OK);
        let (s, b) = status_body(app.verify(&refresh).await).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::BAD_REQUEST,
                r#"{"non_field_errors":["Token is blacklisted"]}"#
            )
        );
        assert_eq!(app.verify(&access).await.status(), StatusCode::OK);
    }
}

dual_test! {
    /// With `jti_claim = ""` tokens carry no id, as the setting says: logins record nothing,
    /// refresh and verify work without the blacklist, and blacklisting, which needs an id,
    /// answers "Token has no id". (Logins used to fail with that same answer.)
    async fn tokens_without_ids_when_jti_claim_is_off() {
        let app = spawn_app_with_empty(&[("DOORMAN_JTI_CLAIM", "")]).await;
        let (refresh, access) = app.login().await;
        assert!(payload(&refresh).get("jti").is_none(), "{refresh}");
        assert!(payload(&access).get("jti").is_none(), "{access}");
        let res = app.refresh(&refresh).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(app.verify(&refresh).await.status(), StatusCode::OK);
        assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK);
        let (s, b) = status_body(app.blacklist(&refresh).await).await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::UNAUTHORIZED,
                r#"{"detail":"Token has no id","code":"token_not_valid"}"#
            )
        );
    }
}
