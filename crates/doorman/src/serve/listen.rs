//! doorman's own accept loop (hyper-util), so that what gunicorn and nginx do for Django is
//! done here: TCP or a Unix socket or a socket inherited from systemd (`LISTEN_FDS`), a
//! deadline for reading request headers (slowloris), a cap on header size (431), HTTP/1.1 and
//! HTTP/2 with nginx's HTTP/2 limits (concurrent streams, header list size, a deadline for the
//! preface and the first request, an idle timeout, pings), and a graceful stop that finishes
//! requests in flight up to a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};

use super::gate::{Activity, Gate};
use super::heads::HeadScan;
use super::linger::Lingering;

/// Where to listen: `127.0.0.1:8000`, or `unix:/run/doorman.sock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bind {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Bind {
    /// `host:port`, or `unix:` followed by an absolute path.
    pub fn parse(text: &str) -> Option<Bind> {
        match text.strip_prefix("unix:") {
            Some(path) if path.starts_with('/') => Some(Bind::Unix(PathBuf::from(path))),
            _ => text.parse().ok().map(Bind::Tcp),
        }
    }

    /// The TCP address, if it is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Bind::Tcp(addr) => Some(*addr),
            Bind::Unix(_) => None,
        }
    }
}

impl std::fmt::Display for Bind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bind::Tcp(addr) => write!(f, "{addr}"),
            Bind::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Where doorman listens.
pub enum Listener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

/// How connections are served.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// Time allowed to send a request's headers (and to start the next one on a kept-alive
    /// connection); a client dribbling bytes is cut off after it.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers); beyond it the answer is 431.
    pub max_header_bytes: usize,
    /// How long a graceful stop waits for requests in flight.
    pub shutdown_timeout: Duration,
    /// Streams one HTTP/2 connection may have open at once.
    pub http2_max_concurrent_streams: u32,
    /// An HTTP/2 connection without a request for this long is closed (GOAWAY first). Its
    /// first request must come within `header_read_timeout` of the connection's start, as on
    /// HTTP/1.
    pub http2_idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged, and how long the answer may take.
    pub http2_keepalive_interval: Duration,
    pub http2_keepalive_timeout: Duration,
    /// TLS on every connection, when configured.
    pub tls: Option<super::tls::Tls>,
}

/// hyper refuses read buffers under 8 KiB.
const MIN_HEADER_BYTES: usize = 8192;

/// Remotely reset streams that the server hasn't started on yet, per connection; more and the
/// connection is closed with `ENHANCE_YOUR_CALM` (the "rapid reset" attack, CVE-2023-44487).
/// h2's own default, said here because it is the bound.
const MAX_PENDING_RESET_STREAMS: usize = 20;

/// Streams per connection the server may reset for the client's protocol errors before it
/// closes the connection ("MadeYouReset", CVE-2025-8671). h2's default.
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// How long a connection closed for being quiet gets to finish what it has started (a request
/// that came as the GOAWAY went out) before it is dropped.
const CLOSING_GRACE: Duration = Duration::from_secs(1);

impl Listener {
    /// A new socket for `bind`. A Unix socket replaces a stale socket file and gets `mode`.
    pub async fn open(bind: &Bind, unix_mode: u32) -> std::io::Result<Listener> {
        match bind {
            Bind::Tcp(addr) => Ok(Listener::Tcp(TcpListener::bind(addr).await?)),
            Bind::Unix(path) => {
                if std::fs::symlink_metadata(path)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    std::fs::remove_file(path)?;
                }
                let listener = UnixListener::bind(path)?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(unix_mode))?;
                Ok(Listener::Unix {
                    listener,
                    path: path.clone(),
                })
            }
        }
    }

    /// The TCP address, when listening on TCP.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr(),
            Listener::Unix { .. } => Err(std::io::Error::other("listening on a Unix socket")),
        }
    }

    /// `http://127.0.0.1:8000/` or `unix:/run/doorman.sock`, for the log.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(listener) => listener
                .local_addr()
                .map_or_else(|_| "tcp".to_owned(), |a| format!("http://{a}/")),
            Listener::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }
}

