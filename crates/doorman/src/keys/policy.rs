//! The key settings and the key policy: which algorithm signs, with which key (a shared
//! secret, a configured private key as PEM or JWK, or a key pair generated in the data
//! directory), and what is refused at start rather than at the first token (short or
//! well-known secrets, weak keys, a verifying key that doesn't match).

use std::path::{Path, PathBuf};
use std::time::Duration;

use doorman_token::Algorithm;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::source::{ConfigError, Sources};
use crate::config::values;

/// The key settings as the layers give them.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct KeySettings {
    algorithm: Option<String>,
    signing_key: Option<SecretString>,
    signing_key_file: Option<PathBuf>,
    signing_key_id: Option<String>,
    verifying_key: Option<String>,
    verifying_key_file: Option<PathBuf>,
    #[serde(with = "values::duration")]
    key_refresh_interval: Duration,
}

impl Default for KeySettings {
    fn default() -> Self {
        KeySettings {
            algorithm: None,
            signing_key: None,
            signing_key_file: None,
            signing_key_id: None,
            verifying_key: None,
            verifying_key_file: None,
            key_refresh_interval: Duration::from_secs(10),
        }
    }
}

/// How tokens are signed, as decided from `algorithm`, `signing_key` and `verifying_key`.
#[derive(Clone, Debug)]
pub enum KeyConfig {
    /// HMAC with a shared secret (the Django interop mode: a Django `SECRET_KEY` works as is).
    Hmac {
        alg: Algorithm,
        secret: SecretString,
    },
    /// A key pair from a configured private key (PEM, or a JWK converted to PEM), with a
    /// configured `kid` or, by default, the key's thumbprint.
    Pem {
        alg: Algorithm,
        pem: SecretString,
        kid: Option<String>,
    },
    /// A key pair generated on first start and kept in the data directory.
    Generated { alg: Algorithm, path: PathBuf },
}

/// The signing key and how the managed key set is followed.
#[derive(Clone, Debug)]
pub struct KeysConfig {
    pub key: KeyConfig,
    /// How often an instance rereads the managed key set, so that a rotation made anywhere
    /// reaches it within this time.
    pub key_refresh_interval: Duration,
}

impl KeySettings {
    /// Decides the key; a generated one lives in `data_dir`.
    pub fn validate(self, data_dir: &Path, src: &Sources) -> Result<KeysConfig, ConfigError> {
        let key = self.key_config(data_dir, src)?;
        let key_refresh_interval =
            src.nonzero("key_refresh_interval", self.key_refresh_interval)?;
        Ok(KeysConfig {
            key,
            key_refresh_interval,
        })
    }

