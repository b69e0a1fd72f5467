//! Turning a service definition into a process: user, environment,
//! program lookup, log file, cgroup. The event loop calls this for the
//! supervisor's `Spawn` action.

use crate::event_loop::Init;
use crate::spawn::{self, SpawnSpec};
use crate::supervisor::Pid;
use mio::Token;
use std::path::Path;

pub fn spawn_service(init: &mut Init, name: &str) -> Result<Pid, String> {
    let def = init
        .sup
        .get(name)
        .map(|s| s.def.clone())
        .ok_or_else(|| format!("service '{name}' is not defined"))?;
    if def.container {
        return Err("container services are not supported by this build yet".into());
    }
    let user = match &def.user {
        Some(u) => Some(spawn::resolve_user(u).map_err(|e| e.to_string())?),
        None => None,
    };
    let env = spawn::service_env(user.as_ref(), &def.env);
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let program = spawn::find_program(&def.cmd, path_var).map_err(|e| e.to_string())?;
    let (stdout, stderr) = crate::logs::writer_for(init, name)
        .map_err(|e| format!("cannot open the log of '{name}': {e}"))?;
    let cgroup_procs = match &init.cgroups {
        Some(cg) => match cg.prepare(name) {
            Ok(p) => Some(p),
            Err(e) => {
                crate::warn!("unable to create the cgroup of '{name}': {e}");
                None
            }
        },
        None => None,
    };
    let working_dir = def.working_dir.as_deref().map(Path::new);
    let pid = spawn::spawn(SpawnSpec {
        program: &program,
        argv0: &def.cmd,
        args: &def.args,
        env: &env,
        working_dir,
        user: user.as_ref(),
        stdin: None,
        stdout,
        stderr,
        cgroup_procs: cgroup_procs.as_deref(),
        new_session: true,
    })
    .map_err(|e| e.to_string())?;
    crate::info!("started '{name}' (pid {pid})");
    Ok(pid)
}

/// Hooks for container services and log streams (later issues).
pub fn on_terminate(_init: &mut Init, _name: &str) {}
pub fn on_kill(_init: &mut Init, _name: &str) {}
pub fn on_removed(init: &mut Init, name: &str) {
    crate::logs::on_removed(init, name);
}
pub fn on_conn_closed(_init: &mut Init, _token: Token) {}

/// The runtime's exec command line for a container service.
pub fn container_exec_argv(
    init: &mut Init,
    name: &str,
    _cmd: &[String],
) -> Result<Vec<String>, crate::api::error::ApiError> {
    let _ = init;
    Err(crate::api::error::ApiError::Conflict(format!(
        "service '{name}' runs in a container, which this build cannot exec into yet"
    )))
}

/// Fields of the service object that only the launcher knows.
pub fn extra_fields(
    _init: &Init,
    _name: &str,
    _extra: &mut serde_json::Map<String, serde_json::Value>,
) {
}

/// Before `POST /v1/restore` applies wanted states (after a memory
/// snapshot: timers re-armed, dead processes noticed).
pub fn on_restore(init: &mut Init, _now: std::time::Instant) {
    init.reap();
}
