//! Shared test harness: runs the real `iris-init` binary on temporary
//! directories and talks HTTP to it over its socket.
#![allow(dead_code)]

use iris_init::client::{Conn, Request};
use serde_json::Value;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_iris-init");
pub const CTL: &str = env!("CARGO_BIN_EXE_irisctl");

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // Under the target dir, not /tmp: a PID-1 init may mount a tmpfs on /tmp.
        let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("it-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("init.d")).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running init; killed (and its services with it) on drop.
pub struct Init {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub socket: PathBuf,
}

pub fn paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    (
        dir.join("run/services.sock"),
        dir.join("init.d"),
        dir.join("state/state.json"),
        dir.join("logs"),
    )
}

/// The init's flags for a test directory.
pub fn init_args(dir: &Path) -> Vec<PathBuf> {
    let (socket, services, state, logs) = paths(dir);
    vec![
        "--socket".into(),
        socket,
        "--services-dir".into(),
        services,
        "--state-file".into(),
        state,
        "--log-dir".into(),
        logs,
    ]
}

impl Init {
    pub fn start(dir: &Path) -> Init {
        Self::start_with(dir, &[])
    }

    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> Init {
        let socket = paths(dir).0;
        let mut cmd = Command::new(BIN);
        cmd.args(init_args(dir)).stdin(Stdio::null()).env(
            "IRIS_LOG",
            std::env::var("IRIS_LOG").unwrap_or_else(|_| "warn".into()),
        );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn iris-init");
        let init = Init {
            child: Some(child),
            dir: dir.to_path_buf(),
            socket,
        };
        init.wait_ready();
        init
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&self.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "iris-init did not open its socket"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket)
    }

    /// One request on a fresh connection.
    pub fn req(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.client().req(method, path, body)
    }

    pub fn put(&self, name: &str, def: &str) -> (u16, Value) {
        self.req("PUT", &format!("/v1/services/{name}"), Some(def))
    }

    pub fn service(&self, name: &str) -> Value {
        let (s, v) = self.req("GET", &format!("/v1/services/{name}"), None);
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Waits until `f(service)` holds.
    pub fn wait_for(&self, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        poll(WAIT, &format!("{name}: {what}"), || {
            let v = self.service(name);
            if f(&v) {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        })
    }

    /// `GET /v1/system`.
    pub fn system(&self) -> Value {
        let (s, v) = self.req("GET", "/v1/system", None);
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Waits (at most `limit`) until the init has reaped at least `n`
    /// zombies; returns `/v1/system` then.
    pub fn wait_reaped(&self, n: u64, limit: Duration) -> Value {
        poll(limit, &format!("{n} orphans reaped"), || {
            let sys = self.system();
            if sys["zombies_reaped"].as_u64().unwrap_or(0) >= n {
                Ok(sys)
            } else {
                Err(sys.to_string())
            }
        })
    }

    /// The report of the restore the init made at boot, once it is complete.
    pub fn boot_report(&self) -> Value {
        poll(WAIT, "the boot restore report", || {
            let (_, r) = self.req("GET", "/v1/restore", None);
            if r["trigger"] == "boot" {
                Ok(r)
            } else {
                Err(r.to_string())
            }
        })
    }

    pub fn wait_status(&self, name: &str, status: &str) -> Value {
        self.wait_for(name, status, |v| v["status"] == status)
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        wait_child(&mut child, Duration::from_secs(30)).expect("init exits after SIGTERM")
    }

    /// SIGKILL, as a crash or a VM reset would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            if wait_child(&mut c, Duration::from_secs(15)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// How long a test waits for a condition before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Calls `f` every 10 ms until it answers `Ok`, for at most `limit`, and
/// returns that answer. An `Err` says what `f` saw, for the panic that
/// names `what` once time is up.
pub fn poll<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}{}{last}",
            if last.is_empty() { "" } else { "; last: " }
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (at most `WAIT`) until `f()` holds.
pub fn wait_until(what: &str, f: impl FnMut() -> bool) {
    wait_within(WAIT, what, f)
}

/// Waits at most `limit` until `f()` holds.
pub fn wait_within(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    poll(
        limit,
        what,
        || if f() { Ok(()) } else { Err(String::new()) },
    )
}

/// The voluntary context switches of `pid` so far: a sleeping process
/// makes none.
pub fn voluntary_switches(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The init (`pid`) sleeps: after `settle` (for what is under way to end),
/// it wakes up not once in 1.5 s.
pub fn assert_idle(pid: i32, settle: Duration) {
    std::thread::sleep(settle);
    let before = voluntary_switches(pid);
    std::thread::sleep(Duration::from_millis(1500));
    let woke = voluntary_switches(pid) - before;
    assert_eq!(woke, 0, "the init woke up {woke} times while idle");
}

pub fn wait_child(c: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A keep-alive HTTP/1.1 client over the socket: the library's client,
/// with answers as the tests want them and a panic on any failure.
pub struct Client {
    /// A second handle on the socket, for tests that write raw bytes.
    pub stream: UnixStream,
    conn: Conn<UnixStream>,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let conn = Conn::connect(path, Some(Duration::from_secs(60))).expect("connect to socket");
        let stream = conn.stream().try_clone().unwrap();
        Client { stream, conn }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.conn.send(bytes).unwrap();
    }

    pub fn req(&mut self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (s, b) = self.req_bytes(method, path, body);
        let v = if b.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&b).unwrap_or(Value::String(String::from_utf8_lossy(&b).into()))
        };
        (s, v)
    }

    pub fn req_bytes(&mut self, method: &str, path: &str, body: Option<&str>) -> (u16, Vec<u8>) {
        let req = Request::new(method, path).body(body.unwrap_or(""));
        self.send_raw(&req.encode());
        self.read_response()
    }

    /// Reads one response.
    pub fn read_response(&mut self) -> (u16, Vec<u8>) {
        let resp = self
            .conn
            .read_response()
            .unwrap_or_else(|e| panic!("reading a response: {e}"));
        (resp.status, resp.body)
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Is a process with this pid alive (not a zombie)?
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .chars()
                .next();
            state != Some('Z') && state != Some('X')
        }
        Err(_) => false,
    }
}

/// Pids of processes whose command line contains `needle`.
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) && alive(pid) {
                out.push(pid);
            }
        }
    }
    out
}

/// Zombie children of `parent`.
pub fn zombies_of(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            let rest: Vec<&str> = s
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            if rest.first() == Some(&"Z")
                && rest.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(parent)
            {
                out.push(pid);
            }
        }
    }
    out
}

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A command line that listens on `port` after `delay_ms` and stays up.
pub fn listener_after(port: u16, delay_ms: u64) -> String {
    format!(
        r#"{{"cmd":"python3","args":["-c","import socket,time\ntime.sleep({d})\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',{port}))\ns.listen(64)\nwhile True:\n  c,_=s.accept()\n  c.close()\n"]"#,
        d = delay_ms as f64 / 1000.0
    )
}

/// A unique marker to find a test's processes by command line.
pub fn marker(tag: &str) -> String {
    format!("iris{}x{}", tag, std::process::id())
}