    fn key_config(&self, data_dir: &Path, src: &Sources) -> Result<KeyConfig, ConfigError> {
        let signing = key_text(
            src,
            self.signing_key.clone(),
            self.signing_key_file.as_deref(),
            ("signing_key", "signing_key_file"),
        )?;
        let verifying = key_text(
            src,
            self.verifying_key.clone().map(SecretString::from),
            self.verifying_key_file.as_deref(),
            ("verifying_key", "verifying_key_file"),
        )?
        .map(|(text, name)| (text.expose_secret().to_owned(), name));
        // A JWK names its algorithm; a PEM or a secret needs `algorithm` (HS256 by default for
        // a secret, as in simplejwt).
        let jwk: Option<serde_json::Value> = match &signing {
            Some((text, name)) if text.expose_secret().trim_start().starts_with('{') => Some(
                serde_json::from_str(text.expose_secret())
                    .map_err(|e| src.fail(name, format!("not a JWK: {e}")))?,
            ),
            _ => None,
        };
        let jwk_alg = jwk
            .as_ref()
            .and_then(|j| j.get("alg"))
            .and_then(|a| a.as_str())
            .map(str::to_owned);
        let alg = match (&self.algorithm, &jwk_alg, &signing) {
            (None, Some(named), _) => named
                .parse::<Algorithm>()
                .map_err(|e| src.fail("signing_key", e))?,
            (None, None, Some((text, name))) if text.expose_secret().contains("-----BEGIN") => {
                return Err(src.fail(
                    name,
                    "is a PEM key, but `algorithm` is not set (it would be taken for an HS256 secret); set algorithm, e.g. ES256",
                ));
            }
            (None, None, Some(_)) => Algorithm::HS256,
            (None, None, None) => Algorithm::EdDSA,
            (Some(name), _, _) => name
                .parse::<Algorithm>()
                .map_err(|e| src.fail("algorithm", e))?,
        };
        if let Some(named) = &jwk_alg
            && named != alg.as_str()
        {
            return Err(src.fail(
                "algorithm",
                format!("is {alg}, but the signing key's JWK is for {named}"),
            ));
        }
        if alg.is_hmac() {
            let Some((secret, name)) = &signing else {
                return Err(src.fail(
                    "signing_key",
                    format!("{alg} needs a shared secret of at least {} bytes (e.g. Django's SECRET_KEY)", alg.min_secret_bytes()),
                ));
            };
            let bytes = secret.expose_secret().as_bytes();
            if bytes.len() < alg.min_secret_bytes() {
                return Err(src.fail(
                    name,
                    format!(
                        "an {alg} secret must be at least {} bytes (RFC 7518 §3.2), this one has {}",
                        alg.min_secret_bytes(),
                        bytes.len()
                    ),
                ));
            }
            if is_placeholder(secret.expose_secret()) {
                return Err(src.fail(
                    name,
                    "this is a well-known example secret; generate a random one",
                ));
            }
            if let Some((_, name)) = &verifying {
                return Err(src.fail(
                    name,
                    format!("{alg} uses the signing key to verify; leave verifying_key unset"),
                ));
            }
            if self.signing_key_id.is_some() {
                return Err(src.fail(
                    "signing_key_id",
                    "an HS key has no kid in simplejwt's token layout; leave it unset",
                ));
            }
            return Ok(KeyConfig::Hmac {
                alg,
                secret: secret.clone(),
            });
        }
        match &signing {
            Some((text, name)) => {
                let (key, pem) = match &jwk {
                    Some(jwk) => {
                        doorman_token::Key::from_private_jwk(jwk).map_err(|e| src.fail(name, e))?
                    }
                    None => {
                        let key = doorman_token::Key::from_private_pem(alg, text.expose_secret())
                            .map_err(|e| {
                            src.fail(name, format!("expected a {alg} private key in PEM: {e}"))
                        })?;
                        (key, text.expose_secret().to_owned())
                    }
                };
                if let Some((public, name)) = &verifying {
                    let verifying = if public.trim_start().starts_with('{') {
                        let jwk: serde_json::Value = serde_json::from_str(public)
                            .map_err(|e| src.fail(name, format!("not a JWK: {e}")))?;
                        doorman_token::Key::from_jwk(alg, &jwk)
                    } else {
                        doorman_token::Key::from_public_pem(alg, public)
                    }
                    .map_err(|e| src.fail(name, e))?;
                    if verifying.public_jwk().map(strip_meta) != key.public_jwk().map(strip_meta) {
                        return Err(src.fail(name, "is not the public half of the signing key"));
                    }
                }
                let kid = self.signing_key_id.clone().or_else(|| {
                    jwk.is_some()
                        .then(|| key.kid().map(str::to_owned))
                        .flatten()
                });
                if kid
                    .as_deref()
                    .is_some_and(|k| k.is_empty() || k.len() > 256)
                {
                    return Err(src.fail("signing_key_id", "expected 1 to 256 characters"));
                }
                Ok(KeyConfig::Pem {
                    alg,
                    pem: pem.into(),
                    kid,
                })
            }
            None if verifying.is_some() => Err(src.fail(
                "signing_key",
                "a verifying_key alone can't issue tokens; set the matching signing_key",
            )),
            None => Ok(KeyConfig::Generated {
                alg,
                path: data_dir.join(generated_key_file(alg)),
            }),
        }
    }
}

/// A key given inline or as a file: `(text, the setting it came from)`.
fn key_text(
    src: &Sources,
    inline: Option<SecretString>,
    file: Option<&Path>,
    names: (&'static str, &'static str),
) -> Result<Option<(SecretString, &'static str)>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(src.fail(
            names.1,
            format!("set either {} or {}, not both", names.0, names.1),
        )),
        (Some(text), None) => Ok(Some((text, names.0))),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                src.fail(names.1, format!("could not read {}: {e}", path.display()))
            })?;
            // A secret file usually ends with a newline that is not part of the secret.
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            Ok(Some((SecretString::from(text.to_owned()), names.1)))
        }
        (None, None) => Ok(None),
    }
}

/// A public JWK without `kid`, to compare two keys' public halves.
fn strip_meta(mut jwk: serde_json::Value) -> serde_json::Value {
    if let Some(map) = jwk.as_object_mut() {
        map.remove("kid");
    }
    jwk
}

