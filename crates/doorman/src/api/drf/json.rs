//! JSON read the way Python's `json` module reads it, because DRF's parse errors quote Python's
//! messages and positions (`Expecting value: line 1 column 1 (char 0)`) and CharField coerces
//! numbers with Python's `str()`. Iterative over an explicit depth bound: deep nesting is an
//! error, never a stack overflow.

use indexmap::IndexMap;

/// Deeper than this is refused; Python gives up near here with a RecursionError.
const MAX_DEPTH: usize = 500;
/// Python 3.11 refuses to convert integers longer than this (CVE-2020-10735).
const MAX_INT_DIGITS: usize = 4300;

/// A Python string: text, plus the first lone surrogate (`"\ud800"`) if the JSON had one,
/// which Rust strings can't hold and DRF refuses by name.
#[derive(Clone, Debug, PartialEq)]
pub struct PyStr {
    pub text: String,
    pub surrogate: Option<u32>,
}

/// A value as Python's `json.loads` returns it.
#[derive(Clone, Debug, PartialEq)]
pub enum PyValue {
    Null,
    Bool(bool),
    /// The literal's digits (Python ints are exact; `str()` gives them back unchanged).
    Int(String),
    Float(f64),
    Str(PyStr),
    List(Vec<PyValue>),
    Dict(IndexMap<String, PyValue>),
}

impl PyValue {
    /// Python's type name, as in "Expected a dictionary, but got list."
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

/// `json.loads(text)`; the error is the text DRF puts after "JSON parse error - ".
pub fn loads(text: &str) -> Result<PyValue, String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.first() == Some(&'\u{feff}') {
        return Err(at(
            &chars,
            "Unexpected UTF-8 BOM (decode using utf-8-sig)",
            0,
        ));
    }
    let mut parser = Parser { s: &chars };
    let start = parser.skip_ws(0);
    let (value, end) = parser.value(start)?;
    let end = parser.skip_ws(end);
    if end != chars.len() {
        return Err(at(&chars, "Extra data", end));
    }
    Ok(value)
}

/// `JSONDecodeError.__str__`: "<msg>: line L column C (char P)".
fn at(s: &[char], msg: &str, pos: usize) -> String {
    let before = &s[..pos.min(s.len())];
    let line = before.iter().filter(|c| **c == '\n').count() + 1;
    let column = match before.iter().rposition(|c| *c == '\n') {
        Some(nl) => pos - nl,
        None => pos + 1,
    };
    format!("{msg}: line {line} column {column} (char {pos})")
}

struct Parser<'a> {
    s: &'a [char],
}

/// A container being filled while the parser walks down and back up.
enum Frame {
    List(Vec<PyValue>),
    Dict(IndexMap<String, PyValue>, String),
}

