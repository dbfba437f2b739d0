//! The JSON log line: tracing-subscriber's `json().flatten_event(true)` layout (timestamp,
//! level, the event's fields in order, target, then the current span and the span list when
//! there are any), written straight into the line buffer.
//!
//! tracing-subscriber's formatter goes through serde and an `io::Write` adaptor that checks
//! UTF-8 again on every small write, and renders the timestamp through `fmt`; at full load the
//! access log's line cost about a tenth of `GET /hello/`'s time. This one writes each piece
//! once. Same keys, same order, same JSON values, so log pipelines see no change.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter; pair it with [`JsonFields`] (span fields are then kept as JSON).
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // A `log` record (from a dependency using the log crate) carries its own target and
        // level, which tracing-subscriber shows instead of the bridge's.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, time::OffsetDateTime::now_utc())?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(level_name(meta.level()))?;
        writer.write_str("\"")?;
        let mut fields = FieldWriter {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_string(&mut writer, meta.target())?;
        let current = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(current) = current {
            writer.write_str(",\"span\":")?;
            write_span(&mut writer, &current)?;
            writer.write_str(",\"spans\":[")?;
            if let Some(leaf) = ctx.lookup_current() {
                for (i, span) in leaf.scope().from_root().enumerate() {
                    if i > 0 {
                        writer.write_char(',')?;
                    }
                    write_span(&mut writer, &span)?;
                }
            }
            writer.write_char(']')?;
        }
        writer.write_str("}\n")
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    }
}

/// `2026-11-26T03:19:18.991909Z`: RFC 3339 in UTC with microseconds, as tracing-subscriber
/// writes it.
fn write_timestamp(out: &mut impl Write, t: time::OffsetDateTime) -> fmt::Result {
    let (year, month, day) = (t.year(), u8::from(t.month()), t.day());
    if !(0..=9999).contains(&year) {
        // Out of RFC 3339's range; never on a working clock, but still a valid line.
        return write!(out, "{year}-{month:02}-{day:02}T00:00:00.000000Z");
    }
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year.unsigned_abs());
    put(5, 2, month.into());
    put(8, 2, day.into());
    put(11, 2, t.hour().into());
    put(14, 2, t.minute().into());
    put(17, 2, t.second().into());
    put(20, 6, t.microsecond());
    // Only ASCII digits were written into an ASCII template.
    out.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
}

/// The span as tracing-subscriber writes it: its recorded fields, then its name.
fn write_span<S>(
    out: &mut Writer<'_>,
    span: &tracing_subscriber::registry::SpanRef<'_, S>,
) -> fmt::Result
where
    S: for<'a> LookupSpan<'a>,
{
    out.write_char('{')?;
    let extensions = span.extensions();
    if let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() {
        // JsonFields keeps them as a JSON object: splice its members in.
        let members = fields
            .fields
            .trim()
            .strip_prefix('{')
            .and_then(|f| f.strip_suffix('}'))
            .unwrap_or("")
            .trim();
        if !members.is_empty() {
            out.write_str(members)?;
            out.write_char(',')?;
        }
    }
    out.write_str("\"name\":")?;
    write_string(out, span.metadata().name())?;
    out.write_char('}')
}

/// Writes each field as `,"name":value`, typed as tracing-serde types it: numbers and booleans
/// as themselves, strings, `Debug` and `Display` values as strings, non-finite floats as null.
struct FieldWriter<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl FieldWriter<'_, '_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            self.out.write_str(",\"")?;
            Escaped(&mut *self.out).write_str(field.name())?;
            self.out.write_str("\":")?;
            value(self.out)
        })();
    }
}

impl Visit for FieldWriter<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| write_string(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| {
            out.write_str("\"")?;
            write!(Escaped(out), "{value:?}")?;
            out.write_str("\"")
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json's own rendering (shortest round-trip form; null when not finite).
        self.field(field, |out| match serde_json::Number::from_f64(value) {
            Some(number) => write!(out, "{number}"),
            None => out.write_str("null"),
        });
    }
}

fn write_string(out: &mut impl Write, value: &str) -> fmt::Result {
    out.write_str("\"")?;
    Escaped(&mut *out).write_str(value)?;
    out.write_str("\"")
}

/// Escapes what passes through for the inside of a JSON string (RFC 8259 §7): quote,
/// backslash and control characters; everything else, non-ASCII included, as it is.
struct Escaped<'a, W: Write + ?Sized>(&'a mut W);

