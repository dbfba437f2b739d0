//! Refresh-token families and reuse detection (RFC 9700 section 4.14.2): with rotation and
//! blacklisting on, a rotated-out refresh token presented again after `refresh_reuse_grace`
//! revokes every token that descends from the same login, on every instance; inside the window
//! it is refused and revokes nothing.

use std::time::Duration;

use doorman::store::{AuditEvent, AuditFilter};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const BLACKLISTED: &str = r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#;

/// Rotation with blacklisting, and the grace window given.
fn rotating(grace: &'static str) -> [(&'static str, &'static str); 3] {
    [
        ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
        ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
        ("DOORMAN_REFRESH_REUSE_GRACE", grace),
    ]
}

/// Refreshes `refresh` at `app`, expecting success; the rotated refresh token.
async fn rotate(app: &TestApp, refresh: &str) -> String {
    let res = app.refresh(refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["refresh"].as_str().unwrap().to_owned()
}

/// A refresh sent as an attacker would, with a user agent of its own.
async fn replay(app: &TestApp, refresh: &str) -> (StatusCode, String) {
    let res = app
        .client
        .post(app.url("/api/token/refresh/"))
        .header("user-agent", "replayer/1.0")
        .json(&json!({"refresh": refresh}))
        .send()
        .await
        .unwrap();
    status_body(res).await
}

async fn family_revocations(app: &TestApp) -> Vec<AuditEvent> {
    app.state
        .store
        .audit_events(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "family_revoked")
        .collect()
}

/// The value of a counter without labels in `/metrics`, 0 when it was never counted.
async fn counter(app: &TestApp, name: &str) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn assert_verify_refuses(app: &TestApp, token: &str) {
    let (status, body) = status_body(app.verify(token).await).await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            r#"{"non_field_errors":["Token is blacklisted"]}"#
        )
    );
}

