//! A login flood sheds logins, never token checks: with one password hash worker, 200 clients
//! log in over and over, each request on a connection of its own, while another client checks
//! a token on `/hello/` and asks `/healthz`. Logins draw on the hashing budget (the worker plus
//! `login_queue_max` waiting), so those beyond it are refused at once with 503 JSON and
//! `Retry-After`, an admitted one answers within a few hashes' time, and the token checks and
//! the health check keep their own slots.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Logins in flight at once: far more than the hashing budget (1 worker + 4 waiting, as the test sets it) and than
/// the general slots the test gives the server (64), as on main a flood took every slot.
const FLOODERS: usize = 200;
/// Each flooder's pause between its logins: about 800 logins a second offered, many times what
/// one hash worker answers, without the flood's own connections taking all the CPU.
const PAUSE: Duration = Duration::from_millis(250);
/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(4);
/// The bound on the token check's and the health check's p99 during the flood. Loose for a
/// loaded 2-core machine running a fuzzer beside the tests; on main they weren't slow but shed
/// (503), which this test refuses whatever their latency.
const PROBE_P99: Duration = Duration::from_secs(2);

/// One login on a connection of its own, sent by hand once the connection is up (so the time
/// counts from the request sent, not from a connect that waited in a full accept queue): its
/// status, whether it had `Retry-After`, its body, and how long it took to be answered.
async fn one_login(addr: &str) -> (u16, bool, Value, Duration) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let body = json!({"username": ALICE.0, "password": ALICE.1}).to_string();
    let request = format!(
        "POST /api/token/ HTTP/1.1\r\nHost: doorman\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .expect("every login is answered")
        .expect("read");
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let retry_after = head.to_ascii_lowercase().contains("\r\nretry-after:");
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, retry_after, body, took)
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let at = (samples.len() * 99).div_ceil(100).saturating_sub(1);
    samples.get(at).copied().unwrap_or_default()
}

dual_test! {
    multi_thread async fn a_login_flood_sheds_logins_and_never_token_checks() {
        let _alone = crate::helpers::WHOLE_MACHINE.lock().await;
        let app = spawn_app_with(&[
            ("DOORMAN_PASSWORD_HASH_WORKERS", "1"),
            ("DOORMAN_LOGIN_QUEUE_MAX", "4"),
            ("DOORMAN_MAX_CONCURRENT_REQUESTS", "64"),
        ])
        .await;
        let (_, access) = app.login().await;
        let login_url = app.address.trim_start_matches("http://").to_owned();

        // What one login costs here, alone: the median of three.
        let mut alone = Vec::new();
        for _ in 0..3 {
            let (status, _, _, took) = one_login(&login_url).await;
            assert_eq!(status, 200);
            alone.push(took);
        }
        alone.sort();
        let hash = alone[1];
        // An admitted login waits for at most the four ahead of it in the queue, then its own
        // hash: five hashes. The hash threads run at the lowest priority, so under the flood's
        // own load (and whatever else this machine runs) a hash takes several times what it
        // takes alone: four times, plus 2 s for the rest of its way.
        let login_bound = hash * 20 + Duration::from_secs(2);

        let until = Instant::now() + FLOOD;
        let flood: Vec<_> = (0..FLOODERS)
            .map(|n| {
                let url = login_url.clone();
                // Open loop, spread over the pause: arrivals, not a stampede at one instant.
                let first = PAUSE * u32::try_from(n).unwrap() / u32::try_from(FLOODERS).unwrap();
                tokio::spawn(async move {
                    tokio::time::sleep(first).await;
                    let mut answers = Vec::new();
                    while Instant::now() < until {
                        answers.push(one_login(&url).await);
                        tokio::time::sleep(PAUSE).await;
                    }
                    answers
                })
            })
            .collect();

        // The token checks and health checks meanwhile, on their own keep-alive client.
        let mut hello = Vec::new();
        let mut health = Vec::new();
        while Instant::now() < until {
            let started = Instant::now();
            let response = app.get_hello(&access).await;
            hello.push((response.status().as_u16(), started.elapsed()));
            let started = Instant::now();
            let response = app.client.get(app.url("/healthz")).send().await.unwrap();
            health.push((response.status().as_u16(), started.elapsed()));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        let mut answers = Vec::new();
        for task in flood {
            answers.extend(task.await.unwrap());
        }
        let succeeded = answers.iter().filter(|a| a.0 == 200).count();
        let admitted_p99 = p99(answers.iter().filter(|a| a.0 == 200).map(|a| a.3).collect());
        let shed = answers.iter().filter(|a| a.0 == 503).count();
        eprintln!(
            "login flood: admitted p99 {admitted_p99:?}, max {:?}, bound {login_bound:?}",
            answers.iter().filter(|a| a.0 == 200).map(|a| a.3).max()
        );
        for (status, retry_after, body, took) in &answers {
            match status {
                200 => assert!(
                    *took <= login_bound,
                    "an admitted login took {took:?}, past {login_bound:?} (one login alone: {hash:?})"
                ),
                503 => {
                    assert!(*retry_after, "a shed login says when to come back");
                    assert!(body["detail"].is_string(), "a shed login's body: {body}");
                }
                other => panic!("a login answered {other}: {body}"),
            }
        }
        assert!(succeeded > 0, "some logins get through the flood");
        assert!(shed > 0, "the flood was beyond the hashing budget ({} logins)", answers.len());

        for (name, probes) in [("/hello/", &hello), ("/healthz", &health)] {
            let refused: Vec<_> = probes.iter().filter(|p| p.0 != 200).collect();
            assert!(
                refused.is_empty(),
                "{name} answered {} of {} probes other than 200 during the login flood: {:?}",
                refused.len(),
                probes.len(),
                &refused[..refused.len().min(5)]
            );
            let p99 = p99(probes.iter().map(|p| p.1).collect());
            assert!(
                p99 <= PROBE_P99,
                "{name}'s p99 was {p99:?} during the login flood, past {PROBE_P99:?}"
            );
        }

        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
        let metrics = metrics.text().await.unwrap();
        assert!(
            metrics.contains("doorman_logins_shed_total"),
            "the shed logins are counted"
        );
        eprintln!(
            "login flood: {} logins, {succeeded} answered 200 (p99 {admitted_p99:?}), {shed} shed; one login alone {hash:?}; \
             /hello/ p99 {:?}, /healthz p99 {:?} over {} probes",
            answers.len(),
            p99(hello.iter().map(|p| p.1).collect()),
            p99(health.iter().map(|p| p.1).collect()),
            hello.len()
        );
    }
}
