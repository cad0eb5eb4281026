//! `[health]` (auto-disable, recovery events) and `[retention]` (how long
//! finished work is kept).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::domain::health::HealthPolicy;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Auto-disable needs no successful delivery for this long...
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
    /// ...and this many failed scheduled attempts in a row (`0`: never).
    pub disable_after_failures: u32,
    /// `delivery.recovered` needs a run of at least this many failures.
    pub recovered_after_failures: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        let policy = HealthPolicy::default();
        Self {
            disable_after: policy.disable_after,
            disable_after_failures: policy.disable_after_failures,
            recovered_after_failures: policy.recovered_after_failures,
        }
    }
}

impl HealthConfig {
    pub fn policy(&self) -> HealthPolicy {
        HealthPolicy {
            disable_after: self.disable_after,
            disable_after_failures: self.disable_after_failures,
            recovered_after_failures: self.recovered_after_failures.max(1),
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.recovered_after_failures == 0 {
            return Err(ConfigError {
                field: "health.recovered_after_failures",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Finished deliveries, their attempts and their events' payloads
    /// older than this are pruned (an event with unfinished work never is).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl RetentionConfig {
    pub(super) fn validate(&self, delivery_max_age: Duration) -> Result<(), ConfigError> {
        if self.max_age <= delivery_max_age {
            return Err(ConfigError {
                field: "retention.max_age",
                message: "must be longer than delivery.max_age (work still being retried is never pruned)".into(),
            });
        }
        Ok(())
    }
}
