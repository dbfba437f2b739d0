//! The views doorman serves, named as simplejwt's classes (and the reference app's
//! `HelloView`), with what DRF's `OPTIONS` shows of each.

use doorman_drf::{SerializerField, ViewMetadata};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    TokenObtainPair,
    TokenRefresh,
    TokenVerify,
    TokenBlacklist,
    TokenObtainSliding,
    TokenRefreshSliding,
    Hello,
}

const fn field(name: &'static str, required: bool, read_only: bool) -> SerializerField {
    SerializerField {
        name,
        required,
        read_only,
    }
}

const CREDENTIALS: &[SerializerField] = &[
    field("username", true, false),
    field("password", true, false),
];
const REFRESH: &[SerializerField] = &[field("refresh", true, false), field("access", false, true)];
const TOKEN: &[SerializerField] = &[field("token", true, false)];
const BLACKLIST: &[SerializerField] = &[field("refresh", true, false)];

impl View {
    pub fn metadata(self) -> ViewMetadata {
        let (name, description, post_fields): (_, _, Option<&'static [SerializerField]>) =
            match self {
                View::TokenObtainPair => (
                    "Token Obtain Pair",
                    "Takes a set of user credentials and returns an access and refresh JSON web\ntoken pair to prove the authentication of those credentials.",
                    Some(CREDENTIALS),
                ),
                View::TokenRefresh => (
                    "Token Refresh",
                    "Takes a refresh type JSON web token and returns an access type JSON web\ntoken if the refresh token is valid.",
                    Some(REFRESH),
                ),
                View::TokenVerify => (
                    "Token Verify",
                    "Takes a token and indicates if it is valid.  This view provides no\ninformation about a token's fitness for a particular use.",
                    Some(TOKEN),
                ),
                View::TokenBlacklist => (
                    "Token Blacklist",
                    "Takes a token and blacklists it. Must be used with the\n`rest_framework_simplejwt.token_blacklist` app installed.",
                    Some(BLACKLIST),
                ),
                View::TokenObtainSliding => (
                    "Token Obtain Sliding",
                    "Takes a set of user credentials and returns a sliding JSON web token to\nprove the authentication of those credentials.",
                    Some(CREDENTIALS),
                ),
                View::TokenRefreshSliding => (
                    "Token Refresh Sliding",
                    "Takes a sliding JSON web token and returns a new, refreshed version if the\ntoken's refresh period has not expired.",
                    Some(TOKEN),
                ),
                View::Hello => ("Hello", "", None),
            };
        ViewMetadata {
            name,
            description,
            post_fields,
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_app() {
        // Recorded from the reference app (simplejwt 5.5.1, DRF 3.18.3); the sliding views,
        // which it doesn't route, through APIRequestFactory in its Django shell.
        for (view, expected) in [
            (
                View::TokenObtainPair,
                r#"{"name":"Token Obtain Pair","description":"Takes a set of user credentials and returns an access and refresh JSON web\ntoken pair to prove the authentication of those credentials.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"username":{"type":"string","required":true,"read_only":false,"label":"Username"},"password":{"type":"string","required":true,"read_only":false,"label":"Password"}}}}"#,
            ),
            (
                View::TokenRefresh,
                r#"{"name":"Token Refresh","description":"Takes a refresh type JSON web token and returns an access type JSON web\ntoken if the refresh token is valid.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"refresh":{"type":"string","required":true,"read_only":false,"label":"Refresh"},"access":{"type":"string","required":false,"read_only":true,"label":"Access"}}}}"#,
            ),
            (
                View::TokenVerify,
                r#"{"name":"Token Verify","description":"Takes a token and indicates if it is valid.  This view provides no\ninformation about a token's fitness for a particular use.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"token":{"type":"string","required":true,"read_only":false,"label":"Token"}}}}"#,
            ),
            (
                View::TokenBlacklist,
                r#"{"name":"Token Blacklist","description":"Takes a token and blacklists it. Must be used with the\n`rest_framework_simplejwt.token_blacklist` app installed.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"refresh":{"type":"string","required":true,"read_only":false,"label":"Refresh"}}}}"#,
            ),
            (
                View::TokenObtainSliding,
                r#"{"name":"Token Obtain Sliding","description":"Takes a set of user credentials and returns a sliding JSON web token to\nprove the authentication of those credentials.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"username":{"type":"string","required":true,"read_only":false,"label":"Username"},"password":{"type":"string","required":true,"read_only":false,"label":"Password"}}}}"#,
            ),
            (
                View::TokenRefreshSliding,
                r#"{"name":"Token Refresh Sliding","description":"Takes a sliding JSON web token and returns a new, refreshed version if the\ntoken's refresh period has not expired.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"token":{"type":"string","required":true,"read_only":false,"label":"Token"}}}}"#,
            ),
            (
                View::Hello,
                r#"{"name":"Hello","description":"","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"]}"#,
            ),
        ] {
            assert_eq!(
                doorman_drf::options_metadata(&view.metadata()).to_string(),
                expected,
                "{view:?}"
            );
        }
    }
}
