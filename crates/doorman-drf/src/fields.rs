//! A DRF `Serializer` whose fields are all `CharField()`: required, not null, not blank,
//! surrounding whitespace trimmed, numbers taken as their Python `str()`.

use serde_json::{Map, Value, json};

use super::data::{Body, Field, RequestData};
use super::json::{PyStr, PyValue};
use super::{DrfError, python};

/// Validates `names` in order; all fields' errors are collected, in field order, as
/// `serializer.errors` has them. Returns the cleaned values in the same order.
pub fn char_fields(data: &RequestData, names: &[&str]) -> Result<Vec<String>, DrfError> {
    let fields = match &data.body {
        Body::Mapping(fields) => fields,
        // `Serializer.errors` turns the serializer's own "may not be null" into this.
        Body::Null => return Err(non_field_error("No data provided")),
        Body::NotMapping(type_name) => {
            return Err(non_field_error(&format!(
                "Invalid data. Expected a dictionary, but got {type_name}."
            )));
        }
    };
    let mut values = Vec::with_capacity(names.len());
    let mut errors = Map::new();
    for name in names {
        match char_field(fields.get(*name)) {
            Ok(value) => values.push(value),
            Err(messages) => {
                errors.insert((*name).to_owned(), json!(messages));
            }
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(DrfError::Invalid(errors))
    }
}

/// DRF's `BooleanField(default=...)`: absent gives the default; DRF's true and false spellings
/// (JSON booleans, `1`/`0`, `"true"`, `"on"`, `"yes"`...) give their value; anything else the
/// field's messages. A body that is no mapping has no fields: the default (its own error comes
/// from [`char_fields`]).
pub fn boolean_field(data: &RequestData, name: &str, default: bool) -> Result<bool, Vec<Value>> {
    const TRUE: [&str; 14] = [
        "t", "T", "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "1",
    ];
    const FALSE: [&str; 14] = [
        "f", "F", "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", "0",
    ];
    let Body::Mapping(fields) = &data.body else {
        return Ok(default);
    };
    let invalid = || Err(vec![json!("Must be a valid boolean.")]);
    let text = match fields.get(name) {
        None => return Ok(default),
        Some(Field::Json(PyValue::Null)) => return Err(vec![json!("This field may not be null.")]),
        Some(Field::Json(PyValue::Bool(value))) => return Ok(*value),
        Some(Field::Json(PyValue::Int(digits))) => digits.as_str(),
        Some(Field::Json(PyValue::Float(x))) if *x == 0.0 => return Ok(false),
        Some(Field::Json(PyValue::Float(x))) if *x == 1.0 => return Ok(true),
        Some(Field::Json(PyValue::Str(PyStr { text, .. }))) | Some(Field::Text(text)) => {
            text.as_str()
        }
        Some(_) => return invalid(),
    };
    if TRUE.contains(&text) {
        Ok(true)
    } else if FALSE.contains(&text) {
        Ok(false)
    } else {
        invalid()
    }
}

fn non_field_error(message: &str) -> DrfError {
    let mut errors = Map::new();
    errors.insert("non_field_errors".into(), json!([message]));
    DrfError::Invalid(errors)
}

/// `CharField.run_validation`, in its order: the blank test on `str(data).strip()` first, then
/// missing and null, then the type, then the NUL and surrogate validators (both may report).
fn char_field(value: Option<&Field>) -> Result<String, Vec<Value>> {
    let fail = |message: &str| Err(vec![json!(message)]);
    let Some(value) = value else {
        return fail("This field is required.");
    };
    let (text, surrogate) = match value {
        Field::Text(text) => (text.as_str(), None),
        Field::Json(PyValue::Str(PyStr { text, surrogate })) => (text.as_str(), *surrogate),
        // `str()` of an uploaded file is its name: a name of spaces is "blank".
        Field::File(name) if python::strip(name).is_empty() => {
            return fail("This field may not be blank.");
        }
        Field::File(_) => return fail("Not a valid string."),
        Field::Json(PyValue::Null) => return fail("This field may not be null."),
        Field::Json(PyValue::Int(digits)) => return Ok(digits.clone()),
        Field::Json(PyValue::Float(x)) => return Ok(python::float_str(*x)),
        Field::Json(PyValue::Bool(_) | PyValue::List(_) | PyValue::Dict(_)) => {
            return fail("Not a valid string.");
        }
    };
    let trimmed = python::strip(text);
    // A lone surrogate is never whitespace, so such a string is never blank.
    if trimmed.is_empty() && surrogate.is_none() {
        return fail("This field may not be blank.");
    }
    let mut errors = Vec::new();
    if trimmed.contains('\0') {
        errors.push(json!("Null characters are not allowed."));
    }
    if let Some(code) = surrogate {
        errors.push(json!(format!(
            "Surrogate characters are not allowed: U+{code:X}."
        )));
    }
    if errors.is_empty() {
        Ok(trimmed.to_owned())
    } else {
        Err(errors)
    }
}
