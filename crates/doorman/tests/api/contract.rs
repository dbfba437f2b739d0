//! simplejwt's recorded contract, replayed against doorman.
//!
//! `tests/contract/simplejwt-5.5.1.json` holds 211 requests and the answers the real reference
//! app (simplejwt 5.5.1, DRF 3.18.3, Django 5.2 under gunicorn) gave to them, recorded by
//! `tests/contract/capture.py`. This test mints the same tokens from the same declarations,
//! sends byte-identical requests over a raw socket (no header the recording didn't send), and
//! compares status, the recorded headers and the body: exactly, or for fresh tokens by shape
//! (keys in order, decoded header text, claim order, token type, user, lifetime). A case's
//! `"doorman"` field replaces the recorded answer where doorman deliberately differs
//! (`docs/wire-contract.md` section 8), and says why; [`DEVIATIONS`] lists those cases once
//! more, so that each one is a decision taken here and not only an edit of the recording. No
//! Python is needed to run it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TEST_SECRET, spawn_app};

const RECORDING: &str = include_str!("../contract/simplejwt-5.5.1.json");

/// The headers the recording kept, in its spelling.
const RECORDED_HEADERS: [&str; 6] = [
    "Content-Type",
    "Allow",
    "WWW-Authenticate",
    "Location",
    "Vary",
    "Cache-Control",
];

/// How many requests the recording holds.
const RECORDED_CASES: usize = 211;

/// Every case where doorman deliberately answers otherwise than simplejwt, under its reason
/// (the case's `"doorman"."why"`, word for word). The replay insists on exactly these: one
/// more (a difference papered over in the recording) or one fewer (a deviation doorman no
/// longer shows, or one dropped unnoticed) fails it.
const DEVIATIONS: [(&str, &[&str]); 9] = [
    (
        "wire-contract 8: Cache-Control: no-store on responses carrying tokens",
        &[
            "obtain ok",
            "obtain password trimmed",
            "obtain username trimmed",
            "obtain extra fields ignored",
            "obtain json with charset",
            "obtain json content type upper case",
            "obtain form",
            "obtain form encoded and trimmed",
            "obtain form repeated field",
            "obtain multipart",
            "obtain authorization ignored",
            "refresh ok",
            "refresh user_id number",
            "refresh token trimmed",
            "refresh form",
            "refresh multipart",
            "refresh no user_id",
            "refresh aud and iss ignored",
        ],
    ),
    (
        "wire-contract 8: no 500 for token content; simplejwt's nearest message",
        &["refresh no jti", "blacklist no jti"],
    ),
    (
        "wire-contract 8: deleted user at refresh is 401 (simplejwt master), not 500",
        &["refresh user deleted"],
    ),
    (
        "wire-contract 8: a string exp is refused as invalid",
        &[
            "refresh exp string",
            "verify exp string",
            "hello exp string",
        ],
    ),
    (
        "wire-contract 8: base64 padding rejected (RFC 7515)",
        &["refresh padded token", "verify padded", "hello padded"],
    ),
    (
        "wire-contract 8: verify always honours the blacklist",
        &["verify blacklisted"],
    ),
    (
        "wire-contract 8: no 500 for token content; nearest message is user_not_found",
        &["hello user_id not a number"],
    ),
    (
        "wire-contract 8: no 500 for token content; an exp past the year 9999 is invalid",
        &["hello exp beyond year 9999"],
    ),
    (
        "wire-contract 8: JSON 404 like DRF's NotFound instead of Django's HTML page",
        &["unknown path", "unknown path POST", "unknown root"],
    ),
];

/// The number of cases in [`DEVIATIONS`], stated so that a change to it is a visible one.
const DEVIATION_COUNT: usize = 33;

