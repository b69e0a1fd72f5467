//! Waiting for a stopped service's process tree to be gone: every process
//! of its group and its cgroup, killed again while any is left (a forker
//! may race the first SIGKILL), given up on after a while.
//!
//! Nothing polls where the kernel says when a tree is gone: a cgroup's
//! `cgroup.events` is watched with inotify (`populated 0`), and every reap
//! checks again (a reaped orphan may have been the last process of a
//! group). Only a tree whose end cannot be seen that way (no cgroup, no
//! `cgroup.kill` to stop racing forkers, a container runtime still at work)
//! is checked on a timer, backing off from a few milliseconds.

use crate::core::supervisor::{Input, Pid};
use crate::io::{Io, Owner, TimerKey};
use crate::proc::cgroup::Cgroups;
use mio::unix::SourceFd;
use mio::Interest;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid as NixPid;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

/// The first recheck of a tree whose end is not signalled; each next one
/// waits twice as long, up to `RECHECK_MAX`.
const RECHECK: Duration = Duration::from_millis(5);
const RECHECK_MAX: Duration = Duration::from_millis(500);
/// How long a stopped tree may take to disappear after SIGKILL before the
/// init gives up waiting (a process stuck in the kernel, say).
const GIVE_UP: Duration = Duration::from_secs(5);

struct TreeWatch {
    name: String,
    gen: u64,
    pgid: Pid,
    since: Instant,
    /// The inotify watch on its `cgroup.events`, when its end is signalled.
    wd: Option<WatchDescriptor>,
    /// When a tree that is not signalled is checked next, and the wait
    /// after that.
    poll: Option<(Instant, Duration)>,
}

impl TreeWatch {
    /// When this tree needs a look without any event.
    fn due(&self) -> Instant {
        let give_up = self.since + GIVE_UP;
        self.poll.map_or(give_up, |(at, _)| at.min(give_up))
    }
}

#[derive(Default)]
pub(crate) struct TreeWatcher {
    trees: Vec<TreeWatch>,
    /// Watches `cgroup.events` of stopping services (None without cgroups,
    /// or when inotify is not available).
    inotify: Option<Inotify>,
    /// The one live timer: when, and its number (older ones are stale).
    timer: Option<(Instant, u64)>,
    timer_seq: u64,
}

