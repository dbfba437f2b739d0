//! What Django REST Framework does around a view, reproduced: content negotiation (406), the
//! JSON / form / multipart parsers with DRF's and Python's exact error texts (400, 415),
//! `CharField` validation, the JSON renderer, and `OPTIONS` metadata.

mod json;
mod metadata;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use json::{PyStr, PyValue, python_float_str};
pub use metadata::{View, options_metadata};

/// DRF's `request.data`: field name to value, in body order, repeated names keeping the last.
#[derive(Clone, Debug, Default)]
pub struct RequestData {
    fields: IndexMap<String, Field>,
}

/// A field's value as a parser produced it.
#[derive(Clone, Debug)]
enum Field {
    /// From JSON: any Python value.
    Json(PyValue),
    /// From a form: always text.
    Text(String),
    /// A multipart file part: never a valid string.
    File,
}

/// What went wrong, carrying DRF's exact answer.
#[derive(Debug, thiserror::Error)]
pub enum DrfError {
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("parse error: {0}")]
    ParseError(String),
    #[error("invalid data")]
    Invalid(Map<String, Value>),
    #[error("not acceptable")]
    NotAcceptable,
    /// `?format=` naming a renderer we don't have: DRF answers 404.
    #[error("unknown format")]
    UnknownFormat,
}

impl DrfError {
    pub fn status(&self) -> StatusCode {
        match self {
            DrfError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            DrfError::ParseError(_) | DrfError::Invalid(_) => StatusCode::BAD_REQUEST,
            DrfError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            DrfError::UnknownFormat => StatusCode::NOT_FOUND,
        }
    }

    pub fn body(&self) -> Value {
        match self {
            DrfError::UnsupportedMediaType(media) => {
                json!({"detail": format!("Unsupported media type \"{media}\" in request.")})
            }
            DrfError::ParseError(message) => json!({"detail": message}),
            DrfError::Invalid(errors) => Value::Object(errors.clone()),
            DrfError::NotAcceptable => {
                json!({"detail": "Could not satisfy the request Accept header."})
            }
            DrfError::UnknownFormat => json!({"detail": "Not found."}),
        }
    }

    fn non_field(message: String) -> DrfError {
        let mut errors = Map::new();
        errors.insert("non_field_errors".into(), json!([message]));
        DrfError::Invalid(errors)
    }
}

/// A media type as DRF's `_MediaType` reads it: lower-cased type, parameters by name.
struct MediaType {
    main: String,
    sub: String,
    params: Vec<(String, String)>,
}

impl MediaType {
    fn parse(text: &str) -> MediaType {
        let mut parts = text.split(';');
        let full = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let (main, sub) = full.split_once('/').unwrap_or((full.as_str(), ""));
        let params = parts
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_owned(),
                ))
            })
            .collect();
        MediaType {
            main: main.trim().to_owned(),
            sub: sub.trim().to_owned(),
            params,
        }
    }

    /// `_MediaType.match`: does `self` (a parser's or renderer's type, no parameters) satisfy
    /// `other`? Wildcards on either side match.
    fn satisfies(&self, other: &MediaType) -> bool {
        let part = |mine: &str, theirs: &str| mine == "*" || theirs == "*" || mine == theirs;
        part(&self.sub, &other.sub) && part(&self.main, &other.main)
    }

    /// DRF's precedence: `*/*` 0, `type/*` 1, plain 2, with parameters (other than q) 3.
    fn precedence(&self) -> u8 {
        if self.main == "*" {
            0
        } else if self.sub == "*" {
            1
        } else if self.params.iter().all(|(k, _)| k == "q") {
            2
        } else {
            3
        }
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Header values as WSGI sees them: bytes read as latin-1.
fn latin1(value: &HeaderValue) -> String {
    value.as_bytes().iter().map(|b| char::from(*b)).collect()
}

/// DRF's `DefaultContentNegotiation.select_renderer` with only `JSONRenderer`: the first Accept
/// entry (most specific first) that `application/json` satisfies wins; its `indent` parameter
/// (clamped to 0..=8, 0 meaning none) pretty-prints. A missing Accept means `*/*`.
pub fn negotiate(headers: &HeaderMap, query: Option<&str>) -> Result<Option<usize>, DrfError> {
    if let Some(query) = query {
        let format = form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k == "format")
            .last();
        if let Some((_, format)) = format
            && !format.is_empty()
            && format != "json"
        {
            return Err(DrfError::UnknownFormat);
        }
    }
    let accept = headers
        .get(header::ACCEPT)
        .map_or_else(|| "*/*".to_owned(), latin1);
    let json = MediaType::parse("application/json");
    let mut accepted: Vec<MediaType> = accept
        .split(',')
        .map(|t| MediaType::parse(t.trim()))
        .collect();
    // order_by_precedence: a stable sort, most specific first.
    accepted.sort_by_key(|m| std::cmp::Reverse(m.precedence()));
    let chosen = accepted
        .iter()
        .find(|m| json.satisfies(m))
        .ok_or(DrfError::NotAcceptable)?;
    let indent = chosen
        .param("indent")
        .and_then(|v| v.parse::<i64>().ok())
        .map(|n| n.clamp(0, 8) as usize);
    Ok(indent.filter(|n| *n > 0))
}

