//! Any bytes as the payload of a correctly signed token: decoding accepts only a JSON object,
//! returns exactly its members, and the same token never passes under another key.
#![no_main]

use doorman_fuzz::{NOW, SECRET, other_tokens, sign, tokens};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const HEADER: &[u8] = br#"{"alg":"HS256","typ":"JWT"}"#;

fuzz_target!(|payload: &[u8]| {
    let token = sign(HEADER, payload, SECRET);
    if let Ok(claims) = tokens().decode(&token, NOW) {
        match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(members)) => assert_eq!(
                claims.as_map(),
                &members,
                "the claims are not the payload's members"
            ),
            other => panic!("accepted a payload that is not a JSON object: {other:?}"),
        }
    }
    assert!(
        other_tokens().decode(&token, NOW).is_err(),
        "a token signed with one key passed under another"
    );
});
