//! Signing and verifying keys. Each key is bound to one algorithm (RFC 8725 §3.1: the key, not
//! the token header, decides how a signature is checked) and, for key pairs, carries a `kid`
//! (the RFC 7638 thumbprint unless configured) and its public JWK for the JWKS.

use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    RSA_PKCS1_SHA256, RSA_PKCS1_SHA384, RSA_PKCS1_SHA512, RSA_PSS_SHA256, RSA_PSS_SHA384,
    RSA_PSS_SHA512, RsaEncoding, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::{Algorithm, Family, KeyError};

/// RSA keys shorter than this are refused (RFC 7518 §3.3, NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;

/// One key: its algorithm, its id, the verifying half and, when it can sign, the signing half.
#[derive(Clone)]
pub struct Key {
    alg: Algorithm,
    kid: Option<String>,
    /// The signing half; `None` for a verify-only key.
    signer: Option<Signer>,
    decoding: DecodingKey,
    /// The public JWK (no `kid`, `use` or `alg` yet); `None` for HMAC, which has no public half.
    public: Option<Jwk>,
}

/// The signing half. An HMAC secret signs through jsonwebtoken; a private key is parsed once,
/// as jsonwebtoken's aws-lc-rs signers parse the same bytes: they parse it again for every
/// signature, and for RSA (with its key checks) and Ed25519 that cost about as much as the
/// signature itself.
#[derive(Clone)]
enum Signer {
    Hmac(EncodingKey),
    Rsa(Arc<RsaKeyPair>, &'static dyn RsaEncoding),
    Ec(Arc<EcdsaKeyPair>),
    Ed(Arc<Ed25519KeyPair>),
}

impl Signer {
    fn new(alg: Algorithm, encoding: EncodingKey) -> Result<Signer, KeyError> {
        let der = encoding.as_bytes();
        let unusable =
            |e: &dyn std::fmt::Display| KeyError(format!("not a usable {alg} private key: {e}"));
        Ok(match alg.family() {
            Family::Hmac => Signer::Hmac(encoding),
            Family::Rsa => Signer::Rsa(
                Arc::new(RsaKeyPair::from_der(der).map_err(|e| unusable(&e))?),
                rsa_encoding(alg),
            ),
            Family::Ec => Signer::Ec(Arc::new(
                EcdsaKeyPair::from_pkcs8(ec_signing(alg), der).map_err(|e| unusable(&e))?,
            )),
            Family::Ed => Signer::Ed(Arc::new(
                Ed25519KeyPair::from_pkcs8(der).map_err(|e| unusable(&e))?,
            )),
        })
    }

    /// The base64url signature of `message`.
    fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<String, KeyError> {
        let failed = |e: &dyn std::fmt::Display| KeyError(format!("signing failed: {e}"));
        let signature = match self {
            Signer::Hmac(secret) => {
                return jsonwebtoken::crypto::sign(message, secret, alg.to_jwt())
                    .map_err(|e| failed(&e));
            }
            Signer::Rsa(pair, encoding) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(*encoding, &SystemRandom::new(), message, &mut signature)
                    .map_err(|e| failed(&e))?;
                signature
            }
            Signer::Ec(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map_err(|e| failed(&e))?
                .as_ref()
                .to_vec(),
            Signer::Ed(pair) => pair.sign(message).as_ref().to_vec(),
        };
        Ok(URL_SAFE_NO_PAD.encode(signature))
    }
}

fn rsa_encoding(alg: Algorithm) -> &'static dyn RsaEncoding {
    match alg {
        Algorithm::RS384 => &RSA_PKCS1_SHA384,
        Algorithm::RS512 => &RSA_PKCS1_SHA512,
        Algorithm::PS256 => &RSA_PSS_SHA256,
        Algorithm::PS384 => &RSA_PSS_SHA384,
        Algorithm::PS512 => &RSA_PSS_SHA512,
        _ => &RSA_PKCS1_SHA256,
    }
}

impl std::fmt::Debug for Key {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("can_sign", &self.signer.is_some())
            .finish()
    }
}

