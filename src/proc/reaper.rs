//! The one and only reaper: every exit status in the init comes from here.
//! Nothing else may call wait(): a second waiter would steal statuses.

use crate::core::supervisor::{ExitStatus, Pid};
use nix::errno::Errno;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid as NixPid;

/// Reaps every child that has exited, until none is left (SIGCHLD
/// coalesces, so one signal may stand for many exits). `peek` sees each
/// pid while it is still a zombie, so `/proc/PID` can still be read (to
/// attribute an orphan to the cgroup it died in).
pub fn reap_all(out: &mut Vec<(Pid, ExitStatus)>, peek: &mut dyn FnMut(Pid)) {
    loop {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        let pid = match waitid(Id::All, flags) {
            Ok(s) => match s.pid() {
                Some(p) => p,
                None => return, // StillAlive: nothing has exited
            },
            Err(Errno::EINTR) => continue,
            Err(_) => return, // ECHILD: no children at all
        };
        peek(pid.as_raw());
        match waitpid(NixPid::from_raw(pid.as_raw()), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) => out.push((p.as_raw(), ExitStatus::Code(code))),
            Ok(WaitStatus::Signaled(p, sig, _)) => {
                out.push((p.as_raw(), ExitStatus::Signal(sig as i32)))
            }
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALONE_ENV: &str = "IRIS_REAPER_TEST_ALONE";

    /// `reap_all` waits for any child: among the other tests' threads it
    /// would steal their children (and they its). So the test body runs in
    /// this test binary started again with only this test.
    #[test]
    fn reaps_every_exited_child_with_its_status() {
        if std::env::var_os(ALONE_ENV).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "proc::reaper::tests::reaps_every_exited_child_with_its_status",
                    "--exact",
                    "--test-threads=1",
                ])
                .env(ALONE_ENV, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let a = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap()
            .id() as i32;
        let b = std::process::Command::new("sh")
            .args(["-c", "kill -9 $$"])
            .spawn()
            .unwrap()
            .id() as i32;
        let mut got = Vec::new();
        let mut peeked = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !(got.iter().any(|(p, _)| *p == a) && got.iter().any(|(p, _)| *p == b)) {
            assert!(std::time::Instant::now() < deadline);
            reap_all(&mut got, &mut |p| {
                // Still a zombie while peeked at.
                assert!(std::path::Path::new(&format!("/proc/{p}")).exists());
                peeked.push(p);
            });
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(got.contains(&(a, ExitStatus::Code(7))));
        assert!(got.contains(&(b, ExitStatus::Signal(9))));
        assert!(peeked.contains(&a) && peeked.contains(&b));
    }
}
