//! A live Django deployment moves onto doorman, end to end. The reference Django + simplejwt
//! app runs under gunicorn with rotation and blacklisting after rotation on, and serves its
//! clients first, through simplejwt's own views over HTTP: logins, a rotation, the tutorial's
//! client script, a logout; its users hold hashes of each password hasher Django 5.2 ships but
//! MD5, one was made inactive and one is deactivated after logging in. The real
//! `doorman` binary imports its database (a dry run, then for real), and a doorman with
//! Django's `SECRET_KEY` and the app's `SIMPLE_JWT` settings serves the same clients: every
//! password logs in, the refresh and access tokens Django issued work, the refused ones are
//! refused with Django's very answers, user ids are Django's, and the tutorial client works
//! unchanged. A password changed in Django and a user added there arrive with a second import.
//! Last, the way back: Django, still running on its own database, accepts the sessions doorman
//! started, and checks doorman's argon2id hashes once given its hasher's prefix.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use doorman::Application;
use doorman::config::{Config, Overrides};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::reference_app::{Python, ReferenceApp, reference_dir};

/// Users beside the reference app's alice (id 1) and inactive (2): bob and dave, made as
/// `createsuperuser` or a sign-up view makes them (Django's default PBKDF2, a million
/// iterations), and a user per password hasher Django 5.2 ships but MD5, made with
/// `make_password` at lowered costs as Django's own test settings lower them (each hasher at
/// its default cost is django_hashes.rs's business; here a debug build checks a dozen logins).
const DJANGO_USERS: &str = r#"
from django.contrib.auth import hashers
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User

class FastPBKDF2(hashers.PBKDF2PasswordHasher):
    iterations = 1000

class FastPBKDF2SHA1(hashers.PBKDF2SHA1PasswordHasher):
    iterations = 1000

class FastArgon2(hashers.Argon2PasswordHasher):
    memory_cost = 1024
    parallelism = 2

class FastBCryptSHA256(hashers.BCryptSHA256PasswordHasher):
    rounds = 4

class FastBCrypt(hashers.BCryptPasswordHasher):
    rounds = 4

class FastScrypt(hashers.ScryptPasswordHasher):
    work_factor = 2**10
    parallelism = 2

User.objects.create_user('bob', password='bob-password-1')
User.objects.create_user('dave', password='dave-password-1')
for hasher in [FastPBKDF2(), FastPBKDF2SHA1(), FastArgon2(), FastBCryptSHA256(), FastBCrypt(),
               FastScrypt()]:
    name = hasher.algorithm + '_user'
    User.objects.create(username=name, password=make_password(name + '-password-1', hasher=hasher))
"#;

/// The hash schemes of [`DJANGO_USERS`]: user `<scheme>_user` has password
/// `<scheme>_user-password-1` and a hash that starts `<scheme>$`.
const SCHEMES: [&str; 6] = [
    "pbkdf2_sha256",
    "pbkdf2_sha1",
    "argon2",
    "bcrypt_sha256",
    "bcrypt",
    "scrypt",
];

/// An administrator deactivates dave, as the admin's "active" checkbox does. Prints every
/// username's id and activity.
const DEACTIVATE_DAVE: &str = r#"
import json
from django.contrib.auth.models import User
dave = User.objects.get(username='dave')
dave.is_active = False
dave.save()
print(json.dumps({u.username: [u.id, u.is_active] for u in User.objects.all()}))
"#;

/// Django moves on after the first import: argon2_user changes their password (Django hashes
/// it with its default PBKDF2) and erin signs up.
const DJANGO_CHANGES: &str = r#"
import json
from django.contrib.auth.models import User
user = User.objects.get(username='argon2_user')
user.set_password('argon2_user-password-2')
user.save()
erin = User.objects.create_user('erin', password='erin-password-1')
print(json.dumps({'erin': erin.id}))
"#;

/// Whether Django's `check_password` takes `HASH` for scrypt_user's password as doorman
/// stores it, with the `argon2` prefix of Django's Argon2PasswordHasher, and with a wrong
/// password.
const DJANGO_CHECKS_DOORMANS_HASH: &str = r#"
import json
from django.contrib.auth.hashers import check_password
stored = HASH
print(json.dumps([check_password('scrypt_user-password-1', stored),
                  check_password('scrypt_user-password-1', 'argon2' + stored),
                  check_password('scrypt_user-password-2', 'argon2' + stored)]))
