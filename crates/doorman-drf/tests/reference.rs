//! Replays the reference stack's recorded answers (DRF 3.18.3 on CPython 3.11 behind gunicorn,
//! the reference app's settings; `reference/cases.json`, described in `reference/README.md`)
//! through this crate's public API, dispatched as the recording's probe view did: format override,
//! negotiation, parsing, `CharField` validation, rendering.
//!
//! A case with a `divergence` is one where the reference crashed or answered an HTML page;
//! `status` and `answer` are then doorman's chosen answer: a JSON 400 for CPython's
//! RecursionError (a 500 there) and for Django's HTML 400 pages (`TooManyFieldsSent`,
//! `TooManyFilesSent`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use doorman_drf::{char_fields, format_override, negotiate, parse_request_data, render_json};
use http::HeaderValue;
use serde::Deserialize;
use serde_json::json;

/// How many cases the fixture holds, and how many of them are deliberate divergences: a fixture
/// that loses cases (a bad edit, a re-recording gone wrong) fails here instead of passing on less.
const CASES: usize = 435;
const DIVERGENCES: usize = 7;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    cases: Vec<Case>,
}

/// Bytes as runs: `unit` (text) or `unit_b64` (any bytes), repeated `times`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Segment {
    unit: Option<String>,
    unit_b64: Option<String>,
    times: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    content_type: Option<Vec<Segment>>,
    accept: Option<Vec<Segment>>,
    query: String,
    fields: String,
    body: Vec<Segment>,
    drf_status: u16,
    /// Why doorman answers differently from the reference, if it does.
    divergence: Option<String>,
    status: u16,
    answer: Vec<Segment>,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/cases.json");
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn expand(segments: &[Segment]) -> Vec<u8> {
    segments
        .iter()
        .flat_map(|segment| {
            let unit = match (&segment.unit, &segment.unit_b64) {
                (Some(text), None) => text.as_bytes().to_vec(),
                (None, Some(b64)) => STANDARD.decode(b64).unwrap(),
                _ => panic!("a segment has either `unit` or `unit_b64`"),
            };
            unit.repeat(segment.times)
        })
        .collect()
}

fn header(segments: Option<&[Segment]>) -> Option<HeaderValue> {
    segments.map(|s| HeaderValue::from_bytes(&expand(s)).unwrap())
}

/// The probe view's dispatch: format override, negotiation, parsing, validation, rendering.
fn answer(case: &Case) -> (u16, Vec<u8>) {
    let query = format!("fields={}&{}", case.fields, case.query);
    if let Err(e) = format_override(Some(&query)) {
        return (e.status().as_u16(), render_json(&e.body(), None));
    }
    let indent = match negotiate(header(case.accept.as_deref()).as_ref()) {
        Ok(indent) => indent,
        Err(e) => return (e.status().as_u16(), render_json(&e.body(), None)),
    };
    let names: Vec<&str> = case.fields.split(',').collect();
    let result = parse_request_data(
        header(case.content_type.as_deref()).as_ref(),
        &expand(&case.body),
    )
    .and_then(|data| char_fields(&data, &names));
    match result {
        Ok(values) => (200, render_json(&json!({ "validated": values }), indent)),
        Err(e) => (e.status().as_u16(), render_json(&e.body(), indent)),
    }
}

#[test]
fn the_fixture_holds_every_case() {
    let cases = fixture().cases;
    assert_eq!(cases.len(), CASES);
    let divergences = cases.iter().filter(|c| c.divergence.is_some()).count();
    assert_eq!(divergences, DIVERGENCES);
    for (i, case) in cases.iter().enumerate() {
        if case.divergence.is_none() {
            assert_eq!(case.status, case.drf_status, "case {i} is not DRF's answer");
        }
    }
}

#[test]
fn every_recorded_answer_matches() {
    let cases = fixture().cases;
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (status, body) = answer(case);
        let expected = expand(&case.answer);
        if (status, &body) != (case.status, &expected) {
            failures.push(format!(
                "case {i} (reference {}, {:?}): body {:?} content-type {:?} accept {:?}\n  expected {} {}\n  got      {} {}",
                case.drf_status,
                case.divergence,
                String::from_utf8_lossy(&expand(&case.body)).chars().take(120).collect::<String>(),
                case.content_type.as_deref().map(|s| String::from_utf8_lossy(&expand(s)).into_owned()),
                case.accept.as_deref().map(|s| String::from_utf8_lossy(&expand(s)).into_owned()),
                case.status,
                String::from_utf8_lossy(&expected).chars().take(300).collect::<String>(),
                status,
                String::from_utf8_lossy(&body).chars().take(300).collect::<String>(),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
