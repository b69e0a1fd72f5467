//! Container services end to end: a busybox image built here, pushed to a
//! registry on 127.0.0.1 started here, pulled and run by the init with a
//! real OCI runtime. Needs root and the packages in
//! `tests/support/oci-packages.txt`: without them these tests fail (they
//! never skip).

mod common;
use common::*;
use iris_init::containers::bundle::bundle_dir;
use iris_init::containers::runtime::list_argv;
use iris_init::containers::settings::ContainerSettings;
use iris_init::proc::spawn::find_on_init_path;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// One image and one registry for every test of this file.
struct Fixture {
    /// `127.0.0.1:PORT/busybox:1`
    image: String,
    registry_port: u16,
    /// The OCI layout the image was built in (for `oci:` references).
    layout: PathBuf,
}

fn oci_sh(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/oci.sh");
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tests/support/oci.sh");
    assert!(
        out.status.success(),
        "oci.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        assert!(
            nix::unistd::geteuid().is_root(),
            "container tests must run as root"
        );
        let missing: Vec<&str> = ["skopeo", "umoci", "docker-registry", "runc", "busybox"]
            .into_iter()
            .filter(|t| find_on_init_path(t).is_err())
            .collect();
        assert!(
            missing.is_empty(),
            "missing tools {missing:?}: apt-get install $(grep -v '^#' tests/support/oci-packages.txt)"
        );
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("ctr-fixture-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let layout = dir.join("img");
        oci_sh(&["image", layout.to_str().unwrap(), "1"]);
        let reg = oci_sh(&["registry", dir.join("reg").to_str().unwrap()]);
        let mut words = reg.split_whitespace();
        let port: u16 = words.next().unwrap().parse().unwrap();
        let pid: i32 = words.next().unwrap().parse().unwrap();
        // The registry goes when this test process does, however it ends:
        // the watchdog reads a pipe only this process holds open.
        let mut watchdog = Command::new("sh")
            .args([
                "-c",
                "read _; kill \"$0\"; while kill -0 \"$0\" 2>/dev/null; do sleep 0.05; done; rm -rf \"$1\"",
            ])
            .arg(pid.to_string())
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the registry watchdog");
        std::mem::forget(watchdog.stdin.take());
        std::mem::forget(watchdog);
        let image = format!("127.0.0.1:{port}/busybox:1");
        oci_sh(&["push", &format!("{}:1", layout.display()), &image]);
        Fixture {
            image,
            registry_port: port,
            layout,
        }
    })
}

fn put(init: &Init, name: &str, def: Value) {
    let (s, v) = init.put(name, &def.to_string());
    assert!(s == 200 || s == 201, "PUT {name}: {s} {v}");
}

fn start(init: &Init, name: &str) -> (u16, Value) {
    init.req("POST", &format!("/v1/services/{name}/start"), None)
}

fn exec(init: &Init, name: &str, body: Value) -> (u16, Value) {
    init.req(
        "POST",
        &format!("/v1/services/{name}/exec"),
        Some(&body.to_string()),
    )
}

fn http_get(port: u16) -> String {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    c.read_to_string(&mut body).unwrap();
    body
}

/// The runtime settings the init under test uses (same directories).
fn settings(dir: &Path) -> ContainerSettings {
    let (socket, _, state, _) = paths(dir);
    ContainerSettings::from_env(
        state.parent().unwrap(),
        &socket.parent().unwrap().join("iris"),
    )
}

/// Container names the runtime knows under the init's `--root`.
fn runtime_containers(dir: &Path) -> Vec<String> {
    let argv = list_argv(&settings(dir));
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .arg("-q")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{argv:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(dir.to_str().unwrap()))
        .map(str::to_string)
        .collect()
}

fn log_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(paths(dir).3.join(format!("{name}.log"))).unwrap_or_default()
}

