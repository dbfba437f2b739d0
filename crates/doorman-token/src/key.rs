//! Signing and verifying keys. Each key is bound to one algorithm (RFC 8725 §3.1: the key, not
//! the token header, decides how a signature is checked) and, for key pairs, carries a `kid`.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::{Algorithm, KeyError};

/// One key: its algorithm, its id, the verifying half and, when it can sign, the signing half.
#[derive(Clone)]
pub struct Key {
    alg: Algorithm,
    kid: Option<String>,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
}

impl std::fmt::Debug for Key {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("can_sign", &self.encoding.is_some())
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
            encoding: Some(EncodingKey::from_secret(secret)),
            decoding: DecodingKey::from_secret(secret),
        })
    }

    /// An Ed25519 signing key from a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    /// Its `kid` is the RFC 7638 thumbprint of the public key.
    pub fn ed25519_from_pkcs8_pem(pem: &str) -> Result<Key, KeyError> {
        let der = pem_body(pem, "PRIVATE KEY")?;
        Self::ed25519_from_pkcs8_der(&der)
    }

    /// An Ed25519 verify-only key from a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn ed25519_public_from_pem(pem: &str) -> Result<Key, KeyError> {
        let der = pem_body(pem, "PUBLIC KEY")?;
        // SPKI for Ed25519 is a fixed 12-byte prefix followed by the 32-byte key (RFC 8410).
        const PREFIX: [u8; 12] = [
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        if der.len() != 44 || der[..12] != PREFIX {
            return Err(KeyError(
                "not an Ed25519 public key (expected a 44-byte SubjectPublicKeyInfo)".into(),
            ));
        }
        let public = &der[12..];
        Ok(Key {
            alg: Algorithm::EdDSA,
            kid: Some(ed25519_thumbprint(public)),
            encoding: None,
            decoding: DecodingKey::from_ed_der(public),
        })
    }

    /// A new Ed25519 key from the OS random source, and its PKCS#8 PEM for storing.
    pub fn generate_ed25519() -> Result<(Key, String), KeyError> {
        let pair = Ed25519KeyPair::generate()
            .map_err(|_| KeyError("could not generate an Ed25519 key".into()))?;
        let der = pair
            .to_pkcs8v1()
            .map_err(|_| KeyError("could not serialize the Ed25519 key".into()))?;
        let key = Self::ed25519_from_pkcs8_der(der.as_ref())?;
        Ok((key, pem_encode("PRIVATE KEY", der.as_ref())))
    }

    fn ed25519_from_pkcs8_der(der: &[u8]) -> Result<Key, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(der)
            .map_err(|e| KeyError(format!("not an Ed25519 PKCS#8 private key: {e}")))?;
        let public = pair.public_key().as_ref().to_vec();
        // jsonwebtoken's aws-lc signer takes the PKCS#8 document as given.
        let v1 = pair
            .to_pkcs8v1()
            .map_err(|_| KeyError("could not serialize the Ed25519 key".into()))?;
        Ok(Key {
            alg: Algorithm::EdDSA,
            kid: Some(ed25519_thumbprint(&public)),
            encoding: Some(EncodingKey::from_ed_der(v1.as_ref())),
            decoding: DecodingKey::from_ed_der(&public),
        })
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
        self.encoding.is_some()
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Result<String, KeyError> {
        let encoding = self
            .encoding
            .as_ref()
            .ok_or_else(|| KeyError("this key can only verify".into()))?;
        jsonwebtoken::crypto::sign(message, encoding, self.alg.to_jwt())
            .map_err(|e| KeyError(format!("signing failed: {e}")))
    }

    /// Checks a base64url signature; any failure (bad encoding included) is `false`.
    pub(crate) fn verify(&self, signature: &str, message: &[u8]) -> bool {
        jsonwebtoken::crypto::verify(signature, message, &self.decoding, self.alg.to_jwt())
            .unwrap_or(false)
    }
}

/// The keys a deployment trusts: one that signs, and any number that only verify (rotation).
#[derive(Clone, Debug)]
pub struct KeySet {
    signing: Key,
    verify_only: Vec<Key>,
}

impl KeySet {
    pub fn new(signing: Key) -> KeySet {
        KeySet {
            signing,
            verify_only: Vec::new(),
        }
    }

    /// Adds a key that verifies but never signs.
    pub fn with_verify_only(mut self, key: Key) -> KeySet {
        self.verify_only.push(key);
        self
    }

    pub fn signing(&self) -> &Key {
        &self.signing
    }

    /// The key a token's header points at: by `kid` when it has one, else the key without a
    /// `kid` (the simplejwt HS layout). An id nobody holds finds nothing.
    pub(crate) fn find(&self, kid: Option<&str>) -> Option<&Key> {
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

fn pem_body(text: &str, label: &str) -> Result<Vec<u8>, KeyError> {
    let block = pem::parse(text).map_err(|e| KeyError(format!("not a PEM key: {e}")))?;
    if block.tag() != label {
        return Err(KeyError(format!(
            "expected a PEM block labelled {label}, found {}",
            block.tag()
        )));
    }
    Ok(block.contents().to_vec())
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
    fn generated_ed25519_key_round_trips_through_pem() {
        crate::install_crypto_provider();
        let (key, pem) = Key::generate_ed25519().unwrap();
        let again = Key::ed25519_from_pkcs8_pem(&pem).unwrap();
        assert_eq!(key.kid(), again.kid());
        let sig = key.sign(b"message").unwrap();
        assert!(again.verify(&sig, b"message"));
        assert!(!again.verify(&sig, b"messagf"));
        assert_eq!(key.kid().unwrap().len(), 43);
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
