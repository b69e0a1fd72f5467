//! The one way in and the one way out: `feed` gives the supervisor its
//! inputs; `route` carries out its actions and the subsystems' effects
//! (follower output, abandoned waits, finished restores) until none is left.

use super::event_loop::Reactor;
use crate::api::handlers;
use crate::api::pending::{Await, Pending};
use crate::containers::driver::{Containers, Ctx};
use crate::core::supervisor::{Action, Input, Outcome, StartError};
use crate::io::TimerKey;
use crate::output::exec::ExecDone;
use crate::output::logs::StreamOut;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid as NixPid;
use std::time::Instant;

impl Reactor {
    /// Gives the supervisor one input; its actions wait for `route`.
    pub(super) fn feed(&mut self, input: Input) {
        self.sup.handle(input, Instant::now());
    }

    /// Carries out everything the last handler caused, until nothing is
    /// left: supervisor actions, output for followers, waits whose client
    /// went away, a restore report that is complete.
    pub(super) fn route(&mut self, now: Instant) {
        loop {
            // Checked first: a restore with nothing to wait for (every
            // service already as wanted) is finished at once.
            if let Some(report) = self.restore.take_finished() {
                self.answer_restore(&report);
            }
            let actions = self.sup.take_actions();
            // A lone start (a restart, say) is cloned and waited for; a
            // burst is forked and answered as each child execs.
            let lone = actions
                .iter()
                .filter(|a| matches!(a, Action::Spawn { .. }))
                .count()
                == 1;
            let streams = self.logs.take_output();
            let abandoned = self.api.take_abandoned();
            let checked = self.route_checks(now);
            if actions.is_empty() && streams.is_empty() && abandoned.is_empty() && !checked {
                // A restore that touched no service is complete at once.
                if let Some(report) = self.restore.take_finished() {
                    self.answer_restore(&report);
                }
                break;
            }
            for a in actions {
                self.run_action(a, now, lone);
            }
            for s in streams {
                match s {
                    StreamOut::Data { to, bytes } => self.api.stream(&mut self.io, to, &bytes),
                    StreamOut::End { to } => self.api.end_stream(&mut self.io, to),
                }
            }
            for p in abandoned {
                self.on_abandoned(p);
            }
        }
        self.launcher.cancel_stale(&mut self.io, &self.sup);
    }

    fn run_action(&mut self, action: Action, now: Instant, lone: bool) {
        match action {
            Action::Spawn { name, gen } => {
                self.spawn(&name, gen, lone);
                self.burst_hook();
            }
            Action::WatchPort { name, gen, port } => {
                self.health.watch(&mut self.io, name, gen, port, now)
            }
            Action::Terminate { name, pgid } => self.terminate(&name, pgid),
            Action::KillTree { name, pgid } => {
                if !self.with_driver(|c, cx| c.on_kill(cx, &name)) {
                    let _ = killpg(NixPid::from_raw(pgid), Signal::SIGKILL);
                    if let Some(cg) = &self.cgroups {
                        cg.kill_all(&name);
                    }
                }
            }
            Action::WatchTree { name, gen, pgid } => {
                self.trees
                    .watch(name, gen, pgid, self.cgroups.as_ref(), now);
                self.check_trees(now);
            }
            Action::Schedule { at, timer } => self.io.schedule(at, TimerKey::Service(timer)),
            Action::Settled { name, outcome } => self.settled(&name, outcome),
            Action::Persist => self.dirty = true,
            Action::WatchCheck {
                name,
                gen,
                check,
                interval,
            } => self.watch_check(name, gen, check, interval, now),
            Action::Probe {
                name,
                gen,
                check,
                timeout,
            } => self
                .checks
                .probe(&mut self.io, &name, gen, &check, timeout, now),
            Action::Removed { name } => {
                self.cgroups_used.remove(&name);
                self.end_readiness(&name);
                self.checks.forget(&mut self.io, &name);
                if let Some(cg) = &self.cgroups {
                    cg.remove(&name);
                }
                self.with_driver(|c, cx| c.on_removed(cx, &name));
                self.logs.on_removed(&mut self.io, &name);
                self.containers.collect_garbage(&self.sup);
            }
            Action::ShutdownComplete => {
                crate::info!("all services stopped");
                self.end_event_streams();
                self.finished = true;
            }
            Action::Changed(change) => self.service_changed(change),
        }
    }

