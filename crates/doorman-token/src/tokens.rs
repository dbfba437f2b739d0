//! Issuing and verifying tokens the way simplejwt does: the same claims in the same order, the
//! same validation order and messages, with RFC 8725's stricter reading where simplejwt (or
//! PyJWT) is lax or crashes.

use std::sync::Arc;

use arc_swap::ArcSwap;

use serde_json::{Map, Value};

use crate::hot::HotCache;
use crate::wire::{self, encode_segment};
use crate::{Claims, KeyError, KeySet, Refusal, TokenError, TokenKind, TokenRules};

/// Issues and verifies tokens with one key set under one set of rules. The key set can be
/// replaced while tokens are being issued and verified (key rotation); each operation uses
/// one consistent snapshot.
#[derive(Debug)]
pub struct Tokens {
    /// Read on every request, replaced on a rotation: loading it touches no reference count
    /// that other threads touch too.
    keys: ArcSwap<Signing>,
    rules: TokenRules,
}

/// A key set and the encoded header its signing key puts on every token.
struct Signing {
    keys: Arc<KeySet>,
    /// PyJWT's layout, keys sorted, so that an HS256 header is exactly
    /// `{"alg":"HS256","typ":"JWT"}` as simplejwt emits it.
    header_segment: String,
    /// Tokens whose structure and signature this key set has verified, with their claims. An
    /// RSA, ECDSA or Ed25519 check costs 15 to 150 µs, an HMAC check with the parse of the
    /// token about 1.8 µs, and a hit well under half a microsecond. Bounded; belongs to this
    /// key set, so a key rotation starts it afresh. A hit skips only what depends on the
    /// token's bytes alone (structure, key, algorithm, signature); the time claims, `iss` and
    /// `aud` are checked on every use, and the type, the blacklist and the user by the caller
    /// as before. Its hits write nothing shared ([`HotCache`]), so two cores verifying the same
    /// token don't slow each other down.
    verified: HotCache<Arc<str>, Claims>,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("keys", &self.keys)
            .field("header_segment", &self.header_segment)
            .field("verified_tokens", &self.verified.len())
            .finish()
    }
}

/// Most tokens the verified-token cache holds (a full cache is emptied and fills again).
const VERIFIED_CACHE_ENTRIES: usize = 10_000;

impl Signing {
    fn new(keys: KeySet) -> Signing {
        let signing = keys.signing();
        let header = match signing.kid() {
            Some(kid) => {
                serde_json::json!({"alg": signing.alg().as_str(), "kid": kid, "typ": "JWT"})
            }
            None => serde_json::json!({"alg": signing.alg().as_str(), "typ": "JWT"}),
        };
        Signing {
            header_segment: encode_segment(header.to_string().as_bytes()),
            keys: Arc::new(keys),
            verified: HotCache::new(VERIFIED_CACHE_ENTRIES),
        }
    }
}

impl Clone for Tokens {
    fn clone(&self) -> Tokens {
        Tokens {
            keys: ArcSwap::new(self.snapshot()),
            rules: self.rules.clone(),
        }
    }
}

impl Tokens {
    pub fn new(keys: KeySet, rules: TokenRules) -> Tokens {
        Tokens {
            keys: ArcSwap::from_pointee(Signing::new(keys)),
            rules,
        }
    }

    pub fn rules(&self) -> &TokenRules {
        &self.rules
    }

    /// The key set in use now.
    pub fn keys(&self) -> Arc<KeySet> {
        self.snapshot().keys.clone()
    }

    /// Swaps in a new key set (after a rotation): tokens are signed with its signing key and
    /// verified against its keys from now on.
    pub fn replace_keys(&self, keys: KeySet) {
        self.keys.store(Arc::new(Signing::new(keys)));
    }

    /// Whether the token is well-formed but names a `kid` this key set doesn't hold: the cue
    /// for a verifier that learns keys from a JWKS to fetch it again. Never for a set that
    /// ignores the `kid` ([`KeySet::ignores_kid`]). Checks no signature.
    pub fn names_unknown_key(&self, token: &str) -> bool {
        match wire::parse(token, self.rules.max_token_bytes) {
            Ok(compact) => {
                compact.kid.is_some() && self.keys().find(compact.kid.as_deref()).is_none()
            }
            Err(_) => false,
        }
    }

    fn snapshot(&self) -> Arc<Signing> {
        self.keys.load_full()
    }

    /// `token_type, exp, iat, jti`: the claims every new token starts with, in simplejwt's order.
    fn fresh(&self, kind: TokenKind, now: i64) -> Claims {
        let mut claims = Claims::new();
        if let Some(type_claim) = &self.rules.token_type_claim {
            claims.insert(type_claim, kind.as_str());
        }
        claims.insert("exp", now.saturating_add(secs(self.rules.lifetime(kind))));
        claims.insert("iat", now);
        if let Some(jti_claim) = &self.rules.jti_claim {
            claims.insert(jti_claim, new_jti());
        }
        claims
    }

    /// `RefreshToken.for_user`: a new refresh token for a user id.
    pub fn refresh_for_user(&self, user_id: &str, now: i64) -> Claims {
        let mut claims = self.fresh(TokenKind::Refresh, now);
        claims.insert(&self.rules.user_id_claim, user_id);
        claims
    }

