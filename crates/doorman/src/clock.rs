//! The wall clock doorman reads for token times and pruning, and the check that keeps a wall
//! clock stepped ahead from deleting the rows that keep spent tokens refused.
//!
//! Tokens carry wall-clock times (`iat`, `exp`), and expired rows are pruned by wall-clock
//! time, so both read [`WallClock`]. It is the system's clock plus an offset that only tests
//! set (to step the clock without root or faketime); reading it costs one relaxed atomic load.
//! Timeouts, pauses, back-offs and caches don't read it: they run on `Instant`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// The wall clock: the system's, plus a test's offset.
#[derive(Clone, Debug, Default)]
pub struct WallClock {
    offset_ms: Arc<AtomicI64>,
}

impl WallClock {
    pub fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        match self.offset_ms.load(Ordering::Relaxed) {
            0 => now,
            offset => now.saturating_add(time::Duration::milliseconds(offset)),
        }
    }

    /// Unix seconds.
    pub fn unix_now(&self) -> i64 {
        self.now().unix_timestamp()
    }

    /// Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        i64::try_from(self.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }

    /// Steps this clock by `by` (back when negative), as an operator's `date -s` or a
    /// misbehaving time source would step the system's. For tests only: not a setting.
    #[doc(hidden)]
    pub fn step(&self, by: time::Duration) {
        let by = i64::try_from(by.whole_milliseconds()).unwrap_or(0);
        self.offset_ms.fetch_add(by, Ordering::Relaxed);
    }
}

/// How far the wall clock may run ahead of the monotonic clock between two prunes before
/// the pruner stops trusting it: NTP slews far less than this, a step (a VM resumed on a
/// host whose clock is wrong, a mistyped `date -s`) far more.
pub const STEP_TOLERANCE: Duration = Duration::from_secs(60);

/// The latest wall-clock time the pruner may act on. A row is pruned once its expiry is past;
/// a wall clock stepped ahead would prune the blacklist and outstanding rows of tokens that are
/// not expired, and once the clock is stepped back those tokens are accepted again, rotated-out
/// and blacklisted ones included. So each reading of the wall clock is checked against the
/// monotonic clock's advance since the last reading that agreed with it: a wall clock ahead
/// by more than [`STEP_TOLERANCE`] is not believed, and the time acted on is the last
/// trusted reading plus the monotonic advance, until the two agree again. A wall clock stepped
/// back is believed at once: it only prunes less.
#[derive(Debug)]
pub struct TrustedTime {
    wall_ms: i64,
    at: Instant,
    /// Whether the wall clock is ahead now (said once when it starts and once when it ends).
    ahead: bool,
}

/// What [`TrustedTime::check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    /// Unix milliseconds to act on.
    pub now_ms: i64,
    /// How far the wall clock ran ahead of the monotonic clock (0 when it is trusted).
    pub ahead_ms: i64,
}

impl TrustedTime {
    pub fn new(wall_ms: i64, at: Instant) -> TrustedTime {
        TrustedTime {
            wall_ms,
            at,
            ahead: false,
        }
    }

    /// The time to act on given the wall clock reads `wall_ms` at `at`.
    pub fn check(&mut self, wall_ms: i64, at: Instant) -> Checked {
        let elapsed =
            i64::try_from(at.saturating_duration_since(self.at).as_millis()).unwrap_or(i64::MAX);
        let projected = self.wall_ms.saturating_add(elapsed);
        let tolerance = i64::try_from(STEP_TOLERANCE.as_millis()).unwrap_or(i64::MAX);
        let ahead_ms = wall_ms.saturating_sub(projected);
        if ahead_ms > tolerance {
            if !self.ahead {
                tracing::warn!(
                    ahead_ms,
                    "the wall clock jumped ahead of the monotonic clock; pruning acts on the \
                     last time both agreed on plus the time elapsed since, until they agree again"
                );
                self.ahead = true;
            }
            return Checked {
                now_ms: projected,
                ahead_ms,
            };
        }
        if self.ahead {
            tracing::info!("the wall clock agrees with the monotonic clock again");
            self.ahead = false;
        }
        self.wall_ms = wall_ms;
        self.at = at;
        Checked {
            now_ms: wall_ms,
            ahead_ms: 0,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 86_400_000;

    #[test]
    fn a_wall_clock_keeping_time_is_trusted() {
        let start = Instant::now();
        let mut trusted = TrustedTime::new(1_000_000, start);
        let later = start + Duration::from_secs(10);
        let checked = trusted.check(1_010_000 + 500, later);
        assert_eq!(checked.now_ms, 1_010_500);
        assert_eq!(checked.ahead_ms, 0);
    }

    #[test]
    fn a_step_ahead_is_not_acted_on_until_the_clocks_agree_again() {
        let start = Instant::now();
        let mut trusted = TrustedTime::new(DAY_MS, start);
        let t1 = start + Duration::from_secs(1);
        let checked = trusted.check(3 * DAY_MS + 1_000, t1);
        assert_eq!(checked.now_ms, DAY_MS + 1_000, "projected, not the jump");
        assert_eq!(checked.ahead_ms, 2 * DAY_MS);
        // Still ahead a second later: the projection goes on from the trusted reading.
        let t2 = start + Duration::from_secs(2);
        assert_eq!(trusted.check(3 * DAY_MS + 2_000, t2).now_ms, DAY_MS + 2_000);
        // Stepped back: trusted again at once.
        let t3 = start + Duration::from_secs(3);
        let checked = trusted.check(DAY_MS + 3_000, t3);
        assert_eq!((checked.now_ms, checked.ahead_ms), (DAY_MS + 3_000, 0));
    }

    #[test]
    fn a_step_back_is_acted_on_at_once() {
        let start = Instant::now();
        let mut trusted = TrustedTime::new(2 * DAY_MS, start);
        let t1 = start + Duration::from_secs(1);
        assert_eq!(trusted.check(DAY_MS, t1).now_ms, DAY_MS);
        // And the new reading is the base: a return to the old time is no jump.
        let t2 = start + Duration::from_secs(2);
        assert_eq!(trusted.check(DAY_MS + 1_000, t2).ahead_ms, 0);
    }

    #[test]
    fn the_offset_steps_the_wall_clock_both_ways() {
        let clock = WallClock::default();
        let before = clock.unix_now();
        clock.step(time::Duration::days(2));
        assert!(clock.unix_now() >= before + 2 * 86_400);
        clock.step(time::Duration::days(-3));
        let back = clock.unix_now();
        assert!(back <= before - 86_400 + 1 && back >= before - 86_400 - 5);
    }
}
