//! Users: who may log in, and the rules their names and passwords follow. Passwords are
//! checked like Django's `ModelBackend` (hash first, then the active flag, so unknown, wrong and
//! inactive cost the same and answer the same), and Django hashes are upgraded on login.

pub mod admin;
pub mod inspection;
pub mod password;
pub mod settings;
pub mod throttle;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use doorman_guard::{UserCheck, UserRefusal};
use doorman_token::hot::HotCache;
use secrecy::{ExposeSecret, SecretString};

pub use password::{PasswordError, PasswordHasher, Verified};

use crate::store::{NewUser, Store, StoreError, User};

/// Longest password accepted: argon2 has no truncation, so the bound is there to cap the work
/// one request can ask for.
pub const MAX_PASSWORD_BYTES: usize = 4096;
/// How long the hashing work floor read from the store is used before it is read again:
/// hashes imported since are caught by the login that reads them, and the floor drops only
/// this long after the last of the most demanding Django hashes is upgraded.
pub const FLOOR_REFRESH: Duration = Duration::from_secs(60);
/// Longest a login waits for the second its user's tokens were revoked in to pass (see
/// [`Accounts::issue_time`]); a revocation further ahead means another machine's clock runs
/// ahead, and the login's tokens are refused until it catches up.
pub const MAX_ISSUE_WAIT: Duration = Duration::from_secs(2);
/// Shortest password `user create` and `set-password` accept (OWASP ASVS 6.2.1).
pub const MIN_PASSWORD_CHARS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// Input that breaks a rule, said for the person who typed it.
    #[error("{0}")]
    Rejected(String),
}

/// Users and their passwords.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    hasher: PasswordHasher,
    /// When the hasher's work floor was last read from the store; `None` before the first
    /// read.
    floor_read: Arc<tokio::sync::Mutex<Option<Instant>>>,
    /// Whether the floor has been read once: from then on a login doesn't wait for another
    /// login's reading.
    floor_known: Arc<std::sync::atomic::AtomicBool>,
    /// The wall clock new tokens' `iat` is read from.
    clock: crate::clock::WallClock,
    /// Runs after a login's password check and before its rehash is written, so a test can
    /// land a password change exactly there.
    #[cfg(test)]
    before_rehash_write: Option<TestHook>,
}

#[cfg(test)]
type TestHook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// How a login attempt ended.
#[derive(Debug)]
pub enum Attempt {
    Succeeded(User),
    /// Wrong password, unknown name or inactive account; `user_id` when the name exists.
    Refused {
        user_id: Option<i64>,
    },
}

impl Accounts {
    pub fn new(store: Store, hasher: PasswordHasher) -> Accounts {
        Accounts {
            store,
            hasher,
            floor_read: Arc::default(),
            floor_known: Arc::default(),
            clock: crate::clock::WallClock::default(),
            #[cfg(test)]
            before_rehash_write: None,
        }
    }

    /// Reads token times from `clock` (the server's, which tests may step).
    pub fn with_clock(mut self, clock: crate::clock::WallClock) -> Accounts {
        self.clock = clock;
        self
    }

    /// Django's `authenticate(username=..., password=...)`: the user when the password matches
    /// and the account is active, else `None`, at the same cost either way.
    pub async fn authenticate(
        &self,
        username: &str,
        password: SecretString,
    ) -> Result<Option<User>, AccountsError> {
        Ok(match self.attempt(username, password).await? {
            Attempt::Succeeded(user) => Some(user),
            Attempt::Refused { .. } => None,
        })
    }

