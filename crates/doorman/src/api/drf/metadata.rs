//! `OPTIONS` answers: DRF's `SimpleMetadata` for each view doorman serves, with simplejwt's view
//! docstrings and serializer fields, as the reference app renders them.

use serde_json::{Map, Value, json};

/// The views doorman serves, named as simplejwt's classes (and the reference app's `HelloView`).
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

/// A serializer field as SimpleMetadata describes it: name, required, read only.
type FieldInfo = (&'static str, bool, bool);

impl View {
    /// `get_view_name`: the class name less `View`, split into words.
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

    /// `get_view_description`: the class docstring, dedented.
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

    /// The POST serializer's fields in declaration order; `None` for a view without POST.
    fn post_fields(self) -> Option<&'static [FieldInfo]> {
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
    let mut body = Map::new();
    body.insert("name".into(), json!(view.name()));
    body.insert("description".into(), json!(view.description()));
    body.insert("renders".into(), json!(["application/json"]));
    body.insert(
        "parses".into(),
        json!([
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data"
        ]),
    );
    if let Some(fields) = view.post_fields() {
        let mut post = Map::new();
        for (name, required, read_only) in fields {
            let mut info = Map::new();
            info.insert("type".into(), json!("string"));
            info.insert("required".into(), json!(required));
            info.insert("read_only".into(), json!(read_only));
            info.insert("label".into(), json!(label(name)));
            post.insert((*name).to_owned(), Value::Object(info));
        }
        body.insert("actions".into(), json!({ "POST": post }));
    }
    Value::Object(body)
}

/// DRF's default label: the field name with `_` as spaces, first letter capitalized.
fn label(name: &str) -> String {
    let spaced = name.replace('_', " ");
    let mut chars = spaced.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
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
            assert_eq!(options_metadata(view).to_string(), expected, "{view:?}");
        }
    }
}
