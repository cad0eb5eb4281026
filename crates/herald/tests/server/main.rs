//! Integration tests of the Herald server: the real HTTP API and delivery
//! engine on 127.0.0.1, on SQLite (a temporary directory; binary `server`)
//! or PostgreSQL (a fresh database; binary `server_postgres`), and
//! scripted receivers on loopback. Time is a manual clock:
//! no test sleeps through a retry schedule.

mod support;

mod api;
mod availability;
mod batch_crash;
mod batch_webhooks;
mod batches;
mod connections;
mod controls;
mod crash;
mod deliveries;
mod delivery;
mod disk_full;
mod event_types;
mod genai;
mod health;
mod hostile;
mod job_webhooks;
mod limits;
mod live;
mod multinode;
mod openai_sdk;
mod operations;
mod operators;
mod pg_restart;
mod process;
mod queue;
mod replay;
mod retention;
mod secrets;
mod stats;
mod tls;
