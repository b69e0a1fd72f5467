//! The supervisor's side of checks: waiting for readiness, counting
//! liveness results and restarting on too many failures, and the words
//! that say why.

use super::TimerKind;
use super::{backoff, Action, AfterStop, Cause, ExitStatus, Phase, Reason, Service, Supervisor};
use crate::core::bounds::deadline;
use crate::core::checks::Check;
use crate::core::definition::RestartPolicy;
use crate::core::supervisor::failure::liveness_words;
use std::time::Instant;

impl Supervisor {
    /// Asks for the readiness check of a service just spawned (or re-armed)
    /// and arms its deadline. A oneshot has neither: it waits for its exit.
    pub(super) fn watch_readiness(&mut self, name: &str, gen: u64, now: Instant) {
        let Some(svc) = self.services.get(name) else {
            return;
        };
        let Some(check) = svc.def.readiness() else {
            return;
        };
        let at = deadline(now, svc.def.health_timeout());
        let interval = svc
            .def
            .health
            .as_ref()
            .map(|h| h.interval())
            .unwrap_or_default();
        let name = name.to_string();
        self.actions.push(match check {
            Check::Tcp(port) => Action::WatchPort {
                name: name.clone(),
                gen,
                port,
            },
            check => Action::WatchCheck {
                name: name.clone(),
                gen,
                check,
                interval,
            },
        });
        self.schedule(&name, gen, TimerKind::HealthDeadline, at);
    }

    /// The result of one readiness attempt, in words ("answered 503"), shown
    /// in the service object and in the error when the deadline passes.
    pub fn note_readiness(&mut self, name: &str, gen: u64, result: String) {
        if let Some(svc) = self.services.get_mut(name) {
            if svc.gen == gen {
                svc.health_result = Some(result);
            }
        }
    }

    /// The service said `STATUS=...` over its notify socket.
    pub fn set_status_text(&mut self, name: &str, text: String) {
        if let Some(svc) = self.services.get_mut(name) {
            svc.status_text = Some(text);
        }
    }

    /// Arms the next liveness check of a running service, if it has one.
    pub(super) fn schedule_liveness(&mut self, name: &str, now: Instant) {
        let Some(svc) = self.services.get(name) else {
            return;
        };
        if let (Some(l), Phase::Running { .. }) = (&svc.def.liveness, &svc.phase) {
            let at = deadline(now, l.interval());
            let gen = svc.gen;
            self.schedule(name, gen, TimerKind::Liveness, at);
        }
    }

    /// The liveness timer fired: run one check.
    pub(super) fn probe_liveness(&mut self, name: &str) {
        let Some(svc) = self.services.get(name) else {
            return;
        };
        if let Some(l) = &svc.def.liveness {
            self.actions.push(Action::Probe {
                name: name.to_string(),
                gen: svc.gen,
                check: l.check.clone(),
                timeout: l.attempt_timeout(),
            });
        }
    }

    /// The result of one liveness check: `Ok` with what passed, `Err` with
    /// why it failed. After `failures` failures in a row the service is
    /// restarted under its restart policy (`never`: stopped as failed).
    pub fn on_liveness(
        &mut self,
        name: &str,
        gen: u64,
        result: Result<String, String>,
        now: Instant,
    ) {
        let Some(svc) = self.services.get_mut(name) else {
            return;
        };
        let (Phase::Running { pid, since }, Some(l)) = (svc.phase.clone(), &svc.def.liveness)
        else {
            return;
        };
        if svc.gen != gen {
            return;
        }
        let why = match result {
            Ok(note) => {
                svc.liveness_in_row = 0;
                svc.liveness_result = Some(note);
                self.schedule_liveness(name, now);
                return;
            }
            Err(why) => why,
        };
        svc.liveness_failures = svc.liveness_failures.saturating_add(1);
        svc.liveness_in_row = svc.liveness_in_row.saturating_add(1);
        svc.liveness_result = Some(why.clone());
        if svc.liveness_in_row < l.failures {
            self.schedule_liveness(name, now);
            return;
        }
        let msg = liveness_words(&l.check, svc.liveness_in_row, &why);
        if now.saturating_duration_since(since) >= backoff::STABLE_RUN {
            svc.backoff_level = 0;
        }
        let then = if svc.def.restart == RestartPolicy::Never || self.shutting_down {
            crate::warn!("service '{name}': {msg}; stopping it (restart = never)");
            AfterStop::Fail(Cause::Liveness {
                check: l.check.clone(),
                times: svc.liveness_in_row,
                last: why,
            })
        } else {
            crate::warn!("service '{name}': {msg}; restarting it");
            svc.error = Some(format!("restarted: {msg}"));
            svc.keep_error = true;
            AfterStop::Backoff
        };
        self.begin_stop(name, pid, then, now);
        self.changed(name, Reason::Liveness);
    }
}

/// Why a service that exited while starting had not become ready.
pub(super) fn exited_before_ready(svc: &Service, status: ExitStatus) -> Cause {
    match svc.def.readiness() {
        Some(Check::Tcp(port)) => Cause::ExitedBeforeReady { status, port },
        Some(check) => Cause::ExitedBeforeCheck { status, check },
        None => Cause::ExitedBeforeReady { status, port: 0 },
    }
}

/// Why a service that missed its readiness deadline failed.
pub(super) fn deadline_cause(svc: &Service) -> Cause {
    let secs = svc.def.health_timeout_secs();
    match svc.def.readiness() {
        Some(Check::Tcp(port)) => Cause::HealthTimeout { port, secs },
        Some(check) => Cause::CheckTimeout {
            check,
            secs,
            last: svc.health_result.clone(),
        },
        None => Cause::HealthTimeout { port: 0, secs },
    }
}
