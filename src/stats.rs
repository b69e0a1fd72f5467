//! Counters the init keeps about itself and its services, shown by the API.

use std::collections::HashMap;
use std::time::Instant;

pub(crate) struct Stats {
    pub started: Instant,
    pub zombies_reaped: u64,
    pub pid1: bool,
    pub state_writes: u64,
    pub last_state_write_us: u64,
    /// Orphans reaped, by the service whose cgroup they died in.
    pub orphans_by_service: HashMap<String, u64>,
    /// OOM kills of each service's cgroup before its current run.
    pub oom_base: HashMap<String, u64>,
}

impl Stats {
    pub(crate) fn new(pid1: bool) -> Stats {
        Stats {
            started: Instant::now(),
            zombies_reaped: 0,
            pid1,
            state_writes: 0,
            last_state_write_us: 0,
            orphans_by_service: HashMap::new(),
            oom_base: HashMap::new(),
        }
    }
}
