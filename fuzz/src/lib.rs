//! What the fuzz targets share: the keys and clock of the recorded contract cases, so that
//! the seeds `fuzz/seed` writes from them are valid tokens here, and an independent HS256
//! signer to check the verifier against.

use std::sync::OnceLock;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use doorman_token::{Algorithm, Key, KeySet, TokenRules, Tokens};

/// The clock every target verifies at; `fuzz/seed` writes tokens valid at this instant.
pub const NOW: i64 = 1_700_000_000;

/// The contract cases' signing key (`keys.test` in `crates/doorman/tests/contract/cases.json`).
pub const SECRET: &[u8] = b"doorman-test-only-hs256-secret-0123456789abcdef";

/// Their other key (`keys.other`): what a token signed with it must never pass for.
pub const OTHER_SECRET: &[u8] = b"doorman-test-only-other-secret-0123456789abcdef";

fn tokens_with(secret: &[u8]) -> Tokens {
    doorman_token::install_crypto_provider();
    let Ok(key) = Key::hmac(Algorithm::HS256, secret) else {
        unreachable!("a 47-byte HS256 secret is a valid key")
    };
    Tokens::new(KeySet::new(key), TokenRules::default())
}

/// doorman's verifier with the contract's key and simplejwt's default rules.
pub fn tokens() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(|| tokens_with(SECRET))
}

/// The same rules with the other key.
pub fn other_tokens() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(|| tokens_with(OTHER_SECRET))
}

/// HMAC-SHA256 of `input` under `secret`, computed here rather than by doorman-token.
pub fn hs256(secret: &[u8], input: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::sign(&key, input).as_ref().to_vec()
}

/// Unpadded base64url, the JWS segment encoding.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes an unpadded base64url segment.
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// A compact JWS of `payload` under `header`, signed with HS256 and `secret`.
pub fn sign(header: &[u8], payload: &[u8], secret: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = b64(&hs256(secret, input.as_bytes()));
    format!("{input}.{signature}")
}
