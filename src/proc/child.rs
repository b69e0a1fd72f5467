//! The child's side of a spawn: everything a forked child does between
//! fork and exec (signals, session, cgroup, fds, user switch, working
//! directory, stdio, exec), prepared before the fork so the child only makes
//! async-signal-safe calls, and the error record it writes when a step fails.

use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::sys::resource::{getrlimit, Resource};

use crate::proc::rawsys::call;
use nix::unistd::{Gid, Uid};

/// A step the child performs between fork and exec; says which one failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupStep {
    Session,
    Cgroup,
    Groups,
    Gid,
    Capabilities,
    Uid,
}

impl SetupStep {
    /// The byte the child writes to the stage pipe; 0 is never used.
    pub(crate) fn code(self) -> u8 {
        match self {
            SetupStep::Session => 1,
            SetupStep::Cgroup => 2,
            SetupStep::Groups => 3,
            SetupStep::Gid => 4,
            SetupStep::Capabilities => 5,
            SetupStep::Uid => 6,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<SetupStep> {
        [
            SetupStep::Session,
            SetupStep::Cgroup,
            SetupStep::Groups,
            SetupStep::Gid,
            SetupStep::Capabilities,
            SetupStep::Uid,
        ]
        .into_iter()
        .find(|step| step.code() == code)
    }
}

/// Stage byte for a failed `chdir`, reported as `BadWorkingDir`.
pub(crate) const STAGE_WORKING_DIR: u8 = 100;

impl fmt::Display for SetupStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SetupStep::Session => "creating its session (setsid)",
            SetupStep::Cgroup => "joining its cgroup",
            SetupStep::Groups => "setting its supplementary groups",
            SetupStep::Gid => "setting its group id",
            SetupStep::Capabilities => "dropping its capabilities",
            SetupStep::Uid => "setting its user id",
        })
    }
}

/// What the child is to do, as the spawner knows it.
pub(crate) struct ChildSetup<'a> {
    /// `setsid()`.
    pub new_session: bool,
    /// A `cgroup.procs` file to write "0" to.
    pub cgroup_procs: Option<&'a Path>,
    /// The user to become: ids and the full group list.
    pub user: Option<UserIds<'a>>,
    pub working_dir: Option<&'a Path>,
}

#[derive(Clone, Copy)]
pub(crate) struct UserIds<'a> {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: &'a [libc::gid_t],
}

/// What the child needs, all built before the clone or fork: a cloned
/// child runs on the parent's memory and must not allocate.
pub(crate) struct ChildStart {
    /// Sources of the child's 0, 1, 2 (all 3 or above).
    pub stdio: [RawFd; 3],
    pub plan: ChildPlan,
    pub program: CString,
    pub words: ExecWords,
    /// Born in its cgroup (`CLONE_INTO_CGROUP`): no `cgroup.procs` write.
    pub in_cgroup: bool,
    /// Set by a cloned child as its first act: a child that exits without
    /// it never ran (the kernel killed it as it was born).
    pub ran: AtomicBool,
}

/// The child: stdio, the plan, exec; on failure a record on the error
/// pipe (the plan wrote its own) and exit 127.
///
/// # Safety
/// Only in a freshly forked or cloned child; every pointer array ends with a
/// null.
pub(crate) unsafe fn child_exec(start: &ChildStart) -> ! {
    let plan = &start.plan;
    for (target, source) in (0..).zip(start.stdio.iter()) {
        // SAFETY: dup2 on fds that are open in the child.
        if let Err(errno) = unsafe { call(libc::SYS_dup2, &[*source as usize, target]) } {
            plan.fail(STAGE_EXEC, errno);
            exit_127();
        }
    }
    if plan.run(!start.in_cgroup).is_ok() {
        // SAFETY: program, argv and envp are NUL-terminated strings and
        // null-terminated arrays built before the clone or fork.
        let exec = unsafe {
            call(
                libc::SYS_execve,
                &[
                    start.program.as_ptr() as usize,
                    start.words.argv_ptrs.as_ptr() as usize,
                    start.words.envp_ptrs.as_ptr() as usize,
                ],
            )
        };
        if let Err(errno) = exec {
            plan.fail(STAGE_EXEC, errno);
        }
    }
    exit_127()
}

