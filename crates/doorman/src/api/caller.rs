//! Who calls a protected view: the access token's user, authenticated as on `/hello/` (same
//! 401s, counted the same), and for the admin views a superuser (DRF's 403 otherwise). DRF's
//! order holds: content negotiation, then authentication and permission, then the method.

use std::future::Future;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{Method, Request, request::Parts};

use super::answer::{Answer, finish, negotiate};
use super::cookies;
use super::endpoint::Endpoint;
use super::error::ApiError;
use super::hello::count_refusal;
use crate::state::AppState;
use crate::store::User;

/// The user id the access token names (from `Authorization`, or in the cookie mode from the
/// access cookie, whose unsafe requests need a trusted `Origin`), once the guard and its user
/// check let it through; refusals counted as `/hello/` counts them.
pub async fn authenticate(state: &AppState, parts: &Parts) -> Result<i64, ApiError> {
    let caller = cookies::caller(state, parts)
        .await
        .map_err(|refused| count_refusal(state, refused))?;
    // The guard's user check lets no token without a user through.
    caller
        .user_id
        .ok_or(ApiError::Auth(doorman_guard::Rejection::UserNotFound))
}

/// The caller as an active superuser: a valid token of anyone else is DRF's 403.
pub async fn superuser(state: &AppState, user_id: i64) -> Result<User, ApiError> {
    match state.store.user_by_id(user_id).await? {
        Some(user) if user.is_superuser && user.is_active => Ok(user),
        Some(_) => Err(ApiError::PermissionDenied),
        // Deleted since the guard's user check.
        None => Err(ApiError::Auth(doorman_guard::Rejection::UserNotFound)),
    }
}

/// A protected view's dispatch: negotiate, authenticate, answer `OPTIONS` from the
/// declaration, and hand any other method to `handle` with the caller's user id (which
/// answers 405 for the methods it doesn't take).
pub async fn dispatch<F, Fut>(
    State(state): State<AppState>,
    request: Request<Body>,
    endpoint: &'static Endpoint,
    handle: F,
) -> Response
where
    F: FnOnce(AppState, i64, Parts, Body) -> Fut,
    Fut: Future<Output = Result<Answer, ApiError>>,
{
    view(
        state,
        request,
        endpoint,
        |state, user_id, parts, body| async move {
            if parts.method == Method::OPTIONS {
                return Ok(Answer::plain(endpoint.options()));
            }
            handle(state, user_id, parts, body).await
        },
    )
    .await
}

/// [`dispatch`] for the admin views: the caller must be an active superuser (403 otherwise,
/// `OPTIONS` included, as DRF checks permissions before any method), handed to `handle`.
pub async fn dispatch_superuser<F, Fut>(
    State(state): State<AppState>,
    request: Request<Body>,
    endpoint: &'static Endpoint,
    handle: F,
) -> Response
where
    F: FnOnce(AppState, User, Parts, Body) -> Fut,
    Fut: Future<Output = Result<Answer, ApiError>>,
{
    view(
        state,
        request,
        endpoint,
        |state, user_id, parts, body| async move {
            let admin = superuser(&state, user_id).await?;
            if parts.method == Method::OPTIONS {
                return Ok(Answer::plain(endpoint.options()));
            }
            handle(state, admin, parts, body).await
        },
    )
    .await
}

/// Negotiation, authentication, then `handle`, rendered.
async fn view<F, Fut>(
    state: AppState,
    request: Request<Body>,
    endpoint: &'static Endpoint,
    handle: F,
) -> Response
where
    F: FnOnce(AppState, i64, Parts, Body) -> Fut,
    Fut: Future<Output = Result<Answer, ApiError>>,
{
    let (parts, body) = request.into_parts();
    let www = state.guard.www_authenticate().to_owned();
    let indent = match negotiate(&parts.headers, parts.uri.query()) {
        Ok(indent) => indent,
        Err(e) => return finish(Err(e.into()), None, endpoint.allow, &www),
    };
    let result = match authenticate(&state, &parts).await {
        Err(e) => Err(e),
        Ok(user_id) => handle(state, user_id, parts, body).await,
    };
    finish(result, indent, endpoint.allow, &www)
}

/// The 405 of a method a protected view doesn't take.
pub fn not_allowed(method: &Method) -> ApiError {
    ApiError::MethodNotAllowed(method.as_str().to_owned())
}
