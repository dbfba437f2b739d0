//! Every JOSE algorithm end to end, the JWKS and discovery documents, and interop with an
//! independent implementation (PyJWT on `cryptography`).

use doorman_token::{Algorithm, Key, KeySet, TokenKind, TokenRules, Tokens};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;
use crate::reference_app::Python;

fn header_of(token: &str) -> Value {
    use base64::Engine;
    let segment = token.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(segment)
            .unwrap(),
    )
    .unwrap()
}

async fn jwks(app: &TestApp) -> (reqwest::header::HeaderMap, Value) {
    let res = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let headers = res.headers().clone();
    (headers, res.json().await.unwrap())
}

dual_test! {
    /// With no key configured, the generated Ed25519 key signs, carries its kid, and is
    /// published: a verifier holding only the JWKS accepts doorman's tokens.
    async fn the_default_key_is_published_in_the_jwks() {
        let app = spawn_app_with(&[("DOORMAN_SIGNING_KEY", "")]).await;
        let (refresh, access) = app.login().await;
        let header = header_of(&access);
        assert_eq!(header["alg"], "EdDSA");
        let (headers, body) = jwks(&app).await;
        assert_eq!(headers["cache-control"], "public, max-age=300");
        let keys = body["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1, "{body}");
        let jwk = &keys[0];
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!((jwk["use"].as_str(), jwk["alg"].as_str()), (Some("sig"), Some("EdDSA")));
        assert_eq!(jwk["kid"], header["kid"]);
        // The public members and nothing else: no "d", nor any other private one.
        let mut members: Vec<&str> = jwk.as_object().unwrap().keys().map(String::as_str).collect();
        members.sort_unstable();
        assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x"], "{jwk}");

        doorman_token::install_crypto_provider();
        let verifier = Tokens::new(
            KeySet::new(Key::from_jwk(Algorithm::EdDSA, jwk).unwrap()),
            TokenRules::default(),
        );
        let now = doorman::unix_now();
        assert!(verifier.verify(&access, TokenKind::Access, now).is_ok());
        assert!(verifier.verify(&refresh, TokenKind::Refresh, now).is_ok());
    }
}

dual_test! {
    /// HS256 (the Django mode) publishes nothing: an HMAC secret never leaves the server.
    async fn an_hmac_secret_is_never_published() {
        let app = spawn_app().await;
        let (_, body) = jwks(&app).await;
        assert_eq!(body, serde_json::json!({"keys": []}));
        let text = body.to_string();
        assert!(!text.contains(TEST_SECRET));
        let res = app
            .client
            .post(app.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers()["allow"], "GET, HEAD, OPTIONS");
    }
}

dual_test! {
    /// Each asymmetric algorithm, with a key doorman generates on first start: login, the
    /// token's header, /hello/, refresh, and the JWKS entry.
    async fn every_asymmetric_algorithm_serves_the_contract() {
        for alg in Algorithm::ALL.into_iter().filter(|a| !a.is_hmac()) {
            let app = spawn_app_with(&[
                ("DOORMAN_SIGNING_KEY", ""),
                ("DOORMAN_ALGORITHM", alg.as_str()),
            ])
            .await;
            let (refresh, access) = app.login().await;
            let header = header_of(&access);
            assert_eq!(header["alg"], alg.as_str());
            assert_eq!(header["typ"], "JWT");
            assert_eq!(app.get_hello(&access).await.status(), StatusCode::OK, "{alg}");
            assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK, "{alg}");
            let (_, body) = jwks(&app).await;
            assert_eq!(body["keys"][0]["alg"], alg.as_str());
            assert_eq!(body["keys"][0]["kid"], header["kid"]);
        }
    }
}

