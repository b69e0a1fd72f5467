//! Turning a service definition into a process: user, environment,
//! program lookup, log file, cgroup. The event loop calls this for the
//! supervisor's `Spawn` action; container services go to `container_svc`.

use crate::event_loop::Init;
use crate::spawn::{self, SpawnSpec};
use crate::supervisor::Pid;
use mio::Token;
use std::path::Path;

/// Starts the service's process. None for a container service: it is
/// prepared through the loop (pull, unpack, runtime), and `container_svc`
/// answers the supervisor's `on_spawned` itself.
pub fn spawn_service(init: &mut Init, name: &str, gen: u64) -> Option<Result<Pid, String>> {
    if init.sup.get(name).is_some_and(|s| s.def.container) {
        crate::container_svc::start(init, name, gen);
        return None;
    }
    Some(spawn_plain(init, name))
}

fn spawn_plain(init: &mut Init, name: &str) -> Result<Pid, String> {
    let def = init
        .sup
        .get(name)
        .map(|s| s.def.clone())
        .ok_or_else(|| format!("service '{name}' is not defined"))?;
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

/// Before the loop's SIGTERM to a stopping service's process group: true
/// when the service's launcher took care of it (a container's runtime).
pub fn on_terminate(init: &mut Init, name: &str) -> bool {
    crate::container_svc::on_terminate(init, name)
}

/// Before the loop's SIGKILL of a service's tree: true when the launcher
/// took care of it (a container whose runtime still runs).
pub fn on_kill(init: &mut Init, name: &str) -> bool {
    crate::container_svc::on_kill(init, name)
}

pub fn on_removed(init: &mut Init, name: &str) {
    crate::container_svc::on_removed(init, name);
    crate::logs::on_removed(init, name);
}
pub fn on_conn_closed(_init: &mut Init, _token: Token) {}

/// The runtime's exec command line for a container service (409 when its
/// container does not run), with the files that go with it.
pub fn container_exec_argv(
    init: &mut Init,
    name: &str,
    cmd: &[String],
) -> Result<crate::container_svc::ContainerExec, crate::api::error::ApiError> {
    crate::container_svc::exec_command(init, name, cmd)
}

/// Fields of the service object that only the launcher knows.
pub fn extra_fields(
    init: &Init,
    name: &str,
    extra: &mut serde_json::Map<String, serde_json::Value>,
) {
    crate::container_svc::extra_fields(init, name, extra);
}

/// Before `POST /v1/restore` applies wanted states (after a memory
/// snapshot: timers re-armed, dead processes noticed).
pub fn on_restore(init: &mut Init, _now: std::time::Instant) {
    init.reap();
}
