//! Every password hash Django's default `PASSWORD_HASHERS` writes logs in at doorman, over
//! HTTP, and is stored again as doorman's argon2id on the first success. The hashes are made
//! by Django itself (`tests/interop/django_hashes.py`: `make_password` with each hasher, in
//! the Python venv the interop tests use), so a format doorman only thinks it knows fails
//! here. Where Python can't be had the tests skip loudly (a failure under
//! `DOORMAN_REQUIRE_ALL=1`).

use std::path::Path;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::helpers::{TestApp, spawn_app_with, status_body};
use crate::reference_app::Python;

const REFUSED: &str = r#"{"detail":"No active account found with the given credentials"}"#;
const BLANK: &str = r#"{"password":["This field may not be blank."]}"#;
/// What doorman stores for every password it hashes.
const OURS: &str = "$argon2id$v=19$m=19456,t=2,p=1$";

/// One hash as Django made it.
#[derive(Clone, Debug)]
struct Made {
    hasher: String,
    /// `None`: Django's unusable password (`make_password(None)`).
    password: Option<String>,
    encoded: String,
}

/// The hashes `django_hashes.py MODE` prints, made once per test binary.
async fn made_by_django(mode: &'static str) -> Option<Vec<Made>> {
    static DEFAULTS: OnceCell<Vec<Made>> = OnceCell::const_new();
    static VARIETY: OnceCell<Vec<Made>> = OnceCell::const_new();
    let cell = match mode {
        "defaults" => &DEFAULTS,
        _ => &VARIETY,
    };
    // A missing Python is not kept: each test says its own skip.
    cell.get_or_try_init(|| async {
        let python = Python::get().await.ok_or(())?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/django_hashes.py");
        let out = python.run(&script, &[mode]).await;
        assert!(
            out.status.success(),
            "django_hashes.py {mode} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON from Python");
        Ok::<_, ()>(
            list.into_iter()
                .map(|h| Made {
                    hasher: h["hasher"].as_str().unwrap().to_owned(),
                    password: h["password"].as_str().map(str::to_owned),
                    encoded: h["encoded"].as_str().unwrap().to_owned(),
                })
                .collect(),
        )
    })
    .await
    .ok()
    .cloned()
}

/// Adds a user for each hash (`user-0`, `user-1`, ...), as an import of Django's table would.
async fn insert(app: &TestApp, made: &[Made]) -> Vec<(String, Made)> {
    let mut users = Vec::new();
    for (n, hash) in made.iter().enumerate() {
        let name = format!("user-{n}");
        app.state
            .store
            .create_user(doorman::store::NewUser {
                username: name.clone(),
                password_hash: hash.encoded.clone(),
                is_active: true,
                is_superuser: false,
            })
            .await
            .unwrap();
        users.push((name, hash.clone()));
    }
    users
}

async fn stored(app: &TestApp, name: &str) -> String {
    app.state
        .store
        .user_by_username(name)
        .await
        .unwrap()
        .unwrap()
        .password_hash
}

async fn login(app: &TestApp, name: &str, password: &str) -> (StatusCode, String) {
    status_body(
        app.post_token(&json!({"username": name, "password": password}))
            .await,
    )
    .await
}

/// A wrong password is refused as simplejwt refuses it and changes nothing; the right one
/// logs in and leaves doorman's argon2id in place of Django's hash; it logs in again from
/// that, and a wrong one is still refused.
async fn logs_in_and_is_upgraded(app: &TestApp, name: &str, made: &Made) {
    let what = format!("{} ({name})", made.hasher);
    let password = made.password.as_deref().unwrap();
    // A different first byte: wrong for bcrypt's first 72 bytes too.
    let wrong = format!("x{password}");
    assert_eq!(
        login(app, name, &wrong).await,
        (StatusCode::UNAUTHORIZED, REFUSED.to_owned()),
        "{what}"
    );
    assert_eq!(stored(app, name).await, made.encoded, "{what}");

    let (status, body) = login(app, name, password).await;
    assert_eq!(status, StatusCode::OK, "{what}: {body}");
    let tokens: Value = serde_json::from_str(&body).unwrap();
    assert!(tokens["access"].is_string() && tokens["refresh"].is_string());
    let upgraded = stored(app, name).await;
    assert!(upgraded.starts_with(OURS), "{what}: {upgraded}");

    assert_eq!(login(app, name, password).await.0, StatusCode::OK, "{what}");
    assert_eq!(stored(app, name).await, upgraded, "{what}: rehashed again");
    assert_eq!(
        login(app, name, &wrong).await,
        (StatusCode::UNAUTHORIZED, REFUSED.to_owned()),
        "{what}"
    );
}

/// Django's unusable password never logs in, whatever is typed, and stays as it is.
async fn never_logs_in(app: &TestApp, name: &str, made: &Made) {
    let unusable = &made.encoded;
    for password in ["django-password-1", unusable, &unusable[1..]] {
        assert_eq!(
            login(app, name, password).await,
            (StatusCode::UNAUTHORIZED, REFUSED.to_owned()),
            "{unusable}"
        );
    }
    assert_eq!(&stored(app, name).await, unusable);
}

/// A server for these tests: the throttle would count their wrong passwords, and isn't what
/// they are about.
async fn app() -> TestApp {
    spawn_app_with(&[
        ("DOORMAN_LOGIN_THROTTLE", "false"),
        // Several servers' PBKDF2 at a million iterations share two cores in a debug build.
        ("DOORMAN_REQUEST_TIMEOUT", "300s"),
    ])
    .await
}

