//! Spawning: turns a resolved service definition into a running child process.
//!
//! This module owns everything between "this service should run now" and
//! "here is its pid": user lookup (`resolve_user`), program lookup on `PATH`
//! (`find_program`), the clean environment a service gets (`service_env`), and
//! the start itself, with the error classification of a child that failed.
//! What the child does before exec (session, cgroup, signals, fds, user
//! switch, working directory) is prepared and run by `child`; the clone3
//! that starts it in its cgroup is `clone`'s.
//!
//! Two ways to start: `spawn_async` (services) forks and returns at once
//! with a `PendingSpawn` whose error pipe says later whether the exec
//! happened, so a burst of starts is not serialized on each child; `spawn`
//! (one-off tools and execs) waits for the exec anyway, so it clones the
//! child vfork-style into its cgroup, which costs the caller least.
//!
//! It never waits for a child: PID 1's reaper (`waitpid(-1)`) is the only
//! waiter. The one exception is `spawn`'s reap of its own child whose setup
//! or exec failed, so no failed child is left behind; a failed
//! `spawn_async` child exits 127 and is left to the reaper.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;

use crate::proc::child::{
    child_exec, decode_record, path_cstring, ChildPlan, ChildSetup, ChildStart, ExecWords,
    SetupStep, UserIds, ERROR_RECORD_LEN, STAGE_EXEC, STAGE_WORKING_DIR,
};
use crate::proc::clone::{clone_shared, clone_vfork, CloneError, SharedStack};

/// `PATH` of a service whose definition sets none, of a container whose
/// image and service set none (Docker's), and of the init itself when the
/// kernel gave none (it passes only `HOME` and `TERM`).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A Unix user looked up in the passwd and group databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Primary group first, then the supplementary groups (`getgrouplist`).
    pub groups: Vec<u32>,
    pub home: String,
    pub shell: String,
}

/// Why a service could not be started.
#[derive(Debug)]
pub enum SpawnError {
    /// No passwd entry for this name or uid.
    UnknownUser { user: String },
    /// The passwd or group database could not be read.
    UserLookup { user: String, source: io::Error },
    /// `cmd` does not exist (on `PATH` when it has no `/`).
    NotFound { cmd: String },
    /// The program exists but cannot be executed (no x bit, a directory, EACCES).
    PermissionDenied { program: String },
    /// The working directory is missing, not a directory, or not enterable.
    BadWorkingDir {
        program: String,
        dir: PathBuf,
        source: io::Error,
    },
    /// A step in the child before exec failed (session, cgroup, user switch).
    Setup {
        program: String,
        step: SetupStep,
        source: io::Error,
    },
    /// Fork or exec failed for another reason (bad format, no memory, NUL byte).
    Exec { program: String, source: io::Error },
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::UnknownUser { user } => write!(f, "unknown user '{user}'"),
            SpawnError::UserLookup { user, source } => {
                write!(f, "cannot look up user '{user}': {source}")
            }
            SpawnError::NotFound { cmd } if cmd.contains('/') => {
                write!(f, "cmd '{cmd}' not found")
            }
            SpawnError::NotFound { cmd } => write!(f, "cmd '{cmd}' not found on PATH"),
            SpawnError::PermissionDenied { program } => {
                write!(f, "cmd '{program}' is not executable: permission denied")
            }
            SpawnError::BadWorkingDir {
                program,
                dir,
                source,
            } => write!(
                f,
                "cannot start '{program}': bad working_dir '{}': {source}",
                dir.display()
            ),
            SpawnError::Setup {
                program,
                step,
                source,
            } => write!(f, "cannot start '{program}': {step} failed: {source}"),
            SpawnError::Exec { program, source } => {
                write!(f, "cannot execute '{program}': {source}")
            }
        }
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpawnError::UserLookup { source, .. }
            | SpawnError::BadWorkingDir { source, .. }
            | SpawnError::Setup { source, .. }
            | SpawnError::Exec { source, .. } => Some(source),
            SpawnError::UnknownUser { .. }
            | SpawnError::NotFound { .. }
            | SpawnError::PermissionDenied { .. } => None,
        }
    }
}

/// Looks up `spec`, a user name or a numeric uid, with its primary group and
/// supplementary groups. A name wins over a number, as with chown(1).
///
/// From `/etc/passwd` and `/etc/group` themselves, not through NSS: the
/// static init cannot load NSS modules (glibc's static getpwnam crashes
/// trying, where nsswitch.conf names one for a user the files lack), and a
/// sandbox VM's users are in these files.
pub fn resolve_user(spec: &str) -> Result<ResolvedUser, SpawnError> {
    let read = |path: &str| match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(SpawnError::UserLookup {
            user: spec.to_string(),
            source,
        }),
    };
    user_from_files(spec, &read("/etc/passwd")?, &read("/etc/group")?)
}

/// [`resolve_user`] on the text of a passwd and a group file.
fn user_from_files(spec: &str, passwd: &str, group: &str) -> Result<ResolvedUser, SpawnError> {
    let unknown = || SpawnError::UnknownUser {
        user: spec.to_string(),
    };
    // name:password:uid:gid:gecos:home:shell; malformed lines are skipped.
    let users: Vec<(&str, u32, u32, &str, &str)> = entries(passwd)
        .filter_map(|f| {
            let uid = f.get(2)?.parse().ok()?;
            let gid = f.get(3)?.parse().ok()?;
            let field = |i: usize| f.get(i).copied().unwrap_or("");
            Some((field(0), uid, gid, field(5), field(6)))
        })
        .collect();
    let by_uid = || {
        let uid = spec.parse::<u32>().ok()?;
        users.iter().find(|u| u.1 == uid)
    };
    let (name, uid, gid, home, shell) = users
        .iter()
        .find(|u| !spec.is_empty() && u.0 == spec)
        .or_else(by_uid)
        .copied()
        .ok_or_else(unknown)?;
    // name:password:gid:member,member; the primary group first, no repeats.
    let mut groups = vec![gid];
    for f in entries(group) {
        let member = f
            .get(3)
            .is_some_and(|members| members.split(',').any(|m| m == name));
        if let Some(g) = f.get(2).and_then(|g| g.parse().ok()).filter(|_| member) {
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    Ok(ResolvedUser {
        name: name.to_string(),
        uid,
        gid,
        groups,
        home: home.to_string(),
        shell: shell.to_string(),
    })
}

/// The fields of each entry of a passwd or group file (no comments, no
/// blank lines, no NIS `+`/`-` lines).
fn entries(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with(['#', '+', '-']))
        .map(|l| l.split(':').collect())
}

/// What a candidate path is, for the `PATH` search.
enum Candidate {
    Executable,
    Missing,
    NotExecutable,
}

fn inspect(path: &Path) -> Candidate {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => {
            Candidate::Executable
        }
        Ok(_) => Candidate::NotExecutable,
        Err(err) if err.raw_os_error() == Some(libc::EACCES) => Candidate::NotExecutable,
        Err(_) => Candidate::Missing,
    }
}

/// Finds the program for `cmd`: a `cmd` containing `/` is used as is (relative
/// to the init's own working directory); otherwise each directory of
/// `path_var` is tried in order, like execvp(3). Empty `PATH` entries (which
/// would mean "the current directory") are skipped: an init has none that a
/// service author could mean.
pub fn find_program(cmd: &str, path_var: &str) -> Result<PathBuf, SpawnError> {
    let not_found = || SpawnError::NotFound {
        cmd: cmd.to_string(),
    };
    if cmd.is_empty() {
        return Err(not_found());
    }
    if cmd.contains('/') {
        let path = PathBuf::from(cmd);
        return match inspect(&path) {
            Candidate::Executable => Ok(path),
            Candidate::Missing => Err(not_found()),
            Candidate::NotExecutable => Err(SpawnError::PermissionDenied {
                program: cmd.to_string(),
            }),
        };
    }
    // Like execvp: a non-executable match is skipped, and reported only when
    // nothing executable is found later on the PATH.
    let mut denied: Option<PathBuf> = None;
    for dir in path_var.split(':').filter(|dir| !dir.is_empty()) {
        let candidate = Path::new(dir).join(cmd);
        match inspect(&candidate) {
            Candidate::Executable => return Ok(candidate),
            Candidate::NotExecutable => {
                denied.get_or_insert(candidate);
            }
            Candidate::Missing => {}
        }
    }
    match denied {
        Some(path) => Err(SpawnError::PermissionDenied {
            program: path.display().to_string(),
        }),
        None => Err(not_found()),
    }
}

