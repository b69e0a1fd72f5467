//! End-to-end supervision with real processes: start/stop/delete, health
//! ports, needs, restarts, reaping, shutdown.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

fn unique_sleep() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    700_000
        + (std::process::id() as u64 % 1000) * 100
        + N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

/// Starts `name` and asserts the answer: 200 and the service running with
/// a pid (so a start that never happened cannot pass for one).
fn start_running(init: &Init, name: &str) -> Value {
    let (s, v) = init.req("POST", &format!("/v1/services/{name}/start"), None);
    assert_eq!(s, 200, "start {name}: {v}");
    assert_eq!(v["name"], name, "{v}");
    assert_eq!(v["status"], "running", "start {name}: {v}");
    assert!(v["pid"].as_i64().is_some_and(|p| p > 0), "{v}");
    v
}

/// The init's cgroup hierarchy: the test needs one it can write.
fn needs_cgroups(init: &Init) -> String {
    let sys = init.system();
    match sys["cgroups"].as_str() {
        Some(base) => base.to_string(),
        None => panic!("this test needs a writable cgroup2 hierarchy: {sys}"),
    }
}

/// A service script that waits for the file `go` in `dir` and then listens
/// on `port`: its start stays pending until the test says go.
fn listener_on_go(dir: &std::path::Path, port: u16) -> String {
    let script = format!(
        "import os,socket,time\nopen('{d}/spawned','w').close()\nwhile not os.path.exists('{d}/go'):\n  time.sleep(0.02)\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',{port}))\ns.listen(64)\nwhile True:\n  c,_=s.accept()\n  c.close()\n",
        d = dir.display()
    );
    serde_json::json!({"cmd": "python3", "args": ["-c", script], "health_port": port}).to_string()
}

#[test]
fn stop_and_delete_leave_no_process_behind() {
    let t = TempDir::new("stop");
    let init = Init::start(t.path());
    let n = unique_sleep();
    let def = format!(r#"{{"cmd":"sh","args":["-c","sleep {n} & sleep {n}"]}}"#);
    assert_eq!(init.put("tree", &def).0, 201);
    let (s, v) = init.req("POST", "/v1/services/tree/start", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "running");
    wait_until("both sleeps to run", || {
        pids_with_cmdline(&format!("sleep {n}")).len() >= 2
    });
    let (s, v) = init.req("POST", "/v1/services/tree/stop", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "stopped");
    assert!(
        pids_with_cmdline(&format!("sleep {n}")).is_empty(),
        "stop answered only once the tree is gone"
    );
    // Stop of a stopped service is 200.
    assert_eq!(init.req("POST", "/v1/services/tree/stop", None).0, 200);

    // Delete of a running service: its tree runs again, then is gone.
    start_running(&init, "tree");
    wait_until("both sleeps to run again", || {
        pids_with_cmdline(&format!("sleep {n}")).len() >= 2
    });
    assert_eq!(init.req("DELETE", "/v1/services/tree", None).0, 200);
    assert!(
        pids_with_cmdline(&format!("sleep {n}")).is_empty(),
        "delete answered only once the tree is gone"
    );
    assert_eq!(init.req("GET", "/v1/services/tree", None).0, 404);
    assert_eq!(init.req("DELETE", "/v1/services/tree", None).0, 404);
}

#[test]
fn start_of_running_is_noop_and_wait_false_answers_at_once() {
    let t = TempDir::new("noop");
    let init = Init::start(t.path());
    let port = free_port();
    init.put(
        "web",
        &format!("{},\"health_port\":{port}}}", listener_after(port, 700)),
    );
    let (s, v) = init.req("POST", "/v1/services/web/start?wait=false", None);
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["status"], "unknown");
    let v = init.wait_status("web", "running");
    let pid = v["pid"].as_i64().unwrap();
    let (s, v) = init.req("POST", "/v1/services/web/start", None);
    assert_eq!((s, v["pid"].as_i64().unwrap()), (200, pid), "same pid");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}

