//! The server itself, below the API: a Unix socket, slow clients cut off after the header
//! deadline without holding up others, and oversized request heads refused with 431.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

async fn read_all(stream: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Asks for /healthz as the connection's last request; everything it answers, that included.
async fn healthz_then_close(stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin)) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: doorman\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    read_all(stream).await
}

#[tokio::test]
async fn serves_on_a_unix_socket_with_its_mode_and_removes_it_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("doorman.sock");
    let bind = format!("unix:{}", socket.display());
    let app = bound_app(
        dir.path(),
        &[("DOORMAN_BIND", &bind), ("DOORMAN_UNIX_SOCKET_MODE", "600")],
    )
    .await;
    assert!(app.local_addr().is_err());
    assert_eq!(app.listening_on(), bind);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop_rx.await;
    }));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let answer = healthz_then_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with(r#"{"status":"ok"}"#), "{answer}");

    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(!socket.exists(), "the socket file is removed at exit");
}

/// Fifty connections dribbling a request head one byte at a time: ordinary requests are still
/// answered at once, and the dribblers are cut off after header_read_timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_without_holding_up_others() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve_bound(dir.path(), &[("DOORMAN_HEADER_READ_TIMEOUT", "1s")]).await;

    let mut dribblers = Vec::new();
    for _ in 0..50 {
        dribblers.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
                .iter()
                .cycle()
            {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                if started.elapsed() > Duration::from_secs(10) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // Cut off: the server closed it (with or without a 408 first).
            let mut rest = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
            started.elapsed()
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = reqwest::Client::new();
    for _ in 0..10 {
        let started = Instant::now();
        let res = client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
    // The 1 s deadline, plus up to 200 ms until the next byte finds the connection closed,
    // plus scheduling: a deadline counted twice (or not at all) shows.
    for dribbler in dribblers {
        let lasted = dribbler.await.unwrap();
        assert!(
            lasted < Duration::from_secs(2),
            "a dribbling client stayed connected {lasted:?}"
        );
    }
}

#[tokio::test]
async fn an_oversized_request_head_gets_431() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve_bound(dir.path(), &[("DOORMAN_MAX_HEADER_BYTES", "16384")]).await;
    let client = reqwest::Client::new();
    let padded = |kib: usize| {
        client
            .get(format!("http://{addr}/healthz"))
            .header("x-padding", "a".repeat(kib * 1024))
            .send()
    };
    assert_eq!(
        padded(8).await.unwrap().status(),
        200,
        "8 KiB of headers fit"
    );
    assert_eq!(padded(20).await.unwrap().status(), 431);
}

/// A throwaway certificate for localhost: (certificate PEM, private key PEM).
fn throwaway_certificate() -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

fn https_client(ca_pem: &str, addr: std::net::SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .resolve("localhost", addr)
        .build()
        .unwrap()
}

/// A request with both `Content-Length` and `Transfer-Encoding` is refused on every way in,
/// not only plain TCP: over TLS (HTTP/1.1 by ALPN) and on a Unix socket, whose connections may
/// speak either HTTP and are read by hyper's auto-detection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_lengths_are_refused_over_tls_and_on_a_unix_socket() {
    const BOTH: &[u8] = b"POST /api/token/ HTTP/1.1\r\nHost: localhost\r\n\
        Content-Type: application/json\r\nContent-Length: 7\r\n\
        Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    let refused = |answer: &str| {
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n")
            && answer.ends_with(
                r#"{"detail":"Request with both Content-Length and Transfer-Encoding."}"#,
            )
    };

    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = throwaway_certificate();
    std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    let cert_path = dir.path().join("cert.pem").display().to_string();
    let key_path = dir.path().join("key.pem").display().to_string();
    let addr = serve_bound(
        dir.path(),
        &[
            ("DOORMAN_TLS_CERT_FILE", &cert_path),
            ("DOORMAN_TLS_KEY_FILE", &key_path),
        ],
    )
    .await;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(BOTH).await.unwrap();
    let answer = read_all(&mut tls).await;
    assert!(refused(&answer), "over TLS: {answer}");

    let socket = dir.path().join("doorman.sock");
    let bind = format!("unix:{}", socket.display());
    let unix_dir = tempfile::tempdir().unwrap();
    let app = bound_app(unix_dir.path(), &[("DOORMAN_BIND", &bind)]).await;
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    stream.write_all(BOTH).await.unwrap();
    let answer = read_all(&mut stream).await;
    assert!(refused(&answer), "on a Unix socket: {answer}");
}

