//! `application/x-www-form-urlencoded` bodies as Django's `QueryDict` reads them: `&`-separated
//! (not `;`), `+` as space, bad `%` escapes kept as they are, undecodable bytes replaced, and a
//! body that isn't valid in its charset read as Latin-1 instead.

use super::charset::{Charset, latin1};

/// Django's `DATA_UPLOAD_MAX_NUMBER_FIELDS`.
pub const MAX_FIELDS: usize = 1000;

/// Django's `TooManyFieldsSent`: a 400 in Django (as an HTML page).
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyFields;

/// The message Django's exception carries.
pub const TOO_MANY_FIELDS: &str =
    "The number of GET/POST parameters exceeded settings.DATA_UPLOAD_MAX_NUMBER_FIELDS.";

/// `QueryDict(body, encoding=charset)`: the (name, value) pairs in body order.
pub fn parse(body: &[u8], charset: Charset) -> Result<Vec<(String, String)>, TooManyFields> {
    let text = charset.decode_strict(body).unwrap_or_else(|| latin1(body));
    // parse_qsl's max_num_fields: every `&` counts, empty pieces too.
    let fields = if text.is_empty() {
        0
    } else {
        1 + text.matches('&').count()
    };
    if fields > MAX_FIELDS {
        return Err(TooManyFields);
    }
    Ok(text
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            (unquote(name, charset), unquote(value, charset))
        })
        .collect())
}

/// `urllib.parse.unquote(s.replace('+', ' '), charset, 'replace')`: `%XX` escapes in each run of
/// ASCII become bytes decoded in the charset; other characters stay as they are.
fn unquote(text: &str, charset: Charset) -> String {
    let text = text.replace('+', " ");
    if !text.contains('%') {
        return text;
    }
    let mut out = String::new();
    let mut ascii_run = Vec::new();
    for c in text.chars() {
        if c.is_ascii() {
            ascii_run.push(c as u8);
        } else {
            out.push_str(&decode_run(&ascii_run, charset));
            ascii_run.clear();
            out.push(c);
        }
    }
    out.push_str(&decode_run(&ascii_run, charset));
    out
}

/// One ASCII run: percent escapes to bytes (a `%` without two hex digits stays), decoded.
fn decode_run(run: &[u8], charset: Charset) -> String {
    if run.is_empty() {
        return String::new();
    }
    let mut bytes = Vec::with_capacity(run.len());
    let mut i = 0;
    while let Some(&b) = run.get(i) {
        let escaped = (b == b'%')
            .then(|| run.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                bytes.push(byte);
                i += 3;
            }
            None => {
                bytes.push(b);
                i += 1;
            }
        }
    }
    charset.decode_replace(&bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pairs(body: &[u8]) -> Vec<(String, String)> {
        parse(body, Charset::Utf8).unwrap()
    }

    #[test]
    fn query_dict_rules() {
        let p = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        assert_eq!(
            pairs(b"a=1+2&b=%41%zz%4&&c&=d;e=f"),
            [p("a", "1 2"), p("b", "A%zz%4"), p("c", ""), p("", "d;e=f")]
        );
        assert_eq!(pairs(b"a=%C3%A9%C3"), [p("a", "é\u{fffd}")]);
        assert_eq!(pairs("a=é%C3".as_bytes()), [p("a", "é\u{fffd}")]);
        // Not UTF-8 as a whole: read as Latin-1, escapes still decoded as UTF-8.
        assert_eq!(pairs(b"a=\xe9%C3%A9"), [p("a", "éé")]);
        assert_eq!(parse(b"a=%E9", Charset::Latin1).unwrap(), [p("a", "é")]);
        assert_eq!(parse(&b"&".repeat(999), Charset::Utf8).unwrap(), []);
        assert_eq!(parse(&b"&".repeat(1000), Charset::Utf8), Err(TooManyFields));
    }
}
