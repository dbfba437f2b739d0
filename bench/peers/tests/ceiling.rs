//! The two ceilings: each ends on SIGTERM through `main`'s return, with exit status 0 (a build
//! instrumented for profile-guided optimisation, `bench/pgo`, writes its profile in an exit
//! handler, which the signal's default action would never run, and the ceilings must be trained
//! the same way as doorman for the benchmark's ratios to be fair); the bare ceiling's optional
//! work per request is really done; and the production-stack ceiling really runs the
//! middleware it stands for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const CEILINGS: [&str; 2] = [
    env!("CARGO_BIN_EXE_ceiling"),
    env!("CARGO_BIN_EXE_ceiling-stack"),
];

/// `program` serving on a free loopback port (`extra`: arguments after the address): the
/// process, its address and the rest of its stdout.
fn start(program: &str, extra: &[&str]) -> (Child, String, BufReader<ChildStdout>) {
    let mut child = Command::new(program)
        .arg("127.0.0.1:0")
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let address = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{program} printed {line:?}"))
        .to_owned();
    (child, address, stdout)
}

/// SIGTERM, then the exit status (killed, and the test failed, after 10 s).
fn terminate(child: &mut Child) -> ExitStatus {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{child:?} did not end within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One `GET /hello/` with `extra` header lines, on a connection of its own: the response's
/// head (lower-cased) and body.
fn get_hello(address: &str, extra: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET /hello/ HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn sigterm_ends_each_ceiling_with_a_normal_exit() {
    for program in CEILINGS {
        let (mut ceiling, address, _stdout) = start(program, &[]);
        // Serving, with a connection open, when the signal comes.
        let _open = TcpStream::connect(&address).unwrap();
        let status = terminate(&mut ceiling);
        assert!(
            status.success(),
            "{program} ended with {status}, not through main's return"
        );
    }
}

/// `ceiling ADDRESS BUSY_NS` answers as the bare ceiling does, after at least `BUSY_NS` of
/// work in each request; a `BUSY_NS` that isn't a number stops it at start.
#[test]
fn the_ceilings_work_per_request_is_done() {
    let program = env!("CARGO_BIN_EXE_ceiling");
    let (mut bare, address, _stdout) = start(program, &[]);
    let (_, bare_body) = get_hello(&address, "");
    assert!(terminate(&mut bare).success());

    // 300 ms: far above what a loopback request takes, so the lower bound can't come from
    // anything but the spin.
    let (mut busy, address, _stdout) = start(program, &["300000000"]);
    for _ in 0..2 {
        let started = Instant::now();
        let (head, body) = get_hello(&address, "");
        let took = started.elapsed();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, bare_body);
        assert!(took >= Duration::from_millis(300), "answered in {took:?}");
    }
    assert!(terminate(&mut busy).success());

    let out = Command::new(program)
        .args(["127.0.0.1:0", "soon"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
}

/// What makes `ceiling-stack` a production stack and not a second bare ceiling: a request id
/// made (or the client's echoed), the security headers, and one JSON access-log line per
/// request carrying the id, written out by the time it exits.
#[test]
fn the_stack_ceiling_runs_its_middleware() {
    let (mut stack, address, mut stdout) = start(env!("CARGO_BIN_EXE_ceiling-stack"), &[]);

    let (head, body) = get_hello(&address, "");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, r#"{"message":"Hello, World!"}"#);
    for header in [
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
        "x-frame-options: deny",
        "content-security-policy: default-src 'none'",
    ] {
        assert!(head.contains(header), "no {header} in {head}");
    }
    let made = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap_or_else(|| panic!("no request id in {head}"))
        .to_owned();
    assert_eq!(made.len(), 36, "not a UUID: {made}");

    let (head, _) = get_hello(&address, "X-Request-Id: from-the-client\r\n");
    assert!(head.contains("x-request-id: from-the-client"), "{head}");

    assert!(terminate(&mut stack).success());
    let mut log = String::new();
    stdout.read_to_string(&mut log).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    for (line, id) in lines.iter().zip([made.as_str(), "from-the-client"]) {
        assert_eq!(line["fields"]["status"], 200, "{line}");
        assert!(
            line["span"]["request_id"].as_str().unwrap().contains(id),
            "{line}"
        );
    }
}
