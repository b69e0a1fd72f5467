//! Waiting for a stopped service's process tree to be gone: every process
//! of its group and its cgroup, killed again while any is left (a forker
//! may race the first SIGKILL), given up on after a while.

use crate::core::supervisor::{Input, Pid};
use crate::io::{Io, TimerKey};
use crate::proc::cgroup::Cgroups;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid as NixPid;
use std::time::{Duration, Instant};

/// How a tree that is not gone yet is checked again.
const RECHECK: Duration = Duration::from_millis(5);
/// How long a stopped tree may take to disappear after SIGKILL before the
/// init gives up waiting (a process stuck in the kernel, say).
const GIVE_UP: Duration = Duration::from_secs(5);

struct TreeWatch {
    name: String,
    gen: u64,
    pgid: Pid,
    since: Instant,
}

#[derive(Default)]
pub(crate) struct TreeWatcher {
    trees: Vec<TreeWatch>,
    scheduled: bool,
}

impl TreeWatcher {
    pub(crate) fn is_idle(&self) -> bool {
        self.trees.is_empty()
    }

    /// Forgets a timer that fired or went stale.
    pub(crate) fn timer_gone(&mut self) {
        self.scheduled = false;
    }

    pub(crate) fn watch(&mut self, name: String, gen: u64, pgid: Pid, now: Instant) {
        self.trees.retain(|t| t.name != name);
        self.trees.push(TreeWatch {
            name,
            gen,
            pgid,
            since: now,
        });
    }

    /// The trees that are gone (or given up on), as supervisor inputs.
    /// `busy(name)`: something else still holds the service's processes
    /// (a container runtime deleting it).
    pub(crate) fn check(
        &mut self,
        io: &mut Io,
        cgroups: Option<&Cgroups>,
        busy: impl Fn(&str) -> bool,
        now: Instant,
    ) -> Vec<Input> {
        let mut done = Vec::new();
        let mut keep = Vec::new();
        for t in std::mem::take(&mut self.trees) {
            if !busy(&t.name) && tree_gone(&t, cgroups) {
                done.push(t);
            } else if now.saturating_duration_since(t.since) > GIVE_UP {
                crate::warn!(
                    "processes of '{}' survive SIGKILL; giving up waiting",
                    t.name
                );
                done.push(t);
            } else {
                // Keep killing: a forker may have raced the first SIGKILL.
                let _ = killpg(NixPid::from_raw(t.pgid), Signal::SIGKILL);
                if let Some(cg) = cgroups {
                    cg.kill_all(&t.name);
                }
                keep.push(t);
            }
        }
        self.trees = keep;
        if !self.trees.is_empty() && !self.scheduled {
            self.scheduled = true;
            io.schedule(now + RECHECK, TimerKey::TreeCheck);
        }
        done.into_iter()
            .map(|t| Input::TreeEmpty {
                name: t.name,
                gen: t.gen,
            })
            .collect()
    }
}

fn tree_gone(t: &TreeWatch, cgroups: Option<&Cgroups>) -> bool {
    if cgroups.is_some_and(|cg| !cg.is_empty(&t.name)) {
        return false;
    }
    // kill(-pgid, 0) fails with ESRCH once no process is left in the
    // group (zombies included, so reaped orphans count as gone).
    t.pgid <= 0 || kill(NixPid::from_raw(-t.pgid), None).is_err()
}
