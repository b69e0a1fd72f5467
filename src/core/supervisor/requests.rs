//! Requests to the supervisor: define a service (or note a broken drop-in),
//! start, stop, restart and delete it; each is answered at once or waits
//! (`Progress::Pending`) until the service settles.

use super::deps::{self, DepError};
use super::{
    Action, AfterStop, Cause, Definition, Outcome, Phase, Progress, Reason, Source, SupError,
    Supervisor, Wanted,
};
use crate::core::bounds;
use std::collections::BTreeMap;
use std::time::Instant;

impl Supervisor {
    /// Creates or replaces a definition. Returns whether it was created.
    /// A changed definition of a running service restarts it.
    pub fn upsert(
        &mut self,
        name: &str,
        def: Definition,
        source: Source,
        now: Instant,
    ) -> Result<bool, SupError> {
        self.check_upsert(name, &def)?;
        self.actions.push(Action::Persist);
        let Some(svc) = self.services.get_mut(name) else {
            let svc = self.new_service(name, def, source);
            self.services.insert(name.to_string(), svc);
            self.changed(name, Reason::Defined);
            return Ok(true);
        };
        let changed = svc.def != def || svc.broken.is_some();
        if changed {
            svc.completed = false;
        }
        svc.def = def;
        svc.source = source;
        svc.broken = None;
        let running = svc.phase.clone();
        self.changed(name, Reason::Defined);
        if changed {
            match running {
                Phase::Starting { pid } | Phase::Running { pid, .. } => {
                    self.begin_stop(name, pid, AfterStop::Restart, now);
                }
                Phase::WaitingNeeds => {
                    // Its needs changed while it waited for them: start the
                    // new ones (or fail on a missing one) and look again,
                    // or it would wait for a need it no longer has.
                    let _ = self.start(name);
                    self.try_advance(name);
                }
                _ => {}
            }
        }
        Ok(false)
    }

    /// A drop-in file that could not be loaded: shown as `failed`. Returns
    /// false (and adds nothing) when the init already holds its maximum of
    /// services.
    pub fn add_broken(&mut self, name: &str, error: String) -> bool {
        if !self.services.contains_key(name) && self.services.len() >= bounds::MAX_SERVICES {
            return false;
        }
        let mut svc = self.new_service(name, placeholder_def(), Source::File);
        svc.phase = Phase::Failed;
        svc.error = Some(error.clone());
        svc.broken = Some(error);
        self.services.insert(name.to_string(), svc);
        self.changed(name, Reason::Failed);
        true
    }

    /// Sets the wanted state without acting (state-file restore at boot).
    pub fn set_wanted(&mut self, name: &str, wanted: Wanted) {
        if let Some(s) = self.services.get_mut(name) {
            s.wanted = wanted;
        }
    }

    // ----- start, stop, restart, delete -------------------------------

    /// Starts `name`, its needs first. Pending until it is running or failed.
    pub fn start(&mut self, name: &str) -> Result<Progress, SupError> {
        if self.shutting_down {
            return Err(SupError::Conflict("the init is shutting down".into()));
        }
        let svc = self
            .services
            .get(name)
            .ok_or_else(|| SupError::NotFound(name.to_string()))?;
        if let Some(b) = &svc.broken {
            return Err(SupError::Failed(format!(
                "service '{name}' cannot start: {b}"
            )));
        }
        if matches!(svc.phase, Phase::Running { .. }) {
            return Ok(Progress::Done);
        }
        let order = match deps::start_order(&self.services, name) {
            Ok(o) => o,
            Err(e) => {
                let msg = e.to_string();
                self.fail_unless_busy(name, Cause::Needs(msg.clone()));
                return Err(match e {
                    DepError::Cycle(_) => SupError::Conflict(msg),
                    DepError::Missing { .. } => SupError::Failed(msg),
                });
            }
        };
        if let Some(b) = order.iter().find_map(|n| {
            self.services
                .get(n)
                .and_then(|s| s.broken.clone())
                .map(|b| (n, b))
        }) {
            let cause = Cause::NeedBroken {
                need: b.0.clone(),
                error: b.1,
            };
            let msg = cause.to_string();
            self.fail_unless_busy(name, cause);
            return Err(SupError::Failed(msg));
        }
        let mut changed = false;
        for n in &order {
            if let Some(s) = self.services.get_mut(n) {
                changed |= s.wanted != Wanted::Up;
                s.wanted = Wanted::Up;
            }
        }
        if changed {
            self.actions.push(Action::Persist);
        }
        for n in &order {
            // A need that is a oneshot done in this boot is not run again.
            let done = self.services.get(n).is_some_and(|s| s.completed);
            if n == name || !done {
                self.kick(n);
            }
        }
        Ok(match self.services.get(name).map(|s| &s.phase) {
            Some(Phase::Running { .. }) => Progress::Done,
            _ => Progress::Pending,
        })
    }

    /// Stops `name` (only it; services that need it keep running).
    pub fn stop(&mut self, name: &str, now: Instant) -> Result<Progress, SupError> {
        let r = self.stop_request(name, now);
        self.after_event(now);
        r
    }

    fn stop_request(&mut self, name: &str, now: Instant) -> Result<Progress, SupError> {
        let svc = self
            .services
            .get_mut(name)
            .ok_or_else(|| SupError::NotFound(name.to_string()))?;
        if svc.wanted != Wanted::Down {
            svc.wanted = Wanted::Down;
            self.actions.push(Action::Persist);
        }
        Ok(self.stop_now(name, AfterStop::Rest, now))
    }