/// Opens every configured listener (or takes every socket systemd passed in `LISTEN_FDS`).
pub async fn open_all(binds: &[Bind], unix_mode: u32) -> std::io::Result<Vec<Listener>> {
    let inherited = listenfd::ListenFd::from_env();
    if inherited.len() > 0 {
        let mut inherited = inherited;
        let mut listeners = Vec::new();
        for index in 0..inherited.len() {
            if let Ok(Some(listener)) = inherited.take_tcp_listener(index) {
                listener.set_nonblocking(true)?;
                listeners.push(Listener::Tcp(TcpListener::from_std(listener)?));
            } else if let Ok(Some(listener)) = inherited.take_unix_listener(index) {
                listener.set_nonblocking(true)?;
                let path = listener
                    .local_addr()?
                    .as_pathname()
                    .map(PathBuf::from)
                    .unwrap_or_default();
                listeners.push(Listener::Unix {
                    listener: UnixListener::from_std(listener)?,
                    path,
                });
            }
        }
        if !listeners.is_empty() {
            return Ok(listeners);
        }
    }
    let mut listeners = Vec::with_capacity(binds.len());
    for bind in binds {
        let listener = Listener::open(bind, unix_mode)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("{bind}: {e}")))?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Serves `app` on every listener until `shutdown` completes, then stops accepting and gives
/// the requests in flight up to `shutdown_timeout` to finish.
pub async fn serve(
    listeners: Vec<Listener>,
    app: super::gate::App,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let protocols = Protocols::new(&limits);
    let (stop_connections, stopping) = watch::channel(false);
    let (live, mut all_closed) = mpsc::channel::<()>(1);
    let connections = Connections {
        stopping,
        _live: live,
    };
    let (stop, stopped) = watch::channel(false);
    let mut loops = tokio::task::JoinSet::new();
    for listener in listeners {
        loops.spawn(accept_loop(
            listener,
            app.clone(),
            protocols.clone(),
            connections.clone(),
            limits.clone(),
            stopped.clone(),
        ));
    }
    drop(connections);
    shutdown.await;
    let _ = stop.send(true);
    while loops.join_next().await.is_some() {}
    // A connection accepted just before the stop may not have sent its request yet; graceful
    // shutdown would close it as idle. Give such requests a moment to arrive first (another
    // process sharing an inherited socket takes the new connections meanwhile).
    tokio::time::sleep(limits.shutdown_timeout.min(Duration::from_secs(1))).await;
    let _ = stop_connections.send(true);
    tokio::select! {
        // Every connection's task has ended (each holds a sender).
        _ = all_closed.recv() => {}
        () = tokio::time::sleep(limits.shutdown_timeout) => {
            tracing::warn!("requests still in flight at shutdown_timeout; closing them");
        }
    }
    Ok(())
}

/// What every connection's task holds: the graceful stop's signal, and a sender whose drop
/// tells the stop that the connection is done.
#[derive(Clone)]
struct Connections {
    stopping: watch::Receiver<bool>,
    _live: mpsc::Sender<()>,
}

