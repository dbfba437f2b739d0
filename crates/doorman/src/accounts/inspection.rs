//! The token inspector's judgement (jwt.io's debugger, offline): what doorman makes of a token,
//! said as one verdict and a sentence its holder can act on. The token core decides everything
//! about the token's bytes; the blacklist and the user are consulted as the token views consult
//! them. The token itself is never logged.

use doorman_token::{Claims, Refusal, TokenError, TokenKind, Tokens, UserId};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::config::Config;
use crate::store::{Store, StoreError};

/// What the inspector concludes, one word each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Malformed,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongType,
    Blacklisted,
    Revoked,
    Invalid,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Malformed => "malformed",
            Verdict::UnknownKey => "unknown_key",
            Verdict::BadSignature => "bad_signature",
            Verdict::Expired => "expired",
            Verdict::NotYetValid => "not_yet_valid",
            Verdict::WrongType => "wrong_type",
            Verdict::Blacklisted => "blacklisted",
            Verdict::Revoked => "revoked",
            Verdict::Invalid => "invalid",
        }
    }

    /// Every verdict, in the order the OpenAPI document lists them.
    pub const ALL: [Verdict; 10] = [
        Verdict::Valid,
        Verdict::Malformed,
        Verdict::UnknownKey,
        Verdict::BadSignature,
        Verdict::Expired,
        Verdict::NotYetValid,
        Verdict::WrongType,
        Verdict::Blacklisted,
        Verdict::Revoked,
        Verdict::Invalid,
    ];
}

/// The inspector's answer: the verdict and its reason, and the token's contents as written
/// (unverified: shown whether or not the signature holds).
#[derive(Clone, Debug, PartialEq)]
pub struct Inspection {
    pub verdict: Verdict,
    pub reason: String,
    pub header: Option<Map<String, Value>>,
    pub claims: Option<Map<String, Value>>,
    /// The token's type when its type claim names one doorman issues.
    pub token_type: Option<TokenKind>,
}

/// Why a token that decoded is still refused, beyond what the token core says.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Finding {
    Refused(Refusal),
    /// Rotated out by a refresh at this time.
    RotatedOut(OffsetDateTime),
    Revoked(Revoked),
}

impl From<Refusal> for Finding {
    fn from(refusal: Refusal) -> Finding {
        Finding::Refused(refusal)
    }
}

impl From<TokenError> for Finding {
    fn from(error: TokenError) -> Finding {
        Finding::Refused(Refusal::Token(error))
    }
}

/// Why a token's user no longer stands behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Revoked {
    /// The user logged out everywhere at this Unix second, at or after the token's `iat`.
    LoggedOut(Option<i64>),
    Inactive,
    Deleted,
    /// The user-id claim names nobody doorman could have issued it to.
    NoSuchUser,
}

/// The one mapping from the token core's refusals (and simplejwt's `TokenError`s among them) to
/// the inspector's verdicts. `valid` and `revoked` are no refusal of the token's: [`inspect`]
/// gives them after asking the store.
pub fn verdict(refusal: &Refusal) -> Verdict {
    match refusal {
        Refusal::TooLong | Refusal::Malformed => Verdict::Malformed,
        Refusal::UnknownKey | Refusal::WrongAlgorithm => Verdict::UnknownKey,
        Refusal::BadSignature => Verdict::BadSignature,
        Refusal::NotYetValid(_) => Verdict::NotYetValid,
        Refusal::Token(TokenError::Expired | TokenError::ClaimExpired(_)) => Verdict::Expired,
        Refusal::Token(TokenError::WrongType | TokenError::NoType) => Verdict::WrongType,
        Refusal::Token(TokenError::Blacklisted) => Verdict::Blacklisted,
        Refusal::ForbiddenHeader(_)
        | Refusal::BadClaim(_)
        | Refusal::Token(TokenError::Invalid | TokenError::NoId | TokenError::MissingClaim(_)) => {
            Verdict::Invalid
        }
    }
}

