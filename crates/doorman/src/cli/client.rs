//! `doorman client ...`: log in to a doorman (or Django + simplejwt) server and make
//! authenticated requests from scripts, with the tokens kept in a 0600 file, never on the
//! command line or the screen unless asked for.

use std::io::{IsTerminal, Write};
use std::path::Path;

use clap::{Args, Subcommand};
use secrecy::SecretString;

use super::failure::Failure;
use crate::client::session::{self, Session};
use crate::client::{self as api, Client, ClientError, Logout};

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Log in at a server's API base (e.g. https://auth.example.com/); replaces any session
    Login(LoginArgs),
    /// GET a URL (or a path under the base) with the access token; refreshes it once if expired
    Get(GetArgs),
    /// Blacklist the refresh token at the server (where it can) and forget the session
    Logout,
    /// Show the server and user of the session (not its tokens)
    Status,
    /// Print the session's access token (or --refresh: its refresh token), for piping on
    Token(TokenArgs),
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The API base: the URL under which api/token/ is found
    url: String,
    #[arg(long)]
    username: String,
    /// Read the password from the first line of standard input instead of prompting
    #[arg(long)]
    password_stdin: bool,
    /// Allow plain http to a host other than this machine (the password crosses readable)
    #[arg(long)]
    allow_http: bool,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// An absolute URL on the session's origin, or a path (`/x` from the server's root, `x`
    /// under the base)
    url: String,
    /// Send the token to an absolute URL on another origin than the one that issued it
    #[arg(long)]
    allow_other_origin: bool,
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// Print the refresh token instead of the access token
    #[arg(long)]
    refresh: bool,
}

pub async fn run(command: ClientCommand) -> Result<(), Failure> {
    let path = session::default_path(|name| std::env::var(name).ok()).map_err(Failure::runtime)?;
    match command {
        ClientCommand::Login(args) => login(&path, args).await,
        ClientCommand::Get(args) => get(&path, args).await,
        ClientCommand::Logout => logout(&path).await,
        ClientCommand::Status => {
            let session = logged_in(&path)?;
            println!("Logged in to {} as {}.", session.base_url, session.username);
            Ok(())
        }
        ClientCommand::Token(args) => {
            let session = logged_in(&path)?;
            println!(
                "{}",
                if args.refresh {
                    &session.refresh
                } else {
                    &session.access
                }
            );
            Ok(())
        }
    }
}

async fn login(path: &Path, args: LoginArgs) -> Result<(), Failure> {
    let base = api::parse_base(&args.url, args.allow_http).map_err(usage)?;
    let password = read_password(args.password_stdin)?;
    let session = Client::new()
        .map_err(runtime)?
        .login(&base, &args.username, &password)
        .await
        .map_err(runtime)?;
    session::save(path, &session).map_err(Failure::runtime)?;
    println!("Logged in to {base} as {}.", args.username);
    Ok(())
}

async fn get(path: &Path, args: GetArgs) -> Result<(), Failure> {
    let mut session = logged_in(path)?;
    let base = api::parse_base(&session.base_url, true).map_err(runtime)?;
    let url = api::resolve(&base, &args.url, args.allow_other_origin).map_err(usage)?;
    let answer = Client::new()
        .map_err(runtime)?
        .get(&mut session, &url, |refreshed| {
            Ok(session::save(path, refreshed)?)
        })
        .await
        .map_err(runtime)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&answer.body)?;
    if !answer.body.ends_with(b"\n") && std::io::stdout().is_terminal() {
        stdout.write_all(b"\n")?;
    }
    stdout.flush()?;
    if answer.status.as_u16() >= 400 {
        return Err(Failure::runtime(format!(
            "{} answered {}",
            answer.url, answer.status
        )));
    }
    Ok(())
}

async fn logout(path: &Path) -> Result<(), Failure> {
    let session = logged_in(path)?;
    let outcome = Client::new().map_err(runtime)?.logout(&session).await;
    // The local copy goes whatever the server said: a logout must not leave tokens behind.
    session::remove(path).map_err(Failure::runtime)?;
    match outcome {
        Ok(Logout::Blacklisted) => {
            println!(
                "Logged out of {}: the refresh token is blacklisted and the session forgotten.",
                session.base_url
            );
            Ok(())
        }
        Ok(Logout::NoBlacklist) => {
            println!(
                "Logged out locally: {} has no blacklist endpoint (404), so the tokens stay valid there until they expire.",
                session.base_url
            );
            Ok(())
        }
        Ok(Logout::AlreadyInvalid) => {
            println!(
                "Logged out: {} already refused the refresh token (expired or blacklisted); the session is forgotten.",
                session.base_url
            );
            Ok(())
        }
        Err(e) => Err(Failure::runtime(format!(
            "the session is forgotten here, but the refresh token could not be blacklisted ({e}); it stays valid until it expires"
        ))),
    }
}

fn logged_in(path: &Path) -> Result<Session, Failure> {
    session::load(path)
        .map_err(Failure::runtime)?
        .ok_or_else(|| {
            Failure::runtime("not logged in; run `doorman client login URL --username NAME` first")
        })
}

fn read_password(from_stdin: bool) -> Result<SecretString, Failure> {
    if from_stdin {
        return super::user::password_from_stdin();
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "no terminal to ask for the password on; pipe it in with --password-stdin",
        ));
    }
    Ok(SecretString::from(rpassword::prompt_password(
        "Password: ",
    )?))
}

fn runtime(error: ClientError) -> Failure {
    Failure::runtime(error)
}

fn usage(error: ClientError) -> Failure {
    Failure::usage(error)
}
