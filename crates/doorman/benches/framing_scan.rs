//! What following a connection's request framing costs per request: the bytes of one
//! `GET /hello/` as wrk sends it, and of one token verify with its JSON body, through the
//! scanner every HTTP/1 connection's reads go through (`serve::heads`).
//!
//!     cargo bench -p doorman --bench framing_scan

use criterion::{Criterion, criterion_group, criterion_main};
use doorman::serve::heads::marks;

const HELLO: &[u8] = b"GET /hello/ HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIiwiZXhwIjoxNzAwMDAwMzAwLCJpYXQiOjE3MDAwMDAwMDAsImp0aSI6ImFiY2RlZjAxMjM0NTY3ODkiLCJ1c2VyX2lkIjoxfQ.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmUtc2ln\r\n\r\n";

const VERIFY: &[u8] = b"POST /api/token/verify/ HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\
Content-Type: application/json\r\nContent-Length: 24\r\n\r\n{\"token\": \"not-a-token\"}";

fn scan(c: &mut Criterion) {
    c.bench_function("framing scan, GET /hello/ head", |b| {
        b.iter(|| marks([std::hint::black_box(HELLO)], 16 * 1024, 0));
    });
    c.bench_function("framing scan, POST verify head and body", |b| {
        b.iter(|| marks([std::hint::black_box(VERIFY)], 16 * 1024, 0));
    });
}

criterion_group!(benches, scan);
criterion_main!(benches);
