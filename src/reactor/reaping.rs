//! The reaper's state in the loop: whether SIGCHLD is held, the orphan
//! attribution budget, and the process groups whose orphans are known.

use crate::core::supervisor::Pid;
use crate::proc::reaper::Reaped;
use std::time::Instant;

/// Orphans a second whose service is looked up (see `Attribution`).
pub(super) const ATTRIBUTION_RATE: f64 = 1000.0;

/// The reaper's state in the loop.
pub(super) struct Reaping {
    /// SIGCHLD is left pending on purpose; a `TimerKey::Reap` looks again.
    pub(super) held: bool,
    /// When a reap last found an exit.
    pub(super) last_exit: Option<Instant>,
    /// Orphan attributions left, and when the budget was last refilled.
    pub(super) budget: f64,
    pub(super) refilled: Instant,
    /// Services whose own process group had orphans lately, with it:
    /// their orphans are reaped by group and attributed without a look.
    pub(super) hot: Vec<HotGroup>,
    /// Exits of the last reap (kept to reuse the allocation).
    pub(super) exits: Vec<Reaped>,
}

impl Reaping {
    pub(super) fn new(now: Instant) -> Reaping {
        Reaping {
            held: false,
            last_exit: None,
            budget: ATTRIBUTION_RATE,
            refilled: now,
            hot: Vec::new(),
            exits: Vec::new(),
        }
    }
}

/// A service's process group that had orphans lately.
pub(super) struct HotGroup {
    pub(super) service: String,
    pub(super) pgid: Pid,
    /// When it last had an orphan.
    pub(super) seen: Instant,
}
