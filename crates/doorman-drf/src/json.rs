//! JSON read the way CPython's `json.loads` reads it, because DRF's parse errors quote Python's
//! messages and positions (`Expecting value: line 1 column 1 (char 0)`) and `CharField` sees
//! Python values (`str()` of a number, lone surrogates in strings).
//!
//! Iterative, with an explicit depth bound: nesting that makes Python raise RecursionError is an
//! error here too, never a deep Rust stack.
//!
//! It walks the UTF-8 bytes (every character JSON's grammar looks at is ASCII, so every position
//! it stops at is a character boundary) and counts code points only for an error's position,
//! as Python reports it. Walking a `Vec<char>` instead cost a copy of the whole text at four
//! bytes a character and a re-encoding of every string; that was 4-5 % of
//! `POST /api/token/verify/`.

use indexmap::IndexMap;

/// The deepest nesting the reference app parses; one more level and CPython raises
/// RecursionError (measured on the reference app: 964 levels pass, 965 fail).
const MAX_DEPTH: usize = 964;
/// CPython refuses to convert integers with more digits than this (CVE-2020-10735).
const MAX_INT_DIGITS: usize = 4300;

/// A Python string: its text, plus the first lone surrogate (`"\ud800"`) if the JSON had one.
/// Rust strings can't hold a lone surrogate; it stands as U+FFFD in `text`.
#[derive(Clone, Debug, PartialEq)]
pub struct PyStr {
    pub text: String,
    pub surrogate: Option<u32>,
}

/// A value as `json.loads` returns it.
#[derive(Clone, Debug, PartialEq)]
pub enum PyValue {
    Null,
    Bool(bool),
    /// The literal's digits, which is what Python's `str()` of the int gives back.
    Int(String),
    Float(f64),
    Str(PyStr),
    List(Vec<PyValue>),
    Dict(IndexMap<String, PyValue>),
}

impl PyValue {
    /// `type(value).__name__`, as in "Expected a dictionary, but got list."
    pub fn type_name(&self) -> &'static str {
        match self {
            PyValue::Null => "NoneType",
            PyValue::Bool(_) => "bool",
            PyValue::Int(_) => "int",
            PyValue::Float(_) => "float",
            PyValue::Str(_) => "str",
            PyValue::List(_) => "list",
            PyValue::Dict(_) => "dict",
        }
    }
}

/// Why `json.loads` failed, as the text DRF puts after "JSON parse error - ".
#[derive(Debug, PartialEq)]
pub enum JsonError {
    /// A `ValueError`, which DRF reports.
    Invalid(String),
    /// CPython's RecursionError, which DRF doesn't catch (a 500 there).
    TooDeep(String),
}

/// `json.loads(text)` with DRF's `parse_constant` (NaN and Infinity refused).
pub fn loads(text: &str) -> Result<PyValue, JsonError> {
    let parser = Parser {
        text,
        s: text.as_bytes(),
    };
    if text.starts_with('\u{feff}') {
        return Err(parser.err("Unexpected UTF-8 BOM (decode using utf-8-sig)", 0));
    }
    let start = parser.skip_ws(0);
    let (value, end) = parser.value(start)?;
    let end = parser.skip_ws(end);
    if end != text.len() {
        return Err(parser.err("Extra data", end));
    }
    Ok(value)
}

/// A container being filled while the parser walks down and back up.
enum Frame {
    List(Vec<PyValue>),
    /// The members so far and the key whose value is being read.
    Dict(IndexMap<String, PyValue>, String),
}

/// Positions are byte offsets into `text` (`s` is its bytes).
struct Parser<'a> {
    text: &'a str,
    s: &'a [u8],
}

