//! doorman: djangorestframework-simplejwt's HTTP contract as one Rust server.
//!
//! The binary's `main` only parses the command line; everything it runs lives here so that
//! integration tests start the very same server in-process.

pub mod accounts;
pub mod api;
pub mod app;
pub mod audit;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod import;
pub mod jobs;
pub mod keys;
pub mod metrics;
pub mod router;
pub mod serve;
pub mod state;
pub mod store;
pub mod telemetry;

pub use app::Application;
pub use config::Config;
pub use state::AppState;

pub use doorman_token::unix_now;
