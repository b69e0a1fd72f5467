//! Processes: spawning, reaping, cgroups, launching services and waiting
//! for their trees to be gone.

pub mod cgroup;
pub mod child;
pub(crate) mod launcher;
pub mod reaper;
pub mod spawn;
pub(crate) mod trees;
