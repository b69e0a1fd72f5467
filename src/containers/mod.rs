//! Container services: everything the supervisor needs to pull an OCI image,
//! unpack it into a per-service bundle and drive an OCI runtime, as plans.
//!
//! This module owns the image store layout (`STORE/images/<key>/`, one OCI
//! layout per image reference; `STORE/pulling/`, `STORE/old/`, `STORE/tmp/`
//! for pulls in progress; `STORE/bundles/<service>/`), image
//! reference parsing, the rewrite of a bundle's `config.json` for a
//! supervised service, and the argv of every external tool (`skopeo`,
//! `umoci`, `crun`/`runc`). It never spawns or waits: the event loop runs
//! each argv as an ordinary non-blocking child (output to the service's log,
//! reaped by the one reaper). The file operations it does itself are small
//! and local (reading `index.json`, writing `config.json`, renames).
//!
//! Lifecycle the supervisor drives for a container service:
//! 1. `is_pulled`? else `prepare_pull`, spawn `pull_argv` (env `pull_env`),
//!    then `finish_pull` on exit 0, or `abandon_pull` plus
//!    `pull_failure_message` on failure. One pull per reference at a time
//!    (a second service on the same image waits for the first pull).
//! 2. When the bundle is missing, from another image (`bundle_image_digest`
//!    differs from `image_digest`) or the definition changed:
//!    `prepare_unpack`, spawn `unpack_argv`. Otherwise the rootfs is reused,
//!    so what the container wrote survives a restart (like `docker restart`).
//! 3. `read_image_config` + `write_bundle_config` on every start.
//! 4. Create `runtime_dirs`, spawn `delete_argv` (clears a stale container
//!    of the same name, e.g. after an init restart), then `run_argv`: the
//!    runtime stays in the foreground as the container's parent, forwards
//!    SIGTERM to it, exits with its status (137 when it was SIGKILLed) and
//!    removes the container, so its pid is the supervised pid.
//! 5. Stop: SIGTERM to the runtime's pid (forwarded). A container's pid 1
//!    without a TERM handler never sees it (`pid1_drops_signal`): then, or
//!    after `stop_timeout_secs`, spawn `kill_argv(.., "KILL")`. Never
//!    SIGKILL the runtime itself while the container lives: that orphans
//!    the container. Once the runtime has exited, `delete_argv`.
//! 6. Exec: `write_exec_process` + `exec_argv`; on a timeout SIGKILL the
//!    pid in `exec_pid_file`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Environment variable naming the OCI runtime: `crun`, `runc`, a path, or
/// `auto` (the default, see [`choose_runtime`]).
pub const RUNTIME_ENV: &str = "IRIS_OCI_RUNTIME";
/// Environment variable listing registries that speak plain HTTP (or have
/// untrusted certificates): `host:port,host,...`. A bare host matches any
/// port. Loopback registries are always allowed.
pub const INSECURE_ENV: &str = "IRIS_INSECURE_REGISTRIES";
/// The tag every image has inside its own store layout (one layout per
/// reference, so the tag carries no information).
pub const STORE_TAG: &str = "image";
/// Registry used for references without a host, as `docker pull` does.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// `PATH` given to a container whose image and service set none (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Capabilities of a root container process: Docker's default set, so images
/// behave as they do under `docker run`.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];
/// Host files bind-mounted read-only into every container: it shares the
/// host's network, so it gets the host's name resolution too.
pub const HOST_FILES: &[&str] = &["/etc/resolv.conf", "/etc/hosts"];

/// Largest JSON document (index, manifest, image config, config.json) or
/// passwd/group file read from an image: a hostile image cannot make the
/// init allocate without bound.
const MAX_DOC: u64 = 4 << 20;

// ---------------------------------------------------------------- errors

#[derive(Debug)]
pub enum ContainerError {
    /// The image reference cannot be parsed.
    BadReference { reference: String, reason: String },
    /// The image is not in the store (pull it first).
    NotPulled { image: String },
    /// The stored image is unreadable or malformed.
    BadImage { image: String, reason: String },
    /// Neither the service nor the image gives a command to run.
    NoCommand { image: String },
    /// The command is not an executable file in the image.
    CommandNotFound { cmd: String, image: String },
    /// `user` names a user or group the image does not know.
    UnknownUser { user: String, reason: String },
    /// `working_dir` is not an absolute path.
    BadWorkingDir { dir: String },
    /// `exec` without a command.
    EmptyExec,
    /// The store directory cannot be used with skopeo's `oci:` transport.
    BadStoreDir { path: PathBuf },
    /// A bundle's `config.json` is missing or malformed.
    BadBundle { path: PathBuf, reason: String },
    /// A file operation failed.
    Io {
        what: String,
        path: PathBuf,
        err: io::Error,
    },
}

impl fmt::Display for ContainerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContainerError::BadReference { reference, reason } => {
                write!(f, "bad image reference {reference:?}: {reason}")
            }
            ContainerError::NotPulled { image } => write!(f, "image {image} is not pulled"),
            ContainerError::BadImage { image, reason } => {
                write!(f, "image {image} is unusable: {reason}")
            }
            ContainerError::CommandNotFound { cmd, image } => {
                write!(f, "cmd '{cmd}' not found in image {image}")
            }
            ContainerError::NoCommand { image } => write!(
                f,
                "no command: the service has no cmd and image {image} has no entrypoint or cmd"
            ),
            ContainerError::UnknownUser { user, reason } => {
                write!(f, "user {user:?}: {reason}")
            }
            ContainerError::BadWorkingDir { dir } => {
                write!(f, "working_dir {dir:?} must be an absolute path")
            }
            ContainerError::EmptyExec => write!(f, "exec needs a command"),
            ContainerError::BadStoreDir { path } => write!(
                f,
                "image store {} must be an absolute path without ':'",
                path.display()
            ),
            ContainerError::BadBundle { path, reason } => {
                write!(f, "bundle {}: {reason}", path.display())
            }
            ContainerError::Io { what, path, err } => {
                write!(f, "{what} {}: {err}", path.display())
            }
        }
    }
}

impl std::error::Error for ContainerError {}

fn io_err(what: &str, path: &Path, err: io::Error) -> ContainerError {
    ContainerError::Io {
        what: what.to_string(),
        path: path.to_path_buf(),
        err,
    }
}

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
            find_on_path(n).is_some()
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

/// The first executable `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
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

// ---------------------------------------------------------------- references

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ImageRef {
    /// `docker://` semantics: `redis:7` is `docker.io/library/redis:7`.
    /// At least one of `tag` and `digest` is set; the digest wins for pulls.
    Registry {
        host: String,
        name: String,
        tag: Option<String>,
        digest: Option<String>,
    },
    /// `oci:/path[:tag]`: a local OCI layout; without a tag, the layout's
    /// only image (skopeo's rule).
    OciLayout { path: PathBuf, tag: Option<String> },
}

impl fmt::Display for ImageRef {
    /// The canonical form, used in messages and as the store key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Registry {
                host,
                name,
                tag,
                digest,
            } => {
                write!(f, "{host}/{name}")?;
                if let Some(t) = tag {
                    write!(f, ":{t}")?;
                }
                if let Some(d) = digest {
                    write!(f, "@{d}")?;
                }
                Ok(())
            }
            ImageRef::OciLayout { path, tag } => {
                write!(f, "oci:{}", path.display())?;
                if let Some(t) = tag {
                    write!(f, ":{t}")?;
                }
                Ok(())
            }
        }
    }
}

/// Parses `name[:tag]`, `host[:port]/name[:tag]`, `...@sha256:<hex>`
/// (optionally prefixed `docker://`) and `oci:/abs/path[:tag]`.
pub fn parse_image_ref(s: &str) -> Result<ImageRef, ContainerError> {
    let bad = |reason: &str| ContainerError::BadReference {
        reference: s.to_string(),
        reason: reason.to_string(),
    };
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if s.len() > 1024 {
        return Err(bad("longer than 1024 characters"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace or control characters"));
    }
    if let Some(rest) = s.strip_prefix("oci:") {
        // skopeo splits oci:PATH:TAG at the first ':', so a path cannot hold one.
        let (path, tag) = match rest.split_once(':') {
            Some((p, t)) => (p, Some(t)),
            None => (rest, None),
        };
        if !path.starts_with('/') {
            return Err(bad("the path of an oci: reference must be absolute"));
        }
        let tag = match tag {
            None => None,
            Some(t) if valid_tag(t) => Some(t.to_string()),
            Some(_) => {
                return Err(bad(
                    "tag must be 1-128 of [A-Za-z0-9_.-], not starting with . or -",
                ))
            }
        };
        return Ok(ImageRef::OciLayout {
            path: PathBuf::from(path),
            tag,
        });
    }
    if let Some((scheme, _)) = s.split_once("://") {
        if scheme != "docker" {
            return Err(bad("only docker:// and oci: references are supported"));
        }
    }
    let rest = s.strip_prefix("docker://").unwrap_or(s);
    let (rest, digest) = match rest.split_once('@') {
        Some((r, d)) => {
            if !valid_digest(d) {
                return Err(bad("digest must be sha256:<64 hex> or sha512:<128 hex>"));
            }
            (r, Some(d.to_string()))
        }
        None => (rest, None),
    };
    // A ':' after the last '/' separates the tag ("host:5000/x" has none).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match rest.get(last_slash..).and_then(|t| t.find(':')) {
        Some(i) => (
            rest.get(..last_slash + i).unwrap_or(rest),
            rest.get(last_slash + i + 1..),
        ),
        None => (rest, None),
    };
    let tag = match tag {
        Some(t) if valid_tag(t) => Some(t.to_string()),
        Some(_) => {
            return Err(bad(
                "tag must be 1-128 of [A-Za-z0-9_.-], not starting with . or -",
            ))
        }
        None => None,
    };
    let (host, name) = match path.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            if !valid_host(first) {
                return Err(bad("bad registry host"));
            }
            (first.to_ascii_lowercase(), rest.to_string())
        }
        _ => (DEFAULT_REGISTRY.to_string(), path.to_string()),
    };
    let host = if host == "index.docker.io" || host == "registry-1.docker.io" {
        DEFAULT_REGISTRY.to_string()
    } else {
        host
    };
    if name.is_empty() {
        return Err(bad("no repository name"));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(bad("repository name must be lowercase"));
    }
    if name.len() > 255 || !name.split('/').all(valid_name_component) {
        return Err(bad(
            "repository name must be lowercase letters, digits and separators (. _ __ -) between them, in /-separated parts",
        ));
    }
    let name = if host == DEFAULT_REGISTRY && !name.contains('/') {
        format!("library/{name}")
    } else {
        name
    };
    let tag = if tag.is_none() && digest.is_none() {
        Some("latest".to_string())
    } else {
        tag
    };
    Ok(ImageRef::Registry {
        host,
        name,
        tag,
        digest,
    })
}

