//! Racing refreshes: with rotation and blacklisting on, exactly one of many concurrent
//! refreshes of one token wins (simplejwt lets 2 to 4 of 8 through).

use reqwest::StatusCode;

use crate::helpers::*;

dual_test! {
    multi_thread async fn twenty_concurrent_refreshes_one_winner() {
        let app = spawn_app_with(&[
            ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
            ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
        ])
        .await;
        let (refresh, _) = app.login().await;
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let client = app.client.clone();
            let url = app.url("/api/token/refresh/");
            let body = serde_json::json!({"refresh": refresh});
            tasks.push(tokio::spawn(async move {
                let res = client.post(url).json(&body).send().await.unwrap();
                (res.status(), res.text().await.unwrap())
            }));
        }
        let mut ok = 0;
        for task in tasks {
            let (status, body) = task.await.unwrap();
            match status {
                StatusCode::OK => ok += 1,
                StatusCode::UNAUTHORIZED => assert_eq!(
                    body,
                    r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#
                ),
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert_eq!(ok, 1, "exactly one refresh must win");
    }
}
