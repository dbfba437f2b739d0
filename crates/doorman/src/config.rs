//! doorman's settings: one `Config`, built once at start from defaults < `doorman.toml` <
//! `DOORMAN_*` environment variables < command-line flags, and validated before anything runs.
//! Names follow simplejwt's (`ACCESS_TOKEN_LIFETIME` is `access_token_lifetime` in the file
//! and `DOORMAN_ACCESS_TOKEN_LIFETIME` in the environment). A bad value stops start-up with a
//! message naming the setting, where it came from and what was expected.

mod values;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use doorman_token::{Algorithm, TokenRules};
use figment::providers::Format;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::SecretString;
use serde::Deserialize;

use crate::store::PoolSettings;
use values::{Flag, StringList};

/// Environment variables read as settings: `DOORMAN_` + the setting's name in capitals.
const ENV_PREFIX: &str = "DOORMAN_";
/// Environment variables with the prefix that are not settings.
const ENV_NOT_SETTINGS: [&str; 3] = ["CONFIG", "REQUIRE_ALL", "LOG"];

/// The raw settings, as the layers give them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    bind: StringList,
    data_dir: PathBuf,
    database_url: Option<String>,
    #[serde(with = "values::duration")]
    access_token_lifetime: Duration,
    #[serde(with = "values::duration")]
    refresh_token_lifetime: Duration,
    #[serde(with = "values::duration")]
    sliding_token_lifetime: Duration,
    #[serde(with = "values::duration")]
    sliding_token_refresh_lifetime: Duration,
    sliding_tokens: Flag,
    rotate_refresh_tokens: Flag,
    blacklist_after_rotation: Flag,
    update_last_login: Flag,
    algorithm: Option<String>,
    signing_key: Option<SecretString>,
    signing_key_file: Option<PathBuf>,
    signing_key_id: Option<String>,
    verifying_key: Option<String>,
    verifying_key_file: Option<PathBuf>,
    audience: Option<String>,
    issuer: Option<String>,
    #[serde(with = "values::duration")]
    leeway: Duration,
    auth_header_types: StringList,
    user_id_claim: String,
    token_type_claim: String,
    jti_claim: String,
    sliding_token_refresh_exp_claim: String,
    check_user_is_active: Flag,
    accept_tokens_during_outage: Flag,
    #[serde(with = "values::duration")]
    user_cache_ttl: Duration,
    #[serde(with = "values::count")]
    user_cache_size: usize,
    #[serde(with = "values::count")]
    password_hash_workers: usize,
    #[serde(with = "values::count")]
    database_max_connections: usize,
    #[serde(with = "values::duration")]
    database_acquire_timeout: Duration,
    #[serde(with = "values::duration")]
    database_statement_timeout: Duration,
    #[serde(with = "values::duration")]
    prune_interval: Duration,
    #[serde(with = "values::duration")]
    key_refresh_interval: Duration,
    #[serde(with = "values::count")]
    max_concurrent_requests: usize,
    #[serde(with = "values::duration")]
    request_timeout: Duration,
    trusted_proxies: StringList,
    cors_allowed_origins: StringList,
    cors_allow_credentials: Flag,
    unix_socket_mode: String,
    #[serde(with = "values::duration")]
    header_read_timeout: Duration,
    #[serde(with = "values::count")]
    max_header_bytes: usize,
    #[serde(with = "values::duration")]
    shutdown_timeout: Duration,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    log_format: String,
    #[serde(with = "values::count")]
    max_body_bytes: usize,
    admin_bind: Option<String>,
    static_root: Option<PathBuf>,
    static_url: String,
    static_cache_control: String,
}

impl Default for Settings {
    fn default() -> Self {
        let rules = TokenRules::default();
        Settings {
            bind: StringList(vec!["127.0.0.1:8000".to_owned()]),
            data_dir: PathBuf::from("doorman-data"),
            database_url: None,
            access_token_lifetime: rules.access_token_lifetime,
            refresh_token_lifetime: rules.refresh_token_lifetime,
            sliding_token_lifetime: rules.sliding_token_lifetime,
            sliding_token_refresh_lifetime: rules.sliding_token_refresh_lifetime,
            sliding_tokens: Flag(true),
            rotate_refresh_tokens: Flag(false),
            blacklist_after_rotation: Flag(false),
            update_last_login: Flag(false),
            algorithm: None,
            signing_key: None,
            signing_key_file: None,
            signing_key_id: None,
            verifying_key: None,
            verifying_key_file: None,
            audience: None,
            issuer: None,
            leeway: Duration::ZERO,
            auth_header_types: StringList(vec!["Bearer".to_owned()]),
            user_id_claim: rules.user_id_claim,
            token_type_claim: "token_type".to_owned(),
            jti_claim: "jti".to_owned(),
            sliding_token_refresh_exp_claim: rules.sliding_token_refresh_exp_claim,
            check_user_is_active: Flag(true),
            accept_tokens_during_outage: Flag(true),
            user_cache_ttl: Duration::from_secs(1),
            user_cache_size: 100_000,
            password_hash_workers: 0,
            database_max_connections: 0,
            database_acquire_timeout: PoolSettings::default().acquire_timeout,
            database_statement_timeout: PoolSettings::default().statement_timeout,
            prune_interval: Duration::from_secs(3600),
            key_refresh_interval: Duration::from_secs(10),
            max_concurrent_requests: 1024,
            request_timeout: Duration::from_secs(30),
            trusted_proxies: StringList(Vec::new()),
            cors_allowed_origins: StringList(Vec::new()),
            cors_allow_credentials: Flag(false),
            unix_socket_mode: "660".to_owned(),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            shutdown_timeout: Duration::from_secs(30),
            tls_cert_file: None,
            tls_key_file: None,
            log_format: "auto".to_owned(),
            max_body_bytes: crate::api::MAX_BODY_BYTES,
            admin_bind: None,
            static_root: None,
            static_url: "/static/".to_owned(),
            static_cache_control: "public, max-age=3600".to_owned(),
        }
    }
}

