//! HTTP handlers: thin translations between DRF-shaped requests and the accounts and store
//! below. Each view negotiates, parses, calls one thing, and renders.

pub mod admin;
pub mod answer;
pub mod caller;
pub mod cookie_settings;
pub mod cookies;
pub mod csrf;
pub mod endpoint;
pub mod error;
pub mod health;
pub mod hello;
pub mod inspector;
pub mod page_settings;
pub mod pages;
pub mod render;
pub mod revocation;
pub mod schema;
pub mod sessions;
pub mod token_settings;
pub mod tokens;
pub mod wellknown;

pub use answer::{Answer, finish, negotiate, read_body, render};
pub use endpoint::Endpoint;
pub use error::ApiError;

/// Every endpoint doorman has, each module's declarations in turn. `/hello/` comes first: the
/// access log finds a request's route label by walking this order.
const ENDPOINTS: [&[Endpoint]; 10] = [
    hello::ENDPOINTS,
    wellknown::ENDPOINTS,
    health::ENDPOINTS,
    tokens::ENDPOINTS,
    inspector::ENDPOINTS,
    sessions::ENDPOINTS,
    admin::ENDPOINTS,
    // After the views that need the caller's token: a run through every endpoint in order
    // (schemathesis') would otherwise log its caller out before reaching them.
    revocation::ENDPOINTS,
    schema::ENDPOINTS,
    pages::ENDPOINTS,
];

/// Every endpoint, whatever the configuration turns on.
pub fn endpoints() -> impl Iterator<Item = &'static Endpoint> {
    ENDPOINTS.iter().flat_map(|module| module.iter())
}

