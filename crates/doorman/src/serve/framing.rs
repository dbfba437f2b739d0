//! The request framing checks that RFC 9112 asks of a server and hyper leaves to it, made on
//! the request head before any body byte is read and before the request takes a slot:
//! exactly one valid `Host` that agrees with an absolute request target (or HTTP/2's
//! `:authority`), no transfer coding but a single `chunked`, and a `Content-Length` within
//! `max_body_bytes` (413 from the header, so a client announcing a gigabyte is answered at
//! once, and one sending `Expect: 100-continue` gets no `100 Continue` first).
//!
//! What hyper refuses itself (400, connection closed): two different `Content-Length`s, a
//! `Content-Length` that isn't digits, `chunked` not last, `Transfer-Encoding` in HTTP/1.0,
//! obs-fold, whitespace before a header's colon, bare CR. A request with both
//! `Content-Length` and `Transfer-Encoding` is refused too (400, connection closed), as RFC
//! 9112 section 6.3 allows and nginx does; hyper drops the `Content-Length` of such a request,
//! so the connection's head scanner finds it (see [`super::heads`]).

use axum::response::Response;
use http::header::{self, HeaderMap};
use http::{HeaderValue, Request, StatusCode, Uri, Version};

/// Why a request was refused from its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400, with what is wrong.
    Malformed(&'static str),
    /// 413: the announced body is over `max_body_bytes`.
    TooLarge,
    /// 501: a transfer coding doorman doesn't implement.
    UnknownCoding,
}

/// A request whose head carried both `Content-Length` and `Transfer-Encoding`.
pub const BOTH_LENGTHS: Refusal =
    Refusal::Malformed("Request with both Content-Length and Transfer-Encoding.");

/// Checks a request head; `max_body_bytes` bounds the announced body.
pub fn check<B>(request: &Request<B>, max_body_bytes: u64) -> Result<(), Refusal> {
    let headers = request.headers();
    host(request.version(), request.uri(), headers)?;
    transfer_coding(headers)?;
    if content_length(headers)?.is_some_and(|length| length > max_body_bytes) {
        return Err(Refusal::TooLarge);
    }
    Ok(())
}

/// Whether an HTTP/1 request announces a body that may be left unread when it is answered
/// (its connection then lingers: see [`super::linger`]).
pub fn announces_body<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    request.version() <= Version::HTTP_11
        && (headers.contains_key(header::TRANSFER_ENCODING)
            || headers
                .get(header::CONTENT_LENGTH)
                .is_some_and(|length| length.as_bytes() != b"0"))
}

/// The answer to a refused request: DRF's `{"detail": ...}`, and over HTTP/1 `Connection:
/// close`, since the rest of what the client sent can't be trusted to be framed as it says.
pub fn refused(refusal: Refusal, version: Version) -> Response {
    let (status, detail) = match refusal {
        Refusal::Malformed(detail) => (StatusCode::BAD_REQUEST, detail),
        Refusal::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large."),
        Refusal::UnknownCoding => (
            StatusCode::NOT_IMPLEMENTED,
            "Transfer-Encoding other than chunked is not supported.",
        ),
    };
    let mut response =
        crate::api::render::render(status, &serde_json::json!({ "detail": detail }), None);
    if version <= Version::HTTP_11 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// RFC 9112 section 3.2: one `Host`, a valid one, required in HTTP/1.1, and equal to the
/// target's authority when the target has one (absolute form, or HTTP/2's `:authority`).
fn host(version: Version, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let Some(host) = hosts.next() else {
        return if version == Version::HTTP_11 {
            Err(Refusal::Malformed(
                "HTTP/1.1 request without a Host header.",
            ))
        } else {
            Ok(())
        };
    };
    if hosts.next().is_some() {
        return Err(Refusal::Malformed(
            "Request with more than one Host header.",
        ));
    }
    if host.is_empty() {
        // Allowed for a target without an authority (RFC 9110 section 7.2).
        return match uri.authority() {
            None => Ok(()),
            Some(_) => Err(MISMATCH),
        };
    }
    let invalid = Refusal::Malformed("Invalid Host header.");
    let named = http::uri::Authority::try_from(host.as_bytes()).map_err(|_| invalid)?;
    // `port = *DIGIT`, within a u16 (http's parser lets `host:x` through).
    let bad_port = match named.as_str()[named.host().len()..].strip_prefix(':') {
        Some("") | None => false,
        Some(port) => port.parse::<u16>().is_err() || !port.bytes().all(|b| b.is_ascii_digit()),
    };
    if named.as_str().contains('@') || named.host().is_empty() || bad_port {
        return Err(invalid);
    }
    let Some(target) = uri.authority() else {
        return Ok(());
    };
    let default_port = match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    let same_host = named.host().eq_ignore_ascii_case(target.host());
    let same_port = named.port_u16().or(default_port) == target.port_u16().or(default_port);
    if same_host && same_port {
        Ok(())
    } else {
        Err(MISMATCH)
    }
}

const MISMATCH: Refusal = Refusal::Malformed("Host header does not match the request target.");

/// hyper has checked that `chunked` comes last; anything before it (`gzip, chunked`) is a
/// coding doorman doesn't decode (501, RFC 9112 section 6.1), and `chunked` twice is invalid
/// (it may be applied once only).
fn transfer_coding(headers: &HeaderMap) -> Result<(), Refusal> {
    let mut chunked = 0;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let text = value
            .to_str()
            .map_err(|_| Refusal::Malformed("Invalid Transfer-Encoding header."))?;
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if coding.eq_ignore_ascii_case("chunked") {
                chunked += 1;
            } else {
                return Err(Refusal::UnknownCoding);
            }
        }
    }
    if chunked > 1 {
        return Err(Refusal::Malformed(
            "Transfer-Encoding chunked more than once.",
        ));
    }
    Ok(())
}

