//! What a connection may hold and for how long, tried as an attacker would: request bodies that
//! never come hold no concurrency slot and get 408 after `body_read_timeout`; HTTP/2
//! connections that never send a request (nothing, half a preface, a preface and no request)
//! are closed at the first-request deadline, idle ones after `http2_idle_timeout`, dead ones
//! when pings go unanswered; streams per connection are capped; rapid stream resets
//! (CVE-2023-44487) and CONTINUATION floods cut the connection off. The HTTP/2 frames are
//! written by hand, as an attacker's client would.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Lets this process open `wanted` more files (sockets), up to the hard limit.
fn allow_open_files(wanted: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < wanted {
        setrlimit(Resource::RLIMIT_NOFILE, wanted.min(hard), hard).unwrap();
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        soft >= wanted,
        "this test needs {wanted} open files, got {soft}"
    );
}

/// Reads until the server closes the connection or `within` passes; what came, and whether it
/// closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .is_ok();
    (out, closed)
}

const STALLED_HEAD: &[u8] = b"POST /api/token/ HTTP/1.1\r\nHost: doorman\r\n\
    Content-Type: application/json\r\nContent-Length: 100\r\n\r\n";

dual_test! {
    /// A thousand connections send a login's head and never its body. With 50 slots, the slot
    /// taken before the body was read left every route answering 503; now `/healthz`, a login
    /// and `/hello/` are answered throughout, and each stalled request gets 408 JSON and a
    /// closed connection once `body_read_timeout` passes.
    multi_thread async fn stalled_bodies_hold_no_slot_and_get_408() {
        allow_open_files(4096);
        let app = spawn_app_with(&[
            ("DOORMAN_MAX_CONCURRENT_REQUESTS", "50"),
            ("DOORMAN_BODY_READ_TIMEOUT", "4s"),
        ])
        .await;
        let addr = app.address.trim_start_matches("http://").to_owned();
        let started = Instant::now();
        let mut stalled = Vec::new();
        for _ in 0..1000 {
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            stream.write_all(STALLED_HEAD).await.unwrap();
            stalled.push(stream);
        }
        // Let the server read the heads.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(started.elapsed() < Duration::from_millis(3500), "the set-up took too long");

        let health = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let login = app.post_token(&credentials(ALICE)).await;
        assert_eq!(login.status(), 200);
        let access = login.json::<serde_json::Value>().await.unwrap()["access"]
            .as_str()
            .unwrap()
            .to_owned();
        let hello = app.get_hello(&access).await;
        assert_eq!(hello.status(), 200);
        assert_eq!(hello.json::<serde_json::Value>().await.unwrap(), json!({"message": "Hello, World!"}));
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the ordinary requests finished only after the stalled ones timed out"
        );

        let answers: Vec<_> = stalled
            .into_iter()
            .map(|mut stream| {
                tokio::spawn(async move {
                    let (out, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
                    (String::from_utf8_lossy(&out).into_owned(), closed)
                })
            })
            .collect();
        for answer in answers {
            let (answer, closed) = answer.await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer}");
            assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
            assert!(answer.ends_with(r#"{"detail":"The request body did not arrive in time."}"#), "{answer}");
            assert!(closed, "the connection stayed open after the 408");
        }
        let lasted = started.elapsed();
        assert!(
            lasted >= Duration::from_secs(4) && lasted < Duration::from_secs(9),
            "{lasted:?}"
        );
    }
}

dual_test! {
    /// A body that comes slowly but within `body_read_timeout` is read whole and answered.
    async fn a_slow_body_within_the_deadline_is_answered() {
        let app = spawn_app_with(&[("DOORMAN_BODY_READ_TIMEOUT", "3s")]).await;
        let addr = app.address.trim_start_matches("http://").to_owned();
        let body = serde_json::to_vec(&credentials(ALICE)).unwrap();
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /api/token/ HTTP/1.1\r\nHost: doorman\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        for part in body.chunks(body.len() / 3 + 1) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            stream.write_all(part).await.unwrap();
        }
        let (out, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
        let out = String::from_utf8_lossy(&out);
        assert!(closed);
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains(r#""access":""#), "{out}");
    }
}

/// Hand-written HTTP/2 frames (RFC 9113 section 4.1).
mod frames {
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const CONTINUATION: u8 = 0x9;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const CANCEL: u32 = 0x8;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The preface and an empty SETTINGS frame: what a client sends first.
    pub fn opening() -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[]));
        out
    }

    /// A request's header block in HPACK, literals never indexed (no table state to keep).
    pub fn request_block(method_index: u8, path: &str) -> Vec<u8> {
        let mut out = vec![0x80 | method_index, 0x86]; // :method, :scheme http
        out.extend([0x04, u8::try_from(path.len()).unwrap()]); // :path
        out.extend_from_slice(path.as_bytes());
        out.extend([0x01, 7]); // :authority
        out.extend_from_slice(b"doorman");
        out
    }

    /// `GET path` on `stream`, ending the stream.
    pub fn get(stream: u32, path: &str) -> Vec<u8> {
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream,
            &request_block(2, path),
        )
    }

    /// `POST path` on `stream` with the body still to come.
    pub fn post_head(stream: u32, path: &str) -> Vec<u8> {
        frame(HEADERS, END_HEADERS, stream, &request_block(3, path))
    }

    /// One frame as read: type, flags, stream, payload.
    pub struct Frame {
        pub kind: u8,
        pub flags: u8,
        pub stream: u32,
        pub payload: Vec<u8>,
    }

    impl Frame {
        /// A GOAWAY's or RST_STREAM's error code.
        pub fn error_code(&self) -> u32 {
            let at = if self.kind == GOAWAY { 4 } else { 0 };
            u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
        }

        /// A SETTINGS frame's value for `id`.
        pub fn setting(&self, id: u16) -> Option<u32> {
            self.payload.chunks(6).find_map(|s| {
                (u16::from_be_bytes([s[0], s[1]]) == id)
                    .then(|| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
            })
        }
    }

    /// Splits what the server sent into frames (a trailing partial frame is left out).
    pub fn parse(mut bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        while bytes.len() >= 9 {
            let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
            if bytes.len() < 9 + len {
                break;
            }
            frames.push(Frame {
                kind: bytes[3],
                flags: bytes[4],
                stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
                payload: bytes[9..9 + len].to_vec(),
            });
            bytes = &bytes[9 + len..];
        }
        frames
    }
}