#[test]
fn container_serves_execs_and_leaves_nothing_behind() {
    let f = fixture();
    let t = TempDir::new("ctr-web");
    let init = Init::start(t.path());
    let port = free_port();
    put(
        &init,
        "ctr-web",
        json!({"cmd": "httpd", "args": ["-f", "-p", port.to_string(), "-h", "/www"],
               "container": true, "image": f.image, "health_port": port,
               "env": {"SERVICE_VAR": "from-service"}, "working_dir": "/www", "user": "user"}),
    );
    // A plain service that needs the container: it records what the
    // container served when it started, so it must start after it.
    let page = t.path().join("page");
    let script = format!(
        "import socket,time\ns=socket.create_connection(('127.0.0.1',{port}))\ns.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\nd=b''\nwhile True:\n  c=s.recv(65536)\n  if not c: break\n  d+=c\nopen('{p}','wb').write(d)\ntime.sleep(100000)\n",
        p = page.display()
    );
    put(
        &init,
        "ctr-client",
        json!({"cmd": "python3", "args": ["-c", script], "needs": ["ctr-web"], "restart": "never"}),
    );
    let (s, v) = start(&init, "ctr-client");
    assert_eq!((s, v["status"].as_str()), (200, Some("running")), "{v}");
    wait_until("the client's fetch", || page.exists());
    wait_until("the page", || {
        std::fs::read_to_string(&page).is_ok_and(|p| p.contains("hello from the busybox image"))
    });

    let web = init.service("ctr-web");
    assert_eq!(web["status"], "running", "{web}");
    assert_eq!(web["container"], true);
    assert_eq!(web["image"], f.image.as_str());
    let digest = web["image_digest"].as_str().unwrap_or("");
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{web}");
    let web = init.wait_for("ctr-web", "its container", |v| v["container_pid"].is_i64());
    let cpid = web["container_pid"].as_i64().unwrap() as i32;
    assert!(alive(cpid));
    assert!(http_get(port).contains("hello from the busybox image"));
    assert!(log_of(t.path(), "ctr-web").contains("pulling image"));

    // Exec inside: the container's env, cwd, user and hostname.
    let (s, v) = exec(
        &init,
        "ctr-web",
        json!({"cmd": ["sh", "-c", "echo $IMAGE_VAR $SERVICE_VAR $(pwd) $(id -u) $(hostname); echo oops >&2; exit 3"]}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["stdout"], "from-image from-service /www 1000 ctr-web\n",
        "{v}"
    );
    assert_eq!(v["stderr"], "oops\n");
    assert_eq!(v["exit_code"], 3);
    let (_, v) = exec(&init, "ctr-web", json!({"cmd": ["cat", "/www/index.html"]}));
    assert_eq!(
        (v["stdout"].as_str(), v["exit_code"].as_i64()),
        (Some("hello from the busybox image\n"), Some(0))
    );
    let (_, v) = exec(
        &init,
        "ctr-web",
        json!({"cmd": ["cat"], "stdin": "fed through the runtime"}),
    );
    assert_eq!(v["stdout"], "fed through the runtime", "{v}");
    // A timeout kills the command inside the container, not just the runtime.
    let n = 400_000 + std::process::id() % 100_000;
    let (_, v) = exec(
        &init,
        "ctr-web",
        json!({"cmd": ["sleep", n.to_string()], "timeout_secs": 0.3}),
    );
    assert_eq!(v["timed_out"], true, "{v}");
    wait_until("the timed-out command to go", || {
        pids_with_cmdline(&format!("sleep {n}")).is_empty()
    });

    // Stop: nothing of the container is left when the answer comes.
    let (s, v) = init.req("POST", "/v1/services/ctr-web/stop", None);
    assert_eq!((s, v["status"].as_str()), (200, Some("stopped")), "{v}");
    assert!(!alive(cpid), "the container's process is gone");
    assert!(runtime_containers(t.path()).is_empty());
    assert!(pids_with_cmdline(&format!("httpd -f -p {port}")).is_empty());
    assert!(mounts_under(t.path()).is_empty());
    assert_eq!(init.service("ctr-client")["status"], "running");
    let (s, v) = exec(&init, "ctr-web", json!({"cmd": ["true"]}));
    assert_eq!(s, 409, "exec into a stopped container: {v}");

    // Start again (the bundle is reused), then delete.
    let (s, v) = start(&init, "ctr-web");
    assert_eq!((s, v["status"].as_str()), (200, Some("running")), "{v}");
    assert_eq!(v["image_pulls"], 1, "no second pull: {v}");
    let v = init.wait_for("ctr-web", "its container", |v| v["container_pid"].is_i64());
    let cpid = v["container_pid"].as_i64().unwrap() as i32;
    let (s, v) = init.req("DELETE", "/v1/services/ctr-web", None);
    assert_eq!(s, 200, "{v}");
    assert!(!alive(cpid));
    assert!(runtime_containers(t.path()).is_empty());
    assert!(mounts_under(t.path()).is_empty());
    let bundle = bundle_dir(&settings(t.path()), "ctr-web");
    assert!(!bundle.exists(), "the bundle goes with the service");
}

#[test]
fn crash_inside_restarts_and_stop_reaches_pid_1() {
    let f = fixture();
    let t = TempDir::new("ctr-crash");
    let init = Init::start(t.path());
    let n = 500_000 + std::process::id() % 100_000;
    put(
        &init,
        "ctr-crash",
        json!({"cmd": "sleep", "args": [n.to_string()], "container": true, "image": f.image}),
    );
    let (s, v) = start(&init, "ctr-crash");
    assert_eq!((s, v["status"].as_str()), (200, Some("running")), "{v}");
    let runtime = v["pid"].as_i64().unwrap();
    // Without a health port, running means the runtime runs: the container's
    // own process comes a moment later.
    let v = init.wait_for("ctr-crash", "its container", |v| {
        v["container_pid"].is_i64()
    });
    let cpid = v["container_pid"].as_i64().unwrap() as i32;
    // A crash: the container's pid 1 dies.
    unsafe { libc::kill(cpid, libc::SIGKILL) };
    let v = init.wait_for("ctr-crash", "a restart", |v| {
        v["restarts"] == 1 && v["status"] == "running" && v["container_pid"].is_i64()
    });
    assert_ne!(v["pid"].as_i64().unwrap(), runtime);
    assert_eq!(v["exit_code"], 137);
    let cpid2 = v["container_pid"].as_i64().unwrap() as i32;
    assert_ne!(cpid2, cpid);
    assert_eq!(runtime_containers(t.path()), vec!["ctr-crash".to_string()]);

    // sleep as pid 1 has no TERM handler: the kernel drops SIGTERM, so the
    // stop kills it at once instead of waiting out stop_timeout_secs.
    let (s, v) = init.req("POST", "/v1/services/ctr-crash/stop", None);
    assert_eq!((s, v["status"].as_str()), (200, Some("stopped")), "{v}");
    assert!(log_of(t.path(), "ctr-crash").contains("no SIGTERM handler"));
    assert!(!alive(cpid2));
    assert!(runtime_containers(t.path()).is_empty());

    // A pid 1 with a handler gets the SIGTERM (through the runtime).
    put(
        &init,
        "ctr-trap",
        json!({"cmd": "sh", "container": true, "image": f.image,
               "args": ["-c", "trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.05; done"]}),
    );
    let (s, v) = start(&init, "ctr-trap");
    assert_eq!(s, 200, "{v}");
    wait_until("the trap", || {
        log_of(t.path(), "ctr-trap").contains("ready")
    });
    let (s, v) = init.req("POST", "/v1/services/ctr-trap/stop", None);
    assert_eq!((s, v["status"].as_str()), (200, Some("stopped")), "{v}");
    assert_eq!(v["exit_code"], 0, "{v}");
    assert!(log_of(t.path(), "ctr-trap").contains("got TERM"));
    assert!(runtime_containers(t.path()).is_empty());
}

#[test]
fn bad_image_references_fail_with_clear_messages() {
    let f = fixture();
    let t = TempDir::new("ctr-bad");
    let init = Init::start(t.path());
    let closed = free_port();
    // A reference that cannot be one is refused when it is defined.
    let syntax = format!("127.0.0.1:{}/BusyBox:1", f.registry_port);
    let (s, v) = init.put(
        "ctr-syntax",
        &json!({"cmd": "sh", "container": true, "image": syntax}).to_string(),
    );
    assert_eq!(s, 400, "{v}");
    let msg = v["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("bad image reference") && msg.contains(&syntax) && msg.contains("`image`"),
        "{msg}"
    );
    let cases = [
        (
            "ctr-unknown",
            format!("127.0.0.1:{}/nope:1", f.registry_port),
            "manifest unknown",
        ),
        (
            "ctr-down",
            format!("127.0.0.1:{closed}/busybox:1"),
            "connection refused",
        ),
    ];
    for (name, image, cause) in &cases {
        put(
            &init,
            name,
            json!({"cmd": "sh", "container": true, "image": image}),
        );
        let (s, v) = start(&init, name);
        assert_eq!(s, 409, "{name}: {v}");
        let msg = v["message"].as_str().unwrap_or("");
        assert!(
            msg.contains(image.as_str()) && msg.contains(cause),
            "{name}: {msg}"
        );
        let svc = init.service(name);
        assert_eq!(svc["status"], "failed");
        assert!(svc["error"].as_str().unwrap().contains(cause), "{svc}");
        assert_eq!(svc["image_digest"], Value::Null);
    }
    // A command the image does not have fails the start, as for a plain
    // service, instead of a runtime that exits on every restart.
    put(
        &init,
        "ctr-nocmd",
        json!({"cmd": "no-such-cmd", "container": true, "image": f.image}),
    );
    let (s, v) = start(&init, "ctr-nocmd");
    assert_eq!(s, 409, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains(&format!("cmd 'no-such-cmd' not found in image {}", f.image)),
        "{v}"
    );
    assert_eq!(init.service("ctr-nocmd")["restarts"], 0);

    let unknown = format!("127.0.0.1:{}/nope:1", f.registry_port);
    assert!(
        log_of(t.path(), "ctr-unknown").contains(&format!("pulling image {unknown} failed")),
        "the cause is in the service's log too"
    );
    assert!(runtime_containers(t.path()).is_empty());
}

#[test]
fn one_pull_serves_every_service_on_the_image() {
    let f = fixture();
    let t = TempDir::new("ctr-pull");
    let init = Init::start(t.path());
    for name in ["ctr-a", "ctr-b"] {
        put(
            &init,
            name,
            json!({"cmd": "sleep", "args": ["100000"], "container": true, "image": f.image}),
        );
    }
    // Starting both at once (as needs of one service): the second waits
    // for the first one's pull.
    put(
        &init,
        "ctr-both",
        json!({"cmd": "sleep", "args": ["100000"], "needs": ["ctr-a", "ctr-b"]}),
    );
    let (s, v) = start(&init, "ctr-both");
    assert_eq!((s, v["status"].as_str()), (200, Some("running")), "{v}");
    for name in ["ctr-a", "ctr-b"] {
        let v = init.service(name);
        assert_eq!(
            (v["status"].as_str(), v["image_pulls"].as_i64()),
            (Some("running"), Some(1)),
            "{v}"
        );
    }
    let logs = log_of(t.path(), "ctr-a") + &log_of(t.path(), "ctr-b");
    assert_eq!(logs.matches("[iris] pulling image").count(), 1, "{logs}");
    assert!(logs.contains("waiting for the pull"), "{logs}");

    // Later: the image is in the store, no pull at all.
    put(
        &init,
        "ctr-c",
        json!({"cmd": "sleep", "args": ["100000"], "container": true, "image": f.image}),
    );
    let (s, v) = start(&init, "ctr-c");
    assert_eq!((s, v["image_pulls"].as_i64()), (200, Some(1)), "{v}");
    // Its log exists and shows the start, without a pull.
    let log = std::fs::read_to_string(paths(t.path()).3.join("ctr-c.log")).unwrap();
    assert!(log.contains("[iris] unpacking image"), "{log}");
    assert!(!log.contains("pulling"), "{log}");

    // Unless asked: start?pull=true pulls the image again.
    assert_eq!(init.req("POST", "/v1/services/ctr-c/stop", None).0, 200);
    let (s, v) = init.req("POST", "/v1/services/ctr-c/start?pull=true", None);
    assert_eq!((s, v["image_pulls"].as_i64()), (200, Some(2)), "{v}");

    // A local OCI layout is a reference of its own.
    let local = format!("oci:{}:1", f.layout.display());
    put(
        &init,
        "ctr-local",
        json!({"cmd": "sleep", "args": ["100000"], "container": true, "image": local}),
    );
    let (s, v) = start(&init, "ctr-local");
    assert_eq!((s, v["status"].as_str()), (200, Some("running")), "{v}");
    assert_eq!(v["image_pulls"], 1);
    assert_eq!(
        v["image_digest"],
        init.service("ctr-a")["image_digest"],
        "the same image either way"
    );
    wait_until("four containers", || {
        let mut names = runtime_containers(t.path());
        names.sort();
        names == ["ctr-a", "ctr-b", "ctr-c", "ctr-local"]
    });
}

#[test]
fn restore_after_an_init_restart_brings_the_container_back() {
    let f = fixture();
    let t = TempDir::new("ctr-restore");
    let port = free_port();
    let mut first = Init::start(t.path());
    put(
        &first,
        "ctr-keep",
        json!({"cmd": "httpd", "args": ["-f", "-p", port.to_string(), "-h", "/www"],
               "container": true, "image": f.image, "health_port": port}),
    );
    let (s, v) = start(&first, "ctr-keep");
    assert_eq!((s, v["status"].as_str()), (200, Some("running")), "{v}");
    let runtime = v["pid"].as_i64().unwrap() as i32;
    // The runtime writes the container's pid file just after starting it.
    let v = first.wait_for("ctr-keep", "its container", |v| v["container_pid"].is_i64());
    let old = v["container_pid"].as_i64().unwrap() as i32;

    // The init and the runtime die; the container lives on as an orphan.
    first.kill();
    unsafe { libc::kill(runtime, libc::SIGKILL) };
    wait_until("the runtime to die", || !alive(runtime));
    assert!(alive(old));

    let second = Init::start(t.path());
    let v = second.wait_status("ctr-keep", "running");
    assert!(!alive(old), "the stale container was removed first");
    assert_eq!(v["image_pulls"], 0, "the store kept the image: {v}");
    assert!(http_get(port).contains("hello from the busybox image"));
    assert_eq!(runtime_containers(t.path()), vec!["ctr-keep".to_string()]);
    let (s, v) = exec(&second, "ctr-keep", json!({"cmd": ["hostname"]}));
    assert_eq!((s, v["stdout"].as_str()), (200, Some("ctr-keep\n")), "{v}");
}

#[test]
fn readiness_checks_of_a_container_run_inside_it() {
    let f = fixture();
    let t = TempDir::new("ctr-checks");
    let init = Init::start(t.path());
    // The file exists only in the container's own file system: the check
    // passes only when it runs inside the container.
    let ready = format!("/tmp/ready-{}", std::process::id());
    assert!(!Path::new(&ready).exists());
    put(
        &init,
        "ctr-exec",
        json!({"cmd": "sh", "args": ["-c", format!("sleep 0.3; touch {ready}; exec sleep 100000")],
               "container": true, "image": f.image,
               "health": {"exec": ["test", "-f", ready], "interval_ms": 50}}),
    );
    let (s, v) = start(&init, "ctr-exec");
    assert_eq!((s, v["status"].as_str()), (200, Some("running")), "{v}");
    assert!(
        v["health_result"]
            .as_str()
            .unwrap_or_default()
            .contains("exited with code 0"),
        "{v}"
    );
    assert!(!Path::new(&ready).exists(), "not the host's file");
    put(
        &init,
        "ctr-log",
        json!({"cmd": "sh", "args": ["-c", "sleep 0.3; echo the container says ready; exec sleep 100000"],
               "container": true, "image": f.image,
               "health": {"log": "container says ready"}}),
    );
    let (s, v) = start(&init, "ctr-log");
    assert_eq!((s, v["status"].as_str()), (200, Some("running")), "{v}");
    assert!(log_of(t.path(), "ctr-log").contains("the container says ready"));
}

/// The cgroups a process is in, one path per hierarchy: cgroup2 and, on
/// a v1/v2 hybrid host, each cgroup v1 hierarchy (matched by controllers).
fn cgroups_of(pid: i32) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts: Vec<(String, Vec<String>)> = mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mut post = post.split_whitespace();
            let fstype = post.next()?;
            let opts = post.nth(1)?.split(',').map(str::to_string).collect();
            let kind = match fstype {
                "cgroup2" => vec![String::new()],
                "cgroup" => opts,
                _ => return None,
            };
            Some((pre.split_whitespace().nth(4)?.to_string(), kind))
        })
        .collect();
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    own.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            let (mount, _) = mounts
                .iter()
                .find(|(_, opts)| ctrls.split(',').all(|c| opts.iter().any(|o| o == c)))?;
            Some(Path::new(mount).join(path.trim_start_matches('/')))
        })
        .collect()
}

