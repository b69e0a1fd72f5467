//! What a definition must meet to be taken: the limits on services and on
//! the depth of `needs`, and no cycle; and the generations a new service
//! starts from.

use super::deps::{self, DepError, WithNeeds};
use super::{Service, Source, SupError, Supervisor};
use crate::core::bounds;
use crate::core::definition::Definition;

impl Supervisor {
    pub(super) fn new_service(&mut self, name: &str, def: Definition, source: Source) -> Service {
        self.created = self.created.wrapping_add(1);
        let mut svc = Service::new(name, def, source);
        svc.gen = self.created << 32;
        svc
    }

    /// Refuses a definition that would break a limit or close a cycle.
    pub(super) fn check_upsert(&self, name: &str, def: &Definition) -> Result<(), SupError> {
        if !self.services.contains_key(name) && self.services.len() >= bounds::MAX_SERVICES {
            return Err(SupError::Conflict(format!(
                "cannot define '{name}': the init holds at most {} services",
                bounds::MAX_SERVICES
            )));
        }
        let graph = WithNeeds {
            base: &self.services,
            name,
            needs: &def.needs,
        };
        if let Some(cycle) = deps::find_cycle(&graph, name) {
            return Err(SupError::Conflict(DepError::Cycle(cycle).to_string()));
        }
        deps::check_depth_through(&graph, name, bounds::MAX_NEEDS_DEPTH)
            .map_err(|e| SupError::Conflict(format!("cannot define '{name}': {e}")))
    }
}
