//! `OPTIONS` answers: DRF's `SimpleMetadata` for each view, with simplejwt's view docstrings and
//! serializer fields, as the reference app renders them.

use serde_json::{Value, json};

/// The views doorman serves, named as simplejwt's classes.
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

/// (name, required, read_only) of each serializer field, in declaration order.
type Fields = &'static [(&'static str, bool, bool)];

impl View {
    fn name(self) -> &'static str {
        match self {
            View::TokenObtainPair => "Token Obtain Pair",
            View::TokenRefresh => "Token Refresh",
            View::TokenVerify => "Token Verify",
            View::TokenBlacklist => "Token Blacklist",
            View::TokenObtainSliding => "Token Obtain Sliding",
            View::TokenRefreshSliding => "Token Refresh Sliding",
            View::Hello => "Hello",
        }
    }

    fn description(self) -> &'static str {
        match self {
            View::TokenObtainPair => {
                "Takes a set of user credentials and returns an access and refresh JSON web\ntoken pair to prove the authentication of those credentials."
            }
            View::TokenRefresh => {
                "Takes a refresh type JSON web token and returns an access type JSON web\ntoken if the refresh token is valid."
            }
            View::TokenVerify => {
                "Takes a token and indicates if it is valid.  This view provides no\ninformation about a token's fitness for a particular use."
            }
            View::TokenBlacklist => {
                "Takes a token and blacklists it. Must be used with the\n`rest_framework_simplejwt.token_blacklist` app installed."
            }
            View::TokenObtainSliding => {
                "Takes a set of user credentials and returns a sliding JSON web token to\nprove the authentication of those credentials."
            }
            View::TokenRefreshSliding => {
                "Takes a sliding JSON web token and returns a new, refreshed version if the\ntoken's refresh period has not expired."
            }
            View::Hello => "",
        }
    }

    fn fields(self) -> Option<Fields> {
        match self {
            View::TokenObtainPair | View::TokenObtainSliding => {
                Some(&[("username", true, false), ("password", true, false)])
            }
            View::TokenRefresh => Some(&[("refresh", true, false), ("access", false, true)]),
            View::TokenVerify | View::TokenRefreshSliding => Some(&[("token", true, false)]),
            View::TokenBlacklist => Some(&[("refresh", true, false)]),
            View::Hello => None,
        }
    }
}

/// The `OPTIONS` body of a view.
pub fn options_metadata(view: View) -> Value {
    let mut body = json!({
        "name": view.name(),
        "description": view.description(),
        "renders": ["application/json"],
        "parses": ["application/json", "application/x-www-form-urlencoded", "multipart/form-data"],
    });
    if let (Some(fields), Some(object)) = (view.fields(), body.as_object_mut()) {
        let mut post = serde_json::Map::new();
        for (name, required, read_only) in fields {
            post.insert(
                (*name).to_owned(),
                json!({"type": "string", "required": required, "read_only": read_only, "label": capitalize(name)}),
            );
        }
        object.insert("actions".into(), json!({ "POST": post }));
    }
    body
}

fn capitalize(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_app() {
        // Recorded from the reference app (simplejwt 5.5.1, DRF 3.18.3).
        assert_eq!(
            options_metadata(View::TokenRefresh).to_string(),
            r#"{"name":"Token Refresh","description":"Takes a refresh type JSON web token and returns an access type JSON web\ntoken if the refresh token is valid.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"refresh":{"type":"string","required":true,"read_only":false,"label":"Refresh"},"access":{"type":"string","required":false,"read_only":true,"label":"Access"}}}}"#
        );
        assert_eq!(
            options_metadata(View::Hello).to_string(),
            r#"{"name":"Hello","description":"","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"]}"#
        );
    }
}