    /// Runs the container driver with what it may use; its answers to the
    /// supervisor are fed in at once.
    pub(super) fn with_driver<R>(&mut self, f: impl FnOnce(&mut Containers, &mut Ctx) -> R) -> R {
        let mut cx = Ctx {
            io: &mut self.io,
            logs: &mut self.logs,
            sup: &self.sup,
            cgroups: self.cgroups.as_ref(),
            out: Vec::new(),
        };
        let r = f(&mut self.containers, &mut cx);
        let out = std::mem::take(&mut cx.out);
        for input in out {
            self.feed(input);
        }
        r
    }

    /// The supervisor's `Spawn`: a container goes to the driver, a plain
    /// service to the launcher.
    pub(super) fn spawn(&mut self, name: &str, gen: u64, lone: bool) {
        let Some(mut def) = self.sup.get(name).map(|s| s.def.clone()) else {
            return;
        };
        if let Some(cg) = &self.cgroups {
            if !self.cgroups_used.contains(name) {
                cg.renew(name);
                self.cgroups_used.insert(name.to_string());
            }
        }
        // oom_killed speaks of this run: remember the count so far.
        if let Some(n) = self.cgroups.as_ref().and_then(|cg| cg.oom_kills(name)) {
            self.stats.oom_base.insert(name.to_string(), n);
        }
        // Limits are in the cgroup before any process of the service runs
        // in it (a container's runtime too); one that cannot be applied
        // fails the start.
        let limited = match &self.cgroups {
            Some(cg) => cg.limit(name, def.limits.as_ref()),
            None => def
                .limits
                .as_ref()
                .map_or(Ok(()), crate::proc::cgroup::limits_without_cgroups),
        };
        if let Err(e) = limited {
            crate::warn!("unable to start '{name}': {e}");
            self.feed(Input::Spawned {
                name: name.to_string(),
                gen,
                result: Err(StartError::Prepare(e.to_string())),
            });
            return;
        }
        let original_env = def.env.clone();
        if let Err(e) = self.prepare_checks(name, &mut def) {
            crate::warn!("unable to start '{name}': {e}");
            self.feed(Input::Spawned {
                name: name.to_string(),
                gen,
                result: Err(StartError::Prepare(e)),
            });
            return;
        }
        if def.container {
            let extra = def
                .env
                .into_iter()
                .filter(|(k, v)| original_env.get(k) != Some(v))
                .collect();
            self.with_driver(|c, cx| c.start(cx, name, gen, extra));
            return;
        }
        let cgroups = self.cgroups.as_ref();
        let result = match self.launcher.spawn(
            &mut self.io,
            &mut self.logs,
            cgroups,
            (name, gen),
            &def,
            lone,
        ) {
            Ok(None) => return, // answered once it has exec'd
            Ok(Some(pid)) => Ok(pid),
            Err(e) => {
                crate::warn!("unable to start '{name}': {e}");
                Err(e)
            }
        };
        self.feed(Input::Spawned {
            name: name.to_string(),
            gen,
            result,
        });
    }

    /// A burst of spawns can take a while: take in the children of the
    /// burst that have exec'd meanwhile (their EOF events would wait for
    /// the end of the batch) and keep scanning ports in between, so early
    /// services are not kept waiting.
    fn burst_hook(&mut self) {
        let mut inputs = self.launcher.collect_exec_d(&mut self.io, &self.sup);
        inputs.extend(self.health.scan_if_due(&mut self.io));
        for input in inputs {
            self.feed(input);
        }
    }

