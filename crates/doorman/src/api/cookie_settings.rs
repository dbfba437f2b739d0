//! The cookie mode's settings: whether the token views also hand browsers their tokens as
//! HttpOnly cookies (`token_cookies`, off by default), the cookies' names and attributes, and
//! the origins a cookie-authenticated request may come from besides doorman's own
//! (`csrf_trusted_origins`).

use axum_extra::extract::cookie::SameSite;
use serde::Deserialize;

use super::csrf::Origin;
use crate::config::source::{ConfigError, Sources};
use crate::config::values::{Flag, StringList};

/// The cookie settings as the layers give them.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct CookieSettings {
    token_cookies: Flag,
    token_cookie_access: Flag,
    token_cookie_samesite: String,
    token_cookie_secure: Flag,
    token_cookie_domain: Option<String>,
    token_cookie_refresh_name: String,
    token_cookie_access_name: String,
    csrf_trusted_origins: StringList,
}

impl Default for CookieSettings {
    fn default() -> Self {
        CookieSettings {
            token_cookies: Flag(false),
            token_cookie_access: Flag(false),
            token_cookie_samesite: "Strict".to_owned(),
            token_cookie_secure: Flag(true),
            token_cookie_domain: None,
            token_cookie_refresh_name: "doorman_refresh".to_owned(),
            token_cookie_access_name: "doorman_access".to_owned(),
            csrf_trusted_origins: StringList(Vec::new()),
        }
    }
}

/// What the token views do with cookies.
#[derive(Clone, Debug)]
pub struct CookiesConfig {
    /// The mode: logins and refreshes set the refresh cookie, refresh and blacklist read it.
    pub enabled: bool,
    /// The access token is set as a cookie too, and `/hello/` and revoke-all accept it.
    pub access: bool,
    pub same_site: SameSite,
    /// `Secure`; off only for plain-http development.
    pub secure: bool,
    /// `Domain`; without it the cookies go back to doorman's host only.
    pub domain: Option<String>,
    pub refresh_name: String,
    pub access_name: String,
    /// Origins trusted besides doorman's own and `cors_allowed_origins`.
    pub csrf_trusted_origins: Vec<Origin>,
}

impl CookiesConfig {
    /// The access cookie's name, when the mode sets and reads one.
    pub fn access_cookie(&self) -> Option<&str> {
        (self.enabled && self.access).then_some(self.access_name.as_str())
    }
}