/// The child's end after a failure: exit_group(127), no atexit handlers.
fn exit_127() -> ! {
    loop {
        // SAFETY: exit_group ends the process; it does not return.
        let _ = unsafe { call(libc::SYS_exit_group, &[127]) };
    }
}

/// argv and envp as C strings, and the null-terminated pointer arrays into
/// them that execve takes.
pub(crate) struct ExecWords {
    _strings: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
}

impl ExecWords {
    pub(crate) fn new(
        argv0: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> io::Result<ExecWords> {
        let nul_error = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} contains a NUL byte"),
            )
        };
        let argc = args.len().saturating_add(1);
        let mut strings = Vec::with_capacity(argc.saturating_add(env.len()));
        for arg in std::iter::once(argv0).chain(args.iter().map(String::as_str)) {
            strings.push(CString::new(arg).map_err(|_| nul_error("an argument"))?);
        }
        for (key, value) in env {
            strings.push(
                CString::new(format!("{key}={value}")).map_err(|_| nul_error("the environment"))?,
            );
        }
        // The CStrings' buffers stay put when the Vec moves into the struct.
        let (argv, envp) = strings.split_at(argc.min(strings.len()));
        let terminated = |words: &[CString]| -> Vec<*const libc::c_char> {
            words
                .iter()
                .map(|word| word.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        let argv_ptrs = terminated(argv);
        let envp_ptrs = terminated(envp);
        Ok(ExecWords {
            _strings: strings,
            argv_ptrs,
            envp_ptrs,
        })
    }
}

/// Bytes of one error record: the stage byte, then errno (native endian).
pub(crate) const ERROR_RECORD_LEN: usize = 5;

/// Stage of the record the child writes when exec (or a dup2 of its stdio)
/// failed.
pub(crate) const STAGE_EXEC: u8 = 200;

fn encode_record(stage: u8, errno: i32) -> [u8; ERROR_RECORD_LEN] {
    let [a, b, c, d] = errno.to_ne_bytes();
    [stage, a, b, c, d]
}

pub(crate) fn decode_record(record: &[u8; ERROR_RECORD_LEN]) -> (u8, i32) {
    let [stage, a, b, c, d] = *record;
    (stage, i32::from_ne_bytes([a, b, c, d]))
}

/// The user switch the child performs, prepared before the fork.
struct UserSwitch {
    groups: Vec<libc::gid_t>,
    gid: libc::gid_t,
    uid: libc::uid_t,
    /// Non-root targets lose every capability, bounding set included.
    drop_caps: bool,
    /// Highest capability number to drop from the bounding set.
    cap_last: libc::c_int,
}

/// Everything the child does between fork and exec, computed before the fork
/// so that the child only makes async-signal-safe calls.
pub(crate) struct ChildPlan {
    new_session: bool,
    cgroup_procs: Option<CString>,
    user: Option<UserSwitch>,
    working_dir: Option<CString>,
    /// Upper bound for the fcntl loop when close_range is unavailable.
    fd_bound: libc::c_int,
    stage_fd: RawFd,
    /// Signals to put back to SIG_DFL (bit n-1 for signal n).
    reset: u64,
}

/// Linux has signals 1..=64 (kernel `_NSIG` is 64).
const NSIG: libc::c_int = 65;

/// Size of the kernel's sigset_t (`_NSIG / 8`), as rt_sigaction wants it.
const KERNEL_SIGSET_BYTES: libc::size_t = 8;

/// The capability ABI version that takes two 32-bit words per set.
pub(crate) const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
pub(crate) struct CapUserHeader {
    pub(crate) version: u32,
    pub(crate) pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct CapUserData {
    pub(crate) effective: u32,
    pub(crate) permitted: u32,
    pub(crate) inheritable: u32,
}

pub(crate) fn path_cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path '{}' contains a NUL byte", path.display()),
        )
    })
}

