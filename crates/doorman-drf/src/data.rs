//! DRF's `request.data`: the parser chosen by Content-Type (JSON, form, multipart, as the
//! reference app configures them), the request's charset, and DRF's 400 and 415 answers.

use http::HeaderValue;
use indexmap::IndexMap;

use super::DrfError;
use super::charset::{self, Charset, Lookup, latin1};
use super::json::{self, JsonError, PyValue};
use super::media_type::{MediaType, parse_header_parameters};
use super::{form, multipart, python};

/// DRF's `request.data`: field name to value, in body order; a repeated name keeps its first
/// place and its last value, as a Python dict or Django `QueryDict` does.
#[derive(Clone, Debug)]
pub struct RequestData {
    pub(super) body: Body,
}

/// What the body parsed to. Only a mapping has fields; the serializer refuses the rest.
#[derive(Clone, Debug)]
pub(super) enum Body {
    Mapping(IndexMap<String, Field>),
    /// JSON `null`.
    Null,
    /// Another JSON value, by its Python type name (`list`, `str`, ...).
    NotMapping(&'static str),
}

/// A field's value as a parser produced it.
#[derive(Clone, Debug)]
pub(super) enum Field {
    /// From JSON: any Python value.
    Json(PyValue),
    /// From a form: always text.
    Text(String),
    /// A multipart file part, by its sanitized file name (what `str()` of it gives).
    File(String),
}

impl Default for RequestData {
    fn default() -> Self {
        RequestData {
            body: Body::Mapping(IndexMap::new()),
        }
    }
}

impl RequestData {
    /// Whether the body had no fields at all (an empty mapping, or not a mapping).
    pub fn is_empty(&self) -> bool {
        match &self.body {
            Body::Mapping(fields) => fields.is_empty(),
            Body::Null | Body::NotMapping(_) => true,
        }
    }

    /// Whether the body has a field of this name (any value, even null).
    pub fn contains(&self, name: &str) -> bool {
        matches!(&self.body, Body::Mapping(fields) if fields.contains_key(name))
    }

    /// Whether a mapping lacks this field or has it as text that is blank once trimmed (what
    /// `CharField` calls "required" or "may not be blank"). A body that is no mapping, or a
    /// field of another type (null, a number, a file), is not: its error is the answer.
    pub fn lacks(&self, name: &str) -> bool {
        let Body::Mapping(fields) = &self.body else {
            return false;
        };
        match fields.get(name) {
            None => true,
            Some(Field::Text(text)) => python::strip(text).is_empty(),
            Some(Field::Json(PyValue::Str(s))) => {
                s.surrogate.is_none() && python::strip(&s.text).is_empty()
            }
            Some(_) => false,
        }
    }

    /// The same data with `name` set to `value` as a form would give it: for a value the
    /// request carried elsewhere than in its body (a cookie). No-op on a body that is no
    /// mapping.
    pub fn with_text(mut self, name: &str, value: String) -> RequestData {
        if let Body::Mapping(fields) = &mut self.body {
            fields.insert(name.to_owned(), Field::Text(value));
        }
        self
    }
}

/// DRF's parsers; a media type takes the first that accepts it.
#[derive(Clone, Copy)]
enum Parser {
    Json,
    Form,
    Multipart,
}

impl Parser {
    const ALL: [Parser; 3] = [Parser::Json, Parser::Form, Parser::Multipart];

    fn media_type(self) -> &'static str {
        match self {
            Parser::Json => "application/json",
            Parser::Form => "application/x-www-form-urlencoded",
            Parser::Multipart => "multipart/form-data",
        }
    }
}

/// DRF refuses longer Content-Types outright (415).
const MAX_MEDIA_TYPE_LENGTH: usize = 256;

/// Parses the body as DRF's JSONParser / FormParser / MultiPartParser would, chosen by
/// Content-Type. An empty body is an empty mapping whatever the type (DRF consults no parser
/// when Content-Length is 0); a body without Content-Type is a 415 naming `""`.
pub fn parse_request_data(
    content_type: Option<&HeaderValue>,
    body: &[u8],
) -> Result<RequestData, DrfError> {
    if body.is_empty() {
        return Ok(RequestData::default());
    }
    // What nearly every API client sends: JSON in UTF-8, settled without parsing the header.
    if content_type.is_some_and(|v| v.as_bytes() == Parser::Json.media_type().as_bytes()) {
        return Ok(RequestData {
            body: parse_json(body, Charset::Utf8)?,
        });
    }
    // WSGI hands header values over as Latin-1 text.
    let raw = content_type
        .map(|v| latin1(v.as_bytes()))
        .unwrap_or_default();
    parse_with_content_type(raw, body)
}

