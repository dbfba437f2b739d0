//! doorman's integration tests: the real server on a loopback port, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod attacks;
mod cli;
mod hello;
mod helpers;
mod protocol;
mod rotation;
mod tokens;