/// The init's own `PATH`, [`DEFAULT_PATH`] when it has none.
pub fn init_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string())
}

/// [`find_program`] on the init's own `PATH` (for the tools it runs itself).
pub fn find_on_init_path(cmd: &str) -> Result<PathBuf, SpawnError> {
    find_program(cmd, &init_path())
}

/// The environment a service gets: a clean base (`PATH`, and `HOME`, `USER`,
/// `LOGNAME`, `SHELL` of its user, root's when it has none), with the
/// service's own variables on top (they may override any of these). Sorted by
/// name, so the same definition always gives the same environment.
pub fn service_env(
    user: Option<&ResolvedUser>,
    extra: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let non_empty = |value: &str, fallback: &str| {
        if value.is_empty() {
            fallback.to_string()
        } else {
            value.to_string()
        }
    };
    let (name, home, shell) = match user {
        Some(user) => (
            user.name.clone(),
            non_empty(&user.home, "/"),
            non_empty(&user.shell, "/bin/sh"),
        ),
        None => (
            "root".to_string(),
            "/root".to_string(),
            "/bin/sh".to_string(),
        ),
    };
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), DEFAULT_PATH.to_string());
    env.insert("HOME".to_string(), home);
    env.insert("USER".to_string(), name.clone());
    env.insert("LOGNAME".to_string(), name);
    env.insert("SHELL".to_string(), shell);
    for (key, value) in extra {
        env.insert(key.clone(), value.clone());
    }
    env.into_iter().collect()
}

/// Everything `spawn` needs to start one process.
pub struct SpawnSpec<'a> {
    /// The program to execute (from `find_program`).
    pub program: &'a Path,
    /// What the process sees as `argv[0]` (the cmd as written).
    pub argv0: &'a str,
    pub args: &'a [String],
    /// The complete environment (from `service_env`); nothing else is passed.
    pub env: &'a [(String, String)],
    pub working_dir: Option<&'a Path>,
    pub user: Option<&'a ResolvedUser>,
    /// `None` gives `/dev/null`.
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// A `cgroup.procs` file the child joins (writes "0" to) before exec.
    pub cgroup_procs: Option<&'a Path>,
    /// `setsid()`: its own session and process group (services: true).
    pub new_session: bool,
}

/// Starts the process and returns its pid once it has executed the program.
/// Every failure before or at exec comes back as an error, and the failed
/// child (which exits at once) is then reaped here: nothing is left behind.
/// For one-off tools and execs; services use [`spawn_async`].
///
/// Since the caller waits for the exec anyway, the child is cloned with
/// `CLONE_VM | CLONE_VFORK` straight into its cgroup (see `clone`): no copy
/// of the init's page tables, no copy-on-write faults after it, no cgroup
/// migration. Where clone3 is unavailable or refuses, a fork.
pub fn spawn(spec: SpawnSpec<'_>) -> Result<i32, SpawnError> {
    spawn_sync(spec).map(|(pid, _)| pid)
}

/// `spawn`, saying how the child was started.
fn spawn_sync(spec: SpawnSpec<'_>) -> Result<(i32, StartedBy), SpawnError> {
    let (child, started_by) = start(spec, true)?;
    match child.wait() {
        Ok(()) => Ok((child.pid(), started_by)),
        Err(err) => {
            // Our own failed child: this wait cannot take another's status.
            let pid = nix::unistd::Pid::from_raw(child.pid());
            while let Err(Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
            Err(err)
        }
    }
}

fn child_setup<'a>(spec: &SpawnSpec<'a>) -> ChildSetup<'a> {
    ChildSetup {
        new_session: spec.new_session,
        cgroup_procs: spec.cgroup_procs,
        user: spec.user.map(|u| UserIds {
            uid: u.uid,
            gid: u.gid,
            groups: &u.groups,
        }),
        working_dir: spec.working_dir,
    }
}

/// The checks that need no child: the working directory exists and is a
/// directory. Returns the program made absolute, because the chdir in the
/// child must not change which file a relative program names.
fn checked_program(spec: &SpawnSpec<'_>) -> Result<PathBuf, SpawnError> {
    if let Some(dir) = spec.working_dir {
        let problem = match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => None,
            Ok(_) => Some(io::Error::from_raw_os_error(libc::ENOTDIR)),
            Err(err) => Some(err),
        };
        if let Some(source) = problem {
            return Err(SpawnError::BadWorkingDir {
                program: spec.program.display().to_string(),
                dir: dir.to_path_buf(),
                source,
            });
        }
    }
    Ok(std::path::absolute(spec.program).unwrap_or_else(|_| spec.program.to_path_buf()))
}

/// How a child was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartedBy {
    /// `clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP)`: born in its
    /// cgroup, exec'd (or exited) before the call returned.
    CloneIntoCgroup,
    /// `clone3(CLONE_VM | CLONE_VFORK)`, no cgroup asked for.
    Clone,
    /// `fork()`: the child joins its cgroup itself (`cgroup.procs`).
    Fork,
    /// `clone3(CLONE_VM | CLONE_INTO_CGROUP)`, not waited for.
    SharedIntoCgroup,
    /// `clone3(CLONE_VM)`, not waited for; the child joins its cgroup itself.
    Shared,
}

/// What a `clone_shared` child runs on: kept until it has left the init's
/// memory.
struct Shared {
    start: Box<ChildStart>,
    _stack: SharedStack,
}

/// A child started by `spawn_async` that has not yet been seen to exec.
pub struct PendingSpawn {
    pid: i32,
    /// Read end of the error pipe (O_NONBLOCK): EOF once the child has
    /// exec'd (the write end is CLOEXEC) or died; a record if a step failed.
    pipe: OwnedFd,
    cmd: String,
    program: PathBuf,
    working_dir: Option<PathBuf>,
    /// A child cloned onto the init's memory: what it runs on.
    shared: Option<Shared>,
    /// The child has left the init's memory (EOF seen, or reaped).
    left: Cell<bool>,
}

impl std::fmt::Debug for PendingSpawn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSpawn")
            .field("pid", &self.pid)
            .field("cmd", &self.cmd)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for PendingSpawn {
    fn drop(&mut self) {
        // A child that may still run on this memory keeps it: a leak on a
        // path that should not exist, never a stack or a ChildStart freed
        // under a running child.
        if !self.left.get() {
            if let Some(shared) = self.shared.take() {
                std::mem::forget(shared);
            }
        }
    }
}

impl PendingSpawn {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The fd to watch for readability.
    pub fn fd(&self) -> RawFd {
        self.pipe.as_raw_fd()
    }

    /// What the child reported: None while it has neither exec'd nor
    /// failed; Some(Ok) once it has exec'd (or died without a word, which
    /// then shows as its exit); Some(Err) when a step or the exec failed,
    /// in which case the child exits with 127 and must not count as the
    /// service's exit.
    pub fn outcome(&self) -> Option<Result<(), SpawnError>> {
        let mut record = [0u8; ERROR_RECORD_LEN];
        let mut got = 0;
        while let Some(rest) = record.get_mut(got..) {
            if rest.is_empty() {
                // A whole record: EOF follows when the child has exited.
                self.see_eof();
                break;
            }
            match nix::unistd::read(self.pipe.as_raw_fd(), rest) {
                Ok(0) => {
                    self.left.set(true);
                    break;
                }
                Ok(n) => got += n,
                Err(Errno::EINTR) => {}
                // Nothing yet: the child is still on its way to exec.
                Err(_) if got == 0 => return None,
                Err(_) => break,
            }
        }
        if got == 0 {
            return Some(Ok(()));
        }
        let (stage, errno) = decode_record(&record);
        let source = io::Error::from_raw_os_error(errno);
        let names = Names {
            cmd: &self.cmd,
            program: &self.program,
            working_dir: self.working_dir.as_deref(),
        };
        // The exec itself reports like std's error pipe: no stage.
        let stage = (stage != STAGE_EXEC).then_some(stage);
        Some(Err(classify_failure(stage, source, &names)))
    }
}

impl PendingSpawn {
    /// Blocks until the child has exec'd or failed, as `spawn` does; after
    /// a failure, until it has exited (its pipe's EOF).
    pub fn wait(&self) -> Result<(), SpawnError> {
        loop {
            if let Some(outcome) = self.outcome() {
                while !self.left.get() {
                    self.poll_pipe();
                    self.see_eof();
                }
                return outcome;
            }
            self.poll_pipe();
        }
    }

