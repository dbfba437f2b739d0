//! Login throttling's counters and their rule, kept in the database (the `login_throttle`
//! table) so that every instance on one database shares them.
//!
//! An attempt is reserved before its password is hashed: in one transaction, the counters it
//! falls under are locked, and either one of them is blocked (the attempt is refused and
//! counts nowhere) or the attempt is counted as a failure in each of them at once. A login that
//! then succeeds clears its failures. Counting up front is what makes the limit hold against
//! parallel attempts: 50 at once are reserved one after the other, and no more pass than a
//! client trying one at a time would get through.

/// The counters an attempt falls under: one username from one address, the username from
/// anywhere (unless the address is a known one), and the address across usernames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Pair,
    Account,
    Address,
    /// Not a counter: an address the username logged in from lately.
    Known,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Pair => "pair",
            Scope::Account => "account",
            Scope::Address => "address",
            Scope::Known => "known",
        }
    }
}

/// How many failures one counter lets through before it starts blocking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Failures let through before the first wait.
    pub free: u32,
    /// Failures at which the counter blocks for the whole `window` instead of the backoff
    /// (the account's hard ceiling); `None`: backoff only.
    pub ceiling: Option<u32>,
}

/// The throttling rule: the three buckets and the waits, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleRules {
    pub pair: Bucket,
    pub account: Bucket,
    pub address: Bucket,
    /// The first wait, after a bucket's free failures; each further failure doubles it.
    pub base_ms: i64,
    /// The longest backoff wait.
    pub max_ms: i64,
    /// How long a counter remembers failures after its last one (and a ceiling's block).
    pub window_ms: i64,
    /// How long an address stays known to a username after a successful login from it.
    pub known_ms: i64,
}

impl ThrottleRules {
    /// The wait after a counter's `failures`th failure: none within the free ones, then
    /// `base`, doubling with each failure up to `max`, or the whole window at the ceiling.
    pub fn wait_ms(&self, bucket: Bucket, failures: i64) -> i64 {
        if bucket.ceiling.is_some_and(|c| failures >= i64::from(c)) {
            return self.window_ms;
        }
        let past_free = failures - i64::from(bucket.free);
        if past_free < 0 {
            return 0;
        }
        let doubled = self.base_ms.saturating_mul(1_i64 << past_free.clamp(0, 40));
        doubled.min(self.max_ms)
    }
}

/// One counter as stored. A row past `expires_at` counts as empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Counter {
    pub failures: i64,
    pub blocked_until: i64,
    pub expires_at: i64,
}

impl Counter {
    fn live(self, now: i64) -> Counter {
        if self.expires_at <= now {
            Counter::default()
        } else {
            self
        }
    }
}

/// What a reservation decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Counted as a failure in every counter; go on and check the password.
    Allowed,
    /// A counter is blocked for this many more milliseconds; nothing was counted.
    Throttled { wait_ms: i64 },
}

/// Who is attempting: the username as given (bounded) and the client's address as a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginKey {
    pub username: String,
    pub addr: String,
}

/// Decides a reservation over the counters an attempt falls under (each with its bucket):
/// refused while any is blocked, else each counts one more failure and blocks for the wait
/// its count now calls for. Returns the counters to write back when allowed.
pub fn reserve(
    rules: &ThrottleRules,
    now: i64,
    counters: &[(Bucket, Counter)],
) -> Result<Vec<Counter>, Verdict> {
    let blocked = counters
        .iter()
        .map(|(_, c)| c.live(now).blocked_until - now)
        .max()
        .unwrap_or(0);
    if blocked > 0 {
        return Err(Verdict::Throttled { wait_ms: blocked });
    }
    Ok(counters
        .iter()
        .map(|(bucket, counter)| {
            let failures = counter.live(now).failures.saturating_add(1);
            let wait = rules.wait_ms(*bucket, failures);
            let blocked_until = if wait > 0 { now + wait } else { 0 };
            Counter {
                failures,
                blocked_until,
                expires_at: blocked_until.max(now) + rules.window_ms,
            }
        })
        .collect())
}

