//! A restore after a memory snapshot, in the contract's order: the clock,
//! the kernel's randomness and the generation first, then the services
//! (the state file applied, then each running service's `on_restore`).
//! Asked for by `POST /v1/restore`, or by the kernel's VM generation ID
//! event.

use super::event_loop::Reactor;
use crate::persist::boot::{self, RestoreSignal};
use crate::resume::request::RestoreRequest;
use nix::sys::signal::{kill, killpg};
use nix::unistd::Pid as NixPid;
use std::time::Instant;

impl Reactor {
    /// Runs every step; the report is complete (and answered) once what it
    /// started or restarted settled.
    pub(super) fn restore_now(&mut self, trigger: &'static str, body: &RestoreRequest) {
        let done = self.resumer.before_services(body);
        let now = Instant::now();
        let error = boot::reload_wanted(&self.cfg.state_file, &mut self.sup, now);
        // After a memory snapshot: dead processes are noticed first.
        self.reap();
        self.route(now);
        boot::apply(&mut self.sup, &mut self.restore, trigger, error, now);
        self.restore.resumed(done);
        for s in boot::on_restore(&mut self.sup, &mut self.restore, now) {
            self.send_restore_signal(&s);
        }
    }

    /// The kernel says the VM generation ID changed: the hypervisor resumed
    /// this VM from a snapshot. Nobody sent a time or entropy (the kernel
    /// reseeded itself from the new ID), so it is the empty-body restore.
    pub(super) fn restore_after_vmgenid(&mut self) {
        if self.sup.is_shutting_down() {
            return;
        }
        crate::info!("the VM generation ID changed: restoring");
        self.restore_now("vmgenid", &RestoreRequest::default());
    }

    fn send_restore_signal(&mut self, s: &RestoreSignal) {
        // The runtime of a container passes signals on to it; a signal to
        // its whole group would reach the container twice.
        let sent = if s.container {
            kill(NixPid::from_raw(s.pid), s.signal)
        } else {
            killpg(NixPid::from_raw(s.pgid), s.signal)
        };
        match sent {
            Ok(()) => {
                crate::info!("restore: sent {} to '{}'", s.signal, s.name);
                self.restore.signalled(&s.name);
            }
            Err(e) => self
                .restore
                .error(format!("cannot send {} to '{}': {e}", s.signal, s.name)),
        }
    }
}
