//! Logging: the tracing subscriber the app binary installs (JSON in prod, human-readable in dev).

use tracing_subscriber::field::VisitOutput;

use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::{JsonFields, JsonVisitor, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{self, FmtContext, FormatEvent, FormattedFields};
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
            .with(
                fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonLine),
            )
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

impl<S> FormatEvent<S, JsonFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(
            writer,
            "\",\"level\":\"{}\",\"fields\":",
            event.metadata().level()
        )?;
        let mut fields = JsonVisitor::new(&mut writer);
        event.record(&mut fields);
        fields.finish()?;
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            let extensions = span.extensions();
            let stored = extensions
                .get::<FormattedFields<JsonFields>>()
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
            let name = serde_json::to_string(span.name()).map_err(|_| std::fmt::Error)?;
            write!(writer, "\"name\":{name}}}")?;
        }
        writer.write_str("}\n")
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
                .fmt_fields(JsonFields::new())
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
    fn a_span_without_fields_still_has_its_name() {
        let lines = json_lines(|| {
            tracing::info_span!("quiet").in_scope(|| tracing::info!("hello"));
        });
        assert_eq!(lines[0]["span"], serde_json::json!({ "name": "quiet" }));
    }
}
