//! The request path: a connection's requests go to `handlers`; the
//! commands they return are carried out here against the supervisor and
//! the subsystems, and answered at once or marked to wait. Connections
//! answered late are taken up again at the end of the loop iteration,
//! never from inside an action.

use super::event_loop::Reactor;
use crate::api::error::ApiError;
use crate::api::handlers::{self, Command, Handled};
use crate::api::http::Response;
use crate::api::pending::{Answer, Await, GoalKind};
use crate::core::supervisor::Source;
use crate::output::exec::ExecPlan;
use mio::Token;
use std::time::Instant;

impl Reactor {
    pub(super) fn on_conn_event(&mut self, token: Token, readable: bool, writable: bool) {
        if readable {
            self.api.read(token);
            self.serve(token);
            if self.api.peer_closed(token) {
                self.api.on_peer_closed(&mut self.io, token);
                return;
            }
        }
        if writable {
            self.api.flush(&mut self.io, token);
        }
    }

    /// Handles every complete request buffered on the connection, in
    /// order, until one waits.
    fn serve(&mut self, token: Token) {
        while let Some(req) = self.api.next_request(&mut self.io, token) {
            let answer = match handlers::handle(&req, &self.view()) {
                Ok(Handled::Answer(a)) => Ok(a),
                Ok(Handled::Command(cmd)) => {
                    let changes = cmd.changes_state();
                    self.execute(token, cmd).map(|mut a| {
                        if let (true, Answer::Now(resp)) = (changes, &mut a) {
                            resp.durable = true;
                        }
                        a
                    })
                }
                Err(e) => Err(e),
            };
            let answer = answer.unwrap_or_else(|e| Answer::Now(e.to_response(true)));
            self.api.reply(&mut self.io, token, req.keep_alive, answer);
            // The wait is registered first: an action may settle it now.
            self.route(Instant::now());
        }
        // Written at the end of the loop iteration, after the state file: an
        // answer never reports a change that a crash could still lose.
        self.api.flush_later(token);
    }

    /// Connections whose waiting request was answered: requests pipelined
    /// behind it may still sit in the socket (reading stopped one request
    /// ahead), so read and serve them now.
    pub(super) fn resume_answered(&mut self) {
        loop {
            let tokens = self.api.take_resumable();
            if tokens.is_empty() {
                return;
            }
            for token in tokens {
                self.api.read(token);
                self.serve(token);
                if self.api.peer_closed(token) {
                    self.api.on_peer_closed(&mut self.io, token);
                }
            }
            self.route(Instant::now());
        }
    }

    /// Carries out what a request asks for.
    fn execute(&mut self, token: Token, cmd: Command) -> Result<Answer, ApiError> {
        let now = Instant::now();
        let progress = |r: &Reactor, name: &str, p, wait, kind| {
            handlers::progress_answer(&r.view(), name, p, wait, kind)
        };
        match cmd {
            Command::Put { name, def } => {
                let created = self.sup.upsert(&name, *def, Source::Api, now)?;
                let status = if created { 201 } else { 200 };
                Ok(Answer::Now(handlers::service_reply(
                    &self.view(),
                    status,
                    &name,
                )))
            }
            Command::Delete(name) => {
                let p = self.sup.delete(&name, now)?;
                Ok(progress(self, &name, p, true, GoalKind::Delete))
            }
            Command::Start { name, wait, pull } => {
                if pull && !self.sup.get(&name).is_some_and(|s| s.phase.is_active()) {
                    self.containers
                        .forget_image(&self.sup, &name)
                        .map_err(ApiError::Conflict)?;
                }
                let p = self.sup.start(&name)?;
                Ok(progress(self, &name, p, wait, GoalKind::Start))
            }
            Command::Restart { name, wait } => {
                let p = self.sup.restart(&name, now)?;
                Ok(progress(self, &name, p, wait, GoalKind::Start))
            }
            Command::Stop { name, wait } => {
                let p = self.sup.stop(&name, now)?;
                Ok(progress(self, &name, p, wait, GoalKind::Stop))
            }
            Command::SandboxExec(b) => {
                let timeout = b.timeout();
                let user = b.user.as_deref();
                let plan =
                    ExecPlan::in_sandbox(b.cmd, &b.env, b.working_dir, user, b.stdin, timeout)?;
                let id = self.execs.start(&mut self.io, plan)?;
                Ok(Answer::Wait(Await::Exec(id)))
            }
            Command::ServiceExec { name, req } => self.service_exec(&name, req),
            Command::Logs { name, tail, follow } => self.logs_answer(token, name, tail, follow),
            Command::Checkpoint => {
                self.write_state().map_err(|e| {
                    ApiError::NotDurable(format!(
                        "cannot write the state file {}: {e}",
                        self.cfg.state_file.display()
                    ))
                })?;
                Ok(Answer::Now(handlers::checkpoint_reply(&self.view())))
            }
            Command::Restore(body) => {
                self.restore_now("api", &body);
                Ok(Answer::Wait(Await::Restore))
            }
            Command::Events { since, filter } => Ok(self.subscribe(token, since, filter)),
            Command::Halt(mode) => {
                // The 202 goes out before the shutdown begins.
                self.api
                    .respond(&mut self.io, token, handlers::halt_reply(mode));
                self.api.flush(&mut self.io, token);
                self.begin_shutdown(mode, "the API");
                Ok(Answer::Sent)
            }
        }
    }

    fn service_exec(
        &mut self,
        name: &str,
        req: crate::api::exec_request::ServiceExec,
    ) -> Result<Answer, ApiError> {
        let svc = self
            .sup
            .get(name)
            .ok_or_else(|| ApiError::NotFound(name.to_string()))?;
        let (def, active) = (svc.def.clone(), svc.phase.is_active());
        let timeout = req.timeout();
        let plan = if def.container {
            let ctr = self.containers.exec_command(&self.sup, name, &req.cmd)?;
            ExecPlan::in_container(ctr.argv, ctr.pid_file, ctr.cleanup, req.stdin, timeout)
        } else {
            let cgroup_procs = match &self.cgroups {
                Some(cg) if active => cg.prepare(name).ok(),
                _ => None,
            };
            ExecPlan::in_service(&def, req.cmd, cgroup_procs, req.stdin, timeout)
                .map_err(|e| ApiError::service_exec(name, e))?
        };
        let id = self
            .execs
            .start(&mut self.io, plan)
            .map_err(|e| ApiError::service_exec(name, e))?;
        Ok(Answer::Wait(Await::Exec(id)))
    }

    fn logs_answer(
        &mut self,
        token: Token,
        name: String,
        tail: Option<usize>,
        follow: bool,
    ) -> Result<Answer, ApiError> {
        self.logs.drain(&name);
        let body = match tail {
            Some(n) => self.logs.tail(&name, n),
            None => self.logs.read_all(&name),
        };
        if !follow {
            return Ok(Answer::Now(Response::text(200, body)));
        }
        self.logs
            .follow(&mut self.io, &name, token)
            .map_err(|e| ApiError::Internal(format!("cannot open the log of '{name}': {e}")))?;
        Ok(Answer::Follow { name, body })
    }
}
