//! The command line: one subcommand group per file. Exit codes: 0 ok, 1 runtime failure,
//! 2 usage error; errors go to stderr as one line.

mod audit;
mod check;
mod client;
mod failure;
mod flush;
mod import;
mod keys;
mod migrate;
mod openapi;
mod serve;
mod start;
mod token;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides};

pub use failure::Failure;

#[derive(Parser, Debug)]
#[command(
    name = "doorman",
    version,
    about = "An authentication server speaking djangorestframework-simplejwt's HTTP contract"
)]
pub struct Cli {
    /// Settings file (default: ./doorman.toml when it exists)
    #[arg(long, global = true, env = "DOORMAN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Database URL (overrides DOORMAN_DATABASE_URL and the file), e.g. sqlite://doorman.sqlite3
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Data directory for the SQLite database and the generated key (default: ./doorman-data)
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP server (applies pending migrations first)
    Serve(serve::ServeArgs),
    /// Apply pending database migrations, or list them
    Migrate(migrate::MigrateArgs),
    /// Manage users
    #[command(subcommand)]
    User(user::UserCommand),
    /// Delete outstanding and blacklisted refresh tokens that have expired
    FlushExpiredTokens,
    /// Inspect tokens
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Check the configuration; --deploy also looks for what is unwise in production
    Check(check::CheckArgs),
    /// Manage the signing key set: generate, rotate, retire, list
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// List the audit trail: logins, user and password changes, key changes (oldest first)
    Audit(audit::AuditArgs),
    /// Copy users and refresh tokens from another system's database (again: bring changes over)
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Talk to a doorman (or Django + simplejwt) server: log in, authenticated GETs, log out
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Print the OpenAPI 3.1 document of this configuration (as served at /api/schema/)
    Openapi,
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message.replace('\n', " "));
            ExitCode::from(failure.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(serve::ServeArgs {
        workers: Some(n), ..
    }) = &cli.command
    {
        runtime.worker_threads(usize::from(*n));
    }
    let runtime = runtime.enable_all().build()?;
    let overrides = Overrides {
        bind: None,
        database_url: cli.database_url.clone(),
        data_dir: cli.data_dir.clone(),
    };
    match cli.command {
        Command::Serve(args) => {
            runtime.block_on(serve::run(cli.config.as_deref(), overrides, args))
        }
        Command::Migrate(args) => {
            runtime.block_on(migrate::run(&load(&cli.config, &overrides)?.store, args))
        }
        Command::User(command) => {
            runtime.block_on(user::run(&load(&cli.config, &overrides)?, command))
        }
        Command::FlushExpiredTokens => {
            runtime.block_on(flush::run(&load(&cli.config, &overrides)?))
        }
        Command::Token(command) => token::run(cli.config.as_deref(), &overrides, command),
        Command::Check(args) => check::run(&load(&cli.config, &overrides)?, args),
        Command::Keys(command) => {
            runtime.block_on(keys::run(&load(&cli.config, &overrides)?, command))
        }
        Command::Audit(args) => runtime.block_on(audit::run(&load(&cli.config, &overrides)?, args)),
        Command::Import(command) => {
            runtime.block_on(import::run(&load(&cli.config, &overrides)?, command))
        }
        Command::Client(command) => runtime.block_on(client::run(command)),
        Command::Openapi => openapi::run(&load(&cli.config, &overrides)?),
    }
}

fn load(file: &Option<PathBuf>, overrides: &Overrides) -> Result<Config, Failure> {
    start::load_config(file.as_deref(), overrides)
}
