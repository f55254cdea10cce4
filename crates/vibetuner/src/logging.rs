//! Logging: the tracing subscriber the app binary installs (JSON in prod, human-readable in dev).

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt;
use tracing_subscriber::layer::SubscriberExt;
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
                    .json()
                    .with_target(false)
                    .with_current_span(true)
                    .with_span_list(false),
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
