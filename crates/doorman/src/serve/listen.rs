//! doorman's own accept loop (hyper-util), so that what gunicorn and nginx do for Django is
//! done here: TCP or a Unix socket or a socket inherited from systemd (`LISTEN_FDS`), a
//! deadline for reading request headers (slowloris), a cap on header size (431), HTTP/1.1 and
//! HTTP/2, and a graceful stop that finishes requests in flight up to a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tower::ServiceExt;

use crate::config::Bind;

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
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let graceful = std::sync::Arc::new(GracefulShutdown::new());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut loops = tokio::task::JoinSet::new();
    for listener in listeners {
        loops.spawn(accept_loop(
            listener,
            app.clone(),
            builder.clone(),
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
    app: Router,
    builder: Builder<TokioExecutor>,
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
                    let app = app.clone().map_request(move |mut request: http::Request<_>| {
                        request.extensions_mut().insert(ConnectInfo(peer));
                        request
                    });
                    match &limits.tls {
                        None => spawn_connection(&builder, &graceful, stream, app),
                        Some(tls) => spawn_tls_connection(
                            &builder,
                            &graceful,
                            tls.acceptor(),
                            limits.header_read_timeout,
                            stream,
                            app,
                        ),
                    }
                }
                Ok(Accepted::Unix(stream)) => {
                    spawn_connection(&builder, &graceful, stream, app.clone());
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

/// The TLS handshake runs in the connection's own task, under the header deadline, so a slow
/// or silent client can't hold the accept loop. Responses get `Strict-Transport-Security`.
fn spawn_tls_connection<S>(
    builder: &Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    stream: tokio::net::TcpStream,
    app: S,
) where
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let builder = builder.clone();
    let watcher = graceful.watcher();
    let app = app.map_response(|mut response: axum::response::Response| {
        response.headers_mut().insert(
            http::header::STRICT_TRANSPORT_SECURITY,
            http::HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
        response
    });
    tokio::spawn(async move {
        let Ok(Ok(tls)) = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
        else {
            return;
        };
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(app))
            .into_owned();
        let _ = watcher.watch(connection).await;
    });
}

fn spawn_connection<I, S>(
    builder: &Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    io: I,
    app: S,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(app))
        .into_owned();
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        // A client that goes away mid-request is routine, not an error worth a log line.
        let _ = connection.await;
    });
}
