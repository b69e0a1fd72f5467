//! Turning a service definition into a process: user, environment,
//! program lookup, log file, cgroup. The event loop calls this for the
//! supervisor's `Spawn` action; container services go to `container_svc`.
//!
//! A plain service's child is forked without waiting for its exec
//! (`spawn::spawn_async`): this module owns those pending children, and
//! answers the supervisor's `on_spawned` once the child's error pipe says
//! it has exec'd (EOF) or failed (a record), or once the child has died.

use crate::core::supervisor::{Phase, Pid};
use crate::proc::spawn::{self, PendingSpawn, SpawnSpec};
use crate::reactor::{Init, PipeOwner};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid as NixPid;
use std::path::Path;
use std::time::Instant;

/// A service's child between fork and exec.
#[derive(Debug)]
pub(crate) struct PendingStart {
    name: String,
    gen: u64,
    token: Token,
    child: PendingSpawn,
    /// Its start failed, or its service was stopped (or restarted)
    /// meanwhile and it was killed: its exit is dropped silently.
    discard: bool,
}

/// Starts the service's process. None for a container service: it is
/// prepared through the loop (pull, unpack, runtime), and `container_svc`
/// answers the supervisor's `on_spawned` itself.
pub fn spawn_service(init: &mut Init, name: &str, gen: u64) -> Option<Result<Pid, String>> {
    if init.sup.get(name).is_some_and(|s| s.def.container) {
        crate::containers::driver::start(init, name, gen);
        return None;
    }
    match spawn_plain(init, name, gen) {
        Ok(()) => None,
        Err(e) => Some(Err(e)),
    }
}

