//! The init's signals as two file descriptors in the loop (signalfd): the
//! signals are blocked and read, never delivered to a handler. SIGCHLD has
//! a descriptor of its own, so it can be left pending on purpose: while it
//! is, the kernel coalesces every further child exit into it and wakes
//! nobody (see `reactor::reap`), and the shutdown signals still come in.

use crate::io::{Io, Owner};
use mio::unix::SourceFd;
use mio::Interest;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::io;
use std::os::fd::AsRawFd;

/// The signals the init acts on besides SIGCHLD.
const OTHERS: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGPWR,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

pub(crate) struct InitSignals {
    child: SignalFd,
    others: SignalFd,
}

impl InitSignals {
    /// Blocks the signals (children get an empty mask before they exec)
    /// and puts their descriptors in the loop: SIGCHLD as
    /// `Owner::ChildExit`, the others as `Owner::Signals`.
    pub(crate) fn new(io: &mut Io) -> io::Result<InitSignals> {
        let mut others = SigSet::empty();
        for s in OTHERS {
            others.add(s);
        }
        let mut child = SigSet::empty();
        child.add(Signal::SIGCHLD);
        // No SIGCHLD for a child that stops or continues: only exits wake
        // the loop. The disposition stays the default (not SIG_IGN, which
        // would make the kernel reap children itself).
        let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::SA_NOCLDSTOP, SigSet::empty());
        // SAFETY: installing the default disposition runs no code of ours.
        unsafe { sigaction(Signal::SIGCHLD, &dfl) }.map_err(io::Error::from)?;
        crate::proc::child::dispositions_changed();
        let all = others | child;
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None)
            .map_err(io::Error::from)?;
        let flags = SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC;
        let child = SignalFd::with_flags(&child, flags).map_err(io::Error::from)?;
        let others = SignalFd::with_flags(&others, flags).map_err(io::Error::from)?;
        let fd = child.as_raw_fd();
        io.register(&mut SourceFd(&fd), Interest::READABLE, Owner::ChildExit)?;
        let fd = others.as_raw_fd();
        io.register(&mut SourceFd(&fd), Interest::READABLE, Owner::Signals)?;
        Ok(InitSignals { child, others })
    }

    /// The shutdown signals received since the last call, in order.
    pub(crate) fn take_others(&mut self) -> Vec<i32> {
        let mut out = Vec::new();
        while let Ok(Some(info)) = self.others.read_signal() {
            out.push(info.ssi_signo as i32);
        }
        out
    }

    /// Takes SIGCHLD off the pending set: the next child exit makes the
    /// descriptor readable again (and wakes the loop).
    pub(crate) fn clear_child(&mut self) {
        while let Ok(Some(_)) = self.child.read_signal() {}
    }
}
