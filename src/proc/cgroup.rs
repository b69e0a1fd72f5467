//! A cgroup2 directory per service, when a cgroup2 hierarchy is mounted:
//! it holds every process of the service (daemonized grandchildren too), so
//! stop can end the whole tree with `cgroup.kill`.

use crate::core::limits::Limits;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Controllers enabled for every service cgroup where the hierarchy
/// allows: oom kills and memory use, and process counts. `cpu` is enabled
/// only once a limit needs it (it changes how CPU time is shared).
const ACCOUNTING: [&str; 2] = ["memory", "pids"];

/// Where the init creates service cgroups: as PID 1 the root of the
/// cgroup2 hierarchy; as a plain supervisor a subtree of its own cgroup
/// (`/sys/fs/cgroup` on pure hosts, `/sys/fs/cgroup/unified` on hybrid
/// ones) named after the instance, so two inits on one host never share a
/// service's cgroup.
#[derive(Debug, Clone)]
pub struct Cgroups {
    /// The cgroup2 mount point (the top level of the hierarchy).
    mount: PathBuf,
    base: PathBuf,
    /// A subtree this init made for itself (removed when it exits).
    owned: bool,
    /// The memory controller is enabled for service cgroups (so
    /// `memory.events` exists); otherwise nothing is read for oom kills.
    memory: bool,
    /// The pids controller is enabled for service cgroups (`pids.current`).
    pids: bool,
    /// The limits written to each service's cgroup in this run: a restart
    /// with the same ones writes nothing (no file is touched on the way to
    /// the new process).
    applied: RefCell<HashMap<String, Option<Limits>>>,
}

/// A service's resource use, read from its cgroup. A field is None when
/// its controller is not enabled for the service (`cpu_usec` comes from
/// `cpu.stat`, which every cgroup2 has).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub memory_bytes: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    pub cpu_usec: Option<u64>,
    pub pids: Option<u64>,
}

/// Why a service's limits cannot be applied: the controller that is
/// missing (or refused a value) and why. A start with limits fails with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError {
    pub controller: &'static str,
    pub reason: String,
}

impl std::fmt::Display for LimitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot apply limits: the {} controller {}",
            self.controller, self.reason
        )
    }
}

impl std::error::Error for LimitError {}

