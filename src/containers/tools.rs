//! The container tools (skopeo, umoci, the OCI runtime's commands) run as
//! children of the init: their environment, their program, and their
//! stderr kept for error messages. The driver tracks them; the one reaper
//! ends them.

use crate::core::supervisor::Pid;
use crate::io::Io;
use crate::output::logs::Logs;
use crate::proc::spawn::{self, SpawnSpec};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Most bytes of a tool's stderr kept for its error message and the log.
pub(super) const STDERR_TAIL: u64 = 64 * 1024;
/// Variables of the init's environment the tools get (registry
/// credentials, proxies, certificates); nothing else leaks into them.
const TOOL_ENV: &[&str] = &[
    "HOME",
    "XDG_RUNTIME_DIR",
    "REGISTRY_AUTH_FILE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Starts a tool in its own session, outside every service cgroup (a
/// `cgroup.kill` of the service must not hit its own `delete`). stdout
/// goes to the service's log; stderr to a memory file read at its exit
/// (for the error message, then copied to the log).
pub(super) fn spawn_tool(
    io: &mut Io,
    logs: &mut Logs,
    log: Option<&str>,
    argv: &[String],
    extra_env: &[(String, String)],
    cgroup_procs: Option<&Path>,
) -> Result<(Pid, Option<File>), String> {
    let program = tool_program(argv)?;
    let (argv0, args) = argv.split_first().ok_or("empty command")?;
    let stdout: OwnedFd = match log {
        Some(name) => logs
            .writer_for(io, name)
            .map(|(out, _)| out)
            .map_err(|e| format!("cannot open the log of '{name}': {e}"))?,
        None => File::options()
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|e| format!("cannot open /dev/null: {e}"))?,
    };
    let capture = nix::sys::memfd::memfd_create(
        c"iris-tool-stderr",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map(File::from)
    .map_err(|e| format!("cannot create a memory file: {e}"))?;
    let stderr = capture
        .try_clone()
        .map(OwnedFd::from)
        .map_err(|e| format!("cannot duplicate a descriptor: {e}"))?;
    let env = tool_env(extra_env);
    let pid = spawn::spawn(SpawnSpec {
        program: &program,
        argv0,
        args,
        env: &env,
        working_dir: None,
        user: None,
        stdin: None,
        stdout,
        stderr,
        cgroup_procs,
        new_session: true,
    })
    .map_err(|e| e.to_string())?;
    crate::debug!("container tool pid {pid}: {}", argv.join(" "));
    Ok((pid, Some(capture)))
}

pub(super) fn tool_env(extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = vec![("PATH".to_string(), spawn::init_path())];
    for k in TOOL_ENV {
        if let Ok(v) = std::env::var(k) {
            env.push((k.to_string(), v));
        }
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".to_string(), "/root".to_string()));
    }
    env.extend(extra.iter().cloned());
    env
}

/// The tool's executable, looked up on the init's `PATH`.
pub(super) fn tool_program(argv: &[String]) -> Result<PathBuf, String> {
    let cmd = argv.first().ok_or("empty command")?;
    spawn::find_on_init_path(cmd).map_err(|e| e.to_string())
}

/// The end of what a tool wrote to its stderr.
pub(super) fn read_tail(mut f: File) -> String {
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if f.seek(SeekFrom::Start(len.saturating_sub(STDERR_TAIL)))
        .is_err()
    {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(STDERR_TAIL).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::error;

    #[test]
    fn a_tools_stderr_tail_is_kept() {
        let mut f =
            nix::sys::memfd::memfd_create(c"t", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
                .map(File::from)
                .unwrap();
        let long = "x".repeat(STDERR_TAIL as usize);
        std::io::Write::write_all(&mut f, long.as_bytes()).unwrap();
        std::io::Write::write_all(&mut f, b"\nlevel=fatal msg=\"boom\"\n").unwrap();
        let tail = read_tail(f);
        assert_eq!(tail.len() as u64, STDERR_TAIL);
        assert_eq!(error::tool_error_summary(&tail), "boom");
    }

    #[test]
    fn tools_get_path_and_home_and_nothing_else_unasked() {
        let env = tool_env(&[("TMPDIR".into(), "/store/tmp".into())]);
        let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys.first(), Some(&"PATH"));
        assert!(keys.contains(&"HOME"));
        assert!(keys.contains(&"TMPDIR"));
        assert!(keys
            .iter()
            .all(|k| *k == "PATH" || *k == "TMPDIR" || TOOL_ENV.contains(k)));
    }
}
