//! The token views: obtain, refresh, verify, blacklist, and the sliding pair. Each reproduces
//! its simplejwt serializer, including error precedence (token errors before user errors), and
//! fixes its defects: no 500 for any token content, verify honours the blacklist, and rotation
//! is one atomic store operation so exactly one of racing refreshes wins.

use std::future::Future;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use doorman_drf::{RequestData, SerializerField, ViewMetadata};
use doorman_guard::UserRefusal;
use doorman_token::{Claims, TokenError, TokenKind, Tokens, UserId};
use http::{Method, Request, header};
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::answer::{Answer, finish, negotiate, read_body};
use super::cookies::{self as cookie_mode, CookieUse};
use super::endpoint::{Budget, Endpoint, Listener, always};
use super::error::ApiError;
use crate::accounts::Attempt;
use crate::accounts::throttle::{Reservation, Turn};
use crate::audit::{self, Client};
use crate::config::Config;
use crate::serve::ClientAddr;
use crate::state::AppState;
use crate::store::{OutstandingToken, Replay, RotateOutcome};

/// Where clients log in; the discovery document names it too.
pub const OBTAIN_PAIR_PATH: &str = "/api/token/";
/// The two views that take a refresh token, where the cookie mode sets its cookie.
pub const REFRESH_PATH: &str = "/api/token/refresh/";
pub const BLACKLIST_PATH: &str = "/api/token/blacklist/";

/// simplejwt's views at the reference app's paths, with the docstrings and serializer fields
/// DRF's `OPTIONS` shows. The sliding pair is served only with `sliding_tokens` on.
pub const ENDPOINTS: &[Endpoint] = &[
    password_checking(token_view(
        OBTAIN_PAIR_PATH,
        ViewMetadata {
            name: "Token Obtain Pair",
            description: "Takes a set of user credentials and returns an access and refresh JSON web\ntoken pair to prove the authentication of those credentials.",
            post_fields: Some(CREDENTIALS),
        },
        always,
        |endpoint| {
            any(move |state, request| {
                view(
                    state,
                    request,
                    endpoint,
                    CookieUse::LoginSetting,
                    obtain_pair,
                )
            })
        },
    )),
    token_view(
        REFRESH_PATH,
        ViewMetadata {
            name: "Token Refresh",
            description: "Takes a refresh type JSON web token and returns an access type JSON web\ntoken if the refresh token is valid.",
            post_fields: Some(&[field("refresh", true, false), field("access", false, true)]),
        },
        always,
        |endpoint| {
            any(move |state, request| view(state, request, endpoint, CookieUse::Refresh, refresh))
        },
    ),
    token_view(
        "/api/token/verify/",
        ViewMetadata {
            name: "Token Verify",
            description: "Takes a token and indicates if it is valid.  This view provides no\ninformation about a token's fitness for a particular use.",
            post_fields: Some(TOKEN),
        },
        always,
        |endpoint| {
            any(move |state, request| view(state, request, endpoint, CookieUse::None, verify))
        },
    ),
    token_view(
        BLACKLIST_PATH,
        ViewMetadata {
            name: "Token Blacklist",
            description: "Takes a token and blacklists it. Must be used with the\n`rest_framework_simplejwt.token_blacklist` app installed.",
            post_fields: Some(&[field("refresh", true, false)]),
        },
        always,
        |endpoint| {
            any(move |state, request| {
                view(state, request, endpoint, CookieUse::Blacklist, blacklist)
            })
        },
    ),
    password_checking(token_view(
        "/api/token/sliding/",
        ViewMetadata {
            name: "Token Obtain Sliding",
            description: "Takes a set of user credentials and returns a sliding JSON web token to\nprove the authentication of those credentials.",
            post_fields: Some(CREDENTIALS),
        },
        sliding_tokens,
        |endpoint| {
            any(move |state, request| {
                view(state, request, endpoint, CookieUse::Login, obtain_sliding)
            })
        },
    )),
    token_view(
        "/api/token/sliding/refresh/",
        ViewMetadata {
            name: "Token Refresh Sliding",
            description: "Takes a sliding JSON web token and returns a new, refreshed version if the\ntoken's refresh period has not expired.",
            post_fields: Some(TOKEN),
        },
        sliding_tokens,
        |endpoint| {
            any(move |state, request| {
                view(state, request, endpoint, CookieUse::None, refresh_sliding)
            })
        },
    ),
];

