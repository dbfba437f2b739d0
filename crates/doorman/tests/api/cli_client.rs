//! `doorman client`, run as a user would: the real binary against a live doorman (both
//! backends) and against the real Django + simplejwt app.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;
use crate::reference_app::ReferenceApp;

/// Where a test keeps its session, and the `doorman client` commands run on it.
struct Client {
    _dir: tempfile::TempDir,
    file: PathBuf,
}

impl Client {
    fn new() -> Client {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config/doorman/client.json");
        Client { _dir: dir, file }
    }

    /// Runs `doorman client ARGS` with `stdin`, off the runtime that serves the test's app.
    async fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = Command::cargo_bin("doorman").unwrap();
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DOORMAN_CLIENT_FILE", &self.file)
            .arg("client")
            .args(args)
            .write_stdin(stdin.to_owned());
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    async fn login(&self, base: &str, (user, password): (&str, &str)) -> Output {
        self.run(
            &["login", base, "--username", user, "--password-stdin"],
            &format!("{password}\n"),
        )
        .await
    }

    fn session(&self) -> Value {
        serde_json::from_slice(&std::fs::read(&self.file).unwrap()).unwrap()
    }

    fn token(&self, which: &str) -> String {
        self.session()[which].as_str().unwrap().to_owned()
    }

    /// Puts `access` in the stored session in place of the one the server gave.
    fn replace_access(&self, access: &str) {
        let mut session = self.session();
        session["access"] = Value::String(access.to_owned());
        std::fs::write(&self.file, serde_json::to_vec(&session).unwrap()).unwrap();
    }
}

