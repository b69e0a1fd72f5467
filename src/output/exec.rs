//! One-shot commands: `POST /v1/exec` in the sandbox and
//! `POST /v1/services/{name}/exec` in a service's context. The command's
//! pipes are read by the loop as they fill (no deadlock on big output), its
//! exit comes from the one reaper, a timeout kills its whole process group,
//! and a client that goes away takes its command with it.

use crate::core::definition::Definition;
use crate::core::supervisor::{ExitStatus, Pid};
use crate::io::{Io, Owner, TimerKey};
use crate::proc::spawn::{self, SpawnError, SpawnSpec};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid as NixPid;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a command could not be started.
#[derive(Debug)]
pub(crate) enum ExecError {
    /// The command cannot be run (unknown user, not found, not executable).
    Spawn(SpawnError),
    /// The init could not make the command's pipes.
    Pipes(io::Error),
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::Spawn(e) => e.fmt(f),
            ExecError::Pipes(e) => write!(f, "cannot create pipes: {e}"),
        }
    }
}

/// A finished command, for its client's answer.
#[derive(Debug)]
pub(crate) struct ExecDone {
    pub id: u64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
    pub timed_out: bool,
    pub truncated: bool,
}

/// Everything needed to run one command.
pub(crate) struct ExecPlan {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: Option<PathBuf>,
    user: Option<spawn::ResolvedUser>,
    cgroup_procs: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    /// A container exec: the file where the runtime writes the command's
    /// pid. The command is not in the runtime's process group, so a
    /// timeout kills it by this pid.
    kill_pid_file: Option<PathBuf>,
    /// Files to remove once the command is over.
    cleanup: Vec<PathBuf>,
}

fn resolve_user(user: Option<&str>) -> Result<Option<spawn::ResolvedUser>, ExecError> {
    match user.filter(|u| !u.is_empty()) {
        Some(u) => spawn::resolve_user(u).map(Some).map_err(ExecError::Spawn),
        None => Ok(None),
    }
}

impl ExecPlan {
    /// A command in the sandbox: the init's environment rules, as root
    /// unless `user` names someone.
    pub(crate) fn in_sandbox(
        cmd: Vec<String>,
        env: &BTreeMap<String, String>,
        working_dir: Option<String>,
        user: Option<&str>,
        stdin: Option<String>,
        timeout: Duration,
    ) -> Result<ExecPlan, ExecError> {
        let user = resolve_user(user)?;
        Ok(ExecPlan {
            env: spawn::service_env(user.as_ref(), env),
            argv: cmd,
            working_dir: working_dir.filter(|d| !d.is_empty()).map(PathBuf::from),
            user,
            cgroup_procs: None,
            stdin: stdin.map(String::into_bytes),
            timeout,
            kill_pid_file: None,
            cleanup: Vec::new(),
        })
    }

    /// A command as a plain service runs: its user, environment and
    /// working directory, in its cgroup (`cgroup_procs`) while it runs.
    pub(crate) fn in_service(
        def: &Definition,
        cmd: Vec<String>,
        cgroup_procs: Option<PathBuf>,
        stdin: Option<String>,
        timeout: Duration,
    ) -> Result<ExecPlan, ExecError> {
        let user = resolve_user(def.user.as_deref())?;
        Ok(ExecPlan {
            env: spawn::service_env(user.as_ref(), &def.env),
            argv: cmd,
            working_dir: def.working_dir.clone().map(PathBuf::from),
            user,
            cgroup_procs,
            stdin: stdin.map(String::into_bytes),
            timeout,
            kill_pid_file: None,
            cleanup: Vec::new(),
        })
    }

    /// The runtime's exec of a container service (`argv`), whose command
    /// names itself in `pid_file`; `cleanup` goes once it is over.
    pub(crate) fn in_container(
        argv: Vec<String>,
        pid_file: PathBuf,
        cleanup: Vec<PathBuf>,
        stdin: Option<String>,
        timeout: Duration,
    ) -> ExecPlan {
        ExecPlan {
            argv,
            env: spawn::service_env(None, &BTreeMap::new()),
            working_dir: None,
            user: None,
            cgroup_procs: None,
            stdin: stdin.map(String::into_bytes),
            timeout,
            kill_pid_file: Some(pid_file),
            cleanup,
        }
    }
}