const CREDENTIALS: &[SerializerField] = &[
    field("username", true, false),
    field("password", true, false),
];
const TOKEN: &[SerializerField] = &[field("token", true, false)];

const fn field(name: &'static str, required: bool, read_only: bool) -> SerializerField {
    SerializerField {
        name,
        required,
        read_only,
    }
}

/// A view that checks a password: it takes its slot from the hashing budget, so a login flood
/// is shed there instead of holding the slots token checks need.
const fn password_checking(view: Endpoint) -> Endpoint {
    Endpoint {
        budget: Budget::Hashing,
        ..view
    }
}

/// What every token view shares: POST (and OPTIONS) on the API listener, uncompressed
/// (its answers carry tokens), counted under its own path.
const fn token_view(
    path: &'static str,
    metadata: ViewMetadata,
    enabled: fn(&Config) -> bool,
    handler: fn(&'static Endpoint) -> axum::routing::MethodRouter<AppState>,
) -> Endpoint {
    Endpoint {
        path,
        allow: "POST, OPTIONS",
        metadata: Some(metadata),
        metrics_label: path,
        listener: Listener::Api,
        compressed: false,
        budget: Budget::General,
        enabled,
        handler,
    }
}

fn sliding_tokens(config: &Config) -> bool {
    config.tokens.sliding_tokens
}

/// DRF's dispatch of a token view: negotiate, then the method, then parse and run `post`. In
/// the cookie mode, the refresh token may come from its cookie (the origin checked then), and
/// the answer sets or expires cookies as `cookies` says.
pub(super) async fn view<F, Fut>(
    State(state): State<AppState>,
    request: Request<Body>,
    endpoint: &'static Endpoint,
    cookies: CookieUse,
    post: F,
) -> Response
where
    F: FnOnce(AppState, RequestData, Client) -> Fut,
    Fut: Future<Output = Result<Answer, ApiError>>,
{
    let (parts, body) = request.into_parts();
    let www = state.guard.www_authenticate();
    let indent = match negotiate(&parts.headers, parts.uri.query()) {
        Ok(indent) => indent,
        Err(e) => return finish(Err(e.into()), None, endpoint.allow, www),
    };
    let mut from_cookie = false;
    let result = match parts.method {
        Method::POST => {
            let data = read_data(&state, parts.headers.get(header::CONTENT_TYPE), body).await;
            match data.and_then(|data| cookie_mode::take_request(&state, &parts, cookies, data)) {
                Ok(request) => {
                    from_cookie = request.from_cookie;
                    post(state.clone(), request.data, client(&parts)).await
                }
                Err(e) => Err(e),
            }
        }
        Method::OPTIONS => Ok(Answer::plain(endpoint.options())),
        ref other => Err(ApiError::MethodNotAllowed(other.as_str().to_owned())),
    };
    if let Err(ApiError::Token(e)) = &result {
        state.metrics.token_refused(e);
    }
    let set_cookies = cookie_mode::set_cookies(&state.config, cookies, from_cookie, &result);
    let mut response = finish(result, indent, endpoint.allow, www);
    for value in set_cookies {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Who sent the request, for the audit trail: the address the access log settled on (behind
/// trusted proxies, the forwarded one) and the user agent as sent.
pub(super) fn client(parts: &http::request::Parts) -> Client {
    Client {
        addr: parts
            .extensions
            .get::<ClientAddr>()
            .map(|ClientAddr(ip)| *ip),
        user_agent: parts.headers.get(header::USER_AGENT).cloned(),
    }
}

pub(super) async fn read_data(
    state: &AppState,
    content_type: Option<&http::HeaderValue>,
    body: Body,
) -> Result<RequestData, ApiError> {
    let bytes = read_body(body, state.config.server.max_body_bytes).await?;
    Ok(doorman_drf::parse_request_data(content_type, &bytes)?)
}

/// `POST /api/token/`: `{"refresh": R, "access": A}`.
async fn obtain_pair(
    state: AppState,
    data: RequestData,
    client: Client,
) -> Result<Answer, ApiError> {
    let (refresh, now) =
        log_in_and_record(&state, &data, &client, Tokens::refresh_for_user).await?;
    let access = state.tokens.access_from_refresh(&refresh, now);
    let body = json!({"refresh": encode(&state, &refresh)?, "access": encode(&state, &access)?});
    state.metrics.login(true);
    state.metrics.token_issued("refresh");
    state.metrics.token_issued("access");
    Ok(Answer::tokens(body))
}

/// `POST /api/token/sliding/`: `{"token": S}`.
async fn obtain_sliding(
    state: AppState,
    data: RequestData,
    client: Client,
) -> Result<Answer, ApiError> {
    let (sliding, _) = log_in_and_record(&state, &data, &client, Tokens::sliding_for_user).await?;
    let body = json!({"token": encode(&state, &sliding)?});
    state.metrics.login(true);
    state.metrics.token_issued("sliding");
    Ok(Answer::tokens(body))
}

/// What both logins share: authenticate, mint the user's refresh or sliding token, and record
/// it as outstanding (when tokens have ids). Returns the token and the time it was minted at.
async fn log_in_and_record(
    state: &AppState,
    data: &RequestData,
    client: &Client,
    mint: fn(&Tokens, &str, i64) -> Claims,
) -> Result<(Claims, i64), ApiError> {
    let user_id = login(state, data, client).await?;
    let now = state.accounts.issue_time(user_id).await?;
    let token = mint(&state.tokens, &user_id.to_string(), now);
    // With `jti_claim` empty, tokens carry no id: there is nothing to record, and nothing
    // could later be blacklisted by it.
    if state.tokens.rules().jti_claim.is_some() {
        state
            .store
            .record_outstanding(&outstanding(
                state,
                &token,
                Some(user_id),
                now,
                Some(client),
            )?)
            .await?;
    }
    Ok((token, now))
}

/// simplejwt's `TokenObtainSerializer.validate`: authenticate, then update `last_login`. The
/// attempt goes into the audit trail once the credentials have been checked (a request
/// refused before that, for a missing field, attempted nothing); a failure to record it is
/// logged and changes no answer.
///
/// Before any hashing, the attempt is reserved against the login throttle's counters
/// (`accounts::throttle`): while one is blocked the answer is DRF's 429, and the password is
/// never looked at.
async fn login(state: &AppState, data: &RequestData, client: &Client) -> Result<i64, ApiError> {
    let [username, password] = fields(data, ["username", "password"])?;
    let Some(turn) = state.throttle.turn(&username, client.addr).await else {
        return Err(throttled(state, username, client, 1).await);
    };
    // From the reservation on, the attempt runs to its end even when the client goes away
    // meanwhile: it counts as a failure from its reservation until its outcome is recorded,
    // so a login cancelled half-way (a client's timeout) would otherwise stay a failure it
    // never was, and an attacker hanging up would still have had the password checked.
    let state = state.clone();
    let client = client.clone();
    tokio::spawn(async move {
        match state.throttle.reserve(&username, client.addr, turn).await? {
            Reservation::Allowed(turn) => decide(&state, username, password, &client, turn).await,
            Reservation::Throttled { retry_after } => {
                Err(throttled(&state, username, &client, retry_after).await)
            }
        }
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "a login's password check ended abnormally");
        Err(ApiError::Internal)
    })
}

/// A throttled attempt: recorded in the audit trail and counted, and answered 429.
async fn throttled(
    state: &AppState,
    username: String,
    client: &Client,
    retry_after: u64,
) -> ApiError {
    let user_id = match state.store.user_by_username(&username).await {
        Ok(user) => user.map(|u| u.id),
        Err(_) => None,
    };
    audit::Event::new(audit::Kind::LoginThrottled)
        .username(username)
        .user_id(user_id)
        .client(client)
        .detail(json!({"retry_after": retry_after}))
        .record(&state.store)
        .await;
    state.metrics.login_throttled();
    ApiError::Throttled(retry_after)
}

/// A reserved login attempt, from its password check to its outcome recorded: the throttle's
/// counters cleared after a right password, the audit trail, `last_login`. The turn is held
/// until then.
async fn decide(
    state: &AppState,
    username: String,
    password: String,
    client: &Client,
    _turn: Turn,
) -> Result<i64, ApiError> {
    let attempt = state
        .accounts
        .attempt(&username, SecretString::from(password))
        .await?;
    let user = match attempt {
        Attempt::Succeeded(user) => user,
        Attempt::Refused { user_id } => {
            audit::Event::new(audit::Kind::LoginFailed)
                .username(username)
                .user_id(user_id)
                .client(client)
                .record(&state.store)
                .await;
            state.metrics.login(false);
            return Err(ApiError::NoActiveAccount);
        }
    };
    // The success's three writes at once, so that SQLite's group commit can make them one
    // transaction (one after another they were three, each waiting for its disk sync).
    let cleared = async {
        // The login stands either way; failures left uncleared only cost the user a
        // throttled attempt later.
        if let Err(e) = state.throttle.succeeded(&username, client.addr).await {
            tracing::warn!(error = %e, "could not clear the login's throttling counters");
        }
    };
    let audited = audit::Event::new(audit::Kind::LoginSucceeded)
        .username(username.clone())
        .user_id(Some(user.id))
        .client(client)
        .record(&state.store);
    let last_login = async {
        if state.config.accounts.update_last_login {
            state.store.record_login(user.id, state.clock.now()).await
        } else {
            Ok(())
        }
    };
    let ((), (), recorded) = tokio::join!(cleared, audited, last_login);
    recorded?;
    Ok(user.id)
}

/// `POST /api/token/refresh/`: `{"access": A}`, plus `"refresh"` when rotating. A token that
/// was rotated out is answered, inside the grace window, with the successor its rotation made
/// (while that one is live) and a new access token; otherwise it is refused as blacklisted, and
/// past the window it revokes its family.
async fn refresh(state: AppState, data: RequestData, client: Client) -> Result<Answer, ApiError> {
    let state = &state;
    let [raw] = fields(&data, ["refresh"])?;
    let now = state.clock.unix_now();
    let claims = state.tokens.decode(&raw, now)?;
    if let Err(refused) = not_blacklisted(state, &claims, TokenKind::Refresh).await {
        if matches!(refused, ApiError::Token(TokenError::Blacklisted))
            && let Some(successor) = detect_reuse(state, &claims, &client).await?
        {
            return reissue(state, &claims, &successor, now).await;
        }
        return Err(refused);
    }
    let user_id = active_user(state, &claims).await?;
    let access = state.tokens.access_from_refresh(&claims, now);
    let mut body = Map::new();
    body.insert("access".into(), Value::String(encode(state, &access)?));
    let rotating = state.config.tokens.rotate_refresh_tokens;
    if rotating {
        let rotated = state.tokens.rotate_refresh(&claims, now);
        let old = outstanding(state, &claims, user_id, now, None)?;
        // The successor carries on the session from this request's client.
        let new = outstanding(state, &rotated, user_id, now, Some(&client))?;
        let blacklist_old = state.config.tokens.blacklist_after_rotation;
        if state.store.rotate(&old, &new, blacklist_old).await? == RotateOutcome::AlreadyBlacklisted
        {
            // Another request rotated this token between our check and our write (or revoked
            // its family): a replay like any other, answered with the winner's successor.
            if let Some(successor) = detect_reuse(state, &claims, &client).await? {
                return reissue(state, &claims, &successor, now).await;
            }
            return Err(TokenError::Blacklisted.into());
        }
        body.insert("refresh".into(), Value::String(encode(state, &rotated)?));
    }
    state.metrics.token_refreshed();
    state.metrics.token_issued("access");
    if rotating {
        state.metrics.token_issued("refresh");
    }
    Ok(Answer::tokens(Value::Object(body)))
}

/// Reuse detection (RFC 9700 section 4.14.2) for a refresh token found blacklisted: when it was
/// rotated out longer than `refresh_reuse_grace` ago, either it or its successor is in the
/// hands of someone else, and the whole family is revoked. Only with rotation and
/// `blacklist_after_rotation` on: otherwise a rotated-out token stays valid by design (as in
/// simplejwt), and presenting it again is no replay.
///
/// Inside the window the replay is a retry after a lost answer, a second tab, or the loser of
/// racing refreshes: the successor its rotation made is returned while that one is live, for
/// the caller to answer with again. Otherwise (`None`) the caller answers with the usual
/// blacklisted 401 whatever this found; the attacker learns nothing from it.
async fn detect_reuse(
    state: &AppState,
    claims: &Claims,
    client: &Client,
) -> Result<Option<OutstandingToken>, ApiError> {
    let settings = &state.config.tokens;
    if !(settings.rotate_refresh_tokens && settings.blacklist_after_rotation) {
        return Ok(None);
    }
    let Some(jti) = state.tokens.jti(claims) else {
        return Ok(None);
    };
    let replay = state
        .store
        .replayed(jti, state.clock.now(), settings.refresh_reuse_grace)
        .await?;
    if let Replay::WithinGrace { live_successor } = replay {
        if live_successor.is_none() {
            state.metrics.refresh_replay("refused");
        }
        return Ok(live_successor);
    }
    if let Replay::FamilyRevoked {
        user_id, revoked, ..
    } = replay
    {
        state.metrics.refresh_reuse_detected();
        // A later replay finds the family revoked already: counted, not recorded again.
        if revoked > 0 {
            let username = match user_id {
                Some(id) => state.store.user_by_id(id).await?.map(|u| u.username),
                None => None,
            };
            let mut event = audit::Event::new(audit::Kind::FamilyRevoked)
                .user_id(user_id)
                .client(client)
                .detail(json!({"revoked": revoked}));
            if let Some(username) = username {
                event = event.username(username);
            }
            event.record(&state.store).await;
        }
    }
    Ok(None)
}

/// The answer to a replay inside the grace window: the successor the token's rotation made,
/// rebuilt from the presented token's claims and the successor's stored id, `iat` and `exp`
/// (no new token, so the family does not grow or fork), and a new access token, as a refresh
/// of the successor would give. The presented token passes a normal refresh's checks first
/// (its type, an active user); failing them, or with the successor expired or its times not
/// stored, the replay is refused as blacklisted, as it was before the window was looked at.
///
/// Not audited: nothing changed hands that the rotation had not already handed out. Counted
/// in `doorman_refresh_replays_total{outcome="reissued"}`.
async fn reissue(
    state: &AppState,
    claims: &Claims,
    successor: &OutstandingToken,
    now: i64,
) -> Result<Answer, ApiError> {
    let refused = || {
        state.metrics.refresh_replay("refused");
        Err(ApiError::Token(TokenError::Blacklisted))
    };
    if state
        .tokens
        .check(claims, Some(TokenKind::Refresh))
        .is_err()
    {
        return refused();
    }
    match active_user(state, claims).await {
        Ok(_) => {}
        Err(ApiError::NoActiveAccountForToken) => return refused(),
        Err(other) => return Err(other),
    }
    let (Some(iat), exp) = (
        successor.created_at.map(OffsetDateTime::unix_timestamp),
        successor.expires_at.unix_timestamp(),
    ) else {
        return refused();
    };
    if exp <= now {
        return refused();
    }
    let rebuilt = state.tokens.successor_of(claims, &successor.jti, iat, exp);
    let access = state.tokens.access_from_refresh(claims, now);
    let mut body = Map::new();
    body.insert("access".into(), Value::String(encode(state, &access)?));
    body.insert("refresh".into(), Value::String(encode(state, &rebuilt)?));
    let body = Value::Object(body);
    state.metrics.refresh_replay("reissued");
    state.metrics.token_refreshed();
    state.metrics.token_issued("access");
    Ok(Answer::tokens(body))
}

/// `POST /api/token/sliding/refresh/`: the same token with a new `exp` until `refresh_exp`.
async fn refresh_sliding(
    state: AppState,
    data: RequestData,
    _: Client,
) -> Result<Answer, ApiError> {
    let state = &state;
    let [raw] = fields(&data, ["token"])?;
    let now = state.clock.unix_now();
    let claims = blacklistable(state, &raw, TokenKind::Sliding, now).await?;
    state.tokens.check_refresh_exp(&claims, now)?;
    active_user(state, &claims).await?;
    let slid = state.tokens.slide(&claims, now);
    let body = json!({"token": encode(state, &slid)?});
    state.metrics.token_refreshed();
    state.metrics.token_issued("sliding");
    Ok(Answer::tokens(body))
}

/// `POST /api/token/verify/`: `{}` for any valid token, of any type. Unlike simplejwt, a
/// blacklisted token never verifies, whatever `BLACKLIST_AFTER_ROTATION` says.
///
/// Only refresh and sliding tokens are ever blacklisted (here as in simplejwt, whose
/// `BlacklistMixin` only they carry, so also in a Django table moved over), so an access
/// token's lookup could only ever answer "no": it is skipped, which keeps verify of access
/// tokens, the common case, off the database.
async fn verify(state: AppState, data: RequestData, _: Client) -> Result<Answer, ApiError> {
    let state = &state;
    let [raw] = fields(&data, ["token"])?;
    let claims = state.tokens.decode(&raw, state.clock.unix_now())?;
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
async fn blacklist(state: AppState, data: RequestData, _: Client) -> Result<Answer, ApiError> {
    let state = &state;
    let [raw] = fields(&data, ["refresh"])?;
    let now = state.clock.unix_now();
    let claims = blacklistable(state, &raw, TokenKind::Refresh, now).await?;
    let user_id = match claims.user_id(&state.tokens.rules().user_id_claim) {
        Some(UserId::Id(id)) => state.store.user_by_id(id).await?.map(|u| u.id),
        _ => None,
    };
    state
        .store
        .blacklist(&outstanding(state, &claims, user_id, now, None)?)
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
    not_blacklisted(state, &claims, kind).await?;
    Ok(claims)
}

/// [`blacklistable`]'s checks after decoding: the blacklist, then the type.
async fn not_blacklisted(
    state: &AppState,
    claims: &Claims,
    kind: TokenKind,
) -> Result<(), ApiError> {
    if state.tokens.rules().jti_claim.is_some() {
        let jti = state.tokens.jti(claims).ok_or(TokenError::NoId)?;
        if state.store.is_blacklisted(jti).await? {
            return Err(TokenError::Blacklisted.into());
        }
    }
    state.tokens.check(claims, Some(kind))?;
    Ok(())
}

/// The token's user must exist, pass the authentication rule, and not have had their tokens
/// revoked since the token was issued. A token without the claim
/// passes (simplejwt's behaviour); any value that names no active user is refused, where
/// simplejwt 5.5.1 skips falsy ids and crashes on deleted users. Asked of the guard's user
/// check, so within `user_cache_ttl` of a change made by another process (at once for one
/// made through this instance), and refused with 503 while the database can't be asked.
async fn active_user(state: &AppState, claims: &Claims) -> Result<Option<i64>, ApiError> {
    let id = match claims.user_id(&state.tokens.rules().user_id_claim) {
        None => return Ok(None),
        Some(UserId::Unresolvable) => return Err(ApiError::NoActiveAccountForToken),
        Some(UserId::Id(id)) => id,
    };
    // The guard's user check, from its cache: a refresh is as fresh as a `/hello/`.
    match state
        .users
        .check_before_minting(id, claims.issued_at())
        .await
    {
        Ok(()) => Ok(Some(id)),
        // Issued before the user's tokens were revoked: refused as the blacklisted token it
        // nearly always is already (one recorded while the revocation ran may not be).
        Err(UserRefusal::Revoked) => Err(TokenError::Blacklisted.into()),
        Err(UserRefusal::NotFound | UserRefusal::Inactive) => {
            Err(ApiError::NoActiveAccountForToken)
        }
        Err(UserRefusal::Unavailable) => Err(ApiError::Unavailable),
    }
}

pub(super) fn fields<const N: usize>(
    data: &RequestData,
    names: [&str; N],
) -> Result<[String; N], ApiError> {
    let values = doorman_drf::char_fields(data, &names)?;
    values.try_into().map_err(|_| ApiError::Internal)
}

fn encode(state: &AppState, claims: &Claims) -> Result<String, ApiError> {
    state.tokens.encode(claims).map_err(|e| {
        tracing::error!(error = %e, "could not sign a token");
        ApiError::Internal
    })
}

/// The store's record of a refresh or sliding token: its id and expiry, never the token, and
/// the client it is issued to (`None` for a token recorded without being issued here).
fn outstanding(
    state: &AppState,
    claims: &Claims,
    user_id: Option<i64>,
    now: i64,
    client: Option<&Client>,
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
        client_addr: client.and_then(Client::addr_text),
        user_agent: client.and_then(Client::user_agent_text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_cookie_goes_to_the_views_that_take_it() {
        assert_eq!(
            cookie_mode::REFRESH_COOKIE_PATHS,
            [REFRESH_PATH, BLACKLIST_PATH]
        );
    }
}
