//! `POST /api/token/revoke-all/`: log out everywhere. The caller, authenticated by an access
//! token as on `/hello/` (or its cookie, in the cookie mode), has every outstanding refresh and
//! sliding token blacklisted and every token issued until now refused (the user's
//! `tokens_valid_after`). DRF's order holds: content negotiation, then authentication (with
//! the origin check of a cookie), then the method.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use doorman_drf::ViewMetadata;
use http::{Method, Request};
use serde_json::json;

use super::answer::{Answer, finish, negotiate};
use super::caller::authenticate;
use super::endpoint::{Endpoint, Listener, always};
use super::error::ApiError;
use super::tokens::client;
use crate::audit;
use crate::state::AppState;

pub const REVOKE_ALL_PATH: &str = "/api/token/revoke-all/";

pub const ENDPOINTS: &[Endpoint] = &[Endpoint {
    path: REVOKE_ALL_PATH,
    allow: "POST, OPTIONS",
    // An `APIView` without a serializer, as DRF would describe `TokenRevokeAllView`.
    metadata: Some(ViewMetadata {
        name: "Token Revoke All",
        description: "Takes the access token that authenticates the request and revokes every token\nof its user: each outstanding refresh and sliding token is blacklisted and\nevery token issued until now is refused.",
        post_fields: None,
    }),
    metrics_label: REVOKE_ALL_PATH,
    listener: Listener::Api,
    compressed: false,
    budget: super::endpoint::Budget::General,
    enabled: always,
    handler: |endpoint| any(move |state, request| revoke_all(state, request, endpoint)),
}];

async fn revoke_all(
    State(state): State<AppState>,
    request: Request<Body>,
    endpoint: &'static Endpoint,
) -> Response {
    let www = state.guard.www_authenticate();
    let (parts, _body) = request.into_parts();
    let indent = match negotiate(&parts.headers, parts.uri.query()) {
        Ok(indent) => indent,
        Err(e) => return finish(Err(e.into()), None, endpoint.allow, www),
    };
    let result = match authenticate(&state, &parts).await {
        Err(e) => Err(e),
        Ok(user_id) => match parts.method {
            Method::POST => revoke(&state, user_id, &parts).await,
            Method::OPTIONS => Ok(Answer::plain(endpoint.options())),
            ref other => Err(ApiError::MethodNotAllowed(other.as_str().to_owned())),
        },
    };
    finish(result, indent, endpoint.allow, www)
}

/// Revokes in the store, makes this instance's user check refuse the old tokens at once, and
/// records the event. The body, if any, is not read: the view takes no input.
async fn revoke(
    state: &AppState,
    user_id: i64,
    parts: &http::request::Parts,
) -> Result<Answer, ApiError> {
    let Some(revocation) = state.store.revoke_user_tokens(user_id).await? else {
        // Deleted between the user check and now.
        return Err(ApiError::Auth(doorman_guard::Rejection::UserNotFound));
    };
    state.users.revoked(user_id, revocation.tokens_valid_after);
    audit::Event::new(audit::Kind::TokensRevoked)
        .username(revocation.username)
        .user_id(Some(user_id))
        .client(&client(parts))
        .detail(json!({"reason": "api", "blacklisted": revocation.blacklisted}))
        .record(&state.store)
        .await;
    Ok(Answer::plain(json!({})))
}
