//! `multipart/form-data` bodies as Django's `MultiPartParser` reads them, quirks included: the
//! boundary is found anywhere (not only at a line start), a part's headers must end within its
//! first 1024 bytes, parts without a usable `Content-Disposition` are skipped, and a file counts
//! only once a further part has begun.
//!
//! Django reads the body in 64 KiB chunks; this models a body that fits one chunk, which is
//! every body doorman accepts.

use super::charset::Charset;
use super::file_name::sanitize_file_name;
use super::media_type::parse_header_parameters;
use super::python;

/// Django's `MAX_TOTAL_HEADER_SIZE` for a part's headers.
const MAX_HEADER_SIZE: usize = 1024;
/// Django's `DATA_UPLOAD_MAX_NUMBER_FIELDS`; fields and header-less parts count.
const MAX_FIELDS: usize = 1000;
/// Django's `DATA_UPLOAD_MAX_NUMBER_FILES`.
const MAX_FILES: usize = 100;

/// Why a multipart body was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum MultipartError {
    /// A `MultiPartParserError`: DRF answers "Multipart form parse error - <this>".
    Parse(String),
    /// Django's `TooManyFieldsSent` / `TooManyFilesSent` (400 in Django), with their text.
    TooMany(&'static str),
}

/// The text fields and the file parts (field name, file name), each in body order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Multipart {
    pub fields: Vec<(String, String)>,
    pub files: Vec<(String, String)>,
}

/// A part's headers as Django keeps them: lower-cased name to (value, parameters).
type Headers = Vec<(String, (String, Vec<(String, String)>))>;

/// One part between boundaries, as Django's `BoundaryIter` cut it.
struct Part<'a> {
    /// Everything before the next boundary (less the line break before it).
    bytes: &'a [u8],
    /// Whether a boundary followed; if not, Django may have held back the part's tail.
    ends_at_boundary: bool,
}

/// What one part contributes.
enum Contribution {
    Nothing,
    Field(String, String),
    /// A file part: field name and sanitized file name.
    File(String, String),
}

/// Parses `body` sent as `content_type` (the raw header, as Django checks it).
pub fn parse(
    content_type: &str,
    body: &[u8],
    charset: Charset,
) -> Result<Multipart, MultipartError> {
    let separator = [b"--", boundary(content_type)?.as_bytes()].concat();
    // Django keeps back this many bytes when a chunk holds no boundary: `--` + boundary + 6.
    let rollback = separator.len() + 6;
    let mut parsed = Multipart::default();
    let mut counts = Counts::default();
    let mut finished_file = None;
    let mut rest = body;
    while !rest.is_empty() {
        let (part, after) = next_part(rest, &separator);
        let (kind, headers, content) = part_headers(part.bytes)?;
        // The file before this part is complete only now that this part has begun.
        parsed.files.extend(finished_file.take());
        counts.part(kind)?;
        rest = after;
        match contribution(kind, &headers, content, charset, &mut counts)? {
            Contribution::Field(name, value) => parsed.fields.push((name, value)),
            Contribution::File(name, file_name) => {
                if is_base64(&headers) {
                    check_base64_file(file_chunks(&part, content, rollback))?;
                }
                finished_file = Some((name, file_name));
            }
            // A skipped part is left half-read: its held-back tail is read as one more part.
            Contribution::Nothing => rest = skipped_tail(&part, rollback).unwrap_or(rest),
        }
    }
    Ok(parsed)
}

/// Django's limits on the number of fields (which header-less parts also count) and files.
#[derive(Default)]
struct Counts {
    fields: usize,
    files: usize,
}

impl Counts {
    fn part(&mut self, kind: Kind) -> Result<(), MultipartError> {
        if kind != Kind::File {
            self.fields += 1;
            // Django allows two more, for the empty parts before the first boundary and after
            // the last.
            if self.fields > MAX_FIELDS + 2 {
                return Err(MultipartError::TooMany(
                    "The number of GET/POST parameters exceeded settings.DATA_UPLOAD_MAX_NUMBER_FIELDS.",
                ));
            }
        }
        Ok(())
    }

    fn file(&mut self) -> Result<(), MultipartError> {
        self.files += 1;
        if self.files > MAX_FILES {
            return Err(MultipartError::TooMany(
                "The number of files exceeded settings.DATA_UPLOAD_MAX_NUMBER_FILES.",
            ));
        }
        Ok(())
    }
}

