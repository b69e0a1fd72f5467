//! The one and only reaper: every exit status in the init comes from here.
//! Nothing else may call wait(): a second waiter would steal statuses.

use crate::supervisor::{ExitStatus, Pid};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid as NixPid;

/// Reaps every child that has exited, until none is left (SIGCHLD
/// coalesces, so one signal may stand for many exits).
pub fn reap_all(out: &mut Vec<(Pid, ExitStatus)>) {
    loop {
        match waitpid(NixPid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => out.push((pid.as_raw(), ExitStatus::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                out.push((pid.as_raw(), ExitStatus::Signal(sig as i32)))
            }
            Ok(WaitStatus::StillAlive) => return,
            Ok(_) => continue, // stopped/continued: not an exit
            Err(Errno::EINTR) => continue,
            Err(_) => return, // ECHILD: no children at all
        }
    }
}
