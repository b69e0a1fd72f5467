//! The OCI runtime's command lines (`run`, `kill`, `delete`, `exec`), its
//! state and pid files, and what a container's pid 1 does with a signal.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::containers::bundle::str_array;
use crate::containers::error::{io_err, ContainerError};
use crate::containers::settings::{ContainerSettings, RuntimeKind};
use crate::containers::store::read_json;
use crate::persist::state_file::write_atomic;

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
    write_atomic(dest, &text).map_err(|e| io_err("writing", dest, e))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::bundle::{write_bundle_config, BundleOptions};
    use crate::containers::process::ProcessSpec;
    use crate::containers::store::ImageConfig;
    use crate::containers::test_support::{make_bundle, settings};
    use std::collections::BTreeMap;

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
}
