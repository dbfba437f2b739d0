//! Password hashing: argon2id with OWASP's parameters for new hashes, and Django's
//! `pbkdf2_sha256$...` (and `argon2$argon2id$...`) accepted so that a Django user table moves
//! over as it is, each such hash upgraded on its next login. The CPU work runs on tokio's
//! blocking pool behind a semaphore, so a login storm queues here instead of filling the
//! blocking pool or starving token verification on the async workers.

use std::sync::Arc;

use argon2::password_hash::{self, phc::PasswordHash};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// Passwords longer than this are never hashed: argon2 has no truncation, so this caps the
/// work one request can ask for (ASVS 6.2.9 still allows any sensible passphrase).
const MAX_PASSWORD_BYTES: usize = 4096;

/// argon2 0.6's defaults are exactly OWASP's minimum for argon2id (m=19456 KiB, t=2, p=1);
/// pinned here so that a library upgrade changing them fails the build instead of silently
/// changing what we store.
const OWASP_PARAMS: Params = Params::DEFAULT;
const _: () = assert!(
    OWASP_PARAMS.m_cost() == 19_456 && OWASP_PARAMS.t_cost() == 2 && OWASP_PARAMS.p_cost() == 1
);

/// Verified against for unknown users (and for hashes we refuse), so that they cost what a
/// wrong password costs. A real argon2id hash with `OWASP_PARAMS`, of a password nobody knows.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZG9vcm1hbi11bmtub3duLXVzZXI$bTKHJHkZnlcF9KEjcdNlRvTDgs8qix6ewfeIrPgF6EM";

/// Stored hashes come from our own table, but a Django import can bring anything: beyond
/// these bounds a hash is refused rather than allowed to pin a core or allocate gigabytes.
/// Django's own defaults (pbkdf2 1_000_000; argon2 m=102400, t=2, p=8) sit well inside.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
const MAX_ARGON2_M_COST: u32 = 262_144;
const MAX_ARGON2_T_COST: u32 = 16;
const MAX_ARGON2_P_COST: u32 = 16;

/// Django's `PBKDF2PasswordHasher` derives 32 bytes (the SHA-256 size).
const DJANGO_PBKDF2_LEN: usize = 32;

/// The hashing work one password check did, counted as it is done. What the tests compare
/// across kinds of users instead of timing them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Work {
    /// The cost parameters (m, t, p) of each argon2 verification.
    argon2: Vec<(u32, u32, u32)>,
    /// PBKDF2-HMAC-SHA256 iterations, all calls together.
    pbkdf2_iterations: u64,
}

#[cfg(test)]
impl Work {
    pub(crate) fn new(argon2: &[(u32, u32, u32)], pbkdf2_iterations: u64) -> Work {
        Work {
            argon2: argon2.to_vec(),
            pbkdf2_iterations,
        }
    }
}

/// The outcome of a password check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verified {
    /// The password is right. `needs_rehash` when the stored hash is not an argon2id hash with
    /// our parameters (a Django hash, or one made with other settings): the caller should store
    /// a fresh `hash` of the password it now knows, as Django's `must_update` does.
    Match {
        needs_rehash: bool,
    },
    Mismatch,
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password hashing pool is closed")]
    PoolClosed,
    #[error("the password hashing thread failed")]
    Task,
    #[error("could not hash the password: {0}")]
    Hash(password_hash::Error),
    #[error("the password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
}

/// Hashes and verifies passwords with bounded concurrency. Cheap to clone; clones share the
/// bound and the threads.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    threads: Arc<HashThreads>,
    argon2: Argon2<'static>,
    /// Hashes waiting for a slot, and where to report it.
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    metrics: Option<crate::metrics::Metrics>,
    /// PBKDF2 iterations every check spends at least (see [`PasswordHasher::verify`]).
    pbkdf2_floor: Arc<std::sync::atomic::AtomicU32>,
    /// The work each check did, for tests that compare it across users.
    #[cfg(test)]
    work_log: Arc<std::sync::Mutex<Vec<Work>>>,
}

