//! The reconciler binary: configuration, telemetry, listener; the rest is the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    about = "BankTransfer reconciler: finishes unfinished transfers and audits that the books agree"
)]
struct Args {
    /// TOML configuration file; defaults apply without one. BANKTRANSFER__* variables
    /// override it.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

/// The configuration is read before the runtime exists: it says how many workers to run.
fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings: reconciler::Settings = service_kit::config::load(args.config.as_deref())?;
    let runtime = settings.common.server.runtime()?;
    runtime.block_on(async move {
        let traces = service_kit::telemetry::init("reconciler", &settings.common.log_format);
        let listener = tokio::net::TcpListener::bind(&settings.listen_addr)
            .await
            .with_context(|| format!("binding {}", settings.listen_addr))?;
        let result = reconciler::run(settings, listener, service_kit::shutdown::signal()).await;
        service_kit::telemetry::flush(traces).await;
        result
    })
}
