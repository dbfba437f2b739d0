//! The token views: obtain, refresh, verify, blacklist, and the sliding pair. Each reproduces
//! its simplejwt serializer, including error precedence (token errors before user errors), and
//! fixes its defects: no 500 for any token content, verify honours the blacklist, and rotation
//! is one atomic store operation so exactly one of racing refreshes wins.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use doorman_token::{Claims, TokenError, TokenKind, UserId};
use http::{Method, Request, header};
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use doorman_drf::{self as drf, RequestData};

use super::views::View;
use super::{Answer, ApiError, finish, read_body};
use crate::app::AppState;
use crate::store::{OutstandingToken, RotateOutcome};
use crate::unix_now;

const ALLOW: &str = "POST, OPTIONS";

/// The axum handler for one token view: DRF's dispatch (negotiate, then method, then parse).
pub async fn endpoint(state: State<AppState>, view: View, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let www = state.guard.www_authenticate();
    let indent = match super::negotiate(&parts.headers, parts.uri.query()) {
        Ok(indent) => indent,
        Err(e) => return finish(Err(e.into()), None, ALLOW, www),
    };
    let result = match parts.method {
        Method::POST => post(&state, view, parts.headers.get(header::CONTENT_TYPE), body).await,
        Method::OPTIONS => Ok(Answer::plain(drf::options_metadata(&view.metadata()))),
        ref other => Err(ApiError::MethodNotAllowed(other.as_str().to_owned())),
    };
    count(&state, view, &result);
    finish(result, indent, ALLOW, www)
}

/// The metrics of one token view's outcome.
fn count(state: &AppState, view: View, result: &Result<Answer, ApiError>) {
    let metrics = &state.metrics;
    match (view, result) {
        (_, Err(ApiError::Token(e))) => metrics.token_refused(e),
        (View::TokenObtainPair | View::TokenObtainSliding, Err(ApiError::NoActiveAccount)) => {
            metrics.login(false);
        }
        (View::TokenObtainPair, Ok(answer)) if answer.carries_tokens => {
            metrics.login(true);
            metrics.token_issued("refresh");
            metrics.token_issued("access");
        }
        (View::TokenObtainSliding, Ok(answer)) if answer.carries_tokens => {
            metrics.login(true);
            metrics.token_issued("sliding");
        }
        (View::TokenRefresh, Ok(answer)) if answer.carries_tokens => {
            metrics.token_refreshed();
            metrics.token_issued("access");
            if answer.body.get("refresh").is_some() {
                metrics.token_issued("refresh");
            }
        }
        (View::TokenRefreshSliding, Ok(answer)) if answer.carries_tokens => {
            metrics.token_refreshed();
            metrics.token_issued("sliding");
        }
        _ => {}
    }
}

async fn post(
    state: &AppState,
    view: View,
    content_type: Option<&http::HeaderValue>,
    body: Body,
) -> Result<Answer, ApiError> {
    let bytes = read_body(body, state.config.server.max_body_bytes).await?;
    let data = drf::parse_request_data(content_type, &bytes)?;
    match view {
        View::TokenObtainPair => obtain_pair(state, &data).await,
        View::TokenRefresh => refresh(state, &data).await,
        View::TokenVerify => verify(state, &data).await,
        View::TokenBlacklist => blacklist(state, &data).await,
        View::TokenObtainSliding => obtain_sliding(state, &data).await,
        View::TokenRefreshSliding => refresh_sliding(state, &data).await,
        View::Hello => Err(ApiError::MethodNotAllowed("POST".into())),
    }
}

/// `POST /api/token/`: `{"refresh": R, "access": A}`.
async fn obtain_pair(state: &AppState, data: &RequestData) -> Result<Answer, ApiError> {
    let user_id = login(state, data).await?;
    let now = unix_now();
    let refresh = state.tokens.refresh_for_user(&user_id.to_string(), now);
    state
        .store
        .record_outstanding(&outstanding(state, &refresh, Some(user_id), now)?)
        .await?;
    let access = state.tokens.access_from_refresh(&refresh, now);
    Ok(Answer::tokens(
        json!({"refresh": encode(state, &refresh)?, "access": encode(state, &access)?}),
    ))
}

