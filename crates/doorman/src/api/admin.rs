//! The superuser admin API: list and create users, deactivate, activate, unlock and log them out
//! everywhere, and read the audit trail. Only an active superuser's access token gets in (DRF's
//! 403 for anyone else's, 401 without one); every change is the one `doorman user` makes
//! (`accounts::admin`), recorded as made by that superuser.

use axum::body::Body;
use axum::routing::any;
use doorman_drf::{DrfError, RequestData, SerializerField, ViewMetadata};
use http::{Method, header, request::Parts};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use super::answer::Answer;
use super::caller::{dispatch_superuser, not_allowed};
use super::endpoint::{Endpoint, Listener, always};
use super::error::ApiError;
use super::sessions::rfc3339;
use super::tokens::{client, fields, read_data};
use crate::accounts::admin::{self, Actor};
use crate::accounts::{self, AccountsError};
use crate::audit::Client;
use crate::state::AppState;
use crate::store::{NumberedAuditEvent, StoreError, User, UserSummary};

pub const USERS_PATH: &str = "/api/admin/users/";
pub const AUDIT_PATH: &str = "/api/admin/audit/";

/// Page sizes of both lists: DRF's `LimitOffsetPagination` with these bounds.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

const USERNAME: &[SerializerField] = &[field("username", true)];

const fn field(name: &'static str, required: bool) -> SerializerField {
    SerializerField {
        name,
        required,
        read_only: false,
    }
}

