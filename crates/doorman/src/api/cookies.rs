//! The cookie mode (`token_cookies`) for browser apps: the token views also hand out the
//! refresh token (and, with `token_cookie_access`, the access token) as HttpOnly cookies,
//! out of reach of scripts, and take the refresh token from its cookie when the body has none.
//! The JSON bodies are never changed: the mode adds headers, and with it off nothing here
//! touches a request or an answer.
//!
//! The refresh cookie is set twice, at `Path=/api/token/refresh/` and at
//! `Path=/api/token/blacklist/`, so that the browser sends it to the two endpoints that take it
//! and to no other URL (a path attribute can't name two paths, and `/api/token/` would also
//! send it to login, verify and whatever shares the prefix). A request a cookie authenticates
//! must pass the origin check of [`super::csrf`].

use axum_extra::extract::cookie::Cookie;
use doorman_drf::RequestData;
use doorman_guard::Authenticated;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, header};
use serde_json::Value;

use super::answer::Answer;
use super::cookie_settings::CookiesConfig;
use super::csrf::{self, Origin};
use super::error::ApiError;
use crate::config::Config;
use crate::serve::ClientUsedHttps;
use crate::state::AppState;

/// The paths the refresh cookie is set at: the endpoints that take it (refresh, blacklist), and
/// only them. The token views' declarations hold a test that they are these.
pub const REFRESH_COOKIE_PATHS: [&str; 2] = ["/api/token/refresh/", "/api/token/blacklist/"];

/// What a token view does in the cookie mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieUse {
    /// Nothing (verify, the sliding refresh).
    None,
    /// A login that sets no cookie (the sliding one): its `Origin`, when sent, is checked.
    Login,
    /// The pair's login: its `Origin` checked when sent, the tokens of a 200 set as cookies.
    LoginSetting,
    /// Refresh: the token from the cookie when the body has none; a 200's tokens set as
    /// cookies; the cookie expired when its token is refused.
    Refresh,
    /// Blacklist (log out): the token from the cookie when the body has none; every cookie
    /// expired after a 200, the refresh cookie when its token is refused.
    Blacklist,
}

/// How a token view's request stands in the cookie mode, once its body is read.
pub struct CookieRequest {
    pub data: RequestData,
    /// The refresh token came from the cookie, not from the body.
    pub from_cookie: bool,
}

/// Fills the refresh field from the cookie when the mode is on, the view takes it, and the
/// body lacks it (absent or blank: a field given wins), then applies the origin check the
/// request needs: one the cookie authenticates always, a login when it says its `Origin`.
pub fn take_request(
    state: &AppState,
    parts: &Parts,
    use_: CookieUse,
    data: RequestData,
) -> Result<CookieRequest, ApiError> {
    let cookies = &state.config.cookies;
    let untouched = |data| CookieRequest {
        data,
        from_cookie: false,
    };
    if !cookies.enabled {
        return Ok(untouched(data));
    }
    match use_ {
        CookieUse::Refresh | CookieUse::Blacklist if data.lacks("refresh") => {
            match read(&parts.headers, &cookies.refresh_name) {
                Some(token) => {
                    check_origin(state, parts)?;
                    Ok(CookieRequest {
                        data: data.with_text("refresh", token),
                        from_cookie: true,
                    })
                }
                None => Ok(untouched(data)),
            }
        }
        CookieUse::Login | CookieUse::LoginSetting
            if parts.headers.contains_key(header::ORIGIN) =>
        {
            check_origin(state, parts)?;
            Ok(untouched(data))
        }
        _ => Ok(untouched(data)),
    }
}

/// The `Set-Cookie` values a token view's outcome calls for (none with the mode off).
pub fn set_cookies(
    config: &Config,
    use_: CookieUse,
    from_cookie: bool,
    result: &Result<Answer, ApiError>,
) -> Vec<HeaderValue> {
    let cookies = &config.cookies;
    if !cookies.enabled {
        return Vec::new();
    }
    let mut set = Vec::new();
    match (use_, result) {
        (CookieUse::LoginSetting | CookieUse::Refresh, Ok(answer)) => {
            if let Some(refresh) = answer.body.get("refresh").and_then(Value::as_str) {
                let lifetime = config.tokens.rules.refresh_token_lifetime;
                for path in REFRESH_COOKIE_PATHS {
                    set.push(cookie(
                        cookies,
                        &cookies.refresh_name,
                        refresh,
                        path,
                        lifetime,
                    ));
                }
            }
            if let (true, Some(access)) = (
                cookies.access,
                answer.body.get("access").and_then(Value::as_str),
            ) {
                let lifetime = config.tokens.rules.access_token_lifetime;
                set.push(cookie(cookies, &cookies.access_name, access, "/", lifetime));
            }
        }
        (CookieUse::Blacklist, Ok(_)) => {
            set.extend(expired_refresh(cookies));
            set.push(expired(cookies, &cookies.access_name, "/"));
        }
        // The browser would go on sending a token that can only be refused.
        (CookieUse::Refresh | CookieUse::Blacklist, Err(ApiError::Token(_))) if from_cookie => {
            set.extend(expired_refresh(cookies));
        }
        _ => {}
    }
    set.iter()
        .filter_map(|cookie| {
            HeaderValue::from_str(&cookie.to_string())
                .inspect_err(|e| tracing::error!(error = %e, "a token cookie could not be set"))
                .ok()
        })
        .collect()
}

