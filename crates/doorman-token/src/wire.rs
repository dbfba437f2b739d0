//! The JWS compact serialization, read strictly: three base64url segments without padding,
//! JSON objects without duplicate members, and no header member that asks the verifier to fetch
//! or trust something we did not configure (RFC 8725 §3.10, RFC 7515 §4.1.11).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::Refusal;

/// Header members doorman never issues and refuses to honour: `jku`/`x5u` would make us fetch
/// a key from an attacker's URL, `jwk`/`x5c` would let the token carry its own key, and `crit`
/// names extensions we don't implement.
const FORBIDDEN_HEADER_MEMBERS: [&str; 5] = ["jku", "x5u", "jwk", "x5c", "crit"];

/// A token split into its parts, with header and payload decoded.
pub(crate) struct Compact<'a> {
    pub alg: String,
    pub kid: Option<String>,
    pub signing_input: &'a str,
    pub signature: &'a str,
    pub payload: Map<String, Value>,
}

/// Splits and decodes a compact JWS without checking its signature.
pub(crate) fn parse(token: &str, max_bytes: usize) -> Result<Compact<'_>, Refusal> {
    if token.len() > max_bytes {
        return Err(Refusal::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed);
    };
    let signing_input = &token[..header.len() + 1 + payload.len()];
    let header = decode_object(header)?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        _ => return Err(Refusal::Malformed),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(Refusal::Malformed),
    };
    if let Some(member) = FORBIDDEN_HEADER_MEMBERS
        .iter()
        .find(|m| header.contains_key(**m))
    {
        return Err(Refusal::ForbiddenHeader(member));
    }
    let payload = decode_object(payload)?;
    Ok(Compact {
        alg,
        kid,
        signing_input,
        signature,
        payload,
    })
}

/// base64url (no padding, canonical trailing bits) of a UTF-8 JSON object.
pub(crate) fn decode_object(segment: &str) -> Result<Map<String, Value>, Refusal> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Refusal::Malformed)?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let object = de
        .deserialize_map(UniqueObject)
        .map_err(|_| Refusal::Malformed)?;
    de.end().map_err(|_| Refusal::Malformed)?;
    Ok(object)
}

pub(crate) fn encode_segment(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JSON object whose top-level members are unique: `{"sub":"1","sub":"2"}` is not a token
/// two parsers would read the same way, so it is refused.
struct UniqueObject;

impl<'de> Visitor<'de> for UniqueObject {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with unique member names")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        while let Some((name, value)) = access.next_entry::<String, Value>()? {
            if map.contains_key(&name) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate member {name:?}"
                )));
            }
            map.insert(name, value);
        }
        Ok(map)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::TokenError;

    fn seg(json: &str) -> String {
        encode_segment(json.as_bytes())
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", seg(header), seg(payload))
    }

    #[test]
    fn reads_a_well_formed_token() {
        let t = token(r#"{"alg":"HS256","typ":"JWT"}"#, r#"{"b":1,"a":2}"#);
        let c = parse(&t, 8192).unwrap();
        assert_eq!(c.alg, "HS256");
        assert_eq!(c.kid, None);
        assert_eq!(c.signature, "c2ln");
        assert_eq!(c.payload.keys().collect::<Vec<_>>(), ["b", "a"]);
    }

    #[test]
    fn refuses_structural_oddities() {
        let good_h = r#"{"alg":"HS256"}"#;
        let cases = [
            token(r#"{"alg":"HS256","alg":"none"}"#, "{}"),
            token(good_h, r#"{"sub":"1","sub":"2"}"#),
            token(r#"{"alg":"HS256","crit":["exp"]}"#, "{}"),
            token(r#"{"alg":"HS256","jku":"http://127.0.0.1/"}"#, "{}"),
            token(r#"{"alg":"HS256","jwk":{}}"#, "{}"),
            token(r#"{"alg":"HS256","x5u":"x"}"#, "{}"),
            token(r#"{"alg":"HS256","x5c":[]}"#, "{}"),
            token(r#"{"alg":"HS256","kid":7}"#, "{}"),
            token(r#"{"alg":7}"#, "{}"),
            token(r#"["alg"]"#, "{}"),
            token(good_h, "[]"),
            token(good_h, "{} x"),
            format!("{}=.{}.c2ln", seg(good_h), seg("{}")),
            format!("{}.{}", seg(good_h), seg("{}")),
            format!("{}.{}.c2ln.x", seg(good_h), seg("{}")),
            format!("{}.{}+/.c2ln", seg(good_h), seg("{}")),
            "..".to_owned(),
            String::new(),
        ];
        for t in cases {
            let refusal = parse(&t, 8192).err();
            assert!(
                matches!(
                    refusal,
                    Some(Refusal::Malformed | Refusal::ForbiddenHeader(_))
                ),
                "{t}: {refusal:?}"
            );
            assert_eq!(refusal.map(TokenError::from), Some(TokenError::Invalid));
        }
    }

    #[test]
    fn refuses_oversized_tokens_before_decoding() {
        let t = token(
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"p":"{}"}}"#, "x".repeat(9000)),
        );
        assert_eq!(parse(&t, 8192).err(), Some(Refusal::TooLong));
    }

    #[test]
    fn names_the_header_member_it_refuses() {
        let t = token(r#"{"alg":"HS256","jku":"http://127.0.0.1/"}"#, "{}");
        assert_eq!(parse(&t, 8192).err(), Some(Refusal::ForbiddenHeader("jku")));
    }

    #[test]
    fn refuses_non_canonical_base64() {
        // "e30" is "{}"; "e31" has non-zero unused trailing bits.
        let t = format!("{}.e31.c2ln", seg(r#"{"alg":"HS256"}"#));
        assert_eq!(parse(&t, 8192).err(), Some(Refusal::Malformed));
    }

    #[test]
    fn survives_deep_nesting() {
        let deep = format!(r#"{{"a":{}{}}}"#, "[".repeat(5000), "]".repeat(5000));
        let t = token(r#"{"alg":"HS256"}"#, &deep);
        assert_eq!(parse(&t, 1 << 20).err(), Some(Refusal::Malformed));
    }
}
