//! The supervisor's state machine: its types, and how inputs (a spawn's
//! answer, readiness, an exit, a timer) move each service's phase, with
//! the actions it wants carried out queued in order (requests are in
//! `requests.rs`). No syscalls: tested without processes.

use super::backoff;
use super::change::{Change, Reason};
use super::deps::{self, Graph};
use super::exit::ExitStatus;
use super::failure::{Cause, Failure, StartError};
use super::service::{AfterStop, Phase, Pid, Service, Source, Wanted};
use crate::core::bounds::deadline;
use crate::core::checks::Check;
use crate::core::definition::Definition;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

#[path = "admission.rs"]
mod admission;
#[path = "checks.rs"]
mod checks;
#[path = "requests.rs"]
mod requests;
#[path = "shutdown.rs"]
mod shutdown;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    HealthDeadline,
    StopKill,
    RestartAfter,
    /// Time for the next liveness check of a running service.
    Liveness,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timer {
    pub name: String,
    pub gen: u64,
    pub kind: TimerKind,
}

/// How a service settled, for answers that wait on it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Running,
    Stopped,
    Failed(Failure),
    Deleted,
    /// A oneshot exited 0: it is `stopped`, and its start succeeded.
    Completed,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Spawn the service's process; answer with `on_spawned(name, gen, ..)`.
    Spawn {
        name: String,
        gen: u64,
    },
    /// Tell `on_ready(name, gen)` once `port` accepts on loopback.
    WatchPort {
        name: String,
        gen: u64,
        port: u16,
    },
    /// Tell `on_ready(name, gen)` once this check passes (any kind but
    /// `tcp`, which is `WatchPort`), trying `http` and `exec` every
    /// `interval`; `note_readiness` takes each attempt's result.
    WatchCheck {
        name: String,
        gen: u64,
        check: Check,
        interval: Duration,
    },
    /// Run one liveness check, at most `timeout` long; answer with
    /// `on_liveness(name, gen, ..)`.
    Probe {
        name: String,
        gen: u64,
        check: Check,
        timeout: Duration,
    },
    /// SIGTERM to the process group (and the service's cgroup).
    Terminate {
        name: String,
        pgid: Pid,
    },
    /// SIGKILL to the whole tree (process group, and `cgroup.kill`).
    KillTree {
        name: String,
        pgid: Pid,
    },
    /// Tell `on_tree_empty(name, gen)` once no process of the tree is left.
    WatchTree {
        name: String,
        gen: u64,
        pgid: Pid,
    },
    Schedule {
        at: Instant,
        timer: Timer,
    },
    Settled {
        name: String,
        outcome: Outcome,
    },
    /// A definition or a wanted state changed: write the state file.
    Persist,
    Removed {
        name: String,
    },
    ShutdownComplete,
    /// A service's status or pid changed (or its definition did): for the
    /// events stream, in the order the changes happened.
    Changed(Change),
}

#[derive(Clone, Debug, PartialEq)]
pub enum SupError {
    NotFound(String),
    /// A needs cycle, a missing need, or an operation refused in this state.
    Conflict(String),
    /// The service cannot start: a broken drop-in file.
    Failed(String),
}

impl fmt::Display for SupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupError::NotFound(n) => write!(f, "service '{n}' is not defined"),
            SupError::Conflict(m) | SupError::Failed(m) => f.write_str(m),
        }
    }
}

/// An event from the outside world, as the reactor feeds it in: the one
/// way kernel events (and subsystems' answers) reach the supervisor.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The answer to `Action::Spawn`: the process runs, or could not start.
    Spawned {
        name: String,
        gen: u64,
        result: Result<Pid, StartError>,
    },
    /// The readiness check of `name` passed (its health port accepted).
    Ready { name: String, gen: u64 },
    /// One readiness attempt of `name` did not pass: its result in words.
    CheckResult {
        name: String,
        gen: u64,
        result: String,
    },
    /// A liveness check of `name` passed (`Ok`) or failed, in words.
    Liveness {
        name: String,
        gen: u64,
        result: Result<String, String>,
    },
    /// `name` sent `STATUS=...` over its notify socket.
    StatusText { name: String, text: String },
    /// A service's main process exited.
    Exited { pid: Pid, status: ExitStatus },
    /// A service's main process was killed by the OOM killer (its cgroup
    /// counted the kill): an exit that is a crash, and its `error` says so.
    OomKilled { pid: Pid, status: ExitStatus },
    /// No process of the service's tree is left.
    TreeEmpty { name: String, gen: u64 },
    /// One of the supervisor's own timers fired.
    Timer(Timer),
}