impl Parser<'_> {
    fn skip_ws(&self, mut i: usize) -> usize {
        while i < self.s.len() && matches!(self.s[i], ' ' | '\t' | '\n' | '\r') {
            i += 1;
        }
        i
    }

    fn err(&self, msg: &str, pos: usize) -> String {
        at(self.s, msg, pos)
    }

    fn peek(&self, i: usize) -> Option<char> {
        self.s.get(i).copied()
    }

    /// `scan_once` at `i`, with containers handled on an explicit stack.
    fn value(&mut self, start: usize) -> Result<(PyValue, usize), String> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut i = start;
        loop {
            // Read one value at i: either a scalar, or open a container.
            let (mut value, mut end) = match self.peek(i) {
                Some('{') | Some('[') if stack.len() >= MAX_DEPTH => {
                    let kind = if self.peek(i) == Some('{') {
                        "object"
                    } else {
                        "array"
                    };
                    return Err(format!(
                        "maximum recursion depth exceeded while decoding a JSON {kind} from a unicode string"
                    ));
                }
                Some('{') => {
                    let j = self.skip_ws(i + 1);
                    if self.peek(j) == Some('}') {
                        (PyValue::Dict(IndexMap::new()), j + 1)
                    } else {
                        let (key, after) = self.key(j)?;
                        stack.push(Frame::Dict(IndexMap::new(), key));
                        i = after;
                        continue;
                    }
                }
                Some('[') => {
                    let j = self.skip_ws(i + 1);
                    if self.peek(j) == Some(']') {
                        (PyValue::List(Vec::new()), j + 1)
                    } else {
                        stack.push(Frame::List(Vec::new()));
                        i = j;
                        continue;
                    }
                }
                _ => self.scalar(i)?,
            };
            // Hand the value to its container; close containers as far as they end here.
            loop {
                let Some(frame) = stack.last_mut() else {
                    return Ok((value, end));
                };
                let j = self.skip_ws(end);
                match frame {
                    Frame::List(items) => {
                        items.push(value);
                        match self.peek(j) {
                            Some(']') => {
                                let Some(Frame::List(items)) = stack.pop() else {
                                    return Err(FRAME_ERROR.into());
                                };
                                value = PyValue::List(items);
                                end = j + 1;
                            }
                            Some(',') => {
                                i = self.skip_ws(j + 1);
                                break;
                            }
                            _ => return Err(self.err("Expecting ',' delimiter", j)),
                        }
                    }
                    Frame::Dict(map, key) => {
                        map.insert(std::mem::take(key), value);
                        match self.peek(j) {
                            Some('}') => {
                                let Some(Frame::Dict(map, _)) = stack.pop() else {
                                    return Err(FRAME_ERROR.into());
                                };
                                value = PyValue::Dict(map);
                                end = j + 1;
                            }
                            Some(',') => {
                                let k = self.skip_ws(j + 1);
                                let (next_key, after) = self.key(k)?;
                                *key = next_key;
                                i = after;
                                break;
                            }
                            _ => return Err(self.err("Expecting ',' delimiter", j)),
                        }
                    }
                }
            }
        }
    }

    /// A member name and its `:`; returns the position of the value.
    fn key(&mut self, i: usize) -> Result<(String, usize), String> {
        if self.peek(i) != Some('"') {
            return Err(self.err("Expecting property name enclosed in double quotes", i));
        }
        let (key, end) = self.string(i + 1)?;
        let j = self.skip_ws(end);
        if self.peek(j) != Some(':') {
            return Err(self.err("Expecting ':' delimiter", j));
        }
        Ok((key.text, self.skip_ws(j + 1)))
    }

    fn scalar(&mut self, i: usize) -> Result<(PyValue, usize), String> {
        let rest = &self.s[i.min(self.s.len())..];
        let starts = |word: &str| {
            rest.len() >= word.chars().count() && word.chars().zip(rest).all(|(a, b)| a == *b)
        };
        match self.peek(i) {
            None => Err(self.err("Expecting value", i)),
            Some('"') => {
                let (s, end) = self.string(i + 1)?;
                Ok((PyValue::Str(s), end))
            }
            Some('n') if starts("null") => Ok((PyValue::Null, i + 4)),
            Some('t') if starts("true") => Ok((PyValue::Bool(true), i + 4)),
            Some('f') if starts("false") => Ok((PyValue::Bool(false), i + 5)),
            // DRF's strict JSON refuses the constants Python would otherwise accept.
            Some('N') if starts("NaN") => {
                Err("Out of range float values are not JSON compliant: 'NaN'".into())
            }
            Some('I') if starts("Infinity") => {
                Err("Out of range float values are not JSON compliant: 'Infinity'".into())
            }
            Some('-') if starts("-Infinity") => {
                Err("Out of range float values are not JSON compliant: '-Infinity'".into())
            }
            _ => self.number(i),
        }
    }

    /// `_match_number_unicode`: `-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?`.
    fn number(&self, start: usize) -> Result<(PyValue, usize), String> {
        let s = self.s;
        let digit = |i: usize| s.get(i).is_some_and(char::is_ascii_digit);
        let mut i = start;
        if s.get(i) == Some(&'-') {
            i += 1;
        }
        match s.get(i) {
            Some('1'..='9') => {
                i += 1;
                while digit(i) {
                    i += 1;
                }
            }
            Some('0') => i += 1,
            _ => return Err(self.err("Expecting value", start)),
        }
        let mut is_float = false;
        if s.get(i) == Some(&'.') && digit(i + 1) {
            is_float = true;
            i += 2;
            while digit(i) {
                i += 1;
            }
        }
        if matches!(s.get(i), Some('e' | 'E')) {
            let mut j = i + 1;
            if matches!(s.get(j), Some('+' | '-')) {
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
        let literal: String = s[start..i].iter().collect();
        if is_float {
            // Python's float() of an in-grammar literal always succeeds (overflow gives inf).
            let value = literal.parse::<f64>().unwrap_or(f64::NAN);
            return Ok((PyValue::Float(value), i));
        }
        let digits = literal.trim_start_matches('-').len();
        if digits > MAX_INT_DIGITS {
            return Err(format!(
                "Exceeds the limit ({MAX_INT_DIGITS} digits) for integer string conversion: value has {digits} digits; use sys.set_int_max_str_digits() to increase the limit"
            ));
        }
        let literal = if literal == "-0" {
            "0".to_owned()
        } else {
            literal
        };
        Ok((PyValue::Int(literal), i))
    }

    /// `scanstring` from just after the opening quote; strict: no raw control characters.
    fn string(&self, start: usize) -> Result<(PyStr, usize), String> {
        let s = self.s;
        let begin = start - 1;
        let mut out = String::new();
        let mut surrogate = None;
        let mut i = start;
        loop {
            let Some(&c) = s.get(i) else {
                return Err(self.err("Unterminated string starting at", begin));
            };
            match c {
                '"' => {
                    return Ok((
                        PyStr {
                            text: out,
                            surrogate,
                        },
                        i + 1,
                    ));
                }
                '\\' => {}
                c if (c as u32) <= 0x1f => return Err(self.err("Invalid control character at", i)),
                c => {
                    out.push(c);
                    i += 1;
                    continue;
                }
            }
            // An escape at i.
            let Some(&e) = s.get(i + 1) else {
                return Err(self.err("Unterminated string starting at", begin));
            };
            if e != 'u' {
                let decoded = match e {
                    '"' => '"',
                    '\\' => '\\',
                    '/' => '/',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    _ => return Err(self.err("Invalid \\escape", i)),
                };
                out.push(decoded);
                i += 2;
                continue;
            }
            let hex_start = i + 2;
            if hex_start + 4 >= s.len() {
                return Err(self.err("Invalid \\uXXXX escape", i + 1));
            }
            let unit = hex4(&s[hex_start..hex_start + 4])
                .ok_or_else(|| self.err("Invalid \\uXXXX escape", hex_start - 1))?;
            let mut next = hex_start + 4;
            let mut code = unit;
            if (0xD800..=0xDBFF).contains(&unit)
                && next + 6 < s.len()
                && s[next] == '\\'
                && s[next + 1] == 'u'
            {
                let low = hex4(&s[next + 2..next + 6])
                    .ok_or_else(|| self.err("Invalid \\uXXXX escape", next + 1))?;
                if (0xDC00..=0xDFFF).contains(&low) {
                    code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                    next += 6;
                }
            }
            match char::from_u32(code) {
                Some(ch) => out.push(ch),
                None => {
                    // A lone surrogate: kept as a marker for the validator, shown as U+FFFD.
                    surrogate.get_or_insert(code);
                    out.push('\u{fffd}');
                }
            }
            i = next;
        }
    }
}

fn hex4(digits: &[char]) -> Option<u32> {
    digits
        .iter()
        .try_fold(0u32, |acc, c| Some(acc * 16 + c.to_digit(16)?))
}

/// Never happens (the frame kind was just matched); an error rather than a panic all the same.
const FRAME_ERROR: &str = "internal parser state error";

/// Python's `str()` of a float (`repr`): shortest round-trip digits, exponent form outside
/// 1e-4 <= |x| < 1e16, always a `.0` or exponent.
pub fn python_float_str(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let n = digits.len() as i32;
    let decpt = exp + 1;
    let sign = if x < 0.0 { "-" } else { "" };
    let body = if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            format!("0.{}{digits}", "0".repeat((-decpt) as usize))
        } else if decpt >= n {
            format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
        } else {
            format!(
                "{}.{}",
                &digits[..decpt as usize],
                &digits[decpt as usize..]
            )
        }
    } else {
        let rest = if n > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        let e = decpt - 1;
        format!(
            "{}{rest}e{}{:02}",
            &digits[..1],
            if e < 0 { '-' } else { '+' },
            e.abs()
        )
    };
    format!("{sign}{body}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        loads(s).unwrap_err()
    }

    #[test]
    fn python_messages_and_positions() {
        assert_eq!(err(""), "Expecting value: line 1 column 1 (char 0)");
        assert_eq!(err("nope"), "Expecting value: line 1 column 1 (char 0)");
        assert_eq!(
            err("{"),
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
        );
        assert_eq!(
            err("{'a': 1}"),
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
        );
        assert_eq!(
            err(r#"{"a" 1}"#),
            "Expecting ':' delimiter: line 1 column 6 (char 5)"
        );
        assert_eq!(
            err(r#"{"a": 1 "b": 2}"#),
            "Expecting ',' delimiter: line 1 column 9 (char 8)"
        );
        assert_eq!(
            err(r#"{"a": 1,}"#),
            "Expecting property name enclosed in double quotes: line 1 column 9 (char 8)"
        );
        assert_eq!(err("[1,]"), "Expecting value: line 1 column 4 (char 3)");
        assert_eq!(
            err("[1 2]"),
            "Expecting ',' delimiter: line 1 column 4 (char 3)"
        );
        assert_eq!(
            err(r#"{"a": }"#),
            "Expecting value: line 1 column 7 (char 6)"
        );
        assert_eq!(err("{}\n x"), "Extra data: line 2 column 2 (char 4)");
        assert_eq!(
            err(r#""abc"#),
            "Unterminated string starting at: line 1 column 1 (char 0)"
        );
        assert_eq!(
            err("\"a\nb\""),
            "Invalid control character at: line 1 column 3 (char 2)"
        );
        assert_eq!(err(r#""\x""#), "Invalid \\escape: line 1 column 2 (char 1)");
        assert_eq!(
            err(r#""\u12""#),
            "Invalid \\uXXXX escape: line 1 column 3 (char 2)"
        );
        assert_eq!(
            err(r#""\u12zz""#),
            "Invalid \\uXXXX escape: line 1 column 3 (char 2)"
        );
        assert_eq!(
            err("\u{feff}{}"),
            "Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)"
        );
        assert_eq!(
            err("NaN"),
            "Out of range float values are not JSON compliant: 'NaN'"
        );
        assert_eq!(
            err("[-Infinity]"),
            "Out of range float values are not JSON compliant: '-Infinity'"
        );
        assert_eq!(err("01"), "Extra data: line 1 column 2 (char 1)");
        assert_eq!(
            err("{\"é\": x}"),
            "Expecting value: line 1 column 7 (char 6)"
        );
    }

    #[test]
    fn values() {
        let PyValue::Dict(d) =
            loads(r#"{"a": 1, "b": [true, null, 1.5e3, "x\u00e9\ud83d\ude00"], "a": -0}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(d.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(d["a"], PyValue::Int("0".into()));
        let PyValue::List(items) = &d["b"] else {
            panic!()
        };
        assert_eq!(items[2], PyValue::Float(1500.0));
        assert_eq!(
            items[3],
            PyValue::Str(PyStr {
                text: "xé😀".into(),
                surrogate: None
            })
        );
        let PyValue::Str(lone) = loads(r#""\ud800x""#).unwrap() else {
            panic!()
        };
        assert_eq!(lone.surrogate, Some(0xD800));
        assert_eq!(
            loads("123456789012345678901234567890").unwrap(),
            PyValue::Int("123456789012345678901234567890".into())
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(err(&deep).starts_with("maximum recursion depth exceeded"));
        let ok = format!("{}{}", "[".repeat(400), "]".repeat(400));
        assert!(loads(&ok).is_ok());
    }

    #[test]
    fn float_str_is_pythons() {
        for (x, s) in [
            (1.0, "1.0"),
            (1.5, "1.5"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (123.456, "123.456"),
            (1e300, "1e+300"),
            (f64::INFINITY, "inf"),
            (-0.0, "-0.0"),
            (0.1 + 0.2, "0.30000000000000004"),
        ] {
            assert_eq!(python_float_str(x), s);
        }
    }
}
