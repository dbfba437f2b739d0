//! The `charset` of a request body, decoded as Python's codecs decode it: which names Python
//! knows, what DRF does with each, and the `UnicodeDecodeError` text it quotes.
//!
//! Django takes the charset parameter only if `codecs.lookup()` knows it, and otherwise reads
//! UTF-8. doorman implements the codecs a client plausibly sends (UTF-8, UTF-8 with BOM, ASCII,
//! Latin-1, under all of Python's aliases); any other name is read as UTF-8, which is exactly
//! Django's answer for names Python doesn't know, and the same bytes for ASCII bodies otherwise.

/// A text codec doorman decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charset {
    Utf8,
    /// `utf-8-sig`: UTF-8 that drops a leading byte-order mark.
    Utf8Sig,
    Ascii,
    Latin1,
}

/// What `codecs.lookup(name)` finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Text(Charset),
    /// A bytes-to-bytes codec (`base64`, `zlib`, ...): DRF refuses it as a request charset.
    NotText,
    /// Not a name doorman knows (Django then reads UTF-8).
    Unknown,
}

const BOM: &[u8] = b"\xef\xbb\xbf";

/// Python's `encodings.normalize_encoding` after lower-casing: runs of punctuation become one
/// `_`, none at either end; non-ASCII letters vanish.
fn normalize(name: &str) -> String {
    let mut out = String::new();
    let mut punctuation = false;
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() || c == '.' {
            if punctuation && !out.is_empty() {
                out.push('_');
            }
            if c.is_ascii() {
                out.push(c);
            }
            punctuation = false;
        } else {
            punctuation = true;
        }
    }
    out
}

/// Python's codecs that matter here: module name, its aliases (`encodings.aliases`), and what
/// the codec is.
const CODECS: &[(&str, &[&str], Lookup)] = &[
    (
        "utf_8",
        &["cp65001", "u8", "utf", "utf8", "utf8_ucs2", "utf8_ucs4"],
        Lookup::Text(Charset::Utf8),
    ),
    ("utf_8_sig", &[], Lookup::Text(Charset::Utf8Sig)),
    (
        "ascii",
        &[
            "646",
            "ansi_x3.4_1968",
            "ansi_x3.4_1986",
            "ansi_x3_4_1968",
            "cp367",
            "csascii",
            "ibm367",
            "iso646_us",
            "iso_646.irv_1991",
            "iso_ir_6",
            "us",
            "us_ascii",
        ],
        Lookup::Text(Charset::Ascii),
    ),
    (
        "latin_1",
        &[
            "8859",
            "cp819",
            "csisolatin1",
            "ibm819",
            "iso8859",
            "iso8859_1",
            "iso_8859_1",
            "iso_8859_1_1987",
            "iso_ir_100",
            "l1",
            "latin",
            "latin1",
        ],
        Lookup::Text(Charset::Latin1),
    ),
    ("base64_codec", &["base64", "base_64"], Lookup::NotText),
    ("bz2_codec", &["bz2"], Lookup::NotText),
    ("hex_codec", &["hex"], Lookup::NotText),
    (
        "quopri_codec",
        &["quopri", "quoted_printable", "quotedprintable"],
        Lookup::NotText,
    ),
    ("uu_codec", &["uu"], Lookup::NotText),
    ("zlib_codec", &["zip", "zlib"], Lookup::NotText),
    ("rot_13", &["rot13"], Lookup::NotText),
];

/// `codecs.lookup(name)`, for the codecs doorman knows.
pub fn lookup(name: &str) -> Lookup {
    let normalized = normalize(name);
    // Python tries the aliases as is and with dots as underscores, then the module name as is.
    let dotless = normalized.replace('.', "_");
    CODECS
        .iter()
        .find(|(module, aliases, _)| {
            *module == normalized || aliases.iter().any(|a| *a == normalized || *a == dotless)
        })
        .map_or(Lookup::Unknown, |(_, _, found)| *found)
}