fn valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && t.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn valid_digest(d: &str) -> bool {
    let hex =
        |h: &str, n: usize| h.len() == n && h.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
    match d.split_once(':') {
        Some(("sha256", h)) => hex(h, 64),
        Some(("sha512", h)) => hex(h, 128),
        _ => false,
    }
}

fn valid_host(h: &str) -> bool {
    let (name, port) = match h.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest))
                if !addr.is_empty() && addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') =>
            {
                match rest {
                    "" => return true,
                    r => match r.strip_prefix(':') {
                        Some(p) => ("v6", Some(p)),
                        None => return false,
                    },
                }
            }
            _ => return false,
        },
        None => match h.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (h, None),
        },
    };
    let name_ok = !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    name_ok && port_ok
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, the distribution grammar.
fn valid_name_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !b.first().is_some_and(alnum) || !b.last().is_some_and(alnum) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let Some(&x) = b.get(i) else { break };
        if alnum(&x) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-"+.
        let start = i;
        while b.get(i).is_some_and(|x| !alnum(x)) {
            i += 1;
        }
        let sep = c.get(start..i).unwrap_or("");
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

// ---------------------------------------------------------------- store

/// The store directory name of a reference: the canonical reference with
/// every byte outside `[A-Za-z0-9._-]` percent-encoded (injective, and never
/// contains `:` or `/`); very long references end in a hash instead.
pub fn image_key(r: &ImageRef) -> String {
    let canon = r.to_string();
    let mut key = String::with_capacity(canon.len() + 16);
    for b in canon.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            key.push(char::from(b));
        } else {
            key.push_str(&format!("%{b:02X}"));
        }
    }
    if key.len() > 200 {
        // FNV-1a: enough to keep distinct long references apart.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in canon.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        key.truncate(180);
        while key.ends_with('%')
            || key
                .get(key.len().saturating_sub(2)..)
                .is_some_and(|t| t.starts_with('%'))
        {
            key.pop();
        }
        key.push_str(&format!("~{h:016x}"));
    }
    key
}

fn images_dir(s: &ContainerSettings) -> PathBuf {
    s.store_dir.join("images")
}

/// The OCI layout holding the pulled image and the tag inside it.
pub fn image_store_path(s: &ContainerSettings, r: &ImageRef) -> (PathBuf, String) {
    (images_dir(s).join(image_key(r)), STORE_TAG.to_string())
}

// In-progress and replaced pulls live beside `images/`, not in it, so no
// reference's key can name them.
fn partial_path(s: &ContainerSettings, r: &ImageRef) -> PathBuf {
    s.store_dir.join("pulling").join(image_key(r))
}

/// True when the reference was pulled (completely: a pull lands in
/// `STORE/pulling/` and is renamed into `STORE/images/` only on success).
pub fn is_pulled(s: &ContainerSettings, r: &ImageRef) -> bool {
    image_digest(s, r).is_some()
}

/// Before spawning [`pull_argv`]: clears a half-finished earlier pull and
/// makes the store directories.
pub fn prepare_pull(s: &ContainerSettings, r: &ImageRef) -> Result<(), ContainerError> {
    let store = s.store_dir.to_string_lossy();
    if store.contains(':') || !s.store_dir.is_absolute() {
        return Err(ContainerError::BadStoreDir {
            path: s.store_dir.clone(),
        });
    }
    let partial = partial_path(s, r);
    remove_tree(&partial)?;
    for dir in ["images", "pulling", "old", "tmp"] {
        let dir = s.store_dir.join(dir);
        fs::create_dir_all(&dir).map_err(|e| io_err("creating", &dir, e))?;
    }
    Ok(())
}

/// `skopeo copy` from the reference into the store (`STORE/pulling/KEY`).
/// Progress lines go to stdout, the error (one `level=fatal` line) to stderr.
pub fn pull_argv(s: &ContainerSettings, r: &ImageRef) -> Vec<String> {
    // --insecure-policy: the sandbox has no signature policy to enforce
    // (Debian's default policy accepts anything too); pin a digest for
    // integrity. It also spares the VM an /etc/containers/policy.json.
    let mut argv = vec![
        "skopeo".to_string(),
        "--insecure-policy".to_string(),
        "copy".to_string(),
    ];
    let src = match r {
        ImageRef::Registry {
            host,
            name,
            tag,
            digest,
        } => {
            if is_insecure(s, host) {
                argv.push("--src-tls-verify=false".to_string());
            }
            // skopeo refuses name:tag@digest: the digest alone pins the image.
            match (digest, tag) {
                (Some(d), _) => format!("docker://{host}/{name}@{d}"),
                (None, Some(t)) => format!("docker://{host}/{name}:{t}"),
                (None, None) => format!("docker://{host}/{name}:latest"),
            }
        }
        ImageRef::OciLayout { path, tag } => match tag {
            Some(t) => format!("oci:{}:{t}", path.display()),
            None => format!("oci:{}", path.display()),
        },
    };
    argv.push(src);
    argv.push(format!("oci:{}:{STORE_TAG}", partial_path(s, r).display()));
    argv
}

/// Environment for the pull: big layers are staged in the store rather than
/// in `/var/tmp` (which may be small or read-only in the VM).
pub fn pull_env(s: &ContainerSettings) -> Vec<(String, String)> {
    vec![(
        "TMPDIR".to_string(),
        s.store_dir.join("tmp").to_string_lossy().into_owned(),
    )]
}

/// After the pull exited 0: moves the image into place (replacing an older
/// pull of the same reference) and returns its digest.
pub fn finish_pull(s: &ContainerSettings, r: &ImageRef) -> Result<String, ContainerError> {
    let partial = partial_path(s, r);
    let Some(digest) = layout_digest(&partial) else {
        return Err(ContainerError::BadImage {
            image: r.to_string(),
            reason: "the pull finished but left no image behind".to_string(),
        });
    };
    let (dest, _) = image_store_path(s, r);
    if dest.exists() {
        let old = s.store_dir.join("old").join(image_key(r));
        remove_tree(&old)?;
        fs::rename(&dest, &old).map_err(|e| io_err("moving aside", &dest, e))?;
        fs::rename(&partial, &dest).map_err(|e| io_err("renaming", &partial, e))?;
        remove_tree(&old)?;
    } else {
        fs::rename(&partial, &dest).map_err(|e| io_err("renaming", &partial, e))?;
    }
    Ok(digest)
}

/// After a failed pull: removes what it left (best effort).
pub fn abandon_pull(s: &ContainerSettings, r: &ImageRef) {
    let _ = remove_tree(&partial_path(s, r));
}

/// Forgets a pulled image, so the next start pulls again.
pub fn remove_image(s: &ContainerSettings, r: &ImageRef) -> Result<(), ContainerError> {
    remove_tree(&image_store_path(s, r).0)
}

/// The digest of the pulled image's manifest, from the store's index.json.
/// For images stored in the registry in OCI format this is the registry's
/// digest; Docker-format images are converted to OCI by the pull, so theirs
/// is the converted manifest's.
pub fn image_digest(s: &ContainerSettings, r: &ImageRef) -> Option<String> {
    layout_digest(&image_store_path(s, r).0)
}

fn layout_digest(layout: &Path) -> Option<String> {
    let index = read_json(&layout.join("index.json")).ok()?;
    let desc = find_tagged(&index, STORE_TAG)?;
    let d = desc.get("digest")?.as_str()?;
    valid_digest(d).then(|| d.to_string())
}

fn find_tagged<'a>(index: &'a Value, tag: &str) -> Option<&'a Value> {
    index.get("manifests")?.as_array()?.iter().find(|m| {
        m.get("annotations")
            .and_then(|a| a.get("org.opencontainers.image.ref.name"))
            .and_then(Value::as_str)
            == Some(tag)
    })
}

fn read_json(path: &Path) -> Result<Value, String> {
    let f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_DOC + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_DOC {
        return Err(format!("{}: larger than {MAX_DOC} bytes", path.display()));
    }
    serde_json::from_slice(&buf).map_err(|e| format!("{}: {e}", path.display()))
}