impl Key {
    /// An HMAC key from a shared secret (a Django `SECRET_KEY` works as is: its UTF-8 bytes).
    /// Refuses secrets shorter than the hash output (RFC 7518 §3.2).
    pub fn hmac(alg: Algorithm, secret: &[u8]) -> Result<Key, KeyError> {
        if !alg.is_hmac() {
            return Err(KeyError(format!("{alg} is not an HMAC algorithm")));
        }
        let min = alg.min_secret_bytes();
        if secret.len() < min {
            return Err(KeyError(format!(
                "an {alg} secret must be at least {min} bytes, this one has {}",
                secret.len()
            )));
        }
        Ok(Key {
            alg,
            kid: None,
            signer: Some(Signer::Hmac(EncodingKey::from_secret(secret))),
            decoding: DecodingKey::from_secret(secret),
            public: None,
        })
    }

    /// A signing key for `alg` from a private key PEM: PKCS#8 (`PRIVATE KEY`) for every
    /// family, or the older PKCS#1 `RSA PRIVATE KEY` and SEC1 `EC PRIVATE KEY`. The key must
    /// suit the algorithm (an RSA key for RS/PS, the algorithm's curve for ES, Ed25519 for
    /// EdDSA); RSA keys under 2048 bits are refused.
    pub fn from_private_pem(alg: Algorithm, pem: &str) -> Result<Key, KeyError> {
        let block = pem::parse(pem).map_err(|e| KeyError(format!("not a PEM key: {e}")))?;
        let encoding = match (alg.family(), block.tag()) {
            (Family::Hmac, _) => {
                return Err(KeyError(format!(
                    "{alg} takes a shared secret, not a PEM key"
                )));
            }
            (Family::Ed, "PRIVATE KEY") => {
                let pair = Ed25519KeyPair::from_pkcs8(block.contents())
                    .map_err(|e| KeyError(format!("not an Ed25519 PKCS#8 private key: {e}")))?;
                // jsonwebtoken's aws-lc signer takes a PKCS#8 v1 document.
                let v1 = pair
                    .to_pkcs8v1()
                    .map_err(|_| KeyError("could not serialize the Ed25519 key".into()))?;
                EncodingKey::from_ed_der(v1.as_ref())
            }
            (Family::Rsa, "PRIVATE KEY" | "RSA PRIVATE KEY") => {
                EncodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|e| KeyError(format!("not an RSA private key: {e}")))?
            }
            (Family::Ec, "PRIVATE KEY" | "EC PRIVATE KEY") => {
                // Through aws-lc-rs, which reads both forms and checks the curve.
                let pair = EcdsaKeyPair::from_private_key_der(ec_signing(alg), block.contents())
                    .or_else(|_| EcdsaKeyPair::from_pkcs8(ec_signing(alg), block.contents()))
                    .map_err(|e| {
                        KeyError(format!(
                            "not a private key on {alg}'s curve ({}): {e}",
                            curve_name(alg)
                        ))
                    })?;
                let pkcs8 = pair
                    .to_pkcs8v1()
                    .map_err(|_| KeyError("could not serialize the EC key".into()))?;
                EncodingKey::from_ec_der(pkcs8.as_ref())
            }
            (_, tag) => {
                return Err(KeyError(format!(
                    "{alg} needs a private key PEM (PRIVATE KEY), found a {tag} block"
                )));
            }
        };
        let public = Jwk::from_encoding_key(&encoding, alg.to_jwt()).map_err(|e| {
            if e.to_string().contains("TooSmall") {
                KeyError(format!("an RSA key must have at least {MIN_RSA_BITS} bits"))
            } else {
                KeyError(format!("not a usable {alg} private key: {e}"))
            }
        })?;
        let key = Key::from_public_jwk(alg, public, Some(encoding))?;
        // A key whose halves disagree would sign tokens nobody can verify: check once.
        let signature = key.sign(b"doorman key check")?;
        if !key.verify(&signature, b"doorman key check") {
            return Err(KeyError(format!(
                "the {alg} key does not verify its own signature"
            )));
        }
        Ok(key)
    }

    /// A signing key from a private JWK (RFC 7517/7518: `kty` RSA with `n e d p q dp dq qi`,
    /// EC with `crv x y d`, OKP Ed25519 with `x d`), and the PKCS#8 PEM it converts to. The
    /// JWK's `alg` is required and decides; its `kid`, when present, is kept.
    pub fn from_private_jwk(jwk: &serde_json::Value) -> Result<(Key, String), KeyError> {
        let field = |name: &str| -> Result<Vec<u8>, KeyError> {
            let text = jwk
                .get(name)
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| KeyError(format!("the JWK has no {name:?} member")))?;
            URL_SAFE_NO_PAD
                .decode(text)
                .map_err(|_| KeyError(format!("the JWK's {name:?} is not base64url")))
        };
        let alg: Algorithm = jwk
            .get("alg")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| KeyError("the JWK has no \"alg\"; add the algorithm it is for".into()))?
            .parse()
            .map_err(KeyError)?;
        let rejected = |e: aws_lc_rs::error::KeyRejected| {
            KeyError(format!("the JWK is not a valid {alg} private key: {e}"))
        };
        let der: Vec<u8> = match (alg.family(), jwk.get("kty").and_then(|k| k.as_str())) {
            (Family::Rsa, Some("RSA")) => {
                let components = aws_lc_rs::rsa::KeyPairComponents {
                    public_key: aws_lc_rs::rsa::PublicKeyComponents {
                        n: field("n")?,
                        e: field("e")?,
                    },
                    d: field("d")?,
                    p: field("p")?,
                    q: field("q")?,
                    dP: field("dp")?,
                    dQ: field("dq")?,
                    qInv: field("qi")?,
                };
                let pair =
                    aws_lc_rs::rsa::KeyPair::from_components(&components).map_err(rejected)?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = pair
                    .as_der()
                    .map_err(|_| KeyError("could not serialize the RSA key".into()))?;
                der.as_ref().to_vec()
            }
            (Family::Ec, Some("EC")) => {
                let point = [vec![0x04], field("x")?, field("y")?].concat();
                EcdsaKeyPair::from_private_key_and_public_key(ec_signing(alg), &field("d")?, &point)
                    .map_err(rejected)?
                    .to_pkcs8v1()
                    .map_err(|_| KeyError("could not serialize the EC key".into()))?
                    .as_ref()
                    .to_vec()
            }
            (Family::Ed, Some("OKP")) => {
                Ed25519KeyPair::from_seed_and_public_key(&field("d")?, &field("x")?)
                    .map_err(rejected)?
                    .to_pkcs8v1()
                    .map_err(|_| KeyError("could not serialize the Ed25519 key".into()))?
                    .as_ref()
                    .to_vec()
            }
            (Family::Hmac, _) => {
                return Err(KeyError(format!(
                    "{alg} takes a shared secret, not a JWK key pair"
                )));
            }
            (_, kty) => return Err(KeyError(format!("a {kty:?} JWK does not suit {alg}"))),
        };
        let pem = pem_encode("PRIVATE KEY", &der);
        let key = Key::from_private_pem(alg, &pem)?;
        let kid = jwk.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
        let key = match kid {
            Some(kid) => key.with_kid(Some(kid)),
            None => key,
        };
        Ok((key, pem))
    }

    /// A verify-only key for `alg` from a public key PEM (`PUBLIC KEY`, or `RSA PUBLIC KEY`).
    pub fn from_public_pem(alg: Algorithm, pem: &str) -> Result<Key, KeyError> {
        let bytes = pem.as_bytes();
        let decoding = match alg.family() {
            Family::Hmac => return Err(KeyError(format!("{alg} has no public key"))),
            Family::Rsa => DecodingKey::from_rsa_pem(bytes),
            Family::Ec => DecodingKey::from_ec_pem(bytes),
            Family::Ed => DecodingKey::from_ed_pem(bytes),
        }
        .map_err(|e| KeyError(format!("not a {alg} public key PEM: {e}")))?;
        let public = Jwk::from_decoding_key(&decoding, Some(alg.to_jwt()))
            .map_err(|e| KeyError(format!("not a usable {alg} public key: {e}")))?;
        Key::from_public_jwk(alg, public, None)
    }

    /// A verify-only key from a public JWK (as a JWKS lists it). Its `alg`, when present, must
    /// be `alg`; a JWK carrying a private member or an HMAC secret is refused.
    pub fn from_jwk(alg: Algorithm, jwk: &serde_json::Value) -> Result<Key, KeyError> {
        if let Some(member) = ["d", "p", "q", "dp", "dq", "qi", "k"]
            .into_iter()
            .find(|m| jwk.get(m).is_some())
        {
            return Err(KeyError(format!(
                "the JWK carries the private or secret member {member:?}; give the public key"
            )));
        }
        if let Some(named) = jwk.get("alg").and_then(|a| a.as_str())
            && named != alg.as_str()
        {
            return Err(KeyError(format!("the JWK is for {named}, not {alg}")));
        }
        let parsed: Jwk =
            serde_json::from_value(jwk.clone()).map_err(|e| KeyError(format!("not a JWK: {e}")))?;
        let kid = parsed.common.key_id.clone();
        let key = Key::from_public_jwk(alg, parsed, None)?;
        Ok(match kid {
            Some(kid) => key.with_kid(Some(kid)),
            None => key,
        })
    }

    fn from_public_jwk(
        alg: Algorithm,
        mut public: Jwk,
        encoding: Option<EncodingKey>,
    ) -> Result<Key, KeyError> {
        public.common = Default::default();
        match (&public.algorithm, alg.family()) {
            (AlgorithmParameters::RSA(rsa), Family::Rsa) => {
                let bits = URL_SAFE_NO_PAD
                    .decode(&rsa.n)
                    .map_err(|_| KeyError("the RSA modulus is not base64url".into()))?
                    .iter()
                    .skip_while(|b| **b == 0)
                    .count()
                    * 8;
                if bits < MIN_RSA_BITS {
                    return Err(KeyError(format!(
                        "an RSA key must have at least {MIN_RSA_BITS} bits, this one has about {bits}"
                    )));
                }
            }
            (AlgorithmParameters::EllipticCurve(ec), Family::Ec) => {
                let wanted = match alg {
                    Algorithm::ES384 => EllipticCurve::P384,
                    _ => EllipticCurve::P256,
                };
                if ec.curve != wanted {
                    return Err(KeyError(format!(
                        "{alg} needs a key on {}, this one is on {:?}",
                        curve_name(alg),
                        ec.curve
                    )));
                }
            }
            (AlgorithmParameters::OctetKeyPair(okp), Family::Ed)
                if okp.curve == EllipticCurve::Ed25519 => {}
            _ => return Err(KeyError(format!("the key does not suit {alg}"))),
        }
        let decoding = DecodingKey::from_jwk(&public)
            .map_err(|e| KeyError(format!("not a usable {alg} public key: {e}")))?;
        let kid = thumbprint(&public)?;
        let signer = encoding
            .map(|encoding| Signer::new(alg, encoding))
            .transpose()?;
        Ok(Key {
            alg,
            kid: Some(kid),
            signer,
            decoding,
            public: Some(public),
        })
    }

    /// A new key pair for `alg` from the OS random source (RSA: 2048 bits), and its PKCS#8
    /// PEM for storing.
    pub fn generate(alg: Algorithm) -> Result<(Key, String), KeyError> {
        let failed = |what: &str| KeyError(format!("could not {what} a new {alg} key"));
        let der: Vec<u8> = match alg.family() {
            Family::Hmac => return Err(KeyError(format!("{alg} takes a configured secret"))),
            Family::Ed => Ed25519KeyPair::generate()
                .and_then(|pair| pair.to_pkcs8v1())
                .map_err(|_| failed("generate"))?
                .as_ref()
                .to_vec(),
            Family::Ec => EcdsaKeyPair::generate(ec_signing(alg))
                .and_then(|pair| pair.to_pkcs8v1())
                .map_err(|_| failed("generate"))?
                .as_ref()
                .to_vec(),
            Family::Rsa => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| failed("generate"))?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
                    pair.as_der().map_err(|_| failed("serialize"))?;
                der.as_ref().to_vec()
            }
        };
        let pem = pem_encode("PRIVATE KEY", &der);
        Ok((Key::from_private_pem(alg, &pem)?, pem))
    }

    /// An Ed25519 signing key from a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn ed25519_from_pkcs8_pem(pem: &str) -> Result<Key, KeyError> {
        Key::from_private_pem(Algorithm::EdDSA, pem)
    }

    /// An Ed25519 verify-only key from a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn ed25519_public_from_pem(pem: &str) -> Result<Key, KeyError> {
        Key::from_public_pem(Algorithm::EdDSA, pem)
    }

    /// A new Ed25519 key from the OS random source, and its PKCS#8 PEM for storing.
    pub fn generate_ed25519() -> Result<(Key, String), KeyError> {
        Key::generate(Algorithm::EdDSA)
    }

    /// Replaces the key id (a configured `kid` instead of the thumbprint).
    pub fn with_kid(mut self, kid: Option<String>) -> Key {
        self.kid = kid;
        self
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn can_sign(&self) -> bool {
        self.signer.is_some()
    }

    /// The public JWK as a JWKS lists it (`kty`, the public members, `use: sig`, `alg`,
    /// `kid`); `None` for an HMAC key, whose secret is never published.
    pub fn public_jwk(&self) -> Option<serde_json::Value> {
        let mut jwk = self.public.clone()?;
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = key_algorithm(self.alg);
        jwk.common.key_id = self.kid.clone();
        serde_json::to_value(&jwk).ok()
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Result<String, KeyError> {
        self.signer
            .as_ref()
            .ok_or_else(|| KeyError("this key can only verify".into()))?
            .sign(self.alg, message)
    }

    /// Checks a base64url signature; any failure (bad encoding included) is `false`.
    pub(crate) fn verify(&self, signature: &str, message: &[u8]) -> bool {
        jsonwebtoken::crypto::verify(signature, message, &self.decoding, self.alg.to_jwt())
            .unwrap_or(false)
    }
}

fn ec_signing(alg: Algorithm) -> &'static aws_lc_rs::signature::EcdsaSigningAlgorithm {
    match alg {
        Algorithm::ES384 => &ECDSA_P384_SHA384_FIXED_SIGNING,
        _ => &ECDSA_P256_SHA256_FIXED_SIGNING,
    }
}

