//! `doorman audit [--user NAME] [--since 1h] [--json]`: the audit trail (logins, user and
//! password changes, key changes), oldest first so the newest is at the bottom of the
//! terminal and the output reads like a log (`tail` shows the latest).
//!
//! Text, one event a line: the time, the kind, then `user=`, `id=`, `from=`, `agent=` and
//! `detail=` for what the event has. The username and user agent are the client's to choose,
//! so they are printed quoted and escaped: no value can start a line of its own. With `--json`,
//! one JSON object a line, every field present (`null` when unknown) and `detail` as the
//! object it was recorded as.

use clap::Args;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::failure::Failure;
use super::start::open_store;
use crate::config::Config;
use crate::config::values::parse_duration;
use crate::store::{AuditEvent, AuditFilter};

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only the events of this username (as given at login, or as the command named it)
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Only the events of this last while: seconds or a duration like 30m, 1h, 7d
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
    /// One JSON object a line instead of text
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Config, args: AuditArgs) -> Result<(), Failure> {
    let since = match &args.since {
        Some(text) => {
            let ago = parse_duration(text)
                .and_then(|d| time::Duration::try_from(d).ok())
                .ok_or_else(|| {
                    Failure::usage(format!(
                        "--since {text:?}: expected seconds or a duration like 30m, 1h or 7d"
                    ))
                })?;
            Some(
                OffsetDateTime::now_utc()
                    .checked_sub(ago)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            )
        }
        None => None,
    };
    let store = open_store(&config.store).await?;
    let filter = AuditFilter {
        username: args.user,
        since,
    };
    for event in store.audit_events(&filter).await? {
        if args.json {
            println!("{}", json_line(&event));
        } else {
            println!("{}", text_line(&event));
        }
    }
    Ok(())
}

fn text_line(event: &AuditEvent) -> String {
    let mut line = format!("{}  {}", super::token::human_time(event.at), event.kind);
    if let Some(name) = &event.username {
        line.push_str(&format!(" user={name:?}"));
    }
    if let Some(id) = event.user_id {
        line.push_str(&format!(" id={id}"));
    }
    if let Some(addr) = &event.client_addr {
        line.push_str(&format!(" from={addr}"));
    }
    if let Some(agent) = &event.user_agent {
        line.push_str(&format!(" agent={agent:?}"));
    }
    if let Some(detail) = &event.detail {
        line.push_str(&format!(" detail={}", detail_value(detail)));
    }
    line
}

fn json_line(event: &AuditEvent) -> Value {
    json!({
        "at": event.at.format(&Rfc3339).unwrap_or_else(|_| event.at.unix_timestamp().to_string()),
        "kind": event.kind,
        "username": event.username,
        "user_id": event.user_id,
        "client_addr": event.client_addr,
        "user_agent": event.user_agent,
        "detail": event.detail.as_deref().map(detail_value),
    })
}

/// The detail as recorded: a JSON object; anything else (written by hand into the table) is
/// kept as a string rather than refused.
fn detail_value(detail: &str) -> Value {
    serde_json::from_str(detail).unwrap_or_else(|_| Value::String(detail.to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn event() -> AuditEvent {
        AuditEvent {
            at: OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap(),
            kind: "login_failed".into(),
            username: Some("mal\nlory".into()),
            user_id: None,
            client_addr: Some("192.0.2.7".into()),
            user_agent: Some("curl/8.5 \"x\"".into()),
            detail: None,
        }
    }

    #[test]
    fn a_line_of_text_escapes_what_the_client_chose() {
        assert_eq!(
            text_line(&event()),
            r#"2026-05-28 20:26:40 UTC  login_failed user="mal\nlory" from=192.0.2.7 agent="curl/8.5 \"x\"""#
        );
        let mut key = event();
        key.kind = "key_retired".into();
        key.username = None;
        key.client_addr = None;
        key.user_agent = None;
        key.detail = Some(r#"{"kid":"k1","by":"command"}"#.into());
        assert_eq!(
            text_line(&key),
            r#"2026-05-28 20:26:40 UTC  key_retired detail={"kid":"k1","by":"command"}"#
        );
    }

    #[test]
    fn a_json_line_has_every_field() {
        let mut e = event();
        e.user_id = Some(3);
        e.detail = Some(r#"{"superuser":false}"#.into());
        assert_eq!(
            json_line(&e).to_string(),
            r#"{"at":"2026-05-28T20:26:40Z","kind":"login_failed","username":"mal\nlory","user_id":3,"client_addr":"192.0.2.7","user_agent":"curl/8.5 \"x\"","detail":{"superuser":false}}"#
        );
        e.detail = Some("not json".into());
        assert_eq!(json_line(&e)["detail"], "not json");
    }
}
