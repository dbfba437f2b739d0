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

pub use doorman_token::unix_now;
