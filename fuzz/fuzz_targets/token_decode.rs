//! Any bytes as a token: `decode` and `verify` never panic, and a token they accept carries
//! an HS256 signature of its own signing input under doorman's key, as computed here.
#![no_main]

use doorman_fuzz::{NOW, SECRET, hs256, other_tokens, tokens, unb64};
use doorman_token::TokenKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let tokens = tokens();
    let decoded = tokens.decode(text, NOW);
    for kind in [TokenKind::Access, TokenKind::Refresh, TokenKind::Sliding] {
        if tokens.verify(text, kind, NOW).is_ok() {
            assert!(decoded.is_ok(), "verify accepted what decode refused");
        }
    }
    let _ = tokens.names_unknown_key(text);
    if decoded.is_ok() {
        let (input, signature) = text.rsplit_once('.').unwrap_or_default();
        let signature = unb64(signature);
        assert_eq!(
            signature.as_deref(),
            Some(hs256(SECRET, input.as_bytes()).as_slice()),
            "accepted a token without a valid signature"
        );
        assert!(
            other_tokens().decode(text, NOW).is_err(),
            "a token signed with one key passed under another"
        );
    }
});
