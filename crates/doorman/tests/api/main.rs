//! doorman's integration tests: the real server on a loopback port, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod helpers;

mod admin;
mod attacks;
mod audit;
mod blacklist_cache;
mod browser;
mod child;
mod cli;
mod cli_client;
mod clock;
mod connection_limits;
mod container;
mod contract;
mod cookie_mode;
mod crash;
mod deploy;
mod discovery;
mod django_hashes;
mod django_import;
mod django_move;
mod families;
mod framing;
mod hello;
mod inspector;
mod interop;
mod keys;
mod layout;
mod ledger;
mod login_flood;
mod openapi;
mod ops;
mod outage;
mod overload;
mod pages;
mod pg_restart;
mod protocol;
mod reference_app;
mod revocation;
mod rotation;
mod scale;
mod self_contained;
mod server;
mod sessions;
mod soak;
mod storage_faults;
mod throttle;
mod tokens;
