//! `doorman user ...`: create, list, change and remove users from the command line (Django's
//! `createsuperuser`/`changepassword` and the admin's user list).

use std::io::{BufRead, IsTerminal};

use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};

use super::failure::Failure;
use super::start::open_store;
use crate::accounts::admin::{self, Actor};
use crate::accounts::throttle::LoginThrottle;
use crate::accounts::{Accounts, AccountsError, PasswordHasher};
use crate::audit;
use crate::config::Config;
use crate::store::{Store, StoreError};

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user; the password is asked twice on a terminal, or read from stdin
    Create(CreateArgs),
    /// List users
    List,
    /// Change a user's password (and log them out everywhere)
    SetPassword(PasswordArgs),
    /// Stop a user from logging in or refreshing (and log them out everywhere)
    Deactivate(NameArg),
    /// Let a deactivated user log in again
    Activate(NameArg),
    /// Delete a user (after logging them out everywhere)
    Delete(NameArg),
    /// Log a user out everywhere: every refresh and sliding token is blacklisted, and every
    /// token issued until now is refused (access tokens by every instance within
    /// `user_cache_ttl`)
    Revoke(NameArg),
    /// Clear a username's failed-login counters, so its logins are no longer throttled
    Unlock(NameArg),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Username: letters, digits and @/./+/-/_ (up to 150 characters)
    name: String,
    /// Read the password from the first line of standard input instead of prompting
    #[arg(long)]
    password_stdin: bool,
    /// Mark the user as a superuser
    #[arg(long)]
    superuser: bool,
    /// Create the user inactive (cannot log in until `user activate`)
    #[arg(long)]
    inactive: bool,
}

#[derive(Args, Debug)]
pub struct PasswordArgs {
    name: String,
    /// Read the password from the first line of standard input instead of prompting
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Args, Debug)]
pub struct NameArg {
    name: String,
}

pub async fn run(config: &Config, command: UserCommand) -> Result<(), Failure> {
    let store = open_store(&config.store).await?;
    let accounts = Accounts::new(
        store.clone(),
        PasswordHasher::new(config.accounts.password_hash_workers)
            .with_md5(config.accounts.accept_md5_password_hashes),
    );
    match command {
        UserCommand::Create(args) => {
            let password = read_password(args.password_stdin)?;
            let user = admin::create_user(
                &accounts,
                &args.name,
                password,
                args.superuser,
                !args.inactive,
                Actor::CommandLine,
            )
            .await
            .map_err(explain)?;
            println!("Created user {} (id {}).", user.username, user.id);
        }
        UserCommand::List => list(&store).await?,
        UserCommand::SetPassword(args) => {
            let password = read_password(args.password_stdin)?;
            if !accounts
                .set_password(&args.name, password)
                .await
                .map_err(explain)?
            {
                return Err(no_such_user(&args.name));
            }
            user_event(&store, audit::Kind::PasswordSet, &args.name, None).await;
            println!("Password changed for {}.", args.name);
            revoke(&store, &args.name, "password_set").await?;
        }
        UserCommand::Deactivate(NameArg { name }) => {
            // Two steps rather than `admin::deactivate`, so the operator reads that the
            // deactivation stands even when the logging out fails.
            if admin::set_active(&store, &name, false, Actor::CommandLine)
                .await?
                .is_none()
            {
                return Err(no_such_user(&name));
            }
            println!("Deactivated {name}.");
            revoke(&store, &name, "deactivated").await?;
        }
        UserCommand::Activate(NameArg { name }) => {
            if admin::set_active(&store, &name, true, Actor::CommandLine)
                .await?
                .is_none()
            {
                return Err(no_such_user(&name));
            }
            println!("Activated {name}.");
        }
        UserCommand::Delete(NameArg { name }) => {
            // The id is read first: afterwards there is no user to read it from. The tokens
            // are revoked first too: once the user is gone, their token rows no longer name
            // them.
            let id = store.user_by_username(&name).await?.map(|u| u.id);
            if id.is_some() {
                revoke(&store, &name, "deleted").await?;
            }
            if !store.delete_user(&name).await? {
                return Err(no_such_user(&name));
            }
            user_event(&store, audit::Kind::UserDeleted, &name, id).await;
            println!("Deleted {name}.");
        }
        UserCommand::Revoke(NameArg { name }) => revoke(&store, &name, "cli").await?,
        UserCommand::Unlock(NameArg { name }) => unlock(config, &store, &name).await?,
    }
    Ok(())
}

