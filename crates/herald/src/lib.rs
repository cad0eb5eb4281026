//! Herald: the server and CLI. See `ARCHITECTURE.md` at the repository root
//! for the code map and the invariants each module keeps.

pub mod cli;
