//! `doorman import django --from URL`: copies a Django deployment's users and simplejwt's
//! refresh tokens into doorman's database (see `crate::import`), or with `--dry-run` says what
//! it would copy. Run it again to bring over what changed in Django since.

use clap::{Args, Subcommand};
use serde_json::json;

use super::failure::Failure;
use super::start::open_store;
use crate::audit;
use crate::config::Config;
use crate::import::django::{DjangoDatabase, UserTable};
use crate::import::{self, Options, Report};

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Copy users (ids, password hashes, flags, names) and simplejwt's outstanding and
    /// blacklisted refresh tokens from a Django database; safe to run again
    Django(DjangoArgs),
}

#[derive(Args, Debug)]
pub struct DjangoArgs {
    /// The Django database, opened read-only: a SQLite file's path or sqlite:// URL, or a
    /// postgres:// URL
    #[arg(long = "from", value_name = "DATABASE_URL")]
    source: String,
    /// The table of a custom user model (AUTH_USER_MODEL) with auth_user's columns
    #[arg(long, value_name = "NAME", default_value = "auth_user")]
    user_table: String,
    /// Read everything and report what would be done, writing nothing
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(config: &Config, command: ImportCommand) -> Result<(), Failure> {
    let ImportCommand::Django(args) = command;
    let user_table = UserTable::parse(&args.user_table).map_err(Failure::usage)?;
    let store = open_store(&config.store).await?;
    let (mut source, name) = DjangoDatabase::open(&args.source)
        .await
        .map_err(Failure::runtime)?;
    let options = Options {
        user_table,
        dry_run: args.dry_run,
        now: crate::unix_now(),
        leeway: config.tokens.rules.leeway,
        accept_md5: config.accounts.accept_md5_password_hashes,
    };
    let report = import::run(&mut source, &name, &store, &options).await;
    source.close().await;
    let report = report.map_err(Failure::runtime)?;
    if !report.dry_run {
        record(&store, &report).await;
    }
    print!("{report}");
    Ok(())
}

/// The audit trail of a written import: one event with its counts, and for each user it
/// deactivated the events `user deactivate` records.
async fn record(store: &crate::store::Store, report: &Report) {
    for user in &report.deactivated {
        audit::Event::new(audit::Kind::UserDeactivated)
            .username(&user.username)
            .user_id(Some(user.id))
            .detail(json!({"by": "django_import"}))
            .record(store)
            .await;
        audit::Event::new(audit::Kind::TokensRevoked)
            .username(&user.username)
            .user_id(Some(user.id))
            .detail(json!({"reason": "deactivated", "blacklisted": user.blacklisted}))
            .record(store)
            .await;
    }
    audit::Event::new(audit::Kind::DjangoImported)
        .detail(json!({
            "users_added": report.users.added,
            "users_updated": report.users.updated,
            "users_skipped": report.users.skipped,
            "tokens_added": report.tokens.added,
            "tokens_skipped": report.tokens.skipped,
            "blacklisted": report.blacklisted,
        }))
        .record(store)
        .await;
}