    /// `SlidingToken.for_user`: `token_type, exp, iat, jti, refresh_exp, user_id`.
    pub fn sliding_for_user(&self, user_id: &str, now: i64) -> Claims {
        let mut claims = self.fresh(TokenKind::Sliding, now);
        let refresh_exp = now.saturating_add(secs(self.rules.sliding_token_refresh_lifetime));
        claims.insert(&self.rules.sliding_token_refresh_exp_claim, refresh_exp);
        claims.insert(&self.rules.user_id_claim, user_id);
        claims
    }

    /// `RefreshToken.access_token`: a new access token carrying every claim of the refresh
    /// token except its type, times and id.
    pub fn access_from_refresh(&self, refresh: &Claims, now: i64) -> Claims {
        let mut access = self.fresh(TokenKind::Access, now);
        for (name, value) in refresh.as_map() {
            if self.is_own_claim(name) {
                continue;
            }
            access.insert(name, value.clone());
        }
        access
    }

    /// Rotation: the same payload with a new id, a new `exp` and `iat` (claim order kept).
    pub fn rotate_refresh(&self, refresh: &Claims, now: i64) -> Claims {
        let exp = now.saturating_add(secs(self.rules.refresh_token_lifetime));
        self.successor_of(refresh, &new_jti(), now, exp)
    }

    /// The successor a rotation of `refresh` made, from what the store kept of it: the same
    /// payload with that successor's id, `iat` and `exp`, claim for claim (and in order) the
    /// claims [`rotate_refresh`](Self::rotate_refresh) gave it. Signed again it is the same
    /// token with a deterministic algorithm (HS*, RS*, EdDSA) and the same key; ES* and PS*
    /// sign with fresh randomness, so only the signature differs.
    pub fn successor_of(&self, refresh: &Claims, jti: &str, iat: i64, exp: i64) -> Claims {
        let mut successor = refresh.clone();
        if let Some(jti_claim) = &self.rules.jti_claim {
            successor.insert(jti_claim, jti);
        }
        successor.insert("exp", exp);
        successor.insert("iat", iat);
        successor
    }

    /// Sliding refresh: new `exp` and `iat` only (id and `refresh_exp` unchanged).
    pub fn slide(&self, sliding: &Claims, now: i64) -> Claims {
        let mut slid = sliding.clone();
        slid.insert(
            "exp",
            now.saturating_add(secs(self.rules.sliding_token_lifetime)),
        );
        slid.insert("iat", now);
        slid
    }

    fn is_own_claim(&self, name: &str) -> bool {
        name == "exp"
            || name == "iat"
            || self.rules.token_type_claim.as_deref() == Some(name)
            || self.rules.jti_claim.as_deref() == Some(name)
    }

    /// Signs claims into a compact JWS; `aud` and `iss` are set here when configured, as
    /// simplejwt's backend does at encode time.
    pub fn encode(&self, claims: &Claims) -> Result<String, KeyError> {
        let mut payload = claims.clone();
        if let Some(aud) = &self.rules.audience {
            payload.insert("aud", aud.as_str());
        }
        if let Some(iss) = &self.rules.issuer {
            payload.insert("iss", iss.as_str());
        }
        let body = serde_json::to_vec(payload.as_map()).map_err(|e| KeyError(e.to_string()))?;
        let signing = self.snapshot();
        let mut token =
            String::with_capacity(signing.header_segment.len() + body.len() * 4 / 3 + 90);
        token.push_str(&signing.header_segment);
        token.push('.');
        token.push_str(&encode_segment(&body));
        let signature = signing.keys.signing().sign(token.as_bytes())?;
        token.push('.');
        token.push_str(&signature);
        Ok(token)
    }

    /// What PyJWT's `decode` checks, in its order: structure, key and algorithm, signature,
    /// `iat`, `nbf`, `exp`, `iss`, `aud`, `sub`, `jti`. Stricter where PyJWT is lax: padding,
    /// duplicate members, string times and `crit` are refused.
    pub fn decode(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        self.examine(token, now).map_err(TokenError::from)
    }

    /// [`decode`](Self::decode), saying exactly which of its checks refused the token.
    pub fn examine(&self, token: &str, now: i64) -> Result<Claims, Refusal> {
        let signing = self.keys.load();
        if let Some(claims) = signing.verified.get(token) {
            self.check_registered(&claims, now)?;
            return Ok(claims);
        }
        let compact = wire::parse(token, self.rules.max_token_bytes)?;
        let key = signing
            .keys
            .find(compact.kid.as_deref())
            .ok_or(Refusal::UnknownKey)?;
        if compact.alg != key.alg().as_str() {
            return Err(Refusal::WrongAlgorithm);
        }
        if !key.verify(compact.signature, compact.signing_input.as_bytes()) {
            return Err(Refusal::BadSignature);
        }
        let claims = Claims::from_map(compact.payload);
        self.check_registered(&claims, now)?;
        signing
            .verified
            .insert(Arc::from(token), claims.clone(), None);
        Ok(claims)
    }

    /// A token's header and payload as they are written, neither verified nor checked: each
    /// `None` unless it is a base64url JSON object. For showing a token to its holder, never
    /// for trusting it.
    pub fn unverified_parts(token: &str) -> Unverified {
        let mut segments = token.split('.');
        let mut next = || segments.next().and_then(|s| wire::decode_object(s).ok());
        let header = next();
        let payload = next();
        Unverified { header, payload }
    }

