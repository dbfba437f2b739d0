//! The client's session file: the server a user logged in to, as whom, and the token pair it
//! gave. The file holds live credentials, so it is written 0600 from its creation (a temporary
//! file renamed over the old one) in a 0700 directory, and refused when others can read it.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Overrides where the session is kept (tests, or several sessions side by side).
pub const FILE_ENV: &str = "DOORMAN_CLIENT_FILE";

/// One logged-in session. Not `Debug`: its tokens must not end up in a log line.
#[derive(Serialize, Deserialize, Clone)]
pub struct Session {
    /// The API base the tokens were issued by; every request carrying them goes to its origin.
    pub base_url: String,
    pub username: String,
    pub access: String,
    pub refresh: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no place for the session file: neither {FILE_ENV}, XDG_CONFIG_HOME nor HOME is set")]
    NoLocation,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a session file doorman can read ({source}); remove it and log in again")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{path} can be read by other users (mode {mode:o}); run `chmod 600 {path}` (and consider the tokens in it leaked: log in again)"
    )]
    TooOpen { path: PathBuf, mode: u32 },
}

/// Where the session is kept: `$DOORMAN_CLIENT_FILE`, else `client.json` in doorman's
/// directory of the user's config directory (`$XDG_CONFIG_HOME`, else `~/.config`).
pub fn default_path(env: impl Fn(&str) -> Option<String>) -> Result<PathBuf, SessionError> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(file) = set(FILE_ENV) {
        return Ok(PathBuf::from(file));
    }
    let config = match set("XDG_CONFIG_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(set("HOME").ok_or(SessionError::NoLocation)?).join(".config"),
    };
    Ok(config.join("doorman").join("client.json"))
}

/// The stored session, or `None` when there is none.
pub fn load(path: &Path) -> Result<Option<Session>, SessionError> {
    let io = |source| SessionError::Io {
        path: path.to_owned(),
        source,
    };
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SessionError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| SessionError::Corrupt {
            path: path.to_owned(),
            source,
        })
}

/// Replaces the stored session with `session`: never a half-written file, never a moment
/// when the tokens are readable by others.
pub fn save(path: &Path, session: &Session) -> Result<(), SessionError> {
    let io = |source| SessionError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let text = serde_json::to_vec_pretty(session).map_err(|e| io(e.into()))?;
    let name = path.file_name().map_or_else(
        || "client.json".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&text)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.map_err(io)
}

/// Forgets the stored session; whether there was one.
pub fn remove(path: &Path) -> Result<bool, SessionError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(SessionError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn session() -> Session {
        Session {
            base_url: "https://auth.example.com/".into(),
            username: "alice".into(),
            access: "a.b.c".into(),
            refresh: "d.e.f".into(),
        }
    }

    #[test]
    fn saved_0600_in_a_0700_directory_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doorman/client.json");
        assert!(load(&path).unwrap().is_none());
        save(&path, &session()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let back = load(&path).unwrap().unwrap();
        assert_eq!(back.refresh, "d.e.f");
        // Replaced in place; no temporary left behind.
        save(
            &path,
            &Session {
                access: "g.h.i".into(),
                ..session()
            },
        )
        .unwrap();
        assert_eq!(load(&path).unwrap().unwrap().access, "g.h.i");
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        assert!(remove(&path).unwrap());
        assert!(!remove(&path).unwrap());
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.json");
        save(&path, &session()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load(&path), Err(SessionError::TooOpen { .. })));
    }

    #[test]
    fn a_broken_file_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.json");
        std::fs::write(&path, "{not json").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load(&path), Err(SessionError::Corrupt { .. })));
    }

    #[test]
    fn the_path_follows_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            default_path(env(&[(FILE_ENV, "/x/s.json"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/x/s.json")
        );
        assert_eq!(
            default_path(env(&[("XDG_CONFIG_HOME", "/c"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/c/doorman/client.json")
        );
        assert_eq!(
            default_path(env(&[("HOME", "/h")])).unwrap(),
            PathBuf::from("/h/.config/doorman/client.json")
        );
        assert!(default_path(env(&[])).is_err());
    }
}