    fn poll_pipe(&self) {
        let mut fds = [libc::pollfd {
            fd: self.pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, -1) };
    }

    /// Notes EOF on the pipe if it is there (the child has left).
    fn see_eof(&self) {
        let mut byte = [0u8; 1];
        if let Ok(0) = nix::unistd::read(self.pipe.as_raw_fd(), &mut byte) {
            self.left.set(true);
        }
    }

    /// The reaper took this child's exit: it has left the init's memory.
    pub fn reaped(&self) {
        self.left.set(true);
    }

    /// A child cloned onto the init's memory that died before its first
    /// instruction: the kernel killed it as it was born (see
    /// `CloneError::KilledAtBirth`). Later starts in that cgroup join it
    /// through `cgroup.procs`.
    pub fn killed_at_birth(&self) -> bool {
        let never_ran = self
            .shared
            .as_ref()
            .is_some_and(|s| s.start.in_cgroup && !s.start.ran.load(Ordering::Acquire));
        if never_ran {
            CGROUPS.with(|m| m.borrow_mut().kills_at_birth = true);
        }
        never_ran
    }
}

/// Starts the process and returns at once: errors found before the fork
/// (bad working directory, a NUL byte, no pipe, no fork) come back at once;
/// the rest (a setup step or the exec failed) from `PendingSpawn::outcome`,
/// once its fd is readable or the child has died.
///
/// Not `spawn`'s vfork-style clone: that suspends the caller until the
/// child has been scheduled and has exec'd, which in a burst waits behind
/// the services started just before (3-7 ms a start on a loaded 2-core
/// machine: 100 concurrent starts took 634 ms instead of 201). A clone onto
/// the init's memory that does not wait (`clone_shared`), which the init
/// keeps until the child has left it; born in its cgroup when that is new
/// to this run. Where that cannot be, a fork. Everything the child needs
/// (C strings, pointer arrays, the `ChildPlan`) is built before, so the
/// child only makes raw system calls.
pub fn spawn_async(spec: SpawnSpec<'_>) -> Result<PendingSpawn, SpawnError> {
    start(spec, false).map(|(child, _)| child)
}

/// Builds everything the child needs, then clones (`clone`: when asked and
/// possible) or forks it.
fn start(spec: SpawnSpec<'_>, clone: bool) -> Result<(PendingSpawn, StartedBy), SpawnError> {
    let program_name = spec.program.display().to_string();
    let exec_error = |source: io::Error| SpawnError::Exec {
        program: program_name.clone(),
        source,
    };
    let program = checked_program(&spec)?;
    let c_program = path_cstring(&program).map_err(exec_error)?;
    let words = ExecWords::new(spec.argv0, spec.args, spec.env).map_err(exec_error)?;
    let (error_read, error_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|errno| exec_error(errno.into()))?;
    let plan = ChildPlan::new(&child_setup(&spec), error_write.as_raw_fd()).map_err(exec_error)?;
    // Stdio sources at 3 or above, so that dup2 onto 0, 1, 2 in the child
    // cannot overwrite a source not yet duplicated.
    let stdin = match spec.stdin {
        Some(fd) => fd,
        None => std::fs::File::open("/dev/null").map_err(exec_error)?.into(),
    };
    let stdio = [
        above_stdio(stdin).map_err(exec_error)?,
        above_stdio(spec.stdout).map_err(exec_error)?,
        above_stdio(spec.stderr).map_err(exec_error)?,
    ];
    let start = Box::new(ChildStart {
        stdio: [
            stdio[0].as_raw_fd(),
            stdio[1].as_raw_fd(),
            stdio[2].as_raw_fd(),
        ],
        plan,
        program: c_program,
        words,
        in_cgroup: false,
        ran: AtomicBool::new(false),
    });
    let (pid, started_by, shared) = if clone {
        match clone_child(start, spec.cgroup_procs) {
            Ok((pid, started_by)) => (pid, started_by, None),
            Err(start) => (
                fork_child(&start).map_err(exec_error)?,
                StartedBy::Fork,
                None,
            ),
        }
    } else {
        match shared_child(start, spec.cgroup_procs) {
            Ok((pid, started_by, shared)) => (pid, started_by, Some(shared)),
            Err(start) => (
                fork_child(&start).map_err(exec_error)?,
                StartedBy::Fork,
                None,
            ),
        }
    };
    // The parent's copies of the child's stdio and of the write end must be
    // closed now: EOF on the error pipe needs every write end gone.
    drop(stdio);
    drop(error_write);
    let child = PendingSpawn {
        pid,
        pipe: error_read,
        cmd: spec.argv0.to_string(),
        program,
        working_dir: spec.working_dir.map(Path::to_path_buf),
        shared,
        left: Cell::new(false),
    };
    Ok((child, started_by))
}

/// What spawning has learnt about cgroups, for the kernel bug described at
/// `CloneError::KilledAtBirth`.
#[derive(Default)]
struct CgroupMemo {
    /// The kernel killed a child cloned into a cgroup at birth.
    kills_at_birth: bool,
    /// Cgroup directories a child was started in (one per service): the
    /// init `cgroup.kill`s a service's cgroup after every exit, so once the
    /// kernel is known to kill at birth, these get forked children.
    used: HashSet<PathBuf>,
}

thread_local! {
    static CGROUPS: RefCell<CgroupMemo> = RefCell::new(CgroupMemo::default());
}

/// The clone3 path: `Ok` with the child's pid once it has exec'd or exited,
/// or the unchanged `start` back when it cannot be used (a cgroup.procs
/// path whose directory does not open or whose children the kernel kills,
/// no clone3, or clone3 refused).
fn clone_child(
    mut start: Box<ChildStart>,
    cgroup_procs: Option<&Path>,
) -> Result<(i32, StartedBy), Box<ChildStart>> {
    let Some(procs) = cgroup_procs else {
        return match clone_vfork(&start, None) {
            Ok(pid) => Ok((pid, StartedBy::Clone)),
            Err(_) => Err(start),
        };
    };
    let cgroup = cgroup_dir(procs);
    let known_killed = CGROUPS.with(|m| {
        let m = m.borrow();
        m.kills_at_birth && m.used.contains(cgroup)
    });
    let dir = match open_dir(cgroup) {
        Ok(dir) if !known_killed => dir,
        _ => return Err(remember(cgroup, start)),
    };
    start.in_cgroup = true;
    let cloned = clone_vfork(&start, Some(dir.as_fd()));
    start.in_cgroup = false;
    match cloned {
        Ok(pid) => {
            remember(cgroup, ());
            Ok((pid, StartedBy::CloneIntoCgroup))
        }
        Err(CloneError::KilledAtBirth) => {
            CGROUPS.with(|m| m.borrow_mut().kills_at_birth = true);
            Err(remember(cgroup, start))
        }
        Err(CloneError::Refused(_)) => Err(remember(cgroup, start)),
    }
}

/// The `clone_shared` path: `Ok` with the child's pid at once and what it
/// runs on (to be kept until it has left the init's memory), or the
/// unchanged `start` back when it cannot be used. Born in its cgroup only
/// when the cgroup is new to this run (see `CgroupMemo`); otherwise the
/// child joins it through `cgroup.procs`.
fn shared_child(
    mut start: Box<ChildStart>,
    cgroup_procs: Option<&Path>,
) -> Result<(i32, StartedBy, Shared), Box<ChildStart>> {
    let Ok(stack) = SharedStack::new() else {
        return Err(start);
    };
    let cgroup = cgroup_procs.map(cgroup_dir);
    let fresh = cgroup.is_some_and(|dir| {
        CGROUPS.with(|m| {
            let m = m.borrow();
            !m.kills_at_birth && !m.used.contains(dir)
        })
    });
    let dir = match cgroup {
        Some(dir) if fresh => open_dir(dir).ok(),
        _ => None,
    };
    start.in_cgroup = dir.is_some();
    let cloned = clone_shared(&start, dir.as_ref().map(|d| d.as_fd()), &stack);
    if let Some(dir) = cgroup {
        remember(dir, ());
    }
    match cloned {
        Ok(pid) => {
            let started_by = if start.in_cgroup {
                StartedBy::SharedIntoCgroup
            } else {
                StartedBy::Shared
            };
            Ok((
                pid,
                started_by,
                Shared {
                    start,
                    _stack: stack,
                },
            ))
        }
        Err(_) => {
            start.in_cgroup = false;
            Err(start)
        }
    }
}

fn cgroup_dir(procs: &Path) -> &Path {
    procs.parent().unwrap_or(Path::new("/"))
}