/// Whether a request is already answered or waits for the service to settle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Done,
    Pending,
}

#[derive(Default)]
pub struct Supervisor {
    services: BTreeMap<String, Service>,
    by_pid: HashMap<Pid, String>,
    actions: Vec<Action>,
    shutting_down: bool,
    shutdown_reported: bool,
    /// Services created so far: each one's generations start at a new
    /// base, so a timer or spawn of a deleted service never passes for
    /// one defined again under the same name.
    created: u64,
}

impl Graph for BTreeMap<String, Service> {
    fn needs_of(&self, name: &str) -> Option<&[String]> {
        self.get(name).map(|s| s.def.needs.as_slice())
    }
    fn each<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a [String])) {
        for (n, s) in self {
            f(n, &s.def.needs);
        }
    }
}

impl Supervisor {
    pub fn new() -> Supervisor {
        Supervisor::default()
    }

    /// Actions produced since the last call, in order.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    pub fn get(&self, name: &str) -> Option<&Service> {
        self.services.get(name)
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// The service whose main process this is, if any.
    pub fn owner_of(&self, pid: Pid) -> Option<&str> {
        self.by_pid.get(&pid).map(String::as_str)
    }

    // ----- restore -----------------------------------------------------

    /// Re-arms every pending wait from `now` (after a restore from a
    /// snapshot): health deadlines and stop timeouts start over, backoffs
    /// end at once, ports are watched again.
    pub fn rearm(&mut self, now: Instant) {
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            let Some(svc) = self.services.get_mut(&name) else {
                continue;
            };
            match svc.phase.clone() {
                Phase::Starting { pid } => {
                    svc.set_phase(Phase::Starting { pid });
                    let gen = svc.gen;
                    self.watch_readiness(&name, gen, now);
                }
                Phase::Running { pid, since } => {
                    // A new generation ends the old chain of liveness checks.
                    svc.set_phase(Phase::Running { pid, since });
                    self.schedule_liveness(&name, now);
                }
                Phase::Stopping {
                    pid: Some(pid),
                    then,
                } => {
                    svc.set_phase(Phase::Stopping {
                        pid: Some(pid),
                        then,
                    });
                    let gen = svc.gen;
                    let at = deadline(now, svc.def.stop_timeout());
                    self.schedule(&name, gen, TimerKind::StopKill, at);
                }
                Phase::BackingOff => {
                    let gen = svc.gen;
                    self.schedule(&name, gen, TimerKind::RestartAfter, now);
                }
                _ => {}
            }
        }
    }

    // ----- events ------------------------------------------------------

    /// Feeds one input; its actions join the queue (`take_actions`).
    pub fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::Spawned { name, gen, result } => self.on_spawned(&name, gen, result, now),
            Input::Ready { name, gen } => self.on_ready(&name, gen, now),
            Input::CheckResult { name, gen, result } => self.note_readiness(&name, gen, result),
            Input::Liveness { name, gen, result } => self.on_liveness(&name, gen, result, now),
            Input::StatusText { name, text } => self.set_status_text(&name, text),
            Input::Exited { pid, status } => {
                self.on_exit(pid, status, now);
            }
            Input::OomKilled { pid, status } => {
                self.exited(pid, status, true, now);
            }
            Input::TreeEmpty { name, gen } => self.on_tree_empty(&name, gen, now),
            Input::Timer(t) => self.on_timer(&t, now),
        }
    }

    pub fn on_spawned(
        &mut self,
        name: &str,
        gen: u64,
        result: Result<Pid, StartError>,
        now: Instant,
    ) {
        self.spawned(name, gen, result, now);
        self.after_event(now);
    }

    fn spawned(&mut self, name: &str, gen: u64, result: Result<Pid, StartError>, now: Instant) {
        let current = self
            .services
            .get(name)
            .is_some_and(|s| s.gen == gen && s.phase == Phase::Spawning);
        if !current {
            // Stopped, deleted or started again while it was being
            // prepared: kill what came of it, and leave the service (maybe
            // a newer run of it) alone. Its exit is an orphan's.
            if let Ok(pid) = result {
                self.actions.push(Action::KillTree {
                    name: name.to_string(),
                    pgid: pid,
                });
            }
            return;
        }
        let Some(svc) = self.services.get_mut(name) else {
            return;
        };
        match result {
            Ok(pid) => {
                self.by_pid.insert(pid, name.to_string());
                svc.pgid = Some(pid);
                svc.started_at = Some(now);
                if svc.def.readiness().is_some() || svc.def.is_oneshot() {
                    // A oneshot stays here until its process exits.
                    svc.set_phase(Phase::Starting { pid });
                    let gen = svc.gen;
                    self.watch_readiness(name, gen, now);
                    self.changed(name, Reason::Started);
                } else {
                    self.become_running(name, pid, now, Reason::Started);
                }
            }
            Err(e) => self.fail(name, Cause::Start(e)),
        }
    }

    pub fn on_ready(&mut self, name: &str, gen: u64, now: Instant) {
        self.ready(name, gen, now);
        self.after_event(now);
    }

    fn ready(&mut self, name: &str, gen: u64, now: Instant) {
        let Some(svc) = self.services.get_mut(name) else {
            return;
        };
        if let (true, Phase::Starting { pid }) = (svc.gen == gen, &svc.phase) {
            let pid = *pid;
            if let Some(Check::Tcp(port)) = svc.def.readiness() {
                svc.health_result = Some(format!("port {port} accepted a connection"));
            }
            self.become_running(name, pid, now, Reason::Ready);
        }
    }

    /// A child exited. Returns false when it was no service's main process
    /// (an orphan, or a helper the loop tracks itself).
    pub fn on_exit(&mut self, pid: Pid, status: ExitStatus, now: Instant) -> bool {
        self.exited(pid, status, false, now)
    }

    /// A child exited, killed by the OOM killer when `oom`.
    fn exited(&mut self, pid: Pid, status: ExitStatus, oom: bool, now: Instant) -> bool {
        let Some(name) = self.by_pid.remove(&pid) else {
            return false;
        };
        let shutting_down = self.shutting_down;
        let Some(svc) = self.services.get_mut(&name) else {
            return true;
        };
        if svc.phase.main_pid() != Some(pid) {
            return true;
        }
        svc.exit_code = Some(status.code());
        let why = if oom { Reason::Oom } else { Reason::Exited };
        let oom = oom.then(|| Cause::OomKilled {
            status,
            memory_max: svc.def.limits.as_ref().and_then(|l| l.memory_max),
        });
        let then = match svc.phase.clone() {
            Phase::Starting { .. } if svc.def.is_oneshot() => match status.is_clean() {
                true => AfterStop::Complete,
                false => AfterStop::Fail(oom.unwrap_or(Cause::Exited(status))),
            },
            Phase::Starting { .. } => {
                AfterStop::Fail(oom.unwrap_or_else(|| checks::exited_before_ready(svc, status)))
            }
            Phase::Running { since, .. } => {
                use crate::core::definition::RestartPolicy::*;
                let restart = match svc.def.restart {
                    Always => true,
                    OnFailure => !status.is_clean(),
                    Never => false,
                } && !shutting_down
                    && svc.wanted == Wanted::Up;
                if now.saturating_duration_since(since) >= backoff::STABLE_RUN {
                    svc.backoff_level = 0;
                }
                if restart {
                    crate::info!("service '{name}' {}; restarting", status.describe());
                    if let Some(cause) = &oom {
                        // Why it restarted stays visible once it runs again.
                        svc.error = Some(format!("{cause}; restarted"));
                        svc.keep_error = true;
                    } else {
                        // A plain crash: an earlier reason no longer holds.
                        svc.keep_error = false;
                    }
                    AfterStop::Backoff
                } else if status.is_clean() && oom.is_none() {
                    AfterStop::Rest
                } else {
                    AfterStop::Fail(oom.unwrap_or(Cause::Exited(status)))
                }
            }
            Phase::Stopping { then, .. } => then,
            _ => return true,
        };
        self.drain(&name, then);
        self.changed(&name, why);
        true
    }

    /// Every process of the service's tree is gone.
    pub fn on_tree_empty(&mut self, name: &str, gen: u64, now: Instant) {
        let Some(svc) = self.services.get(name) else {
            return;
        };
        if svc.gen != gen {
            return;
        }
        if let Phase::Stopping { pid: None, then } = svc.phase.clone() {
            self.finish_stop(name, then, now);
        }
    }

    pub fn on_timer(&mut self, timer: &Timer, now: Instant) {
        self.timer_fired(timer);
        self.after_event(now);
    }

    fn timer_fired(&mut self, timer: &Timer) {
        let Some(svc) = self.services.get_mut(&timer.name) else {
            return;
        };
        if svc.gen != timer.gen {
            return;
        }
        let name = timer.name.as_str();
        match (timer.kind, svc.phase.clone()) {
            (TimerKind::HealthDeadline, Phase::Starting { pid }) => {
                let cause = checks::deadline_cause(svc);
                crate::warn!("service '{name}': {cause}; killing it");
                // Killed before it is marked failed: nothing keeps running.
                svc.set_phase(Phase::Stopping {
                    pid: Some(pid),
                    then: AfterStop::Fail(cause),
                });
                let pgid = svc.pgid.unwrap_or(pid);
                self.actions.push(Action::KillTree {
                    name: name.to_string(),
                    pgid,
                });
            }
            (TimerKind::StopKill, Phase::Stopping { pid: Some(pid), .. }) => {
                crate::warn!("service '{name}' did not stop in time; sending SIGKILL");
                let pgid = svc.pgid.unwrap_or(pid);
                self.actions.push(Action::KillTree {
                    name: name.to_string(),
                    pgid,
                });
            }
            (TimerKind::RestartAfter, Phase::BackingOff) => {
                svc.set_phase(Phase::WaitingNeeds);
                self.try_advance(name);
            }
            (TimerKind::Liveness, Phase::Running { .. }) => self.probe_liveness(name),
            _ => {}
        }
    }

    // ----- internals ---------------------------------------------------

    /// Announces `name`'s change with its fields as they are now.
    pub(super) fn changed(&mut self, name: &str, why: Reason) {
        if let Some(svc) = self.services.get(name) {
            self.actions.push(Action::Changed(Change::of(svc, why)));
        }
    }

    fn schedule(&mut self, name: &str, gen: u64, kind: TimerKind, at: Instant) {
        self.actions.push(Action::Schedule {
            at,
            timer: Timer {
                name: name.to_string(),
                gen,
                kind,
            },
        });
    }

    /// From stopped, failed or backing off to waiting for its needs (and on
    /// to its spawn), announced as `why` first when that is news.
    fn rouse(&mut self, name: &str, why: Option<Reason>) {
        let Some(svc) = self.services.get_mut(name) else {
            return;
        };
        svc.error = None;
        svc.completed = false;
        svc.keep_error = false;
        svc.set_phase(Phase::WaitingNeeds);
        if let Some(why) = why {
            self.changed(name, why);
        }
        self.try_advance(name);
    }

    /// Spawns a waiting service once every need runs; fails it when a need
    /// failed or is stopped.
    fn try_advance(&mut self, name: &str) {
        let Some(svc) = self.services.get(name) else {
            return;
        };
        if svc.phase != Phase::WaitingNeeds {
            return;
        }
        for need in &svc.def.needs {
            let problem = match self.services.get(need) {
                None => Some(Cause::NeedMissing(need.clone())),
                Some(n) => match &n.phase {
                    Phase::Running { .. } => None,
                    Phase::Stopped if n.completed => None,
                    Phase::Failed => Some(Cause::NeedFailed {
                        need: need.clone(),
                        error: n.error.as_deref().unwrap_or("unknown error").to_string(),
                    }),
                    Phase::Stopped => Some(Cause::NeedStopped(need.clone())),
                    _ => return, // still on its way: wait
                },
            };
            if let Some(cause) = problem {
                self.fail(name, cause);
                return;
            }
        }
        if let Some(svc) = self.services.get_mut(name) {
            svc.set_phase(Phase::Spawning);
            let gen = svc.gen;
            self.actions.push(Action::Spawn {
                name: name.to_string(),
                gen,
            });
        }
    }

    fn become_running(&mut self, name: &str, pid: Pid, now: Instant, why: Reason) {
        if let Some(svc) = self.services.get_mut(name) {
            svc.set_phase(Phase::Running { pid, since: now });
            if !svc.keep_error {
                svc.error = None;
            }
            svc.liveness_in_row = 0;
            crate::debug!("service '{name}' is running (pid {pid})");
            self.schedule_liveness(name, now);
            self.settled(name, Outcome::Running, Some(why));
        }
    }

    fn fail(&mut self, name: &str, cause: Cause) {
        if let Some(svc) = self.services.get_mut(name) {
            crate::warn!("service '{name}' failed: {cause}");
            svc.set_phase(Phase::Failed);
            svc.error = Some(cause.to_string());
            self.settled(name, Outcome::Failed(cause.into()), Some(Reason::Failed));
        }
    }

    /// A failure's report gained the service's last lines of output (the
    /// reactor reads them): the service's `error` says it all.
    pub fn explain(&mut self, name: &str, failure: &Failure) {
        if let Some(s) = self.services.get_mut(name) {
            s.error = Some(failure.to_string());
        }
    }

    /// Announces a settled service (and its change, when its status
    /// changed) and lets whatever waits on it move: its own change comes
    /// before those of the dependents it moves.
    fn settled(&mut self, name: &str, outcome: Outcome, why: Option<Reason>) {
        self.actions.push(Action::Settled {
            name: name.to_string(),
            outcome,
        });
        if let Some(why) = why {
            self.changed(name, why);
        }
        self.advance_waiting_on(name);
    }

    /// Lets the services waiting for `name` (now settled or gone) move on:
    /// spawn, or fail.
    fn advance_waiting_on(&mut self, name: &str) {
        let waiting: Vec<String> = self
            .services
            .values()
            .filter(|s| s.phase == Phase::WaitingNeeds && s.def.needs.iter().any(|n| n == name))
            .map(|s| s.name.clone())
            .collect();
        for w in waiting {
            self.try_advance(&w);
        }
    }

    fn begin_stop(&mut self, name: &str, pid: Pid, then: AfterStop, now: Instant) {
        let Some(svc) = self.services.get_mut(name) else {
            return;
        };
        svc.set_phase(Phase::Stopping {
            pid: Some(pid),
            then,
        });
        let pgid = svc.pgid.unwrap_or(pid);
        let at = deadline(now, svc.def.stop_timeout());
        let gen = svc.gen;
        self.actions.push(Action::Terminate {
            name: name.to_string(),
            pgid,
        });
        self.schedule(name, gen, TimerKind::StopKill, at);
    }

    /// The main process is gone: kill what is left of its tree and wait.
    fn drain(&mut self, name: &str, then: AfterStop) {
        let Some(svc) = self.services.get_mut(name) else {
            return;
        };
        svc.set_phase(Phase::Stopping { pid: None, then });
        let gen = svc.gen;
        if let Some(pgid) = svc.pgid {
            self.actions.push(Action::KillTree {
                name: name.to_string(),
                pgid,
            });
            self.actions.push(Action::WatchTree {
                name: name.to_string(),
                gen,
                pgid,
            });
        } else {
            self.actions.push(Action::WatchTree {
                name: name.to_string(),
                gen,
                pgid: 0,
            });
        }
    }

    fn finish_stop(&mut self, name: &str, then: AfterStop, now: Instant) {
        let shutting_down = self.shutting_down;
        let Some(svc) = self.services.get_mut(name) else {
            return;
        };
        match then {
            AfterStop::Rest => {
                svc.set_phase(Phase::Stopped);
                self.settled(name, Outcome::Stopped, Some(Reason::Stopped));
            }
            AfterStop::Fail(msg) => self.fail(name, msg),
            AfterStop::Restart if !shutting_down => self.rouse(name, Some(Reason::Restarting)),
            AfterStop::Backoff if !shutting_down => {
                svc.restarts = svc.restarts.saturating_add(1);
                let delay = backoff::restart_delay(svc.backoff_level);
                svc.backoff_level = svc.backoff_level.saturating_add(1);
                if delay.is_zero() {
                    svc.set_phase(Phase::WaitingNeeds);
                    self.changed(name, Reason::Restarting);
                    self.try_advance(name);
                } else {
                    svc.set_phase(Phase::BackingOff);
                    let gen = svc.gen;
                    self.changed(name, Reason::Restarting);
                    self.schedule(name, gen, TimerKind::RestartAfter, deadline(now, delay));
                }
            }
            AfterStop::Restart | AfterStop::Backoff => {
                svc.set_phase(Phase::Stopped);
                self.settled(name, Outcome::Stopped, Some(Reason::Stopped));
            }
            AfterStop::Delete => self.remove(name),
            AfterStop::Complete => {
                svc.set_phase(Phase::Stopped);
                svc.completed = true;
                crate::info!("oneshot '{name}' completed");
                self.settled(name, Outcome::Completed, Some(Reason::Stopped));
            }
        }
        if self.shutting_down {
            self.advance_shutdown(now);
        }
    }

    fn remove(&mut self, name: &str) {
        if let Some(svc) = self.services.remove(name) {
            self.by_pid.retain(|_, n| n != name);
            self.actions.push(Action::Persist);
            self.actions.push(Action::Settled {
                name: name.to_string(),
                outcome: Outcome::Deleted,
            });
            self.actions.push(Action::Changed(Change::deleted(&svc)));
            self.actions.push(Action::Removed {
                name: name.to_string(),
            });
            // Dependents waiting on it can no longer start.
            self.advance_waiting_on(name);
        }
    }
}

#[cfg(test)]
#[path = "prop_tests.rs"]
mod prop_tests;
#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
#[path = "check_tests.rs"]
mod check_tests;
#[cfg(test)]
#[path = "test_support.rs"]
mod test_support;