    /// [`authenticate`](Self::authenticate), telling a refusal's user when the name is known,
    /// for the audit trail (the client is never told).
    pub async fn attempt(
        &self,
        username: &str,
        password: SecretString,
    ) -> Result<Attempt, AccountsError> {
        self.refresh_floor().await;
        let user = self.store.user_by_username(username).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        // A hash asking for more than the floor knew of (imported since it was read) raises it
        // for this and every later check.
        if let Some(stored) = stored.as_deref() {
            self.hasher.raise_floor(password::Cost::of(stored));
        }
        let verified = self.hasher.verify(password.clone(), stored).await?;
        let user_id = user.as_ref().map(|u| u.id);
        let (Some(user), Verified::Match { needs_rehash }) = (user, verified) else {
            return Ok(Attempt::Refused { user_id });
        };
        if needs_rehash {
            // Upgrade a Django (or weaker) hash to argon2id now that we know the password.
            match self.hasher.hash(password).await {
                Ok(hash) => {
                    #[cfg(test)]
                    if let Some(hook) = &self.before_rehash_write {
                        hook().await;
                    }
                    // Written only over the hash that was checked: the check and the rehash
                    // take long (half a second for Django's PBKDF2), and a password changed
                    // meanwhile must not be undone by a rehash of the old one. The login still
                    // succeeds, as it would have a moment earlier: the password was right
                    // when it was checked, and the change applies to every later login.
                    if self
                        .store
                        .replace_password_hash(user.id, &user.password_hash, &hash)
                        .await?
                    {
                        tracing::info!(
                            user_id = user.id,
                            "upgraded the stored password hash to argon2id"
                        );
                    } else {
                        tracing::info!(
                            user_id = user.id,
                            "the password changed during the login; kept the new one, not the upgrade"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(user_id = user.id, error = %e, "could not upgrade the password hash")
                }
            }
        }
        Ok(if user.is_active {
            Attempt::Succeeded(user)
        } else {
            Attempt::Refused {
                user_id: Some(user.id),
            }
        })
    }

    /// Sets the hasher's floor to the most work of each kind any stored hash asks for, read
    /// from the store at most every [`FLOOR_REFRESH`]. Until the last of the most demanding
    /// hashes is upgraded, every login pays that much work, so that an account still holding
    /// one can't be told from an unknown username by its slower check (see `check_evenly`).
    /// When the store can't answer, the floor stays as it was and the next login asks again.
    async fn refresh_floor(&self) {
        let mut read = match self.floor_read.try_lock() {
            Ok(read) => read,
            Err(_) if self.floor_known.load(Ordering::Acquire) => return,
            Err(_) => self.floor_read.lock().await,
        };
        if read.is_some_and(|at| at.elapsed() < FLOOR_REFRESH) {
            return;
        }
        match self.store.password_hash_parameters().await {
            Ok(parameters) => {
                let most = parameters
                    .iter()
                    .map(|p| password::Cost::of(p))
                    .fold(password::Cost::default(), password::Cost::max);
                self.hasher.set_floor(most);
                *read = Some(Instant::now());
                self.floor_known.store(true, Ordering::Release);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the stored password hashes' parameters")
            }
        }
    }

    /// The time (Unix seconds, the new tokens' `iat`) to issue a logged-in user's new tokens
    /// at. Tokens issued in or before the second of the user's last revocation are refused,
    /// so a login in that very second (logging in again right after logging out everywhere)
    /// waits for the next one, at most [`MAX_ISSUE_WAIT`]. The user is read again here, after
    /// the password check: a revocation made while the check ran (a password set meanwhile)
    /// is seen, and the tokens of a login it overtook are refused by their `iat`.
    pub async fn issue_time(&self, user_id: i64) -> Result<i64, AccountsError> {
        let revoked = self
            .store
            .user_by_id(user_id)
            .await?
            .and_then(|user| user.tokens_valid_after);
        let Some(revoked) = revoked else {
            return Ok(self.clock.unix_now());
        };
        let started = Instant::now();
        loop {
            let now = self.clock.unix_now();
            if now > revoked {
                return Ok(now);
            }
            let waited = started.elapsed();
            if waited >= MAX_ISSUE_WAIT {
                tracing::warn!(
                    user_id,
                    tokens_valid_after = revoked,
                    now,
                    "the user's tokens were revoked at a time still ahead of this clock; \
                     the new tokens are refused until it passes"
                );
                return Ok(now);
            }
            // Until the wall clock's next second; the sleep itself is on the monotonic clock,
            // and the loop reads the wall clock again, so a step meanwhile costs one more turn.
            let into_second = u64::try_from(self.clock.now_ms().rem_euclid(1000)).unwrap_or(0);
            let wait = Duration::from_millis(1000 - into_second).max(Duration::from_millis(1));
            tokio::time::sleep(wait.min(MAX_ISSUE_WAIT - waited)).await;
        }
    }

    pub async fn create_user(
        &self,
        username: &str,
        password: SecretString,
        is_superuser: bool,
        is_active: bool,
    ) -> Result<User, AccountsError> {
        validate_username(username)?;
        validate_password(&password)?;
        let password_hash = self.hasher.hash(password).await?;
        let user = self
            .store
            .create_user(NewUser {
                username: username.to_owned(),
                password_hash,
                is_active,
                is_superuser,
            })
            .await?;
        Ok(user)
    }

    /// The store the users live in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Returns false when there is no such user.
    pub async fn set_password(
        &self,
        username: &str,
        password: SecretString,
    ) -> Result<bool, AccountsError> {
        validate_password(&password)?;
        let Some(user) = self.store.user_by_username(username).await? else {
            return Ok(false);
        };
        let hash = self.hasher.hash(password).await?;
        Ok(self.store.set_password_hash(user.id, &hash).await?)
    }
}

/// Django's username rule: 1 to 150 characters, letters, digits and `@.+-_`.
pub fn validate_username(username: &str) -> Result<(), AccountsError> {
    let count = username.chars().count();
    if count == 0 || count > 150 {
        return Err(AccountsError::Rejected(
            "a username has 1 to 150 characters".into(),
        ));
    }
    if !username
        .chars()
        .all(|c| c.is_alphanumeric() || "@.+-_".contains(c))
    {
        return Err(AccountsError::Rejected(
            "a username may contain only letters, digits and @/./+/-/_".into(),
        ));
    }
    Ok(())
}

pub fn validate_password(password: &SecretString) -> Result<(), AccountsError> {
    let text = password.expose_secret();
    if text.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountsError::Rejected(format!(
            "a password has at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if text.len() > MAX_PASSWORD_BYTES {
        return Err(AccountsError::Rejected(format!(
            "a password has at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The per-request user check behind `/hello/` (simplejwt's `get_user`): the user must exist
/// and, with `CHECK_USER_IS_ACTIVE`, be active.
///
/// The answer for a user is kept for `user_cache_ttl` (1 s by default; bounded in size), so a
/// steady stream of requests costs one lookup per user per second instead of one per request.
/// Requests that find no answer while a lookup for the same user is under way wait for that
/// one instead of each asking the database (at full load a dozen did, every second).
/// That time is also the bound on staleness: a user deactivated or deleted anywhere (CLI,
/// another instance) is refused by every instance within it. Not-found answers are kept too,
/// so tokens of a deleted user don't each cost a lookup.
///
/// The same lookup tells whether the token was issued before the user's tokens were revoked
/// (log out everywhere, a password set, a deactivation): such a token is refused. Another
/// instance's revocation shows within `user_cache_ttl` too; one made through this instance
/// ([`StoreUserCheck::revoked`]) shows at once.
///
/// When the database can't be reached, a token that passed every other check is accepted
/// without the lookup (unless `accept_tokens_during_outage` is off, which answers 503): access
/// tokens live minutes, and an outage must not take down every service that verifies them.
/// After a failed lookup the database is left alone for [`OUTAGE_BACKOFF`], so requests
/// don't each wait out the connection timeout.
pub struct StoreUserCheck {
    store: Store,
    check_is_active: bool,
    accept_during_outage: bool,
    /// When the pause's clock started: pauses run on the monotonic clock, so a wall clock
    /// stepped back can't stretch one.
    started: Instant,
    /// Milliseconds after `started` until which lookups are skipped; 0 when the database is up.
    skip_until_ms: AtomicI64,
    cache: Option<UserCache>,
    /// Revocations made through this instance while the cache may still hold what was looked
    /// up before them; see [`StoreUserCheck::revoked`].
    local: LocalRevocations,
    from_cache: metrics::Counter,
    from_database: metrics::Counter,
}

/// What lookups found, kept `user_cache_ttl` from the database's answer.
struct UserCache {
    /// Where a request looks first: its hits write nothing shared, so two cores answering for
    /// the same user don't slow each other down.
    hot: HotCache<i64, Option<Standing>>,
    /// Behind it: where concurrent misses for one user share one lookup.
    shared: moka::future::Cache<i64, Found>,
    ttl: Duration,
}

/// What a lookup found of an existing user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Standing {
    active: bool,
    /// The user's `tokens_valid_after` (see [`crate::store::User::tokens_valid_after`]).
    tokens_valid_after: Option<i64>,
}

/// What a lookup found for a user id (`None`: no such user), and when.
#[derive(Clone, Copy, Debug)]
struct Found {
    user: Option<Standing>,
    at: Instant,
}

/// How long past `user_cache_ttl` this instance keeps its own revocations: longer than any
/// lookup started before a revocation can take to come back (the pool's acquire and statement
/// timeouts are seconds), so no answer read before the revocation outlives it in the cache.
pub const LOCAL_REVOCATION_HOLD: Duration = Duration::from_secs(60);

/// The revocations made through this instance, each kept until no cached answer can be older
/// than it. Empty nearly always: a request reads one atomic counter, and the map only when it
/// holds something.
#[derive(Default)]
struct LocalRevocations {
    held: std::sync::atomic::AtomicUsize,
    /// User id -> (tokens_valid_after, kept until).
    map: std::sync::RwLock<std::collections::HashMap<i64, (i64, Instant)>>,
}

impl LocalRevocations {
    fn record(&self, user_id: i64, tokens_valid_after: i64, until: Instant) {
        // A poisoned lock only means another thread panicked while holding it; the map itself
        // is still whole (each write is one insert or retain).
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, kept_until)| *kept_until > now);
        let entry = map.entry(user_id).or_insert((tokens_valid_after, until));
        *entry = (entry.0.max(tokens_valid_after), until);
        self.held.store(map.len(), Ordering::Release);
    }

    /// The user's `tokens_valid_after` as revoked here, while it is kept.
    fn get(&self, user_id: i64) -> Option<i64> {
        if self.held.load(Ordering::Acquire) == 0 {
            return None;
        }
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(&user_id)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(after, _)| *after)
    }
}

/// How long lookups are skipped after the database failed to answer one.
pub const OUTAGE_BACKOFF: Duration =
    Duration::from_secs(doorman_guard::UNAVAILABLE_RETRY_AFTER_SECS);

/// Why a user lookup has no answer.
#[derive(Clone, Copy, Debug)]
enum LookupFailed {
    /// The database can't be reached (now, or recently: the back-off).
    Outage,
    /// It answered with an error.
    Error,
}

impl UserCheck for StoreUserCheck {
    fn check(
        &self,
        user_id: i64,
    ) -> Pin<Box<dyn Future<Output = Result<(), UserRefusal>> + Send + '_>> {
        self.check_token(user_id, None, Outage::AsConfigured)
    }

    fn check_issued(
        &self,
        user_id: i64,
        issued_at: Option<i64>,
    ) -> Pin<Box<dyn Future<Output = Result<(), UserRefusal>> + Send + '_>> {
        self.check_token(user_id, Some(issued_at), Outage::AsConfigured)
    }
}

/// What a check does when the database can't be asked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// `accept_tokens_during_outage` decides.
    AsConfigured,
    /// Refused as unavailable, whatever the setting.
    Refuse,
}

impl StoreUserCheck {
    /// The check a refresh makes before minting a new token: the guard's, from the same cache
    /// (so at most `user_cache_ttl` behind another process's change, and at once for a
    /// revocation made through this instance), but never passed on the token's word while the
    /// database can't be asked: a refresh is refused with 503 then, whatever
    /// `accept_tokens_during_outage` says.
    pub async fn check_before_minting(
        &self,
        user_id: i64,
        issued_at: Option<i64>,
    ) -> Result<(), UserRefusal> {
        self.check_token(user_id, Some(issued_at), Outage::Refuse)
            .await
    }