struct Pipe {
    file: File,
    token: Token,
}

struct Job {
    pid: Pid,
    stdout: Option<Pipe>,
    stderr: Option<Pipe>,
    stdin: Option<(Pipe, Vec<u8>, usize)>,
    out: Vec<u8>,
    err: Vec<u8>,
    truncated: bool,
    timed_out: bool,
    kill_pid_file: Option<PathBuf>,
    cleanup: Vec<PathBuf>,
}

impl Job {
    /// SIGKILL to the command: its process group, or for a container exec
    /// the command inside (killing the runtime would leave it running).
    fn kill(&self) {
        if let Some(pid) = self
            .kill_pid_file
            .as_deref()
            .and_then(|f| command_pid(f, self.pid))
        {
            let _ = nix::sys::signal::kill(NixPid::from_raw(pid), Signal::SIGKILL);
            return;
        }
        let _ = killpg(NixPid::from_raw(self.pid), Signal::SIGKILL);
    }
}

/// The pid in a runtime's exec pid file, while `runtime` is its parent (so
/// a pid that was already recycled is never signalled).
fn command_pid(pid_file: &Path, runtime: Pid) -> Option<Pid> {
    let pid: Pid = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ppid = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse::<Pid>().ok())?;
    (pid > 0 && ppid == runtime).then_some(pid)
}

/// The commands running now, by id.
#[derive(Default)]
pub(crate) struct Execs {
    jobs: HashMap<u64, Job>,
    by_pid: HashMap<Pid, u64>,
    next_id: u64,
    /// Output bytes held by all running commands together.
    held: usize,
}

/// Output held for all running commands together: past it, more output is
/// read and dropped (`truncated`), so many commands writing much at once
/// cannot make the init grow without bound.
pub(crate) const MAX_HELD_OUTPUT: usize = 64 << 20;

/// Per-stream output cap (`IRIS_EXEC_OUTPUT_MAX`, default 16 MiB).
fn output_cap() -> usize {
    std::env::var("IRIS_EXEC_OUTPUT_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16 << 20)
}

fn nonblocking_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map(|_| ())
    .map_err(io::Error::from)
}

fn register(io: &mut Io, file: File, interest: Interest, owner: Owner) -> Option<Pipe> {
    if set_nonblocking(&file).is_err() {
        return None;
    }
    let token = io
        .register(&mut SourceFd(&file.as_raw_fd()), interest, owner)
        .ok()?;
    Some(Pipe { file, token })
}

fn unregister(io: &mut Io, pipe: Pipe) {
    io.deregister(&mut SourceFd(&pipe.file.as_raw_fd()), pipe.token);
}

/// The process has exited and waits to be reaped (WNOWAIT: the reaper
/// still gets its status).
fn has_exited(pid: Pid) -> bool {
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    matches!(waitid(Id::Pid(NixPid::from_raw(pid)), flags), Ok(s) if s != WaitStatus::StillAlive)
}

fn remove_files(files: &[PathBuf]) {
    for f in files {
        let _ = std::fs::remove_file(f);
    }
}

impl Execs {
    pub(crate) fn has(&self, id: u64) -> bool {
        self.jobs.contains_key(&id)
    }

    /// Starts a command; its answer comes from `on_exit` (as `ExecDone`
    /// with the id returned here).
    pub(crate) fn start(&mut self, io: &mut Io, plan: ExecPlan) -> Result<u64, ExecError> {
        let started = self.spawn(io, &plan);
        if started.is_err() {
            remove_files(&plan.cleanup);
        }
        let (id, job) = started?;
        let job = Job {
            kill_pid_file: plan.kill_pid_file,
            cleanup: plan.cleanup,
            ..job
        };
        self.by_pid.insert(job.pid, id);
        self.jobs.insert(id, job);
        io.schedule(
            crate::core::bounds::deadline(Instant::now(), plan.timeout),
            TimerKey::Exec(id),
        );
        Ok(id)
    }

