//! `doorman token decode TOKEN|-`: show a token's header and payload with readable times, and
//! with `--verify`, whether this deployment's key and rules accept it.

use std::io::Read;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, Subcommand};
use doorman_token::Tokens;
use serde_json::Value;
use time::OffsetDateTime;

use super::failure::Failure;
use crate::config::Overrides;

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Print a token's header and payload (use - to read the token from stdin)
    Decode(DecodeArgs),
}

#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// The token, or - to read it from standard input
    token: String,
    /// Also check the signature and claims with the configured key and settings
    #[arg(long)]
    verify: bool,
}

const TIME_CLAIMS: [&str; 4] = ["exp", "iat", "nbf", "refresh_exp"];

pub fn run(
    file: Option<&Path>,
    overrides: &Overrides,
    TokenCommand::Decode(args): TokenCommand,
) -> Result<(), Failure> {
    let token = if args.token == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text.trim().to_owned()
    } else {
        args.token.trim().to_owned()
    };
    let segments: Vec<&str> = token.split('.').collect();
    if segments.len() != 3 {
        return Err(Failure::runtime(format!(
            "not a JWT: expected 3 dot-separated parts, found {}",
            segments.len()
        )));
    }
    let header = segment_json(segments[0], "header")?;
    let payload = segment_json(segments[1], "payload")?;
    println!("header:\n{}", pretty(&header)?);
    println!("payload:\n{}", pretty(&payload)?);
    let now = crate::unix_now();
    for name in TIME_CLAIMS {
        if let Some(secs) = payload.get(name).and_then(Value::as_i64) {
            println!("{name:<12} {}", describe_time(secs, now));
        }
    }
    if args.verify {
        let config = super::start::load_config(file, overrides)?;
        // The managed key set when there is one (a database holding `doorman keys` keys),
        // else the configured or generated key.
        let managed = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let store = crate::store::Store::connect_with(
                    &config.store.database_url,
                    &config.store.pool,
                )
                .await?;
                crate::keys::effective(&config.keys.key, &store).await
            });
        let keys = match managed {
            Ok(keys) => keys,
            Err(_) => crate::keys::load(&config.keys.key)?,
        };
        let tokens = Tokens::new(keys, config.tokens.rules.clone());
        let claims = tokens
            .decode(&token, now)
            .and_then(|c| tokens.check(&c, None).map(|()| c))
            .map_err(|e| Failure::runtime(format!("verification failed: {e}")))?;
        let kind = claims
            .str(
                tokens
                    .rules()
                    .token_type_claim
                    .as_deref()
                    .unwrap_or("token_type"),
            )
            .unwrap_or("untyped");
        println!("verified: signature and claims are valid ({kind} token)");
    }
    Ok(())
}

fn segment_json(segment: &str, what: &str) -> Result<Value, Failure> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(|e| Failure::runtime(format!("the {what} is not base64url: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Failure::runtime(format!("the {what} is not JSON: {e}")))
}

fn pretty(value: &Value) -> Result<String, Failure> {
    Ok(serde_json::to_string_pretty(value)?)
}

/// `2026-11-24 10:05:00 UTC (in 4m 59s)`.
fn describe_time(secs: i64, now: i64) -> String {
    let Ok(at) = OffsetDateTime::from_unix_timestamp(secs) else {
        return format!("{secs} (out of range)");
    };
    let delta = secs - now;
    let relative = if delta >= 0 {
        format!("in {}", span(delta.unsigned_abs()))
    } else {
        format!("{} ago", span(delta.unsigned_abs()))
    };
    format!("{} ({relative})", human_time(at))
}

pub fn human_time(at: OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

fn span(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_naturally() {
        assert_eq!(
            describe_time(1_800_000_300, 1_800_000_000),
            "2027-01-15 08:05:00 UTC (in 5m 0s)"
        );
        assert_eq!(
            describe_time(1_800_000_000, 1_800_090_000),
            "2027-01-15 08:00:00 UTC (1d 1h ago)"
        );
    }
}
