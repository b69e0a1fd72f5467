//! Turning a service definition into a process: user, environment,
//! program lookup, log file, cgroup. The event loop calls this for the
//! supervisor's `Spawn` action.

use crate::event_loop::Init;
use crate::spawn::{self, SpawnSpec};
use crate::supervisor::Pid;
use mio::Token;
use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
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
    let (stdout, stderr) = open_log(init.log_dir(), name)
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

/// The service's stdout and stderr: its log file, appended.
fn open_log(dir: &Path, name: &str) -> std::io::Result<(OwnedFd, OwnedFd)> {
    std::fs::create_dir_all(dir)?;
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(dir.join(format!("{name}.log")))?;
    let out: OwnedFd = f.into();
    let err = out.try_clone()?;
    Ok((out, err))
}

/// Hooks for container services and log streams (later issues).
pub fn on_terminate(_init: &mut Init, _name: &str) {}
pub fn on_kill(_init: &mut Init, _name: &str) {}
pub fn on_removed(_init: &mut Init, _name: &str) {}
pub fn on_conn_closed(_init: &mut Init, _token: Token) {}

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
