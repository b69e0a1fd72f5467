//! Routing for checks beyond a TCP port: the supervisor's `WatchCheck` and
//! `Probe`, the runner's exec attempts (run through `Execs` in the
//! service's context), log-line matches, ports seen listening, and a
//! spawn's notify socket.

use super::event_loop::Reactor;
use crate::core::checks::Check;
use crate::core::definition::Definition;
use crate::health::runner::{ExecEnd, ExecRequest};
use crate::output::exec::{ExecDone, ExecPlan};
use std::time::{Duration, Instant};

impl Reactor {
    /// `Action::WatchCheck`: an `http` check first waits for its port to
    /// listen (one scan serves every waiting service); a `log` check is
    /// already armed since the spawn.
    pub(super) fn watch_check(
        &mut self,
        name: String,
        gen: u64,
        check: Check,
        interval: Duration,
        now: Instant,
    ) {
        if let Check::Http(h) = &check {
            self.health
                .watch_listen(&mut self.io, name.clone(), gen, h.port, now);
        }
        self.checks
            .watch(&mut self.io, &name, gen, check, interval, now);
    }

    /// Before a spawn of `name`: its `log` check watches its output from
    /// now on, and a `notify` service gets `NOTIFY_SOCKET`. Err: the spawn
    /// cannot go on.
    pub(super) fn prepare_checks(
        &mut self,
        name: &str,
        def: &mut Definition,
    ) -> Result<(), String> {
        let check = def.readiness();
        match &check {
            Some(Check::Log(text)) => self.logs.watch_line(name, Some(text)),
            _ => self.logs.watch_line(name, None),
        }
        let uid = match (&check, &def.user) {
            (Some(Check::Notify), Some(u)) => crate::proc::spawn::resolve_user(u)
                .map(|u| u.uid)
                .map_err(|e| e.to_string())?
                .into(),
            _ => None,
        };
        let env = self
            .checks
            .on_spawn(&mut self.io, name, check.as_ref(), uid, !def.container)?;
        if let Some(v) = env {
            def.env.insert("NOTIFY_SOCKET".into(), v);
        }
        Ok(())
    }

    /// The service settled or is gone: its readiness checks end.
    pub(super) fn end_readiness(&mut self, name: &str) {
        self.health.forget(&mut self.io, name);
        self.checks.forget_wait(&mut self.io, name);
        self.logs.watch_line(name, None);
    }

    /// What the checks caused since the last call: inputs for the
    /// supervisor, exec attempts to start or kill, log matches and ports
    /// that listen. Returns whether there was anything.
    pub(super) fn route_checks(&mut self, now: Instant) -> bool {
        let mut any = false;
        for name in self.logs.take_matches() {
            any = true;
            self.checks.on_log_match(&mut self.io, &name, now);
        }
        for (name, gen) in self.health.take_listening() {
            any = true;
            self.checks.on_listening(&mut self.io, &name, gen, now);
        }
        for req in self.checks.take_exec_requests() {
            any = true;
            self.start_check_exec(req, now);
        }
        for id in self.checks.take_abandoned() {
            self.execs.abandon(id);
        }
        for input in self.checks.take_inputs() {
            any = true;
            self.feed(input);
        }
        any
    }

    /// An exec attempt: in the service's container for a container
    /// service, else as the service runs (user, env, working_dir, cgroup).
    fn start_check_exec(&mut self, req: ExecRequest, now: Instant) {
        let planned = match self
            .sup
            .get(&req.name)
            .map(|s| (s.def.clone(), s.phase.is_active()))
        {
            None => Err("the service is gone".to_string()),
            Some((def, _)) if def.container => self
                .containers
                .exec_command(&self.sup, &req.name, &req.argv)
                .map(|c| ExecPlan::in_container(c.argv, c.pid_file, c.cleanup, None, req.timeout))
                .map_err(|e| e.to_string()),
            Some((def, active)) => {
                let cgroup_procs = match &self.cgroups {
                    Some(cg) if active => cg.prepare(&req.name).ok(),
                    _ => None,
                };
                ExecPlan::in_service(&def, req.argv, cgroup_procs, None, req.timeout)
                    .map_err(|e| e.to_string())
            }
        };
        let started = planned.and_then(|plan| {
            self.execs
                .start(&mut self.io, plan)
                .map_err(|e| e.to_string())
        });
        match started {
            Ok(id) => self.checks.exec_started(req.attempt, id),
            Err(e) => self.checks.exec_failed(&mut self.io, req.attempt, e, now),
        }
    }

    /// A finished exec that was a check's attempt; false when it was not.
    pub(super) fn check_exec_done(&mut self, done: &ExecDone) -> bool {
        if !self.checks.owns_exec(done.id) {
            return false;
        }
        let end = ExecEnd {
            status: done.status,
            timed_out: done.timed_out,
            stdout: &done.stdout,
            stderr: &done.stderr,
        };
        self.checks
            .exec_done(&mut self.io, done.id, end, Instant::now());
        true
    }
}
