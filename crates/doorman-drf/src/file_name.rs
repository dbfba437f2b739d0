//! A multipart file part's name as Django's `MultiPartParser.sanitize_file_name` leaves it: it
//! decides whether the part counts at all (an empty, `.` or `..` name drops it) and what `str()`
//! of the upload is, which `CharField` then judges.

use super::python;

/// `MultiPartParser.sanitize_file_name`: HTML entities decoded, directories dropped,
/// unprintable characters removed; `None` for nothing, `.` or `..`.
pub fn sanitize_file_name(name: &str) -> Option<String> {
    let name = html_unescape(name);
    let name = name.rsplit('/').next().unwrap_or("");
    let name = name.rsplit('\\').next().unwrap_or("");
    let name: String = name.chars().filter(|c| python::is_printable(*c)).collect();
    (!matches!(name.as_str(), "" | "." | "..")).then_some(name)
}

/// Named references that can decide whether a file name survives sanitizing (they decode to a
/// separator, a dot, or an unprintable character); Python knows all 2231 HTML5 names, the rest
/// of which would leave a printable character either way.
const ENTITIES: &[(&str, char)] = &[
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("sol", '/'),
    ("bsol", '\\'),
    ("period", '.'),
    ("nbsp", '\u{a0}'),
    ("NonBreakingSpace", '\u{a0}'),
    ("Tab", '\t'),
    ("NewLine", '\n'),
    ("shy", '\u{ad}'),
    ("ensp", '\u{2002}'),
    ("emsp", '\u{2003}'),
    ("thinsp", '\u{2009}'),
    ("hairsp", '\u{200a}'),
    ("ZeroWidthSpace", '\u{200b}'),
    ("zwnj", '\u{200c}'),
    ("zwj", '\u{200d}'),
    ("lrm", '\u{200e}'),
    ("rlm", '\u{200f}'),
    ("NoBreak", '\u{2060}'),
];

/// Legacy names Python also decodes without the `;`.
const WITHOUT_SEMICOLON: &[&str] = &["amp", "lt", "gt", "quot", "nbsp", "shy"];

/// `html.unescape`: numeric references and the named ones above.
fn html_unescape(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match reference(after) {
            Some((decoded, used)) => {
                out.push_str(&decoded);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The reference at the start of `text` (just after `&`): its text and length.
fn reference(text: &str) -> Option<(String, usize)> {
    if let Some(number) = text.strip_prefix('#') {
        let (digits, radix, skip) = match number.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16, 2),
            None => (number, 10, 1),
        };
        let len = digits.chars().take_while(|c| c.is_digit(radix)).count();
        if len == 0 {
            return None;
        }
        let code = u32::from_str_radix(&digits[..len], radix).unwrap_or(u32::MAX);
        let semicolon = usize::from(digits[len..].starts_with(';'));
        return Some((numeric_reference(code), skip + len + semicolon));
    }
    for (name, c) in ENTITIES {
        if let Some(after) = text.strip_prefix(name) {
            if after.starts_with(';') {
                return Some((c.to_string(), name.len() + 1));
            }
            if WITHOUT_SEMICOLON.contains(name) {
                return Some((c.to_string(), name.len()));
            }
        }
    }
    None
}

/// `html._replace_charref` for `&#N;`.
fn numeric_reference(code: u32) -> String {
    const WINDOWS_1252: [u32; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013,
        0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ];
    let code = match code {
        0x00 => return "\u{fffd}".into(),
        0x0D => return "\r".into(),
        0x80..=0x9F => {
            let mapped = WINDOWS_1252[(code - 0x80) as usize];
            return char::from_u32(mapped).map(String::from).unwrap_or_default();
        }
        0xD800..=0xDFFF | 0x110000.. => return "\u{fffd}".into(),
        _ => code,
    };
    let invalid = matches!(code, 0x01..=0x08 | 0x0B | 0x0E..=0x1F | 0x7F | 0xFDD0..=0xFDEF)
        || (code & 0xFFFE) == 0xFFFE;
    if invalid {
        return String::new();
    }
    char::from_u32(code).map(String::from).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_like_django() {
        assert_eq!(
            sanitize_file_name("C:\\dir\\a.txt").as_deref(),
            Some("a.txt")
        );
        assert_eq!(sanitize_file_name("../x/.."), None);
        assert_eq!(sanitize_file_name("&#47;"), None);
        assert_eq!(sanitize_file_name("a&sol;&period;"), None);
        assert_eq!(sanitize_file_name(" "), Some(" ".into()));
        assert_eq!(sanitize_file_name("\t&nbsp"), None);
        assert_eq!(sanitize_file_name("&amp;x&#x41;"), Some("&xA".into()));
        // Expected values from CPython 3.11's html.unescape.
        assert_eq!(
            html_unescape("&#128;&#x81;&#13;&#0;&#xD800;&#1;"),
            "€\u{81}\r\u{fffd}\u{fffd}"
        );
        assert_eq!(html_unescape("&ampx &sol &#65"), "&x &sol A");
    }
}
