//! Issue and verify costs per algorithm, each beside the same operation done with bare
//! `jsonwebtoken`, so that what doorman-token adds over the signature itself is visible.
//!
//! Both sides use one key per algorithm (`Key::generate`, or a fixed secret for HMAC): the bare
//! side's `EncodingKey` comes from the same PKCS#8 PEM, its `DecodingKey` from the key's
//! published JWK, which is also how doorman-token builds its own. The payload is a simplejwt
//! access token (`token_type, exp, iat, jti, user_id`), already built on both sides: creating
//! the claims (a new `jti`) is not measured.
//!
//! - `issue/<alg>/doorman`: `Tokens::encode`, which copies the claims (adding `aud`/`iss` when
//!   configured; neither is here), serializes them in claim order behind a header encoded once
//!   per key set, and signs.
//! - `issue/<alg>/jsonwebtoken`: `jsonwebtoken::encode` of a `#[derive(Serialize)]` struct with
//!   the same values under a header (`typ`, `alg`, the same `kid`) built once outside the loop.
//!   Both tokens have the same length.
//! - `verify/<alg>/doorman`: `Tokens::verify` of an access token: strict parsing (no padding,
//!   no duplicate members, no `jku`/`jwk`/`x5u`/`x5c`/`crit`), key lookup by `kid`, the
//!   key's algorithm against the header's, signature, `iat`/`nbf`/`exp` (no leeway), `sub`/`jti`
//!   types, then `exp`, `jti` and `token_type == "access"` present; claims come back as an
//!   ordered JSON map.
//! - `verify/<alg>/jsonwebtoken`: `jsonwebtoken::decode` into the struct with a `Validation`
//!   for the one algorithm, `exp` required and checked without leeway (no `iat` check), then
//!   the `token_type` compared. Missing claims fail deserialization.
//!
//! - `verify/<alg>/doorman-first-sight`: the same on a `Tokens` that has not seen the token
//!   before: the full check, and the token's entry in the verified-token cache. As
//!   `verify/<alg>/doorman` repeats one token, it measures a cache hit (time claims and type
//!   still checked).
//!
//! Both verify the same doorman-issued token, and both read the clock once per call.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use doorman_token::{Algorithm, Family, Key, KeySet, TokenKind, TokenRules, Tokens, unix_now};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// A simplejwt access token's payload, in simplejwt's claim order.
#[derive(Debug, Serialize, Deserialize)]
struct AccessClaims {
    token_type: String,
    exp: i64,
    iat: i64,
    jti: String,
    user_id: String,
}

/// One algorithm's key, held by doorman-token and, as the same material, by jsonwebtoken.
struct Subject {
    tokens: Tokens,
    encoding: EncodingKey,
    decoding: DecodingKey,
    header: Header,
    validation: Validation,
}

impl Subject {
    fn new(alg: Algorithm) -> Subject {
        let (key, encoding, decoding) = match alg.family() {
            Family::Hmac => {
                let secret: Vec<u8> = (0..alg.min_secret_bytes())
                    .map(|i| (i * 37 + 11) as u8)
                    .collect();
                (
                    Key::hmac(alg, &secret).expect("HMAC key"),
                    EncodingKey::from_secret(&secret),
                    DecodingKey::from_secret(&secret),
                )
            }
            family => {
                let (key, pem) = Key::generate(alg).expect("generated key");
                let pem = pem.as_bytes();
                let encoding = match family {
                    Family::Rsa => EncodingKey::from_rsa_pem(pem),
                    Family::Ec => EncodingKey::from_ec_pem(pem),
                    _ => EncodingKey::from_ed_pem(pem),
                }
                .expect("jsonwebtoken reads the generated PEM");
                let public: Jwk = serde_json::from_value(key.public_jwk().expect("a key pair"))
                    .expect("public JWK");
                let decoding = DecodingKey::from_jwk(&public).expect("decoding key from JWK");
                (key, encoding, decoding)
            }
        };
        let jwt_alg: jsonwebtoken::Algorithm = alg.as_str().parse().expect("known algorithm");
        let mut header = Header::new(jwt_alg);
        header.kid = key.kid().map(str::to_owned);
        let mut validation = Validation::new(jwt_alg);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        Subject {
            tokens: Tokens::new(KeySet::new(key), TokenRules::default()),
            encoding,
            decoding,
            header,
            validation,
        }
    }

    /// A fresh access token's claims, as doorman builds them and as the bare struct.
    fn claims(&self) -> (doorman_token::Claims, AccessClaims) {
        let now = unix_now();
        let refresh = self.tokens.refresh_for_user("42", now);
        let access = self.tokens.access_from_refresh(&refresh, now);
        let bare = serde_json::from_value(serde_json::Value::Object(access.as_map().clone()))
            .expect("the access claims fit the struct");
        (access, bare)
    }

    fn bare_verify(&self, token: &str) -> AccessClaims {
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .expect("jsonwebtoken verifies");
        assert!(data.claims.token_type == "access", "wrong token type");
        data.claims
    }
}

fn tokens(c: &mut Criterion) {
    doorman_token::install_crypto_provider();
    for alg in Algorithm::ALL {
        let subject = Subject::new(alg);
        let name = alg.as_str();

        let (claims, bare_claims) = subject.claims();
        // The same key material on both sides: each verifies what the other signed.
        let ours = subject.tokens.encode(&claims).expect("doorman signs");
        let theirs = jsonwebtoken::encode(&subject.header, &bare_claims, &subject.encoding)
            .expect("jsonwebtoken signs");
        assert_eq!(ours.len(), theirs.len(), "{name}: token sizes differ");
        subject
            .tokens
            .verify(&theirs, TokenKind::Access, unix_now())
            .expect("doorman verifies jsonwebtoken's token");
        subject.bare_verify(&ours);

        let mut group = c.benchmark_group(format!("issue/{name}"));
        group.bench_function("doorman", |b| {
            b.iter(|| subject.tokens.encode(black_box(&claims)).expect("sign"))
        });
        group.bench_function("jsonwebtoken", |b| {
            b.iter(|| {
                jsonwebtoken::encode(&subject.header, black_box(&bare_claims), &subject.encoding)
                    .expect("sign")
            })
        });
        group.finish();

        // Issued now, so that jsonwebtoken's wall-clock `exp` check passes throughout.
        let (claims, _) = subject.claims();
        let token = subject.tokens.encode(&claims).expect("doorman signs");
        let mut group = c.benchmark_group(format!("verify/{name}"));
        group.bench_function("doorman", |b| {
            b.iter(|| {
                subject
                    .tokens
                    .verify(black_box(&token), TokenKind::Access, unix_now())
                    .expect("verify")
            })
        });
        group.bench_function("doorman-first-sight", |b| {
            b.iter_batched(
                || {
                    Tokens::new(
                        (*subject.tokens.keys()).clone(),
                        subject.tokens.rules().clone(),
                    )
                },
                |fresh| {
                    fresh
                        .verify(black_box(&token), TokenKind::Access, unix_now())
                        .expect("verify");
                    fresh
                },
                criterion::BatchSize::SmallInput,
            )
        });
        group.bench_function("jsonwebtoken", |b| {
            b.iter(|| subject.bare_verify(black_box(&token)))
        });
        group.finish();
    }
}

/// Short runs: the 48 benchmarks take about two minutes on two cores (RSA signing, near 0.5 ms
/// a call, still fits 50 linear samples in 1.5 s).
fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .nresamples(20_000)
}

criterion_group! {
    name = benches;
    config = config();
    targets = tokens
}
criterion_main!(benches);
