//! System calls for a child between clone and exec that return the error
//! number instead of storing it in `errno`.
//!
//! A child cloned with `CLONE_VM` (and no `CLONE_VFORK`) runs on the init's
//! memory while the init goes on: glibc's wrappers would write `errno` into
//! the init's thread-local storage, under the init's feet, and read it back
//! from there. On x86_64 these are plain `syscall` instructions; elsewhere
//! (where the spawner never shares its memory with a running child) they
//! fall back to libc's `syscall()`.

/// A system call's result: the return value, or the error number.
pub(crate) type SysResult = Result<usize, i32>;

/// Calls system call `nr` with up to six arguments.
///
/// # Safety
/// The arguments must be valid for that system call (pointers to memory
/// that lives through the call, of the size the call expects).
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn syscall(nr: libc::c_long, args: [usize; 6]) -> SysResult {
    let ret: isize;
    // SAFETY: the caller's contract. The kernel clobbers rcx and r11 only
    // and touches no user stack.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    // The kernel returns -4095..=-1 for errors.
    if (-4095..0).contains(&ret) {
        Err(-(ret as i32))
    } else {
        Ok(ret as usize)
    }
}

/// # Safety
/// As above.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn syscall(nr: libc::c_long, args: [usize; 6]) -> SysResult {
    // SAFETY: the caller's contract.
    let ret = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
    if ret == -1 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    } else {
        Ok(ret as usize)
    }
}

/// Shorthand for calls with fewer arguments: the rest are zero.
///
/// # Safety
/// As `syscall`.
pub(crate) unsafe fn call(nr: libc::c_long, given: &[usize]) -> SysResult {
    let mut args = [0usize; 6];
    for (slot, value) in args.iter_mut().zip(given) {
        *slot = *value;
    }
    // SAFETY: the caller's contract.
    unsafe { syscall(nr, args) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_or_the_error_number() {
        // SAFETY: getpid takes no arguments.
        let pid = unsafe { call(libc::SYS_getpid, &[]) };
        assert_eq!(pid, Ok(std::process::id() as usize));
        // SAFETY: close of an fd number nothing uses.
        let closed = unsafe { call(libc::SYS_close, &[1_000_000]) };
        assert_eq!(closed, Err(libc::EBADF));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn leaves_errno_alone() {
        // SAFETY: sets this thread's errno to a known value.
        unsafe { *libc::__errno_location() = libc::EXDEV };
        // SAFETY: close of an fd number nothing uses.
        let closed = unsafe { call(libc::SYS_close, &[1_000_000]) };
        assert_eq!(closed, Err(libc::EBADF));
        // SAFETY: reads this thread's errno.
        assert_eq!(unsafe { *libc::__errno_location() }, libc::EXDEV);
    }
}