/// Highest capability the running kernel knows; 63 (the ABI maximum) when
/// /proc is not readable, in which case the drop loop stops at EINVAL.
fn cap_last_cap() -> libc::c_int {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse::<libc::c_int>().ok())
        .filter(|last| (0..=63).contains(last))
        .unwrap_or(63)
}

impl ChildPlan {
    pub(crate) fn new(setup: &ChildSetup<'_>, stage_fd: RawFd) -> io::Result<ChildPlan> {
        let cgroup_procs = setup.cgroup_procs.map(path_cstring).transpose()?;
        let working_dir = setup.working_dir.map(path_cstring).transpose()?;
        let user = setup.user.and_then(|user| {
            // Without root, the switch can only succeed as a no-op: skip it
            // when we already are that user (a non-root init in tests).
            let euid = Uid::effective().as_raw();
            if euid != 0 && user.uid == euid && user.gid == Gid::effective().as_raw() {
                return None;
            }
            Some(UserSwitch {
                groups: user.groups.to_vec(),
                gid: user.gid,
                uid: user.uid,
                drop_caps: user.uid != 0,
                cap_last: cap_last_cap(),
            })
        });
        let fd_bound = match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok((soft, _hard)) => soft.min(1 << 20) as libc::c_int,
            Err(_) => 1 << 16,
        };
        Ok(ChildPlan {
            new_session: setup.new_session,
            cgroup_procs,
            user,
            working_dir,
            fd_bound,
            stage_fd,
            reset: dispositions_to_reset(),
        })
    }

    /// Runs in the child. Async-signal-safe calls only; nothing allocates.
    /// `join_cgroup`: write to `cgroup.procs` (the child was not born there).
    pub(crate) fn run(&self, join_cgroup: bool) -> Result<(), i32> {
        // Dispositions first, then the mask: a signal arriving in between is
        // then handled by its default action, never by the init's handler.
        reset_signals(self.reset);
        if self.new_session {
            // SAFETY: setsid has no memory effects; a freshly forked child is
            // never a process-group leader, so it succeeds.
            if let Err(errno) = unsafe { call(libc::SYS_setsid, &[]) } {
                return Err(self.fail(SetupStep::Session.code(), errno));
            }
        }
        if let Some(path) = self.cgroup_procs.as_ref().filter(|_| join_cgroup) {
            write_cgroup_procs(path).map_err(|errno| self.fail(SetupStep::Cgroup.code(), errno))?;
        }
        mark_fds_cloexec(self.fd_bound);
        if let Some(user) = &self.user {
            self.switch_user(user)?;
        }
        if let Some(dir) = &self.working_dir {
            // After the user switch, so the service user's permissions apply.
            // SAFETY: `dir` is a valid NUL-terminated string owned by the plan.
            if let Err(errno) = unsafe { call(libc::SYS_chdir, &[dir.as_ptr() as usize]) } {
                return Err(self.fail(STAGE_WORKING_DIR, errno));
            }
        }
        Ok(())
    }

    /// groups, gid, capabilities, uid: in this order, because each later step
    /// removes the privilege the earlier ones need.
    ///
    /// Raw system calls, not glibc's wrappers: in a multi-threaded process
    /// glibc broadcasts an id change to every thread through the thread
    /// list, which a vfork-style child shares with its parent; the raw call
    /// changes only the calling task, the child's only thread.
    fn switch_user(&self, user: &UserSwitch) -> Result<(), i32> {
        let fail = |step: SetupStep| move |errno: i32| self.fail(step.code(), errno);
        // SAFETY: the pointer and length describe the plan's own Vec.
        unsafe {
            call(
                libc::SYS_setgroups,
                &[user.groups.len(), user.groups.as_ptr() as usize],
            )
        }
        .map_err(fail(SetupStep::Groups))?;
        // SAFETY: setgid takes a plain integer.
        unsafe { call(libc::SYS_setgid, &[user.gid as usize]) }.map_err(fail(SetupStep::Gid))?;
        if user.drop_caps {
            let prctl = |option: libc::c_int, arg: usize| {
                // SAFETY: prctl with integer arguments only.
                unsafe { call(libc::SYS_prctl, &[option as usize, arg]) }
            };
            // Ambient caps would survive exec; EINVAL means a kernel without them.
            match prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as usize,
            ) {
                Err(errno) if errno != libc::EINVAL => {
                    return Err(self.fail(SetupStep::Capabilities.code(), errno))
                }
                _ => {}
            }
            for cap in 0..=user.cap_last {
                match prctl(libc::PR_CAPBSET_DROP, cap as usize) {
                    Ok(_) => {}
                    Err(libc::EINVAL) => break, // past the kernel's last capability
                    Err(errno) => return Err(self.fail(SetupStep::Capabilities.code(), errno)),
                }
            }
        }
        // SAFETY: setuid takes a plain integer.
        unsafe { call(libc::SYS_setuid, &[user.uid as usize]) }.map_err(fail(SetupStep::Uid))?;
        if user.drop_caps {
            // setuid from root clears the permitted and effective sets but not
            // the inheritable one, which exec can combine with file caps.
            let header = CapUserHeader {
                version: LINUX_CAPABILITY_VERSION_3,
                pid: 0,
            };
            let data = [CapUserData {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            }; 2];
            // SAFETY: header and data are valid, correctly laid out (repr(C))
            // for capset v3, which reads one header and two data structs.
            unsafe {
                call(
                    libc::SYS_capset,
                    &[
                        &header as *const CapUserHeader as usize,
                        data.as_ptr() as usize,
                    ],
                )
            }
            .map_err(fail(SetupStep::Capabilities))?;
        }
        Ok(())
    }

    /// Records which step failed, with its errno; returns the errno.
    pub(crate) fn fail(&self, stage: u8, errno: i32) -> i32 {
        let record = encode_record(stage, errno);
        // SAFETY: writes a local record to the plan's stage pipe fd, which
        // stays open in the child until exec. One write under PIPE_BUF is
        // atomic: the reader sees the whole record or nothing.
        let _ = unsafe {
            call(
                libc::SYS_write,
                &[
                    self.stage_fd as usize,
                    record.as_ptr() as usize,
                    record.len(),
                ],
            )
        };
        errno
    }
}

