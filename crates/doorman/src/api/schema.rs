//! The OpenAPI 3.1 document of the running configuration, served at `/api/schema/` and printed
//! by `doorman openapi`. It is built from the endpoint table (`api::endpoints()`, handed in by
//! the router and the command) and the operation each path has here, so an endpoint the
//! configuration turns on is described, and one it turns off is not; a declared endpoint
//! without an operation here fails a unit test. The router builds it once at start-up.
//!
//! Hand-written `serde_json` values rather than a derive crate: doorman's handlers parse DRF
//! request data by hand (no typed bodies a derive could read), and what the document says
//! depends on settings (rotation, sliding tokens, header types, claim names) that a
//! compile-time description can't see.

use axum::Extension;
use axum::body::Body;
use axum::response::Response;
use axum::routing::any;
use http::{HeaderValue, Method, Request, StatusCode, header};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::answer::{Answer, finish};
use super::cookies::CookieUse;
use super::endpoint::{Endpoint, Listener, always};
use super::error::ApiError;
use crate::config::Config;

pub const SCHEMA_PATH: &str = "/api/schema/";

/// The media type of an OpenAPI document in JSON, as drf-spectacular names it.
pub const OPENAPI_JSON: &str = "application/vnd.oai.openapi+json";

pub const ENDPOINTS: &[Endpoint] = &[Endpoint {
    path: SCHEMA_PATH,
    allow: "GET, HEAD, OPTIONS",
    metadata: None,
    metrics_label: SCHEMA_PATH,
    listener: Listener::Api,
    compressed: true,
    budget: super::endpoint::Budget::General,
    enabled: always,
    handler: |endpoint| any(move |published, request| schema(published, request, endpoint)),
}];

/// The document as the API listener serves it, made once.
pub struct Published {
    body: Value,
    etag: String,
}

impl Published {
    pub fn new(body: Value) -> Published {
        let etag = etag(&body);
        Published { body, etag }
    }
}

/// The document describing those of `endpoints` that `config` serves on the API listener.
pub fn document<'a>(config: &Config, endpoints: impl Iterator<Item = &'a Endpoint>) -> Value {
    let mut paths = Map::new();
    for endpoint in endpoints.filter(|e| e.on_api(config) && documented(e)) {
        // Every declared endpoint has an operation (a unit test holds this).
        if let Some(item) = path_item(endpoint.path, config) {
            paths.insert(endpoint.path.to_owned(), item);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "doorman",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "JSON web token authentication speaking djangorestframework-simplejwt's HTTP contract. Token views take JSON, form or multipart bodies, as Django REST Framework parses them; every error is JSON.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(config),
            "securitySchemes": security_schemes(config),
        },
    })
}

/// Whether the document describes an endpoint: the JSON API's, not the web pages.
fn documented(endpoint: &Endpoint) -> bool {
    !endpoint.path.starts_with(super::pages::PREFIX)
}

