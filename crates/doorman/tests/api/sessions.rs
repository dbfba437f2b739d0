//! An account's sessions: `GET /api/account/sessions/` lists each login's refresh-token family
//! that still has a live token, with the client it came from; `POST
//! /api/account/sessions/revoke/` ends one of the caller's own, and nobody else's.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const SESSIONS: &str = "/api/account/sessions/";
const REVOKE: &str = "/api/account/sessions/revoke/";

/// Logs `user` in from a client with this user agent, forwarded for `addr`: (refresh, access).
async fn login_from(
    app: &TestApp,
    user: (&str, &str),
    agent: &str,
    addr: &str,
) -> (String, String) {
    let res = app
        .client
        .post(app.url("/api/token/"))
        .header("user-agent", agent)
        .header("x-forwarded-for", addr)
        .json(&credentials(user))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    (
        body["refresh"].as_str().unwrap().to_owned(),
        body["access"].as_str().unwrap().to_owned(),
    )
}

async fn sessions(app: &TestApp, access: &str) -> Vec<Value> {
    let res = app
        .client
        .get(app.url(SESSIONS))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    body["sessions"].as_array().unwrap().clone()
}

async fn revoke(app: &TestApp, access: &str, body: &Value) -> (StatusCode, String) {
    let res = app
        .client
        .post(app.url(REVOKE))
        .bearer_auth(access)
        .json(body)
        .send()
        .await
        .unwrap();
    status_body(res).await
}

fn jti(token: &str) -> String {
    payload(token)["jti"].as_str().unwrap().to_owned()
}

