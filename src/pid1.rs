//! PID-1 duties: what the kernel expects of the first process and nobody
//! else does in a microVM. `early_boot` makes a bare kernel environment
//! usable (the API file systems, the console as stdio, hostname, loopback,
//! `PATH`, ctrl-alt-del as SIGINT); `final_halt` ends the VM after the
//! services are stopped (kill what is left, sync, unmount, `reboot(2)`).
//! Every step logs and survives its own failure: a missing `/dev/pts` must
//! not cost the VM its services, and the halt must always reach `reboot()`.
//!
//! Settings from the kernel command line need no parsing here: the kernel
//! passes every `KEY=value` word it does not know itself to the init as an
//! environment variable (and every other unknown word as an argument), so
//! `IRIS_SOCKET=/run/x.sock` in `append` reaches `Config` like any variable.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the VM does once everything has stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaltMode {
    PowerOff,
    Reboot,
}

/// How long processes get to exit after SIGTERM at halt, then after SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
const KILL_GRACE: Duration = Duration::from_secs(1);
/// Poll interval of the halt's reap loop.
const REAP_TICK: Duration = Duration::from_millis(10);

/// One file system the init mounts when it is not there yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    pub target: &'static str,
    pub fstype: &'static str,
    pub source: &'static str,
    pub flags: MsFlags,
    pub data: &'static str,
}

/// The API file systems in mount order (parents before children).
pub fn mount_table() -> Vec<MountSpec> {
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let nosuid_nodev_noexec = nosuid_nodev | MsFlags::MS_NOEXEC;
    vec![
        MountSpec {
            target: "/proc",
            fstype: "proc",
            source: "proc",
            flags: nosuid_nodev_noexec,
            data: "",
        },
        MountSpec {
            target: "/sys",
            fstype: "sysfs",
            source: "sysfs",
            flags: nosuid_nodev_noexec,
            data: "",
        },
        MountSpec {
            target: "/dev",
            fstype: "devtmpfs",
            source: "devtmpfs",
            flags: MsFlags::MS_NOSUID,
            data: "mode=0755",
        },
        MountSpec {
            target: "/dev/pts",
            fstype: "devpts",
            source: "devpts",
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            data: "mode=0620,ptmxmode=0666",
        },
        MountSpec {
            target: "/dev/shm",
            fstype: "tmpfs",
            source: "shm",
            flags: nosuid_nodev,
            data: "mode=1777",
        },
        MountSpec {
            target: "/run",
            fstype: "tmpfs",
            source: "run",
            flags: nosuid_nodev,
            data: "mode=0755",
        },
        MountSpec {
            target: "/tmp",
            fstype: "tmpfs",
            source: "tmpfs",
            flags: nosuid_nodev,
            data: "mode=1777",
        },
        MountSpec {
            target: "/sys/fs/cgroup",
            fstype: "cgroup2",
            source: "cgroup2",
            flags: nosuid_nodev_noexec,
            data: "",
        },
    ]
}

/// One line of `/proc/self/mountinfo`, the fields the init needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
    pub read_only: bool,
}