fn parse_with_content_type(raw: String, body: &[u8]) -> Result<RequestData, DrfError> {
    let unsupported = || DrfError::UnsupportedMediaType(raw.clone());
    // Django reads the charset when it builds the request; a header it can't parse is a 500
    // there. doorman refuses it as an unsupported media type.
    let (_, params) = parse_header_parameters(&raw).map_err(|_| unsupported())?;
    if raw.chars().count() > MAX_MEDIA_TYPE_LENGTH {
        return Err(unsupported());
    }
    let media = MediaType::parse(&raw);
    let parser = Parser::ALL
        .into_iter()
        .find(|p| MediaType::parse(p.media_type()).satisfies(&media))
        .ok_or_else(unsupported)?;
    let charset = request_charset(params.get("charset").map(String::as_str))?;
    let body = match parser {
        Parser::Json => parse_json(body, charset)?,
        Parser::Form => {
            // Too many fields: Django's own HTML 400 page there, DRF's JSON shape here.
            let pairs = form::parse(body, charset)
                .map_err(|_| DrfError::ParseError(form::TOO_MANY_FIELDS.into()))?;
            Body::Mapping(text_fields(pairs))
        }
        Parser::Multipart => parse_multipart(&raw, body, charset)?,
    };
    Ok(RequestData { body })
}

/// Django's `request.encoding` (the charset parameter if Python knows it, else UTF-8) and
/// DRF's refusal of codecs that don't produce text.
fn request_charset(name: Option<&str>) -> Result<Charset, DrfError> {
    let Some(name) = name else {
        return Ok(Charset::Utf8);
    };
    match charset::lookup(name) {
        Lookup::Text(charset) => Ok(charset),
        // Unknown to Python, Django falls back to UTF-8; a Python codec doorman lacks reads the
        // same for ASCII bodies.
        Lookup::Unknown => Ok(Charset::Utf8),
        Lookup::NotText => Err(DrfError::ParseError(format!(
            "Unsupported charset \"{name}\" in request Content-Type header."
        ))),
    }
}

fn parse_json(body: &[u8], charset: Charset) -> Result<Body, DrfError> {
    let parse_error =
        |message: String| DrfError::ParseError(format!("JSON parse error - {message}"));
    let text = charset.decode_stream(body).map_err(parse_error)?;
    let value = json::loads(&text).map_err(|e| match e {
        // CPython raises RecursionError here, which DRF doesn't catch (a 500 there).
        JsonError::Invalid(message) | JsonError::TooDeep(message) => parse_error(message),
    })?;
    Ok(match value {
        PyValue::Dict(members) => Body::Mapping(
            members
                .into_iter()
                .map(|(name, value)| (name, Field::Json(value)))
                .collect(),
        ),
        PyValue::Null => Body::Null,
        other => Body::NotMapping(other.type_name()),
    })
}

fn text_fields(pairs: Vec<(String, String)>) -> IndexMap<String, Field> {
    let mut fields = IndexMap::new();
    for (name, value) in pairs {
        fields.insert(name, Field::Text(value));
    }
    fields
}

