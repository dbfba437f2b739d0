//! The attacks of `docs/security.md` §4: forged, tampered, confused and malformed
//! tokens, sent as a Bearer to /hello/ and as a body to verify and refresh. Every one must get
//! a 401 (or the 431 or 413 of a request over its size limits), never a 5xx, never a 200.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

fn seg(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

fn access_payload() -> String {
    format!(
        r#"{{"token_type":"access","exp":{},"iat":{},"jti":"aa","user_id":"1"}}"#,
        now() + 300,
        now()
    )
}

/// Sends the token everywhere a token is read; asserts it never gets in and never breaks: a
/// 401, or for a token beyond the request head's limit the 431 and beyond the body's limit the
/// 413 (JSON), whichever that token's size calls for.
async fn assert_refused(app: &TestApp, token: &str, label: &str) {
    let config = &app.state.config.server;
    // Far enough from either limit that the other headers or the JSON around the token can't
    // decide which answer is due.
    for limit in [config.max_header_bytes, config.max_body_bytes] {
        assert!(
            token.len().abs_diff(limit) > 1024,
            "{label}: a {}-byte token is too close to the {limit}-byte limit",
            token.len()
        );
    }
    let status = app.get_hello(token).await.status();
    let expected = if token.len() > config.max_header_bytes {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    } else {
        StatusCode::UNAUTHORIZED
    };
    assert_eq!(status, expected, "{label}: /hello/");
    for (path, field) in [
        ("/api/token/verify/", "token"),
        ("/api/token/refresh/", "refresh"),
    ] {
        let (status, body) = status_body(app.post_json(path, &json!({ field: token })).await).await;
        if token.len() > config.max_body_bytes {
            assert_eq!(
                (status, body.as_str()),
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    r#"{"detail":"Request body is too large."}"#
                ),
                "{label}: {path}"
            );
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{label}: {path}: {body}");
        }
    }
}

