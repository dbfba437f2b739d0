//! Password hashing: argon2id with OWASP's parameters for new hashes, and every hash Django's
//! default `PASSWORD_HASHERS` writes accepted, so that a Django user table moves over as it
//! is: `pbkdf2_sha256`, `pbkdf2_sha1`, `argon2` (argon2id, and the argon2i of older Django),
//! `bcrypt_sha256`, `bcrypt` and `scrypt`, plus salted `md5` when the operator allows it. Each
//! such hash is upgraded to argon2id on its next login. The CPU work runs on a few threads of
//! its own behind a semaphore, so a login storm queues here instead of starving token
//! verification on the async workers.

mod django;
mod memory;
mod verified;
mod work;

use std::sync::Arc;

use argon2::password_hash::{
    self,
    phc::{Output, PasswordHash},
};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use memory::{argon2_into, keep_argon2_memory};

pub use django::{MAX_BCRYPT_COST, MAX_PBKDF2_ITERATIONS, MAX_SCRYPT_BLOCKS, MAX_SCRYPT_MEMORY};
pub use verified::Verified;
pub use work::Cost;

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

/// Verified against for unknown users (and for hashes that did no argon2 work), so that they
/// cost what a wrong password costs. A real argon2id hash with `OWASP_PARAMS`, of a password
/// nobody knows.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZG9vcm1hbi11bmtub3duLXVzZXI$bTKHJHkZnlcF9KEjcdNlRvTDgs8qix6ewfeIrPgF6EM";

/// Stored hashes come from our own table, but a Django import can bring anything: beyond
/// these bounds an argon2 hash is refused rather than allowed to pin a core or allocate
/// gigabytes (the other schemes' bounds are in `django`). Django's default (m=102400, t=2,
/// p=8) sits well inside.
const MAX_ARGON2_M_COST: u32 = 262_144;
const MAX_ARGON2_T_COST: u32 = 16;
const MAX_ARGON2_P_COST: u32 = 16;

/// The Django hash schemes a login checks, by the name Django writes before the first `$`
/// (doorman's own argon2id hashes are PHC strings, starting with `$`).
pub const DJANGO_SCHEMES: &[&str] = &[
    "pbkdf2_sha256",
    "pbkdf2_sha1",
    "argon2",
    "bcrypt_sha256",
    "bcrypt",
    "scrypt",
];

/// Django schemes checked only when `accept_md5_password_hashes` is on (`docs/security.md`
/// says why). Only the salted one: Django 5.1 dropped its unsalted MD5 and SHA-1 hashers, so
/// no current Django logs those in either.
pub const DJANGO_MD5_SCHEMES: &[&str] = &["md5"];

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
    verifier: Verifier,
    /// Hashes waiting for a slot, and where to report it.
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    metrics: Option<crate::metrics::Metrics>,
    /// The work every check spends at least (see [`PasswordHasher::verify`]).
    floor: Arc<std::sync::Mutex<Cost>>,
    /// The work each check did, for tests that compare it across users.
    #[cfg(test)]
    work_log: Arc<std::sync::Mutex<Vec<Cost>>>,
}

/// What a check needs besides the password and the hash.
#[derive(Clone)]
struct Verifier {
    argon2: Argon2<'static>,
    /// Salted MD5 hashes are checked (and upgraded) rather than refused.
    accept_md5: bool,
}