use frames::*;

/// Reads frames until `done` says so, the server closes, or `within` passes.
async fn read_frames_until(
    stream: &mut TcpStream,
    within: Duration,
    mut done: impl FnMut(&[Frame]) -> bool,
) -> (Vec<Frame>, bool) {
    let mut out = Vec::new();
    let mut closed = false;
    let _ = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 16384];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => {
                    closed = true;
                    return;
                }
                Ok(n) => out.extend_from_slice(&buffer[..n]),
            }
            if done(&parse(&out)) {
                return;
            }
        }
    })
    .await;
    (parse(&out), closed)
}

/// An ordinary HTTP/2 client's request, and an HTTP/1 one's, answered at once.
async fn ordinary_clients_are_served(addr: std::net::SocketAddr) {
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let h1 = reqwest::Client::new();
    for client in [h2, h1] {
        let started = Instant::now();
        let res = client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
    }
}

/// Two hundred connections that never send a request: some send nothing, some half the
/// HTTP/2 preface, some the preface and SETTINGS but no request, some a request's HEADERS
/// without the end of its header block. Every one is closed at the 1 s first-request
/// deadline (not before, not twice), while ordinary HTTP/1 and HTTP/2 clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_request_are_closed_at_the_deadline() {
    allow_open_files(1024);
    let dir = tempfile::tempdir().unwrap();
    let addr = serve_bound(dir.path(), &[("DOORMAN_HEADER_READ_TIMEOUT", "1s")]).await;
    let openers: [Vec<u8>; 4] = [
        Vec::new(),
        PREFACE[..8].to_vec(),
        opening(),
        [
            opening(),
            frame(HEADERS, 0, 1, &request_block(2, "/healthz")),
        ]
        .concat(),
    ];
    let mut held = Vec::new();
    for i in 0..200 {
        let kind = i % openers.len();
        let opener = openers[kind].clone();
        held.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            stream.write_all(&opener).await.unwrap();
            let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
            (kind, closed, started.elapsed())
        }));
    }
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ordinary_clients_are_served(addr).await;
    }
    for held in held {
        let (kind, closed, lasted) = held.await.unwrap();
        assert!(closed, "opener {kind} stayed open for 5 s");
        // The 1 s deadline with slack for a busy machine, but not enough for it counted twice.
        assert!(
            lasted >= Duration::from_millis(900) && lasted < Duration::from_millis(1900),
            "opener {kind} was closed after {lasted:?}"
        );
    }
    ordinary_clients_are_served(addr).await;
}