/// `POST /api/token/sliding/`: `{"token": S}`.
async fn obtain_sliding(state: &AppState, data: &RequestData) -> Result<Answer, ApiError> {
    let user_id = login(state, data).await?;
    let now = unix_now();
    let sliding = state.tokens.sliding_for_user(&user_id.to_string(), now);
    state
        .store
        .record_outstanding(&outstanding(state, &sliding, Some(user_id), now)?)
        .await?;
    Ok(Answer::tokens(json!({"token": encode(state, &sliding)?})))
}

/// simplejwt's `TokenObtainSerializer.validate`: authenticate, then update `last_login`.
async fn login(state: &AppState, data: &RequestData) -> Result<i64, ApiError> {
    let [username, password] = fields(data, ["username", "password"])?;
    let user = state
        .accounts
        .authenticate(&username, SecretString::from(password))
        .await?
        .ok_or(ApiError::NoActiveAccount)?;
    if state.config.accounts.update_last_login {
        state
            .store
            .record_login(user.id, OffsetDateTime::now_utc())
            .await?;
    }
    Ok(user.id)
}

/// `POST /api/token/refresh/`: `{"access": A}`, plus `"refresh"` when rotating.
async fn refresh(state: &AppState, data: &RequestData) -> Result<Answer, ApiError> {
    let [raw] = fields(data, ["refresh"])?;
    let now = unix_now();
    let claims = blacklistable(state, &raw, TokenKind::Refresh, now).await?;
    let user_id = active_user(state, &claims).await?;
    let access = state.tokens.access_from_refresh(&claims, now);
    let mut body = Map::new();
    body.insert("access".into(), Value::String(encode(state, &access)?));
    if state.config.tokens.rotate_refresh_tokens {
        let rotated = state.tokens.rotate_refresh(&claims, now);
        let old = outstanding(state, &claims, user_id, now)?;
        let new = outstanding(state, &rotated, user_id, now)?;
        let blacklist_old = state.config.tokens.blacklist_after_rotation;
        if state.store.rotate(&old, &new, blacklist_old).await? == RotateOutcome::AlreadyBlacklisted
        {
            // Another request rotated this token between our check and our write.
            return Err(TokenError::Blacklisted.into());
        }
        body.insert("refresh".into(), Value::String(encode(state, &rotated)?));
    }
    Ok(Answer::tokens(Value::Object(body)))
}

/// `POST /api/token/sliding/refresh/`: the same token with a new `exp` until `refresh_exp`.
async fn refresh_sliding(state: &AppState, data: &RequestData) -> Result<Answer, ApiError> {
    let [raw] = fields(data, ["token"])?;
    let now = unix_now();
    let claims = blacklistable(state, &raw, TokenKind::Sliding, now).await?;
    state.tokens.check_refresh_exp(&claims, now)?;
    active_user(state, &claims).await?;
    let slid = state.tokens.slide(&claims, now);
    Ok(Answer::tokens(json!({"token": encode(state, &slid)?})))
}

/// `POST /api/token/verify/`: `{}` for any valid token, of any type. Unlike simplejwt, a
/// blacklisted token never verifies, whatever `BLACKLIST_AFTER_ROTATION` says.
///
/// Only refresh and sliding tokens are ever blacklisted (here as in simplejwt, whose
/// `BlacklistMixin` only they carry, so also in a Django table moved over), so an access
/// token's lookup could only ever answer "no": it is skipped, which keeps verify of access
/// tokens, the common case, off the database.
async fn verify(state: &AppState, data: &RequestData) -> Result<Answer, ApiError> {
    let [raw] = fields(data, ["token"])?;
    let claims = state.tokens.decode(&raw, unix_now())?;
    state.tokens.check(&claims, None)?;
    // Known to be an access token only when the type claim is in use and says so.
    let is_access = state
        .tokens
        .rules()
        .token_type_claim
        .as_deref()
        .is_some_and(|claim| claims.str(claim) == Some(TokenKind::Access.as_str()));
    if !is_access
        && let Some(jti) = state.tokens.jti(&claims)
        && state.store.is_blacklisted(jti).await?
    {
        return Err(ApiError::VerifyBlacklisted);
    }
    Ok(Answer::plain(json!({})))
}

