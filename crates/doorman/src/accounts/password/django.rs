//! Django's password hash formats other than argon2, read as Django 5.2's `hashers.py` writes
//! and checks them: `pbkdf2_sha256`, `pbkdf2_sha1`, `bcrypt_sha256`, `bcrypt`, `scrypt`, and
//! (only when allowed) salted `md5`. Each is bounded before any work, so an imported hash
//! can't pin a core or take gigabytes, and a match always asks for a rehash to argon2id.
//!
//! Django verifies by encoding the password again and comparing the whole string, so a field
//! Django would never write (a leading zero, a `+`, non-canonical base64, a wrong length)
//! never matches there; here such a hash is refused outright, before any work.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use md5::Digest as _;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::verified::Verified;
use super::work::Cost;

/// Beyond these a hash is refused. Django 5.2's defaults sit well inside: PBKDF2 1,000,000
/// iterations, bcrypt cost 12, scrypt N = 2^14, r = 8, p = 5 (16 MiB, 655,360 blocks).
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
pub const MAX_BCRYPT_COST: u32 = 16;
/// scrypt's memory, 128 × r × N bytes (the same 256 MiB as argon2's bound).
pub const MAX_SCRYPT_MEMORY: u64 = 256 << 20;
/// scrypt's work, N × r × p blocks (about 13 times Django's default).
pub const MAX_SCRYPT_BLOCKS: u64 = 1 << 23;

/// What Django's `PBKDF2PasswordHasher` and `ScryptPasswordHasher` derive.
const PBKDF2_SHA256_LEN: usize = 32;
const PBKDF2_SHA1_LEN: usize = 20;
const SCRYPT_LEN: usize = 64;

/// A whole number as Django writes it (`%d`): digits only, no sign, no leading zero.
fn decimal(field: &str) -> Option<u64> {
    let canonical = !field.is_empty()
        && field.len() <= 19
        && field.bytes().all(|b| b.is_ascii_digit())
        && (field.len() == 1 || !field.starts_with('0'));
    canonical.then(|| field.parse().ok()).flatten()
}

/// The iteration count of `pbkdf2_sha256$<iterations>$...` (or sha1), given what follows the
/// scheme.
fn pbkdf2_iterations(rest: &str) -> Result<u32, &'static str> {
    let field = rest.split('$').next().unwrap_or_default();
    match decimal(field).map(u32::try_from) {
        Some(Ok(n @ 1..=MAX_PBKDF2_ITERATIONS)) => Ok(n),
        _ => Err("a stored PBKDF2 hash has a malformed or out-of-bounds iteration count"),
    }
}

/// The cost of `bcrypt$$2b$<cost>$...`, given what follows the scheme (`$2b$12$...`).
fn bcrypt_cost(rest: &str) -> Result<u32, &'static str> {
    let mut fields = rest.split('$');
    let (Some(""), Some(_variant), Some(cost)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err("a stored bcrypt hash is malformed");
    };
    // bcrypt writes the cost as two digits.
    match (cost.len(), cost.parse::<u32>()) {
        (2, Ok(n @ 4..=MAX_BCRYPT_COST)) if cost.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err("a stored bcrypt hash has a malformed or out-of-bounds cost"),
    }
}

/// scrypt's parameters, bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ScryptParams {
    log_n: u8,
    r: u32,
    p: u32,
}

impl ScryptParams {
    fn blocks(self) -> u64 {
        (1u64 << self.log_n) * u64::from(self.r) * u64::from(self.p)
    }
}