fn time(value: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        value.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

dual_test! {
    /// Two logins from two clients are two sessions, newest first, each with its client; a
    /// rotation keeps its session, used later and with the new token.
    async fn logins_are_sessions_with_their_clients() {
        let app = spawn_app_with(&[
            ("DOORMAN_TRUSTED_PROXIES", "127.0.0.1"),
            ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
            ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
        ])
        .await;
        let (laptop, _) = login_from(&app, ALICE, "laptop-browser/1.0", "198.51.100.7").await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (phone, access) = login_from(&app, ALICE, "phone-app/2.0", "203.0.113.9").await;
        let listed = sessions(&app, &access).await;
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert_eq!(
            listed[0],
            json!({
                "id": jti(&phone),
                "token_id": jti(&phone),
                "started_at": listed[0]["started_at"],
                "last_used_at": listed[0]["started_at"],
                "expires_at": listed[0]["expires_at"],
                "client_addr": "203.0.113.9",
                "user_agent": "phone-app/2.0",
            })
        );
        assert_eq!(
            (listed[1]["id"].as_str(), listed[1]["client_addr"].as_str(), listed[1]["user_agent"].as_str()),
            (Some(jti(&laptop).as_str()), Some("198.51.100.7"), Some("laptop-browser/1.0"))
        );
        let started = time(&listed[1]["started_at"]);
        assert_eq!(started.unix_timestamp(), payload(&laptop)["iat"].as_i64().unwrap());
        assert_eq!(time(&listed[1]["expires_at"]).unix_timestamp(), payload(&laptop)["exp"].as_i64().unwrap());

        // The laptop refreshes from elsewhere a second later: still one session, now the
        // most recently used, with the successor and the new client.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let res = app
            .client
            .post(app.url("/api/token/refresh/"))
            .header("user-agent", "laptop-browser/1.1")
            .header("x-forwarded-for", "198.51.100.8")
            .json(&json!({"refresh": laptop}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let successor = res.json::<Value>().await.unwrap()["refresh"].as_str().unwrap().to_owned();
        let listed = sessions(&app, &access).await;
        assert_eq!(listed.len(), 2);
        let rotated = &listed[0];
        assert_eq!(rotated["id"], jti(&laptop));
        assert_eq!(rotated["token_id"], jti(&successor));
        assert_eq!(time(&rotated["started_at"]), started);
        assert!(time(&rotated["last_used_at"]) > started, "{rotated}");
        assert_eq!((rotated["client_addr"].as_str(), rotated["user_agent"].as_str()), (Some("198.51.100.8"), Some("laptop-browser/1.1")));
        assert_eq!(listed[1]["id"], jti(&phone));
    }
}

dual_test! {
    /// Ending one session leaves the other working and refuses the ended one's refresh token;
    /// another user's session can't be ended nor told from an unknown one; revoke-all ends all.
    async fn revoking_sessions() {
        let app = spawn_app().await;
        app.create_user("bob", "bob-password-1", true).await;
        let (first, _) = app.login().await;
        let (second, access) = app.login().await;
        let (bobs, bob_access) = app.login_as("bob", "bob-password-1").await;

        assert_eq!(revoke(&app, &access, &json!({"id": jti(&first)})).await, (StatusCode::OK, "{}".to_owned()));
        assert_refused_as_blacklisted(&app, &first).await;
        assert_eq!(app.refresh(&second).await.status(), StatusCode::OK);
        let listed = sessions(&app, &access).await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["id"], jti(&second));
        let events = app.state.store.audit_events(&Default::default()).await.unwrap();
        let event = events.iter().find(|e| e.kind == "session_revoked").unwrap();
        assert_eq!(event.username.as_deref(), Some("alice"));
        assert!(event.detail.as_deref().unwrap().contains(&jti(&first)));

        let not_found = (StatusCode::NOT_FOUND, r#"{"detail":"Not found."}"#.to_owned());
        assert_eq!(revoke(&app, &access, &json!({"id": jti(&bobs)})).await, not_found);
        assert_eq!(revoke(&app, &access, &json!({"id": "no-such-session"})).await, not_found);
        assert_eq!(revoke(&app, &access, &json!({"id": "%"})).await, not_found);
        assert_eq!(app.refresh(&bobs).await.status(), StatusCode::OK);
        assert_eq!(sessions(&app, &bob_access).await.len(), 1);

        let res = app.client.post(app.url("/api/token/revoke-all/")).bearer_auth(&bob_access).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let (_, bob_again) = app.login_as("bob", "bob-password-1").await;
        let listed = sessions(&app, &bob_again).await;
        assert_eq!(listed.len(), 1, "only the login after the revocation: {listed:?}");
        assert_ne!(listed[0]["id"], jti(&bobs));
    }
}

dual_test! {
    /// Without a valid access token: 401 as on `/hello/`; a refresh token as the Bearer is no
    /// access token; bad bodies are field errors; other methods 405; all JSON.
    async fn refusals() {
        let app = spawn_app().await;
        let (refresh, access) = app.login().await;
        for path in [SESSIONS, REVOKE] {
            let res = app.client.post(app.url(path)).send().await.unwrap();
            assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"api\"");
            assert_eq!(
                status_body(res).await,
                (StatusCode::UNAUTHORIZED, r#"{"detail":"Authentication credentials were not provided."}"#.to_owned())
            );
            let res = app.client.get(app.url(path)).bearer_auth(&refresh).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
        }
        for (body, expected) in [
            (json!({}), r#"{"id":["This field is required."]}"#),
            (json!({"id": ""}), r#"{"id":["This field may not be blank."]}"#),
            (json!({"id": {"a": 1}}), r#"{"id":["Not a valid string."]}"#),
            (json!(7), r#"{"non_field_errors":["Invalid data. Expected a dictionary, but got int."]}"#),
        ] {
            assert_eq!(revoke(&app, &access, &body).await, (StatusCode::BAD_REQUEST, expected.to_owned()), "{body}");
        }
        let res = app.client.post(app.url(REVOKE)).bearer_auth(&access)
            .header("content-type", "application/json").body(vec![b'"'; 100 * 1024]).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let res = app.client.get(app.url(REVOKE)).bearer_auth(&access).send().await.unwrap();
        assert_eq!(status_body(res).await, (StatusCode::METHOD_NOT_ALLOWED, r#"{"detail":"Method \"GET\" not allowed."}"#.to_owned()));
        let res = app.client.delete(app.url(SESSIONS)).bearer_auth(&access).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        let res = app.client.request(reqwest::Method::OPTIONS, app.url(SESSIONS)).bearer_auth(&access).send().await.unwrap();
        assert_eq!(res.json::<Value>().await.unwrap()["name"], "Account Sessions");
        // A form body works as on the token views.
        let res = app.client.post(app.url(REVOKE)).bearer_auth(&access).form(&[("id", jti(&refresh))]).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}