fn curve_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES384 => "P-384",
        _ => "P-256",
    }
}

fn key_algorithm(alg: Algorithm) -> Option<KeyAlgorithm> {
    Some(match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => return None,
        Algorithm::RS256 => KeyAlgorithm::RS256,
        Algorithm::RS384 => KeyAlgorithm::RS384,
        Algorithm::RS512 => KeyAlgorithm::RS512,
        Algorithm::PS256 => KeyAlgorithm::PS256,
        Algorithm::PS384 => KeyAlgorithm::PS384,
        Algorithm::PS512 => KeyAlgorithm::PS512,
        Algorithm::ES256 => KeyAlgorithm::ES256,
        Algorithm::ES384 => KeyAlgorithm::ES384,
        Algorithm::EdDSA => KeyAlgorithm::EdDSA,
    })
}

/// RFC 7638 thumbprint (SHA-256) of a public JWK.
fn thumbprint(jwk: &Jwk) -> Result<String, KeyError> {
    match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(okp) => {
            let x = URL_SAFE_NO_PAD
                .decode(&okp.x)
                .map_err(|_| KeyError("the Ed25519 key is not base64url".into()))?;
            Ok(ed25519_thumbprint(&x))
        }
        _ => jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| KeyError(format!("could not compute the key's thumbprint: {e}"))),
    }
}

