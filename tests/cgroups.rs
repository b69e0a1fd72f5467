//! A plain supervisor's cgroups on a real cgroup2 hierarchy: a subtree of
//! its own with a cgroup per service, all gone once it exits cleanly
//! (SIGTERM), except a cgroup that still holds a process, which it names.
//! Needs root and a writable cgroup2 mount: without them these tests fail.

mod common;
use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The cgroup2 mount point, from `/proc/self/mountinfo` (`/sys/fs/cgroup`,
/// or `/sys/fs/cgroup/unified` on a v1/v2 hybrid host).
fn cgroup2_mount() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mount = mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split_whitespace().next()? == "cgroup2").then(|| pre.split_whitespace().nth(4))?
    });
    PathBuf::from(mount.expect("these tests need a cgroup2 hierarchy mounted"))
}

/// The cgroup2 directory a process is in.
fn cgroup_of(pid: i64) -> PathBuf {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    cgroup2_mount().join(rel.trim().trim_start_matches('/'))
}

/// Starts the services, waits until they run; returns each one's cgroup.
fn run_services(init: &Init, names: &[&str]) -> Vec<PathBuf> {
    let def = json!({"cmd": "sleep", "args": ["100000"]}).to_string();
    names
        .iter()
        .map(|name| {
            let (s, v) = init.put(name, &def);
            assert_eq!(s, 201, "{v}");
            let (s, v) = init.req("POST", &format!("/v1/services/{name}/start"), None);
            assert_eq!((s, v["status"].as_str()), (200, Some("running")), "{v}");
            cgroup_of(v["pid"].as_i64().unwrap())
        })
        .collect()
}

/// The supervisor's own subtree, the parent of its services' cgroups.
fn subtree_of(services: &[PathBuf], names: &[&str]) -> PathBuf {
    let subtree = services[0].parent().unwrap().to_path_buf();
    for (dir, name) in services.iter().zip(names) {
        assert_eq!(dir, &subtree.join(format!("{name}.service")));
    }
    let tag = subtree.file_name().unwrap().to_string_lossy();
    assert!(tag.starts_with("iris-"), "{}", subtree.display());
    assert_eq!(
        subtree.parent(),
        Some(cgroup_of(std::process::id().into()).as_path())
    );
    subtree
}

#[test]
fn a_clean_exit_removes_the_supervisors_cgroups() {
    let t = TempDir::new("cg-exit");
    let mut init = Init::start(t.path());
    let names = ["alpha", "beta"];
    let services = run_services(&init, &names);
    let subtree = subtree_of(&services, &names);
    // What an OCI runtime does: cgroups nested in a service's.
    std::fs::create_dir_all(services[0].join("container/inner")).unwrap();
    assert!(init.terminate().success());
    assert!(!subtree.exists(), "{} is left", subtree.display());
}

#[test]
fn a_cgroup_that_still_holds_a_process_stays_and_is_named() {
    let t = TempDir::new("cg-busy");
    let log = t.path().join("init.log");
    let child = Command::new(BIN)
        .args(init_args(t.path()))
        .env("IRIS_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut init = Init {
        child: Some(child),
        dir: t.path().to_path_buf(),
        socket: paths(t.path()).0,
    };
    init.wait_ready();
    let names = ["gamma", "delta"];
    let services = run_services(&init, &names);
    let subtree = subtree_of(&services, &names);
    // A process the supervisor does not stop, in a cgroup of its subtree.
    let stray = subtree.join("stray");
    std::fs::create_dir(&stray).unwrap();
    let mut sleeper = Command::new("sleep").arg("100000").spawn().unwrap();
    std::fs::write(stray.join("cgroup.procs"), sleeper.id().to_string()).unwrap();

    let status = init.terminate();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let err = std::fs::read_to_string(&log).unwrap();
    let kept = std::fs::read_dir(&subtree).map(|d| {
        d.flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    });
    let _ = std::fs::remove_dir(&stray);
    let _ = std::fs::remove_dir(&subtree);
    assert!(status.success(), "{status:?}");
    assert_eq!(
        kept.ok(),
        Some(vec!["stray".to_string()]),
        "only the busy cgroup is kept (and the subtree above it)"
    );
    let warning = format!(
        "cgroup {} is left behind: it still holds pid {}",
        stray.display(),
        sleeper.id()
    );
    assert!(err.contains(&warning), "{err}");
}

#[test]
fn after_a_kill_9_the_next_run_ends_the_leftovers_and_exits_clean() {
    let t = TempDir::new("cg-kill9");
    let mut init = Init::start(t.path());
    let names = ["epsilon"];
    let services = run_services(&init, &names);
    let subtree = subtree_of(&services, &names);
    let first = init.service("epsilon")["pid"].as_i64().unwrap() as i32;
    init.kill();
    assert!(alive(first), "a service outlives a SIGKILLed supervisor");
    assert!(services[0].exists(), "and so does its cgroup");

    let mut init = Init::start(t.path());
    let v = init.wait_status("epsilon", "running");
    let second = v["pid"].as_i64().unwrap();
    assert_eq!(cgroup_of(second), services[0], "same subtree, same cgroup");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while alive(first) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!alive(first), "the previous run's process was ended");
    assert!(init.terminate().success());
    assert!(
        !Path::new(&subtree).exists(),
        "{} is left",
        subtree.display()
    );
}
