//! Logging: the tracing subscriber the app binary installs (JSON in prod, human-readable in dev).

use crate::config::Settings;

/// Installs the tracing subscriber: JSON in prod, human-readable in dev; `LOG_LEVEL` filters.
pub(crate) fn init(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let _ = if settings.log_json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}