/// Logs the user out everywhere (see `Store::revoke_user_tokens`) and records why. A failure
/// after the change it follows (a password set, a deactivation) is reported as such, so the
/// operator knows to run `user revoke` again.
async fn revoke(store: &Store, name: &str, reason: &str) -> Result<(), Failure> {
    let revocation = match admin::revoke(store, name, reason, Actor::CommandLine).await {
        Ok(Some((_, revocation))) => revocation,
        Ok(None) => return Err(no_such_user(name)),
        Err(e) if reason != "cli" => {
            return Err(Failure::runtime(format!(
                "could not log {name} out everywhere ({e}); run `doorman user revoke {name}` \
                 once the database answers"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "Logged {name} out everywhere: {} refresh or sliding tokens blacklisted, every token issued until now refused.",
        revocation.blacklisted
    );
    Ok(())
}

/// Clears the username's failures from anywhere and from every address, in the database or
/// Redis (wherever the server keeps them). A name that is no user's is cleared too when it
/// has counters (an attacker's guesses), and refused only when there was nothing to clear.
async fn unlock(config: &Config, store: &Store, name: &str) -> Result<(), Failure> {
    let throttle = LoginThrottle::new(&config.accounts.login_throttle, store.clone())?;
    let Some(admin::Unlocked { cleared, .. }) =
        admin::unlock(&throttle, store, name, Actor::CommandLine).await?
    else {
        return Err(no_such_user(name));
    };
    let plural = if cleared == 1 { "" } else { "s" };
    println!(
        "Unlocked {name}: cleared {cleared} failed-login counter{plural} ({}).",
        throttle.backend()
    );
    Ok(())
}

/// Records a change made to a user; `id` when already known, else it is looked up (a failed
/// lookup leaves it out rather than failing a command whose change is made).
async fn user_event(store: &Store, kind: audit::Kind, name: &str, id: Option<i64>) {
    let id = match id {
        Some(id) => Some(id),
        None => store
            .user_by_username(name)
            .await
            .ok()
            .flatten()
            .map(|u| u.id),
    };
    audit::Event::new(kind)
        .username(name)
        .user_id(id)
        .record(store)
        .await;
}

async fn list(store: &Store) -> Result<(), Failure> {
    let users = store.list_users().await?;
    println!(
        "{:>6}  {:<24} {:<6} {:<9} {:<20} joined",
        "id", "username", "active", "superuser", "last login"
    );
    let when = |t: Option<time::OffsetDateTime>| {
        t.map_or_else(|| "never".to_owned(), super::token::human_time)
    };
    for u in users {
        println!(
            "{:>6}  {:<24} {:<6} {:<9} {:<20} {}",
            u.id,
            u.username,
            if u.is_active { "yes" } else { "no" },
            if u.is_superuser { "yes" } else { "no" },
            when(u.last_login),
            when(Some(u.date_joined)),
        );
    }
    Ok(())
}

fn no_such_user(name: &str) -> Failure {
    Failure::runtime(format!("no user named {name:?}"))
}

fn explain(error: AccountsError) -> Failure {
    match error {
        AccountsError::Store(StoreError::UsernameTaken) => {
            Failure::runtime("that username is already taken")
        }
        AccountsError::Rejected(reason) => Failure::runtime(reason),
        other => Failure::runtime(other),
    }
}

/// The new password: from stdin's first line with `--password-stdin`, else asked twice
/// without echo on the terminal.
fn read_password(from_stdin: bool) -> Result<SecretString, Failure> {
    if from_stdin {
        return password_from_stdin();
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "no terminal to ask for the password on; pipe it in with --password-stdin",
        ));
    }
    let first = SecretString::from(rpassword::prompt_password("Password: ")?);
    let second = SecretString::from(rpassword::prompt_password("Password (again): ")?);
    if first.expose_secret() != second.expose_secret() {
        return Err(Failure::runtime("the two passwords differ"));
    }
    Ok(first)
}

/// A password from the first line of standard input (its line ending removed).
pub(super) fn password_from_stdin() -> Result<SecretString, Failure> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Err(Failure::runtime("no password on standard input"));
    }
    Ok(SecretString::from(line.to_owned()))
}