impl PasswordHasher {
    /// At most `max_concurrent` hashes run at once (e.g. the number of cores); 0 counts as 1.
    pub fn new(max_concurrent: usize) -> PasswordHasher {
        let permits = max_concurrent.clamp(1, 1024);
        PasswordHasher {
            permits: Arc::new(Semaphore::new(permits)),
            threads: Arc::new(HashThreads::start(permits)),
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, OWASP_PARAMS),
            waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            metrics: None,
            pbkdf2_floor: Arc::default(),
            #[cfg(test)]
            work_log: Arc::default(),
        }
    }

    /// Reports the queue depth and each hash's wait for a slot.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> PasswordHasher {
        self.metrics = Some(metrics);
        self
    }

    /// Every check from now on spends at least `iterations` PBKDF2 iterations: the most any
    /// stored Django hash asks for (0 when none is left).
    pub fn set_pbkdf2_floor(&self, iterations: u32) {
        self.pbkdf2_floor
            .store(iterations, std::sync::atomic::Ordering::Relaxed);
    }

    /// Raises the floor to `iterations` if it is lower (a stored hash asking for more than
    /// the floor knew of).
    pub fn raise_pbkdf2_floor(&self, iterations: u32) {
        self.pbkdf2_floor
            .fetch_max(iterations, std::sync::atomic::Ordering::Relaxed);
    }

    /// A new argon2id PHC string for the password, with a random salt.
    pub async fn hash(&self, password: SecretString) -> Result<String, PasswordError> {
        if password.expose_secret().len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::TooLong);
        }
        let argon2 = self.argon2.clone();
        self.run(move || {
            argon2
                .hash_password(password.expose_secret().as_bytes())
                .map(|hash| hash.to_string())
                .map_err(PasswordError::Hash)
        })
        .await?
    }

    /// Checks a password against a stored hash. `None` (no such user) costs the same as a wrong
    /// password and never matches. Every check does the same work whatever the stored hash:
    /// one argon2id verification with our parameters and the floor's PBKDF2 iterations, the
    /// dummy work making up whatever the hash itself didn't ask for. Hashes that are unusable, malformed or of an unknown kind are
    /// a `Mismatch`, never an error: they are the stored data's problem, not the caller's.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<Verified, PasswordError> {
        if password.expose_secret().len() > MAX_PASSWORD_BYTES {
            return Ok(Verified::Mismatch);
        }
        let argon2 = self.argon2.clone();
        let floor = self.pbkdf2_floor.load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(test)]
        let work_log = self.work_log.clone();
        self.run(move || {
            let mut work = Work::default();
            let verified = check_evenly(
                &argon2,
                password.expose_secret().as_bytes(),
                stored.as_deref(),
                floor,
                &mut work,
            );
            #[cfg(test)]
            if let Ok(mut log) = work_log.lock() {
                log.push(work);
            }
            verified
        })
        .await
    }

    /// The work of each check so far, oldest first; the log is emptied.
    #[cfg(test)]
    pub(crate) fn take_work(&self) -> Vec<Work> {
        let mut log = self
            .work_log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::take(&mut *log)
    }

    /// Runs CPU-heavy work on the blocking pool once a permit is free. The permit is taken here,
    /// on the async side, so waiting callers queue on the semaphore rather than as blocking
    /// threads; it moves into the task so it is held until the work ends, even when the caller
    /// stops waiting.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        use std::sync::atomic::Ordering;
        let started = std::time::Instant::now();
        let depth = self.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(metrics) = &self.metrics {
            metrics.hash_queue(depth);
        }
        let permit = self.permits.clone().acquire_owned().await;
        let depth = self
            .waiting
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        if let Some(metrics) = &self.metrics {
            metrics.hash_queue(depth);
            metrics.hash_waited(started.elapsed());
        }
        let permit = permit.map_err(|_| PasswordError::PoolClosed)?;
        let span = tracing::Span::current();
        let (done, result) = tokio::sync::oneshot::channel();
        self.threads.run(Box::new(move || {
            let out = span.in_scope(work);
            // The slot is free before the caller hears back.
            drop(permit);
            let _ = done.send(out);
        }))?;
        result.await.map_err(|_| PasswordError::Task)
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The threads password hashes run on: as many as hashes may run at once, started up front and
/// kept, at the lowest scheduling priority (nice 19), below the threads answering requests.
///
/// Why not tokio's blocking pool: each argon2id check takes 19 MiB, and spread over the blocking
/// pool's changing threads glibc kept a heap arena's worth on each (540 MB of RSS after a login
/// benchmark); a fixed few threads keep it to a few arenas. The lower priority keeps a login
/// flood from taking the CPU from token checks: `/hello/` latency stays put, and logins use
/// whatever CPU is left.
struct HashThreads {
    /// `None` when no thread could be started.
    jobs: Option<std::sync::mpsc::Sender<Job>>,
}

