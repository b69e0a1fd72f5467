//! Starting a child without copying the init: `clone3` with `CLONE_VM`
//! (no copy of the init's page tables, no copy-on-write faults afterwards)
//! and `CLONE_INTO_CGROUP` (born in its service's cgroup: no write to
//! `cgroup.procs`, no cgroup migration).
//!
//! `clone_vfork` adds `CLONE_VFORK`, as glibc's `posix_spawn` does: the
//! caller is suspended until the child execs or exits. `clone_shared` does
//! not: the child runs on the init's memory alongside it, so the init keeps
//! what the child reads until it has left. Either child runs on a stack of
//! its own, with every signal blocked until it has reset their
//! dispositions, and touches only its `ChildStart`. Where the kernel or the
//! architecture cannot do this, they say so and the caller forks instead.

use std::cell::Cell;
use std::ffi::c_void;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;

use crate::proc::child::{child_exec, ChildStart};

/// `CLONE_INTO_CGROUP` (Linux 5.7): `clone_args.cgroup` is a cgroup2
/// directory fd the child starts in.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The child's stack. Its path to exec (dup2, signal reset, a few id and
/// fd calls) uses a few KiB even in a debug build.
const STACK_SIZE: usize = 64 * 1024;

/// Set once the kernel has said it has no `clone3` (ENOSYS, e.g. under a
/// seccomp filter that predates it) or a smaller `clone_args` (E2BIG):
/// later spawns fork at once.
static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The child stack of this thread's last clone, reused by the next.
    static STACK: Cell<Option<Stack>> = const { Cell::new(None) };
}

/// `struct clone_args` as of Linux 5.7 (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Why no child was started (there is none left behind either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloneError {
    /// clone3 failed: unavailable here, or it refused the call (e.g. a
    /// cgroup that takes no process, or a path that is not a cgroup).
    Refused(Errno),
    /// The child was killed before its first instruction. Linux 6.14 to at
    /// least 6.18 do that to every `CLONE_INTO_CGROUP` child of a cgroup
    /// that was ever `cgroup.kill`ed: the fork compares the kill counter of
    /// the *parent's* cgroup with the destination's. A forked child that
    /// joins through `cgroup.procs` is not affected.
    KilledAtBirth,
}

/// Starts `start`'s child with clone3, in `cgroup` when given. Returns its
/// pid once it has exec'd or exited (the error pipe then says which).
/// `Err` means no child exists: the caller forks instead (which also
/// reports whatever made clone3 fail, e.g. a cgroup that refuses
/// processes, the way it always has).
pub(crate) fn clone_vfork(
    start: &ChildStart,
    cgroup: Option<BorrowedFd<'_>>,
) -> Result<i32, CloneError> {
    if !cfg!(target_arch = "x86_64") || UNAVAILABLE.load(Ordering::Relaxed) {
        return Err(CloneError::Refused(Errno::ENOSYS));
    }
    let stack = match STACK.take() {
        Some(stack) => stack,
        None => Stack::new().map_err(CloneError::Refused)?,
    };
    // SAFETY: the stack is used by nothing else; `start` outlives the
    // child's use of it because this thread is suspended until the child
    // execs or exits.
    let cloned = unsafe { clone_on(start, libc::CLONE_VFORK as u64, cgroup, &stack) };
    // The child has left this memory (exec'd or exited): the next child of
    // this thread gets the same stack, without an mmap and an munmap (whose
    // TLB flush must reach the CPU the child ran on).
    STACK.set(Some(stack));
    let pid = cloned.map_err(CloneError::Refused)?;
    if !start.ran.load(Ordering::Acquire) {
        // Dying of a SIGKILL it never got to see: reap it here, it is ours
        // and no one else has heard of it.
        let child = nix::unistd::Pid::from_raw(pid);
        while let Err(Errno::EINTR) = nix::sys::wait::waitpid(child, None) {}
        return Err(CloneError::KilledAtBirth);
    }
    Ok(pid)
}

/// Starts `start`'s child with clone3 and `CLONE_VM` but no `CLONE_VFORK`:
/// no copy of the init's page tables and no copy-on-write faults after it,
/// like `clone_vfork`, yet the caller goes on at once, as after a fork (a
/// burst of starts must not wait for each exec). In `cgroup` when given.
///
/// The child runs on the init's memory, on `stack`, while the init goes on:
/// it reads only `start` and makes raw system calls (`rawsys`: no errno),
/// and sets `start.ran` first. The caller must keep `start` (at its
/// address) and `stack` until the child has left this memory: EOF on its
/// error pipe (the write end closes at exec, or at exit, both after the
/// switch away from this memory) or its reaping.
pub(crate) fn clone_shared(
    start: &ChildStart,
    cgroup: Option<BorrowedFd<'_>>,
    stack: &SharedStack,
) -> Result<i32, Errno> {
    // SAFETY: only this child uses the stack; the caller keeps it, and
    // `start`, until the child has left this memory.
    unsafe { clone_on(start, 0, cgroup, &stack.0) }
}