/// Parses `/proc/self/mountinfo` text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let mount_point = fields.get(4)?;
            let options = fields.get(5)?;
            // Optional fields end with a lone "-"; fstype and source follow.
            let sep = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(sep.checked_add(1)?)?;
            let source = fields.get(sep.checked_add(2)?).copied().unwrap_or("");
            Some(MountEntry {
                mount_point: PathBuf::from(unescape_octal(mount_point)),
                fstype: unescape_octal(fstype),
                source: unescape_octal(source),
                read_only: options.split(',').any(|o| o == "ro"),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\' {
            if let Some(code) = bytes
                .get(i + 1..i + 4)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| u8::from_str_radix(d, 8).ok())
            {
                out.push(code);
                i += 4;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_mountinfo() -> Vec<MountEntry> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

/// Whether a tmpfs goes on `/tmp`. On an empty `/tmp` it hides nothing and
/// gives a clean, RAM-backed `/tmp` each boot (a disk root then keeps no
/// stale temp files across a checkpoint restore). On a read-only root it is
/// the only way to have a writable `/tmp`. A non-empty `/tmp` on a writable
/// root is left alone: the image put something there on purpose.
pub fn want_tmpfs_on_tmp(root_read_only: bool, tmp_empty: bool) -> bool {
    root_read_only || tmp_empty
}

fn dir_is_empty(path: &Path) -> bool {
    std::fs::read_dir(path)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

/// The hostname `/etc/hostname` asks for: its first non-comment line,
/// trimmed; `None` when there is none or it is not a valid hostname.
pub fn parse_hostname(text: &str) -> Option<String> {
    let name = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    let valid = name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then(|| name.to_string())
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Mounts one spec unless its target is already a mount point; returns
/// whether it mounted.
fn mount_one(spec: &MountSpec, mounted_now: &HashSet<PathBuf>) -> bool {
    let target = Path::new(spec.target);
    if mounted_now.contains(target) {
        crate::debug!("{} already mounted", spec.target);
        return false;
    }
    if let Err(e) = std::fs::create_dir_all(target) {
        crate::warn!("cannot create {}: {e}", spec.target);
    }
    let data = (!spec.data.is_empty()).then_some(spec.data);
    match mount(
        Some(spec.source),
        target,
        Some(spec.fstype),
        spec.flags,
        data,
    ) {
        Ok(()) => true,
        Err(e) => {
            crate::warn!("mount {} on {}: {e}", spec.fstype, spec.target);
            false
        }
    }
}

/// Puts `/dev/console` on stdin, stdout and stderr unless the init was
/// given stdio. The kernel starts it with the console on all three already
/// (or none, when the root has no `/dev/console` node; the Rust runtime
/// then puts `/dev/null` there); whoever else starts it as PID 1 (a
/// container runtime, `unshare`) gives it stdio of its own, which is kept:
/// the log goes where that caller reads it, not to a host's serial console,
/// where each line would cost the loop a millisecond. Given means any of
/// the three is open on something other than `/dev/null`. Not the
/// controlling terminal (`O_NOCTTY`): a ctrl-c typed on the console must
/// not reach PID 1.
fn console_as_stdio() {
    if (0..=2).any(is_given) {
        return;
    }
    let fd = match nix::fcntl::open(
        "/dev/console",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => {
            crate::warn!("cannot open /dev/console: {e}");
            return;
        }
    };
    for target in 0..=2 {
        if fd != target {
            if let Err(e) = nix::unistd::dup2(fd, target) {
                crate::warn!("dup2 console to fd {target}: {e}");
            }
        }
    }
    if fd > 2 {
        // SAFETY: `fd` was just opened here and nothing else owns it; the
        // OwnedFd closes it once.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    // The init's own log writes to the console without blocking.
    crate::console::attach();
}

/// `fd` is open on something other than `/dev/null` (character device 1:3).
fn is_given(fd: i32) -> bool {
    match nix::sys::stat::fstat(fd) {
        Ok(st) => {
            let is_chr = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
            !(is_chr && st.st_rdev == libc::makedev(1, 3))
        }
        Err(_) => false,
    }
}

fn set_hostname() {
    let text = match std::fs::read_to_string("/etc/hostname") {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            crate::warn!("cannot read /etc/hostname: {e}");
            return;
        }
    };
    match parse_hostname(&text) {
        Some(name) => {
            if let Err(e) = nix::unistd::sethostname(OsStr::new(&name)) {
                crate::warn!("sethostname {name}: {e}");
            }
        }
        None => crate::warn!("/etc/hostname holds no valid hostname"),
    }
}

// ioctl's request is an unsigned long in glibc and an int in musl.
const SIOCGIFFLAGS: libc::Ioctl = libc::SIOCGIFFLAGS as libc::Ioctl;
const SIOCSIFFLAGS: libc::Ioctl = libc::SIOCSIFFLAGS as libc::Ioctl;

/// Sets `IFF_UP` on `lo`, as `ip link set lo up` does (the kernel adds
/// 127.0.0.1 and ::1 itself when it comes up).
fn loopback_up() -> Result<(), nix::Error> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes ifru_flags of the ifreq
    // we own, on a socket we own.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGIFFLAGS, &mut req) };
    nix::errno::Errno::result(rc)?;
    // SAFETY: the kernel just filled ifru_flags, the union member for this
    // request.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads the ifreq.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCSIFFLAGS, &req) };
    nix::errno::Errno::result(rc).map(drop)
}

/// The PID-1 start: see the module doc. Returns the mount points it
/// mounted, in mount order, for `final_halt`.
pub fn early_boot() -> Vec<PathBuf> {
    let started = Instant::now();
    let mut mounted = Vec::new();
    let table = mount_table();
    // /proc first: without it there is no mountinfo to ask.
    let proc_up = Path::new("/proc/self/mountinfo").exists();
    if let Some(proc_spec) = table.first() {
        if !proc_up && mount_one(proc_spec, &HashSet::new()) {
            mounted.push(PathBuf::from(proc_spec.target));
        }
    }
    // stdio on the console as soon as possible, so warnings are seen; again
    // after /dev is mounted in case the root had no /dev/console node (the
    // kernel could not give the init one either).
    console_as_stdio();
    for spec in table.iter().skip(1) {
        let entries = read_mountinfo();
        let now: HashSet<PathBuf> = entries.iter().map(|e| e.mount_point.clone()).collect();
        if spec.target == "/tmp" {
            let root_ro = entries
                .iter()
                .rev()
                .find(|e| e.mount_point == Path::new("/"))
                .map(|e| e.read_only)
                .unwrap_or(false);
            if !want_tmpfs_on_tmp(root_ro, dir_is_empty(Path::new("/tmp"))) {
                crate::debug!("/tmp is not empty on a writable root: left as it is");
                continue;
            }
        }
        if mount_one(spec, &now) {
            mounted.push(PathBuf::from(spec.target));
            if spec.target == "/dev" {
                console_as_stdio();
            }
        }
    }
    set_hostname();
    if let Err(e) = loopback_up() {
        crate::warn!("cannot bring up lo: {e}");
    }
    if std::env::var_os("PATH").is_none() {
        // Still single-threaded: nothing else reads the environment now.
        std::env::set_var("PATH", crate::proc::spawn::DEFAULT_PATH);
    }
    // A session of its own, as sysvinit and systemd make PID 1: the
    // signals a terminal sends its launcher's process group (a PID
    // namespace's init starts in its launcher's session) do not reach it,
    // and the scheduler weighs it as its own autogroup, not as one task of
    // its launcher's. EPERM: it already leads a process group.
    if let Err(e) = nix::unistd::setsid() {
        crate::debug!("setsid: {e}");
    }
    // The kernel then sends SIGINT to PID 1 on ctrl-alt-del instead of
    // rebooting on the spot; the init reboots in order.
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        crate::warn!("cannot disable ctrl-alt-del: {e}");
    }
    let list: Vec<String> = mounted.iter().map(|p| p.display().to_string()).collect();
    crate::info!(
        "early boot done in {} ms (mounted: {})",
        ms(started.elapsed()),
        if list.is_empty() {
            "nothing".to_string()
        } else {
            list.join(" ")
        }
    );
    mounted
}

/// Reaps every exited child without blocking; returns how many, and
/// whether no child is left at all (ECHILD).
fn reap_all() -> (usize, bool) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let mut reaped = 0usize;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return (reaped, false),
            Ok(_) => reaped = reaped.saturating_add(1),
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::ECHILD) => return (reaped, true),
            Err(e) => {
                crate::warn!("waitpid: {e}");
                return (reaped, false);
            }
        }
    }
}

