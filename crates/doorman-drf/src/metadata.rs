//! `OPTIONS` answers: DRF's `SimpleMetadata` rendering of a view's name, docstring and POST
//! serializer fields.

use serde_json::{Map, Value, json};

/// A serializer field as `SimpleMetadata` describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SerializerField {
    pub name: &'static str,
    pub required: bool,
    pub read_only: bool,
}

/// What `SimpleMetadata` shows of a view: the caller's views declare these (this crate knows
/// none of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewMetadata {
    /// `get_view_name`: the class name less `View`, split into words.
    pub name: &'static str,
    /// `get_view_description`: the class docstring, dedented.
    pub description: &'static str,
    /// The POST serializer's fields in declaration order; `None` for a view without POST.
    pub post_fields: Option<&'static [SerializerField]>,
}

/// The `OPTIONS` body of a view.
pub fn options_metadata(view: &ViewMetadata) -> Value {
    let mut body = Map::new();
    body.insert("name".into(), json!(view.name));
    body.insert("description".into(), json!(view.description));
    body.insert("renders".into(), json!(["application/json"]));
    body.insert(
        "parses".into(),
        json!([
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data"
        ]),
    );
    if let Some(fields) = view.post_fields {
        let mut post = Map::new();
        for field in fields {
            let mut info = Map::new();
            info.insert("type".into(), json!("string"));
            info.insert("required".into(), json!(field.required));
            info.insert("read_only".into(), json!(field.read_only));
            info.insert("label".into(), json!(label(field.name)));
            post.insert(field.name.to_owned(), Value::Object(info));
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
    fn renders_as_simple_metadata() {
        // Recorded from DRF 3.18.3 for simplejwt's TokenRefreshView and a plain APIView.
        let refresh = ViewMetadata {
            name: "Token Refresh",
            description: "Takes a refresh type JSON web token and returns an access type JSON web\ntoken if the refresh token is valid.",
            post_fields: Some(&[
                SerializerField {
                    name: "refresh",
                    required: true,
                    read_only: false,
                },
                SerializerField {
                    name: "access",
                    required: false,
                    read_only: true,
                },
            ]),
        };
        assert_eq!(
            options_metadata(&refresh).to_string(),
            r#"{"name":"Token Refresh","description":"Takes a refresh type JSON web token and returns an access type JSON web\ntoken if the refresh token is valid.","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{"refresh":{"type":"string","required":true,"read_only":false,"label":"Refresh"},"access":{"type":"string","required":false,"read_only":true,"label":"Access"}}}}"#
        );
        let hello = ViewMetadata {
            name: "Hello",
            description: "",
            post_fields: None,
        };
        assert_eq!(
            options_metadata(&hello).to_string(),
            r#"{"name":"Hello","description":"","renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"]}"#
        );
    }

    #[test]
    fn labels_are_drf_defaults() {
        assert_eq!(label("refresh"), "Refresh");
        assert_eq!(label("user_id"), "User id");
        assert_eq!(label(""), "");
    }
}
