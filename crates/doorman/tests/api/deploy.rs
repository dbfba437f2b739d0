//! The deployment kit under deploy/, exercised as shipped: the systemd units pass
//! `systemd-analyze verify`, and the nginx site, with only its paths and ports changed, fronts a
//! real doorman on a Unix socket (TLS, HTTP/2, HSTS, static files, the client address, the 413).
//! Both tools come from Debian's packages; `.ci/run` installs nginx.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

fn deploy_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `haystack` with `from` replaced by `to`, insisting `from` is there (so a change to the file
/// that this test no longer understands fails it instead of testing something else).
fn substitute(haystack: &str, from: &str, to: &str) -> String {
    assert!(
        haystack.contains(from),
        "expected {from:?} in the deploy file:\n{haystack}"
    );
    haystack.replace(from, to)
}

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists())
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let Some(analyze) = tool("systemd-analyze") else {
        skip_or_fail("the systemd unit check", "systemd-analyze is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let binary = assert_cmd::cargo::cargo_bin("doorman");
    let service = substitute(
        &deploy_file("doorman.service"),
        "/usr/local/bin/doorman",
        &binary.display().to_string(),
    );
    let socket = deploy_file("doorman.socket");
    std::fs::write(dir.path().join("doorman.service"), service).unwrap();
    std::fs::write(dir.path().join("doorman.socket"), &socket).unwrap();
    let out = std::process::Command::new(analyze)
        .current_dir(dir.path())
        .args(["verify", "./doorman.socket", "./doorman.service"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    // Unknown or misspelt keys are only warnings to systemd: none is allowed here.
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");

    // The socket unit, the nginx site and the service agree on where the socket is.
    let nginx = deploy_file("nginx-doorman.conf");
    assert!(socket.contains("ListenStream=/run/doorman/doorman.sock"));
    assert!(nginx.contains("server unix:/run/doorman/doorman.sock;"));
    // The site overwrites the forwarding headers a client sent rather than appending to them
    // (the nginx test below shows what a client's own headers then come to).
    for line in [
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header Forwarded \"\";",
    ] {
        assert!(nginx.contains(line), "the nginx site lacks {line}");
    }
    assert!(!nginx.contains("$proxy_add_x_forwarded_for"));
}

/// A free TCP port on loopback (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stops the child at the end of the test, also when an assertion fails first: SIGTERM (nginx's
/// master then stops its workers; SIGKILL would leave them running), SIGKILL after 5 s.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_site_fronts_doorman_on_its_unix_socket() {
    let Some(nginx) = tool("nginx") else {
        skip_or_fail(
            "the nginx site test",
            "nginx is not installed (apt-get install nginx-light)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let socket = root.join("doorman.sock");
    let static_dir = root.join("static");
    std::fs::create_dir(&static_dir).unwrap();
    std::fs::write(static_dir.join("site.css"), "body { color: teal }\n").unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["auth.example.com".to_owned()]).unwrap();
    let cert_pem = certified.cert.pem();
    std::fs::write(root.join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(root.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();

    // doorman as the unit runs it, on the socket nginx proxies to.
    let binary = assert_cmd::cargo::cargo_bin("doorman");
    let doorman_cmd = |args: &[&str]| {
        let mut cmd = std::process::Command::new(&binary);
        cmd.current_dir(root)
            .env_clear()
            .env("DOORMAN_SIGNING_KEY", TEST_SECRET)
            .env("DOORMAN_BIND", format!("unix:{}", socket.display()))
            .env("DOORMAN_TRUSTED_PROXIES", "unix")
            .args(args);
        cmd
    };
    assert!(doorman_cmd(&["migrate"]).output().unwrap().status.success());
    let created = doorman_cmd(&["user", "create", "nina", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"nina-password-1234\n")?;
            child.wait()
        })
        .unwrap();
    assert!(created.success());
    let mut doorman = Running(
        doorman_cmd(&["serve"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines_rx = stderr_lines(&mut doorman.0);
    let mut log = lines_until(&lines_rx, |line| line.contains("doorman is listening"));

    // The shipped site, with its paths and ports moved into the test's directory.
    let (tls_port, http_port) = (free_port(), free_port());
    let mut site = deploy_file("nginx-doorman.conf");
    for (from, to) in [
        (
            "unix:/run/doorman/doorman.sock".to_owned(),
            format!("unix:{}", socket.display()),
        ),
        (
            "listen 443 ssl".to_owned(),
            format!("listen 127.0.0.1:{tls_port} ssl"),
        ),
        (
            "listen 80;".to_owned(),
            format!("listen 127.0.0.1:{http_port};"),
        ),
        (
            "/etc/letsencrypt/live/auth.example.com/fullchain.pem".to_owned(),
            root.join("cert.pem").display().to_string(),
        ),
        (
            "/etc/letsencrypt/live/auth.example.com/privkey.pem".to_owned(),
            root.join("key.pem").display().to_string(),
        ),
        (
            "/var/www/doorman/static/".to_owned(),
            format!("{}/", static_dir.display()),
        ),
    ] {
        site = substitute(&site, &from, &to);
    }
    std::fs::write(root.join("site.conf"), site).unwrap();
    // The part of a distribution's nginx.conf the site is included from.
    let r = root.display();
    std::fs::write(
        root.join("nginx.conf"),
        format!(
            "daemon off;\nuser root;\npid {r}/nginx.pid;\nerror_log {r}/error.log warn;\n\
             events {{}}\n\
             http {{\n  include /etc/nginx/mime.types;\n  access_log off;\n\
               client_body_temp_path {r}/body;\n  proxy_temp_path {r}/proxy;\n\
               fastcgi_temp_path {r}/fastcgi;\n  uwsgi_temp_path {r}/uwsgi;\n\
               scgi_temp_path {r}/scgi;\n  include {r}/site.conf;\n}}\n"
        ),
    )
    .unwrap();
    let mut proxy = Running(
        std::process::Command::new(nginx)
            .args(["-p", &r.to_string(), "-c"])
            .arg(root.join("nginx.conf"))
            .args(["-e", &format!("{r}/error.log")])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let tls_addr: std::net::SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(tls_addr).is_err() {
        if let Ok(Some(status)) = proxy.0.try_wait() {
            let mut said = String::new();
            let _ = std::io::Read::read_to_string(&mut proxy.0.stderr.take().unwrap(), &mut said);
            let errors = std::fs::read_to_string(root.join("error.log")).unwrap_or_default();
            panic!("nginx exited ({status}): {said}{errors}");
        }
        assert!(std::time::Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .resolve("auth.example.com", tls_addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("https://auth.example.com:{tls_port}");

    // Login through nginx, with client-made forwarding headers that must not be believed.
    let res = client
        .post(format!("{base}/api/token/"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("forwarded", "for=198.51.100.66;proto=https")
        .header("x-real-ip", "192.0.2.77")
        .json(&serde_json::json!({"username": "nina", "password": "nina-password-1234"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), reqwest::Version::HTTP_2, "ALPN picks HTTP/2");
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let pair: Value = res.json().await.unwrap();
    let access = pair["access"].as_str().unwrap();
    let res = client
        .get(format!("{base}/hello/"))
        .bearer_auth(access)
        .header("forwarded", "for=198.51.100.66")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();

    // Without public_url the discovery document names the site as the client reached it, and
    // https, since nginx (trusted on the socket) says so; a client's X-Forwarded-Host changes
    // nothing, and no cache keeps the answer.
    let res = client
        .get(format!("{base}/.well-known/openid-configuration"))
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "host=evil.example;proto=http")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let discovery: Value = res.json().await.unwrap();
    assert_eq!(
        discovery["jwks_uri"], "https://auth.example.com/.well-known/jwks.json",
        "nginx passes $host, without the port"
    );

    // A body over doorman's max_body_bytes gets through nginx to doorman's JSON 413.
    let res = client
        .post(format!("{base}/api/token/"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"username": "{}"}}"#, "x".repeat(100 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(
        res.text().await.unwrap(),
        r#"{"detail":"Request body is too large."}"#
    );

    // Static files come from nginx itself, with their type and a week's caching.
    let res = client
        .get(format!("{base}/static/site.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/css");
    assert_eq!(res.headers()["cache-control"], "max-age=604800");
    assert_eq!(res.text().await.unwrap(), "body { color: teal }\n");

    // Plain HTTP is sent to HTTPS.
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{http_port}/hello/"))
        .header("host", "auth.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 301);
    assert_eq!(res.headers()["location"], "https://auth.example.com/hello/");

    // doorman saw the client nginx saw (127.0.0.1), not an address the client claimed in
    // X-Forwarded-For, Forwarded or X-Real-IP.
    drop(proxy);
    std::process::Command::new("kill")
        .args(["-TERM", &doorman.0.id().to_string()])
        .status()
        .unwrap();
    assert!(doorman.0.wait().unwrap().success());
    log.extend(lines_rx.iter());
    let all = log.join("\n");
    let access_lines: Vec<Value> = log
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["target"] == "doorman::access")
        .collect();
    let hello = access_lines
        .iter()
        .find(|e| e["request_id"] == request_id.as_str())
        .unwrap_or_else(|| panic!("no access line for {request_id}:\n{all}"));
    assert_eq!(hello["path"], "/hello/");
    assert_eq!(hello["client"], "127.0.0.1", "{all}");
    let login = access_lines
        .iter()
        .find(|e| e["path"] == "/api/token/" && e["status"] == 200)
        .unwrap_or_else(|| panic!("no login line:\n{all}"));
    assert_eq!(login["client"], "127.0.0.1", "{all}");
    for claimed in ["203.0.113.9", "198.51.100.66", "192.0.2.77"] {
        assert!(!all.contains(claimed), "{claimed} reached the log:\n{all}");
    }
    // The audit trail has the same address for the login.
    let audit = doorman_cmd(&["audit", "--json"]).output().unwrap();
    let trail = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.status.success(), "{trail}");
    assert!(
        trail.contains("login_succeeded") && trail.contains("127.0.0.1"),
        "{trail}"
    );
    for claimed in ["203.0.113.9", "198.51.100.66", "192.0.2.77"] {
        assert!(
            !trail.contains(claimed),
            "{claimed} reached the audit trail:\n{trail}"
        );
    }
}