/// Accepts on one listener until told to stop; a Unix socket file is removed then.
async fn accept_loop(
    listener: Listener,
    app: super::gate::App,
    protocols: Protocols,
    connections: Connections,
    limits: ConnectionLimits,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = accept(&listener) => match accepted {
                Ok(Accepted::Tcp(stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    match &limits.tls {
                        None => spawn_tcp_connection(
                            &protocols,
                            &connections,
                            limits.header_read_timeout,
                            stream,
                            app.connection(Some(peer), false),
                        ),
                        Some(tls) => spawn_tls_connection(
                            &protocols,
                            &connections,
                            tls.acceptor(),
                            limits.header_read_timeout,
                            stream,
                            app.connection(Some(peer), true),
                        ),
                    }
                }
                Ok(Accepted::Unix(stream)) => {
                    let gate = app.connection(None, false);
                    let stream = Lingering::new(stream, gate.linger());
                    protocols.spawn(Protocol::Detect, stream, gate, connections.clone(), Instant::now());
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    if let Listener::Unix { path, .. } = &listener {
        let _ = std::fs::remove_file(path);
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, peer)| Accepted::Tcp(s, peer)),
        Listener::Unix { listener, .. } => listener.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}

/// The HTTP version a connection speaks, when known before hyper reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
    /// Unknown: hyper-util's auto-detection reads the first bytes.
    Detect,
}

/// The connection builders. A connection whose version is known gets a connection of that
/// version alone: hyper-util's auto-detecting connection holds room for both an HTTP/1 and an
/// HTTP/2 state machine, and with it an idle keep-alive connection took 18.6 KiB (10 000 of
/// them: 196 MB); served as HTTP/1 alone, 12.3 KiB (138 MB). The auto-detecting one is kept
/// for what can't be told apart up front: Unix sockets, TLS without ALPN, and a client whose
/// first packet is shorter than four bytes.
#[derive(Clone)]
struct Protocols {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    auto: Builder<TokioExecutor>,
    quiet: Quiet,
    /// The longest request head hyper reads (HTTP/1).
    max_head: usize,
}

/// The deadlines of a connection that may speak HTTP/2, which hyper's header deadline (HTTP/1
/// only) doesn't cover: its first request must have come `first` after it opened (the preface,
/// the settings and a whole request head), and it is closed once `idle` passes without one.
#[derive(Clone, Copy, Debug)]
struct Quiet {
    first: Duration,
    idle: Duration,
}

impl Protocols {
    fn new(limits: &ConnectionLimits) -> Protocols {
        let max_head = limits.max_header_bytes.max(MIN_HEADER_BYTES);
        let max_header_list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(max_head);
        // The header list bound also bounds a CONTINUATION flood: h2 closes the connection
        // after as many CONTINUATION frames as the list could fill, plus a quarter.
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(max_header_list)
            .max_concurrent_streams(limits.http2_max_concurrent_streams)
            .max_pending_accept_reset_streams(MAX_PENDING_RESET_STREAMS)
            .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
            .keep_alive_interval(limits.http2_keepalive_interval)
            .keep_alive_timeout(limits.http2_keepalive_timeout);
        let mut auto = Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(max_head);
        auto.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(max_header_list)
            .max_concurrent_streams(limits.http2_max_concurrent_streams)
            .max_pending_accept_reset_streams(MAX_PENDING_RESET_STREAMS)
            .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
            .keep_alive_interval(limits.http2_keepalive_interval)
            .keep_alive_timeout(limits.http2_keepalive_timeout);
        let quiet = Quiet {
            first: limits.header_read_timeout,
            idle: limits.http2_idle_timeout,
        };
        Protocols {
            http1,
            http2,
            auto,
            quiet,
            max_head,
        }
    }

    /// Serves one connection, opened at `opened`, in a task of its own, under the graceful
    /// stop. Each version gets a task sized to its own connection (an `async` match over the
    /// three would be as big as the biggest). A connection that may speak HTTP/2 is watched
    /// for its first request and for idleness; an HTTP/1 one has hyper's header deadline.
    fn spawn<I>(
        &self,
        protocol: Protocol,
        io: I,
        service: Gate,
        connections: Connections,
        opened: Instant,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // A client that goes away mid-request is routine, not an error worth a log line.
        match protocol {
            Protocol::Http1 => {
                let io = TokioIo::new(HeadScan::new(io, service.heads(), self.max_head));
                let connection = self.http1.serve_connection(io, service);
                tokio::spawn(run(connection, connections, None));
            }
            Protocol::Http2 => {
                let activity = Arc::new(Activity::new(opened));
                let service = service.watched(activity.clone());
                let connection = self.http2.serve_connection(TokioIo::new(io), service);
                tokio::spawn(run(connection, connections, Some((activity, self.quiet))));
            }
            Protocol::Detect => {
                let activity = Arc::new(Activity::new(opened));
                let io = TokioIo::new(HeadScan::new(io, service.heads(), self.max_head));
                let service = service.watched(activity.clone());
                let connection = self.auto.serve_connection(io, service).into_owned();
                tokio::spawn(run(connection, connections, Some((activity, self.quiet))));
            }
        }
    }
}

/// Runs one connection until it ends, the server stops (a graceful close: GOAWAY on HTTP/2,
/// `Connection: close` on HTTP/1) or, when it is watched, it stays quiet past its deadline:
/// closed at once when no request came, else gracefully too, and dropped [`CLOSING_GRACE`]
/// after its last request if the client doesn't close it.
async fn run<C>(
    connection: C,
    mut connections: Connections,
    watched: Option<(Arc<Activity>, Quiet)>,
) where
    C: GracefulConnection,
{
    let mut connection = std::pin::pin!(connection);
    let activity = watched.as_ref().map(|(activity, _)| activity.as_ref());
    let quiet = watched.as_ref().map(|(_, quiet)| *quiet);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = connections.stopping.wait_for(|stop| *stop) => {}
        () = quiet_past(activity, quiet) => {}
    }
    if activity.is_some_and(|activity| !activity.any()) {
        // No request came: nothing to finish, and one that never sent its preface can't
        // be closed gracefully.
        return;
    }
    connection.as_mut().graceful_shutdown();
    match activity {
        None => {
            let _ = connection.await;
        }
        Some(activity) => {
            activity.touch();
            let grace = Some(Quiet {
                first: CLOSING_GRACE,
                idle: CLOSING_GRACE,
            });
            tokio::select! {
                _ = connection.as_mut() => {}
                () = quiet_past(Some(activity), grace) => {}
            }
        }
    }
}

