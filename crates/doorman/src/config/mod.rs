//! doorman's settings: one `Config`, built once at start from defaults < `doorman.toml` <
//! `DOORMAN_*` environment variables < command-line flags, and validated before anything runs.
//! Names follow simplejwt's (`ACCESS_TOKEN_LIFETIME` is `access_token_lifetime` in the file
//! and `DOORMAN_ACCESS_TOKEN_LIFETIME` in the environment). A bad value stops start-up with a
//! message naming the setting, where it came from and what was expected.
//!
//! The settings are one flat namespace for the operator, but each is read, defaulted and
//! checked by the part of doorman that reads it, and `Config` is made of those sections:
//!
//! - `server` (`serve::settings`): `bind`, `admin_bind`, `unix_socket_mode`, `tls_cert_file`,
//!   `tls_key_file`, `max_concurrent_requests`, `request_timeout`, `header_read_timeout`,
//!   `max_header_bytes`, `max_body_bytes`, `body_read_timeout`, `shutdown_timeout`,
//!   `http2_max_concurrent_streams`, `http2_idle_timeout`, `http2_keepalive_interval`,
//!   `http2_keepalive_timeout`, `trusted_proxies`, `forwarded_header`, `cors_allowed_origins`,
//!   `cors_allow_credentials`.
//! - `tokens` (`api::token_settings`): `access_token_lifetime`, `refresh_token_lifetime`,
//!   `sliding_token_lifetime`, `sliding_token_refresh_lifetime`, `sliding_tokens`,
//!   `rotate_refresh_tokens`, `blacklist_after_rotation`, `refresh_reuse_grace`, `audience`,
//!   `issuer`, `public_url`, `leeway`, `auth_header_types`, `user_id_claim`, `token_type_claim`,
//!   `jti_claim`, `sliding_token_refresh_exp_claim`.
//! - `cookies` (`api::cookie_settings`): `token_cookies`, `token_cookie_access`,
//!   `token_cookie_samesite`, `token_cookie_secure`, `token_cookie_domain`,
//!   `token_cookie_refresh_name`, `token_cookie_access_name`, `csrf_trusted_origins`.
//! - `keys` (`keys::policy`): `algorithm`, `signing_key`, `signing_key_file`,
//!   `signing_key_id`, `verifying_key`, `verifying_key_file`, `key_refresh_interval`.
//! - `store` (`store::settings`): `data_dir`, `database_url`, `database_max_connections`,
//!   `database_acquire_timeout`, `database_statement_timeout`, `prune_interval`,
//!   `audit_retention`.
//! - `accounts` (`accounts::settings`): `check_user_is_active`, `accept_tokens_during_outage`,
//!   `user_cache_ttl`, `user_cache_size`, `password_hash_workers`, `login_queue_max`,
//!   `accept_md5_password_hashes`, `update_last_login`, and
//!   the login throttle's `login_throttle`, `login_free_attempts`,
//!   `login_account_free_attempts`, `login_account_max_failures`,
//!   `login_address_free_attempts`, `login_backoff_base`, `login_backoff_max`,
//!   `login_throttle_window`, `login_known_address_ttl`, `rate_limit_url`, `rate_limit_prefix`.
//! - `telemetry` (`telemetry::settings`): `log_format`.
//! - `static_files` (`serve::static_files`): `static_root`, `static_url`,
//!   `static_cache_control`.
//! - `pages` (`api::page_settings`): `web_pages`.
//!
//! The split follows the readers: the listeners and the request stack read `server` (the
//! body limit too: one size for every request, like the header limit); the token views, the
//! router (which views exist) and the guard (which `Authorization` schemes) read `tokens`;
//! the key loading and the key refresh job read `keys`, whose generated key lives in `store`'s
//! `data_dir`, the one setting a second section uses. Each section has a raw struct (what the
//! layers give, with its defaults) and a `validate` that makes the typed section of it or
//! refuses it. The sections never see the loader or `Config`: they use only the leaves
//! [`values`] (how a duration, count, flag or list is read) and [`source`] (which names a
//! setting and where its value came from). This module reads the layers into every section,
//! refuses a setting that no section reads, and assembles `Config`.

pub mod source;
pub mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::Format;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

pub use source::ConfigError;
use source::{Sources, source_of};

use crate::accounts::settings::{AccountSettings, AccountsConfig};
use crate::api::cookie_settings::{CookieSettings, CookiesConfig};
use crate::api::page_settings::{PageSettings, PagesConfig};
use crate::api::token_settings::{TokenSettings, TokensConfig};
use crate::keys::{KeySettings, KeysConfig};
use crate::serve::settings::{ServerConfig, ServerSettings};
use crate::serve::static_files::{StaticFiles, StaticSettings};
use crate::store::settings::{StoreConfig, StoreSettings};
use crate::telemetry::settings::{TelemetryConfig, TelemetrySettings};

/// Environment variables read as settings: `DOORMAN_` + the setting's name in capitals.
const ENV_PREFIX: &str = "DOORMAN_";
/// Environment variables with the prefix that are not settings.
const ENV_NOT_SETTINGS: [&str; 3] = ["CONFIG", "REQUIRE_ALL", "LOG"];