    /// Stop then start; a service that is not running just starts.
    pub fn restart(&mut self, name: &str, now: Instant) -> Result<Progress, SupError> {
        if self.shutting_down {
            return Err(SupError::Conflict("the init is shutting down".into()));
        }
        let svc = self
            .services
            .get_mut(name)
            .ok_or_else(|| SupError::NotFound(name.to_string()))?;
        match svc.phase.clone() {
            Phase::Starting { pid } | Phase::Running { pid, .. } => {
                svc.wanted = Wanted::Up;
                self.actions.push(Action::Persist);
                self.begin_stop(name, pid, AfterStop::Restart, now);
                self.start_needs(name);
                Ok(Progress::Pending)
            }
            Phase::Stopping { pid, then } if then != AfterStop::Delete => {
                svc.wanted = Wanted::Up;
                svc.phase = Phase::Stopping {
                    pid,
                    then: AfterStop::Restart,
                };
                self.actions.push(Action::Persist);
                self.start_needs(name);
                Ok(Progress::Pending)
            }
            _ => self.start(name).map(|_| Progress::Pending),
        }
    }

    /// The start half of a restart, for the needs: wanted up and on their
    /// way, as `start` does; the service follows once its stop is done. A
    /// missing need or a cycle is left to that start to report.
    fn start_needs(&mut self, name: &str) {
        let Ok(order) = deps::start_order(&self.services, name) else {
            return;
        };
        for n in order.iter().filter(|n| n.as_str() != name) {
            if let Some(s) = self.services.get_mut(n) {
                if s.wanted != Wanted::Up {
                    s.wanted = Wanted::Up;
                    self.actions.push(Action::Persist);
                }
            }
            self.kick(n);
        }
    }

    /// Stops and removes the definition.
    pub fn delete(&mut self, name: &str, now: Instant) -> Result<Progress, SupError> {
        let r = self.delete_request(name, now);
        self.after_event(now);
        r
    }

    fn delete_request(&mut self, name: &str, now: Instant) -> Result<Progress, SupError> {
        if !self.services.contains_key(name) {
            return Err(SupError::NotFound(name.to_string()));
        }
        self.actions.push(Action::Persist);
        let p = self.stop_now(name, AfterStop::Delete, now);
        Ok(p)
    }

    // ----- what only requests use -------------------------------------

    /// Moves a wanted-up service towards running.
    fn kick(&mut self, name: &str) {
        let Some(svc) = self.services.get_mut(name) else {
            return;
        };
        match svc.phase.clone() {
            Phase::Stopped | Phase::Failed | Phase::BackingOff => self.rouse(name, None),
            Phase::Stopping {
                pid,
                then: AfterStop::Rest | AfterStop::Fail(_),
            } => {
                svc.phase = Phase::Stopping {
                    pid,
                    then: AfterStop::Restart,
                };
            }
            _ => {}
        }
    }

    /// A start that cannot even begin: fails the service, unless it still
    /// has processes (it is stopping or starting): those are tracked to
    /// their end, never forgotten behind a `failed`.
    fn fail_unless_busy(&mut self, name: &str, cause: Cause) {
        let Some(svc) = self.services.get_mut(name) else {
            return;
        };
        if matches!(svc.phase, Phase::Starting { .. } | Phase::Stopping { .. }) {
            svc.error = Some(cause.to_string());
        } else {
            self.fail(name, cause);
        }
    }

    /// Stops whatever runs now; returns whether the caller must wait.
    pub(super) fn stop_now(&mut self, name: &str, then: AfterStop, now: Instant) -> Progress {
        let Some(svc) = self.services.get_mut(name) else {
            return Progress::Done;
        };
        match svc.phase.clone() {
            Phase::Starting { pid } | Phase::Running { pid, .. } => {
                self.begin_stop(name, pid, then, now);
                Progress::Pending
            }
            Phase::Stopping { pid, then: old } => {
                let then = if old == AfterStop::Delete { old } else { then };
                svc.phase = Phase::Stopping { pid, then };
                Progress::Pending
            }
            Phase::Stopped
            | Phase::Failed
            | Phase::WaitingNeeds
            | Phase::Spawning
            | Phase::BackingOff => {
                if then == AfterStop::Delete {
                    self.remove(name);
                } else {
                    // A failed service keeps its word through a shutdown.
                    let moves = svc.phase != Phase::Failed || !self.shutting_down;
                    let was_stopped = svc.phase == Phase::Stopped;
                    if moves {
                        svc.set_phase(Phase::Stopped);
                    }
                    let why = (moves && !was_stopped).then_some(Reason::Stopped);
                    self.settled(name, Outcome::Stopped, why);
                }
                Progress::Done
            }
        }
    }
}

fn placeholder_def() -> Definition {
    Definition {
        cmd: String::new(),
        args: vec![],
        env: BTreeMap::new(),
        working_dir: None,
        user: None,
        health_port: None,
        needs: vec![],
        container: false,
        image: None,
        restart: Default::default(),
        stop_timeout_secs: 10.0,
        health_timeout_secs: 60.0,
        autostart: false,
        health: None,
        liveness: None,
        service_type: Default::default(),
        limits: None,
        on_restore: Default::default(),
    }
}
