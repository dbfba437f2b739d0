//! Media types in `Content-Type` and `Accept` as Django's `parse_header_parameters` reads them
//! (through Python's `email` package: quoting, lower-cased names, RFC 2231 parameters) and as
//! DRF's `_MediaType` compares them.

use indexmap::IndexMap;

use super::charset::{self, Lookup};
use super::python;

/// A header value Django refuses (`ValueError`): an RFC 2231 parameter in an unknown charset.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidHeader;

/// `parse_header_parameters(line)`: the lower-cased main value and the parameters, in order,
/// the last of a repeated name winning.
pub fn parse_header_parameters(
    line: &str,
) -> Result<(String, IndexMap<String, String>), InvalidHeader> {
    if line.is_empty() {
        return Ok((String::new(), IndexMap::new()));
    }
    if !line.contains(';') {
        return Ok((python::strip(line).to_lowercase(), IndexMap::new()));
    }
    let mut pieces = parse_params(line)
        .into_iter()
        .map(|piece| match piece.split_once('=') {
            Some((name, value)) => (
                python::strip(name).to_owned(),
                python::strip(value).to_owned(),
            ),
            None => (python::strip(&piece).to_owned(), String::new()),
        });
    let key = pieces
        .next()
        .map(|(name, _)| name.to_lowercase())
        .unwrap_or_default();
    let mut params = IndexMap::new();
    for (name, value) in decode_params(pieces.collect())? {
        if !name.is_empty() {
            params.insert(name, value);
        }
    }
    Ok((key, params))
}

/// `email.message._parseparam`: split on `;` outside double quotes; lower-case and trim names.
fn parse_params(line: &str) -> Vec<String> {
    let mut rest = format!(";{line}");
    let mut pieces = Vec::new();
    while let Some(after) = rest.strip_prefix(';') {
        let s = after.to_owned();
        let mut end = s.find(';');
        while let Some(e) = end {
            let head = &s[..e];
            let open = head.matches('"').count() - head.matches("\\\"").count();
            if e == 0 || open % 2 == 0 {
                break;
            }
            end = s[e + 1..].find(';').map(|next| next + e + 1);
        }
        let end = end.unwrap_or(s.len());
        let piece = &s[..end];
        let piece = match piece.split_once('=') {
            Some((name, value)) => format!(
                "{}={}",
                python::strip(name).to_lowercase(),
                python::strip(value)
            ),
            None => piece.to_owned(),
        };
        pieces.push(python::strip(&piece).to_owned());
        rest = s[end..].to_owned();
    }
    pieces
}

/// `email.utils.unquote`.
fn unquote(value: &str) -> String {
    if value.chars().count() > 1 {
        if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            return inner.replace("\\\\", "\\").replace("\\\"", "\"");
        }
        if let Some(inner) = value.strip_prefix('<').and_then(|v| v.strip_suffix('>')) {
            return inner.to_owned();
        }
    }
    value.to_owned()
}

/// `email.utils.quote`.
fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// One piece of an RFC 2231 parameter (`name*0*=...`).
struct Continuation {
    number: Option<u64>,
    value: String,
    encoded: bool,
}

/// `email.utils.decode_params` followed by `get_params`' unquoting and Django's
/// `collapse_rfc2231_value`: plain parameters first, RFC 2231 ones after them.
fn decode_params(params: Vec<(String, String)>) -> Result<Vec<(String, String)>, InvalidHeader> {
    let mut plain = Vec::new();
    let mut extended: IndexMap<String, Vec<Continuation>> = IndexMap::new();
    for (name, value) in params {
        let encoded = name.ends_with('*');
        let value = unquote(&value);
        match rfc2231_name(&name) {
            Some((base, number)) => extended.entry(base).or_default().push(Continuation {
                number,
                value,
                encoded,
            }),
            None => plain.push((name, unquote(&format!("\"{}\"", quote(&value))))),
        }
    }
    for (name, mut pieces) in extended {
        plain.push((name, collapse(&mut pieces)?));
    }
    Ok(plain)
}

/// `^(\w+)\*(([0-9]+)\*?)?$`: the base name and the continuation number.
fn rfc2231_name(name: &str) -> Option<(String, Option<u64>)> {
    let (base, suffix) = name.split_once('*')?;
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
    if !word(base) {
        return None;
    }
    if suffix.is_empty() {
        return Some((base.to_owned(), None));
    }
    let digits = suffix.strip_suffix('*').unwrap_or(suffix);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base.to_owned(), Some(digits.parse().unwrap_or(u64::MAX))))
}

