//! Turns the configured key choice into a `KeySet`: an HMAC secret, a configured private key
//! PEM, or a key pair generated on first start (Ed25519 unless `algorithm` says otherwise) and
//! kept in the data directory, readable only by its owner, and reused on every later start.
//! The choice itself is made from the key settings in [`policy`].

pub mod policy;

use std::io::Write;
use std::path::Path;

use doorman_token::{Algorithm, Key, KeySet};
use secrecy::ExposeSecret;

pub use policy::{KeyConfig, KeySettings, KeysConfig};

use crate::audit;
use crate::store::{KeyState, Store, StoredKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    #[error("signing key {path}: {reason}")]
    File { path: String, reason: String },
    #[error("signing key: {0}")]
    Invalid(#[from] doorman_token::KeyError),
    #[error("stored signing key {kid}: {reason}")]
    Stored { kid: String, reason: String },
}

/// Loads (or, the first time, generates) the signing key.
pub fn load(config: &KeyConfig) -> Result<KeySet, KeyLoadError> {
    doorman_token::install_crypto_provider();
    let key = match config {
        KeyConfig::Hmac { alg, secret } => Key::hmac(*alg, secret.expose_secret().as_bytes())?,
        KeyConfig::Pem { alg, pem, kid } => {
            let key = Key::from_private_pem(*alg, pem.expose_secret())?;
            match kid {
                Some(kid) => key.with_kid(Some(kid.clone())),
                None => key,
            }
        }
        KeyConfig::Generated { alg, path } => load_or_generate(*alg, path)?.0,
    };
    Ok(KeySet::new(key))
}

/// The key in the data directory, made on first use, with its PEM.
pub fn load_or_generate(alg: Algorithm, path: &Path) -> Result<(Key, String), KeyLoadError> {
    let fail = |reason: String| KeyLoadError::File {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(pem) => {
            warn_if_readable_by_others(path);
            let key = Key::from_private_pem(alg, &pem).map_err(|e| fail(e.to_string()))?;
            tracing::info!(path = %path.display(), %alg, kid = key.kid().unwrap_or_default(), "using the signing key from the data directory");
            Ok((key, pem))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (key, pem) = Key::generate(alg)?;
            write_private(path, pem.as_bytes())
                .map_err(|e| fail(format!("could not write it: {e}")))?;
            tracing::info!(path = %path.display(), %alg, kid = key.kid().unwrap_or_default(), "generated a new signing key (mode 0600); it is reused on every start");
            Ok((key, pem))
        }
        Err(e) => Err(fail(format!("could not read it: {e}"))),
    }
}

/// The managed key set (`doorman keys ...`) as stored, when it has a current key: that key
/// signs; next keys, and retiring keys until their `retire_after`, verify. Retired keys and
/// retiring keys past their time are left out.
pub fn managed_key_set(stored: &[StoredKey], now: i64) -> Result<Option<KeySet>, KeyLoadError> {
    let load = |k: &StoredKey| -> Result<Key, KeyLoadError> {
        let alg: Algorithm = k.alg.parse().map_err(|e: String| KeyLoadError::Stored {
            kid: k.kid.clone(),
            reason: e,
        })?;
        let key = Key::from_private_pem(alg, k.private_pem.expose_secret()).map_err(|e| {
            KeyLoadError::Stored {
                kid: k.kid.clone(),
                reason: e.to_string(),
            }
        })?;
        Ok(key.with_kid(Some(k.kid.clone())))
    };
    let Some(current) = stored.iter().find(|k| k.state == KeyState::Current) else {
        return Ok(None);
    };
    let mut set = KeySet::new(load(current)?);
    for key in stored.iter().filter(|k| match k.state {
        KeyState::Next => true,
        KeyState::Retiring => k.retire_after.is_some_and(|t| t > now),
        KeyState::Current | KeyState::Retired => false,
    }) {
        set = set.with_verify_only(load(key)?)?;
    }
    Ok(Some(set))
}

/// The keys doorman uses now: with a generated key (no `signing_key` configured), the managed
/// set in the database once `doorman keys generate` has made one; otherwise the configured or
/// generated key.
pub async fn effective(config: &KeyConfig, store: &Store) -> anyhow::Result<KeySet> {
    if matches!(config, KeyConfig::Generated { .. }) {
        let stored = store.signing_keys().await?;
        if let Some(set) = managed_key_set(&stored, crate::unix_now())? {
            return Ok(set);
        }
    }
    if let KeyConfig::Generated { alg, path } = config {
        doorman_token::install_crypto_provider();
        let (key, _) = load_or_generate_audited(*alg, path, store).await?;
        return Ok(KeySet::new(key));
    }
    Ok(load(config)?)
}

/// [`load_or_generate`], with a key made now (the first start, or the first command that
/// needed it) recorded in the audit trail.
pub async fn load_or_generate_audited(
    alg: Algorithm,
    path: &Path,
    store: &Store,
) -> Result<(Key, String), KeyLoadError> {
    let existed = path.exists();
    let (key, pem) = load_or_generate(alg, path)?;
    if !existed {
        audit::Event::new(audit::Kind::KeyGenerated)
            .detail(serde_json::json!({
                "kid": key.kid().unwrap_or_default(),
                "alg": alg.as_str(),
                "state": "data directory",
            }))
            .record(store)
            .await;
    }
    Ok((key, pem))
}

/// A fingerprint of a key set: which key signs and which verify. Equal sets need no swap.
pub fn describe(set: &KeySet) -> Vec<(String, bool)> {
    set.keys()
        .enumerate()
        .map(|(i, k)| (k.kid().unwrap_or_default().to_owned(), i == 0))
        .collect()
}

/// Creates the file with mode 0600 from the start (no window where it is world-readable), and
/// never overwrites an existing key.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// The data directory, created owner-only when doorman makes it.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "the signing key is readable by other users; chmod 600 it");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/signing-key.pem");
        let config = KeyConfig::Generated {
            alg: Algorithm::EdDSA,
            path: path.clone(),
        };
        let first = load(&config).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                std::fs::metadata(path.parent().unwrap())
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777,
                0o700
            );
        }
        let second = load(&config).unwrap();
        assert_eq!(first.signing().kid(), second.signing().kid());
        assert!(first.signing().kid().is_some());
    }

    /// Which key choices ignore a token's `kid` (doorman-token's `KeySet::ignores_kid`): only
    /// the static HMAC secret, simplejwt's mode; a configured or generated key pair and the
    /// managed set, of one key or several, choose by `kid`.
    #[test]
    fn only_the_static_secret_ignores_the_kid() {
        let dir = tempfile::tempdir().unwrap();
        let hmac = load(&KeyConfig::Hmac {
            alg: Algorithm::HS256,
            secret: "a-test-only-hs256-secret-of-32-bytes-or-more".into(),
        })
        .unwrap();
        assert!(hmac.ignores_kid());
        let (_, pem) = Key::generate(Algorithm::ES256).unwrap();
        let configured = load(&KeyConfig::Pem {
            alg: Algorithm::ES256,
            pem: pem.clone().into(),
            kid: None,
        })
        .unwrap();
        assert!(!configured.ignores_kid());
        let generated = load(&KeyConfig::Generated {
            alg: Algorithm::EdDSA,
            path: dir.path().join("signing-key.pem"),
        })
        .unwrap();
        assert!(!generated.ignores_kid());
        let stored = |kid: &str, state: KeyState| StoredKey {
            kid: kid.to_owned(),
            alg: "ES256".to_owned(),
            state,
            private_pem: pem.clone().into(),
            created_at: 0,
            state_since: 0,
            retire_after: None,
        };
        let one = managed_key_set(&[stored("current", KeyState::Current)], 0)
            .unwrap()
            .unwrap();
        assert!(!one.ignores_kid());
        let (_, next) = Key::generate(Algorithm::ES256).unwrap();
        let mut next_key = stored("next", KeyState::Next);
        next_key.private_pem = next.into();
        let two = managed_key_set(&[stored("current", KeyState::Current), next_key], 0)
            .unwrap()
            .unwrap();
        assert!(!two.ignores_kid());
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing-key.pem");
        std::fs::write(&path, "not a key").unwrap();
        let err = load(&KeyConfig::Generated {
            alg: Algorithm::EdDSA,
            path: path.clone(),
        })
        .unwrap_err();
        assert!(err.to_string().contains("signing-key.pem"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a key");
    }
}
