//! The server's settings: where doorman listens (`bind`, `admin_bind`, the Unix socket's
//! mode, TLS), how connections and requests are bounded (timeouts, header and body sizes,
//! concurrency, the graceful stop), and whom it believes about the client (trusted proxies and
//! the header they name the client in, CORS origins).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::client::ForwardedHeader;
use super::listen::Bind;
use super::tls::TlsFiles;
use crate::config::source::{ConfigError, Sources};
use crate::config::values::{self, Flag, StringList};

/// The default of `max_body_bytes`: token requests are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The server's settings as the layers give them.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    bind: StringList,
    admin_bind: Option<String>,
    unix_socket_mode: String,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    #[serde(with = "values::count")]
    max_concurrent_requests: usize,
    #[serde(with = "values::duration")]
    request_timeout: Duration,
    #[serde(with = "values::duration")]
    header_read_timeout: Duration,
    #[serde(with = "values::count")]
    max_header_bytes: usize,
    #[serde(with = "values::count")]
    max_body_bytes: usize,
    #[serde(with = "values::duration")]
    body_read_timeout: Duration,
    #[serde(with = "values::duration")]
    shutdown_timeout: Duration,
    #[serde(with = "values::count")]
    http2_max_concurrent_streams: usize,
    #[serde(with = "values::duration")]
    http2_idle_timeout: Duration,
    #[serde(with = "values::duration")]
    http2_keepalive_interval: Duration,
    #[serde(with = "values::duration")]
    http2_keepalive_timeout: Duration,
    trusted_proxies: StringList,
    cors_allowed_origins: StringList,
    cors_allow_credentials: Flag,
    forwarded_header: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: StringList(vec!["127.0.0.1:8000".to_owned()]),
            admin_bind: None,
            unix_socket_mode: "660".to_owned(),
            tls_cert_file: None,
            tls_key_file: None,
            max_concurrent_requests: 1024,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_body_bytes: MAX_BODY_BYTES,
            body_read_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            http2_max_concurrent_streams: 100,
            http2_idle_timeout: Duration::from_secs(60),
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(20),
            trusted_proxies: StringList(Vec::new()),
            cors_allowed_origins: StringList(Vec::new()),
            cors_allow_credentials: Flag(false),
            forwarded_header: "x-forwarded-for".to_owned(),
        }
    }
}

/// Where doorman listens and what every connection and request runs under.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen (at least one).
    pub bind: Vec<Bind>,
    /// A separate listener for `/metrics` (and the health checks); `/metrics` then leaves the
    /// API listeners.
    pub admin_bind: Option<Bind>,
    /// Permissions of a Unix socket doorman creates (e.g. 0o660: the proxy's group may connect).
    pub unix_socket_mode: u32,
    /// TLS from PEM files (certificate chain, private key); reloaded on SIGHUP.
    pub tls: Option<TlsFiles>,
    /// Requests handled at once; beyond it doorman answers 503 with `Retry-After` at once
    /// instead of queueing without bound.
    pub max_concurrent_requests: usize,
    /// The deadline of one request (503 past it).
    pub request_timeout: Duration,
    /// Time allowed to send a request's headers (slow clients are cut off after it).
    pub header_read_timeout: Duration,
    /// Largest request head; beyond it the answer is 431.
    pub max_header_bytes: usize,
    /// Largest request body an API view reads (413 beyond it).
    pub max_body_bytes: usize,
    /// Time allowed to send a request's body once its head is in (408 past it); the request
    /// takes its concurrency slot only once the body has arrived.
    pub body_read_timeout: Duration,
    /// How long a graceful stop waits for the requests in flight.
    pub shutdown_timeout: Duration,
    /// Streams one HTTP/2 connection may have open at once.
    pub http2_max_concurrent_streams: u32,
    /// An HTTP/2 connection with no request for this long is closed (GOAWAY).
    pub http2_idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged, and how long the answer may take before the
    /// connection is closed as dead.
    pub http2_keepalive_interval: Duration,
    pub http2_keepalive_timeout: Duration,
    /// Proxies whose forwarding header (`forwarded_header`) names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `unix` in `trusted_proxies`: peers on the Unix socket (nginx) are trusted proxies too.
    pub trust_unix_socket_peers: bool,
    /// Browser origins allowed by CORS (`*` only without credentials).
    pub cors_allowed_origins: Vec<String>,
    pub cors_allow_credentials: bool,
    /// The one header a trusted proxy names the client (and its scheme) in.
    pub forwarded_header: ForwardedHeader,
}

