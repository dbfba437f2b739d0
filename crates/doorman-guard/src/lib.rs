//! Require a valid doorman access token in front of an axum or tower service.
//!
//! [`Guard`] reads `Authorization: <type> <token>` exactly as simplejwt's `JWTAuthentication`
//! does, verifies an access token with a [`doorman_token::Tokens`], optionally asks a
//! [`UserCheck`] whether the user may still act, and otherwise answers simplejwt's exact 401
//! bodies. Use it as an extractor ([`Authenticated`]) or as a layer ([`RequireTokenLayer`]).
//!
//! ```
//! use axum::{Router, routing::get};
//! use doorman_guard::{Authenticated, Guard};
//! use doorman_token::{Algorithm, Key, KeySet, TokenRules, Tokens};
//!
//! async fn hello(user: Authenticated) -> String {
//!     format!("hello, user {:?}", user.user_id)
//! }
//!
//! let key = Key::hmac(Algorithm::HS256, b"an-hs256-test-secret-of-32-bytes!!").unwrap();
//! let guard = Guard::new(Tokens::new(KeySet::new(key), TokenRules::default()));
//! let app: Router = Router::new().route("/hello/", get(hello)).with_state(guard);
//! ```

#[cfg(feature = "jwks")]
mod jwks;
mod layer;
mod rejection;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use doorman_token::{Claims, TokenError, TokenKind, Tokens, UserId};
use http::HeaderMap;
use http::request::Parts;

#[cfg(feature = "jwks")]
pub use jwks::{JwksError, JwksOptions, JwksSource};
pub use layer::{RequireToken, RequireTokenLayer};
pub use rejection::{
    DEFAULT_SCHEME, Rejection, UNAVAILABLE_DETAIL, UNAVAILABLE_RETRY_AFTER_SECS, add_challenge,
    www_authenticate,
};

/// What a protected handler learns about its caller.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// The verified access token's claims.
    pub claims: Claims,
    /// The user id from the token's user-id claim, when it names a possible user.
    pub user_id: Option<i64>,
}

/// Why a [`UserCheck`] refused a token's user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserRefusal {
    NotFound,
    Inactive,
    /// The user's tokens were revoked (logged out everywhere) after this one was issued.
    Revoked,
    /// The check could not be made (e.g. the database is down).
    Unavailable,
}

/// Decides whether the user a valid token names may still act (simplejwt looks the user up on
/// every request). Services without a user table leave it out and trust the token alone.
pub trait UserCheck: Send + Sync + 'static {
    fn check(
        &self,
        user_id: i64,
    ) -> Pin<Box<dyn Future<Output = Result<(), UserRefusal>> + Send + '_>>;

    /// [`check`](Self::check) for a token issued at `issued_at` (its `iat` in whole seconds,
    /// `None` without one), for checks that also refuse tokens issued before the user's were
    /// revoked ([`UserRefusal::Revoked`]). By default the time is not looked at.
    fn check_issued(
        &self,
        user_id: i64,
        issued_at: Option<i64>,
    ) -> Pin<Box<dyn Future<Output = Result<(), UserRefusal>> + Send + '_>> {
        let _ = issued_at;
        self.check(user_id)
    }
}

/// The verifier a protected route uses. Cheap to clone.
#[derive(Clone)]
pub struct Guard {
    tokens: Arc<Tokens>,
    header_types: Arc<[String]>,
    /// `WWW-Authenticate` for the first of them, made once.
    www_authenticate: Arc<str>,
    users: Option<Arc<dyn UserCheck>>,
    #[cfg(feature = "jwks")]
    jwks: Option<Arc<JwksSource>>,
}

impl Guard {
    /// A guard accepting `Bearer` tokens, with no user check.
    pub fn new(tokens: Tokens) -> Guard {
        Guard::from_shared(Arc::new(tokens))
    }

    pub fn from_shared(tokens: Arc<Tokens>) -> Guard {
        doorman_token::install_crypto_provider();
        Guard {
            tokens,
            header_types: Arc::from([DEFAULT_SCHEME.to_owned()]),
            www_authenticate: Arc::from(www_authenticate(DEFAULT_SCHEME)),
            users: None,
            #[cfg(feature = "jwks")]
            jwks: None,
        }
    }

    /// A guard that verifies with the keys of a JWKS URL (doorman's
    /// `/.well-known/jwks.json`), fetching it again after a key rotation.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), doorman_guard::JwksError> {
    /// use doorman_guard::{Guard, JwksOptions, JwksSource};
    /// use doorman_token::TokenRules;
    ///
    /// let jwks = JwksSource::fetch(
    ///     "https://auth.example.com/.well-known/jwks.json",
    ///     TokenRules::default(),
    ///     JwksOptions::default(),
    /// )
    /// .await?;
    /// let guard = Guard::from_jwks(jwks);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "jwks")]
    pub fn from_jwks(source: Arc<JwksSource>) -> Guard {
        let mut guard = Guard::from_shared(source.tokens().clone());
        guard.jwks = Some(source);
        guard
    }