dual_test! {
    /// Each hasher at Django 5.2's own cost settings (PBKDF2 1,000,000 iterations, argon2
    /// m=102400 t=2 p=8, bcrypt 12, scrypt N=2^14 r=8 p=5): the bounds admit them. Salted
    /// MD5 is refused with `accept_md5_password_hashes` off, its hash left for a reset.
    multi_thread async fn django_default_hashes_log_in_and_become_argon2id() {
        let Some(made) = made_by_django("defaults").await else {
            return;
        };
        let hashers: Vec<&str> = made.iter().map(|m| m.hasher.as_str()).collect();
        for expected in [
            "PBKDF2PasswordHasher",
            "PBKDF2SHA1PasswordHasher",
            "Argon2PasswordHasher",
            "BCryptSHA256PasswordHasher",
            "ScryptPasswordHasher",
            "BCryptPasswordHasher",
            "MD5PasswordHasher",
            "unusable",
        ] {
            assert!(hashers.contains(&expected), "{expected} in {hashers:?}");
        }
        // A server of its own for each hash: with all of them in one table every check would
        // do each one's full work (see docs/security.md), and a debug build is slow at that.
        let started = std::time::Instant::now();
        let usable = made
            .iter()
            .filter(|m| m.password.is_some() && m.hasher != "MD5PasswordHasher");
        join_all(usable.map(|m| async move {
            let app = app().await;
            let users = insert(&app, std::slice::from_ref(m)).await;
            logs_in_and_is_upgraded(&app, &users[0].0, m).await;
        }))
        .await;
        eprintln!("logins at Django's default costs took {:?}", started.elapsed());

        let app = app().await;
        let refused: Vec<Made> = made
            .into_iter()
            .filter(|m| m.hasher == "MD5PasswordHasher" || m.password.is_none())
            .collect();
        let users = insert(&app, &refused).await;
        assert_eq!(users.len(), 2);
        for (name, m) in &users {
            match m.hasher.as_str() {
                "MD5PasswordHasher" => {
                    assert_eq!(
                        login(&app, name, m.password.as_deref().unwrap()).await,
                        (StatusCode::UNAUTHORIZED, REFUSED.to_owned())
                    );
                    assert_eq!(stored(&app, name).await, m.encoded);
                }
                _ => never_logs_in(&app, name, m).await,
            }
        }
    }
}

dual_test! {
    /// Every hasher with ASCII, unicode, long and empty passwords (costs lowered in Django
    /// subclasses), the argon2i of older Django and argon2 1.0 strings, and salted MD5 with
    /// `accept_md5_password_hashes` on.
    multi_thread async fn every_kind_of_password_logs_in_from_every_django_hasher() {
        let Some(made) = made_by_django("variety").await else {
            return;
        };
        let app = spawn_app_with(&[
            ("DOORMAN_LOGIN_THROTTLE", "false"),
            ("DOORMAN_ACCEPT_MD5_PASSWORD_HASHES", "true"),
        ])
        .await;
        let users = insert(&app, &made).await;
        let usable = users
            .iter()
            .filter(|(_, m)| m.password.as_deref().is_some_and(|p| !p.is_empty()));
        join_all(usable.map(|(name, m)| logs_in_and_is_upgraded(&app, name, m))).await;
        let upgraded = users
            .iter()
            .filter(|(_, m)| m.password.as_deref().is_some_and(|p| !p.is_empty()))
            .count();
        // 8 hashers, 3 non-empty passwords each, and 2 argon2 1.0 strings.
        assert_eq!(upgraded, 8 * 3 + 2);

        for (name, m) in &users {
            match m.password.as_deref() {
                None => never_logs_in(&app, name, m).await,
                // simplejwt refuses a blank password before any check, as doorman does.
                Some("") => {
                    assert_eq!(
                        login(&app, name, "").await,
                        (StatusCode::BAD_REQUEST, BLANK.to_owned()),
                        "{}",
                        m.hasher
                    );
                    assert_eq!(stored(&app, name).await, m.encoded);
                }
                Some(_) => {}
            }
        }
    }
}

dual_test! {
    /// Django's `bcrypt` hasher (without SHA-256) reads only a password's first 72 bytes, so
    /// there a password differing only beyond them logs in, as it did at Django. The upgrade
    /// hashes what was typed, in full: from then on every byte counts.
    async fn plain_bcrypt_reads_72_bytes_until_the_upgrade() {
        let Some(made) = made_by_django("variety").await else {
            return;
        };
        let app = app().await;
        let long: Vec<Made> = made
            .into_iter()
            .filter(|m| m.password.as_deref().is_some_and(|p| p.len() > 72))
            .filter(|m| m.hasher == "FastBCrypt" || m.hasher == "FastBCryptSHA256")
            .collect();
        assert_eq!(long.len(), 2);
        let users = insert(&app, &long).await;
        for (name, m) in &users {
            let password = m.password.as_deref().unwrap();
            let mut same_start = password.as_bytes()[..72].to_vec();
            same_start.extend_from_slice(b"another tail");
            let same_start = String::from_utf8(same_start).unwrap();
            let (status, _) = login(&app, name, &same_start).await;
            if m.hasher == "FastBCrypt" {
                assert_eq!(status, StatusCode::OK);
                assert!(stored(&app, name).await.starts_with(OURS));
                assert_eq!(login(&app, name, &same_start).await.0, StatusCode::OK);
                assert_eq!(login(&app, name, password).await.0, StatusCode::UNAUTHORIZED);
            } else {
                // bcrypt_sha256 hashes the whole password first.
                assert_eq!(status, StatusCode::UNAUTHORIZED);
                assert_eq!(stored(&app, name).await, m.encoded);
            }
        }
    }
}
