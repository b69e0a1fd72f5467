//! The iris-init benchmark (`make bench`, or `cargo bench --bench iris_bench`).
//!
//! It runs the real release `iris-init` as a plain supervisor on temporary
//! directories and prints one figure per line, `name: value unit (details)`,
//! medians where a measurement is repeated. Lines starting with `#` are
//! comments. The services it supervises are this very binary started again
//! with `--iris-bench-role` (a TCP listener, an idle process, an orphan
//! storm, a log flood), so their own cost is small, known and measured
//! separately. The container figure builds a busybox image and runs a
//! registry on 127.0.0.1 with `tests/support/oci.sh`; without its tools it
//! says which are missing and the rest still runs.
//! `IRIS_BENCH_ONLY=exec,container,logs make bench` runs only the sections
//! named (see `run_bench`), and always the shutdown. It exits non-zero when
//! any section failed (an `error` line; `# FAILED:` names them), after
//! running and printing all the others.
//!
//! Every process it starts is ended before it exits: the init with SIGTERM
//! (it stops its services), and anything left over is found by the run's
//! marker in its command line and killed; the registry is stopped when its
//! section ends.

use iris_init::client::{Conn, Request};
use iris_init::containers::settings::{choose_runtime, RUNTIME_ENV};
use iris_init::proc::spawn::find_on_init_path;
use serde_json::{json, Value};
use std::fmt::Display;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const INIT_BIN: &str = env!("CARGO_BIN_EXE_iris-init");
/// First argument that turns this binary into one of the benchmark's services.
const ROLE_FLAG: &str = "--iris-bench-role";

/// Services started at once for the start, memory and idle figures.
const SERVICES: usize = 100;
/// Rounds of "start 100, stop 100" whose samples are pooled.
const START_ROUNDS: usize = 3;
/// Requests per API throughput run, and runs per figure.
const API_REQUESTS: usize = 20_000;
const API_RUNS: usize = 3;
const API_CONNS: usize = 16;
/// Services killed once each for the restart figure.
const KILLS: usize = 20;
/// Orphans in the storm.
const STORM: u32 = 20_000;
/// The idle window.
const IDLE_WINDOW: Duration = Duration::from_secs(10);
/// How long the listeners of the health-wait test sleep before they listen.
const LATE_PORT_MS: u64 = 1000;
/// Execs of `true`, back to back, and the most time they may take.
const EXECS: usize = 500;
const EXEC_LIMIT: Duration = Duration::from_secs(20);
/// The window over which the log flood is measured.
const LOG_WINDOW: Duration = Duration::from_secs(5);
/// Paced GETs for the latency with and without the flood.
const LAT_SAMPLES: usize = 1500;
const LAT_EVERY: Duration = Duration::from_millis(1);
const LAT_LIMIT: Duration = Duration::from_secs(2);
/// The flooding service's lines: a zero-padded line number, a space, `x`s
/// and a newline, this many bytes in all.
const FLOOD_LINE: usize = 100;
const FLOOD_DIGITS: usize = 15;
/// Start/stop cycles of the container and the plain httpd, and a bound.
const CTR_CYCLES: usize = 10;
const CTR_LIMIT: Duration = Duration::from_secs(60);

type R<T> = Result<T, String>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(ROLE_FLAG) {
        role(args.get(2..).unwrap_or(&[]));
    }
    let failed = run_bench();
    if !failed.is_empty() {
        // Every other section still ran and printed its figures.
        println!("# FAILED: {}", failed.join(", "));
        std::process::exit(1);
    }
}

// ===== output ===============================================================

fn fig(name: &str, value: impl Display, unit: &str, details: &str) {
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };
    if details.is_empty() {
        println!("{name}: {value}{unit}");
    } else {
        println!("{name}: {value}{unit} ({details})");
    }
}

fn ms(d: f64) -> String {
    if d.abs() >= 100.0 {
        format!("{d:.0}")
    } else if d.abs() >= 10.0 {
        format!("{d:.1}")
    } else {
        format!("{d:.2}")
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    let hi = s.get(n / 2).copied().unwrap_or(f64::NAN);
    if n % 2 == 1 {
        hi
    } else {
        (s.get(n / 2 - 1).copied().unwrap_or(hi) + hi) / 2.0
    }
}

/// Nearest-rank percentile, `p` in 0..=1.
fn pct(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s.get(rank - 1).copied().unwrap_or(f64::NAN)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

// ===== time and /proc =======================================================

/// CLOCK_REALTIME in nanoseconds: the clock the services stamp their files with.
fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn ns_to_ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// What a process has cost so far.
#[derive(Clone, Copy, Debug)]
struct Cpu {
    /// utime + stime in clock ticks (10 ms each on most kernels).
    ticks: u64,
    /// Time on a CPU in ns from /proc/PID/schedstat, when the kernel has it.
    sched_ns: Option<u64>,
    voluntary: u64,
    involuntary: u64,
}

impl Cpu {
    fn of(pid: i32) -> R<Cpu> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        // Fields after the command: state(3) ... utime(14) stime(15).
        let field = |i: usize| rest.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let ticks = field(11) + field(12);
        let sched_ns = fs::read_to_string(format!("/proc/{pid}/schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        Ok(Cpu {
            ticks,
            sched_ns,
            voluntary: status_kb(&status, "voluntary_ctxt_switches:").unwrap_or(0),
            involuntary: status_kb(&status, "nonvoluntary_ctxt_switches:").unwrap_or(0),
        })
    }

    /// CPU ms between two readings: schedstat when present (ns), else ticks.
    fn ms_since(&self, before: &Cpu) -> f64 {
        match (self.sched_ns, before.sched_ns) {
            (Some(a), Some(b)) => a.saturating_sub(b) as f64 / 1e6,
            _ => self.ticks_ms_since(before),
        }
    }

    fn ticks_ms_since(&self, before: &Cpu) -> f64 {
        self.ticks.saturating_sub(before.ticks) as f64 * 1000.0 / clock_ticks_per_sec() as f64
    }

    fn describe_since(&self, before: &Cpu) -> String {
        format!(
            "utime+stime {} ms, schedstat {}, {} voluntary / {} involuntary context switches",
            ms(self.ticks_ms_since(before)),
            match (self.sched_ns, before.sched_ns) {
                (Some(a), Some(b)) => format!("{} ms", ms(a.saturating_sub(b) as f64 / 1e6)),
                _ => "n/a".into(),
            },
            self.voluntary.saturating_sub(before.voluntary),
            self.involuntary.saturating_sub(before.involuntary)
        )
    }
}

/// The first number after `key` in a /proc status-like text.
fn status_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next())
                .unwrap_or(None);
            state != Some('Z') && state != Some('X')
        }
        Err(_) => false,
    }
}

/// Live processes whose command line holds every one of `needles`.
fn pids_with_cmdline(needles: &[&str]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(c) = fs::read(format!("/proc/{pid}/cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if needles.iter().all(|n| c.contains(n)) && alive(pid) {
                out.push(pid);
            }
        }
    }
    out
}

/// Zombie children of `parent`.
fn zombies_of(parent: i32) -> usize {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            let Ok(s) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let rest: Vec<&str> = s
                .rsplit_once(')')
                .map(|(_, r)| r)
                .unwrap_or("")
                .split_whitespace()
                .collect();
            rest.first() == Some(&"Z")
                && rest.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(parent)
        })
        .count()
}

fn kill(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid this benchmark started (or found by its
    // run marker); no memory is involved.
    unsafe {
        libc::kill(pid, sig);
    }
}

// ===== HTTP over the unix socket ============================================

/// A keep-alive HTTP/1.1 client: the library's, with errors as strings.
struct Client(Conn<UnixStream>);

impl Client {
    fn connect(path: &Path) -> R<Client> {
        Conn::connect(path, Some(Duration::from_secs(60)))
            .map(Client)
            .map_err(|e| format!("connect {}: {e}", path.display()))
    }

    /// Sends bytes made once by `request_bytes` and reads the answer.
    fn raw(&mut self, request: &[u8]) -> R<(u16, Vec<u8>)> {
        self.0.send(request).map_err(|e| e.to_string())?;
        let resp = self.0.read_response().map_err(|e| e.to_string())?;
        Ok((resp.status, resp.body))
    }

    fn req(&mut self, method: &str, path: &str, body: Option<&str>) -> R<(u16, Value)> {
        let (status, b) = self.raw(&request_bytes(method, path, body))?;
        let v = if b.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&b)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into()))
        };
        Ok((status, v))
    }

    /// `req` that wants a 2xx answer.
    fn ok(&mut self, method: &str, path: &str, body: Option<&str>) -> R<Value> {
        let (status, v) = self.req(method, path, body)?;
        if (200..300).contains(&status) {
            Ok(v)
        } else {
            Err(format!("{method} {path}: {status} {v}"))
        }
    }
}

