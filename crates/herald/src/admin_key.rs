//! The admin key: from `HERALD_ADMIN_KEY`, else `<data-dir>/admin.key`,
//! else generated at first start, written there (mode 0600) and shown once.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const MIN_LEN: usize = 16;

/// Where the admin key came from.
pub enum AdminKey {
    FromEnvironment(String),
    FromFile(String),
    /// Made now: the caller shows it once.
    Generated {
        key: String,
        path: std::path::PathBuf,
    },
}

impl AdminKey {
    pub fn key(&self) -> &str {
        match self {
            Self::FromEnvironment(key) | Self::FromFile(key) | Self::Generated { key, .. } => key,
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
        return Ok(AdminKey::FromEnvironment(from_environment(key)?));
    }
    let path = data_dir.join("admin.key");
    if path.exists() {
        let key = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let key = key.trim().to_owned();
        if key.len() < MIN_LEN {
            bail!("{} holds a key shorter than {MIN_LEN} characters", path.display());
        }
        return Ok(AdminKey::FromFile(key));
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