/// DRF's `JSONRenderer`: compact separators, UTF-8 as is (`ensure_ascii=False`), U+2028 and
/// U+2029 escaped for JavaScript, or Python's `indent=N` layout.
pub fn render_json(value: &Value, indent: Option<usize>) -> Vec<u8> {
    let text = match indent {
        None => value.to_string(),
        Some(n) => {
            let spaces = " ".repeat(n);
            let mut out = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(spaces.as_bytes());
            let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
            match serde::Serialize::serialize(value, &mut ser) {
                Ok(()) => String::from_utf8(out).unwrap_or_else(|_| value.to_string()),
                Err(_) => value.to_string(),
            }
        }
    };
    text.replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
        .into_bytes()
}

/// Reads the body with the parser DRF would pick for its Content-Type. An empty body is an
/// empty mapping whatever the type (DRF never consults a parser then).
pub async fn parse_request_data(
    content_type: Option<&HeaderValue>,
    body: &[u8],
) -> Result<RequestData, DrfError> {
    if body.is_empty() {
        return Ok(RequestData::default());
    }
    let raw_type = content_type.map(latin1).unwrap_or_default();
    let media = MediaType::parse(&raw_type);
    if MediaType::parse("application/json").satisfies(&media) {
        parse_json(body, &media)
    } else if MediaType::parse("application/x-www-form-urlencoded").satisfies(&media) {
        Ok(parse_form(body))
    } else if MediaType::parse("multipart/form-data").satisfies(&media) {
        parse_multipart(body, &raw_type).await
    } else {
        Err(DrfError::UnsupportedMediaType(raw_type))
    }
}

fn parse_json(body: &[u8], media: &MediaType) -> Result<RequestData, DrfError> {
    let parse_error = |m: String| DrfError::ParseError(format!("JSON parse error - {m}"));
    let latin = media.param("charset").is_some_and(|c| {
        matches!(
            c.to_ascii_lowercase().as_str(),
            "latin-1" | "latin1" | "iso-8859-1" | "iso8859-1" | "l1"
        )
    });
    let text = if latin {
        body.iter().map(|b| char::from(*b)).collect()
    } else {
        String::from_utf8(body.to_vec()).map_err(|e| parse_error(utf8_error(body, &e)))?
    };
    match json::loads(&text).map_err(parse_error)? {
        PyValue::Dict(map) => Ok(RequestData {
            fields: map.into_iter().map(|(k, v)| (k, Field::Json(v))).collect(),
        }),
        PyValue::Null => Err(DrfError::non_field("No data provided".into())),
        other => Err(DrfError::non_field(format!(
            "Invalid data. Expected a dictionary, but got {}.",
            other.type_name()
        ))),
    }
}