impl Parser<'_> {
    fn skip_ws(&self, mut i: usize) -> usize {
        while matches!(self.peek(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    }

    fn peek(&self, i: usize) -> Option<u8> {
        self.s.get(i).copied()
    }

    /// `JSONDecodeError.__str__`: "<msg>: line L column C (char P)", P and C counting code
    /// points, as Python indexes its strings.
    fn err(&self, msg: &str, at: usize) -> JsonError {
        let mut at = at.min(self.text.len());
        // Every position the parser reports is on a boundary; this only keeps a slip from
        // turning into a panic.
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        let before = &self.text[..at];
        let pos = before.chars().count();
        let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
        let column = match before.rfind('\n') {
            Some(newline) => pos - before[..newline].chars().count(),
            None => pos + 1,
        };
        JsonError::Invalid(format!("{msg}: line {line} column {column} (char {pos})"))
    }

    /// `scan_once` at `start`, containers kept on an explicit stack.
    fn value(&self, start: usize) -> Result<(PyValue, usize), JsonError> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut i = start;
        loop {
            let (mut value, mut end) = match self.peek(i) {
                Some(open @ (b'{' | b'[')) if stack.len() >= MAX_DEPTH => {
                    let kind = if open == b'{' { "object" } else { "array" };
                    return Err(JsonError::TooDeep(format!(
                        "maximum recursion depth exceeded while decoding a JSON {kind} from a unicode string"
                    )));
                }
                Some(b'{') => {
                    let j = self.skip_ws(i + 1);
                    if self.peek(j) == Some(b'}') {
                        (PyValue::Dict(IndexMap::new()), j + 1)
                    } else {
                        let (key, after) = self.key(j)?;
                        stack.push(Frame::Dict(IndexMap::new(), key));
                        i = after;
                        continue;
                    }
                }
                Some(b'[') => {
                    let j = self.skip_ws(i + 1);
                    if self.peek(j) == Some(b']') {
                        (PyValue::List(Vec::new()), j + 1)
                    } else {
                        stack.push(Frame::List(Vec::new()));
                        i = j;
                        continue;
                    }
                }
                _ => self.scalar(i)?,
            };
            // Hand the value to its container, closing containers as far as they end here.
            loop {
                let Some(frame) = stack.last_mut() else {
                    return Ok((value, end));
                };
                let j = self.skip_ws(end);
                let closer = match frame {
                    Frame::List(items) => {
                        items.push(value);
                        b']'
                    }
                    Frame::Dict(members, key) => {
                        // A repeated key keeps its first place and takes the last value.
                        members.insert(std::mem::take(key), value);
                        b'}'
                    }
                };
                match self.peek(j) {
                    Some(c) if c == closer => {
                        value = match stack.pop() {
                            Some(Frame::List(items)) => PyValue::List(items),
                            Some(Frame::Dict(members, _)) => PyValue::Dict(members),
                            None => PyValue::Null,
                        };
                        end = j + 1;
                    }
                    Some(b',') => {
                        let k = self.skip_ws(j + 1);
                        if let Frame::Dict(_, key) = frame {
                            let (next_key, after) = self.key(k)?;
                            *key = next_key;
                            i = after;
                        } else {
                            i = k;
                        }
                        break;
                    }
                    _ => return Err(self.err("Expecting ',' delimiter", j)),
                }
            }
        }
    }

    /// A member name and its `:`; returns the position of the value.
    fn key(&self, i: usize) -> Result<(String, usize), JsonError> {
        if self.peek(i) != Some(b'"') {
            return Err(self.err("Expecting property name enclosed in double quotes", i));
        }
        let (key, end) = self.string(i + 1)?;
        let j = self.skip_ws(end);
        if self.peek(j) != Some(b':') {
            return Err(self.err("Expecting ':' delimiter", j));
        }
        Ok((key.text, self.skip_ws(j + 1)))
    }

    fn starts_with(&self, i: usize, word: &str) -> bool {
        self.s
            .get(i..)
            .is_some_and(|rest| rest.starts_with(word.as_bytes()))
    }

    fn scalar(&self, i: usize) -> Result<(PyValue, usize), JsonError> {
        let constant = |name: &str| {
            // DRF's strict_constant: `ValueError('... JSON compliant: ' + repr(o))`.
            JsonError::Invalid(format!(
                "Out of range float values are not JSON compliant: '{name}'"
            ))
        };
        match self.peek(i) {
            Some(b'"') => {
                let (s, end) = self.string(i + 1)?;
                Ok((PyValue::Str(s), end))
            }
            Some(b'n') if self.starts_with(i, "null") => Ok((PyValue::Null, i + 4)),
            Some(b't') if self.starts_with(i, "true") => Ok((PyValue::Bool(true), i + 4)),
            Some(b'f') if self.starts_with(i, "false") => Ok((PyValue::Bool(false), i + 5)),
            Some(b'N') if self.starts_with(i, "NaN") => Err(constant("NaN")),
            Some(b'I') if self.starts_with(i, "Infinity") => Err(constant("Infinity")),
            Some(b'-') if self.starts_with(i, "-Infinity") => Err(constant("-Infinity")),
            _ => self.number(i),
        }
    }

    /// `_match_number_unicode`: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`.
    fn number(&self, start: usize) -> Result<(PyValue, usize), JsonError> {
        let digit = |i: usize| self.peek(i).is_some_and(|c| c.is_ascii_digit());
        let mut i = start;
        if self.peek(i) == Some(b'-') {
            i += 1;
        }
        match self.peek(i) {
            Some(b'1'..=b'9') => {
                i += 1;
                while digit(i) {
                    i += 1;
                }
            }
            Some(b'0') => i += 1,
            _ => return Err(self.err("Expecting value", start)),
        }
        let mut is_float = false;
        if self.peek(i) == Some(b'.') && digit(i + 1) {
            is_float = true;
            i += 2;
            while digit(i) {
                i += 1;
            }
        }
        if matches!(self.peek(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(self.peek(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if digit(j) {
                while digit(j) {
                    j += 1;
                }
                is_float = true;
                i = j;
            }
        }
        // The grammar above is ASCII, so these are character boundaries.
        let literal = self.text[start..i].to_owned();
        if is_float {
            // Python's float() of a literal in this grammar never fails; overflow is inf.
            let value = literal.parse::<f64>().unwrap_or(f64::NAN);
            return Ok((PyValue::Float(value), i));
        }
        let digits = literal.trim_start_matches('-').len();
        if digits > MAX_INT_DIGITS {
            return Err(JsonError::Invalid(format!(
                "Exceeds the limit ({MAX_INT_DIGITS} digits) for integer string conversion: value has {digits} digits; use sys.set_int_max_str_digits() to increase the limit"
            )));
        }
        let text = if literal == "-0" { "0".into() } else { literal };
        Ok((PyValue::Int(text), i))
    }

    /// `scanstring` from just after the opening quote, strict (no raw control characters).
    fn string(&self, start: usize) -> Result<(PyStr, usize), JsonError> {
        let quote = start - 1;
        let unterminated = || self.err("Unterminated string starting at", quote);
        let mut text = String::new();
        let mut surrogate = None;
        let mut i = start;
        loop {
            match self.peek(i) {
                None => return Err(unterminated()),
                Some(b'"') => return Ok((PyStr { text, surrogate }, i + 1)),
                Some(b'\\') => {}
                Some(c) if c <= 0x1f => {
                    return Err(self.err("Invalid control character at", i));
                }
                Some(_) => {
                    // The whole run up to the next quote, backslash or control character (all
                    // ASCII, so the run ends on a character boundary).
                    let run = self.s[i..]
                        .iter()
                        .take_while(|c| !matches!(c, b'"' | b'\\') && **c > 0x1f)
                        .count();
                    text.push_str(&self.text[i..i + run]);
                    i += run;
                    continue;
                }
            }
            let escaped = self.peek(i + 1).ok_or_else(unterminated)?;
            if escaped != b'u' {
                text.push(match escaped {
                    b'"' => '"',
                    b'\\' => '\\',
                    b'/' => '/',
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
                    _ => return Err(self.err("Invalid \\escape", i)),
                });
                i += 2;
                continue;
            }
            let (code, next) = self.unicode_escape(i + 1)?;
            match char::from_u32(code) {
                Some(c) => text.push(c),
                None => {
                    surrogate.get_or_insert(code);
                    text.push('\u{fffd}');
                }
            }
            i = next;
        }
    }

    /// `\uXXXX` with `u` at `u_at`, joining a following low surrogate escape into one code point
    /// as CPython does; returns the code point and where the string continues.
    fn unicode_escape(&self, u_at: usize) -> Result<(u32, usize), JsonError> {
        let len = self.s.len();
        let hex_end = u_at + 5;
        if hex_end >= len {
            return Err(self.err("Invalid \\uXXXX escape", u_at));
        }
        let high = self
            .hex4(u_at + 1)
            .ok_or_else(|| self.err("Invalid \\uXXXX escape", u_at))?;
        let is_pair_start = (0xD800..=0xDBFF).contains(&high)
            && hex_end + 6 < len
            && self.peek(hex_end) == Some(b'\\')
            && self.peek(hex_end + 1) == Some(b'u');
        if !is_pair_start {
            return Ok((high, hex_end));
        }
        let low = self
            .hex4(hex_end + 2)
            .ok_or_else(|| self.err("Invalid \\uXXXX escape", hex_end + 1))?;
        if (0xDC00..=0xDFFF).contains(&low) {
            Ok((
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00),
                hex_end + 6,
            ))
        } else {
            Ok((high, hex_end))
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        self.s
            .get(at..at + 4)?
            .iter()
            .try_fold(0u32, |acc, c| Some(acc * 16 + char::from(*c).to_digit(16)?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        match loads(s).unwrap_err() {
            JsonError::Invalid(m) | JsonError::TooDeep(m) => m,
        }
    }

    #[test]
    fn python_messages_and_positions() {
        // Expected texts from CPython 3.11's json.loads.
        for (text, message) in [
            ("", "Expecting value: line 1 column 1 (char 0)"),
            ("nope", "Expecting value: line 1 column 1 (char 0)"),
            (
                "{",
                "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            ),
            (
                "{'a': 1}",
                "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            ),
            (
                r#"{"a" 1}"#,
                "Expecting ':' delimiter: line 1 column 6 (char 5)",
            ),
            (
                r#"{"a": 1 "b": 2}"#,
                "Expecting ',' delimiter: line 1 column 9 (char 8)",
            ),
            (
                r#"{"a": 1,}"#,
                "Expecting property name enclosed in double quotes: line 1 column 9 (char 8)",
            ),
            ("[1,]", "Expecting value: line 1 column 4 (char 3)"),
            ("[1 2]", "Expecting ',' delimiter: line 1 column 4 (char 3)"),
            (r#"{"a": }"#, "Expecting value: line 1 column 7 (char 6)"),
            ("{}\n x", "Extra data: line 2 column 2 (char 4)"),
            (
                r#""abc"#,
                "Unterminated string starting at: line 1 column 1 (char 0)",
            ),
            (
                "\"a\nb\"",
                "Invalid control character at: line 1 column 3 (char 2)",
            ),
            (r#""\x""#, "Invalid \\escape: line 1 column 2 (char 1)"),
            (
                r#""\u12""#,
                "Invalid \\uXXXX escape: line 1 column 3 (char 2)",
            ),
            (
                r#""\u12zz""#,
                "Invalid \\uXXXX escape: line 1 column 3 (char 2)",
            ),
            (
                r#""\ud800\uzzzz""#,
                "Invalid \\uXXXX escape: line 1 column 9 (char 8)",
            ),
            (
                "\u{feff}{}",
                "Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)",
            ),
            (
                "NaN",
                "Out of range float values are not JSON compliant: 'NaN'",
            ),
            (
                "[-Infinity]",
                "Out of range float values are not JSON compliant: '-Infinity'",
            ),
            ("01", "Extra data: line 1 column 2 (char 1)"),
            ("{\"é\": x}", "Expecting value: line 1 column 7 (char 6)"),
        ] {
            assert_eq!(err(text), message, "{text:?}");
        }
    }

    /// Positions count code points, not bytes, before and across lines, whatever the width of
    /// the characters before them (expected texts from CPython 3.11's json.loads).
    #[test]
    fn positions_after_wide_characters_count_code_points() {
        for (text, message) in [
            (
                "[\"😀\", \"é\" x]",
                "Expecting ',' delimiter: line 1 column 11 (char 10)",
            ),
            (
                "{\"ключ\": 1,\n \"b\": é}",
                "Expecting value: line 2 column 7 (char 18)",
            ),
            (
                r#""é\u12zz""#,
                "Invalid \\uXXXX escape: line 1 column 4 (char 3)",
            ),
            (
                "[\"✓\",\n\"a\tb\"]",
                "Invalid control character at: line 2 column 3 (char 8)",
            ),
            (
                "\"日本語",
                "Unterminated string starting at: line 1 column 1 (char 0)",
            ),
            (
                "{\"a\": \"🦀\"} x",
                "Extra data: line 1 column 12 (char 11)",
            ),
            (
                r#""\ud800\u12é""#,
                "Invalid \\uXXXX escape: line 1 column 9 (char 8)",
            ),
            (
                "[\"é\", 01]",
                "Expecting ',' delimiter: line 1 column 8 (char 7)",
            ),
            (r#""é\x""#, "Invalid \\escape: line 1 column 3 (char 2)"),
            (
                "[\n\"🦀🦀\",\n  nul]",
                "Expecting value: line 3 column 3 (char 10)",
            ),
            (
                "{\"é\" 1}",
                "Expecting ':' delimiter: line 1 column 6 (char 5)",
            ),
        ] {
            assert_eq!(err(text), message, "{text:?}");
        }
    }

    #[test]
    fn values() {
        let PyValue::Dict(d) =
            loads(r#"{"a": 1, "b": [true, null, 1.5e3, "x\u00e9\ud83d\ude00"], "a": -0}"#).unwrap()
        else {
            panic!("not a dict")
        };
        assert_eq!(d.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(d["a"], PyValue::Int("0".into()));
        let PyValue::List(items) = &d["b"] else {
            panic!("not a list")
        };
        assert_eq!(items[2], PyValue::Float(1500.0));
        assert_eq!(
            items[3],
            PyValue::Str(PyStr {
                text: "xé😀".into(),
                surrogate: None
            })
        );
        let PyValue::Str(lone) = loads(r#""\udc00\ud800x""#).unwrap() else {
            panic!("not a str")
        };
        assert_eq!(lone.surrogate, Some(0xDC00));
        // Plain runs between escapes, at both ends and none at all, are kept whole.
        for (json, text) in [
            (r#""ab\"cd\\ef\tgh\u00e9ij""#, "ab\"cd\\ef\tghéij"),
            (r#""\n""#, "\n"),
            (r#""""#, ""),
            ("\"é✓🦀 plain\"", "é✓🦀 plain"),
        ] {
            let PyValue::Str(got) = loads(json).unwrap() else {
                panic!("not a str: {json}")
            };
            assert_eq!(got.text, text, "{json}");
        }
    }

    #[test]
    fn nesting_beyond_pythons_limit_is_an_error_not_a_crash() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(loads(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(matches!(loads(&deep), Err(JsonError::TooDeep(_))));
        assert!(matches!(
            loads(&"{\"a\":".repeat(100_000)),
            Err(JsonError::TooDeep(_))
        ));
    }
}
