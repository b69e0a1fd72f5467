//! Persistence: the state file, applying it at boot and on restore, and
//! the restore report.

pub(crate) mod boot;
pub(crate) mod report;
pub mod state_file;
