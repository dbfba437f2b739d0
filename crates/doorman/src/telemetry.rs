//! Logging set-up: `RUST_LOG`-style filtering (default `info`), human-readable lines on a
//! terminal and JSON lines otherwise, written to stderr so stdout stays for command output.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing_subscriber::EnvFilter;

mod json_lines;
pub mod settings;

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
    writer: Option<(BatchWriter, std::thread::JoinHandle<()>)>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some((writer, thread)) = self.writer.take() {
            writer.close();
            let _ = thread.join();
        }
    }
}

/// The server's logging, in the given format. Lines are formatted on the thread that logs
/// them and written to stderr by a thread of their own, in batches (see [`BatchWriter`]): a
/// request never waits for the write. Nothing is dropped: when the queue is full, logging
/// waits. The guard flushes at exit.
pub fn init_with(default_filter: &str, format: LogFormat) -> LogGuard {
    init_to(default_filter, format, std::io::stderr())
}

/// The server's logging written to `sink` instead of stderr (the access-log benchmark writes
/// to `io::sink()`). The format's `Auto` still asks whether stderr is a terminal, and if the
/// writer thread can't be started, lines go straight to stderr, as with [`init_with`].
pub fn init_to<W>(default_filter: &str, format: LogFormat, sink: W) -> LogGuard
where
    W: Write + Send + 'static,
{
    let (writer, thread) = match BatchWriter::start(sink) {
        Ok(started) => started,
        // No thread to be had: write straight to stderr.
        Err(_) => {
            install(default_filter, format, std::io::stderr);
            return LogGuard { writer: None };
        }
    };
    if install(default_filter, format, writer.clone()) {
        LogGuard {
            writer: Some((writer, thread)),
        }
    } else {
        writer.close();
        let _ = thread.join();
        LogGuard { writer: None }
    }
}

/// A log line shows up within this long of being logged.
const FLUSH_EVERY: Duration = Duration::from_millis(10);
/// This much queued is written at once, without waiting for `FLUSH_EVERY`.
const WRITE_AT: usize = 64 * 1024;
/// Past this much queued, logging threads wait for the writer (nothing is dropped).
const MAX_QUEUED: usize = 4 * 1024 * 1024;

/// Log lines queued in memory and written by one thread in batches: one write(2) per batch,
/// and the writer is woken once per batch, not per line (a wake-up per access-log line, as a
/// channel's blocking receive does, cost several percent of `/hello/` at full load). A line is
/// appended whole under a lock, so lines never interleave.
#[derive(Clone)]
pub struct BatchWriter(Arc<Queue>);

struct Queue {
    state: Mutex<Queued>,
    /// The writer thread waits here for lines.
    lines_waiting: Condvar,
    /// Logging threads wait here when the queue is full.
    room: Condvar,
}

#[derive(Default)]
struct Queued {
    lines: Vec<u8>,
    closed: bool,
}

impl BatchWriter {
    /// Starts the writer thread, writing to `sink`.
    pub fn start<W: Write + Send + 'static>(
        sink: W,
    ) -> std::io::Result<(BatchWriter, std::thread::JoinHandle<()>)> {
        let writer = BatchWriter(Arc::new(Queue {
            state: Mutex::new(Queued::default()),
            lines_waiting: Condvar::new(),
            room: Condvar::new(),
        }));
        let queue = writer.0.clone();
        let thread = std::thread::Builder::new()
            .name("doorman-log".into())
            .spawn(move || write_batches(&queue, sink))?;
        Ok((writer, thread))
    }

    /// Writes out what is queued and stops the writer thread.
    pub fn close(&self) {
        lock(&self.0.state).closed = true;
        self.0.lines_waiting.notify_one();
    }

    fn push(&self, line: &[u8]) {
        let queue = &self.0;
        let mut state = lock(&queue.state);
        while state.lines.len() >= MAX_QUEUED && !state.closed {
            state = queue
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let was_empty = state.lines.is_empty();
        state.lines.extend_from_slice(line);
        let full = state.lines.len() >= WRITE_AT;
        drop(state);
        if was_empty || full {
            queue.lines_waiting.notify_one();
        }
    }
}

fn lock(state: &Mutex<Queued>) -> MutexGuard<'_, Queued> {
    // A thread that panicked while appending left whole lines behind: keep going.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn write_batches<W: Write>(queue: &Queue, mut sink: W) {
    let mut batch = Vec::new();
    loop {
        let state = lock(&queue.state);
        let state = queue
            .lines_waiting
            .wait_while(state, |s| s.lines.is_empty() && !s.closed)
            .unwrap_or_else(PoisonError::into_inner);
        // Something is queued: let more lines join it for a moment, unless enough is queued
        // already or the server is stopping.
        let mut state = queue
            .lines_waiting
            .wait_timeout_while(state, FLUSH_EVERY, |s| {
                s.lines.len() < WRITE_AT && !s.closed
            })
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        std::mem::swap(&mut state.lines, &mut batch);
        let closed = state.closed;
        drop(state);
        queue.room.notify_all();
        if !batch.is_empty() {
            // Nowhere to report a failed log write; the next batch tries again.
            let _ = sink.write_all(&batch).and_then(|()| sink.flush());
            batch.clear();
        } else if closed {
            return;
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = &'a BatchWriter;

    fn make_writer(&'a self) -> &'a BatchWriter {
        self
    }
}

impl Write for &BatchWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
        builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(json_lines::JsonLines)
            .try_init()
            .is_ok()
    } else {
        builder.try_init().is_ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A sink the test can read after the writer is done.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Every line from several threads arrives whole and in each thread's order, more than
    /// the queue holds at once included (the loggers wait rather than drop), and closing
    /// writes out the rest.
    #[test]
    fn batches_lose_and_mix_no_lines() {
        let sink = Sink::default();
        let (writer, thread) = BatchWriter::start(sink.clone()).unwrap();
        let line_len = 100;
        let per_thread = 2 * MAX_QUEUED / line_len;
        let loggers: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..per_thread {
                        let mut line = format!("{t} {i:09} ").into_bytes();
                        line.resize(line_len - 1, b'x');
                        line.push(b'\n');
                        (&writer).write_all(&line).unwrap();
                    }
                })
            })
            .collect();
        for logger in loggers {
            logger.join().unwrap();
        }
        writer.close();
        thread.join().unwrap();
        let out = sink.0.lock().unwrap();
        let mut next = [0usize; 4];
        let mut lines = 0;
        for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            assert_eq!(line.len(), line_len - 1);
            let text = std::str::from_utf8(&line[..12]).unwrap();
            let (t, i) = text.trim().split_once(' ').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[t], "thread {t}'s lines out of order");
            next[t] += 1;
            lines += 1;
        }
        assert_eq!(lines, 4 * per_thread);
    }

    /// A lone line is written within about `FLUSH_EVERY`, without waiting for more.
    #[test]
    fn a_lone_line_is_written_soon() {
        let sink = Sink::default();
        let (writer, thread) = BatchWriter::start(sink.clone()).unwrap();
        (&writer).write_all(b"one line\n").unwrap();
        let started = std::time::Instant::now();
        while sink.0.lock().unwrap().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(2), "never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"one line\n");
        writer.close();
        thread.join().unwrap();
    }
}