/// The validated configuration, a section for each part of doorman.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub tokens: TokensConfig,
    /// The token views' cookie mode for browser apps.
    pub cookies: CookiesConfig,
    pub keys: KeysConfig,
    pub store: StoreConfig,
    pub accounts: AccountsConfig,
    pub telemetry: TelemetryConfig,
    /// Static files (Django's STATIC_ROOT / STATIC_URL), when configured.
    pub static_files: Option<StaticFiles>,
    /// The built-in web pages under `/ui/`.
    pub pages: PagesConfig,
}

/// Values given on the command line; they win over everything else.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub bind: Option<String>,
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Loads from the given file (or `./doorman.toml` when it exists), the process
    /// environment and the overrides.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let default_file = Path::new("doorman.toml");
        let file = file.or_else(|| default_file.exists().then_some(default_file));
        Self::load_from(file, &env, overrides)
    }

    /// As [`Config::load`], with the file and environment given exactly (tests use this).
    pub fn load_from(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(figment::providers::Toml::file_exact(path));
        }
        let figment = figment
            .merge(EnvLayer::from_env(env))
            .merge(FlagLayer::from(overrides));
        extract(&figment)?.validate(&Sources::new(&figment))
    }
}

/// Every section's settings as the layers give them.
#[derive(Debug)]
struct Settings {
    server: ServerSettings,
    tokens: TokenSettings,
    cookies: CookieSettings,
    keys: KeySettings,
    store: StoreSettings,
    accounts: AccountSettings,
    telemetry: TelemetrySettings,
    static_files: StaticSettings,
    pages: PageSettings,
}

impl Settings {
    /// Checks each section in turn (a section checks its settings in a fixed order); the first
    /// refusal stops start-up.
    fn validate(self, src: &Sources) -> Result<Config, ConfigError> {
        let server = self.server.validate(src)?;
        let tokens = self.tokens.validate(src)?;
        let cookies = self.cookies.validate(src)?;
        let keys = self.keys.validate(self.store.data_dir(), src)?;
        let store = self.store.validate(src)?;
        let accounts = self.accounts.validate(src)?;
        let static_files = self.static_files.validate(src)?;
        let telemetry = self.telemetry.validate(src)?;
        let pages = self.pages.validate(src)?;
        Ok(Config {
            server,
            tokens,
            cookies,
            keys,
            store,
            accounts,
            telemetry,
            static_files,
            pages,
        })
    }
}

/// Every section's raw settings, or the error one struct of them all would have given:
/// figment reads the settings in alphabetical order and stops at the first it can't use, so
/// of the errors found, the one for the first setting in that order is the one reported.
fn extract(figment: &Figment) -> Result<Settings, ConfigError> {
    let known = figment.extract::<KnownSettings>().err();
    let server = figment.extract::<ServerSettings>();
    let tokens = figment.extract::<TokenSettings>();
    let cookies = figment.extract::<CookieSettings>();
    let keys = figment.extract::<KeySettings>();
    let store = figment.extract::<StoreSettings>();
    let accounts = figment.extract::<AccountSettings>();
    let telemetry = figment.extract::<TelemetrySettings>();
    let static_files = figment.extract::<StaticSettings>();
    let pages = figment.extract::<PageSettings>();
    let first = [
        known,
        server.as_ref().err().cloned(),
        tokens.as_ref().err().cloned(),
        cookies.as_ref().err().cloned(),
        keys.as_ref().err().cloned(),
        store.as_ref().err().cloned(),
        accounts.as_ref().err().cloned(),
        telemetry.as_ref().err().cloned(),
        static_files.as_ref().err().cloned(),
        pages.as_ref().err().cloned(),
    ]
    .into_iter()
    .flatten()
    .min_by(|a, b| a.path.first().cmp(&b.path.first()));
    if let Some(error) = first {
        return Err(ConfigError(describe(&error)));
    }
    // Every section was read, so none of these fails.
    let fail = |e: figment::Error| ConfigError(describe(&e));
    Ok(Settings {
        server: server.map_err(fail)?,
        tokens: tokens.map_err(fail)?,
        cookies: cookies.map_err(fail)?,
        keys: keys.map_err(fail)?,
        store: store.map_err(fail)?,
        accounts: accounts.map_err(fail)?,
        telemetry: telemetry.map_err(fail)?,
        static_files: static_files.map_err(fail)?,
        pages: pages.map_err(fail)?,
    })
}

/// Every setting some section reads.
fn setting_names() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        [
            source::setting_names::<ServerSettings>(),
            source::setting_names::<TokenSettings>(),
            source::setting_names::<CookieSettings>(),
            source::setting_names::<KeySettings>(),
            source::setting_names::<StoreSettings>(),
            source::setting_names::<AccountSettings>(),
            source::setting_names::<TelemetrySettings>(),
            source::setting_names::<StaticSettings>(),
            source::setting_names::<PageSettings>(),
        ]
        .concat()
    })
}

