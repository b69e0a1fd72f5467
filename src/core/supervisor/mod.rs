//! The supervisor: every service's state machine, fed with events (a child
//! exited, a port accepted, a timer fired, a request arrived) and returning
//! actions for the event loop to carry out. It makes no syscalls, so it is
//! tested without processes.

pub mod backoff;
pub mod deps;
pub mod exit;
pub mod failure;
mod machine;
pub mod service;

pub use exit::ExitStatus;
pub use failure::{Cause, Failure, StartError};
pub use machine::{Action, Input, Outcome, Progress, SupError, Supervisor, Timer, TimerKind};
pub use service::{AfterStop, Phase, Pid, Service, Source, Wanted};