fn request_bytes(method: &str, path: &str, body: Option<&str>) -> Vec<u8> {
    Request::new(method, path).body(body.unwrap_or("")).encode()
}

/// One answered request of a concurrent batch.
struct Timed {
    status: u16,
    body: Value,
    sent_ns: i64,
    answered_ns: i64,
}

/// Sends the requests at once, one connection and thread each (connected
/// before a barrier, so they start together), and waits for every answer.
fn parallel(socket: &Path, reqs: Vec<(String, String)>) -> R<Vec<Timed>> {
    let barrier = Arc::new(Barrier::new(reqs.len()));
    let handles: Vec<_> = reqs
        .into_iter()
        .map(|(method, path)| {
            let socket = socket.to_path_buf();
            let barrier = barrier.clone();
            thread::spawn(move || -> R<Timed> {
                let client = Client::connect(&socket);
                barrier.wait();
                let mut client = client?;
                let sent_ns = now_ns();
                let (status, body) = client.req(&method, &path, None)?;
                Ok(Timed {
                    status,
                    body,
                    sent_ns,
                    answered_ns: now_ns(),
                })
            })
        })
        .collect();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(t)) => out.push(t),
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("client thread panicked".into()),
        }
    }
    if let Some(e) = errors.first() {
        return Err(format!(
            "{} of the requests failed, first: {e}",
            errors.len()
        ));
    }
    Ok(out)
}

/// Service names: a prefix no test uses, since service cgroups are named
/// after the service alone and two inits on one host share them.
const NAME_PREFIX: &str = "ibench-";

fn names(kind: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{NAME_PREFIX}{kind}-{i:03}"))
        .collect()
}

fn all_ok(results: &[Timed], what: &str) -> R<()> {
    let bad: Vec<String> = results
        .iter()
        .filter(|t| !(200..300).contains(&t.status))
        .map(|t| format!("{} {}", t.status, t.body))
        .collect();
    match bad.first() {
        None => Ok(()),
        Some(first) => Err(format!(
            "{what}: {} answers not 2xx, first: {first}",
            bad.len()
        )),
    }
}

// ===== the init under test ==================================================

struct Init {
    child: Option<Child>,
    pid: i32,
    socket: PathBuf,
}

impl Init {
    fn start(dir: &Path) -> R<Init> {
        let socket = dir.join("run/services.sock");
        fs::create_dir_all(dir.join("init.d")).map_err(|e| e.to_string())?;
        let child = Command::new(INIT_BIN)
            .arg("--socket")
            .arg(&socket)
            .arg("--services-dir")
            .arg(dir.join("init.d"))
            .arg("--state-file")
            .arg(dir.join("state/state.json"))
            .arg("--log-dir")
            .arg(dir.join("logs"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                fs::File::create(dir.join("init.log")).map_err(|e| e.to_string())?,
            ))
            .spawn()
            .map_err(|e| format!("spawn {INIT_BIN}: {e}"))?;
        let pid = child.id() as i32;
        let init = Init {
            child: Some(child),
            pid,
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&init.socket).is_err() {
            if Instant::now() > deadline {
                return Err("iris-init did not open its socket within 20 s".into());
            }
            thread::sleep(Duration::from_millis(2));
        }
        Ok(init)
    }

    fn client(&self) -> R<Client> {
        Client::connect(&self.socket)
    }

    /// SIGTERM, then wait (SIGKILL after `limit`). Returns how long it took.
    fn terminate(&mut self, limit: Duration) -> R<Duration> {
        let Some(mut child) = self.child.take() else {
            return Err("not running".into());
        };
        let t0 = Instant::now();
        kill(self.pid, libc::SIGTERM);
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(t0.elapsed()),
                Ok(Some(status)) => return Err(format!("exited with {status} after SIGTERM")),
                Ok(None) if t0.elapsed() > limit => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("still running {limit:?} after SIGTERM; killed"));
                }
                Ok(None) => thread::sleep(Duration::from_millis(1)),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate(Duration::from_secs(30));
        }
    }
}

/// The benchmark's world: the init, its directory, and how to name the
/// services it runs.
struct Bench {
    init: Init,
    dir: PathBuf,
    exe: PathBuf,
    /// Marker in every service's command line, to find leftovers.
    tag: String,
    /// Where the init puts service cgroups (from `GET /v1/system`).
    cgroups: Option<PathBuf>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        if self.init.child.is_some() {
            let _ = self.init.terminate(Duration::from_secs(30));
        }
        for pid in pids_with_cmdline(&[ROLE_FLAG, &self.tag]) {
            kill(pid, libc::SIGKILL);
        }
        if let Some(base) = &self.cgroups {
            remove_service_cgroups(base);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Bench {
    fn setup() -> R<Bench> {
        let tag = format!("bench{}", std::process::id());
        // Under the target dir, like the integration tests; short enough for
        // a unix socket path.
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&tag);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("ts")).map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let init = Init::start(&dir)?;
        let mut bench = Bench {
            init,
            dir,
            exe,
            tag,
            cgroups: None,
        };
        bench.cgroups = bench.system()?["cgroups"].as_str().map(PathBuf::from);
        Ok(bench)
    }

    fn role_args(&self, role: &str, params: &[String]) -> Vec<String> {
        let mut a = vec![ROLE_FLAG.to_string(), role.to_string()];
        a.extend(params.iter().cloned());
        a.push(self.tag.clone());
        a
    }

    fn ts_file(&self, name: &str) -> PathBuf {
        self.dir.join("ts").join(name)
    }

    fn listener_def(&self, name: &str, port: u16, delay_ms: u64) -> String {
        let args = self.role_args(
            "listen",
            &[
                port.to_string(),
                self.ts_file(name).display().to_string(),
                delay_ms.to_string(),
            ],
        );
        json!({
            "cmd": self.exe.display().to_string(),
            "args": args,
            "health_port": port,
        })
        .to_string()
    }

    /// An HTTP server whose `/healthz` answers 200 only `delay_ms` after
    /// main(): `mode` "late" listens only then, "503" listens at once and
    /// answers 503 until then. The service has an `http` health check.
    fn http_def(&self, name: &str, port: u16, delay_ms: u64, mode: &str) -> String {
        let args = self.role_args(
            "http",
            &[
                port.to_string(),
                self.ts_file(name).display().to_string(),
                delay_ms.to_string(),
                mode.to_string(),
            ],
        );
        json!({
            "cmd": self.exe.display().to_string(),
            "args": args,
            "health": {"http": {"port": port, "path": "/healthz"}},
        })
        .to_string()
    }

    fn idle_def(&self, generation: usize) -> String {
        json!({
            "cmd": self.exe.display().to_string(),
            "args": self.role_args("idle", &[]),
            "env": {"GENERATION": generation.to_string()},
        })
        .to_string()
    }

    fn put_all(&self, defs: &[(String, String)]) -> R<()> {
        let mut c = self.init.client()?;
        for (name, def) in defs {
            c.ok("PUT", &format!("/v1/services/{name}"), Some(def))?;
        }
        Ok(())
    }

    fn post_all(&self, names: &[String], action: &str) -> R<Vec<Timed>> {
        let reqs = names
            .iter()
            .map(|n| ("POST".to_string(), format!("/v1/services/{n}/{action}")))
            .collect();
        let out = parallel(&self.init.socket, reqs)?;
        all_ok(&out, action)?;
        Ok(out)
    }

    fn system(&self) -> R<Value> {
        self.init.client()?.ok("GET", "/v1/system", None)
    }
}

/// Removes the (empty) cgroups of this benchmark's services, which the init
/// leaves behind; returns how many there were. Only empty cgroups can be
/// removed, so nothing that still runs is touched.
fn remove_service_cgroups(base: &Path) -> usize {
    let Ok(dir) = fs::read_dir(base) else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with(NAME_PREFIX) && n.ends_with(".service")
        })
        .filter(|e| fs::remove_dir(e.path()).is_ok())
        .count()
}

/// (steal, total) jiffies of all CPUs, from /proc/stat.
fn cpu_steal() -> (u64, u64) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    (v.get(7).copied().unwrap_or(0), v.iter().take(8).sum())
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Distinct free loopback ports: all bound at once, then released.
fn free_ports(n: usize) -> R<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string()))
        .collect::<R<_>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string()))
        .collect()
}

