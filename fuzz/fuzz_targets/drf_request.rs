//! Any Content-Type, Accept and body through DRF's negotiation and parsers (JSON, form,
//! multipart, every charset Python knows), then the `CharField`s of the token views. Input:
//! the Content-Type line, the Accept line, then the body. Errors are DRF's statuses and
//! render as JSON; accepted data yields the fields or a field error.
#![no_main]

use doorman_drf::{char_fields, negotiate, parse_request_data, render_json};
use http::{HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn header(line: &[u8]) -> Option<HeaderValue> {
    if line.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(line).ok()
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.splitn(3, |&b| b == b'\n');
    let content_type = header(lines.next().unwrap_or_default());
    let accept = header(lines.next().unwrap_or_default());
    let body = lines.next().unwrap_or_default();

    if let Err(e) = negotiate(accept.as_ref()) {
        assert!(matches!(
            e.status(),
            StatusCode::NOT_ACCEPTABLE | StatusCode::NOT_FOUND
        ));
    }
    let fields = parse_request_data(content_type.as_ref(), body)
        .and_then(|data| char_fields(&data, &["username", "password"]));
    match fields {
        Ok(values) => assert_eq!(values.len(), 2),
        Err(e) => {
            assert!(
                matches!(
                    e.status(),
                    StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE
                ),
                "{e:?}"
            );
            let rendered = render_json(&e.body(), None);
            assert!(
                serde_json::from_slice::<Value>(&rendered).is_ok_and(|v| v.is_object()),
                "the error body is not a JSON object"
            );
        }
    }
});
