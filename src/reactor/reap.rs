//! Signals and reaping: SIGCHLD becomes supervisor inputs (a service's
//! exit) or goes to the subsystem whose child it was (a pending start, an
//! exec, a container tool); orphans are counted. Shutdown signals start
//! the orderly shutdown.
//!
//! A child exit is reaped at once. When orphans come in a run (one within
//! `HOLD` of the last), SIGCHLD is left pending for `HOLD` after each reap
//! that found orphans: further exits then wake nobody, and the next look
//! reaps all of them in one go (an orphan storm costs a wake-up every few
//! milliseconds, not one per orphan). A look that finds no orphan takes
//! SIGCHLD off, so the next exit wakes the loop again: services' own exits,
//! however close together, are never held.

use super::event_loop::Reactor;
use super::reaping::{HotGroup, ATTRIBUTION_RATE};
use crate::core::supervisor::{ExitStatus, Input, Pid, Supervisor};
use crate::io::TimerKey;
use crate::pid1::HaltMode;
use crate::proc::cgroup::Cgroups;
use crate::proc::launcher::{Launcher, PendingExit};
use crate::proc::reaper::{self, Peek, Reaped};
use libc::{SIGHUP, SIGINT, SIGPWR, SIGTERM, SIGUSR1, SIGUSR2};
use std::time::{Duration, Instant};

/// How long SIGCHLD stays pending after a reap that found orphans, in a
/// run of them: the longest a zombie (or a service's exit) then waits.
const HOLD: Duration = Duration::from_millis(4);
/// A hot process group with no orphan for this long is looked up again.
const HOT_FOR: Duration = Duration::from_secs(1);
/// Attributes an orphan to the service whose cgroup it died in (read while
/// it is still a zombie). Reading `/proc/PID/cgroup` costs more than the
/// rest of a reap (on a hybrid host it lists every v1 hierarchy), so only
/// `ATTRIBUTION_RATE` a second are looked at; the rest are reaped without
/// a look. An orphan still in its service's own process group makes that
/// group hot: the next orphans of the group are reaped by it
/// (`reap_group`) and attributed without any look.
struct Attribution<'a> {
    budget: &'a mut f64,
    cgroups: Option<&'a Cgroups>,
    sup: &'a Supervisor,
    launcher: &'a Launcher,
    hot: &'a mut Vec<HotGroup>,
    now: Instant,
}

impl Peek for Attribution<'_> {
    fn wants(&self) -> bool {
        self.cgroups.is_some() && *self.budget >= 1.0
    }

    fn peek(&mut self, pid: Pid) -> Option<String> {
        // A service's own process or a pending start is no orphan.
        if self.sup.owner_of(pid).is_some() || self.launcher.is_pending(pid) {
            return None;
        }
        *self.budget -= 1.0;
        let owner = self.cgroups?.owner_of_pid(pid)?;
        let pgid = self.sup.get(&owner).and_then(|s| s.pgid);
        let group = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid))).ok();
        if let Some(pgid) = pgid.filter(|p| group.is_some_and(|g| g.as_raw() == *p)) {
            if !self.hot.iter().any(|h| h.pgid == pgid) {
                self.hot.push(HotGroup {
                    service: owner.clone(),
                    pgid,
                    seen: self.now,
                });
            }
        }
        Some(owner)
    }
}

impl Reactor {
    pub(super) fn on_signals(&mut self) {
        for sig in self.signals.take_others() {
            match sig {
                SIGTERM | SIGPWR => self.begin_shutdown(HaltMode::PowerOff, "signal"),
                SIGINT if self.stats.pid1 => self.begin_shutdown(HaltMode::Reboot, "ctrl-alt-del"),
                SIGINT => self.begin_shutdown(HaltMode::PowerOff, "SIGINT"),
                // busybox halt/poweroff signal PID 1 with these.
                SIGUSR1 | SIGUSR2 if self.stats.pid1 => {
                    self.begin_shutdown(HaltMode::PowerOff, "halt")
                }
                SIGHUP => crate::info!("SIGHUP ignored"),
                _ => {}
            }
        }
    }

    /// SIGCHLD came. An exit is reaped with SIGCHLD taken off first (the
    /// next exit wakes the loop), unless orphans come in a run: then it is
    /// reaped with SIGCHLD held pending.
    pub(super) fn on_child_signal(&mut self, now: Instant) {
        let in_a_run = self
            .reaping
            .last_orphan
            .is_some_and(|t| now.saturating_duration_since(t) < HOLD);
        if in_a_run {
            self.reap_holding(now);
        } else {
            self.release_child_signal(now);
        }
    }

    /// The hold is over: reap what came meanwhile.
    pub(super) fn on_reap_timer(&mut self, now: Instant) {
        self.reaping.held = false;
        self.reap_holding(now);
    }

    /// Reaps with SIGCHLD pending; holds it for `HOLD` more while orphans
    /// come, and takes it off once a look finds none.
    fn reap_holding(&mut self, now: Instant) {
        if self.reap() == 0 {
            self.release_child_signal(now);
            return;
        }
        self.reaping.last_orphan = Some(now);
        if !self.reaping.held {
            self.reaping.held = true;
            self.io.schedule(now + HOLD, TimerKey::Reap);
        }
    }