/// The init's signals that are ignored or caught, as read at its first
/// spawn (`KNOWN`): the only ones its children must put back to SIG_DFL
/// before exec (SIG_IGN would survive it; a handler could run in a child
/// on the init's memory once the child unblocks signals). Reading them once
/// spares each child some sixty system calls on its way to exec. The init
/// sets no disposition after it started (its signals arrive on a
/// signalfd); code that does must call `dispositions_changed`.
static NON_DEFAULT: AtomicU64 = AtomicU64::new(0);
static KNOWN: AtomicBool = AtomicBool::new(false);

/// The set of signals to reset, read at the first call and after
/// `dispositions_changed`.
fn dispositions_to_reset() -> u64 {
    if KNOWN.load(Ordering::Acquire) {
        return NON_DEFAULT.load(Ordering::Relaxed);
    }
    let mut mask = 0u64;
    for signal in 1..NSIG {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        if !is_default(signal) {
            mask |= 1 << (signal - 1);
        }
    }
    NON_DEFAULT.store(mask, Ordering::Relaxed);
    KNOWN.store(true, Ordering::Release);
    mask
}

/// The next spawn reads the dispositions again.
pub(crate) fn dispositions_changed() {
    KNOWN.store(false, Ordering::Release);
}

/// Whether `signal`'s disposition is SIG_DFL; false when it cannot be told.
fn is_default(signal: libc::c_int) -> bool {
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return false;
    }
    // The kernel's struct sigaction, handler first on these architectures;
    // larger than the kernel writes.
    let mut old = [0u64; 8];
    // SAFETY: no new action; the kernel writes the old one into `old`.
    let queried = unsafe { rt_sigaction(signal, std::ptr::null(), old.as_mut_ptr()) };
    queried.is_ok() && old[0] == libc::SIG_DFL as u64
}

