//! `spawn_app()`: the real server on 127.0.0.1:0 with a fresh SQLite file, and typed request
//! helpers. `TEST_LOG=1` shows the server's logs.

use std::collections::BTreeMap;
use std::sync::Once;

use doorman::config::{Config, Overrides};
use doorman::{AppState, Application};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

/// Clearly a test key: the HS256 secret the tests (and the Django peer) share.
pub const TEST_SECRET: &str = "doorman-test-only-hs256-secret-0123456789abcdef";
pub const ALICE: (&str, &str) = ("alice", "alice-password-1");
pub const INACTIVE: (&str, &str) = ("inactive", "inactive-password-1");

static TRACING: Once = Once::new();

pub struct TestApp {
    pub address: String,
    pub client: Client,
    pub state: AppState,
    pub database_url: String,
    pub dir: tempfile::TempDir,
}

/// The default test server: HS256 with [`TEST_SECRET`], simplejwt's defaults otherwise, and
/// the reference app's users (alice id 1, inactive id 2).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// As [`spawn_app`], with `DOORMAN_*` settings added or replaced (an empty value removes one).
pub async fn spawn_app_with(settings: &[(&str, &str)]) -> TestApp {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            doorman::telemetry::init("debug");
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert(
        "DOORMAN_DATA_DIR".into(),
        dir.path().join("data").display().to_string(),
    );
    env.insert("DOORMAN_BIND".into(), "127.0.0.1:0".into());
    env.insert("DOORMAN_SIGNING_KEY".into(), TEST_SECRET.into());
    env.insert("DOORMAN_PASSWORD_HASH_WORKERS".into(), "2".into());
    for (k, v) in settings {
        if v.is_empty() {
            env.remove(*k);
        } else {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
    }
    let config = Config::load_from(None, &env, &Overrides::default()).expect("test config");
    let database_url = config.database_url.clone();
    let app = Application::build(config).await.expect("build app");
    let address = format!("http://{}", app.local_addr().expect("local addr"));
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let test_app = TestApp {
        address,
        client: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        state,
        database_url,
        dir,
    };
    test_app.create_user(ALICE.0, ALICE.1, true).await;
    test_app.create_user(INACTIVE.0, INACTIVE.1, false).await;
    test_app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn create_user(&self, name: &str, password: &str, active: bool) -> i64 {
        self.state
            .accounts
            .create_user(name, password.to_owned().into(), false, active)
            .await
            .expect("create user")
            .id
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_token(&self, body: &Value) -> Response {
        self.post_json("/api/token/", body).await
    }

    /// Logs alice in and returns (refresh, access).
    pub async fn login(&self) -> (String, String) {
        self.login_as(ALICE.0, ALICE.1).await
    }

    pub async fn login_as(&self, username: &str, password: &str) -> (String, String) {
        let res = self
            .post_token(&json!({"username": username, "password": password}))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.expect("json");
        (
            body["refresh"].as_str().expect("refresh").to_owned(),
            body["access"].as_str().expect("access").to_owned(),
        )
    }

    pub async fn get_hello(&self, token: &str) -> Response {
        self.client
            .get(self.url("/hello/"))
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .await
            .expect("request")
    }

    pub async fn refresh(&self, refresh: &str) -> Response {
        self.post_json("/api/token/refresh/", &json!({"refresh": refresh}))
            .await
    }

    pub async fn verify(&self, token: &str) -> Response {
        self.post_json("/api/token/verify/", &json!({"token": token}))
            .await
    }

    pub async fn blacklist(&self, refresh: &str) -> Response {
        self.post_json("/api/token/blacklist/", &json!({"refresh": refresh}))
            .await
    }
}

/// Status and body text of a response.
pub async fn status_body(res: Response) -> (StatusCode, String) {
    let status = res.status();
    (status, res.text().await.expect("body"))
}

/// The decoded payload of a token.
pub fn payload(token: &str) -> Value {
    use base64::Engine;
    let segment = token.split('.').nth(1).expect("payload segment");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json payload")
}

/// An HS256 token over exactly this header and payload text, signed with `secret`.
pub fn sign_hs256(header: &str, payload: &str, secret: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

pub const HS256_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

pub fn now() -> i64 {
    doorman::unix_now()
}