    fn spawn(&mut self, io: &mut Io, plan: &ExecPlan) -> Result<(u64, Job), ExecError> {
        let Some((cmd, args)) = plan.argv.split_first() else {
            return Err(ExecError::Spawn(SpawnError::NotFound {
                cmd: String::new(),
            }));
        };
        let path_var = plan
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or(spawn::DEFAULT_PATH);
        let program = spawn::find_program(cmd, path_var).map_err(ExecError::Spawn)?;
        let (out_r, out_w) = nonblocking_pipe().map_err(ExecError::Pipes)?;
        let (err_r, err_w) = nonblocking_pipe().map_err(ExecError::Pipes)?;
        let (stdin_child, stdin_ours) = match &plan.stdin {
            Some(_) => {
                let (r, w) = nonblocking_pipe().map_err(ExecError::Pipes)?;
                (Some(r), Some(w))
            }
            None => (None, None),
        };
        let pid = spawn::spawn(SpawnSpec {
            program: &program,
            argv0: cmd,
            args,
            env: &plan.env,
            working_dir: plan.working_dir.as_deref(),
            user: plan.user.as_ref(),
            stdin: stdin_child,
            stdout: out_w,
            stderr: err_w,
            cgroup_procs: plan.cgroup_procs.as_deref(),
            new_session: true,
        })
        .map_err(ExecError::Spawn)?;
        let id = self.next_id;
        self.next_id += 1;
        let out = |err| Owner::ExecOut { id, err };
        let stdin = match (stdin_ours, &plan.stdin) {
            (Some(w), Some(data)) => {
                register(io, File::from(w), Interest::WRITABLE, Owner::ExecIn { id })
                    .map(|p| (p, data.clone(), 0))
            }
            _ => None,
        };
        let job = Job {
            pid,
            stdout: register(io, File::from(out_r), Interest::READABLE, out(false)),
            stderr: register(io, File::from(err_r), Interest::READABLE, out(true)),
            stdin,
            out: Vec::new(),
            err: Vec::new(),
            truncated: false,
            timed_out: false,
            kill_pid_file: None,
            cleanup: Vec::new(),
        };
        Ok((id, job))
    }

    /// A command's stdout or stderr is readable.
    pub(crate) fn on_output(&mut self, io: &mut Io, id: u64, is_err: bool) {
        let cap = output_cap();
        let mut budget = MAX_HELD_OUTPUT.saturating_sub(self.held);
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let (pipe, buf) = if is_err {
            (&mut job.stderr, &mut job.err)
        } else {
            (&mut job.stdout, &mut job.out)
        };
        let Some(p) = pipe else {
            return;
        };
        let mut chunk = [0u8; 64 * 1024];
        let mut eof = false;
        loop {
            match p.file.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    let room = cap.saturating_sub(buf.len()).min(budget);
                    // Past the cap the pipe is still drained, so the
                    // command never blocks on a full pipe.
                    if n > room {
                        job.truncated = true;
                    }
                    let kept = n.min(room);
                    budget -= kept;
                    self.held += kept;
                    buf.extend_from_slice(chunk.get(..kept).unwrap_or_default());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if eof {
            if let Some(p) = pipe.take() {
                unregister(io, p);
            }
        }
    }

    /// The command's stdin can take more bytes.
    pub(crate) fn on_input(&mut self, io: &mut Io, id: u64) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some((p, data, pos)) = &mut job.stdin else {
            return;
        };
        while *pos < data.len() {
            match p.file.write(data.get(*pos..).unwrap_or_default()) {
                Ok(n) => *pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break, // EPIPE: the command does not read
            }
        }
        // Closing our end is the command's EOF.
        if let Some((p, _, _)) = job.stdin.take() {
            unregister(io, p);
        }
    }

