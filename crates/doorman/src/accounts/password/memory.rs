//! argon2's working memory, kept by each hash thread from one run to the next.

use argon2::{Argon2, Block};

/// The most blocks a hash thread keeps: what doorman's own parameters (OWASP's m = 19 MiB,
/// p = 1) need, which every login's check or dummy check uses.
pub(super) const KEPT_BLOCKS: usize = 19_456;

thread_local! {
    /// argon2's working memory on a hash thread, kept from one run to the next; `None` on
    /// every other thread.
    pub(super) static ARGON2_MEMORY: std::cell::RefCell<Option<Vec<Block>>> =
        const { std::cell::RefCell::new(None) };
}

/// Makes the current thread keep argon2's working memory (up to what doorman's own
/// parameters need) from one run to the next; called by the hash threads only.
pub(super) fn keep_argon2_memory() {
    ARGON2_MEMORY.with_borrow_mut(|memory| *memory = Some(Vec::new()));
}

/// One argon2 run into `out`. On a hash thread the working memory is the thread's own, kept
/// between runs: a login's 19 MiB are not allocated, zeroed by the kernel page by page and
/// handed back every time, which cost a few milliseconds a hash in page faults and made the
/// resident memory rise and fall by tens of megabytes under logins. (The first pass writes
/// every block before reading it, so the last run's contents don't matter.) A run asking for
/// more memory than doorman's own parameters, and a run on any other thread, takes memory of
/// its own for the run.
pub(super) fn argon2_into(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let needed = argon2.params().block_count();
    let kept = ARGON2_MEMORY.with_borrow_mut(|memory| match memory {
        Some(memory) if needed <= KEPT_BLOCKS => {
            if memory.len() < needed {
                memory.resize(needed, Block::default());
            }
            Some(argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..needed]))
        }
        _ => None,
    });
    match kept {
        Some(result) => result,
        None => argon2.hash_password_into(password, salt, out),
    }
}