/// Notes that `cgroup` gets a child; passes `value` through.
fn remember<T>(cgroup: &Path, value: T) -> T {
    CGROUPS.with(|m| {
        let mut m = m.borrow_mut();
        if !m.used.contains(cgroup) {
            m.used.insert(cgroup.to_path_buf());
        }
    });
    value
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: open just returned this descriptor; nothing else owns it.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// The fork path: returns at once; the child joins its cgroup itself.
fn fork_child(start: &ChildStart) -> io::Result<i32> {
    // SAFETY: the init is single-threaded (and in tests, the child touches
    // no lock another thread could hold): after fork the child only makes
    // async-signal-safe calls (dup2, the plan's syscalls, execve, write,
    // _exit) on data built before, and never returns from this block.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above; this is the child, which ends in execve or _exit.
        unsafe { child_exec(start) }
    }
    if pid == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// `fd` itself when it is 3 or above, else a CLOEXEC duplicate that is.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an fd we own returns a new fd or -1.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh fd that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dup) })
}

/// Names for error messages, gathered so `classify_failure` stays small.
struct Names<'a> {
    cmd: &'a str,
    program: &'a Path,
    working_dir: Option<&'a Path>,
}

fn classify_failure(stage: Option<u8>, source: io::Error, names: &Names<'_>) -> SpawnError {
    let program = names.program.display().to_string();
    match stage {
        Some(STAGE_WORKING_DIR) => SpawnError::BadWorkingDir {
            program,
            dir: names.working_dir.map(Path::to_path_buf).unwrap_or_default(),
            source,
        },
        Some(code) => match SetupStep::from_code(code) {
            Some(step) => SpawnError::Setup {
                program,
                step,
                source,
            },
            None => SpawnError::Exec { program, source },
        },
        // No stage byte: the fork failed in the parent, or the exec itself.
        None => match source.raw_os_error() {
            Some(libc::ENOENT) if !names.program.exists() => SpawnError::NotFound {
                cmd: names.cmd.to_string(),
            },
            // ENOENT with the program present: its #! interpreter or its ELF
            // loader is missing. Say that rather than "not found".
            Some(libc::ENOENT) => SpawnError::Exec {
                program,
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    "its interpreter (#! line) or dynamic loader does not exist",
                ),
            },
            Some(libc::EACCES) => SpawnError::PermissionDenied { program },
            _ => SpawnError::Exec { program, source },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::child::{CapUserData, CapUserHeader, LINUX_CAPABILITY_VERSION_3};
    use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::{Pid, Uid};
    use std::io::Read;
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// Set in the environment of a test binary re-run as a helper process.
    const HELPER_ENV: &str = "IRIS_SPAWN_TEST_HELPER";

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap()
    }

    fn dev_null() -> OwnedFd {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap()
            .into()
    }

    fn program(cmd: &str) -> PathBuf {
        find_program(cmd, DEFAULT_PATH).unwrap()
    }

    fn spec<'a>(
        program: &'a Path,
        argv0: &'a str,
        args: &'a [String],
        env: &'a [(String, String)],
        stdout: OwnedFd,
    ) -> SpawnSpec<'a> {
        SpawnSpec {
            program,
            argv0,
            args,
            env,
            working_dir: None,
            user: None,
            stdin: None,
            stdout,
            stderr: dev_null(),
            cgroup_procs: None,
            new_session: true,
        }
    }

    /// `pwd` as `user`, its output to /dev/null: a spawn that switches users.
    fn pwd_as<'a>(pwd: &'a Path, user: &'a ResolvedUser) -> SpawnSpec<'a> {
        let mut spec = spec(pwd, "pwd", &[], &[], dev_null());
        spec.user = Some(user);
        spec
    }

    /// Exit code of our own child (tests may wait; the init never does).
    fn reap(pid: i32) -> i32 {
        match waitpid(Pid::from_raw(pid), None).unwrap() {
            WaitStatus::Exited(_, code) => code,
            other => panic!("child {pid} did not exit normally: {other:?}"),
        }
    }

    /// `spawn`, asserting that the child was cloned (its path wherever
    /// clone3 works), not forked.
    fn spawn_cloned(spec: SpawnSpec<'_>) -> Result<i32, SpawnError> {
        let result = spawn_sync(spec);
        if let Ok((_, how)) = &result {
            assert_ne!(*how, StartedBy::Fork, "clone3 was not used");
        }
        result.map(|(pid, _)| pid)
    }

    /// Runs `build(stdout)` and returns what the child wrote and its exit code.
    fn run_capture(build: impl FnOnce(OwnedFd) -> Result<i32, SpawnError>) -> (String, i32) {
        let (read_end, write_end) = pipe();
        let pid = build(write_end).unwrap();
        let mut output = String::new();
        std::fs::File::from(read_end)
            .read_to_string(&mut output)
            .unwrap();
        (output, reap(pid))
    }

    /// `cat` with stdin on a pipe we hold: it lives until the pipe is dropped.
    fn spawn_waiting_cat(new_session: bool) -> (i32, OwnedFd) {
        let cat = program("cat");
        let (stdin_read, stdin_write) = pipe();
        let mut spec = spec(&cat, "cat", &[], &[], dev_null());
        spec.stdin = Some(stdin_read);
        spec.new_session = new_session;
        (spawn_cloned(spec).unwrap(), stdin_write)
    }

    /// Polls `check` until it returns Some or a generous deadline passes.
    fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {field} in {status}"))
            .trim()
    }

    fn cat_proc_status(user: Option<&ResolvedUser>) -> String {
        let cat = program("cat");
        let args = vec!["/proc/self/status".to_string()];
        let (output, code) = run_capture(|stdout| {
            let mut spec = spec(&cat, "cat", &args, &[], stdout);
            spec.user = user;
            spawn_cloned(spec)
        });
        assert_eq!(code, 0, "cat failed: {output}");
        output
    }

    /// Unless this process is the helper, runs `test` in one and returns
    /// true: the caller then returns, its body having run in a process of
    /// its own (no other test's children; a fork gone wrong or a changed
    /// credential cannot harm the test binary unnoticed).
    fn run_in_helper(test: &str) -> bool {
        if std::env::var_os(HELPER_ENV).is_some() {
            return false;
        }
        // This test binary again, with only `test` and the helper variable.
        let name = format!(
            "{}::{test}",
            module_path!().split_once("::").map_or("", |(_, rest)| rest)
        );
        let output = Command::new(std::env::current_exe().unwrap())
            .args([name.as_str(), "--exact", "--test-threads=1", "--nocapture"])
            .env(HELPER_ENV, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "helper {name} failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        true
    }

    #[test]
    fn child_gets_empty_signal_mask_and_default_dispositions() {
        // In a process of its own: dispositions are process-wide.
        if run_in_helper("child_gets_empty_signal_mask_and_default_dispositions") {
            return;
        }
        // A spawn before the change, as in the init (which reads them once).
        let _ = cat_proc_status(None);
        // sigaction is process-wide; the mask is per thread and fork copies
        // the calling thread's mask, so blocking here is what the child sees.
        // SAFETY: installs SIG_IGN, no handler code involved.
        unsafe { signal::signal(Signal::SIGUSR2, SigHandler::SigIgn) }.unwrap();
        crate::proc::child::dispositions_changed();
        let mut blocked = SigSet::empty();
        blocked.add(Signal::SIGUSR1);
        signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None).unwrap();
        let own = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        assert_ne!(status_field(&own, "SigBlk"), "0000000000000000");
        assert_ne!(status_field(&own, "SigIgn"), "0000000000000000");

        let status = cat_proc_status(None);
        signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&blocked), None).unwrap();
        assert_eq!(status_field(&status, "SigBlk"), "0000000000000000");
        assert_eq!(status_field(&status, "SigIgn"), "0000000000000000");
    }

    #[test]
    fn child_inherits_no_fd_beyond_stdio() {
        let file = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: dup of an open fd; the result is owned right below.
        let leaky = unsafe { libc::dup(file.as_raw_fd()) };
        assert!(leaky >= 3);
        // SAFETY: `leaky` is a fresh fd that nothing else owns.
        let leaky = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(leaky) };
        // SAFETY: F_GETFD only reads the fd's flags.
        let flags = unsafe { libc::fcntl(leaky.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(
            flags & libc::FD_CLOEXEC,
            0,
            "the test fd must be inheritable"
        );

        let (pid, stdin_write) = spawn_waiting_cat(true);
        let fd_dir = format!("/proc/{pid}/fd");
        let clean = wait_for("only 0, 1, 2 open in the child", || {
            let mut fds: Vec<String> = std::fs::read_dir(&fd_dir)
                .ok()?
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            fds.sort();
            (fds == ["0", "1", "2"]).then_some(fds)
        });
        assert_eq!(clean, ["0", "1", "2"]);
        drop(stdin_write);
        assert_eq!(reap(pid), 0);
        drop(leaky);
    }

    #[test]
    fn child_has_its_own_session_only_when_asked() {
        let (pid, stdin_write) = spawn_waiting_cat(true);
        let child = Pid::from_raw(pid);
        assert_eq!(nix::unistd::getsid(Some(child)).unwrap(), child);
        assert_eq!(nix::unistd::getpgid(Some(child)).unwrap(), child);
        drop(stdin_write);
        assert_eq!(reap(pid), 0);

        let (pid, stdin_write) = spawn_waiting_cat(false);
        let own_sid = nix::unistd::getsid(None).unwrap();
        assert_eq!(
            nix::unistd::getsid(Some(Pid::from_raw(pid))).unwrap(),
            own_sid
        );
        drop(stdin_write);
        assert_eq!(reap(pid), 0);
    }

    #[test]
    fn running_as_nobody_drops_ids_groups_and_capabilities() {
        assert!(Uid::effective().is_root(), "spawn tests must run as root");
        let nobody = resolve_user("nobody").unwrap();
        assert_ne!(nobody.uid, 0);
        let status = cat_proc_status(Some(&nobody));
        let uid = nobody.uid.to_string();
        let gid = nobody.gid.to_string();
        assert_eq!(
            status_field(&status, "Uid")
                .split_whitespace()
                .collect::<Vec<_>>(),
            [uid.as_str(); 4]
        );
        assert_eq!(
            status_field(&status, "Gid")
                .split_whitespace()
                .collect::<Vec<_>>(),
            [gid.as_str(); 4]
        );
        let mut groups: Vec<u32> = status_field(&status, "Groups")
            .split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect();
        let mut expected = nobody.groups.clone();
        groups.sort_unstable();
        expected.sort_unstable();
        assert_eq!(groups, expected);
        for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(status_field(&status, field), "0000000000000000", "{field}");
        }

        // Root by number keeps its capabilities and loses extra groups.
        let root = resolve_user("0").unwrap();
        assert_eq!(root.name, "root");
        let status = cat_proc_status(Some(&root));
        assert_eq!(
            status_field(&status, "Uid").split_whitespace().next(),
            Some("0")
        );
        assert_ne!(status_field(&status, "CapEff"), "0000000000000000");
    }

    #[test]
    fn env_is_exactly_the_clean_base_plus_extras() {
        let nobody = resolve_user("nobody").unwrap();
        let extra = BTreeMap::from([
            ("PATH".to_string(), "/opt/bin:/usr/bin".to_string()),
            ("REDIS_LOGLEVEL".to_string(), "warning".to_string()),
        ]);
        let env = service_env(Some(&nobody), &extra);
        let env_program = program("env");
        let (output, code) = run_capture(|stdout| {
            let mut spec = spec(&env_program, "env", &[], &env, stdout);
            spec.user = Some(&nobody);
            spawn_cloned(spec)
        });
        assert_eq!(code, 0);
        let mut seen: Vec<String> = output.lines().map(str::to_string).collect();
        seen.sort();
        let expected = [
            format!("HOME={}", nobody.home),
            "LOGNAME=nobody".to_string(),
            "PATH=/opt/bin:/usr/bin".to_string(),
            "REDIS_LOGLEVEL=warning".to_string(),
            format!("SHELL={}", nobody.shell),
            "USER=nobody".to_string(),
        ];
        assert_eq!(seen, expected);
    }

    #[test]
    fn service_env_defaults_to_root_and_is_sorted() {
        let env = service_env(None, &BTreeMap::from([("A".into(), "1".into())]));
        let expected: Vec<(String, String)> = [
            ("A", "1"),
            ("HOME", "/root"),
            ("LOGNAME", "root"),
            ("PATH", DEFAULT_PATH),
            ("SHELL", "/bin/sh"),
            ("USER", "root"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, expected);
    }

    #[test]
    fn argv0_and_args_reach_the_program() {
        let cat = program("cat");
        let args = vec!["/proc/self/cmdline".to_string()];
        let (output, code) =
            run_capture(|stdout| spawn_cloned(spec(&cat, "my-name", &args, &[], stdout)));
        assert_eq!(code, 0);
        assert_eq!(output, "my-name\0/proc/self/cmdline\0");
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("iris-spawn-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.canonicalize().unwrap()
    }

    #[test]
    fn working_dir_is_honoured() {
        let dir = temp_dir("cwd");
        let pwd = program("pwd");
        let (output, code) = run_capture(|stdout| {
            let mut spec = spec(&pwd, "pwd", &[], &[], stdout);
            spec.working_dir = Some(&dir);
            spawn_cloned(spec)
        });
        assert_eq!(code, 0);
        assert_eq!(output.trim_end(), dir.to_str().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_working_dir_is_reported_before_forking() {
        let pwd = program("pwd");
        let missing = Path::new("/nonexistent/iris-spawn-dir");
        let mut spec = spec(&pwd, "pwd", &[], &[], dev_null());
        spec.working_dir = Some(missing);
        let err = spawn(spec).unwrap_err();
        assert!(
            matches!(&err, SpawnError::BadWorkingDir { dir, .. } if dir == missing),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("/nonexistent/iris-spawn-dir"), "{message}");
        assert!(message.contains(pwd.to_str().unwrap()), "{message}");
    }

    /// A directory root can enter but nobody cannot: only the chdir in the
    /// child, after the user switch, can notice.
    #[test]
    fn unenterable_working_dir_is_reported_from_the_child() {
        if run_in_helper("unenterable_working_dir_is_reported_from_the_child") {
            return;
        }
        let dir = temp_dir("private");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let nobody = resolve_user("nobody").unwrap();
        let pwd = program("pwd");
        let mut spec = pwd_as(&pwd, &nobody);
        spec.working_dir = Some(&dir);
        let err = spawn(spec).unwrap_err();
        assert!(
            matches!(&err, SpawnError::BadWorkingDir { source, .. }
                if source.raw_os_error() == Some(libc::EACCES)),
            "{err:?}"
        );
        assert_eq!(
            waitpid(None, Some(WaitPidFlag::WNOHANG)),
            Err(Errno::ECHILD)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exec_failures_are_errors_and_leave_no_child() {
        if run_in_helper("exec_failures_are_errors_and_leave_no_child") {
            return;
        }
        let missing = Path::new("/nonexistent/redis-server");
        // Through the clone3 path: the child's exec fails, it exits 127.
        let err = spawn_cloned(spec(missing, "redis-server", &[], &[], dev_null())).unwrap_err();
        assert!(matches!(&err, SpawnError::NotFound { .. }), "{err:?}");
        assert_eq!(
            waitpid(None, Some(WaitPidFlag::WNOHANG)),
            Err(Errno::ECHILD)
        );
        let err = spawn(spec(missing, "redis-server", &[], &[], dev_null())).unwrap_err();
        assert!(
            matches!(&err, SpawnError::NotFound { cmd } if cmd == "redis-server"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "cmd 'redis-server' not found on PATH");
        assert_eq!(
            waitpid(None, Some(WaitPidFlag::WNOHANG)),
            Err(Errno::ECHILD)
        );

        let dir = temp_dir("noexec");
        let script = dir.join("not-executable");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let err = spawn(spec(&script, "x", &[], &[], dev_null())).unwrap_err();
        assert!(
            matches!(err, SpawnError::PermissionDenied { .. }),
            "{err:?}"
        );
        assert_eq!(
            waitpid(None, Some(WaitPidFlag::WNOHANG)),
            Err(Errno::ECHILD)
        );

        let interpreted = executable(&dir, "script", "#!/nonexistent/interpreter\n");
        let err = spawn(spec(&interpreted, "x", &[], &[], dev_null())).unwrap_err();
        assert!(matches!(err, SpawnError::Exec { .. }), "{err:?}");
        assert!(
            err.to_string()
                .ends_with(": its interpreter (#! line) or dynamic loader does not exist"),
            "{err}"
        );
        assert_eq!(
            waitpid(None, Some(WaitPidFlag::WNOHANG)),
            Err(Errno::ECHILD)
        );

        let mut bad = spec(&script, "x", &[], &[], dev_null());
        let no_cgroup = dir.join("cgroup.procs");
        bad.cgroup_procs = Some(&no_cgroup);
        let err = spawn(bad).unwrap_err();
        assert!(
            matches!(
                err,
                SpawnError::Setup {
                    step: SetupStep::Cgroup,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            waitpid(None, Some(WaitPidFlag::WNOHANG)),
            Err(Errno::ECHILD)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stdin_none_reads_eof_at_once() {
        let cat = program("cat");
        let (output, code) =
            run_capture(|stdout| spawn_cloned(spec(&cat, "cat", &[], &[], stdout)));
        assert_eq!((output.as_str(), code), ("", 0));
    }

    /// The cgroup2 mount point, from /proc/self/mountinfo.
    fn cgroup2_mount() -> PathBuf {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        mounts
            .lines()
            .find_map(|line| {
                let (left, right) = line.split_once(" - ")?;
                let point = left.split_whitespace().nth(4)?;
                right.starts_with("cgroup2 ").then(|| PathBuf::from(point))
            })
            .expect("these tests need a cgroup2 mount")
    }

    /// spawn_async's children are in their cgroup before they exec: the
    /// first of a cgroup new to this run is born there, the next ones (the
    /// cgroup may have been killed since) write to cgroup.procs themselves.
    #[test]
    fn child_joins_its_cgroup_before_exec() {
        let root = cgroup2_mount();
        let name = format!("iris-spawn-test-{}", std::process::id());
        let group = root.join(&name);
        std::fs::create_dir(&group).unwrap();
        let procs = group.join("cgroup.procs");
        let cat = program("cat");
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (stdin_read, stdin_write) = pipe();
            let mut spec = spec(&cat, "cat", &[], &[], dev_null());
            spec.stdin = Some(stdin_read);
            spec.cgroup_procs = Some(&procs);
            let (child, how) = start(spec, false).unwrap();
            child.wait().unwrap();
            let pid = child.pid();
            let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            let listed = std::fs::read_to_string(&procs).unwrap();
            drop(stdin_write);
            assert_eq!(reap(pid), 0);
            seen.push((how, pid, membership, listed));
        }
        wait_for("the test cgroup to be removable", || {
            std::fs::remove_dir(&group).ok()
        });
        let hows: Vec<StartedBy> = seen.iter().map(|s| s.0).collect();
        assert_eq!(hows, [StartedBy::SharedIntoCgroup, StartedBy::Shared]);
        for (how, pid, membership, listed) in &seen {
            assert!(
                membership.lines().any(|line| line == format!("0::/{name}")),
                "{how:?}: {membership}"
            );
            assert_eq!(listed.trim(), pid.to_string(), "{how:?}");
        }
    }

    /// An executable file `name` in `dir` holding `text`.
    fn executable(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A new test cgroup that was `cgroup.kill`ed once (empty): its name,
    /// directory and `cgroup.procs`.
    fn killed_cgroup(tag: &str) -> (String, PathBuf, PathBuf) {
        let name = format!("iris-spawn-{tag}-{}", std::process::id());
        let group = cgroup2_mount().join(&name);
        std::fs::create_dir(&group).unwrap();
        std::fs::write(group.join("cgroup.kill"), "1").unwrap();
        let procs = group.join("cgroup.procs");
        (name, group, procs)
    }

    /// `cat /proc/self/cgroup` into a pipe (its read end returned), to be
    /// started in the cgroup of `procs`.
    fn cat_own_cgroup(procs: &Path) -> (OwnedFd, SpawnSpec<'_>) {
        let cat: &'static Path = Box::leak(program("cat").into_boxed_path());
        let args: &'static [String] = Box::leak(vec!["/proc/self/cgroup".to_string()].into());
        let (read_end, write_end) = pipe();
        let mut spec = spec(cat, "cat", args, &[], write_end);
        spec.cgroup_procs = Some(procs);
        (read_end, spec)
    }

    /// Where the kernel kills a child cloned into a once-killed cgroup at
    /// birth, spawn_async's child says so (its EOF is its death, not an
    /// exec), and the next start joins the cgroup after the clone and runs.
    #[test]
    fn an_async_child_killed_at_birth_is_told_apart_and_the_next_runs() {
        let (name, group, procs) = killed_cgroup("async-killed");
        let mut runs = Vec::new();
        for _ in 0..2 {
            let (read_end, spec) = cat_own_cgroup(&procs);
            let (child, how) = start(spec, false).unwrap();
            child.wait().unwrap();
            let code = match waitpid(Pid::from_raw(child.pid()), None).unwrap() {
                WaitStatus::Exited(_, code) => code,
                WaitStatus::Signaled(_, signal, _) => 128 + signal as i32,
                other => panic!("unexpected {other:?}"),
            };
            child.reaped();
            let killed = child.killed_at_birth();
            let mut output = String::new();
            std::fs::File::from(read_end)
                .read_to_string(&mut output)
                .unwrap();
            runs.push((how, killed, code, output));
        }
        wait_for("the test cgroup to be removable", || {
            std::fs::remove_dir(&group).ok()
        });
        let line = format!("0::/{name}");
        let (first_how, first_killed, first_code, first_output) = &runs[0];
        assert_eq!(*first_how, StartedBy::SharedIntoCgroup);
        if *first_killed {
            assert_eq!(*first_code, 128 + libc::SIGKILL, "{first_output}");
        } else {
            assert_eq!(*first_code, 0);
            assert!(first_output.lines().any(|l| l == line), "{first_output}");
        }
        let (how, killed, code, output) = &runs[1];
        assert_eq!(*how, StartedBy::Shared);
        assert!(!killed);
        assert_eq!(*code, 0);
        assert!(output.lines().any(|l| l == line), "{output}");
    }

    /// The child is in its service's cgroup from its first instruction: it
    /// was cloned into it, so what the program itself reads is already the
    /// cgroup, and nothing wrote to `cgroup.procs`.
    #[test]
    fn child_is_born_in_its_cgroup() {
        let root = cgroup2_mount();
        let name = format!("iris-spawn-born-{}", std::process::id());
        let group = root.join(&name);
        std::fs::create_dir(&group).unwrap();
        let procs = group.join("cgroup.procs");
        let cat = program("cat");
        let args = vec!["/proc/self/cgroup".to_string()];
        let (read_end, write_end) = pipe();
        let mut spec = spec(&cat, "cat", &args, &[], write_end);
        spec.cgroup_procs = Some(&procs);
        let (pid, how) = spawn_sync(spec).unwrap();
        assert_eq!(how, StartedBy::CloneIntoCgroup);
        let code = reap(pid);
        let mut output = String::new();
        std::fs::File::from(read_end)
            .read_to_string(&mut output)
            .unwrap();
        wait_for("the test cgroup to be removable", || {
            std::fs::remove_dir(&group).ok()
        });
        assert_eq!(code, 0);
        let unified: Vec<&str> = output.lines().filter(|l| l.starts_with("0::")).collect();
        assert_eq!(unified, [format!("0::/{name}")], "{output}");
    }

    /// A cgroup that was `cgroup.kill`ed once still gets its children (the
    /// init kills every stopped service's cgroup, then restarts into it):
    /// where the kernel kills a child cloned into such a cgroup at birth,
    /// the spawn forks instead, and keeps forking for that cgroup.
    #[test]
    fn a_killed_cgroup_still_gets_its_children() {
        let (name, group, procs) = killed_cgroup("killed");
        let mut runs = Vec::new();
        for _ in 0..2 {
            let (read_end, spec) = cat_own_cgroup(&procs);
            let (pid, how) = spawn_sync(spec).unwrap();
            let code = reap(pid);
            let mut output = String::new();
            std::fs::File::from(read_end)
                .read_to_string(&mut output)
                .unwrap();
            runs.push((how, code, output));
        }
        wait_for("the test cgroup to be removable", || {
            std::fs::remove_dir(&group).ok()
        });
        let line = format!("0::/{name}");
        for (how, code, output) in &runs {
            assert_eq!(*code, 0, "{how:?}");
            assert!(output.lines().any(|l| l == line), "{how:?}: {output}");
        }
        // A kernel that forked the first time remembers it for the second.
        if runs[0].0 == StartedBy::Fork {
            assert_eq!(runs[1].0, StartedBy::Fork);
        }
    }

    /// The clone path blocks every signal around the clone; the caller's
    /// own mask must come back unchanged, or the init would stop hearing
    /// SIGCHLD and SIGTERM.
    #[test]
    fn spawning_restores_the_callers_signal_mask() {
        let mask = || {
            let own = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            status_field(&own, "SigBlk").to_string()
        };
        let before = mask();
        let (pid, how) = spawn_sync(spec(&program("true"), "true", &[], &[], dev_null())).unwrap();
        assert_eq!(how, StartedBy::Clone);
        assert_eq!(reap(pid), 0);
        assert_eq!(mask(), before);
    }

    /// Runs a spawn_async to its end: exec outcome and exit code.
    fn run_async(spec: SpawnSpec<'_>) -> (Result<(), SpawnError>, i32) {
        let child = spawn_async(spec).unwrap();
        let outcome = child.wait();
        (outcome, reap(child.pid()))
    }

    /// spawn_async forks: it returns before the child has exec'd, and the
    /// child joins its cgroup itself.
    #[test]
    fn spawn_async_returns_before_the_child_has_exec_d() {
        if run_in_helper("spawn_async_returns_before_the_child_has_exec_d") {
            return;
        }
        // A FIFO as the cgroup.procs file: the child's open for writing
        // blocks until we open it for reading, so the child is held
        // between fork and exec for as long as we like.
        let dir = temp_dir("async-hold");
        let fifo = dir.join("cgroup.procs");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let cat = program("cat");
        let args = vec!["/proc/self/cmdline".to_string()];
        let (read_end, write_end) = pipe();
        let mut spec = spec(&cat, "held", &args, &[], write_end);
        spec.cgroup_procs = Some(&fifo);
        let child = spawn_async(spec).unwrap();
        assert!(child.outcome().is_none(), "no word before the exec");
        // The fd the loop watches: quiet now, readable once the child exec'd.
        let poll = |timeout_ms: i32| {
            let mut fds = [libc::pollfd {
                fd: child.fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout_ms) }
        };
        assert_eq!(poll(0), 0, "readable before the exec");
        assert_ne!(
            std::fs::read(format!("/proc/{}/cmdline", child.pid())).unwrap(),
            b"held\0/proc/self/cmdline\0",
            "still the forked init, not cat"
        );
        let mut joined = String::new();
        std::fs::File::open(&fifo)
            .unwrap()
            .read_to_string(&mut joined)
            .unwrap();
        assert_eq!(joined, "0");
        assert_eq!(poll(20_000), 1, "not readable after the exec");
        assert!(matches!(child.outcome(), Some(Ok(()))));
        assert!(child.wait().is_ok());
        let mut output = String::new();
        std::fs::File::from(read_end)
            .read_to_string(&mut output)
            .unwrap();
        assert_eq!(output, "held\0/proc/self/cmdline\0");
        assert_eq!(reap(child.pid()), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn spawn_async_passes_argv_env_and_stdio() {
        if run_in_helper("spawn_async_passes_argv_env_and_stdio") {
            return;
        }
        let sh = program("sh");
        let args = vec![
            "-c".to_string(),
            "echo \"$0 $1 $GREETING\"".to_string(),
            "x".to_string(),
            "y".to_string(),
        ];
        let env = vec![("GREETING".to_string(), "hello".to_string())];
        let (read_end, write_end) = pipe();
        let (outcome, code) = run_async(spec(&sh, "my-sh", &args, &env, write_end));
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(code, 0);
        let mut output = String::new();
        std::fs::File::from(read_end)
            .read_to_string(&mut output)
            .unwrap();
        assert_eq!(output, "x y hello\n");
    }

    #[test]
    fn spawn_async_reports_failures_after_the_fork() {
        if run_in_helper("spawn_async_reports_failures_after_the_fork") {
            return;
        }
        let dir = temp_dir("async-fail");
        let interpreted = executable(&dir, "script", "#!/nonexistent/interpreter\n");
        let (outcome, code) = run_async(spec(&interpreted, "x", &[], &[], dev_null()));
        let err = outcome.unwrap_err();
        assert!(matches!(err, SpawnError::Exec { .. }), "{err:?}");
        assert!(
            err.to_string()
                .ends_with(": its interpreter (#! line) or dynamic loader does not exist"),
            "{err}"
        );
        assert_eq!(code, 127);

        let mut bad = spec(&interpreted, "x", &[], &[], dev_null());
        let no_cgroup = dir.join("cgroup.procs");
        bad.cgroup_procs = Some(&no_cgroup);
        let (outcome, code) = run_async(bad);
        let err = outcome.unwrap_err();
        assert!(
            matches!(
                &err,
                SpawnError::Setup {
                    step: SetupStep::Cgroup,
                    source,
                    ..
                } if source.raw_os_error() == Some(libc::ENOENT)
            ),
            "{err:?}"
        );
        assert_eq!(code, 127);

        // Only the chdir after the switch to nobody can notice this one.
        let private = dir.join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let nobody = resolve_user("nobody").unwrap();
        let pwd = program("pwd");
        let mut as_nobody = pwd_as(&pwd, &nobody);
        as_nobody.working_dir = Some(&private);
        let (outcome, code) = run_async(as_nobody);
        let err = outcome.unwrap_err();
        assert!(
            matches!(&err, SpawnError::BadWorkingDir { dir, source, .. }
                if dir == &private && source.raw_os_error() == Some(libc::EACCES)),
            "{err:?}"
        );
        assert_eq!(code, 127);

        // Checks that need no child still fail at once.
        let mut spec = spec(&pwd, "pwd", &[], &[], dev_null());
        let missing = dir.join("missing");
        spec.working_dir = Some(&missing);
        assert!(matches!(
            spawn_async(spec),
            Err(SpawnError::BadWorkingDir { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn find_program_searches_path_in_order() {
        assert_eq!(
            find_program("sh", ":/nonexistent::/bin:/usr/bin").unwrap(),
            Path::new("/bin/sh")
        );
        let err = find_program("redis-server", "/nonexistent:/usr/bin").unwrap_err();
        assert!(matches!(&err, SpawnError::NotFound { cmd } if cmd == "redis-server"));
        assert_eq!(err.to_string(), "cmd 'redis-server' not found on PATH");
        assert!(matches!(
            find_program("", DEFAULT_PATH),
            Err(SpawnError::NotFound { .. })
        ));
        assert_eq!(find_program("/bin/sh", "").unwrap(), Path::new("/bin/sh"));
        let err = find_program("/nonexistent/app", DEFAULT_PATH).unwrap_err();
        assert_eq!(err.to_string(), "cmd '/nonexistent/app' not found");
    }

    #[test]
    fn find_program_rejects_non_executables() {
        let dir = temp_dir("find");
        let plain = dir.join("tool");
        std::fs::write(&plain, "data").unwrap();
        std::fs::create_dir(dir.join("subdir")).unwrap();
        let path_var = dir.to_str().unwrap();
        let err = find_program("tool", path_var).unwrap_err();
        assert!(
            matches!(err, SpawnError::PermissionDenied { .. }),
            "{err:?}"
        );
        let err = find_program(plain.to_str().unwrap(), "").unwrap_err();
        assert!(
            matches!(err, SpawnError::PermissionDenied { .. }),
            "{err:?}"
        );
        let err = find_program("subdir", path_var).unwrap_err();
        assert!(
            matches!(err, SpawnError::PermissionDenied { .. }),
            "{err:?}"
        );
        // An executable later on the PATH wins over a non-executable match.
        let later = temp_dir("find-later");
        let tool = executable(&later, "tool", "#!/bin/sh\n");
        let both = format!("{}:{}", dir.display(), later.display());
        assert_eq!(find_program("tool", &both).unwrap(), tool);
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&later).unwrap();
    }

    #[test]
    fn users_resolve_by_name_or_number() {
        let nobody = resolve_user("nobody").unwrap();
        assert_eq!(nobody.name, "nobody");
        assert_eq!(nobody.groups.first(), Some(&nobody.gid));
        assert_eq!(resolve_user(&nobody.uid.to_string()).unwrap(), nobody);
        let root = resolve_user("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
    }

    #[test]
    fn users_come_from_the_passwd_and_group_files() {
        let passwd = "# comment\n\nroot:x:0:0:root:/root:/bin/sh\n+nis\nbroken:x:zz:1::/:/bin/sh\n\
                      app:x:1000:1000:App:/home/app:/bin/bash\n2000:x:1001:1001::/home/n:/bin/sh\n\
                      other:x:2000:2000::/:/bin/sh\n\
                      short:x:1002:1002\n";
        let group = "root:x:0:\napp:x:1000:\nwheel:x:10:root,app\naudio:x:29:other,app\n\
                     dup:x:10:app\nbad:x:nope:app\n";
        let app = user_from_files("app", passwd, group).unwrap();
        assert_eq!(
            app,
            ResolvedUser {
                name: "app".into(),
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 10, 29],
                home: "/home/app".into(),
                shell: "/bin/bash".into(),
            }
        );
        assert_eq!(user_from_files("1000", passwd, group).unwrap(), app);
        // A name wins over a number, as with chown.
        assert_eq!(user_from_files("2000", passwd, group).unwrap().uid, 1001);
        assert_eq!(user_from_files("other", passwd, group).unwrap().uid, 2000);
        let short = user_from_files("short", passwd, group).unwrap();
        assert_eq!((short.home.as_str(), short.shell.as_str()), ("", ""));
        for spec in ["broken", "nis", "+nis", "", "4000", "no-one"] {
            assert!(
                matches!(
                    user_from_files(spec, passwd, group),
                    Err(SpawnError::UnknownUser { .. })
                ),
                "{spec}"
            );
        }
    }

    #[test]
    fn unknown_users_are_errors() {
        for spec in ["no-such-user-iris", "4000000", ""] {
            let err = resolve_user(spec).unwrap_err();
            assert!(
                matches!(&err, SpawnError::UnknownUser { user } if user == spec),
                "{err:?}"
            );
            assert_eq!(err.to_string(), format!("unknown user '{spec}'"));
        }
    }

    // ----- tests added for mutants that survived (see `make mutants`) -----

    #[test]
    fn setup_failures_name_their_step_and_keep_their_cause() {
        use std::error::Error;
        let steps = [
            (SetupStep::Session, "creating its session (setsid)"),
            (SetupStep::Cgroup, "joining its cgroup"),
            (SetupStep::Groups, "setting its supplementary groups"),
            (SetupStep::Gid, "setting its group id"),
            (SetupStep::Capabilities, "dropping its capabilities"),
            (SetupStep::Uid, "setting its user id"),
        ];
        for (step, words) in steps {
            assert_eq!(SetupStep::from_code(step.code()), Some(step));
            let err = SpawnError::Setup {
                program: "/bin/app".into(),
                step,
                source: io::Error::from_raw_os_error(libc::EPERM),
            };
            assert_eq!(
                err.to_string(),
                format!(
                    "cannot start '/bin/app': {words} failed: {}",
                    err.source().unwrap()
                )
            );
            assert!(err.source().unwrap().to_string().contains("not permitted"));
        }
        let exec = SpawnError::Exec {
            program: "x".into(),
            source: io::Error::from_raw_os_error(libc::ENOEXEC),
        };
        assert!(exec.source().is_some());
        assert!(SpawnError::NotFound { cmd: "x".into() }.source().is_none());
    }

    /// As a user who may not search a directory (a supervisor not run as
    /// root), a program in it is "permission denied", not "not found".
    #[test]
    fn a_program_behind_an_unsearchable_dir_is_denied() {
        if run_in_helper("a_program_behind_an_unsearchable_dir_is_denied") {
            return;
        }
        let dir = temp_dir("unsearchable");
        let tool = executable(&dir, "tool", "#!/bin/sh\n");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let nobody = resolve_user("nobody").unwrap();
        // This helper process is ours alone: changing its euid harms no test.
        nix::unistd::seteuid(Uid::from_raw(nobody.uid)).unwrap();
        let direct = find_program(tool.to_str().unwrap(), "");
        let searched = find_program("tool", dir.to_str().unwrap());
        nix::unistd::seteuid(Uid::from_raw(0)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        for got in [direct, searched] {
            assert!(
                matches!(&got, Err(SpawnError::PermissionDenied { .. })),
                "{got:?}"
            );
        }
    }

    /// A user with supplementary groups gets each once, primary first. The
    /// user is made up: the test binary runs again in a mount namespace with
    /// its own /etc/passwd and /etc/group bind-mounted.
    #[test]
    fn supplementary_groups_are_resolved_and_applied() {
        let dir = temp_dir("groups");
        let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        passwd.push_str("iris-t:x:4242:4242::/nonexistent:/bin/sh\n");
        let mut group = std::fs::read_to_string("/etc/group").unwrap();
        group.push_str("iris-t:x:4242:iris-t\niris-a:x:4243:iris-t\niris-b:x:4244:root,iris-t\n");
        std::fs::write(dir.join("passwd"), passwd).unwrap();
        std::fs::write(dir.join("group"), group).unwrap();
        let output = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                r#"mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 &&
                   exec "$@""#,
            )
            .arg("sh")
            .arg(dir.join("passwd"))
            .arg(dir.join("group"))
            .arg(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "proc::spawn::tests::supplementary_groups_inner",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, "1")
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    #[ignore = "run by supplementary_groups_are_resolved_and_applied"]
    fn supplementary_groups_inner() {
        assert!(std::env::var_os(HELPER_ENV).is_some(), "a helper only");
        let user = resolve_user("iris-t").unwrap();
        assert_eq!((user.uid, user.gid), (4242, 4242));
        assert_eq!(user.groups, [4242, 4243, 4244]);
        let status = cat_proc_status(Some(&user));
        assert_eq!(status_field(&status, "Groups"), "4242 4243 4244");
    }

    /// An init started with fd 0 closed gets low fds for a service's pipes:
    /// its output must still reach the pipe, not /dev/null.
    #[test]
    fn a_service_output_pipe_on_a_low_fd_still_gets_the_output() {
        if run_in_helper("a_service_output_pipe_on_a_low_fd_still_gets_the_output") {
            return;
        }
        let (read_end, write_end) = pipe();
        // SAFETY: dup2 onto fd 0 of this helper process, which reads no stdin.
        assert_eq!(unsafe { libc::dup2(write_end.as_raw_fd(), 0) }, 0);
        drop(write_end);
        // SAFETY: fd 0 now holds the pipe's write end, owned by nothing else.
        let low = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(0) };
        let sh = program("sh");
        let args = vec!["-c".to_string(), "echo out".to_string()];
        let (outcome, code) = run_async(spec(&sh, "sh", &args, &[], low));
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(code, 0);
        let mut output = String::new();
        std::fs::File::from(read_end)
            .read_to_string(&mut output)
            .unwrap();
        assert_eq!(output, "out\n");
    }

    /// Takes one capability out of this thread's effective set, or puts it
    /// back (it stays permitted).
    fn set_effective(cap: u32, on: bool) {
        let mut header = CapUserHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapUserData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        // SAFETY: capget v3 fills one header and two data structs we own.
        let got = unsafe {
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut CapUserHeader,
                data.as_mut_ptr(),
            )
        };
        assert_eq!(got, 0);
        let word = &mut data[(cap / 32) as usize];
        if on {
            word.effective |= 1 << (cap % 32);
        } else {
            word.effective &= !(1 << (cap % 32));
        }
        // SAFETY: as above; capset reads them.
        let set = unsafe {
            libc::syscall(
                libc::SYS_capset,
                &header as *const CapUserHeader,
                data.as_ptr(),
            )
        };
        assert_eq!(set, 0);
    }

    /// A supervisor lacking one capability (as in a container) cannot switch
    /// users: the error names the step that failed, on both spawn paths.
    #[test]
    fn each_step_of_the_user_switch_reports_its_own_failure() {
        if run_in_helper("each_step_of_the_user_switch_reports_its_own_failure") {
            return;
        }
        const CAP_SETGID: u32 = 6;
        const CAP_SETUID: u32 = 7;
        const CAP_SETPCAP: u32 = 8;
        let nobody = resolve_user("nobody").unwrap();
        let pwd = program("pwd");
        for (cap, step) in [
            (CAP_SETGID, SetupStep::Groups),
            (CAP_SETPCAP, SetupStep::Capabilities),
            (CAP_SETUID, SetupStep::Uid),
        ] {
            set_effective(cap, false);
            let sync = spawn(pwd_as(&pwd, &nobody)).map(drop);
            let (pending, code) = run_async(pwd_as(&pwd, &nobody));
            set_effective(cap, true);
            assert_eq!(code, 127, "{step:?}");
            for got in [sync, pending] {
                assert!(
                    matches!(&got, Err(SpawnError::Setup { step: s, source, .. })
                        if *s == step && source.raw_os_error() == Some(libc::EPERM)),
                    "{step:?}: {got:?}"
                );
            }
        }
    }
}
