//! The audit trail: security events (logins, password and account changes, signing key
//! changes), each written to the `audit_events` table and logged as a `tracing` event with the
//! target `doorman::audit`, so a log pipeline can pick them out. Nothing recorded here may
//! carry a password or a token; callers pass names, ids and addresses only.

use time::OffsetDateTime;

use crate::store::{AUDIT_USER_AGENT_MAX, AuditEvent, Store};

/// What happened. The names are what the table and the log hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    LoginSucceeded,
    LoginFailed,
    LoginThrottled,
    PasswordSet,
    UserCreated,
    UserDeactivated,
    UserActivated,
    UserDeleted,
    /// Every token of a user revoked (log out everywhere); `detail` says why.
    TokensRevoked,
    UserUnlocked,
    KeyGenerated,
    KeyRotated,
    KeyRetired,
    /// A rotated-out refresh token was presented after the grace window and its family revoked.
    FamilyRevoked,
    /// `doorman import django` wrote users and tokens; `detail` has the counts.
    DjangoImported,
    /// A user ended one of their sessions (a refresh-token family); `detail` names it.
    SessionRevoked,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::LoginSucceeded => "login_succeeded",
            Kind::LoginFailed => "login_failed",
            Kind::LoginThrottled => "login_throttled",
            Kind::PasswordSet => "password_set",
            Kind::UserCreated => "user_created",
            Kind::UserDeactivated => "user_deactivated",
            Kind::UserActivated => "user_activated",
            Kind::UserDeleted => "user_deleted",
            Kind::TokensRevoked => "tokens_revoked",
            Kind::UserUnlocked => "user_unlocked",
            Kind::KeyGenerated => "key_generated",
            Kind::KeyRotated => "key_rotated",
            Kind::KeyRetired => "key_retired",
            Kind::FamilyRevoked => "family_revoked",
            Kind::DjangoImported => "django_imported",
            Kind::SessionRevoked => "session_revoked",
        }
    }
}

/// An event about to be recorded, built up from its kind.
#[derive(Clone, Debug)]
pub struct Event(AuditEvent);

impl Event {
    pub fn new(kind: Kind) -> Event {
        Event(AuditEvent {
            at: OffsetDateTime::now_utc(),
            kind: kind.as_str().to_owned(),
            username: None,
            user_id: None,
            client_addr: None,
            user_agent: None,
            detail: None,
        })
    }

    /// The username as given, cut to [`AUDIT_USER_AGENT_MAX`] characters: a failed login's
    /// name is the client's to choose, up to the whole body, and no user has one that long.
    pub fn username(mut self, username: impl Into<String>) -> Event {
        self.0.username = Some(bounded(username.into()));
        self
    }

    pub fn user_id(mut self, user_id: Option<i64>) -> Event {
        self.0.user_id = user_id;
        self
    }

    /// Who made the request: the client's address and user agent, when known.
    pub fn client(mut self, client: &Client) -> Event {
        self.0.client_addr = client.addr_text();
        // Cut here rather than only in the store, so the log line is bounded too.
        self.0.user_agent = client.user_agent_text();
        self
    }

    /// A JSON object of what names the thing acted on (a key id), never a secret.
    pub fn detail(mut self, detail: serde_json::Value) -> Event {
        self.0.detail = Some(detail.to_string());
        self
    }

    /// Logs the event and writes it to the store. A failed write is logged and otherwise
    /// ignored: the audit trail must not turn a login (or a command that already did its work)
    /// into a failure.
    pub async fn record(self, store: &Store) {
        let event = self.0;
        tracing::info!(
            target: "doorman::audit",
            kind = %event.kind,
            username = event.username.as_deref(),
            user_id = event.user_id,
            client_addr = event.client_addr.as_deref(),
            user_agent = event.user_agent.as_deref(),
            detail = event.detail.as_deref(),
            "audit event"
        );
        if let Err(e) = store.record_audit(&event).await {
            tracing::warn!(
                target: "doorman::audit",
                kind = %event.kind,
                error = %e,
                "could not write the audit event"
            );
        }
    }
}

/// `text` up to its [`AUDIT_USER_AGENT_MAX`]th character.
pub(crate) fn bounded(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(AUDIT_USER_AGENT_MAX) {
        text.truncate(cut);
    }
    text
}

/// Who made a request, as far as the audit trail cares: kept as the request had it (an
/// address, a shared header value), so a request that records nothing makes no string of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Client {
    pub addr: Option<std::net::IpAddr>,
    pub user_agent: Option<http::HeaderValue>,
}

impl Client {
    /// The address as text, as the store keeps it.
    pub fn addr_text(&self) -> Option<String> {
        self.addr.map(|ip| ip.to_string())
    }

    /// The user agent as text (bytes that aren't UTF-8 replaced), cut to
    /// [`AUDIT_USER_AGENT_MAX`] characters.
    pub fn user_agent_text(&self) -> Option<String> {
        self.user_agent
            .as_ref()
            .map(|agent| bounded(String::from_utf8_lossy(agent.as_bytes()).into_owned()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn what_the_client_chose_is_cut_to_the_bound() {
        let long = "ü".repeat(AUDIT_USER_AGENT_MAX + 1);
        let client = Client {
            addr: None,
            user_agent: Some(http::HeaderValue::from_str(&long).unwrap()),
        };
        let Event(event) = Event::new(Kind::LoginFailed).username(long).client(&client);
        let expected = Some("ü".repeat(AUDIT_USER_AGENT_MAX));
        assert_eq!(event.username, expected);
        assert_eq!(event.user_agent, expected);
        let Event(event) = Event::new(Kind::LoginFailed).username("ann");
        assert_eq!(event.username.as_deref(), Some("ann"));
    }
}