impl HashThreads {
    fn start(count: usize) -> HashThreads {
        let (sender, receiver) = std::sync::mpsc::channel::<Job>();
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        let mut started = 0;
        for n in 0..count {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("doorman-hash-{n}"))
                .spawn(move || {
                    // Best effort: an unprivileged thread may always lower its own priority.
                    let _ =
                        rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
                    loop {
                        let job = match receiver.lock() {
                            Ok(jobs) => jobs.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // A panicking hash fails its own request, not the thread.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::error!(error = %e, "could not start a password hashing thread"),
            }
        }
        HashThreads {
            jobs: (started > 0).then_some(sender),
        }
    }

    fn run(&self, job: Job) -> Result<(), PasswordError> {
        let sender = self.jobs.as_ref().ok_or(PasswordError::PoolClosed)?;
        sender.send(job).map_err(|_| PasswordError::PoolClosed)
    }
}

/// Checks a password against a stored hash, or against none (no such user), then makes the
/// work up to the same for every user: an argon2id verification with our parameters if the
/// hash asked for none, and PBKDF2 iterations up to `pbkdf2_floor` (as Django's
/// `harden_runtime` makes up a hash's missing iterations). So an unknown user, an unusable or
/// broken hash, an argon2id hash and a Django PBKDF2 hash all cost one argon2id verification
/// plus `pbkdf2_floor` PBKDF2 iterations, and an account's existence doesn't show in the
/// time its check takes. The outcome doesn't decide any of the work.
fn check_evenly(
    argon2: &Argon2<'_>,
    password: &[u8],
    stored: Option<&str>,
    pbkdf2_floor: u32,
    work: &mut Work,
) -> Verified {
    let verified = match stored {
        Some(stored) => check(argon2, password, stored, work),
        None => Verified::Mismatch,
    };
    if work.argon2.is_empty() {
        spend_dummy_work(argon2, password, work);
    }
    let missing = u64::from(pbkdf2_floor).saturating_sub(work.pbkdf2_iterations);
    if let Ok(missing @ 1..) = u32::try_from(missing) {
        spend_dummy_pbkdf2(password, missing, work);
    }
    verified
}

fn spend_dummy_pbkdf2(password: &[u8], iterations: u32, work: &mut Work) {
    work.pbkdf2_iterations += u64::from(iterations);
    let mut out = Zeroizing::new([0u8; DJANGO_PBKDF2_LEN]);
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, b"doorman-dummy-salt", iterations, &mut *out);
    // The result is never used; this keeps the compiler from skipping the work.
    std::hint::black_box(&*out);
}

/// The iteration count a stored Django `pbkdf2_sha256` hash asks for, the text of its
/// iteration field given; `None` when it is not one doorman would compute (those are refused
/// without PBKDF2 work).
pub fn pbkdf2_iterations(field: &str) -> Option<u32> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match field.parse::<u32>() {
        Ok(n @ 1..=MAX_PBKDF2_ITERATIONS) => Some(n),
        _ => None,
    }
}

