//! Properties of token parsing over generated inputs: whatever is not a token doorman signed,
//! byte for byte, is refused as invalid (never a panic, never a pass), while the tokens it does
//! sign verify, so that the refusals are the inputs' doing and not a verifier that refuses all.
#![allow(clippy::unwrap_used)]

use doorman_token::{Algorithm, Key, KeySet, TokenError, TokenKind, TokenRules, Tokens};
use proptest::prelude::*;

const NOW: i64 = 1_800_000_000;

fn tokens() -> Tokens {
    doorman_token::install_crypto_provider();
    Tokens::new(
        KeySet::new(
            Key::hmac(
                Algorithm::HS256,
                b"doorman-test-only-hs256-secret-0123456789abcdef",
            )
            .unwrap(),
        ),
        TokenRules::default(),
    )
}

/// A refresh token for user 1, and the proof that it verifies as it stands.
fn signed(t: &Tokens) -> Result<String, TestCaseError> {
    let good = t.encode(&t.refresh_for_user("1", NOW)).unwrap();
    prop_assert!(
        t.verify(&good, TokenKind::Refresh, NOW).is_ok(),
        "the unaltered token {} is refused",
        good
    );
    Ok(good)
}

fn refused_as_invalid(t: &Tokens, forged: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        t.verify(forged, TokenKind::Refresh, NOW).err(),
        Some(TokenError::Invalid),
        "{} accepted",
        forged
    );
    Ok(())
}

/// One way of spoiling a signed token.
#[derive(Clone, Debug)]
enum Mutation {
    /// The byte at this position (modulo the length) becomes this printable ASCII one.
    Replace(usize, u8),
    /// A printable ASCII byte goes in at this position.
    Insert(usize, u8),
    /// Bytes from this position on, this many, are cut out.
    Remove(usize, usize),
    /// The token's segments, taken by these indexes (modulo 3): too few, too many, repeated
    /// or reordered.
    Segments(Vec<usize>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let position = 0usize..10_000;
    let printable = 0x21u8..=0x7e;
    prop_oneof![
        (position.clone(), printable.clone()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (position.clone(), printable).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (position, 1usize..64).prop_map(|(i, n)| Mutation::Remove(i, n)),
        proptest::collection::vec(0usize..3, 0..6).prop_map(Mutation::Segments),
    ]
}

fn apply(good: &str, mutation: &Mutation) -> String {
    let mut bytes = good.as_bytes().to_vec();
    match *mutation {
        Mutation::Replace(i, b) => {
            let i = i % bytes.len();
            bytes[i] = b;
        }
        Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
        Mutation::Remove(i, n) => {
            let i = i % bytes.len();
            bytes.drain(i..(i + n).min(bytes.len()));
        }
        Mutation::Segments(ref order) => {
            let segments: Vec<&str> = good.split('.').collect();
            return order
                .iter()
                .map(|&k| segments[k % segments.len()])
                .collect::<Vec<_>>()
                .join(".");
        }
    }
    String::from_utf8(bytes).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_is_invalid(text in ".{0,600}") {
        let t = tokens();
        prop_assert_eq!(t.decode(&text, NOW).err(), Some(TokenError::Invalid));
    }

    #[test]
    fn arbitrary_bytes_are_invalid(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let t = tokens();
        let text = String::from_utf8_lossy(&bytes);
        prop_assert_eq!(t.decode(&text, NOW).err(), Some(TokenError::Invalid));
    }

    #[test]
    fn arbitrary_segments_are_invalid(
        segments in proptest::collection::vec("[A-Za-z0-9_=+/-]{0,120}", 1..6),
    ) {
        let t = tokens();
        let token = segments.join(".");
        prop_assert_eq!(t.decode(&token, NOW).err(), Some(TokenError::Invalid));
    }

    /// Well-formed in every part, signed by nobody: only the signature check stands between
    /// these and a pass.
    #[test]
    fn a_real_header_and_payload_with_another_signature_are_invalid(
        signature in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        use base64::Engine;
        let t = tokens();
        let good = signed(&t)?;
        let (signing_input, _) = good.rsplit_once('.').unwrap();
        let forged = format!(
            "{signing_input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&signature)
        );
        prop_assume!(forged != good);
        refused_as_invalid(&t, &forged)?;
    }

    #[test]
    fn any_change_to_a_signed_token_is_invalid(mutation in mutation()) {
        let t = tokens();
        let good = signed(&t)?;
        let forged = apply(&good, &mutation);
        prop_assume!(forged != good);
        refused_as_invalid(&t, &forged)?;
    }

    #[test]
    fn issued_tokens_verify_and_name_their_user(user in "[1-9][0-9]{0,11}", offset in 0i64..86_400) {
        let t = tokens();
        let now = NOW + offset;
        let refresh = t.refresh_for_user(&user, now);
        let access = t.encode(&t.access_from_refresh(&refresh, now)).unwrap();
        let refresh = t.encode(&refresh).unwrap();
        for (token, kind) in [(&refresh, TokenKind::Refresh), (&access, TokenKind::Access)] {
            let verified = t.verify(token, kind, now);
            prop_assert!(verified.is_ok(), "{:?}: {:?}", kind, verified.err());
            let claims = verified.unwrap();
            prop_assert_eq!(claims.str("user_id"), Some(user.as_str()));
        }
    }

    /// Validly signed JSON of any shape never panics; without the registered claims that
    /// decoding checks, it decodes, member for member.
    #[test]
    fn signed_json_of_any_shape_never_panics_and_decodes(payload in proptest::collection::btree_map("[a-z_]{1,8}", prop_oneof![
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)),
        ".{0,20}".prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ], 0..8)) {
        let t = tokens();
        let mut claims = doorman_token::Claims::new();
        for (k, v) in &payload {
            claims.insert(k, v.clone());
        }
        let token = t.encode(&claims).unwrap();
        let decoded = t.decode(&token, NOW);
        let registered = ["exp", "iat", "nbf", "sub", "jti"];
        if !registered.iter().any(|name| payload.contains_key(*name)) {
            prop_assert!(decoded.is_ok(), "{:?}: {:?}", payload, decoded.as_ref().err());
        }
        if let Ok(c) = decoded {
            let names: Vec<&String> = c.as_map().keys().collect();
            prop_assert_eq!(names, payload.keys().collect::<Vec<_>>());
            let _ = t.check(&c, Some(TokenKind::Access));
            let _ = c.user_id("user_id");
        }
    }
}
