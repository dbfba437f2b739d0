//! The built-in pages (`/ui/`) in a real Chromium, driven over WebDriver by the tests: sign-in,
//! the session's claims and countdown, refresh, log out, the error messages (bad password,
//! throttled, server unreachable), the keyboard, a phone's width, two tabs, the token
//! debugger, the account's sessions and the administration page.
//!
//! Each test starts its own chromedriver (Debian's `chromium-driver`) on a free port with a
//! fresh headless Chromium profile, and saves screenshots of its key states as PNG files under
//! `<target dir>/browser-screenshots/`, printing each path. Without Chromium or chromedriver
//! the tests skip loudly (a failure under `DOORMAN_REQUIRE_ALL=1`).
//!
//! They run on the default backend (SQLite) only: the pages are clients of the JSON API, whose
//! own tests cover both backends, and each browser test costs seconds of Chromium start-up
//! that a second run would double on a 2-core machine.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::*;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's `/usr/bin/chromium` is a shell wrapper around this binary.
const CHROMIUM_BINARY: &str = "/usr/lib/chromium/chromium";

/// WebDriver's codes of the keys the tests press.
const TAB: char = '\u{E004}';
const ENTER: char = '\u{E007}';

/// How long a test waits for what the page should show: generous, as the whole suite runs
/// beside it on two cores.
const PATIENCE: Duration = Duration::from_secs(20);

pub const UNREACHABLE: &str = "Can't reach the server: check your connection and try again.";
pub const SIGNED_OUT: &str =
    "Signed out: this session was ended (logged out everywhere, or revoked)";

/// One headless Chromium under its own chromedriver, ended (the whole process group) on drop.
pub struct Browser {
    pub client: Client,
    driver: std::process::Child,
    test: &'static str,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver leads its own process group, Chromium's processes included.
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.driver.wait();
    }
}

/// A fresh browser for `test`, or `None` (after a loud skip) when Chromium isn't installed.
pub async fn browser(test: &'static str) -> Option<Browser> {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(tool).exists() {
            skip_or_fail(
                &format!("the browser test {test}"),
                &format!("{tool} is missing (apt-get install chromium chromium-driver)"),
            );
            return None;
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver")
    };
    let profile = tempfile::tempdir().unwrap();
    let mut browser = Browser {
        client: connect_when_up(port, &profile).await,
        driver,
        test,
        _profile: profile,
    };
    browser.resize(1280, 900).await;
    let _ = &mut browser;
    Some(browser)
}

/// The WebDriver session, once chromedriver listens (it takes a moment to start).
async fn connect_when_up(port: u16, profile: &tempfile::TempDir) -> Client {
    let binary = if Path::new(CHROMIUM_BINARY).exists() {
        CHROMIUM_BINARY
    } else {
        CHROMIUM
    };
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": binary,
            // Without the networking flags Chromium's own connections (updates, sync, QUIC
            // probes) are refused in a sandbox and slow everything down.
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        },
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return client,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no WebDriver session from chromedriver: {e}"),
        }
    }
}