/// clone3 with `CLONE_VM` and `extra` flags, into `cgroup` when given: the
/// child runs `child_main(start)` on `stack`, with every signal blocked
/// until it has reset them. Returns its pid.
///
/// # Safety
/// Nothing else may use `stack` until the child has left this memory, and
/// `start` must stay where it is until then.
unsafe fn clone_on(
    start: &ChildStart,
    extra: u64,
    cgroup: Option<BorrowedFd<'_>>,
    stack: &Stack,
) -> Result<i32, Errno> {
    if !cfg!(target_arch = "x86_64") || UNAVAILABLE.load(Ordering::Relaxed) {
        return Err(Errno::ENOSYS);
    }
    let mut flags = libc::CLONE_VM as u64 | extra;
    let mut cgroup_fd = 0;
    if let Some(fd) = cgroup {
        flags |= CLONE_INTO_CGROUP;
        cgroup_fd = fd.as_raw_fd() as u64;
    }
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack.base as u64,
        stack_size: STACK_SIZE as u64,
        cgroup: cgroup_fd,
        ..CloneArgs::default()
    };
    let blocked = BlockedSignals::new();
    // SAFETY: `args` describes a mapped stack that only this child uses
    // (the caller's contract); the child runs `child_main` on it with
    // `start` and touches nothing else of ours.
    let ret = unsafe { raw_clone3(&mut args, start) };
    drop(blocked);
    if ret < 0 {
        let errno = Errno::from_raw(i32::try_from(-ret).unwrap_or(libc::EINVAL));
        if matches!(errno, Errno::ENOSYS | Errno::E2BIG) {
            UNAVAILABLE.store(true, Ordering::Relaxed);
        }
        return Err(errno);
    }
    // pid_max is at most 2^22: a positive return always fits.
    Ok(i32::try_from(ret).unwrap_or(i32::MAX))
}

/// A stack for one `clone_shared` child. Dropped (once that child has left
/// the init's memory) it goes back to a small pool for the next one.
pub(crate) struct SharedStack(Stack);

/// Stacks kept for reuse: a burst reuses them instead of mapping and
/// unmapping one per start.
const SPARE_STACKS: usize = 16;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Stack>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl SharedStack {
    pub(crate) fn new() -> Result<SharedStack, Errno> {
        match SPARE.with(|spare| spare.borrow_mut().pop()) {
            Some(stack) => Ok(SharedStack(stack)),
            None => Stack::new().map(SharedStack),
        }
    }
}

impl Drop for SharedStack {
    fn drop(&mut self) {
        let stack = std::mem::replace(&mut self.0, Stack::EMPTY);
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_STACKS {
                spare.push(stack);
            }
        });
    }
}

/// Unmaps the stacks kept for reuse (no child runs on them): between
/// bursts, an idle init holds none.
pub(crate) fn release_spare_stacks() {
    let spare = SPARE.with(|spare| std::mem::take(&mut *spare.borrow_mut()));
    drop(spare);
}

/// The child's first Rust code, on its own stack.
extern "C" fn child_main(arg: *mut c_void) -> ! {
    // SAFETY: `arg` is the `ChildStart` that `clone_vfork` passed, alive in
    // the suspended parent's frame.
    let start = unsafe { &*(arg as *const ChildStart) };
    start.ran.store(true, Ordering::Release);
    // SAFETY: a cloned child; `child_exec` ends in execve or _exit.
    unsafe { child_exec(start) }
}

/// clone3, then in the child a call of `child_main(start)` on the new stack
/// (a raw `syscall()` would return into the parent's frames there). Returns
/// the pid, or -errno.
///
/// # Safety
/// `args.stack`/`stack_size` must describe writable memory nothing else
/// uses until the child has exec'd or exited, 16-byte aligned at its top.
#[cfg(target_arch = "x86_64")]
unsafe fn raw_clone3(args: &mut CloneArgs, start: &ChildStart) -> libc::c_long {
    let ret: libc::c_long;
    // SAFETY: the caller's contract. The parent path is a plain syscall
    // (rcx and r11 clobbered). The child starts after `syscall` with rax 0,
    // the parent's registers and rsp at the new stack's top; it clears the
    // frame pointer, calls child_main (never returns) and so never touches
    // the parent's stack.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") start as *const ChildStart,
            in("r13") child_main as extern "C" fn(*mut c_void) -> !,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn raw_clone3(_args: &mut CloneArgs, _start: &ChildStart) -> libc::c_long {
    -libc::c_long::from(libc::ENOSYS)
}

/// An anonymous mapping for the child's stack, with a guard page below it.
struct Stack {
    /// Lowest usable address (above the guard page).
    base: *mut u8,
    mapping: *mut c_void,
}

const GUARD: usize = 4096;

impl Stack {
    /// No mapping (what a `SharedStack` holds once its stack went back).
    const EMPTY: Stack = Stack {
        base: std::ptr::null_mut(),
        mapping: std::ptr::null_mut(),
    };

    fn new() -> Result<Stack, Errno> {
        // SAFETY: a fresh private anonymous mapping; no existing memory is
        // affected.
        let mapping = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK_SIZE + GUARD,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let stack = Stack {
            base: mapping.cast::<u8>().wrapping_add(GUARD),
            mapping,
        };
        // SAFETY: the first page of the mapping made above.
        if unsafe { libc::mprotect(mapping, GUARD, libc::PROT_NONE) } == -1 {
            return Err(Errno::last());
        }
        Ok(stack)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.mapping.is_null() {
            return;
        }
        // SAFETY: unmaps exactly the mapping `new` made; the child that used
        // it has exec'd or exited.
        unsafe { libc::munmap(self.mapping, STACK_SIZE + GUARD) };
    }
}

/// Every signal blocked in the calling thread until dropped: no handler of
/// the init can run in the child, on the parent's memory, before the child
/// has reset the dispositions (it then unblocks everything).
struct BlockedSignals {
    old: libc::sigset_t,
}

impl BlockedSignals {
    fn new() -> BlockedSignals {
        // SAFETY: sigfillset initializes the local set; pthread_sigmask
        // reads it and stores the old mask in `old`.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            BlockedSignals { old }
        }
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}
