//! The store contract: what `herald::store` promises through `Arc<dyn
//! Store>`, checked directly (no HTTP) and identically on every backend.
//!
//! Each contract is written once with [`contract_test!`] and runs twice:
//! `<contract>::sqlite` on a fresh data directory and
//! `<contract>::postgres` on a fresh database (`herald_t_<time>_<random>`,
//! created from `HERALD_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Without a reachable
//! PostgreSQL the PostgreSQL half prints `SKIPPED: …` and passes, except
//! under `CI=true`, where it fails.

/// `contract_test!(fn name(h) { … })` expands to a module `name` with two
/// `#[tokio::test]`s, `sqlite` and `postgres`, each running the body with
/// `h` a fresh [`support::Harness`] and closing its store(s) afterwards.
macro_rules! contract_test {
    ($(#[$meta:meta])* fn $name:ident($h:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                #[allow(unused_mut)]
                let mut $h = $crate::support::Harness::sqlite().await;
                $body
                $h.close().await;
            }

            #[tokio::test]
            async fn postgres() {
                let Some(mut $h) = $crate::support::Harness::postgres().await else {
                    return;
                };
                $body
                $h.close().await;
            }
        }
    };
}

mod support;

mod batches;
mod controls;
mod delivery_log;
mod event_types;
mod health;
mod operations;
mod projects;
mod publish;
mod queue;
mod sealed_keys;
mod secrets;
mod webhooks;