/// Plain TCP serves each connection in the HTTP its first bytes speak: HTTP/1.1, HTTP/2 with
/// prior knowledge (h2c), and a request whose first line arrives a byte at a time (too little
/// to tell at first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_serves_http1_h2c_and_a_first_line_split_into_bytes() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(
        (res.status().as_u16(), res.version()),
        (200, reqwest::Version::HTTP_11)
    );

    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let res = h2c.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(
        (res.status().as_u16(), res.version()),
        (200, reqwest::Version::HTTP_2)
    );

    let addr = app
        .address
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for byte in &request[..6] {
        stream.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stream.write_all(&request[6..]).await.unwrap();
    let answer = read_all(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// TLS from PEM files with HTTP/2 by ALPN and HSTS; SIGHUP swaps the certificate for new
/// connections while an open one carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_http2_and_a_certificate_reload_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert1, key1) = throwaway_certificate();
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, &cert1).unwrap();
    std::fs::write(&key_file, &key1).unwrap();
    let (cert_path, key_path) = (
        cert_file.display().to_string(),
        key_file.display().to_string(),
    );
    let addr = serve_bound(
        dir.path(),
        &[
            ("DOORMAN_TLS_CERT_FILE", &cert_path),
            ("DOORMAN_TLS_KEY_FILE", &key_path),
        ],
    )
    .await;
    let url = format!("https://localhost:{}/healthz", addr.port());

    let old = https_client(&cert1, addr);
    let res = old.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), reqwest::Version::HTTP_2, "ALPN picks HTTP/2");
    // A client that offers only HTTP/1.1 gets it.
    let http1 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert1.as_bytes()).unwrap()])
        .resolve("localhost", addr)
        .http1_only()
        .build()
        .unwrap();
    let res = http1.get(&url).send().await.unwrap();
    assert_eq!(
        (res.status().as_u16(), res.version()),
        (200, reqwest::Version::HTTP_11)
    );
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    // Plain HTTP on the TLS port gets nowhere.
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err()
    );

    let (cert2, key2) = throwaway_certificate();
    std::fs::write(&cert_file, &cert2).unwrap();
    std::fs::write(&key_file, &key2).unwrap();
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
    let new = https_client(&cert2, addr);
    let started = Instant::now();
    while new.get(&url).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The open HTTP/2 connection from before the reload still serves requests...
    assert_eq!(old.get(&url).send().await.unwrap().status(), 200);
    // ...while a new connection is offered only the new certificate.
    assert!(https_client(&cert1, addr).get(&url).send().await.is_err());
}

/// Static files as nginx serves them: MIME type, Cache-Control, ETag and Last-Modified with
/// 304s, Range, the precompressed sibling for gzip clients; no listing, no traversal, JSON 404.
#[tokio::test]
async fn static_files_are_served_like_nginx_would() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("static");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("app.css"), "body { color: teal; }\n").unwrap();
    std::fs::write(root.join("app.css.gz"), b"\x1f\x8bprecompressed").unwrap();
    std::fs::write(root.join("sub/index.html"), "<p>hi</p>").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "do not serve").unwrap();
    let root_text = root.display().to_string();
    let addr = serve_bound(
        dir.path(),
        &[
            ("DOORMAN_STATIC_ROOT", &root_text),
            ("DOORMAN_STATIC_CACHE_CONTROL", "public, max-age=600"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/static/app.css");

    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "text/css");
    assert_eq!(h["cache-control"], "public, max-age=600");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(res.text().await.unwrap(), "body { color: teal; }\n");
    let get_with = |name: &'static str, value: reqwest::header::HeaderValue| {
        client.get(&url).header(name, value).send()
    };
    let res = get_with("if-modified-since", h["last-modified"].clone())
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    let res = get_with("if-none-match", h["etag"].clone()).await.unwrap();
    assert_eq!(res.status(), 304);
    let bytes = reqwest::header::HeaderValue::from_static("bytes=0-3");
    let res = get_with("range", bytes).await.unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.text().await.unwrap(), "body");
    let gzip = reqwest::header::HeaderValue::from_static("gzip");
    let res = get_with("accept-encoding", gzip).await.unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    assert_eq!(
        res.bytes().await.unwrap().as_ref(),
        b"\x1f\x8bprecompressed"
    );

    for path in [
        "/static/sub/",
        "/static/sub",
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/nope.css",
    ] {
        let res = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        // Neither a listing, nor the directory's index, nor a file outside the root.
        let (status, body) = status_body(res).await;
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (404, r#"{"detail":"Not found."}"#),
            "{path}"
        );
    }
}

