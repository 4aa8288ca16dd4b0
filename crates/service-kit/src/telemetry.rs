//! Structured logs. Every line of a transfer's work carries `transfer_id` because the
//! services open a span with it (`info_span!("transfer", transfer_id = ...)`).
//!
//! `log_format = "json"` for machines, `"pretty"` for people; `RUST_LOG` filters
//! (default `info`). Spans also become traces when a collector is configured
//! ([`crate::traces`]).
//!
//! No request can forge a log line. JSON escapes every value. The pretty format writes a
//! `%field` (Display) as it is, so the services follow one rule: a value from a request
//! is logged only once checked (ids: `banktransfer_protocol::ids`, printable ASCII without
//! spaces; currencies: three upper-case letters), and any other text that can carry what
//! a client, a peer or a database wrote (error messages, refusal reasons) is logged with
//! `?field` (Debug), which escapes control characters, or as a plain `&str` field, which
//! the pretty format writes with Debug too. The tests below pin both halves.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::traces::{self, TraceSettings, Tracing};

/// Installs the process-wide subscriber: log lines, and spans exported as traces when the
/// `OTEL_*` variables name a collector ([`crate::traces`]). Safe to call more than once
/// (later calls are ignored), so in-process tests can start several services. Must run
/// inside the Tokio runtime. The [`Tracing`] returned, if any, flushes the last spans when
/// shut down.
pub fn init(service: &'static str, log_format: &str) -> Option<Tracing> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let settings = TraceSettings::from_env();
    let built = settings
        .as_ref()
        .map(|settings| traces::provider(service, settings))
        .transpose();
    let (provider, trace_error) = match built {
        Ok(provider) => (provider, None),
        Err(err) => (None, Some(err)),
    };
    let result = tracing_subscriber::registry()
        .with(provider.as_ref().map(traces::layer))
        .with(fmt_layer(log_format, ansi, std::io::stdout))
        .with(filter)
        .try_init();
    if result.is_err() {
        return None;
    }
    tracing::info!(service, "telemetry initialised");
    if let Some(err) = trace_error {
        // Traces are for operators, not for transfers: a bad collector setting is loud
        // but does not stop the service.
        tracing::error!(error = %err, "traces are off: the OTLP exporter cannot be built");
    }
    let provider = provider?;
    traces::mark_enabled();
    let endpoint = settings.map(|settings| settings.endpoint);
    tracing::info!(?endpoint, "exporting traces over OTLP");
    Some(Tracing::new(provider))
}

/// Flushes the spans still queued, if traces are on: the last step of a binary's `main`.
pub async fn flush(tracing: Option<Tracing>) {
    if let Some(tracing) = tracing {
        tracing.shutdown().await;
    }
}

/// The log-line layer: JSON for machines, compact text for people, written to `writer`.
fn fmt_layer<S, W>(log_format: &str, ansi: bool, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer);
    if log_format == "json" {
        // The span list too: a protocol step's span sits under the transfer's, which
        // carries the transfer id.
        Box::new(
            layer
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true),
        )
    } else {
        Box::new(layer.compact())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;

        fn make_writer(&'w self) -> Captured {
            self.clone()
        }
    }

    /// The lines `log` writes in `log_format`, as the services' subscriber writes them.
    fn lines(log_format: &str, log: impl FnOnce()) -> Vec<String> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry()
            .with(fmt_layer(log_format, false, captured.clone()))
            .with(EnvFilter::new("info"));
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    const FORGED: &str = "alice\n2026-11-30T00:00:00Z  INFO transfer approved user=mallory";

    #[test]
    fn debug_fields_cannot_forge_a_line_in_the_pretty_format() {
        let written = lines("pretty", || {
            let span = tracing::info_span!("reservation", transfer_id = "t-1");
            let _entered = span.enter();
            tracing::info!(why = ?FORGED, "invalid request");
            tracing::info!(user_id = FORGED, "a plain &str field");
            tracing::warn!(error = ?std::io::Error::other(FORGED), "an error's text");
        });
        assert_eq!(written.len(), 3, "{written:#?}");
        for line in &written {
            assert!(line.contains("alice\\n2026"), "escaped: {line}");
            assert!(line.contains("transfer_id"), "{line}");
        }
    }

    /// Why the rule is needed: Display writes the value as it is.
    #[test]
    fn display_fields_write_the_value_as_it_is() {
        let written = lines("pretty", || tracing::info!(why = %FORGED, "unchecked"));
        assert_eq!(written.len(), 2, "{written:#?}");
    }

    #[test]
    fn the_json_format_escapes_every_field() {
        let written = lines("json", || {
            tracing::info!(why = %FORGED, user_id = ?FORGED, "{FORGED}");
        });
        assert_eq!(written.len(), 1, "{written:#?}");
        assert!(written[0].starts_with('{') && written[0].ends_with('}'));
    }
}