dual_test! {
    async fn forged_and_malformed_tokens_are_refused_hs256() {
        let app = spawn_app().await;
        let key = TEST_SECRET.as_bytes();
        let p = access_payload();
        let good = sign_hs256(HS256_HEADER, &p, key);
        assert_eq!(
            app.get_hello(&good).await.status(),
            StatusCode::OK,
            "control: the well-formed token is accepted"
        );
        let (h, pl, sig) = {
            let mut it = good.split('.');
            (
                it.next().unwrap().to_owned(),
                it.next().unwrap().to_owned(),
                it.next().unwrap().to_owned(),
            )
        };
        let mut cases: Vec<(String, String)> = Vec::new();
        for alg in ["none", "None", "NONE", "nOnE"] {
            let h = seg(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            cases.push((format!("alg {alg} empty sig"), format!("{h}.{pl}.")));
            cases.push((format!("alg {alg} no sig"), format!("{h}.{pl}")));
        }
        for header in [
            r#"{"alg":"HS256","typ":"JWT","crit":["exp"]}"#,
            r#"{"alg":"HS256","crit":["x-foo"],"x-foo":1}"#,
            r#"{"alg":"HS256","jku":"http://127.0.0.1:9/jwks"}"#,
            r#"{"alg":"HS256","x5u":"http://127.0.0.1:9/cert"}"#,
            r#"{"alg":"HS256","jwk":{"kty":"oct","k":"AAAA"}}"#,
            r#"{"alg":"HS256","x5c":["MIIB"]}"#,
            r#"{"alg":"HS256","alg":"HS256"}"#,
            r#"{"alg":"HS512","typ":"JWT"}"#,
            r#"{"alg":"HS256","kid":7}"#,
            r#"{"alg":"HS256","kid":null}"#,
            r#"["alg","HS256"]"#,
        ] {
            cases.push((
                format!("validly signed header {header}"),
                sign_hs256(header, &p, key),
            ));
        }
        let t = now();
        for payload in [
            format!(
                r#"{{"token_type":"refresh","token_type":"access","exp":{},"jti":"a","user_id":"1"}}"#,
                t + 60
            ),
            format!(r#"{{"token_type":"access","exp":{t},"jti":"a","user_id":"1"}}"#),
            format!(
                r#"{{"token_type":"access","exp":{},"jti":"a","user_id":"1"}}"#,
                t - 1
            ),
            r#"{"token_type":"access","exp":"9999999999","jti":"a","user_id":"1"}"#.to_owned(),
            r#"{"token_type":"access","exp":-1,"jti":"a","user_id":"1"}"#.to_owned(),
            r#"{"token_type":"access","exp":18446744073709551616,"jti":"a","user_id":"1"}"#.to_owned(),
            r#"{"token_type":"access","exp":1e400,"jti":"a","user_id":"1"}"#.to_owned(),
            r#"{"token_type":"access","exp":null,"jti":"a","user_id":"1"}"#.to_owned(),
            format!(
                r#"{{"token_type":"access","exp":{},"nbf":{},"jti":"a","user_id":"1"}}"#,
                t + 7200,
                t + 3600
            ),
            format!(
                r#"{{"token_type":"access","exp":{},"iat":{},"jti":"a","user_id":"1"}}"#,
                t + 7200,
                t + 3600
            ),
            format!(
                r#"{{"token_type":"access","exp":{},"jti":"a","user_id":"1","a":{}{}}}"#,
                t + 60,
                "[".repeat(200),
                "]".repeat(200)
            ),
            "[1,2,3]".to_owned(),
            "not json".to_owned(),
        ] {
            cases.push((
                format!("validly signed payload {payload:.80}"),
                sign_hs256(HS256_HEADER, &payload, key),
            ));
        }
        let other = sign_hs256(
            HS256_HEADER,
            &format!(
                r#"{{"token_type":"access","exp":{},"jti":"zz","user_id":"2"}}"#,
                t + 60
            ),
            key,
        );
        cases.push((
            "signature transplant".into(),
            format!("{h}.{pl}.{}", other.split('.').nth(2).unwrap()),
        ));
        cases.push((
            "truncated signature".into(),
            format!("{h}.{pl}.{}", &sig[..sig.len() - 2]),
        ));
        cases.push(("padded segments".into(), format!("{h}=.{pl}=.{sig}")));
        cases.push((
            "standard alphabet".into(),
            format!(
                "{h}.{}.{sig}",
                pl.replace('-', "+").replace('_', "/") + "+/"
            ),
        ));
        cases.push(("four segments".into(), format!("{h}.{pl}.{sig}.x")));
        cases.push(("two segments".into(), format!("{h}.{pl}")));
        cases.push(("empty segments".into(), "..".into()));
        cases.push((
            "weak secret".into(),
            sign_hs256(HS256_HEADER, &p, b"your-256-bit-secret"),
        ));
        cases.push((
            "8 KiB token".into(),
            sign_hs256(
                HS256_HEADER,
                &format!(
                    r#"{{"token_type":"access","exp":{},"jti":"a","user_id":"1","pad":"{}"}}"#,
                    t + 60,
                    "x".repeat(9000)
                ),
                key,
            ),
        ));
        let mut many = String::from("{");
        for i in 0..10_000 {
            many.push_str(&format!(r#""c{i}":1,"#));
        }
        many.push_str(&format!(r#""exp":{}}}"#, t + 60));
        cases.push(("10 000 claims".into(), sign_hs256(HS256_HEADER, &many, key)));
        // A string kid is ignored with the one static secret, as simplejwt ignores it: it is
        // never used to load a key. So a kid naming a file or smuggling SQL gets nothing from
        // the empty secret such a file would give, or from another secret.
        for kid in [
            "../../../../dev/null",
            "/etc/passwd",
            "' OR '1'='1",
            "k1\\u0000x",
            "unknown",
        ] {
            let header = format!(r#"{{"alg":"HS256","kid":"{kid}","typ":"JWT"}}"#);
            for secret in [&b""[..], b"your-256-bit-secret"] {
                cases.push((
                    format!("kid {kid} signed with {secret:?}"),
                    sign_hs256(&header, &p, secret),
                ));
            }
            let signed = sign_hs256(&header, &p, key);
            assert_eq!(
                app.get_hello(&signed).await.status(),
                StatusCode::OK,
                "kid {kid}: ignored with the real secret"
            );
            let (status, body) =
                status_body(app.post_json("/api/token/verify/", &json!({ "token": signed })).await)
                    .await;
            assert_eq!((status, body.as_str()), (StatusCode::OK, "{}"), "kid {kid}");
        }
        for (label, token) in &cases {
            assert_refused(&app, token, label).await;
        }
    }
}

dual_test! {
    async fn huge_authorization_header_is_refused_without_a_5xx() {
        let app = spawn_app().await;
        let res = app
            .client
            .get(app.url("/hello/"))
            .header("Authorization", format!("Bearer {}", "a".repeat(1 << 20)))
            .send()
            .await;
        // The 431 goes out before the server hangs up on the unread rest of the head.
        assert_eq!(
            res.expect("an answer, not a dropped connection").status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        assert_eq!(
            app.get_hello("x").await.status(),
            StatusCode::UNAUTHORIZED,
            "the server is still up"
        );
    }
}

dual_test! {
    async fn eddsa_deployment_refuses_key_confusion_and_kid_tricks() {
        let app = spawn_app_with(&[("DOORMAN_SIGNING_KEY", "")]).await;
        let pem = std::fs::read_to_string(app.dir.path().join("data/signing-key.pem")).unwrap();
        let der = ::pem::parse(&pem).unwrap().into_contents();
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(&der).unwrap();
        use aws_lc_rs::signature::KeyPair;
        let public = pair.public_key().as_ref().to_vec();
        let kid = app.state.tokens.keys().signing().kid().unwrap().to_owned();
        let p = access_payload();
        // Control: a token signed with the real key and its kid is accepted.
        let header = format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"JWT"}}"#);
        let input = format!("{}.{}", seg(&header), seg(&p));
        let good = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(pair.sign(input.as_bytes()).as_ref())
        );
        assert_eq!(app.get_hello(&good).await.status(), StatusCode::OK);

        let spki = {
            let mut v = vec![
                0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
            ];
            v.extend_from_slice(&public);
            v
        };
        let public_pem = ::pem::encode(&::pem::Pem::new("PUBLIC KEY", spki.clone()));
        let jwk = format!(
            r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(&public)
        );
        let renderings: Vec<Vec<u8>> = vec![
            public.clone(),
            spki,
            public_pem.clone().into_bytes(),
            public_pem.trim_end().as_bytes().to_vec(),
            jwk.into_bytes(),
            URL_SAFE_NO_PAD.encode(&public).into_bytes(),
        ];
        for (i, key) in renderings.iter().enumerate() {
            for header in [
                format!(r#"{{"alg":"HS256","kid":"{kid}","typ":"JWT"}}"#),
                HS256_HEADER.to_owned(),
            ] {
                assert_refused(
                    &app,
                    &sign_hs256(&header, &p, key),
                    &format!("HS256 with public key rendering {i}"),
                )
                .await;
            }
        }
        let sig = URL_SAFE_NO_PAD.encode(pair.sign(input.as_bytes()).as_ref());
        for kid_value in [
            "../../../../dev/null",
            "/etc/passwd",
            "' OR '1'='1",
            "k1\\u0000x",
            "unknown",
            &"k".repeat(65_536),
        ] {
            let header = format!(r#"{{"alg":"EdDSA","kid":"{kid_value}","typ":"JWT"}}"#);
            let input = format!("{}.{}", seg(&header), seg(&p));
            let signed = format!(
                "{input}.{}",
                URL_SAFE_NO_PAD.encode(pair.sign(input.as_bytes()).as_ref())
            );
            assert_refused(&app, &signed, &format!("kid {kid_value:.20}")).await;
        }
        // The right kid with another algorithm named, and no kid at all.
        for header in [
            format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#),
            r#"{"alg":"EdDSA","typ":"JWT"}"#.to_owned(),
        ] {
            let input = format!("{}.{}", seg(&header), seg(&p));
            let signed = format!(
                "{input}.{}",
                URL_SAFE_NO_PAD.encode(pair.sign(input.as_bytes()).as_ref())
            );
            assert_refused(&app, &signed, &format!("header {header}")).await;
        }
        assert_refused(
            &app,
            &format!(
                "{}.{}.{sig}",
                seg(&header),
                seg(&p.replace("\"1\"", "\"2\""))
            ),
            "payload swapped under a valid signature",
        )
        .await;
    }
}