/// Answers are compressed for clients that ask, except those carrying tokens (BREACH).
#[tokio::test]
async fn compression_where_it_helps_and_never_on_tokens() {
    let app = spawn_app_with(&[("DOORMAN_SIGNING_KEY", "")]).await;
    let res = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let res = app
        .client
        .post(app.url("/api/token/"))
        .header("accept-encoding", "gzip, br")
        .json(&credentials(ALICE))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers().get("content-encoding").is_none(),
        "token answers stay uncompressed"
    );
    assert!(
        res.headers().get("vary").is_none(),
        "and without Vary, as simplejwt answers"
    );
}

/// A doorman process on a listening socket handed down as systemd does (`LISTEN_FDS`, fd 3).
fn doorman_on_inherited_socket(
    dir: &std::path::Path,
    socket: &std::net::TcpListener,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use command_fds::{CommandFdExt, FdMapping};
    let fd = std::os::fd::OwnedFd::from(socket.try_clone().unwrap());
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("doorman"));
    command
        .current_dir(dir)
        .env_clear()
        .env("DOORMAN_SIGNING_KEY", TEST_SECRET)
        .env("LISTEN_FDS", "1")
        .args(["serve"])
        .stderr(std::process::Stdio::piped())
        .fd_mappings(vec![FdMapping {
            parent_fd: fd,
            child_fd: 3,
        }])
        .unwrap();
    let mut child = command.spawn().unwrap();
    let lines = stderr_lines(&mut child);
    (child, lines)
}

/// Replacing doorman under load: the listening socket is held outside (as systemd's socket
/// activation does), a new process starts on it, the old one gets SIGTERM, stops accepting and
/// finishes what it has. A steady stream of requests throughout sees no failure at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_process_on_an_inherited_socket_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    assert_cmd::Command::cargo_bin("doorman")
        .unwrap()
        .current_dir(dir.path())
        .env_clear()
        .arg("migrate")
        .assert()
        .success();
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let (mut old, old_log) = doorman_on_inherited_socket(dir.path(), &socket);
    lines_until(&old_log, |l| l.contains("doorman is listening"));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            // A new connection per request, so requests reach whichever process accepts.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client.get(format!("http://{addr}/healthz")).send().await {
                    Ok(res) if res.status() == 200 => ok += 1,
                    Ok(res) => failed.push(res.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut new, new_log) = doorman_on_inherited_socket(dir.path(), &socket);
    lines_until(&new_log, |l| l.contains("doorman is listening"));
    std::process::Command::new("kill")
        .args(["-TERM", &old.id().to_string()])
        .status()
        .unwrap();
    assert!(
        old.wait().unwrap().success(),
        "the old process stops cleanly"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for task in load {
        let (o, f) = task.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &new.id().to_string()])
        .status();
    let _ = new.wait();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok as usize + failed.len()
    );
    assert!(ok > 50, "only {ok} requests went through");
}

/// A kept-alive connection that goes quiet after a request is closed once the header deadline
/// passes without the next request, so idle clients can't pile up connections.
#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve_bound(dir.path(), &[("DOORMAN_HEADER_READ_TIMEOUT", "1s")]).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let n = stream.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200 OK"));
    // Kept alive, then silent: the server hangs up at the 1 s deadline (with slack for a busy
    // machine, but not enough for a deadline counted twice).
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection stayed open past 2 s");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

/// Several binds at once: two TCP ports and a Unix socket, all serving the same application.
#[tokio::test]
async fn several_binds_serve_the_same_application() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("d.sock");
    let binds = format!("127.0.0.1:0, [::1]:0, unix:{}", socket.display());
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let binds = if ipv6 {
        binds
    } else {
        binds.replace(", [::1]:0", ", 127.0.0.1:0")
    };
    let app = bound_app(dir.path(), &[("DOORMAN_BIND", &binds)]).await;
    let addrs = app.local_addrs();
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    assert_eq!(
        app.listening_on(),
        format!(
            "http://{}/, http://{}/, unix:{}",
            addrs[0],
            addrs[1],
            socket.display()
        )
    );
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    for addr in addrs {
        let res = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{addr}");
    }
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    assert!(
        healthz_then_close(&mut stream)
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
}

