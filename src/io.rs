//! The loop's I/O handle, lent to subsystems: the poll registry, the token
//! allocator with the owner of every token, and the timers. It holds no
//! subsystem state, so a subsystem that takes `&mut Io` cannot reach into
//! another one.

use crate::core::supervisor::{Pid, Timer};
use crate::timers::Timers;
use mio::event::Source;
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

/// Who a poll token belongs to: the reactor routes each event by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The shutdown signals' signalfd.
    Signals,
    /// SIGCHLD's signalfd.
    ChildExit,
    Listener,
    /// An API connection.
    Conn,
    /// A health probe's connect.
    Probe,
    /// An `http` or `tcp` check's connection.
    Check,
    /// The notify socket of a service.
    Notify(String),
    /// A service's stdout+stderr pipe.
    Log(String),
    /// An exec's stdout (`err: false`) or stderr.
    ExecOut {
        id: u64,
        err: bool,
    },
    ExecIn {
        id: u64,
    },
    /// The error pipe of a service's child not yet seen to exec.
    Spawn {
        pid: Pid,
    },
    /// The inotify fd on stopping services' `cgroup.events`.
    TreeEvents,
    /// The kernel's uevent socket (PID 1: a new VM generation ID).
    Uevents,
}

/// What a timer is for. Cancellation is lazy: the reactor drops keys whose
/// owner no longer wants them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    Service(Timer),
    PortScan,
    /// A look at stopping trees without an event (`TreeWatcher`'s number).
    TreeCheck(u64),
    ConnSweep,
    Exec(u64),
    /// A check's timeout or next attempt (`CheckRunner`).
    Check(u64),
    /// The end of a SIGCHLD hold (see `reactor::reap`).
    Reap,
    /// A comment line for quiet events streams.
    Heartbeat,
}

pub(crate) struct Io {
    poll: Poll,
    next_token: usize,
    owners: HashMap<Token, Owner>,
    timers: Timers<TimerKey>,
}

impl Io {
    pub(crate) fn new() -> io::Result<Io> {
        Ok(Io {
            poll: Poll::new()?,
            next_token: 0,
            owners: HashMap::new(),
            timers: Timers::default(),
        })
    }

    /// A token never handed out before (tokens are not reused, so an event
    /// for a closed source finds no owner).
    fn new_token(&mut self) -> Token {
        let t = Token(self.next_token);
        self.next_token = self.next_token.wrapping_add(1);
        t
    }

    /// Registers `source` for `owner`; its events carry the returned token.
    pub(crate) fn register(
        &mut self,
        source: &mut impl Source,
        interest: Interest,
        owner: Owner,
    ) -> io::Result<Token> {
        let token = self.new_token();
        self.poll.registry().register(source, token, interest)?;
        self.owners.insert(token, owner);
        Ok(token)
    }

    pub(crate) fn reregister(
        &self,
        source: &mut impl Source,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.poll.registry().reregister(source, token, interest)
    }

    /// Stops watching `source`; its token is forgotten.
    pub(crate) fn deregister(&mut self, source: &mut impl Source, token: Token) {
        let _ = self.poll.registry().deregister(source);
        self.owners.remove(&token);
    }

    pub(crate) fn owner(&self, token: Token) -> Option<&Owner> {
        self.owners.get(&token)
    }

    pub(crate) fn schedule(&mut self, at: Instant, key: TimerKey) {
        self.timers.schedule(at, key);
    }

    pub(crate) fn poll(
        &mut self,
        events: &mut Events,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        self.poll.poll(events, timeout)
    }

    pub(crate) fn timers(&mut self) -> &mut Timers<TimerKey> {
        &mut self.timers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_never_reused_and_know_their_owner() {
        let mut io = Io::new().unwrap();
        let (mut a, _b) = mio::net::UnixStream::pair().unwrap();
        let t1 = io
            .register(&mut a, Interest::READABLE, Owner::Conn)
            .unwrap();
        assert_eq!(io.owner(t1), Some(&Owner::Conn));
        io.deregister(&mut a, t1);
        assert_eq!(io.owner(t1), None);
        let t2 = io
            .register(&mut a, Interest::READABLE, Owner::Probe)
            .unwrap();
        assert_ne!(t1, t2);
    }
}
