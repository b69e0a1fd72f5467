//! The HTTP API on the unix socket: parsing requests off connections,
//! dispatching them to the supervisor, and answering — at once, or later
//! when the service settles (deferred answers never block the loop).

pub mod conn;
pub mod error;
pub mod events;
pub mod http;
pub mod model;
pub mod routes;

use crate::core::definition::Definition;
use crate::core::supervisor::{Outcome, Phase, Progress, Source};
use crate::persist::report::Finished;
use crate::reactor::{Init, WaitKind, Waiter};
use conn::ConnState;
use error::ApiError;
use http::{Request, Response};
use mio::Token;
use routes::Route;
use serde_json::{json, Value};
use std::time::Instant;

/// What handling a request produced.
pub(crate) enum Reply {
    Now(Response),
    /// Answered later (a waiter or a restore report was registered).
    Deferred,
}

/// Parses and handles every complete request buffered on the connection,
/// in order, stopping at a deferred answer.
pub(crate) fn process_conn(init: &mut Init, token: Token) {
    loop {
        let now = Instant::now();
        let Some(conn) = init.conns.get_mut(&token) else {
            return;
        };
        if !matches!(conn.state, ConnState::Idle | ConnState::Reading) || conn.rbuf.is_empty() {
            break;
        }
        match http::parse_request(&conn.rbuf) {
            Ok(None) => {
                if !conn.continue_sent && http::expects_continue(&conn.rbuf) {
                    // curl waits a second for this before sending a body.
                    conn.continue_sent = true;
                    conn.wbuf.extend_from_slice(http::CONTINUE);
                }
                if conn.state == ConnState::Idle {
                    conn.state = ConnState::Reading;
                    conn.deadline = Some(now + conn::REQUEST_TIMEOUT);
                    let at = now + conn::REQUEST_TIMEOUT;
                    init.arm_sweep(at);
                }
                break;
            }
            Err(e) => {
                conn.rbuf.clear();
                let resp = ApiError::from(e).to_response(false);
                respond(init, token, resp);
                break;
            }
            Ok(Some((req, used))) => {
                conn.rbuf.drain(..used);
                conn.continue_sent = false;
                conn.state = ConnState::Awaiting;
                conn.deadline = None;
                let trusted = conn.trusted;
                let keep_alive = req.keep_alive;
                let reply = if trusted {
                    handle(init, token, req)
                } else {
                    Reply::Now(ApiError::Forbidden.to_response(false))
                };
                match reply {
                    Reply::Now(mut resp) => {
                        resp.keep_alive = resp.keep_alive && keep_alive;
                        respond(init, token, resp);
                    }
                    Reply::Deferred => break,
                }
            }
        }
    }
    // Written at the end of the loop iteration, after the state file: an
    // answer never reports a change that a crash could still lose.
    init.flush_later(token);
}

/// Queues an answer on the connection and moves it back to reading.
pub(crate) fn respond(init: &mut Init, token: Token, resp: Response) {
    let now = Instant::now();
    let Some(conn) = init.conns.get_mut(&token) else {
        return;
    };
    conn.wbuf.extend_from_slice(&resp.to_bytes());
    let deadline = if resp.keep_alive {
        conn.state = ConnState::Idle;
        now + conn::IDLE_TIMEOUT
    } else {
        conn.state = ConnState::Closing;
        now + conn::REQUEST_TIMEOUT
    };
    conn.deadline = Some(deadline);
    init.arm_sweep(deadline);
}

/// Answers a deferred request, then goes on with pipelined ones.
pub(crate) fn respond_later(init: &mut Init, token: Token, resp: Response) {
    respond(init, token, resp);
    // Requests pipelined behind the deferred one may still sit in the
    // socket (reading stopped at one request ahead): read them now.
    init.read_conn(token);
    process_conn(init, token);
}

fn json_response(status: u16, v: &Value) -> Response {
    Response::json(status, serde_json::to_vec(v).unwrap_or_default())
}

fn service_value(init: &Init, name: &str) -> Option<Value> {
    let s = init.sup.get(name)?;
    let mut extra = serde_json::Map::new();
    if let Some(cg) = &init.cgroups {
        if let Some(n) = cg.oom_kills(name) {
            // Killed by the OOM killer during its current (or last) run;
            // oom_kills counts every run since the service was defined.
            let base = init.stats.oom_base.get(name).copied().unwrap_or(0);
            extra.insert("oom_killed".into(), json!(n > base));
            extra.insert("oom_kills".into(), json!(n));
        }
    }
    if let Some(log) = init.logs.get(name) {
        // Bytes that could not be written to the log file (a full disk).
        extra.insert("log_lines".into(), json!(log.lines));
        extra.insert("log_dropped_bytes".into(), json!(log.dropped_bytes));
    }
    // Always present (0 when none), as the README lists it.
    let orphans = init.stats.orphans_by_service.get(name).copied();
    extra.insert("orphans_reaped".into(), json!(orphans.unwrap_or(0)));
    crate::proc::launcher::extra_fields(init, name, &mut extra);
    Some(model::service_json(s, Instant::now(), &extra))
}