/// Refuses a setting that no section reads, as serde's `deny_unknown_fields` would: the same
/// error, raised at the same point, so figment names the same source for it.
#[derive(Debug)]
struct KnownSettings;

impl<'de> Deserialize<'de> for KnownSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KnownSettings, D::Error> {
        struct Every;
        impl<'de> Visitor<'de> for Every {
            type Value = KnownSettings;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KnownSettings, A::Error> {
                while map.next_key_seed(KnownName)?.is_some() {
                    map.next_value::<IgnoredAny>()?;
                }
                Ok(KnownSettings)
            }
        }
        d.deserialize_struct("Settings", setting_names(), Every)
    }
}

/// A setting's name, refused unless some section reads it.
struct KnownName;

impl<'de> DeserializeSeed<'de> for KnownName {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for KnownName {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a setting's name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<(), E> {
        match setting_names().contains(&name) {
            true => Ok(()),
            false => Err(E::unknown_field(name, setting_names())),
        }
    }
}

/// Turns figment's error into one line: which setting, from where, what was wrong.
fn describe(error: &figment::Error) -> String {
    let key = error.path.join(".");
    let what = match &error.kind {
        figment::error::Kind::UnknownField(field, _) => {
            let source = error
                .metadata
                .as_ref()
                .map(|md| source_of(md, field))
                .unwrap_or_default();
            return format!("unknown setting `{field}` in {source}");
        }
        figment::error::Kind::Message(m) => m.clone(),
        other => other.to_string(),
    };
    match &error.metadata {
        Some(md) => format!("setting `{key}` (from {}): {what}", source_of(md, &key)),
        None => format!("setting `{key}`: {what}"),
    }
}

/// `DOORMAN_*` variables, kept as strings (so a numeric-looking secret stays text); each
/// setting's own type decides how to read it.
struct EnvLayer {
    values: Dict,
}

impl EnvLayer {
    fn from_env(env: &BTreeMap<String, String>) -> EnvLayer {
        let values = env
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(ENV_PREFIX)?, v)))
            .filter(|(k, _)| !k.is_empty() && !ENV_NOT_SETTINGS.contains(k))
            .map(|(k, v)| (k.to_ascii_lowercase(), Value::from(v.clone())))
            .collect();
        EnvLayer { values }
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable").interpolater(|_: &Profile, keys: &[&str]| {
            format!("{ENV_PREFIX}{}", keys.join("_").to_ascii_uppercase())
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// Command-line flags.
struct FlagLayer {
    values: Dict,
}

impl From<&Overrides> for FlagLayer {
    fn from(o: &Overrides) -> FlagLayer {
        let mut values = Dict::new();
        if let Some(bind) = &o.bind {
            values.insert("bind".into(), Value::from(bind.clone()));
        }
        if let Some(url) = &o.database_url {
            values.insert("database_url".into(), Value::from(url.clone()));
        }
        if let Some(dir) = &o.data_dir {
            values.insert("data_dir".into(), Value::from(dir.display().to_string()));
        }
        FlagLayer { values }
    }
}

