//! The token settings: simplejwt's lifetimes, claim names and validation rules (`aud`, `iss`,
//! leeway), which token views are served (sliding tokens), what a refresh does to the old token
//! (rotation, blacklisting, the reuse grace window), the `Authorization` schemes accepted, and
//! the URL the discovery document names doorman by (`public_url`).

use std::time::Duration;

use doorman_token::TokenRules;
use serde::Deserialize;

use crate::config::source::{ConfigError, Sources};
use crate::config::values::{self, Flag, StringList};

/// A replay of a rotated-out refresh token this soon after its rotation is taken for a retry
/// after a lost answer or a second tab, not for theft: Supabase Auth's template uses 10 s.
const DEFAULT_REFRESH_REUSE_GRACE: Duration = Duration::from_secs(10);
const MAX_REFRESH_REUSE_GRACE: Duration = Duration::from_secs(300);

/// The token settings as the layers give them.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct TokenSettings {
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
    #[serde(with = "values::duration")]
    refresh_reuse_grace: Duration,
    audience: Option<String>,
    issuer: Option<String>,
    public_url: Option<String>,
    #[serde(with = "values::duration")]
    leeway: Duration,
    auth_header_types: StringList,
    user_id_claim: String,
    token_type_claim: String,
    jti_claim: String,
    sliding_token_refresh_exp_claim: String,
}

impl Default for TokenSettings {
    fn default() -> Self {
        let rules = TokenRules::default();
        TokenSettings {
            access_token_lifetime: rules.access_token_lifetime,
            refresh_token_lifetime: rules.refresh_token_lifetime,
            sliding_token_lifetime: rules.sliding_token_lifetime,
            sliding_token_refresh_lifetime: rules.sliding_token_refresh_lifetime,
            sliding_tokens: Flag(true),
            rotate_refresh_tokens: Flag(false),
            blacklist_after_rotation: Flag(false),
            refresh_reuse_grace: DEFAULT_REFRESH_REUSE_GRACE,
            audience: None,
            issuer: None,
            public_url: None,
            leeway: Duration::ZERO,
            auth_header_types: StringList(vec!["Bearer".to_owned()]),
            user_id_claim: rules.user_id_claim,
            token_type_claim: "token_type".to_owned(),
            jti_claim: "jti".to_owned(),
            sliding_token_refresh_exp_claim: rules.sliding_token_refresh_exp_claim,
        }
    }
}

/// What tokens look like and what the token views do with them.
#[derive(Clone, Debug)]
pub struct TokensConfig {
    /// Lifetimes, claim names and validation rules, as the token crate applies them.
    pub rules: TokenRules,
    /// The sliding token views are served.
    pub sliding_tokens: bool,
    /// A refresh also returns a new refresh token.
    pub rotate_refresh_tokens: bool,
    /// A rotated refresh token is blacklisted.
    pub blacklist_after_rotation: bool,
    /// How long after its rotation a rotated-out refresh token may be presented again without
    /// its family being revoked (reuse detection runs with rotation and blacklisting on).
    pub refresh_reuse_grace: Duration,
    /// The `Authorization` schemes accepted (`Bearer`).
    pub auth_header_types: Vec<String>,
    /// Where clients reach doorman (`https://auth.example.com`, no trailing slash): the base
    /// of the discovery document's URLs. Unset, they follow the request (and aren't cached).
    pub public_url: Option<String>,
}

