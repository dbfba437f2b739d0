//! The audit trail: what logins and the `doorman` commands leave in `audit_events` and in the
//! log (target `doorman::audit`), and that neither ever holds a password or a token.

use std::io::Write;
use std::sync::{Arc, Mutex};

use doorman::store::{AuditEvent, AuditFilter};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const AGENT: &str = "audit-test/1.0";

/// The log lines written on this thread while the guard lives. The tests run on tokio's
/// current-thread runtime, so the server's tasks log on this thread too.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn audit_lines(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.contains("doorman::audit"))
            .map(str::to_owned)
            .collect()
    }
}

async fn events(app: &TestApp) -> Vec<AuditEvent> {
    app.state
        .store
        .audit_events(&AuditFilter::default())
        .await
        .unwrap()
}

async fn log_in(app: &TestApp, username: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/token/"))
        .header("user-agent", AGENT)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

dual_test! {
    async fn a_login_leaves_one_event_with_who_and_from_where() {
        let app = spawn_app().await;
        let (log, _guard) = Captured::start();
        let alice = app.state.store.user_by_username(ALICE.0).await.unwrap().unwrap();

        let res = log_in(&app, ALICE.0, ALICE.1).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();

        let found = events(&app).await;
        assert_eq!(found.len(), 1, "{found:?}");
        let event = &found[0];
        assert_eq!(event.kind, "login_succeeded");
        assert_eq!(event.username.as_deref(), Some(ALICE.0));
        assert_eq!(event.user_id, Some(alice.id));
        assert_eq!(event.client_addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(event.user_agent.as_deref(), Some(AGENT));
        assert_eq!(event.detail, None);

        let lines = log.audit_lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("login_succeeded"), "{}", lines[0]);
        assert!(lines[0].contains("127.0.0.1"), "{}", lines[0]);
        let secrets = [
            ALICE.1,
            body["refresh"].as_str().unwrap(),
            body["access"].as_str().unwrap(),
        ];
        assert_no_secrets(&app, &log, &secrets).await;
    }
}

dual_test! {
    async fn a_failed_login_leaves_one_event_with_the_name_as_given() {
        let app = spawn_app().await;
        let (log, _guard) = Captured::start();
        let alice = app.state.store.user_by_username(ALICE.0).await.unwrap().unwrap();

        let wrong = "not-alices-password-9";
        let res = log_in(&app, ALICE.0, wrong).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let found = events(&app).await;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, "login_failed");
        assert_eq!(found[0].username.as_deref(), Some(ALICE.0));
        assert_eq!(found[0].user_id, Some(alice.id));
        assert_eq!(found[0].client_addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(found[0].user_agent.as_deref(), Some(AGENT));

        // A name that no user has is kept as given, without an id.
        let res = log_in(&app, "nobody-here", wrong).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let found = events(&app).await;
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[1].kind, "login_failed");
        assert_eq!(found[1].username.as_deref(), Some("nobody-here"));
        assert_eq!(found[1].user_id, None);

        assert_eq!(log.audit_lines().len(), 2, "{}", log.text());
        assert_no_secrets(&app, &log, &[wrong, ALICE.1]).await;
    }
}

dual_test! {
    async fn refused_requests_and_token_checks_leave_no_event() {
        let app = spawn_app().await;
        let (refresh, access) = app.login().await;
        assert_eq!(events(&app).await.len(), 1);

        // The hot paths write nothing; nor does a login that never got to the password check.
        assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK);
        assert_eq!(app.verify(&access).await.status(), StatusCode::OK);
        assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);
        let res = app.post_token(&json!({"username": ALICE.0})).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(events(&app).await.len(), 1);
    }
}

/// Neither the table nor the log holds any of `secrets`.
async fn assert_no_secrets(app: &TestApp, log: &Captured, secrets: &[&str]) {
    let table = format!("{:?}", events(app).await);
    let log = log.text();
    for secret in secrets {
        assert!(!table.contains(secret), "{secret} in the table: {table}");
        assert!(!log.contains(secret), "{secret} in the log: {log}");
    }
}

dual_test! {
    async fn a_login_succeeds_and_fails_as_before_when_the_audit_write_fails() {
        let app = spawn_app().await;
        // Renaming the table away makes every audit insert fail, and nothing else.
        let rename = "ALTER TABLE audit_events RENAME TO audit_events_away";
        match backend() {
            Backend::Sqlite => {
                use sqlx::Connection;
                let mut conn = sqlx::SqliteConnection::connect(&app.database_url).await.unwrap();
                sqlx::query(rename).execute(&mut conn).await.unwrap();
            }
            Backend::Postgres => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&app.database_url).await.unwrap();
                sqlx::query(rename).execute(&mut conn).await.unwrap();
            }
        }
        let (log, _guard) = Captured::start();
        assert_eq!(log_in(&app, ALICE.0, ALICE.1).await.status(), StatusCode::OK);
        let res = log_in(&app, ALICE.0, "not-alices-password-9").await;
        let (status, body) = status_body(res).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            body,
            r#"{"detail":"No active account found with the given credentials"}"#
        );
        assert!(log.text().contains("could not write the audit event"), "{}", log.text());
    }
}
