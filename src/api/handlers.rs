//! What each request means: from a parsed request and a read-only view of
//! the init to an answer, or to a command the reactor carries out (and
//! answers with the helpers here). No socket, no mutation: tested as plain
//! functions.

use super::error::ApiError;
use super::events::{self, Filter};
use super::exec_request::{self, SandboxExec, ServiceExec};
use super::http::{Request, Response};
use super::metrics;
use super::model;
use super::pending::{Answer, Await, GoalKind};
use super::routes::{self, Route};
use crate::containers::driver::Containers;
use crate::core::definition::Definition;
use crate::core::supervisor::{ExitStatus, Outcome, Phase, Progress, Supervisor};
use crate::output::exec::ExecDone;
use crate::output::logs::Logs;
use crate::pid1::HaltMode;
use crate::proc::cgroup::Cgroups;
use crate::resume::request::{BadBody, RestoreRequest};
use crate::stats::Stats;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

/// The API's description, kept in the repository next to the code it
/// describes and checked against real answers (tests/openapi.rs).
/// src/api/openapi.json without its indentation (see build.rs).
pub(crate) const OPENAPI: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.min.json"));

/// What the handlers may read of the init.
pub(crate) struct View<'a> {
    pub sup: &'a Supervisor,
    pub logs: &'a Logs,
    pub containers: &'a Containers,
    pub cgroups: Option<&'a Cgroups>,
    pub stats: &'a Stats,
    /// The last finished restore report.
    pub last_restore: Option<&'a Value>,
    pub state_file: &'a Path,
    pub state_error: Option<&'a str>,
    pub connections: usize,
    pub shutting_down: bool,
    /// The VM generation (see `resume`).
    pub generation: u64,
    /// Clients of `GET /v1/events`, and the newest event's id.
    pub event_clients: usize,
    pub last_event_id: u64,
}

/// A request that changes something: the reactor carries it out.
#[derive(Debug)]
pub(crate) enum Command {
    Put {
        name: String,
        /// Boxed: a definition is much larger than the other commands.
        def: Box<Definition>,
    },
    Delete(String),
    Start {
        name: String,
        wait: bool,
        pull: bool,
    },
    Restart {
        name: String,
        wait: bool,
    },
    Stop {
        name: String,
        wait: bool,
    },
    SandboxExec(SandboxExec),
    ServiceExec {
        name: String,
        req: ServiceExec,
    },
    Logs {
        name: String,
        tail: Option<usize>,
        follow: bool,
    },
    Checkpoint,
    Restore(RestoreRequest),
    Halt(HaltMode),
    /// Subscribe to the events stream from `since` (or now).
    Events {
        since: Option<u64>,
        filter: Filter,
    },
}

impl Command {
    /// Whether its success reports a change the state file must hold.
    pub(crate) fn changes_state(&self) -> bool {
        matches!(
            self,
            Command::Put { .. }
                | Command::Delete(_)
                | Command::Start { .. }
                | Command::Restart { .. }
                | Command::Stop { .. }
                | Command::Checkpoint
                | Command::Restore(_)
        )
    }
}

#[derive(Debug)]
pub(crate) enum Handled {
    Answer(Answer),
    Command(Command),
}

fn json_response(status: u16, v: &Value) -> Response {
    Response::json(status, serde_json::to_vec(v).unwrap_or_default())
}

fn now_answer(status: u16, v: &Value) -> Result<Handled, ApiError> {
    Ok(Handled::Answer(Answer::Now(json_response(status, v))))
}

