//! The time of one password check with doorman's own hasher and parameters (argon2id, OWASP's
//! m=19 MiB, t=2, p=1), one at a time: the benchmark's yardstick for login throughput, which
//! should approach cores / this time.
//!
//! Usage: hash-time [ROUNDS]   (prints the median in milliseconds)

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
    println!("{:.3}", times[times.len() / 2]);
    Ok(())
}