/// Where the screenshots go: `<target dir>/browser-screenshots/`, beside the test binary's
/// `debug/deps/`.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf);
    let dir = target.join("browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    /// The base URL of `app` as the browser should use it: `localhost`, so that cookies
    /// marked Secure are kept over plain http.
    pub fn base(app: &TestApp) -> String {
        app.address.replace("127.0.0.1", "localhost")
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Saves a PNG of the page as it is and prints where.
    pub async fn shot(&self, state: &str) {
        let png = self.client.screenshot().await.unwrap();
        let path = screenshot_dir().join(format!("{}-{state}.png", self.test));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
    }

    /// The element `css` selects once the page shows it.
    pub async fn visible(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && element.is_displayed().await.unwrap_or(false)
            {
                return element;
            }
            if Instant::now() > deadline {
                self.shot("timed-out").await;
                panic!("{css} never showed");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of `css` once it contains `wanted`.
    pub async fn text_with(&self, css: &str, wanted: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut last = String::new();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                last = element.text().await.unwrap_or_default();
                if last.contains(wanted) {
                    return last;
                }
            }
            if Instant::now() > deadline {
                self.shot("timed-out").await;
                panic!("{css} never said {wanted:?}; it said {last:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        self.visible(css).await.click().await.unwrap();
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self.visible(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Presses and releases one key wherever the focus is.
    pub async fn press(&self, key: char) {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        let keys = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.client.perform_actions(keys).await.unwrap();
    }

    /// Runs a script in the page and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, Vec::new()).await.unwrap()
    }

    /// Signs in on `/ui/` with the mouse and waits for the session.
    pub async fn sign_in(&self, base: &str, (username, password): (&str, &str)) {
        self.goto(&format!("{base}/ui/")).await;
        self.type_into("#username", username).await;
        self.type_into("#password", password).await;
        self.click("#sign-in-button").await;
        self.text_with("#who", username).await;
    }

    /// The value the session page shows for a claim.
    pub async fn claim(&self, name: &str) -> String {
        self.visible(&format!("tr[data-claim=\"{name}\"] td code"))
            .await
            .text()
            .await
            .unwrap()
    }

    /// This tab's refresh token, as the page keeps it.
    pub async fn refresh_token(&self) -> String {
        let kept = self
            .js("return sessionStorage.getItem('doorman.refresh');")
            .await;
        kept.as_str()
            .expect("a refresh token in sessionStorage")
            .to_owned()
    }

    /// Whether the page is wider than the window (a horizontal scroll bar).
    pub async fn scrolls_sideways(&self) -> bool {
        let sizes = self
            .js("return [document.documentElement.scrollWidth, window.innerWidth];")
            .await;
        sizes[0].as_u64().unwrap() > sizes[1].as_u64().unwrap()
    }

    /// Ends the WebDriver session (Chromium quits), then the driver.
    pub async fn close(self) {
        let client = self.client.clone();
        let _ = client.close().await;
    }
}

/// A test server whose listener the test can stop, with alice (id 1) and `bob`.
struct Stoppable {
    app: TestApp,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn spawn_stoppable() -> Stoppable {
    let dir = tempfile::tempdir().unwrap();
    let app = bound_app(dir.path(), &[("DOORMAN_BIND", "127.0.0.1:0")]).await;
    let address = format!("http://{}", app.local_addr().unwrap());
    let state = app.state().clone();
    let database_url = state.config.store.database_url.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let database = TestDatabase::create_on(Backend::Sqlite, dir.path()).await;
    let app = TestApp {
        address,
        client: reqwest::Client::new(),
        state,
        database_url,
        dir,
        _database: database,
    };
    app.create_user(ALICE.0, ALICE.1, true).await;
    Stoppable {
        app,
        stop: Some(stop),
        stopped,
    }
}

/// Seconds since 1970 from the page's claim text.
fn seconds(text: &str) -> i64 {
    text.trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_see_the_claims_refresh_and_log_out() {
    let Some(browser) = browser("session").await else {
        return;
    };
    let app = spawn_app().await;
    let base = Browser::base(&app);

    browser.sign_in(&base, ALICE).await;
    assert_eq!(browser.claim("user_id").await, "1");
    assert_eq!(browser.claim("token_type").await, "access");
    let exp = seconds(&browser.claim("exp").await);
    let words = browser
        .text_with("tr[data-claim=\"exp\"] .when", "in ")
        .await;
    assert!(
        words.contains("in 4 minutes") || words.contains("in 5 minutes"),
        "{words}"
    );
    assert!(words.ends_with(" UTC"), "{words}");
    browser
        .text_with("tr[data-claim=\"iat\"] .when", "ago")
        .await;
    let countdown = browser
        .text_with("#countdown", "Access token expires in 4:")
        .await;
    // The countdown is live.
    let deadline = Instant::now() + PATIENCE;
    while browser.visible("#countdown").await.text().await.unwrap() == countdown {
        assert!(Instant::now() < deadline, "the countdown stands still");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // No inline script: everything that runs came from doorman's own files, under the CSP.
    let inline = browser
        .js("return document.querySelectorAll('script:not([src])').length;")
        .await;
    assert_eq!(inline, json!(0));
    browser.shot("signed-in").await;

    // Refresh: a new access token, its claims shown.
    let jti = browser.claim("jti").await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // a new second, so a new `exp`
    browser.click("#refresh").await;
    browser
        .text_with("#notice", "A new access token was issued.")
        .await;
    let deadline = Instant::now() + PATIENCE;
    while browser.claim("jti").await == jti {
        assert!(Instant::now() < deadline, "the claims were not replaced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seconds(&browser.claim("exp").await) > exp);
    browser.shot("refreshed").await;

    // A reload keeps the session (the refresh token is in sessionStorage)...
    let refresh = browser.refresh_token().await;
    browser.client.refresh().await.unwrap();
    browser.text_with("#who", "alice").await;
    // ...but not the access token, which lives in the page's memory only.
    let stored = browser
        .js("return Object.values(sessionStorage).concat(Object.values(localStorage));")
        .await;
    assert!(
        !stored
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .filter(|v| v.matches('.').count() == 2)
            .any(|v| payload(v)["token_type"] == "access"),
        "an access token in storage: {stored}"
    );

    // Log out: the refresh token is blacklisted and forgotten.
    browser.click("#logout").await;
    browser.text_with("#notice", "Logged out").await;
    browser.visible("#username").await;
    assert_refused_as_blacklisted(&app, &refresh).await;
    assert_eq!(
        browser
            .js("return sessionStorage.getItem('doorman.refresh');")
            .await,
        Value::Null
    );
    browser.shot("logged-out").await;

    // A wrong password: the API's own words.
    browser.type_into("#username", ALICE.0).await;
    browser.type_into("#password", "not-her-password").await;
    browser.click("#sign-in-button").await;
    browser
        .text_with(
            "[role=alert]",
            "No active account found with the given credentials",
        )
        .await;
    browser.shot("bad-password").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_say_when_to_try_again() {
    let Some(browser) = browser("throttled").await else {
        return;
    };
    let app = spawn_app_with(&[
        ("DOORMAN_LOGIN_FREE_ATTEMPTS", "1"),
        ("DOORMAN_LOGIN_BACKOFF_BASE", "30s"),
    ])
    .await;
    let base = Browser::base(&app);
    browser.goto(&format!("{base}/ui/")).await;
    let mut said = String::new();
    for _ in 0..4 {
        browser.type_into("#username", ALICE.0).await;
        browser.type_into("#password", "wrong-password").await;
        browser.click("#sign-in-button").await;
        said = browser.text_with("[role=alert]", " ").await;
        if said.starts_with("Too many attempts") {
            break;
        }
    }
    let wait: u64 = said
        .strip_prefix("Too many attempts: try again in ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not the throttle's message: {said:?}"));
    assert!((1..=30).contains(&wait), "{said}");
    assert!(said.ends_with(" seconds."), "{said}");
    browser.shot("throttled").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_gone_is_said_to_be_unreachable() {
    let Some(browser) = browser("unreachable").await else {
        return;
    };
    let mut server = spawn_stoppable().await;
    let base = Browser::base(&server.app);
    browser.sign_in(&base, ALICE).await;
    let _ = server.stop.take().unwrap().send(());
    (&mut server.stopped).await.unwrap().unwrap();
    browser.click("#refresh").await;
    browser.text_with("[role=alert]", UNREACHABLE).await;
    // The session is kept: the server may come back.
    browser.visible("#session").await;
    browser.shot("unreachable").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyboard_signs_in_and_a_phone_never_scrolls_sideways() {
    let Some(browser) = browser("phone").await else {
        return;
    };
    let app = spawn_app().await;
    let base = Browser::base(&app);
    browser.resize(375, 812).await;
    browser.goto(&format!("{base}/ui/")).await;
    browser.visible("#username").await;
    let width = browser.js("return window.innerWidth;").await;
    assert!(
        width.as_u64().unwrap() <= 400,
        "not a phone's width: {width}"
    );
    assert!(!browser.scrolls_sideways().await);
    browser.shot("sign-in").await;

    // From the top of the page, Tab reaches the fields; Enter submits.
    browser.js("document.activeElement.blur();").await;
    let mut focused = String::new();
    for _ in 0..10 {
        browser.press(TAB).await;
        let active = browser.client.active_element().await.unwrap();
        focused = active.attr("id").await.unwrap().unwrap_or_default();
        if focused == "username" {
            break;
        }
    }
    assert_eq!(focused, "username", "Tab never reached the username field");
    let active = browser.client.active_element().await.unwrap();
    active.send_keys(ALICE.0).await.unwrap();
    browser.press(TAB).await;
    let active = browser.client.active_element().await.unwrap();
    assert_eq!(
        active.attr("id").await.unwrap().as_deref(),
        Some("password")
    );
    active.send_keys(ALICE.1).await.unwrap();
    browser.press(ENTER).await;
    browser.text_with("#who", "alice").await;
    assert!(!browser.scrolls_sideways().await);
    browser.shot("signed-in").await;

    // The other pages at the same width, the debugger with a long token in it.
    let (_, access) = app.login().await;
    browser.goto(&format!("{base}/ui/debugger/")).await;
    browser.type_into("#token", &access).await;
    browser.visible("#payload").await;
    assert!(!browser.scrolls_sideways().await, "the debugger scrolls");
    browser.shot("debugger").await;
    for page in ["account", "admin"] {
        browser.goto(&format!("{base}/ui/{page}/")).await;
        browser.visible("h1").await;
        assert!(!browser.scrolls_sideways().await, "{page} scrolls");
        browser.shot(page).await;
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_everywhere_in_one_tab_ends_the_other() {
    let Some(browser) = browser("two-tabs").await else {
        return;
    };
    let app = spawn_app().await;
    let base = Browser::base(&app);
    browser.sign_in(&base, ALICE).await;
    let first = browser.client.window().await.unwrap();
    let second = browser.client.new_window(true).await.unwrap().handle;
    browser
        .client
        .switch_to_window(second.clone())
        .await
        .unwrap();
    browser.goto(&format!("{base}/ui/")).await;
    // A tab of its own: its own sessionStorage, its own sign-in.
    browser.js("sessionStorage.clear();").await;
    browser.sign_in(&base, ALICE).await;

    browser.client.switch_to_window(first).await.unwrap();
    browser.click("#logout-everywhere").await;
    browser.text_with("#notice", "Logged out everywhere").await;

    browser.client.switch_to_window(second).await.unwrap();
    // The page checks every 5 seconds: about that long, with room for a loaded machine.
    let started = Instant::now();
    browser.text_with("[role=alert]", SIGNED_OUT).await;
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    browser.visible("#username").await;
    browser.shot("other-tab-signed-out").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debugger_decodes_a_pasted_token() {
    let Some(browser) = browser("debugger").await else {
        return;
    };
    let app = spawn_app().await;
    let base = Browser::base(&app);
    let (_, access) = app.login().await;
    browser.goto(&format!("{base}/ui/debugger/")).await;
    browser.type_into("#token", &access).await;
    browser.text_with("#header", "\"alg\": \"HS256\"").await;
    browser.text_with("#payload", "\"user_id\": \"1\"").await;
    let exp = browser
        .text_with("#times [data-claim=exp]", "exp: in ")
        .await;
    assert!(exp.ends_with("UTC)"), "{exp}");
    browser.text_with("#times [data-claim=iat]", " ago").await;
    // The token went nowhere but the page: not in the address bar, not in storage.
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(url.as_str(), format!("{base}/ui/debugger/"));
    let stored = browser
        .js("return sessionStorage.length + localStorage.length;")
        .await;
    assert_eq!(stored, json!(0));
    browser.shot("decoded").await;
    browser.close().await;
}

/// Pastes `token` into the debugger and waits for doorman's verdict on it.
async fn verdict_of(browser: &Browser, token: &str, verdict: &str) -> String {
    browser.type_into("#token", token).await;
    browser
        .visible(&format!("#verdict[data-verdict=\"{verdict}\"]"))
        .await
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debugger_gives_doormans_verdict() {
    let Some(browser) = browser("verdicts").await else {
        return;
    };
    let app = spawn_app().await;
    let base = Browser::base(&app);
    browser.goto(&format!("{base}/ui/debugger/")).await;

    let (refresh, access) = app.login().await;
    let said = verdict_of(&browser, &access, "valid").await;
    assert!(said.starts_with("Valid"), "{said}");
    browser.shot("valid").await;

    let now = now();
    let expired = mint(&format!(
        r#"{{"token_type":"access","exp":{},"iat":{},"jti":"old","user_id":1}}"#,
        now - 60,
        now - 360
    ));
    let said = verdict_of(&browser, &expired, "expired").await;
    assert!(said.starts_with("Expired"), "{said}");
    browser
        .text_with("#times [data-claim=exp]", "exp: 1 minute ago")
        .await;
    browser.shot("expired").await;

    // Someone changed the claims and kept the signature.
    let mut parts: Vec<String> = access.split('.').map(str::to_owned).collect();
    parts[1] = {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims = payload(&access);
        claims["user_id"] = json!("2");
        engine.encode(claims.to_string())
    };
    let tampered = parts.join(".");
    let said = verdict_of(&browser, &tampered, "bad_signature").await;
    assert!(said.starts_with("Bad signature"), "{said}");
    browser.text_with("#payload", "\"user_id\": \"2\"").await;
    browser.shot("tampered").await;

    assert_eq!(app.blacklist(&refresh).await.status(), 200);
    let said = verdict_of(&browser, &refresh, "blacklisted").await;
    assert!(said.starts_with("Blacklisted"), "{said}");
    browser.shot("blacklisted").await;

    let said = verdict_of(&browser, "not a token", "malformed").await;
    assert!(said.starts_with("Malformed"), "{said}");
    browser.text_with("#header", "Not a decodable").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_page_lists_the_sessions_and_revokes_another() {
    let Some(browser) = browser("account").await else {
        return;
    };
    let app = spawn_app().await;
    let base = Browser::base(&app);
    // Another device's session, then this browser's.
    let other = app
        .client
        .post(app.url("/api/token/"))
        .header("User-Agent", "other-device/1.0")
        .json(&credentials(ALICE))
        .send()
        .await
        .unwrap();
    let other: Value = other.json().await.unwrap();
    let other_refresh = other["refresh"].as_str().unwrap().to_owned();
    browser.sign_in(&base, ALICE).await;
    let mine = browser.refresh_token().await;

    browser.goto(&format!("{base}/ui/account/")).await;
    browser.visible("#sessions li.card").await;
    let cards = browser
        .client
        .find_all(Locator::Css("#sessions li.card"))
        .await
        .unwrap();
    assert_eq!(cards.len(), 2);
    let current = browser
        .text_with("#sessions li[data-current=true]", "this browser")
        .await;
    assert!(current.contains("HeadlessChrome"), "{current}");
    let others = browser
        .text_with("#sessions li:not([data-current])", "other-device/1.0")
        .await;
    assert!(others.contains("127.0.0.1"), "{others}");
    browser.shot("two-sessions").await;

    browser
        .click("#sessions li:not([data-current]) button")
        .await;
    browser
        .text_with("#notice", "The session was revoked")
        .await;
    let deadline = Instant::now() + PATIENCE;
    while browser
        .client
        .find_all(Locator::Css("#sessions li.card"))
        .await
        .unwrap()
        .len()
        != 1
    {
        assert!(
            Instant::now() < deadline,
            "the revoked session is still listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.visible("#sessions li[data-current=true]").await;
    assert_refused_as_blacklisted(&app, &other_refresh).await;
    assert_eq!(app.refresh(&mine).await.status(), 200);
    browser.shot("revoked-other").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_is_for_superusers() {
    let Some(browser) = browser("admin").await else {
        return;
    };
    let app = spawn_app().await;
    let base = Browser::base(&app);
    let root = ("root", "root-password-1");
    app.state
        .accounts
        .create_user(root.0, root.1.to_owned().into(), true, true)
        .await
        .unwrap();
    browser.sign_in(&base, root).await;
    browser.goto(&format!("{base}/ui/admin/")).await;
    browser.visible("#users tr[data-username=alice]").await;
    browser.visible("#audit tbody tr").await;

    // Create carol.
    browser.type_into("#new-username", "carol").await;
    browser.type_into("#new-password", "carol-password-1").await;
    browser.click("#create").await;
    browser.text_with("#notice", "carol was created.").await;
    browser.visible("#users tr[data-username=carol]").await;
    browser.shot("created").await;

    // Search.
    browser.type_into("#search", "CAR").await;
    browser.click("#search-form button").await;
    browser.text_with("#user-count", "1 user").await;
    let rows = browser
        .client
        .find_all(Locator::Css("#users tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    browser.visible("#users tr[data-username=carol]").await;

    // Deactivate carol: her session ends at once.
    let (carol_refresh, _) = app.login_as("carol", "carol-password-1").await;
    browser
        .click("#users tr[data-username=carol] button[data-action=deactivate]")
        .await;
    browser.text_with("#notice", "carol deactivated.").await;
    browser
        .visible("#users tr[data-username=carol] button[data-action=activate]")
        .await;
    assert_eq!(app.refresh(&carol_refresh).await.status(), 401);
    browser
        .text_with("#audit tbody tr:first-child", "root")
        .await;
    browser.shot("deactivated").await;
    // The tables turn into cards on a phone.
    browser.resize(375, 812).await;
    browser.visible("#users tr[data-username=carol]").await;
    assert!(!browser.scrolls_sideways().await, "the admin page scrolls");
    browser.shot("phone").await;
    browser.resize(1280, 900).await;

    // A normal user is told, and shown nothing.
    browser.goto(&format!("{base}/ui/")).await;
    browser.click("#logout").await;
    browser.sign_in(&base, ALICE).await;
    browser.goto(&format!("{base}/ui/admin/")).await;
    browser
        .text_with(
            "[role=alert]",
            "You need a superuser account to see this page.",
        )
        .await;
    assert!(!browser.visible("h1").await.text().await.unwrap().is_empty());
    let shown = browser
        .js("return document.getElementById('admin').hidden;")
        .await;
    assert_eq!(shown, json!(true));
    browser.shot("refused").await;
    browser.close().await;
}

/// An attacker's page on another port of `localhost` (so the same site as doorman, another
/// origin): a form that posts itself to doorman's refresh view as soon as it loads.
async fn attacker_page(target: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let html = format!(
        "<!doctype html><html><body><form method=\"post\" action=\"{target}/api/token/refresh/\">\
         <input name=\"note\" value=\"steal\"></form>\
         <script>document.forms[0].submit();</script></body></html>"
    );
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://localhost:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cookie_mode_the_pages_keep_no_refresh_token_and_csrf_is_refused() {
    let Some(browser) = browser("cookie-mode").await else {
        return;
    };
    let app = spawn_app_with(&[("DOORMAN_TOKEN_COOKIES", "true")]).await;
    let base = Browser::base(&app);
    browser.goto(&format!("{base}/ui/")).await;
    let mode = browser
        .js("return document.documentElement.dataset.tokenCookies;")
        .await;
    assert_eq!(mode, json!("on"));
    browser.sign_in(&base, ALICE).await;
    let jti = browser.claim("jti").await;
    let kept = browser
        .js("return sessionStorage.getItem('doorman.refresh');")
        .await;
    assert_eq!(kept, Value::Null, "a refresh token in sessionStorage");
    // The cookie is out of the scripts' reach.
    let cookies = browser.js("return document.cookie;").await;
    assert_eq!(cookies, json!(""));

    // A reload resumes the session from the HttpOnly cookie.
    browser.client.refresh().await.unwrap();
    browser.text_with("#who", "alice").await;
    assert_ne!(browser.claim("jti").await, jti, "not a new access token");
    let kept = browser.js("return Object.keys(sessionStorage);").await;
    assert!(
        !kept.as_array().unwrap().contains(&json!("doorman.refresh")),
        "{kept}"
    );
    browser.shot("reloaded").await;

    // A page of another origin on the same site posts a form to the refresh view: SameSite
    // lets the cookie go, the Origin check refuses it.
    let attacker = attacker_page(&base).await;
    browser.goto(&format!("{attacker}/")).await;
    let refused = browser
        .text_with("body", "CSRF Failed: Origin checking failed")
        .await;
    assert!(
        refused.contains(&format!(
            "CSRF Failed: Origin checking failed - {attacker} does not match any trusted origins."
        )),
        "{refused}"
    );
    browser.shot("csrf-refused").await;

    // The session is untouched, and logging out works from the cookie too.
    browser.goto(&format!("{base}/ui/")).await;
    browser.text_with("#who", "alice").await;
    browser.click("#logout").await;
    browser.text_with("#notice", "Logged out").await;
    browser.client.refresh().await.unwrap();
    browser.visible("#username").await;
    browser.close().await;
}
