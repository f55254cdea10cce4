//! Logging: the tracing subscriber the app binary installs (JSON in prod, human-readable in dev),
//! and [`Throttled`] for messages a flood would repeat.

use std::fmt as stdfmt;
use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{self, FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::Settings;

/// Installs the tracing subscriber: JSON in prod, human-readable in dev; `LOG_LEVEL` (checked
/// when the settings load) filters by level and target.
pub(crate) fn init(settings: &Settings) {
    let filter: Targets = settings
        .log_level
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if settings.log_json {
        registry
            .with(fmt::layer().fmt_fields(JsonObject).event_format(JsonLine))
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
            )
            .try_init()
    };
}

/// One JSON object per line: `timestamp`, `level`, the event's `fields` and the fields of the
/// span it happened in as `span` (with the span's `name`), as tracing-subscriber's JSON format
/// writes them. The span's fields are stored as JSON text when the span opens and are written
/// as they are, where tracing-subscriber's format parses them again for every line.
struct JsonLine;

impl<S> FormatEvent<S, JsonObject> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonObject>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> stdfmt::Result {
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(
            writer,
            "\",\"level\":\"{}\",\"fields\":",
            event.metadata().level()
        )?;
        JsonObject.format_fields(writer.by_ref(), event)?;
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            let extensions = span.extensions();
            let stored = extensions
                .get::<FormattedFields<JsonObject>>()
                .map(|f| f.fields.as_str())
                .unwrap_or_default();
            writer.write_str(",\"span\":{")?;
            // `{"a":1,"b":2}`: its members, then the name.
            let members = stored
                .strip_prefix('{')
                .and_then(|m| m.strip_suffix('}'))
                .unwrap_or_default();
            if !members.is_empty() {
                writer.write_str(members)?;
                writer.write_char(',')?;
            }
            writer.write_str("\"name\":")?;
            write_json_str(&mut writer, span.name())?;
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

/// Fields as one JSON object, written as they are recorded (tracing-subscriber's `JsonFields`
/// collects them into a map of `serde_json::Value`s first). Numbers and booleans stay JSON
/// numbers and booleans; everything else is a string; `log.*` metadata is left out.
struct JsonObject;

impl<'w> FormatFields<'w> for JsonObject {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> stdfmt::Result {
        writer.write_char('{')?;
        let mut members = Members::new(&mut writer, false);
        fields.record(&mut members);
        members.finish()
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> stdfmt::Result {
        // Reopen the stored `{…}` and append (a span recording a field it declared empty).
        let any = current.fields.len() > 2;
        if current.fields.pop() != Some('}') {
            current.fields.clear();
            current.fields.push('{');
        }
        let mut writer = current.as_writer();
        let mut members = Members::new(&mut writer, any);
        fields.record(&mut members);
        members.finish()
    }
}

/// Writes `"name":value` members, comma-separated, as fields are visited; `finish` closes the
/// object.
struct Members<'a, 'w> {
    writer: &'a mut Writer<'w>,
    any: bool,
    result: stdfmt::Result,
}

impl<'a, 'w> Members<'a, 'w> {
    fn new(writer: &'a mut Writer<'w>, any: bool) -> Self {
        Self {
            writer,
            any,
            result: Ok(()),
        }
    }

    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'w>) -> stdfmt::Result) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = (|| {
            if std::mem::replace(&mut self.any, true) {
                self.writer.write_char(',')?;
            }
            write_json_str(self.writer, name)?;
            self.writer.write_char(':')?;
            value(self.writer)
        })();
    }

    fn finish(self) -> stdfmt::Result {
        self.result?;
        self.writer.write_char('}')
    }
}

