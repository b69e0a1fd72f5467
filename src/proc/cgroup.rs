//! A cgroup2 directory per service, when a cgroup2 hierarchy is mounted:
//! it holds every process of the service (daemonized grandchildren too), so
//! stop can end the whole tree with `cgroup.kill`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where the init creates service cgroups: as PID 1 the root of the
/// cgroup2 hierarchy; as a plain supervisor a subtree of its own cgroup
/// (`/sys/fs/cgroup` on pure hosts, `/sys/fs/cgroup/unified` on hybrid
/// ones) named after the instance, so two inits on one host never share a
/// service's cgroup.
#[derive(Debug, Clone)]
pub struct Cgroups {
    base: PathBuf,
    /// A subtree this init made for itself (removed when it exits).
    owned: bool,
    /// The memory controller is enabled for service cgroups (so
    /// `memory.events` exists); otherwise nothing is read for oom kills.
    memory: bool,
}

impl Cgroups {
    /// None when no cgroup2 is mounted or the init's place in it is not
    /// writable. `instance` names the subtree to create (None: use the
    /// init's own cgroup, as PID 1).
    pub fn detect(instance: Option<&str>) -> Option<Cgroups> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mount = cgroup2_mount(&mountinfo)?;
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
        let mut base = mount.join(rel.trim_start_matches('/'));
        if let Some(tag) = instance {
            base = base.join(tag);
            match fs::create_dir(&base) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(_) => return None,
            }
        } else {
            let probe = base.join(".iris-probe.service");
            let _ = fs::remove_dir(&probe);
            fs::create_dir(&probe).ok()?;
            let _ = fs::remove_dir(&probe);
        }
        // Memory accounting (oom kills in memory.events) and pid counts for
        // the services, where the hierarchy allows it (the VM's root does;
        // a hybrid host's unified tree has no controllers to give).
        let _ = fs::write(base.join("cgroup.subtree_control"), "+memory +pids");
        let memory = fs::read_to_string(base.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.split_whitespace().any(|w| w == "memory"));
        Some(Cgroups {
            base,
            owned: instance.is_some(),
            memory,
        })
    }

    /// Removes the init's own subtree and every empty service cgroup in it
    /// (at exit of a plain supervisor).
    pub fn cleanup(&self) {
        if self.owned {
            remove_empty_tree(&self.base, 0);
        }
    }

    /// A plain supervisor started again after it was killed (kill -9, OOM)
    /// finds its previous run's services still running in its subtree:
    /// those are killed and their cgroups removed before any service
    /// starts, so no service runs twice. Returns the services emptied.
    /// Waits (before the loop runs) at most `patience` for the kills.
    pub fn empty_leftovers(&self, patience: std::time::Duration) -> Vec<String> {
        if !self.owned {
            return Vec::new();
        }
        let Ok(entries) = fs::read_dir(&self.base) else {
            return Vec::new();
        };
        let names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".service"))
                    .map(str::to_string)
            })
            .collect();
        let busy: Vec<String> = names.into_iter().filter(|n| !self.is_empty(n)).collect();
        for n in &busy {
            self.kill_all(n);
        }
        let deadline = std::time::Instant::now() + patience;
        while busy.iter().any(|n| !self.is_empty(n)) && std::time::Instant::now() < deadline {
            for n in &busy {
                // Without cgroup.kill, processes forked since the last
                // round need their own signal.
                self.kill_all(n);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for n in &busy {
            self.remove(n);
        }
        busy
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

    /// No process left in the service's cgroup or below it: `cgroup.events`
    /// says `populated 0` (recursive, so a container that runc put in a
    /// child cgroup counts). Falls back to `cgroup.procs` when the file
    /// cannot be read (a missing cgroup is empty).
    pub fn is_empty(&self, service: &str) -> bool {
        match fs::read_to_string(self.path(service).join("cgroup.events")) {
            Ok(text) => !populated(&text),
            Err(_) => self.pids(service).is_empty(),
        }
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
        if !self.memory {
            return None;
        }
        let text = fs::read_to_string(self.path(service).join("memory.events")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Removes an empty service cgroup, with the empty child cgroups an OCI
    /// runtime may have left in it.
    pub fn remove(&self, service: &str) {
        remove_empty_tree(&self.path(service), 0);
    }

    /// The service's cgroup relative to the cgroup2 mount point, without a
    /// leading `/` (what an OCI runtime's `cgroupsPath` names).
    pub fn relative(&self, service: &str) -> Option<String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mount = cgroup2_mount(&mountinfo)?;
        let rel = self.path(service);
        let rel = rel.strip_prefix(&mount).ok()?;
        Some(rel.to_string_lossy().trim_matches('/').to_string())
    }

    /// The service whose cgroup holds `pid`, from `/proc/PID/cgroup`
    /// (readable while the process is a zombie).
    pub fn owner_of_pid(&self, pid: i32) -> Option<String> {
        // One read into a stack buffer: this runs for every orphan, and
        // read_to_string would add a statx and a second read.
        use std::io::Read;
        let mut buf = [0u8; 4096];
        let n = fs::File::open(format!("/proc/{pid}/cgroup"))
            .ok()?
            .read(&mut buf)
            .ok()?;
        service_of_cgroup(&String::from_utf8_lossy(buf.get(..n)?))
    }
}

/// The service named by the cgroup2 line of a `/proc/PID/cgroup` text: the
/// innermost `NAME.service` (a container's process sits in the service
/// cgroup's `container` child).
fn service_of_cgroup(text: &str) -> Option<String> {
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    rel.rsplit('/')
        .find_map(|c| c.strip_suffix(".service"))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

/// `populated 1` in the text of a `cgroup.events` file.
fn populated(events: &str) -> bool {
    events
        .lines()
        .any(|l| l.split_whitespace().eq(["populated", "1"]))
}

/// Removes `dir` and its child cgroups, deepest first; a cgroup that still
/// holds a process stays (the kernel refuses with EBUSY).
fn remove_empty_tree(dir: &Path, depth: usize) {
    // A runtime nests a cgroup or two; never walk an unbounded tree.
    if depth < 8 {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_empty_tree(&e.path(), depth + 1);
                }
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Removes the empty cgroup `rel` (relative, e.g. `web.service`) that an
/// OCI runtime made under the init's own cgroup in every cgroup v1
/// hierarchy (runc on a v1/v2 hybrid host), with its empty children.
pub fn remove_v1_leftovers(rel: &str) {
    let (Ok(mountinfo), Ok(own)) = (
        fs::read_to_string("/proc/self/mountinfo"),
        fs::read_to_string("/proc/self/cgroup"),
    ) else {
        return;
    };
    let rel = rel.trim_matches('/');
    if rel.is_empty() || rel.split('/').any(|c| c == "..") {
        return;
    }
    for (mount, own_path) in v1_hierarchies(&mountinfo, &own) {
        let dir = mount.join(own_path.trim_start_matches('/')).join(rel);
        remove_empty_tree(&dir, 0);
    }
}

/// Each cgroup v1 mount point with the init's cgroup in it, matched by the
/// controller list (`cpu,cpuacct`, `name=systemd`) of `/proc/self/cgroup`.
fn v1_hierarchies(mountinfo: &str, own: &str) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split_whitespace();
        if post.next() != Some("cgroup") {
            continue;
        }
        let (Some(mount), Some(opts)) = (pre.split_whitespace().nth(4), post.nth(1)) else {
            continue;
        };
        // Mount options that are not controllers.
        const NOT_CONTROLLERS: &[&str] = &[
            "rw",
            "ro",
            "xattr",
            "clone_children",
            "noprefix",
            "cpuset_v2_mode",
        ];
        let mut wanted: Vec<&str> = opts
            .split(',')
            .filter(|o| o.starts_with("name=") || !(o.contains('=') || NOT_CONTROLLERS.contains(o)))
            .collect();
        wanted.sort_unstable();
        let found = own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            let mut have: Vec<&str> = ctrls.split(',').filter(|c| !c.is_empty()).collect();
            have.sort_unstable();
            (!have.is_empty() && have == wanted).then(|| path.to_string())
        });
        if let Some(path) = found {
            out.push((PathBuf::from(mount), path));
        }
    }
    out
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
    fn leftovers_of_a_killed_run_are_emptied() {
        // A real cgroup2 subtree, as a plain supervisor gets one.
        let tag = format!("iris-test-leftovers-{}", std::process::id());
        let cg = Cgroups::detect(Some(&tag)).expect("a writable cgroup2 hierarchy");
        let procs = cg.prepare("old").unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap();
        fs::write(&procs, child.id().to_string()).unwrap();
        assert!(!cg.is_empty("old"));
        cg.prepare("idle").unwrap();
        let emptied = cg.empty_leftovers(std::time::Duration::from_secs(10));
        assert_eq!(emptied, ["old"]);
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(!cg.path("old").exists(), "its cgroup is gone");
        cg.cleanup();
        assert!(!cg.base().exists());
    }

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

    #[test]
    fn a_process_belongs_to_its_innermost_service_cgroup() {
        assert_eq!(
            service_of_cgroup("0::/web.service\n").as_deref(),
            Some("web")
        );
        assert_eq!(
            service_of_cgroup("4:memory:/x\n0::/init/web.service/container\n").as_deref(),
            Some("web")
        );
        assert_eq!(service_of_cgroup("0::/user.slice\n"), None);
        assert_eq!(service_of_cgroup("0::/.service\n"), None);
    }

    #[test]
    fn populated_reads_cgroup_events() {
        assert!(populated("populated 1\nfrozen 0\n"));
        assert!(!populated("populated 0\nfrozen 0\n"));
        assert!(!populated(""));
    }

    #[test]
    fn v1_hierarchies_match_the_controller_lists() {
        let mountinfo = "25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
            26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n\
            27 25 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
            28 25 0:25 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
            29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let own = "9:name=systemd:/\n4:memory:/limits/box\n2:cpuacct,cpu:/\n0::/\n";
        let found = v1_hierarchies(mountinfo, own);
        assert_eq!(
            found,
            vec![
                (PathBuf::from("/sys/fs/cgroup/systemd"), "/".to_string()),
                (
                    PathBuf::from("/sys/fs/cgroup/memory"),
                    "/limits/box".to_string()
                ),
                (PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"), "/".to_string()),
            ]
        );
    }

    #[test]
    fn removing_a_tree_keeps_nothing_empty_and_never_fails() {
        let base = std::env::temp_dir().join(format!("iris-cg-rm-{}", std::process::id()));
        std::fs::create_dir_all(base.join("web.service/container")).unwrap();
        remove_empty_tree(&base.join("web.service"), 0);
        assert!(!base.join("web.service").exists());
        remove_empty_tree(&base.join("absent"), 0);
        let _ = std::fs::remove_dir_all(&base);
    }
}