/// Expands, where it is called, the throttling statements over `$conn`, that backend's
/// connection type: each runs inside the caller's transaction. The caller has this module in
/// scope as `throttle`.
macro_rules! throttle_queries {
    ($conn:ty) => {
        /// Reserves an attempt (see `store::throttle`), inside the caller's write transaction.
        /// The counters are locked in one fixed order (pair, account, address), so two
        /// reservations sharing counters can't deadlock.
        async fn throttle_reserve_in(
            conn: &mut $conn,
            key: &throttle::LoginKey,
            rules: &throttle::ThrottleRules,
            now: i64,
        ) -> Result<throttle::Verdict, StoreError> {
            use throttle::{Scope, Verdict};
            let known: Option<i64> = sqlx::query_scalar(
                "SELECT expires_at FROM login_throttle
                 WHERE scope = 'known' AND username = $1 AND addr = $2 AND expires_at > $3",
            )
            .bind(&key.username)
            .bind(&key.addr)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
            let mut scopes = vec![(
                Scope::Pair,
                rules.pair,
                key.username.as_str(),
                key.addr.as_str(),
            )];
            if known.is_none() {
                scopes.push((Scope::Account, rules.account, key.username.as_str(), ""));
            }
            scopes.push((Scope::Address, rules.address, "", key.addr.as_str()));
            let mut counters = Vec::with_capacity(scopes.len());
            for (scope, bucket, username, addr) in &scopes {
                // The no-op update takes the row's lock until the transaction ends.
                let counter: throttle::Counter = sqlx::query_as(
                    "INSERT INTO login_throttle (scope, username, addr) VALUES ($1, $2, $3)
                     ON CONFLICT (scope, username, addr)
                     DO UPDATE SET failures = login_throttle.failures
                     RETURNING failures, blocked_until, expires_at",
                )
                .bind(scope.as_str())
                .bind(*username)
                .bind(*addr)
                .fetch_one(&mut *conn)
                .await?;
                counters.push((*bucket, counter));
            }
            let updated = match throttle::reserve(rules, now, &counters) {
                Ok(updated) => updated,
                Err(verdict) => {
                    // A refused attempt leaves nothing behind: the rows it just made (never
                    // written, so `expires_at` 0) go again, or an attacker trying new
                    // usernames from a blocked address would add a row with each.
                    for (scope, _, username, addr) in &scopes {
                        sqlx::query(
                            "DELETE FROM login_throttle
                             WHERE scope = $1 AND username = $2 AND addr = $3 AND expires_at = 0",
                        )
                        .bind(scope.as_str())
                        .bind(*username)
                        .bind(*addr)
                        .execute(&mut *conn)
                        .await?;
                    }
                    return Ok(verdict);
                }
            };
            for ((scope, _, username, addr), counter) in scopes.iter().zip(updated) {
                sqlx::query(
                    "UPDATE login_throttle SET failures = $4, blocked_until = $5, expires_at = $6
                     WHERE scope = $1 AND username = $2 AND addr = $3",
                )
                .bind(scope.as_str())
                .bind(*username)
                .bind(*addr)
                .bind(counter.failures)
                .bind(counter.blocked_until)
                .bind(counter.expires_at)
                .execute(&mut *conn)
                .await?;
            }
            Ok(Verdict::Allowed)
        }

        /// After a successful login: the username's failures (from anywhere, and from this
        /// address) are cleared, this attempt's failure is taken back from the address's
        /// count (the address's other failures stay: spraying isn't undone by one good
        /// password), and the address becomes known to the username.
        async fn throttle_succeeded_in(
            conn: &mut $conn,
            key: &throttle::LoginKey,
            rules: &throttle::ThrottleRules,
            now: i64,
        ) -> Result<(), StoreError> {
            // Locked in the order reservations lock them (pair, account, address), or a
            // reservation and a success could each hold the row the other waits for.
            sqlx::query(
                "DELETE FROM login_throttle WHERE scope = 'pair' AND username = $1 AND addr = $2",
            )
            .bind(&key.username)
            .bind(&key.addr)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "DELETE FROM login_throttle WHERE scope = 'account' AND username = $1 AND addr = ''",
            )
            .bind(&key.username)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE login_throttle SET failures = failures - 1
                 WHERE scope = 'address' AND username = '' AND addr = $1 AND failures > 0",
            )
            .bind(&key.addr)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO login_throttle (scope, username, addr, expires_at)
                 VALUES ('known', $1, $2, $3)
                 ON CONFLICT (scope, username, addr) DO UPDATE SET expires_at = $3",
            )
            .bind(&key.username)
            .bind(&key.addr)
            .bind(now.saturating_add(rules.known_ms))
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
    };
}