    /// A reaped child; Some when it was an exec's (whether or not its
    /// client still waits).
    pub(crate) fn on_exit(
        &mut self,
        io: &mut Io,
        pid: Pid,
        status: ExitStatus,
    ) -> Option<ExecDone> {
        let id = self.by_pid.remove(&pid)?;
        // Whatever the command wrote before it exited is in the pipes now.
        self.on_output(io, id, false);
        self.on_output(io, id, true);
        let mut job = self.jobs.remove(&id)?;
        self.held = self
            .held
            .saturating_sub(job.out.len().saturating_add(job.err.len()));
        for p in [job.stdout.take(), job.stderr.take()].into_iter().flatten() {
            unregister(io, p);
        }
        if let Some((p, _, _)) = job.stdin.take() {
            unregister(io, p);
        }
        remove_files(&job.cleanup);
        // Killed at its deadline means killed: a command that exited with
        // a code ended before the kill reached it. (A container exec's code
        // is the runtime's, which reports the kill as 137.)
        let own_exit = job.kill_pid_file.is_none() && matches!(status, ExitStatus::Code(_));
        Some(ExecDone {
            id,
            stdout: job.out,
            stderr: job.err,
            status,
            timed_out: job.timed_out && !own_exit,
            truncated: job.truncated,
        })
    }

    /// The exec's deadline passed: kill its whole process group. A command
    /// that already exited (its exit not reaped yet) finished in time.
    pub(crate) fn on_timeout(&mut self, id: u64) {
        if let Some(job) = self.jobs.get_mut(&id) {
            if has_exited(job.pid) {
                return;
            }
            job.timed_out = true;
            job.kill();
        }
    }

    /// The client went away: its command goes too.
    pub(crate) fn abandon(&mut self, id: u64) {
        if let Some(job) = self.jobs.get(&id) {
            job.kill();
        }
    }

    /// At exit: no command outlives the init.
    pub(crate) fn kill_all(&self) {
        for job in self.jobs.values() {
            let _ = killpg(NixPid::from_raw(job.pid), Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};

    fn start(execs: &mut Execs, io: &mut Io, argv: &[&str]) -> (u64, Pid) {
        let argv = argv.iter().map(|a| a.to_string()).collect();
        let plan =
            ExecPlan::in_sandbox(argv, &BTreeMap::new(), None, None, None, DEADLINE).unwrap();
        let id = execs.start(io, plan).unwrap();
        (id, execs.jobs[&id].pid)
    }

    const DEADLINE: Duration = Duration::from_secs(600);

    /// Reaps `pid` as the reaper would, after its exit.
    fn reap(pid: Pid) -> ExitStatus {
        match waitpid(NixPid::from_raw(pid), None).unwrap() {
            WaitStatus::Exited(_, c) => ExitStatus::Code(c),
            WaitStatus::Signaled(_, s, _) => ExitStatus::Signal(s as i32),
            other => panic!("{other:?}"),
        }
    }

    /// Found by the schema test: a command that exited before its deadline,
    /// reaped only after the deadline's timer (or between the deadline's
    /// look and its kill), answered `timed_out: true` with exit code 0. A
    /// command still running at its deadline is killed and timed out.
    #[test]
    fn only_a_command_still_running_at_its_deadline_timed_out() {
        let mut io = Io::new().unwrap();
        let mut execs = Execs::default();
        let (id, pid) = start(&mut execs, &mut io, &["true"]);
        // Its exit happened, and waits for the reaper.
        let stat = || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let limit = Instant::now() + Duration::from_secs(30);
        while !stat().contains(") Z ") {
            assert!(Instant::now() < limit, "`true` never exited");
            std::thread::sleep(Duration::from_millis(1));
        }
        execs.on_timeout(id);
        let done = execs.on_exit(&mut io, pid, reap(pid)).unwrap();
        assert_eq!((done.status, done.timed_out), (ExitStatus::Code(0), false));

        // It exited between the deadline's look and its kill: the kill
        // found a zombie, the exit is the command's own.
        let (id, pid) = start(&mut execs, &mut io, &["true"]);
        execs.jobs.get_mut(&id).unwrap().timed_out = true;
        let done = execs.on_exit(&mut io, pid, reap(pid)).unwrap();
        assert_eq!((done.status, done.timed_out), (ExitStatus::Code(0), false));

        let (id, pid) = start(&mut execs, &mut io, &["sleep", "600"]);
        execs.on_timeout(id);
        let done = execs.on_exit(&mut io, pid, reap(pid)).unwrap();
        assert_eq!((done.status, done.timed_out), (ExitStatus::Signal(9), true));
    }
}