impl<W: Write + ?Sized> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Most text needs no escape: one pass over its bytes says so (no early exit, so the
        // loop stays simple), and it is written whole.
        let needs_escape = s.bytes().fold(false, |seen, b| {
            seen | (b < 0x20) | (b == b'"') | (b == b'\\')
        });
        if !needs_escape {
            return self.0.write_str(s);
        }
        let mut plain = 0;
        for (i, byte) in s.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            // Bytes below 0x80 are whole characters, so `i` is a character boundary.
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;

        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    impl Lines {
        fn parsed(&self) -> Vec<serde_json::Map<String, Value>> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            assert!(text.ends_with('\n'), "{text:?}");
            text.lines()
                .map(|line| match serde_json::from_str(line) {
                    Ok(Value::Object(map)) => map,
                    other => panic!("not a JSON object: {line:?} ({other:?})"),
                })
                .collect()
        }
    }

    /// Logs the same events, in and out of spans, with every kind of field value and strings
    /// that need escaping.
    fn log_everything() {
        let awkward = "quote \" backslash \\ newline \n tab \t nul \0 bell \u{7} é ✓ 🦀";
        tracing::info!(target: "doorman::access", method = "GET", status = 200u16,
            latency_ms = 1.125381, client = %"127.0.0.1", "request");
        tracing::warn!(awkward, negative = -42i64, big = u64::MAX, yes = true,
            nan = f64::NAN, tiny = 1e-7, huge = 1e300, debugged = ?("tuple", 1), "{awkward}");
        let outer = tracing::info_span!("outer", kind = "span \"field\"", n = 3);
        let _outer = outer.enter();
        let inner = tracing::error_span!("inner");
        let _inner = inner.enter();
        tracing::error!(error = %std::io::Error::other("disk \"full\""), "failed");
        drop((_inner, _outer));
        // Through the log crate, as dependencies such as rustls log.
        log::warn!(target: "some_crate::module", "from the log crate: {}", "quoted \"");
    }

    /// Each line parses as JSON and holds what tracing-subscriber's own JSON format holds
    /// for the same events, key for key and in the same order; only the clock differs.
    #[test]
    fn lines_match_tracing_subscribers_json_format() {
        // Another test (or the server set-up) may have bridged the log crate already.
        let _ = tracing_log::LogTracer::init();
        let ours = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(ours.clone())
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);

        let theirs = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(theirs.clone())
            .json()
            .flatten_event(true)
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);

        let (mut ours, mut theirs) = (ours.parsed(), theirs.parsed());
        assert_eq!(ours.len(), 4);
        assert_eq!(ours.len(), theirs.len());
        for (ours, theirs) in ours.iter_mut().zip(theirs.iter_mut()) {
            let (Some(Value::String(a)), Some(Value::String(b))) =
                (ours.remove("timestamp"), theirs.remove("timestamp"))
            else {
                panic!("no timestamp in {ours:?} / {theirs:?}");
            };
            assert_eq!(a.len(), b.len(), "{a} / {b}");
            let shape = |t: &str| t.bytes().map(|b| b.is_ascii_digit()).collect::<Vec<_>>();
            assert_eq!(shape(&a), shape(&b), "{a} / {b}");
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(ours), keys(theirs));
            assert_eq!(ours, theirs);
        }
        assert_eq!(ours[1]["nan"], Value::Null);
        assert_eq!(ours[2]["spans"].as_array().unwrap().len(), 2);
        assert_eq!(ours[3]["target"], "some_crate::module");
        assert_eq!(ours[3]["level"], "WARN");
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.000_678 UTC);
        let mut text = String::new();
        write_timestamp(&mut text, t).unwrap();
        assert_eq!(text, "2026-01-02T03:04:05.000678Z");
        let t = time::macros::datetime!(0999-12-31 23:59:59.999_999_9 UTC);
        text.clear();
        write_timestamp(&mut text, t).unwrap();
        assert_eq!(text, "0999-12-31T23:59:59.999999Z");
    }

    /// Every character below U+0020 and the two JSON metacharacters are escaped so that the
    /// string reads back the same; nothing else is touched.
    #[test]
    fn escaping_round_trips_every_control_character() {
        let all: String = (0u8..0x80).map(char::from).chain("é✓🦀".chars()).collect();
        let mut text = String::new();
        write_string(&mut text, &all).unwrap();
        assert_eq!(serde_json::from_str::<String>(&text).unwrap(), all);
        assert!(text.contains("é✓🦀"));
        assert!(!text.bytes().any(|b| b < 0x20));
        // Each character that needs escaping, alone in otherwise plain text (plain text is
        // written whole, after one pass that looks for all of them at once).
        for c in (0u8..0x20).map(char::from).chain(['"', '\\']) {
            for value in [
                format!("{c}"),
                format!("plain {c} é"),
                format!("é plain{c}"),
            ] {
                let mut text = String::new();
                write_string(&mut text, &value).unwrap();
                assert_eq!(
                    serde_json::from_str::<String>(&text).unwrap(),
                    value,
                    "{text}"
                );
            }
        }
        let mut text = String::new();
        write_string(&mut text, "plain é ✓ 🦀 / ' text").unwrap();
        assert_eq!(text, "\"plain é ✓ 🦀 / ' text\"");
    }
}
