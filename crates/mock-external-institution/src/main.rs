//! The mock external institution binary: load the settings, bind, run until SIGTERM.

use std::path::PathBuf;

use clap::Parser;
use mock_external_institution::Settings;

#[derive(Debug, Parser)]
#[command(about = "The mock external institution (the other bank), with fault injection")]
struct Args {
    /// TOML settings file; without one, defaults and BANKTRANSFER__* variables apply.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

/// The configuration is read before the runtime exists: it says how many workers to run.
fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings: Settings = service_kit::config::load(args.config.as_deref())?;
    let runtime = settings.server.runtime()?;
    runtime.block_on(async move {
        let (listener, traces) =
            participant::serve::listen(&settings, "mock-external-institution").await?;
        let result =
            mock_external_institution::run(settings, listener, service_kit::shutdown::signal())
                .await;
        service_kit::telemetry::flush(traces).await;
        result
    })
}