dual_test! {
    async fn simplejwt_recorded_contract_holds() {
        let recording: Value = serde_json::from_str(RECORDING).unwrap();
        let keys = recording["keys"].as_object().unwrap();
        assert_eq!(
            keys["test"], TEST_SECRET,
            "the recording's server key is the tests' key"
        );
        let app = spawn_app().await;
        let address = app.address.trim_start_matches("http://").to_owned();
        let now = doorman::unix_now();
        let tokens: Map<String, Value> = recording["tokens"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, spec)| (name.clone(), Value::String(mint(spec, keys, now))))
            .collect();

        let cases = recording["cases"].as_array().unwrap();
        assert_eq!(cases.len(), RECORDED_CASES, "the recording gained or lost cases");
        let mut failures = String::new();
        let mut deviating: BTreeMap<&str, &str> = BTreeMap::new();
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let mut expected = case["response"].clone();
            if let Some(ours) = case.get("doorman") {
                let why = ours["why"].as_str().unwrap_or_default();
                assert!(
                    deviating.insert(name, why).is_none(),
                    "{name}: two cases of that name"
                );
                override_with(&mut expected, ours);
            }
            let got = send(&address, &case["request"], &tokens).await;
            // A deviation doorman no longer shows is stale, not harmless: it would hide a
            // return to simplejwt's answer that nobody decided on.
            if case.get("doorman").is_some() && compare(&case["response"], &got).is_ok() {
                let _ = writeln!(
                    failures,
                    "- {name}: answers as the recording, yet is listed as a deviation"
                );
            }
            if let Err(problem) = compare(&expected, &got) {
                let _ = writeln!(
                    failures,
                    "- {name} ({} {}): {problem}\n    got {} {:?} {}",
                    case["request"]["method"].as_str().unwrap_or(""),
                    case["request"]["path"].as_str().unwrap_or(""),
                    got.status,
                    got.headers,
                    String::from_utf8_lossy(&got.body)
                );
            }
        }
        assert!(
            failures.is_empty(),
            "doorman answers differently from the recorded simplejwt:\n{failures}"
        );
        let listed: BTreeMap<&str, &str> = DEVIATIONS
            .iter()
            .flat_map(|(why, names)| names.iter().map(move |name| (*name, *why)))
            .collect();
        assert_eq!(listed.len(), DEVIATION_COUNT, "DEVIATIONS and DEVIATION_COUNT disagree");
        assert_eq!(
            deviating, listed,
            "the recording's deviations (left) are not the ones this test lists (right)"
        );
    }
}

/// `"doorman"`: status, body and compare replace; headers merge (null = must be absent).
fn override_with(expected: &mut Value, ours: &Value) {
    for field in ["status", "body", "compare"] {
        if let Some(value) = ours.get(field) {
            expected[field] = value.clone();
        }
    }
    if let Some(headers) = ours.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            expected["headers"][name] = value.clone();
        }
    }
}

/// The token a declaration describes, minted as capture.py mints it.
fn mint(spec: &Value, keys: &Map<String, Value>, now: i64) -> String {
    let default_header = serde_json::json!({"alg": "HS256", "typ": "JWT"});
    let header = spec.get("header").unwrap_or(&default_header);
    let claims = resolve_times(spec.get("claims").unwrap_or(&Value::Null), now);
    let mut h = URL_SAFE_NO_PAD.encode(serde_json::to_string(header).unwrap());
    let mut p = URL_SAFE_NO_PAD.encode(serde_json::to_string(&claims).unwrap());
    let mangle = spec.get("mangle").and_then(Value::as_str);
    let pad = |segment: &str| {
        let bytes = URL_SAFE_NO_PAD.decode(segment).unwrap();
        URL_SAFE.encode(bytes)
    };
    if mangle == Some("pad") {
        h = pad(&h);
        p = pad(&p);
    }
    let input = format!("{h}.{p}");
    let algorithm = match header.get("alg").and_then(Value::as_str) {
        Some("HS384") => aws_lc_rs::hmac::HMAC_SHA384,
        Some("HS512") => aws_lc_rs::hmac::HMAC_SHA512,
        _ => aws_lc_rs::hmac::HMAC_SHA256,
    };
    let mut signature = match spec.get("key").and_then(Value::as_str).unwrap_or("test") {
        "none" => Vec::new(),
        key => {
            let secret = keys[key].as_str().unwrap();
            let key = aws_lc_rs::hmac::Key::new(algorithm, secret.as_bytes());
            aws_lc_rs::hmac::sign(&key, input.as_bytes())
                .as_ref()
                .to_vec()
        }
    };
    if mangle == Some("flip-sig") {
        signature[0] ^= 0x01;
    }
    let mut s = URL_SAFE_NO_PAD.encode(&signature);
    if mangle == Some("pad") {
        s = pad(&s);
    }
    match mangle {
        Some("strip-sig") => format!("{input}."),
        Some("two-segments") => input,
        Some("four-segments") => format!("{input}.{s}.{s}"),
        None | Some("pad") | Some("flip-sig") => format!("{input}.{s}"),
        Some(other) => panic!("unknown mangle {other}"),
    }
}

/// Every `{"now": N}` becomes now + N (an integer, or a float when N is one).
fn resolve_times(value: &Value, now: i64) -> Value {
    match value {
        Value::Object(map)
            if map.len() == 1 && map.contains_key("now") && map["now"].is_number() =>
        {
            let offset = &map["now"];
            match offset.as_i64() {
                Some(n) => Value::from(now + n),
                None => Value::from(now as f64 + offset.as_f64().unwrap()),
            }
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), resolve_times(v, now)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve_times(v, now)).collect()),
        other => other.clone(),
    }
}

