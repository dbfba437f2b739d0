//! Why a token or a key was refused. A `TokenError`'s message is simplejwt's text, word for word,
//! because clients match on it.

/// A token that must not be honoured, with the message simplejwt gives for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Anything wrong with the structure, the signature or a registered claim.
    #[error("Token is invalid")]
    Invalid,
    #[error("Token is expired")]
    Expired,
    /// The JTI claim is missing.
    #[error("Token has no id")]
    NoId,
    #[error("Token has no type")]
    NoType,
    #[error("Token has wrong type")]
    WrongType,
    /// A time claim that simplejwt itself requires (`exp`, `refresh_exp`) is missing.
    #[error("Token has no '{0}' claim")]
    MissingClaim(String),
    /// A time claim that simplejwt checks itself (`refresh_exp`) has passed.
    #[error("Token '{0}' claim has expired")]
    ClaimExpired(String),
    /// Listed in the blacklist (decided by the caller, which owns the storage).
    #[error("Token is blacklisted")]
    Blacklisted,
}

/// A key that can't be used, said so that an operator can fix the configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);
