//! Any bytes as what an HTTP/1 connection sends, through the scanner that finds the request
//! carrying both `Content-Length` and `Transfer-Encoding` (`serve::heads`). Input: a byte that
//! says how the rest is cut into reads, then the connection's bytes. The marks are the same
//! however the bytes are cut (whole, byte by byte, or in the pieces the first byte asks for);
//! at most one request is marked, and only bytes naming both headers can mark one.
#![no_main]

use doorman::serve::heads::marks;
use libfuzzer_sys::fuzz_target;

/// hyper's default head limit in doorman (`max_header_bytes`).
const MAX_HEAD: usize = 16 * 1024;
const REQUESTS: u64 = 16;

fn names_both(bytes: &[u8]) -> bool {
    let lower = bytes.to_ascii_lowercase();
    let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    has(b"content-length") && has(b"transfer-encoding")
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let whole = marks([bytes], MAX_HEAD, REQUESTS);
    assert_eq!(whole, marks(bytes.chunks(1), MAX_HEAD, REQUESTS));
    let step = usize::from(cut).max(1);
    assert_eq!(whole, marks(bytes.chunks(step), MAX_HEAD, REQUESTS));
    let marked = whole.iter().filter(|m| **m).count();
    assert!(marked <= 1, "{whole:?}");
    if marked == 1 {
        assert!(names_both(bytes));
    }
});