/// How tokens are signed, as decided from `algorithm`, `signing_key` and `verifying_key`.
#[derive(Clone, Debug)]
pub enum KeyConfig {
    /// HMAC with a shared secret (the Django interop mode: a Django `SECRET_KEY` works as is).
    Hmac {
        alg: Algorithm,
        secret: SecretString,
    },
    /// A key pair from a configured private key (PEM, or a JWK converted to PEM), with a
    /// configured `kid` or, by default, the key's thumbprint.
    Pem {
        alg: Algorithm,
        pem: SecretString,
        kid: Option<String>,
    },
    /// A key pair generated on first start and kept in the data directory.
    Generated { alg: Algorithm, path: PathBuf },
}

/// The validated configuration every part of doorman reads.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen (at least one).
    pub bind: Vec<Bind>,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub tokens: TokenRules,
    pub key: KeyConfig,
    pub sliding_tokens: bool,
    pub rotate_refresh_tokens: bool,
    pub blacklist_after_rotation: bool,
    pub update_last_login: bool,
    pub auth_header_types: Vec<String>,
    pub check_user_is_active: bool,
    /// When the database can't be reached, a valid access token is accepted without the user
    /// lookup (and the outage logged) instead of answering 503.
    pub accept_tokens_during_outage: bool,
    /// How long an instance reuses a user lookup for authenticated requests, i.e. the longest a
    /// deactivated or deleted user's access tokens keep working on any instance; `None`: every
    /// request looks the user up.
    pub user_cache_ttl: Option<Duration>,
    /// Most users the cache holds at once.
    pub user_cache_size: u64,
    pub password_hash_workers: usize,
    pub pool: PoolSettings,
    /// How often expired outstanding and blacklisted rows are deleted; `None` turns the
    /// background task off (`flush-expired-tokens` still works).
    pub prune_interval: Option<Duration>,
    /// How often an instance rereads the managed key set, so that a rotation made anywhere
    /// reaches it within this time.
    pub key_refresh_interval: Duration,
    /// Requests handled at once; beyond it doorman answers 503 with `Retry-After` at once
    /// instead of queueing without bound.
    pub max_concurrent_requests: usize,
    /// The deadline of one request (503 past it).
    pub request_timeout: Duration,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` headers name the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `unix` in `trusted_proxies`: peers on the Unix socket (nginx) are trusted proxies too.
    pub trust_unix_socket_peers: bool,
    /// Browser origins allowed by CORS (`*` only without credentials).
    pub cors_allowed_origins: Vec<String>,
    pub cors_allow_credentials: bool,
    /// Permissions of a Unix socket doorman creates (e.g. 0o660: the proxy's group may connect).
    pub unix_socket_mode: u32,
    /// Time allowed to send a request's headers (slow clients are cut off after it).
    pub header_read_timeout: Duration,
    /// Largest request head; beyond it the answer is 431.
    pub max_header_bytes: usize,
    /// How long a graceful stop waits for the requests in flight.
    pub shutdown_timeout: Duration,
    /// TLS from PEM files (certificate chain, private key); reloaded on SIGHUP.
    pub tls: Option<TlsFiles>,
    /// Static files (Django's STATIC_ROOT / STATIC_URL), when configured.
    pub static_files: Option<StaticFiles>,
    /// Log lines as JSON, as text, or JSON unless on a terminal.
    pub log_format: crate::telemetry::LogFormat,
    /// Largest request body an API view reads (413 beyond it).
    pub max_body_bytes: usize,
    /// A separate listener for `/metrics` (and the health checks); `/metrics` then leaves the
    /// API listeners.
    pub admin_bind: Option<Bind>,
}

/// A directory served under a URL prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticFiles {
    pub root: PathBuf,
    /// Like `/static/`: starts and ends with a slash.
    pub url: String,
    pub cache_control: String,
}

/// Where the TLS certificate chain and key are (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where to listen: `127.0.0.1:8000`, or `unix:/run/doorman.sock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bind {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Bind {
    /// `host:port`, or `unix:` followed by an absolute path.
    fn parse(text: &str) -> Option<Bind> {
        match text.strip_prefix("unix:") {
            Some(path) if path.starts_with('/') => Some(Bind::Unix(PathBuf::from(path))),
            _ => text.parse().ok().map(Bind::Tcp),
        }
    }

    /// The TCP address, if it is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Bind::Tcp(addr) => Some(*addr),
            Bind::Unix(_) => None,
        }
    }
}

impl std::fmt::Display for Bind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bind::Tcp(addr) => write!(f, "{addr}"),
            Bind::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Values given on the command line; they win over everything else.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub bind: Option<String>,
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
}

/// A configuration that can't be used, said in one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

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
        let settings: Settings = figment.extract().map_err(|e| ConfigError(describe(&e)))?;
        Validator { figment: &figment }.validate(settings)
    }
}