pub(super) use throttle_queries;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::tests::{Backend, on_both_backends, run};

    const RULES: ThrottleRules = ThrottleRules {
        pair: Bucket {
            free: 5,
            ceiling: None,
        },
        account: Bucket {
            free: 20,
            ceiling: Some(100),
        },
        address: Bucket {
            free: 100,
            ceiling: None,
        },
        base_ms: 1_000,
        max_ms: 900_000,
        window_ms: 86_400_000,
        known_ms: 30 * 86_400_000,
    };

    #[test]
    fn free_failures_then_doubling_waits_up_to_the_cap() {
        let waits: Vec<i64> = (1..=20).map(|n| RULES.wait_ms(RULES.pair, n)).collect();
        assert_eq!(&waits[..4], &[0, 0, 0, 0]);
        assert_eq!(&waits[4..10], &[1_000, 2_000, 4_000, 8_000, 16_000, 32_000]);
        assert_eq!(waits[19], 900_000);
        assert_eq!(RULES.wait_ms(RULES.pair, i64::MAX), 900_000);
        // The account's ceiling blocks for the whole window.
        assert_eq!(RULES.wait_ms(RULES.account, 99), 900_000);
        assert_eq!(RULES.wait_ms(RULES.account, 100), 86_400_000);
    }

    #[test]
    fn a_blocked_counter_refuses_and_counts_nothing() {
        let now = 1_000_000;
        let blocked = Counter {
            failures: 5,
            blocked_until: now + 1_500,
            expires_at: now + 10_000,
        };
        let free = Counter::default();
        assert_eq!(
            reserve(&RULES, now, &[(RULES.pair, free), (RULES.address, blocked)]),
            Err(Verdict::Throttled { wait_ms: 1_500 })
        );
        // Past its expiry, a row counts as empty.
        let stale = Counter {
            expires_at: now,
            ..blocked
        };
        let counted = reserve(&RULES, now, &[(RULES.pair, stale)]).unwrap();
        assert_eq!(counted[0].failures, 1);
        assert_eq!(counted[0].blocked_until, 0);
        assert_eq!(counted[0].expires_at, now + RULES.window_ms);
    }

    #[test]
    fn the_fifth_failure_blocks_the_sixth_attempt() {
        let now = 5_000;
        let mut counter = Counter::default();
        for n in 1..=5 {
            let counted = reserve(&RULES, now, &[(RULES.pair, counter)]).unwrap();
            counter = counted[0];
            assert_eq!(counter.failures, n);
        }
        assert_eq!(counter.blocked_until, now + 1_000);
        assert_eq!(
            reserve(&RULES, now, &[(RULES.pair, counter)]),
            Err(Verdict::Throttled { wait_ms: 1_000 })
        );
        let later = reserve(&RULES, now + 1_000, &[(RULES.pair, counter)]).unwrap();
        assert_eq!(later[0].blocked_until, now + 1_000 + 2_000);
    }

    fn key(username: &str, addr: &str) -> LoginKey {
        LoginKey {
            username: username.to_owned(),
            addr: addr.to_owned(),
        }
    }

    /// Fifty reservations at once for one username from one address: exactly the free five
    /// are allowed, as one after the other would be, and the rest are refused without being
    /// counted.
    async fn parallel_reservations_let_through_only_the_free_ones(store: Store) {
        store.migrate().await.unwrap();
        let now = 1_700_000_000_000;
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(50));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (store, start) = (store.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                store
                    .throttle_reserve(&key("alice", "192.0.2.1"), &RULES, now)
                    .await
                    .unwrap()
            }));
        }
        let mut allowed = 0;
        for task in tasks {
            match task.await.unwrap() {
                Verdict::Allowed => allowed += 1,
                Verdict::Throttled { wait_ms } => assert_eq!(wait_ms, 1_000),
            }
        }
        assert_eq!(allowed, 5);
        // Once the wait is over, one more, which doubles the next wait.
        let later = now + 1_000;
        let alice = key("alice", "192.0.2.1");
        assert_eq!(
            store.throttle_reserve(&alice, &RULES, later).await.unwrap(),
            Verdict::Allowed
        );
        assert_eq!(
            store.throttle_reserve(&alice, &RULES, later).await.unwrap(),
            Verdict::Throttled { wait_ms: 2_000 }
        );
    }
    on_both_backends!(
        parallel_reservations_let_through_only_the_free_ones,
        multi_thread
    );

    /// A success clears the username's counters and makes its address known (the account's
    /// counter no longer applies there); `unlock` clears every address's; pruning removes
    /// what has expired and nothing else.
    async fn success_unlock_and_pruning(store: Store) {
        store.migrate().await.unwrap();
        let now = 1_700_000_000_000;
        let rules = ThrottleRules {
            account: Bucket {
                free: 3,
                ceiling: Some(3),
            },
            ..RULES
        };
        // Three failures from three addresses reach the account's ceiling.
        for addr in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            let verdict = store.throttle_reserve(&key("bob", addr), &rules, now).await;
            assert_eq!(verdict.unwrap(), Verdict::Allowed);
        }
        let blocked = store
            .throttle_reserve(&key("bob", "192.0.2.4"), &rules, now)
            .await
            .unwrap();
        assert_eq!(
            blocked,
            Verdict::Throttled {
                wait_ms: rules.window_ms
            }
        );
        // An address bob logged in from before the attack isn't held by the account's block.
        assert_eq!(store.throttle_unlock("bob").await.unwrap(), 4);
        let home = key("bob", "198.51.100.7");
        assert_eq!(
            store.throttle_reserve(&home, &rules, now).await.unwrap(),
            Verdict::Allowed
        );
        store.throttle_succeeded(&home, &rules, now).await.unwrap();
        for addr in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            let verdict = store.throttle_reserve(&key("bob", addr), &rules, now).await;
            assert_eq!(verdict.unwrap(), Verdict::Allowed);
        }
        assert!(matches!(
            store
                .throttle_reserve(&key("bob", "192.0.2.9"), &rules, now)
                .await
                .unwrap(),
            Verdict::Throttled { .. }
        ));
        assert_eq!(
            store.throttle_reserve(&home, &rules, now).await.unwrap(),
            Verdict::Allowed
        );
        // Refused attempts left no rows behind; the counters stay their day.
        assert_eq!(store.prune_throttle(now + 1).await.unwrap(), 0);
        let pruned = store
            .prune_throttle(now + rules.window_ms * 2 + 1)
            .await
            .unwrap();
        assert!(pruned > 0);
        let rest = store
            .prune_throttle(now + rules.known_ms + 1)
            .await
            .unwrap();
        assert_eq!(rest, 1, "the known address goes last");
    }
    on_both_backends!(success_unlock_and_pruning);
}
