//! Any bytes as the `Authorization` header in front of a protected view: the guard never
//! panics, another scheme is "no credentials", and what it lets through is a token that
//! verifies as an access token on its own.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use doorman_fuzz::tokens;
use doorman_guard::{Guard, Rejection};
use doorman_token::{TokenError, TokenKind, unix_now};
use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use libfuzzer_sys::fuzz_target;

fn guard() -> &'static Guard {
    static GUARD: OnceLock<Guard> = OnceLock::new();
    GUARD.get_or_init(|| Guard::new(tokens().clone()))
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    // Without a JWKS or a user check nothing in `authenticate` waits: one poll finishes it.
    let mut future = pin!(guard().authenticate(&headers));
    let Poll::Ready(outcome) = future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    else {
        panic!("the guard waited with neither a JWKS nor a user check");
    };
    let mut parts = data
        .split(u8::is_ascii_whitespace)
        .filter(|part| !part.is_empty());
    let scheme = parts.next();
    if scheme != Some(b"Bearer".as_slice()) {
        assert!(
            matches!(outcome, Err(Rejection::NotProvided)),
            "another scheme was not treated as no credentials: {outcome:?}"
        );
    }
    if let Ok(user) = outcome {
        let token = parts.next().and_then(|t| std::str::from_utf8(t).ok());
        assert!(
            parts.next().is_none(),
            "let through a header with two tokens"
        );
        // The guard reads the wall clock: verify at the clock too, after it. A token can only
        // have expired in between.
        let verified = token.map(|t| tokens().verify(t, TokenKind::Access, unix_now()));
        assert!(
            matches!(verified, Some(Ok(ref claims)) if *claims == user.claims)
                || matches!(verified, Some(Err(TokenError::Expired))),
            "let through a token that doesn't verify"
        );
    }
});