/// The error for limits on a system where the init has no cgroup2 at all
/// (Ok when the limits need no controller).
pub fn limits_without_cgroups(limits: &Limits) -> Result<(), LimitError> {
    match limits.controllers().first() {
        Some(&controller) => Err(LimitError {
            controller,
            reason: "is not available: the init has no cgroup2 hierarchy to put limits in".into(),
        }),
        None => Ok(()),
    }
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
        let mut cg = Cgroups {
            mount,
            base,
            owned: instance.is_some(),
            memory: false,
            pids: false,
            applied: RefCell::default(),
        };
        // Memory accounting (oom kills in memory.events) and pid counts for
        // the services, where the hierarchy allows it (the VM's root does;
        // a hybrid host's unified tree has no controllers to give).
        for c in ACCOUNTING {
            let _ = cg.enable(c);
        }
        cg.refresh_enabled();
        Some(cg)
    }

    /// Notes which accounting controllers the service cgroups have.
    fn refresh_enabled(&mut self) {
        let enabled =
            fs::read_to_string(self.base.join("cgroup.subtree_control")).unwrap_or_default();
        let has = |c: &str| enabled.split_whitespace().any(|w| w == c);
        self.memory = has("memory");
        self.pids = has("pids");
    }

    /// The cgroups from the top of the hierarchy down to `base`, the
    /// parent of the service cgroups: each must pass a controller down.
    fn levels(&self) -> Vec<PathBuf> {
        let mut out = vec![self.mount.clone()];
        if let Ok(rel) = self.base.strip_prefix(&self.mount) {
            let mut at = self.mount.clone();
            for part in rel.components() {
                at.push(part);
                out.push(at.clone());
            }
        }
        out
    }

    /// Enables `controller` for the service cgroups: in the
    /// `cgroup.subtree_control` of every level down to their parent
    /// (written only where it is missing).
    fn enable(&self, controller: &'static str) -> Result<(), LimitError> {
        for level in self.levels() {
            let control = level.join("cgroup.subtree_control");
            let enabled = fs::read_to_string(&control).unwrap_or_default();
            if enabled.split_whitespace().any(|w| w == controller) {
                continue;
            }
            let offered = fs::read_to_string(level.join("cgroup.controllers")).unwrap_or_default();
            if !offered.split_whitespace().any(|w| w == controller) {
                let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
                return Err(LimitError {
                    controller,
                    reason: not_offered(&level, &offered, controller, &own),
                });
            }
            if let Err(e) = fs::write(&control, format!("+{controller}")) {
                let why = if e.raw_os_error() == Some(libc::EBUSY) {
                    " (it holds processes, and a cgroup with processes cannot pass a controller to children unless it is the root: run the init as PID 1, or in a cgroup of its own)".to_string()
                } else {
                    format!(": {e}")
                };
                return Err(LimitError {
                    controller,
                    reason: format!("cannot be enabled in {}{why}", level.display()),
                });
            }
        }
        Ok(())
    }

    /// Writes the service's limits into its cgroup (made by [`prepare`]
    /// beforehand), before any of its processes runs in it: enables the
    /// controllers the limits need, sets every limit file (the kernel's
    /// default where there is no limit, so a replaced definition leaves
    /// nothing behind) and `memory.oom.group`. A limit that cannot be set
    /// is an error naming its controller; resetting a file of a missing
    /// controller is not.
    ///
    /// [`prepare`]: Cgroups::prepare
    pub fn apply_limits(&self, service: &str, limits: &Limits) -> Result<(), LimitError> {
        for c in limits.controllers() {
            self.enable(c)?;
        }
        let dir = self.path(service);
        for w in limits.cgroup_writes() {
            let file = dir.join(w.file);
            // cgroupfs answers EACCES, not ENOENT, for a file it lacks.
            if !file.exists() {
                if w.required {
                    return Err(LimitError {
                        controller: w.controller,
                        reason: format!("is not enabled for {} (no {})", dir.display(), w.file),
                    });
                }
                continue;
            }
            match fs::write(&file, &w.value) {
                Ok(()) => {}
                Err(_) if !w.required => {}
                Err(e) => {
                    return Err(LimitError {
                        controller: w.controller,
                        reason: format!("refused {} = {:?}: {e}", w.file, w.value),
                    })
                }
            }
        }
        Ok(())
    }

    /// Before a service's process runs: its cgroup made and its `limits`
    /// written. A cgroup that exists from an earlier run gets the defaults
    /// back when the definition has no limits any more; a new one needs
    /// nothing (the launcher makes it).
    pub fn limit(&self, service: &str, limits: Option<&Limits>) -> Result<(), LimitError> {
        if self.applied.borrow().get(service) == Some(&limits.cloned()) {
            return Ok(());
        }
        self.limit_now(service, limits)?;
        self.applied
            .borrow_mut()
            .insert(service.to_string(), limits.cloned());
        Ok(())
    }

    fn limit_now(&self, service: &str, limits: Option<&Limits>) -> Result<(), LimitError> {
        let existed = self.path(service).exists();
        if limits.is_none() && !existed {
            return Ok(());
        }
        if let Err(e) = self.prepare(service) {
            if let Some(controller) = limits.and_then(|l| l.controllers().first().copied()) {
                return Err(LimitError {
                    controller,
                    reason: format!(
                        "has no cgroup to limit: {} cannot be made: {e}",
                        self.path(service).display()
                    ),
                });
            }
            return Ok(());
        }
        self.apply_limits(service, limits.unwrap_or(&Limits::default()))
    }

    /// The service's resource use; None when it has no cgroup (never
    /// started, or removed).
    pub fn usage(&self, service: &str) -> Option<Usage> {
        let dir = self.path(service);
        let cpu = fs::read_to_string(dir.join("cpu.stat")).ok()?;
        let number = |file: &str| -> Option<u64> {
            fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
        };
        Some(Usage {
            memory_bytes: if self.memory {
                number("memory.current")
            } else {
                None
            },
            memory_peak_bytes: if self.memory {
                number("memory.peak")
            } else {
                None
            },
            cpu_usec: stat_value(&cpu, "usage_usec"),
            pids: if self.pids {
                number("pids.current")
            } else {
                None
            },
        })
    }

    /// At the clean exit of a plain supervisor (its services stopped):
    /// removes its own subtree, deepest first, with the service cgroups in
    /// it and the cgroups an OCI runtime nested in them; with runc on a
    /// v1/v2 hybrid, the same subtree in every cgroup v1 hierarchy too. A
    /// cgroup that still holds a process stays, with a warning naming it;
    /// one that may be dying (an exec killed just before) gets up to
    /// `patience`. Returns the cgroups kept (the innermost ones).
    pub fn cleanup(&self, patience: std::time::Duration) -> Vec<PathBuf> {
        if !self.owned {
            return Vec::new();
        }
        let rel = self
            .base
            .strip_prefix(&self.mount)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default();
        let deadline = std::time::Instant::now() + patience;
        let kept = loop {
            let mut kept = remove_empty_tree(&self.base, 0);
            kept.extend(remove_v1_leftovers(&rel));
            if kept.is_empty() || std::time::Instant::now() >= deadline {
                break kept;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        for (dir, why) in &kept {
            crate::warn!("cgroup {} is left behind: {why}", dir.display());
        }
        kept.into_iter().map(|(dir, _)| dir).collect()
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

    /// Service cgroups in `base`, a plain directory (for tests).
    #[cfg(test)]
    pub fn at(base: PathBuf) -> Cgroups {
        Cgroups {
            mount: base.clone(),
            base,
            owned: false,
            memory: true,
            pids: true,
            applied: RefCell::default(),
        }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// `NAME.service` (a suffix, so no name can clash with the kernel's
    /// `cgroup.*` interface files).
    pub fn path(&self, service: &str) -> PathBuf {
        self.base.join(format!("{service}.service"))
    }

    /// Replaces an empty cgroup the service has from before this init ran
    /// (an init that was killed leaves them) with a new one: its counters
    /// (`memory.events`, `memory.peak`) then speak of this init's runs, and
    /// its children can be cloned straight into it (see `kill_all`). A
    /// cgroup that still holds processes is kept.
    pub fn renew(&self, service: &str) {
        self.applied.borrow_mut().remove(service);
        // One rmdir: the kernel refuses a cgroup that holds a process or
        // a child cgroup, and there is nothing to remove for a new service.
        let _ = fs::remove_dir(self.path(service));
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

    /// The processes in the service's cgroup, as pids of the init's PID
    /// namespace.
    pub fn pids(&self, service: &str) -> Vec<i32> {
        fs::read_to_string(self.path(service).join("cgroup.procs"))
            .map(|s| procs_pids(&s))
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

    /// The service's cgroup has `cgroup.kill` (Linux 5.14+), which also
    /// kills what forks while it runs.
    pub fn can_kill(&self, service: &str) -> bool {
        self.path(service).join("cgroup.kill").exists()
    }

    /// SIGKILL to everything in the cgroup, racing forkers included
    /// (`cgroup.kill`, Linux 5.14+); a signal to each listed pid otherwise.
    /// Nothing for an empty cgroup: a kill there would change nothing, and
    /// Linux 6.14 to at least 6.18 kill every child later cloned straight
    /// into a cgroup that was ever `cgroup.kill`ed (see `proc::clone`).
    pub fn kill_all(&self, service: &str) {
        if self.is_empty(service) {
            return;
        }
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
        stat_value(&text, "oom_kill")
    }

    /// Removes an empty service cgroup, with the empty child cgroups an OCI
    /// runtime may have left in it.
    pub fn remove(&self, service: &str) {
        self.applied.borrow_mut().remove(service);
        let _ = remove_empty_tree(&self.path(service), 0);
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

/// The pids in the text of a `cgroup.procs` file. A process outside the
/// reader's PID namespace is listed as 0, and kill(0) would signal the
/// init's own process group: such entries are left out.
fn procs_pids(text: &str) -> Vec<i32> {
    text.lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|&p: &i32| p > 0)
        .collect()
}

/// The value of `key` in a flat keyed file (`cpu.stat`, `memory.events`).
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// Why `controller` is not in a level's `cgroup.controllers`: on a v1/v2
/// hybrid it is attached to a v1 hierarchy (`/proc/self/cgroup` has a line
/// naming it), otherwise the level above does not pass it down.
fn not_offered(level: &Path, offered: &str, controller: &str, own: &str) -> String {
    let offered = match offered.trim() {
        "" => "none".to_string(),
        o => o.to_string(),
    };
    let in_v1 = own.lines().any(|l| {
        let mut f = l.splitn(3, ':');
        f.nth(1)
            .is_some_and(|ctrls| ctrls.split(',').any(|c| c == controller))
    });
    let why = if in_v1 {
        format!(": this host attaches {controller} to a cgroup v1 hierarchy")
    } else {
        String::new()
    };
    format!(
        "is not available to the init: {} offers only {offered}{why}",
        level.display()
    )
}

/// `populated 1` in the text of a `cgroup.events` file.
fn populated(events: &str) -> bool {
    events
        .lines()
        .any(|l| l.split_whitespace().eq(["populated", "1"]))
}

/// Removes `dir` and its child cgroups, deepest first. A cgroup that still
/// holds a process stays (the kernel refuses with EBUSY), and so does every
/// cgroup above it: returns the innermost ones kept, each with why (a
/// missing `dir` is nothing kept).
fn remove_empty_tree(dir: &Path, depth: usize) -> Vec<(PathBuf, String)> {
    let mut kept = Vec::new();
    // A runtime nests a cgroup or two; never walk an unbounded tree.
    if depth < 8 {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    kept.extend(remove_empty_tree(&e.path(), depth + 1));
                }
            }
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        // Held up by a child kept, which is the one to name.
        Err(_) if !kept.is_empty() => {}
        Err(e) => kept.push((dir.to_path_buf(), why_kept(dir, &e))),
    }
    kept
}

/// Why the kernel refused to remove the cgroup `dir`, for a warning.
fn why_kept(dir: &Path, e: &io::Error) -> String {
    let pids = fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| procs_pids(&s))
        .unwrap_or_default();
    if pids.is_empty() {
        return e.to_string();
    }
    let list: Vec<String> = pids.iter().take(10).map(i32::to_string).collect();
    let more = if pids.len() > 10 { ", ..." } else { "" };
    format!("it still holds pid {}{more}", list.join(", "))
}

/// Removes the empty cgroup `rel` (relative, e.g. `web.service`) that an
/// OCI runtime made under the init's own cgroup in every cgroup v1
/// hierarchy (runc on a v1/v2 hybrid host), with its empty children.
/// Returns the cgroups kept (see `remove_empty_tree`).
pub fn remove_v1_leftovers(rel: &str) -> Vec<(PathBuf, String)> {
    let (Ok(mountinfo), Ok(own)) = (
        fs::read_to_string("/proc/self/mountinfo"),
        fs::read_to_string("/proc/self/cgroup"),
    ) else {
        return Vec::new();
    };
    let rel = rel.trim_matches('/');
    if rel.is_empty() || rel.split('/').any(|c| c == "..") {
        return Vec::new();
    }
    let mut kept = Vec::new();
    for (mount, own_path) in v1_hierarchies(&mountinfo, &own) {
        let dir = mount.join(own_path.trim_start_matches('/')).join(rel);
        kept.extend(remove_empty_tree(&dir, 0));
    }
    kept
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
        cg.cleanup(std::time::Duration::ZERO);
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
    fn processes_of_another_pid_namespace_are_not_listed() {
        // cgroup.procs read from a PID namespace shows 0 for a process
        // outside it; signalling pid 0 would hit the init's own group.
        assert_eq!(procs_pids("12\n0\n7\n0\n"), vec![12, 7]);
        assert_eq!(procs_pids(""), Vec::<i32>::new());
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

    /// A directory shaped like a cgroup2 level whose children get the
    /// files of `controllers`, with one service cgroup `svc.service`.
    fn fake_hierarchy(tag: &str, controllers: &str, files: &[&str]) -> (PathBuf, Cgroups) {
        let base = std::env::temp_dir().join(format!("iris-cg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("svc.service")).unwrap();
        std::fs::write(base.join("cgroup.controllers"), controllers).unwrap();
        std::fs::write(base.join("cgroup.subtree_control"), controllers).unwrap();
        for f in files {
            std::fs::write(base.join("svc.service").join(f), "0\n").unwrap();
        }
        (base.clone(), Cgroups::at(base))
    }

    fn limits(json: &str) -> Limits {
        serde_json::from_str(json).unwrap()
    }

    /// A restart with the limits its cgroup already has in this run
    /// touches no file on the way to the new process; new limits (a PUT
    /// between two starts), or a renewed cgroup, are written.
    #[test]
    fn a_restart_writes_only_limits_that_changed() {
        let files = ["memory.max", "memory.high", "memory.oom.group", "pids.max"];
        let (base, cg) = fake_hierarchy("again", "memory pids", &files);
        let read = |f: &str| std::fs::read_to_string(base.join("svc.service").join(f)).unwrap();
        let mark = |f: &str| std::fs::write(base.join("svc.service").join(f), "mark").unwrap();
        let first = limits(r#"{"pids_max":64}"#);
        cg.limit("svc", Some(&first)).unwrap();
        assert_eq!(read("pids.max"), "64");
        mark("pids.max");
        cg.limit("svc", Some(&first)).unwrap();
        assert_eq!(read("pids.max"), "mark", "the same limits again: no write");
        cg.limit("svc", Some(&limits(r#"{"pids_max":32}"#)))
            .unwrap();
        assert_eq!(read("pids.max"), "32", "changed limits are written");
        cg.limit("svc", None).unwrap();
        assert_eq!(read("pids.max"), "max", "limits dropped: defaults back");
        mark("pids.max");
        cg.renew("svc");
        // The fake cgroup holds files, so renew's rmdir leaves it; what it
        // forgets is that its limits were written.
        cg.limit("svc", None).unwrap();
        assert_eq!(read("pids.max"), "max", "after a renew: written again");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn limits_go_into_the_service_files_before_it_runs() {
        let files = [
            "memory.max",
            "memory.high",
            "memory.oom.group",
            "pids.max",
            "cpu.stat",
        ];
        let (base, cg) = fake_hierarchy("apply", "memory pids", &files);
        cg.apply_limits("svc", &limits(r#"{"memory_max":"32M","pids_max":64}"#))
            .unwrap();
        let read = |f: &str| std::fs::read_to_string(base.join("svc.service").join(f)).unwrap();
        assert_eq!(read("memory.max"), "33554432");
        assert_eq!(read("memory.high"), "max");
        assert_eq!(read("memory.oom.group"), "1");
        assert_eq!(read("pids.max"), "64");
        // No cpu limit, no cpu controller: nothing to reset, no error.
        assert!(!base.join("svc.service/cpu.max").exists());
        // A later definition without limits puts the defaults back.
        cg.apply_limits("svc", &Limits::default()).unwrap();
        assert_eq!(read("memory.max"), "max");
        assert_eq!(read("memory.oom.group"), "0");
        assert_eq!(read("pids.max"), "max");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_limit_whose_controller_is_missing_fails_naming_it() {
        let (base, cg) = fake_hierarchy("missing", "memory pids", &["memory.max"]);
        let e = cg
            .apply_limits("svc", &limits(r#"{"cpu_max":0.5}"#))
            .unwrap_err();
        assert_eq!(e.controller, "cpu");
        assert!(e.to_string().contains("cpu controller"), "{e}");
        assert!(e.reason.contains("offers only memory pids"), "{e}");
        // Offered by the level but the service cgroup lacks the files.
        let e = cg
            .apply_limits("svc", &limits(r#"{"pids_max":5}"#))
            .unwrap_err();
        assert_eq!(e.controller, "pids");
        assert!(e.reason.contains("pids.max"), "{e}");
        let none = limits_without_cgroups(&limits(r#"{"memory_high":"1G"}"#)).unwrap_err();
        assert_eq!(none.controller, "memory");
        assert!(limits_without_cgroups(&Limits::default()).is_ok());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn enabling_writes_each_missing_level() {
        let (base, cg) = fake_hierarchy("enable", "memory pids cpu", &[]);
        std::fs::write(base.join("cgroup.subtree_control"), "memory").unwrap();
        cg.enable("cpu").unwrap();
        // The kernel takes "+cpu" and lists it; the fake keeps the write.
        let control = std::fs::read_to_string(base.join("cgroup.subtree_control")).unwrap();
        assert_eq!(control, "+cpu");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn usage_reads_what_the_controllers_give() {
        let (base, cg) = fake_hierarchy("usage", "memory pids", &[]);
        let svc = base.join("svc.service");
        assert_eq!(cg.usage("svc"), None, "no cpu.stat: no cgroup");
        std::fs::write(svc.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        std::fs::write(svc.join("memory.current"), "4096\n").unwrap();
        std::fs::write(svc.join("memory.peak"), "8192\n").unwrap();
        std::fs::write(svc.join("pids.current"), "3\n").unwrap();
        assert_eq!(
            cg.usage("svc"),
            Some(Usage {
                memory_bytes: Some(4096),
                memory_peak_bytes: Some(8192),
                cpu_usec: Some(1500),
                pids: Some(3),
            })
        );
        let no_memory = Cgroups {
            memory: false,
            pids: false,
            applied: RefCell::default(),
            ..cg
        };
        let u = no_memory.usage("svc").unwrap();
        assert_eq!(
            (u.memory_bytes, u.pids, u.cpu_usec),
            (None, None, Some(1500))
        );
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_controller_held_by_cgroup_v1_is_said_so() {
        let own = "8:pids:/\n4:memory:/x\n0::/\n";
        let why = not_offered(
            Path::new("/sys/fs/cgroup/unified"),
            "hugetlb\n",
            "memory",
            own,
        );
        assert!(why.contains("offers only hugetlb"), "{why}");
        assert!(why.contains("cgroup v1"), "{why}");
        let why = not_offered(Path::new("/sys/fs/cgroup/a"), "", "cpu", "0::/a\n");
        assert!(
            why.contains("offers only none") && !why.contains("v1"),
            "{why}"
        );
    }

    #[test]
    fn levels_run_from_the_mount_down_to_the_base() {
        let cg = Cgroups {
            mount: PathBuf::from("/sys/fs/cgroup"),
            base: PathBuf::from("/sys/fs/cgroup/a/b"),
            owned: false,
            memory: false,
            pids: false,
            applied: RefCell::default(),
        };
        assert_eq!(
            cg.levels(),
            ["/sys/fs/cgroup", "/sys/fs/cgroup/a", "/sys/fs/cgroup/a/b"].map(PathBuf::from)
        );
        let root = Cgroups {
            base: PathBuf::from("/sys/fs/cgroup/"),
            applied: RefCell::default(),
            ..cg
        };
        assert_eq!(root.levels(), [PathBuf::from("/sys/fs/cgroup")]);
    }

    #[test]
    fn removing_a_tree_keeps_nothing_empty_and_never_fails() {
        let base = std::env::temp_dir().join(format!("iris-cg-rm-{}", std::process::id()));
        std::fs::create_dir_all(base.join("web.service/container")).unwrap();
        assert_eq!(remove_empty_tree(&base.join("web.service"), 0), []);
        assert!(!base.join("web.service").exists());
        assert_eq!(remove_empty_tree(&base.join("absent"), 0), []);
        let _ = std::fs::remove_dir_all(&base);
    }

    /// The exit removes the whole subtree, nested cgroups too, except a
    /// cgroup that holds a process: that one (not the levels above it) is
    /// named, and goes at a later cleanup once it is empty.
    #[test]
    fn cleanup_removes_the_subtree_but_a_busy_cgroup() {
        let tag = format!("iris-cg-cleanup-test-{}", std::process::id());
        let cg = Cgroups::detect(Some(&tag)).expect("a writable cgroup2 hierarchy");
        cg.prepare("idle").unwrap();
        fs::create_dir_all(cg.path("idle").join("container/inner")).unwrap();
        cg.prepare("busy").unwrap();
        let busy = cg.path("busy").join("container");
        fs::create_dir(&busy).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap();
        fs::write(busy.join("cgroup.procs"), child.id().to_string()).unwrap();
        let kept = cg.cleanup(std::time::Duration::ZERO);
        assert_eq!(kept, std::slice::from_ref(&busy));
        assert!(
            !cg.path("idle").exists(),
            "the idle service went, nested too"
        );
        assert!(cg.base().exists(), "kept above the busy cgroup");
        let why = why_kept(&busy, &io::Error::from_raw_os_error(libc::EBUSY));
        assert_eq!(why, format!("it still holds pid {}", child.id()));
        let _ = child.kill();
        child.wait().unwrap();
        assert!(cg.cleanup(std::time::Duration::from_secs(5)).is_empty());
        assert!(!cg.base().exists());
    }

    /// An empty cgroup left from before is replaced (a new directory: new
    /// counters), one that holds a process is kept; a kill of an empty
    /// cgroup is no kill.
    #[test]
    fn an_old_empty_cgroup_is_renewed_and_a_busy_one_kept() {
        use std::os::unix::fs::MetadataExt;
        let tag = format!("iris-cg-renew-test-{}", std::process::id());
        let cg = Cgroups::detect(Some(&tag)).expect("a writable cgroup2 hierarchy");
        let ino = |name: &str| std::fs::metadata(cg.path(name)).unwrap().ino();
        cg.prepare("idle").unwrap();
        let before = ino("idle");
        cg.kill_all("idle");
        cg.renew("idle");
        cg.prepare("idle").unwrap();
        assert_ne!(ino("idle"), before, "a new cgroup");

        let procs = cg.prepare("busy").unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap();
        std::fs::write(&procs, child.id().to_string()).unwrap();
        let before = ino("busy");
        cg.renew("busy");
        assert_eq!(ino("busy"), before, "kept while it holds a process");
        cg.kill_all("busy");
        child.wait().unwrap();
        cg.remove("idle");
        cg.remove("busy");
        cg.cleanup(std::time::Duration::ZERO);
    }
}
