//! The one and only reaper: every exit status in the init comes from here.
//! Nothing else may call wait(): a second waiter would steal statuses.

use crate::core::supervisor::{ExitStatus, Pid};
use nix::errno::Errno;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid as NixPid;

/// A look at exited children while they are still zombies (so
/// `/proc/PID` can still be read), for as long as it wants to look.
pub trait Peek {
    /// Whether the next exited child is to be looked at before it is
    /// reaped. When not, it is reaped at once: one system call per child.
    fn wants(&self) -> bool;
    /// What the look found out about `pid`, kept with its exit.
    fn peek(&mut self, pid: Pid) -> Option<String>;
}

/// No look at all.
impl Peek for () {
    fn wants(&self) -> bool {
        false
    }
    fn peek(&mut self, _: Pid) -> Option<String> {
        None
    }
}

/// One reaped child.
#[derive(Debug, Clone, PartialEq)]
pub struct Reaped {
    pub pid: Pid,
    pub status: ExitStatus,
    /// What `Peek::peek` said about it, if it was looked at.
    pub note: Option<String>,
}

/// Reaps every child that has exited, until none is left (SIGCHLD
/// coalesces, so one signal may stand for many exits), appending to `out`.
/// Returns how many it reaped.
pub fn reap_all(out: &mut Vec<Reaped>, peek: &mut dyn Peek) -> usize {
    let before = out.len();
    loop {
        let next = if peek.wants() {
            peek_then_reap(peek)
        } else {
            reap_one(Id::All)
        };
        match next {
            Next::Reaped(r) => out.push(r),
            Next::Again => continue,
            Next::Done => return out.len() - before,
        }
    }
}

/// Reaps every exited child in process group `pgid`, each noted with
/// `note`. Returns how many it reaped, or None when none of the init's
/// children is in the group any more.
pub fn reap_group(out: &mut Vec<Reaped>, pgid: Pid, note: &str) -> Option<usize> {
    let mut n = 0;
    loop {
        match reap_one(Id::PGid(NixPid::from_raw(pgid))) {
            Next::Reaped(r) => {
                n += 1;
                out.push(Reaped {
                    note: Some(note.to_string()),
                    ..r
                });
            }
            Next::Again => continue,
            Next::Done if n == 0 && !has_children_in(pgid) => return None,
            Next::Done => return Some(n),
        }
    }
}

/// Some child of the init is in process group `pgid` (exited or not).
fn has_children_in(pgid: Pid) -> bool {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    waitid(Id::PGid(NixPid::from_raw(pgid)), flags).is_ok()
}

enum Next {
    Reaped(Reaped),
    /// Interrupted, or a status that is no exit: look again.
    Again,
    /// Nothing has exited (or there are no children at all).
    Done,
}

/// Waits for one exited child of `id` without blocking, and reaps it.
fn reap_one(id: Id) -> Next {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG;
    let (pid, status) = match waitid(id, flags) {
        Ok(WaitStatus::Exited(p, code)) => (p, ExitStatus::Code(code)),
        Ok(WaitStatus::Signaled(p, sig, _)) => (p, ExitStatus::Signal(sig as i32)),
        Ok(WaitStatus::StillAlive) => return Next::Done,
        Ok(_) | Err(Errno::EINTR) => return Next::Again,
        Err(_) => return Next::Done, // ECHILD: no children at all
    };
    Next::Reaped(Reaped {
        pid: pid.as_raw(),
        status,
        note: None,
    })
}

