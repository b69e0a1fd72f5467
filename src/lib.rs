//! iris-init: a PID-1 init and service supervisor for sandbox microVMs.
//!
//! Dependencies point one way: `core` (definitions, the supervisor state
//! machine) knows nothing of I/O; the subsystems (`api`, `proc`, `health`,
//! `output`, `containers`, `persist`) own their state; the `reactor` (the
//! one `mio` loop) is the only code that names the loop and routes between
//! them; the binaries sit on top.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::exit,
    clippy::indexing_slicing,
    clippy::undocumented_unsafe_blocks
)]

// What is `pub` is the facade the binaries, the integration tests, the
// bench and the fuzz targets use; everything else is `pub(crate)`, so the
// compiler reports what nothing uses.
#[macro_use]
pub mod console;

pub mod api;
pub mod client;
pub mod config;
pub mod containers;
pub mod core;
pub mod dropin;
pub(crate) mod health;
pub(crate) mod io;
pub(crate) mod output;
pub mod persist;
pub mod pid1;
pub mod proc;
pub mod reactor;
pub mod resume;
pub(crate) mod signals;
pub(crate) mod stats;
pub(crate) mod timers;
