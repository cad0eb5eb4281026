//! The admin key: from `HERALD_ADMIN_KEY`, else `<data-dir>/admin.key`,
//! else generated at first start, written there (mode 0600) and shown once.
//!
//! A file never lies: when `HERALD_ADMIN_KEY` is set, an `admin.key` holding
//! another key (which would now be refused) is removed, not left behind.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const MIN_LEN: usize = 16;

/// Where the admin key came from.
pub enum AdminKey {
    FromEnvironment {
        key: String,
        /// An `admin.key` holding a different key, removed now.
        removed_stale_file: Option<std::path::PathBuf>,
    },
    FromFile {
        key: String,
        path: std::path::PathBuf,
    },
    /// Made now: the caller shows it once.
    Generated {
        key: String,
        path: std::path::PathBuf,
    },
}

impl AdminKey {
    pub fn key(&self) -> &str {
        match self {
            Self::FromEnvironment { key, .. } | Self::FromFile { key, .. } | Self::Generated { key, .. } => key,
        }
    }

    /// Which key is in force, for the start-up log (never the key itself).
    pub fn describe(&self) -> String {
        match self {
            Self::FromEnvironment {
                removed_stale_file: None,
                ..
            } => "the admin key is HERALD_ADMIN_KEY".into(),
            Self::FromEnvironment {
                removed_stale_file: Some(path),
                ..
            } => format!(
                "the admin key is HERALD_ADMIN_KEY; removed {}, which held an older key that would now be refused",
                path.display()
            ),
            Self::FromFile { path, .. } => format!("the admin key is the one in {}", path.display()),
            Self::Generated { path, .. } => format!("the admin key was generated and saved to {}", path.display()),
        }
    }
}

/// `HERALD_ADMIN_KEY`, checked.
pub fn from_environment(key: String) -> anyhow::Result<String> {
    let key = key.trim().to_owned();
    if key.len() < MIN_LEN {
        bail!("HERALD_ADMIN_KEY must be at least {MIN_LEN} characters");
    }
    Ok(key)
}

pub fn load_or_create(data_dir: &Path, from_env: Option<String>) -> anyhow::Result<AdminKey> {
    if let Some(key) = from_env {
        let key = from_environment(key)?;
        let path = data_dir.join("admin.key");
        let stale = std::fs::read_to_string(&path).is_ok_and(|stored| stored.trim() != key);
        let removed_stale_file = if stale {
            std::fs::remove_file(&path).with_context(|| {
                format!(
                    "removing {}, which holds a key other than HERALD_ADMIN_KEY",
                    path.display()
                )
            })?;
            Some(path)
        } else {
            None
        };
        return Ok(AdminKey::FromEnvironment {
            key,
            removed_stale_file,
        });
    }
    let path = data_dir.join("admin.key");
    if path.exists() {
        let key = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let key = key.trim().to_owned();
        if key.len() < MIN_LEN {
            bail!("{} holds a key shorter than {MIN_LEN} characters", path.display());
        }
        return Ok(AdminKey::FromFile { key, path });
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let key = generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{key}").with_context(|| format!("writing {}", path.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", path.display()))?;
    Ok(AdminKey::Generated { key, path })
}

/// A new random admin key (256 bits).
pub fn generate() -> String {
    format!("hra_{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_key_replaces_a_stale_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let generated = load_or_create(dir.path(), None).expect("generated");
        let path = dir.path().join("admin.key");
        assert!(path.exists());

        let same = load_or_create(dir.path(), Some(generated.key().to_owned())).expect("same key");
        assert!(matches!(
            same,
            AdminKey::FromEnvironment {
                removed_stale_file: None,
                ..
            }
        ));
        assert!(path.exists(), "a file holding the key in force is not stale");

        let other = "env-admin-key-0123456789".to_owned();
        let from_env = load_or_create(dir.path(), Some(other.clone())).expect("env key");
        assert_eq!(from_env.key(), other);
        assert!(from_env.describe().contains("removed"), "{}", from_env.describe());
        assert!(!path.exists(), "the file that would answer 401 is gone");
    }
}