fn blob_path(layout: &Path, digest: &str) -> Option<PathBuf> {
    // Only well-formed digests become paths: nothing like "../" gets in.
    if !valid_digest(digest) {
        return None;
    }
    let (alg, hex) = digest.split_once(':')?;
    Some(layout.join("blobs").join(alg).join(hex))
}

/// What the image says about how to run it (its config's `config` object).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
    /// The image's preferred stop signal (`SIGQUIT` for nginx, say).
    pub stop_signal: Option<String>,
}

/// Reads the pulled image's config from the store.
pub fn read_image_config(
    s: &ContainerSettings,
    r: &ImageRef,
) -> Result<ImageConfig, ContainerError> {
    let image = r.to_string();
    let bad = |reason: String| ContainerError::BadImage {
        image: image.clone(),
        reason,
    };
    let (layout, tag) = image_store_path(s, r);
    let index = match read_json(&layout.join("index.json")) {
        Ok(v) => v,
        Err(_) if !layout.exists() => {
            return Err(ContainerError::NotPulled {
                image: image.clone(),
            })
        }
        Err(e) => return Err(bad(e)),
    };
    let desc = find_tagged(&index, &tag)
        .ok_or_else(|| bad("no tagged manifest in the store".to_string()))?;
    let media = desc.get("mediaType").and_then(Value::as_str).unwrap_or("");
    if media.contains("index") || media.contains("manifest.list") {
        return Err(bad(
            "stored image is a multi-platform index, not a manifest".to_string(),
        ));
    }
    let mdigest = desc.get("digest").and_then(Value::as_str).unwrap_or("");
    let mpath = blob_path(&layout, mdigest)
        .ok_or_else(|| bad(format!("bad manifest digest {mdigest:?}")))?;
    let manifest = read_json(&mpath).map_err(bad)?;
    let cdigest = manifest
        .get("config")
        .and_then(|c| c.get("digest"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let cpath =
        blob_path(&layout, cdigest).ok_or_else(|| bad(format!("bad config digest {cdigest:?}")))?;
    let config = read_json(&cpath).map_err(bad)?;
    Ok(image_config_from_json(&config))
}

/// The run-relevant part of an OCI image config document.
pub fn image_config_from_json(doc: &Value) -> ImageConfig {
    let c = doc.get("config");
    let strings = |key: &str| -> Vec<String> {
        c.and_then(|c| c.get(key))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let string = |key: &str| -> String {
        c.and_then(|c| c.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let stop = string("StopSignal");
    ImageConfig {
        env: strings("Env"),
        entrypoint: strings("Entrypoint"),
        cmd: strings("Cmd"),
        working_dir: string("WorkingDir"),
        user: string("User"),
        stop_signal: (!stop.is_empty()).then_some(stop),
    }
}

// ---------------------------------------------------------------- bundles

/// The bundle of a service (one per service; its `rootfs` is the unpacked
/// image, kept across restarts of the same definition).
pub fn bundle_dir(s: &ContainerSettings, service: &str) -> PathBuf {
    s.store_dir.join("bundles").join(service)
}

/// Removes a bundle (fine when absent). Never follows symlinks out of it.
pub fn remove_bundle(bundle: &Path) -> Result<(), ContainerError> {
    remove_tree(bundle)
}

/// Before spawning [`unpack_argv`]: umoci refuses an existing bundle, so
/// the old one goes, and the parent directory must exist.
pub fn prepare_unpack(bundle: &Path) -> Result<(), ContainerError> {
    remove_tree(bundle)?;
    if let Some(parent) = bundle.parent() {
        fs::create_dir_all(parent).map_err(|e| io_err("creating", parent, e))?;
    }
    Ok(())
}

/// `umoci unpack` of the stored image into the bundle (rootfs + a base
/// config.json that [`write_bundle_config`] then rewrites).
pub fn unpack_argv(s: &ContainerSettings, r: &ImageRef, bundle: &Path) -> Vec<String> {
    let (layout, tag) = image_store_path(s, r);
    vec![
        "umoci".to_string(),
        "unpack".to_string(),
        "--image".to_string(),
        format!("{}:{tag}", layout.display()),
        bundle.to_string_lossy().into_owned(),
    ]
}

/// The manifest digest a bundle was unpacked from (umoci.json), to decide
/// whether it is still current for the stored image.
pub fn bundle_image_digest(bundle: &Path) -> Option<String> {
    let doc = read_json(&bundle.join("umoci.json")).ok()?;
    let walk = doc
        .get("from_descriptor_path")?
        .get("descriptor_walk")?
        .as_array()?;
    let d = walk.first()?.get("digest")?.as_str()?;
    valid_digest(d).then(|| d.to_string())
}

fn remove_tree(path: &Path) -> Result<(), ContainerError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("inspecting", path, e)),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(|e| io_err("removing", path, e)),
        Ok(_) => fs::remove_file(path).map_err(|e| io_err("removing", path, e)),
    }
}

/// How the service wants its process run (from its definition).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Empty: the image's entrypoint, then `args` or else the image's cmd.
    /// Set: exactly `cmd` + `args` (the image's entrypoint is not used, as
    /// for a plain service: `cmd` is the executable).
    pub cmd: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    /// `name`, `uid`, `name:group`, `uid:gid`, resolved in the image.
    pub user: Option<String>,
}

/// The process part of config.json, resolved against the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedProcess {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Resolves the service's process against the image: see [`ProcessSpec`].
/// `passwd`/`group` are the image's `/etc/passwd` and `/etc/group`.
pub fn resolve_process(
    spec: &ProcessSpec,
    image: &ImageConfig,
    image_name: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedProcess, ContainerError> {
    let args: Vec<String> = if !spec.cmd.is_empty() {
        std::iter::once(spec.cmd.clone())
            .chain(spec.args.iter().cloned())
            .collect()
    } else {
        let tail = if spec.args.is_empty() {
            &image.cmd
        } else {
            &spec.args
        };
        image
            .entrypoint
            .iter()
            .chain(tail.iter())
            .cloned()
            .collect()
    };
    if args.first().is_none_or(|a| a.is_empty()) {
        return Err(ContainerError::NoCommand {
            image: image_name.to_string(),
        });
    }

    let cwd = match spec.working_dir.as_deref().filter(|d| !d.is_empty()) {
        Some(d) if d.starts_with('/') => d.to_string(),
        Some(d) => return Err(ContainerError::BadWorkingDir { dir: d.to_string() }),
        // Docker accepts a relative WorkingDir in an image, meaning from /.
        None if image.working_dir.is_empty() => "/".to_string(),
        None if image.working_dir.starts_with('/') => image.working_dir.clone(),
        None => format!("/{}", image.working_dir),
    };

    let user_spec = spec
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .or(Some(image.user.as_str()).filter(|u| !u.is_empty()))
        .unwrap_or("0");
    let user = resolve_user(user_spec, passwd, group)?;

    // Image env in its order, then the service's on top (later wins).
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |k: &str, v: &str, env: &mut Vec<(String, String)>| match env
        .iter_mut()
        .find(|(key, _)| key == k)
    {
        Some(slot) => slot.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    };
    for e in &image.env {
        if let Some((k, v)) = e.split_once('=') {
            if !k.is_empty() {
                set(k, v, &mut env);
            }
        }
    }
    for (k, v) in &spec.env {
        set(k, v, &mut env);
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push((
            "HOME".to_string(),
            user.home.clone().unwrap_or_else(|| "/".to_string()),
        ));
    }
    Ok(ResolvedProcess {
        args,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd,
        uid: user.uid,
        gid: user.gid,
        additional_gids: user.additional_gids,
    })
}

struct ResolvedUser {
    uid: u32,
    gid: u32,
    additional_gids: Vec<u32>,
    home: Option<String>,
}

fn field<'a>(e: &[&'a str], i: usize) -> &'a str {
    e.get(i).copied().unwrap_or("")
}

fn resolve_user(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, ContainerError> {
    let unknown = |reason: String| ContainerError::UnknownUser {
        user: spec.to_string(),
        reason,
    };
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    // passwd: name:x:uid:gid:gecos:home:shell
    let entries: Vec<Vec<&str>> = passwd
        .unwrap_or("")
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let (uid, mut gid, name, home) = if let Ok(uid) = u.parse::<u32>() {
        match entries
            .iter()
            .find(|e| field(e, 2).parse::<u32>() == Ok(uid))
        {
            Some(e) => (
                uid,
                field(e, 3).parse::<u32>().unwrap_or(0),
                Some(field(e, 0).to_string()),
                Some(field(e, 5).to_string()).filter(|h| !h.is_empty()),
            ),
            // Docker's rule: an unknown numeric uid runs with gid 0.
            None => (uid, 0, None, None),
        }
    } else {
        let Some(e) = entries.iter().find(|e| field(e, 0) == u) else {
            return Err(unknown(match passwd {
                Some(_) => format!("no user {u:?} in the image's /etc/passwd"),
                None => "the image has no /etc/passwd; use a numeric uid".to_string(),
            }));
        };
        let uid = field(e, 2)
            .parse::<u32>()
            .map_err(|_| unknown(format!("bad uid for {u:?} in the image's /etc/passwd")))?;
        (
            uid,
            field(e, 3).parse::<u32>().unwrap_or(0),
            Some(u.to_string()),
            Some(field(e, 5).to_string()).filter(|h| !h.is_empty()),
        )
    };
    // group: name:x:gid:member,member
    let groups: Vec<Vec<&str>> = group
        .unwrap_or("")
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|e| field(e, 0) == g)
                .and_then(|e| field(e, 2).parse::<u32>().ok())
                .ok_or_else(|| unknown(format!("no group {g:?} in the image's /etc/group")))?,
        };
    }
    let mut additional: Vec<u32> = match &name {
        Some(n) => groups
            .iter()
            .filter(|e| field(e, 3).split(',').any(|m| m == n))
            .filter_map(|e| field(e, 2).parse::<u32>().ok())
            .filter(|&g| g != gid)
            .collect(),
        None => Vec::new(),
    };
    additional.sort_unstable();
    additional.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
        home,
    })
}

