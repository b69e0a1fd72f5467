//! Processes: spawning, reaping, cgroups, launching services and waiting
//! for their trees to be gone.

pub(crate) mod cgroup;
pub(crate) mod child;
pub(crate) mod clone;
pub(crate) mod launcher;
pub(crate) mod rawsys;
pub(crate) mod reaper;
pub mod spawn;
pub(crate) mod trees;
