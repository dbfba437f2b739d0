//! Logging set-up: `RUST_LOG`-style filtering (default `info`), human-readable lines on a
//! terminal and JSON lines otherwise, written to stderr so stdout stays for command output.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines look (the `log_format` setting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON otherwise.
    #[default]
    Auto,
    Json,
    Text,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(LogFormat::Auto),
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            other => Err(format!("expected auto, json or text, got {other:?}")),
        }
    }
}

/// Installs the global subscriber once, writing straight to stderr; later calls (tests) are
/// no-ops.
pub fn init(default_filter: &str) {
    install(default_filter, LogFormat::Auto, std::io::stderr);
}

/// Keeps the server's log writer running; dropping it writes out what is queued.
#[must_use = "log lines queued when this is dropped are written out then; keep it until exit"]
pub struct LogGuard {
    _worker: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// The server's logging, in the given format. Lines are formatted on the thread that logs
/// them and written to stderr by a thread of their own, in batches: a request never waits for
/// the write (one `write` per access-log line cost a tenth of `/hello/`'s time at full load).
/// Nothing is dropped: when the queue is full, logging waits. The guard flushes at exit.
pub fn init_with(default_filter: &str, format: LogFormat) -> LogGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("doorman-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    if install(default_filter, format, writer) {
        LogGuard {
            _worker: Some(guard),
        }
    } else {
        LogGuard { _worker: None }
    }
}

/// True when this call installed the subscriber.
fn install<W>(default_filter: &str, format: LogFormat, writer: W) -> bool
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let json = match format {
        LogFormat::Auto => !std::io::stderr().is_terminal(),
        LogFormat::Json => true,
        LogFormat::Text => false,
    };
    if json {
        builder.json().flatten_event(true).try_init().is_ok()
    } else {
        builder.try_init().is_ok()
    }
}
