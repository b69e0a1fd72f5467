//! Starting a plain service's process: user, environment, program lookup,
//! log pipe, cgroup, then a clone that does not wait for the exec
//! (`spawn::spawn_async`), or for a lone start a clone into its cgroup that
//! does (`spawn::spawn`). The launcher owns started children until their
//! error pipe says they exec'd (EOF) or failed (a record), or they died,
//! and answers the supervisor's `Spawn` with an `Input::Spawned`.

use crate::core::definition::Definition;
use crate::core::supervisor::{Input, Phase, Pid, StartError, Supervisor};
use crate::io::{Io, Owner};
use crate::output::logs::Logs;
use crate::proc::cgroup::Cgroups;
use crate::proc::spawn::{self, PendingSpawn, SpawnSpec};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid as NixPid;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Within a burst of spawns, children that exec'd are taken in this often.
pub(crate) const COLLECT_INTERVAL: Duration = Duration::from_millis(3);

/// A service's child between clone and exec.
#[derive(Debug)]
struct PendingStart {
    name: String,
    gen: u64,
    token: Token,
    child: PendingSpawn,
    /// Its start failed, or its service was stopped (or restarted)
    /// meanwhile and it was killed: its exit is dropped silently.
    discard: bool,
}

/// What the reaper's exit of a pending child means.
#[derive(Debug, PartialEq)]
pub(crate) enum PendingExit {
    /// Not a pending child.
    Unknown,
    /// A failed or cancelled start: the exit is no service's and no orphan's.
    Dropped,
    /// The supervisor is answered with `spawned` first; then, when `ran`,
    /// the exit is the service's.
    Answered { spawned: Input, ran: bool },
    /// The kernel killed the child as it was born (see
    /// `PendingSpawn::killed_at_birth`): start the service again, the same
    /// start, which now joins its cgroup after the clone.
    Retry { name: String, gen: u64 },
}

#[derive(Default)]
pub(crate) struct Launcher {
    /// Children started but not yet seen to exec, by pid.
    pending: HashMap<Pid, PendingStart>,
    /// When a burst of spawns last looked for children that exec'd.
    collected: Option<Instant>,
    /// A start happened in this turn of the loop (see `spawn`).
    started_this_turn: bool,
}

/// Whether the supervisor still waits for this spawn.
fn is_current(sup: &Supervisor, name: &str, gen: u64) -> bool {
    sup.get(name)
        .is_some_and(|s| s.gen == gen && s.phase == Phase::Spawning)
}

/// The supervisor's answer for a child that exec'd or failed.
fn spawned(pid: Pid, name: &str, gen: u64, outcome: Result<(), spawn::SpawnError>) -> Input {
    let result = match outcome {
        Ok(()) => {
            crate::info!("started '{name}' (pid {pid})");
            Ok(pid)
        }
        Err(e) => {
            crate::warn!("unable to start '{name}': {e}");
            Err(StartError::Spawn(e.to_string()))
        }
    };
    Input::Spawned {
        name: name.to_string(),
        gen,
        result,
    }
}

impl Launcher {
    /// The loop begins a turn: its first start may be a lone one.
    pub(crate) fn new_turn(&mut self) {
        if self.pending.is_empty() {
            // A burst is over: its children's stacks need not stay mapped.
            crate::proc::clone::release_spare_stacks();
        }
        self.started_this_turn = false;
    }

    pub(crate) fn is_pending(&self, pid: Pid) -> bool {
        self.pending.contains_key(&pid)
    }

    /// Starts the service's process. `start` is its name and generation.
    /// A lone start (the only one the supervisor asked for at once, the
    /// first of this turn of the loop, and no other child waiting for its
    /// exec: a restart, say) is cloned straight into its cgroup and waited
    /// for until it has exec'd (`spawn::spawn`, well under a millisecond:
    /// no page tables copied, no cgroup migration, which costs an RCU grace
    /// period of milliseconds after a quiet while): Ok(Some(pid)). Any
    /// other is cloned and not waited for (a burst, from one request or
    /// from many, must not wait for each exec): Ok(None), and its answer
    /// comes later, from its pipe or its exit.
    pub(crate) fn spawn(
        &mut self,
        io: &mut Io,
        logs: &mut Logs,
        cgroups: Option<&Cgroups>,
        start: (&str, u64),
        def: &Definition,
        lone: bool,
    ) -> Result<Option<Pid>, StartError> {
        let (name, gen) = start;
        let spawn_error = |e: spawn::SpawnError| StartError::Spawn(e.to_string());
        let user = match &def.user {
            Some(u) => Some(spawn::resolve_user(u).map_err(spawn_error)?),
            None => None,
        };
        let env = spawn::service_env(user.as_ref(), &def.env);
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or(spawn::DEFAULT_PATH);
        let program = spawn::find_program(&def.cmd, path_var).map_err(spawn_error)?;
        let (stdout, stderr) = logs
            .writer_for(io, name)
            .map_err(|e| StartError::Prepare(format!("cannot open the log of '{name}': {e}")))?;
        let cgroup_procs = cgroups.and_then(|cg| match cg.prepare(name) {
            Ok(p) => Some(p),
            Err(e) => {
                crate::warn!("unable to create the cgroup of '{name}': {e}");
                None
            }
        });
        let spec = SpawnSpec {
            program: &program,
            argv0: &def.cmd,
            args: &def.args,
            env: &env,
            working_dir: def.working_dir.as_deref().map(Path::new),
            user: user.as_ref(),
            stdin: None,
            stdout,
            stderr,
            cgroup_procs: cgroup_procs.as_deref(),
            new_session: true,
        };
        let clone = lone && !self.started_this_turn && self.pending.is_empty();
        self.started_this_turn = true;
        if clone {
            let pid = spawn::spawn(spec).map_err(spawn_error)?;
            crate::info!("started '{name}' (pid {pid})");
            return Ok(Some(pid));
        }
        let child = spawn::spawn_async(spec).map_err(spawn_error)?;
        let pid = child.pid();
        let watched = io.register(
            &mut SourceFd(&child.fd()),
            Interest::READABLE,
            Owner::Spawn { pid },
        );
        let token = match watched {
            Ok(t) => t,
            Err(e) => {
                // Without the poll, wait for the exec here as `spawn::spawn` would.
                crate::warn!("cannot watch the start of '{name}' ({e}); waiting for its exec");
                child.wait().map_err(spawn_error)?;
                crate::info!("started '{name}' (pid {pid})");
                return Ok(Some(pid));
            }
        };
        let pending = PendingStart {
            name: name.to_string(),
            gen,
            token,
            child,
            discard: false,
        };
        self.pending.insert(pid, pending);
        Ok(None)
    }

