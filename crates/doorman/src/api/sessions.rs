//! The caller's sessions (each login's refresh-token family that still has a live token):
//! `GET /api/account/sessions/` lists them, `POST /api/account/sessions/revoke/` ends one.
//! Authenticated by an access token as on `/hello/`; nobody sees or ends another user's
//! sessions, nor learns whether an id is one.

use axum::body::Body;
use axum::routing::any;
use doorman_drf::{SerializerField, ViewMetadata};
use http::{Method, header, request::Parts};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::answer::Answer;
use super::caller::{dispatch, not_allowed};
use super::endpoint::{Endpoint, Listener, always};
use super::error::ApiError;
use super::tokens::{client, fields, read_data};
use crate::audit;
use crate::state::AppState;
use crate::store::Session;

pub const SESSIONS_PATH: &str = "/api/account/sessions/";
pub const REVOKE_SESSION_PATH: &str = "/api/account/sessions/revoke/";

pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: SESSIONS_PATH,
        allow: "GET, HEAD, OPTIONS",
        metadata: Some(ViewMetadata {
            name: "Account Sessions",
            description: "Lists the sessions of the user the access token authenticates: each login\nwhose refresh token is still live, most recently used first.",
            post_fields: None,
        }),
        metrics_label: SESSIONS_PATH,
        listener: Listener::Api,
        compressed: false,
        budget: super::endpoint::Budget::General,
        enabled: always,
        handler: |endpoint| any(move |state, request| dispatch(state, request, endpoint, list)),
    },
    Endpoint {
        path: REVOKE_SESSION_PATH,
        allow: "POST, OPTIONS",
        metadata: Some(ViewMetadata {
            name: "Account Session Revoke",
            description: "Ends one session of the user the access token authenticates: every refresh\ntoken of that login is blacklisted.",
            post_fields: Some(&[SerializerField {
                name: "id",
                required: true,
                read_only: false,
            }]),
        }),
        metrics_label: REVOKE_SESSION_PATH,
        listener: Listener::Api,
        compressed: false,
        budget: super::endpoint::Budget::General,
        enabled: always,
        handler: |endpoint| any(move |state, request| dispatch(state, request, endpoint, revoke)),
    },
];

async fn list(state: AppState, user_id: i64, parts: Parts, _: Body) -> Result<Answer, ApiError> {
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        return Err(not_allowed(&parts.method));
    }
    let sessions = state
        .store
        .sessions(user_id, OffsetDateTime::now_utc())
        .await?;
    let sessions: Vec<Value> = sessions.iter().map(render).collect();
    Ok(Answer::private(json!({ "sessions": sessions })))
}

async fn revoke(
    state: AppState,
    user_id: i64,
    parts: Parts,
    body: Body,
) -> Result<Answer, ApiError> {
    if parts.method != Method::POST {
        return Err(not_allowed(&parts.method));
    }
    let data = read_data(&state, parts.headers.get(header::CONTENT_TYPE), body).await?;
    let [family] = fields(&data, ["id"])?;
    // Another user's family answers as an unknown one does.
    if !state.store.owns_family(user_id, &family).await? {
        return Err(ApiError::NotFound);
    }
    let revoked = state.store.revoke_family(&family).await?;
    let username = state.store.user_by_id(user_id).await?.map(|u| u.username);
    let mut event = audit::Event::new(audit::Kind::SessionRevoked)
        .user_id(Some(user_id))
        .client(&client(&parts))
        .detail(json!({"session": family, "blacklisted": revoked}));
    if let Some(username) = username {
        event = event.username(username);
    }
    event.record(&state.store).await;
    Ok(Answer::plain(json!({})))
}

fn render(session: &Session) -> Value {
    json!({
        "id": session.id,
        "token_id": session.token_id,
        "started_at": session.started_at.map(rfc3339),
        "last_used_at": session.last_used_at.map(rfc3339),
        "expires_at": rfc3339(session.expires_at),
        "client_addr": session.client_addr,
        "user_agent": session.user_agent,
    })
}

/// RFC 3339 in UTC, as the answers give every time.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}