#[test]
fn health_port_gates_running_and_timeout_kills() {
    let t = TempDir::new("health");
    let init = Init::start(t.path());
    let port = free_port();
    assert_eq!(init.put("late", &listener_on_go(t.path(), port)).0, 201);
    let start = std::thread::spawn({
        let sock = init.socket.clone();
        move || Client::connect(&sock).req("POST", "/v1/services/late/start", None)
    });
    // The process runs, its port stays closed until `go`.
    wait_for_files(&t, &["spawned"]);
    let v = init.service("late");
    assert_eq!(
        v["status"], "unknown",
        "not running before its port accepts: {v}"
    );
    assert!(!start.is_finished(), "the start waits for the port");
    std::fs::write(t.path().join("go"), "").unwrap();
    let (s, v) = start.join().unwrap();
    assert_eq!((s, v["status"].as_str()), (200, Some("running")), "{v}");

    // A port that never opens: killed, then failed, with a clear error.
    let n = unique_sleep();
    let port2 = free_port();
    init.put(
        "never",
        &format!(
            r#"{{"cmd":"sleep","args":["{n}"],"health_port":{port2},"health_timeout_secs":0.5}}"#
        ),
    );
    let (s, v) = init.req("POST", "/v1/services/never/start", None);
    assert_eq!(s, 409, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("did not accept"),
        "{v}"
    );
    assert!(
        pids_with_cmdline(&format!("sleep {n}")).is_empty(),
        "killed before failed"
    );
    assert_eq!(init.service("never")["status"], "failed");
}

/// Each service records when it was spawned and when its port opened.
fn chain_member(dir: &std::path::Path, name: &str, port: u16, needs: &[&str]) -> String {
    let script = format!(
        "import socket,time\nopen('{d}/{name}.spawned','w').write(repr(time.time()))\ntime.sleep(0.3)\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',{port}))\ns.listen(8)\nopen('{d}/{name}.listening','w').write(repr(time.time()))\nwhile True:\n  c,_=s.accept()\n  c.close()\n",
        d = dir.display()
    );
    serde_json::json!({"cmd": "python3", "args": ["-c", script], "health_port": port, "needs": needs})
        .to_string()
}

fn read_time(p: std::path::PathBuf) -> f64 {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|_| panic!("{}", p.display()))
        .parse()
        .unwrap()
}

#[test]
fn needs_chain_spawns_each_after_its_need_is_ready() {
    let t = TempDir::new("chain");
    let init = Init::start(t.path());
    let d = t.path();
    init.put("a", &chain_member(d, "a", free_port(), &[]));
    init.put("b", &chain_member(d, "b", free_port(), &["a"]));
    init.put("c", &chain_member(d, "c", free_port(), &["b"]));
    let (s, v) = init.req("POST", "/v1/services/c/start", None);
    assert_eq!(s, 200, "{v}");
    for n in ["a", "b", "c"] {
        assert_eq!(init.service(n)["status"], "running", "{n}");
    }
    assert!(
        read_time(d.join("b.spawned")) >= read_time(d.join("a.listening")),
        "b after a is ready"
    );
    assert!(
        read_time(d.join("c.spawned")) >= read_time(d.join("b.listening")),
        "c after b is ready"
    );
}

