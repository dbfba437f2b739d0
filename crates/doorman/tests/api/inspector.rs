//! `POST /api/token/inspect/`: the token debugger. Every verdict from a real token (issued by
//! the server, or minted as an attacker or a misconfigured peer would), the bodies DRF parses,
//! the refusals of a request without a token, and a log that never holds the token.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const INSPECT: &str = "/api/token/inspect/";

async fn inspect_with(app: &TestApp, body: &Value) -> Value {
    let res = app.post_json(INSPECT, body).await;
    assert_eq!(res.status(), StatusCode::OK, "{body}");
    assert_eq!(
        res.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    res.json().await.unwrap()
}

async fn inspect(app: &TestApp, token: &str) -> Value {
    inspect_with(app, &json!({"token": token})).await
}

/// The verdict and reason of `token`, checking the reason is one sentence.
async fn verdict(app: &TestApp, token: &str) -> (String, String) {
    let answer = inspect(app, token).await;
    let reason = answer["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.ends_with('.') && !reason.contains('\n'),
        "{reason:?}"
    );
    (answer["verdict"].as_str().unwrap().to_owned(), reason)
}

fn base64url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// A token of alice's (id 1) of this type, minted with these time claims.
fn minted(token_type: &str, times: &str) -> String {
    mint(&format!(
        r#"{{"token_type":"{token_type}",{times},"jti":"{}","user_id":1}}"#,
        uuid::Uuid::new_v4().simple()
    ))
}

dual_test! {
    /// Tokens the server issued are valid, with their decoded header and claims and their type.
    async fn issued_tokens_are_valid_with_their_contents() {
        let app = spawn_app().await;
        let (refresh, access) = app.login().await;
        let answer = inspect(&app, &access).await;
        assert_eq!(answer["verdict"], "valid");
        assert_eq!(answer["reason"], "The token is valid.");
        assert_eq!(answer["header"], json!({"alg": "HS256", "typ": "JWT"}));
        assert_eq!(answer["claims"], payload(&access));
        assert_eq!(answer["token_type"], "access");
        let keys: Vec<&str> = answer.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["verdict", "reason", "header", "claims", "token_type"]);

        let answer = inspect_with(&app, &json!({"token": refresh, "expect": "refresh"})).await;
        assert_eq!((answer["verdict"].as_str(), answer["token_type"].as_str()), (Some("valid"), Some("refresh")));
        assert_eq!(answer["claims"]["user_id"], "1");

        let res = app.post_json("/api/token/sliding/", &credentials(ALICE)).await;
        let sliding = res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
        let answer = inspect_with(&app, &json!({"token": sliding, "expect": "sliding"})).await;
        assert_eq!((answer["verdict"].as_str(), answer["token_type"].as_str()), (Some("valid"), Some("sliding")));
        let answer = inspect_with(&app, &json!({"token": sliding, "expect": "access"})).await;
        assert_eq!(answer["reason"], "The token is a sliding token, not the access token expected.");
    }
}

