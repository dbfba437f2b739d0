//! DRF's `JSONRenderer`: Python's `json.dumps` with compact separators (or Python's `indent=N`
//! layout on request), text as UTF-8 rather than `\u` escapes, floats as Python prints them,
//! and U+2028 / U+2029 escaped so that the output is also valid JavaScript.

use serde_json::{Number, Value};

use super::python;

/// Serializes a response body exactly as DRF's JSONRenderer does.
pub fn render_json(value: &Value, indent: Option<usize>) -> Vec<u8> {
    let mut out = String::new();
    write_value(&mut out, value, indent, 0);
    out.into_bytes()
}

fn write_value(out: &mut String, value: &Value, indent: Option<usize>, depth: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            write_container(
                out,
                ('[', ']'),
                items.iter().map(|v| (None, v)),
                indent,
                depth,
            );
        }
        Value::Object(members) => write_container(
            out,
            ('{', '}'),
            members.iter().map(|(k, v)| (Some(k.as_str()), v)),
            indent,
            depth,
        ),
    }
}

/// An array or object: `[]`/`{}` when empty; else items separated by `,` and, with an indent,
/// each on its own line one level deeper.
fn write_container<'a>(
    out: &mut String,
    (open, close): (char, char),
    items: impl ExactSizeIterator<Item = (Option<&'a str>, &'a Value)>,
    indent: Option<usize>,
    depth: usize,
) {
    out.push(open);
    if items.len() == 0 {
        out.push(close);
        return;
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(width) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(width * level));
        }
    };
    for (i, (key, value)) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        newline(out, depth + 1);
        if let Some(key) = key {
            write_string(out, key);
            out.push_str(if indent.is_some() { ": " } else { ":" });
        }
        write_value(out, value, indent, depth + 1);
    }
    newline(out, depth);
    out.push(close);
}

fn write_number(out: &mut String, n: &Number) {
    match n.as_f64() {
        Some(x) if n.is_f64() => out.push_str(&python::float_str(x)),
        _ => out.push_str(&n.to_string()),
    }
}

/// `json.dumps(ensure_ascii=False)`'s string escaping, then DRF's U+2028/U+2029 escapes.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Expected outputs from DRF's JSONRenderer on CPython 3.11 for the same value, compact and
    /// with `Accept: application/json; indent=2` / `indent=8`.
    #[test]
    fn matches_drfs_json_renderer() {
        const SOURCE: &str = r#"{"a": ["x\u2028y\u2029z", "é€😀", "\u0000\u0001\u001f\u007f\"\\/\b\f\n\r\t"], "n": [1, -2, 1.0, 1e16, 1e-05, 0.1, 12345678901234567890, -9223372036854775808], "e": {}, "l": [], "d": {"k": {"x": [null, true, false]}}}"#;
        let value: Value = serde_json::from_str(SOURCE).unwrap();
        for (indent, expected) in [
            (
                None,
                "{\"a\":[\"x\\u2028y\\u2029z\",\"é€😀\",\"\\u0000\\u0001\\u001f\u{7f}\\\"\\\\/\\b\\f\\n\\r\\t\"],\"n\":[1,-2,1.0,1e+16,1e-05,0.1,12345678901234567890,-9223372036854775808],\"e\":{},\"l\":[],\"d\":{\"k\":{\"x\":[null,true,false]}}}",
            ),
            (
                Some(2),
                "{\n  \"a\": [\n    \"x\\u2028y\\u2029z\",\n    \"é€😀\",\n    \"\\u0000\\u0001\\u001f\u{7f}\\\"\\\\/\\b\\f\\n\\r\\t\"\n  ],\n  \"n\": [\n    1,\n    -2,\n    1.0,\n    1e+16,\n    1e-05,\n    0.1,\n    12345678901234567890,\n    -9223372036854775808\n  ],\n  \"e\": {},\n  \"l\": [],\n  \"d\": {\n    \"k\": {\n      \"x\": [\n        null,\n        true,\n        false\n      ]\n    }\n  }\n}",
            ),
            (
                Some(8),
                "{\n        \"a\": [\n                \"x\\u2028y\\u2029z\",\n                \"é€😀\",\n                \"\\u0000\\u0001\\u001f\u{7f}\\\"\\\\/\\b\\f\\n\\r\\t\"\n        ],\n        \"n\": [\n                1,\n                -2,\n                1.0,\n                1e+16,\n                1e-05,\n                0.1,\n                12345678901234567890,\n                -9223372036854775808\n        ],\n        \"e\": {},\n        \"l\": [],\n        \"d\": {\n                \"k\": {\n                        \"x\": [\n                                null,\n                                true,\n                                false\n                        ]\n                }\n        }\n}",
            ),
        ] {
            let rendered = render_json(&value, indent);
            assert_eq!(String::from_utf8(rendered).unwrap(), expected, "{indent:?}");
        }
    }
}