    /// The user check; `issued_at` `Some` also refuses a token issued (at the inner value, its
    /// `iat`) before the user's tokens were revoked.
    fn check_token(
        &self,
        user_id: i64,
        issued_at: Option<Option<i64>>,
        outage: Outage,
    ) -> Pin<Box<dyn Future<Output = Result<(), UserRefusal>> + Send + '_>> {
        if let Some(found) = self.cache.as_ref().and_then(|c| c.hot.get(&user_id)) {
            self.from_cache.increment(1);
            return Box::pin(std::future::ready(self.judge(user_id, found, issued_at)));
        }
        Box::pin(async move {
            let found = match &self.cache {
                // A miss while another request looks the same user up waits for that lookup.
                // Failures aren't kept: each waiter gets the failure, the next request asks
                // again (after the outage back-off).
                Some(cache) => {
                    let look_up = async {
                        let user = self.look_up(user_id, outage).await?;
                        Ok(Found {
                            user,
                            at: Instant::now(),
                        })
                    };
                    shared_lookup(&cache.shared, user_id, look_up)
                        .await
                        .map(|entry| {
                            if !entry.is_fresh() {
                                self.from_cache.increment(1);
                            }
                            let found = entry.into_value();
                            // Kept until `ttl` after the database answered, wherever it is
                            // read from, so that is still the bound on staleness.
                            if let Some(until) = found.at.checked_add(cache.ttl) {
                                cache.hot.insert(user_id, found.user, Some(until));
                            }
                            found.user
                        })
                }
                None => self.look_up(user_id, outage).await,
            };
            match found {
                Ok(found) => self.judge(user_id, found, issued_at),
                Err(LookupFailed::Outage) => self.during_outage(user_id, issued_at, outage),
                Err(LookupFailed::Error) => Err(UserRefusal::Unavailable),
            }
        })
    }

