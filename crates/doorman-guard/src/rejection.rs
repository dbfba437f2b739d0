//! simplejwt's answers to a request that is not authenticated, byte for byte, and the texts
//! doorman's own answers share with them: the `WWW-Authenticate` challenge every 401 carries
//! and the 503 detail.

use axum::response::{IntoResponse, Response};
use doorman_token::{TokenError, TokenKind};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::Guard;

/// The scheme named in `WWW-Authenticate` when none is configured (simplejwt's default
/// `AUTH_HEADER_TYPES`).
pub const DEFAULT_SCHEME: &str = "Bearer";

/// The `detail` of every 503: the database or the server is too busy to answer now.
pub const UNAVAILABLE_DETAIL: &str = "Service temporarily unavailable, try again later.";

/// The `Retry-After` of a 503 for a database that doesn't answer: how long a server leaves the
/// database alone after a failed lookup, so an earlier retry would meet the same pause.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

/// simplejwt's `authenticate_header`: what a 401 names in `WWW-Authenticate`.
pub fn www_authenticate(scheme: &str) -> String {
    format!("{scheme} realm=\"api\"")
}

/// DRF's `finalize_response`: a 401 carries `WWW-Authenticate` (`challenge`, as
/// [`www_authenticate`] makes it); no other status does.
pub fn add_challenge<B>(response: &mut http::Response<B>, challenge: &str) {
    if response.status() == StatusCode::UNAUTHORIZED
        && let Ok(value) = HeaderValue::from_str(challenge)
    {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
}

/// Why a request was not let through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No `Authorization` header, or another scheme.
    NotProvided,
    /// The right scheme but not exactly one token after it.
    BadAuthorizationHeader,
    /// The token failed verification as an access token.
    InvalidToken(TokenError),
    /// A valid token without the user-id claim.
    NoUserIdentification,
    UserNotFound,
    UserInactive,
    /// The user check could not be made.
    Unavailable,
}

impl Rejection {
    /// The seconds a client should wait before trying again, for an answer that has them.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Rejection::Unavailable => Some(UNAVAILABLE_RETRY_AFTER_SECS),
            _ => None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The JSON body, keys in simplejwt's order (`detail`, `code`, `messages`).
    pub fn body(&self) -> Value {
        match self {
            Rejection::NotProvided => {
                json!({"detail": "Authentication credentials were not provided."})
            }
            Rejection::BadAuthorizationHeader => json!({
                "detail": "Authorization header must contain two space-delimited values",
                "code": "bad_authorization_header",
            }),
            Rejection::InvalidToken(error) => json!({
                "detail": "Given token not valid for any token type",
                "code": "token_not_valid",
                "messages": [{
                    "token_class": TokenKind::Access.class_name(),
                    "token_type": TokenKind::Access.as_str(),
                    "message": error.to_string(),
                }],
            }),
            Rejection::NoUserIdentification => json!({
                "detail": "Token contained no recognizable user identification",
                "code": "token_not_valid",
            }),
            Rejection::UserNotFound => {
                json!({"detail": "User not found", "code": "user_not_found"})
            }
            Rejection::UserInactive => {
                json!({"detail": "User is inactive", "code": "user_inactive"})
            }
            Rejection::Unavailable => json!({ "detail": UNAVAILABLE_DETAIL }),
        }
    }

    /// The full response, with `WWW-Authenticate` naming the guard's first scheme.
    pub fn into_response_for(self, guard: &Guard) -> Response {
        self.respond(guard.www_authenticate())
    }

    fn respond(self, challenge: &str) -> Response {
        let mut response = (
            self.status(),
            [(header::CONTENT_TYPE, "application/json")],
            self.body().to_string(),
        )
            .into_response();
        add_challenge(&mut response, challenge);
        if let Some(wait) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        }
        response
    }
}

impl IntoResponse for Rejection {
    /// Without a guard at hand, the default scheme (`Bearer`) is named.
    fn into_response(self) -> Response {
        self.respond(&www_authenticate(DEFAULT_SCHEME))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_503_says_when_to_retry_and_only_a_401_challenges() {
        let unavailable = Rejection::Unavailable.into_response();
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.headers()[header::RETRY_AFTER], "2");
        assert!(
            unavailable
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .is_none()
        );
        let refused = Rejection::NotProvided.into_response();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(refused.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(
            refused.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"api\""
        );
    }
}
