//! Never hangs, never dies: hostile inputs and exhausted resources against
//! the real binary. Each test is a way the init once hung, crashed or grew.

mod common;
use common::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};

/// Starts the init with `stderr` as its stderr (its own log).
fn start_with_stderr(dir: &std::path::Path, stderr: Stdio) -> Init {
    let child = Command::new(BIN)
        .args(init_args(dir))
        .env("IRIS_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn iris-init");
    let init = Init {
        child: Some(child),
        dir: dir.to_path_buf(),
        socket: paths(dir).0,
    };
    init.wait_ready();
    init
}

#[test]
fn a_log_nobody_reads_never_freezes_the_init() {
    let t = TempDir::new("console");
    // A pipe whose read end the test holds and never reads: once it is
    // full, a blocking write of the init's own log would stop its loop.
    let mut init = start_with_stderr(t.path(), Stdio::piped());
    let stderr = init.child.as_mut().and_then(|c| c.stderr.take());
    // Each failed start logs a warning that names the 4 KiB command.
    let cmd = format!("/nonexistent/{}", "x".repeat(4000));
    let (s, v) = init.put("loud", &json!({"cmd": cmd}).to_string());
    assert_eq!(s, 201, "{v}");
    let mut c = init.client();
    for i in 0..100 {
        // 100 x 4 KiB: far more than a pipe (64 KiB) holds.
        let (s, v) = c.req("POST", "/v1/services/loud/start", None);
        assert_eq!(s, 409, "start {i}: {v}");
    }
    let (s, v) = c.req("GET", "/v1/system", None);
    assert_eq!(s, 200, "{v}");
    let dropped = v["console_dropped_lines"].as_u64().unwrap_or(0);
    assert!(dropped > 0, "what the console did not take is counted: {v}");
    // A reader comes: what was kept arrives as whole lines, and the log
    // goes on (a last line after the reader came is there too).
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr.expect("piped"), &mut all);
        all
    });
    let (s, v) = init.put("sentinel", r#"{"cmd":"/nonexistent/sentinel"}"#);
    assert_eq!(s, 201, "{v}");
    // Retried until the console took it (the loop offers it again soon).
    let (s, _) = c.req("POST", "/v1/services/sentinel/start", None);
    assert_eq!(s, 409);
    init.terminate();
    let text = String::from_utf8(reader.join().unwrap()).unwrap();
    assert!(
        text.contains("/nonexistent/sentinel"),
        "the last line arrived"
    );
    for line in text.lines() {
        assert!(line.starts_with("iris-init: "), "a torn line: {line:.80}");
    }
    let kept = text.lines().filter(|l| l.contains("xxxxxxxxxx")).count();
    println!("console: {kept} lines kept, {dropped} dropped while nobody read");
}