/// The service object with every field the subsystems add.
pub(crate) fn service_value(view: &View, name: &str) -> Option<Value> {
    let s = view.sup.get(name)?;
    let mut extra = serde_json::Map::new();
    let oom_kills = view.cgroups.and_then(|cg| cg.oom_kills(name));
    if let Some(n) = oom_kills {
        // Killed by the OOM killer during its current (or last) run.
        let base = view.stats.oom_base.get(name).copied().unwrap_or(0);
        extra.insert("oom_killed".into(), json!(n > base));
    }
    // Every run since the service was defined (its cgroup's memory.events;
    // 0 where the memory controller is missing: no kill can be seen).
    extra.insert("oom_kills".into(), json!(oom_kills.unwrap_or(0)));
    if let Some(usage) = view.cgroups.and_then(|cg| cg.usage(name)) {
        extra.insert("usage".into(), json!(usage));
    }
    if let Some(log) = view.logs.get(name) {
        // Bytes that could not be written to the log file (a full disk).
        extra.insert("log_lines".into(), json!(log.lines));
        extra.insert("log_dropped_bytes".into(), json!(log.dropped_bytes));
    }
    // Always present (0 when none), as the README lists it.
    let orphans = view.stats.orphans_by_service.get(name).copied();
    extra.insert("orphans_reaped".into(), json!(orphans.unwrap_or(0)));
    view.containers.extra_fields(s, &mut extra);
    Some(model::service_json(s, Instant::now(), &extra))
}

/// Every service object, sorted by name.
pub(crate) fn service_list(view: &View) -> Vec<Value> {
    view.sup
        .services()
        .filter_map(|s| service_value(view, &s.name))
        .collect()
}

/// 200/201/202 with the service object (404 once it is gone).
pub(crate) fn service_reply(view: &View, status: u16, name: &str) -> Response {
    match service_value(view, name) {
        Some(v) => json_response(status, &v),
        None => ApiError::NotFound(name.to_string()).to_response(true),
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadJson(format!("invalid JSON body: {e}")))
}

/// Routes and handles one request.
pub(crate) fn handle(req: &Request, view: &View) -> Result<Handled, ApiError> {
    let route = routes::route(&req.method, &req.path, &req.query)?;
    let cmd = match route {
        Route::ListServices => return now_answer(200, &Value::Array(service_list(view))),
        Route::GetService(name) => {
            let v = service_value(view, &name).ok_or(ApiError::NotFound(name))?;
            return now_answer(200, &v);
        }
        Route::PutService(name) => {
            if view.sup.is_shutting_down() {
                return Err(ApiError::Conflict("the init is shutting down".into()));
            }
            let _: Value = parse_body(&req.body)?;
            let def =
                Definition::from_json(&req.body).map_err(|e| ApiError::InvalidDefinition(e.0))?;
            crate::containers::image::check_image_field(def.image.as_deref())
                .map_err(ApiError::InvalidDefinition)?;
            Command::Put {
                name,
                def: Box::new(def),
            }
        }
        Route::DeleteService(name) => Command::Delete(name),
        Route::Start { name, wait, pull } => Command::Start { name, wait, pull },
        Route::Restart { name, wait } => Command::Restart { name, wait },
        Route::Stop { name, wait } => Command::Stop { name, wait },
        Route::ServiceExec(name) => {
            if view.sup.get(&name).is_none() {
                return Err(ApiError::NotFound(name));
            }
            let req = exec_request::parse_service_exec(&req.body)?;
            Command::ServiceExec { name, req }
        }
        Route::Exec => Command::SandboxExec(exec_request::parse_sandbox_exec(&req.body)?),
        Route::Logs { name, tail, follow } => {
            if view.sup.get(&name).is_none() {
                return Err(ApiError::NotFound(name));
            }
            Command::Logs { name, tail, follow }
        }
        Route::Checkpoint => Command::Checkpoint,
        Route::Restore => {
            let body = RestoreRequest::parse(&req.body).map_err(|e| match e {
                BadBody::Json(m) => ApiError::BadJson(m),
                BadBody::Field(m) => ApiError::Malformed(m),
            })?;
            if view.sup.is_shutting_down() {
                return Err(ApiError::Conflict("the init is shutting down".into()));
            }
            Command::Restore(body)
        }
        Route::LastRestore => {
            let none = json!({
                "trigger": null, "timestamp": null, "started_services": [],
                "stopped_services": [], "failed_services": [], "state_file_error": null,
                "generation": view.generation, "clock_step_ms": 0, "reseeded": false,
                "restarted_services": [], "signalled_services": [], "errors": [],
            });
            return now_answer(200, view.last_restore.unwrap_or(&none));
        }
        Route::System => return now_answer(200, &system(view)),
        Route::Metrics => return Ok(Handled::Answer(Answer::Now(metrics(view)))),
        Route::Poweroff => Command::Halt(HaltMode::PowerOff),
        Route::Reboot => Command::Halt(HaltMode::Reboot),
        Route::Events { since, filter } => {
            let since = match since {
                Some(n) => Some(n),
                None => events::parse_since(None, req.last_event_id.as_deref())
                    .map_err(ApiError::Malformed)?,
            };
            Command::Events { since, filter }
        }
        Route::OpenApi => {
            let doc = OPENAPI.as_bytes().to_vec();
            return Ok(Handled::Answer(Answer::Now(Response::json(200, doc))));
        }
    };
    Ok(Handled::Command(cmd))
}