    /// Tells this instance's check that the user's tokens were revoked up to
    /// `tokens_valid_after` (the store's answer), so that its own requests refuse them at once
    /// rather than once the cached lookup expires, and while the database can't be asked (an
    /// outage, or the pause after a failed lookup). Another instance learns it from its next
    /// lookup, within `user_cache_ttl`.
    pub fn revoked(&self, user_id: i64, tokens_valid_after: i64) {
        // Kept without a cache too: a lookup the database doesn't answer can't tell.
        let ttl = self
            .cache
            .as_ref()
            .map_or(Duration::ZERO, |cache| cache.ttl);
        let hold = ttl.saturating_add(LOCAL_REVOCATION_HOLD);
        if let Some(until) = Instant::now().checked_add(hold) {
            self.local.record(user_id, tokens_valid_after, until);
        }
    }

    /// `cache_ttl` `None` looks the user up on every request.
    pub fn shared(
        store: Store,
        check_is_active: bool,
        accept_during_outage: bool,
        cache_ttl: Option<Duration>,
        cache_size: u64,
        metrics: &crate::metrics::Metrics,
    ) -> Arc<StoreUserCheck> {
        Arc::new(StoreUserCheck {
            store,
            check_is_active,
            accept_during_outage,
            started: Instant::now(),
            skip_until_ms: AtomicI64::new(0),
            cache: cache_ttl.map(|ttl| UserCache {
                hot: HotCache::new(usize::try_from(cache_size).unwrap_or(usize::MAX)),
                shared: moka::future::Cache::builder()
                    .max_capacity(cache_size)
                    .time_to_live(ttl)
                    .build(),
                ttl,
            }),
            local: LocalRevocations::default(),
            from_cache: metrics.user_lookups("cache"),
            from_database: metrics.user_lookups("database"),
        })
    }

