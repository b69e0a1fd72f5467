//! A service's bundle: its unpacked rootfs and the `config.json` rewritten
//! for supervision, and the check that the command exists in the image.

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::containers::error::{io_err, ContainerError};
use crate::containers::image::{valid_digest, ImageRef};
use crate::containers::process::{resolve_process, ProcessSpec, ResolvedProcess};
use crate::containers::settings::ContainerSettings;
use crate::containers::store::{image_store_path, read_json, remove_tree, ImageConfig, MAX_DOC};
use crate::persist::state_file::write_atomic;
use crate::proc::spawn::DEFAULT_PATH;

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
    write_atomic(&path, &text).map_err(|e| io_err("writing", &path, e))?;
    Ok(proc)
}

/// The config.json edits of [`write_bundle_config`], on a parsed document.
pub fn edit_config(
    doc: &mut Value,
    opts: &BundleOptions<'_>,
    proc: &ResolvedProcess,
) -> Result<(), String> {
    let top = doc.as_object_mut().ok_or("config.json is not an object")?;
    edit_process(obj_entry(top, "process")?, proc);
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
    edit_linux(obj_entry(top, "linux")?, opts.cgroup_path);
    Ok(())
}

/// The `process` object: the resolved process, no terminal, Docker's caps.
fn edit_process(process: &mut Map<String, Value>, proc: &ResolvedProcess) {
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
}

/// The `linux` object: namespaces and the cgroup path.
fn edit_linux(linux: &mut Map<String, Value>, cgroup_path: Option<&str>) {
    // No network namespace: the host's (the VM's) network is shared.
    let ns: Vec<Value> = ["pid", "ipc", "uts", "mount"]
        .iter()
        .map(|t| serde_json::json!({ "type": t }))
        .collect();
    linux.insert("namespaces".into(), Value::Array(ns));
    match cgroup_path {
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

pub(crate) fn str_array<S: AsRef<str>>(items: &[S]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|s| Value::String(s.as_ref().to_string()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::test_support::{make_bundle, tmpdir, D};
    use std::collections::BTreeMap;

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