/// After its request, an HTTP/2 connection left idle gets GOAWAY once `http2_idle_timeout`
/// passes, and is closed.
#[tokio::test]
async fn an_idle_http2_connection_gets_goaway_and_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve_bound(
        dir.path(),
        &[
            ("DOORMAN_HEADER_READ_TIMEOUT", "5s"),
            ("DOORMAN_HTTP2_IDLE_TIMEOUT", "1s"),
        ],
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&[opening(), get(1, "/healthz")].concat())
        .await
        .unwrap();
    let (frames, _) = read_frames_until(&mut stream, Duration::from_secs(5), |f| {
        f.iter()
            .any(|f| f.kind == DATA && f.stream == 1 && f.flags & END_STREAM != 0)
    })
    .await;
    let answered = Instant::now();
    assert!(frames.iter().any(|f| f.kind == HEADERS && f.stream == 1));
    let (frames, closed) = read_frames_until(&mut stream, Duration::from_secs(5), |f| {
        f.iter().any(|f| f.kind == GOAWAY)
    })
    .await;
    let goaway_after = answered.elapsed();
    assert!(
        !closed || frames.iter().any(|f| f.kind == GOAWAY),
        "closed without GOAWAY"
    );
    let goaway = frames.iter().find(|f| f.kind == GOAWAY).unwrap();
    assert_eq!(goaway.error_code(), 0, "a graceful GOAWAY");
    assert!(
        goaway_after >= Duration::from_millis(900) && goaway_after < Duration::from_millis(1900),
        "{goaway_after:?}"
    );
    // The client doesn't answer the GOAWAY's ping nor close: the server does.
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(4)).await;
    assert!(closed, "the idle connection stayed open after GOAWAY");
}

/// A peer that stops answering pings is dropped after `http2_keepalive_interval` plus
/// `http2_keepalive_timeout`, though it holds a request open (which keeps the idle timeout off).
#[tokio::test]
async fn a_peer_that_does_not_answer_pings_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve_bound(
        dir.path(),
        &[
            ("DOORMAN_HTTP2_KEEPALIVE_INTERVAL", "1s"),
            ("DOORMAN_HTTP2_KEEPALIVE_TIMEOUT", "1s"),
            ("DOORMAN_BODY_READ_TIMEOUT", "60s"),
        ],
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(&[opening(), post_head(1, "/api/token/")].concat())
        .await
        .unwrap();
    let (frames, closed) = read_until_closed_frames(&mut stream, Duration::from_secs(8)).await;
    let lasted = started.elapsed();
    let ping = frames.iter().find(|f| f.kind == PING).expect("a PING");
    assert_eq!(ping.flags & 0x1, 0, "a ping, not an answer");
    assert!(closed, "a peer that never answered pings stayed connected");
    assert!(
        lasted >= Duration::from_millis(1800) && lasted < Duration::from_secs(4),
        "{lasted:?}"
    );
}

async fn read_until_closed_frames(stream: &mut TcpStream, within: Duration) -> (Vec<Frame>, bool) {
    read_frames_until(stream, within, |_| false).await
}