/// The parameters of `scrypt$<N>$<salt>$<r>$<p>$<hash>`, given what follows the scheme.
/// Django puts the salt between N and r.
fn scrypt_params(rest: &str) -> Result<ScryptParams, &'static str> {
    let fields: Vec<&str> = rest.split('$').collect();
    let [n, _salt, r, p, ..] = fields[..] else {
        return Err("a stored scrypt hash has too few fields");
    };
    let (Some(n), Some(r), Some(p)) = (decimal(n), decimal(r), decimal(p)) else {
        return Err("a stored scrypt hash has a malformed parameter");
    };
    if n < 2 || !n.is_power_of_two() || r == 0 || p == 0 {
        return Err("a stored scrypt hash has impossible parameters");
    }
    let memory = n.checked_mul(r).and_then(|x| x.checked_mul(128));
    let blocks = n.checked_mul(r).and_then(|x| x.checked_mul(p));
    match (memory, blocks) {
        (Some(memory), Some(blocks))
            if memory <= MAX_SCRYPT_MEMORY && blocks <= MAX_SCRYPT_BLOCKS =>
        {
            Ok(ScryptParams {
                log_n: u8::try_from(n.trailing_zeros()).unwrap_or(u8::MAX),
                // Bounded by the blocks above.
                r: u32::try_from(r).unwrap_or(u32::MAX),
                p: u32::try_from(p).unwrap_or(u32::MAX),
            })
        }
        _ => Err("a stored scrypt hash asks for more work than doorman allows"),
    }
}

/// The work a check of a hash of `scheme` would do, read from its parameter fields alone (so
/// a stored hash's salt and digest may be left out); zero for a scheme without a work factor,
/// or parameters a check would refuse.
pub(super) fn cost(scheme: &str, rest: &str) -> Cost {
    let mut cost = Cost::default();
    match scheme {
        "pbkdf2_sha256" => cost.pbkdf2_sha256 = pbkdf2_iterations(rest).map_or(0, u64::from),
        "pbkdf2_sha1" => cost.pbkdf2_sha1 = pbkdf2_iterations(rest).map_or(0, u64::from),
        "bcrypt" | "bcrypt_sha256" => cost.bcrypt = bcrypt_cost(rest).map_or(0, |c| 1 << c),
        "scrypt" => cost.scrypt = scrypt_params(rest).map_or(0, ScryptParams::blocks),
        _ => {}
    }
    cost
}

/// Checks a password against a Django hash of `scheme` (the text before its first `$`),
/// `rest` being what follows that `$`. `Err` (with the reason, for the log) for a hash that
/// is malformed, out of bounds, of an unknown scheme, or MD5 while `accept_md5` is off.
pub(super) fn check(
    scheme: &str,
    rest: &str,
    password: &[u8],
    accept_md5: bool,
    work: &mut Cost,
) -> Result<Verified, &'static str> {
    let matched = match scheme {
        "pbkdf2_sha256" => check_pbkdf2(Digest::Sha256, password, rest, work)?,
        "pbkdf2_sha1" => check_pbkdf2(Digest::Sha1, password, rest, work)?,
        "bcrypt_sha256" => {
            // Django's BCryptSHA256PasswordHasher: bcrypt of the SHA-256's lowercase hex, so
            // nothing is lost to bcrypt's 72-byte limit.
            let hex = lower_hex(&sha2::Sha256::digest(password));
            check_bcrypt(hex.as_bytes(), rest, work)?
        }
        // Django's BCryptPasswordHasher passes the password as it is, and bcrypt reads only
        // its first 72 bytes, as every Django deployment on bcrypt < 5 stored it.
        "bcrypt" => check_bcrypt(password, rest, work)?,
        "scrypt" => check_scrypt(password, rest, work)?,
        "md5" if accept_md5 => check_md5(password, rest)?,
        "md5" => return Err("a stored MD5 hash is refused (accept_md5_password_hashes is off)"),
        _ => return Err("the stored password hash has an unknown format"),
    };
    Ok(if matched {
        Verified::Match { needs_rehash: true }
    } else {
        Verified::Mismatch
    })
}

#[derive(Clone, Copy)]
enum Digest {
    Sha256,
    Sha1,
}