    fn check_registered(&self, claims: &Claims, now: i64) -> Result<(), Refusal> {
        let leeway = secs(self.rules.leeway);
        for name in ["iat", "nbf"] {
            if let Some(t) = claims.seconds(name)
                && t.map_err(|_| Refusal::BadClaim(name))? > now.saturating_add(leeway)
            {
                return Err(Refusal::NotYetValid(name));
            }
        }
        // RFC 7519 §4.1.4: the token is valid only *before* exp; exp == now is expired.
        if let Some(exp) = claims.seconds("exp") {
            let exp = exp.map_err(|_| Refusal::BadClaim("exp"))?;
            if exp <= now.saturating_sub(leeway) {
                return Err(TokenError::Expired.into());
            }
            // simplejwt can't represent it (a 500 there); no token doorman issues lives so long.
            if exp > LAST_TIME {
                return Err(Refusal::BadClaim("exp"));
            }
        }
        if let Some(issuer) = &self.rules.issuer
            && claims.str("iss") != Some(issuer.as_str())
        {
            return Err(Refusal::BadClaim("iss"));
        }
        if let Some(audience) = &self.rules.audience {
            let matches = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => {
                    auds.iter().all(Value::is_string)
                        && auds.iter().any(|a| a.as_str() == Some(audience))
                }
                _ => false,
            };
            if !matches {
                return Err(Refusal::BadClaim("aud"));
            }
        }
        for name in ["sub", "jti"] {
            if claims.get(name).is_some_and(|v| !v.is_string()) {
                return Err(Refusal::BadClaim(name));
            }
        }
        Ok(())
    }

    /// simplejwt's `Token.verify()`: an `exp` is required, then an id, then the right type
    /// (`expected = None` is the untyped token of the verify endpoint).
    pub fn check(&self, claims: &Claims, expected: Option<TokenKind>) -> Result<(), TokenError> {
        if !claims.contains("exp") {
            return Err(TokenError::MissingClaim("exp".to_owned()));
        }
        if let Some(jti_claim) = &self.rules.jti_claim
            && !claims.contains(jti_claim)
        {
            return Err(TokenError::NoId);
        }
        if let (Some(type_claim), Some(kind)) = (&self.rules.token_type_claim, expected) {
            match claims.get(type_claim) {
                None => return Err(TokenError::NoType),
                Some(Value::String(t)) if t == kind.as_str() => {}
                Some(_) => return Err(TokenError::WrongType),
            }
        }
        Ok(())
    }

    /// `decode` then `check`: everything a token of one kind must pass, except the blacklist,
    /// which lives in storage and is the caller's to consult between the two.
    pub fn verify(&self, token: &str, kind: TokenKind, now: i64) -> Result<Claims, TokenError> {
        let claims = self.decode(token, now)?;
        self.check(&claims, Some(kind))?;
        Ok(claims)
    }

    /// The sliding token's own expiry (`refresh_exp`), checked on sliding refresh.
    pub fn check_refresh_exp(&self, claims: &Claims, now: i64) -> Result<(), TokenError> {
        let name = &self.rules.sliding_token_refresh_exp_claim;
        match claims.seconds(name) {
            None => Err(TokenError::MissingClaim(name.clone())),
            Some(Err(())) => Err(TokenError::Invalid),
            Some(Ok(t)) if t <= now.saturating_sub(secs(self.rules.leeway)) => {
                Err(TokenError::ClaimExpired(name.clone()))
            }
            Some(Ok(t)) if t > LAST_TIME => Err(TokenError::Invalid),
            Some(Ok(_)) => Ok(()),
        }
    }

    /// The token's id, if it has a string one.
    pub fn jti<'c>(&self, claims: &'c Claims) -> Option<&'c str> {
        self.rules
            .jti_claim
            .as_deref()
            .and_then(|name| claims.str(name))
    }

    /// `exp` in whole seconds, if it is a time.
    pub fn expires_at(&self, claims: &Claims) -> Option<i64> {
        claims.seconds("exp").and_then(Result::ok)
    }
}

/// What [`Tokens::unverified_parts`] read of a token: its header and payload when each is a
/// base64url JSON object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unverified {
    pub header: Option<Map<String, Value>>,
    pub payload: Option<Map<String, Value>>,
}