/// Reads a small file inside a rootfs, resolving symlinks as if the rootfs
/// were `/` (`openat2` with `RESOLVE_IN_ROOT`): an image whose /etc/passwd
/// is a symlink to /etc/shadow reads its own, never the host's. None when
/// absent, not a regular file, or unreadable.
fn read_in_root(rootfs: &Path, rel: &str) -> Option<String> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let root = fs::File::open(rootfs).ok()?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(root.as_raw_fd(), rel, how).ok()?;
    // SAFETY: openat2 just returned this descriptor; nothing else owns it.
    let file = unsafe { fs::File::from_raw_fd(fd) };
    // O_NONBLOCK and this check: a FIFO planted in the image cannot block us.
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = String::new();
    file.take(MAX_DOC).read_to_string(&mut buf).ok()?;
    Some(buf)
}

/// Checks that the process's program is an executable file in the bundle's
/// rootfs, found as the runtime finds it (a path as given, relative to the
/// working directory; a bare name on the process's `PATH`), symlinks
/// resolved inside the rootfs. A typo then fails the start at once, as for
/// a plain service, instead of a runtime that exits on every restart.
pub fn check_command(
    bundle: &Path,
    proc: &ResolvedProcess,
    image: &str,
) -> Result<(), ContainerError> {
    let cmd = proc.args.first().map(String::as_str).unwrap_or("");
    let rootfs = read_json(&bundle.join("config.json"))
        .ok()
        .and_then(|c| {
            c.get("root")
                .and_then(|r| r.get("path"))
                .and_then(Value::as_str)
                .map(|p| bundle.join(p))
        })
        .unwrap_or_else(|| bundle.join("rootfs"));
    let candidates: Vec<String> = if cmd.contains('/') {
        vec![if cmd.starts_with('/') {
            cmd.to_string()
        } else {
            format!("{}/{cmd}", proc.cwd.trim_end_matches('/'))
        }]
    } else {
        let path = proc
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{cmd}", d.trim_end_matches('/')))
            .collect()
    };
    if candidates.iter().any(|c| executable_in_root(&rootfs, c)) {
        Ok(())
    } else {
        Err(ContainerError::CommandNotFound {
            cmd: cmd.to_string(),
            image: image.to_string(),
        })
    }
}

fn executable_in_root(rootfs: &Path, rel: &str) -> bool {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let Ok(root) = fs::File::open(rootfs) else {
        return false;
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let Ok(fd) = openat2(root.as_raw_fd(), rel, how) else {
        return false;
    };
    // SAFETY: openat2 just returned this descriptor; nothing else owns it.
    let file = unsafe { fs::File::from_raw_fd(fd) };
    file.metadata().is_ok_and(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.is_file() && m.permissions().mode() & 0o111 != 0
    })
}

/// What the supervisor knows about the container it is about to run.
#[derive(Clone, Debug)]
pub struct BundleOptions<'a> {
    /// The service (container name and hostname).
    pub service: &'a str,
    /// The image reference as given (for messages).
    pub image: &'a str,
    pub spec: &'a ProcessSpec,
    pub image_config: &'a ImageConfig,
    /// The service's cgroup relative to the cgroup2 root (`/web.service`
    /// under the init's own cgroup), when the init manages cgroups. With
    /// runc the container goes into its `container` child (runc warns
    /// about, and 1.2 refuses, sharing a cgroup with its own process): so
    /// an emptiness check must be recursive (`cgroup.events` `populated
    /// 0`), and `cgroup.kill` on the service's cgroup reaches the container
    /// (then run `delete_argv`: a runc killed that way leaves its state).
    /// On a v1/v2 hybrid runc also makes the path in every v1 hierarchy and
    /// leaves the empty parents there. None: runc makes a cgroup beside
    /// its own. crun runs with `--cgroup-manager=disabled` and ignores
    /// this: the container stays in crun's own cgroup, the service's.
    /// Absolute (`/x/web.service`) on a pure cgroup2 system; relative
    /// (`x/web.service`) on a hybrid, where runc reads a relative path
    /// against the cgroup2 root for the unified hierarchy but against its
    /// own cgroup in each v1 hierarchy (so a v1 memory limit around the
    /// init still holds the container; an absolute path would escape it).
    pub cgroup_path: Option<&'a str>,
    /// Host files bind-mounted read-only at the same path (see
    /// [`default_host_files`]).
    pub host_files: &'a [PathBuf],
}

/// The [`HOST_FILES`] that exist here.
pub fn default_host_files() -> Vec<PathBuf> {
    HOST_FILES
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

/// Rewrites BUNDLE/config.json (as umoci wrote it) for a supervised
/// service: no terminal; the host's network namespace (so `health_port` is
/// probed on loopback) and its own pid, mount, uts and ipc namespaces;
/// hostname = service name; the resolved process (args, env, cwd, user);
/// Docker's default capabilities for root, none effective for other users;
/// no rlimits of umoci's (the container inherits the init's); the cgroup.
/// Written atomically. Returns the resolved process (for the log).
pub fn write_bundle_config(
    bundle: &Path,
    opts: &BundleOptions<'_>,
) -> Result<ResolvedProcess, ContainerError> {
    let path = bundle.join("config.json");
    let bad = |reason: String| ContainerError::BadBundle {
        path: bundle.to_path_buf(),
        reason,
    };
    let mut doc = read_json(&path).map_err(bad)?;
    let rootfs_rel = doc
        .get("root")
        .and_then(|r| r.get("path"))
        .and_then(Value::as_str)
        .unwrap_or("rootfs")
        .to_string();
    let rootfs = bundle.join(rootfs_rel);
    let passwd = read_in_root(&rootfs, "/etc/passwd");
    let group = read_in_root(&rootfs, "/etc/group");
    let proc = resolve_process(
        opts.spec,
        opts.image_config,
        opts.image,
        passwd.as_deref(),
        group.as_deref(),
    )?;
    edit_config(&mut doc, opts, &proc).map_err(bad)?;
    let text = serde_json::to_vec_pretty(&doc).map_err(|e| bad(e.to_string()))?;
    write_atomic(&path, &text)?;
    Ok(proc)
}

/// The config.json edits of [`write_bundle_config`], on a parsed document.
pub fn edit_config(
    doc: &mut Value,
    opts: &BundleOptions<'_>,
    proc: &ResolvedProcess,
) -> Result<(), String> {
    let top = doc.as_object_mut().ok_or("config.json is not an object")?;

    let process = obj_entry(top, "process")?;
    process.insert("terminal".into(), Value::Bool(false));
    process.remove("consoleSize");
    process.insert("args".into(), str_array(&proc.args));
    process.insert("env".into(), str_array(&proc.env));
    process.insert("cwd".into(), Value::String(proc.cwd.clone()));
    let mut user = Map::new();
    user.insert("uid".into(), proc.uid.into());
    user.insert("gid".into(), proc.gid.into());
    if !proc.additional_gids.is_empty() {
        user.insert(
            "additionalGids".into(),
            Value::Array(proc.additional_gids.iter().map(|&g| g.into()).collect()),
        );
    }
    process.insert("user".into(), Value::Object(user));
    let all = str_array(DEFAULT_CAPS);
    let none = Value::Array(Vec::new());
    let root = proc.uid == 0;
    let mut caps = Map::new();
    caps.insert("bounding".into(), all.clone());
    caps.insert(
        "effective".into(),
        if root { all.clone() } else { none.clone() },
    );
    caps.insert("permitted".into(), if root { all } else { none.clone() });
    caps.insert("inheritable".into(), none.clone());
    caps.insert("ambient".into(), none);
    process.insert("capabilities".into(), Value::Object(caps));
    // Docker's default: setuid helpers (su, gosu-less entrypoints) work.
    process.insert("noNewPrivileges".into(), Value::Bool(false));
    process.remove("rlimits");

    top.insert("hostname".into(), Value::String(opts.service.to_string()));

    let mounts = top
        .entry("mounts")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or("mounts is not an array")?;
    for file in opts.host_files {
        let dest = file.to_string_lossy().into_owned();
        mounts.retain(|m| m.get("destination").and_then(Value::as_str) != Some(dest.as_str()));
        mounts.push(serde_json::json!({
            "destination": dest,
            "type": "bind",
            "source": dest,
            "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
        }));
    }

    let linux = obj_entry(top, "linux")?;
    // No network namespace: the host's (the VM's) network is shared.
    let ns: Vec<Value> = ["pid", "ipc", "uts", "mount"]
        .iter()
        .map(|t| serde_json::json!({ "type": t }))
        .collect();
    linux.insert("namespaces".into(), Value::Array(ns));
    match opts.cgroup_path {
        Some(p) => {
            // Absolute or relative as given: see BundleOptions::cgroup_path.
            let base = p.trim_end_matches('/');
            let path = if base.is_empty() {
                "container".to_string()
            } else {
                format!("{base}/container")
            };
            linux.insert("cgroupsPath".into(), Value::String(path));
        }
        None => {
            linux.remove("cgroupsPath");
        }
    }
    Ok(())
}

fn obj_entry<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>, String> {
    m.entry(key)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| format!("{key} is not an object"))
}

