//! The internal balance store binary: load the settings, bind, run until SIGTERM.

use std::path::PathBuf;

use clap::Parser;
use internal_balance_store::Settings;

#[derive(Debug, Parser)]
#[command(
    about = "The internal balance store (our balance_store), with antifraud, limits and rate limit"
)]
struct Args {
    /// TOML settings file; without one, defaults and BANKTRANSFER__* variables apply.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

/// The configuration is read before the runtime exists: it says how many workers to run.
fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings: Settings = service_kit::config::load(args.config.as_deref())?;
    let runtime = settings.common.server.runtime()?;
    runtime.block_on(async move {
        let (listener, traces) =
            participant::serve::listen(&settings.common, "internal-balance-store").await?;
        let result =
            internal_balance_store::run(settings, listener, service_kit::shutdown::signal()).await;
        service_kit::telemetry::flush(traces).await;
        result
    })
}
