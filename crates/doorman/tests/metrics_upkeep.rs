//! The metrics recorder keeps every latency sample until something drains it. The server's
//! upkeep ([`Metrics::keep_up`], started with every server) does, so an instance that nobody
//! scrapes stays the same size however many requests it answers.
//!
//! A test binary of its own: it reads the process's resident memory, which other tests running
//! beside it would move.
#![cfg(target_os = "linux")]

use std::time::Duration;

use doorman::metrics::Metrics;

/// Latency samples recorded in each half of the test (16 MB and more if nothing drains them).
const SAMPLES: usize = 2_000_000;
const CHUNK: usize = 50_000;

fn rss_kib() -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS in /proc/self/status")?;
    let kib = line
        .split_whitespace()
        .nth(1)
        .ok_or("VmRSS without a value")?;
    Ok(kib.parse()?)
}

fn answer(metrics: &Metrics, requests: usize) {
    for _ in 0..requests {
        metrics.request(
            &http::Method::GET,
            "/hello/",
            200,
            Duration::from_micros(300),
        );
    }
}

#[test]
fn latency_samples_are_drained_without_a_scrape() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()?;

    // With the upkeep running as the server runs it (more often, to keep the test short).
    let kept = Metrics::new();
    answer(&kept, CHUNK);
    let upkeep = runtime.spawn(kept.clone().keep_up(Duration::from_millis(5)));
    std::thread::sleep(Duration::from_millis(50));
    let before = rss_kib()?;
    for _ in 0..SAMPLES / CHUNK {
        answer(&kept, CHUNK);
        std::thread::sleep(Duration::from_millis(10));
    }
    let grown_with_upkeep = rss_kib()?.saturating_sub(before);
    upkeep.abort();

    // The same requests with nothing draining their samples: the growth the upkeep prevents,
    // and the proof that this test can see it.
    let unkept = Metrics::new();
    answer(&unkept, CHUNK);
    let before = rss_kib()?;
    answer(&unkept, SAMPLES);
    let grown_without = rss_kib()?.saturating_sub(before);

    assert!(
        grown_without >= 8 * 1024,
        "{SAMPLES} undrained samples grew the process by only {grown_without} KiB"
    );
    assert!(
        grown_with_upkeep <= 3 * 1024,
        "{SAMPLES} samples grew the process by {grown_with_upkeep} KiB with the upkeep running \
         (without it: {grown_without} KiB)"
    );
    Ok(())
}