"#;

/// The JSON value a shell script printed last.
fn printed(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap()
}

/// The `doorman` binary on `database`, as an operator runs it beside the server.
fn doorman(dir: &Path, database: &TestDatabase) -> Command {
    let mut cmd = Command::cargo_bin("doorman").unwrap();
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOORMAN_DATA_DIR", dir.join("data"))
        .env("DOORMAN_DATABASE_URL", &database.url);
    cmd
}

/// `doorman import django --from SOURCE ARGS`; its report, when it succeeded.
fn import(dir: &Path, database: &TestDatabase, source: &Path, args: &[&str]) -> String {
    let out = doorman(dir, database)
        .args(["import", "django", "--from"])
        .arg(source)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn lines(text: &[&str]) -> String {
    text.iter().map(|l| format!("{l}\n")).collect()
}

/// One request a client makes: a JSON POST, or `GET /hello/` with a Bearer token.
#[derive(Clone, Debug)]
enum Request {
    Post(&'static str, Value),
    Hello(String),
}

/// The answer of the server at `base` to `request`: status and body, byte for byte.
async fn ask(client: &Client, base: &str, request: &Request) -> (StatusCode, String) {
    let res = match request {
        Request::Post(path, body) => client.post(format!("{base}{path}")).json(body),
        Request::Hello(token) => client
            .get(format!("{base}/hello/"))
            .header("Authorization", format!("Bearer {token}")),
    }
    .send()
    .await
    .unwrap();
    (res.status(), res.text().await.unwrap())
}

/// A successful answer's JSON.
async fn ok(client: &Client, base: &str, request: &Request) -> Value {
    let (status, body) = ask(client, base, request).await;
    assert_eq!(status, StatusCode::OK, "{request:?} at {base}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn login(username: &str, password: &str) -> Request {
    Request::Post(
        "/api/token/",
        json!({"username": username, "password": password}),
    )
}

fn refresh(token: &Value) -> Request {
    Request::Post("/api/token/refresh/", json!({"refresh": token}))
}

fn hello(token: &Value) -> Request {
    Request::Hello(token.as_str().unwrap().to_owned())
}

const HELLO: &str = r#"{"message":"Hello, World!"}"#;

/// The tutorial's client script against the server at `base`; fails the test unless it
/// succeeds.
async fn tutorial_client(django: &ReferenceApp, base: &str, username: &str, password: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/client.py");
    let out = django
        .python(&script, &[&format!("{base}/"), username, password])
        .await;
    assert!(
        out.status.success(),
        "client.py at {base} as {username}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `deploy/simplejwt-to-doorman.py ARGS` in the reference app's directory with `env`, by the
/// interop tests' Python (which the caller has made sure of): its exit code, stdout, stderr.
async fn settings_for_doorman(
    env: &[(&str, &str)],
    args: &[&str],
) -> (Option<i32>, String, String) {
    let python = Python::get()
        .await
        .expect("the venv the reference app runs in");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/simplejwt-to-doorman.py");
    let out = python.run_in(&reference_dir(), env, &script, args).await;
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A doorman serving `database_url` with the settings of `config_file` (the rest defaults),
/// in the background until the test ends; its base URL.
async fn serve_with_config(dir: &Path, config_file: &Path, database_url: &str) -> String {
    let env: BTreeMap<String, String> = [
        ("DOORMAN_DATA_DIR", dir.join("data").display().to_string()),
        ("DOORMAN_DATABASE_URL", database_url.to_owned()),
        ("DOORMAN_BIND", "127.0.0.1:0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = Config::load_from(Some(config_file), &env, &Overrides::default()).unwrap();
    let app = Application::build(config).await.unwrap();
    let addr = app.local_addr().unwrap();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    format!("http://{addr}")
}

/// The hash doorman holds for `username`.
async fn stored_hash(store: &doorman::store::Store, username: &str) -> String {
    store
        .user_by_username(username)
        .await
        .unwrap()
        .unwrap()
        .password_hash
}

dual_test! {
    multi_thread async fn a_live_django_deployment_moves_over_and_keeps_syncing() {
        // Django, as it runs before the move: ROTATE_REFRESH_TOKENS and
        // BLACKLIST_AFTER_ROTATION on, the token blacklist app installed.
        let Some(django) = ReferenceApp::start(TEST_SECRET, true).await else {
            return;
        };
        let project = django.project();
        project.shell(DJANGO_USERS).await;
        let dj = django.base_url.trim_end_matches('/').to_owned();
        let client = Client::new();

        // Its clients, through simplejwt's views. alice logs in and her client refreshes
        // once, which rotates her refresh token (the first is blacklisted by Django).
        let alice_first = ok(&client, &dj, &login("alice", "alice-password-1")).await;
        let alice = ok(&client, &dj, &refresh(&alice_first["refresh"])).await;
        assert!(alice["refresh"].is_string(), "rotation is on at Django: {alice}");
        // The tutorial's client runs there as alice: a login and a rotation more.
        tutorial_client(&django, &dj, "alice", "alice-password-1").await;
        // bob logs in, then out.
        let bob = ok(&client, &dj, &login("bob", "bob-password-1")).await;
        assert_eq!(
            ask(
                &client,
                &dj,
                &Request::Post("/api/token/blacklist/", json!({"refresh": bob["refresh"]}))
            )
            .await,
            (StatusCode::OK, "{}".to_owned())
        );
        // dave logs in, and is deactivated afterwards.
        let dave = ok(&client, &dj, &login("dave", "dave-password-1")).await;
        let django_ids = printed(&project.shell(DEACTIVATE_DAVE).await);

        // What Django answers its clients now, for every request whose answer must not change
        // with the move. None of them writes anything.
        let same_answers = [
            // Access tokens Django issued: alice's works; bob logged out, but an access
            // token lives until it expires; dave is inactive.
            (hello(&alice["access"]), StatusCode::OK),
            (hello(&bob["access"]), StatusCode::OK),
            (hello(&dave["access"]), StatusCode::UNAUTHORIZED),
            // Refresh tokens Django blacklisted (rotated out; logged out), and dave's.
            (refresh(&alice_first["refresh"]), StatusCode::UNAUTHORIZED),
            (refresh(&bob["refresh"]), StatusCode::UNAUTHORIZED),
            (refresh(&dave["refresh"]), StatusCode::UNAUTHORIZED),
            (
                Request::Post("/api/token/verify/", json!({"token": bob["refresh"]})),
                StatusCode::BAD_REQUEST,
            ),
            // Logins that fail: inactive users, a wrong password.
            (login("inactive", "inactive-password-1"), StatusCode::UNAUTHORIZED),
            (login("dave", "dave-password-1"), StatusCode::UNAUTHORIZED),
            (login("alice", "alice-password-2"), StatusCode::UNAUTHORIZED),
        ];
        let mut django_answers = Vec::new();
        for (request, status) in &same_answers {
            let answer = ask(&client, &dj, request).await;
            assert_eq!(answer.0, *status, "{request:?} at Django: {}", answer.1);
            django_answers.push(answer);
        }
        assert_eq!(django_answers[0].1, HELLO);
        // One difference: Django checks only the hashers its PASSWORD_HASHERS lists, and
        // Django 5.2's default list has no plain bcrypt, so a user left with such a hash by
        // an older setting can't log in there. doorman checks every one (below).
        assert_eq!(
            ask(&client, &dj, &login("bcrypt_user", "bcrypt_user-password-1")).await.0,
            StatusCode::UNAUTHORIZED
        );

        // The move: doorman's database (on the test's backend), migrated, then Django's read
        // into it, first dry.
        let dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::create(dir.path()).await;
        doorman(dir.path(), &database).arg("migrate").assert().success();
        let source = django.database();
        // Users 1 to 10; refresh tokens: alice's two logins and two rotations (two
        // blacklisted by the rotations), bob's (blacklisted by his logout) and dave's.
        let read = format!(
            "Read the Django SQLite database {}: 10 users in auth_user, 6 refresh tokens \
             (3 blacklisted).",
            source.display()
        );
        let first = [
            read.as_str(),
            "Users: 10 added, 0 updated, 0 unchanged, 0 skipped.",
            "Refresh tokens: 6 added, 0 unchanged, 0 expired (left out), 0 skipped.",
            "Blacklisted: 3 added, 0 already blacklisted.",
        ];
        let mut dry = vec!["Dry run: nothing was written; this is what the import would do."];
        dry.extend(first);
        assert_eq!(
            import(dir.path(), &database, source, &["--dry-run"]),
            lines(&dry)
        );
        let store = doorman::store::Store::connect(&database.url).await.unwrap();
        assert!(store.list_users().await.unwrap().is_empty());
        assert_eq!(import(dir.path(), &database, source, &[]), lines(&first));

        // Every user has Django's id, activity and hash, as Django wrote it.
        let users: Value = store
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| (u.username, json!([u.id, u.is_active])))
            .collect::<serde_json::Map<_, _>>()
            .into();
        assert_eq!(users, django_ids);
        assert_eq!(django_ids["dave"], json!([4, false]));
        for scheme in SCHEMES {
            let hash = stored_hash(&store, &format!("{scheme}_user")).await;
            assert!(hash.starts_with(&format!("{scheme}$")), "{scheme}: {hash}");
        }

        // doorman takes over with Django's SECRET_KEY and the app's SIMPLE_JWT settings, as
        // deploy/simplejwt-to-doorman.py writes them from the app's settings module.
        let server_dir = tempfile::tempdir().unwrap();
        let key_file = server_dir.path().join("signing-key");
        let (code, settings, problems) = settings_for_doorman(
            &[
                ("PEER_ROTATE", "1"),
                ("PEER_SECRET_KEY", TEST_SECRET),
                ("PEER_DB", &source.display().to_string()),
            ],
            &[
                "--settings",
                "peerapi.settings",
                "--signing-key-file",
                &key_file.display().to_string(),
            ],
        )
        .await;
        assert_eq!((code, problems.as_str()), (Some(0), ""), "{settings}");
        assert_eq!(
            settings,
            lines(&[
                "# doorman's settings for SIMPLE_JWT of peerapi.settings",
                "algorithm = \"HS256\"",
                &format!("signing_key_file = {}", json!(key_file.display().to_string())),
                "access_token_lifetime = \"5m\"",
                "refresh_token_lifetime = \"1d\"",
                "rotate_refresh_tokens = true",
                "blacklist_after_rotation = true",
            ])
        );
        assert_eq!(std::fs::read_to_string(&key_file).unwrap(), format!("{TEST_SECRET}\n"));
        let config_file = server_dir.path().join("doorman.toml");
        std::fs::write(&config_file, &settings).unwrap();
        let dm = serve_with_config(server_dir.path(), &config_file, &database.url).await;

        // The same clients get the same answers, byte for byte: Django's access tokens open
        // doorman's /hello/ (or not, for the inactive dave), its blacklisted refresh tokens
        // stay refused, inactive users can't log in.
        for ((request, _), django_answer) in same_answers.iter().zip(&django_answers) {
            assert_eq!(&ask(&client, &dm, request).await, django_answer, "{request:?}");
        }

        // alice's live refresh token, issued by Django's rotation, refreshes here (and rotates,
        // as at Django); the access token it gets names her by Django's id, and the refresh
        // token goes on refreshing.
        let moved = ok(&client, &dm, &refresh(&alice["refresh"])).await;
        assert_eq!(payload(moved["access"].as_str().unwrap())["user_id"], json!("1"));
        assert_eq!(
            payload(moved["access"].as_str().unwrap())["user_id"],
            payload(alice["access"].as_str().unwrap())["user_id"]
        );
        assert_eq!(
            ask(&client, &dm, &hello(&moved["access"])).await,
            (StatusCode::OK, HELLO.to_owned())
        );
        let again = ok(&client, &dm, &refresh(&moved["refresh"])).await;
        assert_eq!(ask(&client, &dm, &hello(&again["access"])).await.0, StatusCode::OK);

        // Every password logs in, whichever hasher wrote it, and is upgraded to argon2id;
        // each token names its user by the id Django gave them.
        let mut passwords: Vec<(String, String)> = vec![
            ("alice".into(), "alice-password-1".into()),
            ("bob".into(), "bob-password-1".into()),
        ];
        passwords.extend(SCHEMES.map(|s| (format!("{s}_user"), format!("{s}_user-password-1"))));
        for (username, password) in &passwords {
            let tokens = ok(&client, &dm, &login(username, password)).await;
            let id = django_ids[username.as_str()][0].as_i64().unwrap();
            assert_eq!(
                payload(tokens["access"].as_str().unwrap())["user_id"],
                json!(id.to_string()),
                "{username}"
            );
            let hash = stored_hash(&store, username).await;
            assert!(hash.starts_with("$argon2id$"), "{username}: {hash}");
        }
        // The tutorial's client, unchanged, as a moved user (who now logs in from argon2id).
        tutorial_client(&django, &dm, "argon2_user", "argon2_user-password-1").await;

        // Django moves on (the cutover isn't done yet): a password changed, a user added. The
        // second import brings both; nothing else changed in Django, and the hashes doorman
        // upgraded stay upgraded.
        let erin_id = printed(&project.shell(DJANGO_CHANGES).await)["erin"].as_i64().unwrap();
        assert_eq!(erin_id, 11);
        let read = format!(
            "Read the Django SQLite database {}: 11 users in auth_user, 6 refresh tokens \
             (3 blacklisted).",
            source.display()
        );
        assert_eq!(
            import(dir.path(), &database, source, &[]),
            lines(&[
                &read,
                "Users: 1 added, 1 updated, 9 unchanged, 0 skipped.",
                "Refresh tokens: 0 added, 6 unchanged, 0 expired (left out), 0 skipped.",
                "Blacklisted: 0 added, 3 already blacklisted.",
                "Updated user 7 (\"argon2_user\"): password.",
            ])
        );
        assert!(stored_hash(&store, "argon2_user").await.starts_with("pbkdf2_sha256$1000000$"));
        assert!(stored_hash(&store, "bob").await.starts_with("$argon2id$"));
        // The running doorman sees it at once: the old password fails, the new one and the
        // new user log in, erin with Django's id.
        assert_eq!(
            ask(&client, &dm, &login("argon2_user", "argon2_user-password-1")).await.0,
            StatusCode::UNAUTHORIZED
        );
        ok(&client, &dm, &login("argon2_user", "argon2_user-password-2")).await;
        let erin = ok(&client, &dm, &login("erin", "erin-password-1")).await;
        assert_eq!(payload(erin["access"].as_str().unwrap())["user_id"], json!("11"));

        // The way back. Django, still running on its own database, takes the sessions doorman
        // started: the access token opens its /hello/, and the refresh token (which Django's
        // outstanding table has never seen) refreshes there.
        assert_eq!(ask(&client, &dj, &hello(&erin["access"])).await.0, StatusCode::OK);
        let back = ok(&client, &dj, &refresh(&again["refresh"])).await;
        assert_eq!(ask(&client, &dj, &hello(&back["access"])).await.0, StatusCode::OK);
        // A hash doorman upgraded is no Django hash as it is stored; with the prefix of
        // Django's Argon2PasswordHasher it is one, and Django checks it.
        let upgraded = stored_hash(&store, "scrypt_user").await;
        let check = DJANGO_CHECKS_DOORMANS_HASH
            .replace("HASH", &serde_json::to_string(&upgraded).unwrap());
        assert_eq!(printed(&project.shell(&check).await), json!([false, true, false]));
        store.close().await;
    }
}

/// A project whose `SIMPLE_JWT` doorman can only partly carry: the reference app's settings
/// with these instead.
const ODD_SETTINGS: &str = r#"
from datetime import timedelta
from peerapi.settings import *
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=90),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=1.5),
    "SLIDING_TOKEN_LIFETIME": 30,
    "ALGORITHM": "HS512",
    "AUDIENCE": ["app", "admin"],
    "ISSUER": "https://auth.example.com",
    "LEEWAY": 120,
    "AUTH_HEADER_TYPES": ("Bearer", "JWT"),
    "AUTH_HEADER_NAME": "HTTP_X_TOKEN",
    "AUTH_TOKEN_CLASSES": ["rest_framework_simplejwt.tokens.AccessToken"],
    "USER_ID_FIELD": "uuid",
    "CHECK_REVOKE_TOKEN": True,
    "TOKEN_TYPE_CLAIM": None,
    "TOKEN_LIFETIME": timedelta(minutes=5),
}
"#;

/// deploy/simplejwt-to-doorman.py writes what doorman can take, in settings doorman loads, and
/// names everything else with the reason: a default-valued setting (a list for simplejwt's
/// tuple) is no problem; a key too short for HS512 is not written anywhere. Bad usage exits
/// with 2 and overwrites nothing.
#[tokio::test]
async fn simplejwt_settings_doorman_cannot_carry_are_named() {
    if Python::get().await.is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("odd")).unwrap();
    std::fs::write(dir.path().join("odd/__init__.py"), "").unwrap();
    std::fs::write(dir.path().join("odd/settings.py"), ODD_SETTINGS).unwrap();
    let pythonpath = dir.path().display().to_string();
    let key_file = dir.path().join("signing-key").display().to_string();
    let env = [
        ("PYTHONPATH", pythonpath.as_str()),
        ("PEER_SECRET_KEY", TEST_SECRET),
    ];
    let (code, settings, problems) = settings_for_doorman(
        &env,
        &[
            "--settings",
            "odd.settings",
            "--signing-key-file",
            &key_file,
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{settings}{problems}");
    assert_eq!(
        settings,
        lines(&[
            "# doorman's settings for SIMPLE_JWT of odd.settings",
            "algorithm = \"HS512\"",
            "access_token_lifetime = \"90m\"",
            "refresh_token_lifetime = \"1500ms\"",
            "sliding_token_lifetime = \"30s\"",
            "issuer = \"https://auth.example.com\"",
            "auth_header_types = [\"Bearer\", \"JWT\"]",
        ])
    );
    assert_eq!(
        problems,
        lines(&[
            "not carried: SIMPLE_JWT['SIGNING_KEY']: an HS512 secret needs at least 64 bytes for \
             doorman, this one has 47; the move needs a new key, and everybody logs in once more",
            "not carried: SIMPLE_JWT['AUDIENCE']: ['app', 'admin']: doorman issues and requires \
             one audience",
            "not carried: SIMPLE_JWT['LEEWAY']: 120: doorman allows at most 60 seconds",
            "not carried: SIMPLE_JWT['AUTH_HEADER_NAME']: doorman always reads the Authorization \
             header",
            "not carried: SIMPLE_JWT['USER_ID_FIELD']: doorman names users by their numeric id; \
             tokens naming them by another field name nobody there, and those users log in once \
             more",
            "not carried: SIMPLE_JWT['CHECK_REVOKE_TOKEN']: doorman neither writes nor checks the \
             password-hash claim; `doorman user revoke NAME` ends a user's sessions",
            "not carried: SIMPLE_JWT['TOKEN_TYPE_CLAIM']: None: doorman needs a claim name",
            "not carried: SIMPLE_JWT['TOKEN_LIFETIME']: not a setting of this simplejwt (it \
             ignores it)",
        ])
    );
    assert!(!Path::new(&key_file).exists());

    // What was written is doorman's: it loads, with a key long enough for HS512.
    let config_file = dir.path().join("doorman.toml");
    std::fs::write(&config_file, &settings).unwrap();
    let long_key = "k3y-".repeat(16) + "long-enough-for-hs512";
    let env: BTreeMap<String, String> = [
        (
            "DOORMAN_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        ("DOORMAN_SIGNING_KEY", long_key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = Config::load_from(Some(&config_file), &env, &Overrides::default()).unwrap();
    let rules = &config.tokens.rules;
    assert_eq!(rules.access_token_lifetime, Duration::from_secs(90 * 60));
    assert_eq!(rules.refresh_token_lifetime, Duration::from_millis(1500));
    assert_eq!(rules.sliding_token_lifetime, Duration::from_secs(30));
    assert_eq!(rules.issuer.as_deref(), Some("https://auth.example.com"));
    assert_eq!(config.tokens.auth_header_types, ["Bearer", "JWT"]);

    // No settings module; a key file that exists already.
    let (code, settings, problems) = settings_for_doorman(&[], &[]).await;
    assert_eq!(
        (code, settings.as_str(), problems.as_str()),
        (
            Some(2),
            "",
            "error: name the project's settings module with --settings or \
             DJANGO_SETTINGS_MODULE\n"
        )
    );
    std::fs::write(&key_file, "kept\n").unwrap();
    let (code, settings, problems) = settings_for_doorman(
        &[("PEER_SECRET_KEY", TEST_SECRET)],
        &[
            "--settings",
            "peerapi.settings",
            "--signing-key-file",
            &key_file,
        ],
    )
    .await;
    assert_eq!(
        (code, problems),
        (
            Some(2),
            format!("error: {key_file} exists already; it is not overwritten\n")
        )
    );
    assert_eq!(settings, "");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), "kept\n");
}
