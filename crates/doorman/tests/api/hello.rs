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
        let no_user = sign_hs256(
            HS256_HEADER,
            &format!(
                r#"{{"token_type":"access","exp":{},"iat":1,"jti":"a"}}"#,
                now() + 60
            ),
            TEST_SECRET,
        );
        let (_, b) = status_body(app.get_hello(&no_user).await).await;
        assert_eq!(
            b,
            r#"{"detail":"Token contained no recognizable user identification","code":"token_not_valid"}"#
        );
        for user_id in [r#""999""#, "999", "null", r#""abc""#] {
            let t = sign_hs256(
                HS256_HEADER,
                &format!(
                    r#"{{"token_type":"access","exp":{},"iat":1,"jti":"a","user_id":{user_id}}}"#,
                    now() + 60
                ),
                TEST_SECRET,
            );
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
        let numeric = sign_hs256(
            HS256_HEADER,
            &format!(
                r#"{{"token_type":"access","exp":{},"iat":1,"jti":"a","user_id":1}}"#,
                now() + 60
            ),
            TEST_SECRET,
        );
        assert_eq!(app.get_hello(&numeric).await.status(), StatusCode::OK);
        let inactive = sign_hs256(
            HS256_HEADER,
            &format!(
                r#"{{"token_type":"access","exp":{},"iat":1,"jti":"a","user_id":"2"}}"#,
                now() + 60
            ),
            TEST_SECRET,
        );
        let (_, b) = status_body(app.get_hello(&inactive).await).await;
        assert_eq!(b, r#"{"detail":"User is inactive","code":"user_inactive"}"#);
    }
}

dual_test! {
    async fn inactive_users_pass_when_the_check_is_off() {
        let app = spawn_app_with(&[("DOORMAN_CHECK_USER_IS_ACTIVE", "false")]).await;
        let inactive = sign_hs256(
            HS256_HEADER,
            &format!(
                r#"{{"token_type":"access","exp":{},"iat":1,"jti":"a","user_id":"2"}}"#,
                now() + 60
            ),
            TEST_SECRET,
        );
        assert_eq!(app.get_hello(&inactive).await.status(), StatusCode::OK);
    }
}

dual_test! {
    async fn deactivating_a_user_stops_their_access_token_at_once() {
        let app = spawn_app().await;
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
        assert!(header.starts_with(r#"{"alg":"EdDSA","kid":""#), "{header}");
        assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK);
        assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);
        assert!(app.dir.path().join("data/signing-key.pem").exists());
        // An HS256 token signed with the shared test secret is not accepted by an EdDSA deployment.
        let forged = sign_hs256(
            HS256_HEADER,
            &format!(
                r#"{{"token_type":"access","exp":{},"iat":1,"jti":"a","user_id":"1"}}"#,
                now() + 60
            ),
            TEST_SECRET,
        );
        assert_eq!(
            app.get_hello(&forged).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
}