    fn terminate(&mut self, name: &str, pgid: i32) {
        crate::info!("stopping '{name}'");
        if self.with_driver(|c, cx| c.on_terminate(cx, name)) {
            return;
        }
        // One SIGTERM per process: its cgroup holds the whole tree
        // (daemonized children too); the process group is the fallback
        // without cgroups. Sending both would deliver it twice, and a
        // handler could run twice.
        let members = self
            .cgroups
            .as_ref()
            .map(|cg| cg.pids(name))
            .unwrap_or_default();
        if members.is_empty() {
            let _ = killpg(NixPid::from_raw(pgid), Signal::SIGTERM);
        } else {
            for pid in members {
                let _ = kill(NixPid::from_raw(pid), Signal::SIGTERM);
            }
        }
    }

    pub(super) fn check_trees(&mut self, now: Instant) {
        if self.trees.is_idle() {
            return;
        }
        let containers = &self.containers;
        // A container's runtime may still be deleting it.
        let busy = |name: &str| !containers.tree_gone(name);
        let inputs = self
            .trees
            .check(&mut self.io, self.cgroups.as_ref(), busy, now);
        for input in inputs {
            self.feed(input);
        }
    }

    /// A service settled: its port watch ends, and whatever waited for it
    /// is answered.
    fn settled(&mut self, name: &str, outcome: Outcome) {
        let outcome = self.with_last_output(name, outcome);
        self.end_readiness(name);
        let waits = self
            .api
            .take_waits(|w| matches!(w, Await::Goal { name: n, .. } if n == name));
        for p in waits {
            let Await::Goal { kind, .. } = &p.wait else {
                continue;
            };
            match handlers::settled_reply(&self.view(), name, *kind, &outcome) {
                Some(resp) => self.api.answer(&mut self.io, p, resp),
                None => self.api.wait_again(p),
            }
        }
        self.restore.on_settled(name, &outcome);
        if outcome == Outcome::Stopped {
            crate::info!("stopped '{name}'");
        }
    }

    /// A failure whose cause says the service's output tells why (it died,
    /// or missed its health deadline): its error and the answer carry its
    /// last lines, so nobody needs a second call to see why.
    fn with_last_output(&mut self, name: &str, outcome: Outcome) -> Outcome {
        match outcome {
            Outcome::Failed(mut f) if f.cause.shows_output() => {
                f.last_output = self.logs.excerpt(name, 5);
                if f.last_output.is_some() {
                    self.sup.explain(name, &f);
                }
                Outcome::Failed(f)
            }
            other => other,
        }
    }

    /// A restore finished: answer the requests that waited for its report.
    fn answer_restore(&mut self, report: &serde_json::Value) {
        if report["trigger"] == "boot" {
            crate::persist::boot::log_ready(self.stats.started, report);
        }
        self.publish(crate::api::events::Kind::Restore, None, report);
        for p in self.api.take_waits(|w| *w == Await::Restore) {
            self.api
                .answer(&mut self.io, p, handlers::restore_reply(report));
        }
    }

    /// An exec finished: answer its client, if it is still there.
    pub(super) fn exec_done(&mut self, done: ExecDone) {
        if self.check_exec_done(&done) {
            return;
        }
        let id = done.id;
        for p in self.api.take_waits(|w| *w == Await::Exec(id)) {
            self.api
                .answer(&mut self.io, p, handlers::exec_reply(&done));
        }
    }

    /// A client went away while its request waited: what it waited for is
    /// dropped (a start goes on; an exec is killed; a follow ends).
    fn on_abandoned(&mut self, p: Pending) {
        match p.wait {
            Await::Exec(id) => self.execs.abandon(id),
            Await::Follow(_) => self.logs.forget_follower(p.conn),
            Await::Events => self.events.forget(p.conn),
            Await::Goal { .. } | Await::Restore => {}
        }
    }
}
