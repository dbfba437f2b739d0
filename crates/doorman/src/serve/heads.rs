//! The one framing check hyper makes impossible above it: a request head carrying both
//! `Content-Length` and `Transfer-Encoding`. hyper reads such a body as chunked and closes the
//! connection after the answer, as RFC 9112 section 6.3 allows, but it drops the
//! `Content-Length` from the headers it hands on, so the request looks like any chunked one.
//! Such a head is the classic request-smuggling probe (a proxy in front may have framed it by
//! its length), so doorman refuses it with a 400 as nginx does.
//!
//! [`HeadScan`] sits between an HTTP/1 connection's socket and hyper and follows the request
//! framing in the bytes as they are read: each request head (parsed with httparse, hyper's own
//! parser), then its body by length or by chunks. It records which request on the connection,
//! counted from 1, first carried both; the gate counts the requests hyper hands it and refuses
//! that one. hyper reads a head only after the scanner has seen its bytes, so the mark is
//! always in place when the request arrives. The scan stops at that request (hyper closes the
//! connection after it) and at anything it can't follow (a head hyper refuses too, the HTTP/2
//! preface, a head over the size limit): it never refuses a request by mistake, it can only
//! miss one after losing its way in bytes hyper refused first.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// hyper's limit on the number of headers in a request.
const MAX_HEADERS: usize = 100;

/// Shared by a connection's scanner and its gate.
#[derive(Clone, Debug, Default)]
pub struct Heads(Arc<Marks>);

#[derive(Debug, Default)]
struct Marks {
    /// The request (from 1) whose head carried both lengths; 0 for none yet.
    both_lengths: AtomicU64,
    /// How many HTTP/1 requests the gate has been handed.
    handed: AtomicU64,
}

impl Heads {
    /// Called by the gate for each HTTP/1 request, in order: whether its head carried both
    /// `Content-Length` and `Transfer-Encoding`.
    pub fn next_has_both_lengths(&self) -> bool {
        let this = self.0.handed.fetch_add(1, Ordering::AcqRel) + 1;
        self.0.both_lengths.load(Ordering::Acquire) == this
    }
}

/// The marks a connection's scanner leaves for its first `requests` requests when the
/// connection's bytes arrive in `pieces`, a head being at most `max_head` bytes: which request,
/// if any, carried both lengths. For the fuzz target, which checks that they don't depend on
/// how the bytes are split.
pub fn marks<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
    max_head: usize,
    requests: u64,
) -> Vec<bool> {
    let heads = Heads::default();
    let mut scanner = Scanner::new(heads.clone(), max_head);
    for piece in pieces {
        scanner.feed(piece);
    }
    (0..requests)
        .map(|_| heads.next_has_both_lengths())
        .collect()
}

/// A connection's socket whose reads are followed by a [`Scanner`].
pub struct HeadScan<I> {
    io: I,
    scanner: Scanner,
}

