//! Where the container subsystem runs: which OCI runtime, the store and run
//! directories, registries pulled without TLS, and whether `/` is the initramfs.

use std::fs;
use std::path::{Path, PathBuf};

use crate::proc::spawn::find_on_init_path;

/// Environment variable naming the OCI runtime: `crun`, `runc`, a path, or
/// `auto` (the default, see [`choose_runtime`]).
pub const RUNTIME_ENV: &str = "IRIS_OCI_RUNTIME";
/// Environment variable listing registries that speak plain HTTP (or have
/// untrusted certificates): `host:port,host,...`. A bare host matches any
/// port. Loopback registries are always allowed.
pub const INSECURE_ENV: &str = "IRIS_INSECURE_REGISTRIES";

// ---------------------------------------------------------------- settings

/// Which command-line dialect the runtime speaks (they differ in a flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    Crun,
    /// runc and runc-compatible runtimes.
    Runc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSettings {
    /// `crun`, `runc` or a path to one of them.
    pub runtime: String,
    /// Image store and bundles (under the state directory). Absolute.
    pub store_dir: PathBuf,
    /// Runtime state (`--root`) and pid files: a tmpfs such as `/run/...`,
    /// so a reboot forgets containers that a reboot killed. Absolute.
    pub run_dir: PathBuf,
    /// Registries pulled over plain HTTP / without TLS verification.
    pub insecure_registries: Vec<String>,
    /// Pass `--no-pivot` to `run` (needed when `/` is the initramfs rootfs,
    /// where `pivot_root` fails with EINVAL).
    pub no_pivot: bool,
}

impl ContainerSettings {
    /// Settings from the environment ([`RUNTIME_ENV`], [`INSECURE_ENV`]) and
    /// from this system (cgroup layout, tools on `PATH`, root filesystem).
    pub fn from_env(store_dir: &Path, run_dir: &Path) -> Self {
        let explicit = std::env::var(RUNTIME_ENV).ok();
        let runtime = choose_runtime(explicit.as_deref(), Path::new("/sys/fs/cgroup"), &|n| {
            find_on_init_path(n).is_ok()
        });
        let insecure = std::env::var(INSECURE_ENV).unwrap_or_default();
        let no_pivot = fs::read_to_string("/proc/self/mountinfo")
            .map(|m| root_is_initramfs(&m))
            .unwrap_or(false);
        ContainerSettings {
            runtime,
            store_dir: absolute(store_dir),
            run_dir: absolute(run_dir),
            insecure_registries: parse_insecure_list(&insecure),
            no_pivot,
        }
    }

    pub fn runtime_kind(&self) -> RuntimeKind {
        let name = Path::new(&self.runtime)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        if name.starts_with("crun") {
            RuntimeKind::Crun
        } else {
            RuntimeKind::Runc
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The runtime to use. An explicit choice (anything but empty or `auto`)
/// wins. Otherwise crun on a pure cgroup2 system (the VM), runc on cgroup v1
/// or a v1/v2 hybrid, where crun 1.8 refuses to run ("cgroups in hybrid mode
/// not supported"); whichever of the two is installed when only one is.
pub fn choose_runtime(
    explicit: Option<&str>,
    cgroup_root: &Path,
    installed: &dyn Fn(&str) -> bool,
) -> String {
    if let Some(e) = explicit.map(str::trim) {
        if !e.is_empty() && e != "auto" {
            return e.to_string();
        }
    }
    let pure_v2 = cgroup_root.join("cgroup.controllers").exists();
    let [first, second] = if pure_v2 {
        ["crun", "runc"]
    } else {
        ["runc", "crun"]
    };
    let pick = if !installed(first) && installed(second) {
        second
    } else {
        first
    };
    pick.to_string()
}

/// Parses `host:port,host, ...` (spaces and empty items ignored).
pub fn parse_insecure_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| h.to_ascii_lowercase())
        .collect()
}

/// True when `/` is the initramfs `rootfs` (from `/proc/self/mountinfo`
/// text), where runtimes need `--no-pivot`.
pub fn root_is_initramfs(mountinfo: &str) -> bool {
    // The last mount on "/" is the visible one.
    let mut fstype = None;
    for line in mountinfo.lines() {
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            continue;
        };
        if left.split(' ').nth(4) == Some("/") {
            fstype = right.split(' ').next();
        }
    }
    fstype == Some("rootfs")
}

/// Whether a registry host (`host` or `host:port`) is pulled without TLS
/// verification (which lets skopeo fall back to plain HTTP): loopback
/// always, since it never leaves the machine; others when listed.
pub fn is_insecure(s: &ContainerSettings, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let bare = strip_port(&host);
    let v4_loopback = bare
        .parse::<std::net::Ipv4Addr>()
        .is_ok_and(|a| a.is_loopback());
    if bare == "localhost" || bare == "[::1]" || v4_loopback {
        return true;
    }
    s.insecure_registries
        .iter()
        .any(|e| *e == host || (!has_port(e) && e == bare))
}

fn has_port(host: &str) -> bool {
    strip_port(host) != host
}

fn strip_port(host: &str) -> &str {
    // "[::1]:5000" -> "[::1]"; "h:5000" -> "h"; "h" -> "h".
    let search_from = host.rfind(']').unwrap_or(0);
    match host.get(search_from..).and_then(|t| t.rfind(':')) {
        Some(i) => host.get(..search_from + i).unwrap_or(host),
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::test_support::{settings, tmpdir};

    #[test]
    fn loopback_and_listed_registries_skip_tls() {
        let s = settings(Path::new("/x"));
        assert!(is_insecure(&s, "127.0.0.1:5000"));
        assert!(is_insecure(&s, "localhost"));
        assert!(is_insecure(&s, "[::1]:5000"));
        assert!(is_insecure(&s, "127.0.0.2:80"));
        assert!(!is_insecure(&s, "127.example:5000"), "a name, not loopback");
        assert!(is_insecure(&s, "reg.example:5000"));
        assert!(!is_insecure(&s, "reg.example:5001"));
        assert!(is_insecure(&s, "plain.example:1234"));
        assert!(is_insecure(&s, "PLAIN.example"));
        assert!(!is_insecure(&s, "docker.io"));
        assert_eq!(parse_insecure_list(" a:1, ,B "), vec!["a:1", "b"]);
    }

    #[test]
    fn runtime_choice_follows_the_cgroup_layout() {
        let dir = tmpdir("cg");
        let both = |_: &str| true;
        assert_eq!(choose_runtime(None, &dir, &both), "runc", "v1/hybrid: runc");
        fs::write(dir.join("cgroup.controllers"), "cpu memory\n").unwrap();
        assert_eq!(choose_runtime(None, &dir, &both), "crun", "pure v2: crun");
        assert_eq!(choose_runtime(Some("auto"), &dir, &|n| n == "runc"), "runc");
        assert_eq!(choose_runtime(Some("/opt/runc"), &dir, &both), "/opt/runc");
        assert_eq!(
            choose_runtime(None, &dir, &|_| false),
            "crun",
            "nothing installed: the error will name crun"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn initramfs_root_is_detected() {
        let initramfs =
            "1 0 0:1 / / rw - rootfs rootfs rw\n22 1 0:5 / /dev rw - devtmpfs devtmpfs rw\n";
        assert!(root_is_initramfs(initramfs));
        let disk =
            "1 0 0:1 / / rw - rootfs rootfs rw\n25 1 254:1 / / rw,relatime - ext4 /dev/vda rw\n";
        assert!(!root_is_initramfs(disk));
        assert!(!root_is_initramfs(""));
    }
}