/// A single stamp written by a listener at main().
fn read_stamp(path: &Path, deadline: Instant) -> R<i64> {
    loop {
        if let Some(v) = fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("no stamp in {}", path.display()));
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// A listener's stamps: (main() entered, listen() returned), CLOCK_REALTIME ns.
fn read_stamps(path: &Path, deadline: Instant) -> R<(i64, i64)> {
    loop {
        if let Ok(s) = fs::read_to_string(path) {
            let v: Vec<i64> = s
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if let (Some(a), Some(b)) = (v.first(), v.get(1)) {
                return Ok((*a, *b));
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no stamps in {}", path.display()));
        }
        thread::sleep(Duration::from_millis(1));
    }
}

// ===== the figures ==========================================================

/// Runs every section; returns the names of those that failed.
fn run_bench() -> Vec<String> {
    let t0 = Instant::now();
    let steal0 = cpu_steal();
    let cores = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "# iris-init benchmark: {cores} CPUs, load average {}, init {INIT_BIN}",
        loadavg()
    );
    let load1: f64 = loadavg()
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0);
    if load1 > cores as f64 / 2.0 {
        println!("# note: the machine is busy before the run (load {load1:.2} on {cores} CPUs): figures will be noisy");
    }
    let mut bench = match Bench::setup() {
        Ok(b) => b,
        Err(e) => {
            println!("setup: error ({e})");
            return vec!["setup".into()];
        }
    };
    let mut failed = Vec::new();
    type Section = fn(&mut Bench) -> R<()>;
    let sections: [(&str, Section); 15] = [
        ("init_rss_empty", rss_empty),
        ("service_alone", service_alone),
        ("start_to_running", start_100),
        ("init_rss_100", rss_100),
        ("idle_cpu", idle_cpu),
        ("api_get", api_throughput),
        ("put_definition", put_latency),
        ("health_wait", health_wait),
        ("http_wait", http_wait),
        ("sigkill_restart", sigkill_restart),
        ("orphan_storm", orphan_storm),
        ("exec", exec_round_trip),
        // Before the log flood, whose disk writes linger for a while.
        ("container", container_start),
        ("logs", log_throughput),
        ("shutdown", shutdown),
    ];
    // IRIS_BENCH_ONLY=exec,logs runs only those sections (and shutdown).
    let only = std::env::var("IRIS_BENCH_ONLY").ok();
    for (name, section) in sections {
        if let Some(only) = &only {
            if name != "shutdown" && !only.split(',').any(|o| o.trim() == name) {
                continue;
            }
        }
        if let Err(e) = section(&mut bench) {
            println!("{name}: error ({e})");
            failed.push(name.to_string());
        }
    }
    let leftovers = pids_with_cmdline(&[ROLE_FLAG, &bench.tag]);
    if !leftovers.is_empty() {
        failed.push("leftover_processes".into());
    }
    fig(
        "leftover_processes",
        leftovers.len(),
        "processes",
        &format!("service processes alive after the init exited: {leftovers:?}"),
    );
    if bench.init.child.is_none() {
        if let Some(base) = &bench.cgroups {
            let left = remove_service_cgroups(base);
            fig(
                "leftover_cgroups",
                left,
                "cgroups",
                &format!(
                    "empty {NAME_PREFIX}*.service cgroups the init left under {} after exiting; removed by the bench",
                    base.display()
                ),
            );
        }
    }
    drop(bench);
    let steal1 = cpu_steal();
    println!(
        "# wall time {:.1} s, load average {}, CPU steal {:.1}%",
        t0.elapsed().as_secs_f64(),
        loadavg(),
        steal1.0.saturating_sub(steal0.0) as f64 * 100.0
            / steal1.1.saturating_sub(steal0.1).max(1) as f64
    );
    failed
}

fn memory(pid: i32) -> R<(u64, u64, Option<u64>)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let rss = status_kb(&status, "VmRSS:").ok_or("no VmRSS")?;
    let hwm = status_kb(&status, "VmHWM:").unwrap_or(rss);
    let pss = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| status_kb(&s, "Pss:"));
    Ok((rss, hwm, pss))
}

fn mb(kb: u64) -> String {
    format!("{:.2}", kb as f64 / 1024.0)
}

fn rss_empty(b: &mut Bench) -> R<()> {
    let (rss, _, pss) = memory(b.init.pid)?;
    fig(
        "init_rss_empty",
        mb(rss),
        "MB",
        &format!(
            "VmRSS, no services; Pss {} MB",
            pss.map(mb).unwrap_or("n/a".into())
        ),
    );
    Ok(())
}