    fn elapsed_ms(&self) -> i64 {
        millis(self.started.elapsed())
    }

    /// Asks the database whether the user exists and is active, and since when their tokens
    /// count, unless it failed moments ago.
    /// With `Outage::Refuse` the database is asked even during the pause: such a check has
    /// no answer to give without it (and its caller has just reached the database).
    async fn look_up(
        &self,
        user_id: i64,
        outage: Outage,
    ) -> Result<Option<Standing>, LookupFailed> {
        if outage == Outage::AsConfigured
            && self.elapsed_ms() < self.skip_until_ms.load(Ordering::Relaxed)
        {
            return Err(LookupFailed::Outage);
        }
        match self.store.user_by_id(user_id).await {
            Ok(found) => {
                self.from_database.increment(1);
                if self.skip_until_ms.swap(0, Ordering::Relaxed) != 0 {
                    tracing::info!("the database answers again; user lookups resumed");
                }
                Ok(found.map(|user| Standing {
                    active: user.is_active,
                    tokens_valid_after: user.tokens_valid_after,
                }))
            }
            Err(StoreError::Unavailable(e)) => {
                // At least OUTAGE_BACKOFF, so never the 0 that means "up".
                let until = self.elapsed_ms().saturating_add(millis(OUTAGE_BACKOFF));
                if self.skip_until_ms.swap(until, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        error = %e,
                        accept = self.accept_during_outage,
                        "the database is unavailable; user lookups paused"
                    );
                }
                Err(LookupFailed::Outage)
            }
            Err(e) => {
                tracing::error!(error = %e, "user lookup failed");
                Err(LookupFailed::Error)
            }
        }
    }

    /// The user must exist, be active (when that is checked), and, for a token issued at
    /// `issued_at`, not have had their tokens revoked since: by what the lookup found or by a
    /// revocation made here since.
    fn judge(
        &self,
        user_id: i64,
        found: Option<Standing>,
        issued_at: Option<Option<i64>>,
    ) -> Result<(), UserRefusal> {
        let Some(standing) = found else {
            return Err(UserRefusal::NotFound);
        };
        if !standing.active && self.check_is_active {
            return Err(UserRefusal::Inactive);
        }
        if let Some(iat) = issued_at {
            let after = standing.tokens_valid_after.max(self.local.get(user_id));
            if crate::store::is_revoked(after, iat) {
                return Err(UserRefusal::Revoked);
            }
        }
        Ok(())
    }

    /// Without the database's answer: a token revoked through this instance is still refused
    /// (an acknowledged logout everywhere holds here whatever the database does); any other
    /// is accepted from the token, or refused with 503 if `accept_tokens_during_outage` is off.
    fn during_outage(
        &self,
        user_id: i64,
        issued_at: Option<Option<i64>>,
        outage: Outage,
    ) -> Result<(), UserRefusal> {
        if let Some(iat) = issued_at
            && crate::store::is_revoked(self.local.get(user_id), iat)
        {
            return Err(UserRefusal::Revoked);
        }
        if self.accept_during_outage && outage == Outage::AsConfigured {
            Ok(())
        } else {
            Err(UserRefusal::Unavailable)
        }
    }
}