/// Completes once the connection has been quiet past its deadline; never for one not watched.
async fn quiet_past(activity: Option<&Activity>, quiet: Option<Quiet>) {
    let (Some(activity), Some(quiet)) = (activity, quiet) else {
        return std::future::pending().await;
    };
    loop {
        match activity.quiet_at(quiet.first, quiet.idle) {
            Some(at) if at <= Instant::now() => return,
            // Before the first request the deadline is `first`; the request brings `idle`,
            // which may be sooner.
            Some(at) if !activity.any() => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = activity.first_request() => {}
                }
            }
            Some(at) => tokio::time::sleep_until(at.into()).await,
            // A request is being answered: look again a little later.
            None => tokio::time::sleep(quiet.idle.min(CLOSING_GRACE)).await,
        }
    }
}

/// What an HTTP/2 connection without TLS (h2c, "prior knowledge") sends first.
const H2_PREFACE_START: &[u8; 4] = b"PRI ";

/// A plain TCP connection: its first bytes say which HTTP it speaks (peeked, not read, within
/// the header deadline; a client that sends nothing in time is dropped, as hyper would). The
/// peek ends at the first bytes, so a client that waits before its first byte gets up to
/// twice `header_read_timeout` for its first request head: the peek's and then hyper's.
fn spawn_tcp_connection(
    protocols: &Protocols,
    connections: &Connections,
    header_read_timeout: Duration,
    stream: tokio::net::TcpStream,
    gate: Gate,
) {
    let protocols = protocols.clone();
    let connections = connections.clone();
    let opened = Instant::now();
    tokio::spawn(async move {
        let mut first = [0u8; 4];
        let protocol =
            match tokio::time::timeout(header_read_timeout, stream.peek(&mut first)).await {
                Ok(Ok(0) | Err(_)) | Err(_) => return,
                Ok(Ok(n)) if n < first.len() => Protocol::Detect,
                Ok(Ok(_)) if &first == H2_PREFACE_START => Protocol::Http2,
                Ok(Ok(_)) => Protocol::Http1,
            };
        let stream = Lingering::new(stream, gate.linger());
        protocols.spawn(protocol, stream, gate, connections, opened);
    });
}

/// The TLS handshake runs in the connection's own task, under the header deadline, so a slow
/// or silent client can't hold the accept loop. ALPN says which HTTP the connection speaks.
/// Its gate gives responses `Strict-Transport-Security`.
fn spawn_tls_connection(
    protocols: &Protocols,
    connections: &Connections,
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    stream: tokio::net::TcpStream,
    gate: Gate,
) {
    let protocols = protocols.clone();
    let connections = connections.clone();
    let opened = Instant::now();
    tokio::spawn(async move {
        let stream = Lingering::new(stream, gate.linger());
        let Ok(Ok(tls)) = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
        else {
            return;
        };
        let protocol = match tls.get_ref().1.alpn_protocol() {
            Some(b"h2") => Protocol::Http2,
            Some(_) => Protocol::Http1,
            None => Protocol::Detect,
        };
        protocols.spawn(protocol, tls, gate, connections, opened);
    });
}
