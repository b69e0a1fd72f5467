//! iris-init: a PID-1 init and service supervisor for sandbox microVMs.
//!
//! One single-threaded `mio` event loop (`event_loop`) feeds a pure
//! supervisor state machine (`supervisor`) with events and carries out the
//! actions it returns; the HTTP API (`api`) and the state file
//! (`state_file`) sit around it. Syscalls stay at the edges (`spawn`,
//! `reaper`, `cgroup`, `pid1`, `probe`).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::exit,
    clippy::undocumented_unsafe_blocks
)]

#[macro_use]
pub mod log;

pub mod api;
pub mod boot;
pub mod cgroup;
pub mod config;
pub mod container;
pub mod container_svc;
pub mod definition;
pub mod dropin;
pub mod event_loop;
pub mod exec;
pub mod launch;
pub mod logs;
pub mod pid1;
pub mod probe;
pub mod reaper;
pub mod restore;
pub mod spawn;
pub mod state_file;
pub mod supervisor;
pub mod timers;