/// An admin view's declaration: on the API listener, uncompressed (it answers with user data).
const fn admin_view(
    path: &'static str,
    allow: &'static str,
    metadata: ViewMetadata,
    handler: fn(&'static Endpoint) -> axum::routing::MethodRouter<AppState>,
) -> Endpoint {
    Endpoint {
        path,
        allow,
        metadata: Some(metadata),
        metrics_label: path,
        listener: Listener::Api,
        compressed: false,
        budget: super::endpoint::Budget::General,
        enabled: always,
        handler,
    }
}

/// One of the four actions on a user named in the body.
const fn action(
    path: &'static str,
    name: &'static str,
    description: &'static str,
    handler: fn(&'static Endpoint) -> axum::routing::MethodRouter<AppState>,
) -> Endpoint {
    admin_view(
        path,
        "POST, OPTIONS",
        ViewMetadata {
            name,
            description,
            post_fields: Some(USERNAME),
        },
        handler,
    )
}

pub const ENDPOINTS: &[Endpoint] = &[
    admin_view(
        USERS_PATH,
        "GET, HEAD, POST, OPTIONS",
        ViewMetadata {
            name: "Admin Users",
            description: "Lists the users (a page at a time, optionally those whose name contains\n`search`) or creates one. Superusers only.",
            post_fields: Some(&[
                field("username", true),
                field("password", true),
                field("is_superuser", false),
                field("is_active", false),
            ]),
        },
        |endpoint| any(move |state, request| dispatch_superuser(state, request, endpoint, users)),
    ),
    action(
        "/api/admin/users/deactivate/",
        "Admin User Deactivate",
        "Stops a user from logging in and ends every session of theirs at once.\nSuperusers only.",
        |endpoint| {
            any(move |state, request| dispatch_superuser(state, request, endpoint, deactivate))
        },
    ),
    action(
        "/api/admin/users/activate/",
        "Admin User Activate",
        "Lets a deactivated user log in again. Superusers only.",
        |endpoint| {
            any(move |state, request| dispatch_superuser(state, request, endpoint, activate))
        },
    ),
    action(
        "/api/admin/users/unlock/",
        "Admin User Unlock",
        "Clears a username's failed-login counters, so its logins are no longer\nthrottled. Superusers only.",
        |endpoint| any(move |state, request| dispatch_superuser(state, request, endpoint, unlock)),
    ),
    action(
        "/api/admin/users/revoke/",
        "Admin User Revoke",
        "Logs a user out everywhere: every refresh and sliding token is blacklisted\nand every token issued until now refused. Superusers only.",
        |endpoint| any(move |state, request| dispatch_superuser(state, request, endpoint, revoke)),
    ),
    admin_view(
        AUDIT_PATH,
        "GET, HEAD, OPTIONS",
        ViewMetadata {
            name: "Admin Audit",
            description: "Lists the audit trail, newest first, a page at a time (optionally one\nusername's events). Superusers only.",
            post_fields: None,
        },
        |endpoint| any(move |state, request| dispatch_superuser(state, request, endpoint, audit)),
    ),
];

/// `GET` lists a page of users, `POST` creates one.
async fn users(state: AppState, admin: User, parts: Parts, body: Body) -> Result<Answer, ApiError> {
    match parts.method {
        Method::GET | Method::HEAD => list_users(&state, &parts).await,
        Method::POST => {
            let data = read_data(&state, parts.headers.get(header::CONTENT_TYPE), body).await?;
            create_user(&state, &admin, &client(&parts), &data).await
        }
        ref other => Err(not_allowed(other)),
    }
}

async fn list_users(state: &AppState, parts: &Parts) -> Result<Answer, ApiError> {
    let query = Query::parse(state, parts);
    let limit = query
        .number("limit", 1)?
        .map_or(DEFAULT_LIMIT, |l| l.min(MAX_LIMIT));
    let offset = query.number("offset", 0)?.unwrap_or(0);
    let search = query.get("search").unwrap_or_default();
    let page = state.store.find_users(&search, limit, offset).await?;
    let next = (offset.saturating_add(limit) < page.count).then(|| {
        query.url(&[
            ("limit", Some(limit.to_string())),
            ("offset", Some(offset.saturating_add(limit).to_string())),
        ])
    });
    // DRF's previous page: none on the first, and no offset on the one before the second.
    let previous = (offset > 0).then(|| {
        let back = offset.saturating_sub(limit);
        query.url(&[
            ("limit", Some(limit.to_string())),
            ("offset", (back > 0).then(|| back.to_string())),
        ])
    });
    let results: Vec<Value> = page.users.iter().map(render_user).collect();
    Ok(Answer::private(json!({
        "count": page.count,
        "next": next,
        "previous": previous,
        "results": results,
    })))
}

async fn create_user(
    state: &AppState,
    admin: &User,
    client: &Client,
    data: &RequestData,
) -> Result<Answer, ApiError> {
    let mut errors = Map::new();
    let texts = match doorman_drf::char_fields(data, &["username", "password"]) {
        Ok(texts) => Some(texts),
        Err(DrfError::Invalid(found)) => {
            errors = found;
            None
        }
        Err(other) => return Err(other.into()),
    };
    let mut flag = |name: &str, default: bool| match doorman_drf::boolean_field(data, name, default)
    {
        Ok(value) => value,
        Err(messages) => {
            errors.insert(name.to_owned(), json!(messages));
            default
        }
    };
    let is_superuser = flag("is_superuser", false);
    let is_active = flag("is_active", true);
    let Some([username, password]) = texts.and_then(|t| <[String; 2]>::try_from(t).ok()) else {
        return Err(DrfError::Invalid(errors).into());
    };
    let password = SecretString::from(password);
    if let Err(AccountsError::Rejected(reason)) = accounts::validate_username(&username) {
        errors.insert("username".into(), json!([sentence(&reason)]));
    }
    if let Err(AccountsError::Rejected(reason)) = accounts::validate_password(&password) {
        errors.insert("password".into(), json!([sentence(&reason)]));
    }
    if !errors.is_empty() {
        return Err(DrfError::Invalid(errors).into());
    }
    let actor = superuser_actor(admin, client);
    let created = admin::create_user(
        &state.accounts,
        &username,
        password,
        is_superuser,
        is_active,
        actor,
    )
    .await;
    match created {
        Ok(_) => {}
        Err(AccountsError::Store(StoreError::UsernameTaken)) => {
            let mut errors = Map::new();
            errors.insert(
                "username".into(),
                json!(["A user with that username already exists."]),
            );
            return Err(DrfError::Invalid(errors).into());
        }
        Err(AccountsError::Rejected(reason)) => {
            return Err(ApiError::BadRequest(sentence(&reason)));
        }
        Err(other) => return Err(other.into()),
    }
    let user = summary(state, &username).await?;
    Ok(Answer::created(render_user(&user)))
}

async fn deactivate(
    state: AppState,
    admin: User,
    parts: Parts,
    body: Body,
) -> Result<Answer, ApiError> {
    let username = named_user(&state, &parts, body).await?;
    if username == admin.username {
        return Err(ApiError::BadRequest(
            "You can't deactivate your own account.".into(),
        ));
    }
    let client = client(&parts);
    let Some((user, revocation)) =
        admin::deactivate(&state.store, &username, superuser_actor(&admin, &client)).await?
    else {
        return Err(ApiError::NotFound);
    };
    // This instance refuses the user's access tokens at once; the others within
    // `user_cache_ttl`.
    state.users.revoked(user.id, revocation.tokens_valid_after);
    let mut body = render_user(&summary(&state, &username).await?);
    body["blacklisted"] = json!(revocation.blacklisted);
    Ok(Answer::private(body))
}

async fn activate(
    state: AppState,
    admin: User,
    parts: Parts,
    body: Body,
) -> Result<Answer, ApiError> {
    let username = named_user(&state, &parts, body).await?;
    let client = client(&parts);
    let actor = superuser_actor(&admin, &client);
    if admin::set_active(&state.store, &username, true, actor)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound);
    }
    Ok(Answer::private(render_user(
        &summary(&state, &username).await?,
    )))
}

