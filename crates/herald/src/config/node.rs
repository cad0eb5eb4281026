//! `[node]`: what this process does and how it shows itself to the others
//! sharing a PostgreSQL database.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// What a node runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The HTTP API only: publishes, reads, management. No deliveries.
    Api,
    /// The dispatcher only (plus `/healthz`, `/readyz`, `/metrics`).
    Worker,
    /// Both (the default; the only sensible choice on SQLite).
    #[default]
    All,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "api" => Some(Self::Api),
            "worker" => Some(Self::Worker),
            "all" => Some(Self::All),
            _ => None,
        }
    }

    pub fn serves_api(self) -> bool {
        matches!(self, Self::Api | Self::All)
    }

    pub fn delivers(self) -> bool {
        matches!(self, Self::Worker | Self::All)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub role: Role,
    /// Unique among the nodes sharing a database, stable across restarts
    /// (a restarted node ends the leases its previous run held). Unset:
    /// `<hostname>:<listen port>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// PostgreSQL: how often this node says it is alive.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// PostgreSQL: a node silent this long is dead; any other node ends its
    /// leases (logged `interrupted`) so its deliveries resume.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            role: Role::All,
            name: None,
            heartbeat: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        }
    }
}

impl NodeConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat.is_zero() || self.timeout < self.heartbeat * 2 {
            return Err(ConfigError {
                field: "node.timeout",
                message: "node.heartbeat must be positive and node.timeout at least twice node.heartbeat".into(),
            });
        }
        if self
            .name
            .as_deref()
            .is_some_and(|name| name.is_empty() || name.len() > 200)
        {
            return Err(ConfigError {
                field: "node.name",
                message: "must be 1 to 200 characters".into(),
            });
        }
        Ok(())
    }
}
