//! simplejwt's answers to a request that is not authenticated, byte for byte.

use axum::response::{IntoResponse, Response};
use doorman_token::{TokenError, TokenKind};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::Guard;

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
            Rejection::Unavailable => {
                json!({"detail": "Service temporarily unavailable, try again later."})
            }
        }
    }

    /// The full response, with `WWW-Authenticate` naming the guard's first scheme.
    pub fn into_response_for(self, guard: &Guard) -> Response {
        let status = self.status();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body().to_string(),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED
            && let Ok(value) = HeaderValue::from_str(guard.www_authenticate())
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl IntoResponse for Rejection {
    /// Without a guard at hand, the default scheme (`Bearer`) is named.
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body().to_string(),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"api\""),
            );
        }
        response
    }
}