impl CookieSettings {
    pub fn validate(self, src: &Sources) -> Result<CookiesConfig, ConfigError> {
        let same_site = match self
            .token_cookie_samesite
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "strict" => SameSite::Strict,
            "lax" => SameSite::Lax,
            "none" => SameSite::None,
            _ => {
                return Err(src.fail(
                    "token_cookie_samesite",
                    format!(
                        "expected Strict, Lax or None, got {:?}",
                        self.token_cookie_samesite
                    ),
                ));
            }
        };
        let secure = self.token_cookie_secure.0;
        if same_site == SameSite::None && !secure {
            return Err(src.fail(
                "token_cookie_samesite",
                "None needs token_cookie_secure = true (browsers drop a SameSite=None cookie that is not Secure)",
            ));
        }
        let refresh_name = self.token_cookie_refresh_name;
        let access_name = self.token_cookie_access_name;
        for (key, name) in [
            ("token_cookie_refresh_name", &refresh_name),
            ("token_cookie_access_name", &access_name),
        ] {
            if !is_cookie_name(name) {
                return Err(src.fail(
                    key,
                    format!(
                        "expected a cookie name (letters, digits and !#$%&'*+-.^_`|~), got {name:?}"
                    ),
                ));
            }
            if name.starts_with("__Secure-") && !secure {
                return Err(src.fail(key, "a __Secure- name needs token_cookie_secure = true"));
            }
        }
        // `__Host-` cookies must be at `Path=/`: the refresh cookie never is.
        if refresh_name.starts_with("__Host-") {
            return Err(src.fail(
                "token_cookie_refresh_name",
                "a __Host- cookie must be at Path=/, and the refresh cookie is at its endpoints' paths only; use __Secure-",
            ));
        }
        if access_name.starts_with("__Host-") && (!secure || self.token_cookie_domain.is_some()) {
            return Err(src.fail(
                "token_cookie_access_name",
                "a __Host- name needs token_cookie_secure = true and no token_cookie_domain",
            ));
        }
        // The access cookie at `/` would reach the refresh endpoints under the same name.
        if refresh_name == access_name {
            return Err(src.fail(
                "token_cookie_access_name",
                "expected a name other than token_cookie_refresh_name's",
            ));
        }
        let domain = match self.token_cookie_domain.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(domain) => Some(cookie_domain(domain).ok_or_else(|| {
                src.fail(
                    "token_cookie_domain",
                    format!("expected a host name like example.com, got {domain:?}"),
                )
            })?),
        };
        let csrf_trusted_origins = self
            .csrf_trusted_origins
            .0
            .iter()
            .map(|text| {
                Origin::parse(text).ok_or_else(|| {
                    src.fail(
                        "csrf_trusted_origins",
                        format!(
                            "expected origins like https://app.example.com or http://localhost:3000 (scheme://host[:port], no path), got {text:?}"
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CookiesConfig {
            enabled: self.token_cookies.0,
            access: self.token_cookie_access.0,
            same_site,
            secure,
            domain,
            refresh_name,
            access_name,
            csrf_trusted_origins,
        })
    }
}

/// RFC 6265's cookie-name: an RFC 7230 token.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A `Domain` attribute: a host name (a leading dot, which browsers ignore, is dropped).
fn cookie_domain(text: &str) -> Option<String> {
    let host = text.strip_prefix('.').unwrap_or(text).to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    valid.then_some(host)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum_extra::extract::cookie::SameSite;

    use crate::config::Overrides;
    use crate::config::testing::load;

    fn refused(pairs: &[(&str, &str)]) -> String {
        load(None, pairs, Overrides::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_mode_is_off_by_default_with_strict_secure_cookies() {
        let c = load(None, &[], Overrides::default()).unwrap().cookies;
        assert!(!c.enabled && !c.access && c.secure);
        assert_eq!(c.same_site, SameSite::Strict);
        assert_eq!(
            (c.refresh_name.as_str(), c.access_name.as_str()),
            ("doorman_refresh", "doorman_access")
        );
        assert!(c.domain.is_none() && c.csrf_trusted_origins.is_empty());
        assert_eq!(c.access_cookie(), None);
    }

    #[test]
    fn every_setting_is_read() {
        let c = load(
            Some(
                r#"
                token_cookies = true
                token_cookie_access = true
                token_cookie_samesite = "lax"
                token_cookie_secure = false
                token_cookie_domain = ".Example.com"
                token_cookie_refresh_name = "rt"
                token_cookie_access_name = "at"
                csrf_trusted_origins = ["https://App.example.com", "http://localhost:3000"]
                "#,
            ),
            &[],
            Overrides::default(),
        )
        .unwrap()
        .cookies;
        assert!(c.enabled && c.access && !c.secure);
        assert_eq!(c.same_site, SameSite::Lax);
        assert_eq!(c.domain.as_deref(), Some("example.com"));
        assert_eq!(c.access_cookie(), Some("at"));
        let origins: Vec<String> = c
            .csrf_trusted_origins
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            origins,
            ["https://app.example.com", "http://localhost:3000"]
        );
    }

    #[test]
    fn bad_values_are_refused_naming_the_setting() {
        let cases: [(&[(&str, &str)], &str); 9] = [
            (
                &[("DOORMAN_TOKEN_COOKIE_SAMESITE", "relaxed")],
                "setting `token_cookie_samesite` (from environment variable DOORMAN_TOKEN_COOKIE_SAMESITE): expected Strict, Lax or None, got \"relaxed\"",
            ),
            (
                &[
                    ("DOORMAN_TOKEN_COOKIE_SAMESITE", "None"),
                    ("DOORMAN_TOKEN_COOKIE_SECURE", "false"),
                ],
                "setting `token_cookie_samesite` (from environment variable DOORMAN_TOKEN_COOKIE_SAMESITE): None needs token_cookie_secure = true",
            ),
            (
                &[(
                    "DOORMAN_CSRF_TRUSTED_ORIGINS",
                    "https://app.example.com/path",
                )],
                "setting `csrf_trusted_origins` (from environment variable DOORMAN_CSRF_TRUSTED_ORIGINS): expected origins like https://app.example.com",
            ),
            (
                &[("DOORMAN_CSRF_TRUSTED_ORIGINS", "app.example.com")],
                "expected origins like",
            ),
            (&[("DOORMAN_CSRF_TRUSTED_ORIGINS", "null")], "got \"null\""),
            (
                &[("DOORMAN_TOKEN_COOKIE_REFRESH_NAME", "bad name")],
                "setting `token_cookie_refresh_name` (from environment variable DOORMAN_TOKEN_COOKIE_REFRESH_NAME): expected a cookie name",
            ),
            (
                &[("DOORMAN_TOKEN_COOKIE_ACCESS_NAME", "doorman_refresh")],
                "setting `token_cookie_access_name` (from environment variable DOORMAN_TOKEN_COOKIE_ACCESS_NAME): expected a name other than",
            ),
            (
                &[("DOORMAN_TOKEN_COOKIE_REFRESH_NAME", "__Host-rt")],
                "a __Host- cookie must be at Path=/",
            ),
            (
                &[("DOORMAN_TOKEN_COOKIE_DOMAIN", "example.com:8000")],
                "setting `token_cookie_domain` (from environment variable DOORMAN_TOKEN_COOKIE_DOMAIN): expected a host name",
            ),
        ];
        for (pairs, expected) in cases {
            let err = refused(pairs);
            assert!(
                err.starts_with("configuration error: ") && err.contains(expected),
                "{pairs:?}: {err}"
            );
        }
    }
}