fn substitute(text: &str, tokens: &Map<String, Value>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{token:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "{token:".len()..];
        let end = after.find('}').unwrap();
        out.push_str(tokens[&after[..end]].as_str().unwrap());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request over its own connection, exactly as recorded: Host, the case's headers,
/// Content-Length when there is a body (0 for a bodiless POST, PUT or PATCH, as `requests`
/// sends it), and `Connection: close` so the answer ends with the stream.
async fn send(address: &str, request: &Value, tokens: &Map<String, Value>) -> Got {
    let method = request["method"].as_str().unwrap();
    let body: Option<Vec<u8>> = if let Some(json) = request.get("json") {
        Some(substitute(&serde_json::to_string(json).unwrap(), tokens).into_bytes())
    } else if let Some(text) = request.get("text") {
        Some(substitute(text.as_str().unwrap(), tokens).into_bytes())
    } else {
        request
            .get("base64")
            .map(|b| STANDARD.decode(b.as_str().unwrap()).unwrap())
    };
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {address}\r\n",
        request["path"].as_str().unwrap()
    )
    .into_bytes();
    if let Some(headers) = request.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            // `requests` sends header values as Latin-1.
            for c in substitute(value.as_str().unwrap(), tokens).chars() {
                head.push(u8::try_from(u32::from(c)).expect("a Latin-1 header value"));
            }
            head.extend_from_slice(b"\r\n");
        }
    }
    match (&body, method) {
        (Some(body), _) => {
            head.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes())
        }
        (None, "POST" | "PUT" | "PATCH") => head.extend_from_slice(b"Content-Length: 0\r\n"),
        _ => {}
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    head.extend_from_slice(body.as_deref().unwrap_or_default());

    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(&head).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut raw),
    )
    .await
    .expect("an answer within 30 s")
    .unwrap();
    parse_response(&raw, method == "HEAD")
}

fn parse_response(raw: &[u8], head_only: bool) -> Got {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = std::str::from_utf8(&raw[..split]).expect("an ASCII response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_owned(), value.trim().to_owned())
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let got = Got {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only {
        body.clear();
    } else if let Some(length) = got.header("Content-Length") {
        body.truncate(length.parse().unwrap());
    } else if got
        .header("Transfer-Encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    Got { body, ..got }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&raw[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        raw = &raw[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

fn compare(expected: &Value, got: &Got) -> Result<(), String> {
    let status = expected["status"].as_u64().unwrap();
    if u64::from(got.status) != status {
        return Err(format!("status {} where {status} was expected", got.status));
    }
    for name in RECORDED_HEADERS {
        let want = expected["headers"].get(name).and_then(Value::as_str);
        // The recording's Allow of a 404 etc. is compared as recorded, including absence.
        if got.header(name) != want {
            return Err(format!(
                "header {name}: {:?} where {want:?} was expected",
                got.header(name)
            ));
        }
    }
    let text = std::str::from_utf8(&got.body).map_err(|_| "a body that is not UTF-8")?;
    match expected["compare"].as_str().unwrap() {
        "exact" => {
            let want = expected["body"].as_str().unwrap();
            if text != want {
                return Err(format!("body differs; expected {want}"));
            }
        }
        "shape" => compare_shape(expected, text)?,
        other => panic!("unknown compare {other}"),
    }
    Ok(())
}

/// A 200 carrying fresh tokens: same keys in the same order, and each token alike.
fn compare_shape(expected: &Value, text: &str) -> Result<(), String> {
    let body: Map<String, Value> =
        serde_json::from_str(text).map_err(|e| format!("body is not a JSON object: {e}"))?;
    let keys: Vec<&str> = body.keys().map(String::as_str).collect();
    let want_keys: Vec<&str> = expected["body_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    if keys != want_keys {
        return Err(format!("body keys {keys:?} where {want_keys:?}"));
    }
    for (key, want) in expected["tokens"].as_object().unwrap() {
        let token = body[key].as_str().ok_or(format!("{key} is not a string"))?;
        let segments: Vec<&str> = token.split('.').collect();
        if segments.len() != 3 {
            return Err(format!("{key} is not a JWS"));
        }
        let header = String::from_utf8(URL_SAFE_NO_PAD.decode(segments[0]).unwrap()).unwrap();
        let claims: Map<String, Value> =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments[1]).unwrap()).unwrap();
        if header != want["header"].as_str().unwrap() {
            return Err(format!("{key} header {header}"));
        }
        let claim_keys: Vec<&str> = claims.keys().map(String::as_str).collect();
        let want_claims: Vec<&str> = want["claim_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        if claim_keys != want_claims {
            return Err(format!("{key} claims {claim_keys:?} where {want_claims:?}"));
        }
        for claim in ["token_type", "user_id"] {
            if want.get(claim) != claims.get(claim) {
                return Err(format!("{key} {claim} {:?}", claims.get(claim)));
            }
        }
        if let Some(lifetime) = want.get("exp_minus_iat").and_then(Value::as_i64) {
            let got = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
            // An access token cut from a refresh token may be a second shorter
            // (docs/wire-contract.md §3).
            let close = got == lifetime
                || (lifetime == 300 && got == 299)
                || (lifetime == 299 && got == 300);
            if !close {
                return Err(format!("{key} lives {got} s where {lifetime} s"));
            }
        }
    }
    Ok(())
}
