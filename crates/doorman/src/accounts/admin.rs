//! Administering users: the changes `doorman user` and the superuser admin API both make
//! (create, deactivate, activate, unlock, log out everywhere), each recorded in the audit
//! trail. A change made through the API names the superuser who made it (`"by"` in the
//! event's detail) and the client they made it from.

use secrecy::SecretString;
use serde_json::{Value, json};

use super::throttle::LoginThrottle;
use super::{Accounts, AccountsError};
use crate::audit::{self, Client};
use crate::store::{Revocation, Store, StoreError, User};

/// Who makes a change.
#[derive(Clone, Copy, Debug)]
pub enum Actor<'a> {
    /// An operator at the command line.
    CommandLine,
    /// A superuser through the admin API, from this client.
    Superuser {
        username: &'a str,
        client: &'a Client,
    },
}

impl Actor<'_> {
    /// An event about `username` (whose id is `user_id`, when known), made by this actor.
    fn event(&self, kind: audit::Kind, username: &str, user_id: Option<i64>) -> audit::Event {
        let event = audit::Event::new(kind).username(username).user_id(user_id);
        match self {
            Actor::CommandLine => event,
            Actor::Superuser { client, .. } => event.client(client),
        }
    }

    /// `detail` with the acting superuser's name added; `None` for an operator's change that
    /// has no detail of its own.
    fn detail(&self, detail: Option<Value>) -> Option<Value> {
        match (self, detail) {
            (Actor::CommandLine, detail) => detail,
            (Actor::Superuser { username, .. }, None) => Some(json!({ "by": username })),
            (Actor::Superuser { username, .. }, Some(mut detail)) => {
                if let Some(object) = detail.as_object_mut() {
                    object.insert("by".into(), json!(username));
                }
                Some(detail)
            }
        }
    }

    async fn record(
        &self,
        store: &Store,
        kind: audit::Kind,
        username: &str,
        user_id: Option<i64>,
        detail: Option<Value>,
    ) {
        let mut event = self.event(kind, username, user_id);
        if let Some(detail) = self.detail(detail) {
            event = event.detail(detail);
        }
        event.record(store).await;
    }
}

/// Creates a user (the username and password rules hold) and records it.
pub async fn create_user(
    accounts: &Accounts,
    username: &str,
    password: SecretString,
    superuser: bool,
    active: bool,
    actor: Actor<'_>,
) -> Result<User, AccountsError> {
    let user = accounts
        .create_user(username, password, superuser, active)
        .await?;
    let detail = json!({"superuser": user.is_superuser, "active": user.is_active});
    actor
        .record(
            accounts.store(),
            audit::Kind::UserCreated,
            &user.username,
            Some(user.id),
            Some(detail),
        )
        .await;
    Ok(user)
}

/// Marks the user active or not and records it; `None` when there is no such user. A
/// deactivation alone does not end the user's sessions: [`deactivate`] does both.
pub async fn set_active(
    store: &Store,
    username: &str,
    active: bool,
    actor: Actor<'_>,
) -> Result<Option<User>, StoreError> {
    if !store.set_active(username, active).await? {
        return Ok(None);
    }
    let user = store.user_by_username(username).await?;
    let kind = if active {
        audit::Kind::UserActivated
    } else {
        audit::Kind::UserDeactivated
    };
    actor
        .record(store, kind, username, user.as_ref().map(|u| u.id), None)
        .await;
    Ok(user)
}

/// Logs the user out everywhere (see `Store::revoke_user_tokens`) and records `reason`;
/// `None` when there is no such user.
pub async fn revoke(
    store: &Store,
    username: &str,
    reason: &str,
    actor: Actor<'_>,
) -> Result<Option<(i64, Revocation)>, StoreError> {
    let Some(user) = store.user_by_username(username).await? else {
        return Ok(None);
    };
    let Some(revocation) = store.revoke_user_tokens(user.id).await? else {
        return Ok(None);
    };
    let detail = json!({"reason": reason, "blacklisted": revocation.blacklisted});
    actor
        .record(
            store,
            audit::Kind::TokensRevoked,
            username,
            Some(user.id),
            Some(detail),
        )
        .await;
    Ok(Some((user.id, revocation)))
}

/// A deactivation that ends the user's sessions at once: marked inactive, then logged out
/// everywhere. `None` when there is no such user.
pub async fn deactivate(
    store: &Store,
    username: &str,
    actor: Actor<'_>,
) -> Result<Option<(User, Revocation)>, StoreError> {
    if set_active(store, username, false, actor).await?.is_none() {
        return Ok(None);
    }
    let Some((id, revocation)) = revoke(store, username, "deactivated", actor).await? else {
        return Ok(None);
    };
    Ok(store.user_by_id(id).await?.map(|user| (user, revocation)))
}

/// What [`unlock`] did.
#[derive(Debug)]
pub struct Unlocked {
    /// Failed-login counters cleared.
    pub cleared: u64,
    /// The user of that name, if there is one.
    pub user: Option<User>,
}

/// Clears the username's failed-login counters from anywhere and every address, in the
/// database or Redis (wherever the server keeps them), and records it. A name that is no
/// user's is cleared too when it has counters (an attacker's guesses); `None` only when it
/// is no user's and there was nothing to clear.
pub async fn unlock(
    throttle: &LoginThrottle,
    store: &Store,
    username: &str,
    actor: Actor<'_>,
) -> Result<Option<Unlocked>, StoreError> {
    let cleared = throttle.unlock(username).await?;
    let user = store.user_by_username(username).await?;
    if user.is_none() && cleared == 0 {
        return Ok(None);
    }
    let detail = json!({"counters": cleared, "in": throttle.backend()});
    actor
        .record(
            store,
            audit::Kind::UserUnlocked,
            username,
            user.as_ref().map(|u| u.id),
            Some(detail),
        )
        .await;
    Ok(Some(Unlocked { cleared, user }))
}