fn ok_service(init: &Init, status: u16, name: &str) -> Response {
    match service_value(init, name) {
        Some(v) => json_response(status, &v),
        None => ApiError::NotFound(name.to_string()).to_response(true),
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadJson(format!("invalid JSON body: {e}")))
}

fn handle(init: &mut Init, token: Token, req: Request) -> Reply {
    let route = match routes::route(&req.method, &req.path, &req.query) {
        Ok(r) => r,
        Err(e) => return Reply::Now(e.to_response(true)),
    };
    match dispatch(init, token, route, &req) {
        Ok(reply) => reply,
        Err(e) => Reply::Now(e.to_response(true)),
    }
}

fn dispatch(init: &mut Init, token: Token, route: Route, req: &Request) -> Result<Reply, ApiError> {
    let now = Instant::now();
    let keep_alive = req.keep_alive;
    match route {
        Route::ListServices => {
            let names: Vec<String> = init.sup.services().map(|s| s.name.clone()).collect();
            let list: Vec<Value> = names
                .iter()
                .filter_map(|n| service_value(init, n))
                .collect();
            Ok(Reply::Now(json_response(200, &Value::Array(list))))
        }
        Route::GetService(name) => service_value(init, &name)
            .map(|v| Reply::Now(json_response(200, &v)))
            .ok_or(ApiError::NotFound(name)),
        Route::PutService(name) => {
            if init.sup.is_shutting_down() {
                return Err(ApiError::Conflict("the init is shutting down".into()));
            }
            let _: Value = parse_body(&req.body)?;
            let def =
                Definition::from_json(&req.body).map_err(|e| ApiError::InvalidDefinition(e.0))?;
            let created = init.sup.upsert(&name, def, Source::Api, now)?;
            init.run_actions(now);
            Ok(Reply::Now(ok_service(
                init,
                if created { 201 } else { 200 },
                &name,
            )))
        }
        Route::DeleteService(name) => match init.sup.delete(&name, now)? {
            Progress::Done => {
                init.run_actions(now);
                Ok(Reply::Now(json_response(
                    200,
                    &json!({"name": name, "deleted": true}),
                )))
            }
            Progress::Pending => Ok(progress_reply(
                init,
                token,
                &name,
                Progress::Pending,
                true,
                WaitKind::Delete,
                keep_alive,
            )),
        },
        Route::Start { name, wait, pull } => {
            if pull && !init.sup.get(&name).is_some_and(|s| s.phase.is_active()) {
                crate::containers::driver::forget_image(init, &name).map_err(ApiError::Conflict)?;
            }
            let p = init.sup.start(&name, now)?;
            Ok(progress_reply(
                init,
                token,
                &name,
                p,
                wait,
                WaitKind::Start,
                keep_alive,
            ))
        }
        Route::Restart { name, wait } => {
            let p = init.sup.restart(&name, now)?;
            Ok(progress_reply(
                init,
                token,
                &name,
                p,
                wait,
                WaitKind::Start,
                keep_alive,
            ))
        }
        Route::Stop { name, wait } => {
            let p = init.sup.stop(&name, now)?;
            Ok(progress_reply(
                init,
                token,
                &name,
                p,
                wait,
                WaitKind::Stop,
                keep_alive,
            ))
        }
        Route::ServiceExec(name) => crate::output::exec::service_exec(init, token, &name, req),
        Route::Exec => crate::output::exec::sandbox_exec(init, token, req),
        Route::Logs { name, tail, follow } => {
            crate::output::logs::handle(init, token, &name, tail, follow, req)
        }
        Route::Checkpoint => {
            init.write_state()
                .map_err(|e| ApiError::Internal(format!("cannot write the state file: {e}")))?;
            let running: Vec<String> = init
                .sup
                .services()
                .filter(|s| matches!(s.phase, Phase::Running { .. }))
                .map(|s| s.name.clone())
                .collect();
            Ok(Reply::Now(json_response(
                200,
                &json!({
                    "running_services": running,
                    "state_file": init.cfg.state_file.display().to_string(),
                    "timestamp": model::rfc3339(std::time::SystemTime::now()),
                }),
            )))
        }
        Route::Restore => {
            if init.sup.is_shutting_down() {
                return Err(ApiError::Conflict("the init is shutting down".into()));
            }
            let error = crate::persist::boot::reload_wanted(init, now);
            crate::proc::launcher::on_restore(init, now);
            crate::persist::boot::apply(init, "api", error, Some((token, keep_alive)), now);
            Ok(Reply::Deferred)
        }
        Route::LastRestore => Ok(Reply::Now(json_response(
            200,
            init.restore.last.as_ref().unwrap_or(&json!({
                "trigger": null, "timestamp": null, "started_services": [],
                "stopped_services": [], "failed_services": [], "state_file_error": null,
            })),
        ))),
        Route::System => {
            let uptime = init.stats.started.elapsed();
            let v = json!({
                "name": "iris-init",
                "version": env!("CARGO_PKG_VERSION"),
                "pid": std::process::id(),
                "pid1": init.stats.pid1,
                "uptime_secs": uptime.as_secs(),
                "uptime_ms": uptime.as_millis() as u64,
                "services": init.sup.len(),
                "running_services": init.sup.services().filter(|s| matches!(s.phase, Phase::Running { .. })).count(),
                "zombies_reaped": init.stats.zombies_reaped,
                "connections": init.conns.len(),
                "cgroups": init.cgroups.as_ref().map(|c| c.base().display().to_string()),
                "state_file": init.cfg.state_file.display().to_string(),
                "state_file_error": init.state_error,
                "state_file_writes": init.stats.state_writes,
                "state_file_last_write_us": init.stats.last_state_write_us,
                "shutting_down": init.halt.is_some(),
            });
            Ok(Reply::Now(json_response(200, &v)))
        }
        Route::Poweroff => Ok(halt(init, token, crate::pid1::HaltMode::PowerOff)),
        Route::Reboot => Ok(halt(init, token, crate::pid1::HaltMode::Reboot)),
    }
}

