//! The access-log line of one `GET /hello/`, as the server logs it: JSON, through the same
//! subscriber and the same batching writer (here into `io::sink()` instead of stderr), timed on
//! the thread that logs it.
//!
//!     cargo bench -p doorman --bench access_log
//!
//! `RUST_LOG` filters here as in the server: one that turns `doorman::access` off times a line
//! that is never written.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use doorman::serve::access::log_request;
use doorman::telemetry::{LogFormat, init_to};

fn access_line(c: &mut Criterion) {
    let _guard = init_to("info", LogFormat::Json, std::io::sink());
    let client = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let request_id = "0b7c5a3e-6f4b-4f2a-9d1e-2c3b4a5d6e7f";
    c.bench_function("access log line, JSON", |b| {
        b.iter(|| {
            log_request(
                "GET",
                "/hello/",
                200,
                Duration::from_micros(123),
                client,
                request_id,
            );
        });
    });
}

criterion_group!(benches, access_line);
criterion_main!(benches);
