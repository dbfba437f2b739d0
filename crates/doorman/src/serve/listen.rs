//! doorman's own accept loop (hyper-util), so that what gunicorn and nginx do for Django is
//! done here: TCP or a Unix socket or a socket inherited from systemd (`LISTEN_FDS`), a
//! deadline for reading request headers (slowloris), a cap on header size (431), HTTP/1.1 and
//! HTTP/2, and a graceful stop that finishes requests in flight up to a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

use super::gate::Gate;
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
    /// TLS on every connection, when configured.
    pub tls: Option<super::tls::Tls>,
}

/// hyper refuses read buffers under 8 KiB.
const MIN_HEADER_BYTES: usize = 8192;

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
    let graceful = std::sync::Arc::new(GracefulShutdown::new());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut loops = tokio::task::JoinSet::new();
    for listener in listeners {
        loops.spawn(accept_loop(
            listener,
            app.clone(),
            protocols.clone(),
            graceful.clone(),
            limits.clone(),
            stopped.clone(),
        ));
    }
    shutdown.await;
    let _ = stop.send(true);
    while loops.join_next().await.is_some() {}
    // A connection accepted just before the stop may not have sent its request yet; graceful
    // shutdown would close it as idle. Give such requests a moment to arrive first (another
    // process sharing an inherited socket takes the new connections meanwhile).
    tokio::time::sleep(limits.shutdown_timeout.min(Duration::from_secs(1))).await;
    let Ok(graceful) = std::sync::Arc::try_unwrap(graceful) else {
        return Ok(());
    };
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_timeout) => {
            tracing::warn!("requests still in flight at shutdown_timeout; closing them");
        }
    }
    Ok(())
}

/// Accepts on one listener until told to stop; a Unix socket file is removed then.
async fn accept_loop(
    listener: Listener,
    app: super::gate::App,
    protocols: Protocols,
    graceful: std::sync::Arc<GracefulShutdown>,
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
                            &graceful,
                            limits.header_read_timeout,
                            stream,
                            app.connection(Some(peer), false),
                        ),
                        Some(tls) => spawn_tls_connection(
                            &protocols,
                            &graceful,
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
                    protocols.spawn(Protocol::Detect, stream, gate, graceful.watcher());
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
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(max_header_list);
        let mut auto = Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(max_head);
        auto.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(max_header_list);
        Protocols { http1, http2, auto }
    }

    /// Serves one connection in a task of its own, under the graceful stop. Each version
    /// gets a task sized to its own connection (an `async` match over the three would be as
    /// big as the biggest).
    fn spawn<I>(&self, protocol: Protocol, io: I, service: Gate, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        // A client that goes away mid-request is routine, not an error worth a log line.
        match protocol {
            Protocol::Http1 => {
                let connection = watcher.watch(self.http1.serve_connection(io, service));
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            Protocol::Http2 => {
                let connection = watcher.watch(self.http2.serve_connection(io, service));
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            Protocol::Detect => {
                let connection =
                    watcher.watch(self.auto.serve_connection(io, service).into_owned());
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
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
    graceful: &GracefulShutdown,
    header_read_timeout: Duration,
    stream: tokio::net::TcpStream,
    gate: Gate,
) {
    let protocols = protocols.clone();
    let watcher = graceful.watcher();
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
        protocols.spawn(protocol, stream, gate, watcher);
    });
}

/// The TLS handshake runs in the connection's own task, under the header deadline, so a slow
/// or silent client can't hold the accept loop. ALPN says which HTTP the connection speaks.
/// Its gate gives responses `Strict-Transport-Security`.
fn spawn_tls_connection(
    protocols: &Protocols,
    graceful: &GracefulShutdown,
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    stream: tokio::net::TcpStream,
    gate: Gate,
) {
    let protocols = protocols.clone();
    let watcher = graceful.watcher();
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
        protocols.spawn(protocol, tls, gate, watcher);
    });
}