dual_test! {
    /// Expired, not yet valid, tampered, of another type than expected: each its verdict, the
    /// contents shown all the same.
    async fn time_signature_and_type_verdicts() {
        let app = spawn_app().await;
        let now = now();
        let expired = minted("access", &format!(r#""exp":1796648400,"iat":{}"#, 1_796_648_400 - 300));
        assert!(now > 1_796_648_400 + 30, "the test's clock is before its fixed expiry");
        assert_eq!(
            verdict(&app, &expired).await,
            ("expired".to_owned(), "The token expired at 2026-12-07 13:00:00 UTC.".to_owned())
        );
        let answer = inspect(&app, &expired).await;
        assert_eq!(answer["claims"]["exp"], 1_796_648_400);
        assert_eq!(answer["token_type"], "access");

        let early = minted("access", &format!(r#""exp":{},"nbf":{},"iat":{now}"#, now + 7200, now + 3600));
        let (v, reason) = verdict(&app, &early).await;
        assert_eq!(v, "not_yet_valid");
        assert!(reason.contains("\"nbf\""), "{reason}");
        let future_iat = minted("access", &format!(r#""exp":{},"iat":{}"#, now + 7200, now + 3600));
        assert_eq!(verdict(&app, &future_iat).await.0, "not_yet_valid");

        let (_, access) = app.login().await;
        let mut parts: Vec<String> = access.split('.').map(str::to_owned).collect();
        let mut claims = payload(&access);
        claims["user_id"] = json!("2");
        parts[1] = base64url(&claims.to_string());
        let tampered = parts.join(".");
        let answer = inspect(&app, &tampered).await;
        assert_eq!(answer["verdict"], "bad_signature");
        // The forged contents are shown as written: unverified.
        assert_eq!(answer["claims"]["user_id"], "2");

        let answer = inspect_with(&app, &json!({"token": access, "expect": "refresh"})).await;
        assert_eq!(answer["verdict"], "wrong_type");
        assert_eq!(answer["reason"], "The token is an access token, not the refresh token expected.");
        let odd = minted("id", &format!(r#""exp":{},"iat":{now}"#, now + 60));
        let (v, reason) = verdict(&app, &odd).await;
        assert_eq!(v, "wrong_type");
        assert!(reason.contains("\"id\""), "{reason}");
        let untyped = mint(&format!(r#"{{"exp":{},"iat":{now},"jti":"x","user_id":1}}"#, now + 60));
        assert_eq!(verdict(&app, &untyped).await.0, "wrong_type");
        let no_exp = mint(r#"{"token_type":"access","jti":"x","user_id":1}"#);
        assert_eq!(verdict(&app, &no_exp).await, ("invalid".to_owned(), "The token has no \"exp\" claim.".to_owned()));
    }
}

dual_test! {
    /// Garbage is malformed with nothing decoded; `alg: none` and another secret's signature are
    /// refused before their claims are believed.
    async fn malformed_and_unsigned_tokens() {
        let app = spawn_app().await;
        for garbage in ["garbage", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9", "😀.😀.😀"] {
            let answer = inspect(&app, garbage).await;
            assert_eq!(answer["verdict"], "malformed", "{garbage}");
            assert!(answer["claims"].is_null(), "{garbage}");
            assert!(answer["token_type"].is_null(), "{garbage}");
        }
        // The header decodes, the payload doesn't.
        let half = format!("{}.bm90IGpzb24.c2ln", base64url(HS256_HEADER));
        let answer = inspect(&app, &half).await;
        assert_eq!((answer["verdict"].as_str(), answer["header"]["alg"].as_str()), (Some("malformed"), Some("HS256")));
        assert!(answer["claims"].is_null());

        let now = now();
        let claims = format!(r#"{{"token_type":"access","exp":{},"iat":{now},"jti":"x","user_id":1}}"#, now + 60);
        let unsigned = format!("{}.{}.", base64url(r#"{"alg":"none","typ":"JWT"}"#), base64url(&claims));
        let answer = inspect(&app, &unsigned).await;
        assert_eq!(answer["verdict"], "unknown_key");
        assert!(answer["reason"].as_str().unwrap().contains("none"), "{answer}");
        assert_eq!(answer["claims"]["user_id"], 1);
        let other_secret = sign_hs256(HS256_HEADER, &claims, b"another-secret-of-at-least-32-bytes!!");
        assert_eq!(verdict(&app, &other_secret).await.0, "bad_signature");
        let hs512 = sign_hs256(r#"{"alg":"HS512","typ":"JWT"}"#, &claims, TEST_SECRET.as_bytes());
        assert_eq!(verdict(&app, &hs512).await.0, "unknown_key");
    }
}

/// With a key pair (doorman's default), the `kid` picks the key: an id doorman has no key for
/// is an unknown key, whatever signs the token.
#[tokio::test]
async fn a_kid_doorman_has_no_key_for_is_an_unknown_key() {
    let app = spawn_app_with(&[("DOORMAN_SIGNING_KEY", "")]).await;
    let (_, access) = app.login().await;
    assert_eq!(verdict(&app, &access).await.0, "valid");
    let now = now();
    let forged = sign_hs256(
        r#"{"alg":"EdDSA","kid":"not-a-key-of-doormans","typ":"JWT"}"#,
        &format!(
            r#"{{"token_type":"access","exp":{},"iat":{now},"jti":"x","user_id":1}}"#,
            now + 60
        ),
        b"whatever",
    );
    assert_eq!(
        verdict(&app, &forged).await,
        (
            "unknown_key".to_owned(),
            "No key doorman verifies with has the id \"not-a-key-of-doormans\".".to_owned()
        )
    );
}

dual_test! {
    /// Blacklisted by a logout, rotated out by a refresh, revoked by a log-out-everywhere, and a
    /// user gone inactive: what the store says, the inspector says.
    async fn store_verdicts() {
        let app = spawn_app_with(&[
            ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
            ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
        ])
        .await;
        let (logged_out, _) = app.login().await;
        assert_eq!(app.blacklist(&logged_out).await.status(), StatusCode::OK);
        assert_eq!(
            verdict(&app, &logged_out).await,
            (
                "blacklisted".to_owned(),
                "The token is blacklisted: it was logged out, or its session was revoked.".to_owned()
            )
        );

        let (rotated, _) = app.login().await;
        let res = app.refresh(&rotated).await;
        assert_eq!(res.status(), StatusCode::OK);
        let successor: Value = res.json().await.unwrap();
        let (v, reason) = verdict(&app, &rotated).await;
        assert_eq!(v, "blacklisted");
        assert!(reason.starts_with("The token was rotated out at "), "{reason}");
        assert_eq!(verdict(&app, successor["refresh"].as_str().unwrap()).await.0, "valid");

        let (_, access) = app.login().await;
        let res = app
            .client
            .post(app.url("/api/token/revoke-all/"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let (v, reason) = verdict(&app, &access).await;
        assert_eq!(v, "revoked");
        assert!(reason.starts_with("The token's user logged out everywhere at "), "{reason}");

        // A token of the inactive user (id 2) and of a user that never existed.
        let now = now();
        let of = |user: &str| mint(&format!(r#"{{"token_type":"access","exp":{},"iat":{now},"jti":"x","user_id":{user}}}"#, now + 60));
        assert_eq!(verdict(&app, &of("2")).await, ("revoked".to_owned(), "The token's user is inactive.".to_owned()));
        assert_eq!(verdict(&app, &of("999")).await, ("revoked".to_owned(), "The token's user no longer exists.".to_owned()));
    }
}

dual_test! {
    /// The body as DRF parses it: a form, multipart; a missing token or a wrong `expect` is a
    /// field error, a body over the limit 413, any other method 405, all in JSON.
    async fn bodies_and_refusals() {
        let app = spawn_app().await;
        let (refresh, _) = app.login().await;
        let form = app
            .client
            .post(app.url(INSPECT))
            .form(&[("token", refresh.as_str()), ("expect", "refresh")])
            .send()
            .await
            .unwrap();
        assert_eq!(form.status(), StatusCode::OK);
        assert_eq!(form.json::<Value>().await.unwrap()["verdict"], "valid");
        let multipart = reqwest::multipart::Form::new().text("token", refresh.clone());
        let res = app.client.post(app.url(INSPECT)).multipart(multipart).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.json::<Value>().await.unwrap()["token_type"], "refresh");

        for (body, expected) in [
            (json!({}), r#"{"token":["This field is required."]}"#),
            (json!({"token": null}), r#"{"token":["This field may not be null."]}"#),
            (json!({"token": ""}), r#"{"token":["This field may not be blank."]}"#),
            (json!({"token": ["x"]}), r#"{"token":["Not a valid string."]}"#),
            (json!({"token": refresh, "expect": "id"}), r#"{"expect":["\"id\" is not a valid choice."]}"#),
            (json!(["token"]), r#"{"non_field_errors":["Invalid data. Expected a dictionary, but got list."]}"#),
        ] {
            let res = app.post_json(INSPECT, &body).await;
            assert_eq!(status_body(res).await, (StatusCode::BAD_REQUEST, expected.to_owned()), "{body}");
        }
        let res = app.post_body(INSPECT, "application/json", "{\"token\": ").await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(res.json::<Value>().await.unwrap()["detail"].is_string());

        let huge = json!({"token": "a".repeat(200 * 1024)});
        let res = app.post_json(INSPECT, &huge).await;
        assert_eq!(
            status_body(res).await,
            (StatusCode::PAYLOAD_TOO_LARGE, r#"{"detail":"Request body is too large."}"#.to_owned())
        );
        // Under the body limit but over the token limit: read, and judged malformed.
        let long = inspect(&app, &"a".repeat(40 * 1024)).await;
        assert_eq!(long["verdict"], "malformed");

        let res = app.client.get(app.url(INSPECT)).send().await.unwrap();
        assert_eq!(res.headers()["allow"], "POST, OPTIONS");
        assert_eq!(
            status_body(res).await,
            (StatusCode::METHOD_NOT_ALLOWED, r#"{"detail":"Method \"GET\" not allowed."}"#.to_owned())
        );
        let res = app.client.request(reqwest::Method::OPTIONS, app.url(INSPECT)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.json::<Value>().await.unwrap()["name"], "Token Inspect");
    }
}

/// A real `doorman serve` with debug logging: the tokens inspected (a valid one, a tampered
/// one, garbage) appear nowhere in what it logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_inspected_is_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let binary = assert_cmd::cargo::cargo_bin("doorman");
    for (args, stdin) in [
        (&["migrate"][..], ""),
        (
            &["user", "create", "ines", "--password-stdin"][..],
            "ines-secret-password-1\n",
        ),
    ] {
        assert_cmd::Command::new(&binary)
            .current_dir(dir.path())
            .env_clear()
            .env("DOORMAN_SIGNING_KEY", TEST_SECRET)
            .args(args)
            .write_stdin(stdin)
            .assert()
            .success();
    }
    let mut child = std::process::Command::new(&binary)
        .current_dir(dir.path())
        .env_clear()
        .env("DOORMAN_SIGNING_KEY", TEST_SECRET)
        .env("DOORMAN_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines_rx = stderr_lines(&mut child);
    let mut log = lines_until(&lines_rx, |line| {
        serde_json::from_str::<Value>(line).is_ok_and(|l| l["addr"].is_string())
    });
    let listening: Value = serde_json::from_str(log.last().unwrap()).unwrap();
    let base = format!("http://{}", listening["addr"].as_str().unwrap());
    let client = reqwest::Client::new();
    let (refresh, access) =
        obtain_pair_at(&client, &base, ("ines", "ines-secret-password-1")).await;
    let tampered = format!("{}x", &access[..access.len() - 1]);
    let garbage = "not-a-token-but-a-secret-4f1c9e";
    for token in [&refresh, &access, &tampered, &garbage.to_owned()] {
        let res = client
            .post(format!("{base}{INSPECT}"))
            .json(&json!({"token": token}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    log.extend(lines_rx.iter());
    let all = log.join("\n");
    assert!(
        all.contains(INSPECT),
        "the inspections were not logged at all:\n{all}"
    );
    for secret in [
        refresh.as_str(),
        access.as_str(),
        tampered.as_str(),
        garbage,
    ] {
        assert!(!all.contains(secret), "the log holds {secret:?}:\n{all}");
    }
    // Nor any of the tokens' segments (a signature or a payload alone).
    for segment in access.split('.').skip(1) {
        assert!(
            !all.contains(segment),
            "the log holds a segment of the token"
        );
    }
}