/// The keys a deployment trusts: one that signs, and any number that only verify (rotation).
#[derive(Clone, Debug)]
pub struct KeySet {
    signing: Key,
    verify_only: Vec<Key>,
    mixed_allowed: bool,
}

impl KeySet {
    pub fn new(signing: Key) -> KeySet {
        KeySet {
            signing,
            verify_only: Vec::new(),
            mixed_allowed: false,
        }
    }

    /// Lets HMAC secrets and key pairs verify side by side (e.g. during a move from HS256 to
    /// EdDSA). Off by default: a deployment that mixes them invites key confusion.
    pub fn allowing_mixed_families(mut self) -> KeySet {
        self.mixed_allowed = true;
        self
    }

    /// Adds a key that verifies but never signs. An HMAC secret beside key pairs (or the
    /// reverse) is refused unless mixing was allowed, and so is a second key with the same id.
    pub fn with_verify_only(mut self, key: Key) -> Result<KeySet, KeyError> {
        if !self.mixed_allowed && key.alg.is_hmac() != self.signing.alg.is_hmac() {
            return Err(KeyError(format!(
                "a {} key can't join a key set signing with {}: HMAC secrets and key pairs don't mix",
                key.alg, self.signing.alg
            )));
        }
        if self.keys().any(|k| k.kid == key.kid) {
            return Err(KeyError(format!(
                "two keys with the id {:?}",
                key.kid.as_deref().unwrap_or("")
            )));
        }
        self.verify_only.push(key);
        Ok(self)
    }