/// Judges `raw` as doorman would at `now`, as a token of kind `expect` when one is given (else
/// as any kind doorman issues).
pub async fn inspect(
    tokens: &Tokens,
    store: &Store,
    config: &Config,
    raw: &str,
    expect: Option<TokenKind>,
    now: i64,
) -> Result<Inspection, StoreError> {
    let doorman_token::Unverified {
        header,
        payload: claims,
    } = Tokens::unverified_parts(raw);
    let token_type = claims.as_ref().and_then(|c| kind_of(tokens, config, c));
    let context = Context {
        tokens,
        config,
        header: header.as_ref(),
        claims: claims.as_ref(),
        expect,
    };
    let (verdict, reason) = match judge(tokens, store, config, raw, expect, now).await? {
        Ok(()) => (Verdict::Valid, "The token is valid.".to_owned()),
        Err(Finding::Refused(refusal)) => (verdict(&refusal), context.reason(&refusal)),
        Err(Finding::RotatedOut(at)) => (
            Verdict::Blacklisted,
            format!(
                "The token was rotated out at {}: a refresh exchanged it for a new one.",
                moment(at.unix_timestamp())
            ),
        ),
        Err(Finding::Revoked(why)) => (Verdict::Revoked, revoked_reason(&why)),
    };
    Ok(Inspection {
        verdict,
        reason,
        header,
        claims,
        token_type,
    })
}

/// The checks in doorman's order: the token core's, the type, the blacklist (refresh and
/// sliding tokens), a sliding token's refresh period, then the user.
async fn judge(
    tokens: &Tokens,
    store: &Store,
    config: &Config,
    raw: &str,
    expect: Option<TokenKind>,
    now: i64,
) -> Result<Result<(), Finding>, StoreError> {
    let claims = match tokens.examine(raw, now) {
        Ok(claims) => claims,
        Err(refusal) => return Ok(Err(refusal.into())),
    };
    if let Err(e) = tokens.check(&claims, expect) {
        return Ok(Err(e.into()));
    }
    let kind = kind_of(tokens, config, claims.as_map());
    if let Some(type_claim) = &tokens.rules().token_type_claim {
        match (claims.get(type_claim), kind) {
            (None, _) => return Ok(Err(TokenError::NoType.into())),
            (Some(_), None) => return Ok(Err(TokenError::WrongType.into())),
            _ => {}
        }
    }
    if kind != Some(TokenKind::Access)
        && let Some(jti) = tokens.jti(&claims)
        && store.is_blacklisted(jti).await?
    {
        return Ok(Err(match store.rotated_out(jti).await? {
            Some(rotated) => Finding::RotatedOut(rotated.rotated_at),
            None => TokenError::Blacklisted.into(),
        }));
    }
    if kind == Some(TokenKind::Sliding)
        && let Err(e) = tokens.check_refresh_exp(&claims, now)
    {
        return Ok(Err(e.into()));
    }
    Ok(user_stands(store, config, tokens, &claims)
        .await?
        .map_err(Finding::Revoked))
}

/// The token's user, as the token views check it: existing, active (when that is checked),
/// and not logged out everywhere since the token was issued. A token without the claim passes.
async fn user_stands(
    store: &Store,
    config: &Config,
    tokens: &Tokens,
    claims: &Claims,
) -> Result<Result<(), Revoked>, StoreError> {
    let id = match claims.user_id(&tokens.rules().user_id_claim) {
        None => return Ok(Ok(())),
        Some(UserId::Unresolvable) => return Ok(Err(Revoked::NoSuchUser)),
        Some(UserId::Id(id)) => id,
    };
    Ok(match store.user_by_id(id).await? {
        None => Err(Revoked::Deleted),
        Some(user) if user.revoked(claims.issued_at()) => {
            Err(Revoked::LoggedOut(user.tokens_valid_after))
        }
        Some(user) if !user.is_active && config.accounts.check_user_is_active => {
            Err(Revoked::Inactive)
        }
        Some(_) => Ok(()),
    })
}

