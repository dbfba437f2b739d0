//! Request framing at the edge, over raw sockets: what RFC 9112 says to refuse is refused (by
//! hyper or by doorman's own checks) and the connection closed; an announced body over
//! `max_body_bytes` is 413 from the head; a client that writes its whole oversized body before
//! reading still reads the 413, and the lingering that makes that work is bounded.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

const DETAIL_413: &str = r#"{"detail":"Request body is too large."}"#;

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app
        .address
        .trim_start_matches("http://")
        .trim_end_matches('/');
    TcpStream::connect(addr).await.unwrap()
}

/// Everything the server sends until it closes the connection (a reset after the answer
/// counts as the end too), within `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    let read = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(within, read).await.is_ok();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        closed,
        "the connection was not closed in {within:?}: {answer}"
    );
    answer
}

/// Sends `request` on a new connection and returns all the server answers before closing.
async fn exchange(app: &TestApp, request: &[u8]) -> String {
    let mut stream = connect(app).await;
    stream.write_all(request).await.unwrap();
    read_until_closed(&mut stream, Duration::from_secs(5)).await
}

/// How many answers `answer` holds.
fn status_lines(answer: &str) -> usize {
    answer
        .split("\r\n")
        .filter(|line| line.starts_with("HTTP/1."))
        .count()
}