/// The Django hash schemes a login can check, by the name Django writes before the first `$`
/// (doorman's own argon2id hashes are PHC strings, starting with `$`).
pub const DJANGO_SCHEMES: &[&str] = &["pbkdf2_sha256", "argon2"];

/// Whether a stored hash is one doorman can take as it is: one of its own, one of
/// [`DJANGO_SCHEMES`], or an unusable password (`!...`, which never logs in). An import skips
/// any other, with this reason.
pub fn recognized(stored: &str) -> Result<(), &'static str> {
    if stored.starts_with('$') || stored.starts_with('!') {
        return Ok(());
    }
    match stored.split_once('$') {
        Some((scheme, _)) if DJANGO_SCHEMES.contains(&scheme) => Ok(()),
        Some(_) => Err("unknown password hash scheme"),
        None => Err("not a password hash"),
    }
}

/// [`pbkdf2_iterations`] of a whole stored hash.
pub fn pbkdf2_iterations_of(stored: &str) -> Option<u32> {
    let rest = stored.strip_prefix("pbkdf2_sha256$")?;
    pbkdf2_iterations(rest.split('$').next()?)
}

/// The stored hash's format decides how it is checked. Refused hashes do no work here and are
/// a `Mismatch`.
fn check(argon2: &Argon2<'_>, password: &[u8], stored: &str, work: &mut Work) -> Verified {
    let verified = if let Some(rest) = stored.strip_prefix("pbkdf2_sha256$") {
        check_django_pbkdf2(password, rest, work)
    } else if let Some(phc) = stored.strip_prefix("argon2")
        && phc.starts_with('$')
    {
        // Django's Argon2PasswordHasher: its own prefix before argon2-cffi's PHC string. It
        // verifies as is, but is stored again in plain PHC form.
        check_argon2(argon2, password, phc, work).map(|verified| match verified {
            Verified::Match { .. } => Verified::Match { needs_rehash: true },
            Verified::Mismatch => Verified::Mismatch,
        })
    } else if stored.starts_with('$') {
        check_argon2(argon2, password, stored, work)
    } else if stored.starts_with('!') {
        Err("the user has an unusable password")
    } else {
        Err("the stored password hash has an unknown format")
    };
    verified.unwrap_or_else(|reason| {
        // Never the hash itself: a hash column that holds something unexpected may hold a
        // plaintext password.
        tracing::warn!(reason, "refused a stored password hash; the login fails");
        Verified::Mismatch
    })
}

fn spend_dummy_work(argon2: &Argon2<'_>, password: &[u8], work: &mut Work) {
    if let Ok(dummy) = PasswordHash::new(DUMMY_HASH) {
        work.argon2.push(cost(&OWASP_PARAMS));
        // The outcome is meaningless; only the time spent matters.
        let _ = argon2.verify_password(password, &dummy);
    }
}

/// An argon2 PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`). The parameters come
/// from the hash, so older or Django-made hashes verify; they are bounded before any work.
fn check_argon2(
    argon2: &Argon2<'_>,
    password: &[u8],
    stored: &str,
    work: &mut Work,
) -> Result<Verified, &'static str> {
    let hash = PasswordHash::new(stored).map_err(|_| "a stored argon2 hash is malformed")?;
    let algorithm = Algorithm::new(hash.algorithm.as_str())
        .map_err(|_| "a stored PHC hash is not an argon2 hash")?;
    let version = hash
        .version
        .map_or(Ok(Version::default()), Version::try_from)
        .map_err(|_| "a stored argon2 hash has an unknown version")?;
    let params =
        Params::try_from(&hash).map_err(|_| "a stored argon2 hash has invalid parameters")?;
    if params.m_cost() > MAX_ARGON2_M_COST
        || params.t_cost() > MAX_ARGON2_T_COST
        || params.p_cost() > MAX_ARGON2_P_COST
    {
        return Err("a stored argon2 hash asks for more work than doorman allows");
    }
    work.argon2.push(cost(&params));
    match argon2.verify_password(password, &hash) {
        Ok(()) => Ok(Verified::Match {
            needs_rehash: algorithm != Algorithm::Argon2id
                || version != Version::V0x13
                || !same_cost(&params, &OWASP_PARAMS),
        }),
        Err(password_hash::Error::PasswordInvalid) => Ok(Verified::Mismatch),
        Err(_) => {
            // It may have stopped before doing the work: not counted, so the dummy is spent.
            work.argon2.pop();
            Err("a stored argon2 hash could not be verified")
        }
    }
}