struct Validator<'a> {
    figment: &'a Figment,
}

impl Validator<'_> {
    /// "setting `name` (from <source>)".
    fn named(&self, key: &str) -> String {
        match self.figment.find_metadata(key) {
            Some(md) => format!("setting `{key}` (from {})", source_of(md, key)),
            None => format!("setting `{key}` (default)"),
        }
    }

    fn fail(&self, key: &str, problem: impl std::fmt::Display) -> ConfigError {
        ConfigError(format!("{}: {problem}", self.named(key)))
    }

    fn validate(&self, s: Settings) -> Result<Config, ConfigError> {
        let bind = s
            .bind
            .0
            .iter()
            .map(|text| {
                Bind::parse(text).ok_or_else(|| {
                    self.fail(
                        "bind",
                        format!(
                            "expected addresses like 127.0.0.1:8000, [::1]:8000 or unix:/run/doorman.sock, got {text:?}"
                        ),
                    )
                })
            })
            .collect::<Result<Vec<Bind>, _>>()?;
        if bind.is_empty() {
            return Err(self.fail("bind", "expected at least one address"));
        }
        let unix_socket_mode = u32::from_str_radix(s.unix_socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                self.fail(
                    "unix_socket_mode",
                    format!(
                        "expected an octal mode like 660, got {:?}",
                        s.unix_socket_mode
                    ),
                )
            })?;
        if s.leeway > Duration::from_secs(60) {
            return Err(self.fail(
                "leeway",
                "expected at most 60 seconds (RFC 8725 allows a small clock skew only)",
            ));
        }
        for (key, lifetime) in [
            ("access_token_lifetime", s.access_token_lifetime),
            ("refresh_token_lifetime", s.refresh_token_lifetime),
            ("sliding_token_lifetime", s.sliding_token_lifetime),
            (
                "sliding_token_refresh_lifetime",
                s.sliding_token_refresh_lifetime,
            ),
        ] {
            if lifetime.is_zero() {
                return Err(self.fail(key, "expected a lifetime longer than 0 seconds"));
            }
        }
        if s.auth_header_types.0.is_empty()
            || s.auth_header_types.0.iter().any(|t| !is_token68_scheme(t))
        {
            return Err(self.fail(
                "auth_header_types",
                "expected one or more scheme names like Bearer, without spaces",
            ));
        }
        if s.user_id_claim.is_empty() {
            return Err(self.fail("user_id_claim", "expected a claim name"));
        }
        let key = self.key_config(&s)?;
        let database_url = s.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}", s.data_dir.join("doorman.sqlite3").display())
        });
        let tokens = TokenRules {
            access_token_lifetime: s.access_token_lifetime,
            refresh_token_lifetime: s.refresh_token_lifetime,
            sliding_token_lifetime: s.sliding_token_lifetime,
            sliding_token_refresh_lifetime: s.sliding_token_refresh_lifetime,
            user_id_claim: s.user_id_claim,
            token_type_claim: Some(s.token_type_claim).filter(|c| !c.is_empty()),
            jti_claim: Some(s.jti_claim).filter(|c| !c.is_empty()),
            sliding_token_refresh_exp_claim: s.sliding_token_refresh_exp_claim,
            audience: s.audience,
            issuer: s.issuer,
            leeway: s.leeway,
            ..TokenRules::default()
        };
        for (key, timeout) in [
            ("database_acquire_timeout", s.database_acquire_timeout),
            ("database_statement_timeout", s.database_statement_timeout),
            ("key_refresh_interval", s.key_refresh_interval),
            ("request_timeout", s.request_timeout),
            ("header_read_timeout", s.header_read_timeout),
            ("shutdown_timeout", s.shutdown_timeout),
        ] {
            if timeout.is_zero() {
                return Err(self.fail(key, "expected a timeout longer than 0 seconds"));
            }
        }
        if s.user_cache_ttl > Duration::from_secs(60) {
            return Err(self.fail(
                "user_cache_ttl",
                "expected at most 60 seconds (it bounds how long a deactivated user keeps access)",
            ));
        }
        let max_connections = match s.database_max_connections {
            0 => None,
            n => Some(
                u32::try_from(n)
                    .ok()
                    .filter(|n| *n <= 10_000)
                    .ok_or_else(|| {
                        self.fail("database_max_connections", "expected at most 10000")
                    })?,
            ),
        };
        let trust_unix_socket_peers = s.trusted_proxies.0.iter().any(|t| t == "unix");
        let trusted_proxies = s
            .trusted_proxies
            .0
            .iter()
            .filter(|t| *t != "unix")
            .map(|text| {
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        self.fail(
                            "trusted_proxies",
                            format!("expected addresses or networks like 10.0.0.0/8 or ::1, got {text:?}"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for origin in &s.cors_allowed_origins.0 {
            if origin == "*" {
                if s.cors_allow_credentials.0 {
                    return Err(self.fail(
                        "cors_allowed_origins",
                        "\"*\" can't go with cors_allow_credentials; list the origins",
                    ));
                }
                continue;
            }
            let valid = origin.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https")
                    && !rest.is_empty()
                    && !rest.contains('/')
                    && rest.bytes().all(|b| b.is_ascii_graphic())
            });
            if !valid {
                return Err(self.fail(
                    "cors_allowed_origins",
                    format!(
                        "expected origins like https://app.example.com (no path), got {origin:?}"
                    ),
                ));
            }
        }
        let tls = match (&s.tls_cert_file, &s.tls_key_file) {
            (Some(cert), Some(key)) => {
                let files = TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                };
                crate::serve::tls::load(&files).map_err(|e| self.fail("tls_cert_file", e))?;
                Some(files)
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(self.fail("tls_key_file", "tls_cert_file is set; set its key too"));
            }
            (None, Some(_)) => {
                return Err(self.fail(
                    "tls_cert_file",
                    "tls_key_file is set; set the certificate too",
                ));
            }
        };
        let static_files = match &s.static_root {
            None => None,
            Some(root) => {
                if !root.is_dir() {
                    return Err(self.fail(
                        "static_root",
                        format!("{} is not a directory", root.display()),
                    ));
                }
                let url = &s.static_url;
                let reserved = [
                    "/api/",
                    "/hello/",
                    "/.well-known/",
                    "/healthz/",
                    "/readyz/",
                    "/metrics/",
                ];
                if !(url.starts_with('/') && url.ends_with('/') && url.len() > 1)
                    || reserved
                        .iter()
                        .any(|r| url.starts_with(r) || r.starts_with(url.as_str()))
                    || !url.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(self.fail(
                        "static_url",
                        format!("expected a prefix like /static/ that no doorman route uses, got {url:?}"),
                    ));
                }
                if http::HeaderValue::from_str(&s.static_cache_control).is_err() {
                    return Err(self.fail("static_cache_control", "expected a header value"));
                }
                Some(StaticFiles {
                    root: root.clone(),
                    url: url.clone(),
                    cache_control: s.static_cache_control.clone(),
                })
            }
        };
        if s.max_concurrent_requests == 0 {
            return Err(self.fail("max_concurrent_requests", "expected at least 1"));
        }
        let workers = match s.password_hash_workers {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        };
        Ok(Config {
            bind,
            data_dir: s.data_dir,
            database_url,
            tokens,
            key,
            sliding_tokens: s.sliding_tokens.0,
            rotate_refresh_tokens: s.rotate_refresh_tokens.0,
            blacklist_after_rotation: s.blacklist_after_rotation.0,
            update_last_login: s.update_last_login.0,
            auth_header_types: s.auth_header_types.0,
            check_user_is_active: s.check_user_is_active.0,
            accept_tokens_during_outage: s.accept_tokens_during_outage.0,
            user_cache_ttl: Some(s.user_cache_ttl).filter(|t| !t.is_zero()),
            user_cache_size: u64::try_from(s.user_cache_size).unwrap_or(u64::MAX),
            password_hash_workers: workers,
            pool: PoolSettings {
                max_connections,
                acquire_timeout: s.database_acquire_timeout,
                statement_timeout: s.database_statement_timeout,
            },
            prune_interval: Some(s.prune_interval).filter(|i| !i.is_zero()),
            key_refresh_interval: s.key_refresh_interval,
            max_concurrent_requests: s.max_concurrent_requests,
            request_timeout: s.request_timeout,
            trusted_proxies,
            trust_unix_socket_peers,
            cors_allowed_origins: s.cors_allowed_origins.0,
            cors_allow_credentials: s.cors_allow_credentials.0,
            unix_socket_mode,
            header_read_timeout: s.header_read_timeout,
            max_header_bytes: s.max_header_bytes.clamp(8 * 1024, 1024 * 1024),
            shutdown_timeout: s.shutdown_timeout,
            tls,
            static_files,
            max_body_bytes: s.max_body_bytes.clamp(1024, 16 * 1024 * 1024),
            admin_bind: match &s.admin_bind {
                None => None,
                Some(text) => Some(Bind::parse(text).ok_or_else(|| {
                    self.fail(
                        "admin_bind",
                        format!("expected an address like 127.0.0.1:9000, got {text:?}"),
                    )
                })?),
            },
            log_format: s
                .log_format
                .parse()
                .map_err(|e: String| self.fail("log_format", e))?,
        })
    }

    /// A key given inline or as a file: `(text, the setting it came from)`.
    fn key_text(
        &self,
        inline: Option<SecretString>,
        file: Option<&Path>,
        names: (&'static str, &'static str),
    ) -> Result<Option<(SecretString, &'static str)>, ConfigError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(self.fail(
                names.1,
                format!("set either {} or {}, not both", names.0, names.1),
            )),
            (Some(text), None) => Ok(Some((text, names.0))),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    self.fail(names.1, format!("could not read {}: {e}", path.display()))
                })?;
                // A secret file usually ends with a newline that is not part of the secret.
                let text = text.strip_suffix('\n').unwrap_or(&text);
                let text = text.strip_suffix('\r').unwrap_or(text);
                Ok(Some((SecretString::from(text.to_owned()), names.1)))
            }
            (None, None) => Ok(None),
        }
    }

    fn key_config(&self, s: &Settings) -> Result<KeyConfig, ConfigError> {
        use secrecy::ExposeSecret;
        let signing = self.key_text(
            s.signing_key.clone(),
            s.signing_key_file.as_deref(),
            ("signing_key", "signing_key_file"),
        )?;
        let verifying = self
            .key_text(
                s.verifying_key.clone().map(SecretString::from),
                s.verifying_key_file.as_deref(),
                ("verifying_key", "verifying_key_file"),
            )?
            .map(|(text, name)| (text.expose_secret().to_owned(), name));
        // A JWK names its algorithm; a PEM or a secret needs `algorithm` (HS256 by default for
        // a secret, as in simplejwt).
        let jwk: Option<serde_json::Value> = match &signing {
            Some((text, name)) if text.expose_secret().trim_start().starts_with('{') => Some(
                serde_json::from_str(text.expose_secret())
                    .map_err(|e| self.fail(name, format!("not a JWK: {e}")))?,
            ),
            _ => None,
        };
        let jwk_alg = jwk
            .as_ref()
            .and_then(|j| j.get("alg"))
            .and_then(|a| a.as_str())
            .map(str::to_owned);
        let alg = match (&s.algorithm, &jwk_alg, &signing) {
            (None, Some(named), _) => named
                .parse::<Algorithm>()
                .map_err(|e| self.fail("signing_key", e))?,
            (None, None, Some((text, name))) if text.expose_secret().contains("-----BEGIN") => {
                return Err(self.fail(
                    name,
                    "is a PEM key, but `algorithm` is not set (it would be taken for an HS256 secret); set algorithm, e.g. ES256",
                ));
            }
            (None, None, Some(_)) => Algorithm::HS256,
            (None, None, None) => Algorithm::EdDSA,
            (Some(name), _, _) => name
                .parse::<Algorithm>()
                .map_err(|e| self.fail("algorithm", e))?,
        };
        if let Some(named) = &jwk_alg
            && named != alg.as_str()
        {
            return Err(self.fail(
                "algorithm",
                format!("is {alg}, but the signing key's JWK is for {named}"),
            ));
        }
        if alg.is_hmac() {
            let Some((secret, name)) = &signing else {
                return Err(self.fail(
                    "signing_key",
                    format!("{alg} needs a shared secret of at least {} bytes (e.g. Django's SECRET_KEY)", alg.min_secret_bytes()),
                ));
            };
            let bytes = secret.expose_secret().as_bytes();
            if bytes.len() < alg.min_secret_bytes() {
                return Err(self.fail(
                    name,
                    format!(
                        "an {alg} secret must be at least {} bytes (RFC 7518 §3.2), this one has {}",
                        alg.min_secret_bytes(),
                        bytes.len()
                    ),
                ));
            }
            if is_placeholder(secret.expose_secret()) {
                return Err(self.fail(
                    name,
                    "this is a well-known example secret; generate a random one",
                ));
            }
            if let Some((_, name)) = &verifying {
                return Err(self.fail(
                    name,
                    format!("{alg} uses the signing key to verify; leave verifying_key unset"),
                ));
            }
            if s.signing_key_id.is_some() {
                return Err(self.fail(
                    "signing_key_id",
                    "an HS key has no kid in simplejwt's token layout; leave it unset",
                ));
            }
            return Ok(KeyConfig::Hmac {
                alg,
                secret: secret.clone(),
            });
        }
        match &signing {
            Some((text, name)) => {
                let (key, pem) = match &jwk {
                    Some(jwk) => {
                        doorman_token::Key::from_private_jwk(jwk).map_err(|e| self.fail(name, e))?
                    }
                    None => {
                        let key = doorman_token::Key::from_private_pem(alg, text.expose_secret())
                            .map_err(|e| {
                            self.fail(name, format!("expected a {alg} private key in PEM: {e}"))
                        })?;
                        (key, text.expose_secret().to_owned())
                    }
                };
                if let Some((public, name)) = &verifying {
                    let verifying = if public.trim_start().starts_with('{') {
                        let jwk: serde_json::Value = serde_json::from_str(public)
                            .map_err(|e| self.fail(name, format!("not a JWK: {e}")))?;
                        doorman_token::Key::from_jwk(alg, &jwk)
                    } else {
                        doorman_token::Key::from_public_pem(alg, public)
                    }
                    .map_err(|e| self.fail(name, e))?;
                    if verifying.public_jwk().map(strip_meta) != key.public_jwk().map(strip_meta) {
                        return Err(self.fail(name, "is not the public half of the signing key"));
                    }
                }
                let kid = s.signing_key_id.clone().or_else(|| {
                    jwk.is_some()
                        .then(|| key.kid().map(str::to_owned))
                        .flatten()
                });
                if kid
                    .as_deref()
                    .is_some_and(|k| k.is_empty() || k.len() > 256)
                {
                    return Err(self.fail("signing_key_id", "expected 1 to 256 characters"));
                }
                Ok(KeyConfig::Pem {
                    alg,
                    pem: pem.into(),
                    kid,
                })
            }
            None if verifying.is_some() => Err(self.fail(
                "signing_key",
                "a verifying_key alone can't issue tokens; set the matching signing_key",
            )),
            None => Ok(KeyConfig::Generated {
                alg,
                path: s.data_dir.join(generated_key_file(alg)),
            }),
        }
    }
}

