//! `doorman serve`: run the HTTP server until SIGINT/SIGTERM.

use std::path::Path;

use clap::Args;

use super::failure::Failure;
use crate::app::Application;
use crate::config::Overrides;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (overrides DOORMAN_BIND and the file), e.g. 0.0.0.0:8000
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// Refuse to start with pending migrations instead of applying them
    #[arg(long)]
    no_migrate: bool,
    /// Async worker threads (default: one per core); password hashing has its own pool
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,
}

pub async fn run(
    file: Option<&Path>,
    mut overrides: Overrides,
    args: ServeArgs,
) -> Result<(), Failure> {
    overrides.bind = args.bind;
    let config = super::start::load_config(file, &overrides)?;
    let _log = crate::telemetry::init_with("info", config.telemetry.log_format);
    let app = Application::build_with(config, !args.no_migrate).await?;
    let stop = crate::serve::shutdown_signal()
        .map_err(|e| Failure::runtime(format!("could not install the signal handlers: {e}")))?;
    let on = app.listening_on();
    match app.local_addr() {
        Ok(addr) => tracing::info!(%addr, "doorman is listening on {on}"),
        Err(_) => tracing::info!(socket = %on, "doorman is listening on {on}"),
    }
    app.run_until_stopped(stop).await?;
    tracing::info!("doorman stopped");
    Ok(())
}