    /// SIGCHLD off the pending set, then a look: an exit after this raises
    /// a new signal, one before it is reaped now.
    fn release_child_signal(&mut self, now: Instant) {
        self.signals.clear_child();
        if self.reap() > 0 {
            self.reaping.last_orphan = Some(now);
        }
    }

    /// Reaps every child that exited and routes each exit to its owner;
    /// returns how many of them were orphans.
    pub(super) fn reap(&mut self) -> usize {
        let now = Instant::now();
        let mut exits = std::mem::take(&mut self.reaping.exits);
        exits.clear();
        // Hot groups first. One with none of the init's children left, or
        // with no orphan for a while, is cold again.
        let mut hot = std::mem::take(&mut self.reaping.hot);
        hot.retain_mut(
            |h| match reaper::reap_group(&mut exits, h.pgid, &h.service) {
                None => false,
                Some(0) => now.saturating_duration_since(h.seen) < HOT_FOR,
                Some(_) => {
                    h.seen = now;
                    true
                }
            },
        );
        self.reaping.hot = hot;
        let n = exits.len() + self.collect_exits(&mut exits, now);
        let mut orphans = 0;
        for r in exits.drain(..) {
            if !self.route_exit(r.pid, r.status) {
                orphans += 1;
                self.stats.zombies_reaped += 1;
                if let Some(owner) = r.note {
                    *self.stats.orphans_by_service.entry(owner).or_insert(0) += 1;
                }
            }
        }
        self.reaping.exits = exits;
        // A reaped orphan may have been the last process of a stopping tree.
        if n > 0 {
            self.check_trees(now);
        }
        orphans
    }

    /// Every exited child, each orphan with the service it died in when
    /// the budget allowed a look.
    fn collect_exits(&mut self, exits: &mut Vec<Reaped>, now: Instant) -> usize {
        let elapsed = now
            .saturating_duration_since(self.reaping.refilled)
            .as_secs_f64();
        self.reaping.budget =
            (self.reaping.budget + elapsed * ATTRIBUTION_RATE).min(ATTRIBUTION_RATE);
        self.reaping.refilled = now;
        let mut look = Attribution {
            budget: &mut self.reaping.budget,
            cgroups: self.cgroups.as_ref(),
            sup: &self.sup,
            launcher: &self.launcher,
            hot: &mut self.reaping.hot,
            now,
        };
        reaper::reap_all(exits, &mut look)
    }

    /// Hands one exit to whoever owns the child; false for an orphan.
    fn route_exit(&mut self, pid: Pid, status: ExitStatus) -> bool {
        // A child that died before its exec was noticed: its error pipe
        // says whether it ever ran the service's program.
        match self.launcher.on_exit(&mut self.io, &self.sup, pid) {
            PendingExit::Unknown => {}
            PendingExit::Dropped => return true,
            PendingExit::Retry { name, gen } => {
                self.spawn(&name, gen, false);
                return true;
            }
            PendingExit::Answered { spawned, ran } => {
                self.feed(spawned);
                if !ran {
                    return true;
                }
            }
        }
        if let Some(name) = self.sup.owner_of(pid).map(str::to_string) {
            crate::info!("service '{name}' (pid {pid}) {}", status.describe());
            // Its last words reach the log before its exit is acted on.
            self.logs.drain(&name);
            self.with_driver(|c, cx| c.on_main_exit(cx, &name, pid));
            if self.oom_killed(&name, status) {
                crate::warn!("service '{name}' was killed by the OOM killer");
                self.feed(Input::OomKilled { pid, status });
            } else {
                self.feed(Input::Exited { pid, status });
            }
            return true;
        }
        if let Some(done) = self.execs.on_exit(&mut self.io, pid, status) {
            self.exec_done(done);
            return true;
        }
        self.with_driver(|c, cx| c.on_exit(cx, pid, status))
    }

    /// A SIGKILL of a service's main process is the OOM killer's when its
    /// cgroup counted a kill during this run (`memory.events`, counted
    /// before the signal is sent).
    fn oom_killed(&self, name: &str, status: ExitStatus) -> bool {
        if status != ExitStatus::Signal(libc::SIGKILL) {
            return false;
        }
        let before = self.stats.oom_base.get(name).copied().unwrap_or(0);
        self.cgroups
            .as_ref()
            .and_then(|cg| cg.oom_kills(name))
            .is_some_and(|n| n > before)
    }

    pub(super) fn begin_shutdown(&mut self, mode: HaltMode, why: &str) {
        if self.halt.is_some() {
            crate::info!("shutdown already in progress; ignoring {why}");
            return;
        }
        crate::info!("shutdown ({mode:?}) requested by {why}: stopping services");
        self.halt = Some(mode);
        self.publish_shutdown(mode, why);
        self.sup.shutdown(Instant::now());
    }
}