/// Python's UnicodeDecodeError text for a body that is not UTF-8.
fn utf8_error(body: &[u8], error: &std::string::FromUtf8Error) -> String {
    let e = error.utf8_error();
    let pos = e.valid_up_to();
    let byte = body.get(pos).copied().unwrap_or(0);
    let reason = match e.error_len() {
        None => "unexpected end of data",
        Some(_) if matches!(byte, 0x80..=0xC1 | 0xF5..=0xFF) => "invalid start byte",
        Some(_) => "invalid continuation byte",
    };
    format!("'utf-8' codec can't decode byte 0x{byte:02x} in position {pos}: {reason}")
}

/// Django's `QueryDict`: `&`-separated, `+` as space, percent-decoding with replacement of bad
/// UTF-8; a body that isn't UTF-8 at all is read as latin-1 first, as Django does.
fn parse_form(body: &[u8]) -> RequestData {
    let text: String = match std::str::from_utf8(body) {
        Ok(text) => text.to_owned(),
        Err(_) => body.iter().map(|b| char::from(*b)).collect(),
    };
    let mut fields = IndexMap::new();
    for (k, v) in form_urlencoded::parse(text.as_bytes()) {
        fields.insert(k.into_owned(), Field::Text(v.into_owned()));
    }
    RequestData { fields }
}

/// Django's `MultiPartParser` through DRF: text parts are strings, file parts are files.
async fn parse_multipart(body: &[u8], raw_type: &str) -> Result<RequestData, DrfError> {
    let parse_error = |m: String| DrfError::ParseError(format!("Multipart form parse error - {m}"));
    let boundary = multer::parse_boundary(raw_type)
        .ok()
        .filter(|b| valid_boundary(b));
    let Some(boundary) = boundary else {
        let shown = MediaType::parse(raw_type)
            .param("boundary")
            .map_or_else(|| "None".to_owned(), str::to_owned);
        return Err(parse_error(format!(
            "Invalid boundary in multipart: {shown}"
        )));
    };
    let body = bytes::Bytes::copy_from_slice(body);
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut fields = IndexMap::new();
    let result: Result<(), multer::Error> = async {
        while let Some(field) = multipart.next_field().await? {
            let name = field.name().unwrap_or_default().to_owned();
            if field.file_name().is_some() {
                let _ = field.bytes().await?;
                fields.insert(name, Field::File);
            } else {
                let bytes = field.bytes().await?;
                fields.insert(
                    name,
                    Field::Text(String::from_utf8_lossy(&bytes).into_owned()),
                );
            }
        }
        Ok(())
    }
    .await;
    result.map_err(|e| parse_error(e.to_string()))?;
    Ok(RequestData { fields })
}

/// Django's boundary rule: 1 to 70 characters from RFC 2046's set.
fn valid_boundary(boundary: &str) -> bool {
    !boundary.is_empty()
        && boundary.len() <= 70
        && boundary
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&b))
}