#[test]
fn a_clean_exit_leaves_no_cgroup_of_a_container_behind() {
    let f = fixture();
    let t = TempDir::new("ctr-cgexit");
    let mut init = Init::start(t.path());
    let n = 600_000 + std::process::id() % 100_000;
    put(
        &init,
        "ctr-cg",
        json!({"cmd": "sleep", "args": [n.to_string()], "container": true, "image": f.image}),
    );
    let (s, v) = start(&init, "ctr-cg");
    assert_eq!((s, v["status"].as_str()), (200, Some("running")), "{v}");
    let v = init.wait_for("ctr-cg", "its container", |v| v["container_pid"].is_i64());
    let cpid = v["container_pid"].as_i64().unwrap() as i32;
    // The runtime nests the container's cgroup in the service's, under the
    // supervisor's own subtree: in cgroup2 and, with runc on a hybrid
    // host, in every v1 hierarchy too. Each is cut at the subtree.
    let subtrees: Vec<PathBuf> = cgroups_of(cpid)
        .into_iter()
        .filter_map(|dir| {
            let tail = ["ctr-cg.service", "container"];
            let names: Vec<_> = dir.iter().rev().take(2).collect();
            (names == [tail[1], tail[0]]).then(|| dir.parent()?.parent().map(Path::to_path_buf))?
        })
        .collect();
    assert!(!subtrees.is_empty(), "{:?}", cgroups_of(cpid));
    for dir in &subtrees {
        let tag = dir.file_name().unwrap().to_string_lossy();
        assert!(
            tag.starts_with("iris-") && dir.exists(),
            "{}",
            dir.display()
        );
    }
    assert!(init.terminate().success());
    assert!(!alive(cpid));
    let left: Vec<&PathBuf> = subtrees.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
