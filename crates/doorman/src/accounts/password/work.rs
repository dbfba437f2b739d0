//! The hashing work a password check does, counted by kind, and the dummy work that makes
//! every check's count up to the same floor. Counting (rather than timing) is what lets the
//! tests say that an unknown user, a wrong password and every kind of stored hash cost alike.

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

/// Units of hashing work, one count per kind of hash function. A check adds what it did; the
/// hasher's floor is the most any stored hash asks of each kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// argon2 memory blocks filled: the block count times the passes, over every run.
    pub argon2: u64,
    /// PBKDF2-HMAC-SHA256 iterations.
    pub pbkdf2_sha256: u64,
    /// PBKDF2-HMAC-SHA1 iterations.
    pub pbkdf2_sha1: u64,
    /// bcrypt key-schedule rounds: 2^cost for each hash.
    pub bcrypt: u64,
    /// scrypt blocks mixed: N × r × p for each hash.
    pub scrypt: u64,
}

impl Cost {
    /// The larger of each count.
    pub fn max(self, other: Cost) -> Cost {
        Cost {
            argon2: self.argon2.max(other.argon2),
            pbkdf2_sha256: self.pbkdf2_sha256.max(other.pbkdf2_sha256),
            pbkdf2_sha1: self.pbkdf2_sha1.max(other.pbkdf2_sha1),
            bcrypt: self.bcrypt.max(other.bcrypt),
            scrypt: self.scrypt.max(other.scrypt),
        }
    }
}

/// The argon2 blocks one run with `params` fills.
pub(super) fn argon2_blocks(params: &Params) -> u64 {
    u64::try_from(params.block_count())
        .unwrap_or(u64::MAX)
        .saturating_mul(u64::from(params.t_cost()))
}

/// Adds dummy work of each kind until `work` reaches `floor`. The dummy runs use the
/// password (so the work can't be skipped or cached) and fixed salts; their results are
/// thrown away. Where a kind's units can't be hit exactly the last run rounds up, never down.
pub(super) fn make_up(password: &[u8], floor: &Cost, work: &mut Cost) {
    make_up_argon2(password, floor.argon2, &mut work.argon2);
    let sha256 = floor.pbkdf2_sha256.saturating_sub(work.pbkdf2_sha256);
    if let Ok(iterations @ 1..) = u32::try_from(sha256) {
        work.pbkdf2_sha256 += u64::from(iterations);
        let mut out = Zeroizing::new([0u8; 32]);
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, DUMMY_SALT, iterations, &mut *out);
        std::hint::black_box(&*out);
    }
    let sha1 = floor.pbkdf2_sha1.saturating_sub(work.pbkdf2_sha1);
    if let Ok(iterations @ 1..) = u32::try_from(sha1) {
        work.pbkdf2_sha1 += u64::from(iterations);
        let mut out = Zeroizing::new([0u8; 20]);
        pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, DUMMY_SALT, iterations, &mut *out);
        std::hint::black_box(&*out);
    }
    make_up_bcrypt(password, floor.bcrypt, &mut work.bcrypt);
    make_up_scrypt(password, floor.scrypt, &mut work.scrypt);
}

const DUMMY_SALT: &[u8] = b"doorman-dummy-salt";

/// Most memory one dummy argon2 run takes: doorman's own parameters' 19 MiB, which the hash
/// threads keep between runs; more blocks take more runs.
const DUMMY_ARGON2_BLOCKS: u64 = 19_456;

fn make_up_argon2(password: &[u8], floor: u64, done: &mut u64) {
    while *done < floor {
        // One lane: the block count is m itself when m is a multiple of 4, at least 8.
        let missing = (floor - *done).min(DUMMY_ARGON2_BLOCKS);
        let m = missing.next_multiple_of(4).max(8);
        let Ok(params) = Params::new(u32::try_from(m).unwrap_or(8), 1, 1, Some(32)) else {
            return;
        };
        *done += argon2_blocks(&params);
        let mut out = Zeroizing::new([0u8; 32]);
        let _ = super::memory::argon2_into(
            &Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            password,
            DUMMY_SALT,
            &mut *out,
        );
        std::hint::black_box(&*out);
    }
}

/// bcrypt's rounds come in powers of two from 2^4: the missing rounds are run as the costs
/// of their binary digits, largest first.
fn make_up_bcrypt(password: &[u8], floor: u64, done: &mut u64) {
    const MIN_COST: u32 = 4;
    while *done < floor {
        let missing = floor - *done;
        let cost = missing.ilog2().clamp(MIN_COST, 31);
        *done += 1 << cost;
        let hashed = bcrypt::hash_with_salt(password, cost, [0x5a; 16]);
        std::hint::black_box(&hashed.is_ok());
    }
}

/// scrypt's blocks are N × r × p with N a power of two from 2: the missing blocks are run as
/// powers of two, largest first, at Django's r = 8 and at most 16 MiB each (more lanes
/// beyond that, as Django's p = 5 does), or at r = 1 for the last few.
fn make_up_scrypt(password: &[u8], floor: u64, done: &mut u64) {
    const MAX_LOG_N: u32 = 14;
    while *done < floor {
        let missing = floor - *done;
        let power = missing.ilog2().max(1);
        let (log_n, r, p) = if power >= 4 {
            let log_n = (power - 3).min(MAX_LOG_N);
            (log_n, 8, 1u32 << (power - 3 - log_n))
        } else {
            (power, 1, 1)
        };
        let Ok(params) = u8::try_from(log_n)
            .ok()
            .and_then(|log_n| scrypt::Params::new(log_n, r, p).ok())
            .ok_or(())
        else {
            return;
        };
        *done += (1u64 << log_n) * u64::from(r) * u64::from(p);
        let mut out = Zeroizing::new([0u8; 64]);
        let _ = scrypt::scrypt(password, DUMMY_SALT, &params, &mut *out);
        std::hint::black_box(&*out);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn making_up_reaches_the_floor_exactly_in_the_units_hashes_come_in() {
        let floor = Cost {
            argon2: 204_800,
            pbkdf2_sha256: 1200,
            pbkdf2_sha1: 700,
            bcrypt: 1 << 6,
            scrypt: 1 << 12,
        };
        for done in [
            Cost::default(),
            Cost {
                argon2: 38_912,
                pbkdf2_sha256: 1000,
                pbkdf2_sha1: 700,
                bcrypt: 1 << 4,
                scrypt: 2 * 8 * 3,
            },
        ] {
            let mut work = done;
            make_up(b"pw", &floor, &mut work);
            assert_eq!(work, floor, "from {done:?}");
        }
        // Nothing is taken away from work beyond the floor.
        let mut work = Cost {
            bcrypt: 1 << 8,
            ..floor
        };
        make_up(b"pw", &floor, &mut work);
        assert_eq!(work.bcrypt, 1 << 8);
    }

    #[test]
    fn counts_that_cant_be_hit_exactly_round_up() {
        let floor = Cost {
            argon2: 6,
            bcrypt: 20,
            scrypt: 5,
            ..Cost::default()
        };
        let mut work = Cost::default();
        make_up(b"pw", &floor, &mut work);
        assert_eq!(work.argon2, 8);
        assert_eq!(work.bcrypt, 32);
        assert_eq!(work.scrypt, 6);
    }
}
