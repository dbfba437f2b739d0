//! Login throttling (`docs/throttling.md`): every login attempt is reserved against three
//! failure counters before its password is hashed (one username from one address; the
//! username from addresses it hasn't logged in from lately; the address across usernames),
//! and refused with DRF's 429 while any of them is blocked. The counters live in the database
//! (shared by every instance on it, see `store::throttle`) or, with `rate_limit_url`, in Redis,
//! where one Lua script applies the same rule atomically.
//!
//! When the counters can't be reached, a login is answered 503, never let through unthrottled.
//!
//! A reservation counts as a failure until its password proves right, so that parallel wrong
//! attempts can't slip past the free ones. Left at that, parallel *right* attempts (a service
//! logging in from several workers behind one address) would be refused too, for failures
//! that are only in flight. So each instance also lets through at most as many attempts of one
//! username and address (and of one address) at once as the counter has free failures; the
//! others wait their turn here (up to [`IN_FLIGHT_QUEUE`] of them, within the request's
//! deadline, `request_timeout`) instead of being refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::settings::LoginThrottleConfig;
use crate::store::throttle::{LoginKey, ThrottleRules, Verdict};
use crate::store::{AUDIT_USER_AGENT_MAX, Store, StoreError};

/// How long a login waits for Redis to connect or answer before it is told 503.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// How many attempts of one key may wait for a turn on this instance; more are refused at
/// once (429), so a flood for one username costs neither memory nor request slots.
pub const IN_FLIGHT_QUEUE: usize = 64;

/// Whether an attempt may go on to the password check.
#[derive(Debug)]
pub enum Reservation {
    /// Counted as a failure until it succeeds; check the password, and keep the turn until its
    /// outcome is recorded ([`LoginThrottle::succeeded`] for a right one).
    Allowed(Turn),
    /// Refused: the next attempt is let through in this many seconds (at least 1).
    Throttled { retry_after: u64 },
}

/// The login throttle: off, or counting in the database or in Redis.
#[derive(Clone)]
pub struct LoginThrottle {
    counters: Counters,
    rules: ThrottleRules,
    in_flight: InFlight,
}

#[derive(Clone)]
enum Counters {
    Off,
    Store(Store),
    Redis(RedisCounters),
}

impl LoginThrottle {
    /// Redis is connected on first use, so a server starts while Redis is down (and answers
    /// logins 503 until it is back).
    pub fn new(config: &LoginThrottleConfig, store: Store) -> Result<LoginThrottle, StoreError> {
        let counters = match (&config.redis_url, config.enabled) {
            (_, false) => Counters::Off,
            (None, true) => Counters::Store(store),
            (Some(url), true) => Counters::Redis(RedisCounters::new(url, &config.redis_prefix)?),
        };
        Ok(LoginThrottle {
            counters,
            rules: config.rules,
            in_flight: InFlight::default(),
        })
    }

    /// Where the counters live, for the log: "off", "database" or "redis".
    pub fn backend(&self) -> &'static str {
        match self.counters {
            Counters::Off => "off",
            Counters::Store(_) => "database",
            Counters::Redis(_) => "redis",
        }
    }

    /// Waits for the attempt's turn among those of its username and address in flight on
    /// this instance. Nothing is counted yet, so a client that goes away while waiting leaves
    /// nothing behind; `None`: too many wait already (answer 429, retry in a second).
    pub async fn turn(&self, username: &str, addr: Option<IpAddr>) -> Option<Turn> {
        if let Counters::Off = self.counters {
            return Some(Turn::default());
        }
        let key = login_key(username, addr);
        // Pair before address, always: a turn held waits for nothing but the next one.
        let pair = format!("{}\u{0}{}", key.username, key.addr);
        let pair_turn = self.in_flight.enter(pair, self.rules.pair.free).await?;
        let address_turn = self
            .in_flight
            .enter(format!("\u{0}{}", key.addr), self.rules.address.free)
            .await?;
        Some(Turn {
            _passes: vec![pair_turn, address_turn],
        })
    }

    /// Reserves an attempt by `username` from `addr`, holding its `turn`, before its password
    /// is checked. From here the attempt must be decided (its outcome recorded) even if the
    /// client goes away: run it to its end.
    pub async fn reserve(
        &self,
        username: &str,
        addr: Option<IpAddr>,
        turn: Turn,
    ) -> Result<Reservation, StoreError> {
        let key = login_key(username, addr);
        let verdict = match &self.counters {
            Counters::Off => Verdict::Allowed,
            Counters::Store(store) => store.throttle_reserve(&key, &self.rules, now_ms()).await?,
            Counters::Redis(redis) => redis.reserve(&key, &self.rules).await?,
        };
        Ok(match verdict {
            Verdict::Allowed => Reservation::Allowed(turn),
            Verdict::Throttled { wait_ms } => Reservation::Throttled {
                retry_after: retry_after_secs(wait_ms),
            },
        })
    }

    /// After the password was right: clears the username's failures and remembers the
    /// address as known to it.
    pub async fn succeeded(&self, username: &str, addr: Option<IpAddr>) -> Result<(), StoreError> {
        let key = login_key(username, addr);
        match &self.counters {
            Counters::Off => Ok(()),
            Counters::Store(store) => store.throttle_succeeded(&key, &self.rules, now_ms()).await,
            Counters::Redis(redis) => redis.succeeded(&key, &self.rules).await,
        }
    }

    /// Clears a username's failures, from anywhere and from every address (`user unlock`);
    /// returns how many counters held some.
    pub async fn unlock(&self, username: &str) -> Result<u64, StoreError> {
        let username = bounded(username);
        match &self.counters {
            Counters::Off => Ok(0),
            Counters::Store(store) => store.throttle_unlock(&username).await,
            Counters::Redis(redis) => redis.unlock(&username).await,
        }
    }
}