fn parse_multipart(raw: &str, body: &[u8], charset: Charset) -> Result<Body, DrfError> {
    let parsed = multipart::parse(raw, body, charset).map_err(|e| match e {
        multipart::MultipartError::Parse(message) => {
            DrfError::ParseError(format!("Multipart form parse error - {message}"))
        }
        // Django's own HTML 400 page there, DRF's JSON shape here.
        multipart::MultipartError::TooMany(message) => DrfError::ParseError(message.into()),
    })?;
    // `request.data` is the text fields updated with the files: a file wins a shared name.
    let mut fields = text_fields(parsed.fields);
    for (name, file_name) in parsed.files {
        fields.insert(name, Field::File(file_name));
    }
    Ok(Body::Mapping(fields))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::char_fields;
    use super::*;

    fn parse(content_type: &str, body: &[u8]) -> Result<RequestData, DrfError> {
        parse_request_data(Some(&HeaderValue::from_str(content_type).unwrap()), body)
    }

    /// `Content-Type: application/json`, settled without parsing the header, reads every body
    /// as the full negotiation does.
    #[test]
    fn plain_json_reads_as_the_full_negotiation_would() {
        let bodies: [&[u8]; 6] = [
            br#"{"token": "a.b.c", "n": 1}"#,
            b"[1, 2]",
            b"{\"a\": ",
            b"\xff\xfe{}",
            b"token=a.b.c",
            br#"{"a": "\u00e9", "a": "last"}"#,
        ];
        for body in bodies {
            let fast = parse("application/json", body);
            let full = parse_with_content_type("application/json".to_owned(), body);
            assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{body:?}");
        }
    }

    #[test]
    fn a_field_lacking_is_absent_or_blank_text_only() {
        let json = |body: &str| parse("application/json", body.as_bytes()).unwrap();
        for lacking in [
            json("{}"),
            json(r#"{"refresh": ""}"#),
            json(r#"{"refresh": " \t"}"#),
            parse("application/x-www-form-urlencoded", b"refresh=").unwrap(),
            parse_request_data(None, b"").unwrap(),
        ] {
            assert!(lacking.lacks("refresh"), "{lacking:?}");
            let filled = lacking.with_text("refresh", "a.b.c".to_owned());
            assert_eq!(char_fields(&filled, &["refresh"]).unwrap(), ["a.b.c"]);
        }
        for given in [
            json(r#"{"refresh": "x"}"#),
            json(r#"{"refresh": null}"#),
            json(r#"{"refresh": 1}"#),
            json("null"),
            json("[]"),
        ] {
            assert!(!given.lacks("refresh"), "{given:?}");
        }
        let not_mapping = json("[]").with_text("refresh", "a.b.c".to_owned());
        assert!(char_fields(&not_mapping, &["refresh"]).is_err());
    }

    #[test]
    fn empty_body_is_an_empty_mapping_whatever_the_type() {
        for content_type in ["application/json", "text/plain", "multipart/form-data"] {
            let data = parse(content_type, b"").unwrap();
            assert!(data.is_empty() && !data.contains("username"));
        }
        assert!(parse_request_data(None, b"").unwrap().is_empty());
    }

    #[test]
    fn fields_are_looked_up_by_name() {
        let data = parse("application/json", br#"{"a":null,"b":1}"#).unwrap();
        assert!(data.contains("a") && data.contains("b") && !data.contains("c"));
        assert!(!parse("application/json", b"[]").unwrap().contains("a"));
    }

    /// Django can't parse these Content-Types when it builds the request (the reference app
    /// answers 500); doorman refuses them as unsupported media types.
    #[test]
    fn unparseable_content_type_is_415_not_500() {
        for content_type in [
            "application/json; charset*=bogus''x",
            "application/json; a*=utf-8''%41; a*0=b",
        ] {
            let error = parse(content_type, b"{}").unwrap_err();
            assert_eq!(error.status(), http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
            assert_eq!(
                error.body(),
                serde_json::json!({
                    "detail": format!("Unsupported media type \"{content_type}\" in request.")
                })
            );
        }
    }

    /// Arbitrary bytes under every parser never panic (a cheap stand-in for a fuzz target).
    #[test]
    fn arbitrary_bodies_never_panic() {
        const PIECES: &[&[u8]] = &[
            b"{",
            b"}",
            b"[",
            b"]",
            b"\"",
            b":",
            b",",
            b"\\",
            b"u",
            b"d8",
            b"00",
            b"1",
            b"-",
            b".",
            b"e",
            b" ",
            b"\r\n",
            b"\r\n\r\n",
            b"--B",
            b"=",
            b"&",
            b"%",
            b"%C3",
            b"+",
            b"\xff",
            b"\xe2\x82",
            b"name=\"username\"",
            b"Content-Disposition: form-data; ",
            b"filename=\"f\"",
            b"Content-Transfer-Encoding: base64",
            b"username",
            b"null",
            b"true",
            b"NaN",
            b"&#47;",
        ];
        let content_types = [
            "application/json",
            "application/json; charset=utf-8-sig",
            "application/json; charset=ascii",
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=latin-1",
            "multipart/form-data; boundary=B",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = next() % 40;
            let body: Vec<u8> = (0..len)
                .flat_map(|_| PIECES[(next() % PIECES.len() as u64) as usize].to_vec())
                .collect();
            let content_type = content_types[(next() % content_types.len() as u64) as usize];
            if let Ok(data) = parse(content_type, &body) {
                let _ = char_fields(&data, &["username", "password"]);
            }
        }
    }
}