fn cost(params: &Params) -> (u32, u32, u32) {
    (params.m_cost(), params.t_cost(), params.p_cost())
}

/// Equal work and output length; Django's `must_update` likewise rehashes on any difference,
/// so hashes follow the configured cost both up and down.
fn same_cost(a: &Params, b: &Params) -> bool {
    a.m_cost() == b.m_cost()
        && a.t_cost() == b.t_cost()
        && a.p_cost() == b.p_cost()
        && a.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)
            == b.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)
}

/// Django's `PBKDF2PasswordHasher`, after its `pbkdf2_sha256$` prefix:
/// `<iterations>$<salt>$<base64 of the 32-byte PBKDF2-HMAC-SHA256>`, the salt used as its text.
fn check_django_pbkdf2(
    password: &[u8],
    rest: &str,
    work: &mut Work,
) -> Result<Verified, &'static str> {
    let mut parts = rest.splitn(3, '$');
    let (Some(iterations), Some(salt), Some(expected)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("a stored pbkdf2_sha256 hash has too few fields");
    };
    let Some(iterations) = pbkdf2_iterations(iterations) else {
        return Err("a stored pbkdf2_sha256 hash has a malformed or out-of-bounds iteration count");
    };
    if salt.is_empty() {
        return Err("a stored pbkdf2_sha256 hash has an empty salt");
    }
    let expected = STANDARD
        .decode(expected)
        .map_err(|_| "a stored pbkdf2_sha256 hash is not valid base64")?;
    if expected.len() != DJANGO_PBKDF2_LEN {
        return Err("a stored pbkdf2_sha256 hash has the wrong length");
    }
    let mut computed = Zeroizing::new([0u8; DJANGO_PBKDF2_LEN]);
    work.pbkdf2_iterations += u64::from(iterations);
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt.as_bytes(), iterations, &mut *computed);
    Ok(if bool::from(computed.ct_eq(&expected)) {
        Verified::Match { needs_rehash: true }
    } else {
        Verified::Mismatch
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use proptest::prelude::*;

    /// Hashes run on the hasher's own threads, niced below the request threads, and the same
    /// few threads every time (so argon2's memory stays in a few heap arenas).
    #[tokio::test]
    async fn hashes_run_on_a_few_low_priority_threads() {
        let hasher = PasswordHasher::new(2);
        let mut threads = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let (name, nice) = hasher
                .run(|| {
                    let me = rustix::thread::gettid();
                    (
                        std::thread::current().name().map(str::to_owned),
                        rustix::process::getpriority_process(Some(me)).unwrap(),
                    )
                })
                .await
                .unwrap();
            assert_eq!(nice, 19);
            threads.insert(name.unwrap());
        }
        assert!(threads.len() <= 2, "{threads:?}");
        assert!(threads.iter().all(|t| t.starts_with("doorman-hash-")));
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn ours() -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, OWASP_PARAMS)
    }

    /// A stored hash checked the way a login checks it.
    fn check(argon2: &Argon2<'_>, password: &[u8], stored: &str) -> Verified {
        check_evenly(argon2, password, Some(stored), 0, &mut Work::default())
    }

    /// Produced by Python, as Django's PBKDF2PasswordHasher does:
    /// `base64.b64encode(hashlib.pbkdf2_hmac('sha256', password, salt, iterations))`.
    const DJANGO_1000: &str =
        "pbkdf2_sha256$1000$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=";
    const DJANGO_UNICODE: &str =
        "pbkdf2_sha256$1000$k9Jd02LmZq8RtUvWx1Yz3a$5Z8DJ7YCybqP1dJo6nxO5YAaZ/YQi09SoR4f8sltKFA=";
    /// Django 5.2's default iteration count.
    const DJANGO_DEFAULT: &str =
        "pbkdf2_sha256$1000000$bR4nD0mSaltFromDjango1$XbRd8wot7RWLyImRl3OmVJbXt1OyRc8Fi7jbgrV1eTE=";

    #[tokio::test]
    async fn argon2_round_trip() {
        let hasher = PasswordHasher::new(2);
        let hash = hasher.hash(secret("correct horse")).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert_eq!(
            hasher
                .verify(secret("correct horse"), Some(hash.clone()))
                .await
                .unwrap(),
            Verified::Match {
                needs_rehash: false
            }
        );
        let again = hasher.hash(secret("correct horse")).await.unwrap();
        assert_ne!(hash, again, "every hash has its own salt");
    }

    #[tokio::test]
    async fn wrong_password_is_a_mismatch() {
        let hasher = PasswordHasher::new(1);
        let hash = hasher.hash(secret("correct horse")).await.unwrap();
        for wrong in ["correct horsf", "correct horse ", "", "Correct horse"] {
            assert_eq!(
                hasher
                    .verify(secret(wrong), Some(hash.clone()))
                    .await
                    .unwrap(),
                Verified::Mismatch,
                "{wrong:?}"
            );
        }
    }

    #[tokio::test]
    async fn django_hashes_verify_and_ask_for_a_rehash() {
        let hasher = PasswordHasher::new(1);
        for (password, stored) in [
            ("correct horse battery staple", DJANGO_1000),
            ("pässwörd-ünïcode", DJANGO_UNICODE),
        ] {
            assert_eq!(
                hasher
                    .verify(secret(password), Some(stored.into()))
                    .await
                    .unwrap(),
                Verified::Match { needs_rehash: true },
                "{stored}"
            );
            assert_eq!(
                hasher
                    .verify(secret("not it"), Some(stored.into()))
                    .await
                    .unwrap(),
                Verified::Mismatch
            );
        }
    }

    #[tokio::test]
    async fn django_default_iteration_count_verifies() {
        // Django 5.2's default of 1,000,000 rounds. How long that takes is the benchmark
        // harness's to measure (login rate against hash time), not a unit test's.
        let hasher = PasswordHasher::new(1);
        assert_eq!(
            hasher
                .verify(
                    secret("correct horse battery staple"),
                    Some(DJANGO_DEFAULT.into())
                )
                .await
                .unwrap(),
            Verified::Match { needs_rehash: true }
        );
    }

    #[tokio::test]
    async fn django_argon2_hashes_verify_and_ask_for_a_rehash() {
        // Django stores argon2-cffi's PHC string behind its own `argon2` prefix.
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 2, 2, None).unwrap(),
        )
        .hash_password(b"pw-123456")
        .unwrap()
        .to_string();
        let django = format!("argon2{weak}");
        let hasher = PasswordHasher::new(1);
        assert_eq!(
            hasher
                .verify(secret("pw-123456"), Some(django.clone()))
                .await
                .unwrap(),
            Verified::Match { needs_rehash: true }
        );
        assert_eq!(
            hasher
                .verify(secret("pw-1234567"), Some(django))
                .await
                .unwrap(),
            Verified::Mismatch
        );
    }

    #[tokio::test]
    async fn unknown_users_never_match() {
        let hasher = PasswordHasher::new(1);
        assert_eq!(
            hasher.verify(secret("anything"), None).await.unwrap(),
            Verified::Mismatch
        );
        // Not even with the dummy hash's own password, whatever it may be.
        assert_eq!(
            hasher.verify(secret(""), None).await.unwrap(),
            Verified::Mismatch
        );
    }

    #[test]
    fn the_dummy_hash_is_a_real_argon2id_hash_with_our_parameters() {
        let hash = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(hash.algorithm.as_str(), "argon2id");
        assert_eq!(hash.version, Some(0x13));
        let params = Params::try_from(&hash).unwrap();
        assert!(same_cost(&params, &OWASP_PARAMS));
        assert!(hash.salt.unwrap().len() >= 16);
        // It verifies all the way to the comparison, i.e. does the full work.
        assert!(matches!(
            ours().verify_password(b"x", &hash),
            Err(password_hash::Error::PasswordInvalid)
        ));
    }

    #[tokio::test]
    async fn overlong_passwords_are_refused() {
        let hasher = PasswordHasher::new(1);
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(
            hasher.hash(secret(&long)).await,
            Err(PasswordError::TooLong)
        ));
        let hash = hasher.hash(secret(&long[1..])).await.unwrap();
        assert_eq!(
            hasher.verify(secret(&long), Some(hash)).await.unwrap(),
            Verified::Mismatch
        );
    }

    #[test]
    fn malformed_and_refused_hashes_are_mismatches() {
        let argon2 = ours();
        for stored in [
            "pbkdf2_sha256$abc$x$y",
            "pbkdf2_sha256$1000$salt",
            "pbkdf2_sha256$1000",
            "pbkdf2_sha256$",
            "pbkdf2_sha256$1000$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=$extra",
            "pbkdf2_sha256$0$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=",
            "pbkdf2_sha256$10000001$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=",
            "pbkdf2_sha256$99999999999$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=",
            "pbkdf2_sha256$+1000$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=",
            "pbkdf2_sha256$-1$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=",
            "pbkdf2_sha256$1000$Xq3ZrN8b1VvY0kPzQe7hLm$!!!",
            "pbkdf2_sha256$1000$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s",
            "pbkdf2_sha256$1000$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa",
            "pbkdf2_sha256$1000$$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=",
            "!unusable-django-password",
            "!",
            "md5$salt$abc",
            "pbkdf2_sha1$1000$salt$abc",
            "correct horse battery staple",
            "",
            "$",
            "$$$$",
            "$argon2id$",
            "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=99$m=19456,t=2,p=1$ZG9vcm1hbi11bmtub3duLXVzZXI$bTKHJHkZnlcF9KEjcdNlRvTDgs8qix6ewfeIrPgF6EM",
            "$argon2id$v=19$m=4194304,t=2,p=1$ZG9vcm1hbi11bmtub3duLXVzZXI$bTKHJHkZnlcF9KEjcdNlRvTDgs8qix6ewfeIrPgF6EM",
            "$argon2id$v=19$m=19456,t=1000000,p=1$ZG9vcm1hbi11bmtub3duLXVzZXI$bTKHJHkZnlcF9KEjcdNlRvTDgs8qix6ewfeIrPgF6EM",
            "$argon2id$v=19$m=19456,t=2,p=255$ZG9vcm1hbi11bmtub3duLXVzZXI$bTKHJHkZnlcF9KEjcdNlRvTDgs8qix6ewfeIrPgF6EM",
            "argon2$bcrypt$whatever",
        ] {
            let started = Instant::now();
            assert_eq!(
                check(&argon2, b"correct horse battery staple", stored),
                Verified::Mismatch,
                "{stored}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{stored} took {:?}",
                started.elapsed()
            );
        }
    }

    /// Whatever is stored, a check does one argon2id verification with our parameters and
    /// the floor's PBKDF2 iterations: the hash's own work, made up with dummy work.
    #[test]
    fn every_stored_hash_costs_the_same_work() {
        let argon2 = ours();
        let ours_hash = argon2.hash_password(b"pw-123456").unwrap().to_string();
        let stored = [
            None,
            Some(ours_hash.as_str()),
            Some(DJANGO_1000),
            Some("pbkdf2_sha256$600$saltsalt$7yXn0aC1wCLgIKkZTFxSjbYZX5zqwSInAQugDf3LJf8="),
            Some(
                "pbkdf2_sha256$99999999999$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=",
            ),
            Some("pbkdf2_sha256$1000$$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s="),
            Some("!unusable"),
            Some("md5$salt$abc"),
            Some("$argon2id$"),
        ];
        // The floor is at least the iterations of any stored hash (the store's and each
        // login's own), so 1000 here is the least it can be with DJANGO_1000 stored.
        for floor in [1000, 4000] {
            for password in [&b"pw-123456"[..], b"correct horse battery staple", b"wrong"] {
                for hash in stored {
                    let mut work = Work::default();
                    check_evenly(&argon2, password, hash, floor, &mut work);
                    assert_eq!(
                        work,
                        Work::new(&[cost(&OWASP_PARAMS)], u64::from(floor)),
                        "{hash:?} at floor {floor}"
                    );
                }
            }
        }
        // Without Django hashes the floor is 0: one argon2id verification, nothing more.
        for hash in [None, Some(ours_hash.as_str()), Some("!unusable")] {
            let mut work = Work::default();
            check_evenly(&argon2, b"x", hash, 0, &mut work);
            assert_eq!(work, Work::new(&[cost(&OWASP_PARAMS)], 0), "{hash:?}");
        }
        // A hash asking for more than the floor does its own iterations, no fewer.
        let mut work = Work::default();
        check_evenly(&argon2, b"x", Some(DJANGO_1000), 600, &mut work);
        assert_eq!(work, Work::new(&[cost(&OWASP_PARAMS)], 1000));
    }

    #[test]
    fn pbkdf2_iteration_counts_are_read_as_the_check_reads_them() {
        assert_eq!(pbkdf2_iterations_of(DJANGO_DEFAULT), Some(1_000_000));
        assert_eq!(pbkdf2_iterations_of(DJANGO_1000), Some(1000));
        for refused in [
            "pbkdf2_sha256$0$s$h",
            "pbkdf2_sha256$+1$s$h",
            "pbkdf2_sha256$10000001$s$h",
            "pbkdf2_sha256$$s$h",
            "pbkdf2_sha1$1000$s$h",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        ] {
            assert_eq!(pbkdf2_iterations_of(refused), None, "{refused}");
        }
    }

    #[test]
    fn other_argon2_settings_ask_for_a_rehash() {
        let argon2 = ours();
        for (algorithm, version, params) in [
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(1024, 1, 1, None),
            ),
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(65536, 3, 1, None),
            ),
            (
                Algorithm::Argon2i,
                Version::V0x13,
                Params::new(19_456, 2, 1, None),
            ),
            (
                Algorithm::Argon2id,
                Version::V0x10,
                Params::new(19_456, 2, 1, None),
            ),
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(19_456, 2, 1, Some(64)),
            ),
        ] {
            let hash = Argon2::new(algorithm, version, params.unwrap())
                .hash_password(b"pw-123456")
                .unwrap()
                .to_string();
            assert_eq!(
                check(&argon2, b"pw-123456", &hash),
                Verified::Match { needs_rehash: true },
                "{hash}"
            );
            assert_eq!(check(&argon2, b"pw-1234567", &hash), Verified::Mismatch);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrency_is_bounded_by_the_permits() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hasher = PasswordHasher::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (hasher, running, most) = (hasher.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                hasher
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(hasher.permits.available_permits(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn verify_never_panics(stored in ".{0,120}", password in ".{0,40}") {
            let argon2 = ours();
            let _ = check(&argon2, password.as_bytes(), &stored);
            let _ = check(&argon2, password.as_bytes(), &format!("pbkdf2_sha256${stored}"));
            let _ = check(&argon2, password.as_bytes(), &format!("$argon2id${stored}"));
        }

        #[test]
        fn pbkdf2_fields_never_panic(
            iterations in "[0-9]{0,12}",
            salt in "[^$]{0,30}",
            hash in "[A-Za-z0-9+/=]{0,50}",
        ) {
            // Iterations are kept small here only so the test stays fast.
            let iterations = iterations
                .parse::<u64>()
                .map_or(iterations.clone(), |n| (n % 2000).to_string());
            let stored = format!("pbkdf2_sha256${iterations}${salt}${hash}");
            prop_assert_eq!(check(&ours(), b"pw", &stored), Verified::Mismatch);
        }
    }
}
