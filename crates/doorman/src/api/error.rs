//! The one place that decides status codes and bodies for everything that goes wrong, matching
//! DRF + simplejwt's answers (`docs/wire-contract.md` §4) and doorman's fixes of their defects.

use axum::response::{IntoResponse, Response};
use doorman_guard::Rejection;
use doorman_token::TokenError;
use http::StatusCode;
use serde_json::{Value, json};

use super::csrf::CsrfRefusal;
use crate::accounts::AccountsError;
use crate::store::StoreError;
use doorman_drf::DrfError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Content negotiation, parsing and field validation, answered as DRF does.
    #[error(transparent)]
    Drf(#[from] DrfError),
    /// 405, naming the method as received.
    #[error("method {0} not allowed")]
    MethodNotAllowed(String),
    /// 403, DRF's `PermissionDenied`: authenticated, but not allowed (the admin views).
    #[error("permission denied")]
    PermissionDenied,
    /// 400 `{"detail": ...}`: a query parameter or a request the view refuses as a whole.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: DRF's JSON shape (simplejwt's stack answers an HTML page here).
    #[error("not found")]
    NotFound,
    /// 413: the body is larger than doorman reads.
    #[error("request body too large")]
    PayloadTooLarge,
    /// Obtain: unknown user, wrong password and inactive user alike.
    #[error("no active account")]
    NoActiveAccount,
    /// Refresh: the token's user is gone or inactive.
    #[error("no active account for token")]
    NoActiveAccountForToken,
    /// A token view's `TokenError` (simplejwt's `InvalidToken`).
    #[error("token not valid: {0}")]
    Token(#[from] TokenError),
    /// Verify of a blacklisted token: a validation error in simplejwt, hence 400.
    #[error("token is blacklisted")]
    VerifyBlacklisted,
    /// A protected view's authentication failure.
    #[error("not authenticated: {0:?}")]
    Auth(Rejection),
    /// 403: a request a cookie authenticates came from no trusted origin (DRF's CSRF failure
    /// under `SessionAuthentication`, in Django's words).
    #[error("CSRF failed: {0:?}")]
    CsrfFailed(CsrfRefusal),
    /// 429, DRF's `Throttled`: another attempt is let through in this many seconds (at least
    /// 1, rounded up as DRF does), said in the body and in `Retry-After`.
    #[error("throttled for {0} s")]
    Throttled(u64),
    /// The database could not be reached in time.
    #[error("service unavailable")]
    Unavailable,
    /// Anything else; details go to the log, never to the client.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Drf(e) => e.status(),
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::PermissionDenied => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NoActiveAccount | ApiError::NoActiveAccountForToken | ApiError::Token(_) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::VerifyBlacklisted => StatusCode::BAD_REQUEST,
            ApiError::Auth(rejection) => rejection.status(),
            ApiError::CsrfFailed(_) => StatusCode::FORBIDDEN,
            ApiError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body, keys in DRF's order.
    pub fn body(&self) -> Value {
        match self {
            ApiError::Drf(e) => e.body(),
            ApiError::MethodNotAllowed(method) => {
                json!({"detail": format!("Method \"{method}\" not allowed.")})
            }
            ApiError::NotFound => DrfError::NotFound.body(),
            ApiError::PermissionDenied => {
                json!({"detail": "You do not have permission to perform this action."})
            }
            ApiError::BadRequest(detail) => json!({ "detail": detail }),
            ApiError::PayloadTooLarge => json!({"detail": "Request body is too large."}),
            ApiError::NoActiveAccount => {
                json!({"detail": "No active account found with the given credentials"})
            }
            ApiError::NoActiveAccountForToken => {
                json!({"detail": "No active account found for the given token."})
            }
            ApiError::Token(e) => json!({"detail": e.to_string(), "code": "token_not_valid"}),
            ApiError::VerifyBlacklisted => json!({"non_field_errors": ["Token is blacklisted"]}),
            ApiError::Auth(rejection) => rejection.body(),
            ApiError::CsrfFailed(CsrfRefusal::OriginMissing) => {
                json!({"detail": "CSRF Failed: Origin header missing."})
            }
            ApiError::CsrfFailed(CsrfRefusal::OriginUntrusted(origin)) => json!({
                "detail": format!(
                    "CSRF Failed: Origin checking failed - {origin} does not match any trusted origins."
                )
            }),
            ApiError::Throttled(wait) => json!({ "detail": throttled_detail(*wait) }),
            ApiError::Unavailable => json!({ "detail": doorman_guard::UNAVAILABLE_DETAIL }),
            ApiError::Internal => json!({"detail": "A server error occurred."}),
        }
    }
}

impl ApiError {
    /// The `Retry-After` seconds of an answer that asks the client to come back later: every
    /// 503 and 429 has them.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Throttled(wait) => Some(*wait),
            ApiError::Unavailable => Some(doorman_guard::UNAVAILABLE_RETRY_AFTER_SECS),
            ApiError::Auth(rejection) => rejection.retry_after(),
            _ => None,
        }
    }
}