/// Where a generated key of `alg` lives in the data directory (EdDSA keeps its first name).
fn generated_key_file(alg: Algorithm) -> String {
    match alg {
        Algorithm::EdDSA => "signing-key.pem".to_owned(),
        other => format!("signing-key-{}.pem", other.as_str().to_lowercase()),
    }
}

/// Secrets copied from tutorials that attackers try first (`docs/security.md` 4.12).
fn is_placeholder(secret: &str) -> bool {
    const KNOWN: [&str; 3] = [
        "your-256-bit-secret",
        "peer-secret-key-for-benchmarks-only-0123456789abcdef",
        "django-insecure-change-me-change-me-change-me-change-me",
    ];
    KNOWN.contains(&secret) || secret.bytes().all(|b| b == secret.as_bytes()[0])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use doorman_token::Algorithm;

    use super::KeyConfig;
    use crate::config::Overrides;
    use crate::config::testing::{SECRET, load};

    #[test]
    fn hs256_with_a_django_secret_key() {
        let c = load(
            None,
            &[("DOORMAN_SIGNING_KEY", SECRET)],
            Overrides::default(),
        )
        .unwrap();
        assert!(matches!(
            c.keys.key,
            KeyConfig::Hmac {
                alg: Algorithm::HS256,
                ..
            }
        ));
    }

    #[test]
    fn short_secret_is_refused_naming_setting_and_source() {
        let err = load(
            None,
            &[("DOORMAN_SIGNING_KEY", "short")],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("signing_key"), "{err}");
        assert!(err.contains("DOORMAN_SIGNING_KEY"), "{err}");
        assert!(err.contains("at least 32 bytes"), "{err}");
        let err = load(
            Some("algorithm = \"HS512\"\nsigning_key = \"x\"\n"),
            &[],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("doorman.toml") && err.contains("64 bytes"),
            "{err}"
        );
    }

    /// Clearly a test key, and useless: a 1024-bit RSA key, which doorman must refuse.
    const TEST_ONLY_RSA_1024: &str = "-----BEGIN PRIVATE KEY-----\nMIICeAIBADANBgkqhkiG9w0BAQEFAASCAmIwggJeAgEAAoGBAKNrJ51s4TR3wVtm\nrqSjBRqWNWO09Y5+Uc7MH16waUALQ6s+t7SxRug+IqqYUHakAlIT4JXjpjoJpXTl\nUVMGxv9O+1G2L/Lg+zFq7968Wvjz79yW9BftItw0R1oWwaa6pconenbUwOEqQ25Q\nFUnn18zEjRecMFf6verCkr69X9lDAgMBAAECgYAj7eZK1Wp6R64qc1wIdJMlskrQ\nvjOS/bDs37Ix9mVdoFxjZSmsv6FQZIDosw5V119vPlGNgvzEG+TV26lSsNXFaDOA\n7wMrXdIOHytrfJEKWjhvoKjX8xzZy8zwnv37JIN6SUaSil3zy8h6wd00MQfNx8OU\ns6eJHJcyZzsZACmW2QJBANlnCGLOxez3FwJSTJvx8zJfj/hoFp1TLEXoUu7KriOf\nQiYG5pxsnjlAIGgoxudYd9xx50Ny4SQbeCplpX5qJ2cCQQDAbowwtwkC6i6/XE1a\nH/MYsfhHe1jQO3qwy+4fw3sYWxqsh3uqQhDF5/OptKb+OSynshKsD8N7SmVnal8r\nwuHFAkEAsqPzRB3cjadMBOBTiyD5Ub8sslX1nzkk/By3aPiqtyK6XDz3ajnmmeyT\ntIMtThRoCYCfI9FWJzFbQJtdrc7UqQJBAJwsG9Kdec7HyFC91HlEXMK6DUnWLWoy\nG4zItOVKfOhzZ96FxjOTkpFLglFEsBK6zCb9OnIyCPBSnKGljr+xVhECQQC/oIiX\npMVeuZaAflTojEs96lbEnBbquEexasGS+6akle0zzxu23SiBQm8aA5bmPznWE68c\ncHTC39JzJYpa+b/m\n-----END PRIVATE KEY-----\n";

    #[test]
    fn weak_or_mismatched_asymmetric_keys_are_refused_at_start() {
        let err = load(
            None,
            &[
                ("DOORMAN_ALGORITHM", "RS256"),
                ("DOORMAN_SIGNING_KEY", TEST_ONLY_RSA_1024),
            ],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("signing_key") && err.contains("at least 2048 bits"),
            "{err}"
        );
        doorman_token::install_crypto_provider();
        let (_, p384) = doorman_token::Key::generate(Algorithm::ES384).unwrap();
        let err = load(
            None,
            &[
                ("DOORMAN_ALGORITHM", "ES256"),
                ("DOORMAN_SIGNING_KEY", &p384),
            ],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("P-256"), "{err}");
        let (_, es256) = doorman_token::Key::generate(Algorithm::ES256).unwrap();
        let c = load(
            None,
            &[
                ("DOORMAN_ALGORITHM", "ES256"),
                ("DOORMAN_SIGNING_KEY", &es256),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert!(matches!(
            c.keys.key,
            KeyConfig::Pem {
                alg: Algorithm::ES256,
                kid: None,
                ..
            }
        ));
        let c = load(
            None,
            &[("DOORMAN_ALGORITHM", "PS384")],
            Overrides::default(),
        )
        .unwrap();
        match c.keys.key {
            KeyConfig::Generated { alg, path } => {
                assert_eq!(alg, Algorithm::PS384);
                assert!(
                    path.ends_with("signing-key-ps384.pem"),
                    "{}",
                    path.display()
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keys_from_files_and_jwks_and_their_mistakes() {
        doorman_token::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let (key, pem) = doorman_token::Key::generate(Algorithm::ES256).unwrap();
        // A PEM without `algorithm` would be taken for an HS256 secret: refused.
        let err = load(None, &[("DOORMAN_SIGNING_KEY", &pem)], Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("algorithm is not set") || err.contains("`algorithm` is not set"),
            "{err}"
        );

        let pem_file = dir.path().join("key.pem");
        std::fs::write(&pem_file, &pem).unwrap();
        let path = pem_file.display().to_string();
        let c = load(
            None,
            &[
                ("DOORMAN_ALGORITHM", "ES256"),
                ("DOORMAN_SIGNING_KEY_FILE", &path),
                ("DOORMAN_SIGNING_KEY_ID", "2026-11"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert!(matches!(&c.keys.key, KeyConfig::Pem { kid: Some(k), .. } if k == "2026-11"));
        let err = load(
            None,
            &[
                ("DOORMAN_ALGORITHM", "ES256"),
                ("DOORMAN_SIGNING_KEY_FILE", &path),
                ("DOORMAN_SIGNING_KEY", &pem),
            ],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not both"), "{err}");

        // A private JWK file names its algorithm and kid (RFC 7515 A.3's key).
        let jwk_file = dir.path().join("key.jwk");
        std::fs::write(
            &jwk_file,
            r#"{"kty":"EC","crv":"P-256","alg":"ES256","kid":"mine",
                "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                "d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#,
        )
        .unwrap();
        let jwk_path = jwk_file.display().to_string();
        let c = load(
            None,
            &[("DOORMAN_SIGNING_KEY_FILE", &jwk_path)],
            Overrides::default(),
        )
        .unwrap();
        assert!(
            matches!(&c.keys.key, KeyConfig::Pem { alg: Algorithm::ES256, kid: Some(k), .. } if k == "mine")
        );
        let err = load(
            None,
            &[
                ("DOORMAN_ALGORITHM", "EdDSA"),
                ("DOORMAN_SIGNING_KEY_FILE", &jwk_path),
            ],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("JWK is for ES256"), "{err}");

        // verifying_key must be the signing key's public half (PEM or JWK).
        let public = key.public_jwk().unwrap().to_string();
        let err = load(
            None,
            &[
                ("DOORMAN_SIGNING_KEY_FILE", &jwk_path),
                ("DOORMAN_VERIFYING_KEY", &public),
            ],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not the public half"), "{err}");
        let c = load(
            None,
            &[
                ("DOORMAN_ALGORITHM", "ES256"),
                ("DOORMAN_SIGNING_KEY", &pem),
                ("DOORMAN_VERIFYING_KEY", &public),
            ],
            Overrides::default(),
        );
        assert!(c.is_ok(), "{:?}", c.err());
    }

    #[test]
    fn placeholder_secrets_are_refused() {
        let err = load(
            None,
            &[("DOORMAN_SIGNING_KEY", &"a".repeat(40))],
            Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("well-known"), "{err}");
    }
}