/// The operations of one path, `None` for a path this module doesn't know.
fn path_item(path: &str, config: &Config) -> Option<Value> {
    let tokens = &config.tokens;
    // The login views answer 429 only while failed logins are throttled.
    let throttled_logins = config.accounts.login_throttle.enabled;
    let item = match path {
        "/api/token/" => json!({"post": cookie_aware(config, CookieUse::LoginSetting, token_view(
            "obtainTokenPair",
            "Takes a set of user credentials and returns an access and refresh JSON web token pair.",
            "Credentials",
            ok_tokens("TokenPair"),
            Some(obtain_refused()),
            throttled_logins,
        ))}),
        "/api/token/refresh/" => {
            json!({"post": cookie_aware(config, CookieUse::Refresh, token_view(
                "refreshToken",
                if tokens.rotate_refresh_tokens {
                    "Takes a refresh token and returns a new access token and, as refresh tokens rotate, a new refresh token."
                } else {
                    "Takes a refresh token and returns a new access token."
                },
                "RefreshRequest",
                ok_tokens("RefreshAnswer"),
                Some(token_refused("The token is refused (`token_not_valid`), or its user is gone or inactive.")),
                false,
            ))})
        }
        "/api/token/verify/" => json!({"post": token_view(
            "verifyToken",
            "Takes a token and indicates whether it is valid; a blacklisted token is a 400.",
            "TokenRequest",
            ok_empty(),
            Some(token_refused("The token is refused (`token_not_valid`).")),
            false,
        )}),
        "/api/token/blacklist/" => {
            json!({"post": cookie_aware(config, CookieUse::Blacklist, token_view(
                "blacklistToken",
                "Takes a refresh token and blacklists it.",
                "RefreshRequest",
                ok_empty(),
                Some(token_refused("The token is refused (`token_not_valid`), for one because it is blacklisted already.")),
                false,
            ))})
        }
        "/api/token/sliding/" => json!({"post": cookie_aware(config, CookieUse::Login, token_view(
            "obtainSlidingToken",
            "Takes a set of user credentials and returns a sliding token.",
            "Credentials",
            ok_tokens("SlidingToken"),
            Some(obtain_refused()),
            throttled_logins,
        ))}),
        "/api/token/sliding/refresh/" => json!({"post": token_view(
            "refreshSlidingToken",
            "Takes a sliding token and returns it refreshed, while its refresh period lasts.",
            "TokenRequest",
            ok_tokens("SlidingToken"),
            Some(token_refused("The token is refused (`token_not_valid`), or its user is gone or inactive.")),
            false,
        )}),
        "/api/token/inspect/" => json!({"post": token_view(
            "inspectToken",
            "Takes any token and tells what this server makes of it: a verdict with its reason, and the token's unverified header and claims.",
            "InspectRequest",
            json!({
                "description": "The inspection, whatever the token (answered with Cache-Control: no-store).",
                "content": json_content(reference("Inspection")),
            }),
            None,
            false,
        )}),
        "/api/token/revoke-all/" => json!({"post": protected(
            "revokeAllTokens",
            "Revokes every token of the user the access token names: log out everywhere.",
            ok_empty(),
            config,
            true,
        )}),
        "/api/account/sessions/" => json!({"get": protected(
            "listSessions",
            "The caller's sessions: each login whose refresh token is still live, most recently used first.",
            json!({"description": "The sessions (answered with Cache-Control: no-store).", "content": json_content(reference("Sessions"))}),
            config,
            false,
        )}),
        "/api/account/sessions/revoke/" => json!({"post": with_body(
            protected(
                "revokeSession",
                "Ends one of the caller's sessions: every refresh token of that login is blacklisted.",
                ok_empty(),
                config,
                true,
            ),
            "SessionRevokeRequest",
            &[("404", "No session of the caller's has this id (another user's included).")],
        )}),
        "/api/admin/users/" => json!({
            "get": admin(
                with_query(protected(
                    "adminListUsers",
                    "A page of the users, in id order (superusers only).",
                    json!({"description": "The page (answered with Cache-Control: no-store).", "content": json_content(reference("UserPage"))}),
                    config,
                    false,
                ), &[
                    ("search", "Only users whose name contains this text, ignoring case.", json!({"type": "string"})),
                    ("limit", "How many users a page has (default 50, at most 500).", json!({"type": "integer", "minimum": 1})),
                    ("offset", "How many users to skip.", json!({"type": "integer", "minimum": 0})),
                ]),
            ),
            "post": admin(with_body(
                created(protected(
                    "adminCreateUser",
                    "Creates a user (superusers only).",
                    json!({}),
                    config,
                    true,
                )),
                "UserCreateRequest",
                &[],
            )),
        }),
        "/api/admin/users/deactivate/" => json!({"post": admin_action(
            "adminDeactivateUser",
            "Deactivates a user and ends every session of theirs; `blacklisted` counts the tokens blacklisted. Deactivating oneself is a 400.",
            "UserBlacklisted",
            config,
        )}),
        "/api/admin/users/activate/" => json!({"post": admin_action(
            "adminActivateUser",
            "Lets a deactivated user log in again.",
            "User",
            config,
        )}),
        "/api/admin/users/unlock/" => json!({"post": admin_action(
            "adminUnlockUser",
            "Clears a username's failed-login counters; `cleared` counts them.",
            "UserCleared",
            config,
        )}),
        "/api/admin/users/revoke/" => json!({"post": admin_action(
            "adminRevokeUser",
            "Logs a user out everywhere; `blacklisted` counts the tokens blacklisted.",
            "UserBlacklisted",
            config,
        )}),
        "/api/admin/audit/" => json!({"get": admin(with_query(
            protected(
                "adminAuditEvents",
                "A page of the audit trail, newest first (superusers only).",
                json!({"description": "The page (answered with Cache-Control: no-store).", "content": json_content(reference("AuditPage"))}),
                config,
                false,
            ),
            &[
                ("username", "Only this username's events.", json!({"type": "string"})),
                ("limit", "How many events a page has (default 50, at most 500).", json!({"type": "integer", "minimum": 1})),
                ("before", "Only events older than this event id (the `next` link's).", json!({"type": "integer", "minimum": 1})),
            ],
        ))}),
        "/hello/" => json!({"get": protected(
            "hello",
            "An example protected view: needs a valid access token.",
            json!({"description": "The greeting.", "content": json_content(reference("Hello"))}),
            config,
            false,
        )}),
        "/.well-known/jwks.json" => json!({"get": plain_get(
            "jwks",
            "The public keys that verify doorman's tokens (RFC 7517).",
            reference("Jwks"),
        )}),
        "/.well-known/openid-configuration" => json!({"get": plain_get(
            "openidConfiguration",
            "The OpenID discovery document naming the JWKS and the token endpoint.",
            reference("Discovery"),
        )}),
        "/healthz" => json!({"get": plain_get(
            "healthz",
            "The process answers.",
            json!({"type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]}),
        )}),
        "/readyz" => json!({"get": readyz()}),
        "/metrics" => json!({"get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics.",
            "responses": {
                "200": {"description": "The metrics in Prometheus' text format.", "content": {"text/plain": {"schema": {"type": "string"}}}},
                "405": error_response("Another method than GET or HEAD."),
                "503": unavailable(),
            },
        }}),
        SCHEMA_PATH => json!({"get": schema_operation()}),
        _ => return None,
    };
    Some(item)
}

/// A simplejwt token view: `POST` with a DRF-parsed body, no authentication.
fn token_view(
    id: &str,
    summary: &str,
    body: &str,
    ok: Value,
    unauthorized: Option<Value>,
    login_throttled: bool,
) -> Value {
    let mut responses = Map::new();
    responses.insert("200".into(), ok);
    responses.insert(
        "400".into(),
        json!({
            "description": "The body is not valid JSON, not an object, or a field is missing, blank, null or not a string; a blacklisted token at verify.",
            "content": json_content(json!({"anyOf": [reference("FieldErrors"), reference("Error")]})),
        }),
    );
    if let Some(unauthorized) = unauthorized {
        responses.insert("401".into(), unauthorized);
    }
    responses.insert(
        "405".into(),
        error_response("Another method than POST or OPTIONS."),
    );
    responses.insert(
        "406".into(),
        error_response("The Accept header excludes JSON."),
    );
    responses.insert("413".into(), error_response("The body is too large."));
    responses.insert(
        "415".into(),
        error_response("The body's Content-Type is not JSON, a form or multipart."),
    );
    if login_throttled {
        responses.insert("429".into(), throttled());
    }
    responses.insert("503".into(), unavailable());
    let media = reference(body);
    json!({
        "operationId": id,
        "summary": summary,
        "tags": ["tokens"],
        "security": [],
        "requestBody": {
            "required": true,
            "content": {
                "application/json": {"schema": media},
                "application/x-www-form-urlencoded": {"schema": media},
                "multipart/form-data": {"schema": media},
            },
        },
        "responses": responses,
    })
}

/// A view behind the access token (`/hello/`, revoke-all): any of the header types, and the
/// access cookie when the cookie mode sets one (for a `POST`, from a trusted origin only).
fn protected(id: &str, summary: &str, ok: Value, config: &Config, post: bool) -> Value {
    let mut security: Vec<Value> = config
        .tokens
        .auth_header_types
        .iter()
        .map(|kind| json!({ kind.as_str(): [] }))
        .collect();
    let mut responses = json!({
        "200": ok,
        "401": {
            "description": "No credentials, a malformed Authorization header, a refused access token (`token_not_valid`), or a user gone or inactive.",
            "headers": {"WWW-Authenticate": www_authenticate()},
            "content": json_content(reference("AuthenticationFailed")),
        },
        "405": error_response("A method the view doesn't take (after authentication)."),
        "406": error_response("The Accept header excludes JSON."),
        "503": unavailable(),
    });
    if config.cookies.access_cookie().is_some() {
        security.push(json!({ ACCESS_COOKIE_SCHEME: [] }));
        if post {
            responses["403"] = csrf_refused();
            if let Some(responses) = responses.as_object_mut() {
                responses.sort_keys();
            }
        }
    }
    json!({
        "operationId": id,
        "summary": summary,
        "security": security,
        "responses": responses,
    })
}

/// In the cookie mode, a token view as the mode changes it: the refresh token may come from
/// its cookie (which then needs a trusted `Origin`), a login's `Origin` is checked when sent,
/// and the answers set or expire cookies. Unchanged with the mode off.
fn cookie_aware(config: &Config, use_: CookieUse, mut operation: Value) -> Value {
    if !config.cookies.enabled {
        return operation;
    }
    let note = match use_ {
        CookieUse::LoginSetting => {
            "In the cookie mode, a 200 also sets the refresh token as an HttpOnly cookie at the refresh and blacklist paths (and the access token at `/` when access cookies are on). A request that sends `Origin` must send a trusted one."
        }
        CookieUse::Login => {
            "In the cookie mode, a request that sends `Origin` must send a trusted one."
        }
        CookieUse::Refresh => {
            "In the cookie mode, without a `refresh` field the refresh token cookie is used, from a trusted `Origin` only; a 200 sets the new tokens as cookies, and a refused cookie is expired."
        }
        CookieUse::Blacklist => {
            "In the cookie mode, without a `refresh` field the refresh token cookie is used, from a trusted `Origin` only; a 200 expires the token cookies."
        }
        CookieUse::None => return operation,
    };
    operation["description"] = json!(note);
    operation["responses"]["403"] = csrf_refused();
    if matches!(use_, CookieUse::Refresh | CookieUse::Blacklist) {
        operation["security"] = json!([{}, { REFRESH_COOKIE_SCHEME: [] }]);
    }
    // The responses in their status order, as the others are listed.
    if let Some(responses) = operation["responses"].as_object_mut() {
        responses.sort_keys();
    }
    operation
}

/// A protected operation that takes a DRF-parsed body (`name` in the schemas), with the
/// answers a body adds (400, 413, 415) and `more` of its own.
fn with_body(mut operation: Value, name: &str, more: &[(&str, &str)]) -> Value {
    let media = reference(name);
    operation["requestBody"] = json!({
        "required": true,
        "content": {
            "application/json": {"schema": media},
            "application/x-www-form-urlencoded": {"schema": media},
            "multipart/form-data": {"schema": media},
        },
    });
    let responses = &mut operation["responses"];
    responses["400"] = json!({
        "description": "The body is not valid JSON, not an object, or a field is missing or invalid.",
        "content": json_content(json!({"anyOf": [reference("FieldErrors"), reference("Error")]})),
    });
    responses["413"] = error_response("The body is too large.");
    responses["415"] = error_response("The body's Content-Type is not JSON, a form or multipart.");
    for (status, description) in more {
        responses[*status] = error_response(description);
    }
    operation
}

fn csrf_refused() -> Value {
    error_response(
        "CSRF failed: a request the cookie authenticates came without an `Origin` or from an origin that is not trusted.",
    )
}

/// An admin operation: a valid access token of anyone but an active superuser is a 403.
fn admin(mut operation: Value) -> Value {
    operation["tags"] = json!(["admin"]);
    operation["responses"]["403"] = error_response(
        "The access token's user is not an active superuser (or, in the cookie mode, a POST the access cookie authenticates came without a trusted `Origin`).",
    );
    operation
}

/// An operation whose success is 201 with the user created.
fn created(mut operation: Value) -> Value {
    if let Some(responses) = operation["responses"].as_object_mut() {
        responses.remove("200");
        responses.insert(
            "201".into(),
            json!({"description": "The user created (answered with Cache-Control: no-store).", "content": json_content(reference("User"))}),
        );
    }
    operation
}

/// An admin action on the user named in the body, answering that user as `answer` shows it.
fn admin_action(id: &str, summary: &str, answer: &str, config: &Config) -> Value {
    let ok = json!({"description": "The user after the change (answered with Cache-Control: no-store).", "content": json_content(reference(answer))});
    admin(with_body(
        protected(id, summary, ok, config, true),
        "UsernameRequest",
        &[("404", "No user has that username.")],
    ))
}

/// A `GET` with these query parameters; a value that isn't a number where one is expected is
/// a 400.
fn with_query(mut operation: Value, params: &[(&str, &str, Value)]) -> Value {
    let params: Vec<Value> = params
        .iter()
        .map(|(name, description, schema)| {
            json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
        })
        .collect();
    operation["parameters"] = json!(params);
    operation["responses"]["400"] =
        error_response("A number parameter that isn't a whole number in its range.");
    operation
}

/// A `GET` that needs nothing and answers one JSON document.
fn plain_get(id: &str, summary: &str, schema: Value) -> Value {
    json!({
        "operationId": id,
        "summary": summary,
        "security": [],
        "responses": {
            "200": {"description": summary, "content": json_content(schema)},
            "405": error_response("Another method than GET, HEAD or OPTIONS."),
            "503": unavailable(),
        },
    })
}

fn readyz() -> Value {
    let status = json!({
        "type": "object",
        "properties": {
            "status": {"enum": ["ready", "unavailable"]},
            "database": {"enum": ["ok", "unreachable", "read-only"]},
            "migrations": {"type": "string"},
        },
        "required": ["status", "database"],
    });
    json!({
        "operationId": "readyz",
        "summary": "The database answers, takes writes and has every migration applied.",
        "security": [],
        "responses": {
            "200": {"description": "Ready.", "content": json_content(status.clone())},
            "405": error_response("Another method than GET or HEAD."),
            "503": {
                "description": "Not ready: the database is unreachable or read-only, or migrations are pending.",
                "headers": {"Retry-After": retry_after()},
                "content": json_content(status),
            },
        },
    })
}

fn schema_operation() -> Value {
    let document = json!({"schema": {"type": "object"}});
    json!({
        "operationId": "openapiSchema",
        "summary": "This document.",
        "security": [],
        "responses": {
            "200": {
                "description": "The OpenAPI document of this server's configuration.",
                "headers": {"ETag": {"schema": {"type": "string"}, "required": true}},
                "content": {OPENAPI_JSON: document, "application/json": document},
            },
            "304": {"description": "The document has not changed since the ETag given in If-None-Match."},
            "405": error_response("Another method than GET, HEAD or OPTIONS."),
            "406": error_response("The Accept header excludes JSON."),
            "503": unavailable(),
        },
    })
}

fn ok_tokens(schema: &str) -> Value {
    json!({
        "description": "The tokens (answered with Cache-Control: no-store).",
        "content": json_content(reference(schema)),
    })
}

fn ok_empty() -> Value {
    json!({
        "description": "Done.",
        "content": json_content(json!({"type": "object", "additionalProperties": false})),
    })
}

fn obtain_refused() -> Value {
    json!({
        "description": "No active account found with the given credentials.",
        "headers": {"WWW-Authenticate": www_authenticate()},
        "content": json_content(reference("Error")),
    })
}

fn token_refused(description: &str) -> Value {
    json!({
        "description": description,
        "headers": {"WWW-Authenticate": www_authenticate()},
        "content": json_content(json!({"anyOf": [reference("TokenError"), reference("Error")]})),
    })
}

fn throttled() -> Value {
    json!({
        "description": "Too many failed logins for this username or from this address.",
        "headers": {"Retry-After": retry_after()},
        "content": json_content(reference("Error")),
    })
}

fn unavailable() -> Value {
    json!({
        "description": "Overloaded, past the request deadline, or the database can't be reached in time.",
        "content": json_content(reference("Error")),
    })
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": json_content(reference("Error"))})
}

fn www_authenticate() -> Value {
    json!({
        "description": "The first of the accepted header types, as `<type> realm=\"api\"`.",
        "required": true,
        "schema": {"type": "string"},
    })
}

fn retry_after() -> Value {
    json!({"description": "Seconds to wait.", "required": true, "schema": {"type": "string", "pattern": "^[0-9]+$"}})
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A DRF `CharField` as the views read it: trimmed, not blank, no NUL.
fn char_field(description: &str) -> Value {
    json!({
        "type": "string",
        "description": description,
        "pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$",
        "maxLength": 4096,
    })
}

fn jwt(description: &str) -> Value {
    json!({"type": "string", "description": description, "contentMediaType": "application/jwt"})
}

fn schemas(config: &Config) -> Value {
    let rules = &config.tokens.rules;
    let user_claim = &rules.user_id_claim;
    let access = jwt(&format!(
        "An access token; its `{user_claim}` claim names the user. Send it as `Authorization: {} <token>`.",
        config
            .tokens
            .auth_header_types
            .first()
            .map_or("Bearer", String::as_str)
    ));
    let refresh = jwt(&format!(
        "A refresh token; its `{user_claim}` claim names the user."
    ));
    let (refresh_answer, refresh_required) = if config.tokens.rotate_refresh_tokens {
        (
            json!({"access": access, "refresh": refresh}),
            json!(["access", "refresh"]),
        )
    } else {
        (json!({"access": access}), json!(["access"]))
    };
    json!({
        "Credentials": {
            "type": "object",
            "properties": {"username": char_field("The username (case-sensitive)."), "password": char_field("The password.")},
            "required": ["username", "password"],
        },
        "RefreshRequest": refresh_request(config),
        "TokenRequest": {
            "type": "object",
            "properties": {"token": char_field("A token.")},
            "required": ["token"],
        },
        "InspectRequest": {
            "type": "object",
            "properties": {
                "token": char_field("Any token."),
                "expect": {"enum": ["access", "refresh", "sliding"], "description": "The type the token should be; any type doorman issues when absent."},
            },
            "required": ["token"],
        },
        "Inspection": {
            "type": "object",
            "properties": {
                "verdict": {"enum": crate::accounts::inspection::Verdict::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>()},
                "reason": {"type": "string", "description": "One sentence naming the cause."},
                "header": {"type": ["object", "null"], "description": "The JOSE header as written, unverified; null when it is not a base64url JSON object."},
                "claims": {"type": ["object", "null"], "description": "The payload as written, unverified; null when it is not a base64url JSON object."},
                "token_type": {"enum": ["access", "refresh", "sliding", null]},
            },
            "required": ["verdict", "reason", "header", "claims", "token_type"],
            "additionalProperties": false,
        },
        "Sessions": {
            "type": "object",
            "properties": {"sessions": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "description": "The session's id: the id (jti) of its login's refresh token."},
                    "token_id": {"type": "string", "description": "The id (jti) of its live refresh token."},
                    "started_at": {"type": ["string", "null"], "format": "date-time"},
                    "last_used_at": {"type": ["string", "null"], "format": "date-time", "description": "When its newest refresh token was issued (its login, or its last rotation)."},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "client_addr": {"type": ["string", "null"]},
                    "user_agent": {"type": ["string", "null"]},
                },
                "required": ["id", "token_id", "started_at", "last_used_at", "expires_at", "client_addr", "user_agent"],
                "additionalProperties": false,
            }}},
            "required": ["sessions"],
            "additionalProperties": false,
        },
        "SessionRevokeRequest": {
            "type": "object",
            "properties": {"id": char_field("The session's id.")},
            "required": ["id"],
        },
        "User": user_schema(&[]),
        "UserBlacklisted": user_schema(&[("blacklisted", "Refresh and sliding tokens blacklisted.")]),
        "UserCleared": user_schema(&[("cleared", "Failed-login counters cleared.")]),
        "UserPage": {
            "type": "object",
            "properties": {
                "count": {"type": "integer", "minimum": 0},
                "next": {"type": ["string", "null"]},
                "previous": {"type": ["string", "null"]},
                "results": {"type": "array", "items": reference("User")},
            },
            "required": ["count", "next", "previous", "results"],
            "additionalProperties": false,
        },
        "UserCreateRequest": {
            "type": "object",
            "properties": {
                "username": char_field("1 to 150 letters, digits and @/./+/-/_."),
                "password": char_field("At least 8 characters."),
                "is_superuser": {"type": "boolean", "default": false},
                "is_active": {"type": "boolean", "default": true},
            },
            "required": ["username", "password"],
        },
        "UsernameRequest": {
            "type": "object",
            "properties": {"username": char_field("The user's name.")},
            "required": ["username"],
        },
        "AuditPage": {
            "type": "object",
            "properties": {
                "results": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "at": {"type": "string", "format": "date-time"},
                        "kind": {"type": "string"},
                        "username": {"type": ["string", "null"]},
                        "user_id": {"type": ["integer", "null"]},
                        "client_addr": {"type": ["string", "null"]},
                        "user_agent": {"type": ["string", "null"]},
                        "detail": {"description": "What the event names, as a JSON object; null when nothing."},
                    },
                    "required": ["id", "at", "kind", "username", "user_id", "client_addr", "user_agent", "detail"],
                    "additionalProperties": false,
                }},
                "next": {"type": ["string", "null"]},
            },
            "required": ["results", "next"],
            "additionalProperties": false,
        },
        "TokenPair": {
            "type": "object",
            "properties": {"refresh": refresh, "access": access},
            "required": ["refresh", "access"],
            "additionalProperties": false,
        },
        "RefreshAnswer": {
            "type": "object",
            "properties": refresh_answer,
            "required": refresh_required,
            "additionalProperties": false,
        },
        "SlidingToken": {
            "type": "object",
            "properties": {"token": jwt(&format!("A sliding token; its `{user_claim}` claim names the user."))},
            "required": ["token"],
            "additionalProperties": false,
        },
        "Hello": {
            "type": "object",
            "properties": {"message": {"type": "string"}},
            "required": ["message"],
        },
        "Error": {
            "type": "object",
            "description": "DRF's error shape.",
            "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
            "required": ["detail"],
        },
        "FieldErrors": {
            "type": "object",
            "description": "A list of messages per field, or under `non_field_errors`.",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "minProperties": 1,
        },
        "TokenError": {
            "type": "object",
            "description": "A token a token view refuses.",
            "properties": {"detail": {"type": "string"}, "code": {"const": "token_not_valid"}},
            "required": ["detail", "code"],
        },
        "TokenNotValid": {
            "type": "object",
            "description": "An access token a protected view refuses, with the reason per token class.",
            "properties": {
                "detail": {"type": "string"},
                "code": {"const": "token_not_valid"},
                "messages": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "token_class": {"type": "string"},
                        "token_type": {"type": "string"},
                        "message": {"type": "string"},
                    },
                    "required": ["token_class", "token_type", "message"],
                }},
            },
            "required": ["detail", "code"],
        },
        "AuthenticationFailed": {
            "description": "Why a protected view refused the request.",
            "anyOf": [
                reference("TokenNotValid"),
                {
                    "type": "object",
                    "properties": {
                        "detail": {"type": "string"},
                        "code": {"enum": ["bad_authorization_header", "user_not_found", "user_inactive"]},
                    },
                    "required": ["detail"],
                },
            ],
        },
        "Jwks": {
            "type": "object",
            "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
            "required": ["keys"],
        },
        "Discovery": {
            "type": "object",
            "properties": {
                "issuer": {"type": "string"},
                "jwks_uri": {"type": "string"},
                "token_endpoint": {"type": "string"},
            },
            "required": ["issuer", "jwks_uri", "token_endpoint"],
        },
    })
}