/// As `doorman user unlock`: a name that is no user's but has counters is cleared too; the
/// answer's user fields are then those of nobody, so such a name is 404 after the clearing.
async fn unlock(
    state: AppState,
    admin: User,
    parts: Parts,
    body: Body,
) -> Result<Answer, ApiError> {
    let username = named_user(&state, &parts, body).await?;
    let client = client(&parts);
    let actor = superuser_actor(&admin, &client);
    let Some(unlocked) = admin::unlock(&state.throttle, &state.store, &username, actor).await?
    else {
        return Err(ApiError::NotFound);
    };
    if unlocked.user.is_none() {
        return Err(ApiError::NotFound);
    }
    let mut body = render_user(&summary(&state, &username).await?);
    body["cleared"] = json!(unlocked.cleared);
    Ok(Answer::private(body))
}

async fn revoke(
    state: AppState,
    admin: User,
    parts: Parts,
    body: Body,
) -> Result<Answer, ApiError> {
    let username = named_user(&state, &parts, body).await?;
    let client = client(&parts);
    let actor = superuser_actor(&admin, &client);
    let Some((id, revocation)) = admin::revoke(&state.store, &username, "admin", actor).await?
    else {
        return Err(ApiError::NotFound);
    };
    state.users.revoked(id, revocation.tokens_valid_after);
    let mut body = render_user(&summary(&state, &username).await?);
    body["blacklisted"] = json!(revocation.blacklisted);
    Ok(Answer::private(body))
}

/// `GET` a page of the audit trail, newest first, keyed by event id.
async fn audit(state: AppState, _: User, parts: Parts, _: Body) -> Result<Answer, ApiError> {
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        return Err(not_allowed(&parts.method));
    }
    let query = Query::parse(&state, &parts);
    let limit = query
        .number("limit", 1)?
        .map_or(DEFAULT_LIMIT, |l| l.min(MAX_LIMIT));
    let before = query.number("before", 1)?;
    let username = query.get("username");
    // One more than the page, to know whether there is a next one.
    let mut events = state
        .store
        .audit_page(username.as_deref(), before, limit.saturating_add(1))
        .await?;
    let more = events.len() as i64 > limit;
    events.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = match (more, events.last()) {
        (true, Some(last)) => Some(query.url(&[
            ("limit", Some(limit.to_string())),
            ("before", Some(last.id.to_string())),
        ])),
        _ => None,
    };
    let results: Vec<Value> = events.iter().map(render_event).collect();
    Ok(Answer::private(json!({"results": results, "next": next})))
}