/// The caller of a protected view (`/hello/`, revoke-all): from `Authorization` as always, or,
/// with `token_cookie_access` on and no `Authorization` header at all, from the access cookie.
/// A header, when sent, is the only thing looked at, so a bearer request costs one header
/// lookup more than before. A method that changes state, authenticated by the cookie, must
/// pass the origin check (as DRF checks CSRF during session authentication, before the
/// method).
pub async fn caller(state: &AppState, parts: &Parts) -> Result<Authenticated, ApiError> {
    let cookie = match state.config.cookies.access_cookie() {
        Some(name) if !parts.headers.contains_key(header::AUTHORIZATION) => {
            read(&parts.headers, name)
        }
        _ => None,
    };
    let Some(token) = cookie else {
        return Ok(state.guard.authenticate(&parts.headers).await?);
    };
    let caller = state.guard.authenticate_token(&token).await?;
    if !is_safe(&parts.method) {
        check_origin(state, parts)?;
    }
    Ok(caller)
}

/// The origin check of a request a cookie authenticates (or of a login in the mode): its
/// `Origin` must be doorman's own origin as the client reached it (https when doorman serves
/// TLS or a trusted proxy said the client used it), one of `cors_allowed_origins` (not `*`) or
/// one of `csrf_trusted_origins`.
fn check_origin(state: &AppState, parts: &Parts) -> Result<(), ApiError> {
    let config = &state.config;
    let https = config.server.tls.is_some() || parts.extensions.get::<ClientUsedHttps>().is_some();
    let cors = config
        .server
        .cors_allowed_origins
        .iter()
        .filter_map(|o| Origin::parse(o));
    let trusted = cors.chain(config.cookies.csrf_trusted_origins.iter().cloned());
    csrf::check(&parts.headers, parts.uri.authority(), https, trusted).map_err(ApiError::CsrfFailed)
}

/// RFC 9110's safe methods, which CSRF checks let through.
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The first non-empty cookie of this name the request carries. A browser sends the cookie of
/// the longest matching path first.
fn read(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name && !c.value().is_empty())
        .map(|c| c.value().to_owned())
}

/// A token cookie: HttpOnly, with the configured `Secure`, `SameSite` and `Domain`.
fn cookie(
    config: &CookiesConfig,
    name: &str,
    value: &str,
    path: &'static str,
    lifetime: std::time::Duration,
) -> Cookie<'static> {
    let max_age = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
    let mut cookie = Cookie::build((name.to_owned(), value.to_owned()))
        .path(path)
        .http_only(true)
        .secure(config.secure)
        .same_site(config.same_site)
        .max_age(time::Duration::seconds(max_age))
        .build();
    if let Some(domain) = &config.domain {
        cookie.set_domain(domain.clone());
    }
    cookie
}

/// The cookie of this name at this path, expired (`Max-Age=0`, and an `Expires` in the past
/// for the browsers that only read that).
fn expired(config: &CookiesConfig, name: &str, path: &'static str) -> Cookie<'static> {
    let mut cookie = cookie(config, name, "", path, std::time::Duration::ZERO);
    cookie.make_removal();
    cookie
}

fn expired_refresh(config: &CookiesConfig) -> [Cookie<'static>; 2] {
    REFRESH_COOKIE_PATHS.map(|path| expired(config, &config.refresh_name, path))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_read_by_its_exact_name_first_one_first() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("other=1; doorman_refresh=; doorman_refresh=a.b.c"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("doorman_refresh=second; Doorman_access=x"),
        );
        assert_eq!(read(&headers, "doorman_refresh").as_deref(), Some("a.b.c"));
        assert_eq!(read(&headers, "doorman_access"), None);
        assert_eq!(read(&headers, "other").as_deref(), Some("1"));
        assert_eq!(read(&HeaderMap::new(), "doorman_refresh"), None);
    }

    #[test]
    fn unsafe_methods_are_those_that_may_change_state() {
        for safe in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(is_safe(&safe));
        }
        for not in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(!is_safe(&not));
        }
        assert!(!is_safe(&Method::from_bytes(b"PURGE").unwrap()));
    }
}