    pub fn signing(&self) -> &Key {
        &self.signing
    }

    /// Every key, the signing one first.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.signing).chain(self.verify_only.iter())
    }

    /// The JWKS document: the public JWK of every key pair; HMAC secrets are never listed.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self.keys().filter_map(Key::public_jwk).collect();
        serde_json::json!({ "keys": keys })
    }

    /// Whether this set ignores the `kid` a token's header names: it holds one HMAC secret,
    /// no other key, and that secret has no id of its own (simplejwt's HS layout, a Django
    /// `SECRET_KEY`). There is no key to choose, and simplejwt verifies with PyJWT, which
    /// checks such a token with its one key whatever `kid` it names; a Django service that
    /// adds a `kid` must still be understood. Wherever there is a choice (a second key, a key
    /// pair, a key with an id) the `kid` picks the key, and an id no key has finds nothing.
    /// Either way the `kid` is only compared, never used to load anything, and the algorithm
    /// still comes from the key.
    pub fn ignores_kid(&self) -> bool {
        self.verify_only.is_empty() && self.signing.alg.is_hmac() && self.signing.kid.is_none()
    }

    /// The key a token's header points at: the one key of a set that [ignores the
    /// `kid`](KeySet::ignores_kid); otherwise by `kid` when it has one, else the key without a
    /// `kid` (the simplejwt HS layout). An id nobody holds finds nothing.
    pub(crate) fn find(&self, kid: Option<&str>) -> Option<&Key> {
        if self.ignores_kid() {
            return Some(&self.signing);
        }
        std::iter::once(&self.signing)
            .chain(self.verify_only.iter())
            .find(|key| key.kid.as_deref() == kid)
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key: SHA-256 over the canonical JWK members.
fn ed25519_thumbprint(public: &[u8]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public)
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn short_hmac_secrets_are_refused() {
        let err = Key::hmac(Algorithm::HS256, b"too-short").unwrap_err();
        assert!(err.0.contains("at least 32 bytes"), "{err}");
        assert!(Key::hmac(Algorithm::HS512, &[7u8; 63]).is_err());
        assert!(Key::hmac(Algorithm::HS512, &[7u8; 64]).is_ok());
    }

    #[test]
    fn every_algorithm_generates_signs_verifies_and_publishes_only_public_members() {
        crate::install_crypto_provider();
        for alg in Algorithm::ALL.into_iter().filter(|a| !a.is_hmac()) {
            let (key, pem) = Key::generate(alg).unwrap();
            let again = Key::from_private_pem(alg, &pem).unwrap();
            assert_eq!(key.kid(), again.kid(), "{alg}");
            assert_eq!(key.kid().unwrap().len(), 43, "{alg}: a SHA-256 thumbprint");
            let sig = key.sign(b"message").unwrap();
            assert!(again.verify(&sig, b"message"), "{alg}");
            assert!(!again.verify(&sig, b"messagf"), "{alg}");

            let jwk = key.public_jwk().unwrap();
            assert_eq!(jwk["alg"], alg.as_str(), "{jwk}");
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["kid"], key.kid().unwrap());
            for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                assert!(jwk.get(private).is_none(), "{alg} publishes {private}");
            }
            // The published JWK verifies what the key signed, under the same kid.
            let public = Key::from_jwk(alg, &jwk).unwrap();
            assert_eq!(public.kid(), key.kid());
            assert!(public.verify(&sig, b"message") && !public.can_sign());
            // Another algorithm's key is refused for this one.
            let other = if alg.family() == Family::Ec {
                Algorithm::EdDSA
            } else {
                Algorithm::ES256
            };
            assert!(
                Key::from_private_pem(other, &pem).is_err(),
                "{alg} as {other}"
            );
        }
        assert!(
            Key::hmac(Algorithm::HS256, &[1; 32])
                .unwrap()
                .public_jwk()
                .is_none()
        );
    }

    /// Private JWKs as RFC 7517 and other libraries write them: RSA (RFC 7515 A.2's key),
    /// EC P-256 (RFC 7515 A.3's), and Ed25519 (RFC 8037 A.1's).
    #[test]
    fn private_jwks_from_the_rfcs_load_and_sign() {
        crate::install_crypto_provider();
        let ed = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
            "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let (key, pem) = Key::from_private_jwk(&ed).unwrap();
        assert_eq!(
            key.kid(),
            Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
        );
        assert!(Key::from_private_pem(Algorithm::EdDSA, &pem).is_ok());
        let ec = serde_json::json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "mine",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            "d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"});
        let (key, _) = Key::from_private_jwk(&ec).unwrap();
        assert_eq!(key.kid(), Some("mine"));
        let sig = key.sign(b"m").unwrap();
        assert!(key.verify(&sig, b"m"));
        let mut wrong = ec.clone();
        wrong["d"] = serde_json::json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE");
        assert!(
            Key::from_private_jwk(&wrong).is_err(),
            "d that doesn't match x, y"
        );
        let mut no_alg = ec.clone();
        no_alg.as_object_mut().unwrap().remove("alg");
        assert!(Key::from_private_jwk(&no_alg).is_err());
        // A generated RSA key's PEM, through its JWK form and back.
        let (rsa, _) = Key::generate(Algorithm::RS256).unwrap();
        let public = rsa.public_jwk().unwrap();
        assert!(
            Key::from_private_jwk(&public).is_err(),
            "a public JWK can't sign"
        );
    }

    #[test]
    fn hmac_and_key_pairs_never_mix_unless_allowed() {
        crate::install_crypto_provider();
        let (pair, _) = Key::generate(Algorithm::EdDSA).unwrap();
        let (other, _) = Key::generate(Algorithm::ES256).unwrap();
        let secret = Key::hmac(Algorithm::HS256, &[7; 32]).unwrap();
        assert!(
            KeySet::new(pair.clone())
                .with_verify_only(secret.clone())
                .is_err()
        );
        assert!(
            KeySet::new(secret.clone())
                .with_verify_only(pair.clone())
                .is_err()
        );
        assert!(KeySet::new(pair.clone()).with_verify_only(other).is_ok());
        assert!(
            KeySet::new(pair.clone())
                .with_verify_only(pair.clone())
                .is_err(),
            "same kid"
        );
        assert!(
            KeySet::new(pair)
                .allowing_mixed_families()
                .with_verify_only(secret)
                .is_ok()
        );
    }

    #[test]
    fn ec_keys_must_be_on_the_algorithms_curve() {
        crate::install_crypto_provider();
        let (_, p384) = Key::generate(Algorithm::ES384).unwrap();
        let err = Key::from_private_pem(Algorithm::ES256, &p384).unwrap_err();
        assert!(err.0.contains("P-256"), "{err}");
    }

    /// A clearly public, test-only 1024-bit RSA key: too short for any RS or PS algorithm.
    const RSA_1024_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCjayedbOE0d8FbZq6kowUaljVj\ntPWOflHOzB9esGlAC0OrPre0sUboPiKqmFB2pAJSE+CV46Y6CaV05VFTBsb/TvtR\nti/y4Psxau/evFr48+/clvQX7SLcNEdaFsGmuqXKJ3p21MDhKkNuUBVJ59fMxI0X\nnDBX+r3qwpK+vV/ZQwIDAQAB\n-----END PUBLIC KEY-----\n";

    #[test]
    fn rsa_keys_under_2048_bits_are_refused() {
        crate::install_crypto_provider();
        let err = Key::from_public_pem(Algorithm::RS256, RSA_1024_PUBLIC).unwrap_err();
        assert!(err.0.contains("at least 2048 bits"), "{err}");
        let (key, _) = Key::generate(Algorithm::PS256).unwrap();
        let jwk = key.public_jwk().unwrap();
        assert!(Key::from_jwk(Algorithm::PS256, &jwk).is_ok());
        let mut private = jwk.clone();
        private["d"] = serde_json::json!("AQAB");
        assert!(Key::from_jwk(Algorithm::PS256, &private).is_err());
        assert!(
            Key::from_jwk(Algorithm::RS256, &jwk).is_err(),
            "alg PS256 is not RS256"
        );
    }

    #[test]
    fn thumbprint_matches_rfc8037_example() {
        // RFC 8037 appendix A.3: the thumbprint of the example Ed25519 key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        assert_eq!(
            ed25519_thumbprint(&x),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn debug_output_has_no_key_material() {
        let key = Key::hmac(Algorithm::HS256, b"an-hs256-test-secret-of-32-bytes!!").unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains("an-hs256"), "{shown}");
    }
}