/// The kind the token's type claim names, when it is one this configuration issues.
fn kind_of(tokens: &Tokens, config: &Config, claims: &Map<String, Value>) -> Option<TokenKind> {
    let type_claim = tokens.rules().token_type_claim.as_deref()?;
    match claims.get(type_claim)?.as_str()? {
        "access" => Some(TokenKind::Access),
        "refresh" => Some(TokenKind::Refresh),
        "sliding" if config.tokens.sliding_tokens => Some(TokenKind::Sliding),
        _ => None,
    }
}

/// What the reasons need to name the token's particulars.
struct Context<'a> {
    tokens: &'a Tokens,
    config: &'a Config,
    header: Option<&'a Map<String, Value>>,
    claims: Option<&'a Map<String, Value>>,
    expect: Option<TokenKind>,
}

impl Context<'_> {
    fn header_str(&self, name: &str) -> Option<&str> {
        self.header
            .and_then(|h| h.get(name))
            .and_then(Value::as_str)
    }

    fn claim_time(&self, name: &str) -> String {
        match self
            .claims
            .and_then(|c| c.get(name))
            .and_then(Value::as_f64)
        {
            // Whole seconds, as the token core reads a time.
            #[allow(clippy::cast_possible_truncation)]
            Some(secs) => moment(secs as i64),
            None => "an unreadable time".to_owned(),
        }
    }

    fn reason(&self, refusal: &Refusal) -> String {
        match refusal {
            Refusal::TooLong => format!(
                "The token is longer than the {} bytes doorman accepts.",
                self.tokens.rules().max_token_bytes
            ),
            Refusal::Malformed => "The token is not three base64url parts of which the first two are JSON objects (with a string \"alg\").".to_owned(),
            Refusal::ForbiddenHeader(member) => format!(
                "The token's header has a \"{member}\" member, which doorman never honours."
            ),
            Refusal::UnknownKey => match self.header_str("kid") {
                Some(kid) => format!("No key doorman verifies with has the id \"{kid}\"."),
                None => "The token names no key id (\"kid\"), and doorman has no key without one.".to_owned(),
            },
            Refusal::WrongAlgorithm => match self.header_str("alg") {
                Some("none") => "The token is unsigned (\"alg\": \"none\"), which doorman never accepts.".to_owned(),
                Some(alg) => format!(
                    "The token says it is signed with {alg}, which is not the algorithm of the key doorman verifies it with."
                ),
                None => "The token's header names no algorithm.".to_owned(),
            },
            Refusal::BadSignature => "The signature does not match the header and payload: the token was altered, or signed with another key.".to_owned(),
            Refusal::NotYetValid(claim) => format!(
                "The token is not valid before {} (its \"{claim}\" claim).",
                self.claim_time(claim)
            ),
            Refusal::BadClaim("iss") => "The token's \"iss\" claim is not the issuer doorman is configured with.".to_owned(),
            Refusal::BadClaim("aud") => "The token's \"aud\" claim does not name the audience doorman is configured with.".to_owned(),
            Refusal::BadClaim(claim @ ("sub" | "jti")) => {
                format!("The token's \"{claim}\" claim is not a string.")
            }
            Refusal::BadClaim(claim) => {
                format!("The token's \"{claim}\" claim is not a time doorman can use.")
            }
            Refusal::Token(TokenError::Expired) => {
                format!("The token expired at {}.", self.claim_time("exp"))
            }
            Refusal::Token(TokenError::ClaimExpired(claim)) => format!(
                "The token's refresh period (its \"{claim}\" claim) ended at {}.",
                self.claim_time(claim)
            ),
            Refusal::Token(TokenError::NoType) => format!(
                "The token has no \"{}\" claim, so it is no type of token doorman issues.",
                self.tokens.rules().token_type_claim.as_deref().unwrap_or("token_type")
            ),
            Refusal::Token(TokenError::WrongType) => self.wrong_type(),
            Refusal::Token(TokenError::NoId) => format!(
                "The token has no \"{}\" claim, so doorman can't tell whether it was blacklisted.",
                self.tokens.rules().jti_claim.as_deref().unwrap_or("jti")
            ),
            Refusal::Token(TokenError::MissingClaim(claim)) => {
                format!("The token has no \"{claim}\" claim.")
            }
            Refusal::Token(TokenError::Blacklisted) => {
                "The token is blacklisted: it was logged out, or its session was revoked.".to_owned()
            }
            Refusal::Token(TokenError::Invalid) => "The token is invalid.".to_owned(),
        }
    }

    fn wrong_type(&self) -> String {
        let type_claim = self.tokens.rules().token_type_claim.as_deref();
        let written = type_claim
            .and_then(|name| self.claims.and_then(|c| c.get(name)))
            .map(Value::to_string)
            .unwrap_or_else(|| "no type".to_owned());
        let issued = self
            .claims
            .and_then(|c| kind_of(self.tokens, self.config, c));
        match (issued, self.expect) {
            (Some(kind), Some(expected)) => format!(
                "The token is {} {} token, not the {} token expected.",
                article(kind),
                kind.as_str(),
                expected.as_str()
            ),
            _ => format!("The token's type ({written}) is not one doorman issues."),
        }
    }
}