/// The cache's entry for `user_id`, or `look_up`'s answer, which concurrent misses for the
/// same user share (moka's single flight).
///
/// moka gives up with a panic when the lookup a request waits on is abandoned 200 times in a
/// row: each request that took the lookup over was dropped before it finished (its client went
/// away, or its deadline passed), which a stalled database and clients that keep giving up can
/// bring about. That is a lookup without an answer, as when the database errs: the request gets
/// 503, not the panic catcher's 500.
async fn shared_lookup(
    cache: &moka::future::Cache<i64, Found>,
    user_id: i64,
    look_up: impl Future<Output = Result<Found, LookupFailed>>,
) -> Result<moka::Entry<i64, Found>, LookupFailed> {
    use futures_util::FutureExt;
    // Unwind safety: the panic comes from moka's wait loop, where this request holds nothing
    // but its own waiter's lock, released as it unwinds; the cache is left as it was.
    match std::panic::AssertUnwindSafe(cache.entry(user_id).or_try_insert_with(look_up))
        .catch_unwind()
        .await
    {
        Ok(found) => found.map_err(|failed| *failed),
        Err(_) => {
            tracing::error!(
                user_id,
                "the user lookup this request waited on was abandoned too often; answered 503"
            );
            Err(LookupFailed::Error)
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::tests::{Backend, on_both_backends, run};

    #[test]
    fn usernames_follow_django() {
        assert!(validate_username("alice").is_ok());
        assert!(validate_username("a.b+c-d_e@f").is_ok());
        assert!(validate_username("zoë").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("has space").is_err());
        assert!(validate_username(&"x".repeat(151)).is_err());
    }

    /// A waiter whose lookup is abandoned over and over (each request that takes it over is
    /// dropped before it finishes) gets "no answer", not moka's panic after 200 retries.
    #[tokio::test]
    async fn a_lookup_abandoned_again_and_again_is_an_error_not_a_panic() {
        use futures_util::FutureExt;
        let cache = moka::future::Cache::<i64, Found>::new(10);
        let never = || std::future::pending::<Result<Found, LookupFailed>>();
        // A request looking user 7 up, its lookup in flight.
        let mut taker = Box::pin(shared_lookup(&cache, 7, never()));
        assert!((&mut taker).now_or_never().is_none());
        // A second request for user 7 waits for that lookup.
        let waiting = tokio::spawn({
            let cache = cache.clone();
            async move {
                shared_lookup(&cache, 7, never())
                    .await
                    .map(|e| e.into_value().user)
            }
        });
        for _ in 0..250 {
            settle().await;
            if waiting.is_finished() {
                break;
            }
            // The request doing the lookup goes away; another takes the lookup over before
            // the waiter gets its turn.
            drop(taker);
            taker = Box::pin(shared_lookup(&cache, 7, never()));
            assert!((&mut taker).now_or_never().is_none());
        }
        let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiter never finished")
            .expect("the waiter panicked");
        assert!(matches!(answer, Err(LookupFailed::Error)), "{answer:?}");
    }

    /// A user check on a fresh SQLite store, accepting tokens during an outage, with no
    /// cache; the directory lives as long as the first element is kept.
    async fn accepting_check() -> (tempfile::TempDir, Store, Arc<StoreUserCheck>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite3").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let metrics = crate::metrics::Metrics::new();
        let check = StoreUserCheck::shared(store.clone(), true, true, None, 0, &metrics);
        (dir, store, check)
    }

    /// The pause after a failed user lookup runs on the monotonic clock: a wall clock stepped
    /// back a day right after the failure (the server's clock, as tests step it) leaves it at
    /// `OUTAGE_BACKOFF`, not a day longer.
    #[tokio::test]
    async fn a_clock_stepped_back_does_not_lengthen_the_outage_pause() {
        let (_dir, store, check) = accepting_check().await;
        let clock = crate::clock::WallClock::default();
        // A hiccup: the pool gone, every lookup unavailable.
        store.close().await;
        assert!(matches!(
            check.look_up(1, Outage::AsConfigured).await,
            Err(LookupFailed::Outage)
        ));
        clock.step(time::Duration::days(-1));
        let left = check.skip_until_ms.load(Ordering::Relaxed) - check.elapsed_ms();
        assert!(
            (0..=millis(OUTAGE_BACKOFF)).contains(&left),
            "paused for {left} ms more"
        );
    }

    /// With `accept_tokens_during_outage` on, an access token's check passes on the token's
    /// word while the database can't be asked; the check before minting a new token never
    /// does, and it asks the database even during the pause after a failed lookup.
    #[tokio::test]
    async fn the_check_before_minting_refuses_during_an_outage() {
        let (_dir, store, check) = accepting_check().await;
        store.close().await;
        assert_eq!(check.check_issued(1, Some(1)).await, Ok(()));
        assert!(
            check.skip_until_ms.load(Ordering::Relaxed) > 0,
            "the pause began"
        );
        assert_eq!(
            check.check_before_minting(1, Some(1)).await,
            Err(UserRefusal::Unavailable)
        );
    }

    /// Lets every task the test spawned run until it waits.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    // A login that upgrades a Django hash while the password is changed (by `user
    // set-password`, another instance, an admin) keeps the new password: the rehash of the old
    // one is written only over the hash the login checked.
    on_both_backends!(a_password_change_during_a_login_upgrade_is_kept);
    async fn a_password_change_during_a_login_upgrade_is_kept(store: Store) {
        store.migrate().await.unwrap();
        // Django's PBKDF2PasswordHasher output for "carol-password-1" (1000 iterations, salt
        // "saltsalt").
        let django = "pbkdf2_sha256$1000$saltsalt$7yXn0aC1wCLgIKkZTFxSjbYZX5zqwSInAQugDf3LJf8=";
        store
            .create_user(NewUser {
                username: "carol".into(),
                password_hash: django.into(),
                is_active: true,
                is_superuser: false,
            })
            .await
            .unwrap();
        let hasher = PasswordHasher::new(1);
        let plain = Accounts::new(store.clone(), hasher.clone());
        let mut accounts = plain.clone();
        let changer = plain.clone();
        accounts.before_rehash_write = Some(Arc::new(move || {
            let changer = changer.clone();
            Box::pin(async move {
                let changed = changer
                    .set_password("carol", SecretString::from("carol-password-2"))
                    .await
                    .unwrap();
                assert!(changed);
            })
        }));

        // The old password was right when it was checked, so this login still succeeds.
        let user = accounts
            .authenticate("carol", SecretString::from("carol-password-1"))
            .await
            .unwrap();
        assert_eq!(user.map(|u| u.username).as_deref(), Some("carol"));

        // The new password stands, the old one no longer opens the account.
        let stored = store
            .user_by_username("carol")
            .await
            .unwrap()
            .unwrap()
            .password_hash;
        assert_eq!(
            hasher
                .verify(SecretString::from("carol-password-2"), Some(stored))
                .await
                .unwrap(),
            Verified::Match {
                needs_rehash: false
            }
        );
        let old = plain
            .authenticate("carol", SecretString::from("carol-password-1"))
            .await
            .unwrap();
        assert!(old.is_none(), "the old password still logs in");
    }

    // Login timing must not tell whether an account exists: an unknown user, a user whose
    // hash is still one of Django's (of any scheme) and a user with an argon2id hash all cost
    // the same hashing work, right or wrong password. Compared as counted work, not time.
    on_both_backends!(every_login_does_the_same_hashing_work);
    async fn every_login_does_the_same_hashing_work(store: Store) {
        store.migrate().await.unwrap();
        let hasher = PasswordHasher::new(1).with_md5(true);
        let accounts = Accounts::new(store.clone(), hasher.clone());
        accounts
            .create_user("alice", SecretString::from("alice-password-1"), false, true)
            .await
            .unwrap();
        // Made by Django 5.2's hashers for "carol-password-1", costs lowered in subclasses
        // (PBKDF2 1000 iterations and an older Django's 600, bcrypt cost 4, scrypt N = 1024,
        // r = 8, p = 2, argon2 m = 32768, t = 2, p = 2: more than doorman's own).
        for (name, hash) in [
            (
                "carol",
                "pbkdf2_sha256$1000$saltsalt$7yXn0aC1wCLgIKkZTFxSjbYZX5zqwSInAQugDf3LJf8=",
            ),
            (
                "dave",
                "pbkdf2_sha256$600$saltsalt$7yXn0aC1wCLgIKkZTFxSjbYZX5zqwSInAQugDf3LJf8=",
            ),
            ("erin", "!unusable"),
            ("sha1", SHA1),
            ("bcrypt", BCRYPT),
            ("bcrypt_sha256", BCRYPT_SHA256),
            ("scrypt", SCRYPT),
            ("argon2", ARGON2),
            ("md5", MD5),
        ] {
            store
                .create_user(NewUser {
                    username: name.into(),
                    password_hash: hash.into(),
                    is_active: true,
                    is_superuser: false,
                })
                .await
                .unwrap();
        }
        hasher.take_work();

        let mut logins = Vec::new();
        for (name, password, succeeds) in [
            ("nobody", "carol-password-1", false),
            ("alice", "wrong-password", false),
            ("alice", "alice-password-1", true),
            ("carol", "wrong-password", false),
            ("dave", "wrong-password", false),
            ("erin", "wrong-password", false),
            ("sha1", "wrong-password", false),
            ("bcrypt", "wrong-password", false),
            ("bcrypt_sha256", "wrong-password", false),
            ("scrypt", "wrong-password", false),
            ("argon2", "wrong-password", false),
            ("md5", "wrong-password", false),
            // Last: these upgrade their hashes.
            ("carol", "carol-password-1", true),
            ("sha1", "carol-password-1", true),
            ("bcrypt", "carol-password-1", true),
            ("bcrypt_sha256", "carol-password-1", true),
            ("scrypt", "carol-password-1", true),
            ("argon2", "carol-password-1", true),
            ("md5", "carol-password-1", true),
        ] {
            let user = accounts
                .authenticate(name, SecretString::from(password))
                .await
                .unwrap();
            assert_eq!(user.is_some(), succeeds, "{name}");
            // A successful login's rehash is work done after the answer is decided; only the
            // check is compared.
            let work = hasher.take_work();
            logins.push((name, work.into_iter().next().unwrap()));
        }
        // The most of each kind any stored hash asks for, for every one of them.
        let (_, unknown) = &logins[0];
        assert_eq!(
            *unknown,
            password::Cost {
                argon2: 32_768 * 2,
                pbkdf2_sha256: 1000,
                pbkdf2_sha1: 1000,
                bcrypt: 1 << 4,
                scrypt: 1024 * 8 * 2,
            }
        );
        for (name, work) in &logins {
            assert_eq!(work, unknown, "{name} against an unknown user");
        }

        // A costlier Django hash imported after the floor was read raises it at its first
        // check, for unknown users too.
        store
            .create_user(NewUser {
                username: "frank".into(),
                password_hash:
                    "pbkdf2_sha256$2000$saltsalt$7yXn0aC1wCLgIKkZTFxSjbYZX5zqwSInAQugDf3LJf8="
                        .into(),
                is_active: true,
                is_superuser: false,
            })
            .await
            .unwrap();
        for name in ["frank", "nobody", "alice"] {
            let user = accounts
                .authenticate(name, SecretString::from("wrong-password"))
                .await
                .unwrap();
            assert!(user.is_none());
            assert_eq!(
                hasher.take_work(),
                [password::Cost {
                    pbkdf2_sha256: 2000,
                    ..*unknown
                }],
                "{name}"
            );
        }
    }

    /// Made by Django 5.2's `make_password("carol-password-1", hasher=...)`.
    const SHA1: &str = "pbkdf2_sha1$1000$zQnuhxPBP7MvgMOViXe2hL$el4C7IKZnrH4jcQzCqGxsFBnYN4=";
    const BCRYPT: &str = "bcrypt$$2b$04$F8Cc2vllf.V.pbx8x1tAv.Hx6I6WG4xooH9BQUlQ0a0okbHYom.rG";
    const BCRYPT_SHA256: &str =
        "bcrypt_sha256$$2b$04$yMNvfnv2IZF0Q316ICCUb.fJZJHBIMCX0ghj/Q7TTziWkzM3N1Jde";
    const SCRYPT: &str = "scrypt$1024$d3rMyt4jcqemYzMBoON8YE$8$2$SGhNgeoZs1O50xuxmpDypWgh6UH+b8b2uIu2hJvNxAF2+BWwGHqQgq9saQB06xEQhFLiw+HcxzG8sCfOJv7maA==";
    const ARGON2: &str = "argon2$argon2id$v=19$m=32768,t=2,p=2$UUdTYXRyYmxzcndOd0IwbHRxaDNnSg$INez+9SFhLtNWWiW2xKzq0lbok4qT221e1RCKrJQ5GM";
    const MD5: &str = "md5$f9Cqcb5AL8QzUPHABQTZC7$5de0dfa47b289a714dd29761ac8c4f7d";

    #[test]
    fn passwords_have_bounds() {
        assert!(validate_password(&SecretString::from("1234567")).is_err());
        assert!(validate_password(&SecretString::from("12345678")).is_ok());
        assert!(validate_password(&SecretString::from("x".repeat(4097))).is_err());
    }
}