/// Answers a start/stop/restart: at once when done or not waited for
/// (202, the service already `unknown`), else once the service settles.
fn progress_reply(
    init: &mut Init,
    token: Token,
    name: &str,
    progress: Progress,
    wait: bool,
    kind: WaitKind,
    keep_alive: bool,
) -> Reply {
    let now = Instant::now();
    match (progress, wait) {
        (Progress::Done, _) => {
            init.run_actions(now);
            Reply::Now(ok_service(init, 200, name))
        }
        (Progress::Pending, false) => {
            let resp = ok_service(init, 202, name);
            init.run_actions(now);
            Reply::Now(resp)
        }
        (Progress::Pending, true) => {
            init.waiters.push(Waiter {
                token,
                name: name.to_string(),
                kind,
                keep_alive,
            });
            init.run_actions(now);
            Reply::Deferred
        }
    }
}

/// The 202 goes out before the shutdown begins.
fn halt(init: &mut Init, token: Token, mode: crate::pid1::HaltMode) -> Reply {
    let word = match mode {
        crate::pid1::HaltMode::Reboot => "reboot",
        crate::pid1::HaltMode::PowerOff => "poweroff",
    };
    let mut resp = json_response(202, &json!({"action": word, "status": "accepted"}));
    resp.keep_alive = false;
    respond(init, token, resp);
    init.flush_conn(token);
    init.begin_shutdown(mode, "the API");
    Reply::Deferred
}

/// A service settled: answer every request that waited for it.
pub(crate) fn on_settled(init: &mut Init, name: &str, outcome: &Outcome) {
    let (mine, rest): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut init.waiters)
        .into_iter()
        .partition(|w| w.name == name);
    init.waiters = rest;
    for w in mine {
        let resp = match (w.kind, outcome) {
            (WaitKind::Start, Outcome::Running) => Some(ok_service(init, 200, name)),
            (WaitKind::Start, Outcome::Failed(msg)) => Some(
                ApiError::ServiceFailed(format!("service '{name}' failed: {msg}"))
                    .to_response(true),
            ),
            (WaitKind::Start, Outcome::Stopped) => Some(
                ApiError::Conflict(format!(
                    "service '{name}' was stopped before it was running"
                ))
                .to_response(true),
            ),
            (WaitKind::Stop, Outcome::Stopped | Outcome::Failed(_)) => {
                Some(ok_service(init, 200, name))
            }
            (WaitKind::Stop, Outcome::Running) => Some(
                ApiError::Conflict(format!("service '{name}' was started again while stopping"))
                    .to_response(true),
            ),
            (WaitKind::Delete, Outcome::Deleted) => {
                Some(json_response(200, &json!({"name": name, "deleted": true})))
            }
            (WaitKind::Start | WaitKind::Stop, Outcome::Deleted) => {
                Some(ApiError::NotFound(name.to_string()).to_response(true))
            }
            (WaitKind::Delete, _) => None,
        };
        match resp {
            Some(mut r) => {
                r.keep_alive = r.keep_alive && w.keep_alive;
                respond_later(init, w.token, r);
            }
            None => init.waiters.push(w),
        }
    }
}

/// A restore finished: answer the requests that waited for its report.
pub(crate) fn answer_restore(init: &mut Init, done: Finished) {
    if done.report["trigger"] == "boot" {
        crate::persist::boot::log_ready(init, &done.report);
    }
    for (token, keep_alive) in done.waiters {
        let mut r = json_response(200, &done.report);
        r.keep_alive = keep_alive;
        respond_later(init, token, r);
    }
}
