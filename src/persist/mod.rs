//! Persistence: the state file, applying it at boot and on restore, and
//! the restore report.

pub mod boot;
pub mod report;
pub mod state_file;
