//! Moving a Django deployment onto doorman: its users, with their ids and password hashes,
//! and simplejwt's outstanding and blacklisted refresh tokens, so that nobody has to reset a
//! password or log in again. Safe to run again and again until the cutover: each run brings
//! over what changed in Django since the last, and a dry run writes nothing.
//!
//! What can't be taken (a username doorman refuses, a hash scheme it can't check, a user whose
//! id or name another doorman user has) is skipped with the reason, never half-written: a user
//! and its tokens land in one savepoint or not at all.

pub mod django;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use crate::accounts::{password, validate_username};
use crate::store::import::{ImportItem, ImportedToken, TokenOutcome, UserOutcome};
use crate::store::{Store, StoreError};

use django::{DjangoDatabase, DjangoToken, DjangoUser, SourceError, UserTable};

/// Items (a user and its tokens) written per transaction: small enough that a running
/// doorman on SQLite waits for its write lock only briefly, large enough that a big import
/// doesn't pay one commit per user.
const BATCH: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How an import runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub user_table: UserTable,
    /// Write nothing: every batch's transaction is rolled back, and the id counter is left.
    pub dry_run: bool,
    /// Unix seconds; tokens expired by then (allowing for `leeway`) are left out.
    pub now: i64,
    /// The tokens' leeway: a token still decodes until `exp + leeway`.
    pub leeway: Duration,
    /// Django's salted MD5 hashes are taken (the `accept_md5_password_hashes` setting), so
    /// that what is imported is exactly what can log in.
    pub accept_md5: bool,
}

/// Counts of one kind of row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: u64,
}

/// A user this import deactivated (and so logged out everywhere).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deactivated {
    pub id: i64,
    pub username: String,
    pub blacklisted: u64,
}

