//! doorman: djangorestframework-simplejwt's HTTP contract as one Rust server.
//!
//! The binary's `main` only parses the command line; everything it runs lives here so that
//! integration tests start the very same server in-process.

pub mod accounts;
pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod keys;
pub mod metrics;
pub mod serve;
pub mod store;
pub mod telemetry;

pub use app::{AppState, Application};
pub use config::Config;

/// Seconds since the Unix epoch, the unit of every token time.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
