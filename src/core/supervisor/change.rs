//! What the supervisor announces each time a service's status or pid
//! changes: why (`Reason`), and the service's fields as they were right
//! then. Made at the change itself, once, so announcements come in the
//! order the changes happened and nobody has to diff states.

use super::service::{Pid, Service};

/// Why a service changed: the contract's `reason` words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Its process was spawned (`running` at once without a health check).
    Started,
    /// Its health check passed: `running`.
    Ready,
    /// Its main process exited (the rest of its tree is being ended).
    Exited,
    /// It is started again: after a crash (under its restart policy) or a
    /// restart request or a changed definition.
    Restarting,
    Stopped,
    Failed,
    Deleted,
    /// Its definition was created or replaced.
    Defined,
    /// A liveness check failed and it is restarted.
    Liveness,
    /// Its main process exited because the kernel's OOM killer struck.
    Oom,
}

impl Reason {
    pub fn word(self) -> &'static str {
        match self {
            Reason::Started => "started",
            Reason::Ready => "ready",
            Reason::Exited => "exited",
            Reason::Restarting => "restarting",
            Reason::Stopped => "stopped",
            Reason::Failed => "failed",
            Reason::Deleted => "deleted",
            Reason::Defined => "defined",
            Reason::Liveness => "liveness",
            Reason::Oom => "oom",
        }
    }
}

/// A service's change and its fields at that moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub name: String,
    pub reason: Reason,
    pub status: &'static str,
    pub pid: Option<Pid>,
    pub exit_code: Option<i32>,
    pub restarts: u32,
    pub error: Option<String>,
}

impl Change {
    pub fn of(svc: &Service, reason: Reason) -> Change {
        Change {
            name: svc.name.clone(),
            reason,
            status: svc.status_word(),
            pid: svc.phase.main_pid(),
            exit_code: svc.exit_code,
            restarts: svc.restarts,
            error: svc.error.clone(),
        }
    }

    /// The last word on a service that is gone.
    pub fn deleted(svc: &Service) -> Change {
        Change {
            status: "stopped",
            pid: None,
            ..Change::of(svc, Reason::Deleted)
        }
    }
}
