//! `doorman import django`, run as an operator would: the real binary reads a real Django
//! database (made by the reference app's migrations, with users and refresh tokens made by
//! Django and simplejwt themselves, on SQLite and on PostgreSQL) into doorman's database on
//! either backend, then a doorman server on that database is asked over HTTP what a moved
//! deployment's clients would ask: Django's refresh tokens refresh, its blacklisted ones don't,
//! its passwords log in. A second run brings Django's changes over, a third changes nothing.
//! Refusals (not a Django database, a bad table name, users doorman can't take or whose id or
//! name is taken) are checked on hand-made Django-shaped SQLite files.

use std::path::Path;

use assert_cmd::Command;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::reference_app::{DjangoDatabase, DjangoProject};

fn doorman(dir: &Path, database: &TestDatabase) -> Command {
    let mut cmd = Command::cargo_bin("doorman").unwrap();
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOORMAN_DATA_DIR", dir.join("data"))
        .env("DOORMAN_DATABASE_URL", &database.url);
    cmd
}

/// `doorman import django ARGS`: exit code, stdout, stderr.
fn import(dir: &Path, database: &TestDatabase, args: &[&str]) -> (Option<i32>, String, String) {
    let out = doorman(dir, database)
        .args(["import", "django"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The import's stdout when it succeeded.
fn imported(dir: &Path, database: &TestDatabase, args: &[&str]) -> String {
    let (code, stdout, stderr) = import(dir, database, args);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    stdout
}

fn lines(text: &[&str]) -> String {
    text.iter().map(|l| format!("{l}\n")).collect()
}

const BAD_NAME: &str = "Skipped user 4 (\"bad name\"): the username breaks doorman's rules \
                        (a username may contain only letters, digits and @/./+/-/_).";
const OLD_HASH: &str = "Skipped user 5 (\"oldhash\"): unknown password hash scheme.";
const BAD_NAME_TOKEN: &str = "Skipped 1 refresh token of user 4: the user was skipped.";

/// Users and tokens as a Django deployment has them, made by Django and simplejwt: alice (id 1),
/// ina (inactive, 2), boss (superuser and staff, with email and names, 3), "bad name" (4, a
/// username doorman refuses), oldhash (5, a hash of Django's old `crypt` hasher, which doorman
/// doesn't take, written straight into the table); an expired token row and one whose user is
/// gone; refresh tokens r1, r2 (blacklisted) and r6 of alice's, r3 of boss's and r4 of bad
/// name's.
const DJANGO_SETUP: &str = r#"
import json
from datetime import datetime, timedelta, timezone as tz
from django.utils import timezone
from django.contrib.auth.models import User
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
alice = User.objects.create_user('alice', password='alice-password-1', last_name='Liddell')
alice.last_login = datetime(2024, 3, 1, 12, 34, 56, 789000, tzinfo=tz.utc)
alice.save()
ina = User.objects.create_user('ina', password='ina-password-1')
ina.is_active = False
ina.save()
boss = User.objects.create_superuser('boss', email='boss@example.com', password='boss-password-1',
                                     first_name='Bo', last_name='Ss')
bad = User.objects.create_user('bad name', password='bad-password-1')
User.objects.create(username='oldhash', password='crypt$$abN/qM.L/H8EQ')
now = timezone.now()
OutstandingToken.objects.create(user=alice, jti='expired-1', token='-',
                                created_at=now - timedelta(days=2), expires_at=now - timedelta(days=1))
OutstandingToken.objects.create(user=None, jti='ownerless-1', token='-',
                                created_at=now, expires_at=now + timedelta(days=1))
r1, r2, r6 = RefreshToken.for_user(alice), RefreshToken.for_user(alice), RefreshToken.for_user(alice)
r3, r4 = RefreshToken.for_user(boss), RefreshToken.for_user(bad)
r2.blacklist()
print(json.dumps({'r1': str(r1), 'r2': str(r2), 'r3': str(r3), 'r4': str(r4), 'r6': str(r6)}))
"#;

/// Django's changes before the second run: alice's password changed, boss deactivated, a new
/// user erin (id 6) with a refresh token r5, alice's r6 blacklisted (`R6` is replaced).
const DJANGO_CHANGES: &str = r#"
import json
from django.contrib.auth.models import User
from rest_framework_simplejwt.tokens import RefreshToken
alice = User.objects.get(username='alice')
alice.set_password('alice-password-2')
alice.save()
boss = User.objects.get(username='boss')
boss.is_active = False
boss.save()
erin = User.objects.create_user('erin', password='erin-password-1')
r5 = RefreshToken.for_user(erin)
RefreshToken('R6').blacklist()
print(json.dumps({'r5': str(r5)}))
"#;

/// The JSON object a shell script printed last.
fn printed(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap()
}

async fn login(client: &reqwest::Client, base: &str, user: &str, password: &str) -> StatusCode {
    client
        .post(format!("{base}/api/token/"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

async fn refresh(client: &reqwest::Client, base: &str, token: &str) -> (StatusCode, Value) {
    let res = client
        .post(format!("{base}/api/token/refresh/"))
        .json(&json!({"refresh": token}))
        .send()
        .await
        .unwrap();
    (res.status(), res.json().await.unwrap())
}

fn blacklisted() -> Value {
    json!({"detail": "Token is blacklisted", "code": "token_not_valid"})
}

/// The family doorman records for the outstanding token `jti`.
async fn family_of(url: &str, jti: &str) -> Option<String> {
    const SQL: &str = "SELECT family FROM outstanding_tokens WHERE jti = $1";
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let family = sqlx::query_scalar(SQL).bind(jti).fetch_one(&pool).await;
        pool.close().await;
        family.unwrap()
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let family = sqlx::query_scalar(SQL).bind(jti).fetch_one(&pool).await;
        pool.close().await;
        family.unwrap()
    }
}

/// A doorman serving `database` with rotation and blacklisting after rotation on, and the
/// shared HS256 key Django signed with; its base URL.
async fn serve(dir: &Path, database: &TestDatabase) -> String {
    let addr = serve_bound(
        dir,
        &[
            ("DOORMAN_DATABASE_URL", &database.url),
            ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
            ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
        ],
    )
    .await;
    format!("http://{addr}")
}

/// The whole move, from a Django database on `django_on`.
async fn a_deployment_moves_over(django_on: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(dir.path()).await;
    doorman(dir.path(), &database)
        .arg("migrate")
        .assert()
        .success();

    let sqlite_file = dir.path().join("django.sqlite3");
    let (_django_database, source, described) = match django_on {
        Backend::Sqlite => {
            let path = sqlite_file.display().to_string();
            (None, path.clone(), format!("SQLite database {path}"))
        }
        Backend::Postgres => {
            if !postgres_reachable() {
                skip_or_fail(
                    "the Django-on-PostgreSQL import test",
                    &format!("PostgreSQL is unreachable at {}", postgres_admin_url()),
                );
                return;
            }
            let pg = TestDatabase::create_on(Backend::Postgres, dir.path()).await;
            let options: sqlx::postgres::PgConnectOptions = pg.url.parse().unwrap();
            let described = format!(
                "PostgreSQL database {} on {}:{}",
                options.get_database().unwrap(),
                options.get_host(),
                options.get_port()
            );
            let url = pg.url.clone();
            (Some(pg), url, described)
        }
    };
    let django_database = match django_on {
        Backend::Sqlite => DjangoDatabase::Sqlite(&sqlite_file),
        Backend::Postgres => DjangoDatabase::Postgres(&source),
    };
    let Some(django) = DjangoProject::migrated(django_database, TEST_SECRET).await else {
        return;
    };
    let tokens = printed(&django.shell(DJANGO_SETUP).await);
    let token = |name: &str| tokens[name].as_str().unwrap().to_owned();
    let django_bytes = std::fs::read(&sqlite_file).ok();

    let read = format!(
        "Read the Django {described}: 5 users in auth_user, 7 refresh tokens (1 blacklisted)."
    );
    let first = [
        read.as_str(),
        "Users: 3 added, 0 updated, 0 unchanged, 2 skipped.",
        "Refresh tokens: 5 added, 0 unchanged, 1 expired (left out), 1 skipped.",
        "Blacklisted: 1 added, 0 already blacklisted.",
        BAD_NAME,
        OLD_HASH,
        BAD_NAME_TOKEN,
    ];

    // A dry run says what would happen and writes nothing.
    let dry = imported(dir.path(), &database, &["--from", &source, "--dry-run"]);
    let mut expected = vec!["Dry run: nothing was written; this is what the import would do."];
    expected.extend(first);
    assert_eq!(dry, lines(&expected));
    let store = doorman::store::Store::connect(&database.url).await.unwrap();
    assert!(store.list_users().await.unwrap().is_empty());
    assert!(
        !store
            .is_blacklisted(payload(&token("r2"))["jti"].as_str().unwrap())
            .await
            .unwrap()
    );

    assert_eq!(
        imported(dir.path(), &database, &["--from", &source]),
        lines(&first)
    );
    // The Django database was only read.
    assert_eq!(std::fs::read(&sqlite_file).ok(), django_bytes);

    // Ids and fields as Django had them.
    let alice = store.imported_user(1).await.unwrap().unwrap();
    assert_eq!(alice.username, "alice");
    assert!(alice.password_hash.starts_with("pbkdf2_sha256$"));
    assert_eq!(alice.last_login, Some(1_709_296_496));
    assert_eq!(alice.last_name, "Liddell");
    assert!(
        (now() - alice.date_joined).abs() < 600,
        "{}",
        alice.date_joined
    );
    let ina = store.imported_user(2).await.unwrap().unwrap();
    assert_eq!((ina.username.as_str(), ina.is_active), ("ina", false));
    let boss = store.imported_user(3).await.unwrap().unwrap();
    assert_eq!(
        (
            boss.username.as_str(),
            boss.is_superuser,
            boss.is_staff,
            boss.email.as_str(),
            boss.first_name.as_str(),
            boss.last_name.as_str(),
            boss.is_active
        ),
        ("boss", true, true, "boss@example.com", "Bo", "Ss", true)
    );
    assert!(store.user_by_id(4).await.unwrap().is_none());
    assert!(store.user_by_id(5).await.unwrap().is_none());

    // Served from the imported database: Django's refresh token refreshes (and starts its
    // family with itself), the blacklisted one is refused as simplejwt refuses it, the
    // Django passwords log in, the inactive user doesn't.
    let server_dir = tempfile::tempdir().unwrap();
    let base = serve(server_dir.path(), &database).await;
    let client = reqwest::Client::new();
    let (status, body) = refresh(&client, &base, &token("r1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let successor = payload(body["refresh"].as_str().unwrap());
    // simplejwt wrote the id as a string ("1"); the token doorman made from it says the same.
    assert_eq!(successor["user_id"], payload(&token("r1"))["user_id"]);
    let r1_jti = payload(&token("r1"))["jti"].as_str().unwrap().to_owned();
    assert_eq!(
        family_of(&database.url, successor["jti"].as_str().unwrap()).await,
        Some(r1_jti.clone())
    );
    assert_eq!(family_of(&database.url, &r1_jti).await, Some(r1_jti));
    assert_eq!(
        refresh(&client, &base, &token("r2")).await,
        (StatusCode::UNAUTHORIZED, blacklisted())
    );
    assert_eq!(
        login(&client, &base, "alice", "alice-password-1").await,
        StatusCode::OK
    );
    assert_eq!(
        login(&client, &base, "ina", "ina-password-1").await,
        StatusCode::UNAUTHORIZED
    );
    // boss logs in here too, which upgrades the stored hash to argon2id.
    assert_eq!(
        login(&client, &base, "boss", "boss-password-1").await,
        StatusCode::OK
    );
    assert!(
        store
            .imported_user(3)
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .starts_with("$argon2id$")
    );

    // Django moves on; the second run brings it over.
    let changes = DJANGO_CHANGES.replace("R6", &token("r6"));
    let r5 = printed(&django.shell(&changes).await)["r5"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = format!(
        "Read the Django {described}: 6 users in auth_user, 8 refresh tokens (2 blacklisted)."
    );
    assert_eq!(
        imported(dir.path(), &database, &["--from", &source]),
        lines(&[
            &read,
            "Users: 1 added, 2 updated, 1 unchanged, 2 skipped.",
            "Refresh tokens: 1 added, 5 unchanged, 1 expired (left out), 1 skipped.",
            "Blacklisted: 1 added, 1 already blacklisted.",
            BAD_NAME,
            OLD_HASH,
            BAD_NAME_TOKEN,
            "Updated user 1 (\"alice\"): password.",
            "Updated user 3 (\"boss\"): is_active; deactivated, so logged out everywhere \
             (2 refresh tokens blacklisted).",
        ])
    );
    // The password Django changed came over; boss's hash, unchanged in Django, stayed the
    // one doorman upgraded.
    assert!(
        store
            .imported_user(1)
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .starts_with("pbkdf2_sha256$")
    );
    assert!(
        store
            .imported_user(3)
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .starts_with("$argon2id$")
    );

    // A fresh instance (no cached users) sees the changes.
    let server_dir = tempfile::tempdir().unwrap();
    let base = serve(server_dir.path(), &database).await;
    assert_eq!(
        login(&client, &base, "alice", "alice-password-2").await,
        StatusCode::OK
    );
    assert_eq!(
        login(&client, &base, "alice", "alice-password-1").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        refresh(&client, &base, &token("r6")).await,
        (StatusCode::UNAUTHORIZED, blacklisted())
    );
    let (status, body) = refresh(&client, &base, &r5).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        payload(body["access"].as_str().unwrap())["user_id"],
        json!("6")
    );
    assert_eq!(
        login(&client, &base, "boss", "boss-password-1").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        refresh(&client, &base, &token("r3")).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Nothing changed in Django: nothing changes here.
    assert_eq!(
        imported(dir.path(), &database, &["--from", &source]),
        lines(&[
            &read,
            "Users: 0 added, 0 updated, 4 unchanged, 2 skipped.",
            "Refresh tokens: 0 added, 6 unchanged, 1 expired (left out), 1 skipped.",
            "Blacklisted: 0 added, 2 already blacklisted.",
            BAD_NAME,
            OLD_HASH,
            BAD_NAME_TOKEN,
        ])
    );

    // A user made in doorman afterwards gets an id no Django user has.
    let out = doorman(dir.path(), &database)
        .args(["user", "create", "native", "--password-stdin"])
        .write_stdin("native-password-1\n")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Created user native (id 7).\n"
    );
    let audit = doorman(dir.path(), &database)
        .arg("audit")
        .output()
        .unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(audit.matches("django_imported").count(), 3, "{audit}");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("user_deactivated") && l.contains("user=\"boss\"")),
        "{audit}"
    );
    store.close().await;
}

dual_test! {
    async fn a_django_sqlite_deployment_moves_over() {
        a_deployment_moves_over(Backend::Sqlite).await;
    }
}

dual_test! {
    async fn a_django_postgres_deployment_moves_over() {
        a_deployment_moves_over(Backend::Postgres).await;
    }
}

/// Django's `auth_user` as its SQLite migrations make it, under another name.
const USER_TABLE: &str = r#"CREATE TABLE "accounts_member" ("id" integer NOT NULL PRIMARY KEY
    AUTOINCREMENT, "password" varchar(128) NOT NULL, "last_login" datetime NULL,
    "is_superuser" bool NOT NULL, "username" varchar(150) NOT NULL UNIQUE,
    "last_name" varchar(150) NOT NULL, "email" varchar(254) NOT NULL, "is_staff" bool NOT NULL,
    "is_active" bool NOT NULL, "date_joined" datetime NOT NULL,
    "first_name" varchar(150) NOT NULL)"#;

/// A SQLite file shaped like a Django database with a custom user model `accounts_member`
/// (and no simplejwt tables), plus `legacy_people`, which lacks some of auth_user's columns.
async fn django_shaped_file(path: &Path) {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::raw_sql(USER_TABLE).execute(&mut conn).await.unwrap();
    sqlx::raw_sql(
        r#"CREATE TABLE legacy_people (id integer PRIMARY KEY, username text, password text,
               is_active bool, is_superuser bool, first_name text, last_name text,
               last_login datetime, date_joined datetime);
           INSERT INTO accounts_member VALUES
               (1, 'pbkdf2_sha256$1000$salt$aGFzaA==', NULL, 0, 'carol', '', '', 0, 1,
                '2024-03-01 12:34:56', ''),
               (2, 'pbkdf2_sha256$1000$salt$aGFzaA==', NULL, 0, 'root', '', '', 0, 1,
                '2024-03-01 12:34:56', ''),
               (3, 'pbkdf2_sha256$1000$salt$aGFzaA==', '2024-03-01 12:00:00.5', 0, 'dave',
                'Jones', 'dave@example.com', 1, 1, '2024-03-01 14:34:56.123456+02:00', 'Dave'),
               (4, 'pbkdf2_sha256$1000$salt$aGFzaA==', NULL, 0, 'eve', '', '', 0, 1,
                'not a date', '')"#,
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}

dual_test! {
    async fn custom_user_tables_collisions_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::create(dir.path()).await;
        doorman(dir.path(), &database).arg("migrate").assert().success();
        // doorman's own first user, made before the import: id 1, which Django's carol has.
        doorman(dir.path(), &database)
            .args(["user", "create", "root", "--password-stdin", "--superuser"])
            .write_stdin("root-password-1\n")
            .assert()
            .success();
        let file = dir.path().join("legacy.sqlite3");
        django_shaped_file(&file).await;
        let path = file.display().to_string();
        let bytes = std::fs::read(&file).unwrap();
        let not_sqlite = dir.path().join("notes.txt");
        std::fs::write(&not_sqlite, "not a database at all, just some text\n".repeat(200)).unwrap();

        let refused = |args: &[&str]| {
            let (code, stdout, stderr) = import(dir.path(), &database, args);
            assert_eq!(stdout, "", "{args:?}");
            (code, stderr.trim().to_owned())
        };
        assert_eq!(
            refused(&["--from", &path]),
            (
                Some(1),
                "error: not a Django database: it has no table auth_user (Django's users are in \
                 auth_user; a custom user model's table is named with --user-table)"
                    .to_owned()
            )
        );
        assert_eq!(
            refused(&["--from", &path, "--user-table", "auth_user; DROP TABLE x"]),
            (
                Some(2),
                "error: \"auth_user; DROP TABLE x\" is not a table name doorman takes: letters, \
                 digits and _, not starting with a digit, at most 63 characters"
                    .to_owned()
            )
        );
        assert_eq!(
            refused(&["--from", &path, "--user-table", "legacy_people"]),
            (
                Some(1),
                "error: legacy_people is not a Django user table: it has no column is_staff, \
                 email"
                    .to_owned()
            )
        );
        let missing = dir.path().join("missing.sqlite3");
        assert_eq!(
            refused(&["--from", &missing.display().to_string()]),
            (
                Some(1),
                format!(
                    "error: no Django database at {}: no such file",
                    missing.display()
                )
            )
        );
        assert!(!missing.exists());
        let (code, message) = refused(&["--from", &not_sqlite.display().to_string()]);
        assert_eq!(code, Some(1));
        assert!(
            message.starts_with(&format!(
                "error: could not open the SQLite database {}",
                not_sqlite.display()
            )) || message.contains("not a database"),
            "{message}"
        );
        let (code, message) = refused(&["--from", "mysql://db.internal/django"]);
        assert_eq!(code, Some(1));
        assert!(message.starts_with("error: unsupported database URL scheme \"mysql\""), "{message}");
        let (code, message) = refused(&["--from", "postgres://postgres@127.0.0.1:1/django"]);
        assert_eq!(code, Some(1));
        assert!(
            message.starts_with(
                "error: could not connect to the PostgreSQL database django on 127.0.0.1:1: "
            ),
            "{message}"
        );
        assert_eq!(refused(&["--user-table", "accounts_member"]).0, Some(2));

        let out = imported(
            dir.path(),
            &database,
            &["--from", &format!("sqlite:{path}"), "--user-table", "accounts_member"],
        );
        assert_eq!(
            out,
            lines(&[
                &format!(
                    "Read the Django SQLite database {path}: 4 users in accounts_member, no \
                     refresh tokens (no simplejwt blacklist tables)."
                ),
                "Users: 1 added, 0 updated, 0 unchanged, 3 skipped.",
                "Refresh tokens: 0 added, 0 unchanged, 0 expired (left out), 0 skipped.",
                "Blacklisted: 0 added, 0 already blacklisted.",
                "Skipped user 4 (\"eve\"): date_joined \"not a date\": not a date and time Django \
                 writes.",
                "Skipped user 1 (\"carol\"): the id is doorman's user \"root\". Django's tokens \
                 naming user 1 would act as \"root\" here: delete that user or give the Django \
                 user another id before the cutover.",
                "Skipped user 2 (\"root\"): doorman's user 1 has the username.",
            ])
        );
        assert_eq!(std::fs::read(&file).unwrap(), bytes, "the Django file was written");

        let store = doorman::store::Store::connect(&database.url).await.unwrap();
        let dave = store.imported_user(3).await.unwrap().unwrap();
        assert_eq!(dave.date_joined, 1_709_296_496, "an offset is honoured");
        assert_eq!(dave.last_login, Some(1_709_294_400), "a naive time is UTC");
        assert_eq!(
            (dave.email.as_str(), dave.first_name.as_str(), dave.last_name.as_str(), dave.is_staff),
            ("dave@example.com", "Dave", "Jones", true)
        );
        let root = store.user_by_id(1).await.unwrap().unwrap();
        assert_eq!((root.username.as_str(), root.is_superuser), ("root", true));
        assert!(root.password_hash.starts_with("$argon2id$"));
        store.close().await;

        // Ids up to Django's largest (eve's 4, skipped or not) stay Django's.
        let out = doorman(dir.path(), &database)
            .args(["user", "create", "later", "--password-stdin"])
            .write_stdin("later-password-1\n")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "Created user later (id 5).\n");
    }
}