fn article(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Access => "an",
        TokenKind::Refresh | TokenKind::Sliding => "a",
    }
}

fn revoked_reason(why: &Revoked) -> String {
    match why {
        Revoked::LoggedOut(Some(at)) => format!(
            "The token's user logged out everywhere at {}, after it was issued.",
            moment(*at)
        ),
        Revoked::LoggedOut(None) => {
            "The token's user logged out everywhere after it was issued.".to_owned()
        }
        Revoked::Inactive => "The token's user is inactive.".to_owned(),
        Revoked::Deleted => "The token's user no longer exists.".to_owned(),
        Revoked::NoSuchUser => "The token's user id claim names no user.".to_owned(),
    }
}

/// A Unix second as "2026-12-07 13:00:00 UTC".
fn moment(secs: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| format!("{secs} (seconds since 1970)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_verdicts(refusals: &[Refusal], expected: Verdict) {
        for refusal in refusals {
            assert_eq!(verdict(refusal), expected, "{refusal:?}");
        }
    }

    #[test]
    fn malformed() {
        assert_verdicts(&[Refusal::TooLong, Refusal::Malformed], Verdict::Malformed);
    }

    #[test]
    fn unknown_key() {
        assert_verdicts(
            &[Refusal::UnknownKey, Refusal::WrongAlgorithm],
            Verdict::UnknownKey,
        );
    }

    #[test]
    fn bad_signature() {
        assert_verdicts(&[Refusal::BadSignature], Verdict::BadSignature);
    }

    #[test]
    fn not_yet_valid() {
        assert_verdicts(
            &[Refusal::NotYetValid("nbf"), Refusal::NotYetValid("iat")],
            Verdict::NotYetValid,
        );
    }

    #[test]
    fn expired() {
        assert_verdicts(
            &[
                Refusal::Token(TokenError::Expired),
                Refusal::Token(TokenError::ClaimExpired("refresh_exp".into())),
            ],
            Verdict::Expired,
        );
    }

    #[test]
    fn wrong_type() {
        assert_verdicts(
            &[
                Refusal::Token(TokenError::WrongType),
                Refusal::Token(TokenError::NoType),
            ],
            Verdict::WrongType,
        );
    }

    #[test]
    fn blacklisted() {
        assert_verdicts(
            &[Refusal::Token(TokenError::Blacklisted)],
            Verdict::Blacklisted,
        );
    }

    #[test]
    fn invalid() {
        assert_verdicts(
            &[
                Refusal::ForbiddenHeader("jku"),
                Refusal::BadClaim("aud"),
                Refusal::BadClaim("iss"),
                Refusal::Token(TokenError::Invalid),
                Refusal::Token(TokenError::NoId),
                Refusal::Token(TokenError::MissingClaim("exp".into())),
            ],
            Verdict::Invalid,
        );
    }

    #[test]
    fn verdict_names_are_the_contracts() {
        let names: Vec<&str> = Verdict::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(
            names,
            [
                "valid",
                "malformed",
                "unknown_key",
                "bad_signature",
                "expired",
                "not_yet_valid",
                "wrong_type",
                "blacklisted",
                "revoked",
                "invalid"
            ]
        );
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(moment(1_796_648_400), "2026-12-07 13:00:00 UTC");
    }
}