fn running_names<'a>(view: &View<'a>) -> impl Iterator<Item = String> + 'a {
    view.sup
        .services()
        .filter(|s| matches!(s.phase, Phase::Running { .. }))
        .map(|s| s.name.clone())
}

fn system(view: &View) -> Value {
    let uptime = view.stats.started.elapsed();
    json!({
        "name": "iris-init",
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "pid1": view.stats.pid1,
        "uptime_secs": uptime.as_secs(),
        "uptime_ms": uptime.as_millis() as u64,
        "services": view.sup.len(),
        "running_services": running_names(view).count(),
        "zombies_reaped": view.stats.zombies_reaped,
        "connections": view.connections,
        "cgroups": view.cgroups.map(|c| c.base().display().to_string()),
        "state_file": view.state_file.display().to_string(),
        "state_file_error": view.state_error,
        "state_file_writes": view.stats.state_writes,
        "state_file_last_write_us": view.stats.last_state_write_us,
        "shutting_down": view.shutting_down,
        // Lines of the init's own log its console did not take in time.
        "console_dropped_lines": crate::console::dropped_lines(),
        "generation": view.generation,
        "event_clients": view.event_clients,
        "last_event_id": view.last_event_id,
    })
}

/// `GET /v1/metrics`: the Prometheus text of the init and each service.
fn metrics(view: &View) -> Response {
    let services: Vec<metrics::ServiceFacts> = view
        .sup
        .services()
        .map(|s| {
            let usage = view.cgroups.and_then(|cg| cg.usage(&s.name));
            metrics::ServiceFacts {
                name: s.name.clone(),
                up: matches!(s.phase, Phase::Running { .. }),
                restarts: u64::from(s.restarts),
                oom_kills: view
                    .cgroups
                    .and_then(|cg| cg.oom_kills(&s.name))
                    .unwrap_or(0),
                memory_bytes: usage.and_then(|u| u.memory_bytes),
                cpu_usec: usage.and_then(|u| u.cpu_usec),
            }
        })
        .collect();
    let init = metrics::InitFacts {
        zombies_reaped: view.stats.zombies_reaped,
        services: view.sup.len(),
        uptime_secs: view.stats.started.elapsed().as_secs_f64(),
    };
    let text = metrics::render(&init, &services);
    Response::with_type(200, metrics::CONTENT_TYPE, text.into_bytes())
}

/// `POST /v1/checkpoint`, once the state file is written.
pub(crate) fn checkpoint_reply(view: &View) -> Response {
    let running: Vec<String> = running_names(view).collect();
    json_response(
        200,
        &json!({
            "running_services": running,
            "state_file": view.state_file.display().to_string(),
            "timestamp": model::rfc3339(std::time::SystemTime::now()),
        }),
    )
}

/// `DELETE` that finished at once.
pub(crate) fn deleted_reply(name: &str) -> Response {
    json_response(200, &json!({"name": name, "deleted": true}))
}

/// Answers a start/stop/restart/delete: at once when done or not waited
/// for (202, the service already `unknown`), else once the service settles.
pub(crate) fn progress_answer(
    view: &View,
    name: &str,
    progress: Progress,
    wait: bool,
    kind: GoalKind,
) -> Answer {
    match (progress, wait) {
        (Progress::Done, _) if kind == GoalKind::Delete => Answer::Now(deleted_reply(name)),
        (Progress::Done, _) => Answer::Now(service_reply(view, 200, name)),
        (Progress::Pending, false) => Answer::Now(service_reply(view, 202, name)),
        (Progress::Pending, true) => Answer::Wait(Await::Goal {
            name: name.to_string(),
            kind,
        }),
    }
}

