//! Herald: the server and CLI. See `ARCHITECTURE.md` at the repository root
//! for the code map and the invariants each module keeps.

pub mod admin_key;
pub mod api;
pub mod app;
pub mod batch;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod maintenance;
pub mod master_key;
pub mod net;
pub mod operation_sweep;
pub mod replay;
pub mod server_keys;
pub mod store;
pub mod telemetry;
pub mod work;