#[test]
fn arrays_and_huge_timeouts_are_not_definitions() {
    let t = TempDir::new("bodies");
    let init = Init::start(t.path());
    let cases = [
        (r#"["sleep"]"#, "expected an object"),
        (r#"["sleep", ["100"]]"#, "expected an object"),
        (r#""sleep""#, "expected an object"),
        (
            r#"{"cmd":"sleep","stop_timeout_secs":1e19}"#,
            "stop_timeout_secs",
        ),
        (
            r#"{"cmd":"sleep","stop_timeout_secs":3600.5}"#,
            "stop_timeout_secs",
        ),
        (
            r#"{"cmd":"sleep","health_port":9,"health_timeout_secs":1e19}"#,
            "health_timeout_secs",
        ),
        (r#"{"cmd":"sleep","env":{"A=B":"x"}}"#, "env"),
        (r#"{"cmd":"sleep","env":{"":"x"}}"#, "env"),
        (r#"{"cmd":"","container":true,"image":"Foo"}"#, "image"),
        (r#"{"cmd":"","container":true,"image":"-oci:/x"}"#, "image"),
        (
            r#"{"cmd":"","container":true,"image":"oci:relative"}"#,
            "image",
        ),
    ];
    for (body, word) in cases {
        let (s, v) = init.put("x", body);
        assert_eq!(s, 400, "{body}: {v}");
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(msg.contains(word), "{body}: {v}");
    }
    let (s, v) = init.req("GET", "/v1/services/x", None);
    assert_eq!(s, 404, "nothing was defined: {v}");
    // At the limits: accepted, and a stop with the longest timeout still
    // signals the service at once.
    let (s, v) = init.put(
        "x",
        r#"{"cmd":"sleep","args":["100"],"stop_timeout_secs":3600,"health_timeout_secs":86400}"#,
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = init.req("POST", "/v1/services/x/start", None);
    assert_eq!(s, 200, "{v}");
    let (s, v) = init.req("POST", "/v1/services/x/stop", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "stopped", "{v}");
}

#[test]
fn needs_chains_are_limited_to_64() {
    let t = TempDir::new("depth");
    let init = Init::start(t.path());
    let mut c = init.client();
    // c63 <- c62 <- ... <- c0: a chain of 64, the leaf defined first.
    for i in (0..64).rev() {
        let needs: Vec<String> = if i < 63 {
            vec![format!("c{}", i + 1)]
        } else {
            vec![]
        };
        let body = json!({"cmd": "sleep", "args": ["100"], "needs": needs}).to_string();
        let (s, v) = c.req("PUT", &format!("/v1/services/c{i}"), Some(&body));
        assert_eq!(s, 201, "c{i}: {v}");
    }
    let (s, v) = c.req(
        "PUT",
        "/v1/services/top",
        Some(r#"{"cmd":"sleep","needs":["c0"]}"#),
    );
    assert_eq!(s, 409, "{v}");
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(msg.contains("65 services") && msg.contains("64"), "{v}");
    let (s, _) = c.req("GET", "/v1/services/top", None);
    assert_eq!(s, 404, "refused means not defined");
    let (s, v) = c.req("POST", "/v1/services/c0/start", None);
    assert_eq!(s, 200, "the longest allowed chain starts: {v}");
}

/// Writes a state file of `n` API services, `s{i}` needing `s{i+1}`.
fn chain_state_file(dir: &std::path::Path, n: usize) {
    let services: serde_json::Map<String, Value> = (0..n)
        .map(|i| {
            let needs: Vec<String> = if i + 1 < n {
                vec![format!("s{:06}", i + 1)]
            } else {
                vec![]
            };
            (
                format!("s{i:06}"),
                json!({"source": "api", "wanted": "up", "running": true,
                       "definition": {"cmd": "sleep", "args": ["1000"], "needs": needs}}),
            )
        })
        .collect();
    let state = paths(dir).2;
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    let doc = json!({"version": 1, "services": services});
    std::fs::write(&state, serde_json::to_vec(&doc).unwrap()).unwrap();
}

#[test]
fn a_state_file_with_a_huge_needs_chain_boots() {
    let t = TempDir::new("chain");
    // Deep enough that a walk recursing per level overflows the stack.
    chain_state_file(t.path(), 60_000);
    let original_len = std::fs::metadata(paths(t.path()).2).unwrap().len();
    let log = std::fs::File::create(t.path().join("init.log")).unwrap();
    let init = start_with_stderr(t.path(), Stdio::from(log));
    let (s, v) = init.req("GET", "/v1/system", None);
    assert_eq!(s, 200, "{v}");
    let count = v["services"].as_u64().unwrap_or(0);
    assert!((900..=1024).contains(&count), "{v}");
    // Chains of at most 64 were loaded; the rest is reported, not fatal.
    let first = init.service("s000000");
    assert_eq!(first["needs"], json!(["s000001"]), "{first}");
    let log = std::fs::read_to_string(t.path().join("init.log")).unwrap();
    assert!(log.contains("at most 64 are allowed"), "{log:.2000}");
    assert!(log.contains("more services not loaded"), "{log:.2000}");
    let not_loaded = log.lines().filter(|l| l.contains("not loaded")).count();
    assert!(not_loaded <= 11, "a summary, not a line per service");
    // Nothing is lost: the file they came from is kept, and said so.
    let err = v["state_file_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("could not be loaded"), "{v}");
    let kept = err.rsplit("kept as ").next().unwrap_or_default();
    let kept_len = std::fs::metadata(kept).map(|m| m.len()).unwrap_or(0);
    assert_eq!(kept_len, original_len, "{err}");
    let (s, v) = init.req("GET", "/v1/services", None);
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(count as usize));
}

#[test]
fn the_number_of_services_is_limited_to_1024() {
    let t = TempDir::new("count");
    // 1024 independent services from a state file (cheaper than 1024 PUTs,
    // each of which rewrites and fsyncs the state file).
    let services: serde_json::Map<String, Value> = (0..1024)
        .map(|i| {
            (
                format!("s{i:04}"),
                json!({"source": "api", "wanted": "down", "running": false,
                       "definition": {"cmd": "true"}}),
            )
        })
        .collect();
    let state = paths(t.path()).2;
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    std::fs::write(
        &state,
        serde_json::to_vec(&json!({"version": 1, "services": services})).unwrap(),
    )
    .unwrap();
    let init = Init::start(t.path());
    let (_, v) = init.req("GET", "/v1/system", None);
    assert_eq!(v["services"], 1024, "{v}");
    let (s, v) = init.put("one-more", r#"{"cmd":"true"}"#);
    assert_eq!(s, 409, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 1024"),
        "{v}"
    );
    let (s, v) = init.put("s0000", r#"{"cmd":"false"}"#);
    assert_eq!(s, 200, "replacing one is fine: {v}");
    let (s, v) = init.req("DELETE", "/v1/services/s0001", None);
    assert_eq!(s, 200, "{v}");
    let (s, v) = init.put("one-more", r#"{"cmd":"true"}"#);
    assert_eq!(s, 201, "room again after a delete: {v}");
}

#[test]
fn a_fifo_drop_in_does_not_hang_the_start() {
    let t = TempDir::new("fifo");
    let dir = t.path().join("init.d");
    nix::unistd::mkfifo(&dir.join("pipe.toml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::fs::write(
        dir.join("big.toml"),
        format!("cmd = \"true\"\n#{}\n", "x".repeat(1 << 20)),
    )
    .unwrap();
    std::fs::write(dir.join("fine.toml"), "cmd = \"sleep\"\nargs = [\"100\"]\n").unwrap();
    let init = Init::start(t.path());
    let v = init.wait_status("fine", "running");
    assert_eq!(v["source"], "file");
    let pipe = init.service("pipe");
    assert_eq!(pipe["status"], "failed", "{pipe}");
    let err = pipe["error"].as_str().unwrap_or_default();
    assert!(err.contains("not a regular file"), "{pipe}");
    let big = init.service("big");
    let err = big["error"].as_str().unwrap_or_default();
    assert!(err.contains("larger than the limit"), "{big}");
}

#[test]
fn a_supervisor_restarted_after_kill_9_runs_each_service_once() {
    let t = TempDir::new("kill9");
    let mut init = Init::start(t.path());
    // A sleep unusual enough to count these processes by.
    let secs = format!("{}", 2_000_000 + std::process::id());
    let def = json!({"cmd": "sleep", "args": [secs]}).to_string();
    let (s, v) = init.put("once", &def);
    assert_eq!(s, 201, "{v}");
    let (s, v) = init.req("POST", "/v1/services/once/start", None);
    assert_eq!(s, 200, "{v}");
    let first = v["pid"].as_i64().unwrap() as i32;
    init.kill();
    assert!(alive(first), "a service outlives a SIGKILLed supervisor");
    let init = Init::start(t.path());
    let v = init.wait_status("once", "running");
    let second = v["pid"].as_i64().unwrap() as i32;
    assert_ne!(first, second);
    wait_until("the previous run's process to be ended", || !alive(first));
    assert_eq!(pids_with_cmdline(&format!("sleep {secs}")), [second]);
}

#[test]
fn the_image_store_drops_what_nothing_uses_at_boot() {
    let t = TempDir::new("gc");
    let state_dir = paths(t.path()).2.parent().unwrap().to_path_buf();
    // An image no service uses, a pull whose skopeo was killed, its files.
    let junk = [
        state_dir.join("images/docker.io%2Flibrary%2Fgone%3A1"),
        state_dir.join("pulling/docker.io%2Flibrary%2Fkilled%3A1"),
        state_dir.join("tmp/container_images_storage42"),
    ];
    for d in &junk {
        std::fs::create_dir_all(d.join("blobs")).unwrap();
    }
    let init = Init::start(t.path());
    let (s, _) = init.req("GET", "/v1/system", None);
    assert_eq!(s, 200);
    for d in &junk {
        assert!(!d.exists(), "{} is gone", d.display());
    }
}

#[test]
fn the_socket_flag_never_deletes_what_is_not_a_socket() {
    let t = TempDir::new("sockpath");
    let socket = paths(t.path()).0;
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    for kind in ["file", "dir"] {
        if kind == "file" {
            std::fs::write(&socket, "precious").unwrap();
        } else {
            std::fs::create_dir(&socket).unwrap();
        }
        let log = t.path().join("init.log");
        let mut child = Command::new(BIN)
            .args(init_args(t.path()))
            .env("IRIS_LOG", "warn")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let status = wait_child(&mut child, std::time::Duration::from_secs(20));
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(status.is_some_and(|s| !s.success()), "{kind}: refused");
        let err = std::fs::read_to_string(&log).unwrap();
        assert!(err.contains("refusing to replace"), "{kind}: {err}");
        if kind == "file" {
            assert_eq!(std::fs::read_to_string(&socket).unwrap(), "precious");
            std::fs::remove_file(&socket).unwrap();
        } else {
            assert!(socket.is_dir());
            std::fs::remove_dir(&socket).unwrap();
        }
    }
    // A stale socket (nobody serves it) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let init = Init::start(t.path());
    let (s, _) = init.req("GET", "/v1/system", None);
    assert_eq!(s, 200);
}

#[test]
fn a_change_the_state_file_cannot_hold_is_not_a_success() {
    let t = TempDir::new("durable");
    let init = Init::start(t.path());
    let state = paths(t.path()).2;
    let (s, v) = init.put("kept", r#"{"cmd":"sleep","args":["100"]}"#);
    assert_eq!(s, 201, "{v}");
    // The state file is written through a temporary file beside it: a
    // directory in its place makes every write fail (root ignores modes).
    let tmp = state.with_file_name(".state.json.tmp");
    std::fs::create_dir(&tmp).unwrap();
    let (s, v) = init.put("lost", r#"{"cmd":"sleep","args":["100"]}"#);
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"], "state_not_durable", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("state file"),
        "{v}"
    );
    let (s, v) = init.req("POST", "/v1/services/kept/start", None);
    assert_eq!(s, 503, "a wanted state that is not on disk: {v}");
    let (s, v) = init.req("POST", "/v1/checkpoint", None);
    assert_eq!(
        (s, v["error"].as_str()),
        (503, Some("state_not_durable")),
        "{v}"
    );
    // Reads still succeed; the file on disk is the last good one.
    let (s, _) = init.req("GET", "/v1/services/lost", None);
    assert_eq!(s, 200, "made in memory, reported as not durable");
    let on_disk = std::fs::read_to_string(&state).unwrap();
    assert!(on_disk.contains("kept") && !on_disk.contains("lost"));
    // Once the disk takes writes again, the next change is durable, and
    // with it everything before.
    std::fs::remove_dir(&tmp).unwrap();
    let (s, v) = init.put("later", r#"{"cmd":"sleep","args":["100"]}"#);
    assert_eq!(s, 201, "{v}");
    let on_disk = std::fs::read_to_string(&state).unwrap();
    assert!(on_disk.contains("lost") && on_disk.contains("later"));
}

#[test]
fn pipelined_answers_wait_for_a_slow_reader_and_all_arrive() {
    let t = TempDir::new("pipeline");
    let init = Init::start(t.path());
    let (s, v) = init.put(
        "talker",
        r#"{"cmd":"sh","args":["-c","i=0; while [ $i -lt 2000 ]; do echo line $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; exec sleep 1000"]}"#,
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = init.req("POST", "/v1/services/talker/start", None);
    assert_eq!(s, 200, "{v}");
    init.wait_for("talker", "2000 lines", |v| {
        v["log_lines"].as_u64() >= Some(2000)
    });
    // 60 answers of ~120 KB: several times the init's 1 MiB per-connection
    // cap. The init stops reading this connection until it is drained.
    let mut c = init.client();
    let n = 60;
    let one = "GET /v1/services/talker/logs HTTP/1.1\r\nHost: x\r\n\r\n";
    c.send_raw(one.repeat(n).as_bytes());
    let mut bytes = 0;
    for i in 0..n {
        let (s, body) = c.read_response();
        assert_eq!(s, 200, "answer {i}");
        assert!(body.starts_with(b"line 0 "), "answer {i} whole");
        bytes += body.len();
    }
    println!("pipeline: {n} answers, {bytes} bytes, all delivered in order");
    let (s, _) = c.req("GET", "/v1/system", None);
    assert_eq!(s, 200, "the connection goes on");
}

/// The number of open descriptors of a process.
fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn out_of_descriptors_a_client_gets_503_and_the_api_recovers() {
    use std::os::unix::process::CommandExt;
    let t = TempDir::new("emfile");
    let mut cmd = Command::new(BIN);
    cmd.args(init_args(t.path()))
        .env("IRIS_LOG", "error")
        .stdin(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; it only touches the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 48,
                rlim_max: 48,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
    let init = Init {
        child: Some(cmd.spawn().unwrap()),
        dir: t.path().to_path_buf(),
        socket: paths(t.path()).0,
    };
    init.wait_ready();
    // Hold connections (each answered once, so each is accepted) until
    // the init has no descriptor left.
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..100 {
        let mut c = init.client();
        c.send_raw(b"GET /v1/system HTTP/1.1\r\nHost: x\r\n\r\n");
        let (s, body) = c.read_response();
        if s == 503 {
            refused = Some(String::from_utf8_lossy(&body).into_owned());
            break;
        }
        assert_eq!(s, 200);
        held.push(c);
    }
    let refused = refused.expect("a client over the limit is told");
    assert!(refused.contains("file descriptors"), "{refused}");
    println!("emfile: {} connections held, then 503", held.len());
    drop(held);
    // Descriptors free again: the API answers as before.
    wait_until("the API to recover", || {
        init.req("GET", "/v1/system", None).0 == 200
    });
}

#[test]
fn deleted_services_leave_no_descriptor_behind() {
    let t = TempDir::new("fdleak");
    let init = Init::start(t.path());
    let mut c = init.client();
    let before = fd_count(init.pid());
    for i in 0..50 {
        let (s, v) = c.req(
            "PUT",
            &format!("/v1/services/f{i}"),
            Some(r#"{"cmd":"sh","args":["-c","echo hi; exec sleep 100"]}"#),
        );
        assert_eq!(s, 201, "{v}");
        let (s, v) = c.req("POST", &format!("/v1/services/f{i}/start"), None);
        assert_eq!(s, 200, "{v}");
        let (s, v) = c.req("POST", "/v1/exec", Some(r#"{"cmd":["true"]}"#));
        assert_eq!(s, 200, "{v}");
    }
    let during = fd_count(init.pid());
    for i in 0..50 {
        let (s, v) = c.req("DELETE", &format!("/v1/services/f{i}"), None);
        assert_eq!(s, 200, "{v}");
    }
    let after = fd_count(init.pid());
    println!("fds: {before} before, {during} with 50 services, {after} after deleting them");
    // A leak grows with the 50 services; what may appear once is made at
    // first use (the exec pipes' spare, the inotify instance that sees
    // service trees end).
    assert!(after <= before + 3, "{before} -> {after}");
}

/// Whether this process may raise hard resource limits (CAP_SYS_RESOURCE):
/// some container sandboxes drop it even for root.
fn may_raise_hard_limits() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap();
    const CAP_SYS_RESOURCE: u32 = 24;
    eff & (1 << CAP_SYS_RESOURCE) != 0
}

/// PID 1 of a new namespace, powered off (or killed) when dropped.
struct NsInit {
    unshare: std::process::Child,
    init: Init,
}

impl Drop for NsInit {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.init.req("POST", "/v1/system/poweroff", None)
        }));
        if wait_child(&mut self.unshare, std::time::Duration::from_secs(30)).is_none() {
            // The namespace's init is unshare's only child.
            let pid = self.unshare.id();
            let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            for k in kids
                .split_whitespace()
                .filter_map(|k| k.parse::<i32>().ok())
            {
                unsafe { libc::kill(k, libc::SIGKILL) };
            }
            let _ = self.unshare.wait();
        }
    }
}

#[test]
fn as_pid_1_the_hard_limit_of_open_files_is_raised() {
    let t = TempDir::new("nofile");
    let (socket, _, _, _) = paths(t.path());
    let log_path = t.path().join("console.log");
    std::fs::write(&log_path, "").unwrap();
    // PID 1 of a new namespace, started with a low hard limit (the kernel
    // starts init with 4096).
    let unshare = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c"])
        .arg(r#"mount --bind "$0" /dev/console && ulimit -n 4096 && exec "$@""#)
        .arg(&log_path)
        .arg(BIN)
        .args(init_args(t.path()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare is installed (util-linux)");
    let ns = NsInit {
        unshare,
        init: Init {
            child: None,
            dir: t.path().to_path_buf(),
            socket,
        },
    };
    ns.init.wait_ready();
    let (_, sys) = ns.init.req("GET", "/v1/system", None);
    assert_eq!(sys["pid"], 1, "{sys}");
    // A command inherits the init's limits.
    let (s, v) = ns.init.req(
        "POST",
        "/v1/exec",
        Some(r#"{"cmd":["sh","-c","ulimit -Hn"]}"#),
    );
    assert_eq!(s, 200, "{v}");
    let hard: u64 = v["stdout"].as_str().unwrap().trim().parse().unwrap();
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if may_raise_hard_limits() {
        assert_eq!(hard, nr_open.min(1 << 20), "{v}");
    } else {
        // Without CAP_SYS_RESOURCE the init says so, and keeps what it has.
        assert_eq!(hard, 4096, "{v}");
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(
            log.contains("unable to raise the limit of open files"),
            "{log}"
        );
        println!("no CAP_SYS_RESOURCE here: the init reported it could not raise the limit");
    }
}

#[test]
fn exec_bodies_are_checked_before_anything_runs() {
    let t = TempDir::new("execbody");
    let init = Init::start(t.path());
    let (s, v) = init.put("svc", r#"{"cmd":"sleep","args":["100"]}"#);
    assert_eq!(s, 201, "{v}");
    let cases = [
        ("/v1/exec", r#"[["true"]]"#, "expected an object"),
        ("/v1/exec", r#"{"cmd":["env"],"env":{"A=B":"x"}}"#, "env"),
        ("/v1/exec", r#"{"cmd":["env"],"env":{"":"x"}}"#, "env"),
        (
            "/v1/exec",
            r#"{"cmd":["true"],"timeout_ms":86400001}"#,
            "timeout_ms",
        ),
        (
            "/v1/exec",
            r#"{"cmd":["true"],"timeout_ms":0}"#,
            "timeout_ms",
        ),
        (
            "/v1/services/svc/exec",
            r#"{"cmd":["true"],"timeout_secs":1e19}"#,
            "timeout_secs",
        ),
        (
            "/v1/services/svc/exec",
            r#"[["true"], 5]"#,
            "expected an object",
        ),
    ];
    for (path, body, word) in cases {
        let (s, v) = init.req("POST", path, Some(body));
        assert_eq!(s, 400, "{body}: {v}");
        assert!(
            v["message"].as_str().unwrap_or_default().contains(word),
            "{body}: {v}"
        );
    }
    let (s, v) = init.req(
        "POST",
        "/v1/exec",
        Some(r#"{"cmd":["sh","-c","echo $A"],"env":{"A":"a=b"},"timeout_ms":86400000}"#),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["stdout"], "a=b\n", "a value may hold '='");
}

#[test]
fn answers_held_for_the_state_file_keep_their_order() {
    let t = TempDir::new("order");
    let init = Init::start(t.path());
    // A change (held until the state file is written) and a log follow
    // (streamed at once), pipelined: the answers come in request order.
    let mut c = init.client();
    let put = r#"{"cmd":"sleep","args":["100"]}"#;
    let raw = format!(
        "PUT /v1/services/o HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{put}\
         GET /v1/services/o/logs?follow=true HTTP/1.1\r\nHost: x\r\n\r\n",
        put.len()
    );
    c.send_raw(raw.as_bytes());
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while find(&got, b"Transfer-Encoding: chunked").is_none() {
        let n = std::io::Read::read(&mut c.stream, &mut chunk).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    let created = text.find("HTTP/1.1 201").expect("the PUT's answer");
    let follow = text.find("HTTP/1.1 200").expect("the follow's answer");
    assert!(created < follow, "in request order:\n{text}");
}