impl<I> HeadScan<I> {
    /// `max_head` is the longest head hyper takes; a longer one stops the scan.
    pub fn new(io: I, heads: Heads, max_head: usize) -> HeadScan<I> {
        HeadScan {
            io,
            scanner: Scanner::new(heads, max_head),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HeadScan<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.scanner.feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeadScan<I> {
    super::linger::writes_through_to_io!();

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Follows HTTP/1 request framing through the bytes of a connection.
struct Scanner {
    heads: Heads,
    max_head: usize,
    /// Requests whose heads have been read.
    count: u64,
    /// A head's bytes so far, when it came in more than one read.
    partial: Vec<u8>,
    state: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a request head.
    Head,
    /// This many bytes of a body by length are left.
    Body(u64),
    /// Reading a chunk-size line: the size so far, whether a digit came, whether the digits
    /// have ended (an extension or whitespace follows).
    ChunkSize {
        size: u64,
        digits: bool,
        ended: bool,
    },
    /// This many bytes of chunk data are left.
    ChunkData(u64),
    /// The line end after a chunk's data.
    ChunkEnd,
    /// The trailer section after the last chunk: whether the current line has any byte.
    Trailers { line: bool },
    /// Nothing more to follow.
    Stopped,
}

impl Scanner {
    fn new(heads: Heads, max_head: usize) -> Scanner {
        Scanner {
            heads,
            max_head,
            count: 0,
            partial: Vec::new(),
            state: State::Head,
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            data = match self.state {
                State::Stopped => return,
                State::Head => self.head(data),
                State::Body(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Body(left)
                    };
                    &data[take..]
                }
                State::ChunkData(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(left)
                    };
                    &data[take..]
                }
                _ => {
                    self.line_byte(data[0]);
                    &data[1..]
                }
            };
        }
    }

    /// One byte of a chunk-size line, of the line after chunk data, or of the trailers.
    fn line_byte(&mut self, byte: u8) {
        self.state = match (self.state, byte) {
            (State::ChunkSize { size, digits, .. }, b'\n') => match (digits, size) {
                (false, _) => State::Stopped,
                (true, 0) => State::Trailers { line: false },
                (true, size) => State::ChunkData(size),
            },
            (
                State::ChunkSize {
                    size,
                    digits: _,
                    ended: false,
                },
                hex,
            ) if hex.is_ascii_hexdigit() => {
                let digit = u64::from((hex as char).to_digit(16).unwrap_or(0));
                match size.checked_mul(16).and_then(|s| s.checked_add(digit)) {
                    Some(size) => State::ChunkSize {
                        size,
                        digits: true,
                        ended: false,
                    },
                    None => State::Stopped,
                }
            }
            (State::ChunkSize { size, digits, .. }, _) => State::ChunkSize {
                size,
                digits,
                ended: true,
            },
            (State::ChunkEnd, b'\n') => State::ChunkSize {
                size: 0,
                digits: false,
                ended: false,
            },
            (State::ChunkEnd, b'\r') => State::ChunkEnd,
            (State::ChunkEnd, _) => State::Stopped,
            (State::Trailers { line: false }, b'\n') => State::Head,
            (State::Trailers { .. }, b'\n') => State::Trailers { line: false },
            (State::Trailers { line }, b'\r') => State::Trailers { line },
            (State::Trailers { .. }, _) => State::Trailers { line: true },
            (state, _) => state,
        };
    }

    /// Reads head bytes from `data`; returns what follows the head once it is whole.
    fn head<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        if self.partial.is_empty() {
            // The usual case: the whole head in one read, parsed where it lies.
            match parse(data) {
                Parsed::Complete(length, framing) if length <= self.max_head => {
                    self.headed(framing);
                    return &data[length..];
                }
                Parsed::Complete(..) => {
                    self.state = State::Stopped;
                    return &[];
                }
                Parsed::Partial => {}
                Parsed::Invalid => {
                    self.state = State::Stopped;
                    return &[];
                }
            }
        }
        let had = self.partial.len();
        if had + data.len() > self.max_head {
            self.state = State::Stopped;
            return &[];
        }
        self.partial.extend_from_slice(data);
        match parse(&self.partial) {
            Parsed::Complete(length, framing) => {
                self.partial.clear();
                self.headed(framing);
                // What of this read followed the head.
                &data[length.saturating_sub(had).min(data.len())..]
            }
            Parsed::Partial => &[],
            Parsed::Invalid => {
                self.state = State::Stopped;
                &[]
            }
        }
    }

    fn headed(&mut self, framing: Framing) {
        self.count += 1;
        self.state = match framing {
            Framing::Both => {
                self.heads
                    .0
                    .both_lengths
                    .store(self.count, Ordering::Release);
                // hyper closes the connection after this request.
                State::Stopped
            }
            Framing::Chunked => State::ChunkSize {
                size: 0,
                digits: false,
                ended: false,
            },
            Framing::Length(0) | Framing::None => State::Head,
            Framing::Length(length) => State::Body(length),
            Framing::Unknown => State::Stopped,
        };
    }
}

enum Parsed {
    Complete(usize, Framing),
    Partial,
    Invalid,
}

enum Framing {
    None,
    Length(u64),
    Chunked,
    Both,
    /// A length hyper refuses: the connection ends with that request.
    Unknown,
}

fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let length = match request.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid,
    };
    let mut content_length = None;
    let mut chunked = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if header.name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                std::str::from_utf8(header.value)
                    .ok()
                    .map(str::trim)
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok()),
            );
        }
    }
    let framing = match (content_length, chunked) {
        (Some(_), true) => Framing::Both,
        (None, true) => Framing::Chunked,
        (Some(Some(length)), false) => Framing::Length(length),
        (Some(None), false) => Framing::Unknown,
        (None, false) => Framing::None,
    };
    Parsed::Complete(length, framing)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Feeds `bytes` to a scanner in pieces of `step`, then asks for `requests` requests.
    fn marked(bytes: &[u8], step: usize, requests: u64) -> Vec<bool> {
        marks(bytes.chunks(step), 64 * 1024, requests)
    }

    const PLAIN: &str = "GET /hello/ HTTP/1.1\r\nHost: x\r\n\r\n";
    const BY_LENGTH: &str = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 27\r\n\r\n\
                             GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    const CHUNKED: &str = "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                           4;ext=1\r\nabcd\r\n1B \r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n\
                           0\r\nX-Trailer: 1\r\n\r\n";
    const BOTH: &str =
        "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n";

    #[test]
    fn the_request_with_both_lengths_is_marked_through_bodies_that_look_like_heads() {
        let stream = format!("{PLAIN}{BY_LENGTH}{CHUNKED}{BOTH}0\r\n\r\n{PLAIN}");
        for step in [1, 2, 3, 7, 64, stream.len()] {
            assert_eq!(
                marked(stream.as_bytes(), step, 5),
                [false, false, false, true, false],
                "step {step}"
            );
        }
    }

    #[test]
    fn no_request_is_marked_without_both() {
        let stream = format!("\r\n{PLAIN}{BY_LENGTH}{CHUNKED}{PLAIN}");
        for step in [1, 5, stream.len()] {
            assert_eq!(marked(stream.as_bytes(), step, 5), [false; 5], "{step}");
        }
    }

    #[test]
    fn both_orders_and_cases_are_marked() {
        for head in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\nCONTENT-LENGTH: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            assert_eq!(marked(head.as_bytes(), 4, 1), [true], "{head}");
        }
    }

    #[test]
    fn what_it_cannot_follow_stops_the_scan() {
        // The HTTP/2 preface, a head over the limit, a bad chunk size: nothing is marked after.
        let h2 = format!("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n{BOTH}");
        assert_eq!(marked(h2.as_bytes(), 3, 1), [false]);
        let heads = Heads::default();
        let mut scanner = Scanner::new(heads.clone(), 40);
        scanner.feed(b"GET / HTTP/1.1\r\nX-Long: ");
        scanner.feed(&[b'a'; 64]);
        scanner.feed(b"\r\n\r\n");
        scanner.feed(BOTH.as_bytes());
        assert_eq!(scanner.state, State::Stopped);
        assert!(!heads.next_has_both_lengths());
        // The same long head in one read.
        let long = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n{BOTH}", "a".repeat(64));
        assert_eq!(marks([long.as_bytes()], 40, 2), [false, false]);
        let bad_chunk =
            format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{BOTH}");
        assert_eq!(marked(bad_chunk.as_bytes(), 1, 2), [false, false]);
    }
}