/// The raw rt_sigaction: `act` (or null) in, the old action into `old`
/// (or null); the set size is the kernel's sigset_t (64 signals, 8 bytes).
///
/// # Safety
/// Non-null pointers point to buffers at least as large as the kernel's
/// `struct sigaction` (eight u64 are).
unsafe fn rt_sigaction(
    signal: libc::c_int,
    act: *const u64,
    old: *mut u64,
) -> crate::proc::rawsys::SysResult {
    let args = [
        signal as usize,
        act as usize,
        old as usize,
        KERNEL_SIGSET_BYTES,
    ];
    // SAFETY: the caller's contract.
    unsafe { call(libc::SYS_rt_sigaction, &args) }
}

/// The dispositions in `reset` back to SIG_DFL, and an empty signal mask
/// (std inherits the parent's mask on purpose).
///
/// The raw rt_sigaction syscall, because glibc's sigaction refuses signals 32
/// and 33 (reserved for its threads), which a parent may still have ignored.
/// An all-zero kernel `struct sigaction` is SIG_DFL, no flags, empty mask,
/// whatever the architecture's field order; the buffer is larger than that
/// struct on every architecture.
fn reset_signals(reset: u64) {
    let default_action = [0u64; 8];
    for signal in 1..NSIG {
        if reset & (1 << (signal - 1)) == 0 {
            continue;
        }
        // SAFETY: the kernel reads at most sizeof(struct sigaction) bytes from
        // the zeroed local buffer and writes nothing (no old-action pointer).
        let _ = unsafe { rt_sigaction(signal, default_action.as_ptr(), std::ptr::null_mut()) };
    }
    let empty = 0u64;
    // SAFETY: the kernel reads one 8-byte set, all signals unblocked.
    let _ = unsafe {
        call(
            libc::SYS_rt_sigprocmask,
            &[
                libc::SIG_SETMASK as usize,
                &empty as *const u64 as usize,
                0,
                KERNEL_SIGSET_BYTES,
            ],
        )
    };
}

/// Writes "0" (meaning "the writer") to a cgroup.procs file.
fn write_cgroup_procs(path: &CStr) -> Result<(), i32> {
    let flags = (libc::O_WRONLY | libc::O_CLOEXEC) as usize;
    // SAFETY: `path` is NUL-terminated; the fd is closed on every path below.
    let fd = unsafe {
        call(
            libc::SYS_openat,
            &[libc::AT_FDCWD as usize, path.as_ptr() as usize, flags],
        )
    }?;
    // SAFETY: writes one byte from a static string to the fd opened above.
    let written = unsafe { call(libc::SYS_write, &[fd, b"0".as_ptr() as usize, 1]) };
    // SAFETY: closes the fd this function opened.
    let _ = unsafe { call(libc::SYS_close, &[fd]) };
    match written {
        Ok(1) => Ok(()),
        Ok(_) => Err(libc::EIO),
        Err(errno) => Err(errno),
    }
}

/// Marks every fd >= 3 close-on-exec so the service inherits only its stdio.
/// CLOEXEC rather than close: the stage pipe must stay usable until exec.
fn mark_fds_cloexec(fd_bound: libc::c_int) {
    // SAFETY: close_range(2) with integer arguments; it only changes fd flags.
    let marked = unsafe {
        call(
            libc::SYS_close_range,
            &[
                3,
                libc::c_uint::MAX as usize,
                libc::CLOSE_RANGE_CLOEXEC as usize,
            ],
        )
    };
    if marked.is_ok() {
        return;
    }
    // Kernels before 5.11: fcntl each possible fd up to the rlimit read before
    // the fork (reading /proc/self/fd here would not be async-signal-safe).
    for fd in 3..fd_bound {
        // SAFETY: fcntl on a possibly closed fd fails with EBADF, nothing more.
        unsafe {
            let fd = fd as usize;
            if let Ok(flags) = call(libc::SYS_fcntl, &[fd, libc::F_GETFD as usize]) {
                if flags & libc::FD_CLOEXEC as usize == 0 {
                    let set = flags | libc::FD_CLOEXEC as usize;
                    let _ = call(libc::SYS_fcntl, &[fd, libc::F_SETFD as usize, set]);
                }
            }
        }
    }
}