/// Sends `sig` to every process but the init and reaps until none is left
/// or `grace` is over. Returns (processes reaped, all gone).
fn signal_all_and_reap(sig: nix::sys::signal::Signal, grace: Duration) -> (usize, bool) {
    // kill(-1) reaches every process the init may signal, except itself.
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => crate::warn!("kill(-1, {sig}): {e}"),
    }
    let deadline = Instant::now() + grace;
    let mut total = 0usize;
    loop {
        let (n, none_left) = reap_all();
        total = total.saturating_add(n);
        if none_left {
            return (total, true);
        }
        if Instant::now() >= deadline {
            return (total, false);
        }
        // The end of the VM: a short sleep loop is simpler than a signalfd
        // and costs at most one tick.
        std::thread::sleep(REAP_TICK);
    }
}

/// File systems to unmount at halt, in order: those on block devices that
/// the init did not mount (a data disk a service mounted), innermost
/// first, then the init's own mounts in reverse.
pub fn unmount_order(entries: &[MountEntry], ours: &[PathBuf]) -> Vec<PathBuf> {
    let mut order: Vec<PathBuf> = entries
        .iter()
        .rev()
        .filter(|e| e.source.starts_with("/dev/") && e.mount_point != Path::new("/"))
        .filter(|e| !ours.contains(&e.mount_point))
        .map(|e| e.mount_point.clone())
        .collect();
    order.extend(ours.iter().rev().cloned());
    order
}