/// `POST /api/token/blacklist/`: `{}`; blacklists any valid refresh token, even one this
/// server never issued (simplejwt get-or-creates its outstanding row).
async fn blacklist(state: &AppState, data: &RequestData) -> Result<Answer, ApiError> {
    let [raw] = fields(data, ["refresh"])?;
    let now = unix_now();
    let claims = blacklistable(state, &raw, TokenKind::Refresh, now).await?;
    let user_id = match claims.user_id(&state.tokens.rules().user_id_claim) {
        Some(UserId::Id(id)) => state.store.user_by_id(id).await?.map(|u| u.id),
        _ => None,
    };
    state
        .store
        .blacklist(&outstanding(state, &claims, user_id, now)?)
        .await?;
    Ok(Answer::plain(json!({})))
}

/// A refresh or sliding token (simplejwt's `BlacklistMixin`): decoded, then the blacklist,
/// then the type checks, in that order. A token without an id can't be looked up; simplejwt
/// crashes there, doorman answers "Token has no id".
async fn blacklistable(
    state: &AppState,
    raw: &str,
    kind: TokenKind,
    now: i64,
) -> Result<Claims, ApiError> {
    let claims = state.tokens.decode(raw, now)?;
    if state.tokens.rules().jti_claim.is_some() {
        let jti = state.tokens.jti(&claims).ok_or(TokenError::NoId)?;
        if state.store.is_blacklisted(jti).await? {
            return Err(TokenError::Blacklisted.into());
        }
    }
    state.tokens.check(&claims, Some(kind))?;
    Ok(claims)
}

/// The token's user must exist and pass the authentication rule. A token without the claim
/// passes (simplejwt's behaviour); any value that names no active user is refused, where
/// simplejwt 5.5.1 skips falsy ids and crashes on deleted users.
async fn active_user(state: &AppState, claims: &Claims) -> Result<Option<i64>, ApiError> {
    let id = match claims.user_id(&state.tokens.rules().user_id_claim) {
        None => return Ok(None),
        Some(UserId::Unresolvable) => return Err(ApiError::NoActiveAccountForToken),
        Some(UserId::Id(id)) => id,
    };
    match state.store.user_by_id(id).await? {
        Some(user) if user.is_active || !state.config.accounts.check_user_is_active => {
            Ok(Some(user.id))
        }
        _ => Err(ApiError::NoActiveAccountForToken),
    }
}

fn fields<const N: usize>(data: &RequestData, names: [&str; N]) -> Result<[String; N], ApiError> {
    let values = drf::char_fields(data, &names)?;
    values.try_into().map_err(|_| ApiError::Internal)
}

fn encode(state: &AppState, claims: &Claims) -> Result<String, ApiError> {
    state.tokens.encode(claims).map_err(|e| {
        tracing::error!(error = %e, "could not sign a token");
        ApiError::Internal
    })
}

/// The store's record of a refresh or sliding token: its id and expiry, never the token.
fn outstanding(
    state: &AppState,
    claims: &Claims,
    user_id: Option<i64>,
    now: i64,
) -> Result<OutstandingToken, ApiError> {
    let jti = state.tokens.jti(claims).ok_or(TokenError::NoId)?;
    let exp = state.tokens.expires_at(claims).ok_or(TokenError::Invalid)?;
    let at = |secs: i64| {
        OffsetDateTime::from_unix_timestamp(secs).map_err(|_| ApiError::Token(TokenError::Invalid))
    };
    Ok(OutstandingToken {
        jti: jti.to_owned(),
        user_id,
        created_at: Some(at(now)?),
        expires_at: at(exp)?,
    })
}
