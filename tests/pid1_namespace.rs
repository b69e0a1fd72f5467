//! The init as PID 1 of a new PID namespace: it reaps every orphan there.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn reaps_orphans_as_pid1_of_a_namespace() {
    let t = TempDir::new("pidns");
    let (socket, services, _, _) = paths(t.path());
    std::fs::write(
        services.join("forker.toml"),
        "cmd = \"sh\"\nargs = [\"-c\", \"i=0; while [ $i -lt 100 ]; do (sleep 0.01 &); i=$((i+1)); done; exec sleep 1000\"]\n",
    )
    .unwrap();
    // The init's log: as PID 1 it writes to /dev/console, so a file is
    // bind-mounted there inside the namespace's private mount namespace.
    let log_path = t.path().join("console.log");
    std::fs::write(&log_path, "").unwrap();
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c"])
        .arg(r#"mount --bind "$0" /dev/console && exec "$@""#)
        .arg(&log_path)
        .arg(BIN)
        .args(init_args(t.path()))
        .env("IRIS_LOG", "info")
        .stdin(Stdio::null())
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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, sys) = init.req("GET", "/v1/system", None);
        if sys["zombies_reaped"].as_u64().unwrap() >= 100 {
            break;
        }
        assert!(Instant::now() < deadline, "orphans not reaped: {sys}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(init.service("forker")["status"], "running");
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
    let mut at = 0;
    for line in [
        "starting as PID 1",
        "shutdown (PowerOff) requested by the API",
        "stopped 'forker'",
        "all services stopped",
        "halt: SIGTERM to all processes",
        "halt: sync",
        "halt: powering off",
    ] {
        let found = log[at..].find(line);
        assert!(found.is_some(), "no '{line}' after byte {at}:\n{log}");
        at += found.unwrap() + line.len();
    }
}
