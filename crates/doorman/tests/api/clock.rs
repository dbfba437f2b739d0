//! The wall clock stepping ahead and back under a running server (through the server's own
//! clock, stepped by the tests' hook): spent refresh tokens stay refused, and tokens minted
//! meanwhile carry the stepped clock's times, nothing stranger.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

const DAY: i64 = 86_400;

/// Waits until the pruner has run a few times (it runs every second here).
async fn let_the_pruner_run() {
    tokio::time::sleep(Duration::from_millis(2_500)).await;
}

dual_test! {
    /// A blacklisted and a rotated-out refresh token (refresh lifetime one day) with the clock
    /// stepped two days ahead and back: pruning by the stepped clock would delete their rows
    /// as expired, and the step back would make both acceptable again. Both stay refused.
    multi_thread async fn a_clock_stepped_ahead_and_back_revives_no_spent_token() {
        let app = spawn_app_with(&[
            ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
            ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
            ("DOORMAN_REFRESH_TOKEN_LIFETIME", "1d"),
            ("DOORMAN_PRUNE_INTERVAL", "1s"),
            // Refused outright when presented again, not answered with its successor.
            ("DOORMAN_REFRESH_REUSE_GRACE", "0"),
        ])
        .await;
        let (blacklisted, _) = app.login().await;
        assert_eq!(app.blacklist(&blacklisted).await.status(), StatusCode::OK);
        let (rotated_out, _) = app.login().await;
        assert_eq!(app.refresh(&rotated_out).await.status(), StatusCode::OK);
        assert_refused_as_blacklisted(&app, &blacklisted).await;
        assert_refused_as_blacklisted(&app, &rotated_out).await;

        app.state.clock.step(time::Duration::seconds(2 * DAY));
        let_the_pruner_run().await;
        let metrics = metrics_text(&app).await;
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("doorman_prune_clock_ahead_total ") && !l.ends_with(" 0")),
            "{metrics}"
        );
        app.state.clock.step(time::Duration::seconds(-2 * DAY));
        let_the_pruner_run().await;

        assert_refused_as_blacklisted(&app, &blacklisted).await;
        assert_refused_as_blacklisted(&app, &rotated_out).await;
        // And the clocks agreeing again, the pruner works as before.
        let (fresh, _) = app.login().await;
        assert_eq!(app.refresh(&fresh).await.status(), StatusCode::OK);
    }
}

/// Tokens minted with the clock stepped an hour back: `iat` is the stepped clock's time and
/// `exp` the lifetime after it, and they are accepted by the same server.
#[tokio::test]
async fn tokens_minted_after_a_step_back_carry_the_stepped_time() {
    let app = spawn_app_with(&[
        ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
        ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
    ])
    .await;
    app.state.clock.step(time::Duration::hours(-1));
    let stepped = now() - 3_600;
    let (refresh, access) = app.login().await;
    for (token, lifetime) in [(&refresh, DAY), (&access, 300)] {
        let claims = payload(token);
        let iat = claims["iat"].as_i64().unwrap();
        let exp = claims["exp"].as_i64().unwrap();
        assert!((stepped - 2..=stepped + 2).contains(&iat), "{claims}");
        assert_eq!(exp - iat, lifetime, "{claims}");
    }
    let res = app.refresh(&refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    let rotated: serde_json::Value = res.json().await.unwrap();
    let iat = payload(rotated["refresh"].as_str().unwrap())["iat"]
        .as_i64()
        .unwrap();
    assert!((stepped - 2..=stepped + 2).contains(&iat));
    assert_eq!(app.verify(&access).await.status(), StatusCode::OK);
    // Stepped forward again, past the old time: nothing refused that was valid.
    app.state.clock.step(time::Duration::hours(1));
    assert_eq!(
        app.refresh(rotated["refresh"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );
}
