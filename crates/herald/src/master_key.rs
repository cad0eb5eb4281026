//! Where the master keys come from: `HERALD_MASTER_KEY` (the key new
//! secrets are sealed under once it is in force) and
//! `HERALD_PREVIOUS_MASTER_KEYS` (comma-separated keys still accepted for
//! opening, during a master-key rotation). Unset on SQLite, the store uses
//! `<data-dir>/master.key` instead; on PostgreSQL the store refuses to
//! start without them.
//!
//! The keys are never settings: `herald config` does not print them and a
//! TOML file cannot hold them.

use anyhow::{Context, bail};

use crate::domain::secret::{Keyring, MasterKey};

pub const PRIMARY_VARIABLE: &str = "HERALD_MASTER_KEY";
pub const PREVIOUS_VARIABLE: &str = "HERALD_PREVIOUS_MASTER_KEYS";

/// The keyring the environment gives, if it gives one.
pub fn from_environment() -> anyhow::Result<Option<Keyring>> {
    let primary = std::env::var(PRIMARY_VARIABLE).ok().map(zeroize::Zeroizing::new);
    let previous = std::env::var(PREVIOUS_VARIABLE).ok().map(zeroize::Zeroizing::new);
    keyring(
        primary.as_deref().map(String::as_str),
        previous.as_deref().map(String::as_str),
    )
}

/// The keyring from the two variables' values.
pub fn keyring(primary: Option<&str>, previous: Option<&str>) -> anyhow::Result<Option<Keyring>> {
    let previous = previous.map(str::trim).filter(|text| !text.is_empty());
    let Some(primary) = primary.map(str::trim).filter(|text| !text.is_empty()) else {
        if previous.is_some() {
            bail!("{PREVIOUS_VARIABLE} is set but {PRIMARY_VARIABLE} is not: set both during a master-key rotation");
        }
        return Ok(None);
    };
    let primary = MasterKey::parse(primary)
        .map_err(anyhow::Error::msg)
        .context(PRIMARY_VARIABLE)?;
    let previous = previous
        .into_iter()
        .flat_map(|text| text.split(','))
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .enumerate()
        .map(|(index, text)| {
            MasterKey::parse(text)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{PREVIOUS_VARIABLE}, key {}", index + 1))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(Keyring::new(primary, previous)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_make_a_keyring_or_a_clear_error() {
        let a = MasterKey::generate().expect("key");
        let b = MasterKey::generate().expect("key");
        assert!(keyring(None, None).expect("none").is_none());
        assert!(keyring(Some("  "), None).expect("blank is unset").is_none());
        let ring = keyring(
            Some(&a.expose_secret()),
            Some(&format!(" {} ,", b.expose_secret().as_str())),
        )
        .expect("valid")
        .expect("given");
        assert_eq!(ring.ids(), vec![a.id().clone(), b.id().clone()]);
        let error = keyring(None, Some(&b.expose_secret())).expect_err("previous alone");
        assert!(error.to_string().contains(PRIMARY_VARIABLE));
        let error = keyring(Some("short"), None).expect_err("invalid");
        assert!(format!("{error:#}").contains(PRIMARY_VARIABLE));
        let error = keyring(Some(&a.expose_secret()), Some("x")).expect_err("invalid previous");
        assert!(format!("{error:#}").contains("key 1"), "{error:#}");
    }
}
