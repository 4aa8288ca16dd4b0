//! The mock external institution binary: load the settings, bind, run until SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use mock_external_institution::Settings;

#[derive(Debug, Parser)]
#[command(about = "The mock external institution (the other bank), with fault injection")]
struct Args {
    /// TOML settings file; without one, defaults and BANKTRANSFER__* variables apply.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings: Settings = service_kit::config::load(args.config.as_deref())?;
    service_kit::telemetry::init("mock-external-institution", &settings.log_format);
    let listener = tokio::net::TcpListener::bind(&settings.listen_addr)
        .await
        .with_context(|| format!("binding listen_addr {}", settings.listen_addr))?;
    mock_external_institution::run(settings, listener, service_kit::shutdown::signal()).await
}