/// 9999-12-31T23:59:59Z, the last second Python's `datetime` (and so simplejwt) can hold.
const LAST_TIME: i64 = 253_402_300_799;

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// `uuid4().hex`: 32 lowercase hex digits.
fn new_jti() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Algorithm, Key};
    use serde_json::json;

    const SECRET: &[u8] = b"doorman-test-only-hs256-secret-0123456789abcdef";
    const NOW: i64 = 1_800_000_000;

    fn tokens() -> Tokens {
        crate::install_crypto_provider();
        Tokens::new(
            KeySet::new(Key::hmac(Algorithm::HS256, SECRET).unwrap()),
            TokenRules::default(),
        )
    }

    fn sign_raw(header: &str, payload: &str) -> String {
        let key = Key::hmac(Algorithm::HS256, SECRET).unwrap();
        let input = format!(
            "{}.{}",
            encode_segment(header.as_bytes()),
            encode_segment(payload.as_bytes())
        );
        let sig = key.sign(input.as_bytes()).unwrap();
        format!("{input}.{sig}")
    }

    fn payload_of(token: &str) -> String {
        use base64::Engine;
        let seg = token.split('.').nth(1).unwrap();
        String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(seg)
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn hs256_header_is_exactly_simplejwts() {
        let t = tokens();
        let token = t.encode(&t.refresh_for_user("1", NOW)).unwrap();
        assert!(
            token.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."),
            "{token}"
        );
    }

    #[test]
    fn claim_layout_and_order_match_simplejwt() {
        let t = tokens();
        let refresh = t.refresh_for_user("1", NOW);
        let access = t.access_from_refresh(&refresh, NOW);
        let keys: Vec<_> = refresh.as_map().keys().cloned().collect();
        assert_eq!(keys, ["token_type", "exp", "iat", "jti", "user_id"]);
        let keys: Vec<_> = access.as_map().keys().cloned().collect();
        assert_eq!(keys, ["token_type", "exp", "iat", "jti", "user_id"]);
        assert_eq!(access.get("exp"), Some(&json!(NOW + 300)));
        assert_eq!(refresh.get("exp"), Some(&json!(NOW + 86400)));
        assert_ne!(access.get("jti"), refresh.get("jti"));
        let jti = refresh.str("jti").unwrap();
        assert!(
            jti.len() == 32
                && jti
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let payload = payload_of(&t.encode(&refresh).unwrap());
        assert!(
            payload.starts_with(r#"{"token_type":"refresh","exp":"#),
            "{payload}"
        );
        assert!(payload.ends_with(r#","user_id":"1"}"#), "{payload}");
    }

    #[test]
    fn access_copies_custom_claims_and_aud_iss_go_last() {
        let rules = TokenRules {
            audience: Some("api".into()),
            issuer: Some("doorman".into()),
            ..TokenRules::default()
        };
        let t = Tokens::new(KeySet::clone(&tokens().keys()), rules);
        let mut refresh = t.refresh_for_user("7", NOW);
        refresh.insert("scope", "read");
        let access = t.access_from_refresh(&refresh, NOW);
        let payload = payload_of(&t.encode(&access).unwrap());
        assert!(
            payload.ends_with(r#""user_id":"7","scope":"read","aud":"api","iss":"doorman"}"#),
            "{payload}"
        );
    }

    /// What the store keeps of a rotation's successor (its id, `iat` and `exp`) rebuilds it
    /// from the rotated-out token, claim for claim and byte for byte under HS256, with the
    /// custom claims and `aud`/`iss` where they were.
    #[test]
    fn a_successor_rebuilt_from_its_id_and_times_is_the_rotated_token() {
        let rules = TokenRules {
            audience: Some("api".into()),
            issuer: Some("doorman".into()),
            ..TokenRules::default()
        };
        let t = Tokens::new(KeySet::clone(&tokens().keys()), rules);
        let mut refresh = t.refresh_for_user("7", NOW);
        refresh.insert("scope", "read");
        let old = t.decode(&t.encode(&refresh).unwrap(), NOW).unwrap();
        let rotated = t.rotate_refresh(&old, NOW + 60);
        let jti = rotated.str("jti").unwrap().to_owned();
        assert_ne!(Some(jti.as_str()), old.str("jti"));
        let rebuilt = t.successor_of(&old, &jti, NOW + 60, NOW + 60 + 86400);
        assert_eq!(rebuilt, rotated);
        assert_eq!(t.encode(&rebuilt).unwrap(), t.encode(&rotated).unwrap());
        // Another id or time is another token.
        let other = t.successor_of(&old, &jti, NOW + 61, NOW + 60 + 86400);
        assert_ne!(t.encode(&other).unwrap(), t.encode(&rotated).unwrap());
    }

    #[test]
    fn round_trip_and_type_checks() {
        let t = tokens();
        let refresh = t.encode(&t.refresh_for_user("1", NOW)).unwrap();
        assert!(t.verify(&refresh, TokenKind::Refresh, NOW).is_ok());
        assert_eq!(
            t.verify(&refresh, TokenKind::Access, NOW).err(),
            Some(TokenError::WrongType)
        );
    }

    #[test]
    fn expiry_is_exclusive_and_future_times_are_refused() {
        let t = tokens();
        let h = r#"{"alg":"HS256","typ":"JWT"}"#;
        let exp_now = sign_raw(h, &format!(r#"{{"exp":{NOW},"jti":"a"}}"#));
        assert_eq!(t.decode(&exp_now, NOW).err(), Some(TokenError::Expired));
        let exp_next = sign_raw(h, &format!(r#"{{"exp":{},"jti":"a"}}"#, NOW + 1));
        assert!(t.decode(&exp_next, NOW).is_ok());
        // Past the year 9999 is not a time simplejwt can hold: invalid, not a crash.
        let last = sign_raw(h, r#"{"exp":253402300799,"jti":"a"}"#);
        assert!(t.decode(&last, NOW).is_ok());
        let beyond = sign_raw(h, r#"{"exp":253402300800,"jti":"a"}"#);
        assert_eq!(t.decode(&beyond, NOW).err(), Some(TokenError::Invalid));
        for claim in ["nbf", "iat"] {
            let future = sign_raw(
                h,
                &format!(r#"{{"exp":{},"{claim}":{}}}"#, NOW + 100, NOW + 60),
            );
            assert_eq!(
                t.decode(&future, NOW).err(),
                Some(TokenError::Invalid),
                "{claim}"
            );
        }
        let string_exp = sign_raw(h, r#"{"exp":"9999999999"}"#);
        assert_eq!(t.decode(&string_exp, NOW).err(), Some(TokenError::Invalid));
        let float_exp = sign_raw(h, &format!(r#"{{"exp":{}.5}}"#, NOW + 10));
        assert!(t.decode(&float_exp, NOW).is_ok());
    }

    #[test]
    fn leeway_applies_to_all_time_claims() {
        let rules = TokenRules {
            leeway: std::time::Duration::from_secs(30),
            ..TokenRules::default()
        };
        let t = Tokens::new(KeySet::clone(&tokens().keys()), rules);
        let h = r#"{"alg":"HS256","typ":"JWT"}"#;
        assert!(
            t.decode(&sign_raw(h, &format!(r#"{{"exp":{}}}"#, NOW - 29)), NOW)
                .is_ok()
        );
        assert!(
            t.decode(&sign_raw(h, &format!(r#"{{"exp":{}}}"#, NOW - 30)), NOW)
                .is_err()
        );
        assert!(
            t.decode(&sign_raw(h, &format!(r#"{{"nbf":{}}}"#, NOW + 30)), NOW)
                .is_ok()
        );
    }

    #[test]
    fn algorithm_comes_from_the_key() {
        let t = tokens();
        let good = t.encode(&t.refresh_for_user("1", NOW)).unwrap();
        let payload = good.split('.').nth(1).unwrap();
        for header in [
            r#"{"alg":"HS512","typ":"JWT"}"#,
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"EdDSA","typ":"JWT"}"#,
            r#"{"alg":"hs256"}"#,
        ] {
            let input = format!("{}.{payload}", encode_segment(header.as_bytes()));
            let sig = Key::hmac(Algorithm::HS256, SECRET)
                .unwrap()
                .sign(input.as_bytes())
                .unwrap();
            for token in [format!("{input}.{sig}"), format!("{input}.")] {
                assert_eq!(
                    t.decode(&token, NOW).err(),
                    Some(TokenError::Invalid),
                    "{header}"
                );
            }
        }
    }

    /// An HS256 compact JWS over exactly this header and payload text, with any secret (an
    /// empty or short one too, which `Key::hmac` refuses).
    fn sign_hmac(secret: &[u8], header: &str, payload: &str) -> String {
        use aws_lc_rs::hmac;
        let input = format!(
            "{}.{}",
            encode_segment(header.as_bytes()),
            encode_segment(payload.as_bytes())
        );
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
        format!("{input}.{}", encode_segment(tag.as_ref()))
    }

    /// A compact JWS over exactly this header and payload text, signed with `key`.
    fn sign_with(key: &Key, header: &str, payload: &str) -> String {
        let input = format!(
            "{}.{}",
            encode_segment(header.as_bytes()),
            encode_segment(payload.as_bytes())
        );
        let sig = key.sign(input.as_bytes()).unwrap();
        format!("{input}.{sig}")
    }

    /// One static HMAC secret (simplejwt's HS256 mode): whatever string `kid` the header
    /// names is ignored, as PyJWT ignores it, path-like and long ones included; it never finds
    /// an "unknown key". Everything else is as strict as without a `kid`: the algorithm comes
    /// from the key, another secret's signature fails, a non-string `kid` and a header member
    /// that brings a key or a URL are refused.
    #[test]
    fn a_kid_is_ignored_with_one_static_hmac_key() {
        let t = tokens();
        assert!(t.keys().ignores_kid());
        let payload = format!(r#"{{"exp":{},"jti":"a"}}"#, NOW + 10);
        let long = "k".repeat(4096);
        for kid in [
            "x",
            "other",
            "../../../../dev/null",
            "' OR '1'='1",
            "",
            &long,
        ] {
            let header = format!(r#"{{"alg":"HS256","kid":"{kid}","typ":"JWT"}}"#);
            let token = sign_raw(&header, &payload);
            assert!(t.decode(&token, NOW).is_ok(), "kid {kid:.20}");
            assert!(!t.names_unknown_key(&token), "kid {kid:.20}");
            // Another secret, and the empty one a key read from a `kid` naming /dev/null would
            // be: both fail, the kid loads nothing.
            for other in [&b"another test-only secret, 32+ bytes"[..], b""] {
                assert_eq!(
                    t.decode(&sign_hmac(other, &header, &payload), NOW).err(),
                    Some(TokenError::Invalid),
                    "kid {kid:.20}, secret {other:?}"
                );
            }
        }
        for header in [
            r#"{"alg":"HS512","kid":"x","typ":"JWT"}"#,
            r#"{"alg":"none","kid":"x","typ":"JWT"}"#,
            r#"{"alg":"HS256","kid":7,"typ":"JWT"}"#,
            r#"{"alg":"HS256","kid":null,"typ":"JWT"}"#,
            r#"{"alg":"HS256","kid":"x","jku":"http://127.0.0.1:9/"}"#,
            r#"{"alg":"HS256","kid":"x","jwk":{"kty":"oct","k":"AAAA"}}"#,
            r#"{"alg":"HS256","kid":"x","x5u":"http://127.0.0.1:9/"}"#,
            r#"{"alg":"HS256","kid":"x","x5c":["MIIB"]}"#,
            r#"{"alg":"HS256","kid":"x","crit":["exp"]}"#,
        ] {
            assert_eq!(
                t.decode(&sign_raw(header, &payload), NOW).err(),
                Some(TokenError::Invalid),
                "{header}"
            );
        }
    }

    /// Wherever the `kid` chooses between keys, or names a key that has an id of its own, an
    /// id the set doesn't hold is refused, even when the signature is the right key's: two
    /// HMAC secrets, a key pair, a managed set (key pairs under stored ids, one or several),
    /// an HMAC secret given an id, and an HMAC secret beside a key pair.
    #[test]
    fn unknown_kid_is_refused_where_a_key_is_chosen() {
        crate::install_crypto_provider();
        let payload = format!(r#"{{"exp":{},"jti":"a"}}"#, NOW + 10);
        let secret = || Key::hmac(Algorithm::HS256, SECRET).unwrap();
        let second = Key::hmac(Algorithm::HS256, b"another test-only secret, 32+ bytes")
            .unwrap()
            .with_kid(Some("second".into()));
        let pair = || Key::generate(Algorithm::EdDSA).unwrap().0;
        let managed_current = pair().with_kid(Some("managed-current".into()));
        let managed_next = Key::generate(Algorithm::ES256)
            .unwrap()
            .0
            .with_kid(Some("managed-next".into()));
        let sets = [
            (
                "two HMAC secrets",
                KeySet::new(secret())
                    .with_verify_only(second.clone())
                    .unwrap(),
            ),
            ("a key pair", KeySet::new(pair())),
            ("a managed set of one", KeySet::new(managed_current.clone())),
            (
                "a managed set",
                KeySet::new(managed_current)
                    .with_verify_only(managed_next)
                    .unwrap(),
            ),
            (
                "an HMAC secret with an id",
                KeySet::new(secret().with_kid(Some("named".into()))),
            ),
            (
                "an HMAC secret beside a key pair",
                KeySet::new(secret())
                    .allowing_mixed_families()
                    .with_verify_only(pair())
                    .unwrap(),
            ),
        ];
        for (what, set) in sets {
            assert!(!set.ignores_kid(), "{what}");
            let signing = set.signing().clone();
            let alg = signing.alg();
            let t = Tokens::new(set, TokenRules::default());
            // Control: the signing key's own token (its kid, or none) verifies.
            let own = t.encode(&t.refresh_for_user("1", NOW)).unwrap();
            assert!(t.verify(&own, TokenKind::Refresh, NOW).is_ok(), "{what}");
            for kid in ["x", "../../../../dev/null", "second-but-not"] {
                let token = sign_with(
                    &signing,
                    &format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"JWT"}}"#),
                    &payload,
                );
                assert_eq!(
                    t.decode(&token, NOW).err(),
                    Some(TokenError::Invalid),
                    "{what}: kid {kid}"
                );
                assert!(t.names_unknown_key(&token), "{what}: kid {kid}");
            }
        }
        // Two HMAC secrets: each verifies under its own id (none for the first), and only so.
        let t = Tokens::new(
            KeySet::new(secret())
                .with_verify_only(second.clone())
                .unwrap(),
            TokenRules::default(),
        );
        let header = r#"{"alg":"HS256","kid":"second","typ":"JWT"}"#;
        assert!(t.decode(&sign_with(&second, header, &payload), NOW).is_ok());
        assert!(t.decode(&sign_raw(header, &payload), NOW).is_err());
        assert!(
            t.decode(&sign_raw(r#"{"alg":"HS256","typ":"JWT"}"#, &payload), NOW)
                .is_ok()
        );
    }

    /// A token whose ignored `kid` was verified, and so cached, under one static HMAC secret
    /// is checked afresh once the keys change to a set that chooses by `kid`: the cache
    /// belongs to the key set that verified the token.
    #[test]
    fn a_cached_token_with_an_ignored_kid_is_refused_once_the_kid_chooses() {
        let t = tokens();
        let token = sign_raw(
            r#"{"alg":"HS256","kid":"x","typ":"JWT"}"#,
            &format!(r#"{{"exp":{},"jti":"a"}}"#, NOW + 10),
        );
        assert!(t.decode(&token, NOW).is_ok());
        assert!(t.snapshot().verified.get(token.as_str()).is_some());
        let second = Key::hmac(Algorithm::HS256, b"another test-only secret, 32+ bytes")
            .unwrap()
            .with_kid(Some("second".into()));
        t.replace_keys(
            KeySet::new(Key::hmac(Algorithm::HS256, SECRET).unwrap())
                .with_verify_only(second)
                .unwrap(),
        );
        assert_eq!(t.decode(&token, NOW).err(), Some(TokenError::Invalid));
    }

    #[test]
    fn simplejwt_verify_order() {
        let t = tokens();
        let h = r#"{"alg":"HS256","typ":"JWT"}"#;
        let c = |p: &str| t.decode(&sign_raw(h, p), NOW).unwrap();
        let later = NOW + 100;
        assert_eq!(
            t.check(&c(r#"{}"#), Some(TokenKind::Access)).err(),
            Some(TokenError::MissingClaim("exp".into()))
        );
        assert_eq!(
            t.check(
                &c(&format!(r#"{{"exp":{later}}}"#)),
                Some(TokenKind::Access)
            )
            .err(),
            Some(TokenError::NoId)
        );
        assert_eq!(
            t.check(
                &c(&format!(r#"{{"exp":{later},"jti":"x"}}"#)),
                Some(TokenKind::Access)
            )
            .err(),
            Some(TokenError::NoType)
        );
        assert_eq!(
            t.check(
                &c(&format!(r#"{{"exp":{later},"jti":"x","token_type":1}}"#)),
                Some(TokenKind::Access)
            )
            .err(),
            Some(TokenError::WrongType)
        );
        assert!(
            t.check(&c(&format!(r#"{{"exp":{later},"jti":"x"}}"#)), None)
                .is_ok()
        );
        assert_eq!(
            t.decode(&sign_raw(h, &format!(r#"{{"exp":{later},"jti":5}}"#)), NOW)
                .err(),
            Some(TokenError::Invalid)
        );
        assert_eq!(
            t.decode(&sign_raw(h, &format!(r#"{{"exp":{later},"sub":5}}"#)), NOW)
                .err(),
            Some(TokenError::Invalid)
        );
    }

    #[test]
    fn audience_and_issuer_ignored_unless_configured() {
        let t = tokens();
        let h = r#"{"alg":"HS256","typ":"JWT"}"#;
        let token = sign_raw(h, &format!(r#"{{"exp":{},"aud":"x","iss":7}}"#, NOW + 5));
        assert!(t.decode(&token, NOW).is_ok());
        let rules = TokenRules {
            audience: Some("api".into()),
            issuer: Some("me".into()),
            ..TokenRules::default()
        };
        let strict = Tokens::new(KeySet::clone(&t.keys()), rules);
        assert_eq!(strict.decode(&token, NOW).err(), Some(TokenError::Invalid));
        let ok = sign_raw(
            h,
            &format!(r#"{{"exp":{},"aud":["x","api"],"iss":"me"}}"#, NOW + 5),
        );
        assert!(strict.decode(&ok, NOW).is_ok());
        let bad_list = sign_raw(
            h,
            &format!(r#"{{"exp":{},"aud":["api",3],"iss":"me"}}"#, NOW + 5),
        );
        assert_eq!(
            strict.decode(&bad_list, NOW).err(),
            Some(TokenError::Invalid)
        );
    }

    #[test]
    fn sliding_tokens() {
        let t = tokens();
        let s = t.sliding_for_user("3", NOW);
        let keys: Vec<_> = s.as_map().keys().cloned().collect();
        assert_eq!(
            keys,
            ["token_type", "exp", "iat", "jti", "refresh_exp", "user_id"]
        );
        assert!(t.check_refresh_exp(&s, NOW + 86399).is_ok());
        assert_eq!(
            t.check_refresh_exp(&s, NOW + 86400).err(),
            Some(TokenError::ClaimExpired("refresh_exp".into()))
        );
        let slid = t.slide(&s, NOW + 100);
        assert_eq!(slid.get("jti"), s.get("jti"));
        assert_eq!(slid.get("exp"), Some(&json!(NOW + 400)));
        assert_eq!(
            TokenError::ClaimExpired("refresh_exp".into()).to_string(),
            "Token 'refresh_exp' claim has expired"
        );
    }

    #[test]
    fn eddsa_tokens_carry_a_kid_and_verify() {
        crate::install_crypto_provider();
        let (key, _) = Key::generate_ed25519().unwrap();
        let kid = key.kid().unwrap().to_owned();
        let t = Tokens::new(KeySet::new(key), TokenRules::default());
        let token = t.encode(&t.refresh_for_user("1", NOW)).unwrap();
        let header = token.split('.').next().unwrap();
        use base64::Engine;
        let header = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            header,
            format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"JWT"}}"#)
        );
        assert!(t.verify(&token, TokenKind::Refresh, NOW).is_ok());
        // An HS256 token signed with anything can't match an EdDSA key.
        let forged = sign_raw(
            &format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#),
            &format!(r#"{{"exp":{}}}"#, NOW + 9),
        );
        assert_eq!(t.decode(&forged, NOW).err(), Some(TokenError::Invalid));
    }

    /// The verified-token cache, for an HMAC and a key-pair set alike: a token verified once
    /// is found again, but expiry is still checked on every use, a changed token is never a
    /// hit, and a key rotation starts the cache afresh (a token of a dropped key is refused at
    /// once).
    #[test]
    fn verified_tokens_are_cached_without_skipping_expiry_or_key_changes() {
        crate::install_crypto_provider();
        let keys = |secret: &[u8]| {
            [
                Key::generate_ed25519().unwrap().0,
                Key::hmac(Algorithm::HS256, secret).unwrap(),
            ]
        };
        let others = keys(b"another test-only secret, 32+ bytes long");
        for (key, other) in keys(SECRET).into_iter().zip(others) {
            let t = Tokens::new(KeySet::new(key), TokenRules::default());
            let token = t
                .encode(&t.access_from_refresh(&t.refresh_for_user("1", NOW), NOW))
                .unwrap();
            let exp = t.expires_at(&t.decode(&token, NOW).unwrap()).unwrap();
            let cached = |t: &Tokens, token: &str| t.snapshot().verified.get(token).is_some();
            assert!(cached(&t, &token));
            assert!(t.verify(&token, TokenKind::Access, NOW + 1).is_ok());
            assert_eq!(
                t.verify(&token, TokenKind::Refresh, NOW).err(),
                Some(TokenError::WrongType)
            );
            assert_eq!(t.decode(&token, exp).err(), Some(TokenError::Expired));
            // A caller changing its claims (a sliding refresh) leaves the cached ones alone.
            let mut changed = t.decode(&token, NOW).unwrap();
            changed.insert("exp", exp + 1000);
            assert_eq!(t.decode(&token, exp).err(), Some(TokenError::Expired));
            assert_eq!(t.expires_at(&t.decode(&token, NOW).unwrap()), Some(exp));
            // One flipped signature character: not the cached string, so checked, and refused.
            let mut tampered = token.clone().into_bytes();
            let last = tampered.len() - 2;
            tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(tampered).unwrap();
            assert_eq!(t.decode(&tampered, NOW).err(), Some(TokenError::Invalid));
            assert!(!cached(&t, &tampered));
            // Rotated to a new key alone: the old key's cached token is refused.
            t.replace_keys(KeySet::new(other));
            assert!(!cached(&t, &token));
            assert_eq!(t.decode(&token, NOW).err(), Some(TokenError::Invalid));
        }
    }

    /// Every asymmetric algorithm: tokens carry the key's kid and verify; the same token with
    /// another algorithm's name in the header, or another key's kid, does not.
    #[test]
    fn every_asymmetric_algorithm_issues_and_verifies_by_kid() {
        crate::install_crypto_provider();
        for alg in crate::Algorithm::ALL.into_iter().filter(|a| !a.is_hmac()) {
            let (key, _) = Key::generate(alg).unwrap();
            let kid = key.kid().unwrap().to_owned();
            let t = Tokens::new(KeySet::new(key), TokenRules::default());
            let token = t.encode(&t.refresh_for_user("1", NOW)).unwrap();
            assert!(t.verify(&token, TokenKind::Refresh, NOW).is_ok(), "{alg}");
            let (_, payload_and_sig) = token.split_once('.').unwrap();
            for header in [
                format!(r#"{{"alg":"HS256","kid":"{kid}","typ":"JWT"}}"#),
                format!(r#"{{"alg":"{alg}","kid":"someone-else","typ":"JWT"}}"#),
                format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#),
            ] {
                use base64::Engine;
                let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&header);
                let tampered = format!("{h}.{payload_and_sig}");
                assert_eq!(
                    t.decode(&tampered, NOW).err(),
                    Some(TokenError::Invalid),
                    "{header}"
                );
            }
        }
    }

    /// ECDSA signatures with r or s zero, or not below the group order, never verify
    /// (the "psychic signatures" class of bugs, CVE-2022-21449).
    #[test]
    fn ecdsa_signatures_out_of_range_are_refused() {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        crate::install_crypto_provider();
        // The P-256 group order n.
        let n = hex_bytes("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
        let (key, _) = Key::generate(crate::Algorithm::ES256).unwrap();
        let kid = key.kid().unwrap().to_owned();
        let t = Tokens::new(KeySet::new(key), TokenRules::default());
        let token = t.encode(&t.refresh_for_user("1", NOW)).unwrap();
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let good = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let (r, s) = good.split_at(32);
        let zero = [0u8; 32];
        let mut one = [0u8; 32];
        one[31] = 1;
        for (name, r, s) in [
            ("r = s = 0", &zero[..], &zero[..]),
            ("r = 0", &zero[..], s),
            ("s = 0", r, &zero[..]),
            ("r = n", &n[..], s),
            ("s = n", r, &n[..]),
            ("r = s = 1", &one[..], &one[..]),
        ] {
            let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([r, s].concat()));
            assert_eq!(
                t.decode(&forged, NOW).err(),
                Some(TokenError::Invalid),
                "{name}"
            );
        }
        assert!(t.decode(&token, NOW).is_ok(), "{kid}");
    }

    fn hex_bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn examine_says_which_check_refused_and_decode_keeps_simplejwts_message() {
        let t = tokens();
        let h = r#"{"alg":"HS256","typ":"JWT"}"#;
        let good = t.encode(&t.refresh_for_user("1", NOW)).unwrap();
        let mut tampered = good.clone();
        tampered.pop();
        tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
        let cases = [
            ("x".repeat(9000), Refusal::TooLong),
            ("a.b".to_owned(), Refusal::Malformed),
            (
                sign_raw(r#"{"alg":"HS256","x5u":"x"}"#, "{}"),
                Refusal::ForbiddenHeader("x5u"),
            ),
            (sign_raw(r#"{"alg":"none"}"#, "{}"), Refusal::WrongAlgorithm),
            (tampered, Refusal::BadSignature),
            (
                sign_raw(h, &format!(r#"{{"nbf":{}}}"#, NOW + 3600)),
                Refusal::NotYetValid("nbf"),
            ),
            (
                sign_raw(h, &format!(r#"{{"exp":{}}}"#, NOW - 1)),
                Refusal::Token(TokenError::Expired),
            ),
            (sign_raw(h, r#"{"jti":7}"#), Refusal::BadClaim("jti")),
        ];
        for (token, refusal) in cases {
            assert_eq!(
                t.examine(&token, NOW).err(),
                Some(refusal.clone()),
                "{token}"
            );
            let expected = match refusal {
                Refusal::Token(e) => e,
                _ => TokenError::Invalid,
            };
            assert_eq!(t.decode(&token, NOW).err(), Some(expected));
        }
        let parts = Tokens::unverified_parts(&good);
        assert_eq!(parts.header.unwrap()["alg"], "HS256");
        assert_eq!(parts.payload.unwrap()["user_id"], "1");
        assert_eq!(Tokens::unverified_parts("garbage"), Unverified::default());
    }
}