/// What an import did (or, dry, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The Django database, as the report names it.
    pub source: String,
    pub user_table: String,
    pub dry_run: bool,
    pub users_read: u64,
    /// `None` when the Django database has no simplejwt blacklist tables.
    pub tokens_read: Option<u64>,
    pub blacklisted_read: u64,
    pub users: Counts,
    /// Refresh tokens (`updated` stays 0: a token row has nothing to update).
    pub tokens: Counts,
    /// Tokens left out for having expired.
    pub expired: u64,
    /// Tokens blacklisted here because Django had them blacklisted.
    pub blacklisted: u64,
    pub already_blacklisted: u64,
    pub deactivated: Vec<Deactivated>,
    /// One line per skipped row or group of rows, and per updated user.
    pub details: Vec<String>,
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dry_run {
            writeln!(
                f,
                "Dry run: nothing was written; this is what the import would do."
            )?;
        }
        let tokens = match self.tokens_read {
            Some(n) => format!(
                "{} ({} blacklisted)",
                plural(n, "refresh token", "refresh tokens"),
                self.blacklisted_read
            ),
            None => "no refresh tokens (no simplejwt blacklist tables)".to_owned(),
        };
        writeln!(
            f,
            "Read the Django {}: {} in {}, {tokens}.",
            self.source,
            plural(self.users_read, "user", "users"),
            self.user_table
        )?;
        let u = &self.users;
        writeln!(
            f,
            "Users: {} added, {} updated, {} unchanged, {} skipped.",
            u.added, u.updated, u.unchanged, u.skipped
        )?;
        let t = &self.tokens;
        writeln!(
            f,
            "Refresh tokens: {} added, {} unchanged, {} expired (left out), {} skipped.",
            t.added, t.unchanged, self.expired, t.skipped
        )?;
        writeln!(
            f,
            "Blacklisted: {} added, {} already blacklisted.",
            self.blacklisted, self.already_blacklisted
        )?;
        for line in &self.details {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Reads the Django database and writes what it found into `store`; see the module's text.
pub async fn run(
    source: &mut DjangoDatabase,
    source_name: &str,
    store: &Store,
    options: &Options,
) -> Result<Report, ImportError> {
    let snapshot = source.read(&options.user_table).await?;
    let mut report = Report {
        source: source_name.to_owned(),
        user_table: options.user_table.name().to_owned(),
        dry_run: options.dry_run,
        users_read: snapshot.users.len() as u64,
        tokens_read: snapshot.tokens.as_ref().map(|t| t.len() as u64),
        blacklisted_read: snapshot
            .tokens
            .iter()
            .flatten()
            .flatten()
            .fold(0, |n, t| n + u64::from(t.blacklisted_at.is_some())),
        ..Report::default()
    };

    let mut items = Vec::new();
    let mut item_of: HashMap<i64, usize> = HashMap::new();
    let mut skipped_users: HashSet<i64> = HashSet::new();
    // Every Django id, the skipped users' too: one of them may be taken on a later run.
    let most = snapshot
        .users
        .iter()
        .filter_map(|u| match u {
            Ok(user) => Some(user.id),
            Err(unreadable) => unreadable.user_id,
        })
        .max();
    for user in snapshot.users {
        match user
            .map_err(|u| (u.user_id, u.what, u.reason))
            .and_then(|user| {
                admissible(&user, options.accept_md5).map_err(|reason| {
                    (
                        Some(user.id),
                        format!("user {} ({:?})", user.id, user.username),
                        reason,
                    )
                })?;
                Ok(user)
            }) {
            Ok(user) => {
                item_of.insert(user.id, items.len());
                items.push(ImportItem {
                    user: Some(user),
                    tokens: Vec::new(),
                });
            }
            Err((id, what, reason)) => {
                report.users.skipped += 1;
                report.details.push(format!("Skipped {what}: {reason}."));
                skipped_users.extend(id);
            }
        }
    }

    let leeway = i64::try_from(options.leeway.as_secs()).unwrap_or(i64::MAX);
    // Tokens of users skipped before writing, by user, for one line each.
    let mut left_with_user: HashMap<i64, u64> = HashMap::new();
    let mut strangers: HashMap<i64, u64> = HashMap::new();
    for token in snapshot.tokens.into_iter().flatten() {
        let token = match token {
            Ok(token) => token,
            Err(unreadable) => {
                report.tokens.skipped += 1;
                report.details.push(format!(
                    "Skipped {}: {}.",
                    unreadable.what, unreadable.reason
                ));
                continue;
            }
        };
        if token.expires_at.saturating_add(leeway) <= options.now {
            report.expired += 1;
            continue;
        }
        match token.user_id {
            None => items.push(ImportItem {
                user: None,
                tokens: vec![imported_token(token)],
            }),
            Some(id) => match item_of.get(&id) {
                Some(&at) => items[at].tokens.push(imported_token(token)),
                None if skipped_users.contains(&id) => {
                    *left_with_user.entry(id).or_default() += 1;
                }
                None => *strangers.entry(id).or_default() += 1,
            },
        }
    }
    for (id, n) in sorted(left_with_user) {
        report.tokens.skipped += n;
        report.details.push(format!(
            "Skipped {} of user {id}: the user was skipped.",
            plural(n, "refresh token", "refresh tokens")
        ));
    }
    for (id, n) in sorted(strangers) {
        report.tokens.skipped += n;
        report.details.push(format!(
            "Skipped {} of user {id}: there is no user {id} in {}.",
            plural(n, "refresh token", "refresh tokens"),
            report.user_table
        ));
    }

    // Before any user is written, so a user created here meanwhile can't take a Django id.
    if let Some(most) = most
        && !options.dry_run
    {
        store.reserve_user_ids(most).await?;
    }

    for batch in items.chunks(BATCH) {
        let outcomes = store.import_batch(batch, options.dry_run).await?;
        for (item, outcome) in batch.iter().zip(outcomes) {
            tally(&mut report, item, outcome);
        }
    }
    Ok(report)
}

/// Whether doorman can take the user as it is: a username by its rules, a hash it can check.
fn admissible(user: &DjangoUser, accept_md5: bool) -> Result<(), String> {
    validate_username(&user.username)
        .map_err(|e| format!("the username breaks doorman's rules ({e})"))?;
    password::recognized_with(&user.password_hash, accept_md5).map_err(str::to_owned)
}

fn imported_token(token: DjangoToken) -> ImportedToken {
    ImportedToken {
        jti: token.jti,
        created_at: token.created_at,
        expires_at: token.expires_at,
        blacklisted_at: token.blacklisted_at,
    }
}

fn sorted(counts: HashMap<i64, u64>) -> Vec<(i64, u64)> {
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_unstable();
    counts
}

/// Adds one item's outcome to the report.
fn tally(
    report: &mut Report,
    item: &ImportItem,
    outcome: Result<crate::store::import::ItemOutcome, StoreError>,
) {
    let who = item
        .user
        .as_ref()
        .map(|u| format!("user {} ({:?})", u.id, u.username));
    let tokens = item.tokens.len() as u64;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            // Rolled back whole: the user and every token of it.
            report.tokens.skipped += tokens;
            match &who {
                Some(who) => {
                    report.users.skipped += 1;
                    report.details.push(format!(
                        "Skipped {who} and its {}: it could not be written ({e}).",
                        plural(tokens, "refresh token", "refresh tokens")
                    ));
                }
                None => report.details.push(format!(
                    "Skipped {}: it could not be written ({e}).",
                    plural(tokens, "refresh token", "refresh tokens")
                )),
            }
            return;
        }
    };
    if let (Some(user), Some(who)) = (&outcome.user, &who) {
        let with_tokens = if tokens > 0 {
            format!(
                "; its {} too",
                plural(tokens, "refresh token", "refresh tokens")
            )
        } else {
            String::new()
        };
        match user {
            UserOutcome::Added => report.users.added += 1,
            UserOutcome::Unchanged => report.users.unchanged += 1,
            UserOutcome::Updated { changed, revoked } => {
                report.users.updated += 1;
                let mut line = format!("Updated {who}: {}", changed.join(", "));
                if let (Some(blacklisted), Some(u)) = (revoked, &item.user) {
                    line.push_str(&format!(
                        "; deactivated, so logged out everywhere ({} blacklisted)",
                        plural(*blacklisted, "refresh token", "refresh tokens")
                    ));
                    report.deactivated.push(Deactivated {
                        id: u.id,
                        username: u.username.clone(),
                        blacklisted: *blacklisted,
                    });
                }
                line.push('.');
                report.details.push(line);
            }
            UserOutcome::IdTaken { username } => {
                report.users.skipped += 1;
                report.tokens.skipped += tokens;
                let id = item.user.as_ref().map_or(0, |u| u.id);
                report.details.push(format!(
                    "Skipped {who}: the id is doorman's user {username:?}{with_tokens}. \
                     Django's tokens naming user {id} would act as {username:?} here: \
                     delete that user or give the Django user another id before the cutover."
                ));
            }
            UserOutcome::UsernameTaken { id } => {
                report.users.skipped += 1;
                report.tokens.skipped += tokens;
                report.details.push(format!(
                    "Skipped {who}: doorman's user {id} has the username{with_tokens}."
                ));
            }
        }
    }
    let TokenOutcome {
        added,
        unchanged,
        blacklisted,
        already_blacklisted,
        other_owner,
    } = outcome.tokens;
    report.tokens.added += added;
    report.tokens.unchanged += unchanged;
    report.blacklisted += blacklisted;
    report.already_blacklisted += already_blacklisted;
    if other_owner > 0 {
        report.tokens.skipped += other_owner;
        report.details.push(format!(
            "Skipped {} of {}: recorded here for another user.",
            plural(other_owner, "refresh token", "refresh tokens"),
            who.as_deref().unwrap_or("no user")
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn user(name: &str, hash: &str) -> DjangoUser {
        DjangoUser {
            id: 1,
            username: name.into(),
            password_hash: hash.into(),
            is_active: true,
            is_superuser: false,
            is_staff: false,
            email: String::new(),
            first_name: String::new(),
            last_name: String::new(),
            last_login: None,
            date_joined: 0,
        }
    }

    #[test]
    fn users_doorman_cannot_take_are_refused_with_the_reason() {
        assert_eq!(
            admissible(&user("alice", "pbkdf2_sha256$1$s$h"), false),
            Ok(())
        );
        assert_eq!(admissible(&user("alice", "!unusable"), false), Ok(()));
        assert_eq!(
            admissible(&user("bad name", "pbkdf2_sha256$1$s$h"), false),
            Err(
                "the username breaks doorman's rules (a username may contain only letters, \
                 digits and @/./+/-/_)"
                    .into()
            )
        );
        assert_eq!(
            admissible(&user("carol", "md5$salt$0123"), false),
            Err("MD5 password hash refused (accept_md5_password_hashes is off)".into())
        );
        assert_eq!(admissible(&user("carol", "md5$salt$0123"), true), Ok(()));
        assert_eq!(
            admissible(&user("erin", "crypt$$abc"), true),
            Err("unknown password hash scheme".into())
        );
        assert_eq!(
            admissible(&user("dave", ""), false),
            Err("not a password hash".into())
        );
    }

    #[test]
    fn the_report_says_counts_then_details() {
        let report = Report {
            source: "SQLite database /tmp/db.sqlite3".into(),
            user_table: "auth_user".into(),
            dry_run: true,
            users_read: 1,
            tokens_read: Some(2),
            blacklisted_read: 1,
            users: Counts {
                added: 1,
                ..Counts::default()
            },
            tokens: Counts {
                added: 1,
                ..Counts::default()
            },
            expired: 1,
            blacklisted: 0,
            already_blacklisted: 0,
            deactivated: Vec::new(),
            details: vec!["Skipped user 2 (\"x y\"): because.".into()],
        };
        assert_eq!(
            report.to_string(),
            "Dry run: nothing was written; this is what the import would do.\n\
             Read the Django SQLite database /tmp/db.sqlite3: 1 user in auth_user, 2 refresh \
             tokens (1 blacklisted).\n\
             Users: 1 added, 0 updated, 0 unchanged, 0 skipped.\n\
             Refresh tokens: 1 added, 0 unchanged, 1 expired (left out), 0 skipped.\n\
             Blacklisted: 0 added, 0 already blacklisted.\n\
             Skipped user 2 (\"x y\"): because.\n"
        );
    }
}
