//! What Django REST Framework does around a view, reproduced byte for byte (DRF 3.18.3 with
//! simplejwt 5.5.1 on CPython 3.11, as in the reference app): content negotiation (406), the
//! JSON / form / multipart parsers with DRF's and Python's exact error texts (400, 415),
//! `CharField` validation, the JSON renderer, and `OPTIONS` metadata.
//!
//! Self-contained: it knows nothing of doorman; the views and their metadata are the caller's.
//! Where DRF crashes (a 500), this answers the nearest clean DRF error instead; each such place
//! says so.

mod charset;
mod data;
mod fields;
mod file_name;
mod form;
mod json;
mod media_type;
mod metadata;
mod multipart;
mod negotiate;
mod python;
mod render;

use http::StatusCode;
use serde_json::{Map, Value, json};

pub use data::{RequestData, parse_request_data};
pub use fields::{boolean_field, char_fields};
pub use metadata::{SerializerField, ViewMetadata, options_metadata};
pub use negotiate::{format_override, negotiate};
pub use render::render_json;

/// What went wrong, already carrying DRF's exact answer.
#[derive(Debug, thiserror::Error)]
pub enum DrfError {
    /// 415 `{"detail":"Unsupported media type \"text/plain\" in request."}`; the Content-Type
    /// as sent (`""` when missing).
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    /// 400 `{"detail":"<message>"}`, e.g. "JSON parse error - Expecting value: line 1 column 1
    /// (char 0)".
    #[error("parse error: {0}")]
    ParseError(String),
    /// 400 with this object as body: field errors in field order, or `non_field_errors`.
    #[error("invalid data")]
    Invalid(Map<String, Value>),
    /// 406 `{"detail":"Could not satisfy the request Accept header."}`.
    #[error("not acceptable")]
    NotAcceptable,
    /// 404 `{"detail":"Not found."}`: `?format=` names a renderer that isn't configured.
    #[error("no renderer for the requested format")]
    NotFound,
}

impl DrfError {
    pub fn status(&self) -> StatusCode {
        match self {
            DrfError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            DrfError::ParseError(_) | DrfError::Invalid(_) => StatusCode::BAD_REQUEST,
            DrfError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            DrfError::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// The JSON body, keys in DRF's order.
    pub fn body(&self) -> Value {
        match self {
            DrfError::UnsupportedMediaType(media_type) => {
                json!({"detail": format!("Unsupported media type \"{media_type}\" in request.")})
            }
            DrfError::ParseError(message) => json!({ "detail": message }),
            DrfError::Invalid(errors) => Value::Object(errors.clone()),
            DrfError::NotAcceptable => {
                json!({"detail": "Could not satisfy the request Accept header."})
            }
            DrfError::NotFound => json!({"detail": "Not found."}),
        }
    }
}