/// The `username` field of an action's body, after the `POST` check.
async fn named_user(state: &AppState, parts: &Parts, body: Body) -> Result<String, ApiError> {
    if parts.method != Method::POST {
        return Err(not_allowed(&parts.method));
    }
    let data = read_data(state, parts.headers.get(header::CONTENT_TYPE), body).await?;
    let [username] = fields(&data, ["username"])?;
    Ok(username)
}

fn superuser_actor<'a>(admin: &'a User, client: &'a Client) -> Actor<'a> {
    Actor::Superuser {
        username: &admin.username,
        client,
    }
}

/// The user as answered, read after the change (404 when it went meanwhile).
async fn summary(state: &AppState, username: &str) -> Result<UserSummary, ApiError> {
    state
        .store
        .user_summary(username)
        .await?
        .ok_or(ApiError::NotFound)
}

fn render_user(user: &UserSummary) -> Value {
    json!({
        "id": user.id,
        "username": user.username,
        "is_active": user.is_active,
        "is_superuser": user.is_superuser,
        "is_staff": user.is_staff,
        "email": user.email,
        "last_login": user.last_login.map(rfc3339),
        "date_joined": rfc3339(user.date_joined),
    })
}

fn render_event(numbered: &NumberedAuditEvent) -> Value {
    let event = &numbered.event;
    // The detail is stored as JSON text; shown as the object it is.
    let detail = event
        .detail
        .as_deref()
        .map(|text| serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())));
    json!({
        "id": numbered.id,
        "at": rfc3339(event.at),
        "kind": event.kind,
        "username": event.username,
        "user_id": event.user_id,
        "client_addr": event.client_addr,
        "user_agent": event.user_agent,
        "detail": detail,
    })
}

/// An accounts rule's reason as a sentence, as DRF's messages are written.
fn sentence(reason: &str) -> String {
    let mut chars = reason.chars();
    let mut text: String = chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// The request's query parameters, and the URLs of other pages of the same list.
struct Query {
    path: String,
    /// `scheme://host` (and a path prefix, with `public_url`).
    origin: String,
    params: Vec<(String, String)>,
}

impl Query {
    /// The parameters of `parts`' query; the other pages' URLs start where the client reached
    /// doorman (`public_url`, or as the discovery document says it).
    fn parse(state: &AppState, parts: &Parts) -> Query {
        let params = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        let origin = match &state.config.tokens.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => super::wellknown::reached_at(
                &parts.headers,
                &parts.uri,
                &parts.extensions,
                state.config.server.tls.is_some(),
            ),
        };
        Query {
            path: parts.uri.path().to_owned(),
            origin,
            params,
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// A whole number at least `min`; a parameter that isn't one is a 400 naming it.
    fn number(&self, name: &str, min: i64) -> Result<Option<i64>, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        match text.trim().parse::<i64>() {
            Ok(n) if n >= min => Ok(Some(n)),
            _ => Err(ApiError::BadRequest(format!(
                "Invalid {name}: expected a whole number of at least {min}."
            ))),
        }
    }

    /// This list's URL with `changes` made to its parameters (`None` removes one).
    fn url(&self, changes: &[(&str, Option<String>)]) -> String {
        let mut params: Vec<(String, String)> = self
            .params
            .iter()
            .filter(|(k, _)| !changes.iter().any(|(name, _)| name == k))
            .cloned()
            .collect();
        for (name, value) in changes {
            if let Some(value) = value {
                params.push(((*name).to_owned(), value.clone()));
            }
        }
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        format!("{}{}?{query}", self.origin, self.path)
    }
}