/// The body refresh and blacklist take: the token, which the cookie mode's cookie stands in
/// for when it is left out.
fn refresh_request(config: &Config) -> Value {
    if config.cookies.enabled {
        json!({
            "type": "object",
            "properties": {"refresh": char_field("A refresh token; without it, the refresh token cookie.")},
        })
    } else {
        json!({
            "type": "object",
            "properties": {"refresh": char_field("A refresh token.")},
            "required": ["refresh"],
        })
    }
}

/// The cookie mode's security schemes' names.
const REFRESH_COOKIE_SCHEME: &str = "RefreshTokenCookie";
const ACCESS_COOKIE_SCHEME: &str = "AccessTokenCookie";

/// A user as the admin API answers one, with `extra` integer members.
fn user_schema(extra: &[(&str, &str)]) -> Value {
    let mut properties = json!({
        "id": {"type": "integer"},
        "username": {"type": "string"},
        "is_active": {"type": "boolean"},
        "is_superuser": {"type": "boolean"},
        "is_staff": {"type": "boolean"},
        "email": {"type": "string"},
        "last_login": {"type": ["string", "null"], "format": "date-time"},
        "date_joined": {"type": "string", "format": "date-time"},
    });
    let mut required = vec![
        "id",
        "username",
        "is_active",
        "is_superuser",
        "is_staff",
        "email",
        "last_login",
        "date_joined",
    ];
    for (name, description) in extra {
        properties[*name] = json!({"type": "integer", "minimum": 0, "description": description});
        required.push(name);
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn security_schemes(config: &Config) -> Value {
    let mut schemes = Map::new();
    let cookies = &config.cookies;
    if cookies.enabled {
        schemes.insert(
            REFRESH_COOKIE_SCHEME.into(),
            json!({"type": "apiKey", "in": "cookie", "name": cookies.refresh_name,
                   "description": "The refresh token as the login set it: an HttpOnly cookie sent to the refresh and blacklist endpoints only."}),
        );
    }
    if let Some(name) = cookies.access_cookie() {
        schemes.insert(
            ACCESS_COOKIE_SCHEME.into(),
            json!({"type": "apiKey", "in": "cookie", "name": name,
                   "description": "The access token as the login set it: an HttpOnly cookie, used when no Authorization header is sent."}),
        );
    }
    for kind in &config.tokens.auth_header_types {
        let scheme = if kind == "Bearer" {
            json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "An access token: `Authorization: Bearer <access>`."})
        } else {
            json!({"type": "apiKey", "in": "header", "name": "Authorization",
                   "description": format!("An access token: `Authorization: {kind} <access>`.")})
        };
        schemes.insert(kind.clone(), scheme);
    }
    Value::Object(schemes)
}

