//! An orderly shutdown: services stop dependents first, and every event
//! during it may let more of them stop, until none is active.

use super::{Action, AfterStop, Phase, Progress, Supervisor};
use std::collections::HashSet;
use std::time::Instant;

impl Supervisor {
    /// Orderly shutdown: stop every service, dependents before their needs,
    /// keeping wanted states. Ends with `Action::ShutdownComplete`.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        self.advance_shutdown(now);
    }

    /// Stops every active service none of whose dependents is still active.
    pub(super) fn advance_shutdown(&mut self, now: Instant) {
        // A service that stops without waiting (one waiting for its needs,
        // or still being spawned) may free its needs to stop in turn: go
        // round until a pass changes nothing.
        loop {
            let active: Vec<String> = self
                .services
                .values()
                .filter(|s| s.phase.is_active())
                .map(|s| s.name.clone())
                .collect();
            if active.is_empty() {
                if !self.shutdown_reported {
                    self.shutdown_reported = true;
                    self.actions.push(Action::ShutdownComplete);
                }
                return;
            }
            // Once per pass: asking "is it needed?" of every pair would
            // make a shutdown of many services cubic.
            let needed_by_active: HashSet<String> = active
                .iter()
                .filter_map(|n| self.services.get(n))
                .flat_map(|s| s.def.needs.iter().cloned())
                .collect();
            let mut settled_now = false;
            for name in &active {
                let stopping = matches!(
                    self.services.get(name).map(|s| &s.phase),
                    Some(Phase::Stopping { .. })
                );
                if !needed_by_active.contains(name) && !stopping {
                    settled_now |= self.stop_now(name, AfterStop::Rest, now) == Progress::Done;
                }
            }
            if !settled_now {
                return;
            }
        }
    }

    /// During a shutdown, every event may let more services stop.
    pub(super) fn after_event(&mut self, now: Instant) {
        if self.shutting_down {
            self.advance_shutdown(now);
        }
    }
}
