//! The init as PID 1 of a new PID namespace: it reaps every orphan there.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn reaps_orphans_as_pid1_of_a_namespace() {
    pid1_in_a_namespace(Stdio::Given);
}

/// Without stdio (as when the kernel finds no console node) the init puts
/// `/dev/console` on fds 0-2 once it can: its log reaches the console.
#[test]
fn a_pid1_without_stdio_logs_to_the_console() {
    pid1_in_a_namespace(Stdio::Closed);
}

/// How the namespace's init is started.
#[derive(PartialEq)]
enum Stdio {
    /// With its stderr on a file, as a container runtime or `unshare`
    /// would start it: the init keeps it.
    Given,
    /// With fds 0-2 closed, and a file bind-mounted on `/dev/console` in
    /// the namespace's private mount namespace.
    Closed,
}

fn pid1_in_a_namespace(stdio: Stdio) {
    let t = TempDir::new("pidns");
    let (socket, services, _, _) = paths(t.path());
    // Both tests' inits run in this process's cgroup (no cgroup namespace):
    // each has a service of its own name, so neither stops the other's.
    let name = match stdio {
        Stdio::Given => "forker",
        Stdio::Closed => "forker2",
    };
    std::fs::write(
        services.join(format!("{name}.toml")),
        "cmd = \"sh\"\nargs = [\"-c\", \"i=0; while [ $i -lt 100 ]; do (sleep 0.01 &); i=$((i+1)); done; exec sleep 1000\"]\n",
    )
    .unwrap();
    // Inside its own mount and UTS namespaces, before the init runs: the
    // init's log goes wherever its stdio is, and what reaches the console
    // to a file bind-mounted on /dev/console; the root is made a read-only
    // bind mount (the test directory stays writable), so the halt does not
    // try to remount the host's root file system read-only nor set the
    // host's name.
    let log_path = t.path().join("init.log");
    let console_path = t.path().join("console.log");
    std::fs::write(&log_path, "").unwrap();
    std::fs::write(&console_path, "").unwrap();
    let open_log = || {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .unwrap()
    };
    let (script, out, err, console) = match stdio {
        Stdio::Given => (
            r#"mount --bind "$1" /dev/console && mount --bind "$2" "$2" &&
               mount -o remount,bind,ro / && shift 2 && exec "$@""#,
            std::process::Stdio::from(open_log()),
            std::process::Stdio::from(open_log()),
            &console_path,
        ),
        Stdio::Closed => (
            r#"mount --bind "$1" /dev/console && mount --bind "$2" "$2" &&
               mount -o remount,bind,ro / && shift 2 && exec "$@" 0<&- 1>&- 2>&-"#,
            std::process::Stdio::null(),
            std::process::Stdio::null(),
            &log_path,
        ),
    };
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--uts", "sh", "-c"])
        .arg(script)
        .arg("sh")
        .arg(console)
        .arg(t.path())
        .arg(BIN)
        .args(init_args(t.path()))
        .env("IRIS_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("unshare is installed (util-linux)");
    let init = Init {
        child: None,
        dir: t.path().to_path_buf(),
        socket,
    };
    init.wait_ready();
    let (_, sys) = init.req("GET", "/v1/system", None);
    assert_eq!(sys["pid"], 1, "the init is PID 1 in its namespace: {sys}");
    assert_eq!(sys["pid1"], true);
    // It leads a session of its own, not its launcher's.
    let init_pid = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
        .unwrap()
        .trim()
        .to_string();
    let session_of = |pid: &str| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.split(' ').nth(3).unwrap().to_string()
    };
    assert_eq!(
        session_of(&init_pid),
        init_pid,
        "the init leads its session"
    );
    assert_ne!(
        session_of(&child.id().to_string()),
        init_pid,
        "the launcher is in another session"
    );
    init.wait_reaped(100, WAIT);
    assert_eq!(init.service(name)["status"], "running");
    // Orderly poweroff through the API: services stopped, the halt steps,
    // then reboot(2), which ends a PID namespace by killing its init with
    // SIGINT for a power off (unshare passes that on as its own death).
    let (s, v) = init.req("POST", "/v1/system/poweroff", None);
    assert_eq!(s, 202, "{v}");
    let status = wait_child(&mut child, Duration::from_secs(30))
        .expect("the namespace's init went away after poweroff");
    use std::os::unix::process::ExitStatusExt;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(
        (status.code(), status.signal()),
        (None, Some(libc::SIGINT)),
        "{status:?}; log:\n{log}"
    );
    let stopped = format!("stopped '{name}'");
    let mut at = 0;
    for line in [
        "starting as PID 1",
        "shutdown (PowerOff) requested by the API",
        &stopped,
        "all services stopped",
        "halt: SIGTERM to all processes",
        "halt: sync",
        "halt: powering off",
    ] {
        let found = log[at..].find(line);
        assert!(found.is_some(), "no '{line}' after byte {at}:\n{log}");
        at += found.unwrap() + line.len();
    }
    if stdio == Stdio::Given {
        let console = std::fs::read_to_string(&console_path).unwrap();
        assert_eq!(
            console, "",
            "the init kept its stderr; nothing goes to the console"
        );
    }
    assert!(!log.contains("remount / read-only"), "{log}");
}