/// Whether the root is a real file system worth a read-only remount (an
/// initramfs root lives in RAM: nothing to flush).
pub fn root_needs_remount(entries: &[MountEntry]) -> bool {
    entries
        .iter()
        .rev()
        .find(|e| e.mount_point == Path::new("/"))
        .map(|e| !matches!(e.fstype.as_str(), "rootfs" | "ramfs" | "tmpfs") && !e.read_only)
        .unwrap_or(false)
}

/// Everything of the halt but `reboot()` itself: kill, reap, sync, unmount.
/// `remount_root` is false only in tests, which run in a private namespace
/// on the host's root file system.
fn halt_prepare(mounted: &[PathBuf], remount_root: bool) {
    use nix::sys::signal::Signal;
    let t = Instant::now();
    let (n, all_gone) = signal_all_and_reap(Signal::SIGTERM, TERM_GRACE);
    crate::info!(
        "halt: SIGTERM to all processes: {n} reaped in {} ms{}",
        ms(t.elapsed()),
        if all_gone { "" } else { ", some still running" }
    );
    if !all_gone {
        let t = Instant::now();
        let (n, all_gone) = signal_all_and_reap(Signal::SIGKILL, KILL_GRACE);
        crate::info!(
            "halt: SIGKILL to all processes: {n} reaped in {} ms{}",
            ms(t.elapsed()),
            if all_gone {
                ""
            } else {
                ", some still there (uninterruptible?)"
            }
        );
    }
    let t = Instant::now();
    nix::unistd::sync();
    crate::info!("halt: sync in {} ms", ms(t.elapsed()));

    let t = Instant::now();
    let entries = read_mountinfo();
    let mut done = 0usize;
    for path in unmount_order(&entries, mounted) {
        // A lazy unmount always detaches; with every process gone nothing
        // holds the file system, so it is released at once.
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) => done = done.saturating_add(1),
            Err(e) => crate::warn!("halt: umount {}: {e}", path.display()),
        }
    }
    if remount_root && root_needs_remount(&entries) {
        let flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        match mount(None::<&str>, "/", None::<&str>, flags, None::<&str>) {
            Ok(()) => crate::info!("halt: root remounted read-only"),
            Err(e) => crate::warn!("halt: remount / read-only: {e}"),
        }
        nix::unistd::sync();
    }
    crate::info!(
        "halt: unmounted {done} file systems in {} ms",
        ms(t.elapsed())
    );
}

/// The end of PID 1 once the services are stopped: see the module doc.
/// Never returns.
pub fn final_halt(mode: HaltMode, mounted: &[PathBuf]) -> ! {
    use nix::sys::reboot::{reboot, RebootMode};
    // kill(-1) from any other pid would signal every process of the host
    // the caller may signal: never do that.
    if nix::unistd::getpid().as_raw() != 1 {
        crate::error!(
            "final_halt called as pid {}: not halting",
            std::process::id()
        );
        loop {
            nix::unistd::pause();
        }
    }
    let t = Instant::now();
    halt_prepare(mounted, true);
    let (how, word) = match mode {
        HaltMode::PowerOff => (RebootMode::RB_POWER_OFF, "powering off"),
        HaltMode::Reboot => (RebootMode::RB_AUTOBOOT, "rebooting"),
    };
    crate::info!("halt: {word} (the halt took {} ms)", ms(t.elapsed()));
    let Err(e) = reboot(how);
    crate::error!("halt: reboot(): {e}; waiting forever");
    loop {
        nix::unistd::pause();
    }
}