/// A DRF serializer whose fields are all `CharField()` (required, trimmed, not blank, not null):
/// every field's errors, in field order; or the cleaned values.
pub fn char_fields(data: &RequestData, names: &[&str]) -> Result<Vec<String>, DrfError> {
    let mut values = Vec::with_capacity(names.len());
    let mut errors = Map::new();
    for name in names {
        match char_field(data.fields.get(*name)) {
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

/// `CharField.run_validation`: blank check on `str(data).strip()`, then required/null, then
/// type and coercion, then the NUL and surrogate validators (both may report).
fn char_field(value: Option<&Field>) -> Result<String, Vec<String>> {
    let Some(value) = value else {
        return Err(vec!["This field is required.".into()]);
    };
    let (text, surrogate) = match value {
        Field::Text(t) => (t.clone(), None),
        Field::File => return Err(vec!["Not a valid string.".into()]),
        Field::Json(v) => match v {
            PyValue::Null => return Err(vec!["This field may not be null.".into()]),
            PyValue::Str(PyStr { text, surrogate }) => (text.clone(), *surrogate),
            PyValue::Int(digits) => (digits.clone(), None),
            PyValue::Float(f) => (python_float_str(*f), None),
            PyValue::Bool(_) | PyValue::List(_) | PyValue::Dict(_) => {
                return Err(vec!["Not a valid string.".into()]);
            }
        },
    };
    let trimmed = text.trim_matches(python_space);
    if trimmed.is_empty() && surrogate.is_none() {
        return Err(vec!["This field may not be blank.".into()]);
    }
    let mut errors = Vec::new();
    if trimmed.contains('\0') {
        errors.push("Null characters are not allowed.".to_owned());
    }
    if let Some(code) = surrogate {
        errors.push(format!("Surrogate characters are not allowed: U+{code:X}."));
    }
    if errors.is_empty() {
        Ok(trimmed.to_owned())
    } else {
        Err(errors)
    }
}

/// Python's `str.isspace()`: Unicode White_Space plus the four ASCII separators 0x1C-0x1F.
fn python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn ct(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    async fn fields(ct_value: &str, body: &str, names: &[&str]) -> Result<Vec<String>, String> {
        parse_request_data(Some(&ct(ct_value)), body.as_bytes())
            .await
            .and_then(|d| char_fields(&d, names))
            .map_err(|e| e.body().to_string())
    }

    #[tokio::test]
    async fn json_fields() {
        let j = "application/json";
        assert_eq!(
            fields(
                j,
                r#"{"username":" alice ","password":12}"#,
                &["username", "password"]
            )
            .await
            .unwrap(),
            ["alice", "12"]
        );
        assert_eq!(
            fields(j, r#"{"a":1.0,"b":1e16,"c":-0}"#, &["a", "b", "c"])
                .await
                .unwrap(),
            ["1.0", "1e+16", "0"]
        );
        assert_eq!(
            fields(j, r#"{}"#, &["username", "password"])
                .await
                .unwrap_err(),
            r#"{"username":["This field is required."],"password":["This field is required."]}"#
        );
        assert_eq!(
            fields(
                j,
                r#"{"username":"","password":null}"#,
                &["username", "password"]
            )
            .await
            .unwrap_err(),
            r#"{"username":["This field may not be blank."],"password":["This field may not be null."]}"#
        );
        assert_eq!(
            fields(
                j,
                r#"{"username":true,"password":{}}"#,
                &["username", "password"]
            )
            .await
            .unwrap_err(),
            r#"{"username":["Not a valid string."],"password":["Not a valid string."]}"#
        );
        assert_eq!(
            fields(j, "{\"username\":\"\\u2003\\u001c \"}", &["username"])
                .await
                .unwrap_err(),
            r#"{"username":["This field may not be blank."]}"#
        );
        assert_eq!(
            fields(j, r#"{"username":"a\u0000b"}"#, &["username"])
                .await
                .unwrap_err(),
            r#"{"username":["Null characters are not allowed."]}"#
        );
        assert_eq!(
            fields(j, r#"{"username":"a\ud800"}"#, &["username"])
                .await
                .unwrap_err(),
            r#"{"username":["Surrogate characters are not allowed: U+D800."]}"#
        );
        assert_eq!(
            fields(j, "[1]", &["username"]).await.unwrap_err(),
            r#"{"non_field_errors":["Invalid data. Expected a dictionary, but got list."]}"#
        );
        assert_eq!(
            fields(j, "null", &["username"]).await.unwrap_err(),
            r#"{"non_field_errors":["No data provided"]}"#
        );
        assert_eq!(
            fields(j, "\"x\"", &["username"]).await.unwrap_err(),
            r#"{"non_field_errors":["Invalid data. Expected a dictionary, but got str."]}"#
        );
        assert_eq!(
            fields(j, "{", &["username"]).await.unwrap_err(),
            r#"{"detail":"JSON parse error - Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"}"#
        );
    }

    #[tokio::test]
    async fn media_types() {
        assert!(
            fields("APPLICATION/JSON; charset=utf-8", r#"{"a":"b"}"#, &["a"])
                .await
                .is_ok()
        );
        assert!(fields("*/*", r#"{"a":"b"}"#, &["a"]).await.is_ok());
        assert_eq!(
            fields("text/plain", "x", &["a"]).await.unwrap_err(),
            r#"{"detail":"Unsupported media type \"text/plain\" in request."}"#
        );
        let missing = parse_request_data(None, b"x").await.unwrap_err();
        assert_eq!(
            missing.body().to_string(),
            r#"{"detail":"Unsupported media type \"\" in request."}"#
        );
        assert!(char_fields(&parse_request_data(None, b"").await.unwrap(), &["a"]).is_err());
        let bad = parse_request_data(Some(&ct("application/json")), b"\xff")
            .await
            .unwrap_err();
        assert_eq!(
            bad.body().to_string(),
            r#"{"detail":"JSON parse error - 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"}"#
        );
    }

    #[tokio::test]
    async fn forms_and_multipart() {
        let f = "application/x-www-form-urlencoded";
        assert_eq!(
            fields(
                f,
                "username=al+ice&password=p%41ss&username=bob",
                &["username", "password"]
            )
            .await
            .unwrap(),
            ["bob", "pAss"]
        );
        assert_eq!(
            fields(f, "username=&password", &["username", "password"])
                .await
                .unwrap_err(),
            r#"{"username":["This field may not be blank."],"password":["This field may not be blank."]}"#
        );
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nalice\r\n--XyZ\r\nContent-Disposition: form-data; name=\"password\"; filename=\"p.txt\"\r\n\r\nsecret\r\n--XyZ--\r\n";
        assert_eq!(
            fields(
                "multipart/form-data; boundary=XyZ",
                body,
                &["username", "password"]
            )
            .await
            .unwrap_err(),
            r#"{"password":["Not a valid string."]}"#
        );
        assert_eq!(
            fields("multipart/form-data", body, &["username"])
                .await
                .unwrap_err(),
            r#"{"detail":"Multipart form parse error - Invalid boundary in multipart: None"}"#
        );
    }

    #[test]
    fn negotiation() {
        let with = |accept: Option<&str>, query: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(a) = accept {
                h.insert(header::ACCEPT, ct(a));
            }
            negotiate(&h, query)
        };
        assert_eq!(with(None, None).unwrap(), None);
        assert_eq!(
            with(Some("application/json; indent=4"), None).unwrap(),
            Some(4)
        );
        assert_eq!(with(Some("*/*; indent=20"), None).unwrap(), Some(8));
        assert_eq!(
            with(Some("text/html, application/*;q=0.1"), None).unwrap(),
            None
        );
        assert!(matches!(
            with(Some("text/html"), None),
            Err(DrfError::NotAcceptable)
        ));
        assert!(matches!(with(Some(""), None), Err(DrfError::NotAcceptable)));
        assert!(matches!(
            with(None, Some("format=xml")),
            Err(DrfError::UnknownFormat)
        ));
        assert_eq!(with(None, Some("format=json")).unwrap(), None);
    }

    #[test]
    fn rendering() {
        let v = json!({"a": ["x\u{2028}é"], "b": {}});
        assert_eq!(
            String::from_utf8(render_json(&v, None)).unwrap(),
            "{\"a\":[\"x\\u2028é\"],\"b\":{}}"
        );
        assert_eq!(
            String::from_utf8(render_json(&json!({"a": [1]}), Some(2))).unwrap(),
            "{\n  \"a\": [\n    1\n  ]\n}"
        );
    }
}
