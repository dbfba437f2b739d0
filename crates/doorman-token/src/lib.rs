//! doorman's token core: signing keys, claims, and the issue/verify rules of
//! djangorestframework-simplejwt tightened by RFC 8725. No I/O, no async, no HTTP:
//! the server and the guard crate feed it bytes and the current time, which both read with
//! [`unix_now`].
//!
//! ```
//! use doorman_token::{Algorithm, Key, KeySet, TokenKind, TokenRules, Tokens};
//!
//! let key = Key::hmac(Algorithm::HS256, b"an-hs256-test-secret-of-32-bytes!!").unwrap();
//! let tokens = Tokens::new(KeySet::new(key), TokenRules::default());
//! let now = 1_700_000_000;
//! let refresh = tokens.refresh_for_user("42", now);
//! let access = tokens.access_from_refresh(&refresh, now);
//! let text = tokens.encode(&access).unwrap();
//! let claims = tokens.verify(&text, TokenKind::Access, now + 10).unwrap();
//! assert_eq!(claims.get("user_id").and_then(|v| v.as_str()), Some("42"));
//! ```

mod algorithm;
mod claims;
mod error;
pub mod hot;
mod key;
mod rules;
mod tokens;
mod wire;

pub use algorithm::{Algorithm, Family};
pub use claims::{Claims, UserId};
pub use error::{KeyError, Refusal, TokenError};
pub use key::{Key, KeySet};
pub use rules::{TokenKind, TokenRules};
pub use tokens::{Tokens, Unverified};

/// Makes aws-lc-rs jsonwebtoken's process-wide crypto provider. Idempotent; call it once at
/// start-up (the guard and the server both do) so that the first signature never panics.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

/// Seconds since the Unix epoch, the unit of every token time: the one wall clock that the
/// server and the guard read before they issue or verify a token. A clock before 1970 reads 0.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
