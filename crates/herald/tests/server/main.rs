//! Integration tests of the Herald server: the real HTTP API and delivery
//! engine on 127.0.0.1, the embedded SQLite store in a temporary
//! directory, and scripted receivers on loopback. Time is a manual clock:
//! no test sleeps through a retry schedule.

mod support;

mod api;
mod connections;
mod crash;
mod delivery;
mod hostile;
mod limits;
mod live;
mod operators;
mod process;
mod queue;
mod tls;