/// A public JWK without `kid`, to compare two keys' public halves.
fn strip_meta(mut jwk: serde_json::Value) -> serde_json::Value {
    if let Some(map) = jwk.as_object_mut() {
        map.remove("kid");
    }
    jwk
}

/// Where a generated key of `alg` lives in the data directory (EdDSA keeps its first name).
fn generated_key_file(alg: Algorithm) -> String {
    match alg {
        Algorithm::EdDSA => "signing-key.pem".to_owned(),
        other => format!("signing-key-{}.pem", other.as_str().to_lowercase()),
    }
}

/// RFC 7235 scheme names are tokens: visible ASCII without separators.
fn is_token68_scheme(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// Secrets copied from tutorials that attackers try first (`docs/security.md` 4.12).
fn is_placeholder(secret: &str) -> bool {
    const KNOWN: [&str; 3] = [
        "your-256-bit-secret",
        "peer-secret-key-for-benchmarks-only-0123456789abcdef",
        "django-insecure-change-me-change-me-change-me-change-me",
    ];
    KNOWN.contains(&secret) || secret.bytes().all(|b| b == secret.as_bytes()[0])
}

/// Where a setting's value came from, in the operator's words.
fn source_of(md: &Metadata, key: &str) -> String {
    match &md.source {
        Some(figment::Source::File(path)) => format!("{} {}", md.name, path.display()),
        _ => format!("{} {}", md.name, md.interpolate(&Profile::Default, &[key])),
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const SECRET: &str = "doorman-test-only-hs256-secret-0123456789abcdef";

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(
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

    #[test]
    fn defaults_are_simplejwts_with_a_generated_ed25519_key() {
        let c = load(None, &[], Overrides::default()).unwrap();
        assert_eq!(c.tokens, TokenRules::default());
        assert!(matches!(
            c.key,
            KeyConfig::Generated {
                alg: Algorithm::EdDSA,
                ..
            }
        ));
        assert_eq!(c.bind, [Bind::Tcp("127.0.0.1:8000".parse().unwrap())]);
        assert_eq!(c.unix_socket_mode, 0o660);
        assert!(c.database_url.starts_with("sqlite://"));
        assert!(!c.rotate_refresh_tokens && c.check_user_is_active);
    }

    #[test]
    fn precedence_is_defaults_file_env_flags() {
        let file = "access_token_lifetime = \"10m\"\nbind = \"127.0.0.1:1\"\nrefresh_token_lifetime = 60\n";
        let c = load(Some(file), &[], Overrides::default()).unwrap();
        assert_eq!(c.tokens.access_token_lifetime, Duration::from_secs(600));
        assert_eq!(c.tokens.refresh_token_lifetime, Duration::from_secs(60));
        let e = [
            ("DOORMAN_ACCESS_TOKEN_LIFETIME", "1h"),
            ("DOORMAN_BIND", "127.0.0.1:2"),
        ];
        let c = load(Some(file), &e, Overrides::default()).unwrap();
        assert_eq!(c.tokens.access_token_lifetime, Duration::from_secs(3600));
        assert_eq!(c.bind[0].tcp().unwrap().port(), 2);
        let o = Overrides {
            bind: Some("127.0.0.1:3".into()),
            ..Overrides::default()
        };
        let c = load(Some(file), &e, o).unwrap();
        assert_eq!(c.bind[0].tcp().unwrap().port(), 3);
        assert_eq!(c.tokens.access_token_lifetime, Duration::from_secs(3600));
    }

    #[test]
    fn hs256_with_a_django_secret_key() {
        let c = load(
            None,
            &[("DOORMAN_SIGNING_KEY", SECRET)],
            Overrides::default(),
        )
        .unwrap();
        assert!(matches!(
            c.key,
            KeyConfig::Hmac {
                alg: Algorithm::HS256,
                ..
            }
        ));
    }

    #[test]
    fn short_secret_is_refused_naming_setting_and_source() {
        let err = load(
            None,
            &[("DOORMAN_SIGNING_KEY", "short")],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("signing_key"), "{err}");
        assert!(err.contains("DOORMAN_SIGNING_KEY"), "{err}");
        assert!(err.contains("at least 32 bytes"), "{err}");
        let err = load(
            Some("algorithm = \"HS512\"\nsigning_key = \"x\"\n"),
            &[],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("doorman.toml") && err.contains("64 bytes"),
            "{err}"
        );
    }

    /// Clearly a test key, and useless: a 1024-bit RSA key, which doorman must refuse.
    const TEST_ONLY_RSA_1024: &str = "-----BEGIN PRIVATE KEY-----\nMIICeAIBADANBgkqhkiG9w0BAQEFAASCAmIwggJeAgEAAoGBAKNrJ51s4TR3wVtm\nrqSjBRqWNWO09Y5+Uc7MH16waUALQ6s+t7SxRug+IqqYUHakAlIT4JXjpjoJpXTl\nUVMGxv9O+1G2L/Lg+zFq7968Wvjz79yW9BftItw0R1oWwaa6pconenbUwOEqQ25Q\nFUnn18zEjRecMFf6verCkr69X9lDAgMBAAECgYAj7eZK1Wp6R64qc1wIdJMlskrQ\nvjOS/bDs37Ix9mVdoFxjZSmsv6FQZIDosw5V119vPlGNgvzEG+TV26lSsNXFaDOA\n7wMrXdIOHytrfJEKWjhvoKjX8xzZy8zwnv37JIN6SUaSil3zy8h6wd00MQfNx8OU\ns6eJHJcyZzsZACmW2QJBANlnCGLOxez3FwJSTJvx8zJfj/hoFp1TLEXoUu7KriOf\nQiYG5pxsnjlAIGgoxudYd9xx50Ny4SQbeCplpX5qJ2cCQQDAbowwtwkC6i6/XE1a\nH/MYsfhHe1jQO3qwy+4fw3sYWxqsh3uqQhDF5/OptKb+OSynshKsD8N7SmVnal8r\nwuHFAkEAsqPzRB3cjadMBOBTiyD5Ub8sslX1nzkk/By3aPiqtyK6XDz3ajnmmeyT\ntIMtThRoCYCfI9FWJzFbQJtdrc7UqQJBAJwsG9Kdec7HyFC91HlEXMK6DUnWLWoy\nG4zItOVKfOhzZ96FxjOTkpFLglFEsBK6zCb9OnIyCPBSnKGljr+xVhECQQC/oIiX\npMVeuZaAflTojEs96lbEnBbquEexasGS+6akle0zzxu23SiBQm8aA5bmPznWE68c\ncHTC39JzJYpa+b/m\n-----END PRIVATE KEY-----\n";

    #[test]
    fn weak_or_mismatched_asymmetric_keys_are_refused_at_start() {
        let err = load(
            None,
            &[
                ("DOORMAN_ALGORITHM", "RS256"),
                ("DOORMAN_SIGNING_KEY", TEST_ONLY_RSA_1024),
            ],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("signing_key") && err.contains("at least 2048 bits"),
            "{err}"
        );
        doorman_token::install_crypto_provider();
        let (_, p384) = doorman_token::Key::generate(Algorithm::ES384).unwrap();
        let err = load(
            None,
            &[
                ("DOORMAN_ALGORITHM", "ES256"),
                ("DOORMAN_SIGNING_KEY", &p384),
            ],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("P-256"), "{err}");
        let (_, es256) = doorman_token::Key::generate(Algorithm::ES256).unwrap();
        let c = load(
            None,
            &[
                ("DOORMAN_ALGORITHM", "ES256"),
                ("DOORMAN_SIGNING_KEY", &es256),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert!(matches!(
            c.key,
            KeyConfig::Pem {
                alg: Algorithm::ES256,
                kid: None,
                ..
            }
        ));
        let c = load(
            None,
            &[("DOORMAN_ALGORITHM", "PS384")],
            Overrides::default(),
        )
        .unwrap();
        match c.key {
            KeyConfig::Generated { alg, path } => {
                assert_eq!(alg, Algorithm::PS384);
                assert!(
                    path.ends_with("signing-key-ps384.pem"),
                    "{}",
                    path.display()
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keys_from_files_and_jwks_and_their_mistakes() {
        doorman_token::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let (key, pem) = doorman_token::Key::generate(Algorithm::ES256).unwrap();
        // A PEM without `algorithm` would be taken for an HS256 secret: refused.
        let err = load(None, &[("DOORMAN_SIGNING_KEY", &pem)], Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("algorithm is not set") || err.contains("`algorithm` is not set"),
            "{err}"
        );

        let pem_file = dir.path().join("key.pem");
        std::fs::write(&pem_file, &pem).unwrap();
        let path = pem_file.display().to_string();
        let c = load(
            None,
            &[
                ("DOORMAN_ALGORITHM", "ES256"),
                ("DOORMAN_SIGNING_KEY_FILE", &path),
                ("DOORMAN_SIGNING_KEY_ID", "2026-11"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert!(matches!(&c.key, KeyConfig::Pem { kid: Some(k), .. } if k == "2026-11"));
        let err = load(
            None,
            &[
                ("DOORMAN_ALGORITHM", "ES256"),
                ("DOORMAN_SIGNING_KEY_FILE", &path),
                ("DOORMAN_SIGNING_KEY", &pem),
            ],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not both"), "{err}");

        // A private JWK file names its algorithm and kid (RFC 7515 A.3's key).
        let jwk_file = dir.path().join("key.jwk");
        std::fs::write(
            &jwk_file,
            r#"{"kty":"EC","crv":"P-256","alg":"ES256","kid":"mine",
                "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                "d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#,
        )
        .unwrap();
        let jwk_path = jwk_file.display().to_string();
        let c = load(
            None,
            &[("DOORMAN_SIGNING_KEY_FILE", &jwk_path)],
            Overrides::default(),
        )
        .unwrap();
        assert!(
            matches!(&c.key, KeyConfig::Pem { alg: Algorithm::ES256, kid: Some(k), .. } if k == "mine")
        );
        let err = load(
            None,
            &[
                ("DOORMAN_ALGORITHM", "EdDSA"),
                ("DOORMAN_SIGNING_KEY_FILE", &jwk_path),
            ],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("JWK is for ES256"), "{err}");

        // verifying_key must be the signing key's public half (PEM or JWK).
        let public = key.public_jwk().unwrap().to_string();
        let err = load(
            None,
            &[
                ("DOORMAN_SIGNING_KEY_FILE", &jwk_path),
                ("DOORMAN_VERIFYING_KEY", &public),
            ],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not the public half"), "{err}");
        let c = load(
            None,
            &[
                ("DOORMAN_ALGORITHM", "ES256"),
                ("DOORMAN_SIGNING_KEY", &pem),
                ("DOORMAN_VERIFYING_KEY", &public),
            ],
            Overrides::default(),
        );
        assert!(c.is_ok(), "{:?}", c.err());
    }

    #[test]
    fn log_format_is_one_of_three() {
        use crate::telemetry::LogFormat;
        let c = load(None, &[], Overrides::default()).unwrap();
        assert_eq!(c.log_format, LogFormat::Auto);
        let c = load(
            None,
            &[("DOORMAN_LOG_FORMAT", "json")],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        let err = load(None, &[("DOORMAN_LOG_FORMAT", "xml")], Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("log_format") && err.contains("auto, json or text"),
            "{err}"
        );
    }

    #[test]
    fn tls_files_must_come_in_pairs_and_load() {
        let err = load(
            None,
            &[("DOORMAN_TLS_CERT_FILE", "/nonexistent/cert.pem")],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("tls_key_file") && err.contains("set its key too"),
            "{err}"
        );
        let err = load(
            None,
            &[
                ("DOORMAN_TLS_CERT_FILE", "/nonexistent/cert.pem"),
                ("DOORMAN_TLS_KEY_FILE", "/nonexistent/key.pem"),
            ],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("tls_cert_file") && err.contains("/nonexistent/cert.pem"),
            "{err}"
        );
    }

    #[test]
    fn proxies_and_cors_are_checked() {
        let c = load(
            None,
            &[
                ("DOORMAN_TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
                (
                    "DOORMAN_CORS_ALLOWED_ORIGINS",
                    "https://app.example.com,http://localhost:3000",
                ),
                ("DOORMAN_CORS_ALLOW_CREDENTIALS", "true"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(!c.trust_unix_socket_peers);
        assert_eq!(c.cors_allowed_origins.len(), 2);
        let c = load(
            None,
            &[("DOORMAN_TRUSTED_PROXIES", "unix, 10.0.0.0/8")],
            Overrides::default(),
        )
        .unwrap();
        assert!(c.trust_unix_socket_peers && c.trusted_proxies.len() == 1);
        for (name, value, expect) in [
            ("DOORMAN_TRUSTED_PROXIES", "10.0.0.0/33", "trusted_proxies"),
            (
                "DOORMAN_TRUSTED_PROXIES",
                "proxy.internal",
                "trusted_proxies",
            ),
            (
                "DOORMAN_CORS_ALLOWED_ORIGINS",
                "app.example.com",
                "cors_allowed_origins",
            ),
            (
                "DOORMAN_CORS_ALLOWED_ORIGINS",
                "https://app.example.com/path",
                "cors_allowed_origins",
            ),
        ] {
            let err = load(None, &[(name, value)], Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(expect) && err.contains(name), "{err}");
        }
        let err = load(
            None,
            &[
                ("DOORMAN_CORS_ALLOWED_ORIGINS", "*"),
                ("DOORMAN_CORS_ALLOW_CREDENTIALS", "true"),
            ],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("can't go with cors_allow_credentials"),
            "{err}"
        );
    }

    /// Every setting's name, from serde's own list (`deny_unknown_fields` names them all when
    /// it refuses an unknown one), so this can't drift from `Settings`.
    fn every_setting_name() -> Vec<&'static str> {
        let err = figment::Figment::new()
            .merge(figment::providers::Toml::string("no_such_setting = 1"))
            .extract::<Settings>()
            .unwrap_err();
        match err.kind {
            figment::error::Kind::UnknownField(_, expected) => expected.to_vec(),
            other => panic!("{other:?}"),
        }
    }

    /// deploy/doorman.toml lists every setting, and each listed default is accepted.
    #[test]
    fn the_sample_settings_file_lists_every_setting() {
        let sample = include_str!("../../../deploy/doorman.toml");
        let listed: Vec<(&str, &str)> = sample
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter_map(|l| l.split_once(" = "))
            .filter(|(name, _)| name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
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
    fn pool_and_pruning_settings() {
        let c = load(None, &[], Overrides::default()).unwrap();
        assert_eq!(c.pool, PoolSettings::default());
        assert_eq!(c.prune_interval, Some(Duration::from_secs(3600)));
        let c = load(
            Some("database_max_connections = 32\nprune_interval = \"0\"\n"),
            &[
                ("DOORMAN_DATABASE_ACQUIRE_TIMEOUT", "2"),
                ("DOORMAN_DATABASE_STATEMENT_TIMEOUT", "1m"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.pool,
            PoolSettings {
                max_connections: Some(32),
                acquire_timeout: Duration::from_secs(2),
                statement_timeout: Duration::from_secs(60),
            }
        );
        assert_eq!(c.prune_interval, None, "0 turns pruning off");
        for (name, value) in [
            ("DOORMAN_DATABASE_ACQUIRE_TIMEOUT", "0"),
            ("DOORMAN_DATABASE_STATEMENT_TIMEOUT", "0s"),
            ("DOORMAN_DATABASE_MAX_CONNECTIONS", "100000"),
        ] {
            let err = load(None, &[(name, value)], Overrides::default())
                .unwrap_err()
                .to_string();
            let setting = name.trim_start_matches("DOORMAN_").to_lowercase();
            assert!(err.contains(&setting) && err.contains(name), "{err}");
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
        assert!(c.rotate_refresh_tokens && c.blacklist_after_rotation);
        assert_eq!(c.auth_header_types, ["Bearer", "JWT"]);
        assert_eq!(c.tokens.token_type_claim, None);
        let KeyConfig::Hmac { secret, .. } = c.key else {
            panic!("expected HS256")
        };
        use secrecy::ExposeSecret;
        assert_eq!(
            secret.expose_secret(),
            "12345678901234567890123456789012345"
        );
    }

    #[test]
    fn placeholder_secrets_are_refused() {
        let err = load(
            None,
            &[("DOORMAN_SIGNING_KEY", &"a".repeat(40))],
            Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("well-known"), "{err}");
    }
}