/// Joins an RFC 2231 parameter's pieces and decodes `charset'language'%XX` values.
fn collapse(pieces: &mut [Continuation]) -> Result<String, InvalidHeader> {
    // Python sorts (number, value, encoded) tuples; a numbered piece beside an unnumbered one
    // can't be compared (TypeError in Python): refuse the header.
    let numbered = pieces.iter().filter(|p| p.number.is_some()).count();
    if numbered != 0 && numbered != pieces.len() {
        return Err(InvalidHeader);
    }
    pieces.sort_by(|a, b| (a.number, &a.value, a.encoded).cmp(&(b.number, &b.value, b.encoded)));
    let mut joined = String::new();
    let mut is_extended = false;
    for piece in pieces.iter() {
        if piece.encoded {
            joined.push_str(&percent_decode_latin1(&piece.value));
            is_extended = true;
        } else {
            joined.push_str(&piece.value);
        }
    }
    let quoted = quote(&joined);
    if !is_extended {
        return Ok(unquote(&format!("\"{quoted}\"")));
    }
    let parts: Vec<&str> = quoted.splitn(3, '\'').collect();
    let (charset_name, text) = match parts.as_slice() {
        [charset_name, _language, text] => (Some(*charset_name), *text),
        _ => (None, quoted.as_str()),
    };
    let text = unquote(&format!("\"{text}\""));
    let codec = match charset_name {
        None => Lookup::Text(charset::Charset::Ascii),
        Some("") => return Ok(unquote(&text)),
        Some(name) => charset::lookup(name),
    };
    match codec {
        Lookup::Text(codec) => {
            let raw: Vec<u8> = text
                .chars()
                .map(|c| u8::try_from(c).unwrap_or(b'?'))
                .collect();
            Ok(codec.decode_replace(&raw))
        }
        Lookup::NotText => Ok(unquote(&text)),
        Lookup::Unknown => Err(InvalidHeader),
    }
}

/// `urllib.parse.unquote(s, encoding="latin-1")`: `%XX` to the character of that byte.
fn percent_decode_latin1(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let hex = rest
            .get(pos + 1..pos + 3)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[pos + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[pos + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// DRF's `_MediaType`: a media type string split into type, subtype and parameters.
#[derive(Clone, Debug)]
pub struct MediaType {
    /// The text as given.
    pub orig: String,
    pub main: String,
    pub sub: String,
    pub params: IndexMap<String, String>,
}

impl MediaType {
    /// A header Django can't parse becomes a type that matches nothing, as in DRF.
    pub fn parse(text: &str) -> MediaType {
        let (full, params) = parse_header_parameters(text).unwrap_or_default();
        let (main, sub) = full.split_once('/').unwrap_or((full.as_str(), ""));
        MediaType {
            orig: text.to_owned(),
            main: main.to_owned(),
            sub: sub.to_owned(),
            params,
        }
    }

    /// `_MediaType.match`: does `self` (a parser's or renderer's own type) satisfy `other`?
    pub fn satisfies(&self, other: &MediaType) -> bool {
        let params_agree = self
            .params
            .iter()
            .all(|(key, value)| key == "q" || other.params.get(key) == Some(value));
        let part = |mine: &str, theirs: &str| mine == "*" || theirs == "*" || mine == theirs;
        params_agree && part(&self.sub, &other.sub) && part(&self.main, &other.main)
    }

    /// `_MediaType.precedence`: `*/*` 0, `type/*` 1, `type/sub` 2, with parameters other than
    /// `q` 3.
    pub fn precedence(&self) -> u8 {
        if self.main == "*" {
            0
        } else if self.sub == "*" {
            1
        } else if self.params.is_empty() || self.params.keys().eq(["q"]) {
            2
        } else {
            3
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> (String, Vec<(String, String)>) {
        let (key, params) = parse_header_parameters(line).unwrap();
        (key, params.into_iter().collect())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parameters_as_django_reads_them() {
        // Expected values from Django 5.2's parse_header_parameters on CPython 3.11.
        assert_eq!(
            parsed(" Application/JSON "),
            ("application/json".into(), vec![])
        );
        assert_eq!(
            parsed("Application/JSON ; CharSet = \"UTF-8\" ; indent=4"),
            (
                "application/json".into(),
                pairs(&[("charset", "UTF-8"), ("indent", "4")])
            )
        );
        assert_eq!(
            parsed("multipart/form-data; boundary=\"a;b\"; x"),
            (
                "multipart/form-data".into(),
                pairs(&[("boundary", "a;b"), ("x", "")])
            )
        );
        assert_eq!(
            parsed("a/b; boundary=<xyz>; q=\"a\\\"b\""),
            ("a/b".into(), pairs(&[("boundary", "xyz"), ("q", "a\"b")]))
        );
        assert_eq!(
            parsed("a/b; k=1; k=2; =3"),
            ("a/b".into(), pairs(&[("k", "2")]))
        );
        assert_eq!(
            parsed("a/b; title*=utf-8''%E2%82%AC; boundary*0=ab; boundary*1=cd"),
            ("a/b".into(), pairs(&[("title", "€"), ("boundary", "abcd")]))
        );
        assert_eq!(
            parse_header_parameters("a/b; t*=bogus''x"),
            Err(InvalidHeader)
        );
    }

    #[test]
    fn precedence_and_matching() {
        let json = MediaType::parse("application/json");
        assert_eq!(MediaType::parse("*/*").precedence(), 0);
        assert_eq!(MediaType::parse("application/*").precedence(), 1);
        assert_eq!(MediaType::parse("application/json; q=0.1").precedence(), 2);
        assert_eq!(
            MediaType::parse("application/json; indent=2").precedence(),
            3
        );
        assert!(json.satisfies(&MediaType::parse("*/*")));
        assert!(json.satisfies(&MediaType::parse("*/json")));
        assert!(json.satisfies(&MediaType::parse("APPLICATION/JSON; charset=latin-1")));
        assert!(!json.satisfies(&MediaType::parse("*")));
        assert!(!json.satisfies(&MediaType::parse("application/vnd.api+json")));
        assert!(!json.satisfies(&MediaType::parse("")));
    }
}