impl TokenSettings {
    pub fn validate(self, src: &Sources) -> Result<TokensConfig, ConfigError> {
        if self.leeway > Duration::from_secs(60) {
            return Err(src.fail(
                "leeway",
                "expected at most 60 seconds (RFC 8725 allows a small clock skew only)",
            ));
        }
        for (key, lifetime) in [
            ("access_token_lifetime", self.access_token_lifetime),
            ("refresh_token_lifetime", self.refresh_token_lifetime),
            ("sliding_token_lifetime", self.sliding_token_lifetime),
            (
                "sliding_token_refresh_lifetime",
                self.sliding_token_refresh_lifetime,
            ),
        ] {
            if lifetime.is_zero() {
                return Err(src.fail(key, "expected a lifetime longer than 0 seconds"));
            }
        }
        if self.auth_header_types.0.is_empty()
            || self
                .auth_header_types
                .0
                .iter()
                .any(|t| !is_token68_scheme(t))
        {
            return Err(src.fail(
                "auth_header_types",
                "expected one or more scheme names like Bearer, without spaces",
            ));
        }
        if self.user_id_claim.is_empty() {
            return Err(src.fail("user_id_claim", "expected a claim name"));
        }
        if self.jti_claim.is_empty() && self.rotate_refresh_tokens.0 {
            return Err(src.fail(
                "jti_claim",
                "rotate_refresh_tokens records each refresh token by its id; set a claim name or turn rotation off",
            ));
        }
        if self.refresh_reuse_grace > MAX_REFRESH_REUSE_GRACE {
            return Err(src.fail(
                "refresh_reuse_grace",
                "expected at most 5 minutes (a retry or a second tab takes seconds; a longer window only gives a stolen token time)",
            ));
        }
        let public_url = match self.public_url.as_deref() {
            None | Some("") => None,
            Some(text) => Some(public_url(text).ok_or_else(|| {
                src.fail(
                    "public_url",
                    format!(
                        "expected the URL clients reach doorman at, like https://auth.example.com or https://example.com/auth, got {text:?}"
                    ),
                )
            })?),
        };
        let rules = TokenRules {
            access_token_lifetime: self.access_token_lifetime,
            refresh_token_lifetime: self.refresh_token_lifetime,
            sliding_token_lifetime: self.sliding_token_lifetime,
            sliding_token_refresh_lifetime: self.sliding_token_refresh_lifetime,
            user_id_claim: self.user_id_claim,
            token_type_claim: Some(self.token_type_claim).filter(|c| !c.is_empty()),
            jti_claim: Some(self.jti_claim).filter(|c| !c.is_empty()),
            sliding_token_refresh_exp_claim: self.sliding_token_refresh_exp_claim,
            audience: self.audience,
            issuer: self.issuer,
            leeway: self.leeway,
            ..TokenRules::default()
        };
        Ok(TokensConfig {
            rules,
            sliding_tokens: self.sliding_tokens.0,
            rotate_refresh_tokens: self.rotate_refresh_tokens.0,
            blacklist_after_rotation: self.blacklist_after_rotation.0,
            refresh_reuse_grace: self.refresh_reuse_grace,
            auth_header_types: self.auth_header_types.0,
            public_url,
        })
    }
}

/// `http(s)://host[:port][/path]` without user info, query or fragment, and without the
/// trailing slash (the discovery document appends paths to it).
fn public_url(text: &str) -> Option<String> {
    let uri: http::Uri = text.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    let valid = matches!(scheme, "http" | "https")
        && !authority.host().is_empty()
        && !authority.as_str().contains('@')
        && uri.query().is_none()
        && !text.contains('#')
        && text.bytes().all(|b| b.is_ascii_graphic());
    valid.then(|| text.trim_end_matches('/').to_owned())
}

/// RFC 7235 scheme names are tokens: visible ASCII without separators.
fn is_token68_scheme(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::Overrides;
    use crate::config::testing::load;

    fn public_url(text: &str) -> Result<Option<String>, String> {
        load(None, &[("DOORMAN_PUBLIC_URL", text)], Overrides::default())
            .map(|c| c.tokens.public_url)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn public_url_is_a_base_url_without_its_trailing_slash() {
        assert_eq!(
            public_url("https://auth.example.com/").unwrap().as_deref(),
            Some("https://auth.example.com")
        );
        assert_eq!(
            public_url("https://example.com:8443/auth")
                .unwrap()
                .as_deref(),
            Some("https://example.com:8443/auth")
        );
        assert_eq!(public_url("").unwrap(), None);
        for bad in [
            "auth.example.com",
            "ftp://auth.example.com",
            "https://user@auth.example.com",
            "https://auth.example.com/?x=1",
            "https://auth.example.com/#top",
            "https://",
            "/auth",
        ] {
            let err = public_url(bad).unwrap_err();
            assert!(
                err.contains("setting `public_url`") && err.contains("like https://"),
                "{bad}: {err}"
            );
        }
    }
}
