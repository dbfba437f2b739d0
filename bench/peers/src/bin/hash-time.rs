//! The time of one password check with doorman's own hasher and parameters (argon2id, OWASP's
//! m=19 MiB, t=2, p=1), one at a time: the benchmark's yardstick for login throughput, which
//! should approach cores / this time.
//!
//! Usage: hash-time [ROUNDS]
//! Prints the median time of one check alone, in milliseconds, then how many checks per second
//! all cores together manage (hashes on every core at once share the memory bandwidth, so this
//! is below cores / single time).

use doorman::accounts::PasswordHasher;
use secrecy::SecretString;

/// The same allocator as doorman, so that the comparison is of the code, not of malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 15,
    };
    let hasher = PasswordHasher::new(1);
    let password = || SecretString::from("benchmark-password-1".to_owned());
    let stored = hasher.hash(password()).await?;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let started = std::time::Instant::now();
        hasher.verify(password(), Some(stored.clone())).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let single = times[times.len() / 2];

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parallel = PasswordHasher::new(cores);
    let count = cores * rounds.max(1);
    let started = std::time::Instant::now();
    let mut checks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (hasher, stored) = (parallel.clone(), stored.clone());
        checks.spawn(async move { hasher.verify(password(), Some(stored)).await });
    }
    while let Some(done) = checks.join_next().await {
        done??;
    }
    let per_second = count as f64 / started.elapsed().as_secs_f64();
    println!("{single:.3} {per_second:.1}");
    Ok(())
}