fn out(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn err(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Neither token appears in what the command printed.
fn assert_no_token_shown(output: &Output, client: &Client) {
    for which in ["access", "refresh"] {
        let token = client.token(which);
        assert!(!out(output).contains(&token) && !err(output).contains(&token));
    }
}

/// An access token for alice that expired a minute ago, signed as the test servers sign.
fn expired_access() -> String {
    mint(&format!(
        r#"{{"token_type":"access","exp":{},"iat":1,"jti":"expired-access","user_id":1}}"#,
        now() - 60
    ))
}

dual_test! {
    /// The whole session: login with the password on stdin, a 0600 file, an authenticated
    /// GET, the expired access token refreshed once and the GET retried, logout blacklisting
    /// the refresh token.
    async fn login_get_refresh_logout() {
        let app = spawn_app_with(&[("DOORMAN_ACCESS_TOKEN_LIFETIME", "2")]).await;
        let client = Client::new();
        let login = client.login(&app.address, ALICE).await;
        assert!(login.status.success(), "{}", err(&login));
        assert_eq!(out(&login), format!("Logged in to {}/ as alice.\n", app.address));
        assert_eq!(mode(&client.file), 0o600);
        assert_eq!(mode(client.file.parent().unwrap()), 0o700);
        let session = client.session();
        assert_eq!(session["base_url"], format!("{}/", app.address));
        assert_eq!(session["username"], "alice");
        assert_no_token_shown(&login, &client);
        let (access, refresh) = (client.token("access"), client.token("refresh"));
        assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK);

        let hello = client.run(&["get", "/hello/"], "").await;
        assert!(hello.status.success(), "{}", err(&hello));
        assert_eq!(serde_json::from_slice::<Value>(&hello.stdout).unwrap()["message"], "Hello, World!");
        assert_no_token_shown(&hello, &client);
        assert_eq!(client.token("access"), access, "no refresh while the token is good");

        // Expired: refreshed once, stored, and the GET retried with the new token.
        tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
        assert_eq!(app.get_hello(&access).await.status(), StatusCode::UNAUTHORIZED);
        let hello = client.run(&["get", &app.url("/hello/")], "").await;
        assert!(hello.status.success(), "{}", err(&hello));
        assert!(out(&hello).contains("Hello, World!"));
        let renewed = client.token("access");
        assert_ne!(renewed, access);
        assert_eq!(app.get_hello(&renewed).await.status(), StatusCode::OK);
        assert_eq!(client.token("refresh"), refresh, "no rotation: the refresh token stays");
        assert_eq!(mode(&client.file), 0o600);

        // A failing status: the body still on stdout, the status on stderr, exit 1.
        let missing = client.run(&["get", "/no-such-page/"], "").await;
        assert_eq!(missing.status.code(), Some(1));
        assert!(err(&missing).contains("/no-such-page/ answered 404 Not Found"), "{}", err(&missing));
        assert!(!out(&missing).is_empty());

        // Only when asked.
        let shown = client.run(&["token"], "").await;
        assert_eq!(out(&shown).trim(), renewed);
        let shown = client.run(&["token", "--refresh"], "").await;
        assert_eq!(out(&shown).trim(), refresh);

        let logout = client.run(&["logout"], "").await;
        assert!(logout.status.success(), "{}", err(&logout));
        assert!(out(&logout).contains("blacklisted"), "{}", out(&logout));
        assert!(!client.file.exists());
        assert_refused_as_blacklisted(&app, &refresh).await;

        let after = client.run(&["get", "/hello/"], "").await;
        assert_eq!(after.status.code(), Some(1));
        assert!(err(&after).contains("not logged in"), "{}", err(&after));
    }
}

dual_test! {
    /// With rotation on, the refresh that renews the access token also replaces the stored
    /// refresh token.
    async fn a_rotated_refresh_token_is_kept() {
        let app = spawn_app_with(&[
            ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
            ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
        ])
        .await;
        let client = Client::new();
        assert!(client.login(&app.address, ALICE).await.status.success());
        let refresh = client.token("refresh");
        client.replace_access(&expired_access());
        let hello = client.run(&["get", "hello/"], "").await;
        assert!(hello.status.success(), "{}", err(&hello));
        let rotated = client.token("refresh");
        assert_ne!(rotated, refresh);
        // The stored token is the live successor (the old one, replayed this soon, would only
        // be answered with it again: doorman's reuse grace).
        assert_eq!(app.refresh(&rotated).await.status(), StatusCode::OK);
    }
}

dual_test! {
    /// A refresh token past its lifetime: the GET fails saying to log in again.
    async fn an_expired_session_says_log_in_again() {
        let app = spawn_app_with(&[
            ("DOORMAN_ACCESS_TOKEN_LIFETIME", "1"),
            ("DOORMAN_REFRESH_TOKEN_LIFETIME", "2"),
        ])
        .await;
        let client = Client::new();
        assert!(client.login(&app.address, ALICE).await.status.success());
        tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
        let hello = client.run(&["get", "/hello/"], "").await;
        assert_eq!(hello.status.code(), Some(1));
        let said = err(&hello);
        assert!(said.contains("has expired or was revoked"), "{said}");
        assert!(
            said.contains(&format!("doorman client login {}/ --username alice", app.address)),
            "{said}"
        );
        assert!(out(&hello).is_empty());
    }
}

dual_test! {
    /// A wrong password shows the server's `detail` and stores nothing; so many of them that
    /// the server throttles shows how long to wait.
    async fn wrong_password_then_throttled() {
        let app = spawn_app_with(&[("DOORMAN_LOGIN_BACKOFF_BASE", "30s")]).await;
        let client = Client::new();
        for _ in 0..5 {
            let login = client.login(&app.address, (ALICE.0, "wrong-password")).await;
            assert_eq!(login.status.code(), Some(1));
            assert!(
                err(&login).contains("No active account found with the given credentials"),
                "{}",
                err(&login)
            );
            assert!(!client.file.exists());
        }
        let login = client.login(&app.address, ALICE).await;
        assert_eq!(login.status.code(), Some(1));
        let said = err(&login);
        assert!(said.contains("is throttling requests: Request was throttled."), "{said}");
        assert!(said.contains("(try again in "), "{said}");
        assert!(!client.file.exists());
    }
}

dual_test! {
    /// The token goes only to the origin that issued it: an absolute URL elsewhere is refused
    /// before anything is sent, unless the flag says otherwise.
    async fn another_origin_is_refused() {
        let app = spawn_app().await;
        let client = Client::new();
        assert!(client.login(&app.address, ALICE).await.status.success());
        let (elsewhere, seen) = recording_server("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let refused = client.run(&["get", &format!("{elsewhere}/x")], "").await;
        assert_eq!(refused.status.code(), Some(2));
        assert!(err(&refused).contains("another origin"), "{}", err(&refused));
        let refused = client.run(&["get", &format!("//{}/x", elsewhere.trim_start_matches("http://"))], "").await;
        assert_eq!(refused.status.code(), Some(2));
        assert!(seen.lock().unwrap().is_empty());
        // Asked for: sent.
        let sent = client
            .run(&["get", &format!("{elsewhere}/x"), "--allow-other-origin"], "")
            .await;
        assert!(sent.status.success(), "{}", err(&sent));
        assert_eq!(out(&sent), "ok");
        let requests = seen.lock().unwrap().clone();
        assert_eq!(requests.len(), 1);
        assert!(requests[0].to_ascii_lowercase().contains("authorization: bearer "));
    }
}

/// A redirect to another host is not followed: the token never reaches it.
#[tokio::test]
async fn a_redirect_to_another_origin_is_not_followed() {
    let (target, target_seen) =
        recording_server("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let redirect =
        format!("HTTP/1.1 302 Found\r\nlocation: {target}/stolen\r\ncontent-length: 0\r\n\r\n");
    let (origin, origin_seen) = recording_server(Box::leak(redirect.into_boxed_str())).await;
    let client = Client::new();
    std::fs::create_dir_all(client.file.parent().unwrap()).unwrap();
    let session = serde_json::json!({
        "base_url": format!("{origin}/"), "username": "alice",
        "access": mint_access("1"), "refresh": "r",
    });
    std::fs::write(&client.file, session.to_string()).unwrap();
    std::fs::set_permissions(&client.file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let got = client.run(&["get", "/start"], "").await;
    assert_eq!(got.status.code(), Some(1));
    assert!(
        err(&got).contains(&format!("redirected to {target}/stolen")),
        "{}",
        err(&got)
    );
    assert_eq!(origin_seen.lock().unwrap().len(), 1);
    assert!(
        target_seen.lock().unwrap().is_empty(),
        "the redirect was followed"
    );

    // A session file others can read is refused, not used.
    std::fs::set_permissions(&client.file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let got = client.run(&["get", "/start"], "").await;
    assert_eq!(got.status.code(), Some(1));
    assert!(err(&got).contains("chmod 600"), "{}", err(&got));
    assert_eq!(origin_seen.lock().unwrap().len(), 1);
}

/// A server without the blacklist endpoint (404): the session is forgotten here, and the
/// command says the tokens stay valid there.
#[tokio::test]
async fn logout_without_a_blacklist_forgets_locally() {
    let (origin, seen) =
        recording_server("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await;
    let client = Client::new();
    std::fs::create_dir_all(client.file.parent().unwrap()).unwrap();
    let session = serde_json::json!({
        "base_url": format!("{origin}/"), "username": "alice",
        "access": mint_access("1"), "refresh": "the-refresh-token",
    });
    std::fs::write(&client.file, session.to_string()).unwrap();
    std::fs::set_permissions(&client.file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let logout = client.run(&["logout"], "").await;
    assert!(logout.status.success(), "{}", err(&logout));
    assert!(
        out(&logout).contains("has no blacklist endpoint (404)"),
        "{}",
        out(&logout)
    );
    assert!(
        out(&logout).contains("stay valid there until they expire"),
        "{}",
        out(&logout)
    );
    assert!(!client.file.exists());
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].starts_with("POST /api/token/blacklist/ "),
        "{}",
        requests[0]
    );
}

/// Clear failures before any token exists: a server that is not there, plain http to a
/// remote host, no session, no password on stdin.
#[tokio::test]
async fn failures_are_explained() {
    let client = Client::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let login = client
        .login(&format!("http://127.0.0.1:{port}/"), ALICE)
        .await;
    assert_eq!(login.status.code(), Some(1));
    assert!(
        err(&login).contains(&format!(
            "could not reach http://127.0.0.1:{port}/api/token/"
        )),
        "{}",
        err(&login)
    );
    let login = client.login("http://auth.example.com/", ALICE).await;
    assert_eq!(login.status.code(), Some(2));
    assert!(err(&login).contains("plain http"), "{}", err(&login));
    let login = client
        .run(
            &[
                "login",
                "https://auth.example.com/",
                "--username",
                "alice",
                "--password-stdin",
            ],
            "",
        )
        .await;
    assert_eq!(login.status.code(), Some(1));
    assert!(
        err(&login).contains("no password on standard input"),
        "{}",
        err(&login)
    );
    for args in [
        &["get", "/hello/"][..],
        &["logout"],
        &["token"],
        &["status"],
    ] {
        let got = client.run(args, "").await;
        assert_eq!(got.status.code(), Some(1));
        assert!(err(&got).contains("not logged in"), "{}", err(&got));
    }
    assert!(!client.file.exists());
}

/// The same client against the real Django + simplejwt app (rotation and blacklist on).
#[tokio::test]
async fn against_django_simplejwt() {
    let Some(django) = ReferenceApp::start(TEST_SECRET, true).await else {
        return;
    };
    let client = Client::new();
    let wrong = client
        .login(&django.base_url, (ALICE.0, "wrong-password"))
        .await;
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        err(&wrong).contains("No active account found with the given credentials"),
        "{}",
        err(&wrong)
    );

    let login = client.login(&django.base_url, ALICE).await;
    assert!(login.status.success(), "{}", err(&login));
    assert_eq!(mode(&client.file), 0o600);
    let hello = client.run(&["get", "/hello/"], "").await;
    assert!(hello.status.success(), "{}", err(&hello));
    assert_eq!(
        serde_json::from_slice::<Value>(&hello.stdout).unwrap()["message"],
        "Hello, World!"
    );

    // An expired access token: Django says token_not_valid; refreshed (rotated) and retried.
    let refresh = client.token("refresh");
    client.replace_access(&expired_access());
    let hello = client.run(&["get", "/hello/"], "").await;
    assert!(hello.status.success(), "{}", err(&hello));
    assert_ne!(client.token("access"), expired_access());
    let rotated = client.token("refresh");
    assert_ne!(rotated, refresh);

    let http = reqwest::Client::new();
    let refresh_at = |token: String| {
        http.post(format!("{}/api/token/refresh/", django.base_url))
            .json(&serde_json::json!({"refresh": token}))
            .send()
    };
    assert_eq!(
        refresh_at(refresh).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    let logout = client.run(&["logout"], "").await;
    assert!(logout.status.success(), "{}", err(&logout));
    assert!(out(&logout).contains("blacklisted"), "{}", out(&logout));
    let res = refresh_at(rotated).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["detail"], "Token is blacklisted");
}

/// A one-connection-at-a-time HTTP server answering every request with `answer`, and the
/// requests it saw (head only).
async fn recording_server(
    answer: &'static str,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            record
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (address, seen)
}
