//! Signals and reaping: SIGCHLD becomes supervisor inputs (a service's
//! exit) or goes to the subsystem whose child it was (a pending start, an
//! exec, a container tool); orphans are counted. Shutdown signals start
//! the orderly shutdown.

use super::event_loop::{Reactor, ATTRIBUTION_RATE};
use crate::core::supervisor::{ExitStatus, Input, Pid};
use crate::pid1::HaltMode;
use crate::proc::launcher::PendingExit;
use crate::proc::reaper;
use libc::{SIGCHLD, SIGHUP, SIGINT, SIGPWR, SIGTERM, SIGUSR1, SIGUSR2};
use std::time::Instant;

impl Reactor {
    pub(super) fn on_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        let mut child = false;
        for sig in pending {
            match sig {
                SIGCHLD => child = true,
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
        if child {
            self.reap();
        }
    }

    /// Reaps every child that exited and routes each exit to its owner.
    pub(super) fn reap(&mut self) {
        let now = Instant::now();
        let (exited, owners) = self.collect_exits(now);
        for (pid, status) in exited {
            if !self.route_exit(pid, status) {
                self.stats.zombies_reaped += 1;
                if let Some((_, owner)) = owners.iter().find(|(p, _)| *p == pid) {
                    *self
                        .stats
                        .orphans_by_service
                        .entry(owner.clone())
                        .or_insert(0) += 1;
                }
            }
        }
        // A reaped orphan may have been the last process of a stopping tree.
        self.check_trees(now);
    }

    /// Every exited child, and the services some orphans died in.
    #[allow(clippy::type_complexity)]
    fn collect_exits(&mut self, now: Instant) -> (Vec<(Pid, ExitStatus)>, Vec<(Pid, String)>) {
        let mut exited = Vec::new();
        let mut owners: Vec<(Pid, String)> = Vec::new();
        // Reading /proc/PID/cgroup costs about as much as the rest of a
        // reap (on a hybrid host it lists every v1 hierarchy), so in an
        // orphan storm only ATTRIBUTION_RATE a second are attributed.
        let elapsed = now
            .saturating_duration_since(self.attribution.1)
            .as_secs_f64();
        self.attribution = (
            (self.attribution.0 + elapsed * ATTRIBUTION_RATE).min(ATTRIBUTION_RATE),
            now,
        );
        let sup = &self.sup;
        let cgroups = self.cgroups.as_ref();
        let budget = &mut self.attribution.0;
        let launcher = &self.launcher;
        reaper::reap_all(&mut exited, &mut |pid| {
            // An orphan is attributed to the service whose cgroup it
            // died in (read while it is still a zombie).
            if *budget >= 1.0 && sup.owner_of(pid).is_none() && !launcher.is_pending(pid) {
                *budget -= 1.0;
                if let Some(owner) = cgroups.and_then(|c| c.owner_of_pid(pid)) {
                    owners.push((pid, owner));
                }
            }
        });
        (exited, owners)
    }

    /// Hands one exit to whoever owns the child; false for an orphan.
    fn route_exit(&mut self, pid: Pid, status: ExitStatus) -> bool {
        // A child that died before its exec was noticed: its error pipe
        // says whether it ever ran the service's program.
        match self.launcher.on_exit(&mut self.io, &self.sup, pid) {
            PendingExit::Unknown => {}
            PendingExit::Dropped => return true,
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
        self.sup.shutdown(Instant::now());
    }
}
