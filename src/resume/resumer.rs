//! The resume subsystem's state: the VM generation and its file, and (as
//! PID 1) the kernel's uevent socket that announces a new VM generation ID.

use super::request::RestoreRequest;
use super::steps::{self, Host, Resumed};
use super::{generation, uevent};
use crate::io::{Io, Owner};
use mio::unix::SourceFd;
use mio::Interest;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

pub(crate) struct Resumer {
    pid1: bool,
    generation: u64,
    file: PathBuf,
    uevents: Option<OwnedFd>,
}

impl Resumer {
    /// Takes up the generation a previous run left (a plain supervisor
    /// started again on the same socket), and writes the file, so services
    /// can read it from the start.
    pub(crate) fn new(pid1: bool, socket: &Path) -> Resumer {
        let file = generation::path(pid1, socket);
        let gen = generation::read(&file);
        if let Err(e) = generation::write(&file, gen) {
            crate::warn!("unable to write {}: {e}", file.display());
        }
        Resumer {
            pid1,
            generation: gen,
            file,
            uevents: None,
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Steps 1 to 3 of a restore: the clock, the kernel's randomness, the
    /// generation. Runs before any service is touched.
    pub(crate) fn before_services(&mut self, req: &RestoreRequest) -> Resumed {
        let mut host = Host {
            generation_file: self.file.clone(),
        };
        let done = steps::run(&mut host, req, self.pid1, self.generation);
        self.generation = done.generation;
        crate::info!(
            "restore: generation {}, clock step {} ms, reseeded: {}",
            done.generation,
            done.clock_step_ms,
            done.reseeded
        );
        done
    }

    /// As PID 1, listens for the kernel's VM generation ID event (Linux's
    /// vmgenid driver, on hypervisors that offer the device). A plain
    /// supervisor leaves that to the system it runs in.
    pub(crate) fn watch_vmgenid(&mut self, io: &mut Io) {
        if !self.pid1 {
            return;
        }
        let fd = match uevent::open() {
            Ok(fd) => fd,
            Err(e) => {
                crate::warn!("no kernel uevent socket ({e}): VM generation changes go unnoticed");
                return;
            }
        };
        let raw = fd.as_raw_fd();
        match io.register(&mut SourceFd(&raw), Interest::READABLE, Owner::Uevents) {
            Ok(_) => self.uevents = Some(fd),
            Err(e) => crate::warn!("cannot watch kernel uevents: {e}"),
        }
    }

    /// The uevent socket is readable: true when the VM generation changed.
    pub(crate) fn on_uevents(&mut self) -> bool {
        let Some(fd) = &self.uevents else {
            return false;
        };
        match uevent::drain(fd) {
            Ok(changed) => changed,
            Err(e) => {
                crate::warn!("reading kernel uevents: {e}");
                false
            }
        }
    }
}
