//! The rotation rule: when the secrets a rotation replaces stop signing.

use std::time::Duration;

use crate::domain::Timestamp;

/// How long replaced secrets keep signing by default, so receivers can
/// switch to the new one without rejecting a single delivery.
pub const REVOCATION_OVERLAP: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RevocationBehavior {
    /// Replaced secrets keep signing for 24 hours beside the new one.
    #[default]
    AfterH24,
    /// Replaced secrets stop signing at once (a leaked secret).
    Immediately,
}

impl RevocationBehavior {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "revoke_previous_secrets_after_h24" => Some(Self::AfterH24),
            "revoke_previous_secrets_immediately" => Some(Self::Immediately),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AfterH24 => "revoke_previous_secrets_after_h24",
            Self::Immediately => "revoke_previous_secrets_immediately",
        }
    }

    /// When the secrets signing at `now` stop signing. A secret already
    /// due to expire earlier (a previous rotation's overlap) keeps its
    /// earlier time: a rotation never extends a secret's life.
    pub fn previous_expire_time(self, now: Timestamp) -> Timestamp {
        match self {
            Self::AfterH24 => now.saturating_add(REVOCATION_OVERLAP),
            Self::Immediately => now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviors_parse_and_set_expiry() {
        let now = Timestamp::from_millis(1_000);
        assert_eq!(
            RevocationBehavior::parse("revoke_previous_secrets_after_h24"),
            Some(RevocationBehavior::AfterH24)
        );
        assert_eq!(RevocationBehavior::parse("later"), None);
        assert_eq!(RevocationBehavior::Immediately.previous_expire_time(now), now);
        assert_eq!(
            RevocationBehavior::default().previous_expire_time(now).as_millis(),
            1_000 + 86_400_000
        );
        for b in [RevocationBehavior::AfterH24, RevocationBehavior::Immediately] {
            assert_eq!(RevocationBehavior::parse(b.as_str()), Some(b));
        }
    }
}