/// The announced length: every `Content-Length` value (HTTP/2 may carry a list) must be
/// digits and all the same.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Refusal> {
    let invalid = Refusal::Malformed("Invalid Content-Length header.");
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let text = value.to_str().map_err(|_| invalid)?;
        for part in text.split(',').map(str::trim) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid);
            }
            let parsed: u64 = part.parse().map_err(|_| invalid)?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(invalid);
            }
            length = Some(parsed);
        }
    }
    Ok(length)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request(version: Version, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get(uri).version(version);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn checked(version: Version, uri: &str, headers: &[(&str, &str)]) -> Result<(), Refusal> {
        check(&request(version, uri, headers), 1000)
    }

    #[test]
    fn host_rules() {
        const HTTP_10: Version = Version::HTTP_10;
        const HTTP_11: Version = Version::HTTP_11;
        const HTTP_2: Version = Version::HTTP_2;
        assert!(checked(HTTP_11, "/", &[("host", "a.example")]).is_ok());
        assert!(checked(HTTP_11, "/", &[("host", "A.example:8000")]).is_ok());
        assert!(checked(HTTP_11, "/", &[("host", "[::1]:8000")]).is_ok());
        assert!(checked(HTTP_10, "/", &[]).is_ok());
        assert!(checked(HTTP_2, "http://a.example/", &[]).is_ok());
        assert!(checked(HTTP_11, "/", &[]).is_err());
        assert!(checked(HTTP_11, "/", &[("host", "a"), ("host", "a")]).is_err());
        for bad in ["a b", "a/b", "u@a", ":80", "a:x", "a:99999"] {
            assert!(checked(HTTP_11, "/", &[("host", bad)]).is_err(), "{bad}");
        }
        let absolute = "http://a.example/hello/";
        assert!(checked(HTTP_11, absolute, &[("host", "a.example")]).is_ok());
        assert!(checked(HTTP_11, absolute, &[("host", "a.example:80")]).is_ok());
        assert_eq!(
            checked(HTTP_11, absolute, &[("host", "b.example")]),
            Err(MISMATCH)
        );
        assert_eq!(
            checked(HTTP_11, absolute, &[("host", "a.example:81")]),
            Err(MISMATCH)
        );
        assert_eq!(checked(HTTP_11, absolute, &[("host", "")]), Err(MISMATCH));
        assert_eq!(
            checked(HTTP_2, absolute, &[("host", "b.example")]),
            Err(MISMATCH)
        );
    }

    #[test]
    fn codings_and_lengths() {
        let h = |extra: (&str, &str)| checked(Version::HTTP_11, "/", &[("host", "a"), extra]);
        assert!(h(("transfer-encoding", "chunked")).is_ok());
        assert!(h(("transfer-encoding", "Chunked")).is_ok());
        assert_eq!(
            h(("transfer-encoding", "gzip, chunked")),
            Err(Refusal::UnknownCoding)
        );
        assert!(matches!(
            h(("transfer-encoding", "chunked, chunked")),
            Err(Refusal::Malformed(_))
        ));
        assert!(h(("content-length", "1000")).is_ok());
        assert_eq!(h(("content-length", "1001")), Err(Refusal::TooLarge));
        assert_eq!(
            h(("content-length", "99999999999999999999999")),
            Err(Refusal::Malformed("Invalid Content-Length header."))
        );
        assert!(h(("content-length", "5, 5")).is_ok());
        for bad in ["5, 6", "+5", "-1", "0x10", ""] {
            assert!(
                matches!(h(("content-length", bad)), Err(Refusal::Malformed(_))),
                "{bad}"
            );
        }
    }
}