/// Restart is stop then start: a need stopped meanwhile is started again,
/// as a start would.
#[test]
fn restart_brings_a_stopped_need_back() {
    let t = TempDir::new("restartneed");
    let init = Init::start(t.path());
    init.put("db", r#"{"cmd":"sleep","args":["1000"]}"#);
    init.put("app", r#"{"cmd":"sleep","args":["1001"],"needs":["db"]}"#);
    let app_pid = start_running(&init, "app")["pid"].clone();
    assert_eq!(init.req("POST", "/v1/services/db/stop", None).0, 200);
    assert_eq!(init.service("app")["status"], "running");
    let (s, v) = init.req("POST", "/v1/services/app/restart", None);
    assert_eq!((s, v["status"].as_str()), (200, Some("running")), "{v}");
    assert_ne!(v["pid"], app_pid, "a new process");
    let db = init.service("db");
    assert_eq!(
        (db["status"].as_str(), db["wanted"].as_str()),
        (Some("running"), Some("up")),
        "{db}"
    );
}

#[test]
fn failing_and_missing_needs_are_clear_errors() {
    let t = TempDir::new("needfail");
    let init = Init::start(t.path());
    init.put("db", r#"{"cmd":"no-such-db-binary-xyz"}"#);
    init.put("app", r#"{"cmd":"sleep","args":["100"],"needs":["db"]}"#);
    let (s, v) = init.req("POST", "/v1/services/app/start", None);
    assert!((400..500).contains(&s), "{s} {v}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("'db'") && msg.contains("not found"), "{msg}");
    let app = init.service("app");
    assert_eq!(app["status"], "failed");
    assert!(
        app["error"].as_str().unwrap().contains("need 'db'"),
        "{app}"
    );
    assert_eq!(
        init.service("db")["error"],
        "cmd 'no-such-db-binary-xyz' not found on PATH"
    );

    init.put(
        "lonely",
        r#"{"cmd":"sleep","args":["100"],"needs":["ghost"]}"#,
    );
    let (s, v) = init.req("POST", "/v1/services/lonely/start", None);
    assert!((400..500).contains(&s));
    assert!(v["message"].as_str().unwrap().contains("'ghost'"), "{v}");

    init.put("x", r#"{"cmd":"sleep","needs":["y"]}"#);
    let (s, v) = init.put("y", r#"{"cmd":"sleep","needs":["x"]}"#);
    assert_eq!(s, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("cycle"), "{v}");
}

#[test]
fn crashed_service_restarts_with_backoff_and_counts() {
    let t = TempDir::new("crash");
    let init = Init::start(t.path());
    let n = unique_sleep();
    init.put("c", &format!(r#"{{"cmd":"sleep","args":["{n}"]}}"#));
    let v = start_running(&init, "c");
    let pid1 = v["pid"].as_i64().unwrap() as i32;
    unsafe { libc::kill(pid1, libc::SIGKILL) };
    let v = init.wait_for("c", "restarted once", |v| {
        v["restarts"] == 1 && v["status"] == "running"
    });
    let pid2 = v["pid"].as_i64().unwrap() as i32;
    assert_ne!(pid1, pid2);
    assert_eq!(v["exit_code"], 137);
    unsafe { libc::kill(pid2, libc::SIGKILL) };
    let v = init.wait_for("c", "restarted twice", |v| {
        v["restarts"] == 2 && v["status"] == "running"
    });
    assert_ne!(v["pid"].as_i64().unwrap() as i32, pid2);

    // A clean exit under on-failure stays stopped; under `never` a failure stays failed.
    init.put("once", r#"{"cmd":"true"}"#);
    start_running(&init, "once");
    let v = init.wait_status("once", "stopped");
    assert_eq!(
        (&v["exit_code"], &v["restarts"]),
        (&0.into(), &0.into()),
        "{v}"
    );
    init.put("bad", r#"{"cmd":"false","restart":"never"}"#);
    start_running(&init, "bad");
    let v = init.wait_status("bad", "failed");
    assert_eq!(v["exit_code"], 1);
    assert_eq!(v["restarts"], 0);
}

#[test]
fn orphans_are_reaped_no_zombie_left() {
    let t = TempDir::new("orphans");
    let init = Init::start(t.path());
    init.put(
        "forker",
        r#"{"cmd":"sh","args":["-c","i=0; while [ $i -lt 200 ]; do (true &); i=$((i+1)); done; exec sleep 1000"]}"#,
    );
    start_running(&init, "forker");
    init.wait_reaped(200, WAIT);
    assert!(
        zombies_of(init.pid()).is_empty(),
        "no zombie under the init"
    );
    needs_cgroups(&init);
    let svc = init.service("forker");
    assert!(
        svc["orphans_reaped"].as_u64().unwrap() >= 200,
        "orphans attributed to their service: {svc}"
    );
}

/// Orphans that left the service's process group (`setsid`) count for it
/// too, by the cgroup they died in; and orphans of two services at once
/// each count for their own.
#[test]
fn orphans_count_for_their_own_service_in_or_out_of_its_group() {
    let t = TempDir::new("orphans2");
    let init = Init::start(t.path());
    needs_cgroups(&init);
    init.put(
        "grouped",
        r#"{"cmd":"sh","args":["-c","i=0; while [ $i -lt 150 ]; do (true &); i=$((i+1)); done; exec sleep 1000"]}"#,
    );
    init.put(
        "escaped",
        r#"{"cmd":"sh","args":["-c","i=0; while [ $i -lt 50 ]; do (setsid true &); i=$((i+1)); done; exec sleep 1000"]}"#,
    );
    start_running(&init, "grouped");
    start_running(&init, "escaped");
    poll(
        WAIT,
        "each orphan counted once, for its own service",
        || {
            let (g, e) = (init.service("grouped"), init.service("escaped"));
            let counts = (g["orphans_reaped"].as_u64(), e["orphans_reaped"].as_u64());
            if counts == (Some(150), Some(50)) {
                Ok(())
            } else {
                Err(format!("{counts:?}"))
            }
        },
    );
    let (_, sys) = init.req("GET", "/v1/system", None);
    assert!(sys["zombies_reaped"].as_u64().unwrap() >= 200, "{sys}");
    assert!(
        zombies_of(init.pid()).is_empty(),
        "no zombie under the init"
    );
}

#[test]
fn stop_kills_setsid_and_double_forked_grandchildren() {
    let t = TempDir::new("escape");
    let init = Init::start(t.path());
    needs_cgroups(&init);
    let n = unique_sleep();
    // The daemon escapes the process group and session of the service.
    let def = format!(r#"{{"cmd":"sh","args":["-c","(setsid sleep {n} &) ; exec sleep {n}"]}}"#);
    init.put("escaper", &def);
    start_running(&init, "escaper");
    wait_until("both sleeps to run", || {
        pids_with_cmdline(&format!("sleep {n}")).len() >= 2
    });
    assert_eq!(init.req("POST", "/v1/services/escaper/stop", None).0, 200);
    assert!(
        pids_with_cmdline(&format!("sleep {n}")).is_empty(),
        "the setsid'd daemon is gone too"
    );
}

/// A crashed service starts again only once its whole tree is gone (its
/// cgroup's `populated 0`, seen without polling): each instance counts the
/// daemons left from the one before, then leaves one of its own that
/// escapes its process group and session, and crashes.
#[test]
fn a_crashed_service_restarts_once_its_whole_tree_is_gone() {
    let t = TempDir::new("retree");
    let init = Init::start(t.path());
    needs_cgroups(&init);
    let n = unique_sleep();
    let left = t.path().join("left.txt");
    let script = format!(
        "pgrep -xf 'sleep {n}' | wc -l >> {l}; (setsid sleep {n} &); sleep 0.2; exit 3",
        l = left.display()
    );
    let def = serde_json::json!({"cmd": "sh", "args": ["-c", script], "restart": "always"});
    init.put("crasher", &def.to_string());
    start_running(&init, "crasher");
    let counts = poll(WAIT, "four starts", || {
        let text = std::fs::read_to_string(&left).unwrap_or_default();
        if text.lines().count() >= 4 {
            Ok(text)
        } else {
            Err(format!("{text:?}"))
        }
    });
    assert_eq!(init.req("POST", "/v1/services/crasher/stop", None).0, 200);
    let counts: Vec<&str> = counts.split_whitespace().collect();
    assert!(
        counts.iter().all(|c| *c == "0"),
        "no daemon of an earlier instance was left when the next one started: {counts:?}"
    );
    assert!(
        pids_with_cmdline(&format!("sleep {n}")).is_empty(),
        "the last daemon is gone with the stop"
    );
}

#[test]
fn fifty_clients_are_served_while_a_start_waits() {
    let t = TempDir::new("fifty");
    let init = Init::start(t.path());
    let port = free_port();
    assert_eq!(init.put("slow", &listener_on_go(t.path(), port)).0, 201);
    let sock = init.socket.clone();
    let pending = std::thread::spawn(move || {
        Client::connect(&sock).req("POST", "/v1/services/slow/start", None)
    });
    // The start is under way (its process runs) and cannot finish before `go`.
    wait_for_files(&t, &["spawned"]);
    assert_eq!(init.service("slow")["status"], "unknown");
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let sock = init.socket.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&sock);
                (0..5)
                    .map(|_| c.req("GET", "/v1/services", None).0)
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    for c in clients {
        assert!(c.join().unwrap().iter().all(|s| *s == 200));
    }
    assert!(
        !pending.is_finished(),
        "the start was still pending while all 50 were served"
    );
    std::fs::write(t.path().join("go"), "").unwrap();
    let (s, v) = pending.join().unwrap();
    assert_eq!((s, v["status"].as_str()), (200, Some("running")), "{v}");
}

#[test]
fn sigterm_stops_in_reverse_order_and_keeps_wanted_state() {
    let t = TempDir::new("sigterm");
    let mut init = Init::start(t.path());
    let d = t.path().display().to_string();
    // Each service logs its own TERM to a shared file.
    let svc = |name: &str, needs: &str| {
        format!(
            r#"{{"cmd":"sh","args":["-c","trap 'echo {name} >> {d}/order; exit 0' TERM; touch {d}/{name}.trapped; while :; do sleep 0.05; done"],"needs":[{needs}]}}"#
        )
    };
    init.put("db", &svc("db", ""));
    init.put("app", &svc("app", "\"db\""));
    init.put("web", &svc("web", "\"app\""));
    assert_eq!(init.req("POST", "/v1/services/web/start", None).0, 200);
    // Running means exec'd, not that the shell has set its trap yet.
    wait_for_files(&t, &["db.trapped", "app.trapped", "web.trapped"]);
    let status = init.terminate();
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}");
    let order = std::fs::read_to_string(t.path().join("order")).unwrap();
    assert_eq!(
        order.split_whitespace().collect::<Vec<_>>(),
        ["web", "app", "db"]
    );
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(t.path().join("state/state.json")).unwrap())
            .unwrap();
    for n in ["db", "app", "web"] {
        assert_eq!(state["services"][n]["wanted"], "up", "{n}: {state}");
    }
}

#[test]
fn spawned_service_gets_clean_signals_and_fds() {
    let t = TempDir::new("clean");
    let init = Init::start(t.path());
    let out = t.path().join("probe.txt");
    let def = serde_json::json!({"cmd":"sh","args":["-c", format!(
        "grep -E '^(SigBlk|SigIgn)' /proc/self/status > {o}; ls /proc/self/fd | tr '\\n' ' ' >> {o}; exec sleep 1000", o = out.display())]});
    init.put("p", &def.to_string());
    start_running(&init, "p");
    wait_until("the probe's output", || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains(' '))
    });
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("SigBlk:\t0000000000000000"), "{text}");
    assert!(text.contains("SigIgn:\t0000000000000000"), "{text}");
    // ls itself opens one fd for the directory it lists.
    let fds: Vec<&str> = text.lines().last().unwrap().split_whitespace().collect();
    assert!(fds.len() <= 4, "only stdio (+ ls's own) fds: {fds:?}");
}

#[test]
fn user_env_and_working_dir_apply() {
    let t = TempDir::new("user");
    let init = Init::start(t.path());
    let out = t.path().join("who");
    std::fs::create_dir_all(t.path().join("wd")).unwrap();
    std::fs::set_permissions(
        t.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::set_permissions(
        t.path().join("wd"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let def = serde_json::json!({"cmd":"sh","args":["-c", format!("echo $(id -u) $(id -g) $GREETING $(pwd) > {}; exec sleep 1000", out.display())],
        "user":"nobody","env":{"GREETING":"hello"},"working_dir": t.path().join("wd")});
    init.put("u", &def.to_string());
    assert_eq!(init.req("POST", "/v1/services/u/start", None).0, 200);
    wait_until("the service's output", || out.exists());
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text.trim(),
        format!("65534 65534 hello {}", t.path().join("wd").display())
    );

    init.put(
        "ghost",
        r#"{"cmd":"sleep","args":["1"],"user":"no-such-user-xyz"}"#,
    );
    let (s, v) = init.req("POST", "/v1/services/ghost/start", None);
    assert!((400..500).contains(&s));
    assert!(
        v["message"].as_str().unwrap().contains("no-such-user-xyz"),
        "{v}"
    );
}

#[test]
fn an_idle_init_never_wakes_up() {
    let t = TempDir::new("idle");
    let init = Init::start(t.path());
    let port = free_port();
    // Short health and stop timeouts: their (cancelled) timers would fall
    // due inside the window below.
    init.put(
        "web",
        &format!(
            "{},\"health_port\":{port},\"health_timeout_secs\":0.6,\"stop_timeout_secs\":0.6}}",
            listener_after(port, 0)
        ),
    );
    init.put("idle", r#"{"cmd":"sleep","args":["1000"]}"#);
    assert_eq!(init.req("POST", "/v1/services/web/start", None).0, 200);
    assert_eq!(init.req("POST", "/v1/services/idle/start", None).0, 200);
    assert_eq!(init.req("POST", "/v1/services/web/stop", None).0, 200);
    assert_idle(init.pid(), Duration::from_millis(100));
}

/// Where cgroup2 is mounted (`/sys/fs/cgroup`, or `.../unified` on a
/// hybrid host).
fn cgroup2_mount() -> std::path::PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split(' ').next() == Some("cgroup2")).then(|| left.split(' ').nth(4))?
        })
        .map(std::path::PathBuf::from)
        .expect("a cgroup2 hierarchy is mounted")
}

/// The cgroup directory of a process.
fn cgroup_of(pid: i64) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no cgroup2 line for {pid}: {text}"));
    cgroup2_mount().join(rel.trim_start_matches('/'))
}

/// The processes in a cgroup; none once the cgroup was removed.
fn procs_of(cgroup: &std::path::Path) -> Vec<i64> {
    match std::fs::read_to_string(cgroup.join("cgroup.procs")) {
        Ok(s) => s.lines().map(|l| l.parse().unwrap()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", cgroup.display()),
    }
}

#[test]
fn two_inits_never_share_a_service_cgroup() {
    let (ta, tb) = (TempDir::new("twin-a"), TempDir::new("twin-b"));
    let (a, b) = (Init::start(ta.path()), Init::start(tb.path()));
    let mut groups = Vec::new();
    for init in [&a, &b] {
        let base = needs_cgroups(init);
        init.put("same", r#"{"cmd":"sleep","args":["1000"]}"#);
        let pid = start_running(init, "same")["pid"].as_i64().unwrap();
        let cg = cgroup_of(pid);
        assert!(cg.starts_with(&base), "{} not under {base}", cg.display());
        assert_eq!(procs_of(&cg), [pid], "{}", cg.display());
        groups.push((cg, pid));
    }
    let ((cg_a, _), (cg_b, pid_b)) = (&groups[0], &groups[1]);
    assert_ne!(cg_a, cg_b, "one service cgroup for both inits");
    assert_eq!(a.req("POST", "/v1/services/same/stop", None).0, 200);
    // The stop answers once A's tree is gone: a shared cgroup would have
    // taken B's process with it by then.
    assert!(procs_of(cg_a).is_empty(), "{}", cg_a.display());
    assert!(alive(*pid_b as i32), "B's service was killed by A's stop");
    assert_eq!(procs_of(cg_b), [*pid_b], "{}", cg_b.display());
    let v = b.service("same");
    assert_eq!(
        (v["status"].as_str(), v["pid"].as_i64()),
        (Some("running"), Some(*pid_b)),
        "{v}"
    );
    assert_eq!(v["restarts"], 0);
}

#[test]
fn a_second_sigterm_during_shutdown_does_not_restart_it() {
    let t = TempDir::new("twice");
    // The init's log (info) in a file: it says when it ignored the second TERM.
    let log_path = t.path().join("init.log");
    let child = std::process::Command::new(BIN)
        .args(init_args(t.path()))
        .env("IRIS_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("spawn iris-init");
    let mut init = Init {
        child: Some(child),
        dir: t.path().to_path_buf(),
        socket: paths(t.path()).0,
    };
    init.wait_ready();
    let d = t.path().display().to_string();
    // Counts the TERMs it gets, and stops only once the test says go.
    init.put(
        "slowstop",
        &format!(r#"{{"cmd":"sh","args":["-c","trap 'echo term >> {d}/terms; while [ ! -e {d}/go ]; do sleep 0.02; done; exit 0' TERM; touch {d}/slowstop.trapped; while :; do sleep 0.05; done"]}}"#),
    );
    start_running(&init, "slowstop");
    wait_for_files(&t, &["slowstop.trapped"]);
    let pid = init.pid();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    // The shutdown is under way once the service got its TERM.
    wait_for_files(&t, &["terms"]);
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let log = || std::fs::read_to_string(&log_path).unwrap();
    poll(WAIT, "the second TERM to be seen", || {
        let log = log();
        if log.contains("shutdown already in progress; ignoring signal") {
            Ok(())
        } else {
            Err(log)
        }
    });
    std::fs::write(t.path().join("go"), "").unwrap();
    let mut child = init.child.take().unwrap();
    let status = wait_child(&mut child, Duration::from_secs(20)).expect("init exits");
    assert!(status.success(), "{status:?}");
    let terms = std::fs::read_to_string(t.path().join("terms")).unwrap();
    assert_eq!(
        terms.lines().count(),
        1,
        "the service was asked to stop once: {terms:?}"
    );
    assert_eq!(log().matches("requested by signal").count(), 1, "{}", log());
}

#[test]
fn a_service_listening_on_ipv6_loopback_only_becomes_running() {
    let t = TempDir::new("ipv6");
    let init = Init::start(t.path());
    let port = free_port();
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,1)\ns.bind(('::1',{port}))\ns.listen(8)\nwhile True:\n  c,_=s.accept()\n  c.close()\n"
    );
    init.put(
        "v6",
        &serde_json::json!({"cmd": "python3", "args": ["-c", script], "health_port": port, "health_timeout_secs": 10})
            .to_string(),
    );
    let (s, v) = init.req("POST", "/v1/services/v6/start", None);
    assert_eq!((s, v["status"].as_str()), (200, Some("running")), "{v}");
}

/// Services are forked without waiting for their exec: a failure after the
/// fork still fails the start with a clear error, and neither that child
/// (exit 127) nor a service that exits at once counts as an orphan.
#[test]
fn failures_after_fork_and_instant_exits_are_no_orphans() {
    use std::os::unix::fs::PermissionsExt;
    let t = TempDir::new("asyncspawn");
    let init = Init::start(t.path());

    let script = t.path().join("script");
    std::fs::write(&script, "#!/nonexistent/interpreter\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    init.put(
        "interp",
        &serde_json::json!({"cmd": script, "restart": "never"}).to_string(),
    );
    let (s, v) = init.req("POST", "/v1/services/interp/start", None);
    assert!((400..600).contains(&s), "{s} {v}");
    let svc = init.service("interp");
    assert_eq!(svc["status"], "failed");
    let error = svc["error"].as_str().unwrap();
    assert!(
        error.contains("cannot execute") && error.contains("interpreter (#! line)"),
        "{svc}"
    );

    // Only the chdir in the child, as nobody, can find this one.
    let private = t.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    init.put(
        "nocd",
        &serde_json::json!({"cmd": "pwd", "user": "nobody", "working_dir": private,
            "restart": "never"})
        .to_string(),
    );
    let (s, v) = init.req("POST", "/v1/services/nocd/start", None);
    assert!((400..600).contains(&s), "{s} {v}");
    let svc = init.service("nocd");
    assert_eq!(svc["status"], "failed");
    let error = svc["error"].as_str().unwrap();
    assert!(
        error.contains("bad working_dir") && error.contains("denied"),
        "{svc}"
    );

    // `true` may exit before its exec is noticed: still a clean exit 0.
    init.put("quick", r#"{"cmd":"true"}"#);
    let mut pids = std::collections::HashSet::new();
    for _ in 0..20 {
        // Each start really spawns (a new pid), and its exit is seen.
        let pid = start_running(&init, "quick")["pid"].clone();
        assert!(pids.insert(pid.to_string()), "pid {pid} again");
        let v = init.wait_for("quick", "exited", |v| {
            v["status"] == "stopped" && v["exit_code"] == 0
        });
        assert!(v["error"].is_null(), "{v}");
    }

    let (_, sys) = init.req("GET", "/v1/system", None);
    assert_eq!(sys["zombies_reaped"], 0, "{sys}");
    for name in ["interp", "nocd", "quick"] {
        let svc = init.service(name);
        assert_eq!(svc["orphans_reaped"], 0, "{svc}");
    }
}

/// Waits until the test directory holds every file named.
fn wait_for_files(t: &TempDir, names: &[&str]) {
    wait_until(&format!("{names:?}"), || {
        names.iter().all(|n| t.path().join(n).exists())
    });
}