/// An attempt's turn among those in flight on this instance: held until its outcome is
/// recorded, then given to the next waiting attempt.
#[derive(Debug, Default)]
pub struct Turn {
    _passes: Vec<Pass>,
}

/// Attempts in flight on this instance, by key: at most as many at once as the key's counter
/// has free failures, so no attempt is refused for failures that are only in flight here.
/// An entry (its gate, and how many attempts hold or wait for a turn of it) exists while
/// one does.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<Gates>>);

type Gates = HashMap<String, (Arc<Semaphore>, usize)>;

/// One turn of one key; gives the turn back, and the key's entry once nobody holds or waits
/// for one, when dropped.
#[derive(Debug)]
struct Pass {
    permit: Option<OwnedSemaphorePermit>,
    key: String,
    gates: Arc<Mutex<Gates>>,
}

impl InFlight {
    /// Waits for a turn of `key` (`turns` at once, at least one), first come first served;
    /// `None` when [`IN_FLIGHT_QUEUE`] attempts wait already. The wait has no bound of its
    /// own: the attempts ahead are each one password check, and the request's deadline
    /// (`request_timeout`) ends any wait that outlasts it.
    async fn enter(&self, key: String, turns: u32) -> Option<Pass> {
        let turns = usize::try_from(turns.max(1)).unwrap_or(usize::MAX);
        let gate = {
            // A poisoned lock only means a panic elsewhere while it was held; the map (one
            // insert, count or remove at a time) is still whole.
            let mut gates = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let (gate, present) = gates
                .entry(key.clone())
                .or_insert_with(|| (Arc::new(Semaphore::new(turns)), 0));
            if *present >= turns.saturating_add(IN_FLIGHT_QUEUE) {
                return None;
            }
            *present += 1;
            gate.clone()
        };
        // From here the pass counts this attempt, and takes it back when dropped.
        let mut pass = Pass {
            permit: None,
            key,
            gates: self.0.clone(),
        };
        // The semaphore is never closed, so acquiring fails never.
        pass.permit = Some(gate.acquire_owned().await.ok()?);
        Some(pass)
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, present)) = gates.get_mut(&self.key) {
            *present = present.saturating_sub(1);
            if *present == 0 {
                gates.remove(&self.key);
            }
        }
    }
}

/// Whole seconds, rounded up, never 0: what `Retry-After` and DRF's detail say.
fn retry_after_secs(wait_ms: i64) -> u64 {
    u64::try_from(wait_ms).map_or(1, |ms| ms.div_ceil(1000).max(1))
}

/// The time in Unix milliseconds, the counters' unit.
pub fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

/// The counters' key for an attempt. The username is the client's to choose, so it is cut to
/// a bound no real username reaches. An IPv6 client is keyed by its /64, the block one
/// subscriber gets: keying single addresses would hand an attacker 2^64 fresh counters.
/// Without an address (a Unix socket without a trusted proxy) all such clients share one.
pub fn login_key(username: &str, addr: Option<IpAddr>) -> LoginKey {
    LoginKey {
        username: bounded(username),
        addr: address_key(addr),
    }
}

fn bounded(username: &str) -> String {
    match username.char_indices().nth(AUDIT_USER_AGENT_MAX) {
        Some((cut, _)) => username[..cut].to_owned(),
        None => username.to_owned(),
    }
}

