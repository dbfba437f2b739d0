//! The OpenAPI document at `/api/schema/`: what `doorman openapi` prints, valid by an
//! independent validator, and true of the live server as schemathesis probes it. The Python
//! tools come from PyPI, pinned, into a venv kept under the target directory; without Python
//! the tests say so loudly and pass, unless `DOORMAN_REQUIRE_ALL=1` makes that a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::helpers::*;
use crate::reference_app::ensure_python_venv;

/// The validator and fuzzer, pinned. schemathesis 3.39 breaks with the newest hypothesis, so
/// that is pinned too.
const PACKAGES: &[&str] = &[
    "openapi-spec-validator==0.7.1",
    "schemathesis==3.39.16",
    "hypothesis==6.124.7",
];

fn venv_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("openapi-venv")
}

/// The venv with the pinned tools, or `None` after a loud skip.
async fn tools(what: &str) -> Option<PathBuf> {
    let python = Command::new("python3")
        .args(["-m", "venv", "--help"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !python {
        skip_or_fail(what, "python3 with the venv module is not installed");
        return None;
    }
    let venv = venv_dir();
    let built = tokio::task::spawn_blocking({
        let venv = venv.clone();
        move || ensure_python_venv(&venv, PACKAGES, "bin/python")
    })
    .await
    .unwrap();
    match built {
        Ok(()) => Some(venv),
        Err(reason) => {
            skip_or_fail(
                what,
                &format!("the Python tools could not be installed: {reason}"),
            );
            None
        }
    }
}

/// Runs a command off the async workers (the server under test runs on them) and returns its
/// exit status and combined output.
async fn output(mut cmd: Command) -> (bool, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `doorman openapi` under the settings `app` was started with.
async fn printed(app: &TestApp, settings: &[(&str, &str)]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_doorman"));
    cmd.arg("openapi")
        .current_dir(app.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOORMAN_SIGNING_KEY", TEST_SECRET)
        .env("DOORMAN_DATABASE_URL", &app.database_url)
        .env("DOORMAN_DATA_DIR", app.data_dir());
    for (k, v) in settings {
        cmd.env(k, v);
    }
    let (ok, text) = output(cmd).await;
    assert!(ok, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn served(app: &TestApp) -> reqwest::Response {
    app.client
        .get(app.url("/api/schema/"))
        .send()
        .await
        .unwrap()
}

dual_test! {
    async fn the_served_document_is_what_the_cli_prints() {
        for settings in [
            vec![],
            vec![
                ("DOORMAN_SLIDING_TOKENS", "false"),
                ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
                ("DOORMAN_AUTH_HEADER_TYPES", "Bearer,JWT"),
                ("DOORMAN_USER_ID_CLAIM", "uid"),
            ],
            COOKIE_MODE.to_vec(),
        ] {
            let app = spawn_app_with(&settings).await;
            let res = served(&app).await;
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["content-type"], "application/vnd.oai.openapi+json");
            let document: Value = res.json().await.unwrap();
            assert_eq!(document, printed(&app, &settings).await, "{settings:?}");
            let sliding = document["paths"].get("/api/token/sliding/").is_some();
            assert_eq!(sliding, settings.len() != 4, "{settings:?}");
            let cookie_scheme = document["components"]["securitySchemes"]
                .get("RefreshTokenCookie")
                .is_some();
            assert_eq!(cookie_scheme, settings == COOKIE_MODE, "{settings:?}");
            let served_paths = document["paths"].as_object().unwrap().len();
            // The web pages under /ui/ are HTML, not part of the JSON API it describes.
            let declared = doorman::api::endpoints()
                .filter(|e| e.on_api(&app.state.config))
                .filter(|e| !e.path.starts_with(doorman::api::pages::PREFIX))
                .count();
            assert_eq!(served_paths, declared);
        }
    }
}

dual_test! {
    async fn negotiation_and_etag_behave_as_drf_views_do() {
        let app = spawn_app().await;
        let get = |accept: &'static str| {
            app.client
                .get(app.url("/api/schema/"))
                .header("accept", accept)
                .send()
        };
        let res = get("application/json").await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "application/json");
        let res = get("application/vnd.oai.openapi+json").await.unwrap();
        assert_eq!(res.headers()["content-type"], "application/vnd.oai.openapi+json");
        let etag = res.headers()["etag"].to_str().unwrap().to_owned();
        let res = get("text/html").await.unwrap();
        assert_eq!(res.status(), 406);
        assert_eq!(
            res.text().await.unwrap(),
            r#"{"detail":"Could not satisfy the request Accept header."}"#
        );
        let res = app
            .client
            .get(app.url("/api/schema/?format=yaml"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        let res = app
            .client
            .get(app.url("/api/schema/"))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 304);
        assert_eq!(res.headers()["etag"], etag.as_str());
        assert!(res.bytes().await.unwrap().is_empty());
        let res = app
            .client
            .post(app.url("/api/schema/"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405);
        assert_eq!(res.headers()["allow"], "GET, HEAD, OPTIONS");
    }
}

/// The cookie mode with every cookie on: the document it describes differs most.
const COOKIE_MODE: &[(&str, &str)] = &[
    ("DOORMAN_TOKEN_COOKIES", "true"),
    ("DOORMAN_TOKEN_COOKIE_ACCESS", "true"),
];

// The document depends on the configuration only, never on the database, so one backend
// shows the validator's verdict.
#[tokio::test]
async fn an_independent_validator_accepts_the_document() {
    let Some(venv) = tools("the OpenAPI validator test").await else {
        return;
    };
    for settings in [&[][..], COOKIE_MODE] {
        let app = spawn_app_with(settings).await;
        let body = served(&app).await.text().await.unwrap();
        let file = app.dir.path().join("openapi.json");
        std::fs::write(&file, body).unwrap();
        let mut cmd = Command::new(venv.join("bin/openapi-spec-validator"));
        cmd.arg(&file);
        let (ok, text) = output(cmd).await;
        assert!(ok, "{settings:?}: {text}");
        assert!(text.contains(": OK"), "{settings:?}: {text}");
    }
}

dual_test! {
    async fn schemathesis_finds_no_violation_and_no_server_error() {
        let Some(venv) = tools("the schemathesis test").await else {
            return;
        };
        for settings in [&[][..], COOKIE_MODE] {
            run_schemathesis(&venv, settings).await;
        }
    }
}

/// schemathesis against a server under `settings`, authenticated as a superuser, so the
/// admin API is exercised past its permission check too.
async fn run_schemathesis(venv: &Path, settings: &[(&str, &str)]) {
    let app = spawn_app_with(settings).await;
    app.state
        .accounts
        .create_user("root", "root-password-1".to_owned().into(), true, true)
        .await
        .unwrap();
    let (_, access) = app.login_as("root", "root-password-1").await;
    let mut cmd = Command::new(venv.join("bin/schemathesis"));
    cmd.args(["run", &app.url("/api/schema/")])
        .args(["--experimental=openapi-3.1", "--checks", "all"])
        .args(["--hypothesis-max-examples", "25", "--hypothesis-seed", "1"])
        .args(["--header", &format!("Authorization: Bearer {access}")]);
    if settings == COOKIE_MODE {
        // The access cookie as a browser would send it. Given, it keeps schemathesis from
        // making up cookie values with control characters, which hyper refuses before doorman
        // sees the request. And with two ways to authenticate, `ignored_auth` (which drops one
        // and expects a 401) can only fail: the other still authenticates.
        cmd.args(["--header", &format!("Cookie: doorman_access={access}")])
            .args(["--exclude-checks", "ignored_auth"]);
    }
    cmd
        // Its example database (`.hypothesis/`) goes with the test's directory.
        .current_dir(app.dir.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1");
    let (ok, text) = output(cmd).await;
    assert!(ok, "{settings:?}: {text}");
    // Every operation was exercised, the authenticated ones included.
    for operation in [
        "GET /hello/",
        "POST /api/token/",
        "POST /api/token/revoke-all/",
        "POST /api/token/inspect/",
        "GET /api/account/sessions/",
        "POST /api/admin/users/",
        "GET /api/admin/audit/",
    ] {
        assert!(text.contains(operation), "{operation} not run:\n{text}");
    }
    assert!(text.contains("24 passed"), "{settings:?}: {text}");
    assert!(!text.contains("FAILED"), "{settings:?}: {text}");
}