impl TreeWatcher {
    /// With cgroups, an inotify instance in the loop for `cgroup.events`.
    pub(crate) fn new(io: &mut Io, cgroups: Option<&Cgroups>) -> TreeWatcher {
        let inotify = cgroups.and_then(|_| {
            let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
            let fd = ino.as_fd().as_raw_fd();
            match io.register(&mut SourceFd(&fd), Interest::READABLE, Owner::TreeEvents) {
                Ok(_) => Some(ino),
                Err(e) => {
                    crate::warn!("cannot watch cgroup events ({e}): stopped trees are polled");
                    None
                }
            }
        });
        TreeWatcher {
            inotify,
            ..TreeWatcher::default()
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.trees.is_empty()
    }

    /// The timer with this number is the live one.
    pub(crate) fn has_timer(&self, seq: u64) -> bool {
        self.timer.is_some_and(|(_, s)| s == seq)
    }

    /// The live timer fired (or went stale).
    pub(crate) fn timer_gone(&mut self, seq: u64) {
        if self.has_timer(seq) {
            self.timer = None;
        }
    }

    /// Starts waiting for the tree of `name`. Its cgroup's events are
    /// watched before anything is checked, so no change can be missed.
    pub(crate) fn watch(
        &mut self,
        name: String,
        gen: u64,
        pgid: Pid,
        cgroups: Option<&Cgroups>,
        now: Instant,
    ) {
        if let Some(old) = self.trees.iter().position(|t| t.name == name) {
            let old = self.trees.swap_remove(old);
            self.unwatch(old.wd);
        }
        let wd = match (&self.inotify, cgroups) {
            // Without cgroup.kill a forker can outrun the kill, and only
            // killing again on a timer catches it.
            (Some(ino), Some(cg)) if cg.can_kill(&name) => ino
                .add_watch(
                    &cg.path(&name).join("cgroup.events"),
                    AddWatchFlags::IN_MODIFY,
                )
                .ok(),
            _ => None,
        };
        let poll = wd.is_none().then_some((now + RECHECK, RECHECK));
        self.trees.push(TreeWatch {
            name,
            gen,
            pgid,
            since: now,
            wd,
            poll,
        });
    }

    /// Reads every pending inotify event (the fd is edge-triggered); which
    /// cgroup changed does not matter, every tree is checked.
    pub(crate) fn drain_events(&mut self) {
        if let Some(ino) = &self.inotify {
            while ino.read_events().is_ok_and(|evs| !evs.is_empty()) {}
        }
    }

    fn unwatch(&self, wd: Option<WatchDescriptor>) {
        if let (Some(ino), Some(wd)) = (&self.inotify, wd) {
            let _ = ino.rm_watch(wd);
        }
    }

    /// The trees that are gone (or given up on), as supervisor inputs.
    /// `busy(name)`: something else still holds the service's processes
    /// (a container runtime deleting it).
    pub(crate) fn check(
        &mut self,
        io: &mut Io,
        cgroups: Option<&Cgroups>,
        busy: impl Fn(&str) -> bool,
        now: Instant,
    ) -> Vec<Input> {
        let mut done = Vec::new();
        let mut keep = Vec::new();
        for mut t in std::mem::take(&mut self.trees) {
            let held = busy(&t.name);
            if !held && tree_gone(&t, cgroups) {
                done.push(t);
            } else if now.saturating_duration_since(t.since) >= GIVE_UP {
                crate::warn!(
                    "processes of '{}' survive SIGKILL; giving up waiting",
                    t.name
                );
                done.push(t);
            } else {
                // Keep killing: a forker may have raced the first SIGKILL.
                let _ = killpg(NixPid::from_raw(t.pgid), Signal::SIGKILL);
                if let Some(cg) = cgroups {
                    cg.kill_all(&t.name);
                }
                // A runtime's work ends with a reap, but is looked at on a
                // timer too: its end is not a cgroup event.
                if held && t.poll.is_none() {
                    t.poll = Some((now + RECHECK, RECHECK));
                }
                if let Some((at, wait)) = t.poll {
                    if at <= now {
                        let wait = (wait * 2).min(RECHECK_MAX);
                        t.poll = Some((now + wait, wait));
                    }
                }
                keep.push(t);
            }
        }
        self.trees = keep;
        for t in &done {
            self.unwatch(t.wd);
        }
        self.schedule(io);
        done.into_iter()
            .map(|t| Input::TreeEmpty {
                name: t.name,
                gen: t.gen,
            })
            .collect()
    }

    /// One timer for the earliest tree that needs a look without an event.
    fn schedule(&mut self, io: &mut Io) {
        let Some(due) = self.trees.iter().map(TreeWatch::due).min() else {
            return;
        };
        if self.timer.is_some_and(|(at, _)| at <= due) {
            return;
        }
        self.timer_seq = self.timer_seq.wrapping_add(1);
        self.timer = Some((due, self.timer_seq));
        io.schedule(due, TimerKey::TreeCheck(self.timer_seq));
    }
}

fn tree_gone(t: &TreeWatch, cgroups: Option<&Cgroups>) -> bool {
    if cgroups.is_some_and(|cg| !cg.is_empty(&t.name)) {
        return false;
    }
    // kill(-pgid, 0) fails with ESRCH once no process is left in the
    // group (zombies included, so reaped orphans count as gone).
    t.pgid <= 0 || kill(NixPid::from_raw(-t.pgid), None).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Events;
    use std::os::unix::process::CommandExt;

    /// The end of a tree in a cgroup is an inotify event on the loop, long
    /// before any timer (the only one is the give-up, seconds away).
    #[test]
    fn the_end_of_a_cgroup_tree_is_an_event_not_a_poll() {
        let tag = format!("iris-trees-test-{}", std::process::id());
        let cg = Cgroups::detect(Some(&tag)).expect("a writable cgroup2 hierarchy");
        let procs = cg.prepare("svc").unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        std::fs::write(&procs, pid.to_string()).unwrap();
        assert!(cg.can_kill("svc"), "this kernel has cgroup.kill");

        let mut io = Io::new().unwrap();
        let mut trees = TreeWatcher::new(&mut io, Some(&cg));
        let now = Instant::now();
        trees.watch("svc".into(), 1, pid, Some(&cg), now);
        assert!(trees.check(&mut io, Some(&cg), |_| false, now).is_empty());
        assert_eq!(
            trees.timer.map(|(at, _)| at),
            Some(now + GIVE_UP),
            "no timer but the give-up"
        );

        child.kill().unwrap();
        let mut events = Events::with_capacity(8);
        let deadline = Instant::now() + Duration::from_secs(30);
        let owner = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the end of the tree was never signalled");
            io.poll(&mut events, Some(left)).unwrap();
            if let Some(e) = events.iter().next() {
                break io.owner(e.token()).cloned();
            }
        };
        assert_eq!(owner, Some(Owner::TreeEvents));
        trees.drain_events();
        child.wait().unwrap();
        let done = trees.check(&mut io, Some(&cg), |_| false, Instant::now());
        assert_eq!(
            done,
            vec![Input::TreeEmpty {
                name: "svc".into(),
                gen: 1
            }]
        );
        assert!(trees.is_idle());
        cg.remove("svc");
        cg.cleanup(std::time::Duration::ZERO);
    }
}