/// The answer to a request that waited for `name` to settle; None when
/// this outcome is not what it waits for (a delete waits for the deletion).
pub(crate) fn settled_reply(
    view: &View,
    name: &str,
    kind: GoalKind,
    outcome: &Outcome,
) -> Option<Response> {
    let conflict = |m: String| Some(ApiError::Conflict(m).to_response(true));
    match (kind, outcome) {
        // A oneshot's start succeeds once it exited 0.
        (GoalKind::Start, Outcome::Running | Outcome::Completed) => {
            Some(service_reply(view, 200, name))
        }
        (GoalKind::Start, Outcome::Failed(msg)) => Some(
            ApiError::ServiceFailed(format!("service '{name}' failed: {msg}")).to_response(true),
        ),
        (GoalKind::Start, Outcome::Stopped) => conflict(format!(
            "service '{name}' was stopped before it was running"
        )),
        (GoalKind::Stop, Outcome::Stopped | Outcome::Failed(_) | Outcome::Completed) => {
            Some(service_reply(view, 200, name))
        }
        (GoalKind::Stop, Outcome::Running) => {
            conflict(format!("service '{name}' was started again while stopping"))
        }
        (GoalKind::Delete, Outcome::Deleted) => Some(deleted_reply(name)),
        (GoalKind::Start | GoalKind::Stop, Outcome::Deleted) => {
            Some(ApiError::NotFound(name.to_string()).to_response(true))
        }
        (GoalKind::Delete, _) => None,
    }
}

/// A finished exec's answer.
pub(crate) fn exec_reply(done: &ExecDone) -> Response {
    let signal = match done.status {
        ExitStatus::Signal(s) => Some(s),
        ExitStatus::Code(_) => None,
    };
    json_response(
        200,
        &json!({
            "stdout": String::from_utf8_lossy(&done.stdout),
            "stderr": String::from_utf8_lossy(&done.stderr),
            "exit_code": done.status.code(),
            "signal": signal,
            "timed_out": done.timed_out,
            "truncated": done.truncated,
        }),
    )
}

/// A finished restore's report.
pub(crate) fn restore_reply(report: &Value) -> Response {
    json_response(200, report)
}