fn address_key(addr: Option<IpAddr>) -> String {
    match addr.map(|ip| ip.to_canonical()) {
        None => "unknown".to_owned(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The counters in Redis: a hash per counter (`f` failures, `b` blocked until, in Unix
/// milliseconds of Redis's clock) that expires `login_throttle_window` after its last
/// failure, and a key per known address. Keys name the username in hex, so no username can
/// reach into another's keys or into a `SCAN` pattern.
#[derive(Clone)]
struct RedisCounters {
    client: redis::Client,
    connection: std::sync::Arc<tokio::sync::OnceCell<ConnectionManager>>,
    prefix: String,
}

/// Refuses the attempt while any counter is blocked (returning the milliseconds left), else
/// counts a failure in each and sets its block: the rule of `store::throttle::reserve`.
/// KEYS: pair, account, address, known. ARGV: base, max, window, then free and ceiling
/// (0: none) of the pair, the account and the address.
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local base, max, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local counters = {{KEYS[1], 4}}
if redis.call('EXISTS', KEYS[4]) == 0 then table.insert(counters, {KEYS[2], 6}) end
table.insert(counters, {KEYS[3], 8})
local wait = 0
local failures = {}
for i, c in ipairs(counters) do
  local v = redis.call('HMGET', c[1], 'f', 'b')
  failures[i] = tonumber(v[1]) or 0
  local left = (tonumber(v[2]) or 0) - now
  if left > wait then wait = left end
end
if wait > 0 then return wait end
for i, c in ipairs(counters) do
  local free, ceiling = tonumber(ARGV[c[2]]), tonumber(ARGV[c[2] + 1])
  local f = failures[i] + 1
  local w = 0
  if ceiling > 0 and f >= ceiling then
    w = window
  elseif f >= free then
    w = math.min(base * 2 ^ math.min(f - free, 40), max)
  end
  local b = 0
  if w > 0 then b = now + w end
  redis.call('HSET', c[1], 'f', string.format('%.0f', f), 'b', string.format('%.0f', b))
  redis.call('PEXPIREAT', c[1], string.format('%.0f', math.max(b, now) + window))
end
return 0
";

/// A successful login: clears the pair and the account, takes the attempt back from the
/// address, and marks the address known. KEYS: pair, account, address, known. ARGV: known ms.
const SUCCEEDED: &str = r"
redis.call('DEL', KEYS[1], KEYS[2])
local f = redis.call('HGET', KEYS[3], 'f')
if f and tonumber(f) > 0 then redis.call('HINCRBY', KEYS[3], 'f', -1) end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[1])
return 1
";

impl RedisCounters {
    fn new(url: &str, prefix: &str) -> Result<RedisCounters, StoreError> {
        let client = redis::Client::open(url).map_err(|e| {
            StoreError::Database(format!("rate_limit_url is not usable: {e}").into())
        })?;
        Ok(RedisCounters {
            client,
            connection: std::sync::Arc::default(),
            prefix: prefix.to_owned(),
        })
    }

    /// The shared connection, made on first use (and again after a failed first try); it
    /// reconnects by itself afterwards.
    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let manager = self
            .connection
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .map_err(unavailable)?;
        Ok(manager.clone())
    }

    fn keys(&self, key: &LoginKey) -> [String; 4] {
        let user = hex(&key.username);
        let p = &self.prefix;
        [
            format!("{p}:throttle:p:{user}:{}", key.addr),
            format!("{p}:throttle:u:{user}"),
            format!("{p}:throttle:a:{}", key.addr),
            format!("{p}:throttle:k:{user}:{}", key.addr),
        ]
    }

    async fn reserve(&self, key: &LoginKey, rules: &ThrottleRules) -> Result<Verdict, StoreError> {
        let mut connection = self.connection().await?;
        let script = redis::Script::new(RESERVE);
        let mut invocation = script.prepare_invoke();
        for k in self.keys(key) {
            invocation.key(k);
        }
        invocation
            .arg(rules.base_ms)
            .arg(rules.max_ms)
            .arg(rules.window_ms);
        for bucket in [rules.pair, rules.account, rules.address] {
            invocation.arg(bucket.free).arg(bucket.ceiling.unwrap_or(0));
        }
        let wait_ms: i64 = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(match wait_ms {
            0 => Verdict::Allowed,
            wait_ms => Verdict::Throttled { wait_ms },
        })
    }

    async fn succeeded(&self, key: &LoginKey, rules: &ThrottleRules) -> Result<(), StoreError> {
        let mut connection = self.connection().await?;
        let script = redis::Script::new(SUCCEEDED);
        let mut invocation = script.prepare_invoke();
        for k in self.keys(key) {
            invocation.key(k);
        }
        let _: i64 = invocation
            .arg(rules.known_ms)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn unlock(&self, username: &str) -> Result<u64, StoreError> {
        let mut connection = self.connection().await?;
        let user = hex(username);
        let pattern = format!("{}:throttle:p:{user}:*", glob_escape(&self.prefix));
        let mut keys: Vec<String> = vec![format!("{}:throttle:u:{user}", self.prefix)];
        let mut cursor: u64 = 0;
        loop {
            let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            keys.extend(found);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let deleted: u64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(deleted)
    }
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("the rate limit store (Redis): {error}").into())
}

fn hex(text: &str) -> String {
    use std::fmt::Write;
    text.bytes().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// `text` matched literally by a Redis glob pattern.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_keyed_by_ipv4_or_ipv6_slash_64() {
        let key = |s: &str| address_key(Some(s.parse().unwrap()));
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff::1"), "2001:db8:1:2::/64");
        assert_eq!(address_key(None), "unknown");
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_never_zero() {
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(1_000), 1);
        assert_eq!(retry_after_secs(1_001), 2);
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(-5), 1);
    }

    #[test]
    fn usernames_are_bounded_and_hexed() {
        let long = "é".repeat(AUDIT_USER_AGENT_MAX + 10);
        assert_eq!(
            login_key(&long, None).username.chars().count(),
            AUDIT_USER_AGENT_MAX
        );
        assert_eq!(hex("a:*"), "613a2a");
        assert_eq!(glob_escape("d*[x]"), "d\\*\\[x\\]");
    }
}