impl Provider for FlagLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named("command-line flag").interpolater(|_: &Profile, keys: &[&str]| {
            format!("--{}", keys.join("-").replace('_', "-"))
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// Loading as the tests of every section need it: a file's text, environment pairs, flags.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod testing {
    use std::collections::BTreeMap;

    use super::{Config, ConfigError, Overrides};

    /// An HS256 secret long and random-looking enough to be accepted.
    pub const SECRET: &str = "doorman-test-only-hs256-secret-0123456789abcdef";

    pub fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn load(
        file: Option<&str>,
        pairs: &[(&str, &str)],
        o: Overrides,
    ) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = file.map(|text| {
            let p = dir.path().join("doorman.toml");
            std::fs::write(&p, text).unwrap();
            p
        });
        Config::load_from(path.as_deref(), &env(pairs), &o)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::time::Duration;

    use doorman_token::{Algorithm, TokenRules};

    use super::testing::{SECRET, env, load};
    use super::*;
    use crate::keys::KeyConfig;
    use crate::serve::listen::Bind;

    #[test]
    fn defaults_are_simplejwts_with_a_generated_ed25519_key() {
        let c = load(None, &[], Overrides::default()).unwrap();
        assert_eq!(c.tokens.rules, TokenRules::default());
        assert!(matches!(
            c.keys.key,
            KeyConfig::Generated {
                alg: Algorithm::EdDSA,
                ..
            }
        ));
        assert_eq!(
            c.server.bind,
            [Bind::Tcp("127.0.0.1:8000".parse().unwrap())]
        );
        assert_eq!(c.server.unix_socket_mode, 0o660);
        assert!(c.store.database_url.starts_with("sqlite://"));
        assert!(!c.tokens.rotate_refresh_tokens && c.accounts.check_user_is_active);
    }

    #[test]
    fn precedence_is_defaults_file_env_flags() {
        let file = "access_token_lifetime = \"10m\"\nbind = \"127.0.0.1:1\"\nrefresh_token_lifetime = 60\n";
        let c = load(Some(file), &[], Overrides::default()).unwrap();
        assert_eq!(
            c.tokens.rules.access_token_lifetime,
            Duration::from_secs(600)
        );
        assert_eq!(
            c.tokens.rules.refresh_token_lifetime,
            Duration::from_secs(60)
        );
        let e = [
            ("DOORMAN_ACCESS_TOKEN_LIFETIME", "1h"),
            ("DOORMAN_BIND", "127.0.0.1:2"),
        ];
        let c = load(Some(file), &e, Overrides::default()).unwrap();
        assert_eq!(
            c.tokens.rules.access_token_lifetime,
            Duration::from_secs(3600)
        );
        assert_eq!(c.server.bind[0].tcp().unwrap().port(), 2);
        let o = Overrides {
            bind: Some("127.0.0.1:3".into()),
            ..Overrides::default()
        };
        let c = load(Some(file), &e, o).unwrap();
        assert_eq!(c.server.bind[0].tcp().unwrap().port(), 3);
        assert_eq!(
            c.tokens.rules.access_token_lifetime,
            Duration::from_secs(3600)
        );
    }

    /// Every setting's name, from the list an unknown one is refused with, so this can't
    /// drift from the sections' structs.
    fn every_setting_name() -> Vec<&'static str> {
        let err = figment::Figment::new()
            .merge(figment::providers::Toml::string("no_such_setting = 1"))
            .extract::<KnownSettings>()
            .unwrap_err();
        match err.kind {
            figment::error::Kind::UnknownField(_, expected) => expected.to_vec(),
            other => panic!("{other:?}"),
        }
    }

    /// deploy/doorman.toml lists every setting, and each listed default is accepted.
    #[test]
    fn the_sample_settings_file_lists_every_setting() {
        let sample = include_str!("../../../../deploy/doorman.toml");
        let listed: Vec<(&str, &str)> = sample
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter_map(|l| l.split_once(" = "))
            .filter(|(name, _)| {
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
            .collect();
        let names: std::collections::BTreeSet<&str> = listed.iter().map(|(n, _)| *n).collect();
        let all: std::collections::BTreeSet<&str> = every_setting_name().into_iter().collect();
        assert!(all.len() > 30, "{all:?}");
        assert_eq!(names, all, "deploy/doorman.toml and the settings differ");
        // The defaults as written load (the example values need files or keys, so are skipped).
        for (name, value) in listed {
            let value = value.split("  #").next().unwrap().trim();
            if value.contains("...")
                || value.contains("/etc/")
                || value.contains("/var/")
                || value.contains("example")
                || value.contains("2026")
            {
                continue;
            }
            let toml = format!("{name} = {value}\n");
            assert!(
                load(Some(&toml), &[], Overrides::default()).is_ok(),
                "{toml}"
            );
        }
    }

    #[test]
    fn bad_values_name_their_source() {
        let err = load(
            None,
            &[("DOORMAN_ACCESS_TOKEN_LIFETIME", "soon")],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("access_token_lifetime")
                && err.contains("DOORMAN_ACCESS_TOKEN_LIFETIME")
                && err.contains("5m"),
            "{err}"
        );
        let err = load(
            Some("rotate_refresh_tokens = \"perhaps\"\n"),
            &[],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("rotate_refresh_tokens")
                && err.contains("doorman.toml")
                && err.contains("true or false"),
            "{err}"
        );
        let err = load(
            Some("acess_token_lifetime = 5\n"),
            &[],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("unknown setting `acess_token_lifetime`"),
            "{err}"
        );
        let o = Overrides {
            bind: Some("nowhere".into()),
            ..Overrides::default()
        };
        let err = load(None, &[], o).unwrap_err().to_string();
        assert!(err.contains("--bind"), "{err}");
        let err = load(
            None,
            &[("DOORMAN_ALGORITHM", "RS257")],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("algorithm") && err.contains("HS256") && err.contains("PS512"),
            "{err}"
        );
        let err = load(None, &[("DOORMAN_LEEWAY", "5m")], Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("leeway") && err.contains("60"), "{err}");
    }

    #[test]
    fn env_values_are_read_leniently() {
        let e = [
            ("DOORMAN_ROTATE_REFRESH_TOKENS", "1"),
            ("DOORMAN_BLACKLIST_AFTER_ROTATION", "yes"),
            ("DOORMAN_AUTH_HEADER_TYPES", "Bearer, JWT"),
            ("DOORMAN_TOKEN_TYPE_CLAIM", ""),
            ("DOORMAN_SIGNING_KEY", "12345678901234567890123456789012345"),
            ("DOORMAN_REQUIRE_ALL", "1"),
        ];
        let c = load(None, &e, Overrides::default()).unwrap();
        assert!(c.tokens.rotate_refresh_tokens && c.tokens.blacklist_after_rotation);
        assert_eq!(c.tokens.auth_header_types, ["Bearer", "JWT"]);
        assert_eq!(c.tokens.rules.token_type_claim, None);
        let KeyConfig::Hmac { secret, .. } = c.keys.key else {
            panic!("expected HS256")
        };
        use secrecy::ExposeSecret;
        assert_eq!(
            secret.expose_secret(),
            "12345678901234567890123456789012345"
        );
    }

    /// Every configuration message as an operator reads it, word for word (the file's and the
    /// data directory's paths shown as `<dir>`): with several mistakes at once, the first setting
    /// in alphabetical order is the one named, as the layers are read in that order.
    #[test]
    fn error_messages_word_for_word() {
        doorman_token::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).display().to_string();
        let (_, es256) = doorman_token::Key::generate(Algorithm::ES256).unwrap();
        let jwk_file = at("key.jwk");
        std::fs::write(
            &jwk_file,
            r#"{"kty":"EC","crv":"P-256","alg":"ES256","kid":"mine",
                "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                "d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#,
        )
        .unwrap();
        let not_a_dir = at("key.jwk");
        let static_dir = dir.path().display().to_string();
        let long_kid = "k".repeat(257);
        let placeholder = "a".repeat(40);
        let missing_file = at("missing.pem");
        let flag = |bind: &str| Overrides {
            bind: Some(bind.to_owned()),
            ..Overrides::default()
        };
        type Case<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>, Overrides);
        let none = Overrides::default;
        let cases: Vec<(Case, &str)> = vec![
            // What the layers give, read by type.
            (
                (Some("acess_token_lifetime = 5\n"), vec![], none()),
                "configuration error: unknown setting `acess_token_lifetime` in TOML file <dir>/doorman.toml",
            ),
            (
                (None, vec![("DOORMAN_NO_SUCH", "1")], none()),
                "configuration error: unknown setting `no_such` in environment variable DOORMAN_NO_SUCH",
            ),
            (
                (
                    Some("bind = \"127.0.0.1:1\"\n"),
                    vec![("DOORMAN_NO_SUCH", "1")],
                    none(),
                ),
                "configuration error: unknown setting `no_such` in environment variable DOORMAN_NO_SUCH",
            ),
            (
                (
                    None,
                    vec![("DOORMAN_ACCESS_TOKEN_LIFETIME", "soon")],
                    none(),
                ),
                "configuration error: setting `access_token_lifetime` (from environment variable DOORMAN_ACCESS_TOKEN_LIFETIME): expected seconds or a duration like \"5m\", \"1h30m\", \"1d\" or \"250ms\", got \"soon\"",
            ),
            (
                (
                    Some("rotate_refresh_tokens = \"perhaps\"\n"),
                    vec![],
                    none(),
                ),
                "configuration error: setting `rotate_refresh_tokens` (from TOML file <dir>/doorman.toml): expected true or false, got \"perhaps\"",
            ),
            (
                (None, vec![("DOORMAN_USER_CACHE_SIZE", "many")], none()),
                "configuration error: setting `user_cache_size` (from environment variable DOORMAN_USER_CACHE_SIZE): expected a whole number, got \"many\"",
            ),
            (
                (Some("user_cache_size = -1\n"), vec![], none()),
                "configuration error: setting `user_cache_size` (from TOML file <dir>/doorman.toml): expected a whole number, got -1",
            ),
            (
                (Some("bind = [1]\n"), vec![], none()),
                "configuration error: setting `bind.0` (from TOML file <dir>/doorman.toml): invalid type: found signed int `1`, expected a string",
            ),
            (
                (Some("database_url = 5\n"), vec![], none()),
                "configuration error: setting `database_url` (from TOML file <dir>/doorman.toml): invalid type: found signed int `5`, expected a string",
            ),
            (
                (Some("bind = \n"), vec![], none()),
                "configuration error: setting `` (from TOML file <dir>/doorman.toml): TOML parse error at line 1, column 8\n  |\n1 | bind = \n  |        ^\ninvalid string\nexpected `\"`, `'`\n",
            ),
            (
                (
                    None,
                    vec![
                        ("DOORMAN_USER_CACHE_SIZE", "many"),
                        ("DOORMAN_ACCESS_TOKEN_LIFETIME", "soon"),
                        ("DOORMAN_ZZZ", "1"),
                    ],
                    none(),
                ),
                "configuration error: setting `access_token_lifetime` (from environment variable DOORMAN_ACCESS_TOKEN_LIFETIME): expected seconds or a duration like \"5m\", \"1h30m\", \"1d\" or \"250ms\", got \"soon\"",
            ),
            (
                (
                    None,
                    vec![("DOORMAN_AAA", "1"), ("DOORMAN_USER_CACHE_SIZE", "many")],
                    none(),
                ),
                "configuration error: unknown setting `aaa` in environment variable DOORMAN_AAA",
            ),
            (
                (
                    None,
                    vec![
                        ("DOORMAN_REQUEST_TIMEOUT", "x"),
                        ("DOORMAN_PRUNE_INTERVAL", "x"),
                    ],
                    none(),
                ),
                "configuration error: setting `prune_interval` (from environment variable DOORMAN_PRUNE_INTERVAL): expected seconds or a duration like \"5m\", \"1h30m\", \"1d\" or \"250ms\", got \"x\"",
            ),
            (
                (
                    None,
                    vec![
                        ("DOORMAN_SLIDING_TOKENS", "x"),
                        ("DOORMAN_LOG_FORMAT", "xml"),
                    ],
                    none(),
                ),
                "configuration error: setting `sliding_tokens` (from environment variable DOORMAN_SLIDING_TOKENS): expected true or false, got \"x\"",
            ),
            // Values of the right type that can't be used.
            (
                (None, vec![], flag("nowhere")),
                "configuration error: setting `bind` (from command-line flag --bind): expected addresses like 127.0.0.1:8000, [::1]:8000 or unix:/run/doorman.sock, got \"nowhere\"",
            ),
            (
                (None, vec![("DOORMAN_BIND", " , ")], none()),
                "configuration error: setting `bind` (from environment variable DOORMAN_BIND): expected at least one address",
            ),
            (
                (None, vec![("DOORMAN_UNIX_SOCKET_MODE", "999")], none()),
                "configuration error: setting `unix_socket_mode` (from environment variable DOORMAN_UNIX_SOCKET_MODE): expected an octal mode like 660, got \"999\"",
            ),
            (
                (None, vec![("DOORMAN_LEEWAY", "5m")], none()),
                "configuration error: setting `leeway` (from environment variable DOORMAN_LEEWAY): expected at most 60 seconds (RFC 8725 allows a small clock skew only)",
            ),
            (
                (None, vec![("DOORMAN_SLIDING_TOKEN_LIFETIME", "0")], none()),
                "configuration error: setting `sliding_token_lifetime` (from environment variable DOORMAN_SLIDING_TOKEN_LIFETIME): expected a lifetime longer than 0 seconds",
            ),
            (
                (
                    None,
                    vec![("DOORMAN_AUTH_HEADER_TYPES", "Bearer, JWT/2")],
                    none(),
                ),
                "configuration error: setting `auth_header_types` (from environment variable DOORMAN_AUTH_HEADER_TYPES): expected one or more scheme names like Bearer, without spaces",
            ),
            (
                (Some("user_id_claim = \"\"\n"), vec![], none()),
                "configuration error: setting `user_id_claim` (from TOML file <dir>/doorman.toml): expected a claim name",
            ),
            (
                (
                    Some("jti_claim = \"\"\nrotate_refresh_tokens = true\n"),
                    vec![],
                    none(),
                ),
                "configuration error: setting `jti_claim` (from TOML file <dir>/doorman.toml): rotate_refresh_tokens records each refresh token by its id; set a claim name or turn rotation off",
            ),
            (
                (Some("refresh_reuse_grace = \"6m\"\n"), vec![], none()),
                "configuration error: setting `refresh_reuse_grace` (from TOML file <dir>/doorman.toml): expected at most 5 minutes (a retry or a second tab takes seconds; a longer window only gives a stolen token time)",
            ),
            (
                (None, vec![("DOORMAN_SIGNING_KEY", "short")], none()),
                "configuration error: setting `signing_key` (from environment variable DOORMAN_SIGNING_KEY): an HS256 secret must be at least 32 bytes (RFC 7518 §3.2), this one has 5",
            ),
            (
                (None, vec![("DOORMAN_SIGNING_KEY", &placeholder)], none()),
                "configuration error: setting `signing_key` (from environment variable DOORMAN_SIGNING_KEY): this is a well-known example secret; generate a random one",
            ),
            (
                (None, vec![("DOORMAN_ALGORITHM", "HS384")], none()),
                "configuration error: setting `signing_key` (default): HS384 needs a shared secret of at least 48 bytes (e.g. Django's SECRET_KEY)",
            ),
            (
                (None, vec![("DOORMAN_ALGORITHM", "RS257")], none()),
                "configuration error: setting `algorithm` (from environment variable DOORMAN_ALGORITHM): unsupported algorithm \"RS257\"; expected one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA",
            ),
            (
                (None, vec![("DOORMAN_SIGNING_KEY", &es256)], none()),
                "configuration error: setting `signing_key` (from environment variable DOORMAN_SIGNING_KEY): is a PEM key, but `algorithm` is not set (it would be taken for an HS256 secret); set algorithm, e.g. ES256",
            ),
            (
                (
                    None,
                    vec![
                        ("DOORMAN_SIGNING_KEY", SECRET),
                        ("DOORMAN_VERIFYING_KEY", "x"),
                    ],
                    none(),
                ),
                "configuration error: setting `verifying_key` (from environment variable DOORMAN_VERIFYING_KEY): HS256 uses the signing key to verify; leave verifying_key unset",
            ),
            (
                (
                    None,
                    vec![
                        ("DOORMAN_SIGNING_KEY", SECRET),
                        ("DOORMAN_SIGNING_KEY_ID", "k"),
                    ],
                    none(),
                ),
                "configuration error: setting `signing_key_id` (from environment variable DOORMAN_SIGNING_KEY_ID): an HS key has no kid in simplejwt's token layout; leave it unset",
            ),
            (
                (
                    None,
                    vec![
                        ("DOORMAN_SIGNING_KEY", SECRET),
                        ("DOORMAN_SIGNING_KEY_FILE", &jwk_file),
                    ],
                    none(),
                ),
                "configuration error: setting `signing_key_file` (from environment variable DOORMAN_SIGNING_KEY_FILE): set either signing_key or signing_key_file, not both",
            ),
            (
                (
                    None,
                    vec![("DOORMAN_SIGNING_KEY_FILE", &missing_file)],
                    none(),
                ),
                "configuration error: setting `signing_key_file` (from environment variable DOORMAN_SIGNING_KEY_FILE): could not read <dir>/missing.pem: No such file or directory (os error 2)",
            ),
            (
                (None, vec![("DOORMAN_SIGNING_KEY", "{not json")], none()),
                "configuration error: setting `signing_key` (from environment variable DOORMAN_SIGNING_KEY): not a JWK: key must be a string at line 1 column 2",
            ),
            (
                (
                    None,
                    vec![
                        ("DOORMAN_ALGORITHM", "EdDSA"),
                        ("DOORMAN_SIGNING_KEY_FILE", &jwk_file),
                    ],
                    none(),
                ),
                "configuration error: setting `algorithm` (from environment variable DOORMAN_ALGORITHM): is EdDSA, but the signing key's JWK is for ES256",
            ),
            (
                (
                    None,
                    vec![
                        ("DOORMAN_ALGORITHM", "ES256"),
                        ("DOORMAN_SIGNING_KEY", "not a pem"),
                    ],
                    none(),
                ),
                "configuration error: setting `signing_key` (from environment variable DOORMAN_SIGNING_KEY): expected a ES256 private key in PEM: not a PEM key: malformedframing",
            ),
            (
                (
                    None,
                    vec![
                        ("DOORMAN_SIGNING_KEY_FILE", &jwk_file),
                        ("DOORMAN_SIGNING_KEY_ID", &long_kid),
                    ],
                    none(),
                ),
                "configuration error: setting `signing_key_id` (from environment variable DOORMAN_SIGNING_KEY_ID): expected 1 to 256 characters",
            ),
            (
                (
                    None,
                    vec![
                        ("DOORMAN_SIGNING_KEY_FILE", &jwk_file),
                        ("DOORMAN_VERIFYING_KEY", "{}"),
                    ],
                    none(),
                ),
                "configuration error: setting `verifying_key` (from environment variable DOORMAN_VERIFYING_KEY): the key does not suit ES256",
            ),
            (
                (
                    None,
                    vec![
                        ("DOORMAN_ALGORITHM", "ES256"),
                        ("DOORMAN_VERIFYING_KEY", "x"),
                    ],
                    none(),
                ),
                "configuration error: setting `signing_key` (default): a verifying_key alone can't issue tokens; set the matching signing_key",
            ),
            (
                (
                    None,
                    vec![("DOORMAN_DATABASE_ACQUIRE_TIMEOUT", "0")],
                    none(),
                ),
                "configuration error: setting `database_acquire_timeout` (from environment variable DOORMAN_DATABASE_ACQUIRE_TIMEOUT): expected a timeout longer than 0 seconds",
            ),
            (
                (None, vec![("DOORMAN_KEY_REFRESH_INTERVAL", "0")], none()),
                "configuration error: setting `key_refresh_interval` (from environment variable DOORMAN_KEY_REFRESH_INTERVAL): expected a timeout longer than 0 seconds",
            ),
            (
                (None, vec![("DOORMAN_SHUTDOWN_TIMEOUT", "0")], none()),
                "configuration error: setting `shutdown_timeout` (from environment variable DOORMAN_SHUTDOWN_TIMEOUT): expected a timeout longer than 0 seconds",
            ),
            (
                (None, vec![("DOORMAN_USER_CACHE_TTL", "2m")], none()),
                "configuration error: setting `user_cache_ttl` (from environment variable DOORMAN_USER_CACHE_TTL): expected at most 60 seconds (it bounds how long a deactivated user keeps access)",
            ),
            (
                (
                    None,
                    vec![("DOORMAN_DATABASE_MAX_CONNECTIONS", "100000")],
                    none(),
                ),
                "configuration error: setting `database_max_connections` (from environment variable DOORMAN_DATABASE_MAX_CONNECTIONS): expected at most 10000",
            ),
            (
                (
                    None,
                    vec![("DOORMAN_TRUSTED_PROXIES", "proxy.internal")],
                    none(),
                ),
                "configuration error: setting `trusted_proxies` (from environment variable DOORMAN_TRUSTED_PROXIES): expected addresses or networks like 10.0.0.0/8 or ::1, got \"proxy.internal\"",
            ),
            (
                (
                    None,
                    vec![
                        ("DOORMAN_CORS_ALLOWED_ORIGINS", "*"),
                        ("DOORMAN_CORS_ALLOW_CREDENTIALS", "1"),
                    ],
                    none(),
                ),
                "configuration error: setting `cors_allowed_origins` (from environment variable DOORMAN_CORS_ALLOWED_ORIGINS): \"*\" can't go with cors_allow_credentials; list the origins",
            ),
            (
                (
                    None,
                    vec![(
                        "DOORMAN_CORS_ALLOWED_ORIGINS",
                        "https://app.example.com/path",
                    )],
                    none(),
                ),
                "configuration error: setting `cors_allowed_origins` (from environment variable DOORMAN_CORS_ALLOWED_ORIGINS): expected origins like https://app.example.com (no path), got \"https://app.example.com/path\"",
            ),
            (
                (
                    None,
                    vec![("DOORMAN_TLS_CERT_FILE", "/nonexistent/cert.pem")],
                    none(),
                ),
                "configuration error: setting `tls_key_file` (default): tls_cert_file is set; set its key too",
            ),
            (
                (
                    None,
                    vec![("DOORMAN_TLS_KEY_FILE", "/nonexistent/key.pem")],
                    none(),
                ),
                "configuration error: setting `tls_cert_file` (default): tls_key_file is set; set the certificate too",
            ),
            (
                (
                    None,
                    vec![
                        ("DOORMAN_TLS_CERT_FILE", "/nonexistent/cert.pem"),
                        ("DOORMAN_TLS_KEY_FILE", "/nonexistent/key.pem"),
                    ],
                    none(),
                ),
                "configuration error: setting `tls_cert_file` (from environment variable DOORMAN_TLS_CERT_FILE): could not read /nonexistent/cert.pem: I/O error: No such file or directory (os error 2)",
            ),
            (
                (None, vec![("DOORMAN_STATIC_ROOT", &not_a_dir)], none()),
                "configuration error: setting `static_root` (from environment variable DOORMAN_STATIC_ROOT): <dir>/key.jwk is not a directory",
            ),
            // A `static_url` under a route's prefix: `router::tests`, where the routes are known.
            (
                (
                    None,
                    vec![
                        ("DOORMAN_STATIC_ROOT", &static_dir),
                        ("DOORMAN_STATIC_URL", "/"),
                    ],
                    none(),
                ),
                "configuration error: setting `static_url` (from environment variable DOORMAN_STATIC_URL): expected a prefix like /static/ that no doorman route uses, got \"/\"",
            ),
            (
                (
                    None,
                    vec![
                        ("DOORMAN_STATIC_ROOT", &static_dir),
                        ("DOORMAN_STATIC_CACHE_CONTROL", "a\nb"),
                    ],
                    none(),
                ),
                "configuration error: setting `static_cache_control` (from environment variable DOORMAN_STATIC_CACHE_CONTROL): expected a header value",
            ),
            (
                (None, vec![("DOORMAN_MAX_CONCURRENT_REQUESTS", "0")], none()),
                "configuration error: setting `max_concurrent_requests` (from environment variable DOORMAN_MAX_CONCURRENT_REQUESTS): expected at least 1",
            ),
            (
                (None, vec![("DOORMAN_LOGIN_QUEUE_MAX", "100001")], none()),
                "configuration error: setting `login_queue_max` (from environment variable DOORMAN_LOGIN_QUEUE_MAX): expected at most 100000",
            ),
            (
                (None, vec![("DOORMAN_ADMIN_BIND", "localhost")], none()),
                "configuration error: setting `admin_bind` (from environment variable DOORMAN_ADMIN_BIND): expected an address like 127.0.0.1:9000, got \"localhost\"",
            ),
            (
                (None, vec![("DOORMAN_LOG_FORMAT", "xml")], none()),
                "configuration error: setting `log_format` (from environment variable DOORMAN_LOG_FORMAT): expected auto, json or text, got \"xml\"",
            ),
            // Several at once, each in a different section: which is named first.
            (
                (
                    None,
                    vec![("DOORMAN_LOG_FORMAT", "xml"), ("DOORMAN_BIND", "nowhere")],
                    none(),
                ),
                "configuration error: setting `bind` (from environment variable DOORMAN_BIND): expected addresses like 127.0.0.1:8000, [::1]:8000 or unix:/run/doorman.sock, got \"nowhere\"",
            ),
            (
                (
                    None,
                    vec![("DOORMAN_LEEWAY", "5m"), ("DOORMAN_SIGNING_KEY", "short")],
                    none(),
                ),
                "configuration error: setting `leeway` (from environment variable DOORMAN_LEEWAY): expected at most 60 seconds (RFC 8725 allows a small clock skew only)",
            ),
        ];
        let mut actual = Vec::new();
        for ((file, pairs, overrides), _) in &cases {
            let path = file.map(|text| {
                let p = dir.path().join("doorman.toml");
                std::fs::write(&p, text).unwrap();
                p
            });
            let err = Config::load_from(path.as_deref(), &env(pairs), overrides)
                .unwrap_err()
                .to_string()
                .replace(&dir.path().display().to_string(), "<dir>");
            actual.push(err);
        }
        for (((_, pairs, _), expected), actual) in cases.iter().zip(&actual) {
            assert_eq!(actual, expected, "{pairs:?}");
        }
        let missing = Config::load_from(
            Some(Path::new("/nonexistent/doorman.toml")),
            &env(&[]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            missing,
            "configuration error: config file /nonexistent/doorman.toml does not exist"
        );
    }

    /// A setting belongs to one section: two reading it would each default and check it.
    #[test]
    fn each_setting_is_read_by_one_section() {
        let names = setting_names();
        let distinct: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
    }
}