fn spawn_plain(init: &mut Init, name: &str, gen: u64) -> Result<(), String> {
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
        .unwrap_or(spawn::DEFAULT_PATH);
    let program = spawn::find_program(&def.cmd, path_var).map_err(|e| e.to_string())?;
    let (stdout, stderr) = crate::output::logs::writer_for(init, name)
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
    let child = spawn::spawn_async(SpawnSpec {
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
    let pid = child.pid();
    let token = init.new_token();
    let registered =
        init.registry()
            .register(&mut SourceFd(&child.fd()), token, Interest::READABLE);
    if let Err(e) = registered {
        // Without the poll, wait for the exec here as `spawn::spawn` would.
        crate::warn!("cannot watch the start of '{name}' ({e}); waiting for its exec");
        let result = child.wait();
        return match result {
            Ok(()) => {
                crate::info!("started '{name}' (pid {pid})");
                init.sup.on_spawned(name, gen, Ok(pid), Instant::now());
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        };
    }
    init.pipes.insert(token, PipeOwner::Spawn { pid });
    init.pending_starts.insert(
        pid,
        PendingStart {
            name: name.to_string(),
            gen,
            token,
            child,
            discard: false,
        },
    );
    Ok(())
}

/// Whether the supervisor still waits for this spawn.
fn is_current(init: &Init, name: &str, gen: u64) -> bool {
    init.sup
        .get(name)
        .is_some_and(|s| s.gen == gen && s.phase == Phase::Spawning)
}

/// A pending child's error pipe is readable: it exec'd or failed.
pub fn on_spawn_pipe(init: &mut Init, pid: Pid) {
    cancel_stale(init);
    if resolve(init, pid) {
        init.run_actions(Instant::now());
    }
}

/// Answers every pending child that has exec'd or failed by now, without
/// waiting for its pipe's event. The caller runs the resulting actions.
pub fn collect_exec_d(init: &mut Init) {
    let pids: Vec<Pid> = init
        .pending_starts
        .iter()
        .filter(|(_, p)| !p.discard)
        .map(|(pid, _)| *pid)
        .collect();
    for pid in pids {
        resolve(init, pid);
    }
}

/// Reads a pending child's pipe; true when it had something to say and
/// the supervisor was answered.
fn resolve(init: &mut Init, pid: Pid) -> bool {
    let Some(pending) = init.pending_starts.get(&pid) else {
        return false;
    };
    if pending.discard || !is_current(init, &pending.name, pending.gen) {
        return false;
    }
    let Some(outcome) = pending.child.outcome() else {
        return false;
    };
    let (name, gen) = (pending.name.clone(), pending.gen);
    if outcome.is_ok() {
        // Its pid is the service's now: the reaper hands its exit to the
        // supervisor.
        take(init, pid);
    } else {
        // It exits 127 at once; that exit is no service's and no orphan's.
        discard(init, pid);
    }
    answer(init, pid, &name, gen, outcome);
    true
}

/// The reaper found a pending child dead. True when it had exec'd the
/// service's program: its exit is then the service's (on_spawned has been
/// answered first); false when it is dropped (a failed start, answered
/// now or before, or a cancelled one).
pub fn on_pending_exit(init: &mut Init, pid: Pid) -> bool {
    let Some(pending) = take(init, pid) else {
        return false;
    };
    if pending.discard || !is_current(init, &pending.name, pending.gen) {
        return false;
    }
    // Every write end is gone with the child: the pipe holds its last word.
    let outcome = pending.child.outcome().unwrap_or(Ok(()));
    let exec_ok = outcome.is_ok();
    answer(init, pid, &pending.name, pending.gen, outcome);
    exec_ok
}

/// After the supervisor acted: kills the pending children of services that
/// were stopped, deleted or restarted meanwhile, at once rather than after
/// their exec.
pub fn cancel_stale(init: &mut Init) {
    let stale: Vec<Pid> = init
        .pending_starts
        .iter()
        .filter(|(_, p)| !p.discard && !is_current(init, &p.name, p.gen))
        .map(|(pid, _)| *pid)
        .collect();
    for pid in stale {
        discard(init, pid);
        // Still unreaped, so the pid is still this child. Before its setsid
        // it has no group of its own; after its exec it may have children.
        let _ = killpg(NixPid::from_raw(pid), Signal::SIGKILL);
        let _ = kill(NixPid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Stops watching a pending child's pipe, keeping it in the map so the
/// reaper drops its exit silently.
fn discard(init: &mut Init, pid: Pid) {
    if let Some(p) = init.pending_starts.get_mut(&pid) {
        if !p.discard {
            p.discard = true;
            let (token, fd) = (p.token, p.child.fd());
            let _ = init.registry().deregister(&mut SourceFd(&fd));
            init.pipes.remove(&token);
        }
    }
}

/// Removes a pending child, with its pipe from the poll.
fn take(init: &mut Init, pid: Pid) -> Option<PendingStart> {
    let pending = init.pending_starts.remove(&pid)?;
    if !pending.discard {
        let _ = init
            .registry()
            .deregister(&mut SourceFd(&pending.child.fd()));
        init.pipes.remove(&pending.token);
    }
    Some(pending)
}

/// Answers the supervisor, which still waits for this spawn.
fn answer(init: &mut Init, pid: Pid, name: &str, gen: u64, outcome: Result<(), spawn::SpawnError>) {
    let now = Instant::now();
    match outcome {
        Ok(()) => {
            crate::info!("started '{name}' (pid {pid})");
            init.sup.on_spawned(name, gen, Ok(pid), now);
        }
        Err(e) => {
            crate::warn!("unable to start '{name}': {e}");
            init.sup.on_spawned(name, gen, Err(e.to_string()), now);
        }
    }
}
/// Before the loop's SIGTERM to a stopping service's process group: true
/// when the service's launcher took care of it (a container's runtime).
pub fn on_terminate(init: &mut Init, name: &str) -> bool {
    crate::containers::driver::on_terminate(init, name)
}

/// Before the loop's SIGKILL of a service's tree: true when the launcher
/// took care of it (a container whose runtime still runs).
pub fn on_kill(init: &mut Init, name: &str) -> bool {
    crate::containers::driver::on_kill(init, name)
}

pub fn on_removed(init: &mut Init, name: &str) {
    crate::containers::driver::on_removed(init, name);
    crate::output::logs::on_removed(init, name);
}
pub fn on_conn_closed(_init: &mut Init, _token: Token) {}

/// The runtime's exec command line for a container service (409 when its
/// container does not run), with the files that go with it.
pub fn container_exec_argv(
    init: &mut Init,
    name: &str,
    cmd: &[String],
) -> Result<crate::containers::driver::ContainerExec, crate::api::error::ApiError> {
    crate::containers::driver::exec_command(init, name, cmd)
}

/// Fields of the service object that only the launcher knows.
pub fn extra_fields(
    init: &Init,
    name: &str,
    extra: &mut serde_json::Map<String, serde_json::Value>,
) {
    crate::containers::driver::extra_fields(init, name, extra);
}

/// Before `POST /v1/restore` applies wanted states (after a memory
/// snapshot: timers re-armed, dead processes noticed).
pub fn on_restore(init: &mut Init, _now: std::time::Instant) {
    init.reap();
}