impl ServerSettings {
    pub fn validate(self, src: &Sources) -> Result<ServerConfig, ConfigError> {
        let bind = self
            .bind
            .0
            .iter()
            .map(|text| {
                Bind::parse(text).ok_or_else(|| {
                    src.fail(
                        "bind",
                        format!(
                            "expected addresses like 127.0.0.1:8000, [::1]:8000 or unix:/run/doorman.sock, got {text:?}"
                        ),
                    )
                })
            })
            .collect::<Result<Vec<Bind>, _>>()?;
        if bind.is_empty() {
            return Err(src.fail("bind", "expected at least one address"));
        }
        let unix_socket_mode =
            u32::from_str_radix(self.unix_socket_mode.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| {
                    src.fail(
                        "unix_socket_mode",
                        format!(
                            "expected an octal mode like 660, got {:?}",
                            self.unix_socket_mode
                        ),
                    )
                })?;
        let request_timeout = src.nonzero("request_timeout", self.request_timeout)?;
        let header_read_timeout = src.nonzero("header_read_timeout", self.header_read_timeout)?;
        let shutdown_timeout = src.nonzero("shutdown_timeout", self.shutdown_timeout)?;
        let body_read_timeout = src.nonzero("body_read_timeout", self.body_read_timeout)?;
        let http2_idle_timeout = src.nonzero("http2_idle_timeout", self.http2_idle_timeout)?;
        let http2_keepalive_interval =
            src.nonzero("http2_keepalive_interval", self.http2_keepalive_interval)?;
        let http2_keepalive_timeout =
            src.nonzero("http2_keepalive_timeout", self.http2_keepalive_timeout)?;
        let http2_max_concurrent_streams = u32::try_from(self.http2_max_concurrent_streams)
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                src.fail(
                    "http2_max_concurrent_streams",
                    format!(
                        "expected 1 to 1000, got {}",
                        self.http2_max_concurrent_streams
                    ),
                )
            })?;
        let trust_unix_socket_peers = self.trusted_proxies.0.iter().any(|t| t == "unix");
        let trusted_proxies = self
            .trusted_proxies
            .0
            .iter()
            .filter(|t| *t != "unix")
            .map(|text| {
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        src.fail(
                            "trusted_proxies",
                            format!("expected addresses or networks like 10.0.0.0/8 or ::1, got {text:?}"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for origin in &self.cors_allowed_origins.0 {
            if origin == "*" {
                if self.cors_allow_credentials.0 {
                    return Err(src.fail(
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
                return Err(src.fail(
                    "cors_allowed_origins",
                    format!(
                        "expected origins like https://app.example.com (no path), got {origin:?}"
                    ),
                ));
            }
        }
        let tls = match (self.tls_cert_file, self.tls_key_file) {
            (Some(cert), Some(key)) => {
                let files = TlsFiles { cert, key };
                super::tls::load(&files).map_err(|e| src.fail("tls_cert_file", e))?;
                Some(files)
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(src.fail("tls_key_file", "tls_cert_file is set; set its key too"));
            }
            (None, Some(_)) => {
                return Err(src.fail(
                    "tls_cert_file",
                    "tls_key_file is set; set the certificate too",
                ));
            }
        };
        if self.max_concurrent_requests == 0 {
            return Err(src.fail("max_concurrent_requests", "expected at least 1"));
        }
        let admin_bind = match &self.admin_bind {
            None => None,
            Some(text) => Some(Bind::parse(text).ok_or_else(|| {
                src.fail(
                    "admin_bind",
                    format!("expected an address like 127.0.0.1:9000, got {text:?}"),
                )
            })?),
        };
        let forwarded_header = ForwardedHeader::parse(&self.forwarded_header).ok_or_else(|| {
            src.fail(
                "forwarded_header",
                format!(
                    "expected x-forwarded-for or forwarded, got {:?}",
                    self.forwarded_header
                ),
            )
        })?;
        Ok(ServerConfig {
            bind,
            admin_bind,
            unix_socket_mode,
            tls,
            max_concurrent_requests: self.max_concurrent_requests,
            request_timeout,
            header_read_timeout,
            max_header_bytes: self.max_header_bytes.clamp(8 * 1024, 1024 * 1024),
            max_body_bytes: self.max_body_bytes.clamp(1024, 16 * 1024 * 1024),
            body_read_timeout,
            shutdown_timeout,
            http2_max_concurrent_streams,
            http2_idle_timeout,
            http2_keepalive_interval,
            http2_keepalive_timeout,
            trusted_proxies,
            trust_unix_socket_peers,
            cors_allowed_origins: self.cors_allowed_origins.0,
            cors_allow_credentials: self.cors_allow_credentials.0,
            forwarded_header,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::Overrides;
    use crate::config::testing::load;

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
        assert_eq!(c.server.trusted_proxies.len(), 2);
        assert!(!c.server.trust_unix_socket_peers);
        assert_eq!(c.server.cors_allowed_origins.len(), 2);
        let c = load(
            None,
            &[("DOORMAN_TRUSTED_PROXIES", "unix, 10.0.0.0/8")],
            Overrides::default(),
        )
        .unwrap();
        assert!(c.server.trust_unix_socket_peers && c.server.trusted_proxies.len() == 1);
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

    /// The HTTP/2 and body settings are read, and bad values are refused naming the setting.
    #[test]
    fn http2_and_body_limits_are_checked() {
        let c = load(
            None,
            &[
                ("DOORMAN_BODY_READ_TIMEOUT", "3s"),
                ("DOORMAN_HTTP2_MAX_CONCURRENT_STREAMS", "8"),
                ("DOORMAN_HTTP2_IDLE_TIMEOUT", "2m"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.server.body_read_timeout,
            std::time::Duration::from_secs(3)
        );
        assert_eq!(c.server.http2_max_concurrent_streams, 8);
        assert_eq!(
            c.server.http2_idle_timeout,
            std::time::Duration::from_secs(120)
        );
        for (name, value) in [
            ("DOORMAN_BODY_READ_TIMEOUT", "0"),
            ("DOORMAN_HTTP2_IDLE_TIMEOUT", "0"),
            ("DOORMAN_HTTP2_KEEPALIVE_INTERVAL", "0"),
            ("DOORMAN_HTTP2_KEEPALIVE_TIMEOUT", "0"),
            ("DOORMAN_HTTP2_MAX_CONCURRENT_STREAMS", "0"),
            ("DOORMAN_HTTP2_MAX_CONCURRENT_STREAMS", "100000"),
        ] {
            let err = load(None, &[(name, value)], Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{err}");
        }
    }
}
