//! Properties of token parsing over generated inputs: nothing panics, and no change to a signed
//! token's bytes survives verification.
#![allow(clippy::unwrap_used)]

use doorman_token::{Algorithm, Key, KeySet, TokenKind, TokenRules, Tokens};
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,600}") {
        let t = tokens();
        let _ = t.decode(&text, NOW);
    }

    #[test]
    fn arbitrary_segments_never_panic(h in "[A-Za-z0-9_=+/-]{0,80}", p in "[A-Za-z0-9_=+/-]{0,200}", s in "[A-Za-z0-9_=+/-]{0,90}") {
        let t = tokens();
        let token = [h, p, s].join(".");
        prop_assert!(t.decode(&token, NOW).is_err());
    }

    #[test]
    fn any_single_byte_change_is_refused(index in 0usize..10_000, byte in proptest::char::range('!', '~')) {
        let t = tokens();
        let good = t.encode(&t.refresh_for_user("1", NOW)).unwrap();
        let index = index % good.len();
        let mut bytes = good.clone().into_bytes();
        prop_assume!(bytes[index] != byte as u8);
        bytes[index] = byte as u8;
        let forged = String::from_utf8(bytes).unwrap();
        prop_assert!(t.verify(&forged, TokenKind::Refresh, NOW).is_err(), "{} accepted", forged);
    }

    #[test]
    fn arbitrary_signed_json_payloads_never_panic(payload in proptest::collection::btree_map("[a-z_]{1,8}", prop_oneof![
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)),
        ".{0,20}".prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ], 0..8)) {
        let t = tokens();
        let mut claims = doorman_token::Claims::new();
        for (k, v) in payload {
            claims.insert(&k, v);
        }
        let token = t.encode(&claims).unwrap();
        if let Ok(c) = t.decode(&token, NOW) {
            let _ = t.check(&c, Some(TokenKind::Access));
            let _ = c.user_id("user_id");
        }
    }
}