impl Visit for Members<'_, '_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, |w| {
            if value.is_finite() {
                write!(w, "{value}")
            } else {
                w.write_str("null")
            }
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| write_json_str(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn stdfmt::Debug) {
        self.member(field, |w| {
            w.write_char('"')?;
            write!(crate::escape::Json(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// `text` as a JSON string.
fn write_json_str(w: &mut dyn stdfmt::Write, text: &str) -> stdfmt::Result {
    w.write_char('"')?;
    crate::escape::json(w, text)?;
    w.write_char('"')
}

/// Logs at most once per interval, counting what it held back.
pub(crate) struct Throttled {
    every: std::time::Duration,
    last: Option<std::time::Instant>,
    held: u64,
}

impl Throttled {
    pub(crate) fn new(every: std::time::Duration) -> Self {
        Self {
            every,
            last: None,
            held: 0,
        }
    }

    /// Calls `log` with the number of messages held back since the last one, or holds this one.
    pub(crate) fn log(&mut self, log: impl FnOnce(u64)) {
        if self.last.is_some_and(|last| last.elapsed() < self.every) {
            self.held += 1;
            return;
        }
        self.last = Some(std::time::Instant::now());
        log(std::mem::take(&mut self.held));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

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

    fn json_lines(log: impl FnOnce()) -> Vec<serde_json::Value> {
        let lines = Lines::default();
        let out = lines.clone();
        let subscriber = tracing_subscriber::registry().with(
            fmt::layer()
                .fmt_fields(JsonObject)
                .event_format(JsonLine)
                .with_writer(move || out.clone()),
        );
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn a_line_carries_its_fields_and_its_span_as_json() {
        let lines = json_lines(|| {
            tracing::warn!("outside");
            let span = tracing::info_span!("request", path = "/a\"b\\", request_id = "r-1");
            span.in_scope(|| tracing::info!(status = 200u16, latency_ms = 0.25, "response"));
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["fields"]["message"], "outside");
        assert!(lines[0].get("span").is_none());
        let response = &lines[1];
        assert_eq!(response["level"], "INFO");
        assert_eq!(response["fields"]["message"], "response");
        assert_eq!(response["fields"]["status"], 200);
        assert_eq!(response["fields"]["latency_ms"], 0.25);
        assert_eq!(response["span"]["name"], "request");
        assert_eq!(response["span"]["path"], "/a\"b\\");
        assert_eq!(response["span"]["request_id"], "r-1");
        let timestamp = response["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "{timestamp}"
        );
    }

    #[test]
    fn values_of_every_kind_come_out_as_json() {
        #[derive(Debug)]
        struct Shown {
            #[allow(dead_code)]
            text: &'static str,
        }
        let lines = json_lines(|| {
            let span = tracing::info_span!("job", r#type = "x", n = tracing::field::Empty);
            span.record("n", -3i64);
            span.in_scope(|| {
                tracing::error!(
                    nan = f64::NAN,
                    yes = true,
                    big = u64::MAX,
                    control = "a\u{1}b\tc\n",
                    shown = ?Shown { text: "q\"uote" },
                    "failed: {}", "disk \"full\""
                )
            });
        });
        let line = &lines[0];
        assert_eq!(line["fields"]["message"], "failed: disk \"full\"");
        assert_eq!(line["fields"]["nan"], serde_json::Value::Null);
        assert_eq!(line["fields"]["yes"], true);
        assert_eq!(line["fields"]["big"], u64::MAX);
        assert_eq!(line["fields"]["control"], "a\u{1}b\tc\n");
        assert_eq!(line["fields"]["shown"], "Shown { text: \"q\\\"uote\" }");
        assert_eq!(line["span"]["type"], "x");
        assert_eq!(line["span"]["n"], -3);
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let controls: String = (0u8..0x20).map(char::from).collect();
        for text in [
            "plain",
            "",
            controls.as_str(),
            "q\"uote \\ back\u{7f}slash",
            "é ü 漢字 🎉 \u{2028}",
        ] {
            let mut out = String::new();
            write_json_str(&mut out, text).unwrap();
            assert_eq!(out, serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn a_span_without_fields_still_has_its_name() {
        let lines = json_lines(|| {
            tracing::info_span!("quiet").in_scope(|| tracing::info!("hello"));
        });
        assert_eq!(lines[0]["span"], serde_json::json!({ "name": "quiet" }));
    }
}