fn str_array<S: AsRef<str>>(items: &[S]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|s| Value::String(s.as_ref().to_string()))
            .collect(),
    )
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ContainerError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = fs::File::create(&tmp).map_err(|e| io_err("creating", &tmp, e))?;
    f.write_all(data).map_err(|e| io_err("writing", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| io_err("renaming", &tmp, e))
}

// ---------------------------------------------------------------- runtime

/// `RUNTIME --root RUN_DIR/<runtime> [flags]`, the same for every command
/// so each sees the others' containers.
fn runtime_base(s: &ContainerSettings) -> Vec<String> {
    let kind = s.runtime_kind();
    let root = runtime_root(s);
    let mut argv = vec![
        s.runtime.clone(),
        "--root".to_string(),
        root.to_string_lossy().into_owned(),
    ];
    if kind == RuntimeKind::Crun {
        // The container stays in crun's cgroup (the service's), and crun
        // needs no eBPF device filter (which needs CAP_SYS_RESOURCE).
        argv.push("--cgroup-manager=disabled".to_string());
    }
    argv
}

/// The container's pid, written by the runtime once it started (host pid
/// namespace). Absolute: crun fails after starting with a relative one.
pub fn container_pid_file(s: &ContainerSettings, service: &str) -> PathBuf {
    s.run_dir.join("pid").join(format!("{service}.pid"))
}

/// The runtime's `--root`: one per runtime kind, they keep different state.
fn runtime_root(s: &ContainerSettings) -> PathBuf {
    s.run_dir.join(match s.runtime_kind() {
        RuntimeKind::Crun => "crun",
        RuntimeKind::Runc => "runc",
    })
}

/// The runtime's state directory for one container: it exists while the
/// runtime knows the container (so a `delete` is needed before a new run
/// of the same name), and is gone once the runtime removed it.
pub fn container_state_dir(s: &ContainerSettings, service: &str) -> PathBuf {
    runtime_root(s).join(service)
}

/// Directories the runtime commands expect (create before the first run).
pub fn runtime_dirs(s: &ContainerSettings) -> Vec<PathBuf> {
    vec![
        s.run_dir.clone(),
        s.run_dir.join("pid"),
        s.run_dir.join("exec"),
    ]
}

/// Foreground `run`: the runtime stays the container's parent, forwards the
/// signals it gets (SIGTERM included) to the container's process, and exits
/// with its status (128+N when killed by signal N); it deletes the container
/// on exit. Supervise this pid. stdin/stdout/stderr pass straight through.
/// `--` keeps a service named `-x` from being read as a flag.
pub fn run_argv(s: &ContainerSettings, service: &str, bundle: &Path) -> Vec<String> {
    let mut argv = runtime_base(s);
    argv.extend([
        "run".to_string(),
        "--bundle".to_string(),
        bundle.to_string_lossy().into_owned(),
        "--pid-file".to_string(),
        container_pid_file(s, service)
            .to_string_lossy()
            .into_owned(),
    ]);
    if s.no_pivot {
        argv.push("--no-pivot".to_string());
    }
    argv.extend(["--".to_string(), service.to_string()]);
    argv
}

/// Signals the container's process (`TERM`, `KILL`, ...). Exits 1 when the
/// container does not exist.
pub fn kill_argv(s: &ContainerSettings, service: &str, signal: &str) -> Vec<String> {
    let mut argv = runtime_base(s);
    argv.extend([
        "kill".to_string(),
        "--".to_string(),
        service.to_string(),
        signal.to_string(),
    ]);
    argv
}

/// Kills (SIGKILL) and removes the container; exits 0 when there is none.
pub fn delete_argv(s: &ContainerSettings, service: &str) -> Vec<String> {
    let mut argv = runtime_base(s);
    argv.extend([
        "delete".to_string(),
        "--force".to_string(),
        "--".to_string(),
        service.to_string(),
    ]);
    argv
}

/// Runs a command inside the running container, described by a process
/// file from [`write_exec_process`] (the container's env, cwd, user and
/// capabilities with other args: crun's plain `exec CMD` would ignore the
/// container's user and cwd, runc's would not, so both get the file).
/// The runtime exits with the command's status; 255 (runc) or 1 (crun)
/// plus a message on stderr when it cannot start it. `pid_file` receives
/// the command's host pid: on a timeout, SIGKILL that pid (SIGKILL to the
/// runtime's exec process would leave the command running; SIGTERM to it
/// is forwarded).
pub fn exec_argv(
    s: &ContainerSettings,
    service: &str,
    process_file: &Path,
    pid_file: Option<&Path>,
) -> Vec<String> {
    let mut argv = runtime_base(s);
    argv.extend([
        "exec".to_string(),
        "--process".to_string(),
        process_file.to_string_lossy().into_owned(),
    ]);
    if let Some(p) = pid_file {
        argv.extend(["--pid-file".to_string(), p.to_string_lossy().into_owned()]);
    }
    argv.extend(["--".to_string(), service.to_string()]);
    argv
}

/// Writes `dest`: the process of BUNDLE/config.json (as
/// [`write_bundle_config`] left it) with `cmd` as its args.
pub fn write_exec_process(
    bundle: &Path,
    cmd: &[String],
    dest: &Path,
) -> Result<(), ContainerError> {
    if cmd.first().is_none_or(|c| c.is_empty()) {
        return Err(ContainerError::EmptyExec);
    }
    let bad = |reason: String| ContainerError::BadBundle {
        path: bundle.to_path_buf(),
        reason,
    };
    let doc = read_json(&bundle.join("config.json")).map_err(bad)?;
    let mut process = doc
        .get("process")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| bad("config.json has no process".to_string()))?;
    process.insert("args".into(), str_array(cmd));
    process.insert("terminal".into(), Value::Bool(false));
    let text = serde_json::to_vec(&Value::Object(process)).map_err(|e| bad(e.to_string()))?;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(|e| io_err("creating", parent, e))?;
    }
    write_atomic(dest, &text)
}

/// Where one exec's process file goes (`id` tells concurrent execs apart;
/// remove it when the exec is over).
pub fn exec_process_file(s: &ContainerSettings, service: &str, id: u64) -> PathBuf {
    s.run_dir.join("exec").join(format!("{service}.{id}.json"))
}

/// Where one exec's pid file goes (remove it when the exec is over).
pub fn exec_pid_file(s: &ContainerSettings, service: &str, id: u64) -> PathBuf {
    s.run_dir.join("exec").join(format!("{service}.{id}.pid"))
}

/// Lists the runtime's containers (for checks and debugging).
pub fn list_argv(s: &ContainerSettings) -> Vec<String> {
    let mut argv = runtime_base(s);
    argv.push("list".to_string());
    argv
}

/// The container's pid from the runtime's pid file (host pid namespace).
/// Only meaningful while the runtime's `run` process is alive: after that
/// the pid may be reused.
pub fn read_container_pid(s: &ContainerSettings, service: &str) -> Option<i32> {
    let text = fs::read_to_string(container_pid_file(s, service)).ok()?;
    text.trim().parse::<i32>().ok().filter(|&p| p > 0)
}

/// True when the kernel will drop `signal` sent to a container's pid 1
/// (text of `/proc/PID/status`): a namespace's init gets only signals it
/// has a handler for. Busybox `httpd` or `sleep` as pid 1 ignore SIGTERM,
/// so a stop can go straight to `kill_argv(.., "KILL")` instead of waiting
/// out `stop_timeout_secs` for nothing.
pub fn pid1_drops_signal(proc_status: &str, signal: i32) -> bool {
    let Some(bit) = u32::try_from(signal)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .filter(|&b| b < 64)
    else {
        return false;
    };
    let caught = proc_status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok());
    match caught {
        Some(mask) => mask & (1u64 << bit) == 0,
        None => false,
    }
}

/// One line saying why a tool (skopeo, umoci, runc, crun) failed, from its
/// stderr: the `msg="..."` of a logrus line, else the last non-empty line.
pub fn tool_error_summary(stderr: &str) -> String {
    let line = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.contains("level=fatal") || l.contains("level=error"))
        .or_else(|| stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("");
    let text = match line.find("msg=\"") {
        Some(i) => unquote_logfmt(line.get(i + 5..).unwrap_or("")),
        None => line.trim_start_matches(['⨯', ' ']).to_string(),
    };
    let mut out: String = text.chars().take(400).collect();
    if out.is_empty() {
        out = "no error message".to_string();
    }
    out
}

