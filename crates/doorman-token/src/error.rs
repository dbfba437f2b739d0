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

/// Why [`Tokens::examine`](crate::Tokens::examine) refused a token: finer than the
/// [`TokenError`] [`Tokens::decode`](crate::Tokens::decode) answers with, which says "Token is
/// invalid" for most of these, as simplejwt does. For a debugger telling a token's holder
/// what is wrong with it; the token views keep simplejwt's one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Longer than `max_token_bytes`: refused before any decoding.
    TooLong,
    /// Not three base64url segments, or a header or payload that isn't a JSON object (with a
    /// string `alg`, and a string `kid` if any).
    Malformed,
    /// The header has a member doorman never honours (`jku`, `x5u`, `jwk`, `x5c`, `crit`).
    ForbiddenHeader(&'static str),
    /// No key of the set is the one the header's `kid` names.
    UnknownKey,
    /// The key found uses another algorithm than the header's `alg` (`none` included).
    WrongAlgorithm,
    /// The signature doesn't hold over the header and payload.
    BadSignature,
    /// This time claim (`iat` or `nbf`) is later than now, beyond the leeway.
    NotYetValid(&'static str),
    /// This registered claim is not what doorman accepts: a time that isn't a number, an
    /// `exp` past the year 9999, another `iss` or `aud`, a `sub` or `jti` that isn't a string.
    BadClaim(&'static str),
    /// A refusal simplejwt has a message of its own for ([`TokenError::Expired`] from the
    /// registered claims; the type, id and blacklist checks the callers make after decoding).
    Token(TokenError),
}

impl From<TokenError> for Refusal {
    fn from(error: TokenError) -> Refusal {
        Refusal::Token(error)
    }
}

impl From<Refusal> for TokenError {
    fn from(refusal: Refusal) -> TokenError {
        match refusal {
            Refusal::Token(error) => error,
            _ => TokenError::Invalid,
        }
    }
}

/// A key that can't be used, said so that an operator can fix the configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);
