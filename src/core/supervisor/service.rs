//! One supervised service: its definition, where it is in its life
//! (`Phase`), and how that maps to the contract's four status words.

use super::failure::Cause;
use crate::core::definition::Definition;
use serde::{Deserialize, Serialize};
use std::time::Instant;

pub type Pid = i32;

/// Where a definition came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    File,
    Api,
}

/// What the user asked for last; persisted, so a user-stopped service stays
/// stopped across restarts of the init (s6's "wanted up").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Wanted {
    Up,
    Down,
}

/// What to do once a stopping service's processes are all gone.
#[derive(Clone, Debug, PartialEq)]
pub enum AfterStop {
    /// `stopped`.
    Rest,
    /// `failed` for this cause.
    Fail(Cause),
    /// Start again at once (restart, or start during stop).
    Restart,
    /// Start again after the backoff delay (crash under the restart policy).
    Backoff,
    /// Remove the definition.
    Delete,
    /// A oneshot exited 0: `stopped`, and done for this boot.
    Complete,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    Stopped,
    Failed,
    /// Wanted up; waiting for every need to be `running`.
    WaitingNeeds,
    /// A spawn was requested; the loop answers with `on_spawned`.
    Spawning,
    /// Spawned; waiting for its readiness check to pass (or, for a
    /// oneshot, for its process to exit).
    Starting {
        pid: Pid,
    },
    Running {
        pid: Pid,
        since: Instant,
    },
    /// SIGTERM sent (pid is the main process), or the main process is gone
    /// (pid None) and the rest of its tree is being killed and waited for.
    Stopping {
        pid: Option<Pid>,
        then: AfterStop,
    },
    /// Crashed; a restart timer is armed.
    BackingOff,
}

impl Phase {
    /// The only mapping from internal phases to the contract's words.
    pub fn status_word(&self) -> &'static str {
        match self {
            Phase::Running { .. } => "running",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
            _ => "unknown",
        }
    }
    /// Has processes, or is on its way to having them.
    pub fn is_active(&self) -> bool {
        !matches!(self, Phase::Stopped | Phase::Failed)
    }
    pub fn main_pid(&self) -> Option<Pid> {
        match self {
            Phase::Starting { pid } | Phase::Running { pid, .. } => Some(*pid),
            Phase::Stopping { pid, .. } => *pid,
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub def: Definition,
    pub source: Source,
    /// A drop-in file that could not be read or parsed: the service exists
    /// (so the user sees why) but cannot start.
    pub broken: Option<String>,
    pub phase: Phase,
    pub wanted: Wanted,
    pub exit_code: Option<i32>,
    pub restarts: u32,
    pub backoff_level: u32,
    pub started_at: Option<Instant>,
    pub error: Option<String>,
    /// Process group (== session) of the current or last process tree.
    pub pgid: Option<Pid>,
    /// Bumped on every phase change: timers and probes carry it, so a stale
    /// one is ignored instead of cancelled.
    pub gen: u64,
    /// A oneshot that exited 0 in this boot (and has not run since).
    pub completed: bool,
    /// The last result of the readiness check, in words.
    pub health_result: Option<String>,
    /// The last result of the liveness check, in words.
    pub liveness_result: Option<String>,
    /// Failed liveness checks, in total.
    pub liveness_failures: u32,
    /// Failed liveness checks in a row since the last one that passed.
    pub liveness_in_row: u32,
    /// `error` says why liveness or an OOM kill restarted it: it stays once
    /// the service runs again, until the next start request or failure.
    pub keep_error: bool,
    /// The last `STATUS=` the service sent over `NOTIFY_SOCKET`.
    pub status_text: Option<String>,
}

impl Service {
    pub fn new(name: &str, def: Definition, source: Source) -> Service {
        Service {
            name: name.to_string(),
            def,
            source,
            broken: None,
            phase: Phase::Stopped,
            wanted: Wanted::Down,
            exit_code: None,
            restarts: 0,
            backoff_level: 0,
            started_at: None,
            error: None,
            pgid: None,
            gen: 0,
            completed: false,
            health_result: None,
            liveness_result: None,
            liveness_failures: 0,
            liveness_in_row: 0,
            keep_error: false,
            status_text: None,
        }
    }

    pub fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
        self.gen = self.gen.wrapping_add(1);
    }

    pub fn status_word(&self) -> &'static str {
        self.phase.status_word()
    }
}