/// `<iterations>$<salt>$<base64 of the PBKDF2-HMAC>`, the salt used as its text.
fn check_pbkdf2(
    digest: Digest,
    password: &[u8],
    rest: &str,
    work: &mut Cost,
) -> Result<bool, &'static str> {
    let mut parts = rest.splitn(3, '$');
    let (Some(_), Some(salt), Some(expected)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("a stored PBKDF2 hash has too few fields");
    };
    let iterations = pbkdf2_iterations(rest)?;
    if salt.is_empty() {
        return Err("a stored PBKDF2 hash has an empty salt");
    }
    let expected = STANDARD
        .decode(expected)
        .map_err(|_| "a stored PBKDF2 hash is not valid base64")?;
    let len = match digest {
        Digest::Sha256 => PBKDF2_SHA256_LEN,
        Digest::Sha1 => PBKDF2_SHA1_LEN,
    };
    if expected.len() != len {
        return Err("a stored PBKDF2 hash has the wrong length");
    }
    let mut computed = Zeroizing::new([0u8; PBKDF2_SHA256_LEN]);
    let computed = &mut computed[..len];
    let salt = salt.as_bytes();
    match digest {
        Digest::Sha256 => {
            work.pbkdf2_sha256 += u64::from(iterations);
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, computed);
        }
        Digest::Sha1 => {
            work.pbkdf2_sha1 += u64::from(iterations);
            pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, computed);
        }
    }
    Ok(bool::from(computed.ct_eq(&expected)))
}

/// `$2b$<cost>$<salt and hash>`: the 60-character string bcrypt writes.
fn check_bcrypt(password: &[u8], rest: &str, work: &mut Cost) -> Result<bool, &'static str> {
    let cost = bcrypt_cost(rest)?;
    // Parsed before the work, so that a malformed salt or hash costs nothing here.
    rest.parse::<bcrypt::HashParts>()
        .map_err(|_| "a stored bcrypt hash is malformed")?;
    work.bcrypt += 1 << cost;
    bcrypt::verify(password, rest).map_err(|_| {
        work.bcrypt -= 1 << cost;
        "a stored bcrypt hash could not be verified"
    })
}

/// `<N>$<salt>$<r>$<p>$<base64 of the 64-byte key>`, the salt used as its text.
fn check_scrypt(password: &[u8], rest: &str, work: &mut Cost) -> Result<bool, &'static str> {
    let fields: Vec<&str> = rest.split('$').collect();
    // Django splits the whole hash into exactly six fields.
    let [_, salt, _, _, expected] = fields[..] else {
        return Err("a stored scrypt hash does not have six fields");
    };
    let params = scrypt_params(rest)?;
    if salt.is_empty() {
        return Err("a stored scrypt hash has an empty salt");
    }
    let expected = STANDARD
        .decode(expected)
        .map_err(|_| "a stored scrypt hash is not valid base64")?;
    if expected.len() != SCRYPT_LEN {
        return Err("a stored scrypt hash has the wrong length");
    }
    let scrypt_params = scrypt::Params::new(params.log_n, params.r, params.p)
        .map_err(|_| "a stored scrypt hash has impossible parameters")?;
    let mut computed = Zeroizing::new([0u8; SCRYPT_LEN]);
    work.scrypt += params.blocks();
    scrypt::scrypt(password, salt.as_bytes(), &scrypt_params, &mut *computed).map_err(|_| {
        work.scrypt -= params.blocks();
        "a stored scrypt hash could not be verified"
    })?;
    Ok(bool::from(computed.ct_eq(&expected)))
}

/// Django's MD5PasswordHasher: `<salt>$<hex of MD5(salt + password)>`. Without a salt
/// (`md5$$...`) it is Django's unsalted MD5, which Django 5.1 no longer checks either.
fn check_md5(password: &[u8], rest: &str) -> Result<bool, &'static str> {
    let Some((salt, expected)) = rest.split_once('$') else {
        return Err("a stored MD5 hash has too few fields");
    };
    if salt.is_empty() {
        return Err("a stored MD5 hash has no salt (unsalted MD5 is not accepted)");
    }
    if expected.len() != 32
        || !expected
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err("a stored MD5 hash is malformed");
    }
    let computed = lower_hex(
        &md5::Md5::new()
            .chain_update(salt.as_bytes())
            .chain_update(password)
            .finalize(),
    );
    Ok(bool::from(computed.as_bytes().ct_eq(expected.as_bytes())))
}

fn lower_hex(bytes: &[u8]) -> Zeroizing<String> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    for b in bytes {
        hex.push(char::from(DIGITS[usize::from(b >> 4)]));
        hex.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    hex
}