/// DRF's `Throttled` detail, with Django's `ngettext`: "1 second", any other count "seconds".
fn throttled_detail(wait: u64) -> String {
    let unit = if wait == 1 { "second" } else { "seconds" };
    format!("Request was throttled. Expected available in {wait} {unit}.")
}

/// Sets `Retry-After` on an answer that has one (DRF's `exception_handler` does the same).
pub fn add_retry_after<B>(response: &mut http::Response<B>, error: &ApiError) {
    if let Some(wait) = error.retry_after() {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(wait));
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        ApiError::Auth(rejection)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %error, "database unavailable");
                ApiError::Unavailable
            }
            other => {
                tracing::error!(error = %other, "database error");
                ApiError::Internal
            }
        }
    }
}

impl From<AccountsError> for ApiError {
    fn from(error: AccountsError) -> Self {
        match error {
            AccountsError::Store(e) => e.into(),
            other => {
                tracing::error!(error = %other, "accounts error");
                ApiError::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    /// For answers given outside a DRF view (404, panics): compact JSON, no negotiation.
    fn into_response(self) -> Response {
        let mut response = super::render::render(self.status(), &self.body(), None);
        add_retry_after(&mut response, &self);
        response
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_503_and_429_says_when_to_retry() {
        for (error, wait) in [
            (ApiError::Throttled(7), Some(7)),
            (ApiError::Unavailable, Some(2)),
            (ApiError::Auth(Rejection::Unavailable), Some(2)),
            (ApiError::Auth(Rejection::NotProvided), None),
            (ApiError::NoActiveAccount, None),
            (ApiError::Internal, None),
        ] {
            let response = error.into_response();
            let header = response.headers().get(http::header::RETRY_AFTER);
            assert_eq!(
                header.map(|v| v.to_str().unwrap().parse::<u64>().unwrap()),
                wait
            );
        }
    }

    #[test]
    fn bodies_match_the_contract() {
        let cases = [
            (
                ApiError::NoActiveAccount,
                401,
                r#"{"detail":"No active account found with the given credentials"}"#,
            ),
            (
                ApiError::NoActiveAccountForToken,
                401,
                r#"{"detail":"No active account found for the given token."}"#,
            ),
            (
                ApiError::Token(TokenError::Expired),
                401,
                r#"{"detail":"Token is expired","code":"token_not_valid"}"#,
            ),
            (
                ApiError::Token(TokenError::MissingClaim("exp".into())),
                401,
                r#"{"detail":"Token has no 'exp' claim","code":"token_not_valid"}"#,
            ),
            (
                ApiError::VerifyBlacklisted,
                400,
                r#"{"non_field_errors":["Token is blacklisted"]}"#,
            ),
            (
                ApiError::MethodNotAllowed("GET".into()),
                405,
                r#"{"detail":"Method \"GET\" not allowed."}"#,
            ),
            (ApiError::NotFound, 404, r#"{"detail":"Not found."}"#),
            (
                ApiError::CsrfFailed(CsrfRefusal::OriginMissing),
                403,
                r#"{"detail":"CSRF Failed: Origin header missing."}"#,
            ),
            (
                ApiError::CsrfFailed(CsrfRefusal::OriginUntrusted("https://evil.example".into())),
                403,
                r#"{"detail":"CSRF Failed: Origin checking failed - https://evil.example does not match any trusted origins."}"#,
            ),
            (
                ApiError::PermissionDenied,
                403,
                r#"{"detail":"You do not have permission to perform this action."}"#,
            ),
            (
                ApiError::Throttled(1),
                429,
                r#"{"detail":"Request was throttled. Expected available in 1 second."}"#,
            ),
            (
                ApiError::Throttled(60),
                429,
                r#"{"detail":"Request was throttled. Expected available in 60 seconds."}"#,
            ),
        ];
        for (error, status, body) in cases {
            assert_eq!(error.status().as_u16(), status);
            assert_eq!(error.body().to_string(), body);
        }
    }
}