/// What a listener costs without any supervisor: spawned back to back by
/// the bench itself, time from spawn to listening.
fn service_alone(b: &mut Bench) -> R<()> {
    let ports = free_ports(SERVICES)?;
    let mut children = Vec::new();
    let mut sent = Vec::new();
    let result = (|| -> R<()> {
        for (i, port) in ports.iter().enumerate() {
            let file = b.ts_file(&format!("alone-{i:03}"));
            sent.push(now_ns());
            let child = Command::new(&b.exe)
                .args(b.role_args(
                    "listen",
                    &[port.to_string(), file.display().to_string(), "0".into()],
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| e.to_string())?;
            children.push(child);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut to_listen = Vec::new();
        let mut own = Vec::new();
        let mut last = 0;
        for (i, s) in sent.iter().enumerate() {
            let (main, listen) = read_stamps(&b.ts_file(&format!("alone-{i:03}")), deadline)?;
            to_listen.push(ns_to_ms(listen - s));
            own.push(ns_to_ms(listen - main));
            last = last.max(listen);
        }
        let first = sent.first().copied().unwrap_or(0);
        fig(
            "service_alone_spawn_to_listen",
            ms(median(&to_listen)),
            "ms",
            &format!(
                "median; p95 {} ms; {SERVICES} listeners spawned back to back by the bench, no init; \
                 main() to listen() median {} ms; all listening {} ms after the first spawn",
                ms(pct(&to_listen, 0.95)),
                ms(median(&own)),
                ms(ns_to_ms(last - first))
            ),
        );
        Ok(())
    })();
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    result
}

/// `POST start` to `running` for 100 listeners with health ports, started
/// at once; three rounds pooled.
fn start_100(b: &mut Bench) -> R<()> {
    let svc = names("svc", SERVICES);
    let ports = free_ports(SERVICES)?;
    let defs: Vec<(String, String)> = svc
        .iter()
        .zip(&ports)
        .map(|(n, p)| (n.clone(), b.listener_def(n, *p, 0)))
        .collect();
    b.put_all(&defs)?;

    let mut total = Vec::new();
    let mut spawn = Vec::new();
    let mut own = Vec::new();
    let mut ready = Vec::new();
    let mut all_running = Vec::new();
    let mut cpu = Vec::new();
    let mut switches = Vec::new();
    for round in 0..START_ROUNDS {
        for n in &svc {
            let _ = fs::remove_file(b.ts_file(n));
        }
        let c0 = Cpu::of(b.init.pid)?;
        let answers = b.post_all(&svc, "start")?;
        let c1 = Cpu::of(b.init.pid)?;
        cpu.push(c1.ms_since(&c0));
        switches.push(c1.voluntary.saturating_sub(c0.voluntary) as f64);
        if let Some(t) = answers.iter().find(|t| t.body["status"] != "running") {
            return Err(format!("start answered without running: {}", t.body));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (n, t) in svc.iter().zip(&answers) {
            let (main, listen) = read_stamps(&b.ts_file(n), deadline)?;
            total.push(ns_to_ms(t.answered_ns - t.sent_ns));
            spawn.push(ns_to_ms(main - t.sent_ns));
            own.push(ns_to_ms(listen - main));
            ready.push(ns_to_ms(t.answered_ns - listen));
        }
        let first = answers.iter().map(|t| t.sent_ns).min().unwrap_or(0);
        let last = answers.iter().map(|t| t.answered_ns).max().unwrap_or(0);
        all_running.push(ns_to_ms(last - first));
        if round + 1 < START_ROUNDS {
            b.post_all(&svc, "stop")?;
        }
    }
    let rounds = format!("{START_ROUNDS} rounds of {SERVICES} concurrent POST start");
    fig(
        "start_to_running",
        ms(median(&total)),
        "ms",
        &format!(
            "median of {} starts; p95 {} ms; max {} ms; {rounds}",
            total.len(),
            ms(pct(&total, 0.95)),
            ms(max(&total))
        ),
    );
    fig(
        "start_all_100_running",
        ms(median(&all_running)),
        "ms",
        &format!(
            "median of {START_ROUNDS} rounds, first POST sent to last answer: {} ms",
            all_running
                .iter()
                .map(|x| ms(*x))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    fig(
        "start_spawn_latency",
        ms(median(&spawn)),
        "ms",
        &format!(
            "median; p95 {} ms; POST sent to the service's main() running",
            ms(pct(&spawn, 0.95))
        ),
    );
    fig(
        "start_service_own_cost",
        ms(median(&own)),
        "ms",
        &format!(
            "median; p95 {} ms; the service's main() to its listen()",
            ms(pct(&own, 0.95))
        ),
    );
    fig(
        "readiness_delay",
        ms(median(&ready)),
        "ms",
        &format!(
            "median; p95 {} ms; max {} ms; port listening to start answer received, {rounds}",
            ms(pct(&ready, 0.95)),
            ms(max(&ready))
        ),
    );
    fig(
        "start_100_init_cpu",
        ms(median(&cpu)),
        "ms",
        &format!(
            "median of {START_ROUNDS} rounds; the init's CPU time to start {SERVICES} services; \
             median {:.0} voluntary context switches per round",
            median(&switches)
        ),
    );
    Ok(())
}

fn running_count(b: &Bench) -> R<u64> {
    b.system()?["running_services"]
        .as_u64()
        .ok_or_else(|| "no running_services in /v1/system".into())
}

fn rss_100(b: &mut Bench) -> R<()> {
    let running = running_count(b)?;
    let (rss, hwm, pss) = memory(b.init.pid)?;
    fig(
        "init_rss_100",
        mb(rss),
        "MB",
        &format!(
            "VmRSS with {running} services running; Pss {} MB; VmHWM {} MB",
            pss.map(mb).unwrap_or("n/a".into()),
            mb(hwm)
        ),
    );
    Ok(())
}

fn idle_cpu(b: &mut Bench) -> R<()> {
    let running = running_count(b)?;
    // Every connection is closed; let the init see the hang-ups first.
    thread::sleep(Duration::from_millis(300));
    let c0 = Cpu::of(b.init.pid)?;
    thread::sleep(IDLE_WINDOW);
    let c1 = Cpu::of(b.init.pid)?;
    fig(
        "idle_cpu_10s",
        format!("{:.3}", c1.ms_since(&c0)),
        "ms",
        &format!(
            "the init's time on a CPU over {} s with {running} services running and no client \
             (schedstat); utime+stime {} ms",
            IDLE_WINDOW.as_secs(),
            ms(c1.ticks_ms_since(&c0)),
        ),
    );
    fig(
        "idle_wakeups_10s",
        c1.voluntary.saturating_sub(c0.voluntary),
        "wake-ups",
        &format!(
            "voluntary context switches of the init over the same window; {} involuntary",
            c1.involuntary.saturating_sub(c0.involuntary)
        ),
    );
    Ok(())
}

/// `n` GETs on one keep-alive connection; latencies in us.
fn get_loop(socket: &Path, path: &str, n: usize, limit: Duration) -> R<Vec<f64>> {
    let mut c = Client::connect(socket)?;
    let req = request_bytes("GET", path, None);
    let t0 = Instant::now();
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let (status, body) = c.raw(&req)?;
        if status != 200 {
            return Err(format!(
                "GET {path}: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        if t0.elapsed() > limit {
            break;
        }
    }
    Ok(lat)
}

fn api_throughput(b: &mut Bench) -> R<()> {
    let path = format!("/v1/services/{}", names("svc", 1).concat());
    let limit = Duration::from_secs(15);
    let mut one = Vec::new();
    let mut lat = Vec::new();
    for _ in 0..API_RUNS {
        let t0 = Instant::now();
        let l = get_loop(&b.init.socket, &path, API_REQUESTS, limit)?;
        one.push(l.len() as f64 / t0.elapsed().as_secs_f64());
        lat = l;
    }
    fig(
        "api_get_rps_1conn",
        format!("{:.0}", median(&one)),
        "req/s",
        &format!(
            "median of {API_RUNS} runs of {API_REQUESTS} GET {path} on one keep-alive connection; \
             last run latency p50 {:.0} us, p99 {:.0} us, max {:.0} us",
            median(&lat),
            pct(&lat, 0.99),
            max(&lat)
        ),
    );

    let mut many = Vec::new();
    let mut lat = Vec::new();
    for _ in 0..API_RUNS {
        let barrier = Arc::new(Barrier::new(API_CONNS + 1));
        let handles: Vec<_> = (0..API_CONNS)
            .map(|_| {
                let socket = b.init.socket.clone();
                let barrier = barrier.clone();
                let path = path.clone();
                thread::spawn(move || {
                    barrier.wait();
                    get_loop(&socket, &path, API_REQUESTS / API_CONNS, limit)
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        let mut done = 0;
        lat.clear();
        for h in handles {
            let l = h.join().map_err(|_| "client thread panicked")??;
            done += l.len();
            lat.extend(l);
        }
        many.push(done as f64 / t0.elapsed().as_secs_f64());
    }
    fig(
        "api_get_rps_16conn",
        format!("{:.0}", median(&many)),
        "req/s",
        &format!(
            "median of {API_RUNS} runs of {API_REQUESTS} GET over {API_CONNS} connections and threads; \
             last run latency p50 {:.0} us, p99 {:.0} us, max {:.0} us",
            median(&lat),
            pct(&lat, 0.99),
            max(&lat)
        ),
    );
    Ok(())
}

/// PUTs of changed definitions: each one rewrites the state file. The write
/// may happen after the answer is sent, so a GET sent right after the PUT's
/// answer shows what the write still holds up.
fn put_latency(b: &mut Bench) -> R<()> {
    let defs: Vec<(String, String)> = names("def", SERVICES)
        .into_iter()
        .map(|n| (n, b.idle_def(0)))
        .collect();
    b.put_all(&defs)?;
    let mut c = b.init.client()?;
    let mut get_alone = Vec::new();
    for (n, _) in &defs {
        let t = Instant::now();
        c.ok("GET", &format!("/v1/services/{n}"), None)?;
        get_alone.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut put = Vec::new();
    let mut put_get = Vec::new();
    let mut after = Vec::new();
    for (n, _) in &defs {
        let def = b.idle_def(1);
        let path = format!("/v1/services/{n}");
        let t0 = Instant::now();
        let (status, v) = c.req("PUT", &path, Some(&def))?;
        let t1 = Instant::now();
        if status != 200 {
            return Err(format!("PUT {path} (replace): {status} {v}"));
        }
        c.ok("GET", &path, None)?;
        let t2 = Instant::now();
        put.push((t1 - t0).as_secs_f64() * 1e3);
        after.push((t2 - t1).as_secs_f64() * 1e3);
        put_get.push((t2 - t0).as_secs_f64() * 1e3);
    }
    let services = b.system()?["services"].as_u64().unwrap_or(0);
    let size = fs::metadata(b.dir.join("state/state.json"))
        .map(|m| m.len())
        .unwrap_or(0);
    fig(
        "put_changed_definition",
        ms(median(&put)),
        "ms",
        &format!(
            "median of {} PUTs; p95 {} ms; {services} services defined, state file {:.1} KiB",
            put.len(),
            ms(pct(&put, 0.95)),
            size as f64 / 1024.0
        ),
    );
    let get_ms = median(&get_alone);
    fig(
        "state_file_write",
        ms((median(&put_get) - 2.0 * get_ms).max(0.0)),
        "ms",
        &format!(
            "estimate: PUT plus a GET sent right after its answer, median {} ms (the GET alone waits {} ms), \
             minus two GET round trips of {} ms",
            ms(median(&put_get)),
            ms(median(&after)),
            ms(get_ms)
        ),
    );
    Ok(())
}

/// What 100 services waiting for their ports cost the init, and how fast a
/// port that opens while the init is otherwise idle is seen.
fn health_wait(b: &mut Bench) -> R<()> {
    let svc = names("late", SERVICES);
    let ports = free_ports(SERVICES)?;
    let defs: Vec<(String, String)> = svc
        .iter()
        .zip(&ports)
        .map(|(n, p)| (n.clone(), b.listener_def(n, *p, LATE_PORT_MS)))
        .collect();
    b.put_all(&defs)?;
    let socket = b.init.socket.clone();
    let reqs = svc
        .iter()
        .map(|n| ("POST".to_string(), format!("/v1/services/{n}/start")))
        .collect();
    let start = Instant::now();
    let runner = thread::spawn(move || parallel(&socket, reqs));
    let window = quiet_window(b, &svc, start);
    let answers = runner.join().map_err(|_| "client thread panicked");
    let elapsed = start.elapsed();
    let result = (|| -> R<()> {
        let answers = answers??;
        all_ok(&answers, "start")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut ready = Vec::new();
        let mut clean = true;
        for (n, t) in svc.iter().zip(&answers) {
            let (main, listen) = read_stamps(&b.ts_file(n), deadline)?;
            ready.push(ns_to_ms(t.answered_ns - listen));
            if let Ok(((t0, _), (t1, _))) = &window {
                clean &= main < *t0 && listen > *t1;
            }
        }
        match &window {
            Ok(((t0, c0), (t1, c1))) => {
                let span = ns_to_ms(t1 - t0);
                fig(
                    "health_wait_cpu",
                    format!("{:.2}", c1.ms_since(c0) / span * 100.0),
                    "% of one core",
                    &format!(
                        "the init's CPU over {} ms while {SERVICES} started services waited for their ports{}; {}",
                        ms(span),
                        if clean {
                            ""
                        } else {
                            " (WINDOW NOT CLEAN: a spawn or a listen fell inside it)"
                        },
                        c1.describe_since(c0)
                    ),
                );
            }
            Err(e) => fig("health_wait_cpu", "n/a", "", e),
        }
        fig(
            "readiness_delay_late_ports",
            ms(median(&ready)),
            "ms",
            &format!(
                "median; p95 {} ms; max {} ms; port listening to start answer, ports opening {LATE_PORT_MS} ms \
                 after start; all answered after {} ms",
                ms(pct(&ready, 0.95)),
                ms(max(&ready)),
                elapsed.as_millis()
            ),
        );
        Ok(())
    })();
    let stopped = b.post_all(&svc, "stop").map(|_| ());
    result.and(stopped)
}

/// 100 services with `http` health checks whose `/healthz` answers 200
/// only after a delay: how soon after that each one is `running`, and what
/// the wait costs the init. First servers that listen only once healthy
/// (the check waits for the port in the listening-socket scan, then GETs
/// at once), then servers that answer 503 first (GET every 250 ms, the
/// default `interval_ms`).
fn http_wait(b: &mut Bench) -> R<()> {
    for (mode, what) in [
        ("late", "listening only once healthy"),
        ("503", "answering 503 until healthy, polled every 250 ms"),
    ] {
        let svc = names(&format!("http{mode}"), SERVICES);
        let ports = free_ports(SERVICES)?;
        let defs: Vec<(String, String)> = svc
            .iter()
            .zip(&ports)
            .map(|(n, p)| (n.clone(), b.http_def(n, *p, LATE_PORT_MS, mode)))
            .collect();
        b.put_all(&defs)?;
        let result = http_round(b, &svc, mode, what);
        let stopped = b.post_all(&svc, "stop").map(|_| ());
        let deleted = svc.iter().try_for_each(|n| {
            b.init
                .client()?
                .ok("DELETE", &format!("/v1/services/{n}"), None)
                .map(|_| ())
        });
        result.and(stopped).and(deleted)?;
    }
    Ok(())
}

fn http_round(b: &mut Bench, svc: &[String], mode: &str, what: &str) -> R<()> {
    let socket = b.init.socket.clone();
    let reqs = svc
        .iter()
        .map(|n| ("POST".to_string(), format!("/v1/services/{n}/start")))
        .collect();
    let start = Instant::now();
    let runner = thread::spawn(move || parallel(&socket, reqs));
    let window = quiet_window(b, svc, start);
    let answers = runner.join().map_err(|_| "client thread panicked")??;
    let elapsed = start.elapsed();
    all_ok(&answers, "start")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ready = Vec::new();
    let mut clean = true;
    for (n, t) in svc.iter().zip(&answers) {
        let (main, healthy) = read_stamps(&b.ts_file(n), deadline)?;
        ready.push(ns_to_ms(t.answered_ns - healthy));
        if let Ok(((t0, _), (t1, _))) = &window {
            clean &= main < *t0 && healthy > *t1;
        }
    }
    let tag = if mode == "late" { "" } else { "_503_first" };
    match &window {
        Ok(((t0, c0), (t1, c1))) => {
            let span = ns_to_ms(t1 - t0);
            fig(
                &format!("http_wait_cpu{tag}"),
                format!("{:.2}", c1.ms_since(c0) / span * 100.0),
                "% of one core",
                &format!(
                    "the init's CPU over {} ms while {SERVICES} services with http checks waited, servers {what}{}; {}",
                    ms(span),
                    if clean { "" } else { " (WINDOW NOT CLEAN: a spawn or a healthy answer fell inside it)" },
                    c1.describe_since(c0)
                ),
            );
        }
        Err(e) => fig(&format!("http_wait_cpu{tag}"), "n/a", "", e),
    }
    fig(
        &format!("readiness_delay_http{tag}"),
        ms(median(&ready)),
        "ms",
        &format!(
            "median; p95 {} ms; max {} ms; /healthz answering 200 to start answer, servers {what}, \
             healthy {LATE_PORT_MS} ms after start; all answered after {} ms",
            ms(pct(&ready, 0.95)),
            ms(max(&ready)),
            elapsed.as_millis()
        ),
    );
    Ok(())
}

/// When (CLOCK_REALTIME ns) and what the init had cost by then.
type Reading = (i64, Cpu);

/// Two readings of the init's CPU, after the last of `svc` was spawned and
/// before the first one listens; an error says why there is no such window.
fn quiet_window(b: &Bench, svc: &[String], start: Instant) -> R<(Reading, Reading)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut mains = Vec::new();
    for n in svc {
        let file = PathBuf::from(format!("{}.main", b.ts_file(n).display()));
        mains.push(read_stamp(&file, deadline)?);
    }
    thread::sleep(Duration::from_millis(20));
    let w0 = (now_ns(), Cpu::of(b.init.pid)?);
    let first_listen = mains.iter().min().copied().unwrap_or(0) + LATE_PORT_MS as i64 * 1_000_000;
    let end = first_listen - 50_000_000;
    if end - w0.0 < 100_000_000 {
        return Err(format!(
            "no quiet window: the last of {} spawns ran {} ms after the POSTs, too close to the first listen",
            svc.len(),
            start.elapsed().as_millis()
        ));
    }
    thread::sleep(Duration::from_nanos((end - w0.0) as u64));
    Ok((w0, (now_ns(), Cpu::of(b.init.pid)?)))
}

/// SIGKILL a service's main process; time until the API shows a new pid
/// `running`. Each service is killed once, so every restart is a first,
/// immediate one.
fn kill_and_wait(c: &mut Client, name: &str) -> R<f64> {
    let path = format!("/v1/services/{name}");
    let v = c.ok("GET", &path, None)?;
    let old = v["pid"]
        .as_i64()
        .ok_or_else(|| format!("{name} has no pid: {v}"))? as i32;
    let restarts = v["restarts"].as_u64().unwrap_or(0);
    let req = request_bytes("GET", &path, None);
    let t0 = Instant::now();
    kill(old, libc::SIGKILL);
    loop {
        let (status, body) = c.raw(&req)?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status != 200 {
            return Err(format!("GET {path}: {status} {v}"));
        }
        if v["status"] == "running" && v["pid"].as_i64().is_some_and(|p| p as i32 != old) {
            let t = t0.elapsed().as_secs_f64() * 1e3;
            if v["restarts"].as_u64().unwrap_or(0) <= restarts {
                return Err(format!("{name} restarted but restarts did not grow: {v}"));
            }
            return Ok(t);
        }
        if t0.elapsed() > Duration::from_secs(10) {
            return Err(format!("{name} not running again 10 s after SIGKILL: {v}"));
        }
    }
}

fn sigkill_restart(b: &mut Bench) -> R<()> {
    let plain = names("kill", KILLS);
    let defs: Vec<(String, String)> = plain.iter().map(|n| (n.clone(), b.idle_def(0))).collect();
    b.put_all(&defs)?;
    b.post_all(&plain, "start")?;
    let mut c = b.init.client()?;
    let mut t_plain = Vec::new();
    for n in &plain {
        t_plain.push(kill_and_wait(&mut c, n)?);
    }
    fig(
        "sigkill_to_running",
        ms(median(&t_plain)),
        "ms",
        &format!(
            "median of {KILLS} services without health port, each SIGKILLed once; p95 {} ms; max {} ms; \
             kill() to a GET showing a new pid running",
            ms(pct(&t_plain, 0.95)),
            ms(max(&t_plain))
        ),
    );
    let mut t_port = Vec::new();
    for n in names("svc", KILLS) {
        t_port.push(kill_and_wait(&mut c, &n)?);
    }
    fig(
        "sigkill_to_running_health_port",
        ms(median(&t_port)),
        "ms",
        &format!(
            "median of {KILLS} listener services with health_port, each SIGKILLed once; p95 {} ms; max {} ms",
            ms(pct(&t_port, 0.95)),
            ms(max(&t_port))
        ),
    );
    Ok(())
}

/// A service forks 20,000 double-forked grandchildren that exit at once and
/// get orphaned to the init (its subreaper); the service tells the bench
/// through a FIFO when its last fork is done.
fn orphan_storm(b: &mut Bench) -> R<()> {
    let fifo = b.dir.join("storm.fifo");
    let c_path = std::ffi::CString::new(fifo.display().to_string()).map_err(|e| e.to_string())?;
    // SAFETY: mkfifo with a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
        return Err(format!("mkfifo: {}", io::Error::last_os_error()));
    }
    // Read and write end in one: the read blocks until the storm writes and
    // never sees an early end of file.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .map_err(|e| e.to_string())?;
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 256];
        let r = f.read(&mut buf).map(|n| {
            (
                now_ns(),
                String::from_utf8_lossy(buf.get(..n).unwrap_or(&[])).to_string(),
            )
        });
        let _ = tx.send(r);
    });
    let def = json!({
        "cmd": b.exe.display().to_string(),
        "args": b.role_args("storm", &[STORM.to_string(), fifo.display().to_string()]),
        "restart": "never",
    })
    .to_string();
    let storm = format!("{NAME_PREFIX}storm");
    b.put_all(&[(storm.clone(), def)])?;
    let base = b.system()?["zombies_reaped"]
        .as_u64()
        .ok_or("no zombies_reaped in /v1/system")?;
    let c0 = Cpu::of(b.init.pid)?;
    b.init
        .client()?
        .ok("POST", &format!("/v1/services/{storm}/start"), None)?;
    let (woke_ns, msg) = rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| "the storm service did not finish within 60 s")?
        .map_err(|e| e.to_string())?;
    let v: Vec<i64> = msg
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let (first, last, done, failed) = match v.as_slice() {
        [a, b, c, d] => (*a, *b, *c as u64, *d),
        _ => return Err(format!("bad storm report {msg:?}")),
    };
    // Tight polling from here: the last fork is over.
    let mut c = b.init.client()?;
    let req = request_bytes("GET", "/v1/system", None);
    let mut polls = 0;
    let (drained_ns, reaped) = loop {
        let (_, body) = c.raw(&req)?;
        let t = now_ns();
        polls += 1;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let reaped = v["zombies_reaped"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(base);
        if reaped >= done {
            break (t, reaped);
        }
        if ns_to_ms(t - last) > 30_000.0 {
            return Err(format!(
                "only {reaped} of {done} orphans counted 30 s after the last fork"
            ));
        }
    };
    let c1 = Cpu::of(b.init.pid)?;
    let zombies = zombies_of(b.init.pid);
    let fork_ms = ns_to_ms(last - first);
    fig(
        "orphan_storm_fork_rate",
        format!("{:.0}", done as f64 / fork_ms * 1000.0),
        "orphans/s",
        &format!(
            "{done} double forks by the storm service in {} ms; {failed} forks failed",
            ms(fork_ms)
        ),
    );
    fig(
        "orphan_storm_reaped_rate",
        format!(
            "{:.0}",
            reaped as f64 / ns_to_ms(drained_ns - first) * 1000.0
        ),
        "reaped/s",
        &format!(
            "zombies_reaped grew by {reaped} in {} ms from the first fork",
            ms(ns_to_ms(drained_ns - first))
        ),
    );
    let latency = ns_to_ms(drained_ns - last);
    fig(
        "orphan_storm_drain_latency",
        format!("{}{}", if polls == 1 { "<=" } else { "" }, ms(latency)),
        "ms",
        &format!(
            "last fork to a GET /v1/system showing the full count; {polls} polls{}; the bench woke {} ms after the last fork; \
             zombie children of the init now: {zombies}",
            if polls == 1 { " (the first already did: upper bound)" } else { "" },
            ms(ns_to_ms(woke_ns - last))
        ),
    );
    fig(
        "orphan_storm_init_cpu",
        ms(c1.ms_since(&c0)),
        "ms",
        &format!("the init's CPU for the storm; {}", c1.describe_since(&c0)),
    );
    b.init
        .client()?
        .ok("POST", &format!("/v1/services/{storm}/stop"), None)?;
    Ok(())
}

/// `POST /v1/exec` of `true` back to back on one keep-alive connection:
/// round trips per second and their latency, against the bench spawning
/// `true` itself.
fn exec_round_trip(b: &mut Bench) -> R<()> {
    let mut c = b.init.client()?;
    let body = json!({"cmd": ["true"]}).to_string();
    let req = request_bytes("POST", "/v1/exec", Some(&body));
    let run = |c: &mut Client| -> R<f64> {
        let t = Instant::now();
        let (status, answer) = c.raw(&req)?;
        let took = t.elapsed().as_secs_f64() * 1e3;
        let v: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        if status != 200 || v["exit_code"] != 0 || v["timed_out"] == true {
            return Err(format!(
                "POST /v1/exec {body}: {status} {}",
                String::from_utf8_lossy(&answer)
            ));
        }
        Ok(took)
    };
    // The first exec resolves `true` and warms the page cache.
    run(&mut c)?;
    let c0 = Cpu::of(b.init.pid)?;
    let t0 = Instant::now();
    let mut lat = Vec::with_capacity(EXECS);
    while lat.len() < EXECS && t0.elapsed() < EXEC_LIMIT {
        lat.push(run(&mut c)?);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let c1 = Cpu::of(b.init.pid)?;
    let n = lat.len();
    // What a fork/exec/wait of the same command costs without the init.
    let mut alone = Vec::new();
    let t1 = Instant::now();
    while alone.len() < EXECS / 2 && t1.elapsed() < EXEC_LIMIT {
        let t = Instant::now();
        let status = Command::new("true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("spawn true: {e}"))?;
        if !status.success() {
            return Err(format!("true exited with {status}"));
        }
        alone.push(t.elapsed().as_secs_f64() * 1e3);
    }
    fig(
        "exec_round_trip",
        format!("{:.0}", n as f64 / elapsed),
        "execs/s",
        &format!(
            "{n} POST /v1/exec of {body} back to back on one keep-alive connection in {} ms; \
             the init's CPU {} ms per exec ({})",
            ms(elapsed * 1e3),
            ms(c1.ms_since(&c0) / n.max(1) as f64),
            c1.describe_since(&c0)
        ),
    );
    fig(
        "exec_latency",
        ms(median(&lat)),
        "ms",
        &format!(
            "median of the {n} round trips; p95 {} ms; max {} ms; the bench spawning and waiting for \
             `true` itself: median {} ms, p95 {} ms ({} runs)",
            ms(pct(&lat, 0.95)),
            ms(max(&lat)),
            ms(median(&alone)),
            ms(pct(&alone, 0.95)),
            alone.len()
        ),
    );
    Ok(())
}

/// GETs of `path` on a connection of their own, one every `LAT_EVERY` (not
/// back to back: the figure is the latency a client sees, not how many the
/// init can take); latencies in us.
fn paced_gets(socket: &Path, path: &str) -> R<Vec<f64>> {
    let mut c = Client::connect(socket)?;
    let req = request_bytes("GET", path, None);
    let t0 = Instant::now();
    let mut next = t0;
    let mut lat = Vec::with_capacity(LAT_SAMPLES);
    while lat.len() < LAT_SAMPLES && t0.elapsed() < LAT_LIMIT {
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        }
        let t = Instant::now();
        let (status, body) = c.raw(&req)?;
        if status != 200 {
            return Err(format!(
                "GET {path}: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        // Behind schedule (a slow answer): no burst to catch up.
        next = (next + LAT_EVERY).max(Instant::now());
    }
    Ok(lat)
}

fn describe_us(lat: &[f64]) -> String {
    format!(
        "p50 {:.0} us, p95 {:.0} us, max {:.0} us over {} GETs",
        median(lat),
        pct(lat, 0.95),
        max(lat),
        lat.len()
    )
}

/// The index of the last whole flood line in `path`, if any.
fn last_flood_line(path: &Path) -> Option<u64> {
    let mut f = fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let span = 4 * FLOOD_LINE as u64;
    f.seek(SeekFrom::Start(len.saturating_sub(span))).ok()?;
    let mut tail = Vec::new();
    f.take(span).read_to_end(&mut tail).ok()?;
    // Only text before the last newline is whole; the window's first piece
    // may be cut, and the format check rejects it.
    let end = tail.iter().rposition(|b| *b == b'\n')?;
    tail.get(..end)?
        .rsplit(|b| *b == b'\n')
        .find_map(parse_flood_line)
}

fn parse_flood_line(line: &[u8]) -> Option<u64> {
    if line.len() + 1 != FLOOD_LINE || line.get(FLOOD_DIGITS) != Some(&b' ') {
        return None;
    }
    let digits = line.get(..FLOOD_DIGITS)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Bytes of the flood the init has written to the service's log so far:
/// every line is numbered, so the last whole line of `NAME.log` (or of
/// `NAME.log.1`, just after a rotation) tells, however often it rotated.
fn flood_delivered(log: &Path) -> u64 {
    let older = log.with_extension("log.1");
    [log, older.as_path()]
        .into_iter()
        .filter_map(last_flood_line)
        .max()
        .map_or(0, |i| (i + 1) * FLOOD_LINE as u64)
}

/// One service writing numbered 100-byte lines as fast as its stdout takes
/// them, with the default log cap: what the init sustains into the log
/// files, what it costs the init, and what it does to API latency.
fn log_throughput(b: &mut Bench) -> R<()> {
    let name = format!("{NAME_PREFIX}flood");
    let path = format!("/v1/services/{name}");
    let log = b.dir.join("logs").join(format!("{name}.log"));
    let def = json!({
        "cmd": b.exe.display().to_string(),
        "args": b.role_args("flood", &[]),
        "restart": "never",
    })
    .to_string();
    b.put_all(&[(name.clone(), def)])?;
    let quiet = paced_gets(&b.init.socket, &path)?;
    let mut c = b.init.client()?;
    let v = c.ok("POST", &format!("{path}/start"), None)?;
    let result = (|| -> R<()> {
        let flooder = v["pid"]
            .as_i64()
            .ok_or_else(|| format!("{name} has no pid: {v}"))? as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        while flood_delivered(&log) == 0 {
            if Instant::now() > deadline {
                return Err(format!("nothing in {} 5 s after the start", log.display()));
            }
            thread::sleep(Duration::from_millis(5));
        }
        // Past the start-up: the pipe is full and the file is growing.
        thread::sleep(Duration::from_millis(200));
        let (d0, c0, f0, t0) = (
            flood_delivered(&log),
            Cpu::of(b.init.pid)?,
            Cpu::of(flooder)?,
            Instant::now(),
        );
        thread::sleep(LOG_WINDOW);
        let (d1, c1, f1, t1) = (
            flood_delivered(&log),
            Cpu::of(b.init.pid)?,
            Cpu::of(flooder)?,
            Instant::now(),
        );
        let secs = (t1 - t0).as_secs_f64();
        let mb = d1.saturating_sub(d0) as f64 / 1e6;
        let init_ms = c1.ticks_ms_since(&c0);
        let rotated = fs::metadata(log.with_extension("log.1"))
            .map(|m| format!("{:.2} MiB", m.len() as f64 / 1048576.0))
            .unwrap_or_else(|_| "missing".into());
        fig(
            "log_throughput",
            format!("{:.0}", mb / secs),
            "MB/s",
            &format!(
                "{:.0} MB (10^6 bytes) of 100-byte lines from one service into LOG_DIR/NAME.log over {} ms, \
                 rotating at the default 8 MiB (about {:.0} rotations; NAME.log.1 now {rotated}); \
                 the writing service's own CPU {:.0}% of one core",
                mb,
                ms(secs * 1e3),
                d1.saturating_sub(d0) as f64 / f64::from(8u32 << 20),
                f1.ticks_ms_since(&f0) / (secs * 1e3) * 100.0
            ),
        );
        fig(
            "log_init_cpu_per_mb",
            format!("{:.2}", init_ms / mb.max(1e-9)),
            "ms/MB",
            &format!(
                "the init's utime+stime over the same window: {} ms = {:.0}% of one core; {}",
                ms(init_ms),
                init_ms / (secs * 1e3) * 100.0,
                c1.describe_since(&c0)
            ),
        );
        let (d2, t2) = (flood_delivered(&log), Instant::now());
        let busy = paced_gets(&b.init.socket, &path)?;
        let (d3, t3) = (flood_delivered(&log), Instant::now());
        fig(
            "log_flood_get_latency",
            format!("{:.0}", median(&busy)),
            "us",
            &format!(
                "median; GET {path} every {} ms from another connection while the service floods \
                 ({:.0} MB/s meanwhile): {}",
                LAT_EVERY.as_millis(),
                d3.saturating_sub(d2) as f64 / 1e6 / (t3 - t2).as_secs_f64(),
                describe_us(&busy)
            ),
        );
        fig(
            "log_quiet_get_latency",
            format!("{:.0}", median(&quiet)),
            "us",
            &format!(
                "median; the same GETs just before the flood: {}",
                describe_us(&quiet)
            ),
        );
        Ok(())
    })();
    let stopped = c.ok("POST", &format!("{path}/stop"), None).map(|_| ());
    let deleted = c.ok("DELETE", &path, None).map(|_| ());
    // What the flood left to write back would slow whatever comes next.
    let t = Instant::now();
    let synced = fs::File::open(b.dir.join("logs"))
        .map_err(|e| e.to_string())
        .and_then(|d| nix::unistd::syncfs(d.as_raw_fd()).map_err(|e| e.to_string()));
    println!(
        "# syncfs of the log directory's filesystem after the flood: {} ms{}",
        t.elapsed().as_millis(),
        synced.err().map(|e| format!(" ({e})")).unwrap_or_default()
    );
    result.and(stopped).and(deleted)
}

/// Runs `tests/support/oci.sh` (image, registry and push helpers).
fn oci_sh(args: &[&str]) -> R<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/oci.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("bash {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "oci.sh {}: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into())
}

/// A registry on 127.0.0.1 started by `oci.sh`, stopped on drop. It runs in
/// its own session; a watchdog in ours kills it should the bench die
/// without dropping it.
struct Registry {
    port: u16,
    pid: i32,
    watchdog: Option<Child>,
}

impl Registry {
    fn start(dir: &Path) -> R<Registry> {
        let out = oci_sh(&["registry", &dir.display().to_string()])?;
        let mut words = out.split_whitespace();
        let (Some(port), Some(pid)) = (
            words.next().and_then(|w| w.parse().ok()),
            words.next().and_then(|w| w.parse().ok()),
        ) else {
            return Err(format!("oci.sh registry printed {out:?}"));
        };
        let mut reg = Registry {
            port,
            pid,
            watchdog: None,
        };
        // Reads a pipe only this process holds: end of file means the bench
        // is gone. Ctrl-C must not take the watchdog before the bench.
        reg.watchdog = Command::new("sh")
            .args([
                "-c",
                "trap '' INT HUP; read _; kill \"$0\" 2>/dev/null",
                &pid.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        Ok(reg)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // The watchdog first, so that it cannot kill a reused pid later.
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        if let Err(e) = oci_sh(&["stop-registry", &self.pid.to_string()]) {
            println!("# could not stop the registry (pid {}): {e}", self.pid);
        }
    }
}

/// `POST start` (which answers once the service is `running`) and `POST
/// stop`; their times in ms and the start answer.
fn start_stop(c: &mut Client, name: &str) -> R<(f64, f64, Value)> {
    let t0 = Instant::now();
    let v = c.ok("POST", &format!("/v1/services/{name}/start"), None)?;
    let start = t0.elapsed().as_secs_f64() * 1e3;
    if v["status"] != "running" {
        return Err(format!("start of {name} answered without running: {v}"));
    }
    let t1 = Instant::now();
    let s = c.ok("POST", &format!("/v1/services/{name}/stop"), None)?;
    let stop = t1.elapsed().as_secs_f64() * 1e3;
    if s["status"] != "stopped" {
        return Err(format!("stop of {name} answered without stopped: {s}"));
    }
    Ok((start, stop, v))
}

/// `POST start` to `running` of a container service (busybox httpd with a
/// health port, image already in the init's store), against the same
/// command as a plain service; start/stop cycles interleaved.
fn container_start(b: &mut Bench) -> R<()> {
    let runtime = choose_runtime(
        std::env::var(RUNTIME_ENV).ok().as_deref(),
        Path::new("/sys/fs/cgroup"),
        &|n| find_on_init_path(n).is_ok(),
    );
    let mut missing: Vec<String> = ["skopeo", "umoci", "docker-registry", "busybox"]
        .into_iter()
        .filter(|t| find_on_init_path(t).is_err())
        .map(String::from)
        .collect();
    if find_on_init_path(&runtime).is_err() && !Path::new(&runtime).is_file() {
        missing.push(runtime.clone());
    }
    if !nix::unistd::geteuid().is_root() {
        fig("container_start", "n/a", "", "needs root");
        return Ok(());
    }
    if !missing.is_empty() {
        fig(
            "container_start",
            "n/a",
            "",
            &format!(
                "missing tools {missing:?}: apt-get install $(grep -v '^#' tests/support/oci-packages.txt)"
            ),
        );
        return Ok(());
    }
    let dir = b.dir.join("oci");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let t_prep = Instant::now();
    let layout = dir.join("img");
    oci_sh(&["image", &layout.display().to_string(), "1"])?;
    let registry = Registry::start(&dir.join("reg"))?;
    let image = format!("127.0.0.1:{}/busybox:1", registry.port);
    oci_sh(&["push", &format!("{}:1", layout.display()), &image])?;
    let prep = t_prep.elapsed();

    let ctr = format!("{NAME_PREFIX}ctr-httpd");
    let plain = format!("{NAME_PREFIX}plain-httpd");
    let ports = free_ports(2)?;
    let (p_ctr, p_plain) = match ports.as_slice() {
        [a, b] => (*a, *b),
        _ => return Err("no free ports".into()),
    };
    let www = dir.join("www");
    fs::create_dir_all(&www).map_err(|e| e.to_string())?;
    b.put_all(&[
        (
            ctr.clone(),
            json!({"cmd": "httpd", "args": ["-f", "-p", p_ctr.to_string(), "-h", "/www"],
                   "container": true, "image": image, "health_port": p_ctr})
            .to_string(),
        ),
        (
            plain.clone(),
            json!({"cmd": "busybox", "args": ["httpd", "-f", "-p", p_plain.to_string(), "-h", www.display().to_string()],
                   "health_port": p_plain})
            .to_string(),
        ),
    ])?;
    let mut c = b.init.client()?;
    let result = (|| -> R<()> {
        // The first start pulls and unpacks the image into the store.
        let (first, _, v) = start_stop(&mut c, &ctr)?;
        let pulls = v["image_pulls"].as_u64().unwrap_or(0);
        let (mut t_ctr, mut s_ctr, mut t_plain, mut s_plain) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let t0 = Instant::now();
        while t_ctr.len() < CTR_CYCLES && t0.elapsed() < CTR_LIMIT {
            let (start, stop, v) = start_stop(&mut c, &ctr)?;
            if v["image_pulls"].as_u64().unwrap_or(0) != pulls {
                return Err(format!("the image was pulled again: {v}"));
            }
            t_ctr.push(start);
            s_ctr.push(stop);
            let (start, stop, _) = start_stop(&mut c, &plain)?;
            t_plain.push(start);
            s_plain.push(stop);
        }
        let n = t_ctr.len();
        fig(
            "container_start_to_running",
            ms(median(&t_ctr)),
            "ms",
            &format!(
                "median of {n} POST start of busybox httpd in a container with health_port, image cached \
                 (image_pulls stays {pulls}), runtime {runtime}; p95 {} ms; max {} ms; first start with \
                 the pull {} ms; stop median {} ms; image build, registry and push took {} ms",
                ms(pct(&t_ctr, 0.95)),
                ms(max(&t_ctr)),
                ms(first),
                ms(median(&s_ctr)),
                prep.as_millis()
            ),
        );
        fig(
            "plain_httpd_start_to_running",
            ms(median(&t_plain)),
            "ms",
            &format!(
                "median of {n} POST start of the same busybox httpd as a plain service, interleaved with \
                 the container's; p95 {} ms; max {} ms; stop median {} ms; the container adds {} ms",
                ms(pct(&t_plain, 0.95)),
                ms(max(&t_plain)),
                ms(median(&s_plain)),
                ms(median(&t_ctr) - median(&t_plain))
            ),
        );
        Ok(())
    })();
    // Stopped already unless a cycle failed; delete removes the bundles.
    let mut cleanup = Ok(());
    for n in [&ctr, &plain] {
        let _ = c.req("POST", &format!("/v1/services/{n}/stop"), None);
        if let Err(e) = c.ok("DELETE", &format!("/v1/services/{n}"), None) {
            cleanup = Err(e);
        }
    }
    drop(registry);
    result.and(cleanup)
}

fn shutdown(b: &mut Bench) -> R<()> {
    let running = running_count(b)?;
    let took = b.init.terminate(Duration::from_secs(60))?;
    fig(
        "shutdown_sigterm",
        ms(took.as_secs_f64() * 1e3),
        "ms",
        &format!("SIGTERM to exit 0 with {running} services running"),
    );
    Ok(())
}

// ===== the services (this binary with ROLE_FLAG) ============================

/// `ROLE_FLAG ROLE PARAMS... TAG`; never returns.
fn role(args: &[String]) -> ! {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let code = match arg(0) {
        "listen" => role_listen(arg(1), arg(2), arg(3)),
        "http" => role_http(arg(1), arg(2), arg(3), arg(4)),
        "idle" => park_forever(),
        "storm" => role_storm(arg(1), arg(2)),
        "flood" => role_flood(),
        other => {
            eprintln!("unknown role {other:?}");
            2
        }
    };
    std::process::exit(code)
}

fn park_forever() -> ! {
    loop {
        thread::park();
    }
}

/// Binds `port` at once (after `delay_ms`), stamps main() and listen() into
/// `file`, and accepts forever.
fn role_listen(port: &str, file: &str, delay_ms: &str) -> i32 {
    let main = now_ns();
    let (Ok(port), Ok(delay)) = (port.parse::<u16>(), delay_ms.parse::<u64>()) else {
        eprintln!("listen: bad arguments");
        return 2;
    };
    if delay > 0 {
        // Says "spawned" at once, so the bench knows when every spawn is over.
        let _ = fs::write(format!("{file}.main"), format!("{main}\n"));
        thread::sleep(Duration::from_millis(delay));
    }
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("listen: bind {port}: {e}");
            return 1;
        }
    };
    let listen = now_ns();
    let tmp = format!("{file}.tmp");
    if fs::write(&tmp, format!("{main} {listen}\n")).is_err() || fs::rename(&tmp, file).is_err() {
        eprintln!("listen: cannot write {file}");
    }
    loop {
        if listener.accept().is_err() {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// An HTTP server on 127.0.0.1:`port` whose `GET /healthz` answers 200
/// from `delay_ms` after main() on: in mode "late" it listens only then,
/// in mode "503" it listens at once and answers 503 before. Writes
/// "main_ns healthy_ns" to `file` (and "main_ns" to `file.main` at once).
fn role_http(port: &str, file: &str, delay_ms: &str, mode: &str) -> i32 {
    let main = now_ns();
    let (Ok(port), Ok(delay)) = (port.parse::<u16>(), delay_ms.parse::<u64>()) else {
        eprintln!("http: bad arguments");
        return 2;
    };
    let _ = fs::write(format!("{file}.main"), format!("{main}\n"));
    let healthy_at = main + delay as i64 * 1_000_000;
    if mode == "late" {
        thread::sleep(Duration::from_millis(delay));
    }
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("http: bind {port}: {e}");
            return 1;
        }
    };
    let healthy = if mode == "late" { now_ns() } else { healthy_at };
    let tmp = format!("{file}.tmp");
    if fs::write(&tmp, format!("{main} {healthy}\n")).is_err() || fs::rename(&tmp, file).is_err() {
        eprintln!("http: cannot write {file}");
    }
    loop {
        let Ok((mut conn, _)) = listener.accept() else {
            thread::sleep(Duration::from_millis(1));
            continue;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let status = match (req.starts_with(b"GET /healthz "), now_ns() >= healthy) {
            (true, true) => "200 OK",
            (true, false) => "503 Service Unavailable",
            (false, _) => "404 Not Found",
        };
        let _ = conn.write_all(
            format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
    }
}

/// Forks `n` children that each fork a grandchild and exit at once: the
/// grandchildren are orphaned to the nearest subreaper. Writes
/// "first_ns last_ns done failed" to `fifo`, then idles.
fn role_storm(n: &str, fifo: &str) -> i32 {
    let Ok(n) = n.parse::<u64>() else {
        return 2;
    };
    let first = now_ns();
    let (mut done, mut failed) = (0u64, 0u64);
    while done < n && failed < 100_000 {
        // SAFETY: this process is single-threaded; the child only calls
        // fork and _exit, both async-signal-safe.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => {
                failed += 1;
                thread::sleep(Duration::from_micros(100));
            }
            0 => {
                // SAFETY: as above; both the child and the grandchild exit at once.
                unsafe {
                    let grandchild = libc::fork();
                    libc::_exit(if grandchild < 0 { 1 } else { 0 });
                }
            }
            child => {
                let mut status = 0;
                // SAFETY: waits for our own child; `status` is a valid pointer.
                unsafe { libc::waitpid(child, &mut status, 0) };
                if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                    done += 1;
                } else {
                    failed += 1;
                }
            }
        }
    }
    let last = now_ns();
    if let Err(e) = fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .and_then(|mut f| f.write_all(format!("{first} {last} {done} {failed}\n").as_bytes()))
    {
        eprintln!("storm: cannot report to {fifo}: {e}");
    }
    park_forever()
}

/// Writes numbered `FLOOD_LINE`-byte lines to stdout as fast as it takes
/// them, until stdout breaks or a signal ends it.
fn role_flood() -> i32 {
    const LINES: usize = 640;
    let mut buf = vec![b'x'; FLOOD_LINE * LINES];
    for line in buf.chunks_mut(FLOOD_LINE) {
        if let Some(b) = line.get_mut(FLOOD_DIGITS) {
            *b = b' ';
        }
        if let Some(b) = line.last_mut() {
            *b = b'\n';
        }
    }
    let mut out = io::stdout().lock();
    let mut n: u64 = 0;
    loop {
        for line in buf.chunks_mut(FLOOD_LINE) {
            let mut v = n;
            for d in line.iter_mut().take(FLOOD_DIGITS).rev() {
                *d = b'0' + (v % 10) as u8;
                v /= 10;
            }
            n += 1;
        }
        // The buffer ends with a newline: stdout's line buffering passes
        // it straight through.
        if out.write_all(&buf).is_err() {
            return 0;
        }
    }
}
