//! `doorman keys ...`: the managed key set, shared by every instance on the database.
//!
//! A key is generated as `next` (published in the JWKS, so verifiers learn it before it
//! signs), `rotate` makes it `current` and the old current `retiring`, which keeps verifying
//! until every token it signed has expired and then retires by itself. Instances pick a
//! change up within `key_refresh_interval`.

use clap::{Args, Subcommand};
use doorman_token::{Algorithm, Key};
use time::OffsetDateTime;

use super::failure::Failure;
use super::start::open_store;
use crate::audit;
use crate::config::Config;
use crate::keys::KeyConfig;
use crate::store::{KeyRotation, KeyState, Store, StoredKey};
use serde_json::json;

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List the managed keys and their states
    List,
    /// Generate a new `next` key (published in the JWKS; signs after `keys rotate`)
    Generate(GenerateArgs),
    /// Promote the next key to current; the current one keeps verifying until its tokens expire
    Rotate,
    /// Retire a next or retiring key now (its tokens stop verifying)
    Retire(RetireArgs),
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Algorithm of the new key (default: the configured `algorithm`): RS256/384/512,
    /// PS256/384/512, ES256, ES384 or EdDSA
    #[arg(long, value_name = "ALG")]
    alg: Option<String>,
}

#[derive(Args, Debug)]
pub struct RetireArgs {
    /// The key's id, as `keys list` shows it
    // A kid is base64url, so one in 64 starts with '-'; it is still a kid, not an option.
    #[arg(allow_hyphen_values = true)]
    kid: String,
}

pub async fn run(config: &Config, command: KeysCommand) -> Result<(), Failure> {
    let KeyConfig::Generated { alg, path } = &config.keys.key else {
        return Err(Failure::runtime(
            "signing_key is set in the configuration, so the keys are managed there; \
             unset it to let doorman manage a key set",
        ));
    };
    let store = open_store(&config.store).await?;
    let now = crate::unix_now();
    match command {
        KeysCommand::List => {
            let keys = store.signing_keys().await?;
            if keys.is_empty() {
                let (key, _) = crate::keys::load_or_generate_audited(*alg, path, &store).await?;
                println!(
                    "No managed keys: doorman signs with {} ({}, kid {}). \
                     `doorman keys generate` starts a managed key set with it.",
                    path.display(),
                    key.alg(),
                    key.kid().unwrap_or_default()
                );
                return Ok(());
            }
            println!(
                "{:<44} {:<6} {:<9} {:<24} retire after",
                "kid", "alg", "state", "since"
            );
            for key in keys {
                println!(
                    "{:<44} {:<6} {:<9} {:<24} {}",
                    key.kid,
                    key.alg,
                    key.state.as_str(),
                    time_text(key.state_since),
                    key.retire_after.map(time_text).unwrap_or_default()
                );
            }
        }
        KeysCommand::Generate(args) => {
            let new_alg = match &args.alg {
                Some(name) => name.parse::<Algorithm>().map_err(Failure::usage)?,
                None => *alg,
            };
            if new_alg.is_hmac() {
                return Err(Failure::usage(
                    "managed keys are key pairs (RS, PS, ES or EdDSA); an HMAC secret is configured with signing_key",
                ));
            }
            if store.signing_keys().await?.is_empty() {
                // The key in use so far becomes the first current key, so that the tokens it
                // signed keep verifying through the first rotation.
                let (key, pem) = crate::keys::load_or_generate_audited(*alg, path, &store).await?;
                let kid = key.kid().unwrap_or_default();
                store
                    .add_signing_key(&stored(&key, pem, KeyState::Current, now))
                    .await?;
                // Not generated now but taken under management: an event of its own kind would
                // be one more name to learn for the same fact, that this key may now sign.
                key_event(&store, audit::Kind::KeyGenerated, kid, key.alg(), "current").await;
                println!(
                    "Managing the key in use: {} ({}, current).",
                    key.kid().unwrap_or_default(),
                    key.alg()
                );
            }
            let (key, pem) = Key::generate(new_alg).map_err(Failure::runtime)?;
            store
                .add_signing_key(&stored(&key, pem, KeyState::Next, now))
                .await?;
            let kid = key.kid().unwrap_or_default();
            key_event(&store, audit::Kind::KeyGenerated, kid, new_alg, "next").await;
            println!(
                "Generated {} ({}, next). It is in the JWKS now; `doorman keys rotate` makes it sign.",
                key.kid().unwrap_or_default(),
                new_alg
            );
        }
        KeysCommand::Rotate => {
            let retire_after = now.saturating_add(overlap_secs(&config.tokens.rules));
            match store.rotate_signing_keys(now, retire_after).await? {
                KeyRotation::Rotated { promoted, retiring } => {
                    audit::Event::new(audit::Kind::KeyRotated)
                        .detail(json!({"current": promoted, "retiring": retiring}))
                        .record(&store)
                        .await;
                    println!("{promoted} is now the current key.");
                    if let Some(old) = retiring {
                        println!(
                            "{old} verifies until {} (when every token it signed has expired), then retires.",
                            time_text(retire_after)
                        );
                    }
                    println!(
                        "Every instance uses the new key within {} s.",
                        config.keys.key_refresh_interval.as_secs()
                    );
                }
                KeyRotation::NoNextKey => {
                    return Err(Failure::runtime(
                        "there is no next key to promote; run `doorman keys generate` first",
                    ));
                }
            }
        }
        KeysCommand::Retire(args) => {
            if !store.retire_signing_key(&args.kid, now).await? {
                return Err(Failure::runtime(format!(
                    "no next or retiring key {:?} (the current key can't be retired; rotate first)",
                    args.kid
                )));
            }
            audit::Event::new(audit::Kind::KeyRetired)
                .detail(json!({"kid": args.kid, "by": "command"}))
                .record(&store)
                .await;
            println!(
                "{} is retired; tokens it signed are refused within {} s.",
                args.kid,
                config.keys.key_refresh_interval.as_secs()
            );
        }
    }
    Ok(())
}