    /// The accepted `Authorization` schemes (simplejwt's `AUTH_HEADER_TYPES`, case-sensitive);
    /// the first is named in `WWW-Authenticate`. An empty list keeps the current one.
    pub fn with_header_types(mut self, types: Vec<String>) -> Guard {
        if let Some(first) = types.first() {
            self.www_authenticate = Arc::from(www_authenticate(first));
            self.header_types = Arc::from(types);
        }
        self
    }

    pub fn with_user_check(mut self, users: Arc<dyn UserCheck>) -> Guard {
        self.users = Some(users);
        self
    }

    /// The `WWW-Authenticate` value sent with every 401.
    pub fn www_authenticate(&self) -> &str {
        &self.www_authenticate
    }

    /// simplejwt's `JWTAuthentication.authenticate` followed by DRF's `IsAuthenticated`.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Authenticated, Rejection> {
        let raw = self.raw_token(headers)?;
        self.authenticate_token(raw).await
    }

    /// [`authenticate`](Self::authenticate) for an access token the caller found elsewhere
    /// than in `Authorization` (a cookie, say): verified and its user checked the same way,
    /// with the same answers.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use doorman_guard::{Guard, Rejection};
    /// use doorman_token::{Algorithm, Key, KeySet, TokenRules, Tokens};
    ///
    /// let key = Key::hmac(Algorithm::HS256, b"an-hs256-test-secret-of-32-bytes!!").unwrap();
    /// let guard = Guard::new(Tokens::new(KeySet::new(key), TokenRules::default()));
    /// let refused = guard.authenticate_token("not.a.token").await.unwrap_err();
    /// assert!(matches!(refused, Rejection::InvalidToken(_)));
    /// # });
    /// ```
    pub async fn authenticate_token(&self, raw: &str) -> Result<Authenticated, Rejection> {
        let claims = self.verify(raw).await.map_err(Rejection::InvalidToken)?;
        let user_claim = &self.tokens.rules().user_id_claim;
        let user_id = match claims.user_id(user_claim) {
            None => return Err(Rejection::NoUserIdentification),
            Some(UserId::Id(id)) => Some(id),
            Some(UserId::Unresolvable) => None,
        };
        if let Some(users) = &self.users {
            let Some(id) = user_id else {
                return Err(Rejection::UserNotFound);
            };
            let refused = users.check_issued(id, claims.issued_at()).await;
            refused.map_err(|refusal| match refusal {
                UserRefusal::NotFound => Rejection::UserNotFound,
                UserRefusal::Inactive => Rejection::UserInactive,
                // As simplejwt answers a blacklisted token: the token, not the user, is
                // what no longer counts.
                UserRefusal::Revoked => Rejection::InvalidToken(TokenError::Blacklisted),
                UserRefusal::Unavailable => Rejection::Unavailable,
            })?;
        }
        Ok(Authenticated { claims, user_id })
    }

    /// Verifies an access token; with a JWKS, a token naming a key the set doesn't hold yet
    /// (a rotation) is retried once after the set is fetched again (within the cooldown).
    async fn verify(&self, raw: &str) -> Result<Claims, TokenError> {
        let verified = self
            .tokens
            .verify(raw, TokenKind::Access, doorman_token::unix_now());
        #[cfg(feature = "jwks")]
        if let Some(jwks) = &self.jwks {
            return match verified {
                Err(TokenError::Invalid) if jwks.refresh_for(raw).await => {
                    self.tokens
                        .verify(raw, TokenKind::Access, doorman_token::unix_now())
                }
                Ok(claims) => {
                    // Keep the set fresh (keys retired at the issuer) without delaying callers.
                    if jwks.is_stale() {
                        let jwks = jwks.clone();
                        let raw = raw.to_owned();
                        tokio::spawn(async move { jwks.refresh_for(&raw).await });
                    }
                    Ok(claims)
                }
                other => other,
            };
        }
        verified
    }

    /// The token from the header: split on any whitespace; another scheme counts as no
    /// credentials at all; the right scheme with other than one token is a malformed header.
    fn raw_token<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, Rejection> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Rejection::NotProvided);
        };
        // Django splits the raw header bytes; a scheme match decides, whatever the bytes are.
        let mut parts = value
            .as_bytes()
            .split(u8::is_ascii_whitespace)
            .filter(|part| !part.is_empty());
        let Some(scheme) = parts.next() else {
            return Err(Rejection::NotProvided);
        };
        if !self.header_types.iter().any(|t| t.as_bytes() == scheme) {
            return Err(Rejection::NotProvided);
        }
        match (parts.next(), parts.next()) {
            (Some(token), None) => std::str::from_utf8(token)
                .map_err(|_| Rejection::InvalidToken(doorman_token::TokenError::Invalid)),
            _ => Err(Rejection::BadAuthorizationHeader),
        }
    }
}

impl<S> FromRequestParts<S> for Authenticated
where
    Guard: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = axum::response::Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(done) = parts.extensions.get::<Authenticated>() {
            return Ok(done.clone());
        }
        let guard = Guard::from_ref(state);
        guard
            .authenticate(&parts.headers)
            .await
            .map_err(|rejection| rejection.into_response_for(&guard))
    }
}