impl Charset {
    /// The name Python's `UnicodeDecodeError` gives.
    fn codec_name(self) -> &'static str {
        match self {
            Charset::Utf8 | Charset::Utf8Sig => "utf-8",
            Charset::Ascii => "ascii",
            Charset::Latin1 => "latin-1",
        }
    }

    /// What DRF's JSON parser reads: `codecs.getreader(charset)(stream).read()`. Strict, except
    /// that an incomplete UTF-8 sequence at the very end is dropped, because the stream reader
    /// keeps it back waiting for bytes that never come.
    pub fn decode_stream(self, body: &[u8]) -> Result<String, String> {
        match self {
            Charset::Utf8 => utf8_stream(body),
            Charset::Utf8Sig => match body.strip_prefix(BOM) {
                // Positions in errors count from after the BOM, as the reader decodes the rest.
                Some(rest) => utf8_stream(rest),
                None if body.len() < BOM.len() && BOM.starts_with(body) => Ok(String::new()),
                None => utf8_stream(body),
            },
            Charset::Ascii => match body.iter().position(|b| !b.is_ascii()) {
                Some(pos) => Err(format!(
                    "'{}' codec can't decode byte 0x{:02x} in position {pos}: ordinal not in range(128)",
                    self.codec_name(),
                    body[pos]
                )),
                None => Ok(body.iter().map(|b| char::from(*b)).collect()),
            },
            Charset::Latin1 => Ok(latin1(body)),
        }
    }

    /// `bytes.decode(charset)`: strict, `None` on any error.
    pub fn decode_strict(self, bytes: &[u8]) -> Option<String> {
        match self {
            Charset::Utf8 => String::from_utf8(bytes.to_vec()).ok(),
            Charset::Utf8Sig => {
                String::from_utf8(bytes.strip_prefix(BOM).unwrap_or(bytes).to_vec()).ok()
            }
            Charset::Ascii => bytes.is_ascii().then(|| latin1(bytes)),
            Charset::Latin1 => Some(latin1(bytes)),
        }
    }

    /// `bytes.decode(charset, "replace")`: one U+FFFD per undecodable sequence.
    pub fn decode_replace(self, bytes: &[u8]) -> String {
        match self {
            Charset::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            Charset::Utf8Sig => {
                String::from_utf8_lossy(bytes.strip_prefix(BOM).unwrap_or(bytes)).into_owned()
            }
            Charset::Ascii => bytes
                .iter()
                .map(|b| {
                    if b.is_ascii() {
                        char::from(*b)
                    } else {
                        '\u{fffd}'
                    }
                })
                .collect(),
            Charset::Latin1 => latin1(bytes),
        }
    }
}

/// Bytes as Latin-1 text: each byte is the code point of the same value.
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|b| char::from(*b)).collect()
}

/// CPython's incremental UTF-8 decoder (not final): the first invalid sequence is an error
/// naming its bytes; a truncated sequence at the end is left undecoded.
fn utf8_stream(bytes: &[u8]) -> Result<String, String> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        Err(error) => {
            let start = error.valid_up_to();
            let valid = String::from_utf8_lossy(&bytes[..start]).into_owned();
            match error.error_len() {
                None => Ok(valid),
                Some(len) => Err(utf8_error(bytes, start, len)),
            }
        }
    }
}

/// `str(UnicodeDecodeError)` for UTF-8.
fn utf8_error(bytes: &[u8], position: usize, len: usize) -> String {
    let lead = bytes.get(position).copied().unwrap_or(0);
    let reason = if matches!(lead, 0x80..=0xC1 | 0xF5..=0xFF) {
        "invalid start byte"
    } else {
        "invalid continuation byte"
    };
    if len == 1 {
        format!("'utf-8' codec can't decode byte 0x{lead:02x} in position {position}: {reason}")
    } else {
        format!(
            "'utf-8' codec can't decode bytes in position {position}-{}: {reason}",
            position + len - 1
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lookup_follows_pythons_aliases() {
        assert_eq!(lookup("UTF-8"), Lookup::Text(Charset::Utf8));
        assert_eq!(lookup(" utf--8 "), Lookup::Text(Charset::Utf8));
        assert_eq!(lookup("utf8"), Lookup::Text(Charset::Utf8));
        assert_eq!(lookup("utf-8-sig"), Lookup::Text(Charset::Utf8Sig));
        assert_eq!(lookup("ISO-8859-1"), Lookup::Text(Charset::Latin1));
        assert_eq!(lookup("latin-1"), Lookup::Text(Charset::Latin1));
        assert_eq!(lookup("US-ASCII"), Lookup::Text(Charset::Ascii));
        assert_eq!(lookup("ansi_x3.4-1968"), Lookup::Text(Charset::Ascii));
        assert_eq!(lookup("base64"), Lookup::NotText);
        assert_eq!(lookup("utf.8"), Lookup::Unknown);
        assert_eq!(lookup("utf8mb4"), Lookup::Unknown);
        assert_eq!(lookup(""), Lookup::Unknown);
    }

    #[test]
    fn utf8_errors_are_pythons() {
        // Expected texts recorded from the reference app (CPython 3.11).
        let err = |b: &[u8]| Charset::Utf8.decode_stream(b).unwrap_err();
        assert_eq!(
            err(b"\xff"),
            "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"
        );
        assert_eq!(
            err(b"{\"a\":\"\xe2(\"}"),
            "'utf-8' codec can't decode byte 0xe2 in position 6: invalid continuation byte"
        );
        assert_eq!(
            err(b"\xed\xa0\x80"),
            "'utf-8' codec can't decode byte 0xed in position 0: invalid continuation byte"
        );
        assert_eq!(
            err(b"{}\xe2\x82A"),
            "'utf-8' codec can't decode bytes in position 2-3: invalid continuation byte"
        );
        // A truncated sequence at the end is dropped, not an error.
        assert_eq!(Charset::Utf8.decode_stream(b"{}\xe2\x82").unwrap(), "{}");
        assert_eq!(Charset::Utf8Sig.decode_stream(b"\xef\xbb").unwrap(), "");
        assert_eq!(
            Charset::Utf8Sig
                .decode_stream(b"\xef\xbb\xbf{\xff")
                .unwrap_err(),
            "'utf-8' codec can't decode byte 0xff in position 1: invalid start byte"
        );
        assert_eq!(
            Charset::Ascii.decode_stream(b"ab\xe9").unwrap_err(),
            "'ascii' codec can't decode byte 0xe9 in position 2: ordinal not in range(128)"
        );
    }
}
