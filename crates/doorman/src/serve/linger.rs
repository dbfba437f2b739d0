//! Lingering close, as nginx's `lingering_close`: when doorman answers a request before reading
//! its whole body (a 413 from `Content-Length`, a refused framing) and then closes the
//! connection, the client may still be writing. Closing a socket with unread data makes the
//! kernel reset the connection, and a client that writes its whole body before reading
//! (Python's `http.client` and `requests` do) then sees the reset instead of the answer. So
//! such a connection is first shut down for writing (the answer and a FIN go out), then read
//! and discarded until the client closes its side, within bounds.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The longest a connection lingers after its answer (nginx's `lingering_time`).
pub const LINGERING_TIME: Duration = Duration::from_secs(30);
/// The longest it waits for the client's next bytes while lingering (`lingering_timeout`).
pub const LINGERING_TIMEOUT: Duration = Duration::from_secs(5);
/// The most it reads and discards while lingering; a client sending more is cut off.
pub const LINGERING_BYTES: u64 = 64 * 1024 * 1024;

/// The writing half of `AsyncWrite` (all but `poll_shutdown`) for a socket wrapper whose
/// `io` field is the socket, passed straight through: the wrappers here watch reads or the
/// close, never what is written.
macro_rules! writes_through_to_io {
    () => {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.io.is_write_vectored()
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.io).poll_flush(cx)
        }
    };
}
pub(crate) use writes_through_to_io;

/// Whether a connection's last request may have left body bytes unread: set by the gate for
/// every HTTP/1 request that announces a body, read when the connection closes. Only such
/// connections linger, so an idle keep-alive connection closes at once.
#[derive(Clone, Debug, Default)]
pub struct Linger(Arc<AtomicBool>);

impl Linger {
    /// Whether the request being answered announced a body.
    pub fn expect_body(&self, announced: bool) {
        self.0.store(announced, Ordering::Relaxed);
    }

    fn wanted(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A connection's socket that lingers when it is shut down (see the module's text).
pub struct Lingering<I> {
    io: I,
    linger: Linger,
    state: State,
}

enum State {
    Open,
    /// Shut down for writing; reading and discarding.
    Draining {
        /// The earlier of the whole lingering time's end and the next read's deadline.
        timer: Pin<Box<Sleep>>,
        until: Instant,
        discarded: u64,
    },
    Closed,
}

impl<I> Lingering<I> {
    pub fn new(io: I, linger: Linger) -> Lingering<I> {
        Lingering {
            io,
            linger,
            state: State::Open,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Lingering<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<I> {
    writes_through_to_io!();

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Open => {
                    ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
                    if !this.linger.wanted() {
                        this.state = State::Closed;
                        continue;
                    }
                    let now = Instant::now();
                    let until = now + LINGERING_TIME;
                    this.state = State::Draining {
                        timer: Box::pin(tokio::time::sleep_until(
                            until.min(now + LINGERING_TIMEOUT),
                        )),
                        until,
                        discarded: 0,
                    };
                }
                State::Draining {
                    timer,
                    until,
                    discarded,
                } => {
                    if timer.as_mut().poll(cx).is_ready() {
                        this.state = State::Closed;
                        continue;
                    }
                    let mut scratch = [0u8; 8192];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(_)) => this.state = State::Closed,
                        Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                            this.state = State::Closed;
                        }
                        Poll::Ready(Ok(())) => {
                            *discarded = discarded.saturating_add(buf.filled().len() as u64);
                            if *discarded > LINGERING_BYTES {
                                this.state = State::Closed;
                                continue;
                            }
                            let next = (Instant::now() + LINGERING_TIMEOUT).min(*until);
                            timer.as_mut().reset(next);
                        }
                    }
                }
                State::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}
