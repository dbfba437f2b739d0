//! The ceiling ends on SIGTERM through `main`'s return, with exit status 0: a build
//! instrumented for profile-guided optimisation (`bench/pgo`) writes its profile in an exit
//! handler, which the signal's default action would never run, and the ceiling must be trained
//! the same way as doorman for the benchmark's ratio to be fair.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[test]
fn sigterm_ends_the_ceiling_with_a_normal_exit() {
    let mut ceiling = Command::new(env!("CARGO_BIN_EXE_ceiling"))
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(ceiling.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line.trim().strip_prefix("listening on ").unwrap();
    // Serving, with a connection open, when the signal comes.
    let _open = TcpStream::connect(address).unwrap();

    let pid = Pid::from_raw(i32::try_from(ceiling.id()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = ceiling.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            ceiling.kill().unwrap();
            panic!("the ceiling did not end within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        status.success(),
        "the ceiling ended with {status}, not through main's return"
    );
}
