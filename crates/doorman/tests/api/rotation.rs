//! Racing refreshes: with rotation and blacklisting on, exactly one of many concurrent
//! refreshes of one token rotates it (simplejwt lets 2 to 4 of 8 through, each with a token of
//! its own); the others, inside `refresh_reuse_grace`, are given the winner's successor.

use reqwest::StatusCode;
use serde_json::Value;

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
        let mut successors = std::collections::BTreeSet::new();
        for task in tasks {
            let (status, body) = task.await.unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
            let body: Value = serde_json::from_str(&body).unwrap();
            successors.insert(body["refresh"].as_str().unwrap().to_owned());
        }
        assert_eq!(successors.len(), 1, "exactly one refresh must rotate: {successors:?}");
    }
}
