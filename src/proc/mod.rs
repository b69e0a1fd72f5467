//! Processes: spawning, reaping, cgroups, and launching services.

pub mod cgroup;
pub mod child;
pub mod launcher;
pub mod reaper;
pub mod spawn;
