//! Password hashing: argon2id with OWASP's parameters for new hashes, Django's
//! `pbkdf2_sha256$...` accepted so a Django user table moves over as it is. The CPU work runs on
//! tokio's blocking pool behind a semaphore, so a login storm queues here instead of starving
//! token verification on the async workers.

use std::sync::Arc;

use argon2::{Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier as _};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// Passwords longer than this are never hashed: argon2 has no truncation, so this caps the
/// work one request can ask for.
const MAX_PASSWORD_BYTES: usize = 4096;
/// Django's PBKDF2 iteration counts stay far below this; more is a DoS attempt, not a hash.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// The outcome of a password check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verified {
    /// The password is right; `needs_rehash` when the stored hash is Django's or weaker than ours.
    Match {
        needs_rehash: bool,
    },
    Mismatch,
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password hashing pool is closed")]
    PoolClosed,
    #[error("the password hashing task failed: {0}")]
    Task(String),
    #[error("could not hash the password: {0}")]
    Hash(String),
    #[error("the password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
}

/// Hashes and verifies passwords with bounded concurrency. Cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// Verified against for unknown users, so that they cost what a wrong password costs.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// At most `max_concurrent` hashes run at once (e.g. the number of cores).
    pub fn new(max_concurrent: usize) -> PasswordHasher {
        // A fixed, valid argon2id hash with our parameters; its password is unknowable.
        const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZG9vcm1hbi1kdW1teS1zYWx0$QmsaRrRnUbPLeqeMFjlHQ9ZrA8qyrxx0fUUvyaP6FpE";
        PasswordHasher {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            dummy_hash: Arc::from(DUMMY),
        }
    }

    /// A new argon2id PHC string for the password.
    pub async fn hash(&self, password: SecretString) -> Result<String, PasswordError> {
        if password.expose_secret().len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::TooLong);
        }
        self.run(move || {
            Argon2::default()
                .hash_password(password.expose_secret().as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|e| PasswordError::Hash(e.to_string()))
        })
        .await?
    }

    /// Checks a password against a stored hash; `None` (no such user) checks against a dummy
    /// hash and never matches.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<Verified, PasswordError> {
        if password.expose_secret().len() > MAX_PASSWORD_BYTES {
            return Ok(Verified::Mismatch);
        }
        let known = stored.is_some();
        let hash: Arc<str> = stored.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let verified = self
            .run(move || check(password.expose_secret().as_bytes(), &hash))
            .await?;
        Ok(if known { verified } else { Verified::Mismatch })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::PoolClosed)?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(work)
        })
        .await
        .map_err(|e| PasswordError::Task(e.to_string()))
    }
}

fn check(password: &[u8], stored: &str) -> Verified {
    if stored.starts_with("pbkdf2_sha256$") {
        return check_django_pbkdf2(password, stored);
    }
    let Ok(hash) = PasswordHash::new(stored) else {
        tracing::warn!("a stored password hash has an unknown format; the login is refused");
        return Verified::Mismatch;
    };
    if hash.algorithm.as_str() != "argon2id" {
        tracing::warn!(
            algorithm = hash.algorithm.as_str(),
            "a stored password hash uses an unsupported algorithm"
        );
        return Verified::Mismatch;
    }
    match Argon2::default().verify_password(password, &hash) {
        Ok(()) => Verified::Match {
            needs_rehash: weaker_than_default(&hash),
        },
        Err(_) => Verified::Mismatch,
    }
}

fn weaker_than_default(hash: &PasswordHash) -> bool {
    let param = |name: &str| hash.params.get_decimal(name).unwrap_or(0);
    param("m") < argon2::Params::DEFAULT_M_COST || param("t") < argon2::Params::DEFAULT_T_COST
}

/// Django's `PBKDF2PasswordHasher`: `pbkdf2_sha256$<iterations>$<salt>$<base64 of 32 bytes>`,
/// the salt used as its ASCII text.
fn check_django_pbkdf2(password: &[u8], stored: &str) -> Verified {
    let parts: Vec<&str> = stored.split('$').collect();
    let [_, iterations, salt, expected] = parts.as_slice() else {
        return Verified::Mismatch;
    };
    let Ok(iterations) = iterations.parse::<u32>() else {
        return Verified::Mismatch;
    };
    if iterations == 0 || iterations > MAX_PBKDF2_ITERATIONS || salt.is_empty() {
        return Verified::Mismatch;
    }
    let Ok(expected) = STANDARD.decode(expected) else {
        return Verified::Mismatch;
    };
    if expected.len() != 32 {
        return Verified::Mismatch;
    }
    let mut computed = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt.as_bytes(), iterations, &mut computed);
    if bool::from(computed.ct_eq(&expected)) {
        Verified::Match { needs_rehash: true }
    } else {
        Verified::Mismatch
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

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
        assert_eq!(
            hasher
                .verify(secret("correct horsf"), Some(hash))
                .await
                .unwrap(),
            Verified::Mismatch
        );
    }

    #[tokio::test]
    async fn django_hashes_verify_and_ask_for_a_rehash() {
        // Produced by Python: base64.b64encode(hashlib.pbkdf2_hmac('sha256', b'carol-password-1', b'saltsalt', 1000))
        let django = "pbkdf2_sha256$1000$saltsalt$7yXn0aC1wCLgIKkZTFxSjbYZX5zqwSInAQugDf3LJf8=";
        let hasher = PasswordHasher::new(1);
        assert_eq!(
            hasher
                .verify(secret("carol-password-1"), Some(django.into()))
                .await
                .unwrap(),
            Verified::Match { needs_rehash: true }
        );
        assert_eq!(
            hasher
                .verify(secret("carol-password-2"), Some(django.into()))
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
    }

    #[test]
    fn the_dummy_hash_is_a_real_argon2id_hash_with_our_parameters() {
        let hasher = PasswordHasher::new(1);
        let hash = PasswordHash::new(&hasher.dummy_hash).unwrap();
        assert_eq!(hash.algorithm.as_str(), "argon2id");
        assert!(!weaker_than_default(&hash));
    }

    #[test]
    fn malformed_hashes_are_mismatches() {
        for stored in [
            "pbkdf2_sha256$abc$x$y",
            "pbkdf2_sha256$1000$salt",
            "pbkdf2_sha256$0$salt$7yXn0aC1wCLgIKkZTFxSjbYZX5zqwSInAQugDf3LJf8=",
            "pbkdf2_sha256$99999999999$salt$7yXn0aC1wCLgIKkZTFxSjbYZX5zqwSInAQugDf3LJf8=",
            "pbkdf2_sha256$1000$salt$!!!",
            "pbkdf2_sha256$1000$$7yXn0aC1wCLgIKkZTFxSjbYZX5zqwSInAQugDf3LJf8=",
            "!unusable-django-password",
            "md5$salt$abc",
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$AAAA",
            "",
        ] {
            assert_eq!(
                check(b"carol-password-1", stored),
                Verified::Mismatch,
                "{stored}"
            );
        }
    }

    #[tokio::test]
    async fn weak_argon2_hashes_ask_for_a_rehash() {
        let weak = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw-123456")
        .unwrap()
        .to_string();
        assert_eq!(
            check(b"pw-123456", &weak),
            Verified::Match { needs_rehash: true }
        );
    }

    proptest! {
        #[test]
        fn verify_never_panics(stored in ".{0,120}", password in ".{0,40}") {
            let _ = check(password.as_bytes(), &stored);
            let _ = check(password.as_bytes(), &format!("pbkdf2_sha256${stored}"));
        }
    }
}
