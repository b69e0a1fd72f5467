//! One-shot commands: `POST /v1/exec` in the sandbox and
//! `POST /v1/services/{name}/exec` in a service's context. The command's
//! pipes are read by the loop as they fill (no deadlock on big output), its
//! exit comes from the one reaper, a timeout kills its whole process group,
//! and a client that goes away takes its command with it.

use crate::api::error::ApiError;
use crate::api::http::{Request, Response};
use crate::api::Reply;
use crate::core::supervisor::{ExitStatus, Pid};
use crate::proc::spawn::{self, SpawnError, SpawnSpec};
use crate::reactor::{Init, PipeOwner, TimerKey};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid as NixPid;
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Used when a request names no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SandboxExecBody {
    cmd: Vec<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    stdin: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceExecBody {
    cmd: Vec<String>,
    #[serde(default)]
    timeout_secs: Option<f64>,
    #[serde(default)]
    stdin: Option<String>,
}

/// Everything needed to run one command.
pub struct ExecPlan {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    pub user: Option<spawn::ResolvedUser>,
    pub cgroup_procs: Option<PathBuf>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    /// A container exec: the file where the runtime writes the command's
    /// pid. The command is not in the runtime's process group, so a
    /// timeout kills it by this pid.
    pub kill_pid_file: Option<PathBuf>,
    /// Files to remove once the command is over.
    pub cleanup: Vec<PathBuf>,
}

struct Pipe {
    file: File,
    token: Token,
}

struct Job {
    client: Option<(Token, bool)>,
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

#[derive(Default)]
pub struct Execs {
    jobs: HashMap<u64, Job>,
    by_pid: HashMap<Pid, u64>,
    next_id: u64,
}

impl Execs {
    pub fn running(&self) -> usize {
        self.jobs.len()
    }

    pub fn has(&self, id: u64) -> bool {
        self.jobs.contains_key(&id)
    }
}

/// Per-stream output cap (`IRIS_EXEC_OUTPUT_MAX`, default 16 MiB).
fn output_cap() -> usize {
    std::env::var("IRIS_EXEC_OUTPUT_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16 << 20)
}

fn body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    serde_json::from_slice(&req.body).map_err(|e| {
        if serde_json::from_slice::<serde_json::Value>(&req.body).is_err() {
            ApiError::BadJson(format!("invalid JSON body: {e}"))
        } else {
            ApiError::InvalidDefinition(format!("invalid exec request: {e}"))
        }
    })
}

fn check_cmd(cmd: &[String]) -> Result<(), ApiError> {
    match cmd.first() {
        None => Err(ApiError::InvalidDefinition(
            "`cmd` must name a command".into(),
        )),
        Some(c) if c.is_empty() => Err(ApiError::InvalidDefinition(
            "`cmd` must name a command".into(),
        )),
        Some(_) if cmd.iter().any(|a| a.contains('\0')) => Err(ApiError::InvalidDefinition(
            "`cmd` must not contain NUL bytes".into(),
        )),
        Some(_) => Ok(()),
    }
}

fn spawn_error(e: SpawnError) -> ApiError {
    ApiError::InvalidDefinition(e.to_string())
}

pub(crate) fn sandbox_exec(
    init: &mut Init,
    token: Token,
    req: &Request,
) -> Result<Reply, ApiError> {
    let b: SandboxExecBody = body(req)?;
    check_cmd(&b.cmd)?;
    let user = match b.user.as_deref().filter(|u| !u.is_empty()) {
        Some(u) => Some(spawn::resolve_user(u).map_err(spawn_error)?),
        None => None,
    };
    let plan = ExecPlan {
        env: spawn::service_env(user.as_ref(), &b.env),
        argv: b.cmd,
        working_dir: b.working_dir.filter(|d| !d.is_empty()).map(PathBuf::from),
        user,
        cgroup_procs: None,
        stdin: b.stdin.map(String::into_bytes),
        timeout: b
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_TIMEOUT),
        kill_pid_file: None,
        cleanup: Vec::new(),
    };
    start(init, token, req.keep_alive, plan)
}

pub(crate) fn service_exec(
    init: &mut Init,
    token: Token,
    name: &str,
    req: &Request,
) -> Result<Reply, ApiError> {
    let def = init
        .sup
        .get(name)
        .map(|s| s.def.clone())
        .ok_or_else(|| ApiError::NotFound(name.to_string()))?;
    let b: ServiceExecBody = body(req)?;
    check_cmd(&b.cmd)?;
    let timeout = match b.timeout_secs {
        Some(s) if s.is_finite() && s > 0.0 => {
            Duration::try_from_secs_f64(s).unwrap_or(DEFAULT_TIMEOUT)
        }
        Some(_) => {
            return Err(ApiError::InvalidDefinition(
                "`timeout_secs` must be > 0".into(),
            ))
        }
        None => DEFAULT_TIMEOUT,
    };
    let stdin = b.stdin.map(String::into_bytes);
    if def.container {
        let ctr = crate::proc::launcher::container_exec_argv(init, name, &b.cmd)?;
        let cleanup = ctr.cleanup.clone();
        let plan = ExecPlan {
            argv: ctr.argv,
            env: spawn::service_env(None, &BTreeMap::new()),
            working_dir: None,
            user: None,
            cgroup_procs: None,
            stdin,
            timeout,
            kill_pid_file: Some(ctr.pid_file),
            cleanup: ctr.cleanup,
        };
        let started = start(init, token, req.keep_alive, plan);
        if started.is_err() {
            remove_files(&cleanup);
        }
        return started;
    }
    let user = match &def.user {
        Some(u) => Some(spawn::resolve_user(u).map_err(spawn_error)?),
        None => None,
    };
    let cgroup_procs = match (
        &init.cgroups,
        init.sup.get(name).map(|s| s.phase.is_active()),
    ) {
        (Some(cg), Some(true)) => cg.prepare(name).ok(),
        _ => None,
    };
    let plan = ExecPlan {
        env: spawn::service_env(user.as_ref(), &def.env),
        argv: b.cmd,
        working_dir: def.working_dir.map(PathBuf::from),
        user,
        cgroup_procs,
        stdin,
        timeout,
        kill_pid_file: None,
        cleanup: Vec::new(),
    };
    start(init, token, req.keep_alive, plan)
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

fn start(
    init: &mut Init,
    token: Token,
    keep_alive: bool,
    plan: ExecPlan,
) -> Result<Reply, ApiError> {
    let Some((cmd, args)) = plan.argv.split_first() else {
        return Err(ApiError::InvalidDefinition(
            "`cmd` must name a command".into(),
        ));
    };
    let path_var = plan
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(spawn::DEFAULT_PATH);
    let program = spawn::find_program(cmd, path_var).map_err(spawn_error)?;
    let io_err = |e: io::Error| ApiError::Internal(format!("cannot create pipes: {e}"));
    let (out_r, out_w) = nonblocking_pipe().map_err(io_err)?;
    let (err_r, err_w) = nonblocking_pipe().map_err(io_err)?;
    let stdin = match &plan.stdin {
        Some(_) => Some(nonblocking_pipe().map_err(io_err)?),
        None => None,
    };
    let (stdin_child, stdin_ours) = match stdin {
        Some((r, w)) => (Some(r), Some(w)),
        None => (None, None),
    };
    let pid = spawn::spawn(SpawnSpec {
        program: &program,
        argv0: cmd,
        args,
        env: &plan.env,
        working_dir: plan.working_dir.as_deref().map(Path::new),
        user: plan.user.as_ref(),
        stdin: stdin_child,
        stdout: out_w,
        stderr: err_w,
        cgroup_procs: plan.cgroup_procs.as_deref(),
        new_session: true,
    })
    .map_err(spawn_error)?;
    let id = init.execs.next_id;
    init.execs.next_id += 1;
    let mut job = Job {
        client: Some((token, keep_alive)),
        pid,
        stdout: None,
        stderr: None,
        stdin: None,
        out: Vec::new(),
        err: Vec::new(),
        truncated: false,
        timed_out: false,
        kill_pid_file: plan.kill_pid_file,
        cleanup: plan.cleanup,
    };
    job.stdout = register(
        init,
        File::from(out_r),
        Interest::READABLE,
        PipeOwner::ExecOut { id, err: false },
    );
    job.stderr = register(
        init,
        File::from(err_r),
        Interest::READABLE,
        PipeOwner::ExecOut { id, err: true },
    );
    if let (Some(w), Some(data)) = (stdin_ours, plan.stdin) {
        if let Some(p) = register(
            init,
            File::from(w),
            Interest::WRITABLE,
            PipeOwner::ExecIn { id },
        ) {
            job.stdin = Some((p, data, 0));
        }
    }
    init.execs.jobs.insert(id, job);
    init.execs.by_pid.insert(pid, id);
    init.schedule(Instant::now() + plan.timeout, TimerKey::Exec(id));
    Ok(Reply::Deferred)
}

fn register(init: &mut Init, file: File, interest: Interest, owner: PipeOwner) -> Option<Pipe> {
    if set_nonblocking(&file).is_err() {
        return None;
    }
    let token = init.new_token();
    init.registry()
        .register(&mut SourceFd(&file.as_raw_fd()), token, interest)
        .ok()?;
    init.pipes.insert(token, owner);
    Some(Pipe { file, token })
}

fn unregister(init: &mut Init, pipe: Pipe) {
    let _ = init
        .registry()
        .deregister(&mut SourceFd(&pipe.file.as_raw_fd()));
    init.pipes.remove(&pipe.token);
}

/// A command's stdout or stderr is readable.
pub fn on_output(init: &mut Init, id: u64, is_err: bool) {
    let cap = output_cap();
    let mut eof = false;
    if let Some(job) = init.execs.jobs.get_mut(&id) {
        let (pipe, buf) = if is_err {
            (&mut job.stderr, &mut job.err)
        } else {
            (&mut job.stdout, &mut job.out)
        };
        let Some(p) = pipe else {
            return;
        };
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match p.file.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    let room = cap.saturating_sub(buf.len());
                    // Past the cap the pipe is still drained, so the
                    // command never blocks on a full pipe.
                    if n > room {
                        job.truncated = true;
                    }
                    buf.extend_from_slice(chunk.get(..n.min(room)).unwrap_or_default());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }
    if eof {
        let pipe = init.execs.jobs.get_mut(&id).and_then(|j| {
            if is_err {
                j.stderr.take()
            } else {
                j.stdout.take()
            }
        });
        if let Some(p) = pipe {
            unregister(init, p);
        }
    }
}

/// The command's stdin can take more bytes.
pub fn on_input(init: &mut Init, id: u64) {
    let mut done = false;
    if let Some(job) = init.execs.jobs.get_mut(&id) {
        if let Some((p, data, pos)) = &mut job.stdin {
            while *pos < data.len() {
                match p.file.write(data.get(*pos..).unwrap_or_default()) {
                    Ok(n) => *pos += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(_) => break, // EPIPE: the command does not read
                }
            }
            done = true;
        }
    }
    if done {
        // Closing our end is the command's EOF.
        if let Some((p, _, _)) = init.execs.jobs.get_mut(&id).and_then(|j| j.stdin.take()) {
            unregister(init, p);
        }
    }
}

/// A reaped child that belongs to an exec; false when it is not one.
pub fn on_exit(init: &mut Init, pid: Pid, status: ExitStatus) -> bool {
    let Some(id) = init.execs.by_pid.remove(&pid) else {
        return false;
    };
    // Whatever the command wrote before it exited is in the pipes now.
    on_output(init, id, false);
    on_output(init, id, true);
    let Some(mut job) = init.execs.jobs.remove(&id) else {
        return true;
    };
    for p in [job.stdout.take(), job.stderr.take()].into_iter().flatten() {
        unregister(init, p);
    }
    if let Some((p, _, _)) = job.stdin.take() {
        unregister(init, p);
    }
    remove_files(&job.cleanup);
    if let Some((token, keep_alive)) = job.client {
        let signal = match status {
            ExitStatus::Signal(s) => Some(s),
            ExitStatus::Code(_) => None,
        };
        let v = json!({
            "stdout": String::from_utf8_lossy(&job.out),
            "stderr": String::from_utf8_lossy(&job.err),
            "exit_code": status.code(),
            "signal": signal,
            "timed_out": job.timed_out,
            "truncated": job.truncated,
        });
        let mut r = Response::json(200, serde_json::to_vec(&v).unwrap_or_default());
        r.keep_alive = keep_alive;
        crate::api::respond_later(init, token, r);
    }
    true
}

/// The exec's deadline passed: kill its whole process group.
pub fn on_timeout(init: &mut Init, id: u64) {
    if let Some(job) = init.execs.jobs.get_mut(&id) {
        job.timed_out = true;
        job.kill();
    }
}

fn remove_files(files: &[PathBuf]) {
    for f in files {
        let _ = std::fs::remove_file(f);
    }
}

/// At exit: no command outlives the init.
pub fn kill_all(init: &mut Init) {
    for job in init.execs.jobs.values() {
        let _ = killpg(NixPid::from_raw(job.pid), Signal::SIGKILL);
    }
}

/// The client went away: its command goes too.
pub fn on_conn_closed(init: &mut Init, token: Token) {
    for job in init.execs.jobs.values_mut() {
        if job.client.is_some_and(|(t, _)| t == token) {
            job.client = None;
            job.kill();
        }
    }
}