/// The path prefixes that belong to doorman's endpoints (`/api/`, `/hello/`, ...), which
/// static files can't be served under.
pub fn reserved_prefixes() -> Vec<String> {
    let mut prefixes: Vec<String> = endpoints().map(Endpoint::prefix).collect();
    prefixes.sort();
    prefixes.dedup();
    prefixes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_drf_view_shows_the_reference_apps_options() {
        // Recorded from the reference app (simplejwt 5.5.1, DRF 3.18.3); the sliding views,
        // which it doesn't route, through APIRequestFactory in its Django shell.
        let cases = [
            (
                "/api/token/",
                r#"{"name":"Token Obtain Pair","description":"Takes a set of user credentials and returns an access and refresh JSON web\ntoken pair to prove the authentication of those credentials.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"username":{"type":"string","required":true,"read_only":false,"label":"Username"},"password":{"type":"string","required":true,"read_only":false,"label":"Password"}}}}"#,
            ),
            (
                "/api/token/refresh/",
                r#"{"name":"Token Refresh","description":"Takes a refresh type JSON web token and returns an access type JSON web\ntoken if the refresh token is valid.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"refresh":{"type":"string","required":true,"read_only":false,"label":"Refresh"},"access":{"type":"string","required":false,"read_only":true,"label":"Access"}}}}"#,
            ),
            (
                "/api/token/verify/",
                r#"{"name":"Token Verify","description":"Takes a token and indicates if it is valid.  This view provides no\ninformation about a token's fitness for a particular use.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"token":{"type":"string","required":true,"read_only":false,"label":"Token"}}}}"#,
            ),
            (
                "/api/token/blacklist/",
                r#"{"name":"Token Blacklist","description":"Takes a token and blacklists it. Must be used with the\n`rest_framework_simplejwt.token_blacklist` app installed.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"refresh":{"type":"string","required":true,"read_only":false,"label":"Refresh"}}}}"#,
            ),
            (
                "/api/token/sliding/",
                r#"{"name":"Token Obtain Sliding","description":"Takes a set of user credentials and returns a sliding JSON web token to\nprove the authentication of those credentials.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"username":{"type":"string","required":true,"read_only":false,"label":"Username"},"password":{"type":"string","required":true,"read_only":false,"label":"Password"}}}}"#,
            ),
            (
                "/api/token/sliding/refresh/",
                r#"{"name":"Token Refresh Sliding","description":"Takes a sliding JSON web token and returns a new, refreshed version if the\ntoken's refresh period has not expired.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"token":{"type":"string","required":true,"read_only":false,"label":"Token"}}}}"#,
            ),
            // doorman's own view, described as DRF describes an APIView without a serializer.
            (
                "/api/token/revoke-all/",
                r#"{"name":"Token Revoke All","description":"Takes the access token that authenticates the request and revokes every token\nof its user: each outstanding refresh and sliding token is blacklisted and\nevery token issued until now is refused.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"]}"#,
            ),
            (
                "/api/token/inspect/",
                r#"{"name":"Token Inspect","description":"Takes a token, and optionally the type it is expected to be, and tells what\nthis server makes of it: a verdict, its reason, and the token's unverified\nheader and claims.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"token":{"type":"string","required":true,"read_only":false,"label":"Token"},"expect":{"type":"string","required":false,"read_only":false,"label":"Expect"}}}}"#,
            ),
            (
                "/api/account/sessions/",
                r#"{"name":"Account Sessions","description":"Lists the sessions of the user the access token authenticates: each login\nwhose refresh token is still live, most recently used first.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"]}"#,
            ),
            (
                "/api/account/sessions/revoke/",
                r#"{"name":"Account Session Revoke","description":"Ends one session of the user the access token authenticates: every refresh\ntoken of that login is blacklisted.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"id":{"type":"string","required":true,"read_only":false,"label":"Id"}}}}"#,
            ),
            (
                "/api/admin/users/",
                r#"{"name":"Admin Users","description":"Lists the users (a page at a time, optionally those whose name contains\n`search`) or creates one. Superusers only.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"username":{"type":"string","required":true,"read_only":false,"label":"Username"},"password":{"type":"string","required":true,"read_only":false,"label":"Password"},"is_superuser":{"type":"string","required":false,"read_only":false,"label":"Is superuser"},"is_active":{"type":"string","required":false,"read_only":false,"label":"Is active"}}}}"#,
            ),
            (
                "/api/admin/users/deactivate/",
                r#"{"name":"Admin User Deactivate","description":"Stops a user from logging in and ends every session of theirs at once.\nSuperusers only.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"username":{"type":"string","required":true,"read_only":false,"label":"Username"}}}}"#,
            ),
            (
                "/api/admin/users/activate/",
                r#"{"name":"Admin User Activate","description":"Lets a deactivated user log in again. Superusers only.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"username":{"type":"string","required":true,"read_only":false,"label":"Username"}}}}"#,
            ),
            (
                "/api/admin/users/unlock/",
                r#"{"name":"Admin User Unlock","description":"Clears a username's failed-login counters, so its logins are no longer\nthrottled. Superusers only.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"username":{"type":"string","required":true,"read_only":false,"label":"Username"}}}}"#,
            ),
            (
                "/api/admin/users/revoke/",
                r#"{"name":"Admin User Revoke","description":"Logs a user out everywhere: every refresh and sliding token is blacklisted\nand every token issued until now refused. Superusers only.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"username":{"type":"string","required":true,"read_only":false,"label":"Username"}}}}"#,
            ),
            (
                "/api/admin/audit/",
                r#"{"name":"Admin Audit","description":"Lists the audit trail, newest first, a page at a time (optionally one\nusername's events). Superusers only.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"]}"#,
            ),
            (
                "/hello/",
                r#"{"name":"Hello","description":"","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"]}"#,
            ),
        ];
        for (path, expected) in cases {
            let endpoint = endpoints().find(|e| e.path == path).unwrap();
            assert_eq!(endpoint.options().to_string(), expected, "{path}");
        }
        let with_metadata = endpoints().filter(|e| e.metadata.is_some()).count();
        assert_eq!(
            with_metadata,
            cases.len(),
            "a DRF view without a recorded OPTIONS answer"
        );
    }

    #[test]
    fn paths_are_declared_once_and_prefixes_derived() {
        let mut paths: Vec<&str> = endpoints().map(|e| e.path).collect();
        let count = paths.len();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), count, "a path declared twice");
        assert_eq!(
            reserved_prefixes(),
            [
                "/.well-known/",
                "/api/",
                "/healthz/",
                "/hello/",
                "/metrics/",
                "/readyz/",
                "/ui/"
            ]
        );
    }
}