dual_test! {
    async fn discovery_points_at_the_jwks() {
        let app = spawn_app_with(&[
            ("DOORMAN_SIGNING_KEY", ""),
            ("DOORMAN_ISSUER", "https://auth.example.com"),
        ])
        .await;
        let res = app
            .client
            .get(app.url("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["issuer"], "https://auth.example.com");
        let jwks_uri = body["jwks_uri"].as_str().unwrap();
        assert_eq!(jwks_uri, app.url("/.well-known/jwks.json"));
        assert_eq!(body["id_token_signing_alg_values_supported"], serde_json::json!(["EdDSA"]));
        let res = app.client.get(jwks_uri).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}

/// PyJWT with `cryptography` verifies doorman's tokens from the JWKS (found through the
/// discovery document) for every asymmetric algorithm, and tokens PyJWT signs with the same
/// key verify at doorman.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_and_doorman_verify_each_others_tokens() {
    let Some(python) = Python::get().await else {
        return;
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/jose.py");
    doorman_token::install_crypto_provider();
    for alg in Algorithm::ALL.into_iter().filter(|a| !a.is_hmac()) {
        let (_, pem) = Key::generate(alg).unwrap();
        let app = spawn_app_with(&[
            ("DOORMAN_ALGORITHM", alg.as_str()),
            ("DOORMAN_SIGNING_KEY", &pem),
        ])
        .await;
        let pem_file = app.dir.path().join("key.pem");
        std::fs::write(&pem_file, &pem).unwrap();
        let (_, access) = app.login().await;
        let out = python
            .run(
                &script,
                &[&app.address, &access, &pem_file.display().to_string()],
            )
            .await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{alg}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("verified doorman's {alg} token")),
            "{stdout}"
        );
        let theirs = stdout.lines().last().unwrap().trim();
        assert_eq!(header_of(theirs)["alg"], alg.as_str());
        let (status, body) = status_body(app.get_hello(theirs).await).await;
        assert_eq!(status, StatusCode::OK, "{alg}: PyJWT's token: {body}");
    }
}

/// Lifetimes short enough to watch a retiring key retire by itself.
/// Long enough that the old tokens are still valid after the rotation has spread (a few
/// seconds on a loaded machine).
const SHORT_LIVES: [(&str, &str); 4] = [
    ("DOORMAN_ACCESS_TOKEN_LIFETIME", "8"),
    ("DOORMAN_REFRESH_TOKEN_LIFETIME", "10"),
    ("DOORMAN_SLIDING_TOKEN_LIFETIME", "8"),
    ("DOORMAN_SLIDING_TOKEN_REFRESH_LIFETIME", "10"),
];

/// `doorman keys ...` against the app's database and data directory, with its lifetimes.
fn keys_cli(app: &TestApp, args: &[&str]) -> String {
    let mut cmd = assert_cmd::Command::cargo_bin("doorman").unwrap();
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOORMAN_DATABASE_URL", &app.database_url)
        .env("DOORMAN_DATA_DIR", app.data_dir())
        .arg("keys")
        .args(args);
    for (k, v) in SHORT_LIVES {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "keys {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Waits (up to 10 s) until `check` holds.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let started = std::time::Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "never: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn jwks_kids(app: &TestApp) -> Vec<String> {
    let (_, body) = jwks(app).await;
    body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn login_kid(app: &TestApp) -> String {
    let (_, access) = app.login().await;
    header_of(&access)["kid"].as_str().unwrap().to_owned()
}

dual_test! {
    /// A rotation while clients hold tokens from the old key: the new key is published first,
    /// then signs on every instance; everything signed by the old key keeps working until it
    /// expires, after which the old key retires by itself.
    multi_thread async fn rotation_keeps_held_tokens_working_until_they_expire() {
        let mut settings = vec![("DOORMAN_SIGNING_KEY", ""), ("DOORMAN_KEY_REFRESH_INTERVAL", "1")];
        settings.extend_from_slice(&SHORT_LIVES);
        let a = spawn_app_with(&settings).await;
        // The JWKS may not be cached longer than the 8 s access tokens live.
        assert_eq!(jwks(&a).await.0["cache-control"], "public, max-age=8");
        let (old_refresh, old_access) = a.login().await;
        let old_kid = header_of(&old_access)["kid"].as_str().unwrap().to_owned();

        let generated = keys_cli(&a, &["generate", "--alg", "ES256"]);
        let new_kid = generated
            .lines()
            .find_map(|l| l.strip_prefix("Generated "))
            .and_then(|rest| rest.split(' ').next())
            .unwrap()
            .to_owned();
        // A second instance starting now uses the managed set from the database.
        let b = spawn_second_instance(&a, &settings).await;
        for app in [&a, &b] {
            eventually("the next key is published", || async {
                jwks_kids(app).await == [old_kid.clone(), new_kid.clone()]
            })
            .await;
            assert_eq!(login_kid(app).await, old_kid, "next must not sign yet");
        }

        let rotated = keys_cli(&a, &["rotate"]);
        let said: Vec<&str> = rotated.lines().collect();
        assert_eq!(said.len(), 3, "{rotated}");
        assert_eq!(said[0], format!("{new_kid} is now the current key."));
        assert!(said[1].starts_with(&format!("{old_kid} verifies until ")), "{rotated}");
        assert!(said[2].starts_with("Every instance uses the new key within "), "{rotated}");
        for app in [&a, &b] {
            eventually("the new key signs", || async { login_kid(app).await == new_kid }).await;
            // What clients hold from the old key still works everywhere.
            assert_eq!(app.get_hello(&old_access).await.status(), StatusCode::OK);
        }
        let res = a.refresh(&old_refresh).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        assert_eq!(header_of(body["access"].as_str().unwrap())["kid"], new_kid.as_str());

        // Once every token the old key signed has expired, it retires by itself.
        for app in [&a, &b] {
            eventually("the old key retires", || async { jwks_kids(app).await == [new_kid.clone()] })
                .await;
        }
        let listed = keys_cli(&a, &["list"]);
        assert!(
            listed.lines().any(|l| l.starts_with(&old_kid) && l.contains("retired")),
            "{listed}"
        );
        // Both instances saw it expire; the one that retired it says so, once.
        let retired: Vec<_> = a
            .state
            .store
            .audit_events(&doorman::store::AuditFilter::default())
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "key_retired")
            .collect();
        assert_eq!(retired.len(), 1, "{retired:?}");
        let detail: Value = serde_json::from_str(retired[0].detail.as_deref().unwrap()).unwrap();
        assert_eq!(detail, serde_json::json!({"kid": old_kid, "by": "expiry"}));

        // A next key retired by hand disappears from the JWKS at once.
        let generated = keys_cli(&a, &["generate"]);
        let spare = generated
            .lines()
            .find_map(|l| l.strip_prefix("Generated "))
            .and_then(|rest| rest.split(' ').next())
            .unwrap()
            .to_owned();
        eventually("the spare key is published", || async { jwks_kids(&b).await.len() == 2 }).await;
        keys_cli(&a, &["retire", &spare]);
        eventually("the spare key is gone", || async { jwks_kids(&b).await == [new_kid.clone()] }).await;
    }
}

dual_test! {
    /// examples/resource-server, guarded by doorman-guard with doorman's JWKS, keeps accepting
    /// doorman's tokens through a key rotation (fetching the JWKS again for the new kid), and
    /// a flood of tokens naming made-up kids costs at most one fetch per cooldown.
    multi_thread async fn a_resource_server_follows_doorman_through_a_rotation() {
        let mut settings = vec![("DOORMAN_SIGNING_KEY", ""), ("DOORMAN_KEY_REFRESH_INTERVAL", "1")];
        settings.extend_from_slice(&SHORT_LIVES);
        let app = spawn_app_with(&settings).await;
        let source = doorman_guard::JwksSource::fetch(
            app.url("/.well-known/jwks.json"),
            TokenRules::default(),
            doorman_guard::JwksOptions {
                cooldown: std::time::Duration::from_secs(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let orders = format!("http://{}/orders/", listener.local_addr().unwrap());
        tokio::spawn(axum::serve(listener, resource_server::router_with(source.clone())).into_future());
        let get = |token: String| {
            let client = app.client.clone();
            let orders = orders.clone();
            async move {
                let res = client.get(orders).bearer_auth(token).send().await.unwrap();
                let status = res.status();
                (status, res.text().await.unwrap())
            }
        };

        let (_, old_access) = app.login().await;
        let (status, body) = get(old_access.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, r#"{"user_id":1,"orders":[]}"#);
        let invalid = r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token is invalid"}]}"#;
        let (status, body) = get("not-a-token".into()).await;
        assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, invalid));

        keys_cli(&app, &["generate", "--alg", "ES256"]);
        keys_cli(&app, &["rotate"]);
        let new_kid = keys_cli(&app, &["list"])
            .lines()
            .find(|l| l.contains(" current "))
            .and_then(|l| l.split(' ').next())
            .unwrap()
            .to_owned();
        eventually("doorman signs with the new key", || async { login_kid(&app).await == new_kid }).await;
        let (_, new_access) = app.login().await;
        // Past the cooldown since the first fetch, the unknown kid makes it fetch again.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let before = source.fetches();
        let (status, body) = get(new_access.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(source.fetches(), before + 1);
        let (status, _) = get(old_access.clone()).await;
        assert_eq!(status, StatusCode::OK, "the old key still verifies");

        // Fifty tokens naming made-up kids, right after a fetch: no fetch at all.
        let (_, payload_and_sig) = new_access.split_once('.').unwrap();
        let fetched = source.fetches();
        for i in 0..50 {
            use base64::Engine;
            let header = format!(r#"{{"alg":"ES256","kid":"made-up-{i}","typ":"JWT"}}"#);
            let forged = format!(
                "{}.{payload_and_sig}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header)
            );
            let (status, body) = get(forged).await;
            assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, invalid));
        }
        assert_eq!(source.fetches(), fetched, "a kid flood within the cooldown fetched");
        // After the cooldown, one more flood costs exactly one fetch.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        for i in 0..50 {
            use base64::Engine;
            let header = format!(r#"{{"alg":"ES256","kid":"other-{i}","typ":"JWT"}}"#);
            let forged = format!(
                "{}.{payload_and_sig}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header)
            );
            get(forged).await;
        }
        assert_eq!(source.fetches(), fetched + 1);
    }
}

/// Keys made by `cryptography` and written as private JWK files (RSA with its CRT members,
/// EC, OKP) sign doorman's tokens: PyJWT verifies them with the matching public PEM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_jwk_files_from_another_implementation_sign_doormans_tokens() {
    let Some(python) = Python::get().await else {
        return;
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/jwk.py");
    for alg in ["RS256", "PS512", "ES256", "ES384", "EdDSA"] {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().display().to_string();
        let out = python.run(&script, &["make", alg, &out_dir]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let jwk_file = dir.path().join("private.jwk").display().to_string();
        let app = spawn_app_with(&[
            ("DOORMAN_SIGNING_KEY", ""),
            ("DOORMAN_SIGNING_KEY_FILE", &jwk_file),
        ])
        .await;
        let (_, access) = app.login().await;
        assert_eq!(header_of(&access)["alg"], alg);
        let out = python
            .run(&script, &["verify", alg, &out_dir, &access])
            .await;
        assert!(
            out.status.success(),
            "{alg}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
