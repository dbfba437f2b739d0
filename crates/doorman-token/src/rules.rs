//! The settings that shape tokens, named after simplejwt's, with simplejwt's defaults.

use std::time::Duration;

/// The kinds of token simplejwt issues. Each is checked by its `token_type` claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
    Sliding,
}

impl TokenKind {
    /// The `token_type` claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
            TokenKind::Sliding => "sliding",
        }
    }

    /// simplejwt's class name, used in the `messages` of a rejected Bearer token.
    pub fn class_name(self) -> &'static str {
        match self {
            TokenKind::Access => "AccessToken",
            TokenKind::Refresh => "RefreshToken",
            TokenKind::Sliding => "SlidingToken",
        }
    }
}

/// Lifetimes, claim names and validation knobs (simplejwt's `SIMPLE_JWT` settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRules {
    pub access_token_lifetime: Duration,
    pub refresh_token_lifetime: Duration,
    pub sliding_token_lifetime: Duration,
    pub sliding_token_refresh_lifetime: Duration,
    pub user_id_claim: String,
    /// `None` switches type checks off, as in simplejwt.
    pub token_type_claim: Option<String>,
    /// `None` switches the id requirement off (the blacklist then can't work).
    pub jti_claim: Option<String>,
    pub sliding_token_refresh_exp_claim: String,
    /// When set, issued as `aud` and required on verify.
    pub audience: Option<String>,
    /// When set, issued as `iss` and required on verify.
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`. simplejwt's default is 0.
    pub leeway: Duration,
    /// Tokens longer than this are refused before any decoding (RFC 8725 §3.x; DoS bound).
    pub max_token_bytes: usize,
}

impl Default for TokenRules {
    fn default() -> Self {
        TokenRules {
            access_token_lifetime: Duration::from_secs(5 * 60),
            refresh_token_lifetime: Duration::from_secs(24 * 60 * 60),
            sliding_token_lifetime: Duration::from_secs(5 * 60),
            sliding_token_refresh_lifetime: Duration::from_secs(24 * 60 * 60),
            user_id_claim: "user_id".to_owned(),
            token_type_claim: Some("token_type".to_owned()),
            jti_claim: Some("jti".to_owned()),
            sliding_token_refresh_exp_claim: "refresh_exp".to_owned(),
            audience: None,
            issuer: None,
            leeway: Duration::ZERO,
            max_token_bytes: 8 * 1024,
        }
    }
}

impl TokenRules {
    pub fn lifetime(&self, kind: TokenKind) -> Duration {
        match kind {
            TokenKind::Access => self.access_token_lifetime,
            TokenKind::Refresh => self.refresh_token_lifetime,
            TokenKind::Sliding => self.sliding_token_lifetime,
        }
    }
}
