//! The reactor: the one `mio` loop. It is the only code that names the
//! loop struct; it turns kernel events into supervisor inputs, routes the
//! supervisor's actions and the subsystems' effects, and writes the state
//! file before the answers that depend on it.

mod checks;
mod event_loop;
mod events;
mod reap;
mod reaping;
mod requests;
mod restore;
mod route;

pub use event_loop::Reactor;

#[cfg(test)]
mod tests;