/// Which JSON media type the client gets: drf-spectacular's own first, as DRF picks the
/// first renderer for `*/*`; `application/json` when that is what the client names.
fn media_type(request: &Request<Body>) -> Result<&'static str, ApiError> {
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let named = |wanted: &str| {
        accept.split(',').any(|range| {
            range
                .split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(wanted))
        })
    };
    if named(OPENAPI_JSON) {
        return Ok(OPENAPI_JSON);
    }
    super::answer::negotiate(request.headers(), request.uri().query())?;
    Ok(if named("application/json") {
        "application/json"
    } else {
        OPENAPI_JSON
    })
}

/// A strong validator for the document: a digest of its compact text.
fn etag(document: &Value) -> String {
    let digest = Sha256::digest(document.to_string().as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

async fn schema(
    Extension(published): Extension<std::sync::Arc<Published>>,
    request: Request<Body>,
    endpoint: &'static Endpoint,
) -> Response {
    let media = match media_type(&request) {
        Ok(media) => media,
        Err(e) => return finish(Err(e), None, endpoint.allow, ""),
    };
    if !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        let error = ApiError::MethodNotAllowed(request.method().as_str().to_owned());
        return finish(Err(error), None, endpoint.allow, "");
    }
    let tag = published.etag.as_str();
    let unchanged = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut response = if unchanged {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let answer = Answer::plain(published.body.clone());
        let mut response = finish(Ok(answer), None, endpoint.allow, "");
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
        response
    };
    if let Ok(value) = HeaderValue::from_str(tag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::Overrides;

    fn document(config: &Config) -> Value {
        super::document(config, crate::api::endpoints())
    }

    fn config(settings: &[(&str, &str)]) -> Config {
        let env: BTreeMap<String, String> = settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::load_from(None, &env, &Overrides::default()).unwrap()
    }

    #[test]
    fn every_declared_endpoint_has_an_operation() {
        let config = config(&[]);
        for endpoint in crate::api::endpoints().filter(|e| documented(e)) {
            assert!(
                path_item(endpoint.path, &config).is_some(),
                "{} has no operation in the OpenAPI document",
                endpoint.path
            );
        }
        let document = document(&config);
        let paths = document["paths"].as_object().unwrap();
        let served: Vec<&str> = crate::api::endpoints()
            .filter(|e| e.on_api(&config) && documented(e))
            .map(|e| e.path)
            .collect();
        assert_eq!(paths.len(), served.len());
        for path in served {
            assert!(paths.contains_key(path), "{path} missing");
        }
    }

    #[test]
    fn the_document_follows_the_configuration() {
        let default = document(&config(&[]));
        assert!(default["paths"]["/api/token/sliding/"].is_object());
        assert!(default["paths"]["/api/token/"]["post"]["responses"]["429"].is_object());
        assert!(default["paths"]["/api/token/refresh/"]["post"]["responses"]["429"].is_null());
        assert_eq!(
            default["components"]["schemas"]["RefreshAnswer"]["required"],
            json!(["access"])
        );
        assert_eq!(
            default["paths"]["/hello/"]["get"]["security"],
            json!([{"Bearer": []}])
        );
        assert_eq!(
            default["components"]["securitySchemes"]["Bearer"]["scheme"],
            "bearer"
        );

        let changed = document(&config(&[
            ("DOORMAN_SLIDING_TOKENS", "false"),
            ("DOORMAN_ROTATE_REFRESH_TOKENS", "true"),
            ("DOORMAN_AUTH_HEADER_TYPES", "JWT,Bearer"),
            ("DOORMAN_USER_ID_CLAIM", "uid"),
            ("DOORMAN_ADMIN_BIND", "127.0.0.1:0"),
            ("DOORMAN_LOGIN_THROTTLE", "false"),
        ]));
        assert!(changed["paths"]["/api/token/"]["post"]["responses"]["429"].is_null());
        assert!(changed["paths"].get("/api/token/sliding/").is_none());
        assert!(
            changed["paths"]
                .get("/api/token/sliding/refresh/")
                .is_none()
        );
        // The metrics move to the admin listener, which this document doesn't describe.
        assert!(changed["paths"].get("/metrics").is_none());
        assert_eq!(
            changed["components"]["schemas"]["RefreshAnswer"]["required"],
            json!(["access", "refresh"])
        );
        assert_eq!(
            changed["paths"]["/hello/"]["get"]["security"],
            json!([{"JWT": []}, {"Bearer": []}])
        );
        assert_eq!(
            changed["components"]["securitySchemes"]["JWT"]["type"],
            "apiKey"
        );
        let access =
            changed["components"]["schemas"]["TokenPair"]["properties"]["access"]["description"]
                .as_str()
                .unwrap();
        assert!(access.contains("`uid` claim"), "{access}");
        assert!(access.contains("Authorization: JWT <token>"), "{access}");
    }

    #[test]
    fn the_cookie_mode_is_described_only_when_on() {
        let off = document(&config(&[]));
        let schemes = off["components"]["securitySchemes"].as_object().unwrap();
        assert_eq!(schemes.keys().collect::<Vec<_>>(), ["Bearer"]);
        assert_eq!(
            off["components"]["schemas"]["RefreshRequest"]["required"],
            json!(["refresh"])
        );
        assert_eq!(
            off["paths"]["/api/token/refresh/"]["post"]["security"],
            json!([])
        );
        assert!(off["paths"]["/api/token/refresh/"]["post"]["responses"]["403"].is_null());

        let on = document(&config(&[
            ("DOORMAN_TOKEN_COOKIES", "true"),
            ("DOORMAN_TOKEN_COOKIE_ACCESS", "true"),
            ("DOORMAN_TOKEN_COOKIE_REFRESH_NAME", "rt"),
        ]));
        let schemes = &on["components"]["securitySchemes"];
        assert_eq!(
            schemes["RefreshTokenCookie"],
            json!({"type": "apiKey", "in": "cookie", "name": "rt",
                   "description": schemes["RefreshTokenCookie"]["description"]})
        );
        assert_eq!(schemes["AccessTokenCookie"]["name"], "doorman_access");
        assert!(
            on["components"]["schemas"]["RefreshRequest"]
                .get("required")
                .is_none()
        );
        for path in ["/api/token/refresh/", "/api/token/blacklist/"] {
            let operation = &on["paths"][path]["post"];
            assert_eq!(
                operation["security"],
                json!([{}, {"RefreshTokenCookie": []}]),
                "{path}"
            );
            let codes: Vec<&String> = operation["responses"].as_object().unwrap().keys().collect();
            assert!(
                codes.is_sorted() && codes.contains(&&"403".to_owned()),
                "{codes:?}"
            );
        }
        assert!(on["paths"]["/api/token/"]["post"]["responses"]["403"].is_object());
        assert!(on["paths"]["/api/token/verify/"]["post"]["responses"]["403"].is_null());
        assert_eq!(
            on["paths"]["/hello/"]["get"]["security"],
            json!([{"Bearer": []}, {"AccessTokenCookie": []}])
        );
        assert!(on["paths"]["/hello/"]["get"]["responses"]["403"].is_null());
        assert!(on["paths"]["/api/token/revoke-all/"]["post"]["responses"]["403"].is_object());

        // Refresh cookies only: no access cookie scheme.
        let refresh_only = document(&config(&[("DOORMAN_TOKEN_COOKIES", "true")]));
        assert!(
            refresh_only["components"]["securitySchemes"]
                .get("AccessTokenCookie")
                .is_none()
        );
        assert_eq!(
            refresh_only["paths"]["/hello/"]["get"]["security"],
            json!([{"Bearer": []}])
        );
    }

    #[test]
    fn the_etag_changes_with_the_document() {
        let a = etag(&document(&config(&[])));
        let b = etag(&document(&config(&[("DOORMAN_SLIDING_TOKENS", "false")])));
        assert_ne!(a, b);
        assert_eq!(a, etag(&document(&config(&[]))));
        assert_eq!(a.len(), 34);
    }
}
