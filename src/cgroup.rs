//! A cgroup2 directory per service, when a cgroup2 hierarchy is mounted:
//! it holds every process of the service (daemonized grandchildren too), so
//! stop can end the whole tree with `cgroup.kill`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where the init creates service cgroups: its own cgroup in the cgroup2
/// hierarchy (`/sys/fs/cgroup` on pure hosts, `/sys/fs/cgroup/unified` on
/// hybrid ones).
#[derive(Debug, Clone)]
pub struct Cgroups {
    base: PathBuf,
}

impl Cgroups {
    /// None when no cgroup2 is mounted or the init's place in it is not
    /// writable.
    pub fn detect() -> Option<Cgroups> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mount = cgroup2_mount(&mountinfo)?;
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
        let base = mount.join(rel.trim_start_matches('/'));
        let probe = base.join(".iris-probe.service");
        let _ = fs::remove_dir(&probe);
        fs::create_dir(&probe).ok()?;
        let _ = fs::remove_dir(&probe);
        // Memory accounting (oom kills in memory.events) and pid counts for
        // the services, where the hierarchy allows it (the VM's root does;
        // a hybrid host's unified tree has no controllers to give).
        let _ = fs::write(base.join("cgroup.subtree_control"), "+memory +pids");
        Some(Cgroups { base })
    }

    pub fn at(base: PathBuf) -> Cgroups {
        Cgroups { base }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// `NAME.service` (a suffix, so no name can clash with the kernel's
    /// `cgroup.*` interface files).
    pub fn path(&self, service: &str) -> PathBuf {
        self.base.join(format!("{service}.service"))
    }

    /// Creates the service's cgroup (if needed) and returns its `cgroup.procs`.
    pub fn prepare(&self, service: &str) -> io::Result<PathBuf> {
        let p = self.path(service);
        match fs::create_dir(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Ok(p.join("cgroup.procs"))
    }

    pub fn pids(&self, service: &str) -> Vec<i32> {
        fs::read_to_string(self.path(service).join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    pub fn is_empty(&self, service: &str) -> bool {
        self.pids(service).is_empty()
    }

    /// Signals every process in the cgroup.
    pub fn signal_all(&self, service: &str, sig: nix::sys::signal::Signal) {
        for pid in self.pids(service) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    }

    /// SIGKILL to everything in the cgroup, racing forkers included
    /// (`cgroup.kill`, Linux 5.14+); a signal to each listed pid otherwise.
    pub fn kill_all(&self, service: &str) {
        if fs::write(self.path(service).join("cgroup.kill"), "1").is_err() {
            self.signal_all(service, nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// OOM kills recorded for the service (`memory.events`), when the memory
    /// controller is enabled for it.
    pub fn oom_kills(&self, service: &str) -> Option<u64> {
        let text = fs::read_to_string(self.path(service).join("memory.events")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Removes an empty service cgroup.
    pub fn remove(&self, service: &str) {
        let _ = fs::remove_dir(self.path(service));
    }

    /// The service whose cgroup holds `pid`, from `/proc/PID/cgroup`
    /// (readable while the process is a zombie).
    pub fn owner_of_pid(&self, pid: i32) -> Option<String> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
        let leaf = rel.rsplit('/').next()?;
        leaf.strip_suffix(".service").map(str::to_string)
    }
}

/// The mount point of the cgroup2 hierarchy from `/proc/self/mountinfo`.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // Fields: id parent major:minor root mountpoint options... - fstype ...
        let (pre, post) = line.split_once(" - ")?;
        let fstype = post.split_whitespace().next()?;
        (fstype == "cgroup2").then(|| pre.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_mount_in_hybrid_and_pure_layouts() {
        let hybrid = "25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n\
                      27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let pure = "30 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(pure), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(cgroup2_mount("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"), None);
    }
}