fn assert_refused(answer: &str, status: &str, detail: &str, what: &str) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "{what}: {answer}"
    );
    assert!(
        answer.contains("\r\nconnection: close\r\n"),
        "{what}: {answer}"
    );
    assert!(
        answer.ends_with(&format!(r#"{{"detail":"{detail}"}}"#)),
        "{what}: {answer}"
    );
    assert_eq!(status_lines(answer), 1, "{what}: {answer}");
}

dual_test! {
    async fn host_headers_are_checked() {
        let app = spawn_app().await;
        let cases: [(&str, &str); 6] = [
            (
                "GET /healthz HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
                "Request with more than one Host header.",
            ),
            (
                "GET /healthz HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n\r\n",
                "Request with more than one Host header.",
            ),
            (
                "GET http://a.example/healthz HTTP/1.1\r\nHost: b.example\r\n\r\n",
                "Host header does not match the request target.",
            ),
            (
                "GET http://a.example/healthz HTTP/1.1\r\nHost: a.example:8080\r\n\r\n",
                "Host header does not match the request target.",
            ),
            ("GET /healthz HTTP/1.1\r\n\r\n", "HTTP/1.1 request without a Host header."),
            ("GET /healthz HTTP/1.1\r\nHost: user@a.example\r\n\r\n", "Invalid Host header."),
        ];
        for (request, detail) in cases {
            let answer = exchange(&app, request.as_bytes()).await;
            assert_refused(&answer, "400 Bad Request", detail, request);
        }
        // What is allowed: a matching absolute target (the default port may be left out), an
        // HTTP/1.0 request without Host. Both answered, so the checks refuse nothing more.
        for request in [
            "GET http://A.example/healthz HTTP/1.1\r\nHost: a.example:80\r\nConnection: close\r\n\r\n",
            "GET /healthz HTTP/1.0\r\n\r\n",
        ] {
            let answer = exchange(&app, request.as_bytes()).await;
            assert!(answer.contains(" 200 OK\r\n"), "{request}: {answer}");
        }
    }
}

dual_test! {
    async fn framing_hyper_refuses_is_a_400_and_a_close() {
        let app = spawn_app().await;
        let post = "POST /api/token/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
        for (label, extra) in [
            ("two different lengths", "Content-Length: 2\r\nContent-Length: 3\r\n"),
            ("a length list", "Content-Length: 2, 3\r\n"),
            ("a signed length", "Content-Length: +2\r\n"),
            ("a hex length", "Content-Length: 0x2\r\n"),
            ("chunked not last", "Transfer-Encoding: chunked, gzip\r\n"),
            ("obs-fold", "Content-Length: 2\r\nX-Folded: a\r\n b\r\n"),
            ("space before the colon", "Content-Length : 2\r\n"),
            ("a bare CR", "X-A: a\rb\r\nContent-Length: 2\r\n"),
        ] {
            let answer = exchange(&app, format!("{post}{extra}\r\n{{}}").as_bytes()).await;
            assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{label}: {answer}");
            assert_eq!(status_lines(&answer), 1, "{label}: {answer}");
        }
        let answer = exchange(
            &app,
            b"POST /api/token/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
    }
}

dual_test! {
    async fn transfer_codings_other_than_one_chunked_are_refused() {
        let app = spawn_app().await;
        let head = "POST /api/token/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
        let answer = exchange(
            &app,
            format!("{head}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n").as_bytes(),
        )
        .await;
        assert_refused(
            &answer,
            "501 Not Implemented",
            "Transfer-Encoding other than chunked is not supported.",
            "gzip",
        );
        for te in ["chunked, chunked", "chunked\r\nTransfer-Encoding: chunked"] {
            let answer = exchange(
                &app,
                format!("{head}Transfer-Encoding: {te}\r\n\r\n0\r\n\r\n").as_bytes(),
            )
            .await;
            assert_refused(
                &answer,
                "400 Bad Request",
                "Transfer-Encoding chunked more than once.",
                te,
            );
        }
    }
}

dual_test! {
    /// RFC 9112 section 6.3 lets a server refuse a request with both `Content-Length` and
    /// `Transfer-Encoding` (and says to close the connection either way): doorman refuses it,
    /// in either order, as nginx does, so bytes a `Content-Length`-reading proxy would take for
    /// a second request are never answered. hyper drops the `Content-Length` of such a request,
    /// so this holds only because the connection's bytes are followed: it holds for the third
    /// request of a keep-alive connection too, after bodies by length and by chunks that
    /// contain request-like bytes, and no request without both is refused.
    async fn length_and_transfer_encoding_together_are_refused() {
        let app = spawn_app().await;
        let head = "POST /api/token/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
        let detail = "Request with both Content-Length and Transfer-Encoding.";
        for (label, lengths) in [
            ("length first", "Content-Length: 40\r\nTransfer-Encoding: chunked\r\n"),
            ("chunked first", "Transfer-Encoding: chunked\r\ncontent-length: 40\r\n"),
            ("a length of 0", "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n"),
        ] {
            let request = format!(
                "{head}{lengths}\r\n2\r\n{{}}\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            );
            let answer = exchange(&app, request.as_bytes()).await;
            assert_refused(&answer, "400 Bad Request", detail, label);
        }

        // Keep-alive: a body by length and a chunked one, each holding a request head with
        // both lengths as data, are served; the real one that follows is refused.
        let inner = "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\
                     Transfer-Encoding: chunked\r\n\r\n";
        let by_length = format!(
            "POST /api/token/verify/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{inner}",
            inner.len()
        );
        let chunked = format!(
            "POST /api/token/verify/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x};x=y\r\n{inner}\r\n0\r\nX-T: 1\r\n\r\n",
            inner.len()
        );
        let both = format!("{head}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        let mut stream = connect(&app).await;
        stream
            .write_all(format!("{by_length}{chunked}{both}").as_bytes())
            .await
            .unwrap();
        let answer = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        // The answers follow each other's bodies directly, not on lines of their own.
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 3, "{answer}");
        let answers: Vec<&str> = answer.split("HTTP/1.1 ").skip(1).collect();
        // Both bodies were read whole, as JSON (which they aren't).
        for served in &answers[..2] {
            assert!(served.starts_with("400 Bad Request\r\n"), "{answer}");
            assert!(served.contains("JSON parse error"), "{answer}");
        }
        assert!(answers[2].starts_with("400 Bad Request\r\n"), "{answer}");
        assert!(answers[2].ends_with(&format!(r#"{{"detail":"{detail}"}}"#)), "{answer}");

        // Without both, nothing is refused: three requests, three answers, still open.
        let mut stream = connect(&app).await;
        let plain = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        stream
            .write_all(format!("{by_length}{chunked}{plain}").as_bytes())
            .await
            .unwrap();
        let mut seen = String::new();
        let mut chunk = [0u8; 8192];
        while !seen.ends_with(r#"{"status":"ok"}"#) {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
        assert_eq!(seen.matches("JSON parse error").count(), 2, "{seen}");
        assert!(!seen.contains("connection: close"), "{seen}");
    }
}

dual_test! {
    /// A gigabyte announced is refused from the head, at once, and with `Expect:
    /// 100-continue` no `100 Continue` comes first; a body within the limit still gets its
    /// `100 Continue` and is served.
    async fn an_announced_oversized_body_is_413_at_once() {
        let app = spawn_app().await;
        for expect in ["", "Expect: 100-continue\r\n"] {
            let started = Instant::now();
            let mut stream = connect(&app).await;
            let head = format!(
                "POST /api/token/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 {expect}Content-Length: 1073741824\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            let answer = read_until_closed(&mut stream, Duration::from_secs(8)).await;
            assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
            assert_refused(&answer, "413 Payload Too Large", "Request body is too large.", expect);
            assert!(!answer.contains("100 Continue"), "{answer}");
        }
        app.create_user("ann", "a-long-password-1", true).await;
        let body = r#"{"username":"ann","password":"a-long-password-1"}"#;
        let mut stream = connect(&app).await;
        let head = format!(
            "POST /api/token/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Expect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut first = [0u8; 25];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
        stream.write_all(body.as_bytes()).await.unwrap();
        let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }
}

/// 5 MB of JSON-ish filler.
fn five_megabytes() -> Vec<u8> {
    let mut body = br#"{"username": ""#.to_vec();
    body.resize(5 * 1024 * 1024 - 2, b'x');
    body.extend_from_slice(br#""}"#);
    body
}

dual_test! {
    /// As Python's `http.client` does: the whole 5 MB body is written before anything is read,
    /// and the write succeeds and the 413 is read after it, announced by length or chunked.
    multi_thread async fn a_client_that_writes_its_whole_oversized_body_first_reads_the_413() {
        let app = spawn_app().await;
        let body = five_megabytes();
        let mut by_length = format!(
            "POST /api/token/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        by_length.extend_from_slice(&body);
        let mut chunked = b"POST /api/token/ HTTP/1.1\r\nHost: x\r\n\
            Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
        for piece in body.chunks(64 * 1024) {
            chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        for (label, request) in [("by length", by_length), ("chunked", chunked)] {
            let mut stream = connect(&app).await;
            stream.write_all(&request).await.unwrap_or_else(|e| panic!("{label}: {e}"));
            let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
            assert!(answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), "{label}: {answer}");
            assert!(answer.ends_with(DETAIL_413), "{label}: {answer}");
        }
        let res = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
}

dual_test! {
    /// A chunked body is refused the moment it crosses `max_body_bytes`, not when it ends.
    async fn a_chunked_body_is_refused_as_soon_as_it_crosses_the_limit() {
        let app = spawn_app().await;
        let mut stream = connect(&app).await;
        let piece = vec![b'x'; 100 * 1024];
        let mut request = b"POST /api/token/ HTTP/1.1\r\nHost: x\r\n\
            Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(&piece);
        request.extend_from_slice(b"\r\n");
        stream.write_all(&request).await.unwrap();
        // No last chunk: the body never ends, and the answer comes anyway.
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), "{answer}");
    }
}

/// The lingering after a 413 is bounded: a client that goes quiet is closed 5 s after its
/// last bytes, and one that never stops writing is cut off after 64 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lingering_after_a_413_is_bounded() {
    let app = spawn_app().await;
    let head = "POST /api/token/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 1073741824\r\n\r\n";

    // The answer and a FIN come at once; the server keeps reading what the client sends
    // (writes succeed, no reset), until 5 s pass without a byte: then it closes, and the
    // next write meets a reset.
    let mut quiet = connect(&app).await;
    quiet.write_all(head.as_bytes()).await.unwrap();
    quiet.write_all(&[b'x'; 1000]).await.unwrap();
    let answer = read_until_closed(&mut quiet, Duration::from_secs(2)).await;
    assert!(answer.ends_with(DETAIL_413), "{answer}");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        quiet.write_all(&[b'x'; 1000]).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut reset = false;
    for _ in 0..4 {
        if quiet.write_all(&[b'x'; 1000]).await.is_err() {
            reset = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(reset, "still open 7 s after the client's last bytes");

    let mut endless = connect(&app).await;
    endless.write_all(head.as_bytes()).await.unwrap();
    let filler = vec![b'x'; 256 * 1024];
    let mut written = 0usize;
    let started = Instant::now();
    let cut_off = loop {
        match tokio::time::timeout(Duration::from_secs(10), endless.write(&filler)).await {
            Ok(Ok(n)) => written += n,
            Ok(Err(_)) => break true,
            Err(_) => break false,
        }
        if written > 512 * 1024 * 1024 {
            break false;
        }
    };
    assert!(
        cut_off,
        "still writing after {written} bytes, {:?}",
        started.elapsed()
    );
    assert!(written >= 64 * 1024 * 1024, "{written}");
    assert!(written < 100 * 1024 * 1024, "{written}");
}

dual_test! {
    /// Over HTTP/2 (h2c) a `host` header must agree with `:authority`, and there is one only.
    async fn over_http2_host_must_agree_with_the_authority() {
        let app = spawn_app().await;
        let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
        let authority = app.address.trim_start_matches("http://").trim_end_matches('/');
        let res = h2.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!((res.version(), res.status().as_u16()), (reqwest::Version::HTTP_2, 200));
        let res = h2.get(app.url("/healthz")).header("host", authority).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let res = h2.get(app.url("/healthz")).header("host", "evil.example").send().await.unwrap();
        assert_eq!(res.version(), reqwest::Version::HTTP_2);
        assert!(res.headers().get("connection").is_none());
        let (status, body) = status_body(res).await;
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (400, r#"{"detail":"Host header does not match the request target."}"#)
        );
        let res = h2
            .get(app.url("/healthz"))
            .header("host", authority)
            .header("x-other", "1")
            .build()
            .map(|mut request| {
                request
                    .headers_mut()
                    .append("host", reqwest::header::HeaderValue::from_str(authority).unwrap());
                request
            })
            .unwrap();
        let (status, body) = status_body(h2.execute(res).await.unwrap()).await;
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (400, r#"{"detail":"Request with more than one Host header."}"#)
        );
        // An oversized announced body over HTTP/2: 413 from the header too.
        let res = h2
            .post(app.url("/api/token/"))
            .header("content-type", "application/json")
            .body(vec![b'x'; 200 * 1024])
            .send()
            .await
            .unwrap();
        let (status, body) = status_body(res).await;
        assert_eq!((status.as_u16(), body.as_str()), (413, DETAIL_413));
    }
}

/// Python's `requests` sends a 5 MB body in full before it reads, and gets the 413 JSON. (urllib3
/// also reads an answer after a broken pipe, so this holds without lingering too; the raw
/// socket tests above are the ones that need it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_requests_posting_5_megabytes_reads_the_413() {
    let Some(python) = crate::reference_app::Python::get().await else {
        return;
    };
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("post.py");
    std::fs::write(
        &script,
        "import sys, requests\n\
         body = b'{\"username\": \"' + b'x' * (5 * 1024 * 1024) + b'\"}'\n\
         r = requests.post(sys.argv[1] + '/api/token/', data=body,\n\
                           headers={'Content-Type': 'application/json'}, timeout=30)\n\
         print(r.status_code, r.text)\n",
    )
    .unwrap();
    let base = app.address.trim_end_matches('/').to_owned();
    let output = python.run(&script, &[&base]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), format!("413 {DETAIL_413}"));
}
