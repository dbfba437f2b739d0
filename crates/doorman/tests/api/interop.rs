//! Interop with the real Django + simplejwt app (`tests/interop/reference-app`), both
//! sides sharing one HS256 key and the same users: tokens minted by either side open the other's
//! `/hello/`, refresh tokens cross over, and the tutorial's `requests` client script works
//! against doorman unchanged.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::reference_app::ReferenceApp;

async fn hello(client: &reqwest::Client, base: &str, access: &str) -> (StatusCode, String) {
    let res = get_hello_at(client, base, access).await;
    (res.status(), res.text().await.unwrap())
}

dual_test! {
    async fn tokens_cross_between_django_and_doorman() {
        let Some(django) = ReferenceApp::start(TEST_SECRET, false).await else {
            return;
        };
        let app = spawn_app().await;
        let client = reqwest::Client::new();
        let dj = django.base_url.trim_end_matches('/').to_owned();
        let dm = app.address.clone();

        // Django's access token opens doorman's /hello/, and doorman's opens Django's.
        let (dj_refresh, dj_access) = obtain_pair_at(&client, &dj, ALICE).await;
        let (dm_refresh, dm_access) = obtain_pair_at(&client, &dm, ALICE).await;
        assert_eq!(
            hello(&client, &dm, &dj_access).await,
            (StatusCode::OK, r#"{"message":"Hello, World!"}"#.to_owned())
        );
        assert_eq!(
            hello(&client, &dj, &dm_access).await,
            (StatusCode::OK, r#"{"message":"Hello, World!"}"#.to_owned())
        );

        // A Django service that adds a kid (PyJWT's `jwt.encode(..., headers={"kid": "x"})`
        // writes this header) is understood by both: simplejwt ignores the kid, and so does
        // doorman with its one HS256 secret.
        let with_kid = sign_hs256(
            r#"{"alg":"HS256","kid":"x","typ":"JWT"}"#,
            &format!(
                r#"{{"token_type":"access","exp":{},"iat":{},"jti":"k1","user_id":"1"}}"#,
                now() + 300,
                now()
            ),
            TEST_SECRET.as_bytes(),
        );
        for base in [&dj, &dm] {
            assert_eq!(
                hello(&client, base, &with_kid).await,
                (StatusCode::OK, r#"{"message":"Hello, World!"}"#.to_owned()),
                "a token with a kid at {base}"
            );
        }

        // The two sides lay tokens out identically: same header, same claim names in the same order.
        for (ours, theirs) in [(&dm_access, &dj_access), (&dm_refresh, &dj_refresh)] {
            assert_eq!(
                ours.split('.').next(),
                theirs.split('.').next(),
                "header segment"
            );
            let keys = |t: &str| {
                payload(t)
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
            };
            assert_eq!(keys(ours), keys(theirs));
        }

        // A refresh token from one side is refreshed by the other, and the result works on both.
        for (refresh, at) in [(&dj_refresh, &dm), (&dm_refresh, &dj)] {
            let res = client
                .post(format!("{at}/api/token/refresh/"))
                .json(&json!({"refresh": refresh}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "refresh at {at}");
            let body: Value = res.json().await.unwrap();
            let access = body["access"].as_str().unwrap();
            assert_eq!(hello(&client, &dm, access).await.0, StatusCode::OK);
            assert_eq!(hello(&client, &dj, access).await.0, StatusCode::OK);
        }

        // Both verify each other's tokens.
        for base in [&dj, &dm] {
            for token in [&dj_access, &dm_access, &dj_refresh, &dm_refresh] {
                let res = client
                    .post(format!("{base}/api/token/verify/"))
                    .json(&json!({"token": token}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), StatusCode::OK);
            }
        }

        // Error answers agree byte for byte on the common cases.
        let cases: Vec<(&str, Value)> = vec![
            (
                "/api/token/",
                json!({"username": "alice", "password": "wrong"}),
            ),
            ("/api/token/", json!({})),
            ("/api/token/refresh/", json!({"refresh": "garbage"})),
            ("/api/token/refresh/", json!({"refresh": dj_access})),
            ("/api/token/verify/", json!({"token": ""})),
        ];
        for (path, body) in cases {
            let a = client
                .post(format!("{dj}{path}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let b = client
                .post(format!("{dm}{path}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(a.status(), b.status(), "{path} {body}");
            assert_eq!(
                a.text().await.unwrap(),
                b.text().await.unwrap(),
                "{path} {body}"
            );
        }
    }
}

dual_test! {
    async fn the_tutorial_client_script_works_against_doorman() {
        let Some(django) = ReferenceApp::start(TEST_SECRET, false).await else {
            return;
        };
        let app = spawn_app().await;
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/client.py");
        for base in [
            format!("{}/", django.base_url.trim_end_matches('/')),
            format!("{}/", app.address),
        ] {
            let out = django
                .python(&script, &[&base, "alice", "alice-password-1"])
                .await;
            assert!(
                out.status.success(),
                "client.py against {base}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("Hello, World!"));
        }
    }
}

dual_test! {
    async fn the_same_requests_get_the_same_answers() {
        let Some(django) = ReferenceApp::start(TEST_SECRET, false).await else {
            return;
        };
        let app = spawn_app().await;
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/differential.py");
        let out = django
            .python(&script, &[&django.base_url, &app.address, TEST_SECRET])
            .await;
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{report}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(report.contains(" 0 disagreements"), "{report}");
    }
}

dual_test! {
    async fn rotation_interop_and_the_blacklist() {
        let Some(django) = ReferenceApp::start(TEST_SECRET, true).await else {
            return;
        };
        let app = spawn_app_with(&[
            ("DOORMAN_ROTATE_REFRESH_TOKENS", "1"),
            ("DOORMAN_BLACKLIST_AFTER_ROTATION", "1"),
            // No grace window: a rotated-out token is refused at once, as in simplejwt.
            ("DOORMAN_REFRESH_REUSE_GRACE", "0"),
        ])
        .await;
        let client = reqwest::Client::new();
        let (dj_refresh, _) = obtain_pair_at(&client, &django.base_url, ALICE).await;
        // Doorman rotates Django's refresh token; the rotated one works at Django too.
        let res = client
            .post(format!("{}/api/token/refresh/", app.address))
            .json(&json!({"refresh": dj_refresh}))
            .send()
            .await
            .unwrap();
        let body: Value = res.json().await.unwrap();
        let rotated = body["refresh"].as_str().unwrap();
        let res = client
            .post(format!("{}/api/token/refresh/", django.base_url))
            .json(&json!({"refresh": rotated}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        // The token doorman rotated out is blacklisted at doorman, as simplejwt does at home.
        let (s, b) = status_body(
            client
                .post(format!("{}/api/token/refresh/", app.address))
                .json(&json!({"refresh": dj_refresh}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, b.as_str()),
            (
                StatusCode::UNAUTHORIZED,
                r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#
            )
        );
    }
}

/// doorman's 429 is DRF's `Throttled` answer byte for byte: the reference app's login view
/// behind DRF's own throttle (one request a minute, and one a second for the singular "1
/// second") answers a burst, and doorman's `ApiError::Throttled` with the same wait must give
/// the same status, `Retry-After`, content type and body.
#[tokio::test]
async fn throttled_answers_are_drfs() {
    use axum::response::IntoResponse;
    let Some(django) = ReferenceApp::start(TEST_SECRET, false).await else {
        return;
    };
    let client = reqwest::Client::new();
    for (path, plural) in [("/throttled/minute/", true), ("/throttled/second/", false)] {
        // gunicorn's two workers count apart, so a burst of four at once throttles at least
        // one, unless a loaded machine spreads it over more than the one-second window: then
        // the burst is sent again (what is compared is the 429, not DRF's timing).
        let mut theirs = None;
        for _ in 0..10 {
            let burst = (0..4).map(|_| {
                client
                    .post(format!("{}{path}", django.base_url))
                    .json(&json!({"username": "alice", "password": "wrong"}))
                    .send()
            });
            theirs = futures_util::future::join_all(burst)
                .await
                .into_iter()
                .map(Result::unwrap)
                .find(|res| res.status() == StatusCode::TOO_MANY_REQUESTS);
            if theirs.is_some() {
                break;
            }
        }
        let theirs = theirs.unwrap_or_else(|| panic!("{path}: no 429 in ten bursts of four"));
        let wait: u64 = theirs.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(wait != 1, plural, "{path}: Retry-After {wait}");
        let their_type = theirs.headers()["content-type"].clone();
        let their_body = theirs.text().await.unwrap();
        let ours = doorman::api::ApiError::Throttled(wait).into_response();
        assert_eq!(ours.status().as_u16(), 429);
        assert_eq!(ours.headers()["retry-after"], wait.to_string().as_str());
        assert_eq!(ours.headers()["content-type"], their_type);
        let our_body = axum::body::to_bytes(ours.into_body(), 4096).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&our_body), their_body, "{path}");
    }
}