/// How long a retiring key must keep verifying: the longest life of any token it can have
/// signed, plus the allowed clock skew.
fn overlap_secs(rules: &doorman_token::TokenRules) -> i64 {
    let longest = [
        rules.access_token_lifetime,
        rules.refresh_token_lifetime,
        rules.sliding_token_lifetime,
        rules.sliding_token_refresh_lifetime,
    ]
    .into_iter()
    .max()
    .unwrap_or_default()
        + rules.leeway;
    i64::try_from(longest.as_secs()).unwrap_or(i64::MAX)
}

/// A key's generation, for the audit trail: its id, algorithm and first state (never the key).
async fn key_event(store: &Store, kind: audit::Kind, kid: &str, alg: Algorithm, state: &str) {
    audit::Event::new(kind)
        .detail(json!({"kid": kid, "alg": alg.as_str(), "state": state}))
        .record(store)
        .await;
}

fn stored(key: &Key, pem: String, state: KeyState, now: i64) -> StoredKey {
    StoredKey {
        kid: key.kid().unwrap_or_default().to_owned(),
        alg: key.alg().as_str().to_owned(),
        state,
        private_pem: pem.into(),
        created_at: now,
        state_since: now,
        retire_after: None,
    }
}

fn time_text(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    /// A key id that starts with '-' (base64url allows it) is taken as the id, not refused as
    /// an unknown option.
    #[test]
    fn a_kid_may_start_with_a_hyphen() {
        let kid = "-SN9V1Uhhy7l3xhcJNZWmG8Z_yyK6UZiQ_32Yfd4fbA";
        let cli = Cli::try_parse_from(["doorman", "keys", "retire", kid]).unwrap();
        let Command::Keys(KeysCommand::Retire(args)) = cli.command else {
            panic!("not keys retire: {:?}", cli.command)
        };
        assert_eq!(args.kid, kid);
    }
}