/// The 202 that goes out before a shutdown begins.
pub(crate) fn halt_reply(mode: HaltMode) -> Response {
    let word = match mode {
        HaltMode::Reboot => "reboot",
        HaltMode::PowerOff => "poweroff",
    };
    let mut resp = json_response(202, &json!({"action": word, "status": "accepted"}));
    resp.keep_alive = false;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::core::supervisor::{Cause, Failure, Source, StartError};
    use std::path::PathBuf;

    /// Everything a View borrows, for one test.
    struct World {
        sup: Supervisor,
        logs: Logs,
        containers: Containers,
        stats: Stats,
        dir: PathBuf,
    }

    impl World {
        fn new(tag: &str) -> World {
            let dir =
                std::env::temp_dir().join(format!("iris-handlers-{tag}-{}", std::process::id()));
            let cfg = Config {
                socket: dir.join("s.sock"),
                services_dir: dir.join("init.d"),
                state_file: dir.join("state.json"),
                log_dir: dir.join("logs"),
            };
            let mut sup = Supervisor::new();
            let def = Definition::from_json(br#"{"cmd":"web","health_port":8080}"#).unwrap();
            sup.upsert("web", def, Source::Api, Instant::now()).unwrap();
            World {
                sup,
                logs: Logs::new(&cfg.log_dir),
                containers: Containers::new(&cfg),
                stats: Stats::new(false),
                dir,
            }
        }

        fn view(&self) -> View<'_> {
            View {
                sup: &self.sup,
                logs: &self.logs,
                containers: &self.containers,
                cgroups: None,
                stats: &self.stats,
                last_restore: None,
                state_file: &self.dir,
                state_error: None,
                connections: 3,
                shutting_down: false,
                generation: 0,
                event_clients: 0,
                last_event_id: 0,
            }
        }
    }

    fn req(method: &str, path: &str, query: &[(&str, &str)], body: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
            keep_alive: true,
            last_event_id: None,
        }
    }

    fn json(resp: &Response) -> Value {
        serde_json::from_slice(&resp.body).unwrap()
    }

    fn answered(h: Result<Handled, ApiError>) -> Response {
        match h {
            Ok(Handled::Answer(Answer::Now(r))) => r,
            other => panic!("expected an answer at once, got {other:?}"),
        }
    }

    #[test]
    fn reads_are_answered_from_the_view() {
        let w = World::new("reads");
        let list = answered(handle(&req("GET", "/v1/services", &[], ""), &w.view()));
        assert_eq!(list.status, 200);
        assert_eq!(json(&list)[0]["name"], "web");
        assert_eq!(json(&list)[0]["status"], "stopped");
        let sys = answered(handle(&req("GET", "/v1/system", &[], ""), &w.view()));
        assert_eq!(json(&sys)["connections"], 3);
        assert_eq!(json(&sys)["services"], 1);
        let restore = answered(handle(&req("GET", "/v1/restore", &[], ""), &w.view()));
        assert_eq!(json(&restore)["trigger"], Value::Null);
        let e = handle(&req("GET", "/v1/services/nope", &[], ""), &w.view()).unwrap_err();
        assert_eq!(e.status(), 404);
    }

    #[test]
    fn restore_bodies() {
        let mut w = World::new("restore-body");
        let mut view = w.view();
        view.generation = 6;
        let sys = answered(handle(&req("GET", "/v1/system", &[], ""), &view));
        assert_eq!(json(&sys)["generation"], 6);
        let last = answered(handle(&req("GET", "/v1/restore", &[], ""), &view));
        assert_eq!(json(&last)["generation"], 6);
        assert_eq!(json(&last)["errors"], json!([]));
        let post = |body: &str| handle(&req("POST", "/v1/restore", &[], body), &view);
        assert!(matches!(
            post(""),
            Ok(Handled::Command(Command::Restore(ref r))) if *r == RestoreRequest::default()
        ));
        assert!(matches!(
            post(r#"{"generation":9}"#),
            Ok(Handled::Command(Command::Restore(RestoreRequest {
                generation: Some(9),
                ..
            })))
        ));
        assert_eq!(post("{").unwrap_err().code(), "bad_json");
        for (body, field) in [
            (r#"{"time":"soon"}"#, "`time`"),
            (r#"{"entropy":"AAAA"}"#, "`entropy`"),
            (r#"{"generation":-1}"#, "`generation`"),
            (r#"{"gen":1}"#, "`gen`"),
            ("[1]", "object"),
        ] {
            let e = post(body).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
            assert!(e.to_string().contains(field), "{body}: {e}");
        }
        w.sup.shutdown(Instant::now());
        let e = handle(&req("POST", "/v1/restore", &[], ""), &w.view()).unwrap_err();
        assert_eq!(e.status(), 409);
    }

    #[test]
    fn an_events_request_resumes_from_the_query_else_last_event_id() {
        let w = World::new("events");
        let since = |r: &Request| match handle(r, &w.view()) {
            Ok(Handled::Command(Command::Events { since, .. })) => Ok(since),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.status()),
        };
        let mut r = req("GET", "/v1/events", &[], "");
        assert_eq!(since(&r), Ok(None));
        r.last_event_id = Some("41".into());
        assert_eq!(since(&r), Ok(Some(41)));
        let mut q = req("GET", "/v1/events", &[("since", "7")], "");
        q.last_event_id = Some("41".into());
        assert_eq!(since(&q), Ok(Some(7)), "the query wins");
        r.last_event_id = Some("yesterday".into());
        assert_eq!(since(&r), Err(400));
    }

    #[test]
    fn changes_become_commands_after_their_checks() {
        let w = World::new("commands");
        let put = handle(
            &req("PUT", "/v1/services/db", &[], r#"{"cmd":"db"}"#),
            &w.view(),
        );
        assert!(matches!(put, Ok(Handled::Command(Command::Put { ref name, .. })) if name == "db"));
        let bad = handle(&req("PUT", "/v1/services/db", &[], "{"), &w.view()).unwrap_err();
        assert_eq!(bad.code(), "bad_json");
        let invalid = handle(
            &req("PUT", "/v1/services/db", &[], r#"{"args":[]}"#),
            &w.view(),
        );
        assert_eq!(invalid.unwrap_err().code(), "invalid_definition");
        let start = handle(
            &req("POST", "/v1/services/web/start", &[("wait", "false")], ""),
            &w.view(),
        );
        assert!(matches!(
            start,
            Ok(Handled::Command(Command::Start {
                wait: false,
                pull: false,
                ..
            }))
        ));
        // An unknown service is a 404 before its exec body is looked at.
        let exec = handle(&req("POST", "/v1/services/nope/exec", &[], "{"), &w.view());
        assert_eq!(exec.unwrap_err().status(), 404);
        let exec = handle(&req("POST", "/v1/exec", &[], r#"{"cmd":[]}"#), &w.view());
        assert_eq!(exec.unwrap_err().code(), "invalid_definition");
        let logs = handle(
            &req("GET", "/v1/services/web/logs", &[("tail", "3")], ""),
            &w.view(),
        );
        assert!(matches!(
            logs,
            Ok(Handled::Command(Command::Logs {
                tail: Some(3),
                follow: false,
                ..
            }))
        ));
    }

    #[test]
    fn progress_waits_only_when_asked() {
        let w = World::new("progress");
        let v = w.view();
        let kind = GoalKind::Start;
        match progress_answer(&v, "web", Progress::Pending, false, kind) {
            Answer::Now(r) => {
                assert_eq!(r.status, 202);
                assert_eq!(json(&r)["name"], "web");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            progress_answer(&v, "web", Progress::Pending, true, kind),
            Answer::Wait(Await::Goal { ref name, kind: GoalKind::Start }) if name == "web"
        ));
        match progress_answer(&v, "gone", Progress::Done, true, GoalKind::Delete) {
            Answer::Now(r) => assert_eq!(json(&r), json!({"name": "gone", "deleted": true})),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_wait_gets_the_answer_its_outcome_means() {
        let w = World::new("settled");
        let v = w.view();
        let failed = Outcome::Failed(Failure {
            cause: Cause::Start(StartError::Spawn("cmd 'web' not found on PATH".into())),
            last_output: None,
        });
        let r = settled_reply(&v, "web", GoalKind::Start, &failed).unwrap();
        assert_eq!(r.status, 409);
        assert_eq!(json(&r)["error"], "service_failed");
        assert_eq!(
            json(&r)["message"],
            "service 'web' failed: cmd 'web' not found on PATH"
        );
        let r = settled_reply(&v, "web", GoalKind::Stop, &failed).unwrap();
        assert_eq!(r.status, 200, "a stop is done once the service is down");
        let r = settled_reply(&v, "web", GoalKind::Start, &Outcome::Stopped).unwrap();
        assert_eq!(json(&r)["error"], "conflict");
        let r = settled_reply(&v, "web", GoalKind::Start, &Outcome::Deleted).unwrap();
        assert_eq!(r.status, 404);
        assert!(
            settled_reply(&v, "web", GoalKind::Delete, &Outcome::Stopped).is_none(),
            "a delete waits for the deletion"
        );
        let r = settled_reply(&v, "web", GoalKind::Delete, &Outcome::Deleted).unwrap();
        assert_eq!(json(&r)["deleted"], true);
    }

    #[test]
    fn an_exec_answer_carries_streams_and_the_signal() {
        let done = ExecDone {
            id: 1,
            stdout: b"out".to_vec(),
            stderr: vec![0xff],
            status: ExitStatus::Signal(9),
            timed_out: true,
            truncated: false,
        };
        let v = json(&exec_reply(&done));
        assert_eq!(v["stdout"], "out");
        assert_eq!(v["stderr"], "\u{fffd}");
        assert_eq!(v["exit_code"], 137);
        assert_eq!(v["signal"], 9);
        assert_eq!(v["timed_out"], true);
        let halt = halt_reply(HaltMode::Reboot);
        assert_eq!(halt.status, 202);
        assert!(!halt.keep_alive);
        assert_eq!(json(&halt)["action"], "reboot");
    }
}