/// With `admin_bind`, metrics move to their own listener: the API port no longer serves them,
/// and the admin port serves nothing but metrics and health.
#[tokio::test]
async fn metrics_move_to_the_admin_bind() {
    let dir = tempfile::tempdir().unwrap();
    let app = bound_app(
        dir.path(),
        &[
            ("DOORMAN_BIND", "127.0.0.1:0"),
            ("DOORMAN_ADMIN_BIND", "127.0.0.1:0"),
        ],
    )
    .await;
    let api = app.local_addr().unwrap();
    let admin = app.admin_addr().unwrap();
    assert_ne!(api, admin);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop_rx.await;
    }));
    let get = |addr: std::net::SocketAddr, path: &'static str| async move {
        reqwest::get(format!("http://{addr}{path}")).await.unwrap()
    };
    assert_eq!(get(api, "/healthz").await.status(), 200);
    assert_eq!(get(api, "/metrics").await.status(), 404);
    let res = get(admin, "/metrics").await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(
        text.contains(
            r#"doorman_http_requests_total{method="GET",route="/healthz",status="200"} 1"#
        ),
        "{text}"
    );
    assert_eq!(get(admin, "/readyz").await.status(), 200);
    assert_eq!(get(admin, "/hello/").await.status(), 404);
    // One stop signal ends both listeners.
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(admin).await.is_err(),
        "the admin port is closed"
    );
}

/// Every endpoint doorman declares is routed on the listener its declaration names, answers
/// with the `Allow` it declares, gets Django's trailing-slash redirect when its path ends in a
/// slash, and is counted under its own label; on the other listener it doesn't exist.
#[tokio::test]
async fn every_declared_endpoint_is_served_where_it_says() {
    use doorman::api::endpoint::Listener;
    let dir = tempfile::tempdir().unwrap();
    let app = bound_app(
        dir.path(),
        &[
            ("DOORMAN_BIND", "127.0.0.1:0"),
            ("DOORMAN_ADMIN_BIND", "127.0.0.1:0"),
            ("DOORMAN_SLIDING_TOKENS", "true"),
        ],
    )
    .await;
    let api = app.local_addr().unwrap();
    let admin = app.admin_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let delete = |addr: std::net::SocketAddr, path: &str| {
        client.delete(format!("http://{addr}{path}")).send()
    };
    let endpoints: Vec<_> = doorman::api::endpoints().collect();
    assert_eq!(
        endpoints.len(),
        34,
        "a new endpoint: extend this test's expectations"
    );
    for endpoint in &endpoints {
        let (on_api, on_admin) = match endpoint.listener {
            Listener::Api => (true, false),
            Listener::ApiAndAdmin => (true, true),
            // There is an admin listener here.
            Listener::AdminElseApi => (false, true),
        };
        for (addr, served) in [(api, on_api), (admin, on_admin)] {
            let res = delete(addr, endpoint.path).await.unwrap();
            if served {
                // DRF answers 405 naming the allowed methods; the views that take a token
                // authenticate first.
                let authenticates = ["/hello/", "/api/token/revoke-all/"].contains(&endpoint.path)
                    || endpoint.path.starts_with("/api/account/")
                    || endpoint.path.starts_with("/api/admin/");
                let status = if authenticates { 401 } else { 405 };
                assert_eq!(res.status(), status, "{} on {addr}", endpoint.path);
                assert_eq!(res.headers()["allow"], endpoint.allow, "{}", endpoint.path);
            } else {
                assert_eq!(res.status(), 404, "{} on {addr}", endpoint.path);
                assert!(res.headers().get("allow").is_none(), "{}", endpoint.path);
            }
        }
        if let Some(bare) = endpoint.path.strip_suffix('/') {
            let res = delete(api, bare).await.unwrap();
            assert_eq!(res.status(), 301, "{bare}");
            assert_eq!(res.headers()["location"], endpoint.path);
        }
    }
    let metrics = client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for endpoint in endpoints
        .iter()
        .filter(|e| e.listener != Listener::AdminElseApi)
    {
        assert!(
            metrics.contains(&format!(
                r#"doorman_http_requests_total{{method="DELETE",route="{}","#,
                endpoint.metrics_label
            )),
            "{} is not counted under its label:\n{metrics}",
            endpoint.path
        );
    }
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A body over max_body_bytes is answered 413 from its `Content-Length`, and the connection is
/// then closed (as nginx closes after a 413): what follows on it, a request included, is read
/// and dropped while the connection lingers, so the 413 arrives intact instead of behind a
/// connection reset, and nothing after it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_gets_its_413_then_the_connection_closes() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve_bound(dir.path(), &[]).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = format!(r#"{{"username": "{}"}}"#, "x".repeat(300 * 1024));
    let request = format!(
        "POST /api/token/ HTTP/1.1\r\nHost: doorman\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let answers = healthz_then_close(&mut stream).await;
    assert!(answers.starts_with("HTTP/1.1 413"), "{answers}");
    assert!(
        answers.ends_with(r#"{"detail":"Request body is too large."}"#),
        "{answers}"
    );
    assert!(!answers.contains("HTTP/1.1 200"), "{answers}");
}