/// The server announces its stream and header-list limits, and refuses a stream beyond
/// `http2_max_concurrent_streams` with REFUSED_STREAM.
#[tokio::test]
async fn streams_per_connection_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve_bound(
        dir.path(),
        &[
            ("DOORMAN_HTTP2_MAX_CONCURRENT_STREAMS", "4"),
            ("DOORMAN_MAX_HEADER_BYTES", "16384"),
        ],
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&opening()).await.unwrap();
    let (frames, _) = read_frames_until(&mut stream, Duration::from_secs(5), |f| {
        f.iter().any(|f| f.kind == SETTINGS && f.flags & 0x1 == 0)
    })
    .await;
    let settings = frames
        .iter()
        .find(|f| f.kind == SETTINGS && f.flags & 0x1 == 0)
        .unwrap();
    assert_eq!(
        settings.setting(0x3),
        Some(4),
        "SETTINGS_MAX_CONCURRENT_STREAMS"
    );
    assert_eq!(
        settings.setting(0x6),
        Some(16384),
        "SETTINGS_MAX_HEADER_LIST_SIZE"
    );
    // Acknowledge the server's settings, then open five streams whose bodies never come.
    let mut burst = frame(SETTINGS, 0x1, 0, &[]);
    for id in [1, 3, 5, 7, 9] {
        burst.extend(post_head(id, "/api/token/"));
    }
    stream.write_all(&burst).await.unwrap();
    let (frames, _) = read_frames_until(&mut stream, Duration::from_secs(5), |f| {
        f.iter().any(|f| f.kind == RST_STREAM)
    })
    .await;
    let resets: Vec<_> = frames.iter().filter(|f| f.kind == RST_STREAM).collect();
    assert_eq!(resets.len(), 1);
    assert_eq!(
        (resets[0].stream, resets[0].error_code()),
        (9, REFUSED_STREAM)
    );
}

/// A client opening streams and resetting them at once, thousands in a burst (the "rapid
/// reset" attack), gets GOAWAY with ENHANCE_YOUR_CALM and a closed connection; others are
/// served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_stream_resets_cut_the_connection_off() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve_bound(dir.path(), &[]).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut burst = opening();
    for n in 0..5000u32 {
        let id = 2 * n + 1;
        burst.extend(get(id, "/healthz"));
        burst.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    let _ = stream.write_all(&burst).await;
    let (frames, closed) = read_until_closed_frames(&mut stream, Duration::from_secs(10)).await;
    let goaway = frames.iter().find(|f| f.kind == GOAWAY).expect("a GOAWAY");
    assert_eq!(goaway.error_code(), ENHANCE_YOUR_CALM);
    assert!(closed, "the connection stayed open");
    let answered = frames.iter().filter(|f| f.kind == HEADERS).count();
    assert!(answered < 5000, "every reset stream was answered");
    ordinary_clients_are_served(addr).await;
}

/// A header block continued for ever (CONTINUATION frames without END_HEADERS, each small)
/// isn't buffered or decoded without bound: the connection is closed with ENHANCE_YOUR_CALM
/// after a handful of frames (h2 allows as many as the header list limit could need, plus a
/// quarter, and at least five).
#[tokio::test]
async fn a_continuation_flood_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve_bound(dir.path(), &[]).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut flood = opening();
    flood.extend(frame(HEADERS, 0, 1, &request_block(2, "/healthz")));
    // Each frame a small, valid header field (`x-pad: aaaaaaaa`, a literal never indexed): the
    // bound is on the frames, not only on the bytes.
    let field = [&[0x10, 5][..], b"x-pad", &[8], b"aaaaaaaa"].concat();
    for _ in 0..200 {
        flood.extend(frame(CONTINUATION, 0, 1, &field));
    }
    let _ = stream.write_all(&flood).await;
    let (frames, closed) = read_until_closed_frames(&mut stream, Duration::from_secs(10)).await;
    let goaway = frames.iter().find(|f| f.kind == GOAWAY).expect("a GOAWAY");
    assert_eq!(goaway.error_code(), ENHANCE_YOUR_CALM);
    assert!(closed, "the connection stayed open");
    ordinary_clients_are_served(addr).await;
}