impl PasswordHasher {
    /// At most `max_concurrent` hashes run at once (e.g. the number of cores); 0 counts as 1.
    pub fn new(max_concurrent: usize) -> PasswordHasher {
        let permits = max_concurrent.clamp(1, 1024);
        PasswordHasher {
            permits: Arc::new(Semaphore::new(permits)),
            threads: Arc::new(HashThreads::start(permits)),
            verifier: Verifier {
                argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, OWASP_PARAMS),
                accept_md5: false,
            },
            waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            metrics: None,
            floor: Arc::new(std::sync::Mutex::new(Cost::of_dummy())),
            #[cfg(test)]
            work_log: Arc::default(),
        }
    }

    /// Reports the queue depth and each hash's wait for a slot.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> PasswordHasher {
        self.metrics = Some(metrics);
        self
    }

    /// Checks Django's salted MD5 hashes (`md5$...`) instead of refusing them.
    pub fn with_md5(mut self, accept: bool) -> PasswordHasher {
        self.verifier.accept_md5 = accept;
        self
    }

    /// Whether a stored hash is one a login here checks (see [`recognized_with`]).
    pub fn recognizes(&self, stored: &str) -> Result<(), &'static str> {
        recognized_with(stored, self.verifier.accept_md5)
    }

    /// Every check from now on spends at least `floor`: the most work any stored hash asks
    /// for, of each kind (never less than the dummy argon2id verification).
    pub fn set_floor(&self, floor: Cost) {
        *self.lock_floor() = floor.max(Cost::of_dummy());
    }

    /// Raises the floor to `cost` where it is lower (a stored hash asking for more than the
    /// floor knew of).
    pub fn raise_floor(&self, cost: Cost) {
        let mut floor = self.lock_floor();
        *floor = floor.max(cost);
    }

    fn lock_floor(&self) -> std::sync::MutexGuard<'_, Cost> {
        self.floor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new argon2id PHC string for the password, with a random salt.
    pub async fn hash(&self, password: SecretString) -> Result<String, PasswordError> {
        if password.expose_secret().len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::TooLong);
        }
        let argon2 = self.verifier.argon2.clone();
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
    /// the floor's work of each kind, dummy work making up whatever the hash itself didn't
    /// ask for. Hashes that are unusable, malformed or of an unknown kind are a `Mismatch`,
    /// never an error: they are the stored data's problem, not the caller's.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<Verified, PasswordError> {
        if password.expose_secret().len() > MAX_PASSWORD_BYTES {
            return Ok(Verified::Mismatch);
        }
        let verifier = self.verifier.clone();
        let floor = *self.lock_floor();
        #[cfg(test)]
        let work_log = self.work_log.clone();
        self.run(move || {
            let mut work = Cost::default();
            let verified = check_evenly(
                &verifier,
                password.expose_secret().as_bytes(),
                stored.as_deref(),
                &floor,
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
    pub(crate) fn take_work(&self) -> Vec<Cost> {
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
                    keep_argon2_memory();
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
/// work up to the floor: the dummy argon2id verification if the hash asked for no argon2
/// work, then dummy work of each kind up to what the most demanding stored hash of that kind
/// asks for (as Django's `harden_runtime` makes up a hash's missing iterations). So an
/// unknown user, an unusable or broken hash, doorman's own hash and every Django hash cost
/// the floor's work, and an account's existence, or the kind of its hash, doesn't show in the
/// time its check takes. The outcome doesn't decide any of the work.
fn check_evenly(
    verifier: &Verifier,
    password: &[u8],
    stored: Option<&str>,
    floor: &Cost,
    work: &mut Cost,
) -> Verified {
    let verified = match stored {
        Some(stored) => check(verifier, password, stored, work),
        None => Verified::Mismatch,
    };
    if work.argon2 == 0 {
        spend_dummy_work(password, work);
    }
    work::make_up(password, floor, work);
    verified
}

impl Cost {
    /// The work a check of `stored` does before any is made up: the argon2 verification it
    /// asks for (the dummy one if none) and its Django scheme's work. It reads only the
    /// parameter fields, so the store can hand over hashes without their salts and digests
    /// (`argon2$argon2id$v=19$m=102400,t=2,p=8`, `bcrypt$$2b$12`, `scrypt$16384$$8$5`).
    pub fn of(stored: &str) -> Cost {
        let argon2_phc = if stored.starts_with('$') {
            Some(stored)
        } else {
            stored
                .strip_prefix("argon2")
                .filter(|phc| phc.starts_with('$'))
        };
        let mut cost = match (argon2_phc, stored.split_once('$')) {
            (Some(phc), _) => Cost {
                argon2: argon2_params(phc).map_or(0, |(_, _, params)| work::argon2_blocks(&params)),
                ..Cost::default()
            },
            (None, Some((scheme, rest))) => django::cost(scheme, rest),
            (None, None) => Cost::default(),
        };
        if cost.argon2 == 0 {
            cost.argon2 = Cost::of_dummy().argon2;
        }
        cost
    }

    /// The dummy argon2id verification's work: what every check spends at least.
    fn of_dummy() -> Cost {
        Cost {
            argon2: work::argon2_blocks(&OWASP_PARAMS),
            ..Cost::default()
        }
    }
}

/// Whether a stored hash is one doorman can take as it is with MD5 hashes refused (the
/// default): one of its own, one of [`DJANGO_SCHEMES`], or an unusable password (`!...`,
/// which never logs in). An import skips any other, with this reason.
pub fn recognized(stored: &str) -> Result<(), &'static str> {
    recognized_with(stored, false)
}

/// [`recognized`], with [`DJANGO_MD5_SCHEMES`] accepted when `accept_md5` (the
/// `accept_md5_password_hashes` setting).
pub fn recognized_with(stored: &str, accept_md5: bool) -> Result<(), &'static str> {
    if stored.starts_with('$') || stored.starts_with('!') {
        return Ok(());
    }
    match stored.split_once('$') {
        Some((scheme, _)) if DJANGO_SCHEMES.contains(&scheme) => Ok(()),
        Some((scheme, _)) if DJANGO_MD5_SCHEMES.contains(&scheme) => match accept_md5 {
            true => Ok(()),
            false => Err("MD5 password hash refused (accept_md5_password_hashes is off)"),
        },
        Some(_) => Err("unknown password hash scheme"),
        None => Err("not a password hash"),
    }
}

/// The stored hash's format decides how it is checked. Refused hashes do no work here and are
/// a `Mismatch`.
fn check(verifier: &Verifier, password: &[u8], stored: &str, work: &mut Cost) -> Verified {
    let verified = if stored.starts_with('!') {
        Err("the user has an unusable password")
    } else if stored.starts_with('$') {
        check_argon2(password, stored, work)
    } else if let Some(phc) = stored.strip_prefix("argon2")
        && phc.starts_with('$')
    {
        // Django's Argon2PasswordHasher: its own prefix before argon2-cffi's PHC string. It
        // verifies as is, but is stored again in plain PHC form.
        check_argon2(password, phc, work).map(|verified| match verified {
            Verified::Match { .. } => Verified::Match { needs_rehash: true },
            Verified::Mismatch => Verified::Mismatch,
        })
    } else if let Some((scheme, rest)) = stored.split_once('$') {
        django::check(scheme, rest, password, verifier.accept_md5, work)
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

fn spend_dummy_work(password: &[u8], work: &mut Cost) {
    if let Ok(dummy) = PasswordHash::new(DUMMY_HASH) {
        work.argon2 += work::argon2_blocks(&OWASP_PARAMS);
        // The outcome is meaningless; only the time spent matters.
        let _ = argon2_matches(password, &dummy);
    }
}

/// Whether `password` hashes to `hash`'s output with `hash`'s salt, algorithm, version and
/// parameters, as argon2's `verify_password` does it but in the kept memory; the outputs are
/// compared in constant time. An error when the hash can't be checked.
fn argon2_matches(password: &[u8], hash: &PasswordHash) -> Result<bool, ()> {
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return Err(());
    };
    let algorithm = Algorithm::new(hash.algorithm.as_str()).map_err(|_| ())?;
    let version = hash
        .version
        .map_or(Ok(Version::default()), Version::try_from)
        .map_err(|_| ())?;
    let params = Params::try_from(hash).map_err(|_| ())?;
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = zeroize::Zeroizing::new([0u8; Output::MAX_LENGTH]);
    let out = out.get_mut(..expected.len()).ok_or(())?;
    argon2_into(&argon2, password, salt, out).map_err(|_| ())?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(out).map_err(|_| ())? == *expected)
}

/// An argon2 PHC string's algorithm, version and parameters, bounded. A string without a
/// version is argon2 1.0 (`v=16`), as libargon2 reads it: argon2-cffi wrote them so before
/// 2016.
fn argon2_params(stored: &str) -> Result<(Algorithm, Version, Params), &'static str> {
    let hash = PasswordHash::new(stored).map_err(|_| "a stored argon2 hash is malformed")?;
    let algorithm = Algorithm::new(hash.algorithm.as_str())
        .map_err(|_| "a stored PHC hash is not an argon2 hash")?;
    let version = hash
        .version
        .map_or(Ok(Version::V0x10), Version::try_from)
        .map_err(|_| "a stored argon2 hash has an unknown version")?;
    let params =
        Params::try_from(&hash).map_err(|_| "a stored argon2 hash has invalid parameters")?;
    if params.m_cost() > MAX_ARGON2_M_COST
        || params.t_cost() > MAX_ARGON2_T_COST
        || params.p_cost() > MAX_ARGON2_P_COST
    {
        return Err("a stored argon2 hash asks for more work than doorman allows");
    }
    Ok((algorithm, version, params))
}

/// An argon2 PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`). The parameters come
/// from the hash, so older or Django-made hashes verify; they are bounded before any work.
fn check_argon2(password: &[u8], stored: &str, work: &mut Cost) -> Result<Verified, &'static str> {
    let (algorithm, version, params) = argon2_params(stored)?;
    let mut hash = PasswordHash::new(stored).map_err(|_| "a stored argon2 hash is malformed")?;
    hash.version = Some(version.into());
    let blocks = work::argon2_blocks(&params);
    work.argon2 += blocks;
    match argon2_matches(password, &hash) {
        Ok(true) => Ok(Verified::Match {
            needs_rehash: algorithm != Algorithm::Argon2id
                || version != Version::V0x13
                || !same_cost(&params, &OWASP_PARAMS),
        }),
        Ok(false) => Ok(Verified::Mismatch),
        Err(_) => {
            // It may have stopped before doing the work: not counted, so the dummy is spent.
            work.argon2 -= blocks;
            Err("a stored argon2 hash could not be verified")
        }
    }
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

    fn ours() -> Verifier {
        Verifier {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, OWASP_PARAMS),
            accept_md5: false,
        }
    }

    /// A stored hash checked the way a login checks it, with no floor beyond the dummy.
    fn check(verifier: &Verifier, password: &[u8], stored: &str) -> Verified {
        check_evenly(
            verifier,
            password,
            Some(stored),
            &Cost::of_dummy(),
            &mut Cost::default(),
        )
    }

    /// The work a check of `stored` does at `floor`.
    fn work_at(floor: &Cost, password: &[u8], stored: Option<&str>) -> Cost {
        let mut work = Cost::default();
        check_evenly(&ours(), password, stored, floor, &mut work);
        work
    }

    const DUMMY_BLOCKS: u64 = 19_456 * 2;

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
        assert_eq!(argon2_matches(b"x", &hash), Ok(false));
    }

    /// The hash threads' kept memory holds the last run's blocks: every check on it must
    /// still agree with argon2's own verification on fresh memory, whatever ran before it,
    /// including runs of other sizes, and only doorman's own size is kept.
    #[test]
    fn the_kept_memory_fits_our_own_parameters() {
        assert_eq!(memory::KEPT_BLOCKS, OWASP_PARAMS.block_count());
    }

    #[test]
    fn checks_in_kept_memory_agree_with_fresh_memory() {
        std::thread::spawn(|| {
            keep_argon2_memory();
            let small = Params::new(64, 1, 1, None).unwrap();
            let big = Params::new(OWASP_PARAMS.m_cost() * 2, 1, 1, None).unwrap();
            let kinds = [
                (Algorithm::Argon2id, Version::V0x13, OWASP_PARAMS),
                (Algorithm::Argon2i, Version::V0x10, small.clone()),
                (Algorithm::Argon2d, Version::V0x13, big),
                (Algorithm::Argon2id, Version::V0x13, small),
            ];
            for (round, (algorithm, version, params)) in
                kinds.into_iter().cycle().take(8).enumerate()
            {
                let password = format!("password {round}");
                let fresh = Argon2::new(algorithm, version, params.clone());
                let stored = fresh.hash_password(password.as_bytes()).unwrap();
                assert_eq!(
                    argon2_matches(password.as_bytes(), &stored),
                    Ok(true),
                    "round {round}"
                );
                assert_eq!(
                    argon2_matches(b"wrong", &stored),
                    Ok(false),
                    "round {round}"
                );
                let kept = memory::ARGON2_MEMORY.with_borrow(|m| m.as_ref().map(Vec::len));
                assert_eq!(kept, Some(OWASP_PARAMS.block_count()), "round {round}");
            }
        })
        .join()
        .unwrap();
        // Other threads keep nothing.
        let stored = ours().argon2.hash_password(b"elsewhere").unwrap();
        assert_eq!(argon2_matches(b"elsewhere", &stored), Ok(true));
        assert!(memory::ARGON2_MEMORY.with_borrow(Option::is_none));
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

    /// Made by Django 5.2's own hashers (`make_password` with each hasher class, its cost
    /// lowered in a subclass so the tests stay fast; argon2-cffi 25.1, bcrypt 4.3).
    mod made_by_django {
        pub const PASSWORD: &str = "correct horse battery staple";
        pub const UNICODE: &str = "pässwörd-ünïcode";
        /// 84 bytes: 40 two-byte `ł` and "tail"; bcrypt reads the first 72 (36 `ł`).
        pub const LONG: &str = "łłłłłłłłłłłłłłłłłłłłłłłłłłłłłłłłłłłłłłłłtail";
        pub const SHA1: &str =
            "pbkdf2_sha1$1000$5tGo3wbPnDRBQzI4XxW8bA$APpHeJnMDdVAYHWdWOuB6/jM0Og=";
        pub const SHA1_UNICODE: &str =
            "pbkdf2_sha1$1000$FhcrA2F1xbs1HsBhVio55r$mqQT8jjFoX5tsckWO9daKp4VqUE=";
        pub const BCRYPT_SHA256: &str =
            "bcrypt_sha256$$2b$04$Gk0TEIzk.wb5rCMQTunrGOfpI07Fq1/Nr3ueLB1D/dcqHNId8/Wmm";
        pub const BCRYPT_SHA256_LONG: &str =
            "bcrypt_sha256$$2b$04$DxyYwRtl0pyUgztct6WJh.3mu8iE.TTYCBj5n44QQeGUFFerdMS0S";
        pub const BCRYPT: &str =
            "bcrypt$$2b$04$RWwgqabsYwibFQqsUG0R1.qFabGGJziIprB/QG3NF2tcG.bOwXujC";
        pub const BCRYPT_LONG: &str =
            "bcrypt$$2b$04$ow.VjcLKmoztcerurFF0b.Gi8qGlSbrbfdPh1sPHrWIqdiM5xxR1W";
        /// N = 1024, r = 8, p = 2.
        pub const SCRYPT: &str = "scrypt$1024$tUhSKLKWZfDq1W9qpm67Fj$8$2$4eaNMBlPk8r6MeHBipZpaeqyaLfghSDzl1Ds8iwAzS1rqdQonFefDdZbwhA7khBiLeZ8gxljiK0lRsphiLLclA==";
        pub const SCRYPT_UNICODE: &str = "scrypt$1024$7BvXViTzCGL28JBqv0ANO8$8$2$j3ONirb6efjVY+oiM/o4ekAdiCuDelV2AZpUnixWlJac5W1P8xU5knesH+/VZx6SjRpA4TFVe4MFiFO6bzeSpw==";
        pub const MD5: &str = "md5$8chrozZwdwg0NpJ1E2Wu5j$79c2fe63d56cf6659a0e4775f76d70ef";
        /// Argon2PasswordHasher with argon2i, as Django made them before 2.1.
        pub const ARGON2I: &str = "argon2$argon2i$v=19$m=1024,t=2,p=2$YzZ2eVh2cG9XVjZwVTJNdHkxaUFKZg$6M/v5nbKDjicQA9RtnepWVX8C4gnu5x9pMLRR7dPMAs";
        /// argon2 1.0 (v=16), as argon2-cffi wrote it for Django 1.10; Django 5.2 checks it.
        pub const ARGON2_V16: &str =
            "argon2$argon2i$v=16$m=512,t=2,p=2$c2FsdHNhbHRzYWx0$FjGF3joJRdHT2J75XxhkCw";
        /// The same without its version field, as the first argon2-cffi wrote it.
        pub const ARGON2_NO_VERSION: &str =
            "argon2$argon2i$m=512,t=2,p=2$c2FsdHNhbHRzYWx0$FjGF3joJRdHT2J75XxhkCw";
    }

    #[test]
    fn every_django_scheme_verifies_and_asks_for_a_rehash() {
        use made_by_django::*;
        let mut md5 = ours();
        md5.accept_md5 = true;
        let verifier = ours();
        let bcrypt_prefix = "ł".repeat(36);
        for (password, stored, wrong) in [
            (PASSWORD, SHA1, "correct horse battery stapl"),
            (UNICODE, SHA1_UNICODE, "pässwörd-ünïcodE"),
            (PASSWORD, BCRYPT_SHA256, "correct horse battery staple "),
            (LONG, BCRYPT_SHA256_LONG, bcrypt_prefix.as_str()),
            (PASSWORD, BCRYPT, "correct horse battery stapl"),
            (PASSWORD, SCRYPT, "Correct horse battery staple"),
            (UNICODE, SCRYPT_UNICODE, "passwörd-ünïcode"),
            (PASSWORD, ARGON2I, "x"),
            (PASSWORD, ARGON2_V16, "x"),
            (PASSWORD, ARGON2_NO_VERSION, "x"),
        ] {
            assert_eq!(
                check(&verifier, password.as_bytes(), stored),
                Verified::Match { needs_rehash: true },
                "{stored}"
            );
            assert_eq!(
                check(&verifier, wrong.as_bytes(), stored),
                Verified::Mismatch,
                "{stored} with {wrong:?}"
            );
        }
        // bcrypt without the SHA-256 reads the first 72 bytes only, as Django did with it.
        for password in [
            LONG.to_owned(),
            format!("{bcrypt_prefix}other tail"),
            bcrypt_prefix.clone(),
        ] {
            assert_eq!(
                check(&verifier, password.as_bytes(), BCRYPT_LONG),
                Verified::Match { needs_rehash: true },
                "{password}"
            );
        }
        assert_eq!(
            check(&verifier, "ł".repeat(35).as_bytes(), BCRYPT_LONG),
            Verified::Mismatch
        );
        // MD5 only when allowed.
        assert_eq!(
            check(&verifier, PASSWORD.as_bytes(), MD5),
            Verified::Mismatch
        );
        assert_eq!(
            check(&md5, PASSWORD.as_bytes(), MD5),
            Verified::Match { needs_rehash: true }
        );
        assert_eq!(check(&md5, b"correct horse", MD5), Verified::Mismatch);
    }

    #[test]
    fn malformed_and_refused_hashes_are_mismatches() {
        let mut verifier = ours();
        verifier.accept_md5 = true;
        for stored in [
            "pbkdf2_sha256$abc$x$y",
            "pbkdf2_sha256$1000$salt",
            "pbkdf2_sha256$1000",
            "pbkdf2_sha256$",
            "pbkdf2_sha256$1000$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=$extra",
            "pbkdf2_sha256$0$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=",
            "pbkdf2_sha256$01000$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=",
            "pbkdf2_sha256$10000001$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=",
            "pbkdf2_sha256$99999999999$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=",
            "pbkdf2_sha256$+1000$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=",
            "pbkdf2_sha256$-1$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=",
            "pbkdf2_sha256$1000$Xq3ZrN8b1VvY0kPzQe7hLm$!!!",
            "pbkdf2_sha256$1000$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s",
            "pbkdf2_sha256$1000$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa",
            "pbkdf2_sha256$1000$$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=",
            // A SHA-256-sized digest under the SHA-1 name, and the other way round.
            "pbkdf2_sha1$1000$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=",
            "pbkdf2_sha256$1000$5tGo3wbPnDRBQzI4XxW8bA$APpHeJnMDdVAYHWdWOuB6/jM0Og=",
            "pbkdf2_sha1$1000$salt$abc",
            "pbkdf2_sha1$10000001$5tGo3wbPnDRBQzI4XxW8bA$APpHeJnMDdVAYHWdWOuB6/jM0Og=",
            "pbkdf2_sha1$1000$5tGo3wbPnDRBQzI4XxW8bA",
            // bcrypt: too costly, too cheap, malformed, cut short, not ASCII.
            "bcrypt$$2b$17$RWwgqabsYwibFQqsUG0R1.qFabGGJziIprB/QG3NF2tcG.bOwXujC",
            "bcrypt$$2b$31$RWwgqabsYwibFQqsUG0R1.qFabGGJziIprB/QG3NF2tcG.bOwXujC",
            "bcrypt$$2b$03$RWwgqabsYwibFQqsUG0R1.qFabGGJziIprB/QG3NF2tcG.bOwXujC",
            "bcrypt$$2b$4$RWwgqabsYwibFQqsUG0R1.qFabGGJziIprB/QG3NF2tcG.bOwXujCx",
            "bcrypt$$2b$+4$RWwgqabsYwibFQqsUG0R1.qFabGGJziIprB/QG3NF2tcG.bOwXujC",
            "bcrypt$$2z$04$RWwgqabsYwibFQqsUG0R1.qFabGGJziIprB/QG3NF2tcG.bOwXujC",
            "bcrypt$$2b$04$RWwgqabsYwibFQqsUG0R1.qFabGGJziIprB/QG3NF2tcG.bOwXuj",
            "bcrypt$$2b$04$RWwgqabsYwibFQqsUG0R1.qFabGGJziIprB/QG3NF2tcG.bOwXujCC",
            "bcrypt$$2b$04$RWwgqabsYwibFQqsUG0R1.qFabGGJziIprB/QG3NF2tcG.bOwXuéC",
            "bcrypt$$2b$04$RWwgqabsYwibFQqsUG0R1!qFabGGJziIprB/QG3NF2tcG.bOwXujC",
            "bcrypt$2b$04$RWwgqabsYwibFQqsUG0R1.qFabGGJziIprB/QG3NF2tcG.bOwXujC",
            "bcrypt$$2b$04$",
            "bcrypt$$",
            "bcrypt_sha256$$2b$99$Gk0TEIzk.wb5rCMQTunrGOfpI07Fq1/Nr3ueLB1D/dcqHNId8/Wmm",
            "bcrypt_sha256$2b$04$Gk0TEIzk.wb5rCMQTunrGOfpI07Fq1/Nr3ueLB1D/dcqHNId8/Wmm",
            // scrypt: bounds, fields out of order or missing, N not a power of two.
            "scrypt$1048576$tUhSKLKWZfDq1W9qpm67Fj$8$2$4eaNMBlPk8r6MeHBipZpaeqyaLfghSDzl1Ds8iwAzS1rqdQonFefDdZbwhA7khBiLeZ8gxljiK0lRsphiLLclA==",
            "scrypt$1024$tUhSKLKWZfDq1W9qpm67Fj$8$2000$4eaNMBlPk8r6MeHBipZpaeqyaLfghSDzl1Ds8iwAzS1rqdQonFefDdZbwhA7khBiLeZ8gxljiK0lRsphiLLclA==",
            "scrypt$1024$tUhSKLKWZfDq1W9qpm67Fj$4294967295$4294967295$4eaNMBlPk8r6MeHBipZpaeqyaLfghSDzl1Ds8iwAzS1rqdQonFefDdZbwhA7khBiLeZ8gxljiK0lRsphiLLclA==",
            "scrypt$1000$tUhSKLKWZfDq1W9qpm67Fj$8$2$4eaNMBlPk8r6MeHBipZpaeqyaLfghSDzl1Ds8iwAzS1rqdQonFefDdZbwhA7khBiLeZ8gxljiK0lRsphiLLclA==",
            "scrypt$1$tUhSKLKWZfDq1W9qpm67Fj$8$2$4eaNMBlPk8r6MeHBipZpaeqyaLfghSDzl1Ds8iwAzS1rqdQonFefDdZbwhA7khBiLeZ8gxljiK0lRsphiLLclA==",
            "scrypt$1024$tUhSKLKWZfDq1W9qpm67Fj$0$2$4eaNMBlPk8r6MeHBipZpaeqyaLfghSDzl1Ds8iwAzS1rqdQonFefDdZbwhA7khBiLeZ8gxljiK0lRsphiLLclA==",
            "scrypt$1024$8$2$tUhSKLKWZfDq1W9qpm67Fj$4eaNMBlPk8r6MeHBipZpaeqyaLfghSDzl1Ds8iwAzS1rqdQonFefDdZbwhA7khBiLeZ8gxljiK0lRsphiLLclA==",
            "scrypt$1024$tUhSKLKWZfDq1W9qpm67Fj$8$2",
            "scrypt$1024$tUhSKLKWZfDq1W9qpm67Fj$8$2$4eaNMBlPk8r6MeHBipZpaeqyaLfghSDzl1Ds8iwAzS1rqdQonFefDdZbwhA7khBiLeZ8gxljiK0lRsphiLLclA==$x",
            "scrypt$1024$$8$2$4eaNMBlPk8r6MeHBipZpaeqyaLfghSDzl1Ds8iwAzS1rqdQonFefDdZbwhA7khBiLeZ8gxljiK0lRsphiLLclA==",
            "scrypt$1024$tUhSKLKWZfDq1W9qpm67Fj$8$2$4eaNMBlPk8r6MeHBipZpaeqyaLfghSDzl1Ds8iwAzS1rqdQonFefDdZbwhA7khBiLeZ8gxljiK0lR",
            // MD5: unsalted, wrong length, upper case.
            "md5$salt$abc",
            "md5$$79c2fe63d56cf6659a0e4775f76d70ef",
            "md5$8chrozZwdwg0NpJ1E2Wu5j$79C2FE63D56CF6659A0E4775F76D70EF",
            "md5$8chrozZwdwg0NpJ1E2Wu5j",
            "79c2fe63d56cf6659a0e4775f76d70ef",
            "sha1$salt$0123456789abcdef0123456789abcdef01234567",
            "unsalted_md5$$79c2fe63d56cf6659a0e4775f76d70ef",
            "crypt$$ab1234567890",
            "!unusable-django-password",
            "!",
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
            "argon2$argon2id$v=19$m=4194304,t=2,p=8$c2FsdA$aGFzaA",
        ] {
            let started = Instant::now();
            assert_eq!(
                check(&verifier, b"correct horse battery staple", stored),
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

    #[test]
    fn recognized_names_what_a_login_checks() {
        use made_by_django::*;
        for stored in [
            DJANGO_1000,
            SHA1,
            BCRYPT,
            BCRYPT_SHA256,
            SCRYPT,
            ARGON2I,
            DUMMY_HASH,
            "!unusable",
        ] {
            assert_eq!(recognized(stored), Ok(()), "{stored}");
        }
        assert!(
            recognized(MD5)
                .unwrap_err()
                .contains("accept_md5_password_hashes")
        );
        assert_eq!(recognized_with(MD5, true), Ok(()));
        for stored in ["sha1$s$h", "unsalted_md5$$h", "crypt$$h", "plaintext"] {
            assert!(recognized_with(stored, true).is_err(), "{stored}");
        }
        let hasher = PasswordHasher::new(1).with_md5(true);
        assert_eq!(hasher.recognizes(MD5), Ok(()));
    }

    /// Whatever is stored, a check does the floor's work of each kind: the hash's own work,
    /// made up with dummy work.
    #[test]
    fn every_stored_hash_costs_the_same_work() {
        use made_by_django::*;
        let ours_hash = ours()
            .argon2
            .hash_password(b"pw-123456")
            .unwrap()
            .to_string();
        // A Django argon2id hash costlier than doorman's own.
        let big_argon2 = format!(
            "argon2{}",
            Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(32_768, 2, 2, None).unwrap(),
            )
            .hash_password(b"pw-123456")
            .unwrap()
        );
        let stored = [
            None,
            Some(ours_hash.as_str()),
            Some(big_argon2.as_str()),
            Some(ARGON2I),
            Some(DJANGO_1000),
            Some("pbkdf2_sha256$600$saltsalt$7yXn0aC1wCLgIKkZTFxSjbYZX5zqwSInAQugDf3LJf8="),
            Some(
                "pbkdf2_sha256$99999999999$Xq3ZrN8b1VvY0kPzQe7hLm$qeNoO+zWSoVlcC1ew52KeMpa/DYsCF8c1GOkxAIJ01s=",
            ),
            Some(SHA1),
            Some(BCRYPT),
            Some(BCRYPT_SHA256),
            Some("bcrypt$$2b$05$RWwgqabsYwibFQqsUG0R1.qFabGGJziIprB/QG3NF2tcG.bOwXujC"),
            Some(SCRYPT),
            Some(MD5),
            Some("!unusable"),
            Some("$argon2id$"),
        ];
        // The floor is the most of each kind any stored hash asks for, as the store and each
        // login's own hash give it.
        let floor = stored
            .iter()
            .flatten()
            .map(|s| Cost::of(s))
            .fold(Cost::default(), Cost::max);
        assert_eq!(
            floor,
            Cost {
                argon2: 32_768 * 2,
                pbkdf2_sha256: 1000,
                pbkdf2_sha1: 1000,
                bcrypt: 1 << 5,
                scrypt: 1024 * 8 * 2,
            }
        );
        for floor in [
            floor,
            Cost {
                pbkdf2_sha1: 3000,
                bcrypt: 1 << 7,
                ..floor
            },
        ] {
            for password in [&b"pw-123456"[..], PASSWORD.as_bytes(), b"wrong"] {
                for hash in stored {
                    assert_eq!(
                        work_at(&floor, password, hash),
                        floor,
                        "{hash:?} at floor {floor:?}"
                    );
                }
            }
        }
        // Without Django hashes the floor is the dummy: one argon2id verification.
        for hash in [None, Some(ours_hash.as_str()), Some("!unusable")] {
            assert_eq!(
                work_at(&Cost::of_dummy(), b"x", hash),
                Cost::of_dummy(),
                "{hash:?}"
            );
        }
        // A hash asking for more than the floor does its own work, no less.
        let mut work = work_at(&Cost::of_dummy(), b"x", Some(DJANGO_1000));
        assert_eq!(work.pbkdf2_sha256, 1000);
        work = work_at(&Cost::of_dummy(), b"x", Some(BCRYPT));
        assert_eq!(work.bcrypt, 16);
    }

    #[test]
    fn the_cost_of_a_hash_is_read_from_its_parameters_alone() {
        use made_by_django::*;
        let dummy = DUMMY_BLOCKS;
        for (stored, cost) in [
            (
                DJANGO_DEFAULT,
                Cost {
                    pbkdf2_sha256: 1_000_000,
                    ..Cost::default()
                },
            ),
            (
                "pbkdf2_sha256$1000000",
                Cost {
                    pbkdf2_sha256: 1_000_000,
                    ..Cost::default()
                },
            ),
            (
                SHA1,
                Cost {
                    pbkdf2_sha1: 1000,
                    ..Cost::default()
                },
            ),
            (
                "bcrypt$$2b$12",
                Cost {
                    bcrypt: 1 << 12,
                    ..Cost::default()
                },
            ),
            (
                BCRYPT_SHA256,
                Cost {
                    bcrypt: 1 << 4,
                    ..Cost::default()
                },
            ),
            (
                "scrypt$16384$$8$5",
                Cost {
                    scrypt: 16_384 * 8 * 5,
                    ..Cost::default()
                },
            ),
            (
                SCRYPT,
                Cost {
                    scrypt: 1024 * 8 * 2,
                    ..Cost::default()
                },
            ),
            (
                "argon2$argon2id$v=19$m=102400,t=2,p=8",
                Cost {
                    argon2: 102_400 * 2,
                    ..Cost::default()
                },
            ),
            ("$argon2id$v=19$m=19456,t=2,p=1", Cost::default()),
            (
                ARGON2_NO_VERSION,
                Cost {
                    argon2: 512 * 2,
                    ..Cost::default()
                },
            ),
            // Refused hashes ask for nothing of their own.
            ("pbkdf2_sha256$10000001", Cost::default()),
            ("pbkdf2_sha256$0", Cost::default()),
            ("bcrypt$$2b$17", Cost::default()),
            ("scrypt$1048576$$8$1", Cost::default()),
            ("argon2$argon2id$v=19$m=4194304,t=2,p=1", Cost::default()),
            (MD5, Cost::default()),
            ("!unusable", Cost::default()),
            ("", Cost::default()),
            ("$$$", Cost::default()),
        ] {
            // A hash that asks for no argon2 work gets the dummy verification's.
            let argon2 = if cost.argon2 == 0 { dummy } else { cost.argon2 };
            let expected = Cost { argon2, ..cost };
            assert_eq!(Cost::of(stored), expected, "{stored}");
        }
    }

    #[test]
    fn bounds_admit_django_defaults_and_refuse_beyond() {
        // Django 5.2's defaults.
        assert!(Cost::of("scrypt$16384$$8$5").scrypt <= MAX_SCRYPT_BLOCKS);
        assert_eq!(Cost::of("pbkdf2_sha256$1000000").pbkdf2_sha256, 1_000_000);
        assert_eq!(Cost::of("bcrypt$$2b$12").bcrypt, 1 << 12);
        assert_eq!(
            Cost::of("argon2$argon2id$v=19$m=102400,t=2,p=8").argon2,
            102_400 * 2
        );
        // Memory: N = 2^18 with r = 8 is 256 MiB; twice that is refused.
        assert_eq!(Cost::of("scrypt$262144$$8$1").scrypt, 1 << 21);
        assert_eq!(Cost::of("scrypt$524288$$8$1").scrypt, 0);
        // Work: the blocks bound, reached by lanes rather than memory.
        assert_eq!(Cost::of("scrypt$16384$$8$64").scrypt, 1 << 23);
        assert_eq!(Cost::of("scrypt$16384$$8$65").scrypt, 0);
        assert_eq!(Cost::of("bcrypt$$2b$16").bcrypt, 1 << 16);
    }

    #[test]
    fn other_argon2_settings_ask_for_a_rehash() {
        let verifier = ours();
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
                check(&verifier, b"pw-123456", &hash),
                Verified::Match { needs_rehash: true },
                "{hash}"
            );
            assert_eq!(check(&verifier, b"pw-1234567", &hash), Verified::Mismatch);
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
            let mut verifier = ours();
            verifier.accept_md5 = true;
            let _ = Cost::of(&stored);
            for scheme in ["", "pbkdf2_sha256$", "pbkdf2_sha1$", "$argon2id$", "argon2$argon2i$",
                           "bcrypt$$2b$04$", "bcrypt_sha256$", "scrypt$2$", "md5$"] {
                let stored = format!("{scheme}{stored}");
                let _ = check(&verifier, password.as_bytes(), &stored);
                let _ = Cost::of(&stored);
            }
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
