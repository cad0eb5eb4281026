//! `<data-dir>/master.key`: the SQLite backend's master key when none is
//! given (`HERALD_MASTER_KEY`), generated at first start, mode 0600.
//!
//! A rotation without `HERALD_MASTER_KEY` writes the new key to
//! `master.key.next` (synced) *before* sealing anything under it, and
//! renames it over `master.key` only after the database committed. A crash
//! in between leaves both files; the next open loads both and finishes
//! (or discards) the switch by what the database says is in force, so no
//! crash can leave secrets sealed under a key that exists nowhere.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::domain::secret::{Keyring, MasterKey, MasterKeyId};
use crate::store::{StoreError, StoreResult};

pub(super) fn current_path(data_dir: &Path) -> PathBuf {
    data_dir.join("master.key")
}

pub(super) fn next_path(data_dir: &Path) -> PathBuf {
    data_dir.join("master.key.next")
}

/// The keyring from the files: `master.key` (generated if missing) first,
/// plus `master.key.next` if a rotation left one.
pub(super) fn load_or_create(data_dir: &Path) -> StoreResult<Keyring> {
    let path = current_path(data_dir);
    let current = match read(&path)? {
        Some(key) => key,
        None => {
            let key = MasterKey::generate().map_err(|e| StoreError::Unavailable(e.message))?;
            write_private(&path, &key)?;
            tracing::info!(path = %path.display(), key = %key.id(), "generated the master key that seals signing secrets; back it up with the database");
            key
        }
    };
    let next = read(&next_path(data_dir))?;
    Ok(Keyring::new(current, next.into_iter().collect()))
}

/// After open: makes the files agree with the key in force.
pub(super) fn settle(data_dir: &Path, in_force: &MasterKeyId) -> StoreResult<()> {
    let next = next_path(data_dir);
    let Some(key) = read(&next)? else { return Ok(()) };
    if key.id() == in_force {
        install_next(data_dir)
    } else {
        std::fs::remove_file(&next).map_err(|e| StoreError::Unavailable(format!("removing {}: {e}", next.display())))
    }
}

/// Writes `key` as `master.key.next`, synced.
pub(super) fn write_next(data_dir: &Path, key: &MasterKey) -> StoreResult<()> {
    write_private(&next_path(data_dir), key)
}

/// Renames `master.key.next` over `master.key` and syncs the directory.
pub(super) fn install_next(data_dir: &Path) -> StoreResult<()> {
    let fail = |e: std::io::Error| StoreError::Unavailable(format!("installing the new master key: {e}"));
    std::fs::rename(next_path(data_dir), current_path(data_dir)).map_err(fail)?;
    std::fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(fail)
}

fn read(path: &Path) -> StoreResult<Option<MasterKey>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = zeroize::Zeroizing::new(text);
            MasterKey::parse(&text)
                .map(Some)
                .map_err(|e| StoreError::MasterKey(format!("{} is not a master key: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Unavailable(format!("reading {}: {e}", path.display()))),
    }
}

fn write_private(path: &Path, key: &MasterKey) -> StoreResult<()> {
    let fail = |e: std::io::Error| StoreError::Unavailable(format!("writing {}: {e}", path.display()));
    let mut options = std::fs::File::options();
    options.create(true).truncate(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(fail)?;
    let text = key.expose_secret();
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.write_all(b"\n").map_err(fail)?;
    file.sync_all().map_err(fail)
}