/// Finds an exited child while leaving it a zombie, lets `peek` look at
/// it, then reaps that one.
fn peek_then_reap(peek: &mut dyn Peek) -> Next {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    let pid = match waitid(Id::All, flags) {
        Ok(WaitStatus::StillAlive) => return Next::Done,
        Ok(s) => match s.pid() {
            Some(p) => p,
            None => return Next::Again,
        },
        Err(Errno::EINTR) => return Next::Again,
        Err(_) => return Next::Done,
    };
    let note = peek.peek(pid.as_raw());
    match reap_one(Id::Pid(NixPid::from_raw(pid.as_raw()))) {
        Next::Reaped(r) => Next::Reaped(Reaped { note, ..r }),
        // Not reapable after all (it cannot vanish: only we wait): look again.
        _ => Next::Again,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALONE_ENV: &str = "IRIS_REAPER_TEST_ALONE";

    /// The reaper waits for any child: among the other tests' threads it
    /// would steal their children (and they its). So each test body runs in
    /// this test binary started again with only that test: true there;
    /// here, false once that run passed.
    fn alone(test: &str) -> bool {
        if std::env::var_os(ALONE_ENV).is_some() {
            return true;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("proc::reaper::tests::{test}"),
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
        false
    }

    /// Looks at every child, noting that it was still a zombie.
    struct Look(Vec<Pid>);
    impl Peek for Look {
        fn wants(&self) -> bool {
            true
        }
        fn peek(&mut self, pid: Pid) -> Option<String> {
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            });
            self.0.push(pid);
            zombie.then(|| "zombie".to_string())
        }
    }

    fn spawn(script: &str) -> i32 {
        std::process::Command::new("sh")
            .args(["-c", script])
            .spawn()
            .unwrap()
            .id() as i32
    }

    /// Reaps with `peek` until both children are in, returning what it got.
    fn reap_until(a: i32, b: i32, peek: &mut dyn Peek) -> Vec<Reaped> {
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !(got.iter().any(|r: &Reaped| r.pid == a) && got.iter().any(|r| r.pid == b)) {
            assert!(std::time::Instant::now() < deadline);
            reap_all(&mut got, peek);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        got
    }

    fn status_of(got: &[Reaped], pid: i32) -> Option<ExitStatus> {
        got.iter().find(|r| r.pid == pid).map(|r| r.status)
    }

    #[test]
    fn reaps_every_exited_child_with_its_status() {
        if !alone("reaps_every_exited_child_with_its_status") {
            return;
        }
        let a = spawn("exit 7");
        let b = spawn("kill -9 $$");
        let got = reap_until(a, b, &mut ());
        assert_eq!(status_of(&got, a), Some(ExitStatus::Code(7)));
        assert_eq!(status_of(&got, b), Some(ExitStatus::Signal(9)));
        assert!(got.iter().all(|r| r.note.is_none()));
    }

    #[test]
    fn a_group_is_reaped_with_its_note_and_only_it() {
        if !alone("a_group_is_reaped_with_its_note_and_only_it") {
            return;
        }
        use std::os::unix::process::CommandExt;
        let mut group = std::process::Command::new("sh");
        group.args(["-c", "exit 5"]).process_group(0);
        let leader = group.spawn().unwrap().id() as i32;
        let other = spawn("exec sleep 1000");
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !got.iter().any(|r: &Reaped| r.pid == leader) {
            assert!(std::time::Instant::now() < deadline);
            assert!(reap_group(&mut got, leader, "svc").is_some());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            got,
            vec![Reaped {
                pid: leader,
                status: ExitStatus::Code(5),
                note: Some("svc".into())
            }]
        );
        // Nothing of the init's is left in that group.
        assert_eq!(reap_group(&mut got, leader, "svc"), None);
        nix::sys::signal::kill(NixPid::from_raw(other), nix::sys::signal::Signal::SIGKILL).unwrap();
        let _ = reap_until(other, other, &mut ());
    }

    #[test]
    fn a_peek_sees_each_child_still_a_zombie() {
        if !alone("a_peek_sees_each_child_still_a_zombie") {
            return;
        }
        let a = spawn("exit 3");
        let b = spawn("exit 4");
        let mut look = Look(Vec::new());
        let got = reap_until(a, b, &mut look);
        assert_eq!(status_of(&got, a), Some(ExitStatus::Code(3)));
        assert_eq!(status_of(&got, b), Some(ExitStatus::Code(4)));
        assert!(look.0.contains(&a) && look.0.contains(&b));
        for pid in [a, b] {
            let r = got.iter().find(|r| r.pid == pid).unwrap();
            assert_eq!(r.note.as_deref(), Some("zombie"), "{r:?}");
        }
    }
}
