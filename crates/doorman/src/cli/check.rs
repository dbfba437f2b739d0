//! `doorman check [--deploy]`: loads the effective configuration (which alone catches most
//! mistakes) and, with `--deploy`, looks for what is legal but unwise in production, like
//! Django's `check --deploy`. Errors exit 1; warnings are reported and exit 0.

use std::net::IpAddr;
use std::path::Path;

use clap::Args;

use super::failure::Failure;
use crate::config::Config;
use crate::keys::KeyConfig;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Also check what matters on a server exposed to real users
    #[arg(long)]
    deploy: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Error,
}

/// One finding, with the setting to look at.
#[derive(Debug)]
pub struct Finding {
    pub severity: Severity,
    pub setting: &'static str,
    pub message: String,
}

pub fn run(config: &Config, args: CheckArgs) -> Result<(), Failure> {
    let findings = if args.deploy {
        deploy_findings(config, std::env::var("RUST_LOG").ok().as_deref())
    } else {
        Vec::new()
    };
    for f in &findings {
        let label = match f.severity {
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
        };
        println!("{label} {}: {}", f.setting, f.message);
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    println!(
        "System check identified {} issue(s) ({} error(s)).",
        findings.len(),
        errors
    );
    if errors > 0 {
        return Err(Failure::runtime(format!(
            "{errors} deployment error(s); see above"
        )));
    }
    Ok(())
}

/// What `--deploy` reports for this configuration and log filter.
pub fn deploy_findings(config: &Config, log_filter: Option<&str>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut warn = |setting, message: String| {
        findings.push(Finding {
            severity: Severity::Warning,
            setting,
            message,
        });
    };
    match &config.keys.key {
        KeyConfig::Hmac { alg, secret } => {
            use secrecy::ExposeSecret;
            warn(
                "algorithm",
                format!(
                    "{alg} shares its secret with every service that verifies tokens; unless a Django \
                     deployment must accept them, a key pair (EdDSA, ES256) lets others verify with the JWKS alone"
                ),
            );
            let secret = secret.expose_secret();
            let distinct: std::collections::BTreeSet<char> = secret.chars().collect();
            if secret.len() < 50 || distinct.len() < 5 {
                warn(
                    "signing_key",
                    "the secret is short or repetitive; use at least 50 random characters (Django's own check asks the same)".into(),
                );
            }
        }
        KeyConfig::Pem { .. } | KeyConfig::Generated { .. } => {}
    }
    let public: Vec<String> = config
        .server
        .bind
        .iter()
        .filter_map(|b| b.tcp())
        .filter(|addr| !addr.ip().is_loopback())
        .map(|addr| addr.to_string())
        .collect();
    if !public.is_empty() && config.server.trusted_proxies.is_empty() && config.server.tls.is_none()
    {
        warn(
            "bind",
            format!(
                "serving plain HTTP on {} with no trusted proxy in front; set tls_cert_file and \
                 tls_key_file, or put doorman behind a TLS-terminating proxy (and list it in \
                 trusted_proxies)",
                public.join(", ")
            ),
        );
    }
    if config
        .server
        .trusted_proxies
        .iter()
        .any(|net| net.prefix_len() == 0)
    {
        warn(
            "trusted_proxies",
            "trusts every address: any client can claim any address with X-Forwarded-For".into(),
        );
    }
    match config.tokens.public_url.as_deref() {
        None => warn(
            "public_url",
            "unset: the discovery document names whatever host each request was sent to, so it \
             is answered Cache-Control: no-store; set it to the https URL clients reach doorman at"
                .into(),
        ),
        Some(url) if url.starts_with("http://") && !is_local_origin(url) => warn(
            "public_url",
            format!(
                "{url} is plain HTTP; a verifier fetching keys from its JWKS can be handed others' keys on the way"
            ),
        ),
        Some(_) => {}
    }
    if config.server.cors_allowed_origins.iter().any(|o| o == "*") {
        warn(
            "cors_allowed_origins",
            "\"*\" lets every web site call the API from its users' browsers".into(),
        );
    }
    if let Some(origin) = config
        .server
        .cors_allowed_origins
        .iter()
        .find(|o| o.starts_with("http://") && !is_local_origin(o))
    {
        warn(
            "cors_allowed_origins",
            format!("{origin} is plain HTTP; tokens sent to it can be read on the way"),
        );
    }
    if log_filter.is_some_and(|f| f.contains("debug") || f.contains("trace")) {
        warn(
            "RUST_LOG",
            "debug or trace logging is on; it is verbose and slower in production".into(),
        );
    }
    if !config.tokens.rules.leeway.is_zero() {
        warn(
            "leeway",
            format!(
                "{} s of clock skew accepted; keep clocks in sync (NTP) and this at 0",
                config.tokens.rules.leeway.as_secs()
            ),
        );
    }
    if config.accounts.accept_tokens_during_outage {
        warn(
            "accept_tokens_during_outage",
            "true: while the database can't be reached, access tokens of deactivated or revoked \
             users keep working until they expire; set it to false to answer 503 instead"
                .into(),
        );
    }
    if config.tokens.rules.token_type_claim.is_none() {
        warn(
            "token_type_claim",
            "empty: tokens can't be told apart, so a refresh token is accepted where an access \
             token is expected and the other way round; set it (\"token_type\")"
                .into(),
        );
    }
    if config.tokens.rules.jti_claim.is_none() {
        warn(
            "jti_claim",
            "empty: tokens carry no id, so they can't be blacklisted: a logged-out refresh \
             token keeps working until it expires; set it (\"jti\")"
                .into(),
        );
    }
    if config.tokens.rotate_refresh_tokens && !config.tokens.blacklist_after_rotation {
        warn(
            "blacklist_after_rotation",
            "false while rotate_refresh_tokens is true: a rotated-out refresh token keeps working \
             until it expires; set it to true"
                .into(),
        );
    }
    if config.cookies.enabled && !config.cookies.secure {
        warn(
            "token_cookie_secure",
            "false: the token cookies are sent over plain HTTP too, where they can be read on \
             the way; for development only"
                .into(),
        );
    }
    if let Some(origin) = config
        .cookies
        .csrf_trusted_origins
        .iter()
        .map(ToString::to_string)
        .find(|o| o.starts_with("http://") && !is_local_origin(o))
    {
        warn(
            "csrf_trusted_origins",
            format!("{origin} is plain HTTP; a page served from it can be changed on the way"),
        );
    }
    if !config.accounts.login_throttle.enabled {
        warn(
            "login_throttle",
            "false: failed logins are not throttled, so passwords can be guessed as fast as \
             doorman hashes them; turn it on, or throttle POST /api/token/ in front of doorman"
                .into(),
        );
    }
    for (setting, path) in key_files(config) {
        if let Some(problem) = readable_by_others(&path) {
            findings.push(Finding {
                severity: Severity::Error,
                setting,
                message: format!("{}: {problem}", path.display()),
            });
        }
    }
    findings
}

fn is_local_origin(origin: &str) -> bool {
    let host = origin
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap_or("");
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The files and directories that hold private key material.
fn key_files(config: &Config) -> Vec<(&'static str, std::path::PathBuf)> {
    let mut files = vec![("data_dir", config.store.data_dir.clone())];
    if let KeyConfig::Generated { path, .. } = &config.keys.key {
        files.push(("data_dir", path.clone()));
    }
    files
}

/// "readable by group or others (mode 0644)" for a key file or its directory, if so.
fn readable_by_others(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| {
            format!(
                "readable by group or others (mode {mode:04o}); it holds private keys: chmod go-rwx"
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::Overrides;

    fn findings(pairs: &[(&str, &str)], log_filter: Option<&str>) -> Vec<String> {
        let env: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = Config::load_from(None, &env, &Overrides::default()).unwrap();
        deploy_findings(&config, log_filter)
            .iter()
            .map(|f| format!("{:?} {}: {}", f.severity, f.setting, f.message))
            .collect()
    }

    /// What `--deploy` says, word for word, for a configuration that trips every warning and
    /// for one that trusts every proxy.
    #[test]
    fn deploy_findings_word_for_word() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = data.display().to_string();
        let report = findings(
            &[
                (
                    "DOORMAN_SIGNING_KEY",
                    "doorman-check-test-secret-0123456789ab",
                ),
                ("DOORMAN_BIND", "0.0.0.0:8000, 127.0.0.1:8001"),
                (
                    "DOORMAN_CORS_ALLOWED_ORIGINS",
                    "*, http://localhost:3000, http://app.example.com",
                ),
                ("DOORMAN_LEEWAY", "5"),
                ("DOORMAN_PUBLIC_URL", "http://auth.example.com/"),
                ("DOORMAN_TOKEN_TYPE_CLAIM", ""),
                ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
                ("DOORMAN_DATA_DIR", &data),
            ],
            Some("doorman=debug"),
        );
        let error = format!(
            "Error data_dir: {data}: readable by group or others (mode 0755); it holds private keys: chmod go-rwx"
        );
        assert_eq!(
            report,
            [
                "Warning algorithm: HS256 shares its secret with every service that verifies tokens; unless a Django deployment must accept them, a key pair (EdDSA, ES256) lets others verify with the JWKS alone",
                "Warning signing_key: the secret is short or repetitive; use at least 50 random characters (Django's own check asks the same)",
                "Warning bind: serving plain HTTP on 0.0.0.0:8000 with no trusted proxy in front; set tls_cert_file and tls_key_file, or put doorman behind a TLS-terminating proxy (and list it in trusted_proxies)",
                "Warning public_url: http://auth.example.com is plain HTTP; a verifier fetching keys from its JWKS can be handed others' keys on the way",
                "Warning cors_allowed_origins: \"*\" lets every web site call the API from its users' browsers",
                "Warning cors_allowed_origins: http://app.example.com is plain HTTP; tokens sent to it can be read on the way",
                "Warning RUST_LOG: debug or trace logging is on; it is verbose and slower in production",
                "Warning leeway: 5 s of clock skew accepted; keep clocks in sync (NTP) and this at 0",
                "Warning accept_tokens_during_outage: true: while the database can't be reached, access tokens of deactivated or revoked users keep working until they expire; set it to false to answer 503 instead",
                "Warning token_type_claim: empty: tokens can't be told apart, so a refresh token is accepted where an access token is expected and the other way round; set it (\"token_type\")",
                "Warning blacklist_after_rotation: false while rotate_refresh_tokens is true: a rotated-out refresh token keeps working until it expires; set it to true",
                &error,
            ]
        );
        // Without token ids (which rotation needs, so the settings refuse the two together).
        assert!(
            findings(&[("DOORMAN_JTI_CLAIM", "")], None).contains(
                &"Warning jti_claim: empty: tokens carry no id, so they can't be blacklisted: a logged-out refresh token keeps working until it expires; set it (\"jti\")"
                    .to_owned()
            )
        );
        // A proxy in front (even one trusting everything) answers the plain-HTTP warning; an
        // owner-only data directory, a key pair, refusing tokens during an outage,
        // blacklisting what rotation replaces and an https public URL leave nothing else to say.
        let private = dir.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let report = findings(
            &[
                ("DOORMAN_BIND", "0.0.0.0:8000"),
                ("DOORMAN_TRUSTED_PROXIES", "0.0.0.0/0"),
                ("DOORMAN_DATA_DIR", &private.display().to_string()),
                ("DOORMAN_ACCEPT_TOKENS_DURING_OUTAGE", "false"),
                ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
                ("DOORMAN_BLACKLIST_AFTER_ROTATION", "true"),
                ("DOORMAN_PUBLIC_URL", "https://auth.example.com"),
            ],
            None,
        );
        assert_eq!(
            report,
            [
                "Warning trusted_proxies: trusts every address: any client can claim any address with X-Forwarded-For"
            ]
        );
    }

    #[test]
    fn throttling_turned_off_is_warned_about() {
        let warning = "Warning login_throttle: false: failed logins are not throttled, so passwords can be guessed as fast as doorman hashes them; turn it on, or throttle POST /api/token/ in front of doorman".to_owned();
        assert!(findings(&[("DOORMAN_LOGIN_THROTTLE", "false")], None).contains(&warning));
        assert!(!findings(&[], None).contains(&warning));
    }

    #[test]
    fn insecure_token_cookies_are_warned_about() {
        let warning = "Warning token_cookie_secure: false: the token cookies are sent over plain HTTP too, where they can be read on the way; for development only".to_owned();
        let insecure = [
            ("DOORMAN_TOKEN_COOKIES", "true"),
            ("DOORMAN_TOKEN_COOKIE_SECURE", "false"),
            (
                "DOORMAN_CSRF_TRUSTED_ORIGINS",
                "http://app.example.com,http://localhost:3000",
            ),
        ];
        let found = findings(&insecure, None);
        assert!(found.contains(&warning), "{found:?}");
        assert!(found.contains(&"Warning csrf_trusted_origins: http://app.example.com is plain HTTP; a page served from it can be changed on the way".to_owned()), "{found:?}");
        let off = findings(&[("DOORMAN_TOKEN_COOKIE_SECURE", "false")], None);
        assert!(!off.iter().any(|f| f.contains("token_cookie")), "{off:?}");
    }

    #[test]
    fn an_unset_public_url_is_warned_about() {
        let warning = "Warning public_url: unset: the discovery document names whatever host each request was sent to, so it is answered Cache-Control: no-store; set it to the https URL clients reach doorman at".to_owned();
        assert!(findings(&[], None).contains(&warning));
        let set = findings(&[("DOORMAN_PUBLIC_URL", "https://auth.example.com")], None);
        assert!(!set.iter().any(|f| f.contains("public_url")), "{set:?}");
        let local = findings(&[("DOORMAN_PUBLIC_URL", "http://localhost:8000")], None);
        assert!(!local.iter().any(|f| f.contains("public_url")), "{local:?}");
    }
}