/// The part at the start of `rest` and what follows its boundary.
fn next_part<'a>(rest: &'a [u8], separator: &[u8]) -> (Part<'a>, &'a [u8]) {
    match find(rest, separator) {
        Some(index) => (
            Part {
                bytes: before_boundary(rest, index),
                ends_at_boundary: true,
            },
            &rest[index + separator.len()..],
        ),
        None => (
            Part {
                bytes: rest,
                ends_at_boundary: false,
            },
            &[][..],
        ),
    }
}

/// A field's value or a file's name, as `MultiPartParser._parse` takes them; a part without
/// a `Content-Disposition` name, or a file whose name sanitizes to nothing, gives nothing.
fn contribution(
    kind: Kind,
    headers: &Headers,
    content: &[u8],
    charset: Charset,
    counts: &mut Counts,
) -> Result<Contribution, MultipartError> {
    let Some((_, disposition)) = header(headers, "content-disposition") else {
        return Ok(Contribution::Nothing);
    };
    let Some(name) = param(disposition, "name") else {
        return Ok(Contribution::Nothing);
    };
    let name = charset.decode_replace(strip_ascii(name.as_bytes()));
    if kind == Kind::Field {
        let data = if is_base64(headers) {
            a2b_base64(content).unwrap_or_else(|| content.to_vec())
        } else {
            content.to_vec()
        };
        return Ok(Contribution::Field(name, charset.decode_replace(&data)));
    }
    counts.file()?;
    let raw_file_name = param(disposition, "filename").unwrap_or_default();
    Ok(
        match sanitize_file_name(&charset.decode_replace(raw_file_name.as_bytes())) {
            Some(file_name) => Contribution::File(name, file_name),
            None => Contribution::Nothing,
        },
    )
}

fn is_base64(headers: &Headers) -> bool {
    header(headers, "content-transfer-encoding")
        .is_some_and(|(value, _)| python::strip(value) == "base64")
}

/// The boundary parameter, checked as Django checks it.
fn boundary(content_type: &str) -> Result<String, MultipartError> {
    if !content_type.starts_with("multipart/") {
        return Err(MultipartError::Parse(format!(
            "Invalid Content-Type: {content_type}"
        )));
    }
    if !content_type.is_ascii() {
        return Err(MultipartError::Parse(format!(
            "Invalid non-ASCII Content-Type in multipart: {content_type}"
        )));
    }
    let params = parse_header_parameters(content_type)
        .map(|(_, params)| params)
        .unwrap_or_default();
    let boundary = params.get("boundary");
    // `[ -~]{0,200}[!-~]`, matched in full.
    let valid = boundary.is_some_and(|b| {
        (1..=201).contains(&b.len())
            && b.bytes().all(|c| (b' '..=b'~').contains(&c))
            && !b.ends_with(' ')
    });
    match boundary {
        Some(b) if valid => Ok(b.clone()),
        Some(b) => Err(MultipartError::Parse(format!(
            "Invalid boundary in multipart: {b}"
        ))),
        None => Err(MultipartError::Parse(
            "Invalid boundary in multipart: None".into(),
        )),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The bytes before a boundary, less one `\n` and then one `\r` right before it.
fn before_boundary(rest: &[u8], index: usize) -> &[u8] {
    let mut end = index;
    if end > 0 && rest[end - 1] == b'\n' {
        end -= 1;
    }
    if end > 0 && rest[end - 1] == b'\r' {
        end -= 1;
    }
    &rest[..end]
}

/// When no boundary follows a long part, Django held back its last `rollback` bytes; unless
/// the part was read to its end, they come round again as a part of their own.
fn skipped_tail<'a>(part: &Part<'a>, rollback: usize) -> Option<&'a [u8]> {
    let pulled = part.bytes.len().checked_sub(rollback)?;
    (!part.ends_at_boundary && pulled >= MAX_HEADER_SIZE).then(|| &part.bytes[pulled..])
}