    /// A pending child's error pipe is readable: it exec'd or failed.
    pub(crate) fn on_pipe(&mut self, io: &mut Io, sup: &Supervisor, pid: Pid) -> Option<Input> {
        self.cancel_stale(io, sup);
        self.resolve(io, sup, pid)
    }

    /// The burst hook: during a run of spawns, every so often, answers each
    /// pending child that has exec'd or failed by now, without waiting for
    /// its pipe's event (which would come only after the whole batch).
    pub(crate) fn collect_exec_d(&mut self, io: &mut Io, sup: &Supervisor) -> Vec<Input> {
        if self.pending.is_empty()
            || self
                .collected
                .is_some_and(|t| t.elapsed() < COLLECT_INTERVAL)
        {
            return Vec::new();
        }
        self.collected = Some(Instant::now());
        let pids: Vec<Pid> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.discard)
            .map(|(pid, _)| *pid)
            .collect();
        pids.into_iter()
            .filter_map(|pid| self.resolve(io, sup, pid))
            .collect()
    }

    /// Reads a pending child's pipe: the supervisor's answer when it had
    /// something to say.
    fn resolve(&mut self, io: &mut Io, sup: &Supervisor, pid: Pid) -> Option<Input> {
        let pending = self.pending.get(&pid)?;
        if pending.discard || !is_current(sup, &pending.name, pending.gen) {
            return None;
        }
        let outcome = pending.child.outcome()?;
        if outcome.is_ok() && pending.child.killed_at_birth() {
            // Its EOF is its death, not an exec: its exit brings the retry.
            return None;
        }
        let (name, gen) = (pending.name.clone(), pending.gen);
        if outcome.is_ok() {
            // Its pid is the service's now: the reaper hands its exit to the
            // supervisor.
            self.take(io, pid);
        } else {
            // It exits 127 at once; that exit is no service's and no orphan's.
            self.discard(io, pid);
        }
        Some(spawned(pid, &name, gen, outcome))
    }

    /// The reaper found this child dead.
    pub(crate) fn on_exit(&mut self, io: &mut Io, sup: &Supervisor, pid: Pid) -> PendingExit {
        let Some(pending) = self.take(io, pid) else {
            return PendingExit::Unknown;
        };
        pending.child.reaped();
        if pending.discard || !is_current(sup, &pending.name, pending.gen) {
            return PendingExit::Dropped;
        }
        if pending.child.killed_at_birth() {
            crate::warn!(
                "the kernel killed the new process of '{}' as it was born (its cgroup was \
                 once killed); starting it again",
                pending.name
            );
            return PendingExit::Retry {
                name: pending.name,
                gen: pending.gen,
            };
        }
        // Every write end is gone with the child: the pipe holds its last word.
        let outcome = pending.child.outcome().unwrap_or(Ok(()));
        let ran = outcome.is_ok();
        PendingExit::Answered {
            spawned: spawned(pid, &pending.name, pending.gen, outcome),
            ran,
        }
    }

    /// After the supervisor acted: kills the pending children of services that
    /// were stopped, deleted or restarted meanwhile, at once rather than after
    /// their exec.
    pub(crate) fn cancel_stale(&mut self, io: &mut Io, sup: &Supervisor) {
        if self.pending.is_empty() {
            return;
        }
        let stale: Vec<Pid> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.discard && !is_current(sup, &p.name, p.gen))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in stale {
            self.discard(io, pid);
            // Still unreaped, so the pid is still this child. Before its setsid
            // it has no group of its own; after its exec it may have children.
            let _ = killpg(NixPid::from_raw(pid), Signal::SIGKILL);
            let _ = kill(NixPid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// Stops watching a pending child's pipe, keeping it in the map so the
    /// reaper drops its exit silently.
    fn discard(&mut self, io: &mut Io, pid: Pid) {
        if let Some(p) = self.pending.get_mut(&pid) {
            if !p.discard {
                p.discard = true;
                io.deregister(&mut SourceFd(&p.child.fd()), p.token);
            }
        }
    }

    /// Removes a pending child, with its pipe from the poll.
    fn take(&mut self, io: &mut Io, pid: Pid) -> Option<PendingStart> {
        let pending = self.pending.remove(&pid)?;
        if !pending.discard {
            io.deregister(&mut SourceFd(&pending.child.fd()), pending.token);
        }
        Some(pending)
    }
}