/// A fatal start-up error as PID 1: log it and power off cleanly instead of
/// exiting (which the kernel answers with a panic).
pub fn fatal(msg: &str, mounted: &[PathBuf]) -> ! {
    crate::error!("fatal: {msg}; powering off");
    final_halt(HaltMode::PowerOff, mounted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:20 / / rw,relatime - ext4 /dev/nvme0n1 rw
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
30 22 259:1 / /mnt/my\\040data rw,relatime shared:7 master:1 - ext4 /dev/nvme1n1 rw
31 22 0:40 / /run rw,nosuid,nodev - tmpfs run rw,mode=755
garbage line
";

    #[test]
    fn mountinfo_is_parsed_with_optional_fields_and_escapes() {
        let e = parse_mountinfo(MOUNTINFO);
        assert_eq!(e.len(), 5);
        assert_eq!(e[0].mount_point, Path::new("/"));
        assert_eq!(e[0].fstype, "ext4");
        assert_eq!(e[0].source, "/dev/nvme0n1");
        assert!(!e[0].read_only);
        assert_eq!(e[1].fstype, "proc");
        assert_eq!(e[3].mount_point, Path::new("/mnt/my data"));
        assert_eq!(e[3].source, "/dev/nvme1n1");
    }

    #[test]
    fn read_only_mounts_are_seen() {
        let e = parse_mountinfo("1 0 0:1 / / ro,relatime - ext4 /dev/vda ro\n");
        assert!(e[0].read_only);
        assert!(!root_needs_remount(&e));
    }

    #[test]
    fn mount_table_puts_parents_first() {
        let t = mount_table();
        let pos = |p: &str| t.iter().position(|s| s.target == p).unwrap();
        assert_eq!(pos("/proc"), 0);
        assert!(pos("/dev") < pos("/dev/pts"));
        assert!(pos("/dev") < pos("/dev/shm"));
        assert!(pos("/sys") < pos("/sys/fs/cgroup"));
        assert_eq!(
            t.iter()
                .find(|s| s.target == "/sys/fs/cgroup")
                .unwrap()
                .fstype,
            "cgroup2"
        );
        assert_eq!(
            t.iter().find(|s| s.target == "/dev").unwrap().fstype,
            "devtmpfs"
        );
    }

    #[test]
    fn tmpfs_on_tmp_only_when_it_hides_nothing_or_root_is_read_only() {
        assert!(want_tmpfs_on_tmp(false, true));
        assert!(want_tmpfs_on_tmp(true, false));
        assert!(!want_tmpfs_on_tmp(false, false));
    }

    #[test]
    fn hostname_is_the_first_real_line() {
        assert_eq!(
            parse_hostname("# vm\n\n  iris-vm  \nother\n").as_deref(),
            Some("iris-vm")
        );
        assert_eq!(parse_hostname(""), None);
        assert_eq!(parse_hostname("bad name\n"), None);
        assert_eq!(parse_hostname(&"a".repeat(65)), None);
    }

    #[test]
    fn halt_unmounts_foreign_disks_first_then_ours_in_reverse() {
        let e = parse_mountinfo(MOUNTINFO);
        let ours = vec![
            PathBuf::from("/proc"),
            PathBuf::from("/sys"),
            PathBuf::from("/run"),
        ];
        let order = unmount_order(&e, &ours);
        assert_eq!(
            order,
            vec![
                PathBuf::from("/mnt/my data"),
                PathBuf::from("/run"),
                PathBuf::from("/sys"),
                PathBuf::from("/proc"),
            ]
        );
        assert!(root_needs_remount(&e));
    }

    #[test]
    fn ram_roots_are_not_remounted() {
        let e = parse_mountinfo("1 0 0:1 / / rw - rootfs rootfs rw\n");
        assert!(!root_needs_remount(&e));
    }

    /// The halt in a private PID and mount namespace, where this test binary
    /// is PID 1: processes that ignore SIGTERM are killed, the namespace's
    /// mounts are undone, and `reboot()` ends the namespace with the signal
    /// the kernel uses for the mode (SIGINT power off, SIGHUP reboot).
    /// Needs root (unshare): without it the test fails, it does not skip.
    #[test]
    fn halt_kills_everything_and_ends_the_pid_namespace() {
        for (mode, signal) in [("poweroff", libc::SIGINT), ("reboot", libc::SIGHUP)] {
            let exe = std::env::current_exe().unwrap();
            let out = std::process::Command::new("unshare")
                .args([
                    "--pid",
                    "--fork",
                    "--mount",
                    "--propagation",
                    "private",
                    "--mount-proc",
                ])
                .arg(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "pid1::tests::halt_inner",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("IRIS_PID1_HALT_INNER", mode)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                out.status.signal(),
                Some(signal),
                "{mode}: status {:?}\nstdout: {stdout}\nstderr: {stderr}",
                out.status
            );
            assert!(
                stderr.contains("inner: two processes ignore SIGTERM"),
                "{stderr}"
            );
            assert!(
                stderr.contains("halt: SIGTERM to all processes"),
                "{stderr}"
            );
            assert!(
                stderr.contains("halt: SIGKILL to all processes"),
                "{stderr}"
            );
            assert!(
                stderr.contains("inner: all gone, tmpfs unmounted"),
                "{stderr}"
            );
        }
    }

    /// Pids (in this PID namespace) whose command line is `sleep 30`.
    fn sleeps_30() -> usize {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| {
                std::fs::read(format!("/proc/{n}/cmdline")).is_ok_and(|c| c == b"sleep\x0030\x00")
            })
            .count()
    }

    /// The PID-1 side of the test above, which runs it explicitly
    /// (`--ignored --exact`) as PID 1 of a new PID namespace; ignored in a
    /// normal run, and it fails when run any other way.
    #[test]
    #[ignore = "run by halt_kills_everything_and_ends_the_pid_namespace"]
    fn halt_inner() {
        let mode = std::env::var_os("IRIS_PID1_HALT_INNER")
            .expect("run by halt_kills_everything_and_ends_the_pid_namespace only");
        assert_eq!(std::process::id(), 1);
        // A child that ignores SIGTERM, and an orphan that does too. The
        // halt reaps them: that is what is tested.
        #[allow(clippy::zombie_processes)]
        std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 30"])
            .spawn()
            .unwrap();
        #[allow(clippy::zombie_processes)]
        std::process::Command::new("sh")
            .args(["-c", "sh -c \"trap '' TERM; sleep 30\" & exit 0"])
            .spawn()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("iris-halt-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        // Both shells have set their trap once their `sleep 30` runs.
        let deadline = Instant::now() + Duration::from_secs(20);
        while sleeps_30() < 2 {
            assert!(Instant::now() < deadline, "the sleeps never ran");
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!("inner: two processes ignore SIGTERM");
        halt_prepare(std::slice::from_ref(&dir), false);
        let others: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()) && n != "1")
            .collect();
        let still_mounted = read_mountinfo().iter().any(|e| e.mount_point == dir);
        if others.is_empty() && !still_mounted {
            eprintln!("inner: all gone, tmpfs unmounted");
        } else {
            eprintln!("inner: left: {others:?}, tmpfs mounted: {still_mounted}");
        }
        let _ = std::fs::remove_dir(&dir);
        let how = if mode == "reboot" {
            nix::sys::reboot::RebootMode::RB_AUTOBOOT
        } else {
            nix::sys::reboot::RebootMode::RB_POWER_OFF
        };
        // In a PID namespace this ends the namespace instead of the host.
        let r = nix::sys::reboot::reboot(how);
        eprintln!("inner: reboot returned {r:?}");
    }
}