dual_test! {
    /// A thief's copy of an early token, replayed after the grace window, revokes the family:
    /// the live end of the chain is refused from then on (refresh and verify), as is every
    /// other member, while another login of the same user goes on. The revocation is in the
    /// audit trail with the replaying client and in the metrics; the answer is the usual one.
    async fn a_replay_after_the_grace_window_revokes_the_family() {
        let app = spawn_app_with(&rotating("1s")).await;
        let (r1, _) = app.login().await;
        let (other, _) = app.login().await;
        let r2 = rotate(&app, &r1).await;
        let r3 = rotate(&app, &r2).await;
        let r4 = rotate(&app, &r3).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;

        assert_eq!(replay(&app, &r1).await, (StatusCode::UNAUTHORIZED, BLACKLISTED.to_owned()));
        assert_refused_as_blacklisted(&app, &r4).await;
        assert_verify_refuses(&app, &r4).await;
        for spent in [&r2, &r3] {
            assert_refused_as_blacklisted(&app, spent).await;
        }
        let other_next = rotate(&app, &other).await;
        assert_eq!(app.verify(&other_next).await.status(), StatusCode::OK);

        let events = family_revocations(&app).await;
        assert_eq!(events.len(), 1, "{events:?}");
        let event = &events[0];
        assert_eq!(event.user_id, Some(1));
        assert_eq!(event.username.as_deref(), Some(ALICE.0));
        assert_eq!(event.client_addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(event.user_agent.as_deref(), Some("replayer/1.0"));
        assert_eq!(event.detail.as_deref(), Some(r#"{"revoked":1}"#));
        // Replays of r2 and r3 above were detected too, with nothing left to revoke.
        assert_eq!(counter(&app, "doorman_refresh_reuse_detected_total").await, 3.0);
    }
}

dual_test! {
    /// A replay inside the window (a retry after a lost answer, a second tab) is refused as
    /// before, and the successor keeps working: no revocation, no event.
    async fn a_replay_inside_the_grace_window_revokes_nothing() {
        let app = spawn_app_with(&rotating("")).await;
        assert_eq!(
            app.state.config.tokens.refresh_reuse_grace,
            Duration::from_secs(10),
            "the documented default"
        );
        let (r1, _) = app.login().await;
        let r2 = rotate(&app, &r1).await;
        assert_eq!(replay(&app, &r1).await, (StatusCode::UNAUTHORIZED, BLACKLISTED.to_owned()));
        assert_eq!(replay(&app, &r1).await.0, StatusCode::UNAUTHORIZED);
        let r3 = rotate(&app, &r2).await;
        rotate(&app, &r3).await;
        assert!(family_revocations(&app).await.is_empty());
        assert_eq!(counter(&app, "doorman_refresh_reuse_detected_total").await, 0.0);
    }
}

dual_test! {
    multi_thread async fn parallel_refreshes_of_one_token_have_one_winner_and_revoke_nothing() {
        let app = spawn_app_with(&rotating("")).await;
        let (r1, _) = app.login().await;
        let app = std::sync::Arc::new(app);
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(20));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (app, start, r1) = (app.clone(), start.clone(), r1.clone());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                let res = app.refresh(&r1).await;
                let status = res.status();
                let body: Value = res.json().await.unwrap();
                (status, body)
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            let (status, body) = task.await.unwrap();
            match status {
                StatusCode::OK => winners.push(body["refresh"].as_str().unwrap().to_owned()),
                StatusCode::UNAUTHORIZED => {
                    assert_eq!(body, serde_json::from_str::<Value>(BLACKLISTED).unwrap());
                }
                other => panic!("{other}: {body}"),
            }
        }
        assert_eq!(winners.len(), 1);
        // The losers were inside the window: the winner's token is still good.
        let next = rotate(&app, &winners[0]).await;
        assert_eq!(app.verify(&next).await.status(), StatusCode::OK);
        assert!(family_revocations(&app).await.is_empty());
    }
}

dual_test! {
    multi_thread async fn a_burst_of_replays_revokes_the_family_once() {
        let app = spawn_app_with(&rotating("0")).await;
        let (r1, _) = app.login().await;
        let r2 = rotate(&app, &r1).await;
        let app = std::sync::Arc::new(app);
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(20));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (app, start, r1) = (app.clone(), start.clone(), r1.clone());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                replay(&app, &r1).await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), (StatusCode::UNAUTHORIZED, BLACKLISTED.to_owned()));
        }
        assert_refused_as_blacklisted(&app, &r2).await;
        let events = family_revocations(&app).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].detail.as_deref(), Some(r#"{"revoked":1}"#));
        assert_eq!(counter(&app, "doorman_refresh_reuse_detected_total").await, 20.0);
    }
}

dual_test! {
    /// With `refresh_reuse_grace = 0` even a replay at once revokes the family.
    async fn without_a_grace_window_any_replay_revokes() {
        let app = spawn_app_with(&rotating("0")).await;
        let (r1, _) = app.login().await;
        let r2 = rotate(&app, &r1).await;
        assert_refused_as_blacklisted(&app, &r1).await;
        assert_refused_as_blacklisted(&app, &r2).await;
    }
}

dual_test! {
    /// Without `blacklist_after_rotation` a rotated-out token stays valid, as in simplejwt:
    /// using it again is no replay, and nothing is revoked.
    async fn without_blacklisting_after_rotation_nothing_is_revoked() {
        let app = spawn_app_with(&[
            ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
            ("DOORMAN_REFRESH_REUSE_GRACE", "0"),
        ])
        .await;
        let (r1, _) = app.login().await;
        let r2 = rotate(&app, &r1).await;
        rotate(&app, &r1).await;
        rotate(&app, &r2).await;
        assert!(family_revocations(&app).await.is_empty());
    }
}

dual_test! {
    /// Two instances on one database: a token rotated on B and replayed on A after the
    /// window; B refuses the successor at once, for the blacklist is the shared database's.
    async fn a_revocation_on_one_instance_holds_on_another_at_once() {
        let a = spawn_app_with(&rotating("1s")).await;
        let b = spawn_second_instance(&a, &rotating("1s")).await;
        let (r1, _) = a.login().await;
        let r2 = rotate(&b, &r1).await;
        let r3 = rotate(&a, &r2).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(replay(&a, &r1).await, (StatusCode::UNAUTHORIZED, BLACKLISTED.to_owned()));
        assert_refused_as_blacklisted(&b, &r3).await;
        assert_verify_refuses(&b, &r3).await;
    }
}
