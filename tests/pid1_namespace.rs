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
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(BIN)
        .args(init_args(t.path()))
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
    // Orderly poweroff through the API ends the namespace.
    let (s, _) = init.req("POST", "/v1/system/poweroff", None);
    assert_eq!(s, 202);
    let status = wait_child(&mut child, Duration::from_secs(30));
    assert!(
        status.is_some(),
        "the namespace's init went away after poweroff"
    );
}