/// The chunks a file part's content arrives in: one, or two when Django held back a tail.
fn file_chunks<'a>(part: &Part<'a>, content: &'a [u8], rollback: usize) -> Vec<&'a [u8]> {
    let start = part.bytes.len() - content.len();
    match skipped_tail(part, rollback) {
        Some(tail) => {
            let split = part.bytes.len() - tail.len();
            vec![&part.bytes[start.min(split)..split], tail]
        }
        None => vec![content],
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// No `Content-Disposition` header (or no headers at all).
    Raw,
    Field,
    File,
}

/// `parse_boundary_stream`: the part's kind, headers, and content after the blank line.
fn part_headers(part: &[u8]) -> Result<(Kind, Headers, &[u8]), MultipartError> {
    let head = &part[..part.len().min(MAX_HEADER_SIZE)];
    let Some(header_end) = find(head, b"\r\n\r\n") else {
        if head.len() < MAX_HEADER_SIZE {
            return Ok((Kind::Raw, Vec::new(), part));
        }
        return Err(MultipartError::Parse(
            "Request max total header size exceeded.".into(),
        ));
    };
    let mut kind = Kind::Raw;
    let mut headers: Headers = Vec::new();
    for line in split_crlf(&head[..header_end]) {
        // Lines that aren't UTF-8, or have no colon, are dropped (Django's ValueError).
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let Ok((main, params)) = parse_header_parameters(line) else {
            continue;
        };
        let Some((name, value)) = main.split_once(':') else {
            continue;
        };
        let params: Vec<(String, String)> = params.into_iter().collect();
        if name == "content-disposition" {
            kind = if params.iter().any(|(k, v)| k == "filename" && !v.is_empty()) {
                Kind::File
            } else {
                Kind::Field
            };
        }
        headers.retain(|(n, _)| n != name);
        headers.push((name.to_owned(), (value.to_owned(), params)));
    }
    if kind == Kind::Raw {
        return Ok((kind, headers, part));
    }
    Ok((kind, headers, &part[header_end + 4..]))
}

fn split_crlf(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = bytes;
    while let Some(at) = find(rest, b"\r\n") {
        lines.push(&rest[..at]);
        rest = &rest[at + 2..];
    }
    lines.push(rest);
    lines
}

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a (String, Vec<(String, String)>)> {
    headers.iter().find(|(n, _)| n == name).map(|(_, h)| h)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `bytes.strip()`: ASCII whitespace including vertical tab.
fn strip_ascii(bytes: &[u8]) -> &[u8] {
    let space = |b: &u8| b" \t\n\r\x0b\x0c".contains(b);
    let start = bytes.iter().position(|b| !space(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !space(b))
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// A base64 file part, decoded chunk by chunk in whole quads as Django does.
fn check_base64_file(chunks: Vec<&[u8]>) -> Result<(), MultipartError> {
    let error = || MultipartError::Parse("Could not decode base64 data.".into());
    let mut remainder: Vec<u8> = Vec::new();
    for chunk in chunks {
        let mut stripped = std::mem::take(&mut remainder);
        stripped.extend(chunk.iter().filter(|b| !b" \t\n\r\x0b\x0c".contains(b)));
        let aligned = stripped.len() / 4 * 4;
        remainder = stripped.split_off(aligned);
        if aligned > 0 && a2b_base64(&stripped).is_none() {
            return Err(error());
        }
    }
    if remainder.is_empty() {
        Ok(())
    } else {
        Err(error())
    }
}

/// `binascii.a2b_base64(data, strict_mode=False)`: characters outside the alphabet skipped,
/// decoding stops at a complete padding; `None` where Python raises `binascii.Error`.
fn a2b_base64(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3);
    let mut quad_pos = 0;
    let mut left: u8 = 0;
    let mut pads = 0;
    for &c in data {
        if c == b'=' {
            if quad_pos >= 2 {
                pads += 1;
                if quad_pos + pads >= 4 {
                    return Some(out);
                }
            }
            continue;
        }
        let Some(v) = base64_value(c) else {
            continue;
        };
        pads = 0;
        match quad_pos {
            0 => {
                quad_pos = 1;
                left = v;
            }
            1 => {
                quad_pos = 2;
                out.push((left << 2) | (v >> 4));
                left = v & 0x0f;
            }
            2 => {
                quad_pos = 3;
                out.push((left << 4) | (v >> 2));
                left = v & 0x03;
            }
            _ => {
                quad_pos = 0;
                out.push((left << 6) | v);
                left = 0;
            }
        }
    }
    (quad_pos == 0).then_some(out)
}

fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_like_binascii() {
        assert_eq!(a2b_base64(b"YWxpY2U="), Some(b"alice".to_vec()));
        assert_eq!(a2b_base64(b"YW xp*Y2U"), None);
        assert_eq!(a2b_base64(b"YWxpY2U=trailing"), Some(b"alice".to_vec()));
        assert_eq!(a2b_base64(b"Y"), None);
        assert_eq!(a2b_base64(b"=YWJj"), Some(b"abc".to_vec()));
    }
}