fn unquote_logfmt(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push(' '),
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

/// The service's `error` text for a failed pull: names the image and the
/// cause skopeo gave.
pub fn pull_failure_message(image: &str, stderr: &str) -> String {
    format!(
        "pulling image {image} failed: {}",
        tool_error_summary(stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> ContainerSettings {
        ContainerSettings {
            runtime: "runc".to_string(),
            store_dir: dir.join("store"),
            run_dir: dir.join("run"),
            insecure_registries: vec!["reg.example:5000".to_string(), "plain.example".to_string()],
            no_pivot: false,
        }
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("iris-ctr-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn reg(host: &str, name: &str, tag: Option<&str>, digest: Option<&str>) -> ImageRef {
        ImageRef::Registry {
            host: host.into(),
            name: name.into(),
            tag: tag.map(Into::into),
            digest: digest.map(Into::into),
        }
    }

    const D: &str = "sha256:7a628ba5139649c653cd214ad75a23a78713777cb3fc356314fccccef737f530";

    #[test]
    fn short_names_are_docker_hub_library_images() {
        assert_eq!(
            parse_image_ref("redis:7").unwrap(),
            reg("docker.io", "library/redis", Some("7"), None)
        );
        assert_eq!(
            parse_image_ref("redis").unwrap(),
            reg("docker.io", "library/redis", Some("latest"), None)
        );
        assert_eq!(
            parse_image_ref("docker.io/library/redis:7").unwrap(),
            parse_image_ref("redis:7").unwrap()
        );
        assert_eq!(
            parse_image_ref("docker://index.docker.io/bitnami/redis:7.2").unwrap(),
            reg("docker.io", "bitnami/redis", Some("7.2"), None)
        );
    }

    #[test]
    fn registry_host_with_port_is_not_a_tag() {
        assert_eq!(
            parse_image_ref("127.0.0.1:5000/busybox:1").unwrap(),
            reg("127.0.0.1:5000", "busybox", Some("1"), None)
        );
        assert_eq!(
            parse_image_ref("localhost:5000/a/b").unwrap(),
            reg("localhost:5000", "a/b", Some("latest"), None)
        );
        assert_eq!(
            parse_image_ref("registry:5000/x:tag").unwrap(),
            reg("registry:5000", "x", Some("tag"), None)
        );
        assert_eq!(
            parse_image_ref("[::1]:5000/x:1").unwrap(),
            reg("[::1]:5000", "x", Some("1"), None)
        );
        // A plain first component without '.', ':' is part of the name.
        assert_eq!(
            parse_image_ref("myorg/app:2").unwrap(),
            reg("docker.io", "myorg/app", Some("2"), None)
        );
    }

    #[test]
    fn digests_pin_images() {
        let r = parse_image_ref(&format!("127.0.0.1:5000/busybox@{D}")).unwrap();
        assert_eq!(r, reg("127.0.0.1:5000", "busybox", None, Some(D)));
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/busybox@{D}"));
        let r = parse_image_ref(&format!("busybox:1@{D}")).unwrap();
        assert_eq!(r, reg("docker.io", "library/busybox", Some("1"), Some(D)));
    }

    #[test]
    fn oci_layout_references() {
        assert_eq!(
            parse_image_ref("oci:/images/busybox:1").unwrap(),
            ImageRef::OciLayout {
                path: "/images/busybox".into(),
                tag: Some("1".into())
            }
        );
        assert_eq!(
            parse_image_ref("oci:/images/busybox").unwrap(),
            ImageRef::OciLayout {
                path: "/images/busybox".into(),
                tag: None
            }
        );
        assert_eq!(
            parse_image_ref("oci:/images/busybox:1")
                .unwrap()
                .to_string(),
            "oci:/images/busybox:1"
        );
    }

    #[test]
    fn bad_references_say_why() {
        let cases = [
            ("", "empty"),
            ("Redis:7", "lowercase"),
            ("redis:", "tag"),
            ("redis:-x", "tag"),
            ("redis@sha256:abc", "digest"),
            ("redis 7", "whitespace"),
            ("oci:relative/path:1", "absolute"),
            ("oci:/p:bad/tag", "tag"),
            ("http://x/y:1", "only docker://"),
            ("reg.example:99999/x:1", "host"),
            ("reg.example/:1", "name"),
            ("a//b:1", "name"),
            ("a__-b", "separators"),
            ("-x:1", "separators"),
        ];
        for (r, word) in cases {
            let e = parse_image_ref(r).expect_err(r).to_string();
            assert!(e.contains(word), "{r:?}: {e}");
            assert!(
                e.contains(&format!("{r:?}")),
                "{r:?}: message names the reference: {e}"
            );
        }
    }

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
    fn pull_argv_copies_into_a_partial_layout() {
        let s = settings(Path::new("/st"));
        let r = parse_image_ref("127.0.0.1:5000/busybox:1").unwrap();
        let argv = pull_argv(&s, &r);
        assert_eq!(
            argv,
            vec![
                "skopeo",
                "--insecure-policy",
                "copy",
                "--src-tls-verify=false",
                "docker://127.0.0.1:5000/busybox:1",
                "oci:/st/store/pulling/127.0.0.1%3A5000%2Fbusybox%3A1:image",
            ]
        );
        let r = parse_image_ref("redis:7").unwrap();
        let argv = pull_argv(&s, &r);
        assert!(!argv.iter().any(|a| a.contains("tls-verify")));
        assert!(argv.contains(&"docker://docker.io/library/redis:7".to_string()));
        let r = parse_image_ref(&format!("busybox:1@{D}")).unwrap();
        assert!(pull_argv(&s, &r).contains(&format!("docker://docker.io/library/busybox@{D}")));
        let r = parse_image_ref("oci:/img/bb:1").unwrap();
        let argv = pull_argv(&s, &r);
        assert!(argv.contains(&"oci:/img/bb:1".to_string()));
        assert!(!argv.iter().any(|a| a.contains("tls-verify")));
    }

    #[test]
    fn store_keys_are_distinct_and_safe() {
        let refs = [
            "127.0.0.1:5000/busybox:1",
            "127.0.0.1:5000/busybox:2",
            "127.0.0.1:5001/busybox:1",
            "busybox:1",
            "oci:/a/b:1",
            "oci:/a/b",
        ];
        let keys: Vec<String> = refs
            .iter()
            .map(|r| image_key(&parse_image_ref(r).unwrap()))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert!(!k.contains('/') && !k.contains(':'), "{k}");
            assert!(keys.iter().skip(i + 1).all(|o| o != k), "duplicate {k}");
        }
        // Same image, two spellings: one store entry (pulled once).
        assert_eq!(
            image_key(&parse_image_ref("busybox:1").unwrap()),
            image_key(&parse_image_ref("docker.io/library/busybox:1").unwrap())
        );
        let long = format!("reg.example/{}:1", "a/".repeat(120) + "b");
        let k = image_key(&parse_image_ref(&long).unwrap());
        assert!(k.len() <= 200 && k.contains('~'), "{k}");
    }

    fn write_layout(layout: &Path, tag: &str, config: &str) -> String {
        let blobs = layout.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let cdig = "c".repeat(64);
        let mdig = "a".repeat(64);
        fs::write(blobs.join(&cdig), config).unwrap();
        fs::write(
            blobs.join(&mdig),
            format!(r#"{{"schemaVersion":2,"config":{{"digest":"sha256:{cdig}","size":1}},"layers":[]}}"#),
        )
        .unwrap();
        fs::write(
            layout.join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{mdig}","size":1,"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#
            ),
        )
        .unwrap();
        format!("sha256:{mdig}")
    }

    #[test]
    fn a_pull_counts_only_once_finished_and_replaces_an_older_one() {
        let dir = tmpdir("pull");
        let s = settings(&dir);
        let r = parse_image_ref("127.0.0.1:5000/busybox:1").unwrap();
        assert!(!is_pulled(&s, &r));
        prepare_pull(&s, &r).unwrap();
        let partial = partial_path(&s, &r);
        let digest = write_layout(&partial, STORE_TAG, r#"{"config":{"Cmd":["sh"]}}"#);
        assert!(
            !is_pulled(&s, &r),
            "a pull in progress is not a pulled image"
        );
        assert_eq!(finish_pull(&s, &r).unwrap(), digest);
        assert!(is_pulled(&s, &r));
        assert_eq!(image_digest(&s, &r), Some(digest.clone()));
        assert!(!partial.exists());
        assert_eq!(read_image_config(&s, &r).unwrap().cmd, vec!["sh"]);

        // Re-pull: the new image replaces the old.
        prepare_pull(&s, &r).unwrap();
        write_layout(&partial, STORE_TAG, r#"{"config":{"Cmd":["echo","new"]}}"#);
        finish_pull(&s, &r).unwrap();
        assert_eq!(read_image_config(&s, &r).unwrap().cmd, vec!["echo", "new"]);

        // A failed pull that wrote nothing usable is reported, not installed.
        prepare_pull(&s, &r).unwrap();
        fs::create_dir_all(&partial).unwrap();
        assert!(finish_pull(&s, &r).is_err());
        abandon_pull(&s, &r);
        assert!(!partial.exists());
        assert!(is_pulled(&s, &r), "the earlier image is still there");

        remove_image(&s, &r).unwrap();
        assert!(!is_pulled(&s, &r));
        assert!(matches!(
            read_image_config(&s, &r),
            Err(ContainerError::NotPulled { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_store_dir_with_a_colon_is_refused() {
        let mut s = settings(Path::new("/a:b"));
        s.store_dir = "/a:b/store".into();
        let r = parse_image_ref("x:1").unwrap();
        assert!(matches!(
            prepare_pull(&s, &r),
            Err(ContainerError::BadStoreDir { .. })
        ));
    }

    #[test]
    fn image_config_fields_are_read() {
        let doc: Value = serde_json::from_str(
            r#"{"config":{"Env":["PATH=/bin","A=1"],"Entrypoint":["/init"],"Cmd":["run"],"WorkingDir":"/srv","User":"app","StopSignal":"SIGQUIT"}}"#,
        )
        .unwrap();
        let c = image_config_from_json(&doc);
        assert_eq!(c.env, vec!["PATH=/bin", "A=1"]);
        assert_eq!(c.entrypoint, vec!["/init"]);
        assert_eq!(c.cmd, vec!["run"]);
        assert_eq!(c.working_dir, "/srv");
        assert_eq!(c.user, "app");
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(
            image_config_from_json(&serde_json::json!({})),
            ImageConfig::default()
        );
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\naudio:x:29:app\n";

    fn image() -> ImageConfig {
        ImageConfig {
            env: vec![
                "PATH=/usr/bin:/bin".into(),
                "A=image".into(),
                "B=image".into(),
            ],
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into(), "--port=1".into()],
            working_dir: "/srv".into(),
            user: String::new(),
            stop_signal: None,
        }
    }

    #[test]
    fn cmd_replaces_the_entrypoint_and_empty_cmd_uses_the_image() {
        let img = image();
        let spec = ProcessSpec {
            cmd: "httpd".into(),
            args: vec!["-f".into()],
            ..Default::default()
        };
        let p = resolve_process(&spec, &img, "i", None, None).unwrap();
        assert_eq!(p.args, vec!["httpd", "-f"]);

        let spec = ProcessSpec::default();
        let p = resolve_process(&spec, &img, "i", None, None).unwrap();
        assert_eq!(p.args, vec!["/entry", "serve", "--port=1"]);

        let spec = ProcessSpec {
            args: vec!["other".into()],
            ..Default::default()
        };
        let p = resolve_process(&spec, &img, "i", None, None).unwrap();
        assert_eq!(
            p.args,
            vec!["/entry", "other"],
            "args replace the image's cmd"
        );

        let e = resolve_process(
            &ProcessSpec::default(),
            &ImageConfig::default(),
            "img:1",
            None,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("img:1"), "{e}");
    }

    #[test]
    fn service_env_goes_on_top_of_the_image_env() {
        let mut env = BTreeMap::new();
        env.insert("B".to_string(), "service".to_string());
        env.insert("C".to_string(), "service".to_string());
        let spec = ProcessSpec {
            cmd: "x".into(),
            env,
            ..Default::default()
        };
        let p = resolve_process(&spec, &image(), "i", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(
            p.env,
            vec![
                "PATH=/usr/bin:/bin",
                "A=image",
                "B=service",
                "C=service",
                "HOME=/root"
            ]
        );
        // No PATH anywhere: Docker's default.
        let p = resolve_process(&spec, &ImageConfig::default(), "i", None, None).unwrap();
        assert!(p.env.contains(&format!("PATH={DEFAULT_PATH}")));
        assert!(p.env.contains(&"HOME=/".to_string()));
    }

    #[test]
    fn working_dir_and_user_come_from_the_service_else_the_image() {
        let mut img = image();
        img.user = "app".into();
        let p = resolve_process(
            &ProcessSpec::default(),
            &img,
            "i",
            Some(PASSWD),
            Some(GROUP),
        )
        .unwrap();
        assert_eq!((p.uid, p.gid, p.cwd.as_str()), (1000, 1000, "/srv"));
        assert_eq!(p.additional_gids, vec![10, 29]);
        assert!(p.env.contains(&"HOME=/home/app".to_string()));

        let spec = ProcessSpec {
            user: Some("root".into()),
            working_dir: Some("/tmp".into()),
            ..Default::default()
        };
        let p = resolve_process(&spec, &img, "i", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((p.uid, p.gid, p.cwd.as_str()), (0, 0, "/tmp"));

        for (user, uid, gid) in [
            ("1000", 1000, 1000),
            ("4242", 4242, 0),
            ("app:wheel", 1000, 10),
            ("0:29", 0, 29),
        ] {
            let spec = ProcessSpec {
                user: Some(user.into()),
                ..Default::default()
            };
            let p = resolve_process(&spec, &img, "i", Some(PASSWD), Some(GROUP)).unwrap();
            assert_eq!((p.uid, p.gid), (uid, gid), "{user}");
        }
        for user in ["nobody", "app:nogroup"] {
            let spec = ProcessSpec {
                user: Some(user.into()),
                ..Default::default()
            };
            let e = resolve_process(&spec, &img, "i", Some(PASSWD), Some(GROUP)).unwrap_err();
            assert!(
                matches!(e, ContainerError::UnknownUser { .. }),
                "{user}: {e}"
            );
        }
        let spec = ProcessSpec {
            working_dir: Some("relative".into()),
            ..Default::default()
        };
        assert!(matches!(
            resolve_process(&spec, &img, "i", Some(PASSWD), Some(GROUP)),
            Err(ContainerError::BadWorkingDir { .. })
        ));
    }

    /// config.json as umoci 0.4.7 writes it (abridged).
    const UMOCI_CONFIG: &str = r#"{
        "ociVersion": "1.0.0",
        "process": {"terminal": true, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
            "env": ["PATH=/bin", "TERM=xterm", "IMAGE_VAR=from-image", "HOME=/root"], "cwd": "/",
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}], "noNewPrivileges": true},
        "root": {"path": "rootfs"},
        "hostname": "umoci-default",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/etc/hosts", "type": "tmpfs", "source": "tmpfs"}],
        "linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/kcore"]}
    }"#;

    fn make_bundle(tag: &str) -> PathBuf {
        let b = tmpdir(tag);
        fs::write(b.join("config.json"), UMOCI_CONFIG).unwrap();
        fs::create_dir_all(b.join("rootfs/etc")).unwrap();
        fs::write(b.join("rootfs/etc/passwd"), PASSWD).unwrap();
        fs::write(b.join("rootfs/etc/group"), GROUP).unwrap();
        b
    }

    #[test]
    fn bundle_config_is_rewritten_for_supervision() {
        let b = make_bundle("cfg");
        let img = ImageConfig {
            env: vec!["PATH=/bin".into(), "IMAGE_VAR=from-image".into()],
            cmd: vec!["sh".into()],
            ..Default::default()
        };
        let mut env = BTreeMap::new();
        env.insert("IMAGE_VAR".to_string(), "from-service".to_string());
        env.insert("PORT".to_string(), "8080".to_string());
        let spec = ProcessSpec {
            cmd: "httpd".into(),
            args: vec!["-f".into(), "-p".into(), "8080".into()],
            env,
            working_dir: Some("/www".into()),
            user: Some("app".into()),
        };
        let host_files = vec![
            PathBuf::from("/etc/hosts"),
            PathBuf::from("/etc/resolv.conf"),
        ];
        let opts = BundleOptions {
            service: "web",
            image: "127.0.0.1:5000/busybox:1",
            spec: &spec,
            image_config: &img,
            cgroup_path: Some("/iris/web"),
            host_files: &host_files,
        };
        write_bundle_config(&b, &opts).unwrap();
        let c: Value = serde_json::from_slice(&fs::read(b.join("config.json")).unwrap()).unwrap();
        let p = &c["process"];
        assert_eq!(p["terminal"], false);
        assert_eq!(p["args"], serde_json::json!(["httpd", "-f", "-p", "8080"]));
        assert_eq!(
            p["env"],
            serde_json::json!([
                "PATH=/bin",
                "IMAGE_VAR=from-service",
                "PORT=8080",
                "HOME=/home/app"
            ])
        );
        assert_eq!(p["cwd"], "/www");
        assert_eq!(
            p["user"],
            serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 29]})
        );
        assert_eq!(
            p["capabilities"]["effective"],
            serde_json::json!([]),
            "non-root gets no caps"
        );
        assert!(p.get("rlimits").is_none());
        assert_eq!(c["hostname"], "web");
        let ns: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            ns,
            vec!["pid", "ipc", "uts", "mount"],
            "no network namespace"
        );
        assert_eq!(c["linux"]["cgroupsPath"], "/iris/web/container");
        // A relative path stays relative (runc on a v1/v2 hybrid).
        let rel = BundleOptions {
            cgroup_path: Some("iris/web.service"),
            ..opts.clone()
        };
        write_bundle_config(&b, &rel).unwrap();
        let c2: Value = serde_json::from_slice(&fs::read(b.join("config.json")).unwrap()).unwrap();
        assert_eq!(c2["linux"]["cgroupsPath"], "iris/web.service/container");
        // Kept from umoci: masks, devices, the proc mount.
        assert_eq!(
            c["linux"]["maskedPaths"],
            serde_json::json!(["/proc/kcore"])
        );
        let mounts = c["mounts"].as_array().unwrap();
        assert_eq!(mounts[0]["destination"], "/proc");
        let hosts: Vec<&Value> = mounts
            .iter()
            .filter(|m| m["destination"] == "/etc/hosts")
            .collect();
        assert_eq!(
            hosts.len(),
            1,
            "the host's /etc/hosts replaces the image's mount"
        );
        assert_eq!(hosts[0]["type"], "bind");
        assert!(!b.join("config.json.tmp").exists());

        // Root: Docker's caps; no cgroup: no cgroupsPath.
        let spec = ProcessSpec {
            cmd: "sh".into(),
            ..Default::default()
        };
        let opts = BundleOptions {
            spec: &spec,
            cgroup_path: None,
            host_files: &[],
            ..opts
        };
        write_bundle_config(&b, &opts).unwrap();
        let c: Value = serde_json::from_slice(&fs::read(b.join("config.json")).unwrap()).unwrap();
        assert_eq!(
            c["process"]["user"],
            serde_json::json!({"uid": 0, "gid": 0})
        );
        assert_eq!(
            c["process"]["capabilities"]["effective"],
            str_array(DEFAULT_CAPS)
        );
        assert!(c["linux"].get("cgroupsPath").is_none());
        fs::remove_dir_all(&b).unwrap();
    }

    #[test]
    fn the_command_must_be_an_executable_in_the_image() {
        use std::os::unix::fs::PermissionsExt;
        let b = make_bundle("cmdcheck");
        let bin = b.join("rootfs/bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(bin.join("busybox"), "").unwrap();
        fs::set_permissions(bin.join("busybox"), fs::Permissions::from_mode(0o755)).unwrap();
        // An absolute link, as an image has it: resolved inside the rootfs.
        std::os::unix::fs::symlink("/bin/busybox", bin.join("httpd")).unwrap();
        fs::write(bin.join("data"), "").unwrap();
        let proc = |args: &[&str], path: &str| ResolvedProcess {
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![format!("PATH={path}")],
            cwd: "/bin".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
        };
        for ok in [&["httpd"][..], &["/bin/httpd"], &["./busybox", "x"]] {
            assert!(
                check_command(&b, &proc(ok, "/usr/bin:/bin"), "i").is_ok(),
                "{ok:?}"
            );
        }
        for bad in [&["nope"][..], &["data"], &["/bin"], &["/etc/passwd"]] {
            let e = check_command(&b, &proc(bad, "/bin"), "img:1").unwrap_err();
            assert!(
                e.to_string().contains("not found in image img:1"),
                "{bad:?}: {e}"
            );
        }
        assert!(
            check_command(&b, &proc(&["httpd"], "/usr/bin"), "i").is_err(),
            "only the process's PATH is searched"
        );
        fs::remove_dir_all(&b).unwrap();
    }

    #[test]
    fn passwd_symlinks_resolve_inside_the_rootfs() {
        let b = make_bundle("symlink");
        let etc = b.join("rootfs/etc");
        fs::remove_file(etc.join("passwd")).unwrap();
        // Absolute link: must mean ROOTFS/etc/real-passwd, not the host's.
        fs::write(etc.join("real-passwd"), "svc:x:77:77::/s:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/etc/real-passwd", etc.join("passwd")).unwrap();
        assert_eq!(
            read_in_root(&b.join("rootfs"), "/etc/passwd").as_deref(),
            Some("svc:x:77:77::/s:/bin/sh\n")
        );
        // Escaping with .. stays in the root too.
        fs::remove_file(etc.join("passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc/passwd", etc.join("passwd")).unwrap();
        assert_eq!(read_in_root(&b.join("rootfs"), "/etc/passwd"), None);
        // A FIFO does not block.
        fs::remove_file(etc.join("passwd")).unwrap();
        nix::unistd::mkfifo(
            &etc.join("passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        assert_eq!(read_in_root(&b.join("rootfs"), "/etc/passwd"), None);
        fs::remove_dir_all(&b).unwrap();
    }

    #[test]
    fn a_missing_or_broken_config_is_a_clear_error() {
        let b = tmpdir("broken");
        let spec = ProcessSpec {
            cmd: "x".into(),
            ..Default::default()
        };
        let img = ImageConfig::default();
        let opts = BundleOptions {
            service: "s",
            image: "i",
            spec: &spec,
            image_config: &img,
            cgroup_path: None,
            host_files: &[],
        };
        assert!(matches!(
            write_bundle_config(&b, &opts),
            Err(ContainerError::BadBundle { .. })
        ));
        fs::write(b.join("config.json"), "[1]").unwrap();
        let e = write_bundle_config(&b, &opts).unwrap_err().to_string();
        assert!(e.contains("not an object"), "{e}");
        fs::remove_dir_all(&b).unwrap();
    }

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn runtime_argv_for_runc() {
        let s = settings(Path::new("/t"));
        let base = "runc --root /t/run/runc";
        assert_eq!(
            run_argv(&s, "web", Path::new("/t/store/bundles/web")),
            words(&format!(
                "{base} run --bundle /t/store/bundles/web --pid-file /t/run/pid/web.pid -- web"
            ))
        );
        assert_eq!(
            kill_argv(&s, "web", "KILL"),
            words(&format!("{base} kill -- web KILL"))
        );
        // "--" keeps a service named like a flag from being read as one.
        assert_eq!(
            delete_argv(&s, "-d"),
            words(&format!("{base} delete --force -- -d"))
        );
        let pf = exec_process_file(&s, "web", 7);
        let pid = exec_pid_file(&s, "web", 7);
        assert_eq!(
            exec_argv(&s, "web", &pf, Some(&pid)),
            words(&format!(
                "{base} exec --process /t/run/exec/web.7.json --pid-file /t/run/exec/web.7.pid -- web"
            ))
        );
        assert_eq!(list_argv(&s), words(&format!("{base} list")));
    }

    #[test]
    fn crun_gets_no_cgroup_manager_and_no_pivot_on_initramfs() {
        let mut s = settings(Path::new("/t"));
        s.runtime = "/usr/local/bin/crun".into();
        s.no_pivot = true;
        assert_eq!(s.runtime_kind(), RuntimeKind::Crun);
        assert_eq!(
            run_argv(&s, "db", Path::new("/b")),
            words(
                "/usr/local/bin/crun --root /t/run/crun --cgroup-manager=disabled run --bundle /b \
                 --pid-file /t/run/pid/db.pid --no-pivot -- db"
            )
        );
        assert_eq!(
            delete_argv(&s, "db"),
            words("/usr/local/bin/crun --root /t/run/crun --cgroup-manager=disabled delete --force -- db")
        );
    }

    #[test]
    fn exec_process_is_the_containers_with_other_args() {
        let b = make_bundle("exec");
        let img = ImageConfig::default();
        let mut env = BTreeMap::new();
        env.insert("K".to_string(), "v".to_string());
        let spec = ProcessSpec {
            cmd: "httpd".into(),
            env,
            working_dir: Some("/www".into()),
            user: Some("app".into()),
            ..Default::default()
        };
        let opts = BundleOptions {
            service: "web",
            image: "i",
            spec: &spec,
            image_config: &img,
            cgroup_path: None,
            host_files: &[],
        };
        let resolved = write_bundle_config(&b, &opts).unwrap();
        assert_eq!(resolved.uid, 1000);
        let dest = b.join("exec/web.1.json");
        let cmd = vec!["echo".to_string(), "hi".to_string()];
        write_exec_process(&b, &cmd, &dest).unwrap();
        let p: Value = serde_json::from_slice(&fs::read(&dest).unwrap()).unwrap();
        assert_eq!(p["args"], serde_json::json!(["echo", "hi"]));
        assert_eq!(p["cwd"], "/www");
        assert_eq!(p["user"]["uid"], 1000);
        assert!(p["env"].as_array().unwrap().contains(&Value::from("K=v")));
        assert_eq!(p["terminal"], false);
        assert!(matches!(
            write_exec_process(&b, &[], &dest),
            Err(ContainerError::EmptyExec)
        ));
        assert!(matches!(
            write_exec_process(&b, &[String::new()], &dest),
            Err(ContainerError::EmptyExec)
        ));
        fs::remove_dir_all(&b).unwrap();
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

    #[test]
    fn pid1_without_a_term_handler_drops_term() {
        // busybox httpd as a container's pid 1: only SIGHUP is caught.
        let httpd = "Name:\thttpd\nSigIgn:\t0000000000010000\nSigCgt:\t0000000000000001\n";
        assert!(pid1_drops_signal(httpd, libc::SIGTERM));
        assert!(!pid1_drops_signal(httpd, libc::SIGHUP));
        let shell_with_trap = "SigCgt:\t0000000000004002\n";
        assert!(!pid1_drops_signal(shell_with_trap, libc::SIGTERM));
        assert!(
            !pid1_drops_signal("", libc::SIGTERM),
            "unknown: do not assume"
        );
    }

    #[test]
    fn tool_errors_become_one_line() {
        let skopeo = "Getting image source signatures\ntime=\"2026-11-29T00:47:20Z\" level=fatal msg=\"initializing source docker://127.0.0.1:1/busybox:1: pinging container registry 127.0.0.1:1: Get \\\"http://127.0.0.1:1/v2/\\\": dial tcp 127.0.0.1:1: connect: connection refused\"\n";
        assert_eq!(
            pull_failure_message("127.0.0.1:1/busybox:1", skopeo),
            "pulling image 127.0.0.1:1/busybox:1 failed: initializing source docker://127.0.0.1:1/busybox:1: pinging container registry 127.0.0.1:1: Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused"
        );
        assert_eq!(
            tool_error_summary(
                "executable file `x` not found in $PATH: No such file or directory\n"
            ),
            "executable file `x` not found in $PATH: No such file or directory"
        );
        assert_eq!(
            tool_error_summary(
                "   ⨯ create runtime bundle: config.json already exists in bundle\n"
            ),
            "create runtime bundle: config.json already exists in bundle"
        );
        assert_eq!(tool_error_summary(""), "no error message");
    }

    #[test]
    fn bundle_digest_comes_from_umoci_json() {
        let b = tmpdir("umocijson");
        assert_eq!(bundle_image_digest(&b), None);
        fs::write(
            b.join("umoci.json"),
            format!(r#"{{"umoci_version":"2","from_descriptor_path":{{"descriptor_walk":[{{"digest":"{D}"}}]}}}}"#),
        )
        .unwrap();
        assert_eq!(bundle_image_digest(&b).as_deref(), Some(D));
        prepare_unpack(&b).unwrap();
        assert!(!b.exists(), "umoci needs the bundle gone");
        assert!(b.parent().unwrap().exists());
    }
}
pub mod driver;
