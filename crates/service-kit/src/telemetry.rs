//! Structured logs. Every line of a transfer's work carries `transfer_id` because the
//! services open a span with it (`info_span!("transfer", transfer_id = ...)`).
//!
//! `log_format = "json"` for machines, `"pretty"` for people; `RUST_LOG` filters
//! (default `info`). Tracing across services and metrics plug in here later.

use tracing_subscriber::EnvFilter;

/// Installs the process-wide subscriber. Safe to call more than once (later calls are
/// ignored), so in-process tests can start several services.
pub fn init(service: &'static str, log_format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colour only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let result = if log_format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.compact().try_init()
    };
    if result.is_ok() {
        tracing::info!(service, "telemetry initialised");
    }
}
