//! A webhook's signing secret in memory: minted here, shown (truncated)
//! from here, and handed to the signer from here. Nothing else reads its
//! bytes; the database sees it only sealed (see `keyring`).

use herald_signature::{Ed25519SecretKey, HmacKey, SigningKey};
use zeroize::Zeroizing;

use crate::domain::{Invalid, SigningKind};

/// Characters of an HMAC secret the API may show (`whsec_` and 6 of its
/// 44 base64 characters: 36 of 256 bits, enough to tell secrets apart).
const TRUNCATED_CHARS: usize = 12;

/// An HMAC (`whsec_`) or Ed25519 (`whsk_`) signing secret. No `Display`;
/// `Debug` shows only the kind.
#[derive(Clone)]
pub struct SecretMaterial {
    key: SigningKey,
}

impl SecretMaterial {
    /// A fresh secret of `kind` from the operating system's RNG.
    pub fn mint(kind: SigningKind) -> Result<Self, Invalid> {
        let key = match kind {
            SigningKind::Hmac => HmacKey::try_generate().map(SigningKey::Hmac),
            SigningKind::Ed25519 => Ed25519SecretKey::try_generate().map(SigningKey::Ed25519),
            SigningKind::Job(_) => {
                return Err(Invalid::new(
                    "a per-job webhook has no secret of its own: Herald's keys sign it",
                ));
            }
        }
        .map_err(|e| Invalid::new(format!("cannot mint a signing secret: {e}")))?;
        Ok(Self { key })
    }

    /// Parses the text form (`whsec_…`, `whsk_…`) strictly.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        SigningKey::parse(text)
            .map(|key| Self { key })
            .map_err(|e| Invalid::new(e.to_string()))
    }

    pub fn kind(&self) -> SigningKind {
        match self.key {
            SigningKey::Hmac(_) => SigningKind::Hmac,
            SigningKey::Ed25519(_) => SigningKind::Ed25519,
        }
    }

    /// The key the signer signs with.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// `whpk_…` for Ed25519 (what receivers verify with); `None` for HMAC.
    pub fn public_key(&self) -> Option<String> {
        match &self.key {
            SigningKey::Hmac(_) => None,
            SigningKey::Ed25519(key) => Some(key.public_key().to_string()),
        }
    }

    /// What the API shows of the secret ever after: the first characters of
    /// an HMAC secret (`whsec_AbCdEf…`), or an Ed25519 public key.
    pub fn display(&self) -> String {
        match &self.key {
            SigningKey::Hmac(key) => {
                let text = key.expose_secret();
                let cut: String = text.chars().take(TRUNCATED_CHARS).collect();
                format!("{cut}…")
            }
            SigningKey::Ed25519(key) => key.public_key().to_string(),
        }
    }

    /// What the user is shown once, when the secret is made: the HMAC
    /// secret (they sign-verify with it), or for Ed25519 nothing secret —
    /// Herald keeps the private key and receivers need only the public one.
    pub fn reveal_once(&self) -> Option<Zeroizing<String>> {
        match &self.key {
            SigningKey::Hmac(key) => Some(key.expose_secret()),
            SigningKey::Ed25519(_) => None,
        }
    }

    /// The text form, for sealing (`keyring`) only.
    pub(super) fn expose_secret(&self) -> Zeroizing<String> {
        match &self.key {
            SigningKey::Hmac(key) => key.expose_secret(),
            SigningKey::Ed25519(key) => key.expose_secret(),
        }
    }
}

impl std::fmt::Debug for SecretMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretMaterial")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_secrets_show_only_what_may_be_shown() {
        let hmac = SecretMaterial::mint(SigningKind::Hmac).expect("minted");
        let text = hmac.reveal_once().expect("an HMAC secret is shown once");
        assert!(text.starts_with("whsec_"));
        assert_eq!(hmac.display(), format!("{}…", &text[..12]));
        assert!(hmac.public_key().is_none());
        assert!(!format!("{hmac:?}").contains(&text[6..]));
        assert_eq!(SecretMaterial::parse(&text).expect("parses").kind(), SigningKind::Hmac);

        let ed = SecretMaterial::mint(SigningKind::Ed25519).expect("minted");
        assert!(ed.reveal_once().is_none());
        let public = ed.public_key().expect("a public key");
        assert!(public.starts_with("whpk_"));
        assert_eq!(ed.display(), public);
        assert!(SecretMaterial::parse("whsec_!!!!").is_err());
    }
}
